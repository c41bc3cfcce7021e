/*
 * ISO BMFF box cursor, box walker and box writer.
 */

#include <string.h>

#include "mp4.h"


typedef enum {
    MM_MP4_LEAF = 0,
    MM_MP4_CONTAINER,           /* children follow the header */
    MM_MP4_STSD,                /* full box + entry_count, then entries */
    MM_MP4_VISUAL,              /* VisualSampleEntry: 78 bytes, children */
    MM_MP4_AUDIO                /* AudioSampleEntry: 28/44/64, children */
} mm_mp4_kind_t;


typedef struct {
    uint32_t        type;
    mm_mp4_kind_t   kind;
} mm_mp4_kind_map_t;


static const mm_mp4_kind_map_t  mm_mp4_kinds[] = {
    { MM_FOURCC('m', 'o', 'o', 'v'), MM_MP4_CONTAINER },
    { MM_FOURCC('t', 'r', 'a', 'k'), MM_MP4_CONTAINER },
    { MM_FOURCC('m', 'd', 'i', 'a'), MM_MP4_CONTAINER },
    { MM_FOURCC('m', 'i', 'n', 'f'), MM_MP4_CONTAINER },
    { MM_FOURCC('s', 't', 'b', 'l'), MM_MP4_CONTAINER },
    { MM_FOURCC('m', 'v', 'e', 'x'), MM_MP4_CONTAINER },
    { MM_FOURCC('m', 'o', 'o', 'f'), MM_MP4_CONTAINER },
    { MM_FOURCC('t', 'r', 'a', 'f'), MM_MP4_CONTAINER },
    { MM_FOURCC('m', 'f', 'r', 'a'), MM_MP4_CONTAINER },
    { MM_FOURCC('e', 'd', 't', 's'), MM_MP4_CONTAINER },
    { MM_FOURCC('d', 'i', 'n', 'f'), MM_MP4_CONTAINER },
    { MM_FOURCC('s', 'i', 'n', 'f'), MM_MP4_CONTAINER },
    { MM_FOURCC('s', 'c', 'h', 'i'), MM_MP4_CONTAINER },
    { MM_FOURCC('u', 'd', 't', 'a'), MM_MP4_CONTAINER },
    { MM_FOURCC('s', 't', 's', 'd'), MM_MP4_STSD },
    { MM_FOURCC('a', 'v', 'c', '1'), MM_MP4_VISUAL },
    { MM_FOURCC('a', 'v', 'c', '3'), MM_MP4_VISUAL },
    { MM_FOURCC('h', 'v', 'c', '1'), MM_MP4_VISUAL },
    { MM_FOURCC('h', 'e', 'v', '1'), MM_MP4_VISUAL },
    { MM_FOURCC('e', 'n', 'c', 'v'), MM_MP4_VISUAL },
    { MM_FOURCC('m', 'p', '4', 'v'), MM_MP4_VISUAL },
    { MM_FOURCC('m', 'p', '4', 'a'), MM_MP4_AUDIO },
    { MM_FOURCC('e', 'n', 'c', 'a'), MM_MP4_AUDIO },
    { MM_FOURCC('a', 'c', '-', '3'), MM_MP4_AUDIO },
    { MM_FOURCC('e', 'c', '-', '3'), MM_MP4_AUDIO },
    { MM_FOURCC('O', 'p', 'u', 's'), MM_MP4_AUDIO },
};


static mm_status_t mm_mp4_walk_level(const uint8_t *p, size_t len,
    mm_mp4_walk_pt cb, void *data, unsigned depth);


int
mm_mp4_get8(mm_mp4_cur_t *c, uint8_t *v)
{
    if (c->end - c->pos < 1) {
        return -1;
    }

    *v = *c->pos++;
    return 0;
}


int
mm_mp4_get16(mm_mp4_cur_t *c, uint16_t *v)
{
    if (c->end - c->pos < 2) {
        return -1;
    }

    *v = mm_get_be16(c->pos);
    c->pos += 2;
    return 0;
}


