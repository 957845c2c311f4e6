/* Round engine in-process, no sockets: simulated clients (the real client state machine)
 * with dropouts, stragglers and duplicates; exact FedAvg arithmetic; strategies and robust
 * aggregators against reference implementations; quorum failure; checkpoints; resume
 * equivalence (bit-identical); protocol checks at the engine edge. */
#include "client/client.h"
#include "coordinator/aggregator.h"
#include "coordinator/checkpoint.h"
#include "coordinator/engine.h"
#include "coordinator/runlog.h"
#include "coordinator/strategy.h"
#include "core/log.h"
#include "core/rng.h"
#include "support/check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 48

/* ---- simulation ------------------------------------------------------------------------ */

enum { B_NORMAL = 0, B_DROP, B_LATE, B_DUP };

typedef struct {
    double t;
    uint64_t seq;
    int to_engine;
    size_t client;
    uint8_t *hdr;
    size_t hlen;
    float *pay;
    size_t plen;
    int late; /* expected to be discarded as late/duplicate */
} ev_t;

typedef struct sim sim_t;

typedef struct {
    uint64_t id;
    sl_client_t *c;
    sim_t *sim;
} simcl_t;

struct sim {
    sl_engine_t *e;
    size_t n;
    simcl_t *cl;
    double now;
    ev_t *ev;
    size_t nev, capev;
    uint64_t seq;
    double p_drop, p_late, p_dup;
    float *scratch;
    /* observations */
    sl_round_report_t reports[64];
    size_t nreports;
    uint64_t sampled_ids[64][1024];
    size_t nsampled[64];
    uint64_t accepted_ids[64][1024]; /* sim's prediction: on-time updates */
    size_t naccepted[64];
    size_t expected_late;
    long grants, updates_in, max_inflight;
    uint64_t stop_after; /* stop the sim once this many rounds completed (0 = run to the end) */
};

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static int behaviour(const sim_t *s, uint64_t id, uint64_t round)
{
    double u = (double)(mix(id * 1000003u + round) >> 11) / 9007199254740992.0;
    if (u < s->p_drop)
        return B_DROP;
    if (u < s->p_drop + s->p_late)
        return B_LATE;
    if (u < s->p_drop + s->p_late + s->p_dup)
        return B_DUP;
    return B_NORMAL;
}

static uint64_t examples_of(uint64_t id)
{
    return 1 + id % 13;
}

/* Deterministic local "training": small integer deltas, so every sum is exact. */
static int sim_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                     sl_update_info_t *info)
{
    simcl_t *sc = ctx;
    (void)global;
    for (size_t j = 0; j < DIM; j++)
        delta[j] = (float)((int)((sc->id * 31 + task->round * 17 + j * 7) % 9) - 4);
    info->examples = examples_of(sc->id);
    info->steps = 3;
    info->train_loss = (double)(sc->id % 5) * 0.25;
    info->seconds = 0.01;
    if (task->info.want_eval) {
        info->has_eval = 1;
        info->eval_examples = 2;
        info->eval_loss = 1.0;
        info->eval_accuracy = 0.5;
    }
    return 0;
}

static int sim_eval(void *ctx, uint64_t round, const float *global, size_t dim, sl_eval_info_t *out)
{
    (void)ctx, (void)round, (void)global, (void)dim;
    out->examples = 10;
    out->loss = 0.5;
    out->accuracy = 0.75;
    out->macro_f1 = 0.7;
    return 0;
}

static void push(sim_t *s, double t, int to_engine, size_t client, const uint8_t *hdr, size_t hlen,
                 const void *pay, size_t plen, int late)
{
    if (s->nev == s->capev) {
        s->capev = s->capev ? 2 * s->capev : 1024;
        s->ev = realloc(s->ev, s->capev * sizeof *s->ev);
    }
    ev_t *e = &s->ev[s->nev++];
    e->t = t;
    e->seq = s->seq++;
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
    e->late = late;
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

static size_t client_of(const sl_peer_t *p)
{
    uint32_t i;
    memcpy(&i, p->id + 1, 4);
    return i;
}

/* Engine outbox -> events to clients (delivered "instantly"). Observes TASKs. */
static void route_engine(sim_t *s)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(s->e, &o);
    for (size_t i = 0; i < n; i++) {
        size_t c = client_of(&o[i].peer);
        if (c >= s->n)
            continue;
        sl_msg_t m;
        if (sl_wire_decode(o[i].header, o[i].header_len, NULL, 0, NULL, &m) == 0 && m.type == SL_MSG_GRANT) {
            s->grants++;
            if (s->grants - s->updates_in > s->max_inflight)
                s->max_inflight = s->grants - s->updates_in;
        }
        push(s, s->now + 1e-4, 0, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, 0);
    }
}

/* Client outbox -> events to the engine, with the client's behaviour this round. */
static void route_client(sim_t *s, size_t c, uint64_t task_round)
{
    const sl_client_out_t *o;
    size_t n = sl_client_outbox(s->cl[c].c, &o);
    for (size_t i = 0; i < n; i++) {
        int is_update = o[i].payload_len > 0 || task_round > 0;
        int b = is_update && task_round ? behaviour(s, s->cl[c].id, task_round) : B_NORMAL;
        double d = 0.001 * (double)(1 + s->cl[c].id % 7);
        if (b == B_DROP)
            continue;
        if (b == B_LATE) {
            push(s, s->now + sl_engine_next_deadline(s->e) - s->now + 1.0, 1, c, o[i].header, o[i].header_len,
                 o[i].payload, o[i].payload_len, 1);
            continue;
        }
        push(s, s->now + d, 1, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, 0);
        if (b == B_DUP)
            push(s, s->now + d + 0.0005, 1, c, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len,
                 1);
    }
}

static int round_end_hook(void *ctx, sl_round_report_t *rep, const float *global, size_t dim)
{
    (void)global, (void)dim;
    sim_t *s = ctx;
    if (s->nreports < 64)
        s->reports[s->nreports++] = *rep;
    rep->epsilon = 0.125 * (double)rep->round; /* as a DP accountant would */
    return 0;
}

