/* bench_secagg: SecAgg+ costs, one JSON object per configuration.
 *
 *   bench_secagg [client|server|unmask|scaling|all]
 *
 * client:  per-client protocol time at M = 2^20, k = 40 (median and p10/p90 over the
 *          clients of one in-process round), against the physical floor measured in the
 *          same run: the ChaCha20 keystream of the k + 1 masks it must generate.
 * server:  n = 1000, M = 2^20, 10% dropout: the unmasking call's wall time against the
 *          keystream of the masks it regenerates (same threads, same run); communication
 *          expansion at 32-, 16- and 8-bit quantization; a worst case with every dropout
 *          between share-keys and masked-input (the most pairwise masks to regenerate).
 * scaling: n = 100 / 1000 / 10000 at M = 2^16: client and server time; server time
 *          divided by n log2 n and by n^2 shows which one it follows.
 */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/sim.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const sl_secagg_sim_opts_t *o, sl_secagg_sim_result_t *r)
{
    int rc = sl_secagg_sim_run(o, r);
    if (rc)
        fprintf(stderr, "bench_secagg: %s\n", sl_last_error());
    else if (r->rc)
        fprintf(stderr, "bench_secagg: round aborted: %s\n", r->error);
    return rc;
}

/* Seconds to generate nterms x dim words of keystream on `threads` threads. */
static double keystream(size_t nterms, size_t dim, unsigned threads)
{
    sl_prg_term_t *t = calloc(nterms, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < nterms; i++)
        t[i].seed[0] = (uint8_t)i, t[i].seed[1] = (uint8_t)(i >> 8), t[i].sign = 1;
    double t0 = now();
    int rc = sl_prg_keystream_only(t, nterms, dim, threads);
    double dt = now() - t0;
    free(t);
    return rc ? -1 : dt;
}

static void bench_client(void)
{
    for (unsigned threads = 1; threads <= 2; threads++) {
        sl_secagg_sim_opts_t o = {.n = 64, .dim = 1u << 20, .dropout = 0, .k = 40, .bits = 32, .seed = 11,
                                  .server_threads = threads, .client_threads = threads};
        sl_secagg_sim_result_t r;
        if (run(&o, &r) || r.rc)
            continue;
        /* The floor, measured right after: the k + 1 keystreams one client needs. */
        double floor = keystream(r.k + 1, o.dim, threads);
        printf("{\"name\":\"secagg_client\",\"clients\":%zu,\"dim\":%zu,\"neighbors\":%zu,\"threshold\":%zu,"
               "\"threads\":%u,\"median_s\":%.4f,\"p10_s\":%.4f,\"p90_s\":%.4f,\"max_s\":%.4f,\"unit\":\"s\","
               "\"quantize_s\":%.4f,\"keystream_floor_s\":%.4f,\"ratio_vs_floor\":%.3f,\"target_s\":0.2,"
               "\"correct\":%s}\n",
               o.n, o.dim, r.k, r.t, threads, r.client_time_median, r.client_time_p10, r.client_time_p90,
               r.client_time_max, r.client_quant_time, floor, r.client_time_median / floor,
               r.correct ? "true" : "false");
        fflush(stdout);
    }
}

