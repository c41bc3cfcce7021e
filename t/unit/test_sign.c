/*
 * Signed URLs: RFC 4231 HMAC vectors, a golden signature, make/check happy
 * path, every tampering, time and TTL edges, strict syntax, key rotation and
 * key files.
 */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sign.h"
#include "token.h"
#include "tap.h"


#define NOW      1700000000LL
#define TTL      3600LL
#define PATH     "/stream/42"

static mm_sign_key_t  k1, k2;
static char           tmpdir[] = "/tmp/test_sign.XXXXXX";


static void
hex2bin(const char *hex, unsigned char *out, size_t *n)
{
    size_t  i;

    *n = strlen(hex) / 2;

    for (i = 0; i < *n; i++) {
        sscanf(hex + 2 * i, "%2hhx", &out[i]);
    }
}


static void
make_key(mm_sign_key_t *k, const char *kid, unsigned char fill, size_t n)
{
    memset(k, 0, sizeof(*k));
    k->kid_len = strlen(kid);
    memcpy(k->kid, kid, k->kid_len + 1);
    memset(k->secret, fill, n);
    k->secret_len = n;
}


/* check PATH with a given exp string against keys k1, k2 */
static mm_status_t
check(const char *path, const char *kid, const char *exp, const char *sig,
    int64_t now)
{
    mm_sign_key_t  keys[2] = { k1, k2 };

    return mm_sign_check(keys, 2, path, strlen(path), kid, strlen(kid),
                         exp, strlen(exp), sig, strlen(sig), now, TTL);
}