static int cl_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim);
static int cl_secagg(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob,
                     size_t len);

static sl_config_t base_cfg(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.run.seed = 7;
    cfg.federation.rounds = 5;
    cfg.federation.fraction = 0.1;
    cfg.federation.min_clients = 2;
    cfg.federation.round_timeout = 10;
    cfg.federation.eval_every = 2;
    cfg.net.heartbeat_ms = 3600000; /* no staleness within the simulated hours */
    cfg.net.max_messages_per_second = 1000000;
    return cfg;
}

static size_t g_max_uploads; /* engine option for the next sim_init */

static void sim_init(sim_t *s, const sl_config_t *cfg, size_t n, const float *init,
                     const sl_checkpoint_t *resume, sl_runlog_t *rl, sl_aggregator_t *agg)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->scratch = calloc(DIM, sizeof(float));
    sl_engine_opts_t o = {.cfg = cfg,
                          .dim = DIM,
                          .init = init,
                          .layout = 0x1234,
                          .start_clients = n,
                          .resume = resume,
                          .runlog = rl,
                          .aggregator = agg,
                          .final_eval = 1,
                          .max_uploads = g_max_uploads};
    o.hooks.round_end = round_end_hook;
    o.hooks.central_eval = sim_eval;
    o.hooks.hook_ctx = s;
    int rc = sl_engine_new(&s->e, &o);
    CHECK_MSG(rc == 0, "engine_new: %s", sl_last_error());
    s->cl = calloc(n, sizeof *s->cl);
    for (size_t i = 0; i < n; i++) {
        s->cl[i].id = 1000 + i * 3; /* ids not in index order */
        s->cl[i].sim = s;
        sl_client_opts_t co = {.client_id = s->cl[i].id,
                               .dim = DIM,
                               .layout = 0x1234,
                               .train_examples = examples_of(s->cl[i].id),
                               .test_examples = 2,
                               .n_modalities = 1,
                               .modalities = {"acc"},
                               .scratch = s->scratch,
                               .ctx = &s->cl[i],
                               .train = sim_train,
                               .evaluate = sim_eval};
        if (agg && agg->secure) {
            co.masked = cl_masked;
            co.secagg = cl_secagg;
        }
        CHECK(sl_client_new(&s->cl[i].c, &co) == 0);
        CHECK(sl_client_start(s->cl[i].c, 0) == 0);
        route_client(s, i, 0);
    }
}

static void sim_free(sim_t *s)
{
    for (size_t i = 0; i < s->nev; i++) {
        free(s->ev[i].hdr);
        free(s->ev[i].pay);
    }
    free(s->ev);
    for (size_t i = 0; i < s->n; i++)
        sl_client_destroy(&s->cl[i].c);
    free(s->cl);
    free(s->scratch);
    sl_engine_destroy(&s->e);
}

static int sim_done(const sim_t *s)
{
    sl_engine_state_t st = sl_engine_state(s->e);
    if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
        return 1;
    return s->stop_after && sl_engine_rounds_completed(s->e) >= s->stop_after;
}

/* Observe sampled clients of the round just started (TASK messages in the outbox). */
static void observe_tasks(sim_t *s)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(s->e, &o);
    for (size_t i = 0; i < n; i++) {
        sl_msg_t m;
        if (sl_wire_decode(o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, NULL, &m) != 0)
            continue;
        if (m.type != SL_MSG_TASK || m.round >= 64)
            continue;
        size_t r = (size_t)m.round;
        if (m.task.attempt == 0 && s->nsampled[r] < 1024)
            s->sampled_ids[r][s->nsampled[r]++] = o[i].client;
        int b = behaviour(s, o[i].client, m.round);
        if (b == B_NORMAL || b == B_DUP)
            s->accepted_ids[r][s->naccepted[r]++] = o[i].client;
        if (b == B_DUP)
            s->expected_late++;
    }
}

static int sim_run(sim_t *s, double max_time)
{
    int rc = sl_engine_tick(s->e, s->now);
    observe_tasks(s);
    route_engine(s);
    while (!sim_done(s) && s->now < max_time) {
        /* next event */
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < s->nev; i++)
            if (best == SIZE_MAX || s->ev[i].t < s->ev[best].t ||
                (s->ev[i].t == s->ev[best].t && s->ev[i].seq < s->ev[best].seq))
                best = i;
        double dl = sl_engine_next_deadline(s->e);
        if (best == SIZE_MAX || dl < s->ev[best].t) {
            if (!isfinite(dl))
                break;
            s->now = dl;
            rc = sl_engine_tick(s->e, s->now);
            observe_tasks(s);
            route_engine(s);
            if (rc)
                break;
            continue;
        }
        ev_t ev = s->ev[best];
        s->ev[best] = s->ev[--s->nev];
        s->now = ev.t;
        if (ev.to_engine) {
            if (ev.late && sl_engine_state(s->e) == SL_ENGINE_ROUND)
                s->expected_late += 0; /* counted at observation time for dups; stragglers below */
            sl_peer_t p = peer_of(ev.client);
            sl_msg_t um;
            if (sl_wire_decode(ev.hdr, ev.hlen, (const uint8_t *)ev.pay, ev.plen, NULL, &um) == 0 &&
                um.type == SL_MSG_UPDATE && !ev.late)
                s->updates_in++;
            rc = sl_engine_on_message(s->e, &p, ev.hdr, ev.hlen, (const uint8_t *)ev.pay, ev.plen, s->now);
            observe_tasks(s);
            route_engine(s);
            if (!rc) {
                rc = sl_engine_tick(s->e, s->now);
                observe_tasks(s);
                route_engine(s);
            }
        } else {
            sl_msg_t m;
            uint64_t task_round = 0;
            if (sl_wire_decode(ev.hdr, ev.hlen, (const uint8_t *)ev.pay, ev.plen, NULL, &m) == 0 &&
                (m.type == SL_MSG_TASK))
                task_round = m.round;
            rc = sl_client_on_message(s->cl[ev.client].c, ev.hdr, ev.hlen, (const uint8_t *)ev.pay, ev.plen,
                                      s->now);
            CHECK_MSG(rc == 0, "client: %s", sl_last_error());
            route_client(s, ev.client, task_round);
            rc = 0;
        }
        free(ev.hdr);
        free(ev.pay);
        if (rc)
            break;
    }
    /* deliver what is still in flight to the clients (the BYEs) */
    if (!s->stop_after) {
        for (size_t i = 0; i < s->nev; i++) {
            if (!s->ev[i].to_engine)
                CHECK(sl_client_on_message(s->cl[s->ev[i].client].c, s->ev[i].hdr, s->ev[i].hlen,
                                           (const uint8_t *)s->ev[i].pay, s->ev[i].plen, s->now) == 0);
        }
    }
    return rc;
}

