/* report_coef: the report's "Coefficient searches" section (declared in
 * report.h). Per mode: a table of the uniform alpha of task addition
 * (modes.<mode>.addition.<method>) against each coefficient search
 * (modes.<mode>.coef_search.<method>.<search>_<structure>), heat maps
 * (task x group) of the per-block coefficients, a bar chart of the per-task
 * (and searched uniform) ones, and the objective against iteration. Every
 * number is read from results.json or grids.h5 ("<grid>/coef" [task, group],
 * "<grid>/trace" [iteration]); nothing is recomputed. Tables:
 * coef_search.csv (one row per entry and head set), coef_search_coef.csv
 * (results.json "coef", one row per task and group). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "results.h"
#include "svg.h"

enum { CS_MAX = 64 }; /* entries per mode, tasks, groups, head sets */

typedef struct {
    FILE *md, *csv, *coef_csv;
    const char *dir, *mode;
    const cJSON *modes;
    int figures;
} Cs;

/* A coefficient search: its method, key ("<search>_<structure>") and object. */
typedef struct {
    const char *method, *key;
    const cJSON *e;
} Entry;

static const cJSON *get(const cJSON *o, const char *k)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static double num(const cJSON *o) { return cJSON_IsNumber(o) ? o->valuedouble : NAN; }

static const char *str(const cJSON *o, const char *k, const char *dflt)
{
    const cJSON *s = get(o, k);
    return cJSON_IsString(s) ? s->valuestring : dflt;
}

static const char *cellf(char *b, size_t n, double v, const char *fmt)
{
    if (isfinite(v))
        snprintf(b, n, fmt, v);
    else
        snprintf(b, n, "-");
    return b;
}

/* A CSV field: quoted when it holds a comma, quote or newline. */
static void csv_str(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static FILE *csv_create(const char *dir, const char *name, const char *header)
{
    char path[800];
    snprintf(path, sizeof path, "%s/tables/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f)
        fprintf(f, "%s\n", header);
    return f;
}

/* A file name from parts: characters other than [A-Za-z0-9_-] become '_'. */
static void file_name(char *out, size_t n, const char *fmt, const char *a, const char *b,
                      const char *c)
{
    snprintf(out, n, fmt, a, b, c);
    for (char *p = out; *p && strcmp(p, ".svg") != 0; p++)
        if (!(*p == '_' || *p == '-' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
              (*p >= 'A' && *p <= 'Z')))
            *p = '_';
}

static void figure(Cs *c, TdStatus s, const char *file, const char *caption, int inl)
{
    if (s != TD_OK) {
        fprintf(c->md, "_figure %s could not be written: %s_\n\n", file, td_error_message());
        td_error_clear();
        return;
    }
    c->figures++;
    fprintf(c->md, "![%s](figures/%s)%s", caption, file, inl ? " " : "\n\n");
}

/* Strings of a JSON array into out (at most CS_MAX); their count. */
static int strings(const cJSON *a, const char **out)
{
    int n = 0;
    for (const cJSON *x = cJSON_IsArray(a) ? a->child : NULL; x && n < CS_MAX; x = x->next)
        if (cJSON_IsString(x))
            out[n++] = x->valuestring;
    return n;
}

/* The entry's coefficients from grids.h5 "<grid>/coef", checked against its
 * "tasks" and "groups"; NULL (and a line in the report) when unreadable. */
static double *coef_grid(Cs *c, const Entry *en, const char **tasks, int *T, const char **groups,
                         int *G, char *dset, size_t dn)
{
    *T = strings(get(en->e, "tasks"), tasks);
    *G = strings(get(en->e, "groups"), groups);
    const char *grid = str(en->e, "grid", NULL);
    if (!grid) {
        fprintf(c->md, "%s %s: _no `grid` recorded_.\n\n", en->method, en->key);
        return NULL;
    }
    snprintf(dset, dn, "%s/coef", grid);
    double *d = NULL;
    int nd = 0;
    size_t dims[4];
    if (results_grid_read(c->dir, dset, &d, &nd, dims) != TD_OK) {
        td_error_clear();
        fprintf(c->md, "%s %s: _no dataset `%s` in grids.h5_.\n\n", en->method, en->key, dset);
        return NULL;
    }
    if (nd != 2 || (int)dims[0] != *T || (int)dims[1] != *G || *T == 0 || *G == 0) {
        fprintf(c->md, "%s %s: grids.h5 `%s` has not the shape [tasks, groups] = [%d, %d].\n\n",
                en->method, en->key, dset, *T, *G);
        free(d);
        return NULL;
    }
    return d;
}

/* Head sets present (as objects) in the merges' "heads", in order of appearance. */
static int head_sets(const cJSON *const *merges, int n, const char **out)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *h = get(merges[i], "heads");
        for (const cJSON *x = cJSON_IsObject(h) ? h->child : NULL; x; x = x->next) {
            if (!cJSON_IsObject(x) || !x->string)
                continue;
            int seen = 0;
            for (int j = 0; j < k; j++)
                seen |= strcmp(out[j], x->string) == 0;
            if (!seen && k < CS_MAX)
                out[k++] = x->string;
        }
    }
    return k;
}

