/* coordinator/ledger: the write-ahead privacy ledger's file format.
 *   - known answer: every field at its documented offset, the checksum recomputed here
 *     (BLAKE2b-128 of bytes 0..55, first 8 bytes);
 *   - round trip: records appended, the file read back, every value bit-exact, and the file
 *     re-encoded from the parsed records byte-exact;
 *   - torn tail: every partial last record (1..63 bytes) and a zero-filled full one are
 *     ignored; open cuts them off and the next append follows the valid records;
 *   - every truncation of a valid file is accepted with the complete records before it;
 *   - a corrupt record in the middle is refused, naming the file and the record index;
 *   - mutation loop: every byte XOR 0x01 / 0x80 / 0xff: never a crash; header bytes and
 *     records before the last are errors, the last record reads as torn (exact counts);
 *   - invalid values are refused at encode; a missing file is SL_ENOTFOUND. */
#include "coordinator/ledger.h"
#include "core/bytes.h"
#include "core/log.h"
#include "support/check.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NREC 5

static char dir[64];

static const sl_ledger_record_t samples[NREC] = {
    {.round = 1, .attempt = 0, .inputs = 12, .mode = 2, .q = 1.0, .z = 1.3471, .steps = 1},
    {.round = 2, .attempt = 0, .inputs = 9, .mode = 2, .q = 0.25, .z = 0.1 + 0.2, .steps = 1},
    {.round = 2, .attempt = 1, .inputs = 40, .mode = 3, .q = 1.0 / 3.0, .z = 0.0, .steps = 3},
    {.round = 0xfffffffffULL,
     .attempt = 7,
     .inputs = 4000000000u,
     .mode = 1,
     .q = 0.0,
     .z = 1e300,
     .steps = 1},
    {.round = 4, .attempt = 0, .inputs = 1, .mode = 2, .q = 4.9e-324, .z = 5e-324, .steps = UINT64_MAX},
};

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    CHECK(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(b, 1, len, f) == len);
    fclose(f);
}

static int same_record(const sl_ledger_record_t *a, const sl_ledger_record_t *b)
{
    return a->seq == b->seq && a->round == b->round && a->attempt == b->attempt && a->inputs == b->inputs &&
           a->mode == b->mode && memcmp(&a->q, &b->q, 8) == 0 && memcmp(&a->z, &b->z, 8) == 0 &&
           a->steps == b->steps;
}

/* A ledger of the NREC samples at path; returns its bytes. */
static uint8_t *make_ledger(const char *path, size_t *len)
{
    sl_ledger_t *l = NULL;
    CHECK_MSG(sl_ledger_create(&l, path) == 0, "create: %s", sl_last_error());
    for (size_t i = 0; i < NREC; i++) {
        sl_ledger_record_t r = samples[i];
        r.seq = 999; /* append numbers it */
        CHECK_MSG(sl_ledger_append(l, &r) == 0, "append: %s", sl_last_error());
        CHECK_EQ(r.seq, i);
    }
    sl_ledger_close(&l);
    return slurp(path, len);
}

static void test_known_answer_and_round_trip(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/rt.ledger", dir);
    size_t len = 0;
    uint8_t *b = make_ledger(path, &len);
    CHECK_EQ(len, 16 + NREC * 64);
    CHECK(memcmp(b, "SLPLEDG\n", 8) == 0);
    CHECK_EQ(sl_get_le32(b + 8), 1);
    CHECK_EQ(sl_get_le32(b + 12), 64);
    for (size_t i = 0; i < NREC; i++) {
        const uint8_t *r = b + 16 + 64 * i;
        const sl_ledger_record_t *s = &samples[i];
        CHECK(memcmp(r, "SLPR", 4) == 0);
        CHECK_EQ(sl_get_le32(r + 4), s->attempt);
        CHECK_EQ(sl_get_le64(r + 8), i);
        CHECK_EQ(sl_get_le64(r + 16), s->round);
        double q = sl_get_f64le(r + 24), z = sl_get_f64le(r + 32);
        CHECK(memcmp(&q, &s->q, 8) == 0);
        CHECK(memcmp(&z, &s->z, 8) == 0);
        CHECK_EQ(sl_get_le64(r + 40), s->steps);
        CHECK_EQ(sl_get_le32(r + 48), s->inputs);
        CHECK_EQ(sl_get_le32(r + 52), s->mode);
        uint8_t h[16];
        crypto_generichash(h, 16, r, 56, NULL, 0);
        CHECK(memcmp(h, r + 56, 8) == 0);
    }
    /* read back: the same records; re-encoded: the same bytes */
    sl_ledger_t *l = NULL;
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "open: %s", sl_last_error());
    size_t n = 0;
    const sl_ledger_record_t *rs = sl_ledger_records(l, &n);
    CHECK_EQ(n, NREC);
    uint8_t *again = malloc(len);
    sl_ledger_header(again);
    for (size_t i = 0; i < n; i++) {
        sl_ledger_record_t want = samples[i];
        want.seq = i;
        CHECK(same_record(&rs[i], &want));
        CHECK(sl_ledger_encode_record(&rs[i], again + 16 + 64 * i) == 0);
    }
    CHECK(memcmp(again, b, len) == 0);
    /* continuing an opened ledger numbers on */
    sl_ledger_record_t extra = samples[0];
    CHECK(sl_ledger_append(l, &extra) == 0);
    CHECK_EQ(extra.seq, NREC);
    sl_ledger_close(&l);
    size_t len2 = 0;
    uint8_t *b2 = slurp(path, &len2);
    CHECK_EQ(len2, len + 64);
    CHECK(memcmp(b2, b, len) == 0);
    free(b2);
    free(again);
    free(b);
}

