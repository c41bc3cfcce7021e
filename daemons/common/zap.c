/*
 * ZAP handler with a file of allowed CURVE client keys: see zap.h.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "curvekey.h"
#include "log.h"
#include "zap.h"


#define ZAP_ENDPOINT  "inproc://zeromq.zap.01"
#define ZAP_FRAMES    16


struct zap_s {
    void       *sock;
    char       *path;
    uint8_t   (*keys)[32];
    size_t      nkeys;
};


static void zap_reply(zap_t *z, zmq_msg_t *version, zmq_msg_t *request_id,
    const char *code, const char *text, const char *user);


int
zap_check_files(const char *key_file, const char *clients_file)
{
    char        pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char        err[512];
    size_t      n;
    uint8_t   (*keys)[32];

    if (mm_curvekey_load(key_file, pub, sec, err, sizeof(err)) != MM_OK) {
        log_warnx("curve_key_file: %s", err);
        return -1;
    }

    explicit_bzero(sec, sizeof(sec));

    if (zap_keys_load(clients_file, &keys, &n) != 0) {
        return -1;
    }

    free(keys);

    return 0;
}


int
zap_keys_load(const char *path, uint8_t (**keys)[32], size_t *n)
{
    int        lineno;
    char       line[512], *p;
    FILE      *f;
    size_t     len, count, cap;
    uint8_t  (*k)[32], (*nk)[32];

    *keys = NULL;
    *n = 0;

    f = fopen(path, "r");
    if (f == NULL) {
        log_warn("%s", path);
        return -1;
    }

    k = NULL;
    count = 0;
    cap = 0;
    lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;

        p = line;
        while (isspace((unsigned char) *p)) {
            p++;
        }

        len = strlen(p);
        while (len > 0 && isspace((unsigned char) p[len - 1])) {
            p[--len] = '\0';
        }

        if (len == 0 || *p == '#') {
            continue;
        }

        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            nk = realloc(k, cap * sizeof(*k));
            if (nk == NULL) {
                log_warn("realloc");
                goto failed;
            }
            k = nk;
        }

        if (len != 40 || zmq_z85_decode(k[count], p) == NULL) {
            log_warnx("%s:%d: not a Z85 CURVE public key (40 chars)",
                      path, lineno);
            goto failed;
        }

        count++;
    }

    if (ferror(f)) {
        log_warn("%s", path);
        goto failed;
    }

    fclose(f);

    *keys = k;
    *n = count;

    return 0;

failed:

    fclose(f);
    free(k);

    return -1;
}


zap_t *
zap_new(void *zctx, const char *clients_file)
{
    int     linger;
    zap_t  *z;

    z = calloc(1, sizeof(*z));
    if (z == NULL) {
        log_warn("calloc");
        return NULL;
    }

    z->path = strdup(clients_file);
    if (z->path == NULL) {
        log_warn("strdup");
        goto failed;
    }

    if (zap_keys_load(z->path, &z->keys, &z->nkeys) != 0) {
        goto failed;
    }

    if (z->nkeys == 0) {
        log_warnx("%s: no client keys: every client will be refused",
                  z->path);
    }

    z->sock = zmq_socket(zctx, ZMQ_REP);
    if (z->sock == NULL) {
        log_warnx("zmq_socket: %s", zmq_strerror(errno));
        goto failed;
    }

    linger = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof(linger));

    if (zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        log_warnx("zmq_bind %s: %s", ZAP_ENDPOINT, zmq_strerror(errno));
        goto failed;
    }

    return z;

failed:

    zap_destroy(&z);

    return NULL;
}


void
zap_destroy(zap_t **zp)
{
    zap_t  *z;

    z = *zp;
    if (z == NULL) {
        return;
    }

    *zp = NULL;

    if (z->sock != NULL) {
        zmq_close(z->sock);
    }

    free(z->keys);
    free(z->path);
    free(z);
}


int
zap_reload(zap_t *z)
{
    size_t     n;
    uint8_t  (*keys)[32];

    if (zap_keys_load(z->path, &keys, &n) != 0) {
        log_warnx("%s: keeping the %zu client keys loaded before",
                  z->path, z->nkeys);
        return -1;
    }

    free(z->keys);
    z->keys = keys;
    z->nkeys = n;

    log_info("%s: %zu client keys", z->path, n);

    return 0;
}


void *
zap_socket(zap_t *z)
{
    return z->sock;
}


static void
zap_reply(zap_t *z, zmq_msg_t *version, zmq_msg_t *request_id,
    const char *code, const char *text, const char *user)
{
    zmq_send(z->sock, zmq_msg_data(version), zmq_msg_size(version),
             ZMQ_SNDMORE);
    zmq_send(z->sock, zmq_msg_data(request_id), zmq_msg_size(request_id),
             ZMQ_SNDMORE);
    zmq_send(z->sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(z->sock, "", 0, 0);
}


/*
 * Request frames: version, request id, domain, address, identity,
 * mechanism, credentials... (CURVE: one frame, the 32-byte client key).
 */
void
zap_handle(zap_t *z)
{
    int         more, n, i, first;
    char        user[41], *mech;
    size_t      size, k;
    zmq_msg_t   f[ZAP_FRAMES], extra, *m;

    for ( ;; ) {
        n = 0;
        more = 1;
        first = 1;

        while (more) {
            m = n < ZAP_FRAMES ? &f[n] : &extra;
            zmq_msg_init(m);

            if (zmq_msg_recv(m, z->sock, first ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(m);
                if (first) {
                    return;
                }
                break;
            }

            first = 0;
            more = zmq_msg_more(m);

            if (m == &extra) {
                zmq_msg_close(m);

            } else {
                n++;
            }
        }

        if (n < 6) {
            log_warnx("zap: malformed request (%d frames)", n);
            /* a REP socket must answer before it can receive again */
            zmq_send(z->sock, "", 0, 0);
            goto next;
        }

        mech = zmq_msg_data(&f[5]);
        size = zmq_msg_size(&f[5]);

        if (size != 5 || memcmp(mech, "CURVE", 5) != 0 || n != 7
            || zmq_msg_size(&f[6]) != 32)
        {
            log_warnx("zap: refused a client with mechanism %.*s",
                      (int) (size < 16 ? size : 16), mech);
            zap_reply(z, &f[0], &f[1], "400", "CURVE only", "");
            goto next;
        }

        for (k = 0; k < z->nkeys; k++) {
            if (memcmp(z->keys[k], zmq_msg_data(&f[6]), 32) == 0) {
                break;
            }
        }

        zmq_z85_encode(user, zmq_msg_data(&f[6]), 32);

        if (k == z->nkeys) {
            log_warnx("zap: refused unknown client key %s", user);
            zap_reply(z, &f[0], &f[1], "400", "unknown key", "");
            goto next;
        }

        log_debug("zap: accepted client key %s", user);
        zap_reply(z, &f[0], &f[1], "200", "OK", user);

    next:

        for (i = 0; i < n; i++) {
            zmq_msg_close(&f[i]);
        }
    }
}
