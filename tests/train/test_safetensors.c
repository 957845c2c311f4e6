/* core/safetensors: byte-exact round trips, strict rejection of malformed files (each with
 * its own message), and model save/load with name and shape validation. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "support/check.h"

static char tmpdir[256];

static void path_in_tmp(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
}

/* u64 LE length + json + data */
static uint8_t *make_raw(const char *json, const uint8_t *data, size_t dlen, size_t *len)
{
    size_t jl = strlen(json);
    uint8_t *b = malloc(8 + jl + dlen + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(b + 8, json, jl);
    if (dlen)
        memcpy(b + 8 + jl, data, dlen);
    *len = 8 + jl + dlen;
    return b;
}

/* Parse a hand-made file; expect failure `code` with `msg` in the message. */
static void expect_reject(const char *json, size_t dlen, int code, const char *msg)
{
    uint8_t data[64] = {0};
    size_t len;
    uint8_t *b = make_raw(json, data, dlen, &len);
    sl_st_file_t f;
    int rc = sl_st_parse(&f, b, len, "bad.safetensors");
    CHECK_MSG(rc == code, "%s: rc %d, expected %d (%s)", json, rc, code, sl_last_error());
    CHECK_CONTAINS(sl_last_error(), msg);
    CHECK_CONTAINS(sl_last_error(), "bad.safetensors");
    CHECK(f.tensors == NULL && f.values == NULL && f.n_tensors == 0);
    free(b);
}

static void test_round_trip(void)
{
    float a[6] = {1.5f, -2.25f, 3.0f, 0.0f, -0.0f, 1e-30f}, b[4] = {1e30f, -7.0f, 0.125f, 42.0f}, c[1] = {3.25f};
    sl_st_tensor_t t[4] = {
        {.name = "layer.a", .ndim = 2, .shape = {2, 3}, .numel = 6, .data = a},
        {.name = "b", .ndim = 1, .shape = {4}, .numel = 4, .data = b},
        {.name = "scalar", .ndim = 0, .numel = 1, .data = c},
        {.name = "empty", .ndim = 2, .shape = {0, 5}, .numel = 0, .data = NULL},
    };
    sl_st_meta_t meta[2] = {{"format", SL_ST_FORMAT}, {"note", "a \"quoted\" value\n"}};
    char p1[512], p2[512];
    path_in_tmp(p1, sizeof p1, "rt1.safetensors");
    path_in_tmp(p2, sizeof p2, "rt2.safetensors");
    CHECK_EQ(sl_st_write(p1, t, 4, meta, 2), 0);
    sl_st_file_t f;
    CHECK_EQ(sl_st_read(&f, p1), 0);
    CHECK_EQ(f.n_tensors, 4);
    CHECK_EQ(f.n_meta, 2);
    CHECK(strcmp(sl_st_meta_get(&f, "note"), "a \"quoted\" value\n") == 0);
    CHECK(strcmp(sl_st_meta_get(&f, "format"), SL_ST_FORMAT) == 0);
    CHECK(sl_st_meta_get(&f, "nope") == NULL);
    const sl_st_tensor_t *ta = sl_st_find(&f, "layer.a");
    CHECK(ta && ta->ndim == 2 && ta->shape[0] == 2 && ta->shape[1] == 3 && ta->numel == 6);
    CHECK(ta && memcmp(ta->data, a, sizeof a) == 0);
    const sl_st_tensor_t *ts = sl_st_find(&f, "scalar");
    CHECK(ts && ts->ndim == 0 && ts->numel == 1 && ts->data[0] == 3.25f);
    const sl_st_tensor_t *te = sl_st_find(&f, "empty");
    CHECK(te && te->numel == 0 && te->shape[1] == 5);
    CHECK(strcmp(f.tensors[0].name, "layer.a") == 0 && strcmp(f.tensors[3].name, "empty") == 0);
    /* write what we read: the same bytes */
    CHECK_EQ(sl_st_write(p2, f.tensors, f.n_tensors, f.meta, f.n_meta), 0);
    size_t l1 = 0, l2 = 0;
    uint8_t *b1 = slurp(p1, &l1), *b2 = slurp(p2, &l2);
    CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0);
    /* header padded to 8 bytes, little-endian length, data right after */
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b1[i];
    CHECK_EQ(hl % 8, 0);
    CHECK_EQ(l1, 8 + hl + 11 * 4);
    CHECK(b1[8] == '{');
    /* in-memory serialization is the file */
    uint8_t *mem = NULL;
    size_t ml = 0;
    CHECK_EQ(sl_st_serialize(t, 4, meta, 2, &mem, &ml), 0);
    CHECK(ml == l1 && memcmp(mem, b1, ml) == 0);
    /* no temp file left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p1, (long)getpid());
    CHECK(access(tmp, F_OK) != 0);

    /* rejections of the writer */
    sl_st_tensor_t dup[2] = {t[1], t[1]};
    CHECK_EQ(sl_st_write(p2, dup, 2, NULL, 0), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "appears twice");
    sl_st_tensor_t badn = t[0];
    badn.numel = 5;
    CHECK_EQ(sl_st_write(p2, &badn, 1, NULL, 0), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "does not match its shape");
    CHECK_EQ(sl_st_write("/nonexistent-dir/x.safetensors", t, 1, NULL, 0), SL_EIO);

    /* truncated files: inside the length, inside the header, inside the data */
    sl_st_file_t g;
    char pt[512];
    path_in_tmp(pt, sizeof pt, "trunc.safetensors");
    spit(pt, b1, 5);
    CHECK_EQ(sl_st_read(&g, pt), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "truncated file");
    spit(pt, b1, 8 + (size_t)hl - 3);
    CHECK_EQ(sl_st_read(&g, pt), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "truncated header");
    spit(pt, b1, l1 - 4);
    CHECK_EQ(sl_st_read(&g, pt), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "out of bounds");
    CHECK_CONTAINS(sl_last_error(), "truncated file?");
    /* one byte more: trailing garbage */
    uint8_t *longer = malloc(l1 + 1);
    memcpy(longer, b1, l1);
    longer[l1] = 0;
    spit(pt, longer, l1 + 1);
    CHECK_EQ(sl_st_read(&g, pt), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "1 trailing bytes");
    free(longer);
    CHECK_EQ(sl_st_read(&g, "/nonexistent-dir/x.safetensors"), SL_ENOTFOUND);

    free(mem);
    free(b1);
    free(b2);
    sl_st_file_free(&f);
    sl_st_file_free(&f); /* idempotent */
    unlink(p1);
    unlink(p2);
    unlink(pt);
}

