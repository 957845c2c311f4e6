/* Partitioners: disjoint and covering, Dirichlet concentration statistic against its
 * expectation, shards, power-law sizes, determinism by seed, modality dropout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/rng.h"
#include "datasets/dataset.h"
#include "datasets/partition.h"
#include "support/check.h"

#define N 20000
#define K 10

static int32_t labels[N];

/* Every example exactly once; items increasing within a client. */
static void check_cover(const sl_parts_t *p, size_t n, size_t n_clients)
{
    CHECK_EQ(p->n_clients, n_clients);
    CHECK_EQ(p->n_items, n);
    CHECK_EQ(p->offsets[0], 0);
    CHECK_EQ(p->offsets[n_clients], n);
    unsigned char *seen = calloc(n, 1);
    int dup = 0, order = 0, range = 0;
    for (size_t c = 0; c < n_clients; c++)
        for (size_t j = p->offsets[c]; j < p->offsets[c + 1]; j++) {
            size_t it = p->items[j];
            if (it >= n) {
                range++;
                continue;
            }
            dup += seen[it]++ != 0;
            if (j > p->offsets[c] && p->items[j - 1] >= it)
                order++;
        }
    size_t missing = 0;
    for (size_t i = 0; i < n; i++)
        missing += !seen[i];
    CHECK_EQ(dup, 0);
    CHECK_EQ(order, 0);
    CHECK_EQ(range, 0);
    CHECK_EQ(missing, 0);
    free(seen);
}

static int same_parts(const sl_parts_t *a, const sl_parts_t *b)
{
    return a->n_clients == b->n_clients && a->n_items == b->n_items &&
           memcmp(a->offsets, b->offsets, (a->n_clients + 1) * sizeof(size_t)) == 0 &&
           memcmp(a->items, b->items, a->n_items * sizeof(size_t)) == 0;
}

/* For q ~ Dir_K(alpha): E[sum_k q_k^2] = K * alpha (alpha + 1) / (K alpha (K alpha + 1))
 * = (1 + alpha) / (1 + K alpha). A client of n examples drawn from q has empirical p with
 * E[sum p_k^2 | q] = S + (1 - S) / n (multinomial variance), so the expected statistic is
 * E[S] + (1 - E[S]) / n. */
static void test_dirichlet(void)
{
    const double alphas[] = {0.05, 0.3, 1.0, 10.0};
    const size_t nc = 200;
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
        double alpha = alphas[a];
        sl_parts_t p;
        CHECK(sl_partition_dirichlet(&p, labels, N, K, nc, alpha, 11) == 0);
        check_cover(&p, N, nc);
        double sum = 0.0, sum2 = 0.0;
        for (size_t c = 0; c < nc; c++) {
            size_t cnt[K] = {0}, n = p.offsets[c + 1] - p.offsets[c];
            CHECK_EQ(n, N / nc); /* equal sizes */
            for (size_t j = p.offsets[c]; j < p.offsets[c + 1]; j++)
                cnt[labels[p.items[j]]]++;
            double s = 0.0;
            for (size_t k = 0; k < K; k++)
                s += ((double)cnt[k] / (double)n) * ((double)cnt[k] / (double)n);
            sum += s;
            sum2 += s * s;
        }
        double mean = sum / (double)nc, sd = sqrt(fmax(sum2 / (double)nc - mean * mean, 0.0));
        double es = (1.0 + alpha) / (1.0 + K * alpha), expect = es + (1.0 - es) / (double)(N / nc);
        /* 4 standard errors, plus a little for the pools running dry at the end */
        double tol = 4.0 * sd / sqrt((double)nc) + 0.01;
        CHECK_MSG(fabs(mean - expect) <= tol, "alpha %g: mean sum p^2 = %.4f, expected %.4f (tol %.4f)", alpha, mean,
                  expect, tol);
        sl_parts_t q, r;
        CHECK(sl_partition_dirichlet(&q, labels, N, K, nc, alpha, 11) == 0);
        CHECK(sl_partition_dirichlet(&r, labels, N, K, nc, alpha, 12) == 0);
        CHECK(same_parts(&p, &q));
        CHECK(!same_parts(&p, &r));
        sl_parts_free(&p);
        sl_parts_free(&q);
        sl_parts_free(&r);
    }
    /* statistic falls monotonically with alpha: skew is controlled */
    sl_parts_t p;
    int32_t bad[3] = {0, 1, 5};
    CHECK(sl_partition_dirichlet(&p, bad, 3, 3, 1, 1.0, 1) == SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "label 5");
    CHECK(sl_partition_dirichlet(&p, labels, N, K, 10, 0.0, 1) == SL_EINVAL);
    CHECK(sl_partition_dirichlet(&p, labels, 5, K, 6, 1.0, 1) == SL_EINVAL);
}

