/* core/model: the multimodal encoder (see model.h for the architecture and layout).
 *
 * Implementation notes:
 *  - Parameters are enumerated once in a canonical order (enum_params); the exposed layout
 *    puts frozen tensors first, then trainable ones, each group in canonical order. q, k, v
 *    weights (and biases) are enumerated consecutively and always share a trainable status, so
 *    they form one (3d, d) matrix in the buffer: one sgemm computes q|k|v per token.
 *  - With CLS pooling the last block only needs the CLS row as query: its K and V are
 *    computed for every token but Q, the output projection, the MLP and the final LayerNorm
 *    only for the B CLS rows. The function computed is unchanged.
 *  - Activations are sized for the largest batch seen (one arena, grown on demand); nothing is
 *    allocated per step.
 *  - Backward skips the weight gradient of frozen linears and stops descending as soon as no
 *    trainable parameter lies below.
 */
#include "core/model.h"

#include "core/ops.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { LT_Q = 0, LT_K, LT_V, LT_O, LT_UP, LT_DOWN, LT_COUNT };
static const char *const lora_target_names[LT_COUNT] = {"q", "k", "v", "o", "mlp_up", "mlp_down"};

enum { INIT_ZERO = 0, INIT_ONE, INIT_UNIFORM, INIT_NORMAL };

typedef struct {
    float *w, *b, *gw, *gb;
    float *la, *lb, *gla, *glb; /* LoRA A (r, in), B (out, r); NULL when absent */
} lin_t;

typedef struct {
    float *ln1w, *ln1b, *ln2w, *ln2b, *gln1w, *gln1b, *gln2w, *gln2b;
    float *wqkv, *bqkv, *gwqkv, *gbqkv;     /* (3d, d), (3d): q, k, v stacked */
    float *la[3], *lb[3], *gla[3], *glb[3]; /* LoRA of q, k, v */
    lin_t o, up, down;
} block_t;

typedef struct {
    sl_modality_kind_t kind;
    size_t n_tok;   /* tokens of this modality per sample */
    size_t in_dim;  /* values per token (patch size), 0 for text */
    size_t tok_off; /* index of its first token (CLS is 0) */
    float *projw, *projb, *emb, *mod, *pos;
    float *gprojw, *gprojb, *gemb, *gmod, *gpos;
} tokzr_t;

typedef struct {
    float *ln1, *ln1_mean, *ln1_rstd; /* (B*N, d), (B*N) */
    float *qkv;                       /* (B*N, 3d) */
    float *q1;                        /* (B, d) when nq == 1 */
    float *lora_a[LT_COUNT];          /* (rows, r) */
    float *probs;                     /* (B, NH, nq, N) */
    float *atty, *attp, *mask1, *x1;  /* (B*nq, d) */
    float *ln2, *ln2_mean, *ln2_rstd; /* (B*nq, d), (B*nq) */
    float *hpre, *hact, *hsig;        /* (B*nq, H): pre-activation, GELU, its sigmoid */
    float *mlpo, *mask2, *xout;       /* (B*nq, d) */
} layer_act_t;

struct sl_model {
    sl_config_t cfg;
    sl_schema_t schema;
    size_t d, L, NH, H, K, N, r, M;
    float lora_scale;
    int mode, lora_on, pool_cls;
    int lora_target[LT_COUNT];

    /* parameters */
    size_t n_params;       /* tensors */
    sl_param_info_t *info; /* buffer order */
    size_t *canon_to_buf;  /* canonical index -> info index */
    int *init_kind;        /* canonical */
    float *init_arg;       /* canonical */
    int *is_lora;          /* canonical */
    float **ptr;           /* canonical: data pointer */
    size_t total, n_train; /* floats */
    float *buf;            /* owned: whole buffer (base) or trainable only (clone) */
    float *grad;           /* (n_train) */
    int is_clone;

    tokzr_t tok[SL_MAX_MODALITIES];
    float *cls, *gcls;
    block_t *blk;
    float *lnfw, *lnfb, *glnfw, *glnfb;
    float *headw, *headb, *gheadw, *gheadb;

    /* LoRA merge */
    int merged;
    float *merge_backup; /* copies of the target weights before merge */

    /* activations, sized for cap samples */
    size_t cap;
    float *arena;
    uint8_t *valid; /* (cap, N) */
    int32_t *text_idx[SL_MAX_MODALITIES];
    float *patches[SL_MAX_MODALITIES]; /* (cap*n_tok, in_dim) */
    float *tokbuf;                     /* (cap*maxtok, d) */
    float *x0;                         /* (cap*N, d) */
    layer_act_t *act;
    float *lnf, *lnf_mean, *lnf_rstd, *pooled, *logits, *ce_probs;
    int32_t *labels;
    /* backward scratch */
    float *dxa, *dxb, *dln, *dqkv, *dq1, *datty, *dx1, *dtmp, *dln2, *dact, *dhpre, *dla, *dlogits, *dpooled,
        *dlnf, *attn_scratch;

    /* last forward */
    size_t B;
    int have_ce, dropout_on;
    float eps;
    float dloss; /* scale of d(loss) in backward: 1, or a worker's share of the batch */

    /* batch split across threads (sl_model_set_threads) */
    size_t n_threads;
    sl_model_t **workers; /* shadows: every parameter pointer into this model, own grads */
    size_t n_workers;
    int par_active; /* the last forward ran on the workers */
    size_t par_cap;
    float *par_logits;   /* (par_cap, K) */
    size_t par_rows[64]; /* rows of each worker in the last forward */
};

/* ---- helpers ---------------------------------------------------------------------------- */

static size_t nq_of(const sl_model_t *m, size_t l)
{
    return (m->pool_cls && l + 1 == m->L) ? 1 : m->N;
}

static int parse_lora_targets(const char *s, int out[LT_COUNT])
{
    for (int t = 0; t < LT_COUNT; t++)
        out[t] = 0;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ')
            e++;
        size_t len = (size_t)(e - p);
        int found = 0;
        for (int t = 0; t < LT_COUNT; t++)
            if (strlen(lora_target_names[t]) == len && memcmp(lora_target_names[t], p, len) == 0) {
                out[t] = 1;
                found = 1;
            }
        if (!found)
            return sl_error(
                SL_ECONFIG,
                "model: [model] lora_targets: unknown target \"%.*s\" (expected q,k,v,o,mlp_up,mlp_down)",
                (int)len, p);
        p = e;
    }
    return 0;
}

static size_t ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

/* ---- parameter enumeration -------------------------------------------------------------- */

typedef struct {
    sl_model_t *m;
    int phase; /* 0 = describe (fill canonical arrays), 1 = wire pointers */
    size_t idx;
    sl_param_info_t *cinfo; /* canonical descriptors (phase 0) */
} penum_t;

static void reg(penum_t *e, float **slot, float **gslot, int trainable, int lora, int init, float arg,
                size_t ndim, size_t s0, size_t s1, const char *fmt, ...) SL_PRINTF(11, 12);

static void reg(penum_t *e, float **slot, float **gslot, int trainable, int lora, int init, float arg,
                size_t ndim, size_t s0, size_t s1, const char *fmt, ...)
{
    sl_model_t *m = e->m;
    size_t i = e->idx++;
    if (e->phase == 0) {
        if (e->cinfo) {
            sl_param_info_t *p = &e->cinfo[i];
            memset(p, 0, sizeof *p);
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->name, sizeof p->name, fmt, ap);
            va_end(ap);
            p->ndim = ndim;
            p->shape[0] = s0;
            p->shape[1] = ndim > 1 ? s1 : 0;
            p->numel = ndim > 1 ? s0 * s1 : s0;
            p->trainable = trainable;
            m->init_kind[i] = init;
            m->init_arg[i] = arg;
            m->is_lora[i] = lora;
        }
        return;
    }
    *slot = m->ptr[i];
    if (gslot) {
        const sl_param_info_t *p = &m->info[m->canon_to_buf[i]];
        *gslot = p->trainable ? m->grad + (p->offset - (m->total - m->n_train)) : NULL;
    }
}

