/*
 * Hand-made H.264 NAL units for the unit tests (test_mp4.c, test_cbcs.c):
 * a bit writer (u(n), ue(v), se(v), rbsp_trailing_bits), emulation
 * prevention, and one SPS, PPS and I slice with 16-bit frame_num and
 * pic_order_cnt_lsb (long zero runs, so escapes, in slice headers).
 * Header-only, like tap.h.
 */

#ifndef MM_H264W_H
#define MM_H264W_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>


#define H264W_UNUSED  __attribute__((unused))


typedef struct {
    uint8_t   b[1024];
    size_t    bits;
} bw_t;


static H264W_UNUSED void
bw_u(bw_t *w, unsigned n, uint32_t v)
{
    while (n--) {
        if ((v >> n) & 1) {
            w->b[w->bits / 8] |= (uint8_t) (0x80 >> (w->bits % 8));
        }
        w->bits++;
    }
}


static H264W_UNUSED void
bw_ue(bw_t *w, uint32_t v)
{
    unsigned  n;
    uint64_t  x;

    x = (uint64_t) v + 1;
    n = 0;
    while ((x >> n) > 1) {
        n++;
    }

    bw_u(w, n, 0);
    bw_u(w, n + 1, (uint32_t) x);
}


static H264W_UNUSED void
bw_se(bw_t *w, int32_t v)
{
    bw_ue(w, v > 0 ? (uint32_t) (2 * v - 1) : (uint32_t) (-2 * v));
}


/* rbsp_trailing_bits() */
static H264W_UNUSED void
bw_trail(bw_t *w)
{
    bw_u(w, 1, 1);
    while (w->bits % 8) {
        bw_u(w, 1, 0);
    }
}


/* NAL header byte + escaped payload into out; returns the length */
static H264W_UNUSED size_t
nal_escape(uint8_t header, const bw_t *w, uint8_t *out)
{
    size_t    i, n, len;
    unsigned  zeros;

    len = (w->bits + 7) / 8;
    out[0] = header;
    n = 1;
    zeros = 0;

    for (i = 0; i < len; i++) {
        if (zeros >= 2 && w->b[i] <= 3) {
            out[n++] = 0x03;
            zeros = 0;
        }

        out[n++] = w->b[i];
        zeros = (w->b[i] == 0) ? zeros + 1 : 0;
    }

    return n;
}


/*
 * Baseline SPS 0 with log2_max_frame_num = 16 and pic_order_cnt_type 0,
 * log2_max_pic_order_cnt_lsb = 16: long zero runs in slice headers.
 */
static H264W_UNUSED size_t
make_sps(uint8_t *out)
{
    bw_t  w;

    memset(&w, 0, sizeof(w));
    bw_u(&w, 8, 66);                /* profile_idc */
    bw_u(&w, 8, 0);
    bw_u(&w, 8, 30);                /* level */
    bw_ue(&w, 0);                   /* sps id */
    bw_ue(&w, 12);                  /* log2_max_frame_num_minus4 */
    bw_ue(&w, 0);                   /* pic_order_cnt_type */
    bw_ue(&w, 12);                  /* log2_max_poc_lsb_minus4 */
    bw_ue(&w, 1);                   /* max_num_ref_frames */
    bw_u(&w, 1, 0);
    bw_ue(&w, 3);                   /* width in mbs - 1 */
    bw_ue(&w, 2);                   /* height in map units - 1 */
    bw_u(&w, 1, 1);                 /* frame_mbs_only */
    bw_u(&w, 1, 1);                 /* direct_8x8_inference */
    bw_u(&w, 1, 0);                 /* cropping */
    bw_u(&w, 1, 0);                 /* vui */
    bw_trail(&w);

    return nal_escape(0x67, &w, out);
}


static H264W_UNUSED size_t
make_pps(uint8_t *out, int deblocking)
{
    bw_t  w;

    memset(&w, 0, sizeof(w));
    bw_ue(&w, 0);                   /* pps id */
    bw_ue(&w, 0);                   /* sps id */
    bw_u(&w, 1, 0);                 /* entropy_coding_mode (CAVLC) */
    bw_u(&w, 1, 0);
    bw_ue(&w, 0);                   /* num_slice_groups_minus1 */
    bw_ue(&w, 0);
    bw_ue(&w, 0);
    bw_u(&w, 1, 0);                 /* weighted_pred */
    bw_u(&w, 2, 0);                 /* weighted_bipred_idc */
    bw_se(&w, 0);
    bw_se(&w, 0);
    bw_se(&w, 0);
    bw_u(&w, 1, (uint32_t) deblocking);
    bw_u(&w, 1, 0);
    bw_u(&w, 1, 0);                 /* redundant_pic_cnt_present */
    bw_trail(&w);

    return nal_escape(0x68, &w, out);
}


/*
 * A non-reference I slice in a type 1 NAL: 5 bits, 32 zero bits
 * (frame_num, pic_order_cnt_lsb), qp delta, deblocking idc 1 = 41 bits;
 * then slice data: byte i is 0xa5 ^ (i & mask). The zeros make the
 * escaped stream B8 00 00 03 00 .. (8 header bytes with frame_num 0, an
 * escape; 7 without).
 */
static H264W_UNUSED size_t
make_slice(uint8_t *out, uint32_t frame_num, size_t data_bytes,
    uint8_t mask)
{
    size_t  i;
    bw_t    w;

    memset(&w, 0, sizeof(w));
    bw_ue(&w, 0);                   /* first_mb_in_slice */
    bw_ue(&w, 2);                   /* slice_type I */
    bw_ue(&w, 0);                   /* pps id */
    bw_u(&w, 16, frame_num);
    bw_u(&w, 16, 0);                /* pic_order_cnt_lsb */
    bw_se(&w, 0);                   /* slice_qp_delta */
    bw_ue(&w, 1);                   /* disable_deblocking_filter_idc */

    for (i = 0; i < data_bytes; i++) {
        bw_u(&w, 8, (uint32_t) (0xa5 ^ (i & mask)));
    }

    bw_trail(&w);

    return nal_escape(0x01, &w, out);
}


#endif /* MM_H264W_H */
