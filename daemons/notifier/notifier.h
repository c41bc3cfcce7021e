/*
 * media-notifier: delivers the webhook outbox (docs/archives.md).
 *
 *   doorbell (PULL, CURVE) or a poll timer
 *     -> claim due rows of webhook_outbox (lease, FOR UPDATE SKIP LOCKED)
 *     -> POST each signed, several at once (libcurl multi in the loop)
 *     -> record the outcome: delivered (2xx), or the next attempt with
 *        exponential backoff and jitter, until max_age after the event
 *
 * main() is daemons/common/dmain.c; this file's functions do the job.
 */

#ifndef MEDIA_NOTIFIER_H
#define MEDIA_NOTIFIER_H

#include "dmain.h"
#include "svc.h"


typedef struct {
    svc_conf_t  svc;            /* db, listen, curve_*, instance, ... */
    char   *operator_url;
    char   *secret_file;
    long    allow_private;
    long    max_inflight;
    long    timeout;
    long    retry_base_ms;
    long    retry_max_ms;
    long    max_age;
    char   *pid_file;
} notifier_conf_t;


extern const dmain_t  notifier_main;


#endif /* MEDIA_NOTIFIER_H */
