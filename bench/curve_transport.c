/* bench_curve_transport: what CurveZMQ costs per byte and per message, through the same
 * sl_transport (DEALER -> ROUTER) the coordinator and clients use. One JSON object per
 * configuration.
 *
 *   bench_curve_transport [repeats]        (default 5)
 *
 * throughput: a client DEALER (its own zmq context and I/O thread, as a client process has)
 *             streams N messages of S bytes to a ROUTER, which answers one ack after the
 *             last; MB/s = N*S / (first send .. ack). CURVE on and off alternate inside each
 *             repeat (the order flips every repeat), over ipc:// and tcp://127.0.0.1.
 *             S = 1 KiB, 58,962 B (one HAPT LoRA r=8 update as metrics.jsonl counts it:
 *             bytes_up / clients), 1 MiB and 16 MiB.
 * latency:    ping-pong of 64-byte messages (round trip, microseconds), on vs off.
 *
 * The floor, measured in the same run on this thread: libsodium crypto_box_easy_afternm +
 * crypto_box_open_easy_afternm (XSalsa20-Poly1305, what CURVE does to every message after
 * the handshake: one seal by the sender, one open by the receiver) over the same sizes.
 * curve_extra_s_per_mb = 1/MBps_curve - 1/MBps_plain is what CURVE adds per MB moved;
 * next to it, floor_s_per_mb = 1/MBps_floor (seal + open of one MB). The handshake (and
 * the ZAP request) happens once per connection and is not part of these figures.
 */
#include "core/keys.h"
#include "core/transport.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_REPEATS 31

typedef struct {
    const char *endpoint;
    const sl_keypair_t *client_kp; /* NULL = plain */
    const char *server_pub;
    size_t bytes;
    size_t messages; /* 0 = ping-pong mode */
    size_t pings;
    double seconds; /* result */
    int rc;
} client_job_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const uint8_t HDR[16] = "bench-header-16";

/* The client side: its own context (own I/O thread), like a client process. */
static void *client_main(void *arg)
{
    client_job_t *j = arg;
    j->rc = -1;
    void *ctx = zmq_ctx_new();
    sl_transport_opts_t o = {.role = SL_TRANSPORT_CLIENT, .endpoint = j->endpoint, .send_timeout_ms = 60000};
    if (j->client_kp) {
        o.curve_public_z85 = j->client_kp->public_z85;
        o.curve_secret_z85 = j->client_kp->secret_z85;
        o.curve_server_z85 = j->server_pub;
    }
    sl_transport_t *t = NULL;
    uint8_t *payload = malloc(j->bytes ? j->bytes : 1);
    if (!ctx || !payload || sl_transport_new(&t, ctx, &o) != 0) {
        fprintf(stderr, "bench_curve_transport: client: %s\n", sl_last_error());
        goto out;
    }
    memset(payload, 0x5a, j->bytes);
    sl_frame_t f;
    /* Hello + ack: the connection (and the CURVE handshake) is up before timing. */
    if (sl_transport_send(t, NULL, HDR, sizeof HDR, NULL, 0) || sl_transport_recv(t, &f, 30000))
        goto out;
    double t0 = sl_now();
    if (j->messages) {
        for (size_t i = 0; i < j->messages; i++)
            if (sl_transport_send(t, NULL, HDR, sizeof HDR, payload, j->bytes))
                goto out;
        if (sl_transport_recv(t, &f, 60000))
            goto out;
    } else {
        for (size_t i = 0; i < j->pings; i++)
            if (sl_transport_send(t, NULL, HDR, sizeof HDR, payload, j->bytes) ||
                sl_transport_recv(t, &f, 30000))
                goto out;
    }
    j->seconds = sl_now() - t0;
    j->rc = 0;
out:
    sl_transport_destroy(&t);
    if (ctx)
        zmq_ctx_term(ctx);
    free(payload);
    return NULL;
}

