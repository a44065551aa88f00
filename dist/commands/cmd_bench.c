/* tadist bench: images/s and memory of the engine on a randomly initialised
 * encoder: a forward pass, and one training step in full, attn and ntk mode
 * (forward, head loss, backward, gradient clipping, AdamW), and the forward of
 * an evaluation in bf16 (eval.precision = bf16: its linear products on oneDNN
 * in bf16 with fp32 accumulation; where the CPU has no native bf16 the row
 * runs the fp32 fallback and says so). Single-process:
 * rank 0 measures while the other ranks wait. Compare against PyTorch with
 * jobs/bench.sh, which runs jobs/bench_torch.py with the same settings.
 * Each row times its iterations one by one and reports the median: on a
 * shared machine a mean takes in every stray pause of the neighbours. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "mm_bf16.h"
#include "model_io.h"
#include "optim.h"
#include "parallel.h"
#include "rng.h"
#include "runtime.h"
#include "trainable.h"
#include "vit.h"

enum { BENCH_CLASSES = 10 };

typedef struct {
    VitModel model;
    VitWork work;
    VitHead head;
    float *pixels, *embeds, *dembeds, *heads, *grads, *delta;
    int *labels;
    AdamW opt;
    int B;
} Bench;

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static TdStatus bench_setup(Bench *b, const char *arch_name, int B, unsigned long long seed)
{
    VitArch a;
    TD_TRY(vit_arch_by_name(arch_name, &a));
    TD_TRY(model_alloc(&b->model, &a));
    params_init_random(&a, &b->model.table, b->model.params, seed);
    TD_TRY(vit_work_alloc(&b->work, &a, &b->model.table, B));
    TD_TRY(vit_head_alloc(&b->head, B, a.out_dim, BENCH_CLASSES));
    const size_t S = (size_t)a.image, total = b->model.table.total;
    b->B = B;
    if (!(b->pixels = td_aligned_calloc((size_t)B * a.channels * S * S * sizeof(float))) ||
        !(b->embeds = td_aligned_calloc((size_t)B * a.out_dim * sizeof(float))) ||
        !(b->dembeds = td_aligned_calloc((size_t)B * a.out_dim * sizeof(float))) ||
        !(b->heads = td_aligned_calloc((size_t)BENCH_CLASSES * a.out_dim * sizeof(float))) ||
        !(b->grads = td_aligned_calloc(total * sizeof(float))) ||
        !(b->delta = td_aligned_calloc(total * sizeof(float))))
        return TD_ERR_NOMEM;
    TD_ALLOC(b->labels, B);
    TdRng r;
    rng_seed(&r, seed + 1);
    for (size_t i = 0; i < (size_t)B * a.channels * S * S; i++)
        b->pixels[i] = (float)rng_normal(&r);
    for (int i = 0; i < BENCH_CLASSES * a.out_dim; i++)
        b->heads[i] = (float)rng_normal(&r) / 8.0f;
    for (int i = 0; i < B; i++)
        b->labels[i] = (int)rng_below(&r, BENCH_CLASSES);
    AdamWConfig oc = {1e-5f, 0.9f, 0.999f, 1e-8f, 0.1f};
    return adamw_init(&b->opt, &oc, total);
}

static void bench_free(Bench *b)
{
    adamw_free(&b->opt);
    td_free(b->pixels), td_free(b->embeds), td_free(b->dembeds), td_free(b->heads);
    td_free(b->grads), td_free(b->delta);
    free(b->labels);
    vit_head_free(&b->head);
    vit_work_free(&b->work);
    model_free(&b->model);
}

/* One training step as the fine-tuning loop runs it. ntk trains delta around
 * the fixed theta0 (the model), the others train the model itself. */
