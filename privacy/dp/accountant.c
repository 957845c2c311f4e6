/* privacy/dp/accountant: RDP accountant, a faithful port of Opacus 1.5.
 *
 * Sources ported (Apache-2.0, Meta Platforms; in turn from TF Privacy's rdp_accountant.py):
 *   opacus/accountants/analysis/rdp.py   _log_add, _log_sub, _compute_log_a_for_int_alpha,
 *                                        _compute_log_a_for_frac_alpha, _log_erfc,
 *                                        _compute_rdp, compute_rdp, get_privacy_spent
 *   opacus/accountants/rdp.py            RDPAccountant.DEFAULT_ALPHAS, step, get_privacy_spent
 *   opacus/accountants/utils.py          get_noise_multiplier (MAX_SIGMA = 1e6)
 * Each function below names the Python function it mirrors; the floating-point operations
 * are kept in the same order so the results agree to the last few ulps. */
#include "privacy/dp/accountant.h"

#include "core/bytes.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- orders ------------------------------------------------------------------------- */

/* [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)); each entry is the same
 * IEEE expression Python evaluates (the compiler folds it with the same rounding). */
static const double orders_table[] = {
    1.0 + 1.0 / 10.0, 1.0 + 2.0 / 10.0, 1.0 + 3.0 / 10.0, 1.0 + 4.0 / 10.0, 1.0 + 5.0 / 10.0, 1.0 + 6.0 / 10.0,
    1.0 + 7.0 / 10.0, 1.0 + 8.0 / 10.0, 1.0 + 9.0 / 10.0, 1.0 + 10.0 / 10.0, 1.0 + 11.0 / 10.0, 1.0 + 12.0 / 10.0,
    1.0 + 13.0 / 10.0, 1.0 + 14.0 / 10.0, 1.0 + 15.0 / 10.0, 1.0 + 16.0 / 10.0, 1.0 + 17.0 / 10.0, 1.0 + 18.0 / 10.0,
    1.0 + 19.0 / 10.0, 1.0 + 20.0 / 10.0, 1.0 + 21.0 / 10.0, 1.0 + 22.0 / 10.0, 1.0 + 23.0 / 10.0, 1.0 + 24.0 / 10.0,
    1.0 + 25.0 / 10.0, 1.0 + 26.0 / 10.0, 1.0 + 27.0 / 10.0, 1.0 + 28.0 / 10.0, 1.0 + 29.0 / 10.0, 1.0 + 30.0 / 10.0,
    1.0 + 31.0 / 10.0, 1.0 + 32.0 / 10.0, 1.0 + 33.0 / 10.0, 1.0 + 34.0 / 10.0, 1.0 + 35.0 / 10.0, 1.0 + 36.0 / 10.0,
    1.0 + 37.0 / 10.0, 1.0 + 38.0 / 10.0, 1.0 + 39.0 / 10.0, 1.0 + 40.0 / 10.0, 1.0 + 41.0 / 10.0, 1.0 + 42.0 / 10.0,
    1.0 + 43.0 / 10.0, 1.0 + 44.0 / 10.0, 1.0 + 45.0 / 10.0, 1.0 + 46.0 / 10.0, 1.0 + 47.0 / 10.0, 1.0 + 48.0 / 10.0,
    1.0 + 49.0 / 10.0, 1.0 + 50.0 / 10.0, 1.0 + 51.0 / 10.0, 1.0 + 52.0 / 10.0, 1.0 + 53.0 / 10.0, 1.0 + 54.0 / 10.0,
    1.0 + 55.0 / 10.0, 1.0 + 56.0 / 10.0, 1.0 + 57.0 / 10.0, 1.0 + 58.0 / 10.0, 1.0 + 59.0 / 10.0, 1.0 + 60.0 / 10.0,
    1.0 + 61.0 / 10.0, 1.0 + 62.0 / 10.0, 1.0 + 63.0 / 10.0, 1.0 + 64.0 / 10.0, 1.0 + 65.0 / 10.0, 1.0 + 66.0 / 10.0,
    1.0 + 67.0 / 10.0, 1.0 + 68.0 / 10.0, 1.0 + 69.0 / 10.0, 1.0 + 70.0 / 10.0, 1.0 + 71.0 / 10.0, 1.0 + 72.0 / 10.0,
    1.0 + 73.0 / 10.0, 1.0 + 74.0 / 10.0, 1.0 + 75.0 / 10.0, 1.0 + 76.0 / 10.0, 1.0 + 77.0 / 10.0, 1.0 + 78.0 / 10.0,
    1.0 + 79.0 / 10.0, 1.0 + 80.0 / 10.0, 1.0 + 81.0 / 10.0, 1.0 + 82.0 / 10.0, 1.0 + 83.0 / 10.0, 1.0 + 84.0 / 10.0,
    1.0 + 85.0 / 10.0, 1.0 + 86.0 / 10.0, 1.0 + 87.0 / 10.0, 1.0 + 88.0 / 10.0, 1.0 + 89.0 / 10.0, 1.0 + 90.0 / 10.0,
    1.0 + 91.0 / 10.0, 1.0 + 92.0 / 10.0, 1.0 + 93.0 / 10.0, 1.0 + 94.0 / 10.0, 1.0 + 95.0 / 10.0, 1.0 + 96.0 / 10.0,
    1.0 + 97.0 / 10.0, 1.0 + 98.0 / 10.0, 1.0 + 99.0 / 10.0, 12.0, 13.0, 14.0,
    15.0, 16.0, 17.0, 18.0, 19.0, 20.0,
    21.0, 22.0, 23.0, 24.0, 25.0, 26.0,
    27.0, 28.0, 29.0, 30.0, 31.0, 32.0,
    33.0, 34.0, 35.0, 36.0, 37.0, 38.0,
    39.0, 40.0, 41.0, 42.0, 43.0, 44.0,
    45.0, 46.0, 47.0, 48.0, 49.0, 50.0,
    51.0, 52.0, 53.0, 54.0, 55.0, 56.0,
    57.0, 58.0, 59.0, 60.0, 61.0, 62.0,
    63.0,
};
_Static_assert(sizeof orders_table / sizeof orders_table[0] == SL_DP_NUM_ORDERS, "Opacus has 151 default orders");

