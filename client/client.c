#include "client/client.h"

#include "core/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t hdr_off, hdr_len;
    const void *payload;
    size_t pay_off, pay_len;
} cout_t;

struct sl_client {
    sl_client_opts_t o;
    char mods[SL_WIRE_MAX_MODS][SL_WIRE_MOD_NAME];
    sl_client_state_t state;
    char status[320];
    float *own_delta;
    double next_hello, next_hb, last_heard;
    double hb_s, hello_s;
    uint64_t rounds_done;
    uint64_t round; /* round of the last TASK */
    sl_client_task_t task;
    int pending; /* an UPDATE waits for GRANT (upload credits) */
    sl_update_info_t pending_info;
    float *held; /* (dim) the pending delta, when the delta buffer is shared */
    cout_t *out;
    size_t n_out, cap_out;
    uint8_t *arena;
    size_t arena_len, arena_cap;
    sl_client_out_t *view;
    size_t cap_view;
    sl_wire_buf_t enc;
};

int sl_client_new(sl_client_t **out, const sl_client_opts_t *o)
{
    *out = NULL;
    if (!o || o->client_id == 0 || o->dim == 0 || !o->train)
        return sl_error(SL_EINVAL, "client: need client_id != 0, dim > 0 and a train callback");
    if (o->n_modalities > SL_WIRE_MAX_MODS)
        return sl_error(SL_EINVAL, "client: %zu modalities (max %d)", o->n_modalities, SL_WIRE_MAX_MODS);
    sl_client_t *c = calloc(1, sizeof *c);
    if (!c)
        return sl_error(SL_ENOMEM, "client: out of memory");
    c->o = *o;
    for (size_t i = 0; i < o->n_modalities; i++) {
        if (!o->modalities[i] || !o->modalities[i][0] || strlen(o->modalities[i]) >= SL_WIRE_MOD_NAME) {
            free(c);
            return sl_error(SL_EINVAL, "client: modality name %zu empty or too long", i);
        }
        snprintf(c->mods[i], sizeof c->mods[i], "%s", o->modalities[i]);
        c->o.modalities[i] = c->mods[i];
    }
    if (!o->scratch) {
        c->own_delta = calloc(o->dim, sizeof *c->own_delta);
        if (!c->own_delta) {
            free(c);
            return sl_error(SL_ENOMEM, "client: out of memory (dim %zu)", o->dim);
        }
    }
    c->hb_s = o->heartbeat_s > 0 ? o->heartbeat_s : 2.0;
    c->hello_s = o->hello_retry_s > 0 ? o->hello_retry_s : 2.0;
    c->last_heard = -INFINITY;
    c->next_hello = c->next_hb = INFINITY;
    snprintf(c->status, sizeof c->status, "not started");
    *out = c;
    return 0;
}

void sl_client_destroy(sl_client_t **pc)
{
    if (!pc || !*pc)
        return;
    sl_client_t *c = *pc;
    free(c->own_delta);
    free(c->held);
    free(c->out);
    free(c->arena);
    free(c->view);
    sl_wire_buf_free(&c->enc);
    free(c);
    *pc = NULL;
}

static float *delta_buf(sl_client_t *c)
{
    return c->o.scratch ? c->o.scratch : c->own_delta;
}

static int arena_put(sl_client_t *c, const void *p, size_t n, size_t *off)
{
    if (c->arena_len + n > c->arena_cap) {
        size_t cap = c->arena_cap ? c->arena_cap : 1024;
        while (cap < c->arena_len + n)
            cap *= 2;
        uint8_t *a = realloc(c->arena, cap);
        if (!a)
            return sl_error(SL_ENOMEM, "client: out of memory (outbox)");
        c->arena = a;
        c->arena_cap = cap;
    }
    if (n)
        memcpy(c->arena + c->arena_len, p, n);
    *off = c->arena_len;
    c->arena_len += n;
    return 0;
}

