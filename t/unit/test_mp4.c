/*
 * MP4 box cursor/walker/writer and the H.264 slice header parser: every
 * kind of malformed box header, the nesting limit, hand-made SPS/PPS/slice
 * bitstreams (emulation prevention inside the slice header), and walks
 * over the reference files when ../shared is there.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "h264.h"
#include "h264w.h"
#include "mp4.h"
#include "tap.h"


#define REF_DIR  "../shared/media/cbcs-reference/"


static void
test_be(void)
{
    uint8_t  p[8];

    mm_put_be16(p, 0x1234);
    is_int(mm_get_be16(p), 0x1234, "be16 round trip");
    mm_put_be32(p, 0xdeadbeef);
    is_int(mm_get_be32(p), 0xdeadbeef, "be32 round trip");
    ok(p[0] == 0xde && p[3] == 0xef, "be32 is big-endian");
    is_int(mm_get_be24(p), 0xdeadbe, "be24");
    mm_put_be64(p, 0x0102030405060708ULL);
    ok(mm_get_be64(p) == 0x0102030405060708ULL, "be64 round trip");
}


static void
test_cursor(void)
{
    uint8_t         p[7] = { 1, 2, 3, 4, 5, 6, 7 };
    uint8_t         v8;
    uint16_t        v16;
    uint32_t        v32;
    uint64_t        v64;
    const uint8_t  *q;
    mm_mp4_cur_t    c;

    mm_mp4_cur_init(&c, p, sizeof(p));
    ok(mm_mp4_get64(&c, &v64) == -1 && c.pos == p,
       "get64 past the end fails, cursor unchanged");
    ok(mm_mp4_get32(&c, &v32) == 0 && v32 == 0x01020304, "get32");
    ok(mm_mp4_get32(&c, &v32) == -1 && mm_mp4_left(&c) == 3,
       "get32 with 3 left fails");
    ok(mm_mp4_get16(&c, &v16) == 0 && v16 == 0x0506, "get16");
    ok(mm_mp4_skip(&c, 2) == -1, "skip past the end fails");
    ok(mm_mp4_bytes(&c, 1, &q) == 0 && q == p + 6, "bytes");
    ok(mm_mp4_get8(&c, &v8) == -1, "get8 at the end fails");
    ok(mm_mp4_skip(&c, 0) == 0, "skip 0 at the end");
    ok(mm_mp4_bytes(&c, SIZE_MAX, &q) == -1, "bytes(SIZE_MAX) fails");
}


static mm_status_t
one_box(const uint8_t *p, size_t len, mm_mp4_box_t *box)
{
    mm_mp4_cur_t  c;

    mm_mp4_cur_init(&c, p, len);
    return mm_mp4_next_box(&c, box);
}


static void
test_box_headers(void)
{
    uint8_t       p[64];
    mm_mp4_box_t  box;
    mm_mp4_cur_t  c;

    memset(p, 0, sizeof(p));

    /* plain */
    mm_put_be32(p, 12);
    mm_put_be32(p + 4, MM_FOURCC('f', 'r', 'e', 'e'));
    is_int(one_box(p, 12, &box), MM_OK, "plain box");
    ok(box.size == 12 && box.header == 8 && box.data == p + 8
       && box.type == MM_FOURCC('f', 'r', 'e', 'e'), "plain box fields");
    is_int(one_box(p, 11, &box), MM_EBADDATA, "box larger than its parent");
    is_int(one_box(p, 7, &box), MM_EBADDATA, "7 bytes: header cut short");
    is_int(one_box(p, 0, &box), MM_ENOTFOUND, "nothing left: ENOTFOUND");

    /* sizes smaller than the header */
    mm_put_be32(p, 7);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "size 7 < header");
    mm_put_be32(p, 2);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "size 2 < header");

    /* 0: to the end of the parent */
    mm_put_be32(p, 0);
    is_int(one_box(p, 40, &box), MM_OK, "size 0 box");
    is_int(box.size, 40, "size 0 runs to the end");

    /* largesize */
    mm_put_be32(p, 1);
    mm_put_be64(p + 8, 24);
    is_int(one_box(p, 64, &box), MM_OK, "largesize box");
    ok(box.size == 24 && box.header == 16, "largesize fields");
    is_int(one_box(p, 15, &box), MM_EBADDATA, "largesize header cut short");
    mm_put_be64(p + 8, 8);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "largesize 8 < 16 header");
    mm_put_be64(p + 8, 0xffffffffffffffffULL);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "largesize 2^64-1");
    mm_put_be64(p + 8, 65);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "largesize past the parent");

    /* 32-bit size past the parent, and 0xffffffff */
    mm_put_be32(p, 0xffffffff);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "size 0xffffffff");

    /* uuid */
    mm_put_be32(p, 24);
    mm_put_be32(p + 4, MM_FOURCC('u', 'u', 'i', 'd'));
    is_int(one_box(p, 64, &box), MM_OK, "uuid box");
    ok(box.header == 24 && box.uuid == p + 8, "uuid header is 24 bytes");
    mm_put_be32(p, 20);
    is_int(one_box(p, 64, &box), MM_EBADDATA, "uuid box smaller than 24");
    is_int(one_box(p, 20, &box), MM_EBADDATA, "uuid cut short");

    /* a sequence: the cursor moves past each box */
    mm_put_be32(p, 8);
    mm_put_be32(p + 4, MM_FOURCC('a', 'a', 'a', 'a'));
    mm_put_be32(p + 8, 8);
    mm_put_be32(p + 12, MM_FOURCC('b', 'b', 'b', 'b'));
    mm_mp4_cur_init(&c, p, 16);
    ok(mm_mp4_next_box(&c, &box) == MM_OK
       && box.type == MM_FOURCC('a', 'a', 'a', 'a')
       && mm_mp4_next_box(&c, &box) == MM_OK
       && box.type == MM_FOURCC('b', 'b', 'b', 'b')
       && mm_mp4_next_box(&c, &box) == MM_ENOTFOUND, "two boxes then end");

    is_int(mm_mp4_find(p, 16, MM_FOURCC('b', 'b', 'b', 'b'), &box), MM_OK,
           "find the second box");
    ok(box.start == p + 8, "find points at it");
    is_int(mm_mp4_find(p, 16, MM_FOURCC('c', 'c', 'c', 'c'), &box),
           MM_ENOTFOUND, "find a missing box");
    is_int(mm_mp4_find(p, 15, MM_FOURCC('c', 'c', 'c', 'c'), &box),
           MM_EBADDATA, "find over a truncated box");
}


