#include "datasets/dataset.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"
#include "core/rng.h"
#include "datasets/builtins.h"
#include "datasets/partition.h"

#define MAX_OPTIONS 64
#define ERR_LEN 512

static const sl_dataset_plugin_t *const builtins[] = {&sl_dataset_hapt, &sl_dataset_synthetic, &sl_dataset_files};
#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

/* Options every dataset accepts, handled here. */
static const sl_dataset_option_t generic_options[] = {
    {"central_train", "clients",
     "global TRAIN split: clients (federated clients pooled) or all (clients + public groups; HAPT: all21)"},
    {NULL, NULL, NULL}};

/* ---- views: the ctx of every example source we hand out -------------------------------- */

/* A view maps an index 0..count-1 to an example ref, either through an explicit ref list
 * or through a list of whole groups (prefix sums); miss flags mark rows that lack the
 * dropped modality. */
typedef struct view {
    struct sl_dataset *ds;
    size_t count;
    sl_dataset_ref_t *refs;  /* explicit refs (count), or NULL */
    uint8_t *ref_miss;       /* per ref, or NULL */
    size_t n_groups;         /* group list form */
    size_t *groups;          /* (n_groups) */
    size_t *prefix;          /* (n_groups + 1) */
    uint8_t *group_miss;     /* per listed group, or NULL */
    uint8_t miss_all;        /* every row lacks the modality */
} view_t;

typedef struct {
    size_t group;       /* natural mode: the group; partitioned: unused */
    size_t *members;    /* partitioned: indices into ds->pooled (borrowed from ds->parts) */
    size_t n_members;
    uint8_t missing;
    view_t *views[2];   /* train, test: built on first use */
} client_t;

struct sl_dataset {
    const sl_dataset_plugin_t *drv;
    void *state;
    void *dl;          /* dlopen handle of a plug-in, or NULL */
    int check_fill;    /* plug-in: verify what fill() writes */
    char name[SL_CFG_STR];
    const sl_schema_t *schema;
    uint64_t seed;
    double local_test_fraction;
    long missing_modality; /* -1: none */
    int central_all;
    int partitioned;
    size_t n_clients;
    client_t *clients;
    sl_dataset_ref_t *pooled; /* partitioned: the pooled client examples */
    size_t n_pooled;
    sl_parts_t parts;
    view_t *global[3];
    view_t **group_views;     /* per natural group, on demand */
    pthread_mutex_t lock;
};

static int view_fill(void *ctx, const size_t *idx, size_t n, sl_batch_t *batch);

static void view_destroy(view_t **pv)
{
    if (!pv || !*pv)
        return;
    view_t *v = *pv;
    free(v->refs);
    free(v->ref_miss);
    free(v->groups);
    free(v->prefix);
    free(v->group_miss);
    free(v);
    *pv = NULL;
}

