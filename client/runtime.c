#include "client/runtime.h"

#include "core/log.h"
#include "core/rng.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

typedef struct {
    sl_transport_t *t;
    double connected_at;
    double retry_at;   /* reconnect time while disconnected */
    double busy_until; /* end of the last message handling (training is synchronous) */
    unsigned failures; /* consecutive reconnects */
    unsigned reconnects;
} slot_t;

/* The handshake watch over the one monitored slot (see runtime.h). */
typedef struct {
    size_t slot;        /* index of the monitored slot; SIZE_MAX = none open */
    unsigned seen_fail; /* the monitored transport's counters at the last look */
    unsigned seen_ok;
    unsigned streak;   /* failed handshakes in a row, across re-created sockets */
    double fail_since; /* when the streak began */
    int ever_ok;       /* a handshake succeeded since the runtime started */
    int reported;      /* the diagnosis went into a "coordinator silent" line */
    char note[384];    /* the diagnosis of the streak, "" if none */
} hs_watch_t;

static int send_outbox(sl_client_t *c, sl_transport_t *t)
{
    const sl_client_out_t *o;
    size_t n = sl_client_outbox(c, &o);
    for (size_t i = 0; i < n; i++) {
        int rc = sl_transport_send(t, NULL, o[i].header, o[i].header_len, o[i].payload, o[i].payload_len);
        if (rc)
            return rc;
    }
    return 0;
}

static int connect_slot(slot_t *s, void *ctx, const sl_transport_opts_t *to, sl_client_t *c, double now,
                        hs_watch_t *hw, slot_t *slots, size_t i)
{
    sl_transport_opts_t o = *to;
    int monitor = hw->slot == SIZE_MAX || !slots[hw->slot].t;
    o.monitor_handshake = monitor;
    int rc = sl_transport_new(&s->t, ctx, &o);
    if (rc)
        return rc;
    if (monitor) {
        hw->slot = i;
        hw->seen_fail = hw->seen_ok = 0;
    }
    s->connected_at = now;
    if ((rc = sl_client_start(c, now)) || (rc = send_outbox(c, s->t)))
        sl_transport_destroy(&s->t);
    return rc;
}

/* Look at the monitored slot's handshake; 1 if the coordinator refused it (the socket is
 * dead: libzmq does not retry after a refusal). */
static int watch_handshake(hs_watch_t *hw, slot_t *slots, double now)
{
    if (hw->slot == SIZE_MAX || !slots[hw->slot].t)
        return 0;
    sl_transport_handshake_t h;
    if (!sl_transport_handshake(slots[hw->slot].t, &h))
        return 0;
    if (h.succeeded != hw->seen_ok) {
        if (hw->note[0])
            SL_INFO("handshake with the coordinator succeeded after %u failed attempt(s)", hw->streak);
        hw->ever_ok = 1;
        hw->streak = 0;
        hw->note[0] = '\0';
    }
    if (h.failures > hw->seen_fail) {
        if (hw->streak == 0)
            hw->fail_since = now;
        hw->streak += h.failures - hw->seen_fail;
        if (h.message[0] && strcmp(h.message, hw->note) != 0) {
            snprintf(hw->note, sizeof hw->note, "%s", h.message);
            hw->reported = 0;
        }
    }
    hw->seen_ok = h.succeeded;
    hw->seen_fail = h.failures;
    return h.outcome == SL_HANDSHAKE_REFUSED && h.failures > 0;
}

static void drop_slot(slot_t *s, const sl_client_runtime_opts_t *o, double now, uint64_t id, const char *why)
{
    sl_transport_destroy(&s->t);
    double base = o->backoff_initial > 0 ? o->backoff_initial : 0.5;
    double cap = o->backoff_max > 0 ? o->backoff_max : 30.0;
    double d = base * pow(2.0, (double)(s->failures < 30 ? s->failures : 30));
    if (d > cap)
        d = cap;
    d *= 0.5 + sl_csprng_uniform(); /* jitter: clients that lost the coordinator together spread out */
    s->retry_at = now + d;
    s->failures++;
    s->reconnects++;
    SL_WARN("client %llu: %s; reconnecting in %.2f s", (unsigned long long)id, why, d);
}

static int finished(sl_client_t *c)
{
    sl_client_state_t s = sl_client_state(c);
    return s == SL_CLIENT_DONE || s == SL_CLIENT_FAILED;
}

