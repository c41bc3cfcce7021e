
/*
 * ngx_media: POST /upload_input_content (media_upload <dir>).
 *
 * The bearer token is checked first (a pool-thread job), then the body is
 * read by nginx and taken by a request body filter, active only for these
 * requests: a raw body as it is, a multipart/form-data body through
 * lib/multipart, which passes on only the bytes of the field "file".
 * Nothing goes to nginx's temp files: the module writes the upload itself,
 * into an unnamed file (O_TMPFILE) in <dir>, so a client, a worker or the
 * machine that dies mid-upload leaves no file behind, and nothing needs
 * sweeping.
 *
 * Hashing and writing run on the thread pool, from the memory nginx read
 * the body into: the module gives nginx its own body buffers in turn
 * (rb->buf, up to four of client_body_buffer_size), and queues what they
 * hold in batches; two tasks work through the batches, each at its own
 * pace, one hashing (SHA-256), one writing, while nginx reads into a free
 * buffer. A task goes on with the next batch without a trip through the
 * event loop, and is back when there is none; a batch is done, and its
 * buffers free, once both tasks passed it. The file is opened O_DIRECT:
 * the disk takes the bytes straight from those buffers (no copy into the
 * page cache, no dirty pages to write back later), and a buffer is placed
 * so that its bytes' addresses match their file offsets modulo the block
 * size; bytes that do not line up (nginx's first buffer, chunk framing,
 * a multipart delimiter's false start) go through a bounce buffer. While
 * nginx would have to reuse a buffer a task still needs, the filter holds
 * one of nginx's body bufs busy (filter_need_buffering): nginx stops
 * reading, and the module resumes it once a buffer is free (it looks
 * every millisecond, or when a task is back). The writer
 * owns that memory, the descriptor and the hash state: a request that
 * dies while a task runs leaves the task nothing dangling (the writer is
 * freed once its tasks are back).
 *
 * Once the body is complete, written and hashed, a job fsyncs the file,
 * links it into <dir> under a random name, fsyncs <dir>, inserts the
 * input_content row (status "uploaded") and rings the packager, which
 * probes it. The answer (200) comes after all of that: an upload that was
 * answered is on disk.
 *
 * A write that fails (the disk is full, an I/O error) stops the writing:
 * the rest of the body is read and dropped, the unnamed file goes with its
 * descriptor, and the answer is 507 (ENOSPC, EDQUOT: at open, write,
 * fsync or link time) or 500 (any other error), a JSON error either way.
 * A crash between the link and the row leaves a named file no row refers
 * to: the packager sweeps those (orphan_sweep_s, docs/packaging.md).
 */

#include "ngx_http_media.h"
#include "multipart.h"

#include <openssl/evp.h>
#include <openssl/rand.h>


#define NGX_HTTP_MEDIA_UPLOAD_FIELD   "file"
#define NGX_HTTP_MEDIA_UPLOAD_BLOCK   4096          /* O_DIRECT alignment */
#define NGX_HTTP_MEDIA_UPLOAD_BOUNCE  (256 * 1024)
#define NGX_HTTP_MEDIA_UPLOAD_NBUF    4             /* body buffers, at most */

/* errors that mean "the disk is full": 507 */
#define ngx_http_media_upload_no_space(err)                                  \
    ((err) == ENOSPC || (err) == EDQUOT)

/* a full disk is the operator's to fix, not a fault of ours */
#define ngx_http_media_upload_log_level(err)                                 \
    (ngx_http_media_upload_no_space(err) ? NGX_LOG_ERR : NGX_LOG_CRIT)


typedef struct ngx_http_media_upload_ctx_s   ngx_http_media_upload_ctx_t;
typedef struct ngx_http_media_upload_file_s  ngx_http_media_upload_file_t;


/* a run of the upload: in a body buffer, or copied into the batch */
typedef struct {
    u_char                       *data;         /* NULL: staged */
    size_t                        staged;       /* offset in the stage */
    size_t                        len;
} ngx_http_media_upload_slice_t;


/* what the tasks hash and write, in order */
typedef struct {
    ngx_http_media_upload_slice_t  *slices;
    ngx_uint_t                      nslices;
    ngx_uint_t                      nalloc;
    u_char                         *stage;      /* bytes not in a buffer */
    size_t                          staged;
    size_t                          stage_size;
    size_t                          len;
    ngx_uint_t                      bufs;       /* body buffers used: bits */
    unsigned                        last:1;     /* the upload's end */
} ngx_http_media_upload_batch_t;


/* one of the two tasks: the batches it did; under the file's mutex */
typedef struct {
    ngx_thread_task_t               task;
    ngx_http_media_upload_file_t   *file;
    ngx_uint_t                      done;
    ngx_uint_t                      failed;
    ngx_err_t                       err;
    unsigned                        running:1;  /* posted (event loop's) */
} ngx_http_media_upload_worker_t;


/*
 * The upload's file, its hash, body buffers and batches; outlives a dying
 * request. Batches are numbered: the event loop fills batch[closed % N]
 * and closes it, the tasks pass them in order, and the event loop retires
 * a batch both passed. closed and the workers' done and failed are shared:
 * under the mutex.
 */
struct ngx_http_media_upload_file_s {
    ngx_http_media_upload_worker_t  hash;
    ngx_http_media_upload_worker_t  write;
    ngx_thread_mutex_t              mutex;
    ngx_http_media_upload_ctx_t    *ctx;        /* NULL: the request died */
    ngx_fd_t                        fd;         /* O_TMPFILE in the dir */
    EVP_MD_CTX                     *sha;
    u_char                         *buf[NGX_HTTP_MEDIA_UPLOAD_NBUF];
    size_t                          buf_size;
    ngx_http_media_upload_batch_t   batch[NGX_HTTP_MEDIA_UPLOAD_NBUF];
    ngx_uint_t                      closed;     /* batches closed */
    ngx_uint_t                      retired;    /* and retired */
    off_t                           written;    /* bytes retired */

