/*
 * Signed URLs.
 *
 * A signed URL is   <path>?exp=<unix seconds>&kid=<key id>&sig=<signature>
 * where signature = base64url_nopad(HMAC-SHA256(secret[kid],
 *                                               "<path>\n<exp>"))  (43 chars)
 * and <path> is the canonical resource path, e.g. "/stream/42".
 *
 * Verification order: lengths and syntax, then key lookup, then HMAC and a
 * constant-time compare, then time: exp <= now -> MM_EEXPIRED,
 * exp - now > max_ttl -> MM_ETTL (the TTL cap is enforced when verifying,
 * not only when minting). Time is a parameter so tests can move it.
 */

#ifndef MM_SIGN_H
#define MM_SIGN_H

#include "mm.h"


#define MM_SIGN_KID_MAX     32      /* [A-Za-z0-9_-]{1,32} */
#define MM_SIGN_SECRET_MAX  128
#define MM_SIGN_SIG_LEN     43      /* base64url(32 bytes), no padding */


typedef struct mm_sign_mac_s  mm_sign_mac_t;

typedef struct {
    char           kid[MM_SIGN_KID_MAX + 1];
    size_t         kid_len;
    unsigned char  secret[MM_SIGN_SECRET_MAX];
    size_t         secret_len;
    /*
     * HMAC-SHA256 already keyed with secret (mm_sign_key_load sets it,
     * mm_sign_key_free frees it): make/check then skip the algorithm fetch
     * and the key schedule. A key without one (filled by hand) works too,
     * keyed on every use. Copies of the key share it; it is thread-safe.
     */
    mm_sign_mac_t *mac;
} mm_sign_key_t;


/* 1 if kid is [A-Za-z0-9_-]{1,32} */
int mm_sign_kid_valid(const char *kid, size_t len);

/*
 * Loads a key from a file: the file holds the secret as hex (>= 32 hex
 * digits = 16 bytes, at most MM_SIGN_SECRET_MAX bytes), surrounding
 * whitespace ignored. Returns MM_OK, MM_EIO (errno set), MM_EBADDATA or
 * MM_ENOMEM; on MM_OK the caller owns key->mac (mm_sign_key_free).
 */
mm_status_t mm_sign_key_load(mm_sign_key_t *key, const char *kid,
    const char *path);

/* frees key->mac and wipes the key; NULL or a wiped key is fine */
void mm_sign_key_free(mm_sign_key_t *key);

/* writes MM_SIGN_SIG_LEN chars + NUL into sig (sig_size >= 44) */
mm_status_t mm_sign_make(const mm_sign_key_t *key, const char *path,
    size_t path_len, int64_t expires, char *sig, size_t sig_size);

mm_status_t mm_sign_check(const mm_sign_key_t *keys, size_t nkeys,
    const char *path, size_t path_len,
    const char *kid, size_t kid_len,
    const char *exp, size_t exp_len,
    const char *sig, size_t sig_len,
    int64_t now, int64_t max_ttl);

/*
 * mac = HMAC-SHA256(key, msg); what mm_sign_make/mm_sign_check use, exposed
 * so tests can hold it against RFC 4231.
 */
#define MM_SIGN_MAC_LEN     32

mm_status_t mm_sign_hmac_sha256(const unsigned char *key, size_t key_len,
    const void *msg, size_t msg_len, unsigned char mac[MM_SIGN_MAC_LEN]);


#endif /* MM_SIGN_H */
