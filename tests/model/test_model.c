/* tests/model/test_model: the multimodal model end to end.
 *
 *  - gradients of the whole model vs central finite differences (LoRA with an absent modality,
 *    all six LoRA targets with dropout and label smoothing, full mode on every modality kind with
 *    mean pooling, head mode);
 *  - LoRA: merged == unmerged logits, unmerge restores the base bit for bit, B = 0 equals the
 *    base model, frozen tensors get no gradient and are never written;
 *  - an absent modality gives the logits of a model built without it, whatever its values;
 *  - clones share frozen weights and own their trainable vector;
 *  - a batch split across threads gives the one-thread logits, loss and gradients;
 *  - layout: frozen first, trainable last, contiguous, named as agreed;
 *  - errors on bad configs and inputs; a tiny model overfits a few samples.
 */
#include "core/model.h"
#include "model_fixture.h"
#include "support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sl_rng_t R;

typedef struct {
    sl_model_t *m;
    const sl_batch_t *b;
    int dropout;
} mctx;

static double model_loss(const mctx *c)
{
    sl_rng_t dr; /* the same dropout masks on every evaluation */
    sl_rng_init(&dr, 99, "dropout", 0, 0);
    float l = 0;
    int rc = sl_model_forward(c->m, c->b, c->dropout, &dr, &l);
    CHECK(rc == 0);
    return l;
}

/* Finite-difference check of the trainable gradient, central differences with h = 2e-3.
 * The forward is float32: the loss (~1.5) carries a rounding error around 2e-7, i.e. ~1e-4 in a
 * central difference with this h. h is that small because the CLS and embedding rows start
 * with norm ~0.1 and the LayerNorm after them makes the loss strongly curved along them
 * (with h = 1e-2 the truncation error h^2/6 f''' reaches 10% there; with 2e-3 it is < 0.5%).
 * Per coordinate: |num - ana| <= 3e-4 + 2e-2 |ana|. For random directions v (|v| = 1) the
 * directional derivative g.v is large, so the check is tighter in relative terms (1e-2). A wrong
 * term (missing residual, transposed weight, wrong mask) gives relative errors of order 1. */
static void grad_check(const char *label, sl_model_t *m, const sl_batch_t *b, int dropout)
{
    mctx c = {m, b, dropout};
    size_t nt, np;
    float *theta = sl_model_trainable(m, &nt);
    const sl_param_info_t *p = sl_model_params(m, &np);
    size_t toff = sl_model_trainable_offset(m);
    sl_model_zero_grad(m);
    model_loss(&c);
    CHECK(sl_model_backward(m) == 0);
    float *g = malloc(nt * sizeof(float));
    memcpy(g, sl_model_trainable_grad(m), nt * sizeof(float));
    const float h = 2e-3f;
    size_t checked = 0, failed = 0;
    double worst = 0;
    for (size_t i = 0; i < np; i++) {
        if (!p[i].trainable)
            continue;
        size_t base = p[i].offset - toff, am = 0;
        double gmax = 0;
        for (size_t j = 0; j < p[i].numel; j++)
            if (fabs(g[base + j]) > gmax) {
                gmax = fabs(g[base + j]);
                am = j;
            }
        CHECK_MSG(gmax > 0, "%s: %s has an all-zero gradient", label, p[i].name);
        size_t picks[3] = {am, (size_t)sl_rng_below(&R, p[i].numel), (size_t)sl_rng_below(&R, p[i].numel)};
        for (int k = 0; k < 3; k++) {
            size_t j = base + picks[k];
            float x0 = theta[j];
            theta[j] = x0 + h;
            double lp = model_loss(&c);
            theta[j] = x0 - h;
            double lm = model_loss(&c);
            theta[j] = x0;
            double num = (lp - lm) / (2.0 * (double)h), err = fabs(num - g[j]);
            worst = fmax(worst, err / (3e-4 + 2e-2 * fabs(g[j])));
            checked++;
            if (err > 3e-4 + 2e-2 * fabs(g[j])) {
                failed++;
                fprintf(stderr, "%s: %s[%zu]: numeric %.7g analytic %.7g\n", label, p[i].name, picks[k], num,
                        (double)g[j]);
            }
        }
    }
    CHECK_MSG(failed == 0, "%s: %zu of %zu coordinates off", label, failed, checked);
    /* directional derivatives */
    float *v = malloc(nt * sizeof(float)), *t0 = malloc(nt * sizeof(float));
    memcpy(t0, theta, nt * sizeof(float));
    for (int rep = 0; rep < 3; rep++) {
        double nv = 0, gv = 0;
        for (size_t j = 0; j < nt; j++) {
            v[j] = (float)sl_rng_normal(&R) + (rep == 0 ? 0.0f : g[j] * 50.0f);
            nv += (double)v[j] * v[j];
        }
        nv = sqrt(nv);
        for (size_t j = 0; j < nt; j++) {
            v[j] = (float)(v[j] / nv);
            gv += (double)v[j] * g[j];
        }
        for (size_t j = 0; j < nt; j++)
            theta[j] = t0[j] + h * v[j];
        double lp = model_loss(&c);
        for (size_t j = 0; j < nt; j++)
            theta[j] = t0[j] - h * v[j];
        double lm = model_loss(&c);
        memcpy(theta, t0, nt * sizeof(float));
        double num = (lp - lm) / (2.0 * (double)h);
        CHECK_MSG(fabs(num - gv) <= 3e-4 + 1e-2 * fabs(gv), "%s: direction %d: numeric %.7g analytic %.7g",
                  label, rep, num, gv);
    }
    printf("%s: %zu coordinates checked, worst error / tolerance %.3f\n", label, checked, worst);
    free(v), free(t0), free(g);
}