/* A coef_search.csv row: v = iterations, seconds, objective_value,
 * norm_val, uniform_alpha, uniform_norm_val. */
static void csv_row(Cs *c, const char *method, const char *search, const char *structure,
                    const char *objective, const char *split, const double v[6],
                    const char *heads, const ReportHeads *r)
{
    fprintf(c->csv, "%s,%s,", c->mode, method);
    csv_str(c->csv, search);
    fprintf(c->csv, ",%s,%s,", structure, objective);
    csv_str(c->csv, split);
    for (int i = 0; i < 6; i++)
        fprintf(c->csv, ",%.6g", v[i]);
    fprintf(c->csv, ",%s,%.6g,%.6g,", heads, r->abs_test, r->norm_test);
    csv_str(c->csv, r->normalised_by ? r->normalised_by : "");
    fputc('\n', c->csv);
}

/* One table row (md) and its CSV rows: the baseline (e NULL: addition
 * object add) or an entry. */
static void row(Cs *c, const char *method, const Entry *en, const cJSON *add, const char **hs,
                int nh)
{
    const cJSON *o = en ? en->e : add;
    char search[160], obj[256], b[6][40];
    const char *structure, *objective, *split;
    double it = NAN, sec = NAN, ov = NAN, nv = num(get(o, "norm_val"));
    double ua = en ? num(get(o, "uniform_alpha")) : num(get(o, "alpha"));
    double unv = en ? num(get(o, "uniform_norm_val")) : nv;
    if (en) {
        snprintf(search, sizeof search, "%s", str(o, "search", en->key));
        structure = str(o, "coefficients", "?");
        objective = str(o, "objective", "?");
        split = str(o, "objective_split", "?");
        it = num(get(o, "iterations"));
        sec = num(get(o, "seconds"));
        ov = num(get(o, "objective_value"));
    } else {
        snprintf(search, sizeof search, add ? "alpha grid (alpha = %s)" : "alpha grid (not run)",
                 cellf(b[0], sizeof b[0], ua, "%.3g"));
        structure = "uniform";
        objective = "norm_val";
        split = "val";
    }
    snprintf(obj, sizeof obj, "%s, %s", objective, split);
    fprintf(c->md, "| %s | %s | %s | %s | %s | %s | %s | %s |", method, search, structure, obj,
            cellf(b[1], sizeof b[1], it, "%.0f"), cellf(b[2], sizeof b[2], sec, "%.1f"),
            cellf(b[3], sizeof b[3], ov, "%.4g"), cellf(b[4], sizeof b[4], nv, "%.4f"));
    const cJSON *heads = get(o, "heads");
    int csv_rows = 0;
    for (int h = 0; h < nh; h++) {
        ReportHeads r;
        int ok = report_heads_read(get(heads, hs[h]), &r);
        fprintf(c->md, " %s | %s |", cellf(b[0], sizeof b[0], r.abs_test, "%.4f"),
                cellf(b[5], sizeof b[5], r.norm_test, "%.4f"));
        if (!ok || !c->csv)
            continue;
        csv_row(c, method, en ? search : "grid", structure, objective, split,
                (double[6]){it, sec, ov, nv, ua, unv}, hs[h], &r);
        csv_rows++;
    }
    fputc('\n', c->md);
    if (!csv_rows && c->csv && o) /* no head set: the merge alone */
        csv_row(c, method, en ? search : "grid", structure, objective, split,
                (double[6]){it, sec, ov, nv, ua, unv}, "",
                &(ReportHeads){NAN, NAN, NULL});
    if (!en || !c->coef_csv)
        return;
    const cJSON *coef = get(o, "coef");
    const char *groups[CS_MAX];
    int G = strings(get(o, "groups"), groups);
    for (const cJSON *t = coef ? coef->child : NULL; t; t = t->next) {
        int g = 0;
        for (const cJSON *v = cJSON_IsArray(t) ? t->child : NULL; v; v = v->next, g++)
            fprintf(c->coef_csv, "%s,%s,%s,%s,%s,%s,%.6g\n", c->mode, method, search, structure,
                    t->string, g < G ? groups[g] : "?", num(v));
    }
}

