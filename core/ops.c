/* core/ops: float32 forward/backward ops (see ops.h). Inner loops are written so that gcc and
 * clang vectorize them at -O2/-O3 without -ffast-math: the vectorized dimension is always an
 * independent output index, never a floating-point reduction. */
#include "core/ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define BI(x) ((blasint)(x))

/* ---- fast exp ------------------------------------------------------------------------ */

/* exp(x) = 2^n * exp(r), r = x - n ln2 in [-ln2/2, ln2/2], exp(r) by a degree-6 Taylor/Horner
 * polynomial (truncation error < 2e-8 relative). Rounding by the 1.5*2^23 trick and the
 * exponent built from integer bits keep it branch-free, so loops calling it vectorize. */
static inline float fexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float t = x * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = x - n * 0.693145751953125f;  /* ln2 high part (exact in float) */
    r = r - n * 1.42860682030941723e-06f;  /* ln2 low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)n + 127) * (1 << 23);
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

/* The same exp on 4 lanes with GCC/clang vector extensions: gcc does not vectorize the clamps of
 * fexp without -fno-trapping-math, so the hot loops (softmax, GELU) call this explicitly. */
typedef float v4sf __attribute__((vector_size(16)));
typedef int32_t v4si __attribute__((vector_size(16)));

static inline v4sf vexp4(v4sf x)
{
    const v4sf lo = {-87.0f, -87.0f, -87.0f, -87.0f}, hi = {88.0f, 88.0f, 88.0f, 88.0f};
    v4si m = x < lo;
    x = (v4sf)(((v4si)lo & m) | ((v4si)x & ~m));
    m = x > hi;
    x = (v4sf)(((v4si)hi & m) | ((v4si)x & ~m));
    const float magic = 12582912.0f;
    v4sf t = x * 1.44269504088896341f + magic;
    v4sf n = t - magic;
    v4sf r = x - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723e-06f;
    v4sf p = r * (1.0f / 720.0f) + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    v4si e = (__builtin_convertvector(n, v4si) + 127) << 23;
    return p * (v4sf)e;
}

/* y (n) = exp(x) elementwise (y may alias x). */
static void exp_array(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        v4sf v;
        memcpy(&v, x + i, sizeof v);
        v = vexp4(v);
        memcpy(y + i, &v, sizeof v);
    }
    for (; i < n; i++)
        y[i] = fexp(x[i]);
}

float sl_fast_expf(float x)
{
    return fexp(x);
}

/* ---- linear --------------------------------------------------------------------------- */

void sl_linear_forward(float *out, size_t ld_out, const float *inp, size_t ld_inp, const float *w,
                       const float *bias, size_t rows, size_t n_in, size_t n_out)
{
    // inp is (rows, n_in), w is (n_out, n_in), out is (rows, n_out)
    float beta = 0.0f;
    if (bias) {
        for (size_t r = 0; r < rows; r++) {
            float *o = out + r * ld_out;
            for (size_t j = 0; j < n_out; j++)
                o[j] = bias[j];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(rows), BI(n_out), BI(n_in), 1.0f, inp, BI(ld_inp),
                w, BI(n_in), beta, out, BI(ld_out));
}

void sl_linear_backward(float *dinp, size_t ld_dinp, float *dw, float *dbias, const float *dout, size_t ld_dout,
                        const float *inp, size_t ld_inp, const float *w, size_t rows, size_t n_in, size_t n_out)
{
    // dout is (rows, n_out); dinp (rows, n_in) += dout @ w
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(rows), BI(n_in), BI(n_out), 1.0f, dout,
                    BI(ld_dout), w, BI(n_in), 1.0f, dinp, BI(ld_dinp));
    // dw (n_out, n_in) += dout^T @ inp
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(n_out), BI(n_in), BI(rows), 1.0f, dout,
                    BI(ld_dout), inp, BI(ld_inp), 1.0f, dw, BI(n_in));
    if (dbias)
        for (size_t r = 0; r < rows; r++) {
            const float *d = dout + r * ld_dout;
            for (size_t o = 0; o < n_out; o++)
                dbias[o] += d[o];
        }
}

/* ---- LoRA ----------------------------------------------------------------------------- */

