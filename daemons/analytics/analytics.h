/*
 * media-analytics: stream events from the nginx module into PostgreSQL
 * (docs/analytics-protocol.md).
 *
 *   ROUTER (CURVE server, ZAP) -> validate -> journal + fdatasync -> ACK
 *   journal (from the committed position) -> COPY -> INSERT ... ON CONFLICT
 *   (request_id) DO NOTHING -> COMMIT -> commit the journal position
 *
 * main.c owns options, config, signals and the zmq_poll loop; this file's
 * functions do the job. Everything runs in the loop's thread.
 */

#ifndef MEDIA_ANALYTICS_H
#define MEDIA_ANALYTICS_H

#include <stdint.h>
#include <zmq.h>

#include "config.h"


typedef struct {
    char   *db;
    char   *listen;
    char   *curve_key_file;
    char   *curve_clients_file;
    char   *journal_dir;
    char   *heartbeat_name;
    char   *pid_file;
    long    batch_max;
    long    flush_ms;
} analytics_conf_t;


extern const conf_def_t  analytics_conf_defs[];


typedef struct analytics_s  analytics_t;


#define ANALYTICS_POLL_MAX  4


/*
 * Checks what -n checks beyond the syntax: the key file and the clients
 * file load. 0 or -1 (logged).
 */
int analytics_conf_check(const analytics_conf_t *conf);

/*
 * Opens the journal, binds the sockets (zctx is the caller's), starts the
 * PostgreSQL connection. conf must outlive the object. NULL on error
 * (logged).
 */
analytics_t *analytics_new(const analytics_conf_t *conf, void *zctx);
void analytics_destroy(analytics_t **ap);

/* fills up to ANALYTICS_POLL_MAX items, returns the count and *timeout */
int analytics_poll_items(analytics_t *a, zmq_pollitem_t *items,
    long *timeout);

/* after zmq_poll on exactly those items (revents set) */
void analytics_process(analytics_t *a, zmq_pollitem_t *items, int n);

/* SIGHUP: reload the clients file */
void analytics_reload(analytics_t *a);

/*
 * SIGTERM: stop receiving, then keep writing the journal to PostgreSQL
 * (if it is up) for at most a few seconds.
 */
void analytics_drain(analytics_t *a);

/* 1 when draining is over and the loop should end */
int analytics_finished(analytics_t *a);


#endif /* MEDIA_ANALYTICS_H */
