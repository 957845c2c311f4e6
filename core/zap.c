#include "core/zap.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <zmq.h>

#include "core/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 7 /* version, request id, domain, address, identity, mechanism, credentials */
#define MAX_BANS 4096

#define SRC_LEN 80           /* a numeric IPv6 address with a scope fits */
#define LOCAL_SOURCE "local" /* every peer without an IP address (ipc://) */

typedef struct {
    char key[SL_Z85_KEY_LEN + 1];
    double until; /* monotonic seconds */
} ban_t;

typedef struct {
    int fd; /* libzmq's socket for the connection, as the monitor reports it */
    char src[SRC_LEN];
} conn_t;

typedef struct {
    char src[SRC_LEN];
    size_t open;
} source_t;

struct sl_zap {
    void *ctx;
    pthread_t thread;
    int running;
    pthread_mutex_t lock; /* guards allow, bans, stats */
    sl_allowlist_t allow;
    ban_t bans[MAX_BANS];
    size_t nbans;
    sl_zap_stats_t stats;
    int ready_rc; /* set by the thread once bound */
    pthread_cond_t ready;
    int started;
    volatile sig_atomic_t *reload_flag; /* see sl_zap_watch_reload */
    char reload_path[4096];
    /* connection limits (sl_zap_limit_connections); monitor == NULL: none. Handed over
     * under `lock`; the tables below belong to the handler thread. */
    void *monitor; /* PAIR receiving the coordinator socket's ACCEPTED / DISCONNECTED */
    sl_zap_limits_t limits;
    conn_t *conns;
    size_t nconns, conns_cap;
    source_t *srcs;
    size_t nsrcs, srcs_cap;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int is_banned(sl_zap_t *z, const char *key)
{
    double now = now_seconds();
    for (size_t i = 0; i < z->nbans; i++)
        if (z->bans[i].until > now && strcmp(z->bans[i].key, key) == 0)
            return 1;
    return 0;
}

/* ---- connection accounting (handler thread only) ---- */

/* The source of a peer address as libzmq formats it in ZAP requests (getnameinfo with
 * NI_NUMERICHOST), or LOCAL_SOURCE for anything that is not an IP address. */
static void source_of_fd(int fd, char out[SRC_LEN])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    snprintf(out, SRC_LEN, "%s", LOCAL_SOURCE);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return;
    char host[NI_MAXHOST];
    if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, NULL, 0, NI_NUMERICHOST) == 0)
        snprintf(out, SRC_LEN, "%s", host);
}

