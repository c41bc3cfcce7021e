/*
 * lib/clearkey: key/kid parsing (base64url or hex, wrong lengths and
 * alphabets), the W3C ClearKey license request and response.
 */

#include <string.h>

#include "buf.h"
#include "clearkey.h"
#include "json.h"
#include "tap.h"


static const unsigned char  KEY[16] = {
    0x87, 0x23, 0x7d, 0x20, 0xa1, 0x9f, 0x58, 0xa7,
    0x40, 0xc0, 0x56, 0x84, 0xe6, 0x99, 0xb4, 0xaa
};


static void
test_parse(void)
{
    char           hex[33], b64[23];
    unsigned char  k[16];
    size_t         i;

    static const char  *bad[] = {
        "",
        "hyN9IKGfWKdAwFaE5pm0q",                    /* 21 */
        "hyN9IKGfWKdAwFaE5pm0qgA",                  /* 23 */
        "hyN9IKGfWKdAwFaE5pm0q+",                   /* '+' */
        "hyN9IKGfWKdAwFaE5pm0q/",                   /* '/' */
        "hyN9IKGfWKdAwFaE5pm0qh",                   /* unused bits */
        "hyN9IKGfWKdAwFaE5pm0qg==",                 /* padded */
        "87237d20a19f58a740c05684e699b4a",          /* 31 hex */
        "87237d20a19f58a740c05684e699b4aa0",        /* 33 hex */
        "87237d20a19f58a740c05684e699b4ag",         /* 'g' */
        "87237d20-a19f-58a7-40c0-5684e699",         /* uuid-ish, 32 */
    };

    ok(mm_clearkey_parse("hyN9IKGfWKdAwFaE5pm0qg", 22, k) == MM_OK
       && memcmp(k, KEY, 16) == 0, "base64url key parses");
    ok(mm_clearkey_parse("87237d20a19f58a740c05684e699b4aa", 32, k) == MM_OK
       && memcmp(k, KEY, 16) == 0, "hex key parses");
    ok(mm_clearkey_parse("87237D20A19F58A740C05684E699B4AA", 32, k) == MM_OK
       && memcmp(k, KEY, 16) == 0, "upper-case hex parses");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        is_int(mm_clearkey_parse(bad[i], strlen(bad[i]), k), MM_EBADDATA,
               "'%s' is refused", bad[i]);
    }

    mm_clearkey_hex(KEY, hex);
    is_str(hex, "87237d20a19f58a740c05684e699b4aa", "hex form");
    mm_clearkey_b64url(KEY, b64);
    is_str(b64, "hyN9IKGfWKdAwFaE5pm0qg", "base64url form");
}


static void
test_license(void)
{
    int               wanted;
    char              type[32], err[256];
    mm_buf_t          b;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *keys, *k0;
    const char       *s;
    size_t            len;

    static const unsigned char  other[16] = { 1, 2, 3 };

#define REQ(body, kid)                                                       \
    mm_clearkey_request(body, strlen(body), kid, &wanted, type,             \
                        sizeof(type), err, sizeof(err))

    st = REQ("{\"kids\":[\"AAAAAAAAAAAAAAAAAAAAAA\",\"hyN9IKGfWKdAwFaE5pm0qg\"],"
             "\"type\":\"temporary\"}", KEY);
    ok(st == MM_OK && wanted, "request naming the kid: wanted");
    is_str(type, "temporary", "type temporary");

    st = REQ("{\"kids\":[\"hyN9IKGfWKdAwFaE5pm0qg\"]}", other);
    ok(st == MM_OK && !wanted, "request for another kid: not wanted");
    is_str(type, "temporary", "type defaults to temporary");

    st = REQ("{\"kids\":[\"hyN9IKGfWKdAwFaE5pm0qg==\"],"
             "\"type\":\"persistent-license\"}", KEY);
    ok(st == MM_OK && wanted, "padded kid tolerated");
    is_str(type, "persistent-license", "type persistent-license");

    is_int(REQ("not json", KEY), MM_EBADDATA, "not JSON: refused");
    is_int(REQ("[]", KEY), MM_EBADDATA, "an array: refused");
    is_int(REQ("{}", KEY), MM_EBADDATA, "no kids: refused");
    ok(strstr(err, "kids") != NULL, "no kids: says so (%s)", err);
    is_int(REQ("{\"kids\":[]}", KEY), MM_EBADDATA, "empty kids: refused");
    is_int(REQ("{\"kids\":\"hyN9IKGfWKdAwFaE5pm0qg\"}", KEY), MM_EBADDATA,
           "kids not an array: refused");
    is_int(REQ("{\"kids\":[42]}", KEY), MM_EBADDATA, "a number kid: refused");
    is_int(REQ("{\"kids\":[\"short\"]}", KEY), MM_EBADDATA,
           "a short kid: refused");
    is_int(REQ("{\"kids\":[\"87237d20a19f58a740c05684e699b4aa\"]}", KEY),
           MM_EBADDATA, "a hex kid (not ClearKey JSON): refused");
    is_int(REQ("{\"kids\":[\"hyN9IKGfWKdAwFaE5pm0qg\"],\"type\":\"x\"}", KEY),
           MM_EBADDATA, "an unknown type: refused");

#undef REQ

    mm_buf_init(&b);
    mm_clearkey_response(&b, KEY, other, "temporary");
    ok(!b.failed, "response built");

    st = mm_json_parse(b.data, b.len, &doc, &root, err, sizeof(err));
    is_int(st, MM_OK, "response is JSON");

    keys = mm_json_get(root, "keys");
    ok(keys && keys->type == MM_JSON_ARRAY && keys->u.arr.n == 1,
       "one key");
    k0 = keys ? &keys->u.arr.items[0] : NULL;
    ok(k0 && mm_json_get_string(k0, "kty", &s, &len)
       && strcmp(s, "oct") == 0, "kty oct");
    ok(k0 && mm_json_get_string(k0, "kid", &s, &len)
       && strcmp(s, "hyN9IKGfWKdAwFaE5pm0qg") == 0, "kid in base64url");
    ok(k0 && mm_json_get_string(k0, "k", &s, &len)
       && strcmp(s, "AQIDAAAAAAAAAAAAAAAAAA") == 0, "k in base64url");
    ok(mm_json_get_string(root, "type", &s, &len)
       && strcmp(s, "temporary") == 0, "type echoed");

    mm_json_doc_free(&doc);
    mm_buf_free(&b);
}


int
main(void)
{
    test_parse();
    test_license();

    return done_testing();
}
