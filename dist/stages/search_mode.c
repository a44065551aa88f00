/* search_mode: the state the search stages share for one mode (search_mode.h). */
#include "search_mode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "h5util.h"
#include "runtime.h"

const char *const k_head_set[HS_N] = {"theta0", "refit", "finetuned"};

void mode_free(ModeRun *r)
{
    heads_free(&r->heads);
    for (int t = 0; t < TV_MAX_TASKS; t++)
        free(r->ft[t]);
    tv_info_free(&r->tv);
    if (r->m.params)
        model_free(&r->m);
    td_free(r->tau);
    td_free(r->buf);
}

TdStatus mode_open(ModeRun *r, const TdConfig *cfg, const char *mode)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->mode = mode;
    r->ntk = strcmp(mode, "ntk") == 0;
    r->cur = NAN;
    r->tau_task = -1;
    r->sign = 1;
    merge_run_dir(cfg, r->run_dir, sizeof r->run_dir);
    int size;
    MPI_Comm_size(g_rt.comm, &size);
    r->item_batch = (cfg->eval.batch + size - 1) / size;
    char tvp[700];
    merge_tv_path(cfg, mode, tvp, sizeof tvp);
    TD_TRY(runtime_agree(g_rt.comm, model_read(cfg->model.path, &r->m)));
    TD_TRY(runtime_agree(g_rt.comm, tv_info_read(tvp, &r->m.table, &r->tv)));
    TdConfig hc = *cfg; /* the heads the finetune stage wrote */
    snprintf(hc.heads.source, sizeof hc.heads.source, "file");
    if (strlen(r->run_dir) + 10 > sizeof hc.heads.file)
        return runtime_agree(g_rt.comm,
                             td_fail(TD_ERR_CONFIG, "run directory '%s' is too long", r->run_dir));
    snprintf(hc.heads.file, sizeof hc.heads.file, "%.240s/heads.h5", r->run_dir);
    TD_TRY(heads_build(&hc, &r->m, &r->heads));
    size_t bytes = r->m.table.total * sizeof(float);
    r->tau = td_aligned_calloc(bytes);
    r->buf = td_aligned_calloc(bytes);
    TdStatus s = r->tau && r->buf ? TD_OK : td_fail(TD_ERR_NOMEM, "search: out of memory");
    if (s == TD_OK && g_rt.rank == 0) {
        char d[700];
        snprintf(d, sizeof d, "%s/search", r->run_dir);
        s = fs_mkdir_p(d);
    }
    return runtime_agree(g_rt.comm, s);
}

/* The encoder theta0 + sign * c * tau (ntk: the linearised model along it). */
EvalEncoder mode_encoder(ModeRun *r, double c)
{
    const ParamTable *tab = &r->m.table;
    if (!(r->cur == c)) {
        const float k = (float)(r->sign * c);
        for (size_t i = 0; i < tab->total; i++)
            r->buf[i] = r->ntk ? k * r->tau[i] : r->m.params[i] + k * r->tau[i];
        r->cur = c;
    }
    if (r->ntk)
        return (EvalEncoder){&r->m, NULL, r->buf, r->tv.mask};
    return (EvalEncoder){&r->m, r->buf, NULL, NULL};
}

/* Hex XXH64 of what a search's values depend on. */
void mode_search_key(const ModeRun *r, const char *what, char out[40])
{
    const TdConfig *c = r->cfg;
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s|%s|%s|%.17g|%.17g|%.17g|%d|%.17g", what, r->mode,
                     r->m.checksum, c->merge.alpha.start, c->merge.alpha.stop, c->merge.alpha.step,
                     c->eval.limit, r->sign);
    for (int t = 0; t < r->ntasks && n > 0 && (size_t)n < sizeof buf; t++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", r->paths[t]);
    if (*eval_precision_tag() && n > 0 && (size_t)n < sizeof buf) /* fp32 keys as before */
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", eval_precision_tag());
    uint64_t h = XXH64(buf, strlen(buf), 0);
    h ^= XXH64(r->tau, r->m.table.total * sizeof(float), 1);
    snprintf(out, 40, "%016llx", (unsigned long long)h);
}

/* ---- head sets ---- */

void mode_protos(const float *feat, const int32_t *y, int64_t n, int E, int C, float *w)
{
    double *acc = calloc((size_t)C * E, sizeof *acc);
    if (!acc)
        return;
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < E; k++)
            acc[(size_t)y[i] * E + k] += feat[i * E + k];
    for (int c = 0; c < C; c++) {
        double s2 = 0;
        for (int k = 0; k < E; k++)
            s2 += acc[(size_t)c * E + k] * acc[(size_t)c * E + k];
        double inv = s2 > 0 ? 1.0 / sqrt(s2) : 0.0;
        for (int k = 0; k < E; k++)
            w[(size_t)c * E + k] = (float)(acc[(size_t)c * E + k] * inv);
    }
    free(acc);
}

