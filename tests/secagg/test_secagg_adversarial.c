/* SecAgg+ against a curious server and malformed messages.
 *
 *  - Server view: what the server sees at unmasking never holds both the b-share and the
 *    s-share of one client; with t-1 b-shares of a survivor it cannot rebuild b (its
 *    commitment does not match), with t it can.
 *  - A server request asking for both shares of a neighbour, naming a non-neighbour or
 *    listing the client itself as dropped is refused; a second, different request too.
 *  - Malformed stage messages (wrong round or session, forged sender, bad tag, duplicate,
 *    wrong sizes, truncated, bad magic) are rejected with SL_EPROTO / SL_ECRYPTO and a
 *    message, and the round still completes with the honest messages, exactly.
 *  - Clients the transport lost (sl_secagg_server_drop) close stages early, get nothing
 *    more and are refused; the sum stays exact.
 */
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/rng.h"
#include "privacy/secagg/kdf.h"
#include "privacy/secagg/secagg.h"
#include "privacy/secagg/shamir.h"
#include "support/check.h"

enum { N = 10, DIM = 37 };

typedef struct {
    sl_secagg_server_t *s;
    sl_secagg_client_t *c[N];
    sl_rng_t rng[N];
    uint32_t in[N][DIM];
    uint8_t gone[N];
    sl_secagg_outbox_t down, up; /* server -> clients, clients -> server */
    unsigned mod_bits;
} harness_t;

