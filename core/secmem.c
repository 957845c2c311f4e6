#include "core/secmem.h"

#include "core/log.h"

#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

static atomic_ulong unlocked;

void *sl_secret_alloc(size_t n)
{
    if (n == 0 || sodium_init() < 0)
        return NULL;
    /* sodium_malloc puts the block against the trailing guard page, so its alignment is
     * that of the size: round up to 16 for structs with any member type */
    if (n > SIZE_MAX - 15)
        return NULL;
    n = (n + 15) & ~(size_t)15;
    void *p = sodium_malloc(n);
    if (!p)
        return NULL;
    memset(p, 0, n); /* sodium_malloc fills with 0xdb */
    /* sodium_malloc already tried mlock and ignores a failure; ask again to learn the
     * outcome (locks do not stack, so this is free when it worked) */
    if (sodium_mlock(p, n) != 0) {
        int err = errno;
        if (atomic_fetch_add(&unlocked, 1) == 0)
            SL_DEBUG("secmem: cannot lock secret memory in RAM (%s; raise RLIMIT_MEMLOCK, ulimit -l): "
                     "secrets are still wiped after use",
                     strerror(err));
    }
    return p;
}

void sl_secret_free(void *p)
{
    if (p)
        sodium_free(p); /* wipes, munlocks and unmaps */
}

unsigned long sl_secret_unlocked_count(void)
{
    return atomic_load(&unlocked);
}
