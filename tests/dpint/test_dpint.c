/* DP in federated runs, in-process (no sockets): the real round engine with the DP
 * aggregator and hooks (coordinator/dp.h), the real client state machine with the DP
 * privatize step (client/dp.h), simulated local training.
 *   (a) central mode, zero updates: the released average has noise std z C / m
 *   (b) distributed mode, zero updates: the clients' shares sum to the target std, and the
 *       accountant is charged z sqrt(reported / min_clients)
 *   (c) server-side clipping: oversize deltas are clipped to C (central) or to the
 *       clipped-and-noised bound (distributed); exact means
 *   (d) epsilon per round == sl_dp_epsilon(q, z, rounds, delta) computed directly
 *   (e) budget stop: status "budget", epsilon <= target, one more round would exceed it;
 *       a first round above the target is refused
 *   (f) resume: accountant + adaptive clip survive a checkpoint; the global vector is
 *       bit-identical to an uninterrupted run (seeded test noise)
 *   (g) refused combinations (median, trimmed mean, secagg, adaptive outside central) and
 *       malformed checkpoint state */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/client.h"
#include "client/dp.h"
#include "coordinator/checkpoint.h"
#include "coordinator/dp.h"
#include "coordinator/engine.h"
#include "coordinator/ledger.h"
#include "coordinator/runlog.h"
#include "core/log.h"
#include "privacy/dp/accountant.h"
#include "privacy/dp/clip.h"
#include "support/check.h"

#define DIM 64
#define MAXCL 64
#define MAXROUNDS 128

/* ---- a synchronous in-process federation ----------------------------------------------- */

enum { TRAIN_ZERO = 0, TRAIN_BIG, TRAIN_MIXED, TRAIN_GLOBAL };

typedef struct {
    int to_engine;
    size_t client;
    uint8_t *hdr;
    size_t hlen;
    uint8_t *pay;
    size_t plen;
} msg_t;

typedef struct sim sim_t;
typedef struct {
    uint64_t id;
    sl_client_t *c;
    sim_t *sim;
} simcl_t;

struct sim {
    sl_engine_t *e;
    sl_dp_coord_t *dp;
    sl_config_t cfg;
    size_t n;
    simcl_t cl[MAXCL];
    int train_kind;
    msg_t *q;
    size_t nq, capq, head;
    double now;
    uint64_t stop_after;
    /* observations: global vector and epsilon after each round */
    float globals[MAXROUNDS + 1][DIM];
    double eps[MAXROUNDS + 1];
    size_t sampled[MAXROUNDS + 1];
    uint64_t nrounds;
};

static int sim_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                     sl_update_info_t *info)
{
    simcl_t *sc = ctx;
    int kind = sc->sim->train_kind;
    for (size_t j = 0; j < DIM; j++) {
        switch (kind) {
        case TRAIN_ZERO:
            delta[j] = 0;
            break;
        case TRAIN_BIG: /* norm 10 * sqrt(DIM) / 8 = 10, direction e = (1,...,1)/8 */
            delta[j] = 10.0f / 8.0f;
            break;
        case TRAIN_MIXED: /* odd ids: norm 10 along +e; even ids: norm 0.5 along -e */
            delta[j] = sc->id % 2 ? 10.0f / 8.0f : -0.5f / 8.0f;
            break;
        default: /* depends on the global vector, as training does */
            delta[j] = (float)((int)((sc->id * 7 + task->round * 3 + j) % 5) - 2) * 0.25f - 0.1f * global[j];
        }
    }
    info->examples = 1 + sc->id % 9;
    info->steps = 1;
    info->train_loss = 1.0;
    return 0;
}

static int sim_privatize(void *ctx, const sl_client_task_t *task, float *delta, size_t dim)
{
    simcl_t *sc = ctx;
    return sl_dp_client_apply(&sc->sim->cfg, task, delta, dim, NULL);
}

static void enqueue(sim_t *s, int to_engine, size_t client, const uint8_t *hdr, size_t hlen, const void *pay,
                    size_t plen)
{
    if (s->nq == s->capq) {
        s->capq = s->capq ? 2 * s->capq : 256;
        s->q = realloc(s->q, s->capq * sizeof *s->q);
    }
    msg_t *m = &s->q[s->nq++];
    m->to_engine = to_engine;
    m->client = client;
    m->hdr = malloc(hlen);
    memcpy(m->hdr, hdr, hlen);
    m->hlen = hlen;
    m->pay = NULL;
    m->plen = plen;
    if (plen) {
        m->pay = malloc(plen);
        memcpy(m->pay, pay, plen);
    }
}

static sl_peer_t peer_of(size_t i)
{
    sl_peer_t p;
    memset(&p, 0, sizeof p);
    p.len = 5;
    p.id[0] = 0x51;
    uint32_t v = (uint32_t)i;
    memcpy(p.id + 1, &v, 4);
    return p;
}

static void drain_engine(sim_t *s)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(s->e, &o);
    for (size_t i = 0; i < n; i++) {
        uint32_t c;
        memcpy(&c, o[i].peer.id + 1, 4);
        if (c < s->n)
            enqueue(s, 0, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len);
    }
}

static void drain_client(sim_t *s, size_t c)
{
    const sl_client_out_t *o;
    size_t n = sl_client_outbox(s->cl[c].c, &o);
    for (size_t i = 0; i < n; i++)
        enqueue(s, 1, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len);
}

