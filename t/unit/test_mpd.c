/*
 * lib/mpd and lib/hls: the MPD and the HLS playlists of a packaged
 * presentation against golden files (t/data/mpd/), and the rules behind
 * them one by one:
 *   - SegmentTimeline run-length coding (r), t only at the start and after
 *     a gap, the three ContentProtection elements of docs/packaging.md,
 *     XML escaping of the license URL;
 *   - HLS: EXT-X-TARGETDURATION is the longest EXTINF rounded, one
 *     EXT-X-KEY per key format (METHOD=SAMPLE-AES, "identity" first), the
 *     master's EXT-X-SESSION-KEY for the PSSH only, EXT-X-MAP, segment
 *     names from the $Number$ template, master BANDWIDTH = video + audio
 *     peak, a ladder gives one STREAM-INF per rendition;
 *   - base64 (RFC 4648 vectors), KID formatting, rejections.
 *
 * MM_UPDATE_GOLDEN=1 rewrites the golden files from the current output.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hls.h"
#include "mpd.h"
#include "tap.h"


#define GOLDEN_DIR  "t/data/mpd/"


static const uint8_t  kid[16] = {
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef
};

/* the W3C common 'pssh' (version 1, one KID, no data) the encryptor writes */
static const uint8_t  pssh[52] = {
    0x00, 0x00, 0x00, 0x34, 'p', 's', 's', 'h', 0x01, 0x00, 0x00, 0x00,
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02,
    0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
    0x00, 0x00, 0x00, 0x01,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
    0x00, 0x00, 0x00, 0x00
};

/* what the packager wrote for a 12 s clip: 4.8 s GOP-aligned video */
static const mm_seg_t  video_segs[] = {
    { 0, 73728 }, { 73728, 73728 }, { 147456, 36864 }
};

static const mm_seg_t  audio_segs[] = {
    { 0, 192512 }, { 192512, 192512 }, { 385024, 192000 }
};


static void
rep_video(mm_rep_t *r)
{
    memset(r, 0, sizeof(*r));
    r->id = "video";
    r->video = 1;
    r->codecs = "avc1.64001e";
    r->bandwidth = 817449;
    r->avg_bandwidth = 813474;
    r->width = 640;
    r->height = 360;
    r->fps_num = 30;
    r->fps_den = 1;
    r->sar_num = 1;
    r->sar_den = 1;
    r->timescale = 15360;
    r->init = "video/init.mp4";
    r->media = "video/seg-$Number$.m4s";
    r->start_number = 1;
    r->segs = video_segs;
    r->nsegs = 3;
    r->playlist = "video.m3u8";
}


static void
rep_audio(mm_rep_t *r)
{
    memset(r, 0, sizeof(*r));
    r->id = "audio";
    r->codecs = "mp4a.40.2";
    r->bandwidth = 98581;
    r->avg_bandwidth = 98581;
    r->sample_rate = 48000;
    r->channels = 2;
    r->timescale = 48000;
    r->init = "audio/init.mp4";
    r->media = "audio/seg-$Number$.m4s";
    r->start_number = 1;
    r->segs = audio_segs;
    r->nsegs = 3;
    r->playlist = "audio.m3u8";
}


static void
pres_init(mm_pres_t *p, const mm_rep_t *video, size_t nvideo,
    const mm_rep_t *audio)
{
    memset(p, 0, sizeof(*p));
    memcpy(p->kid, kid, 16);
    p->license_url = "/license/7";
    p->pssh = pssh;
    p->pssh_len = sizeof(pssh);
    p->duration = 12.021;
    p->video = video;
    p->nvideo = nvideo;
    p->audio = audio;
    p->naudio = audio ? 1 : 0;
}


/* compares b with the golden file (or rewrites it) */
static void
golden(const char *name, const mm_buf_t *b)
{
    char   path[256], *want;
    FILE  *f;

    snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);

    if (getenv("MM_UPDATE_GOLDEN") != NULL) {
        f = fopen(path, "wb");
        ok(f != NULL && fwrite(b->data, 1, b->len, f) == b->len
           && fclose(f) == 0, "%s rewritten", path);
        return;
    }

    want = mm_read_file(path, NULL);
    if (want == NULL) {
        ok(0, "%s is readable (run from the top of the tree)", path);
        return;
    }

    if (!is_str(b->data, want, "%s matches the golden file", name)) {
        diag("got:\n%s", b->data);
    }

    free(want);
}


