/*
 * The plumbing of the claiming daemons: see svc.h.
 */

#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include <curl/curl.h>

#include "bell.h"
#include "dmain.h"
#include "log.h"
#include "svc.h"
#include "util.h"


int
svc_conf_check(const svc_conf_t *conf)
{
    if (zap_check_files(conf->curve_key_file, conf->curve_clients_file)
        != 0)
    {
        return -1;
    }

    if (strlen(conf->heartbeat_name) > 63 || strlen(conf->instance) > 200) {
        log_warnx("heartbeat_name: at most 63 characters, instance: 200");
        return -1;
    }

    return 0;
}


int
svc_open(svc_t *s, const svc_conf_t *conf, void *zctx,
    const char *zap_domain, curlm_done_pt done, void *arg)
{
    memset(s, 0, sizeof(*s));

    s->conf = conf;
    heartbeat_init(&s->hb, conf->heartbeat_name);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_warnx("curl_global_init failed");
        return -1;
    }

    s->curl_init = 1;

    s->pg = pgc_new("postgresql", conf->db, "SET client_encoding TO 'UTF8'");
    if (s->pg == NULL) {
        return -1;
    }

    s->q = pgq_new(s->pg);
    s->cm = curlm_new(done, arg);
    if (s->q == NULL || s->cm == NULL) {
        return -1;
    }

    /* before any CURVE server socket is bound */
    s->zap = zap_new(zctx, conf->curve_clients_file);
    if (s->zap == NULL) {
        return -1;
    }

    s->bell = bell_listen(zctx, conf->listen, conf->curve_key_file,
                          zap_domain);
    if (s->bell == NULL) {
        return -1;
    }

    s->rang = 1;

    return 0;
}


void
svc_close(svc_t *s)
{
    if (s->bell != NULL) {
        zmq_close(s->bell);
        s->bell = NULL;
    }

    zap_destroy(&s->zap);
    curlm_destroy(&s->cm);
    pgq_destroy(&s->q);
    pgc_destroy(&s->pg);
    free(s->items);
    s->items = NULL;
    s->items_cap = 0;

    if (s->curl_init) {
        s->curl_init = 0;
        curl_global_cleanup();
    }
}


/* ---- claims ---------------------------------------------------------- */


int
svc_claim_due(svc_t *s, int room, uint64_t now)
{
    if (s->draining || s->claiming || !room
        || !(s->rang || now >= s->next_poll))
    {
        return 0;
    }

    s->next_poll = now + (uint64_t) s->conf->poll_ms;

    return 1;
}


static void
svc_claim_result(void *arg, PGresult *res)
{
    svc_t  *s = arg;

    s->claim_result(s->claim_arg, res);
}


static void
svc_claim_done(void *arg, const char *error)
{
    svc_t  *s = arg;

    s->claiming = 0;

    if (error != NULL) {
        log_warnx("claim: %s", error);
    }
}


int
svc_claim(svc_t *s, const char *sql, int nparams, const char *const *params,
    pgq_result_pt on_result, void *arg)
{
    s->claim_result = on_result;
    s->claim_arg = arg;

    if (pgq_push(s->q, sql, nparams, params, svc_claim_result,
                 svc_claim_done, s) != 0)
    {
        return -1;
    }

    s->claiming = 1;
    s->rang = 0;

    return 0;
}


/* ---- the loop -------------------------------------------------------- */


int
svc_poll_items(svc_t *s, int room, uint64_t now, zmq_pollitem_t **items,
    long *timeout)
{
    int              k, fd, t, cap;
    short            events;
    zmq_pollitem_t  *it;

    *timeout = HEARTBEAT_INTERVAL;

    /* 0 is dmain's signal pipe; then zap, bell, pg and libcurl's */
    k = 4 + curlm_sockets(s->cm);

    if (k >= s->items_cap) {
        for (cap = s->items_cap ? s->items_cap * 2 : 32; cap <= k; cap *= 2) {
            /* void */
        }

        it = realloc(s->items, sizeof(zmq_pollitem_t) * (size_t) cap);
        if (it == NULL) {
            fatal("realloc");
        }

        s->items = it;
        s->items_cap = cap;
    }

    s->idx_zap = 1;
    dmain_item(&s->items[1], zap_socket(s->zap), 0, ZMQ_POLLIN);
    s->idx_bell = 2;
    dmain_item(&s->items[2], s->bell, 0, ZMQ_POLLIN);
    k = 3;

    s->idx_pg = -1;
    fd = pgc_fd(s->pg, &events);
    if (fd >= 0) {
        s->idx_pg = k;
        dmain_item(&s->items[k++], NULL, fd, events);
    }

    t = pgc_timeout(s->pg, now);
    if (t >= 0) {
        dmain_lower(timeout, now + (uint64_t) t, now);
    }

    if (pgc_up(s->pg)) {
        dmain_lower(timeout, now + (uint64_t) heartbeat_timeout(&s->hb, now),
                  now);
    }

    if (pgc_ready(s->pg) && pgq_pending(s->q) > 0) {
        *timeout = 0;
    }

    if (!s->draining && !s->claiming && room) {
        dmain_lower(timeout, s->rang ? now : s->next_poll, now);
    }

    if (s->draining) {
        dmain_lower(timeout, s->drain_deadline, now);
    }

    s->idx_curl = k;
    s->n_curl = curlm_poll_items(s->cm, s->items + k, s->items_cap - k,
                                 timeout);
    k += s->n_curl;

    *items = s->items;

    return k;
}


void
svc_process(svc_t *s, zmq_pollitem_t *items, int n)
{
    short  revents;

    if (items[s->idx_zap].revents & ZMQ_POLLIN) {
        zap_handle(s->zap);
    }

    if (items[s->idx_bell].revents & ZMQ_POLLIN) {
        if (bell_drain(s->bell) > 0) {
            log_debug("doorbell");
            s->rang = 1;
        }
    }

    curlm_process(s->cm, items + s->idx_curl, s->n_curl);

    revents = 0;
    if (s->idx_pg >= 0 && s->idx_pg < n) {
        revents = items[s->idx_pg].revents;
    }

    pgc_process(s->pg, revents, now_mono_ms());
}


void
svc_reload(svc_t *s)
{
    if (zap_reload(s->zap) == 0) {
        log_info("reloaded %s", s->conf->curve_clients_file);
    }
}


void
svc_drain(svc_t *s, uint64_t ms)
{
    s->draining = 1;
    s->drain_deadline = now_mono_ms() + ms;
}


int
svc_drained(const svc_t *s)
{
    return s->draining && now_mono_ms() >= s->drain_deadline;
}
