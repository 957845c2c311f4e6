/* core/optim: known answers from torch.optim (AdamW, SGD with momentum + weight decay),
 * clip_grad_norm_, FedProx gradient and the LR schedules. The reference values were
 * computed with torch 1.13 (/usr/bin/python3, float32, foreach=False):
 *   w0 = [0.5, -1.25, 2, 0, 3.5], three gradients below;
 *   AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
 *   SGD(lr=0.1, momentum=0.9, weight_decay=0.01) */
#include <math.h>
#include <stdlib.h>

#include "core/optim.h"
#include "support/check.h"

static const float w0[5] = {0.5f, -1.25f, 2.0f, 0.0f, 3.5f};
static const float grads[3][5] = {
    {0.1f, -0.2f, 0.3f, -0.4f, 0.5f}, {1.0f, 0.5f, -0.25f, 2.0f, -3.0f}, {-0.3f, 0.7f, 0.0f, 0.05f, 1.5f}};
static const float adamw_ref[3][5] = {
    {0.489500016f, -1.23874998f, 1.98800004f, 0.00999999978f, 3.48650002f},
    {0.480939627f, -1.24193347f, 1.98563087f, 0.00400645798f, 3.48925281f},
    {0.476308912f, -1.24783945f, 1.98335063f, -0.000778088812f, 3.48726177f},
};
static const float sgd_ref[3][5] = {
    {0.489499986f, -1.22874999f, 1.96800005f, 0.0400000028f, 3.44650006f},
    {0.3795605f, -1.25839627f, 1.96223199f, -0.124040008f, 3.69490361f},
    {0.310235411f, -1.35381949f, 1.9550786f, -0.276551962f, 3.76477194f},
};

static void run_known_answer(int kind, double lr, double wd, const float ref[3][5])
{
    sl_optim_params_t p = {kind, 0.9, wd, 0.9, 0.999, 1e-8};
    sl_optim_t o;
    CHECK_EQ(sl_optim_init(&o, &p, 5), 0);
    float w[5];
    memcpy(w, w0, sizeof w);
    for (int s = 0; s < 3; s++) {
        CHECK_EQ(sl_optim_step(&o, w, grads[s], lr), 0);
        for (int i = 0; i < 5; i++)
            CHECK_NEAR(w[i], ref[s][i], 2e-6);
    }
    CHECK_EQ(o.t, 3);
    /* reset: the same three steps again from w0 give the same answers */
    sl_optim_reset(&o);
    memcpy(w, w0, sizeof w);
    CHECK_EQ(sl_optim_step(&o, w, grads[0], lr), 0);
    for (int i = 0; i < 5; i++)
        CHECK_NEAR(w[i], ref[0][i], 2e-6);
    sl_optim_free(&o);
    CHECK(o.m == NULL && o.v == NULL);
}

static void test_nonfinite(void)
{
    sl_optim_params_t p = {SL_OPT_ADAMW, 0.9, 0.0, 0.9, 0.999, 1e-8};
    sl_optim_t o;
    CHECK_EQ(sl_optim_init(&o, &p, 3), 0);
    float w[3] = {1, 2, 3}, g[3] = {0.1f, NAN, 0.2f};
    CHECK_EQ(sl_optim_step(&o, w, g, 0.1), SL_ENOTFINITE);
    CHECK_CONTAINS(sl_last_error(), "entry 1 is not finite");
    CHECK(w[0] == 1 && w[1] == 2 && w[2] == 3);
    CHECK_EQ(o.t, 0);
    sl_optim_free(&o);
    sl_optim_params_t bad = {SL_OPT_ADAMW, 0.9, 0.0, 1.0, 0.999, 1e-8};
    CHECK_EQ(sl_optim_init(&o, &bad, 3), SL_EINVAL);
}

static void test_plain_sgd(void)
{
    /* momentum 0, no decay: w -= lr g exactly */
    sl_optim_params_t p = {SL_OPT_SGD, 0.0, 0.0, 0, 0, 0};
    sl_optim_t o;
    CHECK_EQ(sl_optim_init(&o, &p, 2), 0);
    float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, -0.25f};
    CHECK_EQ(sl_optim_step(&o, w, g, 0.5), 0);
    CHECK(w[0] == 0.75f && w[1] == -1.875f);
    sl_optim_free(&o);
}

