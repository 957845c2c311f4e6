#include "core/safetensors.h"

#include "core/bytes.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_JSON_INT 9007199254740992.0 /* 2^53: larger offsets are not exact in JSON */

/* ---- little-endian floats ----------------------------------------------------------------- */

static void floats_to_le(uint8_t *dst, const float *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        u = __builtin_bswap32(u);
        memcpy(dst + 4 * i, &u, 4);
    }
#else
    if (n)
        memcpy(dst, src, n * 4);
#endif
}

static void floats_from_le(float *dst, const uint8_t *src, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, src + 4 * i, 4);
        u = __builtin_bswap32(u);
        memcpy(&dst[i], &u, 4);
    }
#else
    if (n)
        memcpy(dst, src, n * 4);
#endif
}

const char *sl_st_shape_str(const size_t *shape, size_t ndim, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap == 0)
        return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (size_t i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%zu", i ? ", " : "", shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}

/* numel of a shape, or 0 with *overflow set when it does not fit. */
static size_t shape_numel(const size_t *shape, size_t ndim, int *overflow)
{
    size_t n = 1;
    *overflow = 0;
    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] && n > SIZE_MAX / 4 / shape[i]) {
            *overflow = 1;
            return 0;
        }
        n *= shape[i];
    }
    return n;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int check_tensors(const sl_st_tensor_t *t, size_t n, const sl_st_meta_t *meta, size_t n_meta)
{
    for (size_t i = 0; i < n; i++) {
        if (t[i].name[0] == '\0' || memchr(t[i].name, '\0', SL_ST_NAME_MAX) == NULL)
            return sl_error(SL_EINVAL, "safetensors: tensor %zu has no name or an unterminated one", i);
        if (strcmp(t[i].name, "__metadata__") == 0)
            return sl_error(SL_EINVAL, "safetensors: a tensor may not be called __metadata__");
        if (t[i].ndim > SL_ST_MAX_DIMS)
            return sl_error(SL_EINVAL, "safetensors: tensor '%s' has %zu dims (max %d)", t[i].name, t[i].ndim,
                            SL_ST_MAX_DIMS);
        int overflow;
        size_t numel = shape_numel(t[i].shape, t[i].ndim, &overflow);
        if (overflow || numel != t[i].numel)
            return sl_error(SL_EINVAL, "safetensors: tensor '%s': numel %zu does not match its shape", t[i].name,
                            t[i].numel);
        if (numel && !t[i].data)
            return sl_error(SL_EINVAL, "safetensors: tensor '%s' has no data", t[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0)
                return sl_error(SL_EINVAL, "safetensors: tensor name '%s' appears twice", t[i].name);
    }
    for (size_t i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return sl_error(SL_EINVAL, "safetensors: metadata entry %zu has no key or value", i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return sl_error(SL_EINVAL, "safetensors: metadata key '%s' appears twice", meta[i].key);
    }
    return 0;
}

int sl_st_serialize(const sl_st_tensor_t *tensors, size_t n, const sl_st_meta_t *meta, size_t n_meta,
                    uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int rc = check_tensors(tensors, n, meta, n_meta);
    if (rc)
        return rc;
    cJSON *root = cJSON_CreateObject();
    char *json = NULL;
    uint8_t *buf = NULL;
    if (!root)
        goto oom;
    if (n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        if (!m)
            goto oom;
        for (size_t i = 0; i < n_meta; i++)
            if (!cJSON_AddStringToObject(m, meta[i].key, meta[i].value))
                goto oom;
    }
    size_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, tensors[i].name);
        if (!t || !cJSON_AddStringToObject(t, "dtype", "F32"))
            goto oom;
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        if (!shape)
            goto oom;
        for (size_t d = 0; d < tensors[i].ndim; d++) {
            cJSON *v = cJSON_CreateNumber((double)tensors[i].shape[d]);
            if (!v || !cJSON_AddItemToArray(shape, v))
                goto oom;
        }
        size_t bytes = tensors[i].numel * 4;
        if ((double)(offset + bytes) >= MAX_JSON_INT) {
            cJSON_Delete(root);
            return sl_error(SL_ERANGE, "safetensors: data larger than 2^53 bytes");
        }
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON *b = cJSON_CreateNumber((double)offset), *e = cJSON_CreateNumber((double)(offset + bytes));
        if (!offs || !b || !e || !cJSON_AddItemToArray(offs, b) || !cJSON_AddItemToArray(offs, e)) {
            cJSON_Delete(b);
            cJSON_Delete(e);
            goto oom;
        }
        offset += bytes;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json)
        goto oom;
    size_t jlen = strlen(json);
    size_t hlen = (jlen + 7) / 8 * 8; /* pad with spaces so the data is 8-byte aligned */
    if (hlen > SL_ST_MAX_HEADER) {
        rc = sl_error(SL_ERANGE, "safetensors: header of %zu bytes exceeds the %u-byte limit", hlen,
                      SL_ST_MAX_HEADER);
        goto cleanup;
    }
    size_t total = 8 + hlen + offset;
    buf = malloc(total ? total : 1);
    if (!buf)
        goto oom;
    sl_put_le64(buf, hlen);
    memcpy(buf + 8, json, jlen);
    memset(buf + 8 + jlen, ' ', hlen - jlen);
    uint8_t *data = buf + 8 + hlen;
    for (size_t i = 0; i < n; i++) {
        floats_to_le(data, tensors[i].data, tensors[i].numel);
        data += tensors[i].numel * 4;
    }
    *out = buf;
    *len = total;
    buf = NULL;
    rc = 0;
    goto cleanup;
oom:
    rc = sl_error(SL_ENOMEM, "safetensors: out of memory building the header");
cleanup:
    free(buf);
    if (json)
        cJSON_free(json);
    cJSON_Delete(root);
    return rc;
}

