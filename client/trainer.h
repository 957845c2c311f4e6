/* client/trainer: the bridge between the client state machine and local training.
 *
 * An sl_local_trainer_t holds one model and a client's local train / test splits; its two
 * callbacks are what sl_client_opts_t wants:
 *   train     global -> model's trainable vector; (TASK eval) evaluate it on the test split;
 *             sl_train_local with cfg->train overridden by the TASK (lr, local_epochs,
 *             local_steps, batch_size, fedprox_mu; FedProx centre = the global vector);
 *             delta = trained - global; weight = number of local train examples
 *   evaluate  global -> model, sl_evaluate on the test split
 * Deterministic: data order and dropout derive from (run.seed, round, client id).
 *
 *   sl_local_trainer_t lt = {.model = m, .cfg = &cfg, .client_id = id};
 *   sl_dataset_client_source(ds, i, SL_SPLIT_TRAIN, &lt.train);
 *   sl_dataset_client_source(ds, i, SL_SPLIT_TEST, &lt.test);
 *   sl_client_opts_t co;  sl_local_trainer_client_opts(&lt, &co);   (then add hooks)
 *   sl_client_new(&c, &co);
 * Virtual clients in one process: one model per client via sl_model_clone_shared (frozen
 * weights shared), or one model shared by clients that run one at a time (the runtime is
 * single-threaded: the trainable vector is fully overwritten by every task).
 */
#ifndef SL_CLIENT_TRAINER_H
#define SL_CLIENT_TRAINER_H

#include "client/client.h"
#include "core/batch.h"
#include "core/config.h"
#include "core/model.h"

typedef struct {
    sl_model_t *model;         /* borrowed */
    const sl_config_t *cfg;    /* borrowed: run.seed, train.* defaults */
    uint64_t client_id;        /* != 0; the data-order stream uses it */
    sl_example_source_t train; /* local training split (borrowed view) */
    sl_example_source_t test;  /* local test split (count 0 = none) */
} sl_local_trainer_t;

/* sl_client_opts_t callbacks; ctx is an sl_local_trainer_t *. */
int sl_local_trainer_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                           sl_update_info_t *info);
int sl_local_trainer_evaluate(void *ctx, uint64_t round, const float *global, size_t dim,
                              sl_eval_info_t *out);

/* Fill client options from the trainer: client_id, dim and layout hash from the model,
 * example counts, the schema's modality names, ctx/train/evaluate. Other fields zero. */
void sl_local_trainer_client_opts(sl_local_trainer_t *t, sl_client_opts_t *o);

#endif
