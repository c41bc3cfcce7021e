
/*
 * ngx_media: POST /upload_input_content (media_upload <dir>).
 *
 * The bearer token is checked first (a pool-thread job), then nginx reads
 * the body into a persistent temp file under client_body_temp_path, the
 * way client_body_in_file_only does: memory stays at one body buffer
 * whatever the size, and client_max_body_size answers 413. A request body
 * filter, active only for these requests, runs lib/multipart on a
 * multipart/form-data body and passes on only the bytes of the field
 * "file", so the temp file holds exactly the upload.
 *
 * The SHA-256 is computed while the body arrives, on a pool thread: each
 * time another NGX_HTTP_MEDIA_HASH_STEP bytes are in the temp file, a task
 * hashes them (from the page cache), so hashing runs beside the event
 * loop, not in it. The hasher owns its memory and a dup of the file
 * descriptor: a request that dies while a task runs leaves that task
 * nothing dangling (the task frees the hasher when it is back).
 *
 * Once the body is complete and hashed, a job renames the file into <dir>,
 * inserts the input_content row (status "uploaded") and rings the
 * packager, which probes it. A client that goes away mid-body leaves
 * nothing: the temp file is deleted with the request pool, and no row was
 * written.
 */

#include "ngx_http_media.h"
#include "multipart.h"

#include <openssl/evp.h>
#include <openssl/rand.h>


#define NGX_HTTP_MEDIA_UPLOAD_FIELD  "file"
#define NGX_HTTP_MEDIA_HASH_STEP     (1024 * 1024)   /* bytes a task */
#define NGX_HTTP_MEDIA_HASH_BUF      (256 * 1024)


typedef struct ngx_http_media_upload_ctx_s  ngx_http_media_upload_ctx_t;


/* SHA-256 of the temp file, computed by pool-thread tasks */
typedef struct {
    ngx_thread_task_t             task;
    ngx_http_media_upload_ctx_t  *ctx;          /* NULL: the request died */
    EVP_MD_CTX                   *sha;
    ngx_fd_t                      fd;           /* dup of the temp file's */
    off_t                         hashed;
    off_t                         from;         /* the running task's range */
    off_t                         to;
    u_char                       *buf;
    unsigned                      running:1;
    unsigned                      failed:1;
} ngx_http_media_upload_hasher_t;


struct ngx_http_media_upload_ctx_s {
    ngx_http_request_t         *request;
    ngx_http_media_upload_hasher_t  *hasher;
    off_t                       size;           /* bytes kept */
    mm_multipart_t             *mp;             /* NULL: a raw body */
    ngx_chain_t                *free;           /* our bufs (multipart) */
    ngx_chain_t                *busy;
    ngx_chain_t                *out;            /* built by on_data */
    ngx_chain_t               **last_out;
    ngx_buf_t                  *last_buf;       /* the last one in out */
    int64_t                     token_id;
    char                        token_hash[MM_TOKEN_HASH_LEN + 1];
    const char                 *error;          /* 400 once the body is in */
    unsigned                    active:1;       /* the body filter runs */
    unsigned                    found:1;        /* the "file" part seen */
    unsigned                    nomem:1;
    unsigned                    complete:1;     /* the body is in */
};


/* the job that files an upload away */
typedef struct {
    ngx_http_media_upload_ctx_t  *ctx;
    char                         *temp;         /* NUL-terminated */
    char                         *dir;
    char                          sha256[2 * 32 + 1];
    off_t                         size;
    int64_t                       token_id;
    int64_t                       id;           /* the new row */
    unsigned                      renamed:1;
} ngx_http_media_upload_job_t;


static ngx_int_t ngx_http_media_upload_handler(ngx_http_request_t *r);
static void ngx_http_media_upload_cleanup(void *data);
static ngx_http_media_upload_ctx_t *ngx_http_media_upload_ctx(
    ngx_http_request_t *r);
static void ngx_http_media_upload_auth_run(ngx_http_media_job_t *job);
static void ngx_http_media_upload_auth_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
static ngx_int_t ngx_http_media_upload_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static int ngx_http_media_upload_on_part(void *data,
    const mm_multipart_part_t *part);
static void ngx_http_media_upload_on_data(void *data, const char *p,
    size_t n);
