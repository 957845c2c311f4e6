/* core/ops: float32 tensor ops with explicit forward and backward, llm.c style.
 *
 * Conventions: tensors are row-major; shapes are given in the comment of each function.
 * Every *_backward ACCUMULATES (+=) into the input gradients and parameter gradients it is
 * given; a NULL gradient pointer means "not needed" and that work is skipped (e.g. the weight
 * gradient of a frozen linear layer). Matmuls go through OpenBLAS cblas_sgemm. No function
 * allocates; scratch buffers are passed in. Nothing here can fail on valid shapes.
 */
#ifndef SL_OPS_H
#define SL_OPS_H

#include "core/rng.h"

#include <stddef.h>
#include <stdint.h>

/* out (rows, n_out) = inp (rows, n_in) @ w^T (w is (n_out, n_in)) + bias (n_out, may be NULL).
 * ld_out / ld_inp: row strides in floats (n_out / n_in when dense). */
void sl_linear_forward(float *out, size_t ld_out, const float *inp, size_t ld_inp, const float *w,
                       const float *bias, size_t rows, size_t n_in, size_t n_out);
/* dinp (rows, n_in) += dout @ w;  dw (n_out, n_in) += dout^T @ inp;  dbias (n_out) += colsum(dout).
 * Any of dinp / dw / dbias may be NULL (skipped). ld_*: row strides in floats. */
void sl_linear_backward(float *dinp, size_t ld_dinp, float *dw, float *dbias, const float *dout,
                        size_t ld_dout, const float *inp, size_t ld_inp, const float *w, size_t rows,
                        size_t n_in, size_t n_out);

/* LoRA branch added onto a linear output:
 * la (rows, r) = inp (rows, n_in) @ a^T (a is (r, n_in));  out (rows, n_out) += scale * la @ b^T
 * (b is (n_out, r)). la is kept for the backward. */
void sl_lora_forward(float *out, size_t ld_out, float *la, const float *inp, size_t ld_inp, const float *a,
                     const float *b, float scale, size_t rows, size_t n_in, size_t n_out, size_t r);
/* dla (rows, r) is scratch (overwritten) = scale * dout @ b;  db (n_out, r) += scale * dout^T @ la;
 * da (r, n_in) += dla^T @ inp;  dinp (rows, n_in) += dla @ a. da / db / dinp may be NULL. */
void sl_lora_backward(float *dinp, size_t ld_dinp, float *da, float *db, float *dla, const float *dout,
                      size_t ld_dout, const float *inp, size_t ld_inp, const float *la, const float *a,
                      const float *b, float scale, size_t rows, size_t n_in, size_t n_out, size_t r);

/* out (rows, C) = (inp - mean) * rstd * w + b per row (eps 1e-5, biased variance, as torch);
 * mean, rstd (rows) are kept for the backward. */
void sl_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                          const float *b, size_t rows, size_t C);
/* dinp (rows, C) += ..., dw (C) += ..., db (C) += ... (dw / db may be NULL). */
void sl_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                           const float *w, const float *mean, const float *rstd, size_t rows, size_t C);

/* Multi-head self-attention with a key-padding mask, no causal mask.
 * q (B, NQ, C) with row stride ldq, k, v (B, N, C) with row stride ldkv, key_valid (B, N)
 * (0 = padding: exactly zero attention weight and its k/v are never read), out (B, NQ, C) dense,
 * probs (B, NH, NQ, N) kept for the backward. Head h uses channels [h*C/NH, (h+1)*C/NH); scores
 * are scaled by 1/sqrt(C/NH). A sample with no valid key gets output rows 0.
 * scratch: sl_attention_scratch(NQ, N, C, NH) floats. */
/* Floats of scratch the attention kernels need. */
size_t sl_attention_scratch(size_t NQ, size_t N, size_t C, size_t NH);
void sl_attention_forward(float *out, float *probs, const float *q, size_t ldq, const float *k,
                          const float *v, size_t ldkv, const uint8_t *key_valid, size_t B, size_t NQ,
                          size_t N, size_t C, size_t NH, float *scratch);
/* dq (row stride ldq), dk, dv (row stride ldkv) += ... from dout (B, NQ, C) dense; each of
 * dq / dk / dv may be NULL. scratch: sl_attention_scratch(NQ, N, C, NH) floats. */
void sl_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, size_t ldq,
                           const float *k, const float *v, size_t ldkv, const float *probs,
                           const uint8_t *key_valid, size_t B, size_t NQ, size_t N, size_t C, size_t NH,
                           float *scratch);

/* GELU, tanh approximation (torch approximate='tanh'):
 * out (n) = 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3))), computed as x * sigmoid(2u).
 * sig (n), if not NULL, keeps the sigmoid for the backward. */
void sl_gelu_forward(float *out, float *sig, const float *inp, size_t n);
/* dinp (n) += gelu'(inp) * dout; sig from the forward, or NULL to recompute it. */
void sl_gelu_backward(float *dinp, const float *inp, const float *sig, const float *dout, size_t n);

/* out (n) = a + b (out may alias a or b). Backward: da += dout, db += dout. */
void sl_residual_forward(float *out, const float *a, const float *b, size_t n);
void sl_residual_backward(float *da, float *db, const float *dout, size_t n);

/* Softmax cross-entropy with label smoothing eps (target = (1-eps) onehot + eps/K), averaged
 * over B: logits (B, K), labels (B) in [0, K); probs (B, K) kept for the backward. Returns the
 * mean loss (double accumulation). */
double sl_crossentropy_forward(float *probs, const float *logits, const int32_t *labels, size_t B, size_t K,
                               float eps);
/* dlogits (B, K) += dloss * (probs - target) / B. */
void sl_crossentropy_backward(float *dlogits, const float *probs, const int32_t *labels, size_t B, size_t K,
                              float eps, float dloss);

/* out (n, C) = table[idx[i]] (table (V, C)); backward: dtable[idx[i]] += dout[i]. */
void sl_embedding_forward(float *out, const int32_t *idx, const float *table, size_t n, size_t C);
void sl_embedding_backward(float *dtable, const int32_t *idx, const float *dout, size_t n, size_t C);

/* Pooling over N tokens: CLS takes token 0; mean averages the valid tokens (valid (B, N)).
 * out (B, C), inp (B, N, C). Backward adds into dinp (B, N, C). */
void sl_pool_cls_forward(float *out, const float *inp, size_t B, size_t N, size_t C);
void sl_pool_cls_backward(float *dinp, const float *dout, size_t B, size_t N, size_t C);
void sl_pool_mean_forward(float *out, const float *inp, const uint8_t *valid, size_t B, size_t N, size_t C);
void sl_pool_mean_backward(float *dinp, const float *dout, const uint8_t *valid, size_t B, size_t N,
                           size_t C);

/* Inverted dropout: mask (n) = 0 with probability p else 1/(1-p), drawn from rng; out = inp * mask
 * (out may alias inp). p = 0 gives mask = 1 and draws nothing. Backward: dinp += dout * mask. */
void sl_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, sl_rng_t *rng);
void sl_dropout_backward(float *dinp, const float *mask, const float *dout, size_t n);

/* Vectorizable exp (relative error < 2e-7 on [-87, 88]; clamped outside). */
float sl_fast_expf(float x);

#endif
