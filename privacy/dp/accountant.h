/* privacy/dp/accountant: Renyi-DP accountant of the sampled Gaussian mechanism.
 *
 * A port of Opacus 1.5 (opacus/accountants/rdp.py, opacus/accountants/analysis/rdp.py,
 * opacus/accountants/utils.py), itself from TF Privacy: the RDP of the sampled Gaussian
 * mechanism (Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the Sampled
 * Gaussian Mechanism", Section 3.3) at Opacus's default orders, composed over steps by
 * addition, and converted to (epsilon, delta) with Balle et al. 2020 Theorem 21 exactly as
 * Opacus's get_privacy_spent does. The answers agree with Opacus to about 1e-12 relative.
 *
 * In starling a "step" is one federation round, q is the client sampling rate and sigma
 * the effective noise multiplier of that round's noised sum (privacy/dp/mechanism.h says
 * which (q, sigma) each DP mode reports). The guarantee is user-level.
 *
 * Coordinator usage:
 *    sl_dp_accountant_t *acc; rc = sl_dp_accountant_new(&acc);      // or _decode from a checkpoint
 *    each round, before sampling:
 *        rc = sl_dp_accountant_would_exceed(acc, q, z, delta, target_eps, &stop, &eps_next);
 *        if (stop) finish the run cleanly (the budget would be exceeded by this round);
 *    after the round's noised aggregate is released:
 *        rc = sl_dp_accountant_step(acc, q, z, 1);
 *        rc = sl_dp_accountant_epsilon(acc, delta, &eps, &alpha);   // report it
 *    checkpoint: sl_dp_accountant_encode(acc, &buf, &len) ... free(buf).
 * An accountant is not thread-safe, not even for concurrent queries (they fill a cache of
 * per-step RDP vectors): one owner, or the caller's lock. The stateless functions are
 * thread-safe.
 */
#ifndef SL_DP_ACCOUNTANT_H
#define SL_DP_ACCOUNTANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Opacus RDPAccountant.DEFAULT_ALPHAS: [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)). */
#define SL_DP_NUM_ORDERS 151

/* The default orders (151 values, ascending). */
const double *sl_dp_default_orders(void);

/* RDP of one step of the sampled Gaussian mechanism at order alpha > 1
 * (Opacus _compute_rdp): 0 if q == 0, +inf if sigma == 0, alpha / (2 sigma^2) if q == 1.
 * SL_EINVAL for q outside [0, 1], sigma < 0 or alpha <= 1; SL_ERANGE if the series fails. */
SL_NODISCARD int sl_dp_rdp(double q, double sigma, double alpha, double *rdp_out);

/* RDP at all default orders of `steps` steps: out[i] = rdp(q, sigma, orders[i]) * steps. */
SL_NODISCARD int sl_dp_rdp_vector(double q, double sigma, int64_t steps, double out[SL_DP_NUM_ORDERS]);

/* Opacus get_privacy_spent: eps_i = rdp_i - (log(delta) + log(alpha_i)) / (alpha_i - 1)
 * + log((alpha_i - 1) / alpha_i); the minimum over orders ignoring NaN, and its order.
 * If every eps_i is NaN: *eps = +inf, *best_alpha = NaN. delta in (0, 1). */
SL_NODISCARD int sl_dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta,
                                      double *eps, double *best_alpha);

/* epsilon of `steps` steps of (q, sigma) at delta; best_alpha may be NULL. */
SL_NODISCARD int sl_dp_epsilon(double q, double sigma, int64_t steps, double delta, double *eps,
                               double *best_alpha);

/* Opacus get_noise_multiplier: the smallest sigma (to `tolerance` in epsilon; Opacus uses
 * 0.01) with epsilon(q, sigma, steps, delta) <= target_eps. Bisection exactly as Opacus:
 * sigma_high doubles from 10 until eps < target, then bisects until
 * target - eps_high <= tolerance, and returns sigma_high. SL_ERANGE ("budget too low")
 * if sigma would exceed 1e6. */
SL_NODISCARD int sl_dp_noise_multiplier(double q, int64_t steps, double delta, double target_eps,
                                        double tolerance, double *sigma_out);

/* ---- the stateful accountant -------------------------------------------------------- */

typedef struct sl_dp_accountant sl_dp_accountant_t;

/* A new, empty accountant (epsilon 0). Owned by the caller: sl_dp_accountant_destroy. */
SL_NODISCARD int sl_dp_accountant_new(sl_dp_accountant_t **out);

/* NULL-safe; sets *acc to NULL. */
void sl_dp_accountant_destroy(sl_dp_accountant_t **acc);

/* Record `steps` >= 1 more steps of (q, sigma). As Opacus's RDPAccountant.step, a step
 * with the same (q, sigma) as the last history entry extends it. SL_EINVAL on bad values. */
SL_NODISCARD int sl_dp_accountant_step(sl_dp_accountant_t *acc, double q, double sigma, int64_t steps);

/* (epsilon, best alpha) spent so far at delta; (0, NaN) for an empty history.
 * best_alpha may be NULL. */
SL_NODISCARD int sl_dp_accountant_epsilon(const sl_dp_accountant_t *acc, double delta, double *eps,
                                          double *best_alpha);

/* Budget check before a round: *exceed = 1 if one more step of (q, sigma) would bring
 * epsilon above target_eps (target_eps <= 0 means no budget: *exceed = 0). eps_after (may
 * be NULL) receives the epsilon the round would reach. The accountant is not changed. */
SL_NODISCARD int sl_dp_accountant_would_exceed(const sl_dp_accountant_t *acc, double q, double sigma,
                                               double delta, double target_eps, int *exceed,
                                               double *eps_after);

/* Number of history entries, and entry i as (q, sigma, steps) (Opacus's history). */
size_t sl_dp_accountant_entries(const sl_dp_accountant_t *acc);
SL_NODISCARD int sl_dp_accountant_entry(const sl_dp_accountant_t *acc, size_t i, double *q, double *sigma,
                                        int64_t *steps);

/* Total steps recorded. */
int64_t sl_dp_accountant_total_steps(const sl_dp_accountant_t *acc);

/* Serialize the history: "SLRA" magic, u32 version 1, u32 order count, u64 entry count,
 * then (f64 q, f64 sigma, u64 steps) per entry, little endian. *buf is malloc'ed and owned
 * by the caller (free). */
SL_NODISCARD int sl_dp_accountant_encode(const sl_dp_accountant_t *acc, uint8_t **buf, size_t *len);

/* Rebuild an accountant from `len` bytes of `buf` (never reads past len); SL_EFORMAT with
 * a message on a bad magic, version, length or value. */
SL_NODISCARD int sl_dp_accountant_decode(const uint8_t *buf, size_t len, sl_dp_accountant_t **out);

#endif