/* Ref and miss flag of row i (i < count). */
static sl_dataset_ref_t view_ref(const view_t *v, size_t i, int *miss)
{
    if (v->refs) {
        *miss = v->miss_all || (v->ref_miss && v->ref_miss[i]);
        return v->refs[i];
    }
    size_t lo = 0, hi = v->n_groups; /* last group with prefix <= i */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->prefix[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    *miss = v->miss_all || (v->group_miss && v->group_miss[lo]);
    sl_dataset_ref_t r = {v->groups[lo], i - v->prefix[lo]};
    return r;
}

/* A view over whole groups; group_miss (n entries) is copied when given. */
static int view_of_groups(view_t **out, sl_dataset_t *ds, const size_t *groups, size_t n, const uint8_t *group_miss)
{
    view_t *v = calloc(1, sizeof *v);
    if (!v)
        return sl_error(SL_ENOMEM, "dataset: out of memory");
    v->ds = ds;
    v->n_groups = n;
    v->groups = malloc((n ? n : 1) * sizeof *v->groups);
    v->prefix = malloc((n + 1) * sizeof *v->prefix);
    if (group_miss)
        v->group_miss = malloc(n ? n : 1);
    if (!v->groups || !v->prefix || (group_miss && !v->group_miss)) {
        view_destroy(&v);
        return sl_error(SL_ENOMEM, "dataset: out of memory");
    }
    v->prefix[0] = 0;
    for (size_t i = 0; i < n; i++) {
        v->groups[i] = groups[i];
        v->prefix[i + 1] = v->prefix[i] + ds->drv->group_size(ds->state, groups[i]);
        if (group_miss)
            v->group_miss[i] = group_miss[i];
    }
    v->count = v->prefix[n];
    *out = v;
    return 0;
}

static sl_example_source_t source_of(view_t *v)
{
    sl_example_source_t s = {v, v->count, view_fill};
    return s;
}

/* ---- fill ----------------------------------------------------------------------------------- */

static int view_fill(void *ctx, const size_t *idx, size_t n, sl_batch_t *batch)
{
    view_t *v = ctx;
    sl_dataset_t *ds = v->ds;
    const sl_schema_t *s = ds->schema;
    if (!batch || n > batch->capacity)
        return sl_error(SL_EINVAL, "dataset %s: %zu examples do not fit a batch of %zu", ds->name, n,
                        batch ? batch->capacity : 0);
    if (!batch->schema || batch->schema->n_modalities != s->n_modalities)
        return sl_error(SL_EMISMATCH, "dataset %s: batch schema has %zu modalities, dataset has %zu", ds->name,
                        batch->schema ? batch->schema->n_modalities : 0, s->n_modalities);
    for (size_t m = 0; m < s->n_modalities; m++)
        if (sl_modality_values(&batch->schema->modalities[m]) != sl_modality_values(&s->modalities[m]))
            return sl_error(SL_EMISMATCH, "dataset %s: batch modality %zu has %zu values per sample, dataset %zu",
                            ds->name, m, sl_modality_values(&batch->schema->modalities[m]),
                            sl_modality_values(&s->modalities[m]));
    sl_dataset_ref_t stack_refs[64];
    uint8_t stack_miss[64];
    sl_dataset_ref_t *refs = stack_refs;
    uint8_t *miss = stack_miss;
    int rc = 0, any_miss = 0;
    if (n > 64) {
        refs = malloc(n * sizeof *refs);
        miss = malloc(n);
        if (!refs || !miss) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
            goto cleanup;
        }
    }
    for (size_t j = 0; j < n; j++) {
        if (idx[j] >= v->count) {
            rc = sl_error(SL_ERANGE, "dataset %s: example %zu out of range (source has %zu)", ds->name, idx[j],
                          v->count);
            goto cleanup;
        }
        int mflag;
        refs[j] = view_ref(v, idx[j], &mflag);
        miss[j] = (uint8_t)mflag;
        any_miss |= mflag;
    }
    char err[ERR_LEN] = "";
    rc = ds->drv->fill(ds->state, refs, n, batch, err, sizeof err);
    if (rc) {
        if (rc > 0)
            rc = SL_EPLUGIN;
        rc = err[0] ? sl_error(rc, "dataset %s: %s", ds->name, err) : sl_error_wrap(rc, "dataset %s", ds->name);
        goto cleanup;
    }
    if (ds->check_fill) { /* a plug-in's rows must agree with its own label() and be 0/1 masks */
        for (size_t j = 0; j < n; j++) {
            int32_t want = ds->drv->label(ds->state, refs[j].group, refs[j].index);
            if (batch->labels[j] < 0 || (size_t)batch->labels[j] >= s->n_classes) {
                rc = sl_error(SL_EPLUGIN, "plug-in %s: fill() wrote label %d (group %zu, example %zu), outside [0, %zu)",
                              ds->name, (int)batch->labels[j], refs[j].group, refs[j].index, s->n_classes);
                goto cleanup;
            }
            if (batch->labels[j] != want) {
                rc = sl_error(SL_EPLUGIN, "plug-in %s: fill() wrote label %d but label() says %d (group %zu, example %zu)",
                              ds->name, (int)batch->labels[j], (int)want, refs[j].group, refs[j].index);
                goto cleanup;
            }
            for (size_t m = 0; m < s->n_modalities; m++)
                if (batch->present[j * s->n_modalities + m] > 1) {
                    rc = sl_error(SL_EPLUGIN, "plug-in %s: fill() wrote present = %u (expected 0 or 1)", ds->name,
                                  batch->present[j * s->n_modalities + m]);
                    goto cleanup;
                }
        }
    }
    if (any_miss && ds->missing_modality >= 0) {
        size_t m = (size_t)ds->missing_modality, nv = sl_modality_values(&s->modalities[m]);
        for (size_t j = 0; j < n; j++)
            if (miss[j]) {
                batch->present[j * s->n_modalities + m] = 0;
                memset(batch->x[m] + j * nv, 0, nv * sizeof(float));
            }
    }
    batch->size = n;
cleanup:
    if (refs != stack_refs)
        free(refs);
    if (miss != stack_miss)
        free(miss);
    return rc;
}

int sl_dataset_source_label(const sl_example_source_t *src, size_t i, int32_t *label)
{
    if (!src || src->fill != view_fill || !src->ctx)
        return sl_error(SL_EINVAL, "dataset: source was not made by sl_dataset_*");
    const view_t *v = src->ctx;
    if (i >= v->count)
        return sl_error(SL_ERANGE, "dataset %s: example %zu out of range (source has %zu)", v->ds->name, i, v->count);
    int miss;
    sl_dataset_ref_t r = view_ref(v, i, &miss);
    *label = v->ds->drv->label(v->ds->state, r.group, r.index);
    return 0;
}

/* ---- options ------------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    char *keys[MAX_OPTIONS];
    char *values[MAX_OPTIONS];
    char buf[SL_CFG_STR * 2];
} options_t;

static int option_known(const sl_dataset_option_t *table, const char *key)
{
    for (size_t i = 0; table && table[i].key; i++)
        if (strcmp(table[i].key, key) == 0)
            return 1;
    return 0;
}

static void option_list(const sl_dataset_plugin_t *drv, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const sl_dataset_option_t *t = pass ? generic_options : drv->options;
        for (size_t i = 0; t && t[i].key; i++) {
            int w = snprintf(out + len, cap - len, "%s%s", len ? ", " : "", t[i].key);
            if (w < 0 || (size_t)w >= cap - len)
                return;
            len += (size_t)w;
        }
    }
}

/* Split "k=v,k=v" in place. A token without '=' continues the previous value, so
 * "public_users=1,3,5" keeps its commas. Later keys override earlier ones. */
