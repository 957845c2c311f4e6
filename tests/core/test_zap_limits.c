/* core/zap connection limits, over real CURVE sockets on loopback TCP (127.0.0.1 and
 * 127.0.0.2 as two source addresses) and ipc://: the connection over the per-source or the
 * overall cap is refused while the admitted ones keep working, and once one of them
 * disconnects a new connection gets in. Over ipc:// (no address) only the overall cap
 * applies. */
#include "core/log.h"
#include "core/zap.h"
#include "support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static void *server_socket(void *ctx, sl_zap_t *zap, const sl_keypair_t *kp, const char *endpoint,
                           const sl_zap_limits_t *lim, char *bound, size_t cap)
{
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp->secret_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "starling", 8);
    if (sl_zap_limit_connections(zap, s, lim) != 0 || zmq_bind(s, endpoint) != 0)
        return NULL;
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, bound, &cap);
    return s;
}

static void *client_socket(void *ctx, const sl_keypair_t *kp, const char *server_pub, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0, ivl = 100;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, kp->public_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp->secret_z85, SL_Z85_KEY_LEN);
    zmq_connect(s, endpoint);
    return s;
}

/* Send `tag` from client; 1 if the server receives exactly that message in time (other
 * messages are skipped). */
static int delivered(void *server, void *client, const char *tag)
{
    zmq_send(client, tag, strlen(tag), ZMQ_DONTWAIT);
    for (;;) {
        zmq_pollitem_t item = {server, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 1500) <= 0)
            return 0;
        char id[256], body[64] = {0};
        zmq_recv(server, id, sizeof id, 0);
        int n = zmq_recv(server, body, sizeof body - 1, 0);
        if (n == (int)strlen(tag) && memcmp(body, tag, (size_t)n) == 0)
            return 1;
    }
}

