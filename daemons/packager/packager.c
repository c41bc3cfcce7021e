/*
 * media-packager: the job queue in PostgreSQL, the doorbell, the probe
 * children and the packaging runs (pack.c). See packager.h.
 *
 * PostgreSQL is driven with libpq's non-blocking API (daemons/common/pgc),
 * one statement at a time; pk_tick() picks the next one by priority:
 * results of finished work first (so a slow queue never delays a 'done'),
 * then the rows' heartbeats, the daemon's heartbeat, and last the claims
 * of new work.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bell.h"
#include "buf.h"
#include "child.h"
#include "curvekey.h"
#include "heartbeat.h"
#include "json.h"
#include "log.h"
#include "pack.h"
#include "packager.h"
#include "pgc.h"
#include "probe.h"
#include "util.h"
#include "zap.h"


#define PK_VERSION          "0.1"
#define PK_ZAP_DOMAIN       "packager"
#define PK_BEAT_MS          2000        /* a running row's heartbeat_at */
#define PK_SCAN_MS          10000       /* dead claimers on this host */
#define PK_DRAIN_MS         3000
#define PK_PROBE_OUT_MAX    (4 * 1024 * 1024)
#define PK_PROBE_ERR_MAX    8192
#define PK_JOBS_MAX         64
#define PK_ERROR_MAX        1000
#define PK_SWEEP_READ       256         /* directory entries a turn */
#define PK_SWEEP_BATCH      1000        /* names a statement */
#define PK_UPLOAD_NAME_LEN  36          /* 32 hex digits ".mp4" */


typedef enum {
    PK_FREE = 0,
    PK_RUNNING,
    PK_REPORT,          /* result to write */
    PK_REPORTING        /* its statement in flight */
} pk_slot_state_t;


typedef struct {
    pk_slot_state_t  state;
    int64_t          id;
    char             id_str[24];
    pack_t          *pack;
    uint64_t         next_beat;
    int              requeue;           /* draining: give the row back */

    /* the result */
    const char      *status;            /* "done", "failed" */
    char            *error;
    char             duration[32];
} pk_job_t;


typedef struct {
    pk_slot_state_t  state;
    int64_t          id;
    char             id_str[24];
    char            *path;
    char            *arg;               /* "file:<path>" */
    child_t          child;
    int              out_fd;
    int              err_fd;
    mm_buf_t         out;
    mm_buf_t         err;
    uint64_t         deadline;

    /* the result */
    const char      *status;            /* "ready", "invalid" */
    mm_buf_t         probe;             /* JSON, or empty for NULL */
    char            *error;
} pk_probe_t;


typedef enum {
    PK_OP_NONE = 0,
    PK_OP_SCHEMA,
    PK_OP_FINISH,
    PK_OP_PROBED,
    PK_OP_REQUEUE,
    PK_OP_UNPROBE,
    PK_OP_BEAT,
    PK_OP_HEARTBEAT,
    PK_OP_SCAN,
    PK_OP_STALE,
    PK_OP_SWEEP,
    PK_OP_CLAIM_PROBE,
    PK_OP_CLAIM_JOB
} pk_op_t;


typedef struct packager_s  packager_t;

struct packager_s {
    const packager_conf_t  *conf;
    void                *pull;         /* the doorbell */
    void                *notifier;     /* its doorbell, or NULL */
    zap_t               *zap;
    pgc_t               *pg;
    heartbeat_t          hb;
    char                 me[300];       /* host:pid (claimed_by) */
    char                 host[256];
    pack_conf_t          pack_conf;

    pk_job_t            *jobs;
    pk_probe_t          *probes;

    /* the statement in flight */
    pk_op_t              op;
    void                *op_slot;
    int                  op_rows;
    int                  have_outbox;   /* webhook_enqueue() exists */
    int                  schema_checked;
    mm_buf_t             dead;          /* '{"host:pid",...}' to mark stale */

    int                  want_probe;
    int                  want_job;
    uint64_t             next_poll;
    uint64_t             next_scan;

    /* the sweep of orphaned uploads (pk_sweep) */
    int                  sweep_fd;      /* uploads_dir while sweeping */
    DIR                 *sweep_dir;     /* while there is more to read */
    mm_buf_t             sweep_names;   /* '{"<name>",...' to look up */
    long                 sweep_n;       /* names in it */
    uint64_t             swept;         /* files removed by this sweep */
    uint64_t             next_sweep;

    /* poll items of the last pk_poll_items(); 0 is dmain's */
    zmq_pollitem_t      *items;
    int                  idx_pull;
    int                  idx_zap;
    int                  idx_pg;

    int                  draining;
    uint64_t             drain_deadline;

    /* counters for the heartbeat row */
    uint64_t             probed;
    uint64_t             packaged;
    uint64_t             failed;
    uint64_t             rings;
};


const conf_def_t  packager_conf_defs[] = {
    { "db", CONF_STRING, offsetof(packager_conf_t, db), 1,
      NULL, 0, 0, 0 },
    { "listen", CONF_STRING, offsetof(packager_conf_t, listen), 1,
      NULL, 0, 0, 0 },
    { "curve_key_file", CONF_STRING,
      offsetof(packager_conf_t, curve_key_file), 1, NULL, 0, 0, 0 },
    { "curve_clients_file", CONF_STRING,
      offsetof(packager_conf_t, curve_clients_file), 1, NULL, 0, 0, 0 },
    { "uploads_dir", CONF_STRING, offsetof(packager_conf_t, uploads_dir), 1,
      NULL, 0, 0, 0 },
    { "output_dir", CONF_STRING, offsetof(packager_conf_t, output_dir), 1,
      NULL, 0, 0, 0 },
    { "ffmpeg", CONF_STRING, offsetof(packager_conf_t, ffmpeg), 0,
      "ffmpeg", 0, 0, 0 },
    { "ffprobe", CONF_STRING, offsetof(packager_conf_t, ffprobe), 0,
      "ffprobe", 0, 0, 0 },
    { "license_url", CONF_STRING, offsetof(packager_conf_t, license_url), 0,
      "/license/$id", 0, 0, 0 },
    { "notifier_endpoint", CONF_STRING,
      offsetof(packager_conf_t, notifier_endpoint), 0, "none", 0, 0, 0 },
    { "notifier_key_file", CONF_STRING,
      offsetof(packager_conf_t, notifier_key_file), 0, NULL, 0, 0, 0 },
    { "heartbeat_name", CONF_STRING,
      offsetof(packager_conf_t, heartbeat_name), 0, "packager", 0, 0, 0 },
    { "pid_file", CONF_STRING, offsetof(packager_conf_t, pid_file), 0,
      NULL, 0, 0, 0 },
    { "jobs", CONF_INT, offsetof(packager_conf_t, jobs), 0,
      NULL, 1, 1, PK_JOBS_MAX },
    { "probes", CONF_INT, offsetof(packager_conf_t, probes), 0,
      NULL, 2, 1, PK_JOBS_MAX },
    { "segment_ms", CONF_INT, offsetof(packager_conf_t, segment_ms), 0,
      NULL, 4000, 500, 60000 },
    { "read_rate", CONF_INT, offsetof(packager_conf_t, read_rate), 0,
      NULL, 0, 0, 100 },
    { "poll_ms", CONF_INT, offsetof(packager_conf_t, poll_ms), 0,
      NULL, 2000, 50, 600000 },
    { "reclaim_after", CONF_INT, offsetof(packager_conf_t, reclaim_after), 0,
      NULL, 30, 5, 86400 },
    { "max_attempts", CONF_INT, offsetof(packager_conf_t, max_attempts), 0,
      NULL, 3, 1, 100 },
    { "probe_timeout", CONF_INT, offsetof(packager_conf_t, probe_timeout), 0,
      NULL, 60, 1, 3600 },
    { "sync", CONF_INT, offsetof(packager_conf_t, sync), 0,
      NULL, 1, 0, 1 },
    { "orphan_sweep_s", CONF_INT, offsetof(packager_conf_t, orphan_sweep_s),
      0, NULL, 600, 0, 86400 },
    { "orphan_grace_s", CONF_INT, offsetof(packager_conf_t, orphan_grace_s),
      0, NULL, 3600, 60, 30 * 86400 },
    { NULL, 0, 0, 0, NULL, 0, 0, 0 }
};