static void
test_rfc4231(void)
{
    size_t         i, j, klen, dlen, wlen;
    unsigned char  key[256], data[256], mac[MM_SIGN_MAC_LEN], want[32];
    char           hex[65];

    static const struct {
        const char  *key_hex;       /* or NULL: key_fill x key_len */
        unsigned     key_fill;
        size_t       key_len;
        const char  *data;          /* or NULL: data_fill x data_len */
        unsigned     data_fill;
        size_t       data_len;
        const char  *mac;
    } tc[] = {
        { NULL, 0x0b, 20, "Hi There", 0, 0,
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
        { "4a656665", 0, 0, "what do ya want for nothing?", 0, 0,
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
        { NULL, 0xaa, 20, NULL, 0xdd, 50,
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
        { "0102030405060708090a0b0c0d0e0f10111213141516171819", 0, 0,
          NULL, 0xcd, 50,
          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
        { NULL, 0xaa, 131,
          "Test Using Larger Than Block-Size Key - Hash Key First", 0, 0,
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
        { NULL, 0xaa, 131,
          "This is a test using a larger than block-size key and a larger "
          "than block-size data. The key needs to be hashed before being "
          "used by the HMAC algorithm.", 0, 0,
          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
    };

    for (i = 0; i < sizeof(tc) / sizeof(tc[0]); i++) {
        if (tc[i].key_hex) {
            hex2bin(tc[i].key_hex, key, &klen);
        } else {
            klen = tc[i].key_len;
            memset(key, tc[i].key_fill, klen);
        }

        if (tc[i].data) {
            dlen = strlen(tc[i].data);
            memcpy(data, tc[i].data, dlen);
        } else {
            dlen = tc[i].data_len;
            memset(data, tc[i].data_fill, dlen);
        }

        hex2bin(tc[i].mac, want, &wlen);
        is_int(mm_sign_hmac_sha256(key, klen, data, dlen, mac), MM_OK,
               "RFC 4231 case %zu computes", i + 1);

        ok(memcmp(mac, want, 32) == 0, "RFC 4231 case %zu matches", i + 1);

        if (memcmp(mac, want, 32) != 0) {
            for (j = 0; j < 32; j++) {
                sprintf(hex + 2 * j, "%02x", mac[j]);
            }
            diag("got %s", hex);
        }
    }
}


static void
test_make(void)
{
    char           sig[MM_SIGN_SIG_LEN + 1], ref[64], msg[64];
    unsigned int   mlen;
    unsigned char  mac[EVP_MAX_MD_SIZE];
    mm_sign_key_t  k;
    int            i, n;

    /* golden: key 00..1f, "/stream/42\n1700000000" */
    memset(&k, 0, sizeof(k));
    strcpy(k.kid, "gold");
    k.kid_len = 4;
    for (i = 0; i < 32; i++) {
        k.secret[i] = (unsigned char) i;
    }
    k.secret_len = 32;

    is_int(mm_sign_make(&k, PATH, strlen(PATH), NOW, sig, sizeof(sig)),
           MM_OK, "make golden");
    is_str(sig, "4PV-nRLLVF90XeVceaVZrKZmBgARY5bLmpO-WOlKV_Y",
           "golden signature");
    is_int(strlen(sig), MM_SIGN_SIG_LEN, "43 characters");

    is_int(mm_sign_check(&k, 1, PATH, strlen(PATH), "gold", 4,
                         "1700000000", 10, sig, strlen(sig), NOW - 10, TTL),
           MM_OK, "golden verifies");

    /* against OpenSSL's one-shot HMAC() and base64 for other inputs */
    for (i = 0; i < 50; i++) {
        char     path[32], exp[24];
        int64_t  e = (int64_t) i * 1234567891LL;

        snprintf(path, sizeof(path), "/episode/%d", i * 7);
        snprintf(exp, sizeof(exp), "%lld", (long long) e);
        n = snprintf(msg, sizeof(msg), "%s\n%s", path, exp);

        HMAC(EVP_sha256(), k1.secret, (int) k1.secret_len,
             (unsigned char *) msg, (size_t) n, mac, &mlen);

        n = EVP_EncodeBlock((unsigned char *) ref, mac, (int) mlen);
        for (int j = 0; j < n; j++) {
            ref[j] = ref[j] == '+' ? '-' : ref[j] == '/' ? '_' : ref[j];
        }
        ref[43] = '\0';

        mm_sign_make(&k1, path, strlen(path), e, sig, sizeof(sig));
        if (strcmp(sig, ref) != 0) {
            break;
        }
    }
    is_int(i, 50, "50 signatures agree with OpenSSL HMAC() + base64");

    is_int(mm_sign_make(&k1, PATH, strlen(PATH), NOW, sig, 43), MM_ETOOBIG,
           "sig buffer of 43 is too small");
    is_int(mm_sign_make(&k1, PATH, strlen(PATH), -1, sig, sizeof(sig)),
           MM_EBADDATA, "negative expiry refused");

    k = k1;
    k.secret_len = 0;
    is_int(mm_sign_make(&k, PATH, strlen(PATH), NOW, sig, sizeof(sig)),
           MM_EBADDATA, "empty secret refused");

    is_int(mm_sign_make(&k1, PATH, strlen(PATH), INT64_MAX, sig, sizeof(sig)),
           MM_OK, "INT64_MAX expiry signs");
    is_int(check(PATH, "k1", "9223372036854775807", sig, NOW), MM_ETTL,
           "and verifies up to the TTL check");
}


static void
test_check(void)
{
    char   sig[MM_SIGN_SIG_LEN + 1], sig2[MM_SIGN_SIG_LEN + 1],
           exp[32], bad[64];
    int    i, forged;

    snprintf(exp, sizeof(exp), "%lld", NOW + 600);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + 600, sig, sizeof(sig));

    /* happy path */
    is_int(check(PATH, "k1", exp, sig, NOW), MM_OK, "valid signature");
    is_int(check(PATH, "k1", exp, sig, NOW + 599), MM_OK,
           "valid one second before expiry");

    /* tampering */
    is_int(check("/stream/43", "k1", exp, sig, NOW), MM_EFORGED,
           "other episode");
    is_int(check("/stream/4", "k1", exp, sig, NOW), MM_EFORGED,
           "path prefix");
    is_int(check("/stream/42/", "k1", exp, sig, NOW), MM_EFORGED,
           "path with extra slash");
    is_int(check("/stream/420", "k1", exp, sig, NOW), MM_EFORGED,
           "path with extra digit");
    is_int(check("/upload/42", "k1", exp, sig, NOW), MM_EFORGED,
           "other resource type");
    is_int(check("", "k1", exp, sig, NOW), MM_EFORGED, "empty path");

    snprintf(bad, sizeof(bad), "%lld", NOW + 601);
    is_int(check(PATH, "k1", bad, sig, NOW), MM_EFORGED, "exp + 1");
    snprintf(bad, sizeof(bad), "0%lld", NOW + 600);
    is_int(check(PATH, "k1", bad, sig, NOW), MM_EFORGED,
           "exp with a leading zero is another message");

    forged = 0;
    for (i = 0; i < MM_SIGN_SIG_LEN; i++) {
        strcpy(bad, sig);
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        if (check(PATH, "k1", exp, bad, NOW) == MM_EFORGED) {
            forged++;
        }
    }
    is_int(forged, MM_SIGN_SIG_LEN, "each single-character change forged");

    /* the other key's signature, under either kid */
    mm_sign_make(&k2, PATH, strlen(PATH), NOW + 600, sig2, sizeof(sig2));
    is_int(check(PATH, "k1", exp, sig2, NOW), MM_EFORGED,
           "k2 signature claimed as k1");
    is_int(check(PATH, "k2", exp, sig, NOW), MM_EFORGED,
           "k1 signature claimed as k2");
    is_int(check(PATH, "k3", exp, sig, NOW), MM_EFORGED, "unknown kid");
    is_int(check(PATH, "K1", exp, sig, NOW), MM_EFORGED,
           "kid is case-sensitive");

    /* time */
    is_int(check(PATH, "k1", exp, sig, NOW + 600), MM_EEXPIRED,
           "exp exactly now is expired");
    is_int(check(PATH, "k1", exp, sig, NOW + 601), MM_EEXPIRED,
           "after expiry");
    is_int(check(PATH, "k1", exp, sig, NOW + 1000000), MM_EEXPIRED,
           "long after expiry");

    snprintf(exp, sizeof(exp), "%lld", NOW + TTL);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + TTL, sig, sizeof(sig));
    is_int(check(PATH, "k1", exp, sig, NOW), MM_OK, "exp exactly at TTL");

    snprintf(exp, sizeof(exp), "%lld", NOW + TTL + 1);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + TTL + 1, sig, sizeof(sig));
    is_int(check(PATH, "k1", exp, sig, NOW), MM_ETTL, "one second over TTL");
    is_int(check(PATH, "k1", exp, sig, NOW + 1), MM_OK,
           "...which is fine a second later");

    snprintf(exp, sizeof(exp), "%lld", NOW + 86400 * 365);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + 86400 * 365, sig,
                 sizeof(sig));
    is_int(check(PATH, "k1", exp, sig, NOW), MM_ETTL, "a year ahead");

    /* forged beats expired: time is only looked at after the MAC */
    snprintf(exp, sizeof(exp), "%lld", NOW - 5);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW - 5, sig, sizeof(sig));
    is_int(check(PATH, "k1", exp, sig, NOW), MM_EEXPIRED, "expired");
    is_int(check("/stream/1", "k1", exp, sig, NOW), MM_EFORGED,
           "expired and forged is forged");

    /* extreme clocks: no overflow */
    {
        mm_sign_key_t  keys[1] = { k1 };

        mm_sign_make(&k1, PATH, strlen(PATH), 1, sig, sizeof(sig));
        is_int(mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, INT64_MIN, INT64_MAX), MM_ETTL,
               "now = INT64_MIN: over any TTL");
        is_int(mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, 0, 0), MM_ETTL, "max_ttl 0");
        is_int(mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, 0, -5), MM_ETTL, "negative max_ttl");
        is_int(mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, 0, 1), MM_OK, "exp 1, now 0, ttl 1");
        is_int(mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, INT64_MAX, INT64_MAX), MM_EEXPIRED,
               "now = INT64_MAX");
        is_int(mm_sign_check(keys, 0, PATH, strlen(PATH), "k1", 2, "1", 1,
                             sig, 43, 0, 1), MM_EFORGED, "no keys at all");
    }
}