static sl_model_t *new_model(const sl_config_t *cfg, const sl_schema_t *s)
{
    sl_model_t *m = NULL;
    int rc = sl_model_new(&m, cfg, s);
    CHECK_MSG(rc == 0, "sl_model_new: %s", sl_last_error());
    if (rc) {
        fprintf(stderr, "fatal\n");
        exit(1);
    }
    return m;
}

static void test_gradients(void)
{
    sl_config_t cfg;
    sl_schema_t s;
    sl_batch_t b;
    /* LoRA on q,k,v,o; sample 1 lacks gyro (its values NaN) */
    fx_small_config(&cfg, SL_TRAIN_LORA);
    fx_hapt_schema(&s, 32);
    sl_model_t *m = new_model(&cfg, &s);
    fx_randomize_trainable(m, &R, 0.2f);
    CHECK(sl_batch_init(&b, &s, 4) == 0);
    fx_fill_batch(&b, 3, &R);
    b.present[1 * 2 + 1] = 0;
    for (size_t j = 0; j < 96; j++)
        b.x[1][96 + j] = NAN;
    grad_check("lora qkvo, absent gyro", m, &b, 0);
    sl_model_destroy(&m);

    /* all six targets, dropout, label smoothing, CLS pooling */
    snprintf(cfg.model.lora_targets, sizeof cfg.model.lora_targets, "q,k,v,o,mlp_up,mlp_down");
    cfg.model.dropout = 0.2;
    cfg.train.label_smoothing = 0.1;
    m = new_model(&cfg, &s);
    fx_randomize_trainable(m, &R, 0.2f);
    grad_check("lora all targets, dropout, smoothing", m, &b, 1);
    sl_model_destroy(&m);

    /* only MLP targets: the backward stops early in block 0 */
    snprintf(cfg.model.lora_targets, sizeof cfg.model.lora_targets, "mlp_down");
    cfg.model.dropout = 0;
    m = new_model(&cfg, &s);
    fx_randomize_trainable(m, &R, 0.2f);
    grad_check("lora mlp_down only", m, &b, 0);
    sl_model_destroy(&m);
    sl_batch_free(&b);

    /* full mode, every modality kind, mean pooling, text padding, one absent image */
    fx_small_config(&cfg, SL_TRAIN_FULL);
    cfg.model.pooling = SL_POOL_MEAN;
    fx_multi_schema(&s);
    m = new_model(&cfg, &s);
    CHECK(sl_batch_init(&b, &s, 3) == 0);
    fx_fill_batch(&b, 3, &R);
    b.present[2 * 4 + 1] = 0;
    grad_check("full, all kinds, mean pooling", m, &b, 0);
    sl_model_destroy(&m);

    /* full mode, CLS pooling (last block pruned to the CLS row) */
    cfg.model.pooling = SL_POOL_CLS;
    m = new_model(&cfg, &s);
    grad_check("full, all kinds, cls pooling", m, &b, 0);
    sl_model_destroy(&m);

    /* head only */
    fx_small_config(&cfg, SL_TRAIN_HEAD);
    m = new_model(&cfg, &s);
    size_t nt;
    sl_model_trainable(m, &nt);
    CHECK_EQ(nt, 16 * 4 + 4);
    grad_check("head only", m, &b, 0);
    sl_model_destroy(&m);
    sl_batch_free(&b);
}

