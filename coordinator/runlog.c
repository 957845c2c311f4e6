#include "coordinator/runlog.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct sl_runlog {
    char dir[1024];
    char ckpt[1100];
    FILE *metrics;
    double best_accuracy;
    double best_central;
};

const char *sl_secagg_stage_key(int stage)
{
    static const char *const keys[SL_SECAGG_NSTAGES] = {"advertise_keys", "share_keys", "masked_input",
                                                        "unmasking"};
    return stage >= 0 && stage < SL_SECAGG_NSTAGES ? keys[stage] : "?";
}

void sl_round_report_init(sl_round_report_t *r, uint64_t round)
{
    memset(r, 0, sizeof *r);
    r->round = round;
    r->train_loss = r->eval_loss = r->accuracy = NAN;
    r->central_loss = r->central_accuracy = r->central_f1 = NAN;
    r->round_seconds = r->epsilon = NAN;
    for (int i = 0; i < SL_SECAGG_NSTAGES; i++)
        r->secagg.stage[i].seconds = NAN;
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return sl_error(SL_EINVAL, "run folder path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return sl_error(SL_EIO, "mkdir %s: %s", tmp, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return sl_error(SL_EIO, "mkdir %s: %s", tmp, strerror(errno));
    return 0;
}

int sl_runlog_new(sl_runlog_t **out, const sl_config_t *cfg, const char *dir)
{
    *out = NULL;
    sl_runlog_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return sl_error(SL_ENOMEM, "runlog: out of memory");
    rl->best_accuracy = rl->best_central = NAN;
    int rc = 0;
    if (dir)
        snprintf(rl->dir, sizeof rl->dir, "%s", dir);
    else
        snprintf(rl->dir, sizeof rl->dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    char path[1200];
    snprintf(path, sizeof path, "%s/checkpoints", rl->dir);
    if ((rc = mkdirs(path)))
        goto fail;
    snprintf(rl->ckpt, sizeof rl->ckpt, "%s/checkpoints/last.ckpt", rl->dir);
    snprintf(path, sizeof path, "%s/config.ini", rl->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    rc = sl_config_write(cfg, f);
    if (fclose(f) != 0 && !rc)
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
    if (rc)
        goto fail;
    snprintf(path, sizeof path, "%s/metrics.jsonl", rl->dir);
    rl->metrics = fopen(path, "a");
    if (!rl->metrics) {
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    *out = rl;
    return 0;
fail:
    sl_runlog_destroy(&rl);
    return rc;
}

void sl_runlog_destroy(sl_runlog_t **prl)
{
    if (!prl || !*prl)
        return;
    if ((*prl)->metrics)
        fclose((*prl)->metrics);
    free(*prl);
    *prl = NULL;
}

const char *sl_runlog_dir(const sl_runlog_t *rl)
{
    return rl->dir;
}
const char *sl_runlog_checkpoint_path(const sl_runlog_t *rl)
{
    return rl->ckpt;
}

static void add_num(cJSON *o, const char *k, double v, int *err)
{
    if (isnan(v))
        return;
    if (!cJSON_AddNumberToObject(o, k, v))
        *err = 1;
}

static void add_str(cJSON *o, const char *k, const char *v, int *err)
{
    if (!cJSON_AddStringToObject(o, k, v))
        *err = 1;
}

/* The "secagg" object: stages that never opened are left out. */
static cJSON *secagg_obj(const sl_secagg_report_t *sa)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int err = 0;
    add_str(o, "status", sa->completed ? "completed" : "aborted", &err);
    if (!sa->completed)
        add_str(o, "reason", sa->reason, &err);
    add_num(o, "included", (double)sa->included, &err);
    add_num(o, "aborted_attempts", (double)sa->aborted_attempts, &err);
    if (sa->aborted_attempts)
        add_str(o, "last_abort", sa->last_abort, &err);
    for (int i = 0; i < SL_SECAGG_NSTAGES && !err; i++) {
        const sl_secagg_stage_report_t *st = &sa->stage[i];
        if (isnan(st->seconds))
            continue;
        cJSON *so = cJSON_CreateObject();
        if (!so || !cJSON_AddItemToObject(o, sl_secagg_stage_key(i), so)) {
            cJSON_Delete(so);
            err = 1;
            break;
        }
        add_num(so, "seconds", st->seconds, &err);
        add_num(so, "bytes_up", (double)st->bytes_up, &err);
        add_num(so, "bytes_down", (double)st->bytes_down, &err);
        add_num(so, "entered", (double)st->entered, &err);
        add_num(so, "dropped", (double)st->dropped, &err);
    }
    if (err) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *report_obj(const sl_round_report_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int err = 0;
    add_num(o, "round", (double)r->round, &err);
    add_num(o, "attempt", r->attempt, &err);
    add_num(o, "sampled", (double)r->sampled, &err);
    add_num(o, "reported", (double)r->reported, &err);
    add_num(o, "dropped", (double)r->dropped, &err);
    add_num(o, "rejected", (double)r->rejected, &err);
    add_num(o, "late", (double)r->late, &err);
    add_num(o, "train_loss", r->train_loss, &err);
    add_num(o, "eval_loss", r->eval_loss, &err);
    add_num(o, "accuracy", r->accuracy, &err);
    if (!isnan(r->accuracy))
        add_num(o, "eval_examples", (double)r->eval_examples, &err);
    add_num(o, "central_loss", r->central_loss, &err);
    add_num(o, "central_accuracy", r->central_accuracy, &err);
    add_num(o, "central_macro_f1", r->central_f1, &err);
    add_num(o, "bytes_up", (double)r->bytes_up, &err);
    add_num(o, "bytes_down", (double)r->bytes_down, &err);
    add_num(o, "round_seconds", r->round_seconds, &err);
    add_num(o, "epsilon", r->epsilon, &err);
    if (!err && r->secagg.on) {
        cJSON *sa = secagg_obj(&r->secagg);
        if (!sa || !cJSON_AddItemToObject(o, "secagg", sa)) {
            cJSON_Delete(sa);
            err = 1;
        }
    }
    if (err) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int sl_round_report_json(const sl_round_report_t *r, char **out)
{
    *out = NULL;
    cJSON *o = report_obj(r);
    if (!o)
        return sl_error(SL_ENOMEM, "runlog: out of memory");
    *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return *out ? 0 : sl_error(SL_ENOMEM, "runlog: out of memory");
}

int sl_runlog_round(sl_runlog_t *rl, const sl_round_report_t *r)
{
    char *s = NULL;
    int rc = sl_round_report_json(r, &s);
    if (rc)
        return rc;
    if (fprintf(rl->metrics, "%s\n", s) < 0 || fflush(rl->metrics) != 0)
        rc = sl_error(SL_EIO, "%s/metrics.jsonl: %s", rl->dir, strerror(errno));
    free(s);
    if (!isnan(r->accuracy) && (isnan(rl->best_accuracy) || r->accuracy > rl->best_accuracy))
        rl->best_accuracy = r->accuracy;
    if (!isnan(r->central_accuracy) && (isnan(rl->best_central) || r->central_accuracy > rl->best_central))
        rl->best_central = r->central_accuracy;
    return rc;
}

int sl_runlog_summary(sl_runlog_t *rl, const char *status, uint64_t rounds_completed,
                      const sl_round_report_t *last, double total_seconds)
{
    int rc = 0, err = 0;
    char *text = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return sl_error(SL_ENOMEM, "runlog: out of memory");
    if (!cJSON_AddStringToObject(o, "status", status ? status : "unknown"))
        err = 1;
    add_num(o, "rounds_completed", (double)rounds_completed, &err);
    add_num(o, "total_seconds", total_seconds, &err);
    add_num(o, "best_accuracy", rl->best_accuracy, &err);
    add_num(o, "best_central_accuracy", rl->best_central, &err);
    if (last) {
        cJSON *l = report_obj(last);
        if (!l || !cJSON_AddItemToObject(o, "last_round", l))
            err = 1;
    }
    text = err ? NULL : cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return sl_error(SL_ENOMEM, "runlog: out of memory");
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/summary.json", rl->dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = sl_error(SL_EIO, "%s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    int bad = fprintf(f, "%s\n", text) < 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0)
        rc = sl_error(SL_EIO, "%s: %s", path, strerror(errno));
cleanup:
    free(text);
    return rc;
}
