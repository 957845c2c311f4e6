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
#include "client/client.h"
#include "client/dp.h"
#include "client/secagg.h"
#include "coordinator/dp.h"
#include "coordinator/engine.h"
#include "core/log.h"
#include "privacy/dp/accountant.h"
#include "privacy/dp/clip.h"
#include "privacy/dp/ddg.h"
#include "privacy/dp/noise.h"
#include "privacy/secagg/wire.h"
#include "support/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIM    64
#define MAXCL  40
#define MAXRND 8

typedef struct {
    int to_engine;
    size_t client;
    uint8_t *hdr, *pay;
    size_t hlen, plen;
} ev_t;

typedef struct sim sim_t;

typedef struct {
    sim_t *s;
    size_t idx;
    uint64_t id;
    sl_client_t *c;
    sl_client_secagg_t *cs;
    int drop;     /* vanishes at drop_stage of drop_round (first session) */
    int sessions; /* SETUPs seen in drop_round */
    int gone;     /* silent until the next SETUP */
    int masked;   /* sent its masked input since its last SETUP */
} simcl_t;

struct sim {
    sl_config_t cfg;
    sl_engine_t *e;
    sl_dp_coord_t *dp;
    simcl_t cl[MAXCL];
    size_t n;
    ev_t *ev;
    size_t head, nev, cap;
    double now;
    uint64_t drop_round;
    uint32_t drop_stage;
    uint64_t
        lose_updates_round; /* UPDATEs of this round's first attempt from lose_updates clients are lost */
    size_t lose_updates, lost_updates;
    /* per completed round r (1-based): the released mean and who was in the sum */
    double prev[DIM];
    double released[MAXRND + 1][DIM];
    int included[MAXRND + 1][MAXCL];
    size_t reported[MAXRND + 1];
};

static float delta_of(uint64_t id, uint64_t round, size_t j)
{
    return (float)((double)((int)((id * 31 + round * 17 + j * 7) % 201) - 100) / 250.0);
}

static int cl_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                    sl_update_info_t *info)
{
    simcl_t *sc = ctx;
    (void)global;
    for (size_t j = 0; j < DIM; j++)
        delta[j] = delta_of(sc->id, task->round, j);
    info->examples = 1 + sc->id % 5;
    info->steps = 1;
    info->train_loss = 0.5;
    info->seconds = 0.01;
    return 0;
}

static int cl_privatize(void *ctx, const sl_client_task_t *task, float *delta, size_t dim)
{
    return sl_dp_client_apply(&((simcl_t *)ctx)->s->cfg, task, delta, dim, NULL);
}

static int cl_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim)
{
    return sl_client_secagg_masked(((simcl_t *)ctx)->cs, c, task, delta, dim);
}

static int cl_secagg(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob,
                     size_t len)
{
    return sl_client_secagg_on_message(((simcl_t *)ctx)->cs, c, round, stage, blob, len);
}

static void push(sim_t *s, int to_engine, size_t client, const uint8_t *hdr, size_t hlen, const void *pay,
                 size_t plen)
{
    if (s->nev == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->ev = realloc(s->ev, s->cap * sizeof *s->ev);
    }
    ev_t *e = &s->ev[s->nev++];
    e->to_engine = to_engine;
    e->client = client;
    e->hdr = malloc(hlen);
    memcpy(e->hdr, hdr, hlen);
    e->hlen = hlen;
    e->pay = NULL;
    e->plen = plen;
    if (plen) {
        e->pay = aligned_alloc(16, (plen + 15) / 16 * 16);
        memcpy(e->pay, pay, plen);
    }
}

static sl_peer_t peer_of(size_t i)
{
    sl_peer_t p;
    memset(&p, 0, sizeof p);
    p.len = 5;
    p.id[0] = 0x42;
    memcpy(p.id + 1, &i, 4);
    return p;
}

static void route_engine(sim_t *s)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(s->e, &o);
    for (size_t i = 0; i < n; i++) {
        uint32_t c;
        memcpy(&c, o[i].peer.id + 1, 4);
        if (c < s->n)
            push(s, 0, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len);
    }
}

static void route_client(sim_t *s, size_t c)
{
    const sl_client_out_t *o;
    size_t n = sl_client_outbox(s->cl[c].c, &o);
    for (size_t i = 0; i < n; i++) {
        sl_msg_t m;
        if (sl_wire_decode(o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, NULL, &m) == 0) {
            if (m.type == SL_MSG_SECAGG_UP && m.stage == SL_SECAGG_MSG_MASKED)
                s->cl[c].masked = 1;
            if (m.type == SL_MSG_UPDATE && m.round == s->lose_updates_round &&
                s->lost_updates < s->lose_updates && sl_engine_state(s->e) == SL_ENGINE_ROUND) {
                s->lost_updates++;
                continue;
            }
        }
        push(s, 1, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len);
    }
}

