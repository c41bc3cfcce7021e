/*
 * media-packager: probes uploads and packages them into cbcs-encrypted
 * DASH + HLS (docs/packaging.md).
 *
 *   input_content 'uploaded'  -> ffprobe (lib/probe) -> 'ready' | 'invalid'
 *   packaged_content 'queued' (or 'running' with a stale heartbeat)
 *       -> claimed FOR UPDATE SKIP LOCKED -> pack.c (ffmpeg remux, lib/cbcs,
 *          lib/mpd, lib/hls) -> 'done' | 'failed' + a webhook outbox row
 *
 * Several packagers may share the database: each claims one row at a time
 * with SKIP LOCKED and keeps the rows it works on fresh (heartbeat_at every
 * 2 s); a row whose heartbeat is older than reclaim_after seconds, or whose
 * claimer was a packager on this host that no longer exists, is taken over.
 * Jobs are found by polling (poll_ms) and at once when the doorbell rings:
 * a ZeroMQ PULL socket (CURVE server, clients admitted by ZAP from
 * curve_clients_file) on which any message means "look for work".
 *
 * main.c owns options, config, signals and the zmq_poll loop; everything
 * here runs in the loop's thread and never waits for a child process.
 */

#ifndef MEDIA_PACKAGER_H
#define MEDIA_PACKAGER_H

#include <zmq.h>

#include "config.h"


typedef struct {
    char   *db;
    char   *listen;
    char   *curve_key_file;
    char   *curve_clients_file;
    char   *uploads_dir;
    char   *output_dir;
    char   *ffmpeg;
    char   *ffprobe;
    char   *license_url;
    char   *notifier_endpoint;
    char   *notifier_key_file;
    char   *heartbeat_name;
    char   *pid_file;
    long    jobs;
    long    probes;
    long    segment_ms;
    long    read_rate;
    long    poll_ms;
    long    reclaim_after;
    long    max_attempts;
    long    probe_timeout;
    long    sync;
} packager_conf_t;


extern const conf_def_t  packager_conf_defs[];


typedef struct packager_s  packager_t;


/* key and clients files load, names fit; 0 or -1 (logged) */
int packager_conf_check(const packager_conf_t *conf);

/* NULL on error (logged); conf must outlive it; zctx is the caller's */
packager_t *packager_new(const packager_conf_t *conf, void *zctx);
void packager_destroy(packager_t **pp);

/* the most poll items packager_poll_items() may fill */
int packager_poll_max(const packager_t *pk);

int packager_poll_items(packager_t *pk, zmq_pollitem_t *items,
    long *timeout);
void packager_process(packager_t *pk, zmq_pollitem_t *items, int n);

void packager_reload(packager_t *pk);

/*
 * SIGTERM: stop claiming, kill the children, put the rows being worked on
 * back in the queue (for at most a few seconds while PostgreSQL answers;
 * otherwise they are reclaimed once their heartbeat is stale).
 */
void packager_drain(packager_t *pk);
int packager_finished(packager_t *pk);


#endif /* MEDIA_PACKAGER_H */