static void test_lora(void)
{
    sl_config_t cfg;
    sl_schema_t s;
    sl_batch_t b;
    fx_small_config(&cfg, SL_TRAIN_LORA);
    snprintf(cfg.model.lora_targets, sizeof cfg.model.lora_targets, "q,v,o,mlp_up,mlp_down");
    fx_hapt_schema(&s, 32);
    CHECK(sl_batch_init(&b, &s, 5) == 0);
    fx_fill_batch(&b, 5, &R);
    sl_model_t *m = new_model(&cfg, &s);

    /* B = 0 at init: the LoRA model equals the base (a head-mode model from the same seed) */
    sl_config_t hc = cfg;
    hc.train.mode = SL_TRAIN_HEAD;
    sl_model_t *hm = new_model(&hc, &s);
    float l1, l2;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l1) == 0);
    CHECK(sl_model_forward(hm, &b, 0, NULL, &l2) == 0);
    CHECK(memcmp(sl_model_logits(m), sl_model_logits(hm), 5 * 6 * sizeof(float)) == 0);
    CHECK(l1 == l2);

    /* frozen tensors: no gradient slot, never written by forward/backward */
    size_t np, nt, ntot;
    const sl_param_info_t *p = sl_model_params(m, &np);
    float *all = sl_model_param_data(m, &ntot);
    sl_model_trainable(m, &nt);
    size_t want = 0;
    int order_ok = 1, seen_trainable = 0;
    for (size_t i = 0; i < np; i++) {
        int is_lora = strstr(p[i].name, "lora_") != NULL, is_head = strncmp(p[i].name, "head.", 5) == 0;
        CHECK_MSG(p[i].trainable == (is_lora || is_head), "%s trainable=%d", p[i].name, p[i].trainable);
        if (p[i].trainable)
            want += p[i].numel, seen_trainable = 1;
        else if (seen_trainable)
            order_ok = 0;
        if (i > 0)
            CHECK_EQ(p[i].offset, p[i - 1].offset + p[i - 1].numel);
    }
    CHECK(order_ok);
    CHECK_EQ(nt, want);
    CHECK_EQ(sl_model_trainable_offset(m) + nt, ntot);
    CHECK(fx_param(m, "blocks.1.attn.q.lora_A") != (size_t)-1 &&
          fx_param(m, "blocks.0.attn.k.lora_A") == (size_t)-1);
    CHECK(fx_param(m, "blocks.0.mlp.down.lora_B") != (size_t)-1);
    fx_randomize_trainable(m, &R, 0.3f);
    size_t nfrozen = ntot - nt;
    float *frozen_copy = malloc(nfrozen * sizeof(float));
    memcpy(frozen_copy, all, nfrozen * sizeof(float));
    sl_model_zero_grad(m);
    CHECK(sl_model_forward(m, &b, 1, NULL, &l1) == 0);
    CHECK(sl_model_backward(m) == 0);
    CHECK(memcmp(frozen_copy, all, nfrozen * sizeof(float)) == 0);
    double gn = 0;
    const float *g = sl_model_trainable_grad(m);
    for (size_t i = 0; i < nt; i++)
        gn += (double)g[i] * g[i];
    CHECK(gn > 0);

    /* merge: same logits (to float rounding), backward refused, unmerge restores bit for bit */
    float *before = malloc(5 * 6 * sizeof(float));
    memcpy(before, sl_model_logits(m), 5 * 6 * sizeof(float));
    CHECK(sl_model_merge_lora(m) == 0);
    CHECK(sl_model_merge_lora(m) == SL_ESTATE);
    sl_model_t *no_clone = NULL;
    CHECK(sl_model_clone_shared(m, &no_clone) == SL_ESTATE && no_clone == NULL);
    CHECK(memcmp(frozen_copy, all, nfrozen * sizeof(float)) != 0);
    CHECK(sl_model_forward(m, &b, 0, NULL, &l2) == 0);
    double worst = 0;
    for (size_t i = 0; i < 30; i++)
        worst = fmax(worst, fabs(sl_model_logits(m)[i] - before[i]));
    CHECK_MSG(worst < 1e-5, "merged vs unmerged logits differ by %g", worst);
    CHECK_NEAR(l1, l2, 1e-5);
    CHECK(sl_model_backward(m) == SL_ESTATE);
    CHECK(sl_model_unmerge_lora(m) == 0);
    CHECK(sl_model_unmerge_lora(m) == SL_ESTATE);
    CHECK(memcmp(frozen_copy, all, nfrozen * sizeof(float)) == 0);
    CHECK(sl_model_forward(m, &b, 0, NULL, &l2) == 0);
    CHECK(memcmp(before, sl_model_logits(m), 30 * sizeof(float)) == 0);

    /* backward twice without forward is refused; gradients accumulate over two backwards */
    CHECK(sl_model_backward(m) == 0);
    CHECK(sl_model_backward(m) == SL_ESTATE);
    float *g1 = malloc(nt * sizeof(float));
    sl_model_zero_grad(m);
    CHECK(sl_model_forward(m, &b, 0, NULL, &l2) == 0 && sl_model_backward(m) == 0);
    memcpy(g1, g, nt * sizeof(float));
    CHECK(sl_model_forward(m, &b, 0, NULL, &l2) == 0 && sl_model_backward(m) == 0);
    int acc_ok = 1;
    for (size_t i = 0; i < nt; i++)
        acc_ok &= fabsf(g[i] - 2 * g1[i]) <= 1e-6f * fmaxf(1.0f, fabsf(g1[i]));
    CHECK(acc_ok);

    /* clone: same logits, shared frozen weights, own trainable vector */
    sl_model_t *cl = NULL;
    CHECK(sl_model_clone_shared(m, &cl) == 0);
    CHECK(sl_model_param_data(cl, NULL) == NULL);
    CHECK(sl_model_param_ptr(cl, 0) == sl_model_param_ptr(m, 0));
    size_t ihead = fx_param(m, "head.weight");
    CHECK(sl_model_param_ptr(cl, ihead) != sl_model_param_ptr(m, ihead));
    CHECK(sl_model_forward(cl, &b, 0, NULL, &l2) == 0);
    CHECK(memcmp(before, sl_model_logits(cl), 30 * sizeof(float)) == 0);
    size_t ntc;
    float *tc = sl_model_trainable(cl, &ntc);
    CHECK_EQ(ntc, nt);
    tc[ntc - 1] += 1.0f; /* head bias of class 5 */
    CHECK(sl_model_forward(cl, &b, 0, NULL, &l2) == 0);
    CHECK_NEAR(sl_model_logits(cl)[5], before[5] + 1.0f, 1e-5);
    CHECK(sl_model_forward(m, &b, 0, NULL, &l2) == 0);
    CHECK(memcmp(before, sl_model_logits(m), 30 * sizeof(float)) == 0);
    CHECK(sl_model_merge_lora(cl) == SL_ESTATE);
    sl_model_zero_grad(cl);
    CHECK(sl_model_forward(cl, &b, 1, NULL, &l2) == 0 && sl_model_backward(cl) == 0);
    sl_model_destroy(&cl);
    CHECK(cl == NULL);
    sl_model_destroy(&cl); /* NULL-safe */

    free(before), free(frozen_copy), free(g1);
    sl_model_destroy(&hm);
    sl_model_destroy(&m);
    sl_batch_free(&b);
}