static int parse_options(options_t *o, const char *text, const sl_dataset_plugin_t *drv)
{
    memset(o, 0, sizeof *o);
    size_t len = strlen(text);
    if (len >= sizeof o->buf)
        return sl_error(SL_ECONFIG, "dataset %s: options too long", drv->name);
    /* copy with room to re-join continuation tokens */
    char tmp[sizeof o->buf];
    memcpy(tmp, text, len + 1);
    char *save = NULL, *pos = o->buf;
    for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        size_t tl = strlen(tok);
        while (tl && tok[tl - 1] == ' ')
            tok[--tl] = '\0';
        if (tl == 0)
            continue;
        char *eq = strchr(tok, '=');
        if (!eq) {
            if (o->n == 0)
                return sl_error(SL_ECONFIG, "dataset %s: option '%s' is not key=value", drv->name, tok);
            /* extend the previous value: it is the last thing written into buf */
            pos[-1] = ',';
            memcpy(pos, tok, tl + 1);
            pos += tl + 1;
            continue;
        }
        *eq = '\0';
        if (!option_known(drv->options, tok) && !option_known(generic_options, tok)) {
            char known[512];
            option_list(drv, known, sizeof known);
            return sl_error(SL_ECONFIG, "dataset %s: unknown option '%s' (known: %s)", drv->name, tok,
                            known[0] ? known : "none");
        }
        size_t slot = o->n;
        for (size_t i = 0; i < o->n; i++)
            if (strcmp(o->keys[i], tok) == 0)
                slot = i;
        if (slot == o->n) {
            if (o->n == MAX_OPTIONS)
                return sl_error(SL_ECONFIG, "dataset %s: more than %d options", drv->name, MAX_OPTIONS);
            o->n++;
        }
        size_t kl = strlen(tok), vl = strlen(eq + 1);
        o->keys[slot] = pos;
        memcpy(pos, tok, kl + 1);
        pos += kl + 1;
        o->values[slot] = pos;
        memcpy(pos, eq + 1, vl + 1);
        pos += vl + 1;
        /* a continuation must extend the value just written: overriding an earlier slot
         * then appending is fine since values[slot] points at this copy */
    }
    return 0;
}

static const char *options_get(const options_t *o, const char *key)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return o->values[i];
    return NULL;
}

int sl_dataset_option_append(sl_config_t *cfg, const char *assignment)
{
    if (!strchr(assignment, '=') || assignment[0] == '=')
        return sl_error(SL_EINVAL, "--data-opt '%s': expected key=value", assignment);
    size_t have = strlen(cfg->data.options), add = strlen(assignment);
    if (have + add + 2 > sizeof cfg->data.options)
        return sl_error(SL_EINVAL, "--data-opt '%s': data.options would exceed %zu characters", assignment,
                        sizeof cfg->data.options - 1);
    if (have)
        cfg->data.options[have++] = ',';
    memcpy(cfg->data.options + have, assignment, add + 1);
    return 0;
}

int sl_dsopt_int(const char *dataset, const char *key, const char *value, int64_t min, int64_t max, int64_t *out)
{
    if (!value)
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end != '\0' || v < min || v > max)
        return sl_error(SL_ECONFIG, "dataset %s: option %s: expected an integer in [%lld, %lld], got \"%s\"", dataset,
                        key, (long long)min, (long long)max, value);
    *out = v;
    return 0;
}

int sl_dsopt_double(const char *dataset, const char *key, const char *value, double min, double max, double *out)
{
    if (!value)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !(v >= min && v <= max))
        return sl_error(SL_ECONFIG, "dataset %s: option %s: expected a number in [%g, %g], got \"%s\"", dataset, key,
                        min, max, value);
    *out = v;
    return 0;
}

/* ---- data folder, plug-ins --------------------------------------------------------------- */

