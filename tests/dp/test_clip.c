/* Clipping: the norm bound after clipping, bit-exact pass-through below C, errors; adaptive
 * clipping converges to the target quantile of log-normal norms; its checkpoint codec. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "core/rng.h"
#include "privacy/dp/clip.h"
#include "privacy/dp/noise.h"
#include "support/check.h"

static void test_clip(void)
{
    sl_rng_t rng;
    sl_rng_init(&rng, 5, "test-clip", 0, 0);
    const size_t sizes[] = {1, 2, 7, 100, 4097, 100000};
    for (size_t si = 0; si < 6; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * sizeof *x), *orig = malloc(n * sizeof *orig);
        for (int trial = 0; trial < 20; trial++) {
            double scale = pow(10.0, (double)(trial % 7) - 3.0); /* 1e-3 .. 1e3 */
            for (size_t i = 0; i < n; i++)
                x[i] = (float)(sl_rng_normal(&rng) * scale);
            memcpy(orig, x, n * sizeof *x);
            double norm0 = sl_dp_l2_norm(x, n);
            double c = norm0 * (trial % 2 ? 0.37 : 1.9); /* clip half of them */
            if (trial % 5 == 4)
                c = norm0 * (1 - 1e-7); /* just below the norm: rounding territory */
            double pre = -1;
            CHECK(sl_dp_clip(x, n, c, &pre) == 0);
            CHECK(pre == norm0);
            double after = sl_dp_l2_norm(x, n);
            if (norm0 <= c) {
                CHECK(memcmp(x, orig, n * sizeof *x) == 0); /* untouched, bit for bit */
            } else {
                CHECK_MSG(after <= c, "n %zu: %.17g > C = %.17g", n, after, c);
                CHECK_MSG(after >= c * (1 - 1e-6), "n %zu: %.17g far below C = %.17g", n, after, c);
                /* same direction: cosine 1 */
                double dot = 0;
                for (size_t i = 0; i < n; i++)
                    dot += (double)x[i] * (double)orig[i];
                CHECK_NEAR(dot / (after * norm0), 1.0, 1e-6);
            }
        }
        free(x);
        free(orig);
    }
    /* exactly at the bound: unchanged */
    float e[2] = {3.0f, 4.0f};
    CHECK(sl_dp_clip(e, 2, 5.0, NULL) == 0);
    CHECK(e[0] == 3.0f && e[1] == 4.0f);
    CHECK(sl_dp_clip(e, 2, 1.0, NULL) == 0);
    CHECK(sl_dp_l2_norm(e, 2) <= 1.0);
    CHECK_NEAR(e[0], 0.6, 1e-6);
    /* errors */
    float bad[3] = {1.0f, NAN, 2.0f};
    CHECK(sl_dp_clip(bad, 3, 1.0, NULL) == SL_ENOTFINITE);
    CHECK(bad[0] == 1.0f && bad[2] == 2.0f);
    bad[1] = INFINITY;
    CHECK(sl_dp_clip(bad, 3, 1.0, NULL) == SL_ENOTFINITE);
    CHECK(sl_dp_clip(e, 2, 0.0, NULL) == SL_EINVAL);
    CHECK(sl_dp_clip(e, 2, -1.0, NULL) == SL_EINVAL);
    CHECK(sl_dp_clip(e, 2, INFINITY, NULL) == SL_EINVAL);
    double nrm = -1;
    CHECK(sl_dp_clip(e, 0, 1.0, &nrm) == 0 && nrm == 0.0);
    /* huge floats: the double accumulator does not overflow */
    float huge[2] = {3e38f, 3e38f};
    CHECK(sl_dp_clip(huge, 2, 1.0, &nrm) == 0);
    CHECK(sl_dp_l2_norm(huge, 2) <= 1.0 && nrm > 4e38);
}

