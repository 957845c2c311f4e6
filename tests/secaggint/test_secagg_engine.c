/* SecAgg+ through the round engine, in process: the real engine with the real secure
 * aggregator (coordinator/secagg) and 10..30 real sl_client state machines with the real
 * hooks (client/secagg). Checks: the aggregate equals the plain FedAvg mean within the
 * quantization error; clients dropping at the masked-input stage leave the survivors' mean;
 * below the threshold the round fails cleanly and the retry completes it. The per-stage
 * metrics (rep->secagg) are exact: bytes equal the blobs that went through, dropouts the
 * injected ones, stage times the known deadlines on the virtual clock; the engine's next
 * deadline is the stage deadline; a client the engine sees leave (peer_gone) closes its
 * stage at once instead of at the deadline. */
#include "client/client.h"
#include "client/secagg.h"
#include "coordinator/engine.h"
#include "coordinator/secagg.h"
#include "core/log.h"
#include "privacy/secagg/wire.h"
#include "support/check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIM 64

typedef struct {
    int to_engine;
    size_t client;
    uint8_t *hdr, *pay;
    size_t hlen, plen;
} ev_t;

typedef struct {
    uint64_t id;
    sl_client_t *c;
    sl_client_secagg_t *cs;
    uint32_t drop_at; /* SecAgg message at which it drops out in drop_round (first session); 0 = never */
    int sessions;  /* SETUPs seen in drop_round */
    int gone;      /* silent until the next SETUP */
} simcl_t;

typedef struct {
    sl_engine_t *e;
    simcl_t *cl;
    size_t n;
    ev_t *ev;
    size_t head, nev, cap;
    double now;
    uint64_t drop_round;
    size_t dropped_at_masked;             /* clients that vanished (at whatever stage) */
    int report_gone;                      /* how the engine learns that a client vanished: GONE_* */
    size_t updates, update_payload_bytes; /* UPDATEs seen, bytes of vector they carried */
    /* SecAgg blob bytes per stage of the latest session, as the wire carried them */
    uint64_t wire_up[SL_SECAGG_NSTAGES], wire_down[SL_SECAGG_NSTAGES];
    int last_down_stage, last_down_type;
    double idle_deadlines[16]; /* distinct next_deadline values while idle in a round */
    size_t n_idle;
} sim_t;

enum {
    GONE_SILENT = 0, /* it never hears of it: the stage deadlines drop the client */
    GONE_PEER,       /* the transport lost it: sl_engine_peer_gone */
    GONE_ERROR,      /* its last words are an ERROR message */
    GONE_BANNED,     /* it sends garbage until the engine bans it */
};

/* Stage of a SecAgg message type: SETUP/ADVERTISE 0 .. UNMASK_REQ/UNMASK_RESP 3, -1 else. */
static int type_stage(uint32_t type)
{
    return type >= SL_SECAGG_MSG_SETUP && type <= SL_SECAGG_MSG_UNMASK_RESP ? (int)(type - 1) / 2 : -1;
}

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

static int cl_masked(void *ctx, sl_client_t *c, const sl_client_task_t *task, const float *delta, size_t dim)
{
    return sl_client_secagg_masked(((simcl_t *)ctx)->cs, c, task, delta, dim);
}

static int cl_secagg(void *ctx, sl_client_t *c, uint64_t round, uint32_t stage, const uint8_t *blob, size_t len)
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

/* Count a SECAGG_DOWN blob: a new session (SETUP after anything else) restarts the counts;
 * ABORT notices belong to the stage whose close sent them, i.e. the latest stage seen. */
static void count_down(sim_t *s, const sl_outmsg_t *o)
{
    sl_msg_t m;
    if (sl_wire_decode(o->header, o->header_len, o->payload, o->payload_len, NULL, &m) != 0 ||
        m.type != SL_MSG_SECAGG_DOWN || m.n < 6)
        return;
    uint32_t type = m.blob[5];
    if (type == SL_SECAGG_MSG_SETUP && s->last_down_type != SL_SECAGG_MSG_SETUP) {
        memset(s->wire_up, 0, sizeof s->wire_up);
        memset(s->wire_down, 0, sizeof s->wire_down);
    }
    s->last_down_type = (int)type;
    int st = type_stage(type);
    if (st >= 0)
        s->last_down_stage = st;
    s->wire_down[st >= 0 ? st : s->last_down_stage] += m.n;
}

