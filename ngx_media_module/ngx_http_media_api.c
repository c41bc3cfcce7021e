
/*
 * ngx_media: control endpoints under /api/.
 *
 * The event loop reads the body, routes the request and checks that a
 * bearer token is present; everything that touches PostgreSQL (token
 * role, the operation itself) runs as one job on a pool thread, which
 * leaves the HTTP status and JSON body in job->status / job->out.
 */

#include "ngx_http_media.h"
#include "archive.h"
#include "url.h"


#define NGX_HTTP_MEDIA_API_MAX_EVENTS   10000
#define NGX_HTTP_MEDIA_NAME_MAX         500


typedef enum {
    NGX_HTTP_MEDIA_API_TOKENS = 0,          /* /api/tokens */
    NGX_HTTP_MEDIA_API_TOKEN,               /* /api/tokens/{id} */
    NGX_HTTP_MEDIA_API_EPISODES,            /* /api/episodes */
    NGX_HTTP_MEDIA_API_EPISODE,             /* /api/episodes/{id} */
    NGX_HTTP_MEDIA_API_PRIVATE,             /* /api/episodes/{id}/private */
    NGX_HTTP_MEDIA_API_SIGN,                /* /api/episodes/{id}/signed-url */
    NGX_HTTP_MEDIA_API_EVENTS,              /* /api/analytics/events */
    NGX_HTTP_MEDIA_API_STATS,               /* /api/analytics/episodes/{id} */
    /* archives: ngx_http_media_archive.c */
    NGX_HTTP_MEDIA_API_ARCHIVE_CREATE,      /* /api/archive/create */
    NGX_HTTP_MEDIA_API_ARCHIVE_STATUS       /* /api/archive/status/{hash} */
} ngx_http_media_api_route_e;


typedef struct {
    ngx_http_media_api_route_e   route;
    ngx_uint_t                   method;
    int64_t                      id;
    char                         hash[MM_ARCHIVE_HASH_LEN + 1];
    char                        *body;
    size_t                       body_len;
    char                        *args;          /* query string, NUL-term */
    char                        *base;          /* "http://host", NUL-term */
    char                         token_hash[MM_TOKEN_HASH_LEN + 1];
    ngx_http_media_role_e        role;
    int64_t                      token_id;
    time_t                       now;
} ngx_http_media_api_t;


typedef struct {
    const char                  *prefix;
    size_t                       prefix_len;
    const char                  *suffix;        /* after /{id}, or NULL */
    ngx_http_media_api_route_e   route;
    ngx_uint_t                   methods;
    ngx_uint_t                   hash;          /* {hash}, not {id} */
} ngx_http_media_api_route_t;


static void ngx_http_media_api_body(ngx_http_request_t *r);
static void ngx_http_media_api_run(ngx_http_media_job_t *job);


#define R(p, s, route, m)  { p, sizeof(p) - 1, s, route, m, 0 }
#define H(p, s, route, m)  { p, sizeof(p) - 1, s, route, m, 1 }

static ngx_http_media_api_route_t  ngx_http_media_api_routes[] = {
    R("/api/tokens", NULL, NGX_HTTP_MEDIA_API_TOKENS,
      NGX_HTTP_POST|NGX_HTTP_GET),
    R("/api/tokens/", "", NGX_HTTP_MEDIA_API_TOKEN, NGX_HTTP_DELETE),
    R("/api/episodes", NULL, NGX_HTTP_MEDIA_API_EPISODES,
      NGX_HTTP_POST|NGX_HTTP_GET),
    R("/api/episodes/", "", NGX_HTTP_MEDIA_API_EPISODE, NGX_HTTP_GET),
    R("/api/episodes/", "/private", NGX_HTTP_MEDIA_API_PRIVATE,
      NGX_HTTP_POST),
    R("/api/episodes/", "/signed-url", NGX_HTTP_MEDIA_API_SIGN,
      NGX_HTTP_POST),
    R("/api/analytics/events", NULL, NGX_HTTP_MEDIA_API_EVENTS,
      NGX_HTTP_POST),
    R("/api/analytics/episodes/", "", NGX_HTTP_MEDIA_API_STATS,
      NGX_HTTP_GET),
    R("/api/archive/create", NULL, NGX_HTTP_MEDIA_API_ARCHIVE_CREATE,
      NGX_HTTP_POST),
    H("/api/archive/status/", "", NGX_HTTP_MEDIA_API_ARCHIVE_STATUS,
      NGX_HTTP_GET),
};

#undef R
#undef H


/* --- event loop side --- */


