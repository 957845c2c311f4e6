/* privacy/secagg/kdf: X25519 key agreement and BLAKE2b key derivation for SecAgg+.
 *
 *   key = BLAKE2b-256(  "starling-secagg-v1" || 0x00 || label || 0x00
 *                    || session (16) || round (u64 LE)
 *                    || min(pk_a, pk_b) || max(pk_a, pk_b)      (bytewise order)
 *                    || X25519(sk_a, pk_b) )
 *
 * Both ends derive the same key (the public keys are ordered), distinct per label
 * ("enc" for share encryption, "mask" for pairwise masks), per session and per round.
 */
#ifndef SL_SECAGG_KDF_H
#define SL_SECAGG_KDF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SL_SECAGG_KEY_BYTES 32
#define SL_SECAGG_SESSION_BYTES 16

/* The derivation above from an already computed shared secret (for known-answer tests). */
void sl_secagg_kdf(const char *label, const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round,
                   const uint8_t pk_a[32], const uint8_t pk_b[32], const uint8_t shared[32],
                   uint8_t out[SL_SECAGG_KEY_BYTES]);

/* X25519(my_sk, their_pk) then sl_secagg_kdf. SL_ECRYPTO if their_pk is a low-order point
 * (all-zero shared secret). `out` is a secret: the caller wipes it. */
SL_NODISCARD int sl_secagg_agree(const char *label, const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round,
                                 const uint8_t my_sk[32], const uint8_t my_pk[32], const uint8_t their_pk[32],
                                 uint8_t out[SL_SECAGG_KEY_BYTES]);

/* Commitment to a self-mask seed, checked by the server after reconstruction:
 * BLAKE2b-256("starling-secagg-v1" || 0 || "bcommit" || 0 || session || round || index || b). */
void sl_secagg_commit(const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round, uint32_t index,
                      const uint8_t b[32], uint8_t out[32]);

#endif
