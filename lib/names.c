/*
 * Archive entry names: see names.h.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "names.h"


#define MM_NAME_RAW         4096    /* a decoded header or URL name */
#define MM_NAME_TAIL        64      /* cleaned bytes kept to find the ext */


/* a name segment read as cleaned characters */
typedef struct {
    const unsigned char  *p;
    const unsigned char  *end;
    size_t                pos;      /* cleaned bytes before p */
    unsigned char         ch[4];    /* the current cleaned character */
    size_t                n;
} mm_name_iter_t;


/* what mm_name_scan() learns about a segment, in cleaned byte offsets */
typedef struct {
    size_t   b;         /* first byte after leading spaces */
    size_t   e;         /* end after trailing spaces and dots */
} mm_name_span_t;


typedef struct {
    char    *s;
    size_t   len;
} mm_names_slot_t;


struct mm_names_s {
    mm_names_slot_t  *slots;
    size_t            size;         /* power of two */
    size_t            used;
};


static const char *mm_name_compressors[] = {
    "gz", "bz2", "xz", "zst", "lz", "lzma", "z", NULL
};


static void mm_name_iter_init(mm_name_iter_t *it, const char *s, size_t len);
static int mm_name_iter_next(mm_name_iter_t *it);
static void mm_name_scan(const char *s, size_t len, mm_name_span_t *sp);
static size_t mm_name_copy(const char *s, size_t len, size_t from,
    size_t to, char *out, size_t limit);
static size_t mm_name_ext(const char *s, size_t len, size_t first);
static size_t mm_name_utf8_cut(const char *s, size_t len);
static size_t mm_name_segment(const char *in, size_t len, char *out);
static size_t mm_name_last_segment(const char *in, size_t len, char *out);
static int mm_name_hex(int c);
static size_t mm_name_percent_decode(const char *s, size_t len, char *out,
    size_t out_size, int latin1, int strict);
static size_t mm_name_ext_value(const char *v, size_t len, char *out,
    size_t out_size);
static uint64_t mm_names_hash(const char *s, size_t len);
static mm_names_slot_t *mm_names_find(const mm_names_t *s, const char *name,
    size_t len);
static mm_status_t mm_names_grow(mm_names_t *s);


/* --- cleaning one segment ----------------------------------------------- */

static void
mm_name_iter_init(mm_name_iter_t *it, const char *s, size_t len)
{
    it->p = (const unsigned char *) s;
    it->end = it->p + len;
    it->pos = 0;
    it->n = 0;

    /* a drive letter: "C:name" */
    if (len >= 2 && ((s[0] | 0x20) >= 'a' && (s[0] | 0x20) <= 'z')
        && s[1] == ':')
    {
        it->p += 2;
    }
}


/*
 * Advances to the next cleaned character (it->ch, it->n bytes, at cleaned
 * offset it->pos); 0 at the end.
 */
static int
mm_name_iter_next(mm_name_iter_t *it)
{
    size_t                n, i;
    uint32_t              cp, min;
    const unsigned char  *p;

    it->pos += it->n;

    p = it->p;

    if (p >= it->end) {
        it->n = 0;
        return 0;
    }

    if (*p < 0x80) {
        it->p++;
        it->n = 1;
        it->ch[0] = (*p < 0x20 || *p == 0x7f || strchr("<>:\"|?*", *p))
                    ? '_' : *p;
        return 1;
    }

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;
        cp = *p & 0x1f;
        min = 0x80;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        cp = *p & 0x0f;
        min = 0x800;

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        cp = *p & 0x07;
        min = 0x10000;

    } else {
        goto invalid;
    }

    if ((size_t) (it->end - p) < n) {
        goto invalid;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            goto invalid;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        goto invalid;
    }

    it->p += n;

    if (cp <= 0x9f                                  /* C1 controls */
        || cp == 0x200e || cp == 0x200f
        || (cp >= 0x202a && cp <= 0x202e)
        || (cp >= 0x2066 && cp <= 0x2069))
    {
        it->ch[0] = '_';
        it->n = 1;
        return 1;
    }

    memcpy(it->ch, p, n);
    it->n = n;

    return 1;