typedef struct {
    unsigned  count;
    unsigned  max_depth;
    unsigned  stop_at;
    uint32_t  seen[64];
} walk_t;


static int
walk_cb(void *data, const mm_mp4_box_t *box, unsigned depth)
{
    walk_t  *w;

    w = data;

    if (w->count < 64) {
        w->seen[w->count] = box->type;
    }

    w->count++;

    if (depth > w->max_depth) {
        w->max_depth = depth;
    }

    return (w->stop_at && w->count == w->stop_at) ? -1 : 0;
}


static void
test_walk_and_write(void)
{
    size_t        i, moov, trak, free_, full;
    mm_buf_t      b;
    walk_t        w;
    mm_mp4_box_t  box;

    mm_buf_init(&b);

    moov = mm_mp4_box_open(&b, MM_FOURCC('m', 'o', 'o', 'v'));
    trak = mm_mp4_box_open(&b, MM_FOURCC('t', 'r', 'a', 'k'));
    free_ = mm_mp4_box_open(&b, MM_FOURCC('f', 'r', 'e', 'e'));
    mm_mp4_put32(&b, 7);
    mm_mp4_box_close(&b, free_);
    full = mm_mp4_full_open(&b, MM_FOURCC('t', 'k', 'h', 'd'), 1, 0x000003);
    mm_mp4_put64(&b, 1);
    mm_mp4_put16(&b, 2);
    mm_mp4_put8(&b, 3);
    mm_mp4_box_close(&b, full);
    mm_mp4_box_close(&b, trak);
    mm_mp4_box_close(&b, moov);

    ok(!b.failed && b.len == 8 + 8 + 12 + 23, "writer: sizes add up");
    is_int(mm_get_be32((uint8_t *) b.data), b.len, "writer: moov size");
    is_int(mm_get_be32((uint8_t *) b.data + 8), b.len - 8,
           "writer: trak size");
    is_int(mm_get_be32((uint8_t *) b.data + 28), 23, "writer: tkhd size");
    is_int(mm_get_be32((uint8_t *) b.data + 36), 0x01000003,
           "writer: version and flags");

    memset(&w, 0, sizeof(w));
    is_int(mm_mp4_walk((uint8_t *) b.data, b.len, walk_cb, &w), MM_OK,
           "walk the written tree");
    ok(w.count == 4 && w.max_depth == 2
       && w.seen[3] == MM_FOURCC('t', 'k', 'h', 'd'), "walk: 4 boxes, depth 2");

    memset(&w, 0, sizeof(w));
    w.stop_at = 2;
    is_int(mm_mp4_walk((uint8_t *) b.data, b.len, walk_cb, &w), MM_EAGAIN,
           "walk stops when the callback says so");

    /* a child that claims more than its parent holds */
    mm_put_be32((uint8_t *) b.data + 16, 100);
    memset(&w, 0, sizeof(w));
    is_int(mm_mp4_walk((uint8_t *) b.data, b.len, walk_cb, &w),
           MM_EBADDATA, "walk: child larger than its parent");

    is_int(mm_mp4_find((uint8_t *) b.data, b.len,
                       MM_FOURCC('m', 'o', 'o', 'v'), &box), MM_OK,
           "the outer box is still fine");

    /* nesting bomb: 40 moov in moov */
    mm_buf_reset(&b);
    for (i = 0; i < 40; i++) {
        mm_mp4_put32(&b, (uint32_t) (8 * (40 - i)));
        mm_mp4_put32(&b, MM_FOURCC('m', 'o', 'o', 'v'));
    }

    memset(&w, 0, sizeof(w));
    is_int(mm_mp4_walk((uint8_t *) b.data, b.len, walk_cb, &w),
           MM_EBADDATA, "walk: nesting deeper than the limit");
    ok(w.max_depth <= MM_MP4_MAX_DEPTH, "walk never went past the limit");

    /* sample entries too short for their fixed part */
    mm_buf_reset(&b);
    full = mm_mp4_full_open(&b, MM_FOURCC('s', 't', 's', 'd'), 0, 0);
    mm_mp4_put32(&b, 1);
    free_ = mm_mp4_box_open(&b, MM_FOURCC('a', 'v', 'c', '1'));
    mm_mp4_put32(&b, 0);
    mm_mp4_box_close(&b, free_);
    mm_mp4_box_close(&b, full);
    memset(&w, 0, sizeof(w));
    is_int(mm_mp4_walk((uint8_t *) b.data, b.len, walk_cb, &w),
           MM_EBADDATA, "walk: avc1 shorter than 78 bytes");

    mm_buf_free(&b);

    {
        char  name[5];

        is_str(mm_mp4_fourcc_str(MM_FOURCC('a', 'v', 'c', '1'), name),
               "avc1", "fourcc_str");
        is_str(mm_mp4_fourcc_str(0x00410a7f, name), ".A..",
               "fourcc_str hides non-printables");
    }
}


