/* coordinator/secagg: SecAgg+ as a secure sl_aggregator_t. See secagg.h. */
#include "coordinator/secagg.h"

#include "core/log.h"
#include "privacy/dp/ddg.h"
#include "privacy/dp/mechanism.h"
#include "privacy/secagg/quantize.h"
#include "privacy/secagg/secagg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sl_config_t cfg;
    size_t dim;
    uint64_t round;
    uint64_t *clients; /* index -> client id, (n) */
    size_t n, cap;
    sl_quant_t q;
    sl_secagg_server_t *s;
    sl_secagg_outbox_t out;
    int failed;               /* the round cannot run (n < 2, bad parameters) */
    double t0, deadline;      /* begin_round's clock; deadline of the open stage */
    sl_secagg_stage_t cur;    /* the server's stage as last observed (sync_stage) */
    uint8_t *unmasked;        /* (n) 1 = the client's UNMASK_RESP arrived, 2 = it is gone before */
    size_t n_unmasked, n_waived; /* answers; included clients gone before answering */
    double now, done_at;         /* latest engine clock seen; when DONE was reached (NAN before) */
    sl_secagg_unmask_gate_fn gate; /* given to each round's server (sl_aggregator_secagg_set_unmask_gate) */
    void *gate_ctx;
    /* metrics of this attempt (sa_stats) */
    sl_secagg_report_t rep;
    double opened_at[SL_SECAGG_NSTAGES];
    size_t answered[SL_SECAGG_NSTAGES]; /* answers the server accepted, per stage */
    sl_secagg_info_t info;              /* server counters as of the last call */
    uint32_t aborted_attempts;          /* earlier attempts of this round that did not complete */
    char last_abort[sizeof((sl_secagg_report_t *)0)->last_abort];
} sa_t;

/* Stage index 0..3 (advertise keys .. unmasking) of a collecting stage, else -1. */
static int stage_index(sl_secagg_stage_t st)
{
    return st >= SL_SECAGG_ADVERTISE && st <= SL_SECAGG_UNMASK ? (int)st - (int)SL_SECAGG_ADVERTISE : -1;
}

/* The stage a SecAgg message belongs to: SETUP/ADVERTISE 0, KEYS/SHARES 1, FORWARD/MASKED 2,
 * UNMASK_REQ/UNMASK_RESP 3; anything else (ABORT, garbage) to `fallback`. */
static int msg_stage(const uint8_t *blob, size_t len, int fallback)
{
    if (len < 6 || blob[5] < SL_SECAGG_MSG_SETUP || blob[5] > SL_SECAGG_MSG_UNMASK_RESP)
        return fallback;
    return (blob[5] - SL_SECAGG_MSG_SETUP) / 2;
}

/* Emit the outbox to the clients it names, counting its bytes per stage (ABORT notices in
 * `closing`, the stage whose close sent them); clears it. */
static int flush(sa_t *a, const sl_agg_emit_t *emit, int closing)
{
    int rc = 0;
    for (size_t i = 0; i < a->out.count && !rc; i++) {
        const sl_secagg_msg_t *m = &a->out.msgs[i];
        if (m->to >= a->n || m->len < 6)
            continue;
        rc = emit->send(emit->engine, a->clients[m->to], m->data[5], m->data, m->len);
        int st = msg_stage(m->data, m->len, closing);
        if (!rc && st >= 0)
            a->rep.stage[st].bytes_down += m->len;
    }
    sl_secagg_outbox_clear(&a->out);
    return rc;
}

static double stage_deadline(const sa_t *a, sl_secagg_stage_t st, double opened);

/* After every server call: stage changes close the timings of the stages left behind and
 * open the new one (with its deadline); DONE is timestamped for the grace period. */
static void sync_stage(sa_t *a, double now)
{
    sl_secagg_server_info(a->s, &a->info);
    sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
    if (st == a->cur)
        return;
    int from = stage_index(a->cur), to = stage_index(st);
    int last = to >= 0 ? to - 1 : st == SL_SECAGG_DONE ? SL_SECAGG_NSTAGES - 1 : from;
    for (int i = from; from >= 0 && i <= last; i++) {
        if (i > from) /* passed through in the same call */
            a->opened_at[i] = now;
        a->rep.stage[i].seconds = now - a->opened_at[i];
    }
    if (to >= 0) {
        a->opened_at[to] = now;
        a->rep.stage[to].seconds = NAN; /* open: measured at its close */
        a->deadline = stage_deadline(a, st, now);
    }
    if (st == SL_SECAGG_DONE)
        a->done_at = now;
    a->cur = st;
}

