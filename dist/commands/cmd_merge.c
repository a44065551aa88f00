/* tadist merge: a merged encoder written as a model file.
 * tadist export: a tadist model file written as Hugging Face safetensors
 * (CLIPVisionModelWithProjection names, hf_names.h) with config.json beside it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "coef.h"
#include "commands.h"
#include "config.h"
#include "hf_names.h"
#include "model_io.h"
#include "results.h"
#include "runtime.h"
#include "task_merge.h"

/* ---- merge ---- */

typedef struct {
    const char *out, *mode, *method, *tv, *coef, *negate, *search;
    double alpha;
} MergeJob;

/* The alpha the addition stage chose for (mode, method), from results.json. */
static TdStatus chosen_alpha(const TdConfig *cfg, const MergeJob *j, double *alpha)
{
    char run_dir[600];
    merge_run_dir(cfg, run_dir, sizeof run_dir);
    cJSON *root = NULL;
    TD_TRY(results_load(run_dir, &root));
    const cJSON *n = root;
    const char *keys[] = {"modes", j->mode, "addition", j->method, "alpha"};
    for (int k = 0; k < 5 && n; k++)
        n = cJSON_GetObjectItemCaseSensitive(n, keys[k]);
    TdStatus s = cJSON_IsNumber(n) ? TD_OK
                                   : td_fail(TD_ERR_ARG,
                                             "merge: give --alpha, or run the addition stage for "
                                             "%s/%s first (%s/results.json)",
                                             j->mode, j->method, run_dir);
    if (s == TD_OK)
        *alpha = n->valuedouble;
    cJSON_Delete(root);
    return s;
}

static TdStatus parse_coefs(const char *text, MergeSpec *spec)
{
    const char *p = text;
    for (int k = 0; k < spec->ntasks; k++) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || (*end && *end != ','))
            return td_fail(TD_ERR_ARG, "merge: --coef expects %d numbers a,b,..., got '%s'",
                           spec->ntasks, text);
        spec->coef[k] = v;
        p = *end ? end + 1 : end;
        if (!*end && k + 1 < spec->ntasks)
            return td_fail(TD_ERR_ARG, "merge: --coef has fewer than %d numbers", spec->ntasks);
    }
    if (*p)
        return td_fail(TD_ERR_ARG, "merge: --coef has more than %d numbers", spec->ntasks);
    return TD_OK;
}

/* A coefficient search's result (--search NAME): the structure and a (T x G)
 * of results.json modes.<mode>.coef_search.<method>.NAME, tasks in the
 * order of spec (data.tasks). Rank 0. */
static TdStatus saved_coefs(const TdConfig *cfg, const MergeJob *j, int *kind, double *a, int T,
                            int maxg, int *G)
{
    char run_dir[600];
    merge_run_dir(cfg, run_dir, sizeof run_dir);
    cJSON *root = NULL;
    TD_TRY(results_load(run_dir, &root));
    const cJSON *o = root;
    const char *keys[] = {"modes", j->mode, "coef_search", j->method, j->search};
    for (int k = 0; k < 5 && o; k++)
        o = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "coefficients");
    const cJSON *co = cJSON_GetObjectItemCaseSensitive(o, "coef");
    TdStatus s = o && cJSON_IsString(st) && cJSON_IsObject(co)
                     ? TD_OK
                     : td_fail(TD_ERR_ARG,
                               "merge: no coefficient search modes.%s.coef_search.%s.%s in "
                               "%s/results.json (run the addition stage with merge.search)",
                               j->mode, j->method, j->search, run_dir);
    if (s == TD_OK && (*kind = coef_kind_from_name(st->valuestring)) < 0)
        s = td_fail(TD_ERR_FORMAT, "merge: unknown coefficient structure '%s'", st->valuestring);
    *G = -1;
    for (int t = 0; s == TD_OK && t < T; t++) {
        const char *task = cfg->data.tasks.item[t];
        const cJSON *row = cJSON_GetObjectItemCaseSensitive(co, task);
        int n = cJSON_IsArray(row) ? cJSON_GetArraySize(row) : -1;
        if (n < 1 || n > maxg || (*G >= 0 && n != *G)) {
            s = td_fail(TD_ERR_FORMAT, "merge: %s/results.json: bad coefficients of task '%s'",
                        run_dir, task);
            break;
        }
        *G = n;
        for (int g = 0; g < n; g++) {
            const cJSON *v = cJSON_GetArrayItem(row, g);
            if (!cJSON_IsNumber(v)) {
                s = td_fail(TD_ERR_FORMAT, "merge: %s/results.json: task '%s': not a number",
                            run_dir, task);
                break;
            }
            a[t * n + g] = v->valuedouble;
        }
    }
    cJSON_Delete(root);
    return s;
}

