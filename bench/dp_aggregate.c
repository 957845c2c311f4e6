/* bench_dp_aggregate: what DP costs the coordinator per round, against the plain mean.
 * For each vector length d and each aggregator, one round of 100 updates:
 *   add_update_us   median time of one add_update (DP: copy, L2 norm, clip, fold into the
 *                   exact fixed-point mean)
 *   finish_ms       median time of finish (DP central: the mean back to a sum, N(0, (zC)^2)
 *                   per coordinate from the OS CSPRNG, divide by the sampled count)
 *   round_end_us    DP only: accountant step + epsilon + budget check (round_end hook)
 * Median and min/max over repeats. One JSON object per (aggregator, d). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coordinator/aggregator.h"
#include "coordinator/dp.h"

#define UPDATES 100
#define REPEATS 7

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double med(double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    return t[n / 2];
}

static int bench(const char *name, size_t d, int dp_mode)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.federation.rounds = 1000000;
    cfg.federation.min_clients = 2;
    cfg.dp.mode = dp_mode;
    cfg.dp.clip = 1.0;
    cfg.dp.noise_multiplier = 1.0;
    cfg.dp.target_epsilon = 1e5; /* exercise the budget check */
    sl_dp_coord_t *dp = NULL;
    sl_aggregator_t *agg = NULL;
    int rc = dp_mode ? sl_dp_coord_new(&dp, &cfg, d) : 0;
    if (!rc)
        rc = dp_mode ? sl_dp_aggregator_new(&agg, dp) : sl_aggregator_mean_new(&agg, d);
    float *u = malloc(d * sizeof *u), *out = malloc(d * sizeof *out);
    uint64_t *ids = malloc(UPDATES * sizeof *ids);
    if (rc || !u || !out || !ids) {
        fprintf(stderr, "bench_dp_aggregate: setup failed: %s\n", sl_last_error());
        free(u), free(out), free(ids);
        sl_aggregator_destroy(&agg);
        sl_dp_coord_destroy(&dp);
        return 1;
    }
    for (size_t j = 0; j < d; j++)
        u[j] = (float)sin(0.001 * (double)j) * 0.05f; /* norm about 0.035 sqrt(d): clipped for large d */
    for (int i = 0; i < UPDATES; i++)
        ids[i] = (uint64_t)i + 1;
    if (dp)
        sl_dp_coord_set_population(dp, 10 * UPDATES);
    double add[REPEATS], fin[REPEATS], end[REPEATS];
    for (int r = 0; r < REPEATS; r++) {
        if ((rc = agg->begin_round(agg->self, (uint64_t)r + 1, ids, UPDATES, NULL)))
            break;
        double t0 = now_us();
        for (int i = 0; i < UPDATES && !rc; i++)
            rc = agg->add_update(agg->self, ids[i], u, d, 3.0);
        double t1 = now_us();
        sl_agg_result_t res;
        if (!rc)
            rc = agg->finish(agg->self, out, d, &res);
        double t2 = now_us();
        if (!rc && dp) {
            sl_round_report_t rep;
            sl_round_report_init(&rep, (uint64_t)r + 1);
            rc = sl_dp_coord_round_end(dp, &rep);
        }
        double t3 = now_us();
        if (rc)
            break;
        add[r] = (t1 - t0) / UPDATES;
        fin[r] = (t2 - t1) / 1e3;
        end[r] = t3 - t2;
    }
    if (rc) {
        fprintf(stderr, "bench_dp_aggregate: %s: %s\n", name, sl_last_error());
    } else {
        double a = med(add, REPEATS), f = med(fin, REPEATS);
        printf("{\"name\":\"dp_aggregate.%s\",\"params\":{\"dim\":%zu,\"updates\":%d},\"repeats\":%d,"
               "\"add_update_us\":%.4g,\"add_update_min_us\":%.4g,\"finish_ms\":%.4g,\"finish_min_ms\":%.4g",
               name, d, UPDATES, REPEATS, a, add[0], f, fin[0]);
        if (dp)
            printf(",\"round_end_us\":%.4g", med(end, REPEATS));
        printf("}\n");
        fflush(stdout);
    }
    free(u), free(out), free(ids);
    sl_aggregator_destroy(&agg);
    sl_dp_coord_destroy(&dp);
    return rc ? 1 : 0;
}

int main(void)
{
    const size_t dims[] = {14726, 100000, 1000000};
    int bad = 0;
    for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
        bad |= bench("mean", dims[k], SL_DP_OFF);
        bad |= bench("dp_central", dims[k], SL_DP_CENTRAL);
        bad |= bench("dp_distributed", dims[k], SL_DP_DISTRIBUTED);
    }
    return bad;
}
