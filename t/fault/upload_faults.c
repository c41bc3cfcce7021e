
/*
 * upload_faults.so: a fault injector for tests only (t/63-upload-faults.t),
 * loaded into nginx with LD_PRELOAD. It makes chosen calls on the files of
 * one directory fail with a chosen errno: the I/O errors a full tmpfs
 * cannot produce (EIO at write, ENOSPC or EIO at fsync, a failed linkat,
 * a failed fsync of the directory). Calls on other files pass straight on.
 *
 *   MEDIA_FAULT_DIR=/abs/dir     the files concerned: those in it, at any depth
 *   MEDIA_FAULT="rule rule ..."  up to 64 rules, separated by spaces or ';'
 *
 *   rule    OP:ERRNO[:after=N][:times=M][:in=SUB]
 *   OP      write    write(), pwrite(), pwrite64() on a file in the
 *                    directory (an unnamed O_TMPFILE one included)
 *           fsync    fsync(), fdatasync() on such a file
 *           dirsync  fsync(), fdatasync() on the directory itself
 *           link     linkat() giving a file a name in the directory
 *           direct   open(), open64() with O_DIRECT of a file in the
 *                    directory (EINVAL: as on a file system without
 *                    direct I/O)
 *   ERRNO   ENOSPC, EDQUOT, EIO, EINVAL, EROFS, EFBIG, ENOMEM, EPERM or a
 *           number
 *   after=N the first N matching calls succeed (default 0)
 *   times=M then M fail (default 1; 0: every one that follows)
 *   in=SUB  the rule's directory is MEDIA_FAULT_DIR/SUB
 *
 *   MEDIA_FAULT="write:EIO:after=3:in=a fsync:ENOSPC:in=b
 *                direct:EINVAL:times=0:in=b"
 *
 * The environment is read once, when the library is loaded: nginx clears
 * its workers' environment, but they are forks of the master and keep what
 * it read. A bad rule aborts there, so nginx does not start. Counters are
 * per process (a stack of one worker: one set) and atomic (nginx writes
 * uploads from its thread pool). A descriptor's file is its /proc/self/fd
 * link, read at each call (descriptors are reused); the directories are
 * compared as realpath() gives them at load time.
 *
 * With the ASan runtime it comes second in LD_PRELOAD: the sanitizer's
 * interceptors call these, these the C library's (dlsym RTLD_NEXT).
 */

#undef _FORTIFY_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>


#define FAULT_RULES  64

enum {
    FAULT_WRITE = 1,
    FAULT_FSYNC = 2,
    FAULT_DIRSYNC = 4,
    FAULT_LINK = 8,
    FAULT_DIRECT = 16
};


typedef struct {
    unsigned              op;
    int                   err;
    unsigned long         after;
    unsigned long         times;
    atomic_ulong          calls;
    size_t                len;
    char                  dir[PATH_MAX];
} fault_rule_t;


static fault_rule_t   rules[FAULT_RULES];
static int            nrules;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_linkat)(int, const char *, int, const char *, int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);


static const struct {
    const char  *name;
    int          err;
} errnos[] = {
    { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT }, { "EIO", EIO },
    { "EINVAL", EINVAL }, { "EROFS", EROFS }, { "EFBIG", EFBIG },
    { "ENOMEM", ENOMEM }, { "EPERM", EPERM }
};

static const struct {
    const char  *name;
    unsigned     op;
} ops[] = {
    { "write", FAULT_WRITE }, { "fsync", FAULT_FSYNC },
    { "dirsync", FAULT_DIRSYNC }, { "link", FAULT_LINK },
    { "direct", FAULT_DIRECT }
};


static void
fault_bad(const char *rule, const char *why)
{
    fprintf(stderr, "upload_faults: MEDIA_FAULT rule \"%s\": %s\n", rule,
            why);
    abort();
}


