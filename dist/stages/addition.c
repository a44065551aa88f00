#include "search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hdf5.h>
#include <unistd.h>
#include <xxhash.h>

#include "evaluate.h"
#include "h5util.h"
#include "heads.h"
#include "model_io.h"
#include "results.h"
#include "runtime.h"
#include "task_io.h"
#include "task_merge.h"
#include "workqueue.h"

/* ---- the work pool ---- */

/* Rank 0: the values already in the journal (NaN where none), after checking
 * its key; a missing or foreign journal is (re)started with the key line. */
static TdStatus journal_open(const PoolSpec *p, double *done, int *ndone)
{
    *ndone = 0;
    for (int i = 0; i < p->nitems; i++)
        done[i] = NAN;
    char want[600];
    snprintf(want, sizeof want, "{\"key\":\"%s\"}", p->key);
    FILE *f = fopen(p->journal, "r");
    int fresh = 1;
    if (f) {
        char line[1024];
        if (fgets(line, sizeof line, f) && strncmp(line, want, strlen(want)) == 0) {
            fresh = 0;
            while (fgets(line, sizeof line, f)) {
                int item, end = -1;
                double v;
                size_t len = strlen(line);
                /* A line cut by a kill has no newline: ignored. The next
                 * append then lands behind the cut, so a line must also be
                 * exactly one record: "{...0.8" + "{\"item\":..}\n" would
                 * otherwise read as value 0.8. */
                if (len == 0 || line[len - 1] != '\n' ||
                    sscanf(line, "{\"item\":%d,\"value\":%lf}%n", &item, &v, &end) != 2 ||
                    end != (int)len - 1 || item < 0 || item >= p->nitems)
                    continue;
                if (isnan(done[item]))
                    (*ndone)++;
                done[item] = v;
            }
        } else {
            td_log("journal %s belongs to another search: starting over", p->journal);
        }
        fclose(f);
    }
    if (!fresh)
        return TD_OK;
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p->journal, (int)getpid());
    f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", want) > 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, p->journal) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "cannot write journal '%s': %s", p->journal, strerror(errno));
    }
    return TD_OK;
}

static TdStatus journal_append(int fd, const char *path, int item, double v)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"item\":%d,\"value\":%.17g}\n", item, v);
    if (write(fd, line, (size_t)n) != n) /* one write: whole lines under O_APPEND */
        return td_fail(TD_ERR_IO, "cannot append to journal '%s': %s", path, strerror(errno));
    return TD_OK;
}

/* Items run by the pools of this process so far (the same on every rank):
 * merge.stop_after counts the items of the whole run, over every search. */
static long s_items_run;

/* Runs the pending items with a shared counter; vals gets this rank's results. */
static TdStatus pool_work(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx,
                          const int *pending, int npending, double *vals, int *stopped)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    WorkQueue q;
    TD_TRY(workqueue_open(&q, comm));
    int fd = open(p->journal, O_WRONLY | O_APPEND);
    TdStatus s = fd < 0 ? td_fail(TD_ERR_IO, "cannot open journal '%s': %s", p->journal,
                                  strerror(errno))
                        : TD_OK;
    double busy = 0;
    int count = 0;
    while (s == TD_OK) {
        long idx = workqueue_next(&q);
        if (idx >= npending)
            break;
        if (p->stop_after > 0 && s_items_run + idx >= p->stop_after) {
            *stopped = 1;
            break;
        }
        int item = pending[idx];
        double v = 0, t0 = td_wall();
        s = fn(ctx, item, &v);
        busy += td_wall() - t0;
        count++;
        if (s == TD_OK)
            s = journal_append(fd, p->journal, item, v);
        vals[item] = v;
    }
    if (fd >= 0)
        close(fd);
    s = runtime_agree(comm, s); /* before the collective close */
    workqueue_close(&q);
    if (s == TD_OK && npending > 0) { /* the balance: items and busy seconds per rank */
        double lo[2] = {count, busy}, hi[2] = {count, busy};
        MPI_Allreduce(MPI_IN_PLACE, lo, 2, MPI_DOUBLE, MPI_MIN, comm);
        MPI_Allreduce(MPI_IN_PLACE, hi, 2, MPI_DOUBLE, MPI_MAX, comm);
        td_log("search pool: %d item(s); per rank %.0f..%.0f items, %.2f..%.2fs busy", npending,
               lo[0], hi[0], lo[1], hi[1]);
    }
    return s;
}

