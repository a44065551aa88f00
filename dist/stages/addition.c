/* addition: the addition stage - merged task vectors, the alpha grid (and the
 * TIES/DARE parameter grids) on val, the per-task coefficient searches, and
 * the chosen merge on test with every head set (search.h). */
#include "coef_search.h"
#include "search_mode.h"
#include "sur_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "results.h"
#include "runtime.h"

/* ---- addition ---- */

static double row_score(const double *val, int T, const double *nval)
{
    double m = 0;
    for (int t = 0; t < T; t++)
        m += val[t] / nval[t];
    return m / T;
}

/* Names, in a search result o, the denominators of its normalised val
 * accuracies (norm_val and the val_norm grid). */
static void norm_val_by(const ModeRun *r, cJSON *o)
{
    char by[160];
    snprintf(by, sizeof by, "modes.%s.single.<task>.heads.%s.val", r->mode, k_head_set[HS_THETA0]);
    cJSON_AddStringToObject(o, "norm_val_by", by);
}

/* Rank 0: val_acc, val_norm (rows x tasks) and a per-row axis at group gp. */
static TdStatus write_val_grids(const ModeRun *r, const char *gp, const double *val,
                                const double *nval, int rows, const char *axis_name,
                                const double *axis, int axis_cols, const char *axes)
{
    int T = r->ntasks;
    double *norm = calloc((size_t)rows * T + 1, sizeof *norm);
    if (!norm)
        return td_fail(TD_ERR_NOMEM, "search: out of memory");
    for (int i = 0; i < rows * T; i++)
        norm[i] = val[i] / nval[i % T];
    char p[400];
    size_t dims[2] = {(size_t)rows, (size_t)T}, adims[2] = {(size_t)rows, (size_t)axis_cols};
    snprintf(p, sizeof p, "%s/val_acc", gp);
    TdStatus s = results_grid_write(r->run_dir, p, val, 2, dims, axes);
    snprintf(p, sizeof p, "%s/val_norm", gp);
    if (s == TD_OK)
        s = results_grid_write(r->run_dir, p, norm, 2, dims, axes);
    snprintf(p, sizeof p, "%s/%s", gp, axis_name);
    if (s == TD_OK)
        s = results_grid_write(r->run_dir, p, axis, axis_cols > 1 ? 2 : 1, adims,
                               axis_cols > 1 ? axes : axis_name);
    free(norm);
    return s;
}

/* The uniform alpha search of one merge: tau = merge(spec) on every rank, the
 * alpha grid x val splits through the pool (journal addition_<mode>_<tag>),
 * val (alphas x tasks) and the best alpha index; grids at gp. */
static TdStatus uniform_search(ModeRun *r, const char *tag, const MergeSpec *spec, const char *gp,
                               const double *nval, double *val, int *best)
{
    const TdConfig *cfg = r->cfg;
    int T = r->ntasks, A = search_alpha_count(cfg);
    double t0 = td_wall();
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, spec, r->tau));
    r->cur = NAN;
    td_log("addition %s/%s: merged %d task vectors in %.2fs", r->mode, tag, spec->ntasks,
           td_wall() - t0);
    char journal[1200], key[40], what[600];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode, tag);
    snprintf(what, sizeof what, "%.300s|k%.17g|p%.17g|%s|%d", tag, spec->ties ? spec->ties_k : -1.0,
             spec->dare_p, spec->ties_global ? "global" : "tensor", spec->mean);
    mode_search_key(r, what, key);
    PoolSpec ps = {.journal = journal, .key = key, .nitems = A * T, .stop_after = cfg->merge.stop_after};
    t0 = td_wall();
    int which[TV_MAX_TASKS];
    char stag[400];
    for (int t = 0; t < T; t++)
        which[t] = t;
    snprintf(stag, sizeof stag, "addition_%s_%s_val", r->mode, tag);
    TD_TRY(sur_alpha_grid(r, which, T, &ps, stag, val));
    const int sur = r->ntk && cfg->merge.surrogate.ntk; /* what sur_alpha_grid chose */
    *best = search_choose_alpha(val, A, T, nval);
    td_log("addition %s/%s: %d alphas x %d tasks searched in %.2fs%s; alpha %.4g (mean "
           "normalised val %.4f)",
           r->mode, tag, A, T, td_wall() - t0, sur ? " (linear surrogate, exact for ntk)" : "",
           search_alpha(cfg, *best), row_score(val + (size_t)*best * T, T, nval));
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        double *al = calloc((size_t)A, sizeof *al);
        for (int a = 0; al && a < A; a++)
            al[a] = search_alpha(cfg, a);
        s = al ? write_val_grids(r, gp, val, nval, A, "alpha", al, 1, "alpha,task")
               : td_fail(TD_ERR_NOMEM, "search: out of memory");
        free(al);
    }
    return runtime_agree(g_rt.comm, s);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int search_random_coef(int seed, int cand, int task, int nalpha)
{
    uint64_t x = splitmix64((uint64_t)(uint32_t)seed);
    x = splitmix64(x ^ (uint64_t)(uint32_t)cand);
    x = splitmix64(x ^ ((uint64_t)(uint32_t)task << 32));
    return (int)(x % (uint64_t)nalpha);
}

/* The (ties.k, dare.p) points searched for method: the grids where set (k
 * major), else the single values. */
static int param_points(const TdConfig *cfg, const MergeSpec *spec, double *k, double *p)
{
    const TdCfgNums *kg = &cfg->merge.ties.k_grid, *pg = &cfg->merge.dare.p_grid;
    int nk = spec->ties && kg->count ? kg->count : 1;
    int np = spec->dare_p > 0 && pg->count ? pg->count : 1;
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < np; j++) {
            k[i * np + j] = spec->ties && kg->count ? kg->v[i] : spec->ties_k;
            p[i * np + j] = spec->dare_p > 0 && pg->count ? pg->v[j] : spec->dare_p;
        }
    return nk * np;
}

