/*
 * ZIP writer: archives with 0, 1 and several entries (empty, UTF-8 names,
 * known and unknown sizes, chunked and accounted writes) checked by two
 * independent readers (Info-ZIP unzip -t / extraction and Python's
 * zipfile) against the input bytes; DOS times; the central directory
 * rebuilt from stored records; resuming after a simulated crash; aborted
 * entries; errors; and ZIP64 both by entry count (> 65535 empty entries)
 * and by size (sparse entries over 4 GiB, known and unknown size).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "buf.h"
#include "zip.h"
#include "tap.h"


#define MTIME       1709214358      /* 2024-02-29 13:45:58 UTC */
#define TMP_PATH    1400
#define BIG_SIZE    (4ULL * 1024 * 1024 * 1024 + 100 * 1024 * 1024 + 7)


/*
 * Prints one line per entry as seen by Python's zipfile:
 *   E <name hex> <size> <csize> <crc> <flags> <version> <offset> <date>
 *     <content: "x" + hex when read and <= dump bytes, "big", or "-">
 * After reading an entry it checks size and CRC itself (zipfile checks the
 * CRC too). argv: zip, dump (-1: read nothing), names (hex) of which to
 * read only the first MiB ("part": reading 4 GiB takes Python too long).
 */
static const char  zip_check_py[] =
    "import sys, zipfile, zlib\n"
    "path, dump, part = sys.argv[1], int(sys.argv[2]), set(sys.argv[3:])\n"
    "with open(path, 'rb') as f:\n"
    "    f.seek(0, 2)\n"
    "    size = f.tell()\n"
    "    f.seek(max(0, size - 42))\n"
    "    tail = f.read()\n"
    "print('zip64end', int(len(tail) == 42 and tail[:4] == b'PK\\x06\\x07'))\n"
    "with zipfile.ZipFile(path) as zf:\n"
    "    infos = zf.infolist()\n"
    "    print('entries', len(infos))\n"
    "    for i in infos:\n"
    "        h = i.filename.encode('utf-8').hex()\n"
    "        content = '-'\n"
    "        if dump >= 0 and h in part:\n"
    "            with zf.open(i) as r:\n"
    "                content = 'part' if len(r.read(1 << 20)) == 1 << 20 \\\n"
    "                          else 'short'\n"
    "        elif dump >= 0:\n"
    "            crc, n, buf = 0, 0, bytearray()\n"
    "            with zf.open(i) as r:\n"
    "                while True:\n"
    "                    b = r.read(1 << 22)\n"
    "                    if not b:\n"
    "                        break\n"
    "                    crc = zlib.crc32(b, crc)\n"
    "                    n += len(b)\n"
    "                    if n <= dump:\n"
    "                        buf += b\n"
    "            if crc != i.CRC or n != i.file_size:\n"
    "                sys.exit('size or CRC mismatch: ' + i.filename)\n"
    "            content = 'x' + buf.hex() if n <= dump else 'big'\n"
    "        print('E', h, i.file_size, i.compress_size, i.CRC, i.flag_bits,\n"
    "              i.extract_version, i.header_offset,\n"
    "              '%d-%02d-%02d %02d:%02d:%02d' % i.date_time, content)\n"
    "print('ok')\n";


typedef struct {
    char       *name;
    size_t      name_len;
    uint64_t    size;
    uint64_t    csize;
    uint32_t    crc;
    unsigned    flags;
    unsigned    version;
    uint64_t    offset;
    char        date[20];
    int         read;           /* content below is valid */
    int         big;            /* read, too big to dump */
    int         part;           /* its first MiB read */
    uint8_t    *content;
    size_t      content_len;
} py_entry_t;


typedef struct {
    int          ok;            /* the script ended with "ok" */
    int          zip64end;
    size_t       n;
    py_entry_t  *e;
} py_result_t;


typedef struct {
    const char     *name;
    const uint8_t  *data;
    uint64_t        size;
    int             unknown;    /* write with MM_ZIP_SIZE_UNKNOWN */
} input_t;


typedef struct {
    uint8_t   *data;
    size_t     len;
    size_t     cap;
    uint64_t   base;            /* archive offset of data[0] */
    int        fail;            /* writes fail once this reaches 1 */
} sink_t;


static char         tmpdir[256];
static char         script[300];
static const char  *python;


/* --- helpers ------------------------------------------------------------ */

/* path of a file in the test's directory, in buf (TMP_PATH bytes) */
static const char *
tmp_path(char *buf, const char *name)
{
    snprintf(buf, TMP_PATH, "%s/%s", tmpdir, name);

    return buf;
}


static TAP_FMT(1, 2) int
run(const char *fmt, ...)
{
    int      st;
    char     cmd[2048];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);

    st = system(cmd);

    if (st == -1 || !WIFEXITED(st)) {
        return -1;
    }

    return WEXITSTATUS(st);
}


static uint64_t
rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}


static uint8_t *
random_bytes(size_t n, uint64_t seed)
{
    size_t    i;
    uint8_t  *p;

    p = malloc(n ? n : 1);

    for (i = 0; i < n; i++) {
        p[i] = (uint8_t) (rng(&seed) >> 24);
    }

    return p;
}


static int
hexval(int c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}


static size_t
unhex(const char *s, uint8_t *out)
{
    size_t  n;

    for (n = 0; s[0] && s[1]; s += 2, n++) {
        out[n] = (uint8_t) (hexval(s[0]) << 4 | hexval(s[1]));
    }

    return n;
}


static void
py_free(py_result_t *r)
{
    size_t  i;

    for (i = 0; i < r->n; i++) {
        free(r->e[i].name);
        free(r->e[i].content);
    }

    free(r->e);
    memset(r, 0, sizeof(py_result_t));
}


