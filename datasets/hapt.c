/* hapt: the bundled HAPT v2.1 raw signals (datasets/data/hapt, SOURCE.txt).
 *
 * Each experiment's acc and gyro files (gzip, 3 columns, 50 Hz) are decoded once with
 * zlib into float32 (two threads); windows of 128 samples with step 64 are cut inside
 * every labelled segment of RawData/labels.txt (rows start..end, 1-based, inclusive), so a
 * window is just (experiment, first row, label) and fill() copies 128 x 3 floats per
 * modality. Scaling uses fixed constants (acc in g times acc_scale, gyro in rad/s times
 * gyro_scale; both default 1) or, with normalize=public, statistics of the public users
 * only, so nothing from the clients or the test users leaks into the inputs.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "datasets/builtins.h"

#define WIN 128
#define STEP 64
#define N_USERS 30
#define MAX_EXP 64

static const char *const activity_names[12] = {"WALKING",      "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS",
                                               "SITTING",      "STANDING",         "LAYING",
                                               "STAND_TO_SIT", "SIT_TO_STAND",     "SIT_TO_LIE",
                                               "LIE_TO_SIT",   "STAND_TO_LIE",     "LIE_TO_STAND"};
static const int test_users[] = {2, 4, 9, 10, 12, 13, 18, 20, 24};
static const char default_public[] = "1,3,5,6,7";

typedef struct {
    int exp, user;
    size_t rows;
    float *acc, *gyro; /* (rows, 3) each */
} experiment_t;

typedef struct {
    uint32_t exp;   /* index into experiments */
    uint32_t start; /* first row, 0-based */
    int32_t label;
} window_t;

typedef struct {
    sl_schema_t schema;
    size_t n_classes;
    experiment_t exps[MAX_EXP];
    size_t n_exps;
    window_t *windows; /* grouped by user, in file order */
    size_t n_windows;
    size_t n_groups;
    int group_user[N_USERS];
    sl_group_role_t group_role[N_USERS];
    size_t group_first[N_USERS + 1];
} hapt_t;

static const sl_dataset_option_t hapt_options[] = {
    {"public_users", default_public,
     "train users kept out of federation as the public (pretraining) split; 'none' for no public split"},
    {"acc_scale", "1", "fixed factor applied to acceleration (in g)"},
    {"gyro_scale", "1", "fixed factor applied to angular velocity (in rad/s)"},
    {"normalize", "fixed", "fixed: units times acc_scale/gyro_scale; public: also standardize each channel by the "
                           "mean and std of the public users' windows"},
    {NULL, NULL, NULL}};

/* ---- parsing ------------------------------------------------------------------------------- */

static const double pow10_tab[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* One decimal number at *pp (< end); advances *pp. Returns 0 or -1 on no number. Fast path
 * for up to 19 significant digits without huge exponents, strtod otherwise. */
static int parse_number(const char **pp, const char *end, double *out)
{
    const char *p = *pp, *start = p;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    uint64_t mant = 0;
    int digits = 0, exp10 = 0, any = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (digits < 19) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            if (mant)
                digits++;
        } else {
            exp10++;
        }
        p++;
        any = 1;
    }
    if (p < end && *p == '.') {
        p++;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mant = mant * 10 + (uint64_t)(*p - '0');
                if (mant)
                    digits++;
                exp10--;
            }
            p++;
            any = 1;
        }
    }
    if (!any)
        return -1;
    int slow = 0;
    if (p < end && (*p == 'e' || *p == 'E'))
        slow = 1;
    if (digits >= 19 || exp10 < -22 || exp10 > 22)
        slow = 1;
    if (slow) {
        char tmp[64];
        const char *q = p;
        if (q < end && (*q == 'e' || *q == 'E')) {
            q++;
            if (q < end && (*q == '-' || *q == '+'))
                q++;
            while (q < end && *q >= '0' && *q <= '9')
                q++;
        }
        size_t len = (size_t)(q - start);
        if (len >= sizeof tmp)
            return -1;
        memcpy(tmp, start, len);
        tmp[len] = '\0';
        char *e;
        *out = strtod(tmp, &e);
        if ((size_t)(e - tmp) != len)
            return -1;
        *pp = q;
        return 0;
    }
    double v = (double)mant;
    v = exp10 < 0 ? v / pow10_tab[-exp10] : v * pow10_tab[exp10];
    *out = neg ? -v : v;
    *pp = p;
    return 0;
}