/* fsync the folder holding `path` so the rename itself is durable. */
static void sync_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

int sl_st_write(const char *path, const sl_st_tensor_t *tensors, size_t n, const sl_st_meta_t *meta, size_t n_meta)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sl_st_serialize(tensors, n, meta, n_meta, &buf, &len);
    if (rc)
        return sl_error_wrap(rc, "%s", path);
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    int fd = -1;
    if (!tmp) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sl_error(SL_EIO, "%s: cannot create (%s)", tmp, strerror(errno));
        goto cleanup;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = sl_error(SL_EIO, "%s: write failed (%s)", tmp, strerror(errno));
            goto cleanup;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = sl_error(SL_EIO, "%s: fsync failed (%s)", tmp, strerror(errno));
        goto cleanup;
    }
    int crc = close(fd);
    fd = -1;
    if (crc != 0) {
        rc = sl_error(SL_EIO, "%s: close failed (%s)", tmp, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        rc = sl_error(SL_EIO, "%s: cannot rename %s into place (%s)", path, tmp, strerror(errno));
        goto cleanup;
    }
    sync_parent(path);
    rc = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    if (rc && tmp)
        unlink(tmp);
    free(tmp);
    free(buf);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------ */

void sl_st_file_free(sl_st_file_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->meta);
    free(f->tensors);
    free(f->values);
    memset(f, 0, sizeof *f);
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_size(const cJSON *v, size_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0) || d >= MAX_JSON_INT || d != (double)(uint64_t)d)
        return -1;
    if ((uint64_t)d > SIZE_MAX)
        return -1;
    *out = (size_t)d;
    return 0;
}

typedef struct {
    size_t begin, end, index;
} span_t;

