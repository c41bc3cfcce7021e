/*
 * Bearer tokens, SHA-256 token hashes, constant-time compare and base64url.
 */

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "token.h"


#define MM_TOKEN_RAW_LEN  32


static const char  mm_b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


static int mm_b64url_value(unsigned char c);
static void mm_token_init(void);


/* fetched once: EVP_sha256() would fetch the implementation per digest */
static pthread_once_t  mm_token_once = PTHREAD_ONCE_INIT;
static EVP_MD         *mm_token_sha256;


mm_status_t
mm_token_new(char *out, size_t out_size)
{
    size_t         n;
    unsigned char  raw[MM_TOKEN_RAW_LEN];

    if (out_size < MM_TOKEN_LEN + 1) {
        return MM_ETOOBIG;
    }

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return MM_EAGAIN;
    }

    memcpy(out, MM_TOKEN_PREFIX, sizeof(MM_TOKEN_PREFIX) - 1);

    n = mm_b64url_encode(raw, sizeof(raw), out + sizeof(MM_TOKEN_PREFIX) - 1,
                         out_size - (sizeof(MM_TOKEN_PREFIX) - 1));

    OPENSSL_cleanse(raw, sizeof(raw));

    if (n != MM_TOKEN_LEN - (sizeof(MM_TOKEN_PREFIX) - 1)) {
        return MM_ETOOBIG;
    }

    return MM_OK;
}


int
mm_token_well_formed(const char *tok, size_t len)
{
    size_t  i;

    if (tok == NULL || len != MM_TOKEN_LEN
        || memcmp(tok, MM_TOKEN_PREFIX, sizeof(MM_TOKEN_PREFIX) - 1) != 0)
    {
        return 0;
    }

    for (i = sizeof(MM_TOKEN_PREFIX) - 1; i < len; i++) {
        if (mm_b64url_value((unsigned char) tok[i]) < 0) {
            return 0;
        }
    }

    return 1;
}


void
mm_token_hash(const char *tok, size_t len, char *hex)
{
    size_t         i;
    unsigned int   mdlen;
    unsigned char  md[EVP_MAX_MD_SIZE];

    static const char  digits[] = "0123456789abcdef";

    pthread_once(&mm_token_once, mm_token_init);

    mdlen = 0;

    if (mm_token_sha256 == NULL
        || EVP_Digest(tok, len, md, &mdlen, mm_token_sha256, NULL) != 1
        || mdlen != MM_TOKEN_HASH_LEN / 2)
    {
        /* never matches a stored hash: not hex */
        memset(hex, 'x', MM_TOKEN_HASH_LEN);
        hex[MM_TOKEN_HASH_LEN] = '\0';
        return;
    }

    for (i = 0; i < mdlen; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0xf];
    }

    hex[MM_TOKEN_HASH_LEN] = '\0';
}


static void
mm_token_init(void)
{
    mm_token_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}


int
mm_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}


/*
 * Returns the encoded length (no padding, NUL-terminated), or 0 when n > 0
 * and out_size cannot hold the result.
 */
size_t
mm_b64url_encode(const unsigned char *in, size_t n, char *out,
    size_t out_size)
{
    size_t    i, o, need;
    uint32_t  v;

    if (n > (SIZE_MAX - 1) / 4 * 3 - 2) {
        return 0;
    }

    need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);

    if (out_size < need + 1) {
        if (out_size > 0) {
            out[0] = '\0';
        }
        return 0;
    }

    o = 0;

    for (i = 0; i + 3 <= n; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[o++] = mm_b64url_alphabet[v >> 18];
        out[o++] = mm_b64url_alphabet[(v >> 12) & 0x3f];
        out[o++] = mm_b64url_alphabet[(v >> 6) & 0x3f];
        out[o++] = mm_b64url_alphabet[v & 0x3f];
    }

    if (n - i == 1) {
        v = (uint32_t) in[i] << 16;
        out[o++] = mm_b64url_alphabet[v >> 18];
        out[o++] = mm_b64url_alphabet[(v >> 12) & 0x3f];

    } else if (n - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        out[o++] = mm_b64url_alphabet[v >> 18];
        out[o++] = mm_b64url_alphabet[(v >> 12) & 0x3f];
        out[o++] = mm_b64url_alphabet[(v >> 6) & 0x3f];
    }

    out[o] = '\0';

    return o;
}


/*
 * Strict: rejects '=' and any byte outside the url-safe alphabet, lengths
 * that are 1 mod 4, non-zero unused bits in the last character (so every
 * byte string has exactly one accepted encoding), and a too small out.
 */
size_t
mm_b64url_decode(const char *in, size_t n, unsigned char *out,
    size_t out_size)
{
    int       c;
    size_t    i, o, need, rem;
    uint32_t  v;

    rem = n % 4;

    if (rem == 1) {
        return (size_t) -1;
    }

    need = n / 4 * 3 + (rem ? rem - 1 : 0);

    if (need > out_size) {
        return (size_t) -1;
    }

    o = 0;
    v = 0;

    for (i = 0; i < n; i++) {
        c = mm_b64url_value((unsigned char) in[i]);
        if (c < 0) {
            return (size_t) -1;
        }

        v = v << 6 | (uint32_t) c;

        if (i % 4 == 3) {
            out[o++] = (unsigned char) (v >> 16);
            out[o++] = (unsigned char) (v >> 8);
            out[o++] = (unsigned char) v;
            v = 0;
        }
    }

    if (rem == 2) {
        if (v & 0xf) {
            return (size_t) -1;
        }
        out[o++] = (unsigned char) (v >> 4);

    } else if (rem == 3) {
        if (v & 0x3) {
            return (size_t) -1;
        }
        out[o++] = (unsigned char) (v >> 10);
        out[o++] = (unsigned char) (v >> 2);
    }

    return o;
}


static int
mm_b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}
