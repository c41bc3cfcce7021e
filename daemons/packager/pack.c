/*
 * One packaging run: ffmpeg remux -> CMAF fragments on two pipes ->
 * lib/cbcs -> files -> manifests -> publish. See pack.h.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "buf.h"
#include "cbcs.h"
#include "child.h"
#include "dmain.h"
#include "hls.h"
#include "log.h"
#include "mp4.h"
#include "mpd.h"
#include "pack.h"
#include "probe.h"
#include "util.h"


#define PACK_PIPE_SIZE     (1024 * 1024)
#define PACK_READ_MAX      (32 * 1024 * 1024)   /* per pipe per process */
#define PACK_BOX_MAX       ((uint64_t) 1 << 31) /* one fragment */
#define PACK_STDERR_MAX    8192
#define PACK_STALL_MS      (10 * 60 * 1000)     /* no output at all */
#define PACK_COALESCE      (256 * 1024)         /* a read below this ... */
#define PACK_COALESCE_MS   2                    /* ... waits this long */
#define PACK_TRACKS_MAX    (2 + PACK_RUNGS_MAX)

/* a fragment starts at a keyframe (the copied video and the renditions) */
#define PACK_VIDEO_MOVFLAGS                                                   \
    "+frag_keyframe+empty_moov+default_base_moof+cmaf+skip_trailer"

#define T_FTYP  MM_FOURCC('f', 't', 'y', 'p')
#define T_STYP  MM_FOURCC('s', 't', 'y', 'p')
#define T_MOOV  MM_FOURCC('m', 'o', 'o', 'v')
#define T_MOOF  MM_FOURCC('m', 'o', 'o', 'f')
#define T_MDAT  MM_FOURCC('m', 'd', 'a', 't')
#define T_MFRA  MM_FOURCC('m', 'f', 'r', 'a')
#define T_FREE  MM_FOURCC('f', 'r', 'e', 'e')
#define T_SKIP  MM_FOURCC('s', 'k', 'i', 'p')
#define T_TRAK  MM_FOURCC('t', 'r', 'a', 'k')
#define T_MDIA  MM_FOURCC('m', 'd', 'i', 'a')
#define T_MDHD  MM_FOURCC('m', 'd', 'h', 'd')
#define T_MINF  MM_FOURCC('m', 'i', 'n', 'f')
#define T_STBL  MM_FOURCC('s', 't', 'b', 'l')
#define T_STSD  MM_FOURCC('s', 't', 's', 'd')
#define T_MVEX  MM_FOURCC('m', 'v', 'e', 'x')
#define T_TREX  MM_FOURCC('t', 'r', 'e', 'x')
#define T_TRAF  MM_FOURCC('t', 'r', 'a', 'f')
#define T_TFHD  MM_FOURCC('t', 'f', 'h', 'd')
#define T_TFDT  MM_FOURCC('t', 'f', 'd', 't')
#define T_TRUN  MM_FOURCC('t', 'r', 'u', 'n')
#define T_AVC1  MM_FOURCC('a', 'v', 'c', '1')
#define T_AVC3  MM_FOURCC('a', 'v', 'c', '3')
#define T_AVCC  MM_FOURCC('a', 'v', 'c', 'C')
#define T_PASP  MM_FOURCC('p', 'a', 's', 'p')
#define T_MP4A  MM_FOURCC('m', 'p', '4', 'a')
#define T_ESDS  MM_FOURCC('e', 's', 'd', 's')
#define T_PSSH  MM_FOURCC('p', 's', 's', 'h')


typedef struct {
    char              name[16];     /* "video", "audio", "video-480" */
    char              init[32];     /* "video/init.mp4" */
    char              media[48];    /* "video/seg-$Number$.m4s" */
    char              playlist[32]; /* "video.m3u8" */
    int               video;
    unsigned          rung_height;  /* a transcoded rendition, else 0 */
    unsigned          rung_bitrate;
    int               fd;           /* pipe read end, -1 after EOF */

    /* bytes from the pipe: [off, len) unconsumed, [off, scan) the boxes
       of the unit (init or fragment) being gathered */
    uint8_t          *data;
    size_t            off;
    size_t            scan;
    size_t            len;
    size_t            cap;

    mm_cbcs_track_t  *cbcs;
    mm_buf_t          out;          /* encrypted bytes, reused */
    int               have_init;

    /* from the init segment */
    uint32_t          timescale;
    uint32_t          trex_duration;
    char              codecs[32];
    unsigned          width;
    unsigned          height;
    unsigned          sar_num;
    unsigned          sar_den;
    unsigned          sample_rate;
    unsigned          channels;

    /* the fragments written */
    mm_seg_t         *segs;
    uint64_t         *sizes;
    size_t            nsegs;
    size_t            segs_cap;
    uint64_t          bytes;
    uint64_t          end;          /* t + d of the last one */
} pack_track_t;


struct pack_s {
    pack_conf_t       conf;
    int64_t           id;
    char             *input;
    char             *input_arg;    /* "file:<input>" */
    char             *license_url;
    mm_cbcs_key_t     key;
    double            duration;
    double            fps;

    char             *tmp_dir;      /* <out>/.tmp-<id>-<pid> */
    char             *final_dir;    /* <out>/<id> */
    int               dir_fd;       /* of tmp_dir */

    child_t           child;
    int               err_fd;
    int               progress_fd;  /* ffmpeg -progress */
    char              progress_line[256];
    size_t            progress_len;
    double            out_time;     /* seconds, from -progress */
    mm_buf_t          stderr_text;
    uint64_t          last_io;
    uint64_t          coalesce_until;   /* pipes not polled before */
    size_t            round_bytes;      /* read by this pack_process() */

    /* 0: the video (copied), 1: the audio, 2...: ladder renditions */
    pack_track_t      tracks[PACK_TRACKS_MAX];
    int               ntracks;
    uint8_t          *pssh;
    size_t            pssh_len;

    pack_state_t      state;
    char              error[1024];
    double            packaged;     /* seconds, once done */
    int               unaligned;    /* ladder segments not aligned */
    uint64_t          started;

    /* where the time goes (debug log, bench) */
    double            t_read;
    double            t_encrypt;
    double            t_write;
    double            t_sync;
};


static void pack_fail(pack_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int pack_rm_rf(const char *path);
static int pack_write(pack_t *p, const char *name, const void *data,
    size_t len);
static int pack_spawn(pack_t *p);
static void pack_read_stderr(pack_t *p);
static void pack_read_progress(pack_t *p);
static int pack_read_track(pack_t *p, pack_track_t *t);
static int pack_parse(pack_t *p, pack_track_t *t);
static int pack_init_segment(pack_t *p, pack_track_t *t, const uint8_t *in,
    size_t len);
static int pack_fragment(pack_t *p, pack_track_t *t, const uint8_t *in,
    size_t len);
static void pack_finish(pack_t *p);
static int pack_manifests(pack_t *p);
static int pack_publish(pack_t *p);


/* ---- small helpers --------------------------------------------------- */


static void
pack_fail(pack_t *p, const char *fmt, ...)
{
    va_list  ap;

    if (p->state != PACK_RUNNING) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);

    p->state = PACK_FAILED;

    log_warnx("packaged_content %" PRId64 ": %s", p->id, p->error);

    child_kill(&p->child, SIGKILL);
}


static int
pack_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) != 0 && errno != ENOENT) {
        log_warn("remove %s", path);
    }

    return 0;
}


