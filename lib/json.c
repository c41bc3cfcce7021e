/*
 * Strict RFC 8259 JSON reader and small writer helpers.
 *
 * The reader is recursive descent bounded by MM_JSON_MAX_DEPTH. Every node,
 * string and array of children lives in one chunked arena owned by the
 * document. Children of a container are collected on a scratch stack
 * (on the parser's own stack until it outgrows it) and copied into the
 * arena once the container closes, so each array/object is one contiguous
 * block. The document and its first chunk are one allocation.
 *
 * Hot paths (every analytics event goes through here): runs of bytes that
 * need no decoding or escaping are found eight bytes a step and copied
 * whole, and integers that fit int64 are converted without strtod.
 */

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"


#define MM_JSON_ALIGN       _Alignof(max_align_t)
#define MM_JSON_CHUNK_MIN   4096
#define MM_JSON_STACK       16          /* scratch items before malloc */

#define MM_JSON_ONES        UINT64_C(0x0101010101010101)
#define MM_JSON_HIGHS       UINT64_C(0x8080808080808080)


typedef struct mm_json_chunk_s  mm_json_chunk_t;

struct mm_json_chunk_s {
    mm_json_chunk_t     *next;
    size_t               size;
    size_t               used;
    _Alignas(max_align_t) unsigned char data[];
};

struct mm_json_doc_s {
    mm_json_chunk_t     *chunks;
    size_t               next_size;     /* size of the next regular chunk */
    mm_json_t            root;
    mm_json_chunk_t     *first;         /* in the document's own malloc */
};

typedef struct {
    const unsigned char *start;
    const unsigned char *p;
    const unsigned char *end;
    unsigned             depth;
    mm_json_doc_t       *doc;

    mm_json_t           *items;         /* scratch stack of array items */
    size_t               nitems;
    size_t               items_cap;
    mm_json_member_t    *members;       /* scratch stack of object members */
    size_t               nmembers;
    size_t               members_cap;

    mm_json_t            items0[MM_JSON_STACK];
    mm_json_member_t     members0[MM_JSON_STACK];

    mm_status_t          status;
    char                *err;
    size_t               err_size;
} mm_json_parser_t;


static inline void *mm_json_alloc(mm_json_doc_t *doc, size_t size,
    size_t align);
static void *mm_json_alloc_chunk(mm_json_doc_t *doc, size_t size);
static void mm_json_shrink_last(mm_json_doc_t *doc, void *p, size_t size,
    size_t used);
