/* core/train: the local training loop on a tiny synthetic source reaches high accuracy,
 * is deterministic by seed, honours step budgets and FedProx; sl_evaluate matches a
 * by-hand evaluation; the time-series augmentation preserves what it should. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/optim.h"
#include "core/train.h"
#include "support/check.h"

#define T_LEN 16
#define CH 3
#define NCLS 3

/* Synthetic examples: class k is a sine of frequency k+1 on channel 0, a level k-1 on
 * channel 1, plus noise; example i is drawn from its own seeded stream, so it is a pure
 * function of (offset + i). */
typedef struct {
    size_t offset;
} synth_t;

static int synth_fill(void *ctx, const size_t *idx, size_t n, sl_batch_t *batch)
{
    const synth_t *s = ctx;
    for (size_t r = 0; r < n; r++) {
        size_t i = s->offset + idx[r];
        sl_rng_t rng;
        sl_rng_init(&rng, 7, "synthetic", i, 0);
        int32_t k = (int32_t)(i % NCLS);
        float *x = batch->x[0] + r * T_LEN * CH; /* (T, C) */
        double phase = 6.283 * sl_rng_uniform(&rng);
        for (size_t t = 0; t < T_LEN; t++) {
            x[t * CH + 0] = (float)(sin(phase + (double)(k + 1) * 0.4 * (double)t) + 0.3 * sl_rng_normal(&rng));
            x[t * CH + 1] = (float)((k - 1) * 0.5 + 0.3 * sl_rng_normal(&rng));
            x[t * CH + 2] = (float)(0.3 * sl_rng_normal(&rng));
        }
        batch->present[r] = 1;
        batch->labels[r] = k;
    }
    batch->size = n;
    return 0;
}

static sl_schema_t schema(void)
{
    sl_schema_t s;
    memset(&s, 0, sizeof s);
    s.n_modalities = 1;
    s.n_classes = NCLS;
    snprintf(s.modalities[0].name, SL_NAME_MAX, "acc");
    s.modalities[0].kind = SL_MOD_TIMESERIES;
    s.modalities[0].dims[0] = T_LEN;
    s.modalities[0].dims[1] = CH;
    return s;
}

static void config(sl_config_t *cfg)
{
    sl_config_defaults(cfg);
    cfg->model.d_model = 16;
    cfg->model.layers = 1;
    cfg->model.heads = 2;
    cfg->model.mlp_ratio = 2;
    cfg->model.patch_len = 4;
    cfg->train.mode = SL_TRAIN_FULL;
    cfg->train.optimizer = SL_OPT_ADAMW;
    cfg->train.lr = 0.01;
    cfg->train.batch_size = 16;
    cfg->train.local_epochs = 8;
    cfg->run.seed = 5;
}

static synth_t train_ctx = {0}, test_ctx = {100000};
static sl_example_source_t train_src = {&train_ctx, 192, synth_fill};
static sl_example_source_t test_src = {&test_ctx, 150, synth_fill};

static double evaluate(sl_model_t *m)
{
    sl_metrics_t mt;
    if (sl_metrics_init(&mt, NCLS) != 0)
        return -1;
    int rc = sl_evaluate(m, &test_src, 32, &mt);
    CHECK_EQ(rc, 0);
    CHECK_EQ(mt.examples, 150);
    double acc = mt.accuracy;
    sl_metrics_free(&mt);
    return acc;
}

static void test_learns(int optimizer, double lr, int schedule)
{
    sl_schema_t s = schema();
    sl_config_t cfg;
    config(&cfg);
    cfg.train.optimizer = optimizer;
    cfg.train.lr = lr;
    cfg.train.schedule = schedule;
    cfg.train.warmup_steps = schedule == SL_SCHED_COSINE ? 5 : 0;
    cfg.train.grad_clip = 1.0;
    sl_model_t *m = NULL;
    CHECK_EQ(sl_model_new(&m, &cfg, &s), 0);
    if (!m)
        return;
    double before = evaluate(m);
    sl_train_stats_t st;
    CHECK_EQ(sl_train_local(m, &cfg, &train_src, 0, 0, NULL, &st), 0);
    CHECK_EQ(st.steps, 8 * 12);
    CHECK_EQ(st.examples, 8 * 192);
    CHECK(isfinite(st.loss) && st.loss > 0);
    double after = evaluate(m);
    printf("optimizer %d lr %g schedule %d: accuracy %.3f -> %.3f, train loss %.4f\n", optimizer, lr, schedule,
           before, after, st.loss);
    CHECK_MSG(after >= 0.95, "accuracy %.3f", after);
    sl_model_destroy(&m);
}

