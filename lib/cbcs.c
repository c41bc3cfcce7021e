/*
 * 'cbcs' encryptor/decryptor for single-track fragmented MP4.
 *
 * One run over an input buffer has three passes:
 *   1. scan the top-level boxes (each must fit the buffer);
 *   2. in order, rebuild the boxes that change ('ftyp', 'moov', 'moof') into
 *      a scratch buffer, locate every sample of every 'trun' inside an
 *      untouched top-level box ('mdat') and work out its subsample map;
 *      this fixes every box's new offset and size;
 *   3. write the output, patch the offsets that point across boxes ('trun'
 *      data_offset, 'sidx' sizes, 'tfra' moof offsets), then encrypt or
 *      decrypt the samples in place in the output.
 * Offsets are translated old -> new through the table of top-level boxes:
 * a position inside a copied box moves with it, a rewritten box can only
 * be pointed at by its first byte.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "cbcs.h"
#include "h264.h"
#include "mp4.h"


#define MM_CBCS_MAX_SAMPLES     (1u << 20)      /* per call */
#define MM_CBCS_MAX_DEPTH       8               /* nested boxes we rebuild */
#define MM_CBCS_EVP_BLOCKS      (1u << 24)      /* 256 MiB per EVP call */
/* a 'saiz' entry is one byte: 2 + 6 * 42 = 254 */
#define MM_CBCS_MAX_SUBSAMPLES  42

#define T_FTYP  MM_FOURCC('f', 't', 'y', 'p')
#define T_MOOV  MM_FOURCC('m', 'o', 'o', 'v')
#define T_MOOF  MM_FOURCC('m', 'o', 'o', 'f')
#define T_SIDX  MM_FOURCC('s', 'i', 'd', 'x')
#define T_MFRA  MM_FOURCC('m', 'f', 'r', 'a')
#define T_TFRA  MM_FOURCC('t', 'f', 'r', 'a')
#define T_TRAK  MM_FOURCC('t', 'r', 'a', 'k')
#define T_MDIA  MM_FOURCC('m', 'd', 'i', 'a')
#define T_MINF  MM_FOURCC('m', 'i', 'n', 'f')
#define T_STBL  MM_FOURCC('s', 't', 'b', 'l')
#define T_MVEX  MM_FOURCC('m', 'v', 'e', 'x')
#define T_TKHD  MM_FOURCC('t', 'k', 'h', 'd')
#define T_TREX  MM_FOURCC('t', 'r', 'e', 'x')
#define T_STSD  MM_FOURCC('s', 't', 's', 'd')
#define T_PSSH  MM_FOURCC('p', 's', 's', 'h')
#define T_TRAF  MM_FOURCC('t', 'r', 'a', 'f')
#define T_TFHD  MM_FOURCC('t', 'f', 'h', 'd')
#define T_TRUN  MM_FOURCC('t', 'r', 'u', 'n')
#define T_SENC  MM_FOURCC('s', 'e', 'n', 'c')
#define T_SAIZ  MM_FOURCC('s', 'a', 'i', 'z')
#define T_SAIO  MM_FOURCC('s', 'a', 'i', 'o')
#define T_SBGP  MM_FOURCC('s', 'b', 'g', 'p')
#define T_SEIG  MM_FOURCC('s', 'e', 'i', 'g')
#define T_AVC1  MM_FOURCC('a', 'v', 'c', '1')
#define T_AVC3  MM_FOURCC('a', 'v', 'c', '3')
#define T_AVCC  MM_FOURCC('a', 'v', 'c', 'C')
#define T_MP4A  MM_FOURCC('m', 'p', '4', 'a')
#define T_ENCV  MM_FOURCC('e', 'n', 'c', 'v')
#define T_ENCA  MM_FOURCC('e', 'n', 'c', 'a')
#define T_SINF  MM_FOURCC('s', 'i', 'n', 'f')
#define T_FRMA  MM_FOURCC('f', 'r', 'm', 'a')
#define T_SCHM  MM_FOURCC('s', 'c', 'h', 'm')
#define T_SCHI  MM_FOURCC('s', 'c', 'h', 'i')
#define T_TENC  MM_FOURCC('t', 'e', 'n', 'c')
#define T_CBCS  MM_FOURCC('c', 'b', 'c', 's')
#define T_ISO6  MM_FOURCC('i', 's', 'o', '6')

/* tfhd and trun flags */
#define TFHD_BASE_DATA_OFFSET   0x000001
#define TFHD_DESC_INDEX         0x000002
#define TFHD_DEFAULT_DURATION   0x000008
#define TFHD_DEFAULT_SIZE       0x000010
#define TFHD_DEFAULT_FLAGS      0x000020
#define TRUN_DATA_OFFSET        0x000001
#define TRUN_FIRST_FLAGS        0x000004
#define TRUN_DURATION           0x000100
#define TRUN_SIZE               0x000200
#define TRUN_FLAGS              0x000400
#define TRUN_CTS                0x000800
#define SENC_SUBSAMPLES         0x000002


/* W3C "common" PSSH system (https://w3c.github.io/encrypted-media/format-
 * registry/initdata/cenc.html) */
static const uint8_t  mm_cbcs_common_system_id[16] = {
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02,
    0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b
};


struct mm_cbcs_track_s {
    mm_cbcs_info_t    info;
    int               ready;            /* an init went through */
    int               decrypt;
    int               ntkhd;
    int               have_entry;
    int               have_trex;
    uint32_t          trex_track_id;
    uint32_t          trex_sample_size;
    uint8_t           key[16];
    mm_h264_ps_t     *ps;
    EVP_CIPHER_CTX   *evp;
    char              err[160];
};


typedef enum {
    MM_CBCS_TOP_COPY = 0,               /* copied as is; may hold samples */
    MM_CBCS_TOP_BUILT,                  /* rebuilt in job->built */
    MM_CBCS_TOP_SIDX,                   /* copied, sizes patched */
    MM_CBCS_TOP_MFRA                    /* copied, tfra offsets patched */
} mm_cbcs_top_kind_t;


typedef struct {
    mm_mp4_box_t         box;
    size_t               old_off;
    size_t               new_off;
    size_t               new_size;
    mm_cbcs_top_kind_t   kind;
    size_t               built_off;     /* BUILT: where in job->built */
} mm_cbcs_top_t;


/* a trun data_offset to rewrite once the new layout is known */
typedef struct {
    size_t               top;
    size_t               at;            /* offset of the field in built */
    uint64_t             old_abs;       /* old position of the run's data */
} mm_cbcs_patch_t;


typedef struct {
    uint64_t             off;           /* in the input */
    uint32_t             size;
    uint32_t             sub;           /* first entry in job->subs */
    uint32_t             nsub;
    int                  has_subs;
    const uint8_t       *iv;            /* per-sample IV or NULL */
} mm_cbcs_sample_t;


typedef struct {
    uint32_t             clear;
    uint32_t             prot;
} mm_cbcs_sub_t;


typedef struct mm_cbcs_job_s  mm_cbcs_job_t;

typedef mm_status_t (*mm_cbcs_box_pt)(mm_cbcs_job_t *job,
    const mm_mp4_box_t *box);

typedef struct {
    uint32_t             type;
    mm_cbcs_box_pt       handler;
} mm_cbcs_handler_t;


struct mm_cbcs_job_s {
    mm_cbcs_track_t     *t;
    const uint8_t       *in;
    size_t               len;
    int                  decrypt;

    mm_cbcs_top_t       *tops;
    size_t               ntops;
    size_t               tops_cap;
    size_t               cur_top;
    size_t               last_top;      /* cache for mm_cbcs_top_at() */

    mm_buf_t             built;

    mm_cbcs_patch_t     *patches;
    size_t               npatches;
    size_t               patches_cap;

    mm_cbcs_sample_t    *samples;
    size_t               nsamples;
    size_t               samples_cap;

    mm_cbcs_sub_t       *subs;
    size_t               nsubs;
    size_t               subs_cap;

    unsigned             depth;
    size_t               moof_built;    /* moof's offset in built */
    uint64_t             moof_old;      /* moof's offset in the input */
    unsigned             ntraf;
};