/* Every parameter tensor in canonical order. */
static void enum_params(penum_t *e)
{
    sl_model_t *m = e->m;
    int full = m->mode == SL_TRAIN_FULL;
    size_t d = m->d, H = m->H, r = m->r;
    float bd = 1.0f / sqrtf((float)d), bh = 1.0f / sqrtf((float)H);
    for (size_t k = 0; k < m->M; k++) {
        tokzr_t *t = &m->tok[k];
        const char *nm = m->schema.modalities[k].name;
        if (t->kind == SL_MOD_TEXT) {
            reg(e, &t->emb, &t->gemb, full, 0, INIT_NORMAL, 0.02f, 2, 256, d, "tok.%s.emb", nm);
        } else {
            float b = 1.0f / sqrtf((float)t->in_dim);
            reg(e, &t->projw, &t->gprojw, full, 0, INIT_UNIFORM, b, 2, d, t->in_dim, "tok.%s.proj.weight",
                nm);
            reg(e, &t->projb, &t->gprojb, full, 0, INIT_ZERO, 0, 1, d, 0, "tok.%s.proj.bias", nm);
        }
        reg(e, &t->mod, &t->gmod, full, 0, INIT_NORMAL, 0.02f, 1, d, 0, "tok.%s.mod_emb", nm);
        reg(e, &t->pos, &t->gpos, full, 0, INIT_NORMAL, 0.02f, 2, t->n_tok, d, "tok.%s.pos_emb", nm);
    }
    reg(e, &m->cls, &m->gcls, full, 0, INIT_NORMAL, 0.02f, 1, d, 0, "cls");
    for (size_t l = 0; l < m->L; l++) {
        block_t *b = &m->blk[l];
        reg(e, &b->ln1w, &b->gln1w, full, 0, INIT_ONE, 0, 1, d, 0, "blocks.%zu.ln1.weight", l);
        reg(e, &b->ln1b, &b->gln1b, full, 0, INIT_ZERO, 0, 1, d, 0, "blocks.%zu.ln1.bias", l);
        /* q, k, v weights consecutive, then their biases: the fused (3d, d) matrix */
        float *w[3] = {0}, *gw[3] = {0}, *bb[3] = {0}, *gb[3] = {0};
        for (int j = 0; j < 3; j++)
            reg(e, &w[j], &gw[j], full, 0, INIT_UNIFORM, bd, 2, d, d, "blocks.%zu.attn.%s.weight", l,
                lora_target_names[j]);
        for (int j = 0; j < 3; j++)
            reg(e, &bb[j], &gb[j], full, 0, INIT_ZERO, 0, 1, d, 0, "blocks.%zu.attn.%s.bias", l,
                lora_target_names[j]);
        if (e->phase == 1) {
            b->wqkv = w[0];
            b->gwqkv = gw[0];
            b->bqkv = bb[0];
            b->gbqkv = gb[0];
        }
        for (int j = 0; j < 3; j++) {
            b->la[j] = b->lb[j] = b->gla[j] = b->glb[j] = NULL;
            if (m->lora_on && m->lora_target[j]) {
                reg(e, &b->la[j], &b->gla[j], 1, 1, INIT_UNIFORM, bd, 2, r, d, "blocks.%zu.attn.%s.lora_A", l,
                    lora_target_names[j]);
                reg(e, &b->lb[j], &b->glb[j], 1, 1, INIT_ZERO, 0, 2, d, r, "blocks.%zu.attn.%s.lora_B", l,
                    lora_target_names[j]);
            }
        }
        struct {
            lin_t *lin;
            const char *name;
            size_t in, out;
            int t;
        } lins[3] = {{&b->o, "attn.o", d, d, LT_O},
                     {&b->up, "mlp.up", d, H, LT_UP},
                     {&b->down, "mlp.down", H, d, LT_DOWN}};
        for (int j = 0; j < 3; j++) {
            lin_t *li = lins[j].lin;
            float bnd = lins[j].in == d ? bd : bh;
            if (j == 1) /* ln2 sits between attention and MLP */
            {
                reg(e, &b->ln2w, &b->gln2w, full, 0, INIT_ONE, 0, 1, d, 0, "blocks.%zu.ln2.weight", l);
                reg(e, &b->ln2b, &b->gln2b, full, 0, INIT_ZERO, 0, 1, d, 0, "blocks.%zu.ln2.bias", l);
            }
            reg(e, &li->w, &li->gw, full, 0, INIT_UNIFORM, bnd, 2, lins[j].out, lins[j].in,
                "blocks.%zu.%s.weight", l, lins[j].name);
            reg(e, &li->b, &li->gb, full, 0, INIT_ZERO, 0, 1, lins[j].out, 0, "blocks.%zu.%s.bias", l,
                lins[j].name);
            li->la = li->lb = li->gla = li->glb = NULL;
            if (m->lora_on && m->lora_target[lins[j].t]) {
                reg(e, &li->la, &li->gla, 1, 1, INIT_UNIFORM, bnd, 2, r, lins[j].in, "blocks.%zu.%s.lora_A",
                    l, lins[j].name);
                reg(e, &li->lb, &li->glb, 1, 1, INIT_ZERO, 0, 2, lins[j].out, r, "blocks.%zu.%s.lora_B", l,
                    lins[j].name);
            }
        }
    }
    reg(e, &m->lnfw, &m->glnfw, full, 0, INIT_ONE, 0, 1, d, 0, "ln_f.weight");
    reg(e, &m->lnfb, &m->glnfb, full, 0, INIT_ZERO, 0, 1, d, 0, "ln_f.bias");
    reg(e, &m->headw, &m->gheadw, 1, 0, INIT_UNIFORM, bd, 2, m->K, d, "head.weight");
    reg(e, &m->headb, &m->gheadb, 1, 0, INIT_ZERO, 0, 1, m->K, 0, "head.bias");
}

static void wire(sl_model_t *m)
{
    penum_t e = {m, 1, 0, NULL};
    enum_params(&e);
}

static void init_params(sl_model_t *m)
{
    sl_rng_t rng;
    sl_rng_init(&rng, (uint64_t)m->cfg.run.seed, "init", 0, 0);
    for (int pass = 0; pass < 2; pass++) /* base tensors first, then LoRA: same base in every mode */
        for (size_t i = 0; i < m->n_params; i++) {
            if (m->is_lora[i] != pass)
                continue;
            float *p = m->ptr[i];
            size_t n = m->info[m->canon_to_buf[i]].numel;
            float a = m->init_arg[i];
            for (size_t j = 0; j < n; j++) {
                switch (m->init_kind[i]) {
                case INIT_ONE:
                    p[j] = 1.0f;
                    break;
                case INIT_UNIFORM:
                    p[j] = (float)((2.0 * sl_rng_uniform(&rng) - 1.0) * a);
                    break;
                case INIT_NORMAL:
                    p[j] = (float)(sl_rng_normal(&rng) * a);
                    break;
                default:
                    p[j] = 0.0f;
                    break;
                }
            }
        }
    sl_rng_wipe(&rng);
}

/* ---- activations ------------------------------------------------------------------------ */

static void carve(float *base, size_t *off, float **p, size_t n)
{
    if (base)
        *p = base + *off;
    *off += (n + 15) & ~(size_t)15;
}

static void carve_i32(float *base, size_t *off, int32_t **p, size_t n)
{
    float *f = NULL;
    carve(base, off, &f, n);
    *p = (int32_t *)(void *)f;
}

static void carve_u8(float *base, size_t *off, uint8_t **p, size_t n)
{
    float *f = NULL;
    carve(base, off, &f, (n + 3) / 4);
    *p = (uint8_t *)(void *)f;
}