static void
test_syntax(void)
{
    size_t       i;
    char         sig[MM_SIGN_SIG_LEN + 1], exp[32], s[64];
    mm_status_t  st;

    static const char  *bad_exp[] = {
        "", "-1", "+1", "12a", "a12", " 1700000600", "1700000600 ",
        "1700000600\n", "1.5", "1e9", "0x10", "17000006OO",
        "12345678901234567890",                 /* 20 digits */
        "00000000001700000600",                 /* 20 digits, small value */
        "9223372036854775808",                  /* 19 digits > INT64_MAX */
        "9999999999999999999",
    };

    static const char  *bad_kid[] = {
        "", "k 1", "k/1", "k.1", "k1\n", "k=1", "\xc3\xa9",
        "abcdefghijklmnopqrstuvwxyz0123456",    /* 33 chars */
    };

    snprintf(exp, sizeof(exp), "%lld", NOW + 600);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + 600, sig, sizeof(sig));

    for (i = 0; i < sizeof(bad_exp) / sizeof(bad_exp[0]); i++) {
        is_int(check(PATH, "k1", bad_exp[i], sig, NOW), MM_EBADDATA,
               "malformed exp \"%s\"", bad_exp[i]);
    }

    /* embedded NUL in exp */
    {
        mm_sign_key_t  keys[1] = { k1 };

        st = mm_sign_check(keys, 1, PATH, strlen(PATH), "k1", 2,
                           "17\0" "0000600", 10, sig, 43, NOW, TTL);
        is_int(st, MM_EBADDATA, "exp with embedded NUL");

        st = mm_sign_check(keys, 1, PATH, strlen(PATH), "k\0", 2,
                           exp, strlen(exp), sig, 43, NOW, TTL);
        is_int(st, MM_EBADDATA, "kid with embedded NUL");
    }

    is_int(check(PATH, "k1", "9223372036854775807", sig, NOW), MM_EFORGED,
           "exp INT64_MAX parses (then fails the MAC)");
    is_int(check(PATH, "k1", "0", sig, NOW), MM_EFORGED,
           "exp 0 parses (then fails the MAC)");

    for (i = 0; i < sizeof(bad_kid) / sizeof(bad_kid[0]); i++) {
        is_int(check(PATH, bad_kid[i], exp, sig, NOW), MM_EBADDATA,
               "malformed kid \"%s\"", bad_kid[i]);
    }

    /* syntax is checked before the key lookup */
    is_int(check(PATH, "nosuchkey", "x", sig, NOW), MM_EBADDATA,
           "bad exp with unknown kid is bad data");
    is_int(check(PATH, "nosuchkey", exp, "short", NOW), MM_EBADDATA,
           "bad sig with unknown kid is bad data");

    /* signature length and alphabet */
    is_int(check(PATH, "k1", exp, "", NOW), MM_EBADDATA, "empty sig");
    snprintf(s, sizeof(s), "%.42s", sig);
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "42-char sig");
    snprintf(s, sizeof(s), "%sA", sig);
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "44-char sig");
    snprintf(s, sizeof(s), "%s=", sig);
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "padded sig");

    snprintf(s, sizeof(s), "%s", sig);
    s[10] = '+';
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "'+' in sig");
    s[10] = '/';
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "'/' in sig");
    s[10] = '%';
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "'%%' in sig");
    s[10] = ' ';
    is_int(check(PATH, "k1", exp, s, NOW), MM_EBADDATA, "space in sig");

    /* 43 chars encode 258 bits: the spare bits must be zero */
    snprintf(s, sizeof(s), "%s", sig);
    for (i = 1; i < 4; i++) {
        static const char  b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char        *p = strchr(b64, sig[42]);

        s[42] = b64[(p - b64) ^ i];
        is_int(check(PATH, "k1", exp, s, NOW), MM_EFORGED,
               "non-canonical last char '%c' is forged", s[42]);
    }

    ok(mm_sign_kid_valid("k1", 2), "kid k1 valid");
    ok(mm_sign_kid_valid("A-z_0-9", 7), "kid A-z_0-9 valid");
    ok(mm_sign_kid_valid("abcdefghijklmnopqrstuvwxyz012345", 32),
       "32-char kid valid");
    ok(!mm_sign_kid_valid("abcdefghijklmnopqrstuvwxyz0123456", 33),
       "33-char kid invalid");
    ok(!mm_sign_kid_valid("", 0), "empty kid invalid");
    ok(!mm_sign_kid_valid(NULL, 0), "NULL kid invalid");
}


