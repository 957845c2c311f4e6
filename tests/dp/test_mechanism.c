/* Per-mode noise end to end at the API level: many rounds of n clients with zero (or
 * over-norm) updates through sl_dp_client_privatize and sl_dp_coordinator_finish_sum; the
 * released sum's empirical noise std must be z * C in central mode, z * C * sqrt(r / m_min)
 * in distributed mode (r == m_min and r > m_min), and each report's z * C in local mode;
 * and it must equal what sl_dp_round_accounting charges. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "privacy/dp/accountant.h"
#include "privacy/dp/clip.h"
#include "privacy/dp/mechanism.h"
#include "support/check.h"

#define DIM 256

static void base_config(sl_config_t *cfg, int mode)
{
    sl_config_defaults(cfg);
    cfg->dp.mode = mode;
    cfg->dp.clip = 0.8;
    cfg->dp.noise_multiplier = 1.3;
    cfg->dp.insecure_seeded_noise = 1;
    cfg->run.seed = 99;
    cfg->federation.min_clients = 10;
}

typedef struct {
    double sum_std;    /* empirical std of the released sum's coordinates (minus the signal) */
    double report_std; /* empirical std of one client's report (minus the signal) */
    double mean_sum0;  /* mean of coordinate 0 of the sum (signal check) */
} stats_t;

/* R rounds, r clients, each with update u (DIM,) (zero or over-norm), through the API. */
static stats_t simulate(const sl_config_t *cfg, int r, int rounds, const float *u)
{
    sl_dp_round_t plan;
    CHECK(sl_dp_round_plan(cfg, cfg->dp.clip, &plan) == 0);
    float clipped[DIM];
    memcpy(clipped, u, sizeof clipped);
    CHECK(sl_dp_clip(clipped, DIM, plan.clip, NULL) == 0);
    double ss = 0, rs = 0, m0 = 0;
    size_t ns_cnt = 0, nr_cnt = 0;
    double *sum = malloc(DIM * sizeof *sum);
    float upd[DIM];
    for (int t = 0; t < rounds; t++) {
        memset(sum, 0, DIM * sizeof *sum);
        for (int c = 0; c < r; c++) {
            sl_dp_noise_t ns;
            CHECK(sl_dp_noise_init(&ns, cfg, (uint64_t)t, (uint64_t)c) == 0);
            memcpy(upd, u, sizeof upd);
            double norm, cv;
            CHECK(sl_dp_client_privatize(&plan, &ns, upd, DIM, &norm, &cv) == 0);
            for (size_t i = 0; i < DIM; i++) { /* sum (DIM,) += upd (DIM,), weight 1 */
                sum[i] += upd[i];
                if (c == 0) {
                    double d = (double)upd[i] - (double)clipped[i];
                    rs += d * d;
                    nr_cnt++;
                }
            }
            sl_dp_noise_free(&ns);
        }
        sl_dp_noise_t cns;
        CHECK(sl_dp_noise_init(&cns, cfg, (uint64_t)t, UINT64_MAX) == 0);
        CHECK(sl_dp_coordinator_finish_sum_f64(&plan, &cns, sum, DIM) == 0);
        sl_dp_noise_free(&cns);
        m0 += sum[0];
        for (size_t i = 0; i < DIM; i++) {
            double d = sum[i] - (double)r * clipped[i];
            ss += d * d;
            ns_cnt++;
        }
    }
    free(sum);
    stats_t st = {sqrt(ss / (double)ns_cnt), sqrt(rs / (double)nr_cnt), m0 / rounds};
    return st;
}

/* std estimate from N squares: relative standard error ~ 1 / sqrt(2N) */
static void check_std(double got, double want, size_t n, const char *what)
{
    double tol = 4.5 / sqrt(2.0 * (double)n);
    CHECK_MSG(fabs(got / want - 1) < tol, "%s: std %.6g vs %.6g (tol %.3g)", what, got, want, tol);
}

