/*
 * media-analytics: intake (ZeroMQ -> journal -> ACK) and the writer
 * (journal -> PostgreSQL). See analytics.h and docs/analytics-protocol.md.
 *
 * PostgreSQL is driven with libpq's non-blocking API (daemons/common/pgc):
 * the COPY, the INSERT and the heartbeat are sent and their results read
 * as the socket becomes ready in the same zmq_poll loop, so a slow or dead
 * server never stalls intake: events keep being journaled and ACKed and
 * the writer catches up from the journal's committed position.
 *
 * Journal records are one batch each, 'R' + the COPY text rows of its
 * events (validated and rendered once, at intake, with the time received;
 * older journals hold one event a record, read the same way):
 *
 *   request_id \t episode_id \t ts \t status \t bytes \t range \t auth \t
 *   cache \t client \t user_agent \t referrer \t source \t received_at \n
 */

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#include "analytics.h"
#include "buf.h"
#include "curvekey.h"
#include "heartbeat.h"
#include "journal.h"
#include "json.h"
#include "log.h"
#include "pgc.h"
#include "util.h"
#include "zap.h"


#define AN_EVENTS_MAX       10000           /* events in one batch */
#define AN_EVENT_BYTES_MAX  (64 * 1024)     /* one event's JSON */
#define AN_BATCH_BYTES_MAX  (16 * 1024 * 1024)
#define AN_FRAME_MAX        (256 * 1024)    /* ZMQ_MAXMSGSIZE */
#define AN_FIELD_MAX        2048
#define AN_REQUEST_ID_MAX   64
#define AN_TS_MAX           INT64_C(253402300799999)   /* 9999-12-31 */
#define AN_TS_LEN           26              /* "...HH:MM:SS.mmm+00" */
#define AN_GROUP_MAX        1024            /* batches before one fsync */
#define AN_GROUP_EVENTS     10000
#define AN_COPY_BYTES_MAX   (32 * 1024 * 1024)
#define AN_FLUSH_EVENTS     1000            /* no flush_ms wait past this */
#define AN_TAIL_BYTES_MAX   AN_COPY_BYTES_MAX
#define AN_BUF_KEEP         (1024 * 1024)   /* buffers shrink past this */
#define AN_DRAIN_MS         3000
#define AN_RID_MAX          256
#define AN_ZAP_DOMAIN       "analytics"
#define AN_POLL_MAX         4               /* pipe, router, zap, pg */
#define AN_VERSION          "0.1"


#define AN_COLUMNS                                                            \
    "request_id, episode_id, ts, status, bytes, range, auth, cache, "         \
    "client, user_agent, referrer, source, received_at"

static const char  an_setup_sql[] =
    "SET client_encoding TO 'UTF8'; "
    "CREATE TEMP TABLE analytics_events (LIKE events) "
    "ON COMMIT DELETE ROWS";

static const char  an_copy_sql[] =
    "BEGIN; COPY pg_temp.analytics_events (" AN_COLUMNS ") FROM STDIN";

/*
 * The fast path: duplicates only come from resends and replays after a
 * crash, so a batch is first COPYed straight into events; a unique
 * violation (SQLSTATE 23505) rolls it back and the same batch goes the
 * deduplicating way (temp table + INSERT ... ON CONFLICT DO NOTHING).
 */
static const char  an_direct_sql[] =
    "BEGIN; COPY events (" AN_COLUMNS ") FROM STDIN";

static const char  an_insert_sql[] =
    "INSERT INTO events (" AN_COLUMNS ") "
    "SELECT " AN_COLUMNS " FROM pg_temp.analytics_events "
    "ON CONFLICT (request_id) DO NOTHING; "
    "COMMIT";


/*
 * The fields of an event, in the order the module writes them (a member
 * is looked up from its own position first); the strings are in COPY
 * column order after bytes.
 */
enum {
    AN_REQUEST_ID = 0,
    AN_EPISODE_ID,
    AN_TS,
    AN_STATUS,
    AN_BYTES,
    AN_STR,                             /* the first string after bytes */
    AN_NFIELDS = AN_STR + 7
};

static const struct {
    const char          *name;
    size_t               len;
} an_fields[AN_NFIELDS] = {
#define AN_FIELD(s)  { s, sizeof(s) - 1 }
    AN_FIELD("request_id"), AN_FIELD("episode_id"), AN_FIELD("ts"),
    AN_FIELD("status"), AN_FIELD("bytes"), AN_FIELD("range"),
    AN_FIELD("auth"), AN_FIELD("cache"), AN_FIELD("client"),
    AN_FIELD("user_agent"), AN_FIELD("referrer"), AN_FIELD("source")
#undef AN_FIELD
};


typedef struct {
    int64_t              sec;           /* -1: none yet */
    char                 text[64];      /* "YYYY-MM-DD HH:MM:SS" */
} an_ts_cache_t;


/* a batch in the tail */
typedef struct {
    size_t               end;           /* tail bytes up to its end */
    size_t               events;        /* tail events up to its end */
    mm_journal_pos_t     pos;           /* journal position after it */
} an_mark_t;


typedef struct {
    unsigned char        rid[AN_RID_MAX];
    size_t               rid_len;
    unsigned char        id[8];
} an_ack_t;


struct analytics_s {
    const analytics_conf_t  *conf;
    void                *router;
    zap_t               *zap;
    pgc_t               *pg;
    heartbeat_t          hb;
    mm_journal_t        *journal;
    mm_journal_reader_t *reader;        /* next record for the writer */

    zmq_pollitem_t       items[AN_POLL_MAX];    /* 0: dmain's signal pipe */

    /* indexes in items of the last an_poll_items(), -1 absent */
    int                  idx_router;
    int                  idx_zap;
    int                  idx_pg;

    /* intake */
    mm_buf_t             rows;          /* records of the batch being read */
    an_ack_t            *acks;          /* batches journaled, to be ACKed */
    size_t               nacks;
    int                  group_failed;
    an_ts_cache_t        ts_cache[2];   /* for ts and received_at */

    /* writer */
    mm_buf_t             copy;          /* COPY data of the flush */
    mm_journal_pos_t     flush_end;     /* journal position after it */
    size_t               flush_events;
    long                 flush_inserted;
    int                  flush_direct;   /* COPY straight into events */
    int                  flush_conflict; /* ... and it hit a duplicate */
    int                  flushing;
    int                  flush_now;     /* backlog: do not wait flush_ms */
    uint64_t             pending_since; /* first event journaled since */
    uint64_t             pending_events;

