/*
 * ISO BMFF (MP4) box reading and writing helpers.
 *
 * Reading: a cursor (pos, end) over a caller's buffer; every read checks
 * the bytes left first and fails without moving. mm_mp4_next_box() takes
 * one box header off a cursor and checks that the box (32-bit, 64-bit
 * "largesize" or size 0 = "to the end of the parent") fits inside it, so a
 * box can never claim bytes beyond its parent. Nothing is copied and
 * nothing is allocated.
 *
 * Writing: append to an mm_buf_t; mm_mp4_box_open() writes a placeholder
 * size that mm_mp4_box_close() patches once the payload is known.
 */

#ifndef MM_MP4_H
#define MM_MP4_H

#include "buf.h"


#define MM_FOURCC(a, b, c, d)                                                 \
    (((uint32_t) (uint8_t) (a) << 24) | ((uint32_t) (uint8_t) (b) << 16)      \
     | ((uint32_t) (uint8_t) (c) << 8) | (uint32_t) (uint8_t) (d))

/* nesting limit for mm_mp4_walk() */
#define MM_MP4_MAX_DEPTH  16


typedef struct {
    const uint8_t  *pos;
    const uint8_t  *end;
} mm_mp4_cur_t;


typedef struct {
    uint32_t        type;
    const uint8_t  *start;      /* first byte of the header */
    const uint8_t  *data;       /* first byte after the header */
    size_t          size;       /* whole box, header included */
    size_t          header;     /* 8, 16 (largesize), +16 for 'uuid' */
    const uint8_t  *uuid;       /* 16 bytes for 'uuid' boxes, else NULL */
} mm_mp4_box_t;


static inline uint16_t
mm_get_be16(const uint8_t *p)
{
    return (uint16_t) ((p[0] << 8) | p[1]);
}


static inline uint32_t
mm_get_be24(const uint8_t *p)
{
    return ((uint32_t) p[0] << 16) | ((uint32_t) p[1] << 8) | p[2];
}


static inline uint32_t
mm_get_be32(const uint8_t *p)
{
    return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16)
           | ((uint32_t) p[2] << 8) | p[3];
}


static inline uint64_t
mm_get_be64(const uint8_t *p)
{
    return ((uint64_t) mm_get_be32(p) << 32) | mm_get_be32(p + 4);
}


static inline void
mm_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) (v >> 8);
    p[1] = (uint8_t) v;
}


static inline void
mm_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) (v >> 24);
    p[1] = (uint8_t) (v >> 16);
    p[2] = (uint8_t) (v >> 8);
    p[3] = (uint8_t) v;
}


static inline void
mm_put_be64(uint8_t *p, uint64_t v)
{
    mm_put_be32(p, (uint32_t) (v >> 32));
    mm_put_be32(p + 4, (uint32_t) v);
}


static inline void
mm_mp4_cur_init(mm_mp4_cur_t *c, const uint8_t *p, size_t len)
{
    c->pos = p;
    c->end = p + len;
}


static inline size_t
mm_mp4_left(const mm_mp4_cur_t *c)
{
    return (size_t) (c->end - c->pos);
}


/* cursor reads: 0 on success, -1 (cursor unchanged) if too few bytes */
int mm_mp4_get8(mm_mp4_cur_t *c, uint8_t *v);
int mm_mp4_get16(mm_mp4_cur_t *c, uint16_t *v);
int mm_mp4_get24(mm_mp4_cur_t *c, uint32_t *v);
int mm_mp4_get32(mm_mp4_cur_t *c, uint32_t *v);
int mm_mp4_get64(mm_mp4_cur_t *c, uint64_t *v);
int mm_mp4_skip(mm_mp4_cur_t *c, size_t n);
/* *p points at the n bytes, which the cursor then skips */
int mm_mp4_bytes(mm_mp4_cur_t *c, size_t n, const uint8_t **p);

/*
 * Takes the next box off c. MM_OK: *box is set and c is past the box;
 * MM_ENOTFOUND: c is at its end; MM_EBADDATA: a header that is cut short,
 * a size smaller than its header, or a box that runs past c->end.
 */
mm_status_t mm_mp4_next_box(mm_mp4_cur_t *c, mm_mp4_box_t *box);

/* the payload of a box as a cursor */
void mm_mp4_box_cur(const mm_mp4_box_t *box, mm_mp4_cur_t *c);

/*
 * First child of a given type among the boxes in p[0..len). MM_ENOTFOUND
 * if there is none; MM_EBADDATA if the boxes before it are malformed.
 */
mm_status_t mm_mp4_find(const uint8_t *p, size_t len, uint32_t type,
    mm_mp4_box_t *box);

/* version and flags of a full box: 0 or -1 */
int mm_mp4_full(mm_mp4_cur_t *c, uint8_t *version, uint32_t *flags);

/* "abcd" for a fourcc; buf must hold 5 bytes; non-printables become '.' */
const char *mm_mp4_fourcc_str(uint32_t type, char *buf);

/*
 * Walks a box tree depth first, calling cb for every box; descends into
 * the well-known containers (moov, trak, mdia, minf, stbl, mvex, moof,
 * traf, mfra, edts, dinf, sinf, schi, udta) and into sample entries of
 * stsd. cb returns 0 to go on, 1 to skip the box's children, -1 to stop
 * (the walk then returns MM_EAGAIN). Malformed boxes: MM_EBADDATA.
 */
typedef int (*mm_mp4_walk_pt)(void *data, const mm_mp4_box_t *box,
    unsigned depth);

mm_status_t mm_mp4_walk(const uint8_t *p, size_t len, mm_mp4_walk_pt cb,
    void *data);


/* writing: sticky errors like mm_buf_t itself */
void mm_mp4_put8(mm_buf_t *b, uint8_t v);
void mm_mp4_put16(mm_buf_t *b, uint16_t v);
void mm_mp4_put32(mm_buf_t *b, uint32_t v);
void mm_mp4_put64(mm_buf_t *b, uint64_t v);
/* returns the offset of the box in b, to hand to mm_mp4_box_close() */
size_t mm_mp4_box_open(mm_buf_t *b, uint32_t type);
size_t mm_mp4_full_open(mm_buf_t *b, uint32_t type, uint8_t version,
    uint32_t flags);
void mm_mp4_box_close(mm_buf_t *b, size_t off);


#endif /* MM_MP4_H */
