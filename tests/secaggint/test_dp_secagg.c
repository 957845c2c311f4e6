/* Distributed DP with secure aggregation (the distributed discrete Gaussian, privacy/dp/ddg.h)
 * through the round engine, in process: the real engine with the DP aggregator of
 * coordinator/dp.h (which runs the SecAgg+ secure sum of coordinator/secagg.h) and real
 * sl_client state machines with the real hooks (client/dp.h privatize, client/secagg.h).
 * Noise comes from the seeded test stream (dp.insecure_seeded_noise), so every client's
 * integer share can be drawn again here. Checks:
 *   - exact: each released mean times (included count * scale) equals the sum of the
 *     included clients' clipped, scaled updates plus the exact sum of their noise shares,
 *     to within the stochastic rounding (< 1 step per client and coordinate);
 *   - statistics: the noise in the released means has variance r sigma_q^2 (chi-square);
 *   - the quantizer matches an independent derivation of the headroom rule;
 *   - accounting: the accountant's epsilon equals a fresh accountant charged with
 *     z sqrt(r / m_min) C / (C + sqrt(d) / s), r = the inputs actually in each sum, with
 *     sampling (q < 1) and with dropouts (r < sampled);
 *   - an attempt that aborts before unmasking is not charged; one whose sum was unmasked
 *     but not released (its UPDATEs were lost, the engine retried) is charged. */
#include "dp_secagg_sim.h"

/* Every completed round r: released[r] * count * scale == sum over the included clients of
 * (clip(delta) * scale + noise share), within the stochastic rounding (< 1 per client) and
 * float32 rounding of the released mean. Adds the normalized noise residuals (released noise
 * in units of sqrt(count) sigma_q) to *chi2 / *k. */
static void check_exact(sim_t *s, size_t rounds, size_t sampled, double *chi2, size_t *k)
{
    const sl_config_t *cfg = &s->cfg;
    double rho = cfg->dp.noise_multiplier / sqrt((double)cfg->federation.min_clients);
    unsigned b, B;
    double scale;
    ref_quantizer(cfg->dp.clip, rho, (unsigned)cfg->secagg.bits, sampled, &b, &B, &scale);
    sl_quant_t q;
    CHECK(sl_ddg_quant_init(&q, cfg->dp.clip, rho, (unsigned)cfg->secagg.bits, sampled, DIM) == 0);
    CHECK_EQ(q.bits, b);
    CHECK_EQ(q.mod_bits, B);
    CHECK_NEAR(q.scale, scale, 1e-9 * scale);
    double sigma = scale * rho * cfg->dp.clip;
    CHECK(sigma > 1000); /* a share of many quantization steps: the check below is sharp */
    for (size_t r = 1; r <= rounds; r++) {
        size_t count = 0;
        double data[DIM] = {0}, noise[DIM] = {0};
        for (size_t i = 0; i < s->n; i++) {
            if (!s->included[r][i])
                continue;
            count++;
            float x[DIM];
            for (size_t j = 0; j < DIM; j++)
                x[j] = delta_of(s->cl[i].id, r, j);
            CHECK(sl_dp_clip(x, DIM, cfg->dp.clip, NULL) == 0);
            /* the client's share: the same seeded stream (round, client id), the same sampler */
            sl_dp_noise_t ns;
            memset(&ns, 0, sizeof ns);
            int32_t z[DIM];
            CHECK(sl_dp_noise_init(&ns, cfg, r, s->cl[i].id) == 0);
            CHECK(sl_dp_discrete_gaussian_i32(&ns, z, DIM, sigma) == 0);
            sl_dp_noise_free(&ns);
            for (size_t j = 0; j < DIM; j++) {
                data[j] += (double)x[j] * scale;
                noise[j] += (double)z[j];
            }
        }
        CHECK_EQ(count, s->reported[r]);
        double worst = 0, big = 0;
        for (size_t j = 0; j < DIM; j++) {
            double got = s->released[r][j] * (double)count * scale;
            double resid = fabs(got - data[j] - noise[j]);
            double tol = (double)count + 4e-7 * fabs(got) + 1.0;
            worst = fmax(worst, resid / tol);
            big = fmax(big, fabs(noise[j]));
            double u = (got - data[j]) / (sqrt((double)count) * sigma);
            *chi2 += u * u;
            (*k)++;
        }
        CHECK_MSG(worst <= 1.0, "round %zu: residual %.3g of the tolerance", r, worst);
        CHECK(big > 100.0 * (double)count); /* the noise is there, far above the rounding slack */
    }
}

