/* starling dataset list | info NAME | partition NAME */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "datasets/dataset.h"

static const char usage[] =
    "Usage: starling dataset list\n"
    "       starling dataset info NAME [--data-opt K=V ...] [--plugin SO] [--path DIR] [--classes K]\n"
    "       starling dataset partition NAME --scheme iid|dirichlet|shards|quantity [--alpha A]\n"
    "                                  [--clients N] [--seed S] [--data-opt K=V ...]\n\n"
    "  list         built-in datasets and plug-ins found in $STARLING_PLUGIN_PATH\n"
    "  info         modalities, classes, clients, per-client counts, label histogram\n"
    "  partition    preview a re-partition: per-client counts and label mix\n\n"
    "  --data-opt K=V   dataset option (appends to data.options; repeatable)\n"
    "  --plugin SO      dataset plug-in shared object (data.plugin)\n"
    "  --path DIR       data folder (data.path; the `files` dataset)\n"
    "  --classes K      class count where the dataset offers a choice (HAPT: 6 or 12)\n"
    "  --scheme S       partition scheme (data.partition)\n"
    "  --alpha A        Dirichlet concentration (data.alpha)\n"
    "  --shards N       shards per client (data.shards_per_client)\n"
    "  --clients N      client count (data.clients)\n"
    "  --seed S         run seed (run.seed)\n"
    "  --all            info: list every client (default: the first 20)\n"
    "  --options        info: list the dataset's options\n\n";

#define MAX_PRINT_CLASSES 16

/* Label counts of a source (all of it, or its first `limit` examples). */
static int histogram(const sl_example_source_t *src, size_t *hist, size_t k, size_t limit)
{
    memset(hist, 0, k * sizeof *hist);
    size_t n = src->count < limit ? src->count : limit;
    for (size_t i = 0; i < n; i++) {
        int32_t l;
        int rc = sl_dataset_source_label(src, i, &l);
        if (rc)
            return rc;
        if (l >= 0 && (size_t)l < k)
            hist[l]++;
    }
    return 0;
}

static void print_hist(const size_t *hist, size_t k)
{
    size_t shown = k < MAX_PRINT_CLASSES ? k : MAX_PRINT_CLASSES;
    for (size_t c = 0; c < shown; c++)
        printf("%s%zu", c ? " " : "", hist[c]);
    if (shown < k)
        printf(" ...");
}

