/*
 * Append-only journal: see journal.h.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include "journal.h"


#define MM_JOURNAL_SEGMENT_MAX  (64ULL * 1024 * 1024)
#define MM_JOURNAL_BUFFER_SIZE  (64 * 1024)
#define MM_JOURNAL_NAME_LEN     (16 + 4)                 /* digits + ".jnl" */
#define MM_JOURNAL_COMMITTED    "committed"
#define MM_JOURNAL_COMMITTED_TMP "committed.tmp"
/*
 * The committed file's two slots, "<seg> <off> <crc32>\n" in fixed width,
 * a page apart so that writing one back never touches the other.
 */
#define MM_JOURNAL_SLOT_LEN     (16 + 1 + 16 + 1 + 8 + 1)
#define MM_JOURNAL_SLOT_CRC_LEN (16 + 1 + 16)
#define MM_JOURNAL_SLOT_OFF(i)  ((off_t) (i) * 4096)
#define MM_JOURNAL_LOCK         "lock"


struct mm_journal_s {
    mm_journal_conf_t    conf;
    int                  dirfd;
    int                  lockfd;
    int                  fd;            /* current segment, -1 if closed */
    uint64_t             seg;           /* current segment number */
    uint64_t             first_seg;     /* oldest segment that may exist */
    uint64_t             file_off;      /* bytes written to fd */
    uint64_t             synced_off;    /* bytes known durable in fd */
    unsigned char       *buf;
    size_t               buf_len;
    int                  need_rotate;
    uint64_t             truncated;
    mm_journal_pos_t     committed;
    int                  commit_fd;     /* committed file, -1 until needed */
    int                  commit_slot;   /* the slot written last */
    mm_journal_pos_t     commit_synced; /* durable in the committed file */
};


struct mm_journal_reader_s {
    mm_journal_conf_t    conf;
    int                  dirfd;
    int                  fd;            /* segment pos.seg, -1 if not open */
    mm_journal_pos_t     pos;           /* next record */
    unsigned char       *buf;           /* bytes from file offset pos.off */
    size_t               size;
    size_t               start;
    size_t               end;
    int                  borrowed;      /* buf belongs to someone else */
};


static void *mm_journal_default_alloc(void *ctx, void *p, size_t size);
static void mm_journal_conf_init(mm_journal_conf_t *dst,
    const mm_journal_conf_t *src);
static uint32_t mm_journal_get_be32(const unsigned char *p);
static void mm_journal_put_be32(unsigned char *p, uint32_t v);
static uint32_t mm_journal_crc(const void *data, size_t len);
static void mm_journal_seg_name(char *name, size_t size, uint64_t seg);
static int mm_journal_parse_seg_name(const char *name, uint64_t *seg);
static int mm_journal_scan(int dirfd, uint64_t after, uint64_t *min,
    uint64_t *max);
static mm_status_t mm_journal_read_committed_at(int dirfd,
    mm_journal_pos_t *pos);
static void mm_journal_slot_text(char *text, mm_journal_pos_t pos);
static int mm_journal_slot_parse(const char *text, size_t len,
    mm_journal_pos_t *pos);
static mm_status_t mm_journal_commit_create(mm_journal_t *j,
    mm_journal_pos_t pos);
static mm_status_t mm_journal_recover(mm_journal_t *j, uint64_t seg);
static mm_status_t mm_journal_write_all(int fd, const struct iovec *iov,
    int iovcnt, uint64_t off);
static mm_status_t mm_journal_flush(mm_journal_t *j);
static void mm_journal_fail(mm_journal_t *j);
static mm_status_t mm_journal_new_segment(mm_journal_t *j);
static mm_status_t mm_journal_reader_fill(mm_journal_reader_t *r,
    size_t need, size_t *avail);
static int mm_journal_reader_open_seg(mm_journal_reader_t *r,
    uint64_t seg);


int
mm_journal_pos_cmp(mm_journal_pos_t a, mm_journal_pos_t b)
{
    if (a.seg != b.seg) {
        return a.seg < b.seg ? -1 : 1;
    }

    if (a.off != b.off) {
        return a.off < b.off ? -1 : 1;
    }

    return 0;
}