static void source_of_zap_address(const zmq_msg_t *addr, char out[SRC_LEN])
{
    size_t n = zmq_msg_size(addr);
    const char *a = zmq_msg_data((zmq_msg_t *)addr);
    /* An IP address starts with a hex digit or ':' (IPv6); libzmq reports ipc:// peers as
     * "" or ":uid:gid:pid" (peer credentials), which the monitor cannot see: local. */
    int ip = n > 0 && n < SRC_LEN && !(a[0] == ':' && n > 1 && a[1] != ':');
    for (size_t i = 0; ip && i < n; i++)
        ip = (a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f') || (a[i] >= 'A' && a[i] <= 'F') ||
             a[i] == ':' || a[i] == '.' || a[i] == '%';
    if (!ip) {
        snprintf(out, SRC_LEN, "%s", LOCAL_SOURCE);
        return;
    }
    memcpy(out, a, n);
    out[n] = '\0';
}

static source_t *find_source(sl_zap_t *z, const char *src)
{
    for (size_t i = 0; i < z->nsrcs; i++)
        if (strcmp(z->srcs[i].src, src) == 0)
            return &z->srcs[i];
    return NULL;
}

static void conn_opened(sl_zap_t *z, int fd)
{
    char src[SRC_LEN];
    source_of_fd(fd, src);
    source_t *s = find_source(z, src);
    if (!s) {
        if (z->nsrcs == z->srcs_cap) {
            size_t cap = z->srcs_cap ? 2 * z->srcs_cap : 64;
            void *p = realloc(z->srcs, cap * sizeof *z->srcs);
            if (!p)
                goto oom;
            z->srcs = p;
            z->srcs_cap = cap;
        }
        s = &z->srcs[z->nsrcs++];
        snprintf(s->src, sizeof s->src, "%s", src);
        s->open = 0;
    }
    if (z->nconns == z->conns_cap) {
        size_t cap = z->conns_cap ? 2 * z->conns_cap : 64;
        void *p = realloc(z->conns, cap * sizeof *z->conns);
        if (!p)
            goto oom;
        z->conns = p;
        z->conns_cap = cap;
    }
    z->conns[z->nconns].fd = fd;
    memcpy(z->conns[z->nconns].src, src, SRC_LEN);
    z->nconns++;
    s->open++;
    return;
oom: /* uncounted: the caps get looser by one connection, never stricter */
    SL_WARN("zap: out of memory counting connections");
}

static void conn_closed(sl_zap_t *z, int fd)
{
    for (size_t i = 0; i < z->nconns; i++) {
        if (z->conns[i].fd != fd)
            continue;
        source_t *s = find_source(z, z->conns[i].src);
        if (s && --s->open == 0)
            *s = z->srcs[--z->nsrcs];
        z->conns[i] = z->conns[--z->nconns];
        return;
    }
    /* a connection accepted before the monitor started: it was never counted */
}

/* Apply every queued monitor event. libzmq emits a connection's ACCEPTED from the I/O
 * thread before that connection's handshake reaches us, so draining here before each ZAP
 * request means the request's own connection is counted. Returns 1 once the monitor
 * reported MONITOR_STOPPED (the coordinator socket closed: no event follows). */
static int drain_monitor(sl_zap_t *z)
{
    /* read under the lock: sl_zap_limit_connections hands the PAIR over from another
     * thread, and the mutex is the barrier libzmq needs before this thread uses it */
    pthread_mutex_lock(&z->lock);
    void *monitor = z->monitor;
    pthread_mutex_unlock(&z->lock);
    if (!monitor)
        return 1;
    int stopped = 0;
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return stopped;
        }
        /* v1 event: [u16 event, u32 value] then the endpoint address */
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev))
            (void)zmq_msg_recv(&addr, monitor, 0);
        if (zmq_msg_size(&ev) == 6) {
            const uint8_t *d = zmq_msg_data(&ev);
            uint16_t event;
            uint32_t value;
            memcpy(&event, d, sizeof event);
            memcpy(&value, d + 2, sizeof value);
            pthread_mutex_lock(&z->lock);
            if (event == ZMQ_EVENT_ACCEPTED)
                conn_opened(z, (int)value);
            else if (event == ZMQ_EVENT_DISCONNECTED)
                conn_closed(z, (int)value);
            else if (event == ZMQ_EVENT_MONITOR_STOPPED)
                stopped = 1;
            z->stats.connections = z->nconns;
            pthread_mutex_unlock(&z->lock);
        }
        zmq_msg_close(&addr);
        zmq_msg_close(&ev);
    }
}

/* Why a handshake from `src` is over a limit, or NULL. Caller holds the lock. */
static const char *over_limit(sl_zap_t *z, const char *src, char *why, size_t cap)
{
    if (!z->monitor)
        return NULL;
    int local = strcmp(src, LOCAL_SOURCE) == 0;
    size_t per = (size_t)z->limits.max_per_source;
    const source_t *s = find_source(z, src);
    size_t mine = s ? s->open : 0;
    if (!local && mine > per) {
        snprintf(why, cap, "%zu open connections from %s (net.max_connections_per_source = %zu)", mine, src, per);
        return why;
    }
    size_t total = 0;
    for (size_t i = 0; i < z->nsrcs; i++) {
        size_t n = z->srcs[i].open;
        total += (strcmp(z->srcs[i].src, LOCAL_SOURCE) == 0 || n < per) ? n : per;
    }
    if (total > (size_t)z->limits.max_connections) {
        snprintf(why, cap, "%zu open connections (net.max_connections = %ld)", total, z->limits.max_connections);
        return why;
    }
    return NULL;
}