static void test_rejections(void)
{
    /* oversized header length */
    uint8_t big[16] = {0};
    const uint64_t huge = 200ull * 1024 * 1024;
    for (int i = 0; i < 8; i++)
        big[i] = (uint8_t)(huge >> (8 * i));
    sl_st_file_t f;
    CHECK_EQ(sl_st_parse(&f, big, sizeof big, "big.safetensors"), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "exceeds the 104857600-byte limit");

    expect_reject("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, SL_ENOTSUP,
                  "tensor 'a': dtype F16 is not supported (only F32)");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8, SL_EFORMAT,
                  "tensor 'a': data_offsets [8, 16) out of bounds: the data has 8 bytes");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                  12, SL_EFORMAT, "tensors 'a' and 'b' overlap");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, SL_EMISMATCH,
                  "tensor 'a': shape [2, 2] needs 16 bytes of F32 but data_offsets [0, 8) span 8");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  12, SL_EFORMAT, "gap of 4 unused data bytes before tensor 'b'");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, SL_EFORMAT,
                  "4 trailing bytes after the last tensor");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, SL_EFORMAT,
                  "not valid JSON");
    expect_reject("[1, 2]", 0, SL_EFORMAT, "does not start with '{'");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, SL_EFORMAT,
                  "bytes after its JSON object");
    expect_reject("{\"__metadata__\":{\"format\":3}}", 0, SL_EFORMAT, "value of 'format' is not a string");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, SL_EFORMAT, "tensor 'a' appears twice");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, SL_EFORMAT,
                  "shape entry 0 is not a non-negative integer");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, SL_EFORMAT,
                  "data_offsets must be two non-negative integers");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, SL_EFORMAT,
                  "end before they begin");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, SL_EFORMAT,
                  "unknown field 'x'");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, SL_EFORMAT, "missing shape");
    expect_reject("{\"a\":[1]}", 4, SL_EFORMAT, "entry is not an object");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                  "\"data_offsets\":[0,4]}}",
                  4, SL_EFORMAT, "shape is too large");
    /* a header that is valid with spaces after it, and an empty file with only metadata */
    size_t len;
    uint8_t data[4] = {0, 0, 128, 63}; /* 1.0f */
    uint8_t *b = make_raw("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ", data, 4, &len);
    CHECK_EQ(sl_st_parse(&f, b, len, "ok"), 0);
    CHECK(f.n_tensors == 1 && f.tensors[0].data[0] == 1.0f);
    sl_st_file_free(&f);
    free(b);
    b = make_raw("{\"__metadata__\":{\"k\":\"v\"}}", NULL, 0, &len);
    CHECK_EQ(sl_st_parse(&f, b, len, "ok"), 0);
    CHECK(f.n_tensors == 0 && f.n_meta == 1);
    sl_st_file_free(&f);
    free(b);
}

/* Random byte flips, truncations and header-length edits of a valid file never crash the
 * parser (run under ASan in CI: exact-size buffers, so any over-read is caught) and every
 * rejection carries a message. */
