/*
 * media-archiver: background ZIP archives of public URLs (docs/archives.md).
 *
 *   doorbell (PULL, CURVE) or a poll timer
 *     -> claim an archive (archive_claim: FOR UPDATE SKIP LOCKED, a lease)
 *     -> download its files into a work directory, several at once with a
 *        per-host limit (libcurl multi in the loop), resuming with Range +
 *        If-Range, retrying transient failures with backoff and jitter
 *     -> append them in request order to a temporary ZIP (lib/zip), each
 *        entry's record stored in PostgreSQL (archive_sync)
 *     -> central directory, rename, archive_finish (+ webhook outbox rows
 *        in the same transaction), ring the notifier
 *
 * Everything runs in the loop's thread; PostgreSQL through a statement
 * queue on a non-blocking connection. State on disk (part files, the
 * temporary ZIP) plus the rows make any restart resume where it stopped.
 * main() is daemons/common/dmain.c.
 */

#ifndef MEDIA_ARCHIVER_H
#define MEDIA_ARCHIVER_H

#include "dmain.h"
#include "svc.h"


typedef struct {
    svc_conf_t  svc;            /* db, listen, curve_*, instance, ... */
    char   *notifier_endpoint;
    char   *notifier_public_key;
    char   *archive_dir;
    char   *public_url;
    long    allow_private;
    long    max_archives;
    long    max_downloads;
    long    per_host;
    long    connect_timeout;
    long    low_speed_limit;
    long    low_speed_time;
    long    max_redirects;
    long    max_file_size;
    long    max_archive_size;
    long    max_attempts;
    long    retry_base_ms;
    long    retry_max_ms;
    long    retry_after_max;
    long    fsync;
    char   *pid_file;
} archiver_conf_t;


extern const dmain_t  archiver_main;


#endif /* MEDIA_ARCHIVER_H */
