/* client/runtime: the client process loop over the transport, for one client or many
 * virtual clients in one process (one DEALER socket each, one zmq_poll over all).
 *
 *   volatile sig_atomic_t stop = 0;          (the caller's SIGINT/SIGTERM handler sets it)
 *   sl_client_runtime_opts_t o = {.transport = {.endpoint = cfg.net.coordinator, ...},
 *                                 .stop = &stop};
 *   rc = sl_client_run(clients, n, &o);
 *
 * Each client: connect, HELLO, serve the coordinator until BYE. If the coordinator goes
 * silent (no message at all for coordinator_timeout while we heartbeat), the socket is
 * closed and re-created after an exponential backoff (backoff_initial * 2^k, capped at
 * backoff_max, times a uniform jitter in [0.5, 1.5) from the OS CSPRNG), then HELLO again.
 * *stop set: BYE from every client, linger, return SL_EINTR.
 *
 * Handshake diagnosis: one socket per process is monitored (core/transport.h,
 * monitor_handshake; the first one connected while no monitored socket is open: every
 * client of the process has the same keys and coordinator, so one socket's handshake
 * speaks for all, and monitoring each of hundreds of virtual clients would cost two more
 * sockets and ~32 kB apiece). A failing handshake is logged once with its likely cause
 * (key refused by the coordinator's ZAP allow-list, wrong server key), repeated in the
 * next "coordinator silent" line. A refused socket is re-created after the backoff at
 * once (libzmq never retries a refused handshake by itself, so waiting for the silence
 * timeout would only delay the retry). With handshake_give_up > 0, sl_client_run fails
 * with SL_EPERM and the diagnosis when every handshake has failed for that many seconds
 * (at least SL_HANDSHAKE_DROPS_DIAGNOSED attempts) and no client of the process has yet
 * heard the coordinator: a key problem does not heal by retrying.
 */
#ifndef SL_CLIENT_RUNTIME_H
#define SL_CLIENT_RUNTIME_H

#include "client/client.h"
#include "core/transport.h"

#include <signal.h>
#include <stddef.h>

typedef struct {
    sl_transport_opts_t transport; /* role forced to CLIENT; endpoint, max_message_bytes,
                                    * heartbeat_ms, CURVE keys as for one client */
    double coordinator_timeout;    /* seconds of silence before reconnecting; 0 = 30 */
    double backoff_initial;        /* 0 = 0.5 s */
    double backoff_max;            /* 0 = 30 s */
    unsigned max_reconnects;       /* per client; 0 = unlimited */
    double handshake_give_up;      /* seconds of failed handshakes before SL_EPERM; 0 = never */
    volatile sig_atomic_t *stop;   /* may be NULL */
} sl_client_runtime_opts_t;

/* Run until every client is DONE or FAILED (returns 0 if all DONE, else the first
 * failure), or *stop (SL_EINTR). Clients are borrowed. */
SL_NODISCARD int sl_client_run(sl_client_t **clients, size_t n, const sl_client_runtime_opts_t *opts);

#endif