static void test_mutations(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {7, 8};
    sl_st_tensor_t t[2] = {{.name = "a", .ndim = 2, .shape = {2, 3}, .numel = 6, .data = a},
                           {.name = "b", .ndim = 1, .shape = {2}, .numel = 2, .data = b}};
    sl_st_meta_t meta[1] = {{"format", SL_ST_FORMAT}};
    uint8_t *good = NULL;
    size_t len = 0;
    CHECK_EQ(sl_st_serialize(t, 2, meta, 1, &good, &len), 0);
    sl_rng_t rng;
    sl_rng_init(&rng, 1, "mutate", 0, 0);
    int accepted = 0, rejected = 0, silent = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = len;
        if (iter % 5 == 0)
            n = (size_t)sl_rng_below(&rng, len + 1);
        uint8_t *buf = malloc(n ? n : 1);
        memcpy(buf, good, n);
        int flips = 1 + (int)sl_rng_below(&rng, 3);
        for (int f = 0; f < flips && n > 0; f++) {
            size_t pos = (size_t)sl_rng_below(&rng, n < 200 ? n : 200); /* mostly the header */
            buf[pos] = (uint8_t)sl_rng_u32(&rng);
        }
        sl_error_clear();
        sl_st_file_t f;
        int rc = sl_st_parse(&f, buf, n, "m");
        if (rc == 0) {
            accepted++;
            size_t total = 0;
            for (size_t i = 0; i < f.n_tensors; i++)
                total += f.tensors[i].numel * 4;
            CHECK(8 + total <= n);
            sl_st_file_free(&f);
        } else {
            rejected++;
            silent += sl_last_error()[0] == '\0';
            CHECK(f.tensors == NULL && f.meta == NULL && f.values == NULL);
        }
        free(buf);
    }
    printf("mutations: %d accepted, %d rejected\n", accepted, rejected);
    CHECK(rejected > 1000);
    CHECK_EQ(silent, 0);
    free(good);
}

/* ---- model I/O --------------------------------------------------------------------------- */

static sl_schema_t schema(void)
{
    sl_schema_t s;
    memset(&s, 0, sizeof s);
    s.n_modalities = 2;
    s.n_classes = 4;
    snprintf(s.modalities[0].name, SL_NAME_MAX, "acc");
    s.modalities[0].kind = SL_MOD_TIMESERIES;
    s.modalities[0].dims[0] = 32;
    s.modalities[0].dims[1] = 3;
    snprintf(s.modalities[1].name, SL_NAME_MAX, "gyro");
    s.modalities[1].kind = SL_MOD_TIMESERIES;
    s.modalities[1].dims[0] = 32;
    s.modalities[1].dims[1] = 3;
    return s;
}

static void small_config(sl_config_t *cfg, const char *mode, int64_t seed)
{
    sl_config_defaults(cfg);
    cfg->model.d_model = 16;
    cfg->model.layers = 1;
    cfg->model.heads = 2;
    cfg->model.patch_len = 8;
    cfg->run.seed = seed;
    CHECK_EQ(sl_config_set_value(cfg, "train", "mode", mode), 0);
}

static int same_params(sl_model_t *a, sl_model_t *b, int trainable_only)
{
    size_t na, nb;
    const float *pa = trainable_only ? sl_model_trainable(a, &na) : sl_model_param_data(a, &na);
    const float *pb = trainable_only ? sl_model_trainable(b, &nb) : sl_model_param_data(b, &nb);
    return na == nb && memcmp(pa, pb, na * sizeof(float)) == 0;
}

