#include "privacy/secagg/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "privacy/secagg/prg.h"
#include "privacy/secagg/quantize.h"
#include "privacy/secagg/secagg.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    sl_secagg_client_t *c;
    sl_rng_t rng;
    uint8_t drop_at;
    int gone;
    double time;
    size_t up, down;
} sim_client_t;

typedef struct {
    const sl_secagg_sim_opts_t *o;
    sl_secagg_sim_result_t *r;
    sl_secagg_server_t *s;
    sim_client_t *cl;
    sl_quant_t q;
    float *xf;
    uint32_t *input, *plain;
    sl_secagg_outbox_t sout, cout;
    double server_time, collect_time, unmask_time;
    int abort_rc;
    char abort_msg[512];
} sim_t;

/* Record the server's abort (code and message) the moment it happens. */
static void note_abort(sim_t *sm, sl_secagg_stage_t before, int rc)
{
    if (before != SL_SECAGG_ABORTED && sl_secagg_server_stage(sm->s) == SL_SECAGG_ABORTED && !sm->abort_rc) {
        sm->abort_rc = rc ? rc : SL_EABORT;
        snprintf(sm->abort_msg, sizeof sm->abort_msg, "%s", sl_last_error());
    }
}

static int msg_stage(const uint8_t *m) { return m[5] == SL_SECAGG_MSG_SETUP ? 1 : m[5] == SL_SECAGG_MSG_KEYS ? 2
                                                 : m[5] == SL_SECAGG_MSG_FORWARD ? 3
                                                 : m[5] == SL_SECAGG_MSG_UNMASK_REQ ? 4 : 0; }

/* Hand client u's replies to the server, timing the server. A server-side abort is a
 * result, not a failure; a rejected message is a bug. */
static int to_server(sim_t *sm, uint32_t u, sl_secagg_outbox_t *next)
{
    int rc = 0;
    for (size_t i = 0; i < sm->cout.count && !rc; i++) {
        sl_secagg_msg_t *m = &sm->cout.msgs[i];
        sm->cl[u].up += m->len;
        int masked = m->data[5] == SL_SECAGG_MSG_MASKED;
        sl_secagg_stage_t before = sl_secagg_server_stage(sm->s);
        double t0 = now();
        rc = sl_secagg_server_handle(sm->s, u, m->data, m->len, next);
        double dt = now() - t0;
        sm->server_time += dt;
        if (masked)
            sm->collect_time += dt;
        if (before == SL_SECAGG_UNMASK && sl_secagg_server_stage(sm->s) != SL_SECAGG_UNMASK)
            sm->unmask_time += dt;
        note_abort(sm, before, rc);
        if (masked && sl_secagg_server_included(sm->s, u)) {
            for (size_t j = 0; j < sm->o->dim; j++)
                sm->plain[j] += sm->input[j];
        }
        /* After an abort everything is moot; after an early finish, stragglers are late. */
        if (rc && (sl_secagg_server_stage(sm->s) == SL_SECAGG_ABORTED ||
                   (rc == SL_ESTATE && sl_secagg_server_stage(sm->s) == SL_SECAGG_DONE)))
            rc = 0;
    }
    sl_secagg_outbox_clear(&sm->cout);
    return rc;
}

/* Deliver the server's messages to live clients; their replies go to the server, whose new
 * messages land in `next`. */