static void route_engine(sim_t *s)
{
    const sl_outmsg_t *o;
    size_t n = sl_engine_outbox(s->e, &o);
    for (size_t i = 0; i < n; i++) {
        count_down(s, &o[i]);
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
        if (sl_wire_decode(o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, NULL, &m) == 0 &&
            m.type == SL_MSG_UPDATE) {
            s->updates++;
            s->update_payload_bytes += o[i].payload_len;
        }
        if (sl_wire_decode(o[i].header, o[i].header_len, o[i].payload, o[i].payload_len, NULL, &m) == 0 &&
            m.type == SL_MSG_SECAGG_UP && m.n >= 6 && type_stage(m.blob[5]) >= 0)
            s->wire_up[type_stage(m.blob[5])] += m.n;
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
        if (m.round == s->drop_round)
            sc->sessions++;
    }
    if (sc->drop_at && m.round == s->drop_round && sc->sessions == 1 && m.stage == sc->drop_at && !sc->gone) {
        sc->gone = 1;
        s->dropped_at_masked++;
        sl_peer_t p = peer_of(c);
        if (s->report_gone == GONE_PEER) {
            CHECK(sl_engine_peer_gone(s->e, &p, s->now) == 0);
        } else if (s->report_gone == GONE_ERROR) {
            sl_msg_t m2;
            sl_msg_init(&m2, SL_MSG_ERROR, m.round, sc->id);
            m2.code = SL_WERR_INTERNAL;
            snprintf(m2.why, sizeof m2.why, "%s", "the client gives up");
            sl_wire_buf_t b = {0};
            CHECK(sl_wire_encode(&m2, &b) == 0);
            CHECK(sl_engine_on_message(s->e, &p, b.data, b.len, NULL, 0, s->now) == 0);
            sl_wire_buf_free(&b);
        } else if (s->report_gone == GONE_BANNED) {
            static const uint8_t junk[5] = {0xde, 0xad, 0xbe, 0xef, 0x00};
            for (int i = 0; i < 5; i++) /* net.max_invalid_messages = 5 */
                CHECK(sl_engine_on_message(s->e, &p, junk, sizeof junk, NULL, 0, s->now) == 0);
        }
        if (s->report_gone != GONE_SILENT) /* (routing twice would repeat the last outbox) */
            route_engine(s);
    }
    return sc->gone;
}

static const sl_config_t *g_client_cfg; /* NULL = the coordinator's */

static void sim_init(sim_t *s, const sl_config_t *cfg, size_t n, sl_aggregator_t *agg)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    float init[DIM] = {0};
    sl_engine_opts_t o = {.cfg = cfg, .dim = DIM, .init = init, .layout = 0x77, .start_clients = n, .aggregator = agg};
    int rc = sl_engine_new(&s->e, &o);
    CHECK_MSG(rc == 0, "engine_new: %s", sl_last_error());
    s->cl = calloc(n, sizeof *s->cl);
    for (size_t i = 0; i < n; i++) {
        s->cl[i].id = 500 + 7 * i;
        CHECK(sl_client_secagg_new(&s->cl[i].cs, g_client_cfg ? g_client_cfg : cfg) == 0);
        sl_client_opts_t co = {.client_id = s->cl[i].id,
                               .dim = DIM,
                               .layout = 0x77,
                               .train_examples = 10,
                               .test_examples = 2,
                               .n_modalities = 1,
                               .modalities = {"acc"},
                               .ctx = &s->cl[i],
                               .train = cl_train,
                               .masked = cl_masked,
                               .secagg = cl_secagg};
        CHECK(sl_client_new(&s->cl[i].c, &co) == 0);
        CHECK(sl_client_start(s->cl[i].c, 0) == 0);
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
    free(s->cl);
    sl_engine_destroy(&s->e);
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
            if (st == SL_ENGINE_ROUND && s->n_idle < 16 &&
                (!s->n_idle || s->idle_deadlines[s->n_idle - 1] != dl))
                s->idle_deadlines[s->n_idle++] = dl;
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

static sl_config_t base_cfg(size_t rounds)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    cfg.run.seed = 3;
    cfg.federation.rounds = (int64_t)rounds;
    cfg.federation.fraction = 1.0;
    cfg.federation.min_clients = 2;
    cfg.federation.round_timeout = 40;
    cfg.federation.eval_every = 0;
    cfg.federation.quorum_policy = SL_QUORUM_RETRY;
    cfg.federation.max_retries = 2;
    cfg.net.heartbeat_ms = 3600000;
    cfg.net.max_messages_per_second = 1000000;
    cfg.secagg.enabled = 1;
    cfg.dp.clip = 1.0;
    return cfg;
}

