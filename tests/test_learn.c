/* Learned merge coefficients (dist/stages/coef_learn.c), under mpirun:
 *
 *   test_learn fd CFG MODE METHOD STRUCTURE [--set key=value ...]
 *     The gradient of the AdaMerging objective (merge.adamerging.objective)
 *     at the coefficients c_k = 0.3 + 0.05 k, on step 0's batches, against
 *     central differences of the objective itself: (L(c + h e_k) -
 *     L(c - h e_k)) / 2h for every coefficient, h = 0.1. Passes when every
 *     component agrees within 2% of the largest |gradient| plus 5% of its
 *     own size. Measured on the tiny tasks: the objective (a float forward)
 *     has a rounding noise of about 5e-7, so smaller steps are worse (h =
 *     0.01 is 8% off on a val_ce coefficient, h = 0.1 1.3%, h = 0.2 1.2%);
 *     a wrong sign, scale or group misses by far more.
 *     Also: the objective and gradient are the same bits when recomputed.
 *
 *   test_learn sur-exact CFG MODE METHOD STRUCTURE [--set key=value ...]
 *     The linear surrogate (dist/stages/sur_data.c) against the linearised
 *     model: for three seeded random coefficient vectors in [0, 1], every val
 *     image's logits h (f0 + sum_j a_j J tau_j) from the stored JVPs, against
 *     h f_lin from vit_ntk_forward along theta0 + sum_j a_j tau_j itself.
 *     Passes when the largest difference is within 1e-5 of the largest
 *     logit (MODE ntk: exact; for attn/full it prints the first-order error).
 *
 *   test_learn same-coef RUN_A RUN_B MODE METHOD NAME
 *     results.json modes.MODE.coef_search.METHOD.NAME.coef of two runs are
 *     the same bits (and their traces in grids.h5).
 *
 *   test_learn same-values RUN_A RUN_B MODE METHOD NAME MIN TOL
 *     A black-box search's candidates (grids.h5 .../candidates) in the two
 *     runs, followed while they are the same bits (at least MIN: CMA-ES's
 *     first generation and BOBYQA's first interpolation points do not depend
 *     on the values), have per-task val values (.../values) within TOL
 *     relative: ntk candidates scored through the linear surrogate against
 *     the pool's linearised forwards (accuracies: TOL 0, the same images
 *     right; cross-entropies: float rounding).
 *
 *   test_learn close-model A.h5 B.h5 TOL THETA0.h5
 *     Two model files of one architecture whose parameters differ by at most
 *     TOL * (1 + |a|) each (tadist merge --search against --coef: rows
 *     combined in double against the collective merge), and both moved from
 *     THETA0 by more than 100 TOL somewhere. Prints the largest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coef_search.h"
#include "sur_data.h"
#include "task_loader.h"
#include "vit.h"
#include "results.h"

static int fail(const char *what)
{
    fprintf(stderr, "FAIL: %s: %s\n", what, td_error_message());
    return 1;
}

/* CFG MODE METHOD STRUCTURE [--set k=v ...]: the configuration, mode state,
 * merge rows and coefficient structure both checks start from; 0 when open. */
static int open_structure(int argc, char **argv, TdConfig *cfg, ModeRun *r, MergeSpec *spec,
                          CoefRun *cr)
{
    const char *cfgp = argv[0], *mode = argv[1], *method = argv[2], *structure = argv[3];
    CliList sets = {0};
    for (int i = 4; i + 1 < argc && sets.count < 64; i += 2)
        sets.items[sets.count++] = argv[i + 1];
    if (config_load(cfgp, &sets, cfg) != TD_OK)
        return fail("config");
    g_rt.micro_batch = cfg->blas.micro_batch;
    if (mode_open(r, cfg, mode) != TD_OK || mode_tasks(r) != TD_OK)
        return fail("mode_open");
    if (runtime_agree(g_rt.comm, merge_spec_from_config(cfg, method, &r->tv, spec)) != TD_OK)
        return fail("spec");
    if (coef_run_open(cr, r, method, spec) != TD_OK)
        return fail("rows");
    if (coef_space_init(&cr->cs, &r->m.table, r->tv.mask, coef_kind_from_name(structure),
                        r->ntasks) != TD_OK)
        return fail("space");
    return 0;
}

