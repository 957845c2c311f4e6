/* tests/model/test_ops: every op of core/ops against finite differences and known answers.
 *
 * Method: for an op y = f(x), take the scalar L = sum(y * G) for a fixed random G (accumulated
 * in double), so dL/dx is exactly what *_backward computes from dout = G. The numeric gradient
 * is the central difference (L(x+h) - L(x-h)) / 2h with h = 1e-2 on O(1) inputs.
 * Tolerance: the forward runs in float32, so L carries a rounding error of about
 * 1e-7 * sum|y*G| (~1e-6 here); divided by 2h this is ~1e-4 absolute; the truncation error
 * h^2/6 * f''' is ~2e-5 for these smooth ops. Hence |num - ana| <= 2e-3 * max(1, |ana|)
 * (a wrong formula, missing term or wrong index gives errors of order |ana| >> that).
 */
#include "core/ops.h"
#include "core/rng.h"
#include "support/check.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static sl_rng_t R;

static void randn(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)sl_rng_normal(&R) * s;
}

static float *fvec(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        abort();
    return p;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef double (*loss_fn)(void *ctx);

/* Compare the analytic gradient ana (n) of loss() w.r.t. x (n) against central differences
 * (every coordinate up to 64, then a strided sample). Returns the max error seen. */
static double fd_check(const char *what, void *ctx, loss_fn loss, float *x, const float *ana, size_t n)
{
    const float h = 1e-2f;
    double worst = 0;
    size_t step = n <= 64 ? 1 : n / 64;
    for (size_t i = 0; i < n; i += step) {
        float x0 = x[i];
        x[i] = x0 + h;
        double lp = loss(ctx);
        x[i] = x0 - h;
        double lm = loss(ctx);
        x[i] = x0;
        double num = (lp - lm) / (2.0 * (double)h);
        double err = fabs(num - ana[i]) / fmax(1.0, fabs(ana[i]));
        worst = fmax(worst, err);
        CHECK_MSG(err <= 2e-3, "%s[%zu]: numeric %.6g analytic %.6g", what, i, num, (double)ana[i]);
    }
    return worst;
}

/* ---- linear + LoRA ---------------------------------------------------------------------- */

typedef struct {
    size_t rows, nin, nout, r, ld_in, ld_out;
    float *inp, *w, *b, *a, *lb, *out, *la, *G;
    float scale;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    sl_linear_forward(c->out, c->ld_out, c->inp, c->ld_in, c->w, c->b, c->rows, c->nin, c->nout);
    if (c->a)
        sl_lora_forward(c->out, c->ld_out, c->la, c->inp, c->ld_in, c->a, c->lb, c->scale, c->rows, c->nin,
                        c->nout, c->r);
    return dot(c->out, c->G, c->rows * c->ld_out);
}

static void test_linear(int lora)
{
    lin_ctx c = {.rows = 7, .nin = 5, .nout = 6, .r = 3, .ld_in = 8, .ld_out = 9, .scale = 1.7f};
    c.inp = fvec(c.rows * c.ld_in);
    c.w = fvec(c.nout * c.nin);
    c.b = fvec(c.nout);
    c.out = fvec(c.rows * c.ld_out);
    c.la = fvec(c.rows * c.r);
    c.G = fvec(c.rows * c.ld_out);
    randn(c.inp, c.rows * c.ld_in, 1);
    randn(c.w, c.nout * c.nin, 0.5f);
    randn(c.b, c.nout, 0.5f);
    randn(c.G, c.rows * c.ld_out, 1);
    for (size_t r = 0; r < c.rows; r++) /* padding columns of a strided output carry no gradient */
        for (size_t j = c.nout; j < c.ld_out; j++)
            c.G[r * c.ld_out + j] = 0;
    if (lora) {
        c.a = fvec(c.r * c.nin);
        c.lb = fvec(c.nout * c.r);
        randn(c.a, c.r * c.nin, 0.5f);
        randn(c.lb, c.nout * c.r, 0.5f);
    }
    /* known answer: one output element by hand */
    lin_loss(&c);
    double y = c.b[2];
    for (size_t i = 0; i < c.nin; i++)
        y += (double)c.inp[3 * c.ld_in + i] * c.w[2 * c.nin + i];
    if (lora)
        for (size_t k = 0; k < c.r; k++) {
            double la = 0;
            for (size_t i = 0; i < c.nin; i++)
                la += (double)c.inp[3 * c.ld_in + i] * c.a[k * c.nin + i];
            y += c.scale * la * c.lb[2 * c.r + k];
        }
    CHECK_NEAR(c.out[3 * c.ld_out + 2], y, 1e-5);

    float *dinp = fvec(c.rows * c.ld_in), *dw = fvec(c.nout * c.nin), *db = fvec(c.nout);
    float *da = fvec(c.r * c.nin), *dlb = fvec(c.nout * c.r), *dla = fvec(c.rows * c.r);
    sl_linear_backward(dinp, c.ld_in, dw, db, c.G, c.ld_out, c.inp, c.ld_in, c.w, c.rows, c.nin, c.nout);
    if (lora)
        sl_lora_backward(dinp, c.ld_in, da, dlb, dla, c.G, c.ld_out, c.inp, c.ld_in, c.la, c.a, c.lb, c.scale,
                         c.rows, c.nin, c.nout, c.r);
    const char *pfx = lora ? "lora" : "linear";
    char nm[64];
    snprintf(nm, sizeof nm, "%s.dinp", pfx);
    fd_check(nm, &c, lin_loss, c.inp, dinp, c.rows * c.ld_in);
    snprintf(nm, sizeof nm, "%s.dw", pfx);
    fd_check(nm, &c, lin_loss, c.w, dw, c.nout * c.nin);
    snprintf(nm, sizeof nm, "%s.db", pfx);
    fd_check(nm, &c, lin_loss, c.b, db, c.nout);
    if (lora) {
        fd_check("lora.dA", &c, lin_loss, c.a, da, c.r * c.nin);
        fd_check("lora.dB", &c, lin_loss, c.lb, dlb, c.nout * c.r);
    }
    /* NULL gradients are skipped and the others are unchanged */
    float *dinp2 = fvec(c.rows * c.ld_in);
    sl_linear_backward(dinp2, c.ld_in, NULL, NULL, c.G, c.ld_out, c.inp, c.ld_in, c.w, c.rows, c.nin, c.nout);
    if (!lora)
        CHECK(memcmp(dinp, dinp2, c.rows * c.ld_in * sizeof(float)) == 0);
    free(dinp2);
    free(dinp), free(dw), free(db), free(da), free(dlb), free(dla);
    free(c.inp), free(c.w), free(c.b), free(c.a), free(c.lb), free(c.out), free(c.la), free(c.G);
}

/* ---- LayerNorm -------------------------------------------------------------------------- */

typedef struct {
    size_t rows, C;
    float *inp, *w, *b, *out, *mean, *rstd, *G;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    sl_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->rows, c->C);
    return dot(c->out, c->G, c->rows * c->C);
}

