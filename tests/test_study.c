/* Helper of tests/studies.cmake: checks of the disentangle and kernel stages.
 *   test_study symkl                       the head-free measure against hand values
 *   test_study serial RUN MODEL DATA MODE T1 T2 BATCH MICRO
 *                                          the run's grids equal a serial computation
 *                                          (MICRO: the run's blas.micro_batch)
 *                                          done here; xi(0,0) = 0; xi(a,0) has term 1 = 0
 *   test_study same RUN_A RUN_B            every disentangle grid of A equals B's
 *   test_study kernel RUN MODEL DATA LIMIT every kernel entry equals a serial
 *                                          recomputation of f(theta0 + tau), f0 + J tau
 *                                          and f0; values in range; ntk and attn: the
 *                                          two models disagree somewhere
 * Exit status 0 = the claim holds; every failure prints why. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "model_io.h"
#include "results.h"
#include "runtime.h"
#include "study.h"
#include "task_io.h"

#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fprintf(stderr, "\n"), 1)

static int symkl(void)
{
    int bad = 0;
    const float a[2] = {1, 0}, b[2] = {0, 1}, h[2] = {0.5f, 0}, g[2] = {0, 0.5f};
    const float c[3] = {(float)M_LN2, 0, 0}, z[3] = {0, 0, 0};
    struct {
        const char *what;
        double got, want;
    } k[] = {
        /* softmax(1,0) vs softmax(0,1): 2 (p1 - q1) = 2 tanh(1/2) */
        {"(1,0) vs (0,1), scale 1", study_symkl(a, b, 2, 1), 0.9242343145200195},
        {"(0,1) vs (1,0), scale 1 (symmetric)", study_symkl(b, a, 2, 1), 0.9242343145200195},
        {"(.5,0) vs (0,.5), scale 2 (scale multiplies the features)", study_symkl(h, g, 2, 2),
         0.9242343145200195},
        /* (1/2,1/4,1/4) vs uniform: (1/6) ln 1.5 + 2 (1/12) ln(4/3) */
        {"(ln 2,0,0) vs 0, scale 1", study_symkl(c, z, 3, 1), 0.11552453009332421},
        {"equal features", study_symkl(a, a, 2, 100), 0},
    };
    for (size_t i = 0; i < sizeof k / sizeof *k; i++) {
        int ok = fabs(k[i].got - k[i].want) <= 1e-6 * (1 + fabs(k[i].want));
        printf("symKL %s: %.9f, expected %.9f: %s\n", k[i].what, k[i].got, k[i].want,
               ok ? "ok" : "WRONG");
        bad += !ok;
    }
    return bad != 0;
}

/* ---- serial recomputation ---- */

typedef struct {
    char path[600];
    float *head;
    int C;
} Side;

static float *read_head(const char *file, const char *task, int E, int *C)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, task, H5P_DEFAULT);
    if (d < 0)
        return NULL;
    hid_t sp = H5Dget_space(d);
    size_t n = (size_t)H5Sget_simple_extent_npoints(sp);
    float *w = malloc(n * sizeof *w);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    *C = (int)(n / (size_t)E);
    return w;
}

static int argmax(const float *z, const float *head, int C, int E)
{
    int best = 0;
    double bv = -INFINITY;
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int k = 0; k < E; k++)
            s += (double)z[k] * head[(size_t)c * E + k];
        if (s > bv)
            bv = s, best = c;
    }
    return best;
}

typedef struct {
    const VitModel *m;
    int ntk, batch;
    const float *tau[2];
    unsigned char *mask;
    float *work;
} Enc;

/* theta0 + a1 tau1 + a2 tau2 (or the linearised model) on side s: features (n,E). */
static float *features(Enc *e, float a1, float a2, const Side *s, int64_t *n)
{
    EvalEncoder enc = {e->m, e->work, NULL, NULL};
    for (size_t k = 0; k < e->m->table.total; k++) {
        float d = a1 * e->tau[0][k] + a2 * e->tau[1][k];
        e->work[k] = e->ntk ? d : e->m->params[k] + a1 * e->tau[0][k] + a2 * e->tau[1][k];
    }
    if (e->ntk)
        enc = (EvalEncoder){e->m, NULL, e->work, e->mask};
    float *f = NULL;
    int32_t *y = NULL;
    if (eval_features(MPI_COMM_WORLD, &enc, s->path, TASK_TEST, e->batch, 0, &f, &y, n) != TD_OK)
        return NULL;
    free(y);
    return f;
}

