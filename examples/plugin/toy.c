/* examples/plugin/toy.c: a complete starling dataset plug-in (docs/plugins.md).
 *
 * "toy": smart-home sensors. Each client is a house; an example is 32 minutes of a room
 * temperature trace (time series, T=32, C=1) plus an 8-value power-meter reading (vector,
 * F=8), labelled with what the household is doing: 0 idle, 1 cooking, 2 away. Houses
 * 0..clients-1 are federated clients, one extra house is public (pretraining) data and two
 * more are the global test set. Every value is derived from (seed, house, example) with a
 * small counter-based hash, so nothing is stored and any example can be made on demand.
 *
 * Build:  cc -shared -fPIC -I<starling include dir> toy.c -o toy.so
 * Use:    starling dataset info toy --plugin ./toy.so
 *    or   STARLING_PLUGIN_PATH=$PWD starling dataset info toy
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/plugin.h"

/* The tests build this file again with other values to check that starling rejects it. */
#ifndef TOY_ABI_VERSION
#define TOY_ABI_VERSION SL_DATASET_PLUGIN_ABI_VERSION
#endif
#ifndef TOY_ENTRY
#define TOY_ENTRY starling_dataset_plugin_v1
#endif

#define T 32
#define F 8
#define N_CLASSES 3

typedef struct {
    sl_schema_t schema;
    unsigned long long seed;
    size_t clients, examples;
    double noise;
} toy_t;

static const sl_dataset_option_t toy_options[] = {
    {"clients", "8", "number of houses that are federated clients"},
    {"examples", "40", "examples per house"},
    {"noise", "0.5", "standard deviation of sensor noise"},
    {NULL, NULL, NULL}};

static const char *const toy_class_names[N_CLASSES] = {"idle", "cooking", "away"};