static int is_dir(const char *p)
{
    struct stat st;
    return p && p[0] && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int sl_dataset_data_dir(char *buf, size_t cap)
{
    const char *env = getenv("STARLING_DATA_DIR");
    if (env && env[0] && !is_dir(env)) { /* an explicit setting is obeyed, not skipped */
        buf[0] = '\0';
        return sl_error(SL_ENOTFOUND, "STARLING_DATA_DIR=%s is not a folder", env);
    }
    const char *tries[3] = {env && env[0] ? env : NULL,
#ifdef SL_SOURCE_DATA_DIR
                            SL_SOURCE_DATA_DIR,
#else
                            NULL,
#endif
#ifdef SL_INSTALL_DATA_DIR
                            SL_INSTALL_DATA_DIR
#else
                            NULL
#endif
    };
    for (size_t i = 0; i < 3; i++)
        if (is_dir(tries[i])) {
            snprintf(buf, cap, "%s", tries[i]);
            return 0;
        }
    buf[0] = '\0';
    return sl_error(SL_ENOTFOUND, "bundled data folder not found (tried $STARLING_DATA_DIR=%s, %s, %s)",
                    tries[0] ? tries[0] : "(unset)", tries[1] ? tries[1] : "-", tries[2] ? tries[2] : "-");
}

/* dlopen `path` and check the entry point; *table and *handle on success. */
static int plugin_load(const char *path, const sl_dataset_plugin_t **table, void **handle)
{
    *table = NULL;
    *handle = NULL;
    /* dlopen searches the library path for a bare name: make "x.so" mean ./x.so */
    char local[SL_CFG_STR + 3];
    if (!strchr(path, '/')) {
        snprintf(local, sizeof local, "./%s", path);
        path = local;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return sl_error(SL_EPLUGIN, "plug-in %s: cannot load: %s", path, e ? e : "unknown error");
    }
    dlerror();
    void *sym = dlsym(h, SL_DATASET_PLUGIN_SYMBOL);
    if (!sym) {
        dlclose(h);
        return sl_error(SL_EPLUGIN,
                        "plug-in %s: no symbol %s: not a starling dataset plug-in, or built for another plug-in ABI "
                        "(this starling speaks ABI %u)",
                        path, SL_DATASET_PLUGIN_SYMBOL, SL_DATASET_PLUGIN_ABI_VERSION);
    }
    sl_dataset_plugin_entry_t entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer without a pedantic cast */
    const sl_dataset_plugin_t *t = entry();
    const char *problem = NULL;
    if (!t)
        problem = "its entry point returned NULL";
    else if (t->abi_version != SL_DATASET_PLUGIN_ABI_VERSION) {
        uint32_t got = t->abi_version;
        dlclose(h);
        return sl_error(SL_EPLUGIN,
                        "plug-in %s: ABI version mismatch: it was built for ABI %u, this starling speaks ABI %u "
                        "(rebuild it against this starling's datasets/plugin.h)",
                        path, got, SL_DATASET_PLUGIN_ABI_VERSION);
    } else if (!t->name || !t->name[0])
        problem = "it has no name";
    else if (!t->open || !t->close || !t->schema || !t->num_groups || !t->group_id || !t->group_role ||
             !t->group_size || !t->label || !t->fill)
        problem = "its table lacks a required function (open, close, schema, num_groups, group_id, group_role, "
                  "group_size, label, fill)";
    if (problem) {
        dlclose(h);
        return sl_error(SL_EPLUGIN, "plug-in %s: %s", path, problem);
    }
    *table = t;
    *handle = h;
    return 0;
}

/* Look for <dir>/<name>.so, lib<name>.so or starling_<name>.so in STARLING_PLUGIN_PATH. */
static int plugin_find(const char *name, char *path, size_t cap)
{
    const char *env = getenv("STARLING_PLUGIN_PATH");
    if (!env || !env[0])
        return 0;
    static const char *const patterns[] = {"%s/%s.so", "%s/lib%s.so", "%s/starling_%s.so"};
    char dirs[1024];
    snprintf(dirs, sizeof dirs, "%s", env);
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save))
        for (size_t p = 0; p < 3; p++) {
            snprintf(path, cap, patterns[p], d, name);
            struct stat st;
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                return 1;
        }
    return 0;
}

size_t sl_dataset_builtin_count(void) { return N_BUILTINS; }

const sl_dataset_plugin_t *sl_dataset_builtin(size_t i) { return i < N_BUILTINS ? builtins[i] : NULL; }

int sl_dataset_list(FILE *out)
{
    for (size_t i = 0; i < N_BUILTINS; i++)
        fprintf(out, "%-12s built-in  %s\n", builtins[i]->name, builtins[i]->summary ? builtins[i]->summary : "");
    const char *env = getenv("STARLING_PLUGIN_PATH");
    if (!env || !env[0])
        return 0;
    char dirs[1024];
    snprintf(dirs, sizeof dirs, "%s", env);
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        DIR *dir = opendir(d);
        if (!dir)
            continue;
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 4 || strcmp(e->d_name + l - 3, ".so") != 0)
                continue;
            char path[1280];
            snprintf(path, sizeof path, "%s/%s", d, e->d_name);
            const sl_dataset_plugin_t *t;
            void *h;
            if (plugin_load(path, &t, &h) == 0) {
                fprintf(out, "%-12s plug-in   %s (%s)\n", t->name, t->summary ? t->summary : "", path);
                dlclose(h);
            } else {
                fprintf(out, "%-12s unusable  %s\n", e->d_name, sl_last_error());
            }
        }
        closedir(dir);
    }
    return 0;
}

int sl_dataset_describe_options(const sl_dataset_plugin_t *table, FILE *out)
{
    for (int pass = 0; pass < 2; pass++) {
        const sl_dataset_option_t *t = pass ? generic_options : table->options;
        for (size_t i = 0; t && t[i].key; i++)
            fprintf(out, "  %-16s (default %s) %s\n", t[i].key, t[i].def ? t[i].def : "-", t[i].help ? t[i].help : "");
    }
    return 0;
}

/* ---- open ---------------------------------------------------------------------------------- */