    /* the write task's: whole blocks are written, the rest bounces */
    u_char                         *bounce;
    size_t                          bounced;
    off_t                           wpos;       /* bytes in whole blocks */

    unsigned                        mutex_set:1;
    unsigned                        direct:1;   /* O_DIRECT */
    unsigned                        failed:1;
    unsigned                        last:1;     /* the last batch closed */
    unsigned                        finished:1; /* and retired */
};


struct ngx_http_media_upload_ctx_s {
    ngx_http_request_t             *request;
    ngx_http_media_upload_file_t   *file;
    off_t                           size;       /* bytes kept */
    mm_multipart_t                 *mp;         /* NULL: a raw body */
    ngx_buf_t                      *held;       /* kept busy (see above) */
    ngx_uint_t                      cur;        /* the buffer nginx fills */
    ngx_event_t                     poll;       /* for a free buffer */
    ngx_http_event_handler_pt       reader;     /* nginx's, reading it */
    int64_t                         token_id;
    char                            token_hash[MM_TOKEN_HASH_LEN + 1];
    const char                     *error;      /* 400 once the body is in */
    unsigned                        active:1;   /* the body filter runs */
    unsigned                        found:1;    /* the "file" part seen */
    unsigned                        nomem:1;
    unsigned                        stalled:1;  /* nginx waits for a task */
    unsigned                        complete:1; /* the body is in */
};


/* the job that files an upload away */
typedef struct {
    ngx_fd_t                        fd;
    char                           *dir;
    char                            sha256[2 * 32 + 1];
    off_t                           size;
    int64_t                         token_id;
    int64_t                         id;         /* the new row */
    const char                     *failed;     /* what, if it failed */
    ngx_err_t                       err;        /* and why (0: no errno) */
} ngx_http_media_upload_job_t;


static ngx_int_t ngx_http_media_upload_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_media_upload_fail(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message);
static void ngx_http_media_upload_cleanup(void *data);
static ngx_http_media_upload_ctx_t *ngx_http_media_upload_ctx(
    ngx_http_request_t *r);
static void ngx_http_media_upload_auth_run(ngx_http_media_job_t *job);
static void ngx_http_media_upload_auth_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);
static ngx_int_t ngx_http_media_upload_open(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx, ngx_err_t *err);
static ngx_uint_t ngx_http_media_upload_io_error(ngx_err_t err,
    const char *what, char *message, size_t size, const char **code);
static ngx_int_t ngx_http_media_upload_fail_io(ngx_http_request_t *r,
    ngx_err_t err, const char *what);
static void ngx_http_media_upload_file_free(ngx_http_media_upload_file_t *f);
static ngx_int_t ngx_http_media_upload_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static int ngx_http_media_upload_on_part(void *data,
    const mm_multipart_part_t *part);
static void ngx_http_media_upload_on_data(void *data, const char *p,
    size_t n);
static void ngx_http_media_upload_queue(ngx_http_media_upload_ctx_t *ctx,
    u_char *p, size_t n);
static void ngx_http_media_upload_rebuffer(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx);
static ngx_uint_t ngx_http_media_upload_buf_index(
    ngx_http_media_upload_file_t *f, u_char *p);
static ngx_uint_t ngx_http_media_upload_spare(ngx_http_media_upload_file_t *f,
    ngx_uint_t cur);
static void ngx_http_media_upload_write(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx);
static void ngx_http_media_upload_post(ngx_http_request_t *r,
    ngx_http_media_upload_worker_t *w);
static ngx_http_media_upload_batch_t *ngx_http_media_upload_next(
    ngx_http_media_upload_worker_t *w, ngx_uint_t n, ngx_log_t *log);
static void ngx_http_media_upload_hash_thread(void *data, ngx_log_t *log);
static void ngx_http_media_upload_write_thread(void *data, ngx_log_t *log);
static ngx_int_t ngx_http_media_upload_write_batch(
    ngx_http_media_upload_file_t *f, ngx_http_media_upload_batch_t *fb);
static ngx_int_t ngx_http_media_upload_pwrite(ngx_http_media_upload_file_t *f,
    u_char *p, size_t n);
static void ngx_http_media_upload_retire(ngx_http_media_upload_file_t *f,
    ngx_log_t *log);
static void ngx_http_media_upload_poll(ngx_event_t *ev);
static void ngx_http_media_upload_task_done(ngx_event_t *ev);
static void ngx_http_media_upload_body(ngx_http_request_t *r);
static void ngx_http_media_upload_store(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx);
static void ngx_http_media_upload_store_fail(ngx_http_media_job_t *job,
    const char *what, ngx_err_t err);
static void ngx_http_media_upload_store_run(ngx_http_media_job_t *job);
static void ngx_http_media_upload_store_done(ngx_http_request_t *r,
    ngx_http_media_job_t *job);


static ngx_http_request_body_filter_pt   ngx_http_next_request_body_filter;


/* --- configuration --- */


