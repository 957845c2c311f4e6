/* HAPT loader: window counts against SOURCE.txt's table and the official Train/Test
 * files, the first window of user 1 against the raw gzip text, label mapping, splits. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/config.h"
#include "datasets/dataset.h"
#include "support/check.h"

/* SOURCE.txt, PER-USER TABLE: windows_act1-6 and windows_all12 for users 1..30. */
static const size_t win6[31] = {0,   347, 304, 344, 314, 301, 326, 306, 284, 299, 298, 321, 327, 328, 321, 334,
                                366, 377, 380, 363, 359, 413, 323, 375, 387, 413, 396, 382, 384, 346, 393};
static const size_t win12[31] = {0,   368, 324, 359, 336, 324, 342, 318, 295, 311, 306, 337, 340, 348, 346, 351,
                                 379, 401, 403, 381, 384, 434, 335, 392, 410, 434, 409, 394, 395, 364, 409};
static const int is_test[31] = {0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0,
                                0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};

static sl_dataset_t *open_hapt(int classes, const char *options)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "hapt");
    cfg.data.classes = classes;
    snprintf(cfg.data.options, sizeof cfg.data.options, "%s", options);
    sl_dataset_t *ds = NULL;
    int rc = sl_dataset_open(&ds, &cfg);
    CHECK_MSG(rc == 0, "open hapt classes=%d options=%s: %s", classes, options, sl_last_error());
    return ds;
}

/* Per (user, activity) window counts of the official Train/ or Test/ files. */
static void official_counts(const char *dir, const char *split, size_t counts[31][13], size_t *total)
{
    char ps[1024], py[1024];
    snprintf(ps, sizeof ps, "%s/%s/subject_id_%s.txt", dir, split, strcmp(split, "Train") ? "test" : "train");
    snprintf(py, sizeof py, "%s/%s/y_%s.txt", dir, split, strcmp(split, "Train") ? "test" : "train");
    FILE *fs = fopen(ps, "r"), *fy = fopen(py, "r");
    CHECK(fs && fy);
    if (!fs || !fy)
        return;
    int u, y;
    while (fscanf(fs, "%d", &u) == 1 && fscanf(fy, "%d", &y) == 1) {
        if (u >= 1 && u <= 30 && y >= 1 && y <= 12)
            counts[u][y]++;
        (*total)++;
    }
    fclose(fs);
    fclose(fy);
}

