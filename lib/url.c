/*
 * URL parsing and the private-address guard: see url.h.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "url.h"


/* what is between the brackets must be an IPv6 address, not a name */
static int
mm_url_ipv6_literal(const char *s, size_t len)
{
    char             buf[INET6_ADDRSTRLEN];
    struct in6_addr  a;

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    return inet_pton(AF_INET6, buf, &a) == 1;
}


mm_status_t
mm_url_parse(const char *url, size_t len, mm_url_t *u, char *err,
    size_t err_size)
{
    size_t        i, hlen;
    const char   *p, *end, *host, *hend;
    unsigned long port;

    memset(u, 0, sizeof(mm_url_t));

    if (len == 0 || len > MM_URL_MAX) {
        snprintf(err, err_size, "URL length must be 1..%d", MM_URL_MAX);
        return MM_EBADDATA;
    }

    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) url[i];

        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, err_size, "URL contains whitespace or control "
                     "characters");
            return MM_EBADDATA;
        }
    }

    end = url + len;

    if (len > 7 && strncasecmp(url, "http://", 7) == 0) {
        p = url + 7;
        u->port = 80;

    } else if (len > 8 && strncasecmp(url, "https://", 8) == 0) {
        p = url + 8;
        u->https = 1;
        u->port = 443;

    } else {
        snprintf(err, err_size, "URL scheme must be http or https");
        return MM_EBADDATA;
    }

    /* authority ends at the first / ? or # */
    for (hend = p; hend < end && *hend != '/' && *hend != '?' && *hend != '#';
         hend++)
    {
        if (*hend == '@') {
            snprintf(err, err_size, "credentials in URLs are not allowed");
            return MM_EBADDATA;
        }
    }

    host = p;

    if (host < hend && *host == '[') {
        p = memchr(host, ']', hend - host);
        if (p == NULL) {
            snprintf(err, err_size, "bad IPv6 literal in URL");
            return MM_EBADDATA;
        }
        host++;
        hlen = p - host;
        p++;

        if (!mm_url_ipv6_literal(host, hlen)) {
            snprintf(err, err_size, "bad IPv6 literal in URL");
            return MM_EBADDATA;
        }

    } else {
        for (p = host; p < hend && *p != ':'; p++) { /* void */ }
        hlen = p - host;
    }

    if (hlen == 0 || hlen >= sizeof(u->host)) {
        snprintf(err, err_size, "URL has no valid host");
        return MM_EBADDATA;
    }

    memcpy(u->host, host, hlen);
    u->host[hlen] = '\0';

    for (i = 0; i < hlen; i++) {
        unsigned char  c = (unsigned char) u->host[i];

        if (!(c == '.' || c == '-' || c == ':' || c == '_'
              || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
              || (c >= 'A' && c <= 'Z')))
        {
            snprintf(err, err_size, "URL host has invalid characters");
            return MM_EBADDATA;
        }
    }

    if (p < hend) {
        if (*p != ':' || p + 1 == hend || hend - p > 6) {
            snprintf(err, err_size, "bad port in URL");
            return MM_EBADDATA;
        }

        port = 0;
        for (p++; p < hend; p++) {
            if (*p < '0' || *p > '9') {
                snprintf(err, err_size, "bad port in URL");
                return MM_EBADDATA;
            }
            port = port * 10 + (*p - '0');
        }

        if (port == 0 || port > 65535) {
            snprintf(err, err_size, "bad port in URL");
            return MM_EBADDATA;
        }

        u->port = (unsigned) port;
    }

    /* the input need not be NUL-terminated: no path is "", not url[len] */
    u->path = (hend < end) ? hend : "";

    return MM_OK;
}


static int
mm_addr4_is_private(uint32_t a)
{
    return (a >> 24) == 0                       /* 0.0.0.0/8 */
        || (a >> 24) == 10                      /* 10/8 */
        || (a >> 24) == 127                     /* loopback */
        || (a >> 16) == 0xa9fe                  /* 169.254/16, metadata */
        || (a >> 20) == 0xac1                   /* 172.16/12 */
        || (a >> 16) == 0xc0a8                  /* 192.168/16 */
        || (a >> 22) == (100u << 2 | 1)         /* 100.64/10 CGNAT */
        || (a >> 8) == 0xc00000                 /* 192.0.0/24 */
        || (a >> 17) == (0xc612u >> 1)          /* 198.18/15 */
        || (a >> 28) >= 0xe;                    /* multicast, reserved */
}


int
mm_addr_is_private(const struct sockaddr *sa)
{
    const unsigned char  *b;

    if (sa->sa_family == AF_INET) {
        return mm_addr4_is_private(
                   ntohl(((const struct sockaddr_in *) sa)->sin_addr.s_addr));
    }

    if (sa->sa_family != AF_INET6) {
        return 1;
    }

    b = ((const struct sockaddr_in6 *) sa)->sin6_addr.s6_addr;

    /* IPv4-mapped ::ffff:a.b.c.d and IPv4-compatible ::a.b.c.d */
    if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0", 10) == 0
        && ((b[10] == 0xff && b[11] == 0xff) || (b[10] == 0 && b[11] == 0)))
    {
        return mm_addr4_is_private((uint32_t) b[12] << 24
                                   | (uint32_t) b[13] << 16
                                   | (uint32_t) b[14] << 8 | b[15]);
    }

    return (b[0] & 0xfe) == 0xfc                 /* fc00::/7 ULA */
        || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 */
        || b[0] == 0xff                          /* multicast */
        || (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b);
}


mm_status_t
mm_url_check_host(const mm_url_t *u, int allow_private, char *err,
    size_t err_size)
{
    int               rc;
    struct addrinfo   hints, *res, *ai;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo(u->host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_size, "host \"%s\" does not resolve: %s", u->host,
                 gai_strerror(rc));
        return MM_ENOTFOUND;
    }

    if (!allow_private) {
        for (ai = res; ai; ai = ai->ai_next) {
            if (mm_addr_is_private(ai->ai_addr)) {
                freeaddrinfo(res);
                snprintf(err, err_size, "host \"%s\" resolves to a private "
                         "or reserved address", u->host);
                return MM_EFORGED;
            }
        }
    }

    freeaddrinfo(res);

    return MM_OK;
}