static size_t layout_acts(sl_model_t *m, float *a, size_t B)
{
    size_t off = 0, d = m->d, N = m->N, H = m->H, r = m->r ? m->r : 1;
    size_t maxtok = 1, maxin = 1;
    for (size_t k = 0; k < m->M; k++) {
        tokzr_t *t = &m->tok[k];
        maxtok = t->n_tok > maxtok ? t->n_tok : maxtok;
        if (t->kind == SL_MOD_TEXT)
            carve_i32(a, &off, &m->text_idx[k], B * t->n_tok);
        else
            carve(a, &off, &m->patches[k], B * t->n_tok * t->in_dim);
        maxin = t->in_dim > maxin ? t->in_dim : maxin;
    }
    carve(a, &off, &m->tokbuf, B * maxtok * d);
    carve(a, &off, &m->x0, B * N * d);
    for (size_t l = 0; l < m->L; l++) {
        layer_act_t *x = &m->act[l];
        size_t nq = nq_of(m, l), rq = B * nq;
        carve(a, &off, &x->ln1, B * N * d);
        carve(a, &off, &x->ln1_mean, B * N);
        carve(a, &off, &x->ln1_rstd, B * N);
        carve(a, &off, &x->qkv, B * N * 3 * d);
        carve(a, &off, &x->q1, B * d);
        for (int t = 0; t < LT_COUNT; t++)
            carve(a, &off, &x->lora_a[t], B * N * r);
        carve(a, &off, &x->probs, B * m->NH * nq * N);
        carve(a, &off, &x->atty, rq * d);
        carve(a, &off, &x->attp, rq * d);
        carve(a, &off, &x->mask1, rq * d);
        carve(a, &off, &x->x1, rq * d);
        carve(a, &off, &x->ln2, rq * d);
        carve(a, &off, &x->ln2_mean, rq);
        carve(a, &off, &x->ln2_rstd, rq);
        carve(a, &off, &x->hpre, rq * H);
        carve(a, &off, &x->hact, rq * H);
        carve(a, &off, &x->hsig, rq * H);
        carve(a, &off, &x->mlpo, rq * d);
        carve(a, &off, &x->mask2, rq * d);
        carve(a, &off, &x->xout, rq * d);
    }
    size_t rf = m->pool_cls ? B : B * N;
    carve(a, &off, &m->lnf, rf * d);
    carve(a, &off, &m->lnf_mean, rf);
    carve(a, &off, &m->lnf_rstd, rf);
    carve(a, &off, &m->pooled, B * d);
    carve(a, &off, &m->logits, B * m->K);
    carve(a, &off, &m->ce_probs, B * m->K);
    carve_i32(a, &off, &m->labels, B);
    carve(a, &off, &m->dxa, B * N * d);
    carve(a, &off, &m->dxb, B * N * d);
    carve(a, &off, &m->dln, B * N * d);
    carve(a, &off, &m->dqkv, B * N * 3 * d);
    carve(a, &off, &m->dq1, B * d);
    carve(a, &off, &m->datty, B * N * d);
    carve(a, &off, &m->dx1, B * N * d);
    carve(a, &off, &m->dtmp, B * N * d);
    carve(a, &off, &m->dln2, B * N * d);
    carve(a, &off, &m->dact, B * N * H);
    carve(a, &off, &m->dhpre, B * N * H);
    carve(a, &off, &m->dla, B * N * r);
    carve(a, &off, &m->dlogits, B * m->K);
    carve(a, &off, &m->dpooled, B * d);
    carve(a, &off, &m->dlnf, rf * d);
    carve(a, &off, &m->attn_scratch, sl_attention_scratch(N, N, d, m->NH));
    carve_u8(a, &off, &m->valid, B * N);
    (void)maxin;
    return off;
}

static int ensure_capacity(sl_model_t *m, size_t B)
{
    if (B <= m->cap)
        return 0;
    size_t n = layout_acts(m, NULL, B);
    float *a = NULL;
    if (posix_memalign((void **)&a, 64, n * sizeof(float)) != 0)
        return sl_error(SL_ENOMEM, "model: cannot allocate activations for batch %zu (%zu floats)", B, n);
    memset(a, 0, n * sizeof(float));
    free(m->arena);
    m->arena = a;
    layout_acts(m, a, B);
    m->cap = B;
    return 0;
}

/* ---- construction ----------------------------------------------------------------------- */

static int check_config(const sl_config_t *cfg, const sl_schema_t *schema)
{
    const __typeof__(cfg->model) *mc = &cfg->model;
    if (mc->d_model < 1 || mc->heads < 1 || mc->d_model % mc->heads != 0)
        return sl_error(SL_ECONFIG, "model: [model] heads = %lld must divide d_model = %lld",
                        (long long)mc->heads, (long long)mc->d_model);
    if (mc->layers < 1 || mc->mlp_ratio < 1)
        return sl_error(SL_ECONFIG, "model: [model] layers and mlp_ratio must be >= 1");
    if (mc->patch_len < 1 || mc->image_patch < 1 || mc->vector_group < 1 || mc->text_max_len < 1)
        return sl_error(SL_ECONFIG,
                        "model: [model] patch_len, image_patch, vector_group, text_max_len must be >= 1");
    if (mc->dropout < 0 || mc->dropout >= 1)
        return sl_error(SL_ECONFIG, "model: [model] dropout = %g must be in [0, 1)", mc->dropout);
    if (mc->lora_rank < 0)
        return sl_error(SL_ECONFIG, "model: [model] lora_rank must be >= 0");
    if (cfg->train.mode != SL_TRAIN_LORA && cfg->train.mode != SL_TRAIN_HEAD &&
        cfg->train.mode != SL_TRAIN_FULL)
        return sl_error(SL_ECONFIG, "model: [train] mode %d unknown", cfg->train.mode);
    int rc = sl_schema_validate(schema);
    if (rc)
        return rc;
    if (schema->n_classes < 1)
        return sl_error(SL_EINVAL, "model: schema has no classes");
    for (size_t k = 0; k < schema->n_modalities; k++) {
        sl_modality_kind_t kd = schema->modalities[k].kind;
        if (kd != SL_MOD_TIMESERIES && kd != SL_MOD_IMAGE && kd != SL_MOD_VECTOR && kd != SL_MOD_TEXT)
            return sl_error(SL_EINVAL, "model: modality %s has unknown kind %d", schema->modalities[k].name,
                            (int)kd);
    }
    return 0;
}

static void set_shapes(sl_model_t *m)
{
    const sl_config_t *c = &m->cfg;
    m->d = (size_t)c->model.d_model;
    m->L = (size_t)c->model.layers;
    m->NH = (size_t)c->model.heads;
    m->H = (size_t)(c->model.mlp_ratio * c->model.d_model);
    m->K = m->schema.n_classes;
    m->M = m->schema.n_modalities;
    m->mode = c->train.mode;
    m->pool_cls = c->model.pooling != SL_POOL_MEAN;
    m->lora_on = m->mode == SL_TRAIN_LORA && c->model.lora_rank > 0;
    m->r = m->lora_on ? (size_t)c->model.lora_rank : 0;
    m->lora_scale = m->lora_on ? (float)(c->model.lora_alpha / (double)c->model.lora_rank) : 0.0f;
    size_t n = 1;
    for (size_t k = 0; k < m->M; k++) {
        const sl_modality_t *md = &m->schema.modalities[k];
        tokzr_t *t = &m->tok[k];
        t->kind = md->kind;
        t->tok_off = n;
        switch (md->kind) {
        case SL_MOD_TIMESERIES: {
            size_t P = (size_t)c->model.patch_len;
            t->n_tok = ceil_div(md->dims[0], P);
            t->in_dim = P * md->dims[1];
            break;
        }
        case SL_MOD_IMAGE: {
            size_t p = (size_t)c->model.image_patch;
            t->n_tok = ceil_div(md->dims[0], p) * ceil_div(md->dims[1], p);
            t->in_dim = p * p * md->dims[2];
            break;
        }
        case SL_MOD_VECTOR: {
            size_t g = (size_t)c->model.vector_group;
            t->n_tok = ceil_div(md->dims[0], g);
            t->in_dim = g;
            break;
        }
        default: {
            size_t L = md->dims[0], mx = (size_t)c->model.text_max_len;
            t->n_tok = L < mx ? L : mx;
            t->in_dim = 0;
            break;
        }
        }
        n += t->n_tok;
    }
    m->N = n;
}

static int alloc_common(sl_model_t *m)
{
    m->blk = calloc(m->L, sizeof *m->blk);
    m->act = calloc(m->L, sizeof *m->act);
    if (!m->blk || !m->act)
        return sl_error(SL_ENOMEM, "model: out of memory");
    return 0;
}

