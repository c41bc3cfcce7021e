/*
 * A small log API for the daemons (OpenBSD style): one line per message to
 * stderr, "<time> <prog>[<pid>]: <level>: <message>".
 *
 *   log_warn    message + ": " + strerror(errno)
 *   log_warnx   message
 *   log_info    message
 *   log_debug   message, only when log_init(..., debug = 1)
 *   fatal       log_warn, then exit(1);  fatalx: log_warnx, then exit(1)
 */

#ifndef MEDIA_LOG_H
#define MEDIA_LOG_H


#define LOG_FMT(a, b)  __attribute__((format(printf, a, b)))


void log_init(const char *progname, int debug);
int log_debugging(void);

void log_warn(const char *fmt, ...) LOG_FMT(1, 2);
void log_warnx(const char *fmt, ...) LOG_FMT(1, 2);
void log_info(const char *fmt, ...) LOG_FMT(1, 2);
void log_debug(const char *fmt, ...) LOG_FMT(1, 2);
void fatal(const char *fmt, ...) LOG_FMT(1, 2) __attribute__((noreturn));
void fatalx(const char *fmt, ...) LOG_FMT(1, 2) __attribute__((noreturn));


#endif /* MEDIA_LOG_H */
