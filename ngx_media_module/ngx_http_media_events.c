
/*
 * ngx_media: analytics events from the log phase to daemons/analytics.
 *
 * Each worker owns a ZeroMQ DEALER (CURVE client). An event is built as
 * JSON (one pass into a buffer sized for the worst case) and kept in a
 * per-worker ring: the request never waits. Every tick the new events go
 * out as one batch (ZMQ_DONTWAIT), packed many to a frame ('\n' between
 * them), so CURVE encrypts once per frame, not once per event. The daemon
 * ACKs a batch once it is in its journal; a timer drains ACKs and resends
 * what was not ACKed in time, so a daemon killed mid-stream loses nothing
 * (duplicates are dropped by request_id). Resends back off while the daemon
 * is silent; once it ACKs a batch sent after an event that is still
 * unACKed (the daemon ACKs in the order it received), that event was lost
 * with the old connection and goes out again at once, as its whole batch
 * when none of the batch was ACKed. Only a full ring drops events, counted
 * in /metrics. See docs/analytics-protocol.md.
 */

#include "ngx_http_media.h"

#include <zmq.h>
#include <openssl/rand.h>


#define NGX_HTTP_MEDIA_EVENTS_TICK       50      /* ms */
#define NGX_HTTP_MEDIA_BATCH_MAX         1000    /* events a message */
#define NGX_HTTP_MEDIA_RESEND_PER_TICK   8000    /* events */
#define NGX_HTTP_MEDIA_RESEND_MAX        8000    /* ms, backoff cap */

/*
 * Bytes of events a frame (the daemon takes frames up to 256 KB). Every
 * event fits: the module's are at most NGX_HTTP_MEDIA_EVENT_MAX (seven
 * strings of at most 2048 bytes, escaped), the API checks its own.
 */
#define NGX_HTTP_MEDIA_FRAME_MAX         (128 * 1024)
#define NGX_HTTP_MEDIA_FIELD_MAX         2048
#define NGX_HTTP_MEDIA_EVENT_MAX                                              \
    (512 + 7 * MM_JSON_ESCAPED_MAX(NGX_HTTP_MEDIA_FIELD_MAX))


typedef struct {
    uint64_t      seq;
    ngx_msec_t    sent_at;          /* last sent */
    ngx_msec_t    resend_at;
    ngx_uint_t    tries;
    ngx_uint_t    batch_n;          /* events of the batch this seq opens */
    char         *data;             /* malloc'd event JSON */
    size_t        len;
} ngx_http_media_event_slot_t;


/* events packed into frames of one message as they are added */
typedef struct {
    void                          *sock;
    u_char                        *buf;      /* FRAME_MAX bytes */
    size_t                         len;
} ngx_http_media_frames_t;