/* rm -rf; 0, or -1 when path could not be walked */
static int
pack_rm_rf(const char *path)
{
    if (nftw(path, pack_rm_cb, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        return errno == ENOENT ? 0 : -1;
    }

    return 0;
}


/* writes name (relative to the temporary directory) in one go */
static double
pack_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}


static int
pack_write(pack_t *p, const char *name, const void *data, size_t len)
{
    int             fd;
    double          t0;
    ssize_t         n;
    const uint8_t  *b;

    t0 = pack_now();

    fd = openat(p->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0644);
    if (fd < 0) {
        pack_fail(p, "cannot create %s: %s", name, strerror(errno));
        return -1;
    }

    for (b = data; len > 0; b += n, len -= (size_t) n) {
        n = write(fd, b, len);
        if (n < 0) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }
            pack_fail(p, "cannot write %s: %s", name, strerror(errno));
            close(fd);
            return -1;
        }
    }

    if (close(fd) != 0) {
        pack_fail(p, "cannot write %s: %s", name, strerror(errno));
        return -1;
    }

    p->t_write += pack_now() - t0;

    return 0;
}


/* descends path[0..n) from the boxes in [p, p + len) */
static int
pack_box(const uint8_t *p, size_t len, const uint32_t *path, size_t n,
    mm_mp4_box_t *box)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (mm_mp4_find(p, len, path[i], box) != MM_OK) {
            return -1;
        }
        p = box->data;
        len = box->size - box->header;
    }

    return 0;
}


/* ---- start ----------------------------------------------------------- */


/* removes <out>/.tmp-<id>-* left by an earlier attempt */
static void
pack_clean_attempts(const char *out, int64_t id)
{
    DIR            *d;
    char            prefix[64], *path;
    size_t          plen;
    struct dirent  *e;

    plen = (size_t) snprintf(prefix, sizeof(prefix), ".tmp-%" PRId64 "-", id);

    d = opendir(out);
    if (d == NULL) {
        return;
    }

    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0) {
            continue;
        }

        if (asprintf(&path, "%s/%s", out, e->d_name) < 0) {
            break;
        }

        log_info("packaged_content %" PRId64 ": removing %s (an earlier "
                 "attempt)", id, path);
        (void) pack_rm_rf(path);
        free(path);
    }

    closedir(d);
}


/*
 * The ladder renditions to make: below the source's height (no
 * upscaling), each height once, highest first, at most PACK_RUNGS_MAX;
 * a missing bitrate gets one for its height. Returns the count.
 */
static int
pack_ladder(const pack_job_t *job, pack_rung_t *out)
{
    size_t       i, j, n;
    unsigned     h;
    pack_rung_t  r;

    n = 0;

    for (i = 0; i < job->nrungs; i++) {
        h = job->rungs[i].height & ~1u;

        if (h < 64 || (job->height > 0 && h >= (unsigned) job->height)) {
            log_info("packaged_content %" PRId64 ": ladder: %up dropped "
                     "(the source is %dp)", job->id, job->rungs[i].height,
                     job->height);
            continue;
        }

        for (j = 0; j < n; j++) {
            if (out[j].height == h) {
                break;
            }
        }

        if (j < n) {
            continue;
        }

        if (n == PACK_RUNGS_MAX) {
            log_info("packaged_content %" PRId64 ": ladder: more than %d "
                     "renditions, %up dropped", job->id, PACK_RUNGS_MAX, h);
            continue;
        }

        r.height = h;
        r.bitrate = job->rungs[i].bitrate;

        if (r.bitrate == 0) {
            /* about 0.1 bit per pixel at 30 fps */
            r.bitrate = h * h * 16 / 9 * 3;
            r.bitrate = r.bitrate < 200000 ? 200000 : r.bitrate;
        }

        out[n++] = r;
    }

    /* highest first (insertion sort: a handful) */
    for (i = 1; i < n; i++) {
        r = out[i];
        for (j = i; j > 0 && out[j - 1].height < r.height; j--) {
            out[j] = out[j - 1];
        }
        out[j] = r;
    }

    return (int) n;
}


pack_t *
pack_start(const pack_conf_t *conf, const pack_job_t *job)
{
    int           i;
    char          name[16];
    pack_t       *p;
    pack_rung_t   rungs[PACK_RUNGS_MAX];

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }

    p->conf = *conf;
    p->id = job->id;
    p->duration = job->duration;
    p->fps = job->fps;
    p->dir_fd = -1;
    p->err_fd = -1;
    p->progress_fd = -1;
    p->child.pidfd = -1;
    p->started = now_mono_ms();
    p->last_io = p->started;
    mm_buf_init(&p->stderr_text);

    memcpy(p->key.key, job->key, 16);
    memcpy(p->key.kid, job->kid, 16);

    p->ntracks = 2 + pack_ladder(job, rungs);

    for (i = 0; i < p->ntracks; i++) {
        pack_track_t  *t = &p->tracks[i];

        t->fd = -1;
        t->video = (i != 1);

        if (i >= 2) {
            t->rung_height = rungs[i - 2].height;
            t->rung_bitrate = rungs[i - 2].bitrate;
            snprintf(name, sizeof(name), "video-%u", t->rung_height);
        } else {
            snprintf(name, sizeof(name), "%s", i == 0 ? "video" : "audio");
        }

        memcpy(t->name, name, sizeof(t->name));
        snprintf(t->init, sizeof(t->init), "%s/init.mp4", name);
        snprintf(t->media, sizeof(t->media), "%s/seg-$Number$.m4s", name);
        snprintf(t->playlist, sizeof(t->playlist), "%s.m3u8", name);
        mm_buf_init(&t->out);
    }

    p->input = strdup(job->input);
    p->license_url = job->license_url ? strdup(job->license_url) : NULL;

    if (p->input == NULL || (job->license_url && p->license_url == NULL)
        || asprintf(&p->input_arg, "file:%s", job->input) < 0
        || asprintf(&p->tmp_dir, "%s/.tmp-%" PRId64 "-%d", conf->output_dir,
                    job->id, (int) getpid()) < 0
        || asprintf(&p->final_dir, "%s/%" PRId64, conf->output_dir,
                    job->id) < 0)
    {
        p->input_arg = NULL;
        pack_destroy(&p);
        return NULL;
    }

    for (i = 0; i < p->ntracks; i++) {
        p->tracks[i].cbcs = mm_cbcs_track_new();
        if (p->tracks[i].cbcs == NULL) {
            pack_destroy(&p);
            return NULL;
        }
    }

    /* a random constant IV per content (it goes into 'tenc') */
    if (RAND_bytes(p->key.iv, sizeof(p->key.iv)) != 1) {
        pack_fail(p, "no random bytes for the IV");
        return p;
    }

    if (mkdirs(conf->output_dir, 0755) != 0) {
        pack_fail(p, "cannot create %s: %s", conf->output_dir,
                  strerror(errno));
        return p;
    }

    pack_clean_attempts(conf->output_dir, job->id);

    if (mkdir(p->tmp_dir, 0755) != 0) {
        pack_fail(p, "cannot create %s: %s", p->tmp_dir, strerror(errno));
        return p;
    }

    p->dir_fd = open(p->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p->dir_fd < 0) {
        pack_fail(p, "cannot open %s: %s", p->tmp_dir, strerror(errno));
        return p;
    }

    for (i = 0; i < p->ntracks; i++) {
        if (mkdirat(p->dir_fd, p->tracks[i].name, 0755) != 0) {
            pack_fail(p, "cannot create %s/%s: %s", p->tmp_dir,
                      p->tracks[i].name, strerror(errno));
            return p;
        }
    }

    if (pack_spawn(p) != 0) {
        return p;
    }

    log_info("packaged_content %" PRId64 ": packaging %s (ffmpeg pid %d)",
             p->id, p->input, (int) p->child.pid);

    return p;
}


