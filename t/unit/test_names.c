/*
 * Entry names: sanitising (paths, drive letters, control and bidi
 * characters, invalid UTF-8, reserved characters, trimming, length cuts on
 * character boundaries keeping the extension), Content-Disposition
 * (filename*, filename, quoting, charsets), URL segments, the pick chain,
 * and de-duplication.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "tap.h"


typedef struct {
    const char  *in;
    size_t       len;       /* 0: strlen(in) */
    const char  *want;
    const char  *why;
} name_case_t;


#define FFFD  "\xef\xbf\xbd"


static const name_case_t  sanitize_cases[] = {
    { "a.png", 0, "a.png", "plain name kept" },
    { "été 2024.mp4", 0, "été 2024.mp4", "UTF-8 and spaces kept" },
    { "\xf0\x9f\x8e\xac.mov", 0, "\xf0\x9f\x8e\xac.mov", "4-byte UTF-8 kept" },
    { ".bashrc", 0, ".bashrc", "leading dot kept" },

    /* paths */
    { "../../etc/passwd", 0, "passwd", "parent segments dropped" },
    { "/abs/x.png", 0, "x.png", "absolute path stripped" },
    { "/x.png", 0, "x.png", "leading slash stripped" },
    { "a\\b.png", 0, "b.png", "backslash is a separator" },
    { "..\\..\\win.ini", 0, "win.ini", "backslash traversal" },
    { "C:\\Users\\x\\a.png", 0, "a.png", "Windows path" },
    { "C:a.png", 0, "a.png", "drive-relative name" },
    { "C:", 0, "file", "drive letter alone" },
    { "C:\\", 0, "file", "drive root" },
    { "dir/..", 0, "dir", "trailing .. skipped" },
    { "dir/", 0, "dir", "trailing slash skipped" },
    { "a/./", 0, "a", "trailing . skipped" },
    { "..", 0, "file", ".. alone" },
    { ".", 0, "file", ". alone" },
    { "...", 0, "file", "dots only" },
    { "", 0, "file", "empty" },
    { "/", 0, "file", "root" },
    { "//..//.//", 0, "file", "separators and dots only" },
    { "   ", 0, "file", "spaces only" },

    /* characters */
    { "a\x01" "b\nc.txt", 0, "a_b_c.txt", "C0 controls" },
    { "a\x7f.txt", 0, "a_.txt", "DEL" },
    { "a\xc2\x85" "b", 0, "a_b", "C1 control (NEL)" },
    { "a\0b", 3, "a_b", "NUL" },
    { "a<b>:c|d?e*f\"g.txt", 0, "a_b__c_d_e_f_g.txt", "reserved characters" },
    { "evil\xe2\x80\xaegnp.exe", 0, "evil_gnp.exe", "RLO override" },
    { "x\xe2\x81\xa6y", 0, "x_y", "LRI isolate" },

    /* invalid UTF-8 */
    { "a\xff" "b", 0, "a" FFFD "b", "stray byte" },
    { "a\x80", 0, "a" FFFD, "lone continuation" },
    { "\xc0\xaf", 0, FFFD FFFD, "overlong /" },
    { "\xe0\x80\xaf", 0, FFFD FFFD FFFD, "3-byte overlong" },
    { "\xed\xa0\x80", 0, FFFD FFFD FFFD, "surrogate" },
    { "\xf4\x90\x80\x80", 0, FFFD FFFD FFFD FFFD, "beyond U+10FFFF" },
    { "a\xe2\x82", 0, "a" FFFD FFFD, "truncated sequence" },
    { "\xe2\x82" "x", 0, FFFD FFFD "x", "sequence cut by ASCII" },
    { "\xe2\x82\xac", 0, "\xe2\x82\xac", "valid euro" },

    /* trimming */
    { "  a.png  ", 0, "a.png", "spaces trimmed" },
    { "a.png.", 0, "a.png", "trailing dot trimmed" },
    { "name. . ", 0, "name", "trailing dots and spaces trimmed" },
    { "a  b", 0, "a  b", "inner spaces kept" },
};