int sl_model_new(sl_model_t **out, const sl_config_t *cfg, const sl_schema_t *schema)
{
    if (!out || !cfg || !schema)
        return sl_error(SL_EINVAL, "sl_model_new: NULL argument");
    *out = NULL;
    int rc = check_config(cfg, schema);
    if (rc)
        return rc;
    sl_model_t *m = calloc(1, sizeof *m);
    sl_param_info_t *cinfo = NULL;
    if (!m)
        return sl_error(SL_ENOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->schema = *schema;
    m->dloss = 1.0f;
    m->n_threads = 1;
    if ((rc = parse_lora_targets(cfg->model.lora_targets, m->lora_target)))
        goto fail;
    set_shapes(m);
    for (size_t k = 0; k < m->M; k++) /* keeps every size product far from overflow */
        if (m->tok[k].n_tok > 65536 || m->tok[k].in_dim > ((size_t)1 << 24)) {
            rc =
                sl_error(SL_ECONFIG, "model: modality %s gives %zu tokens of %zu values (limits 65536, 2^24)",
                         m->schema.modalities[k].name, m->tok[k].n_tok, m->tok[k].in_dim);
            goto fail;
        }
    if ((rc = alloc_common(m)))
        goto fail;

    /* count, then describe in canonical order */
    penum_t e = {m, 0, 0, NULL};
    enum_params(&e);
    m->n_params = e.idx;
    size_t np = m->n_params;
    cinfo = calloc(np, sizeof *cinfo);
    m->info = calloc(np, sizeof *m->info);
    m->canon_to_buf = calloc(np, sizeof *m->canon_to_buf);
    m->init_kind = calloc(np, sizeof *m->init_kind);
    m->init_arg = calloc(np, sizeof *m->init_arg);
    m->is_lora = calloc(np, sizeof *m->is_lora);
    m->ptr = calloc(np, sizeof *m->ptr);
    if (!cinfo || !m->info || !m->canon_to_buf || !m->init_kind || !m->init_arg || !m->is_lora || !m->ptr) {
        rc = sl_error(SL_ENOMEM, "model: out of memory");
        goto fail;
    }
    e = (penum_t){m, 0, 0, cinfo};
    enum_params(&e);

    /* buffer order: frozen, then trainable */
    size_t j = 0, off = 0;
    for (int tr = 0; tr < 2; tr++)
        for (size_t i = 0; i < np; i++) {
            if (cinfo[i].trainable != tr)
                continue;
            m->info[j] = cinfo[i];
            m->info[j].offset = off;
            m->canon_to_buf[i] = j;
            off += cinfo[i].numel;
            if (tr)
                m->n_train += cinfo[i].numel;
            j++;
        }
    m->total = off;
    m->buf = calloc(m->total ? m->total : 1, sizeof(float));
    m->grad = calloc(m->n_train ? m->n_train : 1, sizeof(float));
    if (!m->buf || !m->grad) {
        rc = sl_error(SL_ENOMEM, "model: cannot allocate %zu parameters", m->total);
        goto fail;
    }
    for (size_t i = 0; i < np; i++)
        m->ptr[i] = m->buf + m->info[m->canon_to_buf[i]].offset;
    wire(m);
    init_params(m);
    free(cinfo);
    *out = m;
    return 0;
fail:
    free(cinfo);
    sl_model_destroy(&m);
    return rc;
}

/* A model reading base's frozen weights; its trainable tensors are an own copy, or with
 * share_all (a batch-split worker) base's own. Either way own grads and activations. */
static int make_clone(const sl_model_t *base, sl_model_t **out, int share_all)
{
    *out = NULL;
    int rc = 0;
    sl_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return sl_error(SL_ENOMEM, "model: out of memory");
    m->cfg = base->cfg;
    m->schema = base->schema;
    m->dloss = 1.0f;
    m->n_threads = 1;
    memcpy(m->lora_target, base->lora_target, sizeof m->lora_target);
    set_shapes(m);
    m->is_clone = 1;
    if ((rc = alloc_common(m)))
        goto fail;
    size_t np = base->n_params;
    m->n_params = np;
    m->info = calloc(np, sizeof *m->info);
    m->canon_to_buf = calloc(np, sizeof *m->canon_to_buf);
    m->init_kind = calloc(np, sizeof *m->init_kind);
    m->init_arg = calloc(np, sizeof *m->init_arg);
    m->is_lora = calloc(np, sizeof *m->is_lora);
    m->ptr = calloc(np, sizeof *m->ptr);
    m->total = base->total;
    m->n_train = base->n_train;
    m->buf = calloc(m->n_train && !share_all ? m->n_train : 1, sizeof(float));
    m->grad = calloc(m->n_train ? m->n_train : 1, sizeof(float));
    if (!m->info || !m->canon_to_buf || !m->init_kind || !m->init_arg || !m->is_lora || !m->ptr || !m->buf ||
        !m->grad) {
        rc = sl_error(SL_ENOMEM, "model: out of memory");
        goto fail;
    }
    memcpy(m->info, base->info, np * sizeof *m->info);
    memcpy(m->canon_to_buf, base->canon_to_buf, np * sizeof *m->canon_to_buf);
    memcpy(m->init_kind, base->init_kind, np * sizeof *m->init_kind);
    memcpy(m->init_arg, base->init_arg, np * sizeof *m->init_arg);
    memcpy(m->is_lora, base->is_lora, np * sizeof *m->is_lora);
    size_t toff = m->total - m->n_train;
    for (size_t i = 0; i < np; i++) {
        const sl_param_info_t *p = &m->info[m->canon_to_buf[i]];
        m->ptr[i] = p->trainable && !share_all ? m->buf + (p->offset - toff) : base->ptr[i];
    }
    if (m->n_train && !share_all)
        memcpy(m->buf, base->buf + (base->is_clone ? 0 : toff), m->n_train * sizeof(float));
    wire(m);
    *out = m;
    return 0;
fail:
    sl_model_destroy(&m);
    return rc;
}

int sl_model_clone_shared(const sl_model_t *base, sl_model_t **out)
{
    if (!base || !out)
        return sl_error(SL_EINVAL, "sl_model_clone_shared: NULL argument");
    if (base->merged) /* the clone would add its LoRA on top of merged weights */
        return sl_error(SL_ESTATE, "model: cannot clone a model with merged LoRA (unmerge first)");
    return make_clone(base, out, 0);
}

void sl_model_set_threads(sl_model_t *m, int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    m->n_threads = n > 64 ? 64 : (size_t)n;
}

void sl_model_destroy(sl_model_t **pm)
{
    if (!pm || !*pm)
        return;
    sl_model_t *m = *pm;
    for (size_t i = 0; i < m->n_workers; i++)
        sl_model_destroy(&m->workers[i]);
    free(m->workers);
    free(m->par_logits);
    free(m->blk);
    free(m->act);
    free(m->info);
    free(m->canon_to_buf);
    free(m->init_kind);
    free(m->init_arg);
    free(m->is_lora);
    free(m->ptr);
    free(m->buf);
    free(m->grad);
    free(m->merge_backup);
    free(m->arena);
    free(m);
    *pm = NULL;
}

/* ---- accessors -------------------------------------------------------------------------- */

const sl_param_info_t *sl_model_params(const sl_model_t *m, size_t *count)
{
    if (count)
        *count = m->n_params;
    return m->info;
}

float *sl_model_param_data(sl_model_t *m, size_t *n)
{
    if (m->is_clone) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = m->total;
    return m->buf;
}

float *sl_model_param_ptr(sl_model_t *m, size_t i)
{
    if (i >= m->n_params)
        return NULL;
    const sl_param_info_t *p = &m->info[i];
    size_t toff = m->total - m->n_train;
    if (p->trainable)
        return (m->is_clone ? m->buf : m->buf + toff) + (p->offset - toff);
    if (!m->is_clone)
        return m->buf + p->offset;
    for (size_t c = 0; c < m->n_params; c++) /* frozen tensor of a clone: find its canonical slot */
        if (m->canon_to_buf[c] == i)
            return m->ptr[c];
    return NULL;
}

float *sl_model_trainable(sl_model_t *m, size_t *n)
{
    if (n)
        *n = m->n_train;
    return m->is_clone ? m->buf : m->buf + (m->total - m->n_train);
}

size_t sl_model_trainable_offset(const sl_model_t *m)
{
    return m->total - m->n_train;
}

float *sl_model_trainable_grad(sl_model_t *m)
{
    return m->grad;
}

void sl_model_zero_grad(sl_model_t *m)
{
    memset(m->grad, 0, m->n_train * sizeof(float));
}

size_t sl_model_param_count(const sl_model_t *m, size_t *trainable)
{
    if (trainable)
        *trainable = m->n_train;
    return m->total;
}

size_t sl_model_tokens(const sl_model_t *m)
{
    return m->N;
}

const float *sl_model_logits(const sl_model_t *m)
{
    return m->par_active ? m->par_logits : m->logits;
}

const sl_schema_t *sl_model_schema(const sl_model_t *m)
{
    return &m->schema;
}

const sl_config_t *sl_model_config(const sl_model_t *m)
{
    return &m->cfg;
}

void sl_model_describe(const sl_model_t *m, char *buf, size_t cap)
{
    const char *mode = m->mode == SL_TRAIN_FULL ? "full" : m->mode == SL_TRAIN_HEAD ? "head" : "lora";
    snprintf(
        buf, cap,
        "d=%zu L=%zu heads=%zu mlp=%zu tokens=%zu classes=%zu params=%zu trainable=%zu (mode %s, lora r=%zu)",
        m->d, m->L, m->NH, m->H, m->N, m->K, m->total, m->n_train, mode, m->r);
}

void sl_blas_set_threads(int n)
{
    if (n <= 0) {
        long c = 1;
#ifdef _SC_NPROCESSORS_ONLN
        c = sysconf(_SC_NPROCESSORS_ONLN);
#endif
        n = c > 0 ? (int)c : 1;
    }
    openblas_set_num_threads(n);
}

/* ---- forward ---------------------------------------------------------------------------- */

static int same_schema(const sl_schema_t *a, const sl_schema_t *b)
{
    if (a == b)
        return 1;
    if (a->n_modalities != b->n_modalities || a->n_classes != b->n_classes)
        return 0;
    for (size_t k = 0; k < a->n_modalities; k++) {
        const sl_modality_t *x = &a->modalities[k], *y = &b->modalities[k];
        if (x->kind != y->kind || memcmp(x->dims, y->dims, sizeof x->dims) != 0 ||
            strncmp(x->name, y->name, SL_NAME_MAX) != 0)
            return 0;
    }
    return 1;
}

/* Build the patch rows (B*n_tok, in_dim) of one modality; absent samples get zeros. */
static void make_patches(const sl_model_t *m, size_t k, const sl_batch_t *batch, size_t B)
{
    const tokzr_t *t = &m->tok[k];
    const sl_modality_t *md = &m->schema.modalities[k];
    size_t nv = sl_modality_values(md), per = t->n_tok * t->in_dim;
    float *P = m->patches[k];
    for (size_t b = 0; b < B; b++) {
        float *dst = P + b * per;
        int present = batch->present ? batch->present[b * m->M + k] != 0 : 1;
        if (!present) {
            memset(dst, 0, per * sizeof(float));
            continue;
        }
        const float *src = batch->x[k] + b * nv;
        if (t->kind == SL_MOD_IMAGE) {
            size_t Hh = md->dims[0], W = md->dims[1], ch = md->dims[2], p = (size_t)m->cfg.model.image_patch;
            size_t nw = ceil_div(W, p), nh = ceil_div(Hh, p);
            // patch (py, px) holds (p, p, ch) values, zero outside the image
            for (size_t py = 0; py < nh; py++)
                for (size_t px = 0; px < nw; px++) {
                    float *o = dst + (py * nw + px) * t->in_dim;
                    for (size_t iy = 0; iy < p; iy++)
                        for (size_t ix = 0; ix < p; ix++) {
                            size_t y = py * p + iy, x = px * p + ix;
                            float *oo = o + (iy * p + ix) * ch;
                            if (y < Hh && x < W)
                                memcpy(oo, src + (y * W + x) * ch, ch * sizeof(float));
                            else
                                memset(oo, 0, ch * sizeof(float));
                        }
                }
        } else { /* time series (T, C) and vector (F): contiguous, zero-padded tail */
            memcpy(dst, src, nv * sizeof(float));
            memset(dst + nv, 0, (per - nv) * sizeof(float));
        }
    }
}

static int tokenize(sl_model_t *m, const sl_batch_t *batch, size_t B)
{
    size_t d = m->d, N = m->N;
    for (size_t b = 0; b < B; b++) {
        m->valid[b * N] = 1;
        memcpy(m->x0 + b * N * d, m->cls, d * sizeof(float));
    }
    for (size_t k = 0; k < m->M; k++) {
        tokzr_t *t = &m->tok[k];
        size_t n = t->n_tok;
        if (!batch->x[k])
            for (size_t b = 0; b < B; b++)
                if (!batch->present || batch->present[b * m->M + k])
                    return sl_error(SL_EINVAL,
                                    "model: modality %s is present in sample %zu but has no values",
                                    m->schema.modalities[k].name, b);
        if (t->kind == SL_MOD_TEXT) {
            size_t L = m->schema.modalities[k].dims[0];
            for (size_t b = 0; b < B; b++) {
                int present = batch->present ? batch->present[b * m->M + k] != 0 : 1;
                for (size_t j = 0; j < n; j++) {
                    int32_t c = 0;
                    if (present) {
                        float v = batch->x[k][b * L + j];
                        if (!(v >= 0.0f && v <= 255.0f) || v != floorf(v))
                            return sl_error(
                                SL_EINVAL,
                                "model: text modality %s, sample %zu, position %zu: %g is not a byte",
                                m->schema.modalities[k].name, b, j, (double)v);
                        c = (int32_t)v;
                    }
                    m->text_idx[k][b * n + j] = c;
                    m->valid[b * N + t->tok_off + j] = c != 0;
                }
            }
            sl_embedding_forward(m->tokbuf, m->text_idx[k], t->emb, B * n, d);
        } else {
            make_patches(m, k, batch, B);
            // tokbuf (B*n, d) = patches (B*n, in_dim) @ W^T + b
            sl_linear_forward(m->tokbuf, d, m->patches[k], t->in_dim, t->projw, t->projb, B * n, t->in_dim,
                              d);
            for (size_t b = 0; b < B; b++) {
                uint8_t pr = batch->present ? (batch->present[b * m->M + k] != 0) : 1;
                memset(m->valid + b * N + t->tok_off, pr, n);
            }
        }
        // x0[b, off + j] = tok + mod_emb + pos_emb[j]
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < n; j++) {
                float *o = m->x0 + (b * N + t->tok_off + j) * d;
                const float *s = m->tokbuf + (b * n + j) * d, *pe = t->pos + j * d;
                for (size_t c = 0; c < d; c++)
                    o[c] = s[c] + t->mod[c] + pe[c];
            }
    }
    return 0;
}

