
/*
 * ngx_media: /metrics (Prometheus text format) and /healthz.
 *
 * Counters live in one shared-memory zone so every worker adds to the
 * same numbers; /healthz asks PostgreSQL (on a pool thread) for the
 * daemons' heartbeats.
 */

#include "ngx_http_media.h"


#define NGX_HTTP_MEDIA_HEARTBEAT_STALE  5       /* seconds */


static ngx_int_t ngx_http_media_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_media_healthz_run(ngx_http_media_job_t *job);
static void ngx_http_media_healthz_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);


static const char  *ngx_http_media_route_names[] = {
    "other", "stream", "api", "healthz", "metrics"
};


static ngx_str_t  ngx_http_media_cache_names[] = {
    ngx_string("NONE"),
    ngx_string("MISS"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("REVALIDATED"),
    ngx_string("HIT"),
    ngx_string("SCARCE")
};


ngx_int_t
ngx_http_media_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_media_main_conf_t *mcf)
{
    ngx_str_t  name = ngx_string("ngx_http_media_metrics");
    ngx_str_t  rid = ngx_string("media_request_id");
    ngx_str_t  ucs = ngx_string("upstream_cache_status");

    mcf->shm_zone = ngx_shared_memory_add(cf, &name,
                        2 * ngx_align(sizeof(ngx_http_media_metrics_t),
                                      ngx_pagesize),
                        &ngx_http_media_module);
    if (mcf->shm_zone == NULL) {
        return NGX_ERROR;
    }

    mcf->shm_zone->init = ngx_http_media_metrics_init_zone;
    mcf->shm_zone->data = mcf;

    mcf->request_id_index = ngx_http_get_variable_index(cf, &rid);
    mcf->cache_status_index = ngx_http_get_variable_index(cf, &ucs);

    if (mcf->request_id_index == NGX_ERROR
        || mcf->cache_status_index == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_media_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_media_main_conf_t  *mcf = shm_zone->data;

    ngx_slab_pool_t             *shpool;
    ngx_http_media_main_conf_t  *omcf = data;

    if (omcf) {
        /* a reload keeps the counters */
        mcf->metrics = omcf->metrics;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        mcf->metrics = shpool->data;
        return NGX_OK;
    }

    mcf->metrics = ngx_slab_calloc(shpool, sizeof(ngx_http_media_metrics_t));
    if (mcf->metrics == NULL) {
        return NGX_ERROR;
    }

    shpool->data = mcf->metrics;

    return NGX_OK;
}


void
ngx_http_media_metrics_log(ngx_http_request_t *r, ngx_http_media_route_e route)
{
    ngx_uint_t                   status, i;
    ngx_http_variable_value_t   *v;
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    if (mcf == NULL || mcf->metrics == NULL) {
        return;
    }

    status = r->headers_out.status;
    if (status == 0 && r->connection->error) {
        status = 499;
    }

    if (status >= 600) {
        status = 0;
    }

    (void) ngx_atomic_fetch_add(&mcf->metrics->requests[route][status], 1);

    if (route != NGX_HTTP_MEDIA_ROUTE_STREAM) {
        return;
    }

    v = ngx_http_get_indexed_variable(r, mcf->cache_status_index);

    i = 0;

    if (v && !v->not_found && v->len) {
        for (i = 1; i < NGX_HTTP_MEDIA_CACHE_STATUS_N; i++) {
            if (ngx_http_media_cache_names[i].len == v->len
                && ngx_strncmp(ngx_http_media_cache_names[i].data, v->data,
                               v->len) == 0)
            {
                break;
            }
        }

        if (i == NGX_HTTP_MEDIA_CACHE_STATUS_N) {
            i = 0;
        }
    }

    (void) ngx_atomic_fetch_add(&mcf->metrics->cache[i], 1);
}


ngx_int_t
ngx_http_media_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_uint_t                   route, status, i;
    ngx_atomic_uint_t            n, pending;
    ngx_buf_t                   *b;
    ngx_chain_t                  out;
    mm_buf_t                     m;
    ngx_http_media_metrics_t    *mt;
    ngx_http_media_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    mt = mcf->metrics;

    mm_buf_init(&m);

    mm_buf_puts(&m, "# HELP media_http_requests_total Requests by route "
                "and status.\n# TYPE media_http_requests_total counter\n");

    for (route = 0; route < NGX_HTTP_MEDIA_ROUTE_N; route++) {
        for (status = 0; status < 600; status++) {
            n = mt->requests[route][status];
            if (n) {
                mm_buf_printf(&m, "media_http_requests_total{route=\"%s\","
                              "status=\"%u\"} %lu\n",
                              ngx_http_media_route_names[route],
                              (unsigned) status, (unsigned long) n);
            }
        }
    }

    mm_buf_puts(&m, "# HELP media_cache_requests_total Stream responses "
                "by proxy cache status.\n"
                "# TYPE media_cache_requests_total counter\n");

    for (i = 0; i < NGX_HTTP_MEDIA_CACHE_STATUS_N; i++) {
        mm_buf_printf(&m, "media_cache_requests_total{status=\"%s\"} %lu\n",
                      (char *) ngx_http_media_cache_names[i].data,
                      (unsigned long) mt->cache[i]);
    }

    pending = 0;
    for (i = 0; i < NGX_HTTP_MEDIA_MAX_WORKERS; i++) {
        pending += mt->events_pending[i];
    }

    mm_buf_printf(&m,
        "# HELP media_cache_hits_total Stream responses served from cache.\n"
        "# TYPE media_cache_hits_total counter\n"
        "media_cache_hits_total %lu\n"
        "# HELP media_cache_misses_total Stream responses fetched from "
        "the origin.\n"
        "# TYPE media_cache_misses_total counter\n"
        "media_cache_misses_total %lu\n"
        "# HELP media_analytics_events_total Analytics events by outcome.\n"
        "# TYPE media_analytics_events_total counter\n"
        "media_analytics_events_total{outcome=\"emitted\"} %lu\n"
        "media_analytics_events_total{outcome=\"acked\"} %lu\n"
        "media_analytics_events_total{outcome=\"resent\"} %lu\n"
        "media_analytics_events_total{outcome=\"dropped\"} %lu\n"
        "# HELP media_analytics_queue_depth Events sent but not yet "
        "acknowledged by the analytics daemon.\n"
        "# TYPE media_analytics_queue_depth gauge\n"
        "media_analytics_queue_depth %lu\n"
        "# HELP media_analytics_dropped_total Events lost because a "
        "worker's buffer was full.\n"
        "# TYPE media_analytics_dropped_total counter\n"
        "media_analytics_dropped_total %lu\n"
        "# HELP media_db_jobs_active Database jobs running or queued on "
        "the thread pool.\n"
        "# TYPE media_db_jobs_active gauge\n"
        "media_db_jobs_active %lu\n"
        "# HELP media_db_jobs_total Database jobs run.\n"
        "# TYPE media_db_jobs_total counter\n"
        "media_db_jobs_total %lu\n"
        "# HELP media_db_jobs_failed_total Database jobs that found "
        "PostgreSQL unavailable.\n"
        "# TYPE media_db_jobs_failed_total counter\n"
        "media_db_jobs_failed_total %lu\n"
        "# HELP media_db_connections Open PostgreSQL connections (one per "
        "pool thread that has run a job).\n"
        "# TYPE media_db_connections gauge\n"
        "media_db_connections %lu\n",
        (unsigned long) mt->cache[7],
        (unsigned long) (mt->cache[1] + mt->cache[3]),
        (unsigned long) mt->events_emitted,
        (unsigned long) mt->events_acked,
        (unsigned long) mt->events_resent,
        (unsigned long) mt->events_dropped,
        (unsigned long) pending,
        (unsigned long) mt->events_dropped,
        (unsigned long) mt->db_jobs_active,
        (unsigned long) mt->db_jobs_total,
        (unsigned long) mt->db_jobs_failed,
        (unsigned long) mt->db_conns_open);

    if (m.failed) {
        mm_buf_free(&m);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = m.len;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        mm_buf_free(&m);
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, m.len);
    if (b == NULL) {
        mm_buf_free(&m);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, m.data, m.len);
    b->last_buf = 1;
    b->last_in_chain = 1;

    mm_buf_free(&m);

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* --- /healthz --- */


ngx_int_t
ngx_http_media_healthz_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_http_media_job_t        *job;
    ngx_http_media_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    if (job == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    job->mcf = mcf;
    job->run = ngx_http_media_healthz_run;
    job->done = ngx_http_media_healthz_done;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        return ngx_http_media_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "busy", "the work queue is full");
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_media_healthz_run(ngx_http_media_job_t *job)
{
    int          j, n, up, first;
    char         name[64];
    double       age;
    PGresult    *res;
    ngx_str_t   *d;
    ngx_uint_t   k, nd;
    mm_buf_t     down;

    res = ngx_http_media_db_exec(job,
              "SELECT name, extract(epoch FROM now() - seen_at), pid"
              " FROM daemon_heartbeats ORDER BY name", 0, NULL);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            PQclear(res);
        }

        job->db_failed = 0;
        job->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        mm_buf_puts(&job->out, "{\"status\":\"down\",\"down\":"
                    "[\"postgresql\"],\"postgresql\":\"down\"}\n");
        return;
    }

    n = PQntuples(res);
    d = job->mcf->health_daemons ? job->mcf->health_daemons->elts : NULL;
    nd = job->mcf->health_daemons ? job->mcf->health_daemons->nelts : 0;

    mm_buf_init(&down);
    mm_buf_puts(&job->out, "{\"postgresql\":\"up\",\"daemons\":{");

    first = 1;

    for (k = 0; k < nd; k++) {
        snprintf(name, sizeof(name), "%.*s", (int) d[k].len,
                 (char *) d[k].data);

        up = 0;
        age = -1;

        for (j = 0; j < n; j++) {
            if (strcmp(PQgetvalue(res, j, 0), name) == 0) {
                age = atof(PQgetvalue(res, j, 1));
                up = age < NGX_HTTP_MEDIA_HEARTBEAT_STALE;
                break;
            }
        }

        mm_buf_printf(&job->out, "%s\"%s\":{\"status\":\"%s\"", k ? "," : "",
                      name, up ? "up" : "down");
        if (age >= 0) {
            mm_buf_printf(&job->out, ",\"heartbeat_age\":%.1f", age);
        }
        mm_buf_puts(&job->out, "}");

        if (!up) {
            mm_buf_printf(&down, "%s\"%s\"", first ? "" : ",", name);
            first = 0;
        }
    }

    PQclear(res);

    mm_buf_puts(&job->out, "}");

    if (first) {
        job->status = NGX_HTTP_OK;
        mm_buf_puts(&job->out, ",\"status\":\"ok\"}\n");

    } else {
        job->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        mm_buf_puts(&job->out, ",\"status\":\"down\",\"down\":[");
        mm_buf_append(&job->out, down.data, down.len);
        mm_buf_puts(&job->out, "]}\n");
    }

    if (down.failed) {
        job->out.failed = 1;
    }

    mm_buf_free(&down);

}


static void
ngx_http_media_healthz_done(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_int_t  rc;

    if (job->out.failed || job->status == 0) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_media_send_json(r, job->status, (u_char *) job->out.data,
                                  job->out.len);

    ngx_http_finalize_request(r, rc);
}
