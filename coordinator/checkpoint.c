#include "coordinator/checkpoint.h"

#include "core/bytes.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC      "SLCKPT\r\n"
#define HASH_BYTES 32
#define MAX_FILE   ((size_t)1 << 34) /* 16 GiB: anything larger is not ours */

int sl_checkpoint_encode(const sl_checkpoint_t *ck, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (ck->n_rng > SL_CHECKPOINT_MAX_RNG)
        return sl_error(SL_EINVAL, "checkpoint: %zu rng positions (max %d)", ck->n_rng,
                        SL_CHECKPOINT_MAX_RNG);
    if (ck->dim && !ck->global)
        return sl_error(SL_EINVAL, "checkpoint: no global vector");
    size_t n = 8 + 4 + 4 + 5 * 8 + 8 + ck->n_rng * 8 + 8 + ck->dim * 4 + 8 + ck->strategy_len + 8 +
               ck->ext_len + HASH_BYTES;
    uint8_t *b = malloc(n);
    if (!b)
        return sl_error(SL_ENOMEM, "checkpoint: out of memory (%zu bytes)", n);
    size_t o = 0;
    memcpy(b, MAGIC, 8);
    o = 8;
    b[o++] = SL_CHECKPOINT_VERSION, b[o++] = 0, b[o++] = 0, b[o++] = 0;
    memset(b + o, 0, 4), o += 4; /* flags */
    sl_put_le64(b + o, ck->round), o += 8;
    sl_put_le64(b + o, ck->seed), o += 8;
    sl_put_le64(b + o, ck->attempt), o += 8;
    sl_put_le64(b + o, ck->bytes_up), o += 8;
    sl_put_le64(b + o, ck->bytes_down), o += 8;
    sl_put_le64(b + o, ck->n_rng), o += 8;
    for (size_t i = 0; i < ck->n_rng; i++)
        sl_put_le64(b + o, ck->rng[i]), o += 8;
    sl_put_le64(b + o, ck->dim), o += 8;
    if (ck->dim)
        memcpy(b + o, ck->global, ck->dim * 4), o += ck->dim * 4;
    sl_put_le64(b + o, ck->strategy_len), o += 8;
    if (ck->strategy_len)
        memcpy(b + o, ck->strategy, ck->strategy_len), o += ck->strategy_len;
    sl_put_le64(b + o, ck->ext_len), o += 8;
    if (ck->ext_len)
        memcpy(b + o, ck->ext, ck->ext_len), o += ck->ext_len;
    crypto_generichash(b + o, HASH_BYTES, b, o, NULL, 0);
    o += HASH_BYTES;
    *out = b;
    *len = o;
    return 0;
}

void sl_checkpoint_free(sl_checkpoint_t *ck)
{
    if (!ck)
        return;
    free(ck->global);
    free(ck->strategy);
    free(ck->ext);
    memset(ck, 0, sizeof *ck);
}

/* Read a u64 length field and check that many bytes (x elem) remain before the hash. */
static int take(const uint8_t *buf, size_t end, size_t *o, size_t elem, uint64_t *count, const char *name,
                const char *what)
{
    if (end - *o < 8)
        return sl_error(SL_EFORMAT, "%s: truncated before the %s length", name, what);
    uint64_t c = sl_get_le64(buf + *o);
    *o += 8;
    if (c > (end - *o) / elem)
        return sl_error(SL_EFORMAT, "%s: %s of %llu entries runs past the end (truncated?)", name, what,
                        (unsigned long long)c);
    *count = c;
    return 0;
}