TdStatus search_pool(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx, double *values)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    double *done = calloc((size_t)p->nitems + 1, sizeof *done);
    double *mine = calloc((size_t)p->nitems + 1, sizeof *mine);
    int *pending = calloc((size_t)p->nitems + 1, sizeof *pending);
    TdStatus s = done && mine && pending ? TD_OK : td_fail(TD_ERR_NOMEM, "search: out of memory");
    int ndone = 0;
    if (s == TD_OK && rank == 0)
        s = journal_open(p, done, &ndone);
    s = runtime_agree(comm, s);
    if (s == TD_OK) {
        MPI_Bcast(done, p->nitems, MPI_DOUBLE, 0, comm);
        MPI_Bcast(&ndone, 1, MPI_INT, 0, comm);
    }
    int npending = 0;
    for (int i = 0; s == TD_OK && i < p->nitems; i++)
        if (isnan(done[i]))
            pending[npending++] = i;
    if (s == TD_OK && ndone > 0)
        td_log("journal %s: %d of %d items already done, resuming", p->journal, ndone, p->nitems);
    int stopped = 0;
    if (s == TD_OK)
        s = pool_work(comm, p, fn, ctx, pending, npending, mine, &stopped);
    s_items_run += npending;
    if (s == TD_OK &&
        MPI_Allreduce(MPI_IN_PLACE, mine, p->nitems, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
        s = runtime_agree(comm, td_fail(TD_ERR_MPI, "search: MPI_Allreduce failed"));
    if (s == TD_OK) {
        int any = 0;
        MPI_Allreduce(&stopped, &any, 1, MPI_INT, MPI_MAX, comm);
        if (any)
            s = runtime_agree(comm, td_fail(TD_ERR_INTERNAL,
                                            "search stopped after %d items (merge.stop_after) as "
                                            "if killed; rerun to resume from %s",
                                            p->stop_after, p->journal));
    }
    for (int i = 0; s == TD_OK && i < p->nitems; i++)
        values[i] = isnan(done[i]) ? mine[i] : done[i];
    free(done);
    free(mine);
    free(pending);
    return s;
}

/* ---- grid and choice ---- */

int search_alpha_count(const TdConfig *cfg)
{
    const TdMergeAlphaConfig *a = &cfg->merge.alpha;
    return (int)floor((a->stop - a->start) / a->step + 1e-9) + 1;
}

double search_alpha(const TdConfig *cfg, int i)
{
    return cfg->merge.alpha.start + i * cfg->merge.alpha.step;
}

int search_choose_alpha(const double *vals, int nalpha, int ntasks, const double *norm)
{
    int best = 0;
    double bv = -INFINITY;
    for (int a = 0; a < nalpha; a++) {
        double m = 0;
        for (int t = 0; t < ntasks; t++)
            m += vals[(size_t)a * ntasks + t] / (norm ? norm[t] : 1.0);
        m /= ntasks;
        if (m > bv) {
            bv = m;
            best = a;
        }
    }
    return best;
}

/* ---- shared state of a stage for one mode ---- */

typedef struct {
    const TdConfig *cfg;
    const char *mode;
    char run_dir[600];
    VitModel m;       /* theta0 */
    TvInfo tv;
    HeadSet heads;    /* the frozen heads of heads.h5, in data.tasks order */
    int ntk;
    float *tau;       /* (table total) merged direction */
    float *buf;       /* (table total) theta or the ntk delta for the current coefficient */
    double cur;       /* coefficient buf was built for (NaN: none) */
    double sign;      /* +1 addition, -1 negation */
    int item_batch;   /* per-rank batch of a single-rank evaluation */
    /* the item layout of the current search */
    int ntasks;
    char paths[TV_MAX_TASKS + 1][600];
    const float *head[TV_MAX_TASKS + 1];
    int classes[TV_MAX_TASKS + 1];
    /* the per-task coefficient search: candidate rows of alpha grid indices */
    const MergeSpec *cspec; /* the merge the coefficients go into */
    const int *cidx;        /* (candidates x ntasks) rows of the current pool */
    int cand;               /* candidate tau was merged for (-1: none) */
    float *ft[TV_MAX_TASKS]; /* fine-tuned heads (heads_<mode>.h5), NULL where none */
    int ft_found;            /* the file exists */
    int tau_task;            /* single-task pool: the task whose own tau_t tau holds (-1: none) */
} ModeRun;

static void mode_free(ModeRun *r)
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

static TdStatus mode_open(ModeRun *r, const TdConfig *cfg, const char *mode)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->mode = mode;
    r->ntk = strcmp(mode, "ntk") == 0;
    r->cur = NAN;
    r->cand = -1;
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
static EvalEncoder mode_encoder(ModeRun *r, double c)
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

/* Item = alpha index * ntasks + task: val accuracy on this rank alone. */
static TdStatus item_val(void *ctx, int item, double *acc)
{
    ModeRun *r = ctx;
    int a = item / r->ntasks, t = item % r->ntasks;
    EvalEncoder enc = mode_encoder(r, search_alpha(r->cfg, a));
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[t], TASK_VAL, r->item_batch,
                         r->cfg->eval.limit, r->head[t], r->classes[t], acc);
}

/* Hex XXH64 of what a search's values depend on. */
static void search_key(const ModeRun *r, const char *what, char out[40])
{
    const TdConfig *c = r->cfg;
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "%s|%s|%s|%.17g|%.17g|%.17g|%d|%.17g", what, r->mode,
                     r->m.checksum, c->merge.alpha.start, c->merge.alpha.stop, c->merge.alpha.step,
                     c->eval.limit, r->sign);
    for (int t = 0; t < r->ntasks && n > 0 && (size_t)n < sizeof buf; t++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", r->paths[t]);
    uint64_t h = XXH64(buf, strlen(buf), 0);
    h ^= XXH64(r->tau, r->m.table.total * sizeof(float), 1);
    snprintf(out, 40, "%016llx", (unsigned long long)h);
}

/* ---- addition ---- */

static void protos(const float *feat, const int32_t *y, int64_t n, int E, int C, float *w)
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

/* Head sets, in the order of HeadScores and SingleAcc; their names in
 * results.json. */
enum { HS_THETA0, HS_REFIT, HS_FINETUNED, HS_N };
static const char *const k_head_set[HS_N] = {"theta0", "refit", "finetuned"};

/* Test features of the current encoder, once per task, scored by every head set. */
typedef struct {
    double abs[HS_N][TV_MAX_TASKS]; /* [head set][task]; NaN: no such head */
} HeadScores;

/* Single-task accuracies of the fine-tuned encoders theta0 + tau_t (ntk: the
 * linearised model), one per head set in use: the denominators of normalised
 * accuracy. A head set is only ever divided by its own single-task accuracy:
 * refit heads of a merged encoder by refit heads of theta_t, and so on. */
typedef struct {
    int use[HS_N];                     /* measured */
    double acc[HS_N][2][TV_MAX_TASKS]; /* [head set][0 val, 1 test][task]; NaN: not measured */
} SingleAcc;

static TdStatus score_heads(ModeRun *r, double alpha, int refit, HeadScores *hs)
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
                protos(fr, yr, nr, E, r->classes[t], w);
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
static cJSON *head_json(const ModeRun *r, int set, const double *abs, const double *single)
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
static TdStatus mode_tasks(ModeRun *r)
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
static TdStatus ft_heads_load(ModeRun *r)
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

/* ---- single-task accuracies (the single stage; the addition stage's normalisers) ---- */

/* The items of the single-task pool: one row per (task, head set in use),
 * task-major, and item = row * 2 + (0 val, 1 test). Rows, not a fixed
 * task x set layout, so that a head set not in use or a task without a
 * fine-tuned head has no item (a journal keeps only measured values). */
typedef struct {
    ModeRun *r;
    int nrows;
    int task[TV_MAX_TASKS * HS_N], set[TV_MAX_TASKS * HS_N];
    int refit_task; /* task whose refit head refit_w holds on this rank (-1: none) */
    float *refit_w;
} SingleCtx;

/* The merge that is tau_t alone (coefficient 1, no trim, no drop). */
static void own_spec(const ModeRun *r, int t, MergeSpec *sp)
{
    memset(sp, 0, sizeof *sp);
    sp->ntasks = 1;
    sp->task[0] = tv_task_index(&r->tv, r->cfg->data.tasks.item[t]);
    sp->coef[0] = 1.0;
}

/* Item: the accuracy of theta0 + tau_t with one head set on one split, on
 * this rank alone - the same evaluation as a merged encoder's val items
 * (item_val), so that numerator and denominator are measured alike. Refit:
 * the prototypes of theta_t's own train features, as score_heads refits on
 * the merged encoder's. */
