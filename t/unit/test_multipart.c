/*
 * lib/multipart: boundary parameter, part headers, the captured part's
 * bytes for every way of cutting the body into chunks (delimiters split
 * anywhere, data that looks like a delimiter), preamble and epilogue,
 * errors; a randomised check against bodies built from known parts.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "multipart.h"
#include "tap.h"


typedef struct {
    mm_buf_t     data;              /* the captured bytes */
    unsigned     parts;
    unsigned     captured;
    unsigned     calls;             /* on_data calls */
    char         name[64][MM_MULTIPART_PARAM_MAX];
    char         filename[64][MM_MULTIPART_PARAM_MAX];
    char         type[64][MM_MULTIPART_PARAM_MAX];
    unsigned     has_filename[64];
    const char  *want;              /* field name to capture */
    const char  *chunk;             /* the chunk being fed, or NULL */
    size_t       chunk_len;
    const mm_multipart_t *mp;
    int          bad_pointer;       /* data outside chunk and parser */
} sink_t;


static int
on_part(void *ctx, const mm_multipart_part_t *part)
{
    sink_t  *s = ctx;

    if (part->index < 64) {
        snprintf(s->name[part->index], MM_MULTIPART_PARAM_MAX, "%s",
                 part->name);
        snprintf(s->filename[part->index], MM_MULTIPART_PARAM_MAX, "%s",
                 part->filename);
        snprintf(s->type[part->index], MM_MULTIPART_PARAM_MAX, "%s",
                 part->content_type);
        s->has_filename[part->index] = part->has_filename;
    }

    s->parts++;

    if (strcmp(part->name, s->want) == 0 && s->captured == 0) {
        s->captured++;
        return 1;
    }

    return 0;
}


static void
on_data(void *ctx, const char *p, size_t n)
{
    sink_t  *s = ctx;

    s->calls++;

    if (n == 0) {
        s->bad_pointer = 1;
    }

    /* where the bytes may live: the current chunk or the parser */
    if (s->chunk
        && !(p >= s->chunk && p + n <= s->chunk + s->chunk_len)
        && !(p >= (const char *) s->mp
             && p + n <= (const char *) s->mp + sizeof(*s->mp)))
    {
        s->bad_pointer = 1;
    }

    mm_buf_append(&s->data, p, n);
}


static void
sink_init(sink_t *s, const char *want)
{
    memset(s, 0, sizeof(*s));
    mm_buf_init(&s->data);
    s->want = want;
}


/*
 * Parses body cut at the given chunk sizes (sizes[] cycled; 0 = whole),
 * each chunk in its own malloc'd copy so stale pointers would show.
 */
static mm_status_t
parse(const char *boundary, const char *body, size_t len,
    const size_t *sizes, size_t nsizes, sink_t *s, mm_multipart_t *mp)
{
    char         *copy;
    size_t        off, n, k;
    mm_status_t   st;

    mm_multipart_init(mp, boundary, strlen(boundary), on_part, on_data, s);
    s->mp = mp;

    st = MM_OK;
    off = 0;
    k = 0;

    while (off < len) {
        n = (nsizes && sizes[k % nsizes]) ? sizes[k % nsizes] : len - off;
        k++;

        if (n > len - off) {
            n = len - off;
        }

        copy = malloc(n);
        memcpy(copy, body + off, n);
        s->chunk = copy;
        s->chunk_len = n;

        st = mm_multipart_feed(mp, copy, n);

        s->chunk = NULL;
        free(copy);
        off += n;

        if (st != MM_OK) {
            return st;
        }
    }

    return mm_multipart_finish(mp);
}


static void
build(mm_buf_t *b, const char *boundary, const char *preamble,
    const char *file, size_t file_len, const char *epilogue)
{
    mm_buf_init(b);
    mm_buf_puts(b, preamble);
    mm_buf_printf(b, "--%s\r\n", boundary);
    mm_buf_puts(b, "Content-Disposition: form-data; name=\"title\"\r\n\r\n");
    mm_buf_puts(b, "a trailer");
    mm_buf_printf(b, "\r\n--%s\r\n", boundary);
    mm_buf_puts(b, "Content-Disposition: form-data; name=\"file\"; "
                "filename=\"t r\\\"ailer.mp4\"\r\n"
                "Content-Type: video/mp4\r\n\r\n");
    mm_buf_append(b, file, file_len);
    mm_buf_printf(b, "\r\n--%s\r\n", boundary);
    mm_buf_puts(b, "content-disposition: form-data; name=other\r\n\r\n");
    mm_buf_puts(b, "x\r\n--not-it\r\n");
    mm_buf_printf(b, "\r\n--%s--", boundary);
    mm_buf_puts(b, epilogue);
}


