/*
 * media-archiver: see archiver.h and docs/archives.md.
 *
 * One archive in memory is an ar_archive_t with its files (ar_file_t, in
 * request order). A file goes
 *
 *   PENDING -> RUNNING -> DOWNLOADED -> DONE (in the ZIP)
 *        ^        |
 *        +--------+ transient failure: backoff, resume from the part file
 *                 |
 *                 +-> FAILED (permanent, or out of attempts)
 *
 * Downloads run concurrently; entries are appended in request order, so an
 * archive's layout and its entry names (de-duplicated in that order) do not
 * depend on which download finished first. A file's bytes go to
 * <archive_dir>/.work/<hash>/<idx>.part (CRC-32 computed as they arrive),
 * then are copied (copy_file_range, in chunks between loop turns) into
 * <archive_dir>/.work/<hash>/archive.zip.tmp after its local header.
 *
 * What survives a kill -9: the part files, the temporary ZIP, and the rows
 * (archive_sync: every file's state, each entry's record, the ZIP's append
 * position). On a restart the temporary ZIP is cut back to the recorded
 * position, its central directory rebuilt from the records, and each
 * unfinished download resumed from the bytes in its part file. A part file
 * is removed only once the row saying its entry is in the ZIP is committed.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <zmq.h>
#include <curl/curl.h>

#include "archive.h"
#include "archiver.h"
#include "bell.h"
#include "buf.h"
#include "curlm.h"
#include "curvekey.h"
#include "fetch.h"
#include "heartbeat.h"
#include "json.h"
#include "log.h"
#include "names.h"
#include "pgc.h"
#include "pgq.h"
#include "url.h"
#include "util.h"
#include "zip.h"


#define AR_VERSION          "0.1"
#define AR_ZAP_DOMAIN       "archiver"
#define AR_LEASE            60              /* s */
#define AR_SYNC_MS          1000            /* progress to the rows */
#define AR_SYNC_SOON_MS     50              /* state changes */
#define AR_KEEPALIVE_MS     15000           /* lease renewal */
#define AR_COPY_CHUNK       (8 << 20)       /* per loop turn */
#define AR_PURGE_MS         10000
#define AR_DRAIN_MS         3000
#define AR_RETRY_IO_MS      5000            /* local disk trouble */
#define AR_DISCARD_MAX      (64 * 1024)     /* error bodies read */
#define AR_BUFFER_SIZE      (256 * 1024)    /* CURLOPT_BUFFERSIZE */


static const char  ar_claim_sql[] =
    "SELECT id, hash, name, on_error, zip_pos"
    " FROM archive_claim($1, $2::bigint[], $3::integer)";

static const char  ar_files_sql[] =
    "SELECT idx, url, name, status, bytes_done, bytes_total, etag,"
    " last_modified, attempts, error, zip_offset, zip_crc, zip_size,"
    " zip_flags, zip_mtime,"
    " greatest(0, ceil(extract(epoch FROM next_attempt_at - now()) * 1000))"
    "::bigint"
    " FROM archive_files WHERE archive_id = $1 ORDER BY idx";

static const char  ar_sync_sql[] =
    "SELECT archive_sync($1, $2, $3::json, $4::bigint, $5::integer)";

static const char  ar_finish_sql[] =
    "SELECT archive_finish($1, $2, $3, $4, $5::bigint, $6)";

static const char  ar_expired_sql[] =
    "SELECT id, hash FROM archives"
    " WHERE status = 'completed' AND purged_at IS NULL"
    "   AND expires_at <= now()"
    " ORDER BY expires_at LIMIT 100";

static const char  ar_purged_sql[] =
    "UPDATE archives SET purged_at = now() WHERE id = ANY ($1::bigint[])";

static const char  ar_leftover_sql[] =
    "SELECT hash FROM archives WHERE hash = ANY ($1::text[])"
    " AND status IN ('completed', 'failed')";


typedef enum {
    AF_PENDING = 0,
    AF_RUNNING,
    AF_DOWNLOADED,
    AF_DONE,
    AF_FAILED
} ar_fstate_t;


typedef enum {
    AA_LOADING = 0,
    AA_ACTIVE,
    AA_FINISHING,       /* archive_finish queued */
    AA_DEAD             /* to be freed */
} ar_astate_t;


typedef enum {
    AT_OK = 0,
    AT_TOO_BIG,
    AT_ARCHIVE_TOO_BIG,
    AT_BAD_RANGE,
    AT_WRITE,
    AT_CANCEL
} ar_abort_t;


typedef struct archiver_s     archiver_t;
typedef struct ar_archive_s   ar_archive_t;
typedef struct ar_file_s      ar_file_t;
typedef struct ar_transfer_s  ar_transfer_t;


struct ar_transfer_s {
    ar_file_t           *f;
    CURL                *easy;
    struct curl_slist   *headers;
    curlm_guard_t        guard;
    int                  fd;            /* the part file */
    int64_t              start;         /* Range asked from here */
    int                  decided;       /* the response was looked at */
    int                  discard;       /* not 2xx: read and drop */
    size_t               discarded;
    int64_t              received;      /* bytes written this attempt */
    ar_abort_t           abort;
    int                  err;           /* errno of AT_WRITE */

    /* headers of the last response (redirects reset them) */
    int                  status;
    int64_t              content_length;
    char                 etag[256];
    char                 last_modified[64];
    char                 content_range[128];
    char                 retry_after[64];
    char                 disposition[1024];
    size_t               disposition_len;

    char                 errbuf[CURL_ERROR_SIZE];
};


struct ar_file_s {
    ar_archive_t        *a;
    int                  idx;
    char                *url;
    char                 host[300];     /* host:port, for per_host */
    ar_fstate_t          state;
    int64_t              bytes;         /* in the part file */
    int64_t              total;         /* expected size, -1 unknown */
    uint32_t             crc;           /* of bytes[0..bytes) */
    int                  crc_known;
    char                *etag;
    char                *last_modified;
    char                 cand[MM_NAME_SIZE];    /* name from the answer */
    size_t               cand_len;
    char                 name[MM_NAME_SIZE];    /* entry name, once DONE */
    size_t               name_len;
    int64_t              mtime;         /* Last-Modified, 0 none */
    long                 attempts;      /* tries, shown in status */
    long                 streak;        /* failures in a row */
    uint64_t             next_at;       /* monotonic ms */
    char                 error[256];
    int                  dirty;         /* the row is behind */
    int                  unlink_part;   /* once the row says DONE */
    mm_zip_entry_t       zip;           /* DONE: the record */
    ar_transfer_t       *t;
};


struct ar_archive_s {
    ar_archive_t        *next;
    archiver_t          *ar;
    ar_astate_t          state;
    int64_t              id;
    char                 hash[MM_ARCHIVE_HASH_LEN + 1];
    char                *name;
    int                  fail_on_error;
    int64_t              zip_pos_db;    /* append position in the row */

    ar_file_t           *files;
    int                  nfiles;
    int                  next_zip;      /* first file not in the ZIP yet */
    int                  running;

    char                *dir;
    char                *tmp_path;
    char                *final_path;
    int                  zip_fd;
    mm_zip_t            *zip;
    mm_names_t          *names;
    int64_t              bytes_in;      /* downloaded, for the size limit */

    ar_file_t           *appending;
    int                  part_fd;
    uint64_t             copied;
    uint64_t             append_at;     /* retry after local trouble */

    int                  syncing;
    int                  dirty;         /* some file's row is behind */
    int                  sync_dirty_zip;
    uint64_t             sync_at;       /* next progress sync */
    uint64_t             synced_at;
    int                  resync_all;

    int                  failing;
    char                 fail_error[512];
    uint64_t             finish_at;     /* retry of a failed finish */
};


struct archiver_s {
    archiver_conf_t     *conf;
    svc_t                svc;
    void                *notifier;

    ar_archive_t        *archives;
    int                  nactive;
    int                  running;
    ar_file_t          **run;           /* the running downloads */
    int                  sched;         /* look for downloads to start */
    uint64_t             sched_at;      /* earliest retry due */
    uint64_t             purge_at;
    int                  purging;

    uint64_t             completed;
    uint64_t             failed;
    uint64_t             files_fetched;
};


static int ar_conf_check(void *conf);
static void *ar_create(void *conf, void *zctx);
static void ar_destroy(void **obj);
static int ar_poll_items(void *obj, zmq_pollitem_t **items, long *timeout);
static void ar_process(void *obj, zmq_pollitem_t *items, int n);
static void ar_reload(void *obj);
static void ar_drain(void *obj);
static int ar_finished(void *obj);

static void ar_claim(archiver_t *ar);
static void ar_claim_result(void *arg, PGresult *res);
static void ar_files_result(void *arg, PGresult *res);
static void ar_files_done(void *arg, const char *error);
static int ar_archive_open(ar_archive_t *a);
static void ar_archive_free(ar_archive_t *a);
static void ar_schedule(archiver_t *ar, uint64_t now);
static void ar_start(archiver_t *ar, ar_file_t *f, uint64_t now);
static void ar_transfer_done(void *arg, CURL *easy, CURLcode result);
static void ar_transfer_free(ar_transfer_t *t);
static void ar_transient(ar_file_t *f, const char *error, int64_t retry_after,
    int progress, uint64_t now);
static void ar_permanent(ar_file_t *f, const char *error);
static void ar_append(ar_archive_t *a, uint64_t now);
static void ar_complete(ar_archive_t *a);
static void ar_fail(ar_archive_t *a, const char *error);
static void ar_finish(ar_archive_t *a, const char *status, const char *error,
    int64_t size);
static void ar_sync(ar_archive_t *a);
static void ar_purge(archiver_t *ar);
static void ar_rmdir(const char *dir);