/* 1 if the message to client c is lost because c dropped out. */
static int lost(sim_t *s, size_t c, const ev_t *ev)
{
    simcl_t *sc = &s->cl[c];
    sl_msg_t m;
    if (sl_wire_decode(ev->hdr, ev->hlen, ev->pay, ev->plen, NULL, &m) != 0 || m.type != SL_MSG_SECAGG_DOWN)
        return sc->gone;
    if (m.stage == SL_SECAGG_MSG_SETUP) {
        sc->gone = 0;
        sc->masked = 0;
        if (m.round == s->drop_round)
            sc->sessions++;
    }
    if (sc->drop && m.round == s->drop_round && sc->sessions == 1 && m.stage == s->drop_stage)
        sc->gone = 1;
    return sc->gone;
}

static int hk_prepare(void *ctx, uint64_t round, sl_task_info_t *task)
{
    return sl_dp_coord_prepare_task(((sim_t *)ctx)->dp, round, task);
}

/* The DP hook, plus a record of what the round released and who was in its sum. */
static int hk_round_end(void *ctx, sl_round_report_t *rep, const float *global, size_t dim)
{
    sim_t *s = ctx;
    int rc = sl_dp_coord_round_end(s->dp, rep);
    uint64_t r = rep->round;
    if (r <= MAXRND) {
        for (size_t j = 0; j < dim && j < DIM; j++) {
            s->released[r][j] = (double)global[j] - s->prev[j];
            s->prev[j] = (double)global[j];
        }
        for (size_t i = 0; i < s->n; i++) {
            s->included[r][i] = s->cl[i].masked;
            s->cl[i].masked = 0; /* a client not sampled next round gets no SETUP to reset it */
        }
        s->reported[r] = rep->reported;
    }
    return rc;
}

static void sim_init(sim_t *s, const sl_config_t *cfg, size_t n)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->n = n;
    CHECK_MSG(sl_dp_coord_new(&s->dp, &s->cfg, DIM) == 0, "dp_coord_new: %s", sl_last_error());
    sl_aggregator_t *agg = NULL;
    CHECK(sl_dp_aggregator_new(&agg, s->dp) == 0);
    float init[DIM] = {0};
    sl_engine_opts_t o = {
        .cfg = &s->cfg, .dim = DIM, .init = init, .layout = 0x77, .start_clients = n, .aggregator = agg};
    o.hooks.prepare_task = hk_prepare;
    o.hooks.round_end = hk_round_end;
    o.hooks.hook_ctx = s;
    int rc = sl_engine_new(&s->e, &o);
    CHECK_MSG(rc == 0, "engine_new: %s", sl_last_error());
    sl_dp_coord_set_engine(s->dp, s->e);
    for (size_t i = 0; i < n; i++) {
        simcl_t *sc = &s->cl[i];
        sc->s = s;
        sc->idx = i;
        sc->id = 500 + 7 * i;
        CHECK(sl_client_secagg_new(&sc->cs, &s->cfg) == 0);
        sl_client_opts_t co = {.client_id = sc->id,
                               .dim = DIM,
                               .layout = 0x77,
                               .train_examples = 10,
                               .test_examples = 2,
                               .n_modalities = 1,
                               .modalities = {"acc"},
                               .ctx = sc,
                               .train = cl_train,
                               .privatize = cl_privatize,
                               .masked = cl_masked,
                               .secagg = cl_secagg};
        CHECK(sl_client_new(&sc->c, &co) == 0);
        CHECK(sl_client_start(sc->c, 0) == 0);
        route_client(s, i);
    }
}

static void sim_free(sim_t *s)
{
    for (size_t i = s->head; i < s->nev; i++) {
        free(s->ev[i].hdr);
        free(s->ev[i].pay);
    }
    free(s->ev);
    for (size_t i = 0; i < s->n; i++) {
        sl_client_destroy(&s->cl[i].c);
        sl_client_secagg_destroy(&s->cl[i].cs);
    }
    sl_engine_destroy(&s->e);
    sl_dp_coord_destroy(&s->dp);
}

