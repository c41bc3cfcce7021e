/*
 * media-packager -f <config> [-n] [-d] [-v]
 *
 *   -f  config file (conf/packager.conf.in documents it)
 *   -n  check the config (syntax, key files) and exit:
 *       prints "configuration OK" on stdout and exits 0, or exits 1
 *   -d  debug logging
 *   -v  print the version and exit
 *
 * Runs in the foreground, logs to stderr. SIGTERM/SIGINT: kill ffmpeg,
 * requeue the jobs in hand, exit 0. SIGHUP reloads the clients file.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "log.h"
#include "packager.h"
#include "util.h"


#define PACKAGER_VERSION  "0.1"


static volatile sig_atomic_t  sig_term;
static volatile sig_atomic_t  sig_hup;
static int                    sig_pipe[2] = { -1, -1 };


static void
usage(void)
{
    fprintf(stderr, "usage: media-packager -f config [-n] [-d] [-v]\n");
    exit(2);
}


/* sets a flag and wakes the loop's zmq_poll through the pipe */
static void
on_signal(int signo)
{
    int  save;

    save = errno;

    if (signo == SIGHUP) {
        sig_hup = 1;

    } else {
        sig_term = 1;
    }

    if (sig_pipe[1] >= 0) {
        (void) !write(sig_pipe[1], "", 1);
    }

    errno = save;
}


static void
drain_pipe(void)
{
    char  buf[64];

    while (read(sig_pipe[0], buf, sizeof(buf)) > 0) {
        /* void */
    }
}


int
main(int argc, char **argv)
{
    int                ch, check, debug, n, rc, max;
    long               timeout;
    void              *zctx;
    const char        *path;
    sigset_t           set, old;
    packager_t        *pk;
    zmq_pollitem_t    *items;
    struct sigaction   sa;
    packager_conf_t    conf;

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
            printf("media-packager %s\n", PACKAGER_VERSION);
            return 0;
        default:
            usage();
        }
    }

    if (path == NULL || optind != argc) {
        usage();
    }

    log_init("media-packager", debug);

    memset(&conf, 0, sizeof(conf));

    if (conf_load(path, packager_conf_defs, &conf) != 0
        || packager_conf_check(&conf) != 0)
    {
        conf_free(packager_conf_defs, &conf);
        return 1;
    }

    if (check) {
        printf("configuration OK\n");
        conf_free(packager_conf_defs, &conf);
        return 0;
    }

    /*
     * Signals are blocked while ZeroMQ starts its threads, so they inherit
     * the mask and every signal is delivered to this thread.
     */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);

    if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        fatal("pipe2");
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
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

    pk = packager_new(&conf, zctx);

    sigprocmask(SIG_SETMASK, &old, NULL);

    if (pk == NULL) {
        zmq_ctx_term(zctx);
        conf_free(packager_conf_defs, &conf);
        return 1;
    }

    if (conf.pid_file != NULL && pidfile_write(conf.pid_file) != 0) {
        packager_destroy(&pk);
        zmq_ctx_term(zctx);
        conf_free(packager_conf_defs, &conf);
        return 1;
    }

    max = packager_poll_max(pk) + 1;
    items = calloc((size_t) max, sizeof(zmq_pollitem_t));
    if (items == NULL) {
        fatal("calloc");
    }

    log_info("started, pid %d", (int) getpid());

    rc = 0;

    for ( ;; ) {
        if (sig_hup) {
            sig_hup = 0;
            packager_reload(pk);
        }

        if (sig_term) {
            packager_drain(pk);
        }

        if (packager_finished(pk)) {
            break;
        }

        items[0].socket = NULL;
        items[0].fd = sig_pipe[0];
        items[0].events = ZMQ_POLLIN;
        items[0].revents = 0;

        n = packager_poll_items(pk, items + 1, &timeout);

        if (zmq_poll(items, n + 1, timeout) < 0) {
            if (errno == EINTR) {
                continue;
            }
            log_warnx("zmq_poll: %s", zmq_strerror(errno));
            rc = 1;
            break;
        }

        if (items[0].revents & ZMQ_POLLIN) {
            drain_pipe();
        }

        packager_process(pk, items + 1, n);
    }

    packager_destroy(&pk);
    zmq_ctx_term(zctx);

    if (conf.pid_file != NULL) {
        unlink(conf.pid_file);
    }

    log_info("exiting");

    free(items);
    conf_free(packager_conf_defs, &conf);
    close(sig_pipe[0]);
    close(sig_pipe[1]);

    return rc;
}
