/*
 * URL checks: what mm_url_parse() accepts and rejects, the fields it fills,
 * mm_addr_is_private() on IPv4/IPv6 edges and mm_url_check_host() on
 * loopback names and numeric forms.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "url.h"
#include "tap.h"


static mm_status_t
parse(const char *url, mm_url_t *u)
{
    char  err[256];

    err[0] = '\0';

    return mm_url_parse(url, strlen(url), u, err, sizeof(err));
}


static void
accepts(const char *url, const char *host, unsigned port, int https,
    const char *path)
{
    mm_url_t     u;
    mm_status_t  st;

    st = parse(url, &u);

    if (!is_int(st, MM_OK, "accepts %s", url)) {
        return;
    }

    is_str(u.host, host, "  host of %s", url);
    is_int(u.port, port, "  port of %s", url);
    is_int(u.https, https, "  scheme of %s", url);
    is_str(u.path, path, "  path of %s", url);
}


static void
rejects(const char *url, const char *why)
{
    mm_url_t  u;
    char      err[256];

    err[0] = '\0';

    is_int(mm_url_parse(url, strlen(url), &u, err, sizeof(err)),
           MM_EBADDATA, "rejects %s (%s)", url, why);
    ok(err[0] != '\0', "  with a reason: %s", err);
}


static int
private4(const char *addr)
{
    struct sockaddr_in  sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;

    if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
        diag("bad test address %s", addr);
        return -1;
    }

    return mm_addr_is_private((struct sockaddr *) &sin);
}


static int
private6(const char *addr)
{
    struct sockaddr_in6  sin6;

    memset(&sin6, 0, sizeof(sin6));
    sin6.sin6_family = AF_INET6;

    if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) != 1) {
        diag("bad test address %s", addr);
        return -1;
    }

    return mm_addr_is_private((struct sockaddr *) &sin6);
}


static mm_status_t
check_host(const char *host, int allow)
{
    mm_url_t  u;
    char      err[256];

    memset(&u, 0, sizeof(u));
    snprintf(u.host, sizeof(u.host), "%s", host);

    return mm_url_check_host(&u, allow, err, sizeof(err));
}


static void
test_parse_accepts(void)
{
    accepts("http://example.com/a.mp3", "example.com", 80, 0, "/a.mp3");
    accepts("https://example.com/a.mp3", "example.com", 443, 1, "/a.mp3");
    accepts("HTTP://Example.COM/x", "Example.COM", 80, 0, "/x");
    accepts("HtTpS://h/", "h", 443, 1, "/");
    accepts("http://example.com", "example.com", 80, 0, "");
    accepts("http://example.com:8080/a?b=c#d", "example.com", 8080, 0,
            "/a?b=c#d");
    accepts("http://example.com?q=1", "example.com", 80, 0, "?q=1");
    accepts("http://example.com#frag", "example.com", 80, 0, "#frag");
    accepts("http://h:1/", "h", 1, 0, "/");
    accepts("http://h:65535/", "h", 65535, 0, "/");
    accepts("http://h:00080/", "h", 80, 0, "/");
    accepts("http://127.0.0.1:8080/f.mp3", "127.0.0.1", 8080, 0, "/f.mp3");
    accepts("http://[::1]/f.mp3", "::1", 80, 0, "/f.mp3");
    accepts("http://[::1]:8443/f", "::1", 8443, 0, "/f");
    accepts("https://[2606:4700::1111]", "2606:4700::1111", 443, 1, "");
    accepts("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1", 80, 0, "/");
    accepts("http://my_host-1.example/", "my_host-1.example", 80, 0, "/");
    accepts("http://h/%20?a=b@c", "h", 80, 0, "/%20?a=b@c");
}


static void
test_parse_rejects(void)
{
    char  *big;
    size_t n;

    rejects("", "empty");
    rejects("ftp://example.com/a.mp3", "ftp");
    rejects("file:///etc/passwd", "file");
    rejects("gopher://h/", "gopher");
    rejects("javascript:alert(1)", "javascript");
    rejects("//example.com/a", "scheme-relative");
    rejects("example.com/a", "no scheme");
    rejects("http:/example.com/", "one slash");
    rejects("http://", "scheme only");
    rejects("https://", "scheme only");
    rejects("http:///a.mp3", "empty host");
    rejects("http://:80/", "empty host with port");
    rejects("http://user:pass@example.com/", "userinfo");
    rejects("http://user@example.com/", "user only");
    rejects("http://@example.com/", "empty userinfo");
    rejects("http://example.com@127.0.0.1/", "host confusion");
    rejects("http://exa mple.com/", "space in host");
    rejects("http://example.com/a b", "space in path");
    rejects(" http://example.com/", "leading space");
    rejects("http://example.com/\t", "tab");
    rejects("http://example.com/\r\nX-Injected: 1", "CRLF");
    rejects("http://example.com/\x7f", "DEL");
    rejects("http://example.com/\x01", "control");
    rejects("http://h:0/", "port 0");
    rejects("http://h:65536/", "port 65536");
    rejects("http://h:99999/", "port 99999");
    rejects("http://h:1000000/", "port too long");
    rejects("http://h:abc/", "port abc");
    rejects("http://h:8o/", "port with a letter");
    rejects("http://h:-1/", "negative port");
    rejects("http://h:/", "empty port");
    rejects("http://h:+80/", "port with a sign");
    rejects("http://[::1/", "unclosed IPv6 literal");
    rejects("http://[]/", "empty IPv6 literal");
    rejects("http://[::1]x/", "junk after IPv6 literal");
    rejects("http://[::1]:/", "IPv6 literal with empty port");
    rejects("http://[example.com]/", "name in brackets");
    rejects("http://[fe80::1%25eth0]/", "zone id");
    rejects("http://::1/", "unbracketed IPv6");
    rejects("http://ex%61mple.com/", "percent in host");
    rejects("http://exa\\mple.com/", "backslash in host");
    rejects("http://h\xc3\xa9.com/", "non-ASCII host");

    /* a host over 255 bytes */
    big = malloc(MM_URL_MAX + 64);
    if (big == NULL) {
        return;
    }

    n = (size_t) snprintf(big, MM_URL_MAX + 64, "http://");
    memset(big + n, 'a', 300);
    strcpy(big + n + 300, "/x");
    rejects(big, "host over 255 bytes");

    /* exactly MM_URL_MAX is fine, one more is not */
    n = (size_t) snprintf(big, MM_URL_MAX + 64, "http://h/");
    memset(big + n, 'a', MM_URL_MAX - n);
    big[MM_URL_MAX] = '\0';
    accepts(big, "h", 80, 0, big + 8);

    big[MM_URL_MAX] = 'a';
    big[MM_URL_MAX + 1] = '\0';
    rejects(big, "over MM_URL_MAX");

    free(big);
}


