#include "core/wire.h"

#include "core/bytes.h"

#include <math.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "starling's wire payloads are raw little-endian float32: build on a little-endian host"
#endif

_Static_assert(sizeof(crypto_generichash_state) <= sizeof(((sl_layout_hash_t *)0)->state),
               "sl_layout_hash_t too small for crypto_generichash_state");

/* ---- keys ------------------------------------------------------------------------------ */

typedef enum { V_UINT, V_INT, V_F64, V_BOOL, V_STR, V_STRS } vkind_t;

#define B(t)  (1u << (t))
#define ALL   0xffffu
#define VECS  (B(SL_MSG_TASK) | B(SL_MSG_UPDATE) | B(SL_MSG_EVALUATE))
#define BLOBS (B(SL_MSG_SECAGG_DOWN) | B(SL_MSG_SECAGG_UP))

enum {
    K_V,
    K_T,
    K_R,
    K_S,
    K_N,
    K_VMIN,
    K_EX,
    K_TEX,
    K_DIM,
    K_LAY,
    K_MODS,
    K_CID,
    K_HB,
    K_ROUNDS,
    K_ATT,
    K_EP,
    K_ST,
    K_BS,
    K_LR,
    K_MU,
    K_EVAL,
    K_SA,
    K_DPM,
    K_DPC,
    K_DPZ,
    K_STEPS,
    K_LOSS,
    K_SECS,
    K_EEX,
    K_ELOSS,
    K_EACC,
    K_ACC,
    K_F1,
    K_STG,
    K_CODE,
    K_WHY,
    K_CRED,
    NKEYS
};

typedef struct {
    const char *name;
    vkind_t kind;
    unsigned allowed; /* bit per message type */
    unsigned required;
} keydef_t;

static const keydef_t keydefs[NKEYS] = {
    [K_V] = {"v", V_UINT, ALL, ALL},
    [K_T] = {"t", V_UINT, ALL, ALL},
    [K_R] = {"r", V_UINT, ALL, ALL},
    [K_S] = {"s", V_UINT, ALL, ALL},
    [K_N] = {"n", V_UINT, VECS | BLOBS, VECS | BLOBS},
    [K_VMIN] = {"vmin", V_UINT, B(SL_MSG_HELLO), B(SL_MSG_HELLO)},
    [K_EX] = {"ex", V_UINT, B(SL_MSG_HELLO) | B(SL_MSG_UPDATE) | B(SL_MSG_RESULT),
              B(SL_MSG_HELLO) | B(SL_MSG_UPDATE) | B(SL_MSG_RESULT)},
    [K_TEX] = {"tex", V_UINT, B(SL_MSG_HELLO), B(SL_MSG_HELLO)},
    [K_DIM] = {"dim", V_UINT, B(SL_MSG_HELLO) | B(SL_MSG_WELCOME), B(SL_MSG_HELLO) | B(SL_MSG_WELCOME)},
    [K_LAY] = {"lay", V_UINT, B(SL_MSG_HELLO) | B(SL_MSG_WELCOME), B(SL_MSG_HELLO) | B(SL_MSG_WELCOME)},
    [K_MODS] = {"mods", V_STRS, B(SL_MSG_HELLO), B(SL_MSG_HELLO)},
    [K_CID] = {"cid", V_UINT, B(SL_MSG_WELCOME), B(SL_MSG_WELCOME)},
    [K_HB] = {"hb", V_UINT, B(SL_MSG_WELCOME), B(SL_MSG_WELCOME)},
    [K_ROUNDS] = {"rounds", V_UINT, B(SL_MSG_WELCOME), B(SL_MSG_WELCOME)},
    [K_ATT] = {"att", V_UINT, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_EP] = {"ep", V_UINT, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_ST] = {"st", V_UINT, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_BS] = {"bs", V_UINT, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_LR] = {"lr", V_F64, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_MU] = {"mu", V_F64, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_EVAL] = {"eval", V_BOOL, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_SA] = {"sa", V_BOOL, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_DPM] = {"dpm", V_UINT, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_DPC] = {"dpc", V_F64, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_DPZ] = {"dpz", V_F64, B(SL_MSG_TASK), B(SL_MSG_TASK)},
    [K_STEPS] = {"steps", V_UINT, B(SL_MSG_UPDATE), B(SL_MSG_UPDATE)},
    [K_LOSS] = {"loss", V_F64, B(SL_MSG_UPDATE) | B(SL_MSG_RESULT), B(SL_MSG_UPDATE) | B(SL_MSG_RESULT)},
    [K_SECS] = {"secs", V_F64, B(SL_MSG_UPDATE), B(SL_MSG_UPDATE)},
    [K_EEX] = {"eex", V_UINT, B(SL_MSG_UPDATE), 0},
    [K_ELOSS] = {"eloss", V_F64, B(SL_MSG_UPDATE), 0},
    [K_EACC] = {"eacc", V_F64, B(SL_MSG_UPDATE), 0},
    [K_ACC] = {"acc", V_F64, B(SL_MSG_RESULT), B(SL_MSG_RESULT)},
    [K_F1] = {"f1", V_F64, B(SL_MSG_RESULT), B(SL_MSG_RESULT)},
    [K_STG] = {"stg", V_UINT, BLOBS, BLOBS},
    [K_CODE] = {"code", V_INT, B(SL_MSG_ERROR), B(SL_MSG_ERROR)},
    [K_WHY] = {"why", V_STR, B(SL_MSG_ERROR) | B(SL_MSG_BYE), B(SL_MSG_ERROR) | B(SL_MSG_BYE)},
    [K_CRED] = {"cred", V_BOOL, B(SL_MSG_TASK), B(SL_MSG_TASK)},
};