/* ds opened with `classes`; all21: central_train=all21; pub: default public users (else none). */
static void test_counts(sl_dataset_t *ds, int classes, int all21, int pub_default)
{
    if (!ds)
        return;
    const size_t *table = classes == 12 ? win12 : win6;
    CHECK_EQ(sl_dataset_schema(ds)->n_classes, classes);
    CHECK_EQ(sl_dataset_num_groups(ds), 30);
    size_t total = 0, train_users = 0, test_users = 0, per_role[3] = {0, 0, 0};
    size_t by_ua[31][13];
    memset(by_ua, 0, sizeof by_ua);
    for (size_t g = 0; g < sl_dataset_num_groups(ds); g++) {
        uint64_t id;
        sl_group_role_t role;
        size_t count;
        CHECK(sl_dataset_group_info(ds, g, &id, &role, &count) == 0);
        CHECK(id >= 1 && id <= 30);
        if (id < 1 || id > 30)
            continue;
        CHECK_MSG(count == table[id], "user %llu: %zu windows, SOURCE.txt says %zu", (unsigned long long)id, count,
                  table[id]);
        CHECK_EQ(role == SL_GROUP_TEST, is_test[id]);
        int pub = pub_default && (id == 1 || id == 3 || id == 5 || id == 6 || id == 7);
        CHECK_EQ(role == SL_GROUP_PUBLIC, pub);
        per_role[role] += count;
        total += count;
        *(is_test[id] ? &test_users : &train_users) += count;
        sl_example_source_t src;
        CHECK(sl_dataset_group_source(ds, g, &src) == 0);
        CHECK_EQ(src.count, count);
        for (size_t i = 0; i < src.count; i++) {
            int32_t l = -1;
            CHECK(sl_dataset_source_label(&src, i, &l) == 0);
            if (l >= 0 && l < 12)
                by_ua[id][l + 1]++;
        }
    }
    CHECK_EQ(total, classes == 12 ? 10929 : 10411);
    if (classes == 12) {
        CHECK_EQ(train_users, 7767);
        CHECK_EQ(test_users, 3162);
    }
    /* the official per-(user, activity) window counts */
    size_t off[31][13], n_train = 0, n_test = 0;
    memset(off, 0, sizeof off);
    const char *src_dir = getenv("SL_SOURCE_DIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/datasets/data/hapt", src_dir ? src_dir : ".");
    official_counts(dir, "Train", off, &n_train);
    official_counts(dir, "Test", off, &n_test);
    CHECK_EQ(n_train, 7767);
    CHECK_EQ(n_test, 3162);
    int mismatch = 0;
    for (int u = 1; u <= 30; u++)
        for (int a = 1; a <= classes; a++)
            mismatch += by_ua[u][a] != off[u][a];
    CHECK_EQ(mismatch, 0);

    /* splits: 16 clients, 5 public users, 9 test users (or 21 clients, no public) */
    CHECK_EQ(sl_dataset_num_clients(ds), pub_default ? 16 : 21);
    sl_example_source_t s;
    if (pub_default) {
        CHECK(sl_dataset_global_source(ds, SL_GLOBAL_PUBLIC, &s) == 0);
        CHECK_EQ(s.count, per_role[SL_GROUP_PUBLIC]);
    } else {
        CHECK(sl_dataset_global_source(ds, SL_GLOBAL_PUBLIC, &s) == SL_ENOTFOUND);
    }
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TRAIN, &s) == 0);
    CHECK_EQ(s.count, per_role[SL_GROUP_CLIENT] + (all21 ? per_role[SL_GROUP_PUBLIC] : 0));
    if (all21 && classes == 12)
        CHECK_EQ(s.count, 7767);
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TEST, &s) == 0);
    CHECK_EQ(s.count, per_role[SL_GROUP_TEST]);
    size_t sum = 0;
    for (size_t c = 0; c < sl_dataset_num_clients(ds); c++) {
        sl_example_source_t tr, te;
        CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TRAIN, &tr) == 0);
        CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TEST, &te) == 0);
        uint64_t id = sl_dataset_client_id(ds, c);
        CHECK(id >= 1 && id <= 30 && !is_test[id]);
        if (id >= 1 && id <= 30) {
            CHECK_EQ(tr.count + te.count, table[id]);
            CHECK_EQ(te.count, (size_t)(0.2 * (double)table[id] + 0.5));
        }
        sum += tr.count + te.count;
    }
    CHECK_EQ(sum, per_role[SL_GROUP_CLIENT]);
}

/* normalize=public: over the public users' windows every channel has mean 0, std 1. */
static void test_public_standardized(sl_dataset_t *ds)
{
    if (!ds)
        return;
    sl_example_source_t pub;
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_PUBLIC, &pub) == 0);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, sl_dataset_schema(ds), 64) == 0);
    double sum[6] = {0}, sum2[6] = {0};
    size_t n = 0, idx[64];
    for (size_t at = 0; at < pub.count; at += 64) {
        size_t k = pub.count - at < 64 ? pub.count - at : 64;
        for (size_t j = 0; j < k; j++)
            idx[j] = at + j;
        CHECK(pub.fill(pub.ctx, idx, k, &b) == 0);
        for (size_t j = 0; j < k * 128; j++)
            for (int c = 0; c < 3; c++) {
                double a = b.x[0][j * 3 + (size_t)c], g = b.x[1][j * 3 + (size_t)c];
                sum[c] += a;
                sum2[c] += a * a;
                sum[3 + c] += g;
                sum2[3 + c] += g * g;
            }
        n += k * 128;
    }
    for (int c = 0; c < 6; c++) {
        double m = sum[c] / (double)n;
        CHECK_NEAR(m, 0.0, 1e-3);
        CHECK_NEAR(sum2[c] / (double)n - m * m, 1.0, 1e-3);
    }
    sl_batch_free(&b);
}

