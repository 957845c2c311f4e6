/* RDP accountant: Opacus known answers, closed forms, monotonicity, the inverse, the
 * stateful accountant (composition, budget check) and its checkpoint codec. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "privacy/dp/accountant.h"
#include "support/check.h"

#define REL(a, b) (fabs((a) - (b)) / fabs(b))

static void test_known_values(void)
{
    double eps, alpha;
    /* Opacus 1.5, delta = 1e-5 (the MNIST example: batch 256 of 60000, 60 epochs) */
    CHECK(sl_dp_epsilon(256.0 / 60000.0, 1.1, 14062, 1e-5, &eps, &alpha) == 0);
    CHECK_MSG(REL(eps, 2.5965558689607486) < 1e-6, "eps %.17g", eps);
    CHECK_MSG(REL(eps, 2.5965558689607486) < 1e-12, "eps %.17g (not bit-close)", eps);
    CHECK_NEAR(alpha, 8.1, 1e-12);
    CHECK(sl_dp_epsilon(0.01, 1.0, 1000, 1e-5, &eps, &alpha) == 0);
    CHECK_MSG(REL(eps, 2.1013652716430564) < 1e-6, "eps %.17g", eps);
    CHECK_MSG(REL(eps, 2.1013652716430564) < 1e-12, "eps %.17g (not bit-close)", eps);
    CHECK_NEAR(alpha, 7.8, 1e-12);
}

static void test_orders(void)
{
    const double *o = sl_dp_default_orders();
    CHECK(o[0] == 1.1);
    CHECK(o[98] == 10.9);
    CHECK(o[99] == 12.0);
    CHECK(o[SL_DP_NUM_ORDERS - 1] == 63.0);
    for (size_t i = 1; i < SL_DP_NUM_ORDERS; i++)
        CHECK(o[i] > o[i - 1]);
    /* the table equals Python's 1 + x / 10.0 evaluated at run time */
    for (volatile int x = 1; x < 100; x++)
        CHECK(o[x - 1] == 1.0 + (double)x / 10.0);
}

static void test_closed_forms(void)
{
    /* q = 1: rdp = alpha / (2 sigma^2) per step, epsilon by the conversion formula */
    const double *o = sl_dp_default_orders();
    double rdp[SL_DP_NUM_ORDERS];
    double sigma = 1.7, delta = 1e-6;
    int64_t steps = 37;
    CHECK(sl_dp_rdp_vector(1.0, sigma, steps, rdp) == 0);
    double best = INFINITY, best_a = 0;
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++) {
        double a = o[i];
        double r = a / (2 * sigma * sigma) * (double)steps;
        CHECK_NEAR(rdp[i], r, 1e-15);
        double e = r - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a);
        if (e < best) {
            best = e;
            best_a = a;
        }
    }
    double eps, alpha;
    CHECK(sl_dp_epsilon(1.0, sigma, steps, delta, &eps, &alpha) == 0);
    CHECK_NEAR(eps, best, 1e-14);
    CHECK(alpha == best_a);

    /* q = 0 spends nothing; sigma = 0 is no privacy; small-q RDP approaches q^2 a / sigma^2 scale */
    double r;
    CHECK(sl_dp_rdp(0.0, 1.0, 2.0, &r) == 0 && r == 0.0);
    CHECK(sl_dp_rdp(0.5, 0.0, 2.0, &r) == 0 && isinf(r));
    CHECK(sl_dp_epsilon(0.5, 0.0, 10, 1e-5, &eps, &alpha) == 0);
    CHECK(isinf(eps));
    /* integer alpha = 2, exact: A_2 = (1-q)^2 + 2q(1-q) + q^2 e^{1/sigma^2} */
    double q = 0.03, s = 0.9;
    double a2 = (1 - q) * (1 - q) + 2 * q * (1 - q) + q * q * exp(1 / (s * s));
    CHECK(sl_dp_rdp(q, s, 2.0, &r) == 0);
    CHECK_NEAR(r, log(a2), 1e-13);
    /* fractional orders interpolate between their integer neighbours (RDP is monotone in alpha) */
    double r25, r3;
    CHECK(sl_dp_rdp(q, s, 2.5, &r25) == 0 && sl_dp_rdp(q, s, 3.0, &r3) == 0);
    CHECK(r25 >= r && r25 <= r3);

    /* bad arguments */
    CHECK(sl_dp_rdp(1.5, 1.0, 2.0, &r) == SL_EINVAL);
    CHECK(sl_dp_rdp(0.5, -1.0, 2.0, &r) == SL_EINVAL);
    CHECK(sl_dp_rdp(0.5, 1.0, 1.0, &r) == SL_EINVAL);
    CHECK(sl_dp_epsilon(0.5, 1.0, 10, 0.0, &eps, NULL) == SL_EINVAL);
    CHECK(sl_dp_epsilon(0.5, 1.0, 10, 1.0, &eps, NULL) == SL_EINVAL);
}