/* appends the options of one fragmented MP4 output to argv[argc..] */
static int
pack_argv_fmp4(char **argv, int argc, const char *movflags,
    const char *frag_opt, const char *frag, const char *pipe)
{
    argv[argc++] = (char *) "-f";
    argv[argc++] = (char *) "mp4";
    argv[argc++] = (char *) "-movflags";
    argv[argc++] = (char *) movflags;
    argv[argc++] = (char *) frag_opt;
    argv[argc++] = (char *) frag;
    argv[argc++] = (char *) pipe;

    return argc;
}


static int
pack_spawn(pack_t *p)
{
    int           i, n, fds[6 + PACK_RUNGS_MAX], pipes[4 + PACK_RUNGS_MAX][2];
    int           argc;
    char          minfrag[32], frag[32], rate[32], err[256];
    char          scale[PACK_RUNGS_MAX][32], bitrate[PACK_RUNGS_MAX][16];
    char          maxrate[PACK_RUNGS_MAX][16], bufsize[PACK_RUNGS_MAX][16];
    char          out[PACK_RUNGS_MAX][16];
    char         *argv[64 + 32 * PACK_RUNGS_MAX];
    pack_track_t *t;

    /* 0 video, 1 audio, 2 stderr, 3 progress, 4... renditions */
    n = 4 + p->ntracks - 2;

    for (i = 0; i < n; i++) {
        pipes[i][0] = pipes[i][1] = -1;
    }

    for (i = 0; i < n; i++) {
        if (child_pipe(pipes[i], (i < 2 || i >= 4) ? PACK_PIPE_SIZE : 0)
            != 0)
        {
            pack_fail(p, "pipe: %s", strerror(errno));
            goto failed;
        }
    }

    snprintf(minfrag, sizeof(minfrag), "%ld", p->conf.segment_ms * 1000);
    snprintf(frag, sizeof(frag), "%ld", p->conf.segment_ms * 1000);
    snprintf(rate, sizeof(rate), "%ld", p->conf.read_rate);

    argc = 0;
    argv[argc++] = (char *) p->conf.ffmpeg;
    argv[argc++] = (char *) "-nostdin";
    argv[argc++] = (char *) "-hide_banner";
    argv[argc++] = (char *) "-loglevel";
    argv[argc++] = (char *) "error";
    argv[argc++] = (char *) "-nostats";
    argv[argc++] = (char *) "-progress";
    argv[argc++] = (char *) "pipe:5";

    if (p->conf.read_rate > 0) {
        argv[argc++] = (char *) "-readrate";
        argv[argc++] = rate;
    }

    argv[argc++] = (char *) "-i";
    argv[argc++] = p->input_arg;

    /* video: a fragment starts at the first keyframe >= segment_ms */
    argv[argc++] = (char *) "-map";
    argv[argc++] = (char *) "0:v:0";
    argv[argc++] = (char *) "-c";
    argv[argc++] = (char *) "copy";
    argc = pack_argv_fmp4(argv, argc, PACK_VIDEO_MOVFLAGS,
                          "-min_frag_duration", minfrag, "pipe:3");

    /* audio: every segment_ms */
    argv[argc++] = (char *) "-map";
    argv[argc++] = (char *) "0:a:0";
    argv[argc++] = (char *) "-c";
    argv[argc++] = (char *) "copy";
    argc = pack_argv_fmp4(argv, argc,
                          "+empty_moov+default_base_moof+cmaf+skip_trailer",
                          "-frag_duration", frag, "pipe:4");

    /*
     * ladder renditions (the only transcoding): keyframes where the
     * source has them and nowhere else, so the same fragmenting rule cuts
     * them at the same times as the copied video (aligned segments)
     */
    for (i = 2; i < p->ntracks; i++) {
        t = &p->tracks[i];

        snprintf(scale[i - 2], sizeof(scale[0]), "scale=-2:%u",
                 t->rung_height);
        snprintf(bitrate[i - 2], sizeof(bitrate[0]), "%u", t->rung_bitrate);
        snprintf(maxrate[i - 2], sizeof(maxrate[0]), "%u",
                 t->rung_bitrate / 2 * 3);
        snprintf(bufsize[i - 2], sizeof(bufsize[0]), "%u",
                 t->rung_bitrate * 2);
        snprintf(out[i - 2], sizeof(out[0]), "pipe:%d", 6 + i - 2);

        argv[argc++] = (char *) "-map";
        argv[argc++] = (char *) "0:v:0";
        argv[argc++] = (char *) "-vf";
        argv[argc++] = scale[i - 2];
        argv[argc++] = (char *) "-c:v";
        argv[argc++] = (char *) "libx264";
        argv[argc++] = (char *) "-preset";
        argv[argc++] = (char *) "veryfast";
        argv[argc++] = (char *) "-profile:v";
        argv[argc++] = (char *) "high";
        argv[argc++] = (char *) "-pix_fmt";
        argv[argc++] = (char *) "yuv420p";
        argv[argc++] = (char *) "-b:v";
        argv[argc++] = bitrate[i - 2];
        argv[argc++] = (char *) "-maxrate";
        argv[argc++] = maxrate[i - 2];
        argv[argc++] = (char *) "-bufsize";
        argv[argc++] = bufsize[i - 2];
        argv[argc++] = (char *) "-force_key_frames";
        argv[argc++] = (char *) "source";
        argv[argc++] = (char *) "-x264-params";
        argv[argc++] = (char *) "scenecut=0:open_gop=0";
        argc = pack_argv_fmp4(argv, argc, PACK_VIDEO_MOVFLAGS,
                              "-min_frag_duration", minfrag, out[i - 2]);
    }

    argv[argc] = NULL;

    fds[0] = -1;
    fds[1] = -1;
    fds[2] = pipes[2][1];
    fds[3] = pipes[0][1];
    fds[4] = pipes[1][1];
    fds[5] = pipes[3][1];

    for (i = 4; i < n; i++) {
        fds[6 + i - 4] = pipes[i][1];
    }

    if (child_spawn(&p->child, argv, fds, 6 + n - 4, err, sizeof(err))
        != 0)
    {
        pack_fail(p, "%s", err);
        goto failed;
    }

    for (i = 0; i < n; i++) {
        close(pipes[i][1]);
    }

    p->tracks[0].fd = pipes[0][0];
    p->tracks[1].fd = pipes[1][0];
    p->err_fd = pipes[2][0];
    p->progress_fd = pipes[3][0];

    for (i = 4; i < n; i++) {
        p->tracks[2 + i - 4].fd = pipes[i][0];
    }

    return 0;

failed:

    for (i = 0; i < n; i++) {
        if (pipes[i][0] >= 0) {
            close(pipes[i][0]);
        }
        if (pipes[i][1] >= 0) {
            close(pipes[i][1]);
        }
    }

    return -1;
}


void
pack_kill(pack_t *p)
{
    if (p->child.pid > 0 && !p->child.exited) {
        child_kill(&p->child, SIGKILL);
        child_wait(&p->child);
    }
}