/* ---- a fake secure aggregator: exercises the SecAgg extension path end to end ---------- */

typedef struct {
    double sum[DIM];
    size_t count, expected;
    uint64_t round;
    size_t downs;
} fakesec_t;

static int fs_begin(void *self, uint64_t round, const uint64_t *clients, size_t n, const sl_agg_emit_t *emit)
{
    fakesec_t *f = self;
    memset(f->sum, 0, sizeof f->sum);
    f->count = 0;
    f->expected = n;
    f->round = round;
    uint8_t hello[4] = {'S', 'A', 'G', 0};
    for (size_t i = 0; i < n; i++) { /* stage 0: e.g. the key advertisement round */
        int rc = emit->send(emit->engine, clients[i], 0, hello, sizeof hello);
        if (rc)
            return rc;
        f->downs++;
    }
    return 0;
}

static int fs_msg(void *self, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len,
                  const sl_agg_emit_t *emit)
{
    (void)client, (void)emit;
    fakesec_t *f = self;
    if (stage != 1 || len != DIM * sizeof(float))
        return sl_error(SL_EPROTO, "fake secagg: stage %u with %zu bytes", stage, len);
    float v[DIM];
    memcpy(v, blob, sizeof v);
    for (size_t j = 0; j < DIM; j++)
        f->sum[j] += v[j];
    f->count++;
    return 0;
}

static int fs_ready(void *self)
{
    fakesec_t *f = self;
    return f->count == f->expected;
}

static int fs_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    fakesec_t *f = self;
    res->count = f->count;
    res->total_weight = (double)f->count;
    if (!f->count)
        return sl_error(SL_EQUORUM, "fake secagg: nothing");
    for (size_t j = 0; j < dim; j++)
        out[j] = (float)(f->sum[j] / (double)f->count);
    return 0;
}

static int cl_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim)
{
    (void)ctx, (void)task;
    return sl_client_send_secagg(c, 1, (const uint8_t *)delta, dim * sizeof(float));
}

static int cl_secagg(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob,
                     size_t len)
{
    (void)ctx, (void)c, (void)round;
    if (stage != 0 || len != 4 || memcmp(blob, "SAG", 4) != 0)
        return sl_error(SL_EPROTO, "unexpected stage");
    return 0;
}

static void test_secure_extension(void)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.fraction = 0.5;
    cfg.federation.rounds = 3;
    cfg.secagg.enabled = 1;
    fakesec_t *f = calloc(1, sizeof *f);
    sl_aggregator_t *agg = calloc(1, sizeof *agg);
    agg->name = "fake-secagg";
    agg->secure = 1;
    agg->self = f;
    agg->begin_round = fs_begin;
    agg->secagg_message = fs_msg;
    agg->ready = fs_ready;
    agg->finish = fs_finish;
    agg->destroy = free;
    float init[DIM] = {0};
    sim_t s;
    sim_init(&s, &cfg, 40, init, NULL, NULL, agg);
    int rc = sim_run(&s, 1e6);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(s.e), 3);
    CHECK_EQ(f->downs, 3 * 20);
    float ref[DIM] = {0}, d[DIM];
    for (uint64_t r = 1; r <= 3; r++) {
        double sum[DIM] = {0};
        for (size_t i = 0; i < s.nsampled[r]; i++) {
            for (size_t j = 0; j < DIM; j++) {
                float dj = (float)((int)((s.sampled_ids[r][i] * 31 + r * 17 + j * 7) % 9) - 4);
                d[j] = dj;
                sum[j] += d[j];
            }
        }
        for (size_t j = 0; j < DIM; j++)
            ref[j] = (float)((double)ref[j] + (double)(float)(sum[j] / (double)s.nsampled[r]));
        CHECK_EQ(s.reports[r - 1].reported, 20);
        /* the coordinator saw no vector: TASKs say sa = true and UPDATEs carried none */
    }
    CHECK(memcmp(sl_engine_global(s.e, NULL), ref, sizeof ref) == 0);
    sim_free(&s);
}

/* ---- reference FedAvg -------------------------------------------------------------------- */

static void ref_delta(uint64_t id, uint64_t round, float *d)
{
    for (size_t j = 0; j < DIM; j++)
        d[j] = (float)((int)((id * 31 + round * 17 + j * 7) % 9) - 4);
}

static void ref_fedavg_round(float *x, const uint64_t *ids, size_t n, uint64_t round, double cap)
{
    double sum[DIM] = {0}, wsum = 0;
    float d[DIM];
    for (size_t i = 0; i < n; i++) {
        double w = (double)examples_of(ids[i]);
        if (cap > 0 && w > cap)
            w = cap;
        ref_delta(ids[i], round, d);
        for (size_t j = 0; j < DIM; j++)
            sum[j] += w * d[j];
        wsum += w;
    }
    for (size_t j = 0; j < DIM; j++) {
        float mean = (float)(sum[j] / wsum);
        x[j] = (float)((double)x[j] + 1.0 * (double)mean);
    }
}

