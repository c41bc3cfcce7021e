
/*
 * ngx_media: uploads become packaged content (docs/packaging.md).
 *
 * media_packaging (content handler, token or signed URL):
 *     GET  /input_content/{id}       what the upload holds (probe), status
 *     POST /packaged_content         queue a packaging job
 *     GET  /packaged_content/{id}    its state; when done, signed URLs
 *     POST /license/{id}             W3C ClearKey license (+ OPTIONS)
 *     GET  /license/{id}             the key itself (16 bytes): the HLS
 *                                    KEYFORMAT="identity" key URI
 *
 *     POST, GET /packaged/{id}/s/{exp}.{kid}.{sig}/license
 *                                    the same, signed in the path
 *
 * media_protect (access phase): /packaged/{id}/... and /player/{id} need a
 * Bearer token or a signature over the prefix "/packaged/{id}/": the
 * exp/kid/sig query arguments, or "s/{exp}.{kid}.{sig}/" right after the
 * prefix in the path (what relative URLs of the MPD and playlists keep);
 * nginx's static module then serves the files (alias, sendfile, Range).
 *
 * Database work and ffprobe (lib/probe) run as pool-thread jobs. A new
 * upload or packaging job rings the packager's doorbell
 * (ngx_http_media_bell.c); a lost ring only delays the work, since the
 * packager also polls.
 */

#include "ngx_http_media.h"
#include "clearkey.h"
#include "probe.h"

#include <signal.h>


#define NGX_HTTP_MEDIA_PROBE_TIMEOUT   30000       /* ms */
#define NGX_HTTP_MEDIA_LADDER_MAX      16
#define NGX_HTTP_MEDIA_TOKEN_SLOTS     1024

/* what follows a route's prefix */
#define NGX_HTTP_MEDIA_PKG_NOTHING     0
#define NGX_HTTP_MEDIA_PKG_ID          1       /* {id} */
#define NGX_HTTP_MEDIA_PKG_ID_SIGNED   2       /* {id}/s/{e.k.s}/license */

#ifndef NGX_HTTP_UNPROCESSABLE_ENTITY
#define NGX_HTTP_UNPROCESSABLE_ENTITY  422
#endif


typedef enum {
    NGX_HTTP_MEDIA_PKG_INPUT = 0,           /* GET /input_content/{id} */
    NGX_HTTP_MEDIA_PKG_CREATE,              /* POST /packaged_content */
    NGX_HTTP_MEDIA_PKG_GET,                 /* GET /packaged_content/{id} */
    NGX_HTTP_MEDIA_PKG_LICENSE              /* POST, GET /license/{id} */
} ngx_http_media_pkg_route_e;


typedef struct {
    const char                  *prefix;
    size_t                       prefix_len;
    ngx_uint_t                   with_id;
    ngx_http_media_pkg_route_e   route;
    ngx_uint_t                   methods;
    const char                  *allow;
} ngx_http_media_pkg_route_t;


/* one request of media_packaging, handed to the pool thread */
typedef struct {
    ngx_http_media_pkg_route_e   route;
    int64_t                      id;
    char                        *body;
    size_t                       body_len;
    char                        *base;              /* "http://host" */
    char                         token_hash[MM_TOKEN_HASH_LEN + 1];
    int64_t                      token_id;
    ngx_http_media_role_e        role;
    time_t                       now;
    unsigned                     has_token:1;
    unsigned                     signed_ok:1;
    unsigned                     raw_key:1;         /* GET /license/{id} */
} ngx_http_media_pkg_t;


/* the access check of a media_protect location */
typedef struct {
    ngx_uint_t                   state;
    u_char                       token_hash[MM_TOKEN_HASH_LEN + 1];
    unsigned                     token_valid:1;
    unsigned                     db_failed:1;
} ngx_http_media_protect_ctx_t;


typedef struct {
    u_char                       hash[MM_TOKEN_HASH_LEN];
    time_t                       expires;
    unsigned                     used:1;
    unsigned                     valid:1;
} ngx_http_media_pkg_token_t;


enum {
    NGX_HTTP_MEDIA_PROTECT_START = 0,
    NGX_HTTP_MEDIA_PROTECT_WAIT,
    NGX_HTTP_MEDIA_PROTECT_LOOKED_UP,
    NGX_HTTP_MEDIA_PROTECT_PASSED
};


static ngx_int_t ngx_http_media_packaging_handler(ngx_http_request_t *r);
static void ngx_http_media_pkg_body(ngx_http_request_t *r);
static void ngx_http_media_pkg_run(ngx_http_media_job_t *job);
static void ngx_http_media_pkg_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
static ngx_int_t ngx_http_media_protect_access(ngx_http_request_t *r);
static void ngx_http_media_protect_cleanup(void *data);
static void ngx_http_media_protect_run(ngx_http_media_job_t *job);
static void ngx_http_media_protect_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);


static ngx_conf_enum_t  ngx_http_media_protect_modes[] = {
    { ngx_string("off"), NGX_HTTP_MEDIA_PROTECT_OFF },
    { ngx_string("token"), NGX_HTTP_MEDIA_PROTECT_TOKEN },
    { ngx_string("signed"), NGX_HTTP_MEDIA_PROTECT_SIGNED },
    { ngx_string("token_or_signed"), NGX_HTTP_MEDIA_PROTECT_TOKEN_OR_SIGNED },
    { ngx_null_string, 0 }
};


#define R(p, id, route, m, allow)  { p, sizeof(p) - 1, id, route, m, allow }
/* id: NGX_HTTP_MEDIA_PKG_NOTHING, _ID or _ID_SIGNED */