/* One merge.methods entry: the alpha search with the frozen heads, whose
 * normaliser is therefore the frozen heads' single-task val accuracy (also
 * with finetune.train_heads, where the finetune stage's own figures are the
 * trained heads'), then every head set on test against its own single-task
 * test accuracy. */
static TdStatus addition_method(ModeRun *r, const char *method, const SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    double nval[TV_MAX_TASKS];
    for (int t = 0; t < r->ntasks; t++) /* the search scores with the frozen heads */
        nval[t] = sa->acc[HS_THETA0][0][t] > 0 ? sa->acc[HS_THETA0][0][t] : 1.0;
    int T = r->ntasks, A = search_alpha_count(cfg);
    MergeSpec spec;
    TD_TRY(runtime_agree(g_rt.comm, merge_spec_from_config(cfg, method, &r->tv, &spec)));
    enum { MAXP = TD_CFG_LIST_MAX * TD_CFG_LIST_MAX };
    static double pk[MAXP], pp[MAXP];
    int P = param_points(cfg, &spec, pk, pp);
    double *val = calloc((size_t)P * A * T, sizeof *val);
    int *best = calloc((size_t)P, sizeof *best);
    TdStatus s = runtime_agree(g_rt.comm, val && best ? TD_OK
                                                           : td_fail(TD_ERR_NOMEM, "out of memory"));
    int bp = 0;
    double bv = -INFINITY;
    char gp[300], tag[300];
    for (int i = 0; i < P && s == TD_OK; i++) {
        spec.ties_k = pk[i];
        spec.dare_p = pp[i];
        if (P == 1) {
            snprintf(tag, sizeof tag, "%s", method);
            snprintf(gp, sizeof gp, "/%s/addition/%s", r->mode, method);
        } else {
            snprintf(tag, sizeof tag, "%s_g%d", method, i);
            snprintf(gp, sizeof gp, "/%s/addition/%s/g%d", r->mode, method, i);
        }
        double *v = val + (size_t)i * A * T;
        s = uniform_search(r, tag, &spec, gp, nval, v, &best[i]);
        double sc = s == TD_OK ? row_score(v + (size_t)best[i] * T, T, nval) : 0;
        if (s == TD_OK && sc > bv) {
            bv = sc;
            bp = i;
        }
        if (s == TD_OK && P > 1)
            td_log("addition %s/%s: grid point %d (ties.k %g, dare.p %g): alpha %.4g, mean "
                   "normalised val %.4f",
                   r->mode, method, i, pk[i], pp[i], search_alpha(cfg, best[i]), sc);
    }
    spec.ties_k = pk[bp];
    spec.dare_p = pp[bp];
    if (s == TD_OK && bp != P - 1) /* tau is the last point's */
        s = merge_collective(g_rt.comm, &r->tv, &r->m, &spec, r->tau);
    r->cur = NAN;
    double alpha = search_alpha(cfg, s == TD_OK ? best[bp] : 0);
    cJSON *heads = NULL;
    if (s == TD_OK)
        s = mode_heads_result(r, alpha, sa, method, &heads);
    if (s == TD_OK && g_rt.rank == 0) {
        char kp[300];
        if (P == 1)
            snprintf(gp, sizeof gp, "/%s/addition/%s", r->mode, method);
        else
            snprintf(gp, sizeof gp, "/%s/addition/%s/g%d", r->mode, method, bp);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
        cJSON_AddNumberToObject(o, "alpha_index", best[bp]);
        cJSON_AddStringToObject(o, "grid", gp);
        cJSON_AddNumberToObject(o, "norm_val", bv);
        norm_val_by(r, o);
        if (spec.ties)
            cJSON_AddNumberToObject(o, "ties_k", spec.ties_k);
        if (spec.dare_p > 0)
            cJSON_AddNumberToObject(o, "dare_p", spec.dare_p);
        if (P > 1) {
            cJSON *pg = cJSON_AddArrayToObject(o, "param_grid");
            for (int i = 0; i < P; i++) {
                cJSON *q = cJSON_CreateObject();
                if (spec.ties)
                    cJSON_AddNumberToObject(q, "ties_k", pk[i]);
                if (spec.dare_p > 0)
                    cJSON_AddNumberToObject(q, "dare_p", pp[i]);
                cJSON_AddNumberToObject(q, "alpha", search_alpha(cfg, best[i]));
                cJSON_AddNumberToObject(q, "norm_val",
                                        row_score(val + ((size_t)i * A + best[i]) * T, T, nval));
                char g[300];
                snprintf(g, sizeof g, "/%s/addition/%s/g%d", r->mode, method, i);
                cJSON_AddStringToObject(q, "grid", g);
                cJSON_AddItemToArray(pg, q);
            }
        }
        cJSON_AddItemToObject(o, "heads", heads);
        heads = NULL;
        snprintf(kp, sizeof kp, "modes.%s.addition.%s", r->mode, method);
        s = results_set(r->run_dir, kp, o);
    }
    cJSON_Delete(heads);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK && !config_names_contains(&cfg->merge.search, "none"))
        s = coef_searches(r, method, &spec, alpha, bv, nval, sa);
    free(val);
    free(best);
    return s;
}

TdStatus addition_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        SingleAcc sa;
        /* the normalisers: from the single stage's journal when it ran */
        s = single_open(&r, cfg, cfg->finetune.modes.item[k], &sa);
        for (int i = 0; i < cfg->merge.methods.count && s == TD_OK; i++)
            s = addition_method(&r, cfg->merge.methods.item[i], &sa);
        mode_free(&r);
    }
    return s;
}
