/* privacy/secagg/quantize: float updates <-> integers in Z_{2^B} for secure aggregation.
 *
 *   q_i = SR(clip(w * x_i, -c, c) * s),   s = (2^(b-1) - 1) / c
 *
 * with SR stochastic rounding (floor(y) + [u < y - floor(y)], u uniform: unbiased), so
 * q_i is a signed b-bit integer in [-(2^(b-1) - 1), 2^(b-1) - 1], stored in Z_{2^B} as
 * q_i mod 2^B (two's complement). The weight w multiplies the update before clipping
 * (weighted FedAvg: send w x and divide the sum by the sum of weights). A distributed-DP
 * noise share (integers, e.g. discrete Gaussian from privacy/dp) is added after rounding.
 *
 * The sum of n clients lies in [-n (2^(b-1) - 1), n (2^(b-1) - 1)] (plus noise), so
 *   B = b + ceil(log2 n) + headroom
 * bits make it exact; decoding lifts the sum to the centred range [-2^(B-1), 2^(B-1)).
 * B is capped at 32 (one uint32 word per coordinate): when b + ceil(log2 n) + headroom
 * exceeds 32, b is lowered to fit (`bits` in the struct says what was used), trading
 * per-client resolution for an overflow-free sum: never a silent wrap-around.
 */
#ifndef SL_SECAGG_QUANTIZE_H
#define SL_SECAGG_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

typedef struct sl_quant {
    double clip;        /* c > 0: values clipped to [-c, c] */
    unsigned bits;      /* b actually used, 2..32 */
    unsigned mod_bits;  /* B: the ring Z_{2^B} for the sum (give it to sl_secagg_params_t) */
    double scale;       /* s = (2^(b-1) - 1) / c */
    size_t n_clients;   /* n the headroom was sized for */
} sl_quant_t;

/* bits_requested in 8..32; headroom_bits extra bits for noise (0..8). SL_EINVAL on bad
 * values; SL_ERANGE if fewer than 2 bits per client would remain. */
SL_NODISCARD int sl_quant_init(sl_quant_t *q, double clip, unsigned bits_requested, size_t n_clients,
                               unsigned headroom_bits);

/* out[i] = (SR(clip(weight * x[i]) * scale) + noise[i]) mod 2^B for i < m. x: (m,) float;
 * noise: NULL or (m,) int32 (the client's DP noise share); out: (m,) uint32. Rounding
 * randomness from `rng`, or the OS CSPRNG if NULL. SL_ENOTFINITE on a NaN/Inf input. */
SL_NODISCARD int sl_quant_encode(const sl_quant_t *q, const float *x, size_t m, double weight, sl_rng_t *rng,
                                 const int32_t *noise, uint32_t *out);

/* out[i] = centred(sum[i] mod 2^B) / scale: the (weighted) float sum. sum: (m,), out: (m,). */
void sl_quant_decode(const sl_quant_t *q, const uint32_t *sum, size_t m, float *out);

/* The integer value of a Z_{2^B} element in [-2^(B-1), 2^(B-1)). */
int64_t sl_quant_centre(const sl_quant_t *q, uint32_t v);

#endif