static void test_layernorm(void)
{
    ln_ctx c = {.rows = 5, .C = 12};
    size_t n = c.rows * c.C;
    c.inp = fvec(n), c.w = fvec(c.C), c.b = fvec(c.C), c.out = fvec(n), c.mean = fvec(c.rows),
    c.rstd = fvec(c.rows);
    c.G = fvec(n);
    randn(c.inp, n, 1.5f);
    for (size_t i = 0; i < n; i++)
        c.inp[i] += 0.7f;
    randn(c.w, c.C, 1);
    randn(c.b, c.C, 1);
    randn(c.G, n, 1);
    ln_loss(&c);
    /* known answer: row 0 normalized has mean 0 and variance 1 before the affine part */
    double m = 0, v = 0;
    for (size_t i = 0; i < c.C; i++)
        m += c.inp[i];
    m /= (double)c.C;
    for (size_t i = 0; i < c.C; i++)
        v += (c.inp[i] - m) * (c.inp[i] - m);
    v /= (double)c.C;
    double y3 = (c.inp[3] - m) / sqrt(v + 1e-5) * c.w[3] + c.b[3];
    CHECK_NEAR(c.out[3], y3, 1e-5);
    float *dinp = fvec(n), *dw = fvec(c.C), *db = fvec(c.C);
    sl_layernorm_backward(dinp, dw, db, c.G, c.inp, c.w, c.mean, c.rstd, c.rows, c.C);
    fd_check("layernorm.dinp", &c, ln_loss, c.inp, dinp, n);
    fd_check("layernorm.dw", &c, ln_loss, c.w, dw, c.C);
    fd_check("layernorm.db", &c, ln_loss, c.b, db, c.C);
    free(dinp), free(dw), free(db);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.G);
}

