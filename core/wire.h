/* core/wire: the federation wire protocol codec (spec: docs/protocol.md).
 *
 * A message is one or two frames:
 *   frame 1  a msgpack map with short string keys (version, type, round, sender, sizes,
 *            and the type's fields): the header
 *   frame 2  only for types that carry one: a raw payload, either `n` little-endian float32
 *            (TASK, UPDATE, EVALUATE: the trainable vector or delta) or `n` opaque bytes
 *            (SECAGG_DOWN / SECAGG_UP: a SecAgg+ stage message serialized by privacy/secagg)
 *
 * Decoding validates everything the codec can know on its own: the header is a map of
 * known keys only (no duplicates), each of the right msgpack type and in range, floats
 * finite, required keys present, strings bounded, payload length == n * element size and
 * within the limits, and every float of a vector payload finite. Anything else is
 * SL_EPROTO with a message naming the problem ("wire: TASK: key \"lr\" is NaN"). What the
 * codec cannot know (negotiated vector length, current round, sender identity) the
 * coordinator engine and the client state machine check right after decoding, before
 * any state changes.
 *
 * Hosts are little-endian (checked at compile time), so a vector payload is the float
 * buffer itself: encoding never copies it and decoding points into the received frame.
 */
#ifndef SL_WIRE_H
#define SL_WIRE_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

#define SL_WIRE_VERSION     1    /* the version this build speaks */
#define SL_WIRE_VERSION_MIN 1    /* oldest version this build accepts */
#define SL_WIRE_MAX_HEADER  4096 /* bytes of a header frame, always enforced */
#define SL_WIRE_MAX_STR     255  /* bytes of a string field ("why") */
#define SL_WIRE_MAX_MODS    8    /* modality names in HELLO (SL_MAX_MODALITIES) */
#define SL_WIRE_MOD_NAME    32   /* bytes of a modality name incl. NUL (SL_NAME_MAX) */
#define SL_WIRE_COORDINATOR 0    /* sender id of the coordinator */

typedef enum {
    SL_MSG_HELLO = 1,        /* client -> coordinator: register (id, data sizes, layout) */
    SL_MSG_WELCOME = 2,      /* coordinator -> client: registration accepted, version chosen */
    SL_MSG_TASK = 3,         /* coordinator -> client: train on this global vector (payload) */
    SL_MSG_UPDATE = 4,       /* client -> coordinator: trainable delta (payload) + stats */
    SL_MSG_EVALUATE = 5,     /* coordinator -> client: evaluate this vector on the local test split */
    SL_MSG_RESULT = 6,       /* client -> coordinator: evaluation metrics */
    SL_MSG_HEARTBEAT = 7,    /* either way: liveness; the coordinator answers each one */
    SL_MSG_BYE = 8,          /* either way: leaving (coordinator: the run is over) */
    SL_MSG_ERROR = 9,        /* either way: the previous message was refused, with a reason */
    SL_MSG_SECAGG_DOWN = 10, /* coordinator -> client: SecAgg+ stage message (opaque blob) */
    SL_MSG_SECAGG_UP = 11,   /* client -> coordinator: SecAgg+ stage message (opaque blob) */
    SL_MSG_READY = 12,       /* client -> coordinator: my update is ready, may I upload? (TASK "cred") */
    SL_MSG_GRANT = 13,       /* coordinator -> client: upload now */
} sl_msg_type_t;
#define SL_MSG_TYPE_MAX 13

/* Error codes carried by SL_MSG_ERROR ("code"). */
typedef enum {
    SL_WERR_MALFORMED = 1,      /* could not decode / invalid field */
    SL_WERR_VERSION = 2,        /* no common protocol version */
    SL_WERR_NOT_REGISTERED = 3, /* send HELLO first (e.g. after a coordinator restart) */
    SL_WERR_LAYOUT = 4,         /* trainable vector length or layout hash differs */
    SL_WERR_UNEXPECTED = 5,     /* valid message, wrong time (wrong round, not sampled, ...) */
    SL_WERR_REFUSED = 6,        /* not authorized, banned or run full */
    SL_WERR_INTERNAL = 7,       /* the peer failed (e.g. training error) */
} sl_wire_errcode_t;

/* Training configuration carried by a TASK (what the client needs for this round). */
typedef struct {
    uint32_t attempt;      /* retry number of this round (0 = first) */
    uint32_t local_epochs; /* train.local_epochs */
    uint64_t local_steps;  /* train.local_steps (0 = use epochs) */
    uint32_t batch_size;   /* train.batch_size */
    double lr;             /* train.lr (eta_l) */
    double fedprox_mu;     /* train.fedprox_mu (0 = plain FedAvg local training) */
    uint8_t want_eval;     /* also evaluate the received global vector on the local test split */
    uint8_t secagg;        /* the update goes through SecAgg+ stages (UPDATE has no payload) */
    uint8_t ask_upload;    /* send READY and wait for GRANT before the UPDATE (upload credits) */
    uint8_t dp_mode;       /* sl_dp_mode_t: client-side clipping/noise when != off */
    double dp_clip;        /* L2 clip norm of the delta (dp_mode != off) */
    double dp_noise;       /* noise multiplier for distributed/local DP */
} sl_task_info_t;

