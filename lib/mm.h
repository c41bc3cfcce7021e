/*
 * ngx_media shared definitions for nginx-free code (lib/, daemons/).
 * One status enum for everything in lib/; the nginx glue maps it to HTTP
 * status codes in one table (ngx_http_media_module.c).
 */

#ifndef MM_H
#define MM_H

#include <stddef.h>
#include <stdint.h>


typedef enum {
    MM_OK = 0,
    MM_ENOMEM,          /* allocation failed */
    MM_EBADDATA,        /* malformed input (JSON, signature syntax, ...) */
    MM_ETOOBIG,         /* input over a size or depth limit */
    MM_ENOTFOUND,       /* no such thing */
    MM_EEXPIRED,        /* signature expired */
    MM_EFORGED,         /* signature does not verify / unknown key id */
    MM_ETTL,            /* expiry further away than the allowed TTL */
    MM_EIO,             /* I/O error, errno is set */
    MM_ECORRUPT,        /* on-disk data fails its checksum */
    MM_EAGAIN           /* try again later */
} mm_status_t;


const char *mm_strstatus(mm_status_t st);


#endif /* MM_H */