/* ---- attention -------------------------------------------------------------------------- */

typedef struct {
    size_t B, NQ, N, C, NH, ldq, ldkv;
    float *q, *k, *v, *out, *probs, *scratch, *G;
    uint8_t *valid;
} att_ctx;

static double att_loss(void *p)
{
    att_ctx *c = p;
    sl_attention_forward(c->out, c->probs, c->q, c->ldq, c->k, c->v, c->ldkv, c->valid, c->B, c->NQ, c->N,
                         c->C, c->NH, c->scratch);
    return dot(c->out, c->G, c->B * c->NQ * c->C);
}

/* Direct double-precision attention of one (b, i, h) output channel, for a known answer. */
static double att_ref(const att_ctx *c, size_t b, size_t i, size_t h, size_t ch)
{
    size_t hs = c->C / c->NH;
    double s[256], mx = -1e300, sum = 0, o = 0;
    for (size_t j = 0; j < c->N; j++) {
        if (!c->valid[b * c->N + j])
            continue;
        double acc = 0;
        for (size_t d = 0; d < hs; d++)
            acc += (double)c->q[(b * c->NQ + i) * c->ldq + h * hs + d] *
                   c->k[(b * c->N + j) * c->ldkv + h * hs + d];
        s[j] = acc / sqrt((double)hs);
        mx = fmax(mx, s[j]);
    }
    for (size_t j = 0; j < c->N; j++)
        if (c->valid[b * c->N + j])
            sum += exp(s[j] - mx);
    for (size_t j = 0; j < c->N; j++)
        if (c->valid[b * c->N + j])
            o += exp(s[j] - mx) / sum * c->v[(b * c->N + j) * c->ldkv + h * hs + ch];
    return o;
}