void
pack_destroy(pack_t **pp)
{
    int      i;
    pack_t  *p;

    p = *pp;
    if (p == NULL) {
        return;
    }

    *pp = NULL;

    pack_kill(p);
    child_close(&p->child);

    for (i = 0; i < p->ntracks; i++) {
        pack_track_t  *t = &p->tracks[i];

        if (t->fd >= 0) {
            close(t->fd);
        }
        free(t->data);
        free(t->segs);
        free(t->sizes);
        mm_buf_free(&t->out);
        mm_cbcs_track_destroy(&t->cbcs);
    }

    if (p->err_fd >= 0) {
        close(p->err_fd);
    }

    if (p->progress_fd >= 0) {
        close(p->progress_fd);
    }

    if (p->dir_fd >= 0) {
        close(p->dir_fd);
    }

    /* after a publish the temporary directory holds the old output */
    if (p->tmp_dir != NULL) {
        (void) pack_rm_rf(p->tmp_dir);
    }

    mm_buf_free(&p->stderr_text);
    free(p->pssh);
    free(p->input);
    free(p->input_arg);
    free(p->license_url);
    free(p->tmp_dir);
    free(p->final_dir);
    free(p);
}


pack_state_t
pack_state(const pack_t *p)
{
    return p->state;
}


const char *
pack_error(const pack_t *p)
{
    return p->error;
}


double
pack_duration(const pack_t *p)
{
    return p->packaged;
}


double
pack_progress(const pack_t *p)
{
    int     i;
    double  done, t;

    if (p->state == PACK_DONE) {
        return 1.0;
    }

    if (p->duration <= 0) {
        return 0;
    }

    done = -1;

    for (i = 0; i < p->ntracks; i++) {
        const pack_track_t  *tr = &p->tracks[i];

        t = tr->timescale ? (double) tr->end / tr->timescale : 0;
        if (done < 0 || t < done) {
            done = t;
        }
    }

    /* ffmpeg's own clock runs ahead of the fragments written */
    if (p->out_time > 0 && p->out_time < done + 60) {
        done = p->out_time > done ? p->out_time : done;
    }

    done /= p->duration;

    return done < 0 ? 0 : done > 0.99 ? 0.99 : done;
}


/* ---- the loop's side ------------------------------------------------- */


int
pack_poll_items(pack_t *p, zmq_pollitem_t *items, long *timeout)
{
    int       i, n, t;
    uint64_t  now;

    n = 0;

    if (p->state != PACK_RUNNING) {
        *timeout = 0;
        return 0;
    }

    now = now_mono_ms();

    /*
     * ffmpeg writes 32 KB at a time: after a small read the media pipes
     * are left to fill for a moment, so each wake-up reads a lot (fewer
     * polls and reads; the pipes hold 1 MB, ffmpeg does not stall)
     */
    if (now < p->coalesce_until) {
        t = (int) (p->coalesce_until - now);
        if (t < *timeout) {
            *timeout = t;
        }

    } else {
        for (i = 0; i < p->ntracks; i++) {
            if (p->tracks[i].fd >= 0) {
                dmain_item(&items[n++], NULL, p->tracks[i].fd,
                           ZMQ_POLLIN);
            }
        }
    }

    if (p->err_fd >= 0) {
        dmain_item(&items[n++], NULL, p->err_fd, ZMQ_POLLIN);
    }

    if (p->progress_fd >= 0) {
        dmain_item(&items[n++], NULL, p->progress_fd, ZMQ_POLLIN);
    }

    if (child_fd(&p->child) >= 0) {
        dmain_item(&items[n++], NULL, child_fd(&p->child), ZMQ_POLLIN);
    }

    t = child_timeout(&p->child);
    if (t >= 0 && t < *timeout) {
        *timeout = t;
    }

    dmain_lower(timeout, p->last_io + PACK_STALL_MS, now);

    return n;
}


void
pack_process(pack_t *p)
{
    int       i, open_pipes;
    uint64_t  now;

    if (p->state != PACK_RUNNING) {
        return;
    }

    pack_read_stderr(p);
    pack_read_progress(p);

    now = now_mono_ms();

    if (now >= p->coalesce_until) {
        p->round_bytes = 0;
        open_pipes = 0;

        for (i = 0; i < p->ntracks && p->state == PACK_RUNNING; i++) {
            if (p->tracks[i].fd >= 0) {
                (void) pack_read_track(p, &p->tracks[i]);
                open_pipes += (p->tracks[i].fd >= 0);
            }
        }

        if (open_pipes > 0 && p->round_bytes < PACK_COALESCE) {
            p->coalesce_until = now + PACK_COALESCE_MS;
        }
    }

    if (p->state != PACK_RUNNING) {
        return;
    }

    open_pipes = (p->err_fd >= 0) + (p->progress_fd >= 0);
    for (i = 0; i < p->ntracks; i++) {
        open_pipes += (p->tracks[i].fd >= 0);
    }

    if (open_pipes > 0) {
        if (now >= p->last_io + PACK_STALL_MS) {
            pack_fail(p, "ffmpeg wrote nothing for %d s",
                      PACK_STALL_MS / 1000);
        }
        return;
    }

    /* every pipe is at its end: ffmpeg is gone (the pidfd says when) */
    if (!child_reap(&p->child)) {
        return;
    }

    pack_finish(p);
}


static void
pack_read_stderr(pack_t *p)
{
    char     buf[4096];
    ssize_t  n;

    while (p->err_fd >= 0) {
        n = read(p->err_fd, buf, sizeof(buf));

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                return;
            }
            log_warn("ffmpeg stderr");
            n = 0;
        }

        if (n == 0) {
            close(p->err_fd);
            p->err_fd = -1;
            return;
        }

        p->last_io = now_mono_ms();

        if (p->stderr_text.len < PACK_STDERR_MAX) {
            mm_buf_append(&p->stderr_text, buf,
                          (size_t) n < PACK_STDERR_MAX - p->stderr_text.len
                          ? (size_t) n : PACK_STDERR_MAX - p->stderr_text.len);
        }

        log_debug("packaged_content %" PRId64 ": ffmpeg: %.*s", p->id,
                  (int) n, buf);
    }
}


/* "key=value" lines of ffmpeg -progress: out_time_us is the media time */
static void
pack_read_progress(pack_t *p)
{
    char      buf[1024], c;
    ssize_t   n, i;

    while (p->progress_fd >= 0) {
        n = read(p->progress_fd, buf, sizeof(buf));

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                return;
            }
            n = 0;
        }

        if (n == 0) {
            close(p->progress_fd);
            p->progress_fd = -1;
            return;
        }

        for (i = 0; i < n; i++) {
            c = buf[i];

            if (c != '\n') {
                if (p->progress_len < sizeof(p->progress_line) - 1) {
                    p->progress_line[p->progress_len++] = c;
                }
                continue;
            }

            p->progress_line[p->progress_len] = '\0';
            p->progress_len = 0;

            if (strncmp(p->progress_line, "out_time_us=", 12) == 0) {
                long long  us = atoll(p->progress_line + 12);

                if (us > 0) {
                    p->out_time = (double) us / 1e6;
                }
            }
        }
    }
}


/* room for at least want more bytes after len; 0 or -1 (failed) */
static int
pack_reserve(pack_t *p, pack_track_t *t, size_t want)
{
    size_t    cap;
    uint8_t  *d;

    if (t->cap - t->len >= want) {
        return 0;
    }

    /* drop what was consumed first */
    if (t->off > 0) {
        memmove(t->data, t->data + t->off, t->len - t->off);
        t->len -= t->off;
        t->scan -= t->off;
        t->off = 0;

        if (t->cap - t->len >= want) {
            return 0;
        }
    }

    cap = t->cap ? t->cap : 1024 * 1024;
    while (cap - t->len < want) {
        cap *= 2;
    }

    d = realloc(t->data, cap);
    if (d == NULL) {
        pack_fail(p, "out of memory for a %zu-byte %s fragment", cap,
                  t->name);
        return -1;
    }

    t->data = d;
    t->cap = cap;

    return 0;
}


