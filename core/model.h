/* core/model: the multimodal transformer encoder with LoRA, llm.c style.
 *
 * Architecture (per sample):
 *   tokens  = [CLS] ++ tokens(modality 0) ++ tokens(modality 1) ++ ...
 *     time series (T, C): ceil(T/P) patches of P samples (P*C values, last one zero-padded),
 *                         linear P*C -> d                       P = model.patch_len
 *     image (H, W, ch):   ceil(H/p)*ceil(W/p) p x p patches of (p, p, ch) values, linear
 *                                                                 p = model.image_patch
 *     vector (F):         ceil(F/g) groups of g values (last zero-padded), linear g -> d
 *     text (L):           min(L, text_max_len) bytes, embedding table (256, d); byte 0 = pad
 *     every modality token gets + mod_emb (d) + pos_emb[j] (n_tokens, d)
 *   L pre-LN blocks:  x = x + drop(attn(ln1(x))),  x = x + drop(mlp(ln2(x)))
 *     attn: multi-head self-attention with a key-padding mask; mlp: d -> mlp_ratio*d -> d, GELU(tanh)
 *   final LayerNorm, pooling (CLS row, or the mean of the valid tokens incl. CLS), linear head.
 * A token is "valid" unless its modality is absent for the sample (batch->present == 0) or it
 * is a text padding byte. Invalid tokens receive exactly zero attention as keys, their values
 * are never read (an absent modality's values may be garbage, even NaN), and their outputs are
 * ignored, so a sample's logits equal those of the same model without that modality.
 *
 * Parameters live in one contiguous float32 buffer, frozen tensors first, then trainable ones,
 * so the trainable part (what the federation exchanges) is one vector. Trainable set by
 * cfg->train.mode: lora = every LoRA A/B + head; head = head only; full = everything (LoRA
 * tensors exist only in lora mode with lora_rank > 0). LoRA on target t: out += (alpha/r) *
 * B (A in), A kaiming-uniform from the init stream, B = 0.
 *
 * Parameter names (HF-like): tok.<mod>.proj.weight (d, in) / .proj.bias (d) or tok.<mod>.emb
 * (256, d) for text, tok.<mod>.mod_emb (d), tok.<mod>.pos_emb (n_tokens, d), cls (d),
 * blocks.<i>.ln1.weight/.bias, blocks.<i>.attn.{q,k,v,o}.weight (d, d)/.bias,
 * blocks.<i>.attn.q.lora_A (r, d)/.lora_B (d, r), blocks.<i>.ln2.*, blocks.<i>.mlp.up.weight
 * (h, d), blocks.<i>.mlp.down.weight (d, h), ln_f.weight/.bias, head.weight (K, d), head.bias (K).
 * Linear weights are (out, in) row-major, as in torch.nn.Linear.
 *
 * Thread safety: a model is used by one thread at a time. sl_model_clone_shared gives a
 * second model for another thread/virtual client that shares the frozen weights.
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include "core/batch.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"

#include <stddef.h>

typedef struct sl_model sl_model_t;

typedef struct {
    char name[64];
    size_t ndim;
    size_t shape[4];
    size_t offset; /* floats from the start of the parameter buffer */
    size_t numel;
    int trainable;
} sl_param_info_t;

/* Build from cfg->model / cfg->train.mode and the data schema (both copied); random init from
 * the seeded stream sl_rng_init(&r, cfg->run.seed, "init", 0, 0): base tensors first in
 * canonical order (so the base is identical whatever train.mode), then LoRA A's.
 * cfg->model.base is NOT loaded here (that is core/safetensors' sl_model_load).
 * SL_ECONFIG on an inconsistent config, SL_EINVAL on a bad schema, SL_ENOMEM. */
SL_NODISCARD int sl_model_new(sl_model_t **out, const sl_config_t *cfg, const sl_schema_t *schema);

/* A second model sharing `base`'s frozen weights read-only (own copy of the trainable params,
 * own grads and activations): for many virtual clients in one process. `base` must outlive
 * the clone and must not be merged/unmerged or have its frozen weights changed while the
 * clone is in use (SL_ESTATE if base is merged now). A clone's sl_model_param_data returns NULL (it owns no
 * contiguous full buffer); use sl_model_param_ptr or sl_model_trainable. */