static int span_cmp(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int parse_meta(sl_st_file_t *f, const cJSON *m, const char *name)
{
    if (!cJSON_IsObject(m))
        return sl_error(SL_EFORMAT, "%s: __metadata__ is not an object", name);
    size_t count = (size_t)cJSON_GetArraySize(m);
    f->meta = calloc(count ? count : 1, sizeof *f->meta);
    if (!f->meta)
        return sl_error(SL_ENOMEM, "%s: out of memory", name);
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->string)
            return sl_error(SL_EFORMAT, "%s: __metadata__ value of '%s' is not a string", name,
                            e->string ? e->string : "?");
        for (size_t j = 0; j < f->n_meta; j++)
            if (strcmp(f->meta[j].key, e->string) == 0)
                return sl_error(SL_EFORMAT, "%s: __metadata__ key '%s' appears twice", name, e->string);
        sl_st_meta_t *kv = &f->meta[f->n_meta];
        kv->key = strdup(e->string);
        kv->value = strdup(e->valuestring);
        f->n_meta++;
        if (!kv->key || !kv->value)
            return sl_error(SL_ENOMEM, "%s: out of memory", name);
    }
    return 0;
}

static int parse_tensor(sl_st_tensor_t *t, span_t *span, const cJSON *e, const char *name)
{
    const char *tn = e->string;
    if (strlen(tn) == 0 || strlen(tn) >= SL_ST_NAME_MAX)
        return sl_error(SL_EFORMAT, "%s: tensor name of %zu bytes (expected 1..%d)", name, strlen(tn),
                        SL_ST_NAME_MAX - 1);
    snprintf(t->name, sizeof t->name, "%s", tn);
    if (!cJSON_IsObject(e))
        return sl_error(SL_EFORMAT, "%s: tensor '%s': entry is not an object", name, tn);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *f = e->child; f; f = f->next) {
        const cJSON **slot = NULL;
        if (strcmp(f->string, "dtype") == 0)
            slot = &dtype;
        else if (strcmp(f->string, "shape") == 0)
            slot = &shape;
        else if (strcmp(f->string, "data_offsets") == 0)
            slot = &offs;
        else
            return sl_error(SL_EFORMAT, "%s: tensor '%s': unknown field '%s'", name, tn, f->string);
        if (*slot)
            return sl_error(SL_EFORMAT, "%s: tensor '%s': field '%s' appears twice", name, tn, f->string);
        *slot = f;
    }
    if (!dtype || !shape || !offs)
        return sl_error(SL_EFORMAT, "%s: tensor '%s': missing %s", name, tn,
                        !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dtype))
        return sl_error(SL_EFORMAT, "%s: tensor '%s': dtype is not a string", name, tn);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return sl_error(SL_ENOTSUP, "%s: tensor '%s': dtype %s is not supported (only F32)", name, tn,
                        dtype->valuestring);
    if (!cJSON_IsArray(shape))
        return sl_error(SL_EFORMAT, "%s: tensor '%s': shape is not an array", name, tn);
    int nd = cJSON_GetArraySize(shape);
    if (nd > SL_ST_MAX_DIMS)
        return sl_error(SL_EFORMAT, "%s: tensor '%s': %d dims (max %d)", name, tn, nd, SL_ST_MAX_DIMS);
    t->ndim = 0;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (json_size(d, &t->shape[t->ndim]) != 0)
            return sl_error(SL_EFORMAT, "%s: tensor '%s': shape entry %zu is not a non-negative integer", name,
                            tn, t->ndim);
        t->ndim++;
    }
    int overflow;
    t->numel = shape_numel(t->shape, t->ndim, &overflow);
    if (overflow)
        return sl_error(SL_EFORMAT, "%s: tensor '%s': shape is too large", name, tn);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_size(offs->child, &span->begin) != 0 ||
        json_size(offs->child->next, &span->end) != 0)
        return sl_error(SL_EFORMAT, "%s: tensor '%s': data_offsets must be two non-negative integers", name, tn);
    if (span->end < span->begin)
        return sl_error(SL_EFORMAT, "%s: tensor '%s': data_offsets [%zu, %zu) end before they begin", name, tn,
                        span->begin, span->end);
    char sbuf[128];
    if (span->end - span->begin != t->numel * 4)
        return sl_error(SL_EMISMATCH,
                        "%s: tensor '%s': shape %s needs %zu bytes of F32 but data_offsets [%zu, %zu) span %zu",
                        name, tn, sl_st_shape_str(t->shape, t->ndim, sbuf, sizeof sbuf), t->numel * 4,
                        span->begin, span->end, span->end - span->begin);
    return 0;
}

