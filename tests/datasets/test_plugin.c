/* Plug-ins: the example plug-in (examples/plugin/toy.c) loads by path and through
 * STARLING_PLUGIN_PATH and fills batches; a wrong ABI version, a missing entry point, an
 * inconsistent schema and out-of-range labels are rejected with clear messages. */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "datasets/dataset.h"
#include "support/check.h"

static int open_plugin(sl_dataset_t **ds, const char *plugin, const char *name, const char *options)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    snprintf(cfg.data.plugin, sizeof cfg.data.plugin, "%s", plugin);
    snprintf(cfg.data.name, sizeof cfg.data.name, "%s", name);
    snprintf(cfg.data.options, sizeof cfg.data.options, "%s", options);
    return sl_dataset_open(ds, &cfg);
}

static void check_toy(sl_dataset_t *ds, size_t clients)
{
    const sl_schema_t *s = sl_dataset_schema(ds);
    CHECK(strcmp(sl_dataset_name(ds), "toy") == 0);
    CHECK_EQ(s->n_modalities, 2);
    CHECK(strcmp(s->modalities[0].name, "temp") == 0);
    CHECK_EQ(s->modalities[0].kind, SL_MOD_TIMESERIES);
    CHECK_EQ(s->modalities[0].dims[0], 32);
    CHECK(strcmp(s->modalities[1].name, "power") == 0);
    CHECK_EQ(s->n_classes, 3);
    CHECK(strcmp(sl_dataset_class_name(ds, 1), "cooking") == 0);
    CHECK_EQ(sl_dataset_num_clients(ds), clients);
    CHECK_EQ(sl_dataset_client_id(ds, 0), 100);
    sl_example_source_t tr, pub, te;
    CHECK(sl_dataset_client_source(ds, 0, SL_SPLIT_TRAIN, &tr) == 0);
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_PUBLIC, &pub) == 0);
    CHECK(sl_dataset_global_source(ds, SL_GLOBAL_TEST, &te) == 0);
    CHECK_EQ(pub.count, 40);
    CHECK_EQ(te.count, 80);
    CHECK_EQ(tr.count, 32);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, s, 8) == 0);
    size_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK(tr.fill(tr.ctx, idx, 8, &b) == 0);
    CHECK_EQ(b.size, 8);
    int ok = 1;
    for (size_t j = 0; j < 8; j++) {
        int32_t l;
        CHECK(sl_dataset_source_label(&tr, j, &l) == 0);
        ok &= b.labels[j] == l && l >= 0 && l < 3 && b.present[j * 2] == 1 && b.present[j * 2 + 1] == 1;
    }
    CHECK(ok);
    /* the class signal is there: cooking has a high power reading on the first 4 values */
    CHECK(b.x[1][0] == b.x[1][0]);
    sl_batch_free(&b);
}

int main(void)
{
    sl_dataset_t *ds = NULL;
    int rc = open_plugin(&ds, TOY_PLUGIN, "hapt", "");
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    if (ds) {
        check_toy(ds, 8);
        sl_dataset_destroy(&ds);
    }
    rc = open_plugin(&ds, TOY_PLUGIN, "", "clients=5,examples=40");
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    if (ds) {
        check_toy(ds, 5);
        sl_dataset_destroy(&ds);
    }

    /* found by name in STARLING_PLUGIN_PATH */
    setenv("STARLING_PLUGIN_PATH", "/nonexistent:" TOY_PLUGIN_DIR, 1);
    rc = open_plugin(&ds, "", "toy", "");
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    if (ds) {
        check_toy(ds, 8);
        sl_dataset_destroy(&ds);
    }
    char *list = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&list, &len);
    CHECK(sl_dataset_list(mem) == 0);
    fclose(mem);
    CHECK_CONTAINS(list, "hapt");
    CHECK_CONTAINS(list, "synthetic");
    CHECK_CONTAINS(list, "toy");
    free(list);
    unsetenv("STARLING_PLUGIN_PATH");
    CHECK(open_plugin(&ds, "", "toy", "") == SL_ENOTFOUND);
    CHECK_CONTAINS(sl_last_error(), "unknown dataset 'toy'");

    /* options: unknown key lists the plug-in's; a bad value gets the plug-in's message */
    CHECK(open_plugin(&ds, TOY_PLUGIN, "toy", "house=3") == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "unknown option 'house'");
    CHECK_CONTAINS(sl_last_error(), "clients, examples, noise");
    CHECK(open_plugin(&ds, TOY_PLUGIN, "toy", "clients=0") == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "dataset toy: option clients");

    /* broken plug-ins */
    CHECK(open_plugin(&ds, TOY_BADABI_PLUGIN, "toy", "") == SL_EPLUGIN);
    CHECK_CONTAINS(sl_last_error(), "ABI version mismatch");
    CHECK_CONTAINS(sl_last_error(), "built for ABI 99");
    CHECK(open_plugin(&ds, TOY_NOSYM_PLUGIN, "toy", "") == SL_EPLUGIN);
    CHECK_CONTAINS(sl_last_error(), "no symbol starling_dataset_plugin_v1");
    CHECK(open_plugin(&ds, TOY_BADLABELS_PLUGIN, "toy", "") == SL_EPLUGIN);
    CHECK_CONTAINS(sl_last_error(), "outside [0, 3)");
    CHECK(open_plugin(&ds, TOY_BADSCHEMA_PLUGIN, "toy", "") == SL_EPLUGIN);
    CHECK_CONTAINS(sl_last_error(), "plug-in toy: inconsistent schema");
    CHECK_CONTAINS(sl_last_error(), "modality power has a zero dimension");
    CHECK(open_plugin(&ds, "/nonexistent/toy.so", "toy", "") == SL_EPLUGIN);
    CHECK_CONTAINS(sl_last_error(), "cannot load");
    CHECK(ds == NULL);
    return check_summary("test_dataset_plugin");
}