    /*
     * While the writer keeps up, intake also appends each journaled batch
     * to tail, so a flush takes its rows from memory instead of reading
     * the journal back: tail then holds every record from tail_start to
     * the journal's end, and the reader is closed. The reader replays
     * after a start or a failed flush, and catches up when the tail
     * overflows (AN_TAIL_BYTES_MAX, or two flushes' worth of events).
     */
    int                  tail_on;
    mm_buf_t             tail;
    size_t               tail_events;
    mm_journal_pos_t     tail_start;
    an_mark_t           *marks;         /* the batches in the tail */
    size_t               nmarks;
    size_t               marks_cap;

    int                  draining;
    uint64_t             drain_deadline;

    /* counters */
    uint64_t             received;
    uint64_t             batches;
    uint64_t             naks;
    uint64_t             written;
    uint64_t             inserted;
};


static int an_conf_check(void *conf);
static void *an_create(void *conf, void *zctx);
static void an_destroy(void **obj);
static void an_free(analytics_t *a);
static int an_poll_items(void *obj, zmq_pollitem_t **items, long *timeout);
static void an_process(void *obj, zmq_pollitem_t *items, int n);
static void an_reload(void *obj);
static void an_drain(void *obj);
static int an_finished(void *obj);
static int an_mkdirs(const char *path);
static char *an_put_ts(an_ts_cache_t *tc, char *p, int64_t ms);
static void an_fields_of(const mm_json_t *obj,
    const mm_json_t *f[AN_NFIELDS]);
static int an_int(const mm_json_t *v, int64_t *out);
static int an_render(analytics_t *a, const char *text, size_t len,
    size_t *used, uint64_t received, char *err, size_t err_size);
static void an_render_frame(analytics_t *a, const char *data, size_t size,
    uint64_t received, size_t *nevents, char *reason, size_t reason_size);
static void an_reply(analytics_t *a, const unsigned char *rid,
    size_t rid_len, const char *cmd, const unsigned char *id,
    const char *reason);
static int an_recv_message(analytics_t *a, size_t *events);
static void an_pg_io(analytics_t *a);
static void an_intake(analytics_t *a, uint64_t now);
static void an_tail_append(analytics_t *a, size_t nevents);
static int an_has_unread(analytics_t *a);
static void an_tail_start(analytics_t *a, mm_journal_pos_t pos);
static void an_tail_stop(analytics_t *a);
static void an_rewind(analytics_t *a);
static void an_commit(analytics_t *a);
static int an_flush_due(analytics_t *a, uint64_t now);
static void an_reader_open(analytics_t *a, mm_journal_pos_t pos);
static size_t an_flush_take_tail(analytics_t *a);
static size_t an_count_rows(const char *p, size_t len);
static size_t an_flush_read(analytics_t *a);
static void an_flush_start(analytics_t *a);
static void an_flush_failed(analytics_t *a, const char *what,
    const char *error);
static void an_copy_result(void *arg, pgc_t *c, PGresult *res);
static void an_copy_done(void *arg, pgc_t *c, const char *error);
static void an_insert_result(void *arg, pgc_t *c, PGresult *res);
static void an_insert_done(void *arg, pgc_t *c, const char *error);
static void an_tick(analytics_t *a, uint64_t now);


const conf_def_t  analytics_conf_defs[] = {
    { "db", CONF_STRING, offsetof(analytics_conf_t, db), 1,
      NULL, 0, 0, 0 },
    { "listen", CONF_STRING, offsetof(analytics_conf_t, listen), 1,
      NULL, 0, 0, 0 },
    { "curve_key_file", CONF_STRING,
      offsetof(analytics_conf_t, curve_key_file), 1, NULL, 0, 0, 0 },
    { "curve_clients_file", CONF_STRING,
      offsetof(analytics_conf_t, curve_clients_file), 1, NULL, 0, 0, 0 },
    { "journal_dir", CONF_STRING, offsetof(analytics_conf_t, journal_dir),
      1, NULL, 0, 0, 0 },
    { "batch_max", CONF_INT, offsetof(analytics_conf_t, batch_max), 0,
      NULL, 5000, 1, 1000000 },
    { "flush_ms", CONF_INT, offsetof(analytics_conf_t, flush_ms), 0,
      NULL, 200, 1, 60000 },
    { "heartbeat_name", CONF_STRING,
      offsetof(analytics_conf_t, heartbeat_name), 0, "analytics", 0, 0, 0 },
    { "pid_file", CONF_STRING, offsetof(analytics_conf_t, pid_file), 0,
      NULL, 0, 0, 0 },
    { NULL, 0, 0, 0, NULL, 0, 0, 0 }
};


const dmain_t  analytics_main = {
    "media-analytics", AN_VERSION, analytics_conf_defs,
    sizeof(analytics_conf_t), offsetof(analytics_conf_t, pid_file),
    an_conf_check, an_create, an_destroy, an_poll_items, an_process,
    an_reload, an_drain, an_finished
};


static int
an_conf_check(void *cf)
{
    analytics_conf_t  *conf = cf;

    char        pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char        err[512];
    size_t      n;
    uint8_t   (*keys)[32];

    if (mm_curvekey_load(conf->curve_key_file, pub, sec, err, sizeof(err))
        != MM_OK)
    {
        log_warnx("curve_key_file: %s", err);
        return -1;
    }

    explicit_bzero(sec, sizeof(sec));

    if (zap_keys_load(conf->curve_clients_file, &keys, &n) != 0) {
        return -1;
    }

    free(keys);

    if (strlen(conf->heartbeat_name) > 63) {
        log_warnx("heartbeat_name: at most 63 characters");
        return -1;
    }

    return 0;
}


/* mkdir -p, 0700 for what it creates */
static int
an_mkdirs(const char *path)
{
    char   *p, *s;
    int     rc;

    s = strdup(path);
    if (s == NULL) {
        return -1;
    }

    rc = 0;

    for (p = s + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char  c = *p;

            *p = '\0';
            if (mkdir(s, 0700) != 0 && errno != EEXIST) {
                rc = -1;
                break;
            }
            *p = c;

            if (c == '\0') {
                break;
            }
        }
    }

    free(s);

    return rc;
}