/* FIFO delivery, instant; when nothing is in flight, time moves by <= 0.25 s. */
static int sim_run(sim_t *s, double max_time)
{
    int rc = sl_engine_tick(s->e, s->now);
    route_engine(s);
    while (!rc && s->now < max_time) {
        sl_engine_state_t st = sl_engine_state(s->e);
        if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
            break;
        if (s->head == s->nev) {
            s->head = s->nev = 0;
            double dl = sl_engine_next_deadline(s->e);
            s->now = fmin(dl, s->now + 0.25);
            rc = sl_engine_tick(s->e, s->now);
            route_engine(s);
            continue;
        }
        ev_t ev = s->ev[s->head++];
        if (ev.to_engine) {
            sl_peer_t p = peer_of(ev.client);
            rc = sl_engine_on_message(s->e, &p, ev.hdr, ev.hlen, ev.pay, ev.plen, s->now);
            route_engine(s);
            if (!rc) {
                rc = sl_engine_tick(s->e, s->now);
                route_engine(s);
            }
        } else if (!lost(s, ev.client, &ev)) {
            int crc = sl_client_on_message(s->cl[ev.client].c, ev.hdr, ev.hlen, ev.pay, ev.plen, s->now);
            CHECK_MSG(crc == 0, "client: %s", sl_last_error());
            route_client(s, ev.client);
        }
        free(ev.hdr);
        free(ev.pay);
    }
    return rc;
}

static sl_config_t base_cfg(size_t rounds, int64_t min_clients, double fraction)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.run.seed = 5;
    cfg.federation.rounds = (int64_t)rounds;
    cfg.federation.fraction = fraction;
    cfg.federation.min_clients = min_clients;
    cfg.federation.round_timeout = 40;
    cfg.federation.eval_every = 0;
    cfg.federation.quorum_policy = SL_QUORUM_RETRY;
    cfg.federation.max_retries = 2;
    cfg.net.heartbeat_ms = 3600000;
    cfg.net.max_messages_per_second = 1000000;
    cfg.secagg.enabled = 1;
    cfg.dp.mode = SL_DP_DISTRIBUTED;
    cfg.dp.clip = 1.0;
    cfg.dp.noise_multiplier = 1.1;
    cfg.dp.delta = 1e-5;
    cfg.dp.insecure_seeded_noise = 1;
    return cfg;
}

/* The headroom rule of privacy/dp/ddg.h, derived again from its statement: the fewest h
 * with n (2^(b-1) - 1) + 12 sqrt(n) sigma_q <= 2^(B-1) - 1, b lowered first until
 * sigma_q <= 1e7, then to fit B = b + ceil(log2 n) + h <= 32. */
static void ref_quantizer(double clip, double rho, unsigned bits, size_t n, unsigned *b_out, unsigned *B_out,
                          double *scale_out)
{
    unsigned lg = 0;
    while (((size_t)1 << lg) < n)
        lg++;
    unsigned b0 = bits;
    while (b0 > 8 && (ldexp(1.0, (int)b0 - 1) - 1.0) * rho > 1e7)
        b0--;
    for (unsigned h = 0; h <= 8; h++) {
        unsigned b = b0 + lg + h > 32 ? 32 - lg - h : b0;
        unsigned B = b + lg + h;
        double L = ldexp(1.0, (int)b - 1) - 1.0;
        if ((double)n * L + 12.0 * sqrt((double)n) * L * rho <= ldexp(1.0, (int)B - 1) - 1.0) {
            *b_out = b;
            *B_out = B;
            *scale_out = L / clip;
            return;
        }
    }
    *b_out = *B_out = 0;
    *scale_out = NAN;
}

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

/* The charge of one round with r shares, derived from the formula in docs/privacy.md. */
static double ref_z(const sl_config_t *cfg, size_t sampled, size_t r)
{
    double rho = cfg->dp.noise_multiplier / sqrt((double)cfg->federation.min_clients);
    unsigned b, B;
    double scale;
    ref_quantizer(cfg->dp.clip, rho, (unsigned)cfg->secagg.bits, sampled, &b, &B, &scale);
    double C = cfg->dp.clip;
    return cfg->dp.noise_multiplier * sqrt((double)r / (double)cfg->federation.min_clients) * C /
           (C + sqrt((double)DIM) / scale);
}

static double eps_of(const double *q, const double *z, size_t steps, double delta)
{
    sl_dp_accountant_t *a = NULL;
    CHECK(sl_dp_accountant_new(&a) == 0);
    for (size_t i = 0; i < steps; i++)
        CHECK(sl_dp_accountant_step(a, q[i], z[i], 1) == 0);
    double eps = NAN;
    CHECK(sl_dp_accountant_epsilon(a, delta, &eps, NULL) == 0);
    sl_dp_accountant_destroy(&a);
    return eps;
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