static mm_status_t mm_json_fail(mm_json_parser_t *ps, mm_status_t st,
    const unsigned char *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void *mm_json_grow(mm_json_parser_t *ps, void *stack, void *p,
    size_t *cap, size_t size);
static void mm_json_skip_ws(mm_json_parser_t *ps);
static mm_status_t mm_json_value(mm_json_parser_t *ps, mm_json_t *v);
static mm_status_t mm_json_array(mm_json_parser_t *ps, mm_json_t *v);
static mm_status_t mm_json_object(mm_json_parser_t *ps, mm_json_t *v);
static mm_status_t mm_json_string(mm_json_parser_t *ps, const char **s,
    size_t *len);
static mm_status_t mm_json_number(mm_json_parser_t *ps, mm_json_t *v);
static mm_status_t mm_json_literal(mm_json_parser_t *ps, const char *word,
    size_t n);
static int mm_json_hex4(const unsigned char *p, unsigned *out);
static int mm_json_utf8_len(const unsigned char *p, size_t n);
static size_t mm_json_put_utf8(unsigned char *out, unsigned cp);
static double mm_json_strtod(const char *s);
static const unsigned char *mm_json_plain(const unsigned char *p,
    const unsigned char *end);
static size_t mm_json_escape_one(char *out, const unsigned char **pp,
    const unsigned char *end);


/* arena */

/*
 * size bytes aligned to align (a power of two up to MM_JSON_ALIGN; strings
 * take 1): from the current chunk, or a new one
 */
static inline void *
mm_json_alloc(mm_json_doc_t *doc, size_t size, size_t align)
{
    size_t            off;
    mm_json_chunk_t  *c;

    c = doc->chunks;
    off = (c->used + align - 1) & ~(align - 1);

    if (size > 0 && off <= c->size && size <= c->size - off) {
        c->used = off + size;
        return c->data + off;
    }

    return mm_json_alloc_chunk(doc, size);
}


/* the current chunk is full: a new one, or one of its own for a big block */
static void *
mm_json_alloc_chunk(mm_json_doc_t *doc, size_t size)
{
    size_t            csize;
    mm_json_chunk_t  *c;

    if (size == 0) {
        size = 1;
    }

    if (size > SIZE_MAX / 2 - sizeof(mm_json_chunk_t)) {
        return NULL;
    }

    csize = doc->next_size;

    if (size > csize / 4) {
        /* big blocks get a chunk of their own below the current one */
        c = malloc(sizeof(mm_json_chunk_t) + size);
        if (c == NULL) {
            return NULL;
        }

        c->size = size;
        c->used = size;
        c->next = doc->chunks->next;
        doc->chunks->next = c;

        return c->data;
    }

    c = malloc(sizeof(mm_json_chunk_t) + csize);
    if (c == NULL) {
        return NULL;
    }

    c->size = csize;
    c->used = size;
    c->next = doc->chunks;
    doc->chunks = c;

    if (doc->next_size < 1024 * 1024) {
        doc->next_size *= 2;
    }

    return c->data;
}


/* gives back the unused tail of the most recent allocation, if it is one */
static void
mm_json_shrink_last(mm_json_doc_t *doc, void *p, size_t size, size_t used)
{
    mm_json_chunk_t  *c;

    c = doc->chunks;

    if (c != NULL && (unsigned char *) p + size == c->data + c->used) {
        c->used -= size - (used ? used : 1);
    }
}


void
mm_json_doc_free(mm_json_doc_t **doc)
{
    mm_json_chunk_t  *c, *next;

    if (doc == NULL || *doc == NULL) {
        return;
    }

    for (c = (*doc)->chunks; c != NULL; c = next) {
        next = c->next;

        if (c != (*doc)->first) {
            free(c);
        }
    }

    free(*doc);
    *doc = NULL;
}


/* parser */

static mm_status_t
mm_json_fail(mm_json_parser_t *ps, mm_status_t st, const unsigned char *at,
    const char *fmt, ...)
{
    int      n;
    va_list  ap;

    if (ps->status != MM_OK) {
        return ps->status;
    }

    ps->status = st;

    if (ps->err == NULL || ps->err_size == 0) {
        return st;
    }

    n = snprintf(ps->err, ps->err_size, "offset %zu: ",
                 (size_t) (at - ps->start));

    if (n >= 0 && (size_t) n < ps->err_size) {
        va_start(ap, fmt);
        vsnprintf(ps->err + n, ps->err_size - n, fmt, ap);
        va_end(ap);
    }

    return st;
}


/*
 * The value at the start of text[0..len) and the whitespace after it;
 * *used is how many bytes that was. With whole, anything after that is an
 * error.
 */
static mm_status_t
mm_json_parse_text(const char *text, size_t len, int whole, size_t *used,
    mm_json_doc_t **doc, const mm_json_t **root, char *err, size_t err_size)
{
    size_t            first, off;
    mm_status_t       st;
    mm_json_parser_t  ps;

    *doc = NULL;
    if (root != NULL) {
        *root = NULL;
    }

    if (err != NULL && err_size > 0) {
        err[0] = '\0';
    }

    ps.start = (const unsigned char *) text;
    ps.p = ps.start;
    ps.end = ps.start + len;
    ps.depth = 0;
    ps.items = ps.items0;
    ps.nitems = 0;
    ps.items_cap = MM_JSON_STACK;
    ps.members = ps.members0;
    ps.nmembers = 0;
    ps.members_cap = MM_JSON_STACK;
    ps.status = MM_OK;
    ps.err = err;
    ps.err_size = err_size;

    /* the first chunk: enough for a small document, in the same malloc */
    first = MM_JSON_CHUNK_MIN;

    while (first < len && first < 64 * 1024) {
        first *= 2;
    }

    off = (sizeof(mm_json_doc_t) + MM_JSON_ALIGN - 1) & ~(MM_JSON_ALIGN - 1);

    ps.doc = malloc(off + sizeof(mm_json_chunk_t) + first);
    if (ps.doc == NULL) {
        return mm_json_fail(&ps, MM_ENOMEM, ps.p, "out of memory");
    }

    ps.doc->first = (mm_json_chunk_t *) ((unsigned char *) ps.doc + off);
    ps.doc->first->next = NULL;
    ps.doc->first->size = first;
    ps.doc->first->used = 0;
    ps.doc->chunks = ps.doc->first;
    ps.doc->next_size = 2 * first;

    mm_json_skip_ws(&ps);

    st = mm_json_value(&ps, &ps.doc->root);

    if (st == MM_OK) {
        mm_json_skip_ws(&ps);

        if (whole && ps.p != ps.end) {
            st = mm_json_fail(&ps, MM_EBADDATA, ps.p,
                              "trailing garbage after document");
        }
    }

    if (ps.items != ps.items0) {
        free(ps.items);
    }

    if (ps.members != ps.members0) {
        free(ps.members);
    }

    if (st != MM_OK) {
        mm_json_doc_free(&ps.doc);
        return st;
    }

    *doc = ps.doc;
    if (root != NULL) {
        *root = &ps.doc->root;
    }

    if (used != NULL) {
        *used = (size_t) (ps.p - ps.start);
    }

    return MM_OK;
}


mm_status_t
mm_json_parse(const char *text, size_t len, mm_json_doc_t **doc,
    const mm_json_t **root, char *err, size_t err_size)
{
    return mm_json_parse_text(text, len, 1, NULL, doc, root, err, err_size);
}


mm_status_t
mm_json_parse_prefix(const char *text, size_t len, size_t *used,
    mm_json_doc_t **doc, const mm_json_t **root, char *err, size_t err_size)
{
    return mm_json_parse_text(text, len, 0, used, doc, root, err, err_size);
}


/*
 * Makes room for one more entry on a scratch stack that starts in the
 * parser (stack) and moves to the heap when it outgrows it.
 */
static void *
mm_json_grow(mm_json_parser_t *ps, void *stack, void *p, size_t *cap,
    size_t size)
{
    size_t   n;
    void    *np;

    n = *cap * 2;

    if (p == stack) {
        np = malloc(n * size);
        if (np != NULL) {
            memcpy(np, p, *cap * size);
        }

    } else {
        np = realloc(p, n * size);
    }

    if (np == NULL) {
        mm_json_fail(ps, MM_ENOMEM, ps->p, "out of memory");
        return NULL;
    }

    *cap = n;

    return np;
}


static void
mm_json_skip_ws(mm_json_parser_t *ps)
{
    while (ps->p < ps->end
           && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n'
               || *ps->p == '\r'))
    {
        ps->p++;
    }
}