/* Read a gzip text file of rows of 3 numbers into a malloc'd (rows, 3) float array. */
static int read_xyz(const char *path, float scale, float **out, size_t *rows_out, char *err, size_t err_len)
{
    *out = NULL;
    *rows_out = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
        return SL_EIO;
    }
    gzbuffer(f, 1 << 17);
    size_t cap = 1 << 22, len = 0;
    char *text = malloc(cap);
    float *vals = NULL;
    int rc = 0;
    if (!text) {
        rc = SL_ENOMEM;
        snprintf(err, err_len, "%s: out of memory", path);
        goto cleanup;
    }
    for (;;) {
        if (cap - len < (1 << 20)) {
            char *t = realloc(text, cap * 2);
            if (!t) {
                rc = SL_ENOMEM;
                snprintf(err, err_len, "%s: out of memory", path);
                goto cleanup;
            }
            text = t;
            cap *= 2;
        }
        int got = gzread(f, text + len, (unsigned)(cap - len));
        if (got < 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            snprintf(err, err_len, "%s: gzip error: %s", path, m ? m : "?");
            rc = SL_EFORMAT;
            goto cleanup;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    lines += len && text[len - 1] != '\n';
    vals = malloc((lines ? lines : 1) * 3 * sizeof *vals);
    if (!vals) {
        rc = SL_ENOMEM;
        snprintf(err, err_len, "%s: out of memory", path);
        goto cleanup;
    }
    const char *p = text, *end = text + len;
    size_t row = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q == eol) { /* blank line */
            p = eol + 1;
            continue;
        }
        for (int c = 0; c < 3; c++) {
            while (q < eol && (*q == ' ' || *q == '\t'))
                q++;
            double v;
            if (parse_number(&q, eol, &v) != 0) {
                snprintf(err, err_len, "%s:%zu: expected 3 numbers per row", path, row + 1);
                rc = SL_EFORMAT;
                goto cleanup;
            }
            vals[row * 3 + (size_t)c] = (float)v * scale;
        }
        while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q != eol) {
            snprintf(err, err_len, "%s:%zu: more than 3 values in a row", path, row + 1);
            rc = SL_EFORMAT;
            goto cleanup;
        }
        row++;
        p = eol + 1;
    }
    *out = vals;
    *rows_out = row;
    vals = NULL;
cleanup:
    gzclose(f);
    free(text);
    free(vals);
    return rc ? -(rc < 0 ? -rc : rc) : 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

typedef struct {
    hapt_t *h;
    const char *dir;
    float acc_scale, gyro_scale;
    pthread_mutex_t lock;
    size_t next;
    int rc;
    char err[512];
} loader_t;

static void *load_worker(void *arg)
{
    loader_t *L = arg;
    for (;;) {
        pthread_mutex_lock(&L->lock);
        size_t i = L->next++;
        int stop = L->rc != 0;
        pthread_mutex_unlock(&L->lock);
        if (stop || i >= L->h->n_exps)
            return NULL;
        experiment_t *e = &L->h->exps[i];
        char path[1200], err[512] = "";
        size_t rows_acc = 0, rows_gyro = 0;
        snprintf(path, sizeof path, "%s/RawData/acc_exp%02d_user%02d.txt.gz", L->dir, e->exp, e->user);
        int rc = read_xyz(path, L->acc_scale, &e->acc, &rows_acc, err, sizeof err);
        if (!rc) {
            snprintf(path, sizeof path, "%s/RawData/gyro_exp%02d_user%02d.txt.gz", L->dir, e->exp, e->user);
            rc = read_xyz(path, L->gyro_scale, &e->gyro, &rows_gyro, err, sizeof err);
        }
        if (!rc && rows_acc != rows_gyro) {
            snprintf(err, sizeof err, "experiment %d: acc has %zu rows but gyro has %zu", e->exp, rows_acc, rows_gyro);
            rc = SL_EFORMAT;
        }
        e->rows = rows_acc;
        if (rc) {
            pthread_mutex_lock(&L->lock);
            if (!L->rc) {
                L->rc = rc;
                memcpy(L->err, err, sizeof L->err);
            }
            pthread_mutex_unlock(&L->lock);
        }
    }
}

typedef struct {
    int exp, user, act;
    long start, end;
} segment_t;