/* theta = theta0 + sum_t sum_g a[t,g] tau[t,g] (coef.h) of a saved search,
 * into m->params; collective. */
static TdStatus apply_saved(const TdConfig *cfg, const MergeJob *j, const TvInfo *tv,
                            const MergeSpec *spec, VitModel *m)
{
    enum { MAXG = 256 };
    int kind = 0, G = 0, T = spec->ntasks;
    double *a = calloc((size_t)T * MAXG, sizeof *a);
    TdStatus s = a ? TD_OK : td_fail(TD_ERR_NOMEM, "merge: out of memory");
    if (s == TD_OK && g_rt.rank == 0)
        s = saved_coefs(cfg, j, &kind, a, T, MAXG, &G);
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(&kind, 1, MPI_INT, 0, g_rt.comm);
    MPI_Bcast(&G, 1, MPI_INT, 0, g_rt.comm);
    MPI_Bcast(a, T * G, MPI_DOUBLE, 0, g_rt.comm);
    CoefSpace cs;
    s = coef_space_init(&cs, &m->table, tv->mask, kind, T);
    if (s == TD_OK && cs.G != G)
        s = td_fail(TD_ERR_FORMAT, "merge: the saved coefficients have %d group(s) per task, "
                    "the model %d", G, cs.G);
    size_t n = s == TD_OK ? coef_row_size(&cs) : 0;
    float *rows = s == TD_OK ? malloc((size_t)T * n * sizeof *rows + 1) : NULL;
    if (s == TD_OK && !rows)
        s = td_fail(TD_ERR_NOMEM, "merge: out of memory for %d x %zu values", T, n);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = merge_rows(g_rt.comm, tv, m, spec, rows, 1);
    if (s == TD_OK) {
        const float *rp[TV_MAX_TASKS];
        for (int t = 0; t < T; t++)
            rp[t] = rows + (size_t)t * n;
        coef_combine(&cs, rp, a, m->params, m->params);
    }
    free(rows);
    free(a);
    coef_space_free(&cs);
    return s;
}

static TdStatus merge_spec(const TdConfig *cfg, const MergeJob *j, const TvInfo *tv,
                           MergeSpec *spec)
{
    if (j->negate) {
        memset(spec, 0, sizeof *spec);
        int t = tv_task_index(tv, j->negate);
        if (t < 0)
            return td_fail(TD_ERR_ARG, "merge: --negate %s: no such task in '%s'", j->negate,
                           tv->path);
        spec->ntasks = 1;
        spec->task[0] = t;
        spec->coef[0] = -1.0;
        return TD_OK;
    }
    TD_TRY(merge_spec_from_config(cfg, j->method, tv, spec));
    return j->coef ? parse_coefs(j->coef, spec) : TD_OK;
}

