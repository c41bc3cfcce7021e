/*
 * lib/fetch: status classes, backoff with jitter, Retry-After (seconds and
 * the three HTTP-date forms), Content-Range of 206 and 416, strong ETags
 * and the If-Range choice.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fetch.h"
#include "tap.h"


static void
test_class(void)
{
    is_int(mm_fetch_status_class(200), MM_FETCH_OK, "200 ok");
    is_int(mm_fetch_status_class(206), MM_FETCH_OK, "206 ok");
    is_int(mm_fetch_status_class(404), MM_FETCH_FAIL, "404 permanent");
    is_int(mm_fetch_status_class(410), MM_FETCH_FAIL, "410 permanent");
    is_int(mm_fetch_status_class(403), MM_FETCH_FAIL, "403 permanent");
    is_int(mm_fetch_status_class(400), MM_FETCH_FAIL, "400 permanent");
    is_int(mm_fetch_status_class(301), MM_FETCH_FAIL,
           "a redirect left over (too many / no Location) is permanent");
    is_int(mm_fetch_status_class(408), MM_FETCH_RETRY, "408 transient");
    is_int(mm_fetch_status_class(429), MM_FETCH_RETRY, "429 transient");
    is_int(mm_fetch_status_class(500), MM_FETCH_RETRY, "500 transient");
    is_int(mm_fetch_status_class(503), MM_FETCH_RETRY, "503 transient");
    is_int(mm_fetch_status_class(599), MM_FETCH_RETRY, "599 transient");
    is_int(mm_fetch_status_class(0), MM_FETCH_FAIL, "no status: permanent");
}


static void
test_backoff(void)
{
    is_int(mm_fetch_backoff_ms(1, 1000, 60000, 0.0), 500,
           "first retry: half the base at r = 0");
    is_int(mm_fetch_backoff_ms(1, 1000, 60000, 0.999999), 999,
           "first retry: just under the base at r -> 1");
    is_int(mm_fetch_backoff_ms(3, 1000, 60000, 0.0), 2000,
           "third: base * 4, halved");
    is_int(mm_fetch_backoff_ms(30, 1000, 60000, 0.0), 30000,
           "capped at max, halved");
    is_int(mm_fetch_backoff_ms(200, 1000, 60000, 1.0), 59999,
           "huge n: no overflow, under max");
    is_int(mm_fetch_backoff_ms(0, 1000, 60000, 0.0), 500, "n = 0 is n = 1");
    ok(mm_fetch_backoff_ms(2, 1000, 60000, 0.5) == 1500, "jitter midpoint");
}


static void
test_retry_after(void)
{
    int64_t      s, now;
    mm_status_t  st;

    /* Sun, 06 Nov 1994 08:49:37 GMT */
    now = 784111777;

    st = mm_fetch_retry_after("120", 3, now, &s);
    ok(st == MM_OK && s == 120, "delta-seconds");
    st = mm_fetch_retry_after("  7 ", 4, now, &s);
    ok(st == MM_OK && s == 7, "delta-seconds with spaces");
    st = mm_fetch_retry_after("99999999999999999999999", 23, now, &s);
    ok(st == MM_OK && s > 1000000000, "huge delta saturates");

    st = mm_fetch_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", 29, now, &s);
    ok(st == MM_OK && s == 60, "IMF-fixdate a minute ahead");
    st = mm_fetch_retry_after("Sunday, 06-Nov-94 08:49:47 GMT", 30, now, &s);
    ok(st == MM_OK && s == 10, "RFC 850 date");
    st = mm_fetch_retry_after("Sun Nov  6 08:49:39 1994", 24, now, &s);
    ok(st == MM_OK && s == 2, "asctime date");
    st = mm_fetch_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", 29, now, &s);
    ok(st == MM_OK && s == 0, "a date in the past is 0");

    ok(mm_fetch_retry_after("", 0, now, &s) == MM_EBADDATA, "empty");
    ok(mm_fetch_retry_after("-5", 2, now, &s) == MM_EBADDATA, "negative");
    ok(mm_fetch_retry_after("5s", 2, now, &s) == MM_EBADDATA, "unit");
    ok(mm_fetch_retry_after("Sun, 06 Nov 1994 08:49:37 UTC", 29, now, &s)
       == MM_EBADDATA, "not GMT");
    ok(mm_fetch_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 29, now, &s)
       == MM_EBADDATA, "bad month");
    ok(mm_fetch_retry_after("Sun, 06 Nov 1994 25:49:37 GMT", 29, now, &s)
       == MM_EBADDATA, "bad hour");

    st = mm_fetch_http_date("Thu, 01 Jan 1970 00:00:00 GMT", 29, &s);
    ok(st == MM_OK && s == 0, "epoch");
    st = mm_fetch_http_date("Tue, 29 Feb 2000 12:00:00 GMT", 29, &s);
    ok(st == MM_OK && s == 951825600, "leap day 2000");
    st = mm_fetch_http_date("Fri, 31 Dec 2100 23:59:59 GMT", 29, &s);
    ok(st == MM_OK && s == 4133980799LL, "2100 (not a leap year before)");
}