/* runs the zipfile check; part: hex names to read partly, or NULL */
static int
py_check(const char *zip, long dump, const char *part, py_result_t *r)
{
    int          st;
    char        *line, *tok[10], *save;
    char         cmd[2048];
    size_t       cap, i, size;
    FILE        *f;
    py_entry_t  *e;

    memset(r, 0, sizeof(py_result_t));

    snprintf(cmd, sizeof(cmd), "%s '%s' '%s' %ld %s", python, script, zip,
             dump, part ? part : "");

    f = popen(cmd, "r");
    if (f == NULL) {
        return -1;
    }

    cap = 0;
    line = NULL;
    size = 0;

    while (getline(&line, &size, f) > 0) {
        line[strcspn(line, "\n")] = '\0';

        if (strncmp(line, "zip64end ", 9) == 0) {
            r->zip64end = atoi(line + 9);
            continue;
        }

        if (strcmp(line, "ok") == 0) {
            r->ok = 1;
            continue;
        }

        if (strncmp(line, "E ", 2) != 0) {
            continue;
        }

        for (i = 0; i < 10; i++) {
            tok[i] = strtok_r(i == 0 ? line + 2 : NULL, " ", &save);
            if (tok[i] == NULL) {
                break;
            }
        }

        if (i != 10) {
            diag("bad line from zip_check");
            continue;
        }

        if (r->n == cap) {
            cap = cap ? cap * 2 : 64;
            r->e = realloc(r->e, cap * sizeof(py_entry_t));
        }

        e = &r->e[r->n++];
        memset(e, 0, sizeof(py_entry_t));

        e->name = malloc(strlen(tok[0]) / 2 + 1);
        e->name_len = unhex(tok[0], (uint8_t *) e->name);
        e->name[e->name_len] = '\0';
        e->size = strtoull(tok[1], NULL, 10);
        e->csize = strtoull(tok[2], NULL, 10);
        e->crc = (uint32_t) strtoul(tok[3], NULL, 10);
        e->flags = (unsigned) strtoul(tok[4], NULL, 10);
        e->version = (unsigned) strtoul(tok[5], NULL, 10);
        e->offset = strtoull(tok[6], NULL, 10);
        snprintf(e->date, sizeof(e->date), "%s %s", tok[7], tok[8]);

        e->big = strcmp(tok[9], "big") == 0;
        e->part = strcmp(tok[9], "part") == 0;

        if (tok[9][0] == 'x') {
            e->read = 1;
            e->content = malloc(strlen(tok[9]) / 2 + 1);
            e->content_len = unhex(tok[9] + 1, e->content);
        }
    }

    free(line);

    st = pclose(f);

    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}


static mm_status_t
sink_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
    size_t   end;
    sink_t  *s;

    s = ctx;

    if (s->fail && --s->fail == 0) {
        errno = ENOSPC;
        return MM_EIO;
    }

    off -= s->base;
    end = (size_t) off + len;

    if (end > s->cap) {
        s->cap = end * 2;
        s->data = realloc(s->data, s->cap);
    }

    if (off > s->len) {
        memset(s->data + s->len, 0, (size_t) off - s->len);
    }

    memcpy(s->data + off, buf, len);

    if (end > s->len) {
        s->len = end;
    }

    return MM_OK;
}


static uint32_t
crc_of(const void *p, size_t n)
{
    return (uint32_t) crc32_z(crc32_z(0, NULL, 0), p, n);
}


/* CRC-32 of n zero bytes, by doubling with crc32_combine */
static uint32_t
crc_zeros(uint64_t n)
{
    uint64_t              q, blen;
    uint32_t              crc, blk;
    static const uint8_t  zero[4096];

    crc = 0;
    blk = crc_of(zero, sizeof(zero));
    blen = sizeof(zero);

    for (q = n / sizeof(zero); q; q >>= 1) {
        if (q & 1) {
            crc = (uint32_t) crc32_combine(crc, blk, (z_off_t) blen);
        }

        blk = (uint32_t) crc32_combine(blk, blk, (z_off_t) blen);
        blen *= 2;
    }

    return (uint32_t) crc32_z(crc, zero, (size_t) (n % sizeof(zero)));
}


/* writes inputs with the streaming writer in uneven chunks */
static int
write_archive(const char *path, const input_t *in, size_t n,
    uint64_t *size)
{
    int             fd, rc;
    size_t          i, off, chunk;
    mm_zip_t       *z;
    mm_zip_conf_t   conf;

    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        return -1;
    }

    memset(&conf, 0, sizeof(conf));
    conf.write = mm_zip_fd_write;
    conf.ctx = &fd;

    rc = -1;

    if (mm_zip_new(&z, &conf, 0) != MM_OK) {
        close(fd);
        return -1;
    }

    for (i = 0; i < n; i++) {
        if (mm_zip_entry_begin(z, in[i].name, strlen(in[i].name),
                               in[i].unknown ? MM_ZIP_SIZE_UNKNOWN
                                             : in[i].size,
                               MTIME + (int64_t) i * 2)
            != MM_OK)
        {
            goto done;
        }

        for (off = 0; off < in[i].size; off += chunk) {
            chunk = 7919 + (off % 3) * 50000;

            if (chunk > in[i].size - off) {
                chunk = in[i].size - off;
            }

            if (mm_zip_entry_write(z, in[i].data + off, chunk) != MM_OK) {
                goto done;
            }
        }

        if (mm_zip_entry_end(z, NULL) != MM_OK) {
            goto done;
        }
    }

    if (mm_zip_finish(z, size) == MM_OK) {
        rc = 0;
    }

done:

    mm_zip_destroy(&z);
    close(fd);

    return rc;
}


