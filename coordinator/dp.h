/* coordinator/dp: user-level differential privacy in a federated run, coordinator side.
 *
 * The glue between the round engine (coordinator/engine.h) and the DP library
 * (privacy/dp/): one sl_dp_coord_t per run owns the accountant, the adaptive-clip state
 * and the plan of the current round; it provides
 *   - an aggregator (sl_dp_aggregator_new) that replaces the streaming `mean` (with
 *     secagg.enabled: the secure sum instead, see "With secure aggregation" below):
 *       add_update: clip the delta server-side, then fold it with weight 1 into the
 *                   built-in exact mean (fixed point: the result does not depend on the
 *                   order updates arrive in, so a resumed run reproduces an uninterrupted
 *                   one bit for bit even over a real network);
 *       finish:     add the coordinator's noise (central mode), divide by the round's
 *                   sampled count, update the adaptive clip (central mode);
 *   - the engine hooks prepare_task (the TASK's dp_mode / dp_clip / dp_noise; refuses a
 *     first round the budget cannot pay for), round_end (accountant step, epsilon into
 *     rep->epsilon, budget stop) and ext_save / ext_load (checkpoint state).
 *
 * Decisions (docs/privacy.md, "In a federated run"):
 *   * Weights are uniform: the engine's example-count weight is ignored, every accepted
 *     update enters the sum once (federation.weight_cap has no effect under DP).
 *   * The divisor is the number of clients SAMPLED in the round (the engine samples a
 *     fixed ceil(fraction * live) clients, a number that does not depend on any user's
 *     data), not the number that reported: a dropout shrinks the step a little instead of
 *     raising the noise on the average. Noise std of the released average per
 *     coordinate: z C / sampled (central).
 *   * Server-side clipping in every mode. central: each delta is clipped to the round's C
 *     (clients send raw deltas, so the coordinator sees the pre-clip norm it needs for
 *     adaptive clipping). distributed / local: the client clipped to C and then added its
 *     noise share, so an honest update has norm up to C + s (sqrt(d) + 10) where s is the
 *     client's noise std; the coordinator clips to that bound (an honest update passes
 *     untouched except with probability < exp(-50)), which caps what a faulty client can
 *     inject without distorting honest noise.
 *   * Local mode: each report is a release of its own to the coordinator, so an attempt is
 *     charged (1, z) when its first report arrives, before the report is used: a retried
 *     round (quorum missed) costs one step per attempt whose reports the coordinator saw.
 *   * q = sampled / registered clients (sl_engine_registered when the engine is attached
 *     with sl_dp_coord_set_engine, else the population given to sl_dp_coord_set_population).
 *   * The privacy ledger (sl_dp_coord_open_ledger; the CLI keeps it at <run dir>/privacy.ledger,
 *     format in coordinator/ledger.h): every charge, in every mode, is appended and fsync'd
 *     before it takes effect (with secure aggregation: at the unmask gate, before the sum is
 *     computed; local mode: at the attempt's first report; central / distributed: in
 *     round_end, before the accountant steps). The checkpoint's DP
 *     state says how many records its accountant holds; sl_dp_coord_load replays the newer
 *     ones, so a coordinator killed between a charge and the round's checkpoint resumes with
 *     epsilon >= the true spend (equal when the charged attempt's round is then redone: the
 *     redone round is charged again, as the unmasked sum it replaces may have been seen).
 *   * The budget (dp.target_epsilon > 0): after each round, round_end asks the accountant
 *     whether one more round at its expected charge would exceed the target (the last
 *     round's q; in distributed mode the count is taken as the quorum min_clients, the
 *     smallest effective multiplier, so the check is conservative); if so it returns
 *     SL_EBUDGET and the run ends with status "budget", having released only rounds
 *     within the budget. A first round that alone exceeds the target fails the run in
 *     prepare_task with SL_EBUDGET and a message.
 *   * Refused: a robust aggregator (median / trimmed mean: the noise is calibrated to a
 *     sum of clipped updates), adaptive clipping in distributed / local mode (the wire has
 *     no field for the clients' noised count bits), and central or local mode together
 *     with secure aggregation (SL_ENOTSUP: central clients send raw deltas for the
 *     coordinator to clip, local reports must each be released on their own).
 *
 * With secure aggregation (dp.mode = distributed, secagg.enabled; the distributed discrete
 * Gaussian, privacy/dp/ddg.h): the aggregator is secure (.secure = 1) and owns a SecAgg+
 * aggregator (coordinator/secagg.h) that sizes its quantizer with sl_ddg_quant_init, so
 * the ring holds clip + noise. Each client clips to C, quantizes and adds its discrete
 * Gaussian share before masking (client/secagg.h); the coordinator unmasks only the noised
 * sum.
 *   * No server-side clipping: the coordinator never sees an update. The sensitivity rests
 *     on honest clients clipping to C and on the quantizer's per-coordinate range, as in
 *     the DDG paper; a malicious client can only spoil utility (poisoning), not other
 *     users' privacy (its input is added, the honest shares are still in the sum).
 *   * The divisor is the number of inputs in the secure sum (the result is their mean);
 *     the server aborts before unmasking when fewer than min_clients survive.
 *   * Accounting: the accountant is charged when the secure sum is unmasked (from then on
 *     the coordinator can compute it, released or not), once per attempt, with
 *     q = sampled / registered and the multiplier sl_ddg_noise_multiplier for the r inputs
 *     actually in the sum: z sqrt(r / min_clients) C / (C + sqrt(d) / s), s the quantizer
 *     scale (stochastic rounding inflates the sensitivity by up to sqrt(d) steps). An
 *     attempt that aborts before unmasking revealed nothing and is not charged; one whose
 *     sum was unmasked but that the engine then retried (e.g. too few UPDATEs arrived) is.
 *     round_end only reports epsilon and checks the budget (next round at r = min_clients).
 *   * The unmask gate (sl_aggregator_secagg_set_unmask_gate) is where the charge happens:
 *     the server calls it once all the shares it needs are in, right before it rebuilds any
 *     secret, with r. The gate first checks the budget: if charging this attempt would bring
 *     epsilon above dp.target_epsilon (a retry whose earlier attempt was already charged, or
 *     a q that grew), it refuses: the attempt aborts with nothing revealed and nothing
 *     charged, and the aggregator returns SL_EBUDGET, so the engine ends the run with status
 *     "budget". Else the ledger record is written, the accountant charged, and the sum
 *     computed. An abort after the gate (corrupt shares) stays charged.
 *
 * The aggregator borrows the sl_dp_coord_t: destroy the engine (which owns the aggregator)
 * before the coordinator state. Not thread-safe (one engine, one thread).
 */
