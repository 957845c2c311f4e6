#include "privacy/secagg/shamir.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128_t;

#define P SL_SHAMIR_P

/* r in [0, 2p): subtract p when r >= p, without a branch. */
static uint64_t reduce_once(uint64_t r)
{
    uint64_t t = r - P;
    uint64_t keep_r = (uint64_t)((int64_t)t >> 63); /* all ones when r < p */
    return (r & keep_r) | (t & ~keep_r);
}

uint64_t sl_gf61_add(uint64_t a, uint64_t b) { return reduce_once(a + b); }

uint64_t sl_gf61_sub(uint64_t a, uint64_t b) { return reduce_once(a + P - b); }

uint64_t sl_gf61_mul(uint64_t a, uint64_t b)
{
    u128_t m = (u128_t)a * b; /* < 2^122 */
    uint64_t lo = (uint64_t)m & P;
    uint64_t hi = (uint64_t)(m >> 61); /* < 2^61 */
    return reduce_once(lo + hi);
}

uint64_t sl_gf61_inv(uint64_t a)
{
    uint64_t r = 1, base = a, e = P - 2;
    while (e) { /* e is public */
        if (e & 1)
            r = sl_gf61_mul(r, base);
        base = sl_gf61_mul(base, base);
        e >>= 1;
    }
    return r;
}

/* Limb i holds bytes [7i, 7i+7) of the secret, little-endian (the last one 4 bytes). */
static void secret_to_limbs(const uint8_t s[SL_SHAMIR_SECRET_BYTES], uint64_t limbs[SL_SHAMIR_LIMBS])
{
    for (int i = 0; i < SL_SHAMIR_LIMBS; i++) {
        uint64_t v = 0;
        for (int j = 6; j >= 0; j--) {
            int k = 7 * i + j;
            v = (v << 8) | (k < SL_SHAMIR_SECRET_BYTES ? s[k] : 0);
        }
        limbs[i] = v;
    }
}

static uint64_t random_element(sl_rng_t *rng)
{
    for (;;) {
        uint64_t r = rng ? sl_rng_u64(rng) : sl_csprng_u64();
        r &= P;
        if (r != P) /* rejects one value in 2^61: uniform on [0, p) */
            return r;
    }
}

void sl_shamir_eval(const uint64_t *const coef[SL_SHAMIR_LIMBS], size_t t, uint64_t x, sl_shamir_share_t *out)
{
    for (int l = 0; l < SL_SHAMIR_LIMBS; l++) {
        uint64_t acc = 0;
        for (size_t i = t; i-- > 0;) /* Horner: acc = acc * x + c_i */
            acc = sl_gf61_add(sl_gf61_mul(acc, x), coef[l][i]);
        out->v[l] = acc;
    }
}

int sl_shamir_split(const uint8_t secret[SL_SHAMIR_SECRET_BYTES], size_t t, const uint64_t *xs, size_t nshares,
                    sl_rng_t *rng, sl_shamir_share_t *out)
{
    if (t < 1 || t > nshares)
        return sl_error(SL_EINVAL, "shamir: threshold %zu not in [1, %zu]", t, nshares);
    for (size_t i = 0; i < nshares; i++) {
        if (xs[i] == 0 || xs[i] >= P)
            return sl_error(SL_EINVAL, "shamir: x coordinate %llu out of range", (unsigned long long)xs[i]);
        for (size_t j = 0; j < i; j++)
            if (xs[j] == xs[i])
                return sl_error(SL_EINVAL, "shamir: duplicate x coordinate %llu", (unsigned long long)xs[i]);
    }
    uint64_t *buf = calloc(SL_SHAMIR_LIMBS * t, sizeof *buf);
    if (!buf)
        return sl_error(SL_ENOMEM, "shamir: out of memory");
    const uint64_t *coef[SL_SHAMIR_LIMBS];
    uint64_t limbs[SL_SHAMIR_LIMBS];
    secret_to_limbs(secret, limbs);
    for (int l = 0; l < SL_SHAMIR_LIMBS; l++) {
        uint64_t *c = buf + (size_t)l * t;
        c[0] = limbs[l];
        for (size_t i = 1; i < t; i++)
            c[i] = random_element(rng);
        coef[l] = c;
    }
    for (size_t i = 0; i < nshares; i++)
        sl_shamir_eval(coef, t, xs[i], &out[i]);
    sodium_memzero(buf, SL_SHAMIR_LIMBS * t * sizeof *buf);
    sodium_memzero(limbs, sizeof limbs);
    free(buf);
    return 0;
}

