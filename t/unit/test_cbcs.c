/*
 * cbcs encryptor/decryptor:
 *   - conformance with Bento4's mp4encrypt output in
 *     ../shared/media/cbcs-reference (skipped when it is not there):
 *     sample bytes and 'senc' subsample maps, sample by sample;
 *   - our decryptor on the reference gives back the clear samples;
 *   - segment-by-segment calls equal the whole-file call;
 *   - synthetic H.264 samples (several slices, an emulation prevention
 *     byte in a slice header, short slices, a 70000-byte SEI, empty NAL
 *     units and samples) checked against an independent AES-ECB based
 *     model of the 1:9 pattern with the IV reset at every subsample;
 *   - 'sidx' and 'trun' offsets after the moof grows and shrinks;
 *   - malformed input: truncation at every byte, every box size replaced
 *     by hostile values, huge counts, random mutations: a clean status,
 *     the output buffer untouched, never a crash (ASan runs this).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "buf.h"
#include "cbcs.h"
#include "h264.h"
#include "h264w.h"
#include "mp4.h"
#include "tap.h"


#define REF_DIR     "../shared/media/cbcs-reference/"
#define CORPUS_DIR  "t/fuzz/corpus/"
#define MAX_SUB     48


static mm_cbcs_key_t  key;


static void
skip(const char *why)
{
    printf("ok %d # skip %s\n", ++tap_run, why);
}


static void
unhex(const char *s, uint8_t *out)
{
    unsigned  i, v;

    for (i = 0; i < 16; i++) {
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (uint8_t) v;
    }
}


/*
 * An independent reader for the test: the samples of every moof (default
 * base is moof, one traf, one trun) with their 'senc' subsamples.
 */
typedef struct {
    size_t    off;
    uint32_t  size;
    int       has_senc;
    unsigned  nsub;
    uint32_t  clear[MAX_SUB];
    uint32_t  prot[MAX_SUB];
} ts_t;


static size_t
list_samples(const uint8_t *p, size_t len, ts_t *s, size_t max)
{
    size_t          n, first, i, j;
    uint32_t        flags, count, dsize, size, sflags;
    int32_t         doff;
    mm_mp4_box_t    top, traf, b;
    mm_mp4_cur_t    c, tc, bc;

    n = 0;
    mm_mp4_cur_init(&c, p, len);

    while (mm_mp4_next_box(&c, &top) == MM_OK) {
        if (top.type != MM_FOURCC('m', 'o', 'o', 'f')
            || mm_mp4_find(top.data, top.size - top.header,
                           MM_FOURCC('t', 'r', 'a', 'f'), &traf) != MM_OK)
        {
            continue;
        }

        dsize = 0;
        first = n;
        mm_mp4_box_cur(&traf, &tc);

        while (mm_mp4_next_box(&tc, &b) == MM_OK) {
            mm_mp4_box_cur(&b, &bc);

            if (b.type == MM_FOURCC('t', 'f', 'h', 'd')) {
                mm_mp4_full(&bc, NULL, &flags);
                mm_mp4_skip(&bc, 4 + ((flags & 1) ? 8 : 0)
                                 + ((flags & 2) ? 4 : 0)
                                 + ((flags & 8) ? 4 : 0));
                if (flags & 0x10) {
                    mm_mp4_get32(&bc, &dsize);
                }

            } else if (b.type == MM_FOURCC('t', 'r', 'u', 'n')) {
                mm_mp4_full(&bc, NULL, &flags);
                mm_mp4_get32(&bc, &count);
                mm_mp4_get32(&bc, (uint32_t *) &doff);
                if (flags & 4) {
                    mm_mp4_skip(&bc, 4);
                }

                size_t  pos = (size_t) (top.start - p) + (size_t) doff;

                for (i = 0; i < count && n < max; i++) {
                    size = dsize;
                    if (flags & 0x100) {
                        mm_mp4_skip(&bc, 4);
                    }
                    if (flags & 0x200) {
                        mm_mp4_get32(&bc, &size);
                    }
                    mm_mp4_skip(&bc, ((flags & 0x400) ? 4 : 0)
                                     + ((flags & 0x800) ? 4 : 0));
                    memset(&s[n], 0, sizeof(ts_t));
                    s[n].off = pos;
                    s[n].size = size;
                    pos += size;
                    n++;
                }

            } else if (b.type == MM_FOURCC('s', 'e', 'n', 'c')) {
                mm_mp4_full(&bc, NULL, &sflags);
                mm_mp4_get32(&bc, &count);

                for (i = first; i < first + count && i < n; i++) {
                    uint16_t  ns, cl;
                    uint32_t  pr;

                    s[i].has_senc = 1;

                    if (!(sflags & 2)) {
                        continue;
                    }

                    mm_mp4_get16(&bc, &ns);
                    s[i].nsub = ns;

                    for (j = 0; j < ns; j++) {
                        mm_mp4_get16(&bc, &cl);
                        mm_mp4_get32(&bc, &pr);
                        if (j < MAX_SUB) {
                            s[i].clear[j] = cl;
                            s[i].prot[j] = pr;
                        }
                    }
                }
            }
        }
    }

    return n;
}


/* the model: AES-128 ECB + explicit chaining, written apart from lib/ */
static void
model_crypt(uint8_t *p, size_t len, const uint8_t iv[16], unsigned crypt,
    unsigned skip_blocks)
{
    int              outl;
    size_t           blocks, i, k;
    uint8_t          chain[16], x[16];
    EVP_CIPHER_CTX  *ctx;

    ctx = EVP_CIPHER_CTX_new();
    EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, key.key, NULL);
    EVP_CIPHER_CTX_set_padding(ctx, 0);

    memcpy(chain, iv, 16);
    blocks = len / 16;

    for (i = 0; i < blocks; i++) {
        if (crypt != 0 && i % (crypt + skip_blocks) >= crypt) {
            continue;
        }

        for (k = 0; k < 16; k++) {
            x[k] = p[16 * i + k] ^ chain[k];
        }

        EVP_EncryptUpdate(ctx, p + 16 * i, &outl, x, 16);
        memcpy(chain, p + 16 * i, 16);
    }

    EVP_CIPHER_CTX_free(ctx);
}


/* top-level box of a type, n-th */
static int
top_box(const uint8_t *p, size_t len, uint32_t type, unsigned nth,
    mm_mp4_box_t *box)
{
    mm_mp4_cur_t  c;

    mm_mp4_cur_init(&c, p, len);

    while (mm_mp4_next_box(&c, box) == MM_OK) {
        if (box->type == type && nth-- == 0) {
            return 0;
        }
    }

    return -1;
}


/* conformance with the reference */

static void
compare_samples(const char *what, const uint8_t *a, size_t alen,
    const uint8_t *b, size_t blen, int maps)
{
    size_t    na, nb, i, bad_bytes, bad_maps;
    ts_t     *sa, *sb;

    sa = calloc(2048, sizeof(ts_t));
    sb = calloc(2048, sizeof(ts_t));

    na = list_samples(a, alen, sa, 2048);
    nb = list_samples(b, blen, sb, 2048);

    ok(na == nb && na > 0, "%s: %zu samples, reference %zu", what, na, nb);

    bad_bytes = 0;
    bad_maps = 0;

    for (i = 0; i < na && i < nb; i++) {
        if (sa[i].size != sb[i].size
            || memcmp(a + sa[i].off, b + sb[i].off, sa[i].size) != 0)
        {
            if (bad_bytes++ == 0) {
                diag("%s: sample %zu differs", what, i);
            }
        }

        if (maps
            && (sa[i].has_senc != sb[i].has_senc || sa[i].nsub != sb[i].nsub
                || memcmp(sa[i].clear, sb[i].clear, sizeof(sa[i].clear))
                || memcmp(sa[i].prot, sb[i].prot, sizeof(sa[i].prot))))
        {
            if (bad_maps++ == 0) {
                diag("%s: subsamples of sample %zu: %u (%u,%u) vs %u (%u,%u)",
                     what, i, sa[i].nsub, sa[i].clear[0], sa[i].prot[0],
                     sb[i].nsub, sb[i].clear[0], sb[i].prot[0]);
            }
        }
    }

    is_int(bad_bytes, 0, "%s: every sample byte-identical", what);

    if (maps) {
        is_int(bad_maps, 0, "%s: every 'senc' subsample map identical", what);
    }

    free(sa);
    free(sb);
}