char *
ngx_http_media_upload_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_media_loc_conf_t  *lcf = conf;

    ngx_fd_t                     fd;
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

    /* uploads are written to unnamed files: the file system must have them */

    fd = open((char *) lcf->upload_dir.data, O_TMPFILE | O_WRONLY | O_CLOEXEC,
              0600);

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);

    } else if (ngx_errno == EOPNOTSUPP || ngx_errno == EISDIR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"media_upload\" directory \"%s\" is on a file "
                           "system without O_TMPFILE (unnamed files)",
                           lcf->upload_dir.data);
        return NGX_CONF_ERROR;
    }

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

    /* the body buffers are given to nginx's HTTP/1 body reader */
    if (r->http_version > NGX_HTTP_VERSION_11) {
        return ngx_http_media_upload_fail(r, NGX_HTTP_VERSION_NOT_SUPPORTED,
                                          "http_version_not_supported",
                                          "upload over HTTP/1.1");
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

    ngx_http_media_upload_file_t  *f;

    ctx->active = 0;

    if (ctx->poll.timer_set) {
        ngx_del_timer(&ctx->poll);
    }

    f = ctx->file;
    if (f == NULL) {
        return;
    }

    ctx->file = NULL;
    f->ctx = NULL;

    /* a running task frees it when it is back */
    if (!f->hash.running && !f->write.running) {
        ngx_http_media_upload_file_free(f);
    }
}


/* the ctx lives in a pool cleanup (the module ctx slot is the stream's) */
static ngx_http_media_upload_ctx_t *
ngx_http_media_upload_ctx(ngx_http_request_t *r)
{
    return ngx_http_media_cleanup_data(r, ngx_http_media_upload_cleanup);
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
    ngx_err_t                     err;
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

    if (ngx_http_media_upload_open(r, ctx, &err) != NGX_OK) {
        rc = ngx_http_media_upload_fail_io(r, err, "cannot create the "
                                           "upload's file");
        goto done;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media upload: token %L, %s body", ctx->token_id,
                   ctx->mp ? "multipart" : "raw");

    ctx->active = 1;

    /* the body filter takes every byte: no temp file, not even an empty one */
    r->request_body_in_file_only = 0;

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


/*
 * The writer: an unnamed file in the upload directory, a SHA-256. On
 * NGX_ERROR, *err is why (0: not an I/O error).
 */
static ngx_int_t
ngx_http_media_upload_open(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx, ngx_err_t *err)
{
    char                           *dir;
    ngx_http_media_loc_conf_t      *lcf;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_media_upload_file_t   *f;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    dir = (char *) lcf->upload_dir.data;
    *err = 0;

    f = ngx_calloc(sizeof(ngx_http_media_upload_file_t), r->connection->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    f->buf_size = ngx_align(clcf->client_body_buffer_size,
                            NGX_HTTP_MEDIA_UPLOAD_BLOCK);
    f->direct = 1;

    for ( ;; ) {
        f->fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC
                          | (f->direct ? O_DIRECT : 0), 0600);

        if (f->fd != NGX_INVALID_FILE) {
            break;
        }

        if (ngx_errno == NGX_ENOENT && mkdir(dir, 0750) == 0) {
            continue;
        }

        /* a file system without direct I/O: through the page cache */
        if (ngx_errno == EINVAL && f->direct) {
            f->direct = 0;
            continue;
        }

        break;
    }

    *err = (f->fd == NGX_INVALID_FILE) ? ngx_errno : 0;

    if (*err) {
        ngx_log_error(ngx_http_media_upload_log_level(*err),
                      r->connection->log, *err,
                      "media upload: open(\"%s\", O_TMPFILE) failed", dir);
        ngx_http_media_upload_file_free(f);
        return NGX_ERROR;
    }

    f->bounce = ngx_memalign(NGX_HTTP_MEDIA_UPLOAD_BLOCK,
                             NGX_HTTP_MEDIA_UPLOAD_BOUNCE, r->connection->log);

    if (f->bounce == NULL) {
        ngx_http_media_upload_file_free(f);
        return NGX_ERROR;
    }

    f->sha = EVP_MD_CTX_new();

    if (f->sha == NULL || EVP_DigestInit_ex(f->sha, EVP_sha256(), NULL) != 1)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "media upload: cannot set up SHA-256");
        ngx_http_media_upload_file_free(f);
        return NGX_ERROR;
    }

    if (ngx_thread_mutex_create(&f->mutex, r->connection->log) != NGX_OK) {
        ngx_http_media_upload_file_free(f);
        return NGX_ERROR;
    }

    f->mutex_set = 1;

    f->hash.file = f;
    f->hash.task.ctx = &f->hash;
    f->hash.task.handler = ngx_http_media_upload_hash_thread;
    f->hash.task.event.data = &f->hash;
    f->hash.task.event.handler = ngx_http_media_upload_task_done;
    f->hash.task.event.log = r->connection->log;

    f->write.file = f;
    f->write.task.ctx = &f->write;
    f->write.task.handler = ngx_http_media_upload_write_thread;
    f->write.task.event.data = &f->write;
    f->write.task.event.handler = ngx_http_media_upload_task_done;
    f->write.task.event.log = r->connection->log;

    f->ctx = ctx;
    ctx->file = f;

    ctx->poll.handler = ngx_http_media_upload_poll;
    ctx->poll.data = ctx;
    ctx->poll.log = r->connection->log;

    return NGX_OK;
}


static void
ngx_http_media_upload_file_free(ngx_http_media_upload_file_t *f)
{
    ngx_uint_t  i;

    if (f->fd != NGX_INVALID_FILE) {
        /* an unnamed file not linked yet is gone with its descriptor */
        (void) ngx_close_file(f->fd);
    }

    if (f->sha) {
        EVP_MD_CTX_free(f->sha);
    }

    for (i = 0; i < NGX_HTTP_MEDIA_UPLOAD_NBUF; i++) {
        ngx_free(f->buf[i]);
        ngx_free(f->batch[i].slices);
        ngx_free(f->batch[i].stage);
    }

    if (f->mutex_set) {
        (void) ngx_thread_mutex_destroy(&f->mutex, ngx_cycle->log);
    }

    ngx_free(f->bounce);
    ngx_free(f);
}


/* --- the body filter --- */