/* Plain mean over the clients for which keep(i) holds, of `round`. */
static void ref_mean(const sim_t *s, uint64_t round, const int *excluded, double *out)
{
    size_t cnt = 0;
    for (size_t j = 0; j < DIM; j++)
        out[j] = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (excluded && excluded[i])
            continue;
        cnt++;
        for (size_t j = 0; j < DIM; j++)
            out[j] += (double)delta_of(s->cl[i].id, round, j);
    }
    for (size_t j = 0; j < DIM; j++)
        out[j] /= (double)cnt;
}

/* Every client, two rounds: global = mean(round 1) + mean(round 2). */
static void test_full(size_t n)
{
    sl_config_t cfg = base_cfg(2);
    sl_aggregator_t *agg = NULL;
    CHECK(sl_aggregator_secagg_new(&agg, &cfg, DIM) == 0);
    sim_t s;
    sim_init(&s, &cfg, n, agg);
    int rc = sim_run(&s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_DONE);
    CHECK_EQ(sl_engine_rounds_completed(s.e), 2);
    double m1[DIM], m2[DIM], err = 0;
    ref_mean(&s, 1, NULL, m1);
    ref_mean(&s, 2, NULL, m2);
    const float *g = sl_engine_global(s.e, NULL);
    for (size_t j = 0; j < DIM; j++)
        err = fmax(err, fabs((double)g[j] - (m1[j] + m2[j])));
    CHECK_MSG(err < 1e-5, "n=%zu: max error %.3g", n, err);
    /* the coordinator never saw a vector: every UPDATE carried statistics only */
    CHECK_EQ(s.updates, 2 * n);
    CHECK_EQ(s.update_payload_bytes, 0);
    sim_free(&s);
}

/* `ndrop` clients vanish in round 1 when `stage` reaches them (FORWARD: the masked-input
 * stage opens; UNMASK_REQ: after their masked input, so above = 2: still in the mean). above
 * = 1: the survivors are enough and the round's mean is theirs; above = 0: the round aborts, fails
 * cleanly and its retry (everyone back) completes with the full mean. */
static void test_drop(size_t n, size_t ndrop, uint32_t stage, int above)
{
    sl_config_t cfg = base_cfg(1);
    sl_aggregator_t *agg = NULL;
    CHECK(sl_aggregator_secagg_new(&agg, &cfg, DIM) == 0);
    sim_t s;
    sim_init(&s, &cfg, n, agg);
    s.drop_round = 1;
    int *ex = calloc(n, sizeof *ex);
    for (size_t i = 0; i < ndrop; i++) {
        size_t k = (i * 7 + 3) % n;
        while (s.cl[k].drop_at)
            k = (k + 1) % n;
        s.cl[k].drop_at = stage;
        ex[k] = 1;
    }
    int rc = sim_run(&s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_DONE);
    CHECK_EQ(sl_engine_rounds_completed(s.e), 1);
    CHECK_EQ(s.dropped_at_masked, ndrop);
    for (size_t i = 0; i < n; i++) /* below the threshold the round ran a second session */
        CHECK_EQ(s.cl[i].sessions, above ? 1 : 2);
    double m[DIM], err = 0;
    ref_mean(&s, 1, above == 1 ? ex : NULL, m);
    const float *g = sl_engine_global(s.e, NULL);
    for (size_t j = 0; j < DIM; j++)
        err = fmax(err, fabs((double)g[j] - m[j]));
    CHECK_MSG(err < 1e-5, "n=%zu drop=%zu: max error %.3g", n, ndrop, err);
    const sl_round_report_t *rep = sl_engine_last_report(s.e);
    if (rep && !above) { /* the completed retry says that the first attempt aborted, and why */
        CHECK_EQ(rep->secagg.aborted_attempts, 1);
        CHECK_EQ(rep->attempt, 1);
        CHECK_CONTAINS(rep->secagg.last_abort, "masked inputs arrived");
        CHECK_EQ(rep->secagg.included, n);
    }
    free(ex);
    sim_free(&s);
}