static void
test_h264(void)
{
    size_t         n, sps_len, pps_len, len, hdr;
    uint8_t        sps[64], pps[64], nal[128], avcc[256];
    unsigned       nls;
    mm_h264_ps_t  *ps;
    bw_t           w;

    ps = calloc(1, sizeof(mm_h264_ps_t));

    sps_len = make_sps(sps);
    pps_len = make_pps(pps, 1);

    is_int(mm_h264_parse_sps(ps, sps, sps_len), MM_OK, "hand-made SPS");
    ok(ps->sps[0].valid && ps->sps[0].log2_max_frame_num == 16
       && ps->sps[0].pic_order_cnt_type == 0
       && ps->sps[0].log2_max_pic_order_cnt_lsb == 16
       && ps->sps[0].frame_mbs_only_flag == 1
       && ps->sps[0].pic_size_in_map_units == 12, "SPS fields");
    is_int(mm_h264_parse_pps(ps, pps, pps_len), MM_OK, "hand-made PPS");
    ok(ps->pps[0].valid && ps->pps[0].deblocking_filter_control_present_flag
       && !ps->pps[0].entropy_coding_mode_flag, "PPS fields");

    /* frame_num 0: 32 zero bits, so the header holds 00 00 03 00 */
    len = make_slice(nal, 0, 20, 0);
    ok(nal[1] == 0xb8 && nal[2] == 0 && nal[3] == 0 && nal[4] == 3,
       "the slice header contains an emulation prevention byte");
    is_int(mm_h264_slice_header_size(ps, nal, len, &hdr), MM_OK,
           "slice header with EPB");
    /* 41 bits = 6 RBSP bytes + 1 EPB + the NAL header byte */
    is_int(hdr, 8, "header size counts the EPB and the NAL header");

    /* frame_num 0xffff: no zero run, no EPB */
    len = make_slice(nal, 0xffff, 20, 0);
    is_int(mm_h264_slice_header_size(ps, nal, len, &hdr), MM_OK,
           "slice header without EPB");
    is_int(hdr, 7, "41 bits + NAL header = 7 bytes");

    /* no deblocking control: 3 bits fewer, still 6 bytes */
    pps_len = make_pps(pps, 0);
    is_int(mm_h264_parse_pps(ps, pps, pps_len), MM_OK, "PPS w/o deblocking");
    is_int(mm_h264_slice_header_size(ps, nal, len, &hdr), MM_OK,
           "slice, PPS w/o deblocking control");
    is_int(hdr, 6, "38 bits + NAL header = 6 bytes");

    /* cut short: the header does not fit */
    is_int(mm_h264_slice_header_size(ps, nal, 4, &hdr), MM_EBADDATA,
           "truncated slice header");
    is_int(mm_h264_slice_header_size(ps, nal, 1, &hdr), MM_EBADDATA,
           "NAL header only");

    /* unknown PPS */
    memset(&w, 0, sizeof(w));
    bw_ue(&w, 0);
    bw_ue(&w, 2);
    bw_ue(&w, 5);                   /* pps 5 */
    bw_u(&w, 32, 0xffffffff);
    n = nal_escape(0x01, &w, nal);
    is_int(mm_h264_slice_header_size(ps, nal, n, &hdr), MM_ENOTFOUND,
           "slice with an unknown PPS");

    /* pps id out of range; slice type out of range; 32+ leading zeros */
    memset(&w, 0, sizeof(w));
    bw_ue(&w, 0);
    bw_ue(&w, 2);
    bw_ue(&w, 300);
    bw_u(&w, 32, 0xffffffff);
    n = nal_escape(0x01, &w, nal);
    is_int(mm_h264_slice_header_size(ps, nal, n, &hdr), MM_EBADDATA,
           "pps id 300");

    memset(&w, 0, sizeof(w));
    bw_ue(&w, 0);
    bw_ue(&w, 10);
    bw_ue(&w, 0);
    bw_u(&w, 32, 0xffffffff);
    n = nal_escape(0x01, &w, nal);
    is_int(mm_h264_slice_header_size(ps, nal, n, &hdr), MM_EBADDATA,
           "slice_type 10");

    memset(nal, 0, sizeof(nal));
    nal[0] = 0x01;
    nal[1] = 0x00;
    nal[2] = 0x00;
    nal[3] = 0x03;
    nal[4] = 0x00;
    nal[5] = 0x00;
    nal[6] = 0x03;
    nal[7] = 0x00;
    nal[8] = 0x00;
    nal[9] = 0x01;
    is_int(mm_h264_slice_header_size(ps, nal, 10, &hdr), MM_EBADDATA,
           "exp-Golomb code with too many leading zeros");

    nal[0] = 0x06;
    is_int(mm_h264_slice_header_size(ps, nal, 10, &hdr), MM_EBADDATA,
           "SEI is not a slice");

    /* bad parameter sets */
    is_int(mm_h264_parse_sps(ps, sps, 3), MM_EBADDATA, "SPS of 3 bytes");
    is_int(mm_h264_parse_sps(ps, pps, pps_len), MM_EBADDATA,
           "PPS given as SPS");
    memset(&w, 0, sizeof(w));
    bw_u(&w, 24, 0x42001e);
    bw_ue(&w, 32);                  /* sps id 32 */
    bw_trail(&w);
    n = nal_escape(0x67, &w, nal);
    is_int(mm_h264_parse_sps(ps, nal, n), MM_EBADDATA, "SPS id 32");
    is_int(mm_h264_parse_sps(ps, sps, sps_len - 2), MM_EBADDATA,
           "truncated SPS");
    memset(&w, 0, sizeof(w));
    bw_ue(&w, 256);
    bw_trail(&w);
    n = nal_escape(0x68, &w, nal);
    is_int(mm_h264_parse_pps(ps, nal, n), MM_EBADDATA, "PPS id 256");

    /* avcC: version, profile, compat, level, 0xff (4-byte lengths) */
    sps_len = make_sps(sps);
    pps_len = make_pps(pps, 1);
    n = 0;
    avcc[n++] = 1;
    avcc[n++] = 66;
    avcc[n++] = 0;
    avcc[n++] = 30;
    avcc[n++] = 0xff;
    avcc[n++] = 0xe1;
    avcc[n++] = 0;
    avcc[n++] = (uint8_t) sps_len;
    memcpy(avcc + n, sps, sps_len);
    n += sps_len;
    avcc[n++] = 1;
    avcc[n++] = 0;
    avcc[n++] = (uint8_t) pps_len;
    memcpy(avcc + n, pps, pps_len);
    n += pps_len;

    memset(ps, 0, sizeof(*ps));
    is_int(mm_h264_parse_avcc(ps, avcc, n, &nls), MM_OK, "avcC");
    ok(nls == 4 && ps->sps[0].valid && ps->pps[0].valid, "avcC contents");

    for (len = 0; len < n; len++) {
        if (mm_h264_parse_avcc(ps, avcc, len, &nls) != MM_EBADDATA) {
            break;
        }
    }
    is_int(len, n, "every truncated avcC is MM_EBADDATA");

    avcc[4] = 0xfe;
    is_int(mm_h264_parse_avcc(ps, avcc, n, &nls), MM_EBADDATA,
           "avcC with 3-byte NAL lengths");
    avcc[4] = 0xff;
    avcc[7] = 0;
    is_int(mm_h264_parse_avcc(ps, avcc, n, &nls), MM_EBADDATA,
           "avcC with an empty SPS");
    avcc[7] = 200;
    is_int(mm_h264_parse_avcc(ps, avcc, n, &nls), MM_EBADDATA,
           "avcC with an SPS longer than the record");
    avcc[0] = 2;
    is_int(mm_h264_parse_avcc(ps, avcc, n, &nls), MM_EBADDATA,
           "avcC version 2");

    free(ps);
}


