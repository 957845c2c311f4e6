#include "core/rng.h"

#include "core/bytes.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

static const char rng_domain[] = "starling-rng-v1";

void sl_rng_init_key(sl_rng_t *rng, const uint8_t key[SL_RNG_KEY_BYTES])
{
    memcpy(rng->key, key, SL_RNG_KEY_BYTES);
    rng->block = 0;
    rng->pos = sizeof rng->buf;
}

void sl_rng_init(sl_rng_t *rng, uint64_t seed, const char *purpose, uint64_t round, uint64_t client)
{
    /* key = BLAKE2b-256(domain || seed || len(purpose) || purpose || round || client):
     * the length prefix keeps ("ab", ...) and ("a", "b"...) apart. */
    crypto_generichash_state st;
    uint8_t word[8];
    size_t plen = purpose ? strlen(purpose) : 0;
    crypto_generichash_init(&st, NULL, 0, SL_RNG_KEY_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)rng_domain, sizeof rng_domain);
    sl_put_le64(word, seed);
    crypto_generichash_update(&st, word, 8);
    sl_put_le64(word, (uint64_t)plen);
    crypto_generichash_update(&st, word, 8);
    if (plen)
        crypto_generichash_update(&st, (const uint8_t *)purpose, plen);
    sl_put_le64(word, round);
    crypto_generichash_update(&st, word, 8);
    sl_put_le64(word, client);
    crypto_generichash_update(&st, word, 8);
    uint8_t key[SL_RNG_KEY_BYTES];
    crypto_generichash_final(&st, key, sizeof key);
    sl_rng_init_key(rng, key);
    sodium_memzero(key, sizeof key);
}

void sl_rng_wipe(sl_rng_t *rng) { sodium_memzero(rng, sizeof *rng); }

static const uint8_t zero_nonce[crypto_stream_chacha20_NONCEBYTES];

static void refill(sl_rng_t *rng)
{
    static const uint8_t zeros[64];
    crypto_stream_chacha20_xor_ic(rng->buf, zeros, sizeof rng->buf, zero_nonce, rng->block, rng->key);
    rng->block++;
    rng->pos = 0;
}

void sl_rng_bytes(sl_rng_t *rng, void *out, size_t n)
{
    uint8_t *p = out;
    while (n > 0) {
        if (rng->pos == sizeof rng->buf) {
            /* Whole blocks straight into the output: the bulk path for masks. */
            if (n >= 64) {
                size_t blocks = n / 64;
                memset(p, 0, blocks * 64);
                crypto_stream_chacha20_xor_ic(p, p, blocks * 64, zero_nonce, rng->block, rng->key);
                rng->block += blocks;
                p += blocks * 64;
                n -= blocks * 64;
                continue;
            }
            refill(rng);
        }
        size_t take = sizeof rng->buf - rng->pos;
        if (take > n)
            take = n;
        memcpy(p, rng->buf + rng->pos, take);
        rng->pos += (unsigned)take;
        p += take;
        n -= take;
    }
}

uint64_t sl_rng_u64(sl_rng_t *rng)
{
    uint8_t b[8];
    sl_rng_bytes(rng, b, 8);
    return sl_get_le64(b);
}

uint32_t sl_rng_u32(sl_rng_t *rng)
{
    uint8_t b[4];
    sl_rng_bytes(rng, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

__extension__ typedef unsigned __int128 u128_t; /* gcc/clang; pedantic-clean via __extension__ */

/* Lemire's nearly-divisionless unbiased bounded integer, on a 64x64->128 product. */
static uint64_t bounded(uint64_t (*next)(void *), void *ctx, uint64_t n)
{
    u128_t m = (u128_t)next(ctx) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (u128_t)next(ctx) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

static uint64_t next_stream(void *ctx) { return sl_rng_u64(ctx); }
static uint64_t next_os(void *ctx)
{
    (void)ctx;
    return sl_csprng_u64();
}

uint64_t sl_rng_below(sl_rng_t *rng, uint64_t n) { return bounded(next_stream, rng, n); }

double sl_rng_uniform(sl_rng_t *rng) { return (double)(sl_rng_u64(rng) >> 11) * 0x1.0p-53; }

double sl_rng_normal(sl_rng_t *rng)
{
    /* 1 - u is in (0, 1], so the log is finite. */
    double u1 = 1.0 - sl_rng_uniform(rng);
    double u2 = sl_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void sl_rng_shuffle_u32(sl_rng_t *rng, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)sl_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

void sl_rng_shuffle_size(sl_rng_t *rng, size_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)sl_rng_below(rng, i);
        size_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

uint64_t sl_rng_tell(const sl_rng_t *rng)
{
    return rng->block * 64 - (sizeof rng->buf - rng->pos);
}

void sl_rng_seek(sl_rng_t *rng, uint64_t byte_offset)
{
    rng->block = byte_offset / 64;
    rng->pos = sizeof rng->buf;
    unsigned within = (unsigned)(byte_offset % 64);
    if (within) {
        refill(rng);
        rng->pos = within;
    }
}

int sl_csprng_init(void)
{
    if (sodium_init() < 0)
        return sl_error(SL_ECRYPTO, "libsodium failed to initialise (no OS entropy source?)");
    return 0;
}

void sl_csprng_bytes(void *out, size_t n) { randombytes_buf(out, n); }

uint64_t sl_csprng_u64(void)
{
    uint64_t v;
    randombytes_buf(&v, sizeof v);
    return v;
}

uint64_t sl_csprng_below(uint64_t n) { return bounded(next_os, NULL, n); }

double sl_csprng_uniform(void) { return (double)(sl_csprng_u64() >> 11) * 0x1.0p-53; }
