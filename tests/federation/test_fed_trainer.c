/* The real model in a federation, in process: the engine and 4 clients whose callbacks are
 * client/trainer (sl_train_local / sl_evaluate on a tiny LoRA transformer and a synthetic
 * 3-class time-series task), messages routed directly. Checks: the run completes, the
 * trainable vector moves, training loss is finite and falls, federated and final
 * evaluations are reported, FedProx runs, and two runs with the same seed give the
 * bit-identical model. */
#include "client/client.h"
#include "coordinator/engine.h"
#include "core/layout.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/model.h"
#include "core/train.h"
#include "support/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NCL 4

/* ---- a train/evaluate bridge over example sources (cli uses client/trainer over a dataset) ---- */

typedef struct {
    sl_model_t *model;
    const sl_config_t *cfg;
    uint64_t client_id;
    sl_example_source_t train;
    sl_example_source_t test;
} sl_local_trainer_t;

/* global (dim) -> the model's trainable vector. */
static int load_global(sl_local_trainer_t *t, const float *global, size_t dim, float **w)
{
    size_t n = 0;
    *w = sl_model_trainable(t->model, &n);
    if (n != dim)
        return sl_error(SL_EMISMATCH,
                        "client %llu: global vector has %zu values, the model's trainable vector %zu",
                        (unsigned long long)t->client_id, dim, n);
    memcpy(*w, global, dim * sizeof **w);
    return 0;
}

static int eval_split(sl_local_trainer_t *t, size_t batch, sl_eval_info_t *out)
{
    memset(out, 0, sizeof *out);
    if (t->test.count == 0)
        return 0;
    const sl_schema_t *schema = sl_model_schema(t->model);
    sl_metrics_t mt;
    int rc = sl_metrics_init(&mt, schema->n_classes);
    if (rc)
        return rc;
    rc = sl_evaluate(t->model, &t->test, batch ? batch : 64, &mt);
    if (!rc) {
        out->examples = mt.examples;
        out->loss = mt.loss;
        out->accuracy = mt.accuracy;
        out->macro_f1 = mt.macro_f1;
        if (!isfinite(out->loss))
            rc = sl_error(SL_ENOTFINITE, "client %llu: evaluation loss is not finite",
                          (unsigned long long)t->client_id);
    }
    sl_metrics_free(&mt);
    return rc;
}

static int lt_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                    sl_update_info_t *info)
{
    sl_local_trainer_t *t = ctx;
    size_t n = 0;
    sl_model_trainable(t->model, &n);
    float *w;
    int rc = load_global(t, global, n, &w);
    if (rc)
        return rc;
    if (t->train.count == 0)
        return sl_error(SL_EINVAL, "client %llu: no local training examples",
                        (unsigned long long)t->client_id);
    if (task->info.want_eval && t->test.count > 0) {
        sl_eval_info_t ev;
        if ((rc = eval_split(t, task->info.batch_size, &ev)))
            return rc;
        info->has_eval = 1;
        info->eval_examples = ev.examples;
        info->eval_loss = ev.loss;
        info->eval_accuracy = ev.accuracy;
    }
    sl_config_t local = *t->cfg; /* the TASK's training configuration wins */
    local.train.lr = task->info.lr;
    local.train.local_epochs = (int64_t)task->info.local_epochs;
    local.train.local_steps = (int64_t)task->info.local_steps;
    local.train.batch_size = (int64_t)task->info.batch_size;
    local.train.fedprox_mu = task->info.fedprox_mu;
    sl_train_stats_t st;
    memset(&st, 0, sizeof st);
    rc = sl_train_local(t->model, &local, &t->train, task->round, t->client_id,
                        task->info.fedprox_mu > 0 ? global : NULL, &st);
    if (rc)
        return rc;
    /* delta (dim) = trained (dim) - global (dim) */
    for (size_t j = 0; j < n; j++)
        delta[j] = w[j] - global[j];
    info->examples = t->train.count; /* FedAvg weight n_k: the local dataset size */
    info->steps = st.steps;
    info->train_loss = st.loss;
    info->seconds = st.seconds;
    if (!isfinite(st.loss) || st.loss < 0)
        return sl_error(SL_ENOTFINITE, "client %llu: training loss %g", (unsigned long long)t->client_id,
                        st.loss);
    return 0;
}

static int lt_evaluate(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)round;
    sl_local_trainer_t *t = ctx;
    float *w;
    int rc = load_global(t, global, dim, &w);
    if (rc)
        return rc;
    return eval_split(t, (size_t)t->cfg->train.batch_size, out);
}