/*
 * Ours = the reference + a 'pssh' at the end of 'moov'. Take it out (and
 * shift the 'tfra' moof offsets back) and the files must be equal.
 */
static void
compare_files(const char *what, const uint8_t *ours, size_t olen,
    const uint8_t *ref, size_t rlen)
{
    size_t         psz, moov_end, diff, i, n;
    uint8_t       *x;
    mm_mp4_box_t   moov, pssh, mfra;

    if (top_box(ours, olen, MM_FOURCC('m', 'o', 'o', 'v'), 0, &moov) != 0
        || mm_mp4_find(moov.data, moov.size - moov.header,
                       MM_FOURCC('p', 's', 's', 'h'), &pssh) != MM_OK)
    {
        ok(0, "%s: 'pssh' in 'moov'", what);
        return;
    }

    moov_end = (size_t) (moov.start - ours) + moov.size;
    ok(pssh.start + pssh.size == ours + moov_end && pssh.size == 52
       && memcmp(pssh.data + 4, "\x10\x77\xef\xec\xc0\xb2\x4d\x02"
                 "\xac\xe3\x3c\x1e\x52\xe2\xfb\x4b", 16) == 0
       && mm_get_be32(pssh.data + 20) == 1
       && memcmp(pssh.data + 24, key.kid, 16) == 0,
       "%s: common-system 'pssh' v1 with the KID closes 'moov'", what);

    psz = pssh.size;
    x = malloc(olen);
    n = (size_t) (pssh.start - ours);
    memcpy(x, ours, n);
    memcpy(x + n, pssh.start + psz, olen - n - psz);
    n = olen - psz;
    mm_put_be32(x + (moov.start - ours), (uint32_t) (moov.size - psz));

    /* tfra entries: time, moof_offset (4 or 8 bytes each), 3 x 1 byte */
    if (top_box(x, n, MM_FOURCC('m', 'f', 'r', 'a'), 0, &mfra) == 0) {
        uint8_t   *tfra = (uint8_t *) mfra.data + 8;
        uint32_t   cnt = mm_get_be32(tfra + 12);
        unsigned   v1 = (tfra[0] == 1);

        for (i = 0; i < cnt; i++) {
            uint8_t  *e = tfra + 16 + i * (v1 ? 19 : 11) + (v1 ? 8 : 4);

            if (v1) {
                mm_put_be64(e, mm_get_be64(e) - psz);
            } else {
                mm_put_be32(e, mm_get_be32(e) - (uint32_t) psz);
            }
        }
    }

    diff = (n == rlen) ? 0 : 1;
    for (i = 0; i < n && i < rlen; i++) {
        diff += (x[i] != ref[i]);
    }

    is_int(diff, 0, "%s: ours minus 'pssh' == Bento4's file, byte for byte",
           what);

    free(x);
}


static void
count_epb(const uint8_t *clear, size_t len)
{
    size_t          n, i, pos, nal_len, hdr, k, slices, with_epb;
    unsigned        nls;
    ts_t           *s;
    mm_h264_ps_t   *ps;
    mm_mp4_box_t    moov, avcc;
    const uint8_t  *q;

    ps = calloc(1, sizeof(*ps));
    s = calloc(2048, sizeof(ts_t));

    if (top_box(clear, len, MM_FOURCC('m', 'o', 'o', 'v'), 0, &moov) != 0) {
        goto done;
    }

    q = memmem(moov.start, moov.size, "avcC", 4);
    if (q == NULL || mm_mp4_find(q - 4, moov.start + moov.size - (q - 4),
                                 MM_FOURCC('a', 'v', 'c', 'C'), &avcc)
                     != MM_OK
        || mm_h264_parse_avcc(ps, avcc.data, avcc.size - avcc.header, &nls)
           != MM_OK)
    {
        goto done;
    }

    n = list_samples(clear, len, s, 2048);
    slices = 0;
    with_epb = 0;

    for (i = 0; i < n; i++) {
        q = clear + s[i].off;

        for (pos = 0; pos + 4 <= s[i].size; pos += 4 + nal_len) {
            nal_len = mm_get_be32(q + pos);
            if ((q[pos + 4] & 0x1f) != 1 && (q[pos + 4] & 0x1f) != 5) {
                continue;
            }

            if (mm_h264_slice_header_size(ps, q + pos + 4, nal_len, &hdr)
                != MM_OK)
            {
                continue;
            }

            slices++;

            for (k = 2; k < hdr; k++) {
                if (q[pos + 4 + k] == 3 && q[pos + 4 + k - 1] == 0
                    && q[pos + 4 + k - 2] == 0)
                {
                    with_epb++;
                    break;
                }
            }
        }
    }

    diag("reference video: %zu slices, %zu with an emulation prevention "
         "byte inside the slice header (the synthetic tests cover that case)",
         slices, with_epb);

done:
    free(ps);
    free(s);
}


