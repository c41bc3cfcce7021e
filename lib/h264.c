/*
 * H.264 SPS/PPS/slice header parsing (ISO/IEC 14496-10 7.3.2.1, 7.3.2.2,
 * 7.3.3), only the fields that decide the slice header's length.
 */

#include <string.h>

#include "h264.h"


#define MM_H264_SLICE_P   0
#define MM_H264_SLICE_B   1
#define MM_H264_SLICE_I   2
#define MM_H264_SLICE_SP  3
#define MM_H264_SLICE_SI  4


/* bit reader over an escaped RBSP */
typedef struct {
    const uint8_t  *p;
    size_t          len;
    size_t          pos;        /* byte in p being read */
    unsigned        bit;        /* next bit in p[pos], 0 = MSB */
    unsigned        zeros;      /* zero bytes just before pos */
    int             err;
} mm_h264_br_t;


static void
mm_h264_br_init(mm_h264_br_t *br, const uint8_t *p, size_t len)
{
    br->p = p;
    br->len = len;
    br->pos = 0;
    br->bit = 0;
    br->zeros = 0;
    br->err = 0;
}


static unsigned
mm_h264_bit(mm_h264_br_t *br)
{
    unsigned  v;

    if (br->err) {
        return 0;
    }

    if (br->bit == 0) {
        /* entering a new byte: drop an emulation prevention byte */
        if (br->zeros >= 2 && br->pos < br->len && br->p[br->pos] == 0x03) {
            br->pos++;
            br->zeros = 0;
        }

        if (br->pos >= br->len) {
            br->err = 1;
            return 0;
        }
    }

    v = (br->p[br->pos] >> (7 - br->bit)) & 1;

    if (++br->bit == 8) {
        br->zeros = (br->p[br->pos] == 0) ? br->zeros + 1 : 0;
        br->bit = 0;
        br->pos++;
    }

    return v;
}


static uint32_t
mm_h264_bits(mm_h264_br_t *br, unsigned n)
{
    uint32_t  v;

    v = 0;

    while (n--) {
        v = (v << 1) | mm_h264_bit(br);
    }

    return v;
}


static uint32_t
mm_h264_ue(mm_h264_br_t *br)
{
    unsigned  zeros;
    uint64_t  v;

    zeros = 0;

    while (mm_h264_bit(br) == 0) {
        if (br->err || ++zeros > 31) {
            br->err = 1;
            return 0;
        }
    }

    v = ((uint64_t) 1 << zeros) - 1 + mm_h264_bits(br, zeros);

    return (uint32_t) v;
}


static int32_t
mm_h264_se(mm_h264_br_t *br)
{
    uint32_t  k;

    k = mm_h264_ue(br);

    /* k is at most 2^32 - 2, so (k + 1) / 2 fits */
    if (k & 1) {
        return (int32_t) ((k >> 1) + 1);
    }

    return -(int32_t) (k >> 1);
}


/* bytes of the escaped input that hold everything read so far */
static size_t
mm_h264_br_used(const mm_h264_br_t *br)
{
    return br->pos + (br->bit ? 1 : 0);
}


static void
mm_h264_scaling_list(mm_h264_br_t *br, unsigned size)
{
    unsigned  j;
    int32_t   last, next, delta;

    last = 8;
    next = 8;

    for (j = 0; j < size && !br->err; j++) {
        if (next != 0) {
            delta = mm_h264_se(br);
            if (delta < -128 || delta > 127) {
                br->err = 1;
                return;
            }
            next = (last + delta + 256) % 256;
        }

        last = (next == 0) ? last : next;
    }
}


