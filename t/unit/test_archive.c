/*
 * lib/archive (hash, download name, Content-Disposition) and lib/webhook
 * (signature, verification, replay window).
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "archive.h"
#include "sign.h"
#include "webhook.h"
#include "tap.h"


static void
test_hash(void)
{
    int   i, distinct;
    char  a[MM_ARCHIVE_HASH_LEN + 1], b[MM_ARCHIVE_HASH_LEN + 1];

    ok(mm_archive_hash_new(a) == MM_OK, "hash made");
    is_int(strlen(a), 43, "43 characters");
    ok(mm_archive_hash_valid(a, strlen(a)), "valid");
    ok(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                 "0123456789-_") == 43, "base64url alphabet only");

    distinct = 1;
    for (i = 0; i < 100; i++) {
        mm_archive_hash_new(b);
        if (strcmp(a, b) == 0) {
            distinct = 0;
        }
    }
    ok(distinct, "100 more hashes all differ from the first");

    memcpy(b, a, sizeof(a));
    b[5] = '+';
    ok(!mm_archive_hash_valid(b, 43), "'+' refused");
    b[5] = '/';
    ok(!mm_archive_hash_valid(b, 43), "'/' refused");
    ok(!mm_archive_hash_valid(a, 42), "short refused");
    ok(!mm_archive_hash_valid("../../../../../../../../../../etc/passwd.zi",
                              43), "path refused");
    memcpy(b, a, sizeof(a));
    b[42] = 'B';
    ok(!mm_archive_hash_valid(b, 43), "non-zero padding bits refused");
    b[42] = 'A';
    ok(mm_archive_hash_valid(b, 43), "zero padding bits accepted");
}


static void
test_name(void)
{
    char    out[MM_NAME_SIZE];
    char    in[400];
    size_t  n;

    n = mm_archive_name(NULL, 0, out);
    ok(n == 11 && strcmp(out, "archive.zip") == 0, "default name");
    n = mm_archive_name("photos", 6, out);
    is_str(out, "photos.zip", ".zip appended");
    n = mm_archive_name("Photos.ZIP", 10, out);
    is_str(out, "Photos.ZIP", "existing .zip kept (any case)");
    n = mm_archive_name("../../x.zip", 11, out);
    is_str(out, "x.zip", "path stripped");
    n = mm_archive_name("a\"b\n.zip", 8, out);
    is_str(out, "a_b_.zip", "controls and reserved characters replaced");

    memset(in, 'a', sizeof(in));
    n = mm_archive_name(in, sizeof(in), out);
    ok(n == MM_NAME_MAX && strcmp(out + n - 4, ".zip") == 0,
       "long name cut to %d bytes with .zip", MM_NAME_MAX);

    memset(in, 0, sizeof(in));
    for (n = 0; n + 2 <= 300; n += 2) {
        memcpy(in + n, "\xc3\xa9", 2);          /* é */
    }
    n = mm_archive_name(in, 300, out);
    ok(n <= MM_NAME_MAX && strcmp(out + n - 4, ".zip") == 0
       && ((unsigned char) out[n - 5] == 0xa9),
       "long UTF-8 name cut on a character boundary");
}


static void
test_disposition(void)
{
    char    out[MM_ARCHIVE_DISPOSITION_SIZE];
    char    name[MM_NAME_SIZE];
    size_t  n;

    n = mm_archive_disposition("a.zip", 5, out);
    is_str(out, "attachment; filename=\"a.zip\"; filename*=UTF-8''a.zip",
           "ASCII name");
    ok(n == strlen(out), "length returned");

    mm_archive_disposition("été 1.zip", strlen("été 1.zip"), out);
    is_str(out, "attachment; filename=\"_t_ 1.zip\"; "
                "filename*=UTF-8''%C3%A9t%C3%A9%201.zip",
           "UTF-8 name: ASCII fallback and RFC 8187 form");

    mm_archive_disposition("a\"b\\c;d.zip", 11, out);
    is_str(out, "attachment; filename=\"a_b_c;d.zip\"; "
                "filename*=UTF-8''a%22b%5Cc%3Bd.zip",
           "quotes, backslash and ';' are safe");

    memset(name, 0, sizeof(name));
    for (n = 0; n + 3 <= MM_NAME_MAX; n += 3) {
        memcpy(name + n, "\xe2\x82\xac", 3);    /* € */
    }
    n = mm_archive_disposition(name, strlen(name), out);
    ok(n < sizeof(out), "longest UTF-8 name fits (%zu bytes)", n);
}


static void
test_webhook(void)
{
    char         sig[MM_WEBHOOK_SIG_LEN + 1];
    const char  *body = "{\"event\":\"archive.completed\"}";
    mm_status_t  st;

    st = mm_webhook_sign("secret", 6, 1700000000, body, strlen(body), sig);
    ok(st == MM_OK, "signed");
    is_int(strlen(sig), MM_WEBHOOK_SIG_LEN, "sha256= + 64 hex");
    ok(strncmp(sig, "sha256=", 7) == 0, "prefix");

    /* the same computation done by hand: HMAC of "1700000000.<body>" */
    {
        char           msg[256];
        unsigned char  mac[MM_SIGN_MAC_LEN];
        char           hex[65];
        int            i;

        snprintf(msg, sizeof(msg), "1700000000.%s", body);
        mm_sign_hmac_sha256((const unsigned char *) "secret", 6, msg,
                            strlen(msg), mac);
        for (i = 0; i < 32; i++) {
            snprintf(hex + 2 * i, 3, "%02x", mac[i]);
        }
        is_str(sig + 7, hex, "HMAC-SHA256 of \"<ts>.<body>\"");
    }

    /* RFC 4231 test case 2 key/data, through the "<ts>." framing */
    st = mm_webhook_verify("secret", 6, 1700000000, body, strlen(body),
                           sig, strlen(sig), 1700000100, 300);
    ok(st == MM_OK, "verifies within the window");
    st = mm_webhook_verify("secret", 6, 1700000000, body, strlen(body),
                           sig, strlen(sig), 1700001000, 300);
    ok(st == MM_EEXPIRED, "too old: expired");
    st = mm_webhook_verify("secret", 6, 1700000001, body, strlen(body),
                           sig, strlen(sig), 1700000000, 300);
    ok(st == MM_EFORGED, "other timestamp: forged");
    st = mm_webhook_verify("Secret", 6, 1700000000, body, strlen(body),
                           sig, strlen(sig), 1700000000, 300);
    ok(st == MM_EFORGED, "other secret: forged");
    st = mm_webhook_verify("secret", 6, 1700000000, body, strlen(body) - 1,
                           sig, strlen(sig), 1700000000, 300);
    ok(st == MM_EFORGED, "other body: forged");
    st = mm_webhook_verify("secret", 6, 1700000000, body, strlen(body),
                           sig, 10, 1700000000, 300);
    ok(st == MM_EFORGED, "short signature: forged");
}


int
main(void)
{
    test_hash();
    test_name();
    test_disposition();
    test_webhook();

    return done_testing();
}
