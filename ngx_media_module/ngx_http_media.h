
/*
 * ngx_media: shared declarations of the nginx glue.
 */

#ifndef _NGX_HTTP_MEDIA_H_INCLUDED_
#define _NGX_HTTP_MEDIA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include <libpq-fe.h>

#include "mm.h"
#include "buf.h"
#include "json.h"
#include "sign.h"
#include "token.h"
#include "curvekey.h"


#if !(NGX_THREADS)
#error ngx_http_media_module needs nginx built --with-threads
#endif


/* what a location does; also the "route" label of /metrics */
typedef enum {
    NGX_HTTP_MEDIA_ROUTE_OTHER = 0,
    NGX_HTTP_MEDIA_ROUTE_STREAM,
    NGX_HTTP_MEDIA_ROUTE_API,
    NGX_HTTP_MEDIA_ROUTE_HEALTHZ,
    NGX_HTTP_MEDIA_ROUTE_METRICS,
    NGX_HTTP_MEDIA_ROUTE_N
} ngx_http_media_route_e;


typedef enum {
    NGX_HTTP_MEDIA_ROLE_NONE = 0,
    NGX_HTTP_MEDIA_ROLE_ADMIN,
    NGX_HTTP_MEDIA_ROLE_USER,
    NGX_HTTP_MEDIA_ROLE_SERVICE
} ngx_http_media_role_e;


#define NGX_HTTP_MEDIA_CACHE_STATUS_N   9       /* NONE + 8 of nginx */
#define NGX_HTTP_MEDIA_MAX_WORKERS      64


/* shared-memory counters behind /metrics */
typedef struct {
    ngx_atomic_t    requests[NGX_HTTP_MEDIA_ROUTE_N][600];
    ngx_atomic_t    cache[NGX_HTTP_MEDIA_CACHE_STATUS_N];
    ngx_atomic_t    events_emitted;
    ngx_atomic_t    events_acked;
    ngx_atomic_t    events_resent;
    ngx_atomic_t    events_dropped;
    ngx_atomic_t    events_pending[NGX_HTTP_MEDIA_MAX_WORKERS];
    ngx_atomic_t    db_jobs_active;
    ngx_atomic_t    db_jobs_total;
    ngx_atomic_t    db_jobs_failed;
    ngx_atomic_t    db_conns_open;
    ngx_atomic_t    db_threads;
} ngx_http_media_metrics_t;


/* a CURVE client's keys: its own pair and the daemon's public key */
typedef struct {
    char                        public_key[MM_CURVE_KEY_LEN + 1];
    char                        secret_key[MM_CURVE_KEY_LEN + 1];
    char                        server_key[MM_CURVE_KEY_LEN + 1];
} ngx_http_media_curve_t;


/* a daemon's doorbell (ngx_http_media_bell.c) */
typedef struct {
    ngx_str_t                   endpoint;       /* empty: none */
    ngx_http_media_curve_t      curve;
} ngx_http_media_bell_t;


typedef struct {
    ngx_str_t                   db_conninfo;
    ngx_str_t                   thread_pool_name;
    ngx_thread_pool_t          *thread_pool;
    ngx_array_t                *sign_keys;          /* of mm_sign_key_t */
    time_t                      sign_max_ttl;
    time_t                      auth_cache_ttl;
    ngx_flag_t                  allow_private;
    ngx_str_t                   analytics_endpoint;
    ngx_uint_t                  analytics_buffer;
    ngx_msec_t                  analytics_resend;
    ngx_http_media_curve_t      curve;              /* to analytics */
    ngx_flag_t                  curve_set;
    ngx_array_t                *health_daemons;     /* of ngx_str_t */
    ngx_shm_zone_t             *shm_zone;
    ngx_http_media_metrics_t   *metrics;
    ngx_int_t                   request_id_index;
    ngx_int_t                   cache_status_index;

    /* archives (ngx_http_media_archive.c) */
    time_t                      archive_retention;
    ngx_http_media_bell_t       archive_bell;

    /* the packager's doorbell (uploads, packaging jobs) */
    ngx_http_media_bell_t       packager_bell;

    /* the origin hop (ngx_http_media_hop.c): its key, "" without one */
    char                        hop_key[MM_SIGN_SIG_LEN + 1];
    ngx_flag_t                  hop_used;
} ngx_http_media_main_conf_t;