static mm_status_t
mm_json_value(mm_json_parser_t *ps, mm_json_t *v)
{
    memset(v, 0, sizeof(*v));

    if (ps->p == ps->end) {
        return mm_json_fail(ps, MM_EBADDATA, ps->p,
                            "unexpected end of input, expected a value");
    }

    switch (*ps->p) {

    case '{':
        return mm_json_object(ps, v);

    case '[':
        return mm_json_array(ps, v);

    case '"':
        v->type = MM_JSON_STRING;
        return mm_json_string(ps, &v->u.str.s, &v->u.str.len);

    case 't':
        v->type = MM_JSON_TRUE;
        return mm_json_literal(ps, "true", 4);

    case 'f':
        v->type = MM_JSON_FALSE;
        return mm_json_literal(ps, "false", 5);

    case 'n':
        v->type = MM_JSON_NULL;
        return mm_json_literal(ps, "null", 4);

    case '-':
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return mm_json_number(ps, v);

    default:
        if (*ps->p >= 0x20 && *ps->p < 0x7f) {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "unexpected character '%c'", *ps->p);
        }

        return mm_json_fail(ps, MM_EBADDATA, ps->p,
                            "unexpected byte 0x%02x", *ps->p);
    }
}


static mm_status_t
mm_json_literal(mm_json_parser_t *ps, const char *word, size_t n)
{
    if ((size_t) (ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) {
        return mm_json_fail(ps, MM_EBADDATA, ps->p, "invalid literal");
    }

    ps->p += n;

    return MM_OK;
}


static mm_status_t
mm_json_array(mm_json_parser_t *ps, mm_json_t *v)
{
    size_t        mark, n;
    mm_json_t     item, *p;
    mm_status_t   st;

    if (++ps->depth > MM_JSON_MAX_DEPTH) {
        return mm_json_fail(ps, MM_ETOOBIG, ps->p,
                            "nesting deeper than %d", MM_JSON_MAX_DEPTH);
    }

    ps->p++;                                    /* [ */
    v->type = MM_JSON_ARRAY;
    mark = ps->nitems;

    mm_json_skip_ws(ps);

    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        ps->depth--;
        return MM_OK;
    }

    for ( ;; ) {
        mm_json_skip_ws(ps);

        if (ps->p < ps->end && *ps->p == ']') {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "trailing comma in array");
        }

        st = mm_json_value(ps, &item);
        if (st != MM_OK) {
            return st;
        }

        if (ps->nitems == ps->items_cap) {
            p = mm_json_grow(ps, ps->items0, ps->items, &ps->items_cap,
                             sizeof(mm_json_t));
            if (p == NULL) {
                return ps->status;
            }
            ps->items = p;
        }

        ps->items[ps->nitems++] = item;

        mm_json_skip_ws(ps);

        if (ps->p == ps->end) {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "unexpected end of input in array");
        }

        if (*ps->p == ',') {
            ps->p++;
            continue;
        }

        if (*ps->p == ']') {
            ps->p++;
            break;
        }

        return mm_json_fail(ps, MM_EBADDATA, ps->p,
                            "expected ',' or ']' in array");
    }

    n = ps->nitems - mark;

    p = mm_json_alloc(ps->doc, n * sizeof(mm_json_t), MM_JSON_ALIGN);
    if (p == NULL) {
        return mm_json_fail(ps, MM_ENOMEM, ps->p, "out of memory");
    }

    memcpy(p, ps->items + mark, n * sizeof(mm_json_t));
    ps->nitems = mark;

    v->u.arr.items = p;
    v->u.arr.n = n;
    ps->depth--;

    return MM_OK;
}