SL_NODISCARD int sl_model_clone_shared(const sl_model_t *base, sl_model_t **out);

/* NULL-safe; nulls *m. */
void sl_model_destroy(sl_model_t **m);

/* Layout descriptor, in buffer order: frozen first, then trainable. Borrowed. */
const sl_param_info_t *sl_model_params(const sl_model_t *m, size_t *count);

/* The one contiguous buffer of all parameters (n floats), borrowed; NULL for a clone. */
float *sl_model_param_data(sl_model_t *m, size_t *n);

/* Pointer to the data of parameter i (0 <= i < count) of sl_model_params; works for clones.
 * Frozen tensors of a clone point into the base (treat them as read-only). */
float *sl_model_param_ptr(sl_model_t *m, size_t i);

/* The contiguous trainable tail of the buffer (n floats): the vector the federation exchanges.
 * Parameter i (trainable) sits at offset params[i].offset - sl_model_trainable_offset(m). */
float *sl_model_trainable(sl_model_t *m, size_t *n);
size_t sl_model_trainable_offset(const sl_model_t *m);

/* Gradient, same layout as the trainable vector (borrowed). */
float *sl_model_trainable_grad(sl_model_t *m);
void sl_model_zero_grad(sl_model_t *m);

/* Parameter counts: returns the total; *trainable (if not NULL) gets the trainable count. */
size_t sl_model_param_count(const sl_model_t *m, size_t *trainable);

/* Tokens per sample including CLS (17 for HAPT acc+gyro, T=128, P=16). */
size_t sl_model_tokens(const sl_model_t *m);

/* Forward on a batch (batch->size rows, any size: buffers grow on demand): logits
 * (B, n_classes) and, if `loss` is not NULL, the mean cross-entropy against batch->labels with
 * label smoothing cfg->train.label_smoothing. training=1 enables dropout drawn from `rng`
 * (rng may be NULL when training=0 or dropout=0). SL_EMISMATCH if the batch schema differs
 * from the model's, SL_EINVAL on bad labels or text bytes, SL_ENOMEM. */
SL_NODISCARD int sl_model_forward(sl_model_t *m, const sl_batch_t *batch, int training, sl_rng_t *rng,
                                  float *loss);

/* (B, n_classes) of the last forward (borrowed, valid until the next forward). */
const float *sl_model_logits(const sl_model_t *m);

/* Backward of the last forward (its loss, i.e. d(mean loss)): ADDS gradients of the trainable
 * parameters into sl_model_trainable_grad (frozen ones get none). SL_ESTATE if there was no
 * forward with labels since the last backward, or LoRA is merged. */
SL_NODISCARD int sl_model_backward(sl_model_t *m);

/* W += scale * B A into the (frozen) base for every LoRA target, and forward skips the LoRA
 * path; unmerge restores the exact previous base weights. SL_ESTATE if already merged /
 * not merged, or on a clone (its base is shared). No-op (0) without LoRA. */
SL_NODISCARD int sl_model_merge_lora(sl_model_t *m);
SL_NODISCARD int sl_model_unmerge_lora(sl_model_t *m);

const sl_schema_t *sl_model_schema(const sl_model_t *m);
const sl_config_t *sl_model_config(const sl_model_t *m); /* copy taken at _new */

/* One-line summary, e.g. "d=64 L=2 heads=4 tokens=17 params=77254 trainable=9478 (lora)". */
void sl_model_describe(const sl_model_t *m, char *buf, size_t cap);

/* OpenBLAS threads; 0 = number of cores. */
void sl_blas_set_threads(int n);

/* Split every forward/backward of m across n threads (0 = number of cores, 1 = off, the
 * default): each thread runs a contiguous slice of the batch through the model with its own
 * activations and gradient, then the gradients are summed. Same results as one thread up to
 * float rounding. Meant with single-threaded OpenBLAS (sl_blas_set_threads(1)): at these
 * matrix sizes splitting the batch scales better than threading each sgemm. Training with
 * dropout > 0 stays on one thread (one rng stream). */
void sl_model_set_threads(sl_model_t *m, int n);

#endif