invalid:

    /* U+FFFD for each byte that does not start a valid sequence */
    it->p++;
    it->ch[0] = 0xef;
    it->ch[1] = 0xbf;
    it->ch[2] = 0xbd;
    it->n = 3;

    return 1;
}


/* the trimmed extent of a cleaned segment; sp->b >= sp->e: nothing left */
static void
mm_name_scan(const char *s, size_t len, mm_name_span_t *sp)
{
    int             lead;
    mm_name_iter_t  it;

    sp->b = 0;
    sp->e = 0;
    lead = 1;

    mm_name_iter_init(&it, s, len);

    while (mm_name_iter_next(&it)) {
        if (it.n == 1 && it.ch[0] == ' ') {
            if (lead) {
                sp->b = it.pos + 1;
            }

            continue;
        }

        lead = 0;

        if (!(it.n == 1 && it.ch[0] == '.')) {
            sp->e = it.pos + it.n;
        }
    }

    if (lead) {
        sp->e = 0;
    }
}


/*
 * Copies the cleaned characters lying wholly in [from, to) to out, as
 * many as fit in limit bytes; returns the bytes copied.
 */
static size_t
mm_name_copy(const char *s, size_t len, size_t from, size_t to, char *out,
    size_t limit)
{
    size_t          n;
    mm_name_iter_t  it;

    n = 0;

    mm_name_iter_init(&it, s, len);

    while (mm_name_iter_next(&it)) {
        if (it.pos < from) {
            continue;
        }

        if (it.pos + it.n > to || n + it.n > limit) {
            break;
        }

        memcpy(out + n, it.ch, it.n);
        n += it.n;
    }

    return n;
}


/*
 * Where the extension of s starts (its "."), len if it has none: the last
 * "." at index >= first with something after it, ".tar" joined to a
 * compression suffix, at most MM_NAME_EXT_MAX bytes.
 */
static size_t
mm_name_ext(const char *s, size_t len, size_t first)
{
    size_t        i, dot, n;
    const char  **c;

    dot = len;

    for (i = len; i > first; i--) {
        if (s[i - 1] == '.') {
            dot = i - 1;
            break;
        }
    }

    if (dot == len || dot + 1 == len || len - dot > MM_NAME_EXT_MAX) {
        return len;
    }

    n = len - dot - 1;

    for (c = mm_name_compressors; *c; c++) {
        if (strlen(*c) == n && strncasecmp(s + dot + 1, *c, n) == 0) {
            if (dot >= first + 4 && strncasecmp(s + dot - 4, ".tar", 4) == 0)
            {
                return dot - 4;
            }

            break;
        }
    }

    return dot;
}


/* the longest prefix of s, at most len bytes, ending on a UTF-8 boundary */
static size_t
mm_name_utf8_cut(const char *s, size_t len)
{
    while (len > 0 && ((unsigned char) s[len] & 0xc0) == 0x80) {
        len--;
    }

    return len;
}


/*
 * Sanitises one segment (no separators in it) into out (MM_NAME_SIZE);
 * returns 0 if nothing is left of it.
 */
static size_t
mm_name_segment(const char *in, size_t len, char *out)
{
    size_t          head_len, tail_len, tail_from, ext, ext_len, stem,
                    total;
    char            head[MM_NAME_MAX + 4], tail[MM_NAME_TAIL + 4];
    mm_name_span_t  sp;

    mm_name_scan(in, len, &sp);

    if (sp.b >= sp.e) {
        return 0;
    }

    total = sp.e - sp.b;

    head_len = mm_name_copy(in, len, sp.b, sp.e, head, MM_NAME_MAX);

    if (total <= MM_NAME_MAX) {
        memcpy(out, head, head_len);
        out[head_len] = '\0';
        return head_len;
    }

    /* too long: keep the extension, cut the stem */
    tail_from = sp.e - MM_NAME_TAIL;
    tail_len = mm_name_copy(in, len, tail_from, sp.e, tail, MM_NAME_TAIL);

    /* the tail starts at the first character boundary >= tail_from */
    ext = mm_name_ext(tail, tail_len, 0);
    ext_len = tail_len - ext;

    stem = MM_NAME_MAX - ext_len;

    if (stem > head_len) {
        stem = head_len;
    }

    if (stem < head_len) {
        stem = mm_name_utf8_cut(head, stem);
    }

    memcpy(out, head, stem);
    memcpy(out + stem, tail + ext, ext_len);
    stem += ext_len;

    /* a cut stem may end in spaces or dots when there is no extension */
    while (stem > 1 && (out[stem - 1] == ' ' || out[stem - 1] == '.')) {
        stem--;
    }

    out[stem] = '\0';

    return stem;
}