/* ---- SQL --------------------------------------------------------------- */


static const char  pk_schema_sql[] =
    "SELECT to_regprocedure('webhook_enqueue(text,text,text,text)') "
    "IS NOT NULL";

static const char  pk_claim_probe_sql[] =
    "WITH c AS ("
    "  SELECT id FROM input_content"
    "   WHERE status = 'uploaded'"
    "      OR (status = 'probing'"
    "          AND updated_at < now() - make_interval(secs => $1))"
    "   ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "UPDATE input_content i SET status = 'probing', updated_at = now()"
    "  FROM c WHERE i.id = c.id RETURNING i.id, i.path";

static const char  pk_probed_sql[] =
    "UPDATE input_content SET status = $2, probe = $3::jsonb, error = $4,"
    "       updated_at = now()"
    " WHERE id = $1 AND status IN ('uploaded', 'probing')";

static const char  pk_unprobe_sql[] =
    "UPDATE input_content SET status = 'uploaded', updated_at = now()"
    " WHERE id = $1 AND status = 'probing'";

/* only rows whose input has been probed; a stale 'running' is taken over */
static const char  pk_claim_job_sql[] =
    "WITH c AS ("
    "  SELECT p.id FROM packaged_content p"
    "    JOIN input_content i ON i.id = p.input_id"
    "   WHERE (p.status = 'queued'"
    "          OR (p.status = 'running'"
    "              AND (p.heartbeat_at IS NULL"
    "                   OR p.heartbeat_at"
    "                      < now() - make_interval(secs => $2))))"
    "     AND i.status IN ('ready', 'invalid')"
    "   ORDER BY p.id LIMIT 1 FOR UPDATE OF p SKIP LOCKED) "
    "UPDATE packaged_content p"
    "   SET status = 'running', claimed_by = $1, heartbeat_at = now(),"
    "       progress = 0, error = NULL, attempts = p.attempts + 1,"
    "       updated_at = now()"
    "  FROM c, input_content i"
    " WHERE p.id = c.id AND i.id = p.input_id"
    " RETURNING p.id, p.key_hex, p.kid_hex, p.attempts, i.status, i.path,"
    "       i.error, i.probe->>'duration', i.probe->'video'->>'fps',"
    "       p.input_id, i.probe->'video'->>'height', p.ladder::text";

static const char  pk_beat_sql[] =
    "UPDATE packaged_content"
    "   SET heartbeat_at = now(), progress = $3, updated_at = now()"
    " WHERE id = $1 AND claimed_by = $2 AND status = 'running'"
    " RETURNING id";

static const char  pk_requeue_sql[] =
    "UPDATE packaged_content"
    "   SET status = 'queued', claimed_by = NULL, heartbeat_at = NULL,"
    "       progress = 0, attempts = greatest(attempts - 1, 0),"
    "       updated_at = now()"
    " WHERE id = $1 AND claimed_by = $2 AND status = 'running'";

static const char  pk_scan_sql[] =
    "SELECT DISTINCT claimed_by FROM packaged_content"
    " WHERE status = 'running' AND heartbeat_at IS NOT NULL"
    "   AND split_part(claimed_by, ':', 1) = $1 AND claimed_by <> $2";

static const char  pk_stale_sql[] =
    "UPDATE packaged_content SET heartbeat_at = NULL"
    " WHERE status = 'running' AND claimed_by = ANY ($1::text[])";

/* the names of $1 no row's path ends in (one pass: a hash anti join) */
static const char  pk_sweep_sql[] =
    "SELECT u.n FROM unnest($1::text[]) AS u(n)"
    " WHERE NOT EXISTS (SELECT 1 FROM input_content i"
    "                    WHERE substring(i.path FROM '[^/]*$') = u.n)";

#define PK_FINISH_UPDATE                                                      \
    "WITH u AS ("                                                             \
    "  UPDATE packaged_content"                                               \
    "     SET status = $3, error = $4,"                                       \
    "         progress = CASE WHEN $3 = 'done' THEN 1 ELSE progress END,"     \
    "         heartbeat_at = NULL, finished_at = now(), updated_at = now()"   \
    "   WHERE id = $1 AND claimed_by = $2 AND status = 'running'"             \
    "  RETURNING id, input_id, status, error, created_at, finished_at) "

#define PK_EVENT                                                              \
    "'packaging.' || CASE u.status WHEN 'done' THEN 'completed'"              \
    " ELSE 'failed' END"

#define PK_TIME(c)                                                            \
    "to_char(" c " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

static const char  pk_finish_outbox_sql[] =
    PK_FINISH_UPDATE
    "SELECT u.id, webhook_enqueue(" PK_EVENT ", 'packaged_content:' || u.id,"
    "  json_build_object("
    "    'event', " PK_EVENT ","
    "    'packaged_content_id', u.id,"
    "    'input_content_id', u.input_id,"
    "    'status', u.status,"
    "    'error', u.error,"
    "    'duration', $5::float8,"
    "    'mpd', CASE WHEN u.status = 'done'"
    "           THEN '/packaged/' || u.id || '/stream.mpd' END,"
    "    'hls', CASE WHEN u.status = 'done'"
    "           THEN '/packaged/' || u.id || '/master.m3u8' END,"
    "    'created_at', " PK_TIME("u.created_at") ","
    "    'finished_at', " PK_TIME("u.finished_at") ")::text,"
    "  NULL) FROM u";

static const char  pk_finish_sql[] =
    PK_FINISH_UPDATE
    "SELECT u.id, $5::float8 FROM u";


static int pk_conf_check(void *conf);
static void *pk_create(void *conf, void *zctx);
static void pk_destroy(void **obj);
static int pk_poll_items(void *obj, zmq_pollitem_t **items, long *timeout);
static void pk_process(void *obj, zmq_pollitem_t *items, int n);
static void pk_reload(void *obj);
static void pk_drain(void *obj);
static int pk_finished(void *obj);

static int pk_poll_max(const packager_t *pk);
static long pk_count(const packager_t *pk, int jobs, int probes,
    pk_slot_state_t state);
static void pk_tick(packager_t *pk, uint64_t now);
static void pk_probe_process(packager_t *pk, pk_probe_t *pr);
static void pk_job_process(packager_t *pk, pk_job_t *j);
static int pk_sweep(packager_t *pk, uint64_t now);
static void pk_sweep_end(packager_t *pk, uint64_t now);
static void pk_swept(packager_t *pk, PGresult *res);


/* ---- config ---------------------------------------------------------- */


const dmain_t  packager_main = {
    "media-packager", PK_VERSION, packager_conf_defs,
    sizeof(packager_conf_t), offsetof(packager_conf_t, pid_file),
    pk_conf_check, pk_create, pk_destroy, pk_poll_items, pk_process,
    pk_reload, pk_drain, pk_finished
};


