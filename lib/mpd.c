/*
 * DASH MPD writer: see mpd.h.
 */

#include <string.h>

#include "mpd.h"


#define MM_MP4PROTECTION  "urn:mpeg:dash:mp4protection:2011"
#define MM_CLEARKEY_UUID  "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
#define MM_COMMON_UUID    "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"


static void mm_mpd_xml(mm_buf_t *b, const char *s);
static mm_status_t mm_mpd_check(const mm_pres_t *p);
static void mm_mpd_protection(const mm_pres_t *p, mm_buf_t *b);
static void mm_mpd_duration(mm_buf_t *b, double sec);
static void mm_mpd_representation(const mm_rep_t *r, mm_buf_t *b);
static void mm_mpd_timeline(const mm_rep_t *r, mm_buf_t *b);


void
mm_mpd_uuid(const uint8_t id[16], char *out)
{
    static const char  hex[] = "0123456789abcdef";

    size_t  i, o;

    for (i = 0, o = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 0x0f];
    }

    out[o] = '\0';
}


void
mm_mpd_base64(mm_buf_t *b, const uint8_t *p, size_t len)
{
    static const char  tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    char      q[4];
    size_t    i;
    uint32_t  v;

    for (i = 0; i + 2 < len; i += 3) {
        v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8) | p[i + 2];
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        q[3] = tab[v & 63];
        mm_buf_append(b, q, 4);
    }

    if (len - i == 1) {
        v = (uint32_t) p[i] << 16;
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = '=';
        q[3] = '=';
        mm_buf_append(b, q, 4);

    } else if (len - i == 2) {
        v = ((uint32_t) p[i] << 16) | ((uint32_t) p[i + 1] << 8);
        q[0] = tab[v >> 18];
        q[1] = tab[(v >> 12) & 63];
        q[2] = tab[(v >> 6) & 63];
        q[3] = '=';
        mm_buf_append(b, q, 4);
    }
}


void
mm_mpd_segment_name(const char *media, uint64_t n, mm_buf_t *b)
{
    const char  *p;

    p = strstr(media, "$Number$");
    if (p == NULL) {
        mm_buf_puts(b, media);
        return;
    }

    mm_buf_append(b, media, (size_t) (p - media));
    mm_buf_printf(b, "%llu", (unsigned long long) n);
    mm_buf_puts(b, p + 8);
}


double
mm_mpd_max_duration(const mm_rep_t *r)
{
    size_t    i;
    uint64_t  max;

    max = 0;

    for (i = 0; i < r->nsegs; i++) {
        if (r->segs[i].d > max) {
            max = r->segs[i].d;
        }
    }

    return r->timescale ? (double) max / r->timescale : 0;
}


/* attribute/text escaping */
static void
mm_mpd_xml(mm_buf_t *b, const char *s)
{
    const char  *from;

    for (from = s; *s != '\0'; s++) {
        const char  *esc;

        switch (*s) {
        case '&': esc = "&amp;"; break;
        case '<': esc = "&lt;"; break;
        case '>': esc = "&gt;"; break;
        case '"': esc = "&quot;"; break;
        case '\'': esc = "&apos;"; break;
        default: continue;
        }

        mm_buf_append(b, from, (size_t) (s - from));
        mm_buf_puts(b, esc);
        from = s + 1;
    }

    mm_buf_puts(b, from);
}


static mm_status_t
mm_mpd_check_rep(const mm_rep_t *r)
{
    if (r->id == NULL || r->codecs == NULL || r->init == NULL
        || r->media == NULL || r->timescale == 0 || r->nsegs == 0
        || r->segs == NULL || strstr(r->media, "$Number$") == NULL)
    {
        return MM_EBADDATA;
    }

    return MM_OK;
}


static mm_status_t
mm_mpd_check(const mm_pres_t *p)
{
    size_t  i;

    if (p->nvideo + p->naudio == 0) {
        return MM_EBADDATA;
    }

    for (i = 0; i < p->nvideo; i++) {
        if (mm_mpd_check_rep(&p->video[i]) != MM_OK) {
            return MM_EBADDATA;
        }
    }

    for (i = 0; i < p->naudio; i++) {
        if (mm_mpd_check_rep(&p->audio[i]) != MM_OK) {
            return MM_EBADDATA;
        }
    }

    return MM_OK;
}


