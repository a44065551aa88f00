#include "vit_arch.h"

#include <string.h>

typedef struct {
    const char *name;
    VitArch arch;
} NamedArch;

/* CLIP's image towers (METHOD.md) and small ones for tests and the demo. */
static const NamedArch k_archs[] = {
    {"vit_b32", {768, 12, 12, 32, 224, 3072, 512, 3, TD_ACT_QUICK_GELU, 1e-5f}},
    {"vit_b16", {768, 12, 12, 16, 224, 3072, 512, 3, TD_ACT_QUICK_GELU, 1e-5f}},
    {"vit_l14", {1024, 24, 16, 14, 224, 4096, 768, 3, TD_ACT_QUICK_GELU, 1e-5f}},
    /* the shapes of the clip_tiny_a fixture */
    {"vit_tiny", {64, 2, 4, 8, 32, 256, 32, 3, TD_ACT_QUICK_GELU, 1e-5f}},
    /* width 128, 6 blocks, 4 heads, 28x28 images, patch 4: the small benchmark row */
    {"vit_small28", {128, 6, 4, 4, 28, 512, 128, 3, TD_ACT_QUICK_GELU, 1e-5f}},
    /* width 128, 4 blocks, patch 7 on 28x28 (17 tokens): the demo's pre-trained encoder */
    {"vit_demo", {128, 4, 4, 7, 28, 512, 128, 3, TD_ACT_QUICK_GELU, 1e-5f}},
};

TdStatus vit_arch_by_name(const char *name, VitArch *a)
{
    for (size_t i = 0; i < sizeof k_archs / sizeof k_archs[0]; i++) {
        if (strcmp(k_archs[i].name, name) == 0) {
            *a = k_archs[i].arch;
            return TD_OK;
        }
    }
    return td_fail(TD_ERR_ARG, "unknown architecture '%s' (known: %s)", name, vit_arch_names());
}

const char *vit_arch_names(void) { return "vit_b32, vit_b16, vit_l14, vit_tiny, vit_small28, vit_demo"; }

TdStatus vit_arch_validate(const VitArch *a)
{
    struct {
        const char *name;
        int v;
    } f[] = {{"width", a->width}, {"layers", a->layers}, {"heads", a->heads},
             {"patch", a->patch}, {"image", a->image},   {"mlp", a->mlp},
             {"out_dim", a->out_dim}, {"channels", a->channels}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v <= 0)
            return td_fail(TD_ERR_FORMAT, "architecture: %s must be positive (got %d)", f[i].name,
                           f[i].v);
    if (a->width % a->heads)
        return td_fail(TD_ERR_FORMAT, "architecture: width %d is not divisible by heads %d",
                       a->width, a->heads);
    if (a->image % a->patch)
        return td_fail(TD_ERR_FORMAT, "architecture: image %d is not divisible by patch %d",
                       a->image, a->patch);
    if (!(a->ln_eps > 0.0f))
        return td_fail(TD_ERR_FORMAT, "architecture: ln_eps must be positive");
    if (a->act != TD_ACT_QUICK_GELU && a->act != TD_ACT_GELU)
        return td_fail(TD_ERR_FORMAT, "architecture: unknown activation %d", (int)a->act);
    return TD_OK;
}

const char *vit_act_name(TdAct act) { return act == TD_ACT_GELU ? "gelu" : "quick_gelu"; }

TdStatus vit_act_parse(const char *name, TdAct *act)
{
    if (strcmp(name, "quick_gelu") == 0)
        *act = TD_ACT_QUICK_GELU;
    else if (strcmp(name, "gelu") == 0)
        *act = TD_ACT_GELU;
    else
        return td_fail(TD_ERR_FORMAT, "unknown activation '%s' (quick_gelu or gelu)", name);
    return TD_OK;
}
