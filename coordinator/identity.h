/* coordinator/identity: bind each client id to the CURVE key that first claimed it.
 *
 * With CURVE, every message carries the client's authenticated public key (the ZAP user
 * id). A device may run several virtual clients under one key, but a client id, once
 * claimed by a key, answers only to that key: one device cannot speak for another.
 * Used as the engine's authorize hook (sl_identity_authorize).
 */
#ifndef SL_IDENTITY_H
#define SL_IDENTITY_H

#include "core/error.h"
#include "core/transport.h"
#include "core/wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_identity sl_identity_t;

SL_NODISCARD int sl_identity_new(sl_identity_t **out, int require_key);
void sl_identity_destroy(sl_identity_t **id);

/* 0 if `user_id` may act as `client_id` (binding it on first use); SL_EPERM otherwise,
 * or when require_key is set and user_id is empty. */
SL_NODISCARD int sl_identity_bind(sl_identity_t *id, uint64_t client_id, const char *user_id);

/* The engine's authorize hook; ctx is an sl_identity_t. */
int sl_identity_authorize(void *ctx, uint64_t client_id, const sl_peer_t *peer, const sl_hello_info_t *hello);

#endif
