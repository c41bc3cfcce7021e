
/*
 * ngx_media: the stream route's access phase.
 *
 * Looks the episode up (per-worker cache, else a thread-pool query), checks
 * a Bearer token or a signed URL for private episodes, and exposes
 * $media_origin_url / $media_episode_id / $media_auth for proxy_pass,
 * proxy_cache_key and logging. nginx's proxy, slice and proxy_cache
 * modules do the streaming itself.
 */

#include "ngx_http_media.h"
#include "url.h"

#include <netdb.h>
#include <arpa/inet.h>

#include <openssl/rand.h>


#define NGX_HTTP_MEDIA_CACHE_SLOTS   4096
#define NGX_HTTP_MEDIA_STALE_MAX     300     /* serve stale if DB is down */
#define NGX_HTTP_MEDIA_RID_LEN       16      /* bytes; 32 hex digits */
#define NGX_HTTP_MEDIA_RID_POOL      (256 * NGX_HTTP_MEDIA_RID_LEN)


typedef struct {
    int64_t       id;
    time_t        expires;
    char         *url;              /* ngx_alloc'd: "url\0host\0" */
    size_t        url_len;
    size_t        host_len;
    unsigned      used:1;
    unsigned      found:1;
    unsigned      private:1;
} ngx_http_media_episode_entry_t;


typedef struct {
    u_char        hash[MM_TOKEN_HASH_LEN];
    time_t        expires;
    unsigned      used:1;
    unsigned      valid:1;
} ngx_http_media_token_entry_t;


/* job input/output of a stream lookup */
typedef struct {
    int64_t       episode_id;
    char          token_hash[MM_TOKEN_HASH_LEN + 1];
    unsigned      want_episode:1;
    unsigned      want_token:1;
    unsigned      found:1;
    unsigned      private:1;
    unsigned      token_valid:1;
    unsigned      origin_bad:1;     /* unresolvable or refused origin */
    char         *url;              /* malloc'd by the thread: "url\0host\0" */
    size_t        url_len;
    size_t        host_len;
} ngx_http_media_lookup_t;


enum {
    NGX_HTTP_MEDIA_STREAM_START = 0,
    NGX_HTTP_MEDIA_STREAM_WAIT,
    NGX_HTTP_MEDIA_STREAM_DECIDED
};