const double *sl_dp_default_orders(void) { return orders_table; }

/* ---- log-space arithmetic (rdp.py) ------------------------------------------------------ */

/* _log_add */
static double log_add(double logx, double logy)
{
    double a = fmin(logx, logy), b = fmax(logx, logy);
    if (a == -INFINITY)
        return b;
    return log1p(exp(a - b)) + b;
}

/* _log_sub; returns 0 and sets *out, or SL_ERANGE where Python raises ValueError. */
static int log_sub(double logx, double logy, double *out)
{
    if (logx < logy)
        return sl_error(SL_ERANGE, "rdp: log-space subtraction would be negative");
    if (logy == -INFINITY) {
        *out = logx;
        return 0;
    }
    if (logx == logy) {
        *out = -INFINITY;
        return 0;
    }
    double d = expm1(logx - logy);
    if (isinf(d)) { /* Python's math.expm1 raises OverflowError: return logx */
        *out = logx;
        return 0;
    }
    *out = log(d) + logy;
    return 0;
}

/* _log_erfc: log(2) + scipy.special.log_ndtr(-x * sqrt 2) = log(erfc(x)), accurate for
 * large x. glibc's erfc is accurate to a few ulps in relative terms until it underflows
 * (x ~ 26.5); beyond x = 20 the asymptotic series of erfc is used (truncation < 1e-12). */
static double log_erfc(double x)
{
    if (x < 20.0)
        return log(erfc(x));
    double r = 1.0 / (x * x);
    /* erfc(x) = exp(-x^2) / (x sqrt(pi)) * (1 - r/2 + 3r^2/4 - 15r^3/8 + 105r^4/16 - ...) */
    double series = 1.0 + r * (-0.5 + r * (0.75 + r * (-1.875 + r * (6.5625 - r * 29.53125))));
    return -x * x - log(x) - 0.5 * log(M_PI) + log(series);
}

/* scipy.special.binom(n, k) for integer k >= 0: its multiplication formula for k < 20
 * (with the symmetry reduction for integer n), else 1 / ((n + 1) B(1 + n - k, 1 + k)). */
