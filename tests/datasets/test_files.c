/* `files` dataset: a .npy and a CSV folder written here are read back byte-exactly; every
 * malformed variant is rejected with its own message naming the file. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "datasets/dataset.h"
#include "support/check.h"

#define NEX 60
#define T 16
#define C 3
#define F 5

static char dir[256];
static float acc[NEX][T][C], feat[NEX][F];
static int64_t labels[NEX];
static int32_t clients[NEX];
static uint8_t split[NEX];

/* Write a .npy v1.0 file: magic, version, header padded so data starts at 64 bytes. */
static void write_npy_raw(const char *name, const char *magic, int major, const char *descr, const char *fortran,
                          const char *shape, const void *data, size_t bytes)
{
    char path[512], header[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    int hl = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr, fortran,
                      shape);
    size_t total = 10 + (size_t)hl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)hl + pad + 1;
    fwrite(magic, 1, 6, f);
    unsigned char ver[2] = {(unsigned char)major, 0}, hlb[2] = {(unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    fwrite(ver, 1, 2, f);
    fwrite(hlb, 1, 2, f);
    fwrite(header, 1, (size_t)hl, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

static void write_npy(const char *name, const char *descr, const char *shape, const void *data, size_t bytes)
{
    write_npy_raw(name, "\x93NUMPY", 1, descr, "False", shape, data, bytes);
}

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void rm(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void write_good(void)
{
    char shape[64];
    snprintf(shape, sizeof shape, "(%d, %d, %d)", NEX, T, C);
    write_npy("acc.npy", "<f4", shape, acc, sizeof acc);
    snprintf(shape, sizeof shape, "(%d, %d)", NEX, F);
    write_npy("feat.npy", "<f4", shape, feat, sizeof feat);
    snprintf(shape, sizeof shape, "(%d,)", NEX);
    write_npy("labels.npy", "<i8", shape, labels, sizeof labels);
    write_npy("clients.npy", "<i4", shape, clients, sizeof clients);
    write_npy("split.npy", "|u1", shape, split, sizeof split);
}

static int open_files(sl_dataset_t **ds, const char *options)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "files");
    snprintf(cfg.data.path, sizeof cfg.data.path, "%s", dir);
    snprintf(cfg.data.options, sizeof cfg.data.options, "%s", options);
    cfg.data.local_test_fraction = 0.0;
    return sl_dataset_open(ds, &cfg);
}

/* Every example of the natural groups, compared with the arrays written. */
static void check_round_trip(sl_dataset_t *ds)
{
    const sl_schema_t *s = sl_dataset_schema(ds);
    CHECK_EQ(s->n_modalities, 2);
    CHECK(strcmp(s->modalities[0].name, "acc") == 0);
    CHECK_EQ(s->modalities[0].kind, SL_MOD_TIMESERIES);
    CHECK_EQ(s->modalities[0].dims[0], T);
    CHECK_EQ(s->modalities[0].dims[1], C);
    CHECK(strcmp(s->modalities[1].name, "feat") == 0);
    CHECK_EQ(s->modalities[1].kind, SL_MOD_VECTOR);
    CHECK_EQ(s->modalities[1].dims[0], F);
    CHECK_EQ(s->n_classes, 3);
    /* clients 0..3 for split 0, then a test group (split 1) */
    CHECK_EQ(sl_dataset_num_clients(ds), 4);
    CHECK_EQ(sl_dataset_num_groups(ds), 5);
    sl_example_source_t te;
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TEST, &te) == 0);
    CHECK_EQ(te.count, NEX / 6);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, s, NEX) == 0);
    size_t seen = 0, bad = 0;
    for (size_t g = 0; g < sl_dataset_num_groups(ds); g++) {
        uint64_t id;
        sl_group_role_t role;
        size_t n;
        CHECK(sl_dataset_group_info(ds, g, &id, &role, &n) == 0);
        sl_example_source_t src;
        CHECK(sl_dataset_group_source(ds, g, &src) == 0);
        size_t idx[NEX];
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        CHECK(src.fill(src.ctx, idx, n, &b) == 0);
        /* rows of group g are the examples with that client (or split) in file order */
        size_t j = 0;
        for (size_t e = 0; e < NEX; e++) {
            int mine = role == SL_GROUP_TEST ? split[e] == 1 : split[e] == 0 && (uint64_t)clients[e] == id;
            if (!mine)
                continue;
            bad += memcmp(b.x[0] + j * T * C, acc[e], sizeof acc[e]) != 0;
            bad += memcmp(b.x[1] + j * F, feat[e], sizeof feat[e]) != 0;
            bad += b.labels[j] != labels[e];
            j++;
        }
        CHECK_EQ(j, n);
        seen += n;
    }
    CHECK_EQ(seen, NEX);
    CHECK_EQ(bad, 0);
    sl_batch_free(&b);
}

