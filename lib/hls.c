/*
 * HLS playlist writer: see hls.h.
 */

#include <math.h>
#include <string.h>

#include "hls.h"


#define MM_HLS_IDENTITY  "identity"
#define MM_HLS_CLEARKEY  "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
#define MM_HLS_COMMON    "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
#define MM_HLS_AUDIO     "audio"


/* quoted-string attribute values may hold neither '"' nor CR/LF */
static void
mm_hls_quoted(mm_buf_t *b, const char *s)
{
    mm_buf_puts(b, "\"");

    for ( ; *s != '\0'; s++) {
        if (*s == '"' || *s == '\r' || *s == '\n') {
            mm_buf_printf(b, "%%%02X", (unsigned char) *s);
        } else {
            mm_buf_append(b, s, 1);
        }
    }

    mm_buf_puts(b, "\"");
}


/*
 * The EXT-X-KEY lines: the license URL as the "identity" key URI (GET: the
 * 16 raw bytes) and as the ClearKey license (POST: the W3C exchange), then
 * the common PSSH. EXT-X-SESSION-KEY (session) repeats only the last: a
 * session key "MUST match any EXT-X-KEY with the same URI" (RFC 8216bis
 * 4.4.5.2), and two formats share the license URL.
 */
static void
mm_hls_keys(const mm_pres_t *p, int session, mm_buf_t *b)
{
    size_t       i;
    const char  *tag;

    static const char  *formats[] = { MM_HLS_IDENTITY, MM_HLS_CLEARKEY };

    tag = session ? "EXT-X-SESSION-KEY" : "EXT-X-KEY";

    for (i = 0; p->license_url != NULL && !session && i < 2; i++) {
        mm_buf_puts(b, "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=");
        mm_hls_quoted(b, p->license_url);
        mm_buf_printf(b, ",KEYFORMAT=\"%s\",KEYFORMATVERSIONS=\"1\"\n",
                      formats[i]);
    }

    if (p->pssh != NULL && p->pssh_len > 0) {
        mm_buf_printf(b, "#%s:METHOD=SAMPLE-AES,"
                      "URI=\"data:text/plain;base64,", tag);
        mm_mpd_base64(b, p->pssh, p->pssh_len);
        mm_buf_puts(b, "\",KEYFORMAT=\"" MM_HLS_COMMON "\","
                       "KEYFORMATVERSIONS=\"1\"\n");
    }
}


static uint64_t
mm_hls_peak(const mm_rep_t *r)
{
    return r->bandwidth;
}


mm_status_t
mm_hls_master(const mm_pres_t *p, mm_buf_t *out)
{
    size_t          i;
    uint64_t        audio_peak, audio_avg;
    const mm_rep_t *v, *a;

    if (p->nvideo == 0) {
        return MM_EBADDATA;
    }

    for (i = 0; i < p->nvideo; i++) {
        if (p->video[i].playlist == NULL || p->video[i].codecs == NULL) {
            return MM_EBADDATA;
        }
    }

    for (i = 0; i < p->naudio; i++) {
        if (p->audio[i].playlist == NULL || p->audio[i].codecs == NULL) {
            return MM_EBADDATA;
        }
    }

    mm_buf_puts(out, "#EXTM3U\n#EXT-X-VERSION:7\n"
                     "#EXT-X-INDEPENDENT-SEGMENTS\n");

    mm_hls_keys(p, 1, out);

    audio_peak = 0;
    audio_avg = 0;
    a = NULL;

    for (i = 0; i < p->naudio; i++) {
        const mm_rep_t  *r = &p->audio[i];

        if (a == NULL) {
            a = r;
        }

        audio_peak = mm_hls_peak(r) > audio_peak ? mm_hls_peak(r) : audio_peak;
        audio_avg = r->avg_bandwidth > audio_avg ? r->avg_bandwidth
                                                  : audio_avg;

        mm_buf_puts(out, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"" MM_HLS_AUDIO
                         "\",LANGUAGE=");
        mm_hls_quoted(out, r->lang ? r->lang : "und");
        mm_buf_puts(out, ",NAME=");
        mm_hls_quoted(out, r->id);
        mm_buf_printf(out, ",DEFAULT=%s,AUTOSELECT=YES",
                      i == 0 ? "YES" : "NO");
        if (r->channels > 0) {
            mm_buf_printf(out, ",CHANNELS=\"%u\"", r->channels);
        }
        mm_buf_puts(out, ",URI=");
        mm_hls_quoted(out, r->playlist);
        mm_buf_puts(out, "\n");
    }

    for (i = 0; i < p->nvideo; i++) {
        v = &p->video[i];

        mm_buf_printf(out, "#EXT-X-STREAM-INF:BANDWIDTH=%llu,"
                      "AVERAGE-BANDWIDTH=%llu,CODECS=\"%s%s%s\"",
                      (unsigned long long) (mm_hls_peak(v) + audio_peak),
                      (unsigned long long) (v->avg_bandwidth + audio_avg),
                      v->codecs, a ? "," : "", a ? a->codecs : "");

        if (v->width > 0 && v->height > 0) {
            mm_buf_printf(out, ",RESOLUTION=%ux%u", v->width, v->height);
        }

        if (v->fps_num > 0 && v->fps_den > 0) {
            mm_buf_printf(out, ",FRAME-RATE=%.3f",
                          (double) v->fps_num / v->fps_den);
        }

        if (a != NULL) {
            mm_buf_puts(out, ",AUDIO=\"" MM_HLS_AUDIO "\"");
        }

        mm_buf_printf(out, "\n%s\n", v->playlist);
    }

    return out->failed ? MM_ENOMEM : MM_OK;
}


mm_status_t
mm_hls_media(const mm_pres_t *p, const mm_rep_t *r, mm_buf_t *out)
{
    size_t    i;
    double    d;
    uint64_t  target;

    if (r->timescale == 0 || r->nsegs == 0 || r->init == NULL
        || r->media == NULL)
    {
        return MM_EBADDATA;
    }

    /* EXTINF rounded to the nearest integer must not exceed it */
    target = (uint64_t) floor(mm_mpd_max_duration(r) + 0.5);
    if (target == 0) {
        target = 1;
    }

    mm_buf_printf(out, "#EXTM3U\n#EXT-X-VERSION:7\n"
                  "#EXT-X-TARGETDURATION:%llu\n"
                  "#EXT-X-MEDIA-SEQUENCE:%u\n"
                  "#EXT-X-PLAYLIST-TYPE:VOD\n"
                  "#EXT-X-INDEPENDENT-SEGMENTS\n",
                  (unsigned long long) target, r->start_number);

    mm_hls_keys(p, 0, out);

    mm_buf_puts(out, "#EXT-X-MAP:URI=");
    mm_hls_quoted(out, r->init);
    mm_buf_puts(out, "\n");

    for (i = 0; i < r->nsegs; i++) {
        d = (double) r->segs[i].d / r->timescale;
        mm_buf_printf(out, "#EXTINF:%.6f,\n", d);
        mm_mpd_segment_name(r->media, r->start_number + i, out);
        mm_buf_puts(out, "\n");
    }

    mm_buf_puts(out, "#EXT-X-ENDLIST\n");

    return out->failed ? MM_ENOMEM : MM_OK;
}
