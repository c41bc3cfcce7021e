/*
 * The common main() of the zmq_poll daemons: see dmain.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "dmain.h"
#include "log.h"
#include "util.h"


static volatile sig_atomic_t  dmain_term;
static volatile sig_atomic_t  dmain_hup;
static int                    dmain_pipe[2] = { -1, -1 };


static void
dmain_usage(const dmain_t *d)
{
    fprintf(stderr, "usage: %s -f config [-n] [-d] [-v]\n", d->progname);
    exit(2);
}


static void
dmain_on_signal(int signo)
{
    int  save;

    save = errno;

    if (signo == SIGHUP) {
        dmain_hup = 1;

    } else {
        dmain_term = 1;
    }

    if (dmain_pipe[1] >= 0) {
        (void) !write(dmain_pipe[1], "", 1);
    }

    errno = save;
}


static void
dmain_drain_pipe(void)
{
    char  buf[64];

    while (read(dmain_pipe[0], buf, sizeof(buf)) > 0) {
        /* void */
    }
}


void
dmain_item(zmq_pollitem_t *it, void *socket, int fd, short events)
{
    it->socket = socket;
    it->fd = fd;
    it->events = events;
    it->revents = 0;
}


void
dmain_lower(long *timeout, uint64_t at, uint64_t now)
{
    long  t;

    t = at > now ? (long) (at - now) : 0;

    if (*timeout < 0 || t < *timeout) {
        *timeout = t;
    }
}


int
dmain(int argc, char **argv, const dmain_t *d)
{
    int                ch, check, debug, n, rc, draining;
    long               timeout;
    void              *zctx, *obj, *conf;
    char              *pid_file;
    const char        *path;
    sigset_t           set, old;
    zmq_pollitem_t    *items;
    struct sigaction   sa;

    path = NULL;
    check = 0;
    debug = 0;

    while ((ch = getopt(argc, argv, "f:ndv")) != -1) {
        switch (ch) {
        case 'f':
            path = optarg;
            break;
        case 'n':
            check = 1;
            break;
        case 'd':
            debug = 1;
            break;
        case 'v':
            printf("%s %s\n", d->progname, d->version);
            return 0;
        default:
            dmain_usage(d);
        }
    }

    if (path == NULL || optind != argc) {
        dmain_usage(d);
    }

    log_init(d->progname, debug);

    conf = calloc(1, d->conf_size);
    if (conf == NULL) {
        fatal("calloc");
    }

    if (conf_load(path, d->conf_defs, conf) != 0 || d->conf_check(conf) != 0)
    {
        conf_free(d->conf_defs, conf);
        free(conf);
        return 1;
    }

    pid_file = *(char **) ((char *) conf + d->pid_file_offset);

    if (check) {
        printf("configuration OK\n");
        conf_free(d->conf_defs, conf);
        free(conf);
        return 0;
    }

    /* ZeroMQ's threads inherit a mask that leaves signals to this one */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);

    if (pipe2(dmain_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        fatal("pipe2");
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = dmain_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    zctx = zmq_ctx_new();
    if (zctx == NULL) {
        fatalx("zmq_ctx_new: %s", zmq_strerror(errno));
    }

    obj = d->create(conf, zctx);

    sigprocmask(SIG_SETMASK, &old, NULL);

    if (obj == NULL) {
        zmq_ctx_term(zctx);
        conf_free(d->conf_defs, conf);
        free(conf);
        return 1;
    }

    if (pid_file != NULL && pidfile_write(pid_file) != 0) {
        d->destroy(&obj);
        zmq_ctx_term(zctx);
        conf_free(d->conf_defs, conf);
        free(conf);
        return 1;
    }

    log_info("started, pid %d", (int) getpid());

    rc = 0;
    draining = 0;

    for ( ;; ) {
        if (dmain_hup) {
            dmain_hup = 0;
            if (d->reload != NULL) {
                d->reload(obj);
            }
        }

        if (dmain_term && !draining) {
            draining = 1;
            log_info("stopping");
            d->drain(obj);
        }

        if (draining && d->finished(obj)) {
            break;
        }

        n = d->poll_items(obj, &items, &timeout);

        dmain_item(&items[0], NULL, dmain_pipe[0], ZMQ_POLLIN);

        if (zmq_poll(items, n, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_warnx("zmq_poll: %s", zmq_strerror(errno));
            rc = 1;
            break;
        }

        if (items[0].revents & ZMQ_POLLIN) {
            dmain_drain_pipe();
        }

        d->process(obj, items, n);
    }

    d->destroy(&obj);
    zmq_ctx_term(zctx);

    if (pid_file != NULL) {
        unlink(pid_file);
    }

    log_info("exiting");

    conf_free(d->conf_defs, conf);
    free(conf);
    close(dmain_pipe[0]);
    close(dmain_pipe[1]);

    return rc;
}
