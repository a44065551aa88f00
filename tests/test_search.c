/* Helper of tests/search.cmake: plain serial references for the collective
 * merge and the distributed search.
 *   test_search merge-ref THETA0 TV OUT.h5 METHOD ALPHA K SCOPE COMBINE P SEED
 *        OUT.h5 (tadist merge) = theta0 + alpha * a merge computed here by
 *        direct loops (sorted top-k, explicit election)
 *   test_search check-search RUN_DIR DATA_DIR THETA0 MODE METHOD START STOP STEP LIMIT
 *        the grid of val accuracies and the chosen alpha of the addition stage
 *        equal a serial evaluation of the same grid here (sum or mean)
 *   test_search check-negation RUN_DIR MODE TASK
 *        the chosen alpha keeps the control and minimises the target on val
 *   test_search check-coef RUN_DIR DATA_DIR THETA0 MODE METHOD START STOP STEP LIMIT
 *        KGRID P SEARCH BUDGET SEED
 *        the (ties.k, alpha) chosen over KGRID ("-": none) and the per-task
 *        coefficient vector (SEARCH random|coordinate|none) equal a serial
 *        run of the same searches here
 *   test_search write-heads RUN_DIR MODE    heads_MODE.h5 by hand (rotated heads.h5)
 *   test_search check-finetuned RUN_DIR DATA_DIR THETA0 MODE METHOD
 *        the "finetuned" head set equals a serial test evaluation with them
 *   test_search same-model A.h5 B.h5        bit-identical parameters
 * Exit status 0 = the claim holds; every failure prints why. */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "merge.h"
#include "model_io.h"
#include "results.h"
#include "search.h"
#include "task_io.h"
#include "task_merge.h"

#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fprintf(stderr, "\n"), 1)

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

/* The keep-th largest magnitude of v (n) by sorting; inf when keep is 0. */
static float sorted_threshold(const float *v, size_t n, double k)
{
    size_t keep = (size_t)floor(k / 100.0 * (double)n + 0.5);
    if (keep == 0)
        return INFINITY;
    if (keep > n)
        keep = n;
    float *a = malloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++)
        a[i] = fabsf(v[i]);
    qsort(a, n, sizeof *a, cmp_desc);
    float t = a[keep - 1];
    free(a);
    return t;
}

/* tau (table layout) = merge of every task of the file, in the file's order. */
static int ref_merge_coef(const VitModel *m, const char *tvp, const char *method, double k,
                          int global, int mean, double p, unsigned long long seed,
                          const double *coef, float *tau);

static int ref_merge(const VitModel *m, const char *tvp, const char *method, double k,
                     int global, int mean, double p, unsigned long long seed, float *tau)
{
    return ref_merge_coef(m, tvp, method, k, global, mean, p, seed, NULL, tau);
}

/* The same with coefficient coef[t] (NULL: 1) on task t of the file: w_t * tau_t
 * after DARE and the trim, before the election. */