/* Row `row` (1-based) of a gzip text file, 3 values parsed with strtod. */
static int raw_rows(const char *path, size_t first_row, size_t n, float *out)
{
    gzFile f = gzopen(path, "rb");
    if (!f)
        return -1;
    char line[256];
    size_t r = 0, k = 0;
    while (k < n && gzgets(f, line, sizeof line)) {
        if (++r < first_row)
            continue;
        char *p = line;
        for (int c = 0; c < 3; c++)
            out[k * 3 + (size_t)c] = (float)strtod(p, &p);
        k++;
    }
    gzclose(f);
    return k == n ? 0 : -1;
}

/* ds: 6 classes, acc_scale = scale */
static void test_first_window(sl_dataset_t *ds, float scale)
{
    if (!ds)
        return;
    /* labels.txt row 1: "1 1 5 250 1232": exp 1, user 1, STANDING, rows 250..1232 */
    size_t g1 = SIZE_MAX;
    for (size_t g = 0; g < sl_dataset_num_groups(ds); g++) {
        uint64_t id;
        CHECK(sl_dataset_group_info(ds, g, &id, NULL, NULL) == 0);
        if (id == 1)
            g1 = g;
    }
    CHECK(g1 != SIZE_MAX);
    sl_example_source_t src;
    CHECK(sl_dataset_group_source(ds, g1, &src) == 0);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, sl_dataset_schema(ds), 2) == 0);
    size_t idx[2] = {0, 1};
    CHECK(src.fill(src.ctx, idx, 2, &b) == 0);
    CHECK_EQ(b.size, 2);
    CHECK_EQ(b.labels[0], 4);
    CHECK_EQ(b.labels[1], 4);
    CHECK(strcmp(sl_dataset_class_name(ds, 4), "STANDING") == 0);
    CHECK(strcmp(sl_dataset_class_name(ds, 0), "WALKING") == 0);
    CHECK_EQ(b.present[0], 1);
    CHECK_EQ(b.present[1], 1);
    const char *src_dir = getenv("SL_SOURCE_DIR");
    char path[1024];
    static float want[192 * 3];
    const char *kinds[2] = {"acc", "gyro"};
    for (int m = 0; m < 2; m++) {
        snprintf(path, sizeof path, "%s/datasets/data/hapt/RawData/%s_exp01_user01.txt.gz", src_dir ? src_dir : ".",
                 kinds[m]);
        /* window 0: rows 250..377; window 1 starts 64 rows later */
        CHECK(raw_rows(path, 250, 192, want) == 0);
        int diff0 = 0, diff1 = 0;
        for (size_t i = 0; i < 128 * 3; i++) {
            float k = m == 0 ? scale : 1.0f;
            diff0 += b.x[m][i] != want[i] * k;
            diff1 += b.x[m][128 * 3 + i] != want[64 * 3 + i] * k;
        }
        CHECK_EQ(diff0, 0);
        CHECK_EQ(diff1, 0);
    }
    CHECK_NEAR(b.x[0][0], scale * 1.020833394742025, 1e-7); /* acc_exp01 row 250, x: pinned value */
    sl_batch_free(&b);
}

static void test_options_and_errors(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    sl_dataset_t *ds = NULL;
    snprintf(cfg.data.options, sizeof cfg.data.options, "publik_users=1");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "unknown option 'publik_users'");
    CHECK_CONTAINS(sl_last_error(), "public_users");
    snprintf(cfg.data.options, sizeof cfg.data.options, "public_users=1,2");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "user 2 is an official test user");
    cfg.data.classes = 7;
    cfg.data.options[0] = '\0';
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "6");
    cfg.data.classes = 0;
    snprintf(cfg.data.name, sizeof cfg.data.name, "hapd");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ENOTFOUND);
    CHECK_CONTAINS(sl_last_error(), "unknown dataset 'hapd'");
    CHECK_CONTAINS(sl_last_error(), "hapt, synthetic, files");
    CHECK(ds == NULL);


    snprintf(cfg.data.name, sizeof cfg.data.name, "hapt");
    snprintf(cfg.data.options, sizeof cfg.data.options, "normalize=zscore");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "expected fixed or public");

    /* --data-opt appends */
    sl_config_defaults(&cfg);
    CHECK(sl_dataset_option_append(&cfg, "public_users=1") == 0);
    CHECK(sl_dataset_option_append(&cfg, "acc_scale=2") == 0);
    CHECK(strcmp(cfg.data.options, "public_users=1,acc_scale=2") == 0);
    CHECK(sl_dataset_option_append(&cfg, "novalue") == SL_EINVAL);
}