static int fd(int argc, char **argv)
{
    const char *mode = argv[1], *method = argv[2], *structure = argv[3];
    TdConfig cfg;
    ModeRun r;
    MergeSpec spec;
    CoefRun cr;
    CoefLearn *L = NULL;
    if (open_structure(argc, argv, &cfg, &r, &spec, &cr))
        return 1;
    if (coef_learn_open(&L, &cr) != TD_OK)
        return fail("open");
    const int K = cr.cs.K;
    double c[512], g[512], g2[512], l = 0, l2 = 0;
    if (K > 512)
        return fail("too many coefficients");
    for (int k = 0; k < K; k++)
        c[k] = 0.3 + 0.05 * k;
    if (coef_learn_objective(L, c, 0, &l, g) != TD_OK ||
        coef_learn_objective(L, c, 0, &l2, g2) != TD_OK)
        return fail("objective");
    int bad = 0;
    if (memcmp(&l, &l2, sizeof l) != 0 || memcmp(g, g2, (size_t)K * sizeof *g) != 0) {
        fprintf(stderr, "FAIL: the objective or its gradient changed when recomputed\n");
        bad = 1;
    }
    double gmax = 0;
    for (int k = 0; k < K; k++)
        gmax = fabs(g[k]) > gmax ? fabs(g[k]) : gmax;
    const double h = 0.1;
    for (int k = 0; k < K; k++) {
        double lp, lm, save = c[k];
        c[k] = save + h;
        if (coef_learn_objective(L, c, 0, &lp, NULL) != TD_OK)
            return fail("objective");
        c[k] = save - h;
        if (coef_learn_objective(L, c, 0, &lm, NULL) != TD_OK)
            return fail("objective");
        c[k] = save;
        double fdv = (lp - lm) / (2 * h), tol = 0.02 * gmax + 0.05 * fabs(g[k]);
        int ok = fabs(fdv - g[k]) <= tol;
        if (g_rt.rank == 0)
            printf("%s/%s/%s coefficient %2d: gradient % .6e, central difference % .6e%s\n",
                   mode, method, structure, k, g[k], fdv, ok ? "" : "  <- FAIL");
        bad |= !ok;
    }
    if (g_rt.rank == 0)
        printf("objective %.8f, largest |gradient| %.3e: %s\n", l, gmax, bad ? "FAIL" : "ok");
    coef_learn_close(L);
    coef_run_close(&cr);
    mode_free(&r);
    return bad;
}

/* The logits of every val image of task k under the linearised model along
 * r->tau (ntk) or the model theta0 + tau (else), unnormalised: z (n, C). */
static int direct_logits(ModeRun *r, int k, double *z, int64_t n)
{
    const VitArch *A = &r->m.arch;
    const int mb = g_rt.micro_batch, E = A->out_dim, S = A->image, C = r->classes[k];
    const size_t plane = (size_t)3 * S * S;
    LoaderOpts o = {r->paths[k], TASK_VAL, mb, S, 0, 0, 0, {0, 0}, r->cfg->eval.limit, mb};
    TaskLoader L;
    VitWork w;
    if (loader_open(&L, MPI_COMM_SELF, &o) != TD_OK ||
        vit_work_alloc(&w, A, &r->m.table, mb) != TD_OK)
        return fail("loader");
    float *x = calloc((size_t)mb * plane, sizeof *x), *emb = calloc((size_t)mb * E, sizeof *emb);
    float *theta = malloc(r->m.table.total * sizeof *theta);
    int32_t y[512];
    for (size_t i = 0; i < r->m.table.total; i++)
        theta[i] = r->m.params[i] + r->tau[i];
    int64_t at = 0;
    for (;;) {
        LoaderBatch b;
        if (loader_next(&L, x, y, &b) != TD_OK)
            return fail("loader_next");
        if (b.nglobal == 0)
            break;
        if (b.nlocal < mb)
            memset(x + (size_t)b.nlocal * plane, 0, (size_t)(mb - b.nlocal) * plane * sizeof *x);
        w.trainable = r->tv.mask;
        w.no_grad = 0;
        if (r->ntk)
            vit_ntk_forward(r->m.params, &w, r->tau, r->tv.mask, x, mb, emb, NULL);
        else
            vit_forward(theta, &w, x, mb, emb);
        for (int i = 0; i < b.nlocal && at < n; i++, at++)
            for (int c = 0; c < C; c++) {
                double s = 0;
                for (int e = 0; e < E; e++)
                    s += (double)emb[(size_t)i * E + e] * r->head[k][(size_t)c * E + e];
                z[at * C + c] = s;
            }
    }
    loader_close(&L);
    vit_work_free(&w);
    free(x), free(emb), free(theta);
    return at == n ? 0 : fail("image count");
}

