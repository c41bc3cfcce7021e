/*
 * Doorbells: one-way "there is work" signals over ZeroMQ with CURVE (keys
 * made by media-keygen, as for analytics). A lost ring only delays the
 * work: the daemons also poll PostgreSQL.
 *
 *   listener: PULL, CURVE server, ZAP domain = name (zap_new() first)
 *   ringer:   PUSH, CURVE client, non-blocking sends, small queue
 */

#ifndef MEDIA_BELL_H
#define MEDIA_BELL_H


/* NULL on error (logged) */
void *bell_listen(void *zctx, const char *endpoint, const char *key_file,
    const char *zap_domain);

/* reads every message waiting; returns how many */
int bell_drain(void *sock);

/* NULL on error (logged); server_pub_file holds the listener's public key */
void *bell_connect(void *zctx, const char *endpoint, const char *key_file,
    const char *server_pub_file);

/* queues what (never blocks); 0, or -1 when the queue is full */
int bell_ring(void *sock, const char *what);


#endif /* MEDIA_BELL_H */