mm_status_t
mm_h264_parse_sps(mm_h264_ps_t *ps, const uint8_t *nal, size_t len)
{
    unsigned       i, n;
    uint32_t       id, v, w, h;
    mm_h264_sps_t  sps;
    mm_h264_br_t   br;

    if (len < 4 || (nal[0] & 0x1f) != MM_H264_NAL_SPS) {
        return MM_EBADDATA;
    }

    memset(&sps, 0, sizeof(sps));
    mm_h264_br_init(&br, nal + 1, len - 1);

    sps.profile_idc = (uint8_t) mm_h264_bits(&br, 8);
    mm_h264_bits(&br, 16);                  /* constraint flags, level */
    id = mm_h264_ue(&br);

    if (id >= MM_H264_MAX_SPS) {
        return MM_EBADDATA;
    }

    sps.chroma_format_idc = 1;

    switch (sps.profile_idc) {
    case 100: case 110: case 122: case 244: case 44: case 83: case 86:
    case 118: case 128: case 138: case 139: case 134: case 135:
        v = mm_h264_ue(&br);
        if (v > 3) {
            return MM_EBADDATA;
        }

        sps.chroma_format_idc = (uint8_t) v;

        if (v == 3) {
            sps.separate_colour_plane_flag = (uint8_t) mm_h264_bit(&br);
        }

        mm_h264_ue(&br);                    /* bit_depth_luma_minus8 */
        mm_h264_ue(&br);                    /* bit_depth_chroma_minus8 */
        mm_h264_bit(&br);                   /* qpprime_y_zero_... */

        if (mm_h264_bit(&br)) {             /* seq_scaling_matrix_present */
            n = (sps.chroma_format_idc != 3) ? 8 : 12;

            for (i = 0; i < n && !br.err; i++) {
                if (mm_h264_bit(&br)) {
                    mm_h264_scaling_list(&br, i < 6 ? 16 : 64);
                }
            }
        }

        break;

    default:
        break;
    }

    v = mm_h264_ue(&br);
    if (v > 12) {
        return MM_EBADDATA;
    }

    sps.log2_max_frame_num = (uint8_t) (v + 4);

    v = mm_h264_ue(&br);
    if (v > 2) {
        return MM_EBADDATA;
    }

    sps.pic_order_cnt_type = (uint8_t) v;

    if (v == 0) {
        v = mm_h264_ue(&br);
        if (v > 12) {
            return MM_EBADDATA;
        }

        sps.log2_max_pic_order_cnt_lsb = (uint8_t) (v + 4);

    } else if (v == 1) {
        sps.delta_pic_order_always_zero_flag = (uint8_t) mm_h264_bit(&br);
        mm_h264_se(&br);                    /* offset_for_non_ref_pic */
        mm_h264_se(&br);                    /* offset_for_top_to_bottom */
        n = mm_h264_ue(&br);                /* num_ref_frames_in_poc_cycle */
        if (n > 255) {
            return MM_EBADDATA;
        }

        for (i = 0; i < n && !br.err; i++) {
            mm_h264_se(&br);
        }
    }

    mm_h264_ue(&br);                        /* max_num_ref_frames */
    mm_h264_bit(&br);                       /* gaps_in_frame_num_... */
    w = mm_h264_ue(&br);                    /* pic_width_in_mbs_minus1 */
    h = mm_h264_ue(&br);                    /* pic_height_in_map_units_... */
    sps.frame_mbs_only_flag = (uint8_t) mm_h264_bit(&br);

    if (br.err || w > 0xffff || h > 0xffff) {
        return MM_EBADDATA;
    }

    sps.pic_size_in_map_units = (w + 1) * (h + 1);
    sps.valid = 1;

    /* the rest (VUI and so on) does not matter for slice headers */
    ps->sps[id] = sps;

    return MM_OK;
}


