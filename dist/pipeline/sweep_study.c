/* sweep_study: the across-run analysis of a sweep (sweep.h). Reads every done
 * run's results.json; writes study.md, figures, tables and results.json
 * "study" in the sweep directory. Single-process. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "h5util.h"
#include "results.h"
#include "runtime.h"
#include "stats.h"
#include "study.h"
#include "svg.h"
#include "sweep.h"

/* What one (run, mode) reports. */
/* M_THETA0: theta0's test accuracy with the task's own head (single.<task>.
 * theta0_test); the gains are per run, so that their intervals are paired. */
enum { M_SINGLE, M_SINGLE_VAL, M_ABS, M_NORM, M_ALPHA, M_TVNORM, M_XI_PRED, M_XI_REPR, M_SECS,
       M_THETA0, M_GAIN_SINGLE, M_GAIN_MERGED, M_N };
static const char *const k_metric[M_N] = {"single_test", "single_val", "merged_abs", "merged_norm",
                                          "alpha", "tv_norm", "xi_pred", "xi_repr",
                                          "train_seconds", "theta0_test", "single_gain",
                                          "merged_gain"};

/* Coefficient searches of a run's first merge method (modes.<mode>.coef_search.
 * <method>.<search>_<structure>), by name: merged abs and norm test accuracy. */
enum { CS_MAX = 12 };

typedef struct {
    long run;
    char mode[32];
    int ncs;
    char cs[CS_MAX][48];
    double cs_abs[CS_MAX], cs_norm[CS_MAX];
    char other[512]; /* axis values other than run.seed and finetune.modes */
    char config[600]; /* mode + other: what seeds replicate */
    double seed;
    double m[M_N];
} Rec;

typedef struct {
    Rec *rec;
    int n, cap;
} Recs;

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const cJSON *obj(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

/* Mean over the tasks of o.<task>.key (or o.<task> when key is NULL). */
static double task_mean(const cJSON *o, const char *key)
{
    double s = 0;
    int n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, o)
    {
        double v = key ? num(t, key) : (cJSON_IsNumber(t) ? t->valuedouble : NAN);
        if (isfinite(v))
            s += v, n++;
    }
    return n ? s / n : NAN;
}

/* Mean over the tasks of the single-task accuracy (split "test" or "val") of
 * the fine-tuned encoders with the head set the study compares (heads):
 * single.<task>.heads.<heads>.<split>, the same head set as the merged
 * accuracy it is plotted against. results.json files written before the
 * single stage measured every head set have only single.<task>.<split> (the
 * head the encoder was fine-tuned with); that is used where heads is absent. */
static double single_mean(const cJSON *single, const char *heads, const char *split)
{
    double s = 0;
    int n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, single)
    {
        const cJSON *hs = obj(t, "heads");
        double v = hs ? num(obj(hs, heads), split) : num(t, split);
        if (isfinite(v))
            s += v, n++;
    }
    return n ? s / n : NAN;
}

static TdStatus recs_add(Recs *rs, const Rec *r)
{
    if (rs->n == rs->cap) {
        int cap = rs->cap ? 2 * rs->cap : 64;
        Rec *p = realloc(rs->rec, (size_t)cap * sizeof *p);
        if (!p)
            return td_fail(TD_ERR_NOMEM, "out of memory");
        rs->rec = p, rs->cap = cap;
    }
    rs->rec[rs->n++] = *r;
    return TD_OK;
}

