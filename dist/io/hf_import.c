/* hf_import: a Hugging Face CLIP model.safetensors -> a tadist model file
 * (hf_import.h). */
#include "hf_import.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf_names.h"
#include "model_io.h"
#include "runtime.h"
#include "safetensors.h"
#include "text_io.h"

typedef struct {
    const char *src, *out, *act;
    int heads;
    int text; /* --text: also store the text tower under /text */
    char st_path[4096], cfg_path[4096];
    int has_cfg;
} ImportJob;

/* SRC is model.safetensors or a folder holding it; config.json beside it is used when present. */
static TdStatus resolve_src(ImportJob *j)
{
    struct stat st;
    if (stat(j->src, &st) != 0)
        return td_fail(TD_ERR_IO, "%s: %s", j->src, strerror(errno));
    int n;
    if (S_ISDIR(st.st_mode)) {
        n = snprintf(j->st_path, sizeof j->st_path, "%s/model.safetensors", j->src);
        snprintf(j->cfg_path, sizeof j->cfg_path, "%s/config.json", j->src);
    } else {
        n = snprintf(j->st_path, sizeof j->st_path, "%s", j->src);
        const char *slash = strrchr(j->src, '/');
        int dir = slash ? (int)(slash - j->src) : 1;
        snprintf(j->cfg_path, sizeof j->cfg_path, "%.*s/config.json", dir, slash ? j->src : ".");
    }
    if (n < 0 || (size_t)n >= sizeof j->st_path)
        return td_fail(TD_ERR_ARG, "%s: path too long", j->src);
    j->has_cfg = stat(j->cfg_path, &st) == 0 && S_ISREG(st.st_mode);
    return TD_OK;
}