static void test_clip_and_prox(void)
{
    float g[3] = {3.0f, -4.0f, 12.0f}; /* norm 13 */
    CHECK_NEAR(sl_vec_norm(g, 3), 13.0, 1e-12);
    CHECK_NEAR(sl_clip_grad_norm(g, 3, 5.0), 13.0, 1e-12);
    /* torch.nn.utils.clip_grad_norm_(max_norm=5): [1.153846, -1.538461, 4.615384] */
    CHECK_NEAR(g[0], 1.153846025466919, 1e-6);
    CHECK_NEAR(g[1], -1.538461446762085, 1e-6);
    CHECK_NEAR(g[2], 4.615384101867676, 1e-6);
    CHECK_NEAR(sl_vec_norm(g, 3), 5.0, 1e-6);
    float h[2] = {0.3f, 0.4f};
    CHECK_NEAR(sl_clip_grad_norm(h, 2, 1.0), 0.5, 1e-7); /* below the bound: unchanged */
    CHECK(h[0] == 0.3f && h[1] == 0.4f);
    CHECK_NEAR(sl_clip_grad_norm(h, 2, 0.0), 0.5, 1e-7); /* 0 = off */
    CHECK(h[0] == 0.3f);

    float pg[3] = {1.0f, 0.0f, -1.0f}, w[3] = {2.0f, 1.0f, 0.0f}, c[3] = {1.0f, 3.0f, 0.0f};
    sl_fedprox_grad(pg, w, c, 3, 0.5); /* g += 0.5 (w - c) = [0.5, -1, 0] */
    CHECK(pg[0] == 1.5f && pg[1] == -1.0f && pg[2] == -1.0f);
    sl_fedprox_grad(pg, w, NULL, 3, 0.5);
    CHECK(pg[0] == 1.5f);
    /* finite difference of (mu/2)||w - c||^2 */
    const double mu = 0.7, eps = 1e-3;
    float z[3] = {0, 0, 0};
    sl_fedprox_grad(z, w, c, 3, mu);
    for (int i = 0; i < 3; i++) {
        double fp = 0, fm = 0;
        for (int j = 0; j < 3; j++) {
            double d = (double)w[j] - c[j] + (i == j ? eps : 0), e = (double)w[j] - c[j] - (i == j ? eps : 0);
            fp += 0.5 * mu * d * d;
            fm += 0.5 * mu * e * e;
        }
        CHECK_NEAR(z[i], (fp - fm) / (2 * eps), 1e-6);
    }
}

static void test_schedules(void)
{
    CHECK_NEAR(sl_lr_at(SL_SCHED_CONSTANT, 0.1, 0, 0, 100), 0.1, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_CONSTANT, 0.1, 99, 0, 100), 0.1, 1e-15);
    /* warmup of 4: 0.025, 0.05, 0.075, 0.1, then flat */
    CHECK_NEAR(sl_lr_at(SL_SCHED_CONSTANT, 0.1, 0, 4, 100), 0.025, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_CONSTANT, 0.1, 3, 4, 100), 0.1, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_CONSTANT, 0.1, 50, 4, 100), 0.1, 1e-15);
    /* cosine, warmup 10, total 110: step 10 = peak, 60 = half, 110 = 0 */
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 4, 10, 110), 0.1, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 10, 10, 110), 0.2, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 60, 10, 110), 0.1, 1e-12);
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 35, 10, 110), 0.2 * 0.5 * (1 + cos(M_PI / 4)), 1e-12);
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 110, 10, 110), 0.0, 1e-15);
    CHECK_NEAR(sl_lr_at(SL_SCHED_COSINE, 0.2, 500, 10, 110), 0.0, 1e-15);
    /* monotone decay after warmup */
    double prev = 1e9;
    for (uint64_t s = 10; s <= 110; s++) {
        double lr = sl_lr_at(SL_SCHED_COSINE, 0.2, s, 10, 110);
        CHECK(lr <= prev);
        prev = lr;
    }
}

int main(void)
{
    run_known_answer(SL_OPT_ADAMW, 0.01, 0.1, adamw_ref);
    run_known_answer(SL_OPT_SGD, 0.1, 0.01, sgd_ref);
    test_nonfinite();
    test_plain_sgd();
    test_clip_and_prox();
    test_schedules();
    return check_summary("test_optim");
}
