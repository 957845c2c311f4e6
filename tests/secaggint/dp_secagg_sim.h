/* The in-process harness of the DP + SecAgg+ integration tests (test_dp_secagg.c,
 * test_dp_ledger.c): the real engine with the DP aggregator of coordinator/dp.h and real
 * sl_client state machines with the real hooks, FIFO message delivery, simulated time,
 * planned dropouts and lost UPDATEs. Optionally a privacy ledger, a resume checkpoint, a
 * stop right after the n-th privacy charge (a simulated crash), and a copy of the state
 * after each completed round (what the run folder's checkpoint would hold). */
#ifndef DP_SECAGG_SIM_H
#define DP_SECAGG_SIM_H

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

#include <stdint.h>

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
    /* simulated crash: sim_run stops right after the engine call that made the
     * stop_after_charges-th privacy charge (0 = never) */
    int64_t stop_after_charges;
    /* the engine's checkpoint after its last completed round, taken after every engine call
     * that completed one (as the run folder's would be) */
    sl_checkpoint_t ck;
    int have_ck;
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

static int hk_save(void *ctx, uint8_t **out, size_t *len)
{
    return sl_dp_coord_save(((sim_t *)ctx)->dp, out, len);
}

static int hk_load(void *ctx, const uint8_t *buf, size_t len)
{
    return sl_dp_coord_load(((sim_t *)ctx)->dp, buf, len);
}

/* A run of n clients; ledger: the privacy ledger's path (NULL = none); resume: continue
 * after this checkpoint (NULL = fresh). Returns sl_engine_new's code (s->e NULL on error). */
static int sim_init_ex(sim_t *s, const sl_config_t *cfg, size_t n, const char *ledger, const sl_checkpoint_t *resume)
{
    memset(s, 0, sizeof *s);
    s->cfg = *cfg;
    s->n = n;
    CHECK_MSG(sl_dp_coord_new(&s->dp, &s->cfg, DIM) == 0, "dp_coord_new: %s", sl_last_error());
    if (ledger) {
        int lrc = sl_dp_coord_open_ledger(s->dp, ledger, resume != NULL);
        if (lrc)
            return lrc;
    }
    sl_aggregator_t *agg = NULL;
    CHECK(sl_dp_aggregator_new(&agg, s->dp) == 0);
    float init[DIM] = {0};
    sl_engine_opts_t o = {
        .cfg = &s->cfg, .dim = DIM, .init = init, .layout = 0x77, .start_clients = n, .aggregator = agg};
    o.hooks.prepare_task = hk_prepare;
    o.hooks.round_end = hk_round_end;
    o.hooks.ext_save = hk_save;
    o.hooks.ext_load = hk_load;
    o.hooks.hook_ctx = s;
    o.resume = resume;
    int rc = sl_engine_new(&s->e, &o);
    if (rc)
        return rc;
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
    return 0;
}

/* sim_init_ex without ledger or resume; a failure is a test failure. (unused: not every
 * includer calls it) */
__attribute__((unused)) static void sim_init(sim_t *s, const sl_config_t *cfg, size_t n)
{
    int rc = sim_init_ex(s, cfg, n, NULL, NULL);
    CHECK_MSG(rc == 0, "engine_new: %s", sl_last_error());
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
    if (s->have_ck)
        sl_checkpoint_free(&s->ck);
}

/* After each engine call: keep the checkpoint of a newly completed round; 1 = stop here
 * (the simulated crash: the charge was made, whatever the call did after it). */
static int sim_after_call(sim_t *s)
{
    if (s->stop_after_charges > 0 && sl_dp_coord_rounds(s->dp) >= s->stop_after_charges)
        return 1;
    uint64_t done = sl_engine_rounds_completed(s->e);
    if (done > 0 && (!s->have_ck || s->ck.round < done)) {
        if (s->have_ck)
            sl_checkpoint_free(&s->ck);
        CHECK(sl_engine_checkpoint(s->e, &s->ck) == 0);
        s->have_ck = 1;
    }
    return 0;
}

/* FIFO delivery, instant; when nothing is in flight, time moves by <= 0.25 s. */
static int sim_run(sim_t *s, double max_time)
{
    int rc = sl_engine_tick(s->e, s->now);
    route_engine(s);
    int stop = sim_after_call(s);
    while (!rc && !stop && s->now < max_time) {
        sl_engine_state_t st = sl_engine_state(s->e);
        if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
            break;
        if (s->head == s->nev) {
            s->head = s->nev = 0;
            double dl = sl_engine_next_deadline(s->e);
            s->now = fmin(dl, s->now + 0.25);
            rc = sl_engine_tick(s->e, s->now);
            route_engine(s);
            stop = sim_after_call(s);
            continue;
        }
        ev_t ev = s->ev[s->head++];
        if (ev.to_engine) {
            sl_peer_t p = peer_of(ev.client);
            rc = sl_engine_on_message(s->e, &p, ev.hdr, ev.hlen, ev.pay, ev.plen, s->now);
            route_engine(s);
            stop = sim_after_call(s);
            if (!rc && !stop) {
                rc = sl_engine_tick(s->e, s->now);
                route_engine(s);
                stop = sim_after_call(s);
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

#endif
