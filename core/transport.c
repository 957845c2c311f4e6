#include "core/transport.h"

#include "core/config.h"
#include "core/keys.h"
#include "core/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct sl_transport {
    void *ctx;
    int own_ctx;
    void *sock;
    sl_transport_role_t role;
    size_t max_bytes;
    char endpoint[512];
    zmq_msg_t frames[4]; /* last received message */
    int nframes;
    void *aligned; /* copy of a misaligned payload */
    size_t aligned_cap;
    /* handshake monitor (client, opts.monitor_handshake) */
    void *mon;       /* PAIR connected to the socket's monitor endpoint; NULL = not monitored */
    int curve;       /* CURVE on: a drop mid-handshake points at the server key */
    char key_fp[17]; /* fingerprint of our public key, for the refusal message */
    sl_transport_handshake_t hs;
};

/* Same diagnosis logged again at most this often. Process-wide, not per socket: a
 * refused client re-creates its socket after each backoff, and hundreds of virtual
 * clients share one diagnosis. */
#define HANDSHAKE_LOG_INTERVAL_S 30.0
static pthread_mutex_t hs_log_lock = PTHREAD_MUTEX_INITIALIZER;
static sl_handshake_outcome_t hs_logged; /* outcome of the last diagnosis logged; PENDING = none open */
static double hs_logged_at;

double sl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sl_peer_equal(const sl_peer_t *a, const sl_peer_t *b)
{
    return a->len == b->len && memcmp(a->id, b->id, a->len) == 0;
}

void sl_peer_format(const sl_peer_t *p, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    const char *pre = "peer ";
    for (const char *c = pre; *c && o + 1 < cap; c++)
        out[o++] = *c;
    for (size_t i = 0; i < p->len && o + 2 < cap; i++) {
        out[o++] = hex[p->id[i] >> 4];
        out[o++] = hex[p->id[i] & 15];
    }
    if (p->len == 0 && o + 12 < cap) {
        memcpy(out + o, "coordinator", 11);
        o += 11;
    }
    if (cap)
        out[o < cap ? o : cap - 1] = '\0';
}

void sl_transport_opts_from_config(sl_transport_opts_t *o, const struct sl_config *cfg,
                                   sl_transport_role_t role)
{
    memset(o, 0, sizeof *o);
    o->role = role;
    o->endpoint = role == SL_TRANSPORT_SERVER ? cfg->net.bind : cfg->net.coordinator;
    o->max_message_bytes = (size_t)cfg->net.max_message_bytes;
    o->heartbeat_ms = (int)cfg->net.heartbeat_ms;
}

static int zerr(const char *what)
{
    return sl_error(SL_ENET, "transport: %s: %s", what, zmq_strerror(zmq_errno()));
}

static int setopt_int(void *s, int opt, int v, const char *name)
{
    if (zmq_setsockopt(s, opt, &v, sizeof v) != 0)
        return zerr(name);
    return 0;
}

static void close_frames(sl_transport_t *t)
{
    for (int i = 0; i < t->nframes; i++)
        zmq_msg_close(&t->frames[i]);
    t->nframes = 0;
}

/* Watch the handshake events of t->sock (before connect, so none is missed). Inproc
 * endpoints are per context and a closed socket's endpoint may outlive zmq_close for a
 * moment, so every monitor gets a fresh name. */
static int monitor_start(sl_transport_t *t, const sl_transport_opts_t *o)
{
    static atomic_uint seq;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://sl-handshake-%u", atomic_fetch_add(&seq, 1));
    int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(t->sock, ep, events) != 0)
        return zerr("zmq_socket_monitor");
    t->mon = zmq_socket(t->ctx, ZMQ_PAIR);
    if (!t->mon)
        return zerr("monitor socket");
    int linger = 0;
    (void)zmq_setsockopt(t->mon, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(t->mon, ep) != 0)
        return zerr("monitor connect");
    t->curve = o->curve_secret_z85 != NULL;
    if (o->curve_public_z85)
        sl_key_fingerprint(o->curve_public_z85, t->key_fp);
    return 0;
}

