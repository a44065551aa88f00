/* coef_search: the coefficient searches of the addition stage (coef_search.h):
 * the rows, the black-box searches through the work pool, the records. */
#include "coef_search.h"

#include <math.h>
#include <nlopt.h>
#include <stdlib.h>
#include <string.h>

#include "cmaes.h"
#include "results.h"
#include "sur_data.h"
#include "surrogate.h"

/* ---- the rows ---- */

TdStatus coef_run_open(CoefRun *cr, ModeRun *r, const char *method, const MergeSpec *spec)
{
    memset(cr, 0, sizeof *cr);
    cr->r = r;
    cr->method = method;
    cr->spec = spec;
    for (int i = 0; i < r->m.table.count; i++)
        if (r->tv.mask[i])
            cr->n += r->m.table.info[i].numel;
    double t0 = td_wall();
    TD_TRY(runtime_shared_alloc(g_rt.comm, (size_t)spec->ntasks * cr->n * sizeof(float), &cr->sb));
    float *base = cr->sb.base;
    TdStatus s = merge_rows(g_rt.comm, &r->tv, &r->m, spec, base, cr->sb.node_rank == 0);
    runtime_shared_sync(&cr->sb);
    for (int t = 0; t < spec->ntasks; t++)
        cr->rows[t] = base + (size_t)t * cr->n;
    if (s == TD_OK)
        td_log("coefficients %s/%s: %d task terms of %zu values each (%.1f MiB per node) in "
               "%.2fs",
               r->mode, method, spec->ntasks, cr->n,
               (double)spec->ntasks * cr->n * sizeof(float) / (1 << 20), td_wall() - t0);
    return s;
}

void coef_run_close(CoefRun *cr)
{
    coef_space_free(&cr->cs);
    runtime_shared_free(&cr->sb);
}

void coef_apply(CoefRun *cr, const double *c)
{
    ModeRun *r = cr->r;
    double a[COEF_MAX_TASKS * 64];
    double *ap = (size_t)cr->cs.T * cr->cs.G <= sizeof a / sizeof a[0]
                     ? a : malloc((size_t)cr->cs.T * cr->cs.G * sizeof *ap);
    if (!ap)
        abort(); /* a few KiB */
    coef_expand(&cr->cs, c, ap);
    coef_combine(&cr->cs, cr->rows, ap, NULL, r->tau);
    if (ap != a)
        free(ap);
    r->cur = NAN;
}

/* ---- black-box searches: candidates through the pool ---- */

typedef struct {
    CoefRun *cr;
    int ce;             /* values are cross-entropies (else accuracies) */
    int cap, n, K, T;   /* candidates the journal holds, evaluated so far */
    double *cand;       /* (cap x K) */
    double *vals;       /* (cap x T) */
    double *loss;       /* (cap) the minimised objective */
    double *best;       /* (cap) the best loss after each evaluation */
    int cur;            /* candidate r->tau holds (-1: none) */
    char journal[1200], key[40];
    TdStatus err;       /* of the last evaluation (NLopt's callback) */
    int use_sur;        /* ntk: candidates scored through the surrogate's val tensors */
    SurData sur;
} BbEval;

static void bb_free(BbEval *e)
{
    free(e->cand), free(e->vals), free(e->loss), free(e->best);
    if (e->use_sur)
        sur_data_free(&e->sur);
    memset(e, 0, sizeof *e);
}

TdStatus coef_sur_tensors(CoefRun *cr, int split, SurData *d)
{
    ModeRun *r = cr->r;
    char tag[600];
    snprintf(tag, sizeof tag, "%s_%s_%s_%s", r->mode, cr->method, coef_kind_name(cr->cs.kind),
             split == TASK_TEST ? "test" : "val");
    return sur_data_get(r, &cr->cs, cr->rows, NULL, 0, split, r->cfg->eval.limit, tag, d);
}

/* tag names the journal; what (with the rows, through r->tau) keys it. sur:
 * ntk candidates may be scored through the surrogate (merge.surrogate.ntk). */
