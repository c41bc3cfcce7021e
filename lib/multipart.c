/*
 * Streaming multipart/form-data parser: see multipart.h.
 *
 * The delimiter is CR LF "--" boundary. A boundary holds no CR, so within
 * the delimiter CR occurs only first: after a partial match fails, the
 * matched bytes are data and scanning resumes at the failing byte, with no
 * back-tracking. A partial match at the end of a chunk is held back (it is
 * a prefix of the delimiter, so the parser can give those bytes back from
 * its own copy if the next chunk shows they were data).
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"


enum {
    MM_MP_PREAMBLE = 0,     /* before the first delimiter */
    MM_MP_AFTER_DELIM,      /* right after a delimiter */
    MM_MP_DELIM_DASH,       /* "-": the closing delimiter's second "-"? */
    MM_MP_DELIM_LWSP,       /* transport padding before CR LF */
    MM_MP_DELIM_CR,         /* CR: LF next */
    MM_MP_HEADERS,          /* a part's header block */
    MM_MP_BODY,             /* a part's bytes */
    MM_MP_EPILOGUE,         /* after the closing delimiter: ignored */
    MM_MP_ERROR
};


static mm_status_t mm_multipart_fail(mm_multipart_t *mp, mm_status_t st,
    const char *why);
static mm_status_t mm_multipart_headers_done(mm_multipart_t *mp);
static size_t mm_multipart_scan(mm_multipart_t *mp, const char *p,
    size_t n);


static int
mm_multipart_bchar(unsigned char c)
{
    /* RFC 2046 bchars: DIGIT / ALPHA / "'()+_,-./:=?" / space */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || strchr("'()+_,-./:=? ", c) != NULL;
}


/*
 * The parameter want (";" name "=" value, the name case-insensitive) of a
 * header value from p to end: its value, a token or a quoted string
 * (quotes and backslash escapes removed), into out, NUL-terminated and cut
 * to out_size - 1 bytes; *len is its whole length (>= out_size: cut).
 * MM_OK, MM_ENOTFOUND, or MM_EBADDATA for an unterminated quoted string.
 */
static mm_status_t
mm_multipart_find_param(const char *p, const char *end, const char *want,
    char *out, size_t out_size, size_t *len)
{
    int          match;
    size_t       n, wlen;
    const char  *name;

    wlen = strlen(want);

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ';')) {
            p++;
        }

        name = p;
        while (p < end && *p != '=' && *p != ';' && *p != ' ') {
            p++;
        }

        match = ((size_t) (p - name) == wlen
                 && strncasecmp(name, want, wlen) == 0);

        while (p < end && *p == ' ') {
            p++;
        }

        if (p == end || *p != '=') {
            continue;
        }

        p++;

        while (p < end && *p == ' ') {
            p++;
        }

        n = 0;

        if (p < end && *p == '"') {
            for (p++; p < end && *p != '"'; p++, n++) {
                if (*p == '\\' && p + 1 < end) {
                    p++;
                }

                if (match && n + 1 < out_size) {
                    out[n] = *p;
                }
            }

            if (p == end) {
                return MM_EBADDATA;
            }

            p++;

        } else {
            for ( /* void */ ; p < end && *p != ';' && *p != ' '
                               && *p != '\t'; p++, n++)
            {
                if (match && n + 1 < out_size) {
                    out[n] = *p;
                }
            }
        }

        if (match) {
            out[n < out_size ? n : out_size - 1] = '\0';
            *len = n;
            return MM_OK;
        }
    }

    return MM_ENOTFOUND;
}


mm_status_t
mm_multipart_boundary(const char *ct, size_t len, char *out, size_t out_size,
    size_t *out_len)
{
    size_t       i, n;
    const char  *p, *end;

    static const char  type[] = "multipart/form-data";

    p = ct;
    end = ct + len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if ((size_t) (end - p) < sizeof(type) - 1
        || strncasecmp(p, type, sizeof(type) - 1) != 0)
    {
        return MM_ENOTFOUND;
    }

    p += sizeof(type) - 1;

    if (p < end && *p != ';' && *p != ' ' && *p != '\t') {
        return MM_ENOTFOUND;                /* multipart/form-dataX */
    }

    /* 1..70 bchars, not ending in a space */

    if (mm_multipart_find_param(p, end, "boundary", out, out_size, &n)
        != MM_OK
        || n == 0 || n >= out_size || n > MM_MULTIPART_BOUNDARY_MAX
        || out[n - 1] == ' ')
    {
        return MM_EBADDATA;
    }

    for (i = 0; i < n; i++) {
        if (!mm_multipart_bchar((unsigned char) out[i])) {
            return MM_EBADDATA;
        }
    }

    *out_len = n;

    return MM_OK;
}