/* JSON number at obj.a.b (NAN if absent). */
static double json_num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

/* Per-stage metrics of one round of n = 20 with two clients vanishing at each stage (at
 * SETUP, KEYS, FORWARD, UNMASK_REQ). Silent (GONE_SILENT): each stage waits for its
 * deadline (T = 40: advertise and share keys T/8 = 5 s, masked input until 3T/4 = 30 s,
 * unmasking closes on its threshold at once, then T/16 = 2.5 s of grace for the two
 * missing answers, then the round deadline for the UPDATEs that never came), and the
 * engine's next deadline is exactly each of those. When the engine hears of it (the
 * transport lost the client, it sent ERROR, or it got itself banned): every stage closes
 * as soon as the others answered, the whole round takes no (virtual) time. Either
 * way: entered 20/18/16/14, dropped 2 per stage, 14 inputs in the sum (the mean of the 14),
 * bytes equal to the blobs the wire carried, per stage and direction. */
static void test_stage_metrics(int report_gone)
{
    enum { N = 20 };
    sl_config_t cfg = base_cfg(1);
    sl_aggregator_t *agg = NULL;
    CHECK(sl_aggregator_secagg_new(&agg, &cfg, DIM) == 0);
    sim_t s;
    sim_init(&s, &cfg, N, agg);
    s.drop_round = 1;
    s.report_gone = report_gone;
    static const uint32_t at[] = {SL_SECAGG_MSG_SETUP, SL_SECAGG_MSG_KEYS, SL_SECAGG_MSG_FORWARD,
                                  SL_SECAGG_MSG_UNMASK_REQ};
    int ex[N] = {0};
    for (int st = 0; st < 4; st++)
        for (int j = 0; j < 2; j++) {
            size_t k = (size_t)(1 + 4 * st + j); /* 1,2  5,6  9,10  13,14 */
            s.cl[k].drop_at = at[st];
            ex[k] = st < 3; /* vanishing after the masked input still counts */
        }
    int rc = sim_run(&s, 1e4);
    CHECK_MSG(rc == 0, "run: %s", sl_last_error());
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_DONE);
    CHECK_EQ(s.dropped_at_masked, 8);
    const sl_round_report_t *rep = sl_engine_last_report(s.e);
    CHECK(rep != NULL);
    if (!rep) {
        sim_free(&s);
        return;
    }
    const sl_secagg_report_t *sa = &rep->secagg;
    CHECK_EQ(sa->on, 1);
    CHECK_EQ(sa->completed, 1);
    CHECK_EQ(sa->included, 14);
    CHECK_EQ(rep->reported, 14);
    CHECK_EQ(sa->aborted_attempts, 0);
    static const size_t entered[4] = {20, 18, 16, 14};
    const double silent[4] = {5.0, 5.0, 20.0, 0.0};
    double total = 0;
    for (int i = 0; i < 4; i++) {
        const sl_secagg_stage_report_t *st = &sa->stage[i];
        CHECK_EQ(st->entered, entered[i]);
        CHECK_EQ(st->dropped, 2);
        CHECK_MSG(st->bytes_up == s.wire_up[i] && st->bytes_up > 0, "stage %d: %llu bytes up, the wire %llu",
                  i, (unsigned long long)st->bytes_up, (unsigned long long)s.wire_up[i]);
        CHECK_MSG(st->bytes_down == s.wire_down[i] && st->bytes_down > 0,
                  "stage %d: %llu bytes down, the wire %llu", i, (unsigned long long)st->bytes_down,
                  (unsigned long long)s.wire_down[i]);
        CHECK_MSG(st->seconds == (report_gone ? 0.0 : silent[i]), "stage %d took %g s", i, st->seconds);
        total += st->seconds;
    }
    CHECK(total <= rep->round_seconds);
    CHECK_EQ(rep->round_seconds, report_gone ? 0.0 : 40.0);
    if (report_gone) {
        CHECK_EQ(s.n_idle, 0); /* never waited */
    } else {
        static const double want[] = {5.0, 10.0, 30.0, 32.5, 40.0};
        CHECK_EQ(s.n_idle, 5);
        for (size_t i = 0; i < 5 && i < s.n_idle; i++)
            CHECK_MSG(s.idle_deadlines[i] == want[i], "next deadline %zu: %g, want %g", i,
                      s.idle_deadlines[i], want[i]);
    }
    /* the aggregator's own view agrees with the report */
    sl_secagg_report_t direct;
    CHECK(sl_aggregator_secagg_stats(agg, &direct) == 0);
    CHECK(memcmp(&direct.stage, &sa->stage, sizeof direct.stage) == 0);
    /* the metrics line */
    char *js = NULL;
    CHECK(sl_round_report_json(rep, &js) == 0);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, "secagg");
    CHECK(j != NULL);
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "status")) &&
          strcmp(cJSON_GetObjectItemCaseSensitive(j, "status")->valuestring, "completed") == 0);
    CHECK_EQ(json_num(j, "included", NULL), 14.0);
    CHECK_EQ(json_num(j, "masked_input", "dropped"), 2.0);
    CHECK_EQ(json_num(j, "advertise_keys", "entered"), 20.0);
    CHECK_EQ(json_num(j, "unmasking", "bytes_up"), (double)sa->stage[3].bytes_up);
    CHECK_EQ(json_num(j, "share_keys", "seconds"), report_gone ? 0.0 : 5.0);
    cJSON_Delete(o);
    free(js);
    double m[DIM], err = 0;
    ref_mean(&s, 1, ex, m);
    const float *g = sl_engine_global(s.e, NULL);
    for (size_t jj = 0; jj < DIM; jj++)
        err = fmax(err, fabs((double)g[jj] - m[jj]));
    CHECK_MSG(err < 1e-5, "max error %.3g", err);
    sim_free(&s);
}