/* The records of run r (one per fine-tuning mode), when it is done. */
static TdStatus read_run(const TdConfig *base, const TdSweep *sw, long r, const char *dir,
                         Recs *rs)
{
    char rd[700];
    snprintf(rd, sizeof rd, "%s/runs/r%03ld", dir, r);
    cJSON *root = NULL;
    TD_TRY(results_load(rd, &root));
    if (!cJSON_IsTrue(obj(obj(root, "sweep_run"), "done"))) {
        cJSON_Delete(root);
        return TD_OK;
    }
    TdConfig *rc = malloc(sizeof *rc);
    TdStatus s = rc ? config_sweep_derive(base, sw, r, rc) : td_fail(TD_ERR_NOMEM, "out of memory");
    const char *heads = strcmp(base->sweep.heads, "frozen") == 0 ? "theta0" : base->sweep.heads;
    Rec rec = {0};
    rec.run = r;
    int coord[TD_SWEEP_MAX_AXES];
    config_sweep_coords(sw, r, coord);
    size_t at = 0;
    for (int a = 0; a < sw->naxes; a++)
        if (strcmp(sw->key[a], "run.seed") != 0 && strcmp(sw->key[a], "finetune.modes") != 0)
            at += (size_t)snprintf(rec.other + at, sizeof rec.other - at, "%s%s=%s",
                                   at ? " " : "", sw->key[a], sw->val[a][coord[a]]);
    rec.seed = s == TD_OK ? rc->run.seed : 0;
    const cJSON *modes = obj(root, "modes"), *mo;
    cJSON_ArrayForEach(mo, modes)
    {
        if (s != TD_OK)
            break;
        snprintf(rec.mode, sizeof rec.mode, "%s", mo->string);
        snprintf(rec.config, sizeof rec.config, "%s%s%s", rec.mode, rec.other[0] ? " " : "",
                 rec.other);
        rec.m[M_SINGLE] = single_mean(obj(mo, "single"), heads, "test");
        rec.m[M_SINGLE_VAL] = single_mean(obj(mo, "single"), heads, "val");
        const cJSON *add = obj(obj(mo, "addition"), rc->merge.methods.item[0]);
        const cJSON *h = obj(obj(add, "heads"), heads);
        rec.m[M_ABS] = num(h, "abs_test");
        rec.m[M_NORM] = num(h, "norm_test");
        rec.m[M_ALPHA] = num(add, "alpha");
        rec.m[M_TVNORM] = task_mean(obj(mo, "tv_norm"), NULL);
        rec.m[M_XI_PRED] = task_mean(obj(mo, "disentangle"), "mean_err_pred_inner");
        rec.m[M_XI_REPR] = task_mean(obj(mo, "disentangle"), "mean_err_repr_inner");
        rec.m[M_SECS] = num(mo, "train_seconds");
        rec.m[M_THETA0] = task_mean(obj(mo, "single"), "theta0_test");
        rec.m[M_GAIN_SINGLE] = rec.m[M_SINGLE] - rec.m[M_THETA0];
        rec.m[M_GAIN_MERGED] = rec.m[M_ABS] - rec.m[M_THETA0];
        rec.ncs = 0;
        const cJSON *cso;
        cJSON_ArrayForEach(cso, obj(obj(mo, "coef_search"), rc->merge.methods.item[0]))
        {
            if (rec.ncs == CS_MAX)
                break;
            const cJSON *hc = obj(obj(cso, "heads"), heads);
            snprintf(rec.cs[rec.ncs], sizeof rec.cs[0], "%s", cso->string);
            rec.cs_abs[rec.ncs] = num(hc, "abs_test");
            rec.cs_norm[rec.ncs] = num(hc, "norm_test");
            rec.ncs++;
        }
        s = recs_add(rs, &rec);
    }
    free(rc);
    cJSON_Delete(root);
    return s;
}

/* ---- configurations: replicates over seeds ---- */

typedef struct {
    const char *config, *mode, *other;
    int n;
    double mean[M_N], half[M_N];
    int ncs;                         /* coefficient searches, in the first run's order */
    const char *cs[CS_MAX];
    int cs_n[CS_MAX];                /* seeds that ran it */
    double cs_mean[CS_MAX][2], cs_half[CS_MAX][2]; /* [0] merged abs, [1] merged norm */
} Cfg;

static int find_str(const char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return i;
    return -1;
}