/* One trial; returns seconds (the client's clock) or -1. */
static double trial(const char *endpoint, int curve, size_t bytes, size_t messages, size_t pings)
{
    static sl_keypair_t server_kp, client_kp;
    static int have_keys;
    if (!have_keys) {
        if (sl_keypair_generate(&server_kp) || sl_keypair_generate(&client_kp))
            return -1;
        have_keys = 1;
    }
    void *ctx = zmq_ctx_new();
    sl_transport_opts_t o = {.role = SL_TRANSPORT_SERVER, .endpoint = endpoint, .send_timeout_ms = 60000};
    if (curve) {
        o.curve_public_z85 = server_kp.public_z85;
        o.curve_secret_z85 = server_kp.secret_z85;
    }
    sl_transport_t *srv = NULL;
    double result = -1;
    if (!ctx || sl_transport_new(&srv, ctx, &o) != 0) {
        fprintf(stderr, "bench_curve_transport: server: %s\n", sl_last_error());
        goto out;
    }
    client_job_t j = {.endpoint = sl_transport_endpoint(srv),
                      .client_kp = curve ? &client_kp : NULL,
                      .server_pub = server_kp.public_z85,
                      .bytes = bytes,
                      .messages = messages,
                      .pings = pings};
    pthread_t th;
    if (pthread_create(&th, NULL, client_main, &j) != 0)
        goto out;
    sl_frame_t f;
    sl_peer_t peer;
    int ok = sl_transport_recv(srv, &f, 30000) == 0;
    if (ok) {
        peer = f.peer;
        ok = sl_transport_send(srv, &peer, HDR, sizeof HDR, NULL, 0) == 0;
    }
    size_t expect = messages ? messages : pings;
    for (size_t i = 0; ok && i < expect; i++) {
        ok = sl_transport_recv(srv, &f, 60000) == 0 && f.payload_len == bytes;
        if (ok && (!messages || i + 1 == expect))
            ok = sl_transport_send(srv, &peer, HDR, sizeof HDR, messages ? NULL : f.payload,
                                   messages ? 0 : bytes) == 0;
    }
    pthread_join(th, NULL);
    if (ok && j.rc == 0)
        result = j.seconds;
    else
        fprintf(stderr, "bench_curve_transport: trial failed (%s, curve %d, %zu B): %s\n", endpoint, curve,
                bytes, sl_last_error());
out:
    sl_transport_destroy(&srv);
    if (ctx)
        zmq_ctx_term(ctx);
    return result;
}

/* Seal + open `bytes` repeatedly for about `total` bytes; MB/s of messages processed. */
static double box_floor(size_t bytes, size_t total)
{
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES], k[crypto_box_BEFORENMBYTES];
    unsigned char nonce[crypto_box_NONCEBYTES] = {0};
    crypto_box_keypair(pk, sk);
    if (crypto_box_beforenm(k, pk, sk) != 0)
        return -1;
    unsigned char *m = calloc(bytes, 1), *c = malloc(bytes + crypto_box_MACBYTES), *back = malloc(bytes);
    if (!m || !c || !back)
        return -1;
    size_t n = total / bytes ? total / bytes : 1;
    double t0 = sl_now();
    for (size_t i = 0; i < n; i++) {
        nonce[0] = (unsigned char)i;
        nonce[1] = (unsigned char)(i >> 8);
        if (crypto_box_easy_afternm(c, m, bytes, nonce, k) != 0 ||
            crypto_box_open_easy_afternm(back, c, bytes + crypto_box_MACBYTES, nonce, k) != 0)
            return -1;
    }
    double dt = sl_now() - t0;
    free(m);
    free(c);
    free(back);
    return (double)n * (double)bytes / dt / 1e6;
}

static void spread(double *v, int n, double *lo, double *hi)
{
    *lo = *hi = v[0];
    for (int i = 1; i < n; i++) {
        if (v[i] < *lo)
            *lo = v[i];
        if (v[i] > *hi)
            *hi = v[i];
    }
}

