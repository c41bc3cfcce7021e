
/*
 * ngx_media: background ZIP archives of public URLs (docs/archives.md).
 *
 *   POST /api/archive/create        validate, queue (archives +
 *                                   archive_files rows), ring the archiver
 *   GET  /api/archive/status/{hash} the rows as JSON
 *   GET  /archive/get/{hash}.zip    media_archive_get: an access-phase
 *                                   check (token, owner, completed, not
 *                                   expired) and Content-Disposition; nginx's
 *                                   static module serves the file (sendfile,
 *                                   Range, ETag)
 *
 * The two API calls run on a pool thread (dispatched by
 * ngx_http_media_api.c); the download check is a job of its own. Queuing
 * an archive rings the archiver's doorbell (ngx_http_media_bell.c).
 */

#include "ngx_http_media.h"
#include "archive.h"
#include "url.h"



#define NGX_HTTP_MEDIA_ARCHIVE_URLS_MAX      1000
#define NGX_HTTP_MEDIA_ARCHIVE_URL_BYTES     (1024 * 1024)  /* all URLs */
#define NGX_HTTP_MEDIA_ARCHIVE_NAME_IN_MAX   1024


enum {
    NGX_HTTP_MEDIA_ARCHIVE_START = 0,
    NGX_HTTP_MEDIA_ARCHIVE_WAIT,
    NGX_HTTP_MEDIA_ARCHIVE_DECIDED
};


/* per download request, found through a pool cleanup (see _ctx()) */
typedef struct {
    ngx_uint_t                  state;
    ngx_uint_t                  status;         /* 0: serve the file */
    const char                 *code;
    const char                 *message;
    ngx_str_t                   disposition;
    unsigned                    header_added:1;
} ngx_http_media_archive_ctx_t;


/* job input/output of a download check */
typedef struct {
    char                        hash[MM_ARCHIVE_HASH_LEN + 1];
    char                        token_hash[MM_TOKEN_HASH_LEN + 1];
    ngx_http_media_role_e       role;
    unsigned                    found:1;
    unsigned                    completed:1;
    unsigned                    expired:1;
    char                        status[16];
    char                        name[MM_NAME_SIZE];
} ngx_http_media_archive_lookup_t;


static void ngx_http_media_archive_cleanup(void *data);
static void ngx_http_media_archive_lookup_run(ngx_http_media_job_t *job);
static void ngx_http_media_archive_lookup_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);




/* --- configuration --- */


char *
ngx_http_media_archive_get(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_str_t                   *value;
    ngx_http_media_main_conf_t  *mcf;

    if (lcf->archive_hash != NULL) {
        return "is duplicate";
    }

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_media_module);

    if (mcf->db_conninfo.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"media_archive_get\" needs \"media_db\" set "
                           "before it");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    return ngx_http_media_compile_value(cf, &value[1], &lcf->archive_hash);
}


/* --- POST /api/archive/create (pool thread) --- */


static const char  ngx_http_media_archive_insert_sql[] =
    "WITH a AS (INSERT INTO archives (hash, token_id, name, on_error,"
    "                                 webhook_url, retention, files_total)"
    "           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id)"
    " INSERT INTO archive_files (archive_id, idx, url)"
    " SELECT a.id, u.ord - 1, u.url"
    "   FROM a, json_array_elements_text($8::json) WITH ORDINALITY"
    "        AS u(url, ord)";