static ngx_http_media_pkg_route_t  ngx_http_media_pkg_routes[] = {
    R("/input_content/", NGX_HTTP_MEDIA_PKG_ID, NGX_HTTP_MEDIA_PKG_INPUT,
      NGX_HTTP_GET, "GET"),
    R("/packaged_content", NGX_HTTP_MEDIA_PKG_NOTHING,
      NGX_HTTP_MEDIA_PKG_CREATE, NGX_HTTP_POST, "POST"),
    R("/packaged_content/", NGX_HTTP_MEDIA_PKG_ID, NGX_HTTP_MEDIA_PKG_GET,
      NGX_HTTP_GET, "GET"),
    R("/license/", NGX_HTTP_MEDIA_PKG_ID, NGX_HTTP_MEDIA_PKG_LICENSE,
      NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_OPTIONS, "GET, POST, OPTIONS"),
    R("/packaged/", NGX_HTTP_MEDIA_PKG_ID_SIGNED, NGX_HTTP_MEDIA_PKG_LICENSE,
      NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_OPTIONS, "GET, POST, OPTIONS"),
};

#undef R


static ngx_uint_t  ngx_http_media_pkg_reap_children;

static ngx_http_media_pkg_token_t
    ngx_http_media_pkg_tokens[NGX_HTTP_MEDIA_TOKEN_SLOTS];


/* --- configuration --- */


char *
ngx_http_media_packaging_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_media_main_conf_t  *mcf;

    if (lcf->route != NGX_HTTP_MEDIA_ROUTE_OTHER || lcf->upload_dir.len
        || lcf->packaging)
    {
        return "is duplicate: one media handler per location";
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);

    if (mcf->db_conninfo.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_packaging\" needs \"media_db\" set "
                           "before it");
        return NGX_CONF_ERROR;
    }

    lcf->packaging = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_media_packaging_handler;

    /* ffprobe runs from this worker: see init_process */
    ngx_http_media_pkg_reap_children = 1;

    return NGX_CONF_OK;
}


char *
ngx_http_media_protect_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (lcf->protect != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; ngx_http_media_protect_modes[i].name.len; i++) {
        if (ngx_http_media_protect_modes[i].name.len == value[1].len
            && ngx_strcmp(ngx_http_media_protect_modes[i].name.data,
                          value[1].data) == 0)
        {
            lcf->protect = ngx_http_media_protect_modes[i].value;
            break;
        }
    }

    if (ngx_http_media_protect_modes[i].name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"media_protect\": use "
                           "off, token, signed or token_or_signed",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts < 3) {
        return NGX_CONF_OK;
    }

    if (value[2].len == 0 || value[2].data[0] != '/'
        || value[2].data[value[2].len - 1] != '/')
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_protect\" prefix \"%V\" must begin and "
                           "end with \"/\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    return ngx_http_media_compile_value(cf, &value[2], &lcf->protect_prefix);
}


char *
ngx_http_media_packaged_merge(ngx_conf_t *cf, ngx_http_media_loc_conf_t *prev,
    ngx_http_media_loc_conf_t *conf)
{
    ngx_http_media_main_conf_t  *mcf;

    if (conf->protect == NGX_CONF_UNSET_UINT) {
        conf->protect_prefix = prev->protect_prefix;
    }

    ngx_conf_merge_uint_value(conf->protect, prev->protect,
                              NGX_HTTP_MEDIA_PROTECT_OFF);

    if (conf->protect == NGX_HTTP_MEDIA_PROTECT_OFF) {
        return NGX_CONF_OK;
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);

    if ((conf->protect & NGX_HTTP_MEDIA_PROTECT_TOKEN)
        && mcf->db_conninfo.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_protect\" with tokens needs "
                           "\"media_db\"");
        return NGX_CONF_ERROR;
    }

    if ((conf->protect & NGX_HTTP_MEDIA_PROTECT_SIGNED)
        && (mcf->sign_keys == NGX_CONF_UNSET_PTR || mcf->sign_keys == NULL))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_protect\" with signed URLs needs "
                           "\"media_sign_key\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_media_packaged_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_media_protect_access;

    return NGX_OK;
}


/*
 * The module runs ffprobe (lib/probe) from pool threads and waits for it
 * there. nginx's SIGCHLD handler would reap that child first (waitpid(-1)
 * on the event loop thread), so workers of a configuration with
 * media_packaging leave SIGCHLD at its default: workers have no children
 * of their own.
 */
