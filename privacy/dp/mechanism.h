/* privacy/dp/mechanism: who adds which noise in each DP mode, and what the accountant is
 * charged. This is the API the coordinator's round engine and the client runtime call.
 *
 * User-level DP-FedAvg (McMahan et al. 2018): each sampled client clips its whole update to
 * L2 norm C; the round releases S = sum of clipped updates + N(0, (z C)^2 I). Weights are
 * uniform (every clipped update counts once; do NOT weight by example count, that would
 * make the sensitivity unbounded): the model update is S / m with a fixed m (the expected
 * number of clients per round), or S / reported (reported is public under this model).
 *
 * Modes (cfg->dp.mode):
 *   central      the coordinator adds N(0, (z_u C)^2) to the sum. Trusts the coordinator.
 *   distributed  each sampled client adds N(0, (z_u C)^2 / m_min) to its own clipped update
 *                (m_min = federation.min_clients, the quorum); with secure aggregation the
 *                coordinator only sees the sum, whose noise variance is
 *                reported * (z_u C)^2 / m_min >= (z_u C)^2 since reported >= m_min.
 *                The effective multiplier is z * sqrt(reported / m_min). This counts the
 *                noise share of the user whose update differs, which is right for the
 *                "zero-out" neighbouring relation (a user's update replaced by zero while
 *                it still takes part), the relation the accountant's sampled Gaussian
 *                analysis covers here. Without secure aggregation the coordinator sees each
 *                noised update: only the weaker local-style guarantee then holds.
 *   local        each client adds the full N(0, (z_u C)^2) to its clipped update, so each
 *                report is private on its own, even against the coordinator. The
 *                accountant is charged (q = 1, z) per round: the coordinator sees who took
 *                part, so no amplification by sampling is claimed; this bounds every user,
 *                including one sampled in every round.
 * z is dp.noise_multiplier. z_u, the multiplier of the update noise, equals z unless
 * adaptive clipping is on, in which case part of the budget pays for the noised clipped
 * count (sl_dp_adaptive_update_noise_multiplier) and z_u > z; the accountant is still
 * charged z (Andrew et al. 2021, Section 3.1).
 *
 * ---- Coordinator, each round t -------------------------------------------------------
 *   sl_dp_round_t r;
 *   rc = sl_dp_round_plan(cfg, ac ? ac->clip : cfg->dp.clip, &r);
 *   sl_dp_round_accounting(&r, q, cfg->federation.min_clients, &qa, &za);  // expected charge
 *   rc = sl_dp_accountant_would_exceed(acc, qa, za, cfg->dp.delta, cfg->dp.target_epsilon, &stop, NULL);
 *   if (stop) end the run cleanly;
 *   send with the task: r.mode, r.clip, sl_dp_round_client_noise_multiplier(&r)
 *   (sl_task_info_t.dp_noise), r.adaptive and r.client_count_std;
 *   fold the `reported` clipped (client-noised) updates into sum (n,) with weight 1;
 *   rc = sl_dp_coordinator_finish_sum(&r, ns, sum, n);      // central: adds the noise
 *   rc = sl_dp_round_accounting(&r, q, reported, &qa, &za); // SL_EQUORUM if too few
 *   rc = sl_dp_accountant_step(acc, qa, za, 1);
 *   adaptive clipping: count = sum of the clients' count values;
 *   rc = sl_dp_coordinator_finish_count(&r, ns, &count);    // central: adds its noise
 *   rc = sl_dp_adaptive_clip_update(ac, count, NULL);       // C for round t+1
 *
 * ---- Client, each round ----------------------------------------------------------------
 *   sl_dp_round_t r;
 *   rc = sl_dp_round_for_client(task.dp_mode, task.dp_clip, task.dp_noise, adaptive, count_std, &r);
 *   rc = sl_dp_client_privatize(&r, ns, update, n, &norm, &count_value);  // update = delta
 *   send update (+ count_value if r.adaptive). Uniform weight: never multiply by examples.
 * With secure aggregation on quantized integers, noise must be discrete instead: call
 * sl_dp_clip, quantize with scale s, then add N_Z(0, sigma^2) with
 * sigma = r.client_update_std * s (distributed DP with the discrete Gaussian; Kairouz,
 * Liu, Steinke 2021). privacy/dp/ddg.h has the quantizer both sides derive, the check
 * that the sum of the shares is close to a discrete Gaussian, and the multiplier the
 * accountant is then charged (which also covers the rounding); client/secagg.h and
 * coordinator/dp.h run it in federated rounds.
 * Add the count value (adaptive clipping) with sl_dp_gaussian / a scaled integer likewise.
 *
 * Noise sources: the coordinator uses sl_dp_noise_init(&ns, cfg, round, UINT64_MAX), a
 * client sl_dp_noise_init(&ns, cfg, round, client_id) (OS CSPRNG unless the test-only
 * dp.insecure_seeded_noise is set); sl_dp_noise_free after the round.
 */
#ifndef SL_DP_MECHANISM_H
#define SL_DP_MECHANISM_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "privacy/dp/noise.h"

typedef enum { SL_DP_PARTY_COORDINATOR = 0, SL_DP_PARTY_CLIENT = 1 } sl_dp_party_t;