int sl_client_run(sl_client_t **clients, size_t n, const sl_client_runtime_opts_t *opts)
{
    if (!clients || n == 0 || !opts)
        return sl_error(SL_EINVAL, "client runtime: no clients");
    int rc = sl_csprng_init();
    if (rc)
        return rc;
    sl_transport_opts_t to = opts->transport;
    to.role = SL_TRANSPORT_CLIENT;
    if (to.linger_ms == 0)
        to.linger_ms = 2000;
    double silence = opts->coordinator_timeout > 0 ? opts->coordinator_timeout : 30.0;
    void *ctx = zmq_ctx_new();
    slot_t *slots = calloc(n, sizeof *slots);
    zmq_pollitem_t *items = calloc(n, sizeof *items);
    size_t *map = calloc(n, sizeof *map);
    if (!ctx || !slots || !items || !map) {
        rc = sl_error(SL_ENOMEM, "client runtime: out of memory");
        goto cleanup;
    }
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int)(n + 64)); /* the monitor's two sockets fit in the 64 */
    hs_watch_t hw = {.slot = SIZE_MAX};
    double now = sl_now();
    for (size_t i = 0; i < n; i++) {
        if ((rc = connect_slot(&slots[i], ctx, &to, clients[i], now, &hw, slots, i)))
            goto cleanup;
    }
    for (;;) {
        if (opts->stop && *opts->stop) {
            for (size_t i = 0; i < n; i++) {
                if (slots[i].t && !finished(clients[i]) &&
                    sl_client_leave(clients[i], "client interrupted") == 0)
                    (void)send_outbox(clients[i], slots[i].t);
            }
            rc = sl_error(SL_EINTR, "client: interrupted");
            goto cleanup;
        }
        size_t active = 0, np = 0;
        double next = now + 0.2; /* wake up to see *stop */
        for (size_t i = 0; i < n; i++) {
            if (finished(clients[i]))
                continue;
            active++;
            if (!slots[i].t) {
                if (slots[i].retry_at < next)
                    next = slots[i].retry_at;
                continue;
            }
            double d = sl_client_next_deadline(clients[i]);
            if (d < next)
                next = d;
            items[np].socket = sl_transport_socket(slots[i].t);
            items[np].events = ZMQ_POLLIN;
            items[np].revents = 0;
            map[np++] = i;
        }
        if (active == 0)
            break;
        long timeout = (long)ceil((next - now) * 1000.0);
        if (timeout < 0)
            timeout = 0;
        int pr = np ? zmq_poll(items, (int)np, timeout) : 0;
        if (!np && timeout > 0) {
            struct timespec ts = {timeout / 1000, (timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (pr < 0 && zmq_errno() != EINTR) {
            rc = sl_error(SL_ENET, "client runtime: poll: %s", zmq_strerror(zmq_errno()));
            goto cleanup;
        }
        now = sl_now();
        for (size_t p = 0; pr > 0 && p < np; p++) {
            if (!(items[p].revents & ZMQ_POLLIN))
                continue;
            size_t i = map[p];
            for (int burst = 0; burst < 64 && slots[i].t && !finished(clients[i]); burst++) {
                sl_frame_t f;
                int r = sl_transport_recv(slots[i].t, &f, 0);
                if (r == SL_ETIMEOUT)
                    break;
                if (r == SL_EPROTO)
                    continue;
                if (r) {
                    drop_slot(&slots[i], opts, now, sl_client_id(clients[i]), sl_last_error());
                    break;
                }
                r = sl_client_on_message(clients[i], f.header, f.header_len, f.payload, f.payload_len,
                                         sl_now());
                slots[i].busy_until = sl_now(); /* silence counts from here, not from the TASK */
                if (r && !finished(clients[i]))
                    SL_WARN("client %llu: %s", (unsigned long long)sl_client_id(clients[i]), sl_last_error());
                slots[i].failures = 0;
                if (send_outbox(clients[i], slots[i].t)) {
                    drop_slot(&slots[i], opts, sl_now(), sl_client_id(clients[i]), sl_last_error());
                    break;
                }
            }
        }
        now = sl_now();
        if (watch_handshake(&hw, slots, now) && !finished(clients[hw.slot]))
            drop_slot(&slots[hw.slot], opts, now, sl_client_id(clients[hw.slot]),
                      "coordinator refused the handshake");
        if (opts->handshake_give_up > 0 && !hw.ever_ok && hw.streak >= SL_HANDSHAKE_DROPS_DIAGNOSED &&
            hw.note[0] && now - hw.fail_since >= opts->handshake_give_up) {
            int heard = 0; /* another socket may have got in (a per-source cap refuses some only) */
            for (size_t i = 0; i < n && !heard; i++)
                heard = sl_client_last_heard(clients[i]) > 0;
            if (!heard) {
                rc = sl_error(SL_EPERM, "%s; giving up after %u failed handshakes in %.0f s", hw.note,
                              hw.streak, now - hw.fail_since);
                goto cleanup;
            }
            hw.ever_ok = 1; /* never give up once the coordinator answered someone */
        }
        for (size_t i = 0; i < n; i++) {
            if (finished(clients[i]))
                continue;
            slot_t *s = &slots[i];
            if (!s->t) {
                if (now >= s->retry_at) {
                    if (opts->max_reconnects && s->reconnects > opts->max_reconnects) {
                        rc = sl_error(SL_ENET, "client %llu: coordinator unreachable after %u reconnects",
                                      (unsigned long long)sl_client_id(clients[i]), s->reconnects - 1);
                        goto cleanup;
                    }
                    if (connect_slot(s, ctx, &to, clients[i], now, &hw, slots, i))
                        drop_slot(s, opts, now, sl_client_id(clients[i]), sl_last_error());
                }
                continue;
            }
            double heard = sl_client_last_heard(clients[i]);
            double since = heard > s->connected_at ? heard : s->connected_at;
            if (s->busy_until > since)
                since = s->busy_until;
            if (now - since > silence) {
                char why[480] = "coordinator silent";
                if (hw.note[0] && !hw.reported) { /* once per diagnosis, not once per virtual client */
                    snprintf(why, sizeof why, "coordinator silent (handshake failing: %s)", hw.note);
                    hw.reported = 1;
                }
                drop_slot(s, opts, now, sl_client_id(clients[i]), why);
                continue;
            }
            if (sl_client_tick(clients[i], now) == 0 && send_outbox(clients[i], s->t))
                drop_slot(s, opts, now, sl_client_id(clients[i]), sl_last_error());
        }
    }
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (sl_client_state(clients[i]) == SL_CLIENT_FAILED) {
            rc = sl_error(SL_EABORT, "client %llu: %s", (unsigned long long)sl_client_id(clients[i]),
                          sl_client_status(clients[i]));
            break;
        }
    }
cleanup:
    if (slots)
        for (size_t i = 0; i < n; i++)
            sl_transport_destroy(&slots[i].t);
    if (ctx)
        zmq_ctx_term(ctx);
    free(slots);
    free(items);
    free(map);
    return rc;
}