static void *
an_create(void *cf, void *zctx)
{
    analytics_conf_t  *conf = cf;

    int                 one, linger;
    char                pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char                err[512];
    int64_t             maxmsg;
    mm_status_t         st;
    analytics_t        *a;
    mm_journal_pos_t    pos;

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        log_warn("calloc");
        return NULL;
    }

    a->conf = conf;
    a->ts_cache[0].sec = -1;
    a->ts_cache[1].sec = -1;
    mm_buf_init(&a->rows);
    mm_buf_init(&a->copy);
    mm_buf_init(&a->tail);
    heartbeat_init(&a->hb, conf->heartbeat_name);

    a->acks = malloc(sizeof(an_ack_t) * AN_GROUP_MAX);
    if (a->acks == NULL) {
        log_warn("malloc");
        goto failed;
    }

    /* the journal */

    if (an_mkdirs(conf->journal_dir) != 0) {
        log_warn("%s", conf->journal_dir);
        goto failed;
    }

    st = mm_journal_open(&a->journal, conf->journal_dir, NULL);
    if (st == MM_EAGAIN) {
        log_warnx("journal %s: locked by another process",
                  conf->journal_dir);
        goto failed;
    }

    if (st != MM_OK) {
        if (st == MM_EIO) {
            log_warn("journal %s", conf->journal_dir);
        } else {
            log_warnx("journal %s: %s", conf->journal_dir, mm_strstatus(st));
        }
        goto failed;
    }

    if (mm_journal_truncated(a->journal) > 0) {
        log_warnx("journal %s: cut off a torn tail of %" PRIu64 " bytes",
                  conf->journal_dir, mm_journal_truncated(a->journal));
    }

    pos = mm_journal_committed(a->journal);
    log_info("journal %s: committed %" PRIu64 ":%" PRIu64 ", %" PRIu64
             " bytes to replay", conf->journal_dir, pos.seg, pos.off,
             mm_journal_lag(a->journal));

    an_rewind(a);
    if (a->reader == NULL) {
        goto failed;
    }

    a->flush_now = 1;

    /* PostgreSQL: connects from the loop */

    a->pg = pgc_new("postgresql", conf->db, an_setup_sql);
    if (a->pg == NULL) {
        goto failed;
    }

    /* ZAP before the CURVE server socket */

    a->zap = zap_new(zctx, conf->curve_clients_file);
    if (a->zap == NULL) {
        goto failed;
    }

    if (mm_curvekey_load(conf->curve_key_file, pub, sec, err, sizeof(err))
        != MM_OK)
    {
        log_warnx("curve_key_file: %s", err);
        goto failed;
    }

    a->router = zmq_socket(zctx, ZMQ_ROUTER);
    if (a->router == NULL) {
        log_warnx("zmq_socket: %s", zmq_strerror(errno));
        goto failed;
    }

    one = 1;
    linger = 1000;
    maxmsg = AN_FRAME_MAX;

    if (zmq_setsockopt(a->router, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0
        || zmq_setsockopt(a->router, ZMQ_CURVE_SECRETKEY, sec,
                          MM_CURVE_KEY_LEN + 1) != 0
        || zmq_setsockopt(a->router, ZMQ_ZAP_DOMAIN, AN_ZAP_DOMAIN,
                          strlen(AN_ZAP_DOMAIN)) != 0
        || zmq_setsockopt(a->router, ZMQ_MAXMSGSIZE, &maxmsg,
                          sizeof(maxmsg)) != 0
        || zmq_setsockopt(a->router, ZMQ_LINGER, &linger, sizeof(linger))
           != 0)
    {
        explicit_bzero(sec, sizeof(sec));
        log_warnx("zmq_setsockopt: %s", zmq_strerror(errno));
        goto failed;
    }

    explicit_bzero(sec, sizeof(sec));

    if (zmq_bind(a->router, conf->listen) != 0) {
        log_warnx("zmq_bind %s: %s", conf->listen, zmq_strerror(errno));
        goto failed;
    }

    log_info("listening on %s (CURVE server key %s)", conf->listen, pub);

    return a;

failed:

    an_free(a);

    return NULL;
}


static void
an_destroy(void **obj)
{
    an_free(*obj);
    *obj = NULL;
}


static void
an_free(analytics_t *a)
{
    if (a == NULL) {
        return;
    }

    if (a->router != NULL) {
        zmq_close(a->router);
    }

    zap_destroy(&a->zap);
    pgc_destroy(&a->pg);
    mm_journal_reader_close(&a->reader);
    mm_journal_close(&a->journal);
    mm_buf_free(&a->rows);
    mm_buf_free(&a->copy);
    mm_buf_free(&a->tail);
    free(a->marks);
    free(a->acks);
    free(a);
}


/* ---- intake ---------------------------------------------------------- */


/*
 * A timestamptz in COPY text, "YYYY-MM-DD HH:MM:SS.mmm+00" (AN_TS_LEN), at
 * p; returns the end. ms is 0..AN_TS_MAX. The date and time of the last
 * second seen by this cache are kept: events of a batch share a few.
 */
static char *
an_put_ts(an_ts_cache_t *tc, char *p, int64_t ms)
{
    int        frac;
    time_t     t;
    struct tm  tm;

    if (ms / 1000 != tc->sec) {
        t = (time_t) (ms / 1000);
        gmtime_r(&t, &tm);

        snprintf(tc->text, sizeof(tc->text), "%04d-%02d-%02d %02d:%02d:%02d",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec);

        tc->sec = ms / 1000;
    }

    memcpy(p, tc->text, 19);
    p += 19;

    frac = (int) (ms % 1000);
    *p++ = '.';
    *p++ = (char) ('0' + frac / 100);
    *p++ = (char) ('0' + frac / 10 % 10);
    *p++ = (char) ('0' + frac % 10);
    *p++ = '+';
    *p++ = '0';
    *p++ = '0';

    return p;
}


/* the members of obj that are event fields (the first of duplicates) */
static void
an_fields_of(const mm_json_t *obj, const mm_json_t *f[AN_NFIELDS])
{
    size_t                   i, j, k;
    const mm_json_member_t  *m;

    memset(f, 0, sizeof(const mm_json_t *) * AN_NFIELDS);

    for (i = 0; i < obj->u.obj.n; i++) {
        m = &obj->u.obj.members[i];

        for (j = 0; j < AN_NFIELDS; j++) {
            k = (i + j) % AN_NFIELDS;

            if (m->key_len == an_fields[k].len
                && memcmp(m->key, an_fields[k].name, m->key_len) == 0)
            {
                if (f[k] == NULL) {
                    f[k] = &m->value;
                }
                break;
            }
        }
    }
}