static void
test_conformance(const char *name, int video)
{
    char              path[256];
    size_t            clen, rlen, init_len, off, i;
    uint8_t          *clear, *ref;
    mm_buf_t          out, seg, dec;
    mm_status_t       st;
    mm_mp4_box_t      moof, box;
    mm_mp4_cur_t      c;
    mm_cbcs_track_t  *t;

    snprintf(path, sizeof(path), REF_DIR "frag_%s.mp4", name);
    clear = mm_read_file(path, &clen);
    snprintf(path, sizeof(path), REF_DIR "cbcs_%s.mp4", name);
    ref = mm_read_file(path, &rlen);

    if (clear == NULL || ref == NULL) {
        for (i = 0; i < 17; i++) {
            skip(REF_DIR " not found (CI puts ../shared beside the repo)");
        }
        free(clear);
        free(ref);
        return;
    }

    t = mm_cbcs_track_new();
    mm_buf_init(&out);
    mm_buf_init(&seg);
    mm_buf_init(&dec);

    /* the whole file in one call */
    st = mm_cbcs_encrypt_init(t, &key, clear, clen, &out);
    is_int(st, MM_OK, "%s: encrypt frag_%s.mp4 (%s)", name, name,
           mm_cbcs_error(t));

    if (st != MM_OK) {
        goto done;
    }

    ok(mm_cbcs_track_info(t)->video == video
       && mm_cbcs_track_info(t)->track_id == 1, "%s: track info", name);

    compare_samples(video ? "video" : "audio", (uint8_t *) out.data, out.len,
                    ref, rlen, 1);
    compare_files(video ? "video" : "audio", (uint8_t *) out.data, out.len,
                  ref, rlen);

    if (video) {
        count_epb(clear, clen);
    }

    /* init + one call per fragment == the whole-file call (minus mfra) */
    top_box(clear, clen, MM_FOURCC('m', 'o', 'o', 'f'), 0, &moof);
    init_len = (size_t) (moof.start - clear);

    st = mm_cbcs_encrypt_init(t, &key, clear, init_len, &seg);
    mm_mp4_cur_init(&c, moof.start, clen - init_len);
    off = init_len;

    while (st == MM_OK && mm_mp4_next_box(&c, &box) == MM_OK) {
        if (box.type == MM_FOURCC('m', 'f', 'r', 'a')) {
            break;
        }

        /* a segment: moof + mdat */
        if (box.type == MM_FOURCC('m', 'o', 'o', 'f')
            && mm_mp4_next_box(&c, &box) == MM_OK)
        {
            st = mm_cbcs_encrypt_segment(t, clear + off,
                                         (size_t) (box.start + box.size
                                                   - (clear + off)), &seg);
            off = (size_t) (box.start + box.size - clear);
        }
    }

    ok(st == MM_OK && seg.len <= out.len
       && memcmp(seg.data, out.data, seg.len) == 0
       && top_box((uint8_t *) out.data, out.len,
                  MM_FOURCC('m', 'f', 'r', 'a'), 0, &box) == 0
       && (size_t) (box.start - (uint8_t *) out.data) == seg.len,
       "%s: init + per-segment calls == whole-file call", name);

    /* our decryptor on the reference gives the clear samples back */
    st = mm_cbcs_decrypt_init(t, key.key, ref, rlen, &dec);
    is_int(st, MM_OK, "%s: decrypt cbcs_%s.mp4 (%s)", name, name,
           mm_cbcs_error(t));
    ok(memcmp(mm_cbcs_track_info(t)->kid, key.kid, 16) == 0
       && memcmp(mm_cbcs_track_info(t)->iv, key.iv, 16) == 0
       && mm_cbcs_track_info(t)->crypt_byte_block == (video ? 1 : 0)
       && mm_cbcs_track_info(t)->skip_byte_block == (video ? 9 : 0),
       "%s: KID, IV and pattern read from 'tenc'", name);
    compare_samples(video ? "decrypted reference video"
                          : "decrypted reference audio",
                    (uint8_t *) dec.data, dec.len, clear, clen, 0);

    /* and the boxes: all but ftyp ('iso6') and mfra (offsets) identical */
    {
        size_t        diff;
        mm_mp4_box_t  a, b;
        mm_mp4_cur_t  ca, cb;

        diff = 0;
        mm_mp4_cur_init(&ca, (uint8_t *) dec.data, dec.len);
        mm_mp4_cur_init(&cb, clear, clen);

        while (mm_mp4_next_box(&ca, &a) == MM_OK) {
            if (mm_mp4_next_box(&cb, &b) != MM_OK || a.type != b.type) {
                diff++;
                break;
            }

            if (a.type != MM_FOURCC('f', 't', 'y', 'p')
                && a.type != MM_FOURCC('m', 'f', 'r', 'a')
                && (a.size != b.size
                    || memcmp(a.start, b.start, a.size) != 0))
            {
                diff++;
            }
        }

        diff += (mm_mp4_next_box(&cb, &b) != MM_ENOTFOUND);

        is_int(diff, 0, "%s: decrypted reference == frag_%s.mp4 box for box "
               "(moov, moof, mdat)", name, name);
    }

    /* decrypt(encrypt(x)) == x */
    mm_buf_reset(&dec);
    st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) out.data, out.len,
                              &dec);
    is_int(st, MM_OK, "%s: decrypt our output", name);
    compare_samples(video ? "round trip video" : "round trip audio",
                    (uint8_t *) dec.data, dec.len, clear, clen, 0);

done:
    mm_buf_free(&out);
    mm_buf_free(&seg);
    mm_buf_free(&dec);
    mm_cbcs_track_destroy(&t);
    ok(t == NULL, "%s: track_destroy NULLs the pointer", name);
    free(clear);
    free(ref);
}


/* synthetic files */

typedef struct {
    uint8_t  *p;
    size_t    len;
} sample_t;


static void
put_nal(mm_buf_t *b, const uint8_t *nal, size_t len)
{
    mm_mp4_put32(b, (uint32_t) len);
    mm_buf_append(b, nal, len);
}


static void
build_init(mm_buf_t *b, uint32_t format)
{
    size_t   moov, trak, mdia, minf, stbl, stsd, entry, box, mvex, i;
    uint8_t  sps[64], pps[64];
    size_t   sps_len, pps_len;

    box = mm_mp4_box_open(b, MM_FOURCC('f', 't', 'y', 'p'));
    mm_mp4_put32(b, MM_FOURCC('i', 's', 'o', 'm'));
    mm_mp4_put32(b, 0x200);
    mm_mp4_put32(b, MM_FOURCC('i', 's', 'o', 'm'));
    mm_mp4_put32(b, MM_FOURCC('i', 's', 'o', '6'));
    mm_mp4_put32(b, MM_FOURCC('m', 'p', '4', '1'));
    mm_mp4_box_close(b, box);

    moov = mm_mp4_box_open(b, MM_FOURCC('m', 'o', 'o', 'v'));

    box = mm_mp4_full_open(b, MM_FOURCC('m', 'v', 'h', 'd'), 0, 0);
    for (i = 0; i < 24; i++) {
        mm_mp4_put32(b, 0);
    }
    mm_mp4_box_close(b, box);

    trak = mm_mp4_box_open(b, MM_FOURCC('t', 'r', 'a', 'k'));
    box = mm_mp4_full_open(b, MM_FOURCC('t', 'k', 'h', 'd'), 0, 3);
    mm_mp4_put32(b, 0);
    mm_mp4_put32(b, 0);
    mm_mp4_put32(b, 1);                             /* track_ID */
    for (i = 0; i < 17; i++) {
        mm_mp4_put32(b, 0);
    }
    mm_mp4_box_close(b, box);

    mdia = mm_mp4_box_open(b, MM_FOURCC('m', 'd', 'i', 'a'));
    minf = mm_mp4_box_open(b, MM_FOURCC('m', 'i', 'n', 'f'));
    stbl = mm_mp4_box_open(b, MM_FOURCC('s', 't', 'b', 'l'));
    stsd = mm_mp4_full_open(b, MM_FOURCC('s', 't', 's', 'd'), 0, 0);
    mm_mp4_put32(b, 1);

    entry = mm_mp4_box_open(b, format);

    if (format == MM_FOURCC('m', 'p', '4', 'a')) {
        for (i = 0; i < 20; i++) {
            mm_mp4_put8(b, 0);
        }
        mm_mp4_put8(b, 0);
        mm_mp4_put8(b, 1);                          /* data ref index */
        mm_mp4_put16(b, 2);                         /* (shifted; ignored) */
        mm_mp4_put32(b, 48000u << 16);
        box = mm_mp4_full_open(b, MM_FOURCC('e', 's', 'd', 's'), 0, 0);
        mm_mp4_put32(b, 0x03808080);
        mm_mp4_box_close(b, box);

    } else {
        for (i = 0; i < 78; i++) {
            mm_mp4_put8(b, 0);
        }

        box = mm_mp4_box_open(b, MM_FOURCC('a', 'v', 'c', 'C'));
        sps_len = make_sps(sps);
        pps_len = make_pps(pps, 1);
        mm_mp4_put32(b, 0x0142001e);
        mm_mp4_put16(b, 0xffe1);
        mm_mp4_put16(b, (uint16_t) sps_len);
        mm_buf_append(b, sps, sps_len);
        mm_mp4_put8(b, 1);
        mm_mp4_put16(b, (uint16_t) pps_len);
        mm_buf_append(b, pps, pps_len);
        mm_mp4_box_close(b, box);
    }

    mm_mp4_box_close(b, entry);
    mm_mp4_box_close(b, stsd);
    mm_mp4_box_close(b, stbl);
    mm_mp4_box_close(b, minf);
    mm_mp4_box_close(b, mdia);
    mm_mp4_box_close(b, trak);

    mvex = mm_mp4_box_open(b, MM_FOURCC('m', 'v', 'e', 'x'));
    box = mm_mp4_full_open(b, MM_FOURCC('t', 'r', 'e', 'x'), 0, 0);
    mm_mp4_put32(b, 1);
    mm_mp4_put32(b, 1);
    mm_mp4_put32(b, 0);
    mm_mp4_put32(b, 0);
    mm_mp4_put32(b, 0);
    mm_mp4_box_close(b, box);
    mm_mp4_box_close(b, mvex);

    mm_mp4_box_close(b, moov);
}