static int send_reply(void *sock, const zmq_msg_t *request_id, const char *status, const char *text,
                      const char *user_id)
{
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, (zmq_msg_t *)request_id);
    int ok = zmq_send(sock, "1.0", 3, ZMQ_SNDMORE) >= 0 && zmq_msg_send(&id, sock, ZMQ_SNDMORE) >= 0 &&
             zmq_send(sock, status, strlen(status), ZMQ_SNDMORE) >= 0 &&
             zmq_send(sock, text, strlen(text), ZMQ_SNDMORE) >= 0 &&
             zmq_send(sock, user_id, strlen(user_id), ZMQ_SNDMORE) >= 0 && zmq_send(sock, "", 0, 0) >= 0;
    zmq_msg_close(&id);
    return ok ? 0 : -1;
}

/* Handle one request whose frames are in `f` (n of them). */
static void handle(sl_zap_t *z, void *sock, zmq_msg_t *f, int n)
{
    if (n < 6) { /* cannot even reply without a request id: drop */
        pthread_mutex_lock(&z->lock);
        z->stats.malformed++;
        pthread_mutex_unlock(&z->lock);
        return;
    }
    const char *mech = zmq_msg_data(&f[5]);
    size_t mech_len = zmq_msg_size(&f[5]);
    if (n != ZAP_FRAMES || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0 ||
        mech_len != 5 || memcmp(mech, "CURVE", 5) != 0 || zmq_msg_size(&f[6]) != 32) {
        pthread_mutex_lock(&z->lock);
        z->stats.malformed++;
        pthread_mutex_unlock(&z->lock);
        SL_WARN("zap: refused a connection that is not a CURVE handshake");
        (void)send_reply(sock, &f[1], "400", "CURVE required", "");
        return;
    }
    char key[SL_Z85_KEY_LEN + 1];
    zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
    char fp[17], src[SRC_LEN], why_buf[200];
    sl_key_fingerprint(key, fp);
    source_of_zap_address(&f[3], src);
    (void)drain_monitor(z);
    pthread_mutex_lock(&z->lock);
    const char *why = NULL;
    if (is_banned(z, key)) {
        why = "in cool-down";
        z->stats.refused_banned++;
    } else if (!sl_allowlist_contains(&z->allow, key)) {
        why = "not in the allow-list";
        z->stats.refused_unknown++;
    } else if ((why = over_limit(z, src, why_buf, sizeof why_buf)) != NULL) {
        z->stats.refused_limit++;
    } else {
        z->stats.accepted++;
    }
    pthread_mutex_unlock(&z->lock);
    if (!why) {
        SL_DEBUG("zap: admitted client key %s from %s", fp, src);
        (void)send_reply(sock, &f[1], "200", "OK", key);
    } else {
        SL_WARN("zap: refused client key %s from %s: %s", fp, src, why);
        (void)send_reply(sock, &f[1], "400", why, "");
    }
}

