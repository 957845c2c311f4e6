#include "coordinator/aggregator.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sl_aggregator_destroy(sl_aggregator_t **pa)
{
    if (!pa || !*pa)
        return;
    if ((*pa)->destroy)
        (*pa)->destroy((*pa)->self);
    free(*pa);
    *pa = NULL;
}

/* ---- streaming weighted mean: O(dim), exact and order-independent ------------------------- *
 * Each term weight * delta[i] is computed in double and cut to a 128-bit fixed-point number
 * with 63 fractional bits (deterministically, per term); integer addition is associative, so
 * the sum, and the mean rounded to float at the end, are the same bits whatever order the
 * updates arrive in: a resumed run reproduces an uninterrupted one even over a real network.
 * Resolution 2^-63 (about 1e-19 absolute); terms must stay below 2^43 in magnitude. */

__extension__ typedef __int128 acc_t;           /* the value, two's complement */
__extension__ typedef unsigned __int128 uacc_t; /* the arithmetic: wraps, never undefined */

#define TERM_MAX   0x1p43 /* so 2^20 terms of 2^(43+63) fit in 127 bits */
#define FRAC_SCALE 0x1p63

/* p (|p| < 2^43) as a 64.63 fixed-point number, truncated toward zero: integer part by
 * cvttsd2si, the fractional bits exactly (p - integer part), scaled by 2^63. */
static inline uacc_t fixed(double p)
{
    int64_t h = (int64_t)p;
    double frac = p - (double)h;
    int64_t l = (int64_t)(frac * FRAC_SCALE);
    return ((uacc_t)(acc_t)h << 63) + (uacc_t)(acc_t)l;
}

typedef struct {
    size_t dim;
    uacc_t *sum;   /* (dim) running sum of weight * delta, fixed point */
    uacc_t weight; /* sum of weights, fixed point */
    size_t count;
} mean_t;

static int mean_begin(void *self, uint64_t round, const uint64_t *clients, size_t n,
                      const sl_agg_emit_t *emit)
{
    (void)round, (void)clients, (void)n, (void)emit;
    mean_t *a = self;
    memset(a->sum, 0, a->dim * sizeof *a->sum);
    a->weight = 0;
    a->count = 0;
    return 0;
}

static int mean_add(void *self, uint64_t client, const float *delta, size_t dim, double weight)
{
    mean_t *a = self;
    if (dim != a->dim || !(weight > 0) || !(weight < TERM_MAX))
        return sl_error(SL_EINVAL, "aggregator mean: dim %zu (want %zu), weight %g", dim, a->dim, weight);
    if (a->count >= ((size_t)1 << 20))
        return sl_error(SL_ERANGE, "aggregator mean: more than 2^20 updates in one round");
    for (size_t i = 0; i < dim; i++) /* check first: a refused update leaves the sum untouched */
        if (!(fabs(weight * (double)delta[i]) < TERM_MAX))
            return sl_error(SL_ERANGE, "aggregator mean: client %llu: weighted value %g at %zu is too large",
                            (unsigned long long)client, weight * (double)delta[i], i);
    /* sum (dim) += weight * delta (dim) */
    for (size_t i = 0; i < dim; i++)
        a->sum[i] += fixed(weight * (double)delta[i]);
    a->weight += fixed(weight);
    a->count++;
    return 0;
}

static int mean_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    mean_t *a = self;
    if (dim != a->dim)
        return sl_error(SL_EINVAL, "aggregator mean: dim %zu (want %zu)", dim, a->dim);
    double w = (double)(acc_t)a->weight; /* both scaled by 2^63: the scale cancels */
    res->count = a->count;
    res->total_weight = w / FRAC_SCALE;
    if (a->count == 0)
        return sl_error(SL_EQUORUM, "aggregator mean: no updates");
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)((double)(acc_t)a->sum[i] / w);
    return 0;
}

static void mean_destroy(void *self)
{
    mean_t *a = self;
    if (!a)
        return;
    free(a->sum);
    free(a);
}

int sl_aggregator_mean_new(sl_aggregator_t **out, size_t dim)
{
    *out = NULL;
    sl_aggregator_t *g = calloc(1, sizeof *g);
    mean_t *a = calloc(1, sizeof *a);
    uacc_t *sum = calloc(dim ? dim : 1, sizeof *sum);
    if (!g || !a || !sum) {
        free(g), free(a), free(sum);
        return sl_error(SL_ENOMEM, "aggregator mean: out of memory (dim %zu)", dim);
    }
    a->dim = dim;
    a->sum = sum;
    g->name = "mean";
    g->self = a;
    g->begin_round = mean_begin;
    g->add_update = mean_add;
    g->finish = mean_finish;
    g->destroy = mean_destroy;
    *out = g;
    return 0;
}