/* Sample with modality X absent == the model built without X, with the same weights. */
static void test_missing_modality(int pooling)
{
    sl_config_t cfg;
    sl_schema_t s2, s1;
    fx_small_config(&cfg, SL_TRAIN_LORA);
    cfg.model.pooling = pooling;
    fx_multi_schema(&s2);
    s1 = s2; /* drop modality 1 (the image) */
    s1.modalities[1] = s2.modalities[2];
    s1.modalities[2] = s2.modalities[3];
    s1.n_modalities = 3;
    sl_model_t *m2 = new_model(&cfg, &s2), *m1 = new_model(&cfg, &s1);
    fx_randomize_trainable(m2, &R, 0.3f);
    size_t n1;
    sl_model_params(m1, &n1);
    CHECK_EQ(fx_copy_weights(m1, m2), n1);
    sl_batch_t b2, b1;
    CHECK(sl_batch_init(&b2, &s2, 3) == 0 && sl_batch_init(&b1, &s1, 3) == 0);
    fx_fill_batch(&b2, 3, &R);
    for (size_t i = 0; i < 3; i++) {
        b2.present[i * 4 + 1] = 0;
        for (size_t j = 0; j < 7 * 8 * 2; j++) /* absent values are garbage */
            b2.x[1][i * 112 + j] = (j % 3) ? NAN : 1e38f;
    }
    b1.size = 3;
    for (size_t k = 0; k < 3; k++) {
        size_t src = k == 0 ? 0 : k + 1;
        memcpy(b1.x[k], b2.x[src], 3 * sl_modality_values(&s1.modalities[k]) * sizeof(float));
        for (size_t i = 0; i < 3; i++)
            b1.present[i * 3 + k] = b2.present[i * 4 + src];
    }
    memcpy(b1.labels, b2.labels, 3 * sizeof(int32_t));
    float l1, l2;
    CHECK(sl_model_forward(m2, &b2, 0, NULL, &l2) == 0);
    CHECK(sl_model_forward(m1, &b1, 0, NULL, &l1) == 0);
    double worst = 0;
    for (size_t i = 0; i < 3 * 4; i++)
        worst = fmax(worst, fabs(sl_model_logits(m2)[i] - sl_model_logits(m1)[i]));
    CHECK_MSG(worst < 1e-5, "pooling %d: logits differ by %g", pooling, worst);
    CHECK_NEAR(l1, l2, 1e-5);
    /* gradients too: the absent modality contributes nothing */
    sl_model_zero_grad(m2);
    sl_model_zero_grad(m1);
    CHECK(sl_model_backward(m2) == 0 && sl_model_backward(m1) == 0);
    size_t nt1, nt2;
    const float *g1 = sl_model_trainable_grad(m1), *g2 = sl_model_trainable_grad(m2);
    sl_model_trainable(m1, &nt1);
    sl_model_trainable(m2, &nt2);
    CHECK_EQ(nt1, nt2); /* lora mode: the same trainable tensors */
    double gw = 0;
    int finite = 1;
    for (size_t i = 0; i < nt1 && i < nt2; i++) {
        gw = fmax(gw, fabs(g1[i] - g2[i]));
        finite &= isfinite(g2[i]);
    }
    CHECK(finite);
    CHECK_MSG(gw < 1e-5, "pooling %d: gradients differ by %g", pooling, gw);
    sl_batch_free(&b1), sl_batch_free(&b2);
    sl_model_destroy(&m1), sl_model_destroy(&m2);
}