static TdStatus read_text(const char *path, char **out)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    TdStatus s = TD_OK;
    for (;;) {
        if (n + 4097 > cap) {
            cap = cap ? 2 * cap : 65536;
            char *nb = cap <= (16u << 20) ? realloc(buf, cap) : NULL;
            if (!nb) {
                s = td_fail(TD_ERR_FORMAT, "%s: too large for a config file", path);
                break;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, fp);
        n += r;
        if (r < 4096) {
            if (ferror(fp))
                s = td_fail(TD_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(fp);
    if (s != TD_OK) {
        free(buf);
        return s;
    }
    buf[n] = '\0';
    *out = buf;
    return TD_OK;
}

/* An optional integer field of a config object (def when absent). */
static TdStatus cfg_int(const char *path, const cJSON *o, const char *key, int def, int *v)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j) {
        *v = def;
        return TD_OK;
    }
    double d = cJSON_IsNumber(j) ? j->valuedouble : -1.0;
    if (!(d >= 1.0 && d <= 1e6) || d != (double)(int)d)
        return td_fail(TD_ERR_FORMAT, "%s: '%s' must be a positive integer", path, key);
    *v = (int)d;
    return TD_OK;
}

/* Architecture from config.json: vision_config of a CLIPModel, or the top level
 * of a CLIPVisionModel(WithProjection). Missing fields take CLIPVisionConfig's
 * defaults, as older transformers omitted them when saving. */
static TdStatus arch_from_config(const char *path, VitArch *a)
{
    char *text = NULL;
    TD_TRY(read_text(path, &text));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return td_fail(TD_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (!cJSON_IsObject(vc))
        vc = root;
    int proj_def = 512;
    TdStatus s = cfg_int(path, root, "projection_dim", 512, &proj_def);
    if (s == TD_OK)
        s = cfg_int(path, vc, "hidden_size", 768, &a->width);
    if (s == TD_OK)
        s = cfg_int(path, vc, "num_hidden_layers", 12, &a->layers);
    if (s == TD_OK)
        s = cfg_int(path, vc, "num_attention_heads", 12, &a->heads);
    if (s == TD_OK)
        s = cfg_int(path, vc, "patch_size", 32, &a->patch);
    if (s == TD_OK)
        s = cfg_int(path, vc, "image_size", 224, &a->image);
    if (s == TD_OK)
        s = cfg_int(path, vc, "intermediate_size", 3072, &a->mlp);
    if (s == TD_OK)
        s = cfg_int(path, vc, "projection_dim", proj_def, &a->out_dim);
    if (s == TD_OK)
        s = cfg_int(path, vc, "num_channels", 3, &a->channels);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(vc, "hidden_act");
    const char *act_name = cJSON_IsString(act) ? act->valuestring : act ? "" : "quick_gelu";
    if (s == TD_OK && strcmp(act_name, "quick_gelu") == 0)
        a->act = TD_ACT_QUICK_GELU;
    else if (s == TD_OK && strcmp(act_name, "gelu") == 0)
        a->act = TD_ACT_GELU;
    else if (s == TD_OK)
        s = td_fail(TD_ERR_FORMAT, "%s: hidden_act '%.40s' is not supported (quick_gelu, gelu)",
                    path, act_name);
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(vc, "layer_norm_eps");
    a->ln_eps = 1e-5f;
    if (s == TD_OK && eps) {
        if (!cJSON_IsNumber(eps) || !(eps->valuedouble > 0.0 && eps->valuedouble < 1.0))
            s = td_fail(TD_ERR_FORMAT, "%s: 'layer_norm_eps' must be a number in (0, 1)", path);
        else
            a->ln_eps = (float)eps->valuedouble;
    }
    cJSON_Delete(root);
    return s;
}

static TdStatus need(const StFile *f, const char *name, int ndim, const StTensor **t)
{
    *t = st_find(f, name);
    if (!*t)
        return td_fail(TD_ERR_FORMAT,
                       "%s: missing tensor '%s' (needed to infer the architecture without "
                       "config.json)",
                       f->path, name);
    for (int d = 0; d < (*t)->ndim; d++)
        if ((*t)->shape[d] > (1 << 20))
            return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' is implausibly large", f->path, name);
    if ((*t)->ndim != ndim)
        return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' has %d dimensions, expected %d", f->path,
                       name, (*t)->ndim, ndim);
    return TD_OK;
}

/* Architecture from tensor shapes; heads and activation cannot be seen there. */
static TdStatus arch_from_shapes(const StFile *f, const ImportJob *j, VitArch *a)
{
    if (j->heads <= 0)
        return td_fail(TD_ERR_ARG,
                       "%s: no config.json beside it: give --heads N to infer the architecture",
                       f->path);
    const StTensor *cls, *patch, *pos, *fc1, *proj;
    TD_TRY(need(f, "vision_model.embeddings.class_embedding", 1, &cls));
    TD_TRY(need(f, "vision_model.embeddings.patch_embedding.weight", 4, &patch));
    TD_TRY(need(f, "vision_model.embeddings.position_embedding.weight", 2, &pos));
    TD_TRY(need(f, "vision_model.encoder.layers.0.mlp.fc1.weight", 2, &fc1));
    TD_TRY(need(f, "visual_projection.weight", 2, &proj));
    a->width = (int)cls->shape[0];
    a->channels = (int)patch->shape[1];
    a->patch = (int)patch->shape[2];
    a->mlp = (int)fc1->shape[0];
    a->out_dim = (int)proj->shape[0];
    int g = 0;
    while ((int64_t)(g + 1) * (g + 1) <= pos->shape[0] - 1)
        g++;
    if ((int64_t)g * g != pos->shape[0] - 1)
        return td_fail(TD_ERR_FORMAT,
                       "%s: tensor '%s' has %lld positions, not 1 + a square number of patches",
                       f->path, pos->name, (long long)pos->shape[0]);
    a->image = g * a->patch;
    a->layers = 0;
    static const char k_layers[] = "vision_model.encoder.layers.";
    for (int i = 0; i < f->count; i++) {
        const char *n = f->tensors[i].name;
        if (strncmp(n, k_layers, sizeof k_layers - 1) != 0)
            continue;
        long l = strtol(n + sizeof k_layers - 1, NULL, 10);
        if (l >= 0 && l < (1 << 16) && l + 1 > a->layers)
            a->layers = (int)l + 1;
    }
    a->heads = j->heads;
    a->act = TD_ACT_QUICK_GELU;
    if (j->act && vit_act_parse(j->act, &a->act) != TD_OK)
        return TD_ERR_ARG;
    a->ln_eps = 1e-5f;
    return TD_OK;
}

static void shape_str(char *buf, size_t cap, int nd, const int64_t *shape)
{
    int n = snprintf(buf, cap, "[");
    for (int d = 0; d < nd && n > 0 && (size_t)n < cap; d++)
        n += snprintf(buf + n, cap - (size_t)n, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (n > 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "]");
}

static TdStatus copy_piece(const StFile *f, const ParamInfo *p, const HfPiece *pc,
                           const StTensor *t, float *dst)
{
    if (!pc->transpose)
        return st_read_f32(f, t, dst + pc->offset);
    /* visual_projection.weight [E,D] -> proj [D,E] */
    float *tmp = malloc(t->numel * sizeof *tmp);
    if (!tmp)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory for tensor '%s'", f->path, t->name);
    TdStatus s = st_read_f32(f, t, tmp);
    const int rows = p->shape[0], cols = p->shape[1];
    for (int r = 0; s == TD_OK && r < rows; r++)
        for (int c = 0; c < cols; c++)
            dst[(size_t)r * cols + c] = tmp[(size_t)c * rows + r];
    free(tmp);
    return s;
}

static TdStatus fill_tensor(const StFile *f, VitModel *m, int i, unsigned char *used)
{
    HfPiece pcs[3];
    const ParamInfo *p = &m->table.info[i];
    int n = hf_pieces(&m->arch, &m->table, i, pcs);
    if (n <= 0)
        return td_fail(TD_ERR_INTERNAL, "no Hugging Face name for tensor '%s'", p->name);
    for (int k = 0; k < n; k++) {
        const StTensor *t = st_find(f, pcs[k].name);
        if (!t)
            return td_fail(TD_ERR_FORMAT, "%s: missing tensor '%s'", f->path, pcs[k].name);
        int64_t want[TD_PARAM_MAX_DIMS];
        int nd = hf_piece_shape(p, n, &pcs[k], want);
        int ok = t->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = t->shape[d] == want[d];
        if (!ok) {
            char got[96], exp[96];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(exp, sizeof exp, nd, want);
            return td_fail(TD_ERR_FORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path,
                           t->name, got, exp);
        }
        TD_TRY(copy_piece(f, p, &pcs[k], t, m->params + p->offset));
        used[t - f->tensors] = 1;
    }
    return TD_OK;
}

static int skipped(const char *n)
{
    size_t len = strlen(n);
    return strncmp(n, "text_model.", 11) == 0 || strcmp(n, "text_projection.weight") == 0 ||
           strcmp(n, "logit_scale") == 0 ||
           (len >= 13 && strcmp(n + len - 13, ".position_ids") == 0);
}

static TdStatus fill_model(const StFile *f, VitModel *m)
{
    unsigned char *used;
    TD_ALLOC(used, f->count ? f->count : 1);
    TdStatus s = TD_OK;
    for (int i = 0; s == TD_OK && i < m->table.count; i++)
        s = fill_tensor(f, m, i, used);
    for (int i = 0; s == TD_OK && i < f->count; i++)
        if (!used[i] && !skipped(f->tensors[i].name))
            s = td_fail(TD_ERR_FORMAT,
                        "%s: unexpected tensor '%s' (not in a %d-layer CLIP vision tower)",
                        f->path, f->tensors[i].name, m->arch.layers);
    free(used);
    return s;
}

/* --text: the text tower's architecture needs config.json (text_config). */
static TdStatus import_text(const StFile *f, const ImportJob *j, TextModel *tm)
{
    if (!j->has_cfg)
        return td_fail(TD_ERR_ARG, "import --text: needs config.json beside %s", j->st_path);
    TextArch ta;
    TD_TRY(text_arch_from_config(j->cfg_path, &ta));
    TD_TRY(text_model_alloc(tm, &ta));
    return text_import_st(f, tm);
}

static TdStatus import_run(ImportJob *j)
{
    TD_TRY(resolve_src(j));
    VitArch a;
    if (j->has_cfg) {
        if (j->act)
            return td_fail(TD_ERR_ARG, "import: --act applies only without config.json (%s)",
                           j->cfg_path);
        TD_TRY(arch_from_config(j->cfg_path, &a));
        if (j->heads > 0 && j->heads != a.heads)
            return td_fail(TD_ERR_ARG, "import: --heads %d disagrees with %s (%d heads)", j->heads,
                           j->cfg_path, a.heads);
    }
    StFile f;
    TD_TRY(st_open(j->st_path, &f));
    TdStatus s = j->has_cfg ? TD_OK : arch_from_shapes(&f, j, &a);
    if (s == TD_OK)
        s = model_arch_check(j->has_cfg ? j->cfg_path : j->st_path, &a);
    VitModel m = {0};
    if (s == TD_OK)
        s = model_alloc(&m, &a);
    if (s == TD_OK)
        s = fill_model(&f, &m);
    TextModel tm = {0};
    if (s == TD_OK && j->text)
        s = import_text(&f, j, &tm);
    st_close(&f);
    if (s == TD_OK) {
        snprintf(m.source, sizeof m.source, "hf:%.250s", j->st_path); /* free text, may be cut */
        s = model_write(j->out, &m);
    }
    if (s == TD_OK && j->text)
        s = text_model_add(j->out, &tm);
    if (s == TD_OK && j->text)
        td_log("text tower: width %d, %d layers, %d heads, context %d, vocabulary %d, "
               "projection %d -> %s:/text",
               tm.arch.width, tm.arch.layers, tm.arch.heads, tm.arch.ctx, tm.arch.vocab,
               tm.arch.out_dim, j->out);
    if (tm.params)
        text_model_free(&tm);
    if (s == TD_OK) {
        char desc[256];
        model_describe(&m.arch, desc, sizeof desc);
        td_log("imported %s (architecture from %s): %s; %zu parameters; checksum %s -> %s",
               j->st_path, j->has_cfg ? "config.json" : "tensor shapes", desc, model_numel(&m),
               m.checksum, j->out);
    }
    if (m.params)
        model_free(&m);
    return s;
}

TdStatus hf_import(const HfImportOpts *o)
{
    ImportJob j = {.src = o->src, .out = o->out, .act = o->act, .heads = o->heads,
                   .text = o->text};
    return import_run(&j);
}
