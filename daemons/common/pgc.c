/*
 * Non-blocking libpq connection: see pgc.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "pgc.h"
#include "util.h"


#define PGC_BACKOFF_MIN      100
#define PGC_BACKOFF_MAX      2000
#define PGC_CONNECT_TIMEOUT  10000
#define PGC_QUERY_TIMEOUT    30000
#define PGC_COPY_CHUNK       (64 * 1024)


typedef enum {
    PGC_DOWN = 0,       /* waiting for reconnect_at */
    PGC_CONNECTING,     /* PQconnectPoll */
    PGC_SETUP,          /* running setup_sql */
    PGC_IDLE,
    PGC_BUSY            /* a caller's query in flight */
} pgc_state_t;


struct pgc_s {
    char                *name;
    char                *conninfo;
    char                *setup_sql;
    PGconn              *conn;
    pgc_state_t          state;
    PostgresPollingStatusType  poll;    /* while connecting */
    uint64_t             reconnect_at;
    uint64_t             deadline;      /* connect or query timeout */
    unsigned             backoff;
    int                  logged_down;   /* "unavailable" said once */

    /* the query in flight */
    pgc_result_pt        on_result;
    pgc_done_pt          on_done;
    void                *arg;
    int                  want_write;    /* output still to flush */
    char                 error[512];

    /* COPY IN in flight */
    int                  copying;
    int                  copy_ended;
    const char          *copy_data;
    size_t               copy_len;
    size_t               copy_sent;
};


static void pgc_connect(pgc_t *c, uint64_t now);
static void pgc_connect_poll(pgc_t *c, uint64_t now);
static void pgc_setup_done(void *arg, pgc_t *c, const char *error);
static int pgc_flush(pgc_t *c);
static int pgc_copy_pump(pgc_t *c);
static void pgc_results(pgc_t *c);
static void pgc_set_error(pgc_t *c, const char *msg);
static void pgc_drop(pgc_t *c, const char *why, uint64_t now);
static void pgc_discard_notifies(pgc_t *c);
static void pgc_notice(void *arg, const char *message);


pgc_t *
pgc_new(const char *name, const char *conninfo, const char *setup_sql)
{
    pgc_t  *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_warn("calloc");
        return NULL;
    }

    c->name = strdup(name);
    c->conninfo = strdup(conninfo);
    c->setup_sql = setup_sql ? strdup(setup_sql) : NULL;

    if (c->name == NULL || c->conninfo == NULL
        || (setup_sql != NULL && c->setup_sql == NULL))
    {
        log_warn("strdup");
        pgc_destroy(&c);
        return NULL;
    }

    c->state = PGC_DOWN;
    c->backoff = PGC_BACKOFF_MIN;
    c->reconnect_at = 0;

    return c;
}


void
pgc_destroy(pgc_t **cp)
{
    pgc_t  *c;

    c = *cp;
    if (c == NULL) {
        return;
    }

    *cp = NULL;

    if (c->conn != NULL) {
        PQfinish(c->conn);
    }

    free(c->name);
    free(c->conninfo);
    free(c->setup_sql);
    free(c);
}


int
pgc_ready(const pgc_t *c)
{
    return c->state == PGC_IDLE;
}


int
pgc_up(const pgc_t *c)
{
    return c->state == PGC_IDLE || c->state == PGC_BUSY;
}


static void
pgc_set_error(pgc_t *c, const char *msg)
{
    size_t  len;

    if (c->error[0] != '\0') {
        return;
    }

    snprintf(c->error, sizeof(c->error), "%s",
             msg && *msg ? msg : "unknown error");

    /* libpq messages end in a newline */
    len = strlen(c->error);
    while (len > 0 && (c->error[len - 1] == '\n' || c->error[len - 1] == ' '))
    {
        c->error[--len] = '\0';
    }
}


