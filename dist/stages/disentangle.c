#include "disentangle.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "results.h"
#include "runtime.h"
#include "study.h"
#include "sur_data.h"
#include "task_io.h"

typedef struct {
    const TdConfig *cfg;
    const VitModel *m;
    const HeadSet *h;
    const char *mode;
    int ntk;
    char run_dir[600];
    int n;            /* grid points per axis */
    double *alpha;    /* (n) */
    int64_t limit;
    float *tau[2];    /* (table total) each */
    unsigned char *mask;
    float *work;      /* (table total) parameters or ntk delta of one item */
} DgRun;

typedef struct {
    int task;         /* index in data.tasks */
    char path[600];
    int64_t N;        /* test images evaluated */
    float *single;    /* (n, N, E) features of single_i(alpha_k) on D_i */
    int *pred;        /* (n, N) their argmax under head i */
    float *U;         /* ntk through the surrogate: (N, 3, E) f0, J tau_1, J tau_2; or NULL */
} DgSide;

static void side_free(DgSide *s)
{
    free(s->single);
    free(s->pred);
    free(s->U);
    memset(s, 0, sizeof *s);
}

static TdStatus side_open(const DgRun *r, int task, DgSide *s)
{
    memset(s, 0, sizeof *s);
    s->task = task;
    heads_task_path(r->cfg, task, s->path, sizeof s->path);
    TaskData td;
    TD_TRY(task_read_header(s->path, &td));
    s->N = td.split[TASK_TEST].n;
    task_free(&td);
    if (r->limit > 0 && r->limit < s->N)
        s->N = r->limit;
    size_t E = (size_t)r->m->arch.out_dim;
    if ((size_t)s->N * E > INT_MAX)
        return td_fail(TD_ERR_ARG, "disentangle: %s: %lld test images are too many to share; "
                       "set disentangle.limit", s->path, (long long)s->N);
    TD_ALLOC(s->single, (size_t)r->n * s->N * E + 1);
    TD_ALLOC(s->pred, (size_t)r->n * s->N + 1);
    return TD_OK;
}

/* Features of theta0 + a1 tau_1 + a2 tau_2 (or its linearisation) on one
 * side's test images, evaluated by this rank alone. The sum is formed in the
 * same order for every item, so a zero coefficient adds an exact zero. */
static TdStatus encode(DgRun *r, float a1, float a2, const DgSide *s, float *feat)
{
    if (s->U) { /* ntk: f0 + a1 J tau_1 + a2 J tau_2, normalised as eval_features does */
        const int E = r->m->arch.out_dim;
        for (int64_t x = 0; x < s->N; x++) {
            const float *u = s->U + (size_t)x * 3 * E;
            float *e = feat + (size_t)x * E;
            double ss = 0;
            for (int k = 0; k < E; k++) {
                e[k] = u[k] + a1 * u[E + k] + a2 * u[2 * E + k];
                ss += (double)e[k] * e[k];
            }
            const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
            for (int k = 0; k < E; k++)
                e[k] *= inv;
        }
        return TD_OK;
    }
    const ParamTable *tab = &r->m->table;
    const float *t0 = r->m->params, *u = r->tau[0], *v = r->tau[1];
    EvalEncoder enc = {r->m, r->work, NULL, NULL};
    if (r->ntk) {
        for (size_t k = 0; k < tab->total; k++)
            r->work[k] = a1 * u[k] + a2 * v[k];
        enc = (EvalEncoder){r->m, NULL, r->work, r->mask};
    } else {
        for (size_t k = 0; k < tab->total; k++)
            r->work[k] = t0[k] + a1 * u[k] + a2 * v[k];
    }
    float *f = NULL;
    int32_t *y = NULL;
    int64_t n = 0;
    TD_TRY(eval_features(MPI_COMM_SELF, &enc, s->path, TASK_TEST, r->cfg->disentangle.batch,
                         s->N, &f, &y, &n));
    TdStatus st = TD_OK;
    if (n != s->N)
        st = td_fail(TD_ERR_INTERNAL, "disentangle: %s gave %lld images, expected %lld", s->path,
                     (long long)n, (long long)s->N);
    else
        memcpy(feat, f, (size_t)n * r->m->arch.out_dim * sizeof *feat);
    free(f);
    free(y);
    return st;
}

/* Phase 1: single_i(alpha_k) for both sides, items dealt round-robin, then
 * shared with every rank. */
