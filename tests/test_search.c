/* Helper of tests/search.cmake: plain serial references for the collective
 * merge and the distributed search.
 *   test_search merge-ref THETA0 TV OUT.h5 METHOD ALPHA K SCOPE COMBINE P SEED
 *        OUT.h5 (tadist merge) = theta0 + alpha * a merge computed here by
 *        direct loops (sorted top-k, explicit election)
 *   test_search check-search RUN_DIR DATA_DIR THETA0 MODE METHOD START STOP STEP LIMIT
 *        the grid of val accuracies and the chosen alpha of the addition stage
 *        equal a serial evaluation of the same grid here (sum or mean)
 *   test_search check-negation RUN_DIR DATA_DIR THETA0 MODE TASK CONTROL START STOP STEP
 *        THRESHOLD LIMIT
 *        the negation grid, chosen alpha and every accuracy reported equal a
 *        serial recomputation here
 *   test_search check-norm RUN_DIR DATA_DIR THETA0 MODE METHOD LIMIT
 *        every head set's normalised accuracy is its merged accuracy over the
 *        same head set's single-task accuracy, itself recomputed here
 *   test_search set-json RUN_DIR KEY VALUE   edits results.json (tamper tests)
 *   test_search old-norm RUN_DIR MODE METHOD  renormalises an addition result the
 *        old way (every head set by single.<task>.test), for check-norm to reject
 *   test_search same-search RUN_A RUN_B MODE...
 *        single-task and addition results and grids identical
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
    free(tau);
    model_free(&m);
    model_free(&got);
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

/* Prototype heads (C,E) of normalised features: each class's feature sum,
 * L2-normalised (zero for a class with no image). */
static void ref_protos(const float *f, const int32_t *y, int64_t n, int E, int C, float *w)
{
    double *acc = calloc((size_t)C * E, sizeof *acc);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < E; k++)
            acc[(size_t)y[i] * E + k] += f[i * E + k];
    for (int c = 0; c < C; c++) {
        double s2 = 0;
        for (int k = 0; k < E; k++)
            s2 += acc[(size_t)c * E + k] * acc[(size_t)c * E + k];
        for (int k = 0; k < E; k++)
            w[(size_t)c * E + k] = s2 > 0 ? (float)(acc[(size_t)c * E + k] / sqrt(s2)) : 0.0f;
    }
    free(acc);
}

/* The encoder theta0 + c * tau (ntk: the linearised model along c * tau) in
 * buf, as an EvalEncoder. */
static EvalEncoder ref_encoder(const VitModel *m, const TvInfo *tv, int ntk, const float *tau,
                               double c, float *buf)
{
    const float k = (float)c;
    for (size_t e = 0; e < m->table.total; e++)
        buf[e] = ntk ? k * tau[e] : m->params[e] + k * tau[e];
    EvalEncoder enc = {m, ntk ? NULL : buf, ntk ? buf : NULL, ntk ? tv->mask : NULL};
    return enc;
}

enum { SET_THETA0, SET_REFIT, SET_FINETUNED, SET_N };
static const char *const k_set[SET_N] = {"theta0", "refit", "finetuned"};

/* Single-task accuracy of theta_t = theta0 + tau_t (each task t of the file
 * in turn; ntk: linearised) with one head set, on val (acc[t][0]) and test
 * (acc[t][1]): frozen heads of RUN/heads.h5, fine-tuned heads of
 * RUN/heads_MODE.h5 (NaN for a task it lacks), or prototypes refit on
 * theta_t's own train features. Serial, one rank, batch 64. */
