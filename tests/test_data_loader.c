/* task_loader under mpirun (1, 2 and 4 ranks): the global batches - indices,
 * labels and preprocessed pixels - gathered from all ranks equal, bit for bit,
 * those one rank computes alone; eval batches equal image_preprocess of the
 * file's images in file order; training shuffles each epoch differently.
 * All collectives finish before any assertion, so a failure cannot hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "runtime.h"
#include "task_io.h"
#include "task_loader.h"

enum { N = 103, NT = 20, H = 9, W = 7, C = 3, K = 4, S = 12, B = 16, STEPS = 10 };
static char g_path[256];

static void make_file(void)
{
    snprintf(g_path, sizeof g_path, TADIST_TEST_OUT "/loader_np%d.h5", g_rt.size);
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        TaskData t;
        TdRng r;
        rng_seed(&r, 3);
        s = task_init(&t, "loader", "test", 1, H, W, C, K);
        if (s == TD_OK)
            s = task_split_alloc(&t, TASK_TRAIN, N);
        if (s == TD_OK)
            s = task_split_alloc(&t, TASK_TEST, NT);
        for (int sp = 0; sp < 3 && s == TD_OK; sp += 2)
            for (int64_t i = 0; i < t.split[sp].n; i++) {
                for (int p = 0; p < H * W * C; p++)
                    t.split[sp].images[i * H * W * C + p] = (uint8_t)rng_below(&r, 256);
                t.split[sp].labels[i] = (int32_t)(i % K);
            }
        if (s == TD_OK)
            s = task_write(g_path, &t);
        task_free(&t);
    }
    assert_int_equal(runtime_agree(MPI_COMM_WORLD, s), TD_OK);
}

typedef struct {
    int n;
    int64_t idx[B];
    int32_t y[B];
    float x[B * 3 * S * S];
} Global;

/* Runs `steps` batches on comm and gathers each global batch on its rank 0. */
static TdStatus run_loader(MPI_Comm comm, const LoaderOpts *o, int steps, Global *g)
{
    TaskLoader L;
    TD_TRY(loader_open(&L, comm, o));
    int rank, size, plane = 3 * S * S;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    float *x = malloc(sizeof(float) * (size_t)(loader_local_max(&L) * plane));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)loader_local_max(&L));
    int *cnt = calloc((size_t)size, sizeof(int)), *dsp = calloc((size_t)size, sizeof(int));
    TdStatus s = TD_OK;
    for (int st = 0; st < steps; st++) {
        LoaderBatch b;
        s = runtime_agree(comm, loader_next(&L, x, y, &b));
        if (s != TD_OK)
            break;
        g[st].n = b.nglobal;
        if (b.nglobal > 0) /* the end of an eval pass has no indices (NULL) */
            memcpy(g[st].idx, b.indices, sizeof(int64_t) * (size_t)b.nglobal);
        int off = b.offset, nl = b.nlocal;
        MPI_Gather(&nl, 1, MPI_INT, cnt, 1, MPI_INT, 0, comm);
        MPI_Gather(&off, 1, MPI_INT, dsp, 1, MPI_INT, 0, comm);
        MPI_Gatherv(y, nl, MPI_INT32_T, g[st].y, cnt, dsp, MPI_INT32_T, 0, comm);
        for (int r = 0; r < size; r++) {
            cnt[r] *= plane;
            dsp[r] *= plane;
        }
        MPI_Gatherv(x, nl * plane, MPI_FLOAT, g[st].x, cnt, dsp, MPI_FLOAT, 0, comm);
    }
    free(cnt);
    free(dsp);
    free(x);
    free(y);
    loader_close(&L);
    return s;
}

/* 1 on every rank when rank 0's check passed. */
static int agree_ok(int ok)
{
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return ok;
}