static const char *const type_names[SL_MSG_TYPE_MAX + 1] = {
    "?",         "HELLO", "WELCOME", "TASK",        "UPDATE",    "EVALUATE", "RESULT",
    "HEARTBEAT", "BYE",   "ERROR",   "SECAGG_DOWN", "SECAGG_UP", "READY",    "GRANT"};

const char *sl_msg_type_name(int type)
{
    if (type < 1 || type > SL_MSG_TYPE_MAX)
        return "?";
    return type_names[type];
}

int sl_msg_payload_kind(sl_msg_type_t type)
{
    if (type >= 1 && type <= SL_MSG_TYPE_MAX) {
        if (VECS & B(type))
            return 1;
        if (BLOBS & B(type))
            return 2;
    }
    return 0;
}

void sl_msg_init(sl_msg_t *m, sl_msg_type_t type, uint64_t round, uint64_t sender)
{
    memset(m, 0, sizeof *m);
    m->version = SL_WIRE_VERSION;
    m->type = type;
    m->round = round;
    m->sender = sender;
}

/* Types only the coordinator sends (sender must be 0) and only clients send (sender != 0). */
#define FROM_COORD                                                                                           \
    (B(SL_MSG_WELCOME) | B(SL_MSG_TASK) | B(SL_MSG_EVALUATE) | B(SL_MSG_SECAGG_DOWN) | B(SL_MSG_GRANT))
#define FROM_CLIENT                                                                                          \
    (B(SL_MSG_HELLO) | B(SL_MSG_UPDATE) | B(SL_MSG_RESULT) | B(SL_MSG_SECAGG_UP) | B(SL_MSG_READY))

/* ---- structural pre-scan ---------------------------------------------------------------
 * msgpack-c allocates a container's element array from its declared count before reading
 * the elements, so a 5-byte "array of 4 billion" would ask for 64 GB. Walk the bytes first:
 * every element needs at least one byte, so a count larger than the bytes left is refused,
 * as is nesting deeper than a header ever needs. */

#define MAX_DEPTH 3