static uint32_t sender_of(const sl_secagg_msg_t *m)
{
    const uint8_t *p = m->data + 32;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void setup(harness_t *h, unsigned bits, uint64_t seed)
{
    memset(h, 0, sizeof *h);
    h->mod_bits = bits;
    sl_secagg_params_t p;
    sl_secagg_params_default(&p);
    static const uint8_t gseed[32] = {7}, session[16] = {1, 2, 3};
    p.round = 42;
    p.n = N;
    p.dim = DIM;
    p.mod_bits = bits;
    p.dropout = 0.3;
    p.graph_seed = gseed;
    p.session = session;
    CHECK_EQ(sl_secagg_server_new(&h->s, &p), 0);
    sl_rng_t r;
    sl_rng_init(&r, seed, "adv-input", 0, 0);
    for (uint32_t u = 0; u < N; u++) {
        sl_rng_init(&h->rng[u], seed, "adv-client", 0, u);
        sl_secagg_client_opts_t o = {.index = u, .round = 42, .rng = &h->rng[u]};
        CHECK_EQ(sl_secagg_client_new(&h->c[u], &o), 0);
        for (int i = 0; i < DIM; i++)
            h->in[u][i] = sl_rng_u32(&r) & (bits == 32 ? UINT32_MAX : (1u << bits) - 1);
        CHECK_EQ(sl_secagg_client_set_input(h->c[u], h->in[u], DIM, NULL), 0);
    }
    sl_secagg_outbox_init(&h->down);
    sl_secagg_outbox_init(&h->up);
    CHECK_EQ(sl_secagg_server_start(h->s, &h->down), 0);
}

static void teardown(harness_t *h)
{
    for (int u = 0; u < N; u++)
        sl_secagg_client_destroy(&h->c[u]);
    sl_secagg_server_destroy(&h->s);
    sl_secagg_outbox_free(&h->down);
    sl_secagg_outbox_free(&h->up);
}

/* Server messages -> live clients; replies collect in h->up. */
static void to_clients(harness_t *h)
{
    for (size_t i = 0; i < h->down.count; i++) {
        sl_secagg_msg_t *m = &h->down.msgs[i];
        if (h->gone[m->to])
            continue;
        int rc = sl_secagg_client_handle(h->c[m->to], m->data, m->len, &h->up);
        CHECK_MSG(rc == 0 || rc == SL_EABORT, "client %u: %s", m->to, sl_last_error());
    }
    sl_secagg_outbox_clear(&h->down);
}

/* Client replies -> server; new server messages collect in h->down. */
static void to_server(harness_t *h)
{
    for (size_t i = 0; i < h->up.count; i++) {
        sl_secagg_msg_t *m = &h->up.msgs[i];
        uint32_t from = sender_of(m);
        if (h->gone[from])
            continue;
        int rc = sl_secagg_server_handle(h->s, from, m->data, m->len, &h->down);
        CHECK_MSG(rc == 0 || (rc == SL_ESTATE && sl_secagg_server_stage(h->s) == SL_SECAGG_DONE), "from %u: %s",
                  from, sl_last_error());
    }
    sl_secagg_outbox_clear(&h->up);
}

static void check_sum(harness_t *h)
{
    CHECK_EQ(sl_secagg_server_stage(h->s), SL_SECAGG_DONE);
    const uint32_t *sum;
    size_t dim;
    if (sl_secagg_server_result(h->s, &sum, &dim) != 0)
        return;
    uint32_t mask = h->mod_bits == 32 ? UINT32_MAX : (1u << h->mod_bits) - 1;
    int ok = 1;
    for (size_t i = 0; i < dim; i++) {
        uint32_t ref = 0;
        for (uint32_t u = 0; u < N; u++)
            if (sl_secagg_server_included(h->s, u))
                ref += h->in[u][i];
        ok &= sum[i] == (ref & mask);
    }
    CHECK(ok);
}

/* A copy of message m with a new body length (header fixed up) and optional byte edit. */
static uint8_t *resized(const sl_secagg_msg_t *m, size_t new_len)
{
    uint8_t *p = calloc(1, new_len);
    memcpy(p, m->data, new_len < m->len ? new_len : m->len);
    uint32_t bl = (uint32_t)(new_len - SL_SECAGG_HEADER_BYTES);
    for (int i = 0; i < 4; i++)
        p[40 + i] = (uint8_t)(bl >> (8 * i));
    return p;
}

/* Feed a tampered copy to the server; it must be rejected with `want` and change nothing. */
static void reject_server(harness_t *h, uint32_t from, const uint8_t *msg, size_t len, int want, const char *what)
{
    sl_secagg_outbox_t tmp;
    sl_secagg_outbox_init(&tmp);
    sl_secagg_stage_t st = sl_secagg_server_stage(h->s);
    sl_error_clear();
    int rc = sl_secagg_server_handle(h->s, from, msg, len, &tmp);
    CHECK_MSG(rc == want, "%s: got %s (%s), want %s", what, sl_error_name(rc), sl_last_error(), sl_error_name(want));
    CHECK_MSG(strlen(sl_last_error()) > 0, "%s: no message", what);
    CHECK_EQ(tmp.count, 0);
    CHECK_EQ(sl_secagg_server_stage(h->s), st);
    sl_secagg_outbox_free(&tmp);
}

static void reject_client(harness_t *h, uint32_t u, const uint8_t *msg, size_t len, int want, const char *what)
{
    sl_secagg_outbox_t tmp;
    sl_secagg_outbox_init(&tmp);
    sl_secagg_stage_t st = sl_secagg_client_stage(h->c[u]);
    sl_error_clear();
    int rc = sl_secagg_client_handle(h->c[u], msg, len, &tmp);
    CHECK_MSG(rc == want, "%s: got %s (%s), want %s", what, sl_error_name(rc), sl_last_error(), sl_error_name(want));
    CHECK_MSG(strlen(sl_last_error()) > 0, "%s: no message", what);
    CHECK_EQ(tmp.count, 0);
    CHECK_EQ(sl_secagg_client_stage(h->c[u]), st);
    sl_secagg_outbox_free(&tmp);
}

/* Client-to-server tampering at every stage; the honest messages then finish the round. */
static void test_malformed_to_server(void)
{
    harness_t h;
    setup(&h, 32, 11);
    to_clients(&h); /* SETUP -> ADVERTISE */
    CHECK_EQ(h.up.count, N);
    sl_secagg_msg_t *m = &h.up.msgs[0];
    uint32_t from = sender_of(m);
    uint8_t *bad = resized(m, m->len);
    bad[8] ^= 1; /* round */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "wrong round");
    memcpy(bad, m->data, m->len);
    bad[20] ^= 1; /* session */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "wrong session");
    memcpy(bad, m->data, m->len);
    bad[0] = 'X';
    reject_server(&h, from, bad, m->len, SL_EPROTO, "bad magic");
    memcpy(bad, m->data, m->len);
    bad[4] = 9;
    reject_server(&h, from, bad, m->len, SL_EPROTO, "bad version");
    reject_server(&h, from + 1, m->data, m->len, SL_EPROTO, "forged sender");
    reject_server(&h, from, m->data, m->len - 1, SL_EPROTO, "truncated");
    reject_server(&h, from, m->data, 10, SL_EPROTO, "shorter than a header");
    free(bad);
    bad = resized(m, m->len - 1);
    reject_server(&h, from, bad, m->len - 1, SL_EPROTO, "ADVERTISE of the wrong size");
    free(bad);
    CHECK_EQ(sl_secagg_server_handle(h.s, from, m->data, m->len, &h.down), 0);
    reject_server(&h, from, m->data, m->len, SL_EPROTO, "duplicate ADVERTISE");
    /* The honest ones (the first again is now a duplicate: skip it). */
    free(m->data);
    m->data = NULL;
    for (size_t i = 1; i < h.up.count; i++)
        CHECK_EQ(sl_secagg_server_handle(h.s, sender_of(&h.up.msgs[i]), h.up.msgs[i].data, h.up.msgs[i].len, &h.down), 0);
    sl_secagg_outbox_clear(&h.up);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_SHARES);

    to_clients(&h); /* KEYS -> SHARES */
    m = &h.up.msgs[1];
    from = sender_of(m);
    bad = resized(m, m->len);
    bad[SL_SECAGG_HEADER_BYTES + 4] ^= 0x7; /* first receiver index */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "SHARES for the wrong receiver");
    free(bad);
    bad = resized(m, m->len - SL_SECAGG_SHARE_CT_BYTES - 4);
    bad[SL_SECAGG_HEADER_BYTES] = (uint8_t)(bad[SL_SECAGG_HEADER_BYTES] - 1);
    reject_server(&h, from, bad, m->len - SL_SECAGG_SHARE_CT_BYTES - 4, SL_EPROTO, "SHARES missing a neighbour");
    free(bad);
    reject_server(&h, from, h.up.msgs[0].data, h.up.msgs[0].len, SL_EPROTO, "SHARES of another client (forged)");
    uint8_t *late = resized(m, m->len);
    late[5] = SL_SECAGG_MSG_ADVERTISE;
    reject_server(&h, from, late, m->len, SL_ESTATE, "ADVERTISE after its stage closed");
    free(late);
    to_server(&h);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_MASKED);

    to_clients(&h); /* FORWARD -> MASKED */
    m = &h.up.msgs[2];
    from = sender_of(m);
    bad = resized(m, m->len);
    bad[SL_SECAGG_HEADER_BYTES] ^= 1; /* dim */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "MASKED with the wrong dimension");
    free(bad);
    bad = resized(m, m->len + 4);
    reject_server(&h, from, bad, m->len + 4, SL_EPROTO, "MASKED with extra bytes");
    free(bad);
    CHECK_EQ(sl_secagg_server_handle(h.s, from, m->data, m->len, &h.down), 0);
    reject_server(&h, from, m->data, m->len, SL_EPROTO, "duplicate MASKED (would corrupt the sum)");
    free(m->data);
    m->data = NULL;
    for (size_t i = 0; i < h.up.count; i++)
        if (h.up.msgs[i].data)
            CHECK_EQ(sl_secagg_server_handle(h.s, sender_of(&h.up.msgs[i]), h.up.msgs[i].data, h.up.msgs[i].len,
                                             &h.down), 0);
    sl_secagg_outbox_clear(&h.up);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);

    to_clients(&h); /* UNMASK_REQ -> UNMASK_RESP */
    m = &h.up.msgs[3];
    from = sender_of(m);
    bad = resized(m, m->len);
    memset(bad + SL_SECAGG_HEADER_BYTES + 8 + 4, 0xFF, 8); /* first share element >= p */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "UNMASK_RESP with a share >= p");
    memcpy(bad, m->data, m->len);
    bad[SL_SECAGG_HEADER_BYTES + 8] ^= 0x1; /* first named client */
    reject_server(&h, from, bad, m->len, SL_EPROTO, "UNMASK_RESP naming the wrong client");
    free(bad);
    reject_server(&h, from, m->data, SL_SECAGG_HEADER_BYTES + 4, SL_EPROTO, "UNMASK_RESP truncated");
    to_server(&h);
    check_sum(&h);
    teardown(&h);
}