static void test_monotone(void)
{
    double prev = 0, eps;
    int64_t steps_list[] = {1, 10, 100, 1000, 10000};
    for (size_t i = 0; i < 5; i++) {
        CHECK(sl_dp_epsilon(0.01, 1.0, steps_list[i], 1e-5, &eps, NULL) == 0);
        CHECK_MSG(eps > prev, "steps %lld: %g <= %g", (long long)steps_list[i], eps, prev);
        prev = eps;
    }
    prev = INFINITY;
    double sigmas[] = {0.5, 0.8, 1.0, 2.0, 5.0, 20.0};
    for (size_t i = 0; i < 6; i++) {
        CHECK(sl_dp_epsilon(0.02, sigmas[i], 500, 1e-5, &eps, NULL) == 0);
        CHECK_MSG(eps < prev, "sigma %g: %g >= %g", sigmas[i], eps, prev);
        prev = eps;
    }
    prev = 0;
    double qs[] = {1e-4, 1e-3, 0.01, 0.1, 0.5, 1.0};
    for (size_t i = 0; i < 6; i++) {
        CHECK(sl_dp_epsilon(qs[i], 1.2, 200, 1e-5, &eps, NULL) == 0);
        CHECK_MSG(eps > prev, "q %g: %g <= %g", qs[i], eps, prev);
        prev = eps;
    }
    /* a smaller delta costs more epsilon */
    double e1, e2;
    CHECK(sl_dp_epsilon(0.01, 1.0, 1000, 1e-5, &e1, NULL) == 0);
    CHECK(sl_dp_epsilon(0.01, 1.0, 1000, 1e-8, &e2, NULL) == 0);
    CHECK(e2 > e1);
}