static int queue(sl_client_t *c, const sl_msg_t *m)
{
    int rc = sl_wire_encode(m, &c->enc);
    if (rc)
        return rc;
    if (c->n_out == c->cap_out) {
        size_t cap = c->cap_out ? 2 * c->cap_out : 8;
        cout_t *o = realloc(c->out, cap * sizeof *o);
        if (!o)
            return sl_error(SL_ENOMEM, "client: out of memory (outbox)");
        c->out = o;
        c->cap_out = cap;
    }
    cout_t *q = &c->out[c->n_out];
    memset(q, 0, sizeof *q);
    if ((rc = arena_put(c, c->enc.data, c->enc.len, &q->hdr_off)))
        return rc;
    q->hdr_len = c->enc.len;
    int kind = sl_msg_payload_kind(m->type);
    if (kind == 1 && m->n) {
        q->payload = m->vec;
        q->pay_len = (size_t)m->n * sizeof(float);
    } else if (kind == 2 && m->n) {
        if ((rc = arena_put(c, m->blob, (size_t)m->n, &q->pay_off)))
            return rc;
        q->pay_len = (size_t)m->n;
    }
    c->n_out++;
    return 0;
}

static int send_error(sl_client_t *c, int code, const char *why)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_ERROR, c->round, c->o.client_id);
    m.code = code;
    snprintf(m.why, sizeof m.why, "%s", why);
    return queue(c, &m);
}

static int send_hello(sl_client_t *c, double now)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_HELLO, 0, c->o.client_id);
    m.hello.version_min = SL_WIRE_VERSION_MIN;
    m.hello.train_examples = c->o.train_examples;
    m.hello.test_examples = c->o.test_examples;
    m.hello.dim = c->o.dim;
    m.hello.layout = c->o.layout;
    m.hello.n_modalities = (uint32_t)c->o.n_modalities;
    for (size_t i = 0; i < c->o.n_modalities; i++)
        snprintf(m.hello.modalities[i], SL_WIRE_MOD_NAME, "%s", c->mods[i]);
    c->state = SL_CLIENT_HELLO;
    c->next_hello = now + c->hello_s;
    snprintf(c->status, sizeof c->status, "registering");
    return queue(c, &m);
}

static void begin_call(sl_client_t *c)
{
    c->n_out = 0;
    c->arena_len = 0;
}

int sl_client_start(sl_client_t *c, double now)
{
    begin_call(c);
    if (c->state == SL_CLIENT_DONE || c->state == SL_CLIENT_FAILED)
        return sl_error(SL_ESTATE, "client %llu: already %s", (unsigned long long)c->o.client_id, c->status);
    return send_hello(c, now);
}

size_t sl_client_outbox(sl_client_t *c, const sl_client_out_t **msgs)
{
    if (c->n_out > c->cap_view) {
        sl_client_out_t *v = realloc(c->view, c->n_out * sizeof *v);
        if (!v) {
            *msgs = NULL;
            return 0;
        }
        c->view = v;
        c->cap_view = c->n_out;
    }
    for (size_t i = 0; i < c->n_out; i++) {
        c->view[i].header = c->arena + c->out[i].hdr_off;
        c->view[i].header_len = c->out[i].hdr_len;
        c->view[i].payload =
            c->out[i].payload ? c->out[i].payload : (c->out[i].pay_len ? c->arena + c->out[i].pay_off : NULL);
        c->view[i].payload_len = c->out[i].pay_len;
    }
    *msgs = c->view;
    return c->n_out;
}

