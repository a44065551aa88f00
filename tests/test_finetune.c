/* Helper of tests/finetune.cmake: tiny data, and checks of task-vector files.
 *   test_finetune gen DIR                      two tiny tasks: DIR/quad.h5, DIR/stripes.h5
 *   test_finetune same A.h5 B.h5 TOL            every tensor of every task equal to TOL
 *                                               (relative L2 of the difference)
 *   test_finetune attn TV.h5 MODEL.h5           exactly the attention weights, non-zero
 *   test_finetune ntk TV.h5 MODEL.h5 HEADS.h5 DATA_DIR
 *                                               linearised accuracy = the reported one
 *   test_finetune heads TV.h5 TRAINED.h5 INITIAL.h5 MODEL.h5 DATA_DIR
 *                                               trained heads (finetune.train_heads): the
 *                                               heads.h layout, different from the initial
 *                                               ones, named by TV.h5, and the reported
 *                                               accuracy is the trained heads'
 *   test_finetune smoothing                     vit_head_loss with label smoothing = a
 *                                               hand-computed value
 *   test_finetune loss_differs A.h5 B.h5        every task's final_loss differs
 *   test_finetune same_heads A.h5 B.h5 TOL      every head of two heads files equal to TOL
 * Exit status 0 = the claim holds; every failure prints why. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evaluate.h"
#include "model_io.h"
#include "rng.h"
#include "task_io.h"
#include "trainable.h"
#include "vit.h"

#define FAIL(...) (fprintf(stderr, "FAIL: " __VA_ARGS__), fprintf(stderr, "\n"), 1)

/* quad: a bright square in one of 4 quadrants; stripes: 3 orientations. */
static void draw(int kind, int label, TdRng *r, uint8_t *img)
{
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            double v = 40 + 30 * rng_uniform(r);
            if (kind == 0) {
                int qy = label / 2, qx = label % 2;
                if (y / 8 == qy && x / 8 == qx && y % 8 > 1 && x % 8 > 1)
                    v += 150;
            } else {
                int ph = (int)rng_below(r, 4);
                int c = label == 0 ? y : label == 1 ? x : x + y;
                if ((c + ph) % 4 < 2)
                    v += 150;
            }
            img[y * 16 + x] = (uint8_t)(v > 255 ? 255 : v);
        }
}

static int gen(const char *dir)
{
    const char *names[2] = {"quad", "stripes"};
    int K[2] = {4, 3};
    int64_t n[3] = {160, 40, 64};
    for (int k = 0; k < 2; k++) {
        TaskData t;
        if (task_init(&t, names[k], "test_finetune gen", 7, 16, 16, 1, K[k]) != TD_OK)
            return FAIL("task_init: %s", td_error_message());
        TdRng r;
        rng_seed(&r, rng_derive(11, (uint64_t)k, 0));
        for (int s = 0; s < 3; s++) {
            if (task_split_alloc(&t, s, n[s]) != TD_OK)
                return FAIL("alloc");
            for (int64_t i = 0; i < n[s]; i++) {
                int lab = (int)(i % K[k]);
                t.split[s].labels[i] = lab;
                draw(k, lab, &r, t.split[s].images + i * 256);
            }
        }
        char path[600];
        snprintf(path, sizeof path, "%s/%s.h5", dir, names[k]);
        if (task_write(path, &t) != TD_OK)
            return FAIL("task_write %s: %s", path, td_error_message());
        task_free(&t);
    }
    return 0;
}

typedef struct {
    int n;
    char name[256][128];
} Names;

static herr_t collect(hid_t g, const char *name, const H5L_info_t *i, void *op)
{
    Names *l = op;
    if (l->n < 256)
        snprintf(l->name[l->n++], 128, "%s", name);
    return 0;
}

static void list(hid_t g, Names *l)
{
    l->n = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, l);
}

/* Reads dataset path of f into a malloc'd buffer; *n elements. */
static float *read_ds(hid_t f, const char *path, size_t *n)
{
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d < 0)
        return NULL;
    hid_t sp = H5Dget_space(d);
    *n = (size_t)H5Sget_simple_extent_npoints(sp);
    float *v = malloc(*n * sizeof *v + 1);
    H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    H5Sclose(sp);
    H5Dclose(d);
    return v;
}