static void
test_sanitize(void)
{
    size_t              i, n;
    char                out[MM_NAME_SIZE];
    const name_case_t  *c;

    for (i = 0; i < sizeof(sanitize_cases) / sizeof(sanitize_cases[0]); i++) {
        c = &sanitize_cases[i];

        memset(out, 'X', sizeof(out));
        n = mm_name_sanitize(c->in, c->len ? c->len : strlen(c->in), out);

        is_str(out, c->want, "sanitize: %s", c->why);

        if (n != strlen(out)) {
            ok(0, "sanitize: %s: length %zu", c->why, n);
        }
    }
}


/* every byte sequence is valid UTF-8 */
static int
valid_utf8(const char *s, size_t len)
{
    size_t               i, n, k;
    const unsigned char  *p;

    p = (const unsigned char *) s;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;

        } else if ((p[i] & 0xe0) == 0xc0) {
            n = 2;

        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 3;

        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 4;

        } else {
            return 0;
        }

        if (i + n > len) {
            return 0;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
        }
    }

    return 1;
}


static void
test_long(void)
{
    size_t  n, i;
    char    in[2048], want[512], out[MM_NAME_SIZE];

    memset(in, 'a', 300);
    n = mm_name_sanitize(in, 300, out);
    is_int(n, 255, "300 ASCII bytes cut to 255");

    memcpy(in + 300, ".png", 4);
    n = mm_name_sanitize(in, 304, out);
    memset(want, 'a', 251);
    memcpy(want + 251, ".png", 5);
    is_str(out, want, "long name keeps its extension (251 + 4)");

    /* 300 x "é" (600 bytes) + ".png": the stem is cut between characters */
    for (i = 0; i < 300; i++) {
        memcpy(in + 2 * i, "\xc3\xa9", 2);
    }

    memcpy(in + 600, ".png", 4);
    n = mm_name_sanitize(in, 604, out);
    is_int(n, 254, "2-byte characters: 125 of them + .png = 254 bytes");
    ok(valid_utf8(out, n) && strcmp(out + 250, ".png") == 0,
       "cut on a character boundary, extension kept");

    /* 100 x "€" (300 bytes), no extension */
    for (i = 0; i < 100; i++) {
        memcpy(in + 3 * i, "\xe2\x82\xac", 3);
    }

    n = mm_name_sanitize(in, 300, out);
    is_int(n, 255, "3-byte characters: 85 of them");
    ok(valid_utf8(out, n), "valid UTF-8 after the cut");

    /* a 4-byte character straddling the limit */
    memset(in, 'b', 254);
    memcpy(in + 254, "\xf0\x9f\x8e\xac" "cccc", 8);
    n = mm_name_sanitize(in, 262, out);
    is_int(n, 254, "4-byte character at the limit dropped whole");
    ok(valid_utf8(out, n), "still valid UTF-8");

    /* an "extension" over MM_NAME_EXT_MAX is not kept */
    memset(in, 'a', 300);
    in[300] = '.';
    memset(in + 301, 'b', 40);
    n = mm_name_sanitize(in, 341, out);
    ok(n == 255 && out[254] == 'a', "over-long extension not preserved");

    /* long, and the cut lands on spaces: trimmed */
    memset(in, 'a', 250);
    memset(in + 250, ' ', 20);
    memset(in + 270, 'z', 20);
    n = mm_name_sanitize(in, 290, out);
    is_int(n, 250, "cut that ends in spaces is trimmed");

    /* long with invalid bytes: each becomes 3 bytes, result still fits */
    memset(in, 0xff, 200);
    n = mm_name_sanitize(in, 200, out);
    ok(n == 255 && valid_utf8(out, n), "invalid bytes expand, cut to 255");

    /* long path: only the last segment counts */
    memset(in, 'd', 1000);
    memcpy(in + 1000, "/short.txt", 10);
    mm_name_sanitize(in, 1010, out);
    is_str(out, "short.txt", "long directory dropped");
}