static int do_task(sl_client_t *c, const sl_msg_t *m)
{
    if (m->n != c->o.dim) {
        char why[128];
        snprintf(why, sizeof why, "task vector has %llu values, this model has %zu", (unsigned long long)m->n,
                 c->o.dim);
        return send_error(c, SL_WERR_LAYOUT, why);
    }
    c->round = m->round;
    c->pending = 0; /* a new task supersedes an update still waiting for its credit */
    c->task.round = m->round;
    c->task.client_id = c->o.client_id;
    c->task.info = m->task;
    float *delta = delta_buf(c);
    sl_update_info_t info;
    memset(&info, 0, sizeof info);
    int rc = c->o.train(c->o.ctx, &c->task, m->vec, delta, &info);
    if (rc == 0 && c->o.privatize)
        rc = c->o.privatize(c->o.ctx, &c->task, delta, c->o.dim);
    if (rc) {
        char why[SL_WIRE_MAX_STR + 1];
        snprintf(why, sizeof why, "training failed: %s",
                 sl_last_error()[0] ? sl_last_error() : sl_strerror(rc));
        SL_WARN("client %llu: round %llu: %s", (unsigned long long)c->o.client_id,
                (unsigned long long)m->round, why);
        return send_error(c, SL_WERR_INTERNAL, why);
    }
    sl_msg_t u;
    sl_msg_init(&u, SL_MSG_UPDATE, m->round, c->o.client_id);
    u.update = info;
    if (!info.has_eval) {
        u.update.eval_examples = 0;
        u.update.eval_loss = u.update.eval_accuracy = 0;
    }
    if (m->task.ask_upload && !m->task.secagg) {
        /* upload credits: keep the delta, ask, send on GRANT */
        float *keep = delta;
        if (c->o.scratch) { /* the shared buffer is reused by the next virtual client */
            if (!c->held && !(c->held = malloc(c->o.dim * sizeof *c->held)))
                return sl_error(SL_ENOMEM, "client: out of memory (dim %zu)", c->o.dim);
            memcpy(c->held, delta, c->o.dim * sizeof *delta);
            keep = c->held;
        }
        sl_msg_t r;
        sl_msg_init(&r, SL_MSG_READY, m->round, c->o.client_id);
        /* validate the statistics now, so a bad result is reported at once */
        u.n = c->o.dim;
        u.vec = keep;
        sl_wire_buf_t probe = {0};
        rc = sl_wire_encode(&u, &probe);
        sl_wire_buf_free(&probe);
        if (rc) {
            char why[SL_WIRE_MAX_STR + 1];
            snprintf(why, sizeof why, "invalid training result: %s", sl_last_error());
            return send_error(c, SL_WERR_INTERNAL, why);
        }
        c->pending = 1;
        c->pending_info = u.update;
        c->rounds_done++;
        return queue(c, &r);
    }
    if (m->task.secagg) {
        if (!c->o.masked)
            return send_error(c, SL_WERR_INTERNAL, "secure aggregation requested but this client has none");
        if ((rc = c->o.masked(c->o.ctx, c, &c->task, delta, c->o.dim))) {
            char why[SL_WIRE_MAX_STR + 1];
            snprintf(why, sizeof why, "masking failed: %s", sl_last_error());
            return send_error(c, SL_WERR_INTERNAL, why);
        }
        u.n = 0;
    } else {
        u.n = c->o.dim;
        u.vec = delta;
    }
    size_t before = c->n_out;
    rc = queue(c, &u);
    if (rc == SL_EINVAL) { /* the callback produced something the wire refuses (e.g. NaN loss) */
        c->n_out = before;
        char why[SL_WIRE_MAX_STR + 1];
        snprintf(why, sizeof why, "invalid training result: %s", sl_last_error());
        SL_WARN("client %llu: %s", (unsigned long long)c->o.client_id, why);
        return send_error(c, SL_WERR_INTERNAL, why);
    }
    if (!rc)
        c->rounds_done++;
    return rc;
}

static int do_evaluate(sl_client_t *c, const sl_msg_t *m)
{
    if (m->n != c->o.dim)
        return send_error(c, SL_WERR_LAYOUT, "evaluate vector length differs from this model");
    if (!c->o.evaluate)
        return send_error(c, SL_WERR_INTERNAL, "this client does not evaluate");
    sl_eval_info_t ev = {0, 0, 0, 0};
    int rc = c->o.evaluate(c->o.ctx, m->round, m->vec, c->o.dim, &ev);
    if (rc) {
        char why[SL_WIRE_MAX_STR + 1];
        snprintf(why, sizeof why, "evaluation failed: %s", sl_last_error());
        return send_error(c, SL_WERR_INTERNAL, why);
    }
    sl_msg_t r;
    sl_msg_init(&r, SL_MSG_RESULT, m->round, c->o.client_id);
    r.eval = ev;
    size_t before = c->n_out;
    rc = queue(c, &r);
    if (rc == SL_EINVAL) {
        c->n_out = before;
        return send_error(c, SL_WERR_INTERNAL, "invalid evaluation result");
    }
    return rc;
}