static void *zap_thread(void *arg)
{
    sl_zap_t *z = arg;
    void *sock = zmq_socket(z->ctx, ZMQ_REP);
    int rc = 0;
    int linger = 0;
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0 || zmq_bind(sock, ZAP_ENDPOINT) != 0)
        rc = sl_error(SL_ENET, "zap: cannot bind %s: %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
    pthread_mutex_lock(&z->lock);
    z->ready_rc = rc;
    z->started = 1;
    pthread_cond_signal(&z->ready);
    pthread_mutex_unlock(&z->lock);
    if (rc) {
        if (sock)
            zmq_close(sock);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&z->lock);
        int running = z->running;
        pthread_mutex_unlock(&z->lock);
        if (!running)
            break;
        if (z->reload_flag && *z->reload_flag) {
            *z->reload_flag = 0;
            if (sl_zap_reload(z, z->reload_path) != 0)
                SL_ERROR("zap: reload failed, keeping the old allow-list: %s", sl_last_error());
        }
        pthread_mutex_lock(&z->lock);
        void *monitor = z->monitor;
        pthread_mutex_unlock(&z->lock);
        zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0}, {monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, monitor ? 2 : 1, 100) <= 0)
            continue;
        if (monitor && (items[1].revents & ZMQ_POLLIN))
            (void)drain_monitor(z);
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t f[ZAP_FRAMES + 1];
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init(&part);
            if (zmq_msg_recv(&part, sock, 0) < 0) {
                zmq_msg_close(&part);
                break;
            }
            more = zmq_msg_more(&part);
            if (n < ZAP_FRAMES + 1)
                f[n++] = part; /* moved: closed below */
            else
                zmq_msg_close(&part);
        }
        handle(z, sock, f, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    zmq_close(sock);
    /* Events still queued on the PAIR when it closes are never freed by libzmq (LeakSanitizer
     * caught them), so read up to MONITOR_STOPPED, the last event. libzmq sends it when its
     * reaper destroys the closed coordinator socket, which waits for the socket's linger
     * (1 s) and the teardown of every connection: wait up to 5 s, bounded in case a caller
     * stops us before closing that socket. */
    for (int waited = 0; waited < 50 && !drain_monitor(z); waited++) {
        pthread_mutex_lock(&z->lock);
        void *monitor = z->monitor;
        pthread_mutex_unlock(&z->lock);
        zmq_pollitem_t item = {monitor, 0, ZMQ_POLLIN, 0};
        (void)zmq_poll(&item, 1, 100);
    }
    pthread_mutex_lock(&z->lock);
    if (z->monitor)
        zmq_close(z->monitor);
    z->monitor = NULL;
    pthread_mutex_unlock(&z->lock);
    return NULL;
}

int sl_zap_start(sl_zap_t **out, void *zmq_ctx, sl_allowlist_t *allow)
{
    *out = NULL;
    sl_zap_t *z = calloc(1, sizeof *z);
    if (!z)
        return sl_error(SL_ENOMEM, "zap: out of memory");
    z->ctx = zmq_ctx;
    z->running = 1;
    z->allow = *allow;
    memset(allow, 0, sizeof *allow);
    pthread_mutex_init(&z->lock, NULL);
    pthread_cond_init(&z->ready, NULL);
    if (pthread_create(&z->thread, NULL, zap_thread, z) != 0) {
        sl_allowlist_free(&z->allow);
        free(z);
        return sl_error(SL_ENOMEM, "zap: cannot start thread");
    }
    pthread_mutex_lock(&z->lock);
    while (!z->started)
        pthread_cond_wait(&z->ready, &z->lock);
    int rc = z->ready_rc;
    pthread_mutex_unlock(&z->lock);
    if (rc) {
        pthread_join(z->thread, NULL);
        sl_allowlist_free(&z->allow);
        free(z);
        return rc;
    }
    *out = z;
    return 0;
}

int sl_zap_reload(sl_zap_t *z, const char *path)
{
    sl_allowlist_t fresh = {0};
    int rc = sl_allowlist_load(&fresh, path);
    if (rc)
        return rc;
    pthread_mutex_lock(&z->lock);
    sl_allowlist_free(&z->allow);
    z->allow = fresh;
    pthread_mutex_unlock(&z->lock);
    SL_INFO("zap: allow-list reloaded from %s (%zu keys)", path, fresh.count);
    return 0;
}

void sl_zap_watch_reload(sl_zap_t *z, volatile sig_atomic_t *flag, const char *path)
{
    pthread_mutex_lock(&z->lock);
    snprintf(z->reload_path, sizeof z->reload_path, "%s", path);
    z->reload_flag = flag;
    pthread_mutex_unlock(&z->lock);
}