/* moof (tfhd default-base-is-moof, tfdt, trun with sizes) + mdat */
static void
build_fragment(mm_buf_t *b, uint32_t seq, const sample_t *s, size_t n)
{
    size_t  moof, traf, box, doff, i;

    moof = mm_mp4_box_open(b, MM_FOURCC('m', 'o', 'o', 'f'));
    box = mm_mp4_full_open(b, MM_FOURCC('m', 'f', 'h', 'd'), 0, 0);
    mm_mp4_put32(b, seq);
    mm_mp4_box_close(b, box);

    traf = mm_mp4_box_open(b, MM_FOURCC('t', 'r', 'a', 'f'));
    box = mm_mp4_full_open(b, MM_FOURCC('t', 'f', 'h', 'd'), 0, 0x020000);
    mm_mp4_put32(b, 1);
    mm_mp4_box_close(b, box);
    box = mm_mp4_full_open(b, MM_FOURCC('t', 'f', 'd', 't'), 1, 0);
    mm_mp4_put64(b, seq * 1000);
    mm_mp4_box_close(b, box);
    box = mm_mp4_full_open(b, MM_FOURCC('t', 'r', 'u', 'n'), 0, 0x000301);
    mm_mp4_put32(b, (uint32_t) n);
    doff = b->len;
    mm_mp4_put32(b, 0);

    for (i = 0; i < n; i++) {
        mm_mp4_put32(b, 1000);
        mm_mp4_put32(b, (uint32_t) s[i].len);
    }

    mm_mp4_box_close(b, box);
    mm_mp4_box_close(b, traf);
    mm_mp4_box_close(b, moof);

    if (!b->failed) {
        mm_put_be32((uint8_t *) b->data + doff,
                    (uint32_t) (b->len - moof + 8));
    }

    box = mm_mp4_box_open(b, MM_FOURCC('m', 'd', 'a', 't'));
    for (i = 0; i < n; i++) {
        mm_buf_append(b, s[i].p, s[i].len);
    }
    mm_mp4_box_close(b, box);
}


/*
 * Video samples and the subsample maps they must get:
 *   0: AUD, SEI, slice with EPB (hdr 8) + 100, slice (hdr 7) + 40,
 *      slice + 5 (too short: clear)
 *   1: 70000-byte SEI + slice: the clear run takes two entries
 *   2: empty NAL unit + slice
 *   3: empty sample
 *   4: SEI only
 */
#define NV  5

typedef struct {
    sample_t  s[NV];
    unsigned  nsub[NV];
    uint32_t  clear[NV][4];
    uint32_t  prot[NV][4];
} vset_t;


static void
make_video(vset_t *v)
{
    size_t    n1, n2, n3, i;
    uint8_t   nal[512], *big;
    mm_buf_t  b;

    memset(v, 0, sizeof(*v));

    /* 0 */
    mm_buf_init(&b);
    put_nal(&b, (const uint8_t *) "\x09\xf0", 2);
    memset(nal, 0x11, 30);
    nal[0] = 0x06;
    put_nal(&b, nal, 30);
    n1 = make_slice(nal, 0, 100, 0x7f);
    put_nal(&b, nal, n1);
    n2 = make_slice(nal, 0xffff, 40, 0x7f);
    put_nal(&b, nal, n2);
    n3 = make_slice(nal, 0x1234, 5, 0x7f);
    put_nal(&b, nal, n3);
    v->s[0].len = b.len;
    v->s[0].p = (uint8_t *) mm_buf_steal(&b, NULL);
    v->nsub[0] = 3;
    v->clear[0][0] = 6 + 34 + 4 + 8;
    v->prot[0][0] = (uint32_t) n1 - 8;
    v->clear[0][1] = 4 + 7;
    v->prot[0][1] = (uint32_t) n2 - 7;
    v->clear[0][2] = 4 + (uint32_t) n3;
    v->prot[0][2] = 0;

    /* 1 */
    big = malloc(70000);
    memset(big, 0x22, 70000);
    big[0] = 0x06;
    put_nal(&b, big, 70000);
    free(big);
    n1 = make_slice(nal, 0xffff, 333, 0x7f);
    put_nal(&b, nal, n1);
    v->s[1].len = b.len;
    v->s[1].p = (uint8_t *) mm_buf_steal(&b, NULL);
    v->nsub[1] = 2;
    v->clear[1][0] = 0xffff;
    v->prot[1][0] = 0;
    v->clear[1][1] = 70004 - 0xffff + 4 + 7;
    v->prot[1][1] = (uint32_t) n1 - 7;

    /* 2 */
    mm_mp4_put32(&b, 0);
    n1 = make_slice(nal, 0xffff, 16, 0x7f);
    put_nal(&b, nal, n1);
    v->s[2].len = b.len;
    v->s[2].p = (uint8_t *) mm_buf_steal(&b, NULL);
    v->nsub[2] = 1;
    v->clear[2][0] = 4 + 4 + 7;
    v->prot[2][0] = (uint32_t) n1 - 7;

    /* 3: empty */
    v->s[3].p = malloc(1);
    v->nsub[3] = 0;

    /* 4 */
    for (i = 0; i < 50; i++) {
        nal[i] = (uint8_t) i;
    }
    nal[0] = 0x06;
    put_nal(&b, nal, 50);
    v->s[4].len = b.len;
    v->s[4].p = (uint8_t *) mm_buf_steal(&b, NULL);
    v->nsub[4] = 1;
    v->clear[4][0] = 54;
    v->prot[4][0] = 0;
}


static void
free_samples(sample_t *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(s[i].p);
    }
}