static ngx_int_t
ngx_http_media_upload_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t                    *b;
    ngx_chain_t                  *cl, out;
    mm_status_t                   st;
    ngx_uint_t                    last;
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

    /* nginx waits while a buf of ours is busy (instead of failing) */
    r->request_body->filter_need_buffering = 1;

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf) {
            last = 1;
        }

        if (b->in_file || b->pos == b->last) {
            continue;
        }

        if (ctx->mp == NULL) {
            ngx_http_media_upload_queue(ctx, b->pos, b->last - b->pos);

        } else if (ctx->error == NULL) {
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

        /* the newest stays busy; its bytes are queued already */

        if (ctx->held) {
            ctx->held->pos = ctx->held->last;
        }

        ctx->held = b;
    }

    if (!last) {
        ngx_http_media_upload_rebuffer(r, ctx);
    }

    if (ctx->nomem) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!last) {
        ngx_http_media_upload_write(r, ctx);

        if (ctx->stalled) {
            /* the tasks may have run here (a full queue): a buffer is free */
            ngx_http_media_upload_rebuffer(r, ctx);
        }

        return NGX_OK;
    }

    if (ctx->held) {
        ctx->held->pos = ctx->held->last;
        ctx->held = NULL;
    }

    if (ctx->mp && ctx->error == NULL && mm_multipart_finish(ctx->mp) != MM_OK)
    {
        ctx->error = ctx->mp->err;
    }

    /* the body's end, without its bytes, for nginx to see */

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_next_request_body_filter(r, &out);
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


static void
ngx_http_media_upload_on_data(void *data, const char *p, size_t n)
{
    ngx_http_media_upload_queue(data, (u_char *) p, n);
}


/*
 * Adds p[0..n) of the upload to the batch being filled: bytes in one of
 * the writer's body buffers by reference (a run of them as one slice),
 * others (the preread part, nginx's first buffer, a delimiter prefix the
 * multipart parser gave back) as a copy in the batch's stage.
 */
static void
ngx_http_media_upload_queue(ngx_http_media_upload_ctx_t *ctx, u_char *p,
    size_t n)
{
    size_t                           size;
    u_char                          *stage;
    ngx_uint_t                       k;
    ngx_http_media_upload_file_t    *f;
    ngx_http_media_upload_batch_t   *fb;
    ngx_http_media_upload_slice_t   *s;

    ctx->size += n;

    f = ctx->file;

    if (f->failed || ctx->nomem) {
        return;
    }

    fb = &f->batch[f->closed % NGX_HTTP_MEDIA_UPLOAD_NBUF];
    s = fb->nslices ? &fb->slices[fb->nslices - 1] : NULL;

    k = ngx_http_media_upload_buf_index(f, p);

    if (k < NGX_HTTP_MEDIA_UPLOAD_NBUF && p + n > f->buf[k] + f->buf_size) {
        k = NGX_HTTP_MEDIA_UPLOAD_NBUF;
    }

    fb->len += n;

    if (k < NGX_HTTP_MEDIA_UPLOAD_NBUF && s && s->data
        && s->data + s->len == p && p != f->buf[k])
    {
        s->len += n;
        return;
    }

    if (k == NGX_HTTP_MEDIA_UPLOAD_NBUF && s && s->data == NULL
        && s->staged + s->len == fb->staged
        && fb->staged + n <= fb->stage_size)
    {
        ngx_memcpy(fb->stage + fb->staged, p, n);
        fb->staged += n;
        s->len += n;
        return;
    }

    if (fb->nslices == fb->nalloc) {
        size = fb->nalloc ? 2 * fb->nalloc : 16;

        s = ngx_alloc(size * sizeof(ngx_http_media_upload_slice_t),
                      ngx_cycle->log);
        if (s == NULL) {
            ctx->nomem = 1;
            return;
        }

        if (fb->nslices) {
            ngx_memcpy(s, fb->slices,
                       fb->nslices * sizeof(ngx_http_media_upload_slice_t));
        }

        ngx_free(fb->slices);
        fb->slices = s;
        fb->nalloc = size;
    }

    s = &fb->slices[fb->nslices++];
    s->len = n;

    if (k < NGX_HTTP_MEDIA_UPLOAD_NBUF) {
        s->data = p;
        fb->bufs |= (ngx_uint_t) 1 << k;
        return;
    }

    if (fb->staged + n > fb->stage_size) {
        size = ngx_max(2 * fb->stage_size, fb->staged + n);
        size = ngx_max(size, 64 * 1024);

        stage = ngx_alloc(size, ngx_cycle->log);
        if (stage == NULL) {
            ctx->nomem = 1;
            return;
        }

        if (fb->staged) {
            ngx_memcpy(stage, fb->stage, fb->staged);
        }

        ngx_free(fb->stage);
        fb->stage = stage;
        fb->stage_size = size;
    }

    ngx_memcpy(fb->stage + fb->staged, p, n);

    s->data = NULL;
    s->staged = fb->staged;
    fb->staged += n;
}


/* the body buffer p is in; NGX_HTTP_MEDIA_UPLOAD_NBUF if none */
static ngx_uint_t
ngx_http_media_upload_buf_index(ngx_http_media_upload_file_t *f, u_char *p)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_MEDIA_UPLOAD_NBUF; i++) {
        if (f->buf[i] && p >= f->buf[i] && p < f->buf[i] + f->buf_size) {
            return i;
        }
    }

    return NGX_HTTP_MEDIA_UPLOAD_NBUF;
}


/*
 * A body buffer other than cur that no batch refers to, one allocated
 * already if there is; NGX_HTTP_MEDIA_UPLOAD_NBUF if none.
 */