/* The protocol aborted (or could not run): keep the first reason. */
static void note_abort(sa_t *a, const char *why)
{
    if (!a->rep.reason[0])
        snprintf(a->rep.reason, sizeof a->rep.reason, "%s", why);
}

static size_t index_of(const sa_t *a, uint64_t client)
{
    size_t u = 0;
    while (u < a->n && a->clients[u] != client)
        u++;
    return u;
}

/* Distributed DP: the quantizer leaves room for the clients' discrete Gaussian shares
 * (privacy/dp/ddg.h), from the same plan the TASK's dp_clip / dp_noise come from. */
static int quant_init_ddg(sa_t *a, size_t n)
{
    sl_dp_round_t plan;
    int rc = sl_dp_round_plan(&a->cfg, a->cfg.dp.clip, &plan);
    if (!rc)
        rc = sl_ddg_quant_init(&a->q, plan.clip, sl_dp_round_client_noise_multiplier(&plan),
                               (unsigned)a->cfg.secagg.bits, n, a->dim);
    return rc;
}

static int sa_begin(void *self, uint64_t round, const uint64_t *clients, size_t n, const sl_agg_emit_t *emit)
{
    sa_t *a = self;
    sl_secagg_server_destroy(&a->s);
    sl_secagg_outbox_clear(&a->out);
    /* a retry of the same round: the previous attempt did not complete */
    if (a->rep.on && a->round == round && !a->rep.completed) {
        a->aborted_attempts++;
        snprintf(a->last_abort, sizeof a->last_abort, "%s", a->rep.reason);
    } else if (a->round != round) {
        a->aborted_attempts = 0;
        a->last_abort[0] = '\0';
    }
    memset(&a->rep, 0, sizeof a->rep);
    a->rep.on = 1;
    for (int i = 0; i < SL_SECAGG_NSTAGES; i++) {
        a->rep.stage[i].seconds = NAN;
        a->answered[i] = 0;
    }
    memset(&a->info, 0, sizeof a->info);
    a->round = round;
    a->n = 0;
    a->failed = 0;
    a->cur = SL_SECAGG_INIT;
    a->t0 = a->now = emit->now;
    a->deadline = INFINITY;
    if (n > a->cap) {
        uint64_t *p = realloc(a->clients, n * sizeof *p);
        if (!p)
            return sl_error(SL_ENOMEM, "secagg: %zu clients", n);
        a->clients = p;
        uint8_t *um = realloc(a->unmasked, n);
        if (!um)
            return sl_error(SL_ENOMEM, "secagg: %zu clients", n);
        a->unmasked = um;
        a->cap = n;
    }
    if (n)
        memset(a->unmasked, 0, n);
    a->n_unmasked = a->n_waived = 0;
    a->done_at = NAN;
    memcpy(a->clients, clients, n * sizeof *clients);
    a->n = n;
    if (n < 2) {
        a->failed = 1;
        char why[96];
        snprintf(why, sizeof why, "round %llu has %zu client(s), SecAgg+ needs 2", (unsigned long long)round,
                 n);
        note_abort(a, why);
        SL_WARN("secagg: %s", why);
        return 0;
    }
    int ddg = a->cfg.dp.mode == SL_DP_DISTRIBUTED, ddg_rc = 0;
    int rc = ddg ? (ddg_rc = quant_init_ddg(a, n))
                 : sl_quant_init(&a->q, a->cfg.dp.clip, (unsigned)a->cfg.secagg.bits, n, 0);
    sl_secagg_params_t p;
    if (!rc)
        rc = sl_secagg_params_from_config(&p, &a->cfg, n, a->dim, a->q.mod_bits, round);
    if (!rc && ddg) /* never unmask a sum with fewer noise shares than the quorum the shares are sized for */
        p.min_clients = (size_t)a->cfg.federation.min_clients;
    if (!rc)
        rc = sl_secagg_server_new(&a->s, &p);
    if (!rc)
        sl_secagg_server_set_unmask_gate(a->s, a->gate, a->gate_ctx);
    if (!rc)
        rc = sl_secagg_server_start(a->s, &a->out);
    if (rc) {
        /* parameters that cannot work for this n (e.g. threshold > n): fail the round, not the run */
        SL_WARN("secagg: round %llu: %s", (unsigned long long)round, sl_last_error());
        note_abort(a, sl_last_error());
        sl_secagg_server_destroy(&a->s);
        sl_secagg_outbox_clear(&a->out);
        a->failed = 1;
        return rc == SL_ENOMEM || ddg_rc ? rc : 0; /* DP parameters that cannot work: fail the run */
    }
    sync_stage(a, emit->now); /* ADVERTISE opens with the SETUPs */
    return flush(a, emit, -1);
}