static void test_modes(void)
{
    sl_config_t cfg;
    float zero[DIM] = {0};
    const int rounds = 300;
    const size_t n = (size_t)rounds * DIM;
    double q = 0.1, qa, za;

    /* central: coordinator adds z C; clients add nothing */
    base_config(&cfg, SL_DP_CENTRAL);
    stats_t st = simulate(&cfg, 12, rounds, zero);
    check_std(st.sum_std, 1.3 * 0.8, n, "central sum");
    CHECK(st.report_std == 0.0);
    sl_dp_round_t plan;
    CHECK(sl_dp_round_plan(&cfg, cfg.dp.clip, &plan) == 0);
    CHECK(sl_dp_round_accounting(&plan, q, 12, &qa, &za) == 0);
    CHECK(qa == q && za == 1.3);
    CHECK_NEAR(st.sum_std / plan.clip, za, 0.02);

    /* distributed, reported == min_clients: the sum carries exactly z C */
    base_config(&cfg, SL_DP_DISTRIBUTED);
    st = simulate(&cfg, 10, rounds, zero);
    check_std(st.sum_std, 1.3 * 0.8, n, "distributed sum, r = m");
    check_std(st.report_std, 1.3 * 0.8 / sqrt(10.0), n, "distributed report");
    CHECK(sl_dp_round_plan(&cfg, cfg.dp.clip, &plan) == 0);
    CHECK(sl_dp_round_accounting(&plan, q, 10, &qa, &za) == 0);
    CHECK(qa == q && za == 1.3);
    /* distributed, reported = 25 > 10: more noise, and the accountant is told so */
    st = simulate(&cfg, 25, rounds, zero);
    check_std(st.sum_std, 1.3 * 0.8 * sqrt(2.5), n, "distributed sum, r > m");
    CHECK(sl_dp_round_accounting(&plan, q, 25, &qa, &za) == 0);
    CHECK_NEAR(za, 1.3 * sqrt(2.5), 1e-15);
    CHECK_NEAR(st.sum_std / plan.clip / za, 1.0, 0.02);
    /* distributed below the quorum: must not be released */
    CHECK(sl_dp_round_accounting(&plan, q, 9, &qa, &za) == SL_EQUORUM);

    /* local: each report carries z C; the sum r z^2 C^2; charged (1, z) */
    base_config(&cfg, SL_DP_LOCAL);
    st = simulate(&cfg, 8, rounds, zero);
    check_std(st.report_std, 1.3 * 0.8, n, "local report");
    check_std(st.sum_std, 1.3 * 0.8 * sqrt(8.0), n, "local sum");
    CHECK(sl_dp_round_plan(&cfg, cfg.dp.clip, &plan) == 0);
    CHECK(sl_dp_round_accounting(&plan, q, 8, &qa, &za) == 0);
    CHECK(qa == 1.0 && za == 1.3);

    /* over-norm updates are clipped before the noise: the sum's mean is r * clipped */
    float big[DIM];
    for (size_t i = 0; i < DIM; i++)
        big[i] = 1.0f;                                  /* norm 16 */
    base_config(&cfg, SL_DP_CENTRAL);
    st = simulate(&cfg, 12, rounds, big);
    double per = 0.8 / 16.0;                             /* each coordinate after clipping */
    CHECK_NEAR(st.mean_sum0, 12 * per, 4.5 * 1.3 * 0.8 / sqrt((double)rounds));
    check_std(st.sum_std, 1.3 * 0.8, n, "central sum of clipped updates");

    /* off: nothing is touched and nothing is charged */
    base_config(&cfg, SL_DP_OFF);
    cfg.dp.insecure_seeded_noise = 0;
    CHECK(sl_dp_round_plan(&cfg, 1.0, &plan) == 0);
    float u[3] = {10, 0, 0};
    double norm, cv;
    sl_dp_noise_t ns;
    CHECK(sl_dp_noise_init_os(&ns) == 0);
    CHECK(sl_dp_client_privatize(&plan, &ns, u, 3, &norm, &cv) == 0);
    CHECK(u[0] == 10.0f && norm == 10.0 && cv == 0.0);
    CHECK(sl_dp_round_accounting(&plan, q, 3, &qa, &za) == 0);
    CHECK(qa == 0 && za == 0);
    sl_dp_noise_free(&ns);
}

