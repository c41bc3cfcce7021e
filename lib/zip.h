/*
 * A streaming, resumable ZIP writer (APPNOTE 6.3.x subset).
 *
 * Entries are stored (method 0: media is already compressed), names are
 * UTF-8 and always flagged with general purpose bit 11, CRC-32 is zlib's.
 * Timestamps are DOS date/time of a caller-supplied time, in UTC, clamped
 * to 1980..2107.
 *
 * Layout of one entry, at e->offset:
 *
 *     local header [ZIP64 extra] | data | [data descriptor]
 *
 * - Size known when the entry starts (Content-Length): the local header
 *   carries the sizes and a CRC of 0 that mm_zip_entry_end() patches in
 *   place (the output must accept writes at earlier offsets: pwrite).
 * - Size unknown: general purpose bit 3 (MM_ZIP_DESCRIPTOR); the local
 *   header has CRC 0, sizes 0xFFFFFFFF and a ZIP64 extra field of zeros (so
 *   the entry may grow past 4 GiB; Python's zipfile writes the same), and a
 *   data descriptor with 8-byte sizes follows the data.
 *
 * ZIP64 is automatic: a ZIP64 extra field in the local header when a known
 * size is >= 0xFFFFFFFF (or the size is unknown), one in the central header
 * holding whichever of size / offset is >= 0xFFFFFFFF, and the ZIP64 end of
 * central directory record + locator when there are >= 0xFFFF entries or
 * the central directory's size or offset is >= 0xFFFFFFFF. Version needed to
 * extract is 45 for an entry that uses ZIP64 anywhere, else 20.
 *
 * Everything the central directory needs is in mm_zip_entry_t (name,
 * offset, size, crc, mtime, flags), so a daemon that stores those per entry
 * can rebuild it after a restart with mm_zip_central_directory() and never
 * re-read the archive. The stateful writer (mm_zip_t) is a convenience on
 * top of the pure functions: it tracks the append position, the CRC of the
 * open entry and the records of finished entries.
 *
 * Output goes through a pwrite-like callback; mm_zip_fd_write() is one for
 * a file descriptor. A finished archive ends at the size mm_zip_finish() /
 * mm_zip_central_directory() reports: when an archive file is rewritten
 * after an aborted entry, truncate it to that size.
 */

#ifndef MM_ZIP_H
#define MM_ZIP_H

#include <stdint.h>
#include "mm.h"


#define MM_ZIP_SIZE_UNKNOWN     UINT64_MAX
#define MM_ZIP_NAME_MAX         65535

/* mm_zip_entry_t.flags */
#define MM_ZIP_DESCRIPTOR       0x01    /* bit 3: sizes follow the data */
#define MM_ZIP_ZIP64            0x02    /* local header has a ZIP64 extra */

#define MM_ZIP_LOCAL_HEADER_MIN 30      /* + name + extra */
#define MM_ZIP_END_MAX          (56 + 20 + 22)


/*
 * Writes len bytes at byte offset off of the archive. Returns MM_OK or an
 * error (MM_EIO with errno set) that the writer passes on.
 */
typedef mm_status_t (*mm_zip_write_pt)(void *ctx, const void *buf,
    size_t len, uint64_t off);

/* Lua-style: alloc(ctx, p, 0) frees, otherwise realloc; NULL: malloc */
typedef void *(*mm_zip_alloc_pt)(void *ctx, void *p, size_t size);


/* one entry: what a database row needs to hold to rebuild the archive */
typedef struct {
    const char  *name;          /* UTF-8, not necessarily NUL-terminated */
    size_t       name_len;      /* 1..MM_ZIP_NAME_MAX */
    uint64_t     offset;        /* of the local header */
    uint64_t     size;          /* data bytes (stored: one size) */
    uint32_t     crc;
    int64_t      mtime;         /* seconds since the epoch */
    unsigned     flags;         /* MM_ZIP_DESCRIPTOR | MM_ZIP_ZIP64 */
} mm_zip_entry_t;


typedef struct {
    mm_zip_write_pt   write;
    void             *ctx;
    mm_zip_alloc_pt   alloc;        /* NULL: malloc */
    void             *alloc_ctx;
} mm_zip_conf_t;


typedef struct mm_zip_s  mm_zip_t;


/* --- pure functions ------------------------------------------------ */

/*
 * The flags mm_zip_entry_begin() gives an entry of this size
 * (MM_ZIP_SIZE_UNKNOWN allowed): 0, MM_ZIP_ZIP64, or both bits.
 */
unsigned mm_zip_entry_flags(uint64_t size);

/* local header + extra; the data of the entry starts this far after it */
size_t mm_zip_local_header_size(const mm_zip_entry_t *e);

/*
 * Encodes the local header of e into buf, which has room for
 * mm_zip_local_header_size(e) bytes. With MM_ZIP_DESCRIPTOR CRC and sizes
 * are zero (sizes 0xFFFFFFFF and zeros in the ZIP64 extra); otherwise they
 * are e->crc and e->size (the writer starts with e->crc = 0 and patches).
 */
size_t mm_zip_put_local_header(const mm_zip_entry_t *e, uint8_t *buf);

/* 0, 16 or 24 bytes (MM_ZIP_DESCRIPTOR entries only) */
size_t mm_zip_descriptor_size(const mm_zip_entry_t *e);
size_t mm_zip_put_descriptor(const mm_zip_entry_t *e, uint8_t *buf);

