/* core/transport: the thin ZeroMQ shell around the sans-I/O federation cores.
 *
 * Coordinator: one ROUTER socket, bound ("tcp://0.0.0.0:7700", "ipc:///tmp/x.sock").
 * Client:      one DEALER socket per (virtual) client, connected.
 * Frames on the wire: [routing id (ROUTER side only)] [header] [payload (optional)].
 *
 * Set on every socket: ZMQ_MAXMSGSIZE (net.max_message_bytes, plus the 33 bytes CURVE
 * wraps each frame in; larger frames make libzmq drop the connection before we see them),
 * dead-peer detection from net.heartbeat_ms (client: ZMQ_HEARTBEAT_IVL / _TIMEOUT, pings
 * with TTL 0; coordinator: TCP keepalives, no per-connection libzmq timer: see
 * transport.c for why), ZMQ_SNDTIMEO,
 * ZMQ_LINGER (bounded clean shutdown), ZMQ_ROUTER_MANDATORY on the ROUTER (sending to a
 * gone peer is an error, not a silent drop).
 *
 * Security hook: sl_transport_opts_t carries CURVE keys (Z85, as core/keys.h stores them)
 * and a ZAP domain, and a configure() callback run on the socket before bind/connect, for
 * anything more (the security engineer plugs CurveZMQ + the ZAP allow-list handler here).
 * Each received message reports the ZAP user id (ZMQ "User-Id" metadata, e.g. the client's
 * public key as the ZAP handler set it) so the engine can bind a client id to a key.
 *
 * Handshake diagnosis (client, opts.monitor_handshake): libzmq never tells the
 * application why a connection does not come up; a client whose key the coordinator
 * refuses, or that pins the wrong server key, just hears nothing. With monitor_handshake
 * the transport watches the socket with zmq_socket_monitor and turns the handshake events
 * into one clear log line naming the likely cause (sl_transport_handshake). What libzmq
 * 4.3 reports on the client side, measured:
 *   - ZAP refused our key: HANDSHAKE_FAILED_AUTH with the status code (400), then
 *     DISCONNECTED, and libzmq does NOT reconnect (a protocol error ends the session):
 *     the socket is dead until re-created.
 *   - wrong server key: the coordinator cannot open our HELLO and closes the connection;
 *     the client sees HANDSHAKE_FAILED_NO_DETAIL (errno EPIPE or ECONNRESET) and
 *     DISCONNECTED, and libzmq reconnects every ZMQ_RECONNECT_IVL, failing again. One
 *     such drop is also what a coordinator killed mid-handshake looks like, so the cause
 *     is named only after SL_HANDSHAKE_DROPS_DIAGNOSED drops in a row.
 *   - HANDSHAKE_FAILED_PROTOCOL: a malformed or unexpected command (value:
 *     ZMQ_PROTOCOL_ERROR_*), e.g. a peer that is not a starling coordinator.
 * The monitor costs two more zmq sockets (two eventfds) and about 32 kB per monitored
 * socket (measured: 1,000 DEALERs, +32 MB RSS, +2,400 fds, creation 44 -> 128 ms), so
 * the client runtime monitors one socket per process (all its virtual clients share one
 * key pair and one coordinator, so they share the outcome).
 *
 * Not thread-safe: one transport per thread (they may share a zmq context).
 */
#ifndef SL_TRANSPORT_H
#define SL_TRANSPORT_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

#define SL_PEER_MAX    32 /* bytes of a routing id we accept (libzmq's own are 5) */
#define SL_USER_ID_MAX 64 /* bytes of a ZAP user id we keep (a Z85 key is 40) */

/* A peer as the ROUTER sees it: its routing id, plus the ZAP user id if authenticated. */
typedef struct {
    uint8_t id[SL_PEER_MAX];
    uint8_t len;                      /* 0 = the one peer of a DEALER (the coordinator) */
    char user_id[SL_USER_ID_MAX + 1]; /* "" without CURVE/ZAP */
} sl_peer_t;