/* 1 and *out when v is an integer */
static int
an_int(const mm_json_t *v, int64_t *out)
{
    if (v == NULL || v->type != MM_JSON_NUMBER || !v->u.num.is_int) {
        return 0;
    }

    *out = v->u.num.i;

    return 1;
}


/*
 * Validates the event at the start of text[0..len) and appends its COPY
 * row to a->rows; *used is the length of its JSON (and the whitespace
 * after it). 0, or -1 with a reason in err.
 */
static int
an_render(analytics_t *a, const char *text, size_t len, size_t *used,
    uint64_t received, char *err, size_t err_size)
{
    char              perr[160], *p;
    char              line[AN_REQUEST_ID_MAX + 3 * (MM_JSON_INT_MAX + 1)
                           + AN_TS_LEN + 8];
    size_t            i, n;
    int64_t           episode, status, ts, bytes;
    const char       *s[7], *rid;
    size_t            slen[7], rid_len;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *v, *f[AN_NFIELDS];

    st = mm_json_parse_prefix(text, len, used, &doc, &root, perr,
                              sizeof(perr));
    if (st != MM_OK) {
        snprintf(err, err_size, "invalid JSON: %s", perr);
        return -1;
    }

    if (*used > AN_EVENT_BYTES_MAX) {
        snprintf(err, err_size, "event over %d bytes", AN_EVENT_BYTES_MAX);
        goto bad;
    }

    if (root->type != MM_JSON_OBJECT) {
        snprintf(err, err_size, "not a JSON object");
        goto bad;
    }

    an_fields_of(root, f);

    v = f[AN_REQUEST_ID];

    if (v == NULL || v->type != MM_JSON_STRING || v->u.str.len == 0
        || v->u.str.len > AN_REQUEST_ID_MAX)
    {
        snprintf(err, err_size, "request_id: 1..%d characters required",
                 AN_REQUEST_ID_MAX);
        goto bad;
    }

    rid = v->u.str.s;
    rid_len = v->u.str.len;

    for (i = 0; i < rid_len; i++) {
        char  c = rid[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':'
              || c == '-'))
        {
            snprintf(err, err_size, "request_id: only [A-Za-z0-9_.:-]");
            goto bad;
        }
    }

    if (!an_int(f[AN_EPISODE_ID], &episode) || episode <= 0) {
        snprintf(err, err_size, "episode_id: an integer > 0 required");
        goto bad;
    }

    if (!an_int(f[AN_STATUS], &status) || status < 100 || status > 599) {
        snprintf(err, err_size, "status: an integer 100..599 required");
        goto bad;
    }

    v = f[AN_TS];
    if (v == NULL || v->type == MM_JSON_NULL) {
        ts = (int64_t) received;

    } else if (!an_int(v, &ts) || ts < 0 || ts > AN_TS_MAX) {
        snprintf(err, err_size, "ts: milliseconds since the epoch");
        goto bad;
    }

    v = f[AN_BYTES];
    if (v == NULL || v->type == MM_JSON_NULL) {
        bytes = 0;

    } else if (!an_int(v, &bytes) || bytes < 0) {
        snprintf(err, err_size, "bytes: an integer >= 0");
        goto bad;
    }

    n = AN_NFIELDS - AN_STR;

    for (i = 0; i < n; i++) {
        s[i] = NULL;
        slen[i] = 0;

        v = f[AN_STR + i];
        if (v == NULL || v->type == MM_JSON_NULL) {
            continue;
        }

        if (v->type != MM_JSON_STRING || v->u.str.len > AN_FIELD_MAX
            || memchr(v->u.str.s, '\0', v->u.str.len) != NULL)
        {
            snprintf(err, err_size, "%s: a string of at most %d bytes "
                     "without NUL, or null", an_fields[AN_STR + i].name,
                     AN_FIELD_MAX);
            goto bad;
        }

        s[i] = v->u.str.s;
        slen[i] = v->u.str.len;
    }

    /* source is NOT NULL DEFAULT 'nginx' */
    if (s[n - 1] == NULL) {
        s[n - 1] = "nginx";
        slen[n - 1] = 5;
    }

    /* no printf: it was a third of the daemon's time per event */
    p = line;
    memcpy(p, rid, rid_len);
    p += rid_len;
    *p++ = '\t';
    p = mm_json_int(p, episode);
    *p++ = '\t';
    p = an_put_ts(&a->ts_cache[0], p, ts);
    *p++ = '\t';
    p = mm_json_int(p, status);
    *p++ = '\t';
    p = mm_json_int(p, bytes);
    mm_buf_append(&a->rows, line, (size_t) (p - line));

    for (i = 0; i < n; i++) {
        mm_buf_append(&a->rows, "\t", 1);
        pgc_copy_escape(&a->rows, s[i], slen[i]);
    }

    p = line;
    *p++ = '\t';
    p = an_put_ts(&a->ts_cache[1], p, (int64_t) received);
    *p++ = '\n';
    mm_buf_append(&a->rows, line, (size_t) (p - line));

    mm_json_doc_free(&doc);

    return 0;

bad:

    mm_json_doc_free(&doc);

    return -1;
}


/*
 * The events of one frame: a JSON object, or several separated by
 * whitespace ('\n' from our producers), each validated and rendered into
 * a->rows. Counts them in *nevents (numbered across the batch); stops at
 * the first bad one with a reason.
 */
static void
an_render_frame(analytics_t *a, const char *data, size_t size,
    uint64_t received, size_t *nevents, char *reason, size_t reason_size)
{
    size_t  off, used, n;

    off = 0;

    do {
        (*nevents)++;

        if (*nevents > AN_EVENTS_MAX) {
            snprintf(reason, reason_size, "more than %d events",
                     AN_EVENTS_MAX);
            return;
        }

        if (an_render(a, data + off, size - off, &used, received,
                      reason + 32, reason_size - 32) != 0)
        {
            /* prefix the event number */
            n = (size_t) snprintf(reason, 32, "event %zu: ", *nevents);
            memmove(reason + n, reason + 32, strlen(reason + 32) + 1);
            return;
        }

        if (a->rows.len > AN_BATCH_BYTES_MAX) {
            snprintf(reason, reason_size, "batch over %d bytes",
                     AN_BATCH_BYTES_MAX);
            return;
        }

        off += used;

    } while (off < size);
}


