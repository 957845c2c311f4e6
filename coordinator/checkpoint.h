/* coordinator/checkpoint: the coordinator's state after a completed round, on disk.
 *
 * Written after every completed round with temp file + fsync + rename (+ fsync of the
 * folder), so a crash leaves either the previous or the new checkpoint, never a torn one.
 * Resuming from it reproduces an uninterrupted run bit for bit (sampling and client data
 * order derive from (seed, round), the global vector and the server-optimizer state are
 * stored exactly).
 *
 * Format (little-endian):
 *   magic "SLCKPT\r\n" (8) | u32 version (1) | u32 flags (0)
 *   u64 round | u64 seed | u64 attempt | u64 bytes_up | u64 bytes_down
 *   u64 n_rng | n_rng x u64 rng positions
 *   u64 dim | dim x f32 global
 *   u64 len | len bytes strategy state (sl_strategy_save)
 *   u64 len | len bytes extension state (e.g. the DP accountant; opaque here)
 *   32 bytes BLAKE2b-256 of everything before it
 * Any mismatch (magic, version, lengths past the end, trailing bytes, checksum) is
 * SL_EFORMAT naming the file and the problem.
 */
#ifndef SL_CHECKPOINT_H
#define SL_CHECKPOINT_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

#define SL_CHECKPOINT_VERSION 1
#define SL_CHECKPOINT_MAX_RNG 16

typedef struct {
    uint64_t round;    /* last completed round (the resumed run starts at round + 1) */
    uint64_t seed;     /* run.seed: a resume with a different seed is refused */
    uint64_t attempt;  /* reserved: retries already spent (0) */
    uint64_t bytes_up; /* cumulative traffic so far */
    uint64_t bytes_down;
    size_t n_rng;
    uint64_t rng[SL_CHECKPOINT_MAX_RNG]; /* stream positions of extensions (sl_rng_tell) */
    size_t dim;
    float *global;     /* (dim) */
    uint8_t *strategy; /* server-optimizer state */
    size_t strategy_len;
    uint8_t *ext; /* extension state */
    size_t ext_len;
} sl_checkpoint_t;

/* Serialize to a heap buffer (*out owned by the caller, free()). */
SL_NODISCARD int sl_checkpoint_encode(const sl_checkpoint_t *ck, uint8_t **out, size_t *len);
/* Parse `len` bytes; allocates ck's arrays (sl_checkpoint_free). `name` is for messages. */
SL_NODISCARD int sl_checkpoint_decode(const uint8_t *buf, size_t len, const char *name, sl_checkpoint_t *ck);
/* Atomic write: path.tmp, fsync, rename over path, fsync the folder. */
SL_NODISCARD int sl_checkpoint_write(const char *path, const sl_checkpoint_t *ck);
SL_NODISCARD int sl_checkpoint_read(const char *path, sl_checkpoint_t *ck);
/* Free the arrays of a decoded checkpoint and zero it. */
void sl_checkpoint_free(sl_checkpoint_t *ck);

#endif