/* closes the connection, fails the query in flight, schedules reconnect */
static void
pgc_drop(pgc_t *c, const char *why, uint64_t now)
{
    void         *arg;
    char          error[600];
    pgc_done_pt   done;

    done = NULL;
    arg = NULL;

    if (c->state == PGC_BUSY) {
        done = c->on_done;
        arg = c->arg;
        snprintf(error, sizeof(error), "%s", why);
    }

    if (c->state == PGC_IDLE || c->state == PGC_BUSY
        || c->state == PGC_SETUP)
    {
        log_warnx("%s: connection lost: %s", c->name, why);
        c->logged_down = 0;

    } else if (!c->logged_down) {
        log_warnx("%s: cannot connect: %s", c->name, why);
        c->logged_down = 1;

    } else {
        log_debug("%s: cannot connect: %s", c->name, why);
    }

    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }

    c->state = PGC_DOWN;
    c->reconnect_at = now + c->backoff;
    c->backoff = c->backoff * 2 > PGC_BACKOFF_MAX
                 ? PGC_BACKOFF_MAX : c->backoff * 2;
    c->on_result = NULL;
    c->on_done = NULL;
    c->arg = NULL;
    c->copying = 0;
    c->want_write = 0;

    if (done != NULL) {
        done(arg, c, error);
    }
}


void
pgc_reset(pgc_t *c, const char *why)
{
    if (c->state == PGC_DOWN) {
        return;
    }

    pgc_drop(c, why, now_mono_ms());
}


static void
pgc_connect(pgc_t *c, uint64_t now)
{
    char  why[512];

    c->conn = PQconnectStart(c->conninfo);

    if (c->conn == NULL) {
        pgc_drop(c, "out of memory", now);
        return;
    }

    if (PQstatus(c->conn) == CONNECTION_BAD) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
        why[strcspn(why, "\n")] = '\0';
        pgc_drop(c, why, now);
        return;
    }

    PQsetNoticeProcessor(c->conn, pgc_notice, c);

    c->state = PGC_CONNECTING;
    c->poll = PGRES_POLLING_WRITING;
    c->deadline = now + PGC_CONNECT_TIMEOUT;

    log_debug("%s: connecting", c->name);
}


static void
pgc_connect_poll(pgc_t *c, uint64_t now)
{
    char  why[512];

    c->poll = PQconnectPoll(c->conn);

    if (c->poll == PGRES_POLLING_FAILED) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
        why[strcspn(why, "\n")] = '\0';
        pgc_drop(c, why, now);
        return;
    }

    if (c->poll != PGRES_POLLING_OK) {
        return;
    }

    if (PQsetnonblocking(c->conn, 1) != 0) {
        pgc_drop(c, "cannot set non-blocking mode", now);
        return;
    }

    c->state = PGC_IDLE;

    if (c->setup_sql != NULL) {
        if (pgc_send(c, c->setup_sql, 0, NULL, NULL, pgc_setup_done, c)
            != 0)
        {
            return;
        }
        c->state = PGC_SETUP;
        return;
    }

    pgc_setup_done(c, c, NULL);
}


static void
pgc_setup_done(void *arg, pgc_t *c, const char *error)
{
    if (error != NULL) {
        /* a failing setup is a failing connection: retry with backoff */
        c->state = PGC_IDLE;
        pgc_drop(c, error, now_mono_ms());
        return;
    }

    log_info("%s: connected", c->name);

    c->backoff = PGC_BACKOFF_MIN;
    c->logged_down = 0;
    c->state = PGC_IDLE;
}


