/*
 * JSON reader and writer: every value type, escapes and surrogates, each
 * class of rejection, the depth limit, big numbers, getters, and round trips
 * through mm_json_put_string.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tap.h"


typedef struct {
    const char   *text;
    size_t        len;          /* 0: strlen(text) */
    mm_status_t   st;
    const char   *why;
} bad_case_t;


static mm_status_t
parse(const char *text, size_t len, mm_json_doc_t **doc,
    const mm_json_t **root, char *err, size_t err_size)
{
    return mm_json_parse(text, len ? len : strlen(text), doc, root, err,
                         err_size);
}


static void
test_scalars(void)
{
    char              err[128];
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    is_int(parse("null", 0, &doc, &v, err, sizeof(err)), MM_OK, "null");
    ok(v->type == MM_JSON_NULL, "null type");
    mm_json_doc_free(&doc);
    ok(doc == NULL, "doc_free NULLs the pointer");
    mm_json_doc_free(&doc);
    ok(1, "doc_free(NULL doc) is harmless");

    is_int(parse(" true ", 0, &doc, &v, err, sizeof(err)), MM_OK, "true");
    ok(v->type == MM_JSON_TRUE, "true type");
    mm_json_doc_free(&doc);

    is_int(parse("\t\r\nfalse\n", 0, &doc, &v, err, sizeof(err)), MM_OK,
           "false with whitespace");
    ok(v->type == MM_JSON_FALSE, "false type");
    mm_json_doc_free(&doc);

    is_int(parse("-12.5e1", 0, &doc, &v, err, sizeof(err)), MM_OK,
           "number");
    ok(v->type == MM_JSON_NUMBER && v->u.num.d == -125.0
       && !v->u.num.is_int, "number value -125, not int");
    mm_json_doc_free(&doc);

    is_int(parse("42", 0, &doc, &v, err, sizeof(err)), MM_OK, "integer");
    ok(v->type == MM_JSON_NUMBER && v->u.num.is_int && v->u.num.i == 42
       && v->u.num.d == 42.0, "integer 42");
    mm_json_doc_free(&doc);

    is_int(parse("\"hi\"", 0, &doc, &v, err, sizeof(err)), MM_OK, "string");
    ok(v->type == MM_JSON_STRING && v->u.str.len == 2
       && strcmp(v->u.str.s, "hi") == 0, "string value");
    mm_json_doc_free(&doc);

    is_int(parse("\"\"", 0, &doc, &v, err, sizeof(err)), MM_OK,
           "empty string");
    ok(v->type == MM_JSON_STRING && v->u.str.len == 0
       && v->u.str.s[0] == '\0', "empty string value");
    mm_json_doc_free(&doc);

    /* not NUL-terminated input: the parser must respect len */
    is_int(mm_json_parse("12345", 2, &doc, &v, NULL, 0), MM_OK,
           "length-bounded input");
    ok(v->u.num.is_int && v->u.num.i == 12, "only len bytes read");
    mm_json_doc_free(&doc);
}


