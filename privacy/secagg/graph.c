#include "privacy/secagg/graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#define SECURITY_BITS 40.0
#define CORRECTNESS_BITS 20.0
#define SMALL 1e-14

/* log Pr[X = x], X ~ Hypergeometric(total, marked, sampled) */
static double log_pmf(double total, double marked, double sampled, double x)
{
    if (x < 0 || x > sampled || x > marked || total - marked < sampled - x)
        return -INFINITY;
    return lgamma(marked + 1) - lgamma(x + 1) - lgamma(marked - x + 1) + lgamma(total - marked + 1) -
           lgamma(sampled - x + 1) - lgamma(total - marked - sampled + x + 1) - lgamma(total + 1) +
           lgamma(sampled + 1) + lgamma(total - sampled + 1);
}

static double log_prob_disconnected(size_t n, size_t k, size_t bad)
{
    if (k > bad)
        return -INFINITY;
    double pairs = log((double)n) + log((double)(n - k - 1)) - log(2.0);
    return pairs + lgamma((double)bad + 1) + lgamma((double)(n - k) + 1) - lgamma((double)n + 1) -
           lgamma((double)(bad - k) + 1);
}

void sl_secagg_bounds(size_t n, size_t k, double dropout, double adversarial, sl_secagg_bounds_t *out)
{
    memset(out, 0, sizeof *out);
    /* Rounded up (fcp rounds down): at small n a fraction of a client still means one,
     * so 10 clients at 5% dropout plan for 1 dropout, not 0. Equal to fcp when
     * rate * n is an integer (all of its published cases). */
    size_t adv = (size_t)ceil(adversarial * (double)n - SMALL);
    size_t drop = (size_t)ceil(dropout * (double)n - SMALL);
    size_t surv = n - drop;
    double q_sec = pow(2, -(SECURITY_BITS + 1)) / (double)n;
    double q_cor = pow(2, -CORRECTNESS_BITS) / (double)n;
    out->connected = k + 1 >= n || log_prob_disconnected(n, k, adv + drop) < -(SECURITY_BITS + 1) * log(2.0);
    /* t1: smallest a with Pr[A > a] < q_sec (upper tail summed from the top) */
    double tail = 0;
    size_t t1 = k;
    for (size_t a = k; a-- > 0;) {
        tail += exp(log_pmf((double)n, (double)adv, (double)k, (double)(a + 1)));
        if (tail >= q_sec)
            break;
        t1 = a;
    }
    /* t2: smallest s with Pr[S <= s] >= q_cor (lower tail summed from the bottom) */
    double cdf = 0;
    size_t t2 = k;
    for (size_t s = 0; s <= k; s++) {
        cdf += exp(log_pmf((double)n, (double)surv, (double)k, (double)s));
        if (cdf >= q_cor) {
            t2 = s;
            break;
        }
    }
    out->t_min = t1 + 1 > 2 ? t1 + 1 : 2;
    out->t_max = t2;
    out->feasible = out->connected && t2 > t1;
}

int sl_secagg_find_degree(size_t n, double dropout, double adversarial, size_t *k, size_t *t_min)
{
    for (size_t kk = 2; kk + 1 < n; kk += 2) {
        sl_secagg_bounds_t b;
        sl_secagg_bounds(n, kk, dropout, adversarial, &b);
        if (b.feasible) {
            *k = kk;
            *t_min = b.t_min;
            return 0;
        }
    }
    return sl_error(SL_ENOTFOUND, "secagg: no sparse graph for %zu clients at dropout %.3g, adversarial %.3g",
                    n, dropout, adversarial);
}