static void *
mm_journal_default_alloc(void *ctx, void *p, size_t size)
{
    if (size == 0) {
        free(p);
        return NULL;
    }

    return realloc(p, size);
}


static void
mm_journal_conf_init(mm_journal_conf_t *dst, const mm_journal_conf_t *src)
{
    if (src != NULL) {
        *dst = *src;

    } else {
        memset(dst, 0, sizeof(*dst));
    }

    if (dst->segment_max == 0) {
        dst->segment_max = MM_JOURNAL_SEGMENT_MAX;
    }

    if (dst->buffer_size < 64) {
        dst->buffer_size = MM_JOURNAL_BUFFER_SIZE;
    }

    if (dst->alloc == NULL) {
        dst->alloc = mm_journal_default_alloc;
        dst->alloc_ctx = NULL;
    }
}


static uint32_t
mm_journal_get_be32(const unsigned char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}


static void
mm_journal_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;
}


static uint32_t
mm_journal_crc(const void *data, size_t len)
{
    uLong  crc;

    crc = crc32(0L, Z_NULL, 0);

    /* len <= MM_JOURNAL_RECORD_MAX fits uInt */
    return (uint32_t) crc32(crc, data, (uInt) len);
}


static void
mm_journal_seg_name(char *name, size_t size, uint64_t seg)
{
    snprintf(name, size, "%016" PRIu64 ".jnl", seg);
}


static int
mm_journal_parse_seg_name(const char *name, uint64_t *seg)
{
    uint64_t  v;
    int       i;

    if (strlen(name) != MM_JOURNAL_NAME_LEN
        || strcmp(name + 16, ".jnl") != 0)
    {
        return 0;
    }

    v = 0;

    for (i = 0; i < 16; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
        v = v * 10 + (uint64_t) (name[i] - '0');
    }

    if (v == 0) {
        return 0;
    }

    *seg = v;

    return 1;
}


/*
 * Smallest and largest segment numbers > after; returns the number found
 * or -1 (errno set).
 */
static int
mm_journal_scan(int dirfd, uint64_t after, uint64_t *min, uint64_t *max)
{
    int             fd, n;
    DIR            *d;
    uint64_t        seg;
    struct dirent  *de;

    fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }

    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -1;
    }

    n = 0;
    *min = 0;
    *max = 0;

    while ((de = readdir(d)) != NULL) {
        if (!mm_journal_parse_seg_name(de->d_name, &seg) || seg <= after) {
            continue;
        }

        if (n == 0 || seg < *min) {
            *min = seg;
        }

        if (n == 0 || seg > *max) {
            *max = seg;
        }

        n++;
    }

    closedir(d);

    return n;
}


mm_status_t
mm_journal_read_committed(const char *dir, mm_journal_pos_t *pos)
{
    int          dirfd;
    mm_status_t  st;

    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        if (errno == ENOENT) {
            pos->seg = 0;
            pos->off = 0;
            return MM_OK;
        }
        return MM_EIO;
    }

    st = mm_journal_read_committed_at(dirfd, pos);
    close(dirfd);

    return st;
}


/*
 * The committed position: the larger of the two slots that are whole (a
 * torn write leaves the other one), or the one-line "<seg> <off>\n" of
 * the format before the slots.
 */
static mm_status_t
mm_journal_read_committed_at(int dirfd, mm_journal_pos_t *pos)
{
    int               fd, i, save, valid;
    char              text[2][MM_JOURNAL_SLOT_LEN + 1], tail;
    ssize_t           n[2];
    uint64_t          seg, off;
    mm_journal_pos_t  slot;

    pos->seg = 0;
    pos->off = 0;

    fd = openat(dirfd, MM_JOURNAL_COMMITTED, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? MM_OK : MM_EIO;
    }

    valid = 0;

    for (i = 0; i < 2; i++) {
        n[i] = pread(fd, text[i], MM_JOURNAL_SLOT_LEN, MM_JOURNAL_SLOT_OFF(i));
        if (n[i] < 0) {
            save = errno;
            close(fd);
            errno = save;
            return MM_EIO;
        }

        if (mm_journal_slot_parse(text[i], (size_t) n[i], &slot)
            && (!valid || mm_journal_pos_cmp(slot, *pos) > 0))
        {
            *pos = slot;
            valid = 1;
        }
    }

    close(fd);

    if (valid) {
        return MM_OK;
    }

    /* the format before the slots: "<seg> <off>\n", the whole file */
    text[0][n[0]] = '\0';

    if (n[1] != 0
        || sscanf(text[0], "%" SCNu64 " %" SCNu64 "%c", &seg, &off, &tail) != 3
        || tail != '\n' || strchr(text[0], '\n') != &text[0][n[0] - 1])
    {
        return MM_ECORRUPT;
    }

    pos->seg = seg;
    pos->off = off;

    return MM_OK;
}