void
ngx_http_media_archive_create(ngx_http_media_job_t *job, const char *body,
    size_t body_len, int64_t token_id)
{
    char               err[256], name[MM_NAME_SIZE];
    char               hash[MM_ARCHIVE_HASH_LEN + 1];
    char               owner[32], retention[32], count[32];
    size_t             i, total, n;
    mm_buf_t           urls;
    mm_url_t           u;
    PGresult          *res;
    const char        *params[8], *on_error, *webhook, *s;
    mm_json_doc_t     *doc;
    const mm_json_t   *root, *list, *v;

    mm_buf_init(&urls);

    doc = ngx_http_media_api_json(job, body, body_len, 0, 1, &root);
    if (doc == NULL) {
        return;
    }

    /* urls: 1..1000 absolute http(s) URLs without credentials */

    list = mm_json_get(root, "urls");

    if (list == NULL || list->type != MM_JSON_ARRAY || list->u.arr.n == 0
        || list->u.arr.n > NGX_HTTP_MEDIA_ARCHIVE_URLS_MAX)
    {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "\"urls\" must be an array of 1 to %d URLs",
                                NGX_HTTP_MEDIA_ARCHIVE_URLS_MAX);
        goto done;
    }

    total = 0;
    mm_buf_puts(&urls, "[");

    for (i = 0; i < list->u.arr.n; i++) {
        v = &list->u.arr.items[i];

        if (v->type != MM_JSON_STRING) {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "urls[%zu]: must be a string", i);
            goto done;
        }

        if (memchr(v->u.str.s, '\0', v->u.str.len) != NULL
            || mm_url_parse(v->u.str.s, v->u.str.len, &u, err, sizeof(err))
               != MM_OK)
        {
            if (memchr(v->u.str.s, '\0', v->u.str.len) != NULL) {
                snprintf(err, sizeof(err), "URL contains NUL");
            }

            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field", "urls[%zu]: %s", i,
                                    err);
            goto done;
        }

        total += v->u.str.len;

        if (total > NGX_HTTP_MEDIA_ARCHIVE_URL_BYTES) {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "urls[%zu]: the URLs together pass %d "
                                    "bytes", i,
                                    NGX_HTTP_MEDIA_ARCHIVE_URL_BYTES);
            goto done;
        }

        if (i) {
            mm_buf_puts(&urls, ",");
        }

        mm_json_put_string(&urls, v->u.str.s, v->u.str.len);
    }

    mm_buf_puts(&urls, "]");

    /* name: the download's file name */

    v = mm_json_get(root, "name");
    s = NULL;
    n = 0;

    if (v != NULL && v->type != MM_JSON_NULL) {
        if (v->type != MM_JSON_STRING || v->u.str.len == 0
            || v->u.str.len > NGX_HTTP_MEDIA_ARCHIVE_NAME_IN_MAX)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "\"name\" must be a string of 1 to %d "
                                    "bytes",
                                    NGX_HTTP_MEDIA_ARCHIVE_NAME_IN_MAX);
            goto done;
        }

        s = v->u.str.s;
        n = v->u.str.len;
    }

    mm_archive_name(s, n, name);

    /* webhook_url: checked like the inputs; its address when delivered */

    v = mm_json_get(root, "webhook_url");
    webhook = NULL;

    if (v != NULL && v->type != MM_JSON_NULL) {
        if (v->type != MM_JSON_STRING
            || memchr(v->u.str.s, '\0', v->u.str.len) != NULL)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "\"webhook_url\" must be a string");
            goto done;
        }

        if (mm_url_parse(v->u.str.s, v->u.str.len, &u, err, sizeof(err))
            != MM_OK)
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field", "webhook_url: %s", err);
            goto done;
        }

        webhook = v->u.str.s;
    }

    /* on_error: "skip" (the default) or "fail" */

    v = mm_json_get(root, "on_error");
    on_error = "skip";

    if (v != NULL && v->type != MM_JSON_NULL) {
        if (v->type != MM_JSON_STRING || v->u.str.len != 4
            || (memcmp(v->u.str.s, "skip", 4) != 0
                && memcmp(v->u.str.s, "fail", 4) != 0))
        {
            ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST,
                                    "invalid_field",
                                    "\"on_error\" must be \"skip\" or "
                                    "\"fail\"");
            goto done;
        }

        on_error = v->u.str.s;
    }

    if (urls.failed) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "out of memory");
        goto done;
    }

    if (mm_archive_hash_new(hash) != MM_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                "internal", "no randomness for a hash");
        goto done;
    }

    snprintf(owner, sizeof(owner), "%lld", (long long) token_id);
    snprintf(retention, sizeof(retention), "%lld",
             (long long) job->mcf->archive_retention);
    snprintf(count, sizeof(count), "%zu", list->u.arr.n);

    params[0] = hash;
    params[1] = owner;
    params[2] = name;
    params[3] = on_error;
    params[4] = webhook;
    params[5] = retention;
    params[6] = count;
    params[7] = urls.data;

    res = ngx_http_media_db_exec(job, ngx_http_media_archive_insert_sql, 8,
                                 params);
    if (res == NULL) {
        goto done;
    }

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_http_media_api_fail(job, NGX_HTTP_BAD_REQUEST, "invalid_field",
                                "the archive was refused: %s",
                                PQresultErrorField(res,
                                                   PG_DIAG_MESSAGE_PRIMARY));
        PQclear(res);
        goto done;
    }

    PQclear(res);

    ngx_http_media_bell_ring(&job->mcf->archive_bell, "archive");

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out, "{\"archive_hash\":\"%s\",\"status_url\":"
                  "\"/api/archive/status/%s\"}\n", hash, hash);

