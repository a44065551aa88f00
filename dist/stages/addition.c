/* addition: the addition stage - merged task vectors, the alpha grid (and the
 * TIES/DARE parameter grids) on val, the per-task coefficient searches, and
 * the chosen merge on test with every head set (search.h). */
#include "search_mode.h"

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

/* The "heads" object of a result at the encoder mode_encoder(r, c): every
 * head set of eval.heads, each normalised by its own single-task test
 * accuracy (rank 0; NULL elsewhere). Collective. */
static TdStatus heads_result(ModeRun *r, double c, const SingleAcc *sa, const char *what,
                             cJSON **out)
{
    int refit = config_names_contains(&r->cfg->eval.heads, "refit");
    HeadScores hs;
    *out = NULL;
    TD_TRY(mode_score_heads(r, c, refit, &hs));
    if (g_rt.rank != 0)
        return TD_OK;
    cJSON *h = cJSON_CreateObject();
    for (int k = 0; k < HS_N; k++) {
        if (k == HS_REFIT && !refit)
            continue;
        if (k == HS_FINETUNED && !r->ft_found) {
            cJSON_AddStringToObject(h, k_head_set[k], "not trained");
            continue;
        }
        cJSON *o = mode_head_json(r, k, hs.abs[k], sa->acc[k][1]);
        td_log("addition %s/%s: test abs %.4f norm %.4f (%s heads, over their own single-task "
               "accuracy)",
               r->mode, what, cJSON_GetObjectItem(o, "abs_test")->valuedouble,
               cJSON_GetObjectItem(o, "norm_test")->valuedouble, k_head_set[k]);
        cJSON_AddItemToObject(h, k_head_set[k], o);
    }
    *out = h;
    return TD_OK;
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
    r->cand = -1;
    td_log("addition %s/%s: merged %d task vectors in %.2fs", r->mode, tag, spec->ntasks,
           td_wall() - t0);
    char journal[1200], key[40], what[600];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode, tag);
    snprintf(what, sizeof what, "%.300s|k%.17g|p%.17g|%s|%d", tag, spec->ties ? spec->ties_k : -1.0,
             spec->dare_p, spec->ties_global ? "global" : "tensor", spec->mean);
    mode_search_key(r, what, key);
    PoolSpec ps = {journal, key, A * T, cfg->merge.stop_after};
    t0 = td_wall();
    TD_TRY(search_pool(g_rt.comm, &ps, mode_item_val, r, val));
    *best = search_choose_alpha(val, A, T, nval);
    td_log("addition %s/%s: %d alphas x %d tasks searched in %.2fs; alpha %.4g (mean "
           "normalised val %.4f)",
           r->mode, tag, A, T, td_wall() - t0, search_alpha(cfg, *best),
           row_score(val + (size_t)*best * T, T, nval));
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

/* Item = candidate * ntasks + task: val accuracy of theta0 + merge(cspec with
 * the candidate's coefficients), merged on this rank alone. */
static TdStatus item_coef(void *ctx, int item, double *acc)
{
    ModeRun *r = ctx;
    int c = item / r->ntasks, t = item % r->ntasks;
    if (r->cand != c) {
        MergeSpec sp = *r->cspec;
        for (int j = 0; j < sp.ntasks; j++)
            sp.coef[j] = search_alpha(r->cfg, r->cidx[(size_t)c * r->ntasks + j]);
        r->cand = -1;
        r->cur = NAN;
        TD_TRY(merge_collective(MPI_COMM_SELF, &r->tv, &r->m, &sp, r->tau));
        r->cand = c;
    }
    EvalEncoder enc = mode_encoder(r, 1.0);
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[t], TASK_VAL, r->item_batch,
                         r->cfg->eval.limit, r->head[t], r->classes[t], acc);
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

/* Runs rows [first, first + n) of idx (candidates x tasks) through the pool
 * into val; what names the search in its journal and key. */
