#include "coordinator/engine.h"

#include "coordinator/strategy.h"
#include "core/log.h"
#include "core/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAN_SLOTS      256
#define LOG_PER_SECOND 20

typedef struct {
    uint64_t id;
    sl_peer_t peer;
    int live; /* registered and believed connected */
    uint64_t train_examples;
    uint64_t test_examples;
    double last_seen;
    double rl_window; /* rate limit: start of the current 1 s window */
    uint32_t rl_count;
    uint32_t invalid;
    uint64_t tag;      /* round tag when sampled (see round_tag) */
    int answered;      /* answered in the tagged round attempt */
    int granted;       /* holds an upload credit in the tagged round attempt */
    int waiting;       /* READY queued for a credit */
    uint64_t eval_tag; /* final evaluation: EVALUATE sent */
    int eval_answered;
} client_t;

typedef struct {
    sl_peer_t peer;
    double until;
} ban_t;

/* A peer that has not registered (no HELLO yet): it gets the clients' rate limit and
 * invalid-message count too, so an admitted key cannot flood or probe without
 * registering. A small table; the least recently seen entry makes room (it starts over). */
#define STRANGER_SLOTS 64
typedef struct {
    sl_peer_t peer;
    double last_seen, rl_window;
    uint32_t rl_count, invalid;
} stranger_t;

typedef struct {
    sl_peer_t peer;
    uint64_t client;
    size_t hdr_off, hdr_len;
    const void *payload; /* borrowed (global vector) or NULL */
    size_t pay_off;      /* arena payload (SECAGG blobs) when payload == NULL and pay_len > 0 */
    size_t pay_len;
    sl_shared_buf_t *shared; /* reference held while queued */
} pending_t;

struct sl_engine {
    sl_config_t cfg;
    size_t dim;
    uint64_t layout;
    float *global;          /* (dim) */
    sl_shared_buf_t *bcast; /* (dim) snapshot of global that TASK / EVALUATE payloads reference */
    float *agg_out;         /* (dim) aggregated delta scratch */
    sl_aggregator_t *agg;
    sl_strategy_t *strategy;
    sl_engine_hooks_t hooks;
    sl_runlog_t *runlog;
    size_t start_clients;
    double start_timeout;
    int final_eval;
    size_t max_uploads;
    size_t inflight; /* credits held */
    size_t *waitq;   /* client indices waiting for a credit (FIFO, one slot per sampled) */
    size_t wq_head, wq_tail, cap_waitq;

    sl_engine_state_t state;
    char status[512];
    int fail_code;

    client_t *clients; /* registry, never shrinks */
    size_t n_clients, cap_clients;
    int32_t *by_peer; /* open-addressing tables of client indices (-1 = empty) */
    int32_t *by_id;
    size_t table_cap; /* power of two */
    size_t stale_peers;

    ban_t bans[BAN_SLOTS];
    size_t ban_next;
    stranger_t strangers[STRANGER_SLOTS];

    /* round */
    uint64_t round; /* current round (1-based) */
    uint64_t completed;
    uint32_t attempt;
    uint32_t attempts_total;
    double first_tick;
    double round_start;
    double deadline;
    size_t *sampled; /* client indices of the current attempt */
    size_t n_sampled, cap_sampled;
    size_t n_answered, n_left;
    sl_round_report_t rep; /* accumulating */
    double loss_sum, loss_w, eval_loss_sum, eval_acc_sum;
    uint64_t eval_n;
    sl_task_info_t task;
    sl_round_report_t last;
    int have_last;
    uint64_t bytes_up_total, bytes_down_total;

    /* final evaluation */
    size_t fe_sent, fe_answered;
    sl_eval_info_t fe;
    double fe_loss, fe_acc, fe_f1;

    /* outbox */
    pending_t *out;
    size_t n_out, cap_out;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    sl_outmsg_t *view;
    size_t cap_view;
    sl_wire_buf_t enc;
    size_t task_hdr_off, task_hdr_len; /* encoded once per attempt */
    int task_hdr_valid;

    double log_window;
    int log_count;
    double last_now; /* clock of the latest call, for the summary's total time */
};

/* ---- small helpers ----------------------------------------------------------------------- */

static void peer_str(const sl_peer_t *p, char *buf, size_t cap)
{
    sl_peer_format(p, buf, cap);
}

/* Rate-limited warning for peer misbehaviour: a flood must not flood the log. */
static void warn_peer(sl_engine_t *e, double now, const char *fmt, ...) SL_PRINTF(3, 4);
static void warn_peer(sl_engine_t *e, double now, const char *fmt, ...)
{
    if (now - e->log_window >= 1.0) {
        e->log_window = now;
        e->log_count = 0;
    }
    if (e->log_count++ >= LOG_PER_SECOND)
        return;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    SL_WARN("%s", buf);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}
static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static int find_by_peer(const sl_engine_t *e, const sl_peer_t *p)
{
    if (!e->table_cap)
        return -1;
    size_t mask = e->table_cap - 1;
    for (size_t i = hash_bytes(p->id, p->len) & mask;; i = (i + 1) & mask) {
        int32_t k = e->by_peer[i];
        if (k < 0)
            return -1;
        if (sl_peer_equal(&e->clients[k].peer, p))
            return k;
    }
}

static int find_by_id(const sl_engine_t *e, uint64_t id)
{
    if (!e->table_cap)
        return -1;
    size_t mask = e->table_cap - 1;
    for (size_t i = hash_u64(id) & mask;; i = (i + 1) & mask) {
        int32_t k = e->by_id[i];
        if (k < 0)
            return -1;
        if (e->clients[k].id == id)
            return k;
    }
}

static void table_insert(int32_t *t, size_t cap, uint64_t h, int32_t v)
{
    size_t mask = cap - 1;
    size_t i = h & mask;
    while (t[i] >= 0)
        i = (i + 1) & mask;
    t[i] = v;
}

/* (Re)build both tables with room for n_clients + stale entries at load <= 1/2. */
static int rebuild_tables(sl_engine_t *e, size_t want)
{
    size_t cap = 64;
    while (cap < 2 * want + 2)
        cap *= 2;
    int32_t *bp = malloc(cap * sizeof *bp), *bi = malloc(cap * sizeof *bi);
    if (!bp || !bi) {
        free(bp), free(bi);
        return sl_error(SL_ENOMEM, "engine: out of memory (client table)");
    }
    memset(bp, 0xff, cap * sizeof *bp);
    memset(bi, 0xff, cap * sizeof *bi);
    for (size_t k = 0; k < e->n_clients; k++) {
        table_insert(bp, cap, hash_bytes(e->clients[k].peer.id, e->clients[k].peer.len), (int32_t)k);
        table_insert(bi, cap, hash_u64(e->clients[k].id), (int32_t)k);
    }
    free(e->by_peer), free(e->by_id);
    e->by_peer = bp;
    e->by_id = bi;
    e->table_cap = cap;
    e->stale_peers = 0;
    return 0;
}

static int is_banned(sl_engine_t *e, const sl_peer_t *p, double now)
{
    for (size_t i = 0; i < BAN_SLOTS; i++)
        if (e->bans[i].until > now && sl_peer_equal(&e->bans[i].peer, p))
            return 1;
    return 0;
}

static void ban(sl_engine_t *e, const sl_peer_t *p, double now)
{
    e->bans[e->ban_next].peer = *p;
    e->bans[e->ban_next].until = now + e->cfg.net.cooldown_seconds;
    e->ban_next = (e->ban_next + 1) % BAN_SLOTS;
    /* A ban by routing id ends with the connection; the hook makes it stick to the key. */
    if (e->hooks.banned)
        e->hooks.banned(e->hooks.hook_ctx, p, e->cfg.net.cooldown_seconds);
}

static stranger_t *stranger_of(sl_engine_t *e, const sl_peer_t *p, double now)
{
    stranger_t *oldest = &e->strangers[0];
    for (size_t i = 0; i < STRANGER_SLOTS; i++) {
        stranger_t *s = &e->strangers[i];
        if (s->peer.len && sl_peer_equal(&s->peer, p)) {
            s->last_seen = now;
            return s;
        }
        if (!s->peer.len || s->last_seen < oldest->last_seen)
            oldest = s;
    }
    memset(oldest, 0, sizeof *oldest);
    oldest->peer = *p;
    oldest->last_seen = now;
    oldest->rl_window = now;
    return oldest;
}