static double read_attr(hid_t o, const char *name)
{
    double v = NAN;
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a >= 0) {
        H5Aread(a, H5T_NATIVE_DOUBLE, &v);
        H5Aclose(a);
    }
    return v;
}

static int same(const char *pa, const char *pb, double tol)
{
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0)
        return FAIL("cannot open %s or %s", pa, pb);
    Names tasks, ta, tb;
    list(a, &tasks);
    list(b, &tb);
    if (tasks.n != tb.n || tasks.n == 0)
        return FAIL("%s has %d tasks, %s %d", pa, tasks.n, pb, tb.n);
    int bad = 0, count = 0;
    double worst = 0;
    for (int t = 0; t < tasks.n; t++) {
        hid_t ga = H5Gopen2(a, tasks.name[t], H5P_DEFAULT), gb = H5Gopen2(b, tasks.name[t], H5P_DEFAULT);
        if (gb < 0)
            return FAIL("%s: no task %s", pb, tasks.name[t]);
        list(ga, &ta);
        list(gb, &tb);
        if (ta.n != tb.n || ta.n == 0)
            return FAIL("task %s: %d vs %d tensors", tasks.name[t], ta.n, tb.n);
        for (int i = 0; i < ta.n; i++) {
            size_t na = 0, nb = 0;
            float *va = read_ds(ga, ta.name[i], &na), *vb = read_ds(gb, ta.name[i], &nb);
            if (!va || !vb || na != nb)
                return FAIL("%s/%s missing or of another size", tasks.name[t], ta.name[i]);
            /* tol 0: the same bits, every entry (the step's gradient is an exact
             * sum over micro-batches: dist/stages/train_step.h), the key bias included,
             * whose gradient is pure rounding (zero in exact arithmetic: softmax
             * ignores a constant per query) and differs with any change of
             * reduction order. tol > 0: relative L2 difference, key bias
             * reported only. */
            size_t k0 = na, k1 = na, differ = 0;
            if (tol > 0 && strstr(ta.name[i], "attn.in_proj_bias"))
                k0 = na / 3, k1 = 2 * na / 3;
            double d2 = 0, n2 = 0, kd2 = 0, kn2 = 0;
            for (size_t k = 0; k < na; k++) {
                double d = ((double)va[k] - vb[k]) * ((double)va[k] - vb[k]);
                double q = (double)va[k] * va[k];
                differ += memcmp(&va[k], &vb[k], sizeof va[k]) != 0;
                if (k >= k0 && k < k1) {
                    kd2 += d;
                    kn2 += q;
                    continue;
                }
                d2 += d;
                n2 += q;
            }
            if (k1 > k0)
                printf("%s/%s: key bias (not checked) relative difference %.3g, norm %.3g\n",
                       tasks.name[t], ta.name[i], sqrt(kd2) / (sqrt(kn2) + 1e-30), sqrt(kn2));
            double rel = sqrt(d2) / (sqrt(n2) + 1e-30);
            if (rel > worst)
                worst = rel;
            if ((tol > 0 ? !(rel <= tol) : differ != 0) || n2 == 0) {
                fprintf(stderr, "FAIL: %s/%s: %zu of %zu values differ, relative difference %.3g "
                        "(norm %.3g)\n", tasks.name[t], ta.name[i], differ, na, rel, sqrt(n2));
                bad++;
            }
            count++;
            free(va);
            free(vb);
        }
        H5Gclose(ga);
        H5Gclose(gb);
    }
    printf("%d tensors in %d tasks, worst relative difference %.3g (%s)\n", count, tasks.n,
           worst, tol > 0 ? "tolerance given" : "every value must be the same bits");
    H5Fclose(a);
    H5Fclose(b);
    return bad ? 1 : 0;
}

