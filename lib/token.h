/*
 * Bearer tokens: "nmt_" + 43 base64url chars (32 random bytes from
 * OpenSSL RAND_bytes). Only the SHA-256 (lowercase hex) is ever stored.
 */

#ifndef MM_TOKEN_H
#define MM_TOKEN_H

#include "mm.h"


#define MM_TOKEN_PREFIX     "nmt_"
#define MM_TOKEN_LEN        47      /* prefix + 43 */
#define MM_TOKEN_HASH_LEN   64      /* hex sha256 */


/* out_size >= MM_TOKEN_LEN + 1 */
mm_status_t mm_token_new(char *out, size_t out_size);

/* 1 if the token has the right prefix, length and alphabet */
int mm_token_well_formed(const char *tok, size_t len);

/* hex[MM_TOKEN_HASH_LEN + 1], NUL-terminated lowercase hex SHA-256 */
void mm_token_hash(const char *tok, size_t len, char *hex);

/* constant-time equality of two equal-length byte strings */
int mm_ct_equal(const void *a, const void *b, size_t n);

/* base64url without padding; out_size >= 4*ceil(n/3)+1. Returns length. */
size_t mm_b64url_encode(const unsigned char *in, size_t n, char *out,
    size_t out_size);
/*
 * returns decoded length, or (size_t) -1 on a bad alphabet/length, padding,
 * non-zero unused bits in the last character, or out_size too small
 */
size_t mm_b64url_decode(const char *in, size_t n, unsigned char *out,
    size_t out_size);


#endif /* MM_TOKEN_H */