done:

    mm_buf_free(&urls);
    mm_json_doc_free(&doc);
}


/* --- GET /api/archive/status/{hash} (pool thread) --- */


#define NGX_HTTP_MEDIA_TS(col)                                              \
    "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


static void
ngx_http_media_archive_put(mm_buf_t *b, const char *key, PGresult *res,
    int row, int col)
{
    mm_buf_printf(b, ",\"%s\":", key);

    if (PQgetisnull(res, row, col)) {
        mm_buf_puts(b, "null");
        return;
    }

    mm_json_put_string(b, PQgetvalue(res, row, col),
                       PQgetlength(res, row, col));
}


static void
ngx_http_media_archive_put_num(mm_buf_t *b, const char *key, PGresult *res,
    int row, int col)
{
    mm_buf_printf(b, ",\"%s\":%s", key, PQgetisnull(res, row, col)
                                        ? "null"
                                        : PQgetvalue(res, row, col));
}


void
ngx_http_media_archive_status(ngx_http_media_job_t *job, const char *hash,
    int64_t token_id, ngx_uint_t admin, const char *base)
{
    int          i, rows, completed, expired;
    char         subject[64];
    int64_t      files_done, files_failed, bytes_done, bytes_total, v;
    mm_buf_t     files;
    PGresult    *res, *fres, *wres;
    const char  *params[1], *st;

    params[0] = hash;

    res = ngx_http_media_db_query(job,
              "SELECT id, status, name, token_id, files_total, error,"
              " " NGX_HTTP_MEDIA_TS("created_at") ","
              " " NGX_HTTP_MEDIA_TS("completed_at") ","
              " " NGX_HTTP_MEDIA_TS("expires_at") ","
              " coalesce(expires_at <= now(), false), zip_size"
              " FROM archives WHERE hash = $1", 1, params);

    if (res == NULL) {
        return;
    }

    /* somebody else's archive does not exist for this token */
    if (PQntuples(res) != 1
        || (!admin
            && (PQgetisnull(res, 0, 3)
                || strtoll(PQgetvalue(res, 0, 3), NULL, 10) != token_id)))
    {
        PQclear(res);
        ngx_http_media_api_fail(job, NGX_HTTP_NOT_FOUND, "not_found",
                                "no such archive");
        return;
    }

    params[0] = PQgetvalue(res, 0, 0);

    fres = ngx_http_media_db_exec(job,
               "SELECT url, name, status, bytes_done, bytes_total, error,"
               " attempts FROM archive_files WHERE archive_id = $1"
               " ORDER BY idx", 1, params);

    if (fres == NULL) {
        PQclear(res);
        return;
    }

    snprintf(subject, sizeof(subject), "archive:%s", hash);
    params[0] = subject;

    wres = ngx_http_media_db_exec(job,
               "SELECT event, target_url IS NULL, target_url, attempts,"
               " last_status, last_error,"
               " " NGX_HTTP_MEDIA_TS("delivered_at") ","
               " " NGX_HTTP_MEDIA_TS("gave_up_at") ","
               " " NGX_HTTP_MEDIA_TS("next_attempt_at")
               " FROM webhook_outbox WHERE subject = $1 ORDER BY id",
               1, params);

    if (wres == NULL) {
        PQclear(res);
        PQclear(fres);
        return;
    }

    if (PQresultStatus(fres) != PGRES_TUPLES_OK
        || PQresultStatus(wres) != PGRES_TUPLES_OK)
    {
        PQclear(res);
        PQclear(fres);
        PQclear(wres);
        job->db_failed = 1;
        return;
    }

    /* the files, and the progress summed from them */

    mm_buf_init(&files);
    files_done = 0;
    files_failed = 0;
    bytes_done = 0;
    bytes_total = 0;

    rows = PQntuples(fres);

    for (i = 0; i < rows; i++) {
        st = PQgetvalue(fres, i, 2);
        v = strtoll(PQgetvalue(fres, i, 3), NULL, 10);

        if (strcmp(st, "failed") == 0) {
            files_done++;
            files_failed++;

        } else {
            if (strcmp(st, "done") == 0) {
                files_done++;
            }

            bytes_done += v;
            bytes_total += PQgetisnull(fres, i, 4)
                           ? v : strtoll(PQgetvalue(fres, i, 4), NULL, 10);
        }

        mm_buf_puts(&files, i ? ",{\"url\":" : "{\"url\":");
        mm_json_put_string(&files, PQgetvalue(fres, i, 0),
                           PQgetlength(fres, i, 0));
        ngx_http_media_archive_put(&files, "name", fres, i, 1);
        mm_buf_printf(&files, ",\"status\":\"%s\",\"bytes\":%lld", st,
                      (long long) v);
        ngx_http_media_archive_put_num(&files, "bytes_total", fres, i, 4);
        mm_buf_printf(&files, ",\"attempts\":%s", PQgetvalue(fres, i, 6));
        ngx_http_media_archive_put(&files, "error", fres, i, 5);
        mm_buf_puts(&files, "}");
    }

    completed = strcmp(PQgetvalue(res, 0, 1), "completed") == 0;
    expired = PQgetvalue(res, 0, 9)[0] == 't';

    job->status = NGX_HTTP_OK;

    mm_buf_printf(&job->out, "{\"archive_hash\":\"%s\",\"status\":\"%s\"",
                  hash, PQgetvalue(res, 0, 1));
    ngx_http_media_archive_put(&job->out, "name", res, 0, 2);
    mm_buf_printf(&job->out, ",\"progress\":{\"files_done\":%lld,"
                  "\"files_total\":%s,\"files_failed\":%lld,"
                  "\"bytes_done\":%lld,\"bytes_total\":%lld}",
                  (long long) files_done, PQgetvalue(res, 0, 4),
                  (long long) files_failed, (long long) bytes_done,
                  (long long) bytes_total);

    if (completed && !expired) {
        mm_buf_printf(&job->out, ",\"url\":\"%s/archive/get/%s.zip\"", base,
                      hash);

    } else {
        mm_buf_puts(&job->out, ",\"url\":null");
    }

    ngx_http_media_archive_put_num(&job->out, "size", res, 0, 10);
    mm_buf_printf(&job->out, ",\"expired\":%s", expired ? "true" : "false");
    ngx_http_media_archive_put(&job->out, "error", res, 0, 5);
    ngx_http_media_archive_put(&job->out, "created_at", res, 0, 6);
    ngx_http_media_archive_put(&job->out, "completed_at", res, 0, 7);
    ngx_http_media_archive_put(&job->out, "expires_at", res, 0, 8);

    mm_buf_puts(&job->out, ",\"files\":[");
    mm_buf_append(&job->out, files.data, files.len);
    mm_buf_puts(&job->out, "],\"webhooks\":[");

    rows = PQntuples(wres);

    for (i = 0; i < rows; i++) {
        mm_buf_puts(&job->out, i ? ",{\"event\":" : "{\"event\":");
        mm_json_put_string(&job->out, PQgetvalue(wres, i, 0),
                           PQgetlength(wres, i, 0));

        /* the operator's URL is not the requester's business */
        if (PQgetvalue(wres, i, 1)[0] == 't') {
            mm_buf_puts(&job->out, ",\"target\":\"operator\"");

        } else {
            ngx_http_media_archive_put(&job->out, "target", wres, i, 2);
        }

        mm_buf_printf(&job->out, ",\"state\":\"%s\",\"attempts\":%s",
                      !PQgetisnull(wres, i, 6) ? "delivered"
                      : !PQgetisnull(wres, i, 7) ? "failed" : "pending",
                      PQgetvalue(wres, i, 3));
        ngx_http_media_archive_put_num(&job->out, "last_status", wres, i, 4);
        ngx_http_media_archive_put(&job->out, "last_error", wres, i, 5);
        ngx_http_media_archive_put(&job->out, "delivered_at", wres, i, 6);
        ngx_http_media_archive_put(&job->out, "next_attempt_at", wres, i,
                                   8);
        mm_buf_puts(&job->out, "}");
    }

    mm_buf_puts(&job->out, "]}\n");

    if (files.failed) {
        job->out.failed = 1;
    }

    mm_buf_free(&files);
    PQclear(res);
    PQclear(fres);
    PQclear(wres);
}