static void
test_boundary(void)
{
    char         out[128];
    size_t       len;
    mm_status_t  st;

#define B(ct, want_st, want)                                                 \
    do {                                                                     \
        len = 0;                                                             \
        out[0] = '\0';                                                       \
        st = mm_multipart_boundary(ct, strlen(ct), out, sizeof(out), &len);  \
        is_int(st, want_st, "boundary of '%s': status", ct);                 \
        if (want_st == MM_OK) {                                              \
            is_str(out, want, "boundary of '%s'", ct);                       \
            is_int(len, strlen(want), "boundary length of '%s'", ct);        \
        }                                                                    \
    } while (0)

    B("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk",
      MM_OK, "----WebKitFormBoundary7MA4YWxk");
    B("Multipart/Form-Data;boundary=abc", MM_OK, "abc");
    B("multipart/form-data; charset=utf-8; boundary=\"a b:c\"", MM_OK,
      "a b:c");
    B("multipart/form-data; BOUNDARY=x; charset=utf-8", MM_OK, "x");
    B("multipart/form-data; name=\"boundary=no\"; boundary=yes", MM_OK,
      "yes");
    B("  multipart/form-data ; boundary=q", MM_OK, "q");
    B("application/octet-stream", MM_ENOTFOUND, "");
    B("multipart/form-datax; boundary=a", MM_ENOTFOUND, "");
    B("multipart/mixed; boundary=a", MM_ENOTFOUND, "");
    B("multipart/form-data", MM_EBADDATA, "");
    B("multipart/form-data; boundary=", MM_EBADDATA, "");
    B("multipart/form-data; boundary=\"\"", MM_EBADDATA, "");
    B("multipart/form-data; boundary=\"unterminated", MM_EBADDATA, "");
    B("multipart/form-data; boundary=a\x01z", MM_EBADDATA, "");
    B("multipart/form-data; boundary=\"ends in space \"", MM_EBADDATA, "");
    B("multipart/form-data; boundary="
      "12345678901234567890123456789012345678901234567890123456789012345678901",
      MM_EBADDATA, "");
    B("multipart/form-data; boundary="
      "1234567890123456789012345678901234567890123456789012345678901234567890",
      MM_OK,
      "1234567890123456789012345678901234567890123456789012345678901234567890");

#undef B
}


static void
test_simple(void)
{
    sink_t          s;
    mm_buf_t        body;
    mm_status_t     st;
    mm_multipart_t  mp;

    static const char  file[] = "\x00\x01 binary \r\n-- not a delimiter";

    build(&body, "XyZ", "", file, sizeof(file) - 1, "");

    sink_init(&s, "file");
    st = parse("XyZ", body.data, body.len, NULL, 0, &s, &mp);

    is_int(st, MM_OK, "simple body parses");
    is_int(s.parts, 3, "three parts");
    is_mem(s.data.data, s.data.len, file, sizeof(file) - 1,
           "the file part's bytes");
    is_str(s.name[0], "title", "part 0 name");
    ok(!s.has_filename[0], "part 0 has no filename");
    is_str(s.name[1], "file", "part 1 name");
    is_str(s.filename[1], "t r\"ailer.mp4", "part 1 filename, unescaped");
    ok(s.has_filename[1], "part 1 has a filename");
    is_str(s.type[1], "video/mp4", "part 1 content type");
    is_str(s.name[2], "other", "part 2 name (token, lower-case header)");
    ok(!s.bad_pointer, "data points into the chunk or the parser");
    is_int(s.calls, 1, "one chunk, one data call");

    mm_buf_free(&s.data);
    mm_buf_free(&body);
}