ngx_int_t
ngx_http_media_packaged_init_process(ngx_cycle_t *cycle)
{
    struct sigaction  sa;

    if (!ngx_http_media_pkg_reap_children || ngx_process != NGX_PROCESS_WORKER)
    {
        return NGX_OK;
    }

    ngx_memzero(&sa, sizeof(struct sigaction));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);

    if (sigaction(SIGCHLD, &sa, NULL) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "media: sigaction(SIGCHLD) failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* --- helpers --- */


/* 204 for a CORS preflight; the location's add_header supplies the rest */
static ngx_int_t
ngx_http_media_pkg_preflight(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    if (ngx_http_media_add_header(r, "Access-Control-Max-Age", "86400")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_send_header(r);
}


/*
 * A signature in the path: "s/{exp}.{kid}.{sig}/" at p (the URI right
 * after the signed prefix). NGX_OK with *value = "{exp}.{kid}.{sig}" (not
 * yet checked) and *after past its slash; NGX_DECLINED when the URI goes on
 * otherwise. A "." separates the three, as none of them can hold one: exp
 * is digits, kid and sig are base64url.
 */
static ngx_int_t
ngx_http_media_pkg_path_sig(u_char *p, u_char *end, ngx_str_t *value,
    u_char **after)
{
    u_char  *slash;

    if (end - p < 3 || p[0] != 's' || p[1] != '/') {
        return NGX_DECLINED;
    }

    p += 2;

    slash = ngx_strlchr(p, end, '/');
    if (slash == NULL || slash == p) {
        return NGX_DECLINED;
    }

    value->data = p;
    value->len = slash - p;
    *after = slash + 1;

    return NGX_OK;
}


/* splits "{exp}.{kid}.{sig}"; a missing part stays empty (then refused) */
static void
ngx_http_media_pkg_path_split(ngx_str_t *value, ngx_str_t *exp,
    ngx_str_t *kid, ngx_str_t *sig)
{
    u_char      *p, *end, *dot;
    ngx_str_t   *part[3];
    ngx_uint_t   i;

    part[0] = exp;
    part[1] = kid;
    part[2] = sig;

    p = value->data;
    end = p + value->len;

    for (i = 0; i < 3; i++) {
        dot = (i < 2) ? ngx_strlchr(p, end, '.') : NULL;

        part[i]->data = p;
        part[i]->len = (dot ? dot : end) - p;

        p = dot ? dot + 1 : end;
    }
}


/*
 * The signature half of "a bearer token or a signature over the prefix":
 * path_sig ("{exp}.{kid}.{sig}" from the path, or NULL) or else the
 * exp/kid/sig arguments of the request, checked against prefix. NGX_OK
 * when it verifies, NGX_DECLINED without a signature, NGX_DONE when
 * refused (the 403 is sent and the request finalized).
 */
static ngx_int_t
ngx_http_media_pkg_signed(ngx_http_request_t *r, ngx_str_t *prefix,
    ngx_str_t *path_sig)
{
    mm_status_t                  st;
    ngx_str_t                    exp, kid, sig;
    ngx_http_media_main_conf_t  *mcf;

    if (path_sig != NULL) {
        ngx_http_media_pkg_path_split(path_sig, &exp, &kid, &sig);

    } else if (ngx_http_arg(r, (u_char *) "sig", 3, &sig) != NGX_OK) {
        return NGX_DECLINED;

    } else {
        if (ngx_http_arg(r, (u_char *) "exp", 3, &exp) != NGX_OK) {
            ngx_str_null(&exp);
        }

        if (ngx_http_arg(r, (u_char *) "kid", 3, &kid) != NGX_OK) {
            ngx_str_null(&kid);
        }
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    if (mcf->sign_keys == NULL || mcf->sign_keys->nelts == 0) {
        st = MM_EFORGED;

    } else {
        st = mm_sign_check(mcf->sign_keys->elts, mcf->sign_keys->nelts,
                           (char *) prefix->data, prefix->len,
                           (char *) kid.data, kid.len,
                           (char *) exp.data, exp.len,
                           (char *) sig.data, sig.len,
                           (int64_t) ngx_time(), mcf->sign_max_ttl);
    }

    if (st == MM_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "media: signed \"%V\"", prefix);
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "media: signed URL refused: %s", mm_strstatus(st));

    if (st == MM_EEXPIRED) {
        ngx_http_media_finalize_error(r, NGX_HTTP_FORBIDDEN,
                                      "expired_signature",
                                      "the signed URL has expired");
        return NGX_DONE;
    }

    ngx_http_media_finalize_error(r, NGX_HTTP_FORBIDDEN, "invalid_signature",
                                  "the signature does not match this "
                                  "content or its lifetime is longer than "
                                  "allowed");
    return NGX_DONE;
}


/* the digits of /<prefix>{id}: 1..18 of them, no leading zero */
static int64_t
ngx_http_media_pkg_id(u_char *p, u_char *end, u_char **after)
{
    u_char  *d;

    for (d = p; d < end && *d >= '0' && *d <= '9'; d++) { /* void */ }

    *after = d;

    if (d == p || d - p > 18 || *p == '0') {
        return -1;
    }

    return ngx_atoof(p, d - p);
}


static ngx_http_media_pkg_token_t *
ngx_http_media_pkg_token_slot(const u_char *hash)
{
    return &ngx_http_media_pkg_tokens[ngx_hextoi((u_char *) hash, 4)
                                      % NGX_HTTP_MEDIA_TOKEN_SLOTS];
}


/* --- media_packaging: event loop side --- */


static ngx_int_t
ngx_http_media_packaging_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r->method == NGX_HTTP_OPTIONS) {
        return ngx_http_media_pkg_preflight(r);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_media_pkg_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_media_pkg_body(ngx_http_request_t *r)
{
    u_char                      *p, *end, *after;
    int64_t                      id;
    ngx_int_t                    rc;
    ngx_str_t                    prefix, path_sig;
    ngx_uint_t                   i, found, has_path_sig;
    const char                  *allow;
    ngx_http_media_pkg_t        *pk;
    ngx_http_media_job_t        *job;
    ngx_http_media_pkg_route_t  *rt;
    u_char                       buf[64];

    pk = ngx_pcalloc(r->pool, sizeof(ngx_http_media_pkg_t));
    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    if (pk == NULL || job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* route */

    found = 0;
    has_path_sig = 0;
    allow = NULL;
    end = r->uri.data + r->uri.len;

    for (i = 0; i < sizeof(ngx_http_media_pkg_routes)
                    / sizeof(ngx_http_media_pkg_routes[0]); i++)
    {
        rt = &ngx_http_media_pkg_routes[i];

        if (r->uri.len < rt->prefix_len
            || ngx_strncmp(r->uri.data, rt->prefix, rt->prefix_len) != 0)
        {
            continue;
        }

        p = r->uri.data + rt->prefix_len;

        if (rt->with_id == NGX_HTTP_MEDIA_PKG_ID_SIGNED) {
            id = ngx_http_media_pkg_id(p, end, &after);

            if (id <= 0 || after == end || *after != '/'
                || ngx_http_media_pkg_path_sig(after + 1, end, &path_sig,
                                               &after)
                   != NGX_OK
                || end - after != sizeof("license") - 1
                || ngx_strncmp(after, "license", sizeof("license") - 1) != 0)
            {
                continue;
            }

            has_path_sig = 1;

        } else if (rt->with_id) {
            id = ngx_http_media_pkg_id(p, end, &after);
            if (id <= 0 || after != end) {
                continue;
            }

        } else if (p != end) {
            continue;

        } else {
            id = 0;
        }

        found = 1;
        allow = rt->allow;

        if (r->method & rt->methods) {
            pk->route = rt->route;
            pk->id = id;
            pk->raw_key = (rt->route == NGX_HTTP_MEDIA_PKG_LICENSE
                           && r->method == NGX_HTTP_GET);
            break;
        }
    }

    if (!found) {
        ngx_http_media_finalize_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such endpoint");
        return;
    }

    if (i == sizeof(ngx_http_media_pkg_routes)
             / sizeof(ngx_http_media_pkg_routes[0]))
    {
        if (ngx_http_media_add_header(r, "Allow", allow) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_media_finalize_error(r, NGX_HTTP_NOT_ALLOWED,
                                      "method_not_allowed",
                                      "this endpoint does not take that "
                                      "method");
        return;
    }

    /* who: a bearer token (checked by the job) or, for a license, the
       content's signature */

    rc = ngx_http_media_token(r, pk->token_hash);

    if (rc == NGX_ERROR) {
        ngx_http_media_finalize_error(r, NGX_HTTP_UNAUTHORIZED,
                                      "unauthorized",
                                      "expected \"Authorization: Bearer "
                                      "<token>\"");
        return;
    }

    pk->has_token = (rc == NGX_OK);

    if (!pk->has_token && pk->route == NGX_HTTP_MEDIA_PKG_LICENSE) {
        prefix.data = buf;
        prefix.len = ngx_sprintf(buf, "/packaged/%L/", pk->id) - buf;

        rc = ngx_http_media_pkg_signed(r, &prefix,
                                       has_path_sig ? &path_sig : NULL);

        if (rc == NGX_DONE) {
            return;
        }

        pk->signed_ok = (rc == NGX_OK);
    }

    if (!pk->has_token && !pk->signed_ok) {
        ngx_http_media_finalize_error(r, NGX_HTTP_UNAUTHORIZED,
                                      "unauthorized",
                                      pk->route == NGX_HTTP_MEDIA_PKG_LICENSE
                                      ? "send a bearer token or use the "
                                        "signed URL's exp/kid/sig"
                                      : "send \"Authorization: Bearer "
                                        "<token>\"");
        return;
    }

    if (ngx_http_media_read_body(r, &pk->body, &pk->body_len) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    pk->base = ngx_http_media_base_url(r);
    if (pk->base == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    pk->now = ngx_time();

    job->mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    job->data = pk;
    job->run = ngx_http_media_pkg_run;
    job->done = ngx_http_media_pkg_done;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        ngx_http_media_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "busy", "the work queue is full");
        return;
    }
}


static void
ngx_http_media_pkg_done(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    static ngx_str_t  raw_type = ngx_string("application/octet-stream");

    if (pk->route == NGX_HTTP_MEDIA_PKG_LICENSE
        || pk->route == NGX_HTTP_MEDIA_PKG_GET)
    {
        /* keys and short-lived URLs are not for caches */
        if (ngx_http_media_add_header(r, "Cache-Control", "no-store")
            != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    if (pk->raw_key) {
        job->type = &raw_type;
    }

    ngx_http_media_job_answer(r, job);
}


/* --- media_packaging: pool-thread side --- */


/* may this caller see a row owned by owner (text, "" for none)? */
static int
ngx_http_media_pkg_owns(ngx_http_media_pkg_t *pk, const char *owner)
{
    return pk->role == NGX_HTTP_MEDIA_ROLE_ADMIN
           || (owner[0] && strtoll(owner, NULL, 10) == pk->token_id);
}


static void
ngx_http_media_pkg_input(ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    int          i;
    char         idbuf[32];
    const char  *params[1], *v;
    PGresult    *res;

    static const char  *names[] = { "container", "duration", "video",
                                    "audio", "probe" };

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) pk->id);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job,
              "SELECT coalesce(owner::text, ''), size, sha256, status,"
              " coalesce(error, ''),"
              " to_char(created_at AT TIME ZONE 'UTC',"
              "  'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
              " coalesce(probe->'container', 'null'),"
              " coalesce(probe->'duration', 'null'),"
              " coalesce(probe->'video', 'null'),"
              " coalesce(probe->'audio', 'null'),"
              " coalesce(probe::text, 'null')"
              " FROM input_content WHERE id = $1", 1, params);

    if (res == NULL) {
        return;
    }

    if (PQntuples(res) != 1 || !ngx_http_media_pkg_owns(pk,
                                                        PQgetvalue(res, 0, 0)))
    {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no input content %lld", (long long) pk->id);
        return;
    }

    job->status = NGX_HTTP_OK;

    mm_buf_printf(&job->out, "{\"id\":%lld,\"size\":%s,\"sha256\":\"%s\","
                  "\"status\":\"%s\",\"error\":", (long long) pk->id,
                  PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
                  PQgetvalue(res, 0, 3));

    v = PQgetvalue(res, 0, 4);
    if (v[0]) {
        mm_json_put_string(&job->out, v, strlen(v));

    } else {
        mm_buf_puts(&job->out, "null");
    }

    mm_buf_printf(&job->out, ",\"created_at\":\"%s\"", PQgetvalue(res, 0, 5));

    /* jsonb text is JSON: copied as it is */
    for (i = 0; i < 5; i++) {
        mm_buf_printf(&job->out, ",\"%s\":%s", names[i],
                      PQgetvalue(res, 0, 6 + i));
    }

    mm_buf_puts(&job->out, "}\n");

    PQclear(res);
}


/*
 * The input's verdict: probes it with ffprobe when nobody has yet and
 * records the result. Returns 1 when ready; otherwise the answer is set.
 */
static int
ngx_http_media_pkg_verdict(ngx_http_media_job_t *job, const char *idbuf,
    const char *status, const char *path, const char *error)
{
    int           ready;
    char          msg[1024], err[512];
    const char   *params[4];
    mm_buf_t      json;
    PGresult     *res;
    mm_probe_t    p;
    mm_status_t   st;

    if (strcmp(status, "ready") == 0) {
        return 1;
    }

    if (strcmp(status, "invalid") == 0) {
        ngx_http_media_api_fail(job, NGX_HTTP_UNPROCESSABLE_ENTITY,
                                "unsupported_input", "%s",
                                error[0] ? error : "the input is not "
                                "H.264+AAC in MP4/MOV");
        return 0;
    }

    /* "uploaded" or "probing": probe here rather than wait */

    st = mm_probe_run("ffprobe", path, NGX_HTTP_MEDIA_PROBE_TIMEOUT, &p, err,
                      sizeof(err));

    mm_buf_init(&json);

    if (st == MM_OK) {
        ready = mm_probe_verdict(&p, msg, sizeof(msg));
        mm_probe_to_json(&p, &json);

    } else if (st == MM_EBADDATA) {
        ready = 0;
        snprintf(msg, sizeof(msg), "not a media file ffprobe can read: %s",
                 err);

    } else {
        mm_buf_free(&json);
        ngx_http_media_api_fail(job, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "probe_failed", "cannot probe the input: %s",
                                err);
        return 0;
    }

    if (json.failed) {
        mm_buf_free(&json);
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "out of memory");
        return 0;
    }

    params[0] = idbuf;
    params[1] = ready ? "ready" : "invalid";
    params[2] = json.len ? json.data : NULL;
    params[3] = ready ? NULL : msg;

    res = ngx_http_media_db_query(job,
              "UPDATE input_content SET status = $2, probe = $3::jsonb,"
              " error = $4, updated_at = now()"
              " WHERE id = $1 AND status IN ('uploaded', 'probing')",
              4, params);

    mm_buf_free(&json);

    if (res == NULL) {
        return 0;
    }

    PQclear(res);

    if (!ready) {
        ngx_http_media_api_fail(job, NGX_HTTP_UNPROCESSABLE_ENTITY,
                                "unsupported_input", "%s", msg);
    }

    return ready;
}


static void
ngx_http_media_pkg_create(ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    char              idbuf[32], owner[32];
    char              key_hex[MM_CLEARKEY_HEX_LEN + 1];
    char              kid_hex[MM_CLEARKEY_HEX_LEN + 1];
    size_t            i;
    int64_t           input;
    const char       *params[5];
    PGresult         *res;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *v, *ladder;
    unsigned char     k[2][MM_CLEARKEY_LEN];

    static const char  *fields[] = { "key", "kid" };

    doc = ngx_http_media_api_json(job, pk->body, pk->body_len, 0, 1, &root);
    if (doc == NULL) {
        return;
    }

    if (!mm_json_get_int64(root, "input_content_id", &input) || input <= 0) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"input_content_id\" must be a positive "
                                "integer");
        goto done;
    }

    for (i = 0; i < 2; i++) {
        v = mm_json_get(root, fields[i]);

        if (v == NULL || v->type != MM_JSON_STRING
            || mm_clearkey_parse(v->u.str.s, v->u.str.len, k[i]) != MM_OK)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "\"%s\" must be 16 bytes: 22 base64url "
                                    "characters (no padding) or 32 hex "
                                    "digits", fields[i]);
            goto done;
        }

    }

    ladder = mm_json_get(root, "ladder");

    if (ladder != NULL && ladder->type != MM_JSON_NULL) {
        if (ladder->type != MM_JSON_ARRAY || ladder->u.arr.n == 0
            || ladder->u.arr.n > NGX_HTTP_MEDIA_LADDER_MAX)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "\"ladder\" must be an array of 1 to %d "
                                    "renditions", NGX_HTTP_MEDIA_LADDER_MAX);
            goto done;
        }

        for (i = 0; i < ladder->u.arr.n; i++) {
            if (ladder->u.arr.items[i].type != MM_JSON_OBJECT) {
                ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                        "invalid_field",
                                        "\"ladder\"[%zu] must be an object "
                                        "(e.g. {\"height\":720,"
                                        "\"bitrate\":3000000})", i);
                goto done;
            }
        }

    } else {
        ladder = NULL;
    }

    mm_clearkey_hex(k[0], key_hex);
    mm_clearkey_hex(k[1], kid_hex);

    /* the input: theirs, and H.264+AAC in MP4 */

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) input);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job,
              "SELECT coalesce(owner::text, ''), status, path,"
              " coalesce(error, '')"
              " FROM input_content WHERE id = $1", 1, params);

    if (res == NULL) {
        goto done;
    }

    if (PQntuples(res) != 1
        || !ngx_http_media_pkg_owns(pk, PQgetvalue(res, 0, 0)))
    {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no input content %lld", (long long) input);
        goto done;
    }

    if (!ngx_http_media_pkg_verdict(job, idbuf, PQgetvalue(res, 0, 1),
                                    PQgetvalue(res, 0, 2),
                                    PQgetvalue(res, 0, 3)))
    {
        PQclear(res);
        goto done;
    }

    PQclear(res);

    snprintf(owner, sizeof(owner), "%lld", (long long) pk->token_id);

    params[0] = idbuf;
    params[1] = owner;
    params[2] = key_hex;
    params[3] = kid_hex;
    params[4] = ladder ? pk->body : NULL;

    res = ngx_http_media_db_query(job,
              "INSERT INTO packaged_content"
              " (input_id, owner, key_hex, kid_hex, ladder)"
              " VALUES ($1, $2, $3, $4, $5::jsonb->'ladder')"
              " RETURNING id", 5, params);

    if (res == NULL) {
        goto done;
    }

    if (PQntuples(res) != 1) {
        PQclear(res);
        job->db_failed = 1;
        goto done;
    }

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out, "{\"packaged_content_id\":%s,"
                  "\"status\":\"queued\"}\n", PQgetvalue(res, 0, 0));

    PQclear(res);

    ngx_http_media_bell_ring(&job->mcf->packager_bell, "package");

