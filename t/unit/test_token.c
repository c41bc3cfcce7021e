/*
 * Bearer tokens, token hashes, constant-time compare and base64url.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "tap.h"


static void
test_new(void)
{
    int            i, bad, dup;
    char           tok[MM_TOKEN_LEN + 1], prev[MM_TOKEN_LEN + 1], small[47];
    unsigned char  raw[40];

    is_int(mm_token_new(tok, sizeof(tok)), MM_OK, "token_new");
    is_int(strlen(tok), MM_TOKEN_LEN, "47 characters");
    ok(strncmp(tok, "nmt_", 4) == 0, "nmt_ prefix");
    ok(mm_token_well_formed(tok, strlen(tok)), "new token is well formed");
    is_int(mm_b64url_decode(tok + 4, 43, raw, sizeof(raw)), 32,
           "body decodes to 32 bytes");

    is_int(mm_token_new(small, sizeof(small)), MM_ETOOBIG,
           "47-byte buffer is too small");

    bad = dup = 0;
    strcpy(prev, tok);

    for (i = 0; i < 1000; i++) {
        if (mm_token_new(tok, sizeof(tok)) != MM_OK
            || !mm_token_well_formed(tok, strlen(tok))
            || mm_b64url_decode(tok + 4, 43, raw, sizeof(raw)) != 32)
        {
            bad++;
        }

        if (strcmp(tok, prev) == 0) {
            dup++;
        }

        strcpy(prev, tok);
    }

    is_int(bad, 0, "1000 tokens well formed");
    is_int(dup, 0, "and none repeats its predecessor");
}


static void
test_well_formed(void)
{
    size_t  i;
    char    tok[64];

    static const char  good[] =
        "nmt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    static const struct {
        int          pos;       /* position to overwrite, -1: none */
        char         c;
        int          len_delta;
        const char  *why;
    } bad[] = {
        { 3, '-', 0,  "nmt- prefix" },
        { 0, 'N', 0,  "upper-case prefix" },
        { 0, 'x', 0,  "other prefix" },
        { -1, 0, -1,  "46 characters" },
        { -1, 0, 1,   "48 characters" },
        { 10, '+', 0, "'+' in body" },
        { 10, '/', 0, "'/' in body" },
        { 46, '=', 0, "'=' padding in body" },
        { 20, ' ', 0, "space in body" },
        { 20, '\0', 0, "NUL in body" },
        { 20, '.', 0, "'.' in body" },
        { 20, '\xc3', 0, "high byte in body" },
    };

    ok(mm_token_well_formed(good, strlen(good)), "all-A token");
    ok(mm_token_well_formed("nmt_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-",
                            47), "'-' and '_' allowed");
    ok(mm_token_well_formed("nmt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG",
                            47), "digits and letters allowed");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(tok, good, sizeof(good));
        strcat(tok, "A");

        if (bad[i].pos >= 0) {
            tok[bad[i].pos] = bad[i].c;
        }

        ok(!mm_token_well_formed(tok, strlen(good) + bad[i].len_delta),
           "rejects %s", bad[i].why);
    }

    ok(!mm_token_well_formed("", 0), "rejects empty");
    ok(!mm_token_well_formed("nmt_", 4), "rejects bare prefix");
    ok(!mm_token_well_formed(NULL, 0), "rejects NULL");
}


