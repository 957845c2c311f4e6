#include "core/keys.h"

#include "core/secmem.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

int sl_z85_key_valid(const char *z85)
{
    if (!z85 || strlen(z85) != SL_Z85_KEY_LEN)
        return 0;
    uint8_t raw[32];
    int ok = zmq_z85_decode(raw, z85) != NULL;
    sodium_memzero(raw, sizeof raw);
    return ok;
}

/* Raw 32-byte keys only ever exist in secret memory here: libzmq's own
 * zmq_curve_keypair / zmq_curve_public leave a copy of the secret on their stack. */
typedef struct {
    uint8_t pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
} raw_pair_t;

int sl_keypair_generate(sl_keypair_t *kp)
{
    raw_pair_t *raw = sl_secret_alloc(sizeof *raw);
    if (!raw)
        return sl_error(SL_ENOMEM, "keygen: out of secret memory");
    /* a CURVE key pair is a crypto_box (X25519) key pair in Z85 */
    int rc = 0;
    if (crypto_box_keypair(raw->pk, raw->sk) != 0 || !zmq_z85_encode(kp->public_z85, raw->pk, sizeof raw->pk) ||
        !zmq_z85_encode(kp->secret_z85, raw->sk, sizeof raw->sk))
        rc = sl_error(SL_ECRYPTO, "keygen: key generation failed");
    sl_secret_free(raw);
    return rc;
}

/* The public key of a Z85 secret key, in Z85 (false if the secret does not decode). */
static int public_of_secret(const char *secret_z85, char out[SL_Z85_KEY_LEN + 1])
{
    raw_pair_t *raw = sl_secret_alloc(sizeof *raw);
    if (!raw)
        return 0;
    int ok = zmq_z85_decode(raw->sk, secret_z85) != NULL && crypto_scalarmult_base(raw->pk, raw->sk) == 0 &&
             zmq_z85_encode(out, raw->pk, sizeof raw->pk) != NULL;
    sl_secret_free(raw);
    return ok;
}

void sl_keypair_wipe(sl_keypair_t *kp) { sodium_memzero(kp, sizeof *kp); }

int sl_keypair_new(sl_keypair_t **out)
{
    *out = sl_secret_alloc(sizeof **out);
    return *out ? 0 : sl_error(SL_ENOMEM, "key pair: out of secret memory");
}

void sl_keypair_destroy(sl_keypair_t **kp)
{
    if (!kp || !*kp)
        return;
    sl_secret_free(*kp);
    *kp = NULL;
}

static int write_key_file(const char *path, const char *z85, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return sl_error(errno == EEXIST ? SL_EPERM : SL_EIO, "key file %s: %s%s", path, strerror(errno),
                        errno == EEXIST ? " (refusing to overwrite a key)" : "");
    char line[SL_Z85_KEY_LEN + 2];
    memcpy(line, z85, SL_Z85_KEY_LEN);
    line[SL_Z85_KEY_LEN] = '\n';
    ssize_t n = write(fd, line, SL_Z85_KEY_LEN + 1);
    sodium_memzero(line, sizeof line);
    int sync_ok = fsync(fd) == 0;
    close(fd);
    if (n != SL_Z85_KEY_LEN + 1 || !sync_ok)
        return sl_error(SL_EIO, "key file %s: write failed", path);
    return 0;
}