static int single_ref(const char *run, const char *data, const VitModel *m, const char *mode,
                      int set, int limit, double acc[][2])
{
    char tvp[1024], hp[1024];
    snprintf(tvp, sizeof tvp, "%s/task_vectors_%s.h5", run, mode);
    if (set == SET_FINETUNED)
        snprintf(hp, sizeof hp, "%s/heads_%s.h5", run, mode);
    else
        snprintf(hp, sizeof hp, "%s/heads.h5", run);
    TvInfo tv;
    if (tv_info_read(tvp, &m->table, &tv) != TD_OK)
        return FAIL("%s", td_error_message());
    int T = tv.ntasks, E = m->arch.out_dim, ntk = strcmp(mode, "ntk") == 0;
    float *tau = calloc(m->table.total, sizeof *tau), *buf = calloc(m->table.total, sizeof *buf);
    int bad = 0;
    for (int t = 0; t < T && !bad; t++) {
        double coef[TV_MAX_TASKS] = {0};
        coef[t] = 1;
        if (ref_merge_coef(m, tvp, "sum", 0, 0, 0, 0, 0, coef, tau))
            return 1;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.h5", data, tv.task[t]);
        TaskData td;
        if (task_read_header(path, &td) != TD_OK)
            return FAIL("%s", td_error_message());
        int C = td.num_classes;
        task_free(&td);
        float *w = calloc((size_t)C * E, sizeof *w);
        EvalEncoder enc = ref_encoder(m, &tv, ntk, tau, 1.0, buf);
        acc[t][0] = acc[t][1] = NAN;
        if (set == SET_REFIT) {
            float *f = NULL;
            int32_t *y = NULL;
            int64_t n = 0;
            if (eval_features(MPI_COMM_SELF, &enc, path, TASK_TRAIN, 64, limit, &f, &y, &n) !=
                TD_OK)
                return FAIL("%s", td_error_message());
            ref_protos(f, y, n, E, C, w);
            free(f);
            free(y);
        } else {
            hid_t hf = H5Fopen(hp, H5F_ACC_RDONLY, H5P_DEFAULT);
            int has = hf >= 0 && H5Lexists(hf, tv.task[t], H5P_DEFAULT) > 0;
            if (hf >= 0)
                H5Fclose(hf);
            if (!has) { /* a fine-tuned head set without this task */
                free(w);
                continue;
            }
            if (read_head(hp, tv.task[t], C, E, w))
                return 1;
        }
        for (int sp = 0; sp < 2; sp++)
            if (eval_accuracy(MPI_COMM_SELF, &enc, path, sp ? TASK_TEST : TASK_VAL, 64, limit, w,
                              C, &acc[t][sp]) != TD_OK)
                bad = FAIL("%s", td_error_message());
        free(w);
    }
    free(tau);
    free(buf);
    tv_info_free(&tv);
    return bad;
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
    /* the choice, by mean normalised val accuracy, first on ties; the
     * normaliser is theta_t's val accuracy with the heads the grid was
     * scored with (the frozen ones), measured here */
    double single[TV_MAX_TASKS][2];
    if (single_ref(run, data, &m, mode, SET_THETA0, limit, single))
        return 1;
    int best = 0;
    double bv = -INFINITY;
    for (int i = 0; i < A; i++) {
        double s = 0;
        for (int t = 0; t < T; t++)
            s += grid[(size_t)i * T + t] / single[t][0];
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
    free(got);
    free(grid);
    free(tau);
    free(buf);
    tv_info_free(&tv);
    model_free(&m);
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

/* check-negation RUN DATA THETA0 MODE TASK CONTROL START STOP STEP THRESHOLD LIMIT:
 * everything modes.MODE.negation.TASK reports, recomputed here from scratch -
 * the val grid of theta0 - alpha tau_TASK (target and control, frozen heads),
 * theta0's control val accuracy, the alpha that minimises the target with the
 * control kept (the smallest on ties), and the test accuracies at that alpha
 * and at 0. The control must be a task of the run (its frozen head). */
static int check_negation(char **a)
{
    const char *run = a[0], *data = a[1], *mode = a[3], *task = a[4], *control = a[5];
    double start = atof(a[6]), stop = atof(a[7]), step = atof(a[8]), thr = atof(a[9]);
    int limit = atoi(a[10]);
    int A = (int)floor((stop - start) / step + 1e-9) + 1;
    VitModel m;
    if (model_read(a[2], &m) != TD_OK)
        return FAIL("%s", td_error_message());
    char tvp[1024], hp[1024];
    snprintf(tvp, sizeof tvp, "%s/task_vectors_%s.h5", run, mode);
    snprintf(hp, sizeof hp, "%s/heads.h5", run);
    TvInfo tv;
    if (tv_info_read(tvp, &m.table, &tv) != TD_OK)
        return FAIL("%s", td_error_message());
    int ti = tv_task_index(&tv, task), ntk = strcmp(mode, "ntk") == 0, E = m.arch.out_dim;
    if (ti < 0 || tv_task_index(&tv, control) < 0)
        return FAIL("%s or %s is not a task of %s", task, control, tvp);
    double coef[TV_MAX_TASKS] = {0};
    coef[ti] = 1;
    float *tau = calloc(m.table.total, sizeof *tau), *buf = calloc(m.table.total, sizeof *buf);
    if (ref_merge_coef(&m, tvp, "sum", 0, 0, 0, 0, 0, coef, tau))
        return 1;
    const char *nm[2] = {task, control};
    char path[2][1024];
    float *w[2];
    int C[2];
    for (int k = 0; k < 2; k++) {
        snprintf(path[k], sizeof path[k], "%s/%s.h5", data, nm[k]);
        TaskData td;
        if (task_read_header(path[k], &td) != TD_OK)
            return FAIL("%s", td_error_message());
        C[k] = td.num_classes;
        task_free(&td);
        w[k] = calloc((size_t)C[k] * E, sizeof *w[k]);
        if (read_head(hp, nm[k], C[k], E, w[k]))
            return 1;
    }
    /* acc of theta0 - c tau on split for target (k 0) or control (k 1) */
#define NEG_ACC(c, k, split, out)                                                                 \
    do {                                                                                          \
        EvalEncoder e_ = ref_encoder(&m, &tv, ntk, tau, -(c), buf);                               \
        if (eval_accuracy(MPI_COMM_SELF, &e_, path[k], split, 64, limit, w[k], C[k], out) !=      \
            TD_OK)                                                                                \
            return FAIL("%s", td_error_message());                                                \
    } while (0)
    double *g = calloc((size_t)A * 2, sizeof *g), c0v, c0t, t0t;
    for (int i = 0; i < A; i++)
        for (int k = 0; k < 2; k++)
            NEG_ACC(start + i * step, k, TASK_VAL, &g[2 * i + k]);
    NEG_ACC(0.0, 1, TASK_VAL, &c0v);
    NEG_ACC(0.0, 1, TASK_TEST, &c0t);
    NEG_ACC(0.0, 0, TASK_TEST, &t0t);
    int best = -1;
    for (int i = 0; i < A; i++)
        if (g[2 * i + 1] >= thr * c0v && (best < 0 || g[2 * i] < g[2 * best]))
            best = i;
    double alpha = best >= 0 ? start + best * step : 0.0, tt, ct;
    NEG_ACC(alpha, 0, TASK_TEST, &tt);
    NEG_ACC(alpha, 1, TASK_TEST, &ct);
#undef NEG_ACC
    printf("negation %s/%s (serial): alpha %g (grid index %d), target val %.4f test %.4f, control "
           "%s val %.4f (floor %.4f) test %.4f\n",
           mode, task, alpha, best, best >= 0 ? g[2 * best] : NAN, tt, control,
           best >= 0 ? g[2 * best + 1] : NAN, thr * c0v, ct);
    int bad = 0;
    if (best < 0)
        bad = FAIL("no alpha keeps the control, although alpha 0 is on the grid");
    if (best == 0)
        bad = FAIL("the chosen alpha is the first grid point: the test proves little (raise the "
                   "fine-tuning learning rate)");
    /* the stage's grid, value for value */
    char gp[256];
    snprintf(gp, sizeof gp, "/%s/negation/%s/val_acc", mode, task);
    double *got = NULL;
    int nd = 0;
    size_t dims[4];
    if (results_grid_read(run, gp, &got, &nd, dims) != TD_OK)
        return FAIL("%s", td_error_message());
    if (nd != 2 || dims[0] != (size_t)A || dims[1] != 2)
        return FAIL("grid %s is not %d x 2", gp, A);
    for (int i = 0; i < 2 * A; i++)
        if (got[i] != g[i])
            bad = FAIL("%s: alpha %g %s: stage %.6f, serial %.6f", gp, start + (i / 2) * step,
                       i % 2 ? "control" : "target", got[i], g[i]);
    /* what results.json reports */
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const char *base[] = {"modes", mode, "negation", task, ""};
    struct {
        const char *key;
        double want, tol;
    } k[] = {
        {"alpha", alpha, 1e-9},
        {"alpha_index", best, 0},
        {"target_val", best >= 0 ? g[2 * best] : NAN, 0},
        {"control_val", best >= 0 ? g[2 * best + 1] : NAN, 0},
        {"theta0_control_val", c0v, 0},
        {"threshold", thr, 1e-12},
        {"target_test", tt, 0},
        {"control_test", ct, 0},
        {"theta0_target_test", t0t, 0},
        {"theta0_control_test", c0t, 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        base[4] = k[i].key;
        double v = json_num(root, base, 5);
        if (!(fabs(v - k[i].want) <= k[i].tol))
            bad = FAIL("modes.%s.negation.%s.%s is %.17g, recomputed %.17g", mode, task,
                       k[i].key, v, k[i].want);
    }
    cJSON_Delete(root);
    if (!(tt < t0t))
        bad = FAIL("negation did not lower the target's test accuracy (%.4f, theta0 %.4f): the "
                   "test proves little",
                   tt, t0t);
    printf("negation %s/%s: results.json %s the serial recomputation\n", mode, task,
           bad ? "DIFFERS FROM" : "equals");
    free(g);
    free(got);
    free(tau);
    free(buf);
    free(w[0]);
    free(w[1]);
    tv_info_free(&tv);
    model_free(&m);
    return bad;
}

/* check-norm RUN DATA THETA0 MODE METHOD LIMIT: each head set's normalised
 * accuracies in modes.MODE.addition.METHOD are its merged accuracies divided
 * by the single-task accuracies of the SAME head set
 * (modes.MODE.single.<task>.heads.<set>.test), which are recomputed here from
 * scratch (frozen, refit, and fine-tuned heads when heads_MODE.h5 exists);
 * norm_val is the val grid's row at the chosen alpha over the frozen heads'
 * single-task val accuracy. */
static int check_norm(char **a)
{
    const char *run = a[0], *data = a[1], *mode = a[3], *method = a[4];
    int limit = atoi(a[5]);
    VitModel m;
    if (model_read(a[2], &m) != TD_OK)
        return FAIL("%s", td_error_message());
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    const cJSON *modes = cJSON_GetObjectItemCaseSensitive(root, "modes");
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(modes, mode);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(mo, "single");
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(mo, "addition"), method);
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(add, "heads");
    if (!single || !heads)
        return FAIL("results.json lacks modes.%s.single or modes.%s.addition.%s.heads", mode, mode,
                    method);
    int bad = 0, sets = 0, refit_differs = 0;
    double ref[SET_N][TV_MAX_TASKS][2];
    int have[SET_N] = {0};
    for (int k = 0; k < SET_N; k++) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(heads, k_set[k]);
        if (!cJSON_IsObject(h))
            continue;
        have[k] = 1;
        if (single_ref(run, data, &m, mode, k, limit, ref[k]))
            return 1;
        double sa = 0, sn = 0;
        int n = 0;
        for (const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "per_task")->child; t;
             t = t->next) {
            const char *kt[] = {t->string, "heads", k_set[k], "test"};
            const char *kv[] = {t->string, "heads", k_set[k], "val"};
            const char *ka[] = {"abs"}, *kn[] = {"norm"};
            double st = json_num(single, kt, 4), sv = json_num(single, kv, 4);
            double ab = json_num(t, ka, 1), no = json_num(t, kn, 1);
            TvInfo tv;
            char tvp[1024];
            snprintf(tvp, sizeof tvp, "%s/task_vectors_%s.h5", run, mode);
            if (tv_info_read(tvp, &m.table, &tv) != TD_OK)
                return FAIL("%s", td_error_message());
            int ti = tv_task_index(&tv, t->string);
            tv_info_free(&tv);
            printf("%s/%s %s heads, %s: merged %.6f, single %.6f (recomputed val %.6f test %.6f), "
                   "normalised %.6f = %.6f\n",
                   mode, method, k_set[k], t->string, ab, st, ti >= 0 ? ref[k][ti][0] : NAN,
                   ti >= 0 ? ref[k][ti][1] : NAN, no, ab / st);
            if (ti < 0)
                return FAIL("task %s is not in %s", t->string, tvp);
            if (!(st == ref[k][ti][1] && sv == ref[k][ti][0]))
                bad = FAIL("single.%s.heads.%s is val %.17g test %.17g, recomputed %.17g %.17g",
                           t->string, k_set[k], sv, st, ref[k][ti][0], ref[k][ti][1]);
            if (!(fabs(no - ab / st) <= 1e-12 * (1 + fabs(no))))
                bad = FAIL("%s heads, %s: normalised %.17g is not merged / single = %.17g",
                           k_set[k], t->string, no, ab / st);
            if (k == SET_REFIT) {
                const char *k0[] = {t->string, "heads", k_set[SET_THETA0], "test"};
                refit_differs += st != json_num(single, k0, 4);
            }
            sa += ab;
            sn += ab / st;
            n++;
        }
        const char *kat[] = {"abs_test"}, *knt[] = {"norm_test"}, *kby[] = {"normalised_by"};
        double at = json_num(h, kat, 1), nt = json_num(h, knt, 1);
        const cJSON *by = cJSON_GetObjectItemCaseSensitive(h, kby[0]);
        char want[200];
        snprintf(want, sizeof want, "modes.%s.single.<task>.heads.%s.test", mode, k_set[k]);
        if (n == 0 || !(fabs(at - sa / n) <= 1e-12) || !(fabs(nt - sn / n) <= 1e-12))
            bad = FAIL("%s heads: means abs %.17g norm %.17g, over the tasks %.17g %.17g", k_set[k],
                       at, nt, n ? sa / n : NAN, n ? sn / n : NAN);
        if (!cJSON_IsString(by) || strcmp(by->valuestring, want) != 0)
            bad = FAIL("%s heads: normalised_by is not '%s'", k_set[k], want);
        sets++;
    }
    if (!have[SET_THETA0])
        bad = FAIL("no theta0 head set in modes.%s.addition.%s", mode, method);
    /* norm_val: the grid row at alpha_index over the frozen single val accuracy */
    const char *kai[] = {"alpha_index"}, *knv[] = {"norm_val"}, *kg[] = {"grid"};
    double ai = json_num(add, kai, 1), nv = json_num(add, knv, 1);
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(add, kg[0]);
    if (cJSON_IsString(grid) && !isnan(ai) && have[SET_THETA0]) {
        char gp[600];
        snprintf(gp, sizeof gp, "%s/val_acc", grid->valuestring);
        double *g = NULL;
        int nd;
        size_t dims[4];
        if (results_grid_read(run, gp, &g, &nd, dims) != TD_OK)
            return FAIL("%s", td_error_message());
        int T = (int)dims[1];
        double sc = 0;
        for (int t = 0; t < T; t++)
            sc += g[(size_t)ai * T + t] / ref[SET_THETA0][t][0];
        sc /= T;
        printf("%s/%s: norm_val %.17g, recomputed from the grid and the frozen heads' single val "
               "accuracy %.17g\n",
               mode, method, nv, sc);
        if (!(fabs(nv - sc) <= 1e-12))
            bad = FAIL("norm_val %.17g is not the grid's row over the frozen single val accuracy "
                       "(%.17g)",
                       nv, sc);
        free(g);
    } else {
        bad = FAIL("modes.%s.addition.%s lacks alpha_index or grid", mode, method);
    }
    if (have[SET_REFIT] && !refit_differs)
        bad = FAIL("refit and frozen heads have the same single-task accuracies: the test cannot "
                   "tell the normalisers apart");
    cJSON_Delete(root);
    model_free(&m);
    printf("%s/%s: %d head set(s), each normalised by its own single-task accuracy: %s\n", mode,
           method, sets, bad ? "NO" : "yes");
    return bad;
}