static void hapt_close(void *state)
{
    hapt_t *h = state;
    if (!h)
        return;
    for (size_t i = 0; i < h->n_exps; i++) {
        free(h->exps[i].acc);
        free(h->exps[i].gyro);
    }
    free(h->windows);
    free(h);
}

/* normalize=public: per-channel mean and std over the public users' windows only (no
 * client or test statistic is used), then every stored sample becomes (x - mean) / std. */
static int standardize_public(hapt_t *h)
{
    double sum[6] = {0}, sum2[6] = {0};
    size_t count = 0;
    for (size_t g = 0; g < h->n_groups; g++) {
        if (h->group_role[g] != SL_GROUP_PUBLIC)
            continue;
        for (size_t w = h->group_first[g]; w < h->group_first[g + 1]; w++) {
            const experiment_t *e = &h->exps[h->windows[w].exp];
            for (size_t r = h->windows[w].start; r < (size_t)h->windows[w].start + WIN; r++)
                for (int c = 0; c < 3; c++) {
                    double a = e->acc[r * 3 + (size_t)c], b = e->gyro[r * 3 + (size_t)c];
                    sum[c] += a;
                    sum2[c] += a * a;
                    sum[3 + c] += b;
                    sum2[3 + c] += b * b;
                }
            count += WIN;
        }
    }
    if (count < 2)
        return sl_error(SL_ECONFIG, "dataset hapt: normalize=public needs public users (public_users is none)");
    float mean[6], inv[6];
    for (int c = 0; c < 6; c++) {
        double m = sum[c] / (double)count, var = sum2[c] / (double)count - m * m;
        mean[c] = (float)m;
        inv[c] = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
    }
    for (size_t i = 0; i < h->n_exps; i++)
        for (size_t r = 0; r < h->exps[i].rows; r++)
            for (int c = 0; c < 3; c++) {
                float *a = &h->exps[i].acc[r * 3 + (size_t)c], *b = &h->exps[i].gyro[r * 3 + (size_t)c];
                *a = (*a - mean[c]) * inv[c];
                *b = (*b - mean[3 + c]) * inv[3 + c];
            }
    return 0;
}

static int is_test_user(int u)
{
    for (size_t i = 0; i < sizeof test_users / sizeof test_users[0]; i++)
        if (test_users[i] == u)
            return 1;
    return 0;
}