/* both readers agree with the inputs */
static void
verify(const char *label, const char *zip, const input_t *in, size_t n)
{
    int          same, rc;
    size_t       i, len;
    uint8_t     *got;
    char         name[1024], path[TMP_PATH], dir[TMP_PATH];
    py_result_t  r;

    tmp_path(dir, "x");

    rc = py_check(zip, 8 * 1024 * 1024, NULL, &r);
    ok(rc == 0 && r.ok, "%s: python zipfile reads it (exit %d)", label, rc);
    is_int(r.n, n, "%s: python sees %zu entries", label, n);

    same = (r.n == n);

    for (i = 0; same && i < n; i++) {
        if (r.e[i].name_len != strlen(in[i].name)
            || memcmp(r.e[i].name, in[i].name, r.e[i].name_len) != 0
            || r.e[i].size != in[i].size || r.e[i].csize != in[i].size
            || r.e[i].crc != crc_of(in[i].data, in[i].size)
            || !r.e[i].read || r.e[i].content_len != in[i].size
            || (in[i].size
                && memcmp(r.e[i].content, in[i].data, in[i].size) != 0)
            || !(r.e[i].flags & 0x800)
            || !!(r.e[i].flags & 0x8) != in[i].unknown)
        {
            diag("entry %zu (%s) differs", i, in[i].name);
            same = 0;
        }
    }

    ok(same, "%s: python: names, sizes, CRCs, flags and bytes match",
       label);
    py_free(&r);

    rc = run("unzip -tq '%s' >/dev/null", zip);
    is_int(rc, n ? 0 : 1, "%s: unzip -t %s", label,
           n ? "finds no errors" : "warns the archive is empty");

    if (n == 0) {
        return;
    }

    rc = run("rm -rf '%s' && mkdir '%s' && cd '%s' && unzip -qo '%s'",
             dir, dir, dir, zip);
    is_int(rc, 0, "%s: unzip extracts", label);

    same = 1;

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "x/%s", in[i].name);
        got = mm_read_file(tmp_path(path, name), &len);

        if (got == NULL || len != in[i].size
            || (len && memcmp(got, in[i].data, len) != 0))
        {
            diag("extracted %s differs", in[i].name);
            same = 0;
        }

        free(got);
    }

    ok(same, "%s: unzip's files equal the inputs", label);
}


/* --- tests ---------------------------------------------------------------- */

static void
test_dos_time(void)
{
    uint16_t  d, t;

    mm_zip_dos_time(MTIME, &d, &t);
    is_int(d, (44 << 9) | (2 << 5) | 29, "dos date 2024-02-29");
    is_int(t, (13 << 11) | (45 << 5) | 29, "dos time 13:45:58");

    mm_zip_dos_time(MTIME + 1, &d, &t);
    is_int(t & 0x1f, 29, "odd seconds round down");

    mm_zip_dos_time(0, &d, &t);
    ok(d == ((0 << 9) | (1 << 5) | 1) && t == 0, "1970 clamps to 1980-01-01");

    mm_zip_dos_time(-5, &d, &t);
    ok(d == 0x21 && t == 0, "negative time clamps");

    mm_zip_dos_time(INT64_MAX, &d, &t);
    ok(d == ((127 << 9) | (12 << 5) | 31)
       && t == ((23 << 11) | (59 << 5) | 29), "far future clamps to 2107");

    mm_zip_dos_time(951782400, &d, &t);             /* 2000-02-29 */
    is_int(d, (20 << 9) | (2 << 5) | 29, "leap day 2000");

    mm_zip_dos_time(4107542399LL, &d, &t);          /* 2100-02-28 23:59:59 */
    is_int(d, (120 << 9) | (2 << 5) | 28, "2100-02-28 (no leap day)");
    mm_zip_dos_time(4107542400LL, &d, &t);
    is_int(d, (120 << 9) | (3 << 5) | 1, "then 2100-03-01");
}


static void
test_empty(void)
{
    size_t       len;
    uint64_t     size;
    uint8_t     *data;
    uint8_t      want[22] = { 'P', 'K', 5, 6 };
    py_result_t  r;
    const char  *zip;
    char         zipbuf[TMP_PATH];

    zip = tmp_path(zipbuf, "empty.zip");

    is_int(write_archive(zip, NULL, 0, &size), 0, "empty: written");
    is_int(size, 22, "empty: 22 bytes");
    is_int(mm_zip_archive_size(NULL, 0), 22, "empty: planned size");

    data = mm_read_file(zip, &len);
    ok(data && len == 22 && memcmp(data, want, 22) == 0,
       "empty: just the end record");
    free(data);

    is_int(py_check(zip, 0, NULL, &r), 0, "empty: python opens it");
    ok(r.ok && r.n == 0 && !r.zip64end, "empty: no entries, no ZIP64");
    py_free(&r);

    verify("empty", zip, NULL, 0);
}


static void
test_one(void)
{
    uint64_t        size;
    py_result_t     r;
    const char     *zip;
    char            zipbuf[TMP_PATH];
    static input_t  in[] = {
        { "hello.txt", (const uint8_t *) "hello, world\n", 13, 0 }
    };

    zip = tmp_path(zipbuf, "one.zip");

    is_int(write_archive(zip, in, 1, &size), 0, "one: written");
    is_int(size, 30 + 9 + 13 + 46 + 9 + 22, "one: size");

    verify("one", zip, in, 1);

    is_int(py_check(zip, -1, NULL, &r), 0, "one: python metadata");
    ok(r.n == 1 && strcmp(r.e[0].date, "2024-02-29 13:45:58") == 0,
       "one: date_time 2024-02-29 13:45:58 (%s)", r.n ? r.e[0].date : "");
    ok(r.n == 1 && r.e[0].version == 20 && r.e[0].offset == 0,
       "one: version needed 2.0, offset 0");
    py_free(&r);
}