static mm_status_t
mm_json_object(mm_json_parser_t *ps, mm_json_t *v)
{
    size_t             mark, n;
    mm_status_t        st;
    mm_json_member_t   m, *p;

    if (++ps->depth > MM_JSON_MAX_DEPTH) {
        return mm_json_fail(ps, MM_ETOOBIG, ps->p,
                            "nesting deeper than %d", MM_JSON_MAX_DEPTH);
    }

    ps->p++;                                    /* { */
    v->type = MM_JSON_OBJECT;
    mark = ps->nmembers;

    mm_json_skip_ws(ps);

    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        ps->depth--;
        return MM_OK;
    }

    for ( ;; ) {
        mm_json_skip_ws(ps);

        if (ps->p == ps->end) {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "unexpected end of input in object");
        }

        if (*ps->p == '}') {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "trailing comma in object");
        }

        if (*ps->p != '"') {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "expected a string key in object");
        }

        st = mm_json_string(ps, &m.key, &m.key_len);
        if (st != MM_OK) {
            return st;
        }

        mm_json_skip_ws(ps);

        if (ps->p == ps->end || *ps->p != ':') {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "expected ':' after object key");
        }

        ps->p++;
        mm_json_skip_ws(ps);

        st = mm_json_value(ps, &m.value);
        if (st != MM_OK) {
            return st;
        }

        if (ps->nmembers == ps->members_cap) {
            p = mm_json_grow(ps, ps->members0, ps->members,
                             &ps->members_cap, sizeof(mm_json_member_t));
            if (p == NULL) {
                return ps->status;
            }
            ps->members = p;
        }

        ps->members[ps->nmembers++] = m;

        mm_json_skip_ws(ps);

        if (ps->p == ps->end) {
            return mm_json_fail(ps, MM_EBADDATA, ps->p,
                                "unexpected end of input in object");
        }

        if (*ps->p == ',') {
            ps->p++;
            continue;
        }

        if (*ps->p == '}') {
            ps->p++;
            break;
        }

        return mm_json_fail(ps, MM_EBADDATA, ps->p,
                            "expected ',' or '}' in object");
    }

    n = ps->nmembers - mark;

    p = mm_json_alloc(ps->doc, n * sizeof(mm_json_member_t),
                      MM_JSON_ALIGN);
    if (p == NULL) {
        return mm_json_fail(ps, MM_ENOMEM, ps->p, "out of memory");
    }

    memcpy(p, ps->members + mark, n * sizeof(mm_json_member_t));
    ps->nmembers = mark;

    v->u.obj.members = p;
    v->u.obj.n = n;
    ps->depth--;

    return MM_OK;
}