static int sa_msg(void *self, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len,
                  const sl_agg_emit_t *emit)
{
    (void)stage;
    sa_t *a = self;
    if (!a->s)
        return 0; /* the round already failed: nothing to collect */
    size_t u = index_of(a, client);
    if (u == a->n)
        return sl_error(SL_EPROTO, "secagg: client %llu is not in round %llu", (unsigned long long)client,
                        (unsigned long long)a->round);
    a->now = emit->now;
    sl_secagg_stage_t before = sl_secagg_server_stage(a->s);
    int closing = stage_index(before);
    int in_stage = msg_stage(blob, len, closing);
    if (in_stage >= 0) /* every blob that arrived, also late or refused ones */
        a->rep.stage[in_stage].bytes_up += len;
    int rc = sl_secagg_server_handle(a->s, (uint32_t)u, blob, len, &a->out);
    sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
    /* accepted: 0, or the close it completed aborted the round (a refused one changes nothing) */
    if ((rc == 0 || (st == SL_SECAGG_ABORTED && before != SL_SECAGG_ABORTED)) && closing >= 0)
        a->answered[closing]++;
    sync_stage(a, emit->now);
    /* Count the unmasking answers, also those after the sum was complete: the round stays
     * open until every included client answered (or a grace period), so that no answer
     * arrives after the round closed. */
    if (len > 5 && blob[5] == SL_SECAGG_MSG_UNMASK_RESP && a->unmasked[u] == 0 &&
        (rc == 0 || (rc == SL_ESTATE && before == SL_SECAGG_DONE))) {
        a->unmasked[u] = 1;
        a->n_unmasked++;
    }
    if (rc == SL_EQUORUM || st == SL_SECAGG_ABORTED) {
        SL_WARN("secagg: round %llu aborted: %s", (unsigned long long)a->round, sl_last_error());
        note_abort(a, sl_last_error());
        return flush(a, emit, closing);
    }
    if (rc == SL_ESTATE) { /* late for a closed stage: not an attack, drop it */
        sl_secagg_outbox_clear(&a->out);
        return 0;
    }
    if (rc) {
        sl_secagg_outbox_clear(&a->out);
        return sl_error_wrap(SL_EPROTO, "secagg: client %llu", (unsigned long long)client);
    }
    return flush(a, emit, closing);
}

static double stage_deadline(const sa_t *a, sl_secagg_stage_t st, double opened)
{
    double T = a->cfg.federation.round_timeout > 0 ? a->cfg.federation.round_timeout : 60.0;
    double d = opened + T / 8.0;
    if (st == SL_SECAGG_MASKED && a->t0 + 0.75 * T > d)
        d = a->t0 + 0.75 * T;
    return d;
}

static int sa_tick(void *self, double now, const sl_agg_emit_t *emit)
{
    sa_t *a = self;
    if (!a->s)
        return 0;
    a->now = now;
    for (int guard = 0; guard < 8; guard++) {
        int closing = stage_index(sl_secagg_server_stage(a->s));
        if (closing < 0 || now < a->deadline)
            return 0;
        int rc = sl_secagg_server_close_stage(a->s, &a->out);
        sync_stage(a, now);
        /* the protocol aborted (too few survivors, bad shares, the unmask gate refused): the
         * round fails, the ABORTs go out; anything else is the run's error */
        if (rc && sl_secagg_server_stage(a->s) != SL_SECAGG_ABORTED) {
            sl_secagg_outbox_clear(&a->out);
            return rc;
        }
        if (rc) {
            SL_WARN("secagg: round %llu aborted at a stage deadline: %s", (unsigned long long)a->round,
                    sl_last_error());
            note_abort(a, sl_last_error());
        }
        if ((rc = flush(a, emit, closing)))
            return rc;
    }
    return 0;
}