static void
test_several(void)
{
    int              fd;
    size_t           i, n, len;
    uint64_t         size, planned;
    uint8_t         *big, *mid, *data;
    sink_t           sink;
    py_result_t      r;
    const char      *zip;
    char             zipbuf[TMP_PATH];
    mm_zip_entry_t   plan[16];
    input_t          in[9];

    big = random_bytes(3 * 1024 * 1024 + 17, 1);
    mid = random_bytes(65536, 2);

    n = 0;
    in[n++] = (input_t) { "a.bin", big, 3 * 1024 * 1024 + 17, 0 };
    in[n++] = (input_t) { "empty-known", (uint8_t *) "", 0, 0 };
    in[n++] = (input_t) { "empty-unknown", (uint8_t *) "", 0, 1 };
    in[n++] = (input_t) { "\xc3\xbc" "ber \xe2\x82\xac.bin", mid, 65536, 0 };
    in[n++] = (input_t) { "stream.bin", big + 5, 1000000, 1 };
    in[n++] = (input_t) { "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.txt",
                          (uint8_t *) "nihongo\n", 8, 1 };
    in[n++] = (input_t) { "\xf0\x9f\x8e\xac clip (1).mp4", mid + 1, 4095, 0 };
    in[n++] = (input_t) { "a (1).bin", big, 1, 1 };
    in[n++] = (input_t) { "last", (uint8_t *) "z", 1, 0 };

    zip = tmp_path(zipbuf, "several.zip");

    is_int(write_archive(zip, in, n, &size), 0, "several: written");

    for (i = 0; i < n; i++) {
        plan[i].name = in[i].name;
        plan[i].name_len = strlen(in[i].name);
        plan[i].size = in[i].size;
        plan[i].flags = mm_zip_entry_flags(in[i].unknown
                                           ? MM_ZIP_SIZE_UNKNOWN
                                           : in[i].size);
    }

    planned = mm_zip_archive_size(plan, n);
    is_int(planned, size, "several: mm_zip_archive_size predicts the size");

    verify("several", zip, in, n);

    is_int(py_check(zip, -1, NULL, &r), 0, "several: python metadata");
    ok(r.n == n && r.e[2].version == 45 && r.e[1].version == 20
       && r.e[4].version == 45, "several: version 45 only for streamed");
    ok(!r.zip64end, "several: no ZIP64 end record");
    py_free(&r);

    /* the same archive written to memory is byte-identical */
    memset(&sink, 0, sizeof(sink));
    data = mm_read_file(zip, &len);

    {
        mm_zip_t       *z;
        mm_zip_conf_t   conf = { sink_write, &sink, NULL, NULL };

        mm_zip_new(&z, &conf, 0);

        for (i = 0; i < n; i++) {
            mm_zip_entry_begin(z, in[i].name, strlen(in[i].name),
                               in[i].unknown ? MM_ZIP_SIZE_UNKNOWN
                                             : in[i].size,
                               MTIME + (int64_t) i * 2);
            mm_zip_entry_write(z, in[i].data, in[i].size);
            mm_zip_entry_end(z, NULL);
        }

        mm_zip_finish(z, &size);
        mm_zip_destroy(&z);
    }

    ok(data && sink.len == len && memcmp(sink.data, data, len) == 0,
       "several: memory output equals the file (whole-entry writes)");
    free(sink.data);

    /* fd helper: CRC of a range of the archive */
    fd = open(zip, O_RDONLY);
    {
        uint32_t  crc = 0;

        is_int(mm_zip_crc_fd(fd, 30 + 5, in[0].size, &crc), MM_OK,
               "crc_fd reads the first entry's data");
        is_int(crc, crc_of(big, in[0].size), "crc_fd CRC matches");

        crc = 0;
        is_int(mm_zip_crc_fd(fd, len - 10, 11, &crc), MM_EBADDATA,
               "crc_fd past the end: EBADDATA");
    }
    close(fd);

    free(data);
    free(big);
    free(mid);
}


/* records through a text form, as a daemon would keep them in a table */
static mm_zip_entry_t *
records_round_trip(const mm_zip_entry_t *src, size_t n)
{
    size_t           i, k;
    char             line[1024], hex[600];
    unsigned         flags;
    uint32_t         crc;
    uint64_t         off, size;
    long long        mtime;
    mm_zip_entry_t  *dst;
    char            *name;

    dst = calloc(n ? n : 1, sizeof(mm_zip_entry_t));

    for (i = 0; i < n; i++) {
        for (k = 0; k < src[i].name_len; k++) {
            snprintf(hex + 2 * k, 3, "%02x", (unsigned char) src[i].name[k]);
        }

        snprintf(line, sizeof(line), "%s %" PRIu64 " %" PRIu64 " %u %lld %u",
                 hex, src[i].offset, src[i].size, src[i].crc,
                 (long long) src[i].mtime, src[i].flags);

        name = malloc(strlen(hex) / 2 + 1);

        if (sscanf(line, "%599s %" SCNu64 " %" SCNu64 " %u %lld %u", hex,
                   &off, &size, &crc, &mtime, &flags) != 6)
        {
            free(name);
            continue;
        }

        dst[i].name_len = unhex(hex, (uint8_t *) name);
        dst[i].name = name;
        dst[i].offset = off;
        dst[i].size = size;
        dst[i].crc = crc;
        dst[i].mtime = mtime;
        dst[i].flags = flags;
    }

    return dst;
}


static void
records_free(mm_zip_entry_t *e, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free((void *) e[i].name);
    }

    free(e);
}


/*
 * A crash after entries 0 and 1 and part of entry 2 (known size), and a
 * second crash inside entry 3 (unknown size): a new writer restores the
 * records, recomputes the CRC of what is on disk and carries on.
 */