static int round_end(void *ctx, sl_round_report_t *rep, const float *global, size_t dim)
{
    sim_t *s = ctx;
    int rc = sl_dp_coord_round_end(s->dp, rep);
    if (rep->round <= MAXROUNDS) {
        memcpy(s->globals[rep->round], global, dim * sizeof *global);
        s->eps[rep->round] = rep->epsilon;
        s->sampled[rep->round] = rep->sampled;
    }
    s->nrounds = rep->round;
    return rc;
}
static int prepare(void *ctx, uint64_t round, sl_task_info_t *t)
{
    return sl_dp_coord_prepare_task(((sim_t *)ctx)->dp, round, t);
}
static int ext_save(void *ctx, uint8_t **out, size_t *len) { return sl_dp_coord_save(((sim_t *)ctx)->dp, out, len); }
static int ext_load(void *ctx, const uint8_t *b, size_t len) { return sl_dp_coord_load(((sim_t *)ctx)->dp, b, len); }

static sl_config_t base_cfg(int mode)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.run.seed = 11;
    cfg.federation.rounds = 10;
    cfg.federation.fraction = 0.5;
    cfg.federation.min_clients = 2;
    cfg.federation.round_timeout = 10;
    cfg.federation.eval_every = 0;
    cfg.net.heartbeat_ms = 3600000;
    cfg.net.max_messages_per_second = 1000000;
    cfg.dp.mode = mode;
    cfg.dp.clip = 2.0;
    cfg.dp.noise_multiplier = 1.0;
    cfg.dp.delta = 1e-5;
    cfg.dp.insecure_seeded_noise = 1;
    return cfg;
}

/* Engine + DP state + n clients; returns 0 or the sl_engine_new / sl_dp_coord_new error. */
static int sim_init(sim_t *s, const sl_config_t *cfg, size_t n, int kind, const sl_checkpoint_t *resume,
                    sl_runlog_t *rl)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->n = n;
    s->train_kind = kind;
    float init[DIM];
    for (size_t j = 0; j < DIM; j++)
        init[j] = 0.01f * (float)j;
    int rc = sl_dp_coord_new(&s->dp, cfg, DIM);
    if (rc)
        return rc;
    sl_aggregator_t *agg = NULL;
    if ((rc = sl_dp_aggregator_new(&agg, s->dp)))
        return rc;
    sl_engine_opts_t o = {.cfg = cfg, .dim = DIM, .init = init, .start_clients = n, .resume = resume, .runlog = rl,
                          .aggregator = agg};
    o.hooks.round_end = round_end;
    o.hooks.prepare_task = prepare;
    o.hooks.ext_save = ext_save;
    o.hooks.ext_load = ext_load;
    o.hooks.hook_ctx = s;
    if ((rc = sl_engine_new(&s->e, &o)))
        return rc;
    sl_dp_coord_set_engine(s->dp, s->e);
    for (size_t i = 0; i < n; i++) {
        s->cl[i].id = 100 + i;
        s->cl[i].sim = s;
        sl_client_opts_t co = {.client_id = s->cl[i].id, .dim = DIM, .train_examples = 5, .ctx = &s->cl[i],
                               .train = sim_train};
        co.privatize = sim_privatize;
        CHECK(sl_client_new(&s->cl[i].c, &co) == 0);
        CHECK(sl_client_start(s->cl[i].c, 0) == 0);
        drain_client(s, i);
    }
    return 0;
}

static void sim_free(sim_t *s)
{
    for (size_t i = s->head; i < s->nq; i++) {
        free(s->q[i].hdr);
        free(s->q[i].pay);
    }
    free(s->q);
    for (size_t i = 0; i < s->n; i++)
        sl_client_destroy(&s->cl[i].c);
    sl_engine_destroy(&s->e);
    sl_dp_coord_destroy(&s->dp);
}

/* Deliver messages until the run ends (or stop_after rounds completed). */
static void sim_run(sim_t *s)
{
    for (int guard = 0; guard < 10000000; guard++) {
        sl_engine_state_t st = sl_engine_state(s->e);
        if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
            break;
        if (s->stop_after && sl_engine_rounds_completed(s->e) >= s->stop_after)
            break;
        if (s->head == s->nq) {
            s->head = s->nq = 0;
            s->now += 0.01;
            int rc = sl_engine_tick(s->e, s->now); /* a failure shows in the state */
            (void)rc;
            drain_engine(s);
            continue;
        }
        msg_t m = s->q[s->head++];
        if (m.to_engine) {
            sl_peer_t p = peer_of(m.client);
            int rc = sl_engine_on_message(s->e, &p, m.hdr, m.hlen, m.pay, m.plen, s->now);
            (void)rc;
            drain_engine(s);
        } else {
            int rc = sl_client_on_message(s->cl[m.client].c, m.hdr, m.hlen, m.pay, m.plen, s->now);
            (void)rc;
            drain_client(s, m.client);
        }
        free(m.hdr);
        free(m.pay);
    }
}

/* Sample std of global[r][j] - global[r-1][j] over rounds 1..R and all j (mean known 0). */
static double step_std(const sim_t *s, uint64_t rounds, const float *init)
{
    double ss = 0;
    size_t k = 0;
    for (uint64_t r = 1; r <= rounds; r++)
        for (size_t j = 0; j < DIM; j++) {
            double prev = r == 1 ? (double)init[j] : (double)s->globals[r - 1][j];
            double d = (double)s->globals[r][j] - prev;
            ss += d * d;
            k++;
        }
    return sqrt(ss / (double)k);
}