static ngx_int_t
ngx_http_media_api_route(ngx_http_request_t *r, ngx_http_media_api_t *api,
    ngx_uint_t *allowed)
{
    u_char                      *p, *end, *d;
    ngx_uint_t                   i, found;
    ngx_http_media_api_route_t  *rt;

    found = 0;
    *allowed = 0;
    end = r->uri.data + r->uri.len;

    for (i = 0; i < sizeof(ngx_http_media_api_routes)
                    / sizeof(ngx_http_media_api_routes[0]); i++)
    {
        rt = &ngx_http_media_api_routes[i];

        if (r->uri.len < rt->prefix_len
            || ngx_strncmp(r->uri.data, rt->prefix, rt->prefix_len) != 0)
        {
            continue;
        }

        p = r->uri.data + rt->prefix_len;

        if (rt->suffix == NULL) {
            if (p != end) {
                continue;
            }

        } else if (rt->hash) {
            if ((size_t) (end - p) != MM_ARCHIVE_HASH_LEN
                                      + ngx_strlen(rt->suffix)
                || !mm_archive_hash_valid((char *) p, MM_ARCHIVE_HASH_LEN)
                || ngx_strncmp(p + MM_ARCHIVE_HASH_LEN, rt->suffix,
                               ngx_strlen(rt->suffix)) != 0)
            {
                continue;
            }

            ngx_memcpy(api->hash, p, MM_ARCHIVE_HASH_LEN);
            api->hash[MM_ARCHIVE_HASH_LEN] = '\0';

        } else {
            for (d = p; d < end && *d >= '0' && *d <= '9'; d++) { /* void */ }

            if (d == p || d - p > 18
                || (size_t) (end - d) != ngx_strlen(rt->suffix)
                || ngx_strncmp(d, rt->suffix, end - d) != 0)
            {
                continue;
            }

            api->id = ngx_atoof(p, d - p);
            if (api->id <= 0) {
                continue;
            }
        }

        found = 1;
        *allowed |= rt->methods;

        if (r->method & rt->methods) {
            api->route = rt->route;
            return NGX_OK;
        }
    }

    return found ? NGX_HTTP_NOT_ALLOWED : NGX_HTTP_NOT_FOUND;
}


ngx_int_t
ngx_http_media_api_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_media_api_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static char *
ngx_http_media_api_cstr(ngx_http_request_t *r, u_char *p, size_t len)
{
    char  *s;

    s = ngx_pnalloc(r->pool, len + 1);
    if (s == NULL) {
        return NULL;
    }

    ngx_memcpy(s, p, len);
    s[len] = '\0';

    return s;
}


static void
ngx_http_media_api_body(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_uint_t                   allowed;
    ngx_http_media_api_t        *api;
    ngx_http_media_job_t        *job;
    ngx_http_media_main_conf_t  *mcf;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    api = ngx_pcalloc(r->pool, sizeof(ngx_http_media_api_t));
    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    if (api == NULL || job == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_media_api_route(r, api, &allowed);

    if (rc == NGX_HTTP_NOT_FOUND) {
        ngx_http_media_finalize_error(r, rc, "not_found", "no such endpoint");
        return;
    }

    if (rc == NGX_HTTP_NOT_ALLOWED) {
        if (ngx_http_media_add_header(r, "Allow", "GET, POST, DELETE")
            != NGX_OK)
        {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_http_media_finalize_error(r, rc, "method_not_allowed",
                                      "this endpoint does not take that "
                                      "method");
        return;
    }

    if (ngx_http_media_token(r, api->token_hash) != NGX_OK) {
        ngx_http_media_finalize_error(r, NGX_HTTP_UNAUTHORIZED,
                                      "unauthorized",
                                      "send \"Authorization: Bearer "
                                      "<token>\"");
        return;
    }

    if (ngx_http_media_read_body(r, &api->body, &api->body_len) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    api->method = r->method;
    api->now = ngx_time();
    api->args = ngx_http_media_api_cstr(r, r->args.data, r->args.len);
    api->base = ngx_http_media_base_url(r);

    if (api->args == NULL || api->base == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    job->mcf = mcf;
    job->data = api;
    job->run = ngx_http_media_api_run;
    job->done = ngx_http_media_job_answer;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        ngx_http_media_finalize_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "busy", "the work queue is full");
        return;
    }
}


/* --- pool-thread side --- */


void
ngx_http_media_api_fail(ngx_http_media_job_t *job, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    char     msg[1024];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    job->status = status;
    mm_buf_reset(&job->out);
    ngx_http_media_json_error(&job->out, code, msg);
}


/*
 * Parses a request body of JSON (an empty body is {} when empty_ok), whose
 * root must be an object when object is set. Returns the document, or NULL
 * with the 400 answer written.
 */
mm_json_doc_t *
ngx_http_media_api_json(ngx_http_media_job_t *job, const char *body,
    size_t len, int empty_ok, int object, const mm_json_t **root)
{
    char            err[256];
    mm_json_doc_t  *doc;

    if (len == 0 && empty_ok) {
        body = "{}";
        len = 2;
    }

    if (mm_json_parse(len ? body : "", len, &doc, root, err, sizeof(err))
        != MM_OK)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                "%s", err);
        return NULL;
    }

    if (object && (*root)->type != MM_JSON_OBJECT) {
        mm_json_doc_free(&doc);
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                "expected an object");
        return NULL;
    }

    return doc;
}