static int
pk_conf_check(void *c)
{
    const packager_conf_t  *conf = c;

    char        pub[MM_CURVE_KEY_LEN + 1];
    char        err[512];

    if (zap_check_files(conf->curve_key_file, conf->curve_clients_file)
        != 0)
    {
        return -1;
    }

    if (strlen(conf->heartbeat_name) > 63) {
        log_warnx("heartbeat_name: at most 63 characters");
        return -1;
    }

    if (strcmp(conf->notifier_endpoint, "none") != 0
        && (conf->notifier_key_file == NULL
            || mm_curvekey_load(conf->notifier_key_file, pub, NULL, err,
                                sizeof(err)) != MM_OK))
    {
        log_warnx("notifier_key_file: %s", conf->notifier_key_file
                  ? err : "required with notifier_endpoint");
        return -1;
    }

    if (conf->output_dir[0] != '/' || conf->uploads_dir[0] != '/') {
        log_warnx("output_dir and uploads_dir must be absolute paths");
        return -1;
    }

    return 0;
}


/* ---- life ------------------------------------------------------------ */


static void *
pk_create(void *c, void *zctx)
{
    const packager_conf_t  *conf = c;

    long           i;
    packager_t    *pk;

    pk = calloc(1, sizeof(*pk));
    if (pk == NULL) {
        log_warn("calloc");
        return NULL;
    }

    pk->conf = conf;
    heartbeat_init(&pk->hb, conf->heartbeat_name);
    mm_buf_init(&pk->dead);
    mm_buf_init(&pk->sweep_names);
    pk->sweep_fd = -1;
    /* the first sweep at start (next_sweep 0) */

    if (gethostname(pk->host, sizeof(pk->host) - 1) != 0) {
        snprintf(pk->host, sizeof(pk->host), "localhost");
    }
    pk->host[strcspn(pk->host, ":")] = '\0';
    snprintf(pk->me, sizeof(pk->me), "%s:%d", pk->host, (int) getpid());

    pk->pack_conf.ffmpeg = conf->ffmpeg;
    pk->pack_conf.output_dir = conf->output_dir;
    pk->pack_conf.segment_ms = conf->segment_ms;
    pk->pack_conf.read_rate = conf->read_rate;
    pk->pack_conf.sync = conf->sync;

    pk->jobs = calloc((size_t) conf->jobs, sizeof(pk_job_t));
    pk->probes = calloc((size_t) conf->probes, sizeof(pk_probe_t));
    pk->items = calloc((size_t) pk_poll_max(pk), sizeof(zmq_pollitem_t));
    if (pk->jobs == NULL || pk->probes == NULL || pk->items == NULL) {
        log_warn("calloc");
        goto failed;
    }

    for (i = 0; i < conf->probes; i++) {
        pk->probes[i].out_fd = -1;
        pk->probes[i].err_fd = -1;
        pk->probes[i].child.pidfd = -1;
        mm_buf_init(&pk->probes[i].out);
        mm_buf_init(&pk->probes[i].err);
        mm_buf_init(&pk->probes[i].probe);
    }

    pk->pg = pgc_new("postgresql", conf->db, "SET client_encoding TO 'UTF8'");
    if (pk->pg == NULL) {
        goto failed;
    }

    /* ZAP before the CURVE server socket */

    pk->zap = zap_new(zctx, conf->curve_clients_file);
    if (pk->zap == NULL) {
        goto failed;
    }

    pk->pull = bell_listen(zctx, conf->listen, conf->curve_key_file,
                           PK_ZAP_DOMAIN);
    if (pk->pull == NULL) {
        goto failed;
    }

    if (strcmp(conf->notifier_endpoint, "none") != 0) {
        pk->notifier = bell_connect(zctx, conf->notifier_endpoint,
                                    conf->curve_key_file,
                                    conf->notifier_key_file);
        if (pk->notifier == NULL) {
            goto failed;
        }
    }

    log_info("claiming jobs as %s", pk->me);

    pk->want_probe = 1;
    pk->want_job = 1;

    return pk;

failed:

    pk_destroy((void **) &pk);

    return NULL;
}


static void
pk_probe_reset(pk_probe_t *pr)
{
    if (pr->child.pid > 0) {
        child_kill(&pr->child, SIGKILL);
        child_wait(&pr->child);
    }
    child_close(&pr->child);
    memset(&pr->child, 0, sizeof(pr->child));
    pr->child.pidfd = -1;

    if (pr->out_fd >= 0) {
        close(pr->out_fd);
        pr->out_fd = -1;
    }
    if (pr->err_fd >= 0) {
        close(pr->err_fd);
        pr->err_fd = -1;
    }

    free(pr->path);
    free(pr->arg);
    free(pr->error);
    pr->path = NULL;
    pr->arg = NULL;
    pr->error = NULL;
    mm_buf_free(&pr->out);
    mm_buf_free(&pr->err);
    mm_buf_free(&pr->probe);
    pr->status = NULL;
    pr->state = PK_FREE;
}


static void
pk_job_reset(pk_job_t *j)
{
    pack_destroy(&j->pack);
    free(j->error);
    memset(j, 0, sizeof(*j));
}


static void
pk_destroy(void **obj)
{
    packager_t  *pk = *obj;

    long  i;

    if (pk == NULL) {
        return;
    }

    *obj = NULL;

    if (pk->jobs != NULL) {
        for (i = 0; i < pk->conf->jobs; i++) {
            pk_job_reset(&pk->jobs[i]);
        }
    }

    if (pk->probes != NULL) {
        for (i = 0; i < pk->conf->probes; i++) {
            pk_probe_reset(&pk->probes[i]);
        }
    }

    if (pk->pull != NULL) {
        zmq_close(pk->pull);
    }

    if (pk->notifier != NULL) {
        zmq_close(pk->notifier);
    }

    pk_sweep_end(pk, 0);
    zap_destroy(&pk->zap);
    pgc_destroy(&pk->pg);
    mm_buf_free(&pk->dead);
    mm_buf_free(&pk->sweep_names);
    free(pk->jobs);
    free(pk->probes);
    free(pk->items);
    free(pk);
}


/* ---- statements ------------------------------------------------------ */


static void pk_result(void *arg, pgc_t *c, PGresult *res);
static void pk_done(void *arg, pgc_t *c, const char *error);


static int
pk_send(packager_t *pk, pk_op_t op, void *slot, const char *sql, int n,
    const char *const *params)
{
    pk->op = op;
    pk->op_slot = slot;
    pk->op_rows = 0;

    if (pgc_send(pk->pg, sql, n, params, pk_result, pk_done, pk) != 0) {
        pk->op = PK_OP_NONE;
        pk->op_slot = NULL;
        return -1;
    }

    return 0;
}


static void
pk_hex16(const char *s, uint8_t out[16], int *ok)
{
    int       i;
    unsigned  v;

    *ok = s != NULL && strlen(s) == 32;

    for (i = 0; *ok && i < 16; i++) {
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            *ok = 0;
        }
        out[i] = (uint8_t) v;
    }
}


