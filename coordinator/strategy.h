/* coordinator/strategy: the server optimizer that turns the aggregated delta into the
 * next global vector (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, with
 * the update rules of Flower's FedAvgM / FedAdam / FedYogi / FedAdagrad strategies).
 *
 * Input each round: Delta = the aggregated client delta (weighted mean of
 * client_new - global, from the aggregator), i.e. minus the pseudo-gradient.
 *   fedavg        x += eta * Delta                       (eta = server_lr, 1 = plain FedAvg)
 *   fedavgm       m = beta * m + Delta (m = Delta in round 1);  x += eta * m
 *                 (beta = server_momentum; Flower FedAvgM with server_momentum > 0)
 *   fedadam       m = b1 m + (1-b1) Delta;  v = b2 v + (1-b2) Delta^2;
 *                 x += eta * m / (sqrt(v) + tau)
 *   fedyogi       m as Adam;  v = v - (1-b2) Delta^2 sign(v - Delta^2);  x as Adam
 *   fedadagrad    m = Delta (b1 = 0 as in Flower);  v = v + Delta^2;  x as Adam
 *   median, trimmed_mean   x += eta * Delta (the robustness is in the aggregator)
 * m, v start at zero (as in Flower; no bias correction). eta_l (the client learning rate)
 * travels in the TASK (train.lr). FedProx is client-side: mu travels in the TASK.
 * Per-coordinate arithmetic is done in double and stored as float32.
 *
 * State (m, v) is O(dim) and is saved in checkpoints (sl_strategy_save / _load).
 */
#ifndef SL_STRATEGY_H
#define SL_STRATEGY_H

#include "core/config.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_strategy sl_strategy_t;

/* From cfg->federation (strategy, server_lr, server_momentum, beta1, beta2, tau). */
SL_NODISCARD int sl_strategy_new(sl_strategy_t **out, const sl_config_t *cfg, size_t dim);
void sl_strategy_destroy(sl_strategy_t **s);

/* global (dim) <- server step from delta (dim). Rounds count from 1. SL_ENOTFINITE (and
 * global untouched) if the step would produce a non-finite value. */
SL_NODISCARD int sl_strategy_apply(sl_strategy_t *s, float *global, const float *delta);

/* "fedadam" ... */
const char *sl_strategy_name(const sl_strategy_t *s);

/* Serialized optimizer state: magic "SLST", version, kind, steps, dim, m, v. */
size_t sl_strategy_state_size(const sl_strategy_t *s);
SL_NODISCARD int sl_strategy_save(const sl_strategy_t *s, uint8_t *buf, size_t len);
SL_NODISCARD int sl_strategy_load(sl_strategy_t *s, const uint8_t *buf, size_t len);

#endif
