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
    float r = x - n * 0.693145751953125f; /* ln2 high part (exact in float) */
    r = r - n * 1.42860682030941723e-06f; /* ln2 low part */
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

void sl_linear_backward(float *dinp, size_t ld_dinp, float *dw, float *dbias, const float *dout,
                        size_t ld_dout, const float *inp, size_t ld_inp, const float *w, size_t rows,
                        size_t n_in, size_t n_out)
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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BI(rows), BI(n_out), BI(r), scale, la, BI(r), b,
                BI(r), 1.0f, out, BI(ld_out));
}

void sl_lora_backward(float *dinp, size_t ld_dinp, float *da, float *db, float *dla, const float *dout,
                      size_t ld_dout, const float *inp, size_t ld_inp, const float *la, const float *a,
                      const float *b, float scale, size_t rows, size_t n_in, size_t n_out, size_t r)
{
    // db (n_out, r) += scale * dout^T @ la
    if (db)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, BI(n_out), BI(r), BI(rows), scale, dout,
                    BI(ld_dout), la, BI(r), 1.0f, db, BI(r));
    if (!da && !dinp)
        return;
    // dla (rows, r) = scale * dout @ b
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, BI(rows), BI(r), BI(n_out), scale, dout,
                BI(ld_dout), b, BI(r), 0.0f, dla, BI(r));
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
 * multiples of 4 floats (head width hp, key count Np) and run six tiny matmuls through mm()
 * below, which keeps a row of the result in 4-lane registers. Padded lanes and invalid keys
 * hold zeros and are never read from the inputs. */

static size_t up4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