static void ngx_http_media_stream_cleanup(void *data);
static ngx_int_t ngx_http_media_stream_decide(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx);
static void ngx_http_media_lookup_run(ngx_http_media_job_t *job);
static void ngx_http_media_lookup_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
static ngx_int_t ngx_http_media_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_media_request_id(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_media_base_url_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_media_episode_entry_t
    ngx_http_media_episodes[NGX_HTTP_MEDIA_CACHE_SLOTS];
static ngx_http_media_token_entry_t
    ngx_http_media_tokens[NGX_HTTP_MEDIA_CACHE_SLOTS];

/* random bytes for $media_request_id, drawn 256 ids at a time */
static u_char     ngx_http_media_rid_pool[NGX_HTTP_MEDIA_RID_POOL];
static size_t     ngx_http_media_rid_left;
static ngx_pid_t  ngx_http_media_rid_pid;


ngx_http_variable_t  ngx_http_media_stream_vars[] = {

    { ngx_string("media_origin_url"), NULL, ngx_http_media_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("media_episode_id"), NULL, ngx_http_media_variable, 1,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("media_auth"), NULL, ngx_http_media_variable, 2,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("media_origin_host"), NULL, ngx_http_media_variable, 3,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("media_request_id"), NULL, ngx_http_media_request_id, 0,
      0, 0 },

    { ngx_string("media_base_url"), NULL, ngx_http_media_base_url_variable,
      0, 0, 0 },

      ngx_http_null_variable
};


/*
 * The ctx must outlive internal redirects (error_page to @origin_error
 * clears module ctx), so it is also reachable through a pool cleanup, the
 * way ngx_http_realip_module keeps its own.
 */

ngx_http_media_stream_ctx_t *
ngx_http_media_stream_ctx(ngx_http_request_t *r)
{
    ngx_http_media_stream_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_get_module_ctx(r, ngx_http_media_module);
    if (ctx) {
        return ctx;
    }

    ctx = ngx_http_media_cleanup_data(r, ngx_http_media_stream_cleanup);
    if (ctx) {
        ngx_http_set_ctx(r, ctx, ngx_http_media_module);
    }

    return ctx;
}


static void
ngx_http_media_stream_cleanup(void *data)
{
    /* the ctx lives in r->pool: nothing to free, the handler is a tag */
}


static ngx_int_t
ngx_http_media_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t                     s;
    ngx_http_media_stream_ctx_t  *ctx;

    ctx = ngx_http_media_stream_ctx(r);

    if (ctx == NULL || ctx->state != NGX_HTTP_MEDIA_STREAM_DECIDED) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {
    case 0:
        s = ctx->origin_url;
        break;
    case 1:
        s = ctx->episode_id_text;
        break;
    case 3:
        s = ctx->origin_host;
        break;
    default:
        s.data = (u_char *) ctx->auth;
        s.len = ngx_strlen(ctx->auth);
        break;
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s.len;
    v->data = s.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $media_base_url: the base of the URLs the API answers (scheme://host of
 * the request, ngx_http_media_base_url()), for the licence URL that
 * sub_filter writes into a path-signed MPD; "" for a Host not fit for it.
 */
static ngx_int_t
ngx_http_media_base_url_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    char  *base;

    base = ngx_http_media_base_url(r);
    if (base == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_strlen(base);
    v->data = (u_char *) base;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $media_request_id: 16 bytes as 32 hex digits, laid out as a UUIDv7
 * (RFC 9562): the Unix time in milliseconds (48 bits, big-endian), the
 * version 7, the variant, and 74 random bits from OpenSSL's RAND_bytes --
 * as unique as nginx's $request_id, but ids made close in time sort close
 * together, so the events table's primary key grows at its right edge
 * instead of touching a random index page for every event (about a third
 * of PostgreSQL's cost of an insert). The random bytes of 256 ids are drawn
 * at once: one RAND_bytes(16) costs as much as 100 ids from the pool. A
 * forked process (another pid) draws its own. Cached for the request, so
 * the X-Request-Id header and the analytics event carry the same id.
 */
static ngx_int_t
ngx_http_media_request_id(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    u_char      *id, *b;
    uint64_t     ms;
    ngx_time_t  *tp;

    id = ngx_pnalloc(r->pool, 2 * NGX_HTTP_MEDIA_RID_LEN);
    if (id == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_media_rid_left < NGX_HTTP_MEDIA_RID_LEN
        || ngx_http_media_rid_pid != ngx_pid)
    {
        if (RAND_bytes(ngx_http_media_rid_pool, NGX_HTTP_MEDIA_RID_POOL)
            != 1)
        {
            ngx_http_media_rid_left = 0;
            return NGX_ERROR;
        }

        ngx_http_media_rid_left = NGX_HTTP_MEDIA_RID_POOL;
        ngx_http_media_rid_pid = ngx_pid;
    }

    ngx_http_media_rid_left -= NGX_HTTP_MEDIA_RID_LEN;
    b = ngx_http_media_rid_pool + ngx_http_media_rid_left;

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    b[0] = (u_char) (ms >> 40);
    b[1] = (u_char) (ms >> 32);
    b[2] = (u_char) (ms >> 24);
    b[3] = (u_char) (ms >> 16);
    b[4] = (u_char) (ms >> 8);
    b[5] = (u_char) ms;
    b[6] = (u_char) (0x70 | (b[6] & 0x0f));       /* version 7 */
    b[8] = (u_char) (0x80 | (b[8] & 0x3f));       /* variant 10 */

    ngx_hex_dump(id, b, NGX_HTTP_MEDIA_RID_LEN);

    v->len = 2 * NGX_HTTP_MEDIA_RID_LEN;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = id;

    return NGX_OK;
}


ngx_int_t
ngx_http_media_bearer(ngx_http_request_t *r, ngx_str_t *token)
{
    ngx_str_t  h;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    h = r->headers_in.authorization->value;

    if (h.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(h.data, (u_char *) "Bearer ", 7) != 0)
    {
        token->len = 0;
        return NGX_ERROR;
    }

    token->data = h.data + 7;
    token->len = h.len - 7;

    while (token->len && token->data[0] == ' ') {
        token->data++;
        token->len--;
    }

    while (token->len && token->data[token->len - 1] == ' ') {
        token->len--;
    }

    return NGX_OK;
}


static ngx_http_media_episode_entry_t *
ngx_http_media_episode_slot(int64_t id)
{
    return &ngx_http_media_episodes[(uint64_t) id % NGX_HTTP_MEDIA_CACHE_SLOTS];
}


static ngx_http_media_token_entry_t *
ngx_http_media_token_slot(const u_char *hash)
{
    ngx_uint_t  k;

    k = ngx_hextoi((u_char *) hash, 4);

    return &ngx_http_media_tokens[k % NGX_HTTP_MEDIA_CACHE_SLOTS];
}


static ngx_int_t
ngx_http_media_stream_fail(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message)
{
    ngx_int_t  rc;

    ctx->state = NGX_HTTP_MEDIA_STREAM_DECIDED;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        r->headers_out.www_authenticate = ngx_list_push(&r->headers_out.headers);
        if (r->headers_out.www_authenticate == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        r->headers_out.www_authenticate->hash = 1;
        ngx_str_set(&r->headers_out.www_authenticate->key, "WWW-Authenticate");
        ngx_str_set(&r->headers_out.www_authenticate->value,
                    "Bearer realm=\"media\"");
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        ngx_table_elt_t  *h;

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "GET, HEAD");
    }

    rc = ngx_http_media_send_error(r, status, code, message);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


ngx_int_t
ngx_http_media_stream_access(ngx_http_request_t *r)
{
    u_char                          *p;
    time_t                           now;
    ngx_str_t                        id, token;
    ngx_pool_cleanup_t              *cln;
    ngx_http_media_job_t            *job;
    ngx_http_media_lookup_t         *lk;
    ngx_http_media_loc_conf_t       *lcf;
    ngx_http_media_main_conf_t      *mcf;
    ngx_http_media_stream_ctx_t     *ctx;
    ngx_http_media_token_entry_t    *te;
    ngx_http_media_episode_entry_t  *ee;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (lcf->stream_id == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_media_module);

    if (ctx != NULL) {
        if (ctx->state == NGX_HTTP_MEDIA_STREAM_WAIT) {
            return NGX_AGAIN;
        }

        if (ctx->state == NGX_HTTP_MEDIA_STREAM_DECIDED) {
            return NGX_OK;
        }

        /* looked up: fall through to the decision */
        return ngx_http_media_stream_decide(r, ctx);
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_media_stream_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_media_stream_ctx_t));
    cln->handler = ngx_http_media_stream_cleanup;
    ngx_http_set_ctx(r, ctx, ngx_http_media_module);

    ctx->analytics = lcf->analytics ? 1 : 0;
    ctx->auth = "none";

    if (ngx_http_complex_value(r, lcf->stream_id, &id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->episode_id = (id.len > 0 && id.len <= 18)
                      ? (int64_t) ngx_atoof(id.data, id.len) : -1;
    ctx->episode_id_text = id;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_NOT_ALLOWED,
                   "method_not_allowed", "use GET or HEAD");
    }

    if (ctx->episode_id <= 0) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_NOT_FOUND,
                   "not_found", "no such episode");
    }

    switch (ngx_http_media_bearer(r, &token)) {

    case NGX_OK:
        if (!mm_token_well_formed((char *) token.data, token.len)) {
            return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                       "invalid_token", "the bearer token is not valid");
        }

        mm_token_hash((char *) token.data, token.len,
                      (char *) ctx->token_hash);
        ctx->has_token = 1;
        break;

    case NGX_ERROR:
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                   "invalid_token", "expected \"Authorization: Bearer ...\"");

    default:
        break;
    }

    /* fresh cache entries decide without a database round trip */

    now = ngx_time();
    ee = ngx_http_media_episode_slot(ctx->episode_id);
    te = ctx->has_token ? ngx_http_media_token_slot(ctx->token_hash) : NULL;

    if (ee->used && ee->id == ctx->episode_id && ee->expires > now
        && (te == NULL
            || (te->used && te->expires > now
                && ngx_memcmp(te->hash, ctx->token_hash,
                              MM_TOKEN_HASH_LEN) == 0)))
    {
        ctx->found = ee->found;
        ctx->private = ee->private;
        ctx->token_valid = te ? te->valid : 0;

        if (ee->found && ee->url) {
            p = ngx_pnalloc(r->pool, ee->url_len + ee->host_len + 2);
            if (p == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(p, ee->url, ee->url_len + ee->host_len + 2);
            ctx->origin_url.data = p;
            ctx->origin_url.len = ee->url_len;
            ctx->origin_host.data = p + ee->url_len + 1;
            ctx->origin_host.len = ee->host_len;
        }

        ctx->origin_bad = (ee->found && ee->url == NULL);
        ctx->looked_up = 1;

        return ngx_http_media_stream_decide(r, ctx);
    }

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    lk = ngx_pcalloc(r->pool, sizeof(ngx_http_media_lookup_t));
    if (job == NULL || lk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    lk->episode_id = ctx->episode_id;
    lk->want_episode = 1;

    if (ctx->has_token) {
        lk->want_token = 1;
        ngx_memcpy(lk->token_hash, ctx->token_hash, MM_TOKEN_HASH_LEN + 1);
    }

    job->mcf = mcf;
    job->data = lk;
    job->run = ngx_http_media_lookup_run;
    job->done = ngx_http_media_lookup_done;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "busy", "the catalog lookup queue is full");
    }

    ctx->state = NGX_HTTP_MEDIA_STREAM_WAIT;

    return NGX_AGAIN;
}