/* Run `rounds` rounds of adaptive clipping with m clients whose norms are log-normal
 * exp(N(mu, s^2)); returns the mean clip over the last `tail` rounds. */
static double run_adaptive(double c0, double gamma, double lr, double sigma_b, int m, int rounds, int tail,
                           uint64_t seed)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.dp.insecure_seeded_noise = 1;
    sl_dp_noise_t ns;
    CHECK(sl_dp_noise_init_seeded(&ns, &cfg, seed, 0, 0) == 0);
    sl_rng_t rng;
    sl_rng_init(&rng, seed, "norms", 0, 0);
    sl_dp_adaptive_clip_t ac;
    CHECK(sl_dp_adaptive_clip_init(&ac, c0, gamma, lr, sigma_b, (double)m) == 0);
    const double mu = 0.0, s = 0.5;
    double acc = 0;
    for (int r = 0; r < rounds; r++) {
        double sum = 0;
        for (int i = 0; i < m; i++) {
            double norm = exp(mu + s * sl_rng_normal(&rng));
            sum += sl_dp_clip_count_value(norm, ac.clip);
        }
        sum += sl_dp_gaussian(&ns, sigma_b);
        double est;
        CHECK(sl_dp_adaptive_clip_update(&ac, sum, &est) == 0);
        if (r >= rounds - tail)
            acc += ac.clip;
    }
    CHECK_EQ(ac.rounds, (uint64_t)rounds);
    sl_dp_noise_free(&ns);
    return acc / tail;
}

static void test_adaptive(void)
{
    /* log-normal norms exp(N(0, 0.5^2)): median 1, 0.9-quantile exp(0.5 * 1.28155) */
    double med = 1.0, q90 = exp(0.5 * 1.2815515655446004), q20 = exp(0.5 * -0.8416212335729143);
    /* from 10x too small and 10x too large, noiseless and with the paper's sigma_b = m / 20 */
    double c;
    c = run_adaptive(0.1, 0.5, 0.2, 0.0, 100, 400, 100, 11);
    CHECK_MSG(fabs(c / med - 1) < 0.05, "noiseless, from below: %g vs median %g", c, med);
    c = run_adaptive(10.0, 0.5, 0.2, 0.0, 100, 400, 100, 12);
    CHECK_MSG(fabs(c / med - 1) < 0.05, "noiseless, from above: %g vs median %g", c, med);
    c = run_adaptive(0.1, 0.5, 0.2, 5.0, 100, 600, 200, 13);
    CHECK_MSG(fabs(c / med - 1) < 0.10, "sigma_b = 5: %g vs median %g", c, med);
    c = run_adaptive(1.0, 0.9, 0.2, 5.0, 100, 600, 200, 14);
    CHECK_MSG(fabs(c / q90 - 1) < 0.10, "gamma 0.9: %g vs %g", c, q90);
    c = run_adaptive(5.0, 0.2, 0.2, 5.0, 100, 600, 200, 15);
    CHECK_MSG(fabs(c / q20 - 1) < 0.10, "gamma 0.2: %g vs %g", c, q20);

    /* one step by hand: all below C -> b_bar = 1 -> C * exp(-eta (1 - gamma)) */
    sl_dp_adaptive_clip_t ac;
    CHECK(sl_dp_adaptive_clip_init(&ac, 2.0, 0.5, 0.2, 0.0, 10.0) == 0);
    CHECK(isnan(ac.last_estimate));
    double est;
    CHECK(sl_dp_adaptive_clip_update(&ac, 10 * 0.5, &est) == 0);
    CHECK_NEAR(est, 1.0, 1e-15);
    CHECK_NEAR(ac.clip, 2.0 * exp(-0.2 * 0.5), 1e-15);
    CHECK(sl_dp_clip_count_value(1.0, 1.0) == 0.5);
    CHECK(sl_dp_clip_count_value(1.0000001, 1.0) == -0.5);
    sl_dp_adaptive_clip_t before = ac;
    CHECK(sl_dp_adaptive_clip_update(&ac, NAN, NULL) == SL_ENOTFINITE);
    CHECK(memcmp(&before, &ac, sizeof ac) == 0);

    /* config mapping: sigma_b = count_noise_multiplier / 2 */
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.dp.clip = 0.7;
    cfg.dp.count_noise_multiplier = 12;
    CHECK(sl_dp_adaptive_clip_init_config(&ac, &cfg, 50) == 0);
    CHECK(ac.clip == 0.7 && ac.count_stddev == 6.0 && ac.expected_clients == 50);
    CHECK(ac.target_quantile == cfg.dp.target_quantile && ac.lr == cfg.dp.clip_lr);

    /* bad init values */
    CHECK(sl_dp_adaptive_clip_init(&ac, 0.0, 0.5, 0.2, 1, 10) == SL_EINVAL);
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.0, 1.5, 0.2, 1, 10) == SL_EINVAL);
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.0, 0.5, -0.2, 1, 10) == SL_EINVAL);
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.0, 0.5, 0.2, -1, 10) == SL_EINVAL);
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.0, 0.5, 0.2, 1, 0) == SL_EINVAL);
}