static void test_attention(size_t NQ, size_t N, size_t C, size_t NH)
{
    att_ctx c = {.B = 3, .NQ = NQ, .N = N, .C = C, .NH = NH};
    c.ldq = NQ == 1 ? c.C : 3 * c.C; /* the model's layouts: fused q|k|v rows, or a dense q */
    c.ldkv = 3 * c.C;
    size_t nq = c.B * c.NQ * c.ldq, nkv = c.B * c.N * c.ldkv, no = c.B * c.NQ * c.C;
    c.q = fvec(nq), c.k = fvec(nkv), c.v = fvec(nkv), c.out = fvec(no), c.G = fvec(no);
    c.probs = fvec(c.B * c.NH * c.NQ * c.N);
    c.scratch = fvec(sl_attention_scratch(c.NQ, c.N, c.C, c.NH));
    c.valid = calloc(c.B * c.N, 1);
    randn(c.q, nq, 1), randn(c.k, nkv, 1), randn(c.v, nkv, 1), randn(c.G, no, 1);
    for (size_t i = 0; i < c.B * c.N; i++)
        c.valid[i] = 1;
    c.valid[0 * c.N + 3] = 0; /* sample 0: two padded keys; sample 2: only key 0 */
    c.valid[0 * c.N + 5] = 0;
    for (size_t j = 1; j < c.N; j++)
        c.valid[2 * c.N + j] = 0;
    att_loss(&c);
    CHECK_NEAR(c.out[(0 * c.NQ + 0) * c.C + c.C / c.NH + 1], att_ref(&c, 0, 0, 1, 1), 1e-5);
    CHECK_NEAR(c.out[(1 * c.NQ + NQ - 1) * c.C + 2], att_ref(&c, 1, NQ - 1, 0, 2), 1e-5);
    /* a padded key gets exactly zero probability; rows sum to one */
    for (size_t h = 0; h < c.NH; h++) {
        const float *p = c.probs + ((0 * c.NH + h) * c.NQ + 0) * c.N;
        CHECK(p[3] == 0.0f && p[5] == 0.0f);
        double s = 0;
        for (size_t j = 0; j < c.N; j++)
            s += p[j];
        CHECK_NEAR(s, 1.0, 1e-6);
    }
    /* the output does not depend on padded keys' values: make them NaN */
    float *ref = fvec(no);
    memcpy(ref, c.out, no * sizeof(float));
    float *k2 = fvec(nkv), *v2 = fvec(nkv);
    memcpy(k2, c.k, nkv * sizeof(float));
    memcpy(v2, c.v, nkv * sizeof(float));
    for (size_t j = 1; j < c.N; j++)
        for (size_t ch = 0; ch < c.C; ch++) {
            c.k[(2 * c.N + j) * c.ldkv + ch] = NAN;
            c.v[(2 * c.N + j) * c.ldkv + ch] = NAN;
        }
    for (size_t ch = 0; ch < c.C; ch++)
        c.v[(0 * c.N + 3) * c.ldkv + ch] = 1e30f;
    att_loss(&c);
    CHECK(memcmp(ref, c.out, no * sizeof(float)) == 0);
    memcpy(c.k, k2, nkv * sizeof(float));
    memcpy(c.v, v2, nkv * sizeof(float));
    att_loss(&c);

    float *dq = fvec(nq), *dk = fvec(nkv), *dv = fvec(nkv);
    sl_attention_backward(dq, dk, dv, c.G, c.q, c.ldq, c.k, c.v, c.ldkv, c.probs, c.valid, c.B, c.NQ, c.N,
                          c.C, c.NH, c.scratch);
    fd_check("attention.dq", &c, att_loss, c.q, dq, nq);
    fd_check("attention.dk", &c, att_loss, c.k, dk, nkv);
    fd_check("attention.dv", &c, att_loss, c.v, dv, nkv);
    /* padded keys get no gradient at all */
    for (size_t ch = 0; ch < c.C; ch++)
        CHECK(dk[(0 * c.N + 3) * c.ldkv + ch] == 0.0f && dv[(0 * c.N + 5) * c.ldkv + ch] == 0.0f);
    free(dq), free(dk), free(dv), free(ref), free(k2), free(v2);
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.G), free(c.probs), free(c.scratch), free(c.valid);
}

/* ---- GELU, exp -------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    float *x, *y, *G;
} ew_ctx;

static double gelu_loss(void *p)
{
    ew_ctx *c = p;
    sl_gelu_forward(c->y, NULL, c->x, c->n);
    return dot(c->y, c->G, c->n);
}

static void test_gelu(void)
{
    ew_ctx c = {.n = 200};
    c.x = fvec(c.n), c.y = fvec(c.n), c.G = fvec(c.n);
    randn(c.x, c.n, 3);
    c.x[0] = 0, c.x[1] = 40, c.x[2] = -40, c.x[3] = 1e-6f;
    randn(c.G, c.n, 1);
    gelu_loss(&c);
    double worst = 0;
    for (size_t i = 0; i < c.n; i++) { /* torch approximate='tanh' formula in double */
        double x = c.x[i];
        double ref = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        worst = fmax(worst, fabs(c.y[i] - ref) / fmax(1e-3, fabs(ref)));
    }
    CHECK_MSG(worst < 1e-5, "gelu rel error %g", worst);
    CHECK(c.y[1] == 40.0f && fabsf(c.y[2]) < 1e-30f);
    float *dx = fvec(c.n), *sig = fvec(c.n), *y2 = fvec(c.n), *dx2 = fvec(c.n);
    sl_gelu_backward(dx, c.x, NULL, c.G, c.n);
    fd_check("gelu.dx", &c, gelu_loss, c.x, dx, c.n);
    /* the cached sigmoid gives the same values */
    sl_gelu_forward(y2, sig, c.x, c.n);
    sl_gelu_backward(dx2, c.x, sig, c.G, c.n);
    gelu_loss(&c);
    CHECK(memcmp(y2, c.y, c.n * sizeof(float)) == 0 && memcmp(dx, dx2, c.n * sizeof(float)) == 0);
    free(dx), free(sig), free(y2), free(dx2), free(c.x), free(c.y), free(c.G);

    double we = 0;
    for (double x = -87; x <= 88; x += 0.01)
        we = fmax(we, fabs(sl_fast_expf((float)x) - exp((double)(float)x)) / exp((double)(float)x));
    CHECK_MSG(we < 1e-6, "fast exp max rel error %g", we);
}

