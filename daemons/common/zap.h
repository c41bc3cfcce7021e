/*
 * A ZAP handler (ZeroMQ RFC 27) that admits CURVE clients whose public key
 * is listed in a clients file: one Z85 key (40 chars) a line, '#' comment
 * lines, blank lines ignored. Everything else (other mechanisms, unknown
 * keys) is refused with 400.
 *
 * The REP socket is bound to inproc://zeromq.zap.01 in the caller's
 * context, so create the handler before binding any CURVE server socket and
 * poll zap_socket() in the loop, calling zap_handle() when it is readable.
 */

#ifndef MEDIA_ZAP_H
#define MEDIA_ZAP_H

#include <stddef.h>
#include <stdint.h>


typedef struct zap_s  zap_t;


/* loads the keys, binds; NULL on error (logged) */
zap_t *zap_new(void *zctx, const char *clients_file);
void zap_destroy(zap_t **zp);

/* rereads the clients file; on error keeps the old list; 0 or -1 */
int zap_reload(zap_t *z);

void *zap_socket(zap_t *z);

/* answers every pending request */
void zap_handle(zap_t *z);

/*
 * Reads a clients file into a malloc'd array of 32-byte keys (*keys may be
 * NULL when *n == 0). Errors are logged as file:line. 0 or -1.
 */
int zap_keys_load(const char *path, uint8_t (**keys)[32], size_t *n);

/*
 * What a CURVE server's config names: its key file (with the secret key)
 * and the clients file both load. 0 or -1 (logged); for a config check.
 */
int zap_check_files(const char *key_file, const char *clients_file);


#endif /* MEDIA_ZAP_H */