/* True if an unregistered peer is over net.max_messages_per_second (drop the message). */
static int stranger_over_rate(sl_engine_t *e, const sl_peer_t *p, double now)
{
    if (!p->len)
        return 0;
    stranger_t *s = stranger_of(e, p, now);
    if (now - s->rl_window >= 1.0) {
        s->rl_window = now;
        s->rl_count = 0;
    }
    if (++s->rl_count > (uint32_t)e->cfg.net.max_messages_per_second) {
        if (s->rl_count == (uint32_t)e->cfg.net.max_messages_per_second + 1) {
            char ps[96];
            peer_str(p, ps, sizeof ps);
            warn_peer(e, now, "coordinator: unregistered %s exceeds %lld messages/s: dropping", ps,
                      (long long)e->cfg.net.max_messages_per_second);
        }
        return 1;
    }
    return 0;
}

/* Count an invalid message against an unregistered peer; ban it past the limit. */
static void stranger_strike(sl_engine_t *e, const sl_peer_t *p, double now)
{
    if (!p->len)
        return;
    stranger_t *s = stranger_of(e, p, now);
    if (++s->invalid >= (uint32_t)e->cfg.net.max_invalid_messages) {
        char ps[96];
        peer_str(p, ps, sizeof ps);
        warn_peer(e, now, "coordinator: unregistered %s sent %u invalid messages: refused for %.0f s", ps,
                  s->invalid, e->cfg.net.cooldown_seconds);
        ban(e, p, now);
        memset(s, 0, sizeof *s);
    }
}

/* ---- outbox -------------------------------------------------------------------------------- */

static int arena_put(sl_engine_t *e, const void *p, size_t n, size_t *off)
{
    if (e->arena_len + n > e->arena_cap) {
        size_t cap = e->arena_cap ? e->arena_cap : 4096;
        while (cap < e->arena_len + n)
            cap *= 2;
        uint8_t *a = realloc(e->arena, cap);
        if (!a)
            return sl_error(SL_ENOMEM, "engine: out of memory (outbox)");
        e->arena = a;
        e->arena_cap = cap;
    }
    if (n)
        memcpy(e->arena + e->arena_len, p, n);
    *off = e->arena_len;
    e->arena_len += n;
    return 0;
}

static int push_out(sl_engine_t *e, const sl_peer_t *peer, uint64_t client, size_t hdr_off, size_t hdr_len,
                    const void *payload, size_t pay_off, size_t pay_len, sl_shared_buf_t *shared)
{
    if (e->n_out == e->cap_out) {
        size_t cap = e->cap_out ? 2 * e->cap_out : 64;
        pending_t *o = realloc(e->out, cap * sizeof *o);
        if (!o)
            return sl_error(SL_ENOMEM, "engine: out of memory (outbox)");
        e->out = o;
        e->cap_out = cap;
    }
    pending_t *p = &e->out[e->n_out++];
    p->peer = *peer;
    p->client = client;
    p->hdr_off = hdr_off;
    p->hdr_len = hdr_len;
    p->payload = payload;
    p->pay_off = pay_off;
    p->pay_len = pay_len;
    p->shared = shared;
    if (shared)
        sl_shared_buf_retain(shared);
    e->rep.bytes_down += hdr_len + pay_len;
    e->bytes_down_total += hdr_len + pay_len;
    return 0;
}

/* Encode m and queue it to peer. payload: borrowed vector (m->vec) or copied blob. */
static int send_msg(sl_engine_t *e, const sl_peer_t *peer, uint64_t client, const sl_msg_t *m)
{
    int rc = sl_wire_encode(m, &e->enc);
    if (rc)
        return rc;
    size_t off = 0, poff = 0, plen = 0;
    if ((rc = arena_put(e, e->enc.data, e->enc.len, &off)))
        return rc;
    const void *payload = NULL;
    if (sl_msg_payload_kind(m->type) == 1 && m->n) {
        payload = m->vec;
        plen = (size_t)m->n * sizeof(float);
    } else if (sl_msg_payload_kind(m->type) == 2 && m->n) {
        plen = (size_t)m->n;
        if ((rc = arena_put(e, m->blob, plen, &poff)))
            return rc;
    }
    return push_out(e, peer, client, off, e->enc.len, payload, poff, plen, NULL);
}

static int send_error(sl_engine_t *e, const sl_peer_t *peer, uint64_t client, int code, const char *why)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_ERROR, e->round, SL_WIRE_COORDINATOR);
    m.code = code;
    snprintf(m.why, sizeof m.why, "%s", why);
    return send_msg(e, peer, client, &m);
}

static int send_bye_all(sl_engine_t *e, const char *why)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_BYE, e->round, SL_WIRE_COORDINATOR);
    snprintf(m.why, sizeof m.why, "%s", why);
    int rc = sl_wire_encode(&m, &e->enc);
    if (rc)
        return rc;
    size_t off = 0;
    if ((rc = arena_put(e, e->enc.data, e->enc.len, &off)))
        return rc;
    for (size_t k = 0; k < e->n_clients; k++) {
        if (!e->clients[k].live)
            continue;
        if ((rc = push_out(e, &e->clients[k].peer, e->clients[k].id, off, e->enc.len, NULL, 0, 0, NULL)))
            return rc;
    }
    return 0;
}

static void begin_call(sl_engine_t *e)
{
    for (size_t i = 0; i < e->n_out; i++)
        sl_shared_buf_release(&e->out[i].shared);
    e->n_out = 0;
    e->arena_len = 0;
    e->task_hdr_valid = 0;
}

size_t sl_engine_outbox(sl_engine_t *e, const sl_outmsg_t **msgs)
{
    if (e->n_out > e->cap_view) {
        sl_outmsg_t *v = realloc(e->view, e->n_out * sizeof *v);
        if (!v) {
            *msgs = NULL;
            return 0;
        }
        e->view = v;
        e->cap_view = e->n_out;
    }
    for (size_t i = 0; i < e->n_out; i++) {
        pending_t *p = &e->out[i];
        sl_outmsg_t *o = &e->view[i];
        o->peer = p->peer;
        o->client = p->client;
        o->header = e->arena + p->hdr_off;
        o->header_len = p->hdr_len;
        o->payload = p->payload ? p->payload : (p->pay_len ? e->arena + p->pay_off : NULL);
        o->payload_len = p->pay_len;
        o->shared = p->shared;
    }
    *msgs = e->view;
    return e->n_out;
}

/* ---- run state ---------------------------------------------------------------------------- */

static void write_summary(sl_engine_t *e)
{
    if (!e->runlog)
        return;
    double total = isnan(e->first_tick) ? 0.0 : e->last_now - e->first_tick;
    if (sl_runlog_summary(e->runlog, e->status, e->completed, e->have_last ? &e->last : NULL, total))
        SL_WARN("coordinator: summary.json: %s", sl_last_error());
}

static int fail_run(sl_engine_t *e, int code, const char *msg)
{
    char copy[480]; /* msg may be sl_last_error()'s own buffer */
    snprintf(copy, sizeof copy, "%s", msg);
    e->state = SL_ENGINE_FAILED;
    e->fail_code = code;
    snprintf(e->status, sizeof e->status, "failed: %s", copy);
    SL_ERROR("coordinator: run failed: %s", copy);
    write_summary(e);
    (void)send_bye_all(e, e->status);
    return sl_error(code, "%s", copy);
}