static TdStatus bb_open(BbEval *e, CoefRun *cr, int ce, int cap, const char *tag, const char *what,
                        int sur)
{
    ModeRun *r = cr->r;
    memset(e, 0, sizeof *e);
    e->cr = cr;
    e->ce = ce;
    e->cap = cap;
    e->K = cr->cs.K;
    e->T = r->ntasks;
    e->cur = -1;
    e->cand = calloc((size_t)cap * e->K, sizeof *e->cand);
    e->vals = calloc((size_t)cap * e->T, sizeof *e->vals);
    e->loss = calloc((size_t)cap, sizeof *e->loss);
    e->best = calloc((size_t)cap, sizeof *e->best);
    snprintf(e->journal, sizeof e->journal, "%s/search/coef_%s_%s_%s.jsonl", r->run_dir, r->mode,
             cr->method, tag);
    double *one = calloc((size_t)e->K, sizeof *one);
    for (int k = 0; one && k < e->K; k++)
        one[k] = 1.0;
    if (one)
        coef_apply(cr, one);
    free(one);
    mode_search_key(r, what, e->key);
    TdStatus s = e->cand && e->vals && e->loss && e->best && one
                     ? TD_OK : td_fail(TD_ERR_NOMEM, "coefficient search: out of memory");
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK && sur && r->ntk && r->cfg->merge.surrogate.ntk) {
        s = coef_sur_tensors(cr, TASK_VAL, &e->sur);
        e->use_sur = s == TD_OK;
    }
    return s;
}

/* Candidates e->n .. e->n + m - 1 through the surrogate: item candidate * T
 * + task on rank item % size, each value from one rank (the sum over ranks
 * is exact), the same at any rank count. */
static TdStatus bb_sur_eval(BbEval *e, int m)
{
    CoefRun *cr = e->cr;
    ModeRun *r = cr->r;
    const int T = e->T;
    double *v = e->vals + (size_t)e->n * T;
    memset(v, 0, (size_t)m * T * sizeof *v);
    double *a = malloc((size_t)cr->cs.T * cr->cs.G * sizeof *a);
    TdStatus s = a ? TD_OK : td_fail(TD_ERR_NOMEM, "coefficient search: out of memory");
    for (int item = g_rt.rank; s == TD_OK && item < m * T; item += g_rt.size) {
        const int c = item / T, t = item % T;
        const int64_t n = e->sur.n[t];
        int64_t ok = 0;
        double ces = 0;
        coef_expand(&cr->cs, e->cand + (size_t)(e->n + c) * e->K, a);
        s = sur_scores(e->sur.u[t], e->sur.y[t], n, e->sur.R, e->sur.E, r->head[t],
                       r->classes[t], r->cfg->heads.logit_scale, a, &ok, e->ce ? &ces : NULL);
        v[item] = n == 0 ? 0.0 : e->ce ? ces / (double)n : (double)ok / (double)n;
    }
    free(a);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        MPI_Allreduce(MPI_IN_PLACE, v, m * T, MPI_DOUBLE, MPI_SUM, g_rt.comm);
    return s;
}

/* Item = candidate * T + task: the candidate's val value on this rank alone. */
static TdStatus bb_item(void *ctx, int item, double *value)
{
    BbEval *e = ctx;
    CoefRun *cr = e->cr;
    ModeRun *r = cr->r;
    int c = item / e->T, t = item % e->T;
    if (e->cur != c) {
        coef_apply(cr, e->cand + (size_t)c * e->K);
        e->cur = c;
    }
    EvalEncoder enc = mode_encoder(r, 1.0);
    double acc = 0, ce = 0;
    TD_TRY(eval_scores(MPI_COMM_SELF, &enc, r->paths[t], TASK_VAL, r->item_batch,
                       r->cfg->eval.limit, r->head[t], r->classes[t], r->cfg->heads.logit_scale,
                       &acc, e->ce ? &ce : NULL));
    *value = e->ce ? ce : acc;
    return TD_OK;
}