static void
test_parse_len(void)
{
    mm_url_t     u;
    char         err[256];
    const char  *s = "http://example.com/a.mp3 trailing";

    /* len, not the NUL, bounds the URL */
    is_int(mm_url_parse(s, 24, &u, err, sizeof(err)), MM_OK,
           "parses the first len bytes only");
    ok(u.path == s + 18, "path points into the input");

    is_int(mm_url_parse(s, 18, &u, err, sizeof(err)), MM_OK,
           "URL without path, not NUL-terminated");
    is_str(u.path, "", "  path is \"\", not the bytes after len");

    is_int(mm_url_parse("http://h/\0x", 11, &u, err, sizeof(err)),
           MM_EBADDATA, "an embedded NUL is rejected");

    is_int(mm_url_parse("http://h/", 0, &u, err, sizeof(err)), MM_EBADDATA,
           "length 0 is rejected");
}


static void
test_private4(void)
{
    static const struct {
        const char  *addr;
        int          private;
    } t[] = {
        { "0.0.0.0",          1 },
        { "0.255.255.255",    1 },
        { "1.0.0.0",          0 },
        { "10.0.0.1",         1 },
        { "10.255.255.255",   1 },
        { "9.255.255.255",    0 },
        { "11.0.0.0",         0 },
        { "127.0.0.1",        1 },
        { "127.255.255.254",  1 },
        { "128.0.0.1",        0 },
        { "169.254.169.254",  1 },
        { "169.254.0.0",      1 },
        { "169.253.255.255",  0 },
        { "169.255.0.0",      0 },
        { "172.15.255.255",   0 },
        { "172.16.0.0",       1 },
        { "172.20.1.2",       1 },
        { "172.31.255.255",   1 },
        { "172.32.0.0",       0 },
        { "192.168.0.1",      1 },
        { "192.168.255.255",  1 },
        { "192.167.255.255",  0 },
        { "192.169.0.0",      0 },
        { "100.63.255.255",   0 },
        { "100.64.0.0",       1 },
        { "100.127.255.255",  1 },
        { "100.128.0.0",      0 },
        { "192.0.0.8",        1 },
        { "198.18.0.1",       1 },
        { "198.19.255.255",   1 },
        { "198.20.0.0",       0 },
        { "223.255.255.255",  0 },
        { "224.0.0.1",        1 },
        { "239.255.255.250",  1 },
        { "240.0.0.1",        1 },
        { "255.255.255.255",  1 },
        { "8.8.8.8",          0 },
        { "1.1.1.1",          0 },
        { "93.184.216.34",    0 },
    };

    size_t  i;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        is_int(private4(t[i].addr), t[i].private, "%s is %s", t[i].addr,
               t[i].private ? "private" : "public");
    }
}