static void
test_resume(void)
{
    int              fd;
    size_t           n, len, cdlen;
    uint8_t         *data, *a, *b, *c, *d;
    uint32_t         crc, crc2;
    uint64_t         done, size, cd_off, end;
    sink_t           sink;
    mm_zip_t        *z;
    const char      *zip;
    char             zipbuf[TMP_PATH];
    mm_zip_conf_t    conf;
    mm_zip_entry_t   cur, *rec;
    const mm_zip_entry_t  *entries;
    input_t          in[4];

    a = random_bytes(100000, 11);
    b = random_bytes(5000, 12);
    c = random_bytes(300000, 13);
    d = random_bytes(200000, 14);

    in[0] = (input_t) { "a.bin", a, 100000, 0 };
    in[1] = (input_t) { "b.bin", b, 5000, 1 };
    in[2] = (input_t) { "c.bin", c, 300000, 0 };
    in[3] = (input_t) { "d.bin", d, 200000, 1 };

    zip = tmp_path(zipbuf, "resume.zip");
    fd = open(zip, O_RDWR | O_CREAT | O_TRUNC, 0644);

    memset(&conf, 0, sizeof(conf));
    conf.write = mm_zip_fd_write;
    conf.ctx = &fd;

    /* first run */
    mm_zip_new(&z, &conf, 0);
    mm_zip_entry_begin(z, "a.bin", 5, 100000, MTIME);
    mm_zip_entry_write(z, a, 100000);
    mm_zip_entry_end(z, NULL);
    mm_zip_entry_begin(z, "b.bin", 5, MM_ZIP_SIZE_UNKNOWN, MTIME);
    mm_zip_entry_write(z, b, 5000);
    mm_zip_entry_end(z, NULL);
    mm_zip_entry_begin(z, "c.bin", 5, 300000, MTIME);
    mm_zip_entry_write(z, c, 120000);

    is_int(mm_zip_entry_current(z, &cur, &done, &crc), MM_OK,
           "resume: current entry state");
    ok(done == 120000 && crc == crc_of(c, 120000) && cur.size == 300000
       && cur.flags == 0, "resume: 120000 bytes, CRC so far, declared size");

    /* what the daemon keeps: the finished records and the open one */
    entries = mm_zip_entries(z, &n);
    is_int(n, 2, "resume: two finished records");
    rec = records_round_trip(entries, n);
    {
        mm_zip_entry_t  *open = records_round_trip(&cur, 1);

        mm_zip_destroy(&z);                     /* "crash" */

        /* second run: restore, recompute the CRC from the disk, go on */
        mm_zip_new(&z, &conf, 0);
        is_int(mm_zip_restore(z, &rec[0]), MM_OK, "resume: restore a.bin");
        is_int(mm_zip_restore(z, &rec[1]), MM_OK, "resume: restore b.bin");

        crc2 = 0;
        is_int(mm_zip_crc_fd(fd, open->offset + mm_zip_local_header_size(open),
                             120000, &crc2), MM_OK, "resume: crc_fd");
        is_int(crc2, crc, "resume: CRC on disk equals the writer's");

        is_int(mm_zip_entry_resume(z, open, 120000, crc2), MM_OK,
               "resume: reopen c.bin");
        is_int(mm_zip_pos(z), open->offset + 30 + 5 + 120000,
               "resume: append position after the data on disk");
        records_free(open, 1);
    }
    records_free(rec, n);

    is_int(mm_zip_entry_write(z, c + 120000, 180000), MM_OK,
           "resume: rest of c.bin");
    is_int(mm_zip_entry_end(z, NULL), MM_OK, "resume: c.bin ends");

    mm_zip_entry_begin(z, "d.bin", 5, MM_ZIP_SIZE_UNKNOWN, MTIME);
    mm_zip_entry_write(z, d, 50000);
    mm_zip_entry_current(z, &cur, &done, &crc);

    entries = mm_zip_entries(z, &n);
    rec = records_round_trip(entries, n);
    {
        mm_zip_entry_t  *open = records_round_trip(&cur, 1);

        mm_zip_destroy(&z);                     /* second "crash" */

        mm_zip_new(&z, &conf, 0);

        for (len = 0; len < n; len++) {
            mm_zip_restore(z, &rec[len]);
        }

        crc2 = 0;
        mm_zip_crc_fd(fd, open->offset + mm_zip_local_header_size(open),
                      done, &crc2);
        is_int(mm_zip_entry_resume(z, open, done, crc2), MM_OK,
               "resume: reopen streamed d.bin");
        records_free(open, 1);
    }
    records_free(rec, n);

    mm_zip_entry_write(z, d + 50000, 150000);
    is_int(mm_zip_entry_end(z, NULL), MM_OK, "resume: d.bin ends");
    cd_off = mm_zip_pos(z);
    is_int(mm_zip_finish(z, &size), MM_OK, "resume: finish");

    entries = mm_zip_entries(z, &n);
    rec = records_round_trip(entries, n);
    mm_zip_destroy(&z);
    close(fd);

    verify("resume", zip, in, 4);

    /* the central directory from the stored records equals the file's */
    memset(&sink, 0, sizeof(sink));
    sink.base = cd_off;
    is_int(mm_zip_central_directory(rec, n, cd_off, sink_write, &sink, &end),
           MM_OK, "rebuild: central directory from records");
    is_int(end, size, "rebuild: same archive size");

    cdlen = mm_zip_central_directory_size(rec, n, cd_off);
    is_int(cdlen, size - cd_off, "rebuild: central_directory_size");

    data = mm_read_file(zip, &len);
    ok(data && len == size && sink.len == len - cd_off
       && memcmp(sink.data, data + cd_off, sink.len) == 0,
       "rebuild: bytes equal the writer's central directory");

    free(data);
    free(sink.data);
    records_free(rec, n);
    free(a);
    free(b);
    free(c);
    free(d);
}


