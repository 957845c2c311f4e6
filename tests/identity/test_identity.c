/* coordinator/identity: a client id answers only to the CURVE key that first claimed it. */
#include <stdio.h>

#include "coordinator/identity.h"
#include "support/check.h"

static sl_peer_t peer_with(const char *key)
{
    sl_peer_t p = {0};
    p.len = 5;
    snprintf(p.user_id, sizeof p.user_id, "%s", key);
    return p;
}

int main(void)
{
    const char *a = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *b = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    sl_identity_t *id = NULL;
    CHECK_EQ(sl_identity_new(&id, 1), 0);
    sl_peer_t pa = peer_with(a), pb = peer_with(b), anon = peer_with("");
    sl_hello_info_t hello = {0};

    CHECK_EQ(sl_identity_authorize(id, 7, &pa, &hello), 0);  /* first claim binds */
    CHECK_EQ(sl_identity_authorize(id, 7, &pa, &hello), 0);  /* same key again: fine */
    CHECK_EQ(sl_identity_authorize(id, 8, &pa, &hello), 0);  /* one device, many virtual clients */
    CHECK_EQ(sl_identity_authorize(id, 7, &pb, &hello), SL_EPERM); /* another key may not */
    CHECK_CONTAINS(sl_last_error(), "client 7 belongs to key");
    CHECK_EQ(sl_identity_authorize(id, 9, &anon, &hello), SL_EPERM); /* CURVE required */
    CHECK_EQ(sl_identity_bind(id, 0, a), SL_EPERM);
    /* Many ids: the table grows and keeps every binding. */
    for (uint64_t c = 100; c < 5100; c++)
        CHECK_EQ(sl_identity_bind(id, c, (c % 2) ? a : b), 0);
    int refused = 0;
    for (uint64_t c = 100; c < 5100; c++)
        refused += sl_identity_bind(id, c, (c % 2) ? b : a) == SL_EPERM;
    CHECK_EQ(refused, 5000);
    sl_identity_destroy(&id);
    CHECK(id == NULL);

    /* Without CURVE (net.insecure) there is no key to bind: admitted. */
    CHECK_EQ(sl_identity_new(&id, 0), 0);
    CHECK_EQ(sl_identity_authorize(id, 3, &anon, &hello), 0);
    sl_identity_destroy(&id);
    return check_summary("test_identity");
}
