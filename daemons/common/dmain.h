/*
 * The common main() of a daemon with one zmq_poll loop (daemons/archiver,
 * daemons/notifier):
 *
 *   media-<name> -f <config> [-n] [-d] [-v]
 *
 *   -f  config file (conf/<name>.conf.in documents it)
 *   -n  check the config and exit: prints "configuration OK", exits 0, or 1
 *   -d  debug logging
 *   -v  print the version and exit
 *
 * Runs in the foreground, logs to stderr. SIGTERM/SIGINT call drain() and
 * the loop ends once finished() says so; SIGHUP calls reload(). Signals
 * only set flags and wake zmq_poll through a pipe (item 0 of the poll set).
 */

#ifndef MEDIA_DMAIN_H
#define MEDIA_DMAIN_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "config.h"


typedef struct {
    const char        *progname;        /* "media-archiver" */
    const char        *version;
    const conf_def_t  *conf_defs;
    size_t             conf_size;       /* of the conf struct */
    size_t             pid_file_offset; /* of its char *pid_file */

    /* beyond the syntax: what -n checks too; 0 or -1 (logged) */
    int    (*conf_check)(void *conf);
    /* the daemon object; conf outlives it; NULL on error (logged) */
    void  *(*create)(void *conf, void *zctx);
    void   (*destroy)(void **obj);
    /*
     * The poll set in an array the object owns, item 0 left for the
     * signal pipe; returns the count (with item 0) and *timeout (ms).
     */
    int    (*poll_items)(void *obj, zmq_pollitem_t **items, long *timeout);
    /* after zmq_poll on exactly those items */
    void   (*process)(void *obj, zmq_pollitem_t *items, int n);
    void   (*reload)(void *obj);
    void   (*drain)(void *obj);
    int    (*finished)(void *obj);
} dmain_t;


int dmain(int argc, char **argv, const dmain_t *d);

/* fills one poll item (revents cleared): a socket, or fd when it is NULL */
void dmain_item(zmq_pollitem_t *it, void *socket, int fd, short events);

/* lowers a poll_items *timeout (ms, < 0 none) to reach monotonic time at */
void dmain_lower(long *timeout, uint64_t at, uint64_t now);


#endif /* MEDIA_DMAIN_H */
