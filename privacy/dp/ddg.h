/* privacy/dp/ddg: the distributed discrete Gaussian (Kairouz, Liu, Steinke, ICML 2021,
 * "DDG") on top of secure aggregation: distributed DP whose noise shares are integers added
 * to the quantized updates before masking, so the coordinator only ever sees the noised sum.
 *
 * One round, n clients selected, r of them included in the secure sum:
 *   client:  x <- clip_L2(delta, C);  y = SR(s x) + N_Z(0, sigma_q^2)  in Z_{2^B}, masked;
 *   server:  sum_r y (unmasked)  ->  decode: / s  ->  / r.
 * sigma_q = s * rho * C is the share's std in quantized units, rho = the TASK's dp_noise (the
 * client's noise std over C: z / sqrt(min_clients) in distributed mode).
 *
 * Quantizer (what both sides must derive identically: sl_ddg_quant_init). The
 * per-coordinate range is c = C: an L2-clipped vector has every coordinate in [-C, C], so
 * quantization never clips signal and needs no random rotation (DDG rotates and clips
 * coordinates to a tight c because it targets 12..18-bit rings for communication; starling
 * sums in a 32-bit ring, where the step C / 2^(b-1) is already orders of magnitude below
 * the noise std). The noise is added after rounding and is not clipped; the ring gets
 * `headroom` extra bits, the fewest (0..8) for which
 *     n (2^(b-1) - 1) + SL_DDG_TAIL sqrt(n) sigma_q <= 2^(B-1) - 1,
 * i.e. the sum cannot wrap unless the summed noise exceeds SL_DDG_TAIL standard deviations
 * (probability < 2 exp(-SL_DDG_TAIL^2 / 2) = 1e-31 per coordinate; a wrap would only
 * spoil utility, never privacy: it is post-processing of the noised sum). b is also
 * lowered until sigma_q <= 1e7 (the exact sampler's range, privacy/dp/noise.h).
 *
 * Accounting (sl_ddg_noise_multiplier). In quantized units one user changes the sum by at
 * most Delta_q = s C + sqrt(d) (stochastic rounding moves each of the d coordinates by
 * less than 1: the deterministic bound of DDG's rounding analysis; starling rounds
 * unconditionally, so there is no failure probability beta), and the sum carries r
 * independent shares, variance r sigma_q^2. The round is charged as a Gaussian mechanism with multiplier
 *     z_eff = sqrt(r) sigma_q / Delta_q = sqrt(r) rho C / (C + sqrt(d) / s),
 * i.e. the sum of discrete Gaussians is treated as a Gaussian of the summed variance. DDG
 * Proposition 14 bounds the (unsampled) RDP of that sum by alpha / (2 z_eff^2) + tau d,
 *     tau = 10 sum_{k=1}^{r-1} exp(-2 pi^2 sigma_q^2 k / (k + 1));
 * sl_ddg_quant_init refuses parameters with tau d > SL_DDG_MAX_TAU_D (with sigma_q in the
 * thousands, tau underflows to 0), so that term is negligible and is not added. For q < 1
 * the accountant applies Opacus's sampled-Gaussian analysis at z_eff: a Gaussian
 * approximation (the DDG reference code amplifies with the generic bound of Wang, Balle,
 * Kasiviswanathan 2019 instead); for q = 1 the charge is DDG's bound itself.
 */
#ifndef SL_DP_DDG_H
#define SL_DP_DDG_H

#include "core/error.h"
#include "privacy/secagg/quantize.h"

#include <stddef.h>

#define SL_DDG_TAIL      12.0  /* standard deviations of summed noise the ring must hold */
#define SL_DDG_MAX_SIGMA 1e7   /* largest share std (quantized units) the exact sampler takes */
#define SL_DDG_MAX_TAU_D 1e-12 /* largest DDG tau * d accepted (added to every RDP order) */

/* The quantizer of a DDG round: range c = clip, [secagg] bits `bits`, n clients selected,
 * share multiplier rho = share std / clip (>= 0; 0 = no noise), d = dim coordinates.
 * Deterministic in its arguments: the coordinator (from its round plan) and each client
 * (from the TASK's dp_clip and dp_noise and SETUP's n) get the same q, in particular the
 * same q->mod_bits. SL_EINVAL for bad arguments; SL_ERANGE if no ring of at most 32 bits
 * holds clip + noise, if 0 < sigma_q < 1 (the sum of the shares would not be close to a
 * discrete Gaussian), or if tau d > SL_DDG_MAX_TAU_D; each with a message. */
SL_NODISCARD int sl_ddg_quant_init(sl_quant_t *q, double clip, double rho, unsigned bits, size_t n,
                                   size_t dim);

/* sigma_q = q->scale * rho * clip, the share's std in quantized units. */
double sl_ddg_share_sigma(const sl_quant_t *q, double clip, double rho);

/* DDG's tau for `r` summed shares of std sigma_q (0 for r < 2). */
double sl_ddg_tau(double sigma_q, size_t r);

/* Delta_q / q->scale = clip + sqrt(dim) / q->scale: one user's largest L2 change of the
 * decoded sum (real units) after stochastic rounding. */
double sl_ddg_sensitivity(const sl_quant_t *q, double clip, size_t dim);

/* z_eff = sqrt(r) * rho * clip / sl_ddg_sensitivity(q, clip, dim): the noise multiplier the
 * accountant is charged for a secure sum with r included shares. NaN on bad input. */
double sl_ddg_noise_multiplier(const sl_quant_t *q, double clip, double rho, size_t dim, size_t r);

#endif