static void
test_containers(void)
{
    int64_t            i64;
    int                b;
    char               err[128];
    size_t             len;
    const char        *s;
    mm_json_doc_t     *doc;
    const mm_json_t   *v, *a, *o;

    static const char  text[] =
        "{\n"
        "  \"id\": 42,\n"
        "  \"title\": \"Episode \\\"1\\\"\",\n"
        "  \"ratio\": 0.5,\n"
        "  \"live\": true,\n"
        "  \"draft\": false,\n"
        "  \"owner\": null,\n"
        "  \"tags\": [\"a\", \"b\", [], {}],\n"
        "  \"meta\": {\"w\": 1920, \"h\": 1080, \"codecs\": [\"avc1\"]},\n"
        "  \"id\": 43\n"
        "}";

    is_int(parse(text, 0, &doc, &v, err, sizeof(err)), MM_OK,
           "object document");
    ok(v->type == MM_JSON_OBJECT && v->u.obj.n == 9, "9 members");
    is_str(v->u.obj.members[1].key, "title", "member order kept");

    ok(mm_json_get_int64(v, "id", &i64) && i64 == 42,
       "get_int64 returns the first of duplicate keys");
    ok(mm_json_get_string(v, "title", &s, &len)
       && len == 11 && strcmp(s, "Episode \"1\"") == 0, "get_string");
    ok(mm_json_get_bool(v, "live", &b) && b == 1, "get_bool true");
    ok(mm_json_get_bool(v, "draft", &b) && b == 0, "get_bool false");
    ok(!mm_json_get_bool(v, "owner", &b), "get_bool on null fails");
    ok(!mm_json_get_int64(v, "ratio", &i64), "get_int64 on 0.5 fails");
    ok(!mm_json_get_int64(v, "title", &i64), "get_int64 on string fails");
    ok(!mm_json_get_string(v, "id", &s, &len), "get_string on number fails");
    ok(!mm_json_get_string(v, "nope", &s, &len), "get_string on absent");
    ok(mm_json_get(v, "nope") == NULL, "get of absent key");
    ok(mm_json_get(v, "") == NULL, "get of empty key");
    ok(mm_json_get(v, "owner") != NULL
       && mm_json_get(v, "owner")->type == MM_JSON_NULL, "get null member");

    a = mm_json_get(v, "tags");
    ok(a != NULL && a->type == MM_JSON_ARRAY && a->u.arr.n == 4,
       "array of 4");
    ok(a->u.arr.items[0].type == MM_JSON_STRING
       && strcmp(a->u.arr.items[1].u.str.s, "b") == 0, "array items");
    ok(a->u.arr.items[2].type == MM_JSON_ARRAY
       && a->u.arr.items[2].u.arr.n == 0, "empty array item");
    ok(a->u.arr.items[3].type == MM_JSON_OBJECT
       && a->u.arr.items[3].u.obj.n == 0, "empty object item");
    ok(mm_json_get(a, "a") == NULL, "get on an array is NULL");
    ok(mm_json_get(NULL, "a") == NULL, "get on NULL is NULL");

    o = mm_json_get(v, "meta");
    ok(mm_json_get_int64(o, "w", &i64) && i64 == 1920, "nested int");
    o = mm_json_get(o, "codecs");
    ok(o != NULL && o->u.arr.n == 1
       && strcmp(o->u.arr.items[0].u.str.s, "avc1") == 0, "nested array");

    mm_json_doc_free(&doc);

    is_int(parse("{\"a\\u0000b\":1,\"a\":2}", 0, &doc, &v, err,
                 sizeof(err)), MM_OK, "key with embedded NUL");
    ok(v->u.obj.members[0].key_len == 3, "key_len counts the NUL");
    ok(mm_json_get_int64(v, "a", &i64) && i64 == 2,
       "lookup does not stop at an embedded NUL");
    mm_json_doc_free(&doc);

    is_int(parse("[[[]],[[],[[1]]],{\"x\":[{}]}]", 0, &doc, &v, err,
                 sizeof(err)), MM_OK, "nested mix");
    ok(v->u.arr.n == 3
       && v->u.arr.items[1].u.arr.items[1].u.arr.items[0].u.arr.items[0]
          .u.num.i == 1, "deep item reachable");
    mm_json_doc_free(&doc);

    is_int(parse(" [ 1 , 2 ,\n3 ] ", 0, &doc, &v, err, sizeof(err)), MM_OK,
           "whitespace everywhere");
    ok(v->u.arr.n == 3 && v->u.arr.items[2].u.num.i == 3, "three items");
    mm_json_doc_free(&doc);
}


static void
test_big(void)
{
    int              i, n;
    char             err[128];
    mm_buf_t         b;
    int64_t          i64;
    mm_json_doc_t   *doc;
    const mm_json_t *v;

    /* many items: scratch stack growth and several arena chunks */
    mm_buf_init(&b);
    mm_buf_puts(&b, "[");
    n = 100000;
    for (i = 0; i < n; i++) {
        mm_buf_printf(&b, "%s%d", i ? "," : "", i);
    }
    mm_buf_puts(&b, "]");

    is_int(mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err)), MM_OK,
           "array of %d numbers", n);
    ok(v->u.arr.n == (size_t) n && v->u.arr.items[n - 1].u.num.i == n - 1,
       "all items present");
    mm_json_doc_free(&doc);

    mm_buf_reset(&b);
    mm_buf_puts(&b, "{");
    n = 5000;
    for (i = 0; i < n; i++) {
        mm_buf_printf(&b, "%s\"k%d\":{\"v\":[%d]}", i ? "," : "", i, i);
    }
    mm_buf_puts(&b, "}");

    is_int(mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err)), MM_OK,
           "object of %d members", n);
    ok(v->u.obj.n == (size_t) n, "member count");
    v = mm_json_get(mm_json_get(v, "k4321"), "v");
    ok(v != NULL && v->u.arr.items[0].u.num.i == 4321, "member lookup");
    mm_json_doc_free(&doc);

    /* one long string takes a chunk of its own */
    mm_buf_reset(&b);
    mm_buf_puts(&b, "[\"");
    for (i = 0; i < 300000; i++) {
        mm_buf_append(&b, i % 1000 ? "x" : "\\n", i % 1000 ? 1 : 2);
    }
    mm_buf_puts(&b, "\",\"tail\"]");

    is_int(mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err)), MM_OK,
           "long string");
    ok(v->u.arr.items[0].u.str.len == 300000
       && v->u.arr.items[0].u.str.s[0] == '\n'
       && v->u.arr.items[0].u.str.s[300000] == '\0'
       && strcmp(v->u.arr.items[1].u.str.s, "tail") == 0,
       "long string decoded");
    ok(mm_json_get_int64(v, "x", &i64) == 0, "getter on array fails");
    mm_json_doc_free(&doc);

    mm_buf_free(&b);
}