static uint64_t be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int skim(const uint8_t *p, size_t len, size_t *off, int depth)
{
    if (depth > MAX_DEPTH)
        return sl_error(SL_EPROTO, "nested deeper than %d levels", MAX_DEPTH);
    if (*off >= len)
        return sl_error(SL_EPROTO, "truncated header (%zu bytes)", len);
    uint8_t c = p[(*off)++];
    size_t left = len - *off;
    uint64_t skip = 0, count = 0;
    int is_map = 0, container = 0;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
        return 0;
    } else if (c >= 0x80 && c <= 0x8f) {
        container = 1, is_map = 1, count = c & 0x0f;
    } else if (c >= 0x90 && c <= 0x9f) {
        container = 1, count = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
        skip = c & 0x1f;
    } else {
        size_t hdr = 0;
        switch (c) {
        case 0xcc:
        case 0xd0:
            skip = 1;
            break;
        case 0xcd:
        case 0xd1:
            skip = 2;
            break;
        case 0xca:
        case 0xce:
        case 0xd2:
            skip = 4;
            break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            skip = 8;
            break;
        case 0xd9:
        case 0xc4:
            hdr = 1;
            break;
        case 0xda:
        case 0xc5:
            hdr = 2;
            break;
        case 0xdb:
        case 0xc6:
            hdr = 4;
            break;
        case 0xdc:
            hdr = 2, container = 1;
            break;
        case 0xdd:
            hdr = 4, container = 1;
            break;
        case 0xde:
            hdr = 2, container = 1, is_map = 1;
            break;
        case 0xdf:
            hdr = 4, container = 1, is_map = 1;
            break;
        default: /* ext types and 0xc1 (never used) */
            return sl_error(SL_EPROTO, "unsupported msgpack type 0x%02x", c);
        }
        if (hdr) {
            if (left < hdr)
                return sl_error(SL_EPROTO, "truncated header (%zu bytes)", len);
            uint64_t v = be(p + *off, hdr);
            *off += hdr;
            left -= hdr;
            if (container)
                count = v;
            else
                skip = v;
        }
    }
    if (!container) {
        if (skip > left)
            return sl_error(SL_EPROTO, "truncated header (%zu bytes)", len);
        *off += (size_t)skip;
        return 0;
    }
    uint64_t elems = is_map ? count * 2 : count;
    if (elems > left)
        return sl_error(SL_EPROTO, "container of %llu entries in %zu bytes: truncated or forged",
                        (unsigned long long)count, left);
    for (uint64_t i = 0; i < elems; i++) {
        int rc = skim(p, len, off, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- decode ---------------------------------------------------------------------------- */

static int fail(sl_msg_type_t t, const char *fmt, ...) SL_PRINTF(2, 3);
static int fail(sl_msg_type_t t, const char *fmt, ...)
{
    char buf[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return sl_error(SL_EPROTO, "wire: %s: %s", t ? sl_msg_type_name((int)t) : "message", buf);
}

typedef struct {
    uint64_t u;
    int64_t i;
    double f;
    const msgpack_object *o;
} val_t;

static int get_value(sl_msg_type_t t, const keydef_t *k, const msgpack_object *o, val_t *v)
{
    switch (k->kind) {
    case V_UINT:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return fail(t, "key \"%s\": expected an unsigned integer", k->name);
        v->u = o->via.u64;
        return 0;
    case V_INT:
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (o->via.u64 > INT32_MAX)
                return fail(t, "key \"%s\": out of range", k->name);
            v->i = (int64_t)o->via.u64;
        } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            if (o->via.i64 < INT32_MIN)
                return fail(t, "key \"%s\": out of range", k->name);
            v->i = o->via.i64;
        } else {
            return fail(t, "key \"%s\": expected an integer", k->name);
        }
        return 0;
    case V_F64:
        if (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)
            return fail(t, "key \"%s\": expected a float", k->name);
        v->f = o->via.f64;
        if (isnan(v->f))
            return fail(t, "key \"%s\" is NaN", k->name);
        if (!isfinite(v->f))
            return fail(t, "key \"%s\" is infinite", k->name);
        return 0;
    case V_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return fail(t, "key \"%s\": expected a boolean", k->name);
        v->u = o->via.boolean ? 1 : 0;
        return 0;
    case V_STR:
        if (o->type != MSGPACK_OBJECT_STR)
            return fail(t, "key \"%s\": expected a string", k->name);
        if (o->via.str.size > SL_WIRE_MAX_STR)
            return fail(t, "key \"%s\": string of %u bytes (max %d)", k->name, o->via.str.size,
                        SL_WIRE_MAX_STR);
        v->o = o;
        return 0;
    case V_STRS:
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return fail(t, "key \"%s\": expected an array of strings", k->name);
        if (o->via.array.size > SL_WIRE_MAX_MODS)
            return fail(t, "key \"%s\": %u entries (max %d)", k->name, o->via.array.size, SL_WIRE_MAX_MODS);
        for (uint32_t j = 0; j < o->via.array.size; j++) {
            const msgpack_object *e = &o->via.array.ptr[j];
            if (e->type != MSGPACK_OBJECT_STR || e->via.str.size == 0 || e->via.str.size >= SL_WIRE_MOD_NAME)
                return fail(t, "key \"%s\": entry %u is not a name of 1..%d bytes", k->name, j,
                            SL_WIRE_MOD_NAME - 1);
            for (uint32_t c = 0; c < e->via.str.size; c++) {
                unsigned char ch = (unsigned char)e->via.str.ptr[c];
                if (ch <= 0x20 || ch >= 0x7f)
                    return fail(t, "key \"%s\": entry %u has a non-printable byte", k->name, j);
            }
        }
        v->o = o;
        return 0;
    }
    return fail(t, "internal: key kind");
}

static void copy_str(char *dst, size_t cap, const msgpack_object *o)
{
    size_t n = o->via.str.size < cap - 1 ? o->via.str.size : cap - 1;
    if (n)
        memcpy(dst, o->via.str.ptr, n);
    dst[n] = '\0';
    /* the reason is logged: replace control bytes */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = '?';
}

static int check_range_u(sl_msg_type_t t, const char *key, uint64_t v, uint64_t lo, uint64_t hi)
{
    if (v < lo || v > hi)
        return fail(t, "key \"%s\" = %llu out of range [%llu, %llu]", key, (unsigned long long)v,
                    (unsigned long long)lo, (unsigned long long)hi);
    return 0;
}

static int check_range_f(sl_msg_type_t t, const char *key, double v, double lo, double hi)
{
    if (!(v >= lo && v <= hi))
        return fail(t, "key \"%s\" = %g out of range [%g, %g]", key, v, lo, hi);
    return 0;
}

/* Decode and validate the header only; payload sizes are checked by the caller. */
static int decode_header(const uint8_t *hdr, size_t hdr_len, sl_msg_t *m)
{
    memset(m, 0, sizeof *m);
    if (!hdr || hdr_len == 0)
        return fail(0, "empty header frame");
    if (hdr_len > SL_WIRE_MAX_HEADER)
        return fail(0, "header of %zu bytes (max %d)", hdr_len, SL_WIRE_MAX_HEADER);
    size_t off = 0;
    int rc = skim(hdr, hdr_len, &off, 0);
    if (rc)
        return sl_error_wrap(SL_EPROTO, "wire: ");
    if (off != hdr_len)
        return fail(0, "%zu trailing bytes after the header map", hdr_len - off);

    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t pos = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)hdr, hdr_len, &pos);
    if (ur != MSGPACK_UNPACK_SUCCESS || pos != hdr_len) {
        msgpack_unpacked_destroy(&up);
        return fail(0, "undecodable msgpack header (%d)", (int)ur);
    }
    const msgpack_object *root = &up.data;
    val_t vals[NKEYS];
    int seen[NKEYS] = {0};
    memset(vals, 0, sizeof vals);
    sl_msg_type_t t = 0;
    if (root->type != MSGPACK_OBJECT_MAP) {
        rc = fail(0, "header is not a map");
        goto done;
    }
    /* find the type first so messages can name it */
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 1 &&
            kv->key.via.str.ptr[0] == 't' && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            kv->val.via.u64 >= 1 && kv->val.via.u64 <= SL_MSG_TYPE_MAX)
            t = (sl_msg_type_t)kv->val.via.u64;
    }
    if (!t) {
        rc = fail(0, "missing or unknown message type \"t\"");
        goto done;
    }
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR) {
            rc = fail(t, "non-string key");
            goto done;
        }
        int k = -1;
        for (int j = 0; j < NKEYS; j++) {
            if (strlen(keydefs[j].name) == kv->key.via.str.size &&
                memcmp(keydefs[j].name, kv->key.via.str.ptr, kv->key.via.str.size) == 0) {
                k = j;
                break;
            }
        }
        if (k < 0 || !(keydefs[k].allowed & B(t))) {
            char name[40];
            size_t n = kv->key.via.str.size < 32 ? kv->key.via.str.size : 32;
            if (n)
                memcpy(name, kv->key.via.str.ptr, n);
            name[n] = '\0';
            for (size_t c = 0; c < n; c++)
                if ((unsigned char)name[c] < 0x20 || (unsigned char)name[c] >= 0x7f)
                    name[c] = '?';
            rc = fail(t, "unknown field \"%s\"", name);
            goto done;
        }
        if (seen[k]) {
            rc = fail(t, "duplicate key \"%s\"", keydefs[k].name);
            goto done;
        }
        seen[k] = 1;
        rc = get_value(t, &keydefs[k], &kv->val, &vals[k]);
        if (rc)
            goto done;
    }
    for (int j = 0; j < NKEYS; j++) {
        if ((keydefs[j].required & B(t)) && !seen[j]) {
            rc = fail(t, "missing key \"%s\"", keydefs[j].name);
            goto done;
        }
    }

    m->type = t;
    m->round = vals[K_R].u;
    m->sender = vals[K_S].u;
    m->n = vals[K_N].u;
    if (vals[K_V].u > 255) {
        rc = fail(t, "protocol version %llu out of range", (unsigned long long)vals[K_V].u);
        goto done;
    }
    m->version = (uint32_t)vals[K_V].u;
    if (t == SL_MSG_HELLO) {
        /* a HELLO announces the client's range [vmin, v]; the coordinator picks the version */
        if (vals[K_VMIN].u < 1 || vals[K_VMIN].u > m->version) {
            rc = fail(t, "bad version range [%llu, %u]", (unsigned long long)vals[K_VMIN].u, m->version);
            goto done;
        }
        m->hello.version_min = (uint32_t)vals[K_VMIN].u;
    } else if (m->version < SL_WIRE_VERSION_MIN || m->version > SL_WIRE_VERSION) {
        rc = fail(t, "wrong protocol version %u (this build speaks %d..%d)", m->version, SL_WIRE_VERSION_MIN,
                  SL_WIRE_VERSION);
        goto done;
    }
    if ((FROM_COORD & B(t)) && m->sender != SL_WIRE_COORDINATOR) {
        rc = fail(t, "sender %llu: only the coordinator (0) sends this", (unsigned long long)m->sender);
        goto done;
    }
    if ((FROM_CLIENT & B(t)) && m->sender == SL_WIRE_COORDINATOR) {
        rc = fail(t, "sender 0: client messages carry the client id");
        goto done;
    }

    switch (t) {
    case SL_MSG_HELLO:
        m->hello.train_examples = vals[K_EX].u;
        m->hello.test_examples = vals[K_TEX].u;
        m->hello.dim = vals[K_DIM].u;
        m->hello.layout = vals[K_LAY].u;
        if ((rc = check_range_u(t, "dim", m->hello.dim, 1, UINT32_MAX)))
            goto done;
        {
            const msgpack_object *a = vals[K_MODS].o;
            m->hello.n_modalities = a->via.array.size;
            for (uint32_t j = 0; j < a->via.array.size; j++)
                copy_str(m->hello.modalities[j], SL_WIRE_MOD_NAME, &a->via.array.ptr[j]);
        }
        break;
    case SL_MSG_WELCOME:
        m->welcome.client_id = vals[K_CID].u;
        m->welcome.dim = vals[K_DIM].u;
        m->welcome.layout = vals[K_LAY].u;
        m->welcome.rounds = vals[K_ROUNDS].u;
        if ((rc = check_range_u(t, "dim", vals[K_DIM].u, 1, UINT32_MAX)) ||
            (rc = check_range_u(t, "hb", vals[K_HB].u, 0, 3600000)) ||
            (rc = check_range_u(t, "cid", vals[K_CID].u, 1, UINT64_MAX)))
            goto done;
        m->welcome.heartbeat_ms = (uint32_t)vals[K_HB].u;
        break;
    case SL_MSG_TASK: {
        sl_task_info_t *k = &m->task;
        if ((rc = check_range_u(t, "att", vals[K_ATT].u, 0, 1000)) ||
            (rc = check_range_u(t, "ep", vals[K_EP].u, 0, 1000)) ||
            (rc = check_range_u(t, "st", vals[K_ST].u, 0, 1000000)) ||
            (rc = check_range_u(t, "bs", vals[K_BS].u, 1, 65536)) ||
            (rc = check_range_f(t, "lr", vals[K_LR].f, 0, 100)) ||
            (rc = check_range_f(t, "mu", vals[K_MU].f, 0, 1e6)) ||
            (rc = check_range_u(t, "dpm", vals[K_DPM].u, 0, 3)) ||
            (rc = check_range_f(t, "dpc", vals[K_DPC].f, 0, 1e9)) ||
            (rc = check_range_f(t, "dpz", vals[K_DPZ].f, 0, 1e6)))
            goto done;
        if (vals[K_EP].u == 0 && vals[K_ST].u == 0) {
            rc = fail(t, "neither local epochs \"ep\" nor steps \"st\" set");
            goto done;
        }
        if (vals[K_DPM].u != 0 && !(vals[K_DPC].f > 0)) {
            rc = fail(t, "DP on with clip \"dpc\" = %g", vals[K_DPC].f);
            goto done;
        }
        k->attempt = (uint32_t)vals[K_ATT].u;
        k->local_epochs = (uint32_t)vals[K_EP].u;
        k->local_steps = vals[K_ST].u;
        k->batch_size = (uint32_t)vals[K_BS].u;
        k->lr = vals[K_LR].f;
        k->fedprox_mu = vals[K_MU].f;
        k->want_eval = (uint8_t)vals[K_EVAL].u;
        k->secagg = (uint8_t)vals[K_SA].u;
        k->ask_upload = (uint8_t)vals[K_CRED].u;
        if (k->secagg && k->ask_upload) {
            rc = fail(t, "upload credits (\"cred\") do not apply to secure aggregation");
            goto done;
        }
        k->dp_mode = (uint8_t)vals[K_DPM].u;
        k->dp_clip = vals[K_DPC].f;
        k->dp_noise = vals[K_DPZ].f;
        if (m->n == 0) {
            rc = fail(t, "no global vector (n = 0)");
            goto done;
        }
        break;
    }
    case SL_MSG_UPDATE: {
        sl_update_info_t *u = &m->update;
        int ne = seen[K_EEX] + seen[K_ELOSS] + seen[K_EACC];
        if (ne != 0 && ne != 3) {
            rc = fail(t, "evaluation fields \"eex\", \"eloss\", \"eacc\" must come together");
            goto done;
        }
        if ((rc = check_range_u(t, "ex", vals[K_EX].u, 1, UINT64_MAX)) ||
            (rc = check_range_f(t, "loss", vals[K_LOSS].f, 0, 1e30)) ||
            (rc = check_range_f(t, "secs", vals[K_SECS].f, 0, 1e9)))
            goto done;
        u->examples = vals[K_EX].u;
        u->steps = vals[K_STEPS].u;
        u->train_loss = vals[K_LOSS].f;
        u->seconds = vals[K_SECS].f;
        if (ne == 3) {
            if ((rc = check_range_f(t, "eloss", vals[K_ELOSS].f, 0, 1e30)) ||
                (rc = check_range_f(t, "eacc", vals[K_EACC].f, 0, 1)))
                goto done;
            u->has_eval = 1;
            u->eval_examples = vals[K_EEX].u;
            u->eval_loss = vals[K_ELOSS].f;
            u->eval_accuracy = vals[K_EACC].f;
        }
        break;
    }
    case SL_MSG_EVALUATE:
        if (m->n == 0) {
            rc = fail(t, "no vector to evaluate (n = 0)");
            goto done;
        }
        break;
    case SL_MSG_RESULT:
        if ((rc = check_range_f(t, "loss", vals[K_LOSS].f, 0, 1e30)) ||
            (rc = check_range_f(t, "acc", vals[K_ACC].f, 0, 1)) ||
            (rc = check_range_f(t, "f1", vals[K_F1].f, 0, 1)))
            goto done;
        m->eval.examples = vals[K_EX].u;
        m->eval.loss = vals[K_LOSS].f;
        m->eval.accuracy = vals[K_ACC].f;
        m->eval.macro_f1 = vals[K_F1].f;
        break;
    case SL_MSG_SECAGG_DOWN:
    case SL_MSG_SECAGG_UP:
        if ((rc = check_range_u(t, "stg", vals[K_STG].u, 0, 255)))
            goto done;
        m->stage = (uint32_t)vals[K_STG].u;
        if (m->n == 0) {
            rc = fail(t, "empty stage message (n = 0)");
            goto done;
        }
        break;
    case SL_MSG_ERROR:
        if (vals[K_CODE].i < SL_WERR_MALFORMED || vals[K_CODE].i > SL_WERR_INTERNAL) {
            rc = fail(t, "unknown error code %lld", (long long)vals[K_CODE].i);
            goto done;
        }
        m->code = (int32_t)vals[K_CODE].i;
        copy_str(m->why, sizeof m->why, vals[K_WHY].o);
        break;
    case SL_MSG_BYE:
        copy_str(m->why, sizeof m->why, vals[K_WHY].o);
        break;
    case SL_MSG_HEARTBEAT:
    case SL_MSG_READY:
    case SL_MSG_GRANT:
        break;
    }
    rc = 0;