/* out (rows, n_out) [ld_out] = inp @ W^T + b (+ LoRA of target t unless merged). */
static void lin_fwd(sl_model_t *m, float *out, size_t ld_out, const float *inp, size_t ld_inp, const float *w,
                    const float *b, const float *la, const float *lb, float *la_act, size_t rows, size_t n_in,
                    size_t n_out)
{
    sl_linear_forward(out, ld_out, inp, ld_inp, w, b, rows, n_in, n_out);
    if (la && !m->merged)
        sl_lora_forward(out, ld_out, la_act, inp, ld_inp, la, lb, m->lora_scale, rows, n_in, n_out, m->r);
}

static int forward_one(sl_model_t *m, const sl_batch_t *batch, int training, sl_rng_t *rng, float *loss)
{
    m->have_ce = 0;
    m->par_active = 0;
    size_t B = batch->size;
    if (B == 0)
        return sl_error(SL_EINVAL, "model: empty batch");
    if (!batch->schema || !same_schema(batch->schema, &m->schema))
        return sl_error(SL_EMISMATCH, "model: batch schema differs from the model's schema");
    float p_drop = (float)m->cfg.model.dropout;
    int drop = training && p_drop > 0.0f;
    if (drop && !rng)
        return sl_error(SL_EINVAL, "model: dropout in training needs an rng");
    if (loss) {
        if (!batch->labels)
            return sl_error(SL_EINVAL, "model: loss requested but the batch has no labels");
        for (size_t b = 0; b < B; b++)
            if (batch->labels[b] < 0 || (size_t)batch->labels[b] >= m->K)
                return sl_error(SL_EINVAL, "model: label %d of sample %zu outside [0, %zu)",
                                (int)batch->labels[b], b, m->K);
    }
    int rc = ensure_capacity(m, B);
    if (rc)
        return rc;
    m->B = B;
    if ((rc = tokenize(m, batch, B)))
        return rc;

    size_t d = m->d, N = m->N, H = m->H, NH = m->NH, d3 = 3 * d;
    const float *xin = m->x0;
    for (size_t l = 0; l < m->L; l++) {
        block_t *bk = &m->blk[l];
        layer_act_t *a = &m->act[l];
        size_t nq = nq_of(m, l), rows = B * N, rq = B * nq;
        // ln1 (B*N, d) = LN(xin)
        sl_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, xin, bk->ln1w, bk->ln1b, rows, d);
        const float *q;
        size_t ldq;
        const float *xq; /* residual rows that continue: (B, nq, d) with row stride ldx */
        size_t ldx;
        if (nq == N) {
            // qkv (B*N, 3d) = ln1 @ Wqkv^T + bqkv
            sl_linear_forward(a->qkv, d3, a->ln1, d, bk->wqkv, bk->bqkv, rows, d, d3);
            q = a->qkv;
            ldq = d3;
            xq = xin;
            ldx = d;
        } else {
            // k|v (B*N, 2d) into qkv[:, d:3d]; q1 (B, d) from the CLS rows of ln1 only
            sl_linear_forward(a->qkv + d, d3, a->ln1, d, bk->wqkv + d * d, bk->bqkv + d, rows, d, 2 * d);
            sl_linear_forward(a->q1, d, a->ln1, N * d, bk->wqkv, bk->bqkv, B, d, d);
            q = a->q1;
            ldq = d;
            xq = xin;
            ldx = N * d;
        }
        if (!m->merged)
            for (int j = 0; j < 3; j++) {
                if (!bk->la[j])
                    continue;
                if (j == 0 && nq != N)
                    sl_lora_forward(a->q1, d, a->lora_a[0], a->ln1, N * d, bk->la[0], bk->lb[0],
                                    m->lora_scale, B, d, d, m->r);
                else
                    sl_lora_forward(a->qkv + (size_t)j * d, d3, a->lora_a[j], a->ln1, d, bk->la[j], bk->lb[j],
                                    m->lora_scale, rows, d, d, m->r);
            }
        // atty (B, nq, d) = attention(q, k, v) with key mask
        sl_attention_forward(a->atty, a->probs, q, ldq, a->qkv + d, a->qkv + 2 * d, d3, m->valid, B, nq, N, d,
                             NH, m->attn_scratch);
        // attp (B*nq, d) = atty @ Wo^T + bo
        lin_fwd(m, a->attp, d, a->atty, d, bk->o.w, bk->o.b, bk->o.la, bk->o.lb, a->lora_a[LT_O], rq, d, d);
        if (drop)
            sl_dropout_forward(a->attp, a->mask1, a->attp, rq * d, p_drop, rng);
        // x1 = xq + attp
        for (size_t r = 0; r < rq; r++)
            sl_residual_forward(a->x1 + r * d, xq + r * ldx, a->attp + r * d, d);
        // MLP: hact = gelu(ln2(x1) @ Wup^T + bup); mlpo = hact @ Wdown^T + bdown
        sl_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->x1, bk->ln2w, bk->ln2b, rq, d);
        lin_fwd(m, a->hpre, H, a->ln2, d, bk->up.w, bk->up.b, bk->up.la, bk->up.lb, a->lora_a[LT_UP], rq, d,
                H);
        sl_gelu_forward(a->hact, a->hsig, a->hpre, rq * H);
        lin_fwd(m, a->mlpo, d, a->hact, H, bk->down.w, bk->down.b, bk->down.la, bk->down.lb,
                a->lora_a[LT_DOWN], rq, H, d);
        if (drop)
            sl_dropout_forward(a->mlpo, a->mask2, a->mlpo, rq * d, p_drop, rng);
        sl_residual_forward(a->xout, a->x1, a->mlpo, rq * d);
        xin = a->xout;
    }
    // final LN and pooling: CLS rows (B, d) or mean over valid tokens of (B, N, d)
    if (m->pool_cls) {
        sl_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, xin, m->lnfw, m->lnfb, B, d);
        memcpy(m->pooled, m->lnf, B * d * sizeof(float));
    } else {
        sl_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, xin, m->lnfw, m->lnfb, B * N, d);
        sl_pool_mean_forward(m->pooled, m->lnf, m->valid, B, N, d);
    }
    // logits (B, K) = pooled @ Whead^T + bhead
    sl_linear_forward(m->logits, m->K, m->pooled, d, m->headw, m->headb, B, d, m->K);
    m->dropout_on = drop;
    if (loss) {
        memcpy(m->labels, batch->labels, B * sizeof(int32_t));
        m->eps = (float)m->cfg.train.label_smoothing;
        double l = sl_crossentropy_forward(m->ce_probs, m->logits, m->labels, B, m->K, m->eps);
        *loss = (float)l;
        m->have_ce = 1;
    }
    return 0;
}