static void test_fedavg_1000(size_t max_uploads)
{
    g_max_uploads = max_uploads;
    sl_config_t cfg = base_cfg();
    cfg.federation.weight_cap = 9;
    if (max_uploads) { /* through the config key; the engine option stays 0 */
        char set[64];
        snprintf(set, sizeof set, "federation.upload_window=%zu", max_uploads);
        CHECK(sl_config_set(&cfg, set) == 0);
        g_max_uploads = 0;
    }
    float init[DIM];
    for (size_t j = 0; j < DIM; j++)
        init[j] = (float)j * 0.5f;
    sim_t s;
    sim_init(&s, &cfg, 1000, init, NULL, NULL, NULL);
    s.p_drop = 0.05;
    s.p_late = 0.05;
    s.p_dup = 0.05;
    int rc = sim_run(&s, 1e6);
    CHECK_MSG(rc == 0, "sim: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_DONE);
    CHECK(strcmp(sl_engine_status(s.e), "completed") == 0);
    CHECK_EQ(sl_engine_rounds_completed(s.e), 5);
    CHECK_EQ(s.nreports, 5);
    float ref[DIM];
    memcpy(ref, init, sizeof ref);
    size_t total_dropped = 0, total_late = 0;
    for (uint64_t r = 1; r <= 5; r++) {
        CHECK_EQ(s.nsampled[r], 100); /* ceil(0.1 * 1000) */
        /* the sample is sorted by id and has no repeats */
        int sorted = 1;
        for (size_t i = 1; i < s.nsampled[r]; i++)
            if (s.sampled_ids[r][i] <= s.sampled_ids[r][i - 1])
                sorted = 0;
        CHECK(sorted);
        ref_fedavg_round(ref, s.accepted_ids[r], s.naccepted[r], r, cfg.federation.weight_cap);
        const sl_round_report_t *rep = &s.reports[r - 1];
        CHECK_EQ(rep->round, r);
        CHECK_EQ(rep->sampled, 100);
        CHECK_EQ(rep->reported, s.naccepted[r]);
        CHECK_EQ(rep->dropped, 100 - s.naccepted[r]);
        CHECK(rep->bytes_down >= 100 * DIM * 4);
        CHECK(rep->bytes_up >= s.naccepted[r] * DIM * 4);
        /* weighted train loss against a reference */
        double ls = 0, lw = 0;
        for (size_t i = 0; i < s.naccepted[r]; i++) {
            ls += (double)(s.accepted_ids[r][i] % 5) * 0.25 * (double)examples_of(s.accepted_ids[r][i]);
            lw += (double)examples_of(s.accepted_ids[r][i]);
        }
        CHECK_NEAR(rep->train_loss, ls / lw, 1e-12);
        if (r % 2 == 0 || r == 5) { /* eval_every = 2 and the last round */
            CHECK_NEAR(rep->accuracy, 0.5, 1e-12);
            CHECK_NEAR(rep->central_accuracy, 0.75, 1e-12);
            CHECK_EQ(rep->eval_examples, 2 * s.naccepted[r]);
        } else {
            CHECK(isnan(rep->accuracy) && isnan(rep->central_accuracy));
        }
        total_dropped += rep->dropped;
        total_late += rep->late;
    }
    CHECK(total_dropped > 0);
    CHECK(total_late > 0);
    size_t dim;
    const float *g = sl_engine_global(s.e, &dim);
    CHECK_EQ(dim, DIM);
    CHECK_MSG(memcmp(g, ref, sizeof ref) == 0, "FedAvg global differs from the reference (g[0] %g ref %g)",
              (double)g[0], (double)ref[0]);
    /* final federated evaluation reached every client */
    const sl_eval_info_t *fe = sl_engine_final_eval(s.e);
    CHECK_EQ(fe->examples, 10 * 1000);
    CHECK_NEAR(fe->accuracy, 0.75, 1e-12);
    /* every client got BYE */
    size_t done = 0;
    for (size_t i = 0; i < s.n; i++)
        done += sl_client_state(s.cl[i].c) == SL_CLIENT_DONE;
    CHECK_EQ(done, 1000);
    CHECK(sl_client_rounds_done(s.cl[0].c) <= 5);
    if (max_uploads) {
        CHECK(s.grants > 400);
        CHECK_MSG(s.max_inflight <= (long)max_uploads, "%ld uploads in flight", s.max_inflight);
    }
    sim_free(&s);
    g_max_uploads = 0;
}

/* ---- quorum --------------------------------------------------------------------------------- */

static void test_quorum(int policy)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = 3;
    cfg.federation.max_retries = 2;
    cfg.federation.quorum_policy = policy;
    float init[DIM] = {0};
    sim_t s;
    sim_init(&s, &cfg, 4, init, NULL, NULL, NULL);
    s.p_drop = 1.0; /* nobody ever answers */
    int rc = sim_run(&s, 1e6);
    CHECK_EQ(rc, SL_EQUORUM);
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_FAILED);
    CHECK_CONTAINS(sl_engine_status(s.e), "round 1: 0 of 4 sampled clients reported, quorum is 3");
    if (policy == SL_QUORUM_RETRY)
        CHECK_CONTAINS(sl_engine_status(s.e), "after 2 retries");
    CHECK_EQ(sl_engine_rounds_completed(s.e), 0);
    /* clients were told */
    size_t done = 0;
    for (size_t i = 0; i < s.n; i++)
        done += sl_client_state(s.cl[i].c) == SL_CLIENT_DONE;
    CHECK_EQ(done, 4);
    sim_free(&s);
}

/* a round below quorum is retried with a new sample and then succeeds */
static void test_quorum_retry_succeeds(void)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.fraction = 0.5;
    cfg.federation.min_clients = 4;
    cfg.federation.rounds = 3;
    float init[DIM] = {0};
    sim_t s;
    sim_init(&s, &cfg, 20, init, NULL, NULL, NULL);
    s.p_drop = 0.3;
    int rc = sim_run(&s, 1e6);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(s.e), 3);
    sim_free(&s);
}

/* ---- resume --------------------------------------------------------------------------------- */