int sl_client_on_message(sl_client_t *c, const uint8_t *hdr, size_t hdr_len, const uint8_t *payload,
                         size_t payload_len, double now)
{
    begin_call(c);
    if (c->state == SL_CLIENT_DONE || c->state == SL_CLIENT_FAILED || c->state == SL_CLIENT_INIT)
        return 0;
    sl_wire_limits_t lim = {.max_payload_bytes = c->o.dim * sizeof(float) + ((size_t)256 << 20),
                            .max_vec = c->o.dim,
                            .max_blob = (size_t)256 << 20};
    sl_msg_t m;
    int rc = sl_wire_decode(hdr, hdr_len, payload, payload_len, &lim, &m);
    if (rc) {
        char why[SL_WIRE_MAX_STR + 1];
        snprintf(why, sizeof why, "%s", sl_last_error());
        SL_WARN("client %llu: invalid message from the coordinator: %s", (unsigned long long)c->o.client_id,
                why);
        return send_error(c, SL_WERR_MALFORMED, why);
    }
    if (m.sender != SL_WIRE_COORDINATOR) {
        return send_error(c, SL_WERR_UNEXPECTED, "client messages are not accepted by a client");
    }
    c->last_heard = now;
    switch (m.type) {
    case SL_MSG_WELCOME:
        if (m.welcome.client_id != c->o.client_id || m.welcome.dim != c->o.dim ||
            (c->o.layout && m.welcome.layout && m.welcome.layout != c->o.layout)) {
            c->state = SL_CLIENT_FAILED;
            snprintf(c->status, sizeof c->status,
                     "coordinator welcomed client %llu with %llu values; we are %llu with %zu",
                     (unsigned long long)m.welcome.client_id, (unsigned long long)m.welcome.dim,
                     (unsigned long long)c->o.client_id, c->o.dim);
            return sl_error(SL_EMISMATCH, "client: %s", c->status);
        }
        if (c->state == SL_CLIENT_HELLO) {
            c->state = SL_CLIENT_READY;
            snprintf(c->status, sizeof c->status, "registered");
            SL_DEBUG("client %llu: registered (protocol v%u)", (unsigned long long)c->o.client_id, m.version);
        }
        if (m.welcome.heartbeat_ms > 0)
            c->hb_s = m.welcome.heartbeat_ms / 1000.0;
        c->next_hb = now + c->hb_s;
        return 0;
    case SL_MSG_TASK:
        if (c->state != SL_CLIENT_READY)
            return send_error(c, SL_WERR_UNEXPECTED, "task before welcome");
        rc = do_task(c, &m);
        c->next_hb = now + c->hb_s;
        return rc;
    case SL_MSG_EVALUATE:
        if (c->state != SL_CLIENT_READY)
            return send_error(c, SL_WERR_UNEXPECTED, "evaluate before welcome");
        rc = do_evaluate(c, &m);
        c->next_hb = now + c->hb_s;
        return rc;
    case SL_MSG_SECAGG_DOWN:
        if (c->state != SL_CLIENT_READY || !c->o.secagg)
            return send_error(c, SL_WERR_UNEXPECTED, "unexpected SECAGG_DOWN");
        c->round = m.round;
        rc = c->o.secagg(c->o.ctx, c, m.round, m.stage, m.blob, (size_t)m.n);
        if (rc) {
            char why[SL_WIRE_MAX_STR + 1];
            snprintf(why, sizeof why, "secure aggregation stage %u failed: %s", m.stage, sl_last_error());
            return send_error(c, SL_WERR_INTERNAL, why);
        }
        return 0;
    case SL_MSG_GRANT:
        if (!c->pending || m.round != c->round)
            return 0; /* a stale grant: nothing to upload */
        {
            sl_msg_t u;
            sl_msg_init(&u, SL_MSG_UPDATE, c->round, c->o.client_id);
            u.update = c->pending_info;
            u.n = c->o.dim;
            u.vec = c->o.scratch ? c->held : c->own_delta;
            c->pending = 0;
            return queue(c, &u);
        }
    case SL_MSG_HEARTBEAT:
        return 0;
    case SL_MSG_BYE:
        c->state = SL_CLIENT_DONE;
        snprintf(c->status, sizeof c->status, "coordinator said bye: %s", m.why);
        SL_INFO("client %llu: %s", (unsigned long long)c->o.client_id, c->status);
        return 0;
    case SL_MSG_ERROR:
        if (m.code == SL_WERR_NOT_REGISTERED) {
            SL_INFO("client %llu: coordinator does not know us (restarted?): registering again",
                    (unsigned long long)c->o.client_id);
            return send_hello(c, now);
        }
        if (c->state == SL_CLIENT_HELLO &&
            (m.code == SL_WERR_VERSION || m.code == SL_WERR_LAYOUT || m.code == SL_WERR_REFUSED)) {
            c->state = SL_CLIENT_FAILED;
            snprintf(c->status, sizeof c->status, "registration refused: %s", m.why);
            SL_ERROR("client %llu: %s", (unsigned long long)c->o.client_id, c->status);
            return sl_error(SL_EPERM, "client %llu: %s", (unsigned long long)c->o.client_id, c->status);
        }
        SL_WARN("client %llu: coordinator error %d: %s", (unsigned long long)c->o.client_id, m.code, m.why);
        return 0;
    default:
        return send_error(c, SL_WERR_UNEXPECTED, "message type not accepted by a client");
    }
}