void
mm_multipart_init(mm_multipart_t *mp, const char *boundary, size_t len,
    mm_multipart_part_pt on_part, mm_multipart_data_pt on_data, void *ctx)
{
    size_t  i;

    memset(mp, 0, sizeof(*mp));

    mp->on_part = on_part;
    mp->on_data = on_data;
    mp->ctx = ctx;
    mp->error = MM_OK;

    if (len == 0 || len > MM_MULTIPART_BOUNDARY_MAX) {
        (void) mm_multipart_fail(mp, MM_EBADDATA, "bad boundary length");
        return;
    }

    for (i = 0; i < len; i++) {
        if (!mm_multipart_bchar((unsigned char) boundary[i])) {
            (void) mm_multipart_fail(mp, MM_EBADDATA,
                                     "bad character in the boundary");
            return;
        }
    }

    memcpy(mp->delim, "\r\n--", 4);
    memcpy(mp->delim + 4, boundary, len);
    mp->delim_len = 4 + len;

    /* as if the body began with CR LF: the first delimiter needs none */
    mp->matched = 2;
    mp->state = MM_MP_PREAMBLE;
}


static mm_status_t
mm_multipart_fail(mm_multipart_t *mp, mm_status_t st, const char *why)
{
    if (mp->state != MM_MP_ERROR) {
        mp->state = MM_MP_ERROR;
        mp->error = st;
        snprintf(mp->err, sizeof(mp->err), "%s", why);
    }

    return mp->error;
}


static void
mm_multipart_emit(mm_multipart_t *mp, const char *p, size_t n)
{
    if (n && mp->capture && mp->state == MM_MP_BODY) {
        mp->on_data(mp->ctx, p, n);
    }
}


/*
 * Scans p[0..n) of a part (or the preamble) for the delimiter, emitting
 * data. Returns the bytes consumed: all of them, or up to the end of a
 * delimiter (then the state is MM_MP_AFTER_DELIM).
 */
static size_t
mm_multipart_scan(mm_multipart_t *mp, const char *p, size_t n)
{
    size_t       i, j, k, start;
    const char  *q;

    i = 0;

    if (mp->matched) {

        /* a delimiter prefix was held back: go on matching it */

        while (i < n && mp->matched < mp->delim_len
               && p[i] == mp->delim[mp->matched])
        {
            i++;
            mp->matched++;
        }

        if (mp->matched == mp->delim_len) {
            mp->matched = 0;
            mp->state = MM_MP_AFTER_DELIM;
            return i;
        }

        if (i == n) {
            return n;
        }

        /* not a delimiter: what was held back is data after all */

        mm_multipart_emit(mp, mp->delim, mp->matched);
        mp->matched = 0;
    }

    start = i;

    while (i < n) {
        q = memchr(p + i, '\r', n - i);

        if (q == NULL) {
            break;
        }

        j = q - p;

        for (k = 0; j + k < n && k < mp->delim_len
                    && p[j + k] == mp->delim[k]; k++)
        {
            /* void */
        }

        if (k == mp->delim_len) {
            mm_multipart_emit(mp, p + start, j - start);
            mp->state = MM_MP_AFTER_DELIM;
            return j + k;
        }

        if (j + k == n) {
            /* a delimiter may begin here: hold it back */
            mm_multipart_emit(mp, p + start, j - start);
            mp->matched = k;
            return n;
        }

        i = j + 1;
    }

    mm_multipart_emit(mp, p + start, n - start);

    return n;
}


