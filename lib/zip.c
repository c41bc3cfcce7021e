/*
 * Streaming ZIP writer: see zip.h.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "zip.h"


#define MM_ZIP_MAX16            0xffffU
#define MM_ZIP_MAX32            0xffffffffULL

#define MM_ZIP_SIG_LOCAL        0x04034b50
#define MM_ZIP_SIG_CENTRAL      0x02014b50
#define MM_ZIP_SIG_DESCRIPTOR   0x08074b50
#define MM_ZIP_SIG_END64        0x06064b50
#define MM_ZIP_SIG_LOCATOR64    0x07064b50
#define MM_ZIP_SIG_END          0x06054b50

#define MM_ZIP_GP_DESCRIPTOR    0x0008      /* bit 3 */
#define MM_ZIP_GP_UTF8          0x0800      /* bit 11 */

#define MM_ZIP_VERSION          20          /* 2.0: stored, directories */
#define MM_ZIP_VERSION64        45          /* 4.5: ZIP64 */
#define MM_ZIP_MADE_BY          ((3 << 8) | 63)     /* UNIX, spec 6.3 */
#define MM_ZIP_EXTERNAL_ATTR    (0100644U << 16)    /* regular, rw-r--r-- */

#define MM_ZIP_LOCAL_SIZE       30
#define MM_ZIP_CENTRAL_SIZE     46
#define MM_ZIP_END64_SIZE       56
#define MM_ZIP_LOCATOR64_SIZE   20
#define MM_ZIP_END_SIZE         22
#define MM_ZIP_LOCAL_EXTRA64    (4 + 16)

#define MM_ZIP_OUT_SIZE         (16 * 1024)
#define MM_ZIP_CRC_BUF          (64 * 1024)


struct mm_zip_s {
    mm_zip_conf_t    conf;
    uint64_t         pos;
    mm_zip_entry_t  *entries;
    size_t           n;
    size_t           nalloc;
    int              open;
    int              finished;
    mm_zip_entry_t   cur;           /* the open entry; name is owned */
    uint64_t         done;          /* its data bytes so far */
    uint32_t         crc;           /* and their CRC */
};


/* a write buffer in front of the callback, for the central directory */
typedef struct {
    mm_zip_write_pt  write;
    void            *ctx;
    uint64_t         off;           /* archive offset of buf[0] */
    size_t           len;
    mm_status_t      st;
    uint8_t          buf[MM_ZIP_OUT_SIZE];
} mm_zip_out_t;


static void *mm_zip_default_alloc(void *ctx, void *p, size_t size);
static void mm_zip_put16(uint8_t *p, uint32_t v);
static void mm_zip_put32(uint8_t *p, uint32_t v);
static void mm_zip_put64(uint8_t *p, uint64_t v);
static uint32_t mm_zip_clamp32(uint64_t v);
static int mm_zip_local_zip64(const mm_zip_entry_t *e);
static unsigned mm_zip_version(const mm_zip_entry_t *e);
static size_t mm_zip_central_extra_size(const mm_zip_entry_t *e);
static size_t mm_zip_put_central_header(const mm_zip_entry_t *e,
    uint8_t *buf);
static int mm_zip_end64_needed(size_t n, uint64_t cd_size,
    uint64_t cd_offset);
static size_t mm_zip_put_end(size_t n, uint64_t cd_size, uint64_t cd_offset,
    uint8_t *buf);
static void mm_zip_out_append(mm_zip_out_t *o, const void *p, size_t len);
static void mm_zip_out_flush(mm_zip_out_t *o);
static mm_status_t mm_zip_copy_entry(mm_zip_t *z, mm_zip_entry_t *dst,
    const mm_zip_entry_t *src);
static void mm_zip_free_name(mm_zip_t *z, mm_zip_entry_t *e);


/* --- encoding ---------------------------------------------------------- */

static void
mm_zip_put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
}


static void
mm_zip_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) (v >> 16);
    p[3] = (uint8_t) (v >> 24);
}


static void
mm_zip_put64(uint8_t *p, uint64_t v)
{
    mm_zip_put32(p, (uint32_t) v);
    mm_zip_put32(p + 4, (uint32_t) (v >> 32));
}


