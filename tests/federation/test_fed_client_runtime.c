/* Client runtime against a scripted coordinator (a raw ROUTER): a coordinator that goes
 * silent makes the client close its socket and reconnect with backoff (a new connection
 * and a new HELLO); ERROR NOT_REGISTERED makes it register again; the stop flag makes it
 * leave with BYE and return SL_EINTR. */
#include "client/runtime.h"
#include "core/log.h"
#include "core/wire.h"
#include "support/check.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define DIM 8

static char endpoint[128];
static volatile sig_atomic_t stop_flag;
static int run_rc = -999;
static sl_client_t *cl;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int train(void *ctx, const sl_client_task_t *task, const float *global, float *delta,
                 sl_update_info_t *info)
{
    (void)ctx, (void)task, (void)global;
    for (size_t j = 0; j < DIM; j++)
        delta[j] = 1.0f;
    info->examples = 1;
    return 0;
}

static void *client_thread(void *arg)
{
    (void)arg;
    sl_client_runtime_opts_t ro = {.transport = {.endpoint = endpoint, .reconnect_ivl_ms = 20},
                                   .coordinator_timeout = 0.6,
                                   .backoff_initial = 0.05,
                                   .backoff_max = 0.2,
                                   .stop = &stop_flag};
    run_rc = sl_client_run(&cl, 1, &ro);
    return NULL;
}

/* Receive one message on the ROUTER within timeout: returns its type (0 = none). */
static int recv_type(void *r, uint8_t *id, size_t *idlen, int timeout_ms, sl_msg_t *m)
{
    zmq_pollitem_t it = {.socket = r, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return 0;
    uint8_t hdr[4096];
    static float pay[256];
    int n = zmq_recv(r, id, 64, 0);
    *idlen = (size_t)n;
    int h = zmq_recv(r, hdr, sizeof hdr, 0);
    int more = 0, plen = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(r, ZMQ_RCVMORE, &more, &ml);
    if (more) {
        plen = zmq_recv(r, pay, sizeof pay, 0);
        zmq_getsockopt(r, ZMQ_RCVMORE, &more, &ml);
    }
    while (more) {
        char junk[256];
        zmq_recv(r, junk, sizeof junk, 0);
        zmq_getsockopt(r, ZMQ_RCVMORE, &more, &ml);
    }
    if (h < 0 || plen < 0 ||
        sl_wire_decode(hdr, (size_t)h, plen ? (const uint8_t *)pay : NULL, (size_t)plen, NULL, m) != 0)
        return -1;
    return (int)m->type;
}

static void send_msg(void *r, const uint8_t *id, size_t idlen, const sl_msg_t *m)
{
    sl_wire_buf_t b = {0};
    CHECK(sl_wire_encode(m, &b) == 0);
    zmq_send(r, id, idlen, ZMQ_SNDMORE);
    zmq_send(r, b.data, b.len, 0);
    sl_wire_buf_free(&b);
}

int main(void)
{
    sl_log_set_level(getenv("SL_TEST_LOG") ? SL_LOG_DEBUG : SL_LOG_OFF);
    snprintf(endpoint, sizeof endpoint, "ipc:///tmp/sl_fed_crt_%d.sock", (int)getpid());
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(r, ZMQ_LINGER, &linger, sizeof linger);
    CHECK(zmq_bind(r, endpoint) == 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sl_client_opts_t co = {.client_id = 5,
                           .dim = DIM,
                           .train_examples = 3,
                           .hello_retry_s = 5,
                           .heartbeat_s = 0.1,
                           .train = train};
    CHECK(sl_client_new(&cl, &co) == 0);
    pthread_t th;
    pthread_create(&th, NULL, client_thread, NULL);

    uint8_t id1[64], id2[64];
    size_t l1 = 0, l2 = 0;
    sl_msg_t m;
    CHECK_EQ(recv_type(r, id1, &l1, 5000, &m), SL_MSG_HELLO);
    CHECK_EQ(m.sender, 5);
    sl_msg_t w;
    sl_msg_init(&w, SL_MSG_WELCOME, 0, 0);
    w.welcome = (sl_welcome_info_t){.client_id = 5, .dim = DIM, .heartbeat_ms = 100, .rounds = 1};
    send_msg(r, id1, l1, &w);
    /* then silence: heartbeats arrive, nobody answers; the client must reconnect */
    int heartbeats = 0, hello2 = 0;
    for (int i = 0; i < 200 && !hello2; i++) {
        int t = recv_type(r, id2, &l2, 100, &m);
        if (t == SL_MSG_HEARTBEAT)
            heartbeats++;
        if (t == SL_MSG_HELLO)
            hello2 = 1;
    }
    CHECK(heartbeats >= 2);
    CHECK(hello2);
    CHECK(!(l1 == l2 && memcmp(id1, id2, l1) == 0)); /* a new connection */
    /* the coordinator "restarted": it does not know the client -> HELLO again */
    send_msg(r, id2, l2, &w);
    sl_msg_t e;
    sl_msg_init(&e, SL_MSG_ERROR, 0, 0);
    e.code = SL_WERR_NOT_REGISTERED;
    strcpy(e.why, "not registered");
    send_msg(r, id2, l2, &e);
    int hello3 = 0;
    for (int i = 0; i < 50 && !hello3; i++)
        hello3 = recv_type(r, id2, &l2, 100, &m) == SL_MSG_HELLO;
    CHECK(hello3);
    send_msg(r, id2, l2, &w);
    /* a TASK is answered with an UPDATE */
    float g[DIM] = {0};
    sl_msg_t t;
    sl_msg_init(&t, SL_MSG_TASK, 1, 0);
    t.n = DIM;
    t.vec = g;
    t.task.local_epochs = 1;
    t.task.batch_size = 1;
    {
        sl_wire_buf_t b = {0};
        CHECK(sl_wire_encode(&t, &b) == 0);
        zmq_send(r, id2, l2, ZMQ_SNDMORE);
        zmq_send(r, b.data, b.len, ZMQ_SNDMORE);
        zmq_send(r, g, sizeof g, 0);
        sl_wire_buf_free(&b);
    }
    int update = 0;
    for (int i = 0; i < 50 && !update; i++)
        update = recv_type(r, id2, &l2, 100, &m) == SL_MSG_UPDATE;
    CHECK(update);
    /* SIGINT: the client says BYE and returns SL_EINTR */
    pthread_kill(th, SIGUSR1); /* as a SIGINT handler would: the flag is set in the client's thread */
    int bye = 0;
    for (int i = 0; i < 50 && !bye; i++)
        bye = recv_type(r, id2, &l2, 100, &m) == SL_MSG_BYE;
    CHECK(bye);
    pthread_join(th, NULL);
    CHECK_EQ(run_rc, SL_EINTR);
    CHECK_EQ(sl_client_state(cl), SL_CLIENT_DONE);
    sl_client_destroy(&cl);
    zmq_close(r);
    zmq_ctx_term(ctx);
    char path[160];
    snprintf(path, sizeof path, "/tmp/sl_fed_crt_%d.sock", (int)getpid());
    unlink(path);
    return check_summary("test_fed_client_runtime");
}