const conf_def_t  archiver_conf_defs[] = {
    { "db", CONF_STRING, offsetof(archiver_conf_t, svc.db), 1, NULL, 0, 0, 0 },
    { "listen", CONF_STRING, offsetof(archiver_conf_t, svc.listen), 1,
      NULL, 0, 0, 0 },
    { "curve_key_file", CONF_STRING,
      offsetof(archiver_conf_t, svc.curve_key_file), 1, NULL, 0, 0, 0 },
    { "curve_clients_file", CONF_STRING,
      offsetof(archiver_conf_t, svc.curve_clients_file), 1, NULL, 0, 0, 0 },
    { "notifier_endpoint", CONF_STRING,
      offsetof(archiver_conf_t, notifier_endpoint), 0, NULL, 0, 0, 0 },
    { "notifier_public_key", CONF_STRING,
      offsetof(archiver_conf_t, notifier_public_key), 0, NULL, 0, 0, 0 },
    { "archive_dir", CONF_STRING, offsetof(archiver_conf_t, archive_dir), 1,
      NULL, 0, 0, 0 },
    { "public_url", CONF_STRING, offsetof(archiver_conf_t, public_url), 1,
      NULL, 0, 0, 0 },
    { "allow_private", CONF_INT, offsetof(archiver_conf_t, allow_private),
      0, NULL, 0, 0, 1 },
    { "max_archives", CONF_INT, offsetof(archiver_conf_t, max_archives), 0,
      NULL, 4, 1, 1000 },
    { "max_downloads", CONF_INT, offsetof(archiver_conf_t, max_downloads),
      0, NULL, 16, 1, 1000 },
    { "per_host", CONF_INT, offsetof(archiver_conf_t, per_host), 0,
      NULL, 6, 1, 1000 },
    { "connect_timeout", CONF_INT,
      offsetof(archiver_conf_t, connect_timeout), 0, NULL, 10, 1, 300 },
    { "low_speed_limit", CONF_INT,
      offsetof(archiver_conf_t, low_speed_limit), 0, NULL, 1024, 1,
      1L << 30 },
    { "low_speed_time", CONF_INT, offsetof(archiver_conf_t, low_speed_time),
      0, NULL, 30, 1, 3600 },
    { "max_redirects", CONF_INT, offsetof(archiver_conf_t, max_redirects),
      0, NULL, 5, 0, 50 },
    { "max_file_size", CONF_INT, offsetof(archiver_conf_t, max_file_size),
      0, NULL, 16L << 30, 1, INT64_MAX / 4 },
    { "max_archive_size", CONF_INT,
      offsetof(archiver_conf_t, max_archive_size), 0, NULL, 64L << 30, 1,
      INT64_MAX / 4 },
    { "max_attempts", CONF_INT, offsetof(archiver_conf_t, max_attempts), 0,
      NULL, 10, 1, 1000 },
    { "retry_base_ms", CONF_INT, offsetof(archiver_conf_t, retry_base_ms),
      0, NULL, 1000, 1, 3600000 },
    { "retry_max_ms", CONF_INT, offsetof(archiver_conf_t, retry_max_ms), 0,
      NULL, 300000, 1, 86400000 },
    { "retry_after_max", CONF_INT,
      offsetof(archiver_conf_t, retry_after_max), 0, NULL, 3600, 0, 86400 },
    { "poll_ms", CONF_INT, offsetof(archiver_conf_t, svc.poll_ms), 0,
      NULL, 3000, 10, 600000 },
    { "fsync", CONF_INT, offsetof(archiver_conf_t, fsync), 0, NULL, 1, 0, 1 },
    { "instance", CONF_STRING, offsetof(archiver_conf_t, svc.instance), 0,
      "archiver", 0, 0, 0 },
    { "heartbeat_name", CONF_STRING,
      offsetof(archiver_conf_t, svc.heartbeat_name), 0, "archiver", 0, 0, 0 },
    { "pid_file", CONF_STRING, offsetof(archiver_conf_t, pid_file), 0,
      NULL, 0, 0, 0 },
    { NULL, 0, 0, 0, NULL, 0, 0, 0 }
};


const dmain_t  archiver_main = {
    "media-archiver", AR_VERSION, archiver_conf_defs,
    sizeof(archiver_conf_t), offsetof(archiver_conf_t, pid_file),
    ar_conf_check, ar_create, ar_destroy, ar_poll_items, ar_process,
    ar_reload, ar_drain, ar_finished
};


static const char  *ar_fstate_names[] = {
    "pending", "downloading", "downloaded", "done", "failed"
};


/* ---- helpers --------------------------------------------------------- */


static char *
ar_path(const char *dir, const char *name)
{
    char    *p;
    size_t   n;

    n = strlen(dir) + strlen(name) + 2;
    p = malloc(n);
    if (p != NULL) {
        snprintf(p, n, "%s/%s", dir, name);
    }

    return p;
}


static void
ar_part_path(ar_file_t *f, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%d.part", f->a->dir, f->idx);
}


/* a header value fit for the rows (and for If-Range): printable ASCII */
static int
ar_printable(const char *s)
{
    for ( ; *s; s++) {
        if ((unsigned char) *s < 0x20 || (unsigned char) *s > 0x7e) {
            return 0;
        }
    }

    return 1;
}


static void
ar_set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = (s != NULL && *s != '\0' && ar_printable(s)) ? strdup(s) : NULL;
}


static void
ar_set_error(ar_file_t *f, const char *error)
{
    char  *p;

    snprintf(f->error, sizeof(f->error), "%s", error ? error : "");

    for (p = f->error; *p; p++) {
        if ((unsigned char) *p < 0x20 || (unsigned char) *p > 0x7e) {
            *p = '?';
        }
    }
}


static void
ar_touch(ar_file_t *f)
{
    ar_archive_t  *a = f->a;

    uint64_t  soon;

    f->dirty = 1;
    a->dirty = 1;
    soon = now_mono_ms() + AR_SYNC_SOON_MS;

    if (a->sync_at == 0 || a->sync_at > soon) {
        a->sync_at = soon;
    }
}


/* ---- config ---------------------------------------------------------- */


static int
ar_conf_check(void *conf)
{
    archiver_conf_t  *c = conf;

    char        pub[MM_CURVE_KEY_LEN + 1];
    char        err[512];
    mm_url_t    u;

    if (svc_conf_check(&c->svc) != 0) {
        return -1;
    }

    if ((c->notifier_endpoint == NULL) != (c->notifier_public_key == NULL)) {
        log_warnx("notifier_endpoint and notifier_public_key go together");
        return -1;
    }

    if (c->notifier_public_key != NULL
        && mm_curvekey_load(c->notifier_public_key, pub, NULL, err,
                            sizeof(err)) != MM_OK)
    {
        log_warnx("notifier_public_key: %s", err);
        return -1;
    }

    if (mm_url_parse(c->public_url, strlen(c->public_url), &u, err,
                     sizeof(err)) != MM_OK)
    {
        log_warnx("public_url: %s", err);
        return -1;
    }

    if (c->archive_dir[0] != '/') {
        log_warnx("archive_dir: an absolute path");
        return -1;
    }

    return 0;
}


/* ---- the object ------------------------------------------------------ */


static void *
ar_create(void *conf, void *zctx)
{
    archiver_conf_t  *c = conf;

    char         *work;
    archiver_t   *ar;

    ar = calloc(1, sizeof(*ar));
    if (ar == NULL) {
        log_warn("calloc");
        return NULL;
    }

    ar->conf = c;

    ar->run = calloc((size_t) c->max_downloads, sizeof(ar_file_t *));
    if (ar->run == NULL) {
        log_warn("calloc");
        goto failed;
    }

    work = ar_path(c->archive_dir, ".work");
    if (work == NULL || mkdirs(work, 0755) != 0) {
        log_warn("%s", work ? work : "malloc");
        free(work);
        goto failed;
    }

    free(work);

    if (svc_open(&ar->svc, &c->svc, zctx, AR_ZAP_DOMAIN, ar_transfer_done, ar)
        != 0)
    {
        goto failed;
    }

    if (c->notifier_endpoint != NULL) {
        ar->notifier = bell_connect(zctx, c->notifier_endpoint,
                                    c->svc.curve_key_file,
                                    c->notifier_public_key);
        if (ar->notifier == NULL) {
            goto failed;
        }
    }

    ar->purge_at = now_mono_ms() + 2000;

    log_info("archives in %s; private addresses %s; %ld downloads at once, "
             "%ld per host", c->archive_dir,
             c->allow_private ? "allowed" : "refused", c->max_downloads,
             c->per_host);

    return ar;

failed:

    ar_destroy((void **) &ar);

    return NULL;
}


static void
ar_destroy(void **obj)
{
    archiver_t  *ar = *obj;

    ar_archive_t  *a, *next;

    if (ar == NULL) {
        return;
    }

    *obj = NULL;

    for (a = ar->archives; a != NULL; a = next) {
        next = a->next;
        ar_archive_free(a);
    }

    if (ar->notifier != NULL) {
        zmq_close(ar->notifier);
    }

    svc_close(&ar->svc);
    free(ar->run);
    free(ar);
}


static void
ar_run_del(archiver_t *ar, ar_file_t *f)
{
    int  i;

    for (i = 0; i < ar->running; i++) {
        if (ar->run[i] == f) {
            ar->run[i] = ar->run[--ar->running];
            return;
        }
    }
}


/* stops a transfer; the part file stays for a resume */
static void
ar_cancel(ar_file_t *f)
{
    ar_transfer_t  *t = f->t;

    if (t == NULL) {
        return;
    }

    curlm_remove(f->a->ar->svc.cm, t->easy);
    ar_transfer_free(t);
    f->t = NULL;
    f->state = AF_PENDING;
    f->a->running--;
    ar_run_del(f->a->ar, f);
    f->a->ar->sched = 1;
}