void sl_lora_forward(float *out, size_t ld_out, float *la, const float *inp, size_t ld_inp, const float *a,
                     const float *b, float scale, size_t rows, size_t n_in, size_t n_out, size_t r)
{
    // la (rows, r) = inp (rows, n_in) @ a^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(rows), BI(r), BI(n_in), 1.0f, inp, BI(ld_inp), a,
                BI(n_in), 0.0f, la, BI(r));
    // out (rows, n_out) += scale * la @ b^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(rows), BI(n_out), BI(r), scale, la, BI(r), b, BI(r),
                1.0f, out, BI(ld_out));
}

void sl_lora_backward(float *dinp, size_t ld_dinp, float *da, float *db, float *dla, const float *dout,
                      size_t ld_dout, const float *inp, size_t ld_inp, const float *la, const float *a,
                      const float *b, float scale, size_t rows, size_t n_in, size_t n_out, size_t r)
{
    // db (n_out, r) += scale * dout^T @ la
    if (db)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(n_out), BI(r), BI(rows), scale, dout, BI(ld_dout),
                    la, BI(r), 1.0f, db, BI(r));
    if (!da && !dinp)
        return;
    // dla (rows, r) = scale * dout @ b
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(rows), BI(r), BI(n_out), scale, dout, BI(ld_dout),
                b, BI(r), 0.0f, dla, BI(r));
    // da (r, n_in) += dla^T @ inp
    if (da)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(r), BI(n_in), BI(rows), 1.0f, dla, BI(r), inp,
                    BI(ld_inp), 1.0f, da, BI(n_in));
    // dinp (rows, n_in) += dla @ a
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(rows), BI(n_in), BI(r), 1.0f, dla, BI(r), a,
                    BI(n_in), 1.0f, dinp, BI(ld_dinp));
}

/* ---- reductions --------------------------------------------------------------------- */

/* Sums with 4 (or 8) independent partial sums, so they vectorize (order differs from a
 * left-to-right sum by rounding only). */
static float sum_array(const float *x, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t u = 0; u < 8; u++)
            acc[u] += x[i + u];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += x[i];
    return s;
}

static float sumsq_dev(const float *x, float m, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t u = 0; u < 8; u++) {
            float d = x[i + u] - m;
            acc[u] += d * d;
        }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += (x[i] - m) * (x[i] - m);
    return s;
}

/* ---- LayerNorm ------------------------------------------------------------------------ */