/* random inputs: every output obeys every rule */
static void
test_random(void)
{
    int             bad;
    size_t          i, k, len, n;
    uint64_t        x;
    char            in[700], out[MM_NAME_SIZE];
    unsigned char  *p;

    static const char  alphabet[] = "ab./\\:. \x01\x7f\xc2\x85\xe2\x82\xac"
                                    "\xff\xed\xa0\xf0\x9f\x8e\xac";

    x = 0x9e3779b97f4a7c15ULL;
    bad = 0;

    for (i = 0; i < 20000 && !bad; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        len = (size_t) (x % sizeof(in));

        for (k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            in[k] = (i & 1) ? (char) (x >> 32)
                            : alphabet[(x >> 32) % (sizeof(alphabet) - 1)];
        }

        n = mm_name_sanitize(in, len, out);
        p = (unsigned char *) out;

        bad = n == 0 || n > MM_NAME_MAX || n != strlen(out)
              || !valid_utf8(out, n) || strcmp(out, ".") == 0
              || strcmp(out, "..") == 0 || out[0] == ' '
              || out[n - 1] == ' ' || out[n - 1] == '.'
              || strpbrk(out, "/\\<>:\"|?*") != NULL;

        for (k = 0; k < n && !bad; k++) {
            bad = p[k] < 0x20 || p[k] == 0x7f
                  || (p[k] == 0xc2 && p[k + 1] < 0xa0);
        }
    }

    ok(!bad, "20000 random names: each 1..255 bytes of valid UTF-8 without "
       "separators, controls, reserved characters or edge spaces/dots");
}


typedef struct {
    const char  *in;
    const char  *want;      /* NULL: no name */
    const char  *why;
} disp_case_t;


static const disp_case_t  disp_cases[] = {
    { "attachment; filename=\"a b.png\"", "a b.png", "quoted filename" },
    { "attachment; filename=plain.txt", "plain.txt", "token filename" },
    { "inline; FILENAME=up.txt", "up.txt", "parameter name is case-blind" },
    { "attachment;filename=x.bin;size=3", "x.bin", "no spaces" },
    { "attachment; filename = sp.txt ", "sp.txt", "spaces around =" },
    { "attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf",
      "\xe2\x82\xac rates.pdf", "filename* UTF-8" },
    { "attachment; filename*=utf-8'en'%C3%A9t%C3%A9.mp4",
      "\xc3\xa9t\xc3\xa9.mp4", "filename* lower-case charset, language" },
    { "attachment; filename*=iso-8859-1'en'%A3%20rates",
      "\xc2\xa3 rates", "filename* ISO-8859-1 converted to UTF-8" },
    { "attachment; filename=\"fallback.png\"; "
      "filename*=UTF-8''%E2%82%AC.png", "\xe2\x82\xac.png",
      "filename* wins when second" },
    { "attachment; filename*=UTF-8''star.png; filename=\"plain.png\"",
      "star.png", "filename* wins when first" },
    { "attachment; filename*=KOI8-R''%C1; filename=\"x.bin\"", "x.bin",
      "unknown charset falls back to filename" },
    { "attachment; filename*=UTF-8''%ZZ.png; filename=\"ok.png\"", "ok.png",
      "bad escape falls back to filename" },
    { "attachment; filename*=UTF-8'%41.png", NULL,
      "ext-value without second quote: nothing" },
    { "attachment; filename*=\"UTF-8''q.txt\"", "q.txt",
      "quoted ext-value accepted" },
    { "attachment; filename=\"a\\\"b.txt\"", "a\"b.txt", "escaped quote" },
    { "attachment; filename=\"semi;colon.txt\"", "semi;colon.txt",
      "semicolon inside quotes" },
    { "attachment; foo=\"filename=x; y\"; filename=y.txt", "y.txt",
      "filename= inside another quoted value ignored" },
    { "attachment; xfilename=no.txt", NULL, "other parameter" },
    { "attachment", NULL, "no parameters" },
    { "attachment; filename=", NULL, "empty value" },
    { "attachment; filename=\"", NULL, "unterminated empty quote" },
    { "attachment; filename=\"abc", "abc", "unterminated quote" },
    { "", NULL, "empty header" },
};


static void
test_disposition(void)
{
    size_t              i, n;
    char                out[512];
    const disp_case_t  *c;

    for (i = 0; i < sizeof(disp_cases) / sizeof(disp_cases[0]); i++) {
        c = &disp_cases[i];

        n = mm_name_from_disposition(c->in, strlen(c->in), out, sizeof(out));

        if (c->want == NULL) {
            is_int(n, 0, "disposition: %s", c->why);

        } else {
            is_str(n ? out : NULL, c->want, "disposition: %s", c->why);
        }
    }

    n = mm_name_from_disposition("attachment; filename=abcdef", 27, out, 4);
    ok(n == 3 && strcmp(out, "abc") == 0, "disposition: cut to out_size");
}


