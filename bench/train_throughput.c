/* bench/train_throughput: training samples/s of the default HAPT model, starling vs PyTorch.
 *
 * Work per step (both sides): forward + backward + AdamW update (lr 3e-3, wd 0.01) of the default
 * HAPT model (d=64, L=2, 4 heads, mlp_ratio 2, patch 16, acc+gyro (128, 3) -> 17 tokens, 6
 * classes), LoRA r=4 alpha=8 on q,k,v,o, base frozen, batch 32 of synthetic data.
 *
 * For a thread budget T in {1, 2}: starling runs with T OpenBLAS threads and, for T = 2, also with
 * the batch split across T threads (sl_model_set_threads) over 1-thread OpenBLAS; PyTorch runs as persistent
 * subprocesses (bench/torch_train_throughput.py via /usr/bin/python3) in every variant within
 * the same budget: torch threads x OPENBLAS_NUM_THREADS in {1..T}^2 x OMP_WAIT_POLICY
 * {passive, active}, AdamW foreach=1 (and foreach=0 at T=1, which shows it is slower). Runs are interleaved
 * (starling, torch variants, starling, ...), REPEATS times STEPS steps after warm-up; medians and min/max are
 * reported, and the ratio is against the fastest torch variant. The physical floor: OpenBLAS sgemm GFLOP/s on
 * exactly the matmul shapes one starling step executes, and the GFLOP/s the whole step achieves on those
 * matmuls. step_gemm_mflop is what starling executes (the last block computes Q, O and the MLP for the CLS
 * row only, as CLS pooling needs nothing else; frozen weights get no dW); nominal_gemm_mflop is the same step
 * with the full last block, as the PyTorch twin computes it.
 * Prints one JSON object per thread count on stdout; progress on stderr.
 * Options: --no-torch (starling only), --profile N (N starling steps at 1 thread, no output).
 */
#define _GNU_SOURCE /* pipe2 */
#include "core/batch.h"
#include "core/config.h"
#include "core/model.h"
#include "core/rng.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH        32
#define STEPS        30
#define REPEATS      5
#define MAX_VARIANTS 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* 1-minute load average (context: these machines are shared), or -1. */
static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* ---- starling side ---------------------------------------------------------------------- */

typedef struct {
    sl_model_t *m;
    sl_batch_t batch;
    sl_rng_t rng;
    float *mom, *vel;
    size_t n, t;
} cside;

static void adamw_step(cside *c)
{
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.01f;
    float *w = sl_model_trainable(c->m, NULL);
    const float *g = sl_model_trainable_grad(c->m);
    c->t++;
    float c1 = 1.0f / (1.0f - powf(b1, (float)c->t)), c2 = 1.0f / (1.0f - powf(b2, (float)c->t));
    for (size_t i = 0; i < c->n; i++) {
        w[i] -= lr * wd * w[i];
        c->mom[i] = b1 * c->mom[i] + (1 - b1) * g[i];
        c->vel[i] = b2 * c->vel[i] + (1 - b2) * g[i] * g[i];
        w[i] -= lr * (c->mom[i] * c1) / (sqrtf(c->vel[i] * c2) + eps);
    }
}

static double c_run(cside *c, int steps)
{
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        float loss;
        sl_model_zero_grad(c->m);
        if (sl_model_forward(c->m, &c->batch, 1, &c->rng, &loss) != 0 || sl_model_backward(c->m) != 0) {
            fprintf(stderr, "step failed: %s\n", sl_last_error());
            exit(1);
        }
        adamw_step(c);
    }
    return now() - t0;
}

/* ---- sgemm floor -------------------------------------------------------------------------- */

typedef struct {
    int ta, tb;
    size_t M, N, K;
} gemm_t;

static size_t add(gemm_t *g, size_t n, int ta, int tb, size_t M, size_t N, size_t K)
{
    g[n] = (gemm_t){ta, tb, M, N, K};
    return n + 1;
}