static int ref_merge_coef(const VitModel *m, const char *tvp, const char *method, double k,
                          int global, int mean, double p, unsigned long long seed,
                          const double *coef, float *tau)
{
    TvInfo tv;
    if (tv_info_read(tvp, &m->table, &tv) != TD_OK)
        return FAIL("%s", td_error_message());
    const ParamTable *tab = &m->table;
    int ties = strstr(method, "ties") != NULL, dare = strncmp(method, "dare", 4) == 0;
    int avg = strcmp(method, "mean") == 0 || (ties && mean);
    int T = tv.ntasks;
    float **x = calloc((size_t)T, sizeof *x);
    hid_t f = H5Fopen(tvp, H5F_ACC_RDONLY, H5P_DEFAULT);
    for (int t = 0; t < T; t++) {
        x[t] = calloc(tab->total, sizeof(float));
        for (int i = 0; i < tab->count; i++) {
            if (!tv.mask[i])
                continue;
            char dp[256];
            snprintf(dp, sizeof dp, "%s/%s", tv.task[t], tab->info[i].name);
            hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
            H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x[t] + tab->info[i].offset);
            H5Dclose(d);
        }
        const float scale = (float)(1.0 / (1.0 - p));
        for (size_t e = 0; dare && e < tab->total; e++)
            x[t][e] = merge_dare_uniform(seed, (uint64_t)t, e) < p ? 0.0f : x[t][e] * scale;
        if (!ties)
            continue;
        if (global) { /* packed trained entries of the whole model */
            size_t n = 0;
            float *all = malloc(tab->total * sizeof *all);
            for (int i = 0; i < tab->count; i++)
                if (tv.mask[i])
                    for (size_t e = 0; e < tab->info[i].numel; e++)
                        all[n++] = x[t][tab->info[i].offset + e];
            float thr = sorted_threshold(all, n, k);
            free(all);
            for (size_t e = 0; e < tab->total; e++)
                if (fabsf(x[t][e]) < thr)
                    x[t][e] = 0;
        } else {
            for (int i = 0; i < tab->count; i++) {
                float *v = x[t] + tab->info[i].offset;
                float thr = sorted_threshold(v, tab->info[i].numel, k);
                for (size_t e = 0; e < tab->info[i].numel; e++)
                    if (fabsf(v[e]) < thr)
                        v[e] = 0;
            }
        }
    }
    H5Fclose(f);
    for (size_t e = 0; e < tab->total; e++) {
        double s = 0;
        for (int t = 0; t < T; t++)
            s += (coef ? coef[t] : 1.0) * x[t][e];
        if (!ties) {
            tau[e] = (float)(avg ? s / T : s);
            continue;
        }
        double a = 0;
        int c = 0;
        for (int t = 0; t < T; t++) {
            double v = (coef ? coef[t] : 1.0) * x[t][e];
            if (v != 0 && s != 0 && (v > 0) == (s > 0)) {
                a += v;
                c++;
            }
        }
        tau[e] = (float)(avg ? (c ? a / c : 0) : a);
    }
    for (int t = 0; t < T; t++)
        free(x[t]);
    free(x);
    tv_info_free(&tv);
    return 0;
}

static int merge_ref(char **a)
{
    VitModel m, got;
    if (model_read(a[0], &m) != TD_OK || model_read(a[2], &got) != TD_OK)
        return FAIL("%s", td_error_message());
    float *tau = calloc(m.table.total, sizeof *tau);
    double alpha = atof(a[4]);
    if (ref_merge(&m, a[1], a[3], atof(a[5]), strcmp(a[6], "global") == 0,
                  strcmp(a[7], "mean") == 0, atof(a[8]), strtoull(a[9], NULL, 10), tau))
        return 1;
    double worst = 0, norm = 0;
    size_t bad = 0, nz = 0;
    for (size_t e = 0; e < m.table.total; e++) {
        float want = m.params[e] + (float)alpha * tau[e];
        double d = fabs((double)got.params[e] - want);
        if (d > worst)
            worst = d;
        if (d > 1e-6 * (1 + fabs(want)))
            bad++;
        norm += (double)tau[e] * tau[e];
        nz += tau[e] != 0;
    }
    printf("%s (%s): %zu of %zu entries of tau non-zero, |tau| %.4g, worst difference %.3g\n",
           a[2], a[3], nz, m.table.total, sqrt(norm), worst);
    if (norm == 0)
        return FAIL("the reference merge is zero: the test would prove nothing");
    if (bad)
        return FAIL("%zu entries differ from the serial reference", bad);
    return 0;
}

static double json_num(const cJSON *root, const char *const *keys, int n)
{
    const cJSON *o = root;
    for (int k = 0; k < n && o; k++)
        o = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
    return cJSON_IsNumber(o) ? o->valuedouble : NAN;
}

static int read_head(const char *path, const char *task, int C, int E, float *w)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, task, H5P_DEFAULT);
    int ok = d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0;
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return ok ? 0 : FAIL("cannot read head %s from %s (C %d, E %d)", task, path, C, E);
}