mm_status_t
mm_multipart_feed(mm_multipart_t *mp, const char *p, size_t n)
{
    size_t         i;
    unsigned char  c;

    i = 0;

    while (i < n) {

        switch (mp->state) {

        case MM_MP_PREAMBLE:
        case MM_MP_BODY:
            i += mm_multipart_scan(mp, p + i, n - i);
            if (mp->state == MM_MP_AFTER_DELIM) {
                mp->started = 1;
                if (mp->capture) {
                    mp->capture = 0;
                }
            }
            continue;

        case MM_MP_EPILOGUE:
            return MM_OK;

        case MM_MP_ERROR:
            return mp->error;

        default:
            break;
        }

        c = (unsigned char) p[i++];

        switch (mp->state) {

        case MM_MP_AFTER_DELIM:
            if (c == '-') {
                mp->state = MM_MP_DELIM_DASH;

            } else if (c == '\r') {
                mp->state = MM_MP_DELIM_CR;

            } else if (c == ' ' || c == '\t') {
                mp->state = MM_MP_DELIM_LWSP;

            } else {
                return mm_multipart_fail(mp, MM_EBADDATA,
                           "a boundary is followed by neither CRLF nor --");
            }
            break;

        case MM_MP_DELIM_DASH:
            if (c != '-') {
                return mm_multipart_fail(mp, MM_EBADDATA,
                           "a boundary is followed by neither CRLF nor --");
            }
            mp->state = MM_MP_EPILOGUE;
            break;

        case MM_MP_DELIM_LWSP:
            if (c == '\r') {
                mp->state = MM_MP_DELIM_CR;

            } else if (c != ' ' && c != '\t') {
                return mm_multipart_fail(mp, MM_EBADDATA,
                           "a boundary is followed by neither CRLF nor --");
            }
            break;

        case MM_MP_DELIM_CR:
            if (c != '\n') {
                return mm_multipart_fail(mp, MM_EBADDATA,
                           "a boundary's CR is not followed by LF");
            }
            mp->state = MM_MP_HEADERS;
            mp->hdr_len = 0;
            break;

        case MM_MP_HEADERS:
            if (mp->hdr_len == sizeof(mp->hdr)) {
                return mm_multipart_fail(mp, MM_ETOOBIG,
                           "a part's headers are too long");
            }

            mp->hdr[mp->hdr_len++] = (char) c;

            if (c == '\n'
                && ((mp->hdr_len == 2 && mp->hdr[0] == '\r')
                    || (mp->hdr_len >= 4
                        && memcmp(mp->hdr + mp->hdr_len - 4, "\r\n\r\n", 4)
                           == 0)))
            {
                if (mm_multipart_headers_done(mp) != MM_OK) {
                    return mp->error;
                }
            }
            break;
        }
    }

    return mp->state == MM_MP_ERROR ? mp->error : MM_OK;
}


mm_status_t
mm_multipart_finish(mm_multipart_t *mp)
{
    if (mp->state == MM_MP_ERROR) {
        return mp->error;
    }

    if (mp->state != MM_MP_EPILOGUE) {
        return mm_multipart_fail(mp, MM_EBADDATA,
                                 mp->started
                                 ? "the body ends before the closing boundary"
                                 : "no boundary found in the body");
    }

    return MM_OK;
}


/* --- part headers --- */


/* a Content-Disposition parameter: sets *found when it is there */
static void
mm_multipart_param(const char *v, const char *end, const char *name,
    char *out, size_t out_size, unsigned *found)
{
    size_t  len;

    /* after the disposition type */
    while (v < end && *v != ';') {
        v++;
    }

    if (mm_multipart_find_param(v, end, name, out, out_size, &len) == MM_OK) {
        *found = 1;
    }
}


static mm_status_t
mm_multipart_headers_done(mm_multipart_t *mp)
{
    size_t        n;
    unsigned      found;
    const char   *line, *end, *eol, *colon, *v, *ve;

    memset(&mp->part, 0, sizeof(mp->part));
    mp->part.index = mp->parts++;

    line = mp->hdr;
    end = mp->hdr + mp->hdr_len;

    while (line < end) {
        eol = memchr(line, '\r', end - line);
        if (eol == NULL || eol + 1 >= end || eol[1] != '\n') {
            return mm_multipart_fail(mp, MM_EBADDATA,
                                     "a part header line lacks CRLF");
        }

        if (eol == line) {
            break;                          /* the blank line */
        }

        if (*line == ' ' || *line == '\t') {
            line = eol + 2;                 /* obsolete folding: ignored */
            continue;
        }

        colon = memchr(line, ':', eol - line);
        if (colon == NULL || colon == line) {
            return mm_multipart_fail(mp, MM_EBADDATA,
                                     "a part header line lacks a name");
        }

        v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) {
            v++;
        }

        ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }

        n = colon - line;

        if (n == sizeof("Content-Disposition") - 1
            && strncasecmp(line, "Content-Disposition", n) == 0)
        {
            found = 0;
            mm_multipart_param(v, ve, "name", mp->part.name,
                               sizeof(mp->part.name), &found);
            found = 0;
            mm_multipart_param(v, ve, "filename", mp->part.filename,
                               sizeof(mp->part.filename), &found);
            mp->part.has_filename = found;

        } else if (n == sizeof("Content-Type") - 1
                   && strncasecmp(line, "Content-Type", n) == 0)
        {
            n = ve - v;
            if (n >= sizeof(mp->part.content_type)) {
                n = sizeof(mp->part.content_type) - 1;
            }
            memcpy(mp->part.content_type, v, n);
            mp->part.content_type[n] = '\0';
        }

        line = eol + 2;
    }

    mp->capture = mp->on_part ? (mp->on_part(mp->ctx, &mp->part) != 0) : 0;
    mp->state = MM_MP_BODY;
    mp->matched = 0;
    mp->hdr_len = 0;

    return MM_OK;
}