static void
test_content_range(void)
{
    int64_t      f, l, t;
    mm_status_t  st;

#define CR(s)  mm_fetch_content_range(s, strlen(s), &f, &l, &t)

    st = CR("bytes 100-199/1000");
    ok(st == MM_OK && f == 100 && l == 199 && t == 1000, "206 form");
    st = CR("bytes 0-0/1");
    ok(st == MM_OK && f == 0 && l == 0 && t == 1, "one byte");
    st = CR("bytes 5-9/*");
    ok(st == MM_OK && f == 5 && l == 9 && t == -1, "unknown total");
    st = CR("bytes */1000");
    ok(st == MM_OK && f == -1 && l == -1 && t == 1000, "416 form");
    st = CR("BYTES 1-2/3");
    ok(st == MM_OK, "unit is case-insensitive");
    st = CR("bytes 4294967296-8589934591/8589934592");
    ok(st == MM_OK && f == 4294967296LL && t == 8589934592LL, "over 4 GiB");

    ok(CR("bytes */*") == MM_EBADDATA, "*/* refused");
    ok(CR("bytes 10-5/100") == MM_EBADDATA, "last < first");
    ok(CR("bytes 0-100/100") == MM_EBADDATA, "last >= total");
    ok(CR("items 0-1/2") == MM_EBADDATA, "other unit");
    ok(CR("bytes 0-1") == MM_EBADDATA, "no total");
    ok(CR("bytes -1-2/3") == MM_EBADDATA, "negative");
    ok(CR("bytes 0-1/2x") == MM_EBADDATA, "trailing garbage");
    ok(CR("bytes 99999999999999999999-1/2") == MM_EBADDATA, "overflow");

#undef CR
}


static void
test_validators(void)
{
    ok(mm_fetch_etag_strong("\"abc\"", 5), "strong etag");
    ok(!mm_fetch_etag_strong("W/\"abc\"", 7), "weak etag");
    ok(!mm_fetch_etag_strong("abc", 3), "unquoted");
    ok(!mm_fetch_etag_strong("\"a\"b\"", 5), "inner quote");
    ok(mm_fetch_etag_strong("\"\"", 2), "empty strong etag");

    is_str(mm_fetch_if_range("\"x\"", "Sun, 06 Nov 1994 08:49:37 GMT"),
           "\"x\"", "If-Range: the strong ETag first");
    is_str(mm_fetch_if_range("W/\"x\"", "Sun, 06 Nov 1994 08:49:37 GMT"),
           "Sun, 06 Nov 1994 08:49:37 GMT",
           "If-Range: Last-Modified when the ETag is weak");
    ok(mm_fetch_if_range(NULL, "yesterday") == NULL,
       "no usable validator: do not resume");
    ok(mm_fetch_if_range(NULL, NULL) == NULL, "none at all");
}


int
main(void)
{
    test_class();
    test_backoff();
    test_retry_after();
    test_content_range();
    test_validators();

    return done_testing();
}
