/*
 * One non-blocking PostgreSQL connection for a zmq_poll loop.
 *
 * pgc never blocks the loop on the server: it connects with PQconnectStart
 * and PQconnectPoll (host name lookup excepted: use an address or a unix
 * socket directory), runs one query at a time with PQsendQuery /
 * PQsendQueryParams, feeds COPY data with PQputCopyData and reads results
 * with PQconsumeInput / PQisBusy, waiting on PQsocket() in the caller's poll
 * set. When the connection fails or the server goes away it reconnects
 * with exponential backoff (100 ms doubling up to 2 s); a query that takes
 * longer than 30 s is treated as a dead connection.
 *
 * The loop:
 *     fd = pgc_fd(c, &events);        add { NULL, fd, events } when fd >= 0
 *     timeout = min(..., pgc_timeout(c, now))
 *     zmq_poll(...)
 *     pgc_process(c, revents_of_fd, now)
 */

#ifndef MEDIA_PGC_H
#define MEDIA_PGC_H

#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "buf.h"


typedef struct pgc_s  pgc_t;

/*
 * Called with every result of the query; res stays owned by pgc (it is
 * PQclear'ed after the call). On PGRES_COPY_IN call pgc_copy_data().
 */
typedef void (*pgc_result_pt)(void *arg, pgc_t *c, PGresult *res);

/*
 * Called once when the query is over: error is NULL on success, otherwise
 * the first error message (a failed statement or a lost connection). The
 * connection is idle again unless it was lost; the callback may send the
 * next query or pgc_reset().
 */
typedef void (*pgc_done_pt)(void *arg, pgc_t *c, const char *error);


/*
 * conninfo and setup_sql (run after every connect, may be NULL) are copied.
 * name is used in log lines. Returns NULL (logged) when out of memory.
 */
pgc_t *pgc_new(const char *name, const char *conninfo,
    const char *setup_sql);
void pgc_destroy(pgc_t **cp);

/* connected and no query in flight */
int pgc_ready(const pgc_t *c);
/* connected (maybe busy) */
int pgc_up(const pgc_t *c);

/*
 * Sends a query (several statements allowed when nparams == 0). Only when
 * pgc_ready(). Returns 0, or -1 when it could not be sent (the connection
 * is reset; the callbacks are not called).
 */
int pgc_send(pgc_t *c, const char *sql, int nparams,
    const char *const *params, pgc_result_pt on_result, pgc_done_pt on_done,
    void *arg);

/*
 * From on_result with a PGRES_COPY_IN result: sends data[0..len) and ends
 * the COPY. data must stay valid until on_done.
 */
void pgc_copy_data(pgc_t *c, const char *data, size_t len);

/* the socket to poll and the events wanted (ZMQ_POLLIN/OUT), or -1 */
int pgc_fd(const pgc_t *c, short *events);

/* ms until pgc_process() is due without I/O, -1 when nothing is pending */
int pgc_timeout(const pgc_t *c, uint64_t now);

/* handles socket readiness (revents may be 0) and timers */
void pgc_process(pgc_t *c, short revents, uint64_t now);

/* drops the connection (a pending on_done gets the error) and reconnects */
void pgc_reset(pgc_t *c, const char *why);

/* COPY text format: \\ \t \n \r escaped; s == NULL writes \N */
void pgc_copy_escape(mm_buf_t *b, const char *s, size_t len);


#endif /* MEDIA_PGC_H */
