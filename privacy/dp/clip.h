/* privacy/dp/clip: L2 clipping of a client update, and adaptive clipping.
 *
 * Clipping bounds each user's contribution to the round's sum to L2 norm C, which is the
 * sensitivity the Gaussian noise is calibrated to (user-level DP: one client = one user,
 * its whole update is one record). Weights are uniform under DP: every clipped update
 * enters the sum with weight 1 (never weighted by example count), so one user moves the
 * sum by at most C.
 *
 * Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021, "Differentially Private
 * Learning with Adaptive Clipping", Algorithm 1 and Section 3): C tracks the
 * target_quantile gamma of the update norms. Each client reports b = [norm <= C] as the
 * centered value b - 1/2 (sensitivity 1/2); the coordinator sums them, the sum is noised
 * with N(0, sigma_b^2), and
 *     b_bar = (noised sum) / m + 1/2        (m = expected clients per round, fixed)
 *     C    <- C * exp(-eta * (b_bar - gamma))    (geometric update).
 * The privacy cost of the count is paid by raising the update noise, see
 * sl_dp_adaptive_update_noise_multiplier in privacy/dp/mechanism.h.
 */
#ifndef SL_DP_CLIP_H
#define SL_DP_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

/* L2 norm of x (n,) accumulated in double. */
double sl_dp_l2_norm(const float *x, size_t n);

/* Clip x (n,) in place to L2 norm <= clip: if ||x|| > clip, x <- x * clip / ||x||, with a
 * final check that the float result's norm is <= clip (rescaled by 1 - 2^-23 steps if
 * rounding pushed it above). An update with ||x|| <= clip is left unchanged bit for bit.
 * *norm_out (may be NULL) receives the pre-clip norm. SL_EINVAL if clip is not > 0 and
 * finite; SL_ENOTFINITE (x untouched) if x holds a NaN or infinity. */
SL_NODISCARD int sl_dp_clip(float *x, size_t n, double clip, double *norm_out);

/* Adaptive clipping state, kept by the coordinator (part of its checkpoint). */
typedef struct sl_dp_adaptive_clip {
    double clip;             /* current C, sent to clients with each round */
    double target_quantile;  /* gamma in [0, 1] */
    double lr;               /* eta >= 0 (geometric step) */
    double count_stddev;     /* sigma_b: std of the noise on the centered count sum (may be 0 in tests) */
    double expected_clients; /* m > 0: expected number of reports per round (fixed divisor) */
    uint64_t rounds;         /* updates applied so far */
    double last_estimate;    /* b_bar of the last update (NaN before the first) */
} sl_dp_adaptive_clip_t;

/* Initialise. SL_EINVAL if a value is out of range (clip > 0, gamma in [0,1], eta >= 0,
 * sigma_b >= 0, m > 0, all finite). */
SL_NODISCARD int sl_dp_adaptive_clip_init(sl_dp_adaptive_clip_t *ac, double initial_clip, double target_quantile,
                                          double lr, double count_stddev, double expected_clients);

/* From the [dp] config: C0 = dp.clip, gamma = dp.target_quantile, eta = dp.clip_lr,
 * sigma_b = dp.count_noise_multiplier / 2 (the count of centered bits has sensitivity 1/2,
 * so its noise multiplier is 2 sigma_b). */
SL_NODISCARD int sl_dp_adaptive_clip_init_config(sl_dp_adaptive_clip_t *ac, const sl_config_t *cfg,
                                                 double expected_clients);

/* Client side: the centered clipped-count bit, [norm <= clip] - 1/2 (so +0.5 or -0.5). */
double sl_dp_clip_count_value(double norm, double clip);

/* Coordinator side, once per round: `noised_sum` is the sum of the reported centered
 * bits with its noise already in it (privacy/dp/mechanism.h adds it per mode). Computes
 * b_bar = noised_sum / m + 1/2 and the geometric update of C. quantile_estimate (may be
 * NULL) receives b_bar. SL_ENOTFINITE if noised_sum is not finite (state unchanged). */
SL_NODISCARD int sl_dp_adaptive_clip_update(sl_dp_adaptive_clip_t *ac, double noised_sum, double *quantile_estimate);

/* Checkpoint: "SLAC" magic, u32 version 1, then the 7 fields little endian (56 bytes
 * after the 8-byte header). SL_DP_ADAPTIVE_CLIP_BYTES is the exact size. */
#define SL_DP_ADAPTIVE_CLIP_BYTES 64
SL_NODISCARD int sl_dp_adaptive_clip_encode(const sl_dp_adaptive_clip_t *ac, uint8_t *buf, size_t cap,
                                            size_t *len);
/* Decode exactly SL_DP_ADAPTIVE_CLIP_BYTES bytes; SL_EFORMAT on a bad magic, version,
 * length or field value. */
SL_NODISCARD int sl_dp_adaptive_clip_decode(sl_dp_adaptive_clip_t *ac, const uint8_t *buf, size_t len);

#endif
