/*
 * libFuzzer target for the JSON reader and writer (t/fuzz/README.md).
 *
 * Each input is parsed whole and as a stream of values (what
 * media-analytics does with a frame of events); every string of the tree
 * is written back with mm_json_put_string() and mm_json_escape(), which
 * must agree, stay within MM_JSON_ESCAPED_MAX and read back to the same
 * bytes. The input itself is also written as a string and read back: the
 * writer must turn any bytes into valid JSON.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"


static void
fuzz_check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_json: invariant broken: %s\n", what);
        abort();
    }
}


/* s written and read back; same bytes unless s is not valid UTF-8 */
static void
fuzz_string(const char *s, size_t len, int valid)
{
    char             *e, *out;
    mm_buf_t          b;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    mm_buf_init(&b);
    mm_json_put_string(&b, s, len);

    if (b.failed) {
        mm_buf_free(&b);
        return;
    }

    out = malloc(MM_JSON_ESCAPED_MAX(len) + 1);
    if (out != NULL) {
        e = mm_json_escape(out, s, len);
        fuzz_check((size_t) (e - out) <= MM_JSON_ESCAPED_MAX(len),
                   "escape within MM_JSON_ESCAPED_MAX");
        fuzz_check((size_t) (e - out) == b.len - 2
                   && memcmp(out, b.data + 1, b.len - 2) == 0,
                   "escape == put_string without quotes");
        free(out);
    }

    fuzz_check(mm_json_parse(b.data, b.len, &doc, &v, NULL, 0) == MM_OK,
               "put_string output parses");
    fuzz_check(v->type == MM_JSON_STRING, "... as a string");

    if (valid) {
        fuzz_check(v->u.str.len == len && memcmp(v->u.str.s, s, len) == 0,
                   "valid strings round trip");
    }

    mm_json_doc_free(&doc);
    mm_buf_free(&b);
}


static void
fuzz_walk(const mm_json_t *v, unsigned depth)
{
    size_t  i;

    fuzz_check(depth <= MM_JSON_MAX_DEPTH + 1, "depth bounded");

    switch (v->type) {

    case MM_JSON_STRING:
        fuzz_check(v->u.str.s[v->u.str.len] == '\0', "strings end in NUL");
        fuzz_string(v->u.str.s, v->u.str.len, 1);
        break;

    case MM_JSON_ARRAY:
        for (i = 0; i < v->u.arr.n; i++) {
            fuzz_walk(&v->u.arr.items[i], depth + 1);
        }
        break;

    case MM_JSON_OBJECT:
        for (i = 0; i < v->u.obj.n; i++) {
            fuzz_string(v->u.obj.members[i].key,
                        v->u.obj.members[i].key_len, 1);
            fuzz_walk(&v->u.obj.members[i].value, depth + 1);
        }
        break;

    case MM_JSON_NUMBER:
        if (v->u.num.is_int) {
            fuzz_check(v->u.num.d == (double) v->u.num.i,
                       "integers: the double is the int64");
        }
        break;

    default:
        break;
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char              err[128];
    size_t            off, used;
    mm_status_t       st, whole;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    whole = mm_json_parse((const char *) data, size, &doc, &v, err,
                          sizeof(err));
    fuzz_check((whole == MM_OK) == (doc != NULL), "doc iff MM_OK");

    if (whole == MM_OK) {
        fuzz_walk(v, 0);
        mm_json_doc_free(&doc);
    }

    /* as a stream: the first value alone is what the whole parse saw */
    for (off = 0; off < size; off += used) {
        st = mm_json_parse_prefix((const char *) data + off, size - off,
                                  &used, &doc, &v, err, sizeof(err));
        if (st != MM_OK) {
            fuzz_check(doc == NULL, "no doc on error");
            break;
        }

        fuzz_check(used > 0 && used <= size - off, "used within the input");

        if (off == 0) {
            fuzz_check(whole == MM_OK ? used == size : used < size,
                       "the whole parse succeeds iff one value uses it all");
        }

        mm_json_doc_free(&doc);
    }

    fuzz_string((const char *) data, size, 0);

    return 0;
}
