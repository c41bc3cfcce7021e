/*
 * Heartbeat row upsert: see heartbeat.h.
 */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"


static const char  heartbeat_sql[] =
    "INSERT INTO daemon_heartbeats (name, pid, seen_at, info) "
    "VALUES ($1, $2, now(), $3) "
    "ON CONFLICT (name) DO UPDATE SET pid = EXCLUDED.pid, "
    "seen_at = EXCLUDED.seen_at, info = EXCLUDED.info";


static void heartbeat_done(void *arg, pgc_t *c, const char *error);


void
heartbeat_init(heartbeat_t *hb, const char *name)
{
    memset(hb, 0, sizeof(*hb));
    snprintf(hb->name, sizeof(hb->name), "%s", name);
    snprintf(hb->pid, sizeof(hb->pid), "%d", (int) getpid());
}


int
heartbeat_due(const heartbeat_t *hb, uint64_t now)
{
    return !hb->inflight && now >= hb->next;
}


int
heartbeat_timeout(const heartbeat_t *hb, uint64_t now)
{
    return hb->next <= now ? 0 : (int) (hb->next - now);
}


int
heartbeat_send(heartbeat_t *hb, pgc_t *c, const char *info, uint64_t now)
{
    const char  *params[3];

    if (hb->inflight || !pgc_ready(c)) {
        return -1;
    }

    snprintf(hb->info, sizeof(hb->info), "%s", info);

    params[0] = hb->name;
    params[1] = hb->pid;
    params[2] = hb->info;

    if (pgc_send(c, heartbeat_sql, 3, params, NULL, heartbeat_done, hb)
        != 0)
    {
        return -1;
    }

    hb->inflight = 1;
    hb->next = now + HEARTBEAT_INTERVAL;

    return 0;
}


static void
heartbeat_done(void *arg, pgc_t *c, const char *error)
{
    heartbeat_t  *hb = arg;

    hb->inflight = 0;

    if (error != NULL) {
        log_warnx("heartbeat: %s", error);
    }
}
