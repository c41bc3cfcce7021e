/*
 * A growable byte buffer (malloc-backed) used to build JSON and COPY text.
 * Errors are sticky: after a failed allocation every append is a no-op and
 * b->failed is set, so callers check once at the end.
 */

#ifndef MM_BUF_H
#define MM_BUF_H

#include <stdarg.h>
#include "mm.h"


typedef struct {
    char    *data;      /* always NUL-terminated when len > 0 and !failed */
    size_t   len;
    size_t   cap;
    int      failed;
} mm_buf_t;


void mm_buf_init(mm_buf_t *b);
void mm_buf_free(mm_buf_t *b);
void mm_buf_reset(mm_buf_t *b);                     /* len = 0, keeps memory */
void mm_buf_append(mm_buf_t *b, const void *p, size_t n);
void mm_buf_puts(mm_buf_t *b, const char *s);
void mm_buf_printf(mm_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* detach the data: caller owns it (free()); buffer is re-initialised */
char *mm_buf_steal(mm_buf_t *b, size_t *len);

/*
 * The whole file at path, read to its end (a pipe too), in malloc'd memory
 * that the caller frees; NUL-terminated, the NUL not counted in *len.
 * NULL with errno set when it cannot be read.
 */
void *mm_read_file(const char *path, size_t *len);


#endif /* MM_BUF_H */