static void test_layout_and_errors(void)
{
    sl_config_t cfg;
    sl_schema_t s;
    sl_config_defaults(&cfg);
    fx_hapt_schema(&s, 128);
    sl_model_t *m = new_model(&cfg, &s);
    char desc[256];
    sl_model_describe(m, desc, sizeof desc);
    printf("default HAPT model: %s\n", desc);
    CHECK_EQ(sl_model_tokens(m), 17);
    size_t nt, tot = sl_model_param_count(m, &nt);
    /* per block 4 d^2 + 4d (attn) + 2 * 2d^2 + 2d + d (mlp) + 4d (ln); LoRA 4 x 2 x r d */
    size_t d = 64, blockp = 4 * d * d + 4 * d + 2 * (2 * d * d) + 3 * d + 4 * d;
    size_t tokp = 2 * (d * 48 + d + d + 8 * d);
    size_t lora = 2 * 4 * (2 * 4 * d);
    CHECK_EQ(tot, tokp + d + 2 * blockp + 2 * d + 6 * d + 6 + lora);
    CHECK_EQ(nt, lora + 6 * d + 6);
    const char *names[] = {"tok.acc.proj.weight",
                           "tok.acc.mod_emb",
                           "tok.acc.pos_emb",
                           "cls",
                           "blocks.0.ln1.weight",
                           "blocks.0.attn.q.weight",
                           "blocks.0.attn.q.lora_A",
                           "blocks.0.attn.q.lora_B",
                           "blocks.1.mlp.up.weight",
                           "head.weight",
                           "head.bias",
                           "ln_f.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        CHECK_MSG(fx_param(m, names[i]) != (size_t)-1, "missing %s", names[i]);
    size_t np;
    const sl_param_info_t *p = sl_model_params(m, &np);
    size_t iq = fx_param(m, "blocks.0.attn.q.lora_A"), ip = fx_param(m, "tok.gyro.pos_emb");
    CHECK(p[iq].ndim == 2 && p[iq].shape[0] == 4 && p[iq].shape[1] == 64);
    CHECK(p[ip].shape[0] == 8 && p[ip].shape[1] == 64);
    CHECK(sl_model_config(m)->model.d_model == 64 && sl_model_schema(m)->n_modalities == 2);

    /* batch independence and growing capacity: a sample's logits do not depend on the others */
    sl_batch_t b;
    CHECK(sl_batch_init(&b, &s, 40) == 0);
    fx_fill_batch(&b, 40, &R);
    float l;
    b.size = 2;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == 0);
    float first[12];
    memcpy(first, sl_model_logits(m), sizeof first);
    b.size = 40;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == 0);
    double w = 0;
    for (int i = 0; i < 12; i++)
        w = fmax(w, fabs(first[i] - sl_model_logits(m)[i]));
    CHECK(w < 1e-5);

    /* errors */
    CHECK(sl_model_backward(m) == 0);
    CHECK(sl_model_backward(m) == SL_ESTATE);
    b.labels[3] = 6;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "label");
    b.labels[3] = 0;
    sl_schema_t other;
    fx_hapt_schema(&other, 64);
    b.schema = &other;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EMISMATCH);
    b.schema = &s;
    b.size = 0;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EINVAL);
    sl_batch_free(&b);
    sl_model_destroy(&m);
    CHECK(m == NULL);

    sl_config_t bad = cfg;
    snprintf(bad.model.lora_targets, sizeof bad.model.lora_targets, "q,kk");
    CHECK(sl_model_new(&m, &bad, &s) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "kk");
    bad = cfg;
    bad.model.heads = 5;
    CHECK(sl_model_new(&m, &bad, &s) == SL_ECONFIG);
    sl_schema_t empty = s;
    empty.n_modalities = 0;
    CHECK(sl_model_new(&m, &cfg, &empty) == SL_EINVAL);
    CHECK(m == NULL);

    /* text bytes must be bytes */
    fx_small_config(&cfg, SL_TRAIN_LORA);
    fx_multi_schema(&s);
    m = new_model(&cfg, &s);
    CHECK(sl_batch_init(&b, &s, 2) == 0);
    fx_fill_batch(&b, 2, &R);
    b.x[3][1] = 1.5f;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EINVAL);
    b.x[3][1] = 300.0f;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EINVAL);
    b.present[0 * 4 + 3] = 0; /* ... unless the modality is absent */
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == 0);
    float *keep = b.x[2]; /* a present modality without values is an error, an absent one is not */
    b.x[2] = NULL;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "feat");
    b.present[0 * 4 + 2] = b.present[1 * 4 + 2] = 0;
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == 0);
    b.x[2] = keep;
    sl_schema_t huge = s;
    huge.modalities[0].dims[0] = (size_t)1 << 40;
    sl_model_t *hm = NULL;
    CHECK(sl_model_new(&hm, &cfg, &huge) == SL_ECONFIG && hm == NULL);
    /* dropout in training needs an rng */
    sl_model_destroy(&m);
    cfg.model.dropout = 0.1;
    m = new_model(&cfg, &s);
    CHECK(sl_model_forward(m, &b, 1, NULL, &l) == SL_EINVAL);
    CHECK(sl_model_forward(m, &b, 0, NULL, &l) == 0);
    sl_batch_free(&b);
    sl_model_destroy(&m);

    /* same seed, same init; different seed, different init */
    fx_small_config(&cfg, SL_TRAIN_FULL);
    sl_model_t *a = new_model(&cfg, &s), *c = new_model(&cfg, &s);
    size_t na;
    float *pa = sl_model_param_data(a, &na), *pc = sl_model_param_data(c, NULL);
    CHECK(memcmp(pa, pc, na * sizeof(float)) == 0);
    sl_model_destroy(&c);
    cfg.run.seed = 12;
    c = new_model(&cfg, &s);
    CHECK(memcmp(pa, sl_model_param_data(c, NULL), na * sizeof(float)) != 0);
    sl_model_destroy(&a), sl_model_destroy(&c);
}

