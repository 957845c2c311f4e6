/* core/zap: over real CURVE sockets (ipc://, one process), only allow-listed keys get
 * through, the user id is the client's key, a wrong pinned server key fails, and a banned
 * key is refused for its cool-down. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

#include "core/zap.h"
#include "support/check.h"

static void *server_socket(void *ctx, const sl_keypair_t *kp, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp->secret_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "starling", 8);
    if (zmq_bind(s, endpoint) != 0)
        return NULL;
    return s;
}

static void *client_socket(void *ctx, const sl_keypair_t *kp, const char *server_pub, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_pub, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, kp->public_z85, SL_Z85_KEY_LEN);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, kp->secret_z85, SL_Z85_KEY_LEN);
    zmq_connect(s, endpoint);
    return s;
}

/* Send "hi" from client; return 1 and the User-Id if the server receives it in time. */
static int delivered(void *server, void *client, char *user_id, size_t cap)
{
    zmq_send(client, "hi", 2, ZMQ_DONTWAIT);
    zmq_pollitem_t item = {server, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, 1500) <= 0)
        return 0;
    zmq_msg_t id, body;
    zmq_msg_init(&id);
    zmq_msg_init(&body);
    zmq_msg_recv(&id, server, 0);
    zmq_msg_recv(&body, server, 0);
    const char *uid = zmq_msg_gets(&body, "User-Id");
    snprintf(user_id, cap, "%s", uid ? uid : "");
    zmq_msg_close(&id);
    zmq_msg_close(&body);
    return 1;
}

int main(void)
{
    char dir[] = "/tmp/sl_test_zap_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/coord.sock", dir);

    sl_keypair_t server, good, stranger, impostor;
    CHECK_EQ(sl_keypair_generate(&server), 0);
    CHECK_EQ(sl_keypair_generate(&good), 0);
    CHECK_EQ(sl_keypair_generate(&stranger), 0);
    CHECK_EQ(sl_keypair_generate(&impostor), 0);

    char allow_path[256];
    snprintf(allow_path, sizeof allow_path, "%s/allow.txt", dir);
    FILE *f = fopen(allow_path, "w");
    fprintf(f, "%s\n", good.public_z85);
    fclose(f);
    sl_allowlist_t allow = {0};
    CHECK_EQ(sl_allowlist_load(&allow, allow_path), 0);

    void *ctx = zmq_ctx_new();
    sl_zap_t *zap = NULL;
    CHECK_EQ(sl_zap_start(&zap, ctx, &allow), 0);
    void *srv = server_socket(ctx, &server, endpoint);
    CHECK(srv != NULL);

    char uid[128];
    /* An allow-listed client joins, and its messages carry its key as user id. */
    void *c1 = client_socket(ctx, &good, server.public_z85, endpoint);
    CHECK(delivered(srv, c1, uid, sizeof uid));
    CHECK(strcmp(uid, good.public_z85) == 0);
    /* An unknown key never reaches the server. */
    void *c2 = client_socket(ctx, &stranger, server.public_z85, endpoint);
    CHECK(!delivered(srv, c2, uid, sizeof uid));
    /* A client pinned to another server key (a man in the middle) never gets through. */
    void *c3 = client_socket(ctx, &good, impostor.public_z85, endpoint);
    CHECK(!delivered(srv, c3, uid, sizeof uid));

    /* Reload adds the stranger; a new connection of it is admitted. */
    f = fopen(allow_path, "a");
    fprintf(f, "%s\n", stranger.public_z85);
    fclose(f);
    CHECK_EQ(sl_zap_reload(zap, allow_path), 0);
    void *c4 = client_socket(ctx, &stranger, server.public_z85, endpoint);
    CHECK(delivered(srv, c4, uid, sizeof uid));
    CHECK(strcmp(uid, stranger.public_z85) == 0);

    /* A banned key is refused on its next connection, though allow-listed. */
    sl_zap_ban(zap, good.public_z85, 60);
    void *c5 = client_socket(ctx, &good, server.public_z85, endpoint);
    CHECK(!delivered(srv, c5, uid, sizeof uid));

    sl_zap_stats_t st = sl_zap_stats(zap);
    CHECK(st.accepted >= 2);
    CHECK(st.refused_unknown >= 1);
    CHECK(st.refused_banned >= 1);

    void *socks[] = {c1, c2, c3, c4, c5, srv};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        zmq_close(socks[i]);
    sl_zap_stop(&zap);
    CHECK(zap == NULL);
    zmq_ctx_term(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_zap");
}