static void
test_private6(void)
{
    static const struct {
        const char  *addr;
        int          private;
    } t[] = {
        { "::",                   1 },
        { "::1",                  1 },
        { "fe80::1",              1 },
        { "febf:ffff::1",         1 },
        { "fc00::1",              1 },
        { "fd12:3456::1",         1 },
        { "ff02::1",              1 },
        { "ff05::2",              1 },
        { "2001:db8::1",          1 },
        { "64:ff9b::7f00:1",      1 },
        { "::ffff:127.0.0.1",     1 },
        { "::ffff:10.1.2.3",      1 },
        { "::ffff:169.254.169.254", 1 },
        { "::127.0.0.1",          1 },
        { "::ffff:8.8.8.8",       0 },
        { "2606:4700::",          0 },
        { "2606:4700::1111",      0 },
        { "2a00:1450:4001::200e", 0 },
        { "fb00::1",              0 },
    };

    size_t           i;
    struct sockaddr  other;

    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        is_int(private6(t[i].addr), t[i].private, "%s is %s", t[i].addr,
               t[i].private ? "private" : "public");
    }

    memset(&other, 0, sizeof(other));
    other.sa_family = AF_UNIX;
    is_int(mm_addr_is_private((struct sockaddr *) &other), 1,
           "an unknown address family counts as private");
}


static void
test_check_host(void)
{
    mm_url_t     u;
    char         err[256];
    mm_status_t  st;

    is_int(check_host("127.0.0.1", 0), MM_EFORGED,
           "127.0.0.1 is refused");
    is_int(check_host("127.0.0.1", 1), MM_OK,
           "127.0.0.1 is accepted when private addresses are allowed");
    is_int(check_host("::1", 0), MM_EFORGED, "::1 is refused");
    is_int(check_host("::ffff:127.0.0.1", 0), MM_EFORGED,
           "::ffff:127.0.0.1 is refused");
    is_int(check_host("0.0.0.0", 0), MM_EFORGED, "0.0.0.0 is refused");
    is_int(check_host("169.254.169.254", 0), MM_EFORGED,
           "the metadata address is refused");

    /* numeric forms inet_aton() accepts must not slip through */
    is_int(check_host("2130706433", 0), MM_EFORGED,
           "127.0.0.1 as a decimal number is refused");
    is_int(check_host("0x7f000001", 0), MM_EFORGED,
           "127.0.0.1 in hex is refused");
    is_int(check_host("127.1", 0), MM_EFORGED,
           "127.1 is refused");

    is_int(check_host("localhost", 0), MM_EFORGED, "localhost is refused");
    /* "localhost." may not resolve here at all: either way it is refused */
    ok(check_host("localhost.", 0) != MM_OK, "localhost. is refused");
    is_int(check_host("localhost", 1), MM_OK,
           "localhost is accepted when private addresses are allowed");

    is_int(check_host("8.8.8.8", 0), MM_OK, "8.8.8.8 is accepted");
    is_int(check_host("2606:4700::1111", 0), MM_OK,
           "2606:4700::1111 is accepted");

    is_int(check_host("no-such-host.invalid", 0), MM_ENOTFOUND,
           "a name that does not resolve is MM_ENOTFOUND");

    /* through the parser, as the API does */
    st = parse("http://[::1]:9/x", &u);
    is_int(st, MM_OK, "parse http://[::1]:9/x");
    is_int(mm_url_check_host(&u, 0, err, sizeof(err)), MM_EFORGED,
           "  then the host check refuses it");
    ok(strstr(err, "::1") != NULL, "  naming the host: %s", err);
}


int
main(void)
{
    test_parse_accepts();
    test_parse_rejects();
    test_parse_len();
    test_private4();
    test_private6();
    test_check_host();

    return done_testing();
}
