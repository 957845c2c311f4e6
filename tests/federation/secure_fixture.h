/* Test fixture: a secured coordinator in one process, wired as `starling coordinator`
 * wires it (CURVE server, ZAP allow-list, connection limits, identity binding, engine
 * bans pushed to ZAP by key), honest virtual clients (sl_client_run with one CURVE key),
 * and helpers for a rogue peer (its own allow-listed key). Loopback TCP on a port chosen
 * by the kernel. Header-only (static inline) for the test binaries that include it.
 *
 *   fx_init(&fx, "name");                 keys + allow-list in a temp folder
 *   fx.cfg.* = ...;                       engine / net settings
 *   fx_start_coordinator(&fx);            thread; returns once bound (fx.endpoint)
 *   fx_start_clients(&fx, n, rounds);     thread running n honest clients
 *   ... rogue work ...
 *   fx_join(&fx);                         waits for both; fx.coord_rc, fx.clients_rc
 *   fx_free(&fx);
 */
#ifndef SL_TEST_SECURE_FIXTURE_H
#define SL_TEST_SECURE_FIXTURE_H

#include "client/runtime.h"
#include "coordinator/engine.h"
#include "coordinator/identity.h"
#include "coordinator/server.h"
#include "core/keys.h"
#include "core/log.h"
#include "core/transport.h"
#include "core/zap.h"
#include "support/check.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define FX_DIM        1000
#define FX_MAX_CLIENT 16
#define FX_MAX_BANS   16

typedef struct {
    char dir[64];
    sl_config_t cfg;
    sl_keypair_t server, honest, rogue;
    char endpoint[128];
    void *zctx;
    sl_zap_t *zap;
    sl_identity_t *identity;
    volatile sig_atomic_t stop; /* set to end the coordinator early */
    /* results */
    int coord_rc, clients_rc;
    uint64_t rounds_completed, client_rounds[FX_MAX_CLIENT];
    int client_done[FX_MAX_CLIENT];
    float final_global[FX_DIM];
    /* bans the engine pushed (the banned hook), by key */
    pthread_mutex_t ban_lock;
    char banned_keys[FX_MAX_BANS][SL_USER_ID_MAX + 1];
    size_t nbanned;
    /* internals */
    size_t nclients;
    pthread_t coord_thread, clients_thread;
    int have_clients;
    pthread_mutex_t ready_lock;
    pthread_cond_t ready;
    int bound; /* 1 bound, -1 failed */
} fx_t;

/* The honest clients' update: known, so the FedAvg result can be checked exactly. */
static inline void fx_delta(uint64_t id, uint64_t round, float *d)
{
    for (size_t j = 0; j < FX_DIM; j++)
        d[j] = (float)((int)((id * 13 + round * 5 + j) % 7) - 3) * 0.5f;
}

/* FedAvg over clients 1..n (weights = client id) for `rounds` rounds, from zero. */
static inline void fx_reference(size_t n, uint64_t rounds, float *ref)
{
    float d[FX_DIM];
    memset(ref, 0, FX_DIM * sizeof *ref);
    for (uint64_t r = 1; r <= rounds; r++) {
        double sum[FX_DIM] = {0}, w = 0;
        for (uint64_t id = 1; id <= n; id++) {
            fx_delta(id, r, d);
            for (size_t j = 0; j < FX_DIM; j++)
                sum[j] += (double)id * d[j];
            w += (double)id;
        }
        for (size_t j = 0; j < FX_DIM; j++)
            ref[j] = (float)((double)ref[j] + (double)(float)(sum[j] / w));
    }
}

static int fx_train_ms; /* simulated training time per update */

