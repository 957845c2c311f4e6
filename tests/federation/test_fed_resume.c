/* Fault: the coordinator dies after round 2 (sockets closed, no BYE), a new coordinator
 * resumes from the checkpoint on the same endpoint, the clients (real runtime, real
 * sockets) notice, re-register and finish. The final vector must be bit-identical to an
 * uninterrupted FedAdam run of the same clients. */
#include "client/runtime.h"
#include "coordinator/aggregator.h"
#include "coordinator/checkpoint.h"
#include "coordinator/engine.h"
#include "coordinator/runlog.h"
#include "coordinator/server.h"
#include "coordinator/strategy.h"
#include "core/log.h"
#include "support/check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DIM      300
#define NCLIENTS 3
#define ROUNDS   5

static char endpoint[128];
static sl_config_t cfg;
static int client_rc = -999;

static void delta_of(uint64_t id, uint64_t round, const float *global, float *d)
{
    /* depends on the global vector too, as real training does */
    for (size_t j = 0; j < DIM; j++)
        d[j] = (float)((int)((id * 11 + round * 3 + j) % 5) - 2) * 0.125f - 0.01f * global[j];
}

static int train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                 sl_update_info_t *info)
{
    (void)ctx;
    delta_of(task->client_id, task->round, global, delta);
    info->examples = 10 * task->client_id;
    info->train_loss = 1.0;
    return 0;
}

static void *clients_thread(void *arg)
{
    (void)arg;
    sl_client_t *cl[NCLIENTS] = {0};
    int rc = 0;
    for (int i = 0; i < NCLIENTS && !rc; i++) {
        sl_client_opts_t co = {.client_id = (uint64_t)(i + 1),
                               .dim = DIM,
                               .train_examples = 10,
                               .hello_retry_s = 0.2,
                               .heartbeat_s = 0.2,
                               .train = train};
        rc = sl_client_new(&cl[i], &co);
    }
    if (!rc) {
        sl_client_runtime_opts_t ro = {
            .transport = {.endpoint = endpoint, .heartbeat_ms = 200, .reconnect_ivl_ms = 50},
            .coordinator_timeout = 10};
        rc = sl_client_run(cl, NCLIENTS, &ro);
    }
    if (rc)
        fprintf(stderr, "clients: %s\n", sl_last_error());
    client_rc = rc;
    for (int i = 0; i < NCLIENTS; i++)
        sl_client_destroy(&cl[i]);
    return NULL;
}