static TdStatus item_single(void *ctx, int item, double *acc)
{
    SingleCtx *c = ctx;
    ModeRun *r = c->r;
    int row = item / 2, split = item % 2 ? TASK_TEST : TASK_VAL;
    int t = c->task[row], k = c->set[row], E = r->m.arch.out_dim;
    if (r->tau_task != t) {
        MergeSpec sp;
        own_spec(r, t, &sp);
        r->tau_task = -1;
        r->cur = NAN;
        TD_TRY(merge_collective(MPI_COMM_SELF, &r->tv, &r->m, &sp, r->tau));
        r->tau_task = t;
    }
    EvalEncoder enc = mode_encoder(r, 1.0);
    const float *head = k == HS_FINETUNED ? r->ft[t] : r->head[t];
    if (k == HS_REFIT) {
        if (c->refit_task != t) {
            float *f = NULL;
            int32_t *y = NULL;
            int64_t n = 0;
            c->refit_task = -1;
            TD_TRY(eval_features(MPI_COMM_SELF, &enc, r->paths[t], TASK_TRAIN, r->item_batch,
                                 r->cfg->eval.limit, &f, &y, &n));
            float *w = realloc(c->refit_w, (size_t)r->classes[t] * E * sizeof *w);
            if (w) {
                c->refit_w = w;
                protos(f, y, n, E, r->classes[t], w);
                c->refit_task = t;
            }
            free(f);
            free(y);
            if (!w)
                return td_fail(TD_ERR_NOMEM, "single: out of memory");
        }
        head = c->refit_w;
    }
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[t], split, r->item_batch,
                         r->cfg->eval.limit, head, r->classes[t], acc);
}

/* Hex key of the single-task pool: everything its values depend on - theta0,
 * task files, eval.limit, the rows, the heads, and the task vectors (through
 * one collective merge with coefficients 1, 2, ..., T, so that exchanging two
 * tasks' vectors changes it too). Leaves that merge in r->tau. */
static TdStatus single_key(ModeRun *r, const SingleCtx *c, char out[40])
{
    MergeSpec sp;
    memset(&sp, 0, sizeof sp);
    sp.ntasks = r->ntasks;
    for (int t = 0; t < r->ntasks; t++) {
        sp.task[t] = tv_task_index(&r->tv, r->cfg->data.tasks.item[t]);
        sp.coef[t] = t + 1;
    }
    r->cur = NAN;
    r->tau_task = -1;
    r->cand = -1;
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, &sp, r->tau));
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "single|%s|%s|%d", r->mode, r->m.checksum,
                     r->cfg->eval.limit);
    for (int t = 0; t < r->ntasks && n > 0 && (size_t)n < sizeof buf; t++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", r->paths[t]);
    for (int i = 0; i < c->nrows && n > 0 && (size_t)n < sizeof buf; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%d:%d", c->task[i], c->set[i]);
    uint64_t h = XXH64(buf, strlen(buf), 0);
    h ^= XXH64(r->tau, r->m.table.total * sizeof(float), 1);
    int E = r->m.arch.out_dim;
    for (int t = 0; t < r->ntasks; t++) {
        size_t bytes = (size_t)r->classes[t] * E * sizeof(float);
        h ^= XXH64(r->head[t], bytes, 2 + (uint64_t)t);
        if (r->ft[t])
            h ^= XXH64(r->ft[t], bytes, 1000 + (uint64_t)t);
    }
    snprintf(out, 40, "%016llx", (unsigned long long)h);
    return TD_OK;
}

/* Rank 0: modes.<mode>.single in results.json - per task the finetune
 * stage's own figures (val, test: theta_t with the head it was trained with;
 * theta0_val, theta0_test: theta0 with the frozen head) and, under "heads",
 * the single-task accuracy of every head set in use. */
static TdStatus single_record(const ModeRun *r, const SingleAcc *sa)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return td_fail(TD_ERR_NOMEM, "single: out of memory");
    for (int j = 0; j < r->ntasks; j++) {
        int t = tv_task_index(&r->tv, r->cfg->data.tasks.item[j]);
        cJSON *q = cJSON_AddObjectToObject(o, r->tv.task[t]);
        cJSON_AddNumberToObject(q, "val", r->tv.acc_val[t]);
        cJSON_AddNumberToObject(q, "test", r->tv.acc_test[t]);
        cJSON_AddNumberToObject(q, "theta0_val", r->tv.t0_val[t]);
        cJSON_AddNumberToObject(q, "theta0_test", r->tv.t0_test[t]);
        cJSON_AddStringToObject(q, "status", r->tv.status[t]);
        cJSON *h = cJSON_AddObjectToObject(q, "heads");
        for (int k = 0; k < HS_N; k++) {
            if (!sa->use[k] || isnan(sa->acc[k][1][j]))
                continue;
            cJSON *hk = cJSON_AddObjectToObject(h, k_head_set[k]);
            cJSON_AddNumberToObject(hk, "val", sa->acc[k][0][j]);
            cJSON_AddNumberToObject(hk, "test", sa->acc[k][1][j]);
        }
    }
    char key[128];
    snprintf(key, sizeof key, "modes.%s.single", r->mode);
    return results_set(r->run_dir, key, o);
}

/* The single-task accuracies of mode r with every head set in use - theta0
 * (always: the alpha search scores with it), refit (eval.heads), finetuned
 * (wherever heads_<mode>.h5 has the task) - through the pool, journal
 * search/single_<mode>.jsonl: the single stage measures them, and the
 * addition stage, run after it, finds them all in the journal (or measures
 * what is missing when run alone). Records modes.<mode>.single. After
 * mode_tasks and ft_heads_load; collective, agreed. */