static void test_iid_shards_quantity(void)
{
    sl_parts_t p, q, r;
    CHECK(sl_partition_iid(&p, N, 7, 3) == 0);
    check_cover(&p, N, 7);
    for (size_t c = 0; c < 7; c++) {
        size_t n = p.offsets[c + 1] - p.offsets[c];
        CHECK(n == N / 7 || n == N / 7 + 1);
    }
    CHECK(sl_partition_iid(&q, N, 7, 3) == 0);
    CHECK(sl_partition_iid(&r, N, 7, 4) == 0);
    CHECK(same_parts(&p, &q));
    CHECK(!same_parts(&p, &r));
    sl_parts_free(&p);
    sl_parts_free(&q);
    sl_parts_free(&r);

    /* shards: 100 clients x 2 shards of 100 label-sorted examples: each client has exactly
     * 200 examples and at most 2 labels per shard */
    CHECK(sl_partition_shards(&p, labels, N, 100, 2, 5) == 0);
    check_cover(&p, N, 100);
    int too_many = 0;
    for (size_t c = 0; c < 100; c++) {
        CHECK_EQ(p.offsets[c + 1] - p.offsets[c], 200);
        int has[K] = {0}, distinct = 0;
        for (size_t j = p.offsets[c]; j < p.offsets[c + 1]; j++)
            has[labels[p.items[j]]] = 1;
        for (int k = 0; k < K; k++)
            distinct += has[k];
        too_many += distinct > 4;
    }
    CHECK_EQ(too_many, 0);
    CHECK(sl_partition_shards(&q, labels, N, 100, 2, 5) == 0);
    CHECK(same_parts(&p, &q));
    sl_parts_free(&p);
    sl_parts_free(&q);
    CHECK(sl_partition_shards(&p, labels, 10, 6, 2, 5) == SL_EINVAL);

    /* quantity: sizes follow 1 + floor((n - N) (r+1)^-e / sum) over ranks (leftovers to the
     * top ranks), so sorted sizes match the power law within 2 */
    const size_t nc = 50;
    const double e = 1.5;
    CHECK(sl_partition_quantity(&p, N, nc, e, 9) == 0);
    check_cover(&p, N, nc);
    size_t sizes[50];
    for (size_t c = 0; c < nc; c++)
        sizes[c] = p.offsets[c + 1] - p.offsets[c];
    for (size_t i = 1; i < nc; i++) /* sort descending */
        for (size_t j = i; j > 0 && sizes[j - 1] < sizes[j]; j--) {
            size_t t = sizes[j];
            sizes[j] = sizes[j - 1];
            sizes[j - 1] = t;
        }
    double w = 0.0;
    for (size_t r2 = 0; r2 < nc; r2++)
        w += pow((double)(r2 + 1), -e);
    int off = 0;
    for (size_t r2 = 0; r2 < nc; r2++) {
        double want = 1.0 + (double)(N - nc) * pow((double)(r2 + 1), -e) / w;
        off += fabs((double)sizes[r2] - want) > 2.0;
    }
    CHECK_EQ(off, 0);
    CHECK(sizes[nc - 1] >= 1);
    CHECK(sizes[0] > 20 * sizes[nc - 1]);
    CHECK(sl_partition_quantity(&q, N, nc, e, 9) == 0);
    CHECK(sl_partition_quantity(&r, N, nc, e, 10) == 0);
    CHECK(same_parts(&p, &q));
    CHECK(!same_parts(&p, &r));
    sl_parts_free(&p);
    sl_parts_free(&q);
    sl_parts_free(&r);
    sl_parts_free(NULL);
}