static void lt_client_opts(sl_local_trainer_t *t, sl_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    size_t n = 0;
    sl_model_trainable(t->model, &n);
    o->client_id = t->client_id;
    o->dim = n;
    o->layout = sl_model_layout_hash(t->model);
    o->train_examples = t->train.count;
    o->test_examples = t->test.count;
    const sl_schema_t *s = sl_model_schema(t->model);
    o->n_modalities = s->n_modalities < SL_WIRE_MAX_MODS ? s->n_modalities : SL_WIRE_MAX_MODS;
    for (size_t i = 0; i < o->n_modalities; i++)
        o->modalities[i] = s->modalities[i].name;
    o->ctx = t;
    o->train = lt_train;
    o->evaluate = lt_evaluate;
}

#define T 16

typedef struct {
    uint64_t client;
    size_t offset; /* examples are (client, offset + idx) */
} src_ctx_t;

static int fill(void *ctx, const size_t *idx, size_t n, sl_batch_t *b)
{
    const src_ctx_t *s = ctx;
    for (size_t i = 0; i < n; i++) {
        size_t e = s->offset + idx[i];
        int label = (int)(e % 3);
        float *x = b->x[0] + i * T * 3;
        for (size_t t = 0; t < T; t++)
            for (size_t c = 0; c < 3; c++) {
                uint64_t h = (e * 2654435761u + t * 97 + c * 13 + s->client * 7919) % 1000;
                x[t * 3 + c] = (float)(sin(0.4 * (double)(label + 1) * (double)t + (double)c) +
                                       0.1 * ((double)h / 1000.0 - 0.5));
            }
        b->present[i] = 1;
        b->labels[i] = label;
    }
    b->size = n;
    return 0;
}

typedef struct {
    int to_engine, c;
    uint8_t *h, *p;
    size_t hl, pl;
} qmsg_t;
#define QCAP 4096
static qmsg_t queue[QCAP];
static size_t qhead, qtail;

static void push(int to_engine, int c, const void *h, size_t hl, const void *p, size_t pl)
{
    CHECK(qtail - qhead < QCAP);
    qmsg_t *m = &queue[qtail++ % QCAP];
    m->to_engine = to_engine;
    m->c = c;
    m->h = malloc(hl);
    memcpy(m->h, h, hl);
    m->hl = hl;
    m->pl = pl;
    m->p = pl ? aligned_alloc(16, (pl + 15) / 16 * 16) : NULL;
    if (pl)
        memcpy(m->p, p, pl);
}

static void enqueue_engine(sl_engine_t *e)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(e, &o);
    for (size_t k = 0; k < n; k++)
        push(0, o[k].peer.id[0] - 1, o[k].header, o[k].header_len, o[k].payload, o[k].payload_len);
}

static void enqueue_client(sl_client_t *c, int i)
{
    const sl_client_out_t *o;
    size_t n = sl_client_outbox(c, &o);
    for (size_t k = 0; k < n; k++)
        push(1, i, o[k].header, o[k].header_len, o[k].payload, o[k].payload_len);
}

typedef struct {
    float global[4096];
    size_t dim;
    uint64_t rounds;
    double first_loss, last_loss;
    double final_acc;
    uint64_t eval_examples;
} outcome_t;

static int round_end(void *ctx, sl_round_report_t *rep, const float *g, size_t dim)
{
    (void)g, (void)dim;
    outcome_t *o = ctx;
    if (rep->round == 1)
        o->first_loss = rep->train_loss;
    o->last_loss = rep->train_loss;
    CHECK(isfinite(rep->train_loss));
    CHECK(!isnan(rep->accuracy) && rep->eval_examples > 0); /* eval_every = 1 */
    return 0;
}