/* the last usable segment, sanitised; 0 if there is none */
static size_t
mm_name_last_segment(const char *in, size_t len, char *out)
{
    size_t  end, start, n;

    /* the last segment with something left of it */
    end = len;

    while (end > 0) {
        start = end;

        while (start > 0 && in[start - 1] != '/' && in[start - 1] != '\\') {
            start--;
        }

        n = mm_name_segment(in + start, end - start, out);
        if (n > 0) {
            return n;
        }

        end = start > 0 ? start - 1 : 0;
    }

    return 0;
}


size_t
mm_name_sanitize(const char *in, size_t len, char *out)
{
    size_t  n;

    n = mm_name_last_segment(in, len, out);
    if (n > 0) {
        return n;
    }

    memcpy(out, MM_NAME_DEFAULT, sizeof(MM_NAME_DEFAULT));

    return sizeof(MM_NAME_DEFAULT) - 1;
}


/* --- sources ------------------------------------------------------------ */

static int
mm_name_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/*
 * %XX-decodes s into out (NUL-terminated, cut at out_size - 1), each byte
 * taken as Latin-1 (and encoded as UTF-8) when latin1. strict: a bad
 * escape fails (returns SIZE_MAX); otherwise it is kept as it is.
 */
static size_t
mm_name_percent_decode(const char *s, size_t len, char *out,
    size_t out_size, int latin1, int strict)
{
    int            hi, lo;
    size_t         i, n;
    unsigned char  c;

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c == '%') {
            hi = -1;
            lo = -1;

            if (i + 2 < len) {
                hi = mm_name_hex((unsigned char) s[i + 1]);
                lo = mm_name_hex((unsigned char) s[i + 2]);
            }

            if (hi >= 0 && lo >= 0) {
                c = (unsigned char) (hi << 4 | lo);
                i += 2;

            } else if (strict) {
                return SIZE_MAX;
            }
        }

        if (latin1 && c >= 0x80) {
            if (n + 2 >= out_size) {
                break;
            }

            out[n++] = (char) (0xc0 | (c >> 6));
            out[n++] = (char) (0x80 | (c & 0x3f));
            continue;
        }

        if (n + 1 >= out_size) {
            break;
        }

        out[n++] = (char) c;
    }

    out[n] = '\0';

    return n;
}


/* RFC 8187 ext-value: charset "'" [language] "'" value-chars */
static size_t
mm_name_ext_value(const char *v, size_t len, char *out, size_t out_size)
{
    int          latin1;
    size_t       n;
    const char  *q1, *q2, *end;

    end = v + len;

    q1 = memchr(v, '\'', len);
    if (q1 == NULL) {
        return 0;
    }

    q2 = memchr(q1 + 1, '\'', (size_t) (end - q1 - 1));
    if (q2 == NULL) {
        return 0;
    }

    if (q1 - v == 5 && strncasecmp(v, "UTF-8", 5) == 0) {
        latin1 = 0;

    } else if (q1 - v == 10 && strncasecmp(v, "ISO-8859-1", 10) == 0) {
        latin1 = 1;

    } else {
        return 0;
    }

    n = mm_name_percent_decode(q2 + 1, (size_t) (end - q2 - 1), out,
                               out_size, latin1, 1);

    return n == SIZE_MAX ? 0 : n;
}