static int fail_hook(sl_engine_t *e, int rc, const char *hook)
{
    char msg[400];
    snprintf(msg, sizeof msg, "%s hook: %s", hook, sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
    return fail_run(e, rc, msg);
}

static int finish_run(sl_engine_t *e, const char *status)
{
    e->state = SL_ENGINE_DONE;
    snprintf(e->status, sizeof e->status, "%s", status);
    SL_INFO("coordinator: run %s after %llu rounds", status, (unsigned long long)e->completed);
    write_summary(e);
    return send_bye_all(e, status);
}

/* An aggregator call failed. SL_EBUDGET (the DP aggregator refused to unmask a secure sum
 * the privacy budget cannot pay for; nothing was revealed) ends the run cleanly with status
 * "budget"; anything else fails it. */
static int agg_failed(sl_engine_t *e, int rc, const char *what)
{
    if (rc == SL_EBUDGET) {
        SL_WARN("coordinator: round %llu: %s", (unsigned long long)e->round, sl_last_error());
        return finish_run(e, "budget");
    }
    return fail_hook(e, rc, what);
}

static int eval_due(const sl_engine_t *e, uint64_t round)
{
    uint64_t every = (uint64_t)e->cfg.federation.eval_every;
    return (every > 0 && round % every == 0) || round == (uint64_t)e->cfg.federation.rounds;
}

static size_t live_count(const sl_engine_t *e, double now)
{
    size_t n = 0;
    double stale = 3.0 * (double)e->cfg.net.heartbeat_ms / 1000.0 + e->cfg.federation.round_timeout;
    for (size_t k = 0; k < e->n_clients; k++)
        if (e->clients[k].live && now - e->clients[k].last_seen <= stale)
            n++;
    return n;
}

static uint64_t round_tag(const sl_engine_t *e)
{
    return (e->round << 16) | (e->attempt & 0xffffu);
}

typedef struct {
    uint64_t id;
    size_t idx;
} idpair_t;

static int cmp_idpair(const void *a, const void *b)
{
    uint64_t x = ((const idpair_t *)a)->id, y = ((const idpair_t *)b)->id;
    return (x > y) - (x < y);
}

/* Sort client indices by client id (ids are unique). */
static int sort_by_id(sl_engine_t *e, size_t *idx, size_t n)
{
    if (n < 2)
        return 0;
    idpair_t *p = malloc(n * sizeof *p);
    if (!p)
        return sl_error(SL_ENOMEM, "engine: out of memory (sort)");
    for (size_t i = 0; i < n; i++)
        p[i].id = e->clients[idx[i]].id, p[i].idx = idx[i];
    qsort(p, n, sizeof *p, cmp_idpair);
    for (size_t i = 0; i < n; i++)
        idx[i] = p[i].idx;
    free(p);
    return 0;
}

static int agg_emit(void *engine, uint64_t client, uint32_t stage, const uint8_t *blob, size_t len)
{
    sl_engine_t *e = engine;
    int k = find_by_id(e, client);
    if (k < 0)
        return sl_error(SL_ENOTFOUND, "engine: SECAGG_DOWN to unknown client %llu",
                        (unsigned long long)client);
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_SECAGG_DOWN, e->round, SL_WIRE_COORDINATOR);
    m.stage = stage;
    m.n = len;
    m.blob = blob;
    return send_msg(e, &e->clients[k].peer, client, &m);
}

static int queue_task(sl_engine_t *e, size_t k)
{
    client_t *c = &e->clients[k];
    if (!e->task_hdr_valid) {
        sl_msg_t m;
        sl_msg_init(&m, SL_MSG_TASK, e->round, SL_WIRE_COORDINATOR);
        m.n = e->dim;
        m.vec = sl_shared_buf_data(e->bcast);
        m.task = e->task;
        int rc = sl_wire_encode(&m, &e->enc);
        if (rc)
            return rc;
        if ((rc = arena_put(e, e->enc.data, e->enc.len, &e->task_hdr_off)))
            return rc;
        e->task_hdr_len = e->enc.len;
        e->task_hdr_valid = 1;
    }
    return push_out(e, &c->peer, c->id, e->task_hdr_off, e->task_hdr_len, sl_shared_buf_data(e->bcast), 0,
                    e->dim * sizeof(float), e->bcast);
}

/* A fresh snapshot of the global vector for this round's broadcast: messages still in
 * flight keep the previous one alive through their references. */
static int refresh_bcast(sl_engine_t *e)
{
    sl_shared_buf_release(&e->bcast);
    int rc = sl_shared_buf_new(&e->bcast, e->dim * sizeof(float));
    if (rc)
        return rc;
    memcpy(sl_shared_buf_data(e->bcast), e->global, e->dim * sizeof(float));
    return 0;
}

static int start_attempt(sl_engine_t *e, double now)
{
    e->state = SL_ENGINE_ROUND;
    e->task_hdr_valid = 0;
    if (refresh_bcast(e))
        return fail_run(e, SL_ENOMEM, "out of memory (broadcast snapshot)");
    /* candidates: live, recently seen clients, sorted by id so the sample depends only on
     * (seed, round, attempt) and the registered set, not on arrival order */
    double stale = 3.0 * (double)e->cfg.net.heartbeat_ms / 1000.0 + e->cfg.federation.round_timeout;
    size_t n = 0;
    if (e->cap_sampled < e->n_clients) {
        size_t *s = realloc(e->sampled, (e->n_clients + 1) * sizeof *s);
        if (!s)
            return fail_run(e, SL_ENOMEM, "out of memory (sampling)");
        e->sampled = s;
        e->cap_sampled = e->n_clients + 1;
    }
    for (size_t k = 0; k < e->n_clients; k++)
        if (e->clients[k].live && now - e->clients[k].last_seen <= stale)
            e->sampled[n++] = k;
    if (sort_by_id(e, e->sampled, n))
        return fail_run(e, SL_ENOMEM, "out of memory (sampling)");
    size_t m = (size_t)ceil(e->cfg.federation.fraction * (double)n);
    if (m < (size_t)e->cfg.federation.min_clients)
        m = (size_t)e->cfg.federation.min_clients;
    if (e->cfg.federation.max_clients > 0 && m > (size_t)e->cfg.federation.max_clients)
        m = (size_t)e->cfg.federation.max_clients;
    if (m > n)
        m = n;
    sl_rng_t rng;
    sl_rng_init(&rng, (uint64_t)e->cfg.run.seed, "sample", e->round, e->attempt);
    for (size_t i = 0; i < m; i++) { /* partial Fisher-Yates */
        size_t j = i + (size_t)sl_rng_below(&rng, n - i);
        size_t t = e->sampled[i];
        e->sampled[i] = e->sampled[j];
        e->sampled[j] = t;
    }
    sl_rng_wipe(&rng);
    if (sort_by_id(e, e->sampled, m))
        return fail_run(e, SL_ENOMEM, "out of memory (sampling)");
    e->n_sampled = m;
    e->n_answered = 0;
    e->n_left = 0;

    uint64_t bytes_up = e->rep.bytes_up, bytes_down = e->rep.bytes_down;
    sl_round_report_init(&e->rep, e->round);
    if (e->attempt > 0) { /* traffic of failed attempts stays in the round's totals */
        e->rep.bytes_up = bytes_up;
        e->rep.bytes_down = bytes_down;
    }
    e->rep.attempt = e->attempt;
    e->rep.sampled = m;
    e->loss_sum = e->loss_w = e->eval_loss_sum = e->eval_acc_sum = 0;
    e->eval_n = 0;
    if (e->attempt == 0)
        e->round_start = now;
    e->deadline = now + e->cfg.federation.round_timeout;

    uint64_t tag = round_tag(e);
    e->inflight = 0;
    e->wq_head = e->wq_tail = 0;
    if (e->cap_waitq < m) {
        size_t *q = realloc(e->waitq, m * sizeof *q);
        if (!q)
            return fail_run(e, SL_ENOMEM, "out of memory (upload queue)");
        e->waitq = q;
        e->cap_waitq = m;
    }
    uint64_t *ids = malloc((m ? m : 1) * sizeof *ids);
    if (!ids)
        return fail_run(e, SL_ENOMEM, "out of memory (sampling)");
    for (size_t i = 0; i < m; i++) {
        client_t *c = &e->clients[e->sampled[i]];
        c->tag = tag;
        c->answered = 0;
        c->granted = 0;
        c->waiting = 0;
        ids[i] = c->id;
    }
    sl_agg_emit_t emit = {agg_emit, e, now};
    int rc = e->agg->begin_round(e->agg->self, e->round, ids, m, &emit);
    free(ids);
    if (rc)
        return fail_hook(e, rc, "aggregator begin_round");

    sl_task_info_t *t = &e->task;
    memset(t, 0, sizeof *t);
    t->attempt = e->attempt;
    t->local_epochs = (uint32_t)e->cfg.train.local_epochs;
    t->local_steps = (uint64_t)e->cfg.train.local_steps;
    t->batch_size = (uint32_t)e->cfg.train.batch_size;
    t->lr = e->cfg.train.lr;
    t->fedprox_mu = e->cfg.train.fedprox_mu;
    t->want_eval = (uint8_t)eval_due(e, e->round);
    t->secagg = (uint8_t)(e->agg->secure ? 1 : 0);
    t->ask_upload = (uint8_t)(e->max_uploads > 0 && !e->agg->secure);
    t->dp_mode = (uint8_t)e->cfg.dp.mode;
    t->dp_clip = e->cfg.dp.mode ? e->cfg.dp.clip : 0.0;
    t->dp_noise = e->cfg.dp.mode ? e->cfg.dp.noise_multiplier : 0.0;
    if (e->hooks.prepare_task && (rc = e->hooks.prepare_task(e->hooks.hook_ctx, e->round, t)) < 0)
        return fail_hook(e, rc, "prepare_task");
    for (size_t i = 0; i < m; i++)
        if ((rc = queue_task(e, e->sampled[i])))
            return fail_run(e, rc, sl_last_error());
    SL_INFO("coordinator: round %llu%s: %zu of %zu clients sampled", (unsigned long long)e->round,
            e->attempt ? " (retry)" : "", m, n);
    return 0;
}