static void test_determinism(void)
{
    sl_schema_t s = schema();
    sl_config_t cfg;
    config(&cfg);
    cfg.train.local_epochs = 2;
    cfg.model.dropout = 0.1; /* dropout draws from the seeded stream too */
    sl_model_t *a = NULL, *b = NULL, *c = NULL;
    CHECK_EQ(sl_model_new(&a, &cfg, &s), 0);
    CHECK_EQ(sl_model_new(&b, &cfg, &s), 0);
    CHECK_EQ(sl_model_new(&c, &cfg, &s), 0);
    if (!a || !b || !c)
        return;
    sl_train_stats_t sa, sb, sc;
    CHECK_EQ(sl_train_local(a, &cfg, &train_src, 3, 11, NULL, &sa), 0);
    CHECK_EQ(sl_train_local(b, &cfg, &train_src, 3, 11, NULL, &sb), 0);
    CHECK_EQ(sl_train_local(c, &cfg, &train_src, 3, 12, NULL, &sc), 0); /* another client: another order */
    size_t na, nb, nc;
    float *wa = sl_model_trainable(a, &na), *wb = sl_model_trainable(b, &nb), *wc = sl_model_trainable(c, &nc);
    CHECK(na == nb && memcmp(wa, wb, na * sizeof(float)) == 0);
    CHECK(sa.loss == sb.loss && sa.steps == sb.steps);
    CHECK(na == nc && memcmp(wa, wc, na * sizeof(float)) != 0);
    sl_model_destroy(&a);
    sl_model_destroy(&b);
    sl_model_destroy(&c);
}

static void test_budget_and_prox(void)
{
    sl_schema_t s = schema();
    sl_config_t cfg;
    config(&cfg);
    cfg.train.local_steps = 30; /* more than one pass of 12 steps */
    sl_model_t *a = NULL, *b = NULL;
    CHECK_EQ(sl_model_new(&a, &cfg, &s), 0);
    CHECK_EQ(sl_model_new(&b, &cfg, &s), 0);
    if (!a || !b)
        return;
    size_t n = 0;
    const float *init = sl_model_trainable(a, &n);
    float *w0 = malloc(n * sizeof(float));
    memcpy(w0, init, n * sizeof(float));
    sl_train_stats_t st;
    CHECK_EQ(sl_train_local(a, &cfg, &train_src, 0, 0, NULL, &st), 0);
    CHECK_EQ(st.steps, 30);
    CHECK_EQ(st.examples, 30 * 16);
    /* FedProx pulls towards the centre: a strong mu keeps w closer to w0 */
    cfg.train.fedprox_mu = 10.0;
    CHECK_EQ(sl_train_local(b, &cfg, &train_src, 0, 0, w0, &st), 0);
    float *wa = sl_model_trainable(a, &n), *wb = sl_model_trainable(b, NULL);
    double da = 0, db = 0;
    for (size_t i = 0; i < n; i++) {
        da += ((double)wa[i] - w0[i]) * ((double)wa[i] - w0[i]);
        db += ((double)wb[i] - w0[i]) * ((double)wb[i] - w0[i]);
    }
    printf("distance from the centre: plain %.4f, fedprox mu=10 %.4f\n", sqrt(da), sqrt(db));
    CHECK(db < 0.5 * da);
    /* an empty source trains nothing */
    sl_example_source_t empty = {&train_ctx, 0, synth_fill};
    CHECK_EQ(sl_train_local(a, &cfg, &empty, 0, 0, NULL, &st), 0);
    CHECK_EQ(st.steps, 0);
    CHECK_EQ(sl_train_steps_per_epoch(192, 16), 12);
    CHECK_EQ(sl_train_steps_per_epoch(193, 16), 13);
    free(w0);
    sl_model_destroy(&a);
    sl_model_destroy(&b);
}

typedef struct {
    uint64_t calls, last_step;
    size_t last_examples;
} prog_t;

static void on_progress(void *ctx, const sl_train_progress_t *p)
{
    prog_t *pr = ctx;
    pr->calls++;
    pr->last_step = p->step;
    pr->last_examples = p->examples;
}