/* No public users, acc_scale = 2 and modality dropout: 21 clients, round(0.25 * 21) = 5
 * lack gyro; the first window is the raw one with acc doubled. */
static void test_dropout(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.options, sizeof cfg.data.options, "public_users=none,acc_scale=2");
    snprintf(cfg.data.missing_modality, sizeof cfg.data.missing_modality, "gyro");
    cfg.data.missing_fraction = 0.25;
    sl_dataset_t *ds = NULL;
    CHECK(sl_dataset_open(&ds, &cfg) == 0);
    if (!ds)
        return;
    CHECK_EQ(sl_dataset_num_clients(ds), 21);
    test_first_window(ds, 2.0f);
    size_t missing = 0;
    sl_batch_t b;
    CHECK(sl_batch_init(&b, sl_dataset_schema(ds), 4) == 0);
    size_t idx[4] = {0, 1, 2, 3};
    for (size_t c = 0; c < sl_dataset_num_clients(ds); c++) {
        int miss = sl_dataset_client_missing(ds, c, 1);
        CHECK(!sl_dataset_client_missing(ds, c, 0));
        missing += (size_t)miss;
        sl_example_source_t tr;
        CHECK(sl_dataset_client_source(ds, c, SL_SPLIT_TRAIN, &tr) == 0);
        CHECK(tr.fill(tr.ctx, idx, 4, &b) == 0);
        int ok = 1;
        for (size_t j = 0; j < 4; j++) {
            ok &= b.present[j * 2] == 1 && b.present[j * 2 + 1] == (miss ? 0 : 1);
            if (miss)
                for (size_t i = 0; i < 384; i++)
                    ok &= b.x[1][j * 384 + i] == 0.0f;
        }
        CHECK(ok);
    }
    CHECK_EQ(missing, 5);
    sl_example_source_t pub;
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_PUBLIC, &pub) == SL_ENOTFOUND);
    /* out-of-range index and oversize requests are errors, not crashes */
    sl_example_source_t tr;
    CHECK(sl_dataset_client_source(ds, 0, SL_SPLIT_TRAIN, &tr) == 0);
    size_t bad = tr.count;
    CHECK(tr.fill(tr.ctx, &bad, 1, &b) == SL_ERANGE);
    size_t many[5] = {0, 1, 2, 3, 4};
    CHECK(tr.fill(tr.ctx, many, 5, &b) == SL_EINVAL);
    CHECK(sl_dataset_client_source(ds, 99, SL_SPLIT_TRAIN, &tr) == SL_ERANGE);
    sl_batch_free(&b);
    sl_dataset_destroy(&ds);
    CHECK(ds == NULL);
    sl_dataset_destroy(&ds); /* NULL-safe */
}

int main(void)
{
    sl_dataset_t *d6 = open_hapt(6, "");
    test_counts(d6, 6, 0, 1);
    test_first_window(d6, 1.0f);
    sl_dataset_destroy(&d6);
    sl_dataset_t *d12 = open_hapt(12, "central_train=all21,normalize=public");
    test_counts(d12, 12, 1, 1);
    test_public_standardized(d12);
    if (d12) {
        CHECK(strcmp(sl_dataset_class_name(d12, 11), "LIE_TO_STAND") == 0);
        CHECK(strcmp(sl_dataset_class_name(d12, 6), "STAND_TO_SIT") == 0);
    }
    sl_dataset_destroy(&d12);
    test_options_and_errors();
    test_dropout();
    return check_summary("test_dataset_hapt");
}