/* a 32-bit field: the value, or 0xFFFFFFFF meaning "see the ZIP64 extra" */
static uint32_t
mm_zip_clamp32(uint64_t v)
{
    return v >= MM_ZIP_MAX32 ? (uint32_t) MM_ZIP_MAX32 : (uint32_t) v;
}


unsigned
mm_zip_entry_flags(uint64_t size)
{
    if (size == MM_ZIP_SIZE_UNKNOWN) {
        return MM_ZIP_DESCRIPTOR | MM_ZIP_ZIP64;
    }

    return size >= MM_ZIP_MAX32 ? MM_ZIP_ZIP64 : 0;
}


/* whether the local header has (had) the ZIP64 extra field */
static int
mm_zip_local_zip64(const mm_zip_entry_t *e)
{
    return (e->flags & MM_ZIP_ZIP64)
           || (!(e->flags & MM_ZIP_DESCRIPTOR) && e->size >= MM_ZIP_MAX32);
}


/* a pure function of the record, so local and central headers agree */
static unsigned
mm_zip_version(const mm_zip_entry_t *e)
{
    if (mm_zip_local_zip64(e) || e->size >= MM_ZIP_MAX32
        || e->offset >= MM_ZIP_MAX32)
    {
        return MM_ZIP_VERSION64;
    }

    return MM_ZIP_VERSION;
}


void
mm_zip_dos_time(int64_t t, uint16_t *date, uint16_t *time)
{
    int64_t   days, secs, z, era, doe, yoe, y, doy, mp, d, m;

    /* 1980-01-01 00:00:00 and 2107-12-31 23:59:58 UTC */
    if (t < 315532800) {
        t = 315532800;

    } else if (t > 4354819198LL) {
        t = 4354819198LL;
    }

    days = t / 86400;
    secs = t % 86400;

    /* civil_from_days (H. Hinnant), days since 1970-01-01 >= 0 here */
    z = days + 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += (m <= 2);

    *date = (uint16_t) (((y - 1980) << 9) | (m << 5) | d);
    *time = (uint16_t) (((secs / 3600) << 11) | ((secs / 60 % 60) << 5)
                        | (secs % 60 / 2));
}


size_t
mm_zip_local_header_size(const mm_zip_entry_t *e)
{
    return MM_ZIP_LOCAL_SIZE + e->name_len
           + (mm_zip_local_zip64(e) ? MM_ZIP_LOCAL_EXTRA64 : 0);
}


size_t
mm_zip_put_local_header(const mm_zip_entry_t *e, uint8_t *buf)
{
    int       z64, desc;
    uint8_t  *p;
    uint16_t  date, time;
    uint64_t  size;
    uint32_t  crc;

    z64 = mm_zip_local_zip64(e);
    desc = (e->flags & MM_ZIP_DESCRIPTOR) != 0;
    size = desc ? 0 : e->size;
    crc = desc ? 0 : e->crc;

    mm_zip_dos_time(e->mtime, &date, &time);

    p = buf;
    mm_zip_put32(p, MM_ZIP_SIG_LOCAL);
    mm_zip_put16(p + 4, mm_zip_version(e));
    mm_zip_put16(p + 6, MM_ZIP_GP_UTF8 | (desc ? MM_ZIP_GP_DESCRIPTOR : 0));
    mm_zip_put16(p + 8, 0);
    mm_zip_put16(p + 10, time);
    mm_zip_put16(p + 12, date);
    mm_zip_put32(p + 14, crc);
    mm_zip_put32(p + 18, z64 ? (uint32_t) MM_ZIP_MAX32 : (uint32_t) size);
    mm_zip_put32(p + 22, z64 ? (uint32_t) MM_ZIP_MAX32 : (uint32_t) size);
    mm_zip_put16(p + 26, (uint32_t) e->name_len);
    mm_zip_put16(p + 28, z64 ? MM_ZIP_LOCAL_EXTRA64 : 0);
    p += MM_ZIP_LOCAL_SIZE;

    memcpy(p, e->name, e->name_len);
    p += e->name_len;

    if (z64) {
        /* the local ZIP64 extra holds both sizes, always */
        mm_zip_put16(p, 0x0001);
        mm_zip_put16(p + 2, 16);
        mm_zip_put64(p + 4, size);
        mm_zip_put64(p + 12, size);
        p += MM_ZIP_LOCAL_EXTRA64;
    }

    return (size_t) (p - buf);
}