/* a required (or optional) string member of bounded length */
static int
ngx_http_media_api_string(ngx_http_media_job_t *job, const mm_json_t *obj,
    const char *key, size_t max, int required, const char **s, size_t *len)
{
    const mm_json_t  *v;

    v = mm_json_get(obj, key);

    if (v == NULL || v->type == MM_JSON_NULL) {
        if (!required) {
            *s = NULL;
            *len = 0;
            return 1;
        }

        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"%s\" is required", key);
        return 0;
    }

    if (v->type != MM_JSON_STRING || v->u.str.len == 0 || v->u.str.len > max
        || memchr(v->u.str.s, '\0', v->u.str.len) != NULL)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"%s\" must be a string of 1 to %zu bytes",
                                key, max);
        return 0;
    }

    *s = v->u.str.s;
    *len = v->u.str.len;

    return 1;
}


static const char  ngx_http_media_episode_cols[] =
    "id, name, author, mp3_url, private,"
    " to_char(created_at AT TIME ZONE 'UTC',"
    " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";


static void
ngx_http_media_api_put_episode(mm_buf_t *b, ngx_http_media_api_t *api,
    PGresult *res, int row)
{
    const char  *id;

    id = PQgetvalue(res, row, 0);

    mm_buf_printf(b, "{\"id\":%s,\"name\":", id);
    mm_json_put_string(b, PQgetvalue(res, row, 1),
                       PQgetlength(res, row, 1));
    mm_buf_puts(b, ",\"author\":");
    mm_json_put_string(b, PQgetvalue(res, row, 2),
                       PQgetlength(res, row, 2));
    mm_buf_puts(b, ",\"mp3_url\":");
    mm_json_put_string(b, PQgetvalue(res, row, 3),
                       PQgetlength(res, row, 3));
    mm_buf_printf(b, ",\"private\":%s,\"stream_url\":",
                  PQgetvalue(res, row, 4)[0] == 't' ? "true" : "false");
    mm_buf_printf(b, "\"%s/stream/%s.mp3\"", api->base, id);
    mm_buf_printf(b, ",\"created_at\":\"%s\"}", PQgetvalue(res, row, 5));
}


/* answers with row 0 of res, or a 404 when there is none; clears res */
static void
ngx_http_media_api_episode_answer(ngx_http_media_job_t *job, PGresult *res,
    ngx_uint_t status)
{
    ngx_http_media_api_t  *api = job->data;

    if (PQntuples(res) == 0) {
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no episode %lld", (long long) api->id);

    } else {
        job->status = status;
        ngx_http_media_api_put_episode(&job->out, api, res, 0);
        mm_buf_puts(&job->out, "\n");
    }

    PQclear(res);
}


static PGresult *
ngx_http_media_api_get_episode(ngx_http_media_job_t *job, int64_t id)
{
    char         sql[256], idbuf[32];
    const char  *params[1];
    PGresult    *res;

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) id);
    snprintf(sql, sizeof(sql), "SELECT %s FROM episodes WHERE id = $1",
             ngx_http_media_episode_cols);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job, sql, 1, params);

    if (res == NULL) {
        return NULL;
    }

    if (PQntuples(res) == 0) {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no episode %lld", (long long) id);
        return NULL;
    }

    return res;
}