static int
pack_read_track(pack_t *p, pack_track_t *t)
{
    double   t0;
    size_t   total;
    ssize_t  n;

    for (total = 0; total < PACK_READ_MAX; total += (size_t) n) {
        if (pack_reserve(p, t, 256 * 1024) != 0) {
            return -1;
        }

        t0 = pack_now();
        n = read(t->fd, t->data + t->len, t->cap - t->len);
        p->t_read += pack_now() - t0;

        if (n < 0) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            pack_fail(p, "reading ffmpeg's %s output: %s", t->name,
                      strerror(errno));
            return -1;
        }

        if (n == 0) {
            close(t->fd);
            t->fd = -1;
            break;
        }

        t->len += (size_t) n;
        p->round_bytes += (size_t) n;
        p->last_io = now_mono_ms();

        if (pack_parse(p, t) != 0) {
            return -1;
        }
    }

    return pack_parse(p, t);
}


/*
 * Takes the complete units out of the buffer: ftyp + moov (the init
 * segment), then [styp/sidx/...] moof + mdat (one fragment each).
 */
static int
pack_parse(pack_t *p, pack_track_t *t)
{
    char       fcc[5];
    size_t     hdr, left;
    uint32_t   type;
    uint64_t   size;
    uint8_t   *b;

    while (p->state == PACK_RUNNING) {
        left = t->len - t->scan;
        if (left < 8) {
            return 0;
        }

        b = t->data + t->scan;
        size = mm_get_be32(b);
        type = mm_get_be32(b + 4);
        hdr = 8;

        if (size == 1) {
            if (left < 16) {
                return 0;
            }
            size = mm_get_be64(b + 8);
            hdr = 16;
        }

        if (size < hdr || size > PACK_BOX_MAX) {
            pack_fail(p, "ffmpeg's %s output has a '%s' box of %" PRIu64
                      " bytes", t->name, mm_mp4_fourcc_str(type, fcc), size);
            return -1;
        }

        if (left < size) {
            /* room for the whole box (and what precedes it in the unit) */
            return pack_reserve(p, t, (size_t) size - left);
        }

        t->scan += (size_t) size;

        switch (type) {

        case T_MOOV:
            if (pack_init_segment(p, t, t->data + t->off, t->scan - t->off)
                != 0)
            {
                return -1;
            }
            t->off = t->scan;
            break;

        case T_MDAT:
            if (pack_fragment(p, t, t->data + t->off, t->scan - t->off)
                != 0)
            {
                return -1;
            }
            t->off = t->scan;
            break;

        case T_MFRA:
        case T_FREE:
        case T_SKIP:
            /* between units: dropped */
            if (t->scan - (size_t) size == t->off) {
                t->off = t->scan;
            }
            break;

        default:
            /* ftyp, styp, sidx, moof, ...: part of the unit */
            break;
        }

        if (t->off == t->len) {
            t->off = t->scan = t->len = 0;
        }
    }

    return -1;
}


/* ---- init segment ---------------------------------------------------- */


/* an MPEG-4 descriptor header: tag and length (up to 4 length bytes) */
static int
pack_descr(mm_mp4_cur_t *c, uint8_t *tag, uint32_t *len)
{
    int      i;
    uint8_t  b;

    if (mm_mp4_get8(c, tag) != 0) {
        return -1;
    }

    *len = 0;

    for (i = 0; i < 4; i++) {
        if (mm_mp4_get8(c, &b) != 0) {
            return -1;
        }
        *len = (*len << 7) | (b & 0x7f);
        if (!(b & 0x80)) {
            break;
        }
    }

    return *len <= mm_mp4_left(c) ? 0 : -1;
}


/*
 * "mp4a.40.<audio object type>" from an 'esds' payload, and the channel
 * configuration of its AudioSpecificConfig (ffmpeg writes 2 channels in
 * the sample entry whatever the stream has); *channels is left alone when
 * the configuration does not say
 */
static void
pack_esds_codecs(const uint8_t *p, size_t len, char *out, size_t size,
    unsigned *channels)
{
    uint8_t        tag, flags, oti, b0, b1, b2, b3, aot, skip8, sfi, cfg;
    uint16_t       skip16;
    uint32_t       dlen;
    mm_mp4_cur_t   c;

    snprintf(out, size, "mp4a.40.2");

    mm_mp4_cur_init(&c, p, len);

    if (mm_mp4_skip(&c, 4) != 0                     /* version, flags */
        || pack_descr(&c, &tag, &dlen) != 0 || tag != 0x03
        || mm_mp4_get16(&c, &skip16) != 0            /* ES_ID */
        || mm_mp4_get8(&c, &flags) != 0)
    {
        return;
    }

    if ((flags & 0x80) && mm_mp4_skip(&c, 2) != 0) {
        return;
    }

    if (flags & 0x40) {
        if (mm_mp4_get8(&c, &skip8) != 0 || mm_mp4_skip(&c, skip8) != 0) {
            return;
        }
    }

    if ((flags & 0x20) && mm_mp4_skip(&c, 2) != 0) {
        return;
    }

    if (pack_descr(&c, &tag, &dlen) != 0 || tag != 0x04
        || mm_mp4_get8(&c, &oti) != 0 || mm_mp4_skip(&c, 12) != 0)
    {
        return;
    }

    if (oti != 0x40) {
        snprintf(out, size, "mp4a.%02x", oti);
        return;
    }

    if (pack_descr(&c, &tag, &dlen) != 0 || tag != 0x05 || dlen < 1
        || mm_mp4_get8(&c, &b0) != 0)
    {
        return;
    }

    if (mm_mp4_get8(&c, &b1) != 0) {
        b1 = 0;
    }

    aot = b0 >> 3;

    if (aot == 31) {
        aot = (uint8_t) (32 + (((b0 & 7) << 3) | (b1 >> 5)));
        if (aot > 0) {
            snprintf(out, size, "mp4a.40.%u", aot);
        }
        return;
    }

    if (aot > 0) {
        snprintf(out, size, "mp4a.40.%u", aot);
    }

    /* 5 bits object type, 4 bits frequency index (15: 24 explicit bits),
       4 bits channel configuration */
    sfi = (uint8_t) (((b0 & 7) << 1) | (b1 >> 7));

    if (sfi != 15) {
        cfg = (b1 >> 3) & 0x0f;

    } else {
        if (mm_mp4_get8(&c, &b2) != 0 || mm_mp4_get8(&c, &b3) != 0) {
            return;
        }
        /* b1: 7 bits of rate; b2, b3: 16 more; then 1 bit of rate */
        if (mm_mp4_get8(&c, &b0) != 0) {
            return;
        }
        cfg = (b0 >> 3) & 0x0f;
    }

    /* 1..6 are that many channels, 7 is 7.1 */
    if (cfg >= 1 && cfg <= 6) {
        *channels = cfg;
    } else if (cfg == 7) {
        *channels = 8;
    }
}


