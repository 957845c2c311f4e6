/* synthetic: a seeded multimodal generator with per-client label skew, quantity skew and
 * feature shift, generated lazily (nothing per client or per example is stored).
 *
 * Class k has a prototype per modality (fixed at open from the seed):
 *   time series (T, C): channel c is sin(2 pi f t / T + phi) with f, phi drawn per (k, c)
 *   image (H, W, ch):   two Gaussian blobs at positions drawn per k
 *   vector (F):         a N(0, 1) vector per k
 * An example of group g is  x = signal * proto[label] + offset_g + noise * N(0, 1),
 * where offset_g is the group's feature shift (N(0, shift^2) per channel / feature). The
 * group's parameters come from sl_rng_init(seed, "synthetic-client", 0, g): its size
 * (examples * lognormal(sigma = quantity_sigma), >= 1), its label distribution
 * q_g ~ Dir(label_alpha) (uniform when label_alpha = 0) and its offsets; example i comes
 * from sl_rng_init(seed, "synthetic", g, i). Groups 0..clients-1 are clients, then
 * public_clients public groups and test_clients held-out test groups.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "datasets/builtins.h"
#include "datasets/partition.h"

#define MAX_CLASSES 1000

typedef struct {
    sl_schema_t schema;
    size_t n_classes;
    size_t clients, public_clients, test_clients;
    double examples, label_alpha, quantity_sigma, shift, noise, signal;
    uint64_t seed;
    float *proto[SL_MAX_MODALITIES]; /* (n_classes, values(m)) */
    size_t n_offsets;                /* offsets per group: sum of channels over modalities */
    char names[MAX_CLASSES][12];
} synth_t;

static const sl_dataset_option_t synth_options[] = {
    {"clients", "100", "natural (federated) clients, 1 .. 10,000,000"},
    {"examples", "64", "mean examples per client"},
    {"public_clients", "10", "extra groups forming the public (pretraining) split"},
    {"test_clients", "20", "held-out groups forming the global test split"},
    {"ts", "1", "number of time-series modalities (ts, ts1, ...)"},
    {"ts_len", "64", "time-series length T"},
    {"ts_channels", "3", "time-series channels C"},
    {"img", "1", "number of image modalities (img, img1, ...)"},
    {"img_size", "16", "image side H = W"},
    {"img_channels", "1", "image channels"},
    {"vec", "1", "number of vector modalities (vec, vec1, ...)"},
    {"vec_dim", "16", "vector length F"},
    {"label_alpha", "1", "label skew: client label mix ~ Dirichlet(alpha); 0 = uniform labels"},
    {"quantity_sigma", "0.5", "quantity skew: client size ~ examples * lognormal(sigma); 0 = equal"},
    {"shift", "0.5", "feature shift: std of each client's per-channel offset"},
    {"noise", "1.5", "std of the per-value Gaussian noise"},
    {"signal", "0.5", "amplitude of the class prototype (0.5: nearest centroid ~0.8 on defaults)"},
    {NULL, NULL, NULL}};

typedef struct {
    size_t size;
    double q[MAX_CLASSES]; /* cumulative label distribution */
} client_params_t;

/* The group's size and cumulative label distribution; leaves rng positioned at the
 * offsets (drawn by the caller that needs them). */
static void client_params(const synth_t *s, size_t g, sl_rng_t *rng, client_params_t *p, int want_q)
{
    sl_rng_init(rng, s->seed, "synthetic-client", 0, g);
    double z = sl_rng_normal(rng);
    double sz = s->examples * exp(s->quantity_sigma * z - 0.5 * s->quantity_sigma * s->quantity_sigma);
    p->size = sz < 1.0 ? 1 : (size_t)floor(sz + 0.5);
    if (!want_q)
        return;
    size_t k = s->n_classes;
    if (s->label_alpha > 0.0)
        sl_dirichlet_sample(rng, s->label_alpha, k, p->q);
    else
        for (size_t i = 0; i < k; i++)
            p->q[i] = 1.0 / (double)k;
    for (size_t i = 1; i < k; i++)
        p->q[i] += p->q[i - 1];
}

