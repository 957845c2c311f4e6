#include "coordinator/server.h"

#include "core/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GONE 64

/* Send the engine's outbox; peers the ROUTER no longer knows are reported to the engine
 * (which may queue more messages: loop until the outbox is delivered). */
static int flush(sl_engine_t *e, sl_transport_t *t)
{
    for (int pass = 0; pass < 16; pass++) {
        const sl_outmsg_t *out;
        size_t n = sl_engine_outbox(e, &out);
        sl_peer_t gone[MAX_GONE];
        size_t ngone = 0;
        for (size_t i = 0; i < n; i++) {
            int rc = out[i].shared
                         ? sl_transport_send_shared(t, &out[i].peer, out[i].header, out[i].header_len,
                                                    out[i].shared, out[i].payload_len)
                         : sl_transport_send(t, &out[i].peer, out[i].header, out[i].header_len,
                                             out[i].payload, out[i].payload_len);
            if (rc == SL_ENET) {
                if (ngone < MAX_GONE)
                    gone[ngone++] = out[i].peer;
            } else if (rc) {
                return rc;
            }
        }
        if (ngone == 0)
            return 0;
        /* peer_gone clears the outbox: everything above was sent already */
        for (size_t i = 0; i < ngone; i++) {
            int rc = sl_engine_peer_gone(e, &gone[i], sl_now());
            if (rc && sl_engine_state(e) == SL_ENGINE_FAILED)
                return 0; /* the failure is reported by the state */
            if (i + 1 < ngone) {
                const sl_outmsg_t *o2;
                size_t n2 = sl_engine_outbox(e, &o2);
                for (size_t j = 0; j < n2; j++)
                    if (sl_transport_send(t, &o2[j].peer, o2[j].header, o2[j].header_len, o2[j].payload,
                                          o2[j].payload_len))
                        SL_DEBUG("coordinator: send failed: %s", sl_last_error());
            }
        }
    }
    return 0;
}

int sl_coordinator_run(sl_engine_t *e, sl_transport_t *t, volatile sig_atomic_t *stop,
                       sl_progress_fn progress, void *progress_ctx)
{
    uint64_t reported = sl_engine_rounds_completed(e);
    int rc = 0;
    for (;;) {
        sl_engine_state_t st = sl_engine_state(e);
        if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
            break;
        if (stop && *stop) {
            if (sl_engine_shutdown(e, "coordinator interrupted") == 0 && flush(e, t))
                SL_WARN("coordinator: could not send every BYE: %s", sl_last_error());
            return sl_error(SL_EINTR, "coordinator: interrupted");
        }
        double now = sl_now();
        double dl = sl_engine_next_deadline(e);
        /* Every deadline (round, SecAgg+ stage, start timeout) is in dl: nothing needs a
         * periodic tick. The cap only bounds how late *stop is seen when its signal lands
         * on another thread (the ZAP handler) or just before the wait; otherwise the
         * signal interrupts the wait at once (SL_EINTR). */
        int timeout_ms = 1000;
        if (dl <= now)
            timeout_ms = 0;
        else if (isfinite(dl) && (dl - now) * 1000.0 < timeout_ms)
            timeout_ms = (int)ceil((dl - now) * 1000.0);
        /* one wait, then a burst of whatever is queued: folding updates as fast as libzmq
         * receives them keeps the receive queues (and memory) short */
        for (int burst = 0; burst < 256; burst++) {
            sl_frame_t f;
            rc = sl_transport_recv(t, &f, burst == 0 ? timeout_ms : 0);
            now = sl_now();
            if (rc == 0) {
                rc = sl_engine_on_message(e, &f.peer, f.header, f.header_len, f.payload, f.payload_len, now);
                int frc = flush(e, t);
                if (frc)
                    return frc;
                st = sl_engine_state(e);
                if (st == SL_ENGINE_DONE || st == SL_ENGINE_FAILED)
                    break;
            } else if (rc == SL_EPROTO) {
                SL_DEBUG("coordinator: dropped a message with a bad frame structure: %s", sl_last_error());
                sl_engine_on_bad_frame(e, &f.peer, now); /* counts against the peer */
            } else if (rc == SL_ETIMEOUT || rc == SL_EINTR) {
                break;
            } else {
                return rc;
            }
        }
        rc = sl_engine_tick(e, now);
        int frc = flush(e, t);
        if (frc)
            return frc;
        if (progress && sl_engine_rounds_completed(e) != reported && sl_engine_last_report(e)) {
            reported = sl_engine_rounds_completed(e);
            progress(progress_ctx, sl_engine_last_report(e));
        }
    }
    if (progress && sl_engine_rounds_completed(e) != reported && sl_engine_last_report(e))
        progress(progress_ctx, sl_engine_last_report(e));
    if (sl_engine_state(e) == SL_ENGINE_FAILED) {
        const char *s = sl_engine_status(e);
        return sl_error(rc < 0 ? rc : SL_EABORT, "%s", s);
    }
    return 0;
}
