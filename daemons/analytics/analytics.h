/*
 * media-analytics: stream events from the nginx module into PostgreSQL
 * (docs/analytics-protocol.md).
 *
 *   ROUTER (CURVE server, ZAP) -> validate -> journal + fdatasync -> ACK
 *   -> COPY into events -> COMMIT -> commit the journal position
 *
 * A batch that hits a duplicate request_id (a resend, a replay) is rolled
 * back and COPYed again through a temp table with INSERT ... ON CONFLICT
 * (request_id) DO NOTHING. Everything runs in the loop's thread; main() is
 * daemons/common/dmain.c.
 */

#ifndef MEDIA_ANALYTICS_H
#define MEDIA_ANALYTICS_H

#include "dmain.h"


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


typedef struct analytics_s  analytics_t;


extern const conf_def_t  analytics_conf_defs[];
extern const dmain_t     analytics_main;


#endif /* MEDIA_ANALYTICS_H */