static TdStatus coef_pool(ModeRun *r, const char *tag, const char *what, const MergeSpec *spec,
                          const int *idx, int first, int n, double *val)
{
    int T = r->ntasks;
    char journal[1200], key[40], kw[1200];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode, tag);
    int len = snprintf(kw, sizeof kw, "%.300s|k%.17g|p%.17g|%s|%d|%d", what,
                       spec->ties ? spec->ties_k : -1.0, spec->dare_p,
                       spec->ties_global ? "global" : "tensor", spec->mean, n);
    for (int i = 0; i < T && len > 0 && (size_t)len < sizeof kw; i++) /* the start row */
        len += snprintf(kw + len, sizeof kw - (size_t)len, "|%d", idx[(size_t)first * T + i]);
    mode_search_key(r, kw, key);
    r->cspec = spec;
    r->cidx = idx + (size_t)first * T;
    r->cand = -1;
    r->cur = NAN;
    PoolSpec ps = {journal, key, n * T, r->cfg->merge.stop_after};
    TdStatus s = search_pool(g_rt.comm, &ps, item_coef, r, val + (size_t)first * T);
    r->cand = -1;
    r->cur = NAN;
    return s;
}

/* The per-task coefficient search (merge.coef_search) at the merge spec,
 * starting from the uniform choice (row ubest of uval); scores and records
 * modes.<mode>.addition.<method>_coef. Collective. */