/*
 * Pool thread: resolve the origin host here (getaddrinfo, so /etc/hosts
 * counts) and hand proxy_pass an address, so the private-address guard
 * applies to the very address nginx connects to (no DNS rebinding between
 * check and use) and no nginx "resolver" is needed. Stores
 * "<scheme>://<addr>:<port><path>\0<host>[:<port>]\0" in lk->url.
 */
static void
ngx_http_media_origin_resolve(ngx_http_media_job_t *job,
    ngx_http_media_lookup_t *lk, const char *src)
{
    int               rc, v6;
    char              err[256], addr[INET6_ADDRSTRLEN], port[16];
    size_t            n;
    mm_url_t          u;
    struct addrinfo   hints, *res, *ai, *pick;

    lk->origin_bad = 1;

    if (mm_url_parse(src, strlen(src), &u, err, sizeof(err)) != MM_OK) {
        return;
    }

    ngx_memzero(&hints, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;

    rc = getaddrinfo(u.host, NULL, &hints, &res);
    if (rc != 0) {
        return;
    }

    pick = NULL;

    for (ai = res; ai; ai = ai->ai_next) {
        if (!job->mcf->allow_private && mm_addr_is_private(ai->ai_addr)) {
            freeaddrinfo(res);
            return;
        }

        if (pick == NULL
            || (pick->ai_family != AF_INET && ai->ai_family == AF_INET))
        {
            pick = ai;
        }
    }

    if (pick == NULL
        || getnameinfo(pick->ai_addr, pick->ai_addrlen, addr, sizeof(addr),
                       NULL, 0, NI_NUMERICHOST) != 0)
    {
        freeaddrinfo(res);
        return;
    }

    v6 = (pick->ai_family == AF_INET6);

    freeaddrinfo(res);

    port[0] = '\0';
    if (u.port != (u.https ? 443u : 80u)) {
        snprintf(port, sizeof(port), ":%u", u.port);
    }

    n = strlen(addr) + strlen(u.path) + 2 * strlen(u.host) + 64;
    lk->url = malloc(n);
    if (lk->url == NULL) {
        return;
    }

    lk->url_len = snprintf(lk->url, n, "%s://%s%s%s:%u%s",
                           u.https ? "https" : "http",
                           v6 ? "[" : "", addr, v6 ? "]" : "", u.port,
                           u.path[0] == '/' ? u.path : "/");

    lk->host_len = snprintf(lk->url + lk->url_len + 1, n - lk->url_len - 1,
                            "%s%s%s%s", strchr(u.host, ':') ? "[" : "",
                            u.host, strchr(u.host, ':') ? "]" : "", port);

    lk->origin_bad = 0;
}


static void
ngx_http_media_lookup_run(ngx_http_media_job_t *job)
{
    ngx_http_media_lookup_t  *lk = job->data;

    char         idbuf[32];
    const char  *params[1];
    PGresult    *res;

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) lk->episode_id);
    params[0] = idbuf;

    res = ngx_http_media_db_exec(job,
              "SELECT mp3_url, private FROM episodes WHERE id = $1",
              1, params);

    if (res == NULL) {
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        PQclear(res);
        job->db_failed = 1;
        return;
    }

    if (PQntuples(res) == 1) {
        lk->found = 1;
        lk->private = PQgetvalue(res, 0, 1)[0] == 't';
        ngx_http_media_origin_resolve(job, lk, PQgetvalue(res, 0, 0));
    }

    PQclear(res);

    if (lk->want_token) {
        lk->token_valid = ngx_http_media_db_auth(job, lk->token_hash, NULL)
                          != NGX_HTTP_MEDIA_ROLE_NONE;
    }
}