static void test_missing(void)
{
    uint8_t m[1000], m2[1000];
    const double fr[] = {0.0, 0.1, 0.333, 1.0};
    for (size_t i = 0; i < 4; i++) {
        CHECK(sl_partition_missing(m, 1000, fr[i], 1) == 0);
        size_t k = 0;
        for (size_t c = 0; c < 1000; c++)
            k += m[c];
        CHECK_EQ(k, (size_t)floor(fr[i] * 1000 + 0.5));
    }
    CHECK(sl_partition_missing(m, 1000, 0.3, 1) == 0);
    CHECK(sl_partition_missing(m2, 1000, 0.3, 2) == 0);
    CHECK(memcmp(m, m2, 1000) != 0);
    CHECK(sl_partition_missing(m, 10, 1.5, 1) == SL_EINVAL);
}

/* Through the dataset API: synthetic pooled examples re-split with dirichlet, a third of
 * the clients without the image. */
static void test_dataset_partition(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "synthetic");
    snprintf(cfg.data.options, sizeof cfg.data.options, "clients=20,examples=50,quantity_sigma=0");
    CHECK(sl_config_set(&cfg, "data.partition=dirichlet") == 0);
    cfg.data.clients = 30;
    cfg.data.alpha = 0.1;
    snprintf(cfg.data.missing_modality, sizeof cfg.data.missing_modality, "img");
    cfg.data.missing_fraction = 1.0 / 3.0;
    sl_dataset_t *ds = NULL;
    CHECK(sl_dataset_open(&ds, &cfg) == 0);
    if (!ds)
        return;
    CHECK_EQ(sl_dataset_num_clients(ds), 30);
    size_t total = 0, missing = 0;
    for (size_t c = 0; c < 30; c++) {
        sl_example_source_t tr, te;
        CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TRAIN, &tr) == 0);
        CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TEST, &te) == 0);
        total += tr.count + te.count;
        missing += (size_t)sl_dataset_client_missing(ds, c, 1);
        CHECK_EQ(sl_dataset_client_id(ds, c), c);
    }
    CHECK_EQ(total, 20 * 50);
    CHECK_EQ(missing, 10);
    sl_example_source_t g;
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TRAIN, &g) == 0);
    CHECK_EQ(g.count, 1000);
    /* the pooled view keeps each example's dropout: count rows without the image */
    sl_batch_t b;
    CHECK(sl_batch_init(&b, sl_dataset_schema(ds), 100) == 0);
    size_t absent = 0, idx[100];
    for (size_t s = 0; s < 1000; s += 100) {
        for (size_t j = 0; j < 100; j++)
            idx[j] = s + j;
        CHECK(g.fill(g.ctx, idx, 100, &b) == 0);
        for (size_t j = 0; j < 100; j++)
            absent += b.present[j * 3 + 1] == 0;
    }
    size_t want = 0;
    for (size_t c = 0; c < 30; c++)
        if (sl_dataset_client_missing(ds, c, 1)) {
            sl_example_source_t tr, te;
            CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TRAIN, &tr) == 0);
            CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TEST, &te) == 0);
            want += tr.count + te.count;
        }
    CHECK_EQ(absent, want);
    sl_batch_free(&b);
    sl_dataset_destroy(&ds);
    /* a bad modality name lists the real ones */
    snprintf(cfg.data.missing_modality, sizeof cfg.data.missing_modality, "camera");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "'camera' is not a modality (have: ts, img, vec)");
}

int main(void)
{
    sl_rng_t rng;
    sl_rng_init(&rng, 1, "test-labels", 0, 0);
    for (size_t i = 0; i < N; i++)
        labels[i] = (int32_t)(i % K);
    sl_rng_shuffle_u32(&rng, (uint32_t *)labels, N);
    test_dirichlet();
    test_iid_shards_quantity();
    test_missing();
    test_dataset_partition();
    return check_summary("test_dataset_partition");
}