static TdStatus coef_search(ModeRun *r, const char *method, const MergeSpec *spec,
                            const double *uval, int ubest, const double *nval,
                            const SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    const char *kind = cfg->merge.coef_search;
    int T = r->ntasks, A = search_alpha_count(cfg), budget = cfg->merge.coef_budget;
    int *idx = calloc((size_t)(budget + 1) * T, sizeof *idx);
    double *val = calloc((size_t)(budget + 1) * T, sizeof *val);
    TdStatus s = runtime_agree(g_rt.comm, idx && val ? TD_OK
                                                          : td_fail(TD_ERR_NOMEM, "out of memory"));
    char tag[300];
    for (int t = 0; t < T; t++) { /* row 0: the uniform choice, already evaluated */
        idx[t] = ubest;
        val[t] = uval[(size_t)ubest * T + t];
    }
    int n = 1, chosen = 0;
    double t0 = td_wall();
    if (s == TD_OK && strcmp(kind, "random") == 0) {
        for (int c = 0; c < budget; c++)
            for (int t = 0; t < T; t++)
                idx[(size_t)(c + 1) * T + t] = search_random_coef(cfg->merge.coef_seed, c, t, A);
        char what[300];
        snprintf(what, sizeof what, "coef|random|%s|%d", method, cfg->merge.coef_seed);
        snprintf(tag, sizeof tag, "%s_coef_random", method);
        s = coef_pool(r, tag, what, spec, idx, 1, budget, val);
        n = budget + 1;
        chosen = search_choose_alpha(val, n, T, nval); /* the uniform start wins ties */
    } else if (s == TD_OK) { /* coordinate */
        int cur = 0, used = 0, step = 0;
        for (int round = 0; s == TD_OK && used < budget; round++) {
            int moved = 0;
            for (int t = 0; s == TD_OK && t < T && used < budget; t++, step++) {
                int m = 0;
                for (int i = 0; i < A && used + m < budget; i++) {
                    if (i == idx[(size_t)cur * T + t])
                        continue;
                    memcpy(idx + (size_t)(n + m) * T, idx + (size_t)cur * T, T * sizeof *idx);
                    idx[(size_t)(n + m) * T + t] = i;
                    m++;
                }
                if (m == 0)
                    continue;
                /* the key: the sweep's rows and the value of t they replace */
                char what[300];
                snprintf(what, sizeof what, "coef|coordinate|%s|step%d|task%d|from%d", method,
                         step, t, idx[(size_t)cur * T + t]);
                snprintf(tag, sizeof tag, "%s_coef_coord%d", method, step);
                s = coef_pool(r, tag, what, spec, idx, n, m, val);
                if (s != TD_OK)
                    break;
                int b = cur;
                double bv = row_score(val + (size_t)cur * T, T, nval);
                for (int k = n; k < n + m; k++) {
                    double v = row_score(val + (size_t)k * T, T, nval);
                    if (v > bv) {
                        bv = v;
                        b = k;
                    }
                }
                n += m;
                used += m;
                if (b != cur) {
                    cur = b;
                    moved = 1;
                }
            }
            td_log("addition %s/%s: coordinate round %d: %d vector(s) so far, mean normalised "
                   "val %.4f",
                   r->mode, method, round, used, row_score(val + (size_t)cur * T, T, nval));
            if (!moved)
                break;
        }
        chosen = cur;
    }
    if (s != TD_OK) {
        free(idx);
        free(val);
        return s;
    }
    double score = row_score(val + (size_t)chosen * T, T, nval);
    td_log("addition %s/%s: %s per-task search, %d vector(s) in %.2fs; mean normalised val %.4f "
           "(uniform alpha %.4g: %.4f)",
           r->mode, method, kind, n - 1, td_wall() - t0, score, search_alpha(cfg, ubest),
           row_score(val, T, nval));
    /* the chosen vector on every rank, scored on test */
    MergeSpec sp = *spec;
    for (int j = 0; j < sp.ntasks; j++)
        sp.coef[j] = search_alpha(cfg, idx[(size_t)chosen * T + j]);
    s = merge_collective(g_rt.comm, &r->tv, &r->m, &sp, r->tau);
    r->cur = NAN;
    r->cand = -1;
    char what[300];
    snprintf(what, sizeof what, "%s_coef", method);
    cJSON *heads = NULL;
    if (s == TD_OK)
        s = heads_result(r, 1.0, sa, what, &heads);
    if (s == TD_OK && g_rt.rank == 0) {
        char gp[300], kp[300];
        snprintf(gp, sizeof gp, "/%s/addition/%s_coef", r->mode, method);
        double *co = calloc((size_t)n * T, sizeof *co);
        for (int i = 0; co && i < n * T; i++)
            co[i] = search_alpha(cfg, idx[i]);
        s = co ? write_val_grids(r, gp, val, nval, n, "coef", co, T, "candidate,task")
               : td_fail(TD_ERR_NOMEM, "out of memory");
        free(co);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "search", kind);
        cJSON_AddNumberToObject(o, "budget", budget);
        if (strcmp(kind, "random") == 0)
            cJSON_AddNumberToObject(o, "seed", cfg->merge.coef_seed);
        cJSON_AddNumberToObject(o, "evaluations", n - 1);
        cJSON_AddNumberToObject(o, "candidate_index", chosen);
        cJSON *cv = cJSON_AddObjectToObject(o, "coef");
        for (int t = 0; t < T; t++)
            cJSON_AddNumberToObject(cv, cfg->data.tasks.item[t],
                                    search_alpha(cfg, idx[(size_t)chosen * T + t]));
        cJSON_AddNumberToObject(o, "norm_val", score);
        norm_val_by(r, o);
        cJSON_AddNumberToObject(o, "uniform_alpha", search_alpha(cfg, ubest));
        cJSON_AddNumberToObject(o, "uniform_norm_val", row_score(val, T, nval));
        if (spec->ties)
            cJSON_AddNumberToObject(o, "ties_k", spec->ties_k);
        if (spec->dare_p > 0)
            cJSON_AddNumberToObject(o, "dare_p", spec->dare_p);
        cJSON_AddStringToObject(o, "candidates", gp);
        cJSON_AddItemToObject(o, "heads", heads);
        heads = NULL;
        snprintf(kp, sizeof kp, "modes.%s.addition.%s_coef", r->mode, method);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
    }
    cJSON_Delete(heads);
    free(idx);
    free(val);
    return runtime_agree(g_rt.comm, s);
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
    r->cand = -1;
    double alpha = search_alpha(cfg, s == TD_OK ? best[bp] : 0);
    cJSON *heads = NULL;
    if (s == TD_OK)
        s = heads_result(r, alpha, sa, method, &heads);
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
    if (s == TD_OK && strcmp(cfg->merge.coef_search, "none") != 0)
        s = coef_search(r, method, &spec, val + (size_t)bp * A * T, best[bp], nval, sa);
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