static TdStatus singles(DgRun *r, DgSide *sd)
{
    int E = r->m->arch.out_dim, n = r->n, P = g_rt.size;
    TdStatus s = TD_OK;
    for (int it = g_rt.rank; it < 2 * n && s == TD_OK; it += P) {
        int i = it / n, k = it % n;
        float a = (float)r->alpha[k];
        s = encode(r, i == 0 ? a : 0.0f, i == 0 ? 0.0f : a, &sd[i],
                   sd[i].single + (size_t)k * sd[i].N * E);
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    for (int it = 0; it < 2 * n; it++) {
        int i = it / n, k = it % n;
        if (MPI_Bcast(sd[i].single + (size_t)k * sd[i].N * E, (int)(sd[i].N * E), MPI_FLOAT,
                      it % P, g_rt.comm) != MPI_SUCCESS)
            return td_fail(TD_ERR_MPI, "disentangle: MPI_Bcast of features failed");
    }
    for (int i = 0; i < 2; i++) {
        const float *head = r->h->w[sd[i].task];
        int C = r->h->classes[sd[i].task];
        for (int64_t q = 0; q < (int64_t)n * sd[i].N; q++)
            sd[i].pred[q] = study_argmax(sd[i].single + q * E, head, C, E);
    }
    return TD_OK;
}

/* Phase 2: the joint items. terms: (4, n, n) = pred term 1, pred term 2,
 * repr term 1, repr term 2; this rank fills its items, the rest stay 0. */
static TdStatus joints(DgRun *r, DgSide *sd, double *terms)
{
    int E = r->m->arch.out_dim, n = r->n, P = g_rt.size;
    size_t nn = (size_t)n * n;
    int64_t Nmax = sd[0].N > sd[1].N ? sd[0].N : sd[1].N;
    float *feat = malloc((size_t)(Nmax + 1) * E * sizeof *feat);
    TdStatus s = feat ? TD_OK : td_fail(TD_ERR_NOMEM, "disentangle: out of memory");
    for (size_t q = (size_t)g_rt.rank; q < nn && s == TD_OK; q += (size_t)P) {
        int k[2] = {(int)(q / (size_t)n), (int)(q % (size_t)n)};
        for (int i = 0; i < 2 && s == TD_OK; i++) {
            s = encode(r, (float)r->alpha[k[0]], (float)r->alpha[k[1]], &sd[i], feat);
            if (s != TD_OK)
                break;
            const float *head = r->h->w[sd[i].task];
            int C = r->h->classes[sd[i].task];
            const float *ref = sd[i].single + (size_t)k[i] * sd[i].N * E;
            const int *pref = sd[i].pred + (size_t)k[i] * sd[i].N;
            int64_t changed = 0;
            double kl = 0;
            for (int64_t x = 0; x < sd[i].N; x++) {
                changed += study_argmax(feat + x * E, head, C, E) != pref[x];
                kl += study_symkl(feat + x * E, ref + x * E, E, r->cfg->heads.logit_scale);
            }
            double N = (double)(sd[i].N > 0 ? sd[i].N : 1);
            terms[(size_t)i * nn + q] = (double)changed / N;
            terms[(size_t)(2 + i) * nn + q] = kl / N;
        }
    }
    free(feat);
    TD_TRY(runtime_agree(g_rt.comm, s));
    if (MPI_Allreduce(MPI_IN_PLACE, terms, (int)(4 * nn), MPI_DOUBLE, MPI_SUM, g_rt.comm) !=
        MPI_SUCCESS)
        return td_fail(TD_ERR_MPI, "disentangle: MPI_Allreduce of the grid failed");
    return TD_OK;
}

static double grid_mean(const double *g, const double *alpha, int n, int inner)
{
    double s = 0;
    long c = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (!inner || (alpha[i] >= -1 - 1e-9 && alpha[i] <= 1 + 1e-9 &&
                           alpha[j] >= -1 - 1e-9 && alpha[j] <= 1 + 1e-9)) {
                s += g[(size_t)i * n + j];
                c++;
            }
    return c ? s / (double)c : 0.0;
}

/* Rank 0: the grids and the summary. */
static TdStatus write_pair(const DgRun *r, const DgSide *sd, const double *terms)
{
    const char *t1 = r->cfg->data.tasks.item[sd[0].task], *t2 = r->cfg->data.tasks.item[sd[1].task];
    int n = r->n;
    size_t nn = (size_t)n * n;
    double *xi = malloc(2 * nn * sizeof *xi);
    if (!xi)
        return td_fail(TD_ERR_NOMEM, "disentangle: out of memory");
    for (size_t q = 0; q < nn; q++) {
        xi[q] = terms[q] + terms[nn + q];
        xi[nn + q] = terms[2 * nn + q] + terms[3 * nn + q];
    }
    char g[400], key[400], p[480];
    snprintf(g, sizeof g, "/%s/disentangle/%s+%s", r->mode, t1, t2);
    size_t d1[1] = {(size_t)n}, d2[2] = {(size_t)n, (size_t)n}, d3[3] = {2, (size_t)n, (size_t)n};
    TdStatus s = TD_OK;
    const char *names[4] = {"pred", "repr", "pred_terms", "repr_terms"};
    snprintf(p, sizeof p, "%s/alpha", g);
    s = results_grid_write(r->run_dir, p, r->alpha, 1, d1, "alpha");
    for (int k = 0; k < 4 && s == TD_OK; k++) {
        snprintf(p, sizeof p, "%s/%s", g, names[k]);
        s = k < 2 ? results_grid_write(r->run_dir, p, xi + (size_t)k * nn, 2, d2, "alpha1,alpha2")
                  : results_grid_write(r->run_dir, p, terms + (size_t)(k - 2) * 2 * nn, 3, d3,
                                       "task,alpha1,alpha2");
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "grid", g);
        cJSON_AddNumberToObject(o, "mean_err_pred", grid_mean(xi, r->alpha, n, 0));
        cJSON_AddNumberToObject(o, "mean_err_repr", grid_mean(xi + nn, r->alpha, n, 0));
        cJSON_AddNumberToObject(o, "mean_err_pred_inner", grid_mean(xi, r->alpha, n, 1));
        cJSON_AddNumberToObject(o, "mean_err_repr_inner", grid_mean(xi + nn, r->alpha, n, 1));
        double imgs[2] = {(double)sd[0].N, (double)sd[1].N};
        cJSON_AddItemToObject(o, "images", cJSON_CreateDoubleArray(imgs, 2));
        cJSON_AddNumberToObject(o, "min", r->alpha[0]);
        cJSON_AddNumberToObject(o, "max", r->alpha[n - 1]);
        cJSON_AddNumberToObject(o, "points", n);
    }
    snprintf(key, sizeof key, "modes.%s.disentangle.%s+%s", r->mode, t1, t2);
    if (s == TD_OK)
        s = o ? results_set(r->run_dir, key, o) : td_fail(TD_ERR_NOMEM, "out of memory");
    else
        cJSON_Delete(o);
    if (s == TD_OK)
        td_log("%s %s+%s: mean xi pred %.4f repr %.4f over the grid (|a|<=1: %.4f, %.4f), "
               "%lld+%lld images", r->mode, t1, t2, grid_mean(xi, r->alpha, n, 0),
               grid_mean(xi + nn, r->alpha, n, 0), grid_mean(xi, r->alpha, n, 1),
               grid_mean(xi + nn, r->alpha, n, 1), (long long)sd[0].N, (long long)sd[1].N);
    free(xi);
    return s;
}