static void test_trainer_and_evaluate(void)
{
    sl_schema_t s = schema();
    sl_config_t cfg;
    config(&cfg);
    sl_model_t *m = NULL;
    CHECK_EQ(sl_model_new(&m, &cfg, &s), 0);
    if (!m)
        return;
    sl_trainer_t *t = NULL;
    CHECK_EQ(sl_trainer_new(&t, m, &cfg, 24, 0, 0), 0);
    prog_t pr = {0};
    sl_trainer_set_progress(t, on_progress, &pr);
    sl_rng_t order;
    sl_rng_init(&order, 1, "shuffle", 0, 0);
    sl_train_stats_t st = {0};
    CHECK_EQ(sl_trainer_epoch(t, &train_src, &order, 0, 0, &st), 0);
    CHECK_EQ(sl_trainer_epoch(t, &train_src, &order, 1, 0, &st), 0);
    CHECK_EQ(pr.calls, 24);
    CHECK_EQ(pr.last_step, 24);
    CHECK_EQ(pr.last_examples, 192);
    CHECK_EQ(st.steps, 24);
    CHECK_EQ(sl_trainer_steps(t), 24);
    sl_trainer_destroy(&t);
    CHECK(t == NULL);
    sl_trainer_destroy(&t);

    /* sl_evaluate equals a by-hand loop over single examples */
    sl_metrics_t mt, ref;
    CHECK_EQ(sl_metrics_init(&mt, NCLS), 0);
    CHECK_EQ(sl_metrics_init(&ref, NCLS), 0);
    CHECK_EQ(sl_evaluate(m, &test_src, 7, &mt), 0);
    sl_batch_t b;
    CHECK_EQ(sl_batch_init(&b, &s, 1), 0);
    for (size_t i = 0; i < test_src.count; i++) {
        CHECK_EQ(synth_fill(&test_ctx, &i, 1, &b), 0);
        CHECK_EQ(sl_model_forward(m, &b, 0, NULL, NULL), 0);
        CHECK_EQ(sl_metrics_add_logits(&ref, sl_model_logits(m), b.labels, 1), 0);
    }
    sl_metrics_finish(&ref);
    CHECK(memcmp(mt.confusion, ref.confusion, NCLS * NCLS * sizeof(uint64_t)) == 0);
    CHECK_NEAR(mt.loss, ref.loss, 1e-5);
    CHECK_NEAR(mt.macro_f1, ref.macro_f1, 1e-12);
    sl_batch_free(&b);
    sl_metrics_free(&ref);
    sl_metrics_free(&mt);
    CHECK_EQ(sl_metrics_init(&mt, NCLS + 1), 0);
    CHECK_EQ(sl_evaluate(m, &test_src, 8, &mt), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "3 classes");
    sl_metrics_free(&mt);
    sl_model_destroy(&m);
}

static void test_augment(void)
{
    sl_schema_t s = schema();
    sl_batch_t b;
    CHECK_EQ(sl_batch_init(&b, &s, 4), 0);
    size_t idx[4] = {0, 1, 2, 3};
    CHECK_EQ(synth_fill(&train_ctx, idx, 4, &b), 0);
    float *orig = malloc(4 * T_LEN * CH * sizeof(float));
    memcpy(orig, b.x[0], 4 * T_LEN * CH * sizeof(float));
    sl_rng_t rng;
    sl_rng_init(&rng, 1, "aug", 0, 0);
    sl_augment_t rot = {0, 0, 30.0};
    CHECK_EQ(sl_augment_timeseries(&rot, &b, &rng), 0);
    /* a rotation keeps every 3-vector's length and the angle between time steps */
    int changed = 0;
    for (size_t i = 0; i < 4 * T_LEN; i++) {
        const float *o = orig + 3 * i, *x = b.x[0] + 3 * i;
        double no = sqrt((double)o[0] * o[0] + (double)o[1] * o[1] + (double)o[2] * o[2]);
        double nx = sqrt((double)x[0] * x[0] + (double)x[1] * x[1] + (double)x[2] * x[2]);
        CHECK_NEAR(nx, no, 1e-5);
        changed += fabsf(x[0] - o[0]) > 1e-4f;
    }
    CHECK(changed > 0);
    /* a sample marked absent is left alone */
    memcpy(b.x[0], orig, 4 * T_LEN * CH * sizeof(float));
    b.present[2] = 0;
    sl_augment_t all = {0.1, 0.05, 10.0};
    CHECK_EQ(sl_augment_timeseries(&all, &b, &rng), 0);
    CHECK(memcmp(b.x[0] + 2 * T_LEN * CH, orig + 2 * T_LEN * CH, T_LEN * CH * sizeof(float)) == 0);
    CHECK(memcmp(b.x[0], orig, T_LEN * CH * sizeof(float)) != 0);
    free(orig);
    sl_batch_free(&b);
}

int main(void)
{
    test_learns(SL_OPT_ADAMW, 0.01, SL_SCHED_CONSTANT);
    test_learns(SL_OPT_SGD, 0.05, SL_SCHED_COSINE);
    test_determinism();
    test_budget_and_prox();
    test_trainer_and_evaluate();
    test_augment();
    return check_summary("test_train");
}