/* bytes an entry takes: local header + data + descriptor */
uint64_t mm_zip_entry_span(const mm_zip_entry_t *e);

/* central directory plus end records for entries, written at cd_offset */
uint64_t mm_zip_central_directory_size(const mm_zip_entry_t *entries,
    size_t n, uint64_t cd_offset);

/*
 * Final size of an archive of these entries laid out one after another
 * from offset 0 (entries[i].offset is ignored; name_len, size and flags
 * are used, flags as mm_zip_entry_flags() gives them). For Content-Length
 * before the first byte.
 */
uint64_t mm_zip_archive_size(const mm_zip_entry_t *entries, size_t n);

/*
 * Writes the central directory of entries (in order) at cd_offset followed
 * by the end records, through write(ctx, ...), and sets *end to the
 * archive size. MM_EBADDATA for a bad name length, or the write error.
 */
mm_status_t mm_zip_central_directory(const mm_zip_entry_t *entries,
    size_t n, uint64_t cd_offset, mm_zip_write_pt write, void *ctx,
    uint64_t *end);

/* MS-DOS date and time (UTC) of a time, clamped to 1980-01-01..2107 */
void mm_zip_dos_time(int64_t t, uint16_t *date, uint16_t *time);


/* --- file descriptor helpers ---------------------------------------- */

/* an mm_zip_write_pt for ctx = int * (file descriptor): pwrite loop */
mm_status_t mm_zip_fd_write(void *ctx, const void *buf, size_t len,
    uint64_t off);

/*
 * Continues crc over len bytes of fd from off (pread): for a daemon that
 * resumes an entry after a crash and recomputes the CRC of the data
 * already on disk. MM_EIO (errno set), MM_EBADDATA if the file is short.
 */
mm_status_t mm_zip_crc_fd(int fd, uint64_t off, uint64_t len,
    uint32_t *crc);


/* --- the streaming writer -------------------------------------------- */

/*
 * A writer appending at pos (0 for a new archive). Copies conf.
 * MM_ENOMEM.
 */
mm_status_t mm_zip_new(mm_zip_t **zp, const mm_zip_conf_t *conf,
    uint64_t pos);

/* frees the writer (not the output) and sets *zp = NULL */
void mm_zip_destroy(mm_zip_t **zp);

/*
 * After a restart: records an entry that is already complete in the
 * output (name copied) and moves the append position past it if needed.
 * MM_EBADDATA (bad name length or an entry open), MM_ENOMEM.
 */
mm_status_t mm_zip_restore(mm_zip_t *z, const mm_zip_entry_t *e);

/*
 * Starts an entry at the append position: writes its local header.
 * size is the exact data size or MM_ZIP_SIZE_UNKNOWN. MM_EBADDATA (name
 * length 0 or > MM_ZIP_NAME_MAX, an entry already open, archive finished),
 * MM_ENOMEM, or the write error.
 */
mm_status_t mm_zip_entry_begin(mm_zip_t *z, const char *name,
    size_t name_len, uint64_t size, int64_t mtime);

/*
 * After a restart: reopens an entry whose local header (as written by
 * mm_zip_entry_begin for e->name, e->size, e->flags, e->mtime) is at
 * e->offset and of whose data done bytes with CRC crc are in the output.
 * e->size is the declared size (ignored with MM_ZIP_DESCRIPTOR). Writing
 * continues at e->offset + mm_zip_local_header_size(e) + done.
 * MM_EBADDATA (done > declared size, an entry open, ...), MM_ENOMEM.
 */
mm_status_t mm_zip_entry_resume(mm_zip_t *z, const mm_zip_entry_t *e,
    uint64_t done, uint32_t crc);

/* appends data to the open entry; MM_ETOOBIG past a declared size */
mm_status_t mm_zip_entry_write(mm_zip_t *z, const void *data, size_t len);

/*
 * The caller put len more bytes of data, with CRC-32 crc (of those bytes
 * alone), into the output at mm_zip_pos() itself (copy_file_range, a
 * download written straight to the fd, a sparse hole): account for them.
 */
mm_status_t mm_zip_entry_written(mm_zip_t *z, uint64_t len, uint32_t crc);

/*
 * Ends the open entry: patches the CRC into the local header (known size;
 * MM_EBADDATA if fewer bytes than declared were written) or writes the data
 * descriptor, and records the entry. If *e is not NULL it receives the
 * record (name valid while the writer lives).
 */
mm_status_t mm_zip_entry_end(mm_zip_t *z, mm_zip_entry_t *e);

/*
 * Drops the open entry: the append position goes back to its local header
 * (the caller truncates the output there or overwrites it).
 */
void mm_zip_entry_abort(mm_zip_t *z);

/*
 * State of the open entry for the caller to persist: the record (size is
 * the declared size), data bytes so far and their CRC. MM_ENOTFOUND if no
 * entry is open.
 */
mm_status_t mm_zip_entry_current(const mm_zip_t *z, mm_zip_entry_t *e,
    uint64_t *done, uint32_t *crc);

/* append position: where the next data byte or local header goes */
uint64_t mm_zip_pos(const mm_zip_t *z);

/* records of the finished entries, in order; valid until the next call */
const mm_zip_entry_t *mm_zip_entries(const mm_zip_t *z, size_t *n);

/*
 * Writes the central directory and end records (no entry may be open),
 * sets *size to the archive size. No entries can be added afterwards.
 */
mm_status_t mm_zip_finish(mm_zip_t *z, uint64_t *size);


#endif /* MM_ZIP_H */
