/* Transport integration: a coordinator (ROUTER) and 4 virtual clients (DEALERs) over ipc://
 * in one process, exchanging real messages for 3 rounds, while a rogue DEALER throws
 * garbage, replays, forged frames and oversized messages at the coordinator. The run must
 * complete with exactly the FedAvg result of the honest clients. The clients start before
 * the coordinator binds (they must retry until it is there). */
#include "client/runtime.h"
#include "coordinator/engine.h"
#include "coordinator/server.h"
#include "core/log.h"
#include "core/transport.h"
#include "support/check.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define DIM      1000
#define NCLIENTS 4
#define ROUNDS   3

static char endpoint[128];
static volatile sig_atomic_t rogue_stop;
static sl_config_t cfg;
static int coord_rc = -999, client_rc = -999;
static float final_global[DIM];
static uint64_t rogue_sent;

static void delta_of(uint64_t id, uint64_t round, float *d)
{
    for (size_t j = 0; j < DIM; j++)
        d[j] = (float)((int)((id * 13 + round * 5 + j) % 7) - 3) * 0.5f;
}

static int train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                 sl_update_info_t *info)
{
    (void)ctx, (void)global;
    delta_of(task->client_id, task->round, delta);
    info->examples = task->client_id;
    info->steps = 1;
    info->train_loss = 0.5;
    if (task->info.want_eval) {
        info->has_eval = 1;
        info->eval_examples = 4;
        info->eval_loss = 0.25;
        info->eval_accuracy = 0.5;
    }
    return 0;
}

static void *coordinator_thread(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL); /* clients first */
    float init[DIM] = {0};
    sl_engine_t *e = NULL;
    sl_transport_t *t = NULL;
    sl_engine_opts_t o = {.cfg = &cfg, .dim = DIM, .init = init, .start_clients = NCLIENTS};
    int rc = sl_engine_new(&e, &o);
    if (rc)
        goto done;
    sl_transport_opts_t to = {.role = SL_TRANSPORT_SERVER,
                              .endpoint = endpoint,
                              .max_message_bytes = (size_t)cfg.net.max_message_bytes,
                              .heartbeat_ms = (int)cfg.net.heartbeat_ms};
    if ((rc = sl_transport_new(&t, NULL, &to)))
        goto done;
    rc = sl_coordinator_run(e, t, NULL, NULL, NULL);
    memcpy(final_global, sl_engine_global(e, NULL), sizeof final_global);
done:
    if (rc)
        fprintf(stderr, "coordinator: %s\n", sl_last_error());
    coord_rc = rc;
    rogue_stop = 1;
    sl_transport_destroy(&t);
    sl_engine_destroy(&e);
    return NULL;
}

static void *clients_thread(void *arg)
{
    (void)arg;
    sl_client_t *cl[NCLIENTS] = {0};
    int rc = 0;
    for (int i = 0; i < NCLIENTS && !rc; i++) {
        sl_client_opts_t co = {.client_id = (uint64_t)(i + 1),
                               .dim = DIM,
                               .train_examples = (uint64_t)(i + 1),
                               .test_examples = 4,
                               .hello_retry_s = 0.2,
                               .heartbeat_s = 0.5,
                               .train = train};
        rc = sl_client_new(&cl[i], &co);
    }
    if (!rc) {
        sl_client_runtime_opts_t ro = {.transport = {.endpoint = endpoint,
                                                     .max_message_bytes = (size_t)cfg.net.max_message_bytes,
                                                     .heartbeat_ms = 500,
                                                     .reconnect_ivl_ms = 50},
                                       .coordinator_timeout = 20};
        rc = sl_client_run(cl, NCLIENTS, &ro);
        for (int i = 0; i < NCLIENTS; i++)
            CHECK_EQ(sl_client_state(cl[i]), SL_CLIENT_DONE);
        CHECK_EQ(sl_client_rounds_done(cl[0]), ROUNDS);
    }
    if (rc)
        fprintf(stderr, "clients: %s\n", sl_last_error());
    client_rc = rc;
    for (int i = 0; i < NCLIENTS; i++)
        sl_client_destroy(&cl[i]);
    return NULL;
}

static void rogue_send(void *s, const void *a, size_t al, const void *b, size_t bl, int frames3)
{
    if (zmq_send(s, a, al, (bl || frames3) ? ZMQ_SNDMORE | ZMQ_DONTWAIT : ZMQ_DONTWAIT) < 0)
        return;
    if (bl && zmq_send(s, b, bl, frames3 ? ZMQ_SNDMORE | ZMQ_DONTWAIT : ZMQ_DONTWAIT) < 0)
        return;
    if (frames3)
        zmq_send(s, "x", 1, ZMQ_DONTWAIT);
    rogue_sent++;
}