static const disp_case_t  url_cases[] = {
    { "https://h/a/b/c.png", "c.png", "last segment" },
    { "https://h/a/b%20c.png?x=1#f", "b c.png", "decoded, query cut" },
    { "https://h/v.mp4#t=10", "v.mp4", "fragment cut" },
    { "https://h/dir/", "dir", "trailing slash" },
    { "https://h/dir//", "dir", "trailing slashes" },
    { "https://h", NULL, "no path" },
    { "https://h/", NULL, "root path" },
    { "https://h?x=/y.png", NULL, "slash in query is not a path" },
    { "https://h:8080/a.bin", "a.bin", "port" },
    { "https://h/%zz.png", "%zz.png", "bad escape kept" },
    { "https://h/a%2", "a%2", "short escape kept" },
    { "https://h/%C3%A9t%C3%A9.mp4", "\xc3\xa9t\xc3\xa9.mp4",
      "UTF-8 escapes" },
    { "https://h/a+b.txt", "a+b.txt", "plus is not a space in paths" },
    { "https://h/a%2F..%2Fb.png", "a/../b.png", "encoded slashes decoded" },
    { "/local/x.txt", "x.txt", "path only" },
};


static void
test_url(void)
{
    size_t              i, n;
    char                out[512];
    const disp_case_t  *c;

    for (i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
        c = &url_cases[i];

        n = mm_name_from_url(c->in, strlen(c->in), out, sizeof(out));

        if (c->want == NULL) {
            is_int(n, 0, "url: %s", c->why);

        } else {
            is_str(n ? out : NULL, c->want, "url: %s", c->why);
        }
    }
}


static void
test_pick(void)
{
    char         out[MM_NAME_SIZE];
    const char  *cd, *url;

    url = "https://h/dir/from-url.jpg?sig=1";

    cd = "attachment; filename=\"from-header.jpg\"";
    mm_name_pick(cd, strlen(cd), url, strlen(url), out);
    is_str(out, "from-header.jpg", "pick: Content-Disposition first");

    cd = "attachment; filename=\"../../evil.sh\"";
    mm_name_pick(cd, strlen(cd), url, strlen(url), out);
    is_str(out, "evil.sh", "pick: header name sanitised");

    cd = "attachment; filename=\"..\"";
    mm_name_pick(cd, strlen(cd), url, strlen(url), out);
    is_str(out, "from-url.jpg", "pick: unusable header name -> URL");

    cd = "attachment; filename=file";
    mm_name_pick(cd, strlen(cd), url, strlen(url), out);
    is_str(out, "file", "pick: a header name \"file\" is a name");

    cd = "inline";
    mm_name_pick(cd, strlen(cd), url, strlen(url), out);
    is_str(out, "from-url.jpg", "pick: header without name -> URL");

    mm_name_pick(NULL, 0, url, strlen(url), out);
    is_str(out, "from-url.jpg", "pick: no header -> URL");

    url = "https://h/a/%2e%2e";
    mm_name_pick(NULL, 0, url, strlen(url), out);
    is_str(out, "file", "pick: encoded .. -> file");

    url = "https://h/";
    mm_name_pick(NULL, 0, url, strlen(url), out);
    is_str(out, "file", "pick: root URL -> file");

    mm_name_pick(NULL, 0, NULL, 0, out);
    is_str(out, "file", "pick: nothing -> file");

    url = "https://h/x%00y%0A.txt";
    mm_name_pick(NULL, 0, url, strlen(url), out);
    is_str(out, "x_y_.txt", "pick: encoded controls replaced");
}


static const char *
add(mm_names_t *s, const char *name)
{
    size_t         len;
    static char    buf[MM_NAME_SIZE];

    snprintf(buf, sizeof(buf), "%s", name);

    if (mm_names_add(s, buf, &len) != MM_OK || len != strlen(buf)) {
        return "(error)";
    }

    return buf;
}