static void ngx_http_media_upload_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_media_upload_hash(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx);
static void ngx_http_media_upload_hash_thread(void *data, ngx_log_t *log);
static void ngx_http_media_upload_hash_done(ngx_event_t *ev);
static void ngx_http_media_upload_hasher_free(
    ngx_http_media_upload_hasher_t *h);
static void ngx_http_media_upload_store(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx);
static void ngx_http_media_upload_store_run(ngx_http_media_job_t *job);
static void ngx_http_media_upload_store_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
static ngx_int_t ngx_http_media_upload_fail(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


/* --- configuration --- */


char *
ngx_http_media_upload_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_str_t                   *value;
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
                           "\"media_upload\" needs \"media_db\" set before it");
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "needs a directory";
    }

    if (ngx_conf_full_name(cf->cycle, &value[1], 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* strip trailing slashes: the job appends "/<name>" */
    while (value[1].len > 1 && value[1].data[value[1].len - 1] == '/') {
        value[1].len--;
    }

    lcf->upload_dir.data = ngx_pnalloc(cf->pool, value[1].len + 1);
    if (lcf->upload_dir.data == NULL) {
        return NGX_CONF_ERROR;
    }

    *ngx_cpymem(lcf->upload_dir.data, value[1].data, value[1].len) = '\0';
    lcf->upload_dir.len = value[1].len;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_media_upload_handler;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_media_upload_init(ngx_conf_t *cf)
{
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_media_upload_body_filter;

    return NGX_OK;
}


/* --- the request --- */


static ngx_int_t
ngx_http_media_upload_handler(ngx_http_request_t *r)
{
    ngx_str_t                     token;
    ngx_pool_cleanup_t           *cln;
    ngx_http_media_job_t         *job;
    ngx_http_media_upload_ctx_t  *ctx;
    ngx_http_media_main_conf_t   *mcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_media_upload_fail(r, NGX_HTTP_NOT_ALLOWED,
                                          "method_not_allowed", "use POST");
    }

    if (ngx_http_media_bearer(r, &token) != NGX_OK
        || !mm_token_well_formed((char *) token.data, token.len))
    {
        return ngx_http_media_upload_fail(r, NGX_HTTP_UNAUTHORIZED,
                                          "unauthorized",
                                          "send \"Authorization: Bearer "
                                          "<token>\"");
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_media_upload_ctx_t));
    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    if (cln == NULL || job == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_media_upload_ctx_t));
    cln->handler = ngx_http_media_upload_cleanup;

    ctx->request = r;
    mm_token_hash((char *) token.data, token.len, ctx->token_hash);

    job->mcf = mcf;
    job->data = ctx;
    job->run = ngx_http_media_upload_auth_run;
    job->done = ngx_http_media_upload_auth_done;

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        return ngx_http_media_upload_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "busy", "the work queue is full");
    }

    /* held until the body is being read (auth_done) */
    r->main->count++;

    return NGX_DONE;
}


/* answers from the content handler or a callback: finalize with the rc */
static ngx_int_t
ngx_http_media_upload_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    ngx_table_elt_t  *h;

    if (status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer realm=\"media\"");
        r->headers_out.www_authenticate = h;
    }

    if (status == NGX_HTTP_NOT_ALLOWED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        ngx_str_set(&h->value, "POST");
    }

    return ngx_http_media_send_error(r, status, code, message);
}


static void
ngx_http_media_upload_cleanup(void *data)
{
    ngx_http_media_upload_ctx_t  *ctx = data;

    ngx_http_media_upload_hasher_t  *h;

    ctx->active = 0;

    h = ctx->hasher;
    if (h == NULL) {
        return;
    }

    ctx->hasher = NULL;
    h->ctx = NULL;

    /* a running task frees it when it is back */
    if (!h->running) {
        ngx_http_media_upload_hasher_free(h);
    }
}


/* the ctx lives in a pool cleanup (the module ctx slot is the stream's) */
static ngx_http_media_upload_ctx_t *
ngx_http_media_upload_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_media_upload_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


static void
ngx_http_media_upload_auth_run(ngx_http_media_job_t *job)
{
    ngx_http_media_upload_ctx_t  *ctx = job->data;

    if (ngx_http_media_db_auth(job, ctx->token_hash, &ctx->token_id)
        == NGX_HTTP_MEDIA_ROLE_NONE)
    {
        ctx->token_id = 0;
    }
}