static mm_status_t
mm_json_string(mm_json_parser_t *ps, const char **s, size_t *len)
{
    int                   n;
    size_t                size;
    unsigned              cp, lo;
    unsigned char        *out, *o;
    const unsigned char  *p, *q;

    p = ps->p + 1;                              /* after the quote */
    q = mm_json_plain(p, ps->end);

    if (q < ps->end && *q == '"') {
        /* nothing to decode: the common case */
        size = (size_t) (q - p);

        out = mm_json_alloc(ps->doc, size + 1, 1);
        if (out == NULL) {
            return mm_json_fail(ps, MM_ENOMEM, ps->p, "out of memory");
        }

        memcpy(out, p, size);
        out[size] = '\0';

        *s = (const char *) out;
        *len = size;
        ps->p = q + 1;

        return MM_OK;
    }

    /* the decoded string is never longer than its source text */
    for ( /* void */ ; q < ps->end && *q != '"'; q++) {
        if (*q == '\\' && q + 1 < ps->end) {
            q++;
        }
    }

    size = (size_t) (q - p) + 1;

    out = mm_json_alloc(ps->doc, size, 1);
    if (out == NULL) {
        return mm_json_fail(ps, MM_ENOMEM, ps->p, "out of memory");
    }

    o = out;

    for ( ;; ) {
        q = mm_json_plain(p, ps->end);
        memcpy(o, p, (size_t) (q - p));
        o += q - p;
        p = q;

        if (p == ps->end) {
            return mm_json_fail(ps, MM_EBADDATA, p,
                                "unterminated string");
        }

        if (*p == '"') {
            p++;
            break;
        }

        if (*p < 0x20) {
            return mm_json_fail(ps, MM_EBADDATA, p,
                                "control character 0x%02x in string", *p);
        }

        if (*p >= 0x80) {
            n = mm_json_utf8_len(p, ps->end - p);
            if (n <= 0) {
                return mm_json_fail(ps, MM_EBADDATA, p,
                                    "invalid UTF-8 in string");
            }

            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }

        /* backslash */

        if (ps->end - p < 2) {
            return mm_json_fail(ps, MM_EBADDATA, p, "unterminated string");
        }

        switch (p[1]) {
        case '"':  *o++ = '"';  break;
        case '\\': *o++ = '\\'; break;
        case '/':  *o++ = '/';  break;
        case 'b':  *o++ = '\b'; break;
        case 'f':  *o++ = '\f'; break;
        case 'n':  *o++ = '\n'; break;
        case 'r':  *o++ = '\r'; break;
        case 't':  *o++ = '\t'; break;

        case 'u':
            if (ps->end - p < 6 || !mm_json_hex4(p + 2, &cp)) {
                return mm_json_fail(ps, MM_EBADDATA, p,
                                    "invalid \\u escape");
            }

            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return mm_json_fail(ps, MM_EBADDATA, p,
                                    "lone low surrogate \\u%04x", cp);
            }

            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (ps->end - p < 12 || p[6] != '\\' || p[7] != 'u'
                    || !mm_json_hex4(p + 8, &lo)
                    || lo < 0xdc00 || lo > 0xdfff)
                {
                    return mm_json_fail(ps, MM_EBADDATA, p,
                                        "lone high surrogate \\u%04x", cp);
                }

                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }

            o += mm_json_put_utf8(o, cp);
            p += 6;
            continue;

        default:
            if (p[1] >= 0x20 && p[1] < 0x7f) {
                return mm_json_fail(ps, MM_EBADDATA, p,
                                    "invalid escape '\\%c'", p[1]);
            }

            return mm_json_fail(ps, MM_EBADDATA, p, "invalid escape");
        }

        p += 2;
    }

    *o = '\0';
    mm_json_shrink_last(ps->doc, out, size, (size_t) (o - out) + 1);

    *s = (const char *) out;
    *len = (size_t) (o - out);
    ps->p = p;

    return MM_OK;
}


