/*
 * Small daemon helpers: clocks and the pid file.
 */

#ifndef MEDIA_UTIL_H
#define MEDIA_UTIL_H

#include <stdint.h>


/* milliseconds of CLOCK_MONOTONIC (timers) and of the wall clock */
uint64_t now_mono_ms(void);
uint64_t now_real_ms(void);

/* writes "<pid>\n" to path (tmp + rename); 0 or -1 (logged) */
int pidfile_write(const char *path);


#endif /* MEDIA_UTIL_H */