void sl_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t rows, size_t C)
{
    // inp, out are (rows, C); mean, rstd are (rows)
    for (size_t r = 0; r < rows; r++) {
        const float *x = inp + r * C;
        float m = sum_array(x, C) / (float)C;
        float v = sumsq_dev(x, m, C) / (float)C;
        float s = 1.0f / sqrtf(v + 1e-5f);
        float *o = out + r * C;
        for (size_t i = 0; i < C; i++)
            o[i] = (x[i] - m) * s * w[i] + b[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

void sl_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t rows, size_t C)
{
    // dout, inp, dinp are (rows, C)
    for (size_t r = 0; r < rows; r++) {
        const float *dy = dout + r * C, *x = inp + r * C;
        float m = mean[r], s = rstd[r];
        float ag[8] = {0}, agx[8] = {0}; /* g = dy * w; sums of g and of g * xhat, 8 lanes */
        size_t i0 = 0;
        for (; i0 + 8 <= C; i0 += 8)
            for (size_t u = 0; u < 8; u++) {
                float g = dy[i0 + u] * w[i0 + u];
                ag[u] += g;
                agx[u] += g * (x[i0 + u] - m) * s;
            }
        float sum_g = ((ag[0] + ag[4]) + (ag[1] + ag[5])) + ((ag[2] + ag[6]) + (ag[3] + ag[7]));
        float sum_gx = ((agx[0] + agx[4]) + (agx[1] + agx[5])) + ((agx[2] + agx[6]) + (agx[3] + agx[7]));
        for (; i0 < C; i0++) {
            float g = dy[i0] * w[i0];
            sum_g += g;
            sum_gx += g * (x[i0] - m) * s;
        }
        sum_g /= (float)C;
        sum_gx /= (float)C;
        float *dx = dinp + r * C;
        for (size_t i = 0; i < C; i++) {
            float xh = (x[i] - m) * s;
            dx[i] += (dy[i] * w[i] - sum_g - xh * sum_gx) * s;
        }
        if (dw)
            for (size_t i = 0; i < C; i++)
                dw[i] += dy[i] * (x[i] - m) * s;
        if (db)
            for (size_t i = 0; i < C; i++)
                db[i] += dy[i];
    }
}

/* ---- attention ------------------------------------------------------------------------ */

/* Per (sample, head) the kernels copy this head's rows into small local buffers padded to
 * multiples of 4 floats (head width hp, key count Np), so every inner loop is whole 4-lane
 * vectors: scores and dP vectorize over keys (keys transposed), outputs and dQ/dK/dV over
 * channels. Padded lanes and invalid keys hold zeros and are never read from the inputs. */

static size_t up4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

size_t sl_attention_scratch(size_t NQ, size_t N, size_t C, size_t NH)
{
    (void)NQ;
    size_t hp = up4(C / NH), Np = up4(N);
    /* Kh, Vh, dKh, dVh (N, hp); Kt/Vt (hp, Np); s, p/dp, ds (Np); qi, oi (hp) */
    return 4 * N * hp + hp * Np + 3 * Np + 2 * hp + 8;
}

static inline v4sf vld(const float *p)
{
    v4sf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vst(float *p, v4sf v)
{
    memcpy(p, &v, sizeof v);
}

static inline v4sf vsplat(float x)
{
    v4sf v = {x, x, x, x};
    return v;
}

/* dst (N, hp) = this head's rows of src (valid keys only, zero elsewhere); if tr, also
 * tr (hp, Np) = its transpose. */
static void gather_head(float *dst, float *tr, const float *src, size_t ld, const uint8_t *valid, size_t N,
                        size_t hs, size_t hp, size_t Np)
{
    for (size_t j = 0; j < N; j++) {
        float *o = dst + j * hp;
        const float *x = src + j * ld;
        if (valid[j])
            for (size_t d = 0; d < hs; d++)
                o[d] = x[d];
        else
            for (size_t d = 0; d < hs; d++)
                o[d] = 0.0f;
        for (size_t d = hs; d < hp; d++)
            o[d] = 0.0f;
    }
    if (!tr)
        return;
    memset(tr, 0, hp * Np * sizeof(float));
    for (size_t j = 0; j < N; j++)
        for (size_t d = 0; d < hs; d++)
            tr[d * Np + j] = dst[j * hp + d];
}

void sl_attention_forward(float *out, float *probs, const float *q, size_t ldq, const float *k, const float *v,
                          size_t ldkv, const uint8_t *key_valid, size_t B, size_t NQ, size_t N, size_t C,
                          size_t NH, float *scratch)
{
    // q is (B, NQ, C), k and v are (B, N, C), out is (B, NQ, C), probs is (B, NH, NQ, N)
    size_t hs = C / NH, hp = up4(hs), Np = up4(N);
    float scale = 1.0f / sqrtf((float)hs);
    float *Vh = scratch, *Kh = Vh + N * hp, *Kt = Kh + N * hp, *sc = Kt + hp * Np, *oi = sc + Np;
    for (size_t b = 0; b < B; b++) {
        const uint8_t *valid = key_valid + b * N;
        size_t nvalid = 0;
        for (size_t j = 0; j < N; j++)
            nvalid += valid[j] ? 1u : 0u;
        for (size_t h = 0; h < NH; h++) {
            gather_head(Kh, Kt, k + b * N * ldkv + h * hs, ldkv, valid, N, hs, hp, Np);
            gather_head(Vh, NULL, v + b * N * ldkv + h * hs, ldkv, valid, N, hs, hp, 0);
            for (size_t i = 0; i < NQ; i++) {
                const float *qi = q + (b * NQ + i) * ldq + h * hs;
                float *p = probs + ((b * NH + h) * NQ + i) * N;
                // sc[j] = scale * q_i . k_j, 4 keys at a time
                for (size_t j = 0; j < Np; j += 4)
                    vst(sc + j, vsplat(0.0f));
                for (size_t d = 0; d < hs; d++) {
                    v4sf qd = vsplat(qi[d] * scale);
                    const float *kd = Kt + d * Np;
                    for (size_t j = 0; j < Np; j += 4)
                        vst(sc + j, vld(sc + j) + qd * vld(kd + j));
                }
                if (!nvalid) { /* no valid key: zero weights and output */
                    memset(p, 0, N * sizeof(float));
                    memset(out + (b * NQ + i) * C + h * hs, 0, hs * sizeof(float));
                    continue;
                }
                float mx = -INFINITY;
                for (size_t j = 0; j < N; j++)
                    if (valid[j] && sc[j] > mx)
                        mx = sc[j];
                for (size_t j = 0; j < N; j++)
                    sc[j] -= mx;
                exp_array(sc, sc, N);
                float sum = 0.0f;
                for (size_t j = 0; j < N; j++) {
                    sc[j] = valid[j] ? sc[j] : 0.0f;
                    sum += sc[j];
                }
                float inv = 1.0f / sum;
                for (size_t d = 0; d < hp; d += 4)
                    vst(oi + d, vsplat(0.0f));
                for (size_t j = 0; j < N; j++) {
                    float pj = sc[j] * inv;
                    p[j] = pj;
                    if (pj == 0.0f)
                        continue;
                    v4sf pv = vsplat(pj);
                    const float *vj = Vh + j * hp;
                    for (size_t d = 0; d < hp; d += 4)
                        vst(oi + d, vld(oi + d) + pv * vld(vj + d));
                }
                float *o = out + (b * NQ + i) * C + h * hs;
                for (size_t d = 0; d < hs; d++)
                    o[d] = oi[d];
            }
        }
    }
}

void sl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, size_t ldq,
                           const float *k, const float *v, size_t ldkv, const float *probs,
                           const uint8_t *key_valid, size_t B, size_t NQ, size_t N, size_t C, size_t NH,
                           float *scratch)
{
    // dout is (B, NQ, C); dq is (B, NQ, C), dk, dv are (B, N, C)
    size_t hs = C / NH, hp = up4(hs), Np = up4(N);
    float scale = 1.0f / sqrtf((float)hs);
    float *Kh = scratch, *dKh = Kh + N * hp, *dVh = dKh + N * hp, *Vh = dVh + N * hp, *Vt = Vh + N * hp;
    float *dp = Vt + hp * Np, *ds = dp + Np, *qi = ds + Np, *doi = qi + hp;
    for (size_t b = 0; b < B; b++) {
        const uint8_t *valid = key_valid + b * N;
        for (size_t h = 0; h < NH; h++) {
            gather_head(Kh, NULL, k + b * N * ldkv + h * hs, ldkv, valid, N, hs, hp, 0);
            gather_head(Vh, Vt, v + b * N * ldkv + h * hs, ldkv, valid, N, hs, hp, Np);
            memset(dKh, 0, 2 * N * hp * sizeof(float)); /* dKh and dVh */
            memset(qi, 0, 2 * hp * sizeof(float));
            for (size_t i = 0; i < NQ; i++) {
                const float *p = probs + ((b * NH + h) * NQ + i) * N;
                const float *dsrc = dout + (b * NQ + i) * C + h * hs, *qsrc = q + (b * NQ + i) * ldq + h * hs;
                for (size_t d = 0; d < hs; d++) {
                    doi[d] = dsrc[d];
                    qi[d] = qsrc[d];
                }
                // dp[j] = dout_i . v_j, 4 keys at a time
                for (size_t j = 0; j < Np; j += 4)
                    vst(dp + j, vsplat(0.0f));
                for (size_t d = 0; d < hs; d++) {
                    v4sf g = vsplat(doi[d]);
                    const float *vd = Vt + d * Np;
                    for (size_t j = 0; j < Np; j += 4)
                        vst(dp + j, vld(dp + j) + g * vld(vd + j));
                }
                float dot = 0.0f;
                for (size_t j = 0; j < N; j++)
                    dot += p[j] * dp[j];
                // ds = softmax backward, with the 1/sqrt(hs) of the scores folded in
                for (size_t j = 0; j < N; j++)
                    ds[j] = p[j] * (dp[j] - dot) * scale;
                v4sf acc[64 / 4]; /* dq_i for hp <= 64, else accumulated in place below */
                int local = hp <= 64;
                if (local)
                    for (size_t d = 0; d < hp; d += 4)
                        acc[d / 4] = vsplat(0.0f);
                float *dqi = dq ? dq + (b * NQ + i) * ldq + h * hs : NULL;
                for (size_t j = 0; j < N; j++) {
                    if (p[j] == 0.0f) /* invalid key (or exactly zero weight): no contribution */
                        continue;
                    v4sf pj = vsplat(p[j]), sj = vsplat(ds[j]);
                    float *dkj = dKh + j * hp, *dvj = dVh + j * hp;
                    const float *kj = Kh + j * hp;
                    for (size_t d = 0; d < hp; d += 4) {
                        vst(dvj + d, vld(dvj + d) + pj * vld(doi + d));
                        vst(dkj + d, vld(dkj + d) + sj * vld(qi + d));
                        if (local)
                            acc[d / 4] += sj * vld(kj + d);
                    }
                    if (!local && dqi)
                        for (size_t d = 0; d < hs; d++)
                            dqi[d] += ds[j] * kj[d];
                }
                if (local && dqi)
                    for (size_t d = 0; d < hs; d++)
                        dqi[d] += acc[d / 4][d % 4];
            }
            for (size_t j = 0; j < N; j++) {
                if (!valid[j])
                    continue;
                size_t row = (b * N + j) * ldkv + h * hs;
                if (dk)
                    for (size_t d = 0; d < hs; d++)
                        dk[row + d] += dKh[j * hp + d];
                if (dv)
                    for (size_t d = 0; d < hs; d++)
                        dv[row + d] += dVh[j * hp + d];
            }
        }
    }
}

/* ---- GELU (tanh) ---------------------------------------------------------------------- */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

/* 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)): the same function without the
 * cancellation of 1 + tanh(u) for u << 0, and exact limits 0 and 1. Chunks of 256 go through
 * exp_array: e = exp(-2u), s = 1 / (1 + e). */
#define GELU_CHUNK 256

static void gelu_exp(float *e, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        e[i] = -2.0f * GELU_K * (x[i] + GELU_C * x[i] * x[i] * x[i]);
    exp_array(e, e, n);
}

void sl_gelu_forward(float *out, const float *inp, size_t n)
{
    // inp, out are (n): out = x * sigmoid(2u)
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        const float *x = inp + i0;
        gelu_exp(e, x, m);
        for (size_t i = 0; i < m; i++)
            out[i0 + i] = x[i] / (1.0f + e[i]);
    }
}

void sl_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    // d/dx [x s(2u)] = s + 2 x s (1 - s) u'
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        const float *x = inp + i0;
        gelu_exp(e, x, m);
        for (size_t i = 0; i < m; i++) {
            float s = 1.0f / (1.0f + e[i]);
            float du = GELU_K * (1.0f + 3.0f * GELU_C * x[i] * x[i]);
            dinp[i0 + i] += (s + 2.0f * x[i] * s * (1.0f - s) * du) * dout[i0 + i];
        }
    }
}