static void train_step(Bench *b, const unsigned char *mask, int ntk)
{
    const ParamTable *t = &b->model.table;
    for (int i = 0; i < t->count; i++) /* as dist/stages/train_step.c: only what backward adds into */
        if (mask[i])
            par_zero(b->grads + t->info[i].offset, t->info[i].numel);
    b->work.trainable = mask;
    if (ntk)
        vit_ntk_forward(b->model.params, &b->work, b->delta, mask, b->pixels, b->B, b->embeds, NULL);
    else
        vit_forward(b->model.params, &b->work, b->pixels, b->B, b->embeds);
    vit_head_loss(&b->head, b->embeds, b->heads, 100.0f, b->labels, b->B, BENCH_CLASSES, NULL,
                  b->dembeds, NULL);
    vit_backward(&b->work, b->dembeds, b->grads, mask);
    const float clip = optim_clip_factor(sqrt(optim_grad_sumsq(t, mask, b->grads)), 1.0f);
    adamw_step(&b->opt, t, mask, ntk ? b->delta : b->model.params, b->grads, clip, 1e-5f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static TdStatus bench_run(const char *arch_name, int B, int iters, int warmup)
{
    Bench b;
    memset(&b, 0, sizeof b);
    TdStatus s = bench_setup(&b, arch_name, B, 1234);
    if (s != TD_OK) {
        bench_free(&b);
        return s;
    }
    const ParamTable *t = &b.model.table;
    unsigned char *full = calloc((size_t)t->count, 1), *attn = calloc((size_t)t->count, 1);
    if (!full || !attn) {
        free(full), free(attn), bench_free(&b);
        return td_fail(TD_ERR_NOMEM, "bench: out of memory");
    }
    s = trainable_mask(t, "full", full);
    if (s == TD_OK)
        s = trainable_mask(t, "attn", attn);
    char desc[256];
    model_describe(&b.model.arch, desc, sizeof desc);
    printf("tadist bench: %s (%s), %zu parameters, batch %d, BLAS core %s, %d thread(s), "
           "workspace %.0f MiB\n",
           arch_name, desc, model_numel(&b.model), B, g_rt.blas_core, g_rt.blas_threads,
           (double)b.work.floats * 4.0 / 1048576.0);
    enum { ROWS = 5, BF16 = 4 };
    const char *names[ROWS] = {"forward", "full step", "attn step", "ntk step", "forward bf16"};
    double ms[ROWS], *each = malloc((size_t)iters * sizeof *each);
    if (!each)
        s = td_fail(TD_ERR_NOMEM, "bench: out of memory");
    for (int m = 0; s == TD_OK && m < ROWS; m++) {
        b.work.no_grad = m == 0 || m == BF16; /* as evaluation runs it */
        b.work.bf16 = m == BF16;
        if (m == BF16 && vit_bf16_active(&b.work)) { /* once per evaluation pass */
            double t0 = seconds();
            s = vit_bf16_bind(&b.work, b.model.params);
            printf("tadist %s: bf16 copy of the weights (oneDNN, %s) made in %.1f ms\n",
                   arch_name, mm_bf16_isa(), (seconds() - t0) * 1e3);
        } else if (m == BF16) {
            printf("tadist %s: no native bf16 on this CPU (oneDNN: %s): the bf16 row runs the "
                   "fp32 fallback\n", arch_name, mm_bf16_isa());
        }
        for (int it = 0; s == TD_OK && it < warmup + iters; it++) {
            double t0 = seconds();
            if (m == 0 || m == BF16)
                vit_forward(b.model.params, &b.work, b.pixels, B, b.embeds);
            else
                train_step(&b, m == 2 ? attn : full, m == 3);
            if (it >= warmup)
                each[it - warmup] = (seconds() - t0) * 1e3;
        }
        qsort(each, (size_t)iters, sizeof *each, cmp_double);
        ms[m] = iters % 2 ? each[iters / 2] : 0.5 * (each[iters / 2 - 1] + each[iters / 2]);
        printf("tadist %s batch %d threads %d: %-10s %8.2f img/s  (%8.1f ms median of %d, "
               "min %.1f)  peak %.0f MiB\n",
               arch_name, B, g_rt.blas_threads, names[m], B / ms[m] * 1e3, ms[m], iters, each[0],
               runtime_peak_rss_mib());
        fflush(stdout);
    }
    free(each);
    if (s == TD_OK)
        printf("tadist %s: attn step / full step = %.2f, ntk step / full step = %.2f, "
               "forward bf16 / forward = %.2fx\n", arch_name, ms[2] / ms[1], ms[3] / ms[1],
               ms[0] / ms[BF16]);
    free(full), free(attn);
    bench_free(&b);
    return s;
}

TdStatus cmd_bench(int argc, char **argv)
{
    const char *arch = "vit_b32";
    int batch = 16, iters = 3, warmup = 1, help = 0;
    const CliOption opts[] = {
        {"arch", 0, CLI_STR, &arch, "architecture (vit_b32, vit_b16, vit_l14, vit_tiny, vit_small28, vit_demo)"},
        {"batch", 0, CLI_INT, &batch, "images per step (default 16)"},
        {"iters", 0, CLI_INT, &iters, "timed iterations per row; the median is reported (default 3)"},
        {"warmup", 0, CLI_INT, &warmup, "untimed iterations first (default 1)"},
        {"help", 'h', CLI_FLAG, &help, "this text"},
        {NULL, 0, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    TdStatus s = cli_parse("bench", argc, argv, opts, pos, 0, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0)
            cli_usage("tadist bench --arch NAME --batch B [--iters N] [--warmup N]", opts);
        return TD_OK;
    }
    if (s == TD_OK && (batch < 1 || iters < 1 || warmup < 0))
        s = td_fail(TD_ERR_ARG, "bench: --batch and --iters must be >= 1, --warmup >= 0");
    if (s == TD_OK && g_rt.rank == 0)
        s = bench_run(arch, batch, iters, warmup);
    return runtime_agree(g_rt.comm, s);
}