/* The minimised objective of candidate i's values. */
static double bb_loss(const BbEval *e, int i)
{
    const double *v = e->vals + (size_t)i * e->T;
    double m = 0;
    for (int t = 0; t < e->T; t++)
        m += e->ce ? v[t] : v[t] / e->cr->nval[t];
    m /= e->T;
    return e->ce ? m : -m;
}

/* Evaluates the m candidates X (m x K) as the next ones; loss (m) may be NULL. */
static TdStatus bb_eval(BbEval *e, const double *X, int m, double *loss)
{
    ModeRun *r = e->cr->r;
    if (e->n + m > e->cap)
        return td_fail(TD_ERR_INTERNAL, "coefficient search: more than %d candidates", e->cap);
    memcpy(e->cand + (size_t)e->n * e->K, X, (size_t)m * e->K * sizeof *X);
    e->cur = -1;
    PoolSpec ps = {.journal = e->journal, .key = e->key, .nitems = e->cap * e->T,
                   .stop_after = r->cfg->merge.stop_after, .first = e->n * e->T, .count = m * e->T,
                   .quiet = 1};
    TdStatus s = e->use_sur ? bb_sur_eval(e, m) : search_pool(g_rt.comm, &ps, bb_item, e, e->vals);
    e->cur = -1;
    for (int i = e->n; s == TD_OK && i < e->n + m; i++) {
        e->loss[i] = bb_loss(e, i);
        double prev = i > 0 ? e->best[i - 1] : INFINITY;
        e->best[i] = e->loss[i] < prev ? e->loss[i] : prev;
        if (loss)
            loss[i - e->n] = e->loss[i];
    }
    if (s == TD_OK) {
        int every = e->cap / 10 > 1 ? e->cap / 10 : 1;
        if (m > 1 || (e->n + m) / every != e->n / every || e->n + m == e->cap)
            td_log("coefficients %s/%s/%s: %d of at most %d evaluation(s), best %s %.4f",
                   r->mode, e->cr->method, e->cr->search, e->n + m, e->cap, r->cfg->merge.objective,
                   e->ce ? e->best[e->n + m - 1] : -e->best[e->n + m - 1]);
        e->n += m;
    }
    return s;
}

/* The first candidate with the least loss. */
static int bb_argmin(const BbEval *e)
{
    int b = 0;
    for (int i = 1; i < e->n; i++)
        if (e->loss[i] < e->loss[b])
            b = i;
    return b;
}

/* random: budget vectors on the alpha grid after the start, in one pool. */
static TdStatus bb_random(BbEval *e, const double *x0, int budget)
{
    const TdConfig *cfg = e->cr->r->cfg;
    int A = search_alpha_count(cfg);
    double *X = calloc((size_t)(budget + 1) * e->K, sizeof *X);
    if (!X)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
    memcpy(X, x0, (size_t)e->K * sizeof *X);
    for (int i = 0; i < budget; i++)
        for (int k = 0; k < e->K; k++)
            X[(size_t)(i + 1) * e->K + k] =
                search_alpha(cfg, search_random_coef(cfg->merge.seed, i, k, A));
    TdStatus s = bb_eval(e, X, budget + 1, NULL);
    free(X);
    return s;
}

/* coordinate: each coefficient swept over the alpha grid in turn. */
static TdStatus bb_coordinate(BbEval *e, const double *x0, int budget)
{
    ModeRun *r = e->cr->r;
    const TdConfig *cfg = r->cfg;
    int A = search_alpha_count(cfg), used = 0;
    double *X = calloc((size_t)A * e->K + 1, sizeof *X);
    if (!X)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
    TdStatus s = bb_eval(e, x0, 1, NULL);
    int cur = 0;
    for (int round = 0; s == TD_OK && used < budget; round++) {
        int moved = 0;
        for (int k = 0; s == TD_OK && k < e->K && used < budget; k++) {
            int m = 0;
            for (int i = 0; i < A && used + m < budget; i++) {
                double v = search_alpha(cfg, i);
                if (v == e->cand[(size_t)cur * e->K + k])
                    continue;
                memcpy(X + (size_t)m * e->K, e->cand + (size_t)cur * e->K, e->K * sizeof *X);
                X[(size_t)m * e->K + k] = v;
                m++;
            }
            if (m == 0)
                continue;
            int n0 = e->n;
            s = bb_eval(e, X, m, NULL);
            used += m;
            for (int i = n0; s == TD_OK && i < e->n; i++)
                if (e->loss[i] < e->loss[cur]) {
                    cur = i;
                    moved = 1;
                }
        }
        if (s == TD_OK)
            td_log("coefficients %s/%s/coordinate: round %d, %d vector(s) so far, best %.4f",
                   r->mode, e->cr->method, round, used, e->ce ? e->loss[cur] : -e->loss[cur]);
        if (!moved)
            break;
    }
    free(X);
    return s;
}

