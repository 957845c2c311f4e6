/* Protocol codec: round trip of every message type, and every malformed variant rejected
 * with its reason. */
#include "core/wire.h"
#include "support/check.h"

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

static sl_wire_limits_t lim = {.max_payload_bytes = 1 << 20, .max_vec = 64, .max_blob = 4096};
static float vec[64] __attribute__((aligned(16)));
static uint8_t blob[100];

/* Encode m, decode it back into d; returns decode rc. */
static int roundtrip(const sl_msg_t *m, sl_msg_t *d)
{
    sl_wire_buf_t b = {0};
    int rc = sl_wire_encode(m, &b);
    CHECK_MSG(rc == 0, "encode %s: %s", sl_msg_type_name((int)m->type), sl_last_error());
    if (rc) {
        sl_wire_buf_free(&b);
        return rc;
    }
    const uint8_t *p = NULL;
    size_t plen = 0;
    if (sl_msg_payload_kind(m->type) == 1 && m->n)
        p = (const uint8_t *)m->vec, plen = (size_t)m->n * 4;
    if (sl_msg_payload_kind(m->type) == 2 && m->n)
        p = m->blob, plen = (size_t)m->n;
    rc = sl_wire_decode(b.data, b.len, p, plen, &lim, d);
    CHECK_MSG(rc == 0, "decode %s: %s", sl_msg_type_name((int)m->type), sl_last_error());
    sl_wire_buf_free(&b);
    return rc;
}

