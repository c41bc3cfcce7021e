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
 * main() is daemons/common/dmain.c (options, config, signals, the zmq_poll
 * loop); everything here runs in the loop's thread and never waits for a
 * child process. SIGTERM stops claiming, kills the children and puts the
 * rows being worked on back in the queue (for at most a few seconds while
 * PostgreSQL answers; otherwise they are reclaimed once their heartbeat is
 * stale). SIGHUP reloads the clients file.
 *
 * At start and every orphan_sweep_s seconds it removes from uploads_dir
 * the uploads no input_content row refers to (nginx died between linking
 * an upload into place and inserting its row) once they are older than
 * orphan_grace_s: the directory is read a few entries a turn of the loop
 * and the names are looked up a batch a statement, like any other.
 */

#ifndef MEDIA_PACKAGER_H
#define MEDIA_PACKAGER_H

#include "dmain.h"


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
    long    orphan_sweep_s;
    long    orphan_grace_s;
} packager_conf_t;


extern const dmain_t  packager_main;


#endif /* MEDIA_PACKAGER_H */