/* set-json RUN KEY VALUE: results.json's KEY (dotted) set to the number VALUE
 * (for the tamper tests). */
static int set_json(char **a)
{
    if (results_set(a[0], a[1], cJSON_CreateNumber(atof(a[2]))) != TD_OK)
        return FAIL("%s", td_error_message());
    printf("%s/results.json: %s = %s\n", a[0], a[1], a[2]);
    return 0;
}

/* old-norm RUN MODE METHOD: rewrites modes.MODE.addition.METHOD as the stage
 * did before each head set had its own normaliser - every head set's norm
 * divided by single.<task>.test (the finetune stage's figure, frozen heads
 * here) - so that check-norm can be shown to reject it. */
static int old_norm(char **a)
{
    const char *run = a[0], *mode = a[1], *method = a[2];
    cJSON *root;
    if (results_load(run, &root) != TD_OK)
        return FAIL("%s", td_error_message());
    cJSON *mo = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "modes"),
                                                 mode);
    cJSON *single = cJSON_GetObjectItemCaseSensitive(mo, "single");
    cJSON *heads = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(mo, "addition"), method),
        "heads");
    if (!single || !heads)
        return FAIL("no modes.%s.single or addition.%s.heads in %s", mode, method, run);
    for (cJSON *h = heads->child; h; h = h->next) {
        cJSON *pt = cJSON_GetObjectItemCaseSensitive(h, "per_task");
        double sn = 0;
        int n = 0;
        for (cJSON *t = pt ? pt->child : NULL; t; t = t->next) {
            const char *kt[] = {t->string, "test"}, *ka[] = {"abs"};
            double v = json_num(t, ka, 1) / json_num(single, kt, 2);
            cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(t, "norm"), v);
            sn += v;
            n++;
        }
        if (n)
            cJSON_SetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "norm_test"), sn / n);
    }
    char key[300];
    snprintf(key, sizeof key, "modes.%s.addition.%s.heads", mode, method);
    cJSON *copy = cJSON_Duplicate(heads, 1);
    cJSON_Delete(root);
    if (results_set(run, key, copy) != TD_OK)
        return FAIL("%s", td_error_message());
    printf("%s: %s normalised the old way (by single.<task>.test)\n", run, key);
    return 0;
}

