/*
 * CURVE key files: see curvekey.h.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <ctype.h>

#include "curvekey.h"


static int
mm_curvekey_z85_valid(const char *s, size_t len)
{
    static const char  z85[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    size_t             i;

    if (len != MM_CURVE_KEY_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || strchr(z85, s[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}


mm_status_t
mm_curvekey_load(const char *path, char *public_key, char *secret_key,
    char *err, size_t err_size)
{
    FILE    *f;
    char     line[256], *p, *word, *val;
    size_t   len;
    int      have_pub = 0, have_sec = 0, lineno = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return MM_EIO;
    }

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;

        len = strlen(line);
        if (len == sizeof(line) - 1 && line[len - 1] != '\n' && !feof(f)) {
            /* no key line is this long; the rest of a comment is skipped */
            p = line + strspn(line, " \t");
            if (*p != '#') {
                goto bad;
            }

            while (fgets(line, sizeof(line), f) != NULL
                   && strchr(line, '\n') == NULL)
            { /* void */ }

            continue;
        }

        p = line;
        while (isspace((unsigned char) *p)) {
            p++;
        }

        len = strlen(p);
        while (len > 0 && isspace((unsigned char) p[len - 1])) {
            p[--len] = '\0';
        }

        if (len == 0 || *p == '#') {
            continue;
        }

        word = p;
        val = p;
        while (*val && !isspace((unsigned char) *val)) {
            val++;
        }

        if (*val == '\0') {
            /* a bare key: a .pub file */
            if (!mm_curvekey_z85_valid(word, len) || have_pub) {
                goto bad;
            }
            memcpy(public_key, word, MM_CURVE_KEY_LEN + 1);
            have_pub = 1;
            continue;
        }

        *val++ = '\0';
        while (isspace((unsigned char) *val)) {
            val++;
        }

        if (!mm_curvekey_z85_valid(val, strlen(val))) {
            goto bad;
        }

        if (strcmp(word, "public") == 0 && !have_pub) {
            memcpy(public_key, val, MM_CURVE_KEY_LEN + 1);
            have_pub = 1;

        } else if (strcmp(word, "secret") == 0 && !have_sec) {
            if (secret_key != NULL) {
                memcpy(secret_key, val, MM_CURVE_KEY_LEN + 1);
            }
            have_sec = 1;

        } else {
            goto bad;
        }
    }

    if (ferror(f)) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        fclose(f);
        return MM_EIO;
    }

    fclose(f);

    if (!have_pub || (secret_key != NULL && !have_sec)) {
        snprintf(err, err_size, "%s: missing %s key", path,
                 have_pub ? "secret" : "public");
        return MM_EBADDATA;
    }

    return MM_OK;

bad:

    fclose(f);
    snprintf(err, err_size, "%s:%d: expected \"public|secret <40 Z85 chars>\"",
             path, lineno);
    return MM_EBADDATA;
}