/* Check what a plug-in reports before trusting it. */
static int validate_driver(sl_dataset_t *ds)
{
    const sl_schema_t *s = ds->schema;
    if (!s)
        return sl_error(SL_EPLUGIN, "plug-in %s: schema() returned NULL", ds->name);
    if (sl_schema_validate(s) != 0)
        return sl_error_wrap(SL_EPLUGIN, "plug-in %s: inconsistent schema", ds->name);
    size_t ng = ds->drv->num_groups(ds->state);
    for (size_t g = 0; g < ng; g++) {
        sl_group_role_t role = ds->drv->group_role(ds->state, g);
        if ((unsigned)role > SL_GROUP_TEST)
            return sl_error(SL_EPLUGIN, "plug-in %s: group %zu has unknown role %d", ds->name, g, (int)role);
        size_t cnt = ds->drv->group_size(ds->state, g);
        for (size_t i = 0; i < cnt; i++) {
            int32_t l = ds->drv->label(ds->state, g, i);
            if (l < 0 || (size_t)l >= s->n_classes)
                return sl_error(SL_EPLUGIN, "plug-in %s: label %d of group %zu example %zu is outside [0, %zu)",
                                ds->name, (int)l, g, i, s->n_classes);
        }
    }
    return 0;
}

static int open_driver(sl_dataset_t *ds, const sl_config_t *cfg)
{
    const sl_dataset_plugin_t *drv = NULL;
    char path[1280];
    int rc;
    if (cfg->data.plugin[0]) {
        if ((rc = plugin_load(cfg->data.plugin, &drv, &ds->dl)) != 0)
            return rc;
        ds->check_fill = 1;
    } else {
        for (size_t i = 0; i < N_BUILTINS; i++)
            if (strcmp(builtins[i]->name, cfg->data.name) == 0)
                drv = builtins[i];
        if (!drv && plugin_find(cfg->data.name, path, sizeof path)) {
            if ((rc = plugin_load(path, &drv, &ds->dl)) != 0)
                return rc;
            if (strcmp(drv->name, cfg->data.name) != 0)
                return sl_error(SL_EPLUGIN, "plug-in %s calls itself '%s', not '%s'", path, drv->name, cfg->data.name);
            ds->check_fill = 1;
        }
        if (!drv) {
            const char *env = getenv("STARLING_PLUGIN_PATH");
            return sl_error(SL_ENOTFOUND,
                            "unknown dataset '%s' (built-in: hapt, synthetic, files; no %s.so in STARLING_PLUGIN_PATH=%s; "
                            "or set data.plugin; `starling dataset list` shows what exists)",
                            cfg->data.name, cfg->data.name, env && env[0] ? env : "(unset)");
        }
    }
    ds->drv = drv;
    snprintf(ds->name, sizeof ds->name, "%s", drv->name);

    options_t opts;
    if ((rc = parse_options(&opts, cfg->data.options, drv)) != 0)
        return rc;
    const char *ct = options_get(&opts, "central_train");
    if (ct) {
        if (strcmp(ct, "all") == 0 || strcmp(ct, "all21") == 0)
            ds->central_all = 1;
        else if (strcmp(ct, "clients") != 0)
            return sl_error(SL_ECONFIG, "dataset %s: option central_train: expected clients, all or all21, got \"%s\"",
                            ds->name, ct);
    }
    const char *keys[MAX_OPTIONS], *values[MAX_OPTIONS];
    size_t nk = 0;
    for (size_t i = 0; i < opts.n; i++)
        if (option_known(drv->options, opts.keys[i])) {
            keys[nk] = opts.keys[i];
            values[nk++] = opts.values[i];
        }
    char data_dir[1024] = "", data_dir_err[512] = "";
    if (sl_dataset_data_dir(data_dir, sizeof data_dir) != 0) {
        data_dir[0] = '\0';
        snprintf(data_dir_err, sizeof data_dir_err, "%s", sl_last_error());
    }
    sl_error_clear();
    sl_dataset_args_t args = {(uint64_t)cfg->run.seed, (size_t)cfg->data.classes, cfg->data.path, data_dir, nk, keys,
                              values};
    char err[ERR_LEN] = "";
    rc = drv->open(&ds->state, &args, err, sizeof err);
    if (rc) {
        if (rc > 0)
            rc = SL_EPLUGIN;
        ds->state = NULL;
        if (err[0])
            return sl_error(rc, "dataset %s: %s", ds->name, err);
        if (rc == SL_ENOTFOUND && !data_dir[0] && data_dir_err[0])
            return sl_error(rc, "dataset %s: %s", ds->name, data_dir_err);
        return sl_last_error()[0] ? rc : sl_error(rc, "dataset %s: open failed: %s", ds->name, sl_strerror(rc));
    }
    ds->schema = drv->schema(ds->state);
    if (ds->check_fill)
        return validate_driver(ds);
    return 0;
}