static mm_status_t mm_cbcs_fail(mm_cbcs_track_t *t, mm_status_t st,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static mm_status_t mm_cbcs_run(mm_cbcs_track_t *t, const uint8_t *in,
    size_t len, mm_buf_t *out, int init);
static mm_status_t mm_cbcs_children(mm_cbcs_job_t *job,
    const mm_mp4_box_t *box, const mm_cbcs_handler_t *table);
static mm_status_t mm_cbcs_container(mm_cbcs_job_t *job,
    const mm_mp4_box_t *box);
static mm_status_t mm_cbcs_tkhd(mm_cbcs_job_t *job, const mm_mp4_box_t *box);
static mm_status_t mm_cbcs_trex(mm_cbcs_job_t *job, const mm_mp4_box_t *box);
static mm_status_t mm_cbcs_stsd(mm_cbcs_job_t *job, const mm_mp4_box_t *box);
static mm_status_t mm_cbcs_pssh(mm_cbcs_job_t *job, const mm_mp4_box_t *box);
static mm_status_t mm_cbcs_traf(mm_cbcs_job_t *job, const mm_mp4_box_t *box);


static const mm_cbcs_handler_t  mm_cbcs_moov_handlers[] = {
    { T_TRAK, mm_cbcs_container },
    { T_MDIA, mm_cbcs_container },
    { T_MINF, mm_cbcs_container },
    { T_STBL, mm_cbcs_container },
    { T_MVEX, mm_cbcs_container },
    { T_TKHD, mm_cbcs_tkhd },
    { T_TREX, mm_cbcs_trex },
    { T_STSD, mm_cbcs_stsd },
    { T_PSSH, mm_cbcs_pssh },
    { 0, NULL }
};

static const mm_cbcs_handler_t  mm_cbcs_moof_handlers[] = {
    { T_TRAF, mm_cbcs_traf },
    { 0, NULL }
};


/* track */

mm_cbcs_track_t *
mm_cbcs_track_new(void)
{
    mm_cbcs_track_t  *t;

    t = calloc(1, sizeof(mm_cbcs_track_t));
    if (t == NULL) {
        return NULL;
    }

    t->evp = EVP_CIPHER_CTX_new();
    if (t->evp == NULL) {
        free(t);
        return NULL;
    }

    return t;
}


void
mm_cbcs_track_destroy(mm_cbcs_track_t **tp)
{
    mm_cbcs_track_t  *t;

    if (tp == NULL || *tp == NULL) {
        return;
    }

    t = *tp;
    EVP_CIPHER_CTX_free(t->evp);
    OPENSSL_cleanse(t->key, sizeof(t->key));
    free(t->ps);
    free(t);
    *tp = NULL;
}


const mm_cbcs_info_t *
mm_cbcs_track_info(const mm_cbcs_track_t *t)
{
    return &t->info;
}


const char *
mm_cbcs_error(const mm_cbcs_track_t *t)
{
    return t->err;
}


static mm_status_t
mm_cbcs_fail(mm_cbcs_track_t *t, mm_status_t st, const char *fmt, ...)
{
    va_list  ap;

    if (t->err[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(t->err, sizeof(t->err), fmt, ap);
        va_end(ap);
    }

    return st;
}


static mm_status_t
mm_cbcs_setup(mm_cbcs_track_t *t, const uint8_t key[16], int decrypt)
{
    memset(&t->info, 0, sizeof(t->info));
    t->ready = 0;
    t->decrypt = decrypt;
    t->ntkhd = 0;
    t->have_entry = 0;
    t->have_trex = 0;
    t->trex_track_id = 0;
    t->trex_sample_size = 0;
    memcpy(t->key, key, 16);

    if (t->ps != NULL) {
        memset(t->ps, 0, sizeof(mm_h264_ps_t));
    }

    if (!EVP_CipherInit_ex(t->evp, EVP_aes_128_cbc(), NULL, t->key, NULL,
                           decrypt ? 0 : 1))
    {
        return mm_cbcs_fail(t, MM_ENOMEM, "EVP_CipherInit_ex failed");
    }

    EVP_CIPHER_CTX_set_padding(t->evp, 0);

    return MM_OK;
}


mm_status_t
mm_cbcs_encrypt_init(mm_cbcs_track_t *t, const mm_cbcs_key_t *key,
    const uint8_t *in, size_t len, mm_buf_t *out)
{
    mm_status_t  st;

    t->err[0] = '\0';

    st = mm_cbcs_setup(t, key->key, 0);
    if (st != MM_OK) {
        return st;
    }

    memcpy(t->info.kid, key->kid, 16);
    memcpy(t->info.iv, key->iv, 16);
    t->info.constant_iv_size = 16;

    return mm_cbcs_run(t, in, len, out, 1);
}


mm_status_t
mm_cbcs_encrypt_segment(mm_cbcs_track_t *t, const uint8_t *in, size_t len,
    mm_buf_t *out)
{
    t->err[0] = '\0';

    if (!t->ready || t->decrypt) {
        return mm_cbcs_fail(t, MM_EBADDATA,
                            "track not set up by mm_cbcs_encrypt_init()");
    }

    return mm_cbcs_run(t, in, len, out, 0);
}


mm_status_t
mm_cbcs_decrypt_init(mm_cbcs_track_t *t, const uint8_t key[16],
    const uint8_t *in, size_t len, mm_buf_t *out)
{
    mm_status_t  st;

    t->err[0] = '\0';

    st = mm_cbcs_setup(t, key, 1);
    if (st != MM_OK) {
        return st;
    }

    return mm_cbcs_run(t, in, len, out, 1);
}


mm_status_t
mm_cbcs_decrypt_segment(mm_cbcs_track_t *t, const uint8_t *in, size_t len,
    mm_buf_t *out)
{
    t->err[0] = '\0';

    if (!t->ready || !t->decrypt) {
        return mm_cbcs_fail(t, MM_EBADDATA,
                            "track not set up by mm_cbcs_decrypt_init()");
    }

    return mm_cbcs_run(t, in, len, out, 0);
}


/* arrays */

static int
mm_cbcs_grow(void **p, size_t *cap, size_t n, size_t elem)
{
    size_t   c;
    void    *np;

    if (n < *cap) {
        return 0;
    }

    c = *cap ? *cap : 16;

    while (c <= n) {
        if (c > SIZE_MAX / 2 / elem) {
            return -1;
        }
        c *= 2;
    }

    np = realloc(*p, c * elem);
    if (np == NULL) {
        return -1;
    }

    *p = np;
    *cap = c;

    return 0;
}


static mm_status_t
mm_cbcs_add_sub(mm_cbcs_job_t *job, mm_cbcs_sample_t *s, uint64_t clear,
    uint32_t prot)
{
    for ( ;; ) {
        if (s->nsub >= MM_CBCS_MAX_SUBSAMPLES) {
            return mm_cbcs_fail(job->t, MM_ETOOBIG,
                                "more than %u subsamples in a sample",
                                MM_CBCS_MAX_SUBSAMPLES);
        }

        if (mm_cbcs_grow((void **) &job->subs, &job->subs_cap, job->nsubs,
                         sizeof(mm_cbcs_sub_t)) != 0)
        {
            return mm_cbcs_fail(job->t, MM_ENOMEM, "out of memory");
        }

        s->nsub++;

        /* BytesOfClearData is 16 bits: a long clear run takes entries */
        if (clear > 0xffff) {
            job->subs[job->nsubs].clear = 0xffff;
            job->subs[job->nsubs].prot = 0;
            job->nsubs++;
            clear -= 0xffff;
            continue;
        }

        job->subs[job->nsubs].clear = (uint32_t) clear;
        job->subs[job->nsubs].prot = prot;
        job->nsubs++;

        return MM_OK;
    }
}


/* offsets */

static mm_cbcs_top_t *
mm_cbcs_top_at(mm_cbcs_job_t *job, uint64_t off)
{
    size_t          lo, hi, mid;
    mm_cbcs_top_t  *top;

    top = &job->tops[job->last_top];
    if (off >= top->old_off && off - top->old_off < top->box.size) {
        return top;
    }

    lo = 0;
    hi = job->ntops;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (job->tops[mid].old_off <= off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    if (lo == 0) {
        return NULL;
    }

    top = &job->tops[lo - 1];

    if (off - top->old_off >= top->box.size) {
        return NULL;
    }

    job->last_top = (size_t) (top - job->tops);

    return top;
}


/* new position of an old one; -1 if it has none */
static int
mm_cbcs_xlate(mm_cbcs_job_t *job, uint64_t off, uint64_t *res)
{
    mm_cbcs_top_t  *top;

    if (off == job->len) {
        top = &job->tops[job->ntops - 1];
        *res = top->new_off + top->new_size;
        return 0;
    }

    if (off > job->len) {
        return -1;
    }

    top = mm_cbcs_top_at(job, off);
    if (top == NULL) {
        return -1;
    }

    if (off != top->old_off && top->kind != MM_CBCS_TOP_COPY) {
        return -1;
    }

    *res = top->new_off + (off - top->old_off);

    return 0;
}


/* generic box rebuilding */

static void
mm_cbcs_copy(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    /* an explicit size instead of 0 ("to the end"): we may append after */
    if (mm_get_be32(box->start) == 0) {
        mm_mp4_put32(&job->built, (uint32_t) box->size);
        mm_buf_append(&job->built, box->start + 4, box->size - 4);
        return;
    }

    mm_buf_append(&job->built, box->start, box->size);
}


static mm_status_t
mm_cbcs_children(mm_cbcs_job_t *job, const mm_mp4_box_t *box,
    const mm_cbcs_handler_t *table)
{
    mm_status_t               st;
    mm_mp4_box_t              child;
    mm_mp4_cur_t              c;
    const mm_cbcs_handler_t  *h;

    mm_mp4_box_cur(box, &c);

    for ( ;; ) {
        st = mm_mp4_next_box(&c, &child);
        if (st == MM_ENOTFOUND) {
            return MM_OK;
        }

        if (st != MM_OK) {
            return mm_cbcs_fail(job->t, st, "bad box inside '%s'",
                                mm_mp4_fourcc_str(box->type,
                                                  (char [5]) { 0 }));
        }

        for (h = table; h->type != 0; h++) {
            if (h->type == child.type) {
                break;
            }
        }

        if (h->type != 0) {
            st = h->handler(job, &child);
            if (st != MM_OK) {
                return st;
            }

        } else {
            mm_cbcs_copy(job, &child);
        }
    }
}


static mm_status_t
mm_cbcs_container(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    size_t       off;
    mm_status_t  st;

    if (box->size > UINT32_MAX) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "container too big");
    }

    if (++job->depth > MM_CBCS_MAX_DEPTH) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "boxes nested too deep");
    }

    off = mm_mp4_box_open(&job->built, box->type);
    st = mm_cbcs_children(job, box, mm_cbcs_moov_handlers);
    mm_mp4_box_close(&job->built, off);

    job->depth--;

    return st;
}


