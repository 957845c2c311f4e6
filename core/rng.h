/* core/rng: the one source of randomness.
 *
 * Deterministic streams: a ChaCha20 keystream keyed by BLAKE2b(seed, purpose, round,
 * client), so sampling, shuffling and init are reproducible from the run seed, and a
 * resumed run can replay exactly (the stream position is part of the state).
 *
 * Secrets and DP noise come from the OS CSPRNG instead (sl_csprng_*), never from a
 * seeded stream, unless a test explicitly asks for one.
 */
#ifndef SL_RNG_H
#define SL_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SL_RNG_KEY_BYTES 32

typedef struct sl_rng {
    uint8_t key[SL_RNG_KEY_BYTES]; /* secret-ish: wiped by sl_rng_wipe */
    uint64_t block;                /* next ChaCha20 block to generate */
    uint8_t buf[64];               /* current keystream block */
    unsigned pos;                  /* bytes of buf already used (64 = empty) */
} sl_rng_t;

/* Derive a stream from (seed, purpose, round, client). `purpose` names the use
 * ("sample", "init", "shuffle", ...), so two uses never share a stream. */
void sl_rng_init(sl_rng_t *rng, uint64_t seed, const char *purpose, uint64_t round, uint64_t client);
/* A stream keyed directly by 32 bytes (e.g. a SecAgg seed). */
void sl_rng_init_key(sl_rng_t *rng, const uint8_t key[SL_RNG_KEY_BYTES]);
void sl_rng_wipe(sl_rng_t *rng);

void sl_rng_bytes(sl_rng_t *rng, void *out, size_t n);
uint64_t sl_rng_u64(sl_rng_t *rng);
uint32_t sl_rng_u32(sl_rng_t *rng);
/* Uniform in [0, n), unbiased (Lemire). n must be > 0. */
uint64_t sl_rng_below(sl_rng_t *rng, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double sl_rng_uniform(sl_rng_t *rng);
/* Standard normal (Box-Muller on two uniforms; no cached second value, so the stream
 * position alone determines the output). */
double sl_rng_normal(sl_rng_t *rng);
/* Fisher-Yates shuffle of n indices. */
void sl_rng_shuffle_u32(sl_rng_t *rng, uint32_t *idx, size_t n);
void sl_rng_shuffle_size(sl_rng_t *rng, size_t *idx, size_t n);

/* Position of the stream in bytes from its start, and a seek to it (for checkpoints). */
uint64_t sl_rng_tell(const sl_rng_t *rng);
void sl_rng_seek(sl_rng_t *rng, uint64_t byte_offset);

/* OS CSPRNG (libsodium randombytes). sl_csprng_init must succeed once before use. */
SL_NODISCARD int sl_csprng_init(void);
void sl_csprng_bytes(void *out, size_t n);
uint64_t sl_csprng_u64(void);
uint64_t sl_csprng_below(uint64_t n);
double sl_csprng_uniform(void);

#endif
