
/*
 * ngx_media: analytics events from the log phase to daemons/analytics.
 *
 * Each worker owns a ZeroMQ DEALER (CURVE client). An event is built as
 * JSON and kept in a per-worker ring: the request never waits. Every tick
 * the new events go out as one batch (ZMQ_DONTWAIT), so the per-request
 * cost is building the JSON. The daemon ACKs a batch once it is in its journal; a timer
 * drains ACKs and resends what was not ACKed in time, so a daemon killed
 * mid-stream loses nothing (duplicates are dropped by request_id). Only a
 * full ring drops events, counted in /metrics. See
 * docs/analytics-protocol.md.
 */

#include "ngx_http_media.h"

#include <zmq.h>
#include <openssl/rand.h>


#define NGX_HTTP_MEDIA_EVENTS_TICK       50      /* ms */
#define NGX_HTTP_MEDIA_BATCH_MAX         1000    /* events a message */
#define NGX_HTTP_MEDIA_RESEND_PER_TICK   2000
#define NGX_HTTP_MEDIA_RESEND_MAX        8000    /* ms, backoff cap */


typedef struct {
    uint64_t      seq;
    ngx_msec_t    resend_at;
    ngx_uint_t    tries;
    ngx_uint_t    batch_n;          /* events of the batch this seq opens */
    char         *data;             /* malloc'd event JSON */
    size_t        len;
} ngx_http_media_event_slot_t;


typedef struct {
    void                          *zctx;
    void                          *sock;
    ngx_http_media_main_conf_t    *mcf;
    ngx_http_media_event_slot_t   *ring;
    ngx_uint_t                     size;
    uint64_t                       head;     /* oldest seq not yet freed */
    uint64_t                       tail;     /* next seq */
    uint64_t                       scan;     /* resend scan position */
    uint64_t                       unsent;   /* first seq never sent */
    ngx_uint_t                     pending;
    ngx_uint_t                     slot;     /* metrics slot of the worker */
    ngx_event_t                    timer;
    ngx_log_t                     *log;
} ngx_http_media_events_t;


static ngx_http_media_events_t  ngx_http_media_ev;

/* timer events log ev->data as a connection: give them a dummy one */
static ngx_connection_t         ngx_http_media_dumb;


static void ngx_http_media_events_tick(ngx_event_t *ev);
static void ngx_http_media_events_drain(ngx_http_media_events_t *e);
static ngx_int_t ngx_http_media_events_send(ngx_http_media_events_t *e,
    uint64_t seq, ngx_uint_t n);
static void *ngx_http_media_events_socket(void *zctx,
    ngx_http_media_main_conf_t *mcf, int hwm);


static void *
ngx_http_media_events_socket(void *zctx, ngx_http_media_main_conf_t *mcf,
    int hwm)
{
    int    linger = 0, one = 1;
    void  *sock;

    sock = zmq_socket(zctx, ZMQ_DEALER);
    if (sock == NULL) {
        return NULL;
    }

    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, mcf->curve_server,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, mcf->curve_public,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, mcf->curve_secret,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof(int)) != 0
        || zmq_connect(sock, (char *) mcf->analytics_endpoint.data) != 0)
    {
        zmq_close(sock);
        return NULL;
    }

    return sock;
}