done:
    msgpack_unpacked_destroy(&up);
    return rc;
}

static int all_finite(const float *v, size_t n, size_t *bad)
{
    const uint32_t *w = (const uint32_t *)(const void *)v;
    for (size_t i = 0; i < n; i++) {
        if ((w[i] & 0x7f800000u) == 0x7f800000u) {
            *bad = i;
            return 0;
        }
    }
    return 1;
}

int sl_wire_decode(const uint8_t *hdr, size_t hdr_len, const uint8_t *payload, size_t payload_len,
                   const sl_wire_limits_t *lim, sl_msg_t *out)
{
    int rc = decode_header(hdr, hdr_len, out);
    if (rc)
        return rc;
    sl_msg_type_t t = out->type;
    int kind = sl_msg_payload_kind(t);
    size_t max_payload = lim && lim->max_payload_bytes ? lim->max_payload_bytes : (size_t)1 << 32;
    if (kind == 0) {
        if (payload_len)
            return fail(t, "unexpected payload frame of %zu bytes", payload_len);
        return 0;
    }
    if (out->n == 0) { /* UPDATE under secure aggregation: statistics only */
        if (payload_len)
            return fail(t, "payload of %zu bytes but n = 0", payload_len);
        return 0;
    }
    uint64_t elem = kind == 1 ? 4 : 1;
    if (out->n > max_payload / elem)
        return fail(t, "payload of %llu elements exceeds the limit of %zu bytes", (unsigned long long)out->n,
                    max_payload);
    if (kind == 1 && lim && lim->max_vec && out->n > lim->max_vec)
        return fail(t, "vector of %llu floats, expected at most %zu", (unsigned long long)out->n,
                    lim->max_vec);
    if (kind == 2 && lim && lim->max_blob && out->n > lim->max_blob)
        return fail(t, "blob of %llu bytes, limit %zu", (unsigned long long)out->n, lim->max_blob);
    if (!payload || payload_len != out->n * elem)
        return fail(t, "payload frame of %zu bytes, header says %llu", payload_len,
                    (unsigned long long)(out->n * elem));
    if (kind == 2) {
        out->blob = payload;
        return 0;
    }
    if (((uintptr_t)payload & 3u) != 0)
        return sl_error(SL_EINVAL, "wire: payload buffer not 4-byte aligned (caller bug)");
    const float *v = (const float *)(const void *)payload;
    size_t bad = 0;
    if (!all_finite(v, (size_t)out->n, &bad))
        return fail(t, "payload value %zu is %s", bad, isnan(v[bad]) ? "NaN" : "infinite");
    out->vec = v;
    return 0;
}