/* ---- residual ------------------------------------------------------------------------- */

void sl_residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void sl_residual_backward(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

/* ---- cross-entropy -------------------------------------------------------------------- */

double sl_crossentropy_forward(float *probs, const float *logits, const int32_t *labels, size_t B, size_t K,
                               float eps)
{
    // logits, probs are (B, K); labels is (B)
    double total = 0.0;
    for (size_t b = 0; b < B; b++) {
        const float *z = logits + b * K;
        float *p = probs + b * K;
        float mx = z[0];
        for (size_t c = 1; c < K; c++)
            mx = z[c] > mx ? z[c] : mx;
        double sum = 0.0;
        for (size_t c = 0; c < K; c++)
            sum += exp((double)z[c] - mx);
        double lse = log(sum) + mx;
        double smooth = 0.0;
        for (size_t c = 0; c < K; c++) {
            double lp = (double)z[c] - lse;
            p[c] = (float)exp(lp);
            smooth -= lp;
        }
        double nll = lse - (double)z[labels[b]];
        total += (1.0 - eps) * nll + eps * smooth / (double)K;
    }
    return total / (double)B;
}

void sl_crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, size_t B, size_t K,
                              float eps, float dloss)
{
    float g = dloss / (float)B, off = eps / (float)K;
    for (size_t b = 0; b < B; b++) {
        const float *p = probs + b * K;
        float *d = dlogits + b * K;
        for (size_t c = 0; c < K; c++)
            d[c] += g * (p[c] - off - ((int32_t)c == labels[b] ? 1.0f - eps : 0.0f));
    }
}