ngx_int_t
ngx_http_media_events_init_process(ngx_cycle_t *cycle)
{
    ngx_http_media_events_t     *e = &ngx_http_media_ev;
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_media_module);

    if (mcf == NULL || mcf->analytics_endpoint.len == 0
        || ngx_process != NGX_PROCESS_WORKER)
    {
        return NGX_OK;
    }

    ngx_memzero(e, sizeof(ngx_http_media_events_t));

    e->mcf = mcf;
    e->log = cycle->log;
    e->size = mcf->analytics_buffer;
    e->slot = ngx_worker % NGX_HTTP_MEDIA_MAX_WORKERS;

    e->ring = ngx_calloc(e->size * sizeof(ngx_http_media_event_slot_t),
                         cycle->log);
    if (e->ring == NULL) {
        return NGX_ERROR;
    }

    e->zctx = zmq_ctx_new();
    if (e->zctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "media: zmq_ctx_new() failed: %s",
                      zmq_strerror(zmq_errno()));
        return NGX_ERROR;
    }

    /*
     * a bounded ZeroMQ queue: when it is full the ring keeps the events
     * and the timer retries, so memory stays bounded while the daemon is
     * away
     */
    e->sock = ngx_http_media_events_socket(e->zctx, mcf, 10000);
    if (e->sock == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "media: cannot connect to \"%V\": %s",
                      &mcf->analytics_endpoint, zmq_strerror(zmq_errno()));
        return NGX_ERROR;
    }

    e->timer.handler = ngx_http_media_events_tick;
    ngx_http_media_dumb.fd = (ngx_socket_t) -1;
    e->timer.data = &ngx_http_media_dumb;
    e->timer.log = cycle->log;
    e->timer.cancelable = 1;

    ngx_add_timer(&e->timer, NGX_HTTP_MEDIA_EVENTS_TICK);

    return NGX_OK;
}


static void
ngx_http_media_events_free(ngx_http_media_events_t *e,
    ngx_http_media_event_slot_t *s)
{
    free(s->data);
    s->data = NULL;
    e->pending--;
}


static void
ngx_http_media_events_advance(ngx_http_media_events_t *e)
{
    while (e->head < e->tail && e->ring[e->head % e->size].data == NULL) {
        e->head++;
    }

    if (e->scan < e->head) {
        e->scan = e->head;
    }

    e->mcf->metrics->events_pending[e->slot] = e->pending;
}


/*
 * Sends events seq .. seq + n - 1 as one batch whose id is seq; an ACK of
 * that id frees them all.
 */
static ngx_int_t
ngx_http_media_events_send(ngx_http_media_events_t *e, uint64_t seq,
    ngx_uint_t n)
{
    u_char                        id[8];
    int                           i;
    ngx_uint_t                    k, last;
    ngx_http_media_event_slot_t  *s;

    for (i = 0; i < 8; i++) {
        id[i] = (u_char) (seq >> (56 - 8 * i));
    }

    if (zmq_send(e->sock, "EVENTS", 6, ZMQ_SNDMORE|ZMQ_DONTWAIT) != 6) {
        return NGX_AGAIN;
    }

    /* once the first frame is queued the rest of the message follows */

    if (zmq_send(e->sock, id, 8, ZMQ_SNDMORE) != 8) {
        return NGX_ERROR;
    }

    last = 0;
    for (k = n; k > 0; k--) {
        if (e->ring[(seq + k - 1) % e->size].data != NULL) {
            last = k - 1;
            break;
        }
    }

    for (k = 0; k <= last; k++) {
        s = &e->ring[(seq + k) % e->size];

        if (s->data == NULL) {
            continue;
        }

        if (zmq_send(e->sock, s->data, s->len, k < last ? ZMQ_SNDMORE : 0)
            != (int) s->len)
        {
            return NGX_ERROR;
        }
    }

    e->ring[seq % e->size].batch_n = n;

    return NGX_OK;
}


static void
ngx_http_media_events_flush(ngx_http_media_events_t *e)
{
    ngx_uint_t                    n, k;
    ngx_http_media_event_slot_t  *s;

    while (e->unsent < e->tail) {
        n = ngx_min(e->tail - e->unsent, NGX_HTTP_MEDIA_BATCH_MAX);

        if (ngx_http_media_events_send(e, e->unsent, n) != NGX_OK) {
            /* the ZeroMQ queue is full: the next tick tries again */
            return;
        }

        for (k = 0; k < n; k++) {
            s = &e->ring[(e->unsent + k) % e->size];
            s->resend_at = ngx_current_msec + e->mcf->analytics_resend;
        }

        e->unsent += n;
    }
}