/* Parse buf; 0 / torn / records as expected (the first `want` samples). */
static void expect_prefix(const uint8_t *buf, size_t len, size_t want, int want_torn)
{
    sl_ledger_record_t *r = NULL;
    size_t n = 99, valid = 0;
    int torn = -1;
    int rc = sl_ledger_parse(buf, len, "t.ledger", &r, &n, &valid, &torn);
    CHECK_MSG(rc == 0, "len %zu: %s", len, sl_last_error());
    CHECK_EQ(n, want);
    CHECK_EQ(torn, want_torn);
    CHECK_EQ(valid, len < 16 ? 0 : 16 + 64 * want);
    for (size_t i = 0; i < n && i < NREC; i++) {
        sl_ledger_record_t s = samples[i];
        s.seq = i;
        CHECK(same_record(&r[i], &s));
    }
    free(r);
}

static void test_torn_and_truncated(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/torn.ledger", dir);
    size_t len = 0;
    uint8_t *b = make_ledger(path, &len);
    /* every truncation: the complete records before the cut, torn unless on a boundary */
    for (size_t cut = 0; cut <= len; cut++) {
        size_t want = cut < 16 ? 0 : (cut - 16) / 64;
        int aligned = cut >= 16 && (cut - 16) % 64 == 0;
        expect_prefix(b, cut, want, !aligned);
    }
    /* a full-length last record of zeros (the size got ahead of the data) */
    uint8_t *z = malloc(len);
    memcpy(z, b, len);
    memset(z + len - 64, 0, 64);
    expect_prefix(z, len, NREC - 1, 1);
    /* open cuts a torn tail off (37 bytes of a sixth record) and appends after the valid ones */
    uint8_t *t = malloc(len + 37);
    memcpy(t, b, len);
    memset(t + len, 0xab, 37);
    spit(path, t, len + 37);
    sl_ledger_t *l = NULL;
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "open: %s", sl_last_error());
    struct stat st;
    CHECK(stat(path, &st) == 0 && (size_t)st.st_size == len);
    sl_ledger_record_t r = samples[2];
    CHECK(sl_ledger_append(l, &r) == 0);
    CHECK_EQ(r.seq, NREC);
    sl_ledger_close(&l);
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "reopen: %s", sl_last_error());
    size_t n = 0;
    const sl_ledger_record_t *rs = sl_ledger_records(l, &n);
    CHECK_EQ(n, NREC + 1);
    CHECK(same_record(&rs[NREC], &r));
    sl_ledger_close(&l);
    /* a torn header (crash while creating): empty, and open writes the header */
    spit(path, b, 7);
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "open torn header: %s", sl_last_error());
    rs = sl_ledger_records(l, &n);
    CHECK_EQ(n, 0);
    sl_ledger_close(&l);
    size_t hl = 0;
    uint8_t *h = slurp(path, &hl);
    CHECK_EQ(hl, 16);
    CHECK(memcmp(h, b, 16) == 0);
    free(h);
    /* an empty file (a crash between creating it and writing the header): open writes the
     * header, so the next append is readable and a reopen sees its record */
    spit(path, b, 0);
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "open empty: %s", sl_last_error());
    r = samples[1];
    CHECK(sl_ledger_append(l, &r) == 0);
    sl_ledger_close(&l);
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "reopen after empty: %s", sl_last_error());
    rs = sl_ledger_records(l, &n);
    CHECK_EQ(n, 1);
    CHECK(n == 1 && same_record(&rs[0], &r));
    sl_ledger_close(&l);
    h = slurp(path, &hl);
    CHECK_EQ(hl, 16 + 64);
    CHECK(memcmp(h, b, 16) == 0);
    free(h);
    free(t);
    free(z);
    free(b);
}