/* ISO 8601 duration, millisecond precision: PT12.011S */
static void
mm_mpd_duration(mm_buf_t *b, double sec)
{
    if (sec < 0) {
        sec = 0;
    }

    mm_buf_printf(b, "PT%.3fS", sec);
}


static void
mm_mpd_protection(const mm_pres_t *p, mm_buf_t *b)
{
    char  kid[40];

    mm_mpd_uuid(p->kid, kid);

    mm_buf_printf(b,
        "      <ContentProtection schemeIdUri=\"" MM_MP4PROTECTION "\""
        " value=\"cbcs\" cenc:default_KID=\"%s\"/>\n", kid);

    mm_buf_puts(b,
        "      <ContentProtection schemeIdUri=\"" MM_CLEARKEY_UUID "\""
        " value=\"ClearKey1.0\">\n");

    if (p->license_url != NULL) {
        mm_buf_puts(b, "        <dashif:laurl>");
        mm_mpd_xml(b, p->license_url);
        mm_buf_puts(b, "</dashif:laurl>\n");
        mm_buf_puts(b, "        <clearkey:Laurl Lic_type=\"EME-1.0\">");
        mm_mpd_xml(b, p->license_url);
        mm_buf_puts(b, "</clearkey:Laurl>\n");
    }

    mm_buf_puts(b, "      </ContentProtection>\n");

    mm_buf_puts(b,
        "      <ContentProtection schemeIdUri=\"" MM_COMMON_UUID "\"");

    if (p->pssh == NULL || p->pssh_len == 0) {
        mm_buf_puts(b, "/>\n");
        return;
    }

    mm_buf_puts(b, ">\n        <cenc:pssh>");
    mm_mpd_base64(b, p->pssh, p->pssh_len);
    mm_buf_puts(b, "</cenc:pssh>\n      </ContentProtection>\n");
}


static void
mm_mpd_timeline(const mm_rep_t *r, mm_buf_t *b)
{
    size_t    i, j;
    uint64_t  next;

    mm_buf_puts(b, "          <SegmentTimeline>\n");

    next = 0;

    for (i = 0; i < r->nsegs; i = j) {
        /* a run of equal durations, each starting where the last ended */
        for (j = i + 1; j < r->nsegs; j++) {
            if (r->segs[j].d != r->segs[i].d
                || r->segs[j].t != r->segs[j - 1].t + r->segs[j - 1].d)
            {
                break;
            }
        }

        mm_buf_puts(b, "            <S");

        if (i == 0 || r->segs[i].t != next) {
            mm_buf_printf(b, " t=\"%llu\"", (unsigned long long) r->segs[i].t);
        }

        mm_buf_printf(b, " d=\"%llu\"", (unsigned long long) r->segs[i].d);

        if (j - i > 1) {
            mm_buf_printf(b, " r=\"%zu\"", j - i - 1);
        }

        mm_buf_puts(b, "/>\n");

        next = r->segs[j - 1].t + r->segs[j - 1].d;
    }

    mm_buf_puts(b, "          </SegmentTimeline>\n");
}