static void
ngx_http_media_events_release(ngx_http_media_events_t *e, uint64_t seq,
    ngx_uint_t n, ngx_uint_t rejected)
{
    ngx_uint_t                    k;
    ngx_http_media_event_slot_t  *s;

    for (k = 0; k < n && seq + k < e->tail; k++) {
        s = &e->ring[(seq + k) % e->size];

        if (s->data == NULL || s->seq != seq + k) {
            continue;
        }

        if (rejected) {
            ngx_log_error(NGX_LOG_ERR, e->log, 0,
                          "media: analytics rejected event %uL: %*s",
                          s->seq, (int) s->len, s->data);
            ngx_http_media_metric_add(e->mcf, events_dropped, 1);

        } else {
            ngx_http_media_metric_add(e->mcf, events_acked, 1);
        }

        ngx_http_media_events_free(e, s);
    }
}


static void
ngx_http_media_events_drain(ngx_http_media_events_t *e)
{
    int                           more, n, i;
    u_char                        cmd[8], id[8];
    size_t                        sz;
    uint64_t                      seq;
    ngx_http_media_event_slot_t  *s;

    for ( ;; ) {
        n = zmq_recv(e->sock, cmd, sizeof(cmd), ZMQ_DONTWAIT);
        if (n < 0) {
            break;
        }

        seq = 0;
        sz = sizeof(int);
        more = 0;
        zmq_getsockopt(e->sock, ZMQ_RCVMORE, &more, &sz);

        if (more) {
            n = zmq_recv(e->sock, id, sizeof(id), 0);
            if (n == 8) {
                for (i = 0; i < 8; i++) {
                    seq = (seq << 8) | id[i];
                }
            }

            /* skip the rest of a multipart reply */
            zmq_getsockopt(e->sock, ZMQ_RCVMORE, &more, &sz);
            while (more) {
                u_char  skip[256];

                (void) zmq_recv(e->sock, skip, sizeof(skip), 0);
                zmq_getsockopt(e->sock, ZMQ_RCVMORE, &more, &sz);
            }
        }

        if (seq < e->head || seq >= e->tail) {
            continue;
        }

        s = &e->ring[seq % e->size];

        if (s->seq != seq) {
            continue;
        }

        if (ngx_strncmp(cmd, "NAK", 3) == 0) {
            ngx_log_error(NGX_LOG_ERR, e->log, 0,
                          "media: analytics rejected a batch of %ui events "
                          "from %uL", s->batch_n, seq);

        } else if (ngx_strncmp(cmd, "ACK", 3) != 0) {
            continue;
        }

        ngx_http_media_events_release(e, seq, s->batch_n,
                                      ngx_strncmp(cmd, "NAK", 3) == 0);
    }

    ngx_http_media_events_advance(e);
}


static void
ngx_http_media_events_resend(ngx_http_media_events_t *e)
{
    ngx_uint_t                    n;
    ngx_msec_t                    backoff;
    ngx_http_media_event_slot_t  *s;

    n = 0;

    /* events were queued in seq order, so the oldest come due first */

    for (e->scan = e->head; e->scan < e->unsent; e->scan++) {

        s = &e->ring[e->scan % e->size];

        if (s->data == NULL) {
            continue;
        }

        if ((ngx_msec_int_t) (s->resend_at - ngx_current_msec) > 0) {
            if (s->tries == 0) {
                break;
            }
            continue;
        }

        if (n++ >= NGX_HTTP_MEDIA_RESEND_PER_TICK) {
            break;
        }

        if (ngx_http_media_events_send(e, s->seq, 1) != NGX_OK) {
            break;
        }

        s->tries++;
        backoff = e->mcf->analytics_resend << ngx_min(s->tries, 4);
        s->resend_at = ngx_current_msec
                       + ngx_min(backoff, NGX_HTTP_MEDIA_RESEND_MAX);

        ngx_http_media_metric_add(e->mcf, events_resent, 1);
    }
}


static void
ngx_http_media_events_tick(ngx_event_t *ev)
{
    ngx_http_media_events_t  *e = &ngx_http_media_ev;

    ngx_http_media_events_drain(e);
    ngx_http_media_events_flush(e);
    ngx_http_media_events_resend(e);

    if (ngx_exiting && e->pending == 0) {
        return;
    }

    ngx_add_timer(&e->timer, NGX_HTTP_MEDIA_EVENTS_TICK);
}