static int deliver(sim_t *sm, sl_secagg_outbox_t *cur, sl_secagg_outbox_t *next)
{
    for (size_t i = 0; i < cur->count; i++) {
        sl_secagg_msg_t *m = &cur->msgs[i];
        uint32_t u = m->to;
        sim_client_t *c = &sm->cl[u];
        if (c->gone)
            continue;
        int st = msg_stage(m->data);
        if (c->drop_at && st >= c->drop_at) {
            c->gone = 1; /* this client vanishes now */
            sl_secagg_client_destroy(&c->c);
            continue;
        }
        c->down += m->len;
        if (st == 3) {
            /* Quantize the input just in time: O(dim) memory for the whole simulation. */
            sl_rng_t ir;
            sl_rng_init(&ir, sm->o->seed, "sim-input", 0, u);
            for (size_t j = 0; j < sm->o->dim; j++)
                sm->xf[j] = (float)(2.0 * sl_rng_uniform(&ir) - 1.0);
            double tq = now();
            int rc = sl_quant_encode(&sm->q, sm->xf, sm->o->dim, 1.0, &ir, NULL, sm->input);
            sm->r->client_quant_time += now() - tq;
            if (rc)
                return rc;
            double t0 = now();
            rc = sl_secagg_client_set_input(c->c, sm->input, sm->o->dim, &sm->cout);
            c->time += now() - t0;
            if (rc)
                return sl_error_wrap(rc, "sim: client %u rejected its input", u);
        }
        double t0 = now();
        int rc = sl_secagg_client_handle(c->c, m->data, m->len, &sm->cout);
        c->time += now() - t0;
        if (rc == SL_EABORT) {
            c->gone = 1;
            sl_secagg_client_destroy(&c->c);
            continue;
        }
        if (rc)
            return sl_error_wrap(rc, "sim: client %u rejected %s", u, sl_secagg_msg_name(m->data[5]));
        rc = to_server(sm, u, next);
        if (rc)
            return sl_error_wrap(rc, "sim: server rejected a message of client %u", u);
    }
    sl_secagg_outbox_clear(cur);
    return 0;
}