static int start_final_eval(sl_engine_t *e, double now)
{
    e->state = SL_ENGINE_FINAL_EVAL;
    if (refresh_bcast(e))
        return fail_run(e, SL_ENOMEM, "out of memory (broadcast snapshot)");
    e->fe_sent = e->fe_answered = 0;
    e->fe_loss = e->fe_acc = e->fe_f1 = 0;
    memset(&e->fe, 0, sizeof e->fe);
    e->deadline = now + e->cfg.federation.round_timeout;
    uint64_t tag = (e->round << 16) | 0xffffu;
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_EVALUATE, e->round, SL_WIRE_COORDINATOR);
    m.n = e->dim;
    m.vec = sl_shared_buf_data(e->bcast);
    int rc = sl_wire_encode(&m, &e->enc);
    if (rc)
        return fail_run(e, rc, sl_last_error());
    size_t off = 0;
    if ((rc = arena_put(e, e->enc.data, e->enc.len, &off)))
        return fail_run(e, rc, sl_last_error());
    for (size_t k = 0; k < e->n_clients; k++) {
        client_t *c = &e->clients[k];
        if (!c->live)
            continue;
        c->eval_tag = tag;
        c->eval_answered = 0;
        if ((rc = push_out(e, &c->peer, c->id, off, e->enc.len, sl_shared_buf_data(e->bcast), 0,
                           e->dim * sizeof(float), e->bcast)))
            return fail_run(e, rc, sl_last_error());
        e->fe_sent++;
    }
    if (e->fe_sent == 0)
        return finish_run(e, "completed");
    return 0;
}

static int write_checkpoint(sl_engine_t *e)
{
    if (!e->runlog)
        return 0;
    sl_checkpoint_t ck;
    int rc = sl_engine_checkpoint(e, &ck);
    if (rc)
        return rc;
    rc = sl_checkpoint_write(sl_runlog_checkpoint_path(e->runlog), &ck);
    sl_checkpoint_free(&ck);
    return rc;
}

static int close_round(sl_engine_t *e, double now)
{
    /* who did not answer is dropped for this round (and may be sampled again later) */
    uint64_t tag = round_tag(e);
    int rc;
    for (size_t i = 0; i < e->n_sampled; i++) {
        client_t *c = &e->clients[e->sampled[i]];
        if (c->tag == tag && !c->answered) {
            e->rep.dropped++;
            /* a secure aggregator's stages have their own deadlines: telling it now would
             * only advance a protocol whose round is over */
            if (e->agg->client_dropped && !e->agg->secure) {
                sl_agg_emit_t emit = {agg_emit, e, now};
                if ((rc = e->agg->client_dropped(e->agg->self, c->id, &emit)))
                    return fail_hook(e, rc, "aggregator client_dropped");
            }
        }
    }
    size_t quorum = (size_t)e->cfg.federation.min_clients;
    sl_agg_result_t res = {0, 0};
    int agg_rc = SL_EQUORUM;
    char agg_why[200] = "";
    if (e->rep.reported >= quorum) {
        agg_rc = e->agg->finish(e->agg->self, e->agg_out, e->dim, &res);
        if (agg_rc == SL_EQUORUM) /* e.g. the secure protocol aborted: say why */
            snprintf(agg_why, sizeof agg_why, " (%s)", sl_last_error());
    }
    if (agg_rc == SL_EQUORUM || (agg_rc == 0 && res.count < quorum)) {
        e->attempts_total++;
        char msg[400];
        snprintf(msg, sizeof msg, "round %llu: %zu of %zu sampled clients reported, quorum is %zu%s",
                 (unsigned long long)e->round, agg_rc == 0 ? res.count : e->rep.reported, e->rep.sampled,
                 quorum, agg_why);
        if (e->cfg.federation.quorum_policy == SL_QUORUM_FAIL)
            return fail_run(e, SL_EQUORUM, msg);
        if (e->attempt >= (uint32_t)e->cfg.federation.max_retries) {
            char m2[480];
            snprintf(m2, sizeof m2, "%s (after %u retries)", msg, e->attempt);
            return fail_run(e, SL_EQUORUM, m2);
        }
        SL_WARN("coordinator: %s; retrying (%u of %lld)", msg, e->attempt + 1,
                (long long)e->cfg.federation.max_retries);
        e->attempt++;
        return start_attempt(e, now);
    }
    if (agg_rc)
        return agg_failed(e, agg_rc, "aggregator finish");
    if ((rc = sl_strategy_apply(e->strategy, e->global, e->agg_out)))
        return fail_hook(e, rc, "strategy");
    sl_round_report_t *r = &e->rep;
    r->reported = res.count;
    if (e->agg->report)
        e->agg->report(e->agg->self, r);
    if (e->loss_w > 0)
        r->train_loss = e->loss_sum / e->loss_w;
    if (e->eval_n > 0) {
        r->eval_loss = e->eval_loss_sum / (double)e->eval_n;
        r->accuracy = e->eval_acc_sum / (double)e->eval_n;
        r->eval_examples = e->eval_n;
    }
    if (e->hooks.central_eval && eval_due(e, e->round)) {
        sl_eval_info_t ev = {0, NAN, NAN, NAN};
        if ((rc = e->hooks.central_eval(e->hooks.hook_ctx, e->round, e->global, e->dim, &ev)) < 0)
            return fail_hook(e, rc, "central_eval");
        r->central_loss = ev.loss;
        r->central_accuracy = ev.accuracy;
        r->central_f1 = ev.macro_f1;
    }
    r->round_seconds = now - e->round_start;
    int budget = 0;
    if (e->hooks.round_end && (rc = e->hooks.round_end(e->hooks.hook_ctx, r, e->global, e->dim)) < 0) {
        if (rc != SL_EBUDGET)
            return fail_hook(e, rc, "round_end");
        budget = 1;
    }
    e->completed = e->round;
    e->last = *r;
    e->have_last = 1;
    if (e->runlog) {
        if ((rc = sl_runlog_round(e->runlog, r)) || (rc = write_checkpoint(e)))
            return fail_hook(e, rc, "run folder");
    }
    SL_INFO("coordinator: round %llu done: %zu/%zu updates, %zu dropped, %zu late, train loss %.4f",
            (unsigned long long)e->round, r->reported, r->sampled, r->dropped, r->late, r->train_loss);
    if (budget)
        return finish_run(e, "budget");
    if (e->round >= (uint64_t)e->cfg.federation.rounds) {
        if (e->final_eval)
            return start_final_eval(e, now);
        return finish_run(e, "completed");
    }
    e->round++;
    e->attempt = 0;
    memset(&e->rep, 0, sizeof e->rep);
    return start_attempt(e, now);
}

