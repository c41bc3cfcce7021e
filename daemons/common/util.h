/*
 * Small daemon helpers: clocks, the pid file, directories, jitter.
 */

#ifndef MEDIA_UTIL_H
#define MEDIA_UTIL_H

#include <stdint.h>
#include <sys/types.h>


/* milliseconds of CLOCK_MONOTONIC (timers) and of the wall clock */
uint64_t now_mono_ms(void);
uint64_t now_real_ms(void);

/* writes "<pid>\n" to path (tmp + rename); 0 or -1 (logged) */
int pidfile_write(const char *path);

/* mkdir -p: path and its missing parents with mode; 0 or -1 (errno) */
int mkdirs(const char *path, mode_t mode);

/* a random number in [0, 1) for backoff jitter (not for secrets) */
double rand_unit(void);


#endif /* MEDIA_UTIL_H */