size_t
mm_zip_descriptor_size(const mm_zip_entry_t *e)
{
    if (!(e->flags & MM_ZIP_DESCRIPTOR)) {
        return 0;
    }

    return mm_zip_local_zip64(e) ? 24 : 16;
}


size_t
mm_zip_put_descriptor(const mm_zip_entry_t *e, uint8_t *buf)
{
    if (!(e->flags & MM_ZIP_DESCRIPTOR)) {
        return 0;
    }

    mm_zip_put32(buf, MM_ZIP_SIG_DESCRIPTOR);
    mm_zip_put32(buf + 4, e->crc);

    if (mm_zip_local_zip64(e)) {
        mm_zip_put64(buf + 8, e->size);
        mm_zip_put64(buf + 16, e->size);
        return 24;
    }

    mm_zip_put32(buf + 8, (uint32_t) e->size);
    mm_zip_put32(buf + 12, (uint32_t) e->size);

    return 16;
}


uint64_t
mm_zip_entry_span(const mm_zip_entry_t *e)
{
    return mm_zip_local_header_size(e) + e->size + mm_zip_descriptor_size(e);
}


/* the central ZIP64 extra: only the fields whose 32-bit slot overflowed */
static size_t
mm_zip_central_extra_size(const mm_zip_entry_t *e)
{
    size_t  n;

    n = 0;

    if (e->size >= MM_ZIP_MAX32) {
        n += 16;                /* uncompressed and compressed size */
    }

    if (e->offset >= MM_ZIP_MAX32) {
        n += 8;
    }

    return n ? 4 + n : 0;
}


/* fixed part and extra field; the name goes between them */
static size_t
mm_zip_put_central_header(const mm_zip_entry_t *e, uint8_t *buf)
{
    size_t    extra;
    uint8_t  *p;
    uint16_t  date, time;

    extra = mm_zip_central_extra_size(e);

    mm_zip_dos_time(e->mtime, &date, &time);

    p = buf;
    mm_zip_put32(p, MM_ZIP_SIG_CENTRAL);
    mm_zip_put16(p + 4, MM_ZIP_MADE_BY);
    mm_zip_put16(p + 6, mm_zip_version(e));
    mm_zip_put16(p + 8, MM_ZIP_GP_UTF8
                        | ((e->flags & MM_ZIP_DESCRIPTOR)
                           ? MM_ZIP_GP_DESCRIPTOR : 0));
    mm_zip_put16(p + 10, 0);
    mm_zip_put16(p + 12, time);
    mm_zip_put16(p + 14, date);
    mm_zip_put32(p + 16, e->crc);
    mm_zip_put32(p + 20, mm_zip_clamp32(e->size));
    mm_zip_put32(p + 24, mm_zip_clamp32(e->size));
    mm_zip_put16(p + 28, (uint32_t) e->name_len);
    mm_zip_put16(p + 30, (uint32_t) extra);
    mm_zip_put16(p + 32, 0);                    /* comment */
    mm_zip_put16(p + 34, 0);                    /* disk */
    mm_zip_put16(p + 36, 0);                    /* internal attributes */
    mm_zip_put32(p + 38, MM_ZIP_EXTERNAL_ATTR);
    mm_zip_put32(p + 42, mm_zip_clamp32(e->offset));
    p += MM_ZIP_CENTRAL_SIZE;

    if (extra) {
        mm_zip_put16(p, 0x0001);
        mm_zip_put16(p + 2, (uint32_t) (extra - 4));
        p += 4;

        if (e->size >= MM_ZIP_MAX32) {
            mm_zip_put64(p, e->size);
            mm_zip_put64(p + 8, e->size);
            p += 16;
        }

        if (e->offset >= MM_ZIP_MAX32) {
            mm_zip_put64(p, e->offset);
            p += 8;
        }
    }

    return (size_t) (p - buf);
}


static int
mm_zip_end64_needed(size_t n, uint64_t cd_size, uint64_t cd_offset)
{
    return n >= MM_ZIP_MAX16 || cd_size >= MM_ZIP_MAX32
           || cd_offset >= MM_ZIP_MAX32;
}


