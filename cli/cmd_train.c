/* starling train: the centralized baseline (all federated clients' data pooled, tested on
 * the held-out users), and the shared body of starling pretrain. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/log.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/train.h"
#include "datasets/dataset.h"

static const char train_usage[] =
    "Usage: starling train --config FILE [--set S.K=V ...] [options]\n\n"
    "Centralized training on the pooled federated clients' data (data split TRAIN; HAPT:\n"
    "data.options = central_train=all for all 21 official train users), evaluated on the\n"
    "held-out test split after every epoch. Writes <run.out_dir>/<run.name>/: config.ini,\n"
    "metrics.jsonl (one line per epoch) and model.safetensors; prints the final metrics.\n\n"
    "  --out FILE         save the model here instead of the run folder\n"
    "  --eval-every N     evaluate every N epochs (default 1; 0 = only at the end)\n"
    "  --no-progress      plain log lines even on a terminal\n\n";

static const char pretrain_usage[] =
    "Usage: starling pretrain --config FILE --out FILE.safetensors [--set S.K=V ...] [options]\n\n"
    "Supervised pretraining of the full model (train.mode is forced to full) on the public\n"
    "split (HAPT: the 5 public users), for train.epochs epochs. The result is the frozen base\n"
    "that federated LoRA fine-tuning starts from (model.base). Test-split figures are logged\n"
    "for information only; nothing is selected on them.\n\n"
    "  --out FILE         where to write the base model (required)\n"
    "  --eval-every N     evaluate on the test split every N epochs (default 0 = only at the end)\n"
    "  --no-progress      plain log lines even on a terminal\n\n";

typedef struct {
    cli_progress_t *bar;
    uint64_t epochs;
} progress_ctx_t;

static void on_step(void *ctx, const sl_train_progress_t *p)
{
    progress_ctx_t *pc = ctx;
    char label[64];
    snprintf(label, sizeof label, "epoch %llu/%llu", (unsigned long long)p->epoch + 1,
             (unsigned long long)pc->epochs);
    if (strcmp(label, pc->bar->label) != 0)
        cli_progress_begin(pc->bar, label, p->pass_examples);
    cli_progress_field(pc->bar, "step", "%llu", (unsigned long long)p->step);
    cli_progress_field(pc->bar, "loss", "%.4f", p->loss);
    cli_progress_field(pc->bar, "lr", "%.1e", p->lr);
    cli_progress_field(pc->bar, "samples/s", "%.0f", p->seconds > 0 ? (double)p->examples / p->seconds : 0.0);
    cli_progress_update(pc->bar, p->examples, 0);
}

static const char *class_name(const void *ctx, size_t k)
{
    return sl_dataset_class_name((const sl_dataset_t *)ctx, k);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char buf[1024];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return sl_error(SL_EINVAL, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return sl_error(SL_EIO, "cannot create folder %s (%s)", buf, strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

static int load_base(sl_model_t *m, const char *path)
{
    size_t loaded = 0, skipped = 0;
    int rc = sl_model_load_ex(m, path, SL_LOAD_SKIP_MISMATCHED, &loaded, &skipped);
    if (rc)
        return rc;
    if (skipped)
        SL_WARN("base %s: %zu tensors skipped (shape differs, e.g. another class count)", path, skipped);
    SL_INFO("base %s: %zu tensors loaded", path, loaded);
    return 0;
}

int cli_train_command(int argc, char **argv, int pretrain)
{
    const char *cmd = pretrain ? "pretrain" : "train";
    enum { OPT_OUT = CLI_OPT_FIRST_FREE, OPT_EVAL_EVERY, OPT_NO_PROGRESS };
    static const struct option longopts[] = {{"out", required_argument, NULL, OPT_OUT},
                                             {"eval-every", required_argument, NULL, OPT_EVAL_EVERY},
                                             {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *out_path = NULL;
    long eval_every = pretrain ? 0 : 1;
    int progress_on = 1, opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, cmd);
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        if (opt == OPT_OUT) {
            out_path = optarg;
        } else if (opt == OPT_EVAL_EVERY) {
            char *end;
            eval_every = strtol(optarg, &end, 10);
            if (*end || eval_every < 0)
                return cli_usage_error(cmd, "--eval-every: expected an integer >= 0, got '%s'", optarg);
        } else if (opt == OPT_NO_PROGRESS) {
            progress_on = 0;
        } else {
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", pretrain ? pretrain_usage : train_usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (pretrain && !out_path)
        return cli_usage_error(cmd, "say where to write the base model with --out FILE");

    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    if (pretrain)
        cfg.train.mode = SL_TRAIN_FULL;

    sl_dataset_t *ds = NULL;
    sl_model_t *m = NULL;
    sl_trainer_t *tr = NULL;
    FILE *jl = NULL;
    sl_metrics_t mt = {0};
    char run_dir[1024] = "", model_path[1200];
    int exit_code = CLI_EXIT_FAIL;
    cli_progress_t bar;
    cli_progress_init(&bar, progress_on && sl_log_get_level() <= SL_LOG_INFO);
    const double t_start = cli_now();

    if ((rc = sl_dataset_open(&ds, &cfg)) != 0)
        goto fail;
    sl_example_source_t train_src, test_src;
    if ((rc = sl_dataset_global_source(ds, pretrain ? SL_GLOBAL_PUBLIC : SL_GLOBAL_TRAIN, &train_src)) != 0)
        goto fail;
    int have_test = sl_dataset_global_source(ds, SL_GLOBAL_TEST, &test_src) == 0 && test_src.count > 0;
    const sl_schema_t *schema = sl_dataset_schema(ds);
    if ((rc = sl_model_new(&m, &cfg, schema)) != 0)
        goto fail;
    if (cfg.model.base[0] && (rc = load_base(m, cfg.model.base)) != 0)
        goto fail;
    char desc[256];
    sl_model_describe(m, desc, sizeof desc);
    SL_INFO("%s: %s on %s: %zu training examples, %zu test examples; model %s", cmd,
            pretrain ? "pretraining" : "centralized training", sl_dataset_name(ds), train_src.count,
            have_test ? test_src.count : 0, desc);
    if (train_src.count == 0) {
        rc = sl_error(SL_EINVAL, "%s: the %s split is empty", cmd, pretrain ? "public" : "train");
        goto fail;
    }

    if (!pretrain) {
        snprintf(run_dir, sizeof run_dir, "%s/%s", cfg.run.out_dir, cfg.run.name);
        if ((rc = make_dirs(run_dir)) != 0)
            goto fail;
        char p[1200];
        snprintf(p, sizeof p, "%s/config.ini", run_dir);
        FILE *f = fopen(p, "w");
        if (!f) {
            rc = sl_error(SL_EIO, "cannot write %s (%s)", p, strerror(errno));
            goto fail;
        }
        rc = sl_config_write(&cfg, f);
        if (fclose(f) != 0 && rc == 0)
            rc = sl_error(SL_EIO, "cannot write %s", p);
        if (rc)
            goto fail;
        snprintf(p, sizeof p, "%s/metrics.jsonl", run_dir);
        if (!(jl = fopen(p, "w"))) {
            rc = sl_error(SL_EIO, "cannot write %s (%s)", p, strerror(errno));
            goto fail;
        }
    }
    if (out_path)
        snprintf(model_path, sizeof model_path, "%s", out_path);
    else
        snprintf(model_path, sizeof model_path, "%s/model.safetensors", run_dir);

    const uint64_t epochs = (uint64_t)cfg.train.epochs;
    const uint64_t per_epoch = sl_train_steps_per_epoch(train_src.count, (size_t)cfg.train.batch_size);
    if ((rc = sl_trainer_new(&tr, m, &cfg, epochs * per_epoch, 0, 0)) != 0)
        goto fail;
    progress_ctx_t pc = {&bar, epochs};
    sl_trainer_set_progress(tr, on_step, &pc);
    if ((rc = sl_metrics_init(&mt, schema->n_classes)) != 0)
        goto fail;
    sl_rng_t order;
    sl_rng_init(&order, (uint64_t)cfg.run.seed, pretrain ? "shuffle-pretrain" : "shuffle-central", 0, 0);
    for (uint64_t e = 0; e < epochs; e++) {
        sl_train_stats_t st = {0};
        if ((rc = sl_trainer_epoch(tr, &train_src, &order, e, 0, &st)) != 0)
            goto fail;
        const int do_eval = have_test && (e + 1 == epochs || (eval_every > 0 && (e + 1) % (uint64_t)eval_every == 0));
        if (do_eval && (rc = sl_evaluate(m, &test_src, 256, &mt)) != 0)
            goto fail;
        cli_progress_end(&bar);
        if (do_eval)
            SL_INFO("epoch %llu/%llu: train loss %.4f, test loss %.4f acc %.4f macro-F1 %.4f (%.1f s, %.0f samples/s)",
                    (unsigned long long)e + 1, (unsigned long long)epochs, st.loss, mt.loss, mt.accuracy,
                    mt.macro_f1, st.seconds, (double)st.examples / (st.seconds > 0 ? st.seconds : 1));
        else
            SL_INFO("epoch %llu/%llu: train loss %.4f (%.1f s, %.0f samples/s)", (unsigned long long)e + 1,
                    (unsigned long long)epochs, st.loss, st.seconds,
                    (double)st.examples / (st.seconds > 0 ? st.seconds : 1));
        if (jl) {
            fprintf(jl, "{\"epoch\":%llu,\"steps\":%llu,\"train_loss\":%.6f,\"seconds\":%.3f",
                    (unsigned long long)e + 1, (unsigned long long)sl_trainer_steps(tr), st.loss, st.seconds);
            if (do_eval)
                fprintf(jl, ",\"test_loss\":%.6f,\"test_accuracy\":%.6f,\"test_macro_f1\":%.6f", mt.loss,
                        mt.accuracy, mt.macro_f1);
            fprintf(jl, "}\n");
            fflush(jl);
        }
    }
    sl_rng_wipe(&order);
    if ((rc = sl_model_save(m, model_path, 0)) != 0)
        goto fail;
    SL_INFO("saved %s", model_path);

    if (have_test) {
        printf("%s: %s split of %s, %zu examples, after %llu epochs\n\n", cmd, "test", sl_dataset_name(ds),
               test_src.count, (unsigned long long)epochs);
        cli_print_metrics(stdout, &mt, class_name, ds);
    }
    printf("model %s\nwall %.1f s  peak RSS %.1f MiB\n", model_path, cli_now() - t_start, cli_peak_rss_mib());
    exit_code = CLI_EXIT_OK;
    goto cleanup;
fail:
    cli_progress_end(&bar);
    exit_code = cli_fail(cmd, rc);
cleanup:
    if (jl)
        fclose(jl);
    sl_metrics_free(&mt);
    sl_trainer_destroy(&tr);
    sl_model_destroy(&m);
    sl_dataset_destroy(&ds);
    return exit_code;
}

int cmd_train(int argc, char **argv) { return cli_train_command(argc, argv, 0); }
