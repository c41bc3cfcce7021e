/*
 * URL checks for user-supplied origins (episode sources, archive inputs).
 *
 * mm_url_parse() accepts only absolute http/https URLs without userinfo,
 * whitespace or control characters, with a host and an optional port.
 * mm_addr_is_private() says whether an address is one a server must not
 * be talked into fetching from (loopback, private, link-local, CGNAT,
 * multicast, unspecified, metadata, IPv4-mapped forms of those, ULA...).
 */

#ifndef MM_URL_H
#define MM_URL_H

#include <sys/socket.h>
#include "mm.h"


#define MM_URL_MAX  2048


typedef struct {
    int          https;
    char         host[256];     /* without brackets for IPv6 literals */
    unsigned     port;          /* defaulted from the scheme */
    const char  *path;          /* points into the input, "" if none */
} mm_url_t;


/* on error writes a short reason to err */
mm_status_t mm_url_parse(const char *url, size_t len, mm_url_t *u,
    char *err, size_t err_size);

int mm_addr_is_private(const struct sockaddr *sa);

/*
 * Resolves u->host and fails with MM_EFORGED if any address is private
 * (unless allow_private), MM_ENOTFOUND if it does not resolve.
 */
mm_status_t mm_url_check_host(const mm_url_t *u, int allow_private,
    char *err, size_t err_size);


#endif /* MM_URL_H */