static int sur_exact(int argc, char **argv)
{
    const char *mode = argv[1], *method = argv[2], *structure = argv[3];
    TdConfig cfg;
    ModeRun r;
    MergeSpec spec;
    CoefRun cr;
    if (open_structure(argc, argv, &cfg, &r, &spec, &cr))
        return fail("open");
    SurData d;
    char tag[200];
    snprintf(tag, sizeof tag, "test_%s_%s_%s", mode, method, structure);
    if (sur_data_get(&r, &cr.cs, cr.rows, NULL, 0, TASK_VAL, cfg.eval.limit, tag, &d) != TD_OK)
        return fail("surrogate");
    const int K = cr.cs.K;
    double c[512], worst = 0, zmax = 0;
    uint64_t st = 12345;
    int bad = 0;
    for (int rep = 0; rep < 3 && !bad; rep++) {
        for (int j = 0; j < K; j++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            c[j] = (double)(st >> 11) / 9007199254740992.0;
        }
        coef_apply(&cr, c);
        for (int k = 0; k < r.ntasks && !bad; k++) {
            const int C = r.classes[k];
            const int64_t n = d.n[k];
            float *p = NULL;
            double *z = malloc((size_t)n * C * sizeof *z);
            if (!z || sur_data_project(&d, &cr.cs, k, r.head[k], C, &p) != TD_OK ||
                direct_logits(&r, k, z, n))
                return fail("logits");
            for (int64_t i = 0; i < n; i++)
                for (int q = 0; q < C; q++) {
                    const float *pi = p + (size_t)i * (1 + K) * C;
                    double zs = pi[q];
                    for (int j = 0; j < K; j++)
                        zs += c[j] * pi[(size_t)(1 + j) * C + q];
                    worst = fmax(worst, fabs(zs - z[i * C + q]));
                    zmax = fmax(zmax, fabs(z[i * C + q]));
                }
            free(p);
            free(z);
        }
    }
    double rel = worst / (zmax > 0 ? zmax : 1);
    if (g_rt.rank == 0)
        printf("%s/%s/%s: surrogate logits against the %s model: largest difference %.3g, "
               "largest logit %.3g, relative %.3g%s\n",
               mode, method, structure, r.ntk ? "linearised" : "merged", worst, zmax, rel,
               r.ntk ? (rel <= 1e-5 ? " (within 1e-5)" : " FAIL: above 1e-5") : "");
    bad = r.ntk && !(rel <= 1e-5);
    sur_data_free(&d);
    coef_run_close(&cr);
    mode_free(&r);
    return bad;
}

static int same_coef(char **a)
{
    const char *ra = a[0], *rb = a[1], *mode = a[2], *method = a[3], *name = a[4];
    cJSON *ja = NULL, *jb = NULL;
    if (results_load(ra, &ja) != TD_OK || results_load(rb, &jb) != TD_OK)
        return fail("results.json");
    const char *keys[] = {"modes", mode, "coef_search", method, name};
    const cJSON *oa = ja, *ob = jb;
    for (int i = 0; i < 5; i++) {
        oa = cJSON_GetObjectItemCaseSensitive(oa, keys[i]);
        ob = cJSON_GetObjectItemCaseSensitive(ob, keys[i]);
    }
    int bad = 0;
    if (!oa || !ob) {
        fprintf(stderr, "FAIL: modes.%s.coef_search.%s.%s missing in %s or %s\n", mode, method,
                name, ra, rb);
        bad = 1;
    } else {
        char *ca = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(oa, "coef"));
        char *cb = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(ob, "coef"));
        printf("%s\n%s\n", ca, cb);
        if (!ca || !cb || strcmp(ca, cb) != 0) {
            fprintf(stderr, "FAIL: the coefficients differ\n");
            bad = 1;
        }
        free(ca);
        free(cb);
        const cJSON *ga = cJSON_GetObjectItemCaseSensitive(oa, "grid");
        double *ta = NULL, *tb = NULL;
        int na, nb;
        size_t da[4], db[4];
        char p[600];
        snprintf(p, sizeof p, "%s/trace", cJSON_IsString(ga) ? ga->valuestring : "");
        if (results_grid_read(ra, p, &ta, &na, da) != TD_OK ||
            results_grid_read(rb, p, &tb, &nb, db) != TD_OK || da[0] != db[0] ||
            memcmp(ta, tb, da[0] * sizeof *ta) != 0) {
            fprintf(stderr, "FAIL: the traces %s differ\n", p);
            bad = 1;
        }
        free(ta);
        free(tb);
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return bad;
}