/* ---- backward --------------------------------------------------------------------------- */

/* Backward of lin_fwd: din (rows, n_in) [ld_din] += ..., weight/LoRA grads where trainable. */
static void lin_bwd(sl_model_t *m, float *din, size_t ld_din, const float *dout, size_t ld_dout,
                    const float *inp, size_t ld_inp, const float *w, float *gw, float *gb, const float *la,
                    const float *lb, float *gla, float *glb, const float *la_act, size_t rows, size_t n_in,
                    size_t n_out)
{
    sl_linear_backward(din, ld_din, gw, gb, dout, ld_dout, inp, ld_inp, w, rows, n_in, n_out);
    if (la)
        sl_lora_backward(din, ld_din, gla, glb, m->dla, dout, ld_dout, inp, ld_inp, la_act, la, lb,
                         m->lora_scale, rows, n_in, n_out, m->r);
}

static int block_has_lora(const block_t *b)
{
    return b->la[0] || b->la[1] || b->la[2] || b->o.la || b->up.la || b->down.la;
}

static void tokenizer_backward(sl_model_t *m, const float *dx0, size_t B)
{
    size_t d = m->d, N = m->N;
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < d; c++)
            m->gcls[c] += dx0[b * N * d + c];
    for (size_t k = 0; k < m->M; k++) {
        tokzr_t *t = &m->tok[k];
        size_t n = t->n_tok;
        // gather dtok (B*n, d); absent / padding tokens carry exactly zero gradient
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < n; j++) {
                size_t row = b * N + t->tok_off + j;
                float *dt = m->tokbuf + (b * n + j) * d;
                if (!m->valid[row]) {
                    memset(dt, 0, d * sizeof(float));
                    continue;
                }
                const float *s = dx0 + row * d;
                memcpy(dt, s, d * sizeof(float));
                for (size_t c = 0; c < d; c++) {
                    t->gmod[c] += s[c];
                    t->gpos[j * d + c] += s[c];
                }
            }
        if (t->kind == SL_MOD_TEXT)
            sl_embedding_backward(t->gemb, m->text_idx[k], m->tokbuf, B * n, d);
        else
            sl_linear_backward(NULL, 0, t->gprojw, t->gprojb, m->tokbuf, d, m->patches[k], t->in_dim,
                               t->projw, B * n, t->in_dim, d);
    }
}

