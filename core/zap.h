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

/* Counters for tests and metrics. */
typedef struct {
    unsigned long accepted, refused_unknown, refused_banned, malformed;
} sl_zap_stats_t;
sl_zap_stats_t sl_zap_stats(sl_zap_t *zap);

/* Stop the thread and free; NULL-safe, nulls *zap. Call before closing the context. */
void sl_zap_stop(sl_zap_t **zap);

#endif
