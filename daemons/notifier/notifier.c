/*
 * media-notifier: webhook deliveries from the outbox. See notifier.h and
 * docs/archives.md ("Webhooks").
 *
 * Everything runs in the loop's thread: PostgreSQL through a statement
 * queue on a non-blocking connection (pgq over pgc), HTTP through libcurl's
 * multi interface fed by the same zmq_poll. A row is claimed with a lease
 * (owner + lease_until) so a notifier killed mid-delivery gets it back at
 * once after a restart (same owner) and another instance after the lease.
 */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include <curl/curl.h>

#include "buf.h"
#include "curlm.h"
#include "fetch.h"
#include "heartbeat.h"
#include "log.h"
#include "notifier.h"
#include "pgc.h"
#include "pgq.h"
#include "url.h"
#include "util.h"
#include "webhook.h"


#define NT_VERSION       "0.1"
#define NT_ZAP_DOMAIN    "notifier"
#define NT_LEASE         120            /* s: longer than one delivery */
#define NT_DRAIN_MS      5000
#define NT_BODY_MAX      (64 * 1024)    /* of a receiver's answer */
#define NT_SECRET_MAX    4096


static const char  nt_claim_sql[] =
    "UPDATE webhook_outbox o"
    "   SET attempts = o.attempts + 1, owner = $1,"
    "       lease_until = now() + make_interval(secs => $4::integer)"
    " WHERE o.id IN (SELECT id FROM webhook_outbox"
    "                 WHERE delivered_at IS NULL AND gave_up_at IS NULL"
    "                   AND next_attempt_at <= now()"
    "                   AND (owner IS NULL OR owner = $1"
    "                        OR lease_until < now())"
    "                   AND id <> ALL ($2::bigint[])"
    "                 ORDER BY next_attempt_at, id"
    "                 LIMIT $3::integer"
    "                 FOR UPDATE SKIP LOCKED)"
    " RETURNING o.id, o.delivery_id, o.event, o.target_url, o.payload,"
    "           o.attempts";

/*
 * $2 delivered; $5 the next attempt in ms, NULL to give up now; past
 * created_at + $6 s it gives up too
 */
static const char  nt_result_sql[] =
    "UPDATE webhook_outbox"
    "   SET owner = NULL, lease_until = NULL,"
    "       last_status = $3::integer, last_error = $4::text,"
    "       delivered_at = CASE WHEN $2::boolean THEN now() END,"
    "       gave_up_at = CASE WHEN NOT $2::boolean"
    "                          AND ($5::bigint IS NULL"
    "                               OR now() + $5::bigint"
    "                                  * interval '1 millisecond'"
    "                                  > created_at + $6::integer"
    "                                    * interval '1 second')"
    "                         THEN now() END,"
    "       next_attempt_at = CASE WHEN $2::boolean OR $5::bigint IS NULL"
    "                              THEN next_attempt_at"
    "                              ELSE now() + $5::bigint"
    "                                   * interval '1 millisecond' END"
    " WHERE id = $1::bigint AND owner = $7";


typedef struct nt_delivery_s  nt_delivery_t;
typedef struct notifier_s     notifier_t;

struct nt_delivery_s {
    nt_delivery_t       *next;
    notifier_t          *n;
    int64_t              id;
    char                *delivery_id;
    char                *event;
    char                *target;        /* NULL: the operator's */
    char                *payload;
    long                 attempts;
    CURL                *easy;
    struct curl_slist   *headers;
    curlm_guard_t        guard;
    size_t               body;          /* answer bytes read */
    char                 error[CURL_ERROR_SIZE];
    int                  recording;     /* outcome statement queued */
};


struct notifier_s {
    notifier_conf_t     *conf;
    svc_t                svc;
    unsigned char        secret[NT_SECRET_MAX];
    size_t               secret_len;

    nt_delivery_t       *deliveries;
    int                  active;
    int                  claim_full;    /* the last claim filled its limit */

    uint64_t             delivered;
    uint64_t             failed;
};


static int nt_conf_check(void *conf);
static void *nt_create(void *conf, void *zctx);
static void nt_destroy(void **obj);
static int nt_poll_items(void *obj, zmq_pollitem_t **items, long *timeout);
static void nt_process(void *obj, zmq_pollitem_t *items, int n);
static void nt_reload(void *obj);
static void nt_drain(void *obj);
static int nt_finished(void *obj);