static void
test_synthetic_video(void)
{
    size_t            n, i, j, bad_map, bad_bytes;
    uint8_t          *model;
    ts_t             *ts;
    vset_t            v;
    mm_buf_t          in, out, dec;
    mm_status_t       st;
    mm_cbcs_track_t  *t;

    make_video(&v);
    mm_buf_init(&in);
    mm_buf_init(&out);
    mm_buf_init(&dec);

    build_init(&in, MM_FOURCC('a', 'v', 'c', '1'));
    build_fragment(&in, 1, v.s, 3);
    build_fragment(&in, 2, v.s + 3, 2);

    t = mm_cbcs_track_new();
    st = mm_cbcs_encrypt_init(t, &key, (uint8_t *) in.data, in.len, &out);
    is_int(st, MM_OK, "synthetic video encrypts (%s)", mm_cbcs_error(t));
    is_int(mm_cbcs_track_info(t)->nal_length_size, 4, "NAL length size 4");

    ts = calloc(16, sizeof(ts_t));
    n = list_samples((uint8_t *) out.data, out.len, ts, 16);
    is_int(n, NV, "5 samples in the output");

    bad_map = 0;
    bad_bytes = 0;

    for (i = 0; i < n && i < NV; i++) {
        if (ts[i].nsub != v.nsub[i] || !ts[i].has_senc) {
            bad_map++;
            diag("sample %zu: %u subsamples, want %u", i, ts[i].nsub,
                 v.nsub[i]);
            continue;
        }

        for (j = 0; j < v.nsub[i]; j++) {
            if (ts[i].clear[j] != v.clear[i][j]
                || ts[i].prot[j] != v.prot[i][j])
            {
                bad_map++;
                diag("sample %zu sub %zu: (%u,%u), want (%u,%u)", i, j,
                     ts[i].clear[j], ts[i].prot[j], v.clear[i][j],
                     v.prot[i][j]);
            }
        }

        /* the model: clear parts as is, 1:9 from each subsample's IV */
        model = malloc(v.s[i].len + 1);
        memcpy(model, v.s[i].p, v.s[i].len);
        {
            size_t  pos = 0;

            for (j = 0; j < v.nsub[i]; j++) {
                pos += v.clear[i][j];
                model_crypt(model + pos, v.prot[i][j], key.iv, 1, 9);
                pos += v.prot[i][j];
            }
        }

        if (ts[i].size != v.s[i].len
            || memcmp((uint8_t *) out.data + ts[i].off, model, v.s[i].len))
        {
            bad_bytes++;
            diag("sample %zu: bytes differ from the model", i);
        }

        free(model);
    }

    is_int(bad_map, 0, "subsample maps: slice headers with and without EPB, "
           "short slice clear, 16-bit clear split, empty NAL, empty sample");
    is_int(bad_bytes, 0, "ciphertext == 1:9 model with the IV reset at every "
           "subsample");
    i = v.clear[1][0] + v.clear[1][1];
    ok(memcmp((uint8_t *) out.data + ts[1].off + i + 16, v.s[1].p + i + 16,
              144) == 0
       && memcmp((uint8_t *) out.data + ts[1].off + i, v.s[1].p + i, 16) != 0
       && memcmp((uint8_t *) out.data + ts[1].off + i + 160,
                 v.s[1].p + i + 160, 16) != 0,
       "1 block encrypted, the next 9 clear, the 11th encrypted");

    /* the saiz sizes follow the senc entries */
    {
        mm_mp4_box_t  moof, saiz;
        const uint8_t *q;

        top_box((uint8_t *) out.data, out.len, MM_FOURCC('m', 'o', 'o', 'f'),
                0, &moof);
        q = memmem(moof.start, moof.size, "saiz", 4);
        ok(q != NULL
           && mm_mp4_find(q - 4, 40, MM_FOURCC('s', 'a', 'i', 'z'), &saiz)
              == MM_OK
           && saiz.data[4] == 0 && mm_get_be32(saiz.data + 5) == 3
           && saiz.data[9] == 2 + 6 * 3 && saiz.data[10] == 2 + 6 * 2
           && saiz.data[11] == 2 + 6 * 1, "saiz: one size per sample");
    }

    st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) out.data, out.len,
                              &dec);
    is_int(st, MM_OK, "synthetic video decrypts (%s)", mm_cbcs_error(t));
    ok(dec.len == in.len && memcmp(dec.data, in.data, in.len) == 0,
       "decrypt(encrypt(x)) == x, byte for byte");

    free(ts);
    mm_buf_free(&in);
    mm_buf_free(&out);
    mm_buf_free(&dec);
    mm_cbcs_track_destroy(&t);
    free_samples(v.s, NV);
}


static void
test_synthetic_audio(void)
{
    static const size_t  sizes[] = { 0, 10, 16, 100, 300, 17 };

    size_t            n, i, j, bad;
    uint8_t          *model;
    ts_t             *ts;
    sample_t          s[6];
    mm_buf_t          in, out, dec;
    mm_status_t       st;
    mm_mp4_box_t      moof, box;
    mm_cbcs_track_t  *t;

    for (i = 0; i < 6; i++) {
        s[i].len = sizes[i];
        s[i].p = malloc(sizes[i] + 1);
        for (j = 0; j < sizes[i]; j++) {
            s[i].p[j] = (uint8_t) (i * 31 + j);
        }
    }

    mm_buf_init(&in);
    mm_buf_init(&out);
    mm_buf_init(&dec);
    build_init(&in, MM_FOURCC('m', 'p', '4', 'a'));
    build_fragment(&in, 1, s, 6);

    t = mm_cbcs_track_new();
    st = mm_cbcs_encrypt_init(t, &key, (uint8_t *) in.data, in.len, &out);
    is_int(st, MM_OK, "synthetic audio encrypts (%s)", mm_cbcs_error(t));
    ok(mm_cbcs_track_info(t)->format == MM_FOURCC('m', 'p', '4', 'a')
       && !mm_cbcs_track_info(t)->video, "audio track info");

    ts = calloc(8, sizeof(ts_t));
    n = list_samples((uint8_t *) out.data, out.len, ts, 8);
    bad = (n != 6);

    for (i = 0; i < n && i < 6; i++) {
        model = malloc(sizes[i] + 1);
        memcpy(model, s[i].p, sizes[i]);
        model_crypt(model, sizes[i], key.iv, 0, 0);

        if (!ts[i].has_senc || ts[i].nsub != 0 || ts[i].size != sizes[i]
            || memcmp((uint8_t *) out.data + ts[i].off, model, sizes[i]))
        {
            bad++;
            diag("audio sample %zu differs from the model", i);
        }

        free(model);
    }

    is_int(bad, 0, "audio: whole blocks CBC from the IV per sample, tail "
           "clear, senc without subsamples");
    ok(memcmp((uint8_t *) out.data + ts[1].off, s[1].p, 10) == 0,
       "a 10-byte sample stays clear");

    /* Bento4's empty aux info: saiz default 0 count 0, saio -> senc+16 */
    top_box((uint8_t *) out.data, out.len, MM_FOURCC('m', 'o', 'o', 'f'), 0,
            &moof);
    {
        const uint8_t  *q, *senc;

        q = memmem(moof.start, moof.size, "saiz", 4);
        senc = memmem(moof.start, moof.size, "senc", 4);
        ok(q != NULL && senc != NULL
           && mm_mp4_find(q - 4, 17, MM_FOURCC('s', 'a', 'i', 'z'), &box)
              == MM_OK
           && box.size == 17 && mm_get_be32(box.data + 5) == 0
           && mm_get_be32(q - 4 + 17 + 16)
              == (uint32_t) (senc - 4 + 16 - moof.start),
           "audio saiz/saio as Bento4 writes them");
    }

    st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) out.data, out.len,
                              &dec);
    ok(st == MM_OK && dec.len == in.len
       && memcmp(dec.data, in.data, in.len) == 0,
       "audio: decrypt(encrypt(x)) == x");

    free(ts);
    mm_buf_free(&in);
    mm_buf_free(&out);
    mm_buf_free(&dec);
    mm_cbcs_track_destroy(&t);
    free_samples(s, 6);
}


