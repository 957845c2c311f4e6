/* files: a folder of .npy (or .csv) files any user can write from Python/numpy
 * (format in docs/datasets.md):
 *   <modality>.npy   float32 '<f4', C order, shape (N, ...): (N,F) vector, (N,T,C) time
 *                    series, (N,H,W,ch) image, unless modalities.txt says otherwise
 *   labels.npy       int32/int64 (N), in [0, classes)
 *   clients.npy      int32/int64 (N), client id per example (optional: one client)
 *   split.npy        optional, per example 0 = train (client data), 1 = global test,
 *                    2 = public; int8/uint8/bool/int32/int64
 *   modalities.txt   optional: "name kind [d0 [d1 [d2]]]" per line, in model order
 *   classes.txt      optional: one class name per line (defines the class count)
 * CSV: labels.csv (header with a `label` column and optional `client`, `split`) and one
 * <modality>.csv per modality, N rows of values (shape from modalities.txt, else a vector).
 * Everything is validated (magic, version, dtype, order, shape, N, label range) with
 * errors that name the file.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "datasets/builtins.h"

#define MAX_CLASS_NAMES 4096

typedef struct {
    uint64_t id;
    sl_group_role_t role;
    size_t n;
    size_t *rows; /* (n) example rows */
} fgroup_t;

typedef struct {
    sl_schema_t schema;
    size_t n;                          /* examples */
    float *x[SL_MAX_MODALITIES];       /* (n, values(m)) */
    int32_t *labels;                   /* (n) */
    fgroup_t *groups;
    size_t n_groups;
    char **class_names;                /* (n_class_names) or NULL */
    size_t n_class_names;
} files_t;

static const sl_dataset_option_t files_options[] = {
    {"format", "auto", "npy, csv or auto (npy when labels.npy exists)"}, {NULL, NULL, NULL}};

/* ---- .npy ---------------------------------------------------------------------------------- */

typedef struct {
    char descr[8];  /* "<f4", "<i8", "|u1", ... */
    size_t ndim;
    size_t shape[8];
    size_t count;   /* product of shape */
    size_t itemsize;
    unsigned char *data;
} npy_t;

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int read_file(const char *path, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl_error(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        rc = sl_error(SL_EIO, "%s: cannot seek", path);
        goto cleanup;
    }
    long sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        rc = sl_error(SL_EIO, "%s: cannot size", path);
        goto cleanup;
    }
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory (%ld bytes)", path, sz);
        goto cleanup;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        rc = sl_error(SL_EIO, "%s: read error", path);
        goto cleanup;
    }
    buf[sz] = '\0';
    *out = buf;
    *len = (size_t)sz;
    buf = NULL;
cleanup:
    free(buf);
    fclose(f);
    return rc;
}

/* Parse a .npy file fully into memory; validates magic, version, header, C order and the
 * data length. The dtype is checked by the caller. */