/* The open stage's deadline, or the end of the grace period after DONE (see secagg.h). */
static double sa_next_deadline(void *self)
{
    sa_t *a = self;
    if (!a->s)
        return INFINITY;
    sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
    if (stage_index(st) >= 0)
        return a->deadline;
    if (st == SL_SECAGG_DONE && !isnan(a->done_at) && a->n_unmasked + a->n_waived < a->info.masked) {
        /* once passed, ready() says yes and the engine needs no more ticks from us */
        double T = a->cfg.federation.round_timeout > 0 ? a->cfg.federation.round_timeout : 60.0;
        double grace = a->done_at + T / 16.0;
        return a->now < grace ? grace : INFINITY;
    }
    return INFINITY;
}

/* The engine lost the client: the server stops waiting for it (the stage may close now). */
static int sa_dropped(void *self, uint64_t client, const sl_agg_emit_t *emit)
{
    sa_t *a = self;
    if (!a->s)
        return 0;
    size_t u = index_of(a, client);
    if (u == a->n)
        return 0;
    a->now = emit->now;
    /* an included client that will never answer the unmasking request: not waited for */
    if (sl_secagg_server_included(a->s, (uint32_t)u) && a->unmasked[u] == 0) {
        a->unmasked[u] = 2;
        a->n_waived++;
    }
    int closing = stage_index(sl_secagg_server_stage(a->s));
    int rc = sl_secagg_server_drop(a->s, (uint32_t)u, &a->out);
    sync_stage(a, emit->now);
    if (rc && sl_secagg_server_stage(a->s) == SL_SECAGG_ABORTED) {
        SL_WARN("secagg: round %llu aborted: %s", (unsigned long long)a->round, sl_last_error());
        note_abort(a, sl_last_error());
        rc = 0;
    }
    if (rc) {
        sl_secagg_outbox_clear(&a->out);
        return rc;
    }
    return flush(a, emit, closing);
}

static int sa_ready(void *self)
{
    sa_t *a = self;
    if (a->failed)
        return 1;
    if (!a->s)
        return 0;
    sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
    if (st == SL_SECAGG_ABORTED)
        return 1;
    if (st != SL_SECAGG_DONE)
        return 0;
    double T = a->cfg.federation.round_timeout > 0 ? a->cfg.federation.round_timeout : 60.0;
    return a->n_unmasked + a->n_waived >= a->info.masked ||
           (!isnan(a->done_at) && a->now >= a->done_at + T / 16.0);
}

/* Fill a->rep's per-stage client counts from the server's counters (see sa_stats). */
static void fill_counts(sa_t *a)
{
    const size_t after[SL_SECAGG_NSTAGES + 1] = {a->n, a->info.advertised, a->info.shared, a->info.masked,
                                                 a->n_unmasked};
    int open = stage_index(a->cur); /* a stage still open when the round ended: its answers so far */
    for (int i = 0; i < SL_SECAGG_NSTAGES; i++) {
        sl_secagg_stage_report_t *st = &a->rep.stage[i];
        if (isnan(st->seconds) && i != open)
            continue; /* never opened */
        st->entered = after[i];
        size_t went_on = i == open && i < SL_SECAGG_NSTAGES - 1 ? a->answered[i] : after[i + 1];
        st->dropped = st->entered > went_on ? st->entered - went_on : 0;
    }
    a->rep.included = a->cur == SL_SECAGG_DONE ? a->info.masked : 0;
    a->rep.aborted_attempts = a->aborted_attempts;
    snprintf(a->rep.last_abort, sizeof a->rep.last_abort, "%s", a->last_abort);
}