static void finish_final_eval(sl_engine_t *e)
{
    if (e->fe.examples > 0) {
        e->fe.loss = e->fe_loss / (double)e->fe.examples;
        e->fe.accuracy = e->fe_acc / (double)e->fe.examples;
        e->fe.macro_f1 = e->fe_f1 / (double)e->fe.examples;
        SL_INFO("coordinator: final federated evaluation: %llu examples, loss %.4f, accuracy %.4f",
                (unsigned long long)e->fe.examples, e->fe.loss, e->fe.accuracy);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int sl_engine_new(sl_engine_t **out, const sl_engine_opts_t *o)
{
    *out = NULL;
    if (!o || !o->cfg || o->dim == 0 || !o->init) {
        if (o && o->aggregator) {
            sl_aggregator_t *a = o->aggregator;
            sl_aggregator_destroy(&a);
        }
        return sl_error(SL_EINVAL, "engine: need cfg, dim > 0 and an initial vector");
    }
    int rc = 0;
    sl_engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        sl_aggregator_t *a = o->aggregator;
        sl_aggregator_destroy(&a);
        return sl_error(SL_ENOMEM, "engine: out of memory");
    }
    e->cfg = *o->cfg;
    e->dim = o->dim;
    e->layout = o->layout;
    e->hooks = o->hooks;
    e->runlog = o->runlog;
    e->agg = o->aggregator;
    e->final_eval = o->final_eval;
    e->max_uploads = o->max_uploads ? o->max_uploads : (size_t)o->cfg->federation.upload_window;
    e->start_timeout = o->start_timeout;
    e->start_clients = o->start_clients ? o->start_clients : (size_t)e->cfg.federation.min_clients;
    e->first_tick = NAN;
    e->log_window = -1e300;
    for (size_t i = 0; i < BAN_SLOTS; i++)
        e->bans[i].until = -INFINITY;
    snprintf(e->status, sizeof e->status, "waiting for clients");
    e->global = malloc(o->dim * sizeof *e->global);
    e->agg_out = malloc(o->dim * sizeof *e->agg_out);
    if (!e->global || !e->agg_out) {
        rc = sl_error(SL_ENOMEM, "engine: out of memory (dim %zu)", o->dim);
        goto fail;
    }
    memcpy(e->global, o->init, o->dim * sizeof *e->global);
    int strat = e->cfg.federation.strategy;
    int robust = strat == SL_STRAT_MEDIAN || strat == SL_STRAT_TRIMMED_MEAN;
    if (!e->agg) {
        if (strat == SL_STRAT_MEDIAN)
            rc = sl_aggregator_median_new(&e->agg, o->dim);
        else if (strat == SL_STRAT_TRIMMED_MEAN)
            rc = sl_aggregator_trimmed_mean_new(&e->agg, o->dim, e->cfg.federation.trim_fraction);
        else
            rc = sl_aggregator_mean_new(&e->agg, o->dim);
        if (rc)
            goto fail;
    }
    if ((robust || e->agg->buffers) && (e->cfg.secagg.enabled || e->agg->secure)) {
        rc = sl_error(SL_ECONFIG,
                      "engine: the %s aggregator needs individual updates; it cannot run with "
                      "secure aggregation ([secagg] enabled = true)",
                      robust ? sl_config_enum_name("federation", "strategy", strat) : e->agg->name);
        goto fail;
    }
    if (!e->agg->begin_round || !e->agg->finish || (!e->agg->secure && !e->agg->add_update) ||
        (e->agg->secure && !e->agg->secagg_message)) {
        rc = sl_error(SL_EINVAL, "engine: aggregator \"%s\" lacks a required function",
                      e->agg->name ? e->agg->name : "?");
        goto fail;
    }
    if ((rc = sl_strategy_new(&e->strategy, &e->cfg, o->dim)))
        goto fail;
    if ((rc = rebuild_tables(e, 16)))
        goto fail;
    e->round = 1;
    if (o->resume) {
        const sl_checkpoint_t *ck = o->resume;
        if (ck->seed != (uint64_t)e->cfg.run.seed) {
            rc = sl_error(SL_ECONFIG, "engine: checkpoint was made with seed %llu, the run has seed %lld",
                          (unsigned long long)ck->seed, (long long)e->cfg.run.seed);
            goto fail;
        }
        if (ck->dim != o->dim) {
            rc = sl_error(SL_EMISMATCH, "engine: checkpoint vector has %zu values, the model has %zu",
                          ck->dim, o->dim);
            goto fail;
        }
        memcpy(e->global, ck->global, o->dim * sizeof *e->global);
        if ((rc = sl_strategy_load(e->strategy, ck->strategy, ck->strategy_len)))
            goto fail;
        if (e->hooks.ext_load && (rc = e->hooks.ext_load(e->hooks.hook_ctx, ck->ext, ck->ext_len)) < 0)
            goto fail;
        e->completed = ck->round;
        e->round = ck->round + 1;
        e->bytes_up_total = ck->bytes_up;
        e->bytes_down_total = ck->bytes_down;
        SL_INFO("coordinator: resuming after round %llu", (unsigned long long)ck->round);
    }
    if (e->completed >= (uint64_t)e->cfg.federation.rounds) {
        e->round = e->completed;
        e->state = SL_ENGINE_DONE;
        snprintf(e->status, sizeof e->status, "completed");
    }
    *out = e;
    return 0;
fail:
    sl_engine_destroy(&e);
    return rc;
}

void sl_engine_destroy(sl_engine_t **pe)
{
    if (!pe || !*pe)
        return;
    sl_engine_t *e = *pe;
    begin_call(e); /* drop the outbox's buffer references */
    sl_shared_buf_release(&e->bcast);
    free(e->global);
    free(e->agg_out);
    sl_aggregator_destroy(&e->agg);
    sl_strategy_destroy(&e->strategy);
    free(e->clients);
    free(e->by_peer);
    free(e->by_id);
    free(e->sampled);
    free(e->waitq);
    free(e->out);
    free(e->arena);
    free(e->view);
    sl_wire_buf_free(&e->enc);
    free(e);
    *pe = NULL;
}

/* ---- input ------------------------------------------------------------------------------------ */

/* Count an invalid message against a registered client; ban it past the limit. */
static int client_left(sl_engine_t *e, int k, double now);

static void strike(sl_engine_t *e, int k, double now)
{
    if (k < 0)
        return;
    client_t *c = &e->clients[k];
    if (++c->invalid >= (uint32_t)e->cfg.net.max_invalid_messages) {
        char ps[96];
        peer_str(&c->peer, ps, sizeof ps);
        warn_peer(e, now, "coordinator: client %llu (%s) sent %u invalid messages: refused for %.0f s",
                  (unsigned long long)c->id, ps, c->invalid, e->cfg.net.cooldown_seconds);
        ban(e, &c->peer, now);
        c->live = 0;
        c->invalid = 0;
        /* Its messages are ignored for the cool-down. Plain rounds keep its place (it may
         * rejoin after the cool-down and still answer); a secure protocol cannot wait for
         * it, so under SecAgg it has left the round. A failure here has already failed the
         * run; the caller's reply is harmless then. */
        if (e->agg->secure)
            (void)client_left(e, k, now);
    }
}

static int release_credit(sl_engine_t *e, client_t *c);

static int handle_hello(sl_engine_t *e, const sl_peer_t *peer, const sl_msg_t *m, double now)
{
    char ps[96];
    peer_str(peer, ps, sizeof ps);
    uint32_t chosen = m->version < SL_WIRE_VERSION ? m->version : SL_WIRE_VERSION;
    uint32_t need = m->hello.version_min > SL_WIRE_VERSION_MIN ? m->hello.version_min : SL_WIRE_VERSION_MIN;
    if (chosen < need) {
        char why[200];
        snprintf(why, sizeof why, "no common protocol version: client speaks %u..%u, coordinator %d..%d",
                 m->hello.version_min, m->version, SL_WIRE_VERSION_MIN, SL_WIRE_VERSION);
        warn_peer(e, now, "coordinator: HELLO from client %llu (%s) refused: %s",
                  (unsigned long long)m->sender, ps, why);
        return send_error(e, peer, 0, SL_WERR_VERSION, why);
    }
    if (m->hello.dim != e->dim || (e->layout && m->hello.layout && m->hello.layout != e->layout)) {
        char why[200];
        snprintf(why, sizeof why,
                 "model layout differs: client has %llu trainable values (layout %016llx), the run "
                 "has %zu (layout %016llx)",
                 (unsigned long long)m->hello.dim, (unsigned long long)m->hello.layout, e->dim,
                 (unsigned long long)e->layout);
        warn_peer(e, now, "coordinator: HELLO from client %llu (%s) refused: %s",
                  (unsigned long long)m->sender, ps, why);
        return send_error(e, peer, 0, SL_WERR_LAYOUT, why);
    }
    if (e->hooks.authorize) {
        int rc = e->hooks.authorize(e->hooks.hook_ctx, m->sender, peer, &m->hello);
        if (rc < 0) {
            char why[300];
            snprintf(why, sizeof why, "not authorized: %s", sl_last_error());
            warn_peer(e, now, "coordinator: HELLO from client %llu (%s) refused: %s",
                      (unsigned long long)m->sender, ps, why);
            return send_error(e, peer, 0, SL_WERR_REFUSED, why);
        }
    }
    int k = find_by_id(e, m->sender);
    int rc, moved = 0;
    if (k < 0) {
        if (e->n_clients == e->cap_clients) {
            size_t cap = e->cap_clients ? 2 * e->cap_clients : 64;
            client_t *c = realloc(e->clients, cap * sizeof *c);
            if (!c)
                return sl_error(SL_ENOMEM, "engine: out of memory (registry)");
            e->clients = c;
            e->cap_clients = cap;
        }
        k = (int)e->n_clients++;
        memset(&e->clients[k], 0, sizeof e->clients[k]);
        e->clients[k].id = m->sender;
        e->clients[k].peer = *peer;
        if (2 * (e->n_clients + e->stale_peers) + 2 > e->table_cap) {
            if ((rc = rebuild_tables(e, e->n_clients + e->stale_peers)))
                return rc;
        } else {
            table_insert(e->by_peer, e->table_cap, hash_bytes(peer->id, peer->len), k);
            table_insert(e->by_id, e->table_cap, hash_u64(m->sender), k);
        }
        SL_DEBUG("coordinator: client %llu registered (%s, %llu train / %llu test examples)",
                 (unsigned long long)m->sender, ps, (unsigned long long)m->hello.train_examples,
                 (unsigned long long)m->hello.test_examples);
    } else if (!sl_peer_equal(&e->clients[k].peer, peer)) {
        /* reconnect: same client id from a new connection replaces the old one */
        int other = find_by_peer(e, peer);
        if (other >= 0 && other != k)
            e->clients[other].live = 0; /* that routing id now belongs to this client */
        e->clients[k].peer = *peer;
        e->stale_peers++;
        moved = 1;
        if (2 * (e->n_clients + e->stale_peers) + 2 > e->table_cap) {
            if ((rc = rebuild_tables(e, e->n_clients)))
                return rc;
        } else {
            table_insert(e->by_peer, e->table_cap, hash_bytes(peer->id, peer->len), k);
        }
        SL_INFO("coordinator: client %llu reconnected (%s)", (unsigned long long)m->sender, ps);
    }
    client_t *c = &e->clients[k];
    int prev_live = c->live;
    c->live = 1;
    c->last_seen = now;
    c->train_examples = m->hello.train_examples;
    c->test_examples = m->hello.test_examples;
    sl_msg_t w;
    sl_msg_init(&w, SL_MSG_WELCOME, e->round, SL_WIRE_COORDINATOR);
    w.version = chosen;
    w.welcome.client_id = c->id;
    w.welcome.dim = e->dim;
    w.welcome.layout = e->layout;
    w.welcome.heartbeat_ms = (uint32_t)e->cfg.net.heartbeat_ms;
    w.welcome.rounds = (uint64_t)e->cfg.federation.rounds;
    if ((rc = send_msg(e, peer, c->id, &w)))
        return rc;
    /* a sampled client that reconnected mid-round (new connection, or it was refused and
     * came back) gets its task again; a repeated HELLO on the same connection does not */
    if (!moved && prev_live)
        return 0;
    if (e->state == SL_ENGINE_ROUND && c->tag == round_tag(e) && !c->answered) {
        if ((rc = release_credit(e, c))) /* it trains again and asks again */
            return rc;
        return queue_task(e, (size_t)k);
    }
    if (e->state == SL_ENGINE_FINAL_EVAL && c->eval_tag == ((e->round << 16) | 0xffffu) &&
        !c->eval_answered) {
        sl_msg_t ev;
        sl_msg_init(&ev, SL_MSG_EVALUATE, e->round, SL_WIRE_COORDINATOR);
        ev.n = e->dim;
        ev.vec = sl_shared_buf_data(e->bcast);
        return send_msg(e, peer, c->id, &ev);
    }
    return 0;
}

static double norm2(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * (double)v[i];
    return sqrt(s);
}

static int maybe_close(sl_engine_t *e, double now)
{
    if (e->state != SL_ENGINE_ROUND)
        return 0;
    if (e->n_answered + e->n_left < e->n_sampled)
        return 0;
    if (e->agg->secure && e->agg->ready && !e->agg->ready(e->agg->self))
        return 0;
    return close_round(e, now);
}

/* Hand free upload credits to waiting clients, in READY order. */
static int grant_next(sl_engine_t *e)
{
    uint64_t tag = round_tag(e);
    while (e->inflight < e->max_uploads && e->wq_head < e->wq_tail) {
        client_t *c = &e->clients[e->waitq[e->wq_head++]];
        if (!c->waiting || c->tag != tag || c->answered || !c->live)
            continue;
        c->waiting = 0;
        c->granted = 1;
        e->inflight++;
        sl_msg_t g;
        sl_msg_init(&g, SL_MSG_GRANT, e->round, SL_WIRE_COORDINATOR);
        int rc = send_msg(e, &c->peer, c->id, &g);
        if (rc)
            return rc;
    }
    return 0;
}

/* A client is done with the round (answered, rejected, left): free its credit. */
static int release_credit(sl_engine_t *e, client_t *c)
{
    c->waiting = 0;
    if (!c->granted)
        return 0;
    c->granted = 0;
    if (e->inflight)
        e->inflight--;
    return grant_next(e);
}

static int handle_ready(sl_engine_t *e, int k, const sl_msg_t *m)
{
    client_t *c = &e->clients[k];
    if (e->state != SL_ENGINE_ROUND || m->round != e->round || c->tag != round_tag(e) || c->answered ||
        e->max_uploads == 0 || e->agg->secure) {
        e->rep.late++; /* a straggler's READY, or one from an unsampled / finished client */
        return 0;
    }
    if (c->granted || c->waiting)
        return 0; /* repeated READY */
    if (e->wq_tail >= e->cap_waitq)
        return 0; /* cannot happen: one slot per sampled client */
    c->waiting = 1;
    e->waitq[e->wq_tail++] = (size_t)k;
    return grant_next(e);
}

static int handle_update(sl_engine_t *e, int k, const sl_msg_t *m, double now)
{
    client_t *c = &e->clients[k];
    if (e->state != SL_ENGINE_ROUND || m->round < e->round) {
        e->rep.late++;
        SL_DEBUG("coordinator: late update from client %llu for round %llu discarded",
                 (unsigned long long)c->id, (unsigned long long)m->round);
        return 0;
    }
    if (m->round > e->round) {
        strike(e, k, now);
        return send_error(e, &c->peer, c->id, SL_WERR_UNEXPECTED, "update for a future round");
    }
    if (c->tag != round_tag(e) || c->answered) {
        /* not sampled in this attempt (a straggler of a retried attempt) or a duplicate */
        e->rep.late++;
        SL_DEBUG("coordinator: %s update from client %llu discarded", c->answered ? "duplicate" : "unsampled",
                 (unsigned long long)c->id);
        return 0;
    }
    int secure = e->agg->secure;
    if ((!secure && m->n != e->dim) || (secure && m->n != 0)) {
        strike(e, k, now);
        char why[160];
        snprintf(why, sizeof why, "update has %llu values, expected %zu", (unsigned long long)m->n,
                 secure ? (size_t)0 : e->dim);
        return send_error(e, &c->peer, c->id, SL_WERR_LAYOUT, why);
    }
    double bound = e->cfg.federation.update_norm_bound;
    if (!secure && bound > 0) {
        double nrm = norm2(m->vec, e->dim);
        if (nrm > bound) {
            e->rep.rejected++;
            c->answered = 1;
            e->n_left++;
            if (release_credit(e, c))
                return fail_run(e, SL_ENOMEM, sl_last_error());
            warn_peer(e, now,
                      "coordinator: update of client %llu rejected: L2 norm %.4g above the bound %.4g",
                      (unsigned long long)c->id, nrm, bound);
            int rc = send_error(e, &c->peer, c->id, SL_WERR_UNEXPECTED,
                                "update norm above federation.update_norm_bound");
            if (rc)
                return rc;
            return maybe_close(e, now);
        }
    }
    double w = (double)m->update.examples;
    if (e->cfg.federation.weight_cap > 0 && w > e->cfg.federation.weight_cap)
        w = e->cfg.federation.weight_cap;
    if (!secure) {
        int rc = e->agg->add_update(e->agg->self, c->id, m->vec, e->dim, w);
        if (rc == SL_ERANGE || rc == SL_EINVAL) { /* the update's fault (absurd values or weight) */
            char why[SL_WIRE_MAX_STR + 1];
            snprintf(why, sizeof why, "update refused: %s", sl_last_error());
            warn_peer(e, now, "coordinator: client %llu: %s", (unsigned long long)c->id, why);
            e->rep.rejected++;
            c->answered = 1;
            e->n_left++;
            if ((rc = release_credit(e, c)) || (rc = send_error(e, &c->peer, c->id, SL_WERR_UNEXPECTED, why)))
                return fail_run(e, rc, sl_last_error());
            return maybe_close(e, now);
        }
        if (rc)
            return fail_hook(e, rc, "aggregator add_update");
    }
    c->answered = 1;
    e->n_answered++;
    e->rep.reported++;
    if (release_credit(e, c))
        return fail_run(e, SL_ENOMEM, sl_last_error());
    e->loss_sum += m->update.train_loss * (double)m->update.examples;
    e->loss_w += (double)m->update.examples;
    if (m->update.has_eval && m->update.eval_examples > 0) {
        e->eval_loss_sum += m->update.eval_loss * (double)m->update.eval_examples;
        e->eval_acc_sum += m->update.eval_accuracy * (double)m->update.eval_examples;
        e->eval_n += m->update.eval_examples;
    }
    return maybe_close(e, now);
}

/* Tell the aggregator that client c of the running attempt left: secure aggregators also
 * after its UPDATE (their protocol still waits for it), the others only before. */
static int agg_client_dropped(sl_engine_t *e, const client_t *c, int had_answered, double now)
{
    if (!e->agg->client_dropped || (had_answered && !e->agg->secure))
        return 0;
    sl_agg_emit_t emit = {agg_emit, e, now};
    int rc = e->agg->client_dropped(e->agg->self, c->id, &emit);
    return rc ? agg_failed(e, rc, "aggregator client_dropped") : 0;
}

/* A registered client is gone (BYE, unreachable, banned): out of the running round. */
static int client_left(sl_engine_t *e, int k, double now)
{
    client_t *c = &e->clients[k];
    c->live = 0;
    int rc = 0;
    if (e->state == SL_ENGINE_ROUND && c->tag == round_tag(e)) {
        int had_answered = c->answered;
        if (!c->answered) {
            c->answered = 1;
            e->n_left++;
            if (release_credit(e, c))
                SL_WARN("coordinator: %s", sl_last_error());
        }
        rc = agg_client_dropped(e, c, had_answered, now);
    }
    if (e->state == SL_ENGINE_FINAL_EVAL && c->eval_tag == ((e->round << 16) | 0xffffu) &&
        !c->eval_answered) {
        c->eval_answered = 1;
        e->fe_answered++;
    }
    return rc;
}

static int after_fe(sl_engine_t *e)
{
    if (e->state == SL_ENGINE_FINAL_EVAL && e->fe_answered >= e->fe_sent) {
        finish_final_eval(e);
        return finish_run(e, "completed");
    }
    return 0;
}

void sl_engine_on_bad_frame(sl_engine_t *e, const sl_peer_t *peer, double now)
{
    if (e->state == SL_ENGINE_DONE || e->state == SL_ENGINE_FAILED || is_banned(e, peer, now))
        return;
    int k = find_by_peer(e, peer);
    if (k >= 0)
        strike(e, k, now);
    else
        stranger_strike(e, peer, now);
}

int sl_engine_on_message(sl_engine_t *e, const sl_peer_t *peer, const uint8_t *hdr, size_t hdr_len,
                         const uint8_t *payload, size_t payload_len, double now)
{
    begin_call(e);
    e->last_now = now;
    if (e->state == SL_ENGINE_DONE || e->state == SL_ENGINE_FAILED)
        return 0;
    e->rep.bytes_up += hdr_len + payload_len;
    e->bytes_up_total += hdr_len + payload_len;
    if (is_banned(e, peer, now))
        return 0;
    int k = find_by_peer(e, peer);
    if (k >= 0) { /* rate limit per registered client */
        client_t *c = &e->clients[k];
        if (now - c->rl_window >= 1.0) {
            c->rl_window = now;
            c->rl_count = 0;
        }
        if (++c->rl_count > (uint32_t)e->cfg.net.max_messages_per_second) {
            if (c->rl_count == (uint32_t)e->cfg.net.max_messages_per_second + 1)
                warn_peer(e, now, "coordinator: client %llu exceeds %lld messages/s: dropping",
                          (unsigned long long)c->id, (long long)e->cfg.net.max_messages_per_second);
            return 0;
        }
    } else if (stranger_over_rate(e, peer, now)) {
        return 0;
    }
    sl_wire_limits_t lim = {.max_payload_bytes = (size_t)e->cfg.net.max_message_bytes,
                            .max_vec = e->dim,
                            .max_blob = (size_t)e->cfg.net.max_message_bytes};
    sl_msg_t m;
    int rc = sl_wire_decode(hdr, hdr_len, payload, payload_len, &lim, &m);
    char ps[96];
    if (rc) {
        peer_str(peer, ps, sizeof ps);
        char why[SL_WIRE_MAX_STR + 1];
        snprintf(why, sizeof why, "%s", sl_last_error());
        warn_peer(e, now, "coordinator: invalid message from %s: %s", ps, why);
        if (k >= 0)
            strike(e, k, now);
        else
            stranger_strike(e, peer, now);
        return send_error(e, peer, k >= 0 ? e->clients[k].id : 0, SL_WERR_MALFORMED, why);
    }
    if (m.type == SL_MSG_HELLO) {
        rc = handle_hello(e, peer, &m, now);
        return rc ? fail_run(e, rc, sl_last_error()) : 0;
    }
    if (k < 0 || !e->clients[k].live) {
        if (m.type == SL_MSG_BYE || m.type == SL_MSG_ERROR)
            return 0; /* never answer these: no ping-pong of errors */
        return send_error(e, peer, 0, SL_WERR_NOT_REGISTERED, "not registered: send HELLO first");
    }
    client_t *c = &e->clients[k];
    if (m.sender != c->id) {
        peer_str(peer, ps, sizeof ps);
        warn_peer(e, now, "coordinator: %s registered as client %llu sent a %s as client %llu", ps,
                  (unsigned long long)c->id, sl_msg_type_name((int)m.type), (unsigned long long)m.sender);
        strike(e, k, now);
        return send_error(e, peer, c->id, SL_WERR_UNEXPECTED, "sender id does not match the registration");
    }
    c->last_seen = now;
    switch (m.type) {
    case SL_MSG_HEARTBEAT: {
        sl_msg_t h;
        sl_msg_init(&h, SL_MSG_HEARTBEAT, e->round, SL_WIRE_COORDINATOR);
        rc = send_msg(e, peer, c->id, &h);
        break;
    }
    case SL_MSG_UPDATE:
        rc = handle_update(e, k, &m, now);
        if (e->state == SL_ENGINE_FAILED)
            return rc;
        break;
    case SL_MSG_RESULT:
        if (e->state == SL_ENGINE_FINAL_EVAL && c->eval_tag == ((e->round << 16) | 0xffffu) &&
            !c->eval_answered && m.round == e->round) {
            c->eval_answered = 1;
            e->fe_answered++;
            e->fe.examples += m.eval.examples;
            e->fe_loss += m.eval.loss * (double)m.eval.examples;
            e->fe_acc += m.eval.accuracy * (double)m.eval.examples;
            e->fe_f1 += m.eval.macro_f1 * (double)m.eval.examples;
            return after_fe(e);
        }
        e->rep.late++;
        return 0;
    case SL_MSG_SECAGG_UP:
        if (!e->agg->secure || e->state != SL_ENGINE_ROUND || m.round != e->round || c->tag != round_tag(e)) {
            if (e->agg->secure && m.round < e->round) {
                e->rep.late++;
                return 0;
            }
            strike(e, k, now);
            return send_error(e, peer, c->id, SL_WERR_UNEXPECTED, "unexpected SECAGG_UP");
        }
        {
            sl_agg_emit_t emit = {agg_emit, e, now};
            rc = e->agg->secagg_message(e->agg->self, c->id, m.stage, m.blob, (size_t)m.n, &emit);
            if (rc == SL_EPROTO) { /* the peer's blob was bad: its problem, not the run's */
                char why[SL_WIRE_MAX_STR + 1];
                snprintf(why, sizeof why, "%s", sl_last_error());
                strike(e, k, now);
                return send_error(e, peer, c->id, SL_WERR_MALFORMED, why);
            }
            if (rc)
                return agg_failed(e, rc, "aggregator secagg_message");
            return maybe_close(e, now);
        }
    case SL_MSG_BYE:
        SL_INFO("coordinator: client %llu left: %s", (unsigned long long)c->id, m.why);
        if ((rc = client_left(e, k, now)))
            return rc;
        rc = maybe_close(e, now);
        if (!rc)
            rc = after_fe(e);
        return rc;
    case SL_MSG_ERROR:
        warn_peer(e, now, "coordinator: client %llu reports error %d: %s", (unsigned long long)c->id, m.code,
                  m.why);
        /* a client that failed its task is out of this round (but stays registered) */
        if (e->state == SL_ENGINE_ROUND && c->tag == round_tag(e)) {
            int had_answered = c->answered;
            if (!c->answered) {
                c->answered = 1;
                e->n_left++;
                if ((rc = release_credit(e, c)))
                    return fail_run(e, rc, sl_last_error());
            }
            if ((rc = agg_client_dropped(e, c, had_answered, now)))
                return rc;
            return maybe_close(e, now);
        }
        return 0;
    case SL_MSG_READY:
        rc = handle_ready(e, k, &m);
        break;
    default:
        strike(e, k, now);
        return send_error(e, peer, c->id, SL_WERR_UNEXPECTED, "message type not accepted by the coordinator");
    }
    if (rc && e->state != SL_ENGINE_FAILED)
        return fail_run(e, rc, sl_last_error());
    return rc;
}

int sl_engine_tick(sl_engine_t *e, double now)
{
    begin_call(e);
    e->last_now = now;
    if (isnan(e->first_tick))
        e->first_tick = now;
    int rc;
    switch (e->state) {
    case SL_ENGINE_WAITING: {
        size_t live = live_count(e, now);
        if (live >= e->start_clients || (e->start_timeout > 0 && now - e->first_tick >= e->start_timeout &&
                                         live >= (size_t)e->cfg.federation.min_clients))
            return start_attempt(e, now);
        return 0;
    }
    case SL_ENGINE_ROUND:
        if (e->agg->tick) {
            sl_agg_emit_t emit = {agg_emit, e, now};
            if ((rc = e->agg->tick(e->agg->self, now, &emit)))
                return agg_failed(e, rc, "aggregator tick");
        }
        if (now >= e->deadline)
            return close_round(e, now);
        return maybe_close(e, now);
    case SL_ENGINE_FINAL_EVAL:
        if (now >= e->deadline) {
            finish_final_eval(e);
            return finish_run(e, "completed");
        }
        return 0;
    default:
        return 0;
    }
}

int sl_engine_peer_gone(sl_engine_t *e, const sl_peer_t *peer, double now)
{
    begin_call(e);
    int k = find_by_peer(e, peer);
    if (k < 0 || e->state == SL_ENGINE_DONE || e->state == SL_ENGINE_FAILED)
        return 0;
    SL_INFO("coordinator: client %llu unreachable", (unsigned long long)e->clients[k].id);
    int rc = client_left(e, k, now);
    if (rc)
        return rc;
    rc = maybe_close(e, now);
    if (!rc)
        rc = after_fe(e);
    return rc;
}

int sl_engine_shutdown(sl_engine_t *e, const char *why)
{
    begin_call(e);
    if (e->state == SL_ENGINE_DONE || e->state == SL_ENGINE_FAILED)
        return 0;
    e->state = SL_ENGINE_DONE;
    snprintf(e->status, sizeof e->status, "stopped");
    write_summary(e);
    return send_bye_all(e, why ? why : "coordinator stopped");
}

double sl_engine_next_deadline(const sl_engine_t *e)
{
    switch (e->state) {
    case SL_ENGINE_WAITING:
        if (e->start_timeout > 0)
            return isnan(e->first_tick) ? 0.0 : e->first_tick + e->start_timeout;
        return isnan(e->first_tick) ? 0.0 : INFINITY;
    case SL_ENGINE_ROUND:
        /* the aggregator's own deadlines (SecAgg+ stages) come before the round's */
        if (e->agg->next_deadline)
            return fmin(e->deadline, e->agg->next_deadline(e->agg->self));
        return e->deadline;
    case SL_ENGINE_FINAL_EVAL:
        return e->deadline;
    default:
        return INFINITY;
    }
}

sl_engine_state_t sl_engine_state(const sl_engine_t *e)
{
    return e->state;
}
const char *sl_engine_status(const sl_engine_t *e)
{
    return e->status;
}
uint64_t sl_engine_round(const sl_engine_t *e)
{
    return e->round;
}
uint64_t sl_engine_rounds_completed(const sl_engine_t *e)
{
    return e->completed;
}
const float *sl_engine_global(const sl_engine_t *e, size_t *dim)
{
    if (dim)
        *dim = e->dim;
    return e->global;
}
size_t sl_engine_registered(const sl_engine_t *e)
{
    size_t n = 0;
    for (size_t k = 0; k < e->n_clients; k++)
        n += e->clients[k].live ? 1u : 0u;
    return n;
}
const sl_round_report_t *sl_engine_last_report(const sl_engine_t *e)
{
    return e->have_last ? &e->last : NULL;
}
const sl_eval_info_t *sl_engine_final_eval(const sl_engine_t *e)
{
    return &e->fe;
}

int sl_engine_checkpoint(const sl_engine_t *e, sl_checkpoint_t *ck)
{
    memset(ck, 0, sizeof *ck);
    ck->round = e->completed;
    ck->seed = (uint64_t)e->cfg.run.seed;
    ck->bytes_up = e->bytes_up_total;
    ck->bytes_down = e->bytes_down_total;
    ck->dim = e->dim;
    ck->global = malloc(e->dim * sizeof *ck->global);
    ck->strategy_len = sl_strategy_state_size(e->strategy);
    ck->strategy = malloc(ck->strategy_len);
    if (!ck->global || !ck->strategy) {
        sl_checkpoint_free(ck);
        return sl_error(SL_ENOMEM, "engine: out of memory (checkpoint)");
    }
    memcpy(ck->global, e->global, e->dim * sizeof *ck->global);
    int rc = sl_strategy_save(e->strategy, ck->strategy, ck->strategy_len);
    if (!rc && e->hooks.ext_save) {
        rc = e->hooks.ext_save(e->hooks.hook_ctx, &ck->ext, &ck->ext_len);
        if (rc > 0)
            rc = 0;
    }
    if (rc)
        sl_checkpoint_free(ck);
    return rc;
}