/* The driver loop a CLI would write, stopped abruptly once `until` rounds completed. */
static int drive_until(sl_engine_t *e, sl_transport_t *t, uint64_t until)
{
    double t0 = sl_now();
    while (sl_engine_rounds_completed(e) < until && sl_now() - t0 < 60) {
        sl_frame_t f;
        int rc = sl_transport_recv(t, &f, 50);
        if (rc == 0 &&
            sl_engine_on_message(e, &f.peer, f.header, f.header_len, f.payload, f.payload_len, sl_now()))
            return -1;
        const sl_outmsg_t *o;
        size_t n = sl_engine_outbox(e, &o);
        for (size_t i = 0; i < n; i++)
            if (sl_transport_send(t, &o[i].peer, o[i].header, o[i].header_len, o[i].payload,
                                  o[i].payload_len))
                return -1;
        if (sl_engine_tick(e, sl_now()))
            return -1;
        n = sl_engine_outbox(e, &o);
        for (size_t i = 0; i < n; i++)
            if (sl_transport_send(t, &o[i].peer, o[i].header, o[i].header_len, o[i].payload,
                                  o[i].payload_len))
                return -1;
    }
    return sl_engine_rounds_completed(e) >= until ? 0 : -1;
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sl_fed_resume_%d.sock", (int)getpid());
    sl_config_defaults(&cfg);
    cfg.federation.rounds = ROUNDS;
    cfg.federation.fraction = 1;
    cfg.federation.min_clients = NCLIENTS;
    cfg.federation.strategy = SL_STRAT_FEDADAM;
    cfg.federation.server_lr = 0.05;
    cfg.federation.round_timeout = 30;
    cfg.net.heartbeat_ms = 200;
    char dir[] = "/tmp/sl_fed_resumeXXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_runlog_t *rl = NULL;
    CHECK(sl_runlog_new(&rl, &cfg, dir) == 0);
    float init[DIM];
    for (size_t j = 0; j < DIM; j++)
        init[j] = (float)j * 0.001f;

    pthread_t tl;
    pthread_create(&tl, NULL, clients_thread, NULL);

    /* coordinator 1: dies after round 2 */
    sl_engine_t *e = NULL;
    sl_transport_t *t = NULL;
    sl_engine_opts_t o = {.cfg = &cfg, .dim = DIM, .init = init, .start_clients = NCLIENTS, .runlog = rl};
    CHECK(sl_engine_new(&e, &o) == 0);
    sl_transport_opts_t to = {
        .role = SL_TRANSPORT_SERVER, .endpoint = endpoint, .heartbeat_ms = 200, .linger_ms = 1};
    CHECK(sl_transport_new(&t, NULL, &to) == 0);
    CHECK(drive_until(e, t, 2) == 0);
    sl_transport_destroy(&t);
    sl_engine_destroy(&e);
    struct timespec ts = {0, 400 * 1000000L};
    nanosleep(&ts, NULL);

    /* coordinator 2: resumes from the checkpoint */
    sl_checkpoint_t ck;
    int rc = sl_checkpoint_read(sl_runlog_checkpoint_path(rl), &ck);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK(ck.round >= 2);
    o.resume = &ck;
    CHECK(sl_engine_new(&e, &o) == 0);
    CHECK(sl_transport_new(&t, NULL, &to) == 0);
    rc = sl_coordinator_run(e, t, NULL, NULL, NULL);
    CHECK_MSG(rc == 0, "%s", sl_last_error());
    CHECK_EQ(sl_engine_rounds_completed(e), ROUNDS);
    float got[DIM];
    memcpy(got, sl_engine_global(e, NULL), sizeof got);
    to.linger_ms = 500;
    sl_transport_destroy(&t);
    sl_engine_destroy(&e);
    sl_checkpoint_free(&ck);
    pthread_join(tl, NULL);
    CHECK_EQ(client_rc, 0);

    /* reference: the uninterrupted run, computed directly */
    float x[DIM], d[DIM], mean[DIM];
    memcpy(x, init, sizeof x);
    sl_strategy_t *s = NULL;
    sl_aggregator_t *a = NULL;
    CHECK(sl_strategy_new(&s, &cfg, DIM) == 0);
    CHECK(sl_aggregator_mean_new(&a, DIM) == 0);
    for (uint64_t r = 1; r <= ROUNDS; r++) {
        uint64_t ids[NCLIENTS] = {1, 2, 3};
        CHECK(a->begin_round(a->self, r, ids, NCLIENTS, NULL) == 0);
        for (uint64_t id = 1; id <= NCLIENTS; id++) {
            delta_of(id, r, x, d);
            CHECK(a->add_update(a->self, id, d, DIM, 10.0 * (double)id) == 0);
        }
        sl_agg_result_t res;
        CHECK(a->finish(a->self, mean, DIM, &res) == 0);
        CHECK(sl_strategy_apply(s, x, mean) == 0);
    }
    CHECK_MSG(memcmp(x, got, sizeof x) == 0, "resumed run differs: %.9g vs %.9g", (double)got[1],
              (double)x[1]);
    sl_strategy_destroy(&s);
    sl_aggregator_destroy(&a);
    sl_runlog_destroy(&rl);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' /tmp/sl_fed_resume_%d.sock", dir, (int)getpid());
    CHECK(system(cmd) == 0);
    return check_summary("test_fed_resume");
}
