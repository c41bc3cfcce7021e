
/*
 * ngx_media: PostgreSQL work off the event loop.
 *
 * A job is posted to the configured nginx thread pool; its run() executes
 * on a pool thread with that thread's own libpq connection (blocking calls
 * are fine there), then done() runs back on the event loop. While a job is
 * out the request is "blocked" so nginx cannot free it underneath.
 */

#include "ngx_http_media.h"


static void ngx_http_media_job_thread(void *data, ngx_log_t *log);
static void ngx_http_media_job_event(ngx_event_t *ev);
static void ngx_http_media_job_cleanup(void *data);


static __thread PGconn  *ngx_http_media_pg;


ngx_int_t
ngx_http_media_job_post(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_thread_task_t   *task;
    ngx_pool_cleanup_t  *cln;

    task = ngx_thread_task_alloc(r->pool, 0);
    if (task == NULL) {
        return NGX_ERROR;
    }

    /*
     * job->out is freed with the request: done() may finalize it, and the
     * job itself lives in r->pool, so nothing may touch the job after done()
     */
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    job->request = r;
    mm_buf_init(&job->out);

    cln->handler = ngx_http_media_job_cleanup;
    cln->data = job;

    task->ctx = job;
    task->handler = ngx_http_media_job_thread;
    task->event.data = job;
    task->event.handler = ngx_http_media_job_event;

    if (ngx_thread_task_post(job->mcf->thread_pool, task) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main->blocked++;
    r->aio = 1;

    ngx_http_media_metric_add(job->mcf, db_jobs_active, 1);
    ngx_http_media_metric_add(job->mcf, db_jobs_total, 1);

    return NGX_OK;
}


static void
ngx_http_media_job_thread(void *data, ngx_log_t *log)
{
    ngx_http_media_job_t  *job = data;

    job->run(job);
}


static void
ngx_http_media_job_event(ngx_event_t *ev)
{
    ngx_http_media_job_t  *job = ev->data;

    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = job->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "media job done: status %ui, db_failed %d",
                   job->status, (int) job->db_failed);

    r->main->blocked--;
    r->aio = 0;

    (void) ngx_atomic_fetch_add(&job->mcf->metrics->db_jobs_active,
                                (ngx_atomic_int_t) -1);

    if (job->db_failed) {
        ngx_http_media_metric_add(job->mcf, db_jobs_failed, 1);
    }

    /* done() may free r and the job with it */
    job->done(r, job);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_media_job_cleanup(void *data)
{
    ngx_http_media_job_t  *job = data;

    mm_buf_free(&job->out);
}


/* --- pool-thread side: no nginx calls below this line but atomics --- */


PGconn *
ngx_http_media_db(ngx_http_media_job_t *job)
{
    PGconn  *conn;

    conn = ngx_http_media_pg;

    if (conn != NULL && PQstatus(conn) == CONNECTION_OK) {
        return conn;
    }

    if (conn != NULL) {
        PQfinish(conn);
        ngx_http_media_pg = NULL;
        ngx_http_media_metric_add(job->mcf, db_conns_open,
                                  (ngx_atomic_int_t) -1);
    }

    conn = PQconnectdb((char *) job->mcf->db_conninfo.data);

    if (PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        job->db_failed = 1;
        return NULL;
    }

    ngx_http_media_pg = conn;
    ngx_http_media_metric_add(job->mcf, db_conns_open, 1);

    return conn;
}


void
ngx_http_media_db_reset(ngx_http_media_job_t *job)
{
    if (ngx_http_media_pg != NULL) {
        PQfinish(ngx_http_media_pg);
        ngx_http_media_pg = NULL;
        ngx_http_media_metric_add(job->mcf, db_conns_open,
                                  (ngx_atomic_int_t) -1);
    }
}


/*
 * Runs one parameterised statement; on a broken connection reconnects and
 * retries once. Returns a result with PGRES_TUPLES_OK / PGRES_COMMAND_OK,
 * or NULL with job->db_failed set (the caller answers 503) unless the
 * error is a constraint violation, which is returned for the caller.
 */

PGresult *
ngx_http_media_db_exec(ngx_http_media_job_t *job, const char *sql,
    int nparams, const char *const *params)
{
    int              attempt;
    PGconn          *conn;
    PGresult        *res;
    ExecStatusType   st;

    for (attempt = 0; attempt < 2; attempt++) {

        conn = ngx_http_media_db(job);
        if (conn == NULL) {
            job->db_failed = 1;
            return NULL;
        }

        job->db_failed = 0;

        res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
        st = PQresultStatus(res);

        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            return res;
        }

        if (PQstatus(conn) == CONNECTION_OK) {
            /* a statement error (e.g. constraint): hand it back */
            return res;
        }

        PQclear(res);
        ngx_http_media_db_reset(job);
    }

    job->db_failed = 1;

    return NULL;
}


/*
 * As ngx_http_media_db_exec(), but any statement error is a failure too:
 * NULL with job->db_failed set (the answer is a 503).
 */
PGresult *
ngx_http_media_db_query(ngx_http_media_job_t *job, const char *sql,
    int nparams, const char *const *params)
{
    PGresult  *res;

    res = ngx_http_media_db_exec(job, sql, nparams, params);

    if (res == NULL) {
        return NULL;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK
        && PQresultStatus(res) != PGRES_COMMAND_OK)
    {
        PQclear(res);
        job->db_failed = 1;
        return NULL;
    }

    return res;
}


ngx_http_media_role_e
ngx_http_media_db_auth(ngx_http_media_job_t *job, const char *token_hash,
    int64_t *token_id)
{
    const char             *params[1];
    const char             *role;
    PGresult               *res;
    ngx_http_media_role_e   rc;

    params[0] = token_hash;

    res = ngx_http_media_db_exec(job,
              "SELECT id, role FROM tokens"
              " WHERE hash = $1 AND revoked_at IS NULL", 1, params);

    if (res == NULL) {
        return NGX_HTTP_MEDIA_ROLE_NONE;
    }

    rc = NGX_HTTP_MEDIA_ROLE_NONE;

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        role = PQgetvalue(res, 0, 1);

        if (strcmp(role, "admin") == 0) {
            rc = NGX_HTTP_MEDIA_ROLE_ADMIN;

        } else if (strcmp(role, "user") == 0) {
            rc = NGX_HTTP_MEDIA_ROLE_USER;

        } else if (strcmp(role, "service") == 0) {
            rc = NGX_HTTP_MEDIA_ROLE_SERVICE;
        }

        if (token_id) {
            *token_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        }
    }

    PQclear(res);

    return rc;
}