/* a slot for the row just claimed: sets up the result to report */
static void
pk_job_fail(packager_t *pk, pk_job_t *j, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
pk_job_fail(packager_t *pk, pk_job_t *j, const char *fmt, ...)
{
    va_list  ap;

    free(j->error);
    j->error = malloc(PK_ERROR_MAX);
    if (j->error != NULL) {
        va_start(ap, fmt);
        vsnprintf(j->error, PK_ERROR_MAX, fmt, ap);
        va_end(ap);
    }

    j->status = "failed";
    j->duration[0] = '\0';
    j->state = PK_REPORT;

    log_warnx("packaged_content %" PRId64 ": failed: %s", j->id,
              j->error ? j->error : "(no memory for the message)");
}


static char *
pk_input_path(packager_t *pk, const char *path)
{
    char  *s;

    if (path[0] == '/') {
        return strdup(path);
    }

    if (asprintf(&s, "%s/%s", pk->conf->uploads_dir, path) < 0) {
        return NULL;
    }

    return s;
}


/* a bitrate: an integer of bit/s, or a string "1200k", "3M", "800000" */
static unsigned
pk_bitrate(const mm_json_t *v)
{
    char    *end;
    double   d;

    if (v->type == MM_JSON_NUMBER) {
        d = v->u.num.d;

    } else if (v->type == MM_JSON_STRING) {
        d = strtod(v->u.str.s, &end);
        if (end == v->u.str.s) {
            return 0;
        }
        if (*end == 'k' || *end == 'K') {
            d *= 1000;
            end++;
        } else if (*end == 'M' || *end == 'm') {
            d *= 1000000;
            end++;
        }
        if (*end != '\0') {
            return 0;
        }

    } else {
        return 0;
    }

    return (d >= 50000 && d <= 100000000) ? (unsigned) d : 0;
}


/*
 * packaged_content.ladder: [{"height": 720, "bitrate": "3M"}, 480, ...];
 * 0, or -1 with the reason in err
 */
static int
pk_ladder_parse(const char *text, pack_rung_t *rungs, size_t *n, char *err,
    size_t err_size)
{
    char              perr[160];
    size_t            i;
    int64_t           h;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *e, *v;

    *n = 0;

    if (mm_json_parse(text, strlen(text), &doc, &root, perr, sizeof(perr))
        != MM_OK)
    {
        snprintf(err, err_size, "ladder: %s", perr);
        return -1;
    }

    if (root->type == MM_JSON_NULL) {
        mm_json_doc_free(&doc);
        return 0;
    }

    if (root->type != MM_JSON_ARRAY || root->u.arr.n > 16) {
        snprintf(err, err_size, "ladder: an array of at most 16 renditions "
                 "expected");
        mm_json_doc_free(&doc);
        return -1;
    }

    for (i = 0; i < root->u.arr.n; i++) {
        e = &root->u.arr.items[i];
        h = 0;

        if (e->type == MM_JSON_NUMBER && e->u.num.is_int) {
            h = e->u.num.i;

        } else if (e->type == MM_JSON_OBJECT) {
            if (!mm_json_get_int64(e, "height", &h)) {
                h = 0;
            }
        }

        if (h < 64 || h > 4320) {
            snprintf(err, err_size, "ladder[%zu]: a height from 64 to 4320 "
                     "expected", i);
            mm_json_doc_free(&doc);
            return -1;
        }

        rungs[*n].height = (unsigned) h;
        rungs[*n].bitrate = 0;

        v = e->type == MM_JSON_OBJECT ? mm_json_get(e, "bitrate") : NULL;
        if (v != NULL && v->type != MM_JSON_NULL) {
            rungs[*n].bitrate = pk_bitrate(v);
            if (rungs[*n].bitrate == 0) {
                snprintf(err, err_size, "ladder[%zu]: a bitrate from 50k "
                         "to 100M expected (bit/s, or \"1200k\", \"3M\")",
                         i);
                mm_json_doc_free(&doc);
                return -1;
            }
        }

        (*n)++;
    }

    mm_json_doc_free(&doc);

    return 0;
}


static void
pk_claimed_job(packager_t *pk, PGresult *res)
{
    int          ok;
    long         i;
    char        *input, *license, err[256];
    size_t       nrungs;
    const char  *v, *p, *istatus;
    pack_rung_t  rungs[16];

    pk_job_t    *j;
    pack_job_t   job;

    j = NULL;

    for (i = 0; i < pk->conf->jobs; i++) {
        if (pk->jobs[i].state == PK_FREE) {
            j = &pk->jobs[i];
            break;
        }
    }

    if (j == NULL) {
        /* cannot happen: a claim is sent only with a free slot */
        log_warnx("claimed a job without a free slot");
        return;
    }

    memset(j, 0, sizeof(*j));
    memset(&job, 0, sizeof(job));

    j->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(j->id_str, sizeof(j->id_str), "%" PRId64, j->id);
    j->state = PK_RUNNING;
    j->next_beat = now_mono_ms() + PK_BEAT_MS;

    job.id = j->id;
    pk_hex16(PQgetvalue(res, 0, 1), job.key, &ok);
    if (ok) {
        pk_hex16(PQgetvalue(res, 0, 2), job.kid, &ok);
    }

    istatus = PQgetvalue(res, 0, 4);

    log_info("packaged_content %" PRId64 ": claimed (attempt %s)", j->id,
             PQgetvalue(res, 0, 3));

    if (!ok) {
        pk_job_fail(pk, j, "the key or KID is not 32 hex digits");
        return;
    }

    if (atol(PQgetvalue(res, 0, 3)) > pk->conf->max_attempts) {
        pk_job_fail(pk, j, "gave up after %ld attempts (the packager "
                    "stopped during each)", pk->conf->max_attempts);
        return;
    }

    if (strcmp(istatus, "ready") != 0) {
        v = PQgetisnull(res, 0, 6) ? "not H.264+AAC in MP4/MOV"
                                   : PQgetvalue(res, 0, 6);
        pk_job_fail(pk, j, "input_content %s is %s: %s",
                    PQgetvalue(res, 0, 9), istatus, v);
        return;
    }

    nrungs = 0;

    if (!PQgetisnull(res, 0, 11)
        && pk_ladder_parse(PQgetvalue(res, 0, 11), rungs, &nrungs, err,
                           sizeof(err)) != 0)
    {
        pk_job_fail(pk, j, "%s", err);
        return;
    }

    input = pk_input_path(pk, PQgetvalue(res, 0, 5));

    license = NULL;
    p = strstr(pk->conf->license_url, "$id");
    if (p != NULL) {
        if (asprintf(&license, "%.*s%" PRId64 "%s",
                     (int) (p - pk->conf->license_url),
                     pk->conf->license_url, j->id, p + 3) < 0)
        {
            license = NULL;
        }
    } else {
        license = strdup(pk->conf->license_url);
    }

    if (input == NULL || license == NULL) {
        free(input);
        free(license);
        pk_job_fail(pk, j, "out of memory");
        return;
    }

    job.input = input;
    job.license_url = license[0] ? license : NULL;
    job.duration = PQgetisnull(res, 0, 7) ? 0
                   : strtod(PQgetvalue(res, 0, 7), NULL);
    job.fps = PQgetisnull(res, 0, 8) ? 0 : strtod(PQgetvalue(res, 0, 8), NULL);
    job.height = PQgetisnull(res, 0, 10) ? 0 : atoi(PQgetvalue(res, 0, 10));
    job.rungs = rungs;
    job.nrungs = nrungs;

    j->pack = pack_start(&pk->pack_conf, &job);

    free(input);
    free(license);

    if (j->pack == NULL) {
        pk_job_fail(pk, j, "out of memory");
        return;
    }

    pk_job_process(pk, j);
}


static void
pk_claimed_probe(packager_t *pk, PGresult *res)
{
    int          fds[3], out[2], err[2];
    long         i;
    char        *argv[MM_PROBE_ARGC + 1], msg[256];
    size_t       size;
    pk_probe_t  *pr;

    pr = NULL;

    for (i = 0; i < pk->conf->probes; i++) {
        if (pk->probes[i].state == PK_FREE) {
            pr = &pk->probes[i];
            break;
        }
    }

    if (pr == NULL) {
        log_warnx("claimed a probe without a free slot");
        return;
    }

    pr->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    snprintf(pr->id_str, sizeof(pr->id_str), "%" PRId64, pr->id);
    pr->state = PK_RUNNING;
    pr->path = pk_input_path(pk, PQgetvalue(res, 0, 1));

    if (pr->path == NULL) {
        pr->state = PK_REPORT;
        pr->status = "invalid";
        pr->error = strdup("out of memory");
        return;
    }

    size = strlen(pr->path) + 8;
    pr->arg = malloc(size);
    if (pr->arg == NULL) {
        pr->state = PK_REPORT;
        pr->status = "invalid";
        pr->error = strdup("out of memory");
        return;
    }

    mm_probe_argv(pk->conf->ffprobe, pr->path, pr->arg, size, argv);

    out[0] = out[1] = err[0] = err[1] = -1;

    if (child_pipe(out, 0) != 0 || child_pipe(err, 0) != 0) {
        log_warn("pipe");
        goto spawn_failed;
    }

    fds[0] = -1;
    fds[1] = out[1];
    fds[2] = err[1];

    if (child_spawn(&pr->child, argv, fds, 3, msg, sizeof(msg)) != 0) {
        log_warnx("input_content %" PRId64 ": %s", pr->id, msg);
        goto spawn_failed;
    }

    close(out[1]);
    close(err[1]);
    pr->out_fd = out[0];
    pr->err_fd = err[0];
    pr->deadline = now_mono_ms() + (uint64_t) pk->conf->probe_timeout * 1000;

    log_debug("input_content %" PRId64 ": probing %s", pr->id, pr->path);

    return;

spawn_failed:

    for (i = 0; i < 2; i++) {
        if (out[i] >= 0) {
            close(out[i]);
        }
        if (err[i] >= 0) {
            close(err[i]);
        }
    }

    pr->state = PK_REPORT;
    pr->status = "invalid";
    pr->error = strdup("the packager cannot run ffprobe");
}


/*
 * Whether a packager of this host still runs as pid: a process that exists,
 * is not a zombie (killed, not yet reaped by its supervisor) and is a
 * media-packager (not an unrelated process that got the pid since).
 */
static int
pk_process_alive(pid_t pid)
{
    int      fd;
    char     path[64], buf[512], *p;
    ssize_t  n;

    if (kill(pid, 0) != 0 && errno == ESRCH) {
        return 0;
    }

    snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        /* no /proc: trust kill() */
        return errno != ENOENT;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);

    if (n <= 0) {
        return 0;
    }

    buf[n] = '\0';

    /* "pid (comm) S ...": comm may hold spaces and parentheses */
    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X') {
        return 0;
    }

    *p = '\0';
    p = strchr(buf, '(');

    return p != NULL && strstr(p, "packager") != NULL;
}


