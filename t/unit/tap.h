/*
 * A tiny header-only TAP producer for t/unit/test_*.c.
 *
 *     int main(void) {
 *         ok(1 + 1 == 2, "addition");
 *         is_int(f(), 42, "f() is %d", 42);
 *         is_str(g(), "x", "g()");
 *         return done_testing();
 *     }
 *
 * done_testing() prints the plan "1..N" (unless plan() was called first)
 * and returns the exit status: 0 only if every test passed and the count
 * matches the plan.
 */

#ifndef MM_TAP_H
#define MM_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static int  tap_run;
static int  tap_failed;
static int  tap_planned = -1;


#define TAP_UNUSED  __attribute__((unused))
#define TAP_FMT(a, b)  __attribute__((format(printf, a, b)))


static TAP_UNUSED void
plan(int n)
{
    tap_planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}


static TAP_UNUSED TAP_FMT(1, 2) void
diag(const char *fmt, ...)
{
    va_list  ap;

    fputs("# ", stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}


static TAP_UNUSED TAP_FMT(4, 0) int
tap_result(int pass, const char *file, int line, const char *fmt, va_list ap)
{
    char            name[512];
    unsigned char  *p;

    tap_run++;

    if (!pass) {
        tap_failed++;
    }

    vsnprintf(name, sizeof(name), fmt, ap);

    /* a description must stay on one line: escape control characters */
    printf("%sok %d - ", pass ? "" : "not ", tap_run);

    for (p = (unsigned char *) name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            printf("\\x%02x", *p);

        } else {
            putchar(*p);
        }
    }

    fputc('\n', stdout);

    if (!pass) {
        printf("#   Failed test at %s line %d.\n", file, line);
    }

    fflush(stdout);

    return pass;
}


static TAP_UNUSED TAP_FMT(4, 5) int
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    tap_result(pass, file, line, fmt, ap);
    va_end(ap);

    return pass;
}


static TAP_UNUSED TAP_FMT(5, 6) int
tap_is_int(long long got, long long want, const char *file, int line,
    const char *fmt, ...)
{
    int      pass;
    va_list  ap;

    pass = (got == want);

    va_start(ap, fmt);
    tap_result(pass, file, line, fmt, ap);
    va_end(ap);

    if (!pass) {
        printf("#          got: %lld\n#     expected: %lld\n", got, want);
    }

    return pass;
}


static TAP_UNUSED TAP_FMT(5, 6) int
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *fmt, ...)
{
    int      pass;
    va_list  ap;

    if (got == NULL || want == NULL) {
        pass = (got == want);

    } else {
        pass = (strcmp(got, want) == 0);
    }

    va_start(ap, fmt);
    tap_result(pass, file, line, fmt, ap);
    va_end(ap);

    if (!pass) {
        printf("#          got: %s%s%s\n#     expected: %s%s%s\n",
               got ? "'" : "", got ? got : "NULL", got ? "'" : "",
               want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    }

    return pass;
}


static TAP_UNUSED TAP_FMT(7, 8) int
tap_is_mem(const void *got, size_t got_len, const void *want,
    size_t want_len, const char *file, int line, const char *fmt, ...)
{
    int      pass;
    va_list  ap;

    pass = (got_len == want_len
            && (got_len == 0 || memcmp(got, want, got_len) == 0));

    va_start(ap, fmt);
    tap_result(pass, file, line, fmt, ap);
    va_end(ap);

    if (!pass) {
        printf("#     got %zu bytes, expected %zu bytes\n", got_len, want_len);
    }

    return pass;
}


#define ok(cond, ...)                                                         \
    tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                \
    tap_is_int((long long) (got), (long long) (want), __FILE__, __LINE__,     \
               __VA_ARGS__)

#define is_str(got, want, ...)                                                \
    tap_is_str((got), (want), __FILE__, __LINE__, __VA_ARGS__)

#define is_mem(got, got_len, want, want_len, ...)                             \
    tap_is_mem((got), (got_len), (want), (want_len), __FILE__, __LINE__,      \
               __VA_ARGS__)


static TAP_UNUSED int
done_testing(void)
{
    if (tap_planned < 0) {
        printf("1..%d\n", tap_run);

    } else if (tap_planned != tap_run) {
        printf("# Looks like you planned %d tests but ran %d.\n",
               tap_planned, tap_run);
        fflush(stdout);
        return 255;
    }

    if (tap_failed) {
        printf("# Looks like you failed %d test%s of %d.\n",
               tap_failed, tap_failed == 1 ? "" : "s", tap_run);
    }

    fflush(stdout);

    return tap_failed ? (tap_failed < 254 ? tap_failed : 254) : 0;
}


#endif /* MM_TAP_H */