/* Numbers of two JSON values equal, recursively (same keys, same order). */
static int json_same(const cJSON *x, const cJSON *y, const char *where)
{
    char w[1024];
    if (!x || !y || (x->type & 0xff) != (y->type & 0xff))
        return FAIL("%s: present or typed differently", where);
    if (cJSON_IsNumber(x))
        return x->valuedouble == y->valuedouble || (isnan(x->valuedouble) && isnan(y->valuedouble))
                   ? 0
                   : FAIL("%s: %.17g against %.17g", where, x->valuedouble, y->valuedouble);
    if (cJSON_IsString(x))
        return strcmp(x->valuestring, y->valuestring) == 0
                   ? 0
                   : FAIL("%s: '%s' against '%s'", where, x->valuestring, y->valuestring);
    int bad = 0;
    const cJSON *b = y->child;
    for (const cJSON *c = x->child; c || b; c = c ? c->next : NULL, b = b ? b->next : NULL) {
        snprintf(w, sizeof w, "%s.%s", where, c && c->string ? c->string : "[]");
        if (!c || !b || (c->string && (!b->string || strcmp(c->string, b->string) != 0)))
            return FAIL("%s: different keys", w);
        bad |= json_same(c, b, w);
    }
    return bad;
}

/* same-search RUN_A RUN_B MODE...: for each MODE, modes.MODE.{single,
 * addition} of the two runs' results.json and every grid under
 * /MODE/addition equal, number for number (a killed and resumed search
 * against an uninterrupted one). */