static int check_search(char **a)
{
    const char *run = a[0], *data = a[1], *mode = a[3], *method = a[4];
    double start = atof(a[5]), stop = atof(a[6]), step = atof(a[7]);
    int limit = atoi(a[8]);
    VitModel m;
    if (model_read(a[2], &m) != TD_OK)
        return FAIL("%s", td_error_message());
    char tvp[1024], hp[1024];
    snprintf(tvp, sizeof tvp, "%s/task_vectors_%s.h5", run, mode);
    snprintf(hp, sizeof hp, "%s/heads.h5", run);
    TvInfo tv;
    if (tv_info_read(tvp, &m.table, &tv) != TD_OK)
        return FAIL("%s", td_error_message());
    float *tau = calloc(m.table.total, sizeof *tau), *buf = calloc(m.table.total, sizeof *buf);
    if (ref_merge(&m, tvp, method, 0, 0, 0, 0, 0, tau))
        return 1;
    int A = (int)floor((stop - start) / step + 1e-9) + 1, T = tv.ntasks, E = m.arch.out_dim;
    int ntk = strcmp(mode, "ntk") == 0;
    double *grid = calloc((size_t)A * T, sizeof *grid);
    for (int t = 0; t < T; t++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.h5", data, tv.task[t]);
        TaskData td;
        if (task_read_header(path, &td) != TD_OK)
            return FAIL("%s", td_error_message());
        int C = td.num_classes;
        task_free(&td);
        float *w = calloc((size_t)C * E, sizeof *w);
        if (read_head(hp, tv.task[t], C, E, w))
            return 1;
        for (int i = 0; i < A; i++) {
            float al = (float)(start + i * step);
            for (size_t e = 0; e < m.table.total; e++)
                buf[e] = ntk ? al * tau[e] : m.params[e] + al * tau[e];
            EvalEncoder enc = {&m, ntk ? NULL : buf, ntk ? buf : NULL, ntk ? tv.mask : NULL};
            if (eval_accuracy(MPI_COMM_SELF, &enc, path, TASK_VAL, 64, limit, w, C,
                              &grid[(size_t)i * T + t]) != TD_OK)
                return FAIL("%s", td_error_message());
        }
        free(w);
    }
    /* the choice, by mean normalised val accuracy, first on ties */
    int best = 0;
    double bv = -INFINITY;
    for (int i = 0; i < A; i++) {
        double s = 0;
        for (int t = 0; t < T; t++)
            s += grid[(size_t)i * T + t] / tv.acc_val[t];
        if (s / T > bv) {
            bv = s / T;
            best = i;
        }
    }
    char gp[256];
    snprintf(gp, sizeof gp, "/%s/addition/%s/val_acc", mode, method);
    double *got = NULL;
    int nd = 0;
    size_t dims[4];
    if (results_grid_read(run, gp, &got, &nd, dims) != TD_OK)
        return FAIL("%s", td_error_message());
    if (nd != 2 || dims[0] != (size_t)A || dims[1] != (size_t)T)
        return FAIL("grid %s has the wrong shape", gp);
    int bad = 0;
    for (int i = 0; i < A * T; i++)
        if (got[i] != grid[i]) {
            fprintf(stderr, "FAIL: alpha %g task %s: stage %.6f, serial %.6f\n",
                    start + (i / T) * step, tv.task[i % T], got[i], grid[i]);
            bad++;
        }
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const char *keys[] = {"modes", mode, "addition", method, "alpha"};
    double alpha = json_num(root, keys, 5);
    const char *k2[] = {"modes", mode, "addition", method, "heads", "theta0", "abs_test"};
    double abs_test = json_num(root, k2, 7);
    cJSON_Delete(root);
    double want = start + best * step;
    printf("%s/%s: serial alpha %g (mean normalised val %.4f), stage alpha %g, test %.4f; "
           "%d of %d grid values differ\n",
           mode, method, want, bv, alpha, abs_test, bad, A * T);
    if (!(fabs(alpha - want) < 1e-9))
        return FAIL("the stage chose alpha %g, the serial evaluation %g", alpha, want);
    if (!(abs_test >= 0 && abs_test <= 1))
        return FAIL("no test accuracy in results.json");
    return bad ? 1 : 0;
}