int
pgc_send(pgc_t *c, const char *sql, int nparams, const char *const *params,
    pgc_result_pt on_result, pgc_done_pt on_done, void *arg)
{
    int  rc;
    char why[512];

    if (c->state != PGC_IDLE) {
        return -1;
    }

    if (nparams == 0) {
        rc = PQsendQuery(c->conn, sql);

    } else {
        rc = PQsendQueryParams(c->conn, sql, nparams, NULL, params, NULL,
                               NULL, 0);
    }

    if (rc != 1) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
        why[strcspn(why, "\n")] = '\0';
        pgc_drop(c, why, now_mono_ms());
        return -1;
    }

    c->state = PGC_BUSY;
    c->on_result = on_result;
    c->on_done = on_done;
    c->arg = arg;
    c->error[0] = '\0';
    c->copying = 0;
    c->deadline = now_mono_ms() + PGC_QUERY_TIMEOUT;

    if (pgc_flush(c) != 0) {
        return -1;
    }

    return 0;
}


void
pgc_copy_data(pgc_t *c, const char *data, size_t len)
{
    c->copying = 1;
    c->copy_ended = 0;
    c->copy_data = data;
    c->copy_len = len;
    c->copy_sent = 0;
}


/* 0 ok (want_write says whether output is left), -1 dropped */
static int
pgc_flush(pgc_t *c)
{
    int  rc;
    char why[512];

    rc = PQflush(c->conn);

    if (rc < 0) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
        why[strcspn(why, "\n")] = '\0';
        pgc_drop(c, why, now_mono_ms());
        return -1;
    }

    c->want_write = (rc == 1);

    return 0;
}


/* pushes COPY data as far as the socket takes it; 0 or -1 dropped */
static int
pgc_copy_pump(pgc_t *c)
{
    int     rc;
    char    why[512];
    size_t  n;

    while (c->copy_sent < c->copy_len) {
        n = c->copy_len - c->copy_sent;
        if (n > PGC_COPY_CHUNK) {
            n = PGC_COPY_CHUNK;
        }

        rc = PQputCopyData(c->conn, c->copy_data + c->copy_sent, (int) n);

        if (rc < 0) {
            goto failed;
        }

        if (rc == 0) {
            c->want_write = 1;
            return 0;
        }

        c->copy_sent += n;
    }

    if (!c->copy_ended) {
        rc = PQputCopyEnd(c->conn, NULL);

        if (rc < 0) {
            goto failed;
        }

        if (rc == 0) {
            c->want_write = 1;
            return 0;
        }

        c->copy_ended = 1;
    }

    if (pgc_flush(c) != 0) {
        return -1;
    }

    if (!c->want_write) {
        c->copying = 0;
    }

    return 0;

failed:

    snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
    why[strcspn(why, "\n")] = '\0';
    pgc_drop(c, why, now_mono_ms());

    return -1;
}


/* reads every result available without blocking */
static void
pgc_results(pgc_t *c)
{
    void            *arg;
    PGresult        *res;
    pgc_done_pt      done;
    ExecStatusType   st;

    while (c->state == PGC_BUSY || c->state == PGC_SETUP) {
        if (c->copying) {
            if (pgc_copy_pump(c) != 0 || c->copying) {
                return;
            }
        }

        if (PQisBusy(c->conn)) {
            return;
        }

        res = PQgetResult(c->conn);

        if (res == NULL) {
            done = c->on_done;
            arg = c->arg;
            c->on_result = NULL;
            c->on_done = NULL;
            c->arg = NULL;
            c->state = PGC_IDLE;

            if (done != NULL) {
                done(arg, c, c->error[0] ? c->error : NULL);
            }

            return;
        }

        st = PQresultStatus(res);

        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE
            || st == PGRES_NONFATAL_ERROR)
        {
            pgc_set_error(c, PQresultErrorMessage(res));
        }

        if (c->on_result != NULL) {
            c->on_result(c->arg, c, res);
        }

        if (st == PGRES_COPY_IN && !c->copying) {
            /* the caller has no data for it: end the COPY as failed */
            pgc_set_error(c, "COPY without data");
            if (PQputCopyEnd(c->conn, "no data") < 0) {
                PQclear(res);
                pgc_drop(c, "COPY end failed", now_mono_ms());
                return;
            }
        }

        if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(res);
            pgc_drop(c, "unexpected COPY OUT", now_mono_ms());
            return;
        }

        PQclear(res);
    }
}