/* ---- embedding ------------------------------------------------------------------------ */

void sl_embedding_forward(float *out, const int32_t *idx, const float *table, size_t n, size_t C)
{
    // out is (n, C), table is (V, C)
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * C, table + (size_t)idx[i] * C, C * sizeof(float));
}

void sl_embedding_backward(float *dtable, const int32_t *idx, const float *dout, size_t n, size_t C)
{
    for (size_t i = 0; i < n; i++) {
        float *dt = dtable + (size_t)idx[i] * C;
        const float *d = dout + i * C;
        for (size_t c = 0; c < C; c++)
            dt[c] += d[c];
    }
}

/* ---- pooling -------------------------------------------------------------------------- */

void sl_pool_cls_forward(float *out, const float *inp, size_t B, size_t N, size_t C)
{
    // inp is (B, N, C), out is (B, C)
    for (size_t b = 0; b < B; b++)
        memcpy(out + b * C, inp + b * N * C, C * sizeof(float));
}

void sl_pool_cls_backward(float *dinp, const float *dout, size_t B, size_t N, size_t C)
{
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++)
            dinp[b * N * C + c] += dout[b * C + c];
}

void sl_pool_mean_forward(float *out, const float *inp, const uint8_t *valid, size_t B, size_t N, size_t C)
{
    // inp is (B, N, C), valid is (B, N), out is (B, C)
    for (size_t b = 0; b < B; b++) {
        float *o = out + b * C;
        memset(o, 0, C * sizeof(float));
        size_t cnt = 0;
        for (size_t t = 0; t < N; t++) {
            if (!valid[b * N + t])
                continue;
            cnt++;
            const float *x = inp + (b * N + t) * C;
            for (size_t c = 0; c < C; c++)
                o[c] += x[c];
        }
        float inv = cnt ? 1.0f / (float)cnt : 0.0f;
        for (size_t c = 0; c < C; c++)
            o[c] *= inv;
    }
}