/* The sgemm calls of one starling LoRA step on this model (mirrors core/model.c). */
static size_t step_gemms(gemm_t *g, size_t B, size_t N, size_t d, size_t H, size_t r, size_t K, size_t L,
                         int prune)
{
    size_t n = 0, tok = (N - 1) / 2;
    for (int m = 0; m < 2; m++)
        n = add(g, n, 0, 1, B * tok, d, 48);
    for (size_t l = 0; l < L; l++) {
        size_t nq = prune && l + 1 == L ? 1 : N, rows = B * N, rq = B * nq;
        if (nq == N)
            n = add(g, n, 0, 1, rows, 3 * d, d);
        else
            n = add(g, n, 0, 1, rows, 2 * d, d), n = add(g, n, 0, 1, B, d, d);
        for (int j = 0; j < 3; j++) {
            size_t rr = j == 0 ? rq : rows;
            n = add(g, n, 0, 1, rr, r, d), n = add(g, n, 0, 1, rr, d, r);
        }
        n = add(g, n, 0, 1, rq, d, d), n = add(g, n, 0, 1, rq, r, d), n = add(g, n, 0, 1, rq, d, r);
        n = add(g, n, 0, 1, rq, H, d), n = add(g, n, 0, 1, rq, d, H);
    }
    n = add(g, n, 0, 1, B, K, d);
    n = add(g, n, 1, 0, K, d, B), n = add(g, n, 0, 0, B, d, K);
    for (size_t l = L; l-- > 0;) {
        size_t nq = prune && l + 1 == L ? 1 : N, rows = B * N, rq = B * nq;
        n = add(g, n, 0, 0, rq, H, d), n = add(g, n, 0, 0, rq, d, H);
        n = add(g, n, 0, 0, rq, d, d);
        n = add(g, n, 1, 0, d, r, rq), n = add(g, n, 0, 0, rq, r, d), n = add(g, n, 1, 0, r, d, rq);
        n = add(g, n, 0, 0, rq, d, r);
        int need_in = l > 0;
        if (need_in) {
            if (nq == N)
                n = add(g, n, 0, 0, rows, d, 3 * d);
            else
                n = add(g, n, 0, 0, rows, d, 2 * d), n = add(g, n, 0, 0, B, d, d);
        }
        for (int j = 0; j < 3; j++) {
            size_t rr = j == 0 ? rq : rows;
            n = add(g, n, 1, 0, d, r, rr), n = add(g, n, 0, 0, rr, r, d), n = add(g, n, 1, 0, r, d, rr);
            if (need_in)
                n = add(g, n, 0, 0, rr, d, r);
        }
    }
    return n;
}

/* GFLOP/s of OpenBLAS running exactly these calls back to back for ~0.15 s, on nthreads
 * application threads at once (each with its own buffers; 1 = just this thread). */
typedef struct {
    const gemm_t *g;
    size_t n;
    double flops, deadline, elapsed;
    long iters;
} gemm_job;

static void *gemm_loop(void *arg)
{
    gemm_job *j = arg;
    size_t big = 0;
    for (size_t i = 0; i < j->n; i++) {
        size_t s = j->g[i].M * j->g[i].K + j->g[i].K * j->g[i].N + j->g[i].M * j->g[i].N;
        big = s > big ? s : big;
    }
    float *buf = calloc(3 * big, sizeof(float));
    if (!buf)
        return NULL;
    for (size_t i = 0; i < 3 * big; i++)
        buf[i] = (float)(i % 7) * 0.1f;
    double t0 = now();
    do {
        for (size_t i = 0; i < j->n; i++) {
            const gemm_t *c = &j->g[i];
            float *A = buf, *Bm = buf + big, *C = buf + 2 * big;
            blasint lda = (blasint)(c->ta ? c->M : c->K), ldb = (blasint)(c->tb ? c->K : c->N);
            cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans,
                        (blasint)c->M, (blasint)c->N, (blasint)c->K, 1.0f, A, lda, Bm, ldb, 1.0f, C,
                        (blasint)c->N);
        }
        j->iters++;
    } while (now() < j->deadline);
    j->elapsed = now() - t0;
    free(buf);
    return NULL;
}

static double sgemm_gflops(const gemm_t *g, size_t n, int nthreads, double *flops_out)
{
    double flops = 0;
    for (size_t i = 0; i < n; i++)
        flops += 2.0 * (double)g[i].M * (double)g[i].N * (double)g[i].K;
    gemm_job jobs[8];
    pthread_t th[8];
    double deadline = now() + 0.15;
    for (int t = 0; t < nthreads; t++)
        jobs[t] = (gemm_job){g, n, flops, deadline, 0, 0};
    for (int t = 1; t < nthreads; t++)
        pthread_create(&th[t], NULL, gemm_loop, &jobs[t]);
    gemm_loop(&jobs[0]);
    for (int t = 1; t < nthreads; t++)
        pthread_join(th[t], NULL);
    double total = 0, el = 0;
    for (int t = 0; t < nthreads; t++) {
        total += flops * (double)jobs[t].iters;
        el = fmax(el, jobs[t].elapsed);
    }
    if (flops_out)
        *flops_out = flops;
    return el > 0 ? total / el / 1e9 : 0;
}

