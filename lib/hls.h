/*
 * HLS playlists (RFC 8216 / draft-pantos-hls-rfc8216bis) over the same
 * cbcs fMP4 segments as the MPD (lib/mpd.h describes the presentation):
 *
 *   master.m3u8: one EXT-X-STREAM-INF per video representation, the audio
 *                as an EXT-X-MEDIA rendition group; EXT-X-SESSION-KEY
 *   <rep>.m3u8:  VOD media playlist: EXT-X-KEY, EXT-X-MAP (the init
 *                segment), EXTINF + URI per segment, EXT-X-ENDLIST
 *
 * Encryption signalling: fMP4 'cbcs' is METHOD=SAMPLE-AES (RFC 8216bis
 * 4.4.4.4: "fMP4 Media Segments are encrypted using the 'cbcs' scheme of
 * Common Encryption"); the IV is the one of the segments' 'tenc', so no IV
 * attribute. The key system is named by KEYFORMAT, one EXT-X-KEY per
 * format, all giving the same key:
 *
 *   KEYFORMAT="identity" (RFC 8216bis 5.1), URI = the license URL, whose
 *       GET answers the 16-byte key as the format wants, behind the same
 *       authorisation as its W3C ClearKey POST. The spec's one format
 *       for a plain key, and the one shaka-player (the built-in player)
 *       maps to ClearKey EME: it takes the KID from the init segment's
 *       'tenc' (HLS has no KID attribute for it);
 *   KEYFORMAT="urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e" (DASH-IF
 *       ClearKey), URI = the W3C ClearKey license URL (the MPD's laurl);
 *   KEYFORMAT="urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b" (W3C common
 *       PSSH), URI = data:text/plain;base64,<pssh box> carrying the KID,
 *       the way Widevine is signalled in HLS.
 *
 * The master's EXT-X-SESSION-KEY repeats only the last one: a session key
 * must match every EXT-X-KEY with its URI (RFC 8216bis 4.4.5.2), and the
 * first two share theirs. See docs/packaging.md and docs/playback.md.
 */

#ifndef MM_HLS_H
#define MM_HLS_H

#include "mpd.h"


/* master playlist: MM_OK, MM_EBADDATA (no video, no playlist names) */
mm_status_t mm_hls_master(const mm_pres_t *p, mm_buf_t *out);

/* media playlist of r (one of p's representations) */
mm_status_t mm_hls_media(const mm_pres_t *p, const mm_rep_t *r,
    mm_buf_t *out);


#endif /* MM_HLS_H */