static int backward_one(sl_model_t *m)
{
    if (!m->have_ce)
        return sl_error(SL_ESTATE, "model: backward needs a forward with a loss first");
    if (m->merged)
        return sl_error(SL_ESTATE, "model: backward with merged LoRA weights (unmerge first)");
    m->have_ce = 0;
    size_t B = m->B, d = m->d, N = m->N, H = m->H, NH = m->NH, K = m->K, d3 = 3 * d;
    int full = m->mode == SL_TRAIN_FULL;

    // logits -> head
    memset(m->dlogits, 0, B * K * sizeof(float));
    sl_crossentropy_backward(m->dlogits, m->ce_probs, m->labels, B, K, m->eps, m->dloss);
    /* lowest block that has trainable parameters (L = none below the head) */
    size_t lowest = m->L;
    for (size_t l = 0; l < m->L; l++)
        if (full || block_has_lora(&m->blk[l])) {
            lowest = l;
            break;
        }
    int need_below_head = lowest < m->L;
    memset(m->dpooled, 0, B * d * sizeof(float));
    sl_linear_backward(need_below_head ? m->dpooled : NULL, d, m->gheadw, m->gheadb, m->dlogits, K, m->pooled,
                       d, m->headw, B, d, K);
    if (!need_below_head)
        return 0;

    // pooling and final LN -> dx (rows of the last layer's output)
    float *dx = m->dxa, *dxn = m->dxb;
    size_t rf = m->pool_cls ? B : B * N;
    if (m->pool_cls) {
        memcpy(m->dlnf, m->dpooled, B * d * sizeof(float));
    } else {
        memset(m->dlnf, 0, rf * d * sizeof(float));
        sl_pool_mean_backward(m->dlnf, m->dpooled, m->valid, B, N, d);
    }
    const float *xlast = m->act[m->L - 1].xout;
    memset(dx, 0, rf * d * sizeof(float));
    sl_layernorm_backward(dx, m->glnfw, m->glnfb, m->dlnf, xlast, m->lnfw, m->lnf_mean, m->lnf_rstd, rf, d);

    for (size_t l = m->L; l-- > 0;) {
        block_t *bk = &m->blk[l];
        layer_act_t *a = &m->act[l];
        size_t nq = nq_of(m, l), rows = B * N, rq = B * nq;
        int need_in = full || l > lowest; /* gradient w.r.t. this block's input needed below */
        const float *xin = l == 0 ? m->x0 : m->act[l - 1].xout;
        int attn_needed = need_in || full || bk->la[0] || bk->la[1] || bk->la[2] || bk->o.la;

        // MLP: xout = x1 + drop(mlpo)
        memcpy(m->dx1, dx, rq * d * sizeof(float));
        const float *dmo = dx;
        if (m->dropout_on) {
            memset(m->dtmp, 0, rq * d * sizeof(float));
            sl_dropout_backward(m->dtmp, a->mask2, dx, rq * d);
            dmo = m->dtmp;
        }
        memset(m->dact, 0, rq * H * sizeof(float));
        lin_bwd(m, m->dact, H, dmo, d, a->hact, H, bk->down.w, bk->down.gw, bk->down.gb, bk->down.la,
                bk->down.lb, bk->down.gla, bk->down.glb, a->lora_a[LT_DOWN], rq, H, d);
        memset(m->dhpre, 0, rq * H * sizeof(float));
        sl_gelu_backward(m->dhpre, a->hpre, a->hsig, m->dact, rq * H);
        int need_mid = attn_needed;
        if (need_mid)
            memset(m->dln2, 0, rq * d * sizeof(float));
        lin_bwd(m, need_mid ? m->dln2 : NULL, d, m->dhpre, H, a->ln2, d, bk->up.w, bk->up.gw, bk->up.gb,
                bk->up.la, bk->up.lb, bk->up.gla, bk->up.glb, a->lora_a[LT_UP], rq, d, H);
        if (!need_mid)
            break;
        sl_layernorm_backward(m->dx1, bk->gln2w, bk->gln2b, m->dln2, a->x1, bk->ln2w, a->ln2_mean,
                              a->ln2_rstd, rq, d);

        // attention: x1 = xq + drop(attp)
        const float *dattp = m->dx1;
        if (m->dropout_on) {
            memset(m->dtmp, 0, rq * d * sizeof(float));
            sl_dropout_backward(m->dtmp, a->mask1, m->dx1, rq * d);
            dattp = m->dtmp;
        }
        memset(m->datty, 0, rq * d * sizeof(float));
        lin_bwd(m, m->datty, d, dattp, d, a->atty, d, bk->o.w, bk->o.gw, bk->o.gb, bk->o.la, bk->o.lb,
                bk->o.gla, bk->o.glb, a->lora_a[LT_O], rq, d, d);
        int qkv_needed = need_in || full || bk->la[0] || bk->la[1] || bk->la[2];
        if (qkv_needed) {
            memset(m->dqkv, 0, rows * d3 * sizeof(float));
            float *dq;
            size_t ldq;
            const float *q;
            if (nq == N) {
                dq = m->dqkv;
                ldq = d3;
                q = a->qkv;
            } else {
                memset(m->dq1, 0, B * d * sizeof(float));
                dq = m->dq1;
                ldq = d;
                q = a->q1;
            }
            sl_attention_backward(dq, m->dqkv + d, m->dqkv + 2 * d, m->datty, q, ldq, a->qkv + d,
                                  a->qkv + 2 * d, d3, a->probs, m->valid, B, nq, N, d, NH, m->attn_scratch);
            float *dln1 = need_in ? m->dln : NULL;
            if (dln1)
                memset(dln1, 0, rows * d * sizeof(float));
            if (nq == N) {
                sl_linear_backward(dln1, d, bk->gwqkv, bk->gbqkv, m->dqkv, d3, a->ln1, d, bk->wqkv, rows, d,
                                   d3);
                for (int j = 0; j < 3; j++)
                    if (bk->la[j])
                        sl_lora_backward(dln1, d, bk->gla[j], bk->glb[j], m->dla, m->dqkv + (size_t)j * d, d3,
                                         a->ln1, d, a->lora_a[j], bk->la[j], bk->lb[j], m->lora_scale, rows,
                                         d, d, m->r);
            } else {
                sl_linear_backward(dln1, d, bk->gwqkv ? bk->gwqkv + d * d : NULL,
                                   bk->gbqkv ? bk->gbqkv + d : NULL, m->dqkv + d, d3, a->ln1, d,
                                   bk->wqkv + d * d, rows, d, 2 * d);
                sl_linear_backward(dln1, N * d, bk->gwqkv, bk->gbqkv, m->dq1, d, a->ln1, N * d, bk->wqkv, B,
                                   d, d);
                for (int j = 0; j < 3; j++) {
                    if (!bk->la[j])
                        continue;
                    if (j == 0)
                        sl_lora_backward(dln1, N * d, bk->gla[0], bk->glb[0], m->dla, m->dq1, d, a->ln1,
                                         N * d, a->lora_a[0], bk->la[0], bk->lb[0], m->lora_scale, B, d, d,
                                         m->r);
                    else
                        sl_lora_backward(dln1, d, bk->gla[j], bk->glb[j], m->dla, m->dqkv + (size_t)j * d, d3,
                                         a->ln1, d, a->lora_a[j], bk->la[j], bk->lb[j], m->lora_scale, rows,
                                         d, d, m->r);
                }
            }
        }
        if (!need_in)
            break;
        // dxin (B*N, d) = residual path (CLS rows only when nq == 1) + LN1 backward
        if (nq == N) {
            memcpy(dxn, m->dx1, rows * d * sizeof(float));
        } else {
            memset(dxn, 0, rows * d * sizeof(float));
            for (size_t b = 0; b < B; b++)
                memcpy(dxn + b * N * d, m->dx1 + b * d, d * sizeof(float));
        }
        if (need_in)
            sl_layernorm_backward(dxn, bk->gln1w, bk->gln1b, m->dln, xin, bk->ln1w, a->ln1_mean, a->ln1_rstd,
                                  rows, d);
        float *tmp = dx;
        dx = dxn;
        dxn = tmp;
        if (l == 0 && full)
            tokenizer_backward(m, dx, B);
    }
    return 0;
}

/* ---- batch split across threads ----------------------------------------------------------- */

typedef struct {
    sl_model_t *w;
    sl_batch_t sub;
    int training, want_loss, backward;
    float loss;
    int rc;
    char err[256];
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    j->rc = j->backward ? backward_one(j->w)
                        : forward_one(j->w, &j->sub, j->training, NULL, j->want_loss ? &j->loss : NULL);
    if (j->rc)
        snprintf(j->err, sizeof j->err, "%s", sl_last_error()); /* error messages are per thread */
    return NULL;
}

