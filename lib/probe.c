/*
 * ffprobe wrapper: see probe.h.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "probe.h"


#define MM_PROBE_OUT_MAX  (4 * 1024 * 1024)
#define MM_PROBE_ERR_MAX  (16 * 1024)


extern char  **environ;


static void mm_probe_copy(char *dst, size_t size, const mm_json_t *obj,
    const char *key);
static double mm_probe_number(const mm_json_t *obj, const char *key);
static double mm_probe_rate(const mm_json_t *obj, const char *key);
static uint64_t mm_probe_now_ms(void);


void
mm_probe_argv(const char *ffprobe, const char *path, char *arg,
    size_t arg_size, char *argv[MM_PROBE_ARGC + 1])
{
    snprintf(arg, arg_size, "file:%s", path);

    argv[0] = (char *) ffprobe;
    argv[1] = (char *) "-v";
    argv[2] = (char *) "error";
    argv[3] = (char *) "-print_format";
    argv[4] = (char *) "json";
    argv[5] = (char *) "-show_streams";
    argv[6] = (char *) "-show_format";
    argv[7] = (char *) "-hide_banner";
    argv[8] = (char *) "-i";
    argv[9] = arg;
    argv[10] = NULL;
}


/* a string member (or a number's text) into dst, "" when absent */
static void
mm_probe_copy(char *dst, size_t size, const mm_json_t *obj, const char *key)
{
    const char       *s;
    size_t            len;
    const mm_json_t  *v;

    dst[0] = '\0';

    v = mm_json_get(obj, key);
    if (v == NULL || v->type != MM_JSON_STRING) {
        return;
    }

    s = v->u.str.s;
    len = strnlen(s, v->u.str.len);
    if (len >= size) {
        len = size - 1;
    }

    memcpy(dst, s, len);
    dst[len] = '\0';
}


/* a number, or a string holding one ("12.000000"); -1 when absent */
static double
mm_probe_number(const mm_json_t *obj, const char *key)
{
    char             *end;
    double            d;
    const mm_json_t  *v;

    v = mm_json_get(obj, key);
    if (v == NULL) {
        return -1;
    }

    if (v->type == MM_JSON_NUMBER) {
        return v->u.num.d;
    }

    if (v->type != MM_JSON_STRING || v->u.str.len == 0) {
        return -1;
    }

    errno = 0;
    d = strtod(v->u.str.s, &end);
    if (errno != 0 || *end != '\0' || d != d) {
        return -1;
    }

    return d;
}


/* "30000/1001" -> 29.97; 0 for "0/0" or when absent */
static double
mm_probe_rate(const mm_json_t *obj, const char *key)
{
    char              buf[64], *slash, *end;
    double            num, den;

    mm_probe_copy(buf, sizeof(buf), obj, key);

    slash = strchr(buf, '/');
    if (slash == NULL) {
        num = strtod(buf, &end);
        return (end != buf && num > 0) ? num : 0;
    }

    *slash = '\0';
    num = strtod(buf, &end);
    if (end == buf) {
        return 0;
    }

    den = strtod(slash + 1, &end);
    if (end == slash + 1 || den <= 0 || num <= 0) {
        return 0;
    }

    return num / den;
}