/* Wait (bounded) until the handler counts `n` open connections. */
static int wait_connections(sl_zap_t *zap, unsigned long n)
{
    for (int i = 0; i < 300; i++) {
        if (sl_zap_stats(zap).connections == n)
            return 1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void close_sock(void **s)
{
    zmq_close(*s);
    *s = NULL;
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    char dir[] = "/tmp/sl_test_zap_limits_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    sl_keypair_t server, good;
    CHECK_EQ(sl_keypair_generate(&server), 0);
    CHECK_EQ(sl_keypair_generate(&good), 0);
    char allow_path[256];
    snprintf(allow_path, sizeof allow_path, "%s/allow.txt", dir);
    FILE *f = fopen(allow_path, "w");
    fprintf(f, "%s\n", good.public_z85);
    fclose(f);

    /* ---- TCP: 2 per source, 3 in all ---- */
    {
        sl_allowlist_t allow = {0};
        CHECK_EQ(sl_allowlist_load(&allow, allow_path), 0);
        void *ctx = zmq_ctx_new();
        sl_zap_t *zap = NULL;
        CHECK_EQ(sl_zap_start(&zap, ctx, &allow), 0);
        sl_zap_limits_t lim = {.max_connections = 3, .max_per_source = 2};
        char bound[256] = "";
        void *srv = server_socket(ctx, zap, &server, "tcp://127.0.0.1:*", &lim, bound, sizeof bound);
        CHECK(srv != NULL);
        const char *port = strrchr(bound, ':') + 1;
        char from_a[300], from_b[300];
        snprintf(from_a, sizeof from_a, "tcp://127.0.0.1:%s", port);
        snprintf(from_b, sizeof from_b, "tcp://127.0.0.2:0;127.0.0.1:%s", port); /* source address */

        void *a1 = client_socket(ctx, &good, server.public_z85, from_a);
        void *a2 = client_socket(ctx, &good, server.public_z85, from_a);
        CHECK(delivered(srv, a1, "a1"));
        CHECK(delivered(srv, a2, "a2"));
        /* a third connection from 127.0.0.1: over the per-source cap */
        void *a3 = client_socket(ctx, &good, server.public_z85, from_a);
        CHECK(!delivered(srv, a3, "a3"));
        unsigned long by_source = sl_zap_stats(zap).refused_limit;
        CHECK(by_source >= 1);
        /* another source still gets in, up to the overall cap of 3 */
        void *b1 = client_socket(ctx, &good, server.public_z85, from_b);
        CHECK(delivered(srv, b1, "b1"));
        close_sock(&a3); /* it keeps retrying: out of the way of the overall count */
        CHECK(wait_connections(zap, 3));
        void *b2 = client_socket(ctx, &good, server.public_z85, from_b);
        CHECK(!delivered(srv, b2, "b2"));
        CHECK(sl_zap_stats(zap).refused_limit > by_source);
        /* the admitted ones are unaffected */
        CHECK(delivered(srv, a1, "a1 again"));
        CHECK(delivered(srv, a2, "a2 again"));
        CHECK(delivered(srv, b1, "b1 again"));
        close_sock(&b2);
        CHECK(wait_connections(zap, 3));
        /* one leaves: a new connection from its source gets in */
        close_sock(&a1);
        CHECK(wait_connections(zap, 2));
        void *a4 = client_socket(ctx, &good, server.public_z85, from_a);
        CHECK(delivered(srv, a4, "a4"));
        CHECK(delivered(srv, a2, "a2 still"));
        sl_zap_stats_t st = sl_zap_stats(zap);
        CHECK_EQ(st.connections, 3);
        CHECK_EQ(st.accepted, 4); /* a1 a2 b1 a4 */
        CHECK_EQ(st.refused_unknown, 0);

        void *socks[] = {a2, a4, b1, srv};
        for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
            zmq_close(socks[i]);
        sl_zap_stop(&zap); /* after the monitored socket is closed */
        zmq_ctx_term(ctx);
    }

    /* ---- ipc://: no address, so only the overall cap (2) applies ---- */
    {
        sl_allowlist_t allow = {0};
        CHECK_EQ(sl_allowlist_load(&allow, allow_path), 0);
        void *ctx = zmq_ctx_new();
        sl_zap_t *zap = NULL;
        CHECK_EQ(sl_zap_start(&zap, ctx, &allow), 0);
        sl_zap_limits_t lim = {.max_connections = 2, .max_per_source = 1};
        char endpoint[300], bound[300];
        snprintf(endpoint, sizeof endpoint, "ipc://%s/coord.sock", dir);
        void *srv = server_socket(ctx, zap, &server, endpoint, &lim, bound, sizeof bound);
        CHECK(srv != NULL);
        void *c1 = client_socket(ctx, &good, server.public_z85, endpoint);
        void *c2 = client_socket(ctx, &good, server.public_z85, endpoint);
        CHECK(delivered(srv, c1, "c1"));
        CHECK(delivered(srv, c2, "c2"));
        void *c3 = client_socket(ctx, &good, server.public_z85, endpoint);
        CHECK(!delivered(srv, c3, "c3"));
        CHECK(sl_zap_stats(zap).refused_limit >= 1);
        close_sock(&c3);
        close_sock(&c1);
        CHECK(wait_connections(zap, 1));
        void *c4 = client_socket(ctx, &good, server.public_z85, endpoint);
        CHECK(delivered(srv, c4, "c4"));
        zmq_close(c2);
        zmq_close(c4);
        zmq_close(srv);
        sl_zap_stop(&zap);
        zmq_ctx_term(ctx);
    }

    /* bad limits are refused with a message */
    {
        sl_allowlist_t allow = {0};
        void *ctx = zmq_ctx_new();
        sl_zap_t *zap = NULL;
        CHECK_EQ(sl_zap_start(&zap, ctx, &allow), 0);
        void *s = zmq_socket(ctx, ZMQ_ROUTER);
        sl_zap_limits_t bad = {.max_connections = 0, .max_per_source = 1};
        CHECK_EQ(sl_zap_limit_connections(zap, s, &bad), SL_EINVAL);
        CHECK_CONTAINS(sl_last_error(), "at least 1");
        zmq_close(s);
        sl_zap_stop(&zap);
        zmq_ctx_term(ctx);
    }

    sl_keypair_wipe(&server);
    sl_keypair_wipe(&good);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_zap_limits");
}
