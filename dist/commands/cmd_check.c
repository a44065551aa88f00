/* tadist check: runs the engine on a reference file's inputs and compares
 * every output, gradient and JVP with it (see ref_file.h for the format).
 * Rank 0 does the work; the other ranks wait for the agreed status. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "model_io.h"
#include "ref_file.h"
#include "runtime.h"
#include "vit.h"

typedef struct {
    double tol_out, tol_grad;
    int compared, failed;
    double worst_out, worst_grad;
} Tally;

/* max|a-b| / max|b| over n values (max|a-b| when b is all zero); NaN-safe. */
static double rel_error(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num)) /* also catches NaN */
            num = isnan(d) ? INFINITY : d;
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0.0 ? num / den : num;
}

static void report(Tally *t, const char *name, double rel, int is_grad)
{
    double tol = is_grad ? t->tol_grad : t->tol_out;
    int pass = rel <= tol;
    double *worst = is_grad ? &t->worst_grad : &t->worst_out;
    if (!(rel <= *worst))
        *worst = rel;
    t->compared++;
    t->failed += !pass;
    printf("  %-52s %10.3e  %s\n", name, rel, pass ? "PASS" : "FAIL");
}

static void compare(Tally *t, const char *name, const float *a, const float *b, size_t n,
                    int is_grad)
{
    report(t, name, rel_error(a, b, n), is_grad);
}

static TdStatus arch_match(const char *mpath, const VitArch *m, const char *rpath,
                           const VitArch *r)
{
    struct {
        const char *name;
        int a, b;
    } f[] = {{"width", m->width, r->width},       {"layers", m->layers, r->layers},
             {"heads", m->heads, r->heads},       {"patch", m->patch, r->patch},
             {"image", m->image, r->image},       {"mlp", m->mlp, r->mlp},
             {"out_dim", m->out_dim, r->out_dim}, {"channels", m->channels, r->channels},
             {"activation", (int)m->act, (int)r->act}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].a != f[i].b)
            return td_fail(TD_ERR_FORMAT, "check: %s has %s %d but %s has %d", mpath, f[i].name,
                           f[i].a, rpath, f[i].b);
    if (fabsf(m->ln_eps - r->ln_eps) > 1e-6f * r->ln_eps)
        return td_fail(TD_ERR_FORMAT, "check: %s has ln_eps %g but %s has %g", mpath,
                       (double)m->ln_eps, rpath, (double)r->ln_eps);
    return TD_OK;
}

/* The mask of the reference's jvp_attn: q/k/v/out weights and biases of every block. */
static void attn_tangent_mask(const VitArch *a, unsigned char *mask, int count)
{
    memset(mask, 0, (size_t)count);
    for (int l = 0; l < a->layers; l++) {
        mask[params_block_index(l, BLK_QKV_W)] = 1;
        mask[params_block_index(l, BLK_QKV_B)] = 1;
        mask[params_block_index(l, BLK_OUT_W)] = 1;
        mask[params_block_index(l, BLK_OUT_B)] = 1;
    }
}

typedef struct {
    VitModel model;
    RefFile ref;
    VitWork work;
    VitHead head;
    float *embeds, *dembeds, *logits, *grads, *tvec;
    unsigned char *mask;
} CheckState;

static void state_free(CheckState *c)
{
    free(c->embeds);
    free(c->dembeds);
    free(c->logits);
    td_free(c->grads);
    free(c->tvec);
    free(c->mask);
    vit_head_free(&c->head);
    vit_work_free(&c->work);
    ref_free(&c->ref);
    model_free(&c->model);
}

/* One pass: forward, loss, full backward and both JVPs. all_tokens = 1 is the
 * path that keeps every hidden state (compared too); 0 the class-token path
 * that training and evaluation run (the last block on the class tokens
 * only), whose tensors are named with a "cls: " prefix. */
static void check_pass(CheckState *c, Tally *t, int all_tokens)
{
    const VitArch *a = &c->model.arch;
    const ParamTable *tab = &c->model.table;
    const RefFile *r = &c->ref;
    const int B = r->batch, C = r->classes, E = a->out_dim, L = a->layers;
    const size_t BTD = (size_t)B * vit_arch_tokens(a) * a->width;
    const char *pre = all_tokens ? "" : "cls: ";
    char name[160];
    c->work.all_tokens = all_tokens;
    printf("forward (batch %d, %s):\n", B,
           all_tokens ? "every token" : "class-token path, as training and evaluation run it");
    vit_forward(c->model.params, &c->work, r->pixels, B, c->embeds);
    for (int l = 0; all_tokens && l <= L; l++) {
        snprintf(name, sizeof name, "hidden_states[%d]", l);
        compare(t, name, vit_hidden(&c->work, l), r->hidden + (size_t)l * BTD, BTD, 0);
    }
    snprintf(name, sizeof name, "%spooled", pre);
    compare(t, name, vit_pooled(&c->work), r->pooled, (size_t)B * a->width, 0);
    snprintf(name, sizeof name, "%simage_embeds", pre);
    compare(t, name, c->embeds, r->embeds, (size_t)B * E, 0);
    double loss = vit_head_loss(&c->head, c->embeds, r->head, (float)r->logit_scale, r->labels,
                                B, C, c->logits, c->dembeds, NULL);
    snprintf(name, sizeof name, "%slogits", pre);
    compare(t, name, c->logits, r->logits, (size_t)B * C, 0);
    snprintf(name, sizeof name, "%sloss", pre);
    report(t, name, fabs(loss - r->loss) / fmax(fabs(r->loss), 1e-30), 0);

    printf("backward (full):\n");
    memset(c->grads, 0, tab->total * sizeof(float));
    vit_backward(&c->work, c->dembeds, c->grads, NULL);
    for (int i = 0; i < tab->count; i++) {
        const ParamInfo *p = &tab->info[i];
        snprintf(name, sizeof name, "%sgrad %s", pre, p->name);
        compare(t, name, c->grads + p->offset, r->grads + p->offset, p->numel, 1);
    }

    printf("jvp:\n");
    vit_jvp(c->model.params, &c->work, r->tangent, NULL, B, c->tvec);
    snprintf(name, sizeof name, "%sjvp_all", pre);
    compare(t, name, c->tvec, r->jvp_all, (size_t)B * E, 1);
    attn_tangent_mask(a, c->mask, tab->count);
    vit_jvp(c->model.params, &c->work, r->tangent, c->mask, B, c->tvec);
    snprintf(name, sizeof name, "%sjvp_attn", pre);
    compare(t, name, c->tvec, r->jvp_attn, (size_t)B * E, 1);
}