size_t sl_attention_scratch(size_t NQ, size_t N, size_t C, size_t NH)
{
    size_t hp = up4(C / NH), Np = up4(N);
    /* Qh, Oh/dOh, dQh (NQ, hp); Kh, Vh, dKh, dVh (Np, hp); Kt/Vt (hp, Np); S/P, dS (NQ, Np) */
    return 3 * NQ * hp + 4 * Np * hp + hp * Np + 2 * NQ * Np + 16;
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

/* One row of C (4*NV floats) += sum_k a[k*sa] * B[k] (rows of B: ldb floats apart). NV is a
 * compile-time constant at every call site, so acc[] lives in registers. */
static inline __attribute__((always_inline)) void mm_row(float *c, const float *a, size_t sa, const float *Bm,
                                                         size_t ldb, size_t K, const int NV)
{
    v4sf acc[8];
    for (int v = 0; v < NV; v++)
        acc[v] = vld(c + 4 * v);
    for (size_t k = 0; k < K; k++) {
        v4sf av = vsplat(a[k * sa]);
        const float *b = Bm + k * ldb;
        for (int v = 0; v < NV; v++)
            acc[v] += av * vld(b + 4 * v);
    }
    for (int v = 0; v < NV; v++)
        vst(c + 4 * v, acc[v]);
}

/* C (M, 4*NV) [ldc] += A (M, K) @ B (K, 4*NV) [ldb], A(i, k) = A[i*lda + k*sa]. */
static void mm(float *C, size_t ldc, const float *A, size_t lda, size_t sa, const float *Bm, size_t ldb,
               size_t M, size_t K, size_t NV)
{
    for (size_t i = 0; i < M; i++) {
        float *c = C + i * ldc;
        const float *a = A + i * lda;
        switch (NV) {
        case 1:
            mm_row(c, a, sa, Bm, ldb, K, 1);
            break;
        case 2:
            mm_row(c, a, sa, Bm, ldb, K, 2);
            break;
        case 3:
            mm_row(c, a, sa, Bm, ldb, K, 3);
            break;
        case 4:
            mm_row(c, a, sa, Bm, ldb, K, 4);
            break;
        case 5:
            mm_row(c, a, sa, Bm, ldb, K, 5);
            break;
        case 6:
            mm_row(c, a, sa, Bm, ldb, K, 6);
            break;
        case 7:
            mm_row(c, a, sa, Bm, ldb, K, 7);
            break;
        case 8:
            mm_row(c, a, sa, Bm, ldb, K, 8);
            break;
        default: /* wide heads / many keys: 8 vectors at a time */
            for (size_t v0 = 0; v0 < NV; v0 += 8) {
                size_t nv = NV - v0 < 8 ? NV - v0 : 8;
                for (size_t k = 0; k < K; k++) {
                    float av = a[k * sa];
                    const float *b = Bm + k * ldb + 4 * v0;
                    for (size_t j = 0; j < 4 * nv; j++)
                        c[4 * v0 + j] += av * b[j];
                }
            }
            break;
        }
    }
}

/* dst (rows, hp) = rows of src (row stride ld, hs floats each), zero-padded; rows whose valid
 * flag is 0 (or beyond n) are zero. tr (hp, ldt), if not NULL, gets the transpose. */
static void gather_rows(float *dst, float *tr, size_t ldt, const float *src, size_t ld, const uint8_t *valid,
                        size_t n, size_t rows, size_t hs, size_t hp, float scale)
{
    for (size_t j = 0; j < rows; j++) {
        float *o = dst + j * hp;
        const float *x = src + j * ld;
        if (j < n && (!valid || valid[j]))
            for (size_t d = 0; d < hs; d++)
                o[d] = x[d] * scale;
        else
            for (size_t d = 0; d < hs; d++)
                o[d] = 0.0f;
        for (size_t d = hs; d < hp; d++)
            o[d] = 0.0f;
    }
    if (tr)
        for (size_t d = 0; d < hp; d++)
            for (size_t j = 0; j < rows; j++)
                tr[d * ldt + j] = dst[j * hp + d];
}

void sl_attention_forward(float *out, float *probs, const float *q, size_t ldq, const float *k,
                          const float *v, size_t ldkv, const uint8_t *key_valid, size_t B, size_t NQ,
                          size_t N, size_t C, size_t NH, float *scratch)
{
    // q is (B, NQ, C), k and v are (B, N, C), out is (B, NQ, C), probs is (B, NH, NQ, N)
    size_t hs = C / NH, hp = up4(hs), Np = up4(N);
    float scale = 1.0f / sqrtf((float)hs);
    float *Qh = scratch, *Oh = Qh + NQ * hp, *Kh = Oh + NQ * hp, *Vh = Kh + Np * hp, *Kt = Vh + Np * hp;
    float *S = Kt + hp * Np;
    for (size_t b = 0; b < B; b++) {
        const uint8_t *valid = key_valid + b * N;
        size_t nvalid = 0;
        for (size_t j = 0; j < N; j++)
            nvalid += valid[j] ? 1u : 0u;
        for (size_t h = 0; h < NH; h++) {
            gather_rows(Qh, NULL, 0, q + b * NQ * ldq + h * hs, ldq, NULL, NQ, NQ, hs, hp, scale);
            gather_rows(Kh, Kt, Np, k + b * N * ldkv + h * hs, ldkv, valid, N, Np, hs, hp, 1.0f);
            gather_rows(Vh, NULL, 0, v + b * N * ldkv + h * hs, ldkv, valid, N, Np, hs, hp, 1.0f);
            // S (NQ, Np) = (scale Qh) Kh^T
            memset(S, 0, NQ * Np * sizeof(float));
            mm(S, Np, Qh, hp, 1, Kt, Np, NQ, hs, Np / 4);
            for (size_t i = 0; i < NQ; i++) {
                float *s = S + i * Np, *p = probs + ((b * NH + h) * NQ + i) * N;
                if (!nvalid) { /* no valid key: zero weights */
                    memset(s, 0, Np * sizeof(float));
                    memset(p, 0, N * sizeof(float));
                    continue;
                }
                float mx = -INFINITY;
                for (size_t j = 0; j < N; j++)
                    if (valid[j] && s[j] > mx)
                        mx = s[j];
                for (size_t j = 0; j < N; j++)
                    s[j] -= mx;
                exp_array(s, s, N);
                float sum = 0.0f;
                for (size_t j = 0; j < N; j++) {
                    s[j] = valid[j] ? s[j] : 0.0f;
                    sum += s[j];
                }
                float inv = 1.0f / sum;
                for (size_t j = 0; j < N; j++) {
                    s[j] *= inv;
                    p[j] = s[j];
                }
                for (size_t j = N; j < Np; j++)
                    s[j] = 0.0f;
            }
            // Oh (NQ, hp) = P Vh
            memset(Oh, 0, NQ * hp * sizeof(float));
            mm(Oh, hp, S, Np, 1, Vh, hp, NQ, N, hp / 4);
            for (size_t i = 0; i < NQ; i++) {
                float *o = out + (b * NQ + i) * C + h * hs;
                for (size_t d = 0; d < hs; d++)
                    o[d] = Oh[i * hp + d];
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
    float *Qh = scratch, *dOh = Qh + NQ * hp, *dQh = dOh + NQ * hp, *Kh = dQh + NQ * hp, *dKh = Kh + Np * hp;
    float *dVh = dKh + Np * hp, *Vh = dVh + Np * hp, *Vt = Vh + Np * hp, *P = Vt + hp * Np, *dS = P + NQ * Np;
    for (size_t b = 0; b < B; b++) {
        const uint8_t *valid = key_valid + b * N;
        for (size_t h = 0; h < NH; h++) {
            gather_rows(Qh, NULL, 0, q + b * NQ * ldq + h * hs, ldq, NULL, NQ, NQ, hs, hp, 1.0f);
            gather_rows(dOh, NULL, 0, dout + b * NQ * C + h * hs, C, NULL, NQ, NQ, hs, hp, 1.0f);
            gather_rows(Kh, NULL, 0, k + b * N * ldkv + h * hs, ldkv, valid, N, Np, hs, hp, 1.0f);
            gather_rows(Vh, Vt, Np, v + b * N * ldkv + h * hs, ldkv, valid, N, Np, hs, hp, 1.0f);
            for (size_t i = 0; i < NQ; i++) {
                const float *p = probs + ((b * NH + h) * NQ + i) * N;
                for (size_t j = 0; j < N; j++)
                    P[i * Np + j] = p[j];
                for (size_t j = N; j < Np; j++)
                    P[i * Np + j] = 0.0f;
            }
            // dP (NQ, Np) = dOh Vh^T, kept in dS
            memset(dS, 0, NQ * Np * sizeof(float));
            mm(dS, Np, dOh, hp, 1, Vt, Np, NQ, hs, Np / 4);
            // dS = P * (dP - rowsum(P * dP)) * scale (softmax backward; 1/sqrt(hs) folded in)
            for (size_t i = 0; i < NQ; i++) {
                float *ds = dS + i * Np;
                const float *pi = P + i * Np;
                float dot = 0.0f;
                for (size_t j = 0; j < N; j++)
                    dot += pi[j] * ds[j];
                for (size_t j = 0; j < Np; j++)
                    ds[j] = pi[j] * (ds[j] - dot) * scale;
            }
            if (dq) { // dQh (NQ, hp) = dS Kh
                memset(dQh, 0, NQ * hp * sizeof(float));
                mm(dQh, hp, dS, Np, 1, Kh, hp, NQ, N, hp / 4);
                for (size_t i = 0; i < NQ; i++) {
                    float *o = dq + (b * NQ + i) * ldq + h * hs;
                    for (size_t d = 0; d < hs; d++)
                        o[d] += dQh[i * hp + d];
                }
            }
            if (dk) { // dKh (Np, hp) = dS^T Qh
                memset(dKh, 0, Np * hp * sizeof(float));
                mm(dKh, hp, dS, 1, Np, Qh, hp, N, NQ, hp / 4);
            }
            if (dv) { // dVh (Np, hp) = P^T dOh
                memset(dVh, 0, Np * hp * sizeof(float));
                mm(dVh, hp, P, 1, Np, dOh, hp, N, NQ, hp / 4);
            }
            for (size_t j = 0; j < N; j++) {
                if (!valid[j]) /* padding keys: no gradient (their rows of dS, P are zero anyway) */
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

void sl_gelu_forward(float *out, float *sig, const float *inp, size_t n)
{
    // inp, out, sig are (n): s = sigmoid(2u), out = x * s
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        const float *x = inp + i0;
        gelu_exp(e, x, m);
        for (size_t i = 0; i < m; i++)
            e[i] = 1.0f / (1.0f + e[i]);
        for (size_t i = 0; i < m; i++)
            out[i0 + i] = x[i] * e[i];
        if (sig)
            memcpy(sig + i0, e, m * sizeof(float));
    }
}

void sl_gelu_backward(float *dinp, const float *inp, const float *sig, const float *dout, size_t n)
{
    // d/dx [x s(2u)] = s + 2 x s (1 - s) u'
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        const float *x = inp + i0, *s = e;
        if (sig) {
            s = sig + i0;
        } else {
            gelu_exp(e, x, m);
            for (size_t i = 0; i < m; i++)
                e[i] = 1.0f / (1.0f + e[i]);
        }
        for (size_t i = 0; i < m; i++) {
            float du = GELU_K * (1.0f + 3.0f * GELU_C * x[i] * x[i]);
            dinp[i0 + i] += (s[i] + 2.0f * x[i] * s[i] * (1.0f - s[i]) * du) * dout[i0 + i];
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