static void
mm_journal_slot_text(char *text, mm_journal_pos_t pos)
{
    char  buf[MM_JOURNAL_SLOT_LEN + 1];

    snprintf(buf, sizeof(buf), "%016" PRIu64 " %016" PRIu64 " ",
             pos.seg, pos.off);
    snprintf(buf + MM_JOURNAL_SLOT_CRC_LEN + 1,
             sizeof(buf) - MM_JOURNAL_SLOT_CRC_LEN - 1, "%08" PRIx32 "\n",
             mm_journal_crc(buf, MM_JOURNAL_SLOT_CRC_LEN));
    memcpy(text, buf, MM_JOURNAL_SLOT_LEN);
}


/* 1 if text[0..len) starts with a whole slot; its position in *pos */
static int
mm_journal_slot_parse(const char *text, size_t len, mm_journal_pos_t *pos)
{
    char              want[MM_JOURNAL_SLOT_LEN];
    mm_journal_pos_t  p;

    if (len < MM_JOURNAL_SLOT_LEN
        || sscanf(text, "%16" SCNu64 " %16" SCNu64, &p.seg, &p.off) != 2)
    {
        return 0;
    }

    /* the slot written again from what was read: every byte and the CRC */
    mm_journal_slot_text(want, p);

    if (memcmp(want, text, MM_JOURNAL_SLOT_LEN) != 0) {
        return 0;
    }

    *pos = p;

    return 1;
}


mm_status_t
mm_journal_open(mm_journal_t **jp, const char *dir,
    const mm_journal_conf_t *conf)
{
    int            n, save;
    uint64_t       min, max;
    mm_status_t    st;
    mm_journal_t  *j;

    mm_journal_conf_t  c;

    *jp = NULL;

    mm_journal_conf_init(&c, conf);

    j = c.alloc(c.alloc_ctx, NULL, sizeof(*j));
    if (j == NULL) {
        return MM_ENOMEM;
    }

    memset(j, 0, sizeof(*j));
    j->conf = c;
    j->dirfd = -1;
    j->lockfd = -1;
    j->fd = -1;
    j->commit_fd = -1;

    j->buf = c.alloc(c.alloc_ctx, NULL, c.buffer_size);
    if (j->buf == NULL) {
        st = MM_ENOMEM;
        goto failed;
    }

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        goto io_failed;
    }

    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        goto io_failed;
    }

    j->lockfd = openat(j->dirfd, MM_JOURNAL_LOCK,
                       O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->lockfd < 0) {
        goto io_failed;
    }

    if (flock(j->lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            st = MM_EAGAIN;
            goto failed;
        }
        goto io_failed;
    }

    st = mm_journal_read_committed_at(j->dirfd, &j->committed);
    if (st != MM_OK) {
        goto failed;
    }

    j->commit_synced = j->committed;

    (void) unlinkat(j->dirfd, MM_JOURNAL_COMMITTED_TMP, 0);

    n = mm_journal_scan(j->dirfd, 0, &min, &max);
    if (n < 0) {
        goto io_failed;
    }

    if (n == 0) {
        j->seg = j->committed.seg;
        j->first_seg = j->seg + 1;

        if (mm_journal_new_segment(j) != MM_OK) {
            goto io_failed;
        }

    } else {
        j->first_seg = min;

        st = mm_journal_recover(j, max);
        if (st != MM_OK) {
            goto failed;
        }

        /*
         * A committed position past the valid end (data lost with the page
         * cache after it was committed) must not have new records appended
         * under it: continue in a new segment.
         */
        if ((j->committed.seg > j->seg
             || (j->committed.seg == j->seg
                 && j->committed.off > j->file_off))
            && mm_journal_new_segment(j) != MM_OK)
        {
            goto io_failed;
        }
    }

    *jp = j;

    return MM_OK;