static void
test_numbers(void)
{
    size_t            i;
    char              err[128], *text;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    static const struct {
        const char  *text;
        int          is_int;
        int64_t      i;
        double       d;
    } cases[] = {
        { "0",                       1, 0, 0.0 },
        { "-0",                      1, 0, -0.0 },
        { "7",                       1, 7, 7.0 },
        { "-7",                      1, -7, -7.0 },
        { "1234567890",              1, 1234567890, 1234567890.0 },
        { "9223372036854775807",     1, INT64_MAX, 9223372036854775807.0 },
        { "-9223372036854775808",    1, INT64_MIN, -9223372036854775808.0 },
        { "9223372036854775808",     0, 0, 9223372036854775808.0 },
        { "-9223372036854775809",    0, 0, -9223372036854775809.0 },
        { "18446744073709551616",    0, 0, 18446744073709551616.0 },
        { "123456789012345678901234567890", 0, 0,
          123456789012345678901234567890.0 },
        { "1.0",                     0, 0, 1.0 },
        { "1e3",                     0, 0, 1000.0 },
        { "1E+3",                    0, 0, 1000.0 },
        { "25e-1",                   0, 0, 2.5 },
        { "-0.0",                    0, 0, -0.0 },
        { "0e0",                     0, 0, 0.0 },
        { "0.000001",                0, 0, 0.000001 },
        { "1.7976931348623157e308",  0, 0, 1.7976931348623157e308 },
        { "-1.7976931348623157e308", 0, 0, -1.7976931348623157e308 },
        { "4.9e-324",                0, 0, 4.9e-324 },
        { "1e-400",                  0, 0, 0.0 },
        { "3.141592653589793238462643383279502884197169399375105820974944",
                                     0, 0, 3.141592653589793 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_int(parse(cases[i].text, 0, &doc, &v, err, sizeof(err)), MM_OK,
               "number %s parses", cases[i].text);

        if (v == NULL) {
            continue;
        }

        ok(v->type == MM_JSON_NUMBER && v->u.num.is_int == cases[i].is_int
           && (!cases[i].is_int || v->u.num.i == cases[i].i)
           && v->u.num.d == cases[i].d
           && signbit(v->u.num.d) == signbit(cases[i].d),
           "number %s: is_int=%d i=%lld d=%.17g", cases[i].text,
           v->u.num.is_int, (long long) v->u.num.i, v->u.num.d);

        mm_json_doc_free(&doc);
    }

    /* a number longer than the on-stack copy */
    text = malloc(2 + 500 + 2);
    memcpy(text, "0.", 2);
    memset(text + 2, '0', 500);
    memcpy(text + 502, "1", 2);
    is_int(parse(text, 0, &doc, &v, err, sizeof(err)), MM_OK,
           "500-digit fraction");
    ok(v != NULL && v->u.num.d == 0.0 && !v->u.num.is_int,
       "underflows to 0");
    mm_json_doc_free(&doc);
    free(text);

    text = malloc(402);
    text[0] = '1';
    memset(text + 1, '0', 400);
    text[401] = '\0';
    is_int(parse(text, 0, &doc, &v, err, sizeof(err)), MM_EBADDATA,
           "401-digit integer overflows double: rejected");
    free(text);
}


static void
test_strings(void)
{
    size_t            i;
    char              err[128];
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    static const struct {
        const char  *text;
        const char  *want;
        size_t       want_len;
    } cases[] = {
        { "\"\\u0041\"",                "A", 1 },
        { "\"\\u00e9\"",                "\xc3\xa9", 2 },
        { "\"\\u00E9\"",                "\xc3\xa9", 2 },
        { "\"\\u07ff\"",                "\xdf\xbf", 2 },
        { "\"\\u0800\"",                "\xe0\xa0\x80", 3 },
        { "\"\\u20AC\"",                "\xe2\x82\xac", 3 },
        { "\"\\uFFFF\"",                "\xef\xbf\xbf", 3 },
        { "\"\\uD83D\\uDE00\"",         "\xf0\x9f\x98\x80", 4 },
        { "\"\\ud83d\\ude00\"",         "\xf0\x9f\x98\x80", 4 },
        { "\"\\uD800\\uDC00\"",         "\xf0\x90\x80\x80", 4 },
        { "\"\\uDBFF\\uDFFF\"",         "\xf4\x8f\xbf\xbf", 4 },
        { "\"\\u0000\"",                "\0", 1 },
        { "\"a\\u0000b\"",              "a\0b", 3 },
        { "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8 },
        { "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
          "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9 },
        { "\"\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf\"",
          "\xed\x9f\xbf\xee\x80\x80\xf4\x8f\xbf\xbf", 10 },
        { "\"\x7f\"",                   "\x7f", 1 },
        { "\"/*\"",                     "/*", 2 },
        { "\"x\\u0041\\u0042y\"",       "xABy", 4 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        is_int(parse(cases[i].text, 0, &doc, &v, err, sizeof(err)), MM_OK,
               "string case %zu parses", i);

        if (v == NULL) {
            continue;
        }

        is_mem(v->u.str.s, v->u.str.len, cases[i].want, cases[i].want_len,
               "string case %zu decodes", i);
        ok(v->u.str.s[v->u.str.len] == '\0', "string case %zu NUL", i);

        mm_json_doc_free(&doc);
    }
}


static void
test_rejects(void)
{
    size_t            i;
    char              err[128];
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

#define BAD(t, why)      { t, sizeof(t) - 1, MM_EBADDATA, why }

    static const bad_case_t  cases[] = {
        /* empty and structure */
        BAD("", "empty input"),
        BAD("   ", "only whitespace"),
        BAD("[", "unclosed array"),
        BAD("]", "lone ]"),
        BAD("{", "unclosed object"),
        BAD("}", "lone }"),
        BAD("[1", "array missing ]"),
        BAD("[1 2]", "array missing comma"),
        BAD("{\"a\"}", "member without value"),
        BAD("{\"a\" 1}", "member without colon"),
        BAD("{\"a\":}", "colon without value"),
        BAD("{\"a\":1", "object missing }"),
        BAD("{\"a\":1 \"b\":2}", "object missing comma"),
        BAD("{a:1}", "unquoted key"),
        BAD("{1:2}", "number key"),
        BAD("{'a':1}", "single-quoted key"),
        BAD("['a']", "single-quoted string"),
        BAD("{\"a\"::1}", "double colon"),
        BAD("[1:2]", "colon in array"),
        BAD("{\"a\",1}", "comma for colon"),
        BAD("[}", "mismatched brackets"),
        BAD("{]", "mismatched braces"),

        /* trailing commas */
        BAD("[1,]", "trailing comma in array"),
        BAD("[1, ]", "trailing comma and space in array"),
        BAD("{\"a\":1,}", "trailing comma in object"),
        BAD("{\"a\":1 , }", "trailing comma and space in object"),
        BAD("[,]", "lone comma in array"),
        BAD("[,1]", "leading comma in array"),
        BAD("[1,,2]", "double comma in array"),
        BAD("{,}", "lone comma in object"),
        BAD("{,\"a\":1}", "leading comma in object"),
        BAD("[[],]", "trailing comma after nested"),

        /* literals */
        BAD("tru", "truncated true"),
        BAD("nul", "truncated null"),
        BAD("fals", "truncated false"),
        BAD("True", "capitalised True"),
        BAD("NULL", "upper-case NULL"),
        BAD("nan", "nan"),
        BAD("NaN", "NaN"),
        BAD("Infinity", "Infinity"),
        BAD("-Infinity", "-Infinity"),
        BAD("undefined", "undefined"),

        /* numbers */
        BAD("01", "leading zero"),
        BAD("00", "double zero"),
        BAD("-01", "negative leading zero"),
        BAD("[012]", "leading zero in array"),
        BAD("00.5", "leading zero before fraction"),
        BAD("+1", "plus sign"),
        BAD("-", "lone minus"),
        BAD("--1", "double minus"),
        BAD("- 1", "minus then space"),
        BAD(".5", "no integer part"),
        BAD("-.5", "negative no integer part"),
        BAD("1.", "no fraction digits"),
        BAD("1.e5", "dot then exponent"),
        BAD("1e", "empty exponent"),
        BAD("1e+", "exponent sign only"),
        BAD("1E-", "exponent minus only"),
        BAD("1e1.5", "fractional exponent"),
        BAD("0x10", "hex"),
        BAD("1_000", "digit separator"),
        BAD("1e999", "overflows double"),
        BAD("-1e999", "negative overflow"),
        BAD("[1e400]", "overflow inside array"),

        /* bare control characters in strings */
        BAD("\"a\tb\"", "raw tab in string"),
        BAD("\"a\nb\"", "raw newline in string"),
        BAD("\"\r\"", "raw CR in string"),
        BAD("\"\x01\"", "raw 0x01 in string"),
        BAD("\"\x1f\"", "raw 0x1f in string"),
        BAD("\"a\0b\"", "raw NUL in string"),
        BAD("{\"k\x02\":1}", "raw control in key"),

        /* escapes */
        BAD("\"\\x41\"", "\\x escape"),
        BAD("\"\\a\"", "\\a escape"),
        BAD("\"\\0\"", "\\0 escape"),
        BAD("\"\\'\"", "\\' escape"),
        BAD("\"\\U0041\"", "\\U escape"),
        BAD("\"\\u12\"", "short \\u"),
        BAD("\"\\u12G4\"", "non-hex \\u"),
        BAD("\"\\u 123\"", "space in \\u"),
        BAD("\"\\u-123\"", "minus in \\u"),
        BAD("\"\\", "backslash at end"),
        BAD("\"\\\"", "escaped quote, unterminated"),
        BAD("\"\\\xc3\xa9\"", "backslash before UTF-8"),
        BAD("\"\\\n\"", "backslash newline"),

        /* surrogates */
        BAD("\"\\uD800\"", "lone high surrogate"),
        BAD("\"\\uDBFF\"", "lone high surrogate DBFF"),
        BAD("\"\\uDC00\"", "lone low surrogate"),
        BAD("\"\\uDFFF\"", "lone low surrogate DFFF"),
        BAD("\"\\uD800x\"", "high surrogate then char"),
        BAD("\"\\uD800\\u0041\"", "high surrogate then non-surrogate"),
        BAD("\"\\uD800\\uD800\"", "two high surrogates"),
        BAD("\"\\uDC00\\uD800\"", "reversed pair"),
        BAD("\"\\uD800\\n\"", "high surrogate then other escape"),
        BAD("\"\\uD800\\u\"", "high surrogate then short \\u"),
        BAD("\"\\uD800\"\"\\uDC00\"", "pair split across strings"),

        /* invalid UTF-8 */
        BAD("\"\x80\"", "lone continuation byte"),
        BAD("\"\xbf\"", "lone continuation 0xbf"),
        BAD("\"\xc0\x80\"", "overlong NUL"),
        BAD("\"\xc1\xbf\"", "overlong 2-byte"),
        BAD("\"\xe0\x80\x80\"", "overlong 3-byte"),
        BAD("\"\xe0\x9f\xbf\"", "overlong 3-byte edge"),
        BAD("\"\xf0\x80\x80\x80\"", "overlong 4-byte"),
        BAD("\"\xf0\x8f\xbf\xbf\"", "overlong 4-byte edge"),
        BAD("\"\xed\xa0\x80\"", "UTF-8 encoded high surrogate"),
        BAD("\"\xed\xbf\xbf\"", "UTF-8 encoded low surrogate"),
        BAD("\"\xed\xa0\xbd\xed\xb8\x80\"", "CESU-8 pair"),
        BAD("\"\xf4\x90\x80\x80\"", "U+110000"),
        BAD("\"\xf5\x80\x80\x80\"", "lead 0xf5"),
        BAD("\"\xf8\x88\x80\x80\x80\"", "5-byte form"),
        BAD("\"\xfe\"", "byte 0xfe"),
        BAD("\"\xff\"", "byte 0xff"),
        BAD("\"\xc3\"", "truncated 2-byte"),
        BAD("\"\xe2\x82\"", "truncated 3-byte"),
        BAD("\"\xf0\x9f\x98\"", "truncated 4-byte"),
        BAD("\"\xc3\x28\"", "bad continuation"),
        BAD("\"\xe2\x28\xa1\"", "bad second of 3"),
        BAD("\"\xe2\x82\x28\"", "bad third of 3"),
        BAD("\"\xc3", "truncated at end of input"),
        BAD("[\xc3\xa9]", "UTF-8 outside a string"),
        BAD("\xef\xbb\xbf{}", "byte order mark"),

        /* unterminated strings */
        BAD("\"abc", "unterminated string"),
        BAD("\"", "lone quote"),
        BAD("[\"a]", "unterminated string in array"),

        /* trailing garbage */
        BAD("1 2", "two numbers"),
        BAD("{} x", "object then letter"),
        BAD("[]]", "extra ]"),
        BAD("{}}", "extra }"),
        BAD("nullx", "literal then letter"),
        BAD("truefalse", "two literals"),
        BAD("\"a\"\"b\"", "two strings"),
        BAD("1,", "trailing comma at top level"),
        BAD("{}\0", "trailing NUL"),
        BAD("0 0", "zero zero"),
        BAD("[1]//", "line comment"),
        BAD("/*c*/1", "block comment"),
        BAD("1\f", "form feed is not whitespace"),
        BAD("\v1", "vertical tab is not whitespace"),
        BAD("1\xc2\xa0", "NBSP is not whitespace"),
    };

#undef BAD

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        doc = (mm_json_doc_t *) &doc;           /* must be reset */
        v = (const mm_json_t *) &v;
        err[0] = '\0';

        st = mm_json_parse(cases[i].text, cases[i].len, &doc, &v, err,
                           sizeof(err));

        is_int(st, cases[i].st, "reject %s (%s)", cases[i].why, err);
        ok(doc == NULL && v == NULL && strncmp(err, "offset ", 7) == 0,
           "  no doc, error names an offset");

        if (st == MM_OK) {
            mm_json_doc_free(&doc);
        }
    }

    /* error details */
    parse("[1,]", 0, &doc, &v, err, sizeof(err));
    is_str(err, "offset 3: trailing comma in array", "trailing comma message");

    parse("{\"a\":\"x\xc0\x80\"}", 0, &doc, &v, err, sizeof(err));
    ok(strncmp(err, "offset 7: ", 10) == 0 && strstr(err, "UTF-8") != NULL,
       "invalid UTF-8 message: %s", err);

    parse("[\"\\uD800\"]", 0, &doc, &v, err, sizeof(err));
    ok(strncmp(err, "offset 2: ", 10) == 0 && strstr(err, "surrogate"),
       "surrogate message: %s", err);

    parse("01", 0, &doc, &v, err, sizeof(err));
    ok(strstr(err, "leading zero") != NULL, "leading zero message: %s", err);

    parse("{} x", 0, &doc, &v, err, sizeof(err));
    is_str(err, "offset 3: trailing garbage after document",
           "trailing garbage message");

    is_int(parse("[1,]", 0, &doc, &v, NULL, 0), MM_EBADDATA,
           "err may be NULL");
    is_int(parse("[1,]", 0, &doc, &v, err, 8), MM_EBADDATA,
           "small err buffer");
    is_int(strlen(err), 7, "error truncated to the buffer");
}


static void
test_depth(void)
{
    int               i, d;
    char              err[128];
    mm_buf_t          b;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    mm_buf_init(&b);

    for (d = MM_JSON_MAX_DEPTH - 1; d <= MM_JSON_MAX_DEPTH + 1; d++) {
        mm_buf_reset(&b);
        for (i = 0; i < d; i++) {
            mm_buf_puts(&b, "[");
        }
        for (i = 0; i < d; i++) {
            mm_buf_puts(&b, "]");
        }

        st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));
        is_int(st, d <= MM_JSON_MAX_DEPTH ? MM_OK : MM_ETOOBIG,
               "%d nested arrays", d);
        mm_json_doc_free(&doc);

        mm_buf_reset(&b);
        for (i = 0; i < d; i++) {
            mm_buf_puts(&b, "{\"k\":");
        }
        mm_buf_puts(&b, "1");
        for (i = 0; i < d; i++) {
            mm_buf_puts(&b, "}");
        }

        st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));
        is_int(st, d <= MM_JSON_MAX_DEPTH ? MM_OK : MM_ETOOBIG,
               "%d nested objects", d);
        mm_json_doc_free(&doc);
    }

    /* mixed, and siblings do not add up */
    mm_buf_reset(&b);
    for (i = 0; i < MM_JSON_MAX_DEPTH / 2; i++) {
        mm_buf_puts(&b, "[{\"a\":");
    }
    mm_buf_puts(&b, "[]");
    for (i = 0; i < MM_JSON_MAX_DEPTH / 2; i++) {
        mm_buf_puts(&b, "}]");
    }
    st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));
    is_int(st, MM_ETOOBIG, "mixed nesting over the limit (%s)", err);
    ok(strstr(err, "nesting") != NULL, "depth message names nesting");

    mm_buf_reset(&b);
    mm_buf_puts(&b, "[");
    for (i = 0; i < 200; i++) {
        mm_buf_puts(&b, i ? ",[[[]]]" : "[[[]]]");
    }
    mm_buf_puts(&b, "]");
    st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));
    is_int(st, MM_OK, "many shallow siblings");
    mm_json_doc_free(&doc);

    /* very deep input fails fast without recursing further */
    mm_buf_reset(&b);
    for (i = 0; i < 100000; i++) {
        mm_buf_puts(&b, "[");
    }
    st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));
    is_int(st, MM_ETOOBIG, "100000 open brackets");

    mm_buf_free(&b);
}