/* Clients quantize with other parameters ([secagg] bits 16 vs 32): every client refuses
 * its input (B mismatch with SETUP), each attempt aborts at the masked-input deadline, and
 * after the retries the run fails with SL_EQUORUM instead of aggregating garbage. */
static void test_mismatch(void)
{
    sl_config_t cfg = base_cfg(1), ccfg = base_cfg(1);
    ccfg.secagg.bits = 16;
    sl_aggregator_t *agg = NULL;
    CHECK(sl_aggregator_secagg_new(&agg, &cfg, DIM) == 0);
    g_client_cfg = &ccfg;
    sim_t s;
    sim_init(&s, &cfg, 10, agg);
    int rc = sim_run(&s, 1e4);
    g_client_cfg = NULL;
    CHECK_EQ(rc, SL_EQUORUM);
    CHECK_EQ(sl_engine_state(s.e), SL_ENGINE_FAILED);
    CHECK_EQ(sl_engine_rounds_completed(s.e), 0);
    const float *g = sl_engine_global(s.e, NULL);
    for (size_t j = 0; j < DIM; j++)
        CHECK_EQ(g[j], 0.0f);
    sim_free(&s);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    test_full(10);
    test_full(50);
    test_drop(30, 5, SL_SECAGG_MSG_FORWARD, 1);
    test_drop(20, 14, SL_SECAGG_MSG_FORWARD, 0);
    /* dropping after the masked input was sent: still in the sum, masks rebuilt from shares */
    test_drop(25, 4, SL_SECAGG_MSG_UNMASK_REQ, 2);
    test_mismatch();
    test_stage_metrics(GONE_SILENT);
    test_stage_metrics(GONE_PEER);
    test_stage_metrics(GONE_ERROR);
    test_stage_metrics(GONE_BANNED);
    return check_summary("test_secagg_engine");
}
