
/*
 * ngx_media: directives, configuration, phase handlers and JSON responses.
 */

#include "ngx_http_media.h"

#include <dlfcn.h>


static ngx_int_t ngx_http_media_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_media_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_media_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_media_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_media_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_media_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void ngx_http_media_sign_keys_free(void *data);
static char *ngx_http_media_sign_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_media_analytics_keys(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_media_content(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_media_health_daemons(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_media_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_media_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_media_init_process(ngx_cycle_t *cycle);
static void ngx_http_media_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_media_commands[] = {

    { ngx_string("media_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, db_conninfo),
      NULL },

    { ngx_string("media_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("media_sign_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_media_sign_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_sign_max_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, sign_max_ttl),
      NULL },

    { ngx_string("media_auth_cache_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, auth_cache_ttl),
      NULL },

    { ngx_string("media_origin_allow_private"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, allow_private),
      NULL },

    { ngx_string("media_analytics_endpoint"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, analytics_endpoint),
      NULL },

    { ngx_string("media_analytics_keys"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_media_analytics_keys,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_analytics_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, analytics_buffer),
      NULL },

    { ngx_string("media_analytics_resend"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, analytics_resend),
      NULL },

    { ngx_string("media_health_daemons"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_media_health_daemons,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, health_daemons),
      NULL },

    { ngx_string("media_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_media_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_MEDIA_ROUTE_API },

    { ngx_string("media_healthz"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_media_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_MEDIA_ROUTE_HEALTHZ },

    { ngx_string("media_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_media_content,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      (void *) NGX_HTTP_MEDIA_ROUTE_METRICS },

    { ngx_string("media_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_media_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_origin_hop"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_media_origin_hop,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_analytics"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_media_loc_conf_t, analytics),
      NULL },

    { ngx_string("media_upload"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_media_upload_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_packaging"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_media_packaging_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_protect"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
                        |NGX_CONF_TAKE12,
      ngx_http_media_protect_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("media_packager_doorbell"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_media_bell_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, packager_bell),
      NULL },

    /* archives: ngx_http_media_archive.c */

    { ngx_string("media_archive_retention"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, archive_retention),
      NULL },

    { ngx_string("media_archive_doorbell"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_media_bell_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_media_main_conf_t, archive_bell),
      NULL },

    { ngx_string("media_archive_get"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_media_archive_get,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_media_module_ctx = {
    ngx_http_media_preconfiguration,       /* preconfiguration */
    ngx_http_media_postconfiguration,      /* postconfiguration */

    ngx_http_media_create_main_conf,       /* create main configuration */
    ngx_http_media_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_media_create_loc_conf,        /* create location configuration */
    ngx_http_media_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_media_module = {
    NGX_MODULE_V1,
    &ngx_http_media_module_ctx,            /* module context */
    ngx_http_media_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_media_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_media_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_media_default_pool = ngx_string("default");


static ngx_int_t
ngx_http_media_preconfiguration(ngx_conf_t *cf)
{
    ngx_uint_t            i;
    ngx_http_variable_t  *var, *v;
    ngx_http_variable_t  *tables[] = { ngx_http_media_stream_vars,
                                       ngx_http_media_hop_vars };

    for (i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        for (v = tables[i]; v->name.len; v++) {
            var = ngx_http_add_variable(cf, &v->name, v->flags);
            if (var == NULL) {
                return NGX_ERROR;
            }

            var->get_handler = v->get_handler;
            var->data = v->data;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_media_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_media_stream_access;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_media_archive_access;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_media_hop_access;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_media_log_handler;

    if (ngx_http_media_upload_init(cf) != NGX_OK
        || ngx_http_media_packaged_init(cf) != NGX_OK
        || ngx_http_media_hop_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_http_media_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_media_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->db_conninfo = { 0, NULL };
     *     mcf->thread_pool_name = { 0, NULL };
     *     mcf->analytics_endpoint = { 0, NULL };
     *     mcf->curve_set = 0;
     */

    mcf->sign_keys = NGX_CONF_UNSET_PTR;
    mcf->sign_max_ttl = NGX_CONF_UNSET;
    mcf->auth_cache_ttl = NGX_CONF_UNSET;
    mcf->allow_private = NGX_CONF_UNSET;
    mcf->analytics_buffer = NGX_CONF_UNSET_UINT;
    mcf->analytics_resend = NGX_CONF_UNSET_MSEC;
    mcf->health_daemons = NGX_CONF_UNSET_PTR;
    mcf->archive_retention = NGX_CONF_UNSET;

    return mcf;
}


static char *
ngx_http_media_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_media_main_conf_t  *mcf = conf;

    ngx_str_t  name;

    ngx_conf_init_ptr_value(mcf->sign_keys, NULL);
    ngx_conf_init_value(mcf->sign_max_ttl, 3600);
    ngx_conf_init_value(mcf->auth_cache_ttl, 2);
    ngx_conf_init_value(mcf->allow_private, 0);
    ngx_conf_init_uint_value(mcf->analytics_buffer, 131072);
    ngx_conf_init_msec_value(mcf->analytics_resend, 1000);
    ngx_conf_init_ptr_value(mcf->health_daemons, NULL);
    ngx_conf_init_value(mcf->archive_retention, 7 * 86400);

    if (mcf->archive_retention <= 0 || mcf->archive_retention > 0x7fffffff) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_archive_retention\" must be at least 1s "
                           "and below 68 years");
        return NGX_CONF_ERROR;
    }

    if (mcf->sign_max_ttl <= 0 || mcf->sign_max_ttl > 3600) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_sign_max_ttl\" must be between 1s and 1h");
        return NGX_CONF_ERROR;
    }

    if (mcf->analytics_buffer < 16 || mcf->analytics_buffer > 1048576) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_analytics_buffer\" must be between 16 "
                           "and 1048576 events");
        return NGX_CONF_ERROR;
    }

    if (mcf->analytics_endpoint.len && !mcf->curve_set) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_analytics_endpoint\" needs "
                           "\"media_analytics_keys\": events are sent "
                           "only over CURVE");
        return NGX_CONF_ERROR;
    }

    name = mcf->thread_pool_name.len ? mcf->thread_pool_name
                                     : ngx_http_media_default_pool;

    mcf->thread_pool = ngx_thread_pool_add(cf, &name);
    if (mcf->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }

    mcf->request_id_index = NGX_ERROR;
    mcf->cache_status_index = NGX_ERROR;

    if (ngx_http_media_metrics_init_conf(cf, mcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_media_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_media_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_media_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     lcf->route = NGX_HTTP_MEDIA_ROUTE_OTHER;
     *     lcf->stream_id = NULL;
     */

    lcf->analytics = NGX_CONF_UNSET;
    lcf->protect = NGX_CONF_UNSET_UINT;

    return lcf;
}


static char *
ngx_http_media_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_media_loc_conf_t  *prev = parent;
    ngx_http_media_loc_conf_t  *conf = child;

    ngx_conf_merge_value(conf->analytics, prev->analytics, 0);

    if (ngx_http_media_packaged_merge(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* route and stream_id belong to the location that names them */

    return NGX_CONF_OK;
}


static ngx_http_media_main_conf_t *
ngx_http_media_check_db(ngx_conf_t *cf, const char *directive)
{
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);

    if (mcf->db_conninfo.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"media_db\" set before it",
                           directive);
        return NULL;
    }

    return mcf;
}


static char *
ngx_http_media_sign_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_main_conf_t  *mcf = conf;

    ngx_str_t           *value;
    ngx_uint_t           i;
    mm_status_t          st;
    mm_sign_key_t       *key, *k;
    ngx_pool_cleanup_t  *cln;

    value = cf->args->elts;

    if (!mm_sign_kid_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid key id \"%V\" in \"media_sign_key\": "
                           "1-32 of [A-Za-z0-9_-]", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &value[2], 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (mcf->sign_keys == NGX_CONF_UNSET_PTR) {
        mcf->sign_keys = ngx_array_create(cf->pool, 2, sizeof(mm_sign_key_t));
        if (mcf->sign_keys == NULL) {
            return NGX_CONF_ERROR;
        }

        /* the array may still move as keys are added: free from mcf */
        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_media_sign_keys_free;
        cln->data = mcf;
    }

    k = mcf->sign_keys->elts;
    for (i = 0; i < mcf->sign_keys->nelts; i++) {
        if (k[i].kid_len == value[1].len
            && ngx_strncmp(k[i].kid, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate key id \"%V\" in "
                               "\"media_sign_key\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(mcf->sign_keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    st = mm_sign_key_load(key, (char *) value[1].data, (char *) value[2].data);

    if (st == MM_EIO) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"media_sign_key\" cannot read \"%V\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (st == MM_ENOMEM) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_sign_key\": cannot set up HMAC-SHA256 "
                           "for \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (st != MM_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_sign_key\" file \"%V\" must hold at "
                           "least 32 hex digits (16 bytes) of secret",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_media_sign_keys_free(void *data)
{
    ngx_http_media_main_conf_t  *mcf = data;

    ngx_uint_t      i;
    mm_sign_key_t  *k;

    k = mcf->sign_keys->elts;

    for (i = 0; i < mcf->sign_keys->nelts; i++) {
        mm_sign_key_free(&k[i]);
    }
}


static char *
ngx_http_media_analytics_keys(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_main_conf_t  *mcf = conf;

    char       *rv;
    ngx_str_t  *value;

    if (mcf->curve_set) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rv = ngx_http_media_curve_load(cf, cmd, &value[1], &value[2],
                                   &mcf->curve);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    mcf->curve_set = 1;

    return NGX_CONF_OK;
}


/* every name of "media_health_daemons a b c;" (the stock slot keeps one) */
static char *
ngx_http_media_health_daemons(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_main_conf_t  *mcf = conf;

    ngx_str_t   *value, *s;
    ngx_uint_t   i;

    if (mcf->health_daemons == NGX_CONF_UNSET_PTR) {
        mcf->health_daemons = ngx_array_create(cf->pool, 4,
                                               sizeof(ngx_str_t));
        if (mcf->health_daemons == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        s = ngx_array_push(mcf->health_daemons);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }

        *s = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_media_content(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->route != NGX_HTTP_MEDIA_ROUTE_OTHER) {
        return "is duplicate: one media handler per location";
    }

    lcf->route = (ngx_http_media_route_e) (uintptr_t) cmd->post;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    switch (lcf->route) {

    case NGX_HTTP_MEDIA_ROUTE_API:
        if (ngx_http_media_check_db(cf, "media_api") == NULL) {
            return NGX_CONF_ERROR;
        }
        clcf->handler = ngx_http_media_api_handler;
        break;

    case NGX_HTTP_MEDIA_ROUTE_HEALTHZ:
        if (ngx_http_media_check_db(cf, "media_healthz") == NULL) {
            return NGX_CONF_ERROR;
        }
        clcf->handler = ngx_http_media_healthz_handler;
        break;

    default: /* NGX_HTTP_MEDIA_ROUTE_METRICS */
        clcf->handler = ngx_http_media_metrics_handler;
        break;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_media_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_str_t  *value;

    if (lcf->route != NGX_HTTP_MEDIA_ROUTE_OTHER) {
        return "is duplicate: one media handler per location";
    }

    if (ngx_http_media_check_db(cf, "media_stream") == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_http_media_compile_value(cf, &value[1], &lcf->stream_id)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    lcf->route = NGX_HTTP_MEDIA_ROUTE_STREAM;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_media_log_handler(ngx_http_request_t *r)
{
    ngx_http_media_loc_conf_t    *lcf;
    ngx_http_media_stream_ctx_t  *ctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);
    ctx = ngx_http_media_stream_ctx(r);

    if (ctx == NULL) {
        ngx_http_media_metrics_log(r, lcf->route);
        return NGX_OK;
    }

    ngx_http_media_metrics_log(r, NGX_HTTP_MEDIA_ROUTE_STREAM);

    if (ctx->analytics) {
        ngx_http_media_events_emit(r, ctx);
    }

    return NGX_OK;
}


/*
 * A worker that exits destroys its cycle pool, which dlclose()s this
 * module -- and libzmq, loaded only for it -- while ZeroMQ's I/O and
 * reaper threads of contexts still alive would run on: they crash in
 * unmapped code (signal 11 at exit). Keep the module loaded in workers.
 */
static void
ngx_http_media_pin(ngx_cycle_t *cycle)
{
    Dl_info      info;
    const char  *err;

    if (dladdr((void *) ngx_http_media_pin, &info) == 0
        || info.dli_fname == NULL
        || dlopen(info.dli_fname, RTLD_NOW|RTLD_NOLOAD|RTLD_NODELETE) == NULL)
    {
        err = dlerror();
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "media: cannot keep the module loaded: %s",
                      err ? err : "not found");
    }
}


static ngx_int_t
ngx_http_media_init_process(ngx_cycle_t *cycle)
{
    if (ngx_process == NGX_PROCESS_WORKER) {
        ngx_http_media_pin(cycle);
    }

    if (ngx_http_media_packaged_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_media_events_init_process(cycle);
}


static void
ngx_http_media_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_media_bell_exit_process(cycle);
    ngx_http_media_events_exit_process(cycle);
}


/* --- responses --- */


ngx_uint_t
ngx_http_media_http_status(mm_status_t st)
{
    static const ngx_uint_t  map[] = {
        NGX_HTTP_OK,                        /* MM_OK */
        NGX_HTTP_INTERNAL_SERVER_ERROR,     /* MM_ENOMEM */
        NGX_HTTP_BAD_REQUEST,               /* MM_EBADDATA */
        NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,  /* MM_ETOOBIG */
        NGX_HTTP_NOT_FOUND,                 /* MM_ENOTFOUND */
        NGX_HTTP_FORBIDDEN,                 /* MM_EEXPIRED */
        NGX_HTTP_FORBIDDEN,                 /* MM_EFORGED */
        NGX_HTTP_FORBIDDEN,                 /* MM_ETTL */
        NGX_HTTP_INTERNAL_SERVER_ERROR,     /* MM_EIO */
        NGX_HTTP_INTERNAL_SERVER_ERROR,     /* MM_ECORRUPT */
        NGX_HTTP_SERVICE_UNAVAILABLE        /* MM_EAGAIN */
    };

    if ((size_t) st >= sizeof(map) / sizeof(map[0])) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return map[st];
}


void
ngx_http_media_json_error(mm_buf_t *b, const char *code, const char *message)
{
    mm_buf_puts(b, "{\"error\":");
    mm_json_put_string(b, code, strlen(code));
    mm_buf_puts(b, ",\"message\":");
    mm_json_put_string(b, message, strlen(message));
    mm_buf_puts(b, "}\n");
}


ngx_int_t
ngx_http_media_send_json(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len)
{
    static ngx_str_t  json = ngx_string("application/json");

    return ngx_http_media_send(r, status, &json, body, len);
}


ngx_int_t
ngx_http_media_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || len == 0) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = ngx_pnalloc(r->pool, len);
    if (b->pos == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(b->pos, body, len);
    b->last = b->pos + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_http_media_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_int_t  rc;
    mm_buf_t   b;

    mm_buf_init(&b);
    ngx_http_media_json_error(&b, code, message);

    if (b.failed) {
        mm_buf_free(&b);
        return NGX_ERROR;
    }

    rc = ngx_http_media_send_json(r, status, (u_char *) b.data, b.len);

    mm_buf_free(&b);

    return rc;
}


/*
 * The data of r's pool cleanup whose handler is the given tag, or NULL: how
 * a route keeps its ctx when the module ctx slot is the stream route's.
 */
void *
ngx_http_media_cleanup_data(ngx_http_request_t *r, ngx_pool_cleanup_pt tag)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == tag) {
            return cln->data;
        }
    }

    return NULL;
}


/* a directive argument compiled into a new complex value at *cv */
char *
ngx_http_media_compile_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t **cv)
{
    ngx_http_compile_complex_value_t  ccv;

    *cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (*cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = *cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Adds a response header; key and value must outlive the request (literals
 * or r->pool). A WWW-Authenticate header is also r->headers_out's.
 */
ngx_int_t
ngx_http_media_add_header(ngx_http_request_t *r, const char *key,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) key;
    h->key.len = ngx_strlen(key);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    if (ngx_strcmp(key, "WWW-Authenticate") == 0) {
        r->headers_out.www_authenticate = h;
    }

    return NGX_OK;
}


/* a JSON error (a 401 with its WWW-Authenticate), finalizing the request */
void
ngx_http_media_finalize_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    if (status == NGX_HTTP_UNAUTHORIZED
        && ngx_http_media_add_header(r, "WWW-Authenticate",
                                     "Bearer realm=\"media\"")
           != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_http_finalize_request(r,
                              ngx_http_media_send_error(r, status, code,
                                                        message));
}


/*
 * The answer of a pool-thread job back on the event loop: job->status and
 * the JSON in job->out, a 503 when the database failed, finalizing the
 * request.
 */
void
ngx_http_media_job_answer(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_int_t  rc;

    if (job->db_failed) {
        mm_buf_reset(&job->out);
        job->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ngx_http_media_json_error(&job->out, "unavailable",
                                  "the database is unavailable, retry later");
    }

    if (job->out.failed || job->status == 0) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (job->www_authenticate
        && ngx_http_media_add_header(r, "WWW-Authenticate",
                                     "Bearer realm=\"media\", "
                                     "error=\"invalid_token\"")
           != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (job->type != NULL && job->status == NGX_HTTP_OK) {
        rc = ngx_http_media_send(r, job->status, job->type,
                                 (u_char *) job->out.data, job->out.len);

    } else {
        rc = ngx_http_media_send_json(r, job->status,
                                      (u_char *) job->out.data, job->out.len);
    }

    ngx_http_finalize_request(r, rc);
}


/*
 * The request's bearer token, hashed into hash (MM_TOKEN_HASH_LEN + 1
 * bytes): NGX_OK; NGX_DECLINED without an Authorization header; NGX_ERROR
 * when it is not "Bearer <a well-formed token>".
 */
ngx_int_t
ngx_http_media_token(ngx_http_request_t *r, char *hash)
{
    ngx_int_t  rc;
    ngx_str_t  token;

    rc = ngx_http_media_bearer(r, &token);

    if (rc != NGX_OK) {
        return rc;
    }

    if (!mm_token_well_formed((char *) token.data, token.len)) {
        return NGX_ERROR;
    }

    mm_token_hash((char *) token.data, token.len, hash);

    return NGX_OK;
}


/*
 * "http://host[:port]" or "https://..." of the request, as its Host header
 * names it: the base of the absolute URLs the API answers and of the
 * licence URL in a path-signed MPD ($media_base_url); in r->pool. nginx
 * lets a Host through with '<', '"', '&' and the like, which none of the
 * JSON, XML or playlists it lands in escapes: a Host other than a name or
 * address and a port (or none at all) gives "", and the URLs are then
 * absolute paths.
 */
char *
ngx_http_media_base_url(ngx_http_request_t *r)
{
    char        *base;
    u_char       ch;
    ngx_str_t    host;
    ngx_uint_t   i;

    if (r->headers_in.host) {
        host = r->headers_in.host->value;

    } else {
        host = r->headers_in.server;
    }

    for (i = 0; i < host.len; i++) {
        ch = host.data[i];

        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != '_' && ch != ':'
            && ch != '[' && ch != ']')
        {
            break;
        }
    }

    if (host.len == 0 || i < host.len) {
        return "";
    }

    base = ngx_pnalloc(r->pool, sizeof("https://") + host.len);
    if (base == NULL) {
        return NULL;
    }

    *ngx_sprintf((u_char *) base, "%s://%V",
#if (NGX_HTTP_SSL)
                 r->connection->ssl ? "https" : "http",
#else
                 "http",
#endif
                 &host) = '\0';

    return base;
}


/*
 * The whole request body as one NUL-terminated string in r->pool (""
 * when there is none); a body that outgrew client_body_buffer_size is read
 * back from its temp file.
 */
ngx_int_t
ngx_http_media_read_body(ngx_http_request_t *r, char **body, size_t *len)
{
    u_char       *p;
    off_t         size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    *body = "";
    *len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    *body = (char *) p;
    *len = size;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }
            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    *p = '\0';

    return NGX_OK;
}