/* timescale, codecs string, size/rate from the clear init segment */
static int
pack_analyse_init(pack_t *p, pack_track_t *t, const uint8_t *in, size_t len)
{
    static const uint32_t  mdhd_path[] = { T_MOOV, T_TRAK, T_MDIA, T_MDHD };
    static const uint32_t  stsd_path[] = { T_MOOV, T_TRAK, T_MDIA, T_MINF,
                                           T_STBL, T_STSD };
    static const uint32_t  trex_path[] = { T_MOOV, T_MVEX, T_TREX };

    char           fcc[5];
    size_t         plen, skip;
    const uint8_t *d;
    mm_mp4_box_t   box, entry, child;

    if (pack_box(in, len, mdhd_path, 4, &box) != 0) {
        pack_fail(p, "ffmpeg's %s init segment has no 'mdhd'", t->name);
        return -1;
    }

    d = box.data;
    plen = box.size - box.header;

    if (plen >= 24 && d[0] == 1) {
        t->timescale = mm_get_be32(d + 20);
    } else if (plen >= 16 && d[0] == 0) {
        t->timescale = mm_get_be32(d + 12);
    }

    if (t->timescale == 0) {
        pack_fail(p, "ffmpeg's %s init segment has no timescale", t->name);
        return -1;
    }

    if (pack_box(in, len, trex_path, 3, &box) == 0
        && box.size - box.header >= 16)
    {
        t->trex_duration = mm_get_be32(box.data + 12);
    }

    if (pack_box(in, len, stsd_path, 6, &box) != 0
        || box.size - box.header < 8)
    {
        pack_fail(p, "ffmpeg's %s init segment has no 'stsd'", t->name);
        return -1;
    }

    {
        mm_mp4_cur_t  c;

        mm_mp4_cur_init(&c, box.data + 8, box.size - box.header - 8);
        if (mm_mp4_next_box(&c, &entry) != MM_OK) {
            pack_fail(p, "ffmpeg's %s init segment has no sample entry",
                      t->name);
            return -1;
        }
    }

    d = entry.data;
    plen = entry.size - entry.header;

    if (t->video) {
        if ((entry.type != T_AVC1 && entry.type != T_AVC3) || plen < 78) {
            pack_fail(p, "the video track is '%s', not H.264",
                      mm_mp4_fourcc_str(entry.type, fcc));
            return -1;
        }

        t->width = mm_get_be16(d + 24);
        t->height = mm_get_be16(d + 26);
        skip = 78;

        if (mm_mp4_find(d + skip, plen - skip, T_AVCC, &child) != MM_OK
            || child.size - child.header < 4)
        {
            pack_fail(p, "the H.264 track has no 'avcC'");
            return -1;
        }

        snprintf(t->codecs, sizeof(t->codecs), "%s.%02x%02x%02x",
                 entry.type == T_AVC3 ? "avc3" : "avc1", child.data[1],
                 child.data[2], child.data[3]);

        if (mm_mp4_find(d + skip, plen - skip, T_PASP, &child) == MM_OK
            && child.size - child.header >= 8)
        {
            t->sar_num = mm_get_be32(child.data);
            t->sar_den = mm_get_be32(child.data + 4);
        }

        if (t->sar_num == 0 || t->sar_den == 0) {
            t->sar_num = 1;
            t->sar_den = 1;
        }

    } else {
        if (entry.type != T_MP4A || plen < 28) {
            pack_fail(p, "the audio track is '%s', not AAC",
                      mm_mp4_fourcc_str(entry.type, fcc));
            return -1;
        }

        t->channels = mm_get_be16(d + 16);
        t->sample_rate = mm_get_be32(d + 24) >> 16;
        skip = 28;

        if (mm_mp4_find(d + skip, plen - skip, T_ESDS, &child) == MM_OK) {
            pack_esds_codecs(child.data, child.size - child.header,
                             t->codecs, sizeof(t->codecs), &t->channels);
        } else {
            snprintf(t->codecs, sizeof(t->codecs), "mp4a.40.2");
        }

        if (t->sample_rate == 0) {
            t->sample_rate = t->timescale;
        }
    }

    return 0;
}


static int
pack_init_segment(pack_t *p, pack_track_t *t, const uint8_t *in, size_t len)
{
    char            name[64];
    mm_status_t     st;
    mm_mp4_box_t    moov, pssh;

    if (t->have_init) {
        pack_fail(p, "ffmpeg's %s output has a second 'moov'", t->name);
        return -1;
    }

    if (pack_analyse_init(p, t, in, len) != 0) {
        return -1;
    }

    mm_buf_reset(&t->out);

    st = mm_cbcs_encrypt_init(t->cbcs, &p->key, in, len, &t->out);
    if (st != MM_OK) {
        pack_fail(p, "encrypting the %s init segment: %s (%s)", t->name,
                  mm_cbcs_error(t->cbcs), mm_strstatus(st));
        return -1;
    }

    if (t->out.failed) {
        pack_fail(p, "out of memory encrypting the %s init segment",
                  t->name);
        return -1;
    }

    /* the manifests carry the same 'pssh' as the init segments */
    if (p->pssh == NULL
        && mm_mp4_find((uint8_t *) t->out.data, t->out.len, T_MOOV, &moov)
           == MM_OK
        && mm_mp4_find(moov.data, moov.size - moov.header, T_PSSH, &pssh)
           == MM_OK)
    {
        p->pssh = malloc(pssh.size);
        if (p->pssh != NULL) {
            memcpy(p->pssh, pssh.start, pssh.size);
            p->pssh_len = pssh.size;
        }
    }

    snprintf(name, sizeof(name), "%s/init.mp4", t->name);

    if (pack_write(p, name, t->out.data, t->out.len) != 0) {
        return -1;
    }

    t->have_init = 1;

    log_debug("packaged_content %" PRId64 ": %s init: %s, timescale %u",
              p->id, t->name, t->codecs, t->timescale);

    return 0;
}


/* ---- fragments ------------------------------------------------------- */


/* start time and duration of the first 'traf' of the 'moof' in in */
static int
pack_analyse_fragment(pack_t *p, pack_track_t *t, const uint8_t *in,
    size_t len, uint64_t *start, uint64_t *duration)
{
    int            have_tfdt;
    uint8_t        version;
    uint32_t       flags, tfhd_flags, def_dur, count, i, v32, d;
    uint64_t       v64, sum;
    mm_mp4_cur_t   c, tc;
    mm_mp4_box_t   moof, traf, box;

    if (mm_mp4_find(in, len, T_MOOF, &moof) != MM_OK
        || mm_mp4_find(moof.data, moof.size - moof.header, T_TRAF, &traf)
           != MM_OK)
    {
        pack_fail(p, "ffmpeg's %s fragment has no 'moof'/'traf'", t->name);
        return -1;
    }

    def_dur = t->trex_duration;
    have_tfdt = 0;
    sum = 0;
    *start = t->end;

    mm_mp4_cur_init(&tc, traf.data, traf.size - traf.header);

    while (mm_mp4_next_box(&tc, &box) == MM_OK) {
        mm_mp4_box_cur(&box, &c);

        if (box.type == T_TFHD) {
            if (mm_mp4_full(&c, &version, &tfhd_flags) != 0
                || mm_mp4_skip(&c, 4) != 0
                || ((tfhd_flags & 0x01) && mm_mp4_skip(&c, 8) != 0)
                || ((tfhd_flags & 0x02) && mm_mp4_skip(&c, 4) != 0))
            {
                goto bad;
            }
            if (tfhd_flags & 0x08) {
                if (mm_mp4_get32(&c, &def_dur) != 0) {
                    goto bad;
                }
            }

        } else if (box.type == T_TFDT) {
            if (mm_mp4_full(&c, &version, &flags) != 0) {
                goto bad;
            }
            if (version == 1) {
                if (mm_mp4_get64(&c, &v64) != 0) {
                    goto bad;
                }
                *start = v64;
            } else {
                if (mm_mp4_get32(&c, &v32) != 0) {
                    goto bad;
                }
                *start = v32;
            }
            have_tfdt = 1;

        } else if (box.type == T_TRUN) {
            if (mm_mp4_full(&c, &version, &flags) != 0
                || mm_mp4_get32(&c, &count) != 0
                || ((flags & 0x001) && mm_mp4_skip(&c, 4) != 0)
                || ((flags & 0x004) && mm_mp4_skip(&c, 4) != 0))
            {
                goto bad;
            }

            for (i = 0; i < count; i++) {
                d = def_dur;
                if (flags & 0x100) {
                    if (mm_mp4_get32(&c, &d) != 0) {
                        goto bad;
                    }
                }
                if (((flags & 0x200) && mm_mp4_skip(&c, 4) != 0)
                    || ((flags & 0x400) && mm_mp4_skip(&c, 4) != 0)
                    || ((flags & 0x800) && mm_mp4_skip(&c, 4) != 0))
                {
                    goto bad;
                }
                sum += d;
            }
        }
    }

    if (!have_tfdt) {
        log_debug("%s fragment without 'tfdt': continuing at %" PRIu64,
                  t->name, t->end);
    }

    *duration = sum;

    return 0;

bad:

    pack_fail(p, "ffmpeg's %s fragment %zu: a short '%s'", t->name,
              t->nsegs + 1, box.type == T_TRUN ? "trun"
                            : box.type == T_TFHD ? "tfhd" : "tfdt");
    return -1;
}