static void test_corrupt_middle(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/corrupt.ledger", dir);
    size_t len = 0;
    uint8_t *b = make_ledger(path, &len);
    b[16 + 64 * 2 + 30] ^= 0x04; /* a bit of record 2's z */
    spit(path, b, len);
    sl_ledger_t *l = NULL;
    int rc = sl_ledger_open(&l, path);
    CHECK_EQ(rc, SL_EFORMAT);
    CHECK(l == NULL);
    CHECK_CONTAINS(sl_last_error(), path);
    CHECK_CONTAINS(sl_last_error(), "record 2 of 5 is corrupt");
    /* a record with a valid checksum but the wrong sequence number (spliced files) */
    uint8_t *c = make_ledger(path, &len);
    memcpy(c + 16 + 64 * 3, c + 16 + 64 * 1, 64);
    sl_ledger_record_t *r = NULL;
    size_t n = 0, valid = 0;
    int torn = 0;
    CHECK_EQ(sl_ledger_parse(c, len, "spliced", &r, &n, &valid, &torn), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "spliced: record 3 is not a valid privacy charge (seq 1");
    CHECK(r == NULL && n == 0);
    /* not a ledger at all */
    CHECK_EQ(sl_ledger_parse((const uint8_t *)"SLCKPT\r\n", 8, "x", &r, &n, &valid, &torn), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "not a starling privacy ledger");
    snprintf(path, sizeof path, "%s/none.ledger", dir);
    CHECK_EQ(sl_ledger_open(&l, path), SL_ENOTFOUND);
    free(c);
    free(b);
}

/* Every byte, three ways: the parser never crashes and never accepts changed data. */
static void test_mutations(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/fuzz.ledger", dir);
    size_t len = 0;
    uint8_t *b = make_ledger(path, &len);
    uint8_t *m = malloc(len);
    const uint8_t flips[3] = {0x01, 0x80, 0xff};
    size_t errors = 0, torn_ok = 0, equal = 0, header_err = 0, middle_err = 0;
    for (size_t pos = 0; pos < len; pos++) {
        for (int f = 0; f < 3; f++) {
            memcpy(m, b, len);
            m[pos] ^= flips[f];
            sl_ledger_record_t *r = NULL;
            size_t n = 0, valid = 0;
            int torn = 0;
            int rc = sl_ledger_parse(m, len, "fuzz.ledger", &r, &n, &valid, &torn);
            if (rc == SL_EFORMAT) {
                errors++;
                CHECK_CONTAINS(sl_last_error(), "fuzz.ledger");
                CHECK(r == NULL && n == 0);
                header_err += pos < 16;
                middle_err += pos >= 16 && pos < len - 64;
                continue;
            }
            CHECK_MSG(rc == 0, "pos %zu: unexpected code %d", pos, rc);
            size_t same = 0;
            for (size_t i = 0; i < n; i++) {
                sl_ledger_record_t s = samples[i];
                s.seq = i;
                same += same_record(&r[i], &s);
            }
            CHECK_EQ(same, n); /* whatever is accepted is the original */
            if (torn && n == NREC - 1)
                torn_ok++;
            else if (!torn && n == NREC)
                equal++;
            else
                CHECK_MSG(0, "pos %zu: %zu records, torn %d", pos, n, torn);
            CHECK(pos >= len - 64); /* only the last record can read as torn */
            free(r);
        }
    }
    CHECK_EQ(header_err, 16 * 3);
    CHECK_EQ(middle_err, (NREC - 1) * 64 * 3);
    CHECK_EQ(errors, header_err + middle_err);
    CHECK_EQ(torn_ok, 64 * 3);
    CHECK_EQ(equal, 0);
    free(m);
    free(b);
}

static void test_bad_values(void)
{
    uint8_t out[SL_LEDGER_RECORD_BYTES];
    sl_ledger_record_t r = samples[0];
    r.q = 1.0000001;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    r = samples[0];
    r.q = NAN;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    r = samples[0];
    r.z = INFINITY;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    r = samples[0];
    r.z = -0.5;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    r = samples[0];
    r.steps = 0;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    r = samples[0];
    r.mode = 0;
    CHECK_EQ(sl_ledger_encode_record(&r, out), SL_EINVAL);
    CHECK_CONTAINS(sl_last_error(), "invalid");
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    CHECK(sodium_init() >= 0);
    snprintf(dir, sizeof dir, "/tmp/sl_ledger_XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    test_known_answer_and_round_trip();
    test_torn_and_truncated();
    test_corrupt_middle();
    test_mutations();
    test_bad_values();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_ledger");
}