static void test_train_batches_independent_of_ranks(void **state)
{
    (void)state;
    make_file();
    LoaderOpts o = {g_path, TASK_TRAIN, B, S, 7, 1, 0, {0, 0}, 0, 1};
    static Global all[STEPS], one[STEPS];
    memset(all, 0, sizeof all);
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, STEPS, all), TD_OK);
    int ok = 1;
    if (g_rt.rank == 0) {
        assert_int_equal(run_loader(MPI_COMM_SELF, &o, STEPS, one), TD_OK);
        size_t diff = 0;
        for (int st = 0; st < STEPS; st++) {
            ok &= all[st].n == B && one[st].n == B;
            ok &= memcmp(all[st].idx, one[st].idx, sizeof all[st].idx) == 0;
            ok &= memcmp(all[st].y, one[st].y, sizeof all[st].y) == 0;
            for (int i = 0; i < B * 3 * S * S; i++)
                diff += memcmp(&all[st].x[i], &one[st].x[i], sizeof(float)) != 0;
            for (int i = 0; i < B; i++)
                ok &= all[st].y[i] == (int32_t)(all[st].idx[i] % K);
        }
        printf("  %d rank(s): %zu of %d floats differ from the 1-rank batches\n", g_rt.size, diff,
               STEPS * B * 3 * S * S);
        ok &= diff == 0;
        /* epoch 0 is 6 batches (103 / 16, last partial dropped): distinct indices */
        char seen[N] = {0};
        for (int st = 0; st < 6; st++)
            for (int i = 0; i < B; i++)
                ok &= !seen[all[st].idx[i]]++;
        /* epoch 1 starts at step 6 with another order */
        ok &= memcmp(all[6].idx, all[0].idx, sizeof all[0].idx) != 0;
    }
    assert_true(agree_ok(ok));
}

/* Ranks take whole units (the engine's micro-batches): every slice starts at
 * a multiple of the unit (or at the end of the batch), the slices tile the
 * batch in rank order, and the buffers fit whole units. Batches of 8 in units
 * of 3 leave short units at the end of every batch. */
static void test_slices_are_whole_units(void **state)
{
    (void)state;
    make_file();
    const int unit = 3;
    LoaderOpts o = {g_path, TASK_TEST, 8, S, 7, 0, 0, {0, 0}, 0, unit};
    TaskLoader L;
    assert_int_equal(loader_open(&L, MPI_COMM_WORLD, &o), TD_OK);
    const int lmax = loader_local_max(&L);
    float *x = malloc(sizeof(float) * (size_t)lmax * 3 * S * S);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)lmax);
    int ok = lmax % unit == 0, *off = calloc((size_t)g_rt.size, sizeof(int)),
        *cnt = calloc((size_t)g_rt.size, sizeof(int)), batches = 0;
    for (;;) {
        LoaderBatch b;
        assert_int_equal(runtime_agree(MPI_COMM_WORLD, loader_next(&L, x, y, &b)), TD_OK);
        if (b.nglobal == 0)
            break;
        batches++;
        ok &= b.nlocal <= lmax && (b.offset % unit == 0 || b.offset == b.nglobal);
        MPI_Allgather(&b.offset, 1, MPI_INT, off, 1, MPI_INT, MPI_COMM_WORLD);
        MPI_Allgather(&b.nlocal, 1, MPI_INT, cnt, 1, MPI_INT, MPI_COMM_WORLD);
        int at = 0;
        for (int r = 0; r < g_rt.size; r++) {
            ok &= off[r] == at;
            at += cnt[r];
        }
        ok &= at == b.nglobal;
    }
    printf("  %d rank(s): %d eval batches of 8 in units of %d, slices of whole units\n",
           g_rt.size, batches, unit);
    loader_close(&L);
    free(x), free(y), free(off), free(cnt);
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    assert_true(all && batches > 1);
}

static void test_eval_batches_match_preprocess(void **state)
{
    (void)state;
    make_file();
    LoaderOpts o = {g_path, TASK_TEST, 8, S, 7, 0, 0, {0, 0}, 0, 1};
    static Global all[4];
    memset(all, 0, sizeof all);
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, 4, all), TD_OK);
    int ok = 1;
    if (g_rt.rank == 0) {
        TaskData t;
        assert_int_equal(task_read(g_path, &t), TD_OK);
        ok &= all[0].n == 8 && all[1].n == 8 && all[2].n == 4 && all[3].n == 0;
        float ref[3 * S * S];
        double worst = 0;
        for (int st = 0; st < 3; st++)
            for (int i = 0; i < all[st].n; i++) {
                int64_t idx = st * 8 + i;
                ok &= all[st].idx[i] == idx && all[st].y[i] == t.split[TASK_TEST].labels[idx];
                assert_int_equal(image_preprocess(ref, t.split[TASK_TEST].images + idx * H * W * C,
                                                  H, W, C, S, NULL),
                                 TD_OK);
                for (int p = 0; p < 3 * S * S; p++)
                    worst = fmax(worst, fabs(ref[p] - all[st].x[i * 3 * S * S + p]));
            }
        printf("  eval: worst |loader - image_preprocess| = %g\n", worst);
        ok &= worst == 0.0;
        task_free(&t);
    }
    assert_true(agree_ok(ok));
}

/* An evaluation limit keeps evenly spaced images (positions floor(j*n/limit)),
 * not the first ones: on a class-sorted split the first ones miss classes. */