/* --- GET /archive/get/{hash}.zip: the access phase --- */


static void
ngx_http_media_archive_cleanup(void *data)
{
    /* the ctx lives in r->pool: the handler is only a tag */
}


/*
 * The module ctx slot belongs to the stream route (the log phase reads it
 * as a stream ctx), so the download check keeps its own ctx reachable
 * through a tagged pool cleanup.
 */
static ngx_http_media_archive_ctx_t *
ngx_http_media_archive_ctx(ngx_http_request_t *r)
{
    return ngx_http_media_cleanup_data(r, ngx_http_media_archive_cleanup);
}


static ngx_int_t
ngx_http_media_archive_deny(ngx_http_request_t *r,
    ngx_http_media_archive_ctx_t *ctx)
{
    if (ctx->status == NGX_HTTP_NOT_ALLOWED
        && ngx_http_media_add_header(r, "Allow", "GET, HEAD") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_media_finalize_error(r, ctx->status, ctx->code, ctx->message);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_media_archive_decided(ngx_http_request_t *r,
    ngx_http_media_archive_ctx_t *ctx)
{
    if (ctx->status != 0) {
        return ngx_http_media_archive_deny(r, ctx);
    }

    if (!ctx->header_added) {
        if (ngx_http_media_add_header(r, "Content-Disposition",
                                      (char *) ctx->disposition.data)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->header_added = 1;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_media_archive_refuse(ngx_http_request_t *r,
    ngx_http_media_archive_ctx_t *ctx, ngx_uint_t status, const char *code,
    const char *message)
{
    ctx->state = NGX_HTTP_MEDIA_ARCHIVE_DECIDED;
    ctx->status = status;
    ctx->code = code;
    ctx->message = message;

    return ngx_http_media_archive_deny(r, ctx);
}


ngx_int_t
ngx_http_media_archive_access(ngx_http_request_t *r)
{
    ngx_str_t                         hash;
    ngx_pool_cleanup_t               *cln;
    ngx_http_media_job_t             *job;
    ngx_http_media_loc_conf_t        *lcf;
    ngx_http_media_archive_ctx_t     *ctx;
    ngx_http_media_archive_lookup_t  *lk;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (lcf->archive_hash == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_media_archive_ctx(r);

    if (ctx != NULL) {
        if (ctx->state == NGX_HTTP_MEDIA_ARCHIVE_WAIT) {
            return NGX_AGAIN;
        }

        return ngx_http_media_archive_decided(r, ctx);
    }

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_media_archive_ctx_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_media_archive_ctx_t));
    cln->handler = ngx_http_media_archive_cleanup;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_media_archive_refuse(r, ctx, NGX_HTTP_NOT_ALLOWED,
                   "method_not_allowed", "use GET or HEAD");
    }

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    lk = ngx_pcalloc(r->pool, sizeof(ngx_http_media_archive_lookup_t));
    if (job == NULL || lk == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_media_token(r, lk->token_hash) != NGX_OK) {
        return ngx_http_media_archive_refuse(r, ctx, NGX_HTTP_UNAUTHORIZED,
                   "unauthorized", "send \"Authorization: Bearer <token>\"");
    }

    if (ngx_http_complex_value(r, lcf->archive_hash, &hash) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!mm_archive_hash_valid((char *) hash.data, hash.len)) {
        return ngx_http_media_archive_refuse(r, ctx, NGX_HTTP_NOT_FOUND,
                   "not_found", "no such archive");
    }

    ngx_memcpy(lk->hash, hash.data, MM_ARCHIVE_HASH_LEN);

    job->mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    job->data = lk;
    job->run = ngx_http_media_archive_lookup_run;
    job->done = ngx_http_media_archive_lookup_done;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        return ngx_http_media_archive_refuse(r, ctx,
                   NGX_HTTP_SERVICE_UNAVAILABLE, "busy",
                   "the work queue is full");
    }

    ctx->state = NGX_HTTP_MEDIA_ARCHIVE_WAIT;

    return NGX_AGAIN;
}


static void
ngx_http_media_archive_lookup_run(ngx_http_media_job_t *job)
{
    ngx_http_media_archive_lookup_t  *lk = job->data;

    int64_t      token_id;
    PGresult    *res;
    const char  *params[1];

    token_id = 0;
    lk->role = ngx_http_media_db_auth(job, lk->token_hash, &token_id);

    if (job->db_failed || lk->role == NGX_HTTP_MEDIA_ROLE_NONE) {
        return;
    }

    params[0] = lk->hash;

    res = ngx_http_media_db_query(job,
              "SELECT status, name, token_id,"
              " coalesce(expires_at <= now(), false)"
              " FROM archives WHERE hash = $1", 1, params);

    if (res == NULL) {
        return;
    }

    if (PQntuples(res) == 1
        && (lk->role == NGX_HTTP_MEDIA_ROLE_ADMIN
            || (!PQgetisnull(res, 0, 2)
                && strtoll(PQgetvalue(res, 0, 2), NULL, 10) == token_id)))
    {
        lk->found = 1;
        snprintf(lk->status, sizeof(lk->status), "%s",
                 PQgetvalue(res, 0, 0));
        snprintf(lk->name, sizeof(lk->name), "%s", PQgetvalue(res, 0, 1));
        lk->completed = strcmp(lk->status, "completed") == 0;
        lk->expired = PQgetvalue(res, 0, 3)[0] == 't';
    }

    PQclear(res);
}


static void
ngx_http_media_archive_lookup_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job)
{
    ngx_http_media_archive_lookup_t  *lk = job->data;

    u_char                        *p;
    size_t                         len;
    ngx_http_media_archive_ctx_t  *ctx;

    ctx = ngx_http_media_archive_ctx(r);
    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->state = NGX_HTTP_MEDIA_ARCHIVE_DECIDED;

    if (job->db_failed) {
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ctx->code = "unavailable";
        ctx->message = "the database is unavailable, retry later";

    } else if (lk->role == NGX_HTTP_MEDIA_ROLE_NONE) {
        ctx->status = NGX_HTTP_UNAUTHORIZED;
        ctx->code = "unauthorized";
        ctx->message = "the token is unknown or revoked";

    } else if (!lk->found) {
        ctx->status = NGX_HTTP_NOT_FOUND;
        ctx->code = "not_found";
        ctx->message = "no such archive";

    } else if (!lk->completed) {
        ctx->status = NGX_HTTP_NOT_FOUND;
        ctx->code = "not_ready";
        ctx->message = strcmp(lk->status, "failed") == 0
                       ? "the archive failed: see its status"
                       : "the archive is not ready yet: see its status";

    } else if (lk->expired) {
        ctx->status = 410;           /* Gone: nginx has no name for it */
        ctx->code = "expired";
        ctx->message = "the archive has expired";

    } else {
        p = ngx_pnalloc(r->pool, MM_ARCHIVE_DISPOSITION_SIZE);
        if (p == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        len = mm_archive_disposition(lk->name, strlen(lk->name), (char *) p);
        ctx->disposition.data = p;
        ctx->disposition.len = len;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "media archive %s: serving \"%s\"", lk->hash,
                       lk->name);
    }

    r->write_event_handler(r);
}