static void
ngx_http_media_api_token_create(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    const char        *role, *name, *params[3];
    char               token[MM_TOKEN_LEN + 1], hash[MM_TOKEN_HASH_LEN + 1];
    size_t             role_len, name_len;
    PGresult          *res;
    mm_json_doc_t     *doc;
    const mm_json_t   *root;

    doc = ngx_http_media_api_json(job, api->body, api->body_len, 0, 1,
                                  &root);
    if (doc == NULL) {
        return;
    }

    if (!ngx_http_media_api_string(job, root, "role", 16, 1, &role,
                                   &role_len)
        || !ngx_http_media_api_string(job, root, "name", 200, 1, &name,
                                      &name_len))
    {
        goto done;
    }

    if (strcmp(role, "admin") != 0 && strcmp(role, "user") != 0
        && strcmp(role, "service") != 0)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"role\" must be admin, user or service");
        goto done;
    }

    if (mm_token_new(token, sizeof(token)) != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "no randomness for a token");
        goto done;
    }

    mm_token_hash(token, MM_TOKEN_LEN, hash);

    params[0] = name;
    params[1] = role;
    params[2] = hash;

    res = ngx_http_media_db_query(job,
              "INSERT INTO tokens (name, role, hash) VALUES ($1, $2, $3)"
              " RETURNING id", 3, params);

    if (res == NULL) {
        goto done;
    }

    job->status = NGX_HTTP_CREATED;
    mm_buf_printf(&job->out, "{\"id\":%s,\"token\":\"%s\",\"role\":\"%s\","
                  "\"name\":", PQgetvalue(res, 0, 0), token, role);
    mm_json_put_string(&job->out, name, name_len);
    mm_buf_puts(&job->out, "}\n");

    PQclear(res);

done:

    mm_json_doc_free(&doc);
}


static void
ngx_http_media_api_token_list(ngx_http_media_job_t *job)
{
    int        i, n;
    PGresult  *res;

    res = ngx_http_media_db_exec(job,
              "SELECT id, name, role, revoked_at IS NOT NULL,"
              " to_char(created_at AT TIME ZONE 'UTC',"
              " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
              " FROM tokens ORDER BY id", 0, NULL);

    if (res == NULL) {
        return;
    }

    job->status = NGX_HTTP_OK;
    mm_buf_puts(&job->out, "{\"items\":[");

    n = PQntuples(res);
    for (i = 0; i < n; i++) {
        mm_buf_printf(&job->out, "%s{\"id\":%s,\"name\":", i ? "," : "",
                      PQgetvalue(res, i, 0));
        mm_json_put_string(&job->out, PQgetvalue(res, i, 1),
                           PQgetlength(res, i, 1));
        mm_buf_printf(&job->out, ",\"role\":\"%s\",\"revoked\":%s,"
                      "\"created_at\":\"%s\"}", PQgetvalue(res, i, 2),
                      PQgetvalue(res, i, 3)[0] == 't' ? "true" : "false",
                      PQgetvalue(res, i, 4));
    }

    mm_buf_puts(&job->out, "]}\n");

    PQclear(res);
}


static void
ngx_http_media_api_token_revoke(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    char         idbuf[32];
    const char  *params[1];
    PGresult    *res;

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) api->id);
    params[0] = idbuf;

    res = ngx_http_media_db_exec(job,
              "UPDATE tokens SET revoked_at = coalesce(revoked_at, now())"
              " WHERE id = $1 RETURNING id", 1, params);

    if (res == NULL) {
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no token %lld", (long long) api->id);

    } else {
        job->status = NGX_HTTP_OK;
        mm_buf_printf(&job->out, "{\"id\":%s,\"revoked\":true}\n", idbuf);
    }

    PQclear(res);
}


static void
ngx_http_media_api_episode_create(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    char               err[256], idbuf[32], sql[512];
    const char        *name, *author, *url, *params[4];
    size_t             name_len, author_len, url_len;
    mm_url_t           u;
    PGresult          *res;
    mm_status_t        st;
    mm_json_doc_t     *doc;
    const mm_json_t   *root;

    doc = ngx_http_media_api_json(job, api->body, api->body_len, 0, 1,
                                  &root);
    if (doc == NULL) {
        return;
    }

    if (!ngx_http_media_api_string(job, root, "mp3_url", MM_URL_MAX, 1,
                                   &url, &url_len)
        || !ngx_http_media_api_string(job, root, "name",
                                      NGX_HTTP_MEDIA_NAME_MAX, 1, &name,
                                      &name_len)
        || !ngx_http_media_api_string(job, root, "author",
                                      NGX_HTTP_MEDIA_NAME_MAX, 1, &author,
                                      &author_len))
    {
        goto done;
    }

    if (mm_url_parse(url, url_len, &u, err, sizeof(err)) != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"mp3_url\": %s", err);
        goto done;
    }

    st = mm_url_check_host(&u, job->mcf->allow_private, err, sizeof(err));
    if (st != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"mp3_url\": %s", err);
        goto done;
    }

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) api->token_id);
    params[0] = name;
    params[1] = author;
    params[2] = url;
    params[3] = idbuf;

    snprintf(sql, sizeof(sql),
             "INSERT INTO episodes (name, author, mp3_url, created_by)"
             " VALUES ($1, $2, $3, $4) RETURNING %s",
             ngx_http_media_episode_cols);

    res = ngx_http_media_db_exec(job, sql, 4, params);
    if (res == NULL) {
        goto done;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "the episode was refused: %s",
                                PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
        PQclear(res);
        goto done;
    }

    ngx_http_media_api_episode_answer(job, res, NGX_HTTP_CREATED);