static void test_codec(void)
{
    sl_dp_adaptive_clip_t ac, back;
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.25, 0.6, 0.15, 3.5, 40) == 0);
    CHECK(sl_dp_adaptive_clip_update(&ac, 3.0, NULL) == 0);
    uint8_t buf[SL_DP_ADAPTIVE_CLIP_BYTES + 8];
    size_t len = 0;
    CHECK(sl_dp_adaptive_clip_encode(&ac, buf, sizeof buf, &len) == 0);
    CHECK_EQ(len, SL_DP_ADAPTIVE_CLIP_BYTES);
    CHECK(memcmp(buf, "SLAC", 4) == 0);
    memset(&back, 0, sizeof back);
    CHECK(sl_dp_adaptive_clip_decode(&back, buf, len) == 0);
    CHECK(memcmp(&back, &ac, sizeof ac) == 0);
    /* a fresh state (NaN estimate) round-trips too */
    CHECK(sl_dp_adaptive_clip_init(&ac, 1.0, 0.5, 0.2, 1, 10) == 0);
    CHECK(sl_dp_adaptive_clip_encode(&ac, buf, sizeof buf, &len) == 0);
    CHECK(sl_dp_adaptive_clip_decode(&back, buf, len) == 0);
    CHECK(isnan(back.last_estimate) && back.clip == 1.0);
    CHECK(sl_dp_adaptive_clip_encode(&ac, buf, 10, &len) == SL_ERANGE);
    for (size_t cut = 0; cut < SL_DP_ADAPTIVE_CLIP_BYTES; cut++)
        CHECK(sl_dp_adaptive_clip_decode(&back, buf, cut) == SL_EFORMAT);
    CHECK(sl_dp_adaptive_clip_decode(&back, buf, SL_DP_ADAPTIVE_CLIP_BYTES + 1) == SL_EFORMAT);
    uint8_t bad[SL_DP_ADAPTIVE_CLIP_BYTES];
    memcpy(bad, buf, sizeof bad);
    bad[1] = 'X';
    CHECK(sl_dp_adaptive_clip_decode(&back, bad, sizeof bad) == SL_EFORMAT);
    memcpy(bad, buf, sizeof bad);
    bad[4] = 9;
    CHECK(sl_dp_adaptive_clip_decode(&back, bad, sizeof bad) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "version");
    memcpy(bad, buf, sizeof bad);
    double neg = -1.0;
    memcpy(bad + 8, &neg, 8); /* clip */
    CHECK(sl_dp_adaptive_clip_decode(&back, bad, sizeof bad) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "clip");
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    test_clip();
    test_adaptive();
    test_codec();
    return check_summary("test_dp_clip");
}