static double nlopt_f(unsigned n, const double *x, double *grad, void *data)
{
    BbEval *e = data;
    (void)grad;
    double l = HUGE_VAL;
    if (e->err == TD_OK && e->n < e->cap)
        e->err = bb_eval(e, x, 1, &l);
    return e->err == TD_OK ? l : HUGE_VAL;
}

/* bobyqa, sbplx, crs2: NLopt's optimiser within the bounds, from x0. */
static TdStatus bb_nlopt(BbEval *e, const double *x0, int budget, const char *name)
{
    const TdConfig *cfg = e->cr->r->cfg;
    nlopt_algorithm alg = strcmp(name, "bobyqa") == 0  ? NLOPT_LN_BOBYQA
                          : strcmp(name, "sbplx") == 0 ? NLOPT_LN_SBPLX
                                                       : NLOPT_GN_CRS2_LM;
    TD_TRY(bb_eval(e, x0, 1, NULL));
    nlopt_opt o = nlopt_create(alg, (unsigned)e->K);
    if (!o)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "NLopt: cannot create %s", name));
    double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    nlopt_srand((unsigned long)cfg->merge.seed); /* crs2's draws: the same on every rank */
    nlopt_set_lower_bounds1(o, lo);
    nlopt_set_upper_bounds1(o, hi);
    nlopt_set_min_objective(o, nlopt_f, e);
    nlopt_set_maxeval(o, budget);
    nlopt_set_initial_step1(o, 0.1 * (hi - lo) > 0 ? 0.1 * (hi - lo) : 0.1);
    double *x = malloc((size_t)e->K * sizeof *x), f = 0;
    memcpy(x, x0, (size_t)e->K * sizeof *x);
    e->err = TD_OK;
    nlopt_result rc = nlopt_optimize(o, x, &f);
    nlopt_destroy(o);
    free(x);
    if (e->err != TD_OK)
        return e->err;
    if (rc < 0 && rc != NLOPT_FORCED_STOP && rc != NLOPT_ROUNDOFF_LIMITED)
        return runtime_agree(g_rt.comm,
                             td_fail(TD_ERR_ARG, "NLopt %s failed (code %d%s)", name, (int)rc,
                                     rc == NLOPT_INVALID_ARGS
                                         ? ": bobyqa needs at least 2 coefficients and a box "
                                           "with merge.bounds[0] < merge.bounds[1]"
                                         : ""));
    return TD_OK;
}

/* cmaes: generations evaluated in one pool each while the budget lasts. */
static TdStatus bb_cmaes(BbEval *e, const double *x0, int budget)
{
    const TdConfig *cfg = e->cr->r->cfg;
    double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    double *los = malloc((size_t)e->K * sizeof *los), *his = malloc((size_t)e->K * sizeof *his);
    for (int k = 0; los && his && k < e->K; k++) {
        los[k] = lo;
        his[k] = hi;
    }
    CmaEs *es = NULL;
    TdStatus s = los && his ? cmaes_create(&es, e->K, x0, 0.25 * (hi - lo), 0,
                                           (uint64_t)cfg->merge.seed, los, his)
                            : td_fail(TD_ERR_NOMEM, "out of memory");
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = bb_eval(e, x0, 1, NULL);
    int lam = s == TD_OK ? cmaes_lambda(es) : 1;
    double *X = malloc((size_t)lam * e->K * sizeof *X), *f = malloc((size_t)lam * sizeof *f);
    if (s == TD_OK && (!X || !f))
        s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
    for (int gen = 0; s == TD_OK && e->n - 1 + lam <= budget; gen++) {
        cmaes_ask(es, X);
        s = bb_eval(e, X, lam, f);
        if (s == TD_OK)
            cmaes_tell(es, f);
        unsigned why = s == TD_OK ? cmaes_stop(es) : 0;
        if (why) {
            td_log("coefficients %s/%s/cmaes: stopped after %d generation(s): %s",
                   e->cr->r->mode, e->cr->method, gen + 1, cmaes_stop_name(why & (~why + 1u)));
            break;
        }
    }
    cmaes_free(es);
    free(X), free(f), free(los), free(his);
    return s;
}