void
ngx_http_media_events_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_media_events_t  *e = &ngx_http_media_ev;

    ngx_uint_t  i;

    if (e->sock == NULL) {
        return;
    }

    /* give the daemon a few seconds to ACK what is still out */

    for (i = 0; i < 30 && e->pending; i++) {
        zmq_pollitem_t  item = { e->sock, 0, ZMQ_POLLIN, 0 };

        (void) zmq_poll(&item, 1, 100);
        ngx_time_update();
        ngx_http_media_events_drain(e);
        ngx_http_media_events_flush(e);
        ngx_http_media_events_resend(e);
    }

    if (e->pending) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "media: exiting with %ui analytics events unacknowledged",
                      e->pending);
    }

    /*
     * pool threads may still own sockets of this context, so no
     * zmq_ctx_term() (it would wait for them): the process is exiting
     */
    zmq_close(e->sock);
    e->sock = NULL;
}


static void
ngx_http_media_put_var(mm_buf_t *b, const char *name, ngx_http_request_t *r,
    ngx_int_t index)
{
    ngx_http_variable_value_t  *v;

    mm_buf_puts(b, name);

    if (index == NGX_ERROR) {
        mm_buf_puts(b, "null");
        return;
    }

    v = ngx_http_get_indexed_variable(r, index);

    if (v == NULL || v->not_found || v->len == 0) {
        mm_buf_puts(b, "null");
        return;
    }

    mm_json_put_string(b, (char *) v->data, v->len);
}


static void
ngx_http_media_put_header(mm_buf_t *b, const char *name, ngx_table_elt_t *h)
{
    mm_buf_puts(b, name);

    if (h == NULL) {
        mm_buf_puts(b, "null");
        return;
    }

    mm_json_put_string(b, (char *) h->value.data,
                       ngx_min(h->value.len, 2048));
}


void
ngx_http_media_events_emit(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx)
{
    ngx_http_media_events_t  *e = &ngx_http_media_ev;

    off_t                         bytes;
    mm_buf_t                      b;
    ngx_time_t                   *tp;
    ngx_http_media_event_slot_t  *s;

    if (e->sock == NULL) {
        return;
    }

    if (e->tail - e->head >= e->size) {
        /* a worker cannot hold more: count the loss, never block */
        ngx_http_media_metric_add(e->mcf, events_dropped, 1);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "media: analytics buffer full, event dropped");
        return;
    }

    tp = ngx_timeofday();

    bytes = r->connection->sent - r->header_size;
    if (bytes < 0) {
        bytes = 0;
    }

    mm_buf_init(&b);

    ngx_http_media_put_var(&b, "{\"request_id\":", r,
                           e->mcf->request_id_index);
    mm_buf_printf(&b, ",\"episode_id\":%lld,\"ts\":%lld,\"status\":%u"
                  ",\"bytes\":%lld",
                  (long long) ctx->episode_id,
                  (long long) tp->sec * 1000 + tp->msec,
                  (unsigned) (r->headers_out.status ? r->headers_out.status
                                                    : 499),
                  (long long) bytes);
    ngx_http_media_put_header(&b, ",\"range\":", r->headers_in.range);
    mm_buf_puts(&b, ",\"auth\":");
    mm_json_put_string(&b, ctx->auth, strlen(ctx->auth));
    ngx_http_media_put_var(&b, ",\"cache\":", r,
                           e->mcf->cache_status_index);
    mm_buf_puts(&b, ",\"client\":");
    mm_json_put_string(&b, (char *) r->connection->addr_text.data,
                       r->connection->addr_text.len);
    ngx_http_media_put_header(&b, ",\"user_agent\":",
                              r->headers_in.user_agent);
    ngx_http_media_put_header(&b, ",\"referrer\":", r->headers_in.referer);
    mm_buf_puts(&b, ",\"source\":\"nginx\"}");

    if (b.failed) {
        mm_buf_free(&b);
        ngx_http_media_metric_add(e->mcf, events_dropped, 1);
        return;
    }

    s = &e->ring[e->tail % e->size];
    s->seq = e->tail++;
    s->tries = 0;
    s->batch_n = 0;
    s->data = mm_buf_steal(&b, &s->len);
    s->resend_at = ngx_current_msec + e->mcf->analytics_resend;
    e->pending++;

    ngx_http_media_metric_add(e->mcf, events_emitted, 1);
    e->mcf->metrics->events_pending[e->slot] = e->pending;

    /* the next tick sends it with the others */
}


