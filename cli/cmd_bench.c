/* starling bench <name>: built-in benchmarks. For now: secagg, a whole SecAgg+ round in
 * one process (no sockets) with random inputs and dropouts spread over the four stages. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "privacy/secagg/sim.h"

static const char usage[] =
    "Usage: starling bench secagg --clients N --dim M --dropout P [--neighbors K] [--bits B]\n"
    "                             [--threshold T] [--threads T] [--seed S] [--json]\n\n"
    "Benchmarks:\n"
    "  secagg   one SecAgg+ round, all clients and the server in this process\n\n"
    "Options of secagg:\n"
    "  --clients N      clients (>= 2)\n"
    "  --dim M          coordinates per update (>= 1)\n"
    "  --dropout P      fraction of clients that drop out, spread over the 4 stages, in [0, 0.9)\n"
    "  --neighbors K    neighbours per client (default: chosen from N and P, see docs/secagg.md)\n"
    "  --threshold T    Shamir threshold (default: chosen with K)\n"
    "  --bits B         quantization bits per value, 8..32 (default 32)\n"
    "  --threads T      threads for the server's mask regeneration and each client (default 1)\n"
    "  --seed S         inputs, dropout pattern and graph (default 1)\n"
    "  --json           one JSON object instead of the table\n\n"
    "Prints client time (mean over completing clients), server time, bytes up/down per client,\n"
    "expansion (bytes a client sends in the whole protocol / 4 M, the float32 update) and\n"
    "whether the unmasked sum equals the exact sum of the included inputs. Exit status 1 if\n"
    "the round aborted (too many dropouts for the threshold) or the sum is wrong.\n\n";

static int parse_size(const char *opt, const char *s, size_t lo, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE || s[0] == '-' || v < lo)
        return cli_usage_error("bench", "%s: expected an integer >= %zu, got \"%s\"", opt, lo, s);
    *out = (size_t)v;
    return 0;
}

/* s as a JSON string body: quotes, backslashes and control characters escaped. */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (; *s && o + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            out[o++] = '\\', out[o++] = (char)ch;
        else if (ch < 0x20)
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", ch);
        else
            out[o++] = (char)ch;
    }
    out[o] = '\0';
}