/* ---- cross-entropy ---------------------------------------------------------------------- */

typedef struct {
    size_t B, K;
    float *z, *p;
    int32_t *y;
    float eps;
} ce_ctx;

static double ce_loss(void *p)
{
    ce_ctx *c = p;
    return sl_crossentropy_forward(c->p, c->z, c->y, c->B, c->K, c->eps);
}

static void test_crossentropy(void)
{
    ce_ctx c = {.B = 4, .K = 5, .eps = 0.1f};
    int32_t y[4] = {0, 4, 2, 2};
    c.y = y;
    c.z = fvec(c.B * c.K), c.p = fvec(c.B * c.K);
    randn(c.z, c.B * c.K, 2);
    double l = ce_loss(&c), ref = 0;
    for (size_t b = 0; b < c.B; b++) { /* torch: sum_k -q_k log p_k, q = (1-eps) onehot + eps/K */
        double mx = -1e300, s = 0;
        for (size_t k = 0; k < c.K; k++)
            mx = fmax(mx, c.z[b * c.K + k]);
        for (size_t k = 0; k < c.K; k++)
            s += exp(c.z[b * c.K + k] - mx);
        for (size_t k = 0; k < c.K; k++) {
            double q = (k == (size_t)y[b] ? 1 - c.eps : 0) + c.eps / (double)c.K;
            ref -= q * (c.z[b * c.K + k] - mx - log(s));
        }
    }
    CHECK_NEAR(l, ref / (double)c.B, 1e-6);
    float *dz = fvec(c.B * c.K);
    sl_crossentropy_backward(dz, c.p, c.y, c.B, c.K, c.eps, 1.0f);
    fd_check("crossentropy.dlogits", &c, ce_loss, c.z, dz, c.B * c.K);
    /* each row of the gradient sums to zero */
    for (size_t b = 0; b < c.B; b++) {
        double s = 0;
        for (size_t k = 0; k < c.K; k++)
            s += dz[b * c.K + k];
        CHECK_NEAR(s, 0.0, 1e-7);
    }
    free(dz), free(c.z), free(c.p);
}

/* ---- embedding, pooling, residual, dropout ------------------------------------------------ */

typedef struct {
    size_t B, N, C;
    float *x, *y, *G;
    uint8_t *valid;
    int mean;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    if (c->mean)
        sl_pool_mean_forward(c->y, c->x, c->valid, c->B, c->N, c->C);
    else
        sl_pool_cls_forward(c->y, c->x, c->B, c->N, c->C);
    return dot(c->y, c->G, c->B * c->C);
}