int sl_secagg_sim_run(const sl_secagg_sim_opts_t *o, sl_secagg_sim_result_t *r)
{
    memset(r, 0, sizeof *r);
    if (o->n < 2 || o->dim < 1)
        return sl_error(SL_EINVAL, "sim: needs n >= 2 clients and dim >= 1");
    if (!(o->dropout >= 0 && o->dropout < 1))
        return sl_error(SL_EINVAL, "sim: dropout %g not in [0, 1)", o->dropout);
    int rc = 0;
    sim_t sm = {.o = o, .r = r};
    sl_secagg_outbox_t a, b;
    sl_secagg_outbox_init(&a);
    sl_secagg_outbox_init(&b);
    sl_secagg_outbox_init(&sm.cout);
    sm.cl = calloc(o->n, sizeof *sm.cl);
    sm.xf = malloc(o->dim * sizeof *sm.xf);
    sm.input = malloc(o->dim * sizeof *sm.input);
    sm.plain = calloc(o->dim, sizeof *sm.plain);
    if (!sm.cl || !sm.xf || !sm.input || !sm.plain) {
        rc = sl_error(SL_ENOMEM, "sim: out of memory");
        goto cleanup;
    }
    if ((rc = sl_quant_init(&sm.q, 1.0, o->bits ? o->bits : 32, o->n, 0)))
        goto cleanup;
    r->bits = sm.q.bits;
    r->mod_bits = sm.q.mod_bits;

    /* Who drops where: a seeded random choice of round(dropout n) clients, stages 1..4 in turn. */
    sl_rng_t rng;
    sl_rng_init(&rng, o->seed, "sim-dropout", 0, 0);
    if (o->drop_at) {
        for (size_t u = 0; u < o->n; u++)
            sm.cl[u].drop_at = o->drop_at[u] <= 4 ? o->drop_at[u] : 0;
    } else {
        size_t *perm = malloc(o->n * sizeof *perm);
        if (!perm) {
            rc = sl_error(SL_ENOMEM, "sim: out of memory");
            goto cleanup;
        }
        for (size_t u = 0; u < o->n; u++)
            perm[u] = u;
        sl_rng_shuffle_size(&rng, perm, o->n);
        size_t nd = (size_t)(o->dropout * (double)o->n + 0.5);
        for (size_t i = 0; i < nd; i++)
            sm.cl[perm[i]].drop_at = (uint8_t)(o->drop_stage >= 1 && o->drop_stage <= 4 ? o->drop_stage : 1 + (int)(i % 4));
        free(perm);
    }
    for (size_t u = 0; u < o->n; u++)
        r->dropped[sm.cl[u].drop_at]++;

    sl_secagg_params_t p;
    sl_secagg_params_default(&p);
    uint8_t graph_seed[32], session[16];
    sl_rng_bytes(&rng, graph_seed, sizeof graph_seed);
    if (o->graph_seed)
        memcpy(graph_seed, o->graph_seed, sizeof graph_seed);
    sl_rng_bytes(&rng, session, sizeof session);
    p.round = o->seed;
    p.n = o->n;
    p.dim = o->dim;
    p.mod_bits = sm.q.mod_bits;
    p.k = o->k;
    p.t = o->t;
    p.dropout = o->tolerance > 0 ? o->tolerance : (o->dropout > 0.05 ? o->dropout : 0.05);
    p.threads = o->server_threads;
    p.graph_seed = graph_seed;
    p.session = session;
    double t0 = now();
    rc = sl_secagg_server_new(&sm.s, &p);
    sm.server_time += now() - t0;
    if (rc)
        goto cleanup;
    sl_secagg_server_set_unmask_gate(sm.s, o->unmask_gate, o->unmask_gate_ctx);
    sl_secagg_info_t info;
    sl_secagg_server_info(sm.s, &info);
    r->k = info.k;
    r->t = info.t;
    for (size_t u = 0; u < o->n; u++) {
        sl_secagg_client_opts_t co = {.index = (uint32_t)u, .round = p.round, .threads = o->client_threads};
        if (o->seeded_keys) {
            sl_rng_init(&sm.cl[u].rng, o->seed, "sim-client", 0, u);
            co.rng = &sm.cl[u].rng;
        }
        if ((rc = sl_secagg_client_new(&sm.cl[u].c, &co)))
            goto cleanup;
    }
    t0 = now();
    rc = sl_secagg_server_start(sm.s, &a);
    sm.server_time += now() - t0;
    if (rc)
        goto cleanup;
    sl_secagg_outbox_t *cur = &a, *next = &b;
    for (int guard = 0; guard < 64; guard++) {
        sl_secagg_stage_t st = sl_secagg_server_stage(sm.s);
        if (st == SL_SECAGG_DONE || st == SL_SECAGG_ABORTED)
            break;
        if (cur->count == 0) {
            /* Everyone who will answer has answered: the stage deadline. */
            t0 = now();
            int crc = sl_secagg_server_close_stage(sm.s, cur);
            double dt = now() - t0;
            note_abort(&sm, st, crc);
            sm.server_time += dt;
            if (st == SL_SECAGG_UNMASK)
                sm.unmask_time += dt;
            if (crc && sl_secagg_server_stage(sm.s) != SL_SECAGG_ABORTED) {
                rc = crc;
                goto cleanup;
            }
            continue;
        }
        if ((rc = deliver(&sm, cur, next)))
            goto cleanup;
        sl_secagg_outbox_t *tmp = cur;
        cur = next;
        next = tmp;
    }
    /* Clients still holding an ABORT get it (wipes their state). */
    if (sl_secagg_server_stage(sm.s) == SL_SECAGG_ABORTED) {
        r->rc = sm.abort_rc;
        snprintf(r->error, sizeof r->error, "%s", sm.abort_msg);
    } else if (sl_secagg_server_stage(sm.s) != SL_SECAGG_DONE) {
        rc = sl_error(SL_ESTATE, "sim: the round neither completed nor aborted (stage %s)",
                      sl_secagg_stage_name(sl_secagg_server_stage(sm.s)));
        goto cleanup;
    } else {
        const uint32_t *sum;
        size_t dim;
        if ((rc = sl_secagg_server_result(sm.s, &sum, &dim)))
            goto cleanup;
        uint32_t mask = sm.q.mod_bits == 32 ? UINT32_MAX : (UINT32_C(1) << sm.q.mod_bits) - 1;
        r->correct = 1;
        for (size_t j = 0; j < dim; j++)
            if (sum[j] != (sm.plain[j] & mask)) {
                r->correct = 0;
                break;
            }
    }
    sl_secagg_server_info(sm.s, &info);
    r->included = info.masked;
    r->prg_terms = info.prg_terms;
    r->server_time = sm.server_time;
    r->server_collect_time = sm.collect_time;
    r->server_unmask_time = sm.unmask_time;
    size_t done = 0;
    if (o->included_out)
        for (size_t u = 0; u < o->n; u++)
            o->included_out[u] = (uint8_t)sl_secagg_server_included(sm.s, (uint32_t)u);
    for (size_t u = 0; u < o->n; u++) {
        if (!sl_secagg_server_included(sm.s, (uint32_t)u) || sm.cl[u].drop_at)
            continue;
        done++;
        r->client_time_mean += sm.cl[u].time;
        if (sm.cl[u].time > r->client_time_max)
            r->client_time_max = sm.cl[u].time;
        r->bytes_up += (double)sm.cl[u].up;
        r->bytes_down += (double)sm.cl[u].down;
    }
    if (done) {
        double *times = malloc(done * sizeof *times);
        if (times) {
            size_t j = 0;
            for (size_t u = 0; u < o->n; u++)
                if (sl_secagg_server_included(sm.s, (uint32_t)u) && !sm.cl[u].drop_at)
                    times[j++] = sm.cl[u].time;
            qsort(times, done, sizeof *times, cmp_double);
            r->client_time_median = times[done / 2];
            r->client_time_p10 = times[done / 10];
            r->client_time_p90 = times[(done * 9) / 10];
            free(times);
        }
        r->client_time_mean /= (double)done;
        r->bytes_up /= (double)done;
        r->bytes_down /= (double)done;
    }
    r->client_quant_time /= (double)o->n;
    r->raw_bytes = 4.0 * (double)o->dim;
    r->expansion = r->bytes_up / r->raw_bytes;
    if (o->measure_floor && r->prg_terms) {
        sl_prg_term_t *terms = malloc(r->prg_terms * sizeof *terms);
        if (!terms) {
            rc = sl_error(SL_ENOMEM, "sim: out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < r->prg_terms; i++) {
            sl_rng_bytes(&rng, terms[i].seed, 32);
            terms[i].sign = 1;
        }
        /* Same run, interleaved A B A B: the masks applied again into a scratch vector
         * (random seeds: the cost does not depend on them) and their bare keystream. */
        int reps = o->measure_floor > 15 ? 15 : o->measure_floor;
        double ft[15], at[15];
        uint32_t *scratch = calloc(o->dim, sizeof *scratch);
        if (!scratch)
            rc = sl_error(SL_ENOMEM, "sim: out of memory");
        for (int i = 0; i < reps && !rc; i++) {
            t0 = now();
            rc = sl_prg_apply(terms, r->prg_terms, scratch, o->dim, o->server_threads);
            at[i] = now() - t0;
            t0 = now();
            if (!rc)
                rc = sl_prg_keystream_only(terms, r->prg_terms, o->dim, o->server_threads);
            ft[i] = now() - t0;
        }
        free(scratch);
        if (!rc) {
            qsort(ft, (size_t)reps, sizeof ft[0], cmp_double);
            qsort(at, (size_t)reps, sizeof at[0], cmp_double);
            r->keystream_floor = ft[reps / 2];
            r->keystream_floor_min = ft[0];
            r->replay_floor = ft[reps / 2];
            r->replay_apply = at[reps / 2];
            r->unmask_other = r->server_unmask_time - info.prg_seconds;
            if (r->unmask_other < 0)
                r->unmask_other = 0;
            r->unmask_ratio = (r->unmask_other + r->replay_apply) / r->replay_floor;
        }
        free(terms);
        if (rc)
            goto cleanup;
    }
cleanup:
    if (sm.cl)
        for (size_t u = 0; u < o->n; u++) {
            sl_secagg_client_destroy(&sm.cl[u].c);
            sl_rng_wipe(&sm.cl[u].rng);
        }
    sl_secagg_server_destroy(&sm.s);
    sl_secagg_outbox_free(&a);
    sl_secagg_outbox_free(&b);
    sl_secagg_outbox_free(&sm.cout);
    free(sm.cl);
    free(sm.xf);
    free(sm.input);
    free(sm.plain);
    return rc;
}