void sl_pool_mean_backward(float *dinp, const float *dout, const uint8_t *valid, size_t B, size_t N, size_t C)
{
    for (size_t b = 0; b < B; b++) {
        size_t cnt = 0;
        for (size_t t = 0; t < N; t++)
            cnt += valid[b * N + t] ? 1u : 0u;
        if (!cnt)
            continue;
        float inv = 1.0f / (float)cnt;
        const float *d = dout + b * C;
        for (size_t t = 0; t < N; t++) {
            if (!valid[b * N + t])
                continue;
            float *dx = dinp + (b * N + t) * C;
            for (size_t c = 0; c < C; c++)
                dx[c] += d[c] * inv;
        }
    }
}

/* ---- dropout -------------------------------------------------------------------------- */

void sl_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, sl_rng_t *rng)
{
    // inp, out, mask are (n)
    if (p <= 0.0f) {
        for (size_t i = 0; i < n; i++) {
            mask[i] = 1.0f;
            out[i] = inp[i];
        }
        return;
    }
    uint32_t thr = (uint32_t)fmin((double)p * 4294967296.0, 4294967295.0);
    float keep = 1.0f / (1.0f - p);
    uint32_t u[256];
    for (size_t i = 0; i < n; i += 256) {
        size_t m = n - i < 256 ? n - i : 256;
        sl_rng_bytes(rng, u, m * sizeof(uint32_t));
        for (size_t j = 0; j < m; j++) {
            mask[i + j] = u[j] >= thr ? keep : 0.0f;
            out[i + j] = inp[i + j] * mask[i + j];
        }
    }
}

void sl_dropout_backward(float *dinp, const float *mask, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * mask[i];
}