mm_status_t
mm_h264_parse_pps(mm_h264_ps_t *ps, const uint8_t *nal, size_t len)
{
    unsigned       bits;
    uint32_t       id, v, i, n;
    mm_h264_pps_t  pps;
    mm_h264_br_t   br;

    if (len < 2 || (nal[0] & 0x1f) != MM_H264_NAL_PPS) {
        return MM_EBADDATA;
    }

    memset(&pps, 0, sizeof(pps));
    mm_h264_br_init(&br, nal + 1, len - 1);

    id = mm_h264_ue(&br);
    v = mm_h264_ue(&br);

    if (br.err || id >= MM_H264_MAX_PPS || v >= MM_H264_MAX_SPS) {
        return MM_EBADDATA;
    }

    pps.sps_id = (uint8_t) v;
    pps.entropy_coding_mode_flag = (uint8_t) mm_h264_bit(&br);
    pps.bottom_field_pic_order_in_frame_present_flag =
        (uint8_t) mm_h264_bit(&br);

    v = mm_h264_ue(&br);
    if (v > 7) {
        return MM_EBADDATA;
    }

    pps.num_slice_groups_minus1 = (uint8_t) v;

    if (pps.num_slice_groups_minus1 > 0) {
        v = mm_h264_ue(&br);
        if (v > 6) {
            return MM_EBADDATA;
        }

        pps.slice_group_map_type = (uint8_t) v;

        switch (v) {

        case 0:
            for (i = 0; i <= pps.num_slice_groups_minus1; i++) {
                mm_h264_ue(&br);            /* run_length_minus1 */
            }
            break;

        case 2:
            for (i = 0; i < pps.num_slice_groups_minus1; i++) {
                mm_h264_ue(&br);            /* top_left */
                mm_h264_ue(&br);            /* bottom_right */
            }
            break;

        case 3: case 4: case 5:
            mm_h264_bit(&br);               /* change_direction_flag */
            v = mm_h264_ue(&br);
            pps.slice_group_change_rate = v + 1;
            if (pps.slice_group_change_rate == 0) {
                return MM_EBADDATA;
            }
            break;

        case 6:
            n = mm_h264_ue(&br);            /* pic_size_in_map_units_... */
            if (n > (1u << 22)) {
                return MM_EBADDATA;
            }

            bits = 0;
            while ((1u << bits) < (uint32_t) pps.num_slice_groups_minus1 + 1)
            {
                bits++;
            }

            for (i = 0; i <= n && bits && !br.err; i++) {
                mm_h264_bits(&br, bits);
            }
            break;

        default:
            break;
        }
    }

    v = mm_h264_ue(&br);
    if (v > 31) {
        return MM_EBADDATA;
    }

    pps.num_ref_idx_l0_default_active_minus1 = (uint8_t) v;

    v = mm_h264_ue(&br);
    if (v > 31) {
        return MM_EBADDATA;
    }

    pps.num_ref_idx_l1_default_active_minus1 = (uint8_t) v;
    pps.weighted_pred_flag = (uint8_t) mm_h264_bit(&br);
    pps.weighted_bipred_idc = (uint8_t) mm_h264_bits(&br, 2);
    mm_h264_se(&br);                        /* pic_init_qp_minus26 */
    mm_h264_se(&br);                        /* pic_init_qs_minus26 */
    mm_h264_se(&br);                        /* chroma_qp_index_offset */
    pps.deblocking_filter_control_present_flag = (uint8_t) mm_h264_bit(&br);
    mm_h264_bit(&br);                       /* constrained_intra_pred */
    pps.redundant_pic_cnt_present_flag = (uint8_t) mm_h264_bit(&br);

    if (br.err || pps.weighted_bipred_idc > 2) {
        return MM_EBADDATA;
    }

    pps.valid = 1;
    ps->pps[id] = pps;

    return MM_OK;
}


mm_status_t
mm_h264_parse_avcc(mm_h264_ps_t *ps, const uint8_t *p, size_t len,
    unsigned *nal_length_size)
{
    unsigned     i, n, list;
    size_t       pos, nlen;
    mm_status_t  st;

    /* version, profile, compat, level, 6 bits reserved + length size - 1 */
    if (len < 6 || p[0] != 1) {
        return MM_EBADDATA;
    }

    *nal_length_size = (p[4] & 3) + 1;

    if (*nal_length_size == 3) {
        return MM_EBADDATA;
    }

    pos = 5;

    for (list = 0; list < 2; list++) {
        if (pos >= len) {
            return MM_EBADDATA;
        }

        n = (list == 0) ? (p[pos] & 0x1f) : p[pos];
        pos++;

        for (i = 0; i < n; i++) {
            if (len - pos < 2) {
                return MM_EBADDATA;
            }

            nlen = ((size_t) p[pos] << 8) | p[pos + 1];
            pos += 2;

            if (nlen > len - pos || nlen == 0) {
                return MM_EBADDATA;
            }

            st = (list == 0) ? mm_h264_parse_sps(ps, p + pos, nlen)
                             : mm_h264_parse_pps(ps, p + pos, nlen);
            if (st != MM_OK) {
                return st;
            }

            pos += nlen;
        }
    }

    /* High profile extensions (chroma format, bit depth, SPS ext) follow */
    return MM_OK;
}


static void
mm_h264_ref_pic_list_modification(mm_h264_br_t *br)
{
    uint32_t  idc;
    unsigned  n;

    if (!mm_h264_bit(br)) {
        return;
    }

    /* each round reads at least one bit; the count bounds a bad stream */
    for (n = 0; n < 256 && !br->err; n++) {
        idc = mm_h264_ue(br);

        if (idc == 3) {
            return;
        }

        if (idc > 5) {
            br->err = 1;
            return;
        }

        mm_h264_ue(br);     /* abs_diff_pic_num_minus1 / long_term_pic_num */
    }

    br->err = 1;
}