/* ---- encode ---------------------------------------------------------------------------- */

static int buf_write(void *data, const char *src, size_t len)
{
    sl_wire_buf_t *b = data;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, len);
    b->len += len;
    return 0;
}

void sl_wire_buf_free(sl_wire_buf_t *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

typedef struct {
    msgpack_packer pk;
    int err;
    unsigned count;
} enc_t;

static void key(enc_t *e, const char *k)
{
    size_t n = strlen(k);
    if (msgpack_pack_str(&e->pk, n) || msgpack_pack_str_body(&e->pk, k, n))
        e->err = 1;
}
static void put_u(enc_t *e, const char *k, uint64_t v)
{
    key(e, k);
    if (msgpack_pack_uint64(&e->pk, v))
        e->err = 1;
}
static void put_i(enc_t *e, const char *k, int64_t v)
{
    key(e, k);
    if (msgpack_pack_int64(&e->pk, v))
        e->err = 1;
}
static void put_f(enc_t *e, const char *k, double v)
{
    key(e, k);
    if (msgpack_pack_double(&e->pk, v))
        e->err = 1;
}
static void put_b(enc_t *e, const char *k, int v)
{
    key(e, k);
    if (v ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk))
        e->err = 1;
}
static void put_s(enc_t *e, const char *k, const char *s)
{
    size_t n = strnlen(s, SL_WIRE_MAX_STR);
    key(e, k);
    if (msgpack_pack_str(&e->pk, n) || msgpack_pack_str_body(&e->pk, s, n))
        e->err = 1;
}

