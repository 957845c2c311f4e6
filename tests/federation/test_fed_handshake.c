/* Handshake diagnosis over loopback TCP with CURVE (the secured coordinator of
 * secure_fixture.h): a client that pins a server key the coordinator does not have, and a
 * client whose key is not in the allow-list, each get an ERROR line naming the cause and
 * the setting to check, and sl_client_run gives up with SL_EPERM and that diagnosis
 * (handshake_give_up); the transport reports the outcome libzmq gave (DROPPED after the
 * HELLO, REFUSED with ZAP status 400); an allow-listed client then trains to the end and
 * logs nothing of the kind. Log lines are captured with sl_log_set_file. */
#include "secure_fixture.h"

static fx_t fx;

static void read_file(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A monitored client transport with `me`'s key pinning `server_pub`: its handshake state
 * once `failures` handshakes failed in a row (or after 10 s). */
static sl_transport_handshake_t transport_outcome(const sl_keypair_t *me, const char *server_pub,
                                                  unsigned failures)
{
    sl_transport_opts_t o = {.role = SL_TRANSPORT_CLIENT,
                             .endpoint = fx.endpoint,
                             .reconnect_ivl_ms = 50,
                             .linger_ms = 1,
                             .curve_public_z85 = me->public_z85,
                             .curve_secret_z85 = me->secret_z85,
                             .curve_server_z85 = server_pub,
                             .monitor_handshake = 1};
    sl_transport_t *t = NULL;
    sl_transport_handshake_t h = {0};
    CHECK_EQ(sl_transport_new(&t, NULL, &o), 0);
    for (double end = fx_now() + 10; t && fx_now() < end; sleep_ms(20)) {
        CHECK_EQ(sl_transport_handshake(t, &h), 1);
        if (h.failures >= failures || h.succeeded)
            break;
    }
    sl_transport_destroy(&t);
    return h;
}

/* One client (id 1) with `me`'s key pinning `server_pub`, until it gives up; its rc. */
static int run_client(const sl_keypair_t *me, const char *server_pub)
{
    sl_client_t *c = NULL;
    sl_client_opts_t co = {.client_id = 1,
                           .dim = FX_DIM,
                           .train_examples = 1,
                           .test_examples = 1,
                           .hello_retry_s = 0.2,
                           .heartbeat_s = 0.5,
                           .train = fx_train};
    CHECK_EQ(sl_client_new(&c, &co), 0);
    sl_client_runtime_opts_t ro = {.transport = {.endpoint = fx.endpoint,
                                                 .heartbeat_ms = 500,
                                                 .reconnect_ivl_ms = 50,
                                                 .curve_public_z85 = me->public_z85,
                                                 .curve_secret_z85 = me->secret_z85,
                                                 .curve_server_z85 = server_pub},
                                   .coordinator_timeout = 20,
                                   .backoff_initial = 0.1,
                                   .backoff_max = 0.4,
                                   .handshake_give_up = 1.5};
    double t0 = fx_now();
    int rc = c ? sl_client_run(&c, 1, &ro) : -1;
    CHECK(fx_now() - t0 < 15); /* gave up, did not loop */
    sl_client_destroy(&c);
    return rc;
}

int main(void)
{
    static char log[1 << 16];
    char log_path[128], fp[17];
    sl_log_set_level(SL_LOG_INFO);
    fx_init(&fx, "fed_handshake");
    fx.cfg.federation.rounds = 2;
    fx.cfg.federation.min_clients = 1;
    CHECK_EQ(fx_start_coordinator(&fx, 1), 0);
    sl_keypair_t stranger, other_server;
    CHECK_EQ(sl_keypair_generate(&stranger), 0);
    CHECK_EQ(sl_keypair_generate(&other_server), 0);

    /* What the transport reports. Wrong server key: the coordinator closes the connection
     * after our HELLO, libzmq says no more, and reconnects. */
    sl_transport_handshake_t h = transport_outcome(&fx.honest, other_server.public_z85, 3);
    CHECK_EQ(h.outcome, SL_HANDSHAKE_DROPPED);
    CHECK(h.failures >= 3);
    CHECK_EQ(h.succeeded, 0u);
    CHECK_CONTAINS(h.message, "does net.server_public_key match the coordinator's key?");
    /* Key not allow-listed: ZAP 400, once (libzmq does not retry a refused handshake). */
    h = transport_outcome(&stranger, fx.server.public_z85, 1);
    CHECK_EQ(h.outcome, SL_HANDSHAKE_REFUSED);
    CHECK_EQ(h.zap_status, 400);
    CHECK_EQ(h.failures, 1u);
    sl_key_fingerprint(stranger.public_z85, fp);
    CHECK_CONTAINS(h.message, fp);
    /* Allow-listed key: success, no diagnosis. */
    h = transport_outcome(&fx.honest, fx.server.public_z85, 1);
    CHECK_EQ(h.outcome, SL_HANDSHAKE_OK);
    CHECK_EQ(h.failures, 0u);
    CHECK_EQ(h.message[0], '\0');

    /* The client runtime: wrong server key. */
    snprintf(log_path, sizeof log_path, "%s/wrong_server.log", fx.dir);
    CHECK_EQ(sl_log_set_file(log_path), 0);
    int rc = run_client(&fx.honest, other_server.public_z85);
    CHECK_EQ(sl_log_set_file(NULL), 0);
    CHECK_EQ(rc, SL_EPERM);
    CHECK_CONTAINS(sl_last_error(), "does net.server_public_key match the coordinator's key?");
    CHECK_CONTAINS(sl_last_error(), "giving up");
    read_file(log_path, log, sizeof log);
    CHECK_CONTAINS(log, "ERROR");
    CHECK_CONTAINS(log, "CURVE handshake with tcp://127.0.0.1:");
    CHECK_CONTAINS(log, "closed the connection right after our HELLO");
    CHECK(strstr(log, "refused this client's key") == NULL);

    /* The client runtime: a key the coordinator's allow-list does not have. */
    snprintf(log_path, sizeof log_path, "%s/refused.log", fx.dir);
    CHECK_EQ(sl_log_set_file(log_path), 0);
    rc = run_client(&stranger, fx.server.public_z85);
    CHECK_EQ(sl_log_set_file(NULL), 0);
    CHECK_EQ(rc, SL_EPERM);
    CHECK_CONTAINS(sl_last_error(), "refused this client's key");
    read_file(log_path, log, sizeof log);
    char want[128];
    snprintf(want, sizeof want, "refused this client's key %s (ZAP 400)", fp);
    CHECK_CONTAINS(log, want);
    CHECK_CONTAINS(log, "is its .pub in the coordinator's net.authorized_clients?");
    CHECK(strstr(log, "net.server_public_key match") == NULL);
    sl_key_fingerprint(stranger.public_z85, fp);
    char zap_line[128]; /* the coordinator's side of the same refusal, for comparison */
    snprintf(zap_line, sizeof zap_line, "zap: refused client key %s", fp);
    CHECK_CONTAINS(log, zap_line);

    /* An allow-listed client: trains both rounds, no handshake diagnosis. */
    snprintf(log_path, sizeof log_path, "%s/good.log", fx.dir);
    CHECK_EQ(sl_log_set_file(log_path), 0);
    CHECK_EQ(fx_start_clients(&fx), 0);
    fx_join(&fx);
    CHECK_EQ(sl_log_set_file(NULL), 0);
    CHECK_EQ(fx.coord_rc, 0);
    CHECK_EQ(fx.clients_rc, 0);
    CHECK_EQ(fx.rounds_completed, 2u);
    CHECK(fx.client_done[0]);
    read_file(log_path, log, sizeof log);
    CHECK_MSG(strstr(log, "handshake") == NULL, "%s", log);
    CHECK(strstr(log, "refused") == NULL);
    CHECK(strstr(log, "ERROR") == NULL);

    sl_keypair_wipe(&stranger);
    sl_keypair_wipe(&other_server);
    fx_free(&fx);
    return check_summary("test_fed_handshake");
}