static void cfg_stats(const Recs *rs, Cfg *c)
{
    double *v = malloc((size_t)(rs->n ? rs->n : 1) * sizeof *v);
    for (int k = 0; k < M_N && v; k++) {
        int n = 0;
        for (int i = 0; i < rs->n; i++)
            if (strcmp(rs->rec[i].config, c->config) == 0 && isfinite(rs->rec[i].m[k]))
                v[n++] = rs->rec[i].m[k];
        if (n)
            stats_mean_ci95(v, n, &c->mean[k], &c->half[k]);
        else
            c->mean[k] = c->half[k] = NAN;
    }
    c->n = 0;
    for (int i = 0; i < rs->n; i++)
        c->n += strcmp(rs->rec[i].config, c->config) == 0;
    c->ncs = 0;
    for (int i = 0; i < rs->n && v; i++) {
        const Rec *r = &rs->rec[i];
        if (strcmp(r->config, c->config) != 0)
            continue;
        for (int j = 0; j < r->ncs; j++)
            if (find_str(c->cs, c->ncs, r->cs[j]) < 0 && c->ncs < CS_MAX)
                c->cs[c->ncs++] = r->cs[j];
    }
    for (int q = 0; q < c->ncs && v; q++)
        for (int w = 0; w < 2; w++) {
            int n = 0;
            for (int i = 0; i < rs->n; i++) {
                const Rec *r = &rs->rec[i];
                if (strcmp(r->config, c->config) != 0)
                    continue;
                for (int j = 0; j < r->ncs; j++) {
                    double x = w == 0 ? r->cs_abs[j] : r->cs_norm[j];
                    if (strcmp(r->cs[j], c->cs[q]) == 0 && isfinite(x))
                        v[n++] = x;
                }
            }
            c->cs_n[q] = n;
            if (n)
                stats_mean_ci95(v, n, &c->cs_mean[q][w], &c->cs_half[q][w]);
            else
                c->cs_mean[q][w] = c->cs_half[q][w] = NAN;
        }
    free(v);
}

/* ---- matched comparison of two modes ---- */

typedef struct {
    const char *a, *b;
    int overlap;
    double lo, hi, x;    /* single-task accuracy range shared, and the level compared at */
    int n;               /* seeds where both curves reach x */
    double d, half;      /* merged abs, a - b, points */
    double dn, halfn;    /* merged norm, a - b, points */
    int ne;              /* same settings: seeds */
    double de, halfe, xa, xb; /* same settings: merged abs a - b, and the two single accuracies */
} Cmp;

/* Points of a mode's curve (single -> metric k) from configuration means, or
 * from one seed's records when seed is finite. */
static int curve(const Recs *rs, const Cfg *cf, int nc, const char *mode, double seed, int k,
                 double *x, double *y)
{
    int n = 0;
    if (isnan(seed)) {
        for (int i = 0; i < nc; i++)
            if (strcmp(cf[i].mode, mode) == 0)
                x[n] = cf[i].mean[M_SINGLE], y[n] = cf[i].mean[k], n++;
    } else {
        for (int i = 0; i < rs->n; i++)
            if (strcmp(rs->rec[i].mode, mode) == 0 && rs->rec[i].seed == seed)
                x[n] = rs->rec[i].m[M_SINGLE], y[n] = rs->rec[i].m[k], n++;
    }
    return n;
}

static void range_of(const double *x, const double *y, int n, double *lo, double *hi)
{
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            *lo = fmin(*lo, x[i]), *hi = fmax(*hi, x[i]);
}

static void compare(const Recs *rs, const Cfg *cf, int nc, const double *seeds, int ns, Cmp *c)
{
    int cap = rs->n + nc + 1;
    double *xa = malloc((size_t)cap * sizeof *xa), *ya = malloc((size_t)cap * sizeof *ya);
    double *xb = malloc((size_t)cap * sizeof *xb), *yb = malloc((size_t)cap * sizeof *yb);
    double *d = malloc((size_t)(ns + 1) * sizeof *d), *dn = malloc((size_t)(ns + 1) * sizeof *dn);
    c->overlap = 0;
    c->n = c->ne = 0;
    c->d = c->half = c->dn = c->halfn = c->de = c->halfe = c->xa = c->xb = NAN;
    if (!xa || !ya || !xb || !yb || !d || !dn)
        goto out;
    double alo, ahi, blo, bhi;
    int na = curve(rs, cf, nc, c->a, NAN, M_ABS, xa, ya);
    int nb = curve(rs, cf, nc, c->b, NAN, M_ABS, xb, yb);
    range_of(xa, ya, na, &alo, &ahi);
    range_of(xb, yb, nb, &blo, &bhi);
    c->lo = fmax(alo, blo), c->hi = fmin(ahi, bhi);
    c->overlap = c->lo <= c->hi;
    if (c->overlap) {
        c->x = 0.5 * (c->lo + c->hi);
        for (int k = 0; k < 2; k++) { /* k = 0: abs, 1: norm */
            int n = 0;
            for (int s = 0; s < ns; s++) {
                double va, vb;
                int metric = k ? M_NORM : M_ABS;
                na = curve(rs, cf, nc, c->a, seeds[s], metric, xa, ya);
                nb = curve(rs, cf, nc, c->b, seeds[s], metric, xb, yb);
                if (stats_interp(xa, ya, na, c->x, &va) && stats_interp(xb, yb, nb, c->x, &vb))
                    (k ? dn : d)[n++] = 100 * (va - vb);
            }
            if (k == 0 && n > 0) {
                c->n = n;
                stats_mean_ci95(d, n, &c->d, &c->half);
            } else if (k == 1 && n > 0) {
                stats_mean_ci95(dn, n, &c->dn, &c->halfn);
            }
        }
    }
    /* same settings (the same values of the other axes), per seed averaged over settings */
    int n = 0;
    double sxa = 0, sxb = 0;
    int nx = 0;
    for (int s = 0; s < ns; s++) {
        double sum = 0;
        int m = 0;
        for (int i = 0; i < rs->n; i++) {
            const Rec *p = &rs->rec[i];
            if (strcmp(p->mode, c->a) != 0 || p->seed != seeds[s])
                continue;
            for (int j = 0; j < rs->n; j++) {
                const Rec *q = &rs->rec[j];
                if (strcmp(q->mode, c->b) == 0 && q->seed == seeds[s] &&
                    strcmp(q->other, p->other) == 0 && isfinite(p->m[M_ABS]) &&
                    isfinite(q->m[M_ABS])) {
                    sum += 100 * (p->m[M_ABS] - q->m[M_ABS]);
                    sxa += p->m[M_SINGLE], sxb += q->m[M_SINGLE], nx++;
                    m++;
                }
            }
        }
        if (m)
            d[n++] = sum / m;
    }
    if (n) {
        c->ne = n;
        stats_mean_ci95(d, n, &c->de, &c->halfe);
        c->xa = sxa / nx, c->xb = sxb / nx;
    }
out:
    free(xa), free(ya), free(xb), free(yb), free(d), free(dn);
}