int sl_secagg_choose_params(size_t n, double dropout, double adversarial, size_t k_override, size_t t_override,
                            size_t *k_out, size_t *t_out)
{
    if (n < 2)
        return sl_error(SL_EINVAL, "secagg: needs at least 2 clients, got %zu", n);
    if (!(dropout >= 0 && dropout < 0.9) || !(adversarial >= 0 && adversarial < 0.9) ||
        adversarial + dropout >= 0.9)
        return sl_error(SL_EINVAL, "secagg: dropout %.3g + adversarial %.3g must be in [0, 0.9)", dropout,
                        adversarial);
    size_t k = 0, tmin_unused = 0;
    if (k_override) {
        k = k_override + (k_override & 1);
    } else if (n <= SL_SECAGG_COMPLETE_UPTO || sl_secagg_find_degree(n, dropout, adversarial, &k, &tmin_unused) != 0) {
        k = n - 1;
    }
    if (k + 1 >= n)
        k = n - 1;
    size_t t;
    size_t majority = (k + 1) / 2 + 1;
    if (majority > k + 1)
        majority = k + 1;
    if (t_override) {
        if (t_override > k + 1)
            return sl_error(SL_EINVAL, "secagg: threshold %zu exceeds the %zu share holders (k = %zu + self)",
                            t_override, k + 1, k);
        t = t_override;
    } else {
        sl_secagg_bounds_t b;
        sl_secagg_bounds(n, k, dropout, adversarial, &b);
        t = majority;
        if (b.t_min <= b.t_max) {
            if (t < b.t_min)
                t = b.t_min;
            if (t > b.t_max)
                t = b.t_max;
        }
    }
    *k_out = k;
    *t_out = t;
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int sl_secagg_graph_init(sl_secagg_graph_t *g, size_t n, size_t k, const uint8_t seed[32])
{
    memset(g, 0, sizeof *g);
    if (n < 2 || n > UINT32_MAX - 1)
        return sl_error(SL_EINVAL, "secagg graph: %zu clients out of range", n);
    if (k + 1 >= n)
        k = n - 1;
    else if (k < 2 || (k & 1))
        return sl_error(SL_EINVAL, "secagg graph: degree %zu must be even and >= 2 (or n - 1)", k);
    g->adj = malloc(n * k * sizeof *g->adj);
    uint32_t *perm = malloc(n * sizeof *perm);
    uint32_t *pos = malloc(n * sizeof *pos);
    if (!g->adj || !perm || !pos) {
        free(g->adj), free(perm), free(pos);
        g->adj = NULL;
        return sl_error(SL_ENOMEM, "secagg graph: out of memory for %zu x %zu", n, k);
    }
    g->n = n;
    g->k = k;
    if (k == n - 1) {
        for (size_t u = 0; u < n; u++) {
            uint32_t *row = g->adj + u * k;
            size_t j = 0;
            for (size_t v = 0; v < n; v++)
                if (v != u)
                    row[j++] = (uint32_t)v;
        }
    } else {
        sl_rng_t rng;
        sl_rng_init_key(&rng, seed);
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        sl_rng_shuffle_u32(&rng, perm, n); /* perm[ring position] = client */
        sl_rng_wipe(&rng);
        for (size_t i = 0; i < n; i++)
            pos[perm[i]] = (uint32_t)i;
        for (size_t u = 0; u < n; u++) {
            uint32_t *row = g->adj + u * k;
            size_t p = pos[u];
            for (size_t d = 1; d <= k / 2; d++) {
                row[2 * (d - 1)] = perm[(p + d) % n];
                row[2 * (d - 1) + 1] = perm[(p + n - d) % n];
            }
            qsort(row, k, sizeof *row, cmp_u32);
        }
    }
    free(perm);
    free(pos);
    return 0;
}

void sl_secagg_graph_free(sl_secagg_graph_t *g)
{
    free(g->adj);
    memset(g, 0, sizeof *g);
}

long sl_secagg_graph_find(const sl_secagg_graph_t *g, size_t u, uint32_t v)
{
    const uint32_t *row = sl_secagg_graph_row(g, u);
    size_t lo = 0, hi = g->k;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (row[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->k && row[lo] == v ? (long)lo : -1;
}