static void *rogue_thread(void *arg)
{
    (void)arg;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, ivl = 20;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_connect(s, endpoint);
    sl_wire_buf_t b = {0};
    float vec[DIM] __attribute__((aligned(16)));
    for (size_t j = 0; j < DIM; j++)
        vec[j] = 1.0f;
    size_t big_len = (size_t)cfg.net.max_message_bytes + 4096;
    uint8_t *big = calloc(big_len, 1);
    unsigned i = 0;
    while (!rogue_stop) {
        sl_msg_t m;
        switch (i++ % 9) {
        case 0: /* garbage */
            rogue_send(s, "\xde\xad\xbe\xef", 4, NULL, 0, 0);
            break;
        case 1: /* replay of an honest client's update (id 1, round 1), from an unregistered peer */
            sl_msg_init(&m, SL_MSG_UPDATE, 1, 1);
            m.n = DIM;
            m.vec = vec;
            m.update.examples = 1000000;
            if (sl_wire_encode(&m, &b) == 0)
                rogue_send(s, b.data, b.len, vec, sizeof vec, 0);
            break;
        case 2: /* three frames */
            rogue_send(s, "a", 1, "b", 1, 1);
            break;
        case 3: /* oversized: libzmq drops the connection, the rogue reconnects */
            rogue_send(s, big, big_len, NULL, 0, 0);
            break;
        case 4: /* HELLO with a foreign layout */
            sl_msg_init(&m, SL_MSG_HELLO, 0, 666);
            m.hello.dim = DIM + 1;
            if (sl_wire_encode(&m, &b) == 0)
                rogue_send(s, b.data, b.len, NULL, 0, 0);
            break;
        case 5: /* a NaN payload with a valid-looking header */
            sl_msg_init(&m, SL_MSG_UPDATE, 2, 2);
            m.n = DIM;
            m.vec = vec;
            m.update.examples = 5;
            vec[7] = NAN;
            if (sl_wire_encode(&m, &b) == 0)
                rogue_send(s, b.data, b.len, vec, sizeof vec, 0);
            vec[7] = 1.0f;
            break;
        case 6: /* a coordinator-only message */
            sl_msg_init(&m, SL_MSG_TASK, 1, 0);
            m.n = DIM;
            m.vec = vec;
            m.task.local_epochs = 1;
            m.task.batch_size = 1;
            if (sl_wire_encode(&m, &b) == 0)
                rogue_send(s, b.data, b.len, vec, sizeof vec, 0);
            break;
        case 7: /* empty frame */
            rogue_send(s, "", 0, NULL, 0, 0);
            break;
        default: { /* drain replies */
            char buf[512];
            while (zmq_recv(s, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
            }
            struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
        }
        }
    }
    free(big);
    sl_wire_buf_free(&b);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sl_fed_test_%d.sock", (int)getpid());
    sl_config_defaults(&cfg);
    cfg.federation.rounds = ROUNDS;
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = NCLIENTS;
    cfg.federation.round_timeout = 30;
    cfg.federation.eval_every = 1;
    cfg.net.max_message_bytes = 1 << 20;
    cfg.net.heartbeat_ms = 500;
    cfg.net.max_invalid_messages = 1000000; /* keep the rogue talking */
    cfg.net.max_messages_per_second = 1000000;
    pthread_t tc, tl, tr;
    pthread_create(&tl, NULL, clients_thread, NULL);
    pthread_create(&tc, NULL, coordinator_thread, NULL);
    pthread_create(&tr, NULL, rogue_thread, NULL);
    pthread_join(tc, NULL);
    pthread_join(tl, NULL);
    pthread_join(tr, NULL);
    CHECK_MSG(coord_rc == 0, "coordinator rc %d", coord_rc);
    CHECK_MSG(client_rc == 0, "clients rc %d", client_rc);
    CHECK(rogue_sent > 10);
    /* the honest FedAvg result, exactly */
    float ref[DIM] = {0}, d[DIM];
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        double sum[DIM] = {0}, w = 0;
        for (uint64_t id = 1; id <= NCLIENTS; id++) {
            delta_of(id, r, d);
            for (size_t j = 0; j < DIM; j++)
                sum[j] += (double)id * d[j];
            w += (double)id;
        }
        for (size_t j = 0; j < DIM; j++)
            ref[j] = (float)((double)ref[j] + (double)(float)(sum[j] / w));
    }
    CHECK_MSG(memcmp(ref, final_global, sizeof ref) == 0, "global differs: %g vs %g", (double)final_global[0],
              (double)ref[0]);
    char path[160];
    snprintf(path, sizeof path, "/tmp/sl_fed_test_%d.sock", (int)getpid());
    unlink(path);
    return check_summary("test_fed_transport");
}