static void
ar_archive_free(ar_archive_t *a)
{
    int  i;

    for (i = 0; i < a->nfiles; i++) {
        ar_cancel(&a->files[i]);
        free(a->files[i].url);
        free(a->files[i].etag);
        free(a->files[i].last_modified);
    }

    if (a->part_fd >= 0) {
        close(a->part_fd);
    }

    if (a->zip_fd >= 0) {
        close(a->zip_fd);
    }

    mm_zip_destroy(&a->zip);
    mm_names_destroy(&a->names);
    free(a->files);
    free(a->name);
    free(a->dir);
    free(a->tmp_path);
    free(a->final_path);
    free(a);
}


/* ---- claiming and loading -------------------------------------------- */


static void
ar_claim(archiver_t *ar)
{
    char           lease[16];
    const char    *params[3];
    mm_buf_t       ids;
    ar_archive_t  *a;

    mm_buf_init(&ids);
    mm_buf_puts(&ids, "{");

    for (a = ar->archives; a != NULL; a = a->next) {
        mm_buf_printf(&ids, "%s%" PRId64, ids.len > 1 ? "," : "", a->id);
    }

    mm_buf_puts(&ids, "}");

    if (ids.failed) {
        mm_buf_free(&ids);
        return;
    }

    snprintf(lease, sizeof(lease), "%d", AR_LEASE);
    params[0] = ar->conf->svc.instance;
    params[1] = ids.data;
    params[2] = lease;

    (void) svc_claim(&ar->svc, ar_claim_sql, 3, params, ar_claim_result, ar);

    mm_buf_free(&ids);
}


static void
ar_claim_result(void *arg, PGresult *res)
{
    archiver_t  *ar = arg;

    char            idbuf[32];
    int64_t         id;
    const char     *params[1];
    ar_archive_t   *a, *x;

    if (PQntuples(res) != 1) {
        return;
    }

    id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);

    for (x = ar->archives; x != NULL && x->id != id; x = x->next) {
        /* a resent claim may return one we have */
    }

    if (x != NULL) {
        return;
    }

    if (!mm_archive_hash_valid(PQgetvalue(res, 0, 1),
                               (size_t) PQgetlength(res, 0, 1)))
    {
        log_warnx("archive %" PRId64 ": bad hash in the row", id);
        return;
    }

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        log_warn("calloc");
        return;
    }

    a->ar = ar;
    a->id = id;
    a->zip_fd = -1;
    a->part_fd = -1;
    memcpy(a->hash, PQgetvalue(res, 0, 1), MM_ARCHIVE_HASH_LEN);
    a->name = strdup(PQgetvalue(res, 0, 2));
    a->fail_on_error = strcmp(PQgetvalue(res, 0, 3), "fail") == 0;
    a->zip_pos_db = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
    a->state = AA_LOADING;

    if (a->name == NULL) {
        free(a);
        return;
    }

    a->next = ar->archives;
    ar->archives = a;
    ar->nactive++;

    snprintf(idbuf, sizeof(idbuf), "%" PRId64, id);
    params[0] = idbuf;

    if (pgq_push(ar->svc.q, ar_files_sql, 1, params, ar_files_result,
                 ar_files_done, a) != 0)
    {
        a->state = AA_DEAD;
    }

    /* there may be more */
    ar->svc.rang = 1;

    log_info("archive %s (%" PRId64 "): claimed", a->hash, a->id);
}


static int64_t
ar_int(PGresult *res, int row, int col, int64_t def)
{
    if (PQgetisnull(res, row, col)) {
        return def;
    }

    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}


static void
ar_files_result(void *arg, PGresult *res)
{
    ar_archive_t  *a = arg;

    int           i, rows;
    char          err[256];
    uint64_t      now;
    mm_url_t      u;
    ar_file_t    *f;
    const char   *st;

    if (a->files != NULL) {
        return;                         /* a resent statement */
    }

    rows = PQntuples(res);
    if (rows == 0) {
        return;
    }

    a->files = calloc((size_t) rows, sizeof(ar_file_t));
    if (a->files == NULL) {
        log_warn("calloc");
        return;
    }

    a->nfiles = rows;
    now = now_mono_ms();

    for (i = 0; i < rows; i++) {
        f = &a->files[i];
        f->a = a;
        f->idx = (int) ar_int(res, i, 0, i);
        f->url = strdup(PQgetvalue(res, i, 1));
        f->total = -1;

        if (f->url == NULL) {
            log_warn("strdup");
            a->state = AA_DEAD;
            return;
        }

        if (!PQgetisnull(res, i, 2)) {
            snprintf(f->cand, sizeof(f->cand), "%s", PQgetvalue(res, i, 2));
            f->cand_len = strlen(f->cand);
        }

        st = PQgetvalue(res, i, 3);
        f->bytes = ar_int(res, i, 4, 0);
        f->total = ar_int(res, i, 5, -1);
        ar_set_str(&f->etag, PQgetisnull(res, i, 6)
                             ? NULL : PQgetvalue(res, i, 6));
        ar_set_str(&f->last_modified, PQgetisnull(res, i, 7)
                                      ? NULL : PQgetvalue(res, i, 7));
        f->attempts = (long) ar_int(res, i, 8, 0);

        if (!PQgetisnull(res, i, 9)) {
            ar_set_error(f, PQgetvalue(res, i, 9));
        }

        f->next_at = now + (uint64_t) ar_int(res, i, 15, 0);

        if (strcmp(st, "done") == 0) {
            f->state = AF_DONE;
            memcpy(f->name, f->cand, sizeof(f->name));
            f->name_len = f->cand_len;
            f->zip.name = f->name;
            f->zip.name_len = f->name_len;
            f->zip.offset = (uint64_t) ar_int(res, i, 10, 0);
            f->zip.crc = (uint32_t) ar_int(res, i, 11, 0);
            f->zip.size = (uint64_t) ar_int(res, i, 12, 0);
            f->zip.flags = (unsigned) ar_int(res, i, 13, 0);
            f->zip.mtime = ar_int(res, i, 14, 0);
            f->bytes = (int64_t) f->zip.size;

        } else if (strcmp(st, "failed") == 0) {
            f->state = AF_FAILED;

        } else if (strcmp(st, "downloaded") == 0
                   && !PQgetisnull(res, i, 11) && !PQgetisnull(res, i, 12))
        {
            /* checked against the part file in ar_archive_open() */
            f->state = AF_DOWNLOADED;
            f->crc = (uint32_t) ar_int(res, i, 11, 0);
            f->crc_known = 1;
            f->total = ar_int(res, i, 12, 0);
            f->mtime = ar_int(res, i, 14, 0);

        } else {
            f->state = AF_PENDING;
        }

        if (mm_url_parse(f->url, strlen(f->url), &u, err, sizeof(err))
            != MM_OK)
        {
            if (f->state == AF_PENDING) {
                ar_permanent(f, err);
            }
            continue;
        }

        snprintf(f->host, sizeof(f->host), "%s:%u", u.host, u.port);
    }
}


static void
ar_files_done(void *arg, const char *error)
{
    ar_archive_t  *a = arg;

    if (a->state != AA_LOADING) {
        return;
    }

    if (error != NULL || a->files == NULL) {
        log_warnx("archive %s: cannot load its files: %s", a->hash,
                  error ? error : "no rows");
        /* the lease runs out; a later claim tries again */
        a->state = AA_DEAD;
        return;
    }

    if (ar_archive_open(a) != 0) {
        a->state = AA_DEAD;
        return;
    }

    a->state = AA_ACTIVE;
    a->ar->sched = 1;
}


/*
 * The work directory and the temporary ZIP, cut back to what the row
 * records; the writer restored with the entries already in it.
 */
