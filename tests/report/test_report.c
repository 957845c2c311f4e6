/* coordinator/report: plots every series present, escapes text, names bad lines. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "coordinator/report.h"
#include "support/check.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static int count(const char *hay, const char *needle)
{
    int c = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        c++;
    return c;
}

int main(void)
{
    char dir[] = "/tmp/sl_test_report_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];

    CHECK_EQ(sl_report_write(dir, NULL), SL_ENOTFOUND);
    CHECK_CONTAINS(sl_last_error(), "metrics.jsonl");

    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    write_text(path, "{\"round\":1,\"accuracy\":0.5,\"train_loss\":2.0}\n"
                     "{\"round\":2,\"accuracy\":0.75,\"train_loss\":1.0,\"epsilon\":0.3}\n"
                     "\n"
                     "{\"round\":3,\"accuracy\":0.875,\"train_loss\":0.5,\"epsilon\":0.4}\n");
    snprintf(path, sizeof path, "%s/config.ini", dir);
    write_text(path, "[run]\nname = <script>\n");
    CHECK_EQ(sl_report_write(dir, NULL), 0);
    snprintf(path, sizeof path, "%s/report.html", dir);
    char *html = slurp(path);
    CHECK(html != NULL);
    if (html) {
        CHECK_EQ(count(html, "<polyline"), 3); /* accuracy, train_loss, epsilon */
        CHECK_CONTAINS(html, "3 rounds recorded");
        CHECK_CONTAINS(html, "name = &lt;script&gt;");
        CHECK(strstr(html, "<script>") == NULL);
        /* Accuracy spans 0.5 .. 0.875: both ends are axis labels. */
        CHECK_CONTAINS(html, ">0.5<");
        CHECK_CONTAINS(html, ">0.875<");
    }

    /* SecAgg+ stage objects: the stage times and dropouts are summed over the stages */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    write_text(path, "{\"round\":1,\"secagg\":{\"status\":\"completed\",\"included\":9,"
                     "\"advertise_keys\":{\"seconds\":0.25,\"dropped\":1},\"share_keys\":{\"seconds\":0.5,"
                     "\"dropped\":2},\"masked_input\":{\"seconds\":1,\"dropped\":0},"
                     "\"unmasking\":{\"seconds\":0.125,\"dropped\":3}}}\n"
                     "{\"round\":2,\"secagg\":{\"unmasking\":{\"seconds\":0.5,\"dropped\":0}}}\n");
    CHECK_EQ(sl_report_write(dir, NULL), 0);
    snprintf(path, sizeof path, "%s/report.html", dir);
    html = slurp(path);
    CHECK(html != NULL);
    if (html) {
        CHECK_EQ(count(html, "<polyline"), 3); /* stage time, unmasking time, dropouts */
        CHECK_CONTAINS(html, "SecAgg+: dropouts");
        CHECK_CONTAINS(html, ">1.875<"); /* round 1: 0.25 + 0.5 + 1 + 0.125 s, the top of its axis */
        CHECK_CONTAINS(html, ">6<");     /* round 1: 1 + 2 + 0 + 3 dropouts */
    }

    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    write_text(path, "{\"round\":1}\n[1,2]\n");
    CHECK_EQ(sl_report_write(dir, NULL), SL_EFORMAT);
    CHECK_CONTAINS(sl_last_error(), "metrics.jsonl:2: not a JSON object");

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_summary("test_report");
}