/* init segment */

static mm_status_t
mm_cbcs_ftyp(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    size_t          off, i, plen;
    const uint8_t  *p;

    p = box->data;
    plen = box->size - box->header;

    if (plen < 8 || plen % 4 != 0 || box->size > UINT32_MAX) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'ftyp'");
    }

    off = mm_mp4_box_open(&job->built, T_FTYP);
    mm_buf_append(&job->built, p, plen);

    for (i = 8; i < plen; i += 4) {
        if (mm_get_be32(p + i) == T_ISO6) {
            break;
        }
    }

    /* Bento4 marks cbcs output with 'iso6' (pattern encryption, 'tenc' v1) */
    if (i >= plen) {
        mm_mp4_put32(&job->built, T_ISO6);
    }

    mm_mp4_box_close(&job->built, off);

    return MM_OK;
}


static mm_status_t
mm_cbcs_moov(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    size_t            off, pssh;
    mm_status_t       st;
    mm_cbcs_track_t  *t;

    t = job->t;

    if (t->ready) {
        return mm_cbcs_fail(t, MM_EBADDATA, "more than one 'moov'");
    }

    if (box->size > UINT32_MAX) {
        return mm_cbcs_fail(t, MM_EBADDATA, "'moov' too big");
    }

    off = mm_mp4_box_open(&job->built, T_MOOV);

    st = mm_cbcs_children(job, box, mm_cbcs_moov_handlers);
    if (st != MM_OK) {
        return st;
    }

    if (!t->have_entry || t->ntkhd != 1) {
        return mm_cbcs_fail(t, MM_EBADDATA,
                            "no H.264 or AAC track in 'moov'");
    }

    if (!t->have_trex || t->trex_track_id != t->info.track_id) {
        t->trex_sample_size = 0;
    }

    if (!job->decrypt) {
        pssh = mm_mp4_full_open(&job->built, T_PSSH, 1, 0);
        mm_buf_append(&job->built, mm_cbcs_common_system_id, 16);
        mm_mp4_put32(&job->built, 1);
        mm_buf_append(&job->built, t->info.kid, 16);
        mm_mp4_put32(&job->built, 0);           /* DataSize */
        mm_mp4_box_close(&job->built, pssh);
    }

    mm_mp4_box_close(&job->built, off);

    t->ready = 1;

    return MM_OK;
}


static mm_status_t
mm_cbcs_tkhd(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    uint8_t       version;
    uint32_t      id;
    mm_mp4_cur_t  c;

    mm_mp4_box_cur(box, &c);

    if (mm_mp4_full(&c, &version, NULL) != 0
        || mm_mp4_skip(&c, version == 1 ? 16 : 8) != 0
        || mm_mp4_get32(&c, &id) != 0)
    {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'tkhd'");
    }

    if (++job->t->ntkhd > 1) {
        return mm_cbcs_fail(job->t, MM_EBADDATA,
                            "more than one track (one track per file)");
    }

    job->t->info.track_id = id;
    mm_cbcs_copy(job, box);

    return MM_OK;
}


static mm_status_t
mm_cbcs_trex(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    uint32_t      id, size;
    mm_mp4_cur_t  c;

    mm_mp4_box_cur(box, &c);

    /* track_ID, description index, duration, size, flags */
    if (mm_mp4_full(&c, NULL, NULL) != 0
        || mm_mp4_get32(&c, &id) != 0
        || mm_mp4_skip(&c, 8) != 0
        || mm_mp4_get32(&c, &size) != 0)
    {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'trex'");
    }

    if (!job->t->have_trex || id == job->t->info.track_id) {
        job->t->have_trex = 1;
        job->t->trex_track_id = id;
        job->t->trex_sample_size = size;
    }

    mm_cbcs_copy(job, box);

    return MM_OK;
}


static mm_status_t
mm_cbcs_pssh(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    /* decrypted output carries no DRM system data */
    if (!job->decrypt) {
        mm_cbcs_copy(job, box);
    }

    return MM_OK;
}


/* bytes of a sample entry before its child boxes */
static size_t
mm_cbcs_entry_fixed(const mm_mp4_box_t *entry, int video)
{
    uint16_t  ver;

    if (video) {
        return 78;
    }

    if (entry->size - entry->header < 28) {
        return 28;
    }

    ver = mm_get_be16(entry->data + 8);

    return (ver == 1) ? 44 : (ver == 2) ? 64 : 28;
}