int
mm_mp4_get24(mm_mp4_cur_t *c, uint32_t *v)
{
    if (c->end - c->pos < 3) {
        return -1;
    }

    *v = mm_get_be24(c->pos);
    c->pos += 3;
    return 0;
}


int
mm_mp4_get32(mm_mp4_cur_t *c, uint32_t *v)
{
    if (c->end - c->pos < 4) {
        return -1;
    }

    *v = mm_get_be32(c->pos);
    c->pos += 4;
    return 0;
}


int
mm_mp4_get64(mm_mp4_cur_t *c, uint64_t *v)
{
    if (c->end - c->pos < 8) {
        return -1;
    }

    *v = mm_get_be64(c->pos);
    c->pos += 8;
    return 0;
}


int
mm_mp4_skip(mm_mp4_cur_t *c, size_t n)
{
    if (n > (size_t) (c->end - c->pos)) {
        return -1;
    }

    c->pos += n;
    return 0;
}


int
mm_mp4_bytes(mm_mp4_cur_t *c, size_t n, const uint8_t **p)
{
    if (n > (size_t) (c->end - c->pos)) {
        return -1;
    }

    *p = c->pos;
    c->pos += n;
    return 0;
}


mm_status_t
mm_mp4_next_box(mm_mp4_cur_t *c, mm_mp4_box_t *box)
{
    size_t     left, header;
    uint64_t   size;

    left = (size_t) (c->end - c->pos);

    if (left == 0) {
        return MM_ENOTFOUND;
    }

    if (left < 8) {
        return MM_EBADDATA;
    }

    header = 8;
    size = mm_get_be32(c->pos);
    box->type = mm_get_be32(c->pos + 4);
    box->uuid = NULL;

    if (size == 1) {
        if (left < 16) {
            return MM_EBADDATA;
        }

        size = mm_get_be64(c->pos + 8);
        header = 16;

    } else if (size == 0) {
        size = left;
    }

    if (box->type == MM_FOURCC('u', 'u', 'i', 'd')) {
        if (left < header + 16) {
            return MM_EBADDATA;
        }

        box->uuid = c->pos + header;
        header += 16;
    }

    if (size < header || size > left) {
        return MM_EBADDATA;
    }

    box->start = c->pos;
    box->data = c->pos + header;
    box->size = (size_t) size;
    box->header = header;

    c->pos += box->size;

    return MM_OK;
}


void
mm_mp4_box_cur(const mm_mp4_box_t *box, mm_mp4_cur_t *c)
{
    c->pos = box->data;
    c->end = box->start + box->size;
}


mm_status_t
mm_mp4_find(const uint8_t *p, size_t len, uint32_t type, mm_mp4_box_t *box)
{
    mm_status_t   st;
    mm_mp4_cur_t  c;

    mm_mp4_cur_init(&c, p, len);

    for ( ;; ) {
        st = mm_mp4_next_box(&c, box);
        if (st != MM_OK) {
            return st;
        }

        if (box->type == type) {
            return MM_OK;
        }
    }
}


int
mm_mp4_full(mm_mp4_cur_t *c, uint8_t *version, uint32_t *flags)
{
    uint32_t  v;

    if (mm_mp4_get32(c, &v) != 0) {
        return -1;
    }

    if (version != NULL) {
        *version = (uint8_t) (v >> 24);
    }

    if (flags != NULL) {
        *flags = v & 0xffffff;
    }

    return 0;
}


const char *
mm_mp4_fourcc_str(uint32_t type, char *buf)
{
    int      i;
    uint8_t  ch;

    for (i = 0; i < 4; i++) {
        ch = (uint8_t) (type >> (24 - 8 * i));
        buf[i] = (ch >= 0x20 && ch < 0x7f) ? (char) ch : '.';
    }

    buf[4] = '\0';

    return buf;
}


