/* starling coordinator: serve one federated run over ZeroMQ. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zmq.h>

#include "cli/cli.h"
#include "cli/fed.h"
#include "coordinator/dp.h"
#include "coordinator/evaluator.h"
#include "coordinator/identity.h"
#include "coordinator/secagg.h"
#include "coordinator/server.h"
#include "core/layout.h"
#include "core/log.h"
#include "core/safetensors.h"
#include "core/zap.h"

static const char usage[] =
    "Usage: starling coordinator --config FILE [options]\n\n"
    "Run the coordinator of a federation: wait for clients, run federation.rounds rounds,\n"
    "evaluate the global model on the dataset's held-out test split, and write the run\n"
    "folder (<run.out_dir>/<run.name>: config.ini, metrics.jsonl, summary.json, checkpoints/).\n\n"
    "  --run-dir DIR         run folder (default <run.out_dir>/<run.name>)\n"
    "  --resume RUN_DIR      continue a run from its last checkpoint\n"
    "  --start-clients N     registrations to wait for before round 1 (default min_clients)\n"
    "  --key PREFIX          CURVE key pair DIR/NAME (default <net.keys_dir>/coordinator)\n"
    "  --data NAME           dataset (as data.name)\n"
    "  --data-opt K=V        dataset option (repeatable)\n\n"
    "Security: CURVE encryption with an allow-list (net.authorized_clients) unless\n"
    "net.insecure = true; connections capped by net.max_connections and\n"
    "net.max_connections_per_source. SIGHUP reloads the allow-list; SIGINT/SIGTERM stop cleanly.\n\n";

/* What the engine's hooks need; one context for all of them. */
typedef struct {
    sl_evaluator_t eval;
    int has_eval;
    sl_identity_t *identity;
    sl_zap_t *zap; /* NULL without CURVE */
    uint64_t rounds;
    sl_dp_coord_t *dp;       /* dp.mode != off: accountant, clip, budget (coordinator/dp.h) */
} hooks_ctx_t;

static int hook_central_eval(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    hooks_ctx_t *h = ctx;
    if (!h->has_eval)
        return 0;
    return sl_evaluator_hook(&h->eval, round, global, dim, out);
}

static int hook_authorize(void *ctx, uint64_t client_id, const sl_peer_t *peer, const sl_hello_info_t *hello)
{
    hooks_ctx_t *h = ctx;
    return sl_identity_authorize(h->identity, client_id, peer, hello);
}

static int hook_prepare_task(void *ctx, uint64_t round, sl_task_info_t *task)
{
    hooks_ctx_t *h = ctx;
    return h->dp ? sl_dp_coord_prepare_task(h->dp, round, task) : 0;
}

static int hook_round_end(void *ctx, sl_round_report_t *rep, const float *global, size_t dim)
{
    (void)global, (void)dim;
    hooks_ctx_t *h = ctx;
    return h->dp ? sl_dp_coord_round_end(h->dp, rep) : 0;
}

static int hook_ext_save(void *ctx, uint8_t **out, size_t *len)
{
    hooks_ctx_t *h = ctx;
    *out = NULL;
    *len = 0;
    return h->dp ? sl_dp_coord_save(h->dp, out, len) : 0;
}

static int hook_ext_load(void *ctx, const uint8_t *buf, size_t len)
{
    hooks_ctx_t *h = ctx;
    return h->dp ? sl_dp_coord_load(h->dp, buf, len) : 0;
}

static void hook_banned(void *ctx, const sl_peer_t *peer, double seconds)
{
    hooks_ctx_t *h = ctx;
    if (h->zap && peer->user_id[0])
        sl_zap_ban(h->zap, peer->user_id, seconds);
}

/* The transport's configure hook: count the ROUTER's connections from before it binds. */
typedef struct {
    sl_zap_t *zap;
    sl_zap_limits_t limits;
} conn_limits_t;

static int configure_conn_limits(void *zmq_socket, void *ctx)
{
    conn_limits_t *l = ctx;
    return sl_zap_limit_connections(l->zap, zmq_socket, &l->limits);
}

