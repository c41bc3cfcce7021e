/*
 * ClearKey keys and license JSON: see clearkey.h.
 */

#include <stdio.h>
#include <string.h>

#include "clearkey.h"
#include "json.h"
#include "token.h"


static int
mm_clearkey_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


mm_status_t
mm_clearkey_parse(const char *s, size_t len,
    unsigned char out[MM_CLEARKEY_LEN])
{
    int     hi, lo;
    size_t  i;

    if (len == MM_CLEARKEY_HEX_LEN) {
        for (i = 0; i < MM_CLEARKEY_LEN; i++) {
            hi = mm_clearkey_hexval((unsigned char) s[2 * i]);
            lo = mm_clearkey_hexval((unsigned char) s[2 * i + 1]);

            if (hi < 0 || lo < 0) {
                return MM_EBADDATA;
            }

            out[i] = (unsigned char) (hi << 4 | lo);
        }

        return MM_OK;
    }

    if (len == MM_CLEARKEY_B64_LEN
        && mm_b64url_decode(s, len, out, MM_CLEARKEY_LEN) == MM_CLEARKEY_LEN)
    {
        return MM_OK;
    }

    return MM_EBADDATA;
}


void
mm_clearkey_hex(const unsigned char k[MM_CLEARKEY_LEN],
    char out[MM_CLEARKEY_HEX_LEN + 1])
{
    size_t  i;

    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < MM_CLEARKEY_LEN; i++) {
        out[2 * i] = hex[k[i] >> 4];
        out[2 * i + 1] = hex[k[i] & 0xf];
    }

    out[MM_CLEARKEY_HEX_LEN] = '\0';
}


void
mm_clearkey_b64url(const unsigned char k[MM_CLEARKEY_LEN],
    char out[MM_CLEARKEY_B64_LEN + 1])
{
    (void) mm_b64url_encode(k, MM_CLEARKEY_LEN, out,
                            MM_CLEARKEY_B64_LEN + 1);
}


mm_status_t
mm_clearkey_request(const char *body, size_t len,
    const unsigned char kid[MM_CLEARKEY_LEN], int *wanted, char *type,
    size_t type_size, char *err, size_t err_size)
{
    size_t            i, n;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *kids, *v, *t;
    unsigned char     k[MM_CLEARKEY_LEN + 2];

    *wanted = 0;
    snprintf(type, type_size, "temporary");

    st = mm_json_parse(body, len, &doc, &root, err, err_size);
    if (st != MM_OK) {
        return MM_EBADDATA;
    }

    st = MM_EBADDATA;

    if (root->type != MM_JSON_OBJECT) {
        snprintf(err, err_size, "a license request is a JSON object");
        goto done;
    }

    kids = mm_json_get(root, "kids");

    if (kids == NULL || kids->type != MM_JSON_ARRAY || kids->u.arr.n == 0
        || kids->u.arr.n > MM_CLEARKEY_MAX_KIDS)
    {
        snprintf(err, err_size, "\"kids\" must be an array of 1 to %d key "
                 "ids", MM_CLEARKEY_MAX_KIDS);
        goto done;
    }

    for (i = 0; i < kids->u.arr.n; i++) {
        v = &kids->u.arr.items[i];

        if (v->type != MM_JSON_STRING) {
            snprintf(err, err_size, "\"kids\"[%zu] is not a string", i);
            goto done;
        }

        /* tolerate base64 padding, which the spec leaves out */
        n = v->u.str.len;
        while (n > MM_CLEARKEY_B64_LEN && v->u.str.s[n - 1] == '=') {
            n--;
        }

        if (n != MM_CLEARKEY_B64_LEN
            || mm_b64url_decode(v->u.str.s, n, k, sizeof(k))
               != MM_CLEARKEY_LEN)
        {
            snprintf(err, err_size, "\"kids\"[%zu] is not a 16-byte key id "
                     "in base64url", i);
            goto done;
        }

        if (memcmp(k, kid, MM_CLEARKEY_LEN) == 0) {
            *wanted = 1;
        }
    }

    t = mm_json_get(root, "type");

    if (t != NULL && t->type != MM_JSON_NULL) {
        if (t->type != MM_JSON_STRING
            || (strcmp(t->u.str.s, "temporary") != 0
                && strcmp(t->u.str.s, "persistent-license") != 0))
        {
            snprintf(err, err_size, "\"type\" must be \"temporary\" or "
                     "\"persistent-license\"");
            goto done;
        }

        snprintf(type, type_size, "%s", t->u.str.s);
    }

    st = MM_OK;

done:

    mm_json_doc_free(&doc);

    return st;
}


void
mm_clearkey_response(mm_buf_t *b, const unsigned char kid[MM_CLEARKEY_LEN],
    const unsigned char key[MM_CLEARKEY_LEN], const char *type)
{
    char  k[MM_CLEARKEY_B64_LEN + 1], id[MM_CLEARKEY_B64_LEN + 1];

    mm_clearkey_b64url(kid, id);
    mm_clearkey_b64url(key, k);

    mm_buf_printf(b, "{\"keys\":[{\"kty\":\"oct\",\"kid\":\"%s\",\"k\":\"%s\"}]"
                  ",\"type\":", id, k);
    mm_json_put_string(b, type, strlen(type));
    mm_buf_puts(b, "}\n");
}