static void run(double mu, outcome_t *out)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.run.seed = 11;
    cfg.model.d_model = 16;
    cfg.model.layers = 1;
    cfg.model.heads = 2;
    cfg.model.patch_len = 4;
    cfg.model.lora_rank = 2;
    cfg.model.dropout = 0;
    cfg.train.lr = 0.01;
    cfg.train.batch_size = 8;
    cfg.train.local_epochs = 2;
    cfg.train.fedprox_mu = mu;
    cfg.federation.rounds = 4;
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = NCL;
    cfg.federation.eval_every = 1;
    cfg.federation.server_lr = 1;
    sl_schema_t schema;
    memset(&schema, 0, sizeof schema);
    schema.n_modalities = 1;
    strcpy(schema.modalities[0].name, "acc");
    schema.modalities[0].kind = SL_MOD_TIMESERIES;
    schema.modalities[0].dims[0] = T;
    schema.modalities[0].dims[1] = 3;
    schema.n_classes = 3;

    sl_model_t *base = NULL, *models[NCL] = {0};
    int rc = sl_model_new(&base, &cfg, &schema);
    CHECK_MSG(rc == 0, "model: %s", sl_last_error());
    if (rc)
        return;
    size_t dim = 0;
    float *init = sl_model_trainable(base, &dim);
    CHECK(dim > 0 && dim <= 4096);
    sl_engine_t *e = NULL;
    sl_engine_opts_t eo = {.cfg = &cfg,
                           .dim = dim,
                           .init = init,
                           .layout = sl_model_layout_hash(base),
                           .start_clients = NCL,
                           .final_eval = 1};
    eo.hooks.round_end = round_end;
    eo.hooks.hook_ctx = out;
    CHECK(sl_engine_new(&e, &eo) == 0);
    sl_local_trainer_t lt[NCL];
    src_ctx_t sc[NCL][2];
    sl_client_t *cl[NCL] = {0};
    for (int i = 0; i < NCL; i++) {
        CHECK(sl_model_clone_shared(base, &models[i]) == 0);
        sc[i][0] = (src_ctx_t){.client = (uint64_t)i + 1, .offset = 0};
        sc[i][1] = (src_ctx_t){.client = (uint64_t)i + 1, .offset = 100000};
        lt[i] = (sl_local_trainer_t){.model = models[i],
                                     .cfg = &cfg,
                                     .client_id = (uint64_t)i + 1,
                                     .train = {.ctx = &sc[i][0], .count = 24 + 6 * (size_t)i, .fill = fill},
                                     .test = {.ctx = &sc[i][1], .count = 12, .fill = fill}};
        sl_client_opts_t co;
        lt_client_opts(&lt[i], &co);
        CHECK(co.dim == dim && co.layout == eo.layout && co.n_modalities == 1);
        CHECK(sl_client_new(&cl[i], &co) == 0);
    }
    /* direct routing through one FIFO: engine <-> clients, instant delivery, fixed order */
    double now = 0;
    for (int i = 0; i < NCL; i++) {
        CHECK(sl_client_start(cl[i], now) == 0);
        enqueue_client(cl[i], i);
    }
    while (qhead < qtail && sl_engine_state(e) != SL_ENGINE_DONE && sl_engine_state(e) != SL_ENGINE_FAILED) {
        qmsg_t m = queue[qhead++ % QCAP];
        now += 0.001;
        if (m.to_engine) {
            sl_peer_t p = {.len = 1, .id = {(uint8_t)(m.c + 1)}};
            rc = sl_engine_on_message(e, &p, m.h, m.hl, m.p, m.pl, now);
            CHECK_MSG(rc == 0, "engine: %s", sl_last_error());
            enqueue_engine(e);
            CHECK(sl_engine_tick(e, now) == 0);
            enqueue_engine(e);
        } else {
            rc = sl_client_on_message(cl[m.c], m.h, m.hl, m.p, m.pl, now);
            CHECK_MSG(rc == 0, "client: %s", sl_last_error());
            enqueue_client(cl[m.c], m.c);
        }
        free(m.h);
        free(m.p);
    }
    while (qhead < qtail) { /* the BYEs */
        qmsg_t m = queue[qhead++ % QCAP];
        if (!m.to_engine)
            CHECK(sl_client_on_message(cl[m.c], m.h, m.hl, m.p, m.pl, now) == 0);
        free(m.h);
        free(m.p);
    }
    CHECK_EQ(sl_engine_state(e), SL_ENGINE_DONE);
    out->rounds = sl_engine_rounds_completed(e);
    memcpy(out->global, sl_engine_global(e, NULL), dim * sizeof(float));
    out->dim = dim;
    out->final_acc = sl_engine_final_eval(e)->accuracy;
    out->eval_examples = sl_engine_final_eval(e)->examples;
    double moved = 0;
    for (size_t j = 0; j < dim; j++)
        moved += fabs((double)out->global[j] - (double)init[j]);
    CHECK(moved > 0);
    for (int i = 0; i < NCL; i++) {
        sl_client_destroy(&cl[i]);
        sl_model_destroy(&models[i]);
    }
    sl_engine_destroy(&e);
    sl_model_destroy(&base);
}

int main(void)
{
    sl_log_set_level(getenv("SL_TEST_LOG") ? SL_LOG_DEBUG : SL_LOG_ERROR);
    static outcome_t a, b, c;
    run(0, &a);
    CHECK_EQ(a.rounds, 4);
    CHECK_MSG(a.last_loss < a.first_loss, "train loss %g -> %g", a.first_loss, a.last_loss);
    CHECK_EQ(a.eval_examples, NCL * 12);
    CHECK(a.final_acc >= 0 && a.final_acc <= 1);
    run(0, &b);
    CHECK(a.dim == b.dim && memcmp(a.global, b.global, a.dim * sizeof(float)) == 0); /* deterministic */
    run(0.1, &c);                                                                    /* FedProx */
    CHECK_EQ(c.rounds, 4);
    CHECK(memcmp(a.global, c.global, a.dim * sizeof(float)) != 0);
    return check_summary("test_fed_trainer");
}