static void nt_claim(notifier_t *n);
static void nt_claim_result(void *arg, PGresult *res);
static void nt_start(notifier_t *n, nt_delivery_t *d);
static void nt_transfer_done(void *arg, CURL *easy, CURLcode result);
static void nt_record(nt_delivery_t *d, int ok, long status,
    const char *error, int give_up);
static void nt_record_done(void *arg, const char *error);
static void nt_free(nt_delivery_t *d);


const conf_def_t  notifier_conf_defs[] = {
    { "db", CONF_STRING, offsetof(notifier_conf_t, svc.db), 1, NULL, 0, 0, 0 },
    { "listen", CONF_STRING, offsetof(notifier_conf_t, svc.listen), 1,
      NULL, 0, 0, 0 },
    { "curve_key_file", CONF_STRING,
      offsetof(notifier_conf_t, svc.curve_key_file), 1, NULL, 0, 0, 0 },
    { "curve_clients_file", CONF_STRING,
      offsetof(notifier_conf_t, svc.curve_clients_file), 1, NULL, 0, 0, 0 },
    { "operator_url", CONF_STRING, offsetof(notifier_conf_t, operator_url),
      0, "none", 0, 0, 0 },
    { "secret_file", CONF_STRING, offsetof(notifier_conf_t, secret_file), 1,
      NULL, 0, 0, 0 },
    { "allow_private", CONF_INT, offsetof(notifier_conf_t, allow_private),
      0, NULL, 0, 0, 1 },
    { "max_inflight", CONF_INT, offsetof(notifier_conf_t, max_inflight), 0,
      NULL, 16, 1, 1000 },
    { "timeout", CONF_INT, offsetof(notifier_conf_t, timeout), 0,
      NULL, 10, 1, 300 },
    { "retry_base_ms", CONF_INT, offsetof(notifier_conf_t, retry_base_ms),
      0, NULL, 2000, 10, 3600000 },
    { "retry_max_ms", CONF_INT, offsetof(notifier_conf_t, retry_max_ms), 0,
      NULL, 3600000, 10, 86400000 },
    { "max_age", CONF_INT, offsetof(notifier_conf_t, max_age), 0,
      NULL, 86400, 1, 30 * 86400 },
    { "poll_ms", CONF_INT, offsetof(notifier_conf_t, svc.poll_ms), 0,
      NULL, 5000, 10, 600000 },
    { "instance", CONF_STRING, offsetof(notifier_conf_t, svc.instance), 0,
      "notifier", 0, 0, 0 },
    { "heartbeat_name", CONF_STRING,
      offsetof(notifier_conf_t, svc.heartbeat_name), 0, "notifier", 0, 0, 0 },
    { "pid_file", CONF_STRING, offsetof(notifier_conf_t, pid_file), 0,
      NULL, 0, 0, 0 },
    { NULL, 0, 0, 0, NULL, 0, 0, 0 }
};


const dmain_t  notifier_main = {
    "media-notifier", NT_VERSION, notifier_conf_defs,
    sizeof(notifier_conf_t), offsetof(notifier_conf_t, pid_file),
    nt_conf_check, nt_create, nt_destroy, nt_poll_items, nt_process,
    nt_reload, nt_drain, nt_finished
};


/* ---- config ---------------------------------------------------------- */


/* the secret: the file's bytes without surrounding whitespace */
static int
nt_load_secret(const char *path, unsigned char *out, size_t *len)
{
    FILE    *f;
    size_t   n, b;

    f = fopen(path, "r");
    if (f == NULL) {
        log_warn("%s", path);
        return -1;
    }

    n = fread(out, 1, NT_SECRET_MAX, f);
    fclose(f);

    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'
                     || out[n - 1] == ' ' || out[n - 1] == '\t'))
    {
        n--;
    }

    for (b = 0; b < n && (out[b] == ' ' || out[b] == '\t'); b++) {
        /* void */
    }

    memmove(out, out + b, n - b);
    n -= b;

    if (n < 16 || n >= NT_SECRET_MAX) {
        log_warnx("%s: the webhook secret must be 16..%d bytes", path,
                  NT_SECRET_MAX - 1);
        return -1;
    }

    *len = n;

    return 0;
}