static void
test_writer(void)
{
    size_t     i;
    mm_buf_t   b;

    static const struct {
        const char  *in;
        size_t       in_len;
        const char  *out;
    } cases[] = {
        { "", 0, "\"\"" },
        { "plain", 5, "\"plain\"" },
        { "a\"b\\c/", 6, "\"a\\\"b\\\\c/\"" },
        { "\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"" },
        { "\x01\x1f\x7f", 3, "\"\\u0001\\u001f\x7f\"" },
        { "a\0b", 3, "\"a\\u0000b\"" },
        { "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9,
          "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"" },
        { "a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"" },
        { "\xe2\x82", 2, "\"\xef\xbf\xbd\"" },
        { "\xc0\x80", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },
        { "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },
        { "\xf4\x90\x80\x80", 4,
          "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" },
        { "x\xc3", 2, "\"x\xef\xbf\xbd\"" },
    };

    static const struct {
        int64_t      v;
        const char  *text;
    } ints[] = {
        { 0, "0" }, { 7, "7" }, { -7, "-7" }, { 10, "10" },
        { 1763900000123, "1763900000123" },
        { INT64_MAX, "9223372036854775807" },
        { INT64_MIN, "-9223372036854775808" },
    };

    char  num[MM_JSON_INT_MAX + 1], *e;

    mm_buf_init(&b);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mm_buf_reset(&b);
        mm_json_put_string(&b, cases[i].in, cases[i].in_len);
        is_str(b.data, cases[i].out, "put_string case %zu", i);
    }

    mm_buf_free(&b);

    for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        e = mm_json_int(num, ints[i].v);
        *e = '\0';
        ok(e - num <= MM_JSON_INT_MAX && strcmp(num, ints[i].text) == 0,
           "mm_json_int %s: %s", ints[i].text, num);
    }
}


/*
 * Runs the eight-bytes-a-step scanners meet: each special byte at every
 * offset of strings of 1..40 bytes, parsed and written.
 */
static void
test_runs(void)
{
    int               bad;
    char              in[64], text[128], *e, out[6 * 64];
    size_t            n, at, k, len;
    mm_buf_t          b;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    static const struct {
        const char  *raw;           /* the byte in the string */
        const char  *json;          /* how it is written */
    } special[] = {
        { "\"", "\\\"" }, { "\\", "\\\\" }, { "\n", "\\n" },
        { "\x1f", "\\u001f" }, { "\x01", "\\u0001" },
        { "\xc3\xa9", "\xc3\xa9" }, { "\x7f", "\x7f" }, { " ", " " },
        { "!", "!" }, { "#", "#" }, { "[", "[" }, { "]", "]" },
    };

    mm_buf_init(&b);
    bad = 0;

    for (k = 0; k < sizeof(special) / sizeof(special[0]); k++) {
        for (n = 1; n <= 40; n++) {
            for (at = 0; at < n; at++) {
                /* n bytes of 'a' with the special one at `at` */
                memset(in, 'a', n);
                len = strlen(special[k].raw);
                memcpy(in + at, special[k].raw, len);
                memset(in + at + len, 'b', n - at);
                len += n;               /* at + raw + (n - at) */

                /* the writer */
                mm_buf_reset(&b);
                mm_json_put_string(&b, in, len);
                snprintf(text, sizeof(text), "\"%.*s%s%.*s\"", (int) at,
                         in, special[k].json, (int) (n - at),
                         in + at + strlen(special[k].raw));
                if (strcmp(b.data, text) != 0) {
                    diag("put_string %zu/%zu/%zu: %s", k, n, at, b.data);
                    bad++;
                }

                e = mm_json_escape(out, in, len);
                if ((size_t) (e - out) != b.len - 2
                    || memcmp(out, b.data + 1, b.len - 2) != 0)
                {
                    diag("escape %zu/%zu/%zu", k, n, at);
                    bad++;
                }

                /* the reader, on exactly what the writer made */
                if (mm_json_parse(b.data, b.len, &doc, &v, NULL, 0) != MM_OK
                    || v->u.str.len != len
                    || memcmp(v->u.str.s, in, len) != 0
                    || v->u.str.s[len] != '\0')
                {
                    diag("parse %zu/%zu/%zu: %s", k, n, at, b.data);
                    bad++;
                }
                mm_json_doc_free(&doc);

                /* and with the closing quote cut off */
                if (mm_json_parse(b.data, b.len - 1, &doc, &v, NULL, 0)
                    != MM_EBADDATA)
                {
                    bad++;
                }
                mm_json_doc_free(&doc);
            }
        }
    }

    is_int(bad, 0, "special bytes at every offset: written, escaped and "
           "read back");

    /* a raw control character or bad UTF-8 deep in a run is refused */
    for (at = 0; at < 20; at++) {
        memset(text, 'x', 22);
        text[0] = '"';
        text[21] = '"';
        text[1 + at] = '\t';
        bad += mm_json_parse(text, 22, &doc, &v, NULL, 0) != MM_EBADDATA;
        text[1 + at] = '\xff';
        bad += mm_json_parse(text, 22, &doc, &v, NULL, 0) != MM_EBADDATA;
    }

    is_int(bad, 0, "raw tab and 0xff refused at every offset");

    mm_buf_free(&b);
}


/* one value of a stream at a time */
static void
test_prefix(void)
{
    int               n;
    char              err[128];
    size_t            off, used, len;
    int64_t           i64;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    static const char  stream[] =
        "{\"a\":1}\n{\"a\":2}\n\n  {\"a\":3} {\"a\":4}{\"a\":5}\n[6] \"7\"\t";

    off = 0;
    len = sizeof(stream) - 1;

    for (n = 0; off < len; n++) {
        st = mm_json_parse_prefix(stream + off, len - off, &used, &doc, &v,
                                  err, sizeof(err));
        if (st != MM_OK) {
            diag("value %d: %s", n, err);
            break;
        }

        if (n < 5) {
            ok(mm_json_get_int64(v, "a", &i64) && i64 == n + 1,
               "stream value %d", n + 1);
        }

        mm_json_doc_free(&doc);
        off += used;
    }

    is_int(n, 7, "seven values in the stream");
    is_int((int) off, (int) len, "the whitespace after the last is used up");

    st = mm_json_parse_prefix("{\"a\":1} x", 9, &used, &doc, &v, err,
                              sizeof(err));
    ok(st == MM_OK && used == 8, "prefix: stops at what follows (%zu)",
       used);
    mm_json_doc_free(&doc);

    st = mm_json_parse_prefix("x", 1, &used, &doc, &v, err, sizeof(err));
    ok(st == MM_EBADDATA && doc == NULL && strncmp(err, "offset 0:", 9) == 0,
       "prefix: a bad value is an error (%s)", err);

    st = mm_json_parse_prefix("  \n", 3, &used, &doc, &v, err, sizeof(err));
    ok(st == MM_EBADDATA && doc == NULL, "prefix: only whitespace is an error");

    st = mm_json_parse_prefix("{\"a\":1", 6, &used, &doc, &v, err,
                              sizeof(err));
    ok(st == MM_EBADDATA && doc == NULL, "prefix: a cut value is an error");

    st = mm_json_parse("{\"a\":1}\n{\"a\":2}", 15, &doc, &v, err,
                       sizeof(err));
    ok(st == MM_EBADDATA && strstr(err, "trailing garbage") != NULL,
       "parse: a second value is trailing garbage");
}


/* every string goes through put_string and back unchanged */
static void
roundtrip_one(const char *s, size_t len, const char *what)
{
    char              err[128];
    mm_buf_t          b;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    mm_buf_init(&b);
    mm_json_put_string(&b, s, len);

    st = mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err));

    ok(st == MM_OK && v->type == MM_JSON_STRING
       && v->u.str.len == len && memcmp(v->u.str.s, s, len) == 0,
       "round trip: %s", what);

    mm_json_doc_free(&doc);
    mm_buf_free(&b);
}