static ngx_uint_t
ngx_http_media_upload_spare(ngx_http_media_upload_file_t *f, ngx_uint_t cur)
{
    ngx_uint_t  i, used, spare;

    used = 0;

    for (i = f->retired; i <= f->closed; i++) {
        used |= f->batch[i % NGX_HTTP_MEDIA_UPLOAD_NBUF].bufs;
    }

    spare = NGX_HTTP_MEDIA_UPLOAD_NBUF;

    for (i = 0; i < NGX_HTTP_MEDIA_UPLOAD_NBUF; i++) {
        if (i == cur || (used & ((ngx_uint_t) 1 << i))) {
            continue;
        }

        if (f->buf[i]) {
            return i;
        }

        if (spare == NGX_HTTP_MEDIA_UPLOAD_NBUF) {
            spare = i;
        }
    }

    return spare;
}


/*
 * nginx reads into rb->buf and starts it over once it is full: it reads
 * into the writer's buffers instead, a spare one once one is full (and
 * its bytes are queued), or waits (a buf held busy) until the tasks are
 * done with one.
 */
static void
ngx_http_media_upload_rebuffer(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    off_t                          next;
    ngx_buf_t                     *b;
    ngx_uint_t                     k;
    ngx_http_media_upload_file_t  *f;

    f = ctx->file;
    b = r->request_body->buf;

    if (b == NULL) {
        /* the preread part, before nginx has a buffer */
        return;
    }

    k = ngx_http_media_upload_buf_index(f, b->start);

    if (k < NGX_HTTP_MEDIA_UPLOAD_NBUF) {
        if (b->last < b->end) {
            return;
        }

        /* full: a spare one */
        k = ngx_http_media_upload_spare(f, k);

        if (k == NGX_HTTP_MEDIA_UPLOAD_NBUF) {

            /*
             * with no buf held, none of this buffer's bytes are queued
             * (all were chunk framing): nginx may start it over
             */

            if (ctx->held) {
                ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                               "media upload: reading waits for a buffer");
                ctx->stalled = 1;
                ctx->reader = r->read_event_handler;

                if (!ctx->poll.timer_set) {
                    ngx_add_timer(&ctx->poll, 1);
                }
            }

            return;
        }

    } else {
        /* nginx's own (its bytes were copied): ours from now on */
        k = ngx_http_media_upload_spare(f, NGX_HTTP_MEDIA_UPLOAD_NBUF);

        if (k == NGX_HTTP_MEDIA_UPLOAD_NBUF) {
            return;
        }
    }

    if (f->buf[k] == NULL) {
        f->buf[k] = ngx_memalign(NGX_HTTP_MEDIA_UPLOAD_BLOCK, f->buf_size,
                                 r->connection->log);
        if (f->buf[k] == NULL) {
            ctx->nomem = 1;
            return;
        }
    }

    if (ngx_http_media_upload_buf_index(f, b->start)
        == NGX_HTTP_MEDIA_UPLOAD_NBUF)
    {
        (void) ngx_pfree(r->pool, b->start);
    }

    /*
     * the file offset the next byte read will have, if it is the upload's
     * (after the bytes of a possible delimiter the parser holds back): at
     * an address with the same remainder, blocks of it can go to the disk
     * from where they are
     */

    next = ctx->size + (ctx->mp ? (off_t) ctx->mp->matched : 0);

    b->start = f->buf[k] + (next & (NGX_HTTP_MEDIA_UPLOAD_BLOCK - 1));
    b->pos = b->start;
    b->last = b->start;
    b->end = f->buf[k] + f->buf_size;

    ctx->cur = k;
    ctx->stalled = 0;

    if (ctx->held) {
        ctx->held->pos = ctx->held->last;
        ctx->held = NULL;
    }
}


/* --- writing and hashing on the thread pool --- */


/*
 * Closes the batch being filled once it holds a body buffer's worth (or
 * nginx waits for a buffer, or the body is complete: then the batch is
 * the last, even if empty) and the ring has room; then posts a task that
 * is not running and has a batch to do.
 */
static void
ngx_http_media_upload_write(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    ngx_http_media_upload_file_t   *f;
    ngx_http_media_upload_batch_t  *fb;

    f = ctx->file;
    fb = &f->batch[f->closed % NGX_HTTP_MEDIA_UPLOAD_NBUF];

    if (f->failed || f->last
        || (!ctx->complete
            && (fb->len == 0 || (fb->len < f->buf_size && !ctx->stalled)))
        || f->closed + 1 - f->retired >= NGX_HTTP_MEDIA_UPLOAD_NBUF)
    {
        goto post;
    }

    fb->last = ctx->complete;
    f->last = ctx->complete;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media upload: batch %ui: %uz bytes, %ui slices%s",
                   f->closed, fb->len, fb->nslices,
                   fb->last ? ", the last" : "");

    (void) ngx_thread_mutex_lock(&f->mutex, r->connection->log);
    f->closed++;
    (void) ngx_thread_mutex_unlock(&f->mutex, r->connection->log);

post:

    ngx_http_media_upload_post(r, &f->hash);
    ngx_http_media_upload_post(r, &f->write);
}


/* posts a task that is not running and has a batch to do */
static void
ngx_http_media_upload_post(ngx_http_request_t *r,
    ngx_http_media_upload_worker_t *w)
{
    ngx_uint_t                     done;
    ngx_http_media_upload_file_t  *f;
    ngx_http_media_main_conf_t    *mcf;

    f = w->file;

    if (w->running) {
        return;
    }

    (void) ngx_thread_mutex_lock(&f->mutex, r->connection->log);
    done = w->done;
    (void) ngx_thread_mutex_unlock(&f->mutex, r->connection->log);

    if (done == f->closed) {
        return;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);

    if (ngx_thread_task_post(mcf->thread_pool, &w->task) == NGX_OK) {
        w->running = 1;
        return;
    }

    /* the queue is full: work here rather than not at all */

    w->task.handler(w, r->connection->log);
    ngx_http_media_upload_retire(f, r->connection->log);
}


