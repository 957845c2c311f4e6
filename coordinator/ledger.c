/* coordinator/ledger: the write-ahead privacy ledger. See ledger.h. */
#include "coordinator/ledger.h"

#include "core/bytes.h"
#include "core/log.h"

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

#define MAGIC      "SLPLEDG\n"
#define REC_MAGIC  "SLPR"
#define VERSION    1u
#define SUM_OFFSET 56
#define MAX_FILE   ((size_t)1 << 30) /* 16 M records: anything larger is not ours */

struct sl_ledger {
    char *path;
    int fd;
    int broken; /* an append failed part-way: the file may end in a partial record */
    sl_ledger_record_t *recs;
    size_t n, cap;
};

void sl_ledger_header(uint8_t out[SL_LEDGER_HEADER_BYTES])
{
    memcpy(out, MAGIC, 8);
    sl_put_le32(out + 8, VERSION);
    sl_put_le32(out + 12, SL_LEDGER_RECORD_BYTES);
}

static int values_ok(const sl_ledger_record_t *r)
{
    return r->q >= 0.0 && r->q <= 1.0 && isfinite(r->z) && r->z >= 0.0 && r->steps >= 1 && r->mode >= 1 &&
           r->mode <= 3;
}

/* BLAKE2b-128 of the record's first 56 bytes, truncated to 8. */
static void checksum(const uint8_t *rec, uint8_t out[8])
{
    uint8_t h[16];
    crypto_generichash(h, sizeof h, rec, SUM_OFFSET, NULL, 0);
    memcpy(out, h, 8);
}

int sl_ledger_encode_record(const sl_ledger_record_t *r, uint8_t out[SL_LEDGER_RECORD_BYTES])
{
    if (!values_ok(r))
        return sl_error(SL_EINVAL,
                        "privacy ledger: record (round %llu, q %g, z %g, steps %llu, mode %u) is invalid",
                        (unsigned long long)r->round, r->q, r->z, (unsigned long long)r->steps, r->mode);
    memcpy(out, REC_MAGIC, 4);
    sl_put_le32(out + 4, r->attempt);
    sl_put_le64(out + 8, r->seq);
    sl_put_le64(out + 16, r->round);
    sl_put_f64le(out + 24, r->q);
    sl_put_f64le(out + 32, r->z);
    sl_put_le64(out + 40, r->steps);
    sl_put_le32(out + 48, r->inputs);
    sl_put_le32(out + 52, r->mode);
    checksum(out, out + SUM_OFFSET);
    return 0;
}

/* Decode record i: 0, 1 = checksum mismatch (torn if last), or SL_EFORMAT (a checksummed
 * record that is not a valid one: never a torn write). */
static int decode_record(const uint8_t *b, size_t i, const char *name, sl_ledger_record_t *r)
{
    uint8_t sum[8];
    checksum(b, sum);
    if (memcmp(sum, b + SUM_OFFSET, 8) != 0)
        return 1;
    r->attempt = sl_get_le32(b + 4);
    r->seq = sl_get_le64(b + 8);
    r->round = sl_get_le64(b + 16);
    r->q = sl_get_f64le(b + 24);
    r->z = sl_get_f64le(b + 32);
    r->steps = sl_get_le64(b + 40);
    r->inputs = sl_get_le32(b + 48);
    r->mode = sl_get_le32(b + 52);
    if (memcmp(b, REC_MAGIC, 4) != 0 || r->seq != i || !values_ok(r))
        return sl_error(
            SL_EFORMAT,
            "%s: record %zu is not a valid privacy charge (seq %llu, round %llu, q %g, z %g, steps "
            "%llu, mode %u)",
            name, i, (unsigned long long)r->seq, (unsigned long long)r->round, r->q, r->z,
            (unsigned long long)r->steps, r->mode);
    return 0;
}