/* All 12 clients every round, min_clients 8: three rounds, exact sums, charge z sqrt(12/8). */
static void test_full(double *chi2, size_t *k)
{
    sl_config_t cfg = base_cfg(3, 8, 1.0);
    sim_t *s = calloc(1, sizeof *s);
    sim_init(s, &cfg, 12);
    int rc = sim_run(s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
    CHECK_EQ(sl_engine_rounds_completed(s->e), 3);
    for (size_t r = 1; r <= 3; r++)
        CHECK_EQ(s->reported[r], 12);
    check_exact(s, 3, 12, chi2, k);
    double q[3], z[3];
    for (size_t i = 0; i < 3; i++) {
        q[i] = 1.0;
        z[i] = ref_z(&cfg, 12, 12);
    }
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 3);
    double zc = NAN, qc = NAN;
    sl_dp_coord_last_charge(s->dp, &qc, &zc);
    CHECK_NEAR(zc, z[0], 1e-12);
    CHECK(zc > 1.1 * sqrt(12.0 / 8.0) * 0.99999 && zc < 1.1 * sqrt(12.0 / 8.0)); /* rounding costs a little */
    CHECK_NEAR(sl_dp_coord_epsilon(s->dp), eps_of(q, z, 3, cfg.dp.delta), 1e-9);
    sim_free(s);
    free(s);
}

/* Sampling (12 of 24 clients a round, q = 0.5) and, in round 1, the sampled ones among
 * clients 0, 5, 10, 15, 20 vanish before their masked input: the sum holds r1 < 12 shares,
 * the mean divides by r1, the charge is z sqrt(r1 / 8) at q 0.5. */
static void test_sampled_dropouts(double *chi2, size_t *k)
{
    sl_config_t cfg = base_cfg(2, 8, 0.5);
    sim_t *s = calloc(1, sizeof *s);
    sim_init(s, &cfg, 24);
    s->drop_round = 1;
    s->drop_stage = SL_SECAGG_MSG_FORWARD;
    for (size_t i = 0; i < 24; i += 5)
        s->cl[i].drop = 1;
    int rc = sim_run(s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(s->e), 2);
    size_t r1 = s->reported[1], r2 = s->reported[2];
    CHECK(r1 >= 8 && r1 < 12); /* some sampled droppers left the sum, the quorum held */
    CHECK_EQ(r2, 12);
    check_exact(s, 2, 12, chi2, k);
    double q[2] = {0.5, 0.5}, z[2] = {ref_z(&cfg, 12, r1), ref_z(&cfg, 12, r2)};
    CHECK_NEAR(sl_dp_coord_epsilon(s->dp), eps_of(q, z, 2, cfg.dp.delta), 1e-9);
    CHECK(z[0] < z[1]); /* fewer shares in the sum: a smaller multiplier is charged */
    sim_free(s);
    free(s);
}

/* Round 1: 10 of 12 clients vanish before their masked input; the secure sum aborts before
 * unmasking (nothing revealed: not charged) and the retry completes. Round 2: the secure sum
 * is unmasked but 6 UPDATEs are lost, so the engine misses its quorum and retries: that
 * attempt's noised sum was computable, so it is charged too. 2 rounds, 3 charges. */
static void test_abort_and_unreleased(void)
{
    sl_config_t cfg = base_cfg(2, 8, 1.0);
    sim_t *s = calloc(1, sizeof *s);
    sim_init(s, &cfg, 12);
    s->drop_round = 1;
    s->drop_stage = SL_SECAGG_MSG_FORWARD;
    for (size_t i = 0; i < 10; i++)
        s->cl[i].drop = 1;
    s->lose_updates_round = 2;
    s->lose_updates = 6;
    int rc = sim_run(s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(s->e), 2);
    CHECK_EQ(s->lost_updates, 6);
    CHECK_EQ(s->reported[1], 12);
    CHECK_EQ(s->reported[2], 12);
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 3);
    double q[3] = {1, 1, 1}, z = ref_z(&cfg, 12, 12), zs[3] = {z, z, z};
    CHECK_NEAR(sl_dp_coord_epsilon(s->dp), eps_of(q, zs, 3, cfg.dp.delta), 1e-9);
    double chi2 = 0;
    size_t k = 0;
    check_exact(s, 2, 12, &chi2, &k);
    sim_free(s);
    free(s);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    double chi2 = 0;
    size_t k = 0;
    test_full(&chi2, &k);
    test_sampled_dropouts(&chi2, &k);
    /* the released noise, in units of sqrt(r) sigma_q, is N(0, 1): chi-square with k degrees
     * of freedom within 6 standard deviations (sqrt(2k)) of k */
    CHECK_EQ(k, 5 * DIM);
    CHECK_MSG(fabs(chi2 - (double)k) < 6.0 * sqrt(2.0 * (double)k), "chi2 %.1f over %zu", chi2, k);
    test_abort_and_unreleased();
    return check_summary("test_dp_secagg");
}
