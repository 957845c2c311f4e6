/* privacy/dp/noise: noise sources and the Gaussian / discrete Gaussian samplers. */
#include "privacy/dp/noise.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

#include "core/bytes.h"
#include "core/log.h"

__extension__ typedef unsigned __int128 u128_t; /* gcc/clang; pedantic-clean via __extension__ */

/* ---- sources -------------------------------------------------------------------------- */

int sl_dp_noise_init_os(sl_dp_noise_t *ns)
{
    memset(ns, 0, sizeof *ns);
    int rc = sl_csprng_init();
    if (rc)
        return rc;
    ns->seeded = 0;
    ns->pos = SL_DP_NOISE_BUF; /* empty: filled on first use */
    return 0;
}

int sl_dp_noise_init_seeded(sl_dp_noise_t *ns, const sl_config_t *cfg, uint64_t seed, uint64_t round,
                            uint64_t party)
{
    if (!cfg || !cfg->dp.insecure_seeded_noise)
        return sl_error(SL_EPERM, "dp: a seeded (predictable) noise stream was requested but "
                                  "[dp] insecure_seeded_noise is not true; DP noise must come from the "
                                  "OS CSPRNG outside tests");
    memset(ns, 0, sizeof *ns);
    SL_WARN("dp: INSECURE seeded noise stream in use (round %llu, party %llu): the DP guarantee does "
            "not hold; [dp] insecure_seeded_noise is for tests only",
            (unsigned long long)round, (unsigned long long)party);
    ns->seeded = 1;
    ns->pos = SL_DP_NOISE_BUF;
    sl_rng_init(&ns->rng, seed, "dp-noise", round, party);
    return 0;
}

int sl_dp_noise_init(sl_dp_noise_t *ns, const sl_config_t *cfg, uint64_t round, uint64_t party)
{
    if (cfg && cfg->dp.insecure_seeded_noise)
        return sl_dp_noise_init_seeded(ns, cfg, (uint64_t)cfg->run.seed, round, party);
    return sl_dp_noise_init_os(ns);
}

void sl_dp_noise_free(sl_dp_noise_t *ns)
{
    if (ns)
        sodium_memzero(ns, sizeof *ns);
}

static void noise_bytes(sl_dp_noise_t *ns, void *out, size_t n)
{
    if (ns->seeded) {
        sl_rng_bytes(&ns->rng, out, n);
        return;
    }
    uint8_t *p = out;
    while (n > 0) {
        if (ns->pos >= SL_DP_NOISE_BUF) {
            sl_csprng_bytes(ns->buf, SL_DP_NOISE_BUF);
            ns->pos = 0;
        }
        size_t take = SL_DP_NOISE_BUF - ns->pos;
        if (take > n)
            take = n;
        memcpy(p, ns->buf + ns->pos, take); /* the buffer is wiped by sl_dp_noise_free */
        ns->pos += (unsigned)take;
        p += take;
        n -= take;
    }
}

uint64_t sl_dp_noise_u64(sl_dp_noise_t *ns)
{
    uint8_t b[8];
    noise_bytes(ns, b, 8);
    return sl_get_le64(b);
}

double sl_dp_noise_uniform(sl_dp_noise_t *ns) { return (double)(sl_dp_noise_u64(ns) >> 11) * 0x1.0p-53; }

static uint32_t noise_u32(sl_dp_noise_t *ns)
{
    uint8_t b[4];
    noise_bytes(ns, b, 4);
    return sl_get_le32(b);
}

