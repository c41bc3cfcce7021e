/*
 * mm_buf_t: appends, printf growth, steal, reset, sticky failure; also
 * mm_read_file and mm_strstatus.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "mm.h"
#include "tap.h"


static void
test_basic(void)
{
    mm_buf_t  b;

    mm_buf_init(&b);
    ok(b.data == NULL && b.len == 0 && b.cap == 0 && !b.failed,
       "init: empty");

    mm_buf_puts(&b, "hello");
    mm_buf_append(&b, ", ", 2);
    mm_buf_puts(&b, "world");
    is_int(b.len, 12, "len after appends");
    is_str(b.data, "hello, world", "contents after appends");
    ok(b.data[b.len] == '\0', "NUL-terminated");

    mm_buf_append(&b, "\0x", 2);
    is_int(b.len, 14, "binary append keeps embedded NUL");
    ok(memcmp(b.data + 12, "\0x", 3) == 0, "embedded NUL stored");

    mm_buf_append(&b, NULL, 0);
    is_int(b.len, 14, "empty append is a no-op");

    mm_buf_reset(&b);
    is_int(b.len, 0, "reset: len 0");
    ok(b.cap > 0 && b.data != NULL, "reset keeps memory");
    is_str(b.data, "", "reset: empty string");

    mm_buf_free(&b);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "free: re-initialised");
}


static void
test_printf(void)
{
    int        i;
    char      *big, *s;
    size_t     len;
    mm_buf_t   b;

    mm_buf_init(&b);

    mm_buf_printf(&b, "%d-%s-%05.1f", 42, "x", 3.14159);
    is_str(b.data, "42-x-003.1", "printf formats");

    mm_buf_printf(&b, "%s", "");
    is_str(b.data, "42-x-003.1", "printf of empty string");

    big = malloc(10000);
    memset(big, 'a', 9999);
    big[9999] = '\0';

    mm_buf_printf(&b, "[%s]", big);
    is_int(b.len, 10 + 10001, "printf grows past initial capacity");
    ok(b.data[10] == '[' && b.data[b.len - 1] == ']'
       && b.data[b.len] == '\0', "printf output intact");

    free(big);

    mm_buf_reset(&b);

    for (i = 0; i < 1000; i++) {
        mm_buf_printf(&b, "%d,", i);
    }

    ok(!b.failed && strncmp(b.data, "0,1,2,", 6) == 0
       && strcmp(b.data + b.len - 4, "999,") == 0, "many small printfs");

    s = mm_buf_steal(&b, &len);
    ok(s != NULL && len == strlen(s) && len == 3890, "steal: length %zu",
       len);
    ok(b.data == NULL && b.len == 0 && b.cap == 0, "steal re-initialises");
    free(s);

    s = mm_buf_steal(&b, &len);
    ok(s != NULL && len == 0 && s[0] == '\0', "steal of empty buffer");
    free(s);

    mm_buf_free(&b);
}


static void
test_sticky(void)
{
    char      *s;
    size_t     len;
    mm_buf_t   b;

    mm_buf_init(&b);
    mm_buf_puts(&b, "abc");

    /* an impossible size fails the buffer without touching memory */
    mm_buf_append(&b, "x", SIZE_MAX - 2);
    ok(b.failed, "huge append sets failed");

    mm_buf_puts(&b, "def");
    mm_buf_printf(&b, "%d", 1);
    is_int(b.len, 3, "appends after failure are no-ops");
    ok(b.failed, "failure is sticky");

    mm_buf_reset(&b);
    ok(!b.failed && b.len == 0, "reset clears the failure");
    mm_buf_puts(&b, "ghi");
    is_str(b.data, "ghi", "and the buffer is usable again");

    mm_buf_append(&b, "x", SIZE_MAX - 2);
    len = 99;
    s = mm_buf_steal(&b, &len);
    ok(s == NULL && len == 0, "steal of a failed buffer returns NULL");
    ok(!b.failed && b.data == NULL, "and re-initialises it");

    mm_buf_free(&b);
}


static void
test_strstatus(void)
{
    int  st;

    for (st = MM_OK; st <= MM_EAGAIN; st++) {
        const char *s = mm_strstatus((mm_status_t) st);

        ok(s != NULL && s[0] != '\0' && strcmp(s, "unknown status") != 0,
           "mm_strstatus(%d) = \"%s\"", st, s);
    }

    is_str(mm_strstatus(MM_OK), "ok", "MM_OK string");
    is_str(mm_strstatus((mm_status_t) 999), "unknown status",
           "out of range status");
    is_str(mm_strstatus((mm_status_t) -1), "unknown status",
           "negative status");
}


/* sizes around the buffer's doublings, an empty file, a missing one */
static void
test_read_file(void)
{
    int       fd;
    char      path[] = "/tmp/test_buf.XXXXXX";
    size_t    sizes[] = { 0, 1, 63, 64, 65, 200000 }, i, j, len;
    uint8_t  *want, *got;

    fd = mkstemp(path);
    if (!ok(fd >= 0, "a temporary file")) {
        return;
    }

    want = malloc(200000);

    for (j = 0; j < 200000; j++) {
        want[j] = (uint8_t) (j * 7 + (j >> 8));
    }

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        ok(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0
           && write(fd, want, sizes[i]) == (ssize_t) sizes[i],
           "%zu bytes written", sizes[i]);

        len = 12345;
        got = mm_read_file(path, &len);
        ok(got != NULL && len == sizes[i]
           && memcmp(got, want, sizes[i]) == 0 && got[len] == '\0',
           "mm_read_file: %zu bytes, NUL-terminated", sizes[i]);
        free(got);
    }

    close(fd);
    unlink(path);
    free(want);

    errno = 0;
    ok(mm_read_file(path, &len) == NULL && errno == ENOENT,
       "a missing file: NULL, ENOENT");
    errno = 0;
    ok(mm_read_file("/", &len) == NULL && errno == EISDIR,
       "a directory: NULL, EISDIR");
}


int
main(void)
{
    test_basic();
    test_printf();
    test_sticky();
    test_read_file();
    test_strstatus();

    return done_testing();
}