static void table(Cs *c, const cJSON *cs, const Entry *en, int ne)
{
    const cJSON *merges[CS_MAX + CS_MAX];
    int nm = 0;
    for (const cJSON *me = cs->child; me && nm < CS_MAX; me = me->next)
        merges[nm++] = get(get(get(c->modes, c->mode), "addition"), me->string);
    for (int i = 0; i < ne; i++)
        merges[nm++] = en[i].e;
    const char *hs[CS_MAX];
    int nh = head_sets(merges, nm, hs);
    fprintf(c->md, "| method | search | coefficients | objective, split | iterations | "
                   "seconds | final objective | norm_val |");
    for (int h = 0; h < nh; h++)
        fprintf(c->md, " %s abs (test) | %s norm (test) |", hs[h], hs[h]);
    fprintf(c->md, "\n|---|---|---|---|---:|---:|---:|---:|");
    for (int h = 0; h < nh; h++)
        fprintf(c->md, "---:|---:|");
    fputc('\n', c->md);
    for (const cJSON *me = cs->child; me; me = me->next) {
        if (!cJSON_IsObject(me))
            continue;
        row(c, me->string, NULL, get(get(get(c->modes, c->mode), "addition"), me->string), hs, nh);
        for (int i = 0; i < ne; i++)
            if (strcmp(en[i].method, me->string) == 0)
                row(c, me->string, &en[i], NULL, hs, nh);
    }
    fputc('\n', c->md);
}

/* Heat maps of the per-block coefficients, one per entry, on one colour
 * scale: groups across, tasks down (the first task at the top). */
static void block_maps(Cs *c, const Entry *en, int ne)
{
    double *z[CS_MAX] = {0};
    const char *tasks[CS_MAX][CS_MAX], *groups[CS_MAX][CS_MAX];
    int T[CS_MAX] = {0}, G[CS_MAX] = {0}, any = 0;
    char dset[CS_MAX][640];
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < ne; i++) {
        if (strcmp(str(en[i].e, "coefficients", ""), "block") != 0)
            continue;
        z[i] = coef_grid(c, &en[i], tasks[i], &T[i], groups[i], &G[i], dset[i], sizeof dset[i]);
        for (int k = 0; z[i] && k < T[i] * G[i]; k++)
            if (isfinite(z[i][k])) {
                lo = fmin(lo, z[i][k]);
                hi = fmax(hi, z[i][k]);
            }
    }
    lo = fmin(0, lo);
    for (int i = 0; i < ne; i++) {
        if (!z[i])
            continue;
        int n = T[i], g = G[i];
        double *m = malloc((size_t)n * g * sizeof *m);
        const char *rows[CS_MAX];
        for (int j = 0; j < n; j++) /* task j drawn at height n-1-j */
            rows[j] = tasks[i][n - 1 - j];
        for (int a = 0; m && a < g; a++)
            for (int j = 0; j < n; j++)
                m[(size_t)a * n + j] = z[i][(size_t)(n - 1 - j) * g + a];
        char file[300], path[1100], title[300];
        file_name(file, sizeof file, "coef_%s_%s_%s.svg", c->mode, en[i].method, en[i].key);
        snprintf(path, sizeof path, "%s/figures/%s", c->dir, file);
        snprintf(title, sizeof title, "%s %s: %s coefficients", c->mode, en[i].method, en[i].key);
        if (!any)
            fprintf(c->md, "Per-block coefficients (task x group, one colour scale), from "
                           "grids.h5 `<grid>/coef`:\n\n");
        any = 1;
        figure(c,
               m ? svg_heatmap_labels(path, title, m, g, n, groups[i], rows, "group", "task", lo,
                                      hi, "coefficient")
                 : td_fail(TD_ERR_NOMEM, "out of memory"),
               file, title, 1);
        free(m);
    }
    if (any) {
        fprintf(c->md, "\n\nData: grids.h5");
        for (int i = 0, k = 0; i < ne; i++)
            if (z[i])
                fprintf(c->md, "%s `%s`", k++ ? "," : "", dset[i]);
        fprintf(c->md, " (axes task,group; the same numbers as "
                       "`modes.%s.coef_search.<method>.<search>_block.coef`, in "
                       "tables/coef_search_coef.csv).\n\n",
                c->mode);
    }
    for (int i = 0; i < ne; i++)
        free(z[i]);
}

/* One bar chart of the per-task (and searched uniform) coefficients of a
 * mode, a series per entry, tasks of the first such entry. */