uint64_t sl_dp_noise_below(sl_dp_noise_t *ns, uint64_t n)
{
    /* Lemire's unbiased bounded integer; 32-bit draws when n fits, to spend half the
     * OS randomness (the samplers' bottleneck) on the small bounds they mostly use. */
    if (n <= UINT32_MAX) {
        uint32_t n32 = (uint32_t)n;
        uint64_t m = (uint64_t)noise_u32(ns) * n32;
        uint32_t low = (uint32_t)m;
        if (low < n32) {
            uint32_t threshold = (uint32_t)(0 - n32) % n32;
            while (low < threshold) {
                m = (uint64_t)noise_u32(ns) * n32;
                low = (uint32_t)m;
            }
        }
        return m >> 32;
    }
    u128_t m = (u128_t)sl_dp_noise_u64(ns) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (u128_t)sl_dp_noise_u64(ns) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Uniform in [0, n) for a 128-bit n > 0, by masked rejection (expected < 2 draws). */
static u128_t below128(sl_dp_noise_t *ns, u128_t n)
{
    if (n >> 64 == 0)
        return sl_dp_noise_below(ns, (uint64_t)n);
    u128_t top = n - 1;
    int bits = 128 - __builtin_clzll((uint64_t)(top >> 64));
    u128_t mask = bits >= 128 ? ~(u128_t)0 : (((u128_t)1 << bits) - 1);
    for (;;) {
        u128_t v = ((u128_t)sl_dp_noise_u64(ns) << 64) | sl_dp_noise_u64(ns);
        v &= mask;
        if (v < n)
            return v;
    }
}

/* ---- continuous Gaussian ------------------------------------------------------------- */

/* Box-Muller on two 53-bit uniforms; u1 in (0, 1] so the log is finite. */
static void box_muller(sl_dp_noise_t *ns, double *z0, double *z1)
{
    double u1 = 1.0 - sl_dp_noise_uniform(ns);
    double u2 = sl_dp_noise_uniform(ns);
    double r = sqrt(-2.0 * log(u1));
    double th = 2.0 * M_PI * u2;
    *z0 = r * cos(th);
    *z1 = r * sin(th);
}

double sl_dp_gaussian(sl_dp_noise_t *ns, double std)
{
    if (!(std > 0))
        return 0.0;
    double z0, z1;
    box_muller(ns, &z0, &z1);
    return std * z0;
}

static int check_std(double std)
{
    if (!(std >= 0) || !isfinite(std))
        return sl_error(SL_EINVAL, "dp: noise std %g must be finite and >= 0", std);
    return 0;
}

int sl_dp_add_gaussian(sl_dp_noise_t *ns, float *x, size_t n, double std)
{
    int rc = check_std(std);
    if (rc || std == 0)
        return rc;
    size_t i = 0;
    for (; i + 1 < n; i += 2) { /* x is (n,): pairs share one Box-Muller draw */
        double z0, z1;
        box_muller(ns, &z0, &z1);
        x[i] = (float)((double)x[i] + std * z0);
        x[i + 1] = (float)((double)x[i + 1] + std * z1);
    }
    if (i < n)
        x[i] = (float)((double)x[i] + sl_dp_gaussian(ns, std));
    return 0;
}

int sl_dp_add_gaussian_f64(sl_dp_noise_t *ns, double *x, size_t n, double std)
{
    int rc = check_std(std);
    if (rc || std == 0)
        return rc;
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        double z0, z1;
        box_muller(ns, &z0, &z1);
        x[i] += std * z0;
        x[i + 1] += std * z1;
    }
    if (i < n)
        x[i] += sl_dp_gaussian(ns, std);
    return 0;
}

/* ---- discrete Gaussian (Canonne, Kamath, Steinke 2020) -------------------------------- */

/* Bernoulli(num / den) for 128-bit num <= den, den > 0. */
static int bernoulli128(sl_dp_noise_t *ns, u128_t num, u128_t den)
{
    if (num == 0)
        return 0;
    if (num >= den) /* certain: spend no randomness */
        return 1;
    return below128(ns, den) < num;
}

/* Algorithm 1, gamma = num / den in [0, 1]: K = 1; while Bernoulli(gamma / K) K++; return K odd. */
static int bern_exp_le1(sl_dp_noise_t *ns, u128_t num, u128_t den)
{
    u128_t k = 1;
    for (;;) {
        /* gamma / k = num / (den * k); den * k cannot overflow in practice (k stays tiny:
         * P(k > 40) < 1/40!), but cap it anyway and fall back to stopping, which changes the
         * distribution by less than 2^-150. */
        if (k > 64)
            break;
        if (!bernoulli128(ns, num, den * k))
            break;
        k++;
    }
    return (int)(k & 1);
}

/* Algorithm 1 for any gamma = num / den >= 0: floor(gamma) Bernoulli(exp(-1)) trials, then
 * the fractional part. */
static int bern_exp(sl_dp_noise_t *ns, u128_t num, u128_t den)
{
    u128_t whole = num / den;
    for (u128_t i = 0; i < whole; i++)
        if (!bern_exp_le1(ns, 1, 1))
            return 0;
    return bern_exp_le1(ns, num % den, den);
}

int sl_dp_bernoulli_exp(uint64_t num, uint64_t den, sl_dp_noise_t *ns)
{
    if (den == 0)
        return 0;
    return bern_exp(ns, num, den);
}

/* Algorithm 2 with s = 1: discrete Laplace with P(x) proportional to exp(-|x| / t). */
int64_t sl_dp_dlaplace_sample(uint64_t t, sl_dp_noise_t *ns)
{
    if (t == 0)
        t = 1;
    for (;;) {
        uint64_t u = sl_dp_noise_below(ns, t);
        if (!bern_exp_le1(ns, u, t)) /* D ~ Bernoulli(exp(-U/t)) */
            continue;
        uint64_t v = 0;
        while (bern_exp_le1(ns, 1, 1)) /* V ~ Geometric(1 - exp(-1)) */
            v++;
        uint64_t x = u + t * v;
        int y = (int)sl_dp_noise_below(ns, 2);
        if (y && x == 0)
            continue;
        return y ? -(int64_t)x : (int64_t)x;
    }
}