/* ---- records ---- */

static void result_free(CoefResult *res)
{
    free(res->c), free(res->trace), free(res->cand), free(res->vals);
    cJSON_Delete(res->extra);
    memset(res, 0, sizeof *res);
}

/* The mean normalised val accuracy (frozen heads) of coefficients c, through
 * the pool (journal tag). */
static TdStatus norm_val_of(CoefRun *cr, const double *c, const char *tag, double *nv)
{
    BbEval e;
    char what[400];
    snprintf(what, sizeof what, "val|%s", tag);
    TdStatus s = bb_open(&e, cr, 0, 1, tag, what, 1);
    if (s == TD_OK)
        s = bb_eval(&e, c, 1, NULL);
    if (s == TD_OK)
        *nv = -e.loss[0];
    bb_free(&e);
    return s;
}

TdStatus coef_verify(CoefRun *cr, const double *X, int m, const char *tag, const char *what,
                     double *norm_val)
{
    BbEval e;
    TdStatus s = bb_open(&e, cr, 0, m, tag, what, 0); /* always the pool: an exact check */
    if (s == TD_OK)
        s = bb_eval(&e, X, m, NULL);
    for (int i = 0; s == TD_OK && i < m; i++)
        norm_val[i] = -e.loss[i];
    bb_free(&e);
    return s;
}

static cJSON *vec_to_json(const double *x, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(x[i]));
    return a;
}

