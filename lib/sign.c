/*
 * Signed URLs: HMAC-SHA256 over "<path>\n<exp>", base64url without padding.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "sign.h"
#include "token.h"


#define MM_SIGN_EXP_MAX_DIGITS  19
#define MM_SIGN_FILE_MAX        4096


/* HMAC keyed once per key; ctx is re-initialised (same key) under lock */
struct mm_sign_mac_s {
    pthread_mutex_t   lock;
    EVP_MAC_CTX      *ctx;
};


static mm_status_t mm_sign_key_mac(const mm_sign_key_t *key, const void *a,
    size_t a_len, const void *b, size_t b_len,
    unsigned char mac[MM_SIGN_MAC_LEN]);
static EVP_MAC_CTX *mm_sign_mac_new(const unsigned char *key, size_t key_len);
static int mm_sign_mac_run(EVP_MAC_CTX *ctx, const unsigned char *key,
    size_t key_len, const void *a, size_t a_len, const void *b, size_t b_len,
    unsigned char mac[MM_SIGN_MAC_LEN]);
static size_t mm_sign_fmt_exp(int64_t exp, char *buf);
static int mm_sign_hexval(unsigned char c);


static pthread_once_t  mm_sign_once = PTHREAD_ONCE_INIT;
static EVP_MAC        *mm_sign_hmac;


int
mm_sign_kid_valid(const char *kid, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (kid == NULL || len == 0 || len > MM_SIGN_KID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) kid[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


mm_status_t
mm_sign_key_load(mm_sign_key_t *key, const char *kid, const char *path)
{
    int            fd, saved, hi, lo;
    char           text[MM_SIGN_FILE_MAX + 1];
    size_t         len, i, n;
    ssize_t        r;
    mm_status_t    st;
    const char    *p, *end;

    memset(key, 0, sizeof(*key));

    if (kid == NULL || !mm_sign_kid_valid(kid, strlen(kid))) {
        return MM_EBADDATA;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return MM_EIO;
    }

    len = 0;

    for ( ;; ) {
        r = read(fd, text + len, sizeof(text) - len);

        if (r == -1) {
            if (errno == EINTR) {
                continue;
            }

            saved = errno;
            close(fd);
            OPENSSL_cleanse(text, len);
            errno = saved;
            return MM_EIO;
        }

        if (r == 0) {
            break;
        }

        len += (size_t) r;

        if (len == sizeof(text)) {
            /* longer than any key file can be */
            close(fd);
            OPENSSL_cleanse(text, len);
            return MM_EBADDATA;
        }
    }

    close(fd);

    p = text;
    end = text + len;

    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }

    while (end > p
           && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'
               || end[-1] == '\r'))
    {
        end--;
    }

    n = (size_t) (end - p);
    st = MM_EBADDATA;

    if (n % 2 == 0 && n >= 32 && n / 2 <= MM_SIGN_SECRET_MAX) {
        for (i = 0; i < n / 2; i++) {
            hi = mm_sign_hexval((unsigned char) p[2 * i]);
            lo = mm_sign_hexval((unsigned char) p[2 * i + 1]);

            if (hi < 0 || lo < 0) {
                break;
            }

            key->secret[i] = (unsigned char) (hi << 4 | lo);
        }

        if (i == n / 2) {
            key->secret_len = n / 2;
            key->kid_len = strlen(kid);
            memcpy(key->kid, kid, key->kid_len + 1);
            st = MM_OK;
        }
    }

    OPENSSL_cleanse(text, len);

    if (st == MM_OK) {
        key->mac = malloc(sizeof(mm_sign_mac_t));

        if (key->mac == NULL) {
            st = MM_ENOMEM;

        } else {
            key->mac->ctx = mm_sign_mac_new(key->secret, key->secret_len);

            if (key->mac->ctx == NULL
                || pthread_mutex_init(&key->mac->lock, NULL) != 0)
            {
                EVP_MAC_CTX_free(key->mac->ctx);
                free(key->mac);
                st = MM_ENOMEM;
            }
        }
    }

    if (st != MM_OK) {
        OPENSSL_cleanse(key, sizeof(*key));
    }

    return st;
}