static int check_negation(char **a)
{
    const char *run = a[0], *mode = a[1], *task = a[2];
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const char *base[] = {"modes", mode, "negation", task, ""};
    const char *names[] = {"alpha", "target_test", "control_test", "theta0_control_val",
                           "threshold", "theta0_target_test", "theta0_control_test"};
    double v[7];
    for (int k = 0; k < 7; k++) {
        base[4] = names[k];
        v[k] = json_num(root, base, 5);
        if (isnan(v[k]))
            return FAIL("results.json lacks modes.%s.negation.%s.%s", mode, task, names[k]);
    }
    cJSON_Delete(root);
    char gp[256];
    snprintf(gp, sizeof gp, "/%s/negation/%s/val_acc", mode, task);
    double *g = NULL;
    int nd;
    size_t dims[4];
    if (results_grid_read(run, gp, &g, &nd, dims) != TD_OK)
        return FAIL("%s", td_error_message());
    double floor_acc = v[4] * v[3];
    int best = -1;
    for (size_t i = 0; i < dims[0]; i++)
        if (g[2 * i + 1] >= floor_acc && (best < 0 || g[2 * i] < g[2 * best]))
            best = (int)i;
    printf("negation %s/%s: alpha %g, target test %.4f (theta0 %.4f), control test %.4f (theta0 "
           "%.4f); best grid index %d\n",
           mode, task, v[0], v[1], v[5], v[2], v[6], best);
    if (best < 0)
        return FAIL("alpha 0 is on the grid and keeps the control: something is off");
    if (g[2 * best + 1] < floor_acc)
        return FAIL("control below the threshold");
    return 0;
}

static int same_model(char **a)
{
    VitModel x, y;
    if (model_read(a[0], &x) != TD_OK || model_read(a[1], &y) != TD_OK)
        return FAIL("%s", td_error_message());
    if (memcmp(&x.arch, &y.arch, sizeof x.arch) != 0)
        return FAIL("architectures differ");
    if (memcmp(x.params, y.params, x.table.total * sizeof(float)) != 0)
        return FAIL("parameters differ");
    printf("%s and %s: identical (%s)\n", a[0], a[1], x.checksum);
    return 0;
}

/* ---- per-task coefficients, parameter grids, fine-tuned heads ---- */

typedef struct {
    VitModel m;
    TvInfo tv;
    const char *tvp, *method;
    char path[TV_MAX_TASKS][1024];
    float *w[TV_MAX_TASKS]; /* heads */
    int C[TV_MAX_TASKS];
    double norm[TV_MAX_TASKS]; /* fine-tuned val accuracies */
    int limit, ntk, split;
    double k, p;
    float *tau, *buf;
} Serial;

static int serial_open(Serial *S, const char *run, const char *data, const char *theta0,
                       const char *mode, const char *method, const char *heads, int limit)
{
    memset(S, 0, sizeof *S);
    static char tvp[1024];
    snprintf(tvp, sizeof tvp, "%s/task_vectors_%s.h5", run, mode);
    S->tvp = tvp;
    S->method = method;
    S->limit = limit;
    S->split = TASK_VAL;
    S->ntk = strcmp(mode, "ntk") == 0;
    if (model_read(theta0, &S->m) != TD_OK || tv_info_read(tvp, &S->m.table, &S->tv) != TD_OK)
        return FAIL("%s", td_error_message());
    int E = S->m.arch.out_dim;
    for (int t = 0; t < S->tv.ntasks; t++) {
        snprintf(S->path[t], sizeof S->path[t], "%s/%s.h5", data, S->tv.task[t]);
        TaskData td;
        if (task_read_header(S->path[t], &td) != TD_OK)
            return FAIL("%s", td_error_message());
        S->C[t] = td.num_classes;
        task_free(&td);
        S->w[t] = calloc((size_t)S->C[t] * E, sizeof(float));
        if (read_head(heads, S->tv.task[t], S->C[t], E, S->w[t]))
            return 1;
        S->norm[t] = S->tv.acc_val[t];
    }
    S->tau = calloc(S->m.table.total, sizeof(float));
    S->buf = calloc(S->m.table.total, sizeof(float));
    return 0;
}

