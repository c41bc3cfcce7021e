/*
 * lib/journal: append/read, reopen, torn tail, CRC, rotation, commit.
 */

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "tap.h"


static char  dir[256];
static long  live_allocs;


static void *
counting_alloc(void *ctx, void *p, size_t size)
{
    long  *n = ctx;

    if (size == 0) {
        if (p != NULL) {
            (*n)--;
        }
        free(p);
        return NULL;
    }

    if (p == NULL) {
        p = malloc(size);
        if (p != NULL) {
            (*n)++;
        }
        return p;
    }

    return realloc(p, size);
}


static void
clean_dir(void)
{
    DIR            *d;
    char            path[512];
    struct dirent  *de;

    d = opendir(dir);
    if (d == NULL) {
        return;
    }

    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }

    closedir(d);
}


static void
seg_path(char *path, size_t size, uint64_t seg)
{
    snprintf(path, size, "%s/%016llu.jnl", dir, (unsigned long long) seg);
}


static int
seg_exists(uint64_t seg)
{
    char         path[512];
    struct stat  sb;

    seg_path(path, sizeof(path), seg);

    return stat(path, &sb) == 0;
}


static long
seg_size(uint64_t seg)
{
    char         path[512];
    struct stat  sb;

    seg_path(path, sizeof(path), seg);

    return stat(path, &sb) == 0 ? (long) sb.st_size : -1;
}


/* record i: "rec-<i>-" then i % 300 bytes of 'a' + i % 26 */
static size_t
make_record(char *buf, int i)
{
    int  n, k;

    n = sprintf(buf, "rec-%d-", i);

    for (k = 0; k < i % 300; k++) {
        buf[n++] = (char) ('a' + i % 26);
    }

    return (size_t) n;
}


static int
append_range(mm_journal_t *j, int from, int to)
{
    int     i;
    char    buf[512];
    size_t  len;

    for (i = from; i < to; i++) {
        len = make_record(buf, i);
        if (mm_journal_append(j, buf, len) != MM_OK) {
            return -1;
        }
    }

    return mm_journal_sync(j) == MM_OK ? 0 : -1;
}


/*
 * Reads records expecting from..to-1; returns how many matched, and in *end
 * the status of the read after them (MM_OK if there is one more record).
 */
static int
read_expect(mm_journal_reader_t *r, int from, int to, mm_status_t *end)
{
    int           i;
    char          want[512];
    size_t        len, wlen;
    const void   *data;
    mm_status_t   st;

    for (i = from; i < to; i++) {
        st = mm_journal_reader_next(r, &data, &len);
        if (st != MM_OK) {
            break;
        }

        wlen = make_record(want, i);
        if (len != wlen || memcmp(data, want, len) != 0) {
            diag("record %d differs", i);
            return -1;
        }
    }

    if (i == to) {
        st = mm_journal_reader_next(r, &data, &len);
    }

    if (end != NULL) {
        *end = st;
    }

    return i - from;
}