static TdStatus single_measure(ModeRun *r, SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    memset(sa, 0, sizeof *sa);
    for (int k = 0; k < HS_N; k++)
        for (int i = 0; i < 2; i++)
            for (int t = 0; t < TV_MAX_TASKS; t++)
                sa->acc[k][i][t] = NAN;
    sa->use[HS_THETA0] = 1;
    sa->use[HS_REFIT] = config_names_contains(&cfg->eval.heads, "refit");
    sa->use[HS_FINETUNED] = r->ft_found;
    SingleCtx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.refit_task = -1;
    for (int t = 0; t < r->ntasks; t++)
        for (int k = 0; k < HS_N; k++)
            if (sa->use[k] && (k != HS_FINETUNED || r->ft[t])) {
                c.task[c.nrows] = t;
                c.set[c.nrows++] = k;
            }
    char journal[800], key[40];
    snprintf(journal, sizeof journal, "%s/search/single_%s.jsonl", r->run_dir, r->mode);
    TdStatus s = single_key(r, &c, key);
    double *v = calloc((size_t)c.nrows * 2 + 1, sizeof *v);
    s = runtime_agree(g_rt.comm, s == TD_OK && !v ? td_fail(TD_ERR_NOMEM, "out of memory") : s);
    PoolSpec ps = {journal, key, c.nrows * 2, cfg->merge.stop_after};
    double t0 = td_wall();
    if (s == TD_OK)
        s = search_pool(g_rt.comm, &ps, item_single, &c, v);
    r->cur = NAN;
    r->tau_task = -1;
    free(c.refit_w);
    for (int i = 0; s == TD_OK && i < c.nrows; i++) {
        sa->acc[c.set[i]][0][c.task[i]] = v[2 * i];
        sa->acc[c.set[i]][1][c.task[i]] = v[2 * i + 1];
    }
    free(v);
    if (s != TD_OK)
        return s;
    td_log("single %s: %d task x head-set pair(s), val and test, in %.2fs", r->mode, c.nrows,
           td_wall() - t0);
    for (int k = 0; k < HS_N; k++) {
        if (!sa->use[k])
            continue;
        double mv = 0, mt = 0;
        int n = 0;
        for (int t = 0; t < r->ntasks; t++)
            if (!isnan(sa->acc[k][1][t])) {
                mv += sa->acc[k][0][t];
                mt += sa->acc[k][1][t];
                n++;
            }
        td_log("single %s: %s heads, mean val %.4f test %.4f over %d task(s)", r->mode,
               k_head_set[k], n ? mv / n : NAN, n ? mt / n : NAN, n);
    }
    return runtime_agree(g_rt.comm, g_rt.rank == 0 ? single_record(r, sa) : TD_OK);
}

TdStatus single_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        SingleAcc sa;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, mode_tasks(&r));
        if (s == TD_OK)
            s = ft_heads_load(&r);
        if (s == TD_OK)
            s = single_measure(&r, &sa);
        mode_free(&r);
    }
    return s;
}

/* ---- addition ---- */

static double row_score(const double *val, int T, const double *nval)
{
    double m = 0;
    for (int t = 0; t < T; t++)
        m += val[t] / nval[t];
    return m / T;
}

/* The "heads" object of a result at the encoder mode_encoder(r, c): every
 * head set of eval.heads, each normalised by its own single-task test
 * accuracy (rank 0; NULL elsewhere). Collective. */
static TdStatus heads_result(ModeRun *r, double c, const SingleAcc *sa, const char *what,
                             cJSON **out)
{
    int refit = config_names_contains(&r->cfg->eval.heads, "refit");
    HeadScores hs;
    *out = NULL;
    TD_TRY(score_heads(r, c, refit, &hs));
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
        cJSON *o = head_json(r, k, hs.abs[k], sa->acc[k][1]);
        td_log("addition %s/%s: test abs %.4f norm %.4f (%s heads, over their own single-task "
               "accuracy)",
               r->mode, what, cJSON_GetObjectItem(o, "abs_test")->valuedouble,
               cJSON_GetObjectItem(o, "norm_test")->valuedouble, k_head_set[k]);
        cJSON_AddItemToObject(h, k_head_set[k], o);
    }
    *out = h;
    return TD_OK;
}

/* Names, in a search result o, the denominators of its normalised val
 * accuracies (norm_val and the val_norm grid). */
static void norm_val_by(const ModeRun *r, cJSON *o)
{
    char by[160];
    snprintf(by, sizeof by, "modes.%s.single.<task>.heads.%s.val", r->mode, k_head_set[HS_THETA0]);
    cJSON_AddStringToObject(o, "norm_val_by", by);
}

/* Rank 0: val_acc, val_norm (rows x tasks) and a per-row axis at group gp. */
static TdStatus write_val_grids(const ModeRun *r, const char *gp, const double *val,
                                const double *nval, int rows, const char *axis_name,
                                const double *axis, int axis_cols, const char *axes)
{
    int T = r->ntasks;
    double *norm = calloc((size_t)rows * T + 1, sizeof *norm);
    if (!norm)
        return td_fail(TD_ERR_NOMEM, "search: out of memory");
    for (int i = 0; i < rows * T; i++)
        norm[i] = val[i] / nval[i % T];
    char p[400];
    size_t dims[2] = {(size_t)rows, (size_t)T}, adims[2] = {(size_t)rows, (size_t)axis_cols};
    snprintf(p, sizeof p, "%s/val_acc", gp);
    TdStatus s = results_grid_write(r->run_dir, p, val, 2, dims, axes);
    snprintf(p, sizeof p, "%s/val_norm", gp);
    if (s == TD_OK)
        s = results_grid_write(r->run_dir, p, norm, 2, dims, axes);
    snprintf(p, sizeof p, "%s/%s", gp, axis_name);
    if (s == TD_OK)
        s = results_grid_write(r->run_dir, p, axis, axis_cols > 1 ? 2 : 1, adims,
                               axis_cols > 1 ? axes : axis_name);
    free(norm);
    return s;
}

/* The uniform alpha search of one merge: tau = merge(spec) on every rank, the
 * alpha grid x val splits through the pool (journal addition_<mode>_<tag>),
 * val (alphas x tasks) and the best alpha index; grids at gp. */
static TdStatus uniform_search(ModeRun *r, const char *tag, const MergeSpec *spec, const char *gp,
                               const double *nval, double *val, int *best)
{
    const TdConfig *cfg = r->cfg;
    int T = r->ntasks, A = search_alpha_count(cfg);
    double t0 = td_wall();
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, spec, r->tau));
    r->cur = NAN;
    r->cand = -1;
    td_log("addition %s/%s: merged %d task vectors in %.2fs", r->mode, tag, spec->ntasks,
           td_wall() - t0);
    char journal[1200], key[40], what[600];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode, tag);
    snprintf(what, sizeof what, "%.300s|k%.17g|p%.17g|%s|%d", tag, spec->ties ? spec->ties_k : -1.0,
             spec->dare_p, spec->ties_global ? "global" : "tensor", spec->mean);
    search_key(r, what, key);
    PoolSpec ps = {journal, key, A * T, cfg->merge.stop_after};
    t0 = td_wall();
    TD_TRY(search_pool(g_rt.comm, &ps, item_val, r, val));
    *best = search_choose_alpha(val, A, T, nval);
    td_log("addition %s/%s: %d alphas x %d tasks searched in %.2fs; alpha %.4g (mean "
           "normalised val %.4f)",
           r->mode, tag, A, T, td_wall() - t0, search_alpha(cfg, *best),
           row_score(val + (size_t)*best * T, T, nval));
    TdStatus s = TD_OK;
    if (g_rt.rank == 0) {
        double *al = calloc((size_t)A, sizeof *al);
        for (int a = 0; al && a < A; a++)
            al[a] = search_alpha(cfg, a);
        s = al ? write_val_grids(r, gp, val, nval, A, "alpha", al, 1, "alpha,task")
               : td_fail(TD_ERR_NOMEM, "search: out of memory");
        free(al);
    }
    return runtime_agree(g_rt.comm, s);
}