static int run_secagg(int argc, char **argv)
{
    enum {
        OPT_CLIENTS = CLI_OPT_FIRST_FREE,
        OPT_DIM,
        OPT_DROPOUT,
        OPT_NEIGHBORS,
        OPT_THRESHOLD,
        OPT_BITS,
        OPT_THREADS,
        OPT_SEED,
        OPT_JSON
    };
    static const struct option longopts[] = {
        {"clients", required_argument, NULL, OPT_CLIENTS},  {"dim", required_argument, NULL, OPT_DIM},
        {"dropout", required_argument, NULL, OPT_DROPOUT},  {"neighbors", required_argument, NULL, OPT_NEIGHBORS},
        {"threshold", required_argument, NULL, OPT_THRESHOLD}, {"bits", required_argument, NULL, OPT_BITS},
        {"threads", required_argument, NULL, OPT_THREADS},  {"seed", required_argument, NULL, OPT_SEED},
        {"json", no_argument, NULL, OPT_JSON},              CLI_COMMON_LONG_OPTIONS,
        {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    sl_secagg_sim_opts_t o = {.bits = 32, .seed = 1, .server_threads = 1, .client_threads = 1, .measure_floor = 1};
    int json = 0, have_n = 0, have_m = 0, have_p = 0, opt;
    size_t v = 0;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "bench");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        switch (opt) {
        case OPT_CLIENTS:
            if (parse_size("--clients", optarg, 2, &o.n))
                return CLI_EXIT_USAGE;
            have_n = 1;
            break;
        case OPT_DIM:
            if (parse_size("--dim", optarg, 1, &o.dim))
                return CLI_EXIT_USAGE;
            have_m = 1;
            break;
        case OPT_DROPOUT: {
            char *end;
            o.dropout = strtod(optarg, &end);
            if (end == optarg || *end || !(o.dropout >= 0 && o.dropout < 0.9))
                return cli_usage_error("bench", "--dropout: expected a fraction in [0, 0.9), got \"%s\"", optarg);
            have_p = 1;
            break;
        }
        case OPT_NEIGHBORS:
            if (parse_size("--neighbors", optarg, 1, &o.k))
                return CLI_EXIT_USAGE;
            break;
        case OPT_THRESHOLD:
            if (parse_size("--threshold", optarg, 1, &o.t))
                return CLI_EXIT_USAGE;
            break;
        case OPT_BITS:
            if (parse_size("--bits", optarg, 8, &v) || v > 32)
                return cli_usage_error("bench", "--bits: expected 8..32, got \"%s\"", optarg);
            o.bits = (unsigned)v;
            break;
        case OPT_THREADS:
            if (parse_size("--threads", optarg, 1, &v) || v > 64)
                return cli_usage_error("bench", "--threads: expected 1..64, got \"%s\"", optarg);
            o.server_threads = o.client_threads = (unsigned)v;
            break;
        case OPT_SEED:
            if (parse_size("--seed", optarg, 0, &v))
                return CLI_EXIT_USAGE;
            o.seed = v;
            break;
        case OPT_JSON:
            json = 1;
            break;
        default:
            return cli_usage_error("bench", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (!have_n || !have_m || !have_p)
        return cli_usage_error("bench", "secagg needs --clients, --dim and --dropout");
    if (o.n > 1000000)
        return cli_usage_error("bench", "--clients: at most 1000000 in one process");
    sl_secagg_sim_result_t r;
    int rc = sl_secagg_sim_run(&o, &r);
    if (rc)
        return cli_fail("bench", rc);
    double keystream_ratio = r.keystream_floor > 0 ? r.server_unmask_time / r.keystream_floor : 0;
    if (json) {
        char err[1100];
        json_escape(err, sizeof err, r.rc ? r.error : "");
        printf("{\"name\":\"secagg\",\"clients\":%zu,\"dim\":%zu,\"dropout\":%g,\"neighbors\":%zu,\"threshold\":%zu,"
               "\"bits\":%u,\"mod_bits\":%u,\"threads\":%u,\"included\":%zu,\"completed\":%s,\"error\":\"%s\","
               "\"correct\":%s,\"client_s\":%.6f,\"client_max_s\":%.6f,\"quantize_s\":%.6f,\"server_s\":%.6f,"
               "\"server_collect_s\":%.6f,\"server_unmask_s\":%.6f,\"keystream_floor_s\":%.6f,"
               "\"unmask_vs_keystream\":%.3f,\"prg_terms\":%zu,\"bytes_up\":%.0f,\"bytes_down\":%.0f,"
               "\"raw_bytes\":%.0f,\"expansion\":%.5f}\n",
               o.n, o.dim, o.dropout, r.k, r.t, r.bits, r.mod_bits, o.server_threads, r.included,
               r.rc == 0 ? "true" : "false", err, r.correct ? "true" : "false",
               r.client_time_mean, r.client_time_max, r.client_quant_time, r.server_time, r.server_collect_time,
               r.server_unmask_time, r.keystream_floor, keystream_ratio, r.prg_terms, r.bytes_up, r.bytes_down,
               r.raw_bytes, r.expansion);
    } else {
        printf("SecAgg+ round: %zu clients, dim %zu, dropout %g (%zu/%zu/%zu/%zu at stages 1-4)\n", o.n, o.dim,
               o.dropout, r.dropped[1], r.dropped[2], r.dropped[3], r.dropped[4]);
        printf("  neighbours k %zu, threshold t %zu, %u-bit values summed in Z_2^%u\n", r.k, r.t, r.bits,
               r.mod_bits);
        if (r.rc)
            printf("  result        ABORTED: %s\n", r.error);
        else
            printf("  result        %s (%zu inputs in the sum)\n", r.correct ? "equals the plain sum" : "WRONG",
                   r.included);
        printf("  client time   %.4f s mean, %.4f s max (+ %.4f s quantization)\n", r.client_time_mean,
               r.client_time_max, r.client_quant_time);
        printf("  server time   %.4f s total, %.4f s folding inputs, %.4f s unmasking\n", r.server_time,
               r.server_collect_time, r.server_unmask_time);
        printf("  keystream     %.4f s for the %zu masks regenerated (unmasking / keystream = %.2f)\n",
               r.keystream_floor, r.prg_terms, keystream_ratio);
        printf("  bytes/client  %.0f up, %.0f down; raw update %.0f bytes; expansion %.4fx\n", r.bytes_up,
               r.bytes_down, r.raw_bytes, r.expansion);
    }
    if (r.rc)
        fprintf(stderr, "starling bench: the round aborted: %s\n", r.error);
    return r.rc != 0 || !r.correct ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        if (argc >= 2) {
            printf("%s%s", usage, cli_common_help);
            return CLI_EXIT_OK;
        }
        return cli_usage_error("bench", "which benchmark? (available: secagg)");
    }
    if (strcmp(argv[1], "secagg") == 0)
        return run_secagg(argc - 1, argv + 1);
    return cli_usage_error("bench", "unknown benchmark '%s' (available: secagg)", argv[1]);
}