static void
test_round_trip(void)
{
    int                   n;
    char                  big[100000];
    size_t                len;
    const void           *data;
    mm_status_t           st, end;
    mm_journal_t         *j;
    mm_journal_reader_t  *r;
    mm_journal_pos_t      zero = { 0, 0 };
    mm_journal_conf_t     conf;

    memset(&conf, 0, sizeof(conf));
    conf.alloc = counting_alloc;
    conf.alloc_ctx = &live_allocs;

    st = mm_journal_open(&j, dir, &conf);
    is_int(st, MM_OK, "open a new journal");
    if (st != MM_OK) {
        return;
    }

    ok(seg_exists(1), "first segment is 0000000000000001.jnl");
    is_int(mm_journal_open(&(mm_journal_t *) { NULL }, dir, NULL),
           MM_EAGAIN, "a second writer is refused");

    ok(append_range(j, 0, 500) == 0, "append 500 records and sync");
    is_int(mm_journal_append(j, big, MM_JOURNAL_RECORD_MAX + 1), MM_ETOOBIG,
           "over-long record refused");

    st = mm_journal_reader_open(&r, dir, zero, &conf);
    is_int(st, MM_OK, "reader open");

    n = read_expect(r, 0, 500, &end);
    is_int(n, 500, "read back all 500 records in order");
    is_int(end, MM_EAGAIN, "then MM_EAGAIN at the end");
    ok(mm_journal_pos_cmp(mm_journal_reader_pos(r), mm_journal_end(j)) == 0,
       "reader position is the journal end");

    /* a live tail: records appended later become visible */
    memset(big, 'x', sizeof(big));
    ok(mm_journal_append(j, big, sizeof(big)) == MM_OK
       && mm_journal_append(j, "", 0) == MM_OK
       && mm_journal_sync(j) == MM_OK,
       "append a record bigger than the buffer and an empty one");

    st = mm_journal_reader_next(r, &data, &len);
    ok(st == MM_OK && len == sizeof(big) && memcmp(data, big, len) == 0,
       "reader sees the big record after sync");
    st = mm_journal_reader_next(r, &data, &len);
    ok(st == MM_OK && len == 0, "and the empty one");
    is_int(mm_journal_reader_next(r, &data, &len), MM_EAGAIN, "then the end");

    mm_journal_reader_close(&r);
    ok(r == NULL, "reader_close nulls the pointer");
    mm_journal_close(&j);
    ok(j == NULL, "close nulls the pointer");
    is_int(live_allocs, 0, "every allocation freed");

    /* reopen after close */
    st = mm_journal_open(&j, dir, &conf);
    is_int(st, MM_OK, "reopen");
    is_int(mm_journal_truncated(j), 0, "nothing truncated on a clean reopen");
    ok(append_range(j, 500, 600) == 0, "append after reopen");

    mm_journal_reader_open(&r, dir, zero, &conf);
    n = read_expect(r, 0, 500, NULL);
    is_int(n, 500, "old records still there");
    mm_journal_close(&j);
    mm_journal_reader_close(&r);
    is_int(live_allocs, 0, "every allocation freed");

    clean_dir();
}


static void
test_torn_tail(void)
{
    int                   n;
    long                  size;
    char                  path[512];
    const void           *data;
    size_t                len;
    mm_status_t           end;
    mm_journal_t         *j;
    mm_journal_reader_t  *r;
    mm_journal_pos_t      zero = { 0, 0 }, pos;

    mm_journal_open(&j, dir, NULL);
    append_range(j, 0, 10);
    pos = mm_journal_end(j);
    mm_journal_close(&j);

    /* cut the last record in the middle of its payload */
    size = seg_size(1);
    seg_path(path, sizeof(path), 1);
    ok(truncate(path, size - 5) == 0, "truncate the segment mid-record");

    mm_journal_reader_open(&r, dir, zero, NULL);
    n = read_expect(r, 0, 10, &end);
    is_int(n, 9, "reader returns the 9 whole records");
    is_int(end, MM_EAGAIN, "and stops cleanly at the torn tail");
    mm_journal_reader_close(&r);

    is_int(mm_journal_open(&j, dir, NULL), MM_OK, "reopen for writing");
    ok(mm_journal_truncated(j) > 0 && (long) mm_journal_truncated(j)
       == size - 5 - (long) (pos.off - 8 - make_record(path, 9)),
       "torn tail cut off (%llu bytes)",
       (unsigned long long) mm_journal_truncated(j));
    ok(append_range(j, 9, 12) == 0, "append after recovery");
    mm_journal_close(&j);

    mm_journal_reader_open(&r, dir, zero, NULL);
    n = read_expect(r, 0, 12, &end);
    is_int(n, 12, "all records readable, the torn one rewritten");
    mm_journal_reader_close(&r);

    /* a torn header: only 3 bytes of the next record */
    size = seg_size(1);
    seg_path(path, sizeof(path), 1);
    {
        FILE  *f = fopen(path, "a");
        fwrite("\0\0\0", 1, 3, f);
        fclose(f);
    }
    mm_journal_reader_open(&r, dir, zero, NULL);
    is_int(read_expect(r, 0, 12, &end), 12, "torn header: 12 records");
    is_int(end, MM_EAGAIN, "then the end");
    mm_journal_reader_close(&r);
    mm_journal_open(&j, dir, NULL);
    is_int(mm_journal_truncated(j), 3, "3 bytes cut off on open");
    is_int(seg_size(1), size, "segment back to its whole size");
    mm_journal_close(&j);

    (void) data;
    (void) len;
    clean_dir();
}


