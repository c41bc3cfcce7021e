/*
 * Clocks and the pid file.
 */

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"


uint64_t
now_mono_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


uint64_t
now_real_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


int
pidfile_write(const char *path)
{
    int    fd, n;
    char   tmp[4096], text[32];

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp)) {
        log_warnx("%s: path too long", path);
        return -1;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_warn("%s", tmp);
        return -1;
    }

    n = snprintf(text, sizeof(text), "%d\n", (int) getpid());

    if (write(fd, text, (size_t) n) != n) {
        log_warn("%s", tmp);
        close(fd);
        unlink(tmp);
        return -1;
    }

    close(fd);

    if (rename(tmp, path) != 0) {
        log_warn("rename %s", path);
        unlink(tmp);
        return -1;
    }

    return 0;
}
