/*
 * Streaming multipart/form-data parser (RFC 7578 / RFC 2046 section 5.1).
 *
 * Fed the body in chunks of any size (a delimiter may be split across
 * chunks anywhere), it calls back once per part with the part's name,
 * filename and Content-Type, and then with the part's bytes for the parts
 * the callback chose to capture. Nothing is buffered but the part headers
 * (at most MM_MULTIPART_HEADER_MAX bytes) and the few bytes of a possible
 * delimiter at the end of a chunk, so memory does not grow with the body.
 *
 * Data callbacks point either into the chunk being fed or into the parser
 * itself (the bytes of a delimiter prefix that turned out to be data);
 * both stay valid while the caller keeps the chunk and the parser. Slices
 * of one chunk come out as long as possible, in order.
 *
 *     mm_multipart_t  mp;
 *
 *     if (mm_multipart_boundary(ct, ct_len, b, sizeof(b), &blen) != MM_OK)
 *         ... not multipart/form-data with a usable boundary
 *     mm_multipart_init(&mp, b, blen, on_part, on_data, ctx);
 *     while (more) mm_multipart_feed(&mp, chunk, n);    MM_OK or an error
 *     mm_multipart_finish(&mp);                          MM_OK once closed
 *
 * The caller owns the struct (no allocation here); it holds no pointers
 * to the chunks after feed returns.
 */

#ifndef MM_MULTIPART_H
#define MM_MULTIPART_H

#include "mm.h"


#define MM_MULTIPART_BOUNDARY_MAX  70       /* RFC 2046 */
#define MM_MULTIPART_HEADER_MAX    8192     /* a part's header block */
#define MM_MULTIPART_PARAM_MAX     256      /* name, filename, type */


typedef struct {
    char        name[MM_MULTIPART_PARAM_MAX];          /* "" if none */
    char        filename[MM_MULTIPART_PARAM_MAX];
    char        content_type[MM_MULTIPART_PARAM_MAX];
    unsigned    index;                                  /* 0, 1, ... */
    unsigned    has_filename:1;
} mm_multipart_part_t;


/* return 1 to receive the part's bytes through on_data, 0 to skip them */
typedef int (*mm_multipart_part_pt)(void *ctx,
    const mm_multipart_part_t *part);
typedef void (*mm_multipart_data_pt)(void *ctx, const char *p, size_t n);


typedef struct {
    /* delimiter: CR LF "--" boundary; the body's first one may lack CR LF */
    char                   delim[4 + MM_MULTIPART_BOUNDARY_MAX];
    size_t                 delim_len;
    size_t                 matched;         /* delim bytes held back */
    unsigned               state;
    unsigned               capture:1;       /* current part wanted */
    unsigned               started:1;       /* past the first delimiter */
    mm_multipart_part_pt   on_part;
    mm_multipart_data_pt   on_data;
    void                  *ctx;
    mm_multipart_part_t    part;
    size_t                 hdr_len;
    char                   hdr[MM_MULTIPART_HEADER_MAX];
    unsigned               parts;
    mm_status_t            error;           /* MM_OK until one */
    char                   err[128];        /* why, after an error */
} mm_multipart_t;


/*
 * The boundary parameter of a Content-Type "multipart/form-data; ...
 * boundary=..." (token or quoted string), into out[0..*len). MM_OK,
 * MM_ENOTFOUND when the type is not multipart/form-data, MM_EBADDATA when
 * the boundary is missing, empty, longer than 70 or of illegal characters.
 */
mm_status_t mm_multipart_boundary(const char *content_type, size_t len,
    char *out, size_t out_size, size_t *out_len);

void mm_multipart_init(mm_multipart_t *mp, const char *boundary, size_t len,
    mm_multipart_part_pt on_part, mm_multipart_data_pt on_data, void *ctx);

/*
 * MM_OK, or MM_EBADDATA / MM_ETOOBIG (headers over the limit) with the
 * reason in mp->err; once failed, every later call fails the same way.
 * Bytes after the closing delimiter are ignored.
 */
mm_status_t mm_multipart_feed(mm_multipart_t *mp, const char *p, size_t n);

/* at the end of the body: MM_OK if the closing delimiter was seen */
mm_status_t mm_multipart_finish(mm_multipart_t *mp);


#endif /* MM_MULTIPART_H */