/* ---- torch side --------------------------------------------------------------------------- */

typedef struct {
    int torch_threads, blas_threads, active, foreach;
    pid_t pid;
    FILE *in, *out;
    char info[4096];
    double sps[REPEATS];
    int ok;
} tvariant;

static int spawn(tvariant *v, const char *script)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC)) /* no other variant inherits these */
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]), close(to[1]), close(from[0]), close(from[1]);
        char bt[16], tt[16], fe[16];
        snprintf(bt, sizeof bt, "%d", v->blas_threads);
        snprintf(tt, sizeof tt, "%d", v->torch_threads);
        snprintf(fe, sizeof fe, "%d", v->foreach);
        setenv("OPENBLAS_NUM_THREADS", bt, 1);
        setenv("OMP_NUM_THREADS", tt, 1);
        setenv("OMP_WAIT_POLICY", v->active ? "ACTIVE" : "PASSIVE", 1);
        execl("/usr/bin/python3", "python3", script, tt, fe, (char *)NULL);
        _exit(127);
    }
    close(to[0]), close(from[1]);
    v->pid = pid;
    v->in = fdopen(to[1], "w");
    v->out = fdopen(from[0], "r");
    if (!v->in || !v->out || !fgets(v->info, sizeof v->info, v->out) || !strstr(v->info, "\"ready\""))
        return -1;
    v->info[strcspn(v->info, "\n")] = 0;
    v->ok = 1;
    kill(pid, SIGSTOP);
    return 0;
}

/* Variants not being measured are SIGSTOPped: with OMP_WAIT_POLICY=active their idle OpenMP
 * workers would otherwise spin and steal the cores of whoever is being measured. */
static double t_run(tvariant *v, int steps)
{
    char line[128];
    kill(v->pid, SIGCONT);
    fprintf(v->in, "run %d\n", steps);
    fflush(v->in);
    char *ok = fgets(line, sizeof line, v->out);
    kill(v->pid, SIGSTOP);
    if (!ok) {
        v->ok = 0;
        return NAN;
    }
    return atof(line);
}

static void stop(tvariant *v)
{
    if (v->pid > 0)
        kill(v->pid, SIGCONT);
    if (v->in) {
        fprintf(v->in, "quit\n");
        fclose(v->in);
    }
    if (v->out)
        fclose(v->out);
    if (v->pid > 0)
        waitpid(v->pid, NULL, 0);
}