static TdStatus run_pair(DgRun *r, int t1, int t2)
{
    double t_start = td_wall();
    const char *name[2] = {r->cfg->data.tasks.item[t1], r->cfg->data.tasks.item[t2]};
    unsigned char *mk = malloc((size_t)r->m->table.count);
    TdStatus s = mk ? TD_OK : td_fail(TD_ERR_NOMEM, "disentangle: out of memory");
    for (int i = 0; i < 2 && s == TD_OK; i++) {
        s = study_tv_read(r->run_dir, r->mode, name[i], r->m, r->tau[i], i ? mk : r->mask);
        for (int k = 0; i == 1 && s == TD_OK && k < r->m->table.count; k++)
            r->mask[k] |= mk[k];
    }
    free(mk);
    TD_TRY(runtime_agree(g_rt.comm, s));
    DgSide sd[2];
    memset(sd, 0, sizeof sd);
    s = side_open(r, t1, &sd[0]);
    if (s == TD_OK)
        s = side_open(r, t2, &sd[1]);
    size_t nn = (size_t)r->n * r->n;
    double *terms = calloc(4 * nn, sizeof *terms);
    if (s == TD_OK && !terms)
        s = td_fail(TD_ERR_NOMEM, "disentangle: out of memory");
    s = runtime_agree(g_rt.comm, s);
    /* ntk: the linearised model is linear in (a1, a2): one forward and two
     * JVPs per image (the linear surrogate, sur_data.h) instead of one
     * linearised forward per grid point */
    const int sur = r->ntk && r->cfg->merge.surrogate.ntk;
    for (int i = 0; sur && i < 2 && s == TD_OK; i++) {
        const float *dirs[2] = {r->tau[0], r->tau[1]};
        int64_t n = 0;
        s = sur_rows_gather(r->m, r->mask, sd[i].path, TASK_TEST, r->cfg->disentangle.batch,
                            sd[i].N, dirs, 2, &sd[i].U, &n);
        if (s == TD_OK && n != sd[i].N)
            s = runtime_agree(g_rt.comm, td_fail(TD_ERR_INTERNAL, "disentangle: %s gave %lld "
                                                 "images, expected %lld", sd[i].path,
                                                 (long long)n, (long long)sd[i].N));
    }
    if (s == TD_OK)
        s = singles(r, sd);
    if (s == TD_OK)
        s = joints(r, sd, terms);
    if (s == TD_OK)
        s = runtime_agree(g_rt.comm, g_rt.rank == 0 ? write_pair(r, sd, terms) : TD_OK);
    if (s == TD_OK)
        td_log("%s %s+%s: %d x %d grid in %.1fs%s", r->mode, name[0], name[1], r->n, r->n,
               td_wall() - t_start, sur ? " (linear surrogate, exact for ntk)" : "");
    free(terms);
    side_free(&sd[0]);
    side_free(&sd[1]);
    return s;
}