TdStatus mode_score_heads(ModeRun *r, double alpha, int refit, HeadScores *hs)
{
    const TdEvalConfig *e = &r->cfg->eval;
    EvalEncoder enc = mode_encoder(r, alpha);
    int E = r->m.arch.out_dim;
    for (int t = 0; t < r->ntasks; t++) {
        float *ft = NULL, *fr = NULL, *w = NULL;
        int32_t *yt = NULL, *yr = NULL;
        int64_t nt = 0, nr = 0;
        TD_TRY(eval_features(g_rt.comm, &enc, r->paths[t], TASK_TEST, e->batch, e->limit, &ft,
                             &yt, &nt));
        hs->abs[HS_THETA0][t] = eval_head_accuracy(ft, yt, nt, E, r->head[t], r->classes[t]);
        hs->abs[HS_REFIT][t] = hs->abs[HS_FINETUNED][t] = NAN;
        if (r->ft[t])
            hs->abs[HS_FINETUNED][t] = eval_head_accuracy(ft, yt, nt, E, r->ft[t], r->classes[t]);
        TdStatus s = TD_OK;
        if (refit) {
            s = eval_features(g_rt.comm, &enc, r->paths[t], TASK_TRAIN, e->batch, e->limit,
                              &fr, &yr, &nr);
            w = calloc((size_t)r->classes[t] * E, sizeof *w);
            if (s == TD_OK && w) {
                mode_protos(fr, yr, nr, E, r->classes[t], w);
                hs->abs[HS_REFIT][t] = eval_head_accuracy(ft, yt, nt, E, w, r->classes[t]);
            } else if (s == TD_OK) {
                s = td_fail(TD_ERR_NOMEM, "search: out of memory");
            }
        }
        free(ft), free(yt), free(fr), free(yr), free(w);
        TD_TRY(runtime_agree(g_rt.comm, s));
    }
    return TD_OK;
}

/* A head set's scores: abs[t] and, normalised, abs[t] / single[t], single
 * being the same head set's single-task test accuracy. Tasks without a head
 * (NaN) are left out of the means and listed under "missing"; a task whose
 * single-task accuracy is 0 has no normalised accuracy (null), and then
 * neither has the mean. */
cJSON *mode_head_json(const ModeRun *r, int set, const double *abs, const double *single)
{
    cJSON *o = cJSON_CreateObject(), *pt = cJSON_CreateObject(), *miss = NULL;
    double ma = 0, mn = 0;
    int n = 0;
    for (int t = 0; t < r->ntasks; t++) {
        if (isnan(abs[t])) {
            if (!miss)
                miss = cJSON_CreateArray();
            cJSON_AddItemToArray(miss, cJSON_CreateString(r->cfg->data.tasks.item[t]));
            continue;
        }
        double norm = single[t] > 0 ? abs[t] / single[t] : NAN;
        cJSON *q = cJSON_AddObjectToObject(pt, r->cfg->data.tasks.item[t]);
        cJSON_AddNumberToObject(q, "abs", abs[t]);
        cJSON_AddNumberToObject(q, "norm", norm);
        ma += abs[t];
        mn += norm;
        n++;
    }
    cJSON_AddNumberToObject(o, "abs_test", n ? ma / n : NAN);
    cJSON_AddNumberToObject(o, "norm_test", n ? mn / n : NAN);
    char by[160]; /* the key of the denominators, so that no reader has to guess */
    snprintf(by, sizeof by, "modes.%s.single.<task>.heads.%s.test", r->mode, k_head_set[set]);
    cJSON_AddStringToObject(o, "normalised_by", by);
    cJSON_AddItemToObject(o, "per_task", pt);
    if (miss)
        cJSON_AddItemToObject(o, "missing", miss);
    return o;
}

/* The task layout of data.tasks: paths, frozen heads, classes. */
TdStatus mode_tasks(ModeRun *r)
{
    const TdConfig *cfg = r->cfg;
    r->ntasks = cfg->data.tasks.count;
    for (int j = 0; j < r->ntasks; j++) {
        int t = tv_task_index(&r->tv, cfg->data.tasks.item[j]);
        if (t < 0)
            return td_fail(TD_ERR_CONFIG, "task '%s' is not in '%s'", cfg->data.tasks.item[j],
                           r->tv.path);
        heads_task_path(cfg, j, r->paths[j], sizeof r->paths[j]);
        r->head[j] = r->heads.w[j];
        r->classes[j] = r->heads.classes[j];
    }
    return TD_OK;
}

/* ---- fine-tuned heads ---- */

/* Rank 0: the heads of <path> (/<task> float32 [C,E]) for the tasks of r it
 * holds; present[j] says which. */