static int
pack_fragment(pack_t *p, pack_track_t *t, const uint8_t *in, size_t len)
{
    char           name[64];
    double         t0;
    size_t         cap;
    uint64_t       start, duration, *sizes;
    mm_seg_t      *segs;
    mm_status_t    st;

    if (!t->have_init) {
        pack_fail(p, "ffmpeg's %s output has a fragment before 'moov'",
                  t->name);
        return -1;
    }

    if (pack_analyse_fragment(p, t, in, len, &start, &duration) != 0) {
        return -1;
    }

    if (duration == 0) {
        /* an empty fragment (no samples): nothing to write */
        return 0;
    }

    mm_buf_reset(&t->out);

    t0 = pack_now();
    st = mm_cbcs_encrypt_segment(t->cbcs, in, len, &t->out);
    p->t_encrypt += pack_now() - t0;

    if (st == MM_EBADDATA) {
        /* ffmpeg passes a cut or damaged sample on as it is */
        pack_fail(p, "the input is truncated or corrupt: %s fragment %zu "
                  "(from %.3f s): %s", t->name, t->nsegs + 1,
                  (double) start / t->timescale, mm_cbcs_error(t->cbcs));
        return -1;
    }

    if (st != MM_OK) {
        pack_fail(p, "encrypting %s fragment %zu: %s (%s)", t->name,
                  t->nsegs + 1, mm_cbcs_error(t->cbcs), mm_strstatus(st));
        return -1;
    }

    if (t->out.failed) {
        pack_fail(p, "out of memory encrypting a %s fragment", t->name);
        return -1;
    }

    if (t->nsegs == t->segs_cap) {
        cap = t->segs_cap ? t->segs_cap * 2 : 64;

        segs = realloc(t->segs, cap * sizeof(mm_seg_t));
        if (segs == NULL) {
            pack_fail(p, "out of memory");
            return -1;
        }
        t->segs = segs;

        sizes = realloc(t->sizes, cap * sizeof(uint64_t));
        if (sizes == NULL) {
            pack_fail(p, "out of memory");
            return -1;
        }
        t->sizes = sizes;

        t->segs_cap = cap;
    }

    snprintf(name, sizeof(name), "%s/seg-%zu.m4s", t->name, t->nsegs + 1);

    if (pack_write(p, name, t->out.data, t->out.len) != 0) {
        return -1;
    }

    t->segs[t->nsegs].t = start;
    t->segs[t->nsegs].d = duration;
    t->sizes[t->nsegs] = t->out.len;
    t->nsegs++;
    t->bytes += t->out.len;
    t->end = start + duration;

    /* big buffers from a long GOP are not kept for the whole run */
    if (t->out.cap > 64 * 1024 * 1024) {
        mm_buf_free(&t->out);
    }

    return 0;
}


/* ---- the end --------------------------------------------------------- */


static void
pack_fail_with_stderr(pack_t *p, const char *what)
{
    char  text[700];

    if (p->stderr_text.len > 0) {
        mm_probe_error_text(p->stderr_text.data, p->stderr_text.len,
                            p->input_arg, text, sizeof(text));
        pack_fail(p, "%s: %s", what, text);
    } else {
        pack_fail(p, "%s", what);
    }
}


static void
pack_finish(pack_t *p)
{
    int           i;
    char          status[64], what[256];
    double        end, video_end;
    size_t        k;
    uint64_t      bytes;
    pack_track_t *t, *v;

    child_status_str(p->child.status, status, sizeof(status));

    if (!WIFEXITED(p->child.status) || WEXITSTATUS(p->child.status) != 0) {
        snprintf(what, sizeof(what), "ffmpeg failed (%s)", status);
        pack_fail_with_stderr(p, what);
        return;
    }

    end = 0;
    bytes = 0;

    for (i = 0; i < p->ntracks; i++) {
        t = &p->tracks[i];

        if (t->len > t->off) {
            snprintf(what, sizeof(what), "ffmpeg's %s output ends inside "
                     "a box (%zu bytes left)", t->name, t->len - t->off);
            pack_fail_with_stderr(p, what);
            return;
        }

        if (!t->have_init || t->nsegs == 0) {
            snprintf(what, sizeof(what), "ffmpeg wrote no %s fragments",
                     t->name);
            pack_fail_with_stderr(p, what);
            return;
        }

        if ((double) t->end / t->timescale > end) {
            end = (double) t->end / t->timescale;
        }

        bytes += t->bytes;
    }

    v = &p->tracks[0];
    video_end = (double) v->end / v->timescale;

    /* a truncated input: ffmpeg stops at the cut and exits 0 */
    if (p->duration > 0
        && video_end < p->duration - fmax(1.0, p->duration * 0.02))
    {
        snprintf(what, sizeof(what), "the input is truncated or corrupt: "
                 "it ends at %.3f s of video out of %.3f s", video_end,
                 p->duration);
        pack_fail_with_stderr(p, what);
        return;
    }

    /* ladder renditions: cut at the same times as the copied video? */
    for (i = 2; i < p->ntracks; i++) {
        t = &p->tracks[i];

        if (t->nsegs != v->nsegs) {
            p->unaligned = 1;
        }

        for (k = 0; !p->unaligned && k < t->nsegs; k++) {
            if (fabs((double) t->segs[k].t / t->timescale
                     - (double) v->segs[k].t / v->timescale) > 0.002)
            {
                p->unaligned = 1;
            }
        }
    }

    if (p->unaligned) {
        log_warnx("packaged_content %" PRId64 ": the ladder's segments are "
                  "not aligned with the source's (segmentAlignment false)",
                  p->id);
    }

    p->packaged = end;

    if (pack_manifests(p) != 0 || pack_publish(p) != 0) {
        return;
    }

    p->state = PACK_DONE;

    log_info("packaged_content %" PRId64 ": done in %.3f s: %.3f s, "
             "%zu video + %zu audio segments%s, %" PRIu64 " bytes",
             p->id, (double) (now_mono_ms() - p->started) / 1000, end,
             v->nsegs, p->tracks[1].nsegs,
             p->ntracks > 2 ? " (+ the ladder's)" : "", bytes);

    log_debug("packaged_content %" PRId64 ": reading %.3f s, encrypting "
              "%.3f s, writing %.3f s, syncing %.3f s", p->id, p->t_read,
              p->t_encrypt, p->t_write, p->t_sync);
}