static double binom(double n, int k)
{
    double kx = (double)k;
    double nx = floor(n);
    if (nx == n && kx > nx / 2 && nx > 0)
        kx = nx - kx;
    if (kx >= 0 && kx < 20) {
        double num = 1.0, den = 1.0;
        for (int i = 1; i < 1 + (int)kx; i++) {
            num *= (double)i + n - kx;
            den *= (double)i;
            if (fabs(num) > 1e50) {
                num /= den;
                den = 1.0;
            }
        }
        return num / den;
    }
    /* 1/((n+1) B(a, b)) with a = 1+n-k (may be negative, non-integer), b = 1+k: the sign
     * of Gamma(a) and log|Gamma| give an accurate value without overflow. */
    double a = 1.0 + n - kx, b = 1.0 + kx;
    int sa = 1, sb = 1, sab = 1; /* lgamma_r: the reentrant form (lgamma writes signgam) */
    double lga = lgamma_r(a, &sa);
    double lgb = lgamma_r(b, &sb);
    double lgab = lgamma_r(a + b, &sab);
    /* B(a,b) = G(a) G(b) / G(a+b) -> 1 / ((n+1) B) = G(a+b) / ((n+1) G(a) G(b)) */
    double mag = exp(lgab - lga - lgb);
    return (double)(sa * sab) * mag / (n + 1.0);
}

/* _compute_log_a_for_int_alpha */
static double log_a_int(double q, double sigma, int alpha)
{
    double log_a = -INFINITY;
    for (int i = 0; i <= alpha; i++) {
        double log_coef_i = log(binom((double)alpha, i)) + (double)i * log(q) + (double)(alpha - i) * log(1 - q);
        double s = log_coef_i + (double)(i * i - i) / (2 * (sigma * sigma));
        log_a = log_add(log_a, s);
    }
    return log_a;
}

/* _compute_log_a_for_frac_alpha */
static int log_a_frac(double q, double sigma, double alpha, double *out)
{
    double log_a0 = -INFINITY, log_a1 = -INFINITY;
    double z0 = sigma * sigma * log(1 / q - 1) + 0.5;
    for (int i = 0;; i++) {
        if (i > 100000)
            return sl_error(SL_ERANGE, "rdp: series for alpha = %g did not converge", alpha);
        double coef = binom(alpha, i);
        double log_coef = log(fabs(coef));
        double j = alpha - (double)i;
        double di = (double)i;

        double log_t0 = log_coef + di * log(q) + j * log(1 - q);
        double log_t1 = log_coef + j * log(q) + di * log(1 - q);

        double log_e0 = log(0.5) + log_erfc((di - z0) / (M_SQRT2 * sigma));
        double log_e1 = log(0.5) + log_erfc((z0 - j) / (M_SQRT2 * sigma));

        double log_s0 = log_t0 + (di * di - di) / (2 * (sigma * sigma)) + log_e0;
        double log_s1 = log_t1 + (j * j - j) / (2 * (sigma * sigma)) + log_e1;

        if (coef > 0) {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            int rc = log_sub(log_a0, log_s0, &log_a0);
            if (rc)
                return rc;
            rc = log_sub(log_a1, log_s1, &log_a1);
            if (rc)
                return rc;
        }
        if (fmax(log_s0, log_s1) < -30)
            break;
    }
    *out = log_add(log_a0, log_a1);
    return 0;
}

/* _compute_rdp */
int sl_dp_rdp(double q, double sigma, double alpha, double *rdp_out)
{
    if (!(q >= 0 && q <= 1))
        return sl_error(SL_EINVAL, "rdp: sampling rate q = %g is not in [0, 1]", q);
    if (!(sigma >= 0) || isnan(sigma))
        return sl_error(SL_EINVAL, "rdp: noise multiplier %g is negative", sigma);
    if (!(alpha > 1))
        return sl_error(SL_EINVAL, "rdp: order alpha = %g must be > 1", alpha);
    if (q == 0) {
        *rdp_out = 0;
        return 0;
    }
    if (sigma == 0 || isinf(alpha)) {
        *rdp_out = INFINITY;
        return 0;
    }
    if (isinf(sigma)) {
        *rdp_out = 0;
        return 0;
    }
    if (q == 1.0) {
        *rdp_out = alpha / (2 * (sigma * sigma));
        return 0;
    }
    /* Python raises ZeroDivisionError / OverflowError where sigma^2 or 1/q leave the
     * double range; refuse those instead of computing NaN. */
    if (sigma * sigma == 0 || !isfinite(sigma * sigma) || !isfinite(1 / q - 1))
        return sl_error(SL_ERANGE, "rdp: q = %g, sigma = %g is outside the range the RDP series can evaluate", q,
                        sigma);
    double log_a = 0;
    if (alpha == floor(alpha) && alpha < 2147483647.0) {
        log_a = log_a_int(q, sigma, (int)alpha);
    } else {
        int rc = log_a_frac(q, sigma, alpha, &log_a);
        if (rc)
            return rc;
    }
    if (isnan(log_a))
        return sl_error(SL_ERANGE, "rdp: the series for q = %g, sigma = %g, alpha = %g is not a number", q, sigma,
                        alpha);
    *rdp_out = log_a / (alpha - 1);
    return 0;
}