static void task_bars(Cs *c, const Entry *en, int ne)
{
    const char *tasks[CS_MAX], *series[CS_MAX], *names[CS_MAX], *groups[CS_MAX];
    char label[CS_MAX][200], dset[CS_MAX][640];
    double *v = NULL;
    int T = 0, ns = 0, used[CS_MAX];
    for (int i = 0; i < ne; i++) {
        const char *st = str(en[i].e, "coefficients", "");
        if (strcmp(st, "task") != 0 && strcmp(st, "uniform") != 0)
            continue;
        int t = 0, g = 0;
        double *d = coef_grid(c, &en[i], names, &t, groups, &g, dset[ns], sizeof dset[ns]);
        if (d && g != 1) {
            fprintf(c->md, "%s %s: grids.h5 `%s` has %d groups, not 1.\n\n", en[i].method,
                    en[i].key, dset[ns], g);
            free(d);
            d = NULL;
        }
        if (!d)
            continue;
        if (!v) {
            T = t;
            memcpy(tasks, names, (size_t)t * sizeof *names);
            v = malloc((size_t)T * CS_MAX * sizeof *v);
            for (int k = 0; v && k < T * CS_MAX; k++)
                v[k] = NAN;
        }
        if (!v) {
            free(d);
            break;
        }
        for (int a = 0; a < T; a++) /* aligned by task name */
            for (int b = 0; b < t; b++)
                if (strcmp(tasks[a], names[b]) == 0)
                    v[(size_t)a * CS_MAX + ns] = d[b];
        free(d);
        snprintf(label[ns], sizeof label[ns], "%s %s", en[i].method, en[i].key);
        series[ns] = label[ns];
        used[ns++] = i;
    }
    if (!ns) {
        free(v);
        return;
    }
    double *vals = malloc((size_t)T * ns * sizeof *vals), lo = 0, hi = -INFINITY;
    for (int a = 0; vals && a < T; a++)
        for (int k = 0; k < ns; k++) {
            double x = vals[(size_t)a * ns + k] = v[(size_t)a * CS_MAX + k];
            if (isfinite(x)) {
                lo = fmin(lo, x);
                hi = fmax(hi, x);
            }
        }
    char file[300], path[1100], title[300];
    file_name(file, sizeof file, "coef_task_%s.svg", c->mode, NULL, NULL);
    snprintf(path, sizeof path, "%s/figures/%s", c->dir, file);
    snprintf(title, sizeof title, "%s: per-task coefficients", c->mode);
    figure(c,
           vals ? svg_bar_chart(path, title, "coefficient", tasks, T, series, ns, vals, lo,
                                isfinite(hi) && hi > lo ? hi * 1.05 : lo + 1)
                : td_fail(TD_ERR_NOMEM, "out of memory"),
           file, title, 0);
    fprintf(c->md, "Data: grids.h5");
    for (int k = 0; k < ns; k++)
        fprintf(c->md, "%s `%s` (%s)", k ? "," : "", dset[k], en[used[k]].key);
    fprintf(c->md, " (axes task,group; one group, \"all\").\n\n");
    free(vals);
    free(v);
}

/* The objective against iteration: one chart per method and objective, a
 * line per entry, from grids.h5 "<grid>/trace". */
