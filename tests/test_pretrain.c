/* Helper of tests/pretrain.cmake: checks of pre-trained model files.
 *   test_pretrain same A.h5 B.h5 TOL   same architecture, parameters equal to TOL
 *                                      (relative L2 of the difference over the whole
 *                                      model; the largest per-tensor one is printed:
 *                                      tensors whose true gradient is 0, like the key
 *                                      bias, get Adam steps of pure rounding noise);
 *                                      when A has a text tower, B has one and its
 *                                      parameters are equal to TOL too
 *   test_pretrain source A.h5 PREFIX   the model's source attribute starts with PREFIX
 *   test_pretrain loss LOG             in a tadist log, the summary line "pretrain: N
 *                                      steps ..., loss A -> B" has B < A and the last
 *                                      logged step's loss is below the first one's
 * Exit status 0 = the claim holds; every failure prints why. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_io.h"
#include "text_io.h"

#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fprintf(stderr, "\n"), 1)

/* Relative L2 distance of two parameter buffers of table t; the worst tensor's name. */
static double rel_diff(const ParamTable *t, const float *x, const float *y, const char **where,
                       double *worst)
{
    double dall = 0, nall = 0;
    *worst = 0;
    *where = "";
    for (int i = 0; i < t->count; i++) {
        const ParamInfo *p = &t->info[i];
        double d = 0, n = 0;
        for (size_t k = p->offset; k < p->offset + p->numel; k++) {
            d += ((double)x[k] - y[k]) * ((double)x[k] - y[k]);
            n += (double)x[k] * x[k];
        }
        dall += d, nall += n;
        double rel = sqrt(d) / (sqrt(n) + 1e-30);
        if (rel > *worst)
            *worst = rel, *where = p->name;
    }
    return sqrt(dall) / (sqrt(nall) + 1e-30);
}

static int same_text(const char *pa, const char *pb, double tol)
{
    TextModel a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (text_model_read(pa, &a) != TD_OK)
        return 0; /* no tower in A: nothing to compare */
    if (text_model_read(pb, &b) != TD_OK) {
        text_model_free(&a);
        return FAIL("%s has a text tower, %s none: %s", pa, pb, td_error_message());
    }
    int rc = 0;
    if (memcmp(&a.arch, &b.arch, sizeof a.arch) != 0)
        rc = FAIL("the text towers of %s and %s differ in architecture", pa, pb);
    else {
        const char *where;
        double worst, all = rel_diff(&a.table, a.params, b.params, &where, &worst);
        printf("text tower: relative difference %.3g (tolerance %.3g); largest per tensor %.3g "
               "(%s)\n",
               all, tol, worst, where);
        rc = all <= tol ? 0 : FAIL("the text tower of %s differs from %s's by %.3g", pa, pb, all);
    }
    text_model_free(&a);
    text_model_free(&b);
    return rc;
}

static int same(const char *pa, const char *pb, double tol)
{
    VitModel a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (model_read(pa, &a) != TD_OK || model_read(pb, &b) != TD_OK)
        return FAIL("cannot read %s or %s: %s", pa, pb, td_error_message());
    if (memcmp(&a.arch, &b.arch, sizeof a.arch) != 0 || a.table.count != b.table.count)
        return FAIL("%s and %s differ in architecture", pa, pb);
    const char *where;
    double worst, all = rel_diff(&a.table, a.params, b.params, &where, &worst);
    printf("relative difference %.3g over the model (tolerance %.3g); largest per tensor %.3g "
           "(%s)\n",
           all, tol, worst, where);
    int rc = all <= tol ? 0 : FAIL("%s differs from %s by %.3g", pa, pb, all);
    model_free(&a);
    model_free(&b);
    return rc ? rc : same_text(pa, pb, tol);
}

static int source(const char *path, const char *prefix)
{
    VitModel m;
    memset(&m, 0, sizeof m);
    if (model_read(path, &m) != TD_OK)
        return FAIL("cannot read %s: %s", path, td_error_message());
    printf("source: %s\n", m.source);
    int rc = strncmp(m.source, prefix, strlen(prefix)) == 0
                 ? 0 : FAIL("%s: source \"%s\" does not start with \"%s\"", path, m.source, prefix);
    model_free(&m);
    return rc;
}

/* The summary line, and the first and last logged step losses. */
static int loss(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return FAIL("cannot open %s", log);
    char line[1024];
    double a = NAN, b = NAN, first = NAN, last = NAN;
    int steps = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "pretrain step ");
        long s, n;
        double l;
        if (p && sscanf(p, "pretrain step %ld/%ld loss %lf", &s, &n, &l) == 3) {
            if (!steps++)
                first = l;
            last = l;
        }
        p = strstr(line, "pretrain: ");
        long k;
        double secs;
        if (p && sscanf(p, "pretrain: %ld steps in %lf s, loss %lf -> %lf", &k, &secs, &a, &b) == 4)
            break;
    }
    fclose(f);
    printf("loss %.4f -> %.4f; logged steps %d, first %.4f last %.4f\n", a, b, steps, first, last);
    if (!(b < a) || steps < 2 || !(last < first))
        return FAIL("%s: the pre-training loss did not go down", log);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc == 5 && strcmp(argv[1], "same") == 0)
        rc = same(argv[2], argv[3], atof(argv[4]));
    else if (argc == 4 && strcmp(argv[1], "source") == 0)
        rc = source(argv[2], argv[3]);
    else if (argc == 3 && strcmp(argv[1], "loss") == 0)
        rc = loss(argv[2]);
    else
        fprintf(stderr, "usage: see tests/test_pretrain.c\n");
    MPI_Finalize();
    return rc;
}