static int
count(const char *s, const char *what)
{
    int  n;

    for (n = 0; (s = strstr(s, what)) != NULL; s++) {
        n++;
    }

    return n;
}


static void
test_helpers(void)
{
    char      uuid[40];
    mm_buf_t  b;

    static const struct {
        const char  *in;
        const char  *out;
    } b64[] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
        { "foobar", "Zm9vYmFy" }
    };

    size_t  i;

    mm_buf_init(&b);

    for (i = 0; i < sizeof(b64) / sizeof(b64[0]); i++) {
        mm_buf_reset(&b);
        mm_mpd_base64(&b, (const uint8_t *) b64[i].in, strlen(b64[i].in));
        mm_buf_append(&b, "", 1);
        is_str(b.data, b64[i].out, "base64(\"%s\") (RFC 4648)", b64[i].in);
    }

    mm_mpd_uuid(kid, uuid);
    is_str(uuid, "01234567-89ab-cdef-0123-456789abcdef", "KID as a UUID");

    mm_buf_reset(&b);
    mm_mpd_segment_name("video/seg-$Number$.m4s", 12, &b);
    mm_buf_append(&b, "", 1);
    is_str(b.data, "video/seg-12.m4s", "$Number$ replaced");

    mm_buf_reset(&b);
    mm_mpd_segment_name("a/$Number$", 18446744073709551615ULL, &b);
    mm_buf_append(&b, "", 1);
    is_str(b.data, "a/18446744073709551615", "a 64-bit segment number");

    mm_buf_free(&b);
}


static void
test_golden(void)
{
    mm_buf_t   b;
    mm_rep_t   video, audio;
    mm_pres_t  p;

    rep_video(&video);
    rep_audio(&audio);
    pres_init(&p, &video, 1, &audio);

    mm_buf_init(&b);

    is_int(mm_mpd_write(&p, &b), MM_OK, "MPD written");
    golden("stream.mpd", &b);

    ok(count(b.data, "<AdaptationSet ") == 2, "two AdaptationSets");
    ok(count(b.data, "schemeIdUri=\"urn:mpeg:dash:mp4protection:2011\" "
                     "value=\"cbcs\" cenc:default_KID=\"01234567-89ab-cdef-"
                     "0123-456789abcdef\"") == 2,
       "mp4protection cbcs + default_KID in each");
    ok(count(b.data, "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e") == 2
       && count(b.data, "<dashif:laurl>/license/7</dashif:laurl>") == 2
       && count(b.data, "<clearkey:Laurl Lic_type=\"EME-1.0\">/license/7"
                        "</clearkey:Laurl>") == 2,
       "ClearKey with the license URL in each");
    ok(count(b.data, "urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b") == 2
       && count(b.data, "<cenc:pssh>AAAANHBzc2gBAAAAEHfv7MCyTQKs4zweUuL7Sw"
                        "AAAAEBI0VniavN7wEjRWeJq83vAAAAAA==</cenc:pssh>") == 2,
       "common PSSH with the base64 'pssh' box in each");
    ok(strstr(b.data, "<S t=\"0\" d=\"73728\" r=\"1\"/>\n"
                      "            <S d=\"36864\"/>") != NULL,
       "video timeline: a run of 2 (r=1) then the short last one");
    ok(strstr(b.data, "media=\"video/seg-$Number$.m4s\" startNumber=\"1\"")
       != NULL, "SegmentTemplate with $Number$");
    ok(strstr(b.data, "mediaPresentationDuration=\"PT12.021S\" "
                      "minBufferTime=\"PT4.800S\"") != NULL,
       "duration and minBufferTime (the longest segment)");

    mm_buf_reset(&b);
    is_int(mm_hls_master(&p, &b), MM_OK, "master playlist written");
    golden("master.m3u8", &b);
    ok(strstr(b.data, "BANDWIDTH=916030,AVERAGE-BANDWIDTH=912055,"
                      "CODECS=\"avc1.64001e,mp4a.40.2\"") != NULL,
       "BANDWIDTH = video + audio peaks, CODECS of both");
    ok(count(b.data, "#EXT-X-SESSION-KEY:") == 1
       && count(b.data, "#EXT-X-SESSION-KEY:METHOD=SAMPLE-AES,URI=\"data:"
                        "text/plain;base64,AAAANHBzc2gB") == 1
       && strstr(b.data, "/license/7") == NULL,
       "one EXT-X-SESSION-KEY, the PSSH: none may share the license URL "
       "of two EXT-X-KEY formats");
    ok(strstr(b.data, "#EXT-X-VERSION:7\n") != NULL
       && strstr(b.data, "#EXT-X-INDEPENDENT-SEGMENTS\n") != NULL,
       "master: version 7, independent segments");

    mm_buf_reset(&b);
    is_int(mm_hls_media(&p, &video, &b), MM_OK, "video playlist written");
    golden("video.m3u8", &b);
    ok(strstr(b.data, "#EXT-X-TARGETDURATION:5\n") != NULL,
       "target duration: 4.8 s rounds to 5");
    ok(count(b.data, "#EXT-X-KEY:METHOD=SAMPLE-AES,") == 3,
       "three EXT-X-KEY, SAMPLE-AES (cbcs)");
    ok(strstr(b.data, "#EXT-X-INDEPENDENT-SEGMENTS\n"
                      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"/license/7\","
                      "KEYFORMAT=\"identity\",KEYFORMATVERSIONS=\"1\"\n"
                      "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"/license/7\","
                      "KEYFORMAT=\"urn:uuid:e2719d58-a985-b3c9-781a-"
                      "b030af78d30e\",KEYFORMATVERSIONS=\"1\"\n") != NULL,
       "\"identity\" (GET: the key) first, then ClearKey (POST: the "
       "license), both at the license URL");
    ok(strstr(b.data, ",IV=") == NULL, "no IV: the segments' 'tenc' has it");
    ok(strstr(b.data, "#EXT-X-MAP:URI=\"video/init.mp4\"\n") != NULL,
       "EXT-X-MAP names the init segment");
    ok(strstr(b.data, "#EXTINF:2.400000,\nvideo/seg-3.m4s\n#EXT-X-ENDLIST")
       != NULL, "the last segment, then ENDLIST");

    mm_buf_reset(&b);
    is_int(mm_hls_media(&p, &audio, &b), MM_OK, "audio playlist written");
    golden("audio.m3u8", &b);
    ok(strstr(b.data, "#EXT-X-TARGETDURATION:4\n") != NULL,
       "target duration: 4.011 s rounds to 4");

    mm_buf_free(&b);
}


