/* privacy/dp/noise: where DP noise comes from, and its two samplers.
 *
 * A noise source is the OS CSPRNG (libsodium randombytes, read in 4 KiB chunks into a
 * buffer that is wiped on free). For tests only, a source can instead be a seeded
 * ChaCha20 stream (core/rng), and only when the configuration explicitly says
 * dp.insecure_seeded_noise = true; a seeded source logs a warning when it is made.
 *
 * Samplers:
 *  - continuous Gaussian N(0, std^2): Box-Muller on two 53-bit uniforms, in double
 *    precision, both outputs used when filling a vector;
 *  - discrete Gaussian N_Z(0, sigma^2) (Canonne, Kamath, Steinke 2020, "The Discrete
 *    Gaussian for Differential Privacy", Algorithms 1-3): exact rejection sampling on
 *    integers, from Bernoulli(exp(-gamma)) and discrete Laplace, with the paper's
 *    t = floor(sigma) + 1. sigma^2 is first rounded to a dyadic rational n / 2^k, k as
 *    large as 128-bit arithmetic allows (k = 46 below sigma = 1: relative error < 1e-13
 *    for sigma >= 1, < 1e-9 for sigma >= 0.01), and the sampler is then exact for that
 *    rational: all arithmetic is on 64/128-bit integers. Supported sigma: (0, 1e7].
 *
 * Usage (client in distributed/local mode, coordinator in central mode):
 *    sl_dp_noise_t ns;
 *    int rc = sl_dp_noise_init(&ns, cfg, round, party_id);  // CSPRNG unless the test flag
 *    sl_dp_add_gaussian(&ns, update, n, std);              // std from privacy/dp/mechanism.h
 *    sl_dp_noise_free(&ns);
 */
#ifndef SL_DP_NOISE_H
#define SL_DP_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"

#define SL_DP_NOISE_BUF 4096

typedef struct sl_dp_noise {
    int seeded;                   /* 1: deterministic test stream (insecure), 0: OS CSPRNG */
    sl_rng_t rng;                 /* the seeded stream (seeded == 1 only) */
    unsigned pos;                 /* bytes of buf already used (CSPRNG only) */
    uint8_t buf[SL_DP_NOISE_BUF]; /* CSPRNG bytes not yet used; wiped by sl_dp_noise_free */
} sl_dp_noise_t;

/* A noise source reading the OS CSPRNG. Returns SL_ECRYPTO if libsodium cannot start. */
SL_NODISCARD int sl_dp_noise_init_os(sl_dp_noise_t *ns);

/* TESTS ONLY: a deterministic noise source keyed by (seed, "dp-noise", round, party).
 * Refused with SL_EPERM unless cfg->dp.insecure_seeded_noise is true; logs a warning
 * (sl_log) each time it is used to make a source. `cfg` is borrowed. */
SL_NODISCARD int sl_dp_noise_init_seeded(sl_dp_noise_t *ns, const sl_config_t *cfg, uint64_t seed,
                                         uint64_t round, uint64_t party);

/* The source the configuration asks for: the OS CSPRNG, or (dp.insecure_seeded_noise)
 * the seeded stream keyed by run.seed, round and party. `party` is the client id, or
 * UINT64_MAX for the coordinator. */
SL_NODISCARD int sl_dp_noise_init(sl_dp_noise_t *ns, const sl_config_t *cfg, uint64_t round,
                                  uint64_t party);

/* Wipe the source (buffered CSPRNG bytes, stream key). Safe on a zeroed struct. */
void sl_dp_noise_free(sl_dp_noise_t *ns);

/* Raw randomness from the source: 64 random bits, a uniform double in [0, 1) with 53
 * random bits, an unbiased integer in [0, n) (n > 0). */
uint64_t sl_dp_noise_u64(sl_dp_noise_t *ns);
double sl_dp_noise_uniform(sl_dp_noise_t *ns);
uint64_t sl_dp_noise_below(sl_dp_noise_t *ns, uint64_t n);

/* One draw of N(0, std^2), std >= 0 (0 gives 0). */
double sl_dp_gaussian(sl_dp_noise_t *ns, double std);

/* x[i] += N(0, std^2) for i < n; the sum is formed in double and rounded to float.
 * x is (n,). Returns SL_EINVAL for std < 0 or non-finite std. */
SL_NODISCARD int sl_dp_add_gaussian(sl_dp_noise_t *ns, float *x, size_t n, double std);

/* Same on doubles (the coordinator's running sum may be double). */
SL_NODISCARD int sl_dp_add_gaussian_f64(sl_dp_noise_t *ns, double *x, size_t n, double std);

/* ---- discrete Gaussian ------------------------------------------------------------ */

/* A prepared discrete Gaussian: sigma^2 = sigma2_num / 2^sigma2_shift exactly, t = floor(sigma)+1. */
typedef struct sl_dp_dgauss {
    double sigma;          /* as requested */
    uint64_t sigma2_num;   /* sigma^2 rounded to sigma2_num / 2^sigma2_shift */
    unsigned sigma2_shift;
    uint64_t t;            /* discrete Laplace scale, floor(sigma) + 1 */
} sl_dp_dgauss_t;

/* Prepare a sampler for N_Z(0, sigma^2). SL_ERANGE unless 0 < sigma <= 1e7 and finite. */
SL_NODISCARD int sl_dp_dgauss_init(sl_dp_dgauss_t *g, double sigma);

/* One exact draw from the prepared discrete Gaussian. */
int64_t sl_dp_dgauss_sample(const sl_dp_dgauss_t *g, sl_dp_noise_t *ns);

/* One draw of the discrete Laplace with P(x) proportional to exp(-|x|/t), t >= 1
 * (Canonne et al. Algorithm 2 with s = 1). Exposed for tests. */
int64_t sl_dp_dlaplace_sample(uint64_t t, sl_dp_noise_t *ns);

/* Bernoulli(exp(-num/den)) exactly, num >= 0, den > 0 (Canonne et al. Algorithm 1).
 * Exposed for tests. */
int sl_dp_bernoulli_exp(uint64_t num, uint64_t den, sl_dp_noise_t *ns);

/* x[i] += N_Z(0, sigma^2) for i < n, on int64. sigma == 0 adds nothing. x is (n,).
 * SL_ERANGE for an unsupported sigma, SL_EOVERFLOW if a sum would overflow int64. */
SL_NODISCARD int sl_dp_add_discrete_gaussian(sl_dp_noise_t *ns, int64_t *x, size_t n, double sigma);

/* out[i] = N_Z(0, sigma^2) for i < n, as int32 (the noise-share array that
 * sl_quant_encode in privacy/secagg/quantize.h adds after rounding). sigma == 0 fills
 * zeros. out is (n,). SL_ERANGE for an unsupported sigma or a draw outside int32. */
SL_NODISCARD int sl_dp_discrete_gaussian_i32(sl_dp_noise_t *ns, int32_t *out, size_t n, double sigma);

/* x[i] = (x[i] + N_Z(0, sigma^2)) mod 2^bits for i < n, on the ring Z_{2^bits} that secure
 * aggregation sums in (1 <= bits <= 32; values of x must be < 2^bits). x is (n,). */
SL_NODISCARD int sl_dp_add_discrete_gaussian_mod(sl_dp_noise_t *ns, uint32_t *x, size_t n, double sigma,
                                                 unsigned bits);

#endif