done:

    mm_json_doc_free(&doc);
}


static ngx_int_t
ngx_http_media_api_arg(const char *args, const char *name, char *out,
    size_t size)
{
    size_t       n, len;
    const char  *p, *v, *e;

    n = strlen(name);

    for (p = args; p && *p; p = e ? e + 1 : NULL) {
        e = strchr(p, '&');
        len = e ? (size_t) (e - p) : strlen(p);

        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            v = p + n + 1;
            len -= n + 1;

            if (len >= size) {
                return NGX_ERROR;
            }

            memcpy(out, v, len);
            out[len] = '\0';
            return NGX_OK;
        }

        if (e == NULL) {
            break;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_media_api_int_arg(const char *args, const char *name, int64_t min,
    int64_t max, int64_t *out)
{
    char        buf[24], *end;
    long long   v;
    ngx_int_t   rc;

    rc = ngx_http_media_api_arg(args, name, buf, sizeof(buf));
    if (rc != NGX_OK) {
        return rc;
    }

    if (buf[0] < '0' || buf[0] > '9') {
        return NGX_ERROR;
    }

    errno = 0;
    v = strtoll(buf, &end, 10);

    if (errno || *end != '\0' || v < min || v > max) {
        return NGX_ERROR;
    }

    *out = v;

    return NGX_OK;
}


static void
ngx_http_media_api_episode_list(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    int          i, n, limit_n;
    char         sql[512], lim[24], cur[24];
    int64_t      limit, cursor;
    ngx_int_t    rc;
    const char  *params[2];
    PGresult    *res;

    limit = 20;
    cursor = 0;

    rc = ngx_http_media_api_int_arg(api->args, "limit", 1, 100, &limit);
    if (rc == NGX_ERROR) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                "\"limit\" must be an integer 1..100");
        return;
    }

    rc = ngx_http_media_api_int_arg(api->args, "cursor", 0, INT64_MAX,
                                    &cursor);
    if (rc == NGX_ERROR) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_query",
                                "\"cursor\" must be a value returned as "
                                "\"next_cursor\"");
        return;
    }

    snprintf(lim, sizeof(lim), "%lld", (long long) limit + 1);
    snprintf(cur, sizeof(cur), "%lld", (long long) cursor);
    params[0] = cur;
    params[1] = lim;

    snprintf(sql, sizeof(sql), "SELECT %s FROM episodes WHERE id > $1"
             " ORDER BY id LIMIT $2", ngx_http_media_episode_cols);

    res = ngx_http_media_db_query(job, sql, 2, params);
    if (res == NULL) {
        return;
    }

    n = PQntuples(res);
    limit_n = (int) limit;

    job->status = NGX_HTTP_OK;
    mm_buf_puts(&job->out, "{\"items\":[");

    for (i = 0; i < n && i < limit_n; i++) {
        if (i) {
            mm_buf_puts(&job->out, ",");
        }
        ngx_http_media_api_put_episode(&job->out, api, res, i);
    }

    if (n > limit_n) {
        mm_buf_printf(&job->out, "],\"next_cursor\":\"%s\"}\n",
                      PQgetvalue(res, limit_n - 1, 0));

    } else {
        mm_buf_puts(&job->out, "],\"next_cursor\":null}\n");
    }

    PQclear(res);
}


static void
ngx_http_media_api_episode_get(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    PGresult  *res;

    res = ngx_http_media_api_get_episode(job, api->id);
    if (res == NULL) {
        return;
    }

    ngx_http_media_api_episode_answer(job, res, NGX_HTTP_OK);
}


static void
ngx_http_media_api_episode_private(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    int                priv;
    char               sql[512], idbuf[32];
    const char        *params[2];
    PGresult          *res;
    mm_json_doc_t     *doc;
    const mm_json_t   *root, *v;

    doc = ngx_http_media_api_json(job, api->body, api->body_len, 1, 1,
                                  &root);
    if (doc == NULL) {
        return;
    }

    priv = 1;

    v = mm_json_get(root, "private");
    if (v != NULL && !mm_json_get_bool(root, "private", &priv)) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"private\" must be true or false");
        goto done;
    }

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) api->id);
    params[0] = idbuf;
    params[1] = priv ? "true" : "false";

    snprintf(sql, sizeof(sql), "UPDATE episodes SET private = $2,"
             " updated_at = now() WHERE id = $1 RETURNING %s",
             ngx_http_media_episode_cols);

    res = ngx_http_media_db_query(job, sql, 2, params);
    if (res == NULL) {
        goto done;
    }

    ngx_http_media_api_episode_answer(job, res, NGX_HTTP_OK);

