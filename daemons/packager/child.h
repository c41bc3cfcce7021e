/*
 * Child processes (ffmpeg, ffprobe) for a zmq_poll loop.
 *
 * child_spawn() runs argv with posix_spawnp: the child's fds 0..nfds-1 are
 * the caller's fds[i] (-1: /dev/null), signals at their defaults and
 * unblocked, nothing else inherited (the loop's fds are O_CLOEXEC). The
 * exit is noticed through a pidfd (pidfd_open, readable when the child
 * ends) that the caller polls; without pidfds (old kernels) through a
 * 100 ms timer. Either way child_reap() collects the status without ever
 * blocking.
 *
 *   child_t  c;
 *   child_spawn(&c, argv, fds, 5);
 *   loop: fd = child_fd(&c) (poll it, -1: use child_timeout())
 *         child_reap(&c) -> 1 once exited, c.status holds the wait status
 *   child_kill(&c, SIGKILL) on abort, then keep reaping (or child_wait()).
 */

#ifndef MEDIA_CHILD_H
#define MEDIA_CHILD_H

#include <sys/types.h>


typedef struct {
    pid_t   pid;            /* 0 when none */
    int     pidfd;          /* -1 without one */
    int     exited;
    int     status;         /* waitpid status once exited */
} child_t;


/* 0, or -1 with errno-style reason in err */
int child_spawn(child_t *c, char *const argv[], const int *fds, int nfds,
    char *err, size_t err_size);

/* the fd to poll for the exit, -1 when there is none to poll */
int child_fd(const child_t *c);

/* ms until child_reap() should be called without an fd event, -1 never */
int child_timeout(const child_t *c);

/* 1 once the child has exited (and was reaped), 0 while it runs */
int child_reap(child_t *c);

void child_kill(child_t *c, int sig);

/* blocks until it exits (after a SIGKILL: shutdown only) */
void child_wait(child_t *c);

/* closes the pidfd; the child must have been reaped */
void child_close(child_t *c);

/* "exit status 1", "killed by signal 9" */
void child_status_str(int status, char *buf, size_t size);

/* a pipe with both ends O_CLOEXEC and the read end non-blocking; 0/-1 */
int child_pipe(int fds[2], int pipe_size);


#endif /* MEDIA_CHILD_H */