static inline int fx_train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                           sl_update_info_t *info)
{
    (void)ctx, (void)global;
    if (fx_train_ms > 0) {
        struct timespec ts = {fx_train_ms / 1000, (long)(fx_train_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    fx_delta(task->client_id, task->round, delta);
    info->examples = task->client_id;
    info->steps = 1;
    info->train_loss = 0.5;
    return 0;
}

static inline void fx_init(fx_t *fx, const char *name)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/sl_%s_XXXXXX", name);
    CHECK(mkdtemp(fx->dir) != NULL);
    CHECK_EQ(sl_keypair_generate(&fx->server), 0);
    CHECK_EQ(sl_keypair_generate(&fx->honest), 0);
    CHECK_EQ(sl_keypair_generate(&fx->rogue), 0);
    char path[128];
    snprintf(path, sizeof path, "%s/allow.txt", fx->dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "%s honest\n%s rogue (allow-listed: an enrolled device gone bad)\n", fx->honest.public_z85,
            fx->rogue.public_z85);
    fclose(f);
    sl_config_defaults(&fx->cfg);
    fx->cfg.federation.fraction = 1;
    fx->cfg.federation.round_timeout = 30;
    fx->cfg.federation.eval_every = 0;
    fx->cfg.net.heartbeat_ms = 500;
    pthread_mutex_init(&fx->ban_lock, NULL);
    pthread_mutex_init(&fx->ready_lock, NULL);
    pthread_cond_init(&fx->ready, NULL);
}

static inline int fx_hook_authorize(void *ctx, uint64_t client_id, const sl_peer_t *peer,
                                    const sl_hello_info_t *hello)
{
    fx_t *fx = ctx;
    return sl_identity_authorize(fx->identity, client_id, peer, hello);
}

/* As cmd_coordinator's hook: the engine's ban, extended to the key at ZAP. */
static inline void fx_hook_banned(void *ctx, const sl_peer_t *peer, double seconds)
{
    fx_t *fx = ctx;
    sl_zap_ban(fx->zap, peer->user_id, seconds);
    pthread_mutex_lock(&fx->ban_lock);
    if (fx->nbanned < FX_MAX_BANS)
        snprintf(fx->banned_keys[fx->nbanned++], SL_USER_ID_MAX + 1, "%s", peer->user_id);
    pthread_mutex_unlock(&fx->ban_lock);
}

static inline int fx_banned(fx_t *fx, const char *key)
{
    pthread_mutex_lock(&fx->ban_lock);
    int found = 0;
    for (size_t i = 0; i < fx->nbanned; i++)
        found |= strcmp(fx->banned_keys[i], key) == 0;
    pthread_mutex_unlock(&fx->ban_lock);
    return found;
}

static inline size_t fx_ban_count(fx_t *fx)
{
    pthread_mutex_lock(&fx->ban_lock);
    size_t n = fx->nbanned;
    pthread_mutex_unlock(&fx->ban_lock);
    return n;
}

static inline int fx_configure(void *sock, void *ctx)
{
    fx_t *fx = ctx;
    sl_zap_limits_t lim = {.max_connections = (long)fx->cfg.net.max_connections,
                           .max_per_source = (long)fx->cfg.net.max_connections_per_source};
    return sl_zap_limit_connections(fx->zap, sock, &lim);
}

static inline void fx_signal_bound(fx_t *fx, int v)
{
    pthread_mutex_lock(&fx->ready_lock);
    fx->bound = v;
    pthread_cond_broadcast(&fx->ready);
    pthread_mutex_unlock(&fx->ready_lock);
}

static inline void *fx_coordinator(void *arg)
{
    fx_t *fx = arg;
    float init[FX_DIM] = {0};
    sl_engine_t *e = NULL;
    sl_transport_t *t = NULL;
    sl_allowlist_t allow = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/allow.txt", fx->dir);
    int rc = sl_allowlist_load(&allow, path);
    if (!rc)
        rc = sl_zap_start(&fx->zap, fx->zctx, &allow);
    if (!rc)
        rc = sl_identity_new(&fx->identity, 1);
    sl_engine_opts_t o = {.cfg = &fx->cfg, .dim = FX_DIM, .init = init, .start_clients = fx->nclients};
    o.hooks.authorize = fx_hook_authorize;
    o.hooks.banned = fx_hook_banned;
    o.hooks.hook_ctx = fx;
    if (!rc)
        rc = sl_engine_new(&e, &o);
    sl_transport_opts_t to = {.role = SL_TRANSPORT_SERVER,
                              .endpoint = "tcp://127.0.0.1:*",
                              .max_message_bytes = (size_t)fx->cfg.net.max_message_bytes,
                              .heartbeat_ms = (int)fx->cfg.net.heartbeat_ms,
                              .curve_public_z85 = fx->server.public_z85,
                              .curve_secret_z85 = fx->server.secret_z85,
                              .zap_domain = "starling",
                              .configure = fx_configure,
                              .configure_ctx = fx};
    if (!rc)
        rc = sl_transport_new(&t, fx->zctx, &to);
    if (!rc)
        snprintf(fx->endpoint, sizeof fx->endpoint, "%s", sl_transport_endpoint(t));
    fx_signal_bound(fx, rc ? -1 : 1);
    if (!rc) {
        rc = sl_coordinator_run(e, t, &fx->stop, NULL, NULL);
        fx->rounds_completed = sl_engine_rounds_completed(e);
        memcpy(fx->final_global, sl_engine_global(e, NULL), sizeof fx->final_global);
    }
    if (rc && rc != SL_EINTR)
        fprintf(stderr, "coordinator: %s\n", sl_last_error());
    fx->coord_rc = rc;
    sl_transport_destroy(&t); /* before the ZAP handler: it reads the socket's monitor */
    sl_engine_destroy(&e);
    return NULL;
}

/* Start the coordinator for `nclients` honest clients; returns once it listens. */
static inline int fx_start_coordinator(fx_t *fx, size_t nclients)
{
    fx->nclients = nclients;
    fx->zctx = zmq_ctx_new();
    if (pthread_create(&fx->coord_thread, NULL, fx_coordinator, fx) != 0)
        return -1;
    pthread_mutex_lock(&fx->ready_lock);
    while (!fx->bound)
        pthread_cond_wait(&fx->ready, &fx->ready_lock);
    int ok = fx->bound == 1;
    pthread_mutex_unlock(&fx->ready_lock);
    return ok ? 0 : -1;
}

static inline void *fx_clients(void *arg)
{
    fx_t *fx = arg;
    sl_client_t *cl[FX_MAX_CLIENT] = {0};
    int rc = 0;
    for (size_t i = 0; i < fx->nclients && !rc; i++) {
        sl_client_opts_t co = {.client_id = (uint64_t)(i + 1),
                               .dim = FX_DIM,
                               .train_examples = (uint64_t)(i + 1),
                               .test_examples = 4,
                               .hello_retry_s = 0.2,
                               .heartbeat_s = 0.5,
                               .train = fx_train};
        rc = sl_client_new(&cl[i], &co);
    }
    if (!rc) {
        sl_client_runtime_opts_t ro = {
            .transport = {.endpoint = fx->endpoint,
                          .max_message_bytes = (size_t)fx->cfg.net.max_message_bytes,
                          .heartbeat_ms = 500,
                          .reconnect_ivl_ms = 50,
                          .curve_public_z85 = fx->honest.public_z85,
                          .curve_secret_z85 = fx->honest.secret_z85,
                          .curve_server_z85 = fx->server.public_z85},
            .coordinator_timeout = 20};
        rc = sl_client_run(cl, fx->nclients, &ro);
        for (size_t i = 0; i < fx->nclients; i++) {
            fx->client_done[i] = sl_client_state(cl[i]) == SL_CLIENT_DONE;
            fx->client_rounds[i] = sl_client_rounds_done(cl[i]);
        }
    }
    if (rc)
        fprintf(stderr, "clients: %s\n", sl_last_error());
    fx->clients_rc = rc;
    for (size_t i = 0; i < fx->nclients; i++)
        sl_client_destroy(&cl[i]);
    return NULL;
}

static inline int fx_start_clients(fx_t *fx)
{
    fx->have_clients = 1;
    return pthread_create(&fx->clients_thread, NULL, fx_clients, fx) == 0 ? 0 : -1;
}

/* Wait for the coordinator (and the clients, if started). */
static inline void fx_join(fx_t *fx)
{
    pthread_join(fx->coord_thread, NULL);
    if (fx->have_clients)
        pthread_join(fx->clients_thread, NULL);
}

static inline void fx_free(fx_t *fx)
{
    sl_zap_stop(&fx->zap);
    sl_identity_destroy(&fx->identity);
    if (fx->zctx)
        zmq_ctx_term(fx->zctx);
    sl_keypair_wipe(&fx->server);
    sl_keypair_wipe(&fx->honest);
    sl_keypair_wipe(&fx->rogue);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", fx->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx->dir);
}

/* A rogue DEALER with the rogue key (own context, like another process). */
static inline void *fx_rogue_socket(void *ctx, fx_t *fx, int sndhwm)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, fx->server.public_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, fx->rogue.public_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, fx->rogue.secret_z85, SL_Z85_KEY_LEN);
    return s;
}

/* Connect a fresh rogue socket and watch its handshake: 1 succeeded, -1 refused by the
 * server's authentication (ZAP), 0 no outcome within timeout_ms. The socket is closed. */
static inline int fx_rogue_handshake(fx_t *fx, int timeout_ms)
{
    static int seq;
    void *ctx = zmq_ctx_new();
    void *s = fx_rogue_socket(ctx, fx, 1000);
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://fx-rogue-mon-%d", seq++);
    zmq_socket_monitor(s, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH);
    void *m = zmq_socket(ctx, ZMQ_PAIR);
    zmq_connect(m, mon);
    zmq_connect(s, fx->endpoint);
    int outcome = 0;
    zmq_pollitem_t item = {m, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout_ms) > 0) {
        uint8_t ev[6];
        char addr[256];
        if (zmq_recv(m, ev, sizeof ev, 0) == 6) {
            uint16_t event;
            memcpy(&event, ev, sizeof event);
            outcome = event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED ? 1 : -1;
        }
        (void)zmq_recv(m, addr, sizeof addr, 0);
    }
    zmq_close(s); /* the monitored socket first: its events go to m */
    zmq_close(m);
    zmq_ctx_term(ctx);
    return outcome;
}

static inline double fx_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
