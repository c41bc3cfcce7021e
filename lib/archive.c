/*
 * Background ZIP archives: hash, download name, Content-Disposition; see
 * archive.h.
 */

#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "archive.h"
#include "token.h"


#define MM_ARCHIVE_HASH_RAW  32


mm_status_t
mm_archive_hash_new(char *out)
{
    size_t         n;
    unsigned char  raw[MM_ARCHIVE_HASH_RAW];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return MM_EAGAIN;
    }

    n = mm_b64url_encode(raw, sizeof(raw), out, MM_ARCHIVE_HASH_LEN + 1);

    OPENSSL_cleanse(raw, sizeof(raw));

    return n == MM_ARCHIVE_HASH_LEN ? MM_OK : MM_ETOOBIG;
}


int
mm_archive_hash_valid(const char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (s == NULL || len != MM_ARCHIVE_HASH_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_'))
        {
            return 0;
        }
    }

    /* 32 bytes leave 4 unused bits in the last character: must be zero */
    return strchr("AEIMQUYcgkosw048", s[len - 1]) != NULL;
}


size_t
mm_archive_name(const char *in, size_t len, char *out)
{
    size_t  n, cut;

    if (in == NULL || len == 0) {
        memcpy(out, MM_ARCHIVE_NAME_DEFAULT, sizeof(MM_ARCHIVE_NAME_DEFAULT));
        return sizeof(MM_ARCHIVE_NAME_DEFAULT) - 1;
    }

    n = mm_name_sanitize(in, len, out);

    if (n >= 4 && strcasecmp(out + n - 4, ".zip") == 0) {
        return n;
    }

    if (n + 4 > MM_NAME_MAX) {
        /* make room on a UTF-8 character boundary */
        cut = MM_NAME_MAX - 4;
        while (cut > 0 && ((unsigned char) out[cut] & 0xc0) == 0x80) {
            cut--;
        }
        n = cut;
    }

    memcpy(out + n, ".zip", 5);

    return n + 4;
}


size_t
mm_archive_disposition(const char *name, size_t len, char *out)
{
    char           *p;
    size_t          i;
    unsigned char   c;
    static const char  hex[] = "0123456789ABCDEF";

    if (len > MM_NAME_MAX) {
        len = MM_NAME_MAX;
    }

    p = out;
    memcpy(p, "attachment; filename=\"", 22);
    p += 22;

    for (i = 0; i < len; i++) {
        c = (unsigned char) name[i];

        if (c >= 0x80) {
            /* one '_' per character: skip its continuation bytes */
            *p++ = '_';
            while (i + 1 < len
                   && ((unsigned char) name[i + 1] & 0xc0) == 0x80)
            {
                i++;
            }
            continue;
        }

        *p++ = (c < 0x20 || c == 0x7f || c == '"' || c == '\\') ? '_'
                                                                : (char) c;
    }

    memcpy(p, "\"; filename*=UTF-8''", 20);
    p += 20;

    for (i = 0; i < len; i++) {
        c = (unsigned char) name[i];

        /* RFC 8187 attr-char */
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9') || strchr("!#$&+-.^_`|~", c) != NULL)
        {
            if (c != '\0') {
                *p++ = (char) c;
                continue;
            }
        }

        *p++ = '%';
        *p++ = hex[c >> 4];
        *p++ = hex[c & 0xf];
    }

    *p = '\0';

    return (size_t) (p - out);
}