static void test_roundtrips(void)
{
    for (int i = 0; i < 64; i++)
        vec[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 100; i++)
        blob[i] = (uint8_t)(i * 7);
    sl_msg_t m, d;

    sl_msg_init(&m, SL_MSG_HELLO, 0, 17);
    m.hello.version_min = 1;
    m.hello.train_examples = 1234;
    m.hello.test_examples = 55;
    m.hello.dim = 64;
    m.hello.layout = 0xdeadbeefcafef00dull;
    m.hello.n_modalities = 2;
    strcpy(m.hello.modalities[0], "acc");
    strcpy(m.hello.modalities[1], "gyro");
    if (roundtrip(&m, &d) == 0) {
        CHECK_EQ(d.type, SL_MSG_HELLO);
        CHECK_EQ(d.sender, 17);
        CHECK_EQ(d.hello.train_examples, 1234);
        CHECK_EQ(d.hello.test_examples, 55);
        CHECK_EQ(d.hello.dim, 64);
        CHECK(d.hello.layout == 0xdeadbeefcafef00dull);
        CHECK_EQ(d.hello.n_modalities, 2);
        CHECK(strcmp(d.hello.modalities[1], "gyro") == 0);
        CHECK_EQ(d.version, SL_WIRE_VERSION);
    }

    sl_msg_init(&m, SL_MSG_WELCOME, 3, 0);
    m.welcome =
        (sl_welcome_info_t){.client_id = 17, .dim = 64, .layout = 5, .heartbeat_ms = 2000, .rounds = 30};
    if (roundtrip(&m, &d) == 0) {
        CHECK_EQ(d.welcome.client_id, 17);
        CHECK_EQ(d.welcome.heartbeat_ms, 2000);
        CHECK_EQ(d.welcome.rounds, 30);
        CHECK_EQ(d.round, 3);
    }

    sl_msg_init(&m, SL_MSG_TASK, 9, 0);
    m.n = 64;
    m.vec = vec;
    m.task = (sl_task_info_t){.attempt = 1,
                              .local_epochs = 2,
                              .local_steps = 0,
                              .batch_size = 32,
                              .lr = 0.003,
                              .fedprox_mu = 0.01,
                              .want_eval = 1,
                              .secagg = 0,
                              .ask_upload = 1,
                              .dp_mode = 1,
                              .dp_clip = 1.5,
                              .dp_noise = 0.8};
    if (roundtrip(&m, &d) == 0) {
        CHECK_EQ(d.round, 9);
        CHECK_EQ(d.n, 64);
        CHECK(d.vec && memcmp(d.vec, vec, sizeof vec) == 0);
        CHECK_EQ(d.task.attempt, 1);
        CHECK_EQ(d.task.local_epochs, 2);
        CHECK_EQ(d.task.batch_size, 32);
        CHECK(d.task.lr == 0.003);
        CHECK(d.task.fedprox_mu == 0.01);
        CHECK(d.task.want_eval == 1 && d.task.dp_mode == 1 && d.task.ask_upload == 1);
        CHECK(d.task.dp_clip == 1.5 && d.task.dp_noise == 0.8);
    }

    sl_msg_init(&m, SL_MSG_UPDATE, 9, 17);
    m.n = 64;
    m.vec = vec;
    m.update = (sl_update_info_t){.examples = 300,
                                  .steps = 10,
                                  .train_loss = 0.5,
                                  .seconds = 1.25,
                                  .has_eval = 1,
                                  .eval_examples = 40,
                                  .eval_loss = 0.7,
                                  .eval_accuracy = 0.875};
    if (roundtrip(&m, &d) == 0) {
        CHECK(memcmp(d.vec, vec, sizeof vec) == 0);
        CHECK_EQ(d.update.examples, 300);
        CHECK_EQ(d.update.steps, 10);
        CHECK(d.update.train_loss == 0.5 && d.update.seconds == 1.25);
        CHECK(d.update.has_eval && d.update.eval_examples == 40 && d.update.eval_accuracy == 0.875);
    }
    m.update.has_eval = 0;
    m.n = 0; /* secure aggregation: statistics only */
    m.vec = NULL;
    if (roundtrip(&m, &d) == 0) {
        CHECK(d.vec == NULL && d.n == 0 && !d.update.has_eval);
    }

    sl_msg_init(&m, SL_MSG_EVALUATE, 30, 0);
    m.n = 64;
    m.vec = vec;
    if (roundtrip(&m, &d) == 0)
        CHECK(memcmp(d.vec, vec, sizeof vec) == 0);

    sl_msg_init(&m, SL_MSG_RESULT, 30, 17);
    m.eval = (sl_eval_info_t){.examples = 99, .loss = 0.25, .accuracy = 0.5, .macro_f1 = 0.375};
    if (roundtrip(&m, &d) == 0)
        CHECK(d.eval.examples == 99 && d.eval.loss == 0.25 && d.eval.accuracy == 0.5 &&
              d.eval.macro_f1 == 0.375);

    sl_msg_init(&m, SL_MSG_HEARTBEAT, 4, 17);
    if (roundtrip(&m, &d) == 0)
        CHECK(d.type == SL_MSG_HEARTBEAT && d.round == 4);

    sl_msg_init(&m, SL_MSG_READY, 4, 17);
    if (roundtrip(&m, &d) == 0)
        CHECK(d.type == SL_MSG_READY && d.round == 4 && d.sender == 17);
    sl_msg_init(&m, SL_MSG_GRANT, 4, 0);
    if (roundtrip(&m, &d) == 0)
        CHECK(d.type == SL_MSG_GRANT && d.round == 4);
    sl_msg_init(&m, SL_MSG_GRANT, 4, 17); /* only the coordinator grants */
    {
        sl_wire_buf_t b = {0};
        CHECK(sl_wire_encode(&m, &b) == SL_EINVAL);
        CHECK_CONTAINS(sl_last_error(), "only the coordinator");
        sl_wire_buf_free(&b);
    }
    sl_msg_init(&m, SL_MSG_TASK, 4, 0); /* credits and SecAgg exclude each other */
    m.n = 64;
    m.vec = vec;
    m.task = (sl_task_info_t){.local_epochs = 1, .batch_size = 1, .secagg = 1, .ask_upload = 1};
    {
        sl_wire_buf_t b = {0};
        CHECK(sl_wire_encode(&m, &b) == SL_EINVAL);
        CHECK_CONTAINS(sl_last_error(), "\"cred\"");
        sl_wire_buf_free(&b);
    }

    sl_msg_init(&m, SL_MSG_BYE, 4, 0);
    strcpy(m.why, "run complete");
    if (roundtrip(&m, &d) == 0)
        CHECK(strcmp(d.why, "run complete") == 0);

    sl_msg_init(&m, SL_MSG_ERROR, 4, 17);
    m.code = SL_WERR_NOT_REGISTERED;
    strcpy(m.why, "send HELLO first");
    if (roundtrip(&m, &d) == 0)
        CHECK(d.code == SL_WERR_NOT_REGISTERED && strcmp(d.why, "send HELLO first") == 0);

    sl_msg_init(&m, SL_MSG_SECAGG_DOWN, 4, 0);
    m.stage = 2;
    m.n = sizeof blob;
    m.blob = blob;
    if (roundtrip(&m, &d) == 0)
        CHECK(d.stage == 2 && d.n == sizeof blob && memcmp(d.blob, blob, sizeof blob) == 0);
    m.type = SL_MSG_SECAGG_UP;
    m.sender = 17;
    if (roundtrip(&m, &d) == 0)
        CHECK(d.type == SL_MSG_SECAGG_UP && d.stage == 2);
}