/* pool thread: the worker's next batch, after n of this run; NULL: none */
static ngx_http_media_upload_batch_t *
ngx_http_media_upload_next(ngx_http_media_upload_worker_t *w, ngx_uint_t n,
    ngx_log_t *log)
{
    ngx_http_media_upload_file_t   *f;
    ngx_http_media_upload_batch_t  *fb;

    f = w->file;
    fb = NULL;

    (void) ngx_thread_mutex_lock(&f->mutex, log);

    if (n) {
        w->done++;
    }

    if (w->done != f->closed) {
        fb = &f->batch[w->done % NGX_HTTP_MEDIA_UPLOAD_NBUF];
    }

    (void) ngx_thread_mutex_unlock(&f->mutex, log);

    return fb;
}


/* pool thread: no nginx calls but the mutex; hashes batches */
static void
ngx_http_media_upload_hash_thread(void *data, ngx_log_t *log)
{
    ngx_http_media_upload_worker_t  *w = data;

    ngx_uint_t                      i, n;
    ngx_http_media_upload_batch_t  *fb;
    ngx_http_media_upload_slice_t  *s;

    for (n = 0; (fb = ngx_http_media_upload_next(w, n, log)); n++) {

        for (i = 0; i < fb->nslices && !w->failed; i++) {
            s = &fb->slices[i];

            if (EVP_DigestUpdate(w->file->sha,
                                 s->data ? s->data : fb->stage + s->staged,
                                 s->len)
                != 1)
            {
                (void) ngx_thread_mutex_lock(&w->file->mutex, log);
                w->failed = 1;
                (void) ngx_thread_mutex_unlock(&w->file->mutex, log);
            }
        }
    }
}


/* pool thread: no nginx calls but the mutex; writes batches */
static void
ngx_http_media_upload_write_thread(void *data, ngx_log_t *log)
{
    ngx_http_media_upload_worker_t  *w = data;

    ngx_uint_t                      n;
    ngx_http_media_upload_batch_t  *fb;

    for (n = 0; (fb = ngx_http_media_upload_next(w, n, log)); n++) {

        if (w->failed
            || ngx_http_media_upload_write_batch(w->file, fb) == NGX_OK)
        {
            continue;
        }

        (void) ngx_thread_mutex_lock(&w->file->mutex, log);
        w->failed = 1;
        w->err = errno ? errno : ENOSPC;
        (void) ngx_thread_mutex_unlock(&w->file->mutex, log);
    }
}


/*
 * Pool thread: writes a batch. Whole blocks at a block-aligned address go
 * to the file from where they are; other bytes are copied into the bounce
 * buffer, written when it is full or before aligned bytes, and kept (a
 * partial block) for the next batch. At the end the last block is written
 * padded and the file cut to its size. NGX_ERROR with errno set.
 */