static int
nt_conf_check(void *conf)
{
    notifier_conf_t  *c = conf;

    char            err[512];
    size_t          n;
    mm_url_t        u;
    unsigned char   secret[NT_SECRET_MAX];

    if (svc_conf_check(&c->svc) != 0) {
        return -1;
    }

    if (nt_load_secret(c->secret_file, secret, &n) != 0) {
        return -1;
    }

    explicit_bzero(secret, sizeof(secret));

    if (strcmp(c->operator_url, "none") != 0
        && mm_url_parse(c->operator_url, strlen(c->operator_url), &u, err,
                        sizeof(err)) != MM_OK)
    {
        log_warnx("operator_url: %s", err);
        return -1;
    }

    return 0;
}


/* ---- the object ------------------------------------------------------ */


static void *
nt_create(void *conf, void *zctx)
{
    notifier_conf_t  *c = conf;

    notifier_t  *n;

    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        log_warn("calloc");
        return NULL;
    }

    n->conf = c;

    if (nt_load_secret(c->secret_file, n->secret, &n->secret_len) != 0
        || svc_open(&n->svc, &c->svc, zctx, NT_ZAP_DOMAIN, nt_transfer_done,
                    n) != 0)
    {
        goto failed;
    }

    log_info("operator webhook: %s; private targets %s",
             strcmp(c->operator_url, "none") == 0 ? "none" : c->operator_url,
             c->allow_private ? "allowed" : "refused");

    return n;

failed:

    nt_destroy((void **) &n);

    return NULL;
}


static void
nt_destroy(void **obj)
{
    notifier_t  *n = *obj;

    nt_delivery_t  *d, *next;

    if (n == NULL) {
        return;
    }

    *obj = NULL;

    for (d = n->deliveries; d != NULL; d = next) {
        next = d->next;
        nt_free(d);
    }

    svc_close(&n->svc);
    explicit_bzero(n->secret, sizeof(n->secret));
    free(n);
}


static void
nt_free(nt_delivery_t *d)
{
    if (d->easy != NULL) {
        curlm_remove(d->n->svc.cm, d->easy);
        curl_easy_cleanup(d->easy);
    }

    curl_slist_free_all(d->headers);
    free(d->delivery_id);
    free(d->event);
    free(d->target);
    free(d->payload);
    free(d);
}


static void
nt_unlink(notifier_t *n, nt_delivery_t *d)
{
    nt_delivery_t  **pp;

    for (pp = &n->deliveries; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            n->active--;
            return;
        }
    }
}


/* ---- claiming -------------------------------------------------------- */


static void
nt_claim(notifier_t *n)
{
    char            limit[16], lease[16];
    const char     *params[4];
    mm_buf_t        ids;
    nt_delivery_t  *d;

    mm_buf_init(&ids);
    mm_buf_puts(&ids, "{");

    for (d = n->deliveries; d != NULL; d = d->next) {
        mm_buf_printf(&ids, "%s%" PRId64, ids.len > 1 ? "," : "", d->id);
    }

    mm_buf_puts(&ids, "}");

    if (ids.failed) {
        mm_buf_free(&ids);
        return;
    }

    snprintf(limit, sizeof(limit), "%ld", n->conf->max_inflight - n->active);
    snprintf(lease, sizeof(lease), "%d", NT_LEASE);

    params[0] = n->conf->svc.instance;
    params[1] = ids.data;
    params[2] = limit;
    params[3] = lease;

    if (svc_claim(&n->svc, nt_claim_sql, 4, params, nt_claim_result, n)
        == 0)
    {
        n->claim_full = 0;
    }

    mm_buf_free(&ids);
}


static char *
nt_strdup_value(PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        return NULL;
    }

    return strdup(PQgetvalue(res, row, col));
}


static void
nt_claim_result(void *arg, PGresult *res)
{
    notifier_t  *n = arg;

    int             i, rows;
    int64_t         id;
    nt_delivery_t  *d, *x;

    rows = PQntuples(res);

    for (i = 0; i < rows; i++) {
        id = strtoll(PQgetvalue(res, i, 0), NULL, 10);

        /* a resent claim may return a row again */
        for (x = n->deliveries; x != NULL && x->id != id; x = x->next) {
            /* void */
        }

        if (x != NULL) {
            continue;
        }

        d = calloc(1, sizeof(*d));
        if (d == NULL) {
            log_warn("calloc");
            continue;
        }

        d->n = n;
        d->id = id;
        d->delivery_id = nt_strdup_value(res, i, 1);
        d->event = nt_strdup_value(res, i, 2);
        d->target = nt_strdup_value(res, i, 3);
        d->payload = nt_strdup_value(res, i, 4);
        d->attempts = strtol(PQgetvalue(res, i, 5), NULL, 10);

        if (d->delivery_id == NULL || d->event == NULL || d->payload == NULL
            || (!PQgetisnull(res, i, 3) && d->target == NULL))
        {
            log_warn("strdup");
            nt_free(d);
            continue;
        }

        d->next = n->deliveries;
        n->deliveries = d;
        n->active++;

        nt_start(n, d);
    }

    if (rows > 0 && n->active >= n->conf->max_inflight) {
        n->claim_full = 1;
    }
}