/* Server-to-client tampering: bad tag, forged sender inside FORWARD, wrong round,
 * truncation; the client stays where it was and accepts the honest message after. */
static void test_malformed_to_client(void)
{
    harness_t h;
    setup(&h, 20, 12);
    /* SETUP for client 0 */
    sl_secagg_msg_t *m = &h.down.msgs[0];
    uint8_t *bad = resized(m, m->len);
    bad[8] ^= 1;
    reject_client(&h, 0, bad, m->len, SL_EPROTO, "SETUP of another round");
    memcpy(bad, m->data, m->len);
    bad[36] = 5; /* receiver */
    reject_client(&h, 0, bad, m->len, SL_EPROTO, "SETUP for another client");
    memcpy(bad, m->data, m->len);
    bad[SL_SECAGG_HEADER_BYTES + 8] = 0; /* t = 0 */
    reject_client(&h, 0, bad, m->len, SL_EPROTO, "SETUP with t = 0");
    free(bad);
    to_clients(&h);
    to_server(&h);
    /* KEYS */
    m = &h.down.msgs[0];
    uint32_t u = m->to;
    reject_client(&h, u, m->data, m->len - 3, SL_EPROTO, "KEYS truncated");
    bad = resized(m, m->len);
    bad[SL_SECAGG_HEADER_BYTES] = 200; /* count */
    reject_client(&h, u, bad, m->len, SL_EPROTO, "KEYS count beyond the body");
    free(bad);
    to_clients(&h);
    to_server(&h);
    /* FORWARD */
    m = &h.down.msgs[1];
    u = m->to;
    bad = resized(m, m->len);
    bad[SL_SECAGG_HEADER_BYTES + 4 + 4 + 10] ^= 0x40; /* ciphertext byte of the first share */
    reject_client(&h, u, bad, m->len, SL_ECRYPTO, "FORWARD with a bad tag");
    memcpy(bad, m->data, m->len);
    bad[SL_SECAGG_HEADER_BYTES + 4 + 4 + SL_SECAGG_SHARE_CT_BYTES - 1] ^= 1; /* the tag itself */
    reject_client(&h, u, bad, m->len, SL_ECRYPTO, "FORWARD with a flipped tag bit");
    /* Swap the sender of the first two entries: ciphertexts bound to their sender fail. */
    memcpy(bad, m->data, m->len);
    uint8_t *e0 = bad + SL_SECAGG_HEADER_BYTES + 4, *e1 = e0 + 4 + SL_SECAGG_SHARE_CT_BYTES;
    memcpy(e0 + 4, e1 + 4, SL_SECAGG_SHARE_CT_BYTES); /* entry 0: sender 0's index, sender 1's ciphertext */
    reject_client(&h, u, bad, m->len, SL_ECRYPTO, "FORWARD share re-attributed to another sender");
    free(bad);
    to_clients(&h);
    to_server(&h);
    to_clients(&h);
    to_server(&h);
    check_sum(&h);
    teardown(&h);
}

