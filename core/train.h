/* core/train: the local training loop and evaluation.
 *
 * sl_train_local is what a federated client runs each round: a fresh optimizer (state
 * lives for the call), seeded data order, minibatches over local_epochs or local_steps,
 * optional gradient clipping, FedProx term and time-series augmentation (train.augment_*). A trainer object (sl_trainer_*) is the same
 * loop with state that outlives one pass, for centralized training over many epochs
 * (one optimizer, one LR schedule across epochs, a progress callback).
 *
 * Per step:  zero grad -> forward(training) -> backward -> g += mu (w - w_global)
 *            -> clip ||g|| -> lr = schedule(step) -> optimizer step on the trainable vector.
 * Randomness: data order from sl_rng_init(seed, "shuffle", round, client), dropout from
 * sl_rng_init(seed, "dropout", round, client); nothing else, so a call is deterministic.
 */
#ifndef SL_TRAIN_H
#define SL_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch.h"
#include "core/config.h"
#include "core/error.h"
#include "core/metrics.h"
#include "core/model.h"
#include "core/rng.h"

typedef struct {
    double loss;     /* mean training loss over the examples seen (as the model reports it) */
    size_t examples; /* examples processed (counting repeats) */
    size_t steps;    /* optimizer steps */
    double seconds;  /* wall time */
} sl_train_stats_t;

/* Local training of m's trainable vector on `src` per cfg->train (optimizer, lr, schedule,
 * warmup_steps, batch_size, local_epochs or local_steps, grad_clip, fedprox_mu). Data order
 * from sl_rng_init(&r, cfg->run.seed, "shuffle", round, client). prox_center: the global
 * trainable vector for FedProx (NULL = none; same length as the trainable vector).
 * An empty source trains nothing and returns 0. SL_ENOTFINITE if the loss or gradient
 * diverges (the trainable vector may then be partly updated). */
SL_NODISCARD int sl_train_local(sl_model_t *m, const sl_config_t *cfg, const sl_example_source_t *src,
                                uint64_t round, uint64_t client, const float *prox_center, sl_train_stats_t *out);

/* Evaluate m (no dropout) on every example of src in order, batch_size at a time. `out`
 * must have been sl_metrics_init'ed with the model's class count; it is reset, filled and
 * finished (loss = plain cross-entropy, accuracy, macro-F1, confusion). */
SL_NODISCARD int sl_evaluate(sl_model_t *m, const sl_example_source_t *src, size_t batch_size, sl_metrics_t *out);

/* Optimizer steps one pass over `count` examples takes: ceil(count / batch_size). */
size_t sl_train_steps_per_epoch(size_t count, size_t batch_size);

/* ---- trainer: the loop with state across passes ------------------------------------------- */

typedef struct {
    uint64_t step;        /* steps done so far (1-based after the first) */
    uint64_t total_steps; /* planned steps (schedule length) */
    uint64_t epoch;       /* pass number given to sl_trainer_epoch */
    size_t examples;      /* examples in this pass so far */
    size_t pass_examples; /* examples in the whole pass */
    double loss;          /* mean loss of this pass so far */
    double lr;            /* learning rate of the last step */
    double seconds;       /* wall time of this pass so far */
} sl_train_progress_t;

/* Called after every optimizer step; must not touch the model. */
typedef void (*sl_train_progress_fn)(void *ctx, const sl_train_progress_t *p);

/* Input-side augmentation of a filled batch before the forward pass (may modify values). */
typedef int (*sl_train_augment_fn)(void *ctx, sl_batch_t *batch, sl_rng_t *rng);

typedef struct sl_trainer sl_trainer_t;

/* A trainer for m (borrowed, must outlive it) with a fresh optimizer over the trainable
 * vector, batch buffers of cfg->train.batch_size rows, and an LR schedule of total_steps.
 * Dropout/augmentation randomness from sl_rng_init(seed, "dropout", round, client).
 * Augmentation: sl_augment_timeseries with cfg->train.augment_{scale,jitter,rotate} when any
 * is > 0 (sl_trainer_set_augment replaces it). */
SL_NODISCARD int sl_trainer_new(sl_trainer_t **out, sl_model_t *m, const sl_config_t *cfg, uint64_t total_steps,
                                uint64_t round, uint64_t client);
void sl_trainer_destroy(sl_trainer_t **t);
void sl_trainer_set_progress(sl_trainer_t *t, sl_train_progress_fn fn, void *ctx);
void sl_trainer_set_augment(sl_trainer_t *t, sl_train_augment_fn fn, void *ctx);
/* FedProx centre (borrowed, trainable-vector length) and mu; NULL or mu = 0 disables. */
void sl_trainer_set_prox(sl_trainer_t *t, const float *center, double mu);

/* One pass over src in an order shuffled from `order`, stopping early once the trainer has
 * taken max_total_steps steps in all (0 = no limit). Adds this pass to *out (may be NULL). */
SL_NODISCARD int sl_trainer_epoch(sl_trainer_t *t, const sl_example_source_t *src, sl_rng_t *order,
                                  uint64_t epoch, uint64_t max_total_steps, sl_train_stats_t *out);
uint64_t sl_trainer_steps(const sl_trainer_t *t);

/* ---- augmentation for inertial time series ------------------------------------------------ */

typedef struct {
    double scale_sigma;  /* per-sample, per-modality amplitude factor ~ N(1, sigma^2); 0 = off */
    double jitter_sigma; /* additive N(0, sigma^2) noise on every value; 0 = off */
    double rotate_deg;   /* random 3-D rotation up to this angle, the same for every 3-channel
                            time-series modality of a sample (acc and gyro rotate together); 0 = off */
} sl_augment_t;

/* An sl_train_augment_fn: ctx is a const sl_augment_t *. Applies to time-series modalities
 * only (rotation to those with exactly 3 channels) and to present modalities only. */
int sl_augment_timeseries(void *ctx, sl_batch_t *batch, sl_rng_t *rng);

#endif