static ngx_int_t
ngx_http_media_upload_write_batch(ngx_http_media_upload_file_t *f,
    ngx_http_media_upload_batch_t *fb)
{
    off_t                           start;
    size_t                          n, m, c, bl;
    u_char                         *p;
    ngx_uint_t                      i;
    ngx_http_media_upload_slice_t  *s;

#define ngx_http_media_upload_aligned(p)                                     \
    (((uintptr_t) (p) & (NGX_HTTP_MEDIA_UPLOAD_BLOCK - 1)) == 0)

    start = f->wpos + f->bounced;

    for (i = 0; i < fb->nslices; i++) {
        s = &fb->slices[i];
        p = s->data ? s->data : fb->stage + s->staged;
        n = s->len;

        while (n) {

            if (ngx_http_media_upload_aligned(f->bounced)
                && ngx_http_media_upload_aligned(p)
                && n >= NGX_HTTP_MEDIA_UPLOAD_BLOCK)
            {
                if (f->bounced) {
                    if (ngx_http_media_upload_pwrite(f, f->bounce, f->bounced)
                        != NGX_OK)
                    {
                        return NGX_ERROR;
                    }

                    f->bounced = 0;
                }

                m = n & ~((size_t) NGX_HTTP_MEDIA_UPLOAD_BLOCK - 1);

                if (ngx_http_media_upload_pwrite(f, p, m) != NGX_OK) {
                    return NGX_ERROR;
                }

                p += m;
                n -= m;
                continue;
            }

            /* up to the bounce's end, or its next block if p lines up then */

            c = ngx_min(n, NGX_HTTP_MEDIA_UPLOAD_BOUNCE - f->bounced);
            bl = NGX_HTTP_MEDIA_UPLOAD_BLOCK
                 - (f->bounced & (NGX_HTTP_MEDIA_UPLOAD_BLOCK - 1));

            if (n > bl && ngx_http_media_upload_aligned(p + bl)) {
                c = ngx_min(c, bl);
            }

            ngx_memcpy(f->bounce + f->bounced, p, c);
            f->bounced += c;
            p += c;
            n -= c;

            if (f->bounced == NGX_HTTP_MEDIA_UPLOAD_BOUNCE) {
                if (ngx_http_media_upload_pwrite(f, f->bounce, f->bounced)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                f->bounced = 0;
            }
        }
    }

#undef ngx_http_media_upload_aligned

    if (!fb->last) {
        if (!f->direct) {
            /* the disk may start on it: less for the final fsync */
            (void) sync_file_range(f->fd, start, fb->len,
                                   SYNC_FILE_RANGE_WRITE);
        }

        return NGX_OK;
    }

    if (f->bounced) {
        start = f->wpos + f->bounced;
        m = ngx_align(f->bounced, NGX_HTTP_MEDIA_UPLOAD_BLOCK);
        ngx_memzero(f->bounce + f->bounced, m - f->bounced);

        if (ngx_http_media_upload_pwrite(f, f->bounce, m) != NGX_OK
            || ftruncate(f->fd, start) != 0)
        {
            return NGX_ERROR;
        }

        f->bounced = 0;
    }

    return NGX_OK;
}


/* pool thread: n bytes at p (n and p aligned for O_DIRECT) at wpos */
static ngx_int_t
ngx_http_media_upload_pwrite(ngx_http_media_upload_file_t *f, u_char *p,
    size_t n)
{
    ssize_t  w;

    while (n) {
        w = pwrite(f->fd, p, n, f->wpos);

        if (w == -1 && errno == EINTR) {
            continue;
        }

        if (w <= 0) {
            if (w == 0) {
                errno = ENOSPC;
            }

            return NGX_ERROR;
        }

        p += w;
        n -= w;
        f->wpos += w;
    }

    return NGX_OK;
}


/*
 * Event loop: retires the batches both tasks passed (their buffers and
 * stage are free again). After a failure the tasks pass the rest without
 * work, and the batch being filled is dropped.
 */
static void
ngx_http_media_upload_retire(ngx_http_media_upload_file_t *f, ngx_log_t *log)
{
    ngx_uint_t                      done, failed;
    ngx_http_media_upload_batch_t  *fb;

    (void) ngx_thread_mutex_lock(&f->mutex, log);
    done = ngx_min(f->hash.done, f->write.done);
    failed = f->hash.failed || f->write.failed;
    (void) ngx_thread_mutex_unlock(&f->mutex, log);

    if (failed && !f->failed) {
        f->failed = 1;

        ngx_log_error(ngx_http_media_upload_log_level(
                          f->write.failed ? f->write.err : 0),
                      log, f->write.err,
                      "media upload: %s the upload failed",
                      f->write.failed ? "writing" : "hashing");

        fb = &f->batch[f->closed % NGX_HTTP_MEDIA_UPLOAD_NBUF];
        fb->nslices = 0;
        fb->staged = 0;
        fb->len = 0;
        fb->bufs = 0;
    }

    for ( /* void */ ; f->retired < done; f->retired++) {
        fb = &f->batch[f->retired % NGX_HTTP_MEDIA_UPLOAD_NBUF];

        if (!f->failed) {
            f->written += fb->len;
            f->finished = fb->last;
        }

        fb->nslices = 0;
        fb->staged = 0;
        fb->len = 0;
        fb->bufs = 0;
    }
}


/* event loop: a task is back */
static void
ngx_http_media_upload_task_done(ngx_event_t *ev)
{
    ngx_http_media_upload_worker_t  *w = ev->data;

    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_media_upload_ctx_t   *ctx;
    ngx_http_media_upload_file_t  *f;

    f = w->file;
    w->running = 0;

    ctx = f->ctx;

    if (ctx == NULL) {
        /* the request is gone */
        if (!f->hash.running && !f->write.running) {
            ngx_http_media_upload_file_free(f);
        }

        return;
    }

    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_http_media_upload_retire(f, c->log);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "media upload: %ui batches, %O bytes done%s",
                   f->retired, f->written, f->failed ? ", failed" : "");

    ngx_http_media_upload_write(r, ctx);

    if (ctx->stalled) {
        ngx_http_media_upload_poll(&ctx->poll);
        return;
    }

    if (ctx->complete && !f->hash.running && !f->write.running) {
        ngx_http_media_upload_store(r, ctx);
    }

    ngx_http_run_posted_requests(c);
}


/*
 * Event loop: nginx waits for a buffer (the tasks go on without a trip
 * through the event loop, so this looks every millisecond): reads on once
 * the tasks are done with one.
 */
static void
ngx_http_media_upload_poll(ngx_event_t *ev)
{
    ngx_http_media_upload_ctx_t  *ctx = ev->data;

    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_media_upload_file_t  *f;

    if (!ctx->stalled) {
        return;
    }

    r = ctx->request;
    c = r->connection;
    f = ctx->file;

    if (r->read_event_handler != ctx->reader) {
        /* nginx is not reading the body any more (an error, a timeout) */
        ctx->stalled = 0;
        return;
    }

    ngx_http_set_log_request(c->log, r);

    ngx_http_media_upload_retire(f, c->log);
    ngx_http_media_upload_write(r, ctx);

    if (ngx_http_media_upload_spare(f, ctx->cur) == NGX_HTTP_MEDIA_UPLOAD_NBUF)
    {
        if (!ev->timer_set) {
            ngx_add_timer(ev, 1);
        }

        return;
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    /* read on (that may finalize r) */
    r->read_event_handler(r);
    ngx_http_run_posted_requests(c);
}


/* --- the body is in --- */


static void
ngx_http_media_upload_body(ngx_http_request_t *r)
{
    ngx_int_t                     rc;
    ngx_http_media_upload_ctx_t  *ctx;

    ctx = ngx_http_media_upload_ctx(r);
    if (ctx == NULL || ctx->file == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctx->active = 0;
    ctx->stalled = 0;

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

    if (ctx->size == 0) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_BAD_REQUEST, "empty",
                                        "the upload is empty (0 bytes)");
        ngx_http_finalize_request(r, rc);
        return;
    }

    /* the rest is written, then stored */

    ctx->complete = 1;

    ngx_http_media_upload_write(r, ctx);

    if (!ctx->file->hash.running && !ctx->file->write.running) {
        ngx_http_media_upload_store(r, ctx);
    }
}


