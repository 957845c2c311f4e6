#include "core/zap.h"

#include <pthread.h>
#include <stdio.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "core/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_FRAMES 7 /* version, request id, domain, address, identity, mechanism, credentials */
#define MAX_BANS 4096

typedef struct {
    char key[SL_Z85_KEY_LEN + 1];
    double until; /* monotonic seconds */
} ban_t;

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
    char fp[17];
    sl_key_fingerprint(key, fp);
    pthread_mutex_lock(&z->lock);
    int banned = is_banned(z, key);
    int allowed = !banned && sl_allowlist_contains(&z->allow, key);
    if (banned)
        z->stats.refused_banned++;
    else if (allowed)
        z->stats.accepted++;
    else
        z->stats.refused_unknown++;
    pthread_mutex_unlock(&z->lock);
    if (allowed) {
        SL_DEBUG("zap: admitted client key %s", fp);
        (void)send_reply(sock, &f[1], "200", "OK", key);
    } else {
        SL_WARN("zap: refused client key %s (%s)", fp, banned ? "in cool-down" : "not in the allow-list");
        (void)send_reply(sock, &f[1], "400", banned ? "cool-down" : "unknown key", "");
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
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 100) <= 0 || !(item.revents & ZMQ_POLLIN))
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
    free(z);
    *zp = NULL;
}