static void
ngx_http_media_lookup_done(ngx_http_request_t *r, ngx_http_media_job_t *job)
{
    ngx_http_media_lookup_t  *lk = job->data;

    u_char                          *p;
    char                            *blob;
    size_t                           url_len, host_len;
    time_t                           now;
    ngx_uint_t                       bad;
    ngx_http_media_stream_ctx_t     *ctx;
    ngx_http_media_token_entry_t    *te;
    ngx_http_media_episode_entry_t  *ee;

    ctx = ngx_http_get_module_ctx(r, ngx_http_media_module);
    now = ngx_time();

    ee = ngx_http_media_episode_slot(lk->episode_id);
    te = lk->want_token
         ? ngx_http_media_token_slot((u_char *) lk->token_hash) : NULL;

    if (job->db_failed) {

        /* PostgreSQL is away: a recent answer is better than none */

        if (!(ee->used && ee->id == lk->episode_id
              && ee->expires + NGX_HTTP_MEDIA_STALE_MAX > now
              && (te == NULL
                  || (te->used
                      && te->expires + NGX_HTTP_MEDIA_STALE_MAX > now
                      && ngx_memcmp(te->hash, lk->token_hash,
                                    MM_TOKEN_HASH_LEN) == 0))))
        {
            free(lk->url);
            ctx->state = NGX_HTTP_MEDIA_STREAM_DECIDED;
            ctx->lookup_rc = NGX_HTTP_SERVICE_UNAVAILABLE;
            goto resume;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "media: database unavailable, using a cached "
                      "answer for episode %L", lk->episode_id);

        ctx->found = ee->found;
        ctx->private = ee->private;
        ctx->token_valid = te ? te->valid : 0;
        blob = ee->url;
        url_len = ee->url_len;
        host_len = ee->host_len;

    } else {

        /* refresh the per-worker caches */

        if (ee->used && ee->url) {
            ngx_free(ee->url);
        }

        ngx_memzero(ee, sizeof(ngx_http_media_episode_entry_t));
        ee->id = lk->episode_id;
        ee->expires = now + job->mcf->auth_cache_ttl;
        ee->found = lk->found;
        ee->private = lk->private;
        ee->used = 1;

        if (lk->found && lk->url) {
            ee->url = ngx_alloc(lk->url_len + lk->host_len + 2,
                                r->connection->log);
            if (ee->url == NULL) {
                ee->used = 0;

            } else {
                ngx_memcpy(ee->url, lk->url, lk->url_len + lk->host_len + 2);
                ee->url_len = lk->url_len;
                ee->host_len = lk->host_len;
            }
        }

        if (te) {
            ngx_memcpy(te->hash, lk->token_hash, MM_TOKEN_HASH_LEN);
            te->used = 1;
            te->valid = lk->token_valid;
            te->expires = now + job->mcf->auth_cache_ttl;
        }

        ctx->found = lk->found;
        ctx->private = lk->private;
        ctx->token_valid = lk->token_valid;
        blob = lk->url;
        url_len = lk->url_len;
        host_len = lk->host_len;
    }

    bad = (ctx->found && blob == NULL);

    if (ctx->found && blob) {
        p = ngx_pnalloc(r->pool, url_len + host_len + 2);
        if (p == NULL) {
            free(lk->url);
            ctx->state = NGX_HTTP_MEDIA_STREAM_DECIDED;
            ctx->lookup_rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto resume;
        }

        ngx_memcpy(p, blob, url_len + host_len + 2);
        ctx->origin_url.data = p;
        ctx->origin_url.len = url_len;
        ctx->origin_host.data = p + url_len + 1;
        ctx->origin_host.len = host_len;
    }

    free(lk->url);

    ctx->origin_bad = bad;
    ctx->looked_up = 1;
    ctx->state = NGX_HTTP_MEDIA_STREAM_START;

resume:

    r->write_event_handler(r);
}


