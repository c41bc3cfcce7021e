/*
 * The plumbing of a daemon that claims rows of PostgreSQL and works on them
 * with libcurl (daemons/archiver, daemons/notifier), run by dmain():
 *
 *   PostgreSQL    a non-blocking connection (pgc) and its statement queue
 *                 (pgq); the heartbeat row (heartbeat_send() on s->hb)
 *   doorbell      a PULL socket (CURVE server, clients admitted by ZAP from
 *                 curve_clients_file); a ring means "look for work now"
 *   claims        at most one claim statement in flight; one is due when
 *                 the bell rang or poll_ms passed, and there is room
 *   HTTP          libcurl's multi interface (curlm) in the same poll
 *   drain         SIGTERM: a deadline after which the daemon stops anyway
 *
 * The daemon's object embeds an svc_t and its conf an svc_conf_t (its
 * config table points its keys there); its dmain_t callbacks call these.
 */

#ifndef MEDIA_SVC_H
#define MEDIA_SVC_H

#include <stdint.h>
#include <zmq.h>

#include "curlm.h"
#include "heartbeat.h"
#include "pgc.h"
#include "pgq.h"
#include "zap.h"


typedef struct {
    char   *db;
    char   *listen;
    char   *curve_key_file;
    char   *curve_clients_file;
    char   *instance;           /* the claims' owner */
    char   *heartbeat_name;
    long    poll_ms;
} svc_conf_t;


typedef struct {
    const svc_conf_t    *conf;
    pgc_t               *pg;
    pgq_t               *q;
    heartbeat_t          hb;
    zap_t               *zap;
    void                *bell;
    curlm_t             *cm;
    int                  curl_init;

    int                  claiming;      /* a claim statement in flight */
    int                  rang;          /* claim without waiting */
    uint64_t             next_poll;     /* monotonic ms */
    pgq_result_pt        claim_result;
    void                *claim_arg;

    int                  draining;
    uint64_t             drain_deadline;

    zmq_pollitem_t      *items;
    int                  items_cap;
    int                  idx_zap;
    int                  idx_bell;
    int                  idx_pg;
    int                  idx_curl;
    int                  n_curl;
} svc_t;


/* the key files load, the names fit; 0 or -1 (logged) */
int svc_conf_check(const svc_conf_t *conf);

/*
 * Connects (in the background), binds the doorbell (ZAP domain zap_domain)
 * and sets up libcurl, whose finished transfers go to done(arg); the first
 * claim is due at once. 0, or -1 (logged): call svc_close() either way.
 */
int svc_open(svc_t *s, const svc_conf_t *conf, void *zctx,
    const char *zap_domain, curlm_done_pt done, void *arg);
/* after the daemon has removed its transfers and freed what they use */
void svc_close(svc_t *s);

/*
 * 1 when a claim should be sent now: not draining, none in flight, room
 * for more work, and the bell rang or the poll timer ran out (restarted).
 */
int svc_claim_due(svc_t *s, int room, uint64_t now);

/*
 * Queues the claim statement; on_result(arg, res) gets its rows. Errors
 * are logged; the next claim is due on the timer or a ring. 0 or -1.
 */
int svc_claim(svc_t *s, const char *sql, int nparams,
    const char *const *params, pgq_result_pt on_result, void *arg);

/*
 * dmain's poll_items: item 0 left for dmain, then the ZAP socket, the
 * doorbell, PostgreSQL and libcurl's sockets. *timeout is the nearest of
 * the heartbeat, pgc's timer, a queued statement, the next claim (when
 * there is room), the drain deadline and libcurl's timer; the daemon may
 * lower it further (dmain_lower). Returns the count for zmq_poll.
 */
int svc_poll_items(svc_t *s, int room, uint64_t now, zmq_pollitem_t **items,
    long *timeout);

/* dmain's process, before the daemon's own work: ZAP, bell, libcurl, pgc */
void svc_process(svc_t *s, zmq_pollitem_t *items, int n);

/* dmain's reload: the clients file */
void svc_reload(svc_t *s);

/* dmain's drain: no more claims; svc_drained() once ms have passed */
void svc_drain(svc_t *s, uint64_t ms);
int svc_drained(const svc_t *s);


#endif /* MEDIA_SVC_H */
