
/*
 * ngx_media: doorbells, the ZeroMQ nudge that wakes a daemon when a job is
 * queued in PostgreSQL (the archiver, the packager).
 *
 * media_archive_doorbell / media_packager_doorbell <endpoint> <our key file>
 *     <daemon's public key file> configure one ngx_http_media_bell_t each.
 * A pool thread rings with ngx_http_media_bell_ring(): its thread-local
 * ZeroMQ PUSH socket (CURVE client) for that bell, made on first use; sends
 * never block, and a lost ring only delays the start until the daemon's
 * next poll. Every socket is closed and the context ended when the worker
 * exits (ngx_http_media_bell_exit_process()).
 *
 * Also the CURVE client keys and sockets a doorbell and the analytics
 * events (ngx_http_media_events.c) share.
 */

#include "ngx_http_media.h"

#include <pthread.h>
#include <zmq.h>


/* the doorbells a module has: archiver, packager */
#define NGX_HTTP_MEDIA_BELLS  2


typedef struct {
    ngx_http_media_bell_t  *bell;
    void                   *sock;
} ngx_http_media_bell_sock_t;


static pthread_once_t    ngx_http_media_bell_once = PTHREAD_ONCE_INIT;
static void             *ngx_http_media_bell_zctx;

static __thread ngx_http_media_bell_sock_t
    ngx_http_media_bell_socks[NGX_HTTP_MEDIA_BELLS];

/* every thread's socket, closed at exit (see _exit_process()) */
static pthread_mutex_t   ngx_http_media_bell_mtx = PTHREAD_MUTEX_INITIALIZER;
static void            **ngx_http_media_bell_all;
static ngx_uint_t        ngx_http_media_bell_nall;


/*
 * Loads our key pair from the file ours and the daemon's public key from
 * theirs (both made full names first) for the directive cmd.
 */
char *
ngx_http_media_curve_load(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *ours,
    ngx_str_t *theirs, ngx_http_media_curve_t *curve)
{
    char  err[512];

    if (ngx_conf_full_name(cf->cycle, ours, 1) != NGX_OK
        || ngx_conf_full_name(cf->cycle, theirs, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (mm_curvekey_load((char *) ours->data, curve->public_key,
                         curve->secret_key, err, sizeof(err))
        != MM_OK
        || mm_curvekey_load((char *) theirs->data, curve->server_key,
                            NULL, err, sizeof(err))
           != MM_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\": %s", &cmd->name,
                           err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A ZeroMQ socket of type as a CURVE client with curve's keys: no linger,
 * hwm messages queued each way; not yet connected. NULL on failure.
 */
void *
ngx_http_media_curve_socket(void *zctx, int type, int hwm,
    ngx_http_media_curve_t *curve)
{
    int    linger = 0;
    void  *sock;

    sock = zmq_socket(zctx, type);
    if (sock == NULL) {
        return NULL;
    }

    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(int)) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, curve->server_key,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, curve->public_key,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, curve->secret_key,
                          MM_CURVE_KEY_LEN) != 0)
    {
        zmq_close(sock);
        return NULL;
    }

    return sock;
}


/* the directive: cmd->offset is the bell's place in the main conf */
char *
ngx_http_media_bell_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                   *rv;
    ngx_str_t             *value;
    ngx_http_media_bell_t  *bell;

    bell = (ngx_http_media_bell_t *) ((char *) conf + cmd->offset);

    if (bell->endpoint.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strncmp(value[1].data, "tcp://", 6) != 0
        && ngx_strncmp(value[1].data, "ipc://", 6) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\": the endpoint must be tcp:// or ipc://, "
                           "not \"%V\"", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_media_curve_load(cf, cmd, &value[2], &value[3],
                                   &bell->curve);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    bell->endpoint = value[1];

    return NGX_CONF_OK;
}


static void
ngx_http_media_bell_zinit(void)
{
    ngx_http_media_bell_zctx = zmq_ctx_new();
}


static ngx_int_t
ngx_http_media_bell_keep(void *sock)
{
    void  **all;

    (void) pthread_mutex_lock(&ngx_http_media_bell_mtx);

    all = realloc(ngx_http_media_bell_all,
                  (ngx_http_media_bell_nall + 1) * sizeof(void *));
    if (all == NULL) {
        (void) pthread_mutex_unlock(&ngx_http_media_bell_mtx);
        return NGX_ERROR;
    }

    all[ngx_http_media_bell_nall++] = sock;
    ngx_http_media_bell_all = all;

    (void) pthread_mutex_unlock(&ngx_http_media_bell_mtx);

    return NGX_OK;
}


/* this thread's socket for bell: NULL when it cannot be had */
static void *
ngx_http_media_bell_sock(ngx_http_media_bell_t *bell)
{
    void                        *sock;
    ngx_uint_t                   i;
    ngx_http_media_bell_sock_t  *bs;

    for (i = 0; i < NGX_HTTP_MEDIA_BELLS; i++) {
        bs = &ngx_http_media_bell_socks[i];

        if (bs->bell == bell) {
            return bs->sock;
        }

        if (bs->bell == NULL) {
            break;
        }
    }

    if (i == NGX_HTTP_MEDIA_BELLS) {
        return NULL;
    }

    sock = ngx_http_media_curve_socket(ngx_http_media_bell_zctx, ZMQ_PUSH,
                                       16, &bell->curve);
    if (sock == NULL) {
        return NULL;
    }

    if (zmq_connect(sock, (char *) bell->endpoint.data) != 0
        || ngx_http_media_bell_keep(sock) != NGX_OK)
    {
        zmq_close(sock);
        return NULL;
    }

    bs->bell = bell;
    bs->sock = sock;

    return sock;
}


/* pool threads: wake the daemon behind bell (no-op when not configured) */
void
ngx_http_media_bell_ring(ngx_http_media_bell_t *bell, const char *what)
{
    void  *sock;

    if (bell->endpoint.len == 0) {
        return;
    }

    (void) pthread_once(&ngx_http_media_bell_once, ngx_http_media_bell_zinit);

    if (ngx_http_media_bell_zctx == NULL) {
        return;
    }

    sock = ngx_http_media_bell_sock(bell);

    if (sock == NULL) {
        return;
    }

    /* queued until the CURVE handshake is done; dropped when full */
    (void) zmq_send(sock, what, strlen(what), ZMQ_DONTWAIT);
}


/*
 * A worker that exits unloads the module, and libzmq with it, while the
 * context's I/O threads would still run: close the pool threads' sockets
 * (the threads are gone by now: the thread pool module exits first) and
 * end the context before that.
 */
void
ngx_http_media_bell_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    (void) pthread_mutex_lock(&ngx_http_media_bell_mtx);

    for (i = 0; i < ngx_http_media_bell_nall; i++) {
        zmq_close(ngx_http_media_bell_all[i]);
    }

    free(ngx_http_media_bell_all);
    ngx_http_media_bell_all = NULL;
    ngx_http_media_bell_nall = 0;

    (void) pthread_mutex_unlock(&ngx_http_media_bell_mtx);

    if (ngx_http_media_bell_zctx != NULL) {
        (void) zmq_ctx_term(ngx_http_media_bell_zctx);
        ngx_http_media_bell_zctx = NULL;
    }
}