/* ---- robust: buffer every update, O(clients x dim) ------------------------------------------ */

typedef struct {
    size_t dim;
    double trim; /* < 0: median */
    float *rows; /* (cap, dim) */
    size_t n, cap;
    float *col; /* (cap) scratch for one coordinate */
} robust_t;

static int robust_begin(void *self, uint64_t round, const uint64_t *clients, size_t n,
                        const sl_agg_emit_t *emit)
{
    (void)round, (void)clients, (void)emit;
    robust_t *a = self;
    a->n = 0;
    if (n > a->cap) {
        float *r = realloc(a->rows, n * a->dim * sizeof *r);
        if (!r)
            return sl_error(SL_ENOMEM, "aggregator %s: out of memory for %zu x %zu floats",
                            a->trim < 0 ? "median" : "trimmed_mean", n, a->dim);
        a->rows = r;
        float *c = realloc(a->col, n * sizeof *c);
        if (!c)
            return sl_error(SL_ENOMEM, "aggregator: out of memory");
        a->col = c;
        a->cap = n;
    }
    return 0;
}

static int robust_add(void *self, uint64_t client, const float *delta, size_t dim, double weight)
{
    (void)client, (void)weight;
    robust_t *a = self;
    if (dim != a->dim)
        return sl_error(SL_EINVAL, "aggregator: dim %zu (want %zu)", dim, a->dim);
    if (a->n >= a->cap)
        return sl_error(SL_ESTATE, "aggregator: more updates than sampled clients");
    memcpy(a->rows + a->n * dim, delta, dim * sizeof *delta);
    a->n++;
    return 0;
}

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static int robust_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    robust_t *a = self;
    res->count = a->n;
    res->total_weight = (double)a->n;
    if (a->n == 0)
        return sl_error(SL_EQUORUM, "aggregator: no updates");
    size_t n = a->n;
    size_t k = a->trim < 0 ? 0 : (size_t)(a->trim * (double)n); /* cut k at each end */
    if (2 * k >= n)
        k = (n - 1) / 2;
    for (size_t j = 0; j < dim; j++) {
        for (size_t i = 0; i < n; i++)
            a->col[i] = a->rows[i * dim + j];
        qsort(a->col, n, sizeof *a->col, cmp_float);
        if (a->trim < 0) {
            out[j] =
                n % 2 ? a->col[n / 2] : (float)(((double)a->col[n / 2 - 1] + (double)a->col[n / 2]) / 2.0);
        } else {
            double s = 0;
            for (size_t i = k; i < n - k; i++)
                s += (double)a->col[i];
            out[j] = (float)(s / (double)(n - 2 * k));
        }
    }
    return 0;
}

static void robust_destroy(void *self)
{
    robust_t *a = self;
    if (!a)
        return;
    free(a->rows);
    free(a->col);
    free(a);
}

static int robust_new(sl_aggregator_t **out, size_t dim, double trim, const char *name)
{
    *out = NULL;
    sl_aggregator_t *g = calloc(1, sizeof *g);
    robust_t *a = calloc(1, sizeof *a);
    if (!g || !a) {
        free(g), free(a);
        return sl_error(SL_ENOMEM, "aggregator %s: out of memory", name);
    }
    a->dim = dim;
    a->trim = trim;
    g->name = name;
    g->buffers = 1;
    g->self = a;
    g->begin_round = robust_begin;
    g->add_update = robust_add;
    g->finish = robust_finish;
    g->destroy = robust_destroy;
    *out = g;
    return 0;
}

int sl_aggregator_median_new(sl_aggregator_t **out, size_t dim)
{
    return robust_new(out, dim, -1.0, "median");
}

int sl_aggregator_trimmed_mean_new(sl_aggregator_t **out, size_t dim, double trim)
{
    if (!(trim >= 0 && trim < 0.5)) {
        *out = NULL;
        return sl_error(SL_EINVAL, "aggregator trimmed_mean: trim %g outside [0, 0.5)", trim);
    }
    return robust_new(out, dim, trim, "trimmed_mean");
}