io_failed:

    st = MM_EIO;

failed:

    save = errno;
    mm_journal_close(&j);
    errno = save;

    return st;
}


/* opens segment seg for appending, cutting off a torn or corrupt tail */
static mm_status_t
mm_journal_recover(mm_journal_t *j, uint64_t seg)
{
    int                  fd, save;
    char                 name[32];
    size_t               avail;
    uint32_t             len;
    uint64_t             size;
    mm_status_t          st;
    struct stat          sb;
    mm_journal_reader_t  r;

    /* a private reader over this one file, borrowing the write buffer */
    memset(&r, 0, sizeof(r));
    r.conf = j->conf;
    r.dirfd = -1;
    r.pos.seg = seg;
    r.buf = j->buf;
    r.size = j->conf.buffer_size;
    r.borrowed = 1;

    mm_journal_seg_name(name, sizeof(name), seg);

    fd = openat(j->dirfd, name, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        return MM_EIO;
    }

    r.fd = fd;

    if (fstat(fd, &sb) != 0) {
        st = MM_EIO;
        goto done;
    }

    size = (uint64_t) sb.st_size;

    for ( ;; ) {
        st = mm_journal_reader_fill(&r, MM_JOURNAL_HEADER_SIZE, &avail);
        if (st != MM_OK) {
            goto done;
        }

        if (avail < MM_JOURNAL_HEADER_SIZE) {
            break;
        }

        len = mm_journal_get_be32(r.buf + r.start);
        if (len > MM_JOURNAL_RECORD_MAX) {
            break;
        }

        st = mm_journal_reader_fill(&r, MM_JOURNAL_HEADER_SIZE + len,
                                    &avail);
        if (st != MM_OK) {
            goto done;
        }

        if (avail < MM_JOURNAL_HEADER_SIZE + (size_t) len
            || mm_journal_crc(r.buf + r.start + MM_JOURNAL_HEADER_SIZE, len)
               != mm_journal_get_be32(r.buf + r.start + 4))
        {
            break;
        }

        r.start += MM_JOURNAL_HEADER_SIZE + len;
        r.pos.off += MM_JOURNAL_HEADER_SIZE + len;
    }

    if (r.pos.off < size) {
        if (ftruncate(fd, (off_t) r.pos.off) != 0 || fdatasync(fd) != 0) {
            st = MM_EIO;
            goto done;
        }
        j->truncated = size - r.pos.off;
    }

    j->fd = fd;
    j->seg = seg;
    j->file_off = r.pos.off;
    j->synced_off = r.pos.off;
    fd = -1;
    st = MM_OK;

done:

    save = errno;

    if (!r.borrowed) {
        j->conf.alloc(j->conf.alloc_ctx, r.buf, 0);
    }

    if (fd >= 0) {
        close(fd);
    }

    errno = save;

    return st;
}


void
mm_journal_close(mm_journal_t **jp)
{
    mm_journal_t  *j;

    j = *jp;
    if (j == NULL) {
        return;
    }

    *jp = NULL;

    if (j->fd >= 0) {
        (void) mm_journal_sync(j);
        if (j->fd >= 0) {
            close(j->fd);
        }
    }

    if (j->commit_fd >= 0) {
        if (mm_journal_pos_cmp(j->commit_synced, j->committed) < 0) {
            (void) fdatasync(j->commit_fd);
        }
        close(j->commit_fd);
    }

    if (j->lockfd >= 0) {
        close(j->lockfd);
    }

    if (j->dirfd >= 0) {
        close(j->dirfd);
    }

    if (j->buf != NULL) {
        j->conf.alloc(j->conf.alloc_ctx, j->buf, 0);
    }

    j->conf.alloc(j->conf.alloc_ctx, j, 0);
}