static mm_status_t
mm_cbcs_encrypt_entry(mm_cbcs_job_t *job, const mm_mp4_box_t *entry)
{
    size_t            fixed, plen, off, sinf, schi, box;
    char              name[5];
    mm_status_t       st;
    mm_mp4_box_t      avcc;
    mm_mp4_cur_t      c;
    mm_cbcs_track_t  *t;

    t = job->t;
    plen = entry->size - entry->header;

    switch (entry->type) {

    case T_AVC1:
    case T_AVC3:
        t->info.video = 1;
        break;

    case T_MP4A:
        t->info.video = 0;
        break;

    case T_ENCV:
    case T_ENCA:
        return mm_cbcs_fail(t, MM_EBADDATA, "already encrypted");

    default:
        return mm_cbcs_fail(t, MM_EBADDATA,
                            "sample entry '%s' is not H.264 or AAC",
                            mm_mp4_fourcc_str(entry->type, name));
    }

    fixed = mm_cbcs_entry_fixed(entry, t->info.video);

    if (plen < fixed || entry->size > UINT32_MAX - 128) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad sample entry");
    }

    t->info.format = entry->type;

    /* the children must be boxes: decryption will look for 'sinf' there */
    mm_mp4_cur_init(&c, entry->data + fixed, plen - fixed);

    while ((st = mm_mp4_next_box(&c, &avcc)) == MM_OK) {
        if (avcc.type == T_SINF) {
            return mm_cbcs_fail(t, MM_EBADDATA, "already encrypted");
        }
    }

    if (st != MM_ENOTFOUND) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad box in a sample entry");
    }

    if (t->info.video) {
        st = mm_mp4_find(entry->data + fixed, plen - fixed, T_AVCC, &avcc);
        if (st != MM_OK) {
            return mm_cbcs_fail(t, MM_EBADDATA, "no 'avcC' in '%s'",
                                mm_mp4_fourcc_str(entry->type, name));
        }

        if (t->ps == NULL) {
            t->ps = calloc(1, sizeof(mm_h264_ps_t));
            if (t->ps == NULL) {
                return mm_cbcs_fail(t, MM_ENOMEM, "out of memory");
            }
        }

        st = mm_h264_parse_avcc(t->ps, avcc.data, avcc.size - avcc.header,
                                &t->info.nal_length_size);
        if (st != MM_OK) {
            return mm_cbcs_fail(t, MM_EBADDATA, "bad 'avcC'");
        }

        t->info.crypt_byte_block = 1;
        t->info.skip_byte_block = 9;
    }

    off = mm_mp4_box_open(&job->built, t->info.video ? T_ENCV : T_ENCA);
    mm_buf_append(&job->built, entry->data, fixed);

    /* child by child: a size-0 child would swallow the 'sinf' we append */
    mm_mp4_cur_init(&c, entry->data + fixed, plen - fixed);

    while (mm_mp4_next_box(&c, &avcc) == MM_OK) {
        mm_cbcs_copy(job, &avcc);
    }

    sinf = mm_mp4_box_open(&job->built, T_SINF);

    box = mm_mp4_box_open(&job->built, T_FRMA);
    mm_mp4_put32(&job->built, entry->type);
    mm_mp4_box_close(&job->built, box);

    box = mm_mp4_full_open(&job->built, T_SCHM, 0, 0);
    mm_mp4_put32(&job->built, T_CBCS);
    mm_mp4_put32(&job->built, 0x00010000);
    mm_mp4_box_close(&job->built, box);

    schi = mm_mp4_box_open(&job->built, T_SCHI);
    box = mm_mp4_full_open(&job->built, T_TENC, 1, 0);
    mm_mp4_put8(&job->built, 0);
    mm_mp4_put8(&job->built, (uint8_t) ((t->info.crypt_byte_block << 4)
                                        | t->info.skip_byte_block));
    mm_mp4_put8(&job->built, 1);                /* default_isProtected */
    mm_mp4_put8(&job->built, 0);                /* Per_Sample_IV_Size */
    mm_buf_append(&job->built, t->info.kid, 16);
    mm_mp4_put8(&job->built, 16);
    mm_buf_append(&job->built, t->info.iv, 16);
    mm_mp4_box_close(&job->built, box);
    mm_mp4_box_close(&job->built, schi);

    mm_mp4_box_close(&job->built, sinf);
    mm_mp4_box_close(&job->built, off);

    t->info.per_sample_iv_size = 0;
    t->have_entry = 1;

    return MM_OK;
}


static mm_status_t
mm_cbcs_tenc(mm_cbcs_track_t *t, const mm_mp4_box_t *box)
{
    uint8_t         version, pattern, prot, ivs;
    const uint8_t  *kid, *iv;
    mm_mp4_cur_t    c;

    mm_mp4_box_cur(box, &c);

    if (mm_mp4_full(&c, &version, NULL) != 0
        || mm_mp4_skip(&c, 1) != 0
        || mm_mp4_get8(&c, &pattern) != 0
        || mm_mp4_get8(&c, &prot) != 0
        || mm_mp4_get8(&c, &ivs) != 0
        || mm_mp4_bytes(&c, 16, &kid) != 0)
    {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad 'tenc'");
    }

    if (version == 0) {
        pattern = 0;
    }

    t->info.crypt_byte_block = pattern >> 4;
    t->info.skip_byte_block = pattern & 0x0f;

    if (t->info.crypt_byte_block == 0 && t->info.skip_byte_block != 0) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad pattern in 'tenc'");
    }

    if (prot != 1) {
        return mm_cbcs_fail(t, MM_EBADDATA, "track is not protected");
    }

    if (ivs != 0 && ivs != 8 && ivs != 16) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad IV size in 'tenc'");
    }

    t->info.per_sample_iv_size = ivs;
    memcpy(t->info.kid, kid, 16);
    memset(t->info.iv, 0, 16);

    if (ivs == 0) {
        if (mm_mp4_get8(&c, &ivs) != 0 || (ivs != 8 && ivs != 16)
            || mm_mp4_bytes(&c, ivs, &iv) != 0)
        {
            return mm_cbcs_fail(t, MM_EBADDATA, "bad constant IV in 'tenc'");
        }

        /* an 8-byte IV is the first half of the block, zero-padded */
        memcpy(t->info.iv, iv, ivs);
        t->info.constant_iv_size = ivs;
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_decrypt_entry(mm_cbcs_job_t *job, const mm_mp4_box_t *entry)
{
    int               have_frma, have_tenc;
    size_t            fixed, plen, off;
    uint32_t          format, scheme;
    char              name[5];
    mm_status_t       st;
    mm_mp4_box_t      child, sbox, tenc;
    mm_mp4_cur_t      c, sc, bc;
    mm_cbcs_track_t  *t;

    t = job->t;
    plen = entry->size - entry->header;

    if (entry->type != T_ENCV && entry->type != T_ENCA) {
        return mm_cbcs_fail(t, MM_EBADDATA, "sample entry '%s' is not "
                            "encrypted", mm_mp4_fourcc_str(entry->type, name));
    }

    t->info.video = (entry->type == T_ENCV);
    fixed = mm_cbcs_entry_fixed(entry, t->info.video);

    if (plen < fixed || entry->size > UINT32_MAX) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad sample entry");
    }

    have_frma = 0;
    have_tenc = 0;
    format = 0;

    /* first pass: the 'sinf' */
    mm_mp4_cur_init(&c, entry->data + fixed, plen - fixed);

    while ((st = mm_mp4_next_box(&c, &child)) == MM_OK) {
        if (child.type != T_SINF) {
            continue;
        }

        mm_mp4_box_cur(&child, &sc);

        while ((st = mm_mp4_next_box(&sc, &sbox)) == MM_OK) {
            mm_mp4_box_cur(&sbox, &bc);

            if (sbox.type == T_FRMA) {
                if (mm_mp4_get32(&bc, &format) != 0) {
                    return mm_cbcs_fail(t, MM_EBADDATA, "bad 'frma'");
                }
                have_frma = 1;

            } else if (sbox.type == T_SCHM) {
                if (mm_mp4_full(&bc, NULL, NULL) != 0
                    || mm_mp4_get32(&bc, &scheme) != 0)
                {
                    return mm_cbcs_fail(t, MM_EBADDATA, "bad 'schm'");
                }

                if (scheme != T_CBCS) {
                    return mm_cbcs_fail(t, MM_EBADDATA,
                                        "scheme '%s' is not 'cbcs'",
                                        mm_mp4_fourcc_str(scheme, name));
                }

            } else if (sbox.type == T_SCHI) {
                st = mm_mp4_find(sbox.data, sbox.size - sbox.header, T_TENC,
                                 &tenc);
                if (st != MM_OK) {
                    return mm_cbcs_fail(t, MM_EBADDATA, "no 'tenc'");
                }

                st = mm_cbcs_tenc(t, &tenc);
                if (st != MM_OK) {
                    return st;
                }

                have_tenc = 1;
            }
        }

        if (st != MM_ENOTFOUND) {
            return mm_cbcs_fail(t, MM_EBADDATA, "bad box in 'sinf'");
        }
    }

    if (st != MM_ENOTFOUND) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad box in a sample entry");
    }

    if (!have_frma || !have_tenc) {
        return mm_cbcs_fail(t, MM_EBADDATA, "no 'frma' or 'tenc'");
    }

    t->info.format = format;

    /* second pass: the entry under its own name, without 'sinf' */
    off = mm_mp4_box_open(&job->built, format);
    mm_buf_append(&job->built, entry->data, fixed);

    mm_mp4_cur_init(&c, entry->data + fixed, plen - fixed);

    while (mm_mp4_next_box(&c, &child) == MM_OK) {
        if (child.type != T_SINF) {
            mm_cbcs_copy(job, &child);
        }
    }

    mm_mp4_box_close(&job->built, off);

    t->have_entry = 1;

    return MM_OK;
}


