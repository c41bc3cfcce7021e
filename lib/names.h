/*
 * Archive entry names for downloaded files.
 *
 * Where a name comes from (mm_name_pick): the Content-Disposition header's
 * filename*= (RFC 6266; RFC 8187, ex-5987, ext-value: UTF-8 or ISO-8859-1),
 * else its filename= (token or quoted-string, bytes taken as they are),
 * when either leaves a usable name; else the last non-empty segment of the
 * URL path (query and fragment cut, percent-decoded), else "file".
 *
 * What a name may be (mm_name_sanitize): one path segment, at most
 * MM_NAME_MAX bytes of valid UTF-8:
 *   - invalid UTF-8 (stray bytes, overlong forms, surrogates, > U+10FFFF)
 *     becomes U+FFFD, one per bad byte;
 *   - control characters (C0, DEL, C1) and the bidirectional controls that
 *     can disguise an extension (U+200E/F, U+202A..E, U+2066..9) become "_";
 *   - "\" counts as "/", and only the last segment that is not empty, "."
 *     or ".." is kept (RFC 6266 4.3), so "../../etc/passwd" is "passwd"
 *     and "/abs/x.png" is "x.png";
 *   - a leading drive letter ("C:") is dropped, and the characters Windows
 *     refuses in names (< > : " | ? *) become "_";
 *   - leading and trailing spaces and trailing dots are trimmed, so "."
 *     and ".." cannot remain;
 *   - longer than MM_NAME_MAX: the stem is cut on a character boundary and
 *     the extension kept (when it is at most MM_NAME_EXT_MAX bytes);
 *   - empty after all that: "file".
 *
 * De-duplication (mm_names_add), case-sensitive: a name already taken gets
 * " (N)" with the smallest free N >= 1 inserted before its extension:
 * "a.png", "a (1).png", "a (2).png"; "README" -> "README (1)". The
 * extension is the part from the last "." (not a leading one, so ".bashrc"
 * -> ".bashrc (1)"), except that ".tar" before a compression suffix
 * (.gz .bz2 .xz .zst .lz .lzma .Z) belongs to it: "archive.tar.gz" ->
 * "archive (1).tar.gz", as browsers name repeated downloads. The result
 * stays within MM_NAME_MAX bytes (the stem is cut).
 */

#ifndef MM_NAMES_H
#define MM_NAMES_H

#include <stddef.h>
#include "mm.h"


#define MM_NAME_MAX       255       /* bytes, without the NUL */
#define MM_NAME_SIZE      (MM_NAME_MAX + 1)
#define MM_NAME_EXT_MAX   32
#define MM_NAME_DEFAULT   "file"


typedef struct mm_names_s  mm_names_t;


/*
 * Sanitises in[0..len) into out (MM_NAME_SIZE bytes, NUL-terminated) by
 * the rules above; returns the length (>= 1).
 */
size_t mm_name_sanitize(const char *in, size_t len, char *out);

/*
 * The file name a Content-Disposition value carries (decoded, not yet
 * sanitised) into out (out_size > 0, NUL-terminated, cut if longer).
 * Returns its length, 0 when the value has none.
 */
size_t mm_name_from_disposition(const char *value, size_t len, char *out,
    size_t out_size);

/* the last non-empty URL path segment, percent-decoded; 0 if none */
size_t mm_name_from_url(const char *url, size_t len, char *out,
    size_t out_size);

/*
 * The whole chain: disposition (may be NULL), else the URL (may be NULL),
 * else "file", sanitised into out (MM_NAME_SIZE bytes). Returns the length.
 */
size_t mm_name_pick(const char *disposition, size_t disposition_len,
    const char *url, size_t url_len, char *out);


/* a set of the names taken in one archive */
mm_status_t mm_names_new(mm_names_t **sp);
void mm_names_destroy(mm_names_t **sp);

/*
 * Makes name (NUL-terminated, at most MM_NAME_MAX bytes, in a buffer of
 * MM_NAME_SIZE; normally from mm_name_sanitize) unique in the set by the
 * rule above, in place, takes it and sets *len. MM_OK, MM_ENOMEM.
 */
mm_status_t mm_names_add(mm_names_t *s, char *name, size_t *len);

/* takes a name as it is (after a restart, names already in the archive) */
mm_status_t mm_names_reserve(mm_names_t *s, const char *name, size_t len);

int mm_names_has(const mm_names_t *s, const char *name, size_t len);


#endif /* MM_NAMES_H */