mm_status_t
mm_probe_parse(const char *json, size_t len, mm_probe_t *p, char *err,
    size_t err_size)
{
    char              perr[160], type[16];
    size_t            i;
    double            d;
    int64_t           n;
    mm_status_t       st;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *format, *streams, *s, *disp;

    memset(p, 0, sizeof(*p));
    p->duration = -1;

    st = mm_json_parse(json, len, &doc, &root, perr, sizeof(perr));
    if (st != MM_OK) {
        snprintf(err, err_size, "ffprobe output is not JSON: %s", perr);
        return MM_EBADDATA;
    }

    format = mm_json_get(root, "format");
    if (format == NULL || format->type != MM_JSON_OBJECT) {
        snprintf(err, err_size, "ffprobe found no container format");
        mm_json_doc_free(&doc);
        return MM_EBADDATA;
    }

    mm_probe_copy(p->container, sizeof(p->container), format, "format_name");
    p->duration = mm_probe_number(format, "duration");

    d = mm_probe_number(format, "bit_rate");
    p->bit_rate = d > 0 ? (int64_t) d : 0;

    streams = mm_json_get(root, "streams");
    if (streams == NULL || streams->type != MM_JSON_ARRAY) {
        mm_json_doc_free(&doc);
        return MM_OK;
    }

    for (i = 0; i < streams->u.arr.n; i++) {
        s = &streams->u.arr.items[i];
        if (s->type != MM_JSON_OBJECT) {
            continue;
        }

        mm_probe_copy(type, sizeof(type), s, "codec_type");

        if (strcmp(type, "video") == 0) {
            /* cover art is a video stream with attached_pic set */
            disp = mm_json_get(s, "disposition");
            if (disp != NULL && mm_json_get_int64(disp, "attached_pic", &n)
                && n != 0)
            {
                continue;
            }

            if (p->nvideo++ > 0) {
                continue;
            }

            mm_probe_copy(p->video_codec, sizeof(p->video_codec), s,
                          "codec_name");
            mm_probe_copy(p->video_profile, sizeof(p->video_profile), s,
                          "profile");

            if (mm_json_get_int64(s, "width", &n) && n > 0 && n < 65536) {
                p->width = (int) n;
            }
            if (mm_json_get_int64(s, "height", &n) && n > 0 && n < 65536) {
                p->height = (int) n;
            }
            if (mm_json_get_int64(s, "level", &n) && n > 0 && n < 256) {
                p->level = (int) n;
            }

            p->fps = mm_probe_rate(s, "avg_frame_rate");
            if (p->fps == 0) {
                p->fps = mm_probe_rate(s, "r_frame_rate");
            }

        } else if (strcmp(type, "audio") == 0) {
            if (p->naudio++ > 0) {
                continue;
            }

            mm_probe_copy(p->audio_codec, sizeof(p->audio_codec), s,
                          "codec_name");
            mm_probe_copy(p->audio_profile, sizeof(p->audio_profile), s,
                          "profile");

            d = mm_probe_number(s, "sample_rate");
            p->sample_rate = (d > 0 && d < 10000000) ? (int) d : 0;

            if (mm_json_get_int64(s, "channels", &n) && n > 0 && n < 256) {
                p->channels = (int) n;
            }
        }
    }

    mm_json_doc_free(&doc);

    return MM_OK;
}


void
mm_probe_describe(const mm_probe_t *p, char *buf, size_t size)
{
    int     n;
    size_t  off;

#define MM_PROBE_PUT(...)                                                     \
    do {                                                                      \
        if (off < size) {                                                     \
            n = snprintf(buf + off, size - off, __VA_ARGS__);                 \
            off += n > 0 ? (size_t) n : 0;                                    \
        }                                                                     \
    } while (0)

    off = 0;
    buf[0] = '\0';

    MM_PROBE_PUT("container %s", p->container[0] ? p->container : "unknown");

    if (p->nvideo == 0) {
        MM_PROBE_PUT(", no video");

    } else {
        MM_PROBE_PUT(", video %s", p->video_codec[0] ? p->video_codec : "?");
        if (p->video_profile[0]) {
            MM_PROBE_PUT(" %s", p->video_profile);
        }
        if (p->width > 0 && p->height > 0) {
            MM_PROBE_PUT(" %dx%d", p->width, p->height);
        }
        if (p->fps > 0) {
            MM_PROBE_PUT(" %.4g fps", p->fps);
        }
        if (p->nvideo > 1) {
            MM_PROBE_PUT(" (%u video streams)", p->nvideo);
        }
    }

    if (p->naudio == 0) {
        MM_PROBE_PUT(", no audio");

    } else {
        MM_PROBE_PUT(", audio %s", p->audio_codec[0] ? p->audio_codec : "?");
        if (p->audio_profile[0]) {
            MM_PROBE_PUT(" %s", p->audio_profile);
        }
        if (p->sample_rate > 0) {
            MM_PROBE_PUT(" %d Hz", p->sample_rate);
        }
        if (p->channels > 0) {
            MM_PROBE_PUT(" %d ch", p->channels);
        }
        if (p->naudio > 1) {
            MM_PROBE_PUT(" (%u audio streams)", p->naudio);
        }
    }

    if (p->duration >= 0) {
        MM_PROBE_PUT(", %.3f s", p->duration);
    }

#undef MM_PROBE_PUT
}


static int
mm_probe_mp4_family(const char *container)
{
    const char  *s, *e;
    size_t       len;

    /* format_name is a comma-separated list: "mov,mp4,m4a,3gp,3g2,mj2" */
    for (s = container; *s != '\0'; s = *e ? e + 1 : e) {
        e = strchr(s, ',');
        if (e == NULL) {
            e = s + strlen(s);
        }
        len = (size_t) (e - s);

        if ((len == 3 && (memcmp(s, "mp4", 3) == 0
                          || memcmp(s, "mov", 3) == 0)))
        {
            return 1;
        }
    }

    return 0;
}


