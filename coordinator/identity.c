#include "coordinator/identity.h"

#include "core/keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing on client id; key "" never stored (require_key = 0 lets it through). */
typedef struct {
    uint64_t client; /* 0 = empty slot (client ids are never 0) */
    char key[SL_USER_ID_MAX + 1];
} slot_t;

struct sl_identity {
    slot_t *slots;
    size_t cap, used;
    int require_key;
};

int sl_identity_new(sl_identity_t **out, int require_key)
{
    *out = NULL;
    sl_identity_t *id = calloc(1, sizeof *id);
    if (!id)
        return sl_error(SL_ENOMEM, "identity: out of memory");
    id->cap = 64;
    id->slots = calloc(id->cap, sizeof *id->slots);
    if (!id->slots) {
        free(id);
        return sl_error(SL_ENOMEM, "identity: out of memory");
    }
    id->require_key = require_key;
    *out = id;
    return 0;
}

void sl_identity_destroy(sl_identity_t **idp)
{
    if (!idp || !*idp)
        return;
    free((*idp)->slots);
    free(*idp);
    *idp = NULL;
}

static size_t slot_of(const slot_t *slots, size_t cap, uint64_t client)
{
    size_t i = (size_t)((client * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
    while (slots[i].client != 0 && slots[i].client != client)
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(sl_identity_t *id)
{
    size_t ncap = id->cap * 2;
    slot_t *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return sl_error(SL_ENOMEM, "identity: out of memory");
    for (size_t i = 0; i < id->cap; i++)
        if (id->slots[i].client)
            ns[slot_of(ns, ncap, id->slots[i].client)] = id->slots[i];
    free(id->slots);
    id->slots = ns;
    id->cap = ncap;
    return 0;
}

int sl_identity_bind(sl_identity_t *id, uint64_t client_id, const char *user_id)
{
    if (!user_id[0]) {
        if (id->require_key)
            return sl_error(SL_EPERM, "client %llu: no authenticated key", (unsigned long long)client_id);
        return 0;
    }
    if (client_id == 0)
        return sl_error(SL_EPERM, "client id 0 is reserved");
    size_t i = slot_of(id->slots, id->cap, client_id);
    if (id->slots[i].client == client_id) {
        if (strcmp(id->slots[i].key, user_id) == 0)
            return 0;
        char claimed[17], bound[17];
        sl_key_fingerprint(user_id, claimed);
        sl_key_fingerprint(id->slots[i].key, bound);
        return sl_error(SL_EPERM, "client %llu belongs to key %s; key %s may not speak for it",
                        (unsigned long long)client_id, bound, claimed);
    }
    if (2 * (id->used + 1) > id->cap) {
        int rc = grow(id);
        if (rc)
            return rc;
        i = slot_of(id->slots, id->cap, client_id);
    }
    id->slots[i].client = client_id;
    snprintf(id->slots[i].key, sizeof id->slots[i].key, "%s", user_id);
    id->used++;
    return 0;
}

int sl_identity_authorize(void *ctx, uint64_t client_id, const sl_peer_t *peer, const sl_hello_info_t *hello)
{
    (void)hello;
    return sl_identity_bind(ctx, client_id, peer->user_id);
}