done:

    mm_json_doc_free(&doc);
}


static void
ngx_http_media_pkg_get(ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    char            idbuf[32], prefix[64], sig[MM_SIGN_SIG_LEN + 1];
    char            args[MM_SIGN_KID_MAX + MM_SIGN_SIG_LEN + 64];
    char            spath[sizeof(prefix) + MM_SIGN_KID_MAX + MM_SIGN_SIG_LEN
                          + 32];
    char            key[MM_CLEARKEY_B64_LEN + 1], kid[MM_CLEARKEY_B64_LEN + 1];
    size_t          len;
    int64_t         exp;
    const char     *params[1], *status, *error;
    PGresult       *res;
    mm_sign_key_t  *sk;
    unsigned char   k[2][MM_CLEARKEY_LEN];

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) pk->id);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job,
              "SELECT coalesce(owner::text, ''), status, progress,"
              " coalesce(error, ''), key_hex, kid_hex"
              " FROM packaged_content WHERE id = $1", 1, params);

    if (res == NULL) {
        return;
    }

    if (PQntuples(res) != 1
        || !ngx_http_media_pkg_owns(pk, PQgetvalue(res, 0, 0)))
    {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no packaged content %lld",
                                (long long) pk->id);
        return;
    }

    status = PQgetvalue(res, 0, 1);
    error = PQgetvalue(res, 0, 3);

    if (strcmp(status, "failed") == 0) {
        job->status = NGX_HTTP_UNPROCESSABLE_ENTITY;
        mm_buf_printf(&job->out, "{\"packaged_content_id\":%s,"
                      "\"status\":\"failed\",\"error\":", idbuf);
        mm_json_put_string(&job->out, error[0] ? error : "packaging failed",
                           strlen(error[0] ? error : "packaging failed"));
        mm_buf_puts(&job->out, "}\n");
        PQclear(res);
        return;
    }

    if (strcmp(status, "done") != 0) {
        job->status = NGX_HTTP_ACCEPTED;
        mm_buf_printf(&job->out, "{\"packaged_content_id\":%s,"
                      "\"status\":\"%s\",\"progress\":%s}\n", idbuf, status,
                      PQgetvalue(res, 0, 2));
        PQclear(res);
        return;
    }

    if (mm_clearkey_parse(PQgetvalue(res, 0, 4), PQgetlength(res, 0, 4),
                          k[0]) != MM_OK
        || mm_clearkey_parse(PQgetvalue(res, 0, 5), PQgetlength(res, 0, 5),
                             k[1]) != MM_OK)
    {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "the stored key is malformed");
        return;
    }

    if (job->mcf->sign_keys == NULL || job->mcf->sign_keys->nelts == 0) {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "not_configured", "no signing key is "
                                "configured (media_sign_key)");
        return;
    }

    sk = job->mcf->sign_keys->elts;
    exp = (int64_t) pk->now + job->mcf->sign_max_ttl;
    len = snprintf(prefix, sizeof(prefix), "/packaged/%lld/",
                   (long long) pk->id);

    if (mm_sign_make(sk, prefix, len, exp, sig, sizeof(sig)) != MM_OK) {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "signing failed");
        return;
    }

    /* the query form (the player page) and the path form (the rest) */
    snprintf(args, sizeof(args), "exp=%lld&kid=%s&sig=%s", (long long) exp,
             sk->kid, sig);
    snprintf(spath, sizeof(spath), "%ss/%lld.%s.%s/", prefix,
             (long long) exp, sk->kid, sig);

    mm_clearkey_b64url(k[0], key);
    mm_clearkey_b64url(k[1], kid);

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out,
                  "{\"packaged_content_id\":%s,\"status\":\"done\","
                  "\"url\":\"%s%sstream.mpd\","
                  "\"hls_url\":\"%s%smaster.m3u8\","
                  "\"player_url\":\"%s/player/%s?%s\","
                  "\"license_url\":\"%s%slicense\","
                  "\"key\":\"%s\",\"kid\":\"%s\","
                  "\"key_hex\":\"%s\",\"kid_hex\":\"%s\","
                  "\"expires\":%lld}\n",
                  idbuf, pk->base, spath, pk->base, spath,
                  pk->base, idbuf, args, pk->base, spath, key, kid,
                  PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5),
                  (long long) exp);

    PQclear(res);
}


