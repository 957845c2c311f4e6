#include "client/trainer.h"

#include "core/layout.h"
#include "core/metrics.h"
#include "core/train.h"

#include <math.h>
#include <string.h>

/* global (dim) -> the model's trainable vector. */
static int load_global(sl_local_trainer_t *t, const float *global, size_t dim, float **w)
{
    size_t n = 0;
    *w = sl_model_trainable(t->model, &n);
    if (n != dim)
        return sl_error(SL_EMISMATCH,
                        "client %llu: global vector has %zu values, the model's trainable vector %zu",
                        (unsigned long long)t->client_id, dim, n);
    memcpy(*w, global, dim * sizeof **w);
    return 0;
}

static int eval_split(sl_local_trainer_t *t, size_t batch, sl_eval_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (t->test.count == 0)
        return 0;
    const sl_schema_t *schema = sl_model_schema(t->model);
    sl_metrics_t mt;
    int rc = sl_metrics_init(&mt, schema->n_classes);
    if (rc)
        return rc;
    rc = sl_evaluate(t->model, &t->test, batch ? batch : 64, &mt);
    if (!rc) {
        out->examples = mt.examples;
        out->loss = mt.loss;
        out->accuracy = mt.accuracy;
        out->macro_f1 = mt.macro_f1;
        if (!isfinite(out->loss))
            rc = sl_error(SL_ENOTFINITE, "client %llu: evaluation loss is not finite",
                          (unsigned long long)t->client_id);
    }
    sl_metrics_free(&mt);
    return rc;
}

int sl_local_trainer_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                           sl_update_info_t *info)
{
    sl_local_trainer_t *t = ctx;
    size_t n = 0;
    sl_model_trainable(t->model, &n);
    float *w;
    int rc = load_global(t, global, n, &w);
    if (rc)
        return rc;
    if (t->train.count == 0)
        return sl_error(SL_EINVAL, "client %llu: no local training examples",
                        (unsigned long long)t->client_id);
    if (task->info.want_eval && t->test.count > 0) {
        sl_eval_info_t ev;
        if ((rc = eval_split(t, task->info.batch_size, &ev)))
            return rc;
        info->has_eval = 1;
        info->eval_examples = ev.examples;
        info->eval_loss = ev.loss;
        info->eval_accuracy = ev.accuracy;
    }
    sl_config_t local = *t->cfg; /* the TASK's training configuration wins */
    local.train.lr = task->info.lr;
    local.train.local_epochs = (int64_t)task->info.local_epochs;
    local.train.local_steps = (int64_t)task->info.local_steps;
    local.train.batch_size = (int64_t)task->info.batch_size;
    local.train.fedprox_mu = task->info.fedprox_mu;
    sl_train_stats_t st;
    memset(&st, 0, sizeof st);
    rc = sl_train_local(t->model, &local, &t->train, task->round, t->client_id,
                        task->info.fedprox_mu > 0 ? global : NULL, &st);
    if (rc)
        return rc;
    /* delta (dim) = trained (dim) - global (dim) */
    for (size_t j = 0; j < n; j++)
        delta[j] = w[j] - global[j];
    info->examples = t->train.count; /* FedAvg weight n_k: the local dataset size */
    info->steps = st.steps;
    info->train_loss = st.loss;
    info->seconds = st.seconds;
    if (!isfinite(st.loss) || st.loss < 0)
        return sl_error(SL_ENOTFINITE, "client %llu: training loss %g", (unsigned long long)t->client_id,
                        st.loss);
    return 0;
}

int sl_local_trainer_evaluate(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)round;
    sl_local_trainer_t *t = ctx;
    float *w;
    int rc = load_global(t, global, dim, &w);
    if (rc)
        return rc;
    return eval_split(t, (size_t)t->cfg->train.batch_size, out);
}

void sl_local_trainer_client_opts(sl_local_trainer_t *t, sl_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    size_t n = 0;
    sl_model_trainable(t->model, &n);
    o->client_id = t->client_id;
    o->dim = n;
    o->layout = sl_model_layout_hash(t->model);
    o->train_examples = t->train.count;
    o->test_examples = t->test.count;
    const sl_schema_t *s = sl_model_schema(t->model);
    o->n_modalities = s->n_modalities < SL_WIRE_MAX_MODS ? s->n_modalities : SL_WIRE_MAX_MODS;
    for (size_t i = 0; i < o->n_modalities; i++)
        o->modalities[i] = s->modalities[i].name;
    o->ctx = t;
    o->train = sl_local_trainer_train;
    o->evaluate = sl_local_trainer_evaluate;
}