/* acc[t] of theta0 + alpha * merge(coef) on S->split. */
static int serial_eval(Serial *S, const double *coef, double alpha, double *acc)
{
    if (ref_merge_coef(&S->m, S->tvp, S->method, S->k, 1, 1, S->p, 0, coef, S->tau))
        return 1;
    for (size_t e = 0; e < S->m.table.total; e++)
        S->buf[e] = S->ntk ? (float)alpha * S->tau[e] : S->m.params[e] + (float)alpha * S->tau[e];
    EvalEncoder enc = {&S->m, S->ntk ? NULL : S->buf, S->ntk ? S->buf : NULL,
                       S->ntk ? S->tv.mask : NULL};
    for (int t = 0; t < S->tv.ntasks; t++)
        if (eval_accuracy(MPI_COMM_SELF, &enc, S->path[t], S->split, 64, S->limit, S->w[t], S->C[t],
                          &acc[t]) != TD_OK)
            return FAIL("%s", td_error_message());
    return 0;
}

static double serial_score(const Serial *S, const double *acc)
{
    double m = 0;
    for (int t = 0; t < S->tv.ntasks; t++)
        m += acc[t] / S->norm[t];
    return m / S->tv.ntasks;
}

static double serial_vec(Serial *S, const int *idx, double start, double step, double *acc)
{
    double coef[TV_MAX_TASKS];
    for (int t = 0; t < S->tv.ntasks; t++)
        coef[t] = start + idx[t] * step;
    return serial_eval(S, coef, 1.0, acc) ? NAN : serial_score(S, acc);
}

/* check-coef RUN DATA THETA0 MODE METHOD START STOP STEP LIMIT KGRID P SEARCH BUDGET SEED:
 * the (ties.k, alpha) the addition stage chose over KGRID ("-": k 20 alone) and,
 * SEARCH random|coordinate, the per-task vector, against a serial run of the
 * same search. */