static void test_party_functions(void)
{
    double z = 2.0, s = 0.5;
    CHECK(sl_dp_party_noise_std(SL_DP_CENTRAL, SL_DP_PARTY_COORDINATOR, z, s, 4) == 1.0);
    CHECK(sl_dp_party_noise_std(SL_DP_CENTRAL, SL_DP_PARTY_CLIENT, z, s, 4) == 0.0);
    CHECK(sl_dp_party_noise_std(SL_DP_DISTRIBUTED, SL_DP_PARTY_CLIENT, z, s, 4) == 0.5);
    CHECK(sl_dp_party_noise_std(SL_DP_DISTRIBUTED, SL_DP_PARTY_COORDINATOR, z, s, 4) == 0.0);
    CHECK(sl_dp_party_noise_std(SL_DP_LOCAL, SL_DP_PARTY_CLIENT, z, s, 4) == 1.0);
    CHECK(sl_dp_party_noise_std(SL_DP_OFF, SL_DP_PARTY_CLIENT, z, s, 4) == 0.0);
    CHECK(isnan(sl_dp_party_noise_std(SL_DP_DISTRIBUTED, SL_DP_PARTY_CLIENT, z, s, 0)));
    CHECK(isnan(sl_dp_party_noise_std(7, SL_DP_PARTY_CLIENT, z, s, 4)));
    CHECK(isnan(sl_dp_party_noise_std(SL_DP_CENTRAL, SL_DP_PARTY_CLIENT, -1, s, 4)));
    CHECK(sl_dp_effective_noise_multiplier(SL_DP_DISTRIBUTED, z, 4, 9) == 3.0);
    CHECK(sl_dp_effective_noise_multiplier(SL_DP_CENTRAL, z, 4, 9) == 2.0);
    CHECK(sl_dp_effective_noise_multiplier(SL_DP_OFF, z, 4, 9) == 0.0);
    CHECK(isnan(sl_dp_effective_noise_multiplier(SL_DP_DISTRIBUTED, z, 0, 9)));
}

