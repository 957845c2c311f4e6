/* tests/model/test_model_torch: cross-check of the C model against an independent PyTorch
 * implementation (tests/reference/torch_model.py, float64 autograd).
 *
 * For each case the C side builds a model, perturbs its trainable vector (so LoRA B != 0),
 * runs forward + backward on a random batch, and writes weights, batch, logits, loss and the
 * trainable gradient to a temporary folder (format documented in torch_model.py). The script
 * recomputes everything and requires relative error <= 1e-4 on logits, loss and every trainable
 * gradient. Skips (77) when /usr/bin/python3 cannot import torch.
 */
#include "core/model.h"
#include "model_fixture.h"
#include "support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sl_rng_t R;

static int write_raw(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, bytes, f);
    return (fclose(f) == 0 && w == bytes) ? 0 : -1;
}

static const char *kind_name(sl_modality_kind_t k)
{
    return sl_modality_kind_name(k);
}

static int write_case(const char *dir, sl_model_t *m, const sl_batch_t *b, float loss)
{
    const sl_config_t *c = sl_model_config(m);
    const sl_schema_t *s = sl_model_schema(m);
    size_t B = b->size, np, ntot, nt;
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f,
            "{\"config\": {\"d_model\": %lld, \"layers\": %lld, \"heads\": %lld, \"mlp_ratio\": %lld, "
            "\"patch_len\": %lld, \"image_patch\": %lld, \"vector_group\": %lld, \"text_max_len\": %lld, "
            "\"pooling\": \"%s\", \"lora_rank\": %lld, \"lora_alpha\": %.17g, \"label_smoothing\": %.17g},\n",
            (long long)c->model.d_model, (long long)c->model.layers, (long long)c->model.heads,
            (long long)c->model.mlp_ratio, (long long)c->model.patch_len, (long long)c->model.image_patch,
            (long long)c->model.vector_group, (long long)c->model.text_max_len,
            c->model.pooling == SL_POOL_MEAN ? "mean" : "cls", (long long)c->model.lora_rank,
            c->model.lora_alpha, c->train.label_smoothing);
    fprintf(f, " \"schema\": [");
    for (size_t k = 0; k < s->n_modalities; k++)
        fprintf(f, "%s{\"name\": \"%s\", \"kind\": \"%s\", \"dims\": [%zu, %zu, %zu]}", k ? ", " : "",
                s->modalities[k].name, kind_name(s->modalities[k].kind), s->modalities[k].dims[0],
                s->modalities[k].dims[1], s->modalities[k].dims[2]);
    fprintf(f, "],\n \"n_classes\": %zu, \"batch\": %zu, \"c_loss\": %.9g,\n \"params\": [\n", s->n_classes,
            B, (double)loss);
    const sl_param_info_t *p = sl_model_params(m, &np);
    for (size_t i = 0; i < np; i++) {
        fprintf(f, "  {\"name\": \"%s\", \"shape\": [", p[i].name);
        for (size_t j = 0; j < p[i].ndim; j++)
            fprintf(f, "%s%zu", j ? ", " : "", p[i].shape[j]);
        fprintf(f, "], \"offset\": %zu, \"numel\": %zu, \"trainable\": %d}%s\n", p[i].offset, p[i].numel,
                p[i].trainable, i + 1 < np ? "," : "");
    }
    fprintf(f, " ]}\n");
    if (fclose(f) != 0)
        return -1;
    float *all = sl_model_param_data(m, &ntot);
    sl_model_trainable(m, &nt);
    int rc = write_raw(dir, "params.bin", all, ntot * sizeof(float));
    for (size_t k = 0; k < s->n_modalities && !rc; k++) {
        char nm[32];
        snprintf(nm, sizeof nm, "x%zu.bin", k);
        rc = write_raw(dir, nm, b->x[k], B * sl_modality_values(&s->modalities[k]) * sizeof(float));
    }
    if (!rc)
        rc = write_raw(dir, "present.bin", b->present, B * s->n_modalities);
    if (!rc)
        rc = write_raw(dir, "labels.bin", b->labels, B * sizeof(int32_t));
    if (!rc)
        rc = write_raw(dir, "c_logits.bin", sl_model_logits(m), B * s->n_classes * sizeof(float));
    if (!rc)
        rc = write_raw(dir, "c_grad.bin", sl_model_trainable_grad(m), nt * sizeof(float));
    return rc;
}