static int check_coef(char **a)
{
    const char *run = a[0], *mode = a[3], *method = a[4], *search = a[11];
    double start = atof(a[5]), stop = atof(a[6]), step = atof(a[7]);
    int limit = atoi(a[8]), budget = atoi(a[12]), seed = atoi(a[13]);
    char hp[1024];
    snprintf(hp, sizeof hp, "%s/heads.h5", run);
    Serial S;
    if (serial_open(&S, run, a[1], a[2], mode, method, hp, limit))
        return 1;
    S.p = atof(a[10]);
    int T = S.tv.ntasks, A = (int)floor((stop - start) / step + 1e-9) + 1;
    double ks[TD_CFG_LIST_MAX];
    int nk = 0;
    if (strcmp(a[9], "-") == 0) {
        ks[nk++] = 20;
    } else {
        char kl[256];
        snprintf(kl, sizeof kl, "%s", a[9]);
        for (char *tok = strtok(kl, ","); tok && nk < TD_CFG_LIST_MAX; tok = strtok(NULL, ","))
            ks[nk++] = atof(tok);
    }
    /* uniform alpha per k; the best (k, alpha), first on ties */
    double *grid = calloc((size_t)nk * A * T, sizeof *grid), bv = -INFINITY;
    int bk = 0, ba = 0;
    for (int i = 0; i < nk; i++) {
        S.k = ks[i];
        for (int al = 0; al < A; al++) {
            double *g = grid + ((size_t)i * A + al) * T;
            if (serial_eval(&S, NULL, start + al * step, g))
                return 1;
            double v = serial_score(&S, g);
            if (v > bv) {
                bv = v;
                bk = i;
                ba = al;
            }
        }
    }
    S.k = ks[bk];
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const char *kA[] = {"modes", mode, "addition", method, "alpha"};
    const char *kK[] = {"modes", mode, "addition", method, "ties_k"};
    double alpha = json_num(root, kA, 5), kgot = json_num(root, kK, 5);
    printf("%s/%s: serial k %g alpha %g (mean normalised val %.4f); stage k %g alpha %g\n", mode,
           method, ks[bk], start + ba * step, bv, kgot, alpha);
    int bad = 0;
    if (!(fabs(alpha - (start + ba * step)) < 1e-9))
        bad = FAIL("the stage chose alpha %g, the serial search %g", alpha, start + ba * step);
    if (strstr(method, "ties") && !(kgot == ks[bk]))
        bad = FAIL("the stage chose ties.k %g, the serial search %g", kgot, ks[bk]);
    if (strcmp(search, "none") == 0) {
        cJSON_Delete(root);
        return bad;
    }
    /* the per-task search from (ba, ..., ba) */
    int *rows = calloc((size_t)(budget + 1) * T, sizeof *rows);
    double acc[TV_MAX_TASKS], cur_v = bv;
    int cur[TV_MAX_TASKS], n = 0;
    for (int t = 0; t < T; t++)
        cur[t] = ba;
    if (strcmp(search, "random") == 0) {
        for (int c = 0; c < budget; c++) {
            int v[TV_MAX_TASKS];
            for (int t = 0; t < T; t++)
                v[t] = search_random_coef(seed, c, t, A);
            double sc = serial_vec(&S, v, start, step, acc);
            if (isnan(sc))
                return 1;
            n++;
            if (sc > cur_v) {
                cur_v = sc;
                memcpy(cur, v, sizeof cur);
            }
        }
    } else {
        for (int round = 0; n < budget; round++) {
            int moved = 0;
            for (int t = 0; t < T && n < budget; t++) {
                int b = -1, base[TV_MAX_TASKS];
                memcpy(base, cur, sizeof base);
                for (int i = 0; i < A && n < budget; i++) {
                    if (i == base[t])
                        continue;
                    int v[TV_MAX_TASKS];
                    memcpy(v, base, sizeof v);
                    v[t] = i;
                    double sc = serial_vec(&S, v, start, step, acc);
                    if (isnan(sc))
                        return 1;
                    n++;
                    if (sc > cur_v) {
                        cur_v = sc;
                        b = i;
                    }
                }
                if (b >= 0) {
                    cur[t] = b;
                    moved = 1;
                }
            }
            if (!moved)
                break;
        }
    }
    char co[64];
    snprintf(co, sizeof co, "%s_coef", method);
    const char *kn[] = {"modes", mode, "addition", co, "norm_val"};
    const char *ke[] = {"modes", mode, "addition", co, "evaluations"};
    const char *kt[] = {"modes", mode, "addition", co, "heads", "theta0", "abs_test"};
    double nv = json_num(root, kn, 5), ev = json_num(root, ke, 5), at = json_num(root, kt, 7);
    printf("%s per-task search (%d vectors, budget %d): serial mean normalised val %.6f, stage "
           "%.6f (%g vectors), test %.4f; uniform %.6f\n",
           search, n, budget, cur_v, nv, ev, at, bv);
    for (int t = 0; t < T; t++) {
        const char *kc[] = {"modes", mode, "addition", co, "coef", S.tv.task[t]};
        double got = json_num(root, kc, 6), want = start + cur[t] * step;
        printf("  %s: serial %g, stage %g\n", S.tv.task[t], want, got);
        if (!(fabs(got - want) < 1e-9))
            bad = FAIL("task %s: the stage chose %g, the serial search %g", S.tv.task[t], got,
                       want);
    }
    if (!(fabs(nv - cur_v) < 1e-12))
        bad = FAIL("mean normalised val: stage %.17g, serial %.17g", nv, cur_v);
    if (ev != n)
        bad = FAIL("the stage evaluated %g vectors, the serial search %d", ev, n);
    if (!(at >= 0 && at <= 1))
        bad = FAIL("no test accuracy for %s in results.json", co);
    cJSON_Delete(root);
    free(rows);
    free(grid);
    return bad;
}

/* write-heads RUN MODE: heads_<mode>.h5 = heads.h5 with each head's class
 * rows rotated by one (a head set unlike the frozen one). */