/* ---- main --------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    int with_torch = !(argc > 1 && strcmp(argv[1], "--no-torch") == 0);
    char script[2048];
    const char *src = getenv("SL_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/bench/torch_train_throughput.py", src ? src : ".");
    if (with_torch && (access("/usr/bin/python3", X_OK) != 0 || access(script, R_OK) != 0 ||
                       system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)) {
        fprintf(stderr,
                "torch reference unavailable (need /usr/bin/python3 with torch and %s; set SL_SOURCE_DIR)\n",
                script);
        with_torch = 0;
    }
    signal(SIGPIPE, SIG_IGN);

    sl_config_t cfg;
    sl_config_defaults(&cfg); /* d=64 L=2 heads=4 mlp 2 patch 16, lora r=4 alpha 8 on q,k,v,o */
    sl_schema_t s;
    memset(&s, 0, sizeof s);
    s.n_modalities = 2;
    s.n_classes = 6;
    for (int k = 0; k < 2; k++) {
        snprintf(s.modalities[k].name, SL_NAME_MAX, "%s", k ? "gyro" : "acc");
        s.modalities[k].kind = SL_MOD_TIMESERIES;
        s.modalities[k].dims[0] = 128;
        s.modalities[k].dims[1] = 3;
    }
    cside c;
    memset(&c, 0, sizeof c);
    if (sl_model_new(&c.m, &cfg, &s) != 0 || sl_batch_init(&c.batch, &s, BATCH) != 0) {
        fprintf(stderr, "setup: %s\n", sl_last_error());
        return 1;
    }
    char desc[256];
    sl_model_describe(c.m, desc, sizeof desc);
    fprintf(stderr, "model: %s\n", desc);
    sl_rng_init(&c.rng, 1, "bench", 0, 0);
    c.batch.size = BATCH;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < BATCH * 384; i++)
            c.batch.x[k][i] = (float)sl_rng_normal(&c.rng);
    for (size_t i = 0; i < BATCH; i++) {
        c.batch.present[2 * i] = c.batch.present[2 * i + 1] = 1;
        c.batch.labels[i] = (int32_t)sl_rng_below(&c.rng, 6);
    }
    sl_model_trainable(c.m, &c.n);
    c.mom = calloc(c.n, sizeof(float));
    c.vel = calloc(c.n, sizeof(float));
    { /* LoRA B starts at 0; give it values so every matmul does real work */
        float *w = sl_model_trainable(c.m, NULL);
        for (size_t i = 0; i < c.n; i++)
            w[i] += 0.01f * (float)sl_rng_normal(&c.rng);
    }

    if (argc > 2 && strcmp(argv[1], "--profile") == 0) { /* just N steps at 1 thread, for perf */
        sl_blas_set_threads(1);
        double el = c_run(&c, atoi(argv[2]));
        fprintf(stderr, "%.1f samples/s\n", atoi(argv[2]) * BATCH / el);
        return 0;
    }
    gemm_t g[256];
    size_t ng = step_gemms(g, BATCH, sl_model_tokens(c.m), 64, 128, 4, 6, 2, 1);
    gemm_t gfull[256]; /* the same step without the CLS-only last block: what PyTorch computes */
    size_t ngfull = step_gemms(gfull, BATCH, sl_model_tokens(c.m), 64, 128, 4, 6, 2, 0);
    double nominal_flops = 0;
    for (size_t i = 0; i < ngfull; i++)
        nominal_flops += 2.0 * (double)gfull[i].M * (double)gfull[i].N * (double)gfull[i].K;

    for (int T = 1; T <= 2; T++) {
        /* starling modes: OpenBLAS with T threads; for T > 1 also the batch split across T
         * threads (sl_model_set_threads) with single-threaded OpenBLAS */
        int nmodes = T == 1 ? 1 : 2;
        double load_start = loadavg();
        double floor_gf[2][REPEATS], gemm_flops = 0;
        /* the split's floor: T application threads, each 1-thread sgemms on 1/T of the batch */
        gemm_t gh[256];
        size_t ngh = step_gemms(gh, BATCH / (size_t)T, sl_model_tokens(c.m), 64, 128, 4, 6, 2, 1);
        for (size_t i = 0; i < ng; i++)
            gemm_flops += 2.0 * (double)g[i].M * (double)g[i].N * (double)g[i].K;
        tvariant tv[MAX_VARIANTS];
        int nv = 0;
        if (with_torch)
            for (int tt = 1; tt <= T; tt++)
                for (int bt = 1; bt <= T; bt++)
                    for (int act = 0; act < 2; act++)
                        for (int fe = 1; fe >= (T == 1 ? 0 : 1); fe--) { /* foreach=0 is slower: T=1 only */
                            tvariant *v = &tv[nv];
                            memset(v, 0, sizeof *v);
                            *v = (tvariant){
                                .torch_threads = tt, .blas_threads = bt, .active = act, .foreach = fe};
                            if (spawn(v, script) != 0) {
                                fprintf(stderr, "torch variant failed to start\n");
                                stop(v);
                                continue;
                            }
                            nv++;
                        }
        for (int md = 0; md < nmodes; md++) { /* warm-up */
            sl_blas_set_threads(md == 0 ? T : 1);
            sl_model_set_threads(c.m, md == 0 ? 1 : T);
            c_run(&c, 20);
        }
        for (int i = 0; i < nv; i++)
            t_run(&tv[i], 5);
        double csps[2][REPEATS];
        for (int rep = 0; rep < REPEATS; rep++) {
            for (int md = 0; md < nmodes; md++) {
                sl_blas_set_threads(md == 0 ? T : 1);
                sl_model_set_threads(c.m, md == 0 ? 1 : T);
                csps[md][rep] = STEPS * BATCH / c_run(&c, STEPS);
                floor_gf[md][rep] = md == 0 ? sgemm_gflops(g, ng, 1, NULL) : sgemm_gflops(gh, ngh, T, NULL);
            }
            for (int i = 0; i < nv; i++)
                tv[i].sps[rep] = STEPS * BATCH / t_run(&tv[i], STEPS);
            fprintf(stderr, "T=%d rep %d: starling %.0f samples/s%s", T, rep, csps[0][rep],
                    nmodes > 1 ? "" : "\n");
            if (nmodes > 1)
                fprintf(stderr, ", batch split %.0f samples/s\n", csps[1][rep]);
        }
        sl_model_set_threads(c.m, 1);
        int best = -1;
        double best_med = 0, tmed[MAX_VARIANTS], tmin[MAX_VARIANTS], tmax[MAX_VARIANTS];
        for (int i = 0; i < nv; i++) {
            tmin[i] = tmax[i] = tv[i].sps[0];
            for (int rep = 0; rep < REPEATS; rep++)
                tmin[i] = fmin(tmin[i], tv[i].sps[rep]), tmax[i] = fmax(tmax[i], tv[i].sps[rep]);
            tmed[i] = tv[i].ok ? median(tv[i].sps, REPEATS) : 0;
            if (tv[i].ok && tmed[i] > best_med)
                best_med = tmed[i], best = i;
        }
        for (int md = 0; md < nmodes; md++) {
            double cmin = csps[md][0], cmax = csps[md][0];
            for (int rep = 0; rep < REPEATS; rep++)
                cmin = fmin(cmin, csps[md][rep]), cmax = fmax(cmax, csps[md][rep]);
            double cmed = median(csps[md], REPEATS);
            double step_s = BATCH / cmed, floor_med = median(floor_gf[md], REPEATS);
            printf("{\"name\": \"train_throughput\", \"model\": \"hapt-default d64 L2 h4 mlp2 tokens17 "
                   "lora-r4-qkvo\", "
                   "\"batch\": %d, \"threads\": %d, \"starling_threading\": \"%s\", \"steps\": %d, "
                   "\"repeats\": %d, "
                   "\"unit\": \"samples/s\", \"median\": %.1f, \"min\": %.1f, \"max\": %.1f, "
                   "\"sgemm_gflops_on_step_shapes\": %.2f, \"step_gemm_mflop\": %.2f, "
                   "\"nominal_gemm_mflop\": %.2f, "
                   "\"achieved_gflops\": %.2f, \"fraction_of_sgemm_floor\": %.3f, \"loadavg\": [%.2f, %.2f]",
                   BATCH, T, md == 0 ? "openblas" : "batch-split, openblas 1", STEPS, REPEATS, cmed, cmin,
                   cmax, floor_med, gemm_flops / 1e6, nominal_flops / 1e6, gemm_flops / step_s / 1e9,
                   gemm_flops / step_s / 1e9 / floor_med, load_start, loadavg());
            if (best >= 0) {
                printf(", \"torch_median\": %.1f, \"torch_min\": %.1f, \"torch_max\": %.1f, \"ratio\": %.2f, "
                       "\"torch_best\": {\"torch_threads\": %d, \"blas_threads\": %d, \"omp_wait\": \"%s\", "
                       "\"adamw_foreach\": %d}, \"torch_variants\": [",
                       best_med, tmin[best], tmax[best], cmed / best_med, tv[best].torch_threads,
                       tv[best].blas_threads, tv[best].active ? "active" : "passive", tv[best].foreach);
                for (int i = 0; i < nv; i++)
                    printf("%s{\"torch_threads\": %d, \"blas_threads\": %d, \"omp_wait\": \"%s\", "
                           "\"foreach\": %d, "
                           "\"median\": %.1f}",
                           i ? ", " : "", tv[i].torch_threads, tv[i].blas_threads,
                           tv[i].active ? "active" : "passive", tv[i].foreach, tmed[i]);
                printf("], \"torch_info\": %s", tv[best].info);
            } else {
                printf(", \"torch_median\": null, \"ratio\": null");
            }
            printf("}\n");
        }
        fflush(stdout);
        for (int i = 0; i < nv; i++)
            stop(&tv[i]);
    }
    free(c.mom), free(c.vel);
    sl_batch_free(&c.batch);
    sl_model_destroy(&c.m);
    return 0;
}