static mm_mp4_kind_t
mm_mp4_kind(uint32_t type)
{
    size_t  i;

    for (i = 0; i < sizeof(mm_mp4_kinds) / sizeof(mm_mp4_kinds[0]); i++) {
        if (mm_mp4_kinds[i].type == type) {
            return mm_mp4_kinds[i].kind;
        }
    }

    return MM_MP4_LEAF;
}


mm_status_t
mm_mp4_walk(const uint8_t *p, size_t len, mm_mp4_walk_pt cb, void *data)
{
    return mm_mp4_walk_level(p, len, cb, data, 0);
}


static mm_status_t
mm_mp4_walk_level(const uint8_t *p, size_t len, mm_mp4_walk_pt cb,
    void *data, unsigned depth)
{
    int            rc;
    size_t         skip, plen;
    uint16_t       ver;
    mm_status_t    st;
    mm_mp4_box_t   box;
    mm_mp4_cur_t   c;
    const uint8_t *payload;

    if (depth > MM_MP4_MAX_DEPTH) {
        return MM_EBADDATA;
    }

    mm_mp4_cur_init(&c, p, len);

    for ( ;; ) {
        st = mm_mp4_next_box(&c, &box);
        if (st == MM_ENOTFOUND) {
            return MM_OK;
        }

        if (st != MM_OK) {
            return st;
        }

        rc = cb(data, &box, depth);
        if (rc < 0) {
            return MM_EAGAIN;
        }

        if (rc > 0) {
            continue;
        }

        payload = box.data;
        plen = box.size - box.header;

        switch (mm_mp4_kind(box.type)) {

        case MM_MP4_CONTAINER:
            skip = 0;
            break;

        case MM_MP4_STSD:
            skip = 8;
            break;

        case MM_MP4_VISUAL:
            skip = 78;
            break;

        case MM_MP4_AUDIO:
            /* QuickTime sound description versions 1 and 2 are longer */
            if (plen < 28) {
                return MM_EBADDATA;
            }

            ver = mm_get_be16(payload + 8);
            skip = (ver == 1) ? 44 : (ver == 2) ? 64 : 28;
            break;

        default:
            continue;
        }

        if (plen < skip) {
            return MM_EBADDATA;
        }

        st = mm_mp4_walk_level(payload + skip, plen - skip, cb, data,
                               depth + 1);
        if (st != MM_OK) {
            return st;
        }
    }
}


void
mm_mp4_put8(mm_buf_t *b, uint8_t v)
{
    mm_buf_append(b, &v, 1);
}


void
mm_mp4_put16(mm_buf_t *b, uint16_t v)
{
    uint8_t  p[2];

    mm_put_be16(p, v);
    mm_buf_append(b, p, 2);
}


void
mm_mp4_put32(mm_buf_t *b, uint32_t v)
{
    uint8_t  p[4];

    mm_put_be32(p, v);
    mm_buf_append(b, p, 4);
}


void
mm_mp4_put64(mm_buf_t *b, uint64_t v)
{
    uint8_t  p[8];

    mm_put_be64(p, v);
    mm_buf_append(b, p, 8);
}


size_t
mm_mp4_box_open(mm_buf_t *b, uint32_t type)
{
    size_t  off;

    off = b->len;
    mm_mp4_put32(b, 0);
    mm_mp4_put32(b, type);

    return off;
}


size_t
mm_mp4_full_open(mm_buf_t *b, uint32_t type, uint8_t version, uint32_t flags)
{
    size_t  off;

    off = mm_mp4_box_open(b, type);
    mm_mp4_put32(b, ((uint32_t) version << 24) | (flags & 0xffffff));

    return off;
}


void
mm_mp4_box_close(mm_buf_t *b, size_t off)
{
    size_t  size;

    if (b->failed || off > b->len || b->len - off < 8) {
        return;
    }

    size = b->len - off;

    if (size > UINT32_MAX) {
        /* no box we build comes near this; refuse rather than truncate */
        b->failed = 1;
        return;
    }

    mm_put_be32((uint8_t *) b->data + off, (uint32_t) size);
}
