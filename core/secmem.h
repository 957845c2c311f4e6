/* core/secmem: memory for secrets (key pairs, SecAgg key material).
 *
 *   sl_keypair_t *kp = sl_secret_alloc(sizeof *kp);   (zeroed; NULL when out of memory)
 *   ...
 *   sl_secret_free(kp);                                (wiped, unlocked, unmapped)
 *
 * Backed by sodium_malloc: the block sits between inaccessible guard pages with a canary
 * (an overrun faults instead of leaking into a neighbour), is excluded from core dumps,
 * and is locked in RAM (mlock) so it never reaches swap. Locking is best effort: when
 * RLIMIT_MEMLOCK is exhausted the block is still guarded and wiped on free; that is
 * logged once, at debug level, and is never an error. Each block costs a few pages of
 * address space: use it for small secrets, not for model-sized buffers.
 */
#ifndef SL_SECMEM_H
#define SL_SECMEM_H

#include <stddef.h>

/* Zeroed secret memory of `n` bytes (n > 0), or NULL when out of memory. */
void *sl_secret_alloc(size_t n);

/* Wipe and free a block from sl_secret_alloc; NULL-safe. */
void sl_secret_free(void *p);

/* Blocks that could not be locked so far (for tests and diagnostics). */
unsigned long sl_secret_unlocked_count(void);

#endif