static int write_heads(char **a)
{
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/heads.h5", a[0]);
    snprintf(dst, sizeof dst, "%s/heads_%s.h5", a[0], a[1]);
    hid_t in = H5Fopen(src, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t out = H5Fcreate(dst, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (in < 0 || out < 0)
        return FAIL("cannot open %s or create %s", src, dst);
    H5G_info_t gi;
    H5Gget_info(in, &gi);
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        char name[256];
        H5Lget_name_by_idx(in, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
        hid_t d = H5Dopen2(in, name, H5P_DEFAULT), sp = H5Dget_space(d);
        hsize_t dims[2];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        size_t C = dims[0], E = dims[1];
        float *w = malloc(C * E * sizeof *w), *v = malloc(C * E * sizeof *v);
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
        for (size_t c = 0; c < C; c++)
            memcpy(v + ((c + 1) % C) * E, w + c * E, E * sizeof *v);
        hid_t o = H5Dcreate2(out, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(o);
        H5Sclose(sp);
        H5Dclose(d);
        free(w);
        free(v);
        printf("%s: /%s [%zu, %zu] rotated\n", dst, name, C, E);
    }
    H5Fclose(in);
    H5Fclose(out);
    return 0;
}

/* check-finetuned RUN DATA THETA0 MODE METHOD: the "finetuned" head set of
 * modes.MODE.addition.METHOD equals a serial test evaluation at its alpha with
 * the heads of heads_MODE.h5, and differs from the theta0 head set. */
static int check_finetuned(char **a)
{
    const char *run = a[0], *mode = a[3], *method = a[4];
    char hp[1024];
    snprintf(hp, sizeof hp, "%s/heads_%s.h5", run, mode);
    Serial S;
    if (serial_open(&S, run, a[1], a[2], mode, method, hp, 0))
        return 1;
    S.k = 20;
    S.split = TASK_TEST;
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const char *kA[] = {"modes", mode, "addition", method, "alpha"};
    double alpha = json_num(root, kA, 5), acc[TV_MAX_TASKS];
    if (isnan(alpha) || serial_eval(&S, NULL, alpha, acc))
        return FAIL("no alpha for %s/%s", mode, method);
    int bad = 0, differ = 0;
    for (int t = 0; t < S.tv.ntasks; t++) {
        const char *kf[] = {"modes", mode, "addition", method, "heads", "finetuned",
                            "per_task", S.tv.task[t], "abs"};
        const char *k0[] = {"modes", mode, "addition", method, "heads", "theta0",
                            "per_task", S.tv.task[t], "abs"};
        double f = json_num(root, kf, 9), z = json_num(root, k0, 9);
        printf("%s/%s %s: finetuned heads stage %.6f serial %.6f; theta0 heads %.6f\n", mode,
               method, S.tv.task[t], f, acc[t], z);
        if (!(f == acc[t]))
            bad = FAIL("task %s: the stage's finetuned-head accuracy is not the serial one",
                       S.tv.task[t]);
        differ += f != z;
    }
    cJSON_Delete(root);
    if (!differ)
        bad = FAIL("the finetuned head set scores like the theta0 one: the test proves nothing");
    return bad;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc == 12 && strcmp(argv[1], "merge-ref") == 0)
        rc = merge_ref(argv + 2);
    else if (argc == 11 && strcmp(argv[1], "check-search") == 0)
        rc = check_search(argv + 2);
    else if (argc == 5 && strcmp(argv[1], "check-negation") == 0)
        rc = check_negation(argv + 2);
    else if (argc == 16 && strcmp(argv[1], "check-coef") == 0)
        rc = check_coef(argv + 2);
    else if (argc == 4 && strcmp(argv[1], "write-heads") == 0)
        rc = write_heads(argv + 2);
    else if (argc == 7 && strcmp(argv[1], "check-finetuned") == 0)
        rc = check_finetuned(argv + 2);
    else if (argc == 4 && strcmp(argv[1], "same-model") == 0)
        rc = same_model(argv + 2);
    else
        fprintf(stderr, "usage: see the comment at the top of tests/test_search.c\n");
    MPI_Finalize();
    return rc;
}