static const char *protocol_error_name(unsigned code)
{
    switch (code) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND:
        return "unexpected command";
    case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_SEQUENCE:
        return "invalid sequence";
    case ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE:
        return "key exchange failed";
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_UNSPECIFIED:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_MESSAGE:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_HELLO:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_INITIATE:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_ERROR:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_READY:
    case ZMQ_PROTOCOL_ERROR_ZMTP_MALFORMED_COMMAND_WELCOME:
        return "malformed command";
    case ZMQ_PROTOCOL_ERROR_ZMTP_INVALID_METADATA:
        return "invalid metadata";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "cryptographic error: the coordinator's reply does not open with the pinned key";
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "security mechanism mismatch: one side has CURVE off";
    case ZMQ_PROTOCOL_ERROR_ZAP_INVALID_STATUS_CODE:
        return "ZAP status code not understood";
    default:
        return (code & 0xf0000000u) == ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED ? "ZAP reply malformed"
                                                                          : "unspecified";
    }
}

/* The diagnosis of the current failure streak into t->hs.message ("" if not yet one). */
static void handshake_diagnose(sl_transport_t *t)
{
    sl_transport_handshake_t *h = &t->hs;
    char *m = h->message;
    size_t cap = sizeof h->message;
    switch (h->outcome) {
    case SL_HANDSHAKE_REFUSED:
        snprintf(m, cap,
                 "coordinator %s refused this client's key %s (ZAP %d): is its .pub in the coordinator's "
                 "net.authorized_clients? (the coordinator also refuses a key in a ban cool-down, and any "
                 "key while it is at net.max_connections / net.max_connections_per_source)",
                 t->endpoint, t->key_fp[0] ? t->key_fp : "(none)", h->zap_status);
        break;
    case SL_HANDSHAKE_PROTOCOL:
        snprintf(m, cap, "%s handshake with %s failed (protocol error: %s, 0x%08x)%s",
                 t->curve ? "CURVE" : "ZMTP", t->endpoint, protocol_error_name(h->protocol_error),
                 h->protocol_error,
                 t->curve ? ": does net.server_public_key match the coordinator's key?" : "");
        break;
    case SL_HANDSHAKE_DROPPED:
        if (h->failures < SL_HANDSHAKE_DROPS_DIAGNOSED) {
            m[0] = '\0';
        } else if (t->curve) {
            snprintf(m, cap,
                     "CURVE handshake with %s failed: the coordinator closed the connection right after "
                     "our HELLO, %u times in a row (%s): does net.server_public_key match the coordinator's "
                     "key? (a coordinator without CURVE, or another service on that port, looks the same)",
                     t->endpoint, h->failures,
                     h->sys_errno ? strerror(h->sys_errno) : "no detail from libzmq");
        } else {
            snprintf(m, cap,
                     "handshake with %s failed: the peer closed the connection during the handshake, %u "
                     "times in a row (%s): does the coordinator require CURVE (net.server_public_key)?",
                     t->endpoint, h->failures,
                     h->sys_errno ? strerror(h->sys_errno) : "no detail from libzmq");
        }
        break;
    default:
        m[0] = '\0';
        break;
    }
}

/* One monitor event (two frames: 16-bit event + 32-bit value, then the address). */
static int monitor_read(void *mon, uint16_t *event, uint32_t *value)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        return 0;
    }
    int ok = zmq_msg_size(&f) == 6;
    if (ok) {
        memcpy(event, zmq_msg_data(&f), sizeof *event);
        memcpy(value, (uint8_t *)zmq_msg_data(&f) + 2, sizeof *value);
    }
    while (zmq_msg_more(&f)) { /* the address frame */
        zmq_msg_close(&f);
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, mon, 0) < 0)
            break;
    }
    zmq_msg_close(&f);
    return ok ? 1 : -1;
}