static void test_adaptive_plan(void)
{
    /* Andrew et al.: z = 1, count noise multiplier 2 sigma_b = 10 -> z_u = (1 - 1/100)^(-1/2) */
    double zu;
    CHECK(sl_dp_adaptive_update_noise_multiplier(1.0, 5.0, &zu) == 0);
    CHECK_NEAR(zu, 1.0 / sqrt(0.99), 1e-15);
    /* the two releases compose back to z: 1/z^2 = 1/z_u^2 + 1/(2 sigma_b)^2 */
    CHECK(sl_dp_adaptive_update_noise_multiplier(0.7, 3.0, &zu) == 0);
    CHECK_NEAR(1 / (zu * zu) + 1 / 36.0, 1 / 0.49, 1e-12);
    CHECK(sl_dp_adaptive_update_noise_multiplier(1.0, 0.5, &zu) == SL_ECONFIG);
    CHECK(sl_dp_adaptive_update_noise_multiplier(0.0, 0.5, &zu) == 0 && zu == 0.0);

    sl_config_t cfg;
    base_config(&cfg, SL_DP_DISTRIBUTED);
    cfg.dp.adaptive_clip = 1;
    cfg.dp.noise_multiplier = 1.0;
    cfg.dp.count_noise_multiplier = 10.0;
    sl_dp_round_t plan;
    CHECK(sl_dp_round_plan(&cfg, 0.5, &plan) == 0);
    CHECK(plan.adaptive == 1 && plan.clip == 0.5 && plan.count_stddev == 5.0);
    CHECK_NEAR(plan.update_noise_multiplier, 1.0 / sqrt(0.99), 1e-15);
    CHECK_NEAR(plan.client_update_std, 0.5 / sqrt(0.99) / sqrt(10.0), 1e-15);
    CHECK_NEAR(plan.client_count_std, 5.0 / sqrt(10.0), 1e-15);
    CHECK(plan.coordinator_update_std == 0 && plan.coordinator_count_std == 0);
    double qa, za;
    CHECK(sl_dp_round_accounting(&plan, 0.2, 10, &qa, &za) == 0);
    CHECK(za == 1.0); /* charged the target z, not z_u */

    /* the count values of r clients whose norms are all below C sum to r/2 + noise of
     * variance r sigma_b^2 / m */
    int r = 10, rounds = 4000;
    double ss = 0;
    for (int t = 0; t < rounds; t++) {
        double sum = 0;
        for (int c = 0; c < r; c++) {
            sl_dp_noise_t ns;
            CHECK(sl_dp_noise_init(&ns, &cfg, (uint64_t)t, (uint64_t)c) == 0);
            float u[4] = {0.1f, 0, 0, 0};
            double cv;
            CHECK(sl_dp_client_privatize(&plan, &ns, u, 4, NULL, &cv) == 0);
            sum += cv;
            sl_dp_noise_free(&ns);
        }
        sl_dp_noise_t cns;
        CHECK(sl_dp_noise_init(&cns, &cfg, (uint64_t)t, UINT64_MAX) == 0);
        CHECK(sl_dp_coordinator_finish_count(&plan, &cns, &sum) == 0);
        sl_dp_noise_free(&cns);
        ss += (sum - r * 0.5) * (sum - r * 0.5);
    }
    check_std(sqrt(ss / rounds), 5.0, (size_t)rounds, "distributed count noise");

    /* central + adaptive: the coordinator adds sigma_b to the count */
    cfg.dp.mode = SL_DP_CENTRAL;
    CHECK(sl_dp_round_plan(&cfg, 0.5, &plan) == 0);
    CHECK(plan.coordinator_count_std == 5.0 && plan.client_count_std == 0.0);
    CHECK_NEAR(plan.coordinator_update_std, 0.5 / sqrt(0.99), 1e-15);
    double cnt = NAN;
    sl_dp_noise_t ns;
    CHECK(sl_dp_noise_init_os(&ns) == 0);
    CHECK(sl_dp_coordinator_finish_count(&plan, &ns, &cnt) == SL_ENOTFINITE);
    sl_dp_noise_free(&ns);

    /* impossible combination and bad values */
    cfg.dp.count_noise_multiplier = 1.0; /* 2 sigma_b = 1 <= z = 1 */
    CHECK(sl_dp_round_plan(&cfg, 0.5, &plan) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "count_noise_multiplier");
    cfg.dp.adaptive_clip = 0;
    CHECK(sl_dp_round_plan(&cfg, 0.0, &plan) == SL_EINVAL);
    cfg.dp.mode = SL_DP_DISTRIBUTED;
    cfg.federation.min_clients = 0;
    CHECK(sl_dp_round_plan(&cfg, 1.0, &plan) == SL_ECONFIG);
}

