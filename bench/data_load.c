/* bench/data_load: HAPT load + windowing time and peak RSS; batches/s delivered at batch
 * 32 (HAPT and synthetic), each next to its physical floor measured in the same run
 * (gzip inflate of the same files; memcpy of the same bytes). One JSON object per line. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

#include "core/config.h"
#include "core/rng.h"
#include "datasets/dataset.h"

#define REPEATS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            kb = strtol(line + strlen(key), NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

/* Inflate every RawData gzip file once, discarding the text: the floor of any loader. */
static double inflate_all(const char *dir, size_t *bytes_out)
{
    char raw[1200];
    snprintf(raw, sizeof raw, "%s/RawData", dir);
    DIR *d = opendir(raw);
    if (!d)
        return -1.0;
    static char buf[1 << 20];
    size_t bytes = 0;
    double t0 = now();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".gz"))
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", raw, e->d_name);
        gzFile f = gzopen(path, "rb");
        if (!f)
            continue;
        gzbuffer(f, 1 << 17);
        int got;
        while ((got = gzread(f, buf, sizeof buf)) > 0)
            bytes += (size_t)got;
        gzclose(f);
    }
    closedir(d);
    *bytes_out = bytes;
    return now() - t0;
}

static void stats(double *v, size_t n, double *median, double *lo, double *hi)
{
    qsort(v, n, sizeof *v, cmp_d);
    *median = v[n / 2];
    *lo = v[0];
    *hi = v[n - 1];
}

/* Batches/s of 32 random examples from src, and memcpy of the same bytes per batch. */
static void bench_batches(const char *name, sl_dataset_t *ds, sl_example_source_t *src)
{
    const sl_schema_t *s = sl_dataset_schema(ds);
    sl_batch_t b;
    if (sl_batch_init(&b, s, 32) != 0)
        return;
    size_t row_bytes = 0;
    for (size_t m = 0; m < s->n_modalities; m++)
        row_bytes += sl_modality_values(&s->modalities[m]) * sizeof(float);
    sl_rng_t rng;
    sl_rng_init(&rng, 1, "bench", 0, 0);
    size_t idx[32], n_batches = 2000;
    double rates[REPEATS], floors[REPEATS];
    char *from = malloc(row_bytes * 32 * 64), *to = malloc(row_bytes * 32);
    memset(from, 1, row_bytes * 32 * 64);
    for (int r = 0; r < REPEATS; r++) {
        for (int warm = 0; warm < 2; warm++) {
            double t0 = now();
            for (size_t i = 0; i < n_batches; i++) {
                for (size_t j = 0; j < 32; j++)
                    idx[j] = (size_t)sl_rng_below(&rng, src->count);
                if (src->fill(src->ctx, idx, 32, &b) != 0) {
                    fprintf(stderr, "fill: %s\n", sl_last_error());
                    exit(1);
                }
            }
            rates[r] = (double)n_batches / (now() - t0);
        }
        double t0 = now();
        for (size_t i = 0; i < n_batches; i++) /* 32 rows copied from scattered places */
            for (size_t j = 0; j < 32; j++)
                memcpy(to + j * row_bytes, from + ((i * 32 + j) * 7919 % (32 * 64)) * row_bytes, row_bytes);
        floors[r] = (double)n_batches / (now() - t0);
        if (to[0] != 1)
            fprintf(stderr, "?");
    }
    double med, lo, hi, fmed, flo, fhi;
    stats(rates, REPEATS, &med, &lo, &hi);
    stats(floors, REPEATS, &fmed, &flo, &fhi);
    printf("{\"name\":\"data_batches\",\"dataset\":\"%s\",\"batch\":32,\"bytes_per_batch\":%zu,\"repeats\":%d,"
           "\"median\":%.1f,\"min\":%.1f,\"max\":%.1f,\"unit\":\"batches/s\",\"floor\":\"memcpy of the same rows\","
           "\"floor_median\":%.1f,\"ratio_to_floor\":%.4f,\"MB_per_s\":%.1f}\n",
           name, row_bytes * 32, REPEATS, med, lo, hi, fmed, med / fmed, med * (double)row_bytes * 32 / 1e6);
    free(from);
    free(to);
    sl_batch_free(&b);
}

int main(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    char data_dir[1024];
    if (sl_dataset_data_dir(data_dir, sizeof data_dir) != 0) {
        fprintf(stderr, "bench_data_load: %s\n", sl_last_error());
        return 1;
    }
    char hapt_dir[1100];
    snprintf(hapt_dir, sizeof hapt_dir, "%s/hapt", data_dir);
    long rss0 = rss_kb("VmRSS:");
    double load[REPEATS], infl[REPEATS];
    size_t text_bytes = 0;
    sl_dataset_t *ds = NULL;
    for (int r = 0; r < REPEATS; r++) { /* interleaved: inflate only, then the full load */
        infl[r] = inflate_all(hapt_dir, &text_bytes);
        sl_dataset_destroy(&ds);
        double t0 = now();
        if (sl_dataset_open(&ds, &cfg) != 0) {
            fprintf(stderr, "bench_data_load: %s\n", sl_last_error());
            return 1;
        }
        load[r] = now() - t0;
    }
    long rss_loaded = rss_kb("VmRSS:"), hwm = rss_kb("VmHWM:");
    double med, lo, hi, imed, ilo, ihi;
    stats(load, REPEATS, &med, &lo, &hi);
    stats(infl, REPEATS, &imed, &ilo, &ihi);
    size_t windows = 0;
    for (size_t g = 0; g < sl_dataset_num_groups(ds); g++) {
        size_t n;
        if (sl_dataset_group_info(ds, g, NULL, NULL, &n) == 0)
            windows += n;
    }
    printf("{\"name\":\"hapt_load\",\"classes\":6,\"windows\":%zu,\"threads\":2,\"repeats\":%d,\"median\":%.4f,"
           "\"min\":%.4f,\"max\":%.4f,\"unit\":\"s\",\"floor\":\"zlib inflate of the same files, 1 thread\",\"floor_median\":%.4f,"
           "\"ratio_to_floor\":%.3f,\"text_MB\":%.1f,\"rss_before_kB\":%ld,\"rss_loaded_kB\":%ld,\"peak_rss_kB\":%ld}\n",
           windows, REPEATS, med, lo, hi, imed, med / imed, (double)text_bytes / 1e6, rss0, rss_loaded, hwm);
    sl_example_source_t src;
    if (sl_dataset_global_source(ds, SL_GLOBAL_TRAIN, &src) == 0)
        bench_batches("hapt", ds, &src);
    sl_dataset_destroy(&ds);

    snprintf(cfg.data.name, sizeof cfg.data.name, "synthetic");
    long rss_before = rss_kb("VmRSS:");
    double t0 = now();
    snprintf(cfg.data.options, sizeof cfg.data.options, "clients=100000");
    if (sl_dataset_open(&ds, &cfg) != 0) {
        fprintf(stderr, "bench_data_load: %s\n", sl_last_error());
        return 1;
    }
    double t_open = now() - t0;
    printf("{\"name\":\"synthetic_open\",\"clients\":100000,\"median\":%.4f,\"unit\":\"s\",\"repeats\":1,"
           "\"rss_growth_kB\":%ld}\n", t_open, rss_kb("VmRSS:") - rss_before);
    if (sl_dataset_client_source(ds, 0, SL_SPLIT_TRAIN, &src) == 0)
        bench_batches("synthetic", ds, &src);
    sl_dataset_destroy(&ds);
    return 0;
}