size_t
mm_name_from_disposition(const char *value, size_t len, char *out,
    size_t out_size)
{
    int          star, quoted, plain_quoted;
    size_t       n, plain_len, ext_len, name_len;
    const char  *p, *end, *name, *v, *vend, *plain, *ext;
    char        *dst;

    p = value;
    end = value + len;
    plain = NULL;
    ext = NULL;
    plain_len = 0;
    plain_quoted = 0;
    ext_len = 0;

    /* the disposition type */
    while (p < end && *p != ';') {
        p++;
    }

    while (p < end) {
        /* ";" OWS name OWS "=" OWS value */
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) {
            p++;
        }

        name = p;

        while (p < end && *p != '=' && *p != ';') {
            p++;
        }

        name_len = (size_t) (p - name);

        while (name_len > 0
               && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
        {
            name_len--;
        }

        if (p == end || *p == ';') {
            continue;
        }

        p++;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        quoted = (p < end && *p == '"');

        if (quoted) {
            v = ++p;

            while (p < end && *p != '"') {
                p += (*p == '\\' && p + 1 < end) ? 2 : 1;
            }

            vend = p;

            if (p < end) {
                p++;
            }

            while (p < end && *p != ';') {
                p++;
            }

        } else {
            v = p;

            while (p < end && *p != ';') {
                p++;
            }

            vend = p;

            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) {
                vend--;
            }
        }

        star = (name_len == 9 && strncasecmp(name, "filename*", 9) == 0);

        if (star && ext == NULL) {
            ext = v;
            ext_len = (size_t) (vend - v);

        } else if (!star && plain == NULL && name_len == 8
                   && strncasecmp(name, "filename", 8) == 0)
        {
            plain = v;
            plain_len = (size_t) (vend - v);
            plain_quoted = quoted;
        }
    }

    if (out_size == 0) {
        return 0;
    }

    out[0] = '\0';

    if (ext != NULL) {
        n = mm_name_ext_value(ext, ext_len, out, out_size);
        if (n > 0) {
            return n;
        }
    }

    if (plain == NULL) {
        return 0;
    }

    dst = out;
    n = 0;

    for (p = plain; p < plain + plain_len && n + 1 < out_size; p++) {
        if (plain_quoted && *p == '\\' && p + 1 < plain + plain_len) {
            p++;
        }

        dst[n++] = *p;
    }

    dst[n] = '\0';

    return n;
}


size_t
mm_name_from_url(const char *url, size_t len, char *out, size_t out_size)
{
    const char  *p, *end, *path, *seg, *segend;

    if (out_size == 0) {
        return 0;
    }

    out[0] = '\0';
    end = url + len;

    /* query and fragment */
    for (p = url; p < end && *p != '?' && *p != '#'; p++) {
        /* void */
    }

    end = p;

    /* skip scheme://authority */
    path = url;

    for (p = url; p + 2 < end; p++) {
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            path = memchr(p + 3, '/', (size_t) (end - p - 3));
            if (path == NULL) {
                return 0;
            }

            break;
        }

        if (*p == '/') {
            break;
        }
    }

    segend = end;

    while (segend > path && segend[-1] == '/') {
        segend--;
    }

    seg = segend;

    while (seg > path && seg[-1] != '/') {
        seg--;
    }

    if (seg == segend) {
        return 0;
    }

    return mm_name_percent_decode(seg, (size_t) (segend - seg), out,
                                  out_size, 0, 0);
}


size_t
mm_name_pick(const char *disposition, size_t disposition_len,
    const char *url, size_t url_len, char *out)
{
    size_t  n;
    char    raw[MM_NAME_RAW];

    if (disposition != NULL) {
        n = mm_name_from_disposition(disposition, disposition_len, raw,
                                     sizeof(raw));
        if (n > 0) {
            n = mm_name_last_segment(raw, n, out);
            if (n > 0) {
                return n;
            }
        }
    }

    if (url != NULL) {
        n = mm_name_from_url(url, url_len, raw, sizeof(raw));
        if (n > 0) {
            return mm_name_sanitize(raw, n, out);
        }
    }

    memcpy(out, MM_NAME_DEFAULT, sizeof(MM_NAME_DEFAULT));

    return sizeof(MM_NAME_DEFAULT) - 1;
}


/* --- the set of taken names -------------------------------------------- */