#ifndef SL_COORDINATOR_DP_H
#define SL_COORDINATOR_DP_H

#include "coordinator/aggregator.h"
#include "coordinator/engine.h"
#include "coordinator/runlog.h"
#include "core/config.h"
#include "core/error.h"
#include "core/wire.h"
#include "privacy/dp/accountant.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_dp_coord sl_dp_coord_t;

/* Whether the configuration can run with DP: 0 for dp.mode = off or a supported
 * combination; SL_ECONFIG (robust strategy, adaptive clipping outside central mode, an
 * impossible adaptive noise split, a non-positive clip) or SL_ENOTSUP (secagg.enabled with
 * a mode other than distributed) with a message naming the keys. */
SL_NODISCARD int sl_dp_coord_check_config(const sl_config_t *cfg);

/* A coordinator DP state for a run with trainable length dim. cfg is copied. Runs
 * sl_dp_coord_check_config; with secagg, also sl_ddg_quant_init for a round of
 * max(2, min_clients) clients (SL_ECONFIG with its message if the noise cannot fit the
 * ring). SL_EINVAL for dp.mode = off (nothing to do: do not create one).
 * Owned by the caller: sl_dp_coord_destroy. */
SL_NODISCARD int sl_dp_coord_new(sl_dp_coord_t **out, const sl_config_t *cfg, size_t dim);
/* NULL-safe; nulls *p. */
void sl_dp_coord_destroy(sl_dp_coord_t **p);

/* The DP aggregator (heap; the engine takes ownership when passed as opts.aggregator).
 * Borrows dp, which must outlive it. */
SL_NODISCARD int sl_dp_aggregator_new(sl_aggregator_t **out, sl_dp_coord_t *dp);