static void test_misc(void)
{
    /* embedding: forward copies rows; backward scatters (a repeated index accumulates) */
    float table[4 * 3], out[3 * 3], dt[4 * 3] = {0}, dout[9];
    randn(table, 12, 1);
    randn(dout, 9, 1);
    int32_t idx[3] = {2, 0, 2};
    sl_embedding_forward(out, idx, table, 3, 3);
    CHECK(memcmp(out, table + 6, 3 * sizeof(float)) == 0 && memcmp(out + 3, table, 3 * sizeof(float)) == 0);
    sl_embedding_backward(dt, idx, dout, 3, 3);
    CHECK(dt[6] == dout[0] + dout[6] && dt[0] == dout[3] && dt[3] == 0.0f);

    /* pooling */
    for (int mean = 0; mean < 2; mean++) {
        pool_ctx c = {.B = 2, .N = 4, .C = 3, .mean = mean};
        c.x = fvec(24), c.y = fvec(6), c.G = fvec(6);
        uint8_t valid[8] = {1, 1, 0, 1, 1, 0, 0, 0};
        c.valid = valid;
        randn(c.x, 24, 1), randn(c.G, 6, 1);
        pool_loss(&c);
        if (mean) {
            CHECK_NEAR(c.y[1], (c.x[1] + c.x[4] + c.x[10]) / 3.0, 1e-6);
            CHECK_NEAR(c.y[3 + 2], c.x[12 + 2], 1e-7);
        } else {
            CHECK(c.y[4] == c.x[13]);
        }
        float *dx = fvec(24);
        if (mean)
            sl_pool_mean_backward(dx, c.G, c.valid, c.B, c.N, c.C);
        else
            sl_pool_cls_backward(dx, c.G, c.B, c.N, c.C);
        fd_check(mean ? "pool_mean.dx" : "pool_cls.dx", &c, pool_loss, c.x, dx, 24);
        free(dx), free(c.x), free(c.y), free(c.G);
    }

    /* residual */
    float a[5] = {1, 2, 3, 4, 5}, b[5] = {5, 4, 3, 2, 1}, o[5], da[5] = {0}, db[5] = {0},
          g[5] = {1, -1, 2, 0, 3};
    sl_residual_forward(o, a, b, 5);
    CHECK(o[0] == 6.0f && o[4] == 6.0f);
    sl_residual_backward(da, db, g, 5);
    CHECK(memcmp(da, g, sizeof g) == 0 && memcmp(db, g, sizeof g) == 0);

    /* dropout: p = 0 is the identity; p = 0.25 drops ~25% and rescales the rest by 4/3;
     * the backward is dout * mask (linear, so the finite difference is exact) */
    size_t n = 20000;
    float *x = fvec(n), *y = fvec(n), *mask = fvec(n), *dx = fvec(n);
    randn(x, n, 1);
    sl_dropout_forward(y, mask, x, n, 0.0f, NULL);
    CHECK(memcmp(x, y, n * sizeof(float)) == 0);
    sl_rng_t dr;
    sl_rng_init(&dr, 7, "dropout-test", 0, 0);
    sl_dropout_forward(y, mask, x, n, 0.25f, &dr);
    size_t zeros = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask[i] == 0.0f)
            zeros++;
        else if (fabsf(mask[i] - 4.0f / 3.0f) > 1e-6f || y[i] != x[i] * mask[i])
            bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_MSG(fabs((double)zeros / (double)n - 0.25) < 0.015, "dropped fraction %g",
              (double)zeros / (double)n);
    sl_dropout_backward(dx, mask, x, n);
    CHECK(dx[0] == x[0] * mask[0] && dx[n - 1] == x[n - 1] * mask[n - 1]);
    free(x), free(y), free(mask), free(dx);
}

int main(void)
{
    sl_rng_init(&R, 1234, "test-ops", 0, 0);
    test_linear(0);
    test_linear(1);
    test_layernorm();
    test_attention(4, 6, 8, 2);   /* head width 4 */
    test_attention(1, 6, 8, 2);   /* one query (the CLS row), dense q */
    test_attention(3, 7, 6, 2);   /* head width 3: padded lanes */
    test_attention(2, 37, 84, 2); /* 42-wide heads, 37 keys: the generic (> 8 vector) path */
    test_gelu();
    test_crossentropy();
    test_misc();
    return check_summary("test_ops");
}