int sl_ledger_parse(const uint8_t *buf, size_t len, const char *name, sl_ledger_record_t **recs, size_t *n,
                    size_t *valid_len, int *torn)
{
    *recs = NULL;
    *n = 0;
    *valid_len = 0;
    *torn = 0;
    if (!name)
        name = "privacy ledger";
    uint8_t hdr[SL_LEDGER_HEADER_BYTES];
    sl_ledger_header(hdr);
    if (len < SL_LEDGER_HEADER_BYTES) { /* a crash while the file was being created */
        if (len && memcmp(buf, hdr, len) != 0)
            return sl_error(SL_EFORMAT, "%s: not a starling privacy ledger (%zu bytes, bad header)", name,
                            len);
        *torn = 1;
        SL_WARN("%s: torn header (%zu bytes, a crash while it was created): read as empty", name, len);
        return 0;
    }
    if (memcmp(buf, MAGIC, 8) != 0)
        return sl_error(SL_EFORMAT, "%s: not a starling privacy ledger (bad magic)", name);
    if (sl_get_le32(buf + 8) != VERSION || sl_get_le32(buf + 12) != SL_LEDGER_RECORD_BYTES)
        return sl_error(SL_EFORMAT,
                        "%s: ledger version %u with %u-byte records, this build reads version %u (%d)", name,
                        sl_get_le32(buf + 8), sl_get_le32(buf + 12), VERSION, SL_LEDGER_RECORD_BYTES);
    size_t full = (len - SL_LEDGER_HEADER_BYTES) / SL_LEDGER_RECORD_BYTES;
    size_t rem = (len - SL_LEDGER_HEADER_BYTES) % SL_LEDGER_RECORD_BYTES;
    sl_ledger_record_t *r = full ? malloc(full * sizeof *r) : NULL;
    if (full && !r)
        return sl_error(SL_ENOMEM, "%s: out of memory (%zu records)", name, full);
    size_t good = 0;
    for (size_t i = 0; i < full; i++) {
        int rc = decode_record(buf + SL_LEDGER_HEADER_BYTES + i * SL_LEDGER_RECORD_BYTES, i, name, &r[i]);
        if (rc == 1 && i == full - 1 && rem == 0) { /* the last record, torn by a crash mid-append */
            *torn = 1;
            SL_WARN(
                "%s: last record (%zu) is torn (checksum mismatch, a crash while it was written): ignored; "
                "its charge never took effect",
                name, i);
            break;
        }
        if (rc == 1)
            rc = sl_error(SL_EFORMAT,
                          "%s: record %zu of %zu is corrupt (checksum mismatch); the privacy spent cannot be "
                          "established: refusing it",
                          name, i, full + (rem ? 1 : 0));
        if (rc) {
            free(r);
            return rc;
        }
        good++;
    }
    if (rem) {
        *torn = 1;
        SL_WARN("%s: ends in a partial record (%zu of %d bytes, a crash while it was written): ignored", name,
                rem, SL_LEDGER_RECORD_BYTES);
    }
    if (!good) {
        free(r);
        r = NULL;
    }
    *recs = r;
    *n = good;
    *valid_len = SL_LEDGER_HEADER_BYTES + good * SL_LEDGER_RECORD_BYTES;
    return 0;
}

/* ---- the file ----------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *b, size_t len, const char *path)
{
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, b + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return sl_error(SL_EIO, "%s: write: %s", path, strerror(errno));
        done += (size_t)w;
    }
    return 0;
}

static int sync_fd(int fd, const char *path)
{
    if (fsync(fd) != 0)
        return sl_error(SL_EIO, "%s: fsync: %s", path, strerror(errno));
    return 0;
}

/* The folder's entry for a new file is durable only once the folder is synced. */
static int sync_dir(const char *path)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return sl_error(SL_EINVAL, "privacy ledger: path too long");
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return sl_error(SL_EIO, "%s: open its folder: %s", path, strerror(errno));
    int rc = fsync(dfd) != 0 ? sl_error(SL_EIO, "%s: fsync of its folder: %s", path, strerror(errno)) : 0;
    close(dfd);
    return rc;
}

static int ledger_alloc(sl_ledger_t **out, const char *path)
{
    sl_ledger_t *l = calloc(1, sizeof *l);
    if (l)
        l->path = strdup(path);
    if (!l || !l->path) {
        free(l);
        return sl_error(SL_ENOMEM, "privacy ledger: out of memory");
    }
    l->fd = -1;
    *out = l;
    return 0;
}