static void
mm_mpd_representation(const mm_rep_t *r, mm_buf_t *b)
{
    mm_buf_puts(b, "      <Representation id=\"");
    mm_mpd_xml(b, r->id);
    mm_buf_printf(b, "\" bandwidth=\"%llu\" codecs=\"",
                  (unsigned long long) r->bandwidth);
    mm_mpd_xml(b, r->codecs);
    mm_buf_puts(b, "\"");

    if (r->video) {
        mm_buf_printf(b, " width=\"%u\" height=\"%u\"", r->width, r->height);

        if (r->fps_num > 0 && r->fps_den > 0) {
            if (r->fps_den == 1) {
                mm_buf_printf(b, " frameRate=\"%u\"", r->fps_num);
            } else {
                mm_buf_printf(b, " frameRate=\"%u/%u\"", r->fps_num,
                              r->fps_den);
            }
        }

        if (r->sar_num > 0 && r->sar_den > 0) {
            mm_buf_printf(b, " sar=\"%u:%u\"", r->sar_num, r->sar_den);
        }

    } else if (r->sample_rate > 0) {
        mm_buf_printf(b, " audioSamplingRate=\"%u\"", r->sample_rate);
    }

    mm_buf_puts(b, ">\n");

    if (!r->video && r->channels > 0) {
        mm_buf_printf(b,
            "        <AudioChannelConfiguration schemeIdUri=\""
            "urn:mpeg:dash:23003:3:audio_channel_configuration:2011\""
            " value=\"%u\"/>\n", r->channels);
    }

    mm_buf_printf(b, "        <SegmentTemplate timescale=\"%u\""
                  " initialization=\"", r->timescale);
    mm_mpd_xml(b, r->init);
    mm_buf_puts(b, "\" media=\"");
    mm_mpd_xml(b, r->media);
    mm_buf_printf(b, "\" startNumber=\"%u\">\n", r->start_number);

    mm_mpd_timeline(r, b);

    mm_buf_puts(b, "        </SegmentTemplate>\n"
                   "      </Representation>\n");
}


mm_status_t
mm_mpd_write(const mm_pres_t *p, mm_buf_t *out)
{
    size_t    i;
    double    max, d;
    unsigned  maxw, maxh;

    if (mm_mpd_check(p) != MM_OK) {
        return MM_EBADDATA;
    }

    max = 0;
    maxw = 0;
    maxh = 0;

    for (i = 0; i < p->nvideo; i++) {
        d = mm_mpd_max_duration(&p->video[i]);
        max = d > max ? d : max;
        maxw = p->video[i].width > maxw ? p->video[i].width : maxw;
        maxh = p->video[i].height > maxh ? p->video[i].height : maxh;
    }

    for (i = 0; i < p->naudio; i++) {
        d = mm_mpd_max_duration(&p->audio[i]);
        max = d > max ? d : max;
    }

    mm_buf_puts(out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\"\n"
        "     xmlns:cenc=\"urn:mpeg:cenc:2013\"\n"
        "     xmlns:dashif=\"https://dashif.org/\"\n"
        "     xmlns:clearkey=\"http://dashif.org/guidelines/clearKey\"\n"
        "     profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"\n"
        "     type=\"static\" mediaPresentationDuration=\"");
    mm_mpd_duration(out, p->duration);
    mm_buf_puts(out, "\" minBufferTime=\"");
    mm_mpd_duration(out, max);
    mm_buf_puts(out, "\">\n  <Period id=\"0\" start=\"PT0S\">\n");

    if (p->nvideo > 0) {
        mm_buf_printf(out,
            "    <AdaptationSet id=\"0\" contentType=\"video\""
            " mimeType=\"video/mp4\" segmentAlignment=\"%s\""
            " startWithSAP=\"1\" maxWidth=\"%u\" maxHeight=\"%u\">\n",
            p->unaligned ? "false" : "true", maxw, maxh);

        mm_mpd_protection(p, out);

        for (i = 0; i < p->nvideo; i++) {
            mm_mpd_representation(&p->video[i], out);
        }

        mm_buf_puts(out, "    </AdaptationSet>\n");
    }

    if (p->naudio > 0) {
        mm_buf_puts(out,
            "    <AdaptationSet id=\"1\" contentType=\"audio\""
            " mimeType=\"audio/mp4\" segmentAlignment=\"true\""
            " startWithSAP=\"1\" lang=\"");
        mm_mpd_xml(out, p->audio[0].lang ? p->audio[0].lang : "und");
        mm_buf_puts(out, "\">\n");

        mm_mpd_protection(p, out);

        for (i = 0; i < p->naudio; i++) {
            mm_mpd_representation(&p->audio[i], out);
        }

        mm_buf_puts(out, "    </AdaptationSet>\n");
    }

    mm_buf_puts(out, "  </Period>\n</MPD>\n");

    return out->failed ? MM_ENOMEM : MM_OK;
}
