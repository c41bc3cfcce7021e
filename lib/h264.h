/*
 * H.264 (ISO/IEC 14496-10) parameter sets and slice headers, as far as
 * subsample encryption needs them: where the slice header of a VCL NAL
 * unit ends, counted in bytes of the NAL unit as stored (NAL header and
 * emulation prevention bytes included).
 *
 * The bit reader works on the escaped NAL payload directly and drops the
 * 0x03 of every 00 00 03 sequence as it goes; every read is bounds
 * checked and every exp-Golomb code is limited to 32 bits.
 */

#ifndef MM_H264_H
#define MM_H264_H

#include "mm.h"


#define MM_H264_MAX_SPS  32
#define MM_H264_MAX_PPS  256

#define MM_H264_NAL_SLICE      1
#define MM_H264_NAL_IDR        5
#define MM_H264_NAL_SEI        6
#define MM_H264_NAL_SPS        7
#define MM_H264_NAL_PPS        8
#define MM_H264_NAL_AUD        9


typedef struct {
    uint8_t   valid;
    uint8_t   profile_idc;
    uint8_t   chroma_format_idc;
    uint8_t   separate_colour_plane_flag;
    uint8_t   log2_max_frame_num;           /* 4..16 */
    uint8_t   pic_order_cnt_type;           /* 0..2 */
    uint8_t   log2_max_pic_order_cnt_lsb;   /* 4..16 */
    uint8_t   delta_pic_order_always_zero_flag;
    uint8_t   frame_mbs_only_flag;
    uint32_t  pic_size_in_map_units;
} mm_h264_sps_t;


typedef struct {
    uint8_t   valid;
    uint8_t   sps_id;
    uint8_t   entropy_coding_mode_flag;
    uint8_t   bottom_field_pic_order_in_frame_present_flag;
    uint8_t   num_slice_groups_minus1;      /* 0..7 */
    uint8_t   slice_group_map_type;
    uint8_t   num_ref_idx_l0_default_active_minus1;     /* 0..31 */
    uint8_t   num_ref_idx_l1_default_active_minus1;
    uint8_t   weighted_pred_flag;
    uint8_t   weighted_bipred_idc;
    uint8_t   deblocking_filter_control_present_flag;
    uint8_t   redundant_pic_cnt_present_flag;
    uint32_t  slice_group_change_rate;      /* minus1 + 1 */
} mm_h264_pps_t;


typedef struct {
    mm_h264_sps_t  sps[MM_H264_MAX_SPS];
    mm_h264_pps_t  pps[MM_H264_MAX_PPS];
} mm_h264_ps_t;


/* nal points at the NAL header byte; len counts it */
mm_status_t mm_h264_parse_sps(mm_h264_ps_t *ps, const uint8_t *nal,
    size_t len);
mm_status_t mm_h264_parse_pps(mm_h264_ps_t *ps, const uint8_t *nal,
    size_t len);

/*
 * AVCDecoderConfigurationRecord (the payload of 'avcC'): every SPS and PPS
 * into ps, and the NAL unit length size (1, 2 or 4).
 */
mm_status_t mm_h264_parse_avcc(mm_h264_ps_t *ps, const uint8_t *p,
    size_t len, unsigned *nal_length_size);

/*
 * Size in bytes of the NAL header plus the slice header of a coded slice
 * (nal_unit_type 1 or 5): the byte holding the header's last bit counts,
 * and so do emulation prevention bytes before it. MM_ENOTFOUND if the
 * slice refers to a PPS or SPS not in ps, MM_EBADDATA if it is malformed.
 */
mm_status_t mm_h264_slice_header_size(const mm_h264_ps_t *ps,
    const uint8_t *nal, size_t len, size_t *size);


#endif /* MM_H264_H */
