/*
 * One packaging run (the media side of a packaged_content job), driven by
 * the packager's zmq_poll loop; knows nothing of PostgreSQL.
 *
 *   ffmpeg -i <input> -map 0:v:0 -c copy -f mp4 <CMAF fragments> pipe:3
 *                     -map 0:a:0 -c copy -f mp4 <CMAF fragments> pipe:4
 *
 * ffmpeg remuxes (never transcodes) each track into a fragmented MP4
 * written to its own pipe: an init segment (ftyp + moov), then moof + mdat
 * pairs; video fragments start at a keyframe once at least segment_ms have
 * gone by (so they follow the GOP when it is longer), audio fragments are
 * cut every segment_ms. As each init segment or fragment is complete in
 * the pipe it is encrypted with lib/cbcs (the content's key and KID, a
 * random constant IV) and written to
 *
 *   <out>/.tmp-<id>-<pid>/{video,audio}/{init.mp4,seg-<n>.m4s}
 *
 * so encryption overlaps the remux. When ffmpeg has exited cleanly the
 * manifests are written (stream.mpd by lib/mpd, master.m3u8 + video.m3u8 +
 * audio.m3u8 by lib/hls, info.json), the files synced, and the directory
 * renamed to <out>/<id> (atomically exchanged with an older one).
 *
 * The loop never blocks on ffmpeg: pack_poll_items() hands it the pipes and
 * the pidfd, pack_process() reads whatever is there.
 */

#ifndef MEDIA_PACK_H
#define MEDIA_PACK_H

#include <stdint.h>
#include <zmq.h>


#define PACK_RUNGS_MAX  4           /* ladder renditions */
#define PACK_POLL_MAX   (5 + PACK_RUNGS_MAX)


typedef struct {
    const char   *ffmpeg;           /* "ffmpeg" (PATH) or a path */
    const char   *output_dir;       /* $MEDIA_VAR/packaged */
    long          segment_ms;       /* target fragment duration */
    long          read_rate;        /* 0, or ffmpeg -readrate (tests) */
    long          sync;             /* syncfs before publishing */
} pack_conf_t;


/* a ladder rendition: transcoded to this height and bitrate */
typedef struct {
    unsigned      height;
    unsigned      bitrate;          /* bit/s, 0: one for the height */
} pack_rung_t;


typedef struct {
    int64_t       id;
    const char   *input;            /* the upload's path */
    uint8_t       key[16];
    uint8_t       kid[16];
    double        duration;         /* probed, seconds; <= 0 unknown */
    double        fps;              /* probed; 0 unknown */
    int           height;           /* probed; 0 unknown */
    const pack_rung_t *rungs;       /* the optional ladder */
    size_t        nrungs;
    const char   *license_url;      /* for the manifests, may be NULL */
} pack_job_t;


typedef enum {
    PACK_RUNNING = 0,
    PACK_DONE,                      /* published in <out>/<id> */
    PACK_FAILED                     /* pack_error() says why */
} pack_state_t;


typedef struct pack_s  pack_t;


/*
 * Cleans up leftovers of an earlier attempt at the same id, creates the
 * temporary directory, spawns ffmpeg. The strings of conf and job are
 * copied where needed. NULL only when out of memory; a failure to start
 * gives a pack in PACK_FAILED.
 */
pack_t *pack_start(const pack_conf_t *conf, const pack_job_t *job);

/* kills ffmpeg (if it runs), removes the temporary directory, frees */
void pack_destroy(pack_t **pp);

pack_state_t pack_state(const pack_t *p);
const char *pack_error(const pack_t *p);

/* 0..1, from the media time written so far and the probed duration */
double pack_progress(const pack_t *p);

/* the packaged duration (seconds), valid once PACK_DONE */
double pack_duration(const pack_t *p);

/* up to PACK_POLL_MAX items; returns the count and lowers *timeout */
int pack_poll_items(pack_t *p, zmq_pollitem_t *items, long *timeout);

/* after zmq_poll (any of its items ready, or a timeout) */
void pack_process(pack_t *p);

/* SIGKILLs ffmpeg and waits for it (shutdown) */
void pack_kill(pack_t *p);


#endif /* MEDIA_PACK_H */