/* [ZIP64 end record, locator,] end record; buf has MM_ZIP_END_MAX bytes */
static size_t
mm_zip_put_end(size_t n, uint64_t cd_size, uint64_t cd_offset, uint8_t *buf)
{
    uint8_t  *p;
    uint32_t  count;

    p = buf;

    if (mm_zip_end64_needed(n, cd_size, cd_offset)) {
        mm_zip_put32(p, MM_ZIP_SIG_END64);
        mm_zip_put64(p + 4, MM_ZIP_END64_SIZE - 12);
        mm_zip_put16(p + 12, MM_ZIP_MADE_BY);
        mm_zip_put16(p + 14, MM_ZIP_VERSION64);
        mm_zip_put32(p + 16, 0);                    /* this disk */
        mm_zip_put32(p + 20, 0);                    /* disk of the cd */
        mm_zip_put64(p + 24, n);
        mm_zip_put64(p + 32, n);
        mm_zip_put64(p + 40, cd_size);
        mm_zip_put64(p + 48, cd_offset);
        p += MM_ZIP_END64_SIZE;

        mm_zip_put32(p, MM_ZIP_SIG_LOCATOR64);
        mm_zip_put32(p + 4, 0);
        mm_zip_put64(p + 8, cd_offset + cd_size);   /* the ZIP64 end */
        mm_zip_put32(p + 16, 1);                    /* disks */
        p += MM_ZIP_LOCATOR64_SIZE;
    }

    count = n >= MM_ZIP_MAX16 ? MM_ZIP_MAX16 : (uint32_t) n;

    mm_zip_put32(p, MM_ZIP_SIG_END);
    mm_zip_put16(p + 4, 0);
    mm_zip_put16(p + 6, 0);
    mm_zip_put16(p + 8, count);
    mm_zip_put16(p + 10, count);
    mm_zip_put32(p + 12, mm_zip_clamp32(cd_size));
    mm_zip_put32(p + 16, mm_zip_clamp32(cd_offset));
    mm_zip_put16(p + 20, 0);                        /* comment */
    p += MM_ZIP_END_SIZE;

    return (size_t) (p - buf);
}


uint64_t
mm_zip_central_directory_size(const mm_zip_entry_t *entries, size_t n,
    uint64_t cd_offset)
{
    size_t    i;
    uint64_t  size;

    size = 0;

    for (i = 0; i < n; i++) {
        size += MM_ZIP_CENTRAL_SIZE + entries[i].name_len
                + mm_zip_central_extra_size(&entries[i]);
    }

    if (mm_zip_end64_needed(n, size, cd_offset)) {
        size += MM_ZIP_END64_SIZE + MM_ZIP_LOCATOR64_SIZE;
    }

    return size + MM_ZIP_END_SIZE;
}


uint64_t
mm_zip_archive_size(const mm_zip_entry_t *entries, size_t n)
{
    size_t          i;
    uint64_t        off, cd, end;
    mm_zip_entry_t  e;

    off = 0;
    cd = 0;

    /* the central ZIP64 extras depend on the offsets of the layout */
    for (i = 0; i < n; i++) {
        e = entries[i];
        e.offset = off;
        off += mm_zip_entry_span(&e);
        cd += MM_ZIP_CENTRAL_SIZE + e.name_len + mm_zip_central_extra_size(&e);
    }

    end = MM_ZIP_END_SIZE;

    if (mm_zip_end64_needed(n, cd, off)) {
        end += MM_ZIP_END64_SIZE + MM_ZIP_LOCATOR64_SIZE;
    }

    return off + cd + end;
}


/* --- the central directory ---------------------------------------------- */

static void
mm_zip_out_flush(mm_zip_out_t *o)
{
    if (o->st == MM_OK && o->len > 0) {
        o->st = o->write(o->ctx, o->buf, o->len, o->off);
    }

    o->off += o->len;
    o->len = 0;
}


static void
mm_zip_out_append(mm_zip_out_t *o, const void *p, size_t len)
{
    if (len > sizeof(o->buf) - o->len) {
        mm_zip_out_flush(o);

        if (len > sizeof(o->buf)) {
            if (o->st == MM_OK) {
                o->st = o->write(o->ctx, p, len, o->off);
            }

            o->off += len;
            return;
        }
    }

    memcpy(o->buf + o->len, p, len);
    o->len += len;
}