int sl_transport_handshake(sl_transport_t *t, sl_transport_handshake_t *out)
{
    if (!t->mon) {
        memset(out, 0, sizeof *out);
        return 0;
    }
    sl_transport_handshake_t *h = &t->hs;
    uint16_t ev = 0;
    uint32_t val = 0;
    int r;
    while ((r = monitor_read(t->mon, &ev, &val)) != 0) {
        if (r < 0)
            continue;
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            pthread_mutex_lock(&hs_log_lock); /* a later failure is news again */
            hs_logged = SL_HANDSHAKE_PENDING;
            pthread_mutex_unlock(&hs_log_lock);
            h->outcome = SL_HANDSHAKE_OK;
            h->failures = 0;
            h->succeeded++;
            h->message[0] = '\0';
            continue;
        }
        h->failures++;
        if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            h->outcome = SL_HANDSHAKE_REFUSED;
            h->zap_status = (int)val;
        } else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            h->outcome = SL_HANDSHAKE_PROTOCOL;
            h->protocol_error = val;
        } else {
            h->outcome = SL_HANDSHAKE_DROPPED;
            h->sys_errno = (int)val;
        }
        handshake_diagnose(t);
        if (!h->message[0])
            continue;
        double now = sl_now();
        pthread_mutex_lock(&hs_log_lock);
        int log = hs_logged != h->outcome || now - hs_logged_at >= HANDSHAKE_LOG_INTERVAL_S;
        if (log) {
            hs_logged = h->outcome;
            hs_logged_at = now;
        }
        pthread_mutex_unlock(&hs_log_lock);
        if (log)
            SL_ERROR("%s", h->message);
    }
    *out = *h;
    return 1;
}