static int npy_read(const char *path, npy_t *out)
{
    memset(out, 0, sizeof *out);
    unsigned char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);
    if (rc)
        return rc;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        rc = sl_error(SL_EFORMAT, "%s: not a .npy file (bad magic; expected \\x93NUMPY)", path);
        goto cleanup;
    }
    unsigned major = buf[6], minor = buf[7];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            rc = sl_error(SL_EFORMAT, "%s: truncated .npy header", path);
            goto cleanup;
        }
        hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hstart = 12;
    } else {
        rc = sl_error(SL_EFORMAT, "%s: unsupported .npy version %u.%u (expected 1.0, 2.0 or 3.0)", path, major, minor);
        goto cleanup;
    }
    if (hlen > len - hstart) {
        rc = sl_error(SL_EFORMAT, "%s: truncated .npy header (%zu bytes announced, %zu present)", path, hlen,
                      len - hstart);
        goto cleanup;
    }
    char header[4096];
    if (hlen >= sizeof header) {
        rc = sl_error(SL_EFORMAT, "%s: .npy header too long (%zu bytes)", path, hlen);
        goto cleanup;
    }
    memcpy(header, buf + hstart, hlen);
    header[hlen] = '\0';
    if (strlen(header) != hlen) {
        rc = sl_error(SL_EFORMAT, "%s: NUL byte inside the .npy header", path);
        goto cleanup;
    }
    const char *d = strstr(header, "'descr'");
    const char *fo = strstr(header, "'fortran_order'");
    const char *sh = strstr(header, "'shape'");
    if (!d || !fo || !sh) {
        rc = sl_error(SL_EFORMAT, "%s: .npy header lacks descr, fortran_order or shape: %s", path, header);
        goto cleanup;
    }
    d = strchr(d + 7, '\'');
    const char *dend = d ? strchr(d + 1, '\'') : NULL;
    if (!d || !dend || (size_t)(dend - d - 1) >= sizeof out->descr) {
        rc = sl_error(SL_EFORMAT, "%s: unsupported dtype in header: %s", path, header);
        goto cleanup;
    }
    memcpy(out->descr, d + 1, (size_t)(dend - d - 1));
    out->descr[dend - d - 1] = '\0';
    fo = strchr(fo + 15, ':');
    while (fo && (*fo == ':' || *fo == ' '))
        fo++;
    if (!fo || strncmp(fo, "False", 5) != 0) {
        rc = sl_error(SL_EFORMAT, "%s: fortran_order is True; save a C-ordered array (np.ascontiguousarray)", path);
        goto cleanup;
    }
    const char *p = strchr(sh, '(');
    const char *pend = p ? strchr(p, ')') : NULL;
    if (!p || !pend) {
        rc = sl_error(SL_EFORMAT, "%s: malformed shape in header: %s", path, header);
        goto cleanup;
    }
    p++;
    out->count = 1;
    while (p < pend) {
        while (p < pend && (*p == ' ' || *p == ','))
            p++;
        if (p >= pend)
            break;
        char *e;
        errno = 0;
        unsigned long long v = strtoull(p, &e, 10);
        if (e == p || errno || out->ndim == 8) {
            rc = sl_error(SL_EFORMAT, "%s: malformed shape in header: %s", path, header);
            goto cleanup;
        }
        out->shape[out->ndim++] = (size_t)v;
        if (v && out->count > SIZE_MAX / v) {
            rc = sl_error(SL_EFORMAT, "%s: shape too large", path);
            goto cleanup;
        }
        out->count *= (size_t)v;
        p = e;
    }
    if (out->ndim == 0) {
        rc = sl_error(SL_EFORMAT, "%s: scalar array (expected shape (N, ...))", path);
        goto cleanup;
    }
    const char *t = out->descr;
    if (strlen(t) != 3 || (t[0] != '<' && t[0] != '|' && t[0] != '>' && t[0] != '=') || t[2] < '1' || t[2] > '8') {
        rc = sl_error(SL_EFORMAT, "%s: unsupported dtype '%s'", path, t);
        goto cleanup;
    }
    out->itemsize = (size_t)(t[2] - '0');
    if (t[0] == '>' && out->itemsize > 1) {
        rc = sl_error(SL_EFORMAT, "%s: big-endian dtype '%s' (save little-endian, e.g. astype('<f4'))", path, t);
        goto cleanup;
    }
    size_t off = hstart + hlen, need = out->count * out->itemsize;
    if (out->count && need / out->count != out->itemsize) {
        rc = sl_error(SL_EFORMAT, "%s: shape too large", path);
        goto cleanup;
    }
    if (len - off != need) {
        rc = sl_error(SL_EFORMAT, "%s: %s: header promises %zu bytes of data, file has %zu", path,
                      len - off < need ? "truncated" : "trailing bytes", need, len - off);
        goto cleanup;
    }
    out->data = malloc(need ? need : 1);
    if (!out->data) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(out->data, buf + off, need);
cleanup:
    free(buf);
    return rc;
}

static int is_int_type(const char *descr) { return descr[1] == 'i' || descr[1] == 'u' || descr[1] == 'b'; }

/* Integer element i of an integer npy array (little-endian). */
static int64_t npy_int(const npy_t *a, size_t i)
{
    const unsigned char *p = a->data + i * a->itemsize;
    uint64_t u = 0;
    for (size_t b = 0; b < a->itemsize; b++)
        u |= (uint64_t)p[b] << (8 * b);
    if (a->descr[1] == 'i' && a->itemsize < 8 && (u >> (8 * a->itemsize - 1)) & 1)
        u |= ~(uint64_t)0 << (8 * a->itemsize);
    return (int64_t)u;
}

/* ---- CSV ------------------------------------------------------------------------------------ */

/* Read a CSV of numbers: rows x cols into a malloc'd double array. A first line that does
 * not parse as numbers is a header, returned in *header (malloc'd) if asked. */