static int print_info(sl_dataset_t *ds, int all, int partition_view)
{
    const sl_schema_t *s = sl_dataset_schema(ds);
    size_t k = s->n_classes;
    size_t *hist = calloc(k, sizeof *hist), *total = calloc(k, sizeof *total);
    if (!hist || !total) {
        free(hist);
        free(total);
        return sl_error(SL_ENOMEM, "out of memory");
    }
    int rc = 0;
    if (!partition_view) {
        printf("dataset %s: %zu modalities, %zu classes\n", sl_dataset_name(ds), s->n_modalities, k);
        printf("modalities:\n");
        for (size_t m = 0; m < s->n_modalities; m++) {
            const sl_modality_t *md = &s->modalities[m];
            printf("  %-12s %-10s ", md->name, sl_modality_kind_name(md->kind));
            if (md->kind == SL_MOD_TIMESERIES)
                printf("T=%zu C=%zu\n", md->dims[0], md->dims[1]);
            else if (md->kind == SL_MOD_IMAGE)
                printf("H=%zu W=%zu ch=%zu\n", md->dims[0], md->dims[1], md->dims[2]);
            else
                printf("%s=%zu\n", md->kind == SL_MOD_TEXT ? "L" : "F", md->dims[0]);
        }
        printf("classes:");
        for (size_t c = 0; c < k && c < 32; c++)
            printf(" %zu=%s", c, sl_dataset_class_name(ds, c));
        printf("%s\n", k > 32 ? " ..." : "");
        size_t ng = sl_dataset_num_groups(ds), nrole[3] = {0, 0, 0};
        for (size_t g = 0; g < ng; g++) {
            sl_group_role_t role;
            if (sl_dataset_group_info(ds, g, NULL, &role, NULL) == 0 && (unsigned)role < 3)
                nrole[role]++;
        }
        printf("natural groups: %zu (%zu clients, %zu public, %zu test)\n", ng, nrole[0], nrole[1], nrole[2]);
    }
    size_t nc = sl_dataset_num_clients(ds), shown = all || nc <= 20 ? nc : 20;
    size_t min_n = SIZE_MAX, max_n = 0, sum_n = 0;
    double sum_p2 = 0.0;
    printf("clients: %zu\n", nc);
    printf("  %6s %10s %7s %6s  %s\n", "client", "id", "train", "test", "labels (count per class)");
    for (size_t c = 0; c < nc; c++) {
        size_t n = sl_dataset_client_size(ds, c);
        if (c < shown) {
            sl_example_source_t tr, te;
            size_t h2[4096];
            if ((rc = sl_dataset_client_source(ds, c, SL_SPLIT_TRAIN, &tr)) ||
                (rc = sl_dataset_client_source(ds, c, SL_SPLIT_TEST, &te)))
                goto cleanup;
            if (k <= 4096) {
                if ((rc = histogram(&tr, hist, k, SIZE_MAX)) || (rc = histogram(&te, h2, k, SIZE_MAX)))
                    goto cleanup;
                for (size_t i = 0; i < k; i++)
                    hist[i] += h2[i];
            }
            printf("  %6zu %10llu %7zu %6zu  ", c, (unsigned long long)sl_dataset_client_id(ds, c), tr.count, te.count);
            print_hist(hist, k);
            for (size_t m = 0; m < s->n_modalities; m++)
                if (sl_dataset_client_missing(ds, c, m))
                    printf("  (no %s)", s->modalities[m].name);
            printf("\n");
            if (n) {
                double p2 = 0.0;
                for (size_t i = 0; i < k; i++)
                    p2 += ((double)hist[i] / (double)n) * ((double)hist[i] / (double)n);
                sum_p2 += p2;
            }
        }
        if (n < min_n)
            min_n = n;
        if (n > max_n)
            max_n = n;
        sum_n += n;
    }
    if (shown < nc)
        printf("  ... %zu more (--all lists them)\n", nc - shown);
    printf("client sizes: min %zu, mean %.1f, max %zu, total %zu\n", nc ? min_n : 0, nc ? (double)sum_n / (double)nc : 0.0,
           max_n, sum_n);
    if (shown)
        printf("label concentration: mean over %zu clients of sum_k p_k^2 = %.3f (1/K = %.3f)\n", shown,
               sum_p2 / (double)shown, 1.0 / (double)k);
    static const char *const split_names[3] = {"public", "train (pooled)", "test"};
    for (int g = 0; g < 3; g++) {
        sl_example_source_t src;
        int grc = sl_dataset_global_source(ds, (sl_global_split_t)g, &src);
        if (grc == SL_ENOTFOUND) {
            printf("global %-15s none\n", split_names[g]);
            continue;
        }
        if (grc) {
            rc = grc;
            goto cleanup;
        }
        size_t limit = 1000000;
        if ((rc = histogram(&src, total, k, limit)))
            goto cleanup;
        printf("global %-15s %7zu examples, labels: ", split_names[g], src.count);
        print_hist(total, k);
        printf("%s\n", src.count > limit ? " (first 1,000,000)" : "");
    }
cleanup:
    free(hist);
    free(total);
    return rc;
}