static void
test_hash(void)
{
    char  hex[MM_TOKEN_HASH_LEN + 1];

    mm_token_hash("abc", 3, hex);
    is_str(hex,
           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "sha256(\"abc\")");

    mm_token_hash("", 0, hex);
    is_str(hex,
           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           "sha256(\"\")");

    mm_token_hash("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                  56, hex);
    is_str(hex,
           "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
           "sha256 of the 448-bit FIPS 180-2 message");

    mm_token_hash("nmt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 47, hex);
    is_str(hex,
           "730c24f5fd293dced0ac4b6d5f0d9e321773923b3fbd4f875821570140b6cc76",
           "sha256 of a token");

    mm_token_hash("abcdef", 3, hex);
    is_str(hex,
           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
           "length bounds the input");
    is_int(strlen(hex), 64, "64 hex digits");
}


static void
test_ct_equal(void)
{
    ok(mm_ct_equal("abcdef", "abcdef", 6), "equal");
    ok(!mm_ct_equal("abcdef", "xbcdef", 6), "differs in the first byte");
    ok(!mm_ct_equal("abcdef", "abcdex", 6), "differs in the last byte");
    ok(mm_ct_equal("abcdef", "abcxyz", 3), "equal prefix of n bytes");
    ok(mm_ct_equal("a", "b", 0), "zero length is equal");
    ok(!mm_ct_equal("\x80", "\x00", 1), "high bit difference");
}


static void
test_b64url(void)
{
    size_t         i, n, len;
    char           enc[256];
    unsigned char  raw[200], dec[200];
    unsigned       seed;
    int            bad;

    static const struct {
        const char  *raw;
        size_t       raw_len;
        const char  *enc;
    } vec[] = {
        /* RFC 4648 section 10, without padding */
        { "", 0, "" },
        { "f", 1, "Zg" },
        { "fo", 2, "Zm8" },
        { "foo", 3, "Zm9v" },
        { "foob", 4, "Zm9vYg" },
        { "fooba", 5, "Zm9vYmE" },
        { "foobar", 6, "Zm9vYmFy" },
        /* the two url-safe characters */
        { "\xfb\xef\xbe", 3, "----" },
        { "\xff\xff\xff", 3, "____" },
        { "\xfb\xff", 2, "-_8" },
        { "\x00", 1, "AA" },
        { "\x00\x00\x00", 3, "AAAA" },
        { "\x14\xfb\x9c\x03\xd9\x7e", 6, "FPucA9l-" },
    };

    static const struct {
        const char  *in;
        const char  *why;
    } rej[] = {
        { "Zg==", "padding" },
        { "Zg=", "single pad" },
        { "Zm8=", "padded 2-byte group" },
        { "Z", "length 1" },
        { "Zm9vY", "length 5" },
        { "Zm+v", "'+'" },
        { "Zm/v", "'/'" },
        { "Zm9 ", "space" },
        { "Zm9\n", "newline" },
        { "Zm.v", "'.'" },
        { "Zm9v\xc3\xa9", "non-ASCII" },
        { "Zh", "non-zero spare bits (2 chars)" },
        { "Zm9", "non-zero spare bits (3 chars)" },
        { "__", "all spare bits set" },
    };

    for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        n = mm_b64url_encode((const unsigned char *) vec[i].raw,
                             vec[i].raw_len, enc, sizeof(enc));
        is_str(enc, vec[i].enc, "encode vector %zu", i);
        is_int(n, strlen(vec[i].enc), "  returns its length");

        n = mm_b64url_decode(vec[i].enc, strlen(vec[i].enc), dec,
                             sizeof(dec));
        is_mem(dec, n, vec[i].raw, vec[i].raw_len, "decode vector %zu", i);
    }

    for (i = 0; i < sizeof(rej) / sizeof(rej[0]); i++) {
        is_int(mm_b64url_decode(rej[i].in, strlen(rej[i].in), dec,
                                sizeof(dec)), (size_t) -1,
               "decode rejects %s", rej[i].why);
    }

    is_int(mm_b64url_decode("Zm\0v", 4, dec, sizeof(dec)), (size_t) -1,
           "decode rejects NUL");

    /* buffer sizes */
    is_int(mm_b64url_decode("Zm9vYmFy", 8, dec, 5), (size_t) -1,
           "decode into too small a buffer");
    is_int(mm_b64url_decode("Zm9vYmFy", 8, dec, 6), 6,
           "decode into an exact buffer");
    is_int(mm_b64url_encode((const unsigned char *) "foobar", 6, enc, 8), 0,
           "encode into too small a buffer");
    is_int(mm_b64url_encode((const unsigned char *) "foobar", 6, enc, 9), 8,
           "encode into an exact buffer");
    is_int(mm_b64url_encode((const unsigned char *) "", 0, enc, 1), 0,
           "encode empty");
    is_str(enc, "", "  gives an empty string");

    /* round trips of every length 0..150 */
    seed = 4242;
    bad = 0;

    for (len = 0; len <= 150; len++) {
        for (i = 0; i < len; i++) {
            seed = seed * 1103515245 + 12345;
            raw[i] = (unsigned char) (seed >> 16);
        }

        n = mm_b64url_encode(raw, len, enc, sizeof(enc));

        if (n != (len * 4 + 2) / 3 || strlen(enc) != n
            || strpbrk(enc, "+/=") != NULL
            || mm_b64url_decode(enc, n, dec, sizeof(dec)) != len
            || memcmp(raw, dec, len) != 0)
        {
            bad++;
        }
    }

    is_int(bad, 0, "round trips for lengths 0..150");

    /* every 2-character string: exactly the canonical ones decode */
    bad = 0;
    n = 0;

    {
        static const char  b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t             a, b;

        for (a = 0; a < 64; a++) {
            for (b = 0; b < 64; b++) {
                char  s[2] = { b64[a], b64[b] };

                if (mm_b64url_decode(s, 2, dec, 1) == 1) {
                    n++;
                    mm_b64url_encode(dec, 1, enc, sizeof(enc));
                    if (memcmp(enc, s, 2) != 0) {
                        bad++;
                    }
                }
            }
        }
    }

    is_int(n, 256, "256 of 4096 two-char strings decode");
    is_int(bad, 0, "  each re-encodes to itself");
}


int
main(void)
{
    test_new();
    test_well_formed();
    test_hash();
    test_ct_equal();
    test_b64url();

    return done_testing();
}
