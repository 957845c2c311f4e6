/* core/zap: the coordinator's ZeroMQ authentication handler (ZAP, RFC 27/ZAP).
 *
 * With CURVE on, libzmq asks the handler bound at inproc://zeromq.zap.01 (in the same
 * zmq context as the coordinator's socket) whether each connecting client key may join.
 * This handler admits exactly the public keys of an allow-list (core/keys.h), refuses
 * keys that are banned for a cool-down (repeated invalid messages), logs every refusal
 * with the key's fingerprint, and sets the ZAP user id to the client's Z85 public key so
 * every message the coordinator receives carries the authenticated identity.
 *
 * It runs in its own thread; the allow-list can be swapped at run time (SIGHUP reload).
 *
 * Connection limits (sl_zap_limit_connections): the handler also caps concurrent
 * connections, overall and per source IP address. It counts the coordinator socket's open
 * connections from libzmq's socket monitor (ZMQ_EVENT_ACCEPTED / DISCONNECTED, with the
 * source taken from the accepted socket's peer address), and refuses a handshake whose
 * source already has more than max_per_source open connections (itself included) or when
 * the sum over sources of min(open, max_per_source) exceeds max_connections. Counting open
 * sockets rather than admitted handshakes is what makes the count exact: libzmq's
 * handshake events carry no socket, so an "admitted" connection cannot be matched with its
 * later DISCONNECTED, while every open socket has exactly one ACCEPTED and one
 * DISCONNECTED. It follows that admitted connections never exceed either cap. Connections
 * still in their handshake count too (libzmq closes them after ZMQ_HANDSHAKE_IVL, 30 s);
 * capping each source's share keeps one address from filling the overall cap with
 * half-open sockets. Peers over ipc:// (no IP address) are all the source "local", exempt
 * from the per-source cap (the socket file's permissions decide who may connect).
 */
#ifndef SL_ZAP_H
#define SL_ZAP_H

#include <signal.h>

#include "core/error.h"
#include "core/keys.h"

typedef struct sl_zap sl_zap_t;

/* Start the handler in `zmq_ctx` (borrowed; must outlive the handler). The handler takes
 * ownership of `*allow` (which is zeroed). Only one handler per context. */
SL_NODISCARD int sl_zap_start(sl_zap_t **out, void *zmq_ctx, sl_allowlist_t *allow);

/* Replace the allow-list with the one at `path` (a bad file keeps the old list). */
SL_NODISCARD int sl_zap_reload(sl_zap_t *zap, const char *path);

/* Reload the allow-list from `path` whenever *flag becomes non-zero (a SIGHUP handler
 * sets it; the handler thread clears it). Both borrowed; path copied. */
void sl_zap_watch_reload(sl_zap_t *zap, volatile sig_atomic_t *flag, const char *path);

/* Refuse `public_z85` for `seconds` (new connections only; the caller drops the current
 * one). Keys stay refused across reloads until the cool-down ends. */
void sl_zap_ban(sl_zap_t *zap, const char *public_z85, double seconds);

typedef struct {
    long max_connections; /* open connections in all (net.max_connections) */
    long max_per_source;  /* open connections from one IP address (net.max_connections_per_source) */
} sl_zap_limits_t;

/* Enforce `limits` on the connections of `router` (the coordinator's ROUTER, borrowed).
 * Call once, from the socket's thread, before it binds (the transport's configure hook),
 * so no connection escapes the count. Order at shutdown: close the socket, then
 * sl_zap_stop (libzmq would block on a monitor nobody reads). */
SL_NODISCARD int sl_zap_limit_connections(sl_zap_t *zap, void *router, const sl_zap_limits_t *limits);

/* Counters for tests and metrics; `connections` is the current number of open ones
 * (0 without sl_zap_limit_connections). */
typedef struct {
    unsigned long accepted, refused_unknown, refused_banned, refused_limit, malformed;
    unsigned long connections;
} sl_zap_stats_t;
sl_zap_stats_t sl_zap_stats(sl_zap_t *zap);

/* Stop the thread and free; NULL-safe, nulls *zap. Call before closing the context. */
void sl_zap_stop(sl_zap_t **zap);

#endif