static int
ar_archive_open(ar_archive_t *a)
{
    archiver_conf_t  *c = a->ar->conf;

    int              i, fd, done, failed;
    char             part[4096], rel[128];
    struct stat      sb;
    ar_file_t       *f;
    mm_zip_conf_t    zc;

    snprintf(rel, sizeof(rel), ".work/%s", a->hash);
    a->dir = ar_path(c->archive_dir, rel);
    snprintf(rel, sizeof(rel), "%s.zip", a->hash);
    a->final_path = ar_path(c->archive_dir, rel);
    a->tmp_path = a->dir ? ar_path(a->dir, "archive.zip.tmp") : NULL;

    if (a->dir == NULL || a->final_path == NULL || a->tmp_path == NULL) {
        log_warn("malloc");
        return -1;
    }

    if (mkdirs(a->dir, 0755) != 0) {
        log_warn("%s", a->dir);
        return -1;
    }

    /* finished on disk but not in the row (killed in between): again */
    if (stat(a->tmp_path, &sb) != 0 && stat(a->final_path, &sb) == 0) {
        if (rename(a->final_path, a->tmp_path) != 0) {
            log_warn("rename %s", a->final_path);
            return -1;
        }
        log_info("archive %s: finishing again", a->hash);
    }

    a->zip_fd = open(a->tmp_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (a->zip_fd < 0 || fstat(a->zip_fd, &sb) != 0) {
        log_warn("%s", a->tmp_path);
        return -1;
    }

    if (sb.st_size < a->zip_pos_db) {
        /* the ZIP lost what the row says it holds: build it again */
        log_warnx("archive %s: %s has %lld bytes, %" PRId64 " expected; "
                  "starting the ZIP over", a->hash, a->tmp_path,
                  (long long) sb.st_size, a->zip_pos_db);

        for (i = 0; i < a->nfiles; i++) {
            f = &a->files[i];
            if (f->state == AF_DONE) {
                f->state = AF_PENDING;
                f->bytes = 0;
                f->name_len = 0;
                ar_touch(f);
            }
        }

        a->zip_pos_db = 0;
        a->sync_dirty_zip = 1;
    }

    if (ftruncate(a->zip_fd, a->zip_pos_db) != 0) {
        log_warn("%s", a->tmp_path);
        return -1;
    }

    memset(&zc, 0, sizeof(zc));
    zc.write = mm_zip_fd_write;
    zc.ctx = &a->zip_fd;

    if (mm_zip_new(&a->zip, &zc, (uint64_t) a->zip_pos_db) != MM_OK
        || mm_names_new(&a->names) != MM_OK)
    {
        log_warnx("archive %s: out of memory", a->hash);
        return -1;
    }

    done = 0;
    failed = 0;
    a->next_zip = 0;

    for (i = 0; i < a->nfiles; i++) {
        f = &a->files[i];

        switch (f->state) {

        case AF_DONE:
            if (f->name_len == 0
                || mm_zip_restore(a->zip, &f->zip) != MM_OK
                || mm_names_reserve(a->names, f->name, f->name_len) != MM_OK)
            {
                log_warnx("archive %s: entry %d cannot be restored",
                          a->hash, f->idx);
                return -1;
            }
            a->bytes_in += f->bytes;
            done++;
            break;

        case AF_FAILED:
            failed++;
            break;

        case AF_DOWNLOADED:
            ar_part_path(f, part, sizeof(part));
            if (stat(part, &sb) != 0 || sb.st_size != f->total) {
                log_info("archive %s: file %d must be fetched again",
                         a->hash, f->idx);
                f->state = AF_PENDING;
                f->crc_known = 0;
                f->bytes = stat(part, &sb) == 0 ? sb.st_size : 0;
                ar_touch(f);
            } else {
                f->bytes = f->total;
            }
            a->bytes_in += f->bytes;
            break;

        default:
            /* the part file tells how much is here */
            ar_part_path(f, part, sizeof(part));
            fd = open(part, O_RDONLY | O_CLOEXEC);
            f->bytes = 0;
            if (fd >= 0) {
                if (fstat(fd, &sb) == 0) {
                    f->bytes = sb.st_size;
                }
                close(fd);
            }
            f->crc_known = 0;
            a->bytes_in += f->bytes;
            break;
        }
    }

    /* entries in the ZIP and failures before them are behind us */
    while (a->next_zip < a->nfiles
           && (a->files[a->next_zip].state == AF_DONE
               || a->files[a->next_zip].state == AF_FAILED))
    {
        a->next_zip++;
    }

    if (mm_zip_pos(a->zip) != (uint64_t) a->zip_pos_db) {
        log_warnx("archive %s: entries end at %" PRIu64 ", the row says %"
                  PRId64, a->hash, mm_zip_pos(a->zip), a->zip_pos_db);
        return -1;
    }

    log_info("archive %s: %d files, %d in the ZIP (%" PRId64 " bytes), %d "
             "failed", a->hash, a->nfiles, done, a->zip_pos_db, failed);

    if (failed && a->fail_on_error) {
        ar_fail(a, "a file could not be fetched (on_error: fail)");
    }

    a->synced_at = now_mono_ms();

    return 0;
}


/* ---- downloads ------------------------------------------------------- */


static void
ar_schedule(archiver_t *ar, uint64_t now)
{
    int            i, j, n;
    uint64_t       due;
    ar_file_t     *f;
    ar_archive_t  *a;

    ar->sched = 0;
    ar->sched_at = 0;

    for (a = ar->archives; a != NULL; a = a->next) {
        if (a->state != AA_ACTIVE || a->failing) {
            continue;
        }

        for (i = 0; i < a->nfiles; i++) {
            f = &a->files[i];

            if (f->state != AF_PENDING) {
                continue;
            }

            if (f->next_at > now) {
                due = f->next_at;
                if (ar->sched_at == 0 || due < ar->sched_at) {
                    ar->sched_at = due;
                }
                continue;
            }

            if (ar->running >= ar->conf->max_downloads) {
                return;
            }

            /* the per-host limit, over all archives */
            n = 0;
            for (j = 0; j < ar->running; j++) {
                if (strcmp(ar->run[j]->host, f->host) == 0) {
                    n++;
                }
            }

            if (n >= ar->conf->per_host) {
                continue;
            }

            ar_start(ar, f, now);
        }
    }
}


static size_t
ar_header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    ar_transfer_t  *t = userdata;

    char     *v, *end, *p;
    size_t    len, n, vlen;

    len = size * nitems;
    end = buf + len;

    while (end > buf && (end[-1] == '\n' || end[-1] == '\r')) {
        end--;
    }

    n = (size_t) (end - buf);

    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after a redirect): forget the last one's */
        t->status = 0;
        p = memchr(buf, ' ', n);
        if (p != NULL) {
            t->status = atoi(p + 1);
        }
        t->content_length = -1;
        t->etag[0] = '\0';
        t->last_modified[0] = '\0';
        t->content_range[0] = '\0';
        t->retry_after[0] = '\0';
        t->disposition[0] = '\0';
        t->disposition_len = 0;
        return len;
    }

    v = memchr(buf, ':', n);
    if (v == NULL) {
        return len;
    }

    p = v + 1;
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    vlen = (size_t) (end - p);

#define AR_HDR(name)                                                          \
    ((size_t) (v - buf) == sizeof(name) - 1                                   \
     && strncasecmp(buf, name, sizeof(name) - 1) == 0)

#define AR_COPY(dst)                                                          \
    do {                                                                      \
        size_t  k = vlen < sizeof(dst) - 1 ? vlen : sizeof(dst) - 1;          \
        memcpy(dst, p, k);                                                    \
        dst[k] = '\0';                                                        \
    } while (0)

    if (AR_HDR("ETag")) {
        if (vlen < sizeof(t->etag)) {
            AR_COPY(t->etag);
        }

    } else if (AR_HDR("Last-Modified")) {
        AR_COPY(t->last_modified);

    } else if (AR_HDR("Content-Range")) {
        AR_COPY(t->content_range);

    } else if (AR_HDR("Retry-After")) {
        AR_COPY(t->retry_after);

    } else if (AR_HDR("Content-Disposition")) {
        AR_COPY(t->disposition);
        t->disposition_len = strlen(t->disposition);

    } else if (AR_HDR("Content-Length")) {
        char  num[32];

        AR_COPY(num);
        t->content_length = (num[0] >= '0' && num[0] <= '9')
                            ? strtoll(num, NULL, 10) : -1;
    }

#undef AR_HDR
#undef AR_COPY

    return len;
}


/*
 * The first body byte (or the end, for an empty body): is this the
 * resource, from where we asked? 0 carry on, -1 abort (t->abort says why).
 */
static int
ar_decide(ar_transfer_t *t)
{
    ar_file_t     *f = t->f;
    ar_archive_t  *a = f->a;

    char          *eff;
    int64_t        first, last, total, mtime;
    archiver_conf_t  *c = a->ar->conf;

    t->decided = 1;

    if (t->status < 200 || t->status > 299) {
        t->discard = 1;
        return 0;
    }

    if (t->status == 206) {
        if (mm_fetch_content_range(t->content_range,
                                   strlen(t->content_range), &first, &last,
                                   &total) != MM_OK
            || first != t->start)
        {
            log_warnx("archive %s: file %d: a 206 with Content-Range "
                      "\"%s\" for bytes %" PRId64 "-: starting over",
                      a->hash, f->idx, t->content_range, t->start);
            t->abort = AT_BAD_RANGE;
            return -1;
        }

        f->total = total;

    } else {
        if (t->start > 0 || f->bytes > 0) {
            /* no Range support, or the file changed (If-Range) */
            log_info("archive %s: file %d: a full answer to a ranged "
                     "request: starting over", a->hash, f->idx);

            if (ftruncate(t->fd, 0) != 0) {
                t->abort = AT_WRITE;
                t->err = errno;
                return -1;
            }

            a->bytes_in -= f->bytes;
            f->bytes = 0;
            f->crc = 0;
            f->crc_known = 1;
            t->start = 0;
        }

        f->total = t->content_length;
    }

    /* the validators of this representation (none: none) */
    ar_set_str(&f->etag, t->etag);
    ar_set_str(&f->last_modified, t->last_modified);

    mtime = 0;
    if (t->last_modified[0] != '\0'
        && mm_fetch_http_date(t->last_modified, strlen(t->last_modified),
                              &mtime) != MM_OK)
    {
        mtime = 0;
    }
    f->mtime = mtime;

    eff = NULL;
    curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &eff);
    if (eff == NULL) {
        eff = f->url;
    }

    f->cand_len = mm_name_pick(t->disposition_len ? t->disposition : NULL,
                               t->disposition_len, eff, strlen(eff),
                               f->cand);

    if (f->total > c->max_file_size) {
        t->abort = AT_TOO_BIG;
        return -1;
    }

    if (f->total > 0
        && a->bytes_in - f->bytes + f->total > c->max_archive_size)
    {
        t->abort = AT_ARCHIVE_TOO_BIG;
        return -1;
    }

    ar_touch(f);

    return 0;
}