static void init_vec(float *v)
{
    for (size_t j = 0; j < DIM; j++)
        v[j] = 0.01f * (float)j;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_central_noise(void)
{
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.rounds = 60;
    cfg.federation.fraction = 0.5; /* 20 clients -> m = 10 */
    cfg.dp.noise_multiplier = 1.5;
    sim_t *s = calloc(1, sizeof *s);
    CHECK_MSG(sim_init(s, &cfg, 20, TRAIN_ZERO, NULL, NULL) == 0, "%s", sl_last_error());
    sim_run(s);
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
    CHECK_EQ(s->nrounds, 60);
    CHECK_EQ(s->sampled[1], 10);
    float init[DIM];
    init_vec(init);
    double sd = step_std(s, 60, init), want = 1.5 * 2.0 / 10.0; /* z C / m */
    /* 3840 samples: the std estimate's relative s.e. is 1.1 % */
    CHECK_MSG(fabs(sd / want - 1) < 0.05, "central: step std %.5f, want z C / m = %.5f", sd, want);
    sim_free(s);
    free(s);
}

static void test_distributed_noise(void)
{
    /* 8 clients, all sampled; quorum 8: each share std z C / sqrt(8), sum z C, average z C / 8 */
    for (int variant = 0; variant < 2; variant++) {
        sl_config_t cfg = base_cfg(SL_DP_DISTRIBUTED);
        cfg.federation.rounds = 50;
        cfg.federation.fraction = 1;
        cfg.federation.min_clients = variant ? 4 : 8;
        cfg.dp.noise_multiplier = 1.2;
        sim_t *s = calloc(1, sizeof *s);
        CHECK_MSG(sim_init(s, &cfg, 8, TRAIN_ZERO, NULL, NULL) == 0, "%s", sl_last_error());
        sim_run(s);
        CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
        float init[DIM];
        init_vec(init);
        double sd = step_std(s, 50, init);
        /* sum of 8 shares of std z C / sqrt(m_min): z C sqrt(8 / m_min); divided by 8 */
        double want = 1.2 * 2.0 * sqrt(8.0 / (double)cfg.federation.min_clients) / 8.0;
        CHECK_MSG(fabs(sd / want - 1) < 0.05, "distributed (m_min %lld): step std %.5f, want %.5f",
                  (long long)cfg.federation.min_clients, sd, want);
        double q, z;
        sl_dp_coord_last_charge(s->dp, &q, &z);
        CHECK_NEAR(q, 1.0, 1e-15);
        CHECK_NEAR(z, 1.2 * sqrt(8.0 / (double)cfg.federation.min_clients), 1e-12);
        sim_free(s);
        free(s);
    }
}

static void test_server_clip(void)
{
    /* central, no noise: every client sends norm 10 along e; the mean is C e exactly */
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.rounds = 1;
    cfg.federation.fraction = 1;
    cfg.dp.noise_multiplier = 0;
    sim_t *s = calloc(1, sizeof *s);
    CHECK_MSG(sim_init(s, &cfg, 6, TRAIN_BIG, NULL, NULL) == 0, "%s", sl_last_error());
    sim_run(s);
    float init[DIM];
    init_vec(init);
    double nrm = 0;
    for (size_t j = 0; j < DIM; j++) {
        double d = (double)s->globals[1][j] - (double)init[j];
        nrm += d * d;
        CHECK_NEAR(d, 2.0 / 8.0, 1e-6);
    }
    CHECK_NEAR(sqrt(nrm), 2.0, 1e-5);
    CHECK_EQ(sl_dp_coord_clipped(s->dp), 6);
    sim_free(s);
    free(s);

    /* mixed: 3 of 6 oversize (clipped to C along +e), 3 small (norm 0.5 < C, untouched along -e):
     * mean = (3 * 2 - 3 * 0.5) / 6 along e, with a fixed divisor of 6 */
    s = calloc(1, sizeof *s);
    CHECK_MSG(sim_init(s, &cfg, 6, TRAIN_MIXED, NULL, NULL) == 0, "%s", sl_last_error());
    sim_run(s);
    for (size_t j = 0; j < DIM; j++)
        CHECK_NEAR((double)s->globals[1][j] - (double)init[j], (3 * 2.0 - 3 * 0.5) / 6.0 / 8.0, 1e-6);
    CHECK_EQ(sl_dp_coord_clipped(s->dp), 3);
    sim_free(s);
    free(s);

}

/* Distributed mode, a faulty client that skipped the privatize step: the coordinator
 * clips to the bound of a clipped-and-noised update, C + s (sqrt(d) + 10) with
 * s = z C / sqrt(m_min); an honest update passes untouched. (Aggregator driven directly.) */
static void test_distributed_bound(void)
{
    sl_config_t cfg = base_cfg(SL_DP_DISTRIBUTED);
    cfg.federation.rounds = 1;
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = 4;
    cfg.dp.clip = 0.1;
    cfg.dp.noise_multiplier = 0.5;
    cfg.dp.insecure_seeded_noise = 1;
    sl_dp_coord_t *dp = NULL;
    CHECK(sl_dp_coord_new(&dp, &cfg, DIM) == 0);
    sl_aggregator_t *agg = NULL;
    CHECK(sl_dp_aggregator_new(&agg, dp) == 0);
    sl_dp_coord_set_population(dp, 4);
    uint64_t ids[4] = {1, 2, 3, 4};
    CHECK(agg->begin_round(agg->self, 1, ids, 4, NULL) == 0);
    sl_task_info_t t;
    memset(&t, 0, sizeof t);
    CHECK(sl_dp_coord_prepare_task(dp, 1, &t) == 0);
    CHECK_EQ(t.dp_mode, SL_DP_DISTRIBUTED);
    CHECK_NEAR(t.dp_clip, 0.1, 1e-15);
    CHECK_NEAR(t.dp_noise, 0.5 / 2.0, 1e-15); /* z / sqrt(m_min) */
    double s = 0.5 * 0.1 / 2.0, bound = 0.1 + s * (sqrt((double)DIM) + 10.0);
    float big[DIM], out[DIM];
    for (size_t j = 0; j < DIM; j++)
        big[j] = 100.0f / 8.0f; /* norm 100 */
    for (int i = 0; i < 4; i++)
        CHECK(agg->add_update(agg->self, ids[i], big, DIM, 7.0) == 0);
    sl_agg_result_t res;
    CHECK(agg->finish(agg->self, out, DIM, &res) == 0);
    CHECK_EQ(res.count, 4);
    CHECK_NEAR(res.total_weight, 4.0, 0); /* weight 1 each, whatever the engine passed */
    CHECK_NEAR(sl_dp_l2_norm(out, DIM), bound, 1e-5); /* all four along e: the mean has the bound's norm */
    CHECK_EQ(sl_dp_coord_clipped(dp), 4);
    /* an honest client's update (clipped + share) passes untouched */
    sl_client_task_t task = {.round = 2, .client_id = 9, .info = t};
    float hon[DIM];
    for (size_t j = 0; j < DIM; j++)
        hon[j] = big[j];
    double norm = 0;
    CHECK(sl_dp_client_apply(&cfg, &task, hon, DIM, &norm) == 0);
    CHECK_NEAR(norm, 100.0, 1e-5);
    CHECK(sl_dp_l2_norm(hon, DIM) < bound);
    CHECK(agg->begin_round(agg->self, 2, ids, 4, NULL) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(agg->add_update(agg->self, ids[i], hon, DIM, 1.0) == 0);
    CHECK(agg->finish(agg->self, out, DIM, &res) == 0);
    for (size_t j = 0; j < DIM; j++)
        CHECK_NEAR(out[j], hon[j], 1e-6); /* four identical honest updates, divisor 4 */
    CHECK_EQ(sl_dp_coord_clipped(dp), 4);
    sl_aggregator_destroy(&agg);
    sl_dp_coord_destroy(&dp);
}

/* The released average does not depend on the order the updates arrive in (the clipped
 * updates go through the exact fixed-point mean): a resumed run over a real network
 * reproduces an uninterrupted one. Seeded noise, central mode, adaptive clipping on. */
static void test_order_independent(void)
{
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.dp.clip = 1.0;
    cfg.dp.adaptive_clip = 1;
    float upd[5][DIM], out[2][DIM];
    for (int k = 0; k < 5; k++)
        for (size_t j = 0; j < DIM; j++)
            upd[k][j] = (float)sin(0.37 * (double)(k * DIM + j)) * (k == 2 ? 3.0f : 0.11f);
    uint64_t ids[5] = {1, 2, 3, 4, 5};
    const int order[2][5] = {{0, 1, 2, 3, 4}, {4, 2, 0, 3, 1}};
    double clip_after[2];
    for (int o = 0; o < 2; o++) {
        sl_dp_coord_t *dp = NULL;
        sl_aggregator_t *agg = NULL;
        CHECK(sl_dp_coord_new(&dp, &cfg, DIM) == 0);
        CHECK(sl_dp_aggregator_new(&agg, dp) == 0);
        sl_dp_coord_set_population(dp, 10);
        CHECK(agg->begin_round(agg->self, 4, ids, 5, NULL) == 0);
        for (int k = 0; k < 5; k++)
            CHECK(agg->add_update(agg->self, ids[order[o][k]], upd[order[o][k]], DIM, 1.0) == 0);
        sl_agg_result_t res;
        CHECK(agg->finish(agg->self, out[o], DIM, &res) == 0);
        CHECK_EQ(res.count, 5);
        sl_round_report_t rep;
        sl_round_report_init(&rep, 4);
        CHECK(sl_dp_coord_round_end(dp, &rep) == 0);
        double q = 0;
        sl_dp_coord_last_charge(dp, &q, NULL);
        CHECK_NEAR(q, 0.5, 1e-15); /* 5 sampled of a population of 10 */
        clip_after[o] = sl_dp_coord_clip(dp);
        sl_aggregator_destroy(&agg);
        sl_dp_coord_destroy(&dp);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
    CHECK(clip_after[0] == clip_after[1]);
}

/* Local mode: an attempt that missed the quorum still showed the coordinator its clients'
 * noised reports; the retried round is charged one step per attempt that had reports, each
 * as its first report arrives (write-ahead: the ledger record first). A state saved after
 * round 1 and restored with the ledger recovers round 2's charge. */
static void test_local_retry_charged(void)
{
    sl_config_t cfg = base_cfg(SL_DP_LOCAL);
    cfg.federation.min_clients = 3;
    sl_dp_coord_t *dp = NULL;
    sl_aggregator_t *agg = NULL;
    char ldir[64], lpath[96];
    snprintf(ldir, sizeof ldir, "/tmp/sl_dpint_XXXXXX");
    CHECK(mkdtemp(ldir) != NULL);
    snprintf(lpath, sizeof lpath, "%s/privacy.ledger", ldir);
    CHECK(sl_dp_coord_new(&dp, &cfg, DIM) == 0);
    CHECK(sl_dp_coord_open_ledger(dp, lpath, 0) == 0);
    CHECK(sl_dp_aggregator_new(&agg, dp) == 0);
    sl_dp_coord_set_population(dp, 4);
    uint64_t ids[4] = {1, 2, 3, 4};
    float u[DIM] = {0};
    float out[DIM];
    sl_agg_result_t res;
    CHECK(agg->begin_round(agg->self, 1, ids, 4, NULL) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 0);
    CHECK(agg->add_update(agg->self, 1, u, DIM, 1.0) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 1); /* charged at the attempt's first report */
    CHECK(agg->add_update(agg->self, 2, u, DIM, 1.0) == 0);
    CHECK(agg->finish(agg->self, out, DIM, &res) == 0); /* 2 < quorum 3: nothing released */
    CHECK_EQ(res.count, 2);
    CHECK(agg->begin_round(agg->self, 1, ids, 4, NULL) == 0); /* the retry */
    for (int i = 0; i < 4; i++)
        CHECK(agg->add_update(agg->self, ids[i], u, DIM, 1.0) == 0);
    CHECK(agg->finish(agg->self, out, DIM, &res) == 0);
    CHECK_EQ(res.count, 4);
    sl_round_report_t rep;
    sl_round_report_init(&rep, 1);
    CHECK(sl_dp_coord_round_end(dp, &rep) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 2);
    double want = 0;
    CHECK(sl_dp_epsilon(1.0, 1.0, 2, 1e-5, &want, NULL) == 0);
    CHECK_NEAR(rep.epsilon, want, 1e-12);
    uint8_t *saved = NULL; /* the checkpoint after round 1 */
    size_t saved_len = 0;
    CHECK(sl_dp_coord_save(dp, &saved, &saved_len) == 0);
    /* the next round, without a retry, is one step */
    CHECK(agg->begin_round(agg->self, 2, ids, 4, NULL) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(agg->add_update(agg->self, ids[i], u, DIM, 1.0) == 0);
    CHECK(agg->finish(agg->self, out, DIM, &res) == 0);
    sl_round_report_init(&rep, 2);
    CHECK(sl_dp_coord_round_end(dp, &rep) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 3);
    double eps3 = sl_dp_coord_epsilon(dp);
    /* round_end without a released sum is a wiring error */
    sl_round_report_init(&rep, 3);
    CHECK_EQ(sl_dp_coord_round_end(dp, &rep), SL_ESTATE);
    sl_aggregator_destroy(&agg);
    sl_dp_coord_destroy(&dp);
    /* the ledger: (round 1, round 1 retried, round 2), each (q 1, z 1, 1 step, local) */
    sl_ledger_t *l = NULL;
    CHECK(sl_ledger_open(&l, lpath) == 0);
    size_t n = 0;
    const sl_ledger_record_t *r = sl_ledger_records(l, &n);
    CHECK_EQ(n, 3);
    const uint64_t rounds[3] = {1, 1, 2};
    for (size_t i = 0; i < n && i < 3; i++) {
        CHECK_EQ(r[i].round, rounds[i]);
        CHECK(r[i].q == 1.0 && r[i].z == 1.0 && r[i].steps == 1 && r[i].mode == SL_DP_LOCAL);
    }
    sl_ledger_close(&l);
    /* resumed from the state after round 1 (2 charges covered) + the ledger: all 3 charges */
    CHECK(sl_dp_coord_new(&dp, &cfg, DIM) == 0);
    CHECK(sl_dp_coord_open_ledger(dp, lpath, 1) == 0);
    CHECK(sl_dp_coord_load(dp, saved, saved_len) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 3);
    CHECK(sl_dp_coord_epsilon(dp) == eps3);
    sl_dp_coord_destroy(&dp);
    /* the same state without the ledger: round 2's charge is lost (what the ledger fixes) */
    CHECK(sl_dp_coord_new(&dp, &cfg, DIM) == 0);
    CHECK(sl_dp_coord_load(dp, saved, saved_len) == 0);
    CHECK_EQ(sl_dp_coord_rounds(dp), 2);
    sl_dp_coord_destroy(&dp);
    free(saved);
    unlink(lpath);
    rmdir(ldir);
}

/* The SecAgg-path helper: clip to C, discrete Gaussian shares of std scale * s in quantized
 * units; four clients' shares sum to std 2 * scale * s (independent streams per client). */
static void test_secagg_share(void)
{
    enum { N = 20000 };
    sl_config_t cfg = base_cfg(SL_DP_DISTRIBUTED);
    sl_client_task_t task = {.round = 2, .client_id = 7};
    task.info.dp_mode = SL_DP_DISTRIBUTED;
    task.info.secagg = 1;
    task.info.dp_clip = 1.0;
    task.info.dp_noise = 0.5; /* z / sqrt(m_min) = 1 / sqrt(4) */
    float *d = calloc(N, sizeof *d);
    int32_t *noise = calloc(N, sizeof *noise);
    double *sum = calloc(N, sizeof *sum);
    for (size_t j = 0; j < N; j++)
        d[j] = 0.01f; /* norm 1.414 > C */
    double norm = 0;
    CHECK(sl_dp_client_secagg_share(&cfg, &task, 100.0, d, noise, N, &norm) == 0);
    CHECK_NEAR(norm, 0.01 * sqrt((double)N), 1e-5);
    CHECK_NEAR(sl_dp_l2_norm(d, N), 1.0, 1e-6);
    double ss = 0;
    for (size_t j = 0; j < N; j++)
        ss += (double)noise[j] * (double)noise[j];
    CHECK_MSG(fabs(sqrt(ss / N) / 50.0 - 1) < 0.03, "share std %.3f, want 50", sqrt(ss / N));
    for (uint64_t id = 1; id <= 4; id++) {
        task.client_id = id;
        CHECK(sl_dp_client_secagg_share(&cfg, &task, 100.0, d, noise, N, NULL) == 0);
        for (size_t j = 0; j < N; j++)
            sum[j] += noise[j];
    }
    ss = 0;
    for (size_t j = 0; j < N; j++)
        ss += sum[j] * sum[j];
    CHECK_MSG(fabs(sqrt(ss / N) / 100.0 - 1) < 0.03, "sum of 4 shares: std %.3f, want 100 = z C scale",
              sqrt(ss / N));
    /* refused: too coarse a scale, not a SecAgg task, not distributed */
    CHECK_EQ(sl_dp_client_secagg_share(&cfg, &task, 1.0, d, noise, N, NULL), SL_ERANGE);
    task.info.secagg = 0;
    CHECK_EQ(sl_dp_client_secagg_share(&cfg, &task, 100.0, d, noise, N, NULL), SL_EINVAL);
    task.info.secagg = 1;
    task.info.dp_mode = SL_DP_LOCAL;
    CHECK_EQ(sl_dp_client_secagg_share(&cfg, &task, 100.0, d, noise, N, NULL), SL_EINVAL);
    free(d), free(noise), free(sum);
}

static void test_client_apply(void)
{
    sl_config_t cfg = base_cfg(SL_DP_LOCAL);
    float d[DIM], orig[DIM];
    for (size_t j = 0; j < DIM; j++)
        orig[j] = d[j] = (float)j * 0.1f;
    sl_client_task_t task = {.round = 3, .client_id = 5};
    /* off and central: untouched */
    task.info.dp_mode = SL_DP_CENTRAL;
    task.info.dp_clip = 0.5;
    CHECK(sl_dp_client_apply(&cfg, &task, d, DIM, NULL) == 0);
    CHECK(memcmp(d, orig, sizeof d) == 0);
    /* local with zero noise: exactly clipped to C */
    task.info.dp_mode = SL_DP_LOCAL;
    task.info.dp_noise = 0;
    double norm = 0;
    CHECK(sl_dp_client_apply(&cfg, &task, d, DIM, &norm) == 0);
    CHECK_NEAR(norm, sl_dp_l2_norm(orig, DIM), 1e-9);
    CHECK(sl_dp_l2_norm(d, DIM) <= 0.5);
    CHECK_NEAR(sl_dp_l2_norm(d, DIM), 0.5, 1e-6);
    /* local noise, std z C: reproducible with the seeded test source, of the right size */
    float a[DIM] = {0}, b[DIM] = {0};
    task.info.dp_noise = 3.0;
    CHECK(sl_dp_client_apply(&cfg, &task, a, DIM, NULL) == 0);
    CHECK(sl_dp_client_apply(&cfg, &task, b, DIM, NULL) == 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    double ss = 0;
    for (size_t j = 0; j < DIM; j++)
        ss += (double)a[j] * (double)a[j];
    CHECK(sqrt(ss / DIM) > 0.5 * 1.5 && sqrt(ss / DIM) < 1.5 * 1.5);
    /* values a coordinator could not have sent */
    task.info.dp_mode = 9;
    CHECK_EQ(sl_dp_client_apply(&cfg, &task, a, DIM, NULL), SL_EPROTO);
    task.info.dp_mode = SL_DP_DISTRIBUTED;
    task.info.dp_clip = -1;
    CHECK_EQ(sl_dp_client_apply(&cfg, &task, a, DIM, NULL), SL_EPROTO);
    task.info.dp_clip = 1;
    /* distributed + secagg: left to the SecAgg hook (discrete share), the delta untouched */
    task.info.secagg = 1;
    memcpy(b, a, sizeof a);
    CHECK_EQ(sl_dp_client_apply(&cfg, &task, a, DIM, NULL), 0);
    CHECK(memcmp(a, b, sizeof a) == 0);
    task.info.dp_mode = SL_DP_LOCAL;
    CHECK_EQ(sl_dp_client_apply(&cfg, &task, a, DIM, NULL), SL_ENOTSUP);
    task.info.dp_mode = SL_DP_DISTRIBUTED;
    task.info.secagg = 0;
    a[3] = NAN;
    CHECK_EQ(sl_dp_client_apply(&cfg, &task, a, DIM, NULL), SL_EINVAL);
}

static void test_accountant_per_round(void)
{
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.rounds = 12;
    cfg.federation.fraction = 0.25; /* 16 clients: 4 per round, q = 1/4 */
    cfg.federation.min_clients = 2;
    cfg.dp.noise_multiplier = 1.1;
    sim_t *s = calloc(1, sizeof *s);
    CHECK_MSG(sim_init(s, &cfg, 16, TRAIN_GLOBAL, NULL, NULL) == 0, "%s", sl_last_error());
    sim_run(s);
    CHECK_EQ(s->nrounds, 12);
    for (int64_t r = 1; r <= 12; r++) {
        double want = 0;
        CHECK(sl_dp_epsilon(0.25, 1.1, r, 1e-5, &want, NULL) == 0);
        CHECK_NEAR(s->eps[r], want, 1e-12);
        if (r > 1)
            CHECK(s->eps[r] > s->eps[r - 1]);
    }
    CHECK_NEAR(sl_dp_coord_epsilon(s->dp), s->eps[12], 0);
    CHECK_EQ(sl_dp_coord_rounds(s->dp), 12);
    const sl_round_report_t *last = sl_engine_last_report(s->e);
    CHECK(last && last->epsilon == s->eps[12]);
    sim_free(s);
    free(s);

    /* local mode is charged (1, z) per round */
    cfg.dp.mode = SL_DP_LOCAL;
    cfg.federation.rounds = 3;
    s = calloc(1, sizeof *s);
    CHECK(sim_init(s, &cfg, 16, TRAIN_GLOBAL, NULL, NULL) == 0);
    sim_run(s);
    double want = 0;
    CHECK(sl_dp_epsilon(1.0, 1.1, 3, 1e-5, &want, NULL) == 0);
    CHECK_NEAR(s->eps[3], want, 1e-12);
    sim_free(s);
    free(s);
}

static void test_budget(void)
{
    const double q = 0.5, z = 1.3, delta = 1e-5;
    double e7 = 0, e8 = 0;
    CHECK(sl_dp_epsilon(q, z, 7, delta, &e7, NULL) == 0);
    CHECK(sl_dp_epsilon(q, z, 8, delta, &e8, NULL) == 0);
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.rounds = 30;
    cfg.federation.fraction = q;
    cfg.dp.noise_multiplier = z;
    cfg.dp.target_epsilon = 0.5 * (e7 + e8);
    char dir[] = "/tmp/sl_dpint_budgetXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_runlog_t *rl = NULL;
    CHECK(sl_runlog_new(&rl, &cfg, dir) == 0);
    sim_t *s = calloc(1, sizeof *s);
    CHECK(sim_init(s, &cfg, 12, TRAIN_GLOBAL, NULL, rl) == 0);
    sim_run(s);
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_DONE);
    CHECK_MSG(strcmp(sl_engine_status(s->e), "budget") == 0, "status %s", sl_engine_status(s->e));
    CHECK_EQ(sl_engine_rounds_completed(s->e), 7);
    double eps = sl_dp_coord_epsilon(s->dp);
    CHECK(eps <= cfg.dp.target_epsilon);
    CHECK_NEAR(eps, e7, 1e-12);
    CHECK(e8 > cfg.dp.target_epsilon); /* one more round would have exceeded it */
    CHECK(sl_runlog_summary(rl, sl_engine_status(s->e), 7, sl_engine_last_report(s->e), 1.0) == 0);
    sim_free(s);
    free(s);
    sl_runlog_destroy(&rl);
    char path[256];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char buf[4096] = {0};
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    CHECK_CONTAINS(buf, "\"budget\"");
    CHECK_CONTAINS(buf, "\"epsilon\"");

    /* a target below the cost of one round: refused before anything is released */
    cfg.dp.target_epsilon = 0.1;
    s = calloc(1, sizeof *s);
    CHECK(sim_init(s, &cfg, 12, TRAIN_GLOBAL, NULL, NULL) == 0);
    sim_run(s);
    CHECK_EQ(sl_engine_state(s->e), SL_ENGINE_FAILED);
    CHECK_EQ(sl_engine_rounds_completed(s->e), 0);
    CHECK_CONTAINS(sl_engine_status(s->e), "single round");
    sim_free(s);
    free(s);
}

static void test_resume(void)
{
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.rounds = 8;
    cfg.federation.fraction = 0.5;
    cfg.federation.strategy = SL_STRAT_FEDADAM; /* server state in the checkpoint too */
    cfg.federation.server_lr = 0.05;
    cfg.dp.clip = 0.5;
    cfg.dp.noise_multiplier = 0.8;
    cfg.dp.adaptive_clip = 1;
    cfg.dp.count_noise_multiplier = 10;
    /* uninterrupted */
    sim_t *a = calloc(1, sizeof *a);
    CHECK_MSG(sim_init(a, &cfg, 10, TRAIN_GLOBAL, NULL, NULL) == 0, "%s", sl_last_error());
    sim_run(a);
    CHECK_EQ(a->nrounds, 8);
    CHECK(sl_dp_coord_clip(a->dp) != 0.5); /* adaptive clipping moved C */

    /* stopped after round 3, resumed from the checkpoint by a new engine and DP state */
    char dir[] = "/tmp/sl_dpint_resumeXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_runlog_t *rl = NULL;
    CHECK(sl_runlog_new(&rl, &cfg, dir) == 0);
    sim_t *b = calloc(1, sizeof *b);
    CHECK(sim_init(b, &cfg, 10, TRAIN_GLOBAL, NULL, rl) == 0);
    b->stop_after = 3;
    sim_run(b);
    CHECK_EQ(sl_engine_rounds_completed(b->e), 3);
    sim_free(b);
    sl_checkpoint_t ck;
    int rc = sl_checkpoint_read(sl_runlog_checkpoint_path(rl), &ck);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(ck.round, 3);
    CHECK(ck.ext_len > 0);
    rc = sim_init(b, &cfg, 10, TRAIN_GLOBAL, &ck, rl);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(sl_dp_coord_rounds(b->dp), 3);
    CHECK_NEAR(sl_dp_coord_epsilon(b->dp), a->eps[3], 1e-12);
    sim_run(b);
    CHECK_EQ(sl_engine_rounds_completed(b->e), 8);
    for (int r = 4; r <= 8; r++)
        CHECK_NEAR(b->eps[r], a->eps[r], 1e-12);
    size_t dim = 0;
    const float *ga = sl_engine_global(a->e, &dim), *gb = sl_engine_global(b->e, NULL);
    CHECK_EQ(dim, DIM);
    CHECK_MSG(memcmp(ga, gb, DIM * sizeof *ga) == 0, "resumed global vector differs from the uninterrupted run");
    CHECK(sl_dp_coord_clip(a->dp) == sl_dp_coord_clip(b->dp));

    /* the checkpoint state: corrupt or missing is refused with a message */
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(sl_dp_coord_save(b->dp, &buf, &len) == 0);
    CHECK_EQ(sl_dp_coord_load(b->dp, buf, len), 0);
    CHECK_EQ(sl_dp_coord_load(b->dp, NULL, 0), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "no DP state");
    for (size_t cut = 0; cut < len; cut += 7)
        CHECK_EQ(sl_dp_coord_load(b->dp, buf, cut), SL_EFORMAT);
    buf[0] ^= 1;
    CHECK_EQ(sl_dp_coord_load(b->dp, buf, len), SL_EFORMAT);
    buf[0] ^= 1;
    buf[8] = 0; /* flags say no adaptive state, the length says there is one */
    CHECK_EQ(sl_dp_coord_load(b->dp, buf, len), SL_EFORMAT);
    free(buf);
    CHECK_EQ(sl_dp_coord_rounds(b->dp), 8); /* failed loads left the state alone */

    sl_checkpoint_free(&ck);
    sim_free(a);
    sim_free(b);
    free(a);
    free(b);
    sl_runlog_destroy(&rl);
}

static void test_refused(void)
{
    sl_dp_coord_t *dp = NULL;
    sl_config_t cfg = base_cfg(SL_DP_CENTRAL);
    cfg.federation.strategy = SL_STRAT_MEDIAN;
    CHECK_EQ(sl_dp_coord_new(&dp, &cfg, DIM), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "median");
    CHECK(dp == NULL);
    cfg.federation.strategy = SL_STRAT_TRIMMED_MEAN;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "trimmed_mean");
    cfg.federation.strategy = SL_STRAT_FEDAVG;
    /* secure aggregation: distributed mode only (discrete noise shares under the masks) */
    cfg.secagg.enabled = 1;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ENOTSUP);
    CHECK_CONTAINS(sl_last_error(), "secagg");
    CHECK_CONTAINS(sl_last_error(), "central mode");
    cfg.dp.mode = SL_DP_LOCAL;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ENOTSUP);
    CHECK_CONTAINS(sl_last_error(), "local mode");
    cfg.dp.mode = SL_DP_DISTRIBUTED;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), 0);
    CHECK_EQ(sl_dp_coord_new(&dp, &cfg, DIM), 0);
    sl_aggregator_t *agg = NULL;
    CHECK_EQ(sl_dp_aggregator_new(&agg, dp), 0);
    CHECK(agg && agg->secure == 1 && agg->add_update == NULL && agg->secagg_message != NULL);
    sl_aggregator_destroy(&agg);
    sl_dp_coord_destroy(&dp);
    cfg.federation.strategy = SL_STRAT_MEDIAN; /* still refused, with the reason */
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "median");
    cfg.federation.strategy = SL_STRAT_FEDAVG;
    cfg.dp.adaptive_clip = 1;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "adaptive_clip");
    cfg.dp.adaptive_clip = 0;
    cfg.dp.noise_multiplier = 100; /* a share that no 32-bit ring holds: refused when the state is made */
    CHECK_EQ(sl_dp_coord_new(&dp, &cfg, DIM), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "ring");
    CHECK(dp == NULL);
    cfg.dp.noise_multiplier = base_cfg(SL_DP_CENTRAL).dp.noise_multiplier;
    cfg.dp.mode = SL_DP_CENTRAL;
    cfg.secagg.enabled = 0;
    cfg.dp.mode = SL_DP_DISTRIBUTED;
    cfg.dp.adaptive_clip = 1;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "adaptive_clip");
    cfg.dp.mode = SL_DP_CENTRAL;
    cfg.dp.count_noise_multiplier = 0.5; /* 2 sigma_b <= z */
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    cfg.dp.adaptive_clip = 0;
    cfg.dp.noise_multiplier = 0;
    cfg.dp.target_epsilon = 2;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), SL_ECONFIG);
    cfg.dp.mode = SL_DP_OFF;
    CHECK_EQ(sl_dp_coord_check_config(&cfg), 0);
    CHECK_EQ(sl_dp_coord_new(&dp, &cfg, DIM), SL_EINVAL);
    /* the engine's own check still holds for a median run without DP */
    sl_dp_coord_destroy(&dp);
    sl_dp_coord_destroy(NULL);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    test_refused();
    test_client_apply();
    test_distributed_bound();
    test_order_independent();
    test_local_retry_charged();
    test_secagg_share();
    test_server_clip();
    test_central_noise();
    test_distributed_noise();
    test_accountant_per_round();
    test_budget();
    test_resume();
    return check_summary("test_dpint");
}