/* Noise std that `party` adds in `mode` (sl_dp_mode_t) so that the round's sum carries
 * N(0, (z * sensitivity)^2):
 *   off: 0;  central: coordinator z*s, client 0;
 *   distributed: coordinator 0, client z*s/sqrt(min_clients);  local: coordinator 0, client z*s.
 * Returns NaN for an unknown mode or party, negative/non-finite z or s, or min_clients < 1
 * in distributed mode. */
double sl_dp_party_noise_std(int mode, sl_dp_party_t party, double z, double sensitivity, int64_t min_clients);

/* Effective noise multiplier of the released sum when `reported` updates are in it:
 *   off: 0; central: z; distributed: z * sqrt(reported / min_clients); local: z.
 * (local: the per-report multiplier; see the mode notes above.) NaN on bad input. */
double sl_dp_effective_noise_multiplier(int mode, double z, int64_t min_clients, int64_t reported);

/* Andrew et al. 2021, Section 3.1: to keep the total noise multiplier z when the
 * clipped-count sum (sensitivity 1/2) is released with noise std sigma_b, the update sum
 * must use z_u = (z^-2 - (2 sigma_b)^-2)^(-1/2). SL_ECONFIG unless 2 sigma_b > z > 0.
 * z == 0 gives z_u = 0 (no privacy). */
SL_NODISCARD int sl_dp_adaptive_update_noise_multiplier(double z, double count_stddev, double *z_update);

/* Everything one round needs to know about DP. */
typedef struct sl_dp_round {
    int mode;                      /* sl_dp_mode_t */
    double clip;                   /* C of this round */
    double noise_multiplier;       /* z: what the accountant is charged */
    double update_noise_multiplier; /* z_u: multiplier of the update noise (z without adaptive clipping) */
    int adaptive;                  /* adaptive clipping on */
    double count_stddev;           /* sigma_b: total std of the count-sum noise (adaptive only) */
    int64_t min_clients;           /* m_min: the quorum of a round */
    double coordinator_update_std; /* std the coordinator adds to the sum of updates (central) */
    double client_update_std;      /* std each client adds to its clipped update (distributed, local) */
    double coordinator_count_std;  /* std the coordinator adds to the count sum (central, adaptive) */
    double client_count_std;       /* std each client adds to its count value (distributed, local) */
} sl_dp_round_t;

/* Plan a round from the [dp] config, federation.min_clients and this round's clip C
 * (dp.clip, or the adaptive state's clip). sigma_b = dp.count_noise_multiplier / 2.
 * SL_ECONFIG if the combination is impossible (e.g. adaptive with 2 sigma_b <= z);
 * SL_EINVAL for clip <= 0. With mode off every std is 0. */
SL_NODISCARD int sl_dp_round_plan(const sl_config_t *cfg, double clip, sl_dp_round_t *out);

/* What a TASK must carry for the client side of a round: the mode, r->clip, and the
 * client's noise std relative to C (sl_task_info_t.dp_noise) and its count-noise std.
 * The coordinator reads them from its plan: */
double sl_dp_round_client_noise_multiplier(const sl_dp_round_t *r); /* client_update_std / clip (0 if off) */

/* The client side rebuilds a plan from those fields (no config needed): only mode, clip,
 * client_update_std = client_noise_multiplier * clip, client_count_std and adaptive
 * (client_count_std > 0 or adaptive_flag) are set; enough for sl_dp_client_privatize.
 * SL_EPROTO for values a coordinator could not have sent (unknown mode, clip <= 0,
 * negative or non-finite stds). */
SL_NODISCARD int sl_dp_round_for_client(int mode, double clip, double client_noise_multiplier,
                                        int adaptive_flag, double client_count_std, sl_dp_round_t *out);

/* Client: clip update (n,) in place to r->clip, then add its noise share
 * (r->client_update_std). *norm_out (may be NULL) = pre-clip norm; *count_value (may be
 * NULL) = [norm <= C] - 1/2 + N(0, r->client_count_std^2) when r->adaptive, else 0.
 * Errors from sl_dp_clip (non-finite update) leave update untouched. */
SL_NODISCARD int sl_dp_client_privatize(const sl_dp_round_t *r, sl_dp_noise_t *ns, float *update, size_t n,
                                        double *norm_out, double *count_value);

/* Coordinator: add its noise to the sum of clipped updates, sum (n,) (central mode; a
 * no-op otherwise). The f64 variant is for a double running sum. */
SL_NODISCARD int sl_dp_coordinator_finish_sum(const sl_dp_round_t *r, sl_dp_noise_t *ns, float *sum, size_t n);
SL_NODISCARD int sl_dp_coordinator_finish_sum_f64(const sl_dp_round_t *r, sl_dp_noise_t *ns, double *sum,
                                                  size_t n);

/* Coordinator: add its noise to the count sum (central + adaptive; no-op otherwise). */
SL_NODISCARD int sl_dp_coordinator_finish_count(const sl_dp_round_t *r, sl_dp_noise_t *ns, double *count_sum);

/* What the accountant is charged for this round, given the client sampling rate q and the
 * number of updates in the released sum: (q, z) in central, (q, z sqrt(reported/m_min))
 * in distributed, (1, z) in local; (0, 0) with mode off (charge nothing). SL_EQUORUM if
 * reported < min_clients in distributed mode (the sum would be under-noised: do not
 * release it); SL_EINVAL for q outside [0, 1] or reported < 0. */
SL_NODISCARD int sl_dp_round_accounting(const sl_dp_round_t *r, double q, int64_t reported, double *q_out,
                                        double *z_out);

#endif
