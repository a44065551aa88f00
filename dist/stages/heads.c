#include "heads.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evaluate.h"
#include "h5util.h"
#include "runtime.h"
#include "task_io.h"
#include "vit.h"
#include "zeroshot.h"

void heads_task_path(const TdConfig *cfg, int t, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s.h5", cfg->data.dir, cfg->data.tasks.item[t]);
}

void heads_free(HeadSet *h)
{
    if (h->w)
        for (int t = 0; t < h->tasks; t++)
            free(h->w[t]);
    free(h->w);
    free(h->classes);
    memset(h, 0, sizeof *h);
}

static void normalise_rows(float *w, int C, int E)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int k = 0; k < E; k++)
            s += (double)w[(size_t)c * E + k] * w[(size_t)c * E + k];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int k = 0; k < E; k++)
            w[(size_t)c * E + k] *= inv;
    }
}

static void prototypes(const float *feat, const int32_t *y, int64_t n, int E, int C, float *w)
{
    double *acc = calloc((size_t)C * E, sizeof *acc);
    if (!acc)
        return;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < E; k++)
            acc[(size_t)y[i] * E + k] += feat[i * E + k];
    for (size_t k = 0; k < (size_t)C * E; k++)
        w[k] = (float)acc[k];
    free(acc);
    normalise_rows(w, C, E);
}

/* Full-batch Adam on the cross-entropy of scale * feat @ w^T; every rank runs
 * the same arithmetic on the same features, so every rank gets the same head. */
static TdStatus probe(const float *feat, const int32_t *y, int64_t n, int E, int C, float scale,
                      int steps, float *w)
{
    VitHead h;
    TD_TRY(vit_head_alloc(&h, (int)n, E, C));
    float *g = calloc((size_t)C * E, sizeof *g), *m = calloc((size_t)C * E, sizeof *m);
    float *v = calloc((size_t)C * E, sizeof *v), *de = calloc((size_t)n * E, sizeof *de);
    if (!g || !m || !v || !de) {
        free(g), free(m), free(v), free(de), vit_head_free(&h);
        return td_fail(TD_ERR_NOMEM, "heads: probe out of memory");
    }
    const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    for (int s = 1; s <= steps; s++) {
        memset(g, 0, (size_t)C * E * sizeof *g);
        vit_head_loss(&h, feat, w, scale, y, (int)n, C, NULL, de, g);
        float c1 = 1.0f - powf(b1, (float)s), c2 = 1.0f - powf(b2, (float)s);
        for (size_t k = 0; k < (size_t)C * E; k++) {
            m[k] = b1 * m[k] + (1 - b1) * g[k];
            v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
            w[k] -= lr * (m[k] / c1) / (sqrtf(v[k] / c2) + eps);
        }
    }
    free(g), free(m), free(v), free(de);
    vit_head_free(&h);
    return TD_OK;
}

static TdStatus read_file_head(const char *path, const char *task, int C, int E, float *w)
{
    hid_t f = -1, d = -1, sp = -1;
    TdStatus s = TD_OK;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        return td_fail(TD_ERR_IO, "heads file '%s': cannot open", path);
    H5E_BEGIN_TRY { d = H5Dopen2(f, task, H5P_DEFAULT); } H5E_END_TRY;
    if (d < 0) {
        H5Fclose(f);
        return td_fail(TD_ERR_FORMAT, "heads file '%s': no head for task '%s'", path, task);
    }
    sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 2)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    if (nd != 2 || dims[0] != (hsize_t)C || dims[1] != (hsize_t)E)
        s = td_fail(TD_ERR_FORMAT,
                    "heads file '%s': head '%s' has shape [%llu, %llu], expected [%d, %d] "
                    "(task classes, model output dim)",
                    path, task, (unsigned long long)dims[0], (unsigned long long)dims[1], C, E);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) < 0)
        s = td_fail(TD_ERR_HDF5, "heads file '%s': cannot read '%s'", path, task);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return s;
}

