/*
 * DASH manifest (MPD) writer for packaged content: one Period, a video
 * AdaptationSet (one Representation, or several for a ladder) and an
 * audio one, each Representation with a SegmentTemplate ($Number$) and a
 * SegmentTimeline of the real segment durations, and the ContentProtection
 * of docs/packaging.md:
 *
 *   urn:mpeg:dash:mp4protection:2011 value "cbcs" + cenc:default_KID
 *   urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e (DASH-IF ClearKey)
 *       + dashif:laurl and clearkey:Laurl (the license URL)
 *   urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b (W3C common PSSH)
 *       + cenc:pssh (the init segments' 'pssh' box, base64)
 *
 * The presentation description (mm_pres_t) is shared with lib/hls, which
 * writes HLS playlists over the same segments. nginx-free, no I/O: the
 * output is appended to an mm_buf_t, and is a pure function of the input
 * (golden tests in t/unit/test_mpd.c).
 */

#ifndef MM_MPD_H
#define MM_MPD_H

#include "buf.h"


/* one segment: start and duration in the representation's timescale */
typedef struct {
    uint64_t      t;
    uint64_t      d;
} mm_seg_t;


typedef struct {
    const char   *id;               /* Representation@id: "video" */
    int           video;            /* 1 video, 0 audio */
    const char   *codecs;           /* "avc1.64001f", "mp4a.40.2" */
    uint64_t      bandwidth;        /* peak bit/s over the segments */
    uint64_t      avg_bandwidth;    /* average bit/s */

    /* video */
    unsigned      width;
    unsigned      height;
    unsigned      fps_num;          /* frame rate, 0 unknown */
    unsigned      fps_den;
    unsigned      sar_num;          /* sample aspect ratio, 0 unknown */
    unsigned      sar_den;

    /* audio */
    unsigned      sample_rate;
    unsigned      channels;
    const char   *lang;             /* NULL: "und" */

    uint32_t      timescale;
    const char   *init;             /* "video/init.mp4" */
    const char   *media;            /* "video/seg-$Number$.m4s" */
    unsigned      start_number;     /* of the first segment, usually 1 */
    const mm_seg_t *segs;
    size_t        nsegs;

    const char   *playlist;         /* HLS media playlist: "video.m3u8" */
} mm_rep_t;


typedef struct {
    uint8_t       kid[16];
    const char   *license_url;      /* ClearKey license URL, may be NULL */
    const uint8_t *pssh;            /* a whole 'pssh' box, may be NULL */
    size_t        pssh_len;
    double        duration;         /* seconds */

    const mm_rep_t *video;          /* highest quality first */
    size_t        nvideo;
    const mm_rep_t *audio;
    size_t        naudio;

    int           unaligned;        /* video representations' segments do
                                       not start at the same times */
} mm_pres_t;


/*
 * Appends the MPD. MM_OK; MM_EBADDATA when the description is unusable
 * (no representation, a representation without segments or timescale,
 * a media template without $Number$); MM_ENOMEM (out->failed).
 */
mm_status_t mm_mpd_write(const mm_pres_t *p, mm_buf_t *out);

/* "01234567-89ab-cdef-0123-456789abcdef" + NUL (37 bytes) */
void mm_mpd_uuid(const uint8_t id[16], char *out);

/* standard base64 with padding */
void mm_mpd_base64(mm_buf_t *b, const uint8_t *p, size_t len);

/* the media template with $Number$ replaced by n */
void mm_mpd_segment_name(const char *media, uint64_t n, mm_buf_t *b);

/* max over segments of d / timescale, seconds */
double mm_mpd_max_duration(const mm_rep_t *r);


#endif /* MM_MPD_H */