int
mm_probe_verdict(const mm_probe_t *p, char *msg, size_t msg_size)
{
    char         found[400];
    const char  *why;

    why = NULL;

    if (!mm_probe_mp4_family(p->container)) {
        why = "the container is not MP4/MOV";

    } else if (p->nvideo == 0) {
        why = "no video stream";

    } else if (strcmp(p->video_codec, "h264") != 0) {
        why = "the video is not H.264";

    } else if (p->naudio == 0) {
        why = "no audio stream";

    } else if (strcmp(p->audio_codec, "aac") != 0) {
        why = "the audio is not AAC";

    } else if (p->width <= 0 || p->height <= 0) {
        why = "the video has no size";
    }

    mm_probe_describe(p, found, sizeof(found));

    if (why == NULL) {
        snprintf(msg, msg_size, "%s", found);
        return 1;
    }

    snprintf(msg, msg_size, "not H.264+AAC in MP4/MOV: %s (found: %s)", why,
             found);

    return 0;
}


static void
mm_probe_put_str(mm_buf_t *b, const char *key, const char *s)
{
    mm_buf_printf(b, "\"%s\":", key);
    mm_json_put_string(b, s, strlen(s));
}


void
mm_probe_to_json(const mm_probe_t *p, mm_buf_t *b)
{
    mm_buf_puts(b, "{");
    mm_probe_put_str(b, "container", p->container);

    if (p->duration >= 0) {
        mm_buf_printf(b, ",\"duration\":%.6f", p->duration);
    } else {
        mm_buf_puts(b, ",\"duration\":null");
    }

    mm_buf_printf(b, ",\"bit_rate\":%lld", (long long) p->bit_rate);

    if (p->nvideo > 0) {
        mm_buf_puts(b, ",\"video\":{");
        mm_probe_put_str(b, "codec", p->video_codec);
        mm_buf_puts(b, ",");
        mm_probe_put_str(b, "profile", p->video_profile);
        mm_buf_printf(b, ",\"width\":%d,\"height\":%d,\"fps\":%.3f,"
                      "\"level\":%d,\"streams\":%u}", p->width, p->height,
                      p->fps, p->level, p->nvideo);
    } else {
        mm_buf_puts(b, ",\"video\":null");
    }

    if (p->naudio > 0) {
        mm_buf_puts(b, ",\"audio\":{");
        mm_probe_put_str(b, "codec", p->audio_codec);
        mm_buf_puts(b, ",");
        mm_probe_put_str(b, "profile", p->audio_profile);
        mm_buf_printf(b, ",\"sample_rate\":%d,\"channels\":%d,"
                      "\"streams\":%u}", p->sample_rate, p->channels,
                      p->naudio);
    } else {
        mm_buf_puts(b, ",\"audio\":null");
    }

    mm_buf_puts(b, "}");
}


static uint64_t
mm_probe_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


/*
 * ffprobe's stderr as one line: each line without its "[demuxer @ 0x..] "
 * or "file:<path>: " prefix, joined with "; ", repeats dropped
 */
void
mm_probe_error_text(const char *text, size_t len, const char *arg, char *err,
    size_t err_size)
{
    size_t       alen, n, off;
    const char  *line, *end, *p, *q;

    alen = strlen(arg);
    end = text + len;
    off = 0;
    err[0] = '\0';

    for (line = text; line < end && off + 1 < err_size; line = p + 1) {
        p = memchr(line, '\n', (size_t) (end - line));
        if (p == NULL) {
            p = end;
        }

        q = line;

        if (q < p && *q == '[') {
            const char  *rb = memchr(q, ']', (size_t) (p - q));

            if (rb != NULL && rb + 1 < p && rb[1] == ' ') {
                q = rb + 2;
            }
        }

        if ((size_t) (p - q) > alen + 1 && memcmp(q, arg, alen) == 0
            && q[alen] == ':' && q[alen + 1] == ' ')
        {
            q += alen + 2;
        }

        while (q < p && (*q == ' ' || *q == '\r')) {
            q++;
        }

        n = (size_t) (p - q);
        while (n > 0 && (q[n - 1] == ' ' || q[n - 1] == '\r')) {
            n--;
        }

        if (n == 0 || memmem(err, off, q, n) != NULL) {
            continue;
        }

        off += (size_t) snprintf(err + off, err_size - off, "%s%.*s",
                                 off ? "; " : "", (int) n, q);
        if (off >= err_size) {
            off = err_size - 1;
        }
    }

    if (off == 0) {
        snprintf(err, err_size, "ffprobe could not read the file");
    }
}