/* every two-chunk cut, byte by byte, and a few odd chunk sizes */
static void
test_splits(void)
{
    int             bad;
    size_t          cut, i, sizes[2];
    sink_t          s;
    mm_buf_t        body;
    mm_status_t     st;
    mm_multipart_t  mp;

    /* data full of delimiter prefixes, ending in one */
    static const char  file[] =
        "\r\n--b\r\n--bo\r\r\n--bou\r\n-\r\n--\r\n--bounD\r\n--boundar"
        "--boundary\r\n\r\n\r--boundary--\r\n--bound\r\n--bounda";
    static const size_t  odd[] = { 1, 2, 3, 5, 7, 13, 64 };

    build(&body, "boundary", "preamble \r\n--boundar\r\n",
          file, sizeof(file) - 1, "\r\nepilogue\r\n--boundary\r\n");

    bad = 0;

    for (cut = 1; cut < body.len; cut++) {
        sink_init(&s, "file");
        sizes[0] = cut;
        sizes[1] = body.len;
        st = parse("boundary", body.data, body.len, sizes, 2, &s, &mp);

        if (st != MM_OK || s.parts != 3 || s.bad_pointer
            || s.data.len != sizeof(file) - 1
            || memcmp(s.data.data, file, s.data.len) != 0)
        {
            if (bad++ < 5) {
                diag("cut at %zu: status %d, %u parts, %zu bytes (%s)", cut,
                     (int) st, s.parts, s.data.len, mp.err);
            }
        }

        mm_buf_free(&s.data);
    }

    is_int(bad, 0, "all %zu two-chunk cuts give the file's bytes",
           body.len - 1);

    for (i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        sink_init(&s, "file");
        st = parse("boundary", body.data, body.len, &odd[i], 1, &s, &mp);
        is_int(st, MM_OK, "chunks of %zu: parses", odd[i]);
        is_mem(s.data.data, s.data.len, file, sizeof(file) - 1,
               "chunks of %zu: the file's bytes", odd[i]);
        ok(!s.bad_pointer, "chunks of %zu: no stale data pointers", odd[i]);
        mm_buf_free(&s.data);
    }

    mm_buf_free(&body);
}