static TdStatus merge_run(const TdConfig *cfg, MergeJob *j)
{
    if (!j->mode)
        j->mode = cfg->finetune.modes.item[0];
    if (!j->method)
        j->method = cfg->merge.methods.item[0];
    char tvp[700];
    if (j->tv)
        snprintf(tvp, sizeof tvp, "%s", j->tv);
    else
        merge_tv_path(cfg, j->mode, tvp, sizeof tvp);
    TdStatus s = TD_OK;
    if (j->search && (!isnan(j->alpha) || j->coef || j->negate))
        s = td_fail(TD_ERR_ARG, "merge: --search applies saved coefficients: not with --alpha, "
                    "--coef or --negate");
    else if (j->search)
        j->alpha = 1.0;
    if (s == TD_OK && isnan(j->alpha))
        s = g_rt.rank == 0 ? chosen_alpha(cfg, j, &j->alpha) : TD_OK;
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(&j->alpha, 1, MPI_DOUBLE, 0, g_rt.comm);
    VitModel m = {0};
    TD_TRY(runtime_agree(g_rt.comm, model_read(cfg->model.path, &m)));
    TvInfo tv;
    MergeSpec spec;
    s = tv_info_read(tvp, &m.table, &tv);
    if (s == TD_OK)
        s = merge_spec(cfg, j, &tv, &spec);
    float *tau = td_aligned_calloc(m.table.total * sizeof(float));
    if (s == TD_OK && !tau)
        s = td_fail(TD_ERR_NOMEM, "merge: out of memory");
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK && j->search)
        s = apply_saved(cfg, j, &tv, &spec, &m);
    else if (s == TD_OK)
        s = merge_collective(g_rt.comm, &tv, &m, &spec, tau);
    if (s == TD_OK && g_rt.rank == 0) {
        if (j->search) {
            snprintf(m.source, sizeof m.source, "merge:%.160s:%.16s:%.16s:%.40s", tvp, tv.mode,
                     j->method, j->search);
        } else {
            for (size_t i = 0; i < m.table.total; i++)
                m.params[i] += (float)j->alpha * tau[i];
            snprintf(m.source, sizeof m.source, "merge:%.160s:%.16s:%.16s:alpha=%.9g", tvp,
                     tv.mode, j->negate ? "negate" : j->method, j->alpha);
        }
        if (strcmp(tv.mode, "ntk") == 0)
            td_log("note: ntk task vectors are meant for the linearised model f0 + J tau; the "
                   "file holds the non-linear theta0 + alpha tau");
        s = model_write(j->out, &m);
        if (s == TD_OK && j->search)
            td_log("merged %d task vector(s) of %s (%s, coefficients of search %s) -> %s",
                   spec.ntasks, tvp, j->method, j->search, j->out);
        else if (s == TD_OK)
            td_log("merged %d task vector(s) of %s (%s, alpha %.6g) -> %s", spec.ntasks, tvp,
                   j->negate ? "negation" : j->method, j->alpha, j->out);
    }
    td_free(tau);
    tv_info_free(&tv);
    model_free(&m);
    return runtime_agree(g_rt.comm, s);
}