static void run_resume(int strategy)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.rounds = 6;
    cfg.federation.fraction = 0.3;
    cfg.federation.strategy = strategy;
    cfg.federation.server_lr = 0.1;
    float init[DIM];
    for (size_t j = 0; j < DIM; j++)
        init[j] = (float)j * 0.01f;
    /* A: uninterrupted */
    sim_t a;
    sim_init(&a, &cfg, 50, init, NULL, NULL, NULL);
    a.p_drop = 0.1;
    a.p_late = 0.1;
    CHECK(sim_run(&a, 1e6) == 0);
    CHECK_EQ(sl_engine_rounds_completed(a.e), 6);
    float fa[DIM];
    memcpy(fa, sl_engine_global(a.e, NULL), sizeof fa);

    /* B: stop after round 3 (run folder + checkpoint on disk), resume in a new engine */
    char dir[] = "/tmp/sl_fed_resumeXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_runlog_t *rl = NULL;
    CHECK(sl_runlog_new(&rl, &cfg, dir) == 0);
    sim_t b;
    sim_init(&b, &cfg, 50, init, NULL, rl, NULL);
    b.p_drop = 0.1;
    b.p_late = 0.1;
    b.stop_after = 3;
    CHECK(sim_run(&b, 1e6) == 0);
    CHECK_EQ(sl_engine_rounds_completed(b.e), 3);
    sim_free(&b); /* the "crash" */
    sl_checkpoint_t ck;
    int rc = sl_checkpoint_read(sl_runlog_checkpoint_path(rl), &ck);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(ck.round, 3);
    sim_t c;
    sim_init(&c, &cfg, 50, init, &ck, rl, NULL);
    c.p_drop = 0.1;
    c.p_late = 0.1;
    CHECK(sim_run(&c, 1e6) == 0);
    CHECK_EQ(sl_engine_rounds_completed(c.e), 6);
    CHECK_MSG(memcmp(sl_engine_global(c.e, NULL), fa, sizeof fa) == 0,
              "resumed %s run differs from the uninterrupted one",
              sl_config_enum_name("federation", "strategy", strategy));
    /* metrics.jsonl has one line per round across both processes */
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t lines = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f)) {
        cJSON *o = cJSON_Parse(line);
        CHECK(o != NULL);
        if (o) {
            lines++;
            CHECK(cJSON_GetObjectItem(o, "round") && cJSON_GetObjectItem(o, "sampled") &&
                  cJSON_GetObjectItem(o, "bytes_up") && cJSON_GetObjectItem(o, "round_seconds"));
            cJSON *eps = cJSON_GetObjectItem(o, "epsilon");
            CHECK(eps && cJSON_GetNumberValue(eps) == 0.125 * (double)lines);
            cJSON_Delete(o);
        }
    }
    if (f)
        fclose(f);
    CHECK_EQ(lines, 6);
    snprintf(path, sizeof path, "%s/summary.json", dir); /* written by the engine at the end */
    f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        char buf[8192];
        size_t nread = fread(buf, 1, sizeof buf - 1, f);
        buf[nread] = '\0';
        fclose(f);
        cJSON *o = cJSON_Parse(buf);
        CHECK(o && cJSON_GetObjectItem(o, "status") &&
              strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(o, "status")), "completed") == 0);
        CHECK(o && cJSON_GetNumberValue(cJSON_GetObjectItem(o, "rounds_completed")) == 6);
        cJSON_Delete(o);
    }
    snprintf(path, sizeof path, "%s/config.ini", dir);
    sl_config_t back;
    sl_config_defaults(&back);
    CHECK(sl_config_load(&back, path) == 0);
    CHECK_EQ(back.federation.rounds, 6);
    sl_checkpoint_free(&ck);
    sim_free(&c);
    sim_free(&a);
    sl_runlog_destroy(&rl);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* ---- checkpoint format ------------------------------------------------------------------------ */

static void test_checkpoint_format(void)
{
    float g[5] = {1, 2, 3, 4.5f, -1};
    uint8_t st[7] = {1, 2, 3, 4, 5, 6, 7}, ext[3] = {9, 8, 7};
    sl_checkpoint_t ck = {.round = 4,
                          .seed = 42,
                          .bytes_up = 100,
                          .bytes_down = 200,
                          .n_rng = 2,
                          .rng = {11, 22},
                          .dim = 5,
                          .global = g,
                          .strategy = st,
                          .strategy_len = 7,
                          .ext = ext,
                          .ext_len = 3};
    uint8_t *buf;
    size_t len;
    CHECK(sl_checkpoint_encode(&ck, &buf, &len) == 0);
    sl_checkpoint_t d;
    CHECK(sl_checkpoint_decode(buf, len, "ck", &d) == 0);
    CHECK(d.round == 4 && d.seed == 42 && d.n_rng == 2 && d.rng[1] == 22 && d.dim == 5);
    CHECK(memcmp(d.global, g, sizeof g) == 0 && d.strategy_len == 7 && memcmp(d.ext, ext, 3) == 0);
    sl_checkpoint_free(&d);
    /* every truncation is refused */
    int all = 1;
    for (size_t cut = 0; cut < len; cut++)
        if (sl_checkpoint_decode(buf, cut, "ck", &d) != SL_EFORMAT)
            all = 0;
    CHECK(all);
    CHECK(sl_checkpoint_decode(buf, len - 1, "ck", &d) == SL_EFORMAT);
    /* every single bit flip is refused */
    all = 1;
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x10;
        if (sl_checkpoint_decode(buf, len, "ck", &d) != SL_EFORMAT)
            all = 0;
        buf[i] ^= 0x10;
    }
    CHECK(all);
    buf[30] ^= 1;
    CHECK(sl_checkpoint_decode(buf, len, "x.ckpt", &d) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "x.ckpt: checksum mismatch");
    buf[30] ^= 1;
    buf[0] = 'X';
    CHECK(sl_checkpoint_decode(buf, len, "x.ckpt", &d) == SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "bad magic");
    free(buf);
    CHECK(sl_checkpoint_read("/nonexistent/dir/ck", &d) == SL_ENOTFOUND);
}

/* ---- strategies vs references ------------------------------------------------------------------ */

