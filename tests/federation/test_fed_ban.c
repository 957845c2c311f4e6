/* End-to-end ban (loopback TCP, CURVE on): a peer that sends invalid messages
 * net.max_invalid_messages times is banned by the engine; the ban reaches the ZAP handler
 * by key, so a new connection with that key is refused during net.cooldown_seconds (3 s
 * here), while the banned connection itself is ignored; after the cool-down the key is
 * admitted again and can register (HELLO -> WELCOME). Messages with a bad frame structure
 * count as invalid too. */
#include "secure_fixture.h"

#define COOLDOWN 3.0

static fx_t fx;

/* Send a HELLO as client `id` on `s`; the decoded reply type within timeout_ms, or -1. */
static int hello_reply(void *s, uint64_t id, int timeout_ms)
{
    sl_msg_t m;
    sl_msg_init(&m, SL_MSG_HELLO, 0, id);
    m.hello.version_min = SL_WIRE_VERSION_MIN;
    m.hello.train_examples = 1;
    m.hello.test_examples = 1;
    m.hello.dim = FX_DIM;
    sl_wire_buf_t b = {0};
    int type = -1;
    if (sl_wire_encode(&m, &b) == 0 && zmq_send(s, b.data, b.len, 0) >= 0)
        for (double end = fx_now() + timeout_ms / 1000.0; type < 0 && fx_now() < end;) {
            zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
            if (zmq_poll(&item, 1, 100) <= 0)
                continue;
            uint8_t buf[4096];
            int n = zmq_recv(s, buf, sizeof buf, 0);
            int more = 0;
            size_t ml = sizeof more;
            zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
            while (more) { /* payload frame, if any */
                uint8_t skip[64];
                (void)zmq_recv(s, skip, sizeof skip, 0);
                zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
            }
            sl_msg_t r;
            sl_wire_limits_t lim = {.max_payload_bytes = 1 << 20, .max_vec = FX_DIM, .max_blob = 1 << 20};
            if (n > 0 && sl_wire_decode(buf, (size_t)n, NULL, 0, &lim, &r) == 0 && r.type != SL_MSG_ERROR)
                type = (int)r.type;
        }
    sl_wire_buf_free(&b);
    return type;
}

/* Wait (bounded) until the engine has banned the rogue key. */
static int wait_banned(double timeout)
{
    for (double end = fx_now() + timeout; fx_now() < end;) {
        if (fx_banned(&fx, fx.rogue.public_z85))
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    fx_init(&fx, "fed_ban");
    fx.cfg.federation.rounds = 1;
    fx.cfg.federation.min_clients = 1;
    fx.cfg.net.max_invalid_messages = 3;
    fx.cfg.net.cooldown_seconds = COOLDOWN;
    CHECK_EQ(fx_start_coordinator(&fx, 2), 0); /* waits for 2 registrations: stays in registration */

    /* Before: the rogue key is allow-listed and its handshake succeeds. */
    CHECK_EQ(fx_rogue_handshake(&fx, 5000), 1);

    /* Three invalid messages: banned, by key. */
    void *ctx = zmq_ctx_new();
    void *a = fx_rogue_socket(ctx, &fx, 1000);
    zmq_connect(a, fx.endpoint);
    for (int i = 0; i < 3; i++)
        zmq_send(a, "not a starling message", 22, 0);
    CHECK(wait_banned(10));
    double banned_at = fx_now();
    CHECK(!fx_banned(&fx, fx.honest.public_z85));
    /* The banned connection is ignored (no WELCOME, no ERROR), and a new connection with
     * the key is refused at the handshake, during the cool-down. */
    CHECK_EQ(hello_reply(a, 7, 500), -1);
    CHECK_EQ(fx_rogue_handshake(&fx, 1000), -1);
    sl_zap_stats_t st = sl_zap_stats(fx.zap);
    CHECK(st.refused_banned >= 1);
    CHECK_MSG(fx_now() - banned_at < COOLDOWN,
              "the refusals took %.2f s: too slow to be inside the cool-down", fx_now() - banned_at);
    /* An honest key is unaffected meanwhile. */
    {
        void *h = zmq_socket(ctx, ZMQ_DEALER);
        int linger = 0;
        zmq_setsockopt(h, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(h, ZMQ_CURVE_SERVERKEY, fx.server.public_z85, SL_Z85_KEY_LEN);
        zmq_setsockopt(h, ZMQ_CURVE_PUBLICKEY, fx.honest.public_z85, SL_Z85_KEY_LEN);
        zmq_setsockopt(h, ZMQ_CURVE_SECRETKEY, fx.honest.secret_z85, SL_Z85_KEY_LEN);
        zmq_connect(h, fx.endpoint);
        CHECK_EQ(hello_reply(h, 1, 5000), SL_MSG_WELCOME);
        zmq_close(h);
    }

    /* After the cool-down: admitted again, and it can register. */
    while (fx_now() < banned_at + COOLDOWN + 0.2) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    unsigned long refused_before = sl_zap_stats(fx.zap).refused_banned;
    CHECK_EQ(fx_rogue_handshake(&fx, 5000), 1);
    void *b = fx_rogue_socket(ctx, &fx, 1000);
    zmq_connect(b, fx.endpoint);
    CHECK_EQ(hello_reply(b, 9, 5000), SL_MSG_WELCOME);
    CHECK_EQ(sl_zap_stats(fx.zap).refused_banned, refused_before); /* no refusal after the cool-down */

    /* Messages with a bad frame structure (three frames), which the transport drops before
     * the engine decodes anything, count too: the registered client is banned again. */
    CHECK_EQ(fx_ban_count(&fx), 1);
    for (int i = 0; i < 3; i++) {
        zmq_send(b, "a", 1, ZMQ_SNDMORE);
        zmq_send(b, "b", 1, ZMQ_SNDMORE);
        zmq_send(b, "c", 1, 0);
    }
    for (double end = fx_now() + 10; fx_ban_count(&fx) < 2 && fx_now() < end;) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    CHECK_EQ(fx_ban_count(&fx), 2);
    CHECK_EQ(fx_rogue_handshake(&fx, 1000), -1);

    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
    fx.stop = 1;
    fx_join(&fx);
    CHECK_EQ(fx.coord_rc, SL_EINTR);
    fx_free(&fx);
    return check_summary("test_fed_ban");
}