static void
an_reply(analytics_t *a, const unsigned char *rid, size_t rid_len,
    const char *cmd, const unsigned char *id, const char *reason)
{
    int  flags;

    flags = ZMQ_DONTWAIT | ZMQ_SNDMORE;

    /* ROUTER drops what it cannot route: a gone producer resends */
    if (zmq_send(a->router, rid, rid_len, flags) < 0
        || zmq_send(a->router, cmd, strlen(cmd), flags) < 0
        || zmq_send(a->router, id, 8, reason ? flags : ZMQ_DONTWAIT) < 0
        || (reason != NULL
            && zmq_send(a->router, reason, strlen(reason), ZMQ_DONTWAIT) < 0))
    {
        log_debug("reply %s: %s", cmd, zmq_strerror(errno));
    }
}


/*
 * Reads one message if there is one: 1 read, 0 none. EVENTS batches that
 * validate are appended to the journal and queued in a->acks; malformed
 * ones are NAKed at once, PINGs PONGed.
 */
static int
an_recv_message(analytics_t *a, size_t *events)
{
    int             more, cmd, have_id, bad;
    char            reason[256];
    size_t          idx, nevents, size;
    uint64_t        received;
    zmq_msg_t       m;
    an_ack_t       *ack;
    mm_status_t     st;
    unsigned char  *data;

    zmq_msg_init(&m);

    if (zmq_msg_recv(&m, a->router, ZMQ_DONTWAIT) < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            log_warnx("zmq_msg_recv: %s", zmq_strerror(errno));
        }
        zmq_msg_close(&m);
        return 0;
    }

    received = now_real_ms();
    ack = &a->acks[a->nacks];
    cmd = 0;                    /* 1 EVENTS, 2 PING, -1 other */
    have_id = 0;
    bad = 0;
    nevents = 0;
    reason[0] = '\0';
    mm_buf_reset(&a->rows);
    mm_buf_append(&a->rows, "R", 1);

    for (idx = 0; ; idx++) {
        data = zmq_msg_data(&m);
        size = zmq_msg_size(&m);

        if (idx == 0) {
            if (size == 0 || size > AN_RID_MAX) {
                bad = 1;
            } else {
                memcpy(ack->rid, data, size);
                ack->rid_len = size;
            }

        } else if (idx == 1) {
            if (size == 6 && memcmp(data, "EVENTS", 6) == 0) {
                cmd = 1;
            } else if (size == 4 && memcmp(data, "PING", 4) == 0) {
                cmd = 2;
            } else {
                cmd = -1;
            }

        } else if (idx == 2) {
            if (size == 8) {
                memcpy(ack->id, data, 8);
                have_id = 1;
            }

        } else if (cmd == 1 && have_id && reason[0] == '\0') {
            an_render_frame(a, (const char *) data, size, received,
                            &nevents, reason, sizeof(reason));
        }

        more = zmq_msg_more(&m);
        zmq_msg_close(&m);

        if (!more) {
            break;
        }

        zmq_msg_init(&m);

        if (zmq_msg_recv(&m, a->router, 0) < 0) {
            log_warnx("zmq_msg_recv: %s", zmq_strerror(errno));
            zmq_msg_close(&m);
            bad = 1;
            break;
        }
    }

    if (bad || !have_id || cmd <= 0 || (cmd == 2 && idx != 2)) {
        log_debug("dropped a malformed message (%zu frames)", idx + 1);
        goto done;
    }

    if (cmd == 2) {
        an_reply(a, ack->rid, ack->rid_len, "PONG", ack->id, NULL);
        goto done;
    }

    if (nevents == 0 && reason[0] == '\0') {
        snprintf(reason, sizeof(reason), "no events");
    }

    if (a->rows.failed && reason[0] == '\0') {
        /* not the producer's fault: no reply, it will resend */
        log_warnx("out of memory for a batch of %zu events", nevents);
        goto done;
    }

    if (reason[0] != '\0') {
        log_warnx("NAK batch of %zu events: %s", nevents, reason);
        an_reply(a, ack->rid, ack->rid_len, "NAK", ack->id, reason);
        a->naks++;
        goto done;
    }

    a->received += nevents;
    a->batches++;
    *events += nevents;

    if (a->group_failed) {
        goto done;
    }

    /* the whole batch is one record: one CRC, one copy */
    st = mm_journal_append(a->journal, a->rows.data, a->rows.len);
    if (st != MM_OK) {
        if (st == MM_EIO) {
            log_warn("journal %s: append", a->conf->journal_dir);
        } else {
            log_warnx("journal %s: append: %s", a->conf->journal_dir,
                      mm_strstatus(st));
        }
        a->group_failed = 1;
        goto done;
    }

    if (a->tail_on) {
        an_tail_append(a, nevents);
    }

    a->nacks++;

done:

    if (a->rows.cap > AN_BUF_KEEP) {
        mm_buf_free(&a->rows);
    }

    return 1;
}


/* the rows of a->rows, just journaled, go to the tail too */
static void
an_tail_append(analytics_t *a, size_t nevents)
{
    size_t      cap;
    an_mark_t  *m;

    if (a->tail_events + nevents > 2 * (size_t) a->conf->batch_max
        || a->tail.len + a->rows.len > AN_TAIL_BYTES_MAX)
    {
        /* PostgreSQL is behind: the reader catches up instead */
        an_tail_stop(a);
        return;
    }

    if (a->nmarks == a->marks_cap) {
        cap = a->marks_cap ? 2 * a->marks_cap : 256;
        m = realloc(a->marks, cap * sizeof(an_mark_t));
        if (m == NULL) {
            log_warn("realloc: reading the journal back");
            an_tail_stop(a);
            return;
        }
        a->marks = m;
        a->marks_cap = cap;
    }

    /* without the record's 'R' */
    mm_buf_append(&a->tail, a->rows.data + 1, a->rows.len - 1);

    if (a->tail.failed) {
        log_warnx("out of memory for the tail: reading the journal back");
        an_tail_stop(a);
        return;
    }

    a->tail_events += nevents;

    m = &a->marks[a->nmarks++];
    m->end = a->tail.len;
    m->events = a->tail_events;
    m->pos = mm_journal_end(a->journal);
}