static int setup_clients(sl_dataset_t *ds, const sl_config_t *cfg)
{
    size_t ng = ds->drv->num_groups(ds->state), n_client_groups = 0;
    for (size_t g = 0; g < ng; g++)
        if (ds->drv->group_role(ds->state, g) == SL_GROUP_CLIENT)
            n_client_groups++;
    if (n_client_groups == 0)
        return sl_error(SL_ECONFIG, "dataset %s: no client groups (every group is public or test)", ds->name);
    int rc = 0;
    int32_t *labels = NULL;
    uint8_t *missing = NULL;
    ds->partitioned = cfg->data.partition != SL_PART_NATURAL;
    if (!ds->partitioned) {
        ds->n_clients = n_client_groups;
        ds->clients = calloc(ds->n_clients, sizeof *ds->clients);
        if (!ds->clients)
            return sl_error(SL_ENOMEM, "dataset %s: out of memory for %zu clients", ds->name, ds->n_clients);
        size_t c = 0;
        for (size_t g = 0; g < ng; g++)
            if (ds->drv->group_role(ds->state, g) == SL_GROUP_CLIENT)
                ds->clients[c++].group = g;
    } else {
        size_t n = 0;
        for (size_t g = 0; g < ng; g++)
            if (ds->drv->group_role(ds->state, g) == SL_GROUP_CLIENT)
                n += ds->drv->group_size(ds->state, g);
        ds->n_pooled = n;
        ds->pooled = malloc((n ? n : 1) * sizeof *ds->pooled);
        labels = malloc((n ? n : 1) * sizeof *labels);
        if (!ds->pooled || !labels) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory pooling %zu examples", ds->name, n);
            goto cleanup;
        }
        size_t k = 0;
        for (size_t g = 0; g < ng; g++) {
            if (ds->drv->group_role(ds->state, g) != SL_GROUP_CLIENT)
                continue;
            size_t cnt = ds->drv->group_size(ds->state, g);
            for (size_t i = 0; i < cnt; i++, k++) {
                ds->pooled[k].group = g;
                ds->pooled[k].index = i;
                labels[k] = ds->drv->label(ds->state, g, i);
            }
        }
        size_t nc = cfg->data.clients > 0 ? (size_t)cfg->data.clients : n_client_groups;
        uint64_t seed = (uint64_t)cfg->run.seed;
        switch (cfg->data.partition) {
        case SL_PART_IID:
            rc = sl_partition_iid(&ds->parts, n, nc, seed);
            break;
        case SL_PART_DIRICHLET:
            rc = sl_partition_dirichlet(&ds->parts, labels, n, ds->schema->n_classes, nc, cfg->data.alpha, seed);
            break;
        case SL_PART_SHARDS:
            rc = sl_partition_shards(&ds->parts, labels, n, nc, (size_t)cfg->data.shards_per_client, seed);
            break;
        case SL_PART_QUANTITY:
            rc = sl_partition_quantity(&ds->parts, n, nc, cfg->data.quantity_exponent, seed);
            break;
        default:
            rc = sl_error(SL_ECONFIG, "dataset %s: unknown partition scheme %d", ds->name, cfg->data.partition);
        }
        if (rc) {
            sl_error_wrap(rc, "dataset %s", ds->name);
            goto cleanup;
        }
        ds->n_clients = nc;
        ds->clients = calloc(nc, sizeof *ds->clients);
        if (!ds->clients) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory for %zu clients", ds->name, nc);
            goto cleanup;
        }
        for (size_t c = 0; c < nc; c++) {
            ds->clients[c].members = ds->parts.items + ds->parts.offsets[c];
            ds->clients[c].n_members = ds->parts.offsets[c + 1] - ds->parts.offsets[c];
        }
    }
    ds->missing_modality = -1;
    if (cfg->data.missing_modality[0]) {
        int m = sl_schema_find(ds->schema, cfg->data.missing_modality);
        if (m < 0) {
            char names[256] = "";
            size_t len = 0;
            for (size_t i = 0; i < ds->schema->n_modalities && len < sizeof names; i++) {
                int w = snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                 ds->schema->modalities[i].name);
                if (w > 0)
                    len += (size_t)w;
            }
            rc = sl_error(SL_ECONFIG, "dataset %s: data.missing_modality '%s' is not a modality (have: %s)", ds->name,
                          cfg->data.missing_modality, names);
            goto cleanup;
        }
        ds->missing_modality = m;
        missing = malloc(ds->n_clients);
        if (!missing) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
            goto cleanup;
        }
        if ((rc = sl_partition_missing(missing, ds->n_clients, cfg->data.missing_fraction, (uint64_t)cfg->run.seed)))
            goto cleanup;
        for (size_t c = 0; c < ds->n_clients; c++)
            ds->clients[c].missing = missing[c];
    }
cleanup:
    free(labels);
    free(missing);
    return rc;
}