static mm_status_t
mm_cbcs_stsd(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    size_t        off;
    uint32_t      n;
    mm_status_t   st;
    mm_mp4_box_t  entry;
    mm_mp4_cur_t  c;

    mm_mp4_box_cur(box, &c);

    if (mm_mp4_skip(&c, 4) != 0 || mm_mp4_get32(&c, &n) != 0) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'stsd'");
    }

    if (n != 1 || job->t->have_entry) {
        return mm_cbcs_fail(job->t, MM_EBADDATA,
                            "one sample entry expected, found %u", n);
    }

    st = mm_mp4_next_box(&c, &entry);
    if (st != MM_OK || mm_mp4_left(&c) != 0) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'stsd' entry");
    }

    off = mm_mp4_box_open(&job->built, T_STSD);
    mm_buf_append(&job->built, box->data, 8);

    st = job->decrypt ? mm_cbcs_decrypt_entry(job, &entry)
                      : mm_cbcs_encrypt_entry(job, &entry);
    if (st != MM_OK) {
        return st;
    }

    mm_mp4_box_close(&job->built, off);

    return MM_OK;
}


/* media segments */

/* subsample map of one AVC sample (length-prefixed NAL units) */
static mm_status_t
mm_cbcs_avc_map(mm_cbcs_job_t *job, mm_cbcs_sample_t *s)
{
    size_t            pos, size, nal_len, hdr;
    unsigned          i, nls, type;
    uint64_t          clear;
    mm_status_t       st;
    const uint8_t    *p, *nal;
    mm_cbcs_track_t  *t;

    t = job->t;
    p = job->in + s->off;
    size = s->size;
    nls = t->info.nal_length_size;
    clear = 0;
    pos = 0;

    s->has_subs = 1;
    s->sub = (uint32_t) job->nsubs;
    s->nsub = 0;

    while (pos < size) {
        if (size - pos < nls) {
            return mm_cbcs_fail(t, MM_EBADDATA, "NAL length cut short");
        }

        nal_len = 0;
        for (i = 0; i < nls; i++) {
            nal_len = (nal_len << 8) | p[pos + i];
        }

        pos += nls;

        if (nal_len > size - pos) {
            return mm_cbcs_fail(t, MM_EBADDATA,
                                "NAL unit runs past its sample");
        }

        nal = p + pos;
        type = nal_len ? (nal[0] & 0x1f) : 0;

        if (type == MM_H264_NAL_SLICE || type == MM_H264_NAL_IDR) {
            st = mm_h264_slice_header_size(t->ps, nal, nal_len, &hdr);
            if (st != MM_OK) {
                return mm_cbcs_fail(t, MM_EBADDATA, "cannot parse a slice "
                                    "header (%s)", st == MM_ENOTFOUND
                                    ? "unknown SPS/PPS" : "malformed");
            }

            if (nal_len - hdr >= 16) {
                st = mm_cbcs_add_sub(job, s, clear + nls + hdr,
                                     (uint32_t) (nal_len - hdr));
                if (st != MM_OK) {
                    return st;
                }

                clear = 0;
                pos += nal_len;
                continue;
            }

        } else if (type == MM_H264_NAL_SPS || type == MM_H264_NAL_PPS) {
            /* in-band parameter sets ('avc3') apply to what follows */
            st = (type == MM_H264_NAL_SPS)
                 ? mm_h264_parse_sps(t->ps, nal, nal_len)
                 : mm_h264_parse_pps(t->ps, nal, nal_len);
            if (st != MM_OK) {
                return mm_cbcs_fail(t, MM_EBADDATA,
                                    "bad in-band SPS/PPS");
            }
        }

        clear += nls + nal_len;
        pos += nal_len;
    }

    if (clear > 0) {
        return mm_cbcs_add_sub(job, s, clear, 0);
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_trun(mm_cbcs_job_t *job, const mm_mp4_box_t *box,
    uint32_t default_size, uint64_t *next)
{
    size_t             fsize, first;
    uint32_t           flags, count, i, size, v;
    int64_t            pos;
    mm_mp4_cur_t       c;
    mm_cbcs_top_t     *top;
    mm_cbcs_sample_t  *s;
    mm_cbcs_track_t   *t;

    t = job->t;
    mm_mp4_box_cur(box, &c);

    if (mm_mp4_full(&c, NULL, &flags) != 0 || mm_mp4_get32(&c, &count) != 0)
    {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad 'trun'");
    }

    if (flags & TRUN_DATA_OFFSET) {
        if (mm_mp4_get32(&c, &v) != 0) {
            return mm_cbcs_fail(t, MM_EBADDATA, "bad 'trun'");
        }

        pos = (int64_t) job->moof_old + (int32_t) v;

    } else {
        pos = (int64_t) *next;
    }

    if ((flags & TRUN_FIRST_FLAGS) && mm_mp4_skip(&c, 4) != 0) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad 'trun'");
    }

    fsize = 4 * (((flags & TRUN_DURATION) != 0) + ((flags & TRUN_SIZE) != 0)
                 + ((flags & TRUN_FLAGS) != 0) + ((flags & TRUN_CTS) != 0));

    first = job->nsamples;

    if (count > MM_CBCS_MAX_SAMPLES - first
        || (fsize && count > mm_mp4_left(&c) / fsize))
    {
        return mm_cbcs_fail(t, MM_EBADDATA, "'trun' sample count %u does "
                            "not fit", count);
    }

    for (i = 0; i < count; i++) {
        size = default_size;

        if (flags & TRUN_DURATION) {
            (void) mm_mp4_skip(&c, 4);
        }

        if (flags & TRUN_SIZE) {
            (void) mm_mp4_get32(&c, &size);
        }

        if (flags & TRUN_FLAGS) {
            (void) mm_mp4_skip(&c, 4);
        }

        if (flags & TRUN_CTS) {
            (void) mm_mp4_skip(&c, 4);
        }

        if (pos < 0 || (uint64_t) pos > job->len
            || size > job->len - (uint64_t) pos)
        {
            return mm_cbcs_fail(t, MM_EBADDATA,
                                "sample data outside the input");
        }

        if (size > 0) {
            top = mm_cbcs_top_at(job, (uint64_t) pos);

            /* in the payload: the box header must stay as it is */
            if (top == NULL || top->kind != MM_CBCS_TOP_COPY
                || (uint64_t) pos < top->old_off + top->box.header
                || size > top->old_off + top->box.size - (uint64_t) pos)
            {
                return mm_cbcs_fail(t, MM_EBADDATA,
                                    "sample data not inside an 'mdat'");
            }
        }

        if (mm_cbcs_grow((void **) &job->samples, &job->samples_cap,
                         job->nsamples, sizeof(mm_cbcs_sample_t)) != 0)
        {
            return mm_cbcs_fail(t, MM_ENOMEM, "out of memory");
        }

        s = &job->samples[job->nsamples++];
        memset(s, 0, sizeof(mm_cbcs_sample_t));
        s->off = (uint64_t) pos;
        s->size = size;

        pos += size;
    }

    *next = (uint64_t) pos;

    return MM_OK;
}


static mm_status_t
mm_cbcs_senc(mm_cbcs_job_t *job, const mm_mp4_box_t *box, size_t first)
{
    uint8_t            ivs;
    uint16_t           nsub, clear;
    uint32_t           flags, count, i, j, prot;
    uint64_t           sum;
    mm_mp4_cur_t       c;
    mm_cbcs_sample_t  *s;
    mm_cbcs_track_t   *t;

    t = job->t;
    ivs = t->info.per_sample_iv_size;
    mm_mp4_box_cur(box, &c);

    if (mm_mp4_full(&c, NULL, &flags) != 0 || mm_mp4_get32(&c, &count) != 0)
    {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad 'senc'");
    }

    if (count != job->nsamples - first) {
        return mm_cbcs_fail(t, MM_EBADDATA, "'senc' has %u samples, 'trun' "
                            "%zu", count, job->nsamples - first);
    }

    for (i = 0; i < count; i++) {
        s = &job->samples[first + i];

        if (ivs && mm_mp4_bytes(&c, ivs, &s->iv) != 0) {
            return mm_cbcs_fail(t, MM_EBADDATA, "'senc' cut short");
        }

        if (!(flags & SENC_SUBSAMPLES)) {
            continue;
        }

        if (mm_mp4_get16(&c, &nsub) != 0) {
            return mm_cbcs_fail(t, MM_EBADDATA, "'senc' cut short");
        }

        s->has_subs = 1;
        s->sub = (uint32_t) job->nsubs;
        sum = 0;

        if (nsub > mm_mp4_left(&c) / 6) {
            return mm_cbcs_fail(t, MM_EBADDATA, "'senc' cut short");
        }

        for (j = 0; j < nsub; j++) {
            (void) mm_mp4_get16(&c, &clear);
            (void) mm_mp4_get32(&c, &prot);

            sum += (uint64_t) clear + prot;

            if (mm_cbcs_grow((void **) &job->subs, &job->subs_cap,
                             job->nsubs, sizeof(mm_cbcs_sub_t)) != 0)
            {
                return mm_cbcs_fail(t, MM_ENOMEM, "out of memory");
            }

            job->subs[job->nsubs].clear = clear;
            job->subs[job->nsubs].prot = prot;
            job->nsubs++;
            s->nsub++;
        }

        if (sum != s->size) {
            return mm_cbcs_fail(t, MM_EBADDATA, "subsamples of sample %u "
                                "add up to %llu, not %u", i,
                                (unsigned long long) sum, s->size);
        }
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_traf(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    int                have_tfhd, have_trun;
    size_t             first, off, saiz, saio, saio_at, senc, entries, i, j;
    uint32_t           flags, id, desc, default_size, v, type;
    uint64_t           next;
    mm_status_t        st;
    int                have_senc;
    mm_mp4_box_t       child, senc_box;
    mm_mp4_cur_t       c, bc;
    mm_cbcs_sample_t  *s;
    mm_cbcs_patch_t   *patch;
    mm_cbcs_track_t   *t;

    t = job->t;

    if (++job->ntraf > 1) {
        return mm_cbcs_fail(t, MM_EBADDATA, "more than one 'traf' in 'moof'");
    }

    if (box->size > UINT32_MAX) {
        return mm_cbcs_fail(t, MM_EBADDATA, "'traf' too big");
    }

    /* pass 1: tfhd, the runs, and (decrypting) senc */
    have_tfhd = 0;
    have_trun = 0;
    default_size = t->trex_sample_size;
    first = job->nsamples;
    next = job->moof_old;
    have_senc = 0;

    mm_mp4_box_cur(box, &c);

    while ((st = mm_mp4_next_box(&c, &child)) == MM_OK) {
        mm_mp4_box_cur(&child, &bc);

        switch (child.type) {

        case T_TFHD:
            if (have_tfhd || mm_mp4_full(&bc, NULL, &flags) != 0
                || mm_mp4_get32(&bc, &id) != 0)
            {
                return mm_cbcs_fail(t, MM_EBADDATA, "bad 'tfhd'");
            }

            have_tfhd = 1;

            if (id != t->info.track_id) {
                return mm_cbcs_fail(t, MM_EBADDATA, "'tfhd' track %u is not "
                                    "track %u of 'moov'", id,
                                    t->info.track_id);
            }

            if (flags & TFHD_BASE_DATA_OFFSET) {
                return mm_cbcs_fail(t, MM_EBADDATA, "'tfhd' base_data_offset"
                                    " not supported (want default-base-is-"
                                    "moof)");
            }

            if (flags & TFHD_DESC_INDEX) {
                if (mm_mp4_get32(&bc, &desc) != 0 || desc != 1) {
                    return mm_cbcs_fail(t, MM_EBADDATA,
                                        "bad sample description index");
                }
            }

            if ((flags & TFHD_DEFAULT_DURATION) && mm_mp4_skip(&bc, 4) != 0) {
                return mm_cbcs_fail(t, MM_EBADDATA, "bad 'tfhd'");
            }

            if ((flags & TFHD_DEFAULT_SIZE)
                && mm_mp4_get32(&bc, &default_size) != 0)
            {
                return mm_cbcs_fail(t, MM_EBADDATA, "bad 'tfhd'");
            }

            break;

        case T_TRUN:
            if (!have_tfhd) {
                return mm_cbcs_fail(t, MM_EBADDATA, "'trun' before 'tfhd'");
            }

            st = mm_cbcs_trun(job, &child, default_size, &next);
            if (st != MM_OK) {
                return st;
            }

            have_trun = 1;
            break;

        case T_SENC:
        case T_SAIZ:
        case T_SAIO:
            if (!job->decrypt) {
                return mm_cbcs_fail(t, MM_EBADDATA, "already encrypted");
            }

            if (child.type == T_SENC) {
                if (have_senc) {
                    return mm_cbcs_fail(t, MM_EBADDATA, "two 'senc'");
                }
                have_senc = 1;
                senc_box = child;
            }

            break;

        case T_SBGP:
            if (mm_mp4_full(&bc, NULL, NULL) == 0
                && mm_mp4_get32(&bc, &type) == 0 && type == T_SEIG)
            {
                return mm_cbcs_fail(t, MM_EBADDATA, "'seig' sample groups "
                                    "(key rotation) not supported");
            }

            break;

        default:
            break;
        }
    }

    if (st != MM_ENOTFOUND || !have_tfhd) {
        return mm_cbcs_fail(t, MM_EBADDATA, "bad 'traf'");
    }

    if (job->decrypt) {
        if (have_senc) {
            st = mm_cbcs_senc(job, &senc_box, first);
            if (st != MM_OK) {
                return st;
            }

        } else if (t->info.per_sample_iv_size != 0 && have_trun) {
            return mm_cbcs_fail(t, MM_EBADDATA, "no 'senc' for per-sample "
                                "IVs");
        }

    } else if (t->info.video) {
        for (i = first; i < job->nsamples; i++) {
            st = mm_cbcs_avc_map(job, &job->samples[i]);
            if (st != MM_OK) {
                return st;
            }
        }
    }

    /* pass 2: write */
    off = mm_mp4_box_open(&job->built, T_TRAF);

    mm_mp4_box_cur(box, &c);

    while (mm_mp4_next_box(&c, &child) == MM_OK) {
        if (child.type == T_SENC || child.type == T_SAIZ
            || child.type == T_SAIO)
        {
            continue;
        }

        if (child.type == T_TRUN
            && (mm_get_be32(child.data) & TRUN_DATA_OFFSET))
        {
            if (mm_cbcs_grow((void **) &job->patches, &job->patches_cap,
                             job->npatches, sizeof(mm_cbcs_patch_t)) != 0)
            {
                return mm_cbcs_fail(t, MM_ENOMEM, "out of memory");
            }

            v = mm_get_be32(child.data + 8);
            patch = &job->patches[job->npatches++];
            patch->top = job->cur_top;
            patch->at = job->built.len + child.header + 8;
            patch->old_abs = job->moof_old + (int64_t) (int32_t) v;
        }

        mm_cbcs_copy(job, &child);
    }

    if (!job->decrypt) {
        /* Bento4's order: saiz, saio, senc at the end of the traf */
        saiz = mm_mp4_full_open(&job->built, T_SAIZ, 0, 0);
        mm_mp4_put8(&job->built, 0);

        if (t->info.video) {
            mm_mp4_put32(&job->built, (uint32_t) (job->nsamples - first));

            for (i = first; i < job->nsamples; i++) {
                mm_mp4_put8(&job->built,
                            (uint8_t) (2 + 6 * job->samples[i].nsub));
            }

        } else {
            /* constant IV, no subsamples: every entry is empty */
            mm_mp4_put32(&job->built, 0);
        }

        mm_mp4_box_close(&job->built, saiz);

        saio = mm_mp4_full_open(&job->built, T_SAIO, 0, 0);
        mm_mp4_put32(&job->built, 1);
        saio_at = job->built.len;
        mm_mp4_put32(&job->built, 0);
        mm_mp4_box_close(&job->built, saio);

        senc = mm_mp4_full_open(&job->built, T_SENC, 0,
                                t->info.video ? SENC_SUBSAMPLES : 0);
        mm_mp4_put32(&job->built, (uint32_t) (job->nsamples - first));
        entries = job->built.len;

        if (t->info.video) {
            for (i = first; i < job->nsamples; i++) {
                s = &job->samples[i];
                mm_mp4_put16(&job->built, (uint16_t) s->nsub);

                for (j = s->sub; j < s->sub + s->nsub; j++) {
                    mm_mp4_put16(&job->built, (uint16_t) job->subs[j].clear);
                    mm_mp4_put32(&job->built, job->subs[j].prot);
                }
            }
        }

        mm_mp4_box_close(&job->built, senc);

        /* saio is relative to the moof (default-base-is-moof) */
        if (!job->built.failed) {
            mm_put_be32((uint8_t *) job->built.data + saio_at,
                        (uint32_t) (entries - job->moof_built));
        }
    }

    mm_mp4_box_close(&job->built, off);

    return MM_OK;
}


static mm_status_t
mm_cbcs_moof(mm_cbcs_job_t *job, const mm_mp4_box_t *box)
{
    size_t       off;
    mm_status_t  st;

    if (!job->t->ready) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "'moof' before 'moov'");
    }

    if (box->size > UINT32_MAX) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "'moof' too big");
    }

    job->ntraf = 0;
    job->moof_old = (uint64_t) (box->start - job->in);
    job->moof_built = job->built.len;

    off = mm_mp4_box_open(&job->built, T_MOOF);
    st = mm_cbcs_children(job, box, mm_cbcs_moof_handlers);
    mm_mp4_box_close(&job->built, off);

    return st;
}