mm_status_t
mm_zip_central_directory(const mm_zip_entry_t *entries, size_t n,
    uint64_t cd_offset, mm_zip_write_pt write, void *ctx, uint64_t *end)
{
    size_t         i, len;
    uint8_t        hdr[MM_ZIP_CENTRAL_SIZE + 28];
    uint8_t        tail[MM_ZIP_END_MAX];
    mm_zip_out_t   out, *o;

    for (i = 0; i < n; i++) {
        if (entries[i].name_len == 0
            || entries[i].name_len > MM_ZIP_NAME_MAX)
        {
            return MM_EBADDATA;
        }
    }

    o = &out;
    o->write = write;
    o->ctx = ctx;
    o->off = cd_offset;
    o->len = 0;
    o->st = MM_OK;

    for (i = 0; i < n; i++) {
        len = mm_zip_put_central_header(&entries[i], hdr);

        mm_zip_out_append(o, hdr, MM_ZIP_CENTRAL_SIZE);
        mm_zip_out_append(o, entries[i].name, entries[i].name_len);
        mm_zip_out_append(o, hdr + MM_ZIP_CENTRAL_SIZE,
                          len - MM_ZIP_CENTRAL_SIZE);
    }

    mm_zip_out_flush(o);

    len = mm_zip_put_end(n, o->off - cd_offset, cd_offset, tail);
    mm_zip_out_append(o, tail, len);
    mm_zip_out_flush(o);

    *end = o->off;

    return o->st;
}


/* --- file descriptors ------------------------------------------------- */

mm_status_t
mm_zip_fd_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
    int          fd;
    ssize_t      n;
    const char  *p;

    fd = *(int *) ctx;
    p = buf;

    while (len > 0) {
        n = pwrite(fd, p, len, (off_t) off);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }

            return MM_EIO;
        }

        if (n == 0) {
            errno = ENOSPC;
            return MM_EIO;
        }

        p += n;
        off += (uint64_t) n;
        len -= (size_t) n;
    }

    return MM_OK;
}


mm_status_t
mm_zip_crc_fd(int fd, uint64_t off, uint64_t len, uint32_t *crc)
{
    size_t      want;
    ssize_t     n;
    uint8_t    *buf;
    uint32_t    c;
    mm_status_t st;

    buf = malloc(MM_ZIP_CRC_BUF);
    if (buf == NULL) {
        return MM_ENOMEM;
    }

    c = *crc;
    st = MM_OK;

    while (len > 0) {
        want = len < MM_ZIP_CRC_BUF ? (size_t) len : MM_ZIP_CRC_BUF;
        n = pread(fd, buf, want, (off_t) off);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }

            st = MM_EIO;
            break;
        }

        if (n == 0) {
            st = MM_EBADDATA;
            break;
        }

        c = (uint32_t) crc32_z(c, buf, (size_t) n);
        off += (uint64_t) n;
        len -= (uint64_t) n;
    }

    free(buf);

    if (st == MM_OK) {
        *crc = c;
    }

    return st;
}


/* --- the writer ---------------------------------------------------------- */

static void *
mm_zip_default_alloc(void *ctx, void *p, size_t size)
{
    if (size == 0) {
        free(p);
        return NULL;
    }

    return realloc(p, size);
}


mm_status_t
mm_zip_new(mm_zip_t **zp, const mm_zip_conf_t *conf, uint64_t pos)
{
    mm_zip_t         *z;
    mm_zip_alloc_pt   alloc;

    alloc = conf->alloc ? conf->alloc : mm_zip_default_alloc;

    z = alloc(conf->alloc_ctx, NULL, sizeof(mm_zip_t));
    if (z == NULL) {
        *zp = NULL;
        return MM_ENOMEM;
    }

    memset(z, 0, sizeof(mm_zip_t));
    z->conf = *conf;
    z->conf.alloc = alloc;
    z->pos = pos;

    *zp = z;

    return MM_OK;
}


static void
mm_zip_free_name(mm_zip_t *z, mm_zip_entry_t *e)
{
    if (e->name != NULL) {
        z->conf.alloc(z->conf.alloc_ctx, (void *) e->name, 0);
        e->name = NULL;
    }
}