/* Pairs from disentangle.pairs ("a:b"), or every pair of data.tasks. */
static int pair_list(const TdConfig *cfg, int (*pairs)[2], int max)
{
    int np = 0, T = cfg->data.tasks.count;
    if (cfg->disentangle.pairs.count == 0) {
        for (int a = 0; a < T; a++)
            for (int b = a + 1; b < T && np < max; b++)
                pairs[np][0] = a, pairs[np++][1] = b;
        return np;
    }
    for (int i = 0; i < cfg->disentangle.pairs.count && np < max; i++) {
        char a[TD_CFG_NAME_MAX];
        const char *p = cfg->disentangle.pairs.item[i], *colon = strchr(p, ':');
        if (!colon)
            continue; /* config validation rejects it */
        snprintf(a, sizeof a, "%.*s", (int)(colon - p), p);
        pairs[np][0] = study_task_index(cfg, a);
        pairs[np][1] = study_task_index(cfg, colon + 1);
        if (pairs[np][0] >= 0 && pairs[np][1] >= 0)
            np++;
    }
    return np;
}

TdStatus disentangle_stage(const TdConfig *cfg)
{
    enum { MAX_PAIRS = TD_CFG_LIST_MAX * (TD_CFG_LIST_MAX - 1) / 2 };
    static int pairs[MAX_PAIRS][2];
    int np = pair_list(cfg, pairs, MAX_PAIRS);
    if (np == 0)
        return runtime_agree(g_rt.comm,
                             td_fail(TD_ERR_CONFIG, "disentangle: no task pair to study"));
    VitModel m;
    HeadSet h;
    TD_TRY(study_open(cfg, &m, &h));
    DgRun r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.m = &m;
    r.h = &h;
    r.n = cfg->disentangle.points;
    r.limit = cfg->disentangle.limit > 0 ? cfg->disentangle.limit : cfg->eval.limit;
    study_run_dir(cfg, r.run_dir, sizeof r.run_dir);
    r.alpha = calloc((size_t)r.n, sizeof *r.alpha);
    r.mask = calloc((size_t)m.table.count, 1);
    size_t bytes = m.table.total * sizeof(float);
    r.tau[0] = td_aligned_calloc(bytes);
    r.tau[1] = td_aligned_calloc(bytes);
    r.work = td_aligned_calloc(bytes);
    TdStatus s = (r.alpha && r.mask && r.tau[0] && r.tau[1] && r.work)
                     ? TD_OK : td_fail(TD_ERR_NOMEM, "disentangle: out of memory");
    s = runtime_agree(g_rt.comm, s);
    double lo = cfg->disentangle.min, hi = cfg->disentangle.max;
    for (int k = 0; k < r.n && r.alpha; k++) /* linspace; the middle of an odd grid is exactly 0 */
        r.alpha[k] = 2 * k == r.n - 1 ? 0.0 : lo + (hi - lo) * (double)k / (double)(r.n - 1);
    td_log("disentangle: %d pair(s), %d x %d grid in [%g, %g], %s test images per task, %d "
           "rank(s)", np, r.n, r.n, lo, hi, r.limit > 0 ? "at most limit" : "all", g_rt.size);
    for (int i = 0; i < cfg->finetune.modes.count && s == TD_OK; i++) {
        r.mode = cfg->finetune.modes.item[i];
        r.ntk = strcmp(r.mode, "ntk") == 0;
        for (int p = 0; p < np && s == TD_OK; p++)
            s = run_pair(&r, pairs[p][0], pairs[p][1]);
    }
    free(r.alpha);
    free(r.mask);
    td_free(r.tau[0]);
    td_free(r.tau[1]);
    td_free(r.work);
    heads_free(&h);
    model_free(&m);
    return s;
}