static void test_inverse(void)
{
    struct {
        double q;
        int64_t steps;
        double delta, target;
    } cases[] = {{0.01, 1000, 1e-5, 2.0}, {256.0 / 60000, 14062, 1e-5, 3.0}, {0.1, 100, 1e-5, 8.0},
                 {1.0, 10, 1e-5, 5.0}, {0.05, 2000, 1e-6, 0.5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double sigma, eps;
        CHECK(sl_dp_noise_multiplier(cases[i].q, cases[i].steps, cases[i].delta, cases[i].target, 0.01, &sigma) == 0);
        CHECK(sl_dp_epsilon(cases[i].q, sigma, cases[i].steps, cases[i].delta, &eps, NULL) == 0);
        CHECK_MSG(eps <= cases[i].target, "case %zu: eps %g > target %g", i, eps, cases[i].target);
        CHECK_MSG(cases[i].target - eps <= 0.01, "case %zu: eps %g too far below %g", i, eps, cases[i].target);
    }
    /* the known pair: sigma = 1.1 gives 2.5966 at these settings, so the inverse is close to 1.1 */
    double sigma;
    CHECK(sl_dp_noise_multiplier(256.0 / 60000, 14062, 1e-5, 2.5965558689607486, 0.01, &sigma) == 0);
    CHECK_MSG(sigma >= 1.1 && sigma < 1.11, "sigma %.17g", sigma);
    /* an impossible budget */
    CHECK(sl_dp_noise_multiplier(1.0, 1000000, 1e-10, 1e-6, 0.01, &sigma) == SL_ERANGE);
    CHECK(sl_dp_noise_multiplier(0.1, 10, 1e-5, 0.0, 0.01, &sigma) == SL_EINVAL);
}

static void test_stateful(void)
{
    sl_dp_accountant_t *acc = NULL;
    CHECK(sl_dp_accountant_new(&acc) == 0);
    double eps, alpha;
    CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, &alpha) == 0);
    CHECK(eps == 0.0);
    /* one step at a time equals the batch computation, bit for bit (Opacus merges steps) */
    for (int i = 0; i < 14062; i++)
        CHECK(sl_dp_accountant_step(acc, 256.0 / 60000.0, 1.1, 1) == 0);
    CHECK_EQ(sl_dp_accountant_entries(acc), 1);
    CHECK_EQ(sl_dp_accountant_total_steps(acc), 14062);
    double ref;
    CHECK(sl_dp_epsilon(256.0 / 60000.0, 1.1, 14062, 1e-5, &ref, NULL) == 0);
    CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, &alpha) == 0);
    CHECK(eps == ref);

    /* budget: one more step at the same parameters vs the target */
    int stop;
    double after;
    CHECK(sl_dp_accountant_would_exceed(acc, 256.0 / 60000.0, 1.1, 1e-5, 2.6, &stop, &after) == 0);
    double ref2;
    CHECK(sl_dp_epsilon(256.0 / 60000.0, 1.1, 14063, 1e-5, &ref2, NULL) == 0);
    CHECK(after == ref2);
    CHECK_EQ(stop, after > 2.6);
    CHECK(sl_dp_accountant_would_exceed(acc, 256.0 / 60000.0, 1.1, 1e-5, eps, &stop, NULL) == 0);
    CHECK_EQ(stop, 1);
    CHECK(sl_dp_accountant_would_exceed(acc, 256.0 / 60000.0, 1.1, 1e-5, 0.0, &stop, NULL) == 0);
    CHECK_EQ(stop, 0); /* no budget */
    CHECK_EQ(sl_dp_accountant_total_steps(acc), 14062); /* unchanged */
    sl_dp_accountant_destroy(&acc);
    CHECK(acc == NULL);
    sl_dp_accountant_destroy(&acc); /* NULL-safe */

    /* composition of a history: equals the sum of the per-entry RDP vectors */
    CHECK(sl_dp_accountant_new(&acc) == 0);
    CHECK(sl_dp_accountant_step(acc, 0.01, 1.0, 500) == 0);
    CHECK(sl_dp_accountant_step(acc, 0.02, 1.5, 300) == 0);
    CHECK(sl_dp_accountant_step(acc, 0.01, 1.0, 7) == 0);
    CHECK_EQ(sl_dp_accountant_entries(acc), 3);
    double r1[SL_DP_NUM_ORDERS], r2[SL_DP_NUM_ORDERS], r3[SL_DP_NUM_ORDERS], tot[SL_DP_NUM_ORDERS];
    CHECK(sl_dp_rdp_vector(0.01, 1.0, 500, r1) == 0);
    CHECK(sl_dp_rdp_vector(0.02, 1.5, 300, r2) == 0);
    CHECK(sl_dp_rdp_vector(0.01, 1.0, 7, r3) == 0);
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++)
        tot[i] = r1[i] + r2[i] + r3[i];
    CHECK(sl_dp_rdp_to_epsilon(sl_dp_default_orders(), tot, SL_DP_NUM_ORDERS, 1e-5, &ref, NULL) == 0);
    CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, NULL) == 0);
    CHECK(eps == ref);

    /* checkpoint round trip */
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(sl_dp_accountant_encode(acc, &buf, &len) == 0);
    CHECK_EQ(len, 20 + 3 * 24);
    CHECK(memcmp(buf, "SLRA", 4) == 0);
    sl_dp_accountant_t *back = NULL;
    CHECK(sl_dp_accountant_decode(buf, len, &back) == 0);
    if (back) {
        double e2;
        CHECK(sl_dp_accountant_epsilon(back, 1e-5, &e2, NULL) == 0);
        CHECK(e2 == eps);
        CHECK_EQ(sl_dp_accountant_entries(back), 3);
        double q, s;
        int64_t st;
        CHECK(sl_dp_accountant_entry(back, 1, &q, &s, &st) == 0);
        CHECK(q == 0.02 && s == 1.5 && st == 300);
        CHECK(sl_dp_accountant_entry(back, 3, &q, &s, &st) == SL_ERANGE);
        sl_dp_accountant_destroy(&back);
    }
    /* every truncation fails cleanly */
    for (size_t cut = 0; cut < len; cut++) {
        back = NULL;
        CHECK(sl_dp_accountant_decode(buf, cut, &back) == SL_EFORMAT);
        CHECK(back == NULL);
    }
    uint8_t *bad = malloc(len + 1);
    memcpy(bad, buf, len);
    bad[len] = 0;
    CHECK(sl_dp_accountant_decode(bad, len + 1, &back) == SL_EFORMAT); /* trailing byte */
    bad[0] = 'X';
    CHECK(sl_dp_accountant_decode(bad, len, &back) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "magic");
    memcpy(bad, buf, len);
    bad[4] = 2;
    CHECK(sl_dp_accountant_decode(bad, len, &back) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "version");
    memcpy(bad, buf, len);
    double nanv = NAN;
    memcpy(bad + 20 + 24, &nanv, 8); /* q of entry 1 */
    CHECK(sl_dp_accountant_decode(bad, len, &back) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "entry 1");
    memcpy(bad, buf, len);
    memset(bad + 12, 0xff, 8); /* absurd entry count */
    CHECK(sl_dp_accountant_decode(bad, len, &back) == SL_EFORMAT);
    free(bad);
    free(buf);

    /* bad steps */
    CHECK(sl_dp_accountant_step(acc, 1.5, 1.0, 1) == SL_EINVAL);
    CHECK(sl_dp_accountant_step(acc, 0.5, NAN, 1) == SL_EINVAL);
    CHECK(sl_dp_accountant_step(acc, 0.5, 1.0, 0) == SL_EINVAL);
    CHECK_EQ(sl_dp_accountant_entries(acc), 3);
    sl_dp_accountant_destroy(&acc);

    /* distributed DP: alternating effective multipliers stay exact and cheap (cache) */
    CHECK(sl_dp_accountant_new(&acc) == 0);
    double zs[3] = {1.0, 1.0488088481701516, 1.0954451150103321};
    for (int i = 0; i < 3000; i++)
        CHECK(sl_dp_accountant_step(acc, 0.05, zs[i % 3], 1) == 0);
    CHECK_EQ(sl_dp_accountant_entries(acc), 3000);
    double va[SL_DP_NUM_ORDERS], vb[SL_DP_NUM_ORDERS], vc[SL_DP_NUM_ORDERS];
    CHECK(sl_dp_rdp_vector(0.05, zs[0], 1, va) == 0 && sl_dp_rdp_vector(0.05, zs[1], 1, vb) == 0 &&
          sl_dp_rdp_vector(0.05, zs[2], 1, vc) == 0);
    for (size_t i = 0; i < SL_DP_NUM_ORDERS; i++)
        tot[i] = 1000 * (va[i] + vb[i] + vc[i]);
    CHECK(sl_dp_rdp_to_epsilon(sl_dp_default_orders(), tot, SL_DP_NUM_ORDERS, 1e-5, &ref, NULL) == 0);
    CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, NULL) == 0);
    CHECK_NEAR(eps, ref, 1e-12);
    sl_dp_accountant_destroy(&acc);
}

