#include "privacy/secagg/kdf.h"

#include "core/bytes.h"

#include <sodium.h>
#include <string.h>

static const char domain[] = "starling-secagg-v1";

/* domain || 0 || label || 0 || session || round */
static void start(crypto_generichash_state *st, const char *label, const uint8_t session[SL_SECAGG_SESSION_BYTES],
                  uint64_t round)
{
    uint8_t word[8];
    crypto_generichash_init(st, NULL, 0, SL_SECAGG_KEY_BYTES);
    crypto_generichash_update(st, (const uint8_t *)domain, sizeof domain); /* includes the NUL */
    crypto_generichash_update(st, (const uint8_t *)label, strlen(label) + 1);
    crypto_generichash_update(st, session, SL_SECAGG_SESSION_BYTES);
    sl_put_le64(word, round);
    crypto_generichash_update(st, word, 8);
}

void sl_secagg_kdf(const char *label, const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round,
                   const uint8_t pk_a[32], const uint8_t pk_b[32], const uint8_t shared[32],
                   uint8_t out[SL_SECAGG_KEY_BYTES])
{
    crypto_generichash_state st;
    start(&st, label, session, round);
    int a_first = memcmp(pk_a, pk_b, 32) <= 0;
    crypto_generichash_update(&st, a_first ? pk_a : pk_b, 32);
    crypto_generichash_update(&st, a_first ? pk_b : pk_a, 32);
    crypto_generichash_update(&st, shared, 32);
    crypto_generichash_final(&st, out, SL_SECAGG_KEY_BYTES);
    sodium_memzero(&st, sizeof st);
}

int sl_secagg_agree(const char *label, const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round,
                    const uint8_t my_sk[32], const uint8_t my_pk[32], const uint8_t their_pk[32],
                    uint8_t out[SL_SECAGG_KEY_BYTES])
{
    uint8_t shared[crypto_scalarmult_BYTES];
    if (crypto_scalarmult(shared, my_sk, their_pk) != 0) {
        sodium_memzero(shared, sizeof shared);
        return sl_error(SL_ECRYPTO, "secagg: X25519 with a low-order public key");
    }
    sl_secagg_kdf(label, session, round, my_pk, their_pk, shared, out);
    sodium_memzero(shared, sizeof shared);
    return 0;
}

void sl_secagg_commit(const uint8_t session[SL_SECAGG_SESSION_BYTES], uint64_t round, uint32_t index,
                      const uint8_t b[32], uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t word[4] = {(uint8_t)index, (uint8_t)(index >> 8), (uint8_t)(index >> 16), (uint8_t)(index >> 24)};
    start(&st, "bcommit", session, round);
    crypto_generichash_update(&st, word, 4);
    crypto_generichash_update(&st, b, 32);
    crypto_generichash_final(&st, out, 32);
    sodium_memzero(&st, sizeof st);
}