done:

    mm_json_doc_free(&doc);
}


static void
ngx_http_media_api_episode_sign(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    char               path[64], sig[MM_SIGN_SIG_LEN + 1], when[32];
    int64_t            ttl, exp;
    size_t             path_len;
    struct tm          tm;
    time_t             t;
    PGresult          *res;
    mm_sign_key_t     *key;
    mm_json_doc_t     *doc;
    const mm_json_t   *root, *v;

    doc = ngx_http_media_api_json(job, api->body, api->body_len, 1, 1,
                                  &root);
    if (doc == NULL) {
        return;
    }

    ttl = job->mcf->sign_max_ttl;

    v = mm_json_get(root, "ttl");
    if (v != NULL
        && (!mm_json_get_int64(root, "ttl", &ttl) || ttl < 1
            || ttl > (int64_t) job->mcf->sign_max_ttl))
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"ttl\" must be an integer from 1 to %d "
                                "seconds", (int) job->mcf->sign_max_ttl);
        goto done;
    }

    if (job->mcf->sign_keys == NULL || job->mcf->sign_keys->nelts == 0) {
        ngx_http_media_api_fail(job, NGX_HTTP_SERVICE_UNAVAILABLE,
                                "not_configured",
                                "no signing key is configured "
                                "(media_sign_key)");
        goto done;
    }

    res = ngx_http_media_api_get_episode(job, api->id);
    if (res == NULL) {
        goto done;
    }

    PQclear(res);

    key = job->mcf->sign_keys->elts;
    exp = (int64_t) api->now + ttl;
    path_len = snprintf(path, sizeof(path), "/stream/%lld",
                        (long long) api->id);

    if (mm_sign_make(key, path, path_len, exp, sig, sizeof(sig)) != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "signing failed");
        goto done;
    }

    t = (time_t) exp;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out, "{\"url\":\"%s%s.mp3?exp=%lld&kid=%s&sig=%s\","
                  "\"expires_at\":\"%s\",\"expires\":%lld,\"kid\":\"%s\"}\n",
                  api->base, path, (long long) exp, key->kid, sig, when,
                  (long long) exp, key->kid);

done:

    mm_json_doc_free(&doc);
}


/* one event of POST /api/analytics/events, re-serialised field by field */
static ngx_int_t
ngx_http_media_api_event(const mm_json_t *ev, time_t now, mm_buf_t *out,
    char *err, size_t err_size)
{
    static const char  *opt[] = { "range", "auth", "cache", "client",
                                  "user_agent", "referrer", "source" };

    size_t             i, k;
    int64_t            episode, status, bytes, ts;
    const char        *s;
    const mm_json_t   *v;

    if (ev->type != MM_JSON_OBJECT) {
        snprintf(err, err_size, "not an object");
        return NGX_ERROR;
    }

    v = mm_json_get(ev, "request_id");
    if (v == NULL || v->type != MM_JSON_STRING || v->u.str.len == 0
        || v->u.str.len > 64)
    {
        snprintf(err, err_size, "\"request_id\" must be 1..64 characters");
        return NGX_ERROR;
    }

    s = v->u.str.s;
    for (k = 0; k < v->u.str.len; k++) {
        if (!(isalnum((unsigned char) s[k]) || s[k] == '_' || s[k] == '.'
              || s[k] == ':' || s[k] == '-'))
        {
            snprintf(err, err_size, "\"request_id\" may hold only "
                     "[A-Za-z0-9_.:-]");
            return NGX_ERROR;
        }
    }

    if (!mm_json_get_int64(ev, "episode_id", &episode) || episode <= 0) {
        snprintf(err, err_size, "\"episode_id\" must be a positive integer");
        return NGX_ERROR;
    }

    if (!mm_json_get_int64(ev, "status", &status) || status < 100
        || status > 599)
    {
        snprintf(err, err_size, "\"status\" must be an integer 100..599");
        return NGX_ERROR;
    }

    bytes = 0;
    if (mm_json_get(ev, "bytes")
        && (!mm_json_get_int64(ev, "bytes", &bytes) || bytes < 0))
    {
        snprintf(err, err_size, "\"bytes\" must be an integer >= 0");
        return NGX_ERROR;
    }

    ts = (int64_t) now * 1000;
    if (mm_json_get(ev, "ts")
        && (!mm_json_get_int64(ev, "ts", &ts) || ts < 0
            || ts > 32503680000000LL))
    {
        snprintf(err, err_size, "\"ts\" must be milliseconds since the epoch");
        return NGX_ERROR;
    }

    mm_buf_puts(out, "{\"request_id\":");
    mm_json_put_string(out, s, v->u.str.len);
    mm_buf_printf(out, ",\"episode_id\":%lld,\"ts\":%lld,\"status\":%lld,"
                  "\"bytes\":%lld", (long long) episode, (long long) ts,
                  (long long) status, (long long) bytes);

    for (i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        v = mm_json_get(ev, opt[i]);

        if (v == NULL || v->type == MM_JSON_NULL) {
            if (strcmp(opt[i], "source") == 0) {
                mm_buf_puts(out, ",\"source\":\"api\"");
            }
            continue;
        }

        if (v->type != MM_JSON_STRING || v->u.str.len > 2048) {
            snprintf(err, err_size, "\"%s\" must be a string of at most "
                     "2048 bytes", opt[i]);
            return NGX_ERROR;
        }

        mm_buf_printf(out, ",\"%s\":", opt[i]);
        mm_json_put_string(out, v->u.str.s, v->u.str.len);
    }

    mm_buf_puts(out, "}");

    return NGX_OK;
}