static TdStatus heads_alloc(HeadSet *h, const TdConfig *cfg, int E)
{
    memset(h, 0, sizeof *h);
    h->tasks = cfg->data.tasks.count;
    h->E = E;
    TD_ALLOC(h->classes, h->tasks);
    TD_ALLOC(h->w, h->tasks);
    for (int t = 0; t < h->tasks; t++) {
        char path[600];
        TaskData td;
        heads_task_path(cfg, t, path, sizeof path);
        TD_TRY(task_read_header(path, &td));
        h->classes[t] = td.num_classes;
        task_free(&td);
        TD_ALLOC(h->w[t], (size_t)h->classes[t] * E);
    }
    return TD_OK;
}

/* The text side of zero-shot heads: tokenizer and text tower, loaded once. */
typedef struct {
    ClipTokenizer tok;
    TextModel text;
    int loaded;
} ZsText;

static TdStatus zs_load(const TdConfig *cfg, ZsText *z)
{
    if (!cfg->heads.vocab[0] || !cfg->heads.merges[0])
        return td_fail(TD_ERR_CONFIG, "heads.source = \"zeroshot\" needs heads.vocab and "
                                      "heads.merges (the checkpoint's vocab.json and merges.txt)");
    TD_TRY(clip_tokenizer_load(&z->tok, cfg->heads.vocab, cfg->heads.merges));
    z->loaded = 1;
    TD_TRY(text_model_read(cfg->model.path, &z->text));
    z->loaded = 2;
    return TD_OK;
}

static void zs_free(ZsText *z)
{
    if (z->loaded >= 2)
        text_model_free(&z->text);
    if (z->loaded >= 1)
        clip_tokenizer_free(&z->tok);
    z->loaded = 0;
}