static unsigned field_count(const sl_msg_t *m)
{
    switch (m->type) {
    case SL_MSG_HELLO:
        return 4 + 6;
    case SL_MSG_WELCOME:
        return 4 + 5;
    case SL_MSG_TASK:
        return 4 + 1 + 12;
    case SL_MSG_UPDATE:
        return 4 + 1 + 4 + (m->update.has_eval ? 3 : 0);
    case SL_MSG_EVALUATE:
        return 4 + 1;
    case SL_MSG_RESULT:
        return 4 + 4;
    case SL_MSG_HEARTBEAT:
    case SL_MSG_READY:
    case SL_MSG_GRANT:
        return 4;
    case SL_MSG_BYE:
        return 4 + 1;
    case SL_MSG_ERROR:
        return 4 + 2;
    case SL_MSG_SECAGG_DOWN:
    case SL_MSG_SECAGG_UP:
        return 4 + 2;
    }
    return 0;
}

int sl_wire_encode(const sl_msg_t *m, sl_wire_buf_t *out)
{
    if (!m || !out)
        return sl_error(SL_EINVAL, "wire: encode: NULL argument");
    if (m->type < 1 || m->type > SL_MSG_TYPE_MAX)
        return sl_error(SL_EINVAL, "wire: encode: unknown type %d", (int)m->type);
    if (m->type == SL_MSG_HELLO && m->hello.n_modalities > SL_WIRE_MAX_MODS)
        return sl_error(SL_EINVAL, "wire: encode HELLO: %u modalities (max %d)", m->hello.n_modalities,
                        SL_WIRE_MAX_MODS);
    out->len = 0;
    enc_t e = {.err = 0};
    msgpack_packer_init(&e.pk, out, buf_write);
    if (msgpack_pack_map(&e.pk, field_count(m)))
        e.err = 1;
    put_u(&e, "v", m->version);
    put_u(&e, "t", (uint64_t)m->type);
    put_u(&e, "r", m->round);
    put_u(&e, "s", m->sender);
    switch (m->type) {
    case SL_MSG_HELLO:
        put_u(&e, "vmin", m->hello.version_min ? m->hello.version_min : SL_WIRE_VERSION_MIN);
        put_u(&e, "ex", m->hello.train_examples);
        put_u(&e, "tex", m->hello.test_examples);
        put_u(&e, "dim", m->hello.dim);
        put_u(&e, "lay", m->hello.layout);
        key(&e, "mods");
        if (msgpack_pack_array(&e.pk, m->hello.n_modalities))
            e.err = 1;
        for (uint32_t j = 0; j < m->hello.n_modalities; j++) {
            size_t n = strnlen(m->hello.modalities[j], SL_WIRE_MOD_NAME);
            if (msgpack_pack_str(&e.pk, n) || msgpack_pack_str_body(&e.pk, m->hello.modalities[j], n))
                e.err = 1;
        }
        break;
    case SL_MSG_WELCOME:
        put_u(&e, "cid", m->welcome.client_id);
        put_u(&e, "dim", m->welcome.dim);
        put_u(&e, "lay", m->welcome.layout);
        put_u(&e, "hb", m->welcome.heartbeat_ms);
        put_u(&e, "rounds", m->welcome.rounds);
        break;
    case SL_MSG_TASK:
        put_u(&e, "n", m->n);
        put_u(&e, "att", m->task.attempt);
        put_u(&e, "ep", m->task.local_epochs);
        put_u(&e, "st", m->task.local_steps);
        put_u(&e, "bs", m->task.batch_size);
        put_f(&e, "lr", m->task.lr);
        put_f(&e, "mu", m->task.fedprox_mu);
        put_b(&e, "eval", m->task.want_eval);
        put_b(&e, "sa", m->task.secagg);
        put_b(&e, "cred", m->task.ask_upload);
        put_u(&e, "dpm", m->task.dp_mode);
        put_f(&e, "dpc", m->task.dp_clip);
        put_f(&e, "dpz", m->task.dp_noise);
        break;
    case SL_MSG_UPDATE:
        put_u(&e, "n", m->n);
        put_u(&e, "ex", m->update.examples);
        put_u(&e, "steps", m->update.steps);
        put_f(&e, "loss", m->update.train_loss);
        put_f(&e, "secs", m->update.seconds);
        if (m->update.has_eval) {
            put_u(&e, "eex", m->update.eval_examples);
            put_f(&e, "eloss", m->update.eval_loss);
            put_f(&e, "eacc", m->update.eval_accuracy);
        }
        break;
    case SL_MSG_EVALUATE:
        put_u(&e, "n", m->n);
        break;
    case SL_MSG_RESULT:
        put_u(&e, "ex", m->eval.examples);
        put_f(&e, "loss", m->eval.loss);
        put_f(&e, "acc", m->eval.accuracy);
        put_f(&e, "f1", m->eval.macro_f1);
        break;
    case SL_MSG_HEARTBEAT:
    case SL_MSG_READY:
    case SL_MSG_GRANT:
        break;
    case SL_MSG_BYE:
        put_s(&e, "why", m->why);
        break;
    case SL_MSG_ERROR:
        put_i(&e, "code", m->code);
        put_s(&e, "why", m->why);
        break;
    case SL_MSG_SECAGG_DOWN:
    case SL_MSG_SECAGG_UP:
        put_u(&e, "n", m->n);
        put_u(&e, "stg", m->stage);
        break;
    }
    if (e.err)
        return sl_error(SL_ENOMEM, "wire: encode %s: out of memory", sl_msg_type_name((int)m->type));
    /* validate exactly as the peer will, so we never send what it must refuse */
    sl_msg_t check;
    int rc = decode_header(out->data, out->len, &check);
    if (rc)
        return sl_error_wrap(SL_EINVAL, "refusing to send");
    int kind = sl_msg_payload_kind(m->type);
    if (kind == 1 && m->n && !m->vec)
        return sl_error(SL_EINVAL, "wire: encode %s: n = %llu but no vector", sl_msg_type_name((int)m->type),
                        (unsigned long long)m->n);
    if (kind == 2 && m->n && !m->blob)
        return sl_error(SL_EINVAL, "wire: encode %s: n = %llu but no blob", sl_msg_type_name((int)m->type),
                        (unsigned long long)m->n);
    return 0;
}

