/* starling eval: metrics of a saved model on a dataset split. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/progress.h"
#include "core/log.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/train.h"
#include "datasets/dataset.h"

static const char usage[] =
    "Usage: starling eval --model FILE.safetensors [--config FILE] [--split test|public|train] [--json]\n\n"
    "Evaluate a model saved by train, pretrain or a federation on a split of the dataset of\n"
    "the configuration: per-class precision / recall / F1, the confusion matrix with class\n"
    "names, accuracy, macro-F1 and loss. The model architecture ([model] keys and train.mode)\n"
    "is read from the file's metadata; a trainable-only (adapter) file is applied on top of\n"
    "model.base.\n\n"
    "  --model FILE       the model (required)\n"
    "  --split NAME       test (held-out users, default), public or train (pooled clients)\n"
    "  --json             one JSON object instead of the table\n"
    "  --batch N          evaluation batch size (default 256)\n\n";

static const char *class_name(const void *ctx, size_t k)
{
    return sl_dataset_class_name((const sl_dataset_t *)ctx, k);
}

static void print_json(const sl_metrics_t *mt, const sl_dataset_t *ds, const char *model, const char *split)
{
    printf("{\"model\":\"%s\",\"dataset\":\"%s\",\"split\":\"%s\",\"examples\":%zu,\"accuracy\":%.6f,"
           "\"macro_f1\":%.6f,\"loss\":%.6f,\"classes\":[",
           model, sl_dataset_name(ds), split, mt->examples, mt->accuracy, mt->macro_f1, mt->loss);
    for (size_t k = 0; k < mt->n_classes; k++)
        printf("%s{\"name\":\"%s\",\"precision\":%.6f,\"recall\":%.6f,\"f1\":%.6f,\"support\":%llu}", k ? "," : "",
               sl_dataset_class_name(ds, k), sl_metrics_precision(mt, k), sl_metrics_recall(mt, k),
               sl_metrics_f1(mt, k), (unsigned long long)sl_metrics_support(mt, k));
    printf("],\"confusion\":[");
    for (size_t i = 0; i < mt->n_classes; i++) {
        printf("%s[", i ? "," : "");
        for (size_t j = 0; j < mt->n_classes; j++)
            printf("%s%llu", j ? "," : "", (unsigned long long)mt->confusion[i * mt->n_classes + j]);
        printf("]");
    }
    printf("]}\n");
}

int cmd_eval(int argc, char **argv)
{
    enum { OPT_MODEL = CLI_OPT_FIRST_FREE, OPT_SPLIT, OPT_JSON, OPT_BATCH };
    static const struct option longopts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                             {"split", required_argument, NULL, OPT_SPLIT},
                                             {"json", no_argument, NULL, OPT_JSON},
                                             {"batch", required_argument, NULL, OPT_BATCH},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    cli_common_t common = {0};
    const char *model_path = NULL, *split = "test";
    int json = 0, opt;
    long batch = 256;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "eval");
        if (handled < 0)
            return -handled;
        if (handled)
            continue;
        if (opt == OPT_MODEL) {
            model_path = optarg;
        } else if (opt == OPT_SPLIT) {
            split = optarg;
        } else if (opt == OPT_JSON) {
            json = 1;
        } else if (opt == OPT_BATCH) {
            char *end;
            batch = strtol(optarg, &end, 10);
            if (*end || batch < 1 || batch > 65536)
                return cli_usage_error("eval", "--batch: expected an integer in 1..65536, got '%s'", optarg);
        } else {
            return cli_usage_error("eval", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        return CLI_EXIT_OK;
    }
    if (optind < argc)
        return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!model_path)
        return cli_usage_error("eval", "say which model with --model FILE");
    sl_global_split_t which;
    if (strcmp(split, "test") == 0)
        which = SL_GLOBAL_TEST;
    else if (strcmp(split, "public") == 0)
        which = SL_GLOBAL_PUBLIC;
    else if (strcmp(split, "train") == 0)
        which = SL_GLOBAL_TRAIN;
    else
        return cli_usage_error("eval", "--split: expected test, public or train, got '%s'", split);

    sl_config_t cfg;
    int rc = cli_load_config(&common, &cfg);
    if (rc)
        return rc;
    sl_dataset_t *ds = NULL;
    sl_model_t *m = NULL;
    sl_metrics_t mt = {0};
    int exit_code = CLI_EXIT_FAIL;
    sl_st_file_t probe = {0};
    if ((rc = sl_model_file_config(model_path, &cfg)) != 0 || (rc = sl_config_validate(&cfg)) != 0)
        goto fail;
    if ((rc = sl_st_read(&probe, model_path)) != 0)
        goto fail;
    const char *content = sl_st_meta_get(&probe, "content");
    const int adapter = content && strcmp(content, "trainable") == 0;
    sl_st_file_free(&probe);
    if ((rc = sl_dataset_open(&ds, &cfg)) != 0)
        goto fail;
    sl_example_source_t src;
    if ((rc = sl_dataset_global_source(ds, which, &src)) != 0)
        goto fail;
    if ((rc = sl_model_new(&m, &cfg, sl_dataset_schema(ds))) != 0)
        goto fail;
    if (adapter) {
        if (!cfg.model.base[0]) {
            rc = sl_error(SL_ECONFIG, "%s holds only trainable tensors: set model.base to its base model",
                          model_path);
            goto fail;
        }
        if ((rc = sl_model_load(m, cfg.model.base)) != 0)
            goto fail;
    }
    if ((rc = sl_model_load(m, model_path)) != 0)
        goto fail;
    char desc[256];
    sl_model_describe(m, desc, sizeof desc);
    SL_INFO("eval: %s (%s) on %s %s split, %zu examples", model_path, desc, sl_dataset_name(ds), split, src.count);
    if ((rc = sl_metrics_init(&mt, sl_dataset_schema(ds)->n_classes)) != 0)
        goto fail;
    const double t0 = cli_now();
    if ((rc = sl_evaluate(m, &src, (size_t)batch, &mt)) != 0)
        goto fail;
    const double secs = cli_now() - t0;
    if (json) {
        print_json(&mt, ds, model_path, split);
    } else {
        printf("eval: %s on the %s split of %s, %zu examples\n\n", model_path, split, sl_dataset_name(ds),
               src.count);
        cli_print_metrics(stdout, &mt, class_name, ds);
        printf("%.0f examples/s  peak RSS %.1f MiB\n", secs > 0 ? (double)src.count / secs : 0.0,
               cli_peak_rss_mib());
    }
    exit_code = CLI_EXIT_OK;
    goto cleanup;
fail:
    exit_code = cli_fail("eval", rc);
cleanup:
    sl_st_file_free(&probe);
    sl_metrics_free(&mt);
    sl_model_destroy(&m);
    sl_dataset_destroy(&ds);
    return exit_code;
}