static void traces(Cs *c, const cJSON *cs, const Entry *en, int ne)
{
    for (const cJSON *me = cs->child; me; me = me->next) {
        const char *objs[CS_MAX];
        int no = 0;
        for (int i = 0; i < ne; i++) {
            if (strcmp(en[i].method, me->string) != 0)
                continue;
            const char *o = str(en[i].e, "objective", "?");
            int seen = 0;
            for (int k = 0; k < no; k++)
                seen |= strcmp(objs[k], o) == 0;
            if (!seen && no < CS_MAX)
                objs[no++] = o;
        }
        for (int k = 0; k < no; k++) {
            SvgPoints sp[CS_MAX];
            double *ys[CS_MAX], *xs[CS_MAX];
            char dset[CS_MAX][640];
            int ns = 0;
            for (int i = 0; i < ne; i++) {
                const char *grid = str(en[i].e, "grid", NULL);
                if (strcmp(en[i].method, me->string) != 0 || !grid ||
                    strcmp(str(en[i].e, "objective", "?"), objs[k]) != 0)
                    continue;
                snprintf(dset[ns], sizeof dset[ns], "%s/trace", grid);
                int nd = 0;
                size_t dims[4];
                double *y = NULL;
                if (results_grid_read(c->dir, dset[ns], &y, &nd, dims) != TD_OK || nd != 1) {
                    td_error_clear();
                    free(y);
                    fprintf(c->md, "%s %s: _no 1-D dataset `%s` in grids.h5_.\n\n",
                            me->string, en[i].key, dset[ns]);
                    continue;
                }
                double *x = malloc((dims[0] ? dims[0] : 1) * sizeof *x);
                if (!x) {
                    free(y);
                    continue;
                }
                for (size_t j = 0; j < dims[0]; j++)
                    x[j] = (double)(j + 1); /* the step / evaluation number */
                ys[ns] = y;
                xs[ns] = x;
                sp[ns] = (SvgPoints){en[i].key, x, y, NULL, (int)dims[0]};
                ns++;
            }
            if (!ns)
                continue;
            const char *min = strcmp(objs[k], "norm_acc") == 0 ? "maximised" : "minimised";
            char file[300], path[1100], title[300], yl[160];
            file_name(file, sizeof file, "coef_trace_%s_%s_%s.svg", c->mode, me->string, objs[k]);
            snprintf(path, sizeof path, "%s/figures/%s", c->dir, file);
            snprintf(title, sizeof title, "%s %s: %s against iteration", c->mode, me->string,
                     objs[k]);
            snprintf(yl, sizeof yl, "%s (%s)", objs[k], min);
            figure(c, svg_trace_chart(path, title, "iteration (step or evaluation)", yl, sp, ns),
                   file, title, 0);
            fprintf(c->md, "Data: grids.h5");
            for (int i = 0; i < ns; i++)
                fprintf(c->md, "%s `%s`", i ? "," : "", dset[i]);
            fprintf(c->md, " (the objective after each step or evaluation, in order).\n\n");
            for (int i = 0; i < ns; i++) {
                free(ys[i]);
                free(xs[i]);
            }
        }
    }
}

/* The entries of a mode's coef_search object, in file order. */
static int entries(const cJSON *cs, Entry *out)
{
    int n = 0;
    for (const cJSON *me = cJSON_IsObject(cs) ? cs->child : NULL; me; me = me->next)
        for (const cJSON *e = cJSON_IsObject(me) ? me->child : NULL; e && n < CS_MAX; e = e->next)
            if (cJSON_IsObject(e))
                out[n++] = (Entry){me->string, e->string, e};
    return n;
}

int report_coef_section(FILE *md, const char *run_dir, const cJSON *modes)
{
    Cs c = {md, NULL, NULL, run_dir, NULL, modes, 0};
    fprintf(md, "## Coefficient searches\n\nMerge coefficients found per task or per block "
                "(the blocks, then \"rest\") instead of one uniform alpha: learned by gradient "
                "(AdaMerging) or by a black-box optimiser, each against the uniform alpha of "
                "task addition with the same merge method. norm_val is the mean normalised val "
                "accuracy with the frozen heads; abs / norm are mean absolute / normalised test "
                "accuracies with each head set (theta0 = the frozen heads), normalised as in "
                "task addition. Keys: `modes.<mode>.coef_search.<method>.<search>_<structure>.{"
                "search, coefficients, objective, objective_split, iterations, seconds, "
                "objective_value, norm_val, heads.<heads>.{abs_test, norm_test}}`; the uniform "
                "rows: `modes.<mode>.addition.<method>.{alpha, norm_val, heads}`. The final "
                "objective is minimised for entropy and val_ce, maximised for norm_acc.\n\n");
    Entry en[CS_MAX];
    int any = 0;
    for (const cJSON *m = modes ? modes->child : NULL; m && !any; m = m->next)
        any = entries(get(m, "coef_search"), en) > 0;
    if (!any) {
        fprintf(md, "_not run_ (no `coef_search` results in results.json).\n\n");
        return 0;
    }
    c.csv = csv_create(run_dir, "coef_search.csv",
                       "mode,method,search,coefficients,objective,objective_split,iterations,"
                       "seconds,objective_value,norm_val,uniform_alpha,uniform_norm_val,heads,"
                       "abs_test,norm_test,normalised_by");
    c.coef_csv = csv_create(run_dir, "coef_search_coef.csv",
                            "mode,method,search,coefficients,task,group,coef");
    for (const cJSON *m = modes->child; m; m = m->next) {
        const cJSON *cs = get(m, "coef_search");
        int ne = entries(cs, en);
        if (!ne || !m->string)
            continue;
        c.mode = m->string;
        fprintf(md, "### %s\n\n", c.mode);
        table(&c, cs, en, ne);
        block_maps(&c, en, ne);
        task_bars(&c, en, ne);
        traces(&c, cs, en, ne);
    }
    if (c.csv)
        fclose(c.csv);
    if (c.coef_csv)
        fclose(c.coef_csv);
    return c.figures;
}
