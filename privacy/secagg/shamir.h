/* privacy/secagg/shamir: t-of-n Shamir sharing of 32-byte secrets over GF(p), p = 2^61 - 1.
 *
 * Why this field: SecAgg+ shares two 256-bit secrets (the X25519 mask key s_u^SK and the
 * self-mask seed b_u) with up to k+1 holders, and k is not bounded by 255 (a GF(2^8)
 * scheme caps the holders at 255). GF(2^61-1) takes any number of holders, its product is
 * one 64x64->128 multiply plus a shift-and-add reduction (no tables, no secret-dependent
 * branches), and a 32-byte secret fits in 5 limbs of 56 bits (< p): a share is 5 field
 * elements = 40 bytes, 25% over the secret. The limbs are shared independently with
 * independent random polynomials of degree t-1.
 *
 * A reconstructed limb >= 2^56 (or a last limb >= 2^32) cannot come from a valid secret:
 * sl_shamir_combine reports it, so t-1 or corrupted shares are detected with probability
 * about 1 - 2^-49.
 *
 * Constant time: polynomial evaluation and the Lagrange combination touch secrets only
 * through field add/sub/mul, which are branch-free. Lagrange coefficients depend only on
 * the public x coordinates.
 */
#ifndef SL_SHAMIR_H
#define SL_SHAMIR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

#define SL_SHAMIR_P ((UINT64_C(1) << 61) - 1)
#define SL_SHAMIR_LIMBS 5
#define SL_SHAMIR_SECRET_BYTES 32
#define SL_SHAMIR_SHARE_BYTES (8 * SL_SHAMIR_LIMBS) /* 40: 5 little-endian u64 < p */

/* One share: the 5 limb polynomials evaluated at one x (x is the holder's index + 1). */
typedef struct sl_shamir_share {
    uint64_t v[SL_SHAMIR_LIMBS];
} sl_shamir_share_t;

/* Field arithmetic mod p (inputs < p, outputs < p), branch-free. Exposed for tests. */
uint64_t sl_gf61_add(uint64_t a, uint64_t b);
uint64_t sl_gf61_sub(uint64_t a, uint64_t b);
uint64_t sl_gf61_mul(uint64_t a, uint64_t b);
/* a^(p-2); a must be non-zero (public inputs only: used for Lagrange coefficients). */
uint64_t sl_gf61_inv(uint64_t a);

/* Split `secret` (32 bytes) into `nshares` shares at the x coordinates xs[i] (distinct,
 * non-zero, < p), any `t` of which reconstruct it (1 <= t <= nshares). Polynomial
 * coefficients come from `rng` (a seeded stream, for tests) or the OS CSPRNG if NULL.
 * Writes out[0..nshares). Returns SL_EINVAL on bad t, x or sizes. */
SL_NODISCARD int sl_shamir_split(const uint8_t secret[SL_SHAMIR_SECRET_BYTES], size_t t, const uint64_t *xs,
                                 size_t nshares, sl_rng_t *rng, sl_shamir_share_t *out);

/* Evaluate the given polynomials (coef[limb][0..t), constant term first) at x: the
 * deterministic core of split, for known-answer tests. */
void sl_shamir_eval(const uint64_t *const coef[SL_SHAMIR_LIMBS], size_t t, uint64_t x, sl_shamir_share_t *out);

/* Reconstruct the secret from `count` shares at distinct non-zero xs. With fewer than t
 * shares the result is a wrong value: SL_ECRYPTO when it is not a valid 32-byte encoding
 * (almost always), otherwise a wrong secret. Writes `secret` only on success. */
SL_NODISCARD int sl_shamir_combine(const uint64_t *xs, const sl_shamir_share_t *shares, size_t count,
                                   uint8_t secret[SL_SHAMIR_SECRET_BYTES]);

/* Share <-> 40 bytes (5 LE u64). Decoding rejects limbs >= p (SL_EFORMAT). */
void sl_shamir_share_encode(const sl_shamir_share_t *s, uint8_t out[SL_SHAMIR_SHARE_BYTES]);
SL_NODISCARD int sl_shamir_share_decode(const uint8_t in[SL_SHAMIR_SHARE_BYTES], sl_shamir_share_t *s);

#endif
