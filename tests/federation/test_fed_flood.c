/* A flood from one peer does not starve the others (loopback TCP, CURVE on, bounded).
 *
 * A rogue with an allow-listed key sends as fast as it can — garbage, valid-looking
 * UPDATEs with forged ids, and messages of exactly net.max_message_bytes — from before the
 * honest clients connect until the end, while 4 honest clients (200 ms of "training" per
 * update) run 5 rounds. Checked: the honest run completes with exactly the FedAvg result
 * of the honest clients (nothing of the rogue got in); the engine banned the rogue's key
 * (and only that key); a new connection with the rogue key is refused at the ZAP handler
 * during the cool-down; and the flood was real (message and byte counts). The time the run
 * took is printed, not asserted (tests assert no times; ctest's timeout bounds a hang).
 * The flood stops at 2 GiB or when the run ends. */
#include "secure_fixture.h"

#define NCLIENTS        4
#define ROUNDS          5
#define MAX_MSG         (256 * 1024)
#define FLOOD_BYTES_CAP (2ull << 30)

static fx_t fx;
static volatile int flood_stop;
static unsigned long long flood_msgs, flood_bytes, flood_big;
static int refused_during_cooldown = 0, refusal_checked = 0;

static void *flooder(void *arg)
{
    (void)arg;
    void *ctx = zmq_ctx_new();
    void *s = fx_rogue_socket(ctx, &fx, 64); /* bounded queue on our side too */
    zmq_connect(s, fx.endpoint);
    uint8_t *big = malloc(MAX_MSG);
    for (size_t i = 0; i < MAX_MSG; i++)
        big[i] = (uint8_t)(i * 131u + 7u);
    sl_wire_buf_t b = {0};
    float vec[FX_DIM] __attribute__((aligned(16)));
    for (size_t j = 0; j < FX_DIM; j++)
        vec[j] = 100.0f;
    unsigned i = 0;
    while (!flood_stop && flood_bytes < FLOOD_BYTES_CAP) {
        int rc;
        size_t n;
        switch (i % 4) {
        case 0: /* garbage */
            rc = zmq_send(s, "\xde\xad\xbe\xef garbage", 12, ZMQ_DONTWAIT);
            n = 12;
            break;
        case 1: { /* a valid-looking UPDATE under an honest client's id */
            sl_msg_t m;
            sl_msg_init(&m, SL_MSG_UPDATE, (uint64_t)(i % NCLIENTS) + 1, 1);
            m.n = FX_DIM;
            m.vec = vec;
            m.update.examples = 1000000;
            if (sl_wire_encode(&m, &b) != 0)
                continue;
            rc = zmq_send(s, b.data, b.len, ZMQ_DONTWAIT | ZMQ_SNDMORE);
            if (rc >= 0)
                rc = zmq_send(s, vec, sizeof vec, ZMQ_DONTWAIT);
            n = b.len + sizeof vec;
            break;
        }
        default: /* exactly the size limit (libzmq lets it through; the engine sees garbage) */
            rc = zmq_send(s, big, MAX_MSG, ZMQ_DONTWAIT);
            n = MAX_MSG;
            break;
        }
        if (rc < 0) { /* our queue is full: the coordinator reads slower than we write */
            zmq_pollitem_t item = {s, 0, ZMQ_POLLOUT, 0};
            zmq_poll(&item, 1, 10);
            continue;
        }
        flood_msgs++;
        flood_bytes += n;
        flood_big += n == MAX_MSG;
        i++;
        /* once the engine has banned the key, a second connection must be refused at ZAP
         * (while this one keeps flooding) */
        if (!refusal_checked && (i % 64) == 0 && fx_banned(&fx, fx.rogue.public_z85)) {
            refusal_checked = 1;
            refused_during_cooldown = fx_rogue_handshake(&fx, 5000) == -1;
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
    fx_init(&fx, "fed_flood");
    fx.cfg.federation.rounds = ROUNDS;
    fx.cfg.federation.min_clients = NCLIENTS;
    fx.cfg.net.max_message_bytes = MAX_MSG;
    fx.cfg.net.max_messages_per_second = 200;
    fx.cfg.net.max_invalid_messages = 5;
    fx.cfg.net.cooldown_seconds = 600; /* outlasts the test */
    double t0 = fx_now();
    CHECK_EQ(fx_start_coordinator(&fx, NCLIENTS), 0);
    pthread_t tf;
    pthread_create(&tf, NULL, flooder, NULL);
    /* the flood is on (and past the handshake) before the honest clients connect */
    for (int w = 0; w < 1000 && flood_msgs < 500; w++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    CHECK(flood_msgs >= 500);
    fx_train_ms = 200;
    unsigned long long msgs_at_start = flood_msgs;
    CHECK_EQ(fx_start_clients(&fx), 0);
    fx_join(&fx);
    flood_stop = 1;
    pthread_join(tf, NULL);
    double elapsed = fx_now() - t0;

    CHECK_MSG(fx.coord_rc == 0, "coordinator rc %d", fx.coord_rc);
    CHECK_MSG(fx.clients_rc == 0, "clients rc %d", fx.clients_rc);
    CHECK_EQ(fx.rounds_completed, ROUNDS);
    for (int i = 0; i < NCLIENTS; i++) {
        CHECK(fx.client_done[i]);
        CHECK_EQ(fx.client_rounds[i], ROUNDS);
    }
    float ref[FX_DIM];
    fx_reference(NCLIENTS, ROUNDS, ref);
    CHECK_MSG(memcmp(ref, fx.final_global, sizeof ref) == 0, "global differs: %g vs %g",
              (double)fx.final_global[0], (double)ref[0]);
    /* the flooder was banned by key, the honest key never */
    CHECK(fx_banned(&fx, fx.rogue.public_z85));
    CHECK(!fx_banned(&fx, fx.honest.public_z85));
    CHECK(refusal_checked);
    CHECK(refused_during_cooldown);
    sl_zap_stats_t st = sl_zap_stats(fx.zap);
    CHECK(st.refused_banned >= 1);
    CHECK_EQ(st.refused_unknown, 0);
    /* 4 honest connections and the flooder's one, never dropped: messages of exactly
     * net.max_message_bytes pass under CURVE (the transport allows for its overhead) */
    CHECK_EQ(st.accepted, NCLIENTS + 1);
    /* the flood went on while the honest clients ran, with many maximum-size messages */
    CHECK_MSG(flood_msgs - msgs_at_start >= 300, "only %llu messages during the run",
              flood_msgs - msgs_at_start);
    CHECK_MSG(flood_big >= 100, "only %llu maximum-size messages", flood_big);
    printf("flood: %llu messages, %.1f MiB (%llu of %d KiB) in %.1f s; %lu handshakes admitted, %lu refused "
           "in cool-down\n",
           flood_msgs, (double)flood_bytes / (1 << 20), flood_big, MAX_MSG / 1024, elapsed, st.accepted,
           st.refused_banned);
    fx_free(&fx);
    return check_summary("test_fed_flood");
}
