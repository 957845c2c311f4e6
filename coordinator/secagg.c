/* coordinator/secagg: SecAgg+ as a secure sl_aggregator_t. See secagg.h. */
#include "coordinator/secagg.h"

#include "core/log.h"
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
    int started;              /* first tick seen */
    double t0, opened, deadline;
    sl_secagg_stage_t seen;   /* stage the deadline belongs to */
    uint8_t *unmasked;        /* (n) 1 = the client's UNMASK_RESP arrived */
    size_t n_unmasked;
    double now, done_at;      /* last tick; first tick that saw DONE (NAN before) */
} sa_t;

/* Emit the outbox to the clients it names; clears it. */
static int flush(sa_t *a, const sl_agg_emit_t *emit)
{
    int rc = 0;
    for (size_t i = 0; i < a->out.count && !rc; i++) {
        const sl_secagg_msg_t *m = &a->out.msgs[i];
        if (m->to >= a->n || m->len < 6)
            continue;
        rc = emit->send(emit->engine, a->clients[m->to], m->data[5], m->data, m->len);
    }
    sl_secagg_outbox_clear(&a->out);
    return rc;
}

static int sa_begin(void *self, uint64_t round, const uint64_t *clients, size_t n, const sl_agg_emit_t *emit)
{
    sa_t *a = self;
    sl_secagg_server_destroy(&a->s);
    sl_secagg_outbox_clear(&a->out);
    a->round = round;
    a->n = 0;
    a->failed = 0;
    a->started = 0;
    a->seen = SL_SECAGG_INIT;
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
    a->n_unmasked = 0;
    a->done_at = NAN;
    memcpy(a->clients, clients, n * sizeof *clients);
    a->n = n;
    if (n < 2) {
        a->failed = 1;
        SL_WARN("secagg: round %llu has %zu client(s), needs 2", (unsigned long long)round, n);
        return 0;
    }
    int rc = sl_quant_init(&a->q, a->cfg.dp.clip, (unsigned)a->cfg.secagg.bits, n, 0);
    sl_secagg_params_t p;
    if (!rc)
        rc = sl_secagg_params_from_config(&p, &a->cfg, n, a->dim, a->q.mod_bits, round);
    if (!rc)
        rc = sl_secagg_server_new(&a->s, &p);
    if (!rc)
        rc = sl_secagg_server_start(a->s, &a->out);
    if (rc) {
        /* parameters that cannot work for this n (e.g. threshold > n): fail the round, not the run */
        SL_WARN("secagg: round %llu: %s", (unsigned long long)round, sl_last_error());
        sl_secagg_server_destroy(&a->s);
        sl_secagg_outbox_clear(&a->out);
        a->failed = 1;
        return rc == SL_ENOMEM ? rc : 0;
    }
    return flush(a, emit);
}

static int sa_msg(void *self, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len,
                  const sl_agg_emit_t *emit)
{
    (void)stage;
    sa_t *a = self;
    if (!a->s)
        return 0; /* the round already failed: nothing to collect */
    size_t u = 0;
    while (u < a->n && a->clients[u] != client)
        u++;
    if (u == a->n)
        return sl_error(SL_EPROTO, "secagg: client %llu is not in round %llu", (unsigned long long)client,
                        (unsigned long long)a->round);
    sl_secagg_stage_t before = sl_secagg_server_stage(a->s);
    int rc = sl_secagg_server_handle(a->s, (uint32_t)u, blob, len, &a->out);
    sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
    /* Count the unmasking answers, also those after the sum was complete: the round stays
     * open until every included client answered (or a grace period), so that no answer
     * arrives after the round closed. */
    if (len > 5 && blob[5] == SL_SECAGG_MSG_UNMASK_RESP && !a->unmasked[u] &&
        (rc == 0 || (rc == SL_ESTATE && before == SL_SECAGG_DONE))) {
        a->unmasked[u] = 1;
        a->n_unmasked++;
    }
    if (rc == SL_EQUORUM || st == SL_SECAGG_ABORTED) {
        SL_WARN("secagg: round %llu aborted: %s", (unsigned long long)a->round, sl_last_error());
        return flush(a, emit);
    }
    if (rc == SL_ESTATE) { /* late for a closed stage: not an attack, drop it */
        sl_secagg_outbox_clear(&a->out);
        return 0;
    }
    if (rc) {
        sl_secagg_outbox_clear(&a->out);
        return sl_error(SL_EPROTO, "secagg: client %llu: %s", (unsigned long long)client, sl_last_error());
    }
    return flush(a, emit);
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
    if (!a->started) {
        a->started = 1;
        a->t0 = now;
    }
    a->now = now;
    if (sl_secagg_server_stage(a->s) == SL_SECAGG_DONE && isnan(a->done_at))
        a->done_at = now;
    for (int guard = 0; guard < 8; guard++) {
        sl_secagg_stage_t st = sl_secagg_server_stage(a->s);
        if (st == SL_SECAGG_DONE || st == SL_SECAGG_ABORTED || st == SL_SECAGG_INIT)
            return 0;
        if (st != a->seen) {
            a->seen = st;
            a->opened = now;
            a->deadline = stage_deadline(a, st, now);
        }
        if (now < a->deadline)
            return 0;
        int rc = sl_secagg_server_close_stage(a->s, &a->out);
        if (rc && rc != SL_EQUORUM && rc != SL_ECRYPTO)
            return rc;
        if (rc)
            SL_WARN("secagg: round %llu aborted at a stage deadline: %s", (unsigned long long)a->round,
                    sl_last_error());
        if ((rc = flush(a, emit)))
            return rc;
    }
    return 0;
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
    size_t included = 0;
    for (size_t u = 0; u < a->n; u++)
        included += sl_secagg_server_included(a->s, (uint32_t)u) ? 1u : 0u;
    double T = a->cfg.federation.round_timeout > 0 ? a->cfg.federation.round_timeout : 60.0;
    return a->n_unmasked >= included || (!isnan(a->done_at) && a->now >= a->done_at + T / 16.0);
}

static int sa_finish(void *self, float *out, size_t dim, sl_agg_result_t *res)
{
    sa_t *a = self;
    res->count = 0;
    res->total_weight = 0;
    if (!a->s || sl_secagg_server_stage(a->s) != SL_SECAGG_DONE) {
        const char *st = a->s ? sl_secagg_stage_name(sl_secagg_server_stage(a->s)) : "not started";
        int rc = sl_error(SL_EQUORUM, "secagg: round %llu did not complete (%s)", (unsigned long long)a->round, st);
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
    sl_secagg_server_destroy(&a->s);
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
    sl_secagg_outbox_init(&a->out);
    g->name = "secagg";
    g->secure = 1;
    g->self = a;
    g->begin_round = sa_begin;
    g->secagg_message = sa_msg;
    g->tick = sa_tick;
    g->ready = sa_ready;
    g->finish = sa_finish;
    g->destroy = sa_destroy;
    *out = g;
    return 0;
}