TdStatus cmd_merge(int argc, char **argv)
{
    MergeJob j = {0};
    j.alpha = NAN;
    CliList sets = {0};
    int help = 0;
    const CliOption opts[] = {
        {"output", 'o', CLI_STR, &j.out, "model file to write (required)"},
        {"set", 0, CLI_LIST, &sets, "key=value: override a configuration option (repeatable)"},
        {"mode", 0, CLI_STR, &j.mode, "fine-tuning mode of the task vectors (first of finetune.modes)"},
        {"method", 0, CLI_STR, &j.method, "sum|mean|ties|dare|dare_ties (first of merge.methods)"},
        {"alpha", 0, CLI_DOUBLE, &j.alpha,
         "scaling coefficient (default: the one the addition stage chose)"},
        {"tv", 0, CLI_STR, &j.tv, "task-vector file (default <run_dir>/task_vectors_<mode>.h5)"},
        {"coef", 0, CLI_STR, &j.coef, "per-task coefficients a,b,... in data.tasks order"},
        {"negate", 0, CLI_STR, &j.negate, "theta0 - alpha * tau of this one task"},
        {"search", 0, CLI_STR, &j.search,
         "coefficients a coefficient search saved (results.json modes.<mode>.coef_search."
         "<method>.NAME, e.g. adamerging_block)"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL, 0, 0, NULL, NULL}};
    const char *pos[1] = {NULL};
    int npos = 0;
    TdStatus s = cli_parse("merge", argc, argv, opts, pos, 1, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0) {
            cli_usage("tadist merge [CONFIG.cfg] [--set key=value]... [options] -o MODEL.h5", opts);
            printf("\nWrites theta0 + alpha * tau_merged, tau_merged reduced collectively over the\n"
                   "ranks from the task-vector file with the merge.* options of the configuration\n"
                   "(defaults without one; then give --tv and --set model.path=...).\n");
            fflush(stdout);
        }
        return runtime_agree(g_rt.comm, TD_OK);
    }
    if (s == TD_OK && !j.out)
        s = td_fail(TD_ERR_ARG, "merge: -o MODEL.h5 is required");
    TD_TRY(runtime_agree(g_rt.comm, s));
    TdConfig cfg;
    TD_TRY(config_load(npos ? pos[0] : NULL, &sets, &cfg));
    return merge_run(&cfg, &j);
}

/* ---- export ---- */

/* The JSON header and the data area (pieces back to back, in table order). */
static TdStatus export_build(const VitModel *m, char **header, float **data, size_t *nfloats)
{
    const ParamTable *t = &m->table;
    *data = malloc(t->total * sizeof **data + 1);
    cJSON *root = cJSON_CreateObject();
    if (!*data || !root) {
        cJSON_Delete(root);
        return td_fail(TD_ERR_NOMEM, "export: out of memory");
    }
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t at = 0;
    for (int i = 0; i < t->count; i++) {
        HfPiece pcs[3];
        const ParamInfo *p = &t->info[i];
        int n = hf_pieces(&m->arch, t, i, pcs);
        for (int k = 0; k < n; k++) {
            int64_t shape[TD_PARAM_MAX_DIMS];
            int nd = hf_piece_shape(p, n, &pcs[k], shape);
            const float *src = m->params + p->offset + pcs[k].offset;
            float *dst = *data + at;
            if (pcs[k].transpose) { /* proj [D,E] -> visual_projection.weight [E,D] */
                int rows = p->shape[0], cols = p->shape[1];
                for (int r = 0; r < rows; r++)
                    for (int c = 0; c < cols; c++)
                        dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
            } else {
                memcpy(dst, src, pcs[k].numel * sizeof *dst);
            }
            cJSON *o = cJSON_AddObjectToObject(root, pcs[k].name);
            cJSON_AddStringToObject(o, "dtype", "F32");
            cJSON *sh = cJSON_AddArrayToObject(o, "shape");
            for (int d = 0; d < nd; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
            cJSON *off = cJSON_AddArrayToObject(o, "data_offsets");
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at * 4)));
            cJSON_AddItemToArray(off, cJSON_CreateNumber((double)((at + pcs[k].numel) * 4)));
            at += pcs[k].numel;
        }
    }
    *nfloats = at;
    *header = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *header ? TD_OK : td_fail(TD_ERR_NOMEM, "export: out of memory");
}

static TdStatus write_file_atomic(const char *path, const void *a, size_t na, const void *b,
                                  size_t nb, const void *c, size_t nc)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (ok)
        ok = fwrite(a, 1, na, f) == na && (!nb || fwrite(b, 1, nb, f) == nb) &&
             (!nc || fwrite(c, 1, nc, f) == nc);
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "cannot write '%s'", path);
    }
    return TD_OK;
}