static mm_status_t
mm_journal_write_all(int fd, const struct iovec *iov, int iovcnt,
    uint64_t off)
{
    int           i;
    size_t        done, skip;
    ssize_t       n;
    struct iovec  v[4];

    if (iovcnt > 4) {
        errno = EINVAL;
        return MM_EIO;
    }

    memcpy(v, iov, sizeof(struct iovec) * (size_t) iovcnt);
    i = 0;

    while (i < iovcnt) {
        n = pwritev(fd, v + i, iovcnt - i, (off_t) off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return MM_EIO;
        }

        if (n == 0) {
            errno = EIO;
            return MM_EIO;
        }

        off += (uint64_t) n;
        done = (size_t) n;

        while (i < iovcnt && done >= v[i].iov_len) {
            done -= v[i].iov_len;
            i++;
        }

        if (i < iovcnt) {
            skip = done;
            v[i].iov_base = (char *) v[i].iov_base + skip;
            v[i].iov_len -= skip;
        }
    }

    return MM_OK;
}


/* drops what is not synced and makes the next append start a segment */
static void
mm_journal_fail(mm_journal_t *j)
{
    int  save;

    save = errno;

    j->buf_len = 0;

    if (j->fd >= 0) {
        if (j->file_off != j->synced_off) {
            (void) ftruncate(j->fd, (off_t) j->synced_off);
        }
        close(j->fd);
        j->fd = -1;
    }

    j->file_off = j->synced_off;
    j->need_rotate = 1;

    errno = save;
}


static mm_status_t
mm_journal_flush(mm_journal_t *j)
{
    struct iovec  iov;

    if (j->buf_len == 0) {
        return MM_OK;
    }

    if (j->fd < 0) {
        j->buf_len = 0;
        errno = EBADF;
        return MM_EIO;
    }

    iov.iov_base = j->buf;
    iov.iov_len = j->buf_len;

    if (mm_journal_write_all(j->fd, &iov, 1, j->file_off) != MM_OK) {
        mm_journal_fail(j);
        return MM_EIO;
    }

    j->file_off += j->buf_len;
    j->buf_len = 0;

    return MM_OK;
}


mm_status_t
mm_journal_sync(mm_journal_t *j)
{
    if (j->fd < 0) {
        /* nothing open: nothing appended since the last failure */
        return j->buf_len == 0 ? MM_OK : MM_EIO;
    }

    if (mm_journal_flush(j) != MM_OK) {
        return MM_EIO;
    }

    if (j->synced_off == j->file_off) {
        return MM_OK;
    }

    if (fdatasync(j->fd) != 0) {
        mm_journal_fail(j);
        return MM_EIO;
    }

    j->synced_off = j->file_off;

    return MM_OK;
}


/* syncs and closes the current segment, creates the next one */
static mm_status_t
mm_journal_new_segment(mm_journal_t *j)
{
    int       fd;
    char      name[32];
    uint64_t  seg;

    if (j->fd >= 0) {
        if (mm_journal_sync(j) != MM_OK) {
            return MM_EIO;
        }
        close(j->fd);
        j->fd = -1;
    }

    seg = (j->seg > j->committed.seg ? j->seg : j->committed.seg) + 1;

    for ( ;; ) {
        mm_journal_seg_name(name, sizeof(name), seg);

        fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                    0600);
        if (fd >= 0) {
            break;
        }

        if (errno != EEXIST) {
            return MM_EIO;
        }

        seg++;
    }

    if (fsync(j->dirfd) != 0) {
        close(fd);
        return MM_EIO;
    }

    j->fd = fd;
    j->seg = seg;
    j->file_off = 0;
    j->synced_off = 0;
    j->need_rotate = 0;

    return MM_OK;
}


mm_status_t
mm_journal_rotate(mm_journal_t *j)
{
    if (j->fd >= 0 && j->file_off + j->buf_len == 0) {
        return MM_OK;
    }

    return mm_journal_new_segment(j);
}


