/*
 * Webhook signatures: see webhook.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "sign.h"
#include "token.h"
#include "webhook.h"


mm_status_t
mm_webhook_sign(const void *secret, size_t secret_len, int64_t ts,
    const void *body, size_t body_len, char *out)
{
    char            *msg;
    size_t           i, plen;
    mm_status_t      st;
    unsigned char    mac[MM_SIGN_MAC_LEN];
    static const char  hex[] = "0123456789abcdef";

    msg = malloc(32 + body_len);
    if (msg == NULL) {
        return MM_ENOMEM;
    }

    plen = (size_t) snprintf(msg, 32, "%lld.", (long long) ts);
    memcpy(msg + plen, body, body_len);

    st = mm_sign_hmac_sha256(secret, secret_len, msg, plen + body_len, mac);

    free(msg);

    if (st != MM_OK) {
        return st;
    }

    memcpy(out, "sha256=", 7);

    for (i = 0; i < MM_SIGN_MAC_LEN; i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[8 + 2 * i] = hex[mac[i] & 0xf];
    }

    out[MM_WEBHOOK_SIG_LEN] = '\0';

    OPENSSL_cleanse(mac, sizeof(mac));

    return MM_OK;
}


mm_status_t
mm_webhook_verify(const void *secret, size_t secret_len, int64_t ts,
    const void *body, size_t body_len, const char *sig, size_t sig_len,
    int64_t now, int64_t tolerance)
{
    char         want[MM_WEBHOOK_SIG_LEN + 1];
    mm_status_t  st;

    if (sig_len != MM_WEBHOOK_SIG_LEN) {
        return MM_EFORGED;
    }

    st = mm_webhook_sign(secret, secret_len, ts, body, body_len, want);
    if (st != MM_OK) {
        return st;
    }

    if (!mm_ct_equal(want, sig, MM_WEBHOOK_SIG_LEN)) {
        return MM_EFORGED;
    }

    if (now - ts > tolerance || ts - now > tolerance) {
        return MM_EEXPIRED;
    }

    return MM_OK;
}