static void
ngx_http_media_upload_auth_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job)
{
    size_t                        blen;
    ngx_int_t                     rc;
    mm_status_t                   st;
    ngx_table_elt_t              *ct;
    ngx_http_media_upload_ctx_t  *ctx = job->data;
    char                          boundary[MM_MULTIPART_BOUNDARY_MAX + 1];

    if (job->db_failed) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "unavailable", "the database is "
                                        "unavailable, retry later");
        goto done;
    }

    if (ctx->token_id == 0) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_UNAUTHORIZED,
                                        "unauthorized",
                                        "the token is unknown or revoked");
        goto done;
    }

    ct = r->headers_in.content_type;

    st = ct ? mm_multipart_boundary((char *) ct->value.data, ct->value.len,
                                    boundary, sizeof(boundary), &blen)
            : MM_ENOTFOUND;

    if (st == MM_EBADDATA) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_multipart",
                                        "multipart/form-data needs a "
                                        "boundary of 1 to 70 legal "
                                        "characters");
        goto done;
    }

    if (st == MM_OK) {
        ctx->mp = ngx_palloc(r->pool, sizeof(mm_multipart_t));
        if (ctx->mp == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        mm_multipart_init(ctx->mp, boundary, blen,
                          ngx_http_media_upload_on_part,
                          ngx_http_media_upload_on_data, ctx);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media upload: token %L, %s body", ctx->token_id,
                   ctx->mp ? "multipart" : "raw");

    ctx->active = 1;

    /* a named temp file (persistent) deleted with the pool (clean) */
    r->request_body_in_file_only = 1;
    r->request_body_in_persistent_file = 1;
    r->request_body_in_clean_file = 1;
    r->request_body_file_log_level = 0;

    rc = ngx_http_read_client_request_body(r, ngx_http_media_upload_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ngx_http_finalize_request(r, rc);
    }

    /* drop the reference the handler took */
    ngx_http_finalize_request(r, NGX_DONE);
    return;

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_finalize_request(r, NGX_DONE);
}


/* --- the body filter --- */


static ngx_buf_t *
ngx_http_media_upload_buf(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        ctx->nomem = 1;
        return NULL;
    }

    b = cl->buf;
    ngx_memzero(b, sizeof(ngx_buf_t));
    b->tag = (ngx_buf_tag_t) &ngx_http_media_upload_body_filter;

    *ctx->last_out = cl;
    ctx->last_out = &cl->next;
    cl->next = NULL;
    ctx->last_buf = b;

    return b;
}


static int
ngx_http_media_upload_on_part(void *data, const mm_multipart_part_t *part)
{
    ngx_http_media_upload_ctx_t  *ctx = data;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "media upload: part %ui \"%s\" filename \"%s\"",
                   (ngx_uint_t) part->index, part->name, part->filename);

    if (ctx->found
        || ngx_strcmp(part->name, NGX_HTTP_MEDIA_UPLOAD_FIELD) != 0)
    {
        return 0;
    }

    ctx->found = 1;

    return 1;
}


/* a slice of the file part: hashed, then passed on without a copy */
static void
ngx_http_media_upload_on_data(void *data, const char *p, size_t n)
{
    ngx_http_media_upload_ctx_t  *ctx = data;

    ngx_buf_t  *b;

    if (ctx->nomem) {
        return;
    }

    ctx->size += n;

    b = ctx->last_buf;

    if (b && b->last == (u_char *) p && !b->last_buf) {
        b->last += n;
        b->end = b->last;
        return;
    }

    b = ngx_http_media_upload_buf(ctx->request, ctx);
    if (b == NULL) {
        return;
    }

    /*
     * p points into nginx's body buffer (written out before that is
     * reused) or into the parser (alive as long as the request)
     */
    b->temporary = 1;
    b->start = (u_char *) p;
    b->pos = (u_char *) p;
    b->last = (u_char *) p + n;
    b->end = b->last;
}