/* PostgreSQL's socket without waiting, as the loop would */
static void
an_pg_io(analytics_t *a)
{
    zmq_pollitem_t  item;

    item.socket = NULL;
    item.fd = pgc_fd(a->pg, &item.events);
    item.revents = 0;

    if (item.fd < 0 || zmq_poll(&item, 1, 0) < 0) {
        return;
    }

    pgc_process(a->pg, item.revents, now_mono_ms());
}


/*
 * Reads every message available (up to a limit), then one fdatasync for
 * all of them, then the ACKs: group commit. PostgreSQL's I/O goes on
 * between messages, so the COPY in flight is fed and its end noticed
 * without waiting for the whole group.
 */
static void
an_intake(analytics_t *a, uint64_t now)
{
    size_t  i, n, events;

    a->nacks = 0;
    a->group_failed = 0;
    events = 0;

    for (n = 0; n < AN_GROUP_MAX && a->nacks < AN_GROUP_MAX
                && events < AN_GROUP_EVENTS; n++)
    {
        if (!an_recv_message(a, &events)) {
            break;
        }

        if (pgc_up(a->pg) && !pgc_ready(a->pg)) {
            an_pg_io(a);
        }

        /* the writer is free for a backlog: sync what we have, then flush */
        if (a->flush_now && !a->flushing && pgc_ready(a->pg)) {
            break;
        }
    }

    if (a->nacks == 0 && !a->group_failed) {
        return;
    }

    if (a->group_failed || mm_journal_sync(a->journal) != MM_OK) {
        if (!a->group_failed) {
            log_warn("journal %s: fdatasync", a->conf->journal_dir);
        }

        /* what the journal kept of the group is read back from it */
        if (a->tail_on) {
            an_tail_stop(a);
        }

        log_warnx("%zu batches not acknowledged (producers resend)",
                  a->nacks);
        a->nacks = 0;
        return;
    }

    for (i = 0; i < a->nacks; i++) {
        an_reply(a, a->acks[i].rid, a->acks[i].rid_len, "ACK",
                 a->acks[i].id, NULL);
    }

    log_debug("journaled and acknowledged %zu batches, %zu events",
              a->nacks, events);

    a->pending_events += events;

    if (a->pending_since == 0) {
        a->pending_since = now ? now : 1;
    }

    a->nacks = 0;
}


/* ---- writer ---------------------------------------------------------- */


static int
an_has_unread(analytics_t *a)
{
    if (a->tail_on) {
        return a->tail_events > 0;
    }

    return a->reader != NULL
           && mm_journal_pos_cmp(mm_journal_reader_pos(a->reader),
                                 mm_journal_end(a->journal)) < 0;
}


/* the reader is at the journal's end, pos: rows come from intake now */
static void
an_tail_start(analytics_t *a, mm_journal_pos_t pos)
{
    mm_journal_reader_close(&a->reader);
    mm_buf_reset(&a->tail);
    a->tail_events = 0;
    a->nmarks = 0;
    a->tail_start = pos;
    a->tail_on = 1;

    log_debug("journal %s: caught up at %" PRIu64 ":%" PRIu64,
              a->conf->journal_dir, pos.seg, pos.off);
}


/*
 * The writer reads the journal from pos (the tail is dropped); the reader
 * stays NULL on failure (retried).
 */
static void
an_reader_open(analytics_t *a, mm_journal_pos_t pos)
{
    mm_status_t  st;

    a->tail_on = 0;
    a->tail_events = 0;
    a->nmarks = 0;
    mm_buf_free(&a->tail);

    mm_journal_reader_close(&a->reader);

    st = mm_journal_reader_open(&a->reader, a->conf->journal_dir, pos, NULL);
    if (st != MM_OK) {
        log_warn("journal %s: reader", a->conf->journal_dir);
        a->reader = NULL;
    }
}


/* back to the reader, from where the tail starts */
static void
an_tail_stop(analytics_t *a)
{
    an_reader_open(a, a->tail_start);
}


/* the reader (re)starts at the committed position */
static void
an_rewind(analytics_t *a)
{
    an_reader_open(a, mm_journal_committed(a->journal));

    a->flush_now = 1;
}


static void
an_commit(analytics_t *a)
{
    mm_status_t  st;

    st = mm_journal_commit(a->journal, a->flush_end);

    if (st == MM_EIO) {
        log_warn("journal %s: commit", a->conf->journal_dir);

    } else if (st != MM_OK) {
        /* the end moved back under the reader after a failed sync */
        log_warnx("journal %s: commit %" PRIu64 ":%" PRIu64 ": %s",
                  a->conf->journal_dir, a->flush_end.seg, a->flush_end.off,
                  mm_strstatus(st));
    }
}


static int
an_flush_due(analytics_t *a, uint64_t now)
{
    if (!an_has_unread(a)) {
        return 0;
    }

    /*
     * An idle writer waits up to flush_ms to batch a trickle, but not for
     * more than AN_FLUSH_EVENTS: a COPY that big pays for its transaction.
     */
    return a->draining || a->flush_now || a->pending_since == 0
           || a->pending_events >= AN_FLUSH_EVENTS
           || a->pending_events >= (uint64_t) a->conf->batch_max
           || now >= a->pending_since + (uint64_t) a->conf->flush_ms;
}


/*
 * The flush's COPY data from the tail: whole batches, up to batch_max
 * events and AN_COPY_BYTES_MAX bytes (one batch at least). Returns the
 * events.
 */
static size_t
an_flush_take_tail(analytics_t *a)
{
    size_t     i, k;
    mm_buf_t   b;
    an_mark_t  m;

    for (k = 1; k < a->nmarks; k++) {
        if (a->marks[k].events > (size_t) a->conf->batch_max
            || a->marks[k].end > AN_COPY_BYTES_MAX)
        {
            break;
        }
    }

    m = a->marks[k - 1];

    if (k == a->nmarks) {
        /* all of it: the buffers change places */
        b = a->copy;
        a->copy = a->tail;
        a->tail = b;
        mm_buf_reset(&a->tail);

    } else {
        mm_buf_reset(&a->copy);
        mm_buf_append(&a->copy, a->tail.data, m.end);

        if (a->copy.failed) {
            return 0;
        }

        a->tail.len -= m.end;
        memmove(a->tail.data, a->tail.data + m.end, a->tail.len + 1);

        for (i = k; i < a->nmarks; i++) {
            a->marks[i - k].end = a->marks[i].end - m.end;
            a->marks[i - k].events = a->marks[i].events - m.events;
            a->marks[i - k].pos = a->marks[i].pos;
        }
    }

    a->nmarks -= k;
    a->tail_events -= m.events;
    a->flush_end = m.pos;
    a->tail_start = m.pos;

    return m.events;
}