static size_t
ar_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    ar_transfer_t  *t = userdata;
    ar_file_t      *f = t->f;
    ar_archive_t   *a = f->a;

    size_t            len, off;
    ssize_t           n;
    archiver_conf_t  *c = a->ar->conf;

    len = size * nmemb;

    if (!t->decided && ar_decide(t) != 0) {
        return 0;
    }

    if (t->discard) {
        t->discarded += len;
        return t->discarded > AR_DISCARD_MAX ? 0 : len;
    }

    if (f->bytes + (int64_t) len > c->max_file_size) {
        t->abort = AT_TOO_BIG;
        return 0;
    }

    if (a->bytes_in + (int64_t) len > c->max_archive_size) {
        t->abort = AT_ARCHIVE_TOO_BIG;
        return 0;
    }

    for (off = 0; off < len; off += (size_t) n) {
        n = pwrite(t->fd, ptr + off, len - off, (off_t) f->bytes + off);
        if (n < 0) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }
            t->abort = AT_WRITE;
            t->err = errno;
            return 0;
        }
    }

    f->crc = (uint32_t) crc32_z(f->crc, (const unsigned char *) ptr, len);
    f->bytes += (int64_t) len;
    a->bytes_in += (int64_t) len;
    t->received += (int64_t) len;
    f->dirty = 1;
    a->dirty = 1;

    return len;
}


static void
ar_transfer_free(ar_transfer_t *t)
{
    if (t->easy != NULL) {
        curl_easy_cleanup(t->easy);
    }

    if (t->fd >= 0) {
        close(t->fd);
    }

    curl_slist_free_all(t->headers);
    free(t);
}


static void
ar_start(archiver_t *ar, ar_file_t *f, uint64_t now)
{
    ar_archive_t  *a = f->a;

    char              part[4096], range[64] = "", hdr[400];
    struct stat       sb;
    const char       *validator;
    ar_transfer_t    *t;
    mm_status_t       st;
    struct curl_slist *l;
    archiver_conf_t  *c = ar->conf;

    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        log_warn("calloc");
        f->next_at = now + AR_RETRY_IO_MS;
        return;
    }

    t->f = f;
    t->content_length = -1;
    ar_part_path(f, part, sizeof(part));

    t->fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (t->fd < 0 || fstat(t->fd, &sb) != 0) {
        log_warn("%s", part);
        ar_transfer_free(t);
        f->next_at = now + AR_RETRY_IO_MS;
        return;
    }

    if (sb.st_size != f->bytes) {
        a->bytes_in += sb.st_size - f->bytes;
        f->bytes = sb.st_size;
        f->crc_known = 0;
    }

    validator = mm_fetch_if_range(f->etag, f->last_modified);

    if (f->bytes > 0 && validator == NULL) {
        /* nothing to check a resume against: from the start */
        if (ftruncate(t->fd, 0) != 0) {
            log_warn("%s", part);
            ar_transfer_free(t);
            f->next_at = now + AR_RETRY_IO_MS;
            return;
        }
        a->bytes_in -= f->bytes;
        f->bytes = 0;
        f->crc = 0;
        f->crc_known = 1;
    }

    if (f->bytes == 0) {
        f->crc = 0;
        f->crc_known = 1;
    }

    if (!f->crc_known) {
        f->crc = 0;
        st = mm_zip_crc_fd(t->fd, 0, (uint64_t) f->bytes, &f->crc);
        if (st != MM_OK) {
            log_warn("%s: CRC", part);
            ar_transfer_free(t);
            f->next_at = now + AR_RETRY_IO_MS;
            return;
        }
        f->crc_known = 1;
    }

    t->start = f->bytes;

    t->easy = curl_easy_init();
    if (t->easy == NULL) {
        ar_transfer_free(t);
        f->next_at = now + AR_RETRY_IO_MS;
        return;
    }

    if (t->start > 0) {
        snprintf(range, sizeof(range), "%" PRId64 "-", t->start);
        curl_easy_setopt(t->easy, CURLOPT_RANGE, range);

        snprintf(hdr, sizeof(hdr), "If-Range: %s", validator);
        l = curl_slist_append(NULL, hdr);
        if (l == NULL) {
            ar_transfer_free(t);
            f->next_at = now + AR_RETRY_IO_MS;
            return;
        }
        t->headers = l;
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    }

    curl_easy_setopt(t->easy, CURLOPT_URL, f->url);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_USERAGENT,
                     "ngx_media-archiver/" AR_VERSION);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION,
                     c->max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(t->easy, CURLOPT_MAXREDIRS, c->max_redirects);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT, c->connect_timeout);
    curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_LIMIT, c->low_speed_limit);
    curl_easy_setopt(t->easy, CURLOPT_LOW_SPEED_TIME, c->low_speed_time);
    curl_easy_setopt(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(t->easy, CURLOPT_BUFFERSIZE, (long) AR_BUFFER_SIZE);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, ar_header_cb);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, ar_write_cb);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);

    t->guard.on = !c->allow_private;
    curlm_guard(t->easy, &t->guard);

    if (curlm_add(ar->svc.cm, t->easy) != 0) {
        ar_transfer_free(t);
        f->next_at = now + AR_RETRY_IO_MS;
        return;
    }

    f->t = t;
    f->state = AF_RUNNING;
    f->attempts++;
    a->running++;
    ar->run[ar->running++] = f;
    ar_touch(f);

    log_debug("archive %s: file %d: GET %s%s%s", a->hash, f->idx, f->url,
              t->start ? " from " : "", t->start ? range : "");
}


/* the end of a transfer: what it means for the file */
static void
ar_transfer_done(void *arg, CURL *easy, CURLcode result)
{
    archiver_t  *ar = arg;

    int             progress;
    char            error[512];
    long            status;
    char           *priv;
    int64_t         first, last, total, ra;
    uint64_t        now;
    ar_file_t      *f;
    ar_archive_t   *a;
    ar_transfer_t  *t;
    mm_fetch_class_t  cls;

    priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    t = (ar_transfer_t *) priv;
    f = t->f;
    a = f->a;

    status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (t->status == 0) {
        t->status = (int) status;
    }

    if (result == CURLE_OK && !t->decided) {
        /* no body came: decide on the headers alone */
        (void) ar_decide(t);
    }

    curlm_remove(ar->svc.cm, easy);

    progress = t->received > 0;
    f->t = NULL;
    f->state = AF_PENDING;
    a->running--;
    ar_run_del(ar, f);
    ar->sched = 1;
    now = now_mono_ms();

    if (t->guard.refused) {
        snprintf(error, sizeof(error), "refused: %s is a private address "
                 "(the SSRF guard)", t->guard.addr);
        ar_transfer_free(t);
        ar_permanent(f, error);
        return;
    }

    switch (t->abort) {

    case AT_TOO_BIG:
        snprintf(error, sizeof(error), "larger than the limit of %ld bytes "
                 "per file", ar->conf->max_file_size);
        ar_transfer_free(t);
        ar_permanent(f, error);
        return;

    case AT_ARCHIVE_TOO_BIG:
        snprintf(error, sizeof(error), "the archive would pass its limit of "
                 "%ld bytes", ar->conf->max_archive_size);
        ar_transfer_free(t);
        ar_permanent(f, error);
        return;

    case AT_BAD_RANGE:
        if (ftruncate(t->fd, 0) == 0) {
            a->bytes_in -= f->bytes;
            f->bytes = 0;
            f->crc = 0;
            f->crc_known = 1;
        }
        ar_transfer_free(t);
        ar_transient(f, "the server answered another range", -1, 0, now);
        return;

    case AT_WRITE:
        snprintf(error, sizeof(error), "writing the download: %s",
                 strerror(t->err));
        log_warnx("archive %s: file %d: %s", a->hash, f->idx, error);
        ar_transfer_free(t);
        ar_transient(f, error, -1, progress, now);
        return;

    default:
        break;
    }

    if (result != CURLE_OK && !(result == CURLE_WRITE_ERROR && t->discard)) {
        snprintf(error, sizeof(error), "%s", t->errbuf[0]
                 ? t->errbuf : curl_easy_strerror(result));
        ar_transfer_free(t);

        switch (result) {
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
            ar_permanent(f, error);
            break;
        default:
            ar_transient(f, error, -1, progress, now);
            break;
        }
        return;
    }

    if (status >= 200 && status <= 299) {
        if (f->total >= 0 && f->bytes != f->total) {
            snprintf(error, sizeof(error), "the body ended after %" PRId64
                     " of %" PRId64 " bytes", f->bytes, f->total);
            ar_transfer_free(t);
            ar_transient(f, error, -1, progress, now);
            return;
        }

        ar_transfer_free(t);

        f->total = f->bytes;
        f->state = AF_DOWNLOADED;
        f->error[0] = '\0';
        f->streak = 0;
        ar->files_fetched++;
        ar_touch(f);

        log_debug("archive %s: file %d: %" PRId64 " bytes, CRC %08x",
                  a->hash, f->idx, f->bytes, f->crc);
        return;
    }

    if (status == 416) {
        if (mm_fetch_content_range(t->content_range,
                                   strlen(t->content_range), &first, &last,
                                   &total) == MM_OK
            && first < 0 && total == t->start && total > 0)
        {
            /* everything was here already */
            ar_transfer_free(t);
            f->total = f->bytes;
            f->state = AF_DOWNLOADED;
            f->error[0] = '\0';
            ar_touch(f);
            return;
        }

        if (ftruncate(t->fd, 0) == 0) {
            a->bytes_in -= f->bytes;
            f->bytes = 0;
            f->crc = 0;
            f->crc_known = 1;
        }

        ar_transfer_free(t);
        ar_transient(f, "HTTP 416: starting over", -1, 0, now);
        return;
    }

    snprintf(error, sizeof(error), "HTTP %ld", status);

    ra = -1;
    if (t->retry_after[0] != '\0'
        && mm_fetch_retry_after(t->retry_after, strlen(t->retry_after),
                                (int64_t) time(NULL), &ra) != MM_OK)
    {
        ra = -1;
    }

    ar_transfer_free(t);

    cls = mm_fetch_status_class((int) status);

    if (cls == MM_FETCH_RETRY) {
        ar_transient(f, error, ra, 0, now);

    } else {
        ar_permanent(f, error);
    }
}