static void
test_dedup(void)
{
    int          i, all;
    size_t       len, n;
    char         name[MM_NAME_SIZE], want[MM_NAME_SIZE];
    mm_names_t  *s;

    is_int(mm_names_new(&s), MM_OK, "names_new");

    is_str(add(s, "a.png"), "a.png", "dedup: first kept");
    is_str(add(s, "a.png"), "a (1).png", "dedup: second gets (1)");
    is_str(add(s, "a.png"), "a (2).png", "dedup: third gets (2)");
    is_str(add(s, "A.png"), "A.png", "dedup: case-sensitive");
    is_str(add(s, "a (1).png"), "a (1) (1).png", "dedup: numbered name");

    is_str(add(s, "archive.tar.gz"), "archive.tar.gz", "dedup: tar.gz");
    is_str(add(s, "archive.tar.gz"), "archive (1).tar.gz",
           "dedup: .tar.gz kept together");
    is_str(add(s, "x.TAR.XZ"), "x.TAR.XZ", "dedup: TAR.XZ");
    is_str(add(s, "x.TAR.XZ"), "x (1).TAR.XZ", "dedup: case-blind suffixes");
    is_str(add(s, "v1.0.gz"), "v1.0.gz", "dedup: .gz alone");
    is_str(add(s, "v1.0.gz"), "v1.0 (1).gz", "dedup: only .tar joins");
    is_str(add(s, "v1.0.tar"), "v1.0.tar", "dedup: .tar alone");
    is_str(add(s, "v1.0.tar"), "v1.0 (1).tar", "dedup: before last ext");
    is_str(add(s, "README"), "README", "dedup: no extension");
    is_str(add(s, "README"), "README (1)", "dedup: appended");
    is_str(add(s, ".bashrc"), ".bashrc", "dedup: dotfile");
    is_str(add(s, ".bashrc"), ".bashrc (1)", "dedup: leading dot no ext");

    /* an existing (1) is skipped */
    is_int(mm_names_reserve(s, "b (1).png", 9), MM_OK, "reserve");
    ok(mm_names_has(s, "b (1).png", 9), "has reserved");
    ok(!mm_names_has(s, "b (1)", 5), "has: not a prefix match");
    is_str(add(s, "b.png"), "b.png", "dedup: b.png");
    is_str(add(s, "b.png"), "b (2).png", "dedup: reserved (1) skipped");

    /* a 255-byte name stays within 255 with its suffix and extension */
    for (i = 0; i < 83; i++) {
        memcpy(name + 3 * i, "\xe2\x82\xac", 3);       /* 249 bytes */
    }

    memcpy(name + 249, ".png", 5);                      /* 253 bytes */
    is_int(mm_names_add(s, name, &len), MM_OK, "dedup: long name");
    is_int(len, 253, "dedup: long name kept");
    is_int(mm_names_add(s, name, &len), MM_OK, "dedup: long name again");
    ok(len <= MM_NAME_MAX && valid_utf8(name, len)
       && strcmp(name + len - 8, " (1).png") == 0,
       "dedup: long name cut on a boundary before \" (1).png\" (%zu)", len);

    /* many duplicates */
    all = 1;

    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "file");

        if (mm_names_add(s, name, &len) != MM_OK) {
            all = 0;
            break;
        }

        if (i == 0) {
            snprintf(want, sizeof(want), "file");

        } else {
            snprintf(want, sizeof(want), "file (%d)", i);
        }

        if (strcmp(name, want) != 0) {
            all = 0;
            diag("got '%s', want '%s'", name, want);
            break;
        }
    }

    ok(all, "dedup: 1000 x file -> file .. file (999)");

    n = 0;

    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "u%d.bin", i);
        n += mm_names_add(s, name, &len) == MM_OK && len == strlen(name);
    }

    is_int(n, 1000, "dedup: 1000 distinct names through table growth");
    ok(mm_names_has(s, "u0.bin", 6) && mm_names_has(s, "u999.bin", 8),
       "dedup: names found after growth");

    mm_names_destroy(&s);
    ok(s == NULL, "names_destroy NULLs the pointer");
    mm_names_destroy(&s);
}


int
main(void)
{
    test_sanitize();
    test_long();
    test_random();
    test_disposition();
    test_url();
    test_pick();
    test_dedup();

    return done_testing();
}