mm_status_t
mm_journal_append(mm_journal_t *j, const void *data, size_t len)
{
    size_t         rec;
    uint64_t       used;
    unsigned char  hdr[MM_JOURNAL_HEADER_SIZE];
    struct iovec   iov[2];

    if (len > MM_JOURNAL_RECORD_MAX) {
        return MM_ETOOBIG;
    }

    rec = MM_JOURNAL_HEADER_SIZE + len;
    used = j->file_off + j->buf_len;

    if (j->need_rotate || j->fd < 0
        || (used > 0 && used + rec > j->conf.segment_max))
    {
        if (mm_journal_new_segment(j) != MM_OK) {
            return MM_EIO;
        }
    }

    mm_journal_put_be32(hdr, (uint32_t) len);
    mm_journal_put_be32(hdr + 4, mm_journal_crc(data, len));

    if (j->buf_len + rec > j->conf.buffer_size) {
        if (mm_journal_flush(j) != MM_OK) {
            return MM_EIO;
        }
    }

    if (rec > j->conf.buffer_size) {
        iov[0].iov_base = hdr;
        iov[0].iov_len = sizeof(hdr);
        iov[1].iov_base = (void *) data;
        iov[1].iov_len = len;

        if (mm_journal_write_all(j->fd, iov, 2, j->file_off) != MM_OK) {
            mm_journal_fail(j);
            return MM_EIO;
        }

        j->file_off += rec;

        return MM_OK;
    }

    memcpy(j->buf + j->buf_len, hdr, sizeof(hdr));
    if (len) {
        memcpy(j->buf + j->buf_len + sizeof(hdr), data, len);
    }
    j->buf_len += rec;

    return MM_OK;
}


mm_journal_pos_t
mm_journal_end(const mm_journal_t *j)
{
    mm_journal_pos_t  pos;

    pos.seg = j->seg;
    pos.off = j->file_off + j->buf_len;

    return pos;
}


mm_journal_pos_t
mm_journal_committed(const mm_journal_t *j)
{
    return j->committed;
}


uint64_t
mm_journal_truncated(const mm_journal_t *j)
{
    return j->truncated;
}


uint64_t
mm_journal_lag(const mm_journal_t *j)
{
    char              name[32];
    uint64_t          seg, lag;
    struct stat       sb;
    mm_journal_pos_t  end;

    end = mm_journal_end(j);

    if (mm_journal_pos_cmp(j->committed, end) >= 0) {
        return 0;
    }

    if (j->committed.seg == end.seg) {
        return end.off - j->committed.off;
    }

    lag = end.off;

    for (seg = j->committed.seg; seg < end.seg; seg++) {
        mm_journal_seg_name(name, sizeof(name), seg);

        if (fstatat(j->dirfd, name, &sb, 0) != 0) {
            continue;
        }

        lag += (uint64_t) sb.st_size;

        if (seg == j->committed.seg) {
            lag -= j->committed.off < (uint64_t) sb.st_size
                   ? j->committed.off : (uint64_t) sb.st_size;
        }
    }

    return lag;
}


/*
 * The position goes into the older slot, in place and not synced: a
 * position lost in a crash is an older one, and the caller replays from
 * there (its consumer drops what it already has). It is synced before the
 * segments under it are deleted, so the position on disk never points
 * into a deleted segment.
 */
mm_status_t
mm_journal_commit(mm_journal_t *j, mm_journal_pos_t pos)
{
    char         name[32], text[MM_JOURNAL_SLOT_LEN];
    uint64_t     seg;
    mm_status_t  st;

    struct iovec  iov;

    if (mm_journal_pos_cmp(pos, j->committed) < 0
        || mm_journal_pos_cmp(pos, mm_journal_end(j)) > 0)
    {
        return MM_EBADDATA;
    }

    if (mm_journal_pos_cmp(pos, j->committed) == 0) {
        return MM_OK;
    }

    if (j->commit_fd < 0) {
        st = mm_journal_commit_create(j, pos);
        if (st != MM_OK) {
            return st;
        }

    } else {
        mm_journal_slot_text(text, pos);
        iov.iov_base = text;
        iov.iov_len = sizeof(text);

        if (mm_journal_write_all(j->commit_fd, &iov, 1,
                                 (uint64_t) MM_JOURNAL_SLOT_OFF(
                                     j->commit_slot ^ 1))
            != MM_OK)
        {
            return MM_EIO;
        }

        j->commit_slot ^= 1;
    }

    j->committed = pos;

    /* segments wholly before the committed one; never the current one */
    for (seg = j->first_seg; seg < pos.seg && seg < j->seg; seg++) {

        if (mm_journal_pos_cmp(j->commit_synced, pos) < 0) {
            if (fdatasync(j->commit_fd) != 0) {
                return MM_EIO;
            }

            j->commit_synced = pos;
        }

        mm_journal_seg_name(name, sizeof(name), seg);
        (void) unlinkat(j->dirfd, name, 0);
        j->first_seg = seg + 1;
    }

    return MM_OK;
}