static int serial(char **argv)
{
    const char *run = argv[0], *model = argv[1], *data = argv[2], *mode = argv[3];
    const char *task[2] = {argv[4], argv[5]};
    VitModel m;
    if (model_read(model, &m) != TD_OK)
        return FAIL("%s", td_error_message());
    int E = m.arch.out_dim;
    Enc e = {&m, strcmp(mode, "ntk") == 0, atoi(argv[6]), {NULL, NULL}, NULL, NULL};
    float *tau[2];
    unsigned char *mk[2];
    Side sd[2];
    char hp[700];
    snprintf(hp, sizeof hp, "%s/heads.h5", run);
    for (int i = 0; i < 2; i++) {
        tau[i] = calloc(m.table.total, sizeof(float));
        mk[i] = calloc((size_t)m.table.count, 1);
        if (study_tv_read(run, mode, task[i], &m, tau[i], mk[i]) != TD_OK)
            return FAIL("%s", td_error_message());
        e.tau[i] = tau[i];
        snprintf(sd[i].path, sizeof sd[i].path, "%s/%s.h5", data, task[i]);
        sd[i].head = read_head(hp, task[i], E, &sd[i].C);
        if (!sd[i].head)
            return FAIL("no head %s in %s", task[i], hp);
    }
    for (int k = 0; k < m.table.count; k++)
        mk[0][k] |= mk[1][k];
    e.mask = mk[0];
    e.work = calloc(m.table.total, sizeof(float));
    char g[600];
    snprintf(g, sizeof g, "/%s/disentangle/%s+%s", mode, task[0], task[1]);
    double *alpha, *pred, *repr, *pt, *rt;
    int nd;
    size_t d[4];
    char p[700];
    const char *nm[5] = {"alpha", "pred", "repr", "pred_terms", "repr_terms"};
    double **dst[5] = {&alpha, &pred, &repr, &pt, &rt};
    int n = 0, bad = 0, zero = -1;
    for (int k = 0; k < 5; k++) {
        snprintf(p, sizeof p, "%s/%s", g, nm[k]);
        if (results_grid_read(run, p, dst[k], &nd, d) != TD_OK)
            return FAIL("%s", td_error_message());
        if (k == 0)
            n = (int)d[0];
    }
    for (int k = 0; k < n; k++)
        if (alpha[k] == 0)
            zero = k;
    if (zero < 0)
        return FAIL("the grid has no alpha = 0: use an odd number of points");
    size_t nn = (size_t)n * n;
    double worst = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double xi_p = 0, xi_r = 0;
            int64_t nmin = INT64_MAX;
            int kk[2] = {i, j};
            for (int s = 0; s < 2; s++) {
                int64_t ns = 0, nj = 0;
                float a = (float)alpha[kk[s]];
                float *fs = features(&e, s == 0 ? a : 0.0f, s == 0 ? 0.0f : a, &sd[s], &ns);
                float *fj = features(&e, (float)alpha[i], (float)alpha[j], &sd[s], &nj);
                if (!fs || !fj || ns != nj || ns == 0)
                    return FAIL("features: %s", td_error_message());
                int64_t changed = 0;
                double kl = 0;
                for (int64_t x = 0; x < ns; x++) {
                    changed += argmax(fs + x * E, sd[s].head, sd[s].C, E) !=
                               argmax(fj + x * E, sd[s].head, sd[s].C, E);
                    kl += study_symkl(fj + x * E, fs + x * E, E, 100.0);
                }
                xi_p += (double)changed / (double)ns; /* over the images evaluated */
                nmin = ns < nmin ? ns : nmin;
                xi_r += kl / (double)ns;
                free(fs);
                free(fj);
            }
            size_t q = (size_t)i * n + j;
            double dp = fabs(pred[q] - xi_p), dr = fabs(repr[q] - xi_r) / (1 + xi_r);
            worst = fmax(worst, fmax(dp, dr));
            /* ntk runs through the linear surrogate (f0 + a1 J tau_1 + a2 J
             * tau_2 from one forward and two JVPs), the serial computation
             * through the linearised forward at each point: the same to
             * float rounding, which may flip an image at a near-tie */
            const double tol_p = e.ntk ? 2.0 / (double)nmin + 1e-12 : 1e-12; /* 1 per side */
            const double tol_r = e.ntk ? 1e-4 : 1e-9;
            if (dp > tol_p || dr > tol_r) {
                fprintf(stderr, "FAIL: xi(%g, %g): run pred %.6f repr %.6f, serial %.6f %.6f\n",
                        alpha[i], alpha[j], pred[q], repr[q], xi_p, xi_r);
                bad++;
            }
        }
    printf("%s %s+%s: %dx%d grid equals the serial computation (worst difference %.3g)\n", mode,
           task[0], task[1], n, n, worst);
    size_t q0 = (size_t)zero * n + zero;
    if (pred[q0] != 0 || repr[q0] != 0)
        bad += FAIL("xi(0,0) = %g (pred), %g (repr), expected 0", pred[q0], repr[q0]);
    for (int i = 0; i < n; i++) { /* xi(a, 0): term 1 (task 1) is 0; xi(0, a): term 2 is 0 */
        size_t qa0 = (size_t)i * n + zero, q0a = (size_t)zero * n + i;
        if (pt[qa0] != 0 || rt[qa0] != 0 || pt[nn + q0a] != 0 || rt[nn + q0a] != 0)
            bad += FAIL("alpha %g: term 1 of xi(a,0) %g/%g, term 2 of xi(0,a) %g/%g, expected 0",
                        alpha[i], pt[qa0], rt[qa0], pt[nn + q0a], rt[nn + q0a]);
    }
    double off = 0;
    for (size_t q = 0; q < nn; q++)
        off += pred[q];
    if (!(off > 0))
        bad += FAIL("the whole grid is 0: the check above proves nothing");
    printf("xi(0,0) = 0, and the vanishing terms vanish: %s\n", bad ? "no" : "yes");
    for (int k = 0; k < 5; k++)
        free(*dst[k]);
    for (int i = 0; i < 2; i++) {
        free(tau[i]);
        free(mk[i]);
        free(sd[i].head);
    }
    free(e.work);
    model_free(&m);
    return bad != 0;
}

