/*
 * Statement queue over a non-blocking connection: see pgq.h.
 */

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pgq.h"


typedef struct pgq_stmt_s  pgq_stmt_t;

struct pgq_stmt_s {
    pgq_stmt_t      *next;
    const char      *sql;
    int              nparams;
    char           **params;
    pgq_result_pt    on_result;
    pgq_done_pt      on_done;
    void            *arg;
};


struct pgq_s {
    pgc_t           *pg;
    pgq_stmt_t      *head;
    pgq_stmt_t     **tail;
    size_t           n;
    int              inflight;          /* head is out */
};


static void pgq_result(void *arg, pgc_t *c, PGresult *res);
static void pgq_done(void *arg, pgc_t *c, const char *error);


pgq_t *
pgq_new(pgc_t *c)
{
    pgq_t  *q;

    q = calloc(1, sizeof(*q));
    if (q == NULL) {
        log_warn("calloc");
        return NULL;
    }

    q->pg = c;
    q->tail = &q->head;

    return q;
}


static void
pgq_stmt_free(pgq_stmt_t *s)
{
    int  i;

    for (i = 0; i < s->nparams; i++) {
        free(s->params[i]);
    }

    free(s->params);
    free(s);
}


void
pgq_destroy(pgq_t **qp)
{
    pgq_t       *q;
    pgq_stmt_t  *s, *next;

    q = *qp;
    if (q == NULL) {
        return;
    }

    *qp = NULL;

    for (s = q->head; s != NULL; s = next) {
        next = s->next;
        pgq_stmt_free(s);
    }

    free(q);
}


int
pgq_push(pgq_t *q, const char *sql, int nparams, const char *const *params,
    pgq_result_pt on_result, pgq_done_pt on_done, void *arg)
{
    int          i;
    pgq_stmt_t  *s;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        log_warn("calloc");
        return -1;
    }

    s->sql = sql;
    s->on_result = on_result;
    s->on_done = on_done;
    s->arg = arg;

    if (nparams > 0) {
        s->params = calloc((size_t) nparams, sizeof(char *));
        if (s->params == NULL) {
            log_warn("calloc");
            free(s);
            return -1;
        }

        s->nparams = nparams;

        for (i = 0; i < nparams; i++) {
            if (params[i] == NULL) {
                continue;
            }

            s->params[i] = strdup(params[i]);
            if (s->params[i] == NULL) {
                log_warn("strdup");
                pgq_stmt_free(s);
                return -1;
            }
        }
    }

    *q->tail = s;
    q->tail = &s->next;
    q->n++;

    return 0;
}


void
pgq_pump(pgq_t *q)
{
    pgq_stmt_t  *s;

    s = q->head;

    if (s == NULL || q->inflight || !pgc_ready(q->pg)) {
        return;
    }

    /*
     * nparams 0 with a params array would be a one-statement simple
     * query; pgc sends simple queries for nparams == 0
     */
    if (pgc_send(q->pg, s->sql, s->nparams,
                 (const char *const *) s->params, pgq_result, pgq_done, q)
        != 0)
    {
        /* the connection was reset: try again once it is back */
        return;
    }

    q->inflight = 1;
}


static void
pgq_result(void *arg, pgc_t *c, PGresult *res)
{
    pgq_t  *q = arg;

    pgq_stmt_t  *s;

    s = q->head;

    if (s != NULL && s->on_result != NULL
        && (PQresultStatus(res) == PGRES_TUPLES_OK
            || PQresultStatus(res) == PGRES_COMMAND_OK))
    {
        s->on_result(s->arg, res);
    }
}


static void
pgq_done(void *arg, pgc_t *c, const char *error)
{
    pgq_t  *q = arg;

    pgq_stmt_t  *s;

    q->inflight = 0;
    s = q->head;

    if (s == NULL) {
        return;
    }

    if (error != NULL && !pgc_up(c)) {
        /* cut off with the connection: the head goes out again */
        log_debug("statement interrupted (%s), will resend", error);
        return;
    }

    q->head = s->next;
    if (q->head == NULL) {
        q->tail = &q->head;
    }
    q->n--;

    if (s->on_done != NULL) {
        s->on_done(s->arg, error);
    }

    pgq_stmt_free(s);

    /* the loop pumps the next one, after a heartbeat that may be due */
}


size_t
pgq_pending(const pgq_t *q)
{
    return q->n;
}


size_t
pgq_pending_for(const pgq_t *q, const void *arg)
{
    size_t       n;
    pgq_stmt_t  *s;

    n = 0;

    for (s = q->head; s != NULL; s = s->next) {
        if (s->arg == arg) {
            n++;
        }
    }

    return n;
}