static void
pack_rep(pack_t *p, pack_track_t *t, mm_rep_t *r)
{
    size_t    i;
    double    sec, bps, total;
    uint64_t  peak;

    memset(r, 0, sizeof(*r));

    r->id = t->name;
    r->video = t->video;
    r->codecs = t->codecs;
    r->timescale = t->timescale;
    r->init = t->init;
    r->media = t->media;
    r->playlist = t->playlist;
    r->start_number = 1;
    r->segs = t->segs;
    r->nsegs = t->nsegs;

    peak = 0;
    total = 0;

    for (i = 0; i < t->nsegs; i++) {
        sec = (double) t->segs[i].d / t->timescale;
        total += sec;
        bps = sec > 0 ? (double) t->sizes[i] * 8 / sec : 0;
        /* a short last segment is no measure of the peak */
        if (bps > peak && (i + 1 < t->nsegs || t->nsegs == 1)) {
            peak = (uint64_t) ceil(bps);
        }
    }

    r->avg_bandwidth = total > 0 ? (uint64_t) ceil(t->bytes * 8 / total) : 0;
    r->bandwidth = peak > r->avg_bandwidth ? peak : r->avg_bandwidth;

    if (t->video) {
        r->width = t->width;
        r->height = t->height;
        r->sar_num = t->sar_num;
        r->sar_den = t->sar_den;

        if (p->fps > 0) {
            if (fabs(p->fps - round(p->fps)) < 0.001) {
                r->fps_num = (unsigned) round(p->fps);
                r->fps_den = 1;
            } else if (fabs(p->fps * 1001 - round(p->fps * 1001)) < 0.01) {
                r->fps_num = (unsigned) round(p->fps * 1001);
                r->fps_den = 1001;
            } else {
                r->fps_num = (unsigned) round(p->fps * 1000);
                r->fps_den = 1000;
            }
        }

    } else {
        r->sample_rate = t->sample_rate;
        r->channels = t->channels;
    }
}


static void
pack_hex(const uint8_t *b, char *out)
{
    int  i;

    for (i = 0; i < 16; i++) {
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    }
}


static int
pack_manifests(pack_t *p)
{
    int          i, nvideo;
    char         hex[33], name[48];
    mm_buf_t     b;
    mm_rep_t     video[1 + PACK_RUNGS_MAX], audio;
    mm_pres_t    pres;
    mm_status_t  st;

    /* the copied video first (the best), then the ladder, highest first */
    nvideo = 0;
    pack_rep(p, &p->tracks[0], &video[nvideo++]);
    for (i = 2; i < p->ntracks; i++) {
        pack_rep(p, &p->tracks[i], &video[nvideo++]);
    }
    pack_rep(p, &p->tracks[1], &audio);

    memset(&pres, 0, sizeof(pres));
    memcpy(pres.kid, p->key.kid, 16);
    pres.license_url = p->license_url;
    pres.pssh = p->pssh;
    pres.pssh_len = p->pssh_len;
    pres.duration = p->packaged;
    pres.video = video;
    pres.nvideo = (size_t) nvideo;
    pres.audio = &audio;
    pres.naudio = 1;
    pres.unaligned = p->unaligned;

    mm_buf_init(&b);

    st = mm_mpd_write(&pres, &b);
    if (st != MM_OK || pack_write(p, "stream.mpd", b.data, b.len) != 0) {
        goto failed;
    }

    mm_buf_reset(&b);
    st = mm_hls_master(&pres, &b);
    if (st != MM_OK || pack_write(p, "master.m3u8", b.data, b.len) != 0) {
        goto failed;
    }

    for (i = 0; i <= nvideo; i++) {
        const mm_rep_t  *r = i < nvideo ? &video[i] : &audio;

        mm_buf_reset(&b);
        st = mm_hls_media(&pres, r, &b);
        if (st != MM_OK
            || pack_write(p, r->playlist, b.data, b.len) != 0)
        {
            goto failed;
        }
    }

    /* what a re-run or an operator needs: the IV is only in 'tenc' else */
    mm_buf_reset(&b);
    pack_hex(p->key.iv, hex);
    mm_buf_printf(&b, "{\"packaged_content_id\":%" PRId64 ",\"scheme\":"
                  "\"cbcs\",\"iv\":\"%s\",", p->id, hex);
    pack_hex(p->key.kid, hex);
    mm_buf_printf(&b, "\"kid\":\"%s\",\"duration\":%.3f,", hex, p->packaged);

    for (i = 0; i < nvideo; i++) {
        snprintf(name, sizeof(name), "%s", i == 0 ? "\"video\":"
                 : i == 1 ? "\"ladder\":[" : "");
        mm_buf_printf(&b, "%s{\"codecs\":\"%s\",\"width\":%u,"
                      "\"height\":%u,\"timescale\":%u,\"segments\":%zu,"
                      "\"bandwidth\":%" PRIu64 ",\"playlist\":\"%s\"}%s",
                      name, video[i].codecs, video[i].width, video[i].height,
                      video[i].timescale, video[i].nsegs, video[i].bandwidth,
                      video[i].playlist,
                      i > 0 && i == nvideo - 1 ? "]," : ",");
    }

    mm_buf_printf(&b, "\"audio\":{\"codecs\":\"%s\",\"sample_rate\":%u,"
                  "\"channels\":%u,\"timescale\":%u,\"segments\":%zu,"
                  "\"bandwidth\":%" PRIu64 ",\"playlist\":\"%s\"}}\n",
                  audio.codecs, audio.sample_rate, audio.channels,
                  audio.timescale, audio.nsegs, audio.bandwidth,
                  audio.playlist);

    if (b.failed || pack_write(p, "info.json", b.data, b.len) != 0) {
        goto failed;
    }

    mm_buf_free(&b);

    return 0;

failed:

    if (p->state == PACK_RUNNING) {
        pack_fail(p, "writing the manifests: %s",
                  b.failed ? "out of memory" : mm_strstatus(st));
    }

    mm_buf_free(&b);

    return -1;
}


static int
pack_publish(pack_t *p)
{
    int     fd;
    double  t0;

    t0 = pack_now();

    if (p->conf.sync && syncfs(p->dir_fd) != 0) {
        pack_fail(p, "syncfs %s: %s", p->tmp_dir, strerror(errno));
        return -1;
    }

    p->t_sync = pack_now() - t0;

    if (rename(p->tmp_dir, p->final_dir) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY) {
            pack_fail(p, "rename %s: %s", p->final_dir, strerror(errno));
            return -1;
        }

        /* an earlier output: swap atomically, the old one is removed */
        if (renameat2(AT_FDCWD, p->tmp_dir, AT_FDCWD, p->final_dir,
                      RENAME_EXCHANGE) != 0)
        {
            pack_fail(p, "rename %s: %s", p->final_dir, strerror(errno));
            return -1;
        }

        log_info("packaged_content %" PRId64 ": replaced an earlier %s",
                 p->id, p->final_dir);

    } else {
        /* nothing left to remove */
        free(p->tmp_dir);
        p->tmp_dir = NULL;
    }

    if (p->conf.sync) {
        fd = open(p->conf.output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            (void) fsync(fd);
            close(fd);
        }
    }

    return 0;
}