static void test_strategies(void)
{
    const size_t n = 257;
    const int kinds[] = {SL_STRAT_FEDAVG, SL_STRAT_FEDAVGM, SL_STRAT_FEDADAM, SL_STRAT_FEDYOGI,
                         SL_STRAT_FEDADAGRAD};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        sl_config_t cfg;
        sl_config_defaults(&cfg);
        cfg.federation.strategy = kinds[k];
        cfg.federation.server_lr = 0.05;
        cfg.federation.server_momentum = 0.8;
        cfg.federation.beta1 = 0.9;
        cfg.federation.beta2 = 0.99;
        cfg.federation.tau = 1e-3;
        sl_strategy_t *s = NULL;
        CHECK(sl_strategy_new(&s, &cfg, n) == 0);
        float *x = malloc(n * 4), *d = malloc(n * 4);
        double *rx = malloc(n * 8), *rm = calloc(n, 8), *rv = calloc(n, 8);
        sl_rng_t rng;
        sl_rng_init(&rng, 1, "test", k, 0);
        for (size_t i = 0; i < n; i++)
            rx[i] = x[i] = (float)sl_rng_normal(&rng);
        double maxerr = 0;
        for (int round = 1; round <= 6; round++) {
            for (size_t i = 0; i < n; i++)
                d[i] = (float)(0.1 * sl_rng_normal(&rng));
            CHECK(sl_strategy_apply(s, x, d) == 0);
            /* reference: Flower's update rules (fedopt family), in double */
            for (size_t i = 0; i < n; i++) {
                double di = d[i], eta = 0.05, b1 = 0.9, b2 = 0.99, tau = 1e-3;
                switch (kinds[k]) {
                case SL_STRAT_FEDAVG:
                    rx[i] += eta * di;
                    break;
                case SL_STRAT_FEDAVGM:
                    rm[i] = round == 1 ? di : 0.8 * rm[i] + di;
                    rx[i] += eta * rm[i];
                    break;
                case SL_STRAT_FEDADAM:
                    rm[i] = b1 * rm[i] + (1 - b1) * di;
                    rv[i] = b2 * rv[i] + (1 - b2) * di * di;
                    rx[i] += eta * rm[i] / (sqrt(rv[i]) + tau);
                    break;
                case SL_STRAT_FEDYOGI: {
                    rm[i] = b1 * rm[i] + (1 - b1) * di;
                    double sg = rv[i] - di * di > 0 ? 1 : (rv[i] - di * di < 0 ? -1 : 0);
                    rv[i] = rv[i] - (1 - b2) * di * di * sg;
                    rx[i] += eta * rm[i] / (sqrt(rv[i]) + tau);
                    break;
                }
                case SL_STRAT_FEDADAGRAD:
                    rm[i] = di; /* beta_1 = 0 */
                    rv[i] = rv[i] + di * di;
                    rx[i] += eta * rm[i] / (sqrt(rv[i]) + tau);
                    break;
                }
                double err = fabs((double)x[i] - rx[i]);
                if (err > maxerr)
                    maxerr = err;
            }
        }
        CHECK_MSG(maxerr < 1e-5, "%s: max error %g vs reference", sl_strategy_name(s), maxerr);
        /* state round trip */
        size_t sz = sl_strategy_state_size(s);
        uint8_t *buf = malloc(sz);
        CHECK(sl_strategy_save(s, buf, sz) == 0);
        sl_strategy_t *s2 = NULL;
        CHECK(sl_strategy_new(&s2, &cfg, n) == 0);
        CHECK(sl_strategy_load(s2, buf, sz) == 0);
        float *x2 = malloc(n * 4);
        memcpy(x2, x, n * 4);
        CHECK(sl_strategy_apply(s, x, d) == 0);
        CHECK(sl_strategy_apply(s2, x2, d) == 0);
        CHECK(memcmp(x, x2, n * 4) == 0);
        CHECK(sl_strategy_load(s2, buf, sz - 1) != 0);
        /* non-finite steps leave the vector untouched */
        d[3] = INFINITY;
        memcpy(x2, x, n * 4);
        CHECK(sl_strategy_apply(s, x, d) == SL_ENOTFINITE);
        CHECK(memcmp(x, x2, n * 4) == 0);
        free(buf), free(x2);
        sl_strategy_destroy(&s2);
        sl_strategy_destroy(&s);
        CHECK(s == NULL);
        free(x), free(d), free(rx), free(rm), free(rv);
    }
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_robust_aggregators(void)
{
    const size_t n = 7, dim = 33;
    float rows[7][33];
    sl_rng_t rng;
    sl_rng_init(&rng, 3, "robust", 0, 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < dim; j++)
            rows[i][j] = (float)sl_rng_normal(&rng);
    rows[2][5] = 1e6f; /* an outlier the robust aggregators ignore */
    uint64_t ids[7] = {1, 2, 3, 4, 5, 6, 7};
    for (int kind = 0; kind < 2; kind++) {
        sl_aggregator_t *a = NULL;
        CHECK((kind ? sl_aggregator_trimmed_mean_new(&a, dim, 0.2) : sl_aggregator_median_new(&a, dim)) == 0);
        CHECK(a->buffers == 1);
        CHECK(a->begin_round(a->self, 1, ids, n, NULL) == 0);
        for (size_t i = 0; i < n; i++)
            CHECK(a->add_update(a->self, ids[i], rows[i], dim, 1.0 + (double)i) == 0);
        float out[33];
        sl_agg_result_t res;
        CHECK(a->finish(a->self, out, dim, &res) == 0);
        CHECK_EQ(res.count, 7);
        double maxerr = 0;
        for (size_t j = 0; j < dim; j++) {
            float col[7];
            for (size_t i = 0; i < n; i++)
                col[i] = rows[i][j];
            qsort(col, n, sizeof col[0], cmpf);
            double ref;
            if (kind == 0) {
                ref = col[3];
            } else { /* floor(0.2 * 7) = 1 cut at each end */
                ref = 0;
                for (size_t i = 1; i < 6; i++)
                    ref += col[i];
                ref /= 5;
            }
            maxerr = fmax(maxerr, fabs(out[j] - ref));
        }
        CHECK_MSG(maxerr < 1e-6, "%s: max error %g", a->name, maxerr);
        CHECK(fabsf(out[5]) < 10);
        sl_aggregator_destroy(&a);
        CHECK(a == NULL);
    }
    /* robust aggregators are refused together with secure aggregation */
    sl_config_t cfg = base_cfg();
    cfg.federation.strategy = SL_STRAT_MEDIAN;
    cfg.secagg.enabled = 1;
    float init[DIM] = {0};
    sl_engine_t *e = NULL;
    sl_engine_opts_t o = {.cfg = &cfg, .dim = DIM, .init = init};
    CHECK(sl_engine_new(&e, &o) == SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "secure aggregation");
    /* the streaming mean: weighted, exact on small integers */
    sl_aggregator_t *m = NULL;
    CHECK(sl_aggregator_mean_new(&m, 3) == 0);
    CHECK(m->buffers == 0);
    CHECK(m->begin_round(m->self, 1, ids, 3, NULL) == 0);
    float u1[3] = {1, 2, 3}, u2[3] = {4, 5, 6};
    CHECK(m->add_update(m->self, 1, u1, 3, 1) == 0);
    CHECK(m->add_update(m->self, 2, u2, 3, 3) == 0);
    float out[3];
    sl_agg_result_t res;
    CHECK(m->finish(m->self, out, 3, &res) == 0);
    CHECK(out[0] == 3.25f && out[1] == 4.25f && out[2] == 5.25f && res.total_weight == 4);
    CHECK(m->begin_round(m->self, 2, ids, 3, NULL) == 0);
    CHECK(m->finish(m->self, out, 3, &res) == SL_EQUORUM);
    sl_aggregator_destroy(&m);
}