static int hapt_open(void **state, const sl_dataset_args_t *args, char *err, size_t err_len)
{
    *state = NULL;
    int rc = 0;
    segment_t *segs = NULL;
    size_t n_segs = 0, cap_segs = 0;
    FILE *lf = NULL;
    hapt_t *h = calloc(1, sizeof *h);
    if (!h)
        return sl_error(SL_ENOMEM, "hapt: out of memory");

    /* options */
    size_t classes = args->classes ? args->classes : 6;
    if (classes != 6 && classes != 12) {
        rc = sl_error(SL_ECONFIG, "dataset hapt: data.classes must be 6 (activities 1-6) or 12, got %zu", classes);
        goto cleanup;
    }
    double acc_scale = 1.0, gyro_scale = 1.0;
    if ((rc = sl_dsopt_double("hapt", "acc_scale", sl_dataset_args_get(args, "acc_scale"), 1e-6, 1e6, &acc_scale)) ||
        (rc = sl_dsopt_double("hapt", "gyro_scale", sl_dataset_args_get(args, "gyro_scale"), 1e-6, 1e6, &gyro_scale)))
        goto cleanup;
    int standardize = 0;
    const char *norm = sl_dataset_args_get(args, "normalize");
    if (norm && strcmp(norm, "public") == 0)
        standardize = 1;
    else if (norm && strcmp(norm, "fixed") != 0) {
        rc = sl_error(SL_ECONFIG, "dataset hapt: option normalize: expected fixed or public, got \"%s\"", norm);
        goto cleanup;
    }
    int public_user[N_USERS + 1] = {0};
    const char *pub = sl_dataset_args_get(args, "public_users");
    if (!pub)
        pub = default_public;
    if (strcmp(pub, "none") != 0 && pub[0]) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", pub);
        char *save = NULL;
        for (char *t = strtok_r(tmp, ",:; ", &save); t; t = strtok_r(NULL, ",:; ", &save)) {
            int64_t u = 0;
            if ((rc = sl_dsopt_int("hapt", "public_users", t, 1, N_USERS, &u)))
                goto cleanup;
            if (is_test_user((int)u)) {
                rc = sl_error(SL_ECONFIG,
                              "dataset hapt: option public_users: user %d is an official test user (test users: 2 4 9 "
                              "10 12 13 18 20 24)",
                              (int)u);
                goto cleanup;
            }
            public_user[u] = 1;
        }
    }

    /* locate the data */
    char dir[1100];
    if (args->path && args->path[0])
        snprintf(dir, sizeof dir, "%s", args->path);
    else if (args->data_dir && args->data_dir[0])
        snprintf(dir, sizeof dir, "%s/hapt", args->data_dir);
    else {
        rc = sl_error(SL_ENOTFOUND, "dataset hapt: no bundled data folder found (set STARLING_DATA_DIR or data.path)");
        goto cleanup;
    }
    char path[1200];
    snprintf(path, sizeof path, "%s/RawData/labels.txt", dir);
    lf = fopen(path, "r");
    if (!lf) {
        rc = sl_error(SL_ENOTFOUND, "dataset hapt: cannot open %s: %s (set STARLING_DATA_DIR or data.path)", path,
                      strerror(errno));
        goto cleanup;
    }
    char line[256];
    size_t lineno = 0;
    while (fgets(line, sizeof line, lf)) {
        lineno++;
        segment_t s;
        char extra;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (sscanf(line, "%d %d %d %ld %ld %c", &s.exp, &s.user, &s.act, &s.start, &s.end, &extra) != 5 ||
            s.exp < 1 || s.exp >= MAX_EXP || s.user < 1 || s.user > N_USERS || s.act < 1 || s.act > 12 ||
            s.start < 1 || s.end < s.start) {
            rc = sl_error(SL_EFORMAT, "dataset hapt: %s:%zu: expected 'exp user activity start end'", path, lineno);
            goto cleanup;
        }
        if (n_segs == cap_segs) {
            cap_segs = cap_segs ? cap_segs * 2 : 2048;
            segment_t *ns = realloc(segs, cap_segs * sizeof *segs);
            if (!ns) {
                rc = sl_error(SL_ENOMEM, "dataset hapt: out of memory");
                goto cleanup;
            }
            segs = ns;
        }
        segs[n_segs++] = s;
    }
    /* experiments in order of first appearance; labels.txt is sorted by experiment */
    int exp_index[MAX_EXP];
    for (int i = 0; i < MAX_EXP; i++)
        exp_index[i] = -1;
    for (size_t i = 0; i < n_segs; i++) {
        int e = segs[i].exp;
        if (exp_index[e] < 0) {
            exp_index[e] = (int)h->n_exps;
            h->exps[h->n_exps].exp = e;
            h->exps[h->n_exps].user = segs[i].user;
            h->n_exps++;
        } else if (h->exps[exp_index[e]].user != segs[i].user) {
            rc = sl_error(SL_EFORMAT, "dataset hapt: %s: experiment %d belongs to users %d and %d", path, e,
                          h->exps[exp_index[e]].user, segs[i].user);
            goto cleanup;
        }
    }
    loader_t L = {h, dir, (float)acc_scale, (float)gyro_scale, PTHREAD_MUTEX_INITIALIZER, 0, 0, ""};
    pthread_t th;
    int threaded = pthread_create(&th, NULL, load_worker, &L) == 0;
    load_worker(&L);
    if (threaded)
        pthread_join(th, NULL);
    pthread_mutex_destroy(&L.lock);
    if (L.rc) {
        rc = sl_error(L.rc, "dataset hapt: %s", L.err);
        goto cleanup;
    }

    /* windows, grouped by user */
    size_t per_user[N_USERS + 1] = {0};
    for (size_t i = 0; i < n_segs; i++) {
        const segment_t *s = &segs[i];
        if ((size_t)s->act > classes)
            continue;
        long len = s->end - s->start + 1;
        if (len < WIN)
            continue;
        const experiment_t *e = &h->exps[exp_index[s->exp]];
        if ((size_t)s->end > e->rows) {
            rc = sl_error(SL_EFORMAT, "dataset hapt: %s: segment %ld..%ld of experiment %d runs past its %zu rows",
                          path, s->start, s->end, s->exp, e->rows);
            goto cleanup;
        }
        per_user[s->user] += (size_t)((len - WIN) / STEP + 1);
    }
    for (int u = 1; u <= N_USERS; u++)
        h->n_windows += per_user[u];
    h->windows = malloc((h->n_windows ? h->n_windows : 1) * sizeof *h->windows);
    if (!h->windows) {
        rc = sl_error(SL_ENOMEM, "dataset hapt: out of memory");
        goto cleanup;
    }
    size_t cursor[N_USERS + 1];
    size_t pos = 0;
    for (int u = 1; u <= N_USERS; u++) {
        if (!per_user[u])
            continue;
        size_t g = h->n_groups++;
        h->group_user[g] = u;
        h->group_role[g] = is_test_user(u) ? SL_GROUP_TEST : public_user[u] ? SL_GROUP_PUBLIC : SL_GROUP_CLIENT;
        h->group_first[g] = pos;
        cursor[u] = pos;
        pos += per_user[u];
    }
    h->group_first[h->n_groups] = pos;
    for (size_t i = 0; i < n_segs; i++) {
        const segment_t *s = &segs[i];
        long len = s->end - s->start + 1;
        if ((size_t)s->act > classes || len < WIN)
            continue;
        for (long w = 0; w <= (len - WIN) / STEP; w++) {
            window_t *win = &h->windows[cursor[s->user]++];
            win->exp = (uint32_t)exp_index[s->exp];
            win->start = (uint32_t)(s->start - 1 + w * STEP);
            win->label = s->act - 1;
        }
    }

    if (standardize && (rc = standardize_public(h)) != 0)
        goto cleanup;
    h->n_classes = classes;
    h->schema.n_modalities = 2;
    h->schema.n_classes = classes;
    snprintf(h->schema.modalities[0].name, SL_NAME_MAX, "acc");
    snprintf(h->schema.modalities[1].name, SL_NAME_MAX, "gyro");
    for (int m = 0; m < 2; m++) {
        h->schema.modalities[m].kind = SL_MOD_TIMESERIES;
        h->schema.modalities[m].dims[0] = WIN;
        h->schema.modalities[m].dims[1] = 3;
    }
    (void)err;
    (void)err_len;
    *state = h;
    h = NULL;