static void
fault_parse(const char *spec, const char *base)
{
    char           *f, *save, *end;
    const char     *in;
    size_t          i;
    fault_rule_t   *r;
    char            rule[256], dir[PATH_MAX];

    if ((size_t) snprintf(rule, sizeof(rule), "%s", spec) >= sizeof(rule)) {
        fault_bad(spec, "too long");
    }

    if (nrules == FAULT_RULES) {
        fault_bad(spec, "too many rules");
    }

    r = &rules[nrules++];
    r->times = 1;
    in = NULL;

    f = strtok_r(rule, ":", &save);

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (f && strcmp(f, ops[i].name) == 0) {
            r->op = ops[i].op;
        }
    }

    if (r->op == 0) {
        fault_bad(spec, "no such operation");
    }

    f = strtok_r(NULL, ":", &save);

    for (i = 0; f && i < sizeof(errnos) / sizeof(errnos[0]); i++) {
        if (strcmp(f, errnos[i].name) == 0) {
            r->err = errnos[i].err;
        }
    }

    if (f && r->err == 0) {
        r->err = (int) strtol(f, &end, 10);
        if (*end != '\0') {
            r->err = 0;
        }
    }

    if (r->err <= 0) {
        fault_bad(spec, "no errno");
    }

    while ((f = strtok_r(NULL, ":", &save))) {
        if (strncmp(f, "after=", 6) == 0) {
            r->after = strtoul(f + 6, &end, 10);

        } else if (strncmp(f, "times=", 6) == 0) {
            r->times = strtoul(f + 6, &end, 10);

        } else if (strncmp(f, "in=", 3) == 0) {
            in = f + 3;
            end = "";

        } else {
            fault_bad(spec, "unknown option");
        }

        if (*end != '\0') {
            fault_bad(spec, "not a number");
        }
    }

    if ((size_t) snprintf(dir, sizeof(dir), "%s%s%s", base, in ? "/" : "",
                          in ? in : "")
        >= sizeof(dir))
    {
        fault_bad(spec, "path too long");
    }

    if (realpath(dir, r->dir) == NULL) {
        strcpy(r->dir, dir);
    }

    r->len = strlen(r->dir);
}


__attribute__((constructor))
static void
fault_init(void)
{
    char         *spec, *rule, *save;
    const char   *base, *env;
    static char   buf[4096];

    base = getenv("MEDIA_FAULT_DIR");
    env = getenv("MEDIA_FAULT");

    if (base == NULL || *base != '/' || env == NULL) {
        return;
    }

    if (strlen(env) >= sizeof(buf)) {
        fault_bad(env, "too long");
    }

    spec = strcpy(buf, env);

    for (rule = strtok_r(spec, " ;", &save); rule;
         rule = strtok_r(NULL, " ;", &save))
    {
        fault_parse(rule, base);
    }
}


/* the errno the call fails with, 0: none; path is the file's, canonical */
static int
fault_match(unsigned op, const char *path)
{
    int            err;
    int            i;
    unsigned long  n;
    fault_rule_t  *r;

    err = 0;

    for (i = 0; i < nrules; i++) {
        r = &rules[i];

        if (!(r->op & op) || strncmp(path, r->dir, r->len) != 0) {
            continue;
        }

        /* the directory itself, or a file in it */
        if (r->op == FAULT_DIRSYNC ? path[r->len] != '\0'
                                   : path[r->len] != '/')
        {
            continue;
        }

        n = atomic_fetch_add(&r->calls, 1);

        if (err == 0 && n >= r->after
            && (r->times == 0 || n - r->after < r->times))
        {
            err = r->err;
        }
    }

    return err;
}


static int
fault_fd(unsigned op, int fd)
{
    ssize_t  n;
    char     proc[64], path[PATH_MAX];

    if (nrules == 0) {
        return 0;
    }

    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);

    n = readlink(proc, path, sizeof(path) - 1);
    if (n <= 0) {
        return 0;
    }

    path[n] = '\0';

    return fault_match(op, path);
}


/*
 * The canonical path of the file dir/name names (dirfd a descriptor, or
 * AT_FDCWD): its directory through realpath(), then its last component.
 */
