/*
 * Daemon logging to stderr: see log.h.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"


static const char  *log_prog = "media";
static int          log_debug_on;


static void log_vemit(const char *level, int with_errno, int err,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));


void
log_init(const char *progname, int debug)
{
    log_prog = progname;
    log_debug_on = debug;
}


int
log_debugging(void)
{
    return log_debug_on;
}


/* one write() per line so lines from several processes do not interleave */
static void
log_vemit(const char *level, int with_errno, int err, const char *fmt,
    va_list ap)
{
    int             n, len;
    char            line[2048];
    struct tm       tm;
    struct timeval  tv;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);

    len = snprintf(line, sizeof(line),
                   "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s[%d]: %s: ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                   tm.tm_min, tm.tm_sec, (int) (tv.tv_usec / 1000),
                   log_prog, (int) getpid(), level);

    n = vsnprintf(line + len, sizeof(line) - (size_t) len, fmt, ap);
    if (n > 0) {
        len += n;
    }

    if (len > (int) sizeof(line) - 80) {
        len = (int) sizeof(line) - 80;
        memcpy(line + len, "...", 3);
        len += 3;
    }

    if (with_errno) {
        n = snprintf(line + len, sizeof(line) - (size_t) len, ": %s",
                     strerror(err));
        if (n > 0) {
            len += n;
        }
    }

    line[len++] = '\n';

    (void) !write(STDERR_FILENO, line, (size_t) len);
}


void
log_warn(const char *fmt, ...)
{
    int      err;
    va_list  ap;

    err = errno;
    va_start(ap, fmt);
    log_vemit("warn", 1, err, fmt, ap);
    va_end(ap);
    errno = err;
}


void
log_warnx(const char *fmt, ...)
{
    int      err;
    va_list  ap;

    err = errno;
    va_start(ap, fmt);
    log_vemit("warn", 0, 0, fmt, ap);
    va_end(ap);
    errno = err;
}


void
log_info(const char *fmt, ...)
{
    int      err;
    va_list  ap;

    err = errno;
    va_start(ap, fmt);
    log_vemit("info", 0, 0, fmt, ap);
    va_end(ap);
    errno = err;
}


void
log_debug(const char *fmt, ...)
{
    int      err;
    va_list  ap;

    if (!log_debug_on) {
        return;
    }

    err = errno;
    va_start(ap, fmt);
    log_vemit("debug", 0, 0, fmt, ap);
    va_end(ap);
    errno = err;
}


void
fatal(const char *fmt, ...)
{
    int      err;
    va_list  ap;

    err = errno;
    va_start(ap, fmt);
    log_vemit("fatal", 1, err, fmt, ap);
    va_end(ap);

    exit(1);
}


void
fatalx(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    log_vemit("fatal", 0, 0, fmt, ap);
    va_end(ap);

    exit(1);
}