mm_status_t
mm_probe_run(const char *ffprobe, const char *path, int timeout_ms,
    mm_probe_t *p, char *err, size_t err_size)
{
    int                          out[2], errp[2], status, rc, i, open_fds;
    char                        *arg, *argv[MM_PROBE_ARGC + 1];
    char                         chunk[16384];
    pid_t                        pid;
    size_t                       arg_size;
    ssize_t                      n;
    uint64_t                     deadline, now;
    mm_buf_t                     obuf, ebuf;
    mm_status_t                  st;
    struct pollfd                pfd[2];
    posix_spawn_file_actions_t   fa;

    memset(p, 0, sizeof(*p));
    p->duration = -1;

    arg_size = strlen(path) + 8;
    arg = malloc(arg_size);
    if (arg == NULL) {
        snprintf(err, err_size, "out of memory");
        return MM_ENOMEM;
    }

    mm_probe_argv(ffprobe, path, arg, arg_size, argv);

    if (pipe2(out, O_CLOEXEC) != 0) {
        snprintf(err, err_size, "pipe: %s", strerror(errno));
        free(arg);
        return MM_EIO;
    }

    if (pipe2(errp, O_CLOEXEC) != 0) {
        snprintf(err, err_size, "pipe: %s", strerror(errno));
        close(out[0]);
        close(out[1]);
        free(arg);
        return MM_EIO;
    }

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);

    rc = posix_spawnp(&pid, ffprobe, &fa, NULL, argv, environ);

    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(errp[1]);

    if (rc != 0) {
        snprintf(err, err_size, "cannot run %s: %s", ffprobe, strerror(rc));
        close(out[0]);
        close(errp[0]);
        free(arg);
        return MM_EIO;
    }

    mm_buf_init(&obuf);
    mm_buf_init(&ebuf);

    deadline = mm_probe_now_ms() + (uint64_t) timeout_ms;
    pfd[0].fd = out[0];
    pfd[1].fd = errp[0];
    open_fds = 2;
    st = MM_OK;

    while (open_fds > 0) {
        now = mm_probe_now_ms();
        if (now >= deadline) {
            st = MM_EAGAIN;
            break;
        }

        pfd[0].events = pfd[0].fd >= 0 ? POLLIN : 0;
        pfd[1].events = pfd[1].fd >= 0 ? POLLIN : 0;

        rc = poll(pfd, 2, (int) (deadline - now));
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            st = MM_EIO;
            break;
        }

        for (i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || pfd[i].revents == 0) {
                continue;
            }

            n = read(pfd[i].fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR) {
                continue;
            }

            if (n <= 0) {
                close(pfd[i].fd);
                pfd[i].fd = -1;
                open_fds--;
                continue;
            }

            if (i == 0 && obuf.len + (size_t) n <= MM_PROBE_OUT_MAX) {
                mm_buf_append(&obuf, chunk, (size_t) n);

            } else if (i == 1 && ebuf.len + (size_t) n <= MM_PROBE_ERR_MAX) {
                mm_buf_append(&ebuf, chunk, (size_t) n);
            }
        }
    }

    for (i = 0; i < 2; i++) {
        if (pfd[i].fd >= 0) {
            close(pfd[i].fd);
        }
    }

    if (st != MM_OK) {
        kill(pid, SIGKILL);
    }

    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        /* void */
    }

    if (st == MM_EAGAIN) {
        snprintf(err, err_size, "ffprobe did not finish in %d ms",
                 timeout_ms);
        goto done;
    }

    if (st != MM_OK) {
        snprintf(err, err_size, "poll: %s", strerror(errno));
        goto done;
    }

    if (obuf.failed || ebuf.failed) {
        snprintf(err, err_size, "out of memory");
        st = MM_ENOMEM;
        goto done;
    }

    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127
            && ebuf.len == 0)
        {
            snprintf(err, err_size, "cannot run %s", ffprobe);
            st = MM_EIO;
            goto done;
        }

        mm_probe_error_text(ebuf.data ? ebuf.data : "", ebuf.len, arg, err,
                            err_size);
        st = MM_EBADDATA;
        goto done;
    }

    st = mm_probe_parse(obuf.data ? obuf.data : "", obuf.len, p, err,
                        err_size);

done:

    mm_buf_free(&obuf);
    mm_buf_free(&ebuf);
    free(arg);

    return st;
}