static int csv_read(const char *path, double **out, size_t *rows, size_t *cols, char **header)
{
    *out = NULL;
    *rows = *cols = 0;
    if (header)
        *header = NULL;
    unsigned char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);
    if (rc)
        return rc;
    size_t cap = 1024, n = 0, line_no = 0;
    double *vals = malloc(cap * sizeof *vals);
    char *p = (char *)buf, *end = p + len;
    if (!vals) {
        rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        *eol = '\0';
        line_no++;
        size_t l = strlen(p);
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' '))
            p[--l] = '\0';
        if (l == 0) {
            p = eol + 1;
            continue;
        }
        size_t c = 0, start = n;
        char *q = p;
        int bad = 0;
        for (;;) {
            char *e;
            double v = strtod(q, &e);
            if (e == q) {
                bad = 1;
                break;
            }
            if (n == cap) {
                double *nv = realloc(vals, cap * 2 * sizeof *vals);
                if (!nv) {
                    rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
                    goto cleanup;
                }
                vals = nv;
                cap *= 2;
            }
            vals[n++] = v;
            c++;
            while (*e == ' ')
                e++;
            if (*e == '\0')
                break;
            if (*e != ',') {
                bad = 1;
                break;
            }
            q = e + 1;
        }
        if (bad) {
            n = start;
            if (*rows == 0 && header && !*header && line_no == 1) {
                *header = strdup(p);
                p = eol + 1;
                continue;
            }
            rc = sl_error(SL_EFORMAT, "%s:%zu: not a row of comma-separated numbers", path, line_no);
            goto cleanup;
        }
        if (*rows == 0)
            *cols = c;
        else if (c != *cols) {
            rc = sl_error(SL_EFORMAT, "%s:%zu: %zu values, earlier rows have %zu", path, line_no, c, *cols);
            goto cleanup;
        }
        (*rows)++;
        p = eol + 1;
    }
    *out = vals;
    vals = NULL;
cleanup:
    free(vals);
    free(buf);
    if (rc && header) {
        free(*header);
        *header = NULL;
    }
    return rc;
}

/* ---- loading -------------------------------------------------------------------------------- */

static void files_close(void *state)
{
    files_t *f = state;
    if (!f)
        return;
    for (size_t m = 0; m < SL_MAX_MODALITIES; m++)
        free(f->x[m]);
    free(f->labels);
    for (size_t g = 0; g < f->n_groups; g++)
        free(f->groups[g].rows);
    free(f->groups);
    for (size_t k = 0; f->class_names && k < f->n_class_names; k++)
        free(f->class_names[k]);
    free(f->class_names);
    free(f);
}

static int parse_kind(const char *s, sl_modality_kind_t *k)
{
    static const char *const names[] = {"timeseries", "image", "vector", "text"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *k = (sl_modality_kind_t)i;
            return 0;
        }
    return -1;
}

typedef struct {
    char name[SL_NAME_MAX];
    int has_kind;
    sl_modality_kind_t kind;
    size_t ndims;
    size_t dims[3];
} modspec_t;