static void
pk_scanned(packager_t *pk, PGresult *res)
{
    int          i, n;
    long         pid;
    char        *end;
    const char  *who, *colon;

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        who = PQgetvalue(res, i, 0);
        colon = strrchr(who, ':');
        if (colon == NULL) {
            continue;
        }

        pid = strtol(colon + 1, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == (long) getpid()) {
            continue;
        }

        if (pk_process_alive((pid_t) pid)) {
            continue;
        }

        log_info("packager %s is gone: its jobs are taken over", who);

        mm_buf_puts(&pk->dead, pk->dead.len ? "," : "{");
        mm_buf_printf(&pk->dead, "\"%s\"", who);
    }

    if (pk->dead.len > 0) {
        mm_buf_puts(&pk->dead, "}");
    }
}


static void
pk_result(void *arg, pgc_t *c, PGresult *res)
{
    packager_t  *pk = arg;

    pk_job_t    *j;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        return;
    }

    pk->op_rows += PQntuples(res);

    if (PQntuples(res) == 0) {
        return;
    }

    switch (pk->op) {

    case PK_OP_SCHEMA:
        pk->have_outbox = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        break;

    case PK_OP_CLAIM_JOB:
        pk_claimed_job(pk, res);
        break;

    case PK_OP_CLAIM_PROBE:
        pk_claimed_probe(pk, res);
        break;

    case PK_OP_SCAN:
        pk_scanned(pk, res);
        break;

    case PK_OP_SWEEP:
        pk_swept(pk, res);
        break;

    case PK_OP_FINISH:
        j = pk->op_slot;
        log_info("packaged_content %" PRId64 ": %s%s", j->id, j->status,
                 pk->have_outbox ? " (webhook queued)" : "");
        break;

    default:
        break;
    }
}


static void
pk_done(void *arg, pgc_t *c, const char *error)
{
    packager_t  *pk = arg;

    void        *slot;
    pk_op_t      op;
    pk_job_t    *j;
    pk_probe_t  *pr;

    op = pk->op;
    slot = pk->op_slot;
    pk->op = PK_OP_NONE;
    pk->op_slot = NULL;

    switch (op) {

    case PK_OP_SCHEMA:
        if (error == NULL) {
            pk->schema_checked = 1;
            if (!pk->have_outbox) {
                log_info("no webhook_outbox (db/002): packaging events are "
                         "not queued for the notifier");
            }
        }
        break;

    case PK_OP_FINISH:
        j = slot;
        if (error != NULL) {
            log_warnx("packaged_content %" PRId64 ": recording '%s': %s",
                      j->id, j->status, error);
            j->state = PK_REPORT;
            break;
        }
        if (pk->op_rows == 0) {
            log_warnx("packaged_content %" PRId64 ": no longer ours (taken "
                      "over or finished elsewhere): result '%s' dropped",
                      j->id, j->status);
        }
        if (strcmp(j->status, "done") == 0) {
            pk->packaged++;
        } else {
            pk->failed++;
        }
        if (pk->op_rows > 0 && pk->have_outbox && pk->notifier != NULL) {
            (void) bell_ring(pk->notifier, "packaging");
        }
        pk_job_reset(j);
        pk->want_job = 1;
        break;

    case PK_OP_PROBED:
        pr = slot;
        if (error != NULL) {
            log_warnx("input_content %" PRId64 ": recording the probe: %s",
                      pr->id, error);
            pr->state = PK_REPORT;
            break;
        }
        log_info("input_content %" PRId64 ": %s%s%s", pr->id, pr->status,
                 pr->error ? ": " : "", pr->error ? pr->error : "");
        pk->probed++;
        pk_probe_reset(pr);
        pk->want_probe = 1;
        /* a job may have waited for this input */
        pk->want_job = 1;
        break;

    case PK_OP_REQUEUE:
        j = slot;
        if (error == NULL) {
            log_info("packaged_content %" PRId64 ": put back in the queue",
                     j->id);
        }
        pk_job_reset(j);
        break;

    case PK_OP_UNPROBE:
        pr = slot;
        pk_probe_reset(pr);
        break;

    case PK_OP_BEAT:
        j = slot;
        if (error != NULL) {
            break;
        }
        if (pk->op_rows == 0 && j->state == PK_RUNNING) {
            log_warnx("packaged_content %" PRId64 ": taken over by another "
                      "packager (our heartbeat was stale): stopping", j->id);
            pk_job_reset(j);
            pk->want_job = 1;
        }
        break;

    case PK_OP_SCAN:
        break;

    case PK_OP_STALE:
        mm_buf_reset(&pk->dead);
        if (error == NULL) {
            pk->want_job = 1;
        }
        break;

    case PK_OP_SWEEP:
        mm_buf_reset(&pk->sweep_names);
        pk->sweep_n = 0;
        if (error != NULL) {
            /* the next sweep looks again */
            log_warnx("orphan sweep: %s", error);
            pk_sweep_end(pk, now_mono_ms());
        }
        break;

    case PK_OP_CLAIM_PROBE:
        if (error != NULL || pk->op_rows == 0) {
            pk->want_probe = 0;
        }
        break;

    case PK_OP_CLAIM_JOB:
        if (error != NULL || pk->op_rows == 0) {
            pk->want_job = 0;
        }
        break;

    default:
        break;
    }
}