static ngx_int_t
ngx_http_media_stream_decide(ngx_http_request_t *r,
    ngx_http_media_stream_ctx_t *ctx)
{
    u_char                      *p;
    u_char                       path[sizeof("/stream/") - 1 + NGX_INT64_LEN];
    ngx_str_t                    exp, kid, sig;
    mm_status_t                  st;
    ngx_http_media_main_conf_t  *mcf;

    if (ctx->lookup_rc) {
        ctx->lookup_rc = 0;
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                   "unavailable", "the catalog is unavailable, retry later");
    }

    if (!ctx->found) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_NOT_FOUND,
                   "not_found", "no such episode");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    if (ctx->has_token && !ctx->token_valid) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                   "invalid_token", "the bearer token is not valid");
    }

    if (ctx->has_token) {
        ctx->auth = "token";

    } else if (ngx_http_arg(r, (u_char *) "sig", 3, &sig) == NGX_OK) {

        if (ngx_http_arg(r, (u_char *) "exp", 3, &exp) != NGX_OK) {
            ngx_str_null(&exp);
        }

        if (ngx_http_arg(r, (u_char *) "kid", 3, &kid) != NGX_OK) {
            ngx_str_null(&kid);
        }

        /* the id is 1-18 digits here (else "not found" above) */
        p = ngx_cpymem(path, "/stream/", sizeof("/stream/") - 1);
        p = ngx_cpymem(p, ctx->episode_id_text.data,
                       ngx_min(ctx->episode_id_text.len, NGX_INT64_LEN));

        st = mcf->sign_keys == NULL
             ? MM_EFORGED
             : mm_sign_check(mcf->sign_keys->elts, mcf->sign_keys->nelts,
                             (char *) path, p - path,
                             (char *) kid.data, kid.len,
                             (char *) exp.data, exp.len,
                             (char *) sig.data, sig.len,
                             (int64_t) ngx_time(), mcf->sign_max_ttl);

        if (st != MM_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "media: signed URL refused: %s", mm_strstatus(st));

            return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_FORBIDDEN,
                       st == MM_EEXPIRED ? "expired_signature"
                                         : "invalid_signature",
                       st == MM_EEXPIRED
                           ? "the signed URL has expired"
                           : "the signature does not match this episode "
                             "or its lifetime is longer than allowed");
        }

        ctx->auth = "signed";

    } else if (ctx->private) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized",
                   "this episode is private: send a bearer token or use "
                   "a signed URL");

    } else {
        ctx->auth = "public";
    }

    if (ctx->origin_bad) {
        return ngx_http_media_stream_fail(r, ctx, NGX_HTTP_BAD_GATEWAY,
                   "origin_failed",
                   "the episode source does not resolve to an allowed "
                   "address");
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media stream %L via %s from \"%V\"",
                   ctx->episode_id, ctx->auth, &ctx->origin_url);

    ctx->state = NGX_HTTP_MEDIA_STREAM_DECIDED;

    return NGX_OK;
}