int sl_transport_new(sl_transport_t **out, void *zmq_ctx, const sl_transport_opts_t *o)
{
    *out = NULL;
    if (!o || !o->endpoint || !o->endpoint[0])
        return sl_error(SL_EINVAL, "transport: no endpoint");
    if (strlen(o->endpoint) >= sizeof((sl_transport_t *)0)->endpoint)
        return sl_error(SL_EINVAL, "transport: endpoint too long");
    int rc = 0;
    sl_transport_t *t = calloc(1, sizeof *t);
    if (!t)
        return sl_error(SL_ENOMEM, "transport: out of memory");
    t->role = o->role;
    t->max_bytes = o->max_message_bytes ? o->max_message_bytes : (size_t)256 << 20;
    if (zmq_ctx) {
        t->ctx = zmq_ctx;
    } else {
        t->ctx = zmq_ctx_new();
        t->own_ctx = 1;
        if (!t->ctx) {
            rc = zerr("zmq_ctx_new");
            goto fail;
        }
    }
    t->sock = zmq_socket(t->ctx, o->role == SL_TRANSPORT_SERVER ? ZMQ_ROUTER : ZMQ_DEALER);
    if (!t->sock) {
        rc = zerr("zmq_socket");
        goto fail;
    }
    /* With CURVE, libzmq checks the size of the encrypted MESSAGE command that wraps each
     * frame ("\x07MESSAGE", 8-byte nonce, 16-byte MAC, 1 flags byte: 33 bytes more), so a
     * frame of exactly max_bytes would drop the connection: the limit is on our frames. */
    int64_t maxmsg = (int64_t)t->max_bytes + (o->curve_secret_z85 ? 33 : 0);
    if (zmq_setsockopt(t->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0) {
        rc = zerr("ZMQ_MAXMSGSIZE");
        goto fail;
    }
    if ((rc = setopt_int(t->sock, ZMQ_LINGER, o->linger_ms ? o->linger_ms : 1000, "ZMQ_LINGER")) ||
        (rc = setopt_int(t->sock, ZMQ_SNDTIMEO, o->send_timeout_ms ? o->send_timeout_ms : 5000,
                         "ZMQ_SNDTIMEO")))
        goto fail;
    /* queue depth: a round of big payloads must not be dropped at the HWM; the byte limit
     * per message and the engine's rate limit bound memory instead */
    if ((rc = setopt_int(t->sock, ZMQ_SNDHWM, 100000, "ZMQ_SNDHWM")) ||
        (rc = setopt_int(t->sock, ZMQ_RCVHWM, 100000, "ZMQ_RCVHWM")))
        goto fail;
    /* Dead peers. The client pings (ZMQ heartbeats) to notice a dead coordinator. The
     * coordinator keeps no ZMQ heartbeat timer per connection, and the client's pings
     * carry TTL 0 so they start none: libzmq 4.3 cancels a timer by scanning every timer
     * of its I/O thread and a heartbeat cancels one per message, so with thousands of
     * connections the I/O thread saturates and handshakes time out (measured: 5,000
     * clients never registered). The coordinator already hears of silent clients from
     * the application HEARTBEAT and its round deadlines; for a TCP peer that vanished
     * without a FIN, kernel keepalives (no cost to libzmq) close the connection. */
    if (o->heartbeat_ms > 0 && o->role == SL_TRANSPORT_CLIENT) {
        if ((rc = setopt_int(t->sock, ZMQ_HEARTBEAT_IVL, o->heartbeat_ms, "ZMQ_HEARTBEAT_IVL")) ||
            (rc = setopt_int(t->sock, ZMQ_HEARTBEAT_TIMEOUT, 3 * o->heartbeat_ms, "ZMQ_HEARTBEAT_TIMEOUT")))
            goto fail;
    }
    if (o->heartbeat_ms > 0 && o->role == SL_TRANSPORT_SERVER) {
        int idle_s = 3 * o->heartbeat_ms / 1000, intvl_s = o->heartbeat_ms / 1000;
        if ((rc = setopt_int(t->sock, ZMQ_TCP_KEEPALIVE, 1, "ZMQ_TCP_KEEPALIVE")) ||
            (rc = setopt_int(t->sock, ZMQ_TCP_KEEPALIVE_IDLE, idle_s > 1 ? idle_s : 1, "ZMQ_TCP_KEEPALIVE_IDLE")) ||
            (rc = setopt_int(t->sock, ZMQ_TCP_KEEPALIVE_INTVL, intvl_s > 1 ? intvl_s : 1, "ZMQ_TCP_KEEPALIVE_INTVL")) ||
            (rc = setopt_int(t->sock, ZMQ_TCP_KEEPALIVE_CNT, 3, "ZMQ_TCP_KEEPALIVE_CNT")))
            goto fail;
    }
    if (o->role == SL_TRANSPORT_SERVER) {
        if ((rc = setopt_int(t->sock, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY")))
            goto fail;
    } else {
        if (o->reconnect_ivl_ms > 0 &&
            (rc = setopt_int(t->sock, ZMQ_RECONNECT_IVL, o->reconnect_ivl_ms, "ZMQ_RECONNECT_IVL")))
            goto fail;
        /* don't queue messages for a connection that does not exist yet forever */
        if ((rc = setopt_int(t->sock, ZMQ_IMMEDIATE, 0, "ZMQ_IMMEDIATE")))
            goto fail;
    }
    /* ---- CURVE hook ---- */
    if (o->curve_secret_z85) {
        if (o->role == SL_TRANSPORT_SERVER) {
            if ((rc = setopt_int(t->sock, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER")))
                goto fail;
        } else {
            if (!o->curve_server_z85 || !o->curve_public_z85) {
                rc = sl_error(SL_EINVAL, "transport: CURVE client needs its public key and the server's key");
                goto fail;
            }
            if (zmq_setsockopt(t->sock, ZMQ_CURVE_SERVERKEY, o->curve_server_z85, 41) != 0 ||
                zmq_setsockopt(t->sock, ZMQ_CURVE_PUBLICKEY, o->curve_public_z85, 41) != 0) {
                rc = zerr("CURVE keys");
                goto fail;
            }
        }
        if (zmq_setsockopt(t->sock, ZMQ_CURVE_SECRETKEY, o->curve_secret_z85, 41) != 0) {
            rc = zerr("ZMQ_CURVE_SECRETKEY");
            goto fail;
        }
    }
    if (o->zap_domain && zmq_setsockopt(t->sock, ZMQ_ZAP_DOMAIN, o->zap_domain, strlen(o->zap_domain)) != 0) {
        rc = zerr("ZMQ_ZAP_DOMAIN");
        goto fail;
    }
    if (o->configure && (rc = o->configure(t->sock, o->configure_ctx)) < 0)
        goto fail;
    if (o->role == SL_TRANSPORT_CLIENT && o->monitor_handshake && (rc = monitor_start(t, o)))
        goto fail;
    if (o->role == SL_TRANSPORT_SERVER) {
        if (zmq_bind(t->sock, o->endpoint) != 0) {
            rc = sl_error(SL_ENET, "transport: bind %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
            goto fail;
        }
        size_t len = sizeof t->endpoint;
        if (zmq_getsockopt(t->sock, ZMQ_LAST_ENDPOINT, t->endpoint, &len) != 0)
            snprintf(t->endpoint, sizeof t->endpoint, "%s", o->endpoint);
    } else {
        if (zmq_connect(t->sock, o->endpoint) != 0) {
            rc = sl_error(SL_ENET, "transport: connect %s: %s", o->endpoint, zmq_strerror(zmq_errno()));
            goto fail;
        }
        snprintf(t->endpoint, sizeof t->endpoint, "%s", o->endpoint);
    }
    *out = t;
    return 0;
fail:
    sl_transport_destroy(&t);
    return rc ? rc : SL_ENET;
}

void sl_transport_destroy(sl_transport_t **pt)
{
    if (!pt || !*pt)
        return;
    sl_transport_t *t = *pt;
    close_frames(t);
    if (t->mon && t->sock) /* stop the monitor before closing its reader */
        (void)zmq_socket_monitor(t->sock, NULL, 0);
    if (t->mon)
        zmq_close(t->mon);
    if (t->sock)
        zmq_close(t->sock);
    if (t->own_ctx && t->ctx)
        zmq_ctx_term(t->ctx);
    free(t->aligned);
    free(t);
    *pt = NULL;
}

void *sl_transport_socket(sl_transport_t *t)
{
    return t->sock;
}
const char *sl_transport_endpoint(const sl_transport_t *t)
{
    return t->endpoint;
}

int sl_transport_send(sl_transport_t *t, const sl_peer_t *peer, const uint8_t *header, size_t header_len,
                      const void *payload, size_t payload_len)
{
    int more = payload_len ? ZMQ_SNDMORE : 0;
    if (t->role == SL_TRANSPORT_SERVER) {
        if (!peer || peer->len == 0)
            return sl_error(SL_EINVAL, "transport: server send without a peer");
        if (zmq_send(t->sock, peer->id, peer->len, ZMQ_SNDMORE) < 0)
            goto err;
    }
    if (zmq_send(t->sock, header, header_len, more) < 0)
        goto err;
    if (payload_len && zmq_send(t->sock, payload, payload_len, 0) < 0)
        goto err;
    return 0;
err:
    if (zmq_errno() == EHOSTUNREACH)
        return sl_error(SL_ENET, "transport: peer gone");
    if (zmq_errno() == EAGAIN)
        return sl_error(SL_ENET, "transport: send timed out");
    if (zmq_errno() == EINTR)
        return sl_error(SL_EINTR, "transport: send interrupted");
    return zerr("send");
}

struct sl_shared_buf {
    atomic_int refs;
    size_t size;
    void *data;
};

int sl_shared_buf_new(sl_shared_buf_t **out, size_t bytes)
{
    *out = NULL;
    sl_shared_buf_t *b = calloc(1, sizeof *b);
    void *d = NULL;
    if (!b || posix_memalign(&d, 16, bytes ? bytes : 16) != 0) {
        free(b);
        return sl_error(SL_ENOMEM, "transport: out of memory (%zu bytes)", bytes);
    }
    atomic_init(&b->refs, 1);
    b->size = bytes;
    b->data = d;
    *out = b;
    return 0;
}

void *sl_shared_buf_data(sl_shared_buf_t *b)
{
    return b->data;
}
size_t sl_shared_buf_size(const sl_shared_buf_t *b)
{
    return b->size;
}
void sl_shared_buf_retain(sl_shared_buf_t *b)
{
    atomic_fetch_add(&b->refs, 1);
}

static void shared_unref(sl_shared_buf_t *b)
{
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        free(b->data);
        free(b);
    }
}

void sl_shared_buf_release(sl_shared_buf_t **pb)
{
    if (!pb || !*pb)
        return;
    shared_unref(*pb);
    *pb = NULL;
}

static void zmq_release(void *data, void *hint)
{
    (void)data;
    shared_unref(hint);
}

int sl_transport_send_shared(sl_transport_t *t, const sl_peer_t *peer, const uint8_t *header,
                             size_t header_len, sl_shared_buf_t *buf, size_t len)
{
    if (!buf || len == 0 || len > buf->size)
        return sl_transport_send(t, peer, header, header_len, buf ? buf->data : NULL, 0);
    if (t->role == SL_TRANSPORT_SERVER) {
        if (!peer || peer->len == 0)
            return sl_error(SL_EINVAL, "transport: server send without a peer");
        if (zmq_send(t->sock, peer->id, peer->len, ZMQ_SNDMORE) < 0)
            goto err;
    }
    if (zmq_send(t->sock, header, header_len, ZMQ_SNDMORE) < 0)
        goto err;
    zmq_msg_t m;
    sl_shared_buf_retain(buf);
    if (zmq_msg_init_data(&m, buf->data, len, zmq_release, buf) != 0) {
        shared_unref(buf);
        return zerr("zmq_msg_init_data");
    }
    if (zmq_msg_send(&m, t->sock, 0) < 0) {
        zmq_msg_close(&m); /* releases our reference */
        goto err;
    }
    return 0;
err:
    if (zmq_errno() == EHOSTUNREACH)
        return sl_error(SL_ENET, "transport: peer gone");
    if (zmq_errno() == EAGAIN)
        return sl_error(SL_ENET, "transport: send timed out");
    return zerr("send");
}

int sl_transport_recv(sl_transport_t *t, sl_frame_t *out, int timeout_ms)
{
    memset(out, 0, sizeof *out);
    close_frames(t);
    if (timeout_ms != 0) { /* timeout 0: no poll syscall, just a non-blocking read below */
        zmq_pollitem_t it = {.socket = t->sock, .events = ZMQ_POLLIN};
        int n = zmq_poll(&it, 1, timeout_ms);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                return sl_error(SL_EINTR, "transport: interrupted");
            return zerr("poll");
        }
        if (n == 0 || !(it.revents & ZMQ_POLLIN))
            return SL_ETIMEOUT;
    }
    int total = 0, more = 1;
    size_t bytes = 0;
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_t *m = t->nframes < 4 ? &t->frames[t->nframes] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, t->sock, total == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close(m);
            if (zmq_errno() == EAGAIN && total == 0)
                return SL_ETIMEOUT;
            if (zmq_errno() == EINTR && total == 0)
                return sl_error(SL_EINTR, "transport: interrupted");
            close_frames(t);
            return zerr("recv");
        }
        bytes += zmq_msg_size(m);
        more = zmq_msg_more(m);
        total++;
        if (m == &tmp)
            zmq_msg_close(&tmp);
        else
            t->nframes++;
    }
    int first = 0;
    if (t->role == SL_TRANSPORT_SERVER) {
        size_t idlen = zmq_msg_size(&t->frames[0]);
        if (idlen <= SL_PEER_MAX) {
            memcpy(out->peer.id, zmq_msg_data(&t->frames[0]), idlen);
            out->peer.len = (uint8_t)idlen;
        } else {
            return sl_error(SL_EPROTO, "transport: routing id of %zu bytes", idlen);
        }
        first = 1;
    }
    if (t->nframes > first) {
        const char *uid = zmq_msg_gets(&t->frames[first], "User-Id");
        if (uid)
            snprintf(out->peer.user_id, sizeof out->peer.user_id, "%s", uid);
    }
    int content = total - first;
    if (content < 1 || content > 2)
        return sl_error(SL_EPROTO, "transport: message of %d frames (expected 1 or 2)", content);
    out->header = zmq_msg_data(&t->frames[first]);
    out->header_len = zmq_msg_size(&t->frames[first]);
    if (content == 2) {
        zmq_msg_t *p = &t->frames[first + 1];
        size_t plen = zmq_msg_size(p);
        const uint8_t *data = zmq_msg_data(p);
        if (((uintptr_t)data & 3u) != 0 && plen > 0) { /* float payloads read in place */
            if (plen > t->aligned_cap) {
                void *nb = NULL;
                if (posix_memalign(&nb, 16, plen) != 0) {
                    close_frames(t);
                    return sl_error(SL_ENOMEM, "transport: out of memory (%zu bytes)", plen);
                }
                free(t->aligned);
                t->aligned = nb;
                t->aligned_cap = plen;
            }
            memcpy(t->aligned, data, plen);
            data = t->aligned;
        }
        out->payload = data;
        out->payload_len = plen;
    }
    out->wire_bytes = bytes;
    return 0;
}