/*
 * A new committed file with pos in both slots, replacing the old one
 * atomically (tmp + fsync + rename + fsync of the directory); it stays
 * open for the next commits.
 */
static mm_status_t
mm_journal_commit_create(mm_journal_t *j, mm_journal_pos_t pos)
{
    int   fd, save;
    char  text[MM_JOURNAL_SLOT_LEN];

    struct iovec  iov;

    fd = openat(j->dirfd, MM_JOURNAL_COMMITTED_TMP,
                O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return MM_EIO;
    }

    mm_journal_slot_text(text, pos);
    iov.iov_base = text;
    iov.iov_len = sizeof(text);

    if (mm_journal_write_all(fd, &iov, 1, MM_JOURNAL_SLOT_OFF(0)) != MM_OK
        || mm_journal_write_all(fd, &iov, 1, MM_JOURNAL_SLOT_OFF(1)) != MM_OK
        || fsync(fd) != 0
        || renameat(j->dirfd, MM_JOURNAL_COMMITTED_TMP,
                    j->dirfd, MM_JOURNAL_COMMITTED) != 0
        || fsync(j->dirfd) != 0)
    {
        save = errno;
        close(fd);
        errno = save;
        return MM_EIO;
    }

    j->commit_fd = fd;
    j->commit_slot = 1;
    j->commit_synced = pos;

    return MM_OK;
}


mm_status_t
mm_journal_reader_open(mm_journal_reader_t **rp, const char *dir,
    mm_journal_pos_t pos, const mm_journal_conf_t *conf)
{
    int                   save;
    mm_journal_conf_t     c;
    mm_journal_reader_t  *r;

    *rp = NULL;

    mm_journal_conf_init(&c, conf);

    r = c.alloc(c.alloc_ctx, NULL, sizeof(*r));
    if (r == NULL) {
        return MM_ENOMEM;
    }

    memset(r, 0, sizeof(*r));
    r->conf = c;
    r->fd = -1;
    r->pos = pos;

    if (r->pos.seg == 0) {
        r->pos.seg = 1;
        r->pos.off = 0;
    }

    r->buf = c.alloc(c.alloc_ctx, NULL, c.buffer_size);
    if (r->buf == NULL) {
        c.alloc(c.alloc_ctx, r, 0);
        return MM_ENOMEM;
    }

    r->size = c.buffer_size;

    r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->dirfd < 0) {
        save = errno;
        mm_journal_reader_close(&r);
        errno = save;
        return MM_EIO;
    }

    *rp = r;

    return MM_OK;
}


void
mm_journal_reader_close(mm_journal_reader_t **rp)
{
    mm_journal_reader_t  *r;

    r = *rp;
    if (r == NULL) {
        return;
    }

    *rp = NULL;

    if (r->fd >= 0) {
        close(r->fd);
    }

    if (r->dirfd >= 0) {
        close(r->dirfd);
    }

    r->conf.alloc(r->conf.alloc_ctx, r->buf, 0);
    r->conf.alloc(r->conf.alloc_ctx, r, 0);
}


mm_journal_pos_t
mm_journal_reader_pos(const mm_journal_reader_t *r)
{
    return r->pos;
}


/*
 * Makes at least need bytes from pos.off available in buf[start..end) if
 * the file has them; *avail is what is available (may be less at EOF).
 */