int sl_keypair_save(const sl_keypair_t *kp, const char *dir, const char *name)
{
    if (!name[0] || strchr(name, '/'))
        return sl_error(SL_EINVAL, "keygen: invalid key name \"%s\"", name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return sl_error(SL_EIO, "keygen: cannot create %s: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.secret", dir, name);
    int rc = write_key_file(path, kp->secret_z85, 0600);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/%s.pub", dir, name);
    return write_key_file(path, kp->public_z85, 0644);
}

/* Reads the first line of a key file into out (40 chars), validating it. */
static int read_key_file(const char *path, char out[SL_Z85_KEY_LEN + 1], int secret)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return sl_error(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "key file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sl_error(SL_EIO, "key file %s: not a regular file", path);
    }
    if (secret && (st.st_mode & 077)) {
        close(fd);
        return sl_error(SL_EPERM,
                        "secret key file %s has mode %04o: it must not be readable by group or others "
                        "(run: chmod 600 %s)",
                        path, (unsigned)(st.st_mode & 07777), path);
    }
    char buf[SL_Z85_KEY_LEN + 8] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    int rc = 0;
    if (n < SL_Z85_KEY_LEN || (n > SL_Z85_KEY_LEN && buf[SL_Z85_KEY_LEN] != '\n' && buf[SL_Z85_KEY_LEN] != '\r'))
        rc = sl_error(SL_EFORMAT, "key file %s: expected one line of %d Z85 characters", path, SL_Z85_KEY_LEN);
    else {
        buf[SL_Z85_KEY_LEN] = '\0';
        if (!sl_z85_key_valid(buf))
            rc = sl_error(SL_EFORMAT, "key file %s: not a valid Z85 key", path);
        else
            memcpy(out, buf, SL_Z85_KEY_LEN + 1);
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

int sl_keypair_load(sl_keypair_t *kp, const char *path_prefix)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.secret", path_prefix);
    int rc = read_key_file(path, kp->secret_z85, 1);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s.pub", path_prefix);
    rc = read_key_file(path, kp->public_z85, 0);
    if (rc) {
        sl_keypair_wipe(kp);
        return rc;
    }
    /* The public key must belong to the secret key. */
    char derived[SL_Z85_KEY_LEN + 1];
    if (!public_of_secret(kp->secret_z85, derived) || strcmp(derived, kp->public_z85) != 0) {
        sl_keypair_wipe(kp);
        return sl_error(SL_ECRYPTO, "key pair %s: the .pub file does not match the .secret file", path_prefix);
    }
    return 0;
}

int sl_public_key_resolve(const char *key_or_path, char out[SL_Z85_KEY_LEN + 1])
{
    /* A file first: a path can itself be 40 valid Z85 characters ('/', '.', '-' and
     * letters are all in the alphabet), e.g. "/tmp/sacl/runs/hapt/keys/coordinator.pub",
     * and taking it as a key pins a server key nobody has. */
    struct stat st;
    if (key_or_path && stat(key_or_path, &st) == 0)
        return read_key_file(key_or_path, out, 0);
    if (sl_z85_key_valid(key_or_path)) {
        memcpy(out, key_or_path, SL_Z85_KEY_LEN + 1);
        return 0;
    }
    return read_key_file(key_or_path, out, 0);
}

void sl_key_fingerprint(const char *public_z85, char out[17])
{
    uint8_t h[8];
    crypto_generichash(h, sizeof h, (const uint8_t *)public_z85, strlen(public_z85), NULL, 0);
    sodium_bin2hex(out, 17, h, sizeof h);
}

static int allowlist_add(sl_allowlist_t *l, size_t *cap, const char *key)
{
    if (l->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void *p = realloc(l->keys, ncap * sizeof *l->keys);
        if (!p)
            return sl_error(SL_ENOMEM, "allow-list: out of memory");
        l->keys = p;
        *cap = ncap;
    }
    memcpy(l->keys[l->count++], key, SL_Z85_KEY_LEN + 1);
    return 0;
}

static int load_list_file(sl_allowlist_t *l, size_t *cap, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sl_error(SL_ENOTFOUND, "allow-list %s: %s", path, strerror(errno));
    char line[512];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        /* The key is the first word; '#' is a Z85 character, so a word starting with
         * '#' is a comment only when it is not a valid key. */
        size_t len = strcspn(s, " \t\r\n");
        if (len == 0)
            continue;
        s[len] = '\0';
        if (s[0] == '#' && !sl_z85_key_valid(s))
            continue;
        if (!sl_z85_key_valid(s))
            rc = sl_error(SL_EFORMAT, "allow-list %s:%d: not a 40-character Z85 public key", path, lineno);
        else
            rc = allowlist_add(l, cap, s);
    }
    fclose(f);
    return rc;
}

static int load_list_dir(sl_allowlist_t *l, size_t *cap, const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return sl_error(SL_ENOTFOUND, "allow-list %s: %s", path, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".pub") != 0)
            continue;
        char file[4096], key[SL_Z85_KEY_LEN + 1];
        snprintf(file, sizeof file, "%s/%s", path, e->d_name);
        rc = read_key_file(file, key, 0);
        if (rc == 0)
            rc = allowlist_add(l, cap, key);
    }
    closedir(d);
    return rc;
}

int sl_allowlist_load(sl_allowlist_t *list, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sl_error(SL_ENOTFOUND, "allow-list %s: %s", path, strerror(errno));
    sl_allowlist_t fresh = {0};
    size_t cap = 0;
    int rc = S_ISDIR(st.st_mode) ? load_list_dir(&fresh, &cap, path) : load_list_file(&fresh, &cap, path);
    if (rc) {
        sl_allowlist_free(&fresh);
        return rc;
    }
    sl_allowlist_free(list);
    *list = fresh;
    return 0;
}

int sl_allowlist_contains(const sl_allowlist_t *list, const char *public_z85)
{
    for (size_t i = 0; i < list->count; i++)
        if (sodium_memcmp(list->keys[i], public_z85, SL_Z85_KEY_LEN) == 0)
            return 1;
    return 0;
}

void sl_allowlist_free(sl_allowlist_t *list)
{
    free(list->keys);
    list->keys = NULL;
    list->count = 0;
}