static void bench_server(int only_first)
{
    static const struct {
        unsigned bits;
        int drop_stage;
        const char *pattern;
    } cfgs[] = {{32, 0, "spread"}, {32, 3, "all-at-masked-input"}, {16, 0, "spread"}, {8, 0, "spread"}};
    size_t ncfg = only_first ? 2 : sizeof cfgs / sizeof cfgs[0];
    for (size_t c = 0; c < ncfg; c++) {
        sl_secagg_sim_opts_t o = {.n = 1000, .dim = 1u << 20, .dropout = 0.1, .tolerance = 0.1,
                                  .bits = cfgs[c].bits, .drop_stage = cfgs[c].drop_stage, .seed = 21 + c,
                                  .server_threads = 2, .client_threads = 2, .measure_floor = 5};
        sl_secagg_sim_result_t r;
        if (run(&o, &r) || r.rc)
            continue;
        printf("{\"name\":\"secagg_server\",\"clients\":%zu,\"dim\":%zu,\"dropout\":%.2f,\"dropout_pattern\":\"%s\","
               "\"neighbors\":%zu,\"threshold\":%zu,\"bits\":%u,\"mod_bits\":%u,\"threads\":2,\"included\":%zu,"
               "\"unmask_s\":%.3f,\"unit\":\"s\",\"prg_terms\":%zu,\"keystream_floor_s\":%.3f,"
               "\"keystream_floor_min_s\":%.3f,\"ratio_vs_floor\":%.3f,\"ratio_vs_fastest_floor\":%.3f,"
               "\"unmask_other_s\":%.3f,\"replay_apply_s\":%.3f,\"replay_floor_s\":%.3f,\"ratio_interleaved\":%.3f,\"target_ratio\":1.5,\"server_total_s\":%.3f,\"server_collect_s\":%.3f,"
               "\"client_median_s\":%.4f,\"bytes_up\":%.0f,\"bytes_down\":%.0f,\"raw_float32_bytes\":%.0f,"
               "\"expansion\":%.5f,\"packed_input_bytes\":%.0f,\"overhead_vs_packed\":%.5f,\"correct\":%s}\n",
               o.n, o.dim, o.dropout, cfgs[c].pattern, r.k, r.t, r.bits, r.mod_bits, r.included,
               r.server_unmask_time, r.prg_terms, r.keystream_floor, r.keystream_floor_min,
               r.server_unmask_time / r.keystream_floor, r.server_unmask_time / r.keystream_floor_min,
               r.unmask_other, r.replay_apply, r.replay_floor, r.unmask_ratio,
               r.server_time, r.server_collect_time, r.client_time_median, r.bytes_up, r.bytes_down, r.raw_bytes,
               r.expansion, ceil((double)o.dim * r.mod_bits / 8.0),
               r.bytes_up / ceil((double)o.dim * r.mod_bits / 8.0), r.correct ? "true" : "false");
        fflush(stdout);
    }
}

static void bench_scaling(void)
{
    static const size_t ns[] = {100, 1000, 10000};
    for (size_t i = 0; i < 3; i++) {
        sl_secagg_sim_opts_t o = {.n = ns[i], .dim = 1u << 16, .dropout = 0.1, .tolerance = 0.1, .bits = 32,
                                  .seed = 31 + i, .server_threads = 1, .client_threads = 1, .measure_floor = 1};
        sl_secagg_sim_result_t r;
        if (run(&o, &r) || r.rc)
            continue;
        double n = (double)o.n;
        printf("{\"name\":\"secagg_scaling\",\"clients\":%zu,\"dim\":%zu,\"dropout\":0.1,\"neighbors\":%zu,"
               "\"threshold\":%zu,\"threads\":1,\"client_median_s\":%.5f,\"client_p90_s\":%.5f,\"server_s\":%.4f,"
               "\"server_collect_s\":%.4f,\"server_unmask_s\":%.4f,\"keystream_floor_s\":%.4f,\"prg_terms\":%zu,"
               "\"server_per_nlogn_us\":%.4f,\"server_per_n2_ns\":%.4f,\"unit\":\"s\",\"correct\":%s}\n",
               o.n, o.dim, r.k, r.t, r.client_time_median, r.client_time_p90, r.server_time, r.server_collect_time,
               r.server_unmask_time, r.keystream_floor, r.prg_terms, 1e6 * r.server_time / (n * log2(n)),
               1e9 * r.server_time / (n * n), r.correct ? "true" : "false");
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    if (sl_csprng_init() != 0)
        return 1;
    const char *what = argc > 1 ? argv[1] : "all";
    int all = strcmp(what, "all") == 0;
    if (all || strcmp(what, "client") == 0)
        bench_client();
    if (all || strcmp(what, "scaling") == 0)
        bench_scaling();
    if (all || strcmp(what, "server") == 0)
        bench_server(0);
    if (strcmp(what, "unmask") == 0) /* the two 32-bit server cases only */
        bench_server(1);
    return 0;
}