static int attn_only(const char *tvp, const char *modelp)
{
    VitModel m;
    if (model_read(modelp, &m) != TD_OK)
        return FAIL("%s", td_error_message());
    unsigned char *mask = calloc((size_t)m.table.count, 1);
    trainable_mask(&m.table, "attn", mask);
    hid_t f = H5Fopen(tvp, H5F_ACC_RDONLY, H5P_DEFAULT);
    Names tasks, tn;
    list(f, &tasks);
    int bad = 0;
    for (int t = 0; t < tasks.n; t++) {
        hid_t g = H5Gopen2(f, tasks.name[t], H5P_DEFAULT);
        list(g, &tn);
        int expected = 0;
        for (int i = 0; i < m.table.count; i++) {
            int in_file = 0;
            for (int k = 0; k < tn.n; k++)
                in_file |= strcmp(tn.name[k], m.table.info[i].name) == 0;
            const char *nm = m.table.info[i].name;
            int is_attn = strstr(nm, "attn.in_proj_weight") || strstr(nm, "attn.out_proj.weight");
            if (is_attn != mask[i] || in_file != mask[i]) {
                fprintf(stderr, "FAIL: %s: tensor %s in file %d, attention weight %d\n",
                        tasks.name[t], nm, in_file, is_attn);
                bad++;
            }
            expected += mask[i];
            if (in_file) {
                size_t n = 0;
                float *v = read_ds(g, nm, &n);
                double s = 0;
                for (size_t k = 0; k < n; k++)
                    s += fabs(v[k]);
                if (n != m.table.info[i].numel || !(s > 0)) {
                    fprintf(stderr, "FAIL: %s/%s: %zu elements, sum |tau| %g\n", tasks.name[t],
                            nm, n, s);
                    bad++;
                }
                free(v);
            }
        }
        if (tn.n != expected) {
            fprintf(stderr, "FAIL: %s: %d tensors, expected %d\n", tasks.name[t], tn.n, expected);
            bad++;
        }
        printf("%s: %d tensors, all attention weights, all non-zero: %s\n", tasks.name[t], tn.n,
               bad ? "no" : "yes");
        H5Gclose(g);
    }
    H5Fclose(f);
    free(mask);
    model_free(&m);
    return bad || tasks.n == 0;
}

static int ntk_check(const char *tvp, const char *modelp, const char *headsp, const char *dir)
{
    VitModel m;
    if (model_read(modelp, &m) != TD_OK)
        return FAIL("%s", td_error_message());
    float *delta = calloc(m.table.total, sizeof *delta);
    unsigned char *mask = calloc((size_t)m.table.count, 1);
    hid_t f = H5Fopen(tvp, H5F_ACC_RDONLY, H5P_DEFAULT), hf = H5Fopen(headsp, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0 || hf < 0)
        return FAIL("cannot open %s or %s", tvp, headsp);
    Names tasks;
    list(f, &tasks);
    int bad = 0;
    for (int t = 0; t < tasks.n; t++) {
        hid_t g = H5Gopen2(f, tasks.name[t], H5P_DEFAULT);
        memset(mask, 0, (size_t)m.table.count);
        memset(delta, 0, m.table.total * sizeof *delta);
        for (int i = 0; i < m.table.count; i++) {
            size_t n = 0;
            float *v = NULL;
            H5E_BEGIN_TRY { v = read_ds(g, m.table.info[i].name, &n); } H5E_END_TRY;
            if (!v)
                continue;
            memcpy(delta + m.table.info[i].offset, v, n * sizeof *v);
            mask[i] = 1;
            free(v);
        }
        size_t hn = 0;
        float *head = read_ds(hf, tasks.name[t], &hn);
        char path[600];
        snprintf(path, sizeof path, "%s/%s.h5", dir, tasks.name[t]);
        EvalEncoder enc = {&m, NULL, delta, mask};
        int C = (int)(hn / (size_t)m.arch.out_dim);
        const char *split_attr[2] = {"acc_val", "acc_test"};
        int splits[2] = {TASK_VAL, TASK_TEST};
        for (int s = 0; s < 2; s++) {
            double acc = -1, rep = read_attr(g, split_attr[s]);
            if (eval_accuracy(MPI_COMM_WORLD, &enc, path, splits[s], 64, 0, head, C, &acc) != TD_OK)
                return FAIL("%s", td_error_message());
            /* the same arithmetic up to BLAS blocking: at most one image may flip */
            int ok = fabs(acc - rep) <= 1.0 / 40 + 1e-9;
            printf("%s %s: linearised accuracy %.4f, reported %.4f: %s\n", tasks.name[t],
                   split_attr[s], acc, rep, ok ? "ok" : "MISMATCH");
            bad += !ok;
        }
        free(head);
        H5Gclose(g);
    }
    H5Fclose(f);
    H5Fclose(hf);
    free(delta);
    free(mask);
    model_free(&m);
    return bad || tasks.n == 0;
}

