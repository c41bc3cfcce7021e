/*
 * HTTP fetch policy: see fetch.h.
 */

#include <string.h>
#include <strings.h>

#include "fetch.h"


mm_fetch_class_t
mm_fetch_status_class(int status)
{
    if (status >= 200 && status <= 299) {
        return MM_FETCH_OK;
    }

    if (status == 408 || status == 425 || status == 429
        || (status >= 500 && status <= 599))
    {
        return MM_FETCH_RETRY;
    }

    return MM_FETCH_FAIL;
}


uint64_t
mm_fetch_backoff_ms(unsigned n, uint64_t base_ms, uint64_t max_ms, double r)
{
    uint64_t  d;
    unsigned  i;

    if (n == 0) {
        n = 1;
    }

    d = base_ms;

    for (i = 1; i < n && d < max_ms; i++) {
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    }

    if (d > max_ms) {
        d = max_ms;
    }

    if (r < 0.0) {
        r = 0.0;
    }

    if (r >= 1.0) {
        r = 0.999999;
    }

    return d / 2 + (uint64_t) ((double) (d - d / 2) * r);
}


static int
mm_fetch_digits(const char *p, const char *end, size_t n, int *v)
{
    size_t  i;

    if ((size_t) (end - p) < n) {
        return -1;
    }

    *v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }
        *v = *v * 10 + (p[i] - '0');
    }

    return 0;
}


static int
mm_fetch_month(const char *p, const char *end)
{
    static const char  months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";

    int  i;

    if (end - p < 3) {
        return -1;
    }

    for (i = 0; i < 12; i++) {
        if (strncasecmp(p, months + 3 * i, 3) == 0) {
            return i;
        }
    }

    return -1;
}