/* Item = candidate * ntasks + task: val accuracy of theta0 + merge(cspec with
 * the candidate's coefficients), merged on this rank alone. */
static TdStatus item_coef(void *ctx, int item, double *acc)
{
    ModeRun *r = ctx;
    int c = item / r->ntasks, t = item % r->ntasks;
    if (r->cand != c) {
        MergeSpec sp = *r->cspec;
        for (int j = 0; j < sp.ntasks; j++)
            sp.coef[j] = search_alpha(r->cfg, r->cidx[(size_t)c * r->ntasks + j]);
        r->cand = -1;
        r->cur = NAN;
        TD_TRY(merge_collective(MPI_COMM_SELF, &r->tv, &r->m, &sp, r->tau));
        r->cand = c;
    }
    EvalEncoder enc = mode_encoder(r, 1.0);
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[t], TASK_VAL, r->item_batch,
                         r->cfg->eval.limit, r->head[t], r->classes[t], acc);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int search_random_coef(int seed, int cand, int task, int nalpha)
{
    uint64_t x = splitmix64((uint64_t)(uint32_t)seed);
    x = splitmix64(x ^ (uint64_t)(uint32_t)cand);
    x = splitmix64(x ^ ((uint64_t)(uint32_t)task << 32));
    return (int)(x % (uint64_t)nalpha);
}

/* Runs rows [first, first + n) of idx (candidates x tasks) through the pool
 * into val; what names the search in its journal and key. */
static TdStatus coef_pool(ModeRun *r, const char *tag, const char *what, const MergeSpec *spec,
                          const int *idx, int first, int n, double *val)
{
    int T = r->ntasks;
    char journal[1200], key[40], kw[1200];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode, tag);
    int len = snprintf(kw, sizeof kw, "%.300s|k%.17g|p%.17g|%s|%d|%d", what,
                       spec->ties ? spec->ties_k : -1.0, spec->dare_p,
                       spec->ties_global ? "global" : "tensor", spec->mean, n);
    for (int i = 0; i < T && len > 0 && (size_t)len < sizeof kw; i++) /* the start row */
        len += snprintf(kw + len, sizeof kw - (size_t)len, "|%d", idx[(size_t)first * T + i]);
    search_key(r, kw, key);
    r->cspec = spec;
    r->cidx = idx + (size_t)first * T;
    r->cand = -1;
    r->cur = NAN;
    PoolSpec ps = {journal, key, n * T, r->cfg->merge.stop_after};
    TdStatus s = search_pool(g_rt.comm, &ps, item_coef, r, val + (size_t)first * T);
    r->cand = -1;
    r->cur = NAN;
    return s;
}

/* The per-task coefficient search (merge.coef_search) at the merge spec,
 * starting from the uniform choice (row ubest of uval); scores and records
 * modes.<mode>.addition.<method>_coef. Collective. */
