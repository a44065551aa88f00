#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "h5util.h"
#include "results.h"
#include "runtime.h"
#include "study.h"
#include "svg.h"

enum { NAMES_MAX = 64 };

typedef struct {
    int n;
    const char *s[NAMES_MAX];
} Names;

typedef struct {
    const TdConfig *cfg;
    char dir[600];
    cJSON *root, *modes;
    Names mode, task;
    FILE *md;
    int figures; /* figures written */
    int inline_figs; /* figures side by side on one line */
} Rep;

/* ---- JSON access ---- */

/* Follows the keys (NULL-terminated) from o; NULL when any is missing. */
static const cJSON *jget(const cJSON *o, ...)
{
    va_list ap;
    va_start(ap, o);
    for (const char *k = va_arg(ap, const char *); k && o; k = va_arg(ap, const char *))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    va_end(ap);
    return o;
}

static double jnum(const cJSON *o) { return cJSON_IsNumber(o) ? o->valuedouble : NAN; }

static void names_add(Names *l, const char *s)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->s[i], s) == 0)
            return;
    if (l->n < NAMES_MAX)
        l->s[l->n++] = s;
}

/* Keys of an object, in file order. */
static void keys_of(const cJSON *o, Names *l)
{
    l->n = 0;
    for (const cJSON *c = o ? o->child : NULL; c; c = c->next)
        if (c->string)
            names_add(l, c->string);
}