static void test_task_roundtrip(void)
{
    /* the coordinator's plan -> task fields -> the client's plan: same client noise */
    sl_config_t cfg;
    base_config(&cfg, SL_DP_DISTRIBUTED);
    cfg.dp.adaptive_clip = 1;
    cfg.dp.count_noise_multiplier = 8;
    sl_dp_round_t plan, cplan;
    CHECK(sl_dp_round_plan(&cfg, 0.9, &plan) == 0);
    double nm = sl_dp_round_client_noise_multiplier(&plan);
    CHECK_NEAR(nm * 0.9, plan.client_update_std, 1e-15);
    CHECK(sl_dp_round_for_client(plan.mode, plan.clip, nm, plan.adaptive, plan.client_count_std, &cplan) == 0);
    CHECK(cplan.mode == plan.mode && cplan.clip == plan.clip && cplan.adaptive == 1);
    CHECK_NEAR(cplan.client_update_std, plan.client_update_std, 1e-15);
    CHECK(cplan.client_count_std == plan.client_count_std);
    /* the same update and noise stream give the same report */
    sl_dp_noise_t a, b;
    CHECK(sl_dp_noise_init(&a, &cfg, 1, 2) == 0);
    CHECK(sl_dp_noise_init(&b, &cfg, 1, 2) == 0);
    float u1[5] = {1, 2, 3, 4, 5}, u2[5] = {1, 2, 3, 4, 5};
    double c1, c2;
    CHECK(sl_dp_client_privatize(&plan, &a, u1, 5, NULL, &c1) == 0);
    CHECK(sl_dp_client_privatize(&cplan, &b, u2, 5, NULL, &c2) == 0);
    CHECK(fabs(u1[0] - u2[0]) < 1e-6f && fabs(c1 - c2) < 1e-12);
    sl_dp_noise_free(&a);
    sl_dp_noise_free(&b);
    /* central: nothing for the client */
    base_config(&cfg, SL_DP_CENTRAL);
    CHECK(sl_dp_round_plan(&cfg, 0.9, &plan) == 0);
    CHECK(sl_dp_round_client_noise_multiplier(&plan) == 0.0);
    /* what a coordinator could not have sent */
    CHECK(sl_dp_round_for_client(9, 1.0, 0.1, 0, 0, &cplan) == SL_EPROTO);
    CHECK(sl_dp_round_for_client(SL_DP_LOCAL, 0.0, 0.1, 0, 0, &cplan) == SL_EPROTO);
    CHECK(sl_dp_round_for_client(SL_DP_LOCAL, 1.0, NAN, 0, 0, &cplan) == SL_EPROTO);
    CHECK(sl_dp_round_for_client(SL_DP_LOCAL, 1.0, 0.1, 0, -1, &cplan) == SL_EPROTO);
    CHECK(sl_dp_round_for_client(SL_DP_CENTRAL, 1.0, 0.1, 0, 0, &cplan) == SL_EPROTO);
    CHECK(sl_dp_round_for_client(SL_DP_OFF, 0.0, 0.0, 0, 0, &cplan) == 0 && cplan.mode == SL_DP_OFF);
}

static void test_budget_loop(void)
{
    /* the coordinator's loop: stop cleanly before the budget is exceeded */
    sl_dp_accountant_t *acc = NULL;
    CHECK(sl_dp_accountant_new(&acc) == 0);
    sl_config_t cfg;
    base_config(&cfg, SL_DP_CENTRAL);
    cfg.dp.target_epsilon = 3.0;
    sl_dp_round_t plan;
    CHECK(sl_dp_round_plan(&cfg, cfg.dp.clip, &plan) == 0);
    int rounds = 0;
    for (;;) {
        double qa, za;
        int stop;
        CHECK(sl_dp_round_accounting(&plan, 0.05, 12, &qa, &za) == 0);
        CHECK(sl_dp_accountant_would_exceed(acc, qa, za, cfg.dp.delta, cfg.dp.target_epsilon, &stop, NULL) == 0);
        if (stop || rounds > 100000)
            break;
        CHECK(sl_dp_accountant_step(acc, qa, za, 1) == 0);
        rounds++;
    }
    double eps, next;
    CHECK(sl_dp_accountant_epsilon(acc, cfg.dp.delta, &eps, NULL) == 0);
    CHECK(sl_dp_epsilon(0.05, 1.3, rounds + 1, cfg.dp.delta, &next, NULL) == 0);
    CHECK_MSG(eps <= 3.0 && next > 3.0, "stopped after %d rounds at eps %g (next %g)", rounds, eps, next);
    CHECK(rounds > 10);
    sl_dp_accountant_destroy(&acc);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    test_party_functions();
    test_modes();
    test_adaptive_plan();
    test_task_roundtrip();
    test_budget_loop();
    return check_summary("test_dp_mechanism");
}