static void
ngx_http_media_api_events(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    char               err[256];
    size_t             i, before, *lens;
    mm_buf_t           frames;
    mm_status_t        st;
    mm_json_doc_t     *doc;
    const mm_json_t   *root;

    doc = ngx_http_media_api_json(job, api->body, api->body_len, 0, 0,
                                  &root);
    if (doc == NULL) {
        return;
    }

    lens = NULL;
    mm_buf_init(&frames);

    if (root->type != MM_JSON_ARRAY || root->u.arr.n == 0
        || root->u.arr.n > NGX_HTTP_MEDIA_API_MAX_EVENTS)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                "expected an array of 1 to %d events",
                                NGX_HTTP_MEDIA_API_MAX_EVENTS);
        goto done;
    }

    lens = malloc(root->u.arr.n * sizeof(size_t));
    if (lens == NULL) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "out of memory");
        goto done;
    }

    for (i = 0; i < root->u.arr.n; i++) {
        before = frames.len;

        if (ngx_http_media_api_event(&root->u.arr.items[i], api->now,
                                     &frames, err, sizeof(err))
            != NGX_OK)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_event", "event %zu: %s", i, err);
            goto done;
        }

        lens[i] = frames.len - before;
    }

    if (frames.failed) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "out of memory");
        goto done;
    }

    st = ngx_http_media_events_send_sync(job->mcf, &frames, lens,
                                         root->u.arr.n, 2000, err,
                                         sizeof(err));
    if (st != MM_OK) {
        ngx_http_media_api_fail(job, st == MM_EBADDATA
                                     ? NGX_HTTP_BAD_REQUEST
                                     : NGX_HTTP_SERVICE_UNAVAILABLE,
                                "analytics_unavailable", "%s", err);
        goto done;
    }

    job->status = NGX_HTTP_ACCEPTED;
    mm_buf_printf(&job->out, "{\"accepted\":%zu}\n", root->u.arr.n);

done:

    free(lens);
    mm_buf_free(&frames);
    mm_json_doc_free(&doc);
}


static void
ngx_http_media_api_stats(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    int          i, n;
    char         idbuf[32];
    const char  *params[1];
    PGresult    *res;

    res = ngx_http_media_api_get_episode(job, api->id);
    if (res == NULL) {
        return;
    }

    PQclear(res);

    snprintf(idbuf, sizeof(idbuf), "%lld", (long long) api->id);
    params[0] = idbuf;

    res = ngx_http_media_db_query(job,
              "SELECT count(*),"
              " count(*) FILTER (WHERE status BETWEEN 200 AND 299),"
              " coalesce(sum(bytes), 0),"
              " count(DISTINCT client),"
              " count(*) FILTER (WHERE cache = 'HIT'),"
              " coalesce(to_char(max(ts) AT TIME ZONE 'UTC',"
              "   'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"
              " FROM events WHERE episode_id = $1", 1, params);

    if (res == NULL) {
        return;
    }

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out, "{\"episode_id\":%s,\"requests\":%s,"
                  "\"streams\":%s,\"bytes\":%s,\"unique_clients\":%s,"
                  "\"cache_hits\":%s,\"last_request_at\":",
                  idbuf, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
                  PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
                  PQgetvalue(res, 0, 4));

    if (PQgetlength(res, 0, 5)) {
        mm_buf_printf(&job->out, "\"%s\"", PQgetvalue(res, 0, 5));

    } else {
        mm_buf_puts(&job->out, "null");
    }

    PQclear(res);

    res = ngx_http_media_db_exec(job,
              "SELECT status, count(*) FROM events WHERE episode_id = $1"
              " GROUP BY status ORDER BY status", 1, params);

    if (res == NULL) {
        return;
    }

    mm_buf_puts(&job->out, ",\"by_status\":{");

    n = PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
    for (i = 0; i < n; i++) {
        mm_buf_printf(&job->out, "%s\"%s\":%s", i ? "," : "",
                      PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    }

    mm_buf_puts(&job->out, "}}\n");

    PQclear(res);
}


