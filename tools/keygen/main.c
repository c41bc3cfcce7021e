/*
 * media-keygen [-f] <dir> <name>
 *
 * Makes a ZeroMQ CURVE key pair and writes
 *   <dir>/<name>.key   mode 0600: "public <z85>\nsecret <z85>\n"
 *   <dir>/<name>.pub   mode 0644: "<z85>\n"
 * (the format lib/curvekey.h reads). Existing files are kept unless -f.
 * Each file is written to a temporary name, fsync'ed, then linked (no -f:
 * fails if the name exists) or renamed (-f) into place.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>


static void
usage(void)
{
    fprintf(stderr, "usage: media-keygen [-f] <dir> <name>\n");
    exit(2);
}


static int
name_valid(const char *s)
{
    size_t  i;

    if (*s == '\0' || *s == '.' || strlen(s) > 200) {
        return 0;
    }

    for (i = 0; s[i] != '\0'; i++) {
        if (!(s[i] == '_' || s[i] == '-' || s[i] == '.'
              || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')
              || (s[i] >= 'A' && s[i] <= 'Z')))
        {
            return 0;
        }
    }

    return 1;
}


static int
exists(const char *path)
{
    struct stat  sb;

    return lstat(path, &sb) == 0;
}


static int
write_file(const char *path, const char *text, mode_t mode, int force)
{
    int     fd;
    char    tmp[4200];
    size_t  len;

    snprintf(tmp, sizeof(tmp), "%s.tmp%d", path, (int) getpid());

    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "media-keygen: %s: %s\n", tmp, strerror(errno));
        return -1;
    }

    len = strlen(text);

    if (fchmod(fd, mode) != 0 || write(fd, text, len) != (ssize_t) len
        || fsync(fd) != 0)
    {
        fprintf(stderr, "media-keygen: %s: %s\n", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }

    close(fd);

    if (force ? rename(tmp, path) : link(tmp, path)) {
        fprintf(stderr, "media-keygen: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }

    if (!force) {
        unlink(tmp);
    }

    return 0;
}


int
main(int argc, char **argv)
{
    int    ch, force;
    char   pub[41], sec[41], key_path[4096], pub_path[4096], text[128];
    char  *dir, *name;

    force = 0;

    while ((ch = getopt(argc, argv, "f")) != -1) {
        switch (ch) {
        case 'f':
            force = 1;
            break;
        default:
            usage();
        }
    }

    argc -= optind;
    argv += optind;

    if (argc != 2) {
        usage();
    }

    dir = argv[0];
    name = argv[1];

    if (!name_valid(name)) {
        fprintf(stderr, "media-keygen: bad name \"%s\": use [A-Za-z0-9_.-]\n",
                name);
        return 2;
    }

    if (snprintf(key_path, sizeof(key_path), "%s/%s.key", dir, name)
            >= (int) sizeof(key_path)
        || snprintf(pub_path, sizeof(pub_path), "%s/%s.pub", dir, name)
            >= (int) sizeof(pub_path))
    {
        fprintf(stderr, "media-keygen: path too long\n");
        return 1;
    }

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "media-keygen: %s: %s\n", dir, strerror(errno));
        return 1;
    }

    if (!force && (exists(key_path) || exists(pub_path))) {
        fprintf(stderr, "media-keygen: %s exists (use -f to replace it)\n",
                exists(key_path) ? key_path : pub_path);
        return 1;
    }

    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "media-keygen: zmq_curve_keypair: %s\n",
                zmq_strerror(errno));
        return 1;
    }

    snprintf(text, sizeof(text), "public %s\nsecret %s\n", pub, sec);

    if (write_file(key_path, text, 0600, force) != 0) {
        return 1;
    }

    snprintf(text, sizeof(text), "%s\n", pub);

    if (write_file(pub_path, text, 0644, force) != 0) {
        unlink(key_path);
        return 1;
    }

    explicit_bzero(sec, sizeof(sec));
    explicit_bzero(text, sizeof(text));

    printf("%s\n", pub);

    return 0;
}