static void test_model_io(void)
{
    sl_schema_t s = schema();
    sl_config_t c1, c2;
    small_config(&c1, "lora", 1);
    small_config(&c2, "lora", 2);
    sl_model_t *m1 = NULL, *m2 = NULL, *m3 = NULL;
    CHECK_EQ(sl_model_new(&m1, &c1, &s), 0);
    CHECK_EQ(sl_model_new(&m2, &c2, &s), 0);
    if (!m1 || !m2)
        return;
    /* make the LoRA B's non-zero so the adapter round trip is not trivially zero */
    size_t nt;
    float *tr = sl_model_trainable(m1, &nt);
    for (size_t i = 0; i < nt; i++)
        tr[i] += 0.001f * (float)(i % 17);
    CHECK(!same_params(m1, m2, 0));
    char pf[512], pa[512], pf2[512];
    path_in_tmp(pf, sizeof pf, "full.safetensors");
    path_in_tmp(pa, sizeof pa, "adapter.safetensors");
    path_in_tmp(pf2, sizeof pf2, "full2.safetensors");
    CHECK_EQ(sl_model_save(m1, pf, 0), 0);
    CHECK_EQ(sl_model_save(m1, pa, 1), 0);
    /* adapter only: trainable parts equal, frozen still m2's */
    CHECK_EQ(sl_model_load(m2, pa), 0);
    CHECK(same_params(m1, m2, 1));
    CHECK(!same_params(m1, m2, 0));
    CHECK_EQ(sl_model_load(m2, pf), 0);
    CHECK(same_params(m1, m2, 0));
    /* save of a loaded model: byte-identical file */
    CHECK_EQ(sl_model_save(m2, pf2, 0), 0);
    size_t l1, l2;
    uint8_t *b1 = slurp(pf, &l1), *b2 = slurp(pf2, &l2);
    CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0);
    free(b1);
    free(b2);
    sl_st_file_t f;
    CHECK_EQ(sl_st_read(&f, pa), 0);
    CHECK(strcmp(sl_st_meta_get(&f, "format"), "starling-v1") == 0);
    CHECK(strcmp(sl_st_meta_get(&f, "content"), "trainable") == 0);
    CHECK(strcmp(sl_st_meta_get(&f, "model.d_model"), "16") == 0);
    CHECK(strcmp(sl_st_meta_get(&f, "train.mode"), "lora") == 0);
    CHECK(strcmp(sl_st_meta_get(&f, "schema.modalities"), "acc:timeseries:32x3,gyro:timeseries:32x3") == 0);
    CHECK(sl_st_find(&f, "head.weight") != NULL);
    CHECK(sl_st_find(&f, "blocks.0.attn.q.lora_A") != NULL);
    CHECK(sl_st_find(&f, "cls") == NULL);
    sl_st_file_free(&f);

    /* the config in the metadata rebuilds the same architecture */
    sl_config_t c3;
    sl_config_defaults(&c3);
    CHECK_EQ(sl_model_file_config(pf, &c3), 0);
    CHECK_EQ(c3.model.d_model, 16);
    CHECK_EQ(c3.model.layers, 1);
    CHECK_EQ(c3.model.patch_len, 8);
    CHECK_EQ(c3.train.mode, SL_TRAIN_LORA);

    /* a model with another width: shape mismatch naming the tensor */
    sl_config_t cw;
    small_config(&cw, "lora", 1);
    cw.model.d_model = 32;
    CHECK_EQ(sl_model_new(&m3, &cw, &s), 0);
    CHECK_EQ(sl_model_load(m3, pf), SL_EMISMATCH);
    CHECK_CONTAINS(sl_last_error(), "has shape [16");
    CHECK_CONTAINS(sl_last_error(), "in the file but [32");
    sl_model_destroy(&m3);
    /* a LoRA file into a full-mode model (no LoRA tensors): unknown tensor */
    sl_config_t cf;
    small_config(&cf, "full", 1);
    CHECK_EQ(sl_model_new(&m3, &cf, &s), 0);
    CHECK_EQ(sl_model_load(m3, pa), SL_ENOTFOUND);
    CHECK_CONTAINS(sl_last_error(), "lora_");
    CHECK_CONTAINS(sl_last_error(), "does not exist in this model");
    size_t loaded = 0, skipped = 0;
    CHECK_EQ(sl_model_load_ex(m3, pf, SL_LOAD_SKIP_UNKNOWN, &loaded, &skipped), 0);
    CHECK(loaded > 0 && skipped > 0);
    sl_model_destroy(&m3);
    /* another class count: the head mismatches, SKIP_MISMATCHED loads the rest */
    sl_schema_t s6 = s;
    s6.n_classes = 6;
    CHECK_EQ(sl_model_new(&m3, &c2, &s6), 0);
    CHECK_EQ(sl_model_load(m3, pf), SL_EMISMATCH);
    CHECK_CONTAINS(sl_last_error(), "'head.");
    CHECK_EQ(sl_model_load_ex(m3, pf, SL_LOAD_SKIP_MISMATCHED, &loaded, &skipped), 0);
    CHECK_EQ(skipped, 2);
    sl_model_destroy(&m3);

    /* a plain safetensors file without our format tag is refused */
    float one = 1.0f;
    sl_st_tensor_t t = {.name = "cls", .ndim = 1, .shape = {1}, .numel = 1, .data = &one};
    CHECK_EQ(sl_st_write(pf2, &t, 1, NULL, 0), 0);
    CHECK_EQ(sl_model_load(m1, pf2), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "not a starling model file");
    sl_st_meta_t other = {"format", "pt"};
    CHECK_EQ(sl_st_write(pf2, &t, 1, &other, 1), 0);
    CHECK_EQ(sl_model_load(m1, pf2), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "format \"pt\" is not supported");

    sl_model_destroy(&m1);
    sl_model_destroy(&m2);
    unlink(pf);
    unlink(pa);
    unlink(pf2);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sl_test_st_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_rejections();
    test_mutations();
    test_model_io();
    rmdir(tmpdir);
    return check_summary("test_safetensors");
}