static void
ngx_http_media_api_run(ngx_http_media_job_t *job)
{
    ngx_http_media_api_t  *api = job->data;

    ngx_uint_t  need;

    api->role = ngx_http_media_db_auth(job, api->token_hash, &api->token_id);

    if (job->db_failed) {
        return;
    }

    if (api->role == NGX_HTTP_MEDIA_ROLE_NONE) {
        job->www_authenticate = 1;
        ngx_http_media_api_fail(job, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                "the token is unknown or revoked");
        return;
    }

    /* who may do what: a bit per role */

#define ADMIN    (1 << NGX_HTTP_MEDIA_ROLE_ADMIN)
#define USER     (1 << NGX_HTTP_MEDIA_ROLE_USER)
#define SERVICE  (1 << NGX_HTTP_MEDIA_ROLE_SERVICE)

    switch (api->route) {

    case NGX_HTTP_MEDIA_API_TOKENS:
    case NGX_HTTP_MEDIA_API_TOKEN:
    case NGX_HTTP_MEDIA_API_PRIVATE:
    case NGX_HTTP_MEDIA_API_STATS:
        need = ADMIN;
        break;

    case NGX_HTTP_MEDIA_API_EPISODES:
        need = (api->method == NGX_HTTP_POST) ? (ADMIN|USER)
                                              : (ADMIN|USER|SERVICE);
        break;

    case NGX_HTTP_MEDIA_API_EVENTS:
        need = ADMIN|SERVICE;
        break;

    case NGX_HTTP_MEDIA_API_ARCHIVE_CREATE:
        need = ADMIN|USER;
        break;

    default:
        need = ADMIN|USER|SERVICE;
        break;
    }

#undef ADMIN
#undef USER
#undef SERVICE

    if (!(need & (1 << api->role))) {
        ngx_http_media_api_fail(job, NGX_HTTP_FORBIDDEN, "forbidden",
                                "this token's role may not do that");
        return;
    }

    switch (api->route) {

    case NGX_HTTP_MEDIA_API_TOKENS:
        if (api->method == NGX_HTTP_POST) {
            ngx_http_media_api_token_create(job);

        } else {
            ngx_http_media_api_token_list(job);
        }
        break;

    case NGX_HTTP_MEDIA_API_TOKEN:
        ngx_http_media_api_token_revoke(job);
        break;

    case NGX_HTTP_MEDIA_API_EPISODES:
        if (api->method == NGX_HTTP_POST) {
            ngx_http_media_api_episode_create(job);

        } else {
            ngx_http_media_api_episode_list(job);
        }
        break;

    case NGX_HTTP_MEDIA_API_EPISODE:
        ngx_http_media_api_episode_get(job);
        break;

    case NGX_HTTP_MEDIA_API_PRIVATE:
        ngx_http_media_api_episode_private(job);
        break;

    case NGX_HTTP_MEDIA_API_SIGN:
        ngx_http_media_api_episode_sign(job);
        break;

    case NGX_HTTP_MEDIA_API_EVENTS:
        ngx_http_media_api_events(job);
        break;

    case NGX_HTTP_MEDIA_API_STATS:
        ngx_http_media_api_stats(job);
        break;

    case NGX_HTTP_MEDIA_API_ARCHIVE_CREATE:
        ngx_http_media_archive_create(job, api->body, api->body_len,
                                      api->token_id);
        break;

    case NGX_HTTP_MEDIA_API_ARCHIVE_STATUS:
        ngx_http_media_archive_status(job, api->hash, api->token_id,
                                      api->role == NGX_HTTP_MEDIA_ROLE_ADMIN,
                                      api->base);
        break;
    }
}