/* ---- rank-count independence ---- */

static int same(const char *ra, const char *rb)
{
    cJSON *a = NULL;
    if (results_load(ra, &a) != TD_OK)
        return FAIL("%s", td_error_message());
    const cJSON *modes = cJSON_GetObjectItem(a, "modes");
    int count = 0, bad = 0;
    const char *nm[5] = {"alpha", "pred", "repr", "pred_terms", "repr_terms"};
    for (const cJSON *m = modes ? modes->child : NULL; m; m = m->next) {
        const cJSON *dis = cJSON_GetObjectItem(m, "disentangle");
        for (const cJSON *pr = dis ? dis->child : NULL; pr; pr = pr->next) {
            const char *g = cJSON_GetObjectItem(pr, "grid")->valuestring;
            for (int k = 0; k < 5; k++) {
                char p[700];
                snprintf(p, sizeof p, "%s/%s", g, nm[k]);
                double *x = NULL, *y = NULL;
                int na, nb;
                size_t da[4], db[4];
                if (results_grid_read(ra, p, &x, &na, da) != TD_OK ||
                    results_grid_read(rb, p, &y, &nb, db) != TD_OK)
                    return FAIL("%s", td_error_message());
                size_t n = 1;
                for (int i = 0; i < na; i++)
                    n *= da[i];
                if (na != nb || memcmp(da, db, (size_t)na * sizeof *da) != 0 ||
                    memcmp(x, y, n * sizeof *x) != 0)
                    bad += FAIL("%s differs between %s and %s", p, ra, rb);
                count++;
                free(x);
                free(y);
            }
        }
    }
    cJSON_Delete(a);
    printf("%d grids compared, %d differ\n", count, bad);
    return bad || count == 0;
}