/* Client 3 drops after sharing keys; client 7 drops before sending shares. The server view
 * and the unmasking invariant. */
static void test_server_view(void)
{
    harness_t h;
    setup(&h, 32, 13);
    sl_secagg_info_t info;
    sl_secagg_server_info(h.s, &info);
    size_t t = info.t;
    uint8_t commit[N][32];
    to_clients(&h);
    for (size_t i = 0; i < h.up.count; i++)
        memcpy(commit[sender_of(&h.up.msgs[i])], h.up.msgs[i].data + SL_SECAGG_HEADER_BYTES + 64, 32);
    to_server(&h); /* -> KEYS */
    h.gone[7] = 1; /* 7 never shares */
    to_clients(&h);
    to_server(&h);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_SHARES);
    CHECK_EQ(sl_secagg_server_close_stage(h.s, &h.down), 0); /* deadline */
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_MASKED);
    h.gone[7] = 0;
    to_clients(&h); /* 7 gets ABORT, the others FORWARD -> MASKED */
    CHECK_EQ(sl_secagg_client_stage(h.c[7]), SL_SECAGG_ABORTED);
    h.gone[7] = 1;
    h.gone[3] = 1; /* 3's masked input is lost */
    to_server(&h);
    CHECK_EQ(sl_secagg_server_close_stage(h.s, &h.down), 0);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);

    /* The requests: tamper with one before the honest ones go out. */
    sl_secagg_msg_t *req = NULL;
    for (size_t i = 0; i < h.down.count; i++)
        if (h.down.msgs[i].to == 0 && h.down.msgs[i].data[5] == SL_SECAGG_MSG_UNMASK_REQ)
            req = &h.down.msgs[i];
    CHECK(req != NULL);
    if (!req)
        return;
    const uint8_t *b = req->data + SL_SECAGG_HEADER_BYTES;
    uint32_t na = b[0] | (uint32_t)b[1] << 8, nd = b[4] | (uint32_t)b[5] << 8;
    CHECK_EQ(nd, 1); /* client 0 holds 3's shares (complete graph) and 3 dropped */
    /* Ask for both shares of client 3: put it in the survivor list too (in place of the
     * last survivor, so the sizes still add up). */
    uint8_t *both = resized(req, req->len);
    memcpy(both + SL_SECAGG_HEADER_BYTES + 8 + 4 * (na - 1), b + 8 + 4 * na, 4);
    reject_client(&h, 0, both, req->len, SL_EPROTO, "request for both shares of one client");
    CHECK_CONTAINS(sl_last_error(), "both");
    free(both);
    /* Client 0 listed as dropped: it would reveal its own s-share. */
    uint8_t *selfdrop = resized(req, req->len);
    uint8_t *sb = selfdrop + SL_SECAGG_HEADER_BYTES;
    uint32_t tmpv;
    memcpy(&tmpv, sb + 8, 4);                       /* alive[0] is client 0 (smallest index) */
    memcpy(sb + 8, sb + 8 + 4 * na, 4);             /* swap it with the dropped client */
    memcpy(sb + 8 + 4 * na, &tmpv, 4);
    reject_client(&h, 0, selfdrop, req->len, SL_EPROTO, "request listing the client itself as dropped");
    free(selfdrop);
    /* A client whose shares it never received (7 never shared). */
    uint8_t *stranger = resized(req, req->len);
    stranger[SL_SECAGG_HEADER_BYTES + 8 + 4 * na] = 7;
    reject_client(&h, 0, stranger, req->len, SL_EPROTO, "request naming a non-holder");
    free(stranger);

    /* Honest round of requests; then a second, different request is refused and an
     * identical one gets the identical answer. */
    uint8_t *copy = resized(req, req->len);
    size_t copy_len = req->len;
    to_clients(&h);
    sl_secagg_outbox_t again;
    sl_secagg_outbox_init(&again);
    CHECK_EQ(sl_secagg_client_handle(h.c[0], copy, copy_len, &again), 0);
    CHECK_EQ(again.count, 1);
    int same = 0;
    for (size_t i = 0; i < h.up.count; i++)
        if (sender_of(&h.up.msgs[i]) == 0)
            same = h.up.msgs[i].len == again.msgs[0].len &&
                   memcmp(h.up.msgs[i].data, again.msgs[0].data, again.msgs[0].len) == 0;
    CHECK(same);
    sl_secagg_outbox_free(&again);
    copy[SL_SECAGG_HEADER_BYTES + 8 + 4 * na] = 4; /* now claims 4 dropped instead of 3 */
    reject_client(&h, 0, copy, copy_len, SL_EPROTO, "second, different request");
    free(copy);

    /* What the server sees: per client, which kinds of share were revealed. */
    uint8_t kinds[N] = {0};
    sl_shamir_share_t bsh[N][N];
    uint8_t have_b[N][N] = {{0}};
    for (size_t i = 0; i < h.up.count; i++) {
        const uint8_t *p = h.up.msgs[i].data + SL_SECAGG_HEADER_BYTES;
        uint32_t w = sender_of(&h.up.msgs[i]);
        uint32_t ra = p[0] | (uint32_t)p[1] << 8, rd = p[4] | (uint32_t)p[5] << 8;
        for (uint32_t e = 0; e < ra + rd; e++) {
            const uint8_t *en = p + 8 + (size_t)e * (4 + SL_SHAMIR_SHARE_BYTES);
            uint32_t x = en[0];
            kinds[x] |= e < ra ? 1 : 2;
            if (e < ra) {
                CHECK_EQ(sl_shamir_share_decode(en + 4, &bsh[x][w]), 0);
                have_b[x][w] = 1;
            }
        }
    }
    int never_both = 1;
    for (int x = 0; x < N; x++)
        never_both &= kinds[x] != 3;
    CHECK(never_both);
    CHECK_EQ(kinds[3], 2); /* dropped: only s-shares */
    CHECK_EQ(kinds[7], 0); /* never shared: nothing */
    CHECK_EQ(kinds[0], 1); /* survivor: only b-shares */
    /* Survivor 0: t shares rebuild b_0 (matches its commitment); t-1 cannot. */
    uint64_t xs[N];
    sl_shamir_share_t ss[N];
    size_t got = 0;
    for (uint32_t w = 0; w < N; w++)
        if (have_b[0][w])
            xs[got] = w + 1, ss[got++] = bsh[0][w];
    CHECK(got >= t);
    static const uint8_t session[16] = {1, 2, 3};
    uint8_t b0[32], cm[32];
    CHECK_EQ(sl_shamir_combine(xs, ss, t, b0), 0);
    sl_secagg_commit(session, 42, 0, b0, cm);
    CHECK(memcmp(cm, commit[0], 32) == 0);
    int rc = sl_shamir_combine(xs, ss, t - 1, b0);
    int matches = 0;
    if (rc == 0) {
        sl_secagg_commit(session, 42, 0, b0, cm);
        matches = memcmp(cm, commit[0], 32) == 0;
    }
    CHECK(!matches);
    to_server(&h);
    check_sum(&h);
    CHECK(!sl_secagg_server_included(h.s, 3) && !sl_secagg_server_included(h.s, 7));
    CHECK(sl_secagg_server_included(h.s, 0));
    teardown(&h);
}