/* compute_rdp(q, sigma, 1, orders): the per-step vector. */
static int rdp_per_step(double q, double sigma, double out[SL_DP_NUM_ORDERS])
{
    const double *orders = sl_dp_default_orders();
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++) {
        int rc = sl_dp_rdp(q, sigma, orders[i], &out[i]);
        if (rc)
            return rc;
    }
    return 0;
}

int sl_dp_rdp_vector(double q, double sigma, int64_t steps, double out[SL_DP_NUM_ORDERS])
{
    if (steps < 0)
        return sl_error(SL_EINVAL, "rdp: steps = %lld is negative", (long long)steps);
    int rc = rdp_per_step(q, sigma, out);
    if (rc)
        return rc;
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++)
        out[i] = out[i] * (double)steps; /* numpy: rdp * steps (0 * inf = nan, as numpy) */
    return 0;
}

/* get_privacy_spent */
int sl_dp_rdp_to_epsilon(const double *orders, const double *rdp, size_t n, double delta, double *eps,
                         double *best_alpha)
{
    if (!(delta > 0 && delta < 1))
        return sl_error(SL_EINVAL, "epsilon: delta = %g is not in (0, 1)", delta);
    if (n == 0)
        return sl_error(SL_EINVAL, "epsilon: no RDP orders");
    double best = NAN, alpha_best = NAN;
    size_t idx = 0;
    int found = 0;
    double log_delta = log(delta);
    for (size_t i = 0; i < n; i++) {
        double a = orders[i];
        double e = rdp[i] - (log_delta + log(a)) / (a - 1) + log((a - 1) / a);
        if (isnan(e))
            continue;
        if (!found || e < best) { /* np.nanargmin: first minimum */
            best = e;
            idx = i;
            found = 1;
        }
    }
    if (!found) {
        *eps = INFINITY;
        if (best_alpha)
            *best_alpha = NAN;
        return 0;
    }
    alpha_best = orders[idx];
    *eps = best;
    if (best_alpha)
        *best_alpha = alpha_best;
    return 0;
}

int sl_dp_epsilon(double q, double sigma, int64_t steps, double delta, double *eps, double *best_alpha)
{
    double rdp[SL_DP_NUM_ORDERS];
    int rc = sl_dp_rdp_vector(q, sigma, steps, rdp);
    if (rc)
        return rc;
    return sl_dp_rdp_to_epsilon(sl_dp_default_orders(), rdp, SL_DP_NUM_ORDERS, delta, eps, best_alpha);
}

/* opacus/accountants/utils.py get_noise_multiplier */
int sl_dp_noise_multiplier(double q, int64_t steps, double delta, double target_eps, double tolerance,
                           double *sigma_out)
{
    if (!(target_eps > 0) || !isfinite(target_eps))
        return sl_error(SL_EINVAL, "noise: target epsilon %g must be > 0", target_eps);
    if (!(tolerance > 0) || !isfinite(tolerance))
        return sl_error(SL_EINVAL, "noise: epsilon tolerance %g must be > 0", tolerance);
    if (steps < 1)
        return sl_error(SL_EINVAL, "noise: steps = %lld must be >= 1", (long long)steps);
    const double max_sigma = 1e6;
    double eps_high = INFINITY;
    double sigma_low = 0, sigma_high = 10;
    int rc;
    while (eps_high > target_eps) {
        sigma_high = 2 * sigma_high;
        rc = sl_dp_epsilon(q, sigma_high, steps, delta, &eps_high, NULL);
        if (rc)
            return rc;
        if (sigma_high > max_sigma)
            return sl_error(SL_ERANGE, "noise: the privacy budget is too low (epsilon %g at delta %g needs "
                                       "a noise multiplier above 1e6)", target_eps, delta);
    }
    while (target_eps - eps_high > tolerance) {
        double sigma = (sigma_low + sigma_high) / 2;
        double eps;
        rc = sl_dp_epsilon(q, sigma, steps, delta, &eps, NULL);
        if (rc)
            return rc;
        if (eps < target_eps) {
            sigma_high = sigma;
            eps_high = eps;
        } else {
            sigma_low = sigma;
        }
    }
    *sigma_out = sigma_high;
    return 0;
}