/* The precision the sampler keeps: the largest shift with t^2 * 2^shift <= 2^46, so that for
 * |Y| <= 2^16 t every product below fits in 128 bits (|Y| t d <= 2^62.5 even at sigma = 1e7,
 * where shift = 0). sigma^2 * 2^shift <= t^2 * 2^shift also bounds sigma2_num. */
int sl_dp_dgauss_init(sl_dp_dgauss_t *g, double sigma)
{
    if (!(sigma > 0) || !(sigma <= 1e7))
        return sl_error(SL_ERANGE, "dp: discrete Gaussian sigma %g is outside (0, 1e7]", sigma);
    memset(g, 0, sizeof *g);
    g->sigma = sigma;
    g->t = (uint64_t)floor(sigma) + 1;
    double s2 = sigma * sigma;
    unsigned shift = 0;
    while (shift < 62) {
        double t2 = (double)g->t * (double)g->t;
        if (ldexp(t2, (int)shift + 1) > 0x1.0p46)
            break;
        shift++;
    }
    double n = nearbyint(ldexp(s2, (int)shift));
    if (n < 1)
        n = 1;
    g->sigma2_num = (uint64_t)n;
    g->sigma2_shift = shift;
    return 0;
}

/* Algorithm 3: Y ~ DLap(t); accept with Bernoulli(exp(-(|Y| - sigma^2/t)^2 / (2 sigma^2))).
 * With sigma^2 = n / d (d = 2^shift): gamma = (|Y| t d - n)^2 / (2 n d t^2). */
int64_t sl_dp_dgauss_sample(const sl_dp_dgauss_t *g, sl_dp_noise_t *ns)
{
    const u128_t n = g->sigma2_num, d = (u128_t)1 << g->sigma2_shift, t = g->t;
    const u128_t den = 2 * n * d * t * t;
    for (;;) {
        int64_t y = sl_dp_dlaplace_sample(g->t, ns);
        uint64_t ay = y < 0 ? (uint64_t)(-(y + 1)) + 1 : (uint64_t)y;
        /* Beyond |Y| = 2^16 t, gamma > 2^30: acceptance probability < exp(-2^30), i.e. 0. */
        if (ay > ((uint64_t)1 << 16) * g->t)
            continue;
        u128_t a = (u128_t)ay * t * d;
        u128_t diff = a > n ? a - n : n - a;
        u128_t num = diff * diff;
        if (bern_exp(ns, num, den))
            return y;
    }
}

int sl_dp_add_discrete_gaussian(sl_dp_noise_t *ns, int64_t *x, size_t n, double sigma)
{
    if (sigma == 0)
        return 0;
    sl_dp_dgauss_t g;
    int rc = sl_dp_dgauss_init(&g, sigma);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) { /* x is (n,) */
        int64_t z = sl_dp_dgauss_sample(&g, ns);
        int64_t r;
        if (__builtin_add_overflow(x[i], z, &r))
            return sl_error(SL_EOVERFLOW, "dp: discrete noise overflows int64 at index %zu", i);
        x[i] = r;
    }
    return 0;
}

int sl_dp_discrete_gaussian_i32(sl_dp_noise_t *ns, int32_t *out, size_t n, double sigma)
{
    if (sigma == 0) {
        memset(out, 0, n * sizeof *out);
        return 0;
    }
    sl_dp_dgauss_t g;
    int rc = sl_dp_dgauss_init(&g, sigma);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) { /* out is (n,) */
        int64_t z = sl_dp_dgauss_sample(&g, ns);
        if (z < INT32_MIN || z > INT32_MAX)
            return sl_error(SL_ERANGE, "dp: discrete noise %lld does not fit int32", (long long)z);
        out[i] = (int32_t)z;
    }
    return 0;
}

int sl_dp_add_discrete_gaussian_mod(sl_dp_noise_t *ns, uint32_t *x, size_t n, double sigma, unsigned bits)
{
    if (bits < 1 || bits > 32)
        return sl_error(SL_EINVAL, "dp: ring width %u bits is outside [1, 32]", bits);
    if (sigma == 0)
        return 0;
    sl_dp_dgauss_t g;
    int rc = sl_dp_dgauss_init(&g, sigma);
    if (rc)
        return rc;
    uint64_t mask = bits == 32 ? 0xffffffffu : (((uint64_t)1 << bits) - 1);
    for (size_t i = 0; i < n; i++) { /* x is (n,), values in Z_{2^bits} */
        int64_t z = sl_dp_dgauss_sample(&g, ns);
        x[i] = (uint32_t)(((uint64_t)x[i] + (uint64_t)z) & mask); /* two's complement wraps mod 2^64 */
    }
    return 0;
}
