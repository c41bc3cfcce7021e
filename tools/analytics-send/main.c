/*
 * media-analytics-send -e endpoint -k client.key -s server.pub
 *                      [-b batch] [-w window] [-r resend_ms] [-p pause_ms]
 *                      [-t timeout_s] [-P] [-1]
 *
 * A test producer for media-analytics (docs/analytics-protocol.md): reads
 * JSON events one a line from stdin, sends them in batches of -b (100)
 * over a DEALER socket as a CURVE client, at most -w (32) batches in
 * flight, -p ms apart (0), and resends every batch not ACKed after -r ms
 * (1000), like the nginx module. The events of a batch are packed into
 * frames of up to 128 KB, '\n' between them, as the module does; -1 sends
 * one event a frame (the protocol's older form). -P first sends a PING
 * and also waits for its PONG. Prints one summary line on stdout:
 *
 *   events 1000 batches 10 acked 10 naked 0 resent 0 pong 0
 *
 * and exits 0 when every batch is ACKed, 3 when all are answered but some
 * were NAKed (reasons on stderr), 1 when -t seconds (30) pass first, 2 on
 * usage or setup errors.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "curvekey.h"


#define FRAME_MAX  (128 * 1024)     /* bytes of events a frame */


typedef struct {
    char      **lines;          /* the events, one a frame once packed */
    size_t     *lens;
    size_t      n;              /* events */
    size_t      nframes;
    uint64_t    sent_at;        /* 0: never sent */
    int         state;          /* 0 waiting, 1 ACK, 2 NAK */
} batch_t;


static uint64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


static void
usage(void)
{
    fprintf(stderr, "usage: media-analytics-send -e endpoint -k client.key "
            "-s server.pub [-b batch] [-w window] [-r resend_ms] "
            "[-p pause_ms] [-t timeout_s] [-P] [-1]\n");
    exit(2);
}


static void
put_be64(unsigned char *p, uint64_t v)
{
    int  i;

    for (i = 7; i >= 0; i--) {
        p[i] = (unsigned char) v;
        v >>= 8;
    }
}


static uint64_t
get_be64(const unsigned char *p)
{
    int       i;
    uint64_t  v;

    v = 0;
    for (i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }

    return v;
}


/*
 * The events of b joined by '\n' into frames of up to FRAME_MAX bytes (an
 * event bigger than that alone in one): b->lines then holds the frames.
 * 0, or -1 out of memory.
 */
static int
pack_batch(batch_t *b)
{
    char    *f, *p;
    size_t   i, j, k, size;

    for (i = 0; i < b->n; i = k) {
        size = b->lens[i];

        for (k = i + 1; k < b->n && size + 1 + b->lens[k] <= FRAME_MAX; k++) {
            size += 1 + b->lens[k];
        }

        f = malloc(size);
        if (f == NULL) {
            return -1;
        }

        p = f;

        for (j = i; j < k; j++) {
            if (j > i) {
                *p++ = '\n';
            }

            memcpy(p, b->lines[j], b->lens[j]);
            p += b->lens[j];
            free(b->lines[j]);
        }

        /* frames never outnumber the events they hold */
        b->lines[b->nframes] = f;
        b->lens[b->nframes] = size;
        b->nframes++;
    }

    return 0;
}