static TdStatus export_config(const VitModel *m, const char *out)
{
    const VitArch *a = &m->arch;
    char path[4096];
    const char *slash = strrchr(out, '/');
    snprintf(path, sizeof path, "%.*s/config.json", slash ? (int)(slash - out) : 1,
             slash ? out : ".");
    cJSON *o = cJSON_CreateObject();
    cJSON *ar = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(ar, cJSON_CreateString("CLIPVisionModelWithProjection"));
    cJSON_AddStringToObject(o, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(o, "hidden_size", a->width);
    cJSON_AddNumberToObject(o, "num_hidden_layers", a->layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", a->heads);
    cJSON_AddNumberToObject(o, "patch_size", a->patch);
    cJSON_AddNumberToObject(o, "image_size", a->image);
    cJSON_AddNumberToObject(o, "intermediate_size", a->mlp);
    cJSON_AddNumberToObject(o, "projection_dim", a->out_dim);
    cJSON_AddNumberToObject(o, "num_channels", a->channels);
    cJSON_AddStringToObject(o, "hidden_act", vit_act_name(a->act));
    cJSON_AddNumberToObject(o, "layer_norm_eps", (double)a->ln_eps);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return td_fail(TD_ERR_NOMEM, "export: out of memory");
    TdStatus s = write_file_atomic(path, text, strlen(text), "\n", 1, NULL, 0);
    free(text);
    return s;
}

static TdStatus export_run(const char *in, const char *out, int no_config)
{
    VitModel m = {0};
    TD_TRY(model_read(in, &m));
    char *header = NULL;
    float *data = NULL;
    size_t nf = 0;
    TdStatus s = export_build(&m, &header, &data, &nf);
    if (s == TD_OK) {
        size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
        char *h = malloc(8 + padded);
        if (!h) {
            s = td_fail(TD_ERR_NOMEM, "export: out of memory");
        } else {
            uint64_t n = padded;
            for (int k = 0; k < 8; k++) /* little-endian length */
                h[k] = (char)((n >> (8 * k)) & 0xff);
            memcpy(h + 8, header, hl);
            memset(h + 8 + hl, ' ', padded - hl);
            s = write_file_atomic(out, h, 8 + padded, data, nf * sizeof(float), NULL, 0);
            free(h);
        }
    }
    if (s == TD_OK && !no_config)
        s = export_config(&m, out);
    if (s == TD_OK)
        td_log("exported %s (checksum %s) -> %s%s", in, m.checksum, out,
               no_config ? "" : " and config.json beside it");
    free(header);
    free(data);
    model_free(&m);
    return s;
}

TdStatus cmd_export(int argc, char **argv)
{
    const char *out = NULL;
    int help = 0, no_config = 0;
    const CliOption opts[] = {
        {"output", 'o', CLI_STR, &out, "model.safetensors to write (required)"},
        {"no-config", 0, CLI_FLAG, &no_config, "do not write config.json beside it"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL, 0, 0, NULL, NULL}};
    const char *pos[1];
    int npos = 0;
    TdStatus s = cli_parse("export", argc, argv, opts, pos, 1, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0) {
            cli_usage("tadist export MODEL.h5 -o DIR/model.safetensors [--no-config]", opts);
            printf("\nWrites the encoder as a Hugging Face CLIPVisionModelWithProjection (F32):\n"
                   "q/k/v split out of in_proj, proj transposed to visual_projection.weight, and\n"
                   "config.json in the same folder (tadist import DIR reads both back).\n");
            fflush(stdout);
        }
        return runtime_agree(g_rt.comm, TD_OK);
    }
    if (s == TD_OK && npos != 1)
        s = td_fail(TD_ERR_ARG, "export: expected one MODEL.h5 (see tadist export --help)");
    if (s == TD_OK && !out)
        s = td_fail(TD_ERR_ARG, "export: -o model.safetensors is required");
    if (s == TD_OK && g_rt.rank == 0)
        s = export_run(pos[0], out, no_config);
    return runtime_agree(g_rt.comm, s);
}