/* ---- delivering ------------------------------------------------------ */


static size_t
nt_discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    nt_delivery_t  *d = userdata;

    d->body += size * nmemb;

    /* a receiver answers briefly; do not read a stream */
    return d->body > NT_BODY_MAX ? 0 : size * nmemb;
}


static int
nt_header(nt_delivery_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
nt_header(nt_delivery_t *d, const char *fmt, ...)
{
    char                line[512];
    va_list             ap;
    struct curl_slist  *l;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);

    l = curl_slist_append(d->headers, line);
    if (l == NULL) {
        return -1;
    }

    d->headers = l;

    return 0;
}


static void
nt_start(notifier_t *n, nt_delivery_t *d)
{
    char         sig[MM_WEBHOOK_SIG_LEN + 1];
    size_t       len;
    int64_t      ts;
    const char  *url;

    url = d->target;

    if (url == NULL) {
        if (strcmp(n->conf->operator_url, "none") == 0) {
            /* nobody to tell: settled at once */
            nt_record(d, 0, 0, "no operator webhook is configured", 1);
            return;
        }
        url = n->conf->operator_url;
    }

    len = strlen(d->payload);
    ts = (int64_t) time(NULL);

    if (mm_webhook_sign(n->secret, n->secret_len, ts, d->payload, len, sig)
        != MM_OK)
    {
        nt_record(d, 0, 0, "signing failed", 0);
        return;
    }

    d->easy = curl_easy_init();

    if (d->easy == NULL
        || nt_header(d, "Content-Type: application/json") != 0
        || nt_header(d, "Expect:") != 0
        || nt_header(d, "X-Media-Event: %s", d->event) != 0
        || nt_header(d, "X-Media-Delivery: %s", d->delivery_id) != 0
        || nt_header(d, "X-Media-Attempt: %ld", d->attempts) != 0
        || nt_header(d, "X-Media-Timestamp: %lld", (long long) ts) != 0
        || nt_header(d, "X-Media-Signature: %s", sig) != 0)
    {
        nt_record(d, 0, 0, "out of memory", 0);
        return;
    }

    curl_easy_setopt(d->easy, CURLOPT_URL, url);
    curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->payload);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT,
                     "ngx_media-notifier/" NT_VERSION);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(d->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT, n->conf->timeout);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, nt_discard);
    curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_ERRORBUFFER, d->error);

    /* the operator's own URL is trusted; a request's is not */
    d->guard.on = (d->target != NULL && !n->conf->allow_private);
    curlm_guard(d->easy, &d->guard);

    if (curlm_add(n->svc.cm, d->easy) != 0) {
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
        nt_record(d, 0, 0, "cannot start the request", 0);
        return;
    }

    log_debug("delivery %s (%s, attempt %ld) to %s", d->delivery_id,
              d->event, d->attempts, d->target ? d->target : "operator");
}


static void
nt_transfer_done(void *arg, CURL *easy, CURLcode result)
{
    notifier_t  *n = arg;

    char            error[512];
    long            status;
    char           *priv;
    nt_delivery_t  *d;

    priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    d = (nt_delivery_t *) priv;

    status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);

    curlm_remove(n->svc.cm, easy);
    curl_easy_cleanup(easy);
    d->easy = NULL;

    if (d->guard.refused) {
        snprintf(error, sizeof(error), "refused: %s is a private address",
                 d->guard.addr);
        /* configuration, not chance: no point in trying again */
        nt_record(d, 0, 0, error, 1);
        return;
    }

    if (result != CURLE_OK && !(result == CURLE_WRITE_ERROR && status)) {
        snprintf(error, sizeof(error), "%s",
                 d->error[0] ? d->error : curl_easy_strerror(result));
        nt_record(d, 0, 0, error, 0);
        return;
    }

    if (status >= 200 && status <= 299) {
        nt_record(d, 1, status, NULL, 0);
        return;
    }

    snprintf(error, sizeof(error), "HTTP %ld", status);
    nt_record(d, 0, status, error, 0);
}