/* ---- the stateful accountant -------------------------------------------------------- */

typedef struct {
    double q, sigma;
    int64_t steps;
} entry_t;

/* Per-step RDP vectors of recently seen (q, sigma), so alternating values (distributed
 * DP with a varying report count) do not recompute the series. */
#define CACHE_SLOTS 16
typedef struct {
    int used;
    double q, sigma;
    uint64_t stamp;
    double rdp[SL_DP_NUM_ORDERS];
} cache_slot_t;

struct sl_dp_accountant {
    entry_t *hist;
    size_t n, cap;
    /* Opacus sums compute_rdp(entry) over the history left to right; closed[] holds that
     * left fold over every entry but the last, so an epsilon costs one vector add. */
    double closed[SL_DP_NUM_ORDERS];
    int have_closed;
    int64_t total_steps;
    cache_slot_t cache[CACHE_SLOTS];
    uint64_t clock;
};

static int same_params(double q1, double s1, double q2, double s2)
{
    /* Python's == on floats: exact equality. */
    return q1 == q2 && s1 == s2;
}

/* The per-step vector for (q, sigma), from the cache or computed. The cache is logically
 * const (it changes no observable state), hence the cast in const callers. */
static int per_step(struct sl_dp_accountant *acc, double q, double sigma, const double **out)
{
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        cache_slot_t *c = &acc->cache[i];
        if (c->used && same_params(c->q, c->sigma, q, sigma)) {
            c->stamp = ++acc->clock;
            *out = c->rdp;
            return 0;
        }
    }
    size_t victim = 0; /* an unused slot, else the least recently used */
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        if (!acc->cache[i].used) {
            victim = i;
            break;
        }
        if (acc->cache[i].stamp < acc->cache[victim].stamp)
            victim = i;
    }
    cache_slot_t *c = &acc->cache[victim];
    int rc = rdp_per_step(q, sigma, c->rdp);
    if (rc) {
        c->used = 0;
        return rc;
    }
    c->used = 1;
    c->q = q;
    c->sigma = sigma;
    c->stamp = ++acc->clock;
    *out = c->rdp;
    return 0;
}

static int check_step_args(double q, double sigma, int64_t steps)
{
    if (!(q >= 0 && q <= 1))
        return sl_error(SL_EINVAL, "accountant: sampling rate q = %g is not in [0, 1]", q);
    if (!(sigma >= 0) || !isfinite(sigma))
        return sl_error(SL_EINVAL, "accountant: noise multiplier %g must be finite and >= 0", sigma);
    if (steps < 1)
        return sl_error(SL_EINVAL, "accountant: steps = %lld must be >= 1", (long long)steps);
    return 0;
}

int sl_dp_accountant_new(sl_dp_accountant_t **out)
{
    struct sl_dp_accountant *acc = calloc(1, sizeof *acc);
    if (!acc)
        return sl_error(SL_ENOMEM, "accountant: out of memory");
    *out = acc;
    return 0;
}

void sl_dp_accountant_destroy(sl_dp_accountant_t **p)
{
    if (!p || !*p)
        return;
    free((*p)->hist);
    free(*p);
    *p = NULL;
}

/* Add the contribution of entry e (per-step vector times steps) to acc (the left fold). */
static void fold(double acc_vec[SL_DP_NUM_ORDERS], int *have, const double *per, int64_t steps)
{
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++) {
        double v = per[i] * (double)steps;
        acc_vec[i] = *have ? acc_vec[i] + v : 0.0 + v;
    }
    *have = 1;
}