static void
ngx_http_media_pkg_license(ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    int             wanted;
    char            idbuf[32], type[32], err[256];
    const char     *params[1];
    PGresult       *res;
    mm_status_t     st;
    unsigned char   key[MM_CLEARKEY_LEN], kid[MM_CLEARKEY_LEN];

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) pk->id);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job,
              "SELECT key_hex, kid_hex FROM packaged_content WHERE id = $1",
              1, params);

    if (res == NULL) {
        return;
    }

    if (PQntuples(res) != 1) {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no packaged content %lld",
                                (long long) pk->id);
        return;
    }

    st = mm_clearkey_parse(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0),
                           key);
    if (st == MM_OK) {
        st = mm_clearkey_parse(PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1),
                               kid);
    }

    PQclear(res);

    if (st != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "the stored key is malformed");
        return;
    }

    if (pk->raw_key) {             /* the HLS "identity" key */
        job->status = NGX_HTTP_OK;
        mm_buf_append(&job->out, key, sizeof(key));
        return;
    }

    if (mm_clearkey_request(pk->body, pk->body_len, kid, &wanted, type,
                            sizeof(type), err, sizeof(err))
        != MM_OK)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                "invalid_license_request", "%s", err);
        return;
    }

    if (!wanted) {
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "unknown_kid",
                                "none of the requested key ids belongs to "
                                "packaged content %lld", (long long) pk->id);
        return;
    }

    job->status = NGX_HTTP_OK;
    mm_clearkey_response(&job->out, kid, key, type);
}