typedef struct {
    ngx_http_media_route_e      route;
    ngx_http_complex_value_t   *stream_id;
    ngx_flag_t                  analytics;
    ngx_http_complex_value_t   *archive_hash;       /* media_archive_get */
    /* uploads, packaged content (ngx_http_media_upload.c, _packaged.c) */
    ngx_str_t                   upload_dir;         /* media_upload */
    ngx_flag_t                  packaging;          /* media_packaging */
    ngx_uint_t                  protect;            /* media_protect */
    ngx_http_complex_value_t   *protect_prefix;
    ngx_flag_t                  origin_hop;         /* media_origin_hop */
} ngx_http_media_loc_conf_t;


/* per stream request; also found after internal redirects (see .c) */
typedef struct {
    int64_t                     episode_id;
    ngx_str_t                   origin_url;     /* scheme://addr:port/path */
    ngx_str_t                   origin_host;    /* Host header */
    ngx_str_t                   episode_id_text;
    const char                 *auth;               /* for the event */
    ngx_uint_t                  state;
    ngx_int_t                   lookup_rc;
    unsigned                    analytics:1;
    unsigned                    has_token:1;
    unsigned                    looked_up:1;
    unsigned                    found:1;
    unsigned                    private:1;
    unsigned                    token_valid:1;
    unsigned                    origin_bad:1;
    u_char                      token_hash[MM_TOKEN_HASH_LEN + 1];
} ngx_http_media_stream_ctx_t;


/* --- work run on the thread pool with a per-thread PostgreSQL link --- */

typedef struct ngx_http_media_job_s  ngx_http_media_job_t;

/* runs on a pool thread: no nginx calls, no r->pool allocations */
typedef void (*ngx_http_media_job_run_pt)(ngx_http_media_job_t *job);
/* runs back on the event loop */
typedef void (*ngx_http_media_job_done_pt)(ngx_http_request_t *r,
    ngx_http_media_job_t *job);

struct ngx_http_media_job_s {
    ngx_http_request_t             *request;
    ngx_http_media_main_conf_t     *mcf;
    ngx_http_media_job_run_pt       run;
    ngx_http_media_job_done_pt      done;
    void                           *data;

    /* results */
    ngx_uint_t                      status;
    mm_buf_t                        out;            /* JSON body */
    ngx_str_t                      *type;           /* of a 200's out,
                                                       NULL: JSON */
    unsigned                        www_authenticate:1;
    unsigned                        db_failed:1;
};


extern ngx_module_t  ngx_http_media_module;


/* ngx_http_media_bell.c */
char *ngx_http_media_curve_load(ngx_conf_t *cf, ngx_command_t *cmd,
    ngx_str_t *ours, ngx_str_t *theirs, ngx_http_media_curve_t *curve);
void *ngx_http_media_curve_socket(void *zctx, int type, int hwm,
    ngx_http_media_curve_t *curve);
char *ngx_http_media_bell_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_media_bell_ring(ngx_http_media_bell_t *bell, const char *what);
void ngx_http_media_bell_exit_process(ngx_cycle_t *cycle);


/* ngx_http_media_module.c */
ngx_int_t ngx_http_media_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len);
ngx_int_t ngx_http_media_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *body, size_t len);
ngx_int_t ngx_http_media_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
ngx_uint_t ngx_http_media_http_status(mm_status_t st);
void ngx_http_media_json_error(mm_buf_t *b, const char *code,
    const char *message);
ngx_int_t ngx_http_media_read_body(ngx_http_request_t *r, char **body,
    size_t *len);
void *ngx_http_media_cleanup_data(ngx_http_request_t *r,
    ngx_pool_cleanup_pt tag);
char *ngx_http_media_compile_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t **cv);
ngx_int_t ngx_http_media_add_header(ngx_http_request_t *r, const char *key,
    const char *value);
