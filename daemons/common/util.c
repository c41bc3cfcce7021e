/*
 * Clocks, the pid file, directories, jitter: see util.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

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


int
mkdirs(const char *path, mode_t mode)
{
    int    rc, err;
    char  *s, *p, c;

    s = strdup(path);
    if (s == NULL) {
        return -1;
    }

    rc = 0;

    for (p = s + 1; ; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }

        c = *p;
        *p = '\0';

        if (mkdir(s, mode) != 0 && errno != EEXIST) {
            rc = -1;
            break;
        }

        *p = c;

        if (c == '\0') {
            break;
        }
    }

    err = errno;
    free(s);
    errno = err;

    return rc;
}


double
rand_unit(void)
{
    unsigned  r;

    if (RAND_bytes((unsigned char *) &r, sizeof(r)) != 1) {
        r = (unsigned) now_mono_ms() * 2654435761u;
    }

    return (double) r / 4294967296.0;
}
