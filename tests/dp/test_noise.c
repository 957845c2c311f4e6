/* DP noise: the seeded-stream switch, and the samplers against their target distributions
 * (mean, variance, Kolmogorov-Smirnov for the continuous Gaussian, chi-square for the
 * discrete Gaussian, discrete Laplace and Bernoulli(exp(-gamma))). Fixed seeds make every
 * statistical check deterministic; thresholds are p ~ 1e-3 critical values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "privacy/dp/noise.h"
#include "support/check.h"

static sl_config_t cfg_seeded;

static void seeded(sl_dp_noise_t *ns, uint64_t seed, uint64_t round)
{
    int rc = sl_dp_noise_init_seeded(ns, &cfg_seeded, seed, round, 0);
    CHECK(rc == 0);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov statistic sqrt(n) D of samples (sorted in place) against N(0, s^2). */
static double ks_normal(double *x, size_t n, double s)
{
    qsort(x, n, sizeof *x, cmp_double);
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double f = 0.5 * erfc(-x[i] / (s * M_SQRT2));
        double lo = f - (double)i / (double)n, hi = (double)(i + 1) / (double)n - f;
        d = fmax(d, fmax(lo, hi));
    }
    return d * sqrt((double)n);
}

/* chi-square critical value at p = 0.001 (Wilson-Hilferty). */
static double chi2_crit(int df)
{
    double z = 3.0902, a = 2.0 / (9.0 * df);
    double c = 1 - a + z * sqrt(a);
    return df * c * c * c;
}

static void test_switch(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    sl_dp_noise_t ns;
    CHECK(sl_dp_noise_init_seeded(&ns, &cfg, 1, 0, 0) == SL_EPERM);
    CHECK_CONTAINS(sl_last_error(), "insecure_seeded_noise");
    CHECK(sl_dp_noise_init_seeded(&ns, NULL, 1, 0, 0) == SL_EPERM);
    /* sl_dp_noise_init picks the OS CSPRNG by default */
    CHECK(sl_dp_noise_init(&ns, &cfg, 0, 0) == 0);
    CHECK_EQ(ns.seeded, 0);
    double a = sl_dp_gaussian(&ns, 1.0), b = sl_dp_gaussian(&ns, 1.0);
    CHECK(isfinite(a) && isfinite(b) && a != b);
    sl_dp_noise_free(&ns);
    /* with the flag: deterministic by (seed, round, party) */
    cfg.dp.insecure_seeded_noise = 1;
    cfg.run.seed = 42;
    sl_dp_noise_t n1, n2, n3;
    CHECK(sl_dp_noise_init(&n1, &cfg, 3, 7) == 0);
    CHECK_EQ(n1.seeded, 1);
    CHECK(sl_dp_noise_init(&n2, &cfg, 3, 7) == 0);
    CHECK(sl_dp_noise_init(&n3, &cfg, 4, 7) == 0);
    double x1 = sl_dp_gaussian(&n1, 2.0), x2 = sl_dp_gaussian(&n2, 2.0), x3 = sl_dp_gaussian(&n3, 2.0);
    CHECK(x1 == x2);
    CHECK(x1 != x3);
    sl_dp_noise_free(&n1);
    sl_dp_noise_free(&n2);
    sl_dp_noise_free(&n3);
    uint8_t zero[sizeof n1];
    memset(zero, 0, sizeof zero);
    CHECK(memcmp(&n1, zero, sizeof n1) == 0); /* wiped */
}

