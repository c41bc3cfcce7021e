/*
 * media-cbcs-decrypt -k <key hex> [-o out.mp4] [-i] init.mp4 [seg.m4s ...]
 *
 * Decrypts a cbcs-encrypted CMAF track (lib/cbcs: the inverse of what the
 * packager does) and writes the clear init segment followed by each clear
 * media segment, in order, to out.mp4 (default: stdout): a fragmented MP4
 * that ffmpeg reads, e.g. to compare packets with the source:
 *
 *   media-cbcs-decrypt -k $KEY -o v.mp4 video/init.mp4 video/seg-*.m4s
 *   ffmpeg -i v.mp4 -c copy -f framemd5 -
 *
 * -i prints what the init segment's 'tenc' says (format, KID, IV,
 * pattern) to stderr. Segments given as seg-*.m4s must be in numeric
 * order (sort -V). Exit status 1 with the reason when a file does not
 * decrypt (a wrong key gives garbage, not an error: cbcs has no MAC).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cbcs.h"
#include "mp4.h"


static void
usage(void)
{
    fprintf(stderr, "usage: media-cbcs-decrypt -k <key hex> [-o out.mp4] "
            "[-i] init.mp4 [seg.m4s ...]\n");
    exit(2);
}


static int
unhex(const char *s, uint8_t out[16])
{
    int       i;
    unsigned  v;

    if (strlen(s) != 32) {
        return -1;
    }

    for (i = 0; i < 16; i++) {
        if (sscanf(s + 2 * i, "%2x", &v) != 1) {
            return -1;
        }
        out[i] = (uint8_t) v;
    }

    return 0;
}


static void
hex(const uint8_t *p, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", p[i]);
    }
}


int
main(int argc, char **argv)
{
    int                     ch, info, i, rc;
    char                    fcc[5], kid[33], iv[33];
    FILE                   *out;
    size_t                  len;
    uint8_t                 key[16], *in;
    mm_buf_t                buf;
    const char             *out_path;
    mm_status_t             st;
    mm_cbcs_track_t        *t;
    const mm_cbcs_info_t   *ti;

    out_path = NULL;
    info = 0;
    rc = 0;

    if (unhex("00000000000000000000000000000000", key) != 0) {
        return 2;
    }

    while ((ch = getopt(argc, argv, "k:o:i")) != -1) {
        switch (ch) {
        case 'k':
            if (unhex(optarg, key) != 0) {
                fprintf(stderr, "media-cbcs-decrypt: -k: 32 hex digits\n");
                return 2;
            }
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'i':
            info = 1;
            break;
        default:
            usage();
        }
    }

    if (optind >= argc) {
        usage();
    }

    out = out_path ? fopen(out_path, "wb") : stdout;
    if (out == NULL) {
        fprintf(stderr, "media-cbcs-decrypt: %s: %s\n", out_path,
                strerror(errno));
        return 1;
    }

    t = mm_cbcs_track_new();
    if (t == NULL) {
        fprintf(stderr, "media-cbcs-decrypt: out of memory\n");
        return 1;
    }

    mm_buf_init(&buf);

    for (i = optind; i < argc; i++) {
        in = mm_read_file(argv[i], &len);
        if (in == NULL) {
            fprintf(stderr, "media-cbcs-decrypt: %s: %s\n", argv[i],
                    strerror(errno));
            rc = 1;
            break;
        }

        mm_buf_reset(&buf);

        st = i == optind ? mm_cbcs_decrypt_init(t, key, in, len, &buf)
                         : mm_cbcs_decrypt_segment(t, in, len, &buf);
        free(in);

        if (st != MM_OK || buf.failed) {
            fprintf(stderr, "media-cbcs-decrypt: %s: %s (%s)\n", argv[i],
                    mm_cbcs_error(t), mm_strstatus(st));
            rc = 1;
            break;
        }

        if (i == optind && info) {
            ti = mm_cbcs_track_info(t);
            hex(ti->kid, 16, kid);
            hex(ti->iv, ti->constant_iv_size <= 16 ? ti->constant_iv_size
                                                   : 16, iv);
            fprintf(stderr, "track %u format %s %s kid %s iv %s pattern "
                    "%u:%u per-sample-iv %u\n", ti->track_id,
                    mm_mp4_fourcc_str(ti->format, fcc),
                    ti->video ? "video" : "audio", kid, iv,
                    ti->crypt_byte_block, ti->skip_byte_block,
                    ti->per_sample_iv_size);
        }

        if (fwrite(buf.data, 1, buf.len, out) != buf.len) {
            fprintf(stderr, "media-cbcs-decrypt: write: %s\n",
                    strerror(errno));
            rc = 1;
            break;
        }
    }

    if (out != stdout ? fclose(out) != 0 : fflush(out) != 0) {
        fprintf(stderr, "media-cbcs-decrypt: write: %s\n", strerror(errno));
        rc = 1;
    }

    mm_buf_free(&buf);
    mm_cbcs_track_destroy(&t);

    return rc;
}