static uint64_t
mm_names_hash(const char *s, size_t len)
{
    size_t    i;
    uint64_t  h;

    h = 0xcbf29ce484222325ULL;                  /* FNV-1a */

    for (i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}


/* the slot holding name, or the empty slot where it would go */
static mm_names_slot_t *
mm_names_find(const mm_names_t *s, const char *name, size_t len)
{
    size_t            i;
    mm_names_slot_t  *slot;

    i = (size_t) mm_names_hash(name, len) & (s->size - 1);

    for ( ;; ) {
        slot = &s->slots[i];

        if (slot->s == NULL
            || (slot->len == len && memcmp(slot->s, name, len) == 0))
        {
            return slot;
        }

        i = (i + 1) & (s->size - 1);
    }
}


static mm_status_t
mm_names_grow(mm_names_t *s)
{
    size_t            i, old_size;
    mm_names_slot_t  *old, *slots;

    old = s->slots;
    old_size = s->size;

    slots = calloc(old_size ? old_size * 2 : 64, sizeof(mm_names_slot_t));
    if (slots == NULL) {
        return MM_ENOMEM;
    }

    s->slots = slots;
    s->size = old_size ? old_size * 2 : 64;

    for (i = 0; i < old_size; i++) {
        if (old[i].s != NULL) {
            *mm_names_find(s, old[i].s, old[i].len) = old[i];
        }
    }

    free(old);

    return MM_OK;
}


mm_status_t
mm_names_new(mm_names_t **sp)
{
    mm_names_t  *s;

    s = calloc(1, sizeof(mm_names_t));
    if (s == NULL) {
        *sp = NULL;
        return MM_ENOMEM;
    }

    if (mm_names_grow(s) != MM_OK) {
        free(s);
        *sp = NULL;
        return MM_ENOMEM;
    }

    *sp = s;

    return MM_OK;
}


void
mm_names_destroy(mm_names_t **sp)
{
    size_t       i;
    mm_names_t  *s;

    s = *sp;
    if (s == NULL) {
        return;
    }

    for (i = 0; i < s->size; i++) {
        free(s->slots[i].s);
    }

    free(s->slots);
    free(s);

    *sp = NULL;
}


int
mm_names_has(const mm_names_t *s, const char *name, size_t len)
{
    return mm_names_find(s, name, len)->s != NULL;
}


mm_status_t
mm_names_reserve(mm_names_t *s, const char *name, size_t len)
{
    char             *copy;
    mm_names_slot_t  *slot;

    slot = mm_names_find(s, name, len);
    if (slot->s != NULL) {
        return MM_OK;
    }

    if ((s->used + 1) * 10 > s->size * 7) {
        if (mm_names_grow(s) != MM_OK) {
            return MM_ENOMEM;
        }

        slot = mm_names_find(s, name, len);
    }

    copy = malloc(len + 1);
    if (copy == NULL) {
        return MM_ENOMEM;
    }

    memcpy(copy, name, len);
    copy[len] = '\0';

    slot->s = copy;
    slot->len = len;
    s->used++;

    return MM_OK;
}


mm_status_t
mm_names_add(mm_names_t *s, char *name, size_t *len)
{
    int          sl;
    size_t       n, ext, ext_len, stem;
    unsigned     i;
    char         suffix[16];
    char         cand[MM_NAME_SIZE];

    n = strlen(name);

    if (!mm_names_has(s, name, n)) {
        *len = n;
        return mm_names_reserve(s, name, n);
    }

    ext = mm_name_ext(name, n, 1);
    ext_len = n - ext;

    for (i = 1; /* void */; i++) {
        sl = snprintf(suffix, sizeof(suffix), " (%u)", i);

        stem = ext;

        if (stem + (size_t) sl + ext_len > MM_NAME_MAX) {
            stem = mm_name_utf8_cut(name, MM_NAME_MAX - (size_t) sl - ext_len);
        }

        memcpy(cand, name, stem);
        memcpy(cand + stem, suffix, (size_t) sl);
        memcpy(cand + stem + sl, name + ext, ext_len);
        stem += (size_t) sl + ext_len;
        cand[stem] = '\0';

        if (!mm_names_has(s, cand, stem)) {
            break;
        }
    }

    if (mm_names_reserve(s, cand, stem) != MM_OK) {
        return MM_ENOMEM;
    }

    memcpy(name, cand, stem + 1);
    *len = stem;

    return MM_OK;
}