static void pm(char *buf, size_t n, double mean, double half, double scale, int digits)
{
    if (!isfinite(mean))
        snprintf(buf, n, "-");
    else if (!isfinite(half))
        snprintf(buf, n, "%.*f", digits, scale * mean);
    else
        snprintf(buf, n, "%.*f ± %.*f", digits, scale * mean, digits, scale * half);
}

static void sentence(const Cmp *c, const char *heads, char *buf, size_t n)
{
    if (!c->overlap) {
        snprintf(buf, n,
                 "%s and %s never reach the same single-task accuracy in this sweep "
                 "(their ranges do not overlap): widen the learning-rate or steps axis to "
                 "compare them at matched accuracy.",
                 c->a, c->b);
        return;
    }
    if (c->n == 0) {
        snprintf(buf, n, "no seed's sweep of %s and %s both reach single-task accuracy %.1f%%.",
                 c->a, c->b, 100 * c->x);
        return;
    }
    char iv[64];
    if (isfinite(c->half))
        snprintf(iv, sizeof iv, " ± %.2f", c->half);
    else
        snprintf(iv, sizeof iv, " (one seed, no interval)");
    snprintf(buf, n,
             "At equal single-task accuracy %.1f%%, %s merges %.2f%s points %s than %s "
             "(merged absolute test accuracy, %s heads; 95%% interval over %d seed(s), each "
             "seed's sweep interpolated at that accuracy).",
             100 * c->x, c->a, fabs(c->d), iv, c->d >= 0 ? "better" : "worse", c->b, heads, c->n);
}

/* ---- writing ---- */