/* Where q's denominator comes from: the engine's registered clients at each round start
 * (borrowed; NULL to detach), or a fixed population (0 = none). With neither, q = 1. */
void sl_dp_coord_set_engine(sl_dp_coord_t *dp, const sl_engine_t *e);
void sl_dp_coord_set_population(sl_dp_coord_t *dp, size_t population);

/* Engine hooks, for a caller that shares one hook context (cli/cmd_coordinator.c): call
 * these from its hook functions with its sl_dp_coord_t.
 * prepare_task: fills task->dp_mode, dp_clip (this round's C), dp_noise (the client's
 *   noise std / C); SL_EBUDGET if the budget cannot pay for this round at all. */
SL_NODISCARD int sl_dp_coord_prepare_task(sl_dp_coord_t *dp, uint64_t round, sl_task_info_t *task);
/* round_end: charges this round's (q, z) (ledger, then accountant; with secagg: already
 * charged at the unmask gate, in local mode at each attempt's first report, see above),
 * sets rep->epsilon; returns
 * SL_EBUDGET when the next round would exceed dp.target_epsilon (and this was not the
 * last round), 0 otherwise, < 0 on error. */
SL_NODISCARD int sl_dp_coord_round_end(sl_dp_coord_t *dp, sl_round_report_t *rep);
/* Checkpoint state: "SLDX" magic, u32 version 2, u32 flags (bit 0: adaptive state
 * present), u64 ledger records covered (the accountant holds the ledger's first that many
 * charges; 0 without a ledger), u64 accountant length, the accountant
 * (sl_dp_accountant_encode), then the adaptive-clip blob (SL_DP_ADAPTIVE_CLIP_BYTES) when
 * flagged. *out malloc'd (free). */
SL_NODISCARD int sl_dp_coord_save(sl_dp_coord_t *dp, uint8_t **out, size_t *len);
/* Restore from sl_dp_coord_save's bytes (len == 0: a checkpoint without DP state, e.g. a
 * run that had DP off: SL_EFORMAT, resuming would under-count). Version 1 (no ledger count)
 * is read too. With a ledger open: the ledger records after the covered ones are charged
 * to the restored accountant (a warning each); SL_EFORMAT if the ledger has fewer records
 * than covered or its covered records do not add up to the accountant's steps (another
 * run's ledger). Never reads past len; SL_EFORMAT with a message on bad input; dp is
 * unchanged on error. */
SL_NODISCARD int sl_dp_coord_load(sl_dp_coord_t *dp, const uint8_t *buf, size_t len);

/* The write-ahead privacy ledger at path (see "The privacy ledger" above). resume = 0:
 * created anew (an earlier run's file there is replaced). resume = 1: the existing file is
 * read and checked (SL_ENOTFOUND with a message if missing, SL_EFORMAT if corrupt; a torn
 * last record is cut off with a warning) and kept for sl_dp_coord_load to replay: open it
 * before the engine loads the checkpoint (sl_engine_new). Without a ledger charges are not
 * crash-safe (library callers without a run folder). */
SL_NODISCARD int sl_dp_coord_open_ledger(sl_dp_coord_t *dp, const char *path, int resume);

/* Hook functions with ctx = the sl_dp_coord_t (for callers without other hooks, e.g.
 * tests): sets prepare_task, round_end, ext_save, ext_load and hook_ctx. */
void sl_dp_coord_hooks(sl_dp_coord_t *dp, sl_engine_hooks_t *hooks);

/* Epsilon spent so far at dp.delta (0 before the first round). */
double sl_dp_coord_epsilon(const sl_dp_coord_t *dp);
/* Rounds charged so far. */
int64_t sl_dp_coord_rounds(const sl_dp_coord_t *dp);
/* The clip norm the next round uses (dp.clip, or the adaptive state's). */
double sl_dp_coord_clip(const sl_dp_coord_t *dp);
/* (q, z) charged for the last round (NaN before the first). */
void sl_dp_coord_last_charge(const sl_dp_coord_t *dp, double *q, double *z);
/* Updates clipped server-side so far (norm above the round's bound). */
uint64_t sl_dp_coord_clipped(const sl_dp_coord_t *dp);
/* The accountant (borrowed). */
const sl_dp_accountant_t *sl_dp_coord_accountant(const sl_dp_coord_t *dp);

#endif