static ngx_int_t
ngx_http_media_upload_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                     rc;
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl;
    mm_status_t                   st;
    ngx_http_media_loc_conf_t    *lcf;
    ngx_http_media_upload_ctx_t  *ctx;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    if (lcf->upload_dir.len == 0) {
        return ngx_http_next_request_body_filter(r, in);
    }

    ctx = ngx_http_media_upload_ctx(r);

    if (ctx == NULL || !ctx->active) {
        return ngx_http_next_request_body_filter(r, in);
    }

    if (ctx->mp == NULL) {

        /* raw body: hash and pass on as it is */

        for (cl = in; cl; cl = cl->next) {
            b = cl->buf;

            if (!b->in_file) {
                ctx->size += b->last - b->pos;
            }
        }

        rc = ngx_http_next_request_body_filter(r, in);

        if (rc == NGX_OK && ngx_http_media_upload_hash(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return rc;
    }

    /* multipart: only the "file" part's bytes go on */

    ctx->out = NULL;
    ctx->last_out = &ctx->out;
    ctx->last_buf = NULL;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file && b->pos != b->last && ctx->error == NULL) {
            st = mm_multipart_feed(ctx->mp, (char *) b->pos,
                                   b->last - b->pos);

            if (st != MM_OK) {
                /* read the rest of the body, then answer 400 */
                ctx->error = ctx->mp->err;

                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "media upload: bad multipart body: %s",
                              ctx->error);
            }
        }

        b->pos = b->last;

        if (b->last_buf) {
            if (ctx->error == NULL
                && mm_multipart_finish(ctx->mp) != MM_OK)
            {
                ctx->error = ctx->mp->err;
            }

            b = ngx_http_media_upload_buf(r, ctx);
            if (b == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            b->last_buf = 1;
        }
    }

    if (ctx->nomem) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_next_request_body_filter(r, ctx->out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &ctx->out,
                            (ngx_buf_tag_t) &ngx_http_media_upload_body_filter);

    if (rc == NGX_OK && ngx_http_media_upload_hash(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return rc;
}


/* --- the body is in --- */


static void
ngx_http_media_upload_body(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_temp_file_t              *tf;
    ngx_http_media_upload_ctx_t  *ctx;

    ctx = ngx_http_media_upload_ctx(r);
    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->active = 0;

    if (ctx->error) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_BAD_REQUEST,
                                        "invalid_multipart", ctx->error);
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (ctx->mp && !ctx->found) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_BAD_REQUEST,
                                        "no_file",
                                        "the multipart body has no field "
                                        "\"" NGX_HTTP_MEDIA_UPLOAD_FIELD "\"");
        ngx_http_finalize_request(r, rc);
        return;
    }

    tf = r->request_body ? r->request_body->temp_file : NULL;

    if (tf == NULL || tf->file.offset == 0 || ctx->size == 0) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_BAD_REQUEST, "empty",
                                        "the upload is empty (0 bytes)");
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (tf->file.offset != ctx->size) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "media upload: temp file holds %O bytes, %O were "
                      "passed to it", tf->file.offset, ctx->size);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the rest is hashed, then stored */

    ctx->complete = 1;

    if (ngx_http_media_upload_hash(r, ctx) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (!ctx->hasher->running) {
        ngx_http_media_upload_store(r, ctx);
    }
}


/* --- hashing on the thread pool --- */


static void
ngx_http_media_upload_hasher_free(ngx_http_media_upload_hasher_t *h)
{
    if (h->sha) {
        EVP_MD_CTX_free(h->sha);
    }

    if (h->fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(h->fd);
    }

    if (h->buf) {
        ngx_free(h->buf);
    }

    ngx_free(h);
}


/*
 * Hashes what the temp file holds beyond what is hashed: in a task once
 * NGX_HTTP_MEDIA_HASH_STEP bytes are waiting (or the body is complete),
 * unless one is running (it posts the next when it is back).
 */