void
mm_zip_destroy(mm_zip_t **zp)
{
    size_t     i;
    mm_zip_t  *z;

    z = *zp;
    if (z == NULL) {
        return;
    }

    for (i = 0; i < z->n; i++) {
        mm_zip_free_name(z, &z->entries[i]);
    }

    if (z->entries != NULL) {
        z->conf.alloc(z->conf.alloc_ctx, z->entries, 0);
    }

    mm_zip_free_name(z, &z->cur);

    z->conf.alloc(z->conf.alloc_ctx, z, 0);
    *zp = NULL;
}


/* *dst = *src with a copy of the name */
static mm_status_t
mm_zip_copy_entry(mm_zip_t *z, mm_zip_entry_t *dst, const mm_zip_entry_t *src)
{
    char  *name;

    if (src->name_len == 0 || src->name_len > MM_ZIP_NAME_MAX
        || src->name == NULL)
    {
        return MM_EBADDATA;
    }

    name = z->conf.alloc(z->conf.alloc_ctx, NULL, src->name_len);
    if (name == NULL) {
        return MM_ENOMEM;
    }

    memcpy(name, src->name, src->name_len);

    *dst = *src;
    dst->name = name;

    return MM_OK;
}


/* appends the open (finished) entry to the records, taking its name */
static mm_status_t
mm_zip_record(mm_zip_t *z, mm_zip_entry_t *e)
{
    size_t           nalloc;
    mm_zip_entry_t  *p;

    if (z->n == z->nalloc) {
        nalloc = z->nalloc ? z->nalloc * 2 : 16;

        if (nalloc > SIZE_MAX / sizeof(mm_zip_entry_t)) {
            return MM_ENOMEM;
        }

        p = z->conf.alloc(z->conf.alloc_ctx, z->entries,
                          nalloc * sizeof(mm_zip_entry_t));
        if (p == NULL) {
            return MM_ENOMEM;
        }

        z->entries = p;
        z->nalloc = nalloc;
    }

    z->entries[z->n++] = *e;

    return MM_OK;
}


mm_status_t
mm_zip_restore(mm_zip_t *z, const mm_zip_entry_t *e)
{
    uint64_t        end;
    mm_zip_entry_t  copy;
    mm_status_t     st;

    if (z->open || z->finished) {
        return MM_EBADDATA;
    }

    st = mm_zip_copy_entry(z, &copy, e);
    if (st != MM_OK) {
        return st;
    }

    st = mm_zip_record(z, &copy);
    if (st != MM_OK) {
        mm_zip_free_name(z, &copy);
        return st;
    }

    end = e->offset + mm_zip_entry_span(e);

    if (end > z->pos) {
        z->pos = end;
    }

    return MM_OK;
}


mm_status_t
mm_zip_entry_begin(mm_zip_t *z, const char *name, size_t name_len,
    uint64_t size, int64_t mtime)
{
    size_t          len;
    uint8_t        *hdr;
    mm_zip_entry_t  e;
    mm_status_t     st;

    if (z->open || z->finished) {
        return MM_EBADDATA;
    }

    e.name = name;
    e.name_len = name_len;
    e.offset = z->pos;
    e.size = size == MM_ZIP_SIZE_UNKNOWN ? 0 : size;
    e.crc = 0;
    e.mtime = mtime;
    e.flags = mm_zip_entry_flags(size);

    st = mm_zip_copy_entry(z, &z->cur, &e);
    if (st != MM_OK) {
        return st;
    }

    len = mm_zip_local_header_size(&e);

    hdr = z->conf.alloc(z->conf.alloc_ctx, NULL, len);
    if (hdr == NULL) {
        mm_zip_free_name(z, &z->cur);
        return MM_ENOMEM;
    }

    mm_zip_put_local_header(&e, hdr);

    st = z->conf.write(z->conf.ctx, hdr, len, z->pos);

    z->conf.alloc(z->conf.alloc_ctx, hdr, 0);

    if (st != MM_OK) {
        mm_zip_free_name(z, &z->cur);
        return st;
    }

    z->pos += len;
    z->done = 0;
    z->crc = 0;
    z->open = 1;

    return MM_OK;
}