static int32_t draw_label(const synth_t *s, const client_params_t *p, sl_rng_t *ex)
{
    double u = sl_rng_uniform(ex) * p->q[s->n_classes - 1];
    for (size_t k = 0; k < s->n_classes; k++)
        if (u < p->q[k])
            return (int32_t)k;
    return (int32_t)(s->n_classes - 1);
}

static size_t channels_of(const sl_modality_t *m)
{
    switch (m->kind) {
    case SL_MOD_TIMESERIES:
        return m->dims[1];
    case SL_MOD_IMAGE:
        return m->dims[2];
    default:
        return m->dims[0];
    }
}

/* n standard normals into out: Box-Muller on pairs of 32-bit uniforms from the stream,
 * keeping both outputs (the stream position alone still determines the values). */
static void normals(sl_rng_t *rng, float *out, size_t n)
{
    uint32_t u[128];
    for (size_t at = 0; at < n; at += 128) {
        size_t want = n - at < 128 ? n - at : 128, pairs = (want + 1) / 2;
        sl_rng_bytes(rng, u, pairs * 2 * sizeof *u);
        for (size_t p = 0; p < pairs; p++) {
            float u1 = ((float)(u[2 * p] >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
            float u2 = (float)(u[2 * p + 1] >> 8) * (1.0f / 16777216.0f);
            float r = sqrtf(-2.0f * logf(u1)), th = 6.2831853f * u2;
            out[at + 2 * p] = r * cosf(th);
            if (2 * p + 1 < want)
                out[at + 2 * p + 1] = r * sinf(th);
        }
    }
}

static void synth_close(void *state)
{
    synth_t *s = state;
    if (!s)
        return;
    for (size_t m = 0; m < SL_MAX_MODALITIES; m++)
        free(s->proto[m]);
    free(s);
}

static int add_modalities(synth_t *s, int64_t count, const char *base, sl_modality_kind_t kind, size_t d0, size_t d1,
                          size_t d2)
{
    for (int64_t i = 0; i < count; i++) {
        if (s->schema.n_modalities == SL_MAX_MODALITIES)
            return sl_error(SL_ECONFIG, "dataset synthetic: more than %d modalities in all", SL_MAX_MODALITIES);
        sl_modality_t *m = &s->schema.modalities[s->schema.n_modalities++];
        if (i == 0)
            snprintf(m->name, SL_NAME_MAX, "%s", base);
        else
            snprintf(m->name, SL_NAME_MAX, "%s%d", base, (int)i);
        m->kind = kind;
        m->dims[0] = d0;
        m->dims[1] = d1;
        m->dims[2] = d2;
    }
    return 0;
}

static void make_prototypes(synth_t *s)
{
    for (size_t m = 0; m < s->schema.n_modalities; m++) {
        const sl_modality_t *md = &s->schema.modalities[m];
        size_t nv = sl_modality_values(md);
        for (size_t k = 0; k < s->n_classes; k++) {
            float *p = s->proto[m] + k * nv;
            sl_rng_t r;
            sl_rng_init(&r, s->seed, "synthetic-proto", k, m);
            if (md->kind == SL_MOD_TIMESERIES) { /* (T, C) */
                size_t T = md->dims[0], C = md->dims[1];
                for (size_t c = 0; c < C; c++) {
                    double f = 1.0 + 4.0 * sl_rng_uniform(&r), ph = 2.0 * M_PI * sl_rng_uniform(&r);
                    for (size_t t = 0; t < T; t++)
                        p[t * C + c] = (float)(s->signal * sin(2.0 * M_PI * f * (double)t / (double)T + ph));
                }
            } else if (md->kind == SL_MOD_IMAGE) { /* (H, W, ch) */
                size_t H = md->dims[0], W = md->dims[1], CH = md->dims[2];
                memset(p, 0, nv * sizeof *p);
                for (int b = 0; b < 2; b++) {
                    double cy = sl_rng_uniform(&r) * (double)H, cx = sl_rng_uniform(&r) * (double)W;
                    double rad = 1.0 + 0.15 * (double)H * sl_rng_uniform(&r), sign = b ? -1.0 : 1.0;
                    for (size_t y = 0; y < H; y++)
                        for (size_t x = 0; x < W; x++) {
                            double d2 = ((double)y - cy) * ((double)y - cy) + ((double)x - cx) * ((double)x - cx);
                            double v = sign * 2.0 * s->signal * exp(-d2 / (2.0 * rad * rad));
                            for (size_t ch = 0; ch < CH; ch++)
                                p[(y * W + x) * CH + ch] += (float)v;
                        }
                }
            } else { /* (F) */
                for (size_t i = 0; i < nv; i++)
                    p[i] = (float)(s->signal * sl_rng_normal(&r));
            }
        }
    }
}

static int synth_open(void **state, const sl_dataset_args_t *args, char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    *state = NULL;
    synth_t *s = calloc(1, sizeof *s);
    if (!s)
        return sl_error(SL_ENOMEM, "synthetic: out of memory");
    int rc;
    int64_t clients = 100, pub = 10, test = 20, ts = 1, ts_len = 64, ts_ch = 3, img = 1, img_size = 16, img_ch = 1,
            vec = 1, vec_dim = 16;
    s->examples = 64;
    s->label_alpha = 1.0;
    s->quantity_sigma = 0.5;
    s->shift = 0.5;
    s->noise = 1.5;
    s->signal = 0.5;
#define GETI(key, var, lo, hi)                                                                           \
    if ((rc = sl_dsopt_int("synthetic", key, sl_dataset_args_get(args, key), lo, hi, &var)) != 0)       \
        goto fail;
#define GETD(key, var, lo, hi)                                                                           \
    if ((rc = sl_dsopt_double("synthetic", key, sl_dataset_args_get(args, key), lo, hi, &var)) != 0)    \
        goto fail;
    GETI("clients", clients, 1, 10000000)
    GETI("public_clients", pub, 0, 10000000)
    GETI("test_clients", test, 0, 10000000)
    GETI("ts", ts, 0, SL_MAX_MODALITIES)
    GETI("ts_len", ts_len, 1, 65536)
    GETI("ts_channels", ts_ch, 1, 4096)
    GETI("img", img, 0, SL_MAX_MODALITIES)
    GETI("img_size", img_size, 1, 1024)
    GETI("img_channels", img_ch, 1, 64)
    GETI("vec", vec, 0, SL_MAX_MODALITIES)
    GETI("vec_dim", vec_dim, 1, 1 << 20)
    GETD("examples", s->examples, 1, 1e7)
    GETD("label_alpha", s->label_alpha, 0, 1e6)
    GETD("quantity_sigma", s->quantity_sigma, 0, 5)
    GETD("shift", s->shift, 0, 1e3)
    GETD("noise", s->noise, 0, 1e3)
    GETD("signal", s->signal, 0, 1e3)
#undef GETI
#undef GETD
    s->n_classes = args->classes ? args->classes : 10;
    if (s->n_classes < 2 || s->n_classes > MAX_CLASSES) {
        rc = sl_error(SL_ECONFIG, "dataset synthetic: data.classes must be in [2, %d], got %zu", MAX_CLASSES,
                      s->n_classes);
        goto fail;
    }
    if (ts + img + vec == 0) {
        rc = sl_error(SL_ECONFIG, "dataset synthetic: no modality (set ts, img or vec to at least 1)");
        goto fail;
    }
    s->clients = (size_t)clients;
    s->public_clients = (size_t)pub;
    s->test_clients = (size_t)test;
    s->seed = args->seed;
    s->schema.n_classes = s->n_classes;
    if ((rc = add_modalities(s, ts, "ts", SL_MOD_TIMESERIES, (size_t)ts_len, (size_t)ts_ch, 0)) ||
        (rc = add_modalities(s, img, "img", SL_MOD_IMAGE, (size_t)img_size, (size_t)img_size, (size_t)img_ch)) ||
        (rc = add_modalities(s, vec, "vec", SL_MOD_VECTOR, (size_t)vec_dim, 0, 0)))
        goto fail;
    for (size_t m = 0; m < s->schema.n_modalities; m++) {
        const sl_modality_t *md = &s->schema.modalities[m];
        s->proto[m] = malloc(s->n_classes * sl_modality_values(md) * sizeof(float));
        if (!s->proto[m]) {
            rc = sl_error(SL_ENOMEM, "dataset synthetic: out of memory for prototypes");
            goto fail;
        }
        s->n_offsets += channels_of(md);
    }
    for (size_t k = 0; k < s->n_classes; k++)
        snprintf(s->names[k], sizeof s->names[k], "class%zu", k);
    make_prototypes(s);
    *state = s;
    return 0;
fail:
    synth_close(s);
    return rc;
}

static const sl_schema_t *synth_schema(void *state) { return &((synth_t *)state)->schema; }

static const char *synth_class_name(void *state, size_t k)
{
    const synth_t *s = state;
    return k < s->n_classes ? s->names[k] : NULL;
}

static size_t synth_num_groups(void *state)
{
    const synth_t *s = state;
    return s->clients + s->public_clients + s->test_clients;
}

static uint64_t synth_group_id(void *state, size_t g)
{
    (void)state;
    return (uint64_t)g;
}

static sl_group_role_t synth_group_role(void *state, size_t g)
{
    const synth_t *s = state;
    return g < s->clients ? SL_GROUP_CLIENT : g < s->clients + s->public_clients ? SL_GROUP_PUBLIC : SL_GROUP_TEST;
}

static size_t synth_group_size(void *state, size_t g)
{
    client_params_t p;
    sl_rng_t r;
    client_params(state, g, &r, &p, 0);
    return p.size;
}

static int32_t synth_label(void *state, size_t g, size_t i)
{
    const synth_t *s = state;
    client_params_t p;
    sl_rng_t r, ex;
    client_params(s, g, &r, &p, 1);
    sl_rng_init(&ex, s->seed, "synthetic", g, i);
    return draw_label(s, &p, &ex);
}

static int synth_fill(void *state, const sl_dataset_ref_t *refs, size_t n, sl_batch_t *batch, char *err,
                      size_t err_len)
{
    (void)err;
    (void)err_len;
    const synth_t *s = state;
    client_params_t *p = malloc(sizeof *p);
    float *offsets = malloc((s->n_offsets ? s->n_offsets : 1) * sizeof *offsets);
    if (!p || !offsets) {
        free(p);
        free(offsets);
        return sl_error(SL_ENOMEM, "synthetic: out of memory");
    }
    size_t cur_group = SIZE_MAX;
    for (size_t j = 0; j < n; j++) {
        size_t g = refs[j].group;
        if (g != cur_group) { /* refs usually come in runs of one group */
            sl_rng_t r;
            client_params(s, g, &r, p, 1);
            for (size_t o = 0; o < s->n_offsets; o++)
                offsets[o] = (float)(s->shift * sl_rng_normal(&r));
            cur_group = g;
        }
        sl_rng_t ex;
        sl_rng_init(&ex, s->seed, "synthetic", g, refs[j].index);
        int32_t label = draw_label(s, p, &ex);
        batch->labels[j] = label;
        size_t off = 0;
        for (size_t m = 0; m < s->schema.n_modalities; m++) {
            const sl_modality_t *md = &s->schema.modalities[m];
            size_t nv = sl_modality_values(md), ch = channels_of(md);
            const float *proto = s->proto[m] + (size_t)label * nv;
            float *x = batch->x[m] + j * nv, noise = (float)s->noise;
            normals(&ex, x, nv);
            /* channel of value i: (T,C) and (H,W,ch) are channel-last, vectors per feature */
            for (size_t i = 0; i < nv; i++)
                x[i] = proto[i] + offsets[off + i % ch] + noise * x[i];
            off += ch;
            batch->present[j * s->schema.n_modalities + m] = 1;
        }
    }
    free(p);
    free(offsets);
    return 0;
}

const sl_dataset_plugin_t sl_dataset_synthetic = {
    SL_DATASET_PLUGIN_ABI_VERSION,
    0,
    "synthetic",
    "seeded multimodal generator (time series, images, vectors) with label/quantity skew and feature shift",
    synth_options,
    synth_open,
    synth_close,
    synth_schema,
    synth_class_name,
    synth_num_groups,
    synth_group_id,
    synth_group_role,
    synth_group_size,
    synth_label,
    synth_fill,
};