void sl_zap_ban(sl_zap_t *z, const char *public_z85, double seconds)
{
    double now = now_seconds();
    pthread_mutex_lock(&z->lock);
    size_t slot = z->nbans;
    for (size_t i = 0; i < z->nbans; i++) {
        if (z->bans[i].until <= now || strcmp(z->bans[i].key, public_z85) == 0) {
            slot = i; /* reuse an expired slot or extend the same key */
            break;
        }
    }
    if (slot == z->nbans && z->nbans < MAX_BANS)
        z->nbans++;
    if (slot < MAX_BANS) {
        snprintf(z->bans[slot].key, sizeof z->bans[slot].key, "%s", public_z85);
        z->bans[slot].until = now + seconds;
    }
    pthread_mutex_unlock(&z->lock);
    char fp[17];
    sl_key_fingerprint(public_z85, fp);
    SL_WARN("zap: client key %s refused for %.0f s", fp, seconds);
}

int sl_zap_limit_connections(sl_zap_t *z, void *router, const sl_zap_limits_t *limits)
{
    if (limits->max_connections < 1 || limits->max_per_source < 1)
        return sl_error(SL_EINVAL, "zap: connection limits must be at least 1 (got %ld overall, %ld per source)",
                        limits->max_connections, limits->max_per_source);
    pthread_mutex_lock(&z->lock);
    int have = z->monitor != NULL;
    pthread_mutex_unlock(&z->lock);
    if (have)
        return sl_error(SL_EINVAL, "zap: connection limits are already set");
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://sl-zap-monitor-%p", (void *)z);
    if (zmq_socket_monitor(router, endpoint, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_MONITOR_STOPPED) != 0)
        return sl_error(SL_ENET, "zap: cannot monitor the socket: %s", zmq_strerror(zmq_errno()));
    /* libzmq sends monitor events blocking, from its I/O thread: our end must be connected
     * before the first event and never fill up (RCVHWM 0 = unbounded). */
    void *pair = zmq_socket(z->ctx, ZMQ_PAIR);
    int zero = 0;
    if (!pair || zmq_setsockopt(pair, ZMQ_RCVHWM, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(pair, ZMQ_LINGER, &zero, sizeof zero) != 0 || zmq_connect(pair, endpoint) != 0) {
        int rc = sl_error(SL_ENET, "zap: cannot connect the socket monitor: %s", zmq_strerror(zmq_errno()));
        if (pair)
            zmq_close(pair);
        (void)zmq_socket_monitor(router, NULL, 0);
        return rc;
    }
    /* the PAIR moves to the handler thread: the mutex is the full barrier libzmq asks for */
    pthread_mutex_lock(&z->lock);
    z->limits = *limits;
    z->monitor = pair;
    pthread_mutex_unlock(&z->lock);
    SL_INFO("zap: at most %ld connections, %ld per source address", limits->max_connections,
            limits->max_per_source);
    return 0;
}

sl_zap_stats_t sl_zap_stats(sl_zap_t *z)
{
    pthread_mutex_lock(&z->lock);
    sl_zap_stats_t s = z->stats;
    pthread_mutex_unlock(&z->lock);
    return s;
}

void sl_zap_stop(sl_zap_t **zp)
{
    if (!zp || !*zp)
        return;
    sl_zap_t *z = *zp;
    pthread_mutex_lock(&z->lock);
    z->running = 0;
    pthread_mutex_unlock(&z->lock);
    pthread_join(z->thread, NULL);
    sl_allowlist_free(&z->allow);
    pthread_mutex_destroy(&z->lock);
    pthread_cond_destroy(&z->ready);
    sodium_memzero(z->bans, sizeof z->bans);
    free(z->conns);
    free(z->srcs);
    free(z);
    *zp = NULL;
}