/*
 * For POST /api/analytics/events, on a pool thread: send the events as one
 * batch on this thread's own socket and wait for the daemon's ACK (the
 * client gets 202 only once the events are journaled).
 */

static __thread void  *ngx_http_media_sync_sock;


mm_status_t
ngx_http_media_events_send_sync(ngx_http_media_main_conf_t *mcf,
    mm_buf_t *frames, size_t *lens, size_t n, int timeout_ms, char *err,
    size_t err_size)
{
    int              i, rc, attempt, more;
    u_char           id[8], reply[8], rid[8];
    size_t           k, sz;
    uint64_t         seq;
    zmq_pollitem_t   item;
    void            *sock;
    const char      *p;

    if (ngx_http_media_ev.zctx == NULL) {
        snprintf(err, err_size, "analytics is not configured");
        return MM_EAGAIN;
    }

    if (ngx_http_media_sync_sock == NULL) {
        ngx_http_media_sync_sock = ngx_http_media_events_socket(
                                       ngx_http_media_ev.zctx, mcf, 1000);
        if (ngx_http_media_sync_sock == NULL) {
            snprintf(err, err_size, "cannot connect: %s",
                     zmq_strerror(zmq_errno()));
            return MM_EAGAIN;
        }
    }

    sock = ngx_http_media_sync_sock;

    if (RAND_bytes(id, sizeof(id)) != 1) {
        snprintf(err, err_size, "no randomness");
        return MM_EAGAIN;
    }

    seq = 0;
    for (i = 0; i < 8; i++) {
        seq = (seq << 8) | id[i];
    }

    for (attempt = 0; attempt < 3; attempt++) {

        if (zmq_send(sock, "EVENTS", 6, ZMQ_SNDMORE) != 6
            || zmq_send(sock, id, 8, n ? ZMQ_SNDMORE : 0) != 8)
        {
            goto fail;
        }

        p = frames->data;
        for (k = 0; k < n; k++) {
            if (zmq_send(sock, p, lens[k], k + 1 < n ? ZMQ_SNDMORE : 0)
                != (int) lens[k])
            {
                goto fail;
            }
            p += lens[k];
        }

        for ( ;; ) {
            item.socket = sock;
            item.fd = 0;
            item.events = ZMQ_POLLIN;
            item.revents = 0;

            rc = zmq_poll(&item, 1, timeout_ms);
            if (rc <= 0) {
                break;
            }

            rc = zmq_recv(sock, reply, sizeof(reply), 0);
            if (rc < 0) {
                goto fail;
            }

            more = 0;
            sz = sizeof(int);
            zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);

            ngx_memzero(rid, sizeof(rid));
            if (more && zmq_recv(sock, rid, sizeof(rid), 0) < 0) {
                goto fail;
            }

            zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
            while (more) {
                u_char  skip[256];

                (void) zmq_recv(sock, skip, sizeof(skip), 0);
                zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
            }

            if (ngx_memcmp(rid, id, 8) != 0) {
                continue;       /* a late reply to an earlier batch */
            }

            if (rc >= 3 && ngx_strncmp(reply, "ACK", 3) == 0) {
                return MM_OK;
            }

            snprintf(err, err_size, "the analytics daemon rejected the batch");
            return MM_EBADDATA;
        }
    }

    snprintf(err, err_size, "the analytics daemon did not acknowledge in time");
    return MM_EAGAIN;

fail:

    snprintf(err, err_size, "send failed: %s", zmq_strerror(zmq_errno()));
    zmq_close(sock);
    ngx_http_media_sync_sock = NULL;

    return MM_EAGAIN;
}
