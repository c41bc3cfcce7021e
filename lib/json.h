/*
 * Minimal JSON (RFC 8259) reader and writer helpers.
 *
 * Reader: mm_json_parse() builds a tree in one malloc'd arena owned by the
 * returned document; mm_json_doc_free() releases all of it. Strings are
 * decoded (escapes, \uXXXX incl. surrogate pairs -> UTF-8) and
 * NUL-terminated; invalid UTF-8 in input is rejected. Numbers keep both a
 * double and, when the text is an integer that fits, an exact int64.
 * Limits: nesting depth MM_JSON_MAX_DEPTH; trailing garbage is an error
 * (mm_json_parse_prefix() reads one value of a stream of them instead).
 *
 * Writer: append to an mm_buf_t; mm_json_put_string() quotes and escapes;
 * mm_json_escape() writes the same into memory the caller sized.
 */

#ifndef MM_JSON_H
#define MM_JSON_H

#include "buf.h"


#define MM_JSON_MAX_DEPTH  64


typedef enum {
    MM_JSON_NULL = 0,
    MM_JSON_FALSE,
    MM_JSON_TRUE,
    MM_JSON_NUMBER,
    MM_JSON_STRING,
    MM_JSON_ARRAY,
    MM_JSON_OBJECT
} mm_json_type_t;


typedef struct mm_json_s         mm_json_t;
typedef struct mm_json_member_s  mm_json_member_t;

struct mm_json_s {
    mm_json_type_t       type;
    union {
        struct {
            double       d;
            int64_t      i;
            int          is_int;   /* integer text that fits int64 */
        } num;
        struct {
            const char  *s;        /* NUL-terminated, may contain NUL */
            size_t       len;
        } str;
        struct {
            mm_json_t   *items;
            size_t       n;
        } arr;
        struct {
            mm_json_member_t *members;
            size_t       n;
        } obj;
    } u;
};

struct mm_json_member_s {
    const char          *key;
    size_t               key_len;
    mm_json_t            value;
};

typedef struct mm_json_doc_s  mm_json_doc_t;


/*
 * Parses text[0..len). On success *doc owns the tree, *root points into it.
 * On failure returns MM_EBADDATA (or MM_ETOOBIG for depth, MM_ENOMEM) and,
 * if err != NULL, writes a one-line reason with the byte offset.
 */
mm_status_t mm_json_parse(const char *text, size_t len, mm_json_doc_t **doc,
    const mm_json_t **root, char *err, size_t err_size);
void mm_json_doc_free(mm_json_doc_t **doc);

/*
 * The same for the value at the start of text[0..len) (whitespace before
 * and after it included): *used is how many bytes that was, and whatever
 * follows (the next value of a stream) is left to the caller.
 */
mm_status_t mm_json_parse_prefix(const char *text, size_t len, size_t *used,
    mm_json_doc_t **doc, const mm_json_t **root, char *err, size_t err_size);

/* object member lookup (first match), NULL if absent or obj not an object */
const mm_json_t *mm_json_get(const mm_json_t *obj, const char *key);

/* typed getters: return 1 and set *out when present with the right type */
int mm_json_get_string(const mm_json_t *obj, const char *key,
    const char **s, size_t *len);
int mm_json_get_int64(const mm_json_t *obj, const char *key, int64_t *out);
int mm_json_get_bool(const mm_json_t *obj, const char *key, int *out);

/*
 * writer: "..." with \" \\ \b \f \n \r \t and \u00XX for other controls;
 * each ill-formed UTF-8 subsequence becomes U+FFFD
 */
void mm_json_put_string(mm_buf_t *b, const char *s, size_t len);

/*
 * The same escaping without the quotes, into dst, which has room for
 * MM_JSON_ESCAPED_MAX(len) bytes; returns the end of what it wrote.
 */
#define MM_JSON_ESCAPED_MAX(len)  (6 * (size_t) (len))
char *mm_json_escape(char *dst, const char *s, size_t len);

/* v in decimal at dst (at most MM_JSON_INT_MAX bytes); returns the end */
#define MM_JSON_INT_MAX  20
char *mm_json_int(char *dst, int64_t v);


#endif /* MM_JSON_H */