static TdStatus run_checks(CheckState *c, Tally *t)
{
    const VitArch *a = &c->model.arch;
    const ParamTable *tab = &c->model.table;
    const RefFile *r = &c->ref;
    const int B = r->batch, C = r->classes, E = a->out_dim;
    TD_TRY(vit_work_alloc(&c->work, a, tab, B));
    TD_TRY(vit_head_alloc(&c->head, B, E, C));
    TD_ALLOC(c->embeds, (size_t)B * E);
    TD_ALLOC(c->dembeds, (size_t)B * E);
    TD_ALLOC(c->tvec, (size_t)B * E);
    TD_ALLOC(c->logits, (size_t)B * C);
    TD_ALLOC(c->mask, tab->count);
    c->grads = td_aligned_calloc(tab->total * sizeof(float));
    if (!c->grads)
        return TD_ERR_NOMEM;
    check_pass(c, t, 1);
    check_pass(c, t, 0);
    return TD_OK;
}

static TdStatus check_rank0(const char *model_path, const char *ref_path, Tally *t)
{
    CheckState c;
    memset(&c, 0, sizeof c);
    TdStatus s = model_read(model_path, &c.model);
    if (s == TD_OK)
        s = ref_read(ref_path, &c.ref);
    if (s == TD_OK)
        s = arch_match(model_path, &c.model.arch, ref_path, &c.ref.arch);
    if (s == TD_OK) {
        printf("check %s against %s: width %d, %d blocks, %d heads, %s, batch %d, %d classes\n",
               model_path, ref_path, c.model.arch.width, c.model.arch.layers,
               c.model.arch.heads, vit_act_name(c.model.arch.act), c.ref.batch, c.ref.classes);
        printf("  %-52s %10s\n", "tensor", "max|a-b|/max|b|");
        s = run_checks(&c, t);
    }
    state_free(&c);
    if (s == TD_OK) {
        printf("%d compared, %d failed; worst output %.3e (tol %.1e), worst gradient/jvp %.3e "
               "(tol %.1e)\n",
               t->compared, t->failed, t->worst_out, t->tol_out, t->worst_grad, t->tol_grad);
        if (t->failed)
            s = td_fail(TD_ERR_NUMERIC, "check: %d of %d tensors past tolerance", t->failed,
                        t->compared);
    }
    fflush(stdout);
    return s;
}

TdStatus cmd_check(int argc, char **argv)
{
    const char *model_path = NULL, *ref_path = NULL;
    Tally t = {.tol_out = 1e-4, .tol_grad = 1e-3};
    int help = 0;
    const CliOption opts[] = {
        {"model", 'm', CLI_STR, &model_path, "tadist model file (MODEL.h5)"},
        {"ref", 'r', CLI_STR, &ref_path, "reference file (REF.h5, Hugging Face outputs)"},
        {"tol-out", 0, CLI_DOUBLE, &t.tol_out, "tolerance for outputs (default 1e-4)"},
        {"tol-grad", 0, CLI_DOUBLE, &t.tol_grad, "tolerance for gradients and JVPs (default 1e-3)"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL, 0, CLI_STR, NULL, NULL}};
    const char *pos[1];
    int npos = 0;
    TdStatus s = cli_parse("check", argc, argv, opts, pos, 0, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0)
            cli_usage("tadist check --model MODEL.h5 --ref REF.h5 [--tol-out X] [--tol-grad X]",
                      opts);
        return runtime_agree(g_rt.comm, TD_OK);
    }
    if (s == TD_OK && (!model_path || !ref_path))
        s = td_fail(TD_ERR_ARG, "check: --model and --ref are required (tadist check --help)");
    if (s == TD_OK && !(t.tol_out > 0.0 && t.tol_grad > 0.0))
        s = td_fail(TD_ERR_ARG, "check: tolerances must be positive");
    if (s == TD_OK && g_rt.rank == 0)
        s = check_rank0(model_path, ref_path, &t);
    return runtime_agree(g_rt.comm, s);
}
