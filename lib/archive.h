/*
 * Background ZIP archives (docs/archives.md): the pieces the nginx module
 * and daemons/archiver share.
 *
 * An archive is named by its hash: 32 random bytes (OpenSSL RAND_bytes) as
 * base64url without padding, 43 characters, safe in URLs and file names.
 *
 * The download's file name is the request's "name" sanitised like an entry
 * name (lib/names.h: one path segment, no controls) with ".zip" appended
 * when it does not end so; "archive.zip" when none is given. The
 * Content-Disposition of the download carries it twice (RFC 6266):
 * filename= with an ASCII fallback ('_' for each non-ASCII character,
 * '"' and '\'), and filename*=UTF-8''<percent-encoded>.
 */

#ifndef MM_ARCHIVE_H
#define MM_ARCHIVE_H

#include <stddef.h>
#include "mm.h"
#include "names.h"


#define MM_ARCHIVE_HASH_LEN     43
#define MM_ARCHIVE_NAME_DEFAULT "archive.zip"
/* "attachment; filename=\"\"; filename*=UTF-8''" + 255 + 3 * 255 */
#define MM_ARCHIVE_DISPOSITION_SIZE  (64 + 4 * MM_NAME_MAX)


/* out[MM_ARCHIVE_HASH_LEN + 1]; MM_EAGAIN without randomness */
mm_status_t mm_archive_hash_new(char *out);

/* 1 if s is 43 base64url characters */
int mm_archive_hash_valid(const char *s, size_t len);

/*
 * The download name for a requested one (NULL / len 0: the default) into
 * out (MM_NAME_SIZE bytes, NUL-terminated); returns its length.
 */
size_t mm_archive_name(const char *in, size_t len, char *out);

/*
 * Content-Disposition value for name (UTF-8, as mm_archive_name makes it)
 * into out (MM_ARCHIVE_DISPOSITION_SIZE bytes, NUL-terminated); returns
 * its length.
 */
size_t mm_archive_disposition(const char *name, size_t len, char *out);


#endif /* MM_ARCHIVE_H */