/* modalities.txt if present, else the *.npy / *.csv files that are not metadata. */
static int find_modalities(const char *dir, int csv, modspec_t *specs, size_t *n)
{
    char path[1200];
    *n = 0;
    snprintf(path, sizeof path, "%s/modalities.txt", dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[512];
        size_t lineno = 0;
        int rc = 0;
        while (fgets(line, sizeof line, f)) {
            lineno++;
            char *hash = strchr(line, '#');
            if (hash)
                *hash = '\0';
            char name[64], kind[32];
            unsigned long d[3];
            int got = sscanf(line, "%63s %31s %lu %lu %lu", name, kind, &d[0], &d[1], &d[2]);
            if (got <= 0)
                continue;
            modspec_t *s = &specs[*n];
            memset(s, 0, sizeof *s);
            if (*n == SL_MAX_MODALITIES || strlen(name) >= SL_NAME_MAX || got < 2 || parse_kind(kind, &s->kind)) {
                rc = sl_error(SL_EFORMAT,
                              "%s:%zu: expected 'name kind [dims]' with kind timeseries|image|vector|text (at most %d "
                              "modalities, names < %d chars)",
                              path, lineno, SL_MAX_MODALITIES, SL_NAME_MAX);
                break;
            }
            snprintf(s->name, sizeof s->name, "%s", name);
            s->has_kind = 1;
            s->ndims = (size_t)(got - 2);
            for (size_t i = 0; i < s->ndims; i++)
                s->dims[i] = (size_t)d[i];
            (*n)++;
        }
        fclose(f);
        if (!rc && *n == 0)
            rc = sl_error(SL_EFORMAT, "%s: lists no modality", path);
        return rc;
    }
    DIR *dd = opendir(dir);
    if (!dd)
        return sl_error(SL_ENOTFOUND, "dataset files: cannot open folder %s: %s", dir, strerror(errno));
    const char *ext = csv ? ".csv" : ".npy";
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l <= 4 || strcmp(e->d_name + l - 4, ext) != 0)
            continue;
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(l - 4), e->d_name);
        if (!strcmp(base, "labels") || !strcmp(base, "clients") || !strcmp(base, "split"))
            continue;
        if (*n == SL_MAX_MODALITIES || strlen(base) >= SL_NAME_MAX) {
            closedir(dd);
            return sl_error(SL_EFORMAT, "%s: more than %d modality files or a name >= %d chars (%s)", dir,
                            SL_MAX_MODALITIES, SL_NAME_MAX, e->d_name);
        }
        memset(&specs[*n], 0, sizeof specs[*n]);
        snprintf(specs[*n].name, SL_NAME_MAX, "%s", base);
        (*n)++;
    }
    closedir(dd);
    for (size_t i = 1; i < *n; i++) /* sorted by name: readdir order is arbitrary */
        for (size_t j = i; j > 0 && strcmp(specs[j - 1].name, specs[j].name) > 0; j--) {
            modspec_t t = specs[j];
            specs[j] = specs[j - 1];
            specs[j - 1] = t;
        }
    if (*n == 0)
        return sl_error(SL_ENOTFOUND, "dataset files: %s has no modality file (*%s besides labels/clients/split)", dir,
                        ext);
    return 0;
}

/* Fill modality m of the schema from the spec and the per-example shape dims[0..nd-1]. */
static int set_modality(sl_modality_t *m, const modspec_t *s, const size_t *dims, size_t nd, const char *path)
{
    snprintf(m->name, SL_NAME_MAX, "%s", s->name);
    size_t values = 1;
    for (size_t i = 0; i < nd; i++)
        values *= dims[i];
    if (s->has_kind) {
        m->kind = s->kind;
        if (s->ndims) {
            size_t want = 1;
            for (size_t i = 0; i < s->ndims; i++) {
                m->dims[i] = s->dims[i];
                want *= s->dims[i];
            }
            if (want != values)
                return sl_error(SL_EMISMATCH, "%s: %zu values per example, modalities.txt says %zu", path, values,
                                want);
        } else if ((m->kind == SL_MOD_TIMESERIES && nd == 2) || (m->kind == SL_MOD_IMAGE && nd == 3) ||
                   ((m->kind == SL_MOD_VECTOR || m->kind == SL_MOD_TEXT) && nd == 1)) {
            for (size_t i = 0; i < nd; i++)
                m->dims[i] = dims[i];
        } else if (m->kind == SL_MOD_TIMESERIES && nd == 1) {
            m->dims[0] = dims[0];
            m->dims[1] = 1;
        } else if (m->kind == SL_MOD_VECTOR || m->kind == SL_MOD_TEXT) {
            m->dims[0] = values;
        } else {
            return sl_error(SL_EMISMATCH, "%s: per-example shape has %zu dims, a %s needs %d (or give dims in "
                            "modalities.txt)", path, nd, sl_modality_kind_name(m->kind),
                            m->kind == SL_MOD_IMAGE ? 3 : 2);
        }
    } else {
        if (nd == 1)
            m->kind = SL_MOD_VECTOR;
        else if (nd == 2)
            m->kind = SL_MOD_TIMESERIES;
        else if (nd == 3)
            m->kind = SL_MOD_IMAGE;
        else
            return sl_error(SL_EMISMATCH, "%s: %zu dims per example; expected 1 (vector), 2 (T, C) or 3 (H, W, ch)",
                            path, nd);
        for (size_t i = 0; i < nd; i++)
            m->dims[i] = dims[i];
    }
    if (values == 0)
        return sl_error(SL_EMISMATCH, "%s: zero values per example", path);
    return 0;
}