static void
nt_record(nt_delivery_t *d, int ok, long status, const char *error,
    int give_up)
{
    notifier_t  *n = d->n;

    char         id[32], st[16], retry[32], age[16];
    uint64_t     delay;
    const char  *params[7];

    snprintf(id, sizeof(id), "%" PRId64, d->id);
    snprintf(st, sizeof(st), "%ld", status);
    snprintf(age, sizeof(age), "%ld", n->conf->max_age);

    delay = mm_fetch_backoff_ms((unsigned) (d->attempts > 0 ? d->attempts
                                                            : 1),
                                (uint64_t) n->conf->retry_base_ms,
                                (uint64_t) n->conf->retry_max_ms,
                                rand_unit());
    snprintf(retry, sizeof(retry), "%" PRIu64, delay);

    params[0] = id;
    params[1] = ok ? "true" : "false";
    params[2] = status ? st : NULL;
    params[3] = error;
    params[4] = (ok || give_up) ? NULL : retry;
    params[5] = age;
    params[6] = n->conf->svc.instance;

    if (ok) {
        n->delivered++;
        log_info("delivered %s (%s) to %s: HTTP %ld", d->delivery_id,
                 d->event, d->target ? d->target : "the operator", status);

    } else {
        n->failed++;
        log_warnx("delivery %s (%s, attempt %ld) to %s failed: %s%s",
                  d->delivery_id, d->event, d->attempts,
                  d->target ? d->target : "the operator", error,
                  give_up ? "; giving up" : "");
    }

    /* look again when this one is due (the poll may be later) */
    if (!ok && !give_up && now_mono_ms() + delay + 50 < n->svc.next_poll) {
        n->svc.next_poll = now_mono_ms() + delay + 50;
    }

    if (pgq_push(n->svc.q, nt_result_sql, 7, params, NULL, nt_record_done, d)
        != 0)
    {
        /* the lease runs out and the row is delivered again */
        nt_unlink(n, d);
        nt_free(d);
        return;
    }

    d->recording = 1;
}


static void
nt_record_done(void *arg, const char *error)
{
    nt_delivery_t  *d = arg;
    notifier_t     *n = d->n;

    if (error != NULL) {
        log_warnx("recording delivery %s: %s", d->delivery_id, error);
    }

    nt_unlink(n, d);
    nt_free(d);

    /* a slot is free: more may be due */
    if (n->claim_full) {
        n->svc.rang = 1;
    }
}


/* ---- the loop -------------------------------------------------------- */


static void
nt_tick(notifier_t *n, uint64_t now)
{
    char  info[256];

    if (pgc_ready(n->svc.pg) && heartbeat_due(&n->svc.hb, now)) {
        snprintf(info, sizeof(info),
                 "{\"active\":%d,\"delivered\":%" PRIu64
                 ",\"failed\":%" PRIu64 "}",
                 n->active, n->delivered, n->failed);
        (void) heartbeat_send(&n->svc.hb, n->svc.pg, info, now);
    }

    if (svc_claim_due(&n->svc, n->active < n->conf->max_inflight, now)) {
        nt_claim(n);
    }

    pgq_pump(n->svc.q);
}


static int
nt_poll_items(void *obj, zmq_pollitem_t **items, long *timeout)
{
    notifier_t  *n = obj;

    return svc_poll_items(&n->svc, n->active < n->conf->max_inflight,
                          now_mono_ms(), items, timeout);
}


static void
nt_process(void *obj, zmq_pollitem_t *items, int count)
{
    notifier_t  *n = obj;

    svc_process(&n->svc, items, count);

    nt_tick(n, now_mono_ms());
}


static void
nt_reload(void *obj)
{
    notifier_t  *n = obj;

    svc_reload(&n->svc);
}


static void
nt_drain(void *obj)
{
    notifier_t  *n = obj;

    svc_drain(&n->svc, NT_DRAIN_MS);
}


static int
nt_finished(void *obj)
{
    notifier_t  *n = obj;

    /* deliveries cut short are claimed again after a restart */
    return (n->active == 0 && pgq_pending(n->svc.q) == 0)
           || svc_drained(&n->svc);
}