/* Batch split across threads: the same logits, loss and gradients as one thread. */
static void test_threads(int mode, int pooling)
{
    sl_config_t cfg;
    sl_schema_t s;
    fx_small_config(&cfg, mode);
    cfg.model.pooling = pooling;
    cfg.train.label_smoothing = 0.1;
    fx_multi_schema(&s);
    sl_model_t *a = new_model(&cfg, &s), *b = new_model(&cfg, &s);
    fx_randomize_trainable(a, &R, 0.2f);
    size_t nt;
    float *tb = sl_model_trainable(b, &nt);
    memcpy(tb, sl_model_trainable(a, NULL), nt * sizeof(float));
    sl_batch_t bt;
    CHECK(sl_batch_init(&bt, &s, 7) == 0);
    fx_fill_batch(&bt, 7, &R);
    bt.present[3 * 4 + 2] = 0;
    for (int threads = 2; threads <= 3; threads++) {
        sl_model_set_threads(b, threads);
        float la, lb;
        sl_model_zero_grad(a);
        sl_model_zero_grad(b);
        CHECK(sl_model_forward(a, &bt, 1, NULL, &la) == 0 && sl_model_backward(a) == 0);
        CHECK(sl_model_forward(b, &bt, 1, NULL, &lb) == 0 && sl_model_backward(b) == 0);
        CHECK(sl_model_backward(b) == SL_ESTATE);
        CHECK_NEAR(la, lb, 1e-6);
        double wl = 0, wg = 0, gn = 0;
        for (size_t i = 0; i < 7 * 4; i++)
            wl = fmax(wl, fabs(sl_model_logits(a)[i] - sl_model_logits(b)[i]));
        const float *ga = sl_model_trainable_grad(a), *gb = sl_model_trainable_grad(b);
        for (size_t i = 0; i < nt; i++) {
            wg = fmax(wg, fabs(ga[i] - gb[i]));
            gn = fmax(gn, fabs(ga[i]));
        }
        CHECK_MSG(wl < 1e-6, "%d threads: logits differ by %g", threads, wl);
        CHECK_MSG(wg <= 1e-5 * fmax(1.0, gn), "%d threads: gradients differ by %g (max %g)", threads, wg, gn);
        /* forward without a loss (evaluation), then errors travel back from the workers */
        CHECK(sl_model_forward(b, &bt, 0, NULL, NULL) == 0);
        CHECK(sl_model_backward(b) == SL_ESTATE);
        bt.labels[6] = 99;
        CHECK(sl_model_forward(b, &bt, 0, NULL, &lb) == SL_EINVAL);
        CHECK_CONTAINS(sl_last_error(), "label");
        bt.labels[6] = 1;
    }
    /* merged LoRA reaches the workers */
    if (mode == SL_TRAIN_LORA) {
        float l0, l1;
        CHECK(sl_model_forward(b, &bt, 0, NULL, &l0) == 0);
        CHECK(sl_model_merge_lora(b) == 0);
        CHECK(sl_model_forward(b, &bt, 0, NULL, &l1) == 0);
        CHECK_NEAR(l0, l1, 1e-5);
        CHECK(sl_model_backward(b) == SL_ESTATE);
        CHECK(sl_model_unmerge_lora(b) == 0);
    }
    sl_batch_free(&bt);
    sl_model_destroy(&a), sl_model_destroy(&b);
}