/* an entry abandoned (server without Range support) and rewritten */
static void
test_abort(void)
{
    int              fd;
    uint64_t         size, pos;
    mm_zip_t        *z;
    const char      *zip;
    char             zipbuf[TMP_PATH];
    mm_zip_conf_t    conf;
    input_t          in[2];

    in[0] = (input_t) { "keep.txt", (uint8_t *) "keep", 4, 0 };
    in[1] = (input_t) { "retry.txt", (uint8_t *) "second try", 10, 1 };

    zip = tmp_path(zipbuf, "abort.zip");
    fd = open(zip, O_RDWR | O_CREAT | O_TRUNC, 0644);

    memset(&conf, 0, sizeof(conf));
    conf.write = mm_zip_fd_write;
    conf.ctx = &fd;

    mm_zip_new(&z, &conf, 0);
    mm_zip_entry_begin(z, "keep.txt", 8, 4, MTIME);
    mm_zip_entry_write(z, "keep", 4);
    mm_zip_entry_end(z, NULL);
    pos = mm_zip_pos(z);

    mm_zip_entry_begin(z, "retry.txt", 9, MM_ZIP_SIZE_UNKNOWN, MTIME);
    mm_zip_entry_write(z, "a much longer first attempt that fails", 38);
    mm_zip_entry_abort(z);
    is_int(mm_zip_pos(z), pos, "abort: position back at the local header");
    ok(ftruncate(fd, (off_t) pos) == 0, "abort: caller truncates");

    mm_zip_entry_begin(z, "retry.txt", 9, MM_ZIP_SIZE_UNKNOWN, MTIME + 2);
    mm_zip_entry_write(z, "second try", 10);
    mm_zip_entry_end(z, NULL);
    is_int(mm_zip_finish(z, &size), MM_OK, "abort: finish");
    mm_zip_destroy(&z);
    close(fd);

    verify("abort", zip, in, 2);
}


static void
test_errors(void)
{
    size_t          n;
    uint32_t        crc;
    uint64_t        size, done;
    sink_t          sink;
    mm_zip_t       *z;
    mm_zip_conf_t   conf;
    mm_zip_entry_t  e, bad;
    char            longname[MM_ZIP_NAME_MAX + 2];

    memset(&sink, 0, sizeof(sink));
    conf = (mm_zip_conf_t) { sink_write, &sink, NULL, NULL };

    mm_zip_new(&z, &conf, 0);

    is_int(mm_zip_entry_write(z, "x", 1), MM_EBADDATA, "write: no entry");
    is_int(mm_zip_entry_end(z, NULL), MM_EBADDATA, "end: no entry");
    is_int(mm_zip_entry_current(z, &e, &done, &crc), MM_ENOTFOUND,
           "current: no entry");
    is_int(mm_zip_entry_begin(z, "", 0, 1, MTIME), MM_EBADDATA,
           "begin: empty name");

    memset(longname, 'n', sizeof(longname));
    is_int(mm_zip_entry_begin(z, longname, MM_ZIP_NAME_MAX + 1, 1, MTIME),
           MM_EBADDATA, "begin: name over 65535 bytes");

    is_int(mm_zip_entry_begin(z, "a", 1, 3, MTIME), MM_OK, "begin a");
    is_int(mm_zip_entry_begin(z, "b", 1, 3, MTIME), MM_EBADDATA,
           "begin: entry already open");
    is_int(mm_zip_finish(z, &size), MM_EBADDATA, "finish: entry open");
    is_int(mm_zip_entry_write(z, "abcd", 4), MM_ETOOBIG,
           "write: past the declared size");
    is_int(mm_zip_entry_written(z, 4, 0), MM_ETOOBIG,
           "written: past the declared size");
    is_int(mm_zip_entry_write(z, "ab", 2), MM_OK, "write 2 of 3");
    is_int(mm_zip_entry_end(z, NULL), MM_EBADDATA, "end: short of the size");
    is_int(mm_zip_entry_write(z, "c", 1), MM_OK, "write the last byte");
    is_int(mm_zip_entry_end(z, &e), MM_OK, "end");
    ok(e.size == 3 && e.crc == crc_of("abc", 3) && e.offset == 0
       && e.name_len == 1 && e.name[0] == 'a', "end returns the record");

    bad = e;
    bad.name_len = 0;
    is_int(mm_zip_restore(z, &bad), MM_EBADDATA, "restore: empty name");
    is_int(mm_zip_central_directory(&bad, 1, 0, sink_write, &sink, &size),
           MM_EBADDATA, "central_directory: empty name");
    bad = e;
    bad.size = 10;
    is_int(mm_zip_entry_resume(z, &bad, 11, 0), MM_EBADDATA,
           "resume: more done than declared");

    /* a write error is passed on and the entry stays open */
    sink.fail = 1;
    mm_zip_entry_begin(z, "c", 1, 1, MTIME);
    is_int(errno, ENOSPC, "failed header write sets errno");
    is_int(mm_zip_entry_current(z, &e, &done, &crc), MM_ENOTFOUND,
           "begin: failed header write leaves no entry open");
    is_int(mm_zip_entry_begin(z, "c", 1, 1, MTIME), MM_OK, "begin again");
    sink.fail = 1;
    is_int(mm_zip_entry_write(z, "x", 1), MM_EIO, "write: error passed on");
    is_int(mm_zip_entry_write(z, "x", 1), MM_OK, "write: retried");
    sink.fail = 1;
    is_int(mm_zip_entry_end(z, NULL), MM_EIO, "end: CRC patch error");
    is_int(mm_zip_entry_end(z, NULL), MM_OK, "end: retried");
    sink.fail = 1;
    is_int(mm_zip_finish(z, &size), MM_EIO, "finish: error passed on");
    is_int(mm_zip_finish(z, &size), MM_OK, "finish: retried");
    is_int(mm_zip_entry_begin(z, "d", 1, 1, MTIME), MM_EBADDATA,
           "begin: after finish");

    mm_zip_entries(z, &n);
    is_int(n, 2, "two entries recorded");

    mm_zip_destroy(&z);
    ok(z == NULL, "destroy NULLs the pointer");
    mm_zip_destroy(&z);

    /* an open entry is freed by destroy (ASan checks) */
    mm_zip_new(&z, &conf, 0);
    mm_zip_entry_begin(z, "open", 4, MM_ZIP_SIZE_UNKNOWN, MTIME);
    mm_zip_destroy(&z);

    free(sink.data);
}