static TdStatus coef_search(ModeRun *r, const char *method, const MergeSpec *spec,
                            const double *uval, int ubest, const double *nval,
                            const SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    const char *kind = cfg->merge.coef_search;
    int T = r->ntasks, A = search_alpha_count(cfg), budget = cfg->merge.coef_budget;
    int *idx = calloc((size_t)(budget + 1) * T, sizeof *idx);
    double *val = calloc((size_t)(budget + 1) * T, sizeof *val);
    TdStatus s = runtime_agree(g_rt.comm, idx && val ? TD_OK
                                                          : td_fail(TD_ERR_NOMEM, "out of memory"));
    char tag[300];
    for (int t = 0; t < T; t++) { /* row 0: the uniform choice, already evaluated */
        idx[t] = ubest;
        val[t] = uval[(size_t)ubest * T + t];
    }
    int n = 1, chosen = 0;
    double t0 = td_wall();
    if (s == TD_OK && strcmp(kind, "random") == 0) {
        for (int c = 0; c < budget; c++)
            for (int t = 0; t < T; t++)
                idx[(size_t)(c + 1) * T + t] = search_random_coef(cfg->merge.coef_seed, c, t, A);
        char what[300];
        snprintf(what, sizeof what, "coef|random|%s|%d", method, cfg->merge.coef_seed);
        snprintf(tag, sizeof tag, "%s_coef_random", method);
        s = coef_pool(r, tag, what, spec, idx, 1, budget, val);
        n = budget + 1;
        chosen = search_choose_alpha(val, n, T, nval); /* the uniform start wins ties */
    } else if (s == TD_OK) { /* coordinate */
        int cur = 0, used = 0, step = 0;
        for (int round = 0; s == TD_OK && used < budget; round++) {
            int moved = 0;
            for (int t = 0; s == TD_OK && t < T && used < budget; t++, step++) {
                int m = 0;
                for (int i = 0; i < A && used + m < budget; i++) {
                    if (i == idx[(size_t)cur * T + t])
                        continue;
                    memcpy(idx + (size_t)(n + m) * T, idx + (size_t)cur * T, T * sizeof *idx);
                    idx[(size_t)(n + m) * T + t] = i;
                    m++;
                }
                if (m == 0)
                    continue;
                /* the key: the sweep's rows and the value of t they replace */
                char what[300];
                snprintf(what, sizeof what, "coef|coordinate|%s|step%d|task%d|from%d", method,
                         step, t, idx[(size_t)cur * T + t]);
                snprintf(tag, sizeof tag, "%s_coef_coord%d", method, step);
                s = coef_pool(r, tag, what, spec, idx, n, m, val);
                if (s != TD_OK)
                    break;
                int b = cur;
                double bv = row_score(val + (size_t)cur * T, T, nval);
                for (int k = n; k < n + m; k++) {
                    double v = row_score(val + (size_t)k * T, T, nval);
                    if (v > bv) {
                        bv = v;
                        b = k;
                    }
                }
                n += m;
                used += m;
                if (b != cur) {
                    cur = b;
                    moved = 1;
                }
            }
            td_log("addition %s/%s: coordinate round %d: %d vector(s) so far, mean normalised "
                   "val %.4f",
                   r->mode, method, round, used, row_score(val + (size_t)cur * T, T, nval));
            if (!moved)
                break;
        }
        chosen = cur;
    }
    if (s != TD_OK) {
        free(idx);
        free(val);
        return s;
    }
    double score = row_score(val + (size_t)chosen * T, T, nval);
    td_log("addition %s/%s: %s per-task search, %d vector(s) in %.2fs; mean normalised val %.4f "
           "(uniform alpha %.4g: %.4f)",
           r->mode, method, kind, n - 1, td_wall() - t0, score, search_alpha(cfg, ubest),
           row_score(val, T, nval));
    /* the chosen vector on every rank, scored on test */
    MergeSpec sp = *spec;
    for (int j = 0; j < sp.ntasks; j++)
        sp.coef[j] = search_alpha(cfg, idx[(size_t)chosen * T + j]);
    s = merge_collective(g_rt.comm, &r->tv, &r->m, &sp, r->tau);
    r->cur = NAN;
    r->cand = -1;
    char what[300];
    snprintf(what, sizeof what, "%s_coef", method);
    cJSON *heads = NULL;
    if (s == TD_OK)
        s = heads_result(r, 1.0, sa, what, &heads);
    if (s == TD_OK && g_rt.rank == 0) {
        char gp[300], kp[300];
        snprintf(gp, sizeof gp, "/%s/addition/%s_coef", r->mode, method);
        double *co = calloc((size_t)n * T, sizeof *co);
        for (int i = 0; co && i < n * T; i++)
            co[i] = search_alpha(cfg, idx[i]);
        s = co ? write_val_grids(r, gp, val, nval, n, "coef", co, T, "candidate,task")
               : td_fail(TD_ERR_NOMEM, "out of memory");
        free(co);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "search", kind);
        cJSON_AddNumberToObject(o, "budget", budget);
        if (strcmp(kind, "random") == 0)
            cJSON_AddNumberToObject(o, "seed", cfg->merge.coef_seed);
        cJSON_AddNumberToObject(o, "evaluations", n - 1);
        cJSON_AddNumberToObject(o, "candidate_index", chosen);
        cJSON *cv = cJSON_AddObjectToObject(o, "coef");
        for (int t = 0; t < T; t++)
            cJSON_AddNumberToObject(cv, cfg->data.tasks.item[t],
                                    search_alpha(cfg, idx[(size_t)chosen * T + t]));
        cJSON_AddNumberToObject(o, "norm_val", score);
        norm_val_by(r, o);
        cJSON_AddNumberToObject(o, "uniform_alpha", search_alpha(cfg, ubest));
        cJSON_AddNumberToObject(o, "uniform_norm_val", row_score(val, T, nval));
        if (spec->ties)
            cJSON_AddNumberToObject(o, "ties_k", spec->ties_k);
        if (spec->dare_p > 0)
            cJSON_AddNumberToObject(o, "dare_p", spec->dare_p);
        cJSON_AddStringToObject(o, "candidates", gp);
        cJSON_AddItemToObject(o, "heads", heads);
        heads = NULL;
        snprintf(kp, sizeof kp, "modes.%s.addition.%s_coef", r->mode, method);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
    }
    cJSON_Delete(heads);
    free(idx);
    free(val);
    return runtime_agree(g_rt.comm, s);
}

/* The (ties.k, dare.p) points searched for method: the grids where set (k
 * major), else the single values. */
static int param_points(const TdConfig *cfg, const MergeSpec *spec, double *k, double *p)
{
    const TdCfgNums *kg = &cfg->merge.ties.k_grid, *pg = &cfg->merge.dare.p_grid;
    int nk = spec->ties && kg->count ? kg->count : 1;
    int np = spec->dare_p > 0 && pg->count ? pg->count : 1;
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < np; j++) {
            k[i * np + j] = spec->ties && kg->count ? kg->v[i] : spec->ties_k;
            p[i * np + j] = spec->dare_p > 0 && pg->count ? pg->v[j] : spec->dare_p;
        }
    return nk * np;
}

/* One merge.methods entry: the alpha search with the frozen heads, whose
 * normaliser is therefore the frozen heads' single-task val accuracy (also
 * with finetune.train_heads, where the finetune stage's own figures are the
 * trained heads'), then every head set on test against its own single-task
 * test accuracy. */