static int read_class_names(files_t *f, const char *dir, size_t *n_names)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    *n_names = 0;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    char line[256];
    int rc = 0;
    f->class_names = calloc(MAX_CLASS_NAMES, sizeof *f->class_names);
    if (!f->class_names) {
        fclose(fp);
        return sl_error(SL_ENOMEM, "%s: out of memory", path);
    }
    while (fgets(line, sizeof line, fp)) {
        size_t l = strcspn(line, "\r\n");
        line[l] = '\0';
        if (l == 0)
            continue;
        if (*n_names == MAX_CLASS_NAMES) {
            rc = sl_error(SL_EFORMAT, "%s: more than %d classes", path, MAX_CLASS_NAMES);
            break;
        }
        f->class_names[*n_names] = strdup(line);
        f->n_class_names = *n_names + 1;
        if (!f->class_names[(*n_names)++]) {
            rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
            break;
        }
    }
    fclose(fp);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Groups: one per distinct client id among train rows (ascending), then one public and
 * one test group when split says so. */
static int build_groups(files_t *f, const int64_t *client, const int64_t *split, const char *split_path)
{
    size_t n = f->n, n_train = 0;
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    int rc = 0;
    if (!ids)
        return sl_error(SL_ENOMEM, "dataset files: out of memory");
    size_t n_role[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        int64_t s = split ? split[i] : 0;
        if (s < 0 || s > 2) {
            rc = sl_error(SL_EFORMAT, "%s: value %lld at row %zu (expected 0 = train, 1 = test, 2 = public)",
                          split_path, (long long)s, i);
            goto cleanup;
        }
        n_role[s]++;
        if (s == 0)
            ids[n_train++] = (uint64_t)client[i];
    }
    qsort(ids, n_train, sizeof *ids, cmp_u64);
    size_t n_ids = 0;
    for (size_t i = 0; i < n_train; i++)
        if (n_ids == 0 || ids[n_ids - 1] != ids[i])
            ids[n_ids++] = ids[i];
    f->n_groups = n_ids + (n_role[2] ? 1 : 0) + (n_role[1] ? 1 : 0);
    f->groups = calloc(f->n_groups ? f->n_groups : 1, sizeof *f->groups);
    if (!f->groups) {
        rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
        goto cleanup;
    }
    for (size_t g = 0; g < n_ids; g++) {
        f->groups[g].id = ids[g];
        f->groups[g].role = SL_GROUP_CLIENT;
    }
    size_t gi = n_ids;
    size_t pub_g = SIZE_MAX, test_g = SIZE_MAX;
    if (n_role[2]) {
        pub_g = gi++;
        f->groups[pub_g].id = UINT64_MAX - 1;
        f->groups[pub_g].role = SL_GROUP_PUBLIC;
    }
    if (n_role[1]) {
        test_g = gi++;
        f->groups[test_g].id = UINT64_MAX;
        f->groups[test_g].role = SL_GROUP_TEST;
    }
    /* count, then fill rows in order */
    size_t *gof = malloc((n ? n : 1) * sizeof *gof);
    if (!gof) {
        rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t s = split ? split[i] : 0;
        size_t g;
        if (s == 1)
            g = test_g;
        else if (s == 2)
            g = pub_g;
        else {
            uint64_t key = (uint64_t)client[i];
            uint64_t *hit = bsearch(&key, ids, n_ids, sizeof *ids, cmp_u64);
            g = (size_t)(hit - ids);
        }
        gof[i] = g;
        f->groups[g].n++;
    }
    for (size_t g = 0; g < f->n_groups; g++) {
        f->groups[g].rows = malloc((f->groups[g].n ? f->groups[g].n : 1) * sizeof(size_t));
        if (!f->groups[g].rows) {
            free(gof);
            rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
            goto cleanup;
        }
        f->groups[g].n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        fgroup_t *g = &f->groups[gof[i]];
        g->rows[g->n++] = i;
    }
    free(gof);
cleanup:
    free(ids);
    return rc;
}