mm_status_t
mm_zip_entry_resume(mm_zip_t *z, const mm_zip_entry_t *e, uint64_t done,
    uint32_t crc)
{
    mm_status_t  st;

    if (z->open || z->finished) {
        return MM_EBADDATA;
    }

    if (!(e->flags & MM_ZIP_DESCRIPTOR) && done > e->size) {
        return MM_EBADDATA;
    }

    st = mm_zip_copy_entry(z, &z->cur, e);
    if (st != MM_OK) {
        return st;
    }

    if (e->flags & MM_ZIP_DESCRIPTOR) {
        z->cur.size = 0;
    }

    z->cur.crc = 0;
    z->pos = e->offset + mm_zip_local_header_size(e) + done;
    z->done = done;
    z->crc = crc;
    z->open = 1;

    return MM_OK;
}


mm_status_t
mm_zip_entry_write(mm_zip_t *z, const void *data, size_t len)
{
    mm_status_t  st;

    if (!z->open) {
        return MM_EBADDATA;
    }

    if (!(z->cur.flags & MM_ZIP_DESCRIPTOR) && len > z->cur.size - z->done) {
        return MM_ETOOBIG;
    }

    if (len == 0) {
        return MM_OK;
    }

    st = z->conf.write(z->conf.ctx, data, len, z->pos);
    if (st != MM_OK) {
        return st;
    }

    z->crc = (uint32_t) crc32_z(z->crc, data, len);
    z->pos += len;
    z->done += len;

    return MM_OK;
}


mm_status_t
mm_zip_entry_written(mm_zip_t *z, uint64_t len, uint32_t crc)
{
    if (!z->open) {
        return MM_EBADDATA;
    }

    if (!(z->cur.flags & MM_ZIP_DESCRIPTOR) && len > z->cur.size - z->done) {
        return MM_ETOOBIG;
    }

    if (len > UINT64_MAX - z->pos) {
        return MM_ETOOBIG;
    }

    z->crc = (uint32_t) crc32_combine(z->crc, crc, (z_off_t) len);
    z->pos += len;
    z->done += len;

    return MM_OK;
}


mm_status_t
mm_zip_entry_end(mm_zip_t *z, mm_zip_entry_t *out)
{
    size_t       len;
    uint8_t      buf[24];
    mm_status_t  st;

    if (!z->open) {
        return MM_EBADDATA;
    }

    z->cur.crc = z->crc;

    if (z->cur.flags & MM_ZIP_DESCRIPTOR) {
        z->cur.size = z->done;

        len = mm_zip_put_descriptor(&z->cur, buf);

        st = z->conf.write(z->conf.ctx, buf, len, z->pos);
        if (st != MM_OK) {
            return st;
        }

        z->pos += len;

    } else {
        if (z->done != z->cur.size) {
            return MM_EBADDATA;
        }

        mm_zip_put32(buf, z->crc);

        st = z->conf.write(z->conf.ctx, buf, 4, z->cur.offset + 14);
        if (st != MM_OK) {
            return st;
        }
    }

    st = mm_zip_record(z, &z->cur);
    if (st != MM_OK) {
        return st;
    }

    if (out != NULL) {
        *out = z->cur;
    }

    z->cur.name = NULL;
    z->open = 0;

    return MM_OK;
}


void
mm_zip_entry_abort(mm_zip_t *z)
{
    if (!z->open) {
        return;
    }

    z->pos = z->cur.offset;
    mm_zip_free_name(z, &z->cur);
    z->open = 0;
}


mm_status_t
mm_zip_entry_current(const mm_zip_t *z, mm_zip_entry_t *e, uint64_t *done,
    uint32_t *crc)
{
    if (!z->open) {
        return MM_ENOTFOUND;
    }

    *e = z->cur;
    *done = z->done;
    *crc = z->crc;

    return MM_OK;
}


uint64_t
mm_zip_pos(const mm_zip_t *z)
{
    return z->pos;
}


const mm_zip_entry_t *
mm_zip_entries(const mm_zip_t *z, size_t *n)
{
    *n = z->n;
    return z->entries;
}


mm_status_t
mm_zip_finish(mm_zip_t *z, uint64_t *size)
{
    mm_status_t  st;

    if (z->open || z->finished) {
        return MM_EBADDATA;
    }

    st = mm_zip_central_directory(z->entries, z->n, z->pos, z->conf.write,
                                  z->conf.ctx, size);
    if (st == MM_OK) {
        z->finished = 1;
    }

    return st;
}