/* patches of copied boxes */

static mm_status_t
mm_cbcs_patch_sidx(mm_cbcs_job_t *job, mm_cbcs_top_t *top, uint8_t *out)
{
    uint8_t          version;
    uint16_t         count, i;
    uint32_t         ref, size;
    uint64_t         first, anchor, start, end, nstart, nend, nanchor;
    size_t           at;
    mm_mp4_cur_t     c;
    const uint8_t   *p;

    mm_mp4_box_cur(&top->box, &c);

    if (mm_mp4_full(&c, &version, NULL) != 0 || mm_mp4_skip(&c, 8) != 0) {
        goto bad;
    }

    if (version == 0) {
        uint32_t  v32;

        if (mm_mp4_skip(&c, 4) != 0) {
            goto bad;
        }

        at = (size_t) (c.pos - top->box.start);
        if (mm_mp4_get32(&c, &v32) != 0) {
            goto bad;
        }
        first = v32;

    } else {
        if (mm_mp4_skip(&c, 8) != 0) {
            goto bad;
        }

        at = (size_t) (c.pos - top->box.start);
        if (mm_mp4_get64(&c, &first) != 0) {
            goto bad;
        }
    }

    if (mm_mp4_skip(&c, 2) != 0 || mm_mp4_get16(&c, &count) != 0
        || count > mm_mp4_left(&c) / 12)
    {
        goto bad;
    }

    anchor = top->old_off + top->box.size;
    nanchor = top->new_off + top->new_size;

    if (first > job->len - anchor) {
        goto outside;
    }

    start = anchor + first;

    if (mm_cbcs_xlate(job, start, &nstart) != 0 || nstart < nanchor) {
        goto outside;
    }

    if (version == 0) {
        if (nstart - nanchor > UINT32_MAX) {
            goto outside;
        }
        mm_put_be32(out + at, (uint32_t) (nstart - nanchor));

    } else {
        mm_put_be64(out + at, nstart - nanchor);
    }

    for (i = 0; i < count; i++) {
        p = c.pos + 12 * i;
        ref = mm_get_be32(p);
        size = ref & 0x7fffffff;

        if (size > job->len - start) {
            goto outside;
        }

        end = start + size;

        if (mm_cbcs_xlate(job, end, &nend) != 0 || nend < nstart
            || nend - nstart > 0x7fffffff)
        {
            goto outside;
        }

        mm_put_be32(out + (p - top->box.start),
                    (ref & 0x80000000) | (uint32_t) (nend - nstart));

        start = end;
        nstart = nend;
    }

    return MM_OK;

bad:
    return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'sidx'");

outside:
    return mm_cbcs_fail(job->t, MM_EBADDATA, "'sidx' refers to data outside "
                        "the input or inside a rewritten box");
}