/* ---- probes ---------------------------------------------------------- */


/* reads what is there; 1 at EOF */
static int
pk_drain_fd(int *fd, mm_buf_t *b, size_t max)
{
    char     buf[16384];
    ssize_t  n;

    while (*fd >= 0) {
        n = read(*fd, buf, sizeof(buf));

        if (n < 0 && errno == EINTR) {
            continue;
        }

        if (n < 0 && errno == EAGAIN) {
            return 0;
        }

        if (n <= 0) {
            close(*fd);
            *fd = -1;
            return 1;
        }

        if (b->len + (size_t) n <= max) {
            mm_buf_append(b, buf, (size_t) n);
        }
    }

    return 1;
}


static void
pk_probe_finish(packager_t *pk, pk_probe_t *pr)
{
    char         msg[PK_ERROR_MAX], status[64];
    mm_probe_t   p;

    pr->state = PK_REPORT;

    if (!WIFEXITED(pr->child.status) || WEXITSTATUS(pr->child.status) != 0)
    {
        if (WIFEXITED(pr->child.status)
            && WEXITSTATUS(pr->child.status) == 127 && pr->err.len == 0)
        {
            snprintf(msg, sizeof(msg), "the packager cannot run %s",
                     pk->conf->ffprobe);
        } else if (pr->err.len > 0) {
            char  text[800];

            mm_probe_error_text(pr->err.data, pr->err.len, pr->arg, text,
                                sizeof(text));
            snprintf(msg, sizeof(msg), "not a media file ffprobe can read: "
                     "%s", text);
        } else {
            child_status_str(pr->child.status, status, sizeof(status));
            snprintf(msg, sizeof(msg), "ffprobe failed (%s)", status);
        }

        pr->status = "invalid";
        pr->error = strdup(msg);
        return;
    }

    if (pr->out.failed
        || mm_probe_parse(pr->out.data ? pr->out.data : "", pr->out.len, &p,
                          msg, sizeof(msg)) != MM_OK)
    {
        pr->status = "invalid";
        pr->error = strdup(pr->out.failed ? "out of memory" : msg);
        return;
    }

    mm_probe_to_json(&p, &pr->probe);

    if (mm_probe_verdict(&p, msg, sizeof(msg))) {
        pr->status = "ready";
        return;
    }

    pr->status = "invalid";
    pr->error = strdup(msg);
}


static void
pk_probe_process(packager_t *pk, pk_probe_t *pr)
{
    if (pr->state != PK_RUNNING) {
        return;
    }

    (void) pk_drain_fd(&pr->out_fd, &pr->out, PK_PROBE_OUT_MAX);
    (void) pk_drain_fd(&pr->err_fd, &pr->err, PK_PROBE_ERR_MAX);

    if (!child_reap(&pr->child)) {
        if (now_mono_ms() >= pr->deadline) {
            child_kill(&pr->child, SIGKILL);
            child_wait(&pr->child);
            pr->state = PK_REPORT;
            pr->status = "invalid";
            if (asprintf(&pr->error, "ffprobe did not finish in %ld s",
                         pk->conf->probe_timeout) < 0)
            {
                pr->error = NULL;
            }
        }
        return;
    }

    if (pr->out_fd >= 0 || pr->err_fd >= 0) {
        return;
    }

    pk_probe_finish(pk, pr);
}


/* ---- packaging jobs -------------------------------------------------- */


static void
pk_job_process(packager_t *pk, pk_job_t *j)
{
    pack_state_t  st;

    if (j->state != PK_RUNNING || j->pack == NULL) {
        return;
    }

    pack_process(j->pack);

    st = pack_state(j->pack);

    if (st == PACK_DONE) {
        j->status = "done";
        snprintf(j->duration, sizeof(j->duration), "%.3f",
                 pack_duration(j->pack));
        j->state = PK_REPORT;
        /* the output is published: nothing to clean up */
        pack_destroy(&j->pack);

    } else if (st == PACK_FAILED) {
        pk_job_fail(pk, j, "%s", pack_error(j->pack));
        pack_destroy(&j->pack);
    }
}


/* ---- orphaned uploads ------------------------------------------------ */