static TdStatus addition_method(ModeRun *r, const char *method, const SingleAcc *sa)
{
    const TdConfig *cfg = r->cfg;
    double nval[TV_MAX_TASKS];
    for (int t = 0; t < r->ntasks; t++) /* the search scores with the frozen heads */
        nval[t] = sa->acc[HS_THETA0][0][t] > 0 ? sa->acc[HS_THETA0][0][t] : 1.0;
    int T = r->ntasks, A = search_alpha_count(cfg);
    MergeSpec spec;
    TD_TRY(runtime_agree(g_rt.comm, merge_spec_from_config(cfg, method, &r->tv, &spec)));
    enum { MAXP = TD_CFG_LIST_MAX * TD_CFG_LIST_MAX };
    static double pk[MAXP], pp[MAXP];
    int P = param_points(cfg, &spec, pk, pp);
    double *val = calloc((size_t)P * A * T, sizeof *val);
    int *best = calloc((size_t)P, sizeof *best);
    TdStatus s = runtime_agree(g_rt.comm, val && best ? TD_OK
                                                           : td_fail(TD_ERR_NOMEM, "out of memory"));
    int bp = 0;
    double bv = -INFINITY;
    char gp[300], tag[300];
    for (int i = 0; i < P && s == TD_OK; i++) {
        spec.ties_k = pk[i];
        spec.dare_p = pp[i];
        if (P == 1) {
            snprintf(tag, sizeof tag, "%s", method);
            snprintf(gp, sizeof gp, "/%s/addition/%s", r->mode, method);
        } else {
            snprintf(tag, sizeof tag, "%s_g%d", method, i);
            snprintf(gp, sizeof gp, "/%s/addition/%s/g%d", r->mode, method, i);
        }
        double *v = val + (size_t)i * A * T;
        s = uniform_search(r, tag, &spec, gp, nval, v, &best[i]);
        double sc = s == TD_OK ? row_score(v + (size_t)best[i] * T, T, nval) : 0;
        if (s == TD_OK && sc > bv) {
            bv = sc;
            bp = i;
        }
        if (s == TD_OK && P > 1)
            td_log("addition %s/%s: grid point %d (ties.k %g, dare.p %g): alpha %.4g, mean "
                   "normalised val %.4f",
                   r->mode, method, i, pk[i], pp[i], search_alpha(cfg, best[i]), sc);
    }
    spec.ties_k = pk[bp];
    spec.dare_p = pp[bp];
    if (s == TD_OK && bp != P - 1) /* tau is the last point's */
        s = merge_collective(g_rt.comm, &r->tv, &r->m, &spec, r->tau);
    r->cur = NAN;
    r->cand = -1;
    double alpha = search_alpha(cfg, s == TD_OK ? best[bp] : 0);
    cJSON *heads = NULL;
    if (s == TD_OK)
        s = heads_result(r, alpha, sa, method, &heads);
    if (s == TD_OK && g_rt.rank == 0) {
        char kp[300];
        if (P == 1)
            snprintf(gp, sizeof gp, "/%s/addition/%s", r->mode, method);
        else
            snprintf(gp, sizeof gp, "/%s/addition/%s/g%d", r->mode, method, bp);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
        cJSON_AddNumberToObject(o, "alpha_index", best[bp]);
        cJSON_AddStringToObject(o, "grid", gp);
        cJSON_AddNumberToObject(o, "norm_val", bv);
        norm_val_by(r, o);
        if (spec.ties)
            cJSON_AddNumberToObject(o, "ties_k", spec.ties_k);
        if (spec.dare_p > 0)
            cJSON_AddNumberToObject(o, "dare_p", spec.dare_p);
        if (P > 1) {
            cJSON *pg = cJSON_AddArrayToObject(o, "param_grid");
            for (int i = 0; i < P; i++) {
                cJSON *q = cJSON_CreateObject();
                if (spec.ties)
                    cJSON_AddNumberToObject(q, "ties_k", pk[i]);
                if (spec.dare_p > 0)
                    cJSON_AddNumberToObject(q, "dare_p", pp[i]);
                cJSON_AddNumberToObject(q, "alpha", search_alpha(cfg, best[i]));
                cJSON_AddNumberToObject(q, "norm_val",
                                        row_score(val + ((size_t)i * A + best[i]) * T, T, nval));
                char g[300];
                snprintf(g, sizeof g, "/%s/addition/%s/g%d", r->mode, method, i);
                cJSON_AddStringToObject(q, "grid", g);
                cJSON_AddItemToArray(pg, q);
            }
        }
        cJSON_AddItemToObject(o, "heads", heads);
        heads = NULL;
        snprintf(kp, sizeof kp, "modes.%s.addition.%s", r->mode, method);
        s = results_set(r->run_dir, kp, o);
    }
    cJSON_Delete(heads);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK && strcmp(cfg->merge.coef_search, "none") != 0)
        s = coef_search(r, method, &spec, val + (size_t)bp * A * T, best[bp], nval, sa);
    free(val);
    free(best);
    return s;
}

TdStatus addition_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        SingleAcc sa;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, mode_tasks(&r));
        if (s == TD_OK)
            s = ft_heads_load(&r);
        if (s == TD_OK) /* the normalisers: from the single stage's journal when it ran */
            s = single_measure(&r, &sa);
        for (int i = 0; i < cfg->merge.methods.count && s == TD_OK; i++)
            s = addition_method(&r, cfg->merge.methods.item[i], &sa);
        mode_free(&r);
    }
    return s;
}

/* ---- negation ---- */

/* The control task: data.tasks member (its frozen head), else a task file
 * (negation.control as a path, or <data.dir>/<control>.h5) whose head is the
 * prototypes of theta0's train features. */
static TdStatus control_setup(ModeRun *r, float **own_head)
{
    const TdConfig *cfg = r->cfg;
    const char *c = cfg->negation.control;
    int C = r->ntasks;
    *own_head = NULL;
    if (!c[0])
        return td_fail(TD_ERR_CONFIG, "negation stage: set negation.control (a task whose "
                                      "accuracy must be kept)");
    for (int k = 0; k < cfg->negation.targets.count; k++)
        if (!config_names_contains(&cfg->data.tasks, cfg->negation.targets.item[k]))
            return td_fail(TD_ERR_CONFIG, "negation.targets: '%s' is not in data.tasks",
                           cfg->negation.targets.item[k]);
    for (int j = 0; j < cfg->data.tasks.count; j++)
        if (strcmp(cfg->data.tasks.item[j], c) == 0) {
            memcpy(r->paths[C], r->paths[j], sizeof r->paths[C]);
            r->head[C] = r->head[j];
            r->classes[C] = r->classes[j];
            return TD_OK;
        }
    size_t l = strlen(c);
    if (strchr(c, '/') || (l > 3 && strcmp(c + l - 3, ".h5") == 0))
        snprintf(r->paths[C], sizeof r->paths[C], "%s", c);
    else
        snprintf(r->paths[C], sizeof r->paths[C], "%s/%s.h5", cfg->data.dir, c);
    if (access(r->paths[C], R_OK) != 0)
        return td_fail(TD_ERR_CONFIG,
                       "negation.control '%s' is neither a task of data.tasks nor a readable task "
                       "file (%s)",
                       c, r->paths[C]);
    TaskData td;
    TD_TRY(task_read_header(r->paths[C], &td));
    r->classes[C] = td.num_classes;
    task_free(&td);
    return TD_OK;
}

static TdStatus control_head(ModeRun *r, float **own)
{
    int C = r->ntasks, E = r->m.arch.out_dim;
    if (r->head[C])
        return TD_OK;
    EvalEncoder enc = {&r->m, NULL, NULL, NULL};
    float *f = NULL;
    int32_t *y = NULL;
    int64_t n = 0;
    TD_TRY(eval_features(g_rt.comm, &enc, r->paths[C], TASK_TRAIN, r->cfg->eval.batch,
                         r->cfg->eval.limit, &f, &y, &n));
    *own = calloc((size_t)r->classes[C] * E, sizeof **own);
    TdStatus s = *own ? TD_OK : td_fail(TD_ERR_NOMEM, "negation: out of memory");
    if (s == TD_OK)
        protos(f, y, n, E, r->classes[C], *own);
    free(f);
    free(y);
    r->head[C] = *own;
    return runtime_agree(g_rt.comm, s);
}