static mm_status_t
mm_json_number(mm_json_parser_t *ps, mm_json_t *v)
{
    int                   neg, integer, overflow;
    char                  small[64], *text;
    size_t                n;
    uint64_t              u, limit;
    const unsigned char  *p, *start, *digits;

    start = ps->p;
    p = start;
    neg = 0;
    integer = 1;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    if (p == ps->end || *p < '0' || *p > '9') {
        return mm_json_fail(ps, MM_EBADDATA, p, "expected a digit");
    }

    digits = p;

    if (*p == '0') {
        p++;

        if (p < ps->end && *p >= '0' && *p <= '9') {
            return mm_json_fail(ps, MM_EBADDATA, start,
                                "leading zero in number");
        }

    } else {
        while (p < ps->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    n = (size_t) (p - digits);

    if (p < ps->end && *p == '.') {
        integer = 0;
        p++;

        if (p == ps->end || *p < '0' || *p > '9') {
            return mm_json_fail(ps, MM_EBADDATA, p,
                                "expected a digit after '.'");
        }

        while (p < ps->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        integer = 0;
        p++;

        if (p < ps->end && (*p == '+' || *p == '-')) {
            p++;
        }

        if (p == ps->end || *p < '0' || *p > '9') {
            return mm_json_fail(ps, MM_EBADDATA, p,
                                "expected a digit in exponent");
        }

        while (p < ps->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    v->type = MM_JSON_NUMBER;

    if (integer) {
        limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
        overflow = 0;
        u = 0;

        for (size_t i = 0; i < n; i++) {
            unsigned d = digits[i] - '0';

            /* 18 digits always fit */
            if (i >= 18 && u > (limit - d) / 10) {
                overflow = 1;
                break;
            }

            u = u * 10 + d;
        }

        if (!overflow) {
            /* exact, and what strtod would round it to: no strtod */
            v->u.num.is_int = 1;
            v->u.num.i = neg ? (int64_t) (0 - u) : (int64_t) u;
            v->u.num.d = neg ? -(double) u : (double) u;
            ps->p = p;

            return MM_OK;
        }
    }

    n = (size_t) (p - start);

    if (n < sizeof(small)) {
        text = small;

    } else {
        text = malloc(n + 1);
        if (text == NULL) {
            return mm_json_fail(ps, MM_ENOMEM, start, "out of memory");
        }
    }

    memcpy(text, start, n);
    text[n] = '\0';

    v->u.num.d = mm_json_strtod(text);

    if (text != small) {
        free(text);
    }

    if (isinf(v->u.num.d)) {
        return mm_json_fail(ps, MM_EBADDATA, start,
                            "number out of range");
    }

    ps->p = p;

    return MM_OK;
}


static pthread_once_t  mm_json_locale_once = PTHREAD_ONCE_INIT;
static locale_t        mm_json_c_locale;


static void
mm_json_locale_init(void)
{
    mm_json_c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0);
}


/* strtod independent of the process locale's decimal point */
static double
mm_json_strtod(const char *s)
{
    pthread_once(&mm_json_locale_once, mm_json_locale_init);

    if (mm_json_c_locale != (locale_t) 0) {
        return strtod_l(s, NULL, mm_json_c_locale);
    }

    return strtod(s, NULL);
}


static int
mm_json_hex4(const unsigned char *p, unsigned *out)
{
    unsigned  v, i, c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];

        if (c >= '0' && c <= '9') {
            c -= '0';

        } else if (c >= 'a' && c <= 'f') {
            c = c - 'a' + 10;

        } else if (c >= 'A' && c <= 'F') {
            c = c - 'A' + 10;

        } else {
            return 0;
        }

        v = (v << 4) | c;
    }

    *out = v;

    return 1;
}


/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629 table: no
 * overlongs, no surrogates, nothing above U+10FFFF), or -k where k >= 1 is
 * the length of the maximal ill-formed prefix to skip.
 */
static int
mm_json_utf8_len(const unsigned char *p, size_t n)
{
    int            len, i;
    unsigned char  lo, hi;

    if (p[0] < 0x80) {
        return 1;
    }

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        if (p[0] == 0xe0) {
            lo = 0xa0;
        } else if (p[0] == 0xed) {
            hi = 0x9f;
        }

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        if (p[0] == 0xf0) {
            lo = 0x90;
        } else if (p[0] == 0xf4) {
            hi = 0x8f;
        }

    } else {
        return -1;
    }

    for (i = 1; i < len; i++) {
        if ((size_t) i >= n || p[i] < lo || p[i] > hi) {
            return -i;
        }

        lo = 0x80;
        hi = 0xbf;
    }

    return len;
}