static void
test_rotation(void)
{
    char           sig[MM_SIGN_SIG_LEN + 1], exp[32];
    mm_sign_key_t  both[2] = { k1, k2 }, only1[1] = { k1 },
                   only2[1] = { k2 }, changed[2] = { k1, k2 };

    snprintf(exp, sizeof(exp), "%lld", NOW + 60);

    mm_sign_make(&k2, PATH, strlen(PATH), NOW + 60, sig, sizeof(sig));

    is_int(mm_sign_check(both, 2, PATH, strlen(PATH), "k2", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_OK,
           "signed with k2, verified with [k1, k2]");
    is_int(mm_sign_check(only2, 1, PATH, strlen(PATH), "k2", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_OK,
           "signed with k2, verified with [k2]");
    is_int(mm_sign_check(only1, 1, PATH, strlen(PATH), "k2", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_EFORGED,
           "k2 retired from the set: unknown kid");

    mm_sign_make(&k1, PATH, strlen(PATH), NOW + 60, sig, sizeof(sig));

    is_int(mm_sign_check(both, 2, PATH, strlen(PATH), "k1", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_OK,
           "old k1 signature still verifies with [k1, k2]");

    /* same kid, new secret */
    changed[0].secret[0] ^= 1;
    is_int(mm_sign_check(changed, 2, PATH, strlen(PATH), "k1", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_EFORGED,
           "kid reused with another secret");
}


static void
write_file(const char *name, const char *text, char *path, size_t size)
{
    FILE  *f;

    snprintf(path, size, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}


static void
test_key_load(void)
{
    size_t         i;
    char           path[256], sig[MM_SIGN_SIG_LEN + 1], exp[32], big[400];
    mm_sign_key_t  k;
    mm_status_t    st;

    static const struct {
        const char   *text;
        mm_status_t   st;
        size_t        len;
        const char   *why;
    } cases[] = {
        { "000102030405060708090a0b0c0d0e0f", MM_OK, 16, "16 bytes" },
        { "  000102030405060708090A0B0C0D0E0F\n", MM_OK, 16,
          "upper case, surrounded by whitespace" },
        { "\n\t000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d"
          "1e1f\r\n\n", MM_OK, 32, "32 bytes, CRLF" },
        { "000102030405060708090a0b0c0d0e", MM_EBADDATA, 0, "15 bytes" },
        { "000102030405060708090a0b0c0d0e0f1", MM_EBADDATA, 0,
          "odd number of digits" },
        { "000102030405060708090a0b0c0d0e0g", MM_EBADDATA, 0, "non-hex" },
        { "00010203040506070809 0a0b0c0d0e0f", MM_EBADDATA, 0,
          "space inside" },
        { "0x000102030405060708090a0b0c0d0e0f", MM_EBADDATA, 0,
          "0x prefix" },
        { "", MM_EBADDATA, 0, "empty file" },
        { "\n\n", MM_EBADDATA, 0, "only whitespace" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_file("key", cases[i].text, path, sizeof(path));
        st = mm_sign_key_load(&k, "kf", path);
        is_int(st, cases[i].st, "key file: %s", cases[i].why);

        if (st == MM_OK) {
            ok(k.secret_len == cases[i].len && k.secret[0] == 0
               && k.secret[15] == 15 && k.kid_len == 2
               && strcmp(k.kid, "kf") == 0 && k.mac != NULL,
               "  secret, kid and keyed MAC loaded");
            mm_sign_key_free(&k);

        } else {
            ok(k.mac == NULL && k.secret_len == 0, "  key left empty");
        }
    }

    /* 128 bytes is the most, 129 too many */
    for (i = 0; i < 256; i++) {
        big[i] = "0123456789abcdef"[i % 16];
    }
    big[256] = '\0';
    write_file("key", big, path, sizeof(path));
    is_int(mm_sign_key_load(&k, "kf", path), MM_OK, "128-byte secret");
    is_int(k.secret_len, 128, "  all 128 bytes");
    mm_sign_key_free(&k);

    strcpy(big + 256, "ab");
    write_file("key", big, path, sizeof(path));
    is_int(mm_sign_key_load(&k, "kf", path), MM_EBADDATA, "129-byte secret");

    write_file("key", "000102030405060708090a0b0c0d0e0f", path,
               sizeof(path));
    is_int(mm_sign_key_load(&k, "bad kid", path), MM_EBADDATA,
           "invalid kid refused");

    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    errno = 0;
    is_int(mm_sign_key_load(&k, "kf", path), MM_EIO, "missing file");
    is_int(errno, ENOENT, "  errno ENOENT");

    is_int(mm_sign_key_load(&k, "kf", tmpdir), MM_EIO, "a directory");

    /* a loaded key signs like a hand-built one */
    write_file("key", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b"
               "1c1d1e1f\n", path, sizeof(path));
    mm_sign_key_load(&k, "gold", path);
    mm_sign_make(&k, PATH, strlen(PATH), NOW, sig, sizeof(sig));
    is_str(sig, "4PV-nRLLVF90XeVceaVZrKZmBgARY5bLmpO-WOlKV_Y",
           "loaded key makes the golden signature");
    snprintf(exp, sizeof(exp), "%lld", NOW);
    is_int(mm_sign_check(&k, 1, PATH, strlen(PATH), "gold", 4, exp,
                         strlen(exp), sig, 43, NOW - 1, TTL), MM_OK,
           "and verifies");
    mm_sign_key_free(&k);

    unlink(path);
}


/* one thread of test_shared_key: make + check with a loaded key */
typedef struct {
    mm_sign_key_t  *key;
    int             id;
    int             bad;
} worker_t;


static void *
worker(void *arg)
{
    worker_t  *w = arg;

    int      i;
    char     sig[MM_SIGN_SIG_LEN + 1], want[MM_SIGN_SIG_LEN + 1], exp[32];
    int64_t  e;

    for (i = 0; i < 2000; i++) {
        e = NOW + 1 + (w->id * 2000 + i) % 3000;
        snprintf(exp, sizeof(exp), "%lld", (long long) e);

        if (mm_sign_make(w->key, PATH, strlen(PATH), e, sig, sizeof(sig))
                != MM_OK
            || mm_sign_make(&k1, PATH, strlen(PATH), e, want, sizeof(want))
                != MM_OK
            || strcmp(sig, want) != 0
            || mm_sign_check(w->key, 1, PATH, strlen(PATH), "k1", 2, exp,
                             strlen(exp), sig, 43, NOW, TTL) != MM_OK)
        {
            w->bad++;
        }

        sig[0] = sig[0] == 'A' ? 'B' : 'A';

        if (mm_sign_check(w->key, 1, PATH, strlen(PATH), "k1", 2, exp,
                          strlen(exp), sig, 43, NOW, TTL) != MM_EFORGED)
        {
            w->bad++;
        }
    }

    return NULL;
}


/*
 * A loaded key keeps a keyed HMAC context that every make/check
 * re-initialises: it must give what a hand-built key (keyed per call)
 * gives, after failures too, and from several threads at once.
 */
static void
test_shared_key(void)
{
    int            i, bad;
    char           path[256], hex[65], sig[MM_SIGN_SIG_LEN + 1],
                   want[MM_SIGN_SIG_LEN + 1], exp[32];
    worker_t       w[4];
    pthread_t      t[4];
    mm_sign_key_t  k, keys[2];

    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", 0x11);
    }

    write_file("key", hex, path, sizeof(path));
    is_int(mm_sign_key_load(&k, "k1", path), MM_OK, "k1's secret loaded");
    unlink(path);

    bad = 0;

    for (i = 0; i < 200; i++) {
        snprintf(exp, sizeof(exp), "%lld", NOW + 1 + i);
        mm_sign_make(&k, PATH, strlen(PATH), NOW + 1 + i, sig, sizeof(sig));
        mm_sign_make(&k1, PATH, strlen(PATH), NOW + 1 + i, want,
                     sizeof(want));
        bad += strcmp(sig, want) != 0;
        bad += mm_sign_check(&k, 1, PATH, strlen(PATH), "k1", 2, exp,
                             strlen(exp), sig, 43, NOW, TTL) != MM_OK;
        bad += mm_sign_check(&k, 1, "/stream/43", 10, "k1", 2, exp,
                             strlen(exp), sig, 43, NOW, TTL) != MM_EFORGED;
        bad += mm_sign_check(&k, 1, PATH, strlen(PATH), "k1", 2, exp,
                             strlen(exp), sig, 43, NOW, TTL) != MM_OK;
    }

    is_int(bad, 0, "loaded key = hand-built key, 200 x (make, check, "
           "forged check, check)");

    /* copies share the context; rotation still picks by kid */
    keys[0] = k2;
    keys[1] = k;
    snprintf(exp, sizeof(exp), "%lld", NOW + 60);
    mm_sign_make(&k1, PATH, strlen(PATH), NOW + 60, sig, sizeof(sig));
    is_int(mm_sign_check(keys, 2, PATH, strlen(PATH), "k1", 2, exp,
                         strlen(exp), sig, 43, NOW, TTL), MM_OK,
           "hand-built k1 signature verifies with the loaded k1");

    for (i = 0; i < 4; i++) {
        w[i].key = &k;
        w[i].id = i;
        w[i].bad = 0;
        pthread_create(&t[i], NULL, worker, &w[i]);
    }

    bad = 0;

    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        bad += w[i].bad;
    }

    is_int(bad, 0, "4 threads x 2000 make/check/forged on one loaded key");

    mm_sign_key_free(&k);
    ok(k.mac == NULL && k.secret_len == 0 && k.secret[0] == 0,
       "freed key is wiped");
    mm_sign_key_free(&k);
    mm_sign_key_free(NULL);
    ok(1, "freeing twice or NULL is harmless");
}


int
main(void)
{
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }

    make_key(&k1, "k1", 0x11, 32);
    make_key(&k2, "k2", 0x22, 32);

    test_rfc4231();
    test_make();
    test_check();
    test_syntax();
    test_rotation();
    test_key_load();
    test_shared_key();

    rmdir(tmpdir);

    return done_testing();
}
