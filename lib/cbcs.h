/*
 * ISO/IEC 23001-7 'cbcs' encryption and decryption of fragmented MP4
 * (CMAF): one track per file, H.264 ('avc1'/'avc3') or AAC ('mp4a').
 *
 * The caller owns the I/O: it hands in a whole init segment, a whole media
 * segment, or a whole fragmented file (moov followed by moof/mdat pairs),
 * and gets the rewritten bytes appended to an mm_buf_t. A track object
 * carries what the init segment said (codec, parameter sets, defaults,
 * key) from the init call to the segment calls:
 *
 *     t = mm_cbcs_track_new();
 *     mm_cbcs_encrypt_init(t, &key, init, init_len, &out);     init.mp4
 *     mm_cbcs_encrypt_segment(t, seg, seg_len, &out);          each .m4s
 *     mm_cbcs_track_destroy(&t);
 *
 * Encryption (what Bento4's mp4encrypt --method MPEG-CBCS writes):
 *   - init: 'ftyp' gains the 'iso6' brand; avc1/avc3 -> 'encv' and mp4a ->
 *     'enca' with 'sinf' (frma, schm 'cbcs' 1.0, schi/tenc version 1 with
 *     a constant 16-byte IV, pattern 1:9 for video, 0:0 for audio); a
 *     W3C common 'pssh' (version 1, the KID) closes 'moov'.
 *   - media: sample data encrypted in place with AES-128-CBC, the IV reset
 *     to the constant IV at every subsample. Video: per NAL unit, the
 *     length prefix, NAL header and slice header clear, then 1 block of 16
 *     encrypted and 9 skipped, a trailing partial block clear; NAL units
 *     that are not slices (or have < 16 bytes after the slice header) are
 *     clear. Audio: every whole 16-byte block, the tail clear. Each 'traf'
 *     gets 'saiz', 'saio' and 'senc' (subsample entries for video); 'trun'
 *     data offsets, 'sidx' sizes and 'tfra' offsets follow the moved bytes.
 *
 * Decryption is the inverse: 'encv'/'enca' back to the 'frma' format,
 * 'sinf' and 'pssh' dropped, samples decrypted from 'senc' (constant or
 * per-sample IVs, any pattern), 'senc'/'saiz'/'saio' dropped.
 *
 * Not supported (MM_EBADDATA with a reason in mm_cbcs_error()): several
 * tracks or sample entries, a 'tfhd' base_data_offset (ffmpeg writes
 * default-base-is-moof for DASH/CMAF), 'seig' sample groups (key rotation).
 * On failure the output buffer is left as it was on entry.
 */

#ifndef MM_CBCS_H
#define MM_CBCS_H

#include "buf.h"


typedef struct {
    uint8_t   key[16];
    uint8_t   kid[16];
    uint8_t   iv[16];               /* the constant IV */
} mm_cbcs_key_t;


typedef struct {
    uint32_t  track_id;
    uint32_t  format;               /* original: 'avc1', 'avc3', 'mp4a' */
    int       video;
    unsigned  nal_length_size;      /* video */
    uint8_t   crypt_byte_block;
    uint8_t   skip_byte_block;
    uint8_t   per_sample_iv_size;   /* 0: constant IV */
    uint8_t   constant_iv_size;
    uint8_t   kid[16];
    uint8_t   iv[16];
} mm_cbcs_info_t;


typedef struct mm_cbcs_track_s  mm_cbcs_track_t;


mm_cbcs_track_t *mm_cbcs_track_new(void);
/* frees the track and NULLs *t; NULL or *t == NULL is harmless */
void mm_cbcs_track_destroy(mm_cbcs_track_t **t);

/* valid after a successful *_init() */
const mm_cbcs_info_t *mm_cbcs_track_info(const mm_cbcs_track_t *t);

/* why the last call failed ("" after success) */
const char *mm_cbcs_error(const mm_cbcs_track_t *t);

/*
 * in must hold a 'moov' (an init segment, or a whole fragmented file whose
 * fragments are then encrypted too). Appends the encrypted bytes to out.
 */
mm_status_t mm_cbcs_encrypt_init(mm_cbcs_track_t *t, const mm_cbcs_key_t *key,
    const uint8_t *in, size_t len, mm_buf_t *out);

/* in: one media segment (styp, sidx, moof, mdat, ...), no 'moov' */
mm_status_t mm_cbcs_encrypt_segment(mm_cbcs_track_t *t, const uint8_t *in,
    size_t len, mm_buf_t *out);

/* the KID and IV come from the file ('tenc'); only the key is needed */
mm_status_t mm_cbcs_decrypt_init(mm_cbcs_track_t *t, const uint8_t key[16],
    const uint8_t *in, size_t len, mm_buf_t *out);

mm_status_t mm_cbcs_decrypt_segment(mm_cbcs_track_t *t, const uint8_t *in,
    size_t len, mm_buf_t *out);


#endif /* MM_CBCS_H */