/* a segment with styp + sidx: referenced_size follows the grown moof */
static void
test_sidx(void)
{
    size_t            init_len, seg_start, sidx_at, i;
    vset_t            v;
    mm_buf_t          in, out, enc, dec;
    mm_status_t       st;
    mm_mp4_box_t      sidx, moof, mdat;
    mm_cbcs_track_t  *t;

    make_video(&v);
    mm_buf_init(&in);
    mm_buf_init(&out);
    mm_buf_init(&enc);
    mm_buf_init(&dec);

    build_init(&in, MM_FOURCC('a', 'v', 'c', '1'));
    init_len = in.len;

    seg_start = in.len;
    i = mm_mp4_box_open(&in, MM_FOURCC('s', 't', 'y', 'p'));
    mm_mp4_put32(&in, MM_FOURCC('m', 's', 'd', 'h'));
    mm_mp4_put32(&in, 0);
    mm_mp4_box_close(&in, i);

    i = mm_mp4_full_open(&in, MM_FOURCC('s', 'i', 'd', 'x'), 0, 0);
    mm_mp4_put32(&in, 1);
    mm_mp4_put32(&in, 1000);
    mm_mp4_put32(&in, 0);                   /* earliest pts */
    mm_mp4_put32(&in, 0);                   /* first_offset */
    mm_mp4_put16(&in, 0);
    mm_mp4_put16(&in, 2);
    sidx_at = in.len;
    mm_mp4_put32(&in, 0);
    mm_mp4_put32(&in, 3000);
    mm_mp4_put32(&in, 0x90000000);
    mm_mp4_put32(&in, 0);
    mm_mp4_put32(&in, 2000);
    mm_mp4_put32(&in, 0x90000000);
    mm_mp4_box_close(&in, i);

    i = in.len;
    build_fragment(&in, 1, v.s, 3);
    mm_put_be32((uint8_t *) in.data + sidx_at, (uint32_t) (in.len - i));
    i = in.len;
    build_fragment(&in, 2, v.s + 3, 2);
    mm_put_be32((uint8_t *) in.data + sidx_at + 12, (uint32_t) (in.len - i));

    t = mm_cbcs_track_new();
    st = mm_cbcs_encrypt_init(t, &key, (uint8_t *) in.data, init_len, &out);
    is_int(st, MM_OK, "init segment alone");
    st = mm_cbcs_encrypt_segment(t, (uint8_t *) in.data + seg_start,
                                 in.len - seg_start, &enc);
    is_int(st, MM_OK, "segment with styp+sidx (%s)", mm_cbcs_error(t));

    top_box((uint8_t *) enc.data, enc.len, MM_FOURCC('s', 'i', 'd', 'x'), 0,
            &sidx);
    top_box((uint8_t *) enc.data, enc.len, MM_FOURCC('m', 'o', 'o', 'f'), 0,
            &moof);
    top_box((uint8_t *) enc.data, enc.len, MM_FOURCC('m', 'd', 'a', 't'), 0,
            &mdat);
    ok(mm_get_be32(sidx.data + 24) == (uint32_t) (moof.size + mdat.size)
       && mm_get_be32(sidx.data + 16) == 0,
       "sidx: first reference grows with its moof, first_offset 0");
    top_box((uint8_t *) enc.data, enc.len, MM_FOURCC('m', 'o', 'o', 'f'), 1,
            &moof);
    top_box((uint8_t *) enc.data, enc.len, MM_FOURCC('m', 'd', 'a', 't'), 1,
            &mdat);
    ok(mm_get_be32(sidx.data + 36) == (uint32_t) (moof.size + mdat.size),
       "sidx: second reference too");
    ok(moof.start + moof.size + mdat.size == (uint8_t *) enc.data + enc.len,
       "segment ends with the last mdat");

    mm_cbcs_track_destroy(&t);
    t = mm_cbcs_track_new();
    st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) out.data, out.len,
                              &dec);
    ok(st == MM_OK, "decrypt the init segment");
    mm_buf_reset(&dec);
    st = mm_cbcs_decrypt_segment(t, (uint8_t *) enc.data, enc.len, &dec);
    ok(st == MM_OK && dec.len == in.len - seg_start
       && memcmp(dec.data, in.data + seg_start, dec.len) == 0,
       "decrypted segment == the clear one, sidx included");

    /* the segment API refuses what belongs to init */
    st = mm_cbcs_decrypt_segment(t, (uint8_t *) out.data, out.len, &dec);
    is_int(st, MM_EBADDATA, "a 'moov' in a segment: MM_EBADDATA");

    mm_cbcs_track_destroy(&t);
    mm_buf_free(&in);
    mm_buf_free(&out);
    mm_buf_free(&enc);
    mm_buf_free(&dec);
    free_samples(v.s, NV);
}


/* fixtures made with ffmpeg (see t/fuzz/README): slices, avc3, AAC */
static void
test_fixtures(void)
{
    static const char  *names[] = { "v_slices.mp4", "v_avc3.mp4",
                                    "a_small.mp4" };

    char              path[256];
    size_t            i, len;
    uint8_t          *p;
    mm_buf_t          out, dec;
    mm_status_t       st;
    mm_cbcs_track_t  *t;

    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), CORPUS_DIR "%s", names[i]);
        p = mm_read_file(path, &len);

        if (p == NULL) {
            skip("fixture missing");
            continue;
        }

        t = mm_cbcs_track_new();
        mm_buf_init(&out);
        mm_buf_init(&dec);

        st = mm_cbcs_encrypt_init(t, &key, p, len, &out);
        if (st == MM_OK) {
            st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) out.data,
                                      out.len, &dec);
        }

        ok(st == MM_OK && dec.len == len && memcmp(dec.data, p, len) == 0
           && memcmp(out.data, p, len < out.len ? len : out.len) != 0,
           "%s: encrypted differs, decrypt(encrypt(x)) == x (%s)",
           names[i], mm_cbcs_error(t));

        mm_buf_free(&out);
        mm_buf_free(&dec);
        mm_cbcs_track_destroy(&t);
        free(p);
    }
}


/* errors */

static mm_status_t
try_encrypt(const uint8_t *p, size_t len, mm_cbcs_track_t *t, int *intact)
{
    mm_buf_t     out;
    mm_status_t  st;

    mm_buf_init(&out);
    mm_buf_append(&out, "xyz", 3);

    st = mm_cbcs_encrypt_init(t, &key, p, len, &out);

    *intact = (st == MM_OK)
              || (out.len == 3 && !out.failed && memcmp(out.data, "xyz", 4)
                                                 == 0);
    mm_buf_free(&out);

    return st;
}


static mm_status_t
try_decrypt(const uint8_t *p, size_t len, mm_cbcs_track_t *t, int *intact)
{
    mm_buf_t     out;
    mm_status_t  st;

    mm_buf_init(&out);
    mm_buf_append(&out, "xyz", 3);

    st = mm_cbcs_decrypt_init(t, key.key, p, len, &out);

    *intact = (st == MM_OK)
              || (out.len == 3 && !out.failed && memcmp(out.data, "xyz", 4)
                                                 == 0);
    mm_buf_free(&out);

    return st;
}


static uint8_t *
find_box(mm_buf_t *b, const char *type)
{
    uint8_t  *q;

    q = memmem(b->data, b->len, type, 4);

    return q ? q - 4 : NULL;
}