/* ---- kernel diagnostic ---- */

/* Mean Euclidean distance between the rows of a and b (n,E). */
static double mean_dist(const float *a, const float *b, int64_t n, int E)
{
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double s2 = 0;
        for (int k = 0; k < E; k++) {
            double d = (double)a[i * E + k] - b[i * E + k];
            s2 += d * d;
        }
        sum += sqrt(s2);
    }
    return n ? sum / (double)n : NAN;
}

/* kernel RUN MODEL DATA LIMIT: every modes.<mode>.kernel.<task> entry against
 * a serial recomputation here (f(theta0 + tau), f0 + J tau and f0 on LIMIT
 * evenly spaced test images, batch 64: the stage's batches when it ran on one
 * rank with eval.batch 64, so the features are the same bits), plus ranges
 * that make the numbers informative: for ntk (trained linearised) the
 * non-linear model must differ from the linearised one - disagreement and
 * feature gap above 0 - which the stage's old output (the linearised model
 * against itself, disagreement 0) fails. */
static int kernel(char **argv)
{
    const char *run = argv[0], *data = argv[2];
    int limit = atoi(argv[3]);
    VitModel m;
    if (model_read(argv[1], &m) != TD_OK)
        return FAIL("%s", td_error_message());
    int E = m.arch.out_dim;
    cJSON *a = NULL;
    if (results_load(run, &a) != TD_OK)
        return FAIL("%s", td_error_message());
    char hp[700];
    snprintf(hp, sizeof hp, "%s/heads.h5", run);
    float *tau = calloc(m.table.total, sizeof(float));
    float *theta = calloc(m.table.total, sizeof(float));
    unsigned char *mask = calloc((size_t)m.table.count, 1);
    const cJSON *modes = cJSON_GetObjectItem(a, "modes");
    int bad = 0, ntk = 0, ntk_differs = 0, attn_differs = 0, attn = 0;
    for (const cJSON *mo = modes ? modes->child : NULL; mo; mo = mo->next) {
        const cJSON *k = cJSON_GetObjectItem(mo, "kernel");
        int is_ntk = strcmp(mo->string, "ntk") == 0;
        for (const cJSON *t = k ? k->child : NULL; t; t = t->next) {
            const char *names[6] = {"acc_nonlinear", "acc_linearised", "disagreement",
                                    "feature_gap", "feature_shift", "images"};
            double v[6];
            for (int i = 0; i < 6; i++) {
                const cJSON *x = cJSON_GetObjectItem(t, names[i]);
                v[i] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
                if (!isfinite(v[i]))
                    bad += FAIL("%s/%s: %s missing or not finite", mo->string, t->string, names[i]);
            }
            const cJSON *tr = cJSON_GetObjectItem(t, "trained");
            const char *want_tr = is_ntk ? "linearised" : "non-linear";
            if (!cJSON_IsString(tr) || strcmp(tr->valuestring, want_tr) != 0)
                bad += FAIL("%s/%s: trained is not \"%s\"", mo->string, t->string, want_tr);
            /* the serial recomputation */
            if (study_tv_read(run, mo->string, t->string, &m, tau, mask) != TD_OK)
                return FAIL("%s", td_error_message());
            for (size_t e = 0; e < m.table.total; e++)
                theta[e] = m.params[e] + tau[e];
            Side sd;
            snprintf(sd.path, sizeof sd.path, "%s/%s.h5", data, t->string);
            sd.head = read_head(hp, t->string, E, &sd.C);
            if (!sd.head)
                return FAIL("no head %s in %s", t->string, hp);
            EvalEncoder enc[3] = {{&m, theta, NULL, NULL}, {&m, NULL, tau, mask},
                                  {&m, NULL, NULL, NULL}};
            float *f[3] = {NULL, NULL, NULL};
            int32_t *y[3] = {NULL, NULL, NULL};
            int64_t n[3] = {0, 0, 0};
            for (int i = 0; i < 3; i++)
                if (eval_features(MPI_COMM_WORLD, &enc[i], sd.path, TASK_TEST, 64, limit, &f[i],
                                  &y[i], &n[i]) != TD_OK)
                    return FAIL("%s", td_error_message());
            int64_t hit[2] = {0, 0}, dis = 0;
            for (int64_t i = 0; i < n[0]; i++) {
                int pn = argmax(f[0] + i * E, sd.head, sd.C, E);
                int pl = argmax(f[1] + i * E, sd.head, sd.C, E);
                hit[0] += pn == y[0][i];
                hit[1] += pl == y[0][i];
                dis += pn != pl;
            }
            double w[6] = {(double)hit[0] / n[0], (double)hit[1] / n[0], (double)dis / n[0],
                           mean_dist(f[0], f[1], n[0], E), mean_dist(f[1], f[2], n[0], E),
                           (double)n[0]};
            printf("%s/%s: f(theta0+tau) %.4f, f0+J tau %.4f, disagreement %.4f, feature gap "
                   "%.5f, shift %.5f, %g images; recomputed %.4f %.4f %.4f %.5f %.5f %g\n",
                   mo->string, t->string, v[0], v[1], v[2], v[3], v[4], v[5], w[0], w[1], w[2],
                   w[3], w[4], w[5]);
            /* counts exactly; the distances to float precision (this
             * process's features may differ from the stage's in the last
             * bits, e.g. by BLAS thread count) */
            for (int i = 0; i < 6; i++)
                if (!(fabs(v[i] - w[i]) <= (i == 3 || i == 4 ? 1e-6 * (1 + w[i]) : 0)))
                    bad += FAIL("%s/%s: %s is %.17g, recomputed %.17g", mo->string, t->string,
                                names[i], v[i], w[i]);
            /* ranges: accuracies and disagreement are fractions, features unit vectors, and
             * two models' accuracies differ by at most the fraction they disagree on */
            if (!(v[0] >= 0 && v[0] <= 1 && v[1] >= 0 && v[1] <= 1 && v[2] >= 0 && v[2] <= 1 &&
                  v[3] >= 0 && v[3] <= 2 && v[4] >= 0 && v[4] <= 2 && v[5] > 0))
                bad += FAIL("%s/%s: a value out of its range", mo->string, t->string);
            if (!(fabs(v[0] - v[1]) <= v[2] + 1e-12))
                bad += FAIL("%s/%s: accuracies differ by more than the disagreement", mo->string,
                            t->string);
            if (!(v[4] > 0))
                bad += FAIL("%s/%s: the linearised model did not move the features", mo->string,
                            t->string);
            if (is_ntk) {
                ntk++;
                if (!(v[3] > 0))
                    bad += FAIL("ntk/%s: f(theta0 + tau) equals f0 + J tau: the non-linear model "
                                "was not evaluated",
                                t->string);
                ntk_differs += v[2] > 0;
            } else if (strcmp(mo->string, "attn") == 0) {
                attn++;
                attn_differs += v[2] > 0 && v[0] != v[1];
            }
            for (int i = 0; i < 3; i++) {
                free(f[i]);
                free(y[i]);
            }
            free(sd.head);
        }
    }
    cJSON_Delete(a);
    free(tau);
    free(theta);
    free(mask);
    model_free(&m);
    if (!ntk || !attn)
        bad += FAIL("expected kernel results for ntk and attn");
    if (!ntk_differs)
        bad += FAIL("ntk: no task where f(theta0 + tau) and f0 + J tau disagree (large lr run)");
    if (!attn_differs)
        bad += FAIL("attn: no task where the model and f0 + J tau differ (large lr run)");
    return bad != 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = 2;
    if (argc == 2 && strcmp(argv[1], "symkl") == 0)
        rc = symkl();
    else if (argc == 10 && strcmp(argv[1], "serial") == 0) {
        g_rt.micro_batch = atoi(argv[9]); /* the same passes as the run's */
        rc = serial(argv + 2);
    }
    else if (argc == 4 && strcmp(argv[1], "same") == 0)
        rc = same(argv[2], argv[3]);
    else if (argc == 6 && strcmp(argv[1], "kernel") == 0)
        rc = kernel(argv + 2);
    else
        fprintf(stderr, "usage: see tests/test_study.c\n");
    MPI_Finalize();
    return rc;
}