int main(int argc, char **argv)
{
    int repeats = argc > 1 ? atoi(argv[1]) : 5;
    if (repeats < 1 || repeats > MAX_REPEATS) {
        fprintf(stderr, "usage: bench_curve_transport [repeats 1..%d]\n", MAX_REPEATS);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    char ipc[64];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/sl_bench_curve_%ld.sock", (long)getpid());
    const char *endpoints[2][2] = {{"ipc", ipc}, {"tcp", "tcp://127.0.0.1:*"}};
    static const size_t sizes[] = {1024, 58962, 1u << 20, 16u << 20};
    for (size_t e = 0; e < 2; e++) {
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            size_t bytes = sizes[s];
            size_t messages = (64u << 20) / bytes; /* 64 MiB per trial */
            if (messages < 8)
                messages = 8;
            if (messages > 20000)
                messages = 20000;
            double on[MAX_REPEATS], off[MAX_REPEATS];
            (void)trial(endpoints[e][1], 1, bytes, messages / 4, 0); /* warm-up */
            (void)trial(endpoints[e][1], 0, bytes, messages / 4, 0);
            for (int r = 0; r < repeats; r++) {
                for (int k = 0; k < 2; k++) {
                    int curve = (r + k) % 2; /* the order flips every repeat */
                    double dt = trial(endpoints[e][1], curve, bytes, messages, 0);
                    if (dt <= 0)
                        return 1;
                    (curve ? on : off)[r] = (double)messages * (double)bytes / dt / 1e6;
                }
            }
            double floor_mbs = box_floor(bytes, 256u << 20);
            double lo_on, hi_on, lo_off, hi_off;
            spread(on, repeats, &lo_on, &hi_on);
            spread(off, repeats, &lo_off, &hi_off);
            double m_on = median(on, repeats), m_off = median(off, repeats);
            double extra = 1.0 / m_on - 1.0 / m_off;
            printf(
                "{\"name\":\"curve_throughput\",\"endpoint\":\"%s\",\"message_bytes\":%zu,\"messages\":%zu,"
                "\"repeats\":%d,\"unit\":\"MB/s\",\"median_curve\":%.1f,\"median_plain\":%.1f,"
                "\"spread_curve\":[%.1f,%.1f],\"spread_plain\":[%.1f,%.1f],\"ratio_time_curve_plain\":%.3f,"
                "\"curve_extra_s_per_mb\":%.6f,\"floor_box_seal_open_mb_s\":%.1f,\"floor_s_per_mb\":%.6f,"
                "\"extra_vs_floor\":%.2f}\n",
                endpoints[e][0], bytes, messages, repeats, m_on, m_off, lo_on, hi_on, lo_off, hi_off,
                m_off / m_on, extra, floor_mbs, 1.0 / floor_mbs, extra * floor_mbs);
            fflush(stdout);
        }
        /* Latency: 64-byte ping-pong. */
        size_t pings = 2000;
        double on[MAX_REPEATS], off[MAX_REPEATS];
        for (int r = 0; r < repeats; r++) {
            for (int k = 0; k < 2; k++) {
                int curve = (r + k) % 2;
                double dt = trial(endpoints[e][1], curve, 64, 0, pings);
                if (dt <= 0)
                    return 1;
                (curve ? on : off)[r] = dt / (double)pings * 1e6;
            }
        }
        double lo_on, hi_on, lo_off, hi_off;
        spread(on, repeats, &lo_on, &hi_on);
        spread(off, repeats, &lo_off, &hi_off);
        double m_on = median(on, repeats), m_off = median(off, repeats);
        printf("{\"name\":\"curve_latency\",\"endpoint\":\"%s\",\"message_bytes\":64,\"round_trips\":%zu,"
               "\"repeats\":%d,\"unit\":\"us per round trip\",\"median_curve\":%.1f,\"median_plain\":%.1f,"
               "\"spread_curve\":[%.1f,%.1f],\"spread_plain\":[%.1f,%.1f],\"ratio_curve_plain\":%.3f}\n",
               endpoints[e][0], pings, repeats, m_on, m_off, lo_on, hi_on, lo_off, hi_off, m_on / m_off);
        fflush(stdout);
    }
    unlink(ipc + strlen("ipc://"));
    return 0;
}