static size_t
mm_json_put_utf8(unsigned char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (unsigned char) cp;
        return 1;
    }

    if (cp < 0x800) {
        out[0] = (unsigned char) (0xc0 | (cp >> 6));
        out[1] = (unsigned char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        out[0] = (unsigned char) (0xe0 | (cp >> 12));
        out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
        out[2] = (unsigned char) (0x80 | (cp & 0x3f));
        return 3;
    }

    out[0] = (unsigned char) (0xf0 | (cp >> 18));
    out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
    out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
    out[3] = (unsigned char) (0x80 | (cp & 0x3f));
    return 4;
}


/* lookups */

const mm_json_t *
mm_json_get(const mm_json_t *obj, const char *key)
{
    size_t                   i, n;
    const mm_json_member_t  *m;

    if (obj == NULL || obj->type != MM_JSON_OBJECT) {
        return NULL;
    }

    n = strlen(key);

    for (i = 0; i < obj->u.obj.n; i++) {
        m = &obj->u.obj.members[i];

        if (m->key_len == n && memcmp(m->key, key, n) == 0) {
            return &m->value;
        }
    }

    return NULL;
}


int
mm_json_get_string(const mm_json_t *obj, const char *key, const char **s,
    size_t *len)
{
    const mm_json_t  *v;

    v = mm_json_get(obj, key);
    if (v == NULL || v->type != MM_JSON_STRING) {
        return 0;
    }

    *s = v->u.str.s;
    if (len != NULL) {
        *len = v->u.str.len;
    }

    return 1;
}


int
mm_json_get_int64(const mm_json_t *obj, const char *key, int64_t *out)
{
    const mm_json_t  *v;

    v = mm_json_get(obj, key);
    if (v == NULL || v->type != MM_JSON_NUMBER || !v->u.num.is_int) {
        return 0;
    }

    *out = v->u.num.i;

    return 1;
}


int
mm_json_get_bool(const mm_json_t *obj, const char *key, int *out)
{
    const mm_json_t  *v;

    v = mm_json_get(obj, key);
    if (v == NULL || (v->type != MM_JSON_TRUE && v->type != MM_JSON_FALSE)) {
        return 0;
    }

    *out = (v->type == MM_JSON_TRUE);

    return 1;
}


/*
 * The first byte at or after p that a JSON string cannot carry as it is
 * ('"', '\\', a control character) or that must be checked as UTF-8
 * (>= 0x80), or end. Eight bytes a step: each test below sets the high bit
 * of some byte of t whenever some byte of w matches (the borrow tricks of
 * "Bit Twiddling Hacks"). A borrow only runs from a matching byte upwards,
 * so the lowest flagged byte is the first match: on a little-endian CPU
 * that is the lowest set bit.
 */