/* A tiny model drives the training loss near zero on 8 samples (plain Adam, full mode). */
static void test_overfit(int mode)
{
    sl_config_t cfg;
    sl_schema_t s;
    fx_small_config(&cfg, mode);
    cfg.model.lora_rank = 8;
    snprintf(cfg.model.lora_targets, sizeof cfg.model.lora_targets, "q,k,v,o,mlp_up,mlp_down");
    fx_hapt_schema(&s, 32);
    sl_model_t *m = new_model(&cfg, &s);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, &s, 8) == 0);
    fx_fill_batch(&b, 8, &R);
    size_t n;
    float *w = sl_model_trainable(m, &n);
    const float *g = sl_model_trainable_grad(m);
    float *mo = calloc(n, sizeof(float)), *ve = calloc(n, sizeof(float));
    float loss = 0, first = 0;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f;
    for (int step = 1; step <= 300; step++) {
        sl_model_zero_grad(m);
        CHECK(sl_model_forward(m, &b, 1, NULL, &loss) == 0);
        CHECK(sl_model_backward(m) == 0);
        if (step == 1)
            first = loss;
        float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
        for (size_t i = 0; i < n; i++) {
            mo[i] = b1 * mo[i] + (1 - b1) * g[i];
            ve[i] = b2 * ve[i] + (1 - b2) * g[i] * g[i];
            w[i] -= lr * (mo[i] / c1) / (sqrtf(ve[i] / c2) + 1e-8f);
        }
    }
    printf("overfit (mode %d): loss %.4f -> %.5f\n", mode, first, loss);
    CHECK_MSG(loss < 0.02f, "mode %d: final loss %g (from %g)", mode, loss, first);
    free(mo), free(ve);
    sl_batch_free(&b);
    sl_model_destroy(&m);
}

int main(void)
{
    sl_rng_init(&R, 2024, "test-model", 0, 0);
    test_gradients();
    test_lora();
    test_missing_modality(SL_POOL_CLS);
    test_missing_modality(SL_POOL_MEAN);
    test_layout_and_errors();
    test_threads(SL_TRAIN_LORA, SL_POOL_CLS);
    test_threads(SL_TRAIN_FULL, SL_POOL_MEAN);
    test_overfit(SL_TRAIN_FULL);
    test_overfit(SL_TRAIN_LORA);
    return check_summary("test_model");
}
