/*
 * libcurl's multi interface driven from a zmq_poll loop (the "multi_socket"
 * way): libcurl says which sockets to watch (CURLMOPT_SOCKETFUNCTION) and
 * when it wants to be called without I/O (CURLMOPT_TIMERFUNCTION); the loop
 * adds those sockets as raw-fd poll items and hands back what fired.
 *
 *     n = curlm_poll_items(m, items + k, room, &timeout)   (timeout lowered)
 *     zmq_poll(...)
 *     curlm_process(m, items + k, n)        finished transfers -> done()
 *
 * done() is called once per finished transfer, with the transfer still
 * added: it calls curlm_remove() (and may start others).
 */

#ifndef MEDIA_CURLM_H
#define MEDIA_CURLM_H

#include <curl/curl.h>
#include <zmq.h>


typedef struct curlm_s  curlm_t;

typedef void (*curlm_done_pt)(void *arg, CURL *easy, CURLcode result);


/* NULL on error (logged); curl_global_init() is the caller's */
curlm_t *curlm_new(curlm_done_pt done, void *arg);
void curlm_destroy(curlm_t **mp);

CURLM *curlm_multi(curlm_t *m);

/* 0 or -1 (logged) */
int curlm_add(curlm_t *m, CURL *easy);
void curlm_remove(curlm_t *m, CURL *easy);

/* transfers added and not removed */
int curlm_transfers(const curlm_t *m);

/* sockets libcurl wants watched: the room curlm_poll_items() needs */
int curlm_sockets(const curlm_t *m);

/*
 * Fills up to room items with libcurl's sockets, returns how many, and
 * lowers *timeout (ms, -1 none) to libcurl's timer.
 */
int curlm_poll_items(curlm_t *m, zmq_pollitem_t *items, int room,
    long *timeout);

/* after zmq_poll on those items: socket actions, timer, finished ones */
void curlm_process(curlm_t *m, zmq_pollitem_t *items, int n);


/*
 * The private-address guard (SSRF) on the address a transfer actually
 * connects to, redirects included: CURLOPT_OPENSOCKETFUNCTION refuses
 * loopback, private, link-local, multicast and metadata addresses
 * (mm_addr_is_private) when g->on. A refused connection fails with
 * CURLE_COULDNT_CONNECT and sets g->refused and g->addr. g must outlive
 * the transfer. Also turns proxies off, so the guard sees the target.
 */
typedef struct {
    int     on;
    int     refused;
    char    addr[64];
} curlm_guard_t;

void curlm_guard(CURL *easy, curlm_guard_t *g);


#endif /* MEDIA_CURLM_H */