/* ---- hand-built headers ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} hb_t;

static void hb_init(hb_t *h, size_t n)
{
    msgpack_sbuffer_init(&h->sb);
    msgpack_packer_init(&h->pk, &h->sb, msgpack_sbuffer_write);
    CHECK(msgpack_pack_map(&h->pk, n) == 0);
}
static void hb_key(hb_t *h, const char *k)
{
    CHECK(msgpack_pack_str(&h->pk, strlen(k)) == 0 && msgpack_pack_str_body(&h->pk, k, strlen(k)) == 0);
}
static void hb_u(hb_t *h, const char *k, uint64_t v)
{
    hb_key(h, k);
    CHECK(msgpack_pack_uint64(&h->pk, v) == 0);
}
static void hb_f(hb_t *h, const char *k, double v)
{
    hb_key(h, k);
    CHECK(msgpack_pack_double(&h->pk, v) == 0);
}
static void hb_common(hb_t *h, uint64_t v, uint64_t t, uint64_t r, uint64_t s)
{
    hb_u(h, "v", v);
    hb_u(h, "t", t);
    hb_u(h, "r", r);
    hb_u(h, "s", s);
}

/* A HEARTBEAT header with extra fields, decoded; expect failure containing `why`. */
static void expect_fail(const uint8_t *hdr, size_t len, const uint8_t *pay, size_t plen, const char *why)
{
    sl_msg_t d;
    int rc = sl_wire_decode(hdr, len, pay, plen, &lim, &d);
    CHECK_MSG(rc == SL_EPROTO, "expected SL_EPROTO for \"%s\", got %d", why, rc);
    if (rc)
        CHECK_CONTAINS(sl_last_error(), why);
}

static void task_header(hb_t *h, double lr, uint64_t n)
{
    hb_init(h, 17);
    hb_common(h, 1, SL_MSG_TASK, 2, 0);
    hb_u(h, "n", n);
    hb_u(h, "att", 0);
    hb_u(h, "ep", 1);
    hb_u(h, "st", 0);
    hb_u(h, "bs", 32);
    hb_f(h, "lr", lr);
    hb_f(h, "mu", 0);
    hb_key(h, "eval");
    CHECK(msgpack_pack_false(&h->pk) == 0);
    hb_key(h, "sa");
    CHECK(msgpack_pack_false(&h->pk) == 0);
    hb_key(h, "cred");
    CHECK(msgpack_pack_false(&h->pk) == 0);
    hb_u(h, "dpm", 0);
    hb_f(h, "dpc", 0);
    hb_f(h, "dpz", 0);
}