/* The streaming mean does not depend on arrival order (exact fixed-point sum), and agrees
 * with a long-double reference. */
static void test_mean_order_independent(void)
{
    enum { N = 200, D = 1000 };
    float *rows = malloc((size_t)N * D * sizeof *rows);
    double w[N];
    sl_rng_t rng;
    sl_rng_init(&rng, 5, "order", 0, 0);
    for (size_t i = 0; i < N; i++) {
        w[i] = 1.0 + (double)sl_rng_below(&rng, 500);
        for (size_t j = 0; j < D; j++) /* magnitudes from 1e-6 to 1e2 */
            rows[i * D + j] = (float)(sl_rng_normal(&rng) * pow(10.0, -6.0 + 8.0 * sl_rng_uniform(&rng)));
    }
    float out[2][D];
    uint64_t ids[N];
    for (size_t i = 0; i < N; i++)
        ids[i] = i + 1;
    for (int pass = 0; pass < 2; pass++) {
        sl_aggregator_t *a = NULL;
        CHECK(sl_aggregator_mean_new(&a, D) == 0);
        CHECK(a->begin_round(a->self, 1, ids, N, NULL) == 0);
        size_t order[N];
        for (size_t i = 0; i < N; i++)
            order[i] = i;
        if (pass == 1)
            sl_rng_shuffle_size(&rng, order, N);
        for (size_t k = 0; k < N; k++)
            CHECK(a->add_update(a->self, ids[order[k]], rows + order[k] * D, D, w[order[k]]) == 0);
        sl_agg_result_t res;
        CHECK(a->finish(a->self, out[pass], D, &res) == 0);
        sl_aggregator_destroy(&a);
    }
    CHECK(memcmp(out[0], out[1], sizeof out[0]) == 0);
    double maxrel = 0;
    for (size_t j = 0; j < D; j++) {
        long double s = 0, ws = 0;
        for (size_t i = 0; i < N; i++) {
            s += (long double)w[i] * rows[i * D + j];
            ws += w[i];
        }
        double ref = (double)(s / ws);
        double scale = 0;
        for (size_t i = 0; i < N; i++)
            scale = fmax(scale, fabs((double)rows[i * D + j]));
        maxrel = fmax(maxrel, fabs((double)out[0][j] - ref) / scale);
    }
    CHECK_MSG(maxrel < 1e-7, "max error %g relative to the largest input", maxrel);
    /* an absurd value is refused without touching the sum */
    sl_aggregator_t *a = NULL;
    CHECK(sl_aggregator_mean_new(&a, 2) == 0);
    CHECK(a->begin_round(a->self, 1, ids, 2, NULL) == 0);
    float big[2] = {1, 3e38f}, ok[2] = {1, 2};
    CHECK(a->add_update(a->self, 1, big, 2, 1000) == SL_ERANGE);
    CHECK(a->add_update(a->self, 2, ok, 2, 1) == 0);
    float o2[2];
    sl_agg_result_t r2;
    CHECK(a->finish(a->self, o2, 2, &r2) == 0);
    CHECK(o2[0] == 1 && o2[1] == 2 && r2.count == 1);
    sl_aggregator_destroy(&a);
    free(rows);
}

/* ---- the engine's edge: protocol violations --------------------------------------------------------- */

static size_t outbox_find(sl_engine_t *e, int type, sl_msg_t *found)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(e, &o), hits = 0;
    for (size_t i = 0; i < n; i++) {
        sl_msg_t m;
        if (sl_wire_decode(o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, NULL, &m) == 0 &&
            (int)m.type == type) {
            hits++;
            if (found)
                *found = m;
        }
    }
    return hits;
}

static void feed(sl_engine_t *e, const sl_peer_t *p, const sl_msg_t *m, double now)
{
    sl_wire_buf_t b = {0};
    CHECK_MSG(sl_wire_encode(m, &b) == 0, "%s", sl_last_error());
    const uint8_t *pay = sl_msg_payload_kind(m->type) == 1 && m->n ? (const uint8_t *)m->vec : NULL;
    size_t plen = pay ? (size_t)m->n * 4 : 0;
    CHECK(sl_engine_on_message(e, p, b.data, b.len, pay, plen, now) == 0);
    sl_wire_buf_free(&b);
}

static void hello(sl_engine_t *e, const sl_peer_t *p, uint64_t id, uint64_t dim, double now)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_HELLO, 0, id);
    m.hello.dim = dim;
    m.hello.train_examples = 10;
    feed(e, p, &m, now);
}