static mm_status_t
mm_journal_reader_fill(mm_journal_reader_t *r, size_t need, size_t *avail)
{
    size_t          size;
    ssize_t         n;
    unsigned char  *p;

    if (r->end - r->start >= need) {
        *avail = r->end - r->start;
        return MM_OK;
    }

    if (need > r->size) {
        size = r->size;
        while (size < need) {
            size *= 2;
        }

        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }

        p = r->conf.alloc(r->conf.alloc_ctx, NULL, size);
        if (p == NULL) {
            return MM_ENOMEM;
        }

        memcpy(p, r->buf, r->end);

        if (!r->borrowed) {
            r->conf.alloc(r->conf.alloc_ctx, r->buf, 0);
        }

        r->buf = p;
        r->size = size;
        r->borrowed = 0;

    } else if (r->start > 0 && r->start + need > r->size) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }

    while (r->end - r->start < need) {
        n = pread(r->fd, r->buf + r->end, r->size - r->end,
                  (off_t) (r->pos.off + (r->end - r->start)));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return MM_EIO;
        }

        if (n == 0) {
            break;
        }

        r->end += (size_t) n;
    }

    *avail = r->end - r->start;

    return MM_OK;
}


/* 1 opened, 0 no such segment, -1 error */
static int
mm_journal_reader_open_seg(mm_journal_reader_t *r, uint64_t seg)
{
    int   fd;
    char  name[32];

    mm_journal_seg_name(name, sizeof(name), seg);

    fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : -1;
    }

    if (r->fd >= 0) {
        close(r->fd);
    }

    r->fd = fd;

    if (seg != r->pos.seg) {
        r->pos.seg = seg;
        r->pos.off = 0;
    }

    r->start = 0;
    r->end = 0;

    return 1;
}


mm_status_t
mm_journal_reader_next(mm_journal_reader_t *r, const void **data,
    size_t *len)
{
    int             rc, fd;
    char            name[32];
    size_t          avail, need;
    uint32_t        n;
    uint64_t        min, max;
    mm_status_t     st;
    unsigned char  *p;

    for ( ;; ) {
        if (r->fd < 0) {
            rc = mm_journal_reader_open_seg(r, r->pos.seg);
            if (rc < 0) {
                return MM_EIO;
            }

            if (rc == 0) {
                /* deleted or never written: the next one that exists */
                rc = mm_journal_scan(r->dirfd, r->pos.seg, &min, &max);
                if (rc < 0) {
                    return MM_EIO;
                }

                if (rc == 0) {
                    return MM_EAGAIN;
                }

                rc = mm_journal_reader_open_seg(r, min);
                if (rc <= 0) {
                    return rc < 0 ? MM_EIO : MM_EAGAIN;
                }
            }
        }

        need = MM_JOURNAL_HEADER_SIZE;

        st = mm_journal_reader_fill(r, need, &avail);
        if (st != MM_OK) {
            return st;
        }

        if (avail >= need) {
            n = mm_journal_get_be32(r->buf + r->start);

            if (n > MM_JOURNAL_RECORD_MAX) {
                return MM_ECORRUPT;
            }

            need = MM_JOURNAL_HEADER_SIZE + (size_t) n;

            st = mm_journal_reader_fill(r, need, &avail);
            if (st != MM_OK) {
                return st;
            }

            if (avail >= need) {
                p = r->buf + r->start;

                if (mm_journal_crc(p + MM_JOURNAL_HEADER_SIZE, n)
                    != mm_journal_get_be32(p + 4))
                {
                    return MM_ECORRUPT;
                }

                r->start += need;
                r->pos.off += need;

                *data = p + MM_JOURNAL_HEADER_SIZE;
                *len = n;

                return MM_OK;
            }
        }

        /* the end of this segment's data: is there a next segment? */
        mm_journal_seg_name(name, sizeof(name), r->pos.seg + 1);

        fd = openat(r->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return errno == ENOENT ? MM_EAGAIN : MM_EIO;
        }

        /*
         * A writer finishes a segment before it creates the next one: look
         * once more for a record written in between, then whatever is
         * left (a torn tail) is skipped.
         */
        st = mm_journal_reader_fill(r, need, &avail);
        if (st != MM_OK) {
            close(fd);
            return st;
        }

        if (avail >= need) {
            close(fd);
            continue;
        }

        close(r->fd);
        r->fd = fd;
        r->pos.seg++;
        r->pos.off = 0;
        r->start = 0;
        r->end = 0;
    }
}


void
mm_journal_reader_skip_segment(mm_journal_reader_t *r)
{
    if (r->fd >= 0) {
        close(r->fd);
        r->fd = -1;
    }

    r->pos.seg++;
    r->pos.off = 0;
    r->start = 0;
    r->end = 0;
}