static mm_status_t
mm_cbcs_patch_mfra(mm_cbcs_job_t *job, mm_cbcs_top_t *top, uint8_t *out)
{
    uint8_t          version;
    uint32_t         lengths, n, i, v32, entry;
    uint64_t         off, noff;
    size_t           at;
    mm_status_t      st;
    mm_mp4_box_t     tfra;
    mm_mp4_cur_t     c, tc;

    mm_mp4_box_cur(&top->box, &c);

    while ((st = mm_mp4_next_box(&c, &tfra)) == MM_OK) {
        if (tfra.type != T_TFRA) {
            continue;
        }

        mm_mp4_box_cur(&tfra, &tc);

        if (mm_mp4_full(&tc, &version, NULL) != 0 || mm_mp4_skip(&tc, 4) != 0
            || mm_mp4_get32(&tc, &lengths) != 0 || mm_mp4_get32(&tc, &n) != 0)
        {
            goto bad;
        }

        /* time, moof_offset, then traf, trun and sample numbers */
        entry = (version == 1 ? 16 : 8) + ((lengths >> 4) & 3)
                + ((lengths >> 2) & 3) + (lengths & 3) + 3;

        if (n > mm_mp4_left(&tc) / entry) {
            goto bad;
        }

        for (i = 0; i < n; i++) {
            at = (size_t) (tc.pos - top->box.start) + (version == 1 ? 8 : 4);

            if (version == 1) {
                off = mm_get_be64(tc.pos + 8);

            } else {
                v32 = mm_get_be32(tc.pos + 4);
                off = v32;
            }

            if (mm_cbcs_xlate(job, off, &noff) != 0) {
                return mm_cbcs_fail(job->t, MM_EBADDATA, "'tfra' offset "
                                    "%llu is not a box in the input",
                                    (unsigned long long) off);
            }

            if (version == 1) {
                mm_put_be64(out + at, noff);

            } else if (noff > UINT32_MAX) {
                goto bad;

            } else {
                mm_put_be32(out + at, (uint32_t) noff);
            }

            tc.pos += entry;
        }
    }

    if (st == MM_ENOTFOUND) {
        return MM_OK;
    }

bad:
    return mm_cbcs_fail(job->t, MM_EBADDATA, "bad 'mfra'");
}


/* the cipher */

