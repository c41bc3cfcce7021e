/*
 * Child processes: see child.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "log.h"


#define CHILD_REAP_MS  100


extern char  **environ;


int
child_spawn(child_t *c, char *const argv[], const int *fds, int nfds,
    char *err, size_t err_size)
{
    int                          i, rc;
    sigset_t                     none, all;
    posix_spawnattr_t            attr;
    posix_spawn_file_actions_t   fa;

    memset(c, 0, sizeof(*c));
    c->pidfd = -1;

    posix_spawn_file_actions_init(&fa);

    for (i = 0; i < nfds; i++) {
        if (fds[i] < 0) {
            posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
                                             i == 0 ? O_RDONLY : O_WRONLY, 0);
        } else {
            /* dup2 onto itself would leave O_CLOEXEC set */
            if (fds[i] == i) {
                posix_spawn_file_actions_adddup2(&fa, i, 100 + i);
                posix_spawn_file_actions_adddup2(&fa, 100 + i, i);
                posix_spawn_file_actions_addclose(&fa, 100 + i);
            } else {
                posix_spawn_file_actions_adddup2(&fa, fds[i], i);
            }
        }
    }

    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK
                                    | POSIX_SPAWN_SETSIGDEF);

    rc = posix_spawnp(&c->pid, argv[0], &fa, &attr, argv, environ);

    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);

    if (rc != 0) {
        snprintf(err, err_size, "cannot run %s: %s", argv[0], strerror(rc));
        c->pid = 0;
        return -1;
    }

    /* the child cannot be reaped before we look: no pid reuse race */
    c->pidfd = pidfd_open(c->pid, 0);
    if (c->pidfd < 0) {
        log_debug("pidfd_open: %s (reaping on a timer)", strerror(errno));
    }

    log_debug("spawned %s, pid %d", argv[0], (int) c->pid);

    return 0;
}


int
child_fd(const child_t *c)
{
    return (c->pid > 0 && !c->exited) ? c->pidfd : -1;
}


int
child_timeout(const child_t *c)
{
    if (c->pid <= 0 || c->exited) {
        return -1;
    }

    return c->pidfd >= 0 ? -1 : CHILD_REAP_MS;
}


int
child_reap(child_t *c)
{
    int    status;
    pid_t  p;

    if (c->pid <= 0) {
        return 1;
    }

    if (c->exited) {
        return 1;
    }

    do {
        p = waitpid(c->pid, &status, WNOHANG);
    } while (p < 0 && errno == EINTR);

    if (p == 0) {
        return 0;
    }

    if (p < 0) {
        /* ECHILD: someone else reaped it; say it failed */
        log_warn("waitpid %d", (int) c->pid);
        status = 0xff00;
    }

    c->exited = 1;
    c->status = status;

    return 1;
}


void
child_kill(child_t *c, int sig)
{
    if (c->pid > 0 && !c->exited) {
        (void) kill(c->pid, sig);
    }
}


void
child_wait(child_t *c)
{
    int    status;
    pid_t  p;

    if (c->pid <= 0 || c->exited) {
        return;
    }

    do {
        p = waitpid(c->pid, &status, 0);
    } while (p < 0 && errno == EINTR);

    c->exited = 1;
    c->status = p < 0 ? 0xff00 : status;
}


void
child_close(child_t *c)
{
    if (c->pidfd >= 0) {
        close(c->pidfd);
        c->pidfd = -1;
    }
}


void
child_status_str(int status, char *buf, size_t size)
{
    if (WIFEXITED(status)) {
        snprintf(buf, size, "exit status %d", WEXITSTATUS(status));

    } else if (WIFSIGNALED(status)) {
        snprintf(buf, size, "killed by signal %d", WTERMSIG(status));

    } else {
        snprintf(buf, size, "wait status 0x%x", (unsigned) status);
    }
}


int
child_pipe(int fds[2], int pipe_size)
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }

    if (fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }

    if (pipe_size > 0) {
        /* best effort: fewer wake-ups for big media pipes */
        (void) fcntl(fds[0], F_SETPIPE_SZ, pipe_size);
    }

    return 0;
}