/* rows end in '\n' (COPY escapes the ones in values) */
static size_t
an_count_rows(const char *p, size_t len)
{
    size_t       n;
    const char  *end, *nl;

    n = 0;
    end = p + len;

    while ((nl = memchr(p, '\n', (size_t) (end - p))) != NULL) {
        n++;
        p = nl + 1;
    }

    return n;
}


/*
 * Reads a flush's worth from the journal: whole batches, up to batch_max
 * events and AN_COPY_BYTES_MAX bytes (one batch at least). Returns the
 * events.
 */
static size_t
an_flush_read(analytics_t *a)
{
    size_t             n, rows, len;
    const void        *data;
    mm_status_t        st;
    mm_journal_pos_t   pos;
    const char        *p;

    mm_buf_reset(&a->copy);
    n = 0;
    st = MM_OK;

    while (n < (size_t) a->conf->batch_max && a->copy.len < AN_COPY_BYTES_MAX)
    {
        pos = mm_journal_reader_pos(a->reader);
        st = mm_journal_reader_next(a->reader, &data, &len);

        if (st == MM_OK) {
            p = data;

            if (len < 2 || p[0] != 'R' || p[len - 1] != '\n') {
                log_warnx("journal %s: skipped an unknown record at "
                          "%" PRIu64 ":%" PRIu64, a->conf->journal_dir,
                          pos.seg, pos.off);
                continue;
            }

            rows = an_count_rows(p + 1, len - 1);

            if (n > 0 && (n + rows > (size_t) a->conf->batch_max
                          || a->copy.len + len - 1 > AN_COPY_BYTES_MAX))
            {
                /* whole batches only: this one starts the next flush */
                a->flush_end = pos;
                an_reader_open(a, pos);
                return n;
            }

            mm_buf_append(&a->copy, p + 1, len - 1);
            n += rows;
            continue;
        }

        if (st == MM_EAGAIN) {
            break;
        }

        if (st == MM_ECORRUPT) {
            log_warnx("journal %s: corrupt record at %" PRIu64 ":%" PRIu64
                      ", the rest of that segment is lost",
                      a->conf->journal_dir, pos.seg, pos.off);

            if (pos.seg == mm_journal_end(a->journal).seg
                && mm_journal_rotate(a->journal) != MM_OK)
            {
                log_warn("journal %s: rotate", a->conf->journal_dir);
                break;
            }

            mm_journal_reader_skip_segment(a->reader);
            continue;
        }

        log_warn("journal %s: read", a->conf->journal_dir);
        break;
    }

    a->flush_end = mm_journal_reader_pos(a->reader);

    if (st == MM_EAGAIN && !a->copy.failed
        && mm_journal_pos_cmp(a->flush_end, mm_journal_end(a->journal)) == 0)
    {
        an_tail_start(a, a->flush_end);
    }

    return n;
}


static void
an_flush_start(analytics_t *a)
{
    size_t  n;

    n = a->tail_on ? an_flush_take_tail(a) : an_flush_read(a);

    if (a->copy.failed) {
        log_warnx("out of memory for a COPY of %zu events", n);
        mm_buf_free(&a->copy);
        an_rewind(a);
        return;
    }

    a->flush_now = (n >= (size_t) a->conf->batch_max
                    || a->copy.len >= AN_COPY_BYTES_MAX);
    a->pending_since = 0;
    a->pending_events = 0;

    if (n == 0) {
        /* only skipped records */
        if (mm_journal_pos_cmp(a->flush_end,
                               mm_journal_committed(a->journal)) > 0)
        {
            an_commit(a);
        }
        return;
    }

    a->flush_events = n;
    a->flush_inserted = 0;
    a->flush_conflict = 0;
    a->flush_direct = 1;

    if (pgc_send(a->pg, an_direct_sql, 0, NULL, an_copy_result,
                 an_copy_done, a) != 0)
    {
        an_rewind(a);
        return;
    }

    a->flushing = 1;

    log_debug("flush: COPY %zu events, %zu bytes", n, a->copy.len);
}


static void
an_flush_failed(analytics_t *a, const char *what, const char *error)
{
    if (what != NULL) {
        log_warnx("flush of %zu events: %s: %s", a->flush_events, what,
                  error);
    }

    a->flushing = 0;

    /* a new session: no half-done transaction, an empty temp table */
    pgc_reset(a->pg, "flush failed");

    an_rewind(a);
}