static void
mm_h264_pred_weight_table(mm_h264_br_t *br, const mm_h264_sps_t *sps,
    unsigned l0, unsigned l1, int b)
{
    unsigned  i, j, list, count, chroma;

    chroma = sps->separate_colour_plane_flag ? 0 : sps->chroma_format_idc;

    mm_h264_ue(br);                         /* luma_log2_weight_denom */

    if (chroma) {
        mm_h264_ue(br);                     /* chroma_log2_weight_denom */
    }

    for (list = 0; list < (b ? 2u : 1u); list++) {
        count = (list == 0) ? l0 : l1;

        for (i = 0; i <= count && !br->err; i++) {
            if (mm_h264_bit(br)) {          /* luma_weight_flag */
                mm_h264_se(br);
                mm_h264_se(br);
            }

            if (chroma && mm_h264_bit(br)) {
                for (j = 0; j < 2; j++) {
                    mm_h264_se(br);
                    mm_h264_se(br);
                }
            }
        }
    }
}


static void
mm_h264_dec_ref_pic_marking(mm_h264_br_t *br, int idr)
{
    uint32_t  op;
    unsigned  n;

    if (idr) {
        mm_h264_bit(br);                    /* no_output_of_prior_pics */
        mm_h264_bit(br);                    /* long_term_reference_flag */
        return;
    }

    if (!mm_h264_bit(br)) {                 /* adaptive_ref_pic_marking */
        return;
    }

    for (n = 0; n < 256 && !br->err; n++) {
        op = mm_h264_ue(br);

        if (op == 0) {
            return;
        }

        if (op > 6) {
            br->err = 1;
            return;
        }

        if (op == 1 || op == 3) {
            mm_h264_ue(br);                 /* difference_of_pic_nums - 1 */
        }

        if (op == 2) {
            mm_h264_ue(br);                 /* long_term_pic_num */
        }

        if (op == 3 || op == 6) {
            mm_h264_ue(br);                 /* long_term_frame_idx */
        }

        if (op == 4) {
            mm_h264_ue(br);                 /* max_long_term_frame_idx + 1 */
        }
    }

    br->err = 1;
}