static void test_eval_limit_is_evenly_spaced(void **state)
{
    (void)state;
    make_file();
    LoaderOpts o = {g_path, TASK_TEST, 8, S, 7, 0, 0, {0, 0}, 6, 1};
    static Global all[2];
    memset(all, 0, sizeof all);
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, 2, all), TD_OK);
    int ok = 1;
    if (g_rt.rank == 0) {
        ok &= all[0].n == 6 && all[1].n == 0;
        int seen[K] = {0};
        for (int j = 0; j < all[0].n; j++) {
            ok &= all[0].idx[j] == (int64_t)j * NT / 6;
            seen[all[0].y[j]] = 1;
        }
        for (int k = 0; k < K; k++)
            ok &= seen[k];
    }
    assert_true(agree_ok(ok));
}

/* data.augment = false (no_crop): train batches are the eval preprocessing of
 * their images, in the shuffled order, so an image has the same pixels in
 * every epoch; with crops on they differ; crop_scale reaches the crop. */
static void test_train_no_crop_is_eval_preprocessing(void **state)
{
    (void)state;
    make_file();
    enum { NS = 12 }; /* epochs 0 and 1 (6 batches each) */
    LoaderOpts o = {g_path, TASK_TRAIN, B, S, 7, 1, 1, {0, 0}, 0, 1};
    static Global nc[NS], cr[NS], sc[NS];
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, NS, nc), TD_OK);
    o.no_crop = 0;
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, NS, cr), TD_OK);
    o.crop_scale[0] = 0.3, o.crop_scale[1] = 0.5;
    assert_int_equal(run_loader(MPI_COMM_WORLD, &o, NS, sc), TD_OK);
    int ok = 1;
    if (g_rt.rank == 0) {
        TaskData t;
        assert_int_equal(task_read(g_path, &t), TD_OK);
        float ref[3 * S * S];
        double worst = 0;
        size_t crop_same = 0, scale_same = 0;
        for (int st = 0; st < NS; st++) {
            ok &= memcmp(nc[st].idx, cr[st].idx, sizeof nc[st].idx) == 0;
            for (int i = 0; i < B; i++) {
                int64_t idx = nc[st].idx[i];
                assert_int_equal(image_preprocess(ref, t.split[TASK_TRAIN].images + idx * H * W * C,
                                                  H, W, C, S, NULL),
                                 TD_OK);
                const float *x = nc[st].x + i * 3 * S * S;
                for (int p = 0; p < 3 * S * S; p++)
                    worst = fmax(worst, fabs(ref[p] - x[p]));
                crop_same += memcmp(x, cr[st].x + i * 3 * S * S, sizeof ref) == 0;
                scale_same += memcmp(cr[st].x + i * 3 * S * S, sc[st].x + i * 3 * S * S,
                                     sizeof ref) == 0;
            }
        }
        /* the same image in epochs 0 and 1: identical pixels without crops */
        int found = 0;
        for (int i = 0; i < B && !found; i++)
            for (int st = 6; st < NS && !found; st++)
                for (int j = 0; j < B && !found; j++)
                    if (nc[st].idx[j] == nc[0].idx[i]) {
                        found = 1;
                        ok &= memcmp(nc[0].x + i * 3 * S * S, nc[st].x + j * 3 * S * S,
                                     sizeof ref) == 0;
                    }
        printf("  no_crop: worst |loader - eval preprocess| = %g; %zu of %d cropped images "
               "equal the uncropped, %zu equal across crop_scale\n",
               worst, crop_same, NS * B, scale_same);
        ok &= worst == 0.0 && found && crop_same == 0 && scale_same == 0;
        task_free(&t);
    }
    assert_true(agree_ok(ok));
}

/* A missing file fails on every rank with a message naming it, no hang. */
static void test_missing_file(void **state)
{
    (void)state;
    LoaderOpts o = {TADIST_TEST_OUT "/no-such-task.h5", TASK_TRAIN, B, S, 7, 1, 0, {0, 0}, 0, 1};
    TaskLoader L;
    assert_int_not_equal(loader_open(&L, MPI_COMM_WORLD, &o), TD_OK);
    assert_non_null(strstr(td_error_message(), "no-such-task.h5"));
    td_error_clear();
}

int main(int argc, char **argv)
{
    setenv("TADIST_QUIET", "1", 1);
    runtime_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_batches_independent_of_ranks),
        cmocka_unit_test(test_slices_are_whole_units),
        cmocka_unit_test(test_eval_batches_match_preprocess),
        cmocka_unit_test(test_train_no_crop_is_eval_preprocessing),
        cmocka_unit_test(test_eval_limit_is_evenly_spaced),
        cmocka_unit_test(test_missing_file),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    int any;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