/* Random blobs behind a valid header: decode succeeds or says SL_EFORMAT, never crashes. */
static void test_decode_random(void)
{
    sl_rng_t rng;
    sl_rng_init(&rng, 3, "test-acc-fuzz", 0, 0);
    uint8_t buf[20 + 24 * 4];
    int ok = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        size_t len = (size_t)sl_rng_below(&rng, sizeof buf + 1);
        sl_rng_bytes(&rng, buf, sizeof buf);
        memcpy(buf, "SLRA", 4);
        buf[4] = 1, buf[5] = buf[6] = buf[7] = 0;
        buf[8] = SL_DP_NUM_ORDERS, buf[9] = buf[10] = buf[11] = 0;
        uint64_t n = sl_rng_below(&rng, 5);
        for (int i = 0; i < 8; i++)
            buf[12 + i] = (uint8_t)(n >> (8 * i));
        if (it % 3 != 0) /* mostly the consistent length, else anything */
            len = 20 + 24 * (size_t)n;
        for (uint64_t e = 0; e < n && it % 2 == 0; e++) { /* half the time, plausible values */
            double q = 0.05 * sl_rng_uniform(&rng), s = 2 + 5 * sl_rng_uniform(&rng); /* cheap series */
            uint64_t st = 1 + sl_rng_below(&rng, 1000);
            memcpy(buf + 20 + 24 * e, &q, 8);
            memcpy(buf + 28 + 24 * e, &s, 8);
            for (int i = 0; i < 8; i++)
                buf[36 + 24 * e + (uint64_t)i] = (uint8_t)(st >> (8 * i));
        }
        sl_dp_accountant_t *acc = NULL;
        int rc = sl_dp_accountant_decode(buf, len, &acc);
        CHECK(rc == 0 || rc == SL_EFORMAT || rc == SL_ERANGE);
        if (rc == 0) {
            double eps;
            CHECK(sl_dp_accountant_epsilon(acc, 1e-5, &eps, NULL) == 0);
            CHECK(!isnan(eps) && eps >= 0);
            ok++;
        } else {
            CHECK(acc == NULL);
            bad++;
        }
        sl_dp_accountant_destroy(&acc);
    }
    CHECK_MSG(ok > 100 && bad > 100, "ok %d bad %d", ok, bad);
}

int main(void)
{
    test_orders();
    test_known_values();
    test_closed_forms();
    test_monotone();
    test_inverse();
    test_stateful();
    test_decode_random();
    return check_summary("test_dp_accountant");
}
