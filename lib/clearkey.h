/*
 * ClearKey key material and the W3C ClearKey license exchange
 * (https://www.w3.org/TR/encrypted-media/#clear-key), nginx-free.
 *
 * Keys and key ids are 16 bytes, written by clients either as 22
 * base64url characters without padding (as ClearKey JSON does) or as 32
 * hex digits. A license request is {"kids":["<b64url>",...],"type":"..."};
 * the response {"keys":[{"kty":"oct","kid":"<b64url>","k":"<b64url>"}],
 * "type":"..."}.
 */

#ifndef MM_CLEARKEY_H
#define MM_CLEARKEY_H

#include "buf.h"


#define MM_CLEARKEY_LEN       16
#define MM_CLEARKEY_HEX_LEN   32
#define MM_CLEARKEY_B64_LEN   22
#define MM_CLEARKEY_MAX_KIDS  64


/* MM_OK, or MM_EBADDATA for a wrong length or alphabet */
mm_status_t mm_clearkey_parse(const char *s, size_t len,
    unsigned char out[MM_CLEARKEY_LEN]);

/* NUL-terminated lowercase hex (33 bytes) / base64url (23 bytes) */
void mm_clearkey_hex(const unsigned char k[MM_CLEARKEY_LEN],
    char out[MM_CLEARKEY_HEX_LEN + 1]);
void mm_clearkey_b64url(const unsigned char k[MM_CLEARKEY_LEN],
    char out[MM_CLEARKEY_B64_LEN + 1]);

/*
 * Parses a license request. *wanted is 1 when kid is among its "kids";
 * type (>= 32 bytes) gets its "type" ("temporary" when absent). MM_OK, or
 * MM_EBADDATA with the reason in err (not JSON, no "kids" array of 1..64
 * base64url key ids, a "type" that is not a license type).
 */
mm_status_t mm_clearkey_request(const char *body, size_t len,
    const unsigned char kid[MM_CLEARKEY_LEN], int *wanted, char *type,
    size_t type_size, char *err, size_t err_size);

/* the response for one key */
void mm_clearkey_response(mm_buf_t *b, const unsigned char kid[MM_CLEARKEY_LEN],
    const unsigned char key[MM_CLEARKEY_LEN], const char *type);


#endif /* MM_CLEARKEY_H */