static void test_os_source(void)
{
    sl_dp_noise_t ns;
    CHECK(sl_dp_noise_init_os(&ns) == 0);
    size_t n = 20000;
    float *x = calloc(n, sizeof *x);
    CHECK(sl_dp_add_gaussian(&ns, x, n, 2.0) == 0);
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m /= (double)n;
    for (size_t i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= (double)(n - 1);
    /* 7 standard errors: a false failure has probability ~1e-11 */
    CHECK_MSG(fabs(m) < 7 * 2.0 / sqrt((double)n), "mean %g", m);
    CHECK_MSG(fabs(v / 4.0 - 1) < 7 * sqrt(2.0 / (double)n), "var %g", v);
    CHECK(sl_dp_noise_below(&ns, 10) < 10);
    double u = sl_dp_noise_uniform(&ns);
    CHECK(u >= 0 && u < 1);
    free(x);
    sl_dp_noise_free(&ns);
}

static void test_gaussian(void)
{
    const double sigmas[] = {0.5, 3.0, 100.0};
    const size_t n = 200000;
    double *x = malloc(n * sizeof *x);
    float *f = malloc(n * sizeof *f);
    for (size_t k = 0; k < 3; k++) {
        double s = sigmas[k];
        sl_dp_noise_t ns;
        seeded(&ns, 1000 + k, 0);
        /* single draws */
        double m = 0, v = 0;
        for (size_t i = 0; i < n; i++) {
            x[i] = sl_dp_gaussian(&ns, s);
            m += x[i];
        }
        m /= (double)n;
        for (size_t i = 0; i < n; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= (double)(n - 1);
        CHECK_MSG(fabs(m) < 4.5 * s / sqrt((double)n), "sigma %g: mean %g", s, m);
        CHECK_MSG(fabs(v / (s * s) - 1) < 4.5 * sqrt(2.0 / (double)n), "sigma %g: var/s^2 %g", s, v / (s * s));
        double ks = ks_normal(x, n, s);
        CHECK_MSG(ks < 1.95, "sigma %g: KS sqrt(n) D = %g", s, ks);
        /* the vector path (both Box-Muller outputs) */
        memset(f, 0, n * sizeof *f);
        CHECK(sl_dp_add_gaussian(&ns, f, n, s) == 0);
        for (size_t i = 0; i < n; i++)
            x[i] = f[i];
        ks = ks_normal(x, n, s);
        CHECK_MSG(ks < 1.95, "sigma %g (vector): KS sqrt(n) D = %g", s, ks);
        /* adjacent pairs are uncorrelated */
        double c = 0;
        for (size_t i = 0; i + 1 < n; i += 2)
            c += (double)f[i] * (double)f[i + 1];
        c /= (double)(n / 2) * s * s;
        CHECK_MSG(fabs(c) < 4.5 / sqrt((double)n / 2), "sigma %g: pair correlation %g", s, c);
        /* the f64 path on an odd length */
        double odd[3] = {1, 2, 3};
        CHECK(sl_dp_add_gaussian_f64(&ns, odd, 3, s) == 0);
        CHECK(isfinite(odd[2]) && odd[2] != 3.0);
        sl_dp_noise_free(&ns);
    }
    sl_dp_noise_t ns;
    seeded(&ns, 1, 1);
    CHECK(sl_dp_add_gaussian(&ns, f, 4, -1.0) == SL_EINVAL);
    CHECK(sl_dp_add_gaussian(&ns, f, 4, NAN) == SL_EINVAL);
    f[0] = 5.0f;
    CHECK(sl_dp_add_gaussian(&ns, f, 1, 0.0) == 0 && f[0] == 5.0f);
    CHECK(sl_dp_gaussian(&ns, 0.0) == 0.0);
    sl_dp_noise_free(&ns);
    free(x);
    free(f);
}

static void test_bernoulli_exp(void)
{
    const uint64_t nums[] = {0, 3, 10, 17, 5};
    const uint64_t dens[] = {1, 10, 10, 10, 1};
    const size_t n = 100000;
    for (size_t k = 0; k < 5; k++) {
        sl_dp_noise_t ns;
        seeded(&ns, 2000 + k, 0);
        double p = exp(-(double)nums[k] / (double)dens[k]);
        size_t ones = 0;
        for (size_t i = 0; i < n; i++)
            ones += (size_t)sl_dp_bernoulli_exp(nums[k], dens[k], &ns);
        double phat = (double)ones / (double)n;
        double se = sqrt(p * (1 - p) / (double)n);
        CHECK_MSG(fabs(phat - p) <= 4.5 * se + 1e-12, "gamma %g: %g vs %g", (double)nums[k] / (double)dens[k], phat,
                  p);
        sl_dp_noise_free(&ns);
    }
}

static void test_dlaplace(void)
{
    const uint64_t ts[] = {1, 3, 50};
    const size_t n = 100000;
    for (size_t k = 0; k < 3; k++) {
        uint64_t t = ts[k];
        sl_dp_noise_t ns;
        seeded(&ns, 3000 + k, 0);
        double e = exp(-1.0 / (double)t);
        double var = 2 * e / ((1 - e) * (1 - e));
        double m = 0, v = 0;
        for (size_t i = 0; i < n; i++) {
            double y = (double)sl_dp_dlaplace_sample(t, &ns);
            m += y;
            v += y * y;
        }
        m /= (double)n;
        v /= (double)n;
        CHECK_MSG(fabs(m) < 4.5 * sqrt(var / (double)n), "t %llu: mean %g", (unsigned long long)t, m);
        /* Var(Y^2) = E[Y^4] - var^2; for a Laplace-like law E[Y^4] ~ 6 var^2 */
        CHECK_MSG(fabs(v / var - 1) < 4.5 * sqrt(5.0 / (double)n), "t %llu: var %g vs %g", (unsigned long long)t, v,
                  var);
        sl_dp_noise_free(&ns);
    }
}

/* P(Y <= k) for the discrete Gaussian: from the exact pmf (prefix sums over [-L, L]) when
 * it was tabulated, else the continuous CDF with continuity correction, whose error for
 * sigma > 1000 is below 1e-8 of a bin's mass (Euler-Maclaurin on exp(-x^2 / 2 sigma^2)). */
typedef struct {
    double s;
    int64_t L;
    double *prefix; /* prefix[i] = P(Y <= i - L), or NULL */
} dg_law_t;

static double dg_cdf(const dg_law_t *law, int64_t k)
{
    if (law->prefix) {
        if (k < -law->L)
            return 0;
        if (k >= law->L)
            return 1;
        return law->prefix[k + law->L];
    }
    return 0.5 * erfc(-((double)k + 0.5) / (law->s * M_SQRT2));
}

/* n discrete Gaussian draws vs the exact law: mean, variance and a chi-square over bins
 * (single integers for small sigma, edges at sigma * z for z = -2.5..2.5 otherwise). */
static void check_dgauss(double s, size_t n, uint64_t seed)
{
    sl_dp_dgauss_t g;
    CHECK(sl_dp_dgauss_init(&g, s) == 0);
    CHECK_EQ(g.t, (uint64_t)floor(s) + 1);
    CHECK_NEAR(ldexp((double)g.sigma2_num, -(int)g.sigma2_shift) / (s * s), 1.0, 1e-12);
    dg_law_t law = {s, 0, NULL};
    double var = s * s; /* exact to ~exp(-2 pi^2 s^2) for large s */
    if (s <= 1000) {
        law.L = (int64_t)ceil(14 * s) + 2; /* mass outside < 1e-40 */
        size_t span = (size_t)(2 * law.L + 1);
        law.prefix = malloc(span * sizeof *law.prefix);
        double z = 0, acc = 0;
        var = 0;
        for (int64_t x = -law.L; x <= law.L; x++)
            z += exp(-(double)x * (double)x / (2 * s * s));
        for (int64_t x = -law.L; x <= law.L; x++) {
            double p = exp(-(double)x * (double)x / (2 * s * s)) / z;
            acc += p;
            law.prefix[x + law.L] = acc;
            var += p * (double)x * (double)x;
        }
    }
    /* bin b covers (edge[b], edge[b+1]] with edge[0] = -inf, edge[nb] = +inf */
    int64_t edge[64];
    int nb = 0;
    if (s < 10) {
        int64_t k = (int64_t)ceil(3 * s);
        for (int64_t x = -k; x <= k; x++)
            edge[++nb] = x - 1; /* single integers x in (x-1, x] */
        edge[++nb] = k;
    } else {
        for (int i = -10; i <= 10; i++)
            edge[++nb] = (int64_t)floor(s * 0.25 * i);
    }
    nb++; /* the last bin is open above */
    size_t cnt[64] = {0};
    sl_dp_noise_t ns;
    seeded(&ns, seed, 0);
    double m = 0, v = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t y = sl_dp_dgauss_sample(&g, &ns);
        m += (double)y;
        v += (double)y * (double)y;
        int b = 0;
        while (b + 1 < nb && y > edge[b + 1])
            b++;
        cnt[b]++;
    }
    m /= (double)n;
    v /= (double)n;
    double chi = 0;
    for (int b = 0; b < nb; b++) {
        double lo = b == 0 ? 0.0 : dg_cdf(&law, edge[b]);
        double hi = b + 1 == nb ? 1.0 : dg_cdf(&law, edge[b + 1]);
        double e = (hi - lo) * (double)n;
        chi += ((double)cnt[b] - e) * ((double)cnt[b] - e) / e;
    }
    CHECK_MSG(fabs(m) < 4.5 * sqrt(var / (double)n), "dgauss sigma %g: mean %g", s, m);
    CHECK_MSG(fabs(v / var - 1) < 4.5 * sqrt(2.0 / (double)n), "dgauss sigma %g: var %g vs %g", s, v, var);
    CHECK_MSG(chi < chi2_crit(nb - 1), "dgauss sigma %g: chi2 %g with %d bins (crit %g)", s, chi, nb,
              chi2_crit(nb - 1));
    if (s >= 3 && law.prefix) /* the discrete Gaussian's variance is sigma^2 to ~1e-70 here */
        CHECK_NEAR(var / (s * s), 1.0, 1e-9);
    sl_dp_noise_free(&ns);
    free(law.prefix);
}

static void test_discrete_gaussian(void)
{
    check_dgauss(0.5, 100000, 4001);
    check_dgauss(3.0, 100000, 4002);
    check_dgauss(100.0, 100000, 4003);
    check_dgauss(1e5, 60000, 4004);
    check_dgauss(1e6, 20000, 4005);

    sl_dp_dgauss_t g;
    CHECK(sl_dp_dgauss_init(&g, 0.0) == SL_ERANGE);
    CHECK(sl_dp_dgauss_init(&g, -1.0) == SL_ERANGE);
    CHECK(sl_dp_dgauss_init(&g, NAN) == SL_ERANGE);
    CHECK(sl_dp_dgauss_init(&g, 2e7) == SL_ERANGE);
    CHECK(sl_dp_dgauss_init(&g, 1e7) == 0);

    /* the ring version is the int64 version reduced mod 2^bits, draw for draw */
    sl_dp_noise_t a, b;
    seeded(&a, 77, 0);
    seeded(&b, 77, 0);
    int64_t xi[64] = {0};
    uint32_t xu[64];
    for (int i = 0; i < 64; i++) {
        xi[i] = i;
        xu[i] = (uint32_t)i;
    }
    CHECK(sl_dp_add_discrete_gaussian(&a, xi, 64, 40.0) == 0);
    CHECK(sl_dp_add_discrete_gaussian_mod(&b, xu, 64, 40.0, 8) == 0);
    int same = 1, moved = 0;
    for (int i = 0; i < 64; i++) {
        same &= xu[i] == (uint32_t)((uint64_t)xi[i] & 0xff);
        moved += xi[i] != i;
    }
    CHECK(same);
    CHECK(moved > 50);
    /* the int32 share array: same draws again */
    sl_dp_noise_t c;
    seeded(&c, 77, 0);
    int32_t share[64];
    CHECK(sl_dp_discrete_gaussian_i32(&c, share, 64, 40.0) == 0);
    int same32 = 1;
    for (int i = 0; i < 64; i++)
        same32 &= (int64_t)share[i] == xi[i] - i;
    CHECK(same32);
    CHECK(sl_dp_discrete_gaussian_i32(&c, share, 64, 0.0) == 0 && share[0] == 0 && share[63] == 0);
    CHECK(sl_dp_discrete_gaussian_i32(&c, share, 4, -1.0) == SL_ERANGE);
    sl_dp_noise_free(&c);
    CHECK(sl_dp_add_discrete_gaussian_mod(&b, xu, 64, 40.0, 0) == SL_EINVAL);
    CHECK(sl_dp_add_discrete_gaussian_mod(&b, xu, 64, 40.0, 33) == SL_EINVAL);
    CHECK(sl_dp_add_discrete_gaussian_mod(&b, xu, 64, 0.0, 32) == 0);
    int64_t big[1] = {INT64_MAX};
    int rc = sl_dp_add_discrete_gaussian(&a, big, 1, 1e6); /* overflows unless the draw is <= 0 */
    CHECK(rc == SL_EOVERFLOW || (rc == 0 && big[0] <= INT64_MAX));
    sl_dp_noise_free(&a);
    sl_dp_noise_free(&b);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR); /* the seeded-stream warning, once per source */
    sl_config_defaults(&cfg_seeded);
    cfg_seeded.dp.insecure_seeded_noise = 1;
    cfg_seeded.dp.mode = SL_DP_CENTRAL;
    test_switch();
    test_os_source();
    test_gaussian();
    test_bernoulli_exp();
    test_dlaplace();
    test_discrete_gaussian();
    return check_summary("test_dp_noise");
}