static void
test_corrupt(void)
{
    int                   fd, n;
    char                  path[512], c;
    mm_status_t           end;
    mm_journal_t         *j;
    mm_journal_reader_t  *r;
    mm_journal_pos_t      zero = { 0, 0 }, pos;

    mm_journal_open(&j, dir, NULL);
    append_range(j, 0, 5);
    pos = mm_journal_end(j);
    append_range(j, 5, 10);
    mm_journal_close(&j);

    /* flip a payload byte of record 5 */
    seg_path(path, sizeof(path), 1);
    fd = open(path, O_RDWR);
    pread(fd, &c, 1, (off_t) pos.off + 10);
    c ^= 0x20;
    pwrite(fd, &c, 1, (off_t) pos.off + 10);
    close(fd);

    mm_journal_reader_open(&r, dir, zero, NULL);
    n = read_expect(r, 0, 10, &end);
    is_int(n, 5, "records before the corrupt one are read");
    is_int(end, MM_ECORRUPT, "CRC mismatch reported as MM_ECORRUPT");
    ok(mm_journal_pos_cmp(mm_journal_reader_pos(r), pos) == 0,
       "reader stays at the corrupt record");
    is_int(mm_journal_reader_next(r, &(const void *) { NULL },
                                  &(size_t) { 0 }),
           MM_ECORRUPT, "and reports it again");
    mm_journal_reader_close(&r);

    /* an impossible length */
    fd = open(path, O_RDWR);
    pwrite(fd, "\xff\xff\xff\xff", 4, (off_t) pos.off);
    close(fd);
    mm_journal_reader_open(&r, dir, zero, NULL);
    read_expect(r, 0, 10, &end);
    is_int(end, MM_ECORRUPT, "a length over the limit is MM_ECORRUPT");
    mm_journal_reader_close(&r);

    /* the writer treats a corrupt tail of the last segment as torn */
    mm_journal_open(&j, dir, NULL);
    ok(mm_journal_pos_cmp(mm_journal_end(j), pos) == 0,
       "open cuts the last segment at the corrupt record");
    append_range(j, 5, 7);
    mm_journal_close(&j);
    mm_journal_reader_open(&r, dir, zero, NULL);
    is_int(read_expect(r, 0, 7, &end), 7, "appends continue after it");
    is_int(end, MM_EAGAIN, "to a clean end");
    mm_journal_reader_close(&r);

    clean_dir();
}