static TdStatus ft_heads_read_local(ModeRun *r, const char *path, int *present)
{
    int E = r->m.arch.out_dim;
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        return td_fail(TD_ERR_IO, "cannot open fine-tuned heads '%s' (not an HDF5 file?)", path);
    TdStatus s = TD_OK;
    for (int j = 0; j < r->ntasks && s == TD_OK; j++) {
        const char *task = r->cfg->data.tasks.item[j];
        htri_t ex;
        H5E_BEGIN_TRY { ex = H5Lexists(f, task, H5P_DEFAULT); } H5E_END_TRY;
        if (ex <= 0)
            continue;
        hid_t d = H5Dopen2(f, task, H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
        hsize_t dims[2] = {0, 0};
        int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
        if (nd == 2)
            H5Sget_simple_extent_dims(sp, dims, NULL);
        if (nd != 2 || dims[0] != (hsize_t)r->classes[j] || dims[1] != (hsize_t)E) {
            s = td_fail(TD_ERR_FORMAT, "'%s': /%s is not float32 [%d, %d] (classes x embedding)",
                        path, task, r->classes[j], E);
        } else {
            r->ft[j] = malloc((size_t)r->classes[j] * E * sizeof(float));
            if (!r->ft[j])
                s = td_fail(TD_ERR_NOMEM, "search: out of memory");
            else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->ft[j]) < 0)
                s = td_fail(TD_ERR_IO, "cannot read /%s from '%s'", task, path);
            else
                present[j] = 1;
        }
        if (sp >= 0)
            H5Sclose(sp);
        if (d >= 0)
            H5Dclose(d);
    }
    H5Fclose(f);
    return s;
}

/* The fine-tuned heads <run_dir>/heads_<mode>.h5, on every rank, when the file
 * exists (r->ft_found); listed in eval.heads, a missing file is an error.
 * After mode_tasks. Collective, agreed. */
TdStatus mode_ft_heads_load(ModeRun *r)
{
    char path[800];
    snprintf(path, sizeof path, "%s/heads_%s.h5", r->run_dir, r->mode);
    int wanted = config_names_contains(&r->cfg->eval.heads, "finetuned");
    int present[TV_MAX_TASKS] = {0};
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        r->ft_found = access(path, F_OK) == 0;
        if (r->ft_found)
            s = ft_heads_read_local(r, path, present);
        else if (wanted)
            s = td_fail(TD_ERR_CONFIG,
                        "eval.heads lists \"finetuned\" but '%s' does not exist (set "
                        "finetune.train_heads = true and rerun the finetune stage, or drop "
                        "\"finetuned\" from eval.heads)",
                        path);
    }
    TD_TRY(runtime_agree(g_rt.comm, s));
    MPI_Bcast(&r->ft_found, 1, MPI_INT, 0, g_rt.comm);
    MPI_Bcast(present, r->ntasks, MPI_INT, 0, g_rt.comm);
    int E = r->m.arch.out_dim;
    for (int j = 0; j < r->ntasks && s == TD_OK; j++) {
        if (!present[j])
            continue;
        if (g_rt.rank != 0 && !(r->ft[j] = malloc((size_t)r->classes[j] * E * sizeof(float))))
            s = td_fail(TD_ERR_NOMEM, "search: out of memory");
        s = runtime_agree(g_rt.comm, s);
        if (s == TD_OK)
            MPI_Bcast(r->ft[j], r->classes[j] * E, MPI_FLOAT, 0, g_rt.comm);
    }
    if (s == TD_OK && r->ft_found) {
        int n = 0;
        for (int j = 0; j < r->ntasks; j++)
            n += present[j];
        td_log("%s: fine-tuned heads of %d of %d task(s) from %s", r->mode, n, r->ntasks, path);
    }
    return s;
}

/* The "heads" object of a result at the encoder mode_encoder(r, c): every
 * head set of eval.heads, each normalised by its own single-task test
 * accuracy (rank 0; NULL elsewhere). Collective. */
TdStatus mode_heads_result(ModeRun *r, double c, const SingleAcc *sa, const char *what,
                             cJSON **out)
{
    int refit = config_names_contains(&r->cfg->eval.heads, "refit");
    HeadScores hs;
    *out = NULL;
    TD_TRY(mode_score_heads(r, c, refit, &hs));
    if (g_rt.rank != 0)
        return TD_OK;
    cJSON *h = cJSON_CreateObject();
    for (int k = 0; k < HS_N; k++) {
        if (k == HS_REFIT && !refit)
            continue;
        if (k == HS_FINETUNED && !r->ft_found) {
            cJSON_AddStringToObject(h, k_head_set[k], "not trained");
            continue;
        }
        cJSON *o = mode_head_json(r, k, hs.abs[k], sa->acc[k][1]);
        td_log("addition %s/%s: test abs %.4f norm %.4f (%s heads, over their own single-task "
               "accuracy)",
               r->mode, what, cJSON_GetObjectItem(o, "abs_test")->valuedouble,
               cJSON_GetObjectItem(o, "norm_test")->valuedouble, k_head_set[k]);
        cJSON_AddItemToObject(h, k_head_set[k], o);
    }
    *out = h;
    return TD_OK;
}
