/* bench/fed_overhead: coordinator cost of a federated round, without client training.
 *
 * For each configuration a coordinator process (ROUTER on tcp://127.0.0.1) and a client
 * process (N virtual clients, one DEALER each, one zmq_poll) run R rounds of FedAvg with
 * fraction 1; clients "train" instantly by copying a prepared delta. Reported per config:
 *   round_seconds        wall time per round (median, min, max over rounds 2..R)
 *   coord_cpu_seconds    coordinator process CPU (user + sys, incl. libzmq I/O thread) per round
 *   bytes_up / bytes_down per round on the wire (headers + payloads) vs the raw update bytes
 *                        (clients x dim x 4): protocol overhead in percent
 *   coord_peak_rss_kb    coordinator process peak RSS (getrusage ru_maxrss)
 *   floor_memcpy_seconds the physical floor: memcpy of the same bytes (up + down) once
 * upload_credits = engine max_uploads (0 = clients upload as soon as they trained);
 * malloc_mmap_threshold = mallopt(M_MMAP_THRESHOLD) in the coordinator (0 = glibc default).
 * One JSON object per configuration on stdout.
 */
#define _GNU_SOURCE
#include "client/runtime.h"
#include "coordinator/engine.h"
#include "coordinator/server.h"
#include "core/log.h"
#include "core/transport.h"

#include <malloc.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 32

typedef struct {
    int ok;
    size_t rounds;
    double round_s[MAX_ROUNDS];
    double cpu_s[MAX_ROUNDS];
    double up[MAX_ROUNDS], down[MAX_ROUNDS];
    size_t reported[MAX_ROUNDS];
    long peak_rss_kb;
    long rss_before_kb;
} result_t;

typedef struct {
    result_t *res;
    double last_cpu;
} prog_t;

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static long rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void progress(void *ctx, const sl_round_report_t *r)
{
    prog_t *p = ctx;
    result_t *res = p->res;
    if (res->rounds >= MAX_ROUNDS)
        return;
    double c = cpu_now();
    size_t i = res->rounds++;
    res->round_s[i] = r->round_seconds;
    res->cpu_s[i] = c - p->last_cpu;
    p->last_cpu = c;
    res->up[i] = (double)r->bytes_up;
    res->down[i] = (double)r->bytes_down;
    res->reported[i] = r->reported;
    if (getenv("FED_BENCH_DEBUG"))
        fprintf(stderr, "round %llu: maxrss %ld kB, %.3f s\n", (unsigned long long)r->round, rss_kb(),
                r->round_seconds);
}

