/*
 * libcurl multi_socket in a zmq_poll loop: see curlm.h.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "curlm.h"
#include "log.h"
#include "url.h"
#include "util.h"


typedef struct {
    curl_socket_t   fd;
    int             what;           /* CURL_POLL_IN / OUT / INOUT */
} curlm_sock_t;


struct curlm_s {
    CURLM           *multi;
    curlm_done_pt    done;
    void            *arg;
    curlm_sock_t    *socks;
    int              nsocks;
    int              cap;
    uint64_t         timer_at;      /* monotonic ms, 0 none */
    int              transfers;
};


static int curlm_socket_cb(CURL *easy, curl_socket_t fd, int what,
    void *userp, void *socketp);
static int curlm_timer_cb(CURLM *multi, long timeout_ms, void *userp);


curlm_t *
curlm_new(curlm_done_pt done, void *arg)
{
    curlm_t  *m;

    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        log_warn("calloc");
        return NULL;
    }

    m->done = done;
    m->arg = arg;

    m->multi = curl_multi_init();
    if (m->multi == NULL) {
        log_warnx("curl_multi_init failed");
        free(m);
        return NULL;
    }

    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, curlm_socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, curlm_timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);

    return m;
}


void
curlm_destroy(curlm_t **mp)
{
    curlm_t  *m;

    m = *mp;
    if (m == NULL) {
        return;
    }

    *mp = NULL;

    curl_multi_cleanup(m->multi);
    free(m->socks);
    free(m);
}


CURLM *
curlm_multi(curlm_t *m)
{
    return m->multi;
}


int
curlm_add(curlm_t *m, CURL *easy)
{
    CURLMcode  rc;

    rc = curl_multi_add_handle(m->multi, easy);
    if (rc != CURLM_OK) {
        log_warnx("curl_multi_add_handle: %s", curl_multi_strerror(rc));
        return -1;
    }

    m->transfers++;

    return 0;
}


void
curlm_remove(curlm_t *m, CURL *easy)
{
    if (curl_multi_remove_handle(m->multi, easy) == CURLM_OK) {
        m->transfers--;
    }
}


int
curlm_transfers(const curlm_t *m)
{
    return m->transfers;
}


int
curlm_sockets(const curlm_t *m)
{
    return m->nsocks;
}


static int
curlm_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
    void *socketp)
{
    curlm_t  *m = userp;

    int            i;
    curlm_sock_t  *s;

    for (i = 0; i < m->nsocks; i++) {
        if (m->socks[i].fd == fd) {
            break;
        }
    }

    if (what == CURL_POLL_REMOVE) {
        if (i < m->nsocks) {
            m->socks[i] = m->socks[--m->nsocks];
        }
        return 0;
    }

    if (i == m->nsocks) {
        if (m->nsocks == m->cap) {
            s = realloc(m->socks, sizeof(curlm_sock_t)
                                  * (size_t) (m->cap ? m->cap * 2 : 16));
            if (s == NULL) {
                log_warn("realloc");
                return -1;
            }
            m->socks = s;
            m->cap = m->cap ? m->cap * 2 : 16;
        }
        m->nsocks++;
    }

    m->socks[i].fd = fd;
    m->socks[i].what = what;

    return 0;
}


static int
curlm_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    curlm_t  *m = userp;

    if (timeout_ms < 0) {
        m->timer_at = 0;

    } else {
        /* 0 means "as soon as possible": at least one loop turn away */
        m->timer_at = now_mono_ms() + (uint64_t) timeout_ms;
        if (m->timer_at == 0) {
            m->timer_at = 1;
        }
    }

    return 0;
}


int
curlm_poll_items(curlm_t *m, zmq_pollitem_t *items, int room, long *timeout)
{
    int       i, n;
    uint64_t  now;
    long      t;

    n = 0;

    for (i = 0; i < m->nsocks && n < room; i++) {
        if (m->socks[i].what == CURL_POLL_NONE) {
            continue;
        }

        items[n].socket = NULL;
        items[n].fd = m->socks[i].fd;
        items[n].events = 0;
        if (m->socks[i].what & CURL_POLL_IN) {
            items[n].events |= ZMQ_POLLIN;
        }
        if (m->socks[i].what & CURL_POLL_OUT) {
            items[n].events |= ZMQ_POLLOUT;
        }
        items[n].revents = 0;
        n++;
    }

    if (m->timer_at != 0) {
        now = now_mono_ms();
        t = m->timer_at > now ? (long) (m->timer_at - now) : 0;
        if (*timeout < 0 || t < *timeout) {
            *timeout = t;
        }
    }

    return n;
}


void
curlm_process(curlm_t *m, zmq_pollitem_t *items, int n)
{
    int        i, running, left, flags;
    CURL      *easy;
    CURLcode   result;
    CURLMsg   *msg;

    for (i = 0; i < n; i++) {
        if (items[i].revents == 0) {
            continue;
        }

        flags = 0;
        if (items[i].revents & ZMQ_POLLIN) {
            flags |= CURL_CSELECT_IN;
        }
        if (items[i].revents & ZMQ_POLLOUT) {
            flags |= CURL_CSELECT_OUT;
        }
        if (items[i].revents & ZMQ_POLLERR) {
            flags |= CURL_CSELECT_ERR;
        }

        curl_multi_socket_action(m->multi, items[i].fd, flags, &running);
    }

    if (m->timer_at != 0 && now_mono_ms() >= m->timer_at) {
        m->timer_at = 0;
        curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }

    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        result = msg->data.result;

        m->done(m->arg, easy, result);
    }
}


static curl_socket_t
curlm_guard_open(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *address)
{
    curlm_guard_t  *g = clientp;

    const void  *a;

    if (g->on && mm_addr_is_private(&address->addr)) {
        g->refused = 1;

        if (address->family == AF_INET6) {
            a = &((struct sockaddr_in6 *) &address->addr)->sin6_addr;
        } else {
            a = &((struct sockaddr_in *) &address->addr)->sin_addr;
        }

        if (inet_ntop(address->family, a, g->addr, sizeof(g->addr)) == NULL)
        {
            strcpy(g->addr, "?");
        }

        log_info("refused a connection to %s: a private address", g->addr);

        return CURL_SOCKET_BAD;
    }

    return socket(address->family, address->socktype, address->protocol);
}


void
curlm_guard(CURL *easy, curlm_guard_t *g)
{
    g->refused = 0;
    g->addr[0] = '\0';

    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, curlm_guard_open);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, g);
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
}