static int
fault_path(unsigned op, int dirfd, const char *name)
{
    char     *slash;
    ssize_t   n;
    char      full[PATH_MAX], dir[PATH_MAX], path[PATH_MAX];

    if (nrules == 0) {
        return 0;
    }

    if (name[0] == '/') {
        n = snprintf(full, sizeof(full), "%s", name);

    } else {
        if (dirfd == AT_FDCWD) {
            if (getcwd(dir, sizeof(dir)) == NULL) {
                return 0;
            }

        } else {
            snprintf(path, sizeof(path), "/proc/self/fd/%d", dirfd);

            n = readlink(path, dir, sizeof(dir) - 1);
            if (n <= 0) {
                return 0;
            }

            dir[n] = '\0';
        }

        n = snprintf(full, sizeof(full), "%s/%s", dir, name);
    }

    if (n < 0 || (size_t) n >= sizeof(full)) {
        return 0;
    }

    slash = strrchr(full, '/');
    *slash = '\0';

    if (realpath(full[0] ? full : "/", dir) == NULL) {
        return 0;
    }

    n = snprintf(path, sizeof(path), "%s/%s", dir, slash + 1);
    if (n < 0 || (size_t) n >= sizeof(path)) {
        return 0;
    }

    return fault_match(op, path);
}


/* O_TMPFILE names the directory: the file is one in it */
static int
fault_open(const char *path, int flags)
{
    char  name[PATH_MAX];

    if (!(flags & O_DIRECT)) {
        return 0;
    }

    if ((flags & O_TMPFILE) == O_TMPFILE) {
        if ((size_t) snprintf(name, sizeof(name), "%s/#", path)
            >= sizeof(name))
        {
            return 0;
        }

        path = name;
    }

    return fault_path(FAULT_DIRECT, AT_FDCWD, path);
}


/*
 * A wrapper: the call fails with the errno of the first rule its file
 * matches (check), or goes on to the next definition (the C library's,
 * looked up at the first call). open() and open64() read their mode
 * first (there with O_CREAT or O_TMPFILE).
 */
#define FAULT_WRAPPER(type, name, params, mode, check, args)                 \
    type                                                                     \
    name params                                                              \
    {                                                                        \
        int  e;                                                              \
                                                                             \
        mode                                                                 \
                                                                             \
        if ((e = check)) {                                                   \
            errno = e;                                                       \
            return -1;                                                       \
        }                                                                    \
                                                                             \
        if (real_##name == NULL) {                                           \
            real_##name = dlsym(RTLD_NEXT, #name);                           \
        }                                                                    \
                                                                             \
        return real_##name args;                                             \
    }

#define FAULT_MODE                                                           \
    mode_t   mode;                                                           \
    va_list  ap;                                                             \
                                                                             \
    va_start(ap, flags);                                                     \
    mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE             \
           ? va_arg(ap, mode_t) : 0;                                         \
    va_end(ap);

FAULT_WRAPPER(ssize_t, write, (int fd, const void *buf, size_t n), ,
              fault_fd(FAULT_WRITE, fd), (fd, buf, n))

FAULT_WRAPPER(ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off),
              , fault_fd(FAULT_WRITE, fd), (fd, buf, n, off))

FAULT_WRAPPER(ssize_t, pwrite64,
              (int fd, const void *buf, size_t n, off64_t off), ,
              fault_fd(FAULT_WRITE, fd), (fd, buf, n, off))

FAULT_WRAPPER(int, fsync, (int fd), ,
              fault_fd(FAULT_FSYNC | FAULT_DIRSYNC, fd), (fd))

FAULT_WRAPPER(int, fdatasync, (int fd), ,
              fault_fd(FAULT_FSYNC | FAULT_DIRSYNC, fd), (fd))

FAULT_WRAPPER(int, linkat,
              (int olddirfd, const char *oldpath, int newdirfd,
               const char *newpath, int flags), ,
              fault_path(FAULT_LINK, newdirfd, newpath),
              (olddirfd, oldpath, newdirfd, newpath, flags))

FAULT_WRAPPER(int, open, (const char *path, int flags, ...), FAULT_MODE,
              fault_open(path, flags), (path, flags, mode))

FAULT_WRAPPER(int, open64, (const char *path, int flags, ...), FAULT_MODE,
              fault_open(path, flags), (path, flags, mode))