static void
test_timeline(void)
{
    mm_buf_t   b;
    mm_rep_t   video;
    mm_pres_t  p;

    static const mm_seg_t  gap[] = {
        { 1000, 500 }, { 1500, 500 }, { 2000, 500 },
        { 3000, 500 }, { 3500, 400 }
    };

    rep_video(&video);
    video.segs = gap;
    video.nsegs = 5;
    video.timescale = 1000;
    pres_init(&p, &video, 1, NULL);
    p.license_url = "https://h/license/7?exp=1&sig=\"x\"";
    p.pssh = NULL;

    mm_buf_init(&b);

    is_int(mm_mpd_write(&p, &b), MM_OK, "MPD without audio");
    ok(strstr(b.data, "<S t=\"1000\" d=\"500\" r=\"2\"/>\n"
                      "            <S t=\"3000\" d=\"500\"/>\n"
                      "            <S d=\"400\"/>") != NULL,
       "t on the first segment and after a gap only");
    ok(count(b.data, "<AdaptationSet ") == 1, "one AdaptationSet");
    ok(strstr(b.data, "https://h/license/7?exp=1&amp;sig=&quot;x&quot;")
       != NULL, "the license URL is escaped");
    ok(count(b.data, "<ContentProtection schemeIdUri=\"urn:uuid:1077efec-"
                     "c0b2-4d02-ace3-3c1e52e2fb4b\"/>") == 1,
       "common PSSH without a 'pssh': an empty element");

    mm_buf_reset(&b);
    is_int(mm_hls_media(&p, &video, &b), MM_OK, "playlist");
    ok(strstr(b.data, "URI=\"https://h/license/7?exp=1&sig=%22x%22\"")
       != NULL, "a quote in a quoted-string is percent-encoded");
    ok(count(b.data, "#EXT-X-KEY:") == 2
       && count(b.data, "URI=\"https://h/license/7?exp=1&sig=%22x%22\"")
          == 2, "no pssh: two EXT-X-KEY, both at the license URL");

    mm_buf_reset(&b);
    is_int(mm_hls_master(&p, &b), MM_OK, "master without audio");
    ok(strstr(b.data, "AUDIO=") == NULL && strstr(b.data, "CODECS=\"avc1."
                                                  "64001e\"") != NULL,
       "no audio group, video codecs only");
    ok(strstr(b.data, "#EXT-X-SESSION-KEY") == NULL,
       "no pssh: no EXT-X-SESSION-KEY");

    mm_buf_free(&b);
}