static void on_round(void *ctx, const sl_round_report_t *r)
{
    hooks_ctx_t *h = ctx;
    char acc[32] = "-", eps[32] = "";
    if (isfinite(r->central_accuracy))
        snprintf(acc, sizeof acc, "%.4f", r->central_accuracy);
    else if (isfinite(r->accuracy))
        snprintf(acc, sizeof acc, "%.4f (fed)", r->accuracy);
    if (isfinite(r->epsilon))
        snprintf(eps, sizeof eps, " epsilon %.3f", r->epsilon);
    SL_INFO("round %llu/%llu: accuracy %s, train loss %.4f, clients %zu/%zu (dropped %zu), %.2f MB, %.1f s%s",
            (unsigned long long)r->round, (unsigned long long)h->rounds, acc, r->train_loss, r->reported, r->sampled,
            r->dropped, (double)(r->bytes_up + r->bytes_down) / 1e6, r->round_seconds, eps);
}

/* baseline.json: the global model before any federated round (base-only accuracy). */
static void write_baseline(const char *run_dir, const sl_eval_info_t *ev)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/baseline.json", run_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f, "{\"examples\":%llu,\"loss\":%.17g,\"accuracy\":%.17g,\"macro_f1\":%.17g}\n",
            (unsigned long long)ev->examples, ev->loss, ev->accuracy, ev->macro_f1);
    fclose(f);
}

