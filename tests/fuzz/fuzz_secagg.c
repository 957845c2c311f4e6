/* libFuzzer harness for the SecAgg+ decoders: every stage message, fed to a client or the
 * server that is in the stage where that message is expected (so decoding goes past the
 * header checks). The first input byte picks the target; for half the inputs the harness
 * writes a valid header (round, session, sender, receiver, length) in front of the fuzzed
 * body, so the body parsers see most inputs. Nothing may crash, read out of bounds or leak;
 * rejected input must leave the state machine able to finish the round.
 *
 *   clang -fsanitize=fuzzer,address,undefined (see tests/secagg/CMakeLists.txt, SL_FUZZ=ON)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "privacy/secagg/secagg.h"

enum { N = 4, DIM = 9 };

typedef struct {
    sl_secagg_server_t *s;
    sl_secagg_client_t *c[N];
    sl_rng_t rng[N];
    sl_secagg_outbox_t down, up;
} world_t;

static uint32_t sender_of(const sl_secagg_msg_t *m)
{
    const uint8_t *p = m->data + 32;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void step_clients(world_t *w)
{
    for (size_t i = 0; i < w->down.count; i++) {
        int rc = sl_secagg_client_handle(w->c[w->down.msgs[i].to], w->down.msgs[i].data, w->down.msgs[i].len, &w->up);
        (void)rc; /* honest traffic; errors are irrelevant here */
    }
    sl_secagg_outbox_clear(&w->down);
}

static void step_server(world_t *w)
{
    for (size_t i = 0; i < w->up.count; i++) {
        int rc = sl_secagg_server_handle(w->s, sender_of(&w->up.msgs[i]), w->up.msgs[i].data, w->up.msgs[i].len,
                                         &w->down);
        (void)rc;
    }
    sl_secagg_outbox_clear(&w->up);
}

/* An honest world advanced by `steps` half-rounds (server->clients or clients->server). */
static void world_init(world_t *w, int steps)
{
    memset(w, 0, sizeof *w);
    static const uint8_t gseed[32] = {1}, session[16] = {2};
    sl_secagg_params_t p;
    sl_secagg_params_default(&p);
    p.round = 3;
    p.n = N;
    p.dim = DIM;
    p.mod_bits = 20;
    p.graph_seed = gseed;
    p.session = session;
    if (sl_secagg_server_new(&w->s, &p) != 0)
        abort();
    uint32_t in[DIM] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (uint32_t u = 0; u < N; u++) {
        sl_rng_init(&w->rng[u], 9, "fuzz", 0, u);
        sl_secagg_client_opts_t o = {.index = u, .round = 3, .rng = &w->rng[u]};
        if (sl_secagg_client_new(&w->c[u], &o) != 0 || sl_secagg_client_set_input(w->c[u], in, DIM, NULL) != 0)
            abort();
    }
    if (sl_secagg_server_start(w->s, &w->down) != 0)
        abort();
    for (int i = 0; i < steps; i++) {
        if (i % 2 == 0)
            step_clients(w);
        else
            step_server(w);
    }
}

static void world_free(world_t *w)
{
    for (int u = 0; u < N; u++)
        sl_secagg_client_destroy(&w->c[u]);
    sl_secagg_server_destroy(&w->s);
    sl_secagg_outbox_free(&w->down);
    sl_secagg_outbox_free(&w->up);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        if (sl_csprng_init() != 0)
            abort();
        init = 1;
    }
    if (size < 2)
        return 0;
    int target = data[0] % 8;      /* 0..3: client in stage k; 4..7: server in stage k */
    int framed = data[1] & 1;
    data += 2;
    size -= 2;
    static const uint8_t to_client[4] = {SL_SECAGG_MSG_SETUP, SL_SECAGG_MSG_KEYS, SL_SECAGG_MSG_FORWARD,
                                         SL_SECAGG_MSG_UNMASK_REQ};
    static const uint8_t to_server[4] = {SL_SECAGG_MSG_ADVERTISE, SL_SECAGG_MSG_SHARES, SL_SECAGG_MSG_MASKED,
                                         SL_SECAGG_MSG_UNMASK_RESP};
    world_t w;
    int stage = target % 4;
    world_init(&w, target < 4 ? 2 * stage : 2 * stage + 1);
    uint8_t *msg = (uint8_t *)data;
    size_t len = size;
    if (framed) {
        len = SL_SECAGG_HEADER_BYTES + size;
        msg = malloc(len ? len : 1);
        if (!msg)
            abort();
        static const uint8_t session[16] = {2};
        sl_secagg_header_t h = {.type = target < 4 ? to_client[stage] : to_server[stage], .round = 3,
                                .sender = target < 4 ? SL_SECAGG_SERVER_ID : 1,
                                .receiver = target < 4 ? 1 : SL_SECAGG_SERVER_ID, .body_len = (uint32_t)size};
        memcpy(h.session, session, 16);
        sl_secagg_header_encode(&h, msg);
        memcpy(msg + SL_SECAGG_HEADER_BYTES, data, size);
    }
    sl_secagg_outbox_t out;
    sl_secagg_outbox_init(&out);
    int rc = target < 4 ? sl_secagg_client_handle(w.c[1], msg, len, &out)
                        : sl_secagg_server_handle(w.s, 1, msg, len, &out);
    (void)rc; /* rejection is the expected outcome; crashes and leaks are the bugs */
    sl_secagg_outbox_free(&out);
    if (framed)
        free(msg);
    world_free(&w);
    return 0;
}