/* Too many dropouts at unmasking: clean abort with a message; clients told why. */
static void test_abort(void)
{
    harness_t h;
    setup(&h, 16, 14);
    for (int s = 0; s < 3; s++) {
        to_clients(&h);
        to_server(&h);
    }
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);
    to_clients(&h);
    /* Only 2 of 10 answer unmasking. */
    for (int u = 2; u < N; u++)
        h.gone[u] = 1;
    to_server(&h);
    CHECK_EQ(sl_secagg_server_close_stage(h.s, &h.down), SL_EQUORUM);
    CHECK_CONTAINS(sl_last_error(), "threshold");
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_ABORTED);
    CHECK(h.down.count >= 1);
    const uint32_t *sum;
    size_t dim;
    CHECK_EQ(sl_secagg_server_result(h.s, &sum, &dim), SL_ESTATE);
    teardown(&h);
}

/* 1 if the outbox holds a message addressed to client u. */
static int addressed_to(const sl_secagg_outbox_t *o, uint32_t u)
{
    for (size_t i = 0; i < o->count; i++)
        if (o->msgs[i].to == u)
            return 1;
    return 0;
}

/* sl_secagg_server_drop: one client lost in each stage (ADVERTISE before its keys, SHARES
 * and MASKED before its answer, UNMASK after its masked input): every stage closes as soon
 * as the others answered, without close_stage; nothing more goes to a dropped client, its
 * messages are refused; the sum is exact and includes exactly the one that dropped after
 * its masked input. */
