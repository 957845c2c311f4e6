#include "client/trainer.h"

#include "core/evaluate.h"
#include "core/layout.h"
#include "core/log.h"
#include "core/train.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sl_client_trainer {
    sl_model_t *model; /* owned clone sharing the base's frozen weights */
    sl_config_t cfg;   /* the task overrides train.* per round */
    sl_example_source_t train, test;
    int has_test;
    uint64_t wire_id;
    uint64_t layout;
    const sl_schema_t *schema;
    char modality_names[SL_MAX_MODALITIES][SL_NAME_MAX];
    size_t n_present;
    sl_task_hook_fn hook;
    void *hook_ctx;
};

/* CPU time of the calling thread (training runs on it; OpenBLAS with one thread too). */
static double thread_cpu_seconds(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sl_client_trainer_new(sl_client_trainer_t **out, const sl_model_t *base, const sl_config_t *cfg,
                          sl_dataset_t *ds, size_t index)
{
    *out = NULL;
    if (index >= sl_dataset_num_clients(ds))
        return sl_error(SL_EINVAL, "client index %zu: the dataset has %zu clients", index,
                        sl_dataset_num_clients(ds));
    sl_client_trainer_t *t = calloc(1, sizeof *t);
    if (!t)
        return sl_error(SL_ENOMEM, "client trainer: out of memory");
    t->cfg = *cfg;
    t->wire_id = (uint64_t)index + 1;
    int rc = sl_model_clone_shared(base, &t->model);
    if (rc == 0)
        rc = sl_dataset_client_source(ds, index, SL_SPLIT_TRAIN, &t->train);
    if (rc) {
        sl_client_trainer_destroy(&t);
        return rc;
    }
    t->has_test = sl_dataset_client_source(ds, index, SL_SPLIT_TEST, &t->test) == 0 && t->test.count > 0;
    t->layout = sl_model_layout_hash(t->model);
    /* The modalities this client's device has (modality dropout removes some). */
    t->schema = sl_dataset_schema(ds);
    for (size_t m = 0; m < t->schema->n_modalities; m++)
        if (!sl_dataset_client_missing(ds, index, m))
            snprintf(t->modality_names[t->n_present++], SL_NAME_MAX, "%s", t->schema->modalities[m].name);
    *out = t;
    return 0;
}

void sl_client_trainer_destroy(sl_client_trainer_t **tp)
{
    if (!tp || !*tp)
        return;
    sl_model_destroy(&(*tp)->model);
    free(*tp);
    *tp = NULL;
}

sl_model_t *sl_client_trainer_model(sl_client_trainer_t *t)
{
    return t->model;
}

void sl_client_trainer_set_task_hook(sl_client_trainer_t *t, sl_task_hook_fn fn, void *ctx)
{
    t->hook = fn;
    t->hook_ctx = ctx;
}

/* Load `global` into the model and evaluate it on the local test split. */
static int evaluate_global(sl_client_trainer_t *t, const float *global, sl_eval_info_t *out)
{
    size_t n;
    (void)sl_model_trainable(t->model, &n);
    memset(out, 0, sizeof *out);
    if (!t->has_test)
        return 0;
    return sl_evaluate_vector(t->model, global, n, &t->test, (size_t)t->cfg.train.batch_size, out);
}

static int on_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                    sl_update_info_t *info)
{
    sl_client_trainer_t *t = ctx;
    int rc;
    if (t->hook && (rc = t->hook(t->hook_ctx, task)) != 0)
        return rc;
    memset(info, 0, sizeof *info);
    if (task->info.want_eval) {
        sl_eval_info_t ev;
        if ((rc = evaluate_global(t, global, &ev)) != 0)
            return rc;
        info->has_eval = (uint8_t)(t->has_test != 0);
        info->eval_examples = ev.examples;
        info->eval_loss = ev.loss;
        info->eval_accuracy = ev.accuracy;
    }
    size_t n;
    float *w = sl_model_trainable(t->model, &n);
    memcpy(w, global, n * sizeof *w);
    /* The coordinator's TASK decides this round's local training. */
    sl_config_t cfg = t->cfg;
    cfg.train.lr = task->info.lr;
    cfg.train.local_epochs = task->info.local_epochs;
    cfg.train.local_steps = (int64_t)task->info.local_steps;
    cfg.train.batch_size = task->info.batch_size;
    cfg.train.fedprox_mu = task->info.fedprox_mu;
    sl_train_stats_t st;
    double cpu0 = thread_cpu_seconds();
    rc = sl_train_local(t->model, &cfg, &t->train, task->round, task->client_id,
                        task->info.fedprox_mu > 0 ? global : NULL, &st);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        delta[i] = w[i] - global[i];
    /* FedAvg weighs by local dataset size (not by examples seen, which counts epochs). */
    info->examples = t->train.count;
    info->steps = st.steps;
    info->train_loss = st.loss;
    info->seconds = st.seconds;
    /* wall and CPU time of this thread: bench/curve_round.py splits a round's cost with it */
    SL_DEBUG("client %llu: round %llu trained %zu steps in %.4f s (%.4f s CPU), loss %.4f",
             (unsigned long long)t->wire_id, (unsigned long long)task->round, st.steps, st.seconds,
             thread_cpu_seconds() - cpu0, st.loss);
    return 0;
}

static int on_evaluate(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)round;
    (void)dim;
    return evaluate_global(ctx, global, out);
}

void sl_client_trainer_bind(sl_client_trainer_t *t, sl_client_opts_t *opts)
{
    size_t n;
    (void)sl_model_trainable(t->model, &n);
    opts->client_id = t->wire_id;
    opts->dim = n;
    opts->layout = t->layout;
    opts->train_examples = t->train.count;
    opts->test_examples = t->has_test ? t->test.count : 0;
    opts->n_modalities = t->n_present;
    for (size_t m = 0; m < t->n_present && m < SL_WIRE_MAX_MODS; m++)
        opts->modalities[m] = t->modality_names[m];
    opts->ctx = t;
    opts->train = on_train;
    opts->evaluate = on_evaluate;
}