static int read_str_attr(hid_t o, const char *name, char *buf, size_t n)
{
    buf[0] = 0;
    hid_t a = -1;
    H5E_BEGIN_TRY { a = H5Aopen(o, name, H5P_DEFAULT); } H5E_END_TRY;
    if (a < 0)
        return -1;
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, n);
    herr_t e = H5Aread(a, ty, buf);
    buf[n - 1] = 0;
    H5Tclose(ty);
    H5Aclose(a);
    return e < 0 ? -1 : 0;
}

static int heads_check(const char *tvp, const char *trainedp, const char *initp,
                       const char *modelp, const char *dir)
{
    VitModel m;
    if (model_read(modelp, &m) != TD_OK)
        return FAIL("%s", td_error_message());
    hid_t f = H5Fopen(tvp, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t hf = H5Fopen(trainedp, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t hi = H5Fopen(initp, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0 || hf < 0 || hi < 0)
        return FAIL("cannot open %s, %s or %s", tvp, trainedp, initp);
    int bad = 0;
    char mode[64], fmt[64], src[96], want[128], name[128], ck[128], ck0[128];
    read_str_attr(f, "mode", mode, sizeof mode);
    read_str_attr(f, "heads_file", name, sizeof name);
    const char *base = strrchr(trainedp, '/');
    base = base ? base + 1 : trainedp;
    if (read_attr(f, "train_heads") != 1 || strcmp(name, base) != 0)
        bad += FAIL("%s: train_heads %g, heads_file '%s' (expected 1, '%s')", tvp,
                    read_attr(f, "train_heads"), name, base);
    read_str_attr(hf, "format", fmt, sizeof fmt);
    read_str_attr(hf, "source", src, sizeof src);
    read_str_attr(hf, "base_checksum", ck, sizeof ck);
    read_str_attr(hi, "base_checksum", ck0, sizeof ck0);
    snprintf(want, sizeof want, "finetuned:%s", mode);
    if (strcmp(fmt, "tadist-heads-1") != 0 || strcmp(src, want) != 0 || strcmp(ck, ck0) != 0 ||
        strcmp(ck, m.checksum) != 0 || !(read_attr(hf, "logit_scale") == read_attr(hi, "logit_scale")))
        bad += FAIL("%s: format '%s', source '%s' (want '%s'), base_checksum '%s' (model '%s'), "
                    "logit_scale %g",
                    trainedp, fmt, src, want, ck, m.checksum, read_attr(hf, "logit_scale"));
    unsigned char *mask = calloc((size_t)m.table.count, 1);
    float *theta = malloc(m.table.total * sizeof *theta);
    Names tasks, th;
    list(f, &tasks);
    list(hf, &th);
    if (th.n != tasks.n || tasks.n == 0)
        bad += FAIL("%s: %d heads for %d tasks", trainedp, th.n, tasks.n);
    for (int t = 0; t < tasks.n; t++) {
        hid_t g = H5Gopen2(f, tasks.name[t], H5P_DEFAULT);
        memcpy(theta, m.params, m.table.total * sizeof *theta);
        for (int i = 0; i < m.table.count; i++) {
            size_t n = 0;
            float *v = NULL;
            H5E_BEGIN_TRY { v = read_ds(g, m.table.info[i].name, &n); } H5E_END_TRY;
            if (!v)
                continue;
            for (size_t k = 0; k < n; k++)
                theta[m.table.info[i].offset + k] += v[k];
            free(v);
        }
        size_t hn = 0, hn0 = 0;
        float *head = NULL, *head0 = NULL;
        H5E_BEGIN_TRY { head = read_ds(hf, tasks.name[t], &hn); } H5E_END_TRY;
        head0 = read_ds(hi, tasks.name[t], &hn0);
        if (!head || !head0 || hn != hn0) {
            bad += FAIL("%s: head missing or of another size", tasks.name[t]);
            continue;
        }
        hid_t d = H5Dopen2(hf, tasks.name[t], H5P_DEFAULT);
        hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
        hsize_t dims[2] = {0, 0};
        int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
        int f32 = H5Tequal(ty, H5T_IEEE_F32LE) > 0;
        H5Tclose(ty), H5Sclose(sp), H5Dclose(d);
        int C = (int)(hn / (size_t)m.arch.out_dim);
        if (nd != 2 || !f32 || dims[0] != (hsize_t)C || dims[1] != (hsize_t)m.arch.out_dim)
            bad += FAIL("%s: head is not float32 [C, %d]", tasks.name[t], m.arch.out_dim);
        double d2 = 0, n2 = 0;
        for (size_t k = 0; k < hn; k++) {
            d2 += ((double)head[k] - head0[k]) * ((double)head[k] - head0[k]);
            n2 += (double)head0[k] * head0[k];
        }
        printf("%s: trained head [%d, %d], relative change %.3g from the initial head\n",
               tasks.name[t], C, m.arch.out_dim, sqrt(d2 / (n2 + 1e-30)));
        if (!(d2 > 0))
            bad += FAIL("%s: trained head equals the initial head", tasks.name[t]);
        char path[600];
        snprintf(path, sizeof path, "%s/%s.h5", dir, tasks.name[t]);
        EvalEncoder enc = {&m, theta, NULL, NULL};
        const char *split_attr[2] = {"acc_val", "acc_test"};
        int splits[2] = {TASK_VAL, TASK_TEST};
        for (int s = 0; s < 2; s++) {
            double acc = -1, rep = read_attr(g, split_attr[s]);
            if (eval_accuracy(MPI_COMM_WORLD, &enc, path, splits[s], 64, 0, head, C, &acc) != TD_OK)
                return FAIL("%s", td_error_message());
            int ok = fabs(acc - rep) <= 1.0 / 40 + 1e-9;
            printf("%s %s with the trained head: %.4f, reported %.4f: %s\n", tasks.name[t],
                   split_attr[s], acc, rep, ok ? "ok" : "MISMATCH");
            bad += !ok;
        }
        free(head);
        free(head0);
        H5Gclose(g);
    }
    free(mask);
    free(theta);
    H5Fclose(f);
    H5Fclose(hf);
    H5Fclose(hi);
    model_free(&m);
    return bad ? 1 : 0;
}

/* B = 2, E = 2, C = 3, scale 2: features (1,0), (0,1); head rows (1,0), (0,1),
 * (0,0); labels 0, 2. Logits (2,0,0) and (0,2,0); lse = log(e^2 + 2) for both.
 * Targets (1-eps) onehot + eps/3, eps = 0.1:
 *   loss = lse - ((0.9 + 0.1/3)*2 + (0.1/3)*2) / 2 = lse - 0.96667 = 1.2728781
 *   without smoothing lse - (2 + 0) / 2 = 1.2395448 */
static int smoothing_check(void)
{
    VitHead h;
    if (vit_head_alloc(&h, 2, 2, 3) != TD_OK)
        return FAIL("%s", td_error_message());
    const float emb[4] = {3, 0, 0, 0.5f}, head[6] = {1, 0, 0, 1, 0, 0};
    const int y[2] = {0, 2};
    float de[4], dh[6] = {0};
    double l0 = vit_head_loss(&h, emb, head, 2.0f, y, 2, 3, NULL, de, dh);
    h.smoothing = 0.1f;
    double l1 = vit_head_loss(&h, emb, head, 2.0f, y, 2, 3, NULL, de, dh);
    vit_head_free(&h);
    const double w0 = 1.239544766221885, w1 = 1.272878099555218;
    printf("loss without smoothing %.9f (hand %.9f), with 0.1: %.9f (hand %.9f)\n", l0, w0, l1,
           w1);
    return fabs(l0 - w0) < 1e-6 && fabs(l1 - w1) < 1e-6 ? 0 : 1;
}

static int same_heads(const char *pa, const char *pb, double tol)
{
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0)
        return FAIL("cannot open %s or %s", pa, pb);
    Names ta, tb;
    list(a, &ta);
    list(b, &tb);
    int bad = ta.n == 0 || ta.n != tb.n;
    for (int t = 0; t < ta.n; t++) {
        size_t na = 0, nb = 0;
        float *va = read_ds(a, ta.name[t], &na), *vb = NULL;
        H5E_BEGIN_TRY { vb = read_ds(b, ta.name[t], &nb); } H5E_END_TRY;
        if (!va || !vb || na != nb)
            return FAIL("head %s missing or of another size", ta.name[t]);
        double d2 = 0, n2 = 0;
        for (size_t k = 0; k < na; k++) {
            d2 += ((double)va[k] - vb[k]) * ((double)va[k] - vb[k]);
            n2 += (double)va[k] * va[k];
        }
        double rel = sqrt(d2) / (sqrt(n2) + 1e-30);
        printf("head %s: relative difference %.3g (tolerance %.3g)\n", ta.name[t], rel, tol);
        bad += !(rel <= tol);
        free(va);
        free(vb);
    }
    H5Fclose(a);
    H5Fclose(b);
    return bad ? 1 : 0;
}

static int loss_differs(const char *pa, const char *pb)
{
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0)
        return FAIL("cannot open %s or %s", pa, pb);
    Names tasks;
    list(a, &tasks);
    int bad = tasks.n == 0;
    for (int t = 0; t < tasks.n; t++) {
        hid_t ga = H5Gopen2(a, tasks.name[t], H5P_DEFAULT), gb = -1;
        H5E_BEGIN_TRY { gb = H5Gopen2(b, tasks.name[t], H5P_DEFAULT); } H5E_END_TRY;
        if (gb < 0)
            return FAIL("%s: no task %s", pb, tasks.name[t]);
        double la = read_attr(ga, "final_loss"), lb = read_attr(gb, "final_loss");
        int ok = isfinite(la) && isfinite(lb) && la != lb;
        printf("%s: final_loss %.6f vs %.6f: %s\n", tasks.name[t], la, lb,
               ok ? "different" : "SAME");
        bad += !ok;
        H5Gclose(ga);
        H5Gclose(gb);
    }
    H5Fclose(a);
    H5Fclose(b);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rc = 2;
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        rc = gen(argv[2]);
    else if (argc == 5 && strcmp(argv[1], "same") == 0)
        rc = same(argv[2], argv[3], atof(argv[4]));
    else if (argc == 4 && strcmp(argv[1], "attn") == 0)
        rc = attn_only(argv[2], argv[3]);
    else if (argc == 6 && strcmp(argv[1], "ntk") == 0)
        rc = ntk_check(argv[2], argv[3], argv[4], argv[5]);
    else if (argc == 7 && strcmp(argv[1], "heads") == 0)
        rc = heads_check(argv[2], argv[3], argv[4], argv[5], argv[6]);
    else if (argc == 2 && strcmp(argv[1], "smoothing") == 0)
        rc = smoothing_check();
    else if (argc == 5 && strcmp(argv[1], "same_heads") == 0)
        rc = same_heads(argv[2], argv[3], atof(argv[4]));
    else if (argc == 4 && strcmp(argv[1], "loss_differs") == 0)
        rc = loss_differs(argv[2], argv[3]);
    else
        fprintf(stderr, "usage: see tests/test_finetune.c\n");
    MPI_Finalize();
    return rc;
}