/* Scores res->c on test with every head set and records it (coef_search.h). */
static TdStatus record(CoefRun *cr, const char *search, const CoefResult *res,
                       const SingleAcc *sa)
{
    ModeRun *r = cr->r;
    const CoefSpace *cs = &cr->cs;
    const int T = cs->T, G = cs->G, K = cs->K;
    const char *kind = coef_kind_name(cs->kind);
    char name[200], tag[300], what[600], gp[400], kp[400];
    snprintf(name, sizeof name, "%s_%s", search, kind);
    snprintf(tag, sizeof tag, "%s_%s_chosen", search, kind);
    double nv = NAN;
    if (!strcmp(search, "adamerging") || strcmp(r->cfg->merge.objective, "norm_acc") != 0)
        TD_TRY(norm_val_of(cr, res->c, tag, &nv));
    else
        nv = res->objective;
    coef_apply(cr, res->c);
    snprintf(what, sizeof what, "%s/%s", cr->method, name);
    cJSON *heads = NULL;
    TD_TRY(mode_heads_result(r, 1.0, sa, what, &heads));
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        double *a = calloc((size_t)T * G, sizeof *a);
        s = a ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory");
        if (s == TD_OK)
            coef_expand(cs, res->c, a);
        snprintf(gp, sizeof gp, "/%s/coef_search/%s/%s", r->mode, cr->method, name);
        char p[500];
        size_t dims[2] = {(size_t)T, (size_t)G}, tdim[1] = {(size_t)res->iterations};
        snprintf(p, sizeof p, "%s/coef", gp);
        if (s == TD_OK)
            s = results_grid_write(r->run_dir, p, a, 2, dims, "task,group");
        snprintf(p, sizeof p, "%s/trace", gp);
        if (s == TD_OK && res->iterations > 0)
            s = results_grid_write(r->run_dir, p, res->trace, 1, tdim, "iteration");
        if (s == TD_OK && res->cand) {
            size_t cd[2] = {(size_t)res->iterations, (size_t)K},
                   vd[2] = {(size_t)res->iterations, (size_t)T};
            snprintf(p, sizeof p, "%s/candidates", gp);
            s = results_grid_write(r->run_dir, p, res->cand, 2, cd, "evaluation,coefficient");
            snprintf(p, sizeof p, "%s/values", gp);
            if (s == TD_OK && res->vals)
                s = results_grid_write(r->run_dir, p, res->vals, 2, vd, "evaluation,task");
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", cr->method);
        cJSON_AddStringToObject(o, "search", search);
        cJSON_AddStringToObject(o, "coefficients", kind);
        cJSON_AddStringToObject(o, "objective", res->objective_name);
        cJSON_AddStringToObject(o, "objective_split", res->split);
        cJSON *tn = cJSON_AddArrayToObject(o, "tasks");
        cJSON *gn = cJSON_AddArrayToObject(o, "groups");
        for (int t = 0; t < T; t++)
            cJSON_AddItemToArray(tn, cJSON_CreateString(r->cfg->data.tasks.item[t]));
        for (int g = 0; g < G; g++) {
            char b[32];
            coef_group_name(cs, g, b, sizeof b);
            cJSON_AddItemToArray(gn, cJSON_CreateString(b));
        }
        cJSON *co = cJSON_AddObjectToObject(o, "coef");
        for (int t = 0; a && t < T; t++)
            cJSON_AddItemToObject(co, r->cfg->data.tasks.item[t], vec_to_json(a + (size_t)t * G, G));
        cJSON_AddNumberToObject(o, "iterations", res->iterations);
        cJSON_AddNumberToObject(o, "seconds", res->seconds);
        cJSON_AddNumberToObject(o, "objective_value", res->objective);
        cJSON_AddNumberToObject(o, "norm_val", nv);
        char by[200];
        snprintf(by, sizeof by, "modes.%s.single.<task>.heads.theta0.val", r->mode);
        cJSON_AddStringToObject(o, "norm_val_by", by);
        cJSON_AddNumberToObject(o, "uniform_alpha", cr->ualpha);
        cJSON_AddNumberToObject(o, "uniform_norm_val", cr->unorm);
        if (cr->spec->ties)
            cJSON_AddNumberToObject(o, "ties_k", cr->spec->ties_k);
        if (cr->spec->dare_p > 0)
            cJSON_AddNumberToObject(o, "dare_p", cr->spec->dare_p);
        cJSON_AddStringToObject(o, "grid", gp);
        for (cJSON *x = res->extra ? res->extra->child : NULL; x; x = x->next)
            cJSON_AddItemReferenceToObject(o, x->string, x);
        cJSON_AddItemToObject(o, "heads", heads);
        heads = NULL;
        snprintf(kp, sizeof kp, "modes.%s.coef_search.%s.%s", r->mode, cr->method, name);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
        free(a);
    }
    cJSON_Delete(heads);
    return runtime_agree(g_rt.comm, s);
}

