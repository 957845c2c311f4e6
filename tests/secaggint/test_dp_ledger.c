/* The write-ahead privacy ledger and the unmask gate of distributed DP with SecAgg+, through
 * the real engine, DP aggregator and clients in process (dp_secagg_sim.h). Checks:
 *   - a simulated crash right after round 2's secure sum was charged, before its
 *     checkpoint: resuming from round 1's checkpoint + the ledger gives exactly the epsilon
 *     the uninterrupted run had at that point (without the ledger: less, the old gap); a
 *     torn record at the ledger's end is ignored; the resumed run charges the redone round
 *     again, and its accountant equals a replay of its whole ledger;
 *   - resuming with a corrupt ledger record, or another run's ledger, is refused with a
 *     message naming the file;
 *   - the budget at the unmask gate: a retry whose earlier attempt was already charged and
 *     whose charge would exceed dp.target_epsilon is not unmasked: the run ends with status
 *     "budget", epsilon <= target, nothing charged or recorded for it; with a target that
 *     the retry's actual inputs fit (but the quorum-count estimate would not), it is
 *     unmasked and the run completes within the target. */
#include "coordinator/ledger.h"
#include "dp_secagg_sim.h"

#include <stdio.h>

static char dir[64];

static double eps_of_ledger(const char *path, size_t *n_out)
{
    sl_ledger_t *l = NULL;
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "ledger: %s", sl_last_error());
    size_t n = 0;
    const sl_ledger_record_t *r = sl_ledger_records(l, &n);
    sl_dp_accountant_t *a = NULL;
    CHECK(sl_dp_accountant_new(&a) == 0);
    for (size_t i = 0; i < n; i++)
        CHECK(sl_dp_accountant_step(a, r[i].q, r[i].z, (int64_t)r[i].steps) == 0);
    double eps = 0;
    if (n)
        CHECK(sl_dp_accountant_epsilon(a, 1e-5, &eps, NULL) == 0);
    sl_dp_accountant_destroy(&a);
    sl_ledger_close(&l);
    *n_out = n;
    return eps;
}

static void copy_file(const char *from, const char *to, size_t cut)
{
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    CHECK(f && g);
    int c;
    size_t i = 0;
    while ((c = fgetc(f)) != EOF && (cut == 0 || i++ < cut))
        fputc(c, g);
    fclose(f);
    fclose(g);
}

static void test_crash_between_charge_and_checkpoint(void)
{
    sl_config_t cfg = base_cfg(3, 8, 1.0);
    char la[128], lb[128], lc[128];
    snprintf(la, sizeof la, "%s/a.ledger", dir);
    snprintf(lb, sizeof lb, "%s/b.ledger", dir);
    snprintf(lc, sizeof lc, "%s/c.ledger", dir);

    /* A: uninterrupted; epsilon when round 2's sum was charged, and at the end */
    sim_t *s = calloc(1, sizeof *s);
    CHECK(sim_init_ex(s, &cfg, 12, la, NULL) == 0);
    s->stop_after_charges = 2;
    CHECK_MSG(sim_run(s, 1e4) == 0, "run A: %s", sl_last_error());
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 2);
    double eps_a2 = sl_dp_coord_epsilon(s->dp);
    s->stop_after_charges = 0;
    CHECK_MSG(sim_run(s, 1e4) == 0, "run A: %s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(s->e), 3);
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 3);
    double eps_a = sl_dp_coord_epsilon(s->dp);
    sim_free(s);
    free(s);
    size_t n = 0;
    CHECK_NEAR(eps_of_ledger(la, &n), eps_a, 1e-12 * eps_a);
    CHECK_EQ(n, 3);

    /* B: the same run, "killed" right after round 2's charge: its last checkpoint is round 1's */
    s = calloc(1, sizeof *s);
    CHECK(sim_init_ex(s, &cfg, 12, lb, NULL) == 0);
    s->stop_after_charges = 2;
    CHECK_MSG(sim_run(s, 1e4) == 0, "run B: %s", sl_last_error());
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 2);
    CHECK(sl_dp_coord_epsilon(s->dp) == eps_a2); /* the same deterministic run */
    CHECK(s->have_ck);
    CHECK_EQ(s->ck.round, 1);
    sl_checkpoint_t ck = s->ck; /* take it: the engine is dropped without a new checkpoint */
    s->have_ck = 0;
    sim_free(s);
    free(s);
    /* the crash also tore a third record that was being appended (never took effect) */
    {
        FILE *f = fopen(lb, "ab");
        CHECK(f != NULL);
        fputs("SLPR half a record", f);
        fclose(f);
    }

    /* without the ledger the resumed accountant forgets round 2's charge */
    s = calloc(1, sizeof *s);
    CHECK_MSG(sim_init_ex(s, &cfg, 12, NULL, &ck) == 0, "resume: %s", sl_last_error());
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 1);
    CHECK(sl_dp_coord_epsilon(s->dp) < eps_a2);
    sim_free(s);

    /* a corrupt record, or another run's ledger: refused, naming the file */
    copy_file(lb, lc, 16 + 2 * 64);
    {
        FILE *f = fopen(lc, "r+b");
        CHECK(f != NULL);
        fseek(f, 16 + 40, SEEK_SET); /* record 0's steps */
        fputc(2, f);
        fclose(f);
    }
    memset(s, 0, sizeof *s);
    CHECK_EQ(sim_init_ex(s, &cfg, 12, lc, &ck), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), lc);
    CHECK_CONTAINS(sl_last_error(), "record 0 of 2 is corrupt");
    sl_dp_coord_destroy(&s->dp);
    sl_ledger_t *other = NULL;
    CHECK(sl_ledger_create(&other, lc) == 0);
    sl_ledger_close(&other);
    memset(s, 0, sizeof *s);
    CHECK_EQ(sim_init_ex(s, &cfg, 12, lc, &ck), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "holds 0 privacy charges but the checkpoint covers 1");
    sim_free(s);

    /* C: resume B from round 1's checkpoint + B's ledger: exactly A's epsilon at the crash */
    memset(s, 0, sizeof *s);
    CHECK_MSG(sim_init_ex(s, &cfg, 12, lb, &ck) == 0, "resume: %s", sl_last_error());
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 2);
    CHECK(sl_dp_coord_epsilon(s->dp) == eps_a2);
    CHECK_EQ(sl_engine_round(s->e), 2); /* round 2 is redone (fresh noise) */
    CHECK_MSG(sim_run(s, 1e4) == 0, "run C: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
    CHECK_EQ(sl_engine_rounds_completed(s->e), 3);
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 4); /* round 2 unmasked twice: both charged */
    double eps_c = sl_dp_coord_epsilon(s->dp);
    CHECK(eps_c > eps_a);
    sim_free(s);
    free(s);
    /* the ledger holds every charge (the torn tail was cut): the accountant is its replay */
    CHECK_NEAR(eps_of_ledger(lb, &n), eps_c, 1e-12 * eps_c);
    CHECK_EQ(n, 4);
    sl_ledger_t *l = NULL;
    CHECK(sl_ledger_open(&l, lb) == 0);
    const sl_ledger_record_t *r = sl_ledger_records(l, &n);
    const uint64_t rounds[4] = {1, 2, 2, 3};
    for (size_t i = 0; i < 4 && i < n; i++) {
        CHECK_EQ(r[i].round, rounds[i]);
        CHECK_EQ(r[i].attempt, 0);
        CHECK_EQ(r[i].inputs, 12);
        CHECK_EQ(r[i].mode, SL_DP_DISTRIBUTED);
        CHECK_NEAR(r[i].z, ref_z(&cfg, 12, 12), 1e-12);
    }
    sl_ledger_close(&l);
    sl_checkpoint_free(&ck);
}