static void test_engine_edge(void)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.fraction = 1;
    cfg.net.max_invalid_messages = 3;
    cfg.net.max_messages_per_second = 5;
    cfg.federation.update_norm_bound = 10;
    float init[DIM] = {0};
    sl_engine_t *e = NULL;
    sl_engine_opts_t o = {.cfg = &cfg, .dim = DIM, .init = init, .start_clients = 2};
    CHECK(sl_engine_new(&e, &o) == 0);
    sl_peer_t pa = peer_of(1), pb = peer_of(2), pr = peer_of(9);
    sl_msg_t m, got;
    /* unregistered peer */
    sl_msg_init(&m, SL_MSG_HEARTBEAT, 0, 77);
    feed(e, &pr, &m, 0.0);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK(got.code == SL_WERR_NOT_REGISTERED);
    /* garbage */
    uint8_t junk[5] = {0xde, 0xad, 0xbe, 0xef, 0x00};
    CHECK(sl_engine_on_message(e, &pr, junk, sizeof junk, NULL, 0, 0.0) == 0);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK(got.code == SL_WERR_MALFORMED);
    /* wrong layout */
    hello(e, &pr, 77, DIM + 1, 0.0);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK(got.code == SL_WERR_LAYOUT);
    CHECK_CONTAINS(got.why, "model layout differs");
    /* two good clients -> round 1 starts */
    hello(e, &pa, 1, DIM, 0.0);
    CHECK_EQ(outbox_find(e, SL_MSG_WELCOME, NULL), 1);
    hello(e, &pb, 2, DIM, 0.0);
    CHECK(sl_engine_tick(e, 0.1) == 0);
    CHECK_EQ(outbox_find(e, SL_MSG_TASK, NULL), 2);
    CHECK_EQ(sl_engine_state(e), SL_ENGINE_ROUND);
    float d[DIM];
    for (size_t j = 0; j < DIM; j++)
        d[j] = 1.0f;
    /* update for a future round */
    sl_msg_init(&m, SL_MSG_UPDATE, 5, 1);
    m.n = DIM;
    m.vec = d;
    m.update.examples = 3;
    feed(e, &pa, &m, 0.2);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK_CONTAINS(got.why, "future round");
    /* sender id that is not the registration */
    m.round = 1;
    m.sender = 2;
    feed(e, &pa, &m, 0.3);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK_CONTAINS(got.why, "sender id");
    /* update norm above the bound (sqrt(48) * 2 > 10) is rejected */
    for (size_t j = 0; j < DIM; j++)
        d[j] = 2.0f;
    m.sender = 2;
    feed(e, &pb, &m, 0.4);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK_CONTAINS(got.why, "norm");
    /* client 1: third strike (future round, wrong sender, now garbage) -> refused */
    CHECK(sl_engine_on_message(e, &pa, junk, sizeof junk, NULL, 0, 0.5) == 0);
    sl_msg_init(&m, SL_MSG_HEARTBEAT, 1, 1);
    feed(e, &pa, &m, 0.6);
    CHECK_EQ(sl_engine_outbox(e, &(const sl_outmsg_t *){NULL}), 0); /* banned: silence */
    /* after the cool-down it may register again */
    hello(e, &pa, 1, DIM, 0.7 + cfg.net.cooldown_seconds);
    CHECK_EQ(outbox_find(e, SL_MSG_WELCOME, NULL), 1);
    CHECK_EQ(outbox_find(e, SL_MSG_TASK, NULL), 1); /* it is still sampled in this round */
    /* rate limit: 5 messages per second */
    size_t replies = 0;
    for (int i = 0; i < 10; i++) {
        sl_msg_init(&m, SL_MSG_HEARTBEAT, 1, 2);
        feed(e, &pb, &m, 100.0 + 0.01 * i);
        replies += outbox_find(e, SL_MSG_HEARTBEAT, NULL);
    }
    CHECK_EQ(replies, 5);
    sl_engine_destroy(&e);
    CHECK(e == NULL);
}

/* An update the aggregator cannot take (absurd weight) is refused; the run goes on. */
static void test_absurd_update(void)
{
    sl_config_t cfg = base_cfg();
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = 1;
    cfg.federation.rounds = 1;
    float init[DIM] = {0};
    sl_engine_t *e = NULL;
    sl_engine_opts_t o = {.cfg = &cfg, .dim = DIM, .init = init, .start_clients = 2};
    CHECK(sl_engine_new(&e, &o) == 0);
    sl_peer_t pa = peer_of(1), pb = peer_of(2);
    hello(e, &pa, 1, DIM, 0.0);
    hello(e, &pb, 2, DIM, 0.0);
    CHECK(sl_engine_tick(e, 0.1) == 0);
    float d[DIM];
    for (size_t j = 0; j < DIM; j++)
        d[j] = 1.0f;
    sl_msg_t m, got;
    sl_msg_init(&m, SL_MSG_UPDATE, 1, 1);
    m.n = DIM;
    m.vec = d;
    m.update.examples = (uint64_t)1e15;
    feed(e, &pa, &m, 0.2);
    CHECK_EQ(outbox_find(e, SL_MSG_ERROR, &got), 1);
    CHECK_CONTAINS(got.why, "update refused");
    CHECK_EQ(sl_engine_state(e), SL_ENGINE_ROUND);
    m.sender = 2;
    m.update.examples = 5;
    feed(e, &pb, &m, 0.3);
    CHECK_EQ(sl_engine_state(e), SL_ENGINE_DONE);
    CHECK(sl_engine_last_report(e) && sl_engine_last_report(e)->reported == 1 &&
          sl_engine_last_report(e)->rejected == 1);
    CHECK(sl_engine_global(e, NULL)[0] == 1.0f);
    sl_engine_destroy(&e);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    test_checkpoint_format();
    test_strategies();
    test_robust_aggregators();
    test_mean_order_independent();
    test_engine_edge();
    test_absurd_update();
    test_fedavg_1000(0);
    test_fedavg_1000(8); /* upload credits: same result, at most 8 uploads in flight */
    test_quorum(SL_QUORUM_RETRY);
    test_quorum(SL_QUORUM_FAIL);
    test_quorum_retry_succeeds();
    run_resume(SL_STRAT_FEDAVG);
    run_resume(SL_STRAT_FEDADAM);
    run_resume(SL_STRAT_FEDAVGM);
    test_secure_extension();
    return check_summary("test_engine");
}
