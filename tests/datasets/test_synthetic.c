/* synthetic: deterministic by seed, lazy (100,000 clients cost little memory), label
 * skew as configured, and a learnable signal (nearest centroid beats chance clearly). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "datasets/dataset.h"
#include "support/check.h"

static sl_dataset_t *open_synth(const char *options, int64_t seed)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "synthetic");
    snprintf(cfg.data.options, sizeof cfg.data.options, "%s", options);
    cfg.run.seed = seed;
    sl_dataset_t *ds = NULL;
    int rc = sl_dataset_open(&ds, &cfg);
    CHECK_MSG(rc == 0, "open synthetic %s: %s", options, sl_last_error());
    return ds;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void fill_all(sl_example_source_t *src, sl_batch_t *b, size_t first, size_t n)
{
    size_t idx[256];
    for (size_t i = 0; i < n; i++)
        idx[i] = first + i;
    CHECK(src->fill(src->ctx, idx, n, b) == 0);
}

static void test_determinism(void)
{
    sl_dataset_t *a = open_synth("clients=12", 5), *b = open_synth("clients=12", 5), *c = open_synth("clients=12", 6);
    if (!a || !b || !c)
        return;
    const sl_schema_t *s = sl_dataset_schema(a);
    CHECK_EQ(s->n_modalities, 3);
    CHECK(strcmp(s->modalities[0].name, "ts") == 0 && s->modalities[0].kind == SL_MOD_TIMESERIES);
    CHECK(strcmp(s->modalities[1].name, "img") == 0 && s->modalities[1].kind == SL_MOD_IMAGE);
    CHECK(strcmp(s->modalities[2].name, "vec") == 0 && s->modalities[2].kind == SL_MOD_VECTOR);
    CHECK_EQ(s->n_classes, 10);
    CHECK_EQ(sl_dataset_num_clients(a), 12);
    sl_batch_t ba, bb, bc;
    CHECK(sl_batch_init(&ba, s, 16) == 0);
    CHECK(sl_batch_init(&bb, s, 16) == 0);
    CHECK(sl_batch_init(&bc, s, 16) == 0);
    sl_example_source_t sa, sb, sc;
    CHECK(sl_dataset_client_source(a, 3, SL_SPLIT_TRAIN, &sa) == 0);
    CHECK(sl_dataset_client_source(b, 3, SL_SPLIT_TRAIN, &sb) == 0);
    CHECK(sl_dataset_client_source(c, 3, SL_SPLIT_TRAIN, &sc) == 0);
    size_t n = sa.count < 16 ? sa.count : 16;
    fill_all(&sa, &ba, 0, n);
    fill_all(&sb, &bb, 0, n);
    fill_all(&sc, &bc, 0, sc.count < n ? sc.count : n);
    int same = 1;
    for (size_t m = 0; m < 3; m++)
        same &= memcmp(ba.x[m], bb.x[m], n * sl_modality_values(&s->modalities[m]) * sizeof(float)) == 0;
    same &= memcmp(ba.labels, bb.labels, n * sizeof(int32_t)) == 0;
    CHECK(same);
    CHECK(memcmp(ba.x[0], bc.x[0], 64 * sizeof(float)) != 0);
    /* an example is a pure function of (seed, group, index): filling it alone or in a batch agrees */
    size_t one = 5;
    sl_batch_t b1;
    CHECK(sl_batch_init(&b1, s, 1) == 0);
    CHECK(sa.fill(sa.ctx, &one, 1, &b1) == 0);
    CHECK(memcmp(b1.x[2], ba.x[2] + 5 * 16, 16 * sizeof(float)) == 0);
    int32_t l;
    CHECK(sl_dataset_source_label(&sa, 5, &l) == 0);
    CHECK_EQ(l, ba.labels[5]);
    sl_batch_free(&b1);
    sl_batch_free(&ba);
    sl_batch_free(&bb);
    sl_batch_free(&bc);
    sl_dataset_destroy(&a);
    sl_dataset_destroy(&b);
    sl_dataset_destroy(&c);

    /* modality mix */
    sl_dataset_t *d = open_synth("ts=2,img=0,vec=0,ts_len=8,ts_channels=2", 1);
    if (d) {
        s = sl_dataset_schema(d);
        CHECK_EQ(s->n_modalities, 2);
        CHECK(strcmp(s->modalities[1].name, "ts1") == 0);
        CHECK_EQ(s->modalities[1].dims[0], 8);
        CHECK_EQ(s->modalities[1].dims[1], 2);
        sl_dataset_destroy(&d);
    }
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "synthetic");
    snprintf(cfg.data.options, sizeof cfg.data.options, "ts=0,img=0,vec=0");
    CHECK(sl_dataset_open(&d, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "no modality");
    snprintf(cfg.data.options, sizeof cfg.data.options, "clients=abc");
    CHECK(sl_dataset_open(&d, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "clients");
}

static void test_lazy(void)
{
    long before = rss_kb();
    sl_dataset_t *ds = open_synth("clients=100000", 3);
    long after = rss_kb();
    if (!ds)
        return;
    CHECK_EQ(sl_dataset_num_clients(ds), 100000);
    CHECK_MSG(after - before < 32 * 1024, "RSS grew by %ld kB opening 100,000 clients", after - before);
    sl_example_source_t src;
    CHECK(sl_dataset_client_source(ds, 99999, SL_SPLIT_TRAIN, &src) == 0);
    CHECK(src.count > 0);
    CHECK_EQ(sl_dataset_client_id(ds, 99999), 99999);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, sl_dataset_schema(ds), 4) == 0);
    fill_all(&src, &b, 0, src.count < 4 ? src.count : 4);
    sl_batch_free(&b);
    sl_dataset_destroy(&ds);
}