static void
ar_transient(ar_file_t *f, const char *error, int64_t retry_after,
    int progress, uint64_t now)
{
    archiver_conf_t  *c = f->a->ar->conf;

    char      msg[300];
    uint64_t  delay, ra;

    /* a try that brought bytes is a fresh start for the backoff */
    f->streak = progress ? 1 : f->streak + 1;

    if (f->streak > c->max_attempts) {
        snprintf(msg, sizeof(msg), "%s (gave up after %ld attempts)", error,
                 f->attempts);
        ar_permanent(f, msg);
        return;
    }

    delay = mm_fetch_backoff_ms((unsigned) f->streak,
                                (uint64_t) c->retry_base_ms,
                                (uint64_t) c->retry_max_ms, rand_unit());

    if (retry_after >= 0) {
        ra = (uint64_t) (retry_after > c->retry_after_max
                         ? c->retry_after_max : retry_after) * 1000;
        if (ra > delay) {
            delay = ra;
        }
    }

    f->state = AF_PENDING;
    f->next_at = now + delay;
    ar_set_error(f, error);
    ar_touch(f);

    log_info("archive %s: file %d: %s; try %ld in %" PRIu64 " ms",
             f->a->hash, f->idx, error, f->attempts + 1, delay);
}


static void
ar_permanent(ar_file_t *f, const char *error)
{
    ar_archive_t  *a = f->a;

    char  part[4096];

    f->state = AF_FAILED;
    ar_set_error(f, error);
    ar_touch(f);

    if (a->dir != NULL) {
        ar_part_path(f, part, sizeof(part));
        (void) unlink(part);
    }

    a->bytes_in -= f->bytes;
    f->bytes = 0;

    log_warnx("archive %s: file %d (%s) failed: %s", a->hash, f->idx,
              f->url, f->error);

    if (a->fail_on_error && !a->failing) {
        char  msg[400];

        snprintf(msg, sizeof(msg), "file %d (%.150s) failed: %.200s", f->idx,
                 f->url, f->error);
        ar_fail(a, msg);
    }
}


/* ---- the ZIP --------------------------------------------------------- */


/* copies len bytes of in from in_off to out at out_off */
static int
ar_copy(int in, uint64_t in_off, int out, uint64_t out_off, size_t len)
{
    char     *buf;
    loff_t    io, oo;
    ssize_t   n, w;
    size_t    k;

    io = (loff_t) in_off;
    oo = (loff_t) out_off;

    while (len > 0) {
        n = copy_file_range(in, &io, out, &oo, len, 0);

        if (n > 0) {
            len -= (size_t) n;
            continue;
        }

        if (n == 0) {
            errno = EIO;            /* the part file is short */
            return -1;
        }

        if (errno == EINTR) {
            continue;
        }

        if (errno != EXDEV && errno != EINVAL && errno != ENOSYS
            && errno != EOPNOTSUPP)
        {
            return -1;
        }

        /* no in-kernel copy here: read and write */
        buf = malloc(1 << 20);
        if (buf == NULL) {
            return -1;
        }

        while (len > 0) {
            k = len < (1 << 20) ? len : (1 << 20);
            n = pread(in, buf, k, io);
            if (n <= 0) {
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n == 0) {
                    errno = EIO;
                }
                free(buf);
                return -1;
            }

            for (k = 0; k < (size_t) n; k += (size_t) w) {
                w = pwrite(out, buf + k, (size_t) n - k, oo + (off_t) k);
                if (w < 0) {
                    if (errno == EINTR) {
                        w = 0;
                        continue;
                    }
                    free(buf);
                    return -1;
                }
            }

            io += n;
            oo += n;
            len -= (size_t) n;
        }

        free(buf);
    }

    return 0;
}


/*
 * Appends the downloaded files that are next in request order, a chunk per
 * call, so the loop keeps serving the downloads.
 */
static void
ar_append(ar_archive_t *a, uint64_t now)
{
    char             part[4096];
    size_t           chunk;
    int64_t          mtime;
    uint64_t         pos;
    struct stat      sb;
    ar_file_t       *f;
    mm_status_t      st;
    mm_zip_entry_t   rec;

    if (a->append_at > now) {
        return;
    }

    while (a->next_zip < a->nfiles) {
        f = &a->files[a->next_zip];

        if (f->state == AF_DONE || f->state == AF_FAILED) {
            a->next_zip++;
            continue;
        }

        if (f->state != AF_DOWNLOADED) {
            return;
        }

        if (a->appending == NULL) {
            ar_part_path(f, part, sizeof(part));
            a->part_fd = open(part, O_RDONLY | O_CLOEXEC);

            if (a->part_fd < 0 || fstat(a->part_fd, &sb) != 0
                || sb.st_size != f->total)
            {
                log_warnx("archive %s: file %d: the download is gone or "
                          "short; fetching it again", a->hash, f->idx);
                if (a->part_fd >= 0) {
                    close(a->part_fd);
                    a->part_fd = -1;
                }
                f->state = AF_PENDING;
                f->crc_known = 0;
                f->next_at = now;
                a->ar->sched = 1;
                ar_touch(f);
                return;
            }

            if (f->cand_len == 0) {
                f->cand_len = mm_name_pick(NULL, 0, f->url, strlen(f->url),
                                           f->cand);
            }

            memcpy(f->name, f->cand, sizeof(f->name));
            f->name_len = f->cand_len;

            if (mm_names_add(a->names, f->name, &f->name_len) != MM_OK) {
                log_warnx("archive %s: out of memory", a->hash);
                close(a->part_fd);
                a->part_fd = -1;
                a->append_at = now + AR_RETRY_IO_MS;
                return;
            }

            mtime = f->mtime > 0 ? f->mtime : (int64_t) time(NULL);
            f->mtime = mtime;

            st = mm_zip_entry_begin(a->zip, f->name, f->name_len,
                                    (uint64_t) f->total, mtime);
            if (st != MM_OK) {
                goto io_failed;
            }

            a->appending = f;
            a->copied = 0;
        }

        chunk = (uint64_t) f->total - a->copied > AR_COPY_CHUNK
                ? AR_COPY_CHUNK : (size_t) ((uint64_t) f->total - a->copied);

        pos = mm_zip_pos(a->zip) + a->copied;

        if (chunk > 0
            && ar_copy(a->part_fd, a->copied, a->zip_fd, pos, chunk) != 0)
        {
            st = MM_EIO;
            goto io_failed;
        }

        a->copied += chunk;

        if (a->copied < (uint64_t) f->total) {
            return;                     /* more on the next turn */
        }

        st = mm_zip_entry_written(a->zip, (uint64_t) f->total, f->crc);
        if (st == MM_OK) {
            st = mm_zip_entry_end(a->zip, &rec);
        }

        if (st != MM_OK) {
            goto io_failed;
        }

        close(a->part_fd);
        a->part_fd = -1;
        a->appending = NULL;

        f->zip = rec;
        f->zip.name = f->name;
        f->state = AF_DONE;
        f->unlink_part = 1;
        a->sync_dirty_zip = 1;
        a->next_zip++;
        ar_touch(f);

        log_debug("archive %s: entry %d \"%s\" at %" PRIu64 ", %" PRId64
                  " bytes", a->hash, f->idx, f->name, rec.offset, f->total);
    }

    return;

io_failed:

    /* local trouble (disk full...): drop the entry, try again later */
    log_warnx("archive %s: writing %s: %s%s%s", a->hash, a->tmp_path,
              mm_strstatus(st), st == MM_EIO ? ": " : "",
              st == MM_EIO ? strerror(errno) : "");

    if (a->appending != NULL) {
        mm_zip_entry_abort(a->zip);
        a->appending = NULL;
    }

    if (a->part_fd >= 0) {
        close(a->part_fd);
        a->part_fd = -1;
    }

    /* the name goes back into the pool on the next try: rebuild the set */
    mm_names_destroy(&a->names);
    if (mm_names_new(&a->names) == MM_OK) {
        int  i;

        for (i = 0; i < a->nfiles; i++) {
            if (a->files[i].state == AF_DONE) {
                (void) mm_names_reserve(a->names, a->files[i].name,
                                        a->files[i].name_len);
            }
        }
    }

    f->name_len = 0;
    f->name[0] = '\0';
    a->append_at = now + AR_RETRY_IO_MS;
}


/* all files settled, the rows in step: central directory, rename, row */
static void
ar_complete(ar_archive_t *a)
{
    int           i, done;
    uint64_t      size;
    mm_status_t   st;

    done = 0;
    for (i = 0; i < a->nfiles; i++) {
        if (a->files[i].state == AF_DONE) {
            done++;
        }
    }

    if (done == 0) {
        ar_fail(a, "no file could be fetched");
        return;
    }

    st = mm_zip_finish(a->zip, &size);
    if (st != MM_OK) {
        log_warnx("archive %s: central directory: %s: %s", a->hash,
                  mm_strstatus(st), strerror(errno));
        a->append_at = now_mono_ms() + AR_RETRY_IO_MS;
        mm_zip_destroy(&a->zip);
        /* rebuilt from the records on the next try */
        close(a->zip_fd);
        a->zip_fd = -1;
        a->state = AA_DEAD;
        return;
    }

    if (ftruncate(a->zip_fd, (off_t) size) != 0
        || (a->ar->conf->fsync && fdatasync(a->zip_fd) != 0))
    {
        log_warn("archive %s: %s", a->hash, a->tmp_path);
        a->state = AA_DEAD;
        return;
    }

    close(a->zip_fd);
    a->zip_fd = -1;

    if (rename(a->tmp_path, a->final_path) != 0) {
        log_warn("archive %s: rename %s", a->hash, a->final_path);
        a->state = AA_DEAD;
        return;
    }

    log_info("archive %s: complete, %d of %d files, %" PRIu64 " bytes",
             a->hash, done, a->nfiles, size);

    ar_finish(a, "completed", NULL, (int64_t) size);
}