int sl_dp_accountant_step(sl_dp_accountant_t *acc, double q, double sigma, int64_t steps)
{
    int rc = check_step_args(q, sigma, steps);
    if (rc)
        return rc;
    if (acc->total_steps > INT64_MAX - steps)
        return sl_error(SL_EOVERFLOW, "accountant: step count overflows");
    const double *per;
    rc = per_step(acc, q, sigma, &per); /* validates the series before any change */
    if (rc)
        return rc;
    if (acc->n > 0 && same_params(acc->hist[acc->n - 1].q, acc->hist[acc->n - 1].sigma, q, sigma)) {
        acc->hist[acc->n - 1].steps += steps;
        acc->total_steps += steps;
        return 0;
    }
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 8;
        entry_t *h = realloc(acc->hist, cap * sizeof *h);
        if (!h)
            return sl_error(SL_ENOMEM, "accountant: out of memory");
        acc->hist = h;
        acc->cap = cap;
    }
    if (acc->n > 0) { /* close the previous last entry */
        const entry_t *last = &acc->hist[acc->n - 1];
        const double *lp;
        rc = per_step(acc, last->q, last->sigma, &lp);
        if (rc)
            return rc;
        fold(acc->closed, &acc->have_closed, lp, last->steps);
    }
    acc->hist[acc->n++] = (entry_t){q, sigma, steps};
    acc->total_steps += steps;
    return 0;
}

/* rdp(history + optional extra step) into out. */
static int total_rdp(const sl_dp_accountant_t *cacc, const entry_t *extra, double out[SL_DP_NUM_ORDERS])
{
    struct sl_dp_accountant *acc = (struct sl_dp_accountant *)cacc; /* cache only */
    int have = acc->have_closed;
    memcpy(out, acc->closed, sizeof acc->closed);
    const double *per;
    int rc;
    if (acc->n > 0) {
        entry_t last = acc->hist[acc->n - 1];
        if (extra && same_params(last.q, last.sigma, extra->q, extra->sigma)) {
            last.steps += extra->steps;
            extra = NULL;
        }
        rc = per_step(acc, last.q, last.sigma, &per);
        if (rc)
            return rc;
        fold(out, &have, per, last.steps);
    }
    if (extra) {
        rc = per_step(acc, extra->q, extra->sigma, &per);
        if (rc)
            return rc;
        fold(out, &have, per, extra->steps);
    }
    if (!have)
        memset(out, 0, SL_DP_NUM_ORDERS * sizeof *out);
    return 0;
}

int sl_dp_accountant_epsilon(const sl_dp_accountant_t *acc, double delta, double *eps, double *best_alpha)
{
    if (!(delta > 0 && delta < 1))
        return sl_error(SL_EINVAL, "epsilon: delta = %g is not in (0, 1)", delta);
    if (acc->n == 0) {
        *eps = 0;
        if (best_alpha)
            *best_alpha = NAN;
        return 0;
    }
    double rdp[SL_DP_NUM_ORDERS];
    int rc = total_rdp(acc, NULL, rdp);
    if (rc)
        return rc;
    return sl_dp_rdp_to_epsilon(sl_dp_default_orders(), rdp, SL_DP_NUM_ORDERS, delta, eps, best_alpha);
}

int sl_dp_accountant_would_exceed(const sl_dp_accountant_t *acc, double q, double sigma, double delta,
                                  double target_eps, int *exceed, double *eps_after)
{
    int rc = check_step_args(q, sigma, 1);
    if (rc)
        return rc;
    if (!(delta > 0 && delta < 1))
        return sl_error(SL_EINVAL, "budget: delta = %g is not in (0, 1)", delta);
    if (isnan(target_eps))
        return sl_error(SL_EINVAL, "budget: target epsilon is NaN");
    entry_t extra = {q, sigma, 1};
    double rdp[SL_DP_NUM_ORDERS], eps;
    rc = total_rdp(acc, &extra, rdp);
    if (rc)
        return rc;
    rc = sl_dp_rdp_to_epsilon(sl_dp_default_orders(), rdp, SL_DP_NUM_ORDERS, delta, &eps, NULL);
    if (rc)
        return rc;
    if (eps_after)
        *eps_after = eps;
    *exceed = target_eps > 0 && !(eps <= target_eps);
    return 0;
}

size_t sl_dp_accountant_entries(const sl_dp_accountant_t *acc) { return acc->n; }