static void
test_ladder(void)
{
    mm_buf_t   b;
    mm_rep_t   video[2], audio;
    mm_pres_t  p;

    rep_video(&video[0]);
    rep_video(&video[1]);
    video[1].id = "video-360";
    video[1].width = 320;
    video[1].height = 180;
    video[1].bandwidth = 300000;
    video[1].avg_bandwidth = 290000;
    video[1].init = "video-360/init.mp4";
    video[1].media = "video-360/seg-$Number$.m4s";
    video[1].playlist = "video-360.m3u8";
    rep_audio(&audio);
    pres_init(&p, video, 2, &audio);

    mm_buf_init(&b);

    is_int(mm_mpd_write(&p, &b), MM_OK, "ladder MPD");
    ok(count(b.data, "<Representation id=\"video") == 2
       && count(b.data, "<AdaptationSet ") == 2,
       "two video Representations in one AdaptationSet");
    ok(strstr(b.data, "maxWidth=\"640\" maxHeight=\"360\"") != NULL,
       "maxWidth/maxHeight of the largest");
    ok(strstr(b.data, "contentType=\"video\" mimeType=\"video/mp4\" "
                      "segmentAlignment=\"true\"") != NULL,
       "aligned renditions: segmentAlignment true");

    mm_buf_reset(&b);
    p.unaligned = 1;
    is_int(mm_mpd_write(&p, &b), MM_OK, "ladder MPD, not aligned");
    ok(strstr(b.data, "contentType=\"video\" mimeType=\"video/mp4\" "
                      "segmentAlignment=\"false\"") != NULL,
       "renditions cut at other times: segmentAlignment false");
    p.unaligned = 0;

    mm_buf_reset(&b);
    is_int(mm_hls_master(&p, &b), MM_OK, "ladder master");
    ok(count(b.data, "#EXT-X-STREAM-INF:") == 2
       && strstr(b.data, "RESOLUTION=320x180") != NULL
       && strstr(b.data, "\nvideo-360.m3u8\n") != NULL,
       "one STREAM-INF per rendition");
    ok(count(b.data, "#EXT-X-MEDIA:TYPE=AUDIO") == 1, "one audio rendition");

    mm_buf_free(&b);
}


static void
test_rejects(void)
{
    mm_buf_t   b;
    mm_rep_t   video, audio;
    mm_pres_t  p;

    mm_buf_init(&b);

    rep_video(&video);
    rep_audio(&audio);
    pres_init(&p, &video, 0, NULL);
    is_int(mm_mpd_write(&p, &b), MM_EBADDATA, "no representation");

    pres_init(&p, &video, 1, &audio);
    video.media = "video/seg.m4s";
    is_int(mm_mpd_write(&p, &b), MM_EBADDATA, "a template without $Number$");

    rep_video(&video);
    video.nsegs = 0;
    is_int(mm_mpd_write(&p, &b), MM_EBADDATA, "a representation without "
           "segments");
    is_int(mm_hls_media(&p, &video, &b), MM_EBADDATA,
           "a playlist without segments");

    rep_video(&video);
    video.timescale = 0;
    is_int(mm_mpd_write(&p, &b), MM_EBADDATA, "no timescale");

    rep_video(&video);
    video.playlist = NULL;
    is_int(mm_hls_master(&p, &b), MM_EBADDATA, "a rendition without a "
           "playlist name");

    pres_init(&p, &video, 0, &audio);
    is_int(mm_hls_master(&p, &b), MM_EBADDATA, "a master without video");

    is_int((long long) b.len, 0, "nothing written by the rejections");

    mm_buf_free(&b);
}


int
main(void)
{
    test_helpers();
    test_golden();
    test_timeline();
    test_ladder();
    test_rejects();

    return done_testing();
}