static char case_dirs[4096]; /* the cases written so far, for one python run */

static void run_case(const char *root, const char *name, const sl_config_t *cfg, const sl_schema_t *s,
                     size_t B, size_t absent_mod)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    CHECK(mkdir(dir, 0700) == 0);
    sl_model_t *m = NULL;
    if (sl_model_new(&m, cfg, s) != 0) {
        CHECK_MSG(0, "%s: %s", name, sl_last_error());
        return;
    }
    fx_randomize_trainable(m, &R, 0.1f);
    sl_batch_t b;
    CHECK(sl_batch_init(&b, s, B) == 0);
    fx_fill_batch(&b, B, &R);
    size_t M = s->n_modalities, nv = sl_modality_values(&s->modalities[absent_mod]);
    for (size_t i = 1; i < B; i += 3) { /* every third sample lacks one modality, values NaN */
        b.present[i * M + absent_mod] = 0;
        for (size_t j = 0; j < nv; j++)
            b.x[absent_mod][i * nv + j] = NAN;
    }
    float loss = 0;
    sl_model_zero_grad(m);
    CHECK(sl_model_forward(m, &b, 1, NULL, &loss) == 0);
    CHECK(sl_model_backward(m) == 0);
    CHECK(write_case(dir, m, &b, loss) == 0);
    size_t used = strlen(case_dirs);
    snprintf(case_dirs + used, sizeof case_dirs - used, " %s", dir);
    sl_batch_free(&b);
    sl_model_destroy(&m);
}

static void rm_tree(const char *root)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("test_model_torch: /usr/bin/python3 with torch not available, skipping\n");
        return 77;
    }
    sl_rng_init(&R, 77, "test-model-torch", 0, 0);
    const char *tmp = getenv("TMPDIR");
    char root[1024];
    snprintf(root, sizeof root, "%s/sl_model_torch_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        CHECK_MSG(0, "mkdtemp failed");
        return check_summary("test_model_torch");
    }
    sl_config_t cfg;
    sl_schema_t s;

    /* 1. the default HAPT model: d=64, L=2, 4 heads, LoRA r=4 on q,k,v,o, label smoothing */
    sl_config_defaults(&cfg);
    cfg.train.label_smoothing = 0.1;
    fx_hapt_schema(&s, 128);
    run_case(root, "hapt_lora", &cfg, &s, 7, 1);

    /* 2. every modality kind, LoRA on all six targets, mean pooling */
    fx_small_config(&cfg, SL_TRAIN_LORA);
    snprintf(cfg.model.lora_targets, sizeof cfg.model.lora_targets, "q,k,v,o,mlp_up,mlp_down");
    cfg.model.pooling = SL_POOL_MEAN;
    cfg.model.layers = 3;
    fx_multi_schema(&s);
    run_case(root, "multi_lora_mean", &cfg, &s, 5, 1);

    /* 3. full fine-tuning, every modality kind, CLS pooling */
    fx_small_config(&cfg, SL_TRAIN_FULL);
    cfg.train.label_smoothing = 0.05;
    run_case(root, "multi_full_cls", &cfg, &s, 5, 3);

    /* one python process for all cases (importing torch dominates the time) */
    char cmd[8192];
    const char *src = getenv("SL_SOURCE_DIR");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/reference/torch_model.py%s", src ? src : ".",
             case_dirs);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "the PyTorch reference disagrees (see above)");
    rm_tree(root);
    return check_summary("test_model_torch");
}