/* server notices (and the FATAL before a shutdown) go to our log */
static void
pgc_notice(void *arg, const char *message)
{
    pgc_t  *c = arg;
    int     len;

    len = (int) strlen(message);
    while (len > 0 && message[len - 1] == '\n') {
        len--;
    }

    log_info("%s: %.*s", c->name, len, message);
}


static void
pgc_discard_notifies(pgc_t *c)
{
    PGnotify  *n;

    while ((n = PQnotifies(c->conn)) != NULL) {
        PQfreemem(n);
    }
}


int
pgc_fd(const pgc_t *c, short *events)
{
    if (c->conn == NULL || c->state == PGC_DOWN) {
        return -1;
    }

    if (c->state == PGC_CONNECTING) {
        *events = c->poll == PGRES_POLLING_READING ? ZMQ_POLLIN : ZMQ_POLLOUT;
        return PQsocket(c->conn);
    }

    /* idle: notice the server going away */
    *events = ZMQ_POLLIN;

    if (c->want_write) {
        *events |= ZMQ_POLLOUT;
    }

    return PQsocket(c->conn);
}


int
pgc_timeout(const pgc_t *c, uint64_t now)
{
    uint64_t  at;

    switch (c->state) {

    case PGC_DOWN:
        at = c->reconnect_at;
        break;

    case PGC_CONNECTING:
        if (PQsocket(c->conn) < 0) {
            return 0;
        }
        at = c->deadline;
        break;

    case PGC_SETUP:
    case PGC_BUSY:
        at = c->deadline;
        break;

    default:
        return -1;
    }

    return at <= now ? 0 : (int) (at - now);
}


void
pgc_process(pgc_t *c, short revents, uint64_t now)
{
    char  why[512];

    switch (c->state) {

    case PGC_DOWN:
        if (now >= c->reconnect_at) {
            pgc_connect(c, now);
        }
        return;

    case PGC_CONNECTING:
        if (revents != 0 || PQsocket(c->conn) < 0) {
            pgc_connect_poll(c, now);

        } else if (now >= c->deadline) {
            pgc_drop(c, "connect timeout", now);
        }
        return;

    case PGC_IDLE:
        if (revents & ZMQ_POLLIN) {
            if (PQconsumeInput(c->conn) != 1
                || PQstatus(c->conn) == CONNECTION_BAD)
            {
                snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
                why[strcspn(why, "\n")] = '\0';
                pgc_drop(c, why, now);
                return;
            }

            pgc_discard_notifies(c);
        }
        return;

    case PGC_SETUP:
    case PGC_BUSY:
        if (c->want_write && (revents & ZMQ_POLLOUT) && !c->copying) {
            if (pgc_flush(c) != 0) {
                return;
            }
        }

        if (revents & ZMQ_POLLIN) {
            if (PQconsumeInput(c->conn) != 1) {
                snprintf(why, sizeof(why), "%s", PQerrorMessage(c->conn));
                why[strcspn(why, "\n")] = '\0';
                pgc_drop(c, why, now);
                return;
            }
        }

        pgc_results(c);

        if ((c->state == PGC_BUSY || c->state == PGC_SETUP)
            && now >= c->deadline)
        {
            pgc_drop(c, "query timeout", now);
        }
        return;
    }
}


void
pgc_copy_escape(mm_buf_t *b, const char *s, size_t len)
{
    size_t       i, from;
    const char  *esc;

    if (s == NULL) {
        mm_buf_append(b, "\\N", 2);
        return;
    }

    from = 0;

    for (i = 0; i < len; i++) {
        switch (s[i]) {
        case '\\': esc = "\\\\"; break;
        case '\t': esc = "\\t"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        default: continue;
        }

        mm_buf_append(b, s + from, i - from);
        mm_buf_append(b, esc, 2);
        from = i + 1;
    }

    mm_buf_append(b, s + from, len - from);
}