static void test_drop(void)
{
    harness_t h;
    setup(&h, 16, 21);
    CHECK_EQ(sl_secagg_server_drop(h.s, N, &h.down), SL_EINVAL);
    h.gone[1] = 1;
    CHECK_EQ(sl_secagg_server_drop(h.s, 1, &h.down), 0);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_ADVERTISE);
    to_clients(&h);
    to_server(&h); /* 9 ADVERTISE: the stage closes without waiting for 1 */
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_SHARES);
    CHECK(!addressed_to(&h.down, 1));
    to_clients(&h); /* KEYS -> SHARES from the 9 */
    /* 4 is lost after it sent SHARES but before the server got them: refused afterwards */
    CHECK_EQ(sl_secagg_server_drop(h.s, 4, &h.down), 0);
    CHECK_EQ(sl_secagg_server_drop(h.s, 4, &h.down), 0); /* again: no-op */
    for (size_t i = 0; i < h.up.count; i++)
        if (sender_of(&h.up.msgs[i]) == 4) {
            CHECK_EQ(sl_secagg_server_handle(h.s, 4, h.up.msgs[i].data, h.up.msgs[i].len, &h.down),
                     SL_ESTATE);
            CHECK_CONTAINS(sl_last_error(), "dropped");
        }
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_SHARES);
    h.gone[4] = 1;
    to_server(&h);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_MASKED);
    CHECK(!addressed_to(&h.down, 1) && !addressed_to(&h.down, 4));
    to_clients(&h); /* FORWARD -> MASKED from 8 clients */
    h.gone[6] = 1;
    CHECK_EQ(sl_secagg_server_drop(h.s, 6, &h.down), 0);
    to_server(&h);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);
    CHECK(!addressed_to(&h.down, 6));
    /* 8 sent its masked input; it is lost before unmasking: no request goes to it */
    h.gone[8] = 1;
    CHECK_EQ(sl_secagg_server_drop(h.s, 8, &h.down), 0);
    size_t requests = h.down.count;
    to_clients(&h);
    CHECK_EQ(requests, 7); /* the 7 live clients of U3 */
    to_server(&h);
    check_sum(&h);
    CHECK(!sl_secagg_server_included(h.s, 1) && !sl_secagg_server_included(h.s, 4) &&
          !sl_secagg_server_included(h.s, 6));
    CHECK(sl_secagg_server_included(h.s, 8));
    CHECK_EQ(sl_secagg_server_drop(h.s, 0, &h.down), 0); /* after DONE: nothing happens */
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_DONE);
    teardown(&h);

    /* The drop of the last silent client closes the stage at once (it had been waiting). */
    setup(&h, 16, 22);
    h.gone[2] = 1;
    to_clients(&h);
    to_server(&h);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_ADVERTISE);
    CHECK_EQ(h.down.count, 0);
    CHECK_EQ(sl_secagg_server_drop(h.s, 2, &h.down), 0);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_SHARES);
    CHECK_EQ(h.down.count, N - 1); /* KEYS to the 9 others */
    CHECK(!addressed_to(&h.down, 2));
    for (int st = 0; st < 3; st++) {
        to_clients(&h);
        to_server(&h);
    }
    check_sum(&h);
    CHECK(!sl_secagg_server_included(h.s, 2));
    teardown(&h);

    /* Every client lost while unmasking: the last drop aborts the round (no shares). */
    setup(&h, 16, 23);
    for (int s = 0; s < 3; s++) {
        to_clients(&h);
        to_server(&h);
    }
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);
    sl_secagg_outbox_clear(&h.down);
    for (uint32_t u = 0; u + 1 < N; u++)
        CHECK_EQ(sl_secagg_server_drop(h.s, u, &h.down), 0);
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_UNMASK);
    CHECK_EQ(sl_secagg_server_drop(h.s, N - 1, &h.down), SL_EQUORUM);
    CHECK_CONTAINS(sl_last_error(), "threshold");
    CHECK_EQ(sl_secagg_server_stage(h.s), SL_SECAGG_ABORTED);
    CHECK_EQ(h.down.count, 0); /* no ABORT to clients that are gone */
    teardown(&h);
}