static void
test_errors(void)
{
    int               intact;
    size_t            i;
    uint8_t          *q;
    vset_t            v;
    mm_buf_t          in, x, enc;
    mm_status_t       st;
    mm_cbcs_track_t  *t;

    make_video(&v);
    mm_buf_init(&in);
    mm_buf_init(&x);
    mm_buf_init(&enc);
    build_init(&in, MM_FOURCC('a', 'v', 'c', '1'));
    build_fragment(&in, 1, v.s, 1);

    t = mm_cbcs_track_new();

    st = mm_cbcs_encrypt_segment(t, (uint8_t *) in.data, in.len, &x);
    is_int(st, MM_EBADDATA, "segment before init: MM_EBADDATA (%s)",
           mm_cbcs_error(t));
    is_int(try_encrypt((uint8_t *) "", 0, t, &intact), MM_EBADDATA,
           "empty input");

    /* an init without moov */
    q = find_box(&in, "moof");
    is_int(try_encrypt(q, in.len - (size_t) (q - (uint8_t *) in.data), t,
                       &intact), MM_EBADDATA, "init without 'moov' (%s)",
           mm_cbcs_error(t));

#define EDIT(what, code, want)                                               \
    do {                                                                      \
        mm_buf_reset(&x);                                                     \
        mm_buf_append(&x, in.data, in.len);                                   \
        code;                                                                 \
        st = try_encrypt((uint8_t *) x.data, x.len, t, &intact);              \
        ok(st == (want) && intact, "%s: %s (%s)", what,                       \
           mm_strstatus(want), mm_cbcs_error(t));                             \
    } while (0)

    EDIT("hvc1 sample entry",
         memcpy(find_box(&x, "avc1") + 4, "hvc1", 4), MM_EBADDATA);
    EDIT("avc1 without avcC",
         memcpy(find_box(&x, "avcC") + 4, "avcX", 4), MM_EBADDATA);
    EDIT("tfhd with base_data_offset",
         find_box(&x, "tfhd")[11] |= 1, MM_EBADDATA);
    EDIT("tfhd of another track",
         find_box(&x, "tfhd")[15] = 2, MM_EBADDATA);
    EDIT("trun sample_count 0xffffffff",
         mm_put_be32(find_box(&x, "trun") + 12, 0xffffffff), MM_EBADDATA);
    EDIT("trun without per-sample fields, 2^31 samples of size 0",
         (find_box(&x, "trun")[10] = 0,
          mm_put_be32(find_box(&x, "trun") + 12, 0x80000000)), MM_EBADDATA);
    EDIT("trun data_offset into the moof",
         mm_put_be32(find_box(&x, "trun") + 16, 8), MM_EBADDATA);
    EDIT("trun data_offset at the mdat header (found by the fuzzer)",
         mm_put_be32(find_box(&x, "trun") + 16,
                     mm_get_be32(find_box(&x, "trun") + 16) - 8),
         MM_EBADDATA);
    EDIT("trun data_offset negative",
         mm_put_be32(find_box(&x, "trun") + 16, 0x80000000), MM_EBADDATA);
    EDIT("sample past the end of mdat",
         mm_put_be32(find_box(&x, "trun") + 24, 0x7fffffff), MM_EBADDATA);
    EDIT("NAL length past the sample",
         mm_put_be32(find_box(&x, "mdat") + 8, 0x10000), MM_EBADDATA);
    EDIT("stsd entry_count 0xffffffff",
         mm_put_be32(find_box(&x, "stsd") + 12, 0xffffffff), MM_EBADDATA);
    q = find_box(&in, "avcC");
    i = (size_t) (q - (uint8_t *) in.data) + 16 + q[15];
    EDIT("avcC without PPS: slices cannot be parsed",
         x.data[i] = 0, MM_EBADDATA);
    EDIT("a second tkhd",
         memcpy(find_box(&x, "mvhd") + 4, "tkhd", 4), MM_EBADDATA);
    EDIT("trun before tfhd",
         memcpy(find_box(&x, "tfhd") + 4, "tfhX", 4), MM_EBADDATA);

    /* a moof with its traf twice */
    {
        size_t   at, tsz;
        uint8_t *y;

        q = find_box(&in, "traf");
        at = (size_t) (q - (uint8_t *) in.data);
        tsz = mm_get_be32(q);
        mm_buf_reset(&x);
        mm_buf_append(&x, in.data, at + tsz);
        mm_buf_append(&x, q, tsz);
        mm_buf_append(&x, in.data + at + tsz, in.len - at - tsz);
        y = find_box(&x, "moof");
        mm_put_be32(y, mm_get_be32(y) + (uint32_t) tsz);
        y = find_box(&x, "trun");
        mm_put_be32(y + 16, mm_get_be32(y + 16) + (uint32_t) tsz);
        st = try_encrypt((uint8_t *) x.data, x.len, t, &intact);
        ok(st == MM_EBADDATA && intact
           && strstr(mm_cbcs_error(t), "traf") != NULL,
           "two trafs in a moof: MM_EBADDATA (%s)", mm_cbcs_error(t));
    }

    /* already encrypted */
    st = mm_cbcs_encrypt_init(t, &key, (uint8_t *) in.data, in.len, &enc);
    is_int(st, MM_OK, "encrypt the good file");
    is_int(try_encrypt((uint8_t *) enc.data, enc.len, t, &intact),
           MM_EBADDATA, "encrypting it again: MM_EBADDATA (%s)",
           mm_cbcs_error(t));
    is_int(try_decrypt((uint8_t *) in.data, in.len, t, &intact),
           MM_EBADDATA, "decrypting a clear file: MM_EBADDATA (%s)",
           mm_cbcs_error(t));

#define DEDIT(what, code, want)                                              \
    do {                                                                      \
        mm_buf_reset(&x);                                                     \
        mm_buf_append(&x, enc.data, enc.len);                                 \
        code;                                                                 \
        st = try_decrypt((uint8_t *) x.data, x.len, t, &intact);              \
        ok(st == (want) && intact, "decrypt, %s: %s (%s)", what,              \
           mm_strstatus(want), mm_cbcs_error(t));                             \
    } while (0)

    DEDIT("untouched", (void) 0, MM_OK);
    DEDIT("senc sample_count + 1",
          mm_put_be32(find_box(&x, "senc") + 12,
                      mm_get_be32(find_box(&x, "senc") + 12) + 1),
          MM_EBADDATA);
    DEDIT("senc subsample_count 0xffff",
          mm_put_be16(find_box(&x, "senc") + 16, 0xffff), MM_EBADDATA);
    DEDIT("subsamples that do not add up to the sample",
          mm_put_be16(find_box(&x, "senc") + 18, 1), MM_EBADDATA);
    DEDIT("schm 'cenc'",
          memcpy(find_box(&x, "schm") + 12, "cenc", 4), MM_EBADDATA);
    DEDIT("tenc per-sample IV size 7",
          find_box(&x, "tenc")[15] = 7, MM_EBADDATA);
    DEDIT("tenc constant IV size 200",
          find_box(&x, "tenc")[32] = 200, MM_EBADDATA);
    DEDIT("tenc pattern 0:9",
          find_box(&x, "tenc")[13] = 0x09, MM_EBADDATA);
    DEDIT("no frma",
          memcpy(find_box(&x, "frma") + 4, "frmX", 4), MM_EBADDATA);
    DEDIT("pssh dropped, still decrypts",
          memcpy(find_box(&x, "pssh") + 4, "pssX", 4), MM_OK);

    /* a per-sample IV file: tenc IV size 16 and an IV in each senc entry */
    {
        size_t  senc_at, n;

        mm_buf_reset(&x);
        q = find_box(&enc, "senc");
        senc_at = (size_t) (q - (uint8_t *) enc.data);
        n = mm_get_be32(q);
        /* rebuild: same file, tenc per-sample 16, and the senc entries
         * prefixed by the constant IV: decrypts to the same thing */
        mm_buf_append(&x, enc.data, senc_at + 16);
        mm_buf_append(&x, key.iv, 16);
        mm_buf_append(&x, enc.data + senc_at + 16, enc.len - senc_at - 16);
        mm_put_be32(find_box(&x, "senc"), (uint32_t) n + 16);
        q = find_box(&x, "traf");
        mm_put_be32(q, mm_get_be32(q) + 16);
        q = find_box(&x, "moof");
        mm_put_be32(q, mm_get_be32(q) + 16);
        q = find_box(&x, "trun");
        mm_put_be32(q + 16, mm_get_be32(q + 16) + 16);
        find_box(&x, "tenc")[15] = 16;

        mm_buf_reset(&enc);
        st = mm_cbcs_decrypt_init(t, key.key, (uint8_t *) x.data, x.len,
                                  &enc);
        ok(st == MM_OK && mm_cbcs_track_info(t)->per_sample_iv_size == 16,
           "per-sample IVs from senc (%s)", mm_cbcs_error(t));
        q = find_box(&enc, "mdat");
        ok(q != NULL && memcmp(q + 8, v.s[0].p, v.s[0].len) == 0,
           "per-sample IV decryption gives the clear sample");
    }

    mm_cbcs_track_destroy(&t);
    mm_cbcs_track_destroy(&t);
    ok(1, "track_destroy(NULL) is harmless");

    mm_buf_free(&in);
    mm_buf_free(&x);
    mm_buf_free(&enc);
    free_samples(v.s, NV);
}