static void expect_error(const char *what, int code, const char *needle1, const char *needle2)
{
    sl_dataset_t *ds = NULL;
    int rc = open_files(&ds, "");
    CHECK_MSG(rc == code, "%s: got %d (%s), expected %d", what, rc, sl_last_error(), code);
    CHECK_CONTAINS(sl_last_error(), needle1);
    if (needle2)
        CHECK_CONTAINS(sl_last_error(), needle2);
    CHECK(ds == NULL);
    sl_dataset_destroy(&ds);
}

static void test_npy(void)
{
    write_good();
    sl_dataset_t *ds = NULL;
    CHECK_MSG(open_files(&ds, "") == 0, "%s", sl_last_error());
    if (ds) {
        check_round_trip(ds);
        sl_dataset_destroy(&ds);
    }
    char shape[64];

    /* bad magic */
    snprintf(shape, sizeof shape, "(%d, %d)", NEX, F);
    write_npy_raw("feat.npy", "\x93NUMPZ", 1, "<f4", "False", shape, feat, sizeof feat);
    expect_error("bad magic", SL_EFORMAT, "feat.npy", "bad magic");
    /* unsupported version */
    write_npy_raw("feat.npy", "\x93NUMPY", 9, "<f4", "False", shape, feat, sizeof feat);
    expect_error("version", SL_EFORMAT, "feat.npy", "version 9.0");
    /* wrong dtype */
    write_npy("feat.npy", "<f8", "(60, 5)", feat, sizeof feat); /* 60*5*8 bytes expected: also short */
    expect_error("dtype", SL_EFORMAT, "feat.npy", NULL);
    {
        static double d[NEX][F];
        write_npy("feat.npy", "<f8", shape, d, sizeof d);
        expect_error("dtype f8", SL_EFORMAT, "feat.npy", "dtype '<f8'");
    }
    /* fortran order */
    write_npy_raw("feat.npy", "\x93NUMPY", 1, "<f4", "True", shape, feat, sizeof feat);
    expect_error("fortran", SL_EFORMAT, "feat.npy", "fortran_order");
    /* truncated data */
    write_npy("feat.npy", "<f4", shape, feat, sizeof feat - 4);
    expect_error("truncated", SL_EFORMAT, "feat.npy", "truncated");
    /* NaN in a modality */
    {
        static float bad[NEX][F];
        memcpy(bad, feat, sizeof bad);
        bad[9][2] = NAN;
        write_npy("feat.npy", "<f4", shape, bad, sizeof bad);
        expect_error("nan", SL_ENOTFINITE, "feat.npy", "at example 9");
    }
    /* wrong N */
    snprintf(shape, sizeof shape, "(%d, %d)", NEX - 1, F);
    write_npy("feat.npy", "<f4", shape, feat, sizeof feat - F * sizeof(float));
    expect_error("wrong N", SL_EMISMATCH, "feat.npy", "N = 59");
    snprintf(shape, sizeof shape, "(%d, %d)", NEX, F);
    write_npy("feat.npy", "<f4", shape, feat, sizeof feat);
    /* wrong N of clients.npy */
    write_npy("clients.npy", "<i4", "(59,)", clients, sizeof clients - 4);
    expect_error("clients N", SL_EFORMAT, "clients.npy", "(60,)");
    write_good();
    /* label out of range: classes.txt names 2 classes, labels use 3 */
    write_text("classes.txt", "sit\nwalk\n");
    expect_error("label range", SL_ERANGE, "labels.npy", "outside [0, 2)");
    write_text("classes.txt", "sit\nwalk\nrun\n");
    CHECK(open_files(&ds, "") == 0);
    if (ds) {
        CHECK(strcmp(sl_dataset_class_name(ds, 2), "run") == 0);
        sl_dataset_destroy(&ds);
    }
    rm("classes.txt");
    /* labels dtype float */
    write_npy("labels.npy", "<f4", "(60,)", acc, NEX * 4);
    expect_error("labels dtype", SL_EFORMAT, "labels.npy", "int32 or int64");
    write_good();
    /* missing files */
    rm("labels.npy");
    expect_error("missing labels", SL_ENOTFOUND, "labels.npy", "missing");
    write_good();
    write_text("modalities.txt", "acc timeseries\nfeat vector\ngyro timeseries\n");
    expect_error("missing modality", SL_ENOTFOUND, "gyro.npy", "missing");
    /* modalities.txt can reorder and reshape: feat as a (5, 1) time series */
    write_text("modalities.txt", "# kinds\nfeat timeseries 5 1\nacc timeseries\n");
    CHECK(open_files(&ds, "") == 0);
    if (ds) {
        const sl_schema_t *s = sl_dataset_schema(ds);
        CHECK(strcmp(s->modalities[0].name, "feat") == 0);
        CHECK_EQ(s->modalities[0].kind, SL_MOD_TIMESERIES);
        CHECK_EQ(s->modalities[0].dims[0], 5);
        sl_dataset_destroy(&ds);
    }
    write_text("modalities.txt", "feat image 2 2 2\nacc timeseries\n");
    expect_error("dims", SL_EMISMATCH, "feat.npy", "modalities.txt says 8");
    rm("modalities.txt");
    /* bad split value */
    {
        uint8_t s2[NEX];
        memcpy(s2, split, sizeof s2);
        s2[7] = 4;
        write_npy("split.npy", "|u1", "(60,)", s2, sizeof s2);
        expect_error("split", SL_EFORMAT, "split.npy", "row 7");
    }
    write_good();
    /* unknown option */
    CHECK(open_files(&ds, "formt=npy") == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "unknown option 'formt'");
    CHECK_CONTAINS(sl_last_error(), "format");
    /* no path */
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.name, sizeof cfg.data.name, "files");
    CHECK(sl_dataset_open(&ds, &cfg) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "data.path");
}