static TdStatus write_csvs(const char *dir, const Recs *rs, const Cfg *cf, int nc)
{
    char path[800];
    snprintf(path, sizeof path, "%s/tables", dir);
    TD_TRY(fs_mkdir_p(path));
    snprintf(path, sizeof path, "%s/tables/study_runs.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return td_fail(TD_ERR_IO, "cannot write '%s'", path);
    fprintf(f, "run,mode,settings,seed");
    for (int k = 0; k < M_N; k++)
        fprintf(f, ",%s", k_metric[k]);
    fprintf(f, "\n");
    for (int i = 0; i < rs->n; i++) {
        const Rec *r = &rs->rec[i];
        fprintf(f, "%ld,%s,\"%s\",%g", r->run, r->mode, r->other, r->seed);
        for (int k = 0; k < M_N; k++)
            fprintf(f, ",%.6g", r->m[k]);
        fprintf(f, "\n");
    }
    if (fclose(f) != 0)
        return td_fail(TD_ERR_IO, "cannot write '%s'", path);
    snprintf(path, sizeof path, "%s/tables/study_configs.csv", dir);
    if (!(f = fopen(path, "w")))
        return td_fail(TD_ERR_IO, "cannot write '%s'", path);
    fprintf(f, "mode,settings,seeds");
    for (int k = 0; k < M_N; k++)
        fprintf(f, ",%s_mean,%s_ci95", k_metric[k], k_metric[k]);
    fprintf(f, "\n");
    for (int i = 0; i < nc; i++) {
        fprintf(f, "%s,\"%s\",%d", cf[i].mode, cf[i].other, cf[i].n);
        for (int k = 0; k < M_N; k++)
            fprintf(f, ",%.6g,%.6g", cf[i].mean[k], cf[i].half[k]);
        fprintf(f, "\n");
    }
    return fclose(f) == 0 ? TD_OK : td_fail(TD_ERR_IO, "cannot write '%s'", path);
}

static TdStatus frontier(const char *dir, const char *file, const char *title, const char *xlabel,
                         int kx, const Cfg *cf, int nc, const char *const *modes, int nm)
{
    char path[800];
    snprintf(path, sizeof path, "%s/figures", dir);
    TD_TRY(fs_mkdir_p(path));
    snprintf(path, sizeof path, "%s/figures/%s", dir, file);
    TdStatus s = TD_OK;
    double *x = malloc((size_t)(nm * nc + 1) * sizeof *x), *y = malloc((size_t)(nm * nc + 1) * sizeof *y);
    double *e = malloc((size_t)(nm * nc + 1) * sizeof *e);
    SvgPoints *sp = calloc((size_t)nm, sizeof *sp);
    if (s == TD_OK && (!x || !y || !e || !sp))
        s = td_fail(TD_ERR_NOMEM, "out of memory");
    for (int m = 0; m < nm && s == TD_OK; m++) {
        double *px = x + m * nc, *py = y + m * nc, *pe = e + m * nc;
        int n = 0;
        for (int i = 0; i < nc; i++)
            if (strcmp(cf[i].mode, modes[m]) == 0) {
                px[n] = kx == M_TVNORM ? cf[i].mean[kx] : 100 * cf[i].mean[kx];
                py[n] = 100 * cf[i].mean[M_ABS];
                pe[n] = 100 * cf[i].half[M_ABS];
                n++;
            }
        sp[m] = (SvgPoints){modes[m], px, py, pe, n};
    }
    if (s == TD_OK)
        s = svg_scatter_chart(path, title, xlabel, "merged accuracy (%, test)", sp, nm);
    free(x), free(y), free(e), free(sp);
    return s;
}

static cJSON *cfg_json(const Cfg *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mode", c->mode);
    cJSON_AddStringToObject(o, "settings", c->other);
    cJSON_AddNumberToObject(o, "seeds", c->n);
    for (int k = 0; k < M_N; k++) {
        cJSON *m = cJSON_AddObjectToObject(o, k_metric[k]);
        cJSON_AddNumberToObject(m, "mean", isfinite(c->mean[k]) ? c->mean[k] : 0);
        if (isfinite(c->half[k]))
            cJSON_AddNumberToObject(m, "ci95", c->half[k]);
        if (!isfinite(c->mean[k]))
            cJSON_ReplaceItemInObject(m, "mean", cJSON_CreateNull());
    }
    cJSON *cs = c->ncs ? cJSON_AddObjectToObject(o, "coef_search") : NULL;
    for (int q = 0; q < c->ncs; q++) {
        cJSON *e = cJSON_AddObjectToObject(cs, c->cs[q]);
        cJSON_AddNumberToObject(e, "seeds", c->cs_n[q]);
        for (int w = 0; w < 2; w++) {
            cJSON *m = cJSON_AddObjectToObject(e, w == 0 ? "merged_abs" : "merged_norm");
            if (isfinite(c->cs_mean[q][w]))
                cJSON_AddNumberToObject(m, "mean", c->cs_mean[q][w]);
            else
                cJSON_AddNullToObject(m, "mean");
            if (isfinite(c->cs_half[q][w]))
                cJSON_AddNumberToObject(m, "ci95", c->cs_half[q][w]);
        }
    }
    return o;
}

static cJSON *cmp_json(const Cmp *c, const char *text)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "a", c->a);
    cJSON_AddStringToObject(o, "b", c->b);
    cJSON_AddStringToObject(o, "sentence", text);
    if (c->overlap) {
        cJSON_AddNumberToObject(o, "single_acc", c->x);
        cJSON_AddNumberToObject(o, "range_lo", c->lo);
        cJSON_AddNumberToObject(o, "range_hi", c->hi);
    }
    cJSON_AddNumberToObject(o, "seeds", c->n);
    if (isfinite(c->d))
        cJSON_AddNumberToObject(o, "abs_points", c->d);
    if (isfinite(c->half))
        cJSON_AddNumberToObject(o, "abs_ci95", c->half);
    if (isfinite(c->dn))
        cJSON_AddNumberToObject(o, "norm_points", c->dn);
    if (isfinite(c->halfn))
        cJSON_AddNumberToObject(o, "norm_ci95", c->halfn);
    if (isfinite(c->de))
        cJSON_AddNumberToObject(o, "same_settings_abs_points", c->de);
    if (isfinite(c->halfe))
        cJSON_AddNumberToObject(o, "same_settings_abs_ci95", c->halfe);
    return o;
}