int sl_dp_accountant_entry(const sl_dp_accountant_t *acc, size_t i, double *q, double *sigma, int64_t *steps)
{
    if (i >= acc->n)
        return sl_error(SL_ERANGE, "accountant: entry %zu of %zu", i, acc->n);
    *q = acc->hist[i].q;
    *sigma = acc->hist[i].sigma;
    *steps = acc->hist[i].steps;
    return 0;
}

int64_t sl_dp_accountant_total_steps(const sl_dp_accountant_t *acc) { return acc->total_steps; }

/* ---- serialization ------------------------------------------------------------------- */

#define ACC_MAGIC "SLRA"
#define ACC_VERSION 1u
#define ACC_HEADER 20u /* magic 4, version 4, orders 4, count 8 */
#define ACC_ENTRY 24u

int sl_dp_accountant_encode(const sl_dp_accountant_t *acc, uint8_t **buf, size_t *len)
{
    size_t total = ACC_HEADER + acc->n * ACC_ENTRY;
    uint8_t *b = malloc(total);
    if (!b)
        return sl_error(SL_ENOMEM, "accountant: out of memory");
    memcpy(b, ACC_MAGIC, 4);
    sl_put_le32(b + 4, ACC_VERSION);
    sl_put_le32(b + 8, SL_DP_NUM_ORDERS);
    sl_put_le64(b + 12, acc->n);
    for (size_t i = 0; i < acc->n; i++) {
        uint8_t *p = b + ACC_HEADER + i * ACC_ENTRY;
        sl_put_f64le(p, acc->hist[i].q);
        sl_put_f64le(p + 8, acc->hist[i].sigma);
        sl_put_le64(p + 16, (uint64_t)acc->hist[i].steps);
    }
    *buf = b;
    *len = total;
    return 0;
}

int sl_dp_accountant_decode(const uint8_t *buf, size_t len, sl_dp_accountant_t **out)
{
    if (!buf || len < ACC_HEADER)
        return sl_error(SL_EFORMAT, "accountant state: %zu bytes is shorter than the %u-byte header", len,
                        ACC_HEADER);
    if (memcmp(buf, ACC_MAGIC, 4) != 0)
        return sl_error(SL_EFORMAT, "accountant state: bad magic (not an accountant blob)");
    uint32_t version = sl_get_le32(buf + 4);
    if (version != ACC_VERSION)
        return sl_error(SL_EFORMAT, "accountant state: version %u, this build reads %u", version, ACC_VERSION);
    uint32_t norders = sl_get_le32(buf + 8);
    if (norders != SL_DP_NUM_ORDERS)
        return sl_error(SL_EFORMAT, "accountant state: %u RDP orders, expected %d", norders, SL_DP_NUM_ORDERS);
    uint64_t n = sl_get_le64(buf + 12);
    if (n > (len - ACC_HEADER) / ACC_ENTRY || len != ACC_HEADER + n * ACC_ENTRY)
        return sl_error(SL_EFORMAT, "accountant state: %zu bytes do not hold %llu entries", len,
                        (unsigned long long)n);
    sl_dp_accountant_t *acc = NULL;
    int rc = sl_dp_accountant_new(&acc);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = buf + ACC_HEADER + i * ACC_ENTRY;
        double q = sl_get_f64le(p), sigma = sl_get_f64le(p + 8);
        uint64_t steps = sl_get_le64(p + 16);
        if (steps == 0 || steps > (uint64_t)INT64_MAX) {
            rc = sl_error(SL_EFORMAT, "accountant state: entry %llu has %llu steps", (unsigned long long)i,
                          (unsigned long long)steps);
            goto cleanup;
        }
        rc = check_step_args(q, sigma, (int64_t)steps);
        if (rc) {
            rc = sl_error_wrap(SL_EFORMAT, "accountant state: entry %llu", (unsigned long long)i);
            goto cleanup;
        }
        rc = sl_dp_accountant_step(acc, q, sigma, (int64_t)steps);
        if (rc) {
            rc = sl_error_wrap(SL_EFORMAT, "accountant state: entry %llu", (unsigned long long)i);
            goto cleanup;
        }
    }
    *out = acc;
    return 0;
cleanup:
    sl_dp_accountant_destroy(&acc);
    return rc;
}