static void
an_copy_result(void *arg, pgc_t *c, PGresult *res)
{
    analytics_t  *a = arg;

    const char  *state;

    if (PQresultStatus(res) == PGRES_COPY_IN) {
        pgc_copy_data(c, a->copy.data, a->copy.len);
        return;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (state != NULL && strcmp(state, "23505") == 0) {
        a->flush_conflict = 1;
    }
}


static void
an_dedup_start(void *arg, pgc_t *c, const char *error)
{
    analytics_t  *a = arg;

    if (error != NULL) {
        an_flush_failed(a, "ROLLBACK", error);
        return;
    }

    a->flush_direct = 0;

    if (pgc_send(c, an_copy_sql, 0, NULL, an_copy_result, an_copy_done, a)
        != 0)
    {
        an_flush_failed(a, NULL, NULL);
    }
}


static void
an_copy_done(void *arg, pgc_t *c, const char *error)
{
    analytics_t  *a = arg;

    if (error != NULL && a->flush_direct && a->flush_conflict) {
        log_debug("flush: %zu events hold a duplicate, deduplicating",
                  a->flush_events);

        if (pgc_send(c, "ROLLBACK", 0, NULL, NULL, an_dedup_start, a) != 0) {
            an_flush_failed(a, NULL, NULL);
        }
        return;
    }

    if (error != NULL) {
        an_flush_failed(a, "COPY", error);
        return;
    }

    if (a->flush_direct) {
        /* every event of the batch is new */
        a->flush_inserted = (long) a->flush_events;

        if (pgc_send(c, "COMMIT", 0, NULL, NULL, an_insert_done, a) != 0) {
            an_flush_failed(a, NULL, NULL);
        }
        return;
    }

    if (pgc_send(c, an_insert_sql, 0, NULL, an_insert_result,
                 an_insert_done, a) != 0)
    {
        an_flush_failed(a, NULL, NULL);
    }
}


static void
an_insert_result(void *arg, pgc_t *c, PGresult *res)
{
    analytics_t  *a = arg;

    if (PQresultStatus(res) == PGRES_COMMAND_OK
        && strncmp(PQcmdStatus(res), "INSERT", 6) == 0)
    {
        a->flush_inserted = atol(PQcmdTuples(res));
    }
}


static void
an_insert_done(void *arg, pgc_t *c, const char *error)
{
    analytics_t  *a = arg;

    if (error != NULL) {
        an_flush_failed(a, "INSERT", error);
        return;
    }

    a->flushing = 0;
    a->written += a->flush_events;
    a->inserted += (uint64_t) a->flush_inserted;

    log_debug("flush: %zu events written, %ld new", a->flush_events,
              a->flush_inserted);

    an_commit(a);

    /*
     * Events that came in meanwhile go at once: waiting flush_ms only pays
     * when the writer is idle, to batch a trickle.
     */
    if (an_has_unread(a)) {
        a->flush_now = 1;
    }

    if (a->copy.cap > AN_BUF_KEEP) {
        mm_buf_free(&a->copy);
    }
}


static void
an_tick(analytics_t *a, uint64_t now)
{
    char  info[256];

    if (a->reader == NULL && !a->tail_on) {
        an_rewind(a);
    }

    if (!pgc_ready(a->pg)) {
        return;
    }

    /* the beat first: a long replay must not starve it */
    if (heartbeat_due(&a->hb, now)) {
        snprintf(info, sizeof(info),
                 "{\"received\":%" PRIu64 ",\"written\":%" PRIu64
                 ",\"inserted\":%" PRIu64 ",\"naks\":%" PRIu64
                 ",\"journal_lag_bytes\":%" PRIu64 "}",
                 a->received, a->written, a->inserted, a->naks,
                 mm_journal_lag(a->journal));

        if (heartbeat_send(&a->hb, a->pg, info, now) == 0) {
            return;
        }
    }

    if (!a->flushing && an_flush_due(a, now)) {
        an_flush_start(a);
    }
}


/* ---- the loop's interface -------------------------------------------- */


static int
an_poll_items(void *obj, zmq_pollitem_t **itemsp, long *timeout)
{
    analytics_t  *a = obj;

    int              n, fd, t;
    short            events;
    uint64_t         now;
    zmq_pollitem_t  *items;

    items = a->items;
    *itemsp = items;
    n = 1;                              /* 0 is the signal pipe */
    now = now_mono_ms();
    *timeout = HEARTBEAT_INTERVAL;

    a->idx_router = -1;
    a->idx_zap = -1;
    a->idx_pg = -1;

    if (!a->draining) {
        a->idx_router = n;
        items[n].socket = a->router;
        items[n].fd = 0;
        items[n].events = ZMQ_POLLIN;
        items[n].revents = 0;
        n++;
    }

    a->idx_zap = n;
    items[n].socket = zap_socket(a->zap);
    items[n].fd = 0;
    items[n].events = ZMQ_POLLIN;
    items[n].revents = 0;
    n++;

    fd = pgc_fd(a->pg, &events);
    if (fd >= 0) {
        a->idx_pg = n;
        items[n].socket = NULL;
        items[n].fd = fd;
        items[n].events = events;
        items[n].revents = 0;
        n++;
    }

    t = pgc_timeout(a->pg, now);
    if (t >= 0 && t < *timeout) {
        *timeout = t;
    }

    if (pgc_up(a->pg)) {
        t = heartbeat_timeout(&a->hb, now);
        if (t < *timeout) {
            *timeout = t;
        }
    }

    if (pgc_ready(a->pg) && !a->flushing && an_has_unread(a)) {
        if (an_flush_due(a, now)) {
            *timeout = 0;

        } else {
            dmain_lower(timeout,
                        a->pending_since + (uint64_t) a->conf->flush_ms, now);
        }
    }

    if (a->draining) {
        dmain_lower(timeout, a->drain_deadline, now);
    }

    return n;
}


static void
an_process(void *obj, zmq_pollitem_t *items, int n)
{
    analytics_t  *a = obj;

    short     revents;
    uint64_t  now;

    now = now_mono_ms();

    if (a->idx_zap >= 0 && a->idx_zap < n
        && (items[a->idx_zap].revents & ZMQ_POLLIN))
    {
        zap_handle(a->zap);
    }

    if (a->idx_router >= 0 && a->idx_router < n
        && (items[a->idx_router].revents & ZMQ_POLLIN))
    {
        an_intake(a, now);
    }

    revents = 0;
    if (a->idx_pg >= 0 && a->idx_pg < n) {
        revents = items[a->idx_pg].revents;
    }

    pgc_process(a->pg, revents, now);

    an_tick(a, now_mono_ms());
}


static void
an_reload(void *obj)
{
    analytics_t  *a = obj;

    log_info("SIGHUP: reloading %s", a->conf->curve_clients_file);
    (void) zap_reload(a->zap);
}


static void
an_drain(void *obj)
{
    analytics_t  *a = obj;

    if (a->draining) {
        return;
    }

    a->draining = 1;
    a->drain_deadline = now_mono_ms() + AN_DRAIN_MS;

    if (mm_journal_sync(a->journal) != MM_OK) {
        log_warn("journal %s: fdatasync", a->conf->journal_dir);
    }

    log_info("draining: %" PRIu64 " journal bytes to write",
             mm_journal_lag(a->journal));
}


static int
an_finished(void *obj)
{
    analytics_t  *a = obj;

    if (!a->draining) {
        return 0;
    }

    if (now_mono_ms() >= a->drain_deadline) {
        log_warnx("drain timeout: %" PRIu64 " journal bytes left for the "
                  "next start", mm_journal_lag(a->journal));
        return 1;
    }

    if (a->flushing) {
        return 0;
    }

    if (!pgc_up(a->pg)) {
        if (an_has_unread(a)) {
            log_info("PostgreSQL is down: %" PRIu64 " journal bytes left "
                     "for the next start", mm_journal_lag(a->journal));
        }
        return 1;
    }

    if (an_has_unread(a)) {
        return 0;
    }

    log_info("drained: %" PRIu64 " events received, %" PRIu64 " written "
             "(%" PRIu64 " new)", a->received, a->written, a->inserted);

    return 1;
}