/* Same routing id? (user ids are not compared: they belong to the connection). */
int sl_peer_equal(const sl_peer_t *a, const sl_peer_t *b);
/* Printable "peer 0a1b2c3d4e" for logs (hex of the id); `out` has room for 2*SL_PEER_MAX+8. */
void sl_peer_format(const sl_peer_t *p, char *out, size_t cap);

typedef enum { SL_TRANSPORT_SERVER = 0, SL_TRANSPORT_CLIENT = 1 } sl_transport_role_t;

typedef struct {
    sl_transport_role_t role;
    const char *endpoint;     /* bind (server) or connect (client) address */
    size_t max_message_bytes; /* ZMQ_MAXMSGSIZE and the frame checks; 0 = 256 MiB */
    int heartbeat_ms;         /* client: ZMQ_HEARTBEAT_IVL, TIMEOUT 3x; server: TCP keepalive; 0 = off */
    int send_timeout_ms;      /* ZMQ_SNDTIMEO; 0 = 5000 */
    int linger_ms;            /* ZMQ_LINGER at close; 0 = 1000 */
    int reconnect_ivl_ms;     /* client: ZMQ_RECONNECT_IVL; 0 = libzmq default */
    int monitor_handshake;    /* client: watch the handshake (see sl_transport_handshake) */
    /* ---- CURVE hook (all NULL = plain transport) ---- */
    const char *curve_public_z85; /* this side's key pair */
    const char *curve_secret_z85;
    const char *curve_server_z85; /* client: the coordinator's public key to pin */
    const char *zap_domain;       /* server: ZMQ_ZAP_DOMAIN (a ZAP handler must be running) */
    /* Called with the raw zmq socket after our options and before bind/connect; return 0
     * or a negative SL_E*. For options not modelled above. */
    int (*configure)(void *zmq_socket, void *ctx);
    void *configure_ctx;
} sl_transport_opts_t;

typedef struct sl_transport sl_transport_t;

/* Options from the configuration: endpoint (net.bind for the server, net.coordinator for a
 * client), net.max_message_bytes, net.heartbeat_ms; everything else zero (defaults, no
 * CURVE: the caller adds keys). The endpoint points into cfg (keep cfg alive). */
struct sl_config;
void sl_transport_opts_from_config(sl_transport_opts_t *o, const struct sl_config *cfg,
                                   sl_transport_role_t role);

/* One received message: views into frames owned by the transport, valid until the next
 * sl_transport_recv or destroy. payload is 4-byte aligned (copied if libzmq's buffer was
 * not, which it normally is) so float payloads are read in place. */
typedef struct {
    sl_peer_t peer;
    const uint8_t *header;
    size_t header_len;
    const uint8_t *payload; /* NULL if the message had one frame */
    size_t payload_len;
    size_t wire_bytes; /* header + payload bytes, for accounting */
} sl_frame_t;

/* Create the socket, apply options, bind or connect. `zmq_ctx` may be shared by several
 * transports of one process (NULL = the transport owns a fresh context). */
SL_NODISCARD int sl_transport_new(sl_transport_t **out, void *zmq_ctx, const sl_transport_opts_t *opts);
/* Close (with linger) and free; NULL-safe, nulls *t. */
void sl_transport_destroy(sl_transport_t **t);

/* The zmq socket, for zmq_poll over many transports (ZMQ_POLLIN). Borrowed. */
void *sl_transport_socket(sl_transport_t *t);
/* The endpoint actually bound (resolves a wildcard port to the chosen one). */
const char *sl_transport_endpoint(const sl_transport_t *t);

/* Send header (+ payload if payload_len > 0). Server: to `peer` (required); client: peer
 * is ignored. SL_ENET if the peer is gone (server) or the send timed out. */