int cmd_dataset(int argc, char **argv)
{
    enum {
        OPT_DATA_OPT = CLI_OPT_FIRST_FREE,
        OPT_PLUGIN,
        OPT_PATH,
        OPT_CLASSES,
        OPT_SCHEME,
        OPT_ALPHA,
        OPT_SHARDS,
        OPT_CLIENTS,
        OPT_SEED,
        OPT_ALL,
        OPT_OPTIONS
    };
    static const struct option longopts[] = {{"data-opt", required_argument, NULL, OPT_DATA_OPT},
                                             {"plugin", required_argument, NULL, OPT_PLUGIN},
                                             {"path", required_argument, NULL, OPT_PATH},
                                             {"classes", required_argument, NULL, OPT_CLASSES},
                                             {"scheme", required_argument, NULL, OPT_SCHEME},
                                             {"alpha", required_argument, NULL, OPT_ALPHA},
                                             {"shards", required_argument, NULL, OPT_SHARDS},
                                             {"clients", required_argument, NULL, OPT_CLIENTS},
                                             {"seed", required_argument, NULL, OPT_SEED},
                                             {"all", no_argument, NULL, OPT_ALL},
                                             {"options", no_argument, NULL, OPT_OPTIONS},
                                             CLI_COMMON_LONG_OPTIONS,
                                             {NULL, 0, NULL, 0}};
    /* dataset-specific settings become config assignments applied after --config/--set */
    static const char *const keys[] = {NULL, "data.plugin", "data.path", "data.classes", "data.partition",
                                       "data.alpha", "data.shards_per_client", "data.clients", "run.seed"};
    cli_common_t common = {0};
    const char *data_opts[CLI_MAX_SETS];
    char *assign[CLI_MAX_SETS];
    int n_data_opts = 0, n_assign = 0, all = 0, show_options = 0, opt, ret = CLI_EXIT_OK;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        int handled = cli_common_option(&common, opt, optarg, "dataset");
        if (handled < 0) {
            ret = -handled;
            goto done;
        }
        if (handled)
            continue;
        if (opt == OPT_DATA_OPT) {
            if (n_data_opts == CLI_MAX_SETS) {
                ret = cli_usage_error("dataset", "too many --data-opt");
                goto done;
            }
            data_opts[n_data_opts++] = optarg;
        } else if (opt >= OPT_PLUGIN && opt <= OPT_SEED) {
            size_t len = strlen(keys[opt - OPT_DATA_OPT]) + strlen(optarg) + 2;
            if (n_assign == CLI_MAX_SETS || !(assign[n_assign] = malloc(len))) {
                ret = cli_usage_error("dataset", "too many options");
                goto done;
            }
            snprintf(assign[n_assign++], len, "%s=%s", keys[opt - OPT_DATA_OPT], optarg);
        } else if (opt == OPT_ALL) {
            all = 1;
        } else if (opt == OPT_OPTIONS) {
            show_options = 1;
        } else {
            ret = cli_usage_error("dataset", "unknown option '%s'", argv[optind - 1]);
            goto done;
        }
    }
    if (common.help) {
        printf("%s%s", usage, cli_common_help);
        goto done;
    }
    if (optind >= argc) {
        ret = cli_usage_error("dataset", "say list, info NAME or partition NAME");
        goto done;
    }
    const char *sub = argv[optind++];
    if (strcmp(sub, "list") == 0) {
        if (optind < argc) {
            ret = cli_usage_error("dataset", "unexpected argument '%s'", argv[optind]);
            goto done;
        }
        ret = sl_dataset_list(stdout) ? cli_fail("dataset", -1) : CLI_EXIT_OK;
        goto done;
    }
    int is_info = strcmp(sub, "info") == 0, is_part = strcmp(sub, "partition") == 0;
    if (!is_info && !is_part) {
        ret = cli_usage_error("dataset", "unknown subcommand '%s' (list, info, partition)", sub);
        goto done;
    }
    if (optind + 1 < argc) {
        ret = cli_usage_error("dataset", "unexpected argument '%s'", argv[optind + 1]);
        goto done;
    }
    sl_config_t cfg;
    if ((ret = cli_load_config(&common, &cfg)) != 0)
        goto done;
    if (optind < argc && sl_config_set_value(&cfg, "data", "name", argv[optind]) != 0) {
        ret = cli_fail("dataset", -1);
        goto done;
    }
    for (int i = 0; i < n_assign; i++)
        if (sl_config_set(&cfg, assign[i]) != 0) {
            ret = cli_usage_error("dataset", "%s", sl_last_error());
            goto done;
        }
    for (int i = 0; i < n_data_opts; i++)
        if (sl_dataset_option_append(&cfg, data_opts[i]) != 0) {
            ret = cli_usage_error("dataset", "%s", sl_last_error());
            goto done;
        }
    if (is_part && cfg.data.partition == 0) {
        ret = cli_usage_error("dataset", "partition needs --scheme iid|dirichlet|shards|quantity");
        goto done;
    }
    if (show_options) {
        for (size_t i = 0; i < sl_dataset_builtin_count(); i++)
            if (strcmp(sl_dataset_builtin(i)->name, cfg.data.name) == 0 && !cfg.data.plugin[0]) {
                printf("options of %s:\n", cfg.data.name);
                if (sl_dataset_describe_options(sl_dataset_builtin(i), stdout) != 0)
                    ret = cli_fail("dataset", -1);
            }
    }
    sl_dataset_t *ds = NULL;
    int rc = sl_dataset_open(&ds, &cfg);
    if (rc) {
        ret = cli_fail("dataset", rc);
        goto done;
    }
    if (is_part) {
        printf("partition %s of %s: %lld clients", sl_config_enum_name("data", "partition", cfg.data.partition),
               sl_dataset_name(ds), (long long)sl_dataset_num_clients(ds));
        if (cfg.data.partition == SL_PART_DIRICHLET)
            printf(", alpha %g", cfg.data.alpha);
        else if (cfg.data.partition == SL_PART_SHARDS)
            printf(", %lld shards per client", (long long)cfg.data.shards_per_client);
        else if (cfg.data.partition == SL_PART_QUANTITY)
            printf(", exponent %g", cfg.data.quantity_exponent);
        printf(", seed %lld\n", (long long)cfg.run.seed);
    }
    rc = print_info(ds, all || is_part, is_part);
    if (rc)
        ret = cli_fail("dataset", rc);
    sl_dataset_destroy(&ds);
done:
    for (int i = 0; i < n_assign; i++)
        free(assign[i]);
    return ret;
}