int sl_dataset_open(sl_dataset_t **out, const sl_config_t *cfg)
{
    *out = NULL;
    sl_dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds)
        return sl_error(SL_ENOMEM, "dataset: out of memory");
    pthread_mutex_init(&ds->lock, NULL);
    ds->seed = (uint64_t)cfg->run.seed;
    ds->local_test_fraction = cfg->data.local_test_fraction;
    ds->missing_modality = -1;
    int rc = open_driver(ds, cfg);
    if (!rc)
        rc = setup_clients(ds, cfg);
    if (rc) {
        sl_dataset_destroy(&ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void sl_dataset_destroy(sl_dataset_t **pds)
{
    if (!pds || !*pds)
        return;
    sl_dataset_t *ds = *pds;
    for (size_t c = 0; ds->clients && c < ds->n_clients; c++) {
        view_destroy(&ds->clients[c].views[0]);
        view_destroy(&ds->clients[c].views[1]);
    }
    free(ds->clients);
    for (size_t i = 0; i < 3; i++)
        view_destroy(&ds->global[i]);
    if (ds->group_views) {
        size_t ng = ds->drv->num_groups(ds->state);
        for (size_t g = 0; g < ng; g++)
            view_destroy(&ds->group_views[g]);
        free(ds->group_views);
    }
    free(ds->pooled);
    sl_parts_free(&ds->parts);
    if (ds->drv && ds->state)
        ds->drv->close(ds->state);
    if (ds->dl)
        dlclose(ds->dl);
    pthread_mutex_destroy(&ds->lock);
    free(ds);
    *pds = NULL;
}

/* ---- accessors ------------------------------------------------------------------------------ */

const sl_schema_t *sl_dataset_schema(const sl_dataset_t *ds) { return ds->schema; }

const char *sl_dataset_name(const sl_dataset_t *ds) { return ds->name; }

const char *sl_dataset_class_name(const sl_dataset_t *ds, size_t k)
{
    if (k >= ds->schema->n_classes)
        return "?";
    const char *n = ds->drv->class_name ? ds->drv->class_name(ds->state, k) : NULL;
    if (n)
        return n;
    /* "class<k>" for plug-ins without names: a small per-thread buffer */
    static _Thread_local char buf[32];
    snprintf(buf, sizeof buf, "class%zu", k);
    return buf;
}

size_t sl_dataset_num_clients(const sl_dataset_t *ds) { return ds->n_clients; }

uint64_t sl_dataset_client_id(const sl_dataset_t *ds, size_t index)
{
    if (index >= ds->n_clients)
        return UINT64_MAX;
    return ds->partitioned ? (uint64_t)index : ds->drv->group_id(ds->state, ds->clients[index].group);
}

size_t sl_dataset_client_size(const sl_dataset_t *ds, size_t index)
{
    if (index >= ds->n_clients)
        return 0;
    return ds->partitioned ? ds->clients[index].n_members : ds->drv->group_size(ds->state, ds->clients[index].group);
}

int sl_dataset_client_missing(const sl_dataset_t *ds, size_t index, size_t m)
{
    return index < ds->n_clients && ds->missing_modality >= 0 && (size_t)ds->missing_modality == m &&
           ds->clients[index].missing;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* Local train/test views of client c: its examples shuffled by (seed, client id), the
 * first round(fraction * n) (at most n - 1) are test; each part sorted back. */
static int build_client_views(sl_dataset_t *ds, size_t c)
{
    client_t *cl = &ds->clients[c];
    size_t n = ds->partitioned ? cl->n_members : ds->drv->group_size(ds->state, cl->group);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    view_t *v[2] = {calloc(1, sizeof(view_t)), calloc(1, sizeof(view_t))};
    int rc = 0;
    if (!order || !v[0] || !v[1]) {
        rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sl_rng_t rng;
    sl_rng_init(&rng, ds->seed, "local-split", 0, sl_dataset_client_id(ds, c));
    sl_rng_shuffle_size(&rng, order, n);
    size_t n_test = (size_t)floor(ds->local_test_fraction * (double)n + 0.5);
    if (n_test >= n)
        n_test = n ? n - 1 : 0;
    qsort(order, n_test, sizeof *order, cmp_size);
    qsort(order + n_test, n - n_test, sizeof *order, cmp_size);
    for (int s = 0; s < 2; s++) {
        size_t lo = s == SL_SPLIT_TRAIN ? n_test : 0, hi = s == SL_SPLIT_TRAIN ? n : n_test;
        v[s]->ds = ds;
        v[s]->count = hi - lo;
        v[s]->miss_all = cl->missing;
        v[s]->refs = malloc((hi - lo ? hi - lo : 1) * sizeof *v[s]->refs);
        if (!v[s]->refs) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
            goto cleanup;
        }
        for (size_t i = lo; i < hi; i++) {
            if (ds->partitioned) {
                v[s]->refs[i - lo] = ds->pooled[cl->members[order[i]]];
            } else {
                v[s]->refs[i - lo].group = cl->group;
                v[s]->refs[i - lo].index = order[i];
            }
        }
    }
    cl->views[0] = v[0];
    cl->views[1] = v[1];
    v[0] = v[1] = NULL;
cleanup:
    free(order);
    view_destroy(&v[0]);
    view_destroy(&v[1]);
    return rc;
}

int sl_dataset_client_source(sl_dataset_t *ds, size_t index, sl_split_t split, sl_example_source_t *out)
{
    if (index >= ds->n_clients)
        return sl_error(SL_ERANGE, "dataset %s: client %zu out of range (%zu clients)", ds->name, index,
                        ds->n_clients);
    if (split != SL_SPLIT_TRAIN && split != SL_SPLIT_TEST)
        return sl_error(SL_EINVAL, "dataset %s: unknown split %d", ds->name, (int)split);
    int rc = 0;
    pthread_mutex_lock(&ds->lock);
    if (!ds->clients[index].views[0])
        rc = build_client_views(ds, index);
    if (!rc)
        *out = source_of(ds->clients[index].views[split]);
    pthread_mutex_unlock(&ds->lock);
    return rc;
}

static int build_global(sl_dataset_t *ds, sl_global_split_t which)
{
    size_t ng = ds->drv->num_groups(ds->state), n = 0;
    size_t *groups = malloc((ng ? ng : 1) * sizeof *groups);
    uint8_t *gmiss = malloc(ng ? ng : 1);
    int rc = 0;
    if (!groups || !gmiss) {
        rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
        goto cleanup;
    }
    if (which == SL_GLOBAL_TRAIN && ds->partitioned) {
        /* every pooled example, flagged by the client it went to; then the public groups */
        size_t n_pub = 0;
        for (size_t g = 0; g < ng; g++)
            if (ds->central_all && ds->drv->group_role(ds->state, g) == SL_GROUP_PUBLIC)
                n_pub += ds->drv->group_size(ds->state, g);
        view_t *v = calloc(1, sizeof *v);
        if (!v) {
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
            goto cleanup;
        }
        v->ds = ds;
        v->count = ds->n_pooled + n_pub;
        v->refs = malloc((v->count ? v->count : 1) * sizeof *v->refs);
        v->ref_miss = calloc(v->count ? v->count : 1, 1);
        if (!v->refs || !v->ref_miss) {
            view_destroy(&v);
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
            goto cleanup;
        }
        memcpy(v->refs, ds->pooled, ds->n_pooled * sizeof *v->refs);
        for (size_t c = 0; c < ds->n_clients; c++)
            if (ds->clients[c].missing)
                for (size_t i = 0; i < ds->clients[c].n_members; i++)
                    v->ref_miss[ds->clients[c].members[i]] = 1;
        size_t k = ds->n_pooled;
        for (size_t g = 0; g < ng; g++)
            if (ds->central_all && ds->drv->group_role(ds->state, g) == SL_GROUP_PUBLIC)
                for (size_t i = 0; i < ds->drv->group_size(ds->state, g); i++, k++) {
                    v->refs[k].group = g;
                    v->refs[k].index = i;
                }
        ds->global[which] = v;
        goto cleanup;
    }
    if (which == SL_GLOBAL_TRAIN) {
        for (size_t c = 0; c < ds->n_clients; c++) { /* clients in client order */
            gmiss[n] = ds->clients[c].missing;
            groups[n++] = ds->clients[c].group;
        }
        if (ds->central_all)
            for (size_t g = 0; g < ng; g++)
                if (ds->drv->group_role(ds->state, g) == SL_GROUP_PUBLIC) {
                    gmiss[n] = 0;
                    groups[n++] = g;
                }
    } else {
        sl_group_role_t want = which == SL_GLOBAL_PUBLIC ? SL_GROUP_PUBLIC : SL_GROUP_TEST;
        for (size_t g = 0; g < ng; g++)
            if (ds->drv->group_role(ds->state, g) == want && ds->drv->group_size(ds->state, g) > 0) {
                gmiss[n] = 0;
                groups[n++] = g;
            }
        if (n == 0) {
            rc = sl_error(SL_ENOTFOUND, "dataset %s has no %s split", ds->name,
                          which == SL_GLOBAL_PUBLIC ? "public" : "global test");
            goto cleanup;
        }
    }
    rc = view_of_groups(&ds->global[which], ds, groups, n, ds->missing_modality >= 0 ? gmiss : NULL);
cleanup:
    free(groups);
    free(gmiss);
    return rc;
}

int sl_dataset_global_source(sl_dataset_t *ds, sl_global_split_t which, sl_example_source_t *out)
{
    if ((unsigned)which > SL_GLOBAL_TEST)
        return sl_error(SL_EINVAL, "dataset %s: unknown global split %d", ds->name, (int)which);
    int rc = 0;
    pthread_mutex_lock(&ds->lock);
    if (!ds->global[which])
        rc = build_global(ds, which);
    if (!rc)
        *out = source_of(ds->global[which]);
    pthread_mutex_unlock(&ds->lock);
    return rc;
}

size_t sl_dataset_num_groups(const sl_dataset_t *ds) { return ds->drv->num_groups(ds->state); }

int sl_dataset_group_info(const sl_dataset_t *ds, size_t g, uint64_t *id, sl_group_role_t *role, size_t *count)
{
    size_t ng = ds->drv->num_groups(ds->state);
    if (g >= ng)
        return sl_error(SL_ERANGE, "dataset %s: group %zu out of range (%zu groups)", ds->name, g, ng);
    if (id)
        *id = ds->drv->group_id(ds->state, g);
    if (role)
        *role = ds->drv->group_role(ds->state, g);
    if (count)
        *count = ds->drv->group_size(ds->state, g);
    return 0;
}

int sl_dataset_group_source(sl_dataset_t *ds, size_t g, sl_example_source_t *out)
{
    size_t ng = ds->drv->num_groups(ds->state);
    if (g >= ng)
        return sl_error(SL_ERANGE, "dataset %s: group %zu out of range (%zu groups)", ds->name, g, ng);
    int rc = 0;
    pthread_mutex_lock(&ds->lock);
    if (!ds->group_views) {
        ds->group_views = calloc(ng, sizeof *ds->group_views);
        if (!ds->group_views)
            rc = sl_error(SL_ENOMEM, "dataset %s: out of memory", ds->name);
    }
    if (!rc && !ds->group_views[g])
        rc = view_of_groups(&ds->group_views[g], ds, &g, 1, NULL);
    if (!rc)
        *out = source_of(ds->group_views[g]);
    pthread_mutex_unlock(&ds->lock);
    return rc;
}