void
mm_sign_key_free(mm_sign_key_t *key)
{
    if (key == NULL) {
        return;
    }

    if (key->mac) {
        pthread_mutex_destroy(&key->mac->lock);
        EVP_MAC_CTX_free(key->mac->ctx);
        free(key->mac);
    }

    OPENSSL_cleanse(key, sizeof(*key));
}


mm_status_t
mm_sign_make(const mm_sign_key_t *key, const char *path, size_t path_len,
    int64_t expires, char *sig, size_t sig_size)
{
    char           exp[MM_SIGN_EXP_MAX_DIGITS + 2];
    size_t         exp_len;
    mm_status_t    st;
    unsigned char  mac[MM_SIGN_MAC_LEN];

    if (sig_size < MM_SIGN_SIG_LEN + 1) {
        return MM_ETOOBIG;
    }

    sig[0] = '\0';

    if (expires < 0 || key->secret_len == 0
        || key->secret_len > MM_SIGN_SECRET_MAX
        || (path == NULL && path_len > 0))
    {
        return MM_EBADDATA;
    }

    exp_len = mm_sign_fmt_exp(expires, exp);

    st = mm_sign_key_mac(key, path, path_len, exp, exp_len, mac);
    if (st != MM_OK) {
        return st;
    }

    if (mm_b64url_encode(mac, sizeof(mac), sig, sig_size)
        != MM_SIGN_SIG_LEN)
    {
        return MM_ETOOBIG;
    }

    return MM_OK;
}


mm_status_t
mm_sign_check(const mm_sign_key_t *keys, size_t nkeys,
    const char *path, size_t path_len,
    const char *kid, size_t kid_len,
    const char *exp, size_t exp_len,
    const char *sig, size_t sig_len,
    int64_t now, int64_t max_ttl)
{
    size_t                i;
    int64_t               expires;
    uint64_t              v;
    mm_status_t           st;
    unsigned char         got[MM_SIGN_MAC_LEN], want[MM_SIGN_MAC_LEN];
    const mm_sign_key_t  *key;

    /* syntax: exp is 1..19 decimal digits that fit int64 */

    if (exp == NULL || exp_len == 0 || exp_len > MM_SIGN_EXP_MAX_DIGITS) {
        return MM_EBADDATA;
    }

    v = 0;

    for (i = 0; i < exp_len; i++) {
        if (exp[i] < '0' || exp[i] > '9') {
            return MM_EBADDATA;
        }

        v = v * 10 + (uint64_t) (exp[i] - '0');
    }

    if (v > INT64_MAX) {
        return MM_EBADDATA;
    }

    expires = (int64_t) v;

    if (!mm_sign_kid_valid(kid, kid_len)) {
        return MM_EBADDATA;
    }

    if (sig == NULL || sig_len != MM_SIGN_SIG_LEN) {
        return MM_EBADDATA;
    }

    for (i = 0; i < sig_len; i++) {
        if (!((sig[i] >= 'A' && sig[i] <= 'Z')
              || (sig[i] >= 'a' && sig[i] <= 'z')
              || (sig[i] >= '0' && sig[i] <= '9')
              || sig[i] == '-' || sig[i] == '_'))
        {
            return MM_EBADDATA;
        }
    }

    if (path == NULL && path_len > 0) {
        return MM_EBADDATA;
    }

    /* key lookup */

    key = NULL;

    for (i = 0; i < nkeys; i++) {
        if (keys[i].kid_len == kid_len
            && memcmp(keys[i].kid, kid, kid_len) == 0)
        {
            key = &keys[i];
            break;
        }
    }

    if (key == NULL || key->secret_len == 0
        || key->secret_len > MM_SIGN_SECRET_MAX)
    {
        return MM_EFORGED;
    }

    /* decode, HMAC, constant-time compare */

    if (mm_b64url_decode(sig, sig_len, got, sizeof(got)) != sizeof(got)) {
        /* right alphabet, but non-zero unused bits: no MAC encodes so */
        return MM_EFORGED;
    }

    st = mm_sign_key_mac(key, path, path_len, exp, exp_len, want);
    if (st != MM_OK) {
        return st;
    }

    if (CRYPTO_memcmp(got, want, sizeof(want)) != 0) {
        return MM_EFORGED;
    }

    /* time */

    if (expires <= now) {
        return MM_EEXPIRED;
    }

    /* expires > now, so the difference is positive and fits uint64 */
    if (max_ttl < 0 || (uint64_t) expires - (uint64_t) now > (uint64_t) max_ttl)
    {
        return MM_ETTL;
    }

    return MM_OK;
}