static int sa_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    sa_t *a = self;
    res->count = 0;
    res->total_weight = 0;
    if (!a->s || sl_secagg_server_stage(a->s) != SL_SECAGG_DONE) {
        const char *st = a->s ? sl_secagg_stage_name(sl_secagg_server_stage(a->s)) : "not started";
        int open = stage_index(a->cur);
        if (a->s && open >= 0) /* the round ended while this stage was open */
            a->rep.stage[open].seconds = a->now - a->opened_at[open];
        char why[160];
        snprintf(why, sizeof why, "secagg: round %llu did not complete (%s)", (unsigned long long)a->round,
                 st);
        note_abort(a, why);
        /* an abort says why; an unfinished protocol says where it stopped */
        int rc = sl_error(SL_EQUORUM, "%s", a->rep.reason);
        sl_secagg_server_destroy(&a->s);
        return rc;
    }
    const uint32_t *sum;
    size_t m;
    int rc = sl_secagg_server_result(a->s, &sum, &m);
    if (rc)
        return rc;
    if (m != dim || dim != a->dim)
        return sl_error(SL_EMISMATCH, "secagg: sum has %zu coordinates, want %zu", m, dim);
    size_t count = 0;
    for (size_t u = 0; u < a->n; u++)
        count += sl_secagg_server_included(a->s, (uint32_t)u) ? 1u : 0u;
    if (!count) {
        sl_secagg_server_destroy(&a->s);
        return sl_error(SL_EQUORUM, "secagg: round %llu: no input included", (unsigned long long)a->round);
    }
    sl_quant_decode(&a->q, sum, dim, out); /* out: (dim,) float sum */
    for (size_t j = 0; j < dim; j++)
        out[j] = (float)((double)out[j] / (double)count);
    res->count = count;
    res->total_weight = (double)count;
    a->rep.completed = 1;
    sl_secagg_server_destroy(&a->s);
    return 0;
}

static void sa_report(void *self, sl_round_report_t *rep)
{
    sa_t *a = self;
    fill_counts(a);
    rep->secagg = a->rep;
}

int sl_aggregator_secagg_stats(const sl_aggregator_t *agg, sl_secagg_report_t *out)
{
    if (!agg || agg->begin_round != sa_begin)
        return sl_error(SL_EINVAL, "secagg stats: not a SecAgg+ aggregator");
    sa_t *a = agg->self;
    fill_counts(a);
    *out = a->rep;
    return 0;
}

static void sa_destroy(void *self)
{
    sa_t *a = self;
    if (!a)
        return;
    sl_secagg_server_destroy(&a->s);
    sl_secagg_outbox_free(&a->out);
    free(a->clients);
    free(a->unmasked);
    free(a);
}

int sl_aggregator_secagg_new(sl_aggregator_t **out, const sl_config_t *cfg, size_t dim)
{
    *out = NULL;
    if (!cfg || !dim)
        return sl_error(SL_EINVAL, "secagg aggregator: no config or dim 0");
    if (!(cfg->dp.clip > 0) || !isfinite(cfg->dp.clip))
        return sl_error(SL_EINVAL, "secagg aggregator: [dp] clip must be > 0 (the quantization range)");
    sa_t *a = calloc(1, sizeof *a);
    sl_aggregator_t *g = calloc(1, sizeof *g);
    if (!a || !g) {
        free(a);
        free(g);
        return sl_error(SL_ENOMEM, "secagg aggregator");
    }
    a->cfg = *cfg;
    a->dim = dim;
    a->done_at = NAN;
    a->deadline = INFINITY;
    sl_secagg_outbox_init(&a->out);
    g->name = "secagg";
    g->secure = 1;
    g->self = a;
    g->begin_round = sa_begin;
    g->secagg_message = sa_msg;
    g->tick = sa_tick;
    g->next_deadline = sa_next_deadline;
    g->client_dropped = sa_dropped;
    g->ready = sa_ready;
    g->report = sa_report;
    g->finish = sa_finish;
    g->destroy = sa_destroy;
    *out = g;
    return 0;
}

const sl_quant_t *sl_aggregator_secagg_quant(const sl_aggregator_t *g)
{
    if (!g || g->begin_round != sa_begin)
        return NULL;
    const sa_t *a = g->self;
    return a->s && !a->failed ? &a->q : NULL;
}

int sl_aggregator_secagg_set_unmask_gate(sl_aggregator_t *g, sl_secagg_unmask_gate_fn fn, void *ctx)
{
    if (!g || g->begin_round != sa_begin)
        return sl_error(SL_EINVAL, "secagg unmask gate: not a SecAgg+ aggregator");
    sa_t *a = g->self;
    a->gate = fn;
    a->gate_ctx = ctx;
    if (a->s)
        sl_secagg_server_set_unmask_gate(a->s, fn, ctx);
    return 0;
}