TdStatus sweep_study(const TdConfig *cfg, const TdSweep *sw)
{
    char dir[600];
    study_run_dir(cfg, dir, sizeof dir);
    Recs rs = {0};
    TdStatus s = TD_OK;
    for (long r = 0; r < sw->runs && s == TD_OK; r++)
        s = read_run(cfg, sw, r, dir, &rs);
    /* configurations and modes, in run order; seeds */
    Cfg *cf = calloc((size_t)rs.n + 1, sizeof *cf);
    const char **modes = calloc((size_t)rs.n + 1, sizeof *modes);
    double *seeds = calloc((size_t)rs.n + 1, sizeof *seeds);
    int nc = 0, nm = 0, ns = 0;
    if (s == TD_OK && (!cf || !modes || !seeds))
        s = td_fail(TD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < rs.n && s == TD_OK; i++) {
        const Rec *r = &rs.rec[i];
        int known = 0;
        for (int k = 0; k < nc; k++)
            known |= strcmp(cf[k].config, r->config) == 0;
        if (!known) {
            cf[nc++] = (Cfg){.config = r->config, .mode = r->mode, .other = r->other};
        }
        if (find_str(modes, nm, r->mode) < 0)
            modes[nm++] = r->mode;
        int seen = 0;
        for (int k = 0; k < ns; k++)
            seen |= seeds[k] == r->seed;
        if (!seen)
            seeds[ns++] = r->seed;
    }
    for (int i = 0; i < nc; i++)
        cfg_stats(&rs, &cf[i]);
    int npair = nm * (nm - 1) / 2, np = 0;
    Cmp *cmp = calloc((size_t)npair + 1, sizeof *cmp);
    if (s == TD_OK && !cmp)
        s = td_fail(TD_ERR_NOMEM, "out of memory");
    for (int j = 0; j < nm && s == TD_OK; j++)
        for (int i = j + 1; i < nm; i++) {
            cmp[np].a = modes[i], cmp[np].b = modes[j];
            compare(&rs, cf, nc, seeds, ns, &cmp[np]);
            np++;
        }
    const char *heads = cfg->sweep.heads;
    if (s == TD_OK)
        s = write_csvs(dir, &rs, cf, nc);
    if (s == TD_OK && nc > 0)
        s = frontier(dir, "frontier_single.svg", "Merged against single-task accuracy",
                     "single-task accuracy (%, test, mean over tasks)", M_SINGLE, cf, nc, modes, nm);
    if (s == TD_OK && nc > 0)
        s = frontier(dir, "frontier_tv_norm.svg", "Merged accuracy against task-vector norm",
                     "task-vector norm |tau| (mean over tasks)", M_TVNORM, cf, nc, modes, nm);
    /* results.json "study" */
    cJSON *st = cJSON_CreateObject(), *jc = cJSON_AddArrayToObject(st, "configs"),
          *jm = cJSON_AddArrayToObject(st, "comparisons");
    char text[1024];
    for (int i = 0; i < nc && jc; i++)
        cJSON_AddItemToArray(jc, cfg_json(&cf[i]));
    for (int i = 0; i < np && jm; i++) {
        sentence(&cmp[i], heads, text, sizeof text);
        cJSON_AddItemToArray(jm, cmp_json(&cmp[i], text));
    }
    cJSON_AddNumberToObject(st, "runs_done", (double)rs.n);
    if (s == TD_OK)
        s = results_set(dir, "study", st);
    else
        cJSON_Delete(st);

    /* study.md */
    char path[800], tmp[820];
    snprintf(path, sizeof path, "%s/study.md", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = s == TD_OK ? fopen(tmp, "w") : NULL;
    if (s == TD_OK && !f)
        s = td_fail(TD_ERR_IO, "cannot write '%s'", tmp);
    if (f) {
        cJSON *root = NULL;
        fprintf(f, "# tadist study: %s\n\nProduced by:\n\n", cfg->run.name);
        if (results_load(dir, &root) == TD_OK) {
            const cJSON *c;
            cJSON_ArrayForEach(c, obj(root, "commands"))
            {
                const cJSON *cmd = obj(c, "command"), *when = obj(c, "started");
                fprintf(f, "- `%s` (started %s)\n", cJSON_IsString(cmd) ? cmd->valuestring : "?",
                        cJSON_IsString(when) ? when->valuestring : "?");
            }
        } else {
            td_error_clear();
        }
        cJSON_Delete(root);
        fprintf(f, "\nAxes:");
        for (int a = 0; a < sw->naxes; a++) {
            fprintf(f, " `%s` =", sw->key[a]);
            for (int v = 0; v < sw->nvals[a]; v++)
                fprintf(f, " %s%s", sw->val[a][v], v + 1 < sw->nvals[a] ? " |" : "");
            fprintf(f, "%s", a + 1 < sw->naxes ? ";" : ".");
        }
        long nmodes_runs = 0;
        for (int i = 0; i < nc; i++)
            nmodes_runs += cf[i].n;
        fprintf(f, " %d configuration(s) of mode and settings, %d seed(s); %ld (run, mode) "
                   "results from the done runs of %ld. Every number below is in `results.json` "
                   "(key `study`) and `tables/study_*.csv` in this directory; each run's own "
                   "report is in `runs/rNNN/`.\n\n",
                nc, ns, nmodes_runs, sw->runs);
        fprintf(f, "Merged accuracy: task addition with `%s` at the alpha chosen on val, "
                   "scored on test with the %s heads. Intervals: 95%%, Student t over seeds.\n\n",
                cfg->merge.methods.item[0], heads);
        fprintf(f, "## Matched comparison\n\n");
        for (int i = 0; i < np; i++) {
            sentence(&cmp[i], heads, text, sizeof text);
            fprintf(f, "- %s", text);
            char iv[64];
            if (isfinite(cmp[i].dn)) {
                pm(iv, sizeof iv, cmp[i].dn, cmp[i].halfn, 1, 2);
                fprintf(f, " Normalised accuracy at the same point: %s points%s.", iv,
                        isfinite(cmp[i].halfn) ? "" : " (one seed)");
            }
            if (isfinite(cmp[i].de)) {
                pm(iv, sizeof iv, fabs(cmp[i].de), cmp[i].halfe, 1, 2);
                fprintf(f, " For contrast, at the same settings %s merges %s points %s than %s "
                           "(single-task accuracy %.1f%% vs %.1f%%).",
                        cmp[i].a, iv, cmp[i].de >= 0 ? "better" : "worse", cmp[i].b,
                        100 * cmp[i].xa, 100 * cmp[i].xb);
            }
            fprintf(f, "\n");
        }
        fprintf(f, "\n![merged against single-task accuracy](figures/frontier_single.svg)\n"
                   "![merged accuracy against task-vector norm](figures/frontier_tv_norm.svg)\n\n"
                   "Each point is one configuration's mean over seeds (bars: 95%% interval of "
                   "the merged accuracy), joined in order of the horizontal axis. Training "
                   "times are wall seconds of each run's fine-tuning on its group of ranks, "
                   "which shares the machine with the other groups.\n\n");
        fprintf(f, "## Configurations (mean ± 95%% interval over seeds)\n\n"
                   "theta0 is the pre-trained encoder with the same heads; the gains over it "
                   "are taken per run (points).\n\n"
                   "| mode | settings | seeds | theta0 (%%) | single-task (%%) | single - theta0 "
                   "| merged abs (%%) | merged - theta0 | merged norm "
                   "(%%) | alpha | task-vector norm | xi pred, abs(a)<=1 | training (s) |\n"
                   "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < nc; i++) {
            const Cfg *c = &cf[i];
            char a[11][64];
            pm(a[7], 64, c->mean[M_THETA0], c->half[M_THETA0], 100, 2);
            pm(a[8], 64, c->mean[M_GAIN_SINGLE], c->half[M_GAIN_SINGLE], 100, 2);
            pm(a[9], 64, c->mean[M_GAIN_MERGED], c->half[M_GAIN_MERGED], 100, 2);
            pm(a[0], 64, c->mean[M_SINGLE], c->half[M_SINGLE], 100, 2);
            pm(a[1], 64, c->mean[M_ABS], c->half[M_ABS], 100, 2);
            pm(a[2], 64, c->mean[M_NORM], c->half[M_NORM], 100, 2);
            pm(a[3], 64, c->mean[M_ALPHA], c->half[M_ALPHA], 1, 3);
            pm(a[4], 64, c->mean[M_TVNORM], c->half[M_TVNORM], 1, 3);
            pm(a[5], 64, c->mean[M_XI_PRED], c->half[M_XI_PRED], 1, 3);
            pm(a[6], 64, c->mean[M_SECS], c->half[M_SECS], 1, 1);
            fprintf(f, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    c->mode, c->other[0] ? c->other : "-", c->n, a[7], a[0], a[8], a[1], a[9],
                    a[2], a[3], a[4], a[5], a[6]);
        }
        int any_cs = 0;
        for (int i = 0; i < nc; i++)
            any_cs |= cf[i].ncs > 0;
        if (any_cs) {
            fprintf(f, "\n## Coefficient searches (merged test accuracy, %s heads, mean ± 95%% "
                       "interval over seeds)\n\n"
                       "`uniform` is the alpha grid above; the others are "
                       "`merge.search`_`merge.coefficients` (results.json "
                       "`modes.<mode>.coef_search.%s`).\n\n"
                       "| mode | settings | search | seeds | merged abs (%%) | merged norm (%%) |\n"
                       "|---|---|---|---:|---:|---:|\n",
                    heads, cfg->merge.methods.item[0]);
            for (int i = 0; i < nc; i++) {
                const Cfg *c = &cf[i];
                char a[2][64];
                pm(a[0], 64, c->mean[M_ABS], c->half[M_ABS], 100, 2);
                pm(a[1], 64, c->mean[M_NORM], c->half[M_NORM], 100, 2);
                fprintf(f, "| %s | %s | uniform | %d | %s | %s |\n", c->mode,
                        c->other[0] ? c->other : "-", c->n, a[0], a[1]);
                for (int q = 0; q < c->ncs; q++) {
                    pm(a[0], 64, c->cs_mean[q][0], c->cs_half[q][0], 100, 2);
                    pm(a[1], 64, c->cs_mean[q][1], c->cs_half[q][1], 100, 2);
                    fprintf(f, "| %s | %s | %s | %d | %s | %s |\n", c->mode,
                            c->other[0] ? c->other : "-", c->cs[q], c->cs_n[q], a[0], a[1]);
                }
            }
        }
        fprintf(f, "\n## Every run\n\n| run | mode | settings | seed | theta0 | single-task | "
                   "merged abs | merged norm | alpha | task-vector norm | xi pred | training (s) |\n"
                   "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int i = 0; i < rs.n; i++) {
            const Rec *r = &rs.rec[i];
            fprintf(f, "| r%03ld | %s | %s | %g | %.4f | %.4f | %.4f | %.4f | %g | %.4g | %.4f | "
                       "%.1f |\n",
                    r->run, r->mode, r->other[0] ? r->other : "-", r->seed, r->m[M_THETA0],
                    r->m[M_SINGLE],
                    r->m[M_ABS], r->m[M_NORM], r->m[M_ALPHA], r->m[M_TVNORM], r->m[M_XI_PRED],
                    r->m[M_SECS]);
        }
        if (fclose(f) != 0 || rename(tmp, path) != 0)
            s = td_fail(TD_ERR_IO, "cannot write '%s'", path);
    }
    if (s == TD_OK) {
        for (int i = 0; i < np; i++) {
            sentence(&cmp[i], heads, text, sizeof text);
            td_log("study: %s", text);
        }
        td_log("study: %s (%d run result(s), %d configuration(s))", path, rs.n, nc);
    }
    free(cf), free(modes), free(seeds), free(cmp), free(rs.rec);
    return s;
}
