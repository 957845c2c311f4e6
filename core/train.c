#include "core/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/optim.h"

struct sl_trainer {
    sl_model_t *model; /* borrowed */
    sl_config_t cfg;
    sl_optim_t opt;
    sl_batch_t batch;
    sl_rng_t drop_rng;
    size_t *order;     /* (order_cap) example indices of the current pass */
    size_t order_cap;
    uint64_t step, total_steps;
    const float *prox_center;
    double prox_mu;
    sl_train_progress_fn progress;
    void *progress_ctx;
    sl_train_augment_fn augment;
    void *augment_ctx;
    sl_augment_t aug; /* from cfg->train.augment_*; the default augment_ctx */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t sl_train_steps_per_epoch(size_t count, size_t batch_size)
{
    return batch_size ? (count + batch_size - 1) / batch_size : 0;
}

int sl_trainer_new(sl_trainer_t **out, sl_model_t *m, const sl_config_t *cfg, uint64_t total_steps,
                   uint64_t round, uint64_t client)
{
    *out = NULL;
    if (cfg->train.batch_size < 1)
        return sl_error(SL_ECONFIG, "train: batch_size must be >= 1");
    sl_trainer_t *t = calloc(1, sizeof *t);
    if (!t)
        return sl_error(SL_ENOMEM, "train: out of memory");
    t->model = m;
    t->cfg = *cfg;
    t->total_steps = total_steps;
    size_t n = 0;
    (void)sl_model_trainable(m, &n);
    sl_optim_params_t p;
    sl_optim_params_from_config(&p, cfg);
    int rc = sl_optim_init(&t->opt, &p, n);
    if (rc == 0)
        rc = sl_batch_init(&t->batch, sl_model_schema(m), (size_t)cfg->train.batch_size);
    if (rc) {
        sl_trainer_destroy(&t);
        return rc;
    }
    sl_rng_init(&t->drop_rng, (uint64_t)cfg->run.seed, "dropout", round, client);
    t->aug.scale_sigma = cfg->train.augment_scale;
    t->aug.jitter_sigma = cfg->train.augment_jitter;
    t->aug.rotate_deg = cfg->train.augment_rotate;
    if (t->aug.scale_sigma > 0 || t->aug.jitter_sigma > 0 || t->aug.rotate_deg > 0)
        sl_trainer_set_augment(t, sl_augment_timeseries, &t->aug);
    *out = t;
    return 0;
}

void sl_trainer_destroy(sl_trainer_t **tp)
{
    if (!tp || !*tp)
        return;
    sl_trainer_t *t = *tp;
    sl_optim_free(&t->opt);
    sl_batch_free(&t->batch);
    sl_rng_wipe(&t->drop_rng);
    free(t->order);
    free(t);
    *tp = NULL;
}

void sl_trainer_set_progress(sl_trainer_t *t, sl_train_progress_fn fn, void *ctx)
{
    t->progress = fn;
    t->progress_ctx = ctx;
}

void sl_trainer_set_augment(sl_trainer_t *t, sl_train_augment_fn fn, void *ctx)
{
    t->augment = fn;
    t->augment_ctx = ctx;
}

void sl_trainer_set_prox(sl_trainer_t *t, const float *center, double mu)
{
    t->prox_center = center;
    t->prox_mu = mu;
}

uint64_t sl_trainer_steps(const sl_trainer_t *t) { return t->step; }

int sl_trainer_epoch(sl_trainer_t *t, const sl_example_source_t *src, sl_rng_t *order, uint64_t epoch,
                     uint64_t max_total_steps, sl_train_stats_t *out)
{
    const size_t N = src->count, B = t->batch.capacity;
    if (N == 0)
        return 0;
    if (!src->fill)
        return sl_error(SL_EINVAL, "train: example source has no fill function");
    if (N > t->order_cap) {
        size_t *o = realloc(t->order, N * sizeof *o);
        if (!o)
            return sl_error(SL_ENOMEM, "train: cannot allocate an order of %zu examples", N);
        t->order = o;
        t->order_cap = N;
    }
    for (size_t i = 0; i < N; i++)
        t->order[i] = i;
    sl_rng_shuffle_size(order, t->order, N);

    size_t n = 0;
    float *w = sl_model_trainable(t->model, &n);
    float *g = sl_model_trainable_grad(t->model);
    const double t0 = now_seconds();
    double loss_sum = 0.0;
    size_t seen = 0, steps = 0;
    int rc = 0;
    for (size_t pos = 0; pos < N; pos += B) {
        if (max_total_steps && t->step >= max_total_steps)
            break;
        const size_t bs = N - pos < B ? N - pos : B;
        if ((rc = src->fill(src->ctx, t->order + pos, bs, &t->batch)) != 0)
            return sl_error_wrap(rc, "train: filling a batch");
        if (t->batch.size != bs)
            return sl_error(SL_EINVAL, "train: the source filled %zu rows, %zu asked", t->batch.size, bs);
        if (t->augment && (rc = t->augment(t->augment_ctx, &t->batch, &t->drop_rng)) != 0)
            return rc;
        sl_model_zero_grad(t->model);
        float loss = 0.0f;
        if ((rc = sl_model_forward(t->model, &t->batch, 1, &t->drop_rng, &loss)) != 0)
            return rc;
        if (!isfinite(loss))
            return sl_error(SL_ENOTFINITE, "train: loss is not finite at step %llu (lr too high?)",
                            (unsigned long long)t->step + 1);
        if ((rc = sl_model_backward(t->model)) != 0)
            return rc;
        if (t->prox_center && t->prox_mu > 0)
            sl_fedprox_grad(g, w, t->prox_center, n, t->prox_mu);
        if (t->cfg.train.grad_clip > 0)
            (void)sl_clip_grad_norm(g, n, t->cfg.train.grad_clip);
        const double lr = sl_lr_at(t->cfg.train.schedule, t->cfg.train.lr, t->step,
                                   (uint64_t)t->cfg.train.warmup_steps, t->total_steps);
        if ((rc = sl_optim_step(&t->opt, w, g, lr)) != 0)
            return sl_error_wrap(rc, "train: step %llu", (unsigned long long)t->step + 1);
        t->step++;
        steps++;
        seen += bs;
        loss_sum += (double)loss * (double)bs;
        if (t->progress) {
            sl_train_progress_t p = {t->step, t->total_steps, epoch, seen, N, loss_sum / (double)seen, lr,
                                     now_seconds() - t0};
            t->progress(t->progress_ctx, &p);
        }
    }
    if (out) {
        const double total = out->loss * (double)out->examples + loss_sum;
        out->examples += seen;
        out->steps += steps;
        out->loss = out->examples ? total / (double)out->examples : 0.0;
        out->seconds += now_seconds() - t0;
    }
    return 0;
}

int sl_train_local(sl_model_t *m, const sl_config_t *cfg, const sl_example_source_t *src, uint64_t round,
                   uint64_t client, const float *prox_center, sl_train_stats_t *out)
{
    sl_train_stats_t stats = {0};
    if (out)
        *out = stats;
    const size_t N = src->count, B = (size_t)(cfg->train.batch_size > 0 ? cfg->train.batch_size : 1);
    if (N == 0)
        return 0;
    const uint64_t per_epoch = sl_train_steps_per_epoch(N, B);
    const uint64_t total = cfg->train.local_steps > 0 ? (uint64_t)cfg->train.local_steps
                                                      : per_epoch * (uint64_t)cfg->train.local_epochs;
    if (total == 0)
        return 0;
    sl_trainer_t *t = NULL;
    int rc = sl_trainer_new(&t, m, cfg, total, round, client);
    if (rc)
        return rc;
    sl_trainer_set_prox(t, prox_center, cfg->train.fedprox_mu);
    sl_rng_t order;
    sl_rng_init(&order, (uint64_t)cfg->run.seed, "shuffle", round, client);
    for (uint64_t e = 0; rc == 0 && sl_trainer_steps(t) < total; e++)
        rc = sl_trainer_epoch(t, src, &order, e, total, &stats);
    sl_rng_wipe(&order);
    sl_trainer_destroy(&t);
    if (out)
        *out = stats;
    return rc;
}

int sl_evaluate(sl_model_t *m, const sl_example_source_t *src, size_t batch_size, sl_metrics_t *out)
{
    const sl_schema_t *schema = sl_model_schema(m);
    if (!out->confusion || out->n_classes != schema->n_classes)
        return sl_error(SL_EINVAL, "evaluate: metrics must be initialised with the model's %zu classes",
                        schema->n_classes);
    if (batch_size == 0)
        return sl_error(SL_EINVAL, "evaluate: batch_size must be >= 1");
    sl_metrics_reset(out);
    if (src->count == 0) {
        sl_metrics_finish(out);
        return 0;
    }
    if (!src->fill)
        return sl_error(SL_EINVAL, "evaluate: example source has no fill function");
    const size_t B = batch_size < src->count ? batch_size : src->count;
    sl_batch_t batch;
    size_t *idx = malloc(B * sizeof *idx);
    int rc = idx ? sl_batch_init(&batch, schema, B) : sl_error(SL_ENOMEM, "evaluate: out of memory");
    if (rc) {
        free(idx);
        return rc;
    }
    for (size_t pos = 0; pos < src->count; pos += B) {
        const size_t bs = src->count - pos < B ? src->count - pos : B;
        for (size_t i = 0; i < bs; i++)
            idx[i] = pos + i;
        if ((rc = src->fill(src->ctx, idx, bs, &batch)) != 0) {
            rc = sl_error_wrap(rc, "evaluate: filling a batch");
            break;
        }
        if ((rc = sl_model_forward(m, &batch, 0, NULL, NULL)) != 0)
            break;
        if ((rc = sl_metrics_add_logits(out, sl_model_logits(m), batch.labels, bs)) != 0)
            break;
    }
    sl_metrics_finish(out);
    sl_batch_free(&batch);
    free(idx);
    return rc;
}

/* ---- augmentation ------------------------------------------------------------------------- */

/* Rotation matrix R (3, 3) about a uniform random axis by an angle uniform in [-max, max]. */
static void random_rotation(sl_rng_t *rng, double max_rad, float R[9])
{
    double ax[3], nrm = 0.0;
    do {
        nrm = 0.0;
        for (int i = 0; i < 3; i++) {
            ax[i] = sl_rng_normal(rng);
            nrm += ax[i] * ax[i];
        }
    } while (nrm < 1e-12);
    nrm = sqrt(nrm);
    for (int i = 0; i < 3; i++)
        ax[i] /= nrm;
    const double th = (2.0 * sl_rng_uniform(rng) - 1.0) * max_rad, c = cos(th), s = sin(th), C = 1.0 - c;
    const double x = ax[0], y = ax[1], z = ax[2];
    const double r[9] = {c + x * x * C,     x * y * C - z * s, x * z * C + y * s, y * x * C + z * s, c + y * y * C,
                         y * z * C - x * s, z * x * C - y * s, z * y * C + x * s, c + z * z * C};
    for (int i = 0; i < 9; i++)
        R[i] = (float)r[i];
}

int sl_augment_timeseries(void *ctx, sl_batch_t *batch, sl_rng_t *rng)
{
    const sl_augment_t *a = ctx;
    const sl_schema_t *s = batch->schema;
    for (size_t b = 0; b < batch->size; b++) {
        float R[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
        if (a->rotate_deg > 0)
            random_rotation(rng, a->rotate_deg * M_PI / 180.0, R);
        for (size_t mi = 0; mi < s->n_modalities; mi++) {
            const sl_modality_t *md = &s->modalities[mi];
            if (md->kind != SL_MOD_TIMESERIES || !batch->present[b * s->n_modalities + mi])
                continue;
            const size_t T = md->dims[0], C = md->dims[1];
            float *x = batch->x[mi] + b * T * C; /* (T, C) */
            if (a->rotate_deg > 0 && C == 3)
                for (size_t t = 0; t < T; t++) {
                    const float v0 = x[3 * t], v1 = x[3 * t + 1], v2 = x[3 * t + 2];
                    x[3 * t] = R[0] * v0 + R[1] * v1 + R[2] * v2;
                    x[3 * t + 1] = R[3] * v0 + R[4] * v1 + R[5] * v2;
                    x[3 * t + 2] = R[6] * v0 + R[7] * v1 + R[8] * v2;
                }
            if (a->scale_sigma > 0) {
                const float f = (float)(1.0 + a->scale_sigma * sl_rng_normal(rng));
                for (size_t i = 0; i < T * C; i++)
                    x[i] *= f;
            }
            if (a->jitter_sigma > 0)
                for (size_t i = 0; i < T * C; i++)
                    x[i] += (float)(a->jitter_sigma * sl_rng_normal(rng));
        }
    }
    return 0;
}