/* One black-box search in cr's structure; res gets the best candidate. */
static TdStatus blackbox(CoefRun *cr, const char *search, CoefResult *res)
{
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    const int K = cr->cs.K, budget = cfg->merge.budget;
    const int ce = strcmp(cfg->merge.objective, "val_ce") == 0;
    const double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    char tag[300], what[600];
    snprintf(tag, sizeof tag, "%s_%s", search, coef_kind_name(cr->cs.kind));
    snprintf(what, sizeof what, "bb|%s|%s|%s|%d|%d|%.17g|%.17g|%.17g|%.17g", search,
             coef_kind_name(cr->cs.kind), cfg->merge.objective, budget, cfg->merge.seed, lo, hi,
             cr->ualpha, cfg->heads.logit_scale);
    BbEval e;
    TdStatus s = bb_open(&e, cr, ce, budget + 1, tag, what, 1);
    if (s == TD_OK && e.use_sur)
        td_log("coefficients %s/%s/%s: candidates scored through the linear surrogate (exact for "
               "ntk; its val tensors %s)",
               r->mode, cr->method, tag, e.sur.seconds > 0 ? "computed" : "reused");
    double *x0 = calloc((size_t)K, sizeof *x0);
    if (s == TD_OK && !x0)
        s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
    int grid = !strcmp(search, "random") || !strcmp(search, "coordinate");
    double start = grid ? cr->ualpha : cr->ualpha < lo ? lo : cr->ualpha > hi ? hi : cr->ualpha;
    for (int k = 0; x0 && k < K; k++)
        x0[k] = start;
    double t0 = td_wall();
    if (s == TD_OK) {
        if (!strcmp(search, "random"))
            s = bb_random(&e, x0, budget);
        else if (!strcmp(search, "coordinate"))
            s = bb_coordinate(&e, x0, budget);
        else if (!strcmp(search, "cmaes"))
            s = bb_cmaes(&e, x0, budget);
        else
            s = bb_nlopt(&e, x0, budget, search);
    }
    if (s == TD_OK) {
        int b = bb_argmin(&e);
        res->c = malloc((size_t)K * sizeof *res->c);
        res->trace = malloc((size_t)e.n * sizeof *res->trace);
        res->cand = e.cand;
        res->vals = e.vals;
        e.cand = e.vals = NULL;
        if (!res->c || !res->trace)
            s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
        for (int i = 0; s == TD_OK && i < e.n; i++)
            res->trace[i] = ce ? e.best[i] : -e.best[i];
        if (s == TD_OK)
            memcpy(res->c, res->cand + (size_t)b * K, (size_t)K * sizeof *res->c);
        res->iterations = e.n;
        res->objective = ce ? e.loss[b] : -e.loss[b];
        res->objective_name = cfg->merge.objective;
        res->split = "val";
        res->seconds = td_wall() - t0;
        td_log("coefficients %s/%s/%s: %d evaluation(s) in %.1fs; %s %.4f (start, uniform alpha "
               "%.4g: %.4f)",
               r->mode, cr->method, tag, e.n, res->seconds, cfg->merge.objective,
               res->objective, cr->ualpha, ce ? e.loss[0] : -e.loss[0]);
    }
    free(x0);
    bb_free(&e);
    return s;
}

TdStatus coef_searches(ModeRun *r, const char *method, const MergeSpec *spec, double ualpha,
                       double unorm, const double *nval, const SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    CoefRun cr;
    TdStatus s = coef_run_open(&cr, r, method, spec);
    cr.ualpha = ualpha;
    cr.unorm = unorm;
    for (int t = 0; t < r->ntasks; t++)
        cr.nval[t] = nval[t];
    for (int i = 0; s == TD_OK && i < cfg->merge.coefficients.count; i++) {
        int kind = coef_kind_from_name(cfg->merge.coefficients.item[i]);
        coef_space_free(&cr.cs);
        s = runtime_agree(g_rt.comm,
                          coef_space_init(&cr.cs, &r->m.table, r->tv.mask, kind, r->ntasks));
        for (int j = 0; s == TD_OK && j < cfg->merge.search.count; j++) {
            const char *search = cfg->merge.search.item[j];
            CoefResult res = {0};
            cr.search = search;
            td_log("coefficients %s/%s: %s search, %s coefficients (%d)", r->mode, method, search,
                   coef_kind_name(kind), cr.cs.K);
            if (!strcmp(search, "adamerging")) {
                CoefLearn *L = NULL;
                s = coef_learn_open(&L, &cr);
                if (s == TD_OK)
                    s = coef_learn_run(L, &res);
                coef_learn_close(L);
            } else if (!strcmp(search, "surrogate")) {
                s = coef_screen(&cr, &res);
            } else {
                s = blackbox(&cr, search, &res);
            }
            if (s == TD_OK)
                s = record(&cr, search, &res, sa);
            result_free(&res);
        }
    }
    r->cur = NAN;
    coef_run_close(&cr);
    return s;
}