static void
ngx_http_media_pkg_run(ngx_http_media_job_t *job)
{
    ngx_http_media_pkg_t  *pk = job->data;

    if (pk->has_token) {
        pk->role = ngx_http_media_db_auth(job, pk->token_hash,
                                          &pk->token_id);

        if (job->db_failed) {
            return;
        }

        if (pk->role == NGX_HTTP_MEDIA_ROLE_NONE) {
            job->www_authenticate = 1;
            ngx_http_media_api_fail(job, NGX_HTTP_UNAUTHORIZED,
                                    "unauthorized",
                                    "the token is unknown or revoked");
            return;
        }
    }

    switch (pk->route) {

    case NGX_HTTP_MEDIA_PKG_INPUT:
        ngx_http_media_pkg_input(job);
        break;

    case NGX_HTTP_MEDIA_PKG_CREATE:
        ngx_http_media_pkg_create(job);
        break;

    case NGX_HTTP_MEDIA_PKG_GET:
        ngx_http_media_pkg_get(job);
        break;

    case NGX_HTTP_MEDIA_PKG_LICENSE:
        ngx_http_media_pkg_license(job);
        break;
    }
}


/* --- media_protect: the access phase --- */


static void
ngx_http_media_protect_cleanup(void *data)
{
    /* the ctx lives in r->pool: the handler is a tag */
}