static int files_open(void **state, const sl_dataset_args_t *args, char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    *state = NULL;
    if (!args->path || !args->path[0])
        return sl_error(SL_ECONFIG, "dataset files: set data.path to the folder with labels.npy (or labels.csv) and "
                                    "one file per modality (see docs/datasets.md)");
    const char *dir = args->path;
    char path[1200];
    int rc = 0;
    int64_t *client = NULL, *split = NULL;
    modspec_t specs[SL_MAX_MODALITIES];
    size_t n_specs = 0;
    files_t *f = calloc(1, sizeof *f);
    if (!f)
        return sl_error(SL_ENOMEM, "dataset files: out of memory");

    const char *format = sl_dataset_args_get(args, "format");
    int csv;
    char npy_labels[1200], csv_labels[1200];
    snprintf(npy_labels, sizeof npy_labels, "%s/labels.npy", dir);
    snprintf(csv_labels, sizeof csv_labels, "%s/labels.csv", dir);
    if (!format || strcmp(format, "auto") == 0) {
        if (file_exists(npy_labels))
            csv = 0;
        else if (file_exists(csv_labels))
            csv = 1;
        else {
            rc = sl_error(SL_ENOTFOUND, "dataset files: %s: missing (and no labels.csv either)", npy_labels);
            goto cleanup;
        }
    } else if (strcmp(format, "npy") == 0) {
        csv = 0;
    } else if (strcmp(format, "csv") == 0) {
        csv = 1;
    } else {
        rc = sl_error(SL_ECONFIG, "dataset files: option format: expected npy, csv or auto, got \"%s\"", format);
        goto cleanup;
    }

    /* labels, clients, split */
    size_t n = 0;
    if (!csv) {
        npy_t a;
        if ((rc = npy_read(npy_labels, &a)))
            goto cleanup;
        if (a.ndim != 1 || (strcmp(a.descr, "<i4") != 0 && strcmp(a.descr, "<i8") != 0)) {
            rc = sl_error(SL_EFORMAT, "%s: dtype '%s' with %zu dims (expected int32 or int64 '<i4'/'<i8', shape (N,))",
                          npy_labels, a.descr, a.ndim);
            free(a.data);
            goto cleanup;
        }
        n = a.shape[0];
        f->labels = malloc((n ? n : 1) * sizeof *f->labels);
        client = calloc(n ? n : 1, sizeof *client);
        if (!f->labels || !client) {
            free(a.data);
            rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            int64_t v = npy_int(&a, i);
            if (v < 0 || v > INT32_MAX) {
                free(a.data);
                rc = sl_error(SL_ERANGE, "%s: label %lld at row %zu is negative or too large", npy_labels, (long long)v,
                              i);
                goto cleanup;
            }
            f->labels[i] = (int32_t)v;
        }
        free(a.data);
        const char *meta[2] = {"clients", "split"};
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s.npy", dir, meta[k]);
            if (!file_exists(path))
                continue;
            if ((rc = npy_read(path, &a)))
                goto cleanup;
            int ok = a.ndim == 1 && is_int_type(a.descr) && (k == 1 || a.itemsize >= 4);
            if (!ok || a.shape[0] != n) {
                rc = sl_error(SL_EFORMAT, "%s: dtype '%s' shape (%zu%s) (expected an integer array of shape (%zu,), "
                              "the N of labels.npy)", path, a.descr, a.ndim ? a.shape[0] : 0,
                              a.ndim > 1 ? ", ..." : ",", n);
                free(a.data);
                goto cleanup;
            }
            int64_t *dst = k == 0 ? client : NULL;
            if (k == 1) {
                split = malloc((n ? n : 1) * sizeof *split);
                if (!split) {
                    free(a.data);
                    rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
                    goto cleanup;
                }
                dst = split;
            }
            for (size_t i = 0; i < n; i++) {
                dst[i] = npy_int(&a, i);
                if (k == 0 && dst[i] < 0) {
                    free(a.data);
                    rc = sl_error(SL_ERANGE, "%s: negative client id %lld at row %zu", path, (long long)dst[i], i);
                    goto cleanup;
                }
            }
            free(a.data);
        }
    } else {
        double *vals = NULL;
        size_t rows, cols;
        char *header = NULL;
        if ((rc = csv_read(csv_labels, &vals, &rows, &cols, &header)))
            goto cleanup;
        long col_label = -1, col_client = -1, col_split = -1;
        if (header) {
            long c = 0;
            char *save = NULL;
            for (char *t = strtok_r(header, ",", &save); t; t = strtok_r(NULL, ",", &save), c++) {
                while (*t == ' ')
                    t++;
                if (!strcmp(t, "label"))
                    col_label = c;
                else if (!strcmp(t, "client"))
                    col_client = c;
                else if (!strcmp(t, "split"))
                    col_split = c;
            }
            free(header);
        } else {
            col_label = 0; /* no header: label[,client[,split]] */
            col_client = cols > 1 ? 1 : -1;
            col_split = cols > 2 ? 2 : -1;
        }
        if (col_label < 0 || (size_t)col_label >= cols || (col_client >= 0 && (size_t)col_client >= cols) ||
            (col_split >= 0 && (size_t)col_split >= cols)) {
            free(vals);
            rc = sl_error(SL_EFORMAT, "%s: needs a header with a 'label' column (and optional 'client', 'split')",
                          csv_labels);
            goto cleanup;
        }
        n = rows;
        f->labels = malloc((n ? n : 1) * sizeof *f->labels);
        client = calloc(n ? n : 1, sizeof *client);
        split = col_split >= 0 ? malloc((n ? n : 1) * sizeof *split) : NULL;
        if (!f->labels || !client || (col_split >= 0 && !split)) {
            free(vals);
            rc = sl_error(SL_ENOMEM, "dataset files: out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            double l = vals[i * cols + (size_t)col_label];
            double c = col_client >= 0 ? vals[i * cols + (size_t)col_client] : 0;
            if (l != (double)(int32_t)l || l < 0 || c != (double)(int64_t)c || c < 0) {
                free(vals);
                rc = sl_error(SL_ERANGE, "%s: row %zu: label and client must be integers >= 0", csv_labels, i + 1);
                goto cleanup;
            }
            f->labels[i] = (int32_t)l;
            client[i] = (int64_t)c;
            if (split)
                split[i] = (int64_t)vals[i * cols + (size_t)col_split];
        }
        free(vals);
    }
    if (n == 0) {
        rc = sl_error(SL_EFORMAT, "%s: no examples", csv ? csv_labels : npy_labels);
        goto cleanup;
    }
    f->n = n;

    /* classes */
    size_t n_names = 0;
    if ((rc = read_class_names(f, dir, &n_names)))
        goto cleanup;
    int32_t lmax = 0;
    for (size_t i = 0; i < n; i++)
        if (f->labels[i] > lmax)
            lmax = f->labels[i];
    size_t classes = n_names ? n_names : args->classes ? args->classes : (size_t)lmax + 1;
    if (n_names && args->classes && args->classes != n_names) {
        rc = sl_error(SL_ECONFIG, "dataset files: data.classes = %zu but classes.txt names %zu classes", args->classes,
                      n_names);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++)
        if ((size_t)f->labels[i] >= classes) {
            rc = sl_error(SL_ERANGE, "%s: label %d at row %zu is outside [0, %zu)%s", csv ? csv_labels : npy_labels,
                          (int)f->labels[i], i, classes,
                          n_names ? " (classes.txt)" : args->classes ? " (data.classes)" : "");
            goto cleanup;
        }
    if (classes < 2) {
        rc = sl_error(SL_EFORMAT, "%s: only one class (labels are all 0); need at least 2",
                      csv ? csv_labels : npy_labels);
        goto cleanup;
    }
    f->schema.n_classes = classes;

    /* modalities */
    if ((rc = find_modalities(dir, csv, specs, &n_specs)))
        goto cleanup;
    f->schema.n_modalities = n_specs;
    for (size_t m = 0; m < n_specs; m++) {
        snprintf(path, sizeof path, "%s/%s.%s", dir, specs[m].name, csv ? "csv" : "npy");
        if (!file_exists(path)) {
            rc = sl_error(SL_ENOTFOUND, "%s: missing (modality %s)", path, specs[m].name);
            goto cleanup;
        }
        if (!csv) {
            npy_t a;
            if ((rc = npy_read(path, &a)))
                goto cleanup;
            if (strcmp(a.descr, "<f4") != 0) {
                rc = sl_error(SL_EFORMAT, "%s: dtype '%s' (expected float32 '<f4': use x.astype(np.float32))", path,
                              a.descr);
                free(a.data);
                goto cleanup;
            }
            if (a.shape[0] != n || a.ndim < 2) {
                rc = sl_error(SL_EMISMATCH, "%s: shape has N = %zu examples%s, labels.npy has %zu", path,
                              a.shape[0], a.ndim < 2 ? " and no per-example dims" : "", n);
                free(a.data);
                goto cleanup;
            }
            rc = set_modality(&f->schema.modalities[m], &specs[m], a.shape + 1, a.ndim - 1, path);
            f->x[m] = (float *)(void *)a.data;
            if (rc)
                goto cleanup;
        } else {
            double *vals;
            size_t rows, cols;
            char *hdr = NULL; /* an optional header row of column names is skipped */
            rc = csv_read(path, &vals, &rows, &cols, &hdr);
            free(hdr);
            if (rc)
                goto cleanup;
            if (rows != n) {
                free(vals);
                rc = sl_error(SL_EMISMATCH, "%s: %zu rows, labels.csv has %zu", path, rows, n);
                goto cleanup;
            }
            size_t dims[1] = {cols};
            modspec_t sp = specs[m];
            if (!sp.has_kind) {
                sp.has_kind = 1;
                sp.kind = SL_MOD_VECTOR;
            }
            rc = set_modality(&f->schema.modalities[m], &sp, dims, 1, path);
            f->x[m] = malloc(n * cols * sizeof(float));
            if (!rc && !f->x[m])
                rc = sl_error(SL_ENOMEM, "%s: out of memory", path);
            if (!rc)
                for (size_t i = 0; i < n * cols; i++)
                    f->x[m][i] = (float)vals[i];
            free(vals);
            if (rc)
                goto cleanup;
        }
    }
    for (size_t m = 0; m < n_specs; m++) { /* the model trusts its inputs: no NaN or inf */
        size_t nv = sl_modality_values(&f->schema.modalities[m]);
        for (size_t i = 0; i < n * nv; i++)
            if (!isfinite(f->x[m][i])) {
                snprintf(path, sizeof path, "%s/%s.%s", dir, specs[m].name, csv ? "csv" : "npy");
                rc = sl_error(SL_ENOTFINITE, "%s: non-finite value (%g) at example %zu", path, (double)f->x[m][i],
                              i / nv);
                goto cleanup;
            }
    }
    if ((rc = sl_schema_validate(&f->schema))) {
        sl_error_wrap(rc, "dataset files: %s", dir);
        goto cleanup;
    }
    snprintf(path, sizeof path, "%s/split.%s", dir, csv ? "csv" : "npy");
    if ((rc = build_groups(f, client, split, csv ? csv_labels : path)))
        goto cleanup;
    *state = f;
    f = NULL;
cleanup:
    free(client);
    free(split);
    files_close(f);
    return rc;
}