static ngx_int_t
ngx_http_media_upload_hash(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    off_t                            written;
    ngx_temp_file_t                 *tf;
    ngx_http_media_upload_hasher_t  *h;
    ngx_http_media_main_conf_t      *mcf;

    tf = r->request_body ? r->request_body->temp_file : NULL;

    if (tf == NULL || tf->file.fd == NGX_INVALID_FILE) {
        return NGX_OK;
    }

    h = ctx->hasher;

    if (h == NULL) {
        h = ngx_calloc(sizeof(ngx_http_media_upload_hasher_t),
                       r->connection->log);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->fd = dup(tf->file.fd);
        h->sha = EVP_MD_CTX_new();
        h->buf = ngx_alloc(NGX_HTTP_MEDIA_HASH_BUF, r->connection->log);

        if (h->fd == NGX_INVALID_FILE || h->sha == NULL || h->buf == NULL
            || EVP_DigestInit_ex(h->sha, EVP_sha256(), NULL) != 1)
        {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, ngx_errno,
                          "media upload: cannot set up hashing");
            ngx_http_media_upload_hasher_free(h);
            return NGX_ERROR;
        }

        h->ctx = ctx;
        h->task.ctx = h;
        h->task.handler = ngx_http_media_upload_hash_thread;
        h->task.event.data = h;
        h->task.event.handler = ngx_http_media_upload_hash_done;
        h->task.event.log = r->connection->log;

        ctx->hasher = h;
    }

    if (h->running || h->failed) {
        return NGX_OK;
    }

    written = tf->file.offset;

    if (written - h->hashed < (ctx->complete ? 1 : NGX_HTTP_MEDIA_HASH_STEP))
    {
        return NGX_OK;
    }

    h->from = h->hashed;
    h->to = written;

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    if (ngx_thread_task_post(mcf->thread_pool, &h->task) != NGX_OK) {
        /* the queue is full: hash here rather than not at all */
        ngx_http_media_upload_hash_thread(h, r->connection->log);
        h->hashed = h->to;
        return h->failed ? NGX_ERROR : NGX_OK;
    }

    h->running = 1;

    return NGX_OK;
}


/* pool thread: no nginx calls; reads [from, to) of the file */
static void
ngx_http_media_upload_hash_thread(void *data, ngx_log_t *log)
{
    ngx_http_media_upload_hasher_t  *h = data;

    off_t    off;
    size_t   want;
    ssize_t  n;

    for (off = h->from; off < h->to; off += n) {
        want = ngx_min((off_t) NGX_HTTP_MEDIA_HASH_BUF, h->to - off);

        n = pread(h->fd, h->buf, want, off);

        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                n = 0;
                continue;
            }

            h->failed = 1;
            return;
        }

        if (EVP_DigestUpdate(h->sha, h->buf, n) != 1) {
            h->failed = 1;
            return;
        }
    }
}


/* event loop: a task is back */
static void
ngx_http_media_upload_hash_done(ngx_event_t *ev)
{
    ngx_http_media_upload_hasher_t  *h = ev->data;

    ngx_connection_t             *c;
    ngx_http_request_t           *r;
    ngx_http_media_upload_ctx_t  *ctx;

    h->running = 0;
    ctx = h->ctx;

    if (ctx == NULL) {
        /* the request is gone */
        ngx_http_media_upload_hasher_free(h);
        return;
    }

    h->hashed = h->to;

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "media upload: %O bytes hashed%s", h->hashed,
                   h->failed ? ", failed" : "");

    if (h->failed) {
        ngx_log_error(NGX_LOG_CRIT, c->log, 0,
                      "media upload: reading the temp file back to hash "
                      "it failed");

        if (ctx->complete) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            ngx_http_run_posted_requests(c);
        }

        /* else the body's end answers */
        return;
    }

    if (ngx_http_media_upload_hash(r, ctx) != NGX_OK) {
        if (ctx->complete) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            ngx_http_run_posted_requests(c);
        }
        return;
    }

    if (ctx->complete && !h->running) {
        ngx_http_media_upload_store(r, ctx);
        ngx_http_run_posted_requests(c);
    }
}


/* the body is in and hashed: a job files it away */
static void
ngx_http_media_upload_store(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    unsigned int                    len;
    ngx_int_t                       rc;
    ngx_temp_file_t                *tf;
    ngx_http_media_job_t           *job;
    ngx_http_media_upload_job_t    *uj;
    ngx_http_media_loc_conf_t      *lcf;
    ngx_http_media_upload_hasher_t *h;
    u_char                          md[EVP_MAX_MD_SIZE];

    tf = r->request_body->temp_file;
    h = ctx->hasher;

    if (h->failed || h->hashed != ctx->size) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "media upload: %O of %O bytes hashed", h->hashed,
                      ctx->size);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    uj = ngx_pcalloc(r->pool, sizeof(ngx_http_media_upload_job_t));
    if (job == NULL || uj == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    uj->temp = ngx_pnalloc(r->pool, tf->file.name.len + 1);
    if (uj->temp == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *ngx_cpymem(uj->temp, tf->file.name.data, tf->file.name.len) = '\0';

    len = 0;
    if (EVP_DigestFinal_ex(h->sha, md, &len) != 1 || len != 32) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *ngx_hex_dump((u_char *) uj->sha256, md, len) = '\0';

    /* done with it */
    ctx->hasher = NULL;
    ngx_http_media_upload_hasher_free(h);

    uj->ctx = ctx;
    uj->dir = (char *) lcf->upload_dir.data;
    uj->size = ctx->size;
    uj->token_id = ctx->token_id;

    job->mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    job->data = uj;
    job->run = ngx_http_media_upload_store_run;
    job->done = ngx_http_media_upload_store_done;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media upload: %O bytes in \"%s\", sha256 %s",
                   uj->size, uj->temp, uj->sha256);

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "busy", "the work queue is full");
        ngx_http_finalize_request(r, rc);
        return;
    }
}