int cmd_coordinator(int argc, char **argv)
{
    enum { OPT_RUN_DIR = CLI_OPT_FIRST_FREE, OPT_RESUME, OPT_START, OPT_KEY };
    static const struct option longopts[] = {{"run-dir", required_argument, NULL, OPT_RUN_DIR},
                                             {"resume", required_argument, NULL, OPT_RESUME},
                                             {"start-clients", required_argument, NULL, OPT_START},
                                             {"key", required_argument, NULL, OPT_KEY},
                                             CLI_DATA_LONG_OPTIONS,
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *run_dir = NULL, *resume = NULL, *key = NULL;
    long start_clients = 0;
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "coordinator");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        switch (opt) {
        case OPT_RUN_DIR:
            run_dir = optarg;
            break;
        case OPT_RESUME:
            resume = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case OPT_START: {
            char *end;
            start_clients = strtol(optarg, &end, 10);
            if (*end || start_clients < 1)
                return cli_usage_error("coordinator", "--start-clients: expected a positive integer, got \"%s\"",
                                       optarg);
            break;
        }
        default:
            return cli_usage_error("coordinator", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("coordinator", "unexpected argument '%s'", argv[optind]);

    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    sl_log_set_tag("coord");
    /* Update-sized buffers go straight back to the OS when freed, instead of piling up in
     * per-thread malloc arenas while many clients upload at once. */
    mallopt(M_MMAP_THRESHOLD, 65536);
    cli_fed_signals();

    sl_dataset_t *ds = NULL;
    sl_model_t *model = NULL;
    sl_runlog_t *runlog = NULL;
    sl_checkpoint_t ck = {0};
    int have_ck = 0;
    void *zctx = NULL;
    sl_zap_t *zap = NULL;
    sl_transport_t *transport = NULL;
    sl_engine_t *engine = NULL;
    sl_keypair_t *kp = NULL;
    float *init = NULL;
    hooks_ctx_t hooks = {0};
    conn_limits_t conn_limits = {0};

    if ((rc = sl_dataset_open(&ds, &cfg)) != 0 || (rc = cli_fed_model(&cfg, ds, &model)) != 0)
        goto cleanup;
    size_t dim;
    const float *w = sl_model_trainable(model, &dim);
    init = malloc(dim * sizeof *init);
    if (!init) {
        rc = sl_error(SL_ENOMEM, "out of memory");
        goto cleanup;
    }
    memcpy(init, w, dim * sizeof *init);
    {
        size_t trainable = 0, total = sl_model_param_count(model, &trainable);
        SL_INFO("model: %zu parameters, %zu trainable (the exchanged vector, %.1f KB)", total, trainable,
                (double)trainable * 4 / 1024);
    }

    /* Centralized evaluation on the dataset's held-out split, when it has one. */
    hooks.eval.model = model;
    hooks.eval.batch_size = 256;
    hooks.has_eval = sl_dataset_global_source(ds, SL_GLOBAL_TEST, &hooks.eval.src) == 0 && hooks.eval.src.count > 0;
    hooks.rounds = (uint64_t)cfg.federation.rounds;

    if ((rc = sl_runlog_new(&runlog, &cfg, resume ? resume : run_dir)) != 0)
        goto cleanup;
    if (resume) {
        if ((rc = sl_checkpoint_read(sl_runlog_checkpoint_path(runlog), &ck)) != 0)
            goto cleanup;
        have_ck = 1;
        SL_INFO("resuming %s after round %llu", resume, (unsigned long long)ck.round);
    } else if (hooks.has_eval) {
        sl_eval_info_t base;
        if ((rc = sl_evaluator_run(&hooks.eval, init, dim, &base)) != 0)
            goto cleanup;
        SL_INFO("global model before federation: accuracy %.4f, loss %.4f on %llu held-out examples",
                base.accuracy, base.loss, (unsigned long long)base.examples);
        write_baseline(sl_runlog_dir(runlog), &base);
    }

    /* Transport: ROUTER, CURVE + ZAP allow-list unless net.insecure. */
    zctx = zmq_ctx_new();
    if (!zctx) {
        rc = sl_error(SL_ENET, "zmq_ctx_new failed");
        goto cleanup;
    }
    sl_transport_opts_t topts = {0};
    topts.role = SL_TRANSPORT_SERVER;
    topts.endpoint = cfg.net.bind;
    topts.max_message_bytes = (size_t)cfg.net.max_message_bytes;
    topts.heartbeat_ms = (int)cfg.net.heartbeat_ms;
    if ((rc = sl_keypair_new(&kp)) != 0 || (rc = cli_fed_security(&cfg, &topts, kp, key, "coordinator")) != 0)
        goto cleanup;
    int curve = topts.curve_secret_z85 != NULL;
    if (curve) {
        if (!cfg.net.authorized_clients[0]) {
            rc = sl_error(SL_ECONFIG, "net.authorized_clients: set the allow-list of client keys (a file or a "
                                      "folder of .pub files)");
            goto cleanup;
        }
        sl_allowlist_t allow = {0};
        if ((rc = sl_allowlist_load(&allow, cfg.net.authorized_clients)) != 0)
            goto cleanup;
        SL_INFO("CURVE on: %zu authorized client keys from %s", allow.count, cfg.net.authorized_clients);
        if ((rc = sl_zap_start(&zap, zctx, &allow)) != 0)
            goto cleanup;
        sl_zap_watch_reload(zap, &cli_fed_reload, cfg.net.authorized_clients);
        conn_limits.zap = zap;
        conn_limits.limits.max_connections = (long)cfg.net.max_connections;
        conn_limits.limits.max_per_source = (long)cfg.net.max_connections_per_source;
        topts.configure = configure_conn_limits;
        topts.configure_ctx = &conn_limits;
    }
    if ((rc = sl_transport_new(&transport, zctx, &topts)) != 0)
        goto cleanup;
    if ((rc = sl_identity_new(&hooks.identity, curve)) != 0)
        goto cleanup;
    SL_INFO("listening on %s", sl_transport_endpoint(transport));

    sl_engine_opts_t eo = {0};
    eo.cfg = &cfg;
    eo.dim = dim;
    eo.init = init;
    eo.layout = sl_model_layout_hash(model);
    eo.start_clients = (size_t)start_clients;
    eo.final_eval = 1;
    eo.resume = have_ck ? &ck : NULL;
    eo.runlog = runlog;
    eo.hooks.central_eval = hook_central_eval;
    eo.hooks.authorize = hook_authorize;
    eo.hooks.banned = hook_banned;
    hooks.zap = zap;
    eo.hooks.prepare_task = hook_prepare_task;
    eo.hooks.round_end = hook_round_end;
    eo.hooks.ext_save = hook_ext_save;
    eo.hooks.ext_load = hook_ext_load;
    eo.hooks.hook_ctx = &hooks;
    if (cfg.dp.mode != SL_DP_OFF) { /* user-level DP: the DP aggregator replaces the mean */
        if ((rc = sl_dp_coord_new(&hooks.dp, &cfg, dim)) != 0 ||
            (rc = sl_dp_aggregator_new(&eo.aggregator, hooks.dp)) != 0)
            goto cleanup;
        /* write-ahead privacy ledger: opened before the engine restores the checkpoint, which
         * replays the charges recorded after it (coordinator/dp.h) */
        char ledger[4096];
        snprintf(ledger, sizeof ledger, "%s/privacy.ledger", sl_runlog_dir(runlog));
        if ((rc = sl_dp_coord_open_ledger(hooks.dp, ledger, have_ck)) != 0)
            goto cleanup;
        SL_INFO("dp: mode %s, clip %g%s, noise multiplier %g, delta %g, target epsilon %g",
                sl_config_enum_name("dp", "mode", cfg.dp.mode), cfg.dp.clip, cfg.dp.adaptive_clip ? " (adaptive)" : "",
                cfg.dp.noise_multiplier, cfg.dp.delta, cfg.dp.target_epsilon);
        if (cfg.secagg.enabled) /* distributed only (sl_dp_coord_new refuses the rest) */
            SL_INFO("secagg: SecAgg+ on, %lld bits; clients add discrete Gaussian noise shares before masking",
                    (long long)cfg.secagg.bits);
    } else if (cfg.secagg.enabled) { /* SecAgg+: the coordinator only sees the masked sum */
        if ((rc = sl_aggregator_secagg_new(&eo.aggregator, &cfg, dim)) != 0)
            goto cleanup;
        SL_INFO("secagg: SecAgg+ on, %lld bits, quantization clip %g ([dp] clip)", (long long)cfg.secagg.bits,
                cfg.dp.clip);
    }
    if ((rc = sl_engine_new(&engine, &eo)) != 0)
        goto cleanup;
    if (hooks.dp)
        sl_dp_coord_set_engine(hooks.dp, engine);
    double started = sl_now();
    rc = sl_coordinator_run(engine, transport, &cli_fed_stop, on_round, &hooks);
    const sl_round_report_t *last = sl_engine_last_report(engine);
    if (sl_runlog_summary(runlog, sl_engine_status(engine), sl_engine_rounds_completed(engine), last,
                          sl_now() - started) != 0)
        SL_WARN("summary.json: %s", sl_last_error());
    /* The final model (frozen base + the federated trainable part), for `starling eval`. */
    if (sl_engine_rounds_completed(engine) > 0) {
        size_t gdim;
        const float *g = sl_engine_global(engine, &gdim);
        size_t n;
        float *mw = sl_model_trainable(model, &n);
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", sl_runlog_dir(runlog));
        if (g && gdim == n) {
            memcpy(mw, g, n * sizeof *mw);
            if (sl_model_save(model, path, 0) != 0)
                SL_WARN("final model: %s", sl_last_error());
        }
    }
    printf("run %s: %s after %llu rounds", sl_runlog_dir(runlog), sl_engine_status(engine),
           (unsigned long long)sl_engine_rounds_completed(engine));
    if (last && isfinite(last->central_accuracy))
        printf(", held-out accuracy %.4f", last->central_accuracy);
    if (hooks.dp)
        printf(", epsilon %.4f (delta %g)", sl_dp_coord_epsilon(hooks.dp), cfg.dp.delta);
    printf("\n");
    {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            SL_INFO("coordinator peak RSS %.1f MiB", (double)ru.ru_maxrss / 1024.0);
    }

cleanup:
    if (rc && rc != SL_EINTR)
        fprintf(stderr, "starling coordinator: %s\n", sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
    sl_engine_destroy(&engine);
    sl_dp_coord_destroy(&hooks.dp); /* after the engine: its aggregator borrows it */
    sl_transport_destroy(&transport);
    sl_zap_stop(&zap);
    if (zctx)
        zmq_ctx_term(zctx);
    sl_identity_destroy(&hooks.identity);
    sl_keypair_destroy(&kp);
    if (have_ck)
        sl_checkpoint_free(&ck);
    sl_runlog_destroy(&runlog);
    free(init);
    sl_model_destroy(&model);
    sl_dataset_destroy(&ds);
    if (rc == SL_EINTR)
        return 130;
    return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
