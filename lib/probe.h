/*
 * What an upload holds, from ffprobe:
 *
 *     ffprobe -v error -print_format json -show_streams -show_format \
 *             file:<path>
 *
 * and the verdict the service needs: H.264 video and AAC audio in an
 * MP4/MOV container. nginx-free; two ways to use it:
 *
 *   - blocking (the module's thread pool, tools): mm_probe_run() spawns
 *     ffprobe, reads its output, waits for it, parses;
 *   - from an event loop (daemons/packager): mm_probe_argv() gives the
 *     argument vector, the caller spawns ffprobe and collects stdout and
 *     stderr itself, then mm_probe_parse().
 *
 *     mm_probe_t  p;
 *     char        msg[512];
 *
 *     if (mm_probe_run("ffprobe", path, 30000, &p, msg, sizeof(msg)) != MM_OK)
 *         ... msg says why ffprobe could not read it
 *     if (!mm_probe_verdict(&p, msg, sizeof(msg)))
 *         ... msg names what was found ("found: container ..., video vp9")
 *     mm_probe_to_json(&p, &buf);       the input_content.probe column
 */

#ifndef MM_PROBE_H
#define MM_PROBE_H

#include "buf.h"


#define MM_PROBE_ARGC  10       /* mm_probe_argv() fills this many + NULL */


typedef struct {
    char      container[64];        /* format_name: "mov,mp4,m4a,3gp,..." */
    double    duration;             /* seconds; < 0 unknown */
    int64_t   bit_rate;             /* format bit_rate, 0 unknown */
    unsigned  nvideo;               /* video streams (attached pictures
                                       excluded) */
    unsigned  naudio;

    /* the first video stream, when nvideo > 0 */
    char      video_codec[32];      /* codec_name: "h264", "vp9", ... */
    char      video_profile[48];    /* "High", "Main", ... or "" */
    int       width;
    int       height;
    double    fps;                  /* avg_frame_rate; 0 unknown */
    int       level;                /* H.264 level_idc, 0 unknown */

    /* the first audio stream, when naudio > 0 */
    char      audio_codec[32];      /* "aac", "mp3", ... */
    char      audio_profile[48];    /* "LC", "HE-AAC", ... or "" */
    int       sample_rate;
    int       channels;
} mm_probe_t;


/*
 * argv for ffprobe on path, into argv[0..MM_PROBE_ARGC] (the last is
 * NULL). The path is passed as "file:<path>" so no protocol or option is
 * read from it; arg (>= strlen(path) + 6 bytes) holds that string.
 */
void mm_probe_argv(const char *ffprobe, const char *path, char *arg,
    size_t arg_size, char *argv[MM_PROBE_ARGC + 1]);

/*
 * Parses ffprobe's JSON. MM_OK, or MM_EBADDATA with a reason in err
 * (not JSON, no "format" object).
 */
mm_status_t mm_probe_parse(const char *json, size_t len, mm_probe_t *p,
    char *err, size_t err_size);

/*
 * 1 when p is H.264 video + AAC audio in MP4/MOV; 0 otherwise, with a
 * message naming what is wrong and what was found, e.g.
 * "not H.264+AAC in MP4/MOV: no audio stream (found: container mov/mp4,
 * video h264 High 640x360, no audio)".
 */
int mm_probe_verdict(const mm_probe_t *p, char *msg, size_t msg_size);

/* one-line description: "container mov/mp4, video h264 High 640x360 30 fps,
   audio aac LC 48000 Hz 2 ch, 12.000 s" */
void mm_probe_describe(const mm_probe_t *p, char *buf, size_t size);

/*
 * A JSON object for input_content.probe:
 * {"container":"..","duration":12.0,"bit_rate":..,"video":{"codec":"h264",
 *  "profile":"High","width":640,"height":360,"fps":30.0,"level":30},
 *  "audio":{"codec":"aac","profile":"LC","sample_rate":48000,"channels":2}}
 * ("video"/"audio" are null when absent).
 */
void mm_probe_to_json(const mm_probe_t *p, mm_buf_t *b);

/*
 * Blocking: spawns ffprobe (searched in PATH unless it holds a '/'),
 * collects its output for at most timeout_ms (then kills it), parses.
 * MM_OK; MM_EBADDATA when ffprobe failed on the file (err holds its first
 * error line, e.g. "Invalid data found when processing input"); MM_EIO
 * when it could not be run; MM_EAGAIN on timeout.
 */
mm_status_t mm_probe_run(const char *ffprobe, const char *path,
    int timeout_ms, mm_probe_t *p, char *err, size_t err_size);


/*
 * ffprobe's (or ffmpeg's) stderr as one line: each line without its
 * "[demuxer @ 0x..] " prefix or the "<arg>: " prefix (arg: the input as
 * passed, "file:<path>"), joined with "; ", repeats dropped; at most
 * err_size - 1 bytes. "ffprobe could not read the file" when empty.
 */
void mm_probe_error_text(const char *text, size_t len, const char *arg,
    char *err, size_t err_size);


#endif /* MM_PROBE_H */