static const unsigned char *
mm_json_plain(const unsigned char *p, const unsigned char *end)
{
    uint64_t  w, q, b, t;

    while (end - p >= 8) {
        memcpy(&w, p, 8);

        q = w ^ (MM_JSON_ONES * '"');
        b = w ^ (MM_JSON_ONES * '\\');

        t = ((w - MM_JSON_ONES * 0x20) & ~w)            /* < 0x20 */
            | ((q - MM_JSON_ONES) & ~q)                 /* '"' */
            | ((b - MM_JSON_ONES) & ~b)                 /* '\\' */
            | w;                                        /* >= 0x80 */

        t &= MM_JSON_HIGHS;

        if (t != 0) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return p + (__builtin_ctzll(t) >> 3);
#else
            break;
#endif
        }

        p += 8;
    }

    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
        p++;
    }

    return p;
}


/* writer */

/*
 * The byte (or UTF-8 sequence) at *pp, which mm_json_plain() stopped at,
 * as it goes into a JSON string: at most 6 bytes at out. Advances *pp.
 */
static size_t
mm_json_escape_one(char *out, const unsigned char **pp,
    const unsigned char *end)
{
    int                   n;
    const unsigned char  *p;

    static const char  hex[] = "0123456789abcdef";

    p = *pp;

    if (*p >= 0x80) {
        n = mm_json_utf8_len(p, end - p);

        if (n > 0) {
            memcpy(out, p, n);
            *pp = p + n;
            return n;
        }

        /* an ill-formed subsequence: U+FFFD keeps the output valid */
        memcpy(out, "\xef\xbf\xbd", 3);
        *pp = p - n;
        return 3;
    }

    *pp = p + 1;
    out[0] = '\\';

    switch (*p) {
    case '"':  out[1] = '"';  return 2;
    case '\\': out[1] = '\\'; return 2;
    case '\b': out[1] = 'b';  return 2;
    case '\f': out[1] = 'f';  return 2;
    case '\n': out[1] = 'n';  return 2;
    case '\r': out[1] = 'r';  return 2;
    case '\t': out[1] = 't';  return 2;
    }

    out[1] = 'u';
    out[2] = '0';
    out[3] = '0';
    out[4] = hex[*p >> 4];
    out[5] = hex[*p & 0xf];

    return 6;
}


char *
mm_json_escape(char *dst, const char *s, size_t len)
{
    const unsigned char  *p, *q, *end;

    p = (const unsigned char *) s;
    end = p + len;

    while (p < end) {
        q = mm_json_plain(p, end);
        memcpy(dst, p, (size_t) (q - p));
        dst += q - p;
        p = q;

        if (p < end) {
            dst += mm_json_escape_one(dst, &p, end);
        }
    }

    return dst;
}


char *
mm_json_int(char *dst, int64_t v)
{
    char      digits[MM_JSON_INT_MAX], *d, *end;
    uint64_t  u;

    end = digits + sizeof(digits);
    d = end;
    u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;

    do {
        *--d = (char) ('0' + u % 10);
        u /= 10;
    } while (u != 0);

    if (v < 0) {
        *--d = '-';
    }

    memcpy(dst, d, (size_t) (end - d));

    return dst + (end - d);
}


/*
 * Valid UTF-8 passes through; each ill-formed subsequence becomes U+FFFD so
 * the output is always valid JSON.
 */
void
mm_json_put_string(mm_buf_t *b, const char *s, size_t len)
{
    char                  esc[6];
    const unsigned char  *p, *q, *end;

    p = (const unsigned char *) s;
    end = p + len;

    mm_buf_append(b, "\"", 1);

    while (p < end) {
        q = mm_json_plain(p, end);
        mm_buf_append(b, p, (size_t) (q - p));
        p = q;

        if (p < end) {
            mm_buf_append(b, esc, mm_json_escape_one(esc, &p, end));
        }
    }

    mm_buf_append(b, "\"", 1);
}