static size_t
put_cp(char *out, unsigned cp)
{
    unsigned char  *o = (unsigned char *) out;

    if (cp < 0x80) {
        o[0] = cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = 0xc0 | (cp >> 6);
        o[1] = 0x80 | (cp & 0x3f);
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = 0xe0 | (cp >> 12);
        o[1] = 0x80 | ((cp >> 6) & 0x3f);
        o[2] = 0x80 | (cp & 0x3f);
        return 3;
    }
    o[0] = 0xf0 | (cp >> 18);
    o[1] = 0x80 | ((cp >> 12) & 0x3f);
    o[2] = 0x80 | ((cp >> 6) & 0x3f);
    o[3] = 0x80 | (cp & 0x3f);
    return 4;
}


static void
test_roundtrip(void)
{
    int        i, j, bad;
    char       s[512];
    size_t     n;
    unsigned   cp, seed;

    for (i = 0; i < 128; i++) {
        s[i] = (char) i;
    }
    roundtrip_one(s, 128, "every ASCII byte incl. NUL");

    roundtrip_one("", 0, "empty");
    roundtrip_one("\"\\\"\\", 4, "quotes and backslashes");

    /* boundary code points of each UTF-8 length */
    static const unsigned  edges[] = {
        0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff,
        0x10000, 0x10ffff
    };

    n = 0;
    for (i = 0; i < (int) (sizeof(edges) / sizeof(edges[0])); i++) {
        n += put_cp(s + n, edges[i]);
    }
    roundtrip_one(s, n, "UTF-8 boundary code points");

    /* pseudo-random valid UTF-8, fixed seed */
    seed = 12345;
    bad = 0;

    for (i = 0; i < 500; i++) {
        n = 0;

        for (j = 0; j < 60; j++) {
            seed = seed * 1103515245 + 12345;
            switch ((seed >> 16) % 4) {
            case 0:  cp = (seed >> 8) % 0x80; break;
            case 1:  cp = 0x80 + (seed >> 4) % 0x780; break;
            case 2:  cp = 0x800 + (seed >> 2) % 0xf800; break;
            default: cp = 0x10000 + seed % 0x100000; break;
            }
            if (cp >= 0xd800 && cp <= 0xdfff) {
                cp = 0xfffd;
            }
            n += put_cp(s + n, cp);
        }

        {
            char              err[128];
            mm_buf_t          b;
            mm_json_doc_t    *doc;
            const mm_json_t  *v;

            mm_buf_init(&b);
            mm_json_put_string(&b, s, n);

            if (mm_json_parse(b.data, b.len, &doc, &v, err, sizeof(err))
                != MM_OK
                || v->u.str.len != n || memcmp(v->u.str.s, s, n) != 0)
            {
                bad++;
            }

            mm_json_doc_free(&doc);
            mm_buf_free(&b);
        }
    }

    is_int(bad, 0, "500 random UTF-8 strings round trip");
}