SL_NODISCARD int sl_transport_send(sl_transport_t *t, const sl_peer_t *peer, const uint8_t *header,
                                   size_t header_len, const void *payload, size_t payload_len);

/* A reference-counted payload buffer for zero-copy broadcast: the coordinator sends the
 * same global vector to every sampled client; with a shared buffer libzmq references it
 * instead of copying it once per client, so the send queues stay O(model), not
 * O(clients x model). libzmq drops its references from its I/O thread (atomic count). */
typedef struct sl_shared_buf sl_shared_buf_t;
/* New buffer of `bytes` (16-byte aligned data), one reference held by the caller. */
SL_NODISCARD int sl_shared_buf_new(sl_shared_buf_t **out, size_t bytes);
void *sl_shared_buf_data(sl_shared_buf_t *b);
size_t sl_shared_buf_size(const sl_shared_buf_t *b);
void sl_shared_buf_retain(sl_shared_buf_t *b);
/* Drop one reference (frees at zero); NULL-safe, nulls *b. */
void sl_shared_buf_release(sl_shared_buf_t **b);

/* As sl_transport_send, with the payload taken from `buf` without copying (len <= size). */
SL_NODISCARD int sl_transport_send_shared(sl_transport_t *t, const sl_peer_t *peer, const uint8_t *header,
                                          size_t header_len, sl_shared_buf_t *buf, size_t len);

/* Receive one message, waiting up to timeout_ms (0 = don't wait, -1 = forever).
 * Returns 0 with *out filled, SL_ETIMEOUT if nothing arrived, SL_EINTR if a signal
 * interrupted the wait, SL_EPROTO for a message with a bad frame structure (no header,
 * more than two frames, over-long routing id: already drained and discarded; out->peer is
 * set so the caller can count it against the peer), SL_ENET on socket failure. */
SL_NODISCARD int sl_transport_recv(sl_transport_t *t, sl_frame_t *out, int timeout_ms);

/* Handshake outcome of a monitored client transport. */
typedef enum {
    SL_HANDSHAKE_PENDING = 0, /* no handshake has ended yet (or not monitored) */
    SL_HANDSHAKE_OK,          /* the last handshake succeeded */
    SL_HANDSHAKE_REFUSED,     /* the coordinator's ZAP handler refused our key (zap_status) */
    SL_HANDSHAKE_PROTOCOL,    /* protocol error (protocol_error = ZMQ_PROTOCOL_ERROR_*) */
    SL_HANDSHAKE_DROPPED,     /* the peer closed the connection during the handshake */
} sl_handshake_outcome_t;

/* Drops in a row before a DROPPED outcome is diagnosed as a key mismatch. */
#define SL_HANDSHAKE_DROPS_DIAGNOSED 3

typedef struct {
    sl_handshake_outcome_t outcome; /* of the last handshake that ended */
    int zap_status;                 /* REFUSED: the ZAP status code (400 = refused) */
    unsigned protocol_error;        /* PROTOCOL: ZMQ_PROTOCOL_ERROR_* */
    int sys_errno;                  /* DROPPED: the errno libzmq reported */
    unsigned failures;              /* handshakes failed in a row on this socket (0 after a success) */
    unsigned succeeded;             /* handshakes that succeeded on this socket */
    char message[384];              /* the diagnosis of the current failure streak, "" if none yet */
} sl_transport_handshake_t;

/* Read the handshake events that arrived since the last call (never waits), log a
 * diagnosis when failures start (ERROR, naming the likely cause and the setting to check;
 * the same diagnosis again at most every 30 s process-wide, at once after a success)
 * and copy the state to *out. Returns 1 if the transport is monitored,
 * 0 if not (*out zeroed). */
int sl_transport_handshake(sl_transport_t *t, sl_transport_handshake_t *out);

/* Monotonic clock in seconds (CLOCK_MONOTONIC): the `now` the sans-I/O cores take. */
double sl_now(void);

#endif