static void
ar_fail(ar_archive_t *a, const char *error)
{
    if (a->failing) {
        return;
    }

    a->failing = 1;
    snprintf(a->fail_error, sizeof(a->fail_error), "%s", error);

    log_warnx("archive %s: failed: %s", a->hash, error);
}


static void
ar_finish_result(void *arg, PGresult *res)
{
    ar_archive_t  *a = arg;

    if (PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] != 't') {
        log_warnx("archive %s: was no longer ours to finish", a->hash);
    }
}


static void
ar_finish_done(void *arg, const char *error)
{
    ar_archive_t  *a = arg;

    if (error != NULL) {
        log_warnx("archive %s: recording the end: %s", a->hash, error);
        /* the lease runs out and it is finished again */
        a->state = AA_DEAD;
        return;
    }

    if (a->failing) {
        a->ar->failed++;
    } else {
        a->ar->completed++;
    }

    ar_rmdir(a->dir);

    if (a->ar->notifier != NULL) {
        (void) bell_ring(a->ar->notifier, "webhook");
    }

    a->state = AA_DEAD;
}


static void
ar_finish(ar_archive_t *a, const char *status, const char *error,
    int64_t size)
{
    char         id[32], sz[32], url[4096];
    const char  *params[6];

    snprintf(id, sizeof(id), "%" PRId64, a->id);
    snprintf(sz, sizeof(sz), "%" PRId64, size);
    snprintf(url, sizeof(url), "%s/archive/get/%s.zip",
             a->ar->conf->public_url, a->hash);

    params[0] = id;
    params[1] = a->ar->conf->svc.instance;
    params[2] = status;
    params[3] = error;
    params[4] = size >= 0 ? sz : NULL;
    params[5] = url;

    if (pgq_push(a->ar->svc.q, ar_finish_sql, 6, params, ar_finish_result,
                 ar_finish_done, a) != 0)
    {
        a->state = AA_DEAD;
        return;
    }

    a->state = AA_FINISHING;
}


/* ---- rows ------------------------------------------------------------ */


static void
ar_put_str(mm_buf_t *b, const char *key, const char *s, size_t len)
{
    mm_buf_printf(b, ",\"%s\":", key);

    if (s == NULL) {
        mm_buf_puts(b, "null");
        return;
    }

    mm_json_put_string(b, s, len);
}


static void
ar_put_file(mm_buf_t *b, ar_file_t *f, uint64_t now)
{
    const char  *status;

    status = ar_fstate_names[f->state];
    if (f->state == AF_PENDING && f->bytes == 0 && f->attempts == 0) {
        status = "pending";
    } else if (f->state == AF_PENDING) {
        status = "downloading";
    }

    mm_buf_printf(b, "{\"idx\":%d,\"status\":\"%s\",\"bytes_done\":%" PRId64
                  ",\"attempts\":%ld", f->idx, status,
                  f->state == AF_FAILED ? 0 : f->bytes, f->attempts);

    if (f->state == AF_DONE) {
        ar_put_str(b, "name", f->name, f->name_len);
    } else {
        ar_put_str(b, "name", f->cand_len ? f->cand : NULL, f->cand_len);
    }
    ar_put_str(b, "etag", f->etag, f->etag ? strlen(f->etag) : 0);
    ar_put_str(b, "last_modified", f->last_modified,
               f->last_modified ? strlen(f->last_modified) : 0);
    ar_put_str(b, "error", f->error[0] ? f->error : NULL, strlen(f->error));

    if (f->total >= 0 && f->state != AF_FAILED) {
        mm_buf_printf(b, ",\"bytes_total\":%" PRId64, f->total);
    }

    if (f->state == AF_PENDING && f->next_at > now) {
        mm_buf_printf(b, ",\"retry_in_ms\":%" PRIu64, f->next_at - now);
    }

    if (f->state == AF_DONE) {
        mm_buf_printf(b, ",\"zip_offset\":%" PRIu64 ",\"zip_crc\":%u"
                      ",\"zip_size\":%" PRIu64 ",\"zip_flags\":%u"
                      ",\"zip_mtime\":%" PRId64, f->zip.offset,
                      (unsigned) f->zip.crc, f->zip.size, f->zip.flags,
                      f->zip.mtime);

    } else if (f->state == AF_DOWNLOADED) {
        mm_buf_printf(b, ",\"zip_crc\":%u,\"zip_size\":%" PRId64
                      ",\"zip_mtime\":%" PRId64, (unsigned) f->crc, f->total,
                      f->mtime);
    }

    mm_buf_puts(b, "}");
}


typedef struct {
    ar_archive_t  *a;
    int           *done;            /* idx of DONE files in the snapshot */
    int            ndone;
    int            ours;
} ar_sync_t;


static void
ar_sync_result(void *arg, PGresult *res)
{
    ar_sync_t  *s = arg;

    s->ours = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
}


static void
ar_sync_done(void *arg, const char *error)
{
    ar_sync_t     *s = arg;
    ar_archive_t  *a = s->a;

    int    i;
    char   part[4096];

    a->syncing = 0;

    if (error != NULL) {
        log_warnx("archive %s: recording progress: %s", a->hash, error);
        a->resync_all = 1;

    } else if (!s->ours) {
        log_warnx("archive %s: no longer ours (lease lost); dropping it",
                  a->hash);
        a->state = AA_DEAD;

    } else {
        /* the rows say these are in the ZIP: their downloads can go */
        for (i = 0; i < s->ndone; i++) {
            ar_file_t  *f = &a->files[s->done[i]];

            if (f->unlink_part && f->state == AF_DONE) {
                ar_part_path(f, part, sizeof(part));
                (void) unlink(part);
                f->unlink_part = 0;
            }
        }
    }

    free(s->done);
    free(s);
}


static void
ar_sync(ar_archive_t *a)
{
    int          i, n;
    char         id[32], pos[32], lease[16];
    uint64_t     now;
    mm_buf_t     b;
    ar_sync_t   *s;
    const char  *params[5];

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return;
    }

    s->a = a;
    s->done = malloc(sizeof(int) * (size_t) (a->nfiles ? a->nfiles : 1));
    if (s->done == NULL) {
        free(s);
        return;
    }

    now = now_mono_ms();
    mm_buf_init(&b);
    mm_buf_puts(&b, "[");
    n = 0;

    for (i = 0; i < a->nfiles; i++) {
        ar_file_t  *f = &a->files[i];

        if (!f->dirty && !a->resync_all) {
            continue;
        }

        if (n++) {
            mm_buf_puts(&b, ",");
        }

        ar_put_file(&b, f, now);

        if (f->unlink_part && f->state == AF_DONE) {
            s->done[s->ndone++] = i;
        }
    }

    mm_buf_puts(&b, "]");

    if (b.failed) {
        mm_buf_free(&b);
        free(s->done);
        free(s);
        return;
    }

    snprintf(id, sizeof(id), "%" PRId64, a->id);
    snprintf(lease, sizeof(lease), "%d", AR_LEASE);

    params[0] = id;
    params[1] = a->ar->conf->svc.instance;
    params[2] = b.data;
    params[3] = NULL;
    params[4] = lease;

    if (a->zip != NULL) {
        uint64_t        at;
        uint32_t        crc;
        mm_zip_entry_t  open;

        /* the end of the last whole entry: an open one is cut on a restart */
        at = mm_zip_pos(a->zip);
        if (a->appending != NULL
            && mm_zip_entry_current(a->zip, &open, &at, &crc) == MM_OK)
        {
            at = open.offset;
        }

        snprintf(pos, sizeof(pos), "%" PRIu64, at);
        params[3] = pos;
    }

    if (pgq_push(a->ar->svc.q, ar_sync_sql, 5, params, ar_sync_result,
                 ar_sync_done, s) != 0)
    {
        mm_buf_free(&b);
        free(s->done);
        free(s);
        return;
    }

    mm_buf_free(&b);

    for (i = 0; i < a->nfiles; i++) {
        a->files[i].dirty = 0;
    }

    a->resync_all = 0;
    a->sync_dirty_zip = 0;
    a->dirty = 0;
    a->syncing = 1;
    a->synced_at = now;
    a->sync_at = 0;
}


static int
ar_any_dirty(ar_archive_t *a)
{
    return a->dirty || a->resync_all || a->sync_dirty_zip;
}


/* ---- expiry ---------------------------------------------------------- */


static void
ar_rmdir(const char *dir)
{
    DIR            *d;
    char            path[4096];
    struct dirent  *e;

    if (dir == NULL) {
        return;
    }

    d = opendir(dir);
    if (d == NULL) {
        return;
    }

    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        (void) unlink(path);
    }

    closedir(d);

    if (rmdir(dir) != 0 && errno != ENOENT) {
        log_warn("rmdir %s", dir);
    }
}


typedef struct {
    archiver_t  *ar;
    mm_buf_t     ids;
    int          n;
} ar_purge_t;


static void
ar_purged_done(void *arg, const char *error)
{
    archiver_t  *ar = arg;

    ar->purging = 0;

    if (error != NULL) {
        log_warnx("marking expired archives: %s", error);
    }
}


