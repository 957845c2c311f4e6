/* bench_accountant: how long the RDP accountant takes to answer "epsilon after 10,000
 * rounds", the number a coordinator needs every round. One JSON object per configuration:
 *   epsilon_10k_same      accountant_step x 10,000 at one (q, sigma), then epsilon
 *   epsilon_10k_alternating  10,000 steps cycling through 5 sigmas (distributed DP with a
 *                         varying report count: 10,000 history entries), then epsilon
 *   epsilon_query_10k     one sl_dp_accountant_epsilon on the 10,000-entry accountant
 *   would_exceed_10k      one budget check on it
 *   rdp_vector            one per-step RDP vector at the 151 default orders (the unit cost
 *                         of a new (q, sigma))
 *   python_reference      context only: tests/dp/rdp_reference.py (a standard-library Python
 *                         port of Opacus's formulas, not Opacus itself, which is not installed
 *                         here) computing the same single-entry epsilon, timed in-process,
 *                         interleaved with the C runs.
 * Median and min/max over repeats, in milliseconds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "privacy/dp/accountant.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, const char *params, double *t, int n, double eps, const char *extra)
{
    qsort(t, (size_t)n, sizeof *t, cmp);
    char e[64] = "null"; /* JSON has no NaN */
    if (isfinite(eps))
        snprintf(e, sizeof e, "%.17g", eps);
    printf("{\"name\":\"accountant.%s\",\"params\":{%s},\"repeats\":%d,\"median\":%.6g,\"min\":%.6g,\"max\":%.6g,"
           "\"unit\":\"ms\",\"epsilon\":%s%s}\n",
           name, params, n, t[n / 2], t[0], t[n - 1], e, extra ? extra : "");
    fflush(stdout);
}

#define REPEATS 15
#define ROUNDS 10000

static const double Q = 0.01, SIGMA = 1.1, DELTA = 1e-5;

static double run_same(double *eps)
{
    double t0 = now_ms();
    sl_dp_accountant_t *acc = NULL;
    if (sl_dp_accountant_new(&acc))
        return NAN;
    for (int i = 0; i < ROUNDS; i++)
        if (sl_dp_accountant_step(acc, Q, SIGMA, 1))
            return NAN;
    if (sl_dp_accountant_epsilon(acc, DELTA, eps, NULL))
        return NAN;
    double t = now_ms() - t0;
    sl_dp_accountant_destroy(&acc);
    return t;
}

static sl_dp_accountant_t *build_alternating(double *ms)
{
    /* z sqrt(r / m) for r = 10..14 of m = 10 */
    double zs[5];
    for (int i = 0; i < 5; i++)
        zs[i] = SIGMA * sqrt((10.0 + i) / 10.0);
    double t0 = now_ms();
    sl_dp_accountant_t *acc = NULL;
    if (sl_dp_accountant_new(&acc))
        return NULL;
    for (int i = 0; i < ROUNDS; i++)
        if (sl_dp_accountant_step(acc, Q, zs[(i * 7) % 5], 1)) {
            sl_dp_accountant_destroy(&acc);
            return NULL;
        }
    *ms = now_ms() - t0;
    return acc;
}

/* Time the Python reference in-process; returns the median ms or NAN. */
static double python_ref(const char *src, double *eps)
{
    if (access("/usr/bin/python3", X_OK) != 0 || !src)
        return NAN;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys, time; sys.path.insert(0, '%s/tests/dp'); import rdp_reference as r\n"
             "ts = []\n"
             "for _ in range(5):\n"
             "    t0 = time.perf_counter(); e, a = r.epsilon([(%.17g, %.17g, %d)], %.17g); ts.append(time.perf_counter() - t0)\n"
             "ts.sort(); print('%%.17g %%.17g' %% (ts[len(ts) // 2] * 1e3, e))\"",
             src, Q, SIGMA, ROUNDS, DELTA);
    FILE *p = popen(cmd, "r");
    if (!p)
        return NAN;
    double ms = NAN;
    if (fscanf(p, "%lf %lf", &ms, eps) != 2)
        ms = NAN;
    if (pclose(p) != 0)
        return NAN;
    return ms;
}

int main(void)
{
    double t[REPEATS], eps = NAN;
    char params[256];
    snprintf(params, sizeof params, "\"rounds\":%d,\"q\":%g,\"sigma\":%g,\"delta\":%g", ROUNDS, Q, SIGMA, DELTA);

    const char *src = getenv("SL_SOURCE_DIR");
    if (!src)
        src = ".";
    /* interleave C and Python: C, Py, C, Py, C, Py */
    double py[3], py_eps = NAN;
    int npy = 0;
    for (int i = 0; i < REPEATS; i++) {
        t[i] = run_same(&eps);
        if (i % 5 == 0) {
            double ms = python_ref(src, &py_eps);
            if (!isnan(ms))
                py[npy++] = ms;
        }
    }
    double c_med;
    {
        double tmp[REPEATS];
        memcpy(tmp, t, sizeof t);
        qsort(tmp, REPEATS, sizeof *tmp, cmp);
        c_med = tmp[REPEATS / 2];
    }
    char extra[256] = "";
    if (npy) {
        qsort(py, (size_t)npy, sizeof *py, cmp);
        snprintf(extra, sizeof extra,
                 ",\"reference\":\"tests/dp/rdp_reference.py (stdlib Python port, not Opacus)\","
                 "\"reference_median_ms\":%.6g,\"speedup_vs_reference\":%.4g",
                 py[npy / 2], py[npy / 2] / c_med);
    }
    report("epsilon_10k_same", params, t, REPEATS, eps, extra);

    sl_dp_accountant_t *acc = NULL;
    for (int i = 0; i < REPEATS; i++) {
        double ms = NAN;
        sl_dp_accountant_destroy(&acc);
        acc = build_alternating(&ms);
        if (!acc)
            return 1;
        double t0 = now_ms();
        if (sl_dp_accountant_epsilon(acc, DELTA, &eps, NULL))
            return 1;
        t[i] = ms + (now_ms() - t0);
    }
    report("epsilon_10k_alternating", params, t, REPEATS, eps, ",\"history_entries\":10000,\"distinct_sigmas\":5");

    for (int i = 0; i < REPEATS; i++) {
        double t0 = now_ms();
        if (sl_dp_accountant_epsilon(acc, DELTA, &eps, NULL))
            return 1;
        t[i] = now_ms() - t0;
    }
    report("epsilon_query_10k", params, t, REPEATS, eps, ",\"history_entries\":10000");

    for (int i = 0; i < REPEATS; i++) {
        int stop;
        double t0 = now_ms();
        if (sl_dp_accountant_would_exceed(acc, Q, SIGMA, DELTA, 8.0, &stop, &eps))
            return 1;
        t[i] = now_ms() - t0;
    }
    report("would_exceed_10k", params, t, REPEATS, eps, ",\"history_entries\":10000");
    sl_dp_accountant_destroy(&acc);

    double v[SL_DP_NUM_ORDERS];
    for (int i = 0; i < REPEATS; i++) {
        double t0 = now_ms();
        /* a new sigma each time so nothing is cached */
        if (sl_dp_rdp_vector(Q, SIGMA + 1e-9 * i, 1, v))
            return 1;
        t[i] = now_ms() - t0;
    }
    report("rdp_vector", "\"q\":0.01,\"sigma\":1.1,\"orders\":151", t, REPEATS, NAN, NULL);
    return 0;
}
