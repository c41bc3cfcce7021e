/*
 * Doorbells over ZeroMQ with CURVE: see bell.h.
 */

#include <errno.h>
#include <string.h>
#include <zmq.h>

#include "bell.h"
#include "curvekey.h"
#include "log.h"


#define BELL_HWM      64
#define BELL_MSG_MAX  256
#define BELL_FRAME_MAX  8192    /* ZMQ_MAXMSGSIZE: the CURVE handshake too */


void *
bell_listen(void *zctx, const char *endpoint, const char *key_file,
    const char *zap_domain)
{
    int       one, linger, hwm;
    char      pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char      err[512];
    void     *sock;
    int64_t   maxmsg;

    if (mm_curvekey_load(key_file, pub, sec, err, sizeof(err)) != MM_OK) {
        log_warnx("%s", err);
        return NULL;
    }

    sock = zmq_socket(zctx, ZMQ_PULL);
    if (sock == NULL) {
        log_warnx("zmq_socket: %s", zmq_strerror(errno));
        explicit_bzero(sec, sizeof(sec));
        return NULL;
    }

    one = 1;
    linger = 0;
    hwm = BELL_HWM;
    maxmsg = BELL_FRAME_MAX;

    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec,
                          MM_CURVE_KEY_LEN + 1) != 0
        || zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, zap_domain,
                          strlen(zap_domain)) != 0
        || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg)) != 0
        || zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm)) != 0
        || zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0)
    {
        log_warnx("zmq_setsockopt: %s", zmq_strerror(errno));
        explicit_bzero(sec, sizeof(sec));
        zmq_close(sock);
        return NULL;
    }

    explicit_bzero(sec, sizeof(sec));

    if (zmq_bind(sock, endpoint) != 0) {
        log_warnx("zmq_bind %s: %s", endpoint, zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }

    log_info("doorbell on %s (CURVE server key %s)", endpoint, pub);

    return sock;
}


int
bell_drain(void *sock)
{
    int   n;
    char  buf[BELL_MSG_MAX];

    for (n = 0; n < 10000; n++) {
        if (zmq_recv(sock, buf, sizeof(buf), ZMQ_DONTWAIT) < 0) {
            break;
        }
    }

    return n;
}


void *
bell_connect(void *zctx, const char *endpoint, const char *key_file,
    const char *server_pub_file)
{
    int    linger, hwm;
    char   pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char   server[MM_CURVE_KEY_LEN + 1], err[512];
    void  *sock;

    if (mm_curvekey_load(key_file, pub, sec, err, sizeof(err)) != MM_OK
        || mm_curvekey_load(server_pub_file, server, NULL, err, sizeof(err))
           != MM_OK)
    {
        log_warnx("%s", err);
        explicit_bzero(sec, sizeof(sec));
        return NULL;
    }

    sock = zmq_socket(zctx, ZMQ_PUSH);
    if (sock == NULL) {
        log_warnx("zmq_socket: %s", zmq_strerror(errno));
        explicit_bzero(sec, sizeof(sec));
        return NULL;
    }

    linger = 0;
    hwm = BELL_HWM;

    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server,
                       MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec,
                          MM_CURVE_KEY_LEN) != 0
        || zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0
        || zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0
        || zmq_connect(sock, endpoint) != 0)
    {
        log_warnx("doorbell %s: %s", endpoint, zmq_strerror(errno));
        explicit_bzero(sec, sizeof(sec));
        zmq_close(sock);
        return NULL;
    }

    explicit_bzero(sec, sizeof(sec));

    return sock;
}


int
bell_ring(void *sock, const char *what)
{
    if (zmq_send(sock, what, strlen(what), ZMQ_DONTWAIT) < 0) {
        log_debug("doorbell: %s", zmq_strerror(errno));
        return -1;
    }

    return 0;
}