typedef struct {
    void                          *zctx;
    void                          *sock;
    ngx_http_media_main_conf_t    *mcf;
    ngx_http_media_frames_t        frames;
    u_char                        *event;    /* EVENT_MAX bytes: emit's */
    ngx_http_media_event_slot_t   *ring;
    ngx_uint_t                     size;
    uint64_t                       head;     /* oldest seq not yet freed */
    uint64_t                       tail;     /* next seq */
    uint64_t                       scan;     /* resend scan position */
    uint64_t                       unsent;   /* first seq never sent */
    ngx_uint_t                     pending;
    ngx_uint_t                     acked;    /* some batch was ACKed */
    ngx_msec_t                     acked_sent_at; /* latest sent_at ACKed */
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
static ngx_int_t ngx_http_media_frames_add(ngx_http_media_frames_t *f,
    const void *data, size_t len);
static ngx_int_t ngx_http_media_frames_end(ngx_http_media_frames_t *f);


static void *
ngx_http_media_events_socket(void *zctx, ngx_http_media_main_conf_t *mcf,
    int hwm)
{
    int    one = 1;
    void  *sock;

    sock = ngx_http_media_curve_socket(zctx, ZMQ_DEALER, hwm, &mcf->curve);
    if (sock == NULL) {
        return NULL;
    }

    if (zmq_setsockopt(sock, ZMQ_IPV6, &one, sizeof(int)) != 0
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
    e->event = ngx_alloc(NGX_HTTP_MEDIA_EVENT_MAX, cycle->log);
    e->frames.buf = ngx_alloc(NGX_HTTP_MEDIA_FRAME_MAX, cycle->log);

    if (e->ring == NULL || e->event == NULL || e->frames.buf == NULL) {
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

    e->frames.sock = e->sock;

    e->timer.handler = ngx_http_media_events_tick;
    ngx_http_media_dumb.fd = (ngx_socket_t) -1;
    e->timer.data = &ngx_http_media_dumb;
    e->timer.log = cycle->log;
    e->timer.cancelable = 1;

    ngx_add_timer(&e->timer, NGX_HTTP_MEDIA_EVENTS_TICK);

    return NGX_OK;
}


/*
 * Adds an event (len <= FRAME_MAX) to the message being sent, after a '\n'
 * in the current frame, or in a new one when that one is full.
 */
static ngx_int_t
ngx_http_media_frames_add(ngx_http_media_frames_t *f, const void *data,
    size_t len)
{
    if (f->len > 0 && f->len + 1 + len > NGX_HTTP_MEDIA_FRAME_MAX) {
        if (zmq_send(f->sock, f->buf, f->len, ZMQ_SNDMORE) != (int) f->len) {
            return NGX_ERROR;
        }

        f->len = 0;
    }

    if (f->len > 0) {
        f->buf[f->len++] = '\n';
    }

    ngx_memcpy(f->buf + f->len, data, len);
    f->len += len;

    return NGX_OK;
}


/* sends the last frame: the message is complete */
static ngx_int_t
ngx_http_media_frames_end(ngx_http_media_frames_t *f)
{
    size_t  len;

    len = f->len;
    f->len = 0;

    return zmq_send(f->sock, f->buf, len, 0) == (int) len ? NGX_OK
                                                          : NGX_ERROR;
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
    ngx_uint_t                    k;
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

    /* events of the batch freed meanwhile are left out; one at least is not */

    e->frames.len = 0;

    for (k = 0; k < n; k++) {
        s = &e->ring[(seq + k) % e->size];

        if (s->data != NULL
            && ngx_http_media_frames_add(&e->frames, s->data, s->len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_media_frames_end(&e->frames) != NGX_OK) {
        return NGX_ERROR;
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
            s->sent_at = ngx_current_msec;
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

        } else if (s->data != NULL
                   && (!e->acked
                       || (ngx_msec_int_t) (s->sent_at - e->acked_sent_at)
                          > 0))
        {
            e->acked = 1;
            e->acked_sent_at = s->sent_at;
        }

        ngx_http_media_events_release(e, seq, s->batch_n,
                                      ngx_strncmp(cmd, "NAK", 3) == 0);
    }

    ngx_http_media_events_advance(e);
}


static void
ngx_http_media_events_resend(ngx_http_media_events_t *e)
{
    ngx_uint_t                    n, k, sent;
    ngx_msec_t                    backoff;
    ngx_http_media_event_slot_t  *s, *b;

    sent = 0;

    /*
     * events were first sent in seq order, so the oldest come due first,
     * and so do the lost ones: sent before a batch the daemon ACKed
     */

    for (e->scan = e->head; e->scan < e->unsent; e->scan++) {

        s = &e->ring[e->scan % e->size];

        if (s->data == NULL) {
            continue;
        }

        if ((ngx_msec_int_t) (s->resend_at - ngx_current_msec) > 0
            && !(e->acked
                 && (ngx_msec_int_t) (e->acked_sent_at - s->sent_at) > 0))
        {
            if (s->tries == 0) {
                break;
            }
            continue;
        }

        /* the whole batch this event opens, when none of it was ACKed */

        n = s->batch_n;

        if (n < 2 || e->scan + n > e->unsent) {
            n = 1;
        }

        for (k = 1; k < n; k++) {
            b = &e->ring[(e->scan + k) % e->size];

            if (b->data == NULL || b->seq != e->scan + k
                || b->tries != s->tries)
            {
                n = 1;
                break;
            }
        }

        if (sent && sent + n > NGX_HTTP_MEDIA_RESEND_PER_TICK) {
            break;
        }

        if (ngx_http_media_events_send(e, s->seq, n) != NGX_OK) {
            break;
        }

        backoff = e->mcf->analytics_resend << ngx_min(s->tries + 1, 4);
        backoff = ngx_min(backoff, NGX_HTTP_MEDIA_RESEND_MAX);

        for (k = 0; k < n; k++) {
            b = &e->ring[(e->scan + k) % e->size];
            b->tries++;
            b->sent_at = ngx_current_msec;
            b->resend_at = ngx_current_msec + backoff;
        }

        sent += n;
        e->scan += n - 1;

        ngx_http_media_metric_add(e->mcf, events_resent, n);
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


/*
 * ,"name": and the value as a JSON string (at most FIELD_MAX bytes of it),
 * or null when data is NULL
 */
static u_char *
ngx_http_media_put_field(u_char *p, const char *name, size_t name_len,
    u_char *data, size_t len)
{
    p = ngx_cpymem(p, name, name_len);

    if (data == NULL) {
        return ngx_cpymem(p, "null", 4);
    }

    *p++ = '"';
    p = (u_char *) mm_json_escape((char *) p, (char *) data,
                                  ngx_min(len, NGX_HTTP_MEDIA_FIELD_MAX));
    *p++ = '"';

    return p;
}


#define ngx_http_media_put(p, name, data, len)                               \
    ngx_http_media_put_field(p, name, sizeof(name) - 1, data, len)

/* ,"name": and an integer (not ngx_sprintf(): a third of the event's cost) */
#define ngx_http_media_put_int(p, name, v)                                    \
    (u_char *) mm_json_int((char *) ngx_cpymem(p, name, sizeof(name) - 1),   \
                           (int64_t) (v))


/* the variable's value, NULL when it has none */
static u_char *
ngx_http_media_var(ngx_http_request_t *r, ngx_int_t index, size_t *len)
{
    ngx_http_variable_value_t  *v;

    v = index == NGX_ERROR ? NULL : ngx_http_get_indexed_variable(r, index);

    if (v == NULL || v->not_found || v->len == 0) {
        *len = 0;
        return NULL;
    }

    *len = v->len;

    return v->data;
}


/* the header's value, NULL when the request has none */
static u_char *
ngx_http_media_header(ngx_table_elt_t *h, size_t *len)
{
    if (h == NULL) {
        *len = 0;
        return NULL;
    }

    *len = h->value.len;

    return h->value.data;
}


void
ngx_http_media_events_emit(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx)
{
    ngx_http_media_events_t  *e = &ngx_http_media_ev;

    off_t                         bytes;
    size_t                        len;
    u_char                       *p, *data;
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

    /*
     * one pass into e->event: seven fields of at most FIELD_MAX bytes,
     * escaped, and the fixed text fit in EVENT_MAX
     */

    data = ngx_http_media_var(r, e->mcf->request_id_index, &len);
    p = ngx_http_media_put(e->event, "{\"request_id\":", data, len);
    p = ngx_http_media_put_int(p, ",\"episode_id\":", ctx->episode_id);
    p = ngx_http_media_put_int(p, ",\"ts\":",
                               (int64_t) tp->sec * 1000 + tp->msec);
    p = ngx_http_media_put_int(p, ",\"status\":",
                               r->headers_out.status ? r->headers_out.status
                                                     : 499);
    p = ngx_http_media_put_int(p, ",\"bytes\":", bytes);
    data = ngx_http_media_header(r->headers_in.range, &len);
    p = ngx_http_media_put(p, ",\"range\":", data, len);
    p = ngx_http_media_put(p, ",\"auth\":", (u_char *) ctx->auth,
                           ngx_strlen(ctx->auth));
    data = ngx_http_media_var(r, e->mcf->cache_status_index, &len);
    p = ngx_http_media_put(p, ",\"cache\":", data, len);
    p = ngx_http_media_put(p, ",\"client\":", r->connection->addr_text.data,
                           r->connection->addr_text.len);
    data = ngx_http_media_header(r->headers_in.user_agent, &len);
    p = ngx_http_media_put(p, ",\"user_agent\":", data, len);
    data = ngx_http_media_header(r->headers_in.referer, &len);
    p = ngx_http_media_put(p, ",\"referrer\":", data, len);
    p = ngx_cpymem(p, ",\"source\":\"nginx\"}",
                   sizeof(",\"source\":\"nginx\"}") - 1);

    s = &e->ring[e->tail % e->size];

    s->len = p - e->event;
    s->data = malloc(s->len);

    if (s->data == NULL) {
        ngx_http_media_metric_add(e->mcf, events_dropped, 1);
        return;
    }

    ngx_memcpy(s->data, e->event, s->len);

    s->seq = e->tail++;
    s->tries = 0;
    s->batch_n = 0;
    s->sent_at = ngx_current_msec;
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
    int                       rc, attempt, more;
    u_char                    id[8], reply[8], rid[8];
    size_t                    k, sz;
    mm_status_t               st;
    zmq_pollitem_t            item;
    void                     *sock;
    const char               *p;
    ngx_http_media_frames_t   f;

    if (ngx_http_media_ev.zctx == NULL) {
        snprintf(err, err_size, "analytics is not configured");
        return MM_EAGAIN;
    }

    for (k = 0; k < n; k++) {
        if (lens[k] > NGX_HTTP_MEDIA_FRAME_MAX) {
            snprintf(err, err_size, "event %zu is over %d bytes", k,
                     NGX_HTTP_MEDIA_FRAME_MAX);
            return MM_EBADDATA;
        }
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

    f.sock = sock;
    f.len = 0;
    f.buf = malloc(NGX_HTTP_MEDIA_FRAME_MAX);

    if (f.buf == NULL) {
        snprintf(err, err_size, "out of memory");
        return MM_EAGAIN;
    }

    for (attempt = 0; attempt < 3; attempt++) {

        if (zmq_send(sock, "EVENTS", 6, ZMQ_SNDMORE) != 6
            || zmq_send(sock, id, 8, ZMQ_SNDMORE) != 8)
        {
            goto fail;
        }

        /* the events packed as the ring's are */

        p = frames->data;
        for (k = 0; k < n; k++) {
            if (ngx_http_media_frames_add(&f, p, lens[k]) != NGX_OK) {
                goto fail;
            }
            p += lens[k];
        }

        if (ngx_http_media_frames_end(&f) != NGX_OK) {
            goto fail;
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
                st = MM_OK;
                goto done;
            }

            snprintf(err, err_size, "the analytics daemon rejected the batch");
            st = MM_EBADDATA;
            goto done;
        }
    }

    snprintf(err, err_size, "the analytics daemon did not acknowledge in time");
    st = MM_EAGAIN;
    goto done;

fail:

    snprintf(err, err_size, "send failed: %s", zmq_strerror(zmq_errno()));
    zmq_close(sock);
    ngx_http_media_sync_sock = NULL;
    st = MM_EAGAIN;

done:

    free(f.buf);

    return st;
}