/* Round 2's first attempt is unmasked and charged, then 6 UPDATEs are lost and the engine
 * retries it. target_mid: the retry's charge would exceed it -> refused at the gate.
 * Otherwise the target admits the retry at its 12 inputs but not at the quorum's 8. */
static void test_budget_at_the_gate(int refuse)
{
    sl_config_t cfg = base_cfg(refuse ? 3 : 2, 8, 1.0);
    double z12 = ref_z(&cfg, 12, 12), z8 = ref_z(&cfg, 12, 8);
    double q[3] = {1, 1, 1};
    double zz[3] = {z12, z12, z12}, z18[2] = {z12, z8}, zz8[3] = {z12, z12, z8};
    double e2 = eps_of(q, zz, 2, cfg.dp.delta), e3 = eps_of(q, zz, 3, cfg.dp.delta);
    double e18 = eps_of(q, z18, 2, cfg.dp.delta), e228 = eps_of(q, zz8, 3, cfg.dp.delta);
    CHECK(e18 < e3 && e2 < e3 && e3 < e228);
    cfg.dp.target_epsilon = refuse ? (fmax(e18, e2) + e3) / 2 : (e3 + e228) / 2;
    char lp[128];
    snprintf(lp, sizeof lp, "%s/budget%d.ledger", dir, refuse);
    sim_t *s = calloc(1, sizeof *s);
    CHECK(sim_init_ex(s, &cfg, 12, lp, NULL) == 0);
    s->lose_updates_round = 2;
    s->lose_updates = 6;
    int rc = sim_run(s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(s->lost_updates, 6);
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
    double eps = sl_dp_coord_epsilon(s->dp);
    CHECK(eps <= cfg.dp.target_epsilon);
    size_t n = 0;
    if (refuse) {
        CHECK_MSG(strcmp(sl_engine_status(s->e), "budget") == 0, "status %s", sl_engine_status(s->e));
        CHECK_EQ(sl_engine_rounds_completed(s->e), 1);
        CHECK_EQ(sl_dp_coord_rounds(s->dp), 2); /* round 1 and round 2's first attempt */
        CHECK_NEAR(eps, e2, 1e-9);
        CHECK_NEAR(eps_of_ledger(lp, &n), eps, 1e-12);
        CHECK_EQ(n, 2); /* nothing recorded for the refused attempt */
    } else {
        CHECK_MSG(strcmp(sl_engine_status(s->e), "completed") == 0, "status %s", sl_engine_status(s->e));
        CHECK_EQ(sl_engine_rounds_completed(s->e), 2);
        CHECK_EQ(sl_dp_coord_rounds(s->dp), 3);
        CHECK_NEAR(eps, e3, 1e-9);
        CHECK_NEAR(eps_of_ledger(lp, &n), eps, 1e-12);
        CHECK_EQ(n, 3);
    }
    sim_free(s);
    free(s);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(dir, sizeof dir, "/tmp/sl_dpledger_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_crash_between_charge_and_checkpoint();
    test_budget_at_the_gate(1);
    test_budget_at_the_gate(0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_dp_ledger");
}