/* Item = alpha index * 2 + (0 target, 1 control). */
typedef struct {
    ModeRun *r;
    int target;
} NegCtx;

static TdStatus item_neg(void *ctx, int item, double *acc)
{
    NegCtx *n = ctx;
    ModeRun *r = n->r;
    int a = item / 2, which = item % 2 ? r->ntasks : n->target;
    EvalEncoder enc = mode_encoder(r, search_alpha(r->cfg, a));
    return eval_accuracy(MPI_COMM_SELF, &enc, r->paths[which], TASK_VAL, r->item_batch,
                         r->cfg->eval.limit, r->head[which], r->classes[which], acc);
}

static TdStatus world_acc(ModeRun *r, double c, int which, int split, double *acc)
{
    EvalEncoder enc = mode_encoder(r, c);
    return eval_accuracy(g_rt.comm, &enc, r->paths[which], split, r->cfg->eval.batch,
                         r->cfg->eval.limit, r->head[which], r->classes[which], acc);
}

static TdStatus negate_one(ModeRun *r, int j, double c0_val, double c0_test)
{
    const TdConfig *cfg = r->cfg;
    int A = search_alpha_count(cfg), C = r->ntasks;
    const char *task = cfg->data.tasks.item[j];
    MergeSpec spec;
    memset(&spec, 0, sizeof spec);
    spec.ntasks = 1;
    spec.task[0] = tv_task_index(&r->tv, task);
    spec.coef[0] = 1.0;
    TD_TRY(merge_collective(g_rt.comm, &r->tv, &r->m, &spec, r->tau));
    r->cur = NAN;
    char journal[800], key[40], what[200];
    snprintf(journal, sizeof journal, "%s/search/negation_%s_%s.jsonl", r->run_dir, r->mode, task);
    snprintf(what, sizeof what, "negation|%s|%s", task, r->paths[C]);
    search_key(r, what, key);
    double *val = calloc((size_t)A * 2, sizeof *val);
    TdStatus s = runtime_agree(g_rt.comm, val ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
    NegCtx nc = {r, j};
    PoolSpec ps = {journal, key, A * 2, cfg->merge.stop_after};
    if (s == TD_OK)
        s = search_pool(g_rt.comm, &ps, item_neg, &nc, val);
    if (s != TD_OK) {
        free(val);
        return s;
    }
    /* lowest target val accuracy with control kept; the smallest alpha on ties */
    double floor_acc = cfg->negation.threshold * c0_val;
    int best = -1;
    for (int a = 0; a < A; a++)
        if (val[2 * a + 1] >= floor_acc && (best < 0 || val[2 * a] < val[2 * best]))
            best = a;
    double alpha = best >= 0 ? search_alpha(cfg, best) : 0.0;
    if (best < 0)
        td_log("negation %s/%s: no alpha keeps the control accuracy: alpha 0", r->mode, task);
    double tt = 0, ct = 0;
    s = world_acc(r, alpha, j, TASK_TEST, &tt);
    if (s == TD_OK)
        s = world_acc(r, alpha, C, TASK_TEST, &ct);
    int ti = spec.task[0];
    if (s == TD_OK && g_rt.rank == 0) {
        char gp[300], kp[300], ap[300];
        snprintf(gp, sizeof gp, "/%s/negation/%s/val_acc", r->mode, task);
        snprintf(ap, sizeof ap, "/%s/negation/%s/alpha", r->mode, task);
        size_t dims[2] = {(size_t)A, 2};
        s = results_grid_write(r->run_dir, gp, val, 2, dims, "alpha,target|control");
        double *al = calloc((size_t)A, sizeof *al); /* the grid's axis beside it */
        for (int a = 0; al && a < A; a++)
            al[a] = search_alpha(cfg, a);
        if (s == TD_OK)
            s = al ? results_grid_write(r->run_dir, ap, al, 1, dims, "alpha")
                   : td_fail(TD_ERR_NOMEM, "negation: out of memory");
        free(al);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
        cJSON_AddNumberToObject(o, "alpha_index", best); /* -1: none kept the control */
        cJSON_AddNumberToObject(o, "target_test", tt);
        cJSON_AddNumberToObject(o, "control_test", ct);
        cJSON_AddNumberToObject(o, "theta0_target_test", r->tv.t0_test[ti]);
        cJSON_AddNumberToObject(o, "theta0_control_test", c0_test);
        cJSON_AddNumberToObject(o, "target_val", best >= 0 ? val[2 * best] : r->tv.t0_val[ti]);
        cJSON_AddNumberToObject(o, "control_val", best >= 0 ? val[2 * best + 1] : c0_val);
        cJSON_AddNumberToObject(o, "theta0_control_val", c0_val);
        cJSON_AddStringToObject(o, "control", cfg->negation.control);
        cJSON_AddNumberToObject(o, "threshold", cfg->negation.threshold);
        cJSON_AddStringToObject(o, "grid", gp);
        snprintf(kp, sizeof kp, "modes.%s.negation.%s", r->mode, task);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
        td_log("negation %s/%s: alpha %.4g, target test %.4f (theta0 %.4f), control %s test %.4f "
               "(theta0 %.4f)",
               r->mode, task, alpha, tt, r->tv.t0_test[ti], cfg->negation.control, ct, c0_test);
    }
    free(val);
    return runtime_agree(g_rt.comm, s);
}

TdStatus negation_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        float *own = NULL;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, mode_tasks(&r));
        if (s == TD_OK)
            s = runtime_agree(g_rt.comm, control_setup(&r, &own));
        if (s == TD_OK)
            s = control_head(&r, &own);
        double c0v = 0, c0t = 0;
        r.sign = -1;
        memset(r.tau, 0, s == TD_OK ? r.m.table.total * sizeof(float) : 0);
        r.cur = NAN;
        if (s == TD_OK)
            s = world_acc(&r, 0.0, r.ntasks, TASK_VAL, &c0v);
        if (s == TD_OK)
            s = world_acc(&r, 0.0, r.ntasks, TASK_TEST, &c0t);
        for (int j = 0; j < cfg->data.tasks.count && s == TD_OK; j++) {
            const char *task = cfg->data.tasks.item[j];
            if (cfg->negation.targets.count && !config_names_contains(&cfg->negation.targets, task))
                continue;
            if (strcmp(task, cfg->negation.control) == 0)
                continue;
            s = negate_one(&r, j, c0v, c0t);
        }
        free(own);
        mode_free(&r);
    }
    return s;
}
