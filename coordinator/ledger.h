/* coordinator/ledger: the write-ahead privacy ledger of a DP run (<run dir>/privacy.ledger).
 *
 * Every privacy charge of the run (coordinator/dp.h) is appended here and made durable
 * (fsync) before it takes effect: before a secure sum is unmasked, before the accountant
 * steps at the end of a round without SecAgg. The checkpoint's DP state records how many
 * records its accountant already holds; on --resume the records after those are replayed
 * into the accountant, so a coordinator killed between a charge and the round's
 * checkpoint does not forget it (docs/privacy.md, "The privacy ledger").
 *
 * Format (little endian), append-only:
 *   header (16 bytes): magic "SLPLEDG\n" | u32 version (1) | u32 record size (64)
 *   records (64 bytes each):
 *     0  "SLPR"     4  u32 attempt   8  u64 seq (the record's index, from 0)
 *     16 u64 round  24 f64 q         32 f64 z (effective noise multiplier)
 *     40 u64 steps  48 u32 inputs (updates / noise shares the charge is for)
 *     52 u32 dp mode (1 central, 2 distributed, 3 local)
 *     56 the first 8 bytes of BLAKE2b-128 of bytes 0..55
 * Reading: a record whose checksum, magic, sequence number or values are wrong is an
 * error (SL_EFORMAT naming the file and the record index), except in the last position:
 * a crash while appending leaves a torn last record (short, or full length with a bad
 * checksum), which is ignored with a warning; the write-ahead order guarantees that its
 * charge never took effect. A torn header (a crash while creating the file) reads as an
 * empty ledger. Bad input never crashes the reader and never reads past the buffer.
 *
 * Not thread-safe (one coordinator, one thread).
 */
#ifndef SL_LEDGER_H
#define SL_LEDGER_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

#define SL_LEDGER_HEADER_BYTES 16
#define SL_LEDGER_RECORD_BYTES 64

typedef struct {
    uint64_t seq;     /* index in the file (set by sl_ledger_append) */
    uint64_t round;   /* the federation round charged */
    uint32_t attempt; /* the engine's attempt of that round */
    uint32_t inputs;  /* updates (or noise shares in the secure sum) the charge is for */
    uint32_t mode;    /* dp.mode: 1 central, 2 distributed, 3 local */
    double q;         /* sampling rate, in [0, 1] */
    double z;         /* effective noise multiplier, finite, >= 0 */
    uint64_t steps;   /* accountant steps, >= 1 */
} sl_ledger_record_t;

/* Encode one record (rec->seq as given) into out; SL_EINVAL on values the reader would
 * refuse (q outside [0, 1], z not finite or < 0, steps 0, mode not 1..3). */
SL_NODISCARD int sl_ledger_encode_record(const sl_ledger_record_t *rec, uint8_t out[SL_LEDGER_RECORD_BYTES]);

/* The 16 header bytes. */
void sl_ledger_header(uint8_t out[SL_LEDGER_HEADER_BYTES]);

/* Parse a whole ledger file image of len bytes (`name` for messages): *recs (malloc'd,
 * free(); NULL when *n == 0) receives the valid records, *valid_len the length of the
 * valid prefix (header + records; 0 for an empty or torn header), *torn = 1 if a torn
 * tail (or header) was ignored. SL_EFORMAT with a message on a corrupt file. */
SL_NODISCARD int sl_ledger_parse(const uint8_t *buf, size_t len, const char *name, sl_ledger_record_t **recs,
                                 size_t *n, size_t *valid_len, int *torn);

typedef struct sl_ledger sl_ledger_t;

/* Create path anew (an existing file is replaced, with a warning if it held records):
 * header written, the file and its folder fsync'd. */
SL_NODISCARD int sl_ledger_create(sl_ledger_t **out, const char *path);
/* Open an existing ledger to continue it: parse it (SL_ENOTFOUND if missing, SL_EFORMAT
 * if corrupt), cut a torn tail away (warning; fsync), keep its records. */
SL_NODISCARD int sl_ledger_open(sl_ledger_t **out, const char *path);
/* Append rec (rec->seq := the next index) and fsync before returning. SL_EINVAL on bad
 * values, SL_EIO on a write or fsync failure (the charge must then not take effect). */
SL_NODISCARD int sl_ledger_append(sl_ledger_t *l, sl_ledger_record_t *rec);
/* Records in the ledger (those read at open plus those appended), borrowed. */
const sl_ledger_record_t *sl_ledger_records(const sl_ledger_t *l, size_t *n);
const char *sl_ledger_path(const sl_ledger_t *l);
/* NULL-safe; nulls *l. */
void sl_ledger_close(sl_ledger_t **l);

#endif
