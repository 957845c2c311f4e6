#include "core/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sl_optim_params_from_config(sl_optim_params_t *p, const sl_config_t *cfg)
{
    memset(p, 0, sizeof *p);
    p->kind = cfg->train.optimizer;
    p->momentum = cfg->train.momentum;
    p->weight_decay = cfg->train.weight_decay;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->eps = 1e-8;
}

int sl_optim_init(sl_optim_t *o, const sl_optim_params_t *p, size_t n)
{
    memset(o, 0, sizeof *o);
    if (p->kind != SL_OPT_SGD && p->kind != SL_OPT_ADAMW)
        return sl_error(SL_EINVAL, "optim: unknown optimizer kind %d", p->kind);
    if (p->kind == SL_OPT_ADAMW && (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
                                    !(p->eps > 0)))
        return sl_error(SL_EINVAL, "optim: AdamW needs 0 <= beta1, beta2 < 1 and eps > 0");
    o->p = *p;
    o->n = n;
    o->m = calloc(n ? n : 1, sizeof(float));
    if (p->kind == SL_OPT_ADAMW)
        o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || (p->kind == SL_OPT_ADAMW && !o->v)) {
        sl_optim_free(o);
        return sl_error(SL_ENOMEM, "optim: cannot allocate state for %zu parameters", n);
    }
    return 0;
}

void sl_optim_free(sl_optim_t *o)
{
    if (!o)
        return;
    free(o->m);
    free(o->v);
    memset(o, 0, sizeof *o);
}

void sl_optim_reset(sl_optim_t *o)
{
    o->t = 0;
    if (o->m)
        memset(o->m, 0, o->n * sizeof(float));
    if (o->v)
        memset(o->v, 0, o->n * sizeof(float));
}

int sl_optim_step(sl_optim_t *o, float *w, const float *g, double lr)
{
    const size_t n = o->n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(g[i]))
            return sl_error(SL_ENOTFINITE, "optim: gradient entry %zu is not finite", i);
    o->t++;
    if (o->p.kind == SL_OPT_SGD) {
        const float mom = (float)o->p.momentum, wd = (float)o->p.weight_decay, flr = (float)lr;
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] + wd * w[i];
            if (mom > 0.0f) {
                o->m[i] = o->t == 1 ? gi : mom * o->m[i] + gi;
                gi = o->m[i];
            }
            w[i] -= flr * gi;
        }
        return 0;
    }
    /* AdamW, as torch.optim.adamw._single_tensor_adamw */
    const double b1 = o->p.beta1, b2 = o->p.beta2;
    const double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->p.eps;
    const float decay = (float)(1.0 - lr * o->p.weight_decay), fb1 = (float)b1, fb2 = (float)b2;
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i];
        w[i] *= decay;
        o->m[i] += (gi - o->m[i]) * (1.0f - fb1); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        o->v[i] = o->v[i] * fb2 + (1.0f - fb2) * gi * gi;
        const float denom = sqrtf(o->v[i]) / bc2_sqrt + eps;
        w[i] -= step_size * o->m[i] / denom;
    }
    return 0;
}

double sl_vec_norm(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

double sl_clip_grad_norm(float *g, size_t n, double max_norm)
{
    double norm = sl_vec_norm(g, n);
    if (max_norm > 0 && norm > max_norm) {
        const float scale = (float)(max_norm / norm);
        for (size_t i = 0; i < n; i++)
            g[i] *= scale;
    }
    return norm;
}

void sl_fedprox_grad(float *g, const float *w, const float *center, size_t n, double mu)
{
    if (!center || mu == 0.0)
        return;
    const float fmu = (float)mu;
    for (size_t i = 0; i < n; i++)
        g[i] += fmu * (w[i] - center[i]);
}

double sl_lr_at(int schedule, double base_lr, uint64_t step, uint64_t warmup, uint64_t total)
{
    if (step < warmup)
        return base_lr * (double)(step + 1) / (double)warmup;
    if (schedule != SL_SCHED_COSINE || total <= warmup)
        return base_lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0)
        progress = 1.0;
    return base_lr * 0.5 * (1.0 + cos(M_PI * progress));
}