typedef struct {
    unsigned  moof, trun, avcc, mp4a, encv, senc;
} count_t;


static int
count_cb(void *data, const mm_mp4_box_t *box, unsigned depth)
{
    count_t  *c;

    c = data;

    switch (box->type) {
    case MM_FOURCC('m', 'o', 'o', 'f'): c->moof++; break;
    case MM_FOURCC('t', 'r', 'u', 'n'): c->trun++; break;
    case MM_FOURCC('a', 'v', 'c', 'C'): c->avcc++; break;
    case MM_FOURCC('m', 'p', '4', 'a'): c->mp4a++; break;
    case MM_FOURCC('e', 'n', 'c', 'v'): c->encv++; break;
    case MM_FOURCC('s', 'e', 'n', 'c'): c->senc++; break;
    default: break;
    }

    return 0;
}


static void
test_reference_walk(void)
{
    size_t     len, cut, bad;
    count_t    c;
    uint8_t   *p;

    p = mm_read_file(REF_DIR "frag_v.mp4", &len);

    if (p == NULL) {
        printf("ok %d # skip " REF_DIR " not found\n", ++tap_run);
        printf("ok %d # skip " REF_DIR " not found\n", ++tap_run);
        printf("ok %d # skip " REF_DIR " not found\n", ++tap_run);
        return;
    }

    memset(&c, 0, sizeof(c));
    is_int(mm_mp4_walk(p, len, count_cb, &c), MM_OK, "walk frag_v.mp4");
    ok(c.moof == 4 && c.trun == 4 && c.avcc == 1,
       "frag_v.mp4: 4 moof, 4 trun, 1 avcC (got %u %u %u)",
       c.moof, c.trun, c.avcc);

    /* every cut inside the first fragment: an error, never a crash */
    bad = 0;
    for (cut = 1; cut < 2000; cut++) {
        memset(&c, 0, sizeof(c));
        if (mm_mp4_walk(p, cut, count_cb, &c) == MM_OK) {
            /* a cut at a top-level box boundary is a valid shorter file */
            if (cut != 36 && cut != 770 && cut != 1354) {
                bad++;
            }
        }
    }
    is_int(bad, 0, "truncated frag_v.mp4: MM_EBADDATA except at boundaries");

    free(p);
}


int
main(void)
{
    test_be();
    test_cursor();
    test_box_headers();
    test_walk_and_write();
    test_h264();
    test_reference_walk();

    return done_testing();
}