static const sl_schema_t *files_schema(void *state) { return &((files_t *)state)->schema; }

static const char *files_class_name(void *state, size_t k)
{
    const files_t *f = state;
    return f->class_names && k < f->schema.n_classes ? f->class_names[k] : NULL;
}

static size_t files_num_groups(void *state) { return ((files_t *)state)->n_groups; }

static uint64_t files_group_id(void *state, size_t g) { return ((files_t *)state)->groups[g].id; }

static sl_group_role_t files_group_role(void *state, size_t g) { return ((files_t *)state)->groups[g].role; }

static size_t files_group_size(void *state, size_t g) { return ((files_t *)state)->groups[g].n; }

static int32_t files_label(void *state, size_t g, size_t i)
{
    const files_t *f = state;
    return f->labels[f->groups[g].rows[i]];
}

static int files_fill(void *state, const sl_dataset_ref_t *refs, size_t n, sl_batch_t *batch, char *err,
                      size_t err_len)
{
    (void)err;
    (void)err_len;
    const files_t *f = state;
    size_t nm = f->schema.n_modalities;
    for (size_t j = 0; j < n; j++) {
        size_t row = f->groups[refs[j].group].rows[refs[j].index];
        for (size_t m = 0; m < nm; m++) {
            size_t nv = sl_modality_values(&f->schema.modalities[m]);
            memcpy(batch->x[m] + j * nv, f->x[m] + row * nv, nv * sizeof(float));
            batch->present[j * nm + m] = 1;
        }
        batch->labels[j] = f->labels[row];
    }
    return 0;
}

const sl_dataset_plugin_t sl_dataset_files = {
    SL_DATASET_PLUGIN_ABI_VERSION,
    0,
    "files",
    "your data: a folder of <modality>.npy + labels.npy [+ clients.npy, split.npy] (or CSV), see docs/datasets.md",
    files_options,
    files_open,
    files_close,
    files_schema,
    files_class_name,
    files_num_groups,
    files_group_id,
    files_group_role,
    files_group_size,
    files_label,
    files_fill,
};