/* Mean over clients of sum_k p_k^2 of their label counts. */
static double concentration(sl_dataset_t *ds)
{
    size_t k = sl_dataset_schema(ds)->n_classes, nc = sl_dataset_num_clients(ds);
    double total = 0.0;
    for (size_t c = 0; c < nc; c++) {
        size_t cnt[64] = {0}, n = 0;
        for (int sp = 0; sp < 2; sp++) {
            sl_example_source_t src;
            CHECK(sl_dataset_client_source(ds, c, (sl_split_t)sp, &src) == 0);
            for (size_t i = 0; i < src.count; i++) {
                int32_t l;
                CHECK(sl_dataset_source_label(&src, i, &l) == 0);
                cnt[l]++;
                n++;
            }
        }
        double s = 0.0;
        for (size_t j = 0; j < k; j++)
            s += ((double)cnt[j] / (double)n) * ((double)cnt[j] / (double)n);
        total += s;
    }
    return total / (double)nc;
}

static void test_skew(void)
{
    sl_dataset_t *skew = open_synth("clients=60,examples=200,label_alpha=0.1", 2);
    sl_dataset_t *flat = open_synth("clients=60,examples=200,label_alpha=0", 2);
    if (!skew || !flat)
        return;
    double cs = concentration(skew), cf = concentration(flat);
    /* Dir(0.1) over 10 labels: E sum q^2 = 1.1 / 2 = 0.55; uniform: 0.1 (+ sampling noise) */
    CHECK_MSG(cs > 0.4 && cs < 0.7, "skewed concentration %.3f", cs);
    CHECK_MSG(cf < 0.16, "uniform concentration %.3f", cf);
    /* quantity skew: sizes vary with sigma, equal without */
    sl_dataset_t *eq = open_synth("clients=30,examples=50,quantity_sigma=0", 2);
    if (eq) {
        int all50 = 1;
        for (size_t c = 0; c < 30; c++) {
            sl_example_source_t tr, te;
            CHECK(sl_dataset_client_source(eq, c, SL_SPLIT_TRAIN, &tr) == 0);
            CHECK(sl_dataset_client_source(eq, c, SL_SPLIT_TEST, &te) == 0);
            all50 &= tr.count + te.count == 50;
        }
        CHECK(all50);
        sl_dataset_destroy(&eq);
    }
    sl_dataset_destroy(&skew);
    sl_dataset_destroy(&flat);
}

