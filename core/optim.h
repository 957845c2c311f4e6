/* core/optim: optimizers and gradient transforms on flat float vectors.
 *
 * Everything here works on the model's contiguous trainable vector w (n) and its
 * gradient g (n): SGD with momentum, AdamW (decoupled weight decay, as torch.optim.AdamW),
 * global gradient-norm clipping, learning-rate schedules and the FedProx proximal term.
 * Arithmetic follows PyTorch's reference (non-fused, non-foreach) implementations so the
 * known-answer tests can compare against torch step by step.
 */
#ifndef SL_OPTIM_H
#define SL_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"

typedef struct {
    int kind;            /* sl_optimizer_kind_t */
    double momentum;     /* SGD: momentum (0 = plain SGD) */
    double weight_decay; /* SGD: L2 added to the gradient (torch SGD); AdamW: decoupled */
    double beta1, beta2; /* AdamW */
    double eps;          /* AdamW */
} sl_optim_params_t;

typedef struct {
    sl_optim_params_t p;
    size_t n;
    uint64_t t; /* steps taken */
    float *m;   /* (n) SGD momentum buffer or AdamW first moment */
    float *v;   /* (n) AdamW second moment; NULL for SGD */
} sl_optim_t;

/* Parameters from cfg->train (optimizer, momentum, weight_decay) with AdamW betas
 * (0.9, 0.999) and eps 1e-8. */
void sl_optim_params_from_config(sl_optim_params_t *p, const sl_config_t *cfg);

/* Allocate zeroed state for a vector of n floats. Free with sl_optim_free. */
SL_NODISCARD int sl_optim_init(sl_optim_t *o, const sl_optim_params_t *p, size_t n);
void sl_optim_free(sl_optim_t *o);
/* Forget the state (zero moments, t = 0), keeping the buffers. */
void sl_optim_reset(sl_optim_t *o);

/* One update of w (n) from gradient g (n) at learning rate lr.
 *   SGD:   g' = g + wd*w; buf = momentum*buf + g' (buf = g' on the first step); w -= lr*buf
 *   AdamW: w *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *          w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 * Returns SL_ENOTFINITE (w unchanged) if g holds a NaN or infinity. */
SL_NODISCARD int sl_optim_step(sl_optim_t *o, float *w, const float *g, double lr);

/* L2 norm of x (n), accumulated in double. */
double sl_vec_norm(const float *x, size_t n);

/* Scale g (n) so its L2 norm is at most max_norm (no-op if max_norm <= 0); returns the
 * norm before clipping (as torch.nn.utils.clip_grad_norm_, without its 1e-6 epsilon). */
double sl_clip_grad_norm(float *g, size_t n, double max_norm);

/* FedProx: g += mu * (w - center), the gradient of (mu/2)*||w - center||^2. */
void sl_fedprox_grad(float *g, const float *w, const float *center, size_t n, double mu);

/* Learning rate at 0-based `step` of `total` steps:
 *   constant: base_lr after a linear warmup (lr*(step+1)/warmup for step < warmup)
 *   cosine:   same warmup, then base_lr * 0.5*(1 + cos(pi * (step-warmup)/(total-warmup))) */
double sl_lr_at(int schedule, double base_lr, uint64_t step, uint64_t warmup, uint64_t total);

#endif
