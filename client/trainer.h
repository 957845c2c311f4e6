/* client/trainer: a federated client backed by a real model and a dataset client.
 *
 * It supplies the train / evaluate callbacks of sl_client_opts_t (client/client.h):
 * TASK -> load the global vector into a model that shares the frozen base with every
 * other client of the process, train on the client's local split with sl_train_local
 * (the TASK's lr, epochs/steps, batch size and FedProx mu), reply with the delta.
 *
 *   sl_client_trainer_t *t;
 *   sl_client_trainer_new(&t, base_model, &cfg, dataset, index);
 *   sl_client_opts_t o = {0};
 *   sl_client_trainer_bind(t, &o);     (fills ids, sizes, modalities, callbacks)
 *   sl_client_new(&client, &o);
 *
 * Privacy hooks (privatize, masked, secagg) are left for the caller to set.
 */
#ifndef SL_CLIENT_TRAINER_H
#define SL_CLIENT_TRAINER_H

#include "client/client.h"
#include "core/config.h"
#include "core/model.h"
#include "datasets/dataset.h"

typedef struct sl_client_trainer sl_client_trainer_t;

/* A trainer for dataset client `index`. `base` (frozen weights shared read-only) and `ds`
 * are borrowed and must outlive the trainer; cfg is copied. Its wire id is index + 1. */
SL_NODISCARD int sl_client_trainer_new(sl_client_trainer_t **out, const sl_model_t *base,
                                       const sl_config_t *cfg, sl_dataset_t *ds, size_t index);
void sl_client_trainer_destroy(sl_client_trainer_t **t);

/* Fill client_id, dim, layout, example counts, modalities, ctx, train and evaluate. */
void sl_client_trainer_bind(sl_client_trainer_t *t, sl_client_opts_t *opts);

/* A hook run at the start of every TASK, before training (fault injection: stragglers,
 * crashes). Return < 0 to fail the task. */
typedef int (*sl_task_hook_fn)(void *ctx, const sl_client_task_t *task);
void sl_client_trainer_set_task_hook(sl_client_trainer_t *t, sl_task_hook_fn fn, void *ctx);

/* The model the trainer trains (borrowed), e.g. for privacy hooks that need its layout. */
sl_model_t *sl_client_trainer_model(sl_client_trainer_t *t);

#endif