/* grids.h5 dataset name of modes.MODE.coef_search.METHOD.NAME in run, into buf. */
static int grid_of(const char *run, const char *mode, const char *method, const char *name,
                   const char *what, char *buf, size_t n)
{
    cJSON *j = NULL;
    if (results_load(run, &j) != TD_OK)
        return fail("results.json");
    const char *keys[] = {"modes", mode, "coef_search", method, name, "grid"};
    const cJSON *o = j;
    for (int i = 0; i < 6; i++)
        o = cJSON_GetObjectItemCaseSensitive(o, keys[i]);
    int bad = !cJSON_IsString(o);
    if (!bad)
        snprintf(buf, n, "%s/%s", o->valuestring, what);
    else
        fprintf(stderr, "FAIL: modes.%s.coef_search.%s.%s.grid missing in %s\n", mode, method,
                name, run);
    cJSON_Delete(j);
    return bad;
}

static int same_values(char **a)
{
    const char *ra = a[0], *rb = a[1];
    const int min = atoi(a[5]);
    const double tol = atof(a[6]);
    char pc[700], pv[700];
    double *ca = NULL, *cb = NULL, *va = NULL, *vb = NULL;
    int n1, n2;
    size_t dca[4], dcb[4], dva[4], dvb[4];
    if (grid_of(ra, a[2], a[3], a[4], "candidates", pc, sizeof pc) ||
        grid_of(ra, a[2], a[3], a[4], "values", pv, sizeof pv))
        return 1;
    if (results_grid_read(ra, pc, &ca, &n1, dca) != TD_OK ||
        results_grid_read(rb, pc, &cb, &n2, dcb) != TD_OK ||
        results_grid_read(ra, pv, &va, &n1, dva) != TD_OK ||
        results_grid_read(rb, pv, &vb, &n2, dvb) != TD_OK || dca[1] != dcb[1] ||
        dva[1] != dvb[1])
        return fail("grids.h5 candidates and values");
    const size_t K = dca[1], T = dva[1];
    size_t m = 0, lim = dca[0] < dcb[0] ? dca[0] : dcb[0];
    while (m < lim && memcmp(ca + m * K, cb + m * K, K * sizeof *ca) == 0)
        m++;
    double worst = 0;
    for (size_t i = 0; i < m * T; i++)
        worst = fmax(worst, fabs(va[i] - vb[i]) / fmax(fabs(va[i]), 1e-30));
    printf("%zu common candidate(s) of %zu coefficient(s), %zu task(s): largest value "
           "relative difference %.3g (tolerance %.3g)\n", m, K, T, worst, tol);
    int bad = (int)m < min || !(worst <= tol);
    if (bad)
        fprintf(stderr, "FAIL: want at least %d common candidates with the same values\n", min);
    free(ca), free(cb), free(va), free(vb);
    return bad;
}

static int close_model(char **a)
{
    VitModel x = {0}, y = {0};
    if (model_read(a[0], &x) != TD_OK || model_read(a[1], &y) != TD_OK)
        return fail("model");
    double tol = atof(a[2]), worst = 0;
    int bad = x.table.total != y.table.total;
    for (size_t i = 0; !bad && i < x.table.total; i++) {
        double d = fabs((double)x.params[i] - y.params[i]) / (1 + fabs((double)x.params[i]));
        worst = d > worst ? d : worst;
    }
    printf("largest relative difference %.3g (tolerance %.3g)\n", worst, tol);
    bad |= !(worst <= tol);
    double moved = 0; /* and the two are not theta0 itself: a[3] is theta0 */
    VitModel z = {0};
    if (model_read(a[3], &z) != TD_OK || z.table.total != x.table.total)
        return fail("theta0");
    for (size_t i = 0; i < x.table.total; i++)
        moved = fmax(moved, fabs((double)x.params[i] - z.params[i]));
    printf("largest change from theta0 %.3g\n", moved);
    bad |= !(moved > 100 * tol);
    model_free(&x), model_free(&y), model_free(&z);
    return bad;
}

int main(int argc, char **argv)
{
    runtime_init(&argc, &argv);
    int rc = 2;
    if (argc >= 6 && strcmp(argv[1], "fd") == 0 && (argc - 6) % 2 == 0)
        rc = fd(argc - 2, argv + 2);
    else if (argc >= 6 && strcmp(argv[1], "sur-exact") == 0 && (argc - 6) % 2 == 0)
        rc = sur_exact(argc - 2, argv + 2);
    else if (argc == 6 && strcmp(argv[1], "close-model") == 0)
        rc = close_model(argv + 2);
    else if (argc == 7 && strcmp(argv[1], "same-coef") == 0)
        rc = same_coef(argv + 2);
    else if (argc == 9 && strcmp(argv[1], "same-values") == 0)
        rc = same_values(argv + 2);
    else
        fprintf(stderr, "usage: see the comment at the top of tests/test_learn.c\n");
    MPI_Finalize();
    return rc;
}