/* Nearest centroid on all modalities concatenated: fit on global TRAIN, score on TEST. */
static void test_learnable(void)
{
    sl_dataset_t *ds = open_synth("clients=40", 4);
    if (!ds)
        return;
    const sl_schema_t *s = sl_dataset_schema(ds);
    size_t k = s->n_classes, d = 0;
    for (size_t m = 0; m < s->n_modalities; m++)
        d += sl_modality_values(&s->modalities[m]);
    double *cent = calloc(k * d, sizeof *cent);
    size_t *cnt = calloc(k, sizeof *cnt);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, s, 256) == 0);
    sl_example_source_t tr, te;
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TRAIN, &tr) == 0);
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TEST, &te) == 0);
    CHECK(tr.count > 1000 && te.count > 500);
    for (size_t at = 0; at < tr.count; at += 256) {
        size_t n = tr.count - at < 256 ? tr.count - at : 256;
        fill_all(&tr, &b, at, n);
        for (size_t j = 0; j < n; j++) {
            size_t off = 0, l = (size_t)b.labels[j];
            cnt[l]++;
            for (size_t m = 0; m < s->n_modalities; m++) {
                size_t nv = sl_modality_values(&s->modalities[m]);
                for (size_t i = 0; i < nv; i++)
                    cent[l * d + off + i] += b.x[m][j * nv + i];
                off += nv;
            }
        }
    }
    for (size_t l = 0; l < k; l++)
        for (size_t i = 0; i < d; i++)
            cent[l * d + i] /= (double)(cnt[l] ? cnt[l] : 1);
    size_t right = 0;
    for (size_t at = 0; at < te.count; at += 256) {
        size_t n = te.count - at < 256 ? te.count - at : 256;
        fill_all(&te, &b, at, n);
        for (size_t j = 0; j < n; j++) {
            double best = 1e300;
            size_t arg = 0;
            for (size_t l = 0; l < k; l++) {
                double dist = 0.0;
                size_t off = 0;
                for (size_t m = 0; m < s->n_modalities; m++) {
                    size_t nv = sl_modality_values(&s->modalities[m]);
                    for (size_t i = 0; i < nv; i++) {
                        double diff = b.x[m][j * nv + i] - cent[l * d + off + i];
                        dist += diff * diff;
                    }
                    off += nv;
                }
                if (dist < best) {
                    best = dist;
                    arg = l;
                }
            }
            right += arg == (size_t)b.labels[j];
        }
    }
    double acc = (double)right / (double)te.count;
    printf("nearest-centroid accuracy on synthetic defaults: %.3f (chance %.3f)\n", acc, 1.0 / (double)k);
    CHECK_MSG(acc > 3.0 / (double)k, "accuracy %.3f", acc);
    free(cent);
    free(cnt);
    sl_batch_free(&b);
    sl_dataset_destroy(&ds);
}

/* fill() from two threads at once gives what a serial fill gives. */
typedef struct {
    sl_dataset_t *ds;
    size_t client;
    sl_batch_t batch;
    int rc;
} job_t;

static void *fill_job(void *arg)
{
    job_t *j = arg;
    for (int rep = 0; rep < 20 && !j->rc; rep++) {
        sl_example_source_t src;
        j->rc = sl_dataset_client_source(j->ds, j->client + (size_t)rep, SL_SPLIT_TRAIN, &src);
        size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7}, n = src.count < 8 ? src.count : 8;
        if (!j->rc)
            j->rc = src.fill(src.ctx, idx, n, &j->batch);
    }
    return NULL;
}

static void test_threads(void)
{
    sl_dataset_t *ds = open_synth("clients=200,examples=20,quantity_sigma=0", 8);
    if (!ds)
        return;
    job_t jobs[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        jobs[t].ds = ds;
        jobs[t].client = (size_t)t * 100;
        jobs[t].rc = 0;
        CHECK(sl_batch_init(&jobs[t].batch, sl_dataset_schema(ds), 8) == 0);
        CHECK(pthread_create(&th[t], NULL, fill_job, &jobs[t]) == 0);
    }
    for (int t = 0; t < 2; t++)
        pthread_join(th[t], NULL);
    sl_batch_t serial;
    CHECK(sl_batch_init(&serial, sl_dataset_schema(ds), 8) == 0);
    for (int t = 0; t < 2; t++) {
        CHECK_EQ(jobs[t].rc, 0);
        sl_example_source_t src;
        CHECK(sl_dataset_client_source(ds, jobs[t].client + 19, SL_SPLIT_TRAIN, &src) == 0);
        size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
        CHECK(src.fill(src.ctx, idx, 8, &serial) == 0);
        for (size_t m = 0; m < 3; m++)
            CHECK(memcmp(serial.x[m], jobs[t].batch.x[m],
                         8 * sl_modality_values(&sl_dataset_schema(ds)->modalities[m]) * sizeof(float)) == 0);
        sl_batch_free(&jobs[t].batch);
    }
    sl_batch_free(&serial);
    sl_dataset_destroy(&ds);
}

int main(void)
{
    test_determinism();
    test_lazy();
    test_skew();
    test_learnable();
    test_threads();
    return check_summary("test_dataset_synthetic");
}