mm_status_t
mm_h264_slice_header_size(const mm_h264_ps_t *ps, const uint8_t *nal,
    size_t len, size_t *size)
{
    int                   idr, field_pic;
    unsigned              type, ref_idc, bits;
    uint32_t              slice_type, pps_id, l0, l1, v, x;
    mm_h264_br_t          br;
    const mm_h264_sps_t  *sps;
    const mm_h264_pps_t  *pps;

    if (len < 2) {
        return MM_EBADDATA;
    }

    type = nal[0] & 0x1f;
    ref_idc = (nal[0] >> 5) & 3;

    if (type != MM_H264_NAL_SLICE && type != MM_H264_NAL_IDR) {
        return MM_EBADDATA;
    }

    idr = (type == MM_H264_NAL_IDR);

    /* the NAL header byte cannot start an emulation prevention sequence */
    mm_h264_br_init(&br, nal + 1, len - 1);

    mm_h264_ue(&br);                        /* first_mb_in_slice */
    slice_type = mm_h264_ue(&br);
    pps_id = mm_h264_ue(&br);

    if (br.err || slice_type > 9 || pps_id >= MM_H264_MAX_PPS) {
        return MM_EBADDATA;
    }

    slice_type %= 5;
    pps = &ps->pps[pps_id];

    if (!pps->valid || !ps->sps[pps->sps_id].valid) {
        return MM_ENOTFOUND;
    }

    sps = &ps->sps[pps->sps_id];

    if (sps->separate_colour_plane_flag) {
        mm_h264_bits(&br, 2);               /* colour_plane_id */
    }

    mm_h264_bits(&br, sps->log2_max_frame_num);     /* frame_num */

    field_pic = 0;

    if (!sps->frame_mbs_only_flag) {
        field_pic = (int) mm_h264_bit(&br);
        if (field_pic) {
            mm_h264_bit(&br);               /* bottom_field_flag */
        }
    }

    if (idr) {
        mm_h264_ue(&br);                    /* idr_pic_id */
    }

    if (sps->pic_order_cnt_type == 0) {
        mm_h264_bits(&br, sps->log2_max_pic_order_cnt_lsb);
        if (pps->bottom_field_pic_order_in_frame_present_flag && !field_pic) {
            mm_h264_se(&br);                /* delta_pic_order_cnt_bottom */
        }
    }

    if (sps->pic_order_cnt_type == 1 && !sps->delta_pic_order_always_zero_flag)
    {
        mm_h264_se(&br);                    /* delta_pic_order_cnt[0] */
        if (pps->bottom_field_pic_order_in_frame_present_flag && !field_pic) {
            mm_h264_se(&br);                /* delta_pic_order_cnt[1] */
        }
    }

    if (pps->redundant_pic_cnt_present_flag) {
        mm_h264_ue(&br);                    /* redundant_pic_cnt */
    }

    if (slice_type == MM_H264_SLICE_B) {
        mm_h264_bit(&br);                   /* direct_spatial_mv_pred_flag */
    }

    l0 = pps->num_ref_idx_l0_default_active_minus1;
    l1 = pps->num_ref_idx_l1_default_active_minus1;

    if (slice_type == MM_H264_SLICE_P || slice_type == MM_H264_SLICE_SP
        || slice_type == MM_H264_SLICE_B)
    {
        if (mm_h264_bit(&br)) {             /* num_ref_idx_active_override */
            l0 = mm_h264_ue(&br);
            if (slice_type == MM_H264_SLICE_B) {
                l1 = mm_h264_ue(&br);
            }
        }
    }

    if (br.err || l0 > 31 || l1 > 31) {
        return MM_EBADDATA;
    }

    /* ref_pic_list_modification() (nal_unit_type 20/21 are not slices) */
    if (slice_type != MM_H264_SLICE_I && slice_type != MM_H264_SLICE_SI) {
        mm_h264_ref_pic_list_modification(&br);
    }

    if (slice_type == MM_H264_SLICE_B) {
        mm_h264_ref_pic_list_modification(&br);
    }

    if ((pps->weighted_pred_flag
         && (slice_type == MM_H264_SLICE_P || slice_type == MM_H264_SLICE_SP))
        || (pps->weighted_bipred_idc == 1 && slice_type == MM_H264_SLICE_B))
    {
        mm_h264_pred_weight_table(&br, sps, l0, l1,
                                  slice_type == MM_H264_SLICE_B);
    }

    if (ref_idc != 0) {
        mm_h264_dec_ref_pic_marking(&br, idr);
    }

    if (pps->entropy_coding_mode_flag && slice_type != MM_H264_SLICE_I
        && slice_type != MM_H264_SLICE_SI)
    {
        mm_h264_ue(&br);                    /* cabac_init_idc */
    }

    mm_h264_se(&br);                        /* slice_qp_delta */

    if (slice_type == MM_H264_SLICE_SP || slice_type == MM_H264_SLICE_SI) {
        if (slice_type == MM_H264_SLICE_SP) {
            mm_h264_bit(&br);               /* sp_for_switch_flag */
        }
        mm_h264_se(&br);                    /* slice_qs_delta */
    }

    if (pps->deblocking_filter_control_present_flag) {
        v = mm_h264_ue(&br);                /* disable_deblocking_filter */
        if (v != 1) {
            mm_h264_se(&br);                /* slice_alpha_c0_offset_div2 */
            mm_h264_se(&br);                /* slice_beta_offset_div2 */
        }
    }

    if (pps->num_slice_groups_minus1 > 0 && pps->slice_group_map_type >= 3
        && pps->slice_group_map_type <= 5)
    {
        /*
         * Ceil(Log2(PicSizeInMapUnits / SliceGroupChangeRate + 1)) with an
         * exact division: the least bits with rate * 2^bits >= size + rate
         */
        x = pps->slice_group_change_rate;
        bits = 0;
        while (bits < 32
               && ((uint64_t) x << bits)
                  < (uint64_t) sps->pic_size_in_map_units + x)
        {
            bits++;
        }
        mm_h264_bits(&br, bits);            /* slice_group_change_cycle */
    }

    if (br.err) {
        return MM_EBADDATA;
    }

    /* + 1: the NAL header byte */
    *size = 1 + mm_h264_br_used(&br);

    return MM_OK;
}