/* structure at the thresholds, without writing the data */
static void
test_thresholds(void)
{
    size_t           i;
    uint64_t         end;
    sink_t           sink;
    mm_zip_entry_t  *e;
    const uint8_t   *p;

    is_int(mm_zip_entry_flags(0), 0, "flags: small known size");
    is_int(mm_zip_entry_flags(0xfffffffeULL), 0, "flags: 0xFFFFFFFE");
    is_int(mm_zip_entry_flags(0xffffffffULL), MM_ZIP_ZIP64,
           "flags: 0xFFFFFFFF is ZIP64");
    is_int(mm_zip_entry_flags(MM_ZIP_SIZE_UNKNOWN),
           MM_ZIP_ZIP64 | MM_ZIP_DESCRIPTOR, "flags: unknown size");

    e = calloc(65535, sizeof(mm_zip_entry_t));

    for (i = 0; i < 65535; i++) {
        e[i].name = "n";
        e[i].name_len = 1;
    }

    is_int(mm_zip_central_directory_size(e, 65534, 0), 65534 * 47 + 22,
           "65534 entries: no ZIP64 end record");
    is_int(mm_zip_central_directory_size(e, 65535, 0),
           65535 * 47 + 56 + 20 + 22, "65535 entries: ZIP64 end record");
    is_int(mm_zip_central_directory_size(e, 1, 0xfffffffeULL), 47 + 22,
           "cd offset 0xFFFFFFFE: none");
    is_int(mm_zip_central_directory_size(e, 1, 0xffffffffULL),
           47 + 56 + 20 + 22, "cd offset 0xFFFFFFFF: ZIP64");

    memset(&sink, 0, sizeof(sink));
    mm_zip_central_directory(e, 65535, 0, sink_write, &sink, &end);
    p = sink.data + sink.len - 22;
    ok(p[0] == 'P' && p[3] == 6 && p[8] == 0xff && p[9] == 0xff
       && p[10] == 0xff && p[11] == 0xff, "65535: end record count 0xFFFF");
    ok(p[-20] == 'P' && p[-17] == 7 && p[-76] == 'P' && p[-73] == 6
       && p[-76 + 24] == 0xff && p[-76 + 25] == 0xff && p[-76 + 26] == 0,
       "65535: locator and ZIP64 end record with the count");
    free(sink.data);

    /* an entry at offset >= 4 GiB gets a central ZIP64 extra */
    e[0].offset = 0x100000000ULL;
    e[0].size = 0xffffffffULL;
    e[0].flags = MM_ZIP_ZIP64;
    is_int(mm_zip_central_directory_size(e, 1, 0x200000000ULL),
           47 + 4 + 24 + 56 + 20 + 22, "central ZIP64 extra: sizes+offset");
    is_int(mm_zip_local_header_size(&e[0]), 30 + 1 + 20,
           "local ZIP64 extra");
    e[0].flags = MM_ZIP_DESCRIPTOR | MM_ZIP_ZIP64;
    is_int(mm_zip_descriptor_size(&e[0]), 24, "ZIP64 descriptor: 24 bytes");
    e[0].flags = MM_ZIP_DESCRIPTOR;
    e[0].size = 5;
    is_int(mm_zip_descriptor_size(&e[0]), 16, "plain descriptor: 16 bytes");
    e[0].flags = 0;
    is_int(mm_zip_descriptor_size(&e[0]), 0, "no descriptor");

    free(e);
}


/* > 65535 empty entries: the ZIP64 end record by count */
static void
test_many(void)
{
    int            fd, all;
    char           name[32];
    size_t         i, n;
    uint64_t       size;
    mm_zip_t      *z;
    py_result_t    r;
    const char    *zip;
    char           zipbuf[TMP_PATH];
    mm_zip_conf_t  conf;

    n = 65540;
    zip = tmp_path(zipbuf, "many.zip");
    fd = open(zip, O_RDWR | O_CREAT | O_TRUNC, 0644);

    memset(&conf, 0, sizeof(conf));
    conf.write = mm_zip_fd_write;
    conf.ctx = &fd;

    mm_zip_new(&z, &conf, 0);
    all = 1;

    for (i = 0; i < n && all; i++) {
        snprintf(name, sizeof(name), "e%05zu", i);

        /* every 1000th entry streamed (descriptor), the rest known size */
        all = mm_zip_entry_begin(z, name, strlen(name),
                                 i % 1000 ? 0 : MM_ZIP_SIZE_UNKNOWN, MTIME)
              == MM_OK
              && mm_zip_entry_end(z, NULL) == MM_OK;
    }

    ok(all, "many: %zu entries written", n);
    is_int(mm_zip_finish(z, &size), MM_OK, "many: finish");
    mm_zip_destroy(&z);
    close(fd);

    is_int(py_check(zip, 0, NULL, &r), 0, "many: python reads every entry");
    ok(r.ok && r.n == n, "many: python sees %zu entries", r.n);
    ok(r.zip64end, "many: ZIP64 end record and locator");

    all = (r.n == n);

    for (i = 0; all && i < n; i++) {
        snprintf(name, sizeof(name), "e%05zu", i);
        all = strcmp(r.e[i].name, name) == 0 && r.e[i].size == 0
              && r.e[i].read && r.e[i].content_len == 0;
    }

    ok(all, "many: names in order, all empty");
    py_free(&r);

    is_int(run("unzip -tq '%s' >/dev/null", zip), 0, "many: unzip -t");
    is_int(run("test \"$(unzip -Z1 '%s' | wc -l)\" -eq %zu", zip, n), 0,
           "many: unzip lists %zu names", n);
}


/*
 * Entries over 4 GiB in a sparse file: one of known size, one streamed
 * (unknown size, 8-byte data descriptor), then a small entry whose
 * offset is past 8 GiB.
 */
