/*
 * An append-only on-disk journal of CRC'd records.
 *
 * A journal is a directory of segment files named "%016llu.jnl" (decimal
 * segment number), each a sequence of records
 *
 *     [u32 payload length, big-endian][u32 zlib crc32 of payload, BE][payload]
 *
 * plus "committed", holding the committed position, and "lock", flock()ed
 * by the one writer. "committed" has two slots a page apart (at 0 and
 * 4096), each "<segment> <offset> <crc32>\n" (16, 16 and 8 digits, the CRC
 * over the two numbers and the space between them); a commit overwrites the
 * older slot in place without syncing it, and the larger whole slot is the
 * position. A crash can only lose positions, never tear both slots, so the
 * consumer replays from an older position (and must drop what it already
 * has). The file is synced before segments are deleted under a position, so
 * it never points into a deleted segment. The first commit after open
 * writes a new file (both slots, tmp + fsync + rename + fsync of the
 * directory); the one-line "<segment> <offset>\n" of earlier versions is
 * still read.
 *
 * Writer: mm_journal_append() copies a record into a write buffer (and
 * writes the buffer out when it fills); nothing is durable until
 * mm_journal_sync() (write + fdatasync) returns MM_OK. If a write or sync
 * fails, every record appended since the last successful sync is dropped,
 * the segment is cut back to its last synced size and the next append starts
 * a new segment; the caller treats those records as never written. A segment
 * is closed (synced) and a new one started when the next record would take
 * it past conf->segment_max.
 *
 * On open the last segment is scanned and a torn or corrupt tail (short
 * header, short payload, bad length or CRC) is cut off.
 * mm_journal_commit() records a position and deletes every segment wholly
 * before it.
 *
 * Reader: independent of the writer (it only needs the directory), iterates
 * records from a position, following on to the next segment at the end of
 * one. It returns MM_EAGAIN at the end of the data, including before a torn
 * record at the tail (it is read again once complete), and MM_ECORRUPT for
 * an impossible length or a CRC mismatch.
 *
 * Memory comes from conf->alloc (Lua-style: alloc(ctx, p, 0) frees, otherwise
 * it is realloc), malloc/realloc/free when NULL. The journal never syncs on
 * its own except when it closes a full segment: the caller decides when to
 * pay for fdatasync.
 */

#ifndef MM_JOURNAL_H
#define MM_JOURNAL_H

#include <stdint.h>
#include "mm.h"


#define MM_JOURNAL_RECORD_MAX   (16 * 1024 * 1024)   /* payload bytes */
#define MM_JOURNAL_HEADER_SIZE  8


typedef void *(*mm_journal_alloc_pt)(void *ctx, void *p, size_t size);


typedef struct {
    uint64_t             seg;     /* segment number, first is 1 */
    uint64_t             off;     /* byte offset of a record in it */
} mm_journal_pos_t;


typedef struct {
    uint64_t             segment_max;   /* default 64 MiB */
    size_t               buffer_size;   /* write/read buffer, default 64 KiB */
    mm_journal_alloc_pt  alloc;         /* NULL: malloc */
    void                *alloc_ctx;
} mm_journal_conf_t;


typedef struct mm_journal_s         mm_journal_t;
typedef struct mm_journal_reader_s  mm_journal_reader_t;


/* <0, 0, >0 like strcmp */
int mm_journal_pos_cmp(mm_journal_pos_t a, mm_journal_pos_t b);


/*
 * Opens (creating the directory, one level, if needed) the journal for
 * appending. conf may be NULL. Returns MM_OK, MM_EAGAIN (another writer
 * holds the lock), MM_ECORRUPT (unreadable committed file), MM_EIO (errno
 * set) or MM_ENOMEM.
 */
mm_status_t mm_journal_open(mm_journal_t **jp, const char *dir,
    const mm_journal_conf_t *conf);

/* syncs (best effort), closes, frees and sets *jp = NULL */
void mm_journal_close(mm_journal_t **jp);

/* MM_OK, MM_ETOOBIG (len > MM_JOURNAL_RECORD_MAX), MM_EIO, MM_ENOMEM */
mm_status_t mm_journal_append(mm_journal_t *j, const void *data,
    size_t len);

/* writes the buffer and fdatasyncs: MM_OK or MM_EIO (see above) */
mm_status_t mm_journal_sync(mm_journal_t *j);

/* closes the current segment (synced) so the next append starts another */
mm_status_t mm_journal_rotate(mm_journal_t *j);

/* position after the last appended record */
mm_journal_pos_t mm_journal_end(const mm_journal_t *j);

mm_journal_pos_t mm_journal_committed(const mm_journal_t *j);

/*
 * Records pos (committed <= pos <= end; in the page cache, synced only
 * before segments are deleted: see above) and deletes the segments before
 * pos.seg. MM_OK, MM_EBADDATA (pos out of range), MM_EIO.
 */
mm_status_t mm_journal_commit(mm_journal_t *j, mm_journal_pos_t pos);

/* bytes cut off a torn tail when the journal was opened */
uint64_t mm_journal_truncated(const mm_journal_t *j);

/* bytes from the committed position to the end (stat of the segments) */
uint64_t mm_journal_lag(const mm_journal_t *j);


/* reads "committed" of a journal directory; {0, 0} when there is none */
mm_status_t mm_journal_read_committed(const char *dir,
    mm_journal_pos_t *pos);

mm_status_t mm_journal_reader_open(mm_journal_reader_t **rp,
    const char *dir, mm_journal_pos_t pos, const mm_journal_conf_t *conf);
void mm_journal_reader_close(mm_journal_reader_t **rp);

/*
 * Next record: MM_OK with *data and *len valid until the next call,
 * MM_EAGAIN at the end of the data (try again later), MM_ECORRUPT (the
 * reader stays put; see mm_journal_reader_skip_segment), MM_EIO, MM_ENOMEM.
 */
mm_status_t mm_journal_reader_next(mm_journal_reader_t *r,
    const void **data, size_t *len);

/* position of the next record to read */
mm_journal_pos_t mm_journal_reader_pos(const mm_journal_reader_t *r);

/* gives up on the rest of the current segment (after MM_ECORRUPT) */
void mm_journal_reader_skip_segment(mm_journal_reader_t *r);


#endif /* MM_JOURNAL_H */