int sl_checkpoint_decode(const uint8_t *buf, size_t len, const char *name, sl_checkpoint_t *ck)
{
    memset(ck, 0, sizeof *ck);
    if (!name)
        name = "checkpoint";
    size_t fixed = 8 + 4 + 4 + 5 * 8;
    if (len < fixed + HASH_BYTES)
        return sl_error(SL_EFORMAT, "%s: truncated (%zu bytes)", name, len);
    if (memcmp(buf, MAGIC, 8) != 0)
        return sl_error(SL_EFORMAT, "%s: not a starling checkpoint (bad magic)", name);
    uint32_t version =
        (uint32_t)buf[8] | (uint32_t)buf[9] << 8 | (uint32_t)buf[10] << 16 | (uint32_t)buf[11] << 24;
    if (version != SL_CHECKPOINT_VERSION)
        return sl_error(SL_EFORMAT, "%s: checkpoint version %u, this build reads %d", name, version,
                        SL_CHECKPOINT_VERSION);
    size_t end = len - HASH_BYTES;
    uint8_t h[HASH_BYTES];
    crypto_generichash(h, HASH_BYTES, buf, end, NULL, 0);
    if (sodium_memcmp(h, buf + end, HASH_BYTES) != 0)
        return sl_error(SL_EFORMAT, "%s: checksum mismatch (corrupt or truncated)", name);
    size_t o = 16;
    ck->round = sl_get_le64(buf + o), o += 8;
    ck->seed = sl_get_le64(buf + o), o += 8;
    ck->attempt = sl_get_le64(buf + o), o += 8;
    ck->bytes_up = sl_get_le64(buf + o), o += 8;
    ck->bytes_down = sl_get_le64(buf + o), o += 8;
    uint64_t c = 0;
    int rc;
    if ((rc = take(buf, end, &o, 8, &c, name, "rng table")))
        goto fail;
    if (c > SL_CHECKPOINT_MAX_RNG) {
        rc = sl_error(SL_EFORMAT, "%s: %llu rng positions (max %d)", name, (unsigned long long)c,
                      SL_CHECKPOINT_MAX_RNG);
        goto fail;
    }
    ck->n_rng = (size_t)c;
    for (size_t i = 0; i < ck->n_rng; i++)
        ck->rng[i] = sl_get_le64(buf + o), o += 8;
    if ((rc = take(buf, end, &o, 4, &c, name, "global vector")))
        goto fail;
    ck->dim = (size_t)c;
    if (c) {
        ck->global = malloc(ck->dim * 4);
        if (!ck->global) {
            rc = sl_error(SL_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
        memcpy(ck->global, buf + o, ck->dim * 4);
        o += ck->dim * 4;
    }
    if ((rc = take(buf, end, &o, 1, &c, name, "strategy state")))
        goto fail;
    ck->strategy_len = (size_t)c;
    if (c) {
        ck->strategy = malloc(ck->strategy_len);
        if (!ck->strategy) {
            rc = sl_error(SL_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
        memcpy(ck->strategy, buf + o, ck->strategy_len);
        o += ck->strategy_len;
    }
    if ((rc = take(buf, end, &o, 1, &c, name, "extension state")))
        goto fail;
    ck->ext_len = (size_t)c;
    if (c) {
        ck->ext = malloc(ck->ext_len);
        if (!ck->ext) {
            rc = sl_error(SL_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
        memcpy(ck->ext, buf + o, ck->ext_len);
        o += ck->ext_len;
    }
    if (o != end) {
        rc = sl_error(SL_EFORMAT, "%s: %zu unexpected bytes before the checksum", name, end - o);
        goto fail;
    }
    for (size_t i = 0; i < ck->dim; i++) {
        if (!isfinite(ck->global[i])) {
            rc = sl_error(SL_EFORMAT, "%s: global vector value %zu is not finite", name, i);
            goto fail;
        }
    }
    return 0;
fail:
    sl_checkpoint_free(ck);
    return rc;
}

int sl_checkpoint_write(const char *path, const sl_checkpoint_t *ck)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sl_checkpoint_encode(ck, &buf, &len);
    if (rc)
        return rc;
    char tmp[4096];
    int fd = -1;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        rc = sl_error(SL_EINVAL, "checkpoint: path too long");
        goto cleanup;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sl_error(SL_EIO, "%s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = sl_error(SL_EIO, "%s: write: %s", tmp, strerror(errno));
            goto cleanup;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = sl_error(SL_EIO, "%s: fsync: %s", tmp, strerror(errno));
        goto cleanup;
    }
    close(fd);
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sl_error(SL_EIO, "rename %s -> %s: %s", tmp, path, strerror(errno));
        goto cleanup;
    }
    {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    rc = 0;
cleanup:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(buf);
    return rc;
}

int sl_checkpoint_read(const char *path, sl_checkpoint_t *ck)
{
    memset(ck, 0, sizeof *ck);
    int rc = 0;
    uint8_t *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl_error(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (size_t)st.st_size > MAX_FILE) {
        rc = sl_error(SL_EFORMAT, "%s: not a regular checkpoint file", path);
        goto cleanup;
    }
    size_t len = (size_t)st.st_size;
    buf = malloc(len ? len : 1);
    if (!buf) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if (fread(buf, 1, len, f) != len) {
        rc = sl_error(SL_EIO, "%s: short read", path);
        goto cleanup;
    }
    rc = sl_checkpoint_decode(buf, len, path, ck);
cleanup:
    fclose(f);
    free(buf);
    return rc;
}