/* Statistics carried by an UPDATE. */
typedef struct {
    uint64_t examples; /* training examples seen (aggregation weight before the cap) */
    uint64_t steps;    /* optimizer steps taken */
    double train_loss; /* mean training loss (finite, >= 0) */
    double seconds;    /* wall time of local training */
    uint8_t has_eval;  /* eval_* present (the TASK asked for it) */
    uint64_t eval_examples;
    double eval_loss;
    double eval_accuracy; /* in [0, 1] */
} sl_update_info_t;

/* Metrics carried by a RESULT (and the eval part of an UPDATE). */
typedef struct {
    uint64_t examples;
    double loss;
    double accuracy; /* in [0, 1] */
    double macro_f1; /* in [0, 1] */
} sl_eval_info_t;

/* Registration data of a HELLO. */
typedef struct {
    uint32_t version_min; /* lowest protocol version the client speaks ("v" is the highest) */
    uint64_t train_examples;
    uint64_t test_examples;
    uint64_t dim;    /* trainable vector length of the client's model */
    uint64_t layout; /* layout hash (sl_wire_layout_hash), 0 = not checked */
    uint32_t n_modalities;
    char modalities[SL_WIRE_MAX_MODS][SL_WIRE_MOD_NAME];
} sl_hello_info_t;

/* WELCOME */
typedef struct {
    uint64_t client_id;    /* the id the coordinator registered */
    uint64_t dim;          /* the run's trainable vector length */
    uint64_t layout;       /* the run's layout hash (0 = not checked) */
    uint32_t heartbeat_ms; /* how often the client should send HEARTBEAT when idle */
    uint64_t rounds;       /* total rounds planned */
} sl_welcome_info_t;

/* One decoded (or to-be-encoded) message. Pointers are borrowed: into the received
 * frames after a decode, from the caller before an encode. */
typedef struct {
    uint32_t version;              /* "v" */
    sl_msg_type_t type;            /* "t" */
    uint64_t round;                /* "r": round the message belongs to (0 = none) */
    uint64_t sender;               /* "s": client id, or SL_WIRE_COORDINATOR */
    uint64_t n;                    /* "n": payload elements (floats or bytes), 0 = no payload frame */
    const float *vec;              /* TASK / UPDATE / EVALUATE payload: n floats, or NULL */
    const uint8_t *blob;           /* SECAGG_* payload: n bytes */
    uint32_t stage;                /* SECAGG_*: stage number, defined by privacy/secagg */
    int32_t code;                  /* ERROR: sl_wire_errcode_t */
    char why[SL_WIRE_MAX_STR + 1]; /* ERROR / BYE reason (NUL-terminated, may be empty) */
    sl_hello_info_t hello;
    sl_welcome_info_t welcome;
    sl_task_info_t task;
    sl_update_info_t update;
    sl_eval_info_t eval; /* RESULT */
} sl_msg_t;

/* Decoding limits. max_vec = largest n of a vector payload (the negotiated trainable length
 * when known, so a longer vector is refused by the codec already); 0 = up to max_payload_bytes. */
typedef struct {
    size_t max_payload_bytes; /* net.max_message_bytes */
    size_t max_vec;           /* floats; 0 = no extra bound */
    size_t max_blob;          /* bytes of a SECAGG_* blob; 0 = up to max_payload_bytes */
} sl_wire_limits_t;

/* An encoded header: `len` bytes in `data` (owned, heap). */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} sl_wire_buf_t;

/* Zero a message and set version/type/round/sender. */
void sl_msg_init(sl_msg_t *m, sl_msg_type_t type, uint64_t round, uint64_t sender);

/* Name of a type ("TASK"), "?" if unknown. */
const char *sl_msg_type_name(int type);

/* Whether a type carries a payload frame of floats (1), bytes (2) or none (0). */
int sl_msg_payload_kind(sl_msg_type_t type);

/* Encode m's header into `out` (reset first; reused across calls to avoid allocation).
 * The payload frame is m->vec (n * 4 bytes) or m->blob (n bytes), sent as is.
 * Validates m like a decoder would (so we never send what a peer would refuse):
 * SL_EINVAL naming the field. */
SL_NODISCARD int sl_wire_encode(const sl_msg_t *m, sl_wire_buf_t *out);
void sl_wire_buf_free(sl_wire_buf_t *b);

/* Decode one message from its header frame (hdr, hdr_len) and optional payload frame
 * (payload, payload_len; NULL/0 when there was none). Never reads past either length.
 * payload must be 4-byte aligned when it holds floats (the transport guarantees this;
 * SL_EINVAL otherwise, a caller bug). On success `out` points into payload.
 * Returns 0 or SL_EPROTO with a message "wire: <TYPE>: <problem>". */
SL_NODISCARD int sl_wire_decode(const uint8_t *hdr, size_t hdr_len, const uint8_t *payload,
                                size_t payload_len, const sl_wire_limits_t *lim, sl_msg_t *out);

/* Layout hash of a trainable vector: BLAKE2b-64 over (name, shape, offset, numel) of each
 * trainable tensor, fed by the caller one tensor at a time. Clients and coordinator
 * compare it in HELLO/WELCOME so two builds with different model shapes never mix. */
typedef struct {
    _Alignas(64) unsigned char state[384]; /* crypto_generichash_state, opaque */
} sl_layout_hash_t;
void sl_layout_hash_init(sl_layout_hash_t *h);
void sl_layout_hash_add(sl_layout_hash_t *h, const char *name, const size_t *shape, size_t ndim,
                        size_t offset, size_t numel);
uint64_t sl_layout_hash_final(sl_layout_hash_t *h); /* never 0 */

#endif