static int same_search(int n, char **a)
{
    cJSON *x, *y;
    if (results_load(a[0], &x) != TD_OK || results_load(a[1], &y) != TD_OK)
        return FAIL("%s", td_error_message());
    int bad = 0, grids = 0;
    for (int i = 2; i < n; i++) {
        const char *parts[2] = {"single", "addition"};
        for (int k = 0; k < 2; k++) {
            const cJSON *mx = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(x, "modes"),
                                                 a[i]),
                parts[k]);
            const cJSON *my = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(y, "modes"),
                                                 a[i]),
                parts[k]);
            char w[200];
            snprintf(w, sizeof w, "modes.%s.%s", a[i], parts[k]);
            bad |= json_same(mx, my, w);
            if (k == 0 || !mx)
                continue;
            for (const cJSON *me = mx->child; me; me = me->next) {
                const cJSON *g = cJSON_GetObjectItemCaseSensitive(me, "grid");
                const char *ds[3] = {"val_acc", "val_norm", "alpha"};
                for (int d = 0; cJSON_IsString(g) && d < 3; d++) {
                    char p[700];
                    snprintf(p, sizeof p, "%s/%s", g->valuestring, ds[d]);
                    double *u = NULL, *v = NULL;
                    int nu, nv;
                    size_t du[4], dv[4];
                    if (results_grid_read(a[0], p, &u, &nu, du) != TD_OK ||
                        results_grid_read(a[1], p, &v, &nv, dv) != TD_OK)
                        return FAIL("%s", td_error_message());
                    size_t cnt = 1;
                    for (int q = 0; q < nu; q++)
                        cnt *= du[q];
                    if (nu != nv || memcmp(du, dv, (size_t)nu * sizeof *du) != 0 ||
                        memcmp(u, v, cnt * sizeof *u) != 0)
                        bad |= FAIL("grid %s differs", p);
                    grids++;
                    free(u);
                    free(v);
                }
            }
        }
    }
    cJSON_Delete(x);
    cJSON_Delete(y);
    printf("%s and %s: single-task and addition results %s (%d grids compared)\n", a[0], a[1],
           bad ? "DIFFER" : "identical", grids);
    return bad || grids == 0;
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
    model_free(&x);
    model_free(&y);
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
    double norm[TV_MAX_TASKS]; /* val accuracies of theta_t with the frozen heads */
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
    }
    double single[TV_MAX_TASKS][2];
    if (single_ref(run, data, &S->m, mode, SET_THETA0, limit, single))
        return 1;
    for (int t = 0; t < S->tv.ntasks; t++)
        S->norm[t] = single[t][0];
    S->tau = calloc(S->m.table.total, sizeof(float));
    S->buf = calloc(S->m.table.total, sizeof(float));
    return 0;
}