/* robustness */

typedef struct {
    size_t   offs[256];
    size_t   n;
    const uint8_t *base;
} offs_t;


static int
offs_cb(void *data, const mm_mp4_box_t *box, unsigned depth)
{
    offs_t  *o;

    o = data;

    if (o->n < 256) {
        o->offs[o->n++] = (size_t) (box->start - o->base);
    }

    return 0;
}


static void
hostile(const char *what, const uint8_t *file, size_t len, int decrypt)
{
    static const uint32_t  sizes[] = { 0, 1, 4, 7, 8, 9, 0x7fffffff,
                                       0xffffffff };

    int               intact;
    size_t            cut, i, j, bad_status, bad_buf, runs;
    uint8_t          *x;
    uint32_t          rnd, orig;
    offs_t            o;
    mm_status_t       st;
    mm_cbcs_track_t  *t;

    t = mm_cbcs_track_new();
    x = malloc(len);
    bad_status = 0;
    bad_buf = 0;
    runs = 0;

    /* every truncation */
    for (cut = 0; cut < len; cut++) {
        memcpy(x, file, cut);
        st = decrypt ? try_decrypt(x, cut, t, &intact)
                     : try_encrypt(x, cut, t, &intact);
        bad_status += (st != MM_OK && st != MM_EBADDATA);
        bad_buf += !intact;
        runs++;
    }

    ok(bad_status == 0 && bad_buf == 0, "%s: %zu truncations: MM_OK or "
       "MM_EBADDATA, output untouched on failure", what, len);

    /* every box size replaced by hostile values, and by parent + 1 */
    memset(&o, 0, sizeof(o));
    o.base = file;
    mm_mp4_walk(file, len, offs_cb, &o);
    bad_status = 0;
    bad_buf = 0;

    for (i = 0; i < o.n; i++) {
        orig = mm_get_be32(file + o.offs[i]);

        for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]) + 2; j++) {
            memcpy(x, file, len);
            mm_put_be32(x + o.offs[i],
                        j < 8 ? sizes[j] : j == 8 ? orig + 1 : orig - 1);
            st = decrypt ? try_decrypt(x, len, t, &intact)
                         : try_encrypt(x, len, t, &intact);
            bad_status += (st != MM_OK && st != MM_EBADDATA
                           && st != MM_ETOOBIG);
            bad_buf += !intact;
            runs++;
        }
    }

    ok(o.n > 20 && bad_status == 0 && bad_buf == 0,
       "%s: %zu boxes x 10 hostile sizes: clean status", what, o.n);

    /* every 32-bit field set to 0xffffffff and 0x80000000 (counts, offsets) */
    bad_status = 0;
    for (i = 0; i + 4 <= len; i += 4) {
        for (j = 0; j < 2; j++) {
            memcpy(x, file, len);
            mm_put_be32(x + i, j ? 0x80000000 : 0xffffffff);
            st = decrypt ? try_decrypt(x, len, t, &intact)
                         : try_encrypt(x, len, t, &intact);
            bad_status += (st != MM_OK && st != MM_EBADDATA
                           && st != MM_ETOOBIG) || !intact;
            runs++;
        }
    }

    ok(bad_status == 0, "%s: every aligned word set to huge values: clean",
       what);

    /* random byte mutations, fixed seed */
    rnd = 12345;
    bad_status = 0;
    for (i = 0; i < 3000; i++) {
        memcpy(x, file, len);
        for (j = 0; j < 1 + i % 4; j++) {
            rnd = rnd * 1103515245 + 12345;
            x[(rnd >> 8) % len] = (uint8_t) (rnd >> 24);
        }
        st = decrypt ? try_decrypt(x, len, t, &intact)
                     : try_encrypt(x, len, t, &intact);
        bad_status += (st != MM_OK && st != MM_EBADDATA && st != MM_ETOOBIG)
                      || !intact;
        runs++;
    }

    ok(bad_status == 0, "%s: 3000 random mutations: clean status", what);
    diag("%s: %zu runs", what, runs);

    free(x);
    mm_cbcs_track_destroy(&t);
}


static void
test_robustness(void)
{
    vset_t            v;
    sample_t          s[3];
    mm_buf_t          in, enc, a;
    mm_cbcs_track_t  *t;

    make_video(&v);
    mm_buf_init(&in);
    mm_buf_init(&enc);
    mm_buf_init(&a);

    /* small: sample 0, 2, 4 (the 70000-byte SEI would make this slow) */
    s[0] = v.s[0];
    s[1] = v.s[2];
    s[2] = v.s[4];
    build_init(&in, MM_FOURCC('a', 'v', 'c', '1'));
    build_fragment(&in, 1, s, 2);
    build_fragment(&in, 2, s + 2, 1);

    t = mm_cbcs_track_new();
    mm_cbcs_encrypt_init(t, &key, (uint8_t *) in.data, in.len, &enc);

    hostile("clear video", (uint8_t *) in.data, in.len, 0);
    hostile("encrypted video", (uint8_t *) enc.data, enc.len, 1);

    s[0].p = (uint8_t *) "0123456789abcdef0123456789abcdef01234";
    s[0].len = 37;
    build_init(&a, MM_FOURCC('m', 'p', '4', 'a'));
    build_fragment(&a, 1, s, 1);
    mm_buf_reset(&enc);
    mm_cbcs_encrypt_init(t, &key, (uint8_t *) a.data, a.len, &enc);
    hostile("encrypted audio", (uint8_t *) enc.data, enc.len, 1);

    mm_cbcs_track_destroy(&t);
    mm_buf_free(&in);
    mm_buf_free(&enc);
    mm_buf_free(&a);
    free_samples(v.s, NV);
}


int
main(void)
{
    unhex("00112233445566778899aabbccddeeff", key.key);
    unhex("0123456789abcdef0123456789abcdef", key.kid);
    unhex("0f0e0d0c0b0a09080706050403020100", key.iv);

    test_conformance("v", 1);
    test_conformance("a", 0);
    test_synthetic_video();
    test_synthetic_audio();
    test_sidx();
    test_fixtures();
    test_errors();
    test_robustness();

    return done_testing();
}