/* mutated documents never crash and never leak (run under ASan) */
static void
test_mutations(void)
{
    int               i, k, okay, bad, weird;
    char              buf[256], err[128];
    size_t            len, pos;
    unsigned          seed;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *v;

    static const char  base[] =
        "{\"a\":[1,-2.5e3,true,false,null,\"x\\u00e9\\uD83D\\uDE00\"],"
        "\"b\":{\"c\":\"\xc3\xa9\",\"d\":[[{}]]}}";

    seed = 777;
    okay = bad = weird = 0;

    for (i = 0; i < 20000; i++) {
        len = sizeof(base) - 1;
        memcpy(buf, base, len);

        for (k = 0; k < 1 + i % 3; k++) {
            seed = seed * 1103515245 + 12345;
            pos = (seed >> 8) % len;
            seed = seed * 1103515245 + 12345;

            switch ((seed >> 20) % 3) {
            case 0:
                buf[pos] = (char) (seed >> 8);
                break;
            case 1:
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
                break;
            default:
                if (len < sizeof(buf) - 1) {
                    memmove(buf + pos + 1, buf + pos, len - pos);
                    buf[pos] = "[]{}\",:\\0e-."[(seed >> 8) % 13];
                    len++;
                }
            }
        }

        st = mm_json_parse(buf, len, &doc, &v, err, sizeof(err));

        if (st == MM_OK) {
            okay++;
            if (doc == NULL || v == NULL) {
                weird++;
            }
            mm_json_doc_free(&doc);

        } else if (st == MM_EBADDATA) {
            bad++;
            if (doc != NULL || strncmp(err, "offset ", 7) != 0) {
                weird++;
            }

        } else {
            weird++;
        }
    }

    ok(weird == 0 && okay > 0 && bad > 0,
       "20000 mutated documents: %d accepted, %d rejected", okay, bad);
}


int
main(void)
{
    test_scalars();
    test_containers();
    test_big();
    test_numbers();
    test_strings();
    test_rejects();
    test_depth();
    test_writer();
    test_runs();
    test_prefix();
    test_roundtrip();
    test_mutations();

    return done_testing();
}
