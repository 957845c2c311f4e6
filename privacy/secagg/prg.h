/* privacy/secagg/prg: masks from a ChaCha20 keystream keyed by a 256-bit seed.
 *
 * mask(seed) is the keystream of ChaCha20 (djb variant: 64-bit nonce = 0, 64-bit block
 * counter from 0) read as little-endian uint32 words: word i is keystream bytes
 * [4i, 4i+4). With a zero nonce this is exactly the RFC 8439 block function output for
 * nonce 0, so the RFC test vectors apply. Masks are added in Z_{2^32} (natural uint32
 * wrap-around); a caller working in Z_{2^B}, B < 32, reduces with & (2^B - 1) at the end
 * (reduction mod 2^B is a ring homomorphism from Z_{2^32}).
 *
 * Speed: the keystream is generated in bulk, 16 KiB at a time into an L1-resident buffer
 * (libsodium's vectorised ChaCha20), and added to the accumulator chunk by chunk. Applying
 * many seeds is chunk-major (every seed over one chunk of the accumulator, then the next
 * chunk), so the accumulator chunk stays in cache. Threads split the vector range.
 */
#ifndef SL_SECAGG_PRG_H
#define SL_SECAGG_PRG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SL_PRG_SEED_BYTES 32

/* One mask to apply: acc += sign * mask(seed). sign is +1 or -1. */
typedef struct sl_prg_term {
    uint8_t seed[SL_PRG_SEED_BYTES];
    int sign;
} sl_prg_term_t;

/* acc[0..m) += sign * mask(seed)[0..m)  (acc is (m,) uint32, sign +1 or -1). */
void sl_prg_add(const uint8_t seed[SL_PRG_SEED_BYTES], int sign, uint32_t *acc, size_t m);

/* acc[0..m) += sum_j terms[j].sign * mask(terms[j].seed), chunk-major, on `threads`
 * threads (1 = the calling thread only; more split [0, m) into contiguous ranges).
 * Returns SL_ENOMEM / SL_EINVAL (thread creation failure falls back to one thread). */
SL_NODISCARD int sl_prg_apply(const sl_prg_term_t *terms, size_t nterms, uint32_t *acc, size_t m, unsigned threads);

/* The physical floor for benchmarks: generate `words` uint32 of keystream for each of
 * `nseeds` seeds (discarded), with the same chunking and threads as sl_prg_apply. */
SL_NODISCARD int sl_prg_keystream_only(const sl_prg_term_t *terms, size_t nterms, size_t words, unsigned threads);

#endif