static const float *g_delta;
static int train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                 sl_update_info_t *info)
{
    size_t dim = *(const size_t *)ctx;
    (void)global, (void)task;
    memcpy(delta, g_delta, dim * sizeof *delta);
    info->examples = 100;
    info->steps = 1;
    info->train_loss = 1.0;
    return 0;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void run_clients(const char *endpoint, size_t n, size_t dim)
{
    float *delta = malloc(dim * sizeof *delta), *scratch = malloc(dim * sizeof *scratch);
    for (size_t j = 0; j < dim; j++)
        delta[j] = (float)((int)(j % 7) - 3) * 1e-3f;
    g_delta = delta;
    sl_client_t **cl = calloc(n, sizeof *cl);
    for (size_t i = 0; i < n; i++) {
        sl_client_opts_t co = {.client_id = i + 1,
                               .dim = dim,
                               .train_examples = 100,
                               .scratch = scratch,
                               .ctx = &dim,
                               .train = train,
                               .hello_retry_s = 1.0};
        if (sl_client_new(&cl[i], &co))
            _exit(3);
    }
    sl_client_runtime_opts_t ro = {.transport = {.endpoint = endpoint, .heartbeat_ms = 2000},
                                   .coordinator_timeout = 60};
    int rc = sl_client_run(cl, n, &ro);
    if (rc)
        fprintf(stderr, "clients: %s\n", sl_last_error());
    for (size_t i = 0; i < n; i++)
        sl_client_destroy(&cl[i]);
    free(cl);
    _exit(rc ? 1 : 0);
}

static int run_config(size_t nclients, size_t dim, size_t rounds, int mmap_threshold, size_t credits,
                      result_t *out)
{
    int epipe[2], rpipe[2];
    if (pipe(epipe) || pipe(rpipe))
        return -1;
    pid_t coord = fork();
    if (coord == 0) {
        if (getenv("FED_BENCH_PIN")) { /* coordinator on CPU 0, clients on CPU 1 */
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(0, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        close(epipe[0]);
        close(rpipe[0]);
        /* glibc keeps freed 200 KB messages of libzmq's I/O thread in per-thread arenas; a
         * fixed mmap threshold returns them to the OS, so RSS shows what is really live */
        if (mmap_threshold)
            mallopt(M_MMAP_THRESHOLD, mmap_threshold);
        result_t res;
        memset(&res, 0, sizeof res);
        res.rss_before_kb = rss_kb();
        sl_config_t cfg;
        sl_config_defaults(&cfg);
        cfg.federation.rounds = (int64_t)rounds;
        cfg.federation.fraction = 1;
        cfg.federation.min_clients = (int64_t)nclients;
        cfg.federation.round_timeout = 600;
        cfg.federation.eval_every = 0;
        cfg.net.max_messages_per_second = 1000000;
        float *init = calloc(dim, sizeof *init);
        sl_engine_t *e = NULL;
        sl_transport_t *t = NULL;
        sl_engine_opts_t o = {
            .cfg = &cfg, .dim = dim, .init = init, .start_clients = nclients, .max_uploads = credits};
        sl_transport_opts_t to = {
            .role = SL_TRANSPORT_SERVER, .endpoint = "tcp://127.0.0.1:*", .heartbeat_ms = 2000};
        if (sl_engine_new(&e, &o) || sl_transport_new(&t, NULL, &to)) {
            fprintf(stderr, "coordinator: %s\n", sl_last_error());
            _exit(2);
        }
        char ep[256];
        snprintf(ep, sizeof ep, "%s", sl_transport_endpoint(t));
        if (write(epipe[1], ep, sizeof ep) != (ssize_t)sizeof ep)
            _exit(2);
        prog_t p = {&res, cpu_now()};
        int rc = sl_coordinator_run(e, t, NULL, progress, &p);
        res.ok = rc == 0;
        res.peak_rss_kb = rss_kb();
        if (rc)
            fprintf(stderr, "coordinator: %s\n", sl_last_error());
        sl_transport_destroy(&t);
        sl_engine_destroy(&e);
        free(init);
        if (write(rpipe[1], &res, sizeof res) != (ssize_t)sizeof res)
            _exit(2);
        _exit(0);
    }
    close(epipe[1]);
    close(rpipe[1]);
    char ep[256];
    if (read(epipe[0], ep, sizeof ep) != (ssize_t)sizeof ep)
        return -1;
    pid_t cli = fork();
    if (cli == 0) {
        if (getenv("FED_BENCH_PIN")) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(1, &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        run_clients(ep, nclients, dim);
    }
    ssize_t got = read(rpipe[0], out, sizeof *out);
    int st;
    waitpid(coord, &st, 0);
    waitpid(cli, &st, 0);
    close(epipe[0]);
    close(rpipe[0]);
    return got == (ssize_t)sizeof *out && out->ok ? 0 : -1;
}

static double memcpy_floor(size_t bytes)
{
    size_t chunk = 1 << 22;
    char *a = malloc(chunk), *b = malloc(chunk);
    memset(a, 1, chunk);
    memset(b, 2, chunk);
    double best = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = sl_now();
        for (size_t done = 0; done < bytes; done += chunk) {
            memcpy(b, a, chunk);
            a[done % chunk] ^= b[(done * 7) % chunk]; /* keep the copies observable */
        }
        double dt = sl_now() - t0;
        volatile char sink = b[rep];
        (void)sink;
        if (dt < best)
            best = dt;
    }
    free(a);
    free(b);
    return best * ((double)bytes / (double)(((bytes + chunk - 1) / chunk) * chunk));
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    sl_log_set_level(SL_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct {
        size_t clients, dim, rounds;
        int mmap;
        size_t credits;
    } cfgs[] = {{10, 50000, 12, 65536, 32}, {100, 50000, 12, 65536, 32}, {1000, 50000, 6, 65536, 32},
                {1000, 500, 6, 65536, 32},  {100, 5000, 12, 65536, 32},  {10, 50000, 12, 65536, 0},
                {100, 50000, 12, 65536, 0}, {1000, 50000, 6, 65536, 0},  {1000, 50000, 6, 0, 0}};
    size_t ncfg = sizeof cfgs / sizeof cfgs[0];
    const char *only = getenv("FED_BENCH_CONFIG"); /* "clients,dim,rounds": one configuration */
    if (only && sscanf(only, "%zu,%zu,%zu,%zu", &cfgs[0].clients, &cfgs[0].dim, &cfgs[0].rounds,
                       &cfgs[0].credits) >= 3)
        ncfg = 1;
    for (size_t c = 0; c < ncfg; c++) {
        result_t r;
        memset(&r, 0, sizeof r);
        if (run_config(cfgs[c].clients, cfgs[c].dim, cfgs[c].rounds, cfgs[c].mmap, cfgs[c].credits, &r) !=
                0 ||
            r.rounds < 2) {
            printf("{\"name\":\"fed_overhead\",\"clients\":%zu,\"dim\":%zu,\"error\":\"run failed\"}\n",
                   cfgs[c].clients, cfgs[c].dim);
            continue;
        }
        /* drop round 1 (warm-up: connections, first allocations) */
        size_t n = r.rounds - 1;
        double rs[MAX_ROUNDS], cpu[MAX_ROUNDS], up = 0, down = 0, raw = 0;
        for (size_t i = 0; i < n; i++) {
            rs[i] = r.round_s[i + 1];
            cpu[i] = r.cpu_s[i + 1];
            up += r.up[i + 1];
            down += r.down[i + 1];
            raw += (double)r.reported[i + 1] * (double)cfgs[c].dim * 4.0;
        }
        up /= (double)n, down /= (double)n, raw /= (double)n;
        double rmin = INFINITY, rmax = 0;
        for (size_t i = 0; i < n; i++)
            rmin = fmin(rmin, rs[i]), rmax = fmax(rmax, rs[i]);
        double floor = memcpy_floor((size_t)(up + down));
        double rmed = median(rs, n), cmed = median(cpu, n);
        printf(
            "{\"name\":\"fed_overhead\",\"clients\":%zu,\"dim\":%zu,\"malloc_mmap_threshold\":%d,\"upload_"
            "credits\":%zu,"
            "\"rounds_measured\":%zu,"
            "\"round_seconds_median\":%.6f,\"round_seconds_min\":%.6f,\"round_seconds_max\":%.6f,"
            "\"coord_cpu_seconds_median\":%.6f,\"bytes_up_per_round\":%.0f,\"bytes_down_per_round\":%.0f,"
            "\"raw_update_bytes_per_round\":%.0f,\"overhead_up_percent\":%.4f,\"overhead_down_percent\":%.4f,"
            "\"coord_peak_rss_kb\":%ld,\"coord_rss_at_start_kb\":%ld,\"floor_memcpy_seconds\":%.6f,"
            "\"round_vs_memcpy_floor\":%.1f,\"unit\":\"seconds\"}\n",
            cfgs[c].clients, cfgs[c].dim, cfgs[c].mmap, cfgs[c].credits, n, rmed, rmin, rmax, cmed, up, down,
            raw, 100.0 * (up / raw - 1.0), 100.0 * (down / raw - 1.0), r.peak_rss_kb, r.rss_before_kb, floor,
            rmed / floor);
        fflush(stdout);
    }
    return 0;
}