/* Read the whole file into *buf (malloc'd); SL_ENOTFOUND if it does not exist. */
static int slurp(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sl_error(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_FILE) {
        rc = sl_error(SL_EFORMAT, "%s: not a regular privacy ledger file", path);
        goto done;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(b);
            rc = sl_error(SL_EIO, "%s: short read", path);
            goto done;
        }
        got += (size_t)r;
    }
    *buf = b;
    *len = n;
done:
    close(fd);
    return rc;
}

int sl_ledger_create(sl_ledger_t **out, const char *path)
{
    *out = NULL;
    sl_ledger_t *l = NULL;
    int rc = ledger_alloc(&l, path);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size > SL_LEDGER_HEADER_BYTES)
        SL_WARN("%s: a fresh run replaces the privacy ledger of an earlier run in this folder", path);
    uint8_t hdr[SL_LEDGER_HEADER_BYTES];
    sl_ledger_header(hdr);
    l->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (l->fd < 0)
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
    if (!rc)
        rc = write_all(l->fd, hdr, sizeof hdr, path);
    if (!rc)
        rc = sync_fd(l->fd, path);
    if (!rc)
        rc = sync_dir(path);
    if (rc) {
        sl_ledger_close(&l);
        return rc;
    }
    *out = l;
    return 0;
}

int sl_ledger_open(sl_ledger_t **out, const char *path)
{
    *out = NULL;
    uint8_t *buf = NULL;
    size_t len = 0, valid = 0;
    int torn = 0;
    int rc = slurp(path, &buf, &len);
    if (rc)
        return rc;
    sl_ledger_t *l = NULL;
    if (!(rc = ledger_alloc(&l, path)))
        rc = sl_ledger_parse(buf, len, path, &l->recs, &l->n, &valid, &torn);
    free(buf);
    if (rc) {
        sl_ledger_close(&l);
        return rc;
    }
    l->cap = l->n;
    l->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (l->fd < 0)
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
    /* cut the torn tail, so new records follow the valid ones; valid == 0 (a header cut short,
     * or an empty file: a crash between creating it and writing the header) gets a header */
    if (!rc && (valid < len || valid == 0)) {
        if (ftruncate(l->fd, (off_t)valid) != 0)
            rc = sl_error(SL_EIO, "%s: truncate the torn tail: %s", path, strerror(errno));
        if (!rc && valid == 0) {
            uint8_t hdr[SL_LEDGER_HEADER_BYTES];
            sl_ledger_header(hdr);
            rc = write_all(l->fd, hdr, sizeof hdr, path);
        }
        if (!rc)
            rc = sync_fd(l->fd, path);
    }
    if (rc) {
        sl_ledger_close(&l);
        return rc;
    }
    *out = l;
    return 0;
}

int sl_ledger_append(sl_ledger_t *l, sl_ledger_record_t *rec)
{
    if (l->broken)
        return sl_error(SL_EIO, "%s: an earlier append failed; no more charges can be recorded", l->path);
    rec->seq = l->n;
    uint8_t b[SL_LEDGER_RECORD_BYTES];
    int rc = sl_ledger_encode_record(rec, b);
    if (rc)
        return rc;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        sl_ledger_record_t *p = realloc(l->recs, cap * sizeof *p);
        if (!p)
            return sl_error(SL_ENOMEM, "%s: out of memory", l->path);
        l->recs = p;
        l->cap = cap;
    }
    if ((rc = write_all(l->fd, b, sizeof b, l->path)) || (rc = sync_fd(l->fd, l->path))) {
        l->broken = 1;
        return rc;
    }
    l->recs[l->n++] = *rec;
    return 0;
}

const sl_ledger_record_t *sl_ledger_records(const sl_ledger_t *l, size_t *n)
{
    *n = l->n;
    return l->recs;
}

const char *sl_ledger_path(const sl_ledger_t *l)
{
    return l->path;
}

void sl_ledger_close(sl_ledger_t **pl)
{
    if (!pl || !*pl)
        return;
    sl_ledger_t *l = *pl;
    if (l->fd >= 0)
        close(l->fd);
    free(l->recs);
    free(l->path);
    free(l);
    *pl = NULL;
}