static void
test_rotation_commit(void)
{
    int                   i, n;
    uint64_t              seg;
    const void           *data;
    size_t                len;
    mm_status_t           end;
    mm_journal_t         *j;
    mm_journal_reader_t  *r;
    mm_journal_pos_t      zero = { 0, 0 }, pos, mid;
    mm_journal_conf_t     conf;

    memset(&conf, 0, sizeof(conf));
    conf.segment_max = 4096;
    conf.buffer_size = 1024;

    mm_journal_open(&j, dir, &conf);
    ok(append_range(j, 0, 300) == 0, "append 300 records, 4 KiB segments");
    pos = mm_journal_end(j);
    ok(pos.seg > 5, "rotated into %llu segments",
       (unsigned long long) pos.seg);

    for (seg = 1, i = 1; seg <= pos.seg; seg++) {
        if (seg_size((int) seg) > 4096 || seg_size((int) seg) < 0) {
            i = 0;
        }
    }
    ok(i, "every segment exists and is at most segment_max");

    mm_journal_reader_open(&r, dir, zero, &conf);
    n = read_expect(r, 0, 300, &end);
    is_int(n, 300, "reader follows the segments in order");
    mm_journal_reader_close(&r);

    /* commit a position in the middle */
    mm_journal_reader_open(&r, dir, zero, &conf);
    for (i = 0; i < 200; i++) {
        mm_journal_reader_next(r, &data, &len);
    }
    mid = mm_journal_reader_pos(r);
    mm_journal_reader_close(&r);

    ok(mid.seg > 2, "record 200 is in segment %llu",
       (unsigned long long) mid.seg);
    is_int(mm_journal_commit(j, mid), MM_OK, "commit");
    ok(mm_journal_pos_cmp(mm_journal_committed(j), mid) == 0,
       "committed position");

    for (seg = 1, i = 1; seg < mid.seg; seg++) {
        if (seg_exists(seg)) {
            i = 0;
        }
    }
    ok(i, "segments before the committed one are deleted");
    ok(seg_exists(mid.seg) && seg_exists(pos.seg),
       "the committed segment and later ones are kept");

    is_int(mm_journal_commit(j, zero), MM_EBADDATA,
           "committing backwards is refused");
    pos.off++;
    is_int(mm_journal_commit(j, pos), MM_EBADDATA,
           "committing past the end is refused");
    mm_journal_close(&j);

    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, mid) == 0,
       "committed file holds the position");

    is_int(mm_journal_open(&j, dir, &conf), MM_OK, "reopen");
    ok(mm_journal_pos_cmp(mm_journal_committed(j), mid) == 0,
       "commit position survives reopen");
    ok(mm_journal_lag(j) > 0, "lag is %llu bytes",
       (unsigned long long) mm_journal_lag(j));

    mm_journal_reader_open(&r, dir, mm_journal_committed(j), &conf);
    n = read_expect(r, 200, 300, &end);
    is_int(n, 100, "reading from the committed position: the other 100");

    /* reader from a deleted segment moves to the first that exists */
    mm_journal_reader_close(&r);
    mm_journal_reader_open(&r, dir, zero, &conf);
    is_int(mm_journal_reader_next(r, &data, &len), MM_OK,
           "reader from a deleted segment finds the next one");
    is_int(mm_journal_reader_pos(r).seg, mid.seg, "segment %llu",
           (unsigned long long) mid.seg);
    mm_journal_reader_close(&r);

    pos = mm_journal_end(j);
    is_int(mm_journal_commit(j, pos), MM_OK, "commit everything");
    is_int(mm_journal_lag(j), 0, "lag is 0");
    ok(!seg_exists(mid.seg) && seg_exists(pos.seg),
       "only the current segment is left");

    is_int(mm_journal_rotate(j), MM_OK, "explicit rotate");
    append_range(j, 300, 301);
    ok(mm_journal_end(j).seg == pos.seg + 1, "went to the next segment");
    mm_journal_close(&j);

    clean_dir();
}


static void
test_commit_past_tail(void)
{
    char                  path[512];
    mm_status_t           end;
    mm_journal_t         *j;
    mm_journal_reader_t  *r;
    mm_journal_pos_t      pos;

    /* data committed, then lost (as with a power cut before fdatasync) */
    mm_journal_open(&j, dir, NULL);
    append_range(j, 0, 10);
    pos = mm_journal_end(j);
    mm_journal_commit(j, pos);
    mm_journal_close(&j);

    seg_path(path, sizeof(path), 1);
    truncate(path, 20);

    mm_journal_open(&j, dir, NULL);
    is_int(mm_journal_end(j).seg, 2, "writer continues in a new segment");
    append_range(j, 10, 15);
    mm_journal_close(&j);

    mm_journal_reader_open(&r, dir, pos, NULL);
    is_int(read_expect(r, 10, 15, &end), 5,
           "new records are read from the committed position");
    mm_journal_reader_close(&r);

    clean_dir();
}


