/*
 * HTTP fetch policy shared by the daemons that download (archiver) and
 * deliver (notifier): what a response means, when to try again, how to
 * resume. Pure functions: time and randomness are parameters.
 *
 * Outcome of an HTTP status (mm_fetch_status_class):
 *   2xx                      MM_FETCH_OK
 *   408, 425, 429, 5xx       MM_FETCH_RETRY   (transient)
 *   anything else            MM_FETCH_FAIL    (permanent: 403, 404, 410, ...)
 *
 * Backoff (mm_fetch_backoff_ms): base * 2^(n-1) capped at max, then
 * "equal jitter": a uniformly random point in [d/2, d]. A Retry-After the
 * server sent raises the delay to at least that (capped by the caller).
 *
 * Resume: a download is resumed with "Range: bytes=<have>-" only with a
 * validator for If-Range: a strong ETag, else a Last-Modified date
 * (mm_fetch_if_range). A 206 must start where asked
 * (mm_fetch_content_range); a 200 to a ranged request means the server
 * ignored the range or the file changed: start again from 0.
 */

#ifndef MM_FETCH_H
#define MM_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include "mm.h"


typedef enum {
    MM_FETCH_OK = 0,
    MM_FETCH_RETRY,
    MM_FETCH_FAIL
} mm_fetch_class_t;


mm_fetch_class_t mm_fetch_status_class(int status);

/*
 * Delay before try n + 1 after n >= 1 failures in a row; r is a random
 * number in [0, 1).
 */
uint64_t mm_fetch_backoff_ms(unsigned n, uint64_t base_ms, uint64_t max_ms,
    double r);

/*
 * Retry-After (RFC 9110 10.2.3): delta-seconds or an HTTP-date (IMF-fixdate,
 * and the obsolete RFC 850 / asctime forms), relative to now (seconds since
 * the epoch). Sets *seconds (0 for a date in the past). MM_EBADDATA.
 */
mm_status_t mm_fetch_retry_after(const char *value, size_t len, int64_t now,
    int64_t *seconds);

/*
 * Content-Range of a 206 ("bytes 0-99/1000", or with "*" for an unknown
 * total) or of a 416 ("bytes" SP "*" "/" total). first/last are -1 for the
 * unsatisfied form, total is -1 when unknown. MM_EBADDATA.
 */
mm_status_t mm_fetch_content_range(const char *value, size_t len,
    int64_t *first, int64_t *last, int64_t *total);

/* 1 for a strong entity tag ("..." without W/) */
int mm_fetch_etag_strong(const char *etag, size_t len);

/*
 * The If-Range value to resume with: the ETag if strong, else the
 * Last-Modified date, else NULL (do not resume: start from 0). Either
 * argument may be NULL.
 */
const char *mm_fetch_if_range(const char *etag, const char *last_modified);

/* HTTP-date (IMF-fixdate and the obsolete forms) to seconds; MM_EBADDATA */
mm_status_t mm_fetch_http_date(const char *value, size_t len, int64_t *t);


#endif /* MM_FETCH_H */