static void
test_edges(void)
{
    sink_t          s;
    mm_status_t     st;
    mm_multipart_t  mp;
    mm_buf_t        b;
    size_t          i;

#define BODY(str)  str, sizeof(str) - 1

    /* an empty file part; no headers at all in another part */
    sink_init(&s, "file");
    st = parse("b", BODY("--b\r\n\r\nno headers\r\n--b\r\n"
                         "Content-Disposition: form-data; name=file\r\n\r\n"
                         "\r\n--b--"), NULL, 0, &s, &mp);
    is_int(st, MM_OK, "empty part: parses");
    is_int(s.parts, 2, "empty part: two parts");
    is_int(s.captured, 1, "empty part: captured");
    is_int(s.data.len, 0, "empty part: no bytes");
    is_int(s.calls, 0, "empty part: no data calls");
    mm_buf_free(&s.data);

    /* transport padding after a delimiter; the closing one with CRLF */
    sink_init(&s, "file");
    st = parse("b", BODY("--b \t\r\nContent-Disposition: form-data; "
                         "name=\"file\"\r\n\r\nabc\r\n--b--\r\n"),
               NULL, 0, &s, &mp);
    is_int(st, MM_OK, "padding after the boundary: parses");
    is_mem(s.data.data, s.data.len, "abc", 3, "padding: the bytes");
    mm_buf_free(&s.data);

    /* no closing delimiter: the body was cut */
    sink_init(&s, "file");
    st = parse("b", BODY("--b\r\nContent-Disposition: form-data; "
                         "name=\"file\"\r\n\r\nabc\r\n--b"),
               NULL, 0, &s, &mp);
    is_int(st, MM_EBADDATA, "cut after a boundary: error");
    ok(strstr(mp.err, "closing") != NULL, "cut: says so (%s)", mp.err);
    is_mem(s.data.data, s.data.len, "abc", 3, "cut: bytes so far");
    mm_buf_free(&s.data);

    sink_init(&s, "file");
    st = parse("b", BODY("--b\r\nContent-Disposition: form-data; "
                         "name=\"file\"\r\n\r\nabc\r\n--"),
               NULL, 0, &s, &mp);
    is_int(st, MM_EBADDATA, "cut inside a boundary: error");
    mm_buf_free(&s.data);

    sink_init(&s, "file");
    st = parse("b", BODY("just some bytes, not multipart"), NULL, 0, &s,
               &mp);
    is_int(st, MM_EBADDATA, "no boundary at all: error");
    ok(strstr(mp.err, "no boundary") != NULL, "no boundary: says so (%s)",
       mp.err);
    mm_buf_free(&s.data);

    sink_init(&s, "file");
    st = parse("b", BODY("--bX\r\n"), NULL, 0, &s, &mp);
    is_int(st, MM_EBADDATA, "garbage after a boundary: error");
    mm_buf_free(&s.data);

    sink_init(&s, "file");
    st = parse("b", BODY("--b\r\nno colon here\r\n\r\nx\r\n--b--"), NULL, 0,
               &s, &mp);
    is_int(st, MM_EBADDATA, "header line without a colon: error");
    mm_buf_free(&s.data);

    /* headers over the limit */
    mm_buf_init(&b);
    mm_buf_puts(&b, "--b\r\nX-Long: ");
    for (i = 0; i < MM_MULTIPART_HEADER_MAX; i++) {
        mm_buf_puts(&b, "a");
    }
    mm_buf_puts(&b, "\r\n\r\nx\r\n--b--");
    sink_init(&s, "file");
    st = parse("b", b.data, b.len, NULL, 0, &s, &mp);
    is_int(st, MM_ETOOBIG, "headers over %d bytes: too big",
           MM_MULTIPART_HEADER_MAX);
    st = mm_multipart_feed(&mp, "more", 4);
    is_int(st, MM_ETOOBIG, "after an error every feed fails the same way");
    mm_buf_free(&s.data);
    mm_buf_free(&b);

    /* the epilogue may hold anything */
    sink_init(&s, "file");
    st = parse("b", BODY("--b\r\nContent-Disposition: form-data; "
                         "name=\"file\"\r\n\r\nz\r\n--b--junk\r\n--b\r\nX"),
               NULL, 0, &s, &mp);
    is_int(st, MM_OK, "epilogue ignored");
    is_mem(s.data.data, s.data.len, "z", 1, "epilogue: bytes");
    mm_buf_free(&s.data);

    /* a bad boundary given to init */
    mm_multipart_init(&mp, "a\r", 2, on_part, on_data, &s);
    is_int(mm_multipart_feed(&mp, "x", 1), MM_EBADDATA,
           "init with a CR in the boundary fails");

#undef BODY
}


static uint32_t  rng = 2463534242u;

static uint32_t
xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}


/* random payloads over a delimiter-rich alphabet, random chunking */
static void
test_random(void)
{
    int             round, bad;
    char            file[512];
    size_t          n, i, sizes[8];
    sink_t          s;
    mm_buf_t        body;
    mm_status_t     st;
    mm_multipart_t  mp;

    static const char  alpha[] = "\r\n-bq";

    bad = 0;

    for (round = 0; round < 3000; round++) {

        /* a payload that does not hold the delimiter "\r\n--bq" */
        do {
            n = xorshift() % sizeof(file);
            for (i = 0; i < n; i++) {
                file[i] = alpha[xorshift() % (sizeof(alpha) - 1)];
            }
        } while (memmem(file, n, "\r\n--bq", 6) != NULL
                 || (n >= 4 && memcmp(file + n - 4, "\r\n--", 4) == 0)
                 || (n >= 5 && memcmp(file + n - 5, "\r\n--b", 5) == 0));

        build(&body, "bq", "", file, n, "");

        for (i = 0; i < 8; i++) {
            sizes[i] = 1 + xorshift() % 16;
        }

        sink_init(&s, "file");
        st = parse("bq", body.data, body.len, sizes, 8, &s, &mp);

        if (st != MM_OK || s.bad_pointer || s.data.len != n
            || (n && memcmp(s.data.data, file, n) != 0))
        {
            if (bad++ < 5) {
                diag("round %d: status %d (%s), %zu bytes, want %zu", round,
                     (int) st, mp.err, s.data.len, n);
            }
        }

        mm_buf_free(&s.data);
        mm_buf_free(&body);
    }

    is_int(bad, 0, "3000 random payloads in random chunks come out whole");
}


int
main(void)
{
    test_boundary();
    test_simple();
    test_splits();
    test_edges();
    test_random();

    return done_testing();
}
