/*
 * Growable byte buffer with a sticky failure flag.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"


static int mm_buf_reserve(mm_buf_t *b, size_t extra);


void
mm_buf_init(mm_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->failed = 0;
}


void
mm_buf_free(mm_buf_t *b)
{
    free(b->data);
    mm_buf_init(b);
}


/* also clears the failure flag: a reset buffer starts a new build */
void
mm_buf_reset(mm_buf_t *b)
{
    b->len = 0;
    b->failed = 0;

    if (b->data != NULL) {
        b->data[0] = '\0';
    }
}


/* makes room for extra bytes plus the terminating NUL */
static int
mm_buf_reserve(mm_buf_t *b, size_t extra)
{
    size_t   need, cap;
    char    *p;

    if (b->failed) {
        return -1;
    }

    if (extra > SIZE_MAX - 1 - b->len) {
        b->failed = 1;
        return -1;
    }

    need = b->len + extra + 1;

    if (need <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 64;

    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}


void
mm_buf_append(mm_buf_t *b, const void *p, size_t n)
{
    if (mm_buf_reserve(b, n) != 0) {
        return;
    }

    if (n) {
        memcpy(b->data + b->len, p, n);
    }

    b->len += n;
    b->data[b->len] = '\0';
}


void
mm_buf_puts(mm_buf_t *b, const char *s)
{
    mm_buf_append(b, s, strlen(s));
}


void
mm_buf_printf(mm_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    if (b->failed) {
        return;
    }

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (n < 0 || mm_buf_reserve(b, (size_t) n) != 0) {
        b->failed = 1;
        return;
    }

    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t) n + 1, fmt, ap);
    va_end(ap);

    b->len += (size_t) n;
}


char *
mm_buf_steal(mm_buf_t *b, size_t *len)
{
    char  *p;

    if (b->failed) {
        mm_buf_free(b);
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }

    if (b->data == NULL) {
        /* empty buffer: hand out an empty string, not NULL */
        b->data = malloc(1);
        if (b->data == NULL) {
            if (len != NULL) {
                *len = 0;
            }
            return NULL;
        }
        b->data[0] = '\0';
    }

    p = b->data;

    if (len != NULL) {
        *len = b->len;
    }

    mm_buf_init(b);

    return p;
}


void *
mm_read_file(const char *path, size_t *len)
{
    int        err;
    FILE      *f;
    size_t     n;
    mm_buf_t   b;

    f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }

    mm_buf_init(&b);
    mm_buf_append(&b, "", 0);
    errno = 0;

    while (!b.failed) {
        if (b.cap - b.len < 2 && mm_buf_reserve(&b, b.cap) != 0) {
            break;
        }

        n = fread(b.data + b.len, 1, b.cap - b.len - 1, f);
        b.len += n;
        b.data[b.len] = '\0';

        if (n == 0) {
            break;
        }
    }

    err = b.failed ? ENOMEM : (ferror(f) ? (errno ? errno : EIO) : 0);
    fclose(f);

    if (err != 0) {
        mm_buf_free(&b);
        errno = err;
        return NULL;
    }

    return mm_buf_steal(&b, len);
}