/* write len bytes of text at off of dir/committed (creating it) */
static void
committed_write(const char *text, size_t len, off_t off, int trunc)
{
    int   fd;
    char  path[512];

    snprintf(path, sizeof(path), "%s/committed", dir);
    fd = open(path, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0), 0600);
    if (fd < 0 || pwrite(fd, text, len, off) != (ssize_t) len) {
        perror(path);
        exit(1);
    }
    close(fd);
}


static void
test_committed_slots(void)
{
    char              path[512], text[64];
    struct stat       sb;
    mm_journal_t     *j;
    mm_journal_pos_t  a, b, c, pos;

    is_int(mm_journal_open(&j, dir, NULL), MM_OK, "slots: open");
    append_range(j, 0, 5);
    a = mm_journal_end(j);
    append_range(j, 5, 10);
    b = mm_journal_end(j);
    append_range(j, 10, 15);
    c = mm_journal_end(j);
    mm_journal_sync(j);

    is_int(mm_journal_commit(j, a), MM_OK, "first commit");
    snprintf(path, sizeof(path), "%s/committed", dir);
    if (stat(path, &sb) != 0) {
        sb.st_size = -1;
    }
    is_int(sb.st_size, 4096 + 43, "the first commit writes both slots");
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, a) == 0, "slots: position a");

    is_int(mm_journal_commit(j, b), MM_OK, "second commit");
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, b) == 0, "slots: position b");
    is_int(mm_journal_commit(j, c), MM_OK, "third commit");
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, c) == 0, "slots: position c");
    mm_journal_close(&j);

    /* the slot written last is torn: the other one, older, is the position */
    committed_write("0000000000000009", 16, 4096, 0);
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, b) == 0,
       "a torn slot: the other slot's older position");

    is_int(mm_journal_open(&j, dir, NULL), MM_OK, "open with a torn slot");
    ok(mm_journal_pos_cmp(mm_journal_committed(j), b) == 0,
       "the journal starts from the older position");
    is_int(mm_journal_commit(j, c), MM_OK, "commit again");
    mm_journal_close(&j);
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, c) == 0, "position c again");

    /* both slots unreadable */
    committed_write("x", 1, 0, 0);
    committed_write("x", 1, 4096 + 40, 0);
    pos.seg = 7;
    is_int(mm_journal_read_committed(dir, &pos), MM_ECORRUPT,
           "both slots torn: corrupt");
    is_int(mm_journal_open(&j, dir, NULL), MM_ECORRUPT,
           "open refuses a corrupt committed file");

    /* the one-line file of earlier versions */
    snprintf(text, sizeof(text), "%llu %llu\n", (unsigned long long) b.seg,
             (unsigned long long) b.off);
    committed_write(text, strlen(text), 0, 1);
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, b) == 0, "the one-line format is read");
    committed_write("1 2\n3", 5, 0, 1);
    is_int(mm_journal_read_committed(dir, &pos), MM_ECORRUPT,
           "one line and more: corrupt");
    committed_write(text, strlen(text), 0, 1);

    is_int(mm_journal_open(&j, dir, NULL), MM_OK, "open a one-line file");
    ok(mm_journal_pos_cmp(mm_journal_committed(j), b) == 0,
       "its position");
    is_int(mm_journal_commit(j, c), MM_OK, "commit over a one-line file");
    if (stat(path, &sb) != 0) {
        sb.st_size = -1;
    }
    is_int(sb.st_size, 4096 + 43, "rewritten with two slots");
    mm_journal_close(&j);
    ok(mm_journal_read_committed(dir, &pos) == MM_OK
       && mm_journal_pos_cmp(pos, c) == 0, "position c in the slots");

    clean_dir();
}


int
main(void)
{
    const char  *tmp;

    tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/test_journal.XXXXXX",
             tmp != NULL ? tmp : "/tmp");

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    test_round_trip();
    test_torn_tail();
    test_corrupt();
    test_rotation_commit();
    test_commit_past_tail();
    test_committed_slots();

    clean_dir();
    rmdir(dir);

    return done_testing();
}