static void test_csv(void)
{
    const char *names[] = {"acc.npy", "feat.npy", "labels.npy", "clients.npy", "split.npy"};
    for (size_t i = 0; i < 5; i++)
        rm(names[i]);
    char path[512];
    snprintf(path, sizeof path, "%s/labels.csv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "client,label,split\n");
    for (int e = 0; e < NEX; e++)
        fprintf(f, "%d,%lld,%d\n", clients[e], (long long)labels[e], split[e]);
    fclose(f);
    snprintf(path, sizeof path, "%s/acc.csv", dir);
    f = fopen(path, "w");
    for (int e = 0; e < NEX; e++)
        for (int i = 0; i < T * C; i++)
            fprintf(f, "%.9g%s", (double)(&acc[e][0][0])[i], i + 1 < T * C ? "," : "\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/feat.csv", dir);
    f = fopen(path, "w");
    for (int e = 0; e < NEX; e++)
        for (int i = 0; i < F; i++)
            fprintf(f, "%.9g%s", (double)feat[e][i], i + 1 < F ? "," : "\n");
    fclose(f);
    write_text("modalities.txt", "acc timeseries 16 3\nfeat vector\n");
    sl_dataset_t *ds = NULL;
    CHECK_MSG(open_files(&ds, "") == 0, "%s", sl_last_error());
    if (ds) {
        check_round_trip(ds);
        sl_dataset_destroy(&ds);
    }
    /* ragged row */
    snprintf(path, sizeof path, "%s/feat.csv", dir);
    f = fopen(path, "a");
    fprintf(f, "1,2\n");
    fclose(f);
    expect_error("csv ragged", SL_EFORMAT, "feat.csv", ":61");
    rm("feat.csv");
    rm("acc.csv");
    rm("labels.csv");
    rm("modalities.txt");
}

/* Truncations and byte flips of a valid feat.npy and labels.npy: every variant either opens
 * (a flip inside the data) or fails with a message naming the file; nothing crashes
 * (the sanitizer build checks reads stay in bounds). */
static void test_mutations(void)
{
    write_good();
    const char *names[2] = {"feat.npy", "labels.npy"};
    unsigned s = 777;
    int opened = 0, named = 0, failed = 0;
    for (int f = 0; f < 2; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        FILE *fp = fopen(path, "rb");
        static unsigned char orig[8192], buf[8192];
        size_t len = fp ? fread(orig, 1, sizeof orig, fp) : 0;
        if (fp)
            fclose(fp);
        CHECK(len > 64);
        for (int trial = 0; trial < 150; trial++) {
            memcpy(buf, orig, len);
            size_t n = len;
            s = s * 1103515245u + 12345u;
            if (trial % 3 == 0) {
                n = (s >> 8) % len; /* truncate */
            } else {
                int flips = 1 + (int)((s >> 4) % 4);
                for (int k = 0; k < flips; k++) {
                    s = s * 1103515245u + 12345u;
                    size_t at = trial % 3 == 1 ? (s >> 8) % 80 : (s >> 8) % len; /* header or anywhere */
                    buf[at] = (unsigned char)(s >> 24);
                }
            }
            fp = fopen(path, "wb");
            fwrite(buf, 1, n, fp);
            fclose(fp);
            sl_dataset_t *ds = NULL;
            int rc = open_files(&ds, "");
            if (rc == 0) {
                opened++;
                sl_dataset_destroy(&ds);
            } else {
                failed++;
                named += strstr(sl_last_error(), names[f]) != NULL || strstr(sl_last_error(), "outside") != NULL;
            }
        }
        fp = fopen(path, "wb");
        fwrite(orig, 1, len, fp);
        fclose(fp);
    }
    CHECK(failed > 100);
    CHECK_EQ(named, failed);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/sl_test_files_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    unsigned s = 12345;
    for (int e = 0; e < NEX; e++) {
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                s = s * 1103515245u + 12345u;
                acc[e][t][c] = (float)(s >> 8) / 16777216.0f - 0.5f;
            }
        for (int i = 0; i < F; i++)
            feat[e][i] = (float)(e * 10 + i) * 0.25f;
        labels[e] = e % 3;
        clients[e] = (e / 2) % 4;
        split[e] = e % 6 == 5;
    }
    test_npy();
    test_mutations();
    test_csv();
    rmdir(dir);
    return check_summary("test_dataset_files");
}