/* pool thread: rename into the upload directory, then insert the row */
static void
ngx_http_media_upload_store_run(ngx_http_media_job_t *job)
{
    ngx_http_media_upload_job_t  *uj = job->data;

    int             err;
    char            path[NGX_MAX_PATH], name[2 * 16 + 1], size[32];
    char            owner[32];
    size_t          i;
    const char     *params[4];
    PGresult       *res;
    unsigned char   rnd[16];

    static const char  hex[] = "0123456789abcdef";

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_http_media_json_error(&job->out, "internal", "no randomness");
        job->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return;
    }

    for (i = 0; i < sizeof(rnd); i++) {
        name[2 * i] = hex[rnd[i] >> 4];
        name[2 * i + 1] = hex[rnd[i] & 0xf];
    }
    name[2 * sizeof(rnd)] = '\0';

    if ((size_t) snprintf(path, sizeof(path), "%s/%s.mp4", uj->dir, name)
        >= sizeof(path))
    {
        ngx_http_media_json_error(&job->out, "internal",
                                  "the upload directory's path is too long");
        job->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return;
    }

    if (rename(uj->temp, path) != 0) {
        err = errno;

        if (err == ENOENT && mkdir(uj->dir, 0750) == 0) {
            err = rename(uj->temp, path) == 0 ? 0 : errno;
        }

        if (err) {
            mm_buf_printf(&job->out, "{\"error\":\"internal\",\"message\":"
                          "\"cannot move the upload into place: %s\"}\n",
                          strerror(err));
            job->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
            return;
        }
    }

    uj->renamed = 1;

    snprintf(owner, sizeof(owner), "%lld", (long long) uj->token_id);
    snprintf(size, sizeof(size), "%lld", (long long) uj->size);

    params[0] = owner;
    params[1] = path;
    params[2] = size;
    params[3] = uj->sha256;

    res = ngx_http_media_db_exec(job,
              "INSERT INTO input_content (owner, path, size, sha256)"
              " VALUES ($1, $2, $3, $4) RETURNING id", 4, params);

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        if (res) {
            PQclear(res);
        }

        /* no row: no file either */
        (void) unlink(path);
        job->db_failed = 1;
        return;
    }

    uj->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);

    /* the packager probes new uploads */
    ngx_http_media_packager_ring(job->mcf, "probe");

    job->status = NGX_HTTP_OK;
    mm_buf_printf(&job->out, "{\"input_content_id\":%lld,\"size\":%lld,"
                  "\"sha256\":\"%s\",\"status\":\"uploaded\"}\n",
                  (long long) uj->id, (long long) uj->size, uj->sha256);
}


static void
ngx_http_media_upload_store_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job)
{
    ngx_http_media_upload_job_t  *uj = job->data;

    ngx_int_t                 rc;
    ngx_temp_file_t          *tf;
    ngx_pool_cleanup_t       *cln;
    ngx_pool_cleanup_file_t  *cf;

    if (uj->renamed) {

        /*
         * the temp file's name is gone (renamed): its pool cleanup must
         * only close the descriptor, not unlink a name that a later
         * temp file might take
         */

        tf = r->request_body->temp_file;

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler != ngx_pool_delete_file) {
                continue;
            }

            cf = cln->data;
            if (cf->fd == tf->file.fd) {
                cln->handler = ngx_pool_cleanup_file;
            }
        }
    }

    if (job->db_failed) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "unavailable", "the database is "
                                        "unavailable, retry later");
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (job->out.failed || job->status == 0) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (job->status == NGX_HTTP_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "media upload: input_content %L, %O bytes", uj->id,
                      uj->size);
    }

    rc = ngx_http_media_send_json(r, job->status, (u_char *) job->out.data,
                                  job->out.len);

    ngx_http_finalize_request(r, rc);
}