/* A number cell: "0.1234" or "-" when missing. */
static const char *cell(char *buf, size_t n, double v, const char *fmt)
{
    if (!isfinite(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, fmt, v);
    return buf;
}

/* Modes holding key `part` (e.g. "single"). */
static void modes_with(const Rep *r, const char *part, Names *out)
{
    out->n = 0;
    for (int i = 0; i < r->mode.n; i++)
        if (cJSON_IsObject(jget(r->modes, r->mode.s[i], part, NULL)))
            names_add(out, r->mode.s[i]);
}

static FILE *csv_open(const Rep *r, const char *name, const char *header)
{
    char path[800];
    snprintf(path, sizeof path, "%s/tables/%s", r->dir, name);
    FILE *f = fopen(path, "w");
    if (f)
        fprintf(f, "%s\n", header);
    return f;
}

static void not_run(const Rep *r, const char *stage)
{
    fprintf(r->md, "_not run_ (no `%s` results in results.json).\n\n", stage);
}

static void figure(Rep *r, TdStatus s, const char *file, const char *caption)
{
    if (s != TD_OK) {
        fprintf(r->md, "_figure %s could not be written: %s_\n\n", file, td_error_message());
        td_error_clear();
        return;
    }
    r->figures++;
    fprintf(r->md, "![%s](figures/%s)%s", caption, file, r->inline_figs ? " " : "\n\n");
}

/* ---- sections ---- */

static void sec_header(Rep *r)
{
    const cJSON *run = jget(r->root, "run", NULL);
    fprintf(r->md, "# tadist report: %s\n\n",
            cJSON_IsString(run) ? run->valuestring : r->cfg->run.name);
    fprintf(r->md, "Produced by:\n\n");
    const cJSON *cmds = jget(r->root, "commands", NULL);
    int any = 0;
    for (const cJSON *c = cmds ? cmds->child : NULL; c; c = c->next) {
        const cJSON *cmd = jget(c, "command", NULL), *st = jget(c, "stages", NULL),
                    *at = jget(c, "started", NULL);
        if (!cJSON_IsString(cmd))
            continue;
        fprintf(r->md, "- `%s` (stages %s, started %s)\n", cmd->valuestring,
                cJSON_IsString(st) ? st->valuestring : "?", cJSON_IsString(at) ? at->valuestring : "?");
        any = 1;
    }
    if (!any)
        fprintf(r->md, "- not recorded (results.json has no `commands`)\n");
    fprintf(r->md, "\nTasks: ");
    for (int i = 0; i < r->task.n; i++)
        fprintf(r->md, "%s%s", i ? ", " : "", r->task.s[i]);
    fprintf(r->md, ". Modes: ");
    for (int i = 0; i < r->mode.n; i++)
        fprintf(r->md, "%s%s", i ? ", " : "", r->mode.s[i]);
    if (!r->mode.n)
        fprintf(r->md, "none");
    fprintf(r->md, ".\n\nEvery number below is read from `results.json` (the key is named "
                   "with each table) or `grids.h5` (the dataset is named with each figure) in "
                   "this directory; the tables are also in `tables/*.csv`.\n\n");
}

static void sec_train_time(Rep *r)
{
    fprintf(r->md, "## Training time per mode\n\nKey: `modes.<mode>.train_seconds`.\n\n");
    int any = 0;
    FILE *csv = csv_open(r, "train_time.csv", "mode,train_seconds");
    for (int i = 0; i < r->mode.n; i++) {
        double v = jnum(jget(r->modes, r->mode.s[i], "train_seconds", NULL));
        if (!isfinite(v))
            continue;
        if (!any)
            fprintf(r->md, "| mode | training time (s) |\n|---|---:|\n");
        any = 1;
        fprintf(r->md, "| %s | %.1f |\n", r->mode.s[i], v);
        if (csv)
            fprintf(csv, "%s,%.6g\n", r->mode.s[i], v);
    }
    if (csv)
        fclose(csv);
    if (any)
        fprintf(r->md, "\n");
    else
        not_run(r, "train_seconds");
}

/* Single-task test accuracy with every head set: the denominators of the
 * normalised accuracies of task addition, one row per mode and head set. */
static void single_heads(Rep *r, const Names *ms)
{
    fprintf(r->md, "### Normalisers\n\nTest accuracy of each fine-tuned encoder (theta0 + "
                   "tau_t) with each head set: the denominator of that head set's normalised "
                   "accuracy in task addition (a head set is divided by its own single-task "
                   "accuracy, never by another's). Key: "
                   "`modes.<mode>.single.<task>.heads.<heads>.{val, test}`.\n\n");
    FILE *csv = csv_open(r, "single_heads.csv", "mode,heads,task,val,test");
    int rows = 0;
    char b[32];
    for (int m = 0; m < ms->n; m++) {
        Names hs = {0};
        for (int t = 0; t < r->task.n; t++) {
            Names k;
            keys_of(jget(r->modes, ms->s[m], "single", r->task.s[t], "heads", NULL), &k);
            for (int i = 0; i < k.n; i++)
                names_add(&hs, k.s[i]);
        }
        for (int h = 0; h < hs.n; h++) {
            if (!rows) { /* the header once there is a row */
                fprintf(r->md, "| mode | heads |");
                for (int t = 0; t < r->task.n; t++)
                    fprintf(r->md, " %s |", r->task.s[t]);
                fprintf(r->md, " mean |\n|---|---|");
                for (int t = 0; t <= r->task.n; t++)
                    fprintf(r->md, "---:|");
                fprintf(r->md, "\n");
            }
            fprintf(r->md, "| %s | %s |", ms->s[m], hs.s[h]);
            double sum = 0;
            int n = 0;
            for (int t = 0; t < r->task.n; t++) {
                const cJSON *o =
                    jget(r->modes, ms->s[m], "single", r->task.s[t], "heads", hs.s[h], NULL);
                double v = jnum(jget(o, "test", NULL));
                fprintf(r->md, " %s |", cell(b, sizeof b, v, "%.4f"));
                if (isfinite(v)) {
                    sum += v;
                    n++;
                }
                if (csv && o)
                    fprintf(csv, "%s,%s,%s,%.6g,%.6g\n", ms->s[m], hs.s[h], r->task.s[t],
                            jnum(jget(o, "val", NULL)), v);
            }
            fprintf(r->md, " %s |\n", cell(b, sizeof b, n ? sum / n : NAN, "%.4f"));
            rows++;
        }
    }
    if (csv)
        fclose(csv);
    if (rows)
        fputs("\n", r->md);
    else
        fputs("_not measured_ (results.json predates per-head-set single-task accuracies).\n\n",
              r->md);
}

static void sec_single(Rep *r)
{
    fprintf(r->md, "## Single-task accuracy\n\nTest accuracy of each fine-tuned encoder with the "
                   "head it was fine-tuned with (the trained head under finetune.train_heads, "
                   "else the frozen one), as the finetune stage measured it; theta0 is the "
                   "pre-trained encoder with the frozen head. Key: "
                   "`modes.<mode>.single.<task>.{test, theta0_test}`.\n\n");
    Names ms;
    modes_with(r, "single", &ms);
    if (!ms.n) {
        not_run(r, "single");
        return;
    }
    FILE *csv = csv_open(r, "single.csv", "mode,task,val,test,theta0_val,theta0_test");
    fprintf(r->md, "| task | theta0 |");
    for (int m = 0; m < ms.n; m++)
        fprintf(r->md, " %s |", ms.s[m]);
    fprintf(r->md, "\n|---|---:|");
    for (int m = 0; m < ms.n; m++)
        fprintf(r->md, "---:|");
    fprintf(r->md, "\n");
    int ns = ms.n + 1;
    double *bars = calloc((size_t)(r->task.n + 1) * ns, sizeof *bars);
    double mean[NAMES_MAX + 1] = {0};
    char b[32];
    for (int t = 0; t < r->task.n; t++) {
        double t0 = NAN;
        for (int m = 0; m < ms.n && !isfinite(t0); m++)
            t0 = jnum(jget(r->modes, ms.s[m], "single", r->task.s[t], "theta0_test", NULL));
        fprintf(r->md, "| %s | %s |", r->task.s[t], cell(b, sizeof b, t0, "%.4f"));
        if (bars)
            bars[(size_t)t * ns] = t0;
        mean[0] += t0;
        for (int m = 0; m < ms.n; m++) {
            const cJSON *o = jget(r->modes, ms.s[m], "single", r->task.s[t], NULL);
            double v = jnum(jget(o, "test", NULL));
            fprintf(r->md, " %s |", cell(b, sizeof b, v, "%.4f"));
            if (bars)
                bars[(size_t)t * ns + 1 + m] = v;
            mean[1 + m] += v;
            if (csv && o)
                fprintf(csv, "%s,%s,%.6g,%.6g,%.6g,%.6g\n", ms.s[m], r->task.s[t],
                        jnum(jget(o, "val", NULL)), v, jnum(jget(o, "theta0_val", NULL)),
                        jnum(jget(o, "theta0_test", NULL)));
        }
        fprintf(r->md, "\n");
    }
    fprintf(r->md, "| **mean** |");
    for (int k = 0; k < ns; k++)
        fprintf(r->md, " %s |", cell(b, sizeof b, r->task.n ? mean[k] / r->task.n : NAN, "%.4f"));
    fprintf(r->md, "\n\n");
    if (csv)
        fclose(csv);
    if (bars) {
        const char *series[NAMES_MAX + 1] = {"theta0"};
        for (int m = 0; m < ms.n; m++)
            series[1 + m] = ms.s[m];
        char path[800];
        snprintf(path, sizeof path, "%s/figures/single.svg", r->dir);
        figure(r, svg_bar_chart(path, "Single-task test accuracy", "accuracy", r->task.s,
                                r->task.n, series, ns, bars, 0, 1),
               "single.svg", "single-task accuracy per task and mode");
        free(bars);
    }
    single_heads(r, &ms);
}

/* The accuracy-against-alpha curve behind an addition method: the grid
 * dataset (or <grid>/val_norm), averaged over a second axis when there is
 * one, and its alpha axis (<group>/alpha), else the grid index. */
static int addition_curve(const Rep *r, const char *grid, double **y, double **x, int *n,
                          char *used, size_t un)
{
    const char *suffix[] = {"", "/val_norm", "/val_abs", "/test_norm"};
    double *d = NULL;
    int nd = 0;
    size_t dims[4];
    char p[600];
    for (size_t k = 0; k < sizeof suffix / sizeof *suffix && !d; k++) {
        snprintf(p, sizeof p, "%s%s", grid, suffix[k]);
        if (results_grid_read(r->dir, p, &d, &nd, dims) != TD_OK) {
            td_error_clear();
            d = NULL;
        }
    }
    if (!d)
        return 0;
    snprintf(used, un, "%s", p);
    *n = (int)dims[0];
    size_t inner = 1;
    for (int k = 1; k < nd; k++)
        inner *= dims[k];
    *y = calloc((size_t)*n, sizeof **y);
    for (int i = 0; i < *n && *y; i++) {
        double s = 0;
        for (size_t j = 0; j < inner; j++)
            s += d[(size_t)i * inner + j];
        (*y)[i] = s / (double)inner;
    }
    free(d);
    /* alpha next to the dataset */
    char a[640];
    snprintf(a, sizeof a, "%s", p);
    char *slash = strrchr(a, '/');
    if (slash)
        snprintf(slash, sizeof a - (size_t)(slash - a), "/alpha");
    double *ax = NULL;
    int and = 0;
    size_t ad[4];
    if (results_grid_read(r->dir, a, &ax, &and, ad) != TD_OK || and != 1 || (int)ad[0] != *n) {
        td_error_clear();
        free(ax);
        ax = calloc((size_t)*n, sizeof *ax);
        for (int i = 0; i < *n && ax; i++)
            ax[i] = i;
    }
    *x = ax;
    return *y && *x;
}

static void addition_tables(Rep *r, const Names *ms)
{
    FILE *csv = csv_open(r, "addition.csv",
                         "mode,method,heads,task,alpha,abs_test,norm_test,normalised_by");
    fprintf(r->md, "| mode | method | heads | alpha | absolute (test) | normalised (test) | "
                   "normalised by (single-task test accuracy) |\n"
                   "|---|---|---|---:|---:|---:|---|\n");
    char b1[32], b2[32], b3[32];
    for (int m = 0; m < ms->n; m++) {
        const cJSON *add = jget(r->modes, ms->s[m], "addition", NULL);
        for (const cJSON *me = add->child; me; me = me->next) {
            double alpha = jnum(jget(me, "alpha", NULL));
            const cJSON *hs = jget(me, "heads", NULL);
            for (const cJSON *h = hs ? hs->child : NULL; h; h = h->next) {
                if (!cJSON_IsObject(h)) { /* e.g. "finetuned": "not trained" */
                    fprintf(r->md, "| %s | %s | %s | - | %s | - | - |\n", ms->s[m], me->string,
                            h->string, cJSON_IsString(h) ? h->valuestring : "not run");
                    continue;
                }
                ReportHeads hr;
                report_heads_read(h, &hr);
                double a = hr.abs_test, nn = hr.norm_test;
                /* the key of the denominators, as the stage recorded it; a run
                 * made before it was recorded divided by the finetune stage's
                 * own figures whatever the head set */
                const char *bys = hr.normalised_by;
                char byc[300];
                if (bys)
                    snprintf(byc, sizeof byc, "%s heads (`%s`)", h->string, bys);
                else
                    snprintf(byc, sizeof byc, "not recorded (older run: `single.<task>.test`)");
                fprintf(r->md, "| %s | %s | %s | %s | %s | %s | %s |\n", ms->s[m], me->string,
                        h->string, cell(b1, sizeof b1, alpha, "%.3g"), cell(b2, sizeof b2, a, "%.4f"),
                        cell(b3, sizeof b3, nn, "%.4f"), byc);
                if (csv)
                    fprintf(csv, "%s,%s,%s,mean,%.6g,%.6g,%.6g,%s\n", ms->s[m], me->string,
                            h->string, alpha, a, nn, bys ? bys : "");
                const cJSON *pt = jget(h, "per_task", NULL);
                for (const cJSON *t = pt ? pt->child : NULL; t && csv; t = t->next)
                    fprintf(csv, "%s,%s,%s,%s,%.6g,%.6g,%.6g,%s\n", ms->s[m], me->string,
                            h->string, t->string, alpha, jnum(jget(t, "abs", NULL)),
                            jnum(jget(t, "norm", NULL)), bys ? bys : "");
            }
        }
    }
    fprintf(r->md, "\n");
    if (csv)
        fclose(csv);
}

int report_heads_read(const cJSON *h, ReportHeads *out)
{
    const cJSON *by = jget(h, "normalised_by", NULL);
    out->abs_test = jnum(jget(h, "abs_test", NULL));
    out->norm_test = jnum(jget(h, "norm_test", NULL));
    out->normalised_by = cJSON_IsString(by) ? by->valuestring : NULL;
    return cJSON_IsObject(h);
}

/* Per-task normalised accuracy, one bar per mode/method with the first head set. */
static void addition_bars(Rep *r, const Names *ms)
{
    const char *series[NAMES_MAX];
    char label[NAMES_MAX][128];
    int ns = 0;
    double *v = calloc((size_t)r->task.n * NAMES_MAX + 1, sizeof *v);
    if (!v)
        return;
    for (size_t i = 0; i < (size_t)r->task.n * NAMES_MAX; i++)
        v[i] = NAN;
    const cJSON *pts[NAMES_MAX];
    for (int m = 0; m < ms->n; m++) {
        const cJSON *add = jget(r->modes, ms->s[m], "addition", NULL);
        for (const cJSON *me = add->child; me && ns < NAMES_MAX; me = me->next) {
            const cJSON *hs = jget(me, "heads", NULL), *h = hs ? hs->child : NULL;
            while (h && !cJSON_IsObject(h))
                h = h->next;
            if (!h)
                continue;
            snprintf(label[ns], sizeof label[ns], "%s %s (%s)", ms->s[m], me->string, h->string);
            series[ns] = label[ns];
            pts[ns++] = jget(h, "per_task", NULL);
        }
    }
    for (int t = 0; t < r->task.n; t++)
        for (int k = 0; k < ns; k++)
            v[(size_t)t * ns + k] = jnum(jget(pts[k], r->task.s[t], "norm", NULL));
    if (ns) {
        char path[800];
        snprintf(path, sizeof path, "%s/figures/addition_per_task.svg", r->dir);
        double hi = 1;
        for (int i = 0; i < r->task.n * ns; i++)
            if (isfinite(v[i]) && v[i] > hi)
                hi = v[i];
        figure(r, svg_bar_chart(path, "Task addition: normalised test accuracy per task",
                                "normalised accuracy", r->task.s, r->task.n, series, ns, v, 0, hi),
               "addition_per_task.svg", "normalised accuracy per task");
        fprintf(r->md, "Key: `modes.<mode>.addition.<method>.heads.<heads>.per_task.<task>.norm` "
                       "(merged over the same head set's single-task test accuracy, "
                       "`modes.<mode>.single.<task>.heads.<heads>.test`).\n\n");
    }
    free(v);
}

/* Accuracy against alpha: one figure per method, a line per mode. */
static void addition_curves(Rep *r, const Names *ms)
{
    Names methods = {0};
    for (int m = 0; m < ms->n; m++) {
        Names k;
        keys_of(jget(r->modes, ms->s[m], "addition", NULL), &k);
        for (int i = 0; i < k.n; i++)
            names_add(&methods, k.s[i]);
    }
    for (int i = 0; i < methods.n; i++) {
        SvgSeries ser[NAMES_MAX];
        double *ys[NAMES_MAX] = {0}, *xs = NULL;
        int ns = 0, n = 0;
        char used[NAMES_MAX][640];
        for (int m = 0; m < ms->n; m++) {
            const cJSON *g = jget(r->modes, ms->s[m], "addition", methods.s[i], "grid", NULL);
            double *y = NULL, *x = NULL;
            int k = 0;
            if (!cJSON_IsString(g) ||
                !addition_curve(r, g->valuestring, &y, &x, &k, used[ns], sizeof used[ns])) {
                free(y);
                free(x);
                continue;
            }
            if (!xs) {
                xs = x;
                n = k;
            } else {
                free(x);
            }
            if (k != n) {
                free(y);
                continue;
            }
            ys[ns] = y;
            ser[ns].name = ms->s[m];
            ser[ns++].y = y;
        }
        if (ns) {
            char path[1024], file[200], title[300];
            snprintf(file, sizeof file, "addition_alpha_%s.svg", methods.s[i]);
            snprintf(path, sizeof path, "%s/figures/%s", r->dir, file);
            const char *ds = strrchr(used[0], '/');
            snprintf(title, sizeof title, "Task addition (%s): %.64s, mean over tasks", methods.s[i],
                     ds ? ds + 1 : used[0]);
            double lo = INFINITY, hi = -INFINITY;
            for (int k = 0; k < ns; k++)
                for (int j = 0; j < n; j++)
                    if (isfinite(ys[k][j])) {
                        lo = fmin(lo, ys[k][j]);
                        hi = fmax(hi, ys[k][j]);
                    }
            figure(r, svg_line_chart(path, title, "alpha", "accuracy", xs, n, ser, ns,
                                     fmin(0, lo), fmax(1, hi)),
                   file, title);
            fprintf(r->md, "Data: grids.h5 ");
            for (int k = 0; k < ns; k++)
                fprintf(r->md, "%s`%s` (%s)", k ? ", " : "", used[k], ser[k].name);
            fprintf(r->md, " (a second axis, e.g. task, is averaged; val_norm is val accuracy "
                           "with the frozen heads over the frozen heads' single-task val "
                           "accuracy, `modes.<mode>.single.<task>.heads.theta0.val`, the "
                           "criterion alpha is chosen by).\n\n");
        } else {
            fprintf(r->md, "Accuracy against alpha for %s: _not run_ (no grid in grids.h5).\n\n",
                    methods.s[i]);
        }
        for (int k = 0; k < ns; k++)
            free(ys[k]);
        free(xs);
    }
}

static void sec_addition(Rep *r)
{
    fprintf(r->md, "## Task addition\n\nMerged encoder at the alpha chosen on val (mean "
                   "normalised val accuracy with the frozen heads), scored on test with each head "
                   "set: mean absolute and mean normalised accuracy. Normalised = merged accuracy "
                   "/ single-task accuracy of the fine-tuned encoder with the SAME head set (the "
                   "Normalisers table above), per task; the last column names the denominator. "
                   "Key: `modes.<mode>.addition.<method>.{alpha, heads.<heads>.{abs_test, "
                   "norm_test, normalised_by}}`.\n\n");
    Names ms;
    modes_with(r, "addition", &ms);
    if (!ms.n) {
        not_run(r, "addition");
        return;
    }
    addition_tables(r, &ms);
    addition_curves(r, &ms);
    addition_bars(r, &ms);
}

static void sec_negation(Rep *r)
{
    fprintf(r->md, "## Task negation\n\ntheta0 - alpha tau_t, alpha chosen on val to lower the "
                   "target accuracy while the control keeps its threshold. Key: "
                   "`modes.<mode>.negation.<task>`.\n\n");
    Names ms;
    modes_with(r, "negation", &ms);
    if (!ms.n) {
        not_run(r, "negation");
        return;
    }
    FILE *csv = csv_open(r, "negation.csv", "mode,task,alpha,target_test,control_test,"
                                            "theta0_target_test,theta0_control_test");
    fprintf(r->md, "| mode | target task | alpha | target (test) | control (test) | theta0 "
                   "target | theta0 control |\n|---|---|---:|---:|---:|---:|---:|\n");
    const char *k[5] = {"alpha", "target_test", "control_test", "theta0_target_test",
                        "theta0_control_test"};
    char b[5][32];
    for (int m = 0; m < ms.n; m++) {
        const cJSON *neg = jget(r->modes, ms.s[m], "negation", NULL);
        for (const cJSON *t = neg->child; t; t = t->next) {
            double v[5];
            for (int i = 0; i < 5; i++) {
                v[i] = jnum(jget(t, k[i], NULL));
                cell(b[i], sizeof b[i], v[i], i ? "%.4f" : "%.3g");
            }
            fprintf(r->md, "| %s | %s | %s | %s | %s | %s | %s |\n", ms.s[m], t->string, b[0],
                    b[1], b[2], b[3], b[4]);
            if (csv)
                fprintf(csv, "%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g\n", ms.s[m], t->string, v[0], v[1],
                        v[2], v[3], v[4]);
        }
    }
    fprintf(r->md, "\n");
    if (csv)
        fclose(csv);
}

/* Heat maps of one pair and measure, one per mode, on a shared colour scale. */
static void heatmaps(Rep *r, const Names *ms, const char *pair, const char *measure,
                     const char *zlabel)
{
    double *z[NAMES_MAX] = {0}, *al[NAMES_MAX] = {0};
    int n[NAMES_MAX] = {0};
    double hi = 0;
    for (int m = 0; m < ms->n; m++) {
        const cJSON *g = jget(r->modes, ms->s[m], "disentangle", pair, "grid", NULL);
        char p[600];
        int nd = 0, na = 0;
        size_t d[4], da[4];
        if (!cJSON_IsString(g))
            continue;
        snprintf(p, sizeof p, "%s/%s", g->valuestring, measure);
        if (results_grid_read(r->dir, p, &z[m], &nd, d) != TD_OK || nd != 2 || d[0] != d[1]) {
            td_error_clear();
            free(z[m]);
            z[m] = NULL;
            continue;
        }
        snprintf(p, sizeof p, "%s/alpha", g->valuestring);
        if (results_grid_read(r->dir, p, &al[m], &na, da) != TD_OK || da[0] != d[0]) {
            td_error_clear();
            free(z[m]);
            free(al[m]);
            z[m] = al[m] = NULL;
            continue;
        }
        n[m] = (int)d[0];
        for (size_t i = 0; i < d[0] * d[1]; i++)
            if (isfinite(z[m][i]) && z[m][i] > hi)
                hi = z[m][i];
    }
    if (!(hi > 0))
        hi = 1;
    for (int m = 0; m < ms->n; m++) {
        if (!z[m])
            continue;
        const char *p = strchr(pair, '+');
        char file[300], path[1024], title[300], xl[128], yl[128];
        snprintf(file, sizeof file, "disentangle_%s_%s_%s.svg", ms->s[m], pair, measure);
        for (char *c = file; *c; c++)
            if (*c == '+')
                *c = '_';
        snprintf(path, sizeof path, "%s/figures/%s", r->dir, file);
        snprintf(title, sizeof title, "%s: %s (%s)", ms->s[m], zlabel, pair);
        snprintf(xl, sizeof xl, "alpha1 (%.*s)", p ? (int)(p - pair) : 0, pair);
        snprintf(yl, sizeof yl, "alpha2 (%s)", p ? p + 1 : "");
        figure(r, svg_heatmap(path, title, z[m], n[m], n[m], al[m], al[m], xl, yl, 0, hi, zlabel),
               file, title);
        free(z[m]);
        free(al[m]);
    }
}

static void sec_disentangle(Rep *r)
{
    fprintf(r->md, "## Weight disentanglement\n\nxi(a1, a2) on the grid; pred = fraction of "
                   "changed predictions summed over the two tasks (the paper's xi), repr = "
                   "symmetric KL of the feature softmaxes (head-free). Lower is better. Means "
                   "over the whole grid and over |a1|, |a2| <= 1. Key: "
                   "`modes.<mode>.disentangle.<t1>+<t2>`; heat maps from grids.h5 "
                   "`/<mode>/disentangle/<t1>+<t2>/{pred, repr, alpha}`.\n\n");
    Names ms;
    modes_with(r, "disentangle", &ms);
    if (!ms.n) {
        not_run(r, "disentangle");
        return;
    }
    FILE *csv = csv_open(r, "disentangle.csv", "mode,pair,mean_err_pred,mean_err_pred_inner,"
                                               "mean_err_repr,mean_err_repr_inner");
    fprintf(r->md, "| mode | pair | mean xi pred | pred, abs(a)<=1 | mean xi repr | repr, "
                   "abs(a)<=1 |\n|---|---|---:|---:|---:|---:|\n");
    Names pairs = {0};
    const char *k[4] = {"mean_err_pred", "mean_err_pred_inner", "mean_err_repr",
                        "mean_err_repr_inner"};
    char b[4][32];
    for (int m = 0; m < ms.n; m++) {
        const cJSON *d = jget(r->modes, ms.s[m], "disentangle", NULL);
        for (const cJSON *p = d->child; p; p = p->next) {
            names_add(&pairs, p->string);
            double v[4];
            for (int i = 0; i < 4; i++)
                cell(b[i], sizeof b[i], v[i] = jnum(jget(p, k[i], NULL)), "%.4f");
            fprintf(r->md, "| %s | %s | %s | %s | %s | %s |\n", ms.s[m], p->string, b[0], b[1],
                    b[2], b[3]);
            if (csv)
                fprintf(csv, "%s,%s,%.6g,%.6g,%.6g,%.6g\n", ms.s[m], p->string, v[0], v[1], v[2],
                        v[3]);
        }
    }
    fprintf(r->md, "\n");
    if (csv)
        fclose(csv);
    for (int p = 0; p < pairs.n; p++) {
        fprintf(r->md, "### %s\n\n", pairs.s[p]);
        r->inline_figs = 1; /* the modes side by side, one row per measure */
        heatmaps(r, &ms, pairs.s[p], "pred", "xi (changed predictions)");
        fprintf(r->md, "\n\n");
        heatmaps(r, &ms, pairs.s[p], "repr", "xi (symmetric KL)");
        fprintf(r->md, "\n\n");
        r->inline_figs = 0;
    }
}

static void sec_kernel(Rep *r)
{
    fprintf(r->md, "## Kernel behaviour\n\nEach task vector through the network, f(theta0 + "
                   "tau), and through its linearisation f0 + J tau: test accuracy of both with "
                   "the task's frozen head, how often their predictions differ, and the mean "
                   "distance between their (unit) features against how far the linearisation "
                   "moved them from theta0's. The column \"trained\" says which of the two the "
                   "mode fine-tuned (ntk: the linearisation, so there f(theta0 + tau) shows what "
                   "the same weights give outside the kernel regime). Key: "
                   "`modes.<mode>.kernel.<task>`.\n\n");
    Names ms;
    modes_with(r, "kernel", &ms);
    if (!ms.n) {
        not_run(r, "kernel");
        return;
    }
    FILE *csv = csv_open(r, "kernel.csv", "mode,task,trained,acc_nonlinear,acc_linearised,"
                                          "disagreement,feature_gap,feature_shift");
    fprintf(r->md, "| mode | task | trained | f(theta0 + tau) | f0 + J tau | disagreement | "
                   "feature gap | feature shift |\n|---|---|---|---:|---:|---:|---:|---:|\n");
    char b[5][32];
    const char *k[5] = {"acc_nonlinear", "acc_linearised", "disagreement", "feature_gap",
                        "feature_shift"};
    for (int m = 0; m < ms.n; m++) {
        const cJSON *d = jget(r->modes, ms.s[m], "kernel", NULL);
        for (const cJSON *t = d->child; t; t = t->next) {
            double v[5];
            for (int i = 0; i < 5; i++)
                cell(b[i], sizeof b[i], v[i] = jnum(jget(t, k[i], NULL)), "%.4f");
            const cJSON *tr = jget(t, "trained", NULL);
            const char *trs = cJSON_IsString(tr) ? tr->valuestring : "-";
            fprintf(r->md, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", ms.s[m], t->string, trs,
                    b[0], b[1], b[2], b[3], b[4]);
            if (csv)
                fprintf(csv, "%s,%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g\n", ms.s[m], t->string, trs,
                        v[0], v[1], v[2], v[3], v[4]);
        }
    }
    fprintf(r->md, "\n");
    if (csv)
        fclose(csv);
}

/* ---- the stage ---- */

static TdStatus write_report(const TdConfig *cfg)
{
    Rep r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    study_run_dir(cfg, r.dir, sizeof r.dir);
    char p[800], tmp[850];
    snprintf(p, sizeof p, "%s/tables", r.dir);
    TD_TRY(fs_mkdir_p(p));
    snprintf(p, sizeof p, "%s/figures", r.dir);
    TD_TRY(fs_mkdir_p(p));
    TD_TRY(results_load(r.dir, &r.root));
    r.modes = cJSON_GetObjectItemCaseSensitive(r.root, "modes");
    keys_of(r.modes, &r.mode);
    const cJSON *tasks = jget(r.root, "tasks", NULL);
    for (const cJSON *t = tasks ? tasks->child : NULL; t; t = t->next)
        if (cJSON_IsString(t))
            names_add(&r.task, t->valuestring);
    for (int t = 0; t < cfg->data.tasks.count && !r.task.n; t++)
        names_add(&r.task, cfg->data.tasks.item[t]);
    snprintf(p, sizeof p, "%s/report.md", r.dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    r.md = fopen(tmp, "w");
    if (!r.md) {
        cJSON_Delete(r.root);
        return td_fail(TD_ERR_IO, "%s: cannot create", tmp);
    }
    sec_header(&r);
    sec_train_time(&r);
    sec_single(&r);
    sec_addition(&r);
    r.figures += report_coef_section(r.md, r.dir, r.modes);
    sec_negation(&r);
    sec_disentangle(&r);
    sec_kernel(&r);
    int bad = ferror(r.md);
    bad |= fclose(r.md) != 0;
    cJSON_Delete(r.root);
    if (bad || rename(tmp, p) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot write", p);
    }
    td_log("report: %s (%d figure(s), tables in %s/tables)", p, r.figures, r.dir);
    return TD_OK;
}

TdStatus report_stage(const TdConfig *cfg)
{
    return runtime_agree(g_rt.comm, g_rt.rank == 0 ? write_report(cfg) : TD_OK);
}

/* This process's argv, shell-quoted where needed, from /proc/self/cmdline. */
static void command_line(char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    if (g_rt.world_size > 1) /* the whole job's ranks, also inside a sweep group */
        at += (size_t)snprintf(buf, n, "mpirun -np %d ", g_rt.world_size);
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) {
        snprintf(buf + at, n - at, "tadist (command line unavailable)");
        return;
    }
    char arg[1024];
    size_t k = 0;
    int c;
    while ((c = fgetc(f)) != EOF && at + 4 < n) {
        if (c != 0 && k + 1 < sizeof arg) {
            arg[k++] = (char)c;
            continue;
        }
        arg[k] = 0;
        int quote = strpbrk(arg, " \t\"'$\\") != NULL || k == 0;
        int w = snprintf(buf + at, n - at, quote ? "'%s' " : "%s ", arg);
        at += w > 0 ? (size_t)w : 0;
        if (at >= n)
            at = n - 1;
        k = 0;
    }
    fclose(f);
    if (at > 0 && at < n && buf[at - 1] == ' ')
        buf[at - 1] = 0;
}

static TdStatus note_command(const TdConfig *cfg)
{
    char dir[600], line[4096], stages[1024], when[64];
    study_run_dir(cfg, dir, sizeof dir);
    TD_TRY(fs_mkdir_p(dir));
    command_line(line, sizeof line);
    config_value_text(cfg, "run.stages", stages, sizeof stages);
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON *root = NULL;
    TD_TRY(results_load(dir, &root));
    cJSON *old = cJSON_GetObjectItemCaseSensitive(root, "commands");
    cJSON *list = cJSON_IsArray(old) ? cJSON_Duplicate(old, 1) : cJSON_CreateArray();
    cJSON_Delete(root);
    cJSON *e = cJSON_CreateObject();
    if (!list || !e) {
        cJSON_Delete(list);
        cJSON_Delete(e);
        return td_fail(TD_ERR_NOMEM, "out of memory");
    }
    cJSON_AddStringToObject(e, "command", line);
    cJSON_AddStringToObject(e, "stages", stages);
    cJSON_AddStringToObject(e, "started", when);
    cJSON_AddItemToArray(list, e);
    TD_TRY(results_set(dir, "commands", list));
    /* run name and tasks (results.h layout), for the report */
    TD_TRY(results_set(dir, "run", cJSON_CreateString(cfg->run.name)));
    if (cfg->data.tasks.count == 0)
        return TD_OK;
    cJSON *tasks = cJSON_CreateArray();
    for (int t = 0; t < cfg->data.tasks.count && tasks; t++)
        cJSON_AddItemToArray(tasks, cJSON_CreateString(cfg->data.tasks.item[t]));
    return tasks ? results_set(dir, "tasks", tasks) : td_fail(TD_ERR_NOMEM, "out of memory");
}

TdStatus report_note_command(const TdConfig *cfg)
{
    return runtime_agree(g_rt.comm, g_rt.rank == 0 ? note_command(cfg) : TD_OK);
}
