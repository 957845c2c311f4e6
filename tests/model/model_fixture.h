/* tests/model/model_fixture.h: shared helpers of the model tests (schemas, configs, batches). */
#ifndef SL_TEST_MODEL_FIXTURE_H
#define SL_TEST_MODEL_FIXTURE_H

#include "core/batch.h"
#include "core/config.h"
#include "core/model.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline void fx_add_modality(sl_schema_t *s, const char *name, sl_modality_kind_t kind, size_t d0,
                                   size_t d1, size_t d2)
{
    sl_modality_t *m = &s->modalities[s->n_modalities++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->kind = kind;
    m->dims[0] = d0;
    m->dims[1] = d1;
    m->dims[2] = d2;
}

/* HAPT shape: acc and gyro, T x 3, 6 classes. */
static inline void fx_hapt_schema(sl_schema_t *s, size_t T)
{
    memset(s, 0, sizeof *s);
    fx_add_modality(s, "acc", SL_MOD_TIMESERIES, T, 3, 0);
    fx_add_modality(s, "gyro", SL_MOD_TIMESERIES, T, 3, 0);
    s->n_classes = 6;
}

/* Every modality kind, with padding in each tokenizer (T % P, H % p, F % g, text > max). */
static inline void fx_multi_schema(sl_schema_t *s)
{
    memset(s, 0, sizeof *s);
    fx_add_modality(s, "acc", SL_MOD_TIMESERIES, 30, 3, 0); /* P = 8: 4 tokens, last padded */
    fx_add_modality(s, "cam", SL_MOD_IMAGE, 7, 8, 2);       /* p = 4: 2 x 2 patches */
    fx_add_modality(s, "feat", SL_MOD_VECTOR, 10, 0, 0);    /* g = 4: 3 groups */
    fx_add_modality(s, "note", SL_MOD_TEXT, 7, 0, 0);       /* max 5 tokens */
    s->n_classes = 4;
}

/* A small model config: d=16, 2 layers, 2 heads, rank 2. */
static inline void fx_small_config(sl_config_t *c, int mode)
{
    sl_config_defaults(c);
    c->model.d_model = 16;
    c->model.layers = 2;
    c->model.heads = 2;
    c->model.mlp_ratio = 2;
    c->model.patch_len = 8;
    c->model.image_patch = 4;
    c->model.vector_group = 4;
    c->model.text_max_len = 5;
    c->model.lora_rank = 2;
    c->model.lora_alpha = 3;
    c->model.dropout = 0;
    c->train.mode = mode;
    c->train.label_smoothing = 0;
    c->run.seed = 11;
}

/* Random batch of B samples: values ~N(0,1), text bytes in 1..255 with trailing padding,
 * labels uniform, every modality present. */
static inline void fx_fill_batch(sl_batch_t *b, size_t B, sl_rng_t *r)
{
    const sl_schema_t *s = b->schema;
    b->size = B;
    for (size_t k = 0; k < s->n_modalities; k++) {
        size_t nv = sl_modality_values(&s->modalities[k]);
        for (size_t i = 0; i < B; i++)
            for (size_t j = 0; j < nv; j++) {
                float *x = &b->x[k][i * nv + j];
                if (s->modalities[k].kind == SL_MOD_TEXT)
                    *x = j + i + 2 < nv + 1 ? (float)(1 + sl_rng_below(r, 255))
                                            : 0.0f; /* sample i: i pad bytes */
                else
                    *x = (float)sl_rng_normal(r);
            }
        for (size_t i = 0; i < B; i++)
            b->present[i * s->n_modalities + k] = 1;
    }
    for (size_t i = 0; i < B; i++)
        b->labels[i] = (int32_t)sl_rng_below(r, s->n_classes);
}

/* Index of the parameter called name, or (size_t)-1. */
static inline size_t fx_param(const sl_model_t *m, const char *name)
{
    size_t n;
    const sl_param_info_t *p = sl_model_params(m, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].name, name) == 0)
            return i;
    return (size_t)-1;
}

/* Fill every trainable LoRA B (zero at init) and everything trainable with small noise so
 * gradients of A are non-zero. */
static inline void fx_randomize_trainable(sl_model_t *m, sl_rng_t *r, float s)
{
    size_t n;
    float *t = sl_model_trainable(m, &n);
    for (size_t i = 0; i < n; i++)
        t[i] += (float)sl_rng_normal(r) * s;
}

/* Copy every tensor of src that dst has (same name and numel) into dst. Returns the count. */
static inline size_t fx_copy_weights(sl_model_t *dst, sl_model_t *src)
{
    size_t nd, ns, copied = 0;
    const sl_param_info_t *pd = sl_model_params(dst, &nd);
    const sl_param_info_t *ps = sl_model_params(src, &ns);
    for (size_t i = 0; i < nd; i++)
        for (size_t j = 0; j < ns; j++)
            if (strcmp(pd[i].name, ps[j].name) == 0 && pd[i].numel == ps[j].numel) {
                memcpy(sl_model_param_ptr(dst, i), sl_model_param_ptr(src, j), pd[i].numel * sizeof(float));
                copied++;
            }
    return copied;
}

#endif