int sl_st_parse(sl_st_file_t *out, const uint8_t *buf, size_t len, const char *name)
{
    memset(out, 0, sizeof *out);
    if (len < 8)
        return sl_error(SL_EFORMAT, "%s: truncated file: %zu bytes, no header length", name, len);
    uint64_t hlen = sl_get_le64(buf);
    if (hlen > SL_ST_MAX_HEADER)
        return sl_error(SL_EFORMAT, "%s: header length %llu exceeds the %u-byte limit (not a safetensors file?)",
                        name, (unsigned long long)hlen, SL_ST_MAX_HEADER);
    if (hlen < 2)
        return sl_error(SL_EFORMAT, "%s: header length %llu is too small", name, (unsigned long long)hlen);
    if (hlen > len - 8)
        return sl_error(SL_EFORMAT, "%s: truncated header: the header says %llu bytes, the file has %zu after "
                                    "the length", name, (unsigned long long)hlen, len - 8);
    const char *json = (const char *)buf + 8;
    if (json[0] != '{')
        return sl_error(SL_EFORMAT, "%s: header does not start with '{'", name);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    span_t *spans = NULL;
    int rc = 0;
    if (!root) {
        rc = sl_error(SL_EFORMAT, "%s: header is not valid JSON (near byte %zu)", name,
                      (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0) + 8);
        goto fail;
    }
    for (const char *p = end; p < json + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = sl_error(SL_EFORMAT, "%s: header has bytes after its JSON object", name);
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        rc = sl_error(SL_EFORMAT, "%s: header is not a JSON object", name);
        goto fail;
    }
    size_t count = (size_t)cJSON_GetArraySize(root);
    out->tensors = calloc(count ? count : 1, sizeof *out->tensors);
    spans = calloc(count ? count : 1, sizeof *spans);
    if (!out->tensors || !spans) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    int seen_meta = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                rc = sl_error(SL_EFORMAT, "%s: __metadata__ appears twice", name);
                goto fail;
            }
            if ((rc = parse_meta(out, e, name)) != 0)
                goto fail;
            continue;
        }
        size_t k = out->n_tensors;
        for (size_t j = 0; j < k; j++)
            if (strcmp(out->tensors[j].name, e->string) == 0) {
                rc = sl_error(SL_EFORMAT, "%s: tensor '%s' appears twice", name, e->string);
                goto fail;
            }
        if ((rc = parse_tensor(&out->tensors[k], &spans[k], e, name)) != 0)
            goto fail;
        spans[k].index = k;
        out->n_tensors++;
    }
    const uint8_t *data = buf + 8 + hlen;
    size_t dlen = len - 8 - (size_t)hlen;
    for (size_t i = 0; i < out->n_tensors; i++)
        if (spans[i].end > dlen) {
            rc = sl_error(SL_EFORMAT,
                          "%s: tensor '%s': data_offsets [%zu, %zu) out of bounds: the data has %zu bytes "
                          "(truncated file?)",
                          name, out->tensors[i].name, spans[i].begin, spans[i].end, dlen);
            goto fail;
        }
    qsort(spans, out->n_tensors, sizeof *spans, span_cmp);
    size_t pos = 0;
    for (size_t i = 0; i < out->n_tensors; i++) {
        const char *tn = out->tensors[spans[i].index].name;
        if (spans[i].begin < pos) {
            rc = sl_error(SL_EFORMAT, "%s: tensors '%s' and '%s' overlap (data_offsets [%zu, %zu) and [%zu, %zu))",
                          name, out->tensors[spans[i - 1].index].name, tn, spans[i - 1].begin, spans[i - 1].end,
                          spans[i].begin, spans[i].end);
            goto fail;
        }
        if (spans[i].begin > pos) {
            rc = sl_error(SL_EFORMAT, "%s: gap of %zu unused data bytes before tensor '%s'", name,
                          spans[i].begin - pos, tn);
            goto fail;
        }
        pos = spans[i].end;
    }
    if (pos != dlen) {
        rc = sl_error(SL_EFORMAT, "%s: %zu trailing bytes after the last tensor", name, dlen - pos);
        goto fail;
    }
    /* Reorder tensors into data order and copy their values out (aligned, host order). */
    sl_st_tensor_t *ordered = calloc(out->n_tensors ? out->n_tensors : 1, sizeof *ordered);
    out->values = malloc(dlen ? dlen : 1);
    if (!ordered || !out->values) {
        free(ordered);
        rc = sl_error(SL_ENOMEM, "%s: out of memory for %zu data bytes", name, dlen);
        goto fail;
    }
    floats_from_le(out->values, data, dlen / 4);
    for (size_t i = 0; i < out->n_tensors; i++) {
        ordered[i] = out->tensors[spans[i].index];
        ordered[i].data = out->values + spans[i].begin / 4;
    }
    free(out->tensors);
    out->tensors = ordered;
    free(spans);
    cJSON_Delete(root);
    return 0;
