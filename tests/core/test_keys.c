/* core/keys: key files round trip, unsafe permissions refused, allow-lists. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/keys.h"
#include "support/check.h"

int main(void)
{
    char dir[] = "/tmp/sl_test_keys_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char prefix[256], path[256];

    sl_keypair_t kp, back;
    CHECK_EQ(sl_keypair_generate(&kp), 0);
    CHECK(sl_z85_key_valid(kp.public_z85));
    CHECK(sl_z85_key_valid(kp.secret_z85));
    CHECK(strcmp(kp.public_z85, kp.secret_z85) != 0);
    CHECK_EQ(sl_keypair_save(&kp, dir, "a"), 0);
    snprintf(prefix, sizeof prefix, "%s/a", dir);
    CHECK_EQ(sl_keypair_load(&back, prefix), 0);
    CHECK(strcmp(kp.public_z85, back.public_z85) == 0);
    CHECK(strcmp(kp.secret_z85, back.secret_z85) == 0);

    /* The secret file is 0600; a second save never overwrites it. */
    struct stat st;
    snprintf(path, sizeof path, "%s/a.secret", dir);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_EQ(sl_keypair_save(&kp, dir, "a"), SL_EPERM);

    /* A world-readable secret key is refused, naming the file and the fix. */
    CHECK(chmod(path, 0644) == 0);
    CHECK_EQ(sl_keypair_load(&back, prefix), SL_EPERM);
    CHECK_CONTAINS(sl_last_error(), "has mode 0644");
    CHECK_CONTAINS(sl_last_error(), "chmod 600");
    CHECK(chmod(path, 0600) == 0);

    /* A .pub that does not belong to the .secret is refused. */
    sl_keypair_t other;
    CHECK_EQ(sl_keypair_generate(&other), 0);
    CHECK_EQ(sl_keypair_save(&other, dir, "b"), 0);
    char bpub[256];
    snprintf(bpub, sizeof bpub, "%s/b.pub", dir);
    snprintf(path, sizeof path, "%s/a.pub", dir);
    CHECK(rename(bpub, path) == 0);
    CHECK_EQ(sl_keypair_load(&back, prefix), SL_ECRYPTO);
    CHECK_CONTAINS(sl_last_error(), "does not match");

    /* Public keys inline or from files; garbage rejected. */
    char key[SL_Z85_KEY_LEN + 1];
    CHECK_EQ(sl_public_key_resolve(kp.public_z85, key), 0);
    CHECK(strcmp(key, kp.public_z85) == 0);
    CHECK_EQ(sl_public_key_resolve(path, key), 0);
    CHECK(strcmp(key, other.public_z85) == 0);
    CHECK(sl_public_key_resolve("/nonexistent.pub", key) == SL_ENOTFOUND);
    /* A path that is itself 40 valid Z85 characters names the file, not a key (this pinned
     * a key nobody had whenever a run folder's path had the wrong length). */
    char zdir[] = "/tmp/slkeys-XXXXXX"; /* 18 Z85 characters ('_' is not one) */
    CHECK(mkdtemp(zdir) != NULL);
    CHECK_EQ(sl_keypair_save(&other, zdir, "abcdefghijklmnopq"), 0);
    char zpath[64];
    snprintf(zpath, sizeof zpath, "%s/abcdefghijklmnopq.pub", zdir);
    CHECK_EQ(strlen(zpath), SL_Z85_KEY_LEN);
    CHECK(sl_z85_key_valid(zpath)); /* the ambiguity is real */
    CHECK_EQ(sl_public_key_resolve(zpath, key), 0);
    CHECK(strcmp(key, other.public_z85) == 0);
    char rmcmd[128];
    snprintf(rmcmd, sizeof rmcmd, "rm -rf '%s'", zdir);
    CHECK(system(rmcmd) == 0);
    CHECK(!sl_z85_key_valid("short"));

    /* Fingerprints are stable and distinct. */
    char f1[17], f2[17], f3[17];
    sl_key_fingerprint(kp.public_z85, f1);
    sl_key_fingerprint(kp.public_z85, f2);
    sl_key_fingerprint(other.public_z85, f3);
    CHECK(strcmp(f1, f2) == 0 && strcmp(f1, f3) != 0 && strlen(f1) == 16);

    /* Allow-list from a file (comments, blank lines) and from a folder of .pub files. */
    snprintf(path, sizeof path, "%s/allow.txt", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "# clients\n\n  %s  # device 1\n", kp.public_z85);
    fclose(f);
    sl_allowlist_t list = {0};
    CHECK_EQ(sl_allowlist_load(&list, path), 0);
    CHECK_EQ(list.count, 1);
    CHECK(sl_allowlist_contains(&list, kp.public_z85));
    CHECK(!sl_allowlist_contains(&list, other.public_z85));
    /* A bad reload keeps the old list. */
    f = fopen(path, "a");
    fprintf(f, "not-a-key\n");
    fclose(f);
    CHECK_EQ(sl_allowlist_load(&list, path), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "allow.txt:4");
    CHECK_EQ(list.count, 1);
    CHECK(unlink(path) == 0);
    CHECK_EQ(sl_allowlist_load(&list, dir), 0); /* a.pub (b's key) and b.pub was moved */
    CHECK_EQ(list.count, 1);
    CHECK(sl_allowlist_contains(&list, other.public_z85));
    sl_allowlist_free(&list);

    sl_keypair_wipe(&kp);
    CHECK(kp.secret_z85[0] == '\0');
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_keys");
}