static void serial_close(Serial *S)
{
    for (int t = 0; t < TV_MAX_TASKS; t++)
        free(S->w[t]);
    free(S->tau);
    free(S->buf);
    tv_info_free(&S->tv);
    model_free(&S->m);
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
 * SEARCH random|coordinate, the per-task vector (merge.search, task
 * coefficients: results.json modes.MODE.coef_search.METHOD.SEARCH_task),
 * against a serial run of the same search. */
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
        free(grid);
        serial_close(&S);
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
    snprintf(co, sizeof co, "%s_task", search);
    const char *kn[] = {"modes", mode, "coef_search", method, co, "norm_val"};
    const char *ke[] = {"modes", mode, "coef_search", method, co, "iterations"};
    const char *kt[] = {"modes", mode, "coef_search", method, co, "heads", "theta0", "abs_test"};
    /* the stage evaluates its start (the uniform choice) as its first vector */
    double nv = json_num(root, kn, 6), ev = json_num(root, ke, 6) - 1, at = json_num(root, kt, 8);
    printf("%s per-task search (%d vectors, budget %d): serial mean normalised val %.6f, stage "
           "%.6f (%g vectors), test %.4f; uniform %.6f\n",
           search, n, budget, cur_v, nv, ev, at, bv);
    for (int t = 0; t < T; t++) {
        const char *kc[] = {"modes", mode, "coef_search", method, co, "coef", S.tv.task[t]};
        const cJSON *row = root;
        for (int i = 0; i < 7 && row; i++)
            row = cJSON_GetObjectItemCaseSensitive(row, kc[i]);
        const cJSON *v0 = cJSON_IsArray(row) ? cJSON_GetArrayItem(row, 0) : NULL;
        double got = cJSON_IsNumber(v0) ? v0->valuedouble : NAN, want = start + cur[t] * step;
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
    serial_close(&S);
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
    else if (argc == 13 && strcmp(argv[1], "check-negation") == 0)
        rc = check_negation(argv + 2);
    else if (argc == 8 && strcmp(argv[1], "check-norm") == 0)
        rc = check_norm(argv + 2);
    else if (argc == 5 && strcmp(argv[1], "set-json") == 0)
        rc = set_json(argv + 2);
    else if (argc == 5 && strcmp(argv[1], "old-norm") == 0)
        rc = old_norm(argv + 2);
    else if (argc >= 5 && strcmp(argv[1], "same-search") == 0)
        rc = same_search(argc - 2, argv + 2);
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