static void
ar_expired_result(void *arg, PGresult *res)
{
    ar_purge_t  *p = arg;

    int          i;
    char         path[4096];
    const char  *hash;

    for (i = 0; i < PQntuples(res); i++) {
        hash = PQgetvalue(res, i, 1);

        if (!mm_archive_hash_valid(hash, strlen(hash))) {
            continue;
        }

        snprintf(path, sizeof(path), "%s/%s.zip", p->ar->conf->archive_dir,
                 hash);

        if (unlink(path) != 0 && errno != ENOENT) {
            log_warn("%s", path);
            continue;
        }

        log_info("archive %s: expired, removed", hash);

        mm_buf_printf(&p->ids, "%s%s", p->n++ ? "," : "",
                      PQgetvalue(res, i, 0));
    }
}


static void
ar_expired_done(void *arg, const char *error)
{
    ar_purge_t  *p = arg;

    const char  *params[1];

    mm_buf_puts(&p->ids, "}");

    if (error != NULL) {
        log_warnx("looking for expired archives: %s", error);
    }

    if (error == NULL && p->n > 0 && !p->ids.failed) {
        params[0] = p->ids.data;
        if (pgq_push(p->ar->svc.q, ar_purged_sql, 1, params, NULL,
                     ar_purged_done, p->ar) == 0)
        {
            mm_buf_free(&p->ids);
            free(p);
            return;
        }
    }

    p->ar->purging = 0;
    mm_buf_free(&p->ids);
    free(p);
}


static void
ar_leftover_result(void *arg, PGresult *res)
{
    archiver_t  *ar = arg;

    int    i;
    char   dir[4096];

    for (i = 0; i < PQntuples(res); i++) {
        snprintf(dir, sizeof(dir), "%s/.work/%s", ar->conf->archive_dir,
                 PQgetvalue(res, i, 0));
        log_info("removing the leftover work directory %s", dir);
        ar_rmdir(dir);
    }
}


static void
ar_purge(archiver_t *ar)
{
    DIR            *d;
    char            work[4096];
    mm_buf_t        hashes;
    ar_purge_t     *p;
    ar_archive_t   *a;
    struct dirent  *e;
    const char     *params[1];

    /* finished archives */

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return;
    }

    p->ar = ar;
    mm_buf_init(&p->ids);
    mm_buf_puts(&p->ids, "{");

    if (pgq_push(ar->svc.q, ar_expired_sql, 0, NULL, ar_expired_result,
                 ar_expired_done, p) != 0)
    {
        mm_buf_free(&p->ids);
        free(p);
        return;
    }

    ar->purging = 1;

    /* work directories of archives finished by a process that died */

    snprintf(work, sizeof(work), "%s/.work", ar->conf->archive_dir);
    d = opendir(work);
    if (d == NULL) {
        return;
    }

    mm_buf_init(&hashes);
    mm_buf_puts(&hashes, "{");

    while ((e = readdir(d)) != NULL) {
        if (!mm_archive_hash_valid(e->d_name, strlen(e->d_name))) {
            continue;
        }

        for (a = ar->archives; a != NULL; a = a->next) {
            if (strcmp(a->hash, e->d_name) == 0) {
                break;
            }
        }

        if (a == NULL) {
            mm_buf_printf(&hashes, "%s%s", hashes.len > 1 ? "," : "",
                          e->d_name);
        }
    }

    closedir(d);
    mm_buf_puts(&hashes, "}");

    if (hashes.len > 2 && !hashes.failed) {
        params[0] = hashes.data;
        (void) pgq_push(ar->svc.q, ar_leftover_sql, 1, params,
                        ar_leftover_result, NULL, ar);
    }

    mm_buf_free(&hashes);
}


/* ---- the loop -------------------------------------------------------- */


static void
ar_tick(archiver_t *ar, uint64_t now)
{
    char            info[256];
    ar_archive_t   *a, **pp;

    if (pgc_ready(ar->svc.pg) && heartbeat_due(&ar->svc.hb, now)) {
        snprintf(info, sizeof(info),
                 "{\"archives\":%d,\"downloads\":%d,\"completed\":%" PRIu64
                 ",\"failed\":%" PRIu64 ",\"files\":%" PRIu64 "}",
                 ar->nactive, ar->running, ar->completed, ar->failed,
                 ar->files_fetched);
        (void) heartbeat_send(&ar->svc.hb, ar->svc.pg, info, now);
    }

    for (a = ar->archives; a != NULL; a = a->next) {
        if (a->state != AA_ACTIVE) {
            continue;
        }

        if (a->failing) {
            /* stop its downloads, record the files, then the end */
            int  i;

            for (i = 0; i < a->nfiles; i++) {
                ar_cancel(&a->files[i]);
            }

            if (a->appending != NULL) {
                mm_zip_entry_abort(a->zip);
                close(a->part_fd);
                a->part_fd = -1;
                a->appending = NULL;
            }

            if (!a->syncing && ar_any_dirty(a)) {
                ar_sync(a);
            }

            if (!a->syncing && !ar_any_dirty(a)) {
                ar_finish(a, "failed", a->fail_error, -1);
            }

            continue;
        }

        if (!ar->svc.draining) {
            ar_append(a, now);
        }

        if (!a->syncing
            && ((a->sync_at != 0 && now >= a->sync_at)
                || (ar_any_dirty(a) && now >= a->synced_at + AR_SYNC_MS)
                || now >= a->synced_at + AR_KEEPALIVE_MS))
        {
            ar_sync(a);
        }

        if (!ar->svc.draining && a->running == 0 && a->appending == NULL
            && a->next_zip >= a->nfiles && !a->syncing && !ar_any_dirty(a)
            && a->state == AA_ACTIVE && !a->failing)
        {
            ar_complete(a);
        }
    }

    /* free what is over, once nothing refers to it */
    for (pp = &ar->archives; *pp != NULL; ) {
        a = *pp;

        if (a->state == AA_DEAD && a->running > 0) {
            int  i;

            for (i = 0; i < a->nfiles; i++) {
                ar_cancel(&a->files[i]);
            }
        }

        if (a->state == AA_DEAD && a->running == 0
            && pgq_pending_for(ar->svc.q, a) == 0 && !a->syncing)
        {
            *pp = a->next;
            ar->nactive--;
            ar->svc.rang = 1;
            ar_archive_free(a);
            continue;
        }

        pp = &a->next;
    }

    if (ar->sched || (ar->sched_at != 0 && now >= ar->sched_at)) {
        if (!ar->svc.draining) {
            ar_schedule(ar, now);
        }
    }

    if (svc_claim_due(&ar->svc, ar->nactive < ar->conf->max_archives, now)) {
        ar_claim(ar);
    }

    if (!ar->svc.draining && !ar->purging && now >= ar->purge_at) {
        ar->purge_at = now + AR_PURGE_MS;
        ar_purge(ar);
    }

    pgq_pump(ar->svc.q);
}


static int
ar_poll_items(void *obj, zmq_pollitem_t **items, long *timeout)
{
    archiver_t  *ar = obj;

    int            n;
    uint64_t       now;
    ar_archive_t  *a;

    now = now_mono_ms();
    n = svc_poll_items(&ar->svc, ar->nactive < ar->conf->max_archives, now,
                       items, timeout);

    if (ar->sched) {
        *timeout = 0;
    } else if (ar->sched_at != 0) {
        dmain_lower(timeout, ar->sched_at, now);
    }

    if (!ar->svc.draining && !ar->purging) {
        dmain_lower(timeout, ar->purge_at, now);
    }

    for (a = ar->archives; a != NULL; a = a->next) {
        if (a->state == AA_DEAD) {
            if (!a->syncing && pgq_pending_for(ar->svc.q, a) == 0) {
                *timeout = 0;
            }
            continue;
        }

        if (a->state != AA_ACTIVE) {
            continue;
        }

        if (a->failing) {
            if (!a->syncing) {
                *timeout = 0;
            }
            continue;
        }

        if (a->appending != NULL
            || (a->next_zip < a->nfiles
                && a->files[a->next_zip].state == AF_DOWNLOADED))
        {
            dmain_lower(timeout, a->append_at, now);
        }

        if (!a->syncing) {
            if (a->sync_at != 0) {
                dmain_lower(timeout, a->sync_at, now);
            }
            dmain_lower(timeout, a->synced_at + (ar_any_dirty(a)
                                               ? AR_SYNC_MS : AR_KEEPALIVE_MS),
                      now);
        }

        if (a->running == 0 && a->next_zip >= a->nfiles && !a->syncing
            && !ar->svc.draining)
        {
            *timeout = 0;
        }
    }

    return n;
}


static void
ar_process(void *obj, zmq_pollitem_t *items, int count)
{
    archiver_t  *ar = obj;

    svc_process(&ar->svc, items, count);

    ar_tick(ar, now_mono_ms());
}


static void
ar_reload(void *obj)
{
    archiver_t  *ar = obj;

    svc_reload(&ar->svc);
}


static void
ar_drain(void *obj)
{
    archiver_t  *ar = obj;

    int            i;
    ar_archive_t  *a;

    svc_drain(&ar->svc, AR_DRAIN_MS);

    /* downloads stop here and resume after a restart */
    for (a = ar->archives; a != NULL; a = a->next) {
        for (i = 0; i < a->nfiles; i++) {
            if (a->files[i].t != NULL) {
                ar_cancel(&a->files[i]);
                a->files[i].dirty = 1;
                a->dirty = 1;
            }
        }

        if (a->state == AA_ACTIVE && !a->syncing && ar_any_dirty(a)) {
            ar_sync(a);
        }
    }
}


static int
ar_finished(void *obj)
{
    archiver_t  *ar = obj;

    return pgq_pending(ar->svc.q) == 0 || svc_drained(&ar->svc);
}