/* Run jobs[0] here and the others on their own threads; first error wins. */
static int run_jobs(job_t *jobs, size_t n)
{
    pthread_t th[64];
    int started[64] = {0};
    for (size_t i = 1; i < n; i++)
        started[i] = pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0;
    run_job(&jobs[0]);
    for (size_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            run_job(&jobs[i]); /* no thread available: run it here */
    }
    for (size_t i = 0; i < n; i++)
        if (jobs[i].rc)
            return sl_error(jobs[i].rc, "%s", jobs[i].err);
    return 0;
}

static int ensure_workers(sl_model_t *m, size_t n)
{
    if (m->n_workers >= n)
        return 0;
    sl_model_t **w = realloc(m->workers, n * sizeof *w);
    if (!w)
        return sl_error(SL_ENOMEM, "model: out of memory");
    m->workers = w;
    while (m->n_workers < n) {
        int rc = make_clone(m, &m->workers[m->n_workers], 1);
        if (rc)
            return rc;
        m->n_workers++;
    }
    return 0;
}

/* Forward split into n contiguous row ranges, one worker each (no dropout: one rng stream
 * cannot be shared, so training with dropout stays on one thread). */
static int forward_split(sl_model_t *m, const sl_batch_t *batch, size_t n, int training, float *loss)
{
    size_t B = batch->size, K = m->K;
    int rc = ensure_workers(m, n);
    if (rc)
        return rc;
    if (m->par_cap < B) {
        float *pl = realloc(m->par_logits, B * K * sizeof(float));
        if (!pl)
            return sl_error(SL_ENOMEM, "model: out of memory");
        m->par_logits = pl;
        m->par_cap = B;
    }
    job_t jobs[64];
    size_t row = 0;
    for (size_t i = 0; i < n; i++) {
        size_t rows = B / n + (i < B % n ? 1 : 0);
        job_t *j = &jobs[i];
        memset(j, 0, sizeof *j);
        j->w = m->workers[i];
        j->w->merged = m->merged;
        j->sub = *batch;
        for (size_t k = 0; k < m->M; k++)
            j->sub.x[k] = batch->x[k] + row * sl_modality_values(&m->schema.modalities[k]);
        j->sub.present = batch->present ? batch->present + row * m->M : NULL;
        j->sub.labels = batch->labels ? batch->labels + row : NULL;
        j->sub.size = rows;
        j->training = training;
        j->want_loss = loss != NULL;
        m->par_rows[i] = rows;
        row += rows;
    }
    if ((rc = run_jobs(jobs, n)))
        return rc;
    double total = 0;
    row = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(m->par_logits + row * K, m->workers[i]->logits, m->par_rows[i] * K * sizeof(float));
        total += (double)jobs[i].loss * (double)m->par_rows[i];
        row += m->par_rows[i];
    }
    if (loss)
        *loss = (float)(total / (double)B);
    m->B = B;
    m->par_active = 1;
    m->have_ce = loss != NULL;
    return 0;
}

static int backward_split(sl_model_t *m)
{
    size_t n = 0;
    job_t jobs[64];
    for (; n < m->n_workers && n < 64 && m->par_rows[n]; n++) {
        sl_model_t *w = m->workers[n];
        sl_model_zero_grad(w);
        w->dloss = (float)m->par_rows[n] / (float)m->B; /* d(batch mean)/d(worker mean) */
        memset(&jobs[n], 0, sizeof jobs[n]);
        jobs[n].w = w;
        jobs[n].backward = 1;
    }
    int rc = run_jobs(jobs, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const float *g = m->workers[i]->grad;
        for (size_t j = 0; j < m->n_train; j++)
            m->grad[j] += g[j];
    }
    return 0;
}

int sl_model_forward(sl_model_t *m, const sl_batch_t *batch, int training, sl_rng_t *rng, float *loss)
{
    if (!m || !batch)
        return sl_error(SL_EINVAL, "sl_model_forward: NULL argument");
    size_t n = m->n_threads < batch->size ? m->n_threads : batch->size;
    int drop = training && m->cfg.model.dropout > 0;
    for (size_t i = 0; i < 64; i++)
        m->par_rows[i] = 0;
    if (n > 1 && !drop) {
        if (!batch->schema || !same_schema(batch->schema, &m->schema))
            return sl_error(SL_EMISMATCH, "model: batch schema differs from the model's schema");
        m->have_ce = 0;
        m->par_active = 0;
        return forward_split(m, batch, n, training, loss);
    }
    return forward_one(m, batch, training, rng, loss);
}

int sl_model_backward(sl_model_t *m)
{
    if (!m)
        return sl_error(SL_EINVAL, "sl_model_backward: NULL model");
    if (!m->par_active)
        return backward_one(m);
    if (!m->have_ce)
        return sl_error(SL_ESTATE, "model: backward needs a forward with a loss first");
    if (m->merged)
        return sl_error(SL_ESTATE, "model: backward with merged LoRA weights (unmerge first)");
    m->have_ce = 0;
    return backward_split(m);
}

/* ---- LoRA merge ------------------------------------------------------------------------- */

typedef struct {
    float *w;
    const float *a, *b;
    size_t out, in;
} merge_t;

static size_t merge_list(sl_model_t *m, merge_t *out)
{
    size_t n = 0, d = m->d, H = m->H;
    for (size_t l = 0; l < m->L; l++) {
        block_t *bk = &m->blk[l];
        for (int j = 0; j < 3; j++)
            if (bk->la[j])
                out[n++] = (merge_t){bk->wqkv + (size_t)j * d * d, bk->la[j], bk->lb[j], d, d};
        if (bk->o.la)
            out[n++] = (merge_t){bk->o.w, bk->o.la, bk->o.lb, d, d};
        if (bk->up.la)
            out[n++] = (merge_t){bk->up.w, bk->up.la, bk->up.lb, H, d};
        if (bk->down.la)
            out[n++] = (merge_t){bk->down.w, bk->down.la, bk->down.lb, d, H};
    }
    return n;
}

int sl_model_merge_lora(sl_model_t *m)
{
    if (!m)
        return sl_error(SL_EINVAL, "sl_model_merge_lora: NULL model");
    if (!m->lora_on)
        return 0;
    if (m->is_clone)
        return sl_error(SL_ESTATE, "model: cannot merge LoRA into a clone (its base weights are shared)");
    if (m->merged)
        return sl_error(SL_ESTATE, "model: LoRA already merged");
    merge_t *list = calloc(m->L * LT_COUNT, sizeof *list);
    if (!list)
        return sl_error(SL_ENOMEM, "model: out of memory");
    size_t n = merge_list(m, list), tot = 0;
    for (size_t i = 0; i < n; i++)
        tot += list[i].out * list[i].in;
    free(m->merge_backup);
    m->merge_backup = malloc((tot ? tot : 1) * sizeof(float));
    if (!m->merge_backup) {
        free(list);
        return sl_error(SL_ENOMEM, "model: out of memory");
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        merge_t *t = &list[i];
        memcpy(m->merge_backup + off, t->w, t->out * t->in * sizeof(float));
        off += t->out * t->in;
        // w (out, in) += scale * b (out, r) @ a (r, in)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)t->out, (blasint)t->in, (blasint)m->r,
                    m->lora_scale, t->b, (blasint)m->r, t->a, (blasint)t->in, 1.0f, t->w, (blasint)t->in);
    }
    free(list);
    m->merged = 1;
    return 0;
}

int sl_model_unmerge_lora(sl_model_t *m)
{
    if (!m)
        return sl_error(SL_EINVAL, "sl_model_unmerge_lora: NULL model");
    if (!m->lora_on)
        return 0;
    if (!m->merged)
        return sl_error(SL_ESTATE, "model: LoRA is not merged");
    merge_t *list = calloc(m->L * LT_COUNT, sizeof *list);
    if (!list)
        return sl_error(SL_ENOMEM, "model: out of memory");
    size_t n = merge_list(m, list), off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(list[i].w, m->merge_backup + off, list[i].out * list[i].in * sizeof(float));
        off += list[i].out * list[i].in;
    }
    free(list);
    free(m->merge_backup);
    m->merge_backup = NULL;
    m->merged = 0;
    return 0;
}