/* the body is written and hashed: a job files it away */
static void
ngx_http_media_upload_store(ngx_http_request_t *r,
    ngx_http_media_upload_ctx_t *ctx)
{
    unsigned int                    len;
    ngx_int_t                       rc;
    ngx_http_media_job_t           *job;
    ngx_http_media_upload_job_t    *uj;
    ngx_http_media_loc_conf_t      *lcf;
    ngx_http_media_upload_file_t   *f;
    u_char                          md[EVP_MAX_MD_SIZE];

    f = ctx->file;

    if (f->failed || !f->finished || f->written != ctx->size) {
        if (!f->failed) {
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "media upload: %O of %O bytes written", f->written,
                          ctx->size);
        }

        /* the unnamed file goes with the request (its descriptor) */
        rc = ngx_http_media_upload_fail_io(r, f->write.failed ? f->write.err
                                                              : 0,
                                           "writing the upload failed");
        ngx_http_finalize_request(r, rc);
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_media_module);

    job = ngx_pcalloc(r->pool, sizeof(ngx_http_media_job_t));
    uj = ngx_pcalloc(r->pool, sizeof(ngx_http_media_upload_job_t));
    if (job == NULL || uj == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = 0;
    if (EVP_DigestFinal_ex(f->sha, md, &len) != 1 || len != 32) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *ngx_hex_dump((u_char *) uj->sha256, md, len) = '\0';

    /* the request (blocked while the job runs) keeps the writer and fd */
    uj->fd = f->fd;
    uj->dir = (char *) lcf->upload_dir.data;
    uj->size = ctx->size;
    uj->token_id = ctx->token_id;

    job->mcf = ngx_http_get_module_main_conf(r, ngx_http_media_module);
    job->data = uj;
    job->run = ngx_http_media_upload_store_run;
    job->done = ngx_http_media_upload_store_done;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "media upload: %O bytes, sha256 %s", uj->size, uj->sha256);

    if (ngx_http_media_job_post(r, job) != NGX_OK) {
        rc = ngx_http_media_upload_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "busy", "the work queue is full");
        ngx_http_finalize_request(r, rc);
        return;
    }
}


/*
 * An I/O error's answer: 507 "no_space" when the disk (or the quota) is
 * full, else 500 "internal" with what failed and why (err 0: no reason).
 */
static ngx_uint_t
ngx_http_media_upload_io_error(ngx_err_t err, const char *what,
    char *message, size_t size, const char **code)
{
    if (ngx_http_media_upload_no_space(err)) {
        *code = "no_space";
        snprintf(message, size, "%s: no space left on the server's disk, "
                 "retry later", what);
        return NGX_HTTP_INSUFFICIENT_STORAGE;
    }

    *code = "internal";

    if (err) {
        snprintf(message, size, "%s: %s", what, strerror(err));
    } else {
        snprintf(message, size, "%s", what);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* the request's answer to an I/O error (507 or 500): ..._fail()'s */
static ngx_int_t
ngx_http_media_upload_fail_io(ngx_http_request_t *r, ngx_err_t err,
    const char *what)
{
    ngx_uint_t   status;
    const char  *code;
    char         message[256];

    status = ngx_http_media_upload_io_error(err, what, message,
                                            sizeof(message), &code);

    return ngx_http_media_upload_fail(r, status, code, message);
}


/* the job's error: what failed and why (507 or 500), logged when done */
static void
ngx_http_media_upload_store_fail(ngx_http_media_job_t *job, const char *what,
    ngx_err_t err)
{
    ngx_http_media_upload_job_t  *uj = job->data;

    const char  *code;
    char         message[256];

    uj->failed = what;
    uj->err = err;

    job->status = ngx_http_media_upload_io_error(err, what, message,
                                                 sizeof(message), &code);
    ngx_http_media_json_error(&job->out, code, message);
}


/*
 * Pool thread: the file's data on disk (fsync), then its name in the
 * upload directory (linkat of the unnamed file) and the directory on disk,
 * then the row.
 */
static void
ngx_http_media_upload_store_run(ngx_http_media_job_t *job)
{
    ngx_http_media_upload_job_t  *uj = job->data;

    int             dfd, rc;
    char            path[NGX_MAX_PATH], name[2 * 16 + 1], size[32];
    char            owner[32], proc[64];
    size_t          i;
    const char     *params[4];
    PGresult       *res;
    unsigned char   rnd[16];

    static const char  hex[] = "0123456789abcdef";

    if (fsync(uj->fd) != 0) {
        ngx_http_media_upload_store_fail(job, "cannot fsync the upload",
                                         errno);
        return;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_http_media_upload_store_fail(job, "no randomness", 0);
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
        ngx_http_media_upload_store_fail(job, "the upload directory's path "
                                         "is too long", 0);
        return;
    }

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", uj->fd);

    if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) != 0) {
        ngx_http_media_upload_store_fail(job, "cannot link the upload "
                                         "into place", errno);
        return;
    }

    dfd = open(uj->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = (dfd == -1) ? -1 : fsync(dfd);

    if (rc != 0) {
        ngx_http_media_upload_store_fail(job, "cannot fsync the upload "
                                         "directory", errno);
        if (dfd != -1) {
            (void) close(dfd);
        }

        (void) unlink(path);
        return;
    }

    (void) close(dfd);

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
    ngx_http_media_bell_ring(&job->mcf->packager_bell, "probe");

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

    ngx_int_t  rc;

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

    } else {
        ngx_log_error(ngx_http_media_upload_log_level(uj->err),
                      r->connection->log, uj->err, "media upload: %s",
                      uj->failed);
    }

    rc = ngx_http_media_send_json(r, job->status, (u_char *) job->out.data,
                                  job->out.len);

    ngx_http_finalize_request(r, rc);
}