mm_status_t
mm_sign_hmac_sha256(const unsigned char *key, size_t key_len,
    const void *msg, size_t msg_len, unsigned char mac[MM_SIGN_MAC_LEN])
{
    return mm_sign_mac_run(NULL, key, key_len, msg, msg_len, NULL, 0, mac)
           ? MM_OK : MM_ENOMEM;
}


/*
 * mac = HMAC-SHA256(secret, a || "\n" || b): with the key's own context
 * when no other thread holds it (re-initialising it keeps the key: no
 * fetch, no key schedule), else keyed from the secret as a one-off.
 */
static mm_status_t
mm_sign_key_mac(const mm_sign_key_t *key, const void *a, size_t a_len,
    const void *b, size_t b_len, unsigned char mac[MM_SIGN_MAC_LEN])
{
    int  ok;

    if (key->mac && pthread_mutex_trylock(&key->mac->lock) == 0) {
        ok = mm_sign_mac_run(key->mac->ctx, NULL, 0, a, a_len, b, b_len, mac);
        pthread_mutex_unlock(&key->mac->lock);

    } else {
        ok = mm_sign_mac_run(NULL, key->secret, key->secret_len, a, a_len,
                             b, b_len, mac);
    }

    return ok ? MM_OK : MM_ENOMEM;
}


static void
mm_sign_init(void)
{
    mm_sign_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}


/* a new HMAC-SHA256 context keyed with key, or NULL */
static EVP_MAC_CTX *
mm_sign_mac_new(const unsigned char *key, size_t key_len)
{
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    static char  digest[] = "SHA256";

    pthread_once(&mm_sign_once, mm_sign_init);

    if (mm_sign_hmac == NULL) {
        return NULL;
    }

    ctx = EVP_MAC_CTX_new(mm_sign_hmac);
    if (ctx == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 digest, 0);
    params[1] = OSSL_PARAM_construct_end();

    if (!EVP_MAC_init(ctx, key, key_len, params)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }

    return ctx;
}


/*
 * mac = HMAC(a || "\n" || b), or of a alone when b is NULL: on ctx (keyed
 * before, re-initialised here) or, when ctx is NULL, on a context keyed
 * with key for this call only. 1 on success.
 */
static int
mm_sign_mac_run(EVP_MAC_CTX *ctx, const unsigned char *key, size_t key_len,
    const void *a, size_t a_len, const void *b, size_t b_len,
    unsigned char mac[MM_SIGN_MAC_LEN])
{
    int           ok;
    size_t        out_len;
    EVP_MAC_CTX  *own;

    own = NULL;

    if (ctx == NULL) {
        own = mm_sign_mac_new(key, key_len);
        if (own == NULL) {
            return 0;
        }

        ctx = own;

    } else if (!EVP_MAC_init(ctx, NULL, 0, NULL)) {
        return 0;
    }

    out_len = 0;

    ok = (a_len == 0 || EVP_MAC_update(ctx, a, a_len))
         && (b == NULL || EVP_MAC_update(ctx, (const unsigned char *) "\n", 1))
         && (b == NULL || b_len == 0 || EVP_MAC_update(ctx, b, b_len))
         && EVP_MAC_final(ctx, mac, &out_len, MM_SIGN_MAC_LEN)
         && out_len == MM_SIGN_MAC_LEN;

    EVP_MAC_CTX_free(own);

    return ok;
}


/* decimal without locale or sign; exp >= 0; buf holds 20 bytes */
static size_t
mm_sign_fmt_exp(int64_t exp, char *buf)
{
    char      tmp[MM_SIGN_EXP_MAX_DIGITS + 1];
    size_t    n, i;
    uint64_t  v;

    v = (uint64_t) exp;
    n = 0;

    do {
        tmp[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }

    buf[n] = '\0';

    return n;
}


static int
mm_sign_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}