/* SplitMix64: a counter-based hash, so example i of house g is a pure function. */
static unsigned long long mix(unsigned long long x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double uniform(unsigned long long *state)
{
    *state = mix(*state);
    return (double)(*state >> 11) * (1.0 / 9007199254740992.0);
}

static double normal(unsigned long long *state)
{
    double u1 = uniform(state), u2 = uniform(state);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static unsigned long long example_state(const toy_t *t, size_t g, size_t i)
{
    return mix(mix(t->seed ^ 0x746f79ULL) ^ ((unsigned long long)g << 32) ^ (unsigned long long)i);
}

static int parse_size(const char *v, size_t lo, size_t hi, size_t *out)
{
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        return -1;
    *out = (size_t)x;
    return 0;
}

static int toy_open(void **state, const sl_dataset_args_t *args, char *err, size_t err_len)
{
    toy_t *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return SL_ENOMEM;
    }
    t->seed = (unsigned long long)args->seed;
    t->clients = 8;
    t->examples = 40;
    t->noise = 0.5;
    const char *v;
    if ((v = sl_dataset_args_get(args, "clients")) && parse_size(v, 1, 100000, &t->clients)) {
        snprintf(err, err_len, "option clients: expected an integer in [1, 100000], got \"%s\"", v);
        free(t);
        return SL_ECONFIG;
    }
    if ((v = sl_dataset_args_get(args, "examples")) && parse_size(v, 1, 1000000, &t->examples)) {
        snprintf(err, err_len, "option examples: expected an integer in [1, 1000000], got \"%s\"", v);
        free(t);
        return SL_ECONFIG;
    }
    if ((v = sl_dataset_args_get(args, "noise"))) {
        char *end;
        t->noise = strtod(v, &end);
        if (end == v || *end || !(t->noise >= 0.0 && t->noise <= 100.0)) {
            snprintf(err, err_len, "option noise: expected a number in [0, 100], got \"%s\"", v);
            free(t);
            return SL_ECONFIG;
        }
    }
    if (args->classes && args->classes != N_CLASSES) {
        snprintf(err, err_len, "toy has %d classes, data.classes asks for %zu", N_CLASSES, args->classes);
        free(t);
        return SL_ECONFIG;
    }
    t->schema.n_modalities = 2;
    t->schema.n_classes = N_CLASSES;
    snprintf(t->schema.modalities[0].name, SL_NAME_MAX, "temp");
    t->schema.modalities[0].kind = SL_MOD_TIMESERIES;
    t->schema.modalities[0].dims[0] = T;
    t->schema.modalities[0].dims[1] = 1;
    snprintf(t->schema.modalities[1].name, SL_NAME_MAX, "power");
    t->schema.modalities[1].kind = SL_MOD_VECTOR;
    t->schema.modalities[1].dims[0] = F;
#ifdef TOY_BAD_SCHEMA
    t->schema.modalities[1].dims[0] = 0; /* deliberately inconsistent */
#endif
    *state = t;
    return 0;
}

static void toy_close(void *state) { free(state); }

static const sl_schema_t *toy_schema(void *state) { return &((toy_t *)state)->schema; }

static const char *toy_class_name(void *state, size_t k)
{
    (void)state;
    return k < N_CLASSES ? toy_class_names[k] : NULL;
}

/* clients houses, then 1 public house, then 2 test houses. */
static size_t toy_num_groups(void *state) { return ((toy_t *)state)->clients + 3; }

static uint64_t toy_group_id(void *state, size_t g)
{
    (void)state;
    return 100 + (uint64_t)g; /* house numbers */
}

static sl_group_role_t toy_group_role(void *state, size_t g)
{
    const toy_t *t = state;
    return g < t->clients ? SL_GROUP_CLIENT : g == t->clients ? SL_GROUP_PUBLIC : SL_GROUP_TEST;
}

static size_t toy_group_size(void *state, size_t g)
{
    (void)g;
    return ((toy_t *)state)->examples;
}

static int32_t toy_label(void *state, size_t g, size_t i)
{
    unsigned long long s = example_state(state, g, i);
#ifdef TOY_BAD_LABELS
    return (int32_t)(uniform(&s) * 3.0) + N_CLASSES; /* deliberately out of range */
#else
    return (int32_t)(uniform(&s) * 3.0); /* first draw of the example stream */
#endif
}

static int toy_fill(void *state, const sl_dataset_ref_t *refs, size_t n, sl_batch_t *batch, char *err,
                    size_t err_len)
{
    const toy_t *t = state;
    for (size_t j = 0; j < n; j++) {
        if (refs[j].group >= t->clients + 3 || refs[j].index >= t->examples) {
            snprintf(err, err_len, "no example %zu in house %zu", refs[j].index, refs[j].group);
            return SL_ERANGE;
        }
        unsigned long long s = example_state(t, refs[j].group, refs[j].index);
        int32_t label = (int32_t)(uniform(&s) * 3.0);
        double house_offset = 0.3 * (double)(refs[j].group % 5); /* each house a bit different */
        float *temp = batch->x[0] + j * T;                      /* (T=32, C=1) */
        float *power = batch->x[1] + j * F;                     /* (F=8) */
        for (size_t k = 0; k < T; k++) {
            double base = label == 1 ? 1.5 * sin(3.14159 * (double)k / T) : label == 2 ? -1.0 : 0.0;
            temp[k] = (float)(base + house_offset + t->noise * normal(&s));
        }
        for (size_t k = 0; k < F; k++) {
            double base = label == 1 ? (k < 4 ? 2.0 : 0.5) : label == 2 ? 0.1 : 0.6;
            power[k] = (float)(base + t->noise * normal(&s));
        }
        batch->present[j * 2] = 1;
        batch->present[j * 2 + 1] = 1;
        batch->labels[j] = label;
    }
    return 0;
}

static const sl_dataset_plugin_t toy_plugin = {
    TOY_ABI_VERSION,
    0,
    "toy",
    "example plug-in: smart-home houses, room temperature (32 x 1) + power meter (8), 3 activities",
    toy_options,
    toy_open,
    toy_close,
    toy_schema,
    toy_class_name,
    toy_num_groups,
    toy_group_id,
    toy_group_role,
    toy_group_size,
    toy_label,
    toy_fill,
};

/* The one exported symbol. */
const sl_dataset_plugin_t *TOY_ENTRY(void);
const sl_dataset_plugin_t *TOY_ENTRY(void) { return &toy_plugin; }
