/* core/config: every key type, ranges, unknown keys with suggestions, file:line in
 * messages, overrides, and a write/load round trip of the effective configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/config.h"
#include "support/check.h"

static int load_text(sl_config_t *cfg, const char *text)
{
    sl_config_defaults(cfg);
    return sl_config_load_string(cfg, text, "t.ini");
}

int main(void)
{
    sl_config_t c;
    sl_config_defaults(&c);
    CHECK_EQ(sl_config_validate(&c), 0);
    CHECK_EQ(c.run.seed, 42);
    CHECK_EQ(c.federation.strategy, SL_STRAT_FEDAVG);
    CHECK(strcmp(c.run.log_level, "info") == 0);

    /* Every type parses. */
    CHECK_EQ(load_text(&c, "[run]\nname = exp1\nseed = 7\nlog_level = WARN\n"
                           "[dp]\nmode = central\nnoise_multiplier = 1.5\nadaptive_clip = yes\n"
                           "[federation]\nstrategy = fedyogi\nrounds=3\n"),
             0);
    CHECK(strcmp(c.run.name, "exp1") == 0);
    CHECK_EQ(c.run.seed, 7);
    CHECK(strcmp(c.run.log_level, "warn") == 0);
    CHECK_EQ(c.dp.mode, SL_DP_CENTRAL);
    CHECK_NEAR(c.dp.noise_multiplier, 1.5, 0);
    CHECK_EQ(c.dp.adaptive_clip, 1);
    CHECK_EQ(c.federation.strategy, SL_STRAT_FEDYOGI);
    CHECK_EQ(c.federation.rounds, 3);

    /* Bad values name file, line, section, key, expectation and the value. */
    CHECK_EQ(load_text(&c, "[dp]\n\nnoise_multiplier = abc\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "config t.ini:3: [dp] noise_multiplier: expected a number >= 0, got \"abc\"");
    CHECK_EQ(load_text(&c, "[dp]\nnoise_multiplier = -1\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "t.ini:2");
    CHECK_EQ(load_text(&c, "[federation]\nrounds = 0\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "expected an integer in [1, 1000000], got \"0\"");
    CHECK_EQ(load_text(&c, "[federation]\nrounds = 2.5\n"), SL_ECONFIG);
    CHECK_EQ(load_text(&c, "[federation]\nrounds = 99999999999999999999\n"), SL_ECONFIG);
    CHECK_EQ(load_text(&c, "[dp]\nclip = nan\n"), SL_ECONFIG);
    CHECK_EQ(load_text(&c, "[dp]\nadaptive_clip = maybe\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "expected true or false");
    CHECK_EQ(load_text(&c, "[dp]\nmode = strong\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "expected one of off,central,distributed,local, got \"strong\"");
    CHECK_EQ(load_text(&c, "[run]\nlog_level = loud\n"), SL_ECONFIG);

    /* Unknown keys and sections, with suggestions. */
    CHECK_EQ(load_text(&c, "[dp]\nnoise_multipler = 1\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "t.ini:2: [dp] unknown key \"noise_multipler\" (did you mean \"noise_multiplier\"?)");
    CHECK_EQ(load_text(&c, "[federaton]\nrounds = 1\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "unknown section [federaton] (did you mean [federation]?)");
    CHECK_EQ(load_text(&c, "[dp]\nzzzzzzzz = 1\n"), SL_ECONFIG);
    CHECK(strstr(sl_last_error(), "did you mean") == NULL);
    CHECK_EQ(load_text(&c, "rounds = 1\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "outside any [section]");
    CHECK_EQ(load_text(&c, "[dp\n"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "t.ini:1: syntax error");

    /* Overrides. */
    sl_config_defaults(&c);
    CHECK_EQ(sl_config_set(&c, "train.lr=0.5"), 0);
    CHECK_NEAR(c.train.lr, 0.5, 0);
    CHECK_EQ(sl_config_set(&c, "train.lr"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "expected section.key=value");
    CHECK_EQ(sl_config_set(&c, "train.lrr=1"), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "did you mean \"lr\"");
    CHECK_EQ(sl_config_set(&c, "net.bind=ipc:///tmp/x=y"), 0); /* '=' inside the value */
    CHECK(strcmp(c.net.bind, "ipc:///tmp/x=y") == 0);

    /* Cross-key validation. */
    sl_config_defaults(&c);
    CHECK_EQ(sl_config_set(&c, "model.heads=3"), 0);
    CHECK_EQ(sl_config_validate(&c), SL_ECONFIG);
    CHECK_CONTAINS(sl_last_error(), "must divide d_model");

    /* Files: missing file is named; write -> load gives the same configuration. */
    sl_config_defaults(&c);
    CHECK_EQ(sl_config_load(&c, "/nonexistent/run.ini"), SL_ENOTFOUND);
    CHECK_CONTAINS(sl_last_error(), "/nonexistent/run.ini");
    CHECK_EQ(load_text(&c, "[run]\nname = rt\n[dp]\nmode = local\nclip = 0.1\n[secagg]\nenabled = true\n"), 0);
    char path[] = "/tmp/sl_test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK_EQ(sl_config_write(&c, f), 0);
    fclose(f);
    sl_config_t back;
    sl_config_defaults(&back);
    CHECK_EQ(sl_config_load(&back, path), 0);
    CHECK(memcmp(&c, &back, sizeof c) == 0);
    unlink(path);

    /* The reference lists every section. */
    char *doc = NULL;
    size_t doclen = 0;
    FILE *m = open_memstream(&doc, &doclen);
    CHECK_EQ(sl_config_describe(m), 0);
    fclose(m);
    CHECK_CONTAINS(doc, "## [federation]");
    CHECK_CONTAINS(doc, "| `noise_multiplier` |");
    free(doc);
    CHECK(strcmp(sl_config_enum_name("federation", "strategy", SL_STRAT_MEDIAN), "median") == 0);
    CHECK(sl_config_enum_name("federation", "strategy", 99) == NULL);
    return check_summary("test_config");
}