static mm_status_t
mm_cbcs_crypt(mm_cbcs_track_t *t, uint8_t *p, size_t len,
    const uint8_t *iv)
{
    int       outl;
    size_t    blocks, i, n, k, crypt, skip;

    blocks = len / 16;

    if (blocks == 0) {
        return MM_OK;
    }

    crypt = t->info.crypt_byte_block;
    skip = t->info.skip_byte_block;

    if (crypt == 0) {
        /* no pattern: every whole block */
        crypt = blocks;
        skip = 0;
    }

    /* the chain starts again from the IV for every subsample */
    if (!EVP_CipherInit_ex(t->evp, NULL, NULL, NULL, iv, -1)) {
        return mm_cbcs_fail(t, MM_ENOMEM, "EVP_CipherInit_ex failed");
    }

    EVP_CIPHER_CTX_set_padding(t->evp, 0);

    for (i = 0; i < blocks; i += skip) {
        n = blocks - i < crypt ? blocks - i : crypt;

        /* EVP takes an int length; the chain carries over between calls */
        while (n > 0) {
            k = n < MM_CBCS_EVP_BLOCKS ? n : MM_CBCS_EVP_BLOCKS;

            if (!EVP_CipherUpdate(t->evp, p + 16 * i, &outl, p + 16 * i,
                                  (int) (16 * k))
                || (size_t) outl != 16 * k)
            {
                return mm_cbcs_fail(t, MM_ENOMEM, "EVP_CipherUpdate failed");
            }

            i += k;
            n -= k;
        }
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_crypt_samples(mm_cbcs_job_t *job, uint8_t *out)
{
    size_t             i, j;
    uint8_t            iv[16];
    uint64_t           pos;
    mm_status_t        st;
    uint8_t           *p;
    mm_cbcs_sample_t  *s;
    mm_cbcs_sub_t     *sub;
    mm_cbcs_track_t   *t;

    t = job->t;

    for (i = 0; i < job->nsamples; i++) {
        s = &job->samples[i];

        if (s->size == 0) {
            continue;
        }

        if (mm_cbcs_xlate(job, s->off, &pos) != 0) {
            return mm_cbcs_fail(t, MM_EBADDATA, "sample moved");
        }

        p = out + pos;

        if (s->iv != NULL) {
            memset(iv, 0, 16);
            memcpy(iv, s->iv, t->info.per_sample_iv_size);

        } else {
            memcpy(iv, t->info.iv, 16);
        }

        if (!s->has_subs) {
            st = mm_cbcs_crypt(t, p, s->size, iv);
            if (st != MM_OK) {
                return st;
            }
            continue;
        }

        for (j = s->sub; j < s->sub + s->nsub; j++) {
            sub = &job->subs[j];
            p += sub->clear;

            st = mm_cbcs_crypt(t, p, sub->prot, iv);
            if (st != MM_OK) {
                return st;
            }

            p += sub->prot;
        }
    }

    return MM_OK;
}


/* a run */

static mm_status_t
mm_cbcs_scan(mm_cbcs_job_t *job, int init)
{
    int             have_moov;
    mm_status_t     st;
    mm_mp4_box_t    box;
    mm_mp4_cur_t    c;
    mm_cbcs_top_t  *top;

    have_moov = 0;
    mm_mp4_cur_init(&c, job->in, job->len);

    for ( ;; ) {
        st = mm_mp4_next_box(&c, &box);
        if (st == MM_ENOTFOUND) {
            break;
        }

        if (st != MM_OK) {
            return mm_cbcs_fail(job->t, MM_EBADDATA, "bad top-level box at "
                                "offset %zu (truncated?)",
                                (size_t) (c.pos - job->in));
        }

        if (mm_cbcs_grow((void **) &job->tops, &job->tops_cap, job->ntops,
                         sizeof(mm_cbcs_top_t)) != 0)
        {
            return mm_cbcs_fail(job->t, MM_ENOMEM, "out of memory");
        }

        top = &job->tops[job->ntops++];
        memset(top, 0, sizeof(mm_cbcs_top_t));
        top->box = box;
        top->old_off = (size_t) (box.start - job->in);

        switch (box.type) {

        case T_MOOV:
            have_moov = 1;
            top->kind = MM_CBCS_TOP_BUILT;
            break;

        case T_FTYP:
            top->kind = job->decrypt ? MM_CBCS_TOP_COPY : MM_CBCS_TOP_BUILT;
            break;

        case T_MOOF:
            top->kind = MM_CBCS_TOP_BUILT;
            break;

        case T_SIDX:
            top->kind = MM_CBCS_TOP_SIDX;
            break;

        case T_MFRA:
            top->kind = MM_CBCS_TOP_MFRA;
            break;

        default:
            top->kind = MM_CBCS_TOP_COPY;
            break;
        }
    }

    if (job->ntops == 0) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "empty input");
    }

    if (init && !have_moov) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "no 'moov' in the init "
                            "segment");
    }

    if (!init && have_moov) {
        return mm_cbcs_fail(job->t, MM_EBADDATA, "'moov' in a media segment");
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_plan(mm_cbcs_job_t *job)
{
    size_t          i, pos;
    mm_status_t     st;
    mm_cbcs_top_t  *top;

    pos = 0;

    for (i = 0; i < job->ntops; i++) {
        top = &job->tops[i];
        job->cur_top = i;
        top->new_off = pos;
        top->new_size = top->box.size;

        if (top->kind == MM_CBCS_TOP_BUILT) {
            top->built_off = job->built.len;

            switch (top->box.type) {
            case T_FTYP:
                st = mm_cbcs_ftyp(job, &top->box);
                break;
            case T_MOOV:
                st = mm_cbcs_moov(job, &top->box);
                break;
            default:
                st = mm_cbcs_moof(job, &top->box);
                break;
            }

            if (st != MM_OK) {
                return st;
            }

            if (job->built.failed) {
                return mm_cbcs_fail(job->t, MM_ENOMEM, "out of memory");
            }

            top->new_size = job->built.len - top->built_off;
        }

        pos += top->new_size;
    }

    return MM_OK;
}


static mm_status_t
mm_cbcs_write(mm_cbcs_job_t *job, mm_buf_t *out, size_t base)
{
    size_t            i;
    int64_t           v;
    uint64_t          npos;
    mm_status_t       st;
    uint8_t          *o;
    mm_cbcs_top_t    *top;
    mm_cbcs_patch_t  *patch;

    for (i = 0; i < job->ntops; i++) {
        top = &job->tops[i];

        if (top->kind == MM_CBCS_TOP_BUILT) {
            mm_buf_append(out, job->built.data + top->built_off,
                          top->new_size);

        } else {
            mm_buf_append(out, top->box.start, top->box.size);
        }
    }

    if (out->failed) {
        return mm_cbcs_fail(job->t, MM_ENOMEM, "out of memory");
    }

    o = (uint8_t *) out->data + base;

    for (i = 0; i < job->ntops; i++) {
        top = &job->tops[i];

        if (top->kind == MM_CBCS_TOP_SIDX) {
            st = mm_cbcs_patch_sidx(job, top, o + top->new_off);

        } else if (top->kind == MM_CBCS_TOP_MFRA) {
            st = mm_cbcs_patch_mfra(job, top, o + top->new_off);

        } else {
            continue;
        }

        if (st != MM_OK) {
            return st;
        }
    }

    for (i = 0; i < job->npatches; i++) {
        patch = &job->patches[i];
        top = &job->tops[patch->top];

        if (mm_cbcs_xlate(job, patch->old_abs, &npos) != 0) {
            return mm_cbcs_fail(job->t, MM_EBADDATA, "'trun' data offset "
                                "points into a rewritten box");
        }

        v = (int64_t) npos - (int64_t) top->new_off;

        if (v < INT32_MIN || v > INT32_MAX) {
            return mm_cbcs_fail(job->t, MM_EBADDATA, "'trun' data offset "
                                "overflows");
        }

        mm_put_be32(o + top->new_off + (patch->at - top->built_off),
                    (uint32_t) (int32_t) v);
    }

    return mm_cbcs_crypt_samples(job, o);
}


static mm_status_t
mm_cbcs_run(mm_cbcs_track_t *t, const uint8_t *in, size_t len,
    mm_buf_t *out, int init)
{
    size_t          base;
    mm_status_t     st;
    mm_cbcs_job_t   job;

    memset(&job, 0, sizeof(job));
    job.t = t;
    job.in = in;
    job.len = len;
    job.decrypt = t->decrypt;
    mm_buf_init(&job.built);

    base = out->len;

    if (out->failed) {
        return mm_cbcs_fail(t, MM_ENOMEM, "output buffer failed before");
    }

    st = mm_cbcs_scan(&job, init);

    if (st == MM_OK) {
        st = mm_cbcs_plan(&job);
    }

    if (st == MM_OK) {
        st = mm_cbcs_write(&job, out, base);
    }

    if (st != MM_OK) {
        if (init) {
            t->ready = 0;
        }

        /* leave the caller's buffer as it was (it had not failed) */
        out->len = base;
        out->failed = 0;
        if (out->data != NULL) {
            out->data[base] = '\0';
        }
    }

    mm_buf_free(&job.built);
    free(job.tops);
    free(job.patches);
    free(job.samples);
    free(job.subs);

    return st;
}