/* 0 sent, -1 would block (try later) */
static int
send_batch(void *sock, batch_t *b, uint64_t id)
{
    size_t         i;
    unsigned char  idb[8];

    put_be64(idb, id);

    if (zmq_send(sock, "EVENTS", 6, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        return -1;
    }

    /* once the first frame is queued the rest of the message follows */
    zmq_send(sock, idb, 8, b->nframes ? ZMQ_SNDMORE : 0);

    for (i = 0; i < b->nframes; i++) {
        zmq_send(sock, b->lines[i], b->lens[i],
                 i + 1 < b->nframes ? ZMQ_SNDMORE : 0);
    }

    return 0;
}


int
main(int argc, char **argv)
{
    int          ch, more, rc, linger, ping, pong, single;
    char        *line, *endpoint, *keyfile, *serverfile, err[512];
    char         pub[MM_CURVE_KEY_LEN + 1], sec[MM_CURVE_KEY_LEN + 1];
    char         spub[MM_CURVE_KEY_LEN + 1], frames[3][512];
    long         bsize, window, resend, pause_ms, timeout;
    void        *ctx, *sock;
    size_t       cap, nb, i, events, acked, naked, resent, inflight, next;
    size_t       flen[3], nf, len;
    ssize_t      n;
    batch_t     *batches, *b;
    uint64_t     base, id, now, deadline, last_send, wait;
    zmq_pollitem_t  item;

    endpoint = keyfile = serverfile = NULL;
    bsize = 100;
    window = 32;
    resend = 1000;
    pause_ms = 0;
    timeout = 30;
    ping = 0;
    pong = 0;
    single = 0;

    while ((ch = getopt(argc, argv, "e:k:s:b:w:r:p:t:P1")) != -1) {
        switch (ch) {
        case 'e': endpoint = optarg; break;
        case 'k': keyfile = optarg; break;
        case 's': serverfile = optarg; break;
        case 'b': bsize = atol(optarg); break;
        case 'w': window = atol(optarg); break;
        case 'r': resend = atol(optarg); break;
        case 'p': pause_ms = atol(optarg); break;
        case 't': timeout = atol(optarg); break;
        case 'P': ping = 1; break;
        case '1': single = 1; break;
        default: usage();
        }
    }

    if (endpoint == NULL || keyfile == NULL || serverfile == NULL
        || bsize < 1 || window < 1 || resend < 1 || timeout < 1)
    {
        usage();
    }

    if (mm_curvekey_load(keyfile, pub, sec, err, sizeof(err)) != MM_OK
        || mm_curvekey_load(serverfile, spub, NULL, err, sizeof(err))
           != MM_OK)
    {
        fprintf(stderr, "media-analytics-send: %s\n", err);
        return 2;
    }

    /* read every event, cut into batches */

    batches = NULL;
    cap = 0;
    nb = 0;
    events = 0;
    line = NULL;
    len = 0;

    while ((n = getline(&line, &len, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
            line[--n] = '\0';
        }

        if (n == 0) {
            continue;
        }

        if (nb == 0 || batches[nb - 1].n == (size_t) bsize) {
            if (nb == cap) {
                cap = cap ? cap * 2 : 64;
                batches = realloc(batches, cap * sizeof(batch_t));
                if (batches == NULL) {
                    perror("realloc");
                    return 2;
                }
            }

            b = &batches[nb++];
            memset(b, 0, sizeof(*b));
            b->lines = calloc((size_t) bsize, sizeof(char *));
            b->lens = calloc((size_t) bsize, sizeof(size_t));
            if (b->lines == NULL || b->lens == NULL) {
                perror("calloc");
                return 2;
            }
        }

        b = &batches[nb - 1];
        b->lines[b->n] = strdup(line);
        if (b->lines[b->n] == NULL) {
            perror("strdup");
            return 2;
        }
        b->lens[b->n] = (size_t) n;
        b->n++;
        events++;
    }

    free(line);

    for (i = 0; i < nb; i++) {
        if (single) {
            batches[i].nframes = batches[i].n;

        } else if (pack_batch(&batches[i]) != 0) {
            perror("malloc");
            return 2;
        }
    }

    /* the socket */

    ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);

    rc = 0;
    rc |= zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, spub, sizeof(spub));
    rc |= zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pub, sizeof(pub));
    rc |= zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, sizeof(sec));
    linger = 0;
    rc |= zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));

    if (rc != 0 || zmq_connect(sock, endpoint) != 0) {
        fprintf(stderr, "media-analytics-send: %s: %s\n", endpoint,
                zmq_strerror(errno));
        return 2;
    }

    base = ((uint64_t) time(NULL) << 24) ^ ((uint64_t) getpid() << 8);
    acked = naked = resent = inflight = 0;
    next = 0;
    last_send = 0;
    deadline = now_ms() + (uint64_t) timeout * 1000;
    rc = 1;

    if (ping) {
        unsigned char  pid[8];

        put_be64(pid, base - 1);
        zmq_send(sock, "PING", 4, ZMQ_SNDMORE);
        zmq_send(sock, pid, 8, 0);
    }

    for ( ;; ) {
        now = now_ms();

        if (acked + naked == nb && pong >= ping) {
            rc = naked ? 3 : 0;
            break;
        }

        if (now >= deadline) {
            fprintf(stderr, "media-analytics-send: timeout, %zu batches "
                    "not answered\n", nb - acked - naked);
            break;
        }

        /* resends first: the oldest unanswered batches */
        for (i = 0; i < next; i++) {
            b = &batches[i];
            if (b->state == 0 && b->sent_at + (uint64_t) resend <= now) {
                if (send_batch(sock, b, base + i) != 0) {
                    break;
                }
                b->sent_at = now;
                resent++;
            }
        }

        /* new batches within the window, pause_ms apart */
        while (next < nb && inflight < (size_t) window
               && now >= last_send + (uint64_t) pause_ms)
        {
            b = &batches[next];
            if (send_batch(sock, b, base + next) != 0) {
                break;
            }
            b->sent_at = now;
            last_send = now;
            inflight++;
            next++;

            if (pause_ms > 0) {
                break;
            }
        }

        /* wait for a reply or the next timer */
        wait = deadline - now;

        for (i = 0; i < next; i++) {
            if (batches[i].state == 0) {
                uint64_t at = batches[i].sent_at + (uint64_t) resend;
                if (at <= now) {
                    wait = 0;
                    break;
                }
                if (at - now < wait) {
                    wait = at - now;
                }
            }
        }

        if (next < nb && inflight < (size_t) window) {
            uint64_t at = last_send + (uint64_t) pause_ms;
            wait = at <= now ? 0 : (at - now < wait ? at - now : wait);
        }

        if (wait == 0) {
            wait = 1;           /* would block on a full pipe: do not spin */
        }

        item.socket = sock;
        item.fd = 0;
        item.events = ZMQ_POLLIN;
        item.revents = 0;

        if (zmq_poll(&item, 1, (long) wait) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }

        while (zmq_poll(&item, 1, 0) > 0 && (item.revents & ZMQ_POLLIN)) {
            nf = 0;

            do {
                size_t  ms;

                n = zmq_recv(sock, frames[nf < 3 ? nf : 2], 511, 0);
                if (n < 0) {
                    break;
                }
                if (nf < 3) {
                    flen[nf] = (size_t) (n > 511 ? 511 : n);
                    frames[nf][flen[nf]] = '\0';
                    nf++;
                }
                more = 0;
                ms = sizeof(more);
                zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ms);
            } while (more);

            if (nf < 2 || flen[1] != 8) {
                continue;
            }

            id = get_be64((unsigned char *) frames[1]);

            if (flen[0] == 4 && memcmp(frames[0], "PONG", 4) == 0) {
                pong += (id == base - 1);
                continue;
            }

            if (id < base || id - base >= next) {
                continue;
            }

            b = &batches[id - base];
            if (b->state != 0) {
                continue;
            }

            if (flen[0] == 3 && memcmp(frames[0], "ACK", 3) == 0) {
                b->state = 1;
                acked++;
                inflight--;

            } else if (flen[0] == 3 && memcmp(frames[0], "NAK", 3) == 0) {
                b->state = 2;
                naked++;
                inflight--;
                fprintf(stderr, "NAK batch %zu: %s\n", (size_t) (id - base),
                        nf > 2 ? frames[2] : "");
            }
        }
    }

    printf("events %zu batches %zu acked %zu naked %zu resent %zu pong %d\n",
           events, nb, acked, naked, resent, pong);

    zmq_close(sock);
    zmq_ctx_term(ctx);

    for (i = 0; i < nb; i++) {
        size_t  k;
        for (k = 0; k < batches[i].nframes; k++) {
            free(batches[i].lines[k]);
        }
        free(batches[i].lines);
        free(batches[i].lens);
    }
    free(batches);

    return rc;
}
