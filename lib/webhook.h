/*
 * Webhook signatures (daemons/notifier signs, receivers verify; see
 * docs/archives.md).
 *
 *   X-Media-Timestamp: <unix seconds>
 *   X-Media-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 *
 * The secret is the bytes of MEDIA_WEBHOOK_SECRET as given (not decoded).
 * A receiver recomputes the HMAC over the raw body it received, compares in
 * constant time and refuses timestamps too far from its clock (replays).
 */

#ifndef MM_WEBHOOK_H
#define MM_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include "mm.h"


#define MM_WEBHOOK_SIG_LEN  71          /* "sha256=" + 64 hex digits */


/* out[MM_WEBHOOK_SIG_LEN + 1] */
mm_status_t mm_webhook_sign(const void *secret, size_t secret_len,
    int64_t ts, const void *body, size_t body_len, char *out);

/*
 * MM_OK, MM_EFORGED (signature does not match or malformed), MM_EEXPIRED
 * (|now - ts| > tolerance seconds).
 */
mm_status_t mm_webhook_verify(const void *secret, size_t secret_len,
    int64_t ts, const void *body, size_t body_len, const char *sig,
    size_t sig_len, int64_t now, int64_t tolerance);


#endif /* MM_WEBHOOK_H */