static void
test_big(void)
{
    int             fd, rc;
    uint32_t        crc;
    uint64_t        size, pos;
    mm_zip_t       *z;
    py_result_t     r;
    struct stat     st;
    const char     *zip;
    char            zipbuf[TMP_PATH];
    mm_zip_conf_t   conf;
    mm_zip_entry_t  e;

    zip = tmp_path(zipbuf, "big.zip");
    fd = open(zip, O_RDWR | O_CREAT | O_TRUNC, 0644);

    memset(&conf, 0, sizeof(conf));
    conf.write = mm_zip_fd_write;
    conf.ctx = &fd;

    crc = crc_zeros(BIG_SIZE);

    mm_zip_new(&z, &conf, 0);

    is_int(mm_zip_entry_begin(z, "big-known.bin", 13, BIG_SIZE, MTIME),
           MM_OK, "big: known-size entry");
    pos = mm_zip_pos(z);
    is_int(pos, 30 + 13 + 20, "big: local header has the ZIP64 extra");

    /* the data is a hole: the file is extended past it later */
    is_int(mm_zip_entry_written(z, BIG_SIZE - 1000, crc_zeros(BIG_SIZE - 1000)),
           MM_OK, "big: hole accounted");
    is_int(mm_zip_entry_write(z, (const uint8_t [1000]) { 0 }, 1000), MM_OK,
           "big: last 1000 bytes written");
    is_int(mm_zip_entry_end(z, &e), MM_OK, "big: end");
    is_int(e.crc, crc, "big: combined CRC equals CRC of the zeros");

    is_int(mm_zip_entry_begin(z, "big-stream.bin", 14, MM_ZIP_SIZE_UNKNOWN,
                              MTIME), MM_OK, "big: streamed entry");
    is_int(mm_zip_entry_written(z, BIG_SIZE, crc), MM_OK,
           "big: streamed hole accounted");
    is_int(mm_zip_entry_end(z, &e), MM_OK, "big: streamed end");
    ok(e.size == BIG_SIZE && e.offset > 0xffffffffULL,
       "big: streamed entry starts past 4 GiB");

    is_int(mm_zip_entry_begin(z, "after.txt", 9, 5, MTIME), MM_OK,
           "big: small entry past 8 GiB");
    mm_zip_entry_write(z, "after", 5);
    mm_zip_entry_end(z, NULL);

    is_int(mm_zip_finish(z, &size), MM_OK, "big: finish");
    mm_zip_destroy(&z);

    memset(&st, 0, sizeof(st));
    ok(fstat(fd, &st) == 0 && (uint64_t) st.st_size == size,
       "big: file size %" PRIu64 " (%" PRIu64 " KiB on disk)", size,
       (uint64_t) st.st_blocks / 2);
    close(fd);

    {
        mm_zip_entry_t  plan[3] = {
            { "big-known.bin", 13, 0, BIG_SIZE, 0, 0, 0 },
            { "big-stream.bin", 14, 0, BIG_SIZE, 0, 0,
              MM_ZIP_DESCRIPTOR | MM_ZIP_ZIP64 },
            { "after.txt", 9, 0, 5, 0, 0, 0 },
        };

        is_int(mm_zip_archive_size(plan, 3), size,
               "big: mm_zip_archive_size predicts the size");
    }

    /* python reads the small entry, and the first MiB of the big ones */
    rc = py_check(zip, 16, "6269672d6b6e6f776e2e62696e "
                  "6269672d73747265616d2e62696e", &r);
    ok(rc == 0 && r.ok, "big: python zipfile opens it");
    ok(r.n == 3 && r.zip64end, "big: 3 entries, ZIP64 end record");

    if (r.n == 3) {
        ok(r.e[0].size == BIG_SIZE && r.e[0].csize == BIG_SIZE
           && r.e[0].crc == crc && r.e[0].version == 45 && r.e[0].part,
           "big: known entry size, CRC, version 45, data found");
        ok(r.e[1].size == BIG_SIZE && r.e[1].crc == crc
           && (r.e[1].flags & 0x8) && r.e[1].offset == e.offset
           && r.e[1].part,
           "big: streamed entry size, CRC, descriptor, offset > 4 GiB");
        ok(r.e[2].read && r.e[2].content_len == 5
           && memcmp(r.e[2].content, "after", 5) == 0
           && r.e[2].offset > 2 * 0xffffffffULL,
           "big: small entry past 8 GiB reads back");

    } else {
        ok(0, "big: known entry");
        ok(0, "big: streamed entry");
        ok(0, "big: small entry");
    }

    py_free(&r);

    is_int(run("unzip -l '%s' | grep -q '^ *4399824903 .*big-known.bin$'", zip),
           0, "big: unzip -l lists the size");
    is_int(run("unzip -p '%s' after.txt | grep -qx after", zip), 0,
           "big: unzip extracts the entry past 8 GiB");

    if (!getenv("TEST_ZIP_KEEP")) {
        unlink(zip);
    }
}


int
main(void)
{
    int  fd;

    snprintf(tmpdir, sizeof(tmpdir), "%s/test_zip.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");

    if (mkdtemp(tmpdir) == NULL) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }

    snprintf(script, sizeof(script), "%s/zip_check.py", tmpdir);
    fd = open(script, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    if (fd < 0
        || write(fd, zip_check_py, sizeof(zip_check_py) - 1)
           != (ssize_t) sizeof(zip_check_py) - 1)
    {
        printf("Bail out! %s: %s\n", script, strerror(errno));
        return 1;
    }

    close(fd);

    /* Debian's python3 starts faster than a version manager's shim */
    python = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3"
                                                    : "python3";

    test_dos_time();
    test_thresholds();
    test_errors();
    test_empty();
    test_one();
    test_several();
    test_resume();
    test_abort();
    test_many();
    test_big();

    if (getenv("TEST_ZIP_KEEP")) {
        diag("kept %s", tmpdir);

    } else {
        run("rm -rf '%s'", tmpdir);
    }

    return done_testing();
}