/* ---- layout hash ----------------------------------------------------------------------- */

static void hash_u64(crypto_generichash_state *st, uint64_t v)
{
    uint8_t b[8];
    sl_put_le64(b, v);
    crypto_generichash_update(st, b, 8);
}

void sl_layout_hash_init(sl_layout_hash_t *h)
{
    crypto_generichash_state *st = (crypto_generichash_state *)(void *)h->state;
    crypto_generichash_init(st, (const uint8_t *)"starling-layout1", 16, 8);
}

void sl_layout_hash_add(sl_layout_hash_t *h, const char *name, const size_t *shape, size_t ndim,
                        size_t offset, size_t numel)
{
    crypto_generichash_state *st = (crypto_generichash_state *)(void *)h->state;
    size_t n = strlen(name);
    hash_u64(st, n);
    crypto_generichash_update(st, (const uint8_t *)name, n);
    hash_u64(st, ndim);
    for (size_t i = 0; i < ndim; i++)
        hash_u64(st, shape[i]);
    hash_u64(st, offset);
    hash_u64(st, numel);
}

uint64_t sl_layout_hash_final(sl_layout_hash_t *h)
{
    crypto_generichash_state *st = (crypto_generichash_state *)(void *)h->state;
    uint8_t out[8];
    crypto_generichash_final(st, out, sizeof out);
    uint64_t v = sl_get_le64(out);
    return v ? v : 1;
}