/* days since 1970-01-01 of a proleptic Gregorian date (month 0..11) */
static int64_t
mm_fetch_days(int64_t y, int m, int d)
{
    int64_t  era, yoe, doy, doe, mp;

    y -= (m < 2);
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    mp = (m + 10) % 12;
    doy = (153 * mp + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


static int
mm_fetch_hms(const char *p, const char *end, int *h, int *mi, int *s)
{
    if (end - p < 8 || p[2] != ':' || p[5] != ':'
        || mm_fetch_digits(p, end, 2, h) != 0
        || mm_fetch_digits(p + 3, end, 2, mi) != 0
        || mm_fetch_digits(p + 6, end, 2, s) != 0
        || *h > 23 || *mi > 59 || *s > 60)
    {
        return -1;
    }

    return 0;
}


mm_status_t
mm_fetch_http_date(const char *value, size_t len, int64_t *t)
{
    int          d, m, y, h, mi, s;
    const char  *p, *end, *comma;

    p = value;
    end = value + len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    comma = memchr(p, ',', end - p);

    if (comma != NULL && comma - p == 3) {
        /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        p = comma + 1;
        if (end - p != 25 || p[0] != ' ' || p[3] != ' ' || p[7] != ' '
            || p[12] != ' ' || p[21] != ' '
            || strncmp(p + 22, "GMT", 3) != 0
            || mm_fetch_digits(p + 1, end, 2, &d) != 0
            || (m = mm_fetch_month(p + 4, end)) < 0
            || mm_fetch_digits(p + 8, end, 4, &y) != 0
            || mm_fetch_hms(p + 13, end, &h, &mi, &s) != 0)
        {
            return MM_EBADDATA;
        }

    } else if (comma != NULL) {
        /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        p = comma + 1;
        if (end - p != 23 || p[0] != ' ' || p[3] != '-' || p[7] != '-'
            || p[10] != ' ' || p[19] != ' '
            || strncmp(p + 20, "GMT", 3) != 0
            || mm_fetch_digits(p + 1, end, 2, &d) != 0
            || (m = mm_fetch_month(p + 4, end)) < 0
            || mm_fetch_digits(p + 8, end, 2, &y) != 0
            || mm_fetch_hms(p + 11, end, &h, &mi, &s) != 0)
        {
            return MM_EBADDATA;
        }

        /* RFC 9110 5.6.7: a two-digit year more than 50 years ahead is
         * in the past; without a clock here, 70..99 is 19xx */
        y += (y >= 70) ? 1900 : 2000;

    } else {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        if (end - p != 24 || p[3] != ' ' || p[7] != ' ' || p[10] != ' '
            || p[19] != ' '
            || (m = mm_fetch_month(p + 4, end)) < 0
            || mm_fetch_hms(p + 11, end, &h, &mi, &s) != 0
            || mm_fetch_digits(p + 20, end, 4, &y) != 0)
        {
            return MM_EBADDATA;
        }

        if (p[8] == ' ') {
            if (mm_fetch_digits(p + 9, end, 1, &d) != 0) {
                return MM_EBADDATA;
            }

        } else if (mm_fetch_digits(p + 8, end, 2, &d) != 0) {
            return MM_EBADDATA;
        }
    }

    if (d < 1 || d > 31) {
        return MM_EBADDATA;
    }

    *t = mm_fetch_days(y, m, d) * 86400 + h * 3600 + mi * 60 + s;

    return MM_OK;
}


mm_status_t
mm_fetch_retry_after(const char *value, size_t len, int64_t now,
    int64_t *seconds)
{
    size_t   i, b, e;
    int64_t  v, t;

    for (b = 0; b < len && (value[b] == ' ' || value[b] == '\t'); b++) {
        /* void */
    }

    for (e = len; e > b && (value[e - 1] == ' ' || value[e - 1] == '\t');
         e--)
    {
        /* void */
    }

    if (b == e) {
        return MM_EBADDATA;
    }

    if (value[b] >= '0' && value[b] <= '9') {
        v = 0;

        for (i = b; i < e; i++) {
            if (value[i] < '0' || value[i] > '9') {
                return MM_EBADDATA;
            }

            if (v > (INT64_MAX - 9) / 10) {
                v = INT64_MAX / 2;      /* "a long time": the caller caps */
                continue;
            }

            v = v * 10 + (value[i] - '0');
        }

        *seconds = v;
        return MM_OK;
    }

    if (mm_fetch_http_date(value + b, e - b, &t) != MM_OK) {
        return MM_EBADDATA;
    }

    *seconds = t > now ? t - now : 0;

    return MM_OK;
}


/* a decimal int64 in [p, end); advances *pp */
static int
mm_fetch_int(const char **pp, const char *end, int64_t *v)
{
    const char  *p;

    p = *pp;

    if (p >= end || *p < '0' || *p > '9') {
        return -1;
    }

    *v = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        if (*v > (INT64_MAX - 9) / 10) {
            return -1;
        }
        *v = *v * 10 + (*p++ - '0');
    }

    *pp = p;

    return 0;
}


mm_status_t
mm_fetch_content_range(const char *value, size_t len, int64_t *first,
    int64_t *last, int64_t *total)
{
    const char  *p, *end;

    p = value;
    end = value + len;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    if (end - p < 6 || strncasecmp(p, "bytes", 5) != 0 || p[5] != ' ') {
        return MM_EBADDATA;
    }

    p += 6;

    while (p < end && *p == ' ') {
        p++;
    }

    if (p < end && *p == '*') {
        p++;
        *first = -1;
        *last = -1;

    } else {
        if (mm_fetch_int(&p, end, first) != 0 || p >= end || *p != '-') {
            return MM_EBADDATA;
        }

        p++;

        if (mm_fetch_int(&p, end, last) != 0 || *last < *first) {
            return MM_EBADDATA;
        }
    }

    if (p >= end || *p != '/') {
        return MM_EBADDATA;
    }

    p++;

    if (p < end && *p == '*' && p + 1 == end) {
        if (*first < 0) {
            /* unsatisfied and unknown: says nothing */
            return MM_EBADDATA;
        }
        *total = -1;
        return MM_OK;
    }

    if (mm_fetch_int(&p, end, total) != 0 || p != end) {
        return MM_EBADDATA;
    }

    if (*first >= 0 && *last >= *total) {
        return MM_EBADDATA;
    }

    return MM_OK;
}


int
mm_fetch_etag_strong(const char *etag, size_t len)
{
    size_t  i;

    if (len < 2 || etag[0] != '"' || etag[len - 1] != '"') {
        return 0;
    }

    for (i = 1; i < len - 1; i++) {
        if (etag[i] == '"' || (unsigned char) etag[i] < 0x21
            || etag[i] == 0x7f)
        {
            return 0;
        }
    }

    return 1;
}


const char *
mm_fetch_if_range(const char *etag, const char *last_modified)
{
    int64_t  t;

    if (etag != NULL && mm_fetch_etag_strong(etag, strlen(etag))) {
        return etag;
    }

    if (last_modified != NULL
        && mm_fetch_http_date(last_modified, strlen(last_modified), &t)
           == MM_OK)
    {
        return last_modified;
    }

    return NULL;
}
