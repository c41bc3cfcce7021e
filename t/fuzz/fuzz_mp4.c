/*
 * libFuzzer target for the MP4 box parser, the H.264 parameter set and
 * slice header parsers and the cbcs encryptor/decryptor (t/fuzz/README.md).
 *
 * Each input is used as: a box tree to walk; a whole fragmented file to
 * encrypt (and the result is decrypted again: what the encryptor accepts,
 * the decryptor must accept); an init segment (up to the end of the first
 * 'moov') followed by a media segment (the rest); an encrypted file to
 * decrypt; and raw SPS/PPS/slice NAL units.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbcs.h"
#include "h264.h"
#include "mp4.h"


static const mm_cbcs_key_t  fuzz_key = {
    { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
      0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff },
    { 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
      0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef },
    { 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08,
      0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x00 }
};

static mm_h264_ps_t  fuzz_ps;


static int
fuzz_walk_cb(void *data, const mm_mp4_box_t *box, unsigned depth)
{
    size_t  *n;

    n = data;
    *n += box->size;

    return 0;
}


static void
fuzz_check(int cond, const char *what, mm_cbcs_track_t *t)
{
    if (!cond) {
        fprintf(stderr, "fuzz_mp4: invariant broken: %s (%s)\n", what,
                t ? mm_cbcs_error(t) : "");
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t            n, hdr;
    unsigned          nls;
    mm_buf_t          out, dec;
    mm_status_t       st;
    mm_mp4_box_t      box;
    mm_mp4_cur_t      c;
    mm_cbcs_track_t  *t, *d;

    n = 0;
    (void) mm_mp4_walk(data, size, fuzz_walk_cb, &n);

    t = mm_cbcs_track_new();
    d = mm_cbcs_track_new();
    if (t == NULL || d == NULL) {
        abort();
    }

    mm_buf_init(&out);
    mm_buf_init(&dec);

    /* a whole file; what we encrypt must decrypt */
    st = mm_cbcs_encrypt_init(t, &fuzz_key, data, size, &out);
    fuzz_check(st != MM_OK || !out.failed, "output failed but MM_OK", t);

    if (st == MM_OK) {
        st = mm_cbcs_decrypt_init(d, fuzz_key.key, (uint8_t *) out.data,
                                  out.len, &dec);
        fuzz_check(st == MM_OK
                   || strstr(mm_cbcs_error(d), "seig") != NULL,
                   "decryptor rejects the encryptor's output", d);
    }

    /* init segment + media segment */
    mm_buf_reset(&out);
    mm_mp4_cur_init(&c, data, size);

    while (mm_mp4_next_box(&c, &box) == MM_OK) {
        if (box.type == MM_FOURCC('m', 'o', 'o', 'v')) {
            n = (size_t) (box.start + box.size - data);

            if (mm_cbcs_encrypt_init(t, &fuzz_key, data, n, &out) == MM_OK)
            {
                (void) mm_cbcs_encrypt_segment(t, data + n, size - n, &out);
            }

            break;
        }
    }

    /* an encrypted file */
    mm_buf_reset(&dec);
    (void) mm_cbcs_decrypt_init(d, fuzz_key.key, data, size, &dec);

    /* raw NAL units */
    if (size > 0) {
        switch (data[0] & 0x1f) {
        case MM_H264_NAL_SPS:
            (void) mm_h264_parse_sps(&fuzz_ps, data, size);
            break;
        case MM_H264_NAL_PPS:
            (void) mm_h264_parse_pps(&fuzz_ps, data, size);
            break;
        case MM_H264_NAL_SLICE:
        case MM_H264_NAL_IDR:
            (void) mm_h264_slice_header_size(&fuzz_ps, data, size, &hdr);
            break;
        default:
            (void) mm_h264_parse_avcc(&fuzz_ps, data, size, &nls);
            break;
        }
    }

    mm_buf_free(&out);
    mm_buf_free(&dec);
    mm_cbcs_track_destroy(&t);
    mm_cbcs_track_destroy(&d);

    return 0;
}