int sl_client_tick(sl_client_t *c, double now)
{
    begin_call(c);
    if (c->state == SL_CLIENT_HELLO && now >= c->next_hello)
        return send_hello(c, now);
    if (c->state == SL_CLIENT_READY && now >= c->next_hb) {
        c->next_hb = now + c->hb_s;
        sl_msg_t m;
        sl_msg_init(&m, SL_MSG_HEARTBEAT, c->round, c->o.client_id);
        return queue(c, &m);
    }
    return 0;
}

int sl_client_leave(sl_client_t *c, const char *why)
{
    begin_call(c);
    if (c->state == SL_CLIENT_DONE || c->state == SL_CLIENT_FAILED || c->state == SL_CLIENT_INIT) {
        c->state = SL_CLIENT_DONE;
        return 0;
    }
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_BYE, c->round, c->o.client_id);
    snprintf(m.why, sizeof m.why, "%s", why ? why : "leaving");
    c->state = SL_CLIENT_DONE;
    snprintf(c->status, sizeof c->status, "left: %s", m.why);
    return queue(c, &m);
}

int sl_client_send_secagg(sl_client_t *c, uint32_t stage, const uint8_t *blob, size_t len)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_SECAGG_UP, c->round, c->o.client_id);
    m.stage = stage;
    m.n = len;
    m.blob = blob;
    return queue(c, &m);
}

double sl_client_next_deadline(const sl_client_t *c)
{
    if (c->state == SL_CLIENT_HELLO)
        return c->next_hello;
    if (c->state == SL_CLIENT_READY)
        return c->next_hb;
    return INFINITY;
}

sl_client_state_t sl_client_state(const sl_client_t *c)
{
    return c->state;
}
uint64_t sl_client_id(const sl_client_t *c)
{
    return c->o.client_id;
}
double sl_client_last_heard(const sl_client_t *c)
{
    return c->last_heard;
}
uint64_t sl_client_rounds_done(const sl_client_t *c)
{
    return c->rounds_done;
}
const char *sl_client_status(const sl_client_t *c)
{
    return c->status;
}
