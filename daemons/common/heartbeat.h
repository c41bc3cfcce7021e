/*
 * The daemons' heartbeat row: every second (when the connection is idle)
 *
 *   INSERT INTO daemon_heartbeats (name, pid, seen_at, info)
 *   VALUES ($1, $2, now(), $3) ON CONFLICT (name) DO UPDATE ...
 *
 * /healthz in the nginx module reads these rows.
 */

#ifndef MEDIA_HEARTBEAT_H
#define MEDIA_HEARTBEAT_H

#include <stdint.h>

#include "pgc.h"


#define HEARTBEAT_INTERVAL  1000


typedef struct {
    char       name[64];
    char       pid[16];
    char       info[512];
    uint64_t   next;            /* monotonic ms */
    int        inflight;
} heartbeat_t;


void heartbeat_init(heartbeat_t *hb, const char *name);

/* 1 when a beat is due and none is in flight */
int heartbeat_due(const heartbeat_t *hb, uint64_t now);

/* ms until the next beat, 0 when due */
int heartbeat_timeout(const heartbeat_t *hb, uint64_t now);

/* sends one beat with info (copied) if pgc_ready(c); 0 sent, -1 not */
int heartbeat_send(heartbeat_t *hb, pgc_t *c, const char *info,
    uint64_t now);


#endif /* MEDIA_HEARTBEAT_H */