cleanup:
    if (lf)
        fclose(lf);
    free(segs);
    hapt_close(h);
    return rc;
}

static const sl_schema_t *hapt_schema(void *state) { return &((hapt_t *)state)->schema; }

static const char *hapt_class_name(void *state, size_t k)
{
    return k < ((hapt_t *)state)->n_classes ? activity_names[k] : NULL;
}

static size_t hapt_num_groups(void *state) { return ((hapt_t *)state)->n_groups; }

static uint64_t hapt_group_id(void *state, size_t g) { return (uint64_t)((hapt_t *)state)->group_user[g]; }

static sl_group_role_t hapt_group_role(void *state, size_t g) { return ((hapt_t *)state)->group_role[g]; }

static size_t hapt_group_size(void *state, size_t g)
{
    const hapt_t *h = state;
    return h->group_first[g + 1] - h->group_first[g];
}

static int32_t hapt_label(void *state, size_t g, size_t i)
{
    const hapt_t *h = state;
    return h->windows[h->group_first[g] + i].label;
}

static int hapt_fill(void *state, const sl_dataset_ref_t *refs, size_t n, sl_batch_t *batch, char *err, size_t err_len)
{
    const hapt_t *h = state;
    (void)err;
    (void)err_len;
    for (size_t j = 0; j < n; j++) {
        const window_t *w = &h->windows[h->group_first[refs[j].group] + refs[j].index];
        const experiment_t *e = &h->exps[w->exp];
        /* acc, gyro: (T=128, C=3) rows of the experiment, contiguous */
        memcpy(batch->x[0] + j * WIN * 3, e->acc + (size_t)w->start * 3, WIN * 3 * sizeof(float));
        memcpy(batch->x[1] + j * WIN * 3, e->gyro + (size_t)w->start * 3, WIN * 3 * sizeof(float));
        batch->present[j * 2] = 1;
        batch->present[j * 2 + 1] = 1;
        batch->labels[j] = w->label;
    }
    return 0;
}

const sl_dataset_plugin_t sl_dataset_hapt = {
    SL_DATASET_PLUGIN_ABI_VERSION,
    0,
    "hapt",
    "HAPT v2.1 smartphone IMU, 30 users; acc + gyro windows (128 x 3); 6 or 12 activities",
    hapt_options,
    hapt_open,
    hapt_close,
    hapt_schema,
    hapt_class_name,
    hapt_num_groups,
    hapt_group_id,
    hapt_group_role,
    hapt_group_size,
    hapt_label,
    hapt_fill,
};
