/*
 * lib/probe: ffprobe's JSON (canned, as ffprobe 5.1 prints it) to the
 * probe struct, the "H.264+AAC in MP4/MOV" verdict and its message, the
 * input_content.probe JSON, the one-line error text from ffprobe's
 * stderr, and mm_probe_run() on a missing file and a missing ffprobe.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "probe.h"
#include "tap.h"


#define FORMAT_MP4                                                            \
    "\"format\": {\"filename\": \"x.mp4\", \"nb_streams\": 2,"                \
    " \"format_name\": \"mov,mp4,m4a,3gp,3g2,mj2\","                          \
    " \"duration\": \"12.000000\", \"bit_rate\": \"914135\"}"

#define H264                                                                  \
    "{\"index\": 0, \"codec_name\": \"h264\", \"profile\": \"High\","         \
    " \"codec_type\": \"video\", \"width\": 640, \"height\": 360,"            \
    " \"level\": 30, \"avg_frame_rate\": \"30000/1001\","                     \
    " \"r_frame_rate\": \"30000/1001\","                                      \
    " \"disposition\": {\"default\": 1, \"attached_pic\": 0}}"

#define AAC                                                                   \
    "{\"index\": 1, \"codec_name\": \"aac\", \"profile\": \"LC\","            \
    " \"codec_type\": \"audio\", \"sample_rate\": \"48000\","                 \
    " \"channels\": 2, \"channel_layout\": \"stereo\"}"


static void
test_good(void)
{
    char         msg[512], err[256];
    mm_buf_t     b;
    mm_probe_t   p;
    mm_json_doc_t    *doc;
    const mm_json_t  *root, *v;
    const char  *json = "{\"streams\": [" H264 ", " AAC "], " FORMAT_MP4 "}";

    is_int(mm_probe_parse(json, strlen(json), &p, err, sizeof(err)), MM_OK,
           "H.264 + AAC parses");
    is_str(p.container, "mov,mp4,m4a,3gp,3g2,mj2", "container");
    ok(p.duration == 12.0, "duration from a string");
    is_int(p.bit_rate, 914135, "bit rate");
    is_int(p.nvideo, 1, "one video stream");
    is_str(p.video_codec, "h264", "video codec");
    is_str(p.video_profile, "High", "video profile");
    ok(p.width == 640 && p.height == 360, "size");
    ok(p.fps > 29.96 && p.fps < 29.98, "30000/1001 fps");
    is_int(p.level, 30, "level");
    is_str(p.audio_codec, "aac", "audio codec");
    is_int(p.sample_rate, 48000, "sample rate from a string");
    is_int(p.channels, 2, "channels");

    ok(mm_probe_verdict(&p, msg, sizeof(msg)), "verdict: usable");
    is_str(msg, "container mov,mp4,m4a,3gp,3g2,mj2, video h264 High 640x360 "
           "29.97 fps, audio aac LC 48000 Hz 2 ch, 12.000 s",
           "the description");

    mm_buf_init(&b);
    mm_probe_to_json(&p, &b);
    ok(mm_json_parse(b.data, b.len, &doc, &root, err, sizeof(err)) == MM_OK,
       "probe JSON parses");
    v = mm_json_get(root, "video");
    ok(v != NULL && v->type == MM_JSON_OBJECT
       && mm_json_get(v, "width") != NULL
       && mm_json_get(v, "width")->u.num.i == 640, "video.width in JSON");
    v = mm_json_get(root, "audio");
    ok(v != NULL && mm_json_get(v, "sample_rate") != NULL
       && mm_json_get(v, "sample_rate")->u.num.i == 48000,
       "audio.sample_rate in JSON");
    ok(mm_json_get(root, "duration")->u.num.d == 12.0, "duration in JSON");
    mm_json_doc_free(&doc);
    mm_buf_free(&b);
}


static void
verdict_of(const char *json, const char *want, const char *name)
{
    char        msg[512], err[256];
    mm_probe_t  p;

    if (!is_int(mm_probe_parse(json, strlen(json), &p, err, sizeof(err)),
                MM_OK, "%s parses", name))
    {
        diag("%s", err);
        return;
    }

    ok(!mm_probe_verdict(&p, msg, sizeof(msg)), "%s: not usable", name);
    is_str(msg, want, "%s: the message", name);
}


static void
test_bad(void)
{
    char        err[256];
    mm_probe_t  p;

    verdict_of("{\"streams\": [{\"codec_name\": \"vp9\", \"profile\": "
               "\"Profile 0\", \"codec_type\": \"video\", \"width\": 320, "
               "\"height\": 240, \"avg_frame_rate\": \"25/1\"}], "
               FORMAT_MP4 "}",
               "not H.264+AAC in MP4/MOV: the video is not H.264 (found: "
               "container mov,mp4,m4a,3gp,3g2,mj2, video vp9 Profile 0 "
               "320x240 25 fps, no audio, 12.000 s)", "VP9 MP4");

    verdict_of("{\"streams\": [" H264 "], " FORMAT_MP4 "}",
               "not H.264+AAC in MP4/MOV: no audio stream (found: "
               "container mov,mp4,m4a,3gp,3g2,mj2, video h264 High 640x360 "
               "29.97 fps, no audio, 12.000 s)", "no audio");

    verdict_of("{\"streams\": [" AAC "], " FORMAT_MP4 "}",
               "not H.264+AAC in MP4/MOV: no video stream (found: "
               "container mov,mp4,m4a,3gp,3g2,mj2, no video, audio aac LC "
               "48000 Hz 2 ch, 12.000 s)", "no video");

    verdict_of("{\"streams\": [" H264 ", {\"codec_name\": \"mp3\", "
               "\"codec_type\": \"audio\", \"sample_rate\": \"44100\", "
               "\"channels\": 2}], " FORMAT_MP4 "}",
               "not H.264+AAC in MP4/MOV: the audio is not AAC (found: "
               "container mov,mp4,m4a,3gp,3g2,mj2, video h264 High 640x360 "
               "29.97 fps, audio mp3 44100 Hz 2 ch, 12.000 s)", "MP3 audio");

    verdict_of("{\"streams\": [" H264 ", " AAC "], \"format\": "
               "{\"format_name\": \"matroska,webm\", \"duration\": \"1.5\"}}",
               "not H.264+AAC in MP4/MOV: the container is not MP4/MOV "
               "(found: container matroska,webm, video h264 High 640x360 "
               "29.97 fps, audio aac LC 48000 Hz 2 ch, 1.500 s)", "Matroska");

    /* cover art is not a video stream */
    verdict_of("{\"streams\": [" AAC ", {\"codec_name\": \"mjpeg\", "
               "\"codec_type\": \"video\", \"width\": 500, \"height\": 500, "
               "\"disposition\": {\"attached_pic\": 1}}], " FORMAT_MP4 "}",
               "not H.264+AAC in MP4/MOV: no video stream (found: "
               "container mov,mp4,m4a,3gp,3g2,mj2, no video, audio aac LC "
               "48000 Hz 2 ch, 12.000 s)", "M4A with cover art");

    is_int(mm_probe_parse("{\"streams\": [", 13, &p, err, sizeof(err)),
           MM_EBADDATA, "truncated JSON");
    ok(strncmp(err, "ffprobe output is not JSON", 26) == 0, "says why: %s",
       err);

    is_int(mm_probe_parse("{\"streams\": []}", 15, &p, err, sizeof(err)),
           MM_EBADDATA, "no format object");
}