void ngx_http_media_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);
void ngx_http_media_job_answer(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
ngx_int_t ngx_http_media_token(ngx_http_request_t *r, char *hash);
char *ngx_http_media_base_url(ngx_http_request_t *r);

/* ngx_http_media_db.c */
ngx_int_t ngx_http_media_job_post(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
PGconn *ngx_http_media_db(ngx_http_media_job_t *job);
void ngx_http_media_db_reset(ngx_http_media_job_t *job);
PGresult *ngx_http_media_db_exec(ngx_http_media_job_t *job, const char *sql,
    int nparams, const char *const *params);
PGresult *ngx_http_media_db_query(ngx_http_media_job_t *job,
    const char *sql, int nparams, const char *const *params);
ngx_http_media_role_e ngx_http_media_db_auth(ngx_http_media_job_t *job,
    const char *token_hash, int64_t *token_id);
void ngx_http_media_db_thread_exit(void);

/* ngx_http_media_api.c */
ngx_int_t ngx_http_media_api_handler(ngx_http_request_t *r);
void ngx_http_media_api_fail(ngx_http_media_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
mm_json_doc_t *ngx_http_media_api_json(ngx_http_media_job_t *job,
    const char *body, size_t len, int empty_ok, int object,
    const mm_json_t **root);

/* ngx_http_media_archive.c */
void ngx_http_media_archive_create(ngx_http_media_job_t *job,
    const char *body, size_t body_len, int64_t token_id);
void ngx_http_media_archive_status(ngx_http_media_job_t *job,
    const char *hash, int64_t token_id, ngx_uint_t admin, const char *base);
ngx_int_t ngx_http_media_archive_access(ngx_http_request_t *r);
char *ngx_http_media_archive_get(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_media_stream.c */
ngx_int_t ngx_http_media_stream_access(ngx_http_request_t *r);
ngx_http_media_stream_ctx_t *ngx_http_media_stream_ctx(ngx_http_request_t *r);
extern ngx_http_variable_t  ngx_http_media_stream_vars[];
ngx_int_t ngx_http_media_bearer(ngx_http_request_t *r, ngx_str_t *token);

/* ngx_http_media_hop.c */
extern ngx_http_variable_t  ngx_http_media_hop_vars[];
ngx_int_t ngx_http_media_hop_init(ngx_conf_t *cf);
char *ngx_http_media_origin_hop(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_media_hop_access(ngx_http_request_t *r);

/* ngx_http_media_upload.c */
char *ngx_http_media_upload_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_media_upload_init(ngx_conf_t *cf);

/* ngx_http_media_packaged.c */
#define NGX_HTTP_MEDIA_PROTECT_OFF              0
#define NGX_HTTP_MEDIA_PROTECT_TOKEN            1
#define NGX_HTTP_MEDIA_PROTECT_SIGNED           2
#define NGX_HTTP_MEDIA_PROTECT_TOKEN_OR_SIGNED  3

char *ngx_http_media_packaging_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_media_protect_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_media_packaged_merge(ngx_conf_t *cf,
    ngx_http_media_loc_conf_t *prev, ngx_http_media_loc_conf_t *conf);
ngx_int_t ngx_http_media_packaged_init(ngx_conf_t *cf);
ngx_int_t ngx_http_media_packaged_init_process(ngx_cycle_t *cycle);

/* ngx_http_media_events.c */
ngx_int_t ngx_http_media_events_init_process(ngx_cycle_t *cycle);
void ngx_http_media_events_exit_process(ngx_cycle_t *cycle);
void ngx_http_media_events_emit(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx);
mm_status_t ngx_http_media_events_send_sync(ngx_http_media_main_conf_t *mcf,
    mm_buf_t *frames, size_t *lens, size_t n, int timeout_ms,
    char *err, size_t err_size);

/* ngx_http_media_metrics.c */
ngx_int_t ngx_http_media_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_media_main_conf_t *mcf);
ngx_int_t ngx_http_media_metrics_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_media_healthz_handler(ngx_http_request_t *r);
void ngx_http_media_metrics_log(ngx_http_request_t *r,
    ngx_http_media_route_e route);

#define ngx_http_media_metric_add(mcf, field, n)                            \
    do {                                                                    \
        if ((mcf)->metrics) {                                               \
            (void) ngx_atomic_fetch_add(&(mcf)->metrics->field, n);         \
        }                                                                   \
    } while (0)


#endif /* _NGX_HTTP_MEDIA_H_INCLUDED_ */