/* Inputs and parameters: wrong sizes and out-of-range values are refused, with messages. */
static void test_inputs(void)
{
    sl_config_t cfg;
    sl_config_defaults(&cfg);
    sl_secagg_params_t p;
    CHECK_EQ(sl_secagg_params_from_config(&p, &cfg, 1000, 64, 26, 5), 0);
    CHECK_EQ(p.n, 1000);
    CHECK_EQ(p.k, 0); /* chosen by the server from n and dropout_tolerance */
    CHECK_NEAR(p.dropout, 0.05, 1e-12);
    cfg.secagg.neighbors = 40;
    cfg.secagg.threshold = 50;
    CHECK_EQ(sl_secagg_params_from_config(&p, &cfg, 1000, 64, 26, 5), SL_EINVAL);
    sl_secagg_server_t *s = NULL;
    sl_secagg_params_default(&p);
    p.n = 1;
    p.dim = 4;
    CHECK_EQ(sl_secagg_server_new(&s, &p), SL_EINVAL);
    p.n = 5;
    p.mod_bits = 33;
    CHECK_EQ(sl_secagg_server_new(&s, &p), SL_EINVAL);
    CHECK(s == NULL);

    harness_t h;
    setup(&h, 8, 15);
    uint32_t big[DIM] = {0};
    big[3] = 256; /* >= 2^8 */
    sl_secagg_client_t *c = h.c[0];
    to_clients(&h); /* SETUP seen: B = 8 and DIM known */
    CHECK_EQ(sl_secagg_client_set_input(c, big, DIM, NULL), SL_ERANGE);
    CHECK_CONTAINS(sl_last_error(), "2^8");
    CHECK_EQ(sl_secagg_client_set_input(c, big, DIM - 1, NULL), SL_EMISMATCH);
    to_server(&h);
    for (int st = 0; st < 3; st++) {
        to_clients(&h);
        to_server(&h);
    }
    check_sum(&h);
    CHECK_EQ(sl_secagg_client_set_input(c, h.in[0], DIM, NULL), SL_ESTATE);
    teardown(&h);
}

int main(void)
{
    if (sl_csprng_init() != 0)
        return 1;
    test_malformed_to_server();
    test_malformed_to_client();
    test_server_view();
    test_abort();
    test_drop();
    test_inputs();
    return check_summary("test_secagg_adversarial");
}
