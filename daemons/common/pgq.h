/*
 * A FIFO of parameterised statements over one pgc_t, for daemons whose
 * PostgreSQL work is a sequence of independent statements (daemons/archiver,
 * daemons/notifier).
 *
 * Statements go out one at a time whenever the connection is ready
 * (pgq_pump() from the loop, after pgc_process()). One cut off by a lost
 * connection is sent again once pgc has reconnected, so every statement
 * must be idempotent (its effect applied twice is its effect once). One
 * that fails with an SQL error is dropped and its on_done gets the error.
 *
 * Ownership: sql must be a string that outlives the queue (a literal);
 * params are copied. arg belongs to the caller, who must keep it alive
 * until on_done (pgq_pending_for() tells whether any are left).
 */

#ifndef MEDIA_PGQ_H
#define MEDIA_PGQ_H

#include <stddef.h>
#include <libpq-fe.h>

#include "pgc.h"


typedef struct pgq_s  pgq_t;

/* each result of the statement (may run again for a resent statement) */
typedef void (*pgq_result_pt)(void *arg, PGresult *res);
/* once: error is NULL on success, else the SQL error message */
typedef void (*pgq_done_pt)(void *arg, const char *error);


pgq_t *pgq_new(pgc_t *c);
/* drops what is queued without calling back */
void pgq_destroy(pgq_t **qp);

/* 0, or -1 when out of memory (logged) */
int pgq_push(pgq_t *q, const char *sql, int nparams,
    const char *const *params, pgq_result_pt on_result, pgq_done_pt on_done,
    void *arg);

/* sends the next statement if the connection is idle */
void pgq_pump(pgq_t *q);

/* statements queued or in flight */
size_t pgq_pending(const pgq_t *q);
size_t pgq_pending_for(const pgq_t *q, const void *arg);


#endif /* MEDIA_PGQ_H */