int sl_shamir_combine(const uint64_t *xs, const sl_shamir_share_t *shares, size_t count,
                      uint8_t secret[SL_SHAMIR_SECRET_BYTES])
{
    if (count == 0)
        return sl_error(SL_EINVAL, "shamir: no shares to combine");
    for (size_t i = 0; i < count; i++) {
        if (xs[i] == 0 || xs[i] >= P)
            return sl_error(SL_EINVAL, "shamir: x coordinate %llu out of range", (unsigned long long)xs[i]);
        for (size_t j = 0; j < i; j++)
            if (xs[j] == xs[i])
                return sl_error(SL_EINVAL, "shamir: duplicate x coordinate %llu", (unsigned long long)xs[i]);
    }
    uint64_t limbs[SL_SHAMIR_LIMBS] = {0};
    for (size_t i = 0; i < count; i++) {
        /* lambda_i = prod_{j != i} x_j / (x_j - x_i): public */
        uint64_t num = 1, den = 1;
        for (size_t j = 0; j < count; j++) {
            if (j == i)
                continue;
            num = sl_gf61_mul(num, xs[j]);
            den = sl_gf61_mul(den, sl_gf61_sub(xs[j], xs[i]));
        }
        uint64_t lambda = sl_gf61_mul(num, sl_gf61_inv(den));
        for (int l = 0; l < SL_SHAMIR_LIMBS; l++)
            limbs[l] = sl_gf61_add(limbs[l], sl_gf61_mul(lambda, shares[i].v[l]));
    }
    /* Valid encodings: limbs 0..3 < 2^56, limb 4 < 2^32. Checked without early exit. */
    uint64_t bad = 0;
    for (int l = 0; l < SL_SHAMIR_LIMBS - 1; l++)
        bad |= limbs[l] >> 56;
    bad |= limbs[SL_SHAMIR_LIMBS - 1] >> 32;
    if (bad) {
        sodium_memzero(limbs, sizeof limbs);
        return sl_error(SL_ECRYPTO, "shamir: the %zu shares do not reconstruct a valid secret "
                                    "(too few or corrupt shares)", count);
    }
    for (int k = 0; k < SL_SHAMIR_SECRET_BYTES; k++)
        secret[k] = (uint8_t)(limbs[k / 7] >> (8 * (k % 7)));
    sodium_memzero(limbs, sizeof limbs);
    return 0;
}

void sl_shamir_share_encode(const sl_shamir_share_t *s, uint8_t out[SL_SHAMIR_SHARE_BYTES])
{
    for (int l = 0; l < SL_SHAMIR_LIMBS; l++)
        for (int b = 0; b < 8; b++)
            out[8 * l + b] = (uint8_t)(s->v[l] >> (8 * b));
}

int sl_shamir_share_decode(const uint8_t in[SL_SHAMIR_SHARE_BYTES], sl_shamir_share_t *s)
{
    for (int l = 0; l < SL_SHAMIR_LIMBS; l++) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--)
            v = (v << 8) | in[8 * l + b];
        if (v >= P)
            return sl_error(SL_EFORMAT, "shamir: share element %d is not below 2^61-1", l);
        s->v[l] = v;
    }
    return 0;
}