static ngx_http_media_protect_ctx_t *
ngx_http_media_protect_ctx(ngx_http_request_t *r)
{
    return ngx_http_media_cleanup_data(r, ngx_http_media_protect_cleanup);
}


/* the signed prefix: configured, or the URI's first two segments */
static ngx_int_t
ngx_http_media_protect_prefix(ngx_http_request_t *r,
    ngx_http_media_loc_conf_t *lcf, ngx_str_t *prefix)
{
    u_char  *p, *end, *after;

    if (lcf->protect_prefix) {
        return ngx_http_complex_value(r, lcf->protect_prefix, prefix);
    }

    /* "/packaged/{id}/": a name, then the content id */

    end = r->uri.data + r->uri.len;
    p = r->uri.data + 1;

    while (p < end && *p != '/') {
        p++;
    }

    if (p == end || p == r->uri.data + 1) {
        return NGX_DECLINED;
    }

    if (ngx_http_media_pkg_id(p + 1, end, &after) <= 0
        || after == end || *after != '/')
    {
        return NGX_DECLINED;
    }

    prefix->data = r->uri.data;
    prefix->len = after + 1 - r->uri.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_media_protect_fail(ngx_http_request_t *r,
    ngx_http_media_protect_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message)
{
    ctx->state = NGX_HTTP_MEDIA_PROTECT_PASSED;

    ngx_http_media_finalize_error(r, status, code, message);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_media_protect_access(ngx_http_request_t *r)
{
    u_char                        *end, *after;
    time_t                         now;
    ngx_int_t                      rc;
    ngx_str_t                      prefix, path_sig, *psig;
    ngx_pool_cleanup_t            *cln;
    ngx_http_media_job_t          *job;
    ngx_http_media_loc_conf_t     *lcf;
    ngx_http_media_pkg_token_t    *te;
    ngx_http_media_protect_ctx_t  *ctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (lcf->protect == NGX_HTTP_MEDIA_PROTECT_OFF || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_media_protect_ctx(r);

    if (ctx != NULL) {
        switch (ctx->state) {

        case NGX_HTTP_MEDIA_PROTECT_WAIT:
            return NGX_AGAIN;

        case NGX_HTTP_MEDIA_PROTECT_PASSED:
            return NGX_OK;

        default: /* NGX_HTTP_MEDIA_PROTECT_LOOKED_UP */
            if (ctx->db_failed) {
                return ngx_http_media_protect_fail(r, ctx,
                           NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
                           "the database is unavailable, retry later");
            }

            if (!ctx->token_valid) {
                return ngx_http_media_protect_fail(r, ctx,
                           NGX_HTTP_UNAUTHORIZED, "invalid_token",
                           "the bearer token is unknown or revoked");
            }

            ctx->state = NGX_HTTP_MEDIA_PROTECT_PASSED;
            return NGX_OK;
        }
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_media_protect_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_media_protect_ctx_t));
    cln->handler = ngx_http_media_protect_cleanup;

    if (r->method == NGX_HTTP_OPTIONS) {
        ctx->state = NGX_HTTP_MEDIA_PROTECT_PASSED;
        ngx_http_finalize_request(r, ngx_http_media_pkg_preflight(r));
        return NGX_DONE;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        if (ngx_http_media_add_header(r, "Allow", "GET, HEAD, OPTIONS")
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_media_protect_fail(r, ctx, NGX_HTTP_NOT_ALLOWED,
                                           "method_not_allowed",
                                           "use GET or HEAD");
    }

    rc = ngx_http_media_protect_prefix(r, lcf, &prefix);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_media_protect_fail(r, ctx, NGX_HTTP_NOT_FOUND,
                                           "not_found", "no such content");
    }

    /* "s/{exp}.{kid}.{sig}/" right after the prefix: a path signature */

    psig = NULL;
    end = r->uri.data + r->uri.len;

    if (r->uri.len > prefix.len
        && ngx_strncmp(r->uri.data, prefix.data, prefix.len) == 0
        && ngx_http_media_pkg_path_sig(r->uri.data + prefix.len, end,
                                       &path_sig, &after)
           == NGX_OK)
    {
        psig = &path_sig;
    }

    /* a bearer token */

    rc = ngx_http_media_token(r, (char *) ctx->token_hash);

    if (rc != NGX_DECLINED && (lcf->protect & NGX_HTTP_MEDIA_PROTECT_TOKEN)) {

        if (rc == NGX_ERROR) {
            return ngx_http_media_protect_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                       "invalid_token", "expected \"Authorization: Bearer "
                       "<token>\"");
        }

        now = ngx_time();
        te = ngx_http_media_pkg_token_slot(ctx->token_hash);

        if (te->used && te->expires > now
            && ngx_memcmp(te->hash, ctx->token_hash, MM_TOKEN_HASH_LEN) == 0)
        {
            if (!te->valid) {
                return ngx_http_media_protect_fail(r, ctx,
                           NGX_HTTP_UNAUTHORIZED, "invalid_token",
                           "the bearer token is unknown or revoked");
            }

            ctx->state = NGX_HTTP_MEDIA_PROTECT_PASSED;
            return NGX_OK;
        }

        job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
        if (job == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        job->mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
        job->data = ctx;
        job->run = ngx_http_media_protect_run;
        job->done = ngx_http_media_protect_done;

        if (ngx_http_media_job_post(r, job) != NGX_OK) {
            return ngx_http_media_protect_fail(r, ctx,
                       NGX_HTTP_SERVICE_UNAVAILABLE, "busy",
                       "the work queue is full");
        }

        ctx->state = NGX_HTTP_MEDIA_PROTECT_WAIT;

        return NGX_AGAIN;
    }

    /* a signature over the prefix */

    if (lcf->protect & NGX_HTTP_MEDIA_PROTECT_SIGNED) {
        /* decided unless there is no signature (a refusal frees ctx) */
        ctx->state = NGX_HTTP_MEDIA_PROTECT_PASSED;

        rc = ngx_http_media_pkg_signed(r, &prefix, psig);

        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_http_media_protect_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
               "unauthorized",
               lcf->protect == NGX_HTTP_MEDIA_PROTECT_TOKEN
               ? "send \"Authorization: Bearer <token>\""
               : lcf->protect == NGX_HTTP_MEDIA_PROTECT_SIGNED
                 ? "use a signed URL (exp, kid, sig)"
                 : "send a bearer token or use a signed URL");
}


static void
ngx_http_media_protect_run(ngx_http_media_job_t *job)
{
    ngx_http_media_protect_ctx_t  *ctx = job->data;

    ctx->token_valid = ngx_http_media_db_auth(job, (char *) ctx->token_hash,
                                              NULL)
                       != NGX_HTTP_MEDIA_ROLE_NONE;
}


static void
ngx_http_media_protect_done(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_http_media_protect_ctx_t  *ctx = job->data;

    ngx_http_media_pkg_token_t  *te;

    ctx->db_failed = job->db_failed;

    if (!job->db_failed) {
        te = ngx_http_media_pkg_token_slot(ctx->token_hash);
        ngx_memcpy(te->hash, ctx->token_hash, MM_TOKEN_HASH_LEN);
        te->used = 1;
        te->valid = ctx->token_valid;
        te->expires = ngx_time() + job->mcf->auth_cache_ttl;
    }

    ctx->state = NGX_HTTP_MEDIA_PROTECT_LOOKED_UP;

    r->write_event_handler(r);
}