/* Class-name prompts through the text tower (zeroshot.h), on this rank. */
static TdStatus zeroshot_head(const TdConfig *cfg, ZsText *z, const char *task_path,
                              const char *task, int C, int E, float *w)
{
    if (z->text.arch.out_dim != E)
        return td_fail(TD_ERR_FORMAT, "%s: text tower output %d differs from the image tower's %d",
                       cfg->model.path, z->text.arch.out_dim, E);
    TaskData td;
    TD_TRY(task_read_header(task_path, &td));
    const char **names = calloc((size_t)C, sizeof *names);
    ZsTemplates tm = {0};
    TdStatus s = names ? TD_OK : td_fail(TD_ERR_NOMEM, "heads: out of memory");
    for (int c = 0; s == TD_OK && c < C; c++)
        names[c] = td.classes[c];
    /* heads.templates: "" = the set named after the task, a folder = its <task>.txt,
     * else one file or set name for every task */
    char tpath[700];
    struct stat st;
    const char *tsrc = cfg->heads.templates[0] ? cfg->heads.templates : task;
    if (cfg->heads.templates[0] && stat(cfg->heads.templates, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(tpath, sizeof tpath, "%s/%s.txt", cfg->heads.templates, task);
        tsrc = tpath;
    }
    if (s == TD_OK)
        s = zeroshot_templates_load(tsrc, &tm);
    if (s == TD_OK)
        s = zeroshot_heads(&z->text, &z->tok, names, C, &tm, w);
    zeroshot_templates_free(&tm);
    free(names);
    task_free(&td);
    return s;
}

static TdStatus build_one(const TdConfig *cfg, const VitModel *theta0, HeadSet *h, int t,
                          ZsText *z)
{
    char path[600];
    heads_task_path(cfg, t, path, sizeof path);
    int C = h->classes[t], E = h->E;
    const char *src = cfg->heads.source, *task = cfg->data.tasks.item[t];
    if (strcmp(src, "file") == 0 || strcmp(src, "zeroshot") == 0) {
        /* one rank builds or reads the head, everyone gets it */
        TdStatus s = TD_OK;
        if (g_rt.rank == 0)
            s = strcmp(src, "file") == 0 ? read_file_head(cfg->heads.file, task, C, E, h->w[t])
                                         : zeroshot_head(cfg, z, path, task, C, E, h->w[t]);
        TD_TRY(runtime_agree(g_rt.comm, s));
        MPI_Bcast(h->w[t], C * E, MPI_FLOAT, 0, g_rt.comm);
        return TD_OK;
    }
    EvalEncoder enc = {theta0, NULL, NULL, NULL};
    float *feat = NULL;
    int32_t *y = NULL;
    int64_t n = 0;
    TD_TRY(eval_features(g_rt.comm, &enc, path, TASK_TRAIN, cfg->eval.batch, 0, &feat, &y, &n));
    prototypes(feat, y, n, E, C, h->w[t]);
    TdStatus s = TD_OK;
    if (strcmp(src, "probe") == 0)
        s = probe(feat, y, n, E, C, (float)cfg->heads.logit_scale, cfg->heads.probe_steps, h->w[t]);
    double acc = s == TD_OK ? eval_head_accuracy(feat, y, n, E, h->w[t], C) : 0;
    free(feat);
    free(y);
    TD_TRY(runtime_agree(g_rt.comm, s));
    td_log("head %s (%s, %d classes): theta0 train accuracy %.4f", task, src, C, acc);
    return TD_OK;
}

TdStatus heads_build_text(const TdConfig *cfg, const char *task_path, const char *task, int C,
                          int E, float *w, int *built)
{
    *built = strcmp(cfg->heads.source, "zeroshot") == 0;
    if (!*built)
        return TD_OK;
    ZsText z;
    memset(&z, 0, sizeof z);
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        s = zs_load(cfg, &z);
        if (s == TD_OK)
            s = zeroshot_head(cfg, &z, task_path, task, C, E, w);
        zs_free(&z);
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(w, C * E, MPI_FLOAT, 0, g_rt.comm);
    return TD_OK;
}

TdStatus heads_build(const TdConfig *cfg, const VitModel *theta0, HeadSet *h)
{
    ZsText z;
    memset(&z, 0, sizeof z);
    TdStatus s = heads_alloc(h, cfg, theta0->arch.out_dim);
    if (s == TD_OK && g_rt.rank == 0 && strcmp(cfg->heads.source, "zeroshot") == 0)
        s = zs_load(cfg, &z);
    s = runtime_agree(g_rt.comm, s);
    for (int t = 0; s == TD_OK && t < h->tasks; t++)
        s = build_one(cfg, theta0, h, t, &z);
    zs_free(&z);
    return s;
}

static TdStatus write_local(const char *path, const TdConfig *cfg, const VitModel *theta0,
                            const HeadSet *h, const char *source, const unsigned char *include)
{
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return td_fail(TD_ERR_IO, "cannot create heads file '%s'", tmp);
    TdStatus s = h5u_attr_write_str(f, tmp, "format", "tadist-heads-1");
    if (s == TD_OK)
        s = h5u_attr_write_str(f, tmp, "source", source);
    if (s == TD_OK)
        s = h5u_attr_write_str(f, tmp, "base_checksum", theta0->checksum);
    if (s == TD_OK)
        s = h5u_attr_write_f64(f, tmp, "logit_scale", cfg->heads.logit_scale);
    for (int t = 0; t < h->tasks && s == TD_OK; t++) {
        if (include && !include[t])
            continue;
        hsize_t dims[2] = {(hsize_t)h->classes[t], (hsize_t)h->E};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, cfg->data.tasks.item[t], H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT);
        if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, h->w[t]) < 0)
            s = td_fail(TD_ERR_HDF5, "heads file '%s': cannot write '%s'", tmp,
                        cfg->data.tasks.item[t]);
        if (d >= 0)
            H5Dclose(d);
        H5Sclose(sp);
    }
    H5Fclose(f);
    if (s == TD_OK && rename(tmp, path) != 0)
        s = td_fail(TD_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
    if (s != TD_OK)
        unlink(tmp);
    return s;
}

TdStatus heads_write(const char *path, const TdConfig *cfg, const VitModel *theta0,
                     const HeadSet *h)
{
    return heads_write_as(path, cfg, theta0, h, cfg->heads.source, NULL);
}

TdStatus heads_write_as(const char *path, const TdConfig *cfg, const VitModel *theta0,
                        const HeadSet *h, const char *source, const unsigned char *include)
{
    TdStatus s = g_rt.rank == 0 ? write_local(path, cfg, theta0, h, source, include) : TD_OK;
    return runtime_agree(g_rt.comm, s);
}