static void test_malformed(void)
{
    hb_t h;
    /* sanity: the hand-built TASK decodes */
    task_header(&h, 0.01, 4);
    sl_msg_t d;
    CHECK_MSG(sl_wire_decode((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 16, &lim, &d) == 0, "%s",
              sl_last_error());
    /* truncated header: every proper prefix is refused */
    int all = 1;
    for (size_t cut = 0; cut < h.sb.size; cut++) {
        if (sl_wire_decode((uint8_t *)h.sb.data, cut, (uint8_t *)vec, 16, &lim, &d) != SL_EPROTO)
            all = 0;
    }
    CHECK(all);
    expect_fail((uint8_t *)h.sb.data, h.sb.size - 3, (uint8_t *)vec, 16, "truncated");
    /* wrong payload length */
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 12,
                "payload frame of 12 bytes, header says 16");
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "payload frame of 0 bytes");
    /* NaN / infinite payload */
    float bad[4] __attribute__((aligned(16))) = {1, 2, NAN, 4};
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)bad, 16, "payload value 2 is NaN");
    bad[2] = INFINITY;
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)bad, 16, "payload value 2 is infinite");
    msgpack_sbuffer_destroy(&h.sb);
    /* NaN field */
    task_header(&h, NAN, 4);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 16, "TASK: key \"lr\" is NaN");
    msgpack_sbuffer_destroy(&h.sb);
    task_header(&h, 1e9, 4);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 16, "key \"lr\" = 1e+09 out of range");
    msgpack_sbuffer_destroy(&h.sb);
    /* vector longer than the negotiated layout */
    task_header(&h, 0.01, 65);
    {
        float *big = aligned_alloc(16, 65 * 4 + 12);
        memset(big, 0, 65 * 4);
        expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)big, 65 * 4,
                    "vector of 65 floats, expected at most 64");
        free(big);
    }
    msgpack_sbuffer_destroy(&h.sb);
    /* oversized payload vs the byte limit */
    task_header(&h, 0.01, (1u << 20) / 4 + 1);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 16, "exceeds the limit");
    msgpack_sbuffer_destroy(&h.sb);

    /* wrong version */
    hb_init(&h, 4);
    hb_common(&h, 7, SL_MSG_HEARTBEAT, 1, 5);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "wrong protocol version 7");
    msgpack_sbuffer_destroy(&h.sb);
    /* unknown type */
    hb_init(&h, 4);
    hb_common(&h, 1, 99, 1, 5);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "unknown message type");
    msgpack_sbuffer_destroy(&h.sb);
    /* unknown field */
    hb_init(&h, 5);
    hb_common(&h, 1, SL_MSG_HEARTBEAT, 1, 5);
    hb_u(&h, "evil", 1);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "unknown field \"evil\"");
    msgpack_sbuffer_destroy(&h.sb);
    /* a known field on the wrong type */
    hb_init(&h, 5);
    hb_common(&h, 1, SL_MSG_HEARTBEAT, 1, 5);
    hb_f(&h, "lr", 0.1);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "unknown field \"lr\"");
    msgpack_sbuffer_destroy(&h.sb);
    /* duplicate key */
    hb_init(&h, 5);
    hb_common(&h, 1, SL_MSG_HEARTBEAT, 1, 5);
    hb_u(&h, "r", 2);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "duplicate key \"r\"");
    msgpack_sbuffer_destroy(&h.sb);
    /* missing key */
    hb_init(&h, 3);
    hb_u(&h, "v", 1);
    hb_u(&h, "t", SL_MSG_HEARTBEAT);
    hb_u(&h, "r", 1);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "missing key \"s\"");
    msgpack_sbuffer_destroy(&h.sb);
    /* wrong value type */
    hb_init(&h, 4);
    hb_u(&h, "v", 1);
    hb_u(&h, "t", SL_MSG_HEARTBEAT);
    hb_f(&h, "r", 1.0);
    hb_u(&h, "s", 5);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "key \"r\": expected an unsigned integer");
    msgpack_sbuffer_destroy(&h.sb);
    /* client message claiming to be the coordinator, and the reverse */
    hb_init(&h, 8);
    hb_common(&h, 1, SL_MSG_RESULT, 1, 0);
    hb_u(&h, "ex", 1);
    hb_f(&h, "loss", 0.5);
    hb_f(&h, "acc", 0.5);
    hb_f(&h, "f1", 0.5);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "sender 0");
    msgpack_sbuffer_destroy(&h.sb);
    /* payload on a type without one */
    hb_init(&h, 4);
    hb_common(&h, 1, SL_MSG_HEARTBEAT, 1, 5);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, (uint8_t *)vec, 16, "unexpected payload frame");
    /* trailing bytes */
    {
        uint8_t buf[256];
        memcpy(buf, h.sb.data, h.sb.size);
        buf[h.sb.size] = 0xc0;
        expect_fail(buf, h.sb.size + 1, NULL, 0, "trailing bytes");
    }
    msgpack_sbuffer_destroy(&h.sb);
    /* not a map */
    {
        uint8_t arr[] = {0x93, 1, 2, 3};
        expect_fail(arr, sizeof arr, NULL, 0, "header is not a map");
        /* forged container counts must not make msgpack allocate gigabytes */
        uint8_t forged[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
        expect_fail(forged, sizeof forged, NULL, 0, "truncated or forged");
        uint8_t forged_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 'v', 1};
        expect_fail(forged_map, sizeof forged_map, NULL, 0, "truncated or forged");
        uint8_t deep[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x01};
        expect_fail(deep, sizeof deep, NULL, 0, "nested deeper");
        uint8_t ext[] = {0xd4, 0x01, 0x02};
        expect_fail(ext, sizeof ext, NULL, 0, "unsupported msgpack type");
        expect_fail(arr, 0, NULL, 0, "empty header frame");
    }
    /* oversized header */
    {
        size_t n = SL_WIRE_MAX_HEADER + 1;
        uint8_t *big = calloc(n, 1);
        expect_fail(big, n, NULL, 0, "header of 4097 bytes");
        free(big);
    }
    /* over-long string */
    hb_init(&h, 5);
    hb_common(&h, 1, SL_MSG_BYE, 1, 5);
    {
        char s[300];
        memset(s, 'x', sizeof s);
        hb_key(&h, "why");
        CHECK(msgpack_pack_str(&h.pk, sizeof s) == 0 && msgpack_pack_str_body(&h.pk, s, sizeof s) == 0);
    }
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "string of 300 bytes");
    msgpack_sbuffer_destroy(&h.sb);
    /* HELLO with a bad version range */
    hb_init(&h, 10);
    hb_common(&h, 1, SL_MSG_HELLO, 0, 5);
    hb_u(&h, "vmin", 3);
    hb_u(&h, "ex", 1);
    hb_u(&h, "tex", 1);
    hb_u(&h, "dim", 4);
    hb_u(&h, "lay", 0);
    hb_key(&h, "mods");
    CHECK(msgpack_pack_array(&h.pk, 0) == 0);
    expect_fail((uint8_t *)h.sb.data, h.sb.size, NULL, 0, "bad version range");
    msgpack_sbuffer_destroy(&h.sb);
    /* a HELLO from a newer client (v = 3, vmin = 1) still decodes: the coordinator picks 1 */
    hb_init(&h, 10);
    hb_common(&h, 3, SL_MSG_HELLO, 0, 5);
    hb_u(&h, "vmin", 1);
    hb_u(&h, "ex", 1);
    hb_u(&h, "tex", 1);
    hb_u(&h, "dim", 4);
    hb_u(&h, "lay", 0);
    hb_key(&h, "mods");
    CHECK(msgpack_pack_array(&h.pk, 1) == 0);
    CHECK(msgpack_pack_str(&h.pk, 3) == 0 && msgpack_pack_str_body(&h.pk, "acc", 3) == 0);
    CHECK_MSG(sl_wire_decode((uint8_t *)h.sb.data, h.sb.size, NULL, 0, &lim, &d) == 0, "%s", sl_last_error());
    CHECK(d.version == 3 && d.hello.version_min == 1);
    msgpack_sbuffer_destroy(&h.sb);

    /* the encoder refuses what a decoder would refuse */
    sl_msg_t m;
    sl_wire_buf_t b = {0};
    sl_msg_init(&m, SL_MSG_UPDATE, 1, 5);
    m.n = 4;
    m.vec = vec;
    m.update.examples = 3;
    m.update.train_loss = NAN;
    CHECK(sl_wire_encode(&m, &b) == SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "\"loss\" is NaN");
    m.update.train_loss = 1;
    m.update.examples = 0;
    CHECK(sl_wire_encode(&m, &b) == SL_EINVAL);
    sl_wire_buf_free(&b);
}

static void test_layout_hash(void)
{
    sl_layout_hash_t h1, h2;
    size_t shape[2] = {4, 8};
    sl_layout_hash_init(&h1);
    sl_layout_hash_add(&h1, "head.weight", shape, 2, 0, 32);
    uint64_t a = sl_layout_hash_final(&h1);
    sl_layout_hash_init(&h2);
    shape[1] = 9;
    sl_layout_hash_add(&h2, "head.weight", shape, 2, 0, 36);
    uint64_t b = sl_layout_hash_final(&h2);
    CHECK(a != 0 && b != 0 && a != b);
    shape[1] = 8;
    sl_layout_hash_init(&h2);
    sl_layout_hash_add(&h2, "head.weight", shape, 2, 0, 32);
    CHECK(sl_layout_hash_final(&h2) == a);
}

int main(void)
{
    test_roundtrips();
    test_malformed();
    test_layout_hash();
    return check_summary("test_wire");
}