static void
test_error_text(void)
{
    char         err[256];
    const char  *text;

    text = "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55c07e4b0180] moov atom not found\n"
           "file:/x/a b.mp4: Invalid data found when processing input\n";
    mm_probe_error_text(text, strlen(text), "file:/x/a b.mp4", err,
                        sizeof(err));
    is_str(err, "moov atom not found; Invalid data found when processing "
           "input", "prefixes dropped, lines joined");

    text = "[h264 @ 0x1] x\n[h264 @ 0x2] x\r\n\n";
    mm_probe_error_text(text, strlen(text), "file:y", err, sizeof(err));
    is_str(err, "x", "repeats and blank lines dropped");

    mm_probe_error_text("", 0, "file:y", err, sizeof(err));
    is_str(err, "ffprobe could not read the file", "nothing said");

    text = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n";
    mm_probe_error_text(text, strlen(text), "file:y", err, 80);
    is_int((long long) strlen(err), 79, "cut to the buffer");
}


static void
test_run(void)
{
    char        err[256];
    mm_probe_t  p;

    is_int(mm_probe_run("/nonexistent/ffprobe", "t/data/x.mp4", 5000, &p,
                        err, sizeof(err)), MM_EIO, "a missing ffprobe");
    diag("%s", err);

    if (system("ffprobe -version >/dev/null 2>&1") != 0) {
        printf("ok %d # skip no ffprobe in PATH\n", ++tap_run);
        return;
    }

    is_int(mm_probe_run("ffprobe", "/nonexistent/upload.mp4", 10000, &p, err,
                        sizeof(err)), MM_EBADDATA, "a missing file");
    is_str(err, "No such file or directory", "ffprobe's reason");
}


int
main(void)
{
    test_good();
    test_bad();
    test_error_text();
    test_run();

    return done_testing();
}