fail:
    free(spans);
    cJSON_Delete(root);
    sl_st_file_free(out);
    return rc;
}

int sl_st_read(sl_st_file_t *out, const char *path)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sl_error(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    uint8_t *buf = NULL;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = sl_error(SL_EIO, "%s: not a regular file", path);
        goto cleanup;
    }
    size_t len = (size_t)st.st_size;
    buf = malloc(len ? len : 1);
    if (!buf) {
        rc = sl_error(SL_ENOMEM, "%s: cannot allocate %zu bytes", path, len);
        goto cleanup;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t r = read(fd, buf + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = sl_error(SL_EIO, "%s: read failed (%s)", path, strerror(errno));
            goto cleanup;
        }
        if (r == 0)
            break; /* shrank under us: parse what is there */
        done += (size_t)r;
    }
    rc = sl_st_parse(out, buf, done, path);
cleanup:
    free(buf);
    close(fd);
    return rc;
}

const sl_st_tensor_t *sl_st_find(const sl_st_file_t *f, const char *name)
{
    for (size_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *sl_st_meta_get(const sl_st_file_t *f, const char *key)
{
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* ---- model I/O ---------------------------------------------------------------------------- */

#define META_MAX 24
#define META_VAL 320

typedef struct {
    char key[64];
    char value[META_VAL];
} meta_buf_t;

/* The architecture keys that decide the model's tensors, as config text. */
static size_t model_meta(const sl_model_t *m, meta_buf_t *out, const char *content)
{
    const sl_config_t *c = sl_model_config(m);
    const sl_schema_t *s = sl_model_schema(m);
    size_t n = 0;
#define PUT(k, ...)                                                                                     \
    do {                                                                                                \
        snprintf(out[n].key, sizeof out[n].key, "%s", k);                                              \
        snprintf(out[n].value, sizeof out[n].value, __VA_ARGS__);                                       \
        n++;                                                                                            \
    } while (0)
    PUT("format", "%s", SL_ST_FORMAT);
    PUT("content", "%s", content);
    PUT("model.d_model", "%lld", (long long)c->model.d_model);
    PUT("model.layers", "%lld", (long long)c->model.layers);
    PUT("model.heads", "%lld", (long long)c->model.heads);
    PUT("model.mlp_ratio", "%lld", (long long)c->model.mlp_ratio);
    PUT("model.patch_len", "%lld", (long long)c->model.patch_len);
    PUT("model.image_patch", "%lld", (long long)c->model.image_patch);
    PUT("model.vector_group", "%lld", (long long)c->model.vector_group);
    PUT("model.text_max_len", "%lld", (long long)c->model.text_max_len);
    const char *pool = sl_config_enum_name("model", "pooling", c->model.pooling);
    PUT("model.pooling", "%s", pool ? pool : "cls");
    PUT("model.lora_rank", "%lld", (long long)c->model.lora_rank);
    PUT("model.lora_alpha", "%.17g", c->model.lora_alpha);
    PUT("model.lora_targets", "%s", c->model.lora_targets);
    const char *mode = sl_config_enum_name("train", "mode", c->train.mode);
    PUT("train.mode", "%s", mode ? mode : "?");
    PUT("schema.n_classes", "%zu", s->n_classes);
    char mods[META_VAL] = "";
    size_t used = 0;
    for (size_t i = 0; i < s->n_modalities && used < sizeof mods; i++) {
        const sl_modality_t *md = &s->modalities[i];
        size_t nd = md->kind == SL_MOD_TIMESERIES ? 2 : md->kind == SL_MOD_IMAGE ? 3 : 1;
        used += (size_t)snprintf(mods + used, sizeof mods - used, "%s%s:%s:", i ? "," : "", md->name,
                                 sl_modality_kind_name(md->kind));
        for (size_t d = 0; d < nd && used < sizeof mods; d++)
            used += (size_t)snprintf(mods + used, sizeof mods - used, "%s%zu", d ? "x" : "", md->dims[d]);
    }
    PUT("schema.modalities", "%s", mods);
#undef PUT
    return n;
}

int sl_model_save(sl_model_t *m, const char *path, int trainable_only)
{
    size_t count = 0;
    const sl_param_info_t *p = sl_model_params(m, &count);
    sl_st_tensor_t *t = calloc(count ? count : 1, sizeof *t);
    if (!t)
        return sl_error(SL_ENOMEM, "%s: out of memory", path);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (trainable_only && !p[i].trainable)
            continue;
        snprintf(t[n].name, sizeof t[n].name, "%s", p[i].name);
        t[n].ndim = p[i].ndim;
        for (size_t d = 0; d < p[i].ndim && d < 4; d++)
            t[n].shape[d] = p[i].shape[d];
        t[n].numel = p[i].numel;
        t[n].data = sl_model_param_ptr(m, i);
        n++;
    }
    meta_buf_t mb[META_MAX];
    sl_st_meta_t meta[META_MAX];
    size_t nm = model_meta(m, mb, trainable_only ? "trainable" : "full");
    for (size_t i = 0; i < nm; i++) {
        meta[i].key = mb[i].key;
        meta[i].value = mb[i].value;
    }
    int rc = sl_st_write(path, t, n, meta, nm);
    free(t);
    return rc;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static int check_format(const sl_st_file_t *f, const char *path)
{
    const char *fmt = sl_st_meta_get(f, "format");
    if (!fmt)
        return sl_error(SL_EFORMAT, "%s: not a starling model file (no __metadata__ \"format\")", path);
    if (strcmp(fmt, SL_ST_FORMAT) != 0)
        return sl_error(SL_EFORMAT, "%s: format \"%s\" is not supported (expected \"%s\")", path, fmt,
                        SL_ST_FORMAT);
    return 0;
}

int sl_model_load_ex(sl_model_t *m, const char *path, unsigned flags, size_t *loaded, size_t *skipped)
{
    sl_st_file_t f;
    int rc = sl_st_read(&f, path);
    if (rc)
        return rc;
    size_t count = 0, n_loaded = 0, n_skipped = 0, dummy;
    const sl_param_info_t *p = sl_model_params(m, &count);
    const int is_clone = sl_model_param_data(m, &dummy) == NULL;
    size_t *target = calloc(f.n_tensors ? f.n_tensors : 1, sizeof *target);
    if (!target) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    if ((rc = check_format(&f, path)) != 0)
        goto cleanup;
    char fs[128], ms[128];
    /* validate everything first, so a bad file leaves m untouched */
    for (size_t i = 0; i < f.n_tensors; i++) {
        const sl_st_tensor_t *t = &f.tensors[i];
        target[i] = SIZE_MAX;
        size_t j = 0;
        while (j < count && strcmp(p[j].name, t->name) != 0)
            j++;
        if (j == count) {
            if (flags & SL_LOAD_SKIP_UNKNOWN) {
                n_skipped++;
                continue;
            }
            rc = sl_error(SL_ENOTFOUND, "%s: tensor '%s' does not exist in this model (different config or "
                                        "train.mode?)", path, t->name);
            goto cleanup;
        }
        int same = t->ndim == p[j].ndim && t->numel == p[j].numel;
        for (size_t d = 0; same && d < t->ndim; d++)
            same = t->shape[d] == p[j].shape[d];
        if (!same) {
            if (flags & SL_LOAD_SKIP_MISMATCHED) {
                n_skipped++;
                continue;
            }
            rc = sl_error(SL_EMISMATCH, "%s: tensor '%s' has shape %s in the file but %s in the model", path,
                          t->name, sl_st_shape_str(t->shape, t->ndim, fs, sizeof fs),
                          sl_st_shape_str(p[j].shape, p[j].ndim, ms, sizeof ms));
            goto cleanup;
        }
        if ((flags & SL_LOAD_FROZEN_ONLY) && p[j].trainable) {
            n_skipped++;
            continue;
        }
        if (is_clone && !p[j].trainable) {
            rc = sl_error(SL_ESTATE, "%s: tensor '%s' is frozen and shared with the clone's base; load it into "
                                     "the base model", path, t->name);
            goto cleanup;
        }
        if (!all_finite(t->data, t->numel)) {
            rc = sl_error(SL_ENOTFINITE, "%s: tensor '%s' holds a NaN or infinity", path, t->name);
            goto cleanup;
        }
        target[i] = j;
    }
    for (size_t i = 0; i < f.n_tensors; i++) {
        if (target[i] == SIZE_MAX)
            continue;
        if (f.tensors[i].numel)
            memcpy(sl_model_param_ptr(m, target[i]), f.tensors[i].data, f.tensors[i].numel * sizeof(float));
        n_loaded++;
    }
    if (loaded)
        *loaded = n_loaded;
    if (skipped)
        *skipped = n_skipped;
    rc = 0;
cleanup:
    free(target);
    sl_st_file_free(&f);
    return rc;
}

int sl_model_load(sl_model_t *m, const char *path)
{
    return sl_model_load_ex(m, path, 0, NULL, NULL);
}

int sl_model_file_config(const char *path, sl_config_t *cfg)
{
    sl_st_file_t f;
    int rc = sl_st_read(&f, path);
    if (rc)
        return rc;
    if ((rc = check_format(&f, path)) != 0)
        goto cleanup;
    for (size_t i = 0; i < f.n_meta; i++) {
        const char *k = f.meta[i].key;
        const char *dot = strchr(k, '.');
        if (!dot || (strncmp(k, "model.", 6) != 0 && strcmp(k, "train.mode") != 0))
            continue;
        char section[16];
        size_t sl = (size_t)(dot - k);
        if (sl >= sizeof section)
            continue;
        memcpy(section, k, sl);
        section[sl] = '\0';
        if ((rc = sl_config_set_value(cfg, section, dot + 1, f.meta[i].value)) != 0) {
            rc = sl_error_wrap(rc, "%s: metadata", path);
            goto cleanup;
        }
    }
cleanup:
    sl_st_file_free(&f);
    return rc;
}