/* a name nginx gives an upload: 32 lowercase hex digits, ".mp4" */
static int
pk_upload_name(const char *name)
{
    size_t  i;

    if (strlen(name) != PK_UPLOAD_NAME_LEN
        || strcmp(name + PK_UPLOAD_NAME_LEN - 4, ".mp4") != 0)
    {
        return 0;
    }

    for (i = 0; i < PK_UPLOAD_NAME_LEN - 4; i++) {
        if (!((name[i] >= '0' && name[i] <= '9')
              || (name[i] >= 'a' && name[i] <= 'f')))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * The age in seconds of the regular file name in the uploads directory if
 * it is past the grace period (nginx inserts its row right after linking
 * it), else -1.
 */
static long
pk_upload_age(packager_t *pk, const char *name)
{
    long         age;
    struct stat  st;

    if (fstatat(pk->sweep_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0
        || !S_ISREG(st.st_mode))
    {
        return -1;
    }

    age = (long) (time(NULL) - st.st_mtime);

    return age > pk->conf->orphan_grace_s ? age : -1;
}


/* the sweep is over (or given up): the next one in orphan_sweep_s */
static void
pk_sweep_end(packager_t *pk, uint64_t now)
{
    if (pk->sweep_dir != NULL) {
        closedir(pk->sweep_dir);
        pk->sweep_dir = NULL;
    }

    if (pk->sweep_fd >= 0) {
        close(pk->sweep_fd);
        pk->sweep_fd = -1;

        if (pk->swept > 0) {
            log_info("orphan sweep: %" PRIu64 " upload(s) removed",
                     pk->swept);
        }
    }

    mm_buf_reset(&pk->sweep_names);
    pk->sweep_n = 0;
    pk->next_sweep = now + (uint64_t) pk->conf->orphan_sweep_s * 1000;
}


/* reads a few more entries: the old uploads go into the batch to look up */
static void
pk_sweep_read(packager_t *pk)
{
    int             i;
    struct dirent  *de;

    for (i = 0; i < PK_SWEEP_READ && pk->sweep_n < PK_SWEEP_BATCH; i++) {
        errno = 0;
        de = readdir(pk->sweep_dir);

        if (de == NULL) {
            if (errno != 0) {
                log_warn("orphan sweep: readdir %s", pk->conf->uploads_dir);
            }

            closedir(pk->sweep_dir);
            pk->sweep_dir = NULL;
            return;
        }

        if (!pk_upload_name(de->d_name) || pk_upload_age(pk, de->d_name) < 0)
        {
            continue;
        }

        mm_buf_puts(&pk->sweep_names, pk->sweep_n ? ",\"" : "{\"");
        mm_buf_puts(&pk->sweep_names, de->d_name);
        mm_buf_puts(&pk->sweep_names, "\"");
        pk->sweep_n++;
    }
}


/*
 * Drives the sweep a step: starts one when due, reads the directory a bit,
 * sends a batch of names once full (or the directory is read). 0: a
 * statement was sent.
 */
static int
pk_sweep(packager_t *pk, uint64_t now)
{
    int          fd;
    const char  *params[1];

    if (pk->sweep_fd < 0) {
        if (pk->conf->orphan_sweep_s == 0 || now < pk->next_sweep) {
            return -1;
        }

        pk->swept = 0;
        pk->sweep_fd = open(pk->conf->uploads_dir,
                            O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fd = pk->sweep_fd >= 0 ? dup(pk->sweep_fd) : -1;
        if (fd >= 0) {
            pk->sweep_dir = fdopendir(fd);
            if (pk->sweep_dir == NULL) {
                close(fd);
            }
        }

        if (pk->sweep_dir == NULL) {
            log_warn("orphan sweep: cannot read %s", pk->conf->uploads_dir);
            pk_sweep_end(pk, now);
            return -1;
        }
    }

    if (pk->sweep_dir != NULL) {
        pk_sweep_read(pk);
    }

    if (pk->sweep_names.failed) {
        log_warnx("orphan sweep: out of memory");
        pk_sweep_end(pk, now);
        return -1;
    }

    if (pk->sweep_n > 0
        && (pk->sweep_n >= PK_SWEEP_BATCH || pk->sweep_dir == NULL))
    {
        mm_buf_puts(&pk->sweep_names, "}");
        params[0] = pk->sweep_names.data;

        if (pk_send(pk, PK_OP_SWEEP, NULL, pk_sweep_sql, 1, params) == 0) {
            return 0;
        }

        /* sent again on the next turn */
        pk->sweep_names.len--;
        return -1;
    }

    if (pk->sweep_dir == NULL && pk->sweep_n == 0) {
        pk_sweep_end(pk, now);
    }

    return -1;
}


/* the names no row refers to: removed if still old enough */
static void
pk_swept(packager_t *pk, PGresult *res)
{
    int          i, n;
    long         age;
    const char  *name;

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        name = PQgetvalue(res, i, 0);

        if (!pk_upload_name(name)) {
            continue;
        }

        age = pk_upload_age(pk, name);
        if (age < 0) {
            continue;
        }

        if (unlinkat(pk->sweep_fd, name, 0) != 0) {
            if (errno != ENOENT) {
                log_warn("orphan sweep: unlink %s/%s", pk->conf->uploads_dir,
                         name);
            }
            continue;
        }

        pk->swept++;
        log_info("orphan sweep: removed %s/%s (%ld s old, no input_content "
                 "row refers to it)", pk->conf->uploads_dir, name, age);
    }
}


/* ---- the scheduler --------------------------------------------------- */


static int
pk_send_finish(packager_t *pk, pk_job_t *j)
{
    const char  *params[5];

    params[0] = j->id_str;
    params[1] = pk->me;
    params[2] = j->status;
    params[3] = j->error;
    params[4] = j->duration[0] ? j->duration : NULL;

    if (pk_send(pk, PK_OP_FINISH, j,
                pk->have_outbox ? pk_finish_outbox_sql : pk_finish_sql,
                5, params) != 0)
    {
        return -1;
    }

    j->state = PK_REPORTING;

    return 0;
}


static int
pk_send_probed(packager_t *pk, pk_probe_t *pr)
{
    const char  *params[4];

    params[0] = pr->id_str;
    params[1] = pr->status;
    params[2] = pr->probe.len > 0 ? pr->probe.data : NULL;
    params[3] = pr->error;

    if (pk_send(pk, PK_OP_PROBED, pr, pk_probed_sql, 4, params) != 0) {
        return -1;
    }

    pr->state = PK_REPORTING;

    return 0;
}


static void
pk_tick(packager_t *pk, uint64_t now)
{
    long          i;
    char          info[512], progress[16], secs[16];
    const char   *params[3];
    pk_job_t     *j;
    pk_probe_t   *pr;

    if (!pgc_ready(pk->pg)) {
        return;
    }

    if (!pk->schema_checked) {
        (void) pk_send(pk, PK_OP_SCHEMA, NULL, pk_schema_sql, 0, NULL);
        return;
    }

    /* 1. results */

    for (i = 0; i < pk->conf->jobs; i++) {
        if (pk->jobs[i].state == PK_REPORT) {
            (void) pk_send_finish(pk, &pk->jobs[i]);
            return;
        }
    }

    for (i = 0; i < pk->conf->probes; i++) {
        if (pk->probes[i].state == PK_REPORT) {
            (void) pk_send_probed(pk, &pk->probes[i]);
            return;
        }
    }

    /* 2. draining: give back what is in hand */

    if (pk->draining) {
        for (i = 0; i < pk->conf->jobs; i++) {
            j = &pk->jobs[i];
            if (j->state == PK_RUNNING && j->requeue) {
                j->requeue = 0;
                params[0] = j->id_str;
                params[1] = pk->me;
                (void) pk_send(pk, PK_OP_REQUEUE, j, pk_requeue_sql, 2,
                               params);
                return;
            }
        }

        for (i = 0; i < pk->conf->probes; i++) {
            pr = &pk->probes[i];
            if (pr->state == PK_RUNNING) {
                params[0] = pr->id_str;
                pr->state = PK_REPORTING;
                (void) pk_send(pk, PK_OP_UNPROBE, pr, pk_unprobe_sql, 1,
                               params);
                return;
            }
        }
    }

    /* 3. the rows' heartbeats */

    for (i = 0; i < pk->conf->jobs; i++) {
        j = &pk->jobs[i];

        if (j->state == PK_RUNNING && !pk->draining && now >= j->next_beat) {
            j->next_beat = now + PK_BEAT_MS;
            snprintf(progress, sizeof(progress), "%.3f",
                     j->pack ? pack_progress(j->pack) : 0.0);
            params[0] = j->id_str;
            params[1] = pk->me;
            params[2] = progress;
            (void) pk_send(pk, PK_OP_BEAT, j, pk_beat_sql, 3, params);
            return;
        }
    }

    /* 4. the daemon's heartbeat */

    if (heartbeat_due(&pk->hb, now)) {
        int  running, probing;

        running = (int) (pk->conf->jobs - pk_count(pk, 1, 0, PK_FREE));
        probing = (int) (pk->conf->probes - pk_count(pk, 0, 1, PK_FREE));

        snprintf(info, sizeof(info),
                 "{\"claimer\":\"%s\",\"jobs\":%d,\"probes\":%d,"
                 "\"packaged\":%" PRIu64 ",\"failed\":%" PRIu64
                 ",\"probed\":%" PRIu64 ",\"doorbell\":%" PRIu64 "}",
                 pk->me, running, probing, pk->packaged, pk->failed,
                 pk->probed, pk->rings);

        if (heartbeat_send(&pk->hb, pk->pg, info, now) == 0) {
            return;
        }
    }

    if (pk->draining) {
        return;
    }

    /* 5. packagers of this host that died: their rows are stale now */

    if (pk->dead.len > 0) {
        params[0] = pk->dead.data;
        (void) pk_send(pk, PK_OP_STALE, NULL, pk_stale_sql, 1, params);
        return;
    }

    if (now >= pk->next_scan) {
        pk->next_scan = now + PK_SCAN_MS;
        params[0] = pk->host;
        params[1] = pk->me;
        (void) pk_send(pk, PK_OP_SCAN, NULL, pk_scan_sql, 2, params);
        return;
    }

    /* 6. uploads no row refers to */

    if (pk_sweep(pk, now) == 0) {
        return;
    }

    /* 7. new work */

    if (now >= pk->next_poll) {
        pk->next_poll = now + (uint64_t) pk->conf->poll_ms;
        pk->want_probe = 1;
        pk->want_job = 1;
    }

    if (pk->want_probe && pk_count(pk, 0, 1, PK_FREE) > 0) {
        snprintf(secs, sizeof(secs), "%ld", pk->conf->probe_timeout * 2);
        params[0] = secs;
        (void) pk_send(pk, PK_OP_CLAIM_PROBE, NULL, pk_claim_probe_sql, 1,
                       params);
        return;
    }

    if (pk->want_job && pk_count(pk, 1, 0, PK_FREE) > 0) {
        snprintf(secs, sizeof(secs), "%ld", pk->conf->reclaim_after);
        params[0] = pk->me;
        params[1] = secs;
        (void) pk_send(pk, PK_OP_CLAIM_JOB, NULL, pk_claim_job_sql, 2,
                       params);
        return;
    }
}


/* ---- the loop's interface -------------------------------------------- */


/* the most poll items pk_poll_items() fills, dmain's included */
static int
pk_poll_max(const packager_t *pk)
{
    return 4 + (int) pk->conf->jobs * PACK_POLL_MAX
           + (int) pk->conf->probes * 3;
}


/* how many slots, of the jobs and/or of the probes, are in state */
static long
pk_count(const packager_t *pk, int jobs, int probes, pk_slot_state_t state)
{
    long  i, n;

    n = 0;

    for (i = 0; jobs && i < pk->conf->jobs; i++) {
        n += (pk->jobs[i].state == state);
    }

    for (i = 0; probes && i < pk->conf->probes; i++) {
        n += (pk->probes[i].state == state);
    }

    return n;
}


static int
pk_poll_items(void *obj, zmq_pollitem_t **itemsp, long *timeout)
{
    packager_t  *pk = obj;

    int              n, fd, t;
    long             i;
    short            events;
    uint64_t         now;
    zmq_pollitem_t  *items;

    items = pk->items;
    *itemsp = items;
    n = 1;                              /* 0 is dmain's signal pipe */
    now = now_mono_ms();
    *timeout = HEARTBEAT_INTERVAL;

    pk->idx_pull = -1;
    pk->idx_zap = -1;
    pk->idx_pg = -1;

    if (!pk->draining) {
        pk->idx_pull = n;
        dmain_item(&items[n++], pk->pull, 0, ZMQ_POLLIN);
    }

    pk->idx_zap = n;
    dmain_item(&items[n++], zap_socket(pk->zap), 0, ZMQ_POLLIN);

    fd = pgc_fd(pk->pg, &events);
    if (fd >= 0) {
        pk->idx_pg = n;
        dmain_item(&items[n++], NULL, fd, events);
    }

    t = pgc_timeout(pk->pg, now);
    if (t >= 0 && t < *timeout) {
        *timeout = t;
    }

    for (i = 0; i < pk->conf->jobs; i++) {
        if (pk->jobs[i].state == PK_RUNNING && pk->jobs[i].pack != NULL) {
            n += pack_poll_items(pk->jobs[i].pack, items + n, timeout);
        }
    }

    for (i = 0; i < pk->conf->probes; i++) {
        pk_probe_t  *pr = &pk->probes[i];

        if (pr->state != PK_RUNNING) {
            continue;
        }

        if (pr->out_fd >= 0) {
            dmain_item(&items[n++], NULL, pr->out_fd, ZMQ_POLLIN);
        }
        if (pr->err_fd >= 0) {
            dmain_item(&items[n++], NULL, pr->err_fd, ZMQ_POLLIN);
        }
        if (child_fd(&pr->child) >= 0) {
            dmain_item(&items[n++], NULL, child_fd(&pr->child), ZMQ_POLLIN);
        }

        t = child_timeout(&pr->child);
        if (t >= 0 && t < *timeout) {
            *timeout = t;
        }

        dmain_lower(timeout, pr->deadline, now);
    }

    if (pgc_ready(pk->pg)) {
        if (pk_count(pk, 1, 1, PK_REPORT) > 0
            || (!pk->draining && !pk->schema_checked))
        {
            *timeout = 0;
        }

        t = heartbeat_timeout(&pk->hb, now);
        if (t < *timeout) {
            *timeout = t;
        }

        for (i = 0; i < pk->conf->jobs; i++) {
            if (pk->jobs[i].state == PK_RUNNING) {
                dmain_lower(timeout, pk->jobs[i].next_beat, now);
            }
        }

        if (!pk->draining) {
            if ((pk->want_probe && pk_count(pk, 0, 1, PK_FREE) > 0)
                || (pk->want_job && pk_count(pk, 1, 0, PK_FREE) > 0)
                || pk->dead.len > 0
                || (pk->sweep_fd >= 0 && pk->op != PK_OP_SWEEP))
            {
                *timeout = 0;
            }

            if (pk->sweep_fd < 0 && pk->conf->orphan_sweep_s > 0) {
                dmain_lower(timeout, pk->next_sweep, now);
            }

            dmain_lower(timeout, pk->next_poll, now);
            dmain_lower(timeout, pk->next_scan, now);
        }
    }

    if (pk->draining) {
        dmain_lower(timeout, pk->drain_deadline, now);
    }

    return n;
}


/* every message on the doorbell means "look for work" */
static void
pk_doorbell(packager_t *pk)
{
    int  n;

    n = bell_drain(pk->pull);
    if (n == 0) {
        return;
    }

    pk->rings += (uint64_t) n;
    pk->want_probe = 1;
    pk->want_job = 1;

    log_debug("doorbell rang (%" PRIu64 " so far)", pk->rings);
}


static void
pk_process(void *obj, zmq_pollitem_t *items, int n)
{
    packager_t  *pk = obj;

    long      i;
    short     revents;

    if (pk->idx_zap >= 0 && pk->idx_zap < n
        && (items[pk->idx_zap].revents & ZMQ_POLLIN))
    {
        zap_handle(pk->zap);
    }

    if (pk->idx_pull >= 0 && pk->idx_pull < n
        && (items[pk->idx_pull].revents & ZMQ_POLLIN))
    {
        pk_doorbell(pk);
    }

    /* children: cheap to look at all of them (non-blocking reads) */

    for (i = 0; i < pk->conf->jobs; i++) {
        pk_job_process(pk, &pk->jobs[i]);
    }

    for (i = 0; i < pk->conf->probes; i++) {
        pk_probe_process(pk, &pk->probes[i]);
    }

    revents = 0;
    if (pk->idx_pg >= 0 && pk->idx_pg < n) {
        revents = items[pk->idx_pg].revents;
    }

    pgc_process(pk->pg, revents, now_mono_ms());

    pk_tick(pk, now_mono_ms());
}


static void
pk_reload(void *obj)
{
    packager_t  *pk = obj;

    log_info("SIGHUP: reloading %s", pk->conf->curve_clients_file);
    (void) zap_reload(pk->zap);
}


static void
pk_drain(void *obj)
{
    packager_t  *pk = obj;

    long  i;

    if (pk->draining) {
        return;
    }

    pk->draining = 1;
    pk->drain_deadline = now_mono_ms() + PK_DRAIN_MS;

    for (i = 0; i < pk->conf->jobs; i++) {
        pk_job_t  *j = &pk->jobs[i];

        if (j->state == PK_RUNNING) {
            /* ffmpeg goes now; the row is given back from the loop */
            pack_destroy(&j->pack);
            j->requeue = 1;
            log_info("packaged_content %" PRId64 ": stopped (shutting "
                     "down)", j->id);
        }
    }

    for (i = 0; i < pk->conf->probes; i++) {
        pk_probe_t  *pr = &pk->probes[i];

        if (pr->state == PK_RUNNING) {
            child_kill(&pr->child, SIGKILL);
            child_wait(&pr->child);
        }
    }

    log_info("draining");
}


static int
pk_finished(void *obj)
{
    packager_t  *pk = obj;

    if (!pk->draining) {
        return 0;
    }

    if (now_mono_ms() >= pk->drain_deadline) {
        log_warnx("drain timeout: the rows left are reclaimed once their "
                  "heartbeat is stale");
        return 1;
    }

    if (!pgc_up(pk->pg)) {
        return 1;
    }

    return pk->op == PK_OP_NONE
           && pk_count(pk, 1, 1, PK_FREE) == pk->conf->jobs + pk->conf->probes;
}
