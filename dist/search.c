#include "search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "evaluate.h"
#include "heads.h"
#include "model_io.h"
#include "results.h"
#include "runtime.h"
#include "task_io.h"
#include "task_merge.h"

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
                int item;
                double v;
                size_t len = strlen(line);
                /* a line cut by a kill has no newline: ignored */
                if (len == 0 || line[len - 1] != '\n' ||
                    sscanf(line, "{\"item\":%d,\"value\":%lf}", &item, &v) != 2 || item < 0 ||
                    item >= p->nitems)
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

/* Runs the pending items with a shared counter; vals gets this rank's results. */
static TdStatus pool_work(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx,
                          const int *pending, int npending, double *vals, int *stopped)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    long *counter = NULL;
    MPI_Win win;
    if (MPI_Win_allocate(rank == 0 ? (MPI_Aint)sizeof(long) : 0, sizeof(long), MPI_INFO_NULL, comm,
                         &counter, &win) != MPI_SUCCESS)
        return runtime_agree(comm, td_fail(TD_ERR_MPI, "search: MPI_Win_allocate failed"));
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win);
        *counter = 0;
        MPI_Win_unlock(0, win);
    }
    MPI_Barrier(comm);
    int fd = open(p->journal, O_WRONLY | O_APPEND);
    TdStatus s = fd < 0 ? td_fail(TD_ERR_IO, "cannot open journal '%s': %s", p->journal,
                                  strerror(errno))
                        : TD_OK;
    MPI_Win_lock_all(0, win);
    const long one = 1;
    double busy = 0;
    int count = 0;
    while (s == TD_OK) {
        long idx = 0;
        MPI_Fetch_and_op(&one, &idx, MPI_LONG, 0, 0, MPI_SUM, win);
        MPI_Win_flush(0, win);
        if (idx >= npending)
            break;
        if (p->stop_after > 0 && idx >= p->stop_after) {
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
    MPI_Win_unlock_all(win);
    if (fd >= 0)
        close(fd);
    s = runtime_agree(comm, s); /* before the collective free */
    MPI_Win_free(&win);
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
} ModeRun;

static void mode_free(ModeRun *r)
{
    heads_free(&r->heads);
    tv_info_free(&r->tv);
    if (r->m.params)
        model_free(&r->m);
    td_free(r->tau);
    td_free(r->buf);
}

static TdStatus mkdir_one(const char *path)
{
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return td_fail(TD_ERR_IO, "cannot create directory '%s': %s", path, strerror(errno));
    return TD_OK;
}

static TdStatus mode_open(ModeRun *r, const TdConfig *cfg, const char *mode)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->mode = mode;
    r->ntk = strcmp(mode, "ntk") == 0;
    r->cur = NAN;
    r->sign = 1;
    merge_run_dir(cfg, r->run_dir, sizeof r->run_dir);
    int size;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    r->item_batch = (cfg->eval.batch + size - 1) / size;
    char tvp[700];
    merge_tv_path(cfg, mode, tvp, sizeof tvp);
    TD_TRY(runtime_agree(MPI_COMM_WORLD, model_read(cfg->model.path, &r->m)));
    TD_TRY(runtime_agree(MPI_COMM_WORLD, tv_info_read(tvp, &r->m.table, &r->tv)));
    TdConfig hc = *cfg; /* the heads the finetune stage wrote */
    snprintf(hc.heads.source, sizeof hc.heads.source, "file");
    if (strlen(r->run_dir) + 10 > sizeof hc.heads.file)
        return runtime_agree(MPI_COMM_WORLD,
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
        s = mkdir_one(d);
    }
    return runtime_agree(MPI_COMM_WORLD, s);
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

/* ---- single ---- */

TdStatus single_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    char run_dir[600];
    merge_run_dir(cfg, run_dir, sizeof run_dir);
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK && g_rt.rank == 0; k++) {
        const char *mode = cfg->finetune.modes.item[k];
        VitModel m;
        TvInfo tv;
        char tvp[700];
        merge_tv_path(cfg, mode, tvp, sizeof tvp);
        s = model_read(cfg->model.path, &m);
        if (s != TD_OK)
            break;
        s = tv_info_read(tvp, &m.table, &tv);
        cJSON *o = cJSON_CreateObject();
        double mv = 0, mt = 0;
        for (int j = 0; j < cfg->data.tasks.count && s == TD_OK; j++) {
            int t = tv_task_index(&tv, cfg->data.tasks.item[j]);
            if (t < 0) {
                s = td_fail(TD_ERR_CONFIG, "task '%s' is not in '%s'", cfg->data.tasks.item[j],
                            tvp);
                break;
            }
            cJSON *q = cJSON_AddObjectToObject(o, tv.task[t]);
            cJSON_AddNumberToObject(q, "val", tv.acc_val[t]);
            cJSON_AddNumberToObject(q, "test", tv.acc_test[t]);
            cJSON_AddNumberToObject(q, "theta0_val", tv.t0_val[t]);
            cJSON_AddNumberToObject(q, "theta0_test", tv.t0_test[t]);
            cJSON_AddStringToObject(q, "status", tv.status[t]);
            mv += tv.acc_val[t];
            mt += tv.acc_test[t];
            td_log("single %s/%s: val %.4f test %.4f (theta0 val %.4f test %.4f)", mode,
                   tv.task[t], tv.acc_val[t], tv.acc_test[t], tv.t0_val[t], tv.t0_test[t]);
        }
        char key[128];
        snprintf(key, sizeof key, "modes.%s.single", mode);
        if (s == TD_OK) {
            td_log("single %s: mean val %.4f test %.4f", mode, mv / cfg->data.tasks.count,
                   mt / cfg->data.tasks.count);
            s = results_set(run_dir, key, o);
        } else {
            cJSON_Delete(o);
        }
        tv_info_free(&tv);
        model_free(&m);
    }
    return runtime_agree(MPI_COMM_WORLD, s);
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

/* Test features of the current encoder, once per task, scored by every head set. */
typedef struct {
    double abs[2][TV_MAX_TASKS]; /* [theta0, refit][task] */
} HeadScores;

static TdStatus score_heads(ModeRun *r, double alpha, int refit, HeadScores *hs)
{
    const TdEvalConfig *e = &r->cfg->eval;
    EvalEncoder enc = mode_encoder(r, alpha);
    int E = r->m.arch.out_dim;
    for (int t = 0; t < r->ntasks; t++) {
        float *ft = NULL, *fr = NULL, *w = NULL;
        int32_t *yt = NULL, *yr = NULL;
        int64_t nt = 0, nr = 0;
        TD_TRY(eval_features(MPI_COMM_WORLD, &enc, r->paths[t], TASK_TEST, e->batch, e->limit, &ft,
                             &yt, &nt));
        hs->abs[0][t] = eval_head_accuracy(ft, yt, nt, E, r->head[t], r->classes[t]);
        TdStatus s = TD_OK;
        if (refit) {
            s = eval_features(MPI_COMM_WORLD, &enc, r->paths[t], TASK_TRAIN, e->batch, e->limit,
                              &fr, &yr, &nr);
            w = calloc((size_t)r->classes[t] * E, sizeof *w);
            if (s == TD_OK && w) {
                protos(fr, yr, nr, E, r->classes[t], w);
                hs->abs[1][t] = eval_head_accuracy(ft, yt, nt, E, w, r->classes[t]);
            } else if (s == TD_OK) {
                s = td_fail(TD_ERR_NOMEM, "search: out of memory");
            }
        }
        free(ft), free(yt), free(fr), free(yr), free(w);
        TD_TRY(runtime_agree(MPI_COMM_WORLD, s));
    }
    return TD_OK;
}

static cJSON *head_json(const ModeRun *r, const double *abs, const double *norm)
{
    cJSON *o = cJSON_CreateObject(), *pt = cJSON_CreateObject();
    double ma = 0, mn = 0;
    for (int t = 0; t < r->ntasks; t++) {
        cJSON *q = cJSON_AddObjectToObject(pt, r->cfg->data.tasks.item[t]);
        cJSON_AddNumberToObject(q, "abs", abs[t]);
        cJSON_AddNumberToObject(q, "norm", abs[t] / norm[t]);
        ma += abs[t];
        mn += abs[t] / norm[t];
    }
    cJSON_AddNumberToObject(o, "abs_test", ma / r->ntasks);
    cJSON_AddNumberToObject(o, "norm_test", mn / r->ntasks);
    cJSON_AddItemToObject(o, "per_task", pt);
    return o;
}

/* The task layout of data.tasks: paths, frozen heads, normalisers. */
static TdStatus mode_tasks(ModeRun *r, double *norm_val, double *norm_test)
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
        if (norm_val)
            norm_val[j] = r->tv.acc_val[t] > 0 ? r->tv.acc_val[t] : 1.0;
        if (norm_test)
            norm_test[j] = r->tv.acc_test[t] > 0 ? r->tv.acc_test[t] : 1.0;
    }
    return TD_OK;
}

static TdStatus addition_method(ModeRun *r, const char *method)
{
    const TdConfig *cfg = r->cfg;
    double nval[TV_MAX_TASKS], ntest[TV_MAX_TASKS];
    TD_TRY(runtime_agree(MPI_COMM_WORLD, mode_tasks(r, nval, ntest)));
    int T = r->ntasks, A = search_alpha_count(cfg);
    MergeSpec spec;
    TD_TRY(runtime_agree(MPI_COMM_WORLD, merge_spec_from_config(cfg, method, &r->tv, &spec)));
    double t0 = td_wall();
    TD_TRY(merge_collective(MPI_COMM_WORLD, &r->tv, &r->m, &spec, r->tau));
    r->cur = NAN;
    td_log("addition %s/%s: merged %d task vectors in %.2fs", r->mode, method, spec.ntasks,
           td_wall() - t0);
    char journal[800], key[40];
    snprintf(journal, sizeof journal, "%s/search/addition_%s_%s.jsonl", r->run_dir, r->mode,
             method);
    search_key(r, method, key);
    double *val = calloc((size_t)A * T, sizeof *val), *norm = calloc((size_t)A * T, sizeof *norm);
    TdStatus s = val && norm ? TD_OK : td_fail(TD_ERR_NOMEM, "search: out of memory");
    s = runtime_agree(MPI_COMM_WORLD, s);
    PoolSpec ps = {journal, key, A * T, cfg->merge.stop_after};
    t0 = td_wall();
    if (s == TD_OK)
        s = search_pool(MPI_COMM_WORLD, &ps, item_val, r, val);
    int best = 0;
    if (s == TD_OK) {
        for (int i = 0; i < A * T; i++)
            norm[i] = val[i] / nval[i % T];
        best = search_choose_alpha(val, A, T, nval);
        double m = 0;
        for (int t = 0; t < T; t++)
            m += norm[(size_t)best * T + t];
        td_log("addition %s/%s: %d alphas x %d tasks searched in %.2fs; alpha %.4g (mean "
               "normalised val %.4f)",
               r->mode, method, A, T, td_wall() - t0, search_alpha(cfg, best), m / T);
    }
    double alpha = search_alpha(cfg, best);
    int refit = config_names_contains(&cfg->eval.heads, "refit");
    HeadScores hs;
    memset(&hs, 0, sizeof hs);
    if (s == TD_OK)
        s = score_heads(r, alpha, refit, &hs);
    if (s == TD_OK && g_rt.rank == 0) {
        char gp[300], kp[300];
        snprintf(gp, sizeof gp, "/%s/addition/%s", r->mode, method);
        size_t dims[2] = {(size_t)A, (size_t)T};
        char p1[320], p2[320], p3[320];
        snprintf(p1, sizeof p1, "%s/val_acc", gp);
        snprintf(p2, sizeof p2, "%s/val_norm", gp);
        snprintf(p3, sizeof p3, "%s/alpha", gp);
        double *al = calloc((size_t)A, sizeof *al);
        for (int a = 0; al && a < A; a++)
            al[a] = search_alpha(cfg, a);
        s = al ? results_grid_write(r->run_dir, p1, val, 2, dims, "alpha,task")
               : td_fail(TD_ERR_NOMEM, "out of memory");
        if (s == TD_OK)
            s = results_grid_write(r->run_dir, p2, norm, 2, dims, "alpha,task");
        if (s == TD_OK)
            s = results_grid_write(r->run_dir, p3, al, 1, dims, "alpha");
        free(al);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
        cJSON_AddNumberToObject(o, "alpha_index", best);
        cJSON_AddStringToObject(o, "grid", gp);
        double mvn = 0;
        for (int t = 0; t < T; t++)
            mvn += norm[(size_t)best * T + t];
        cJSON_AddNumberToObject(o, "norm_val", mvn / T);
        cJSON *h = cJSON_AddObjectToObject(o, "heads");
        cJSON_AddItemToObject(h, "theta0", head_json(r, hs.abs[0], ntest));
        if (refit)
            cJSON_AddItemToObject(h, "refit", head_json(r, hs.abs[1], ntest));
        cJSON_AddStringToObject(h, "finetuned", "not trained");
        snprintf(kp, sizeof kp, "modes.%s.addition.%s", r->mode, method);
        if (s == TD_OK)
            s = results_set(r->run_dir, kp, o);
        else
            cJSON_Delete(o);
        double ma = 0, mn = 0;
        for (int t = 0; t < T; t++) {
            ma += hs.abs[0][t];
            mn += hs.abs[0][t] / ntest[t];
        }
        td_log("addition %s/%s at alpha %.4g: test abs %.4f norm %.4f (theta0 heads)", r->mode,
               method, alpha, ma / T, mn / T);
        if (refit) {
            ma = mn = 0;
            for (int t = 0; t < T; t++) {
                ma += hs.abs[1][t];
                mn += hs.abs[1][t] / ntest[t];
            }
            td_log("addition %s/%s at alpha %.4g: test abs %.4f norm %.4f (refit heads)",
                   r->mode, method, alpha, ma / T, mn / T);
        }
    }
    free(val);
    free(norm);
    return runtime_agree(MPI_COMM_WORLD, s);
}

static TdStatus check_heads_option(const TdConfig *cfg)
{
    if (cfg->finetune.train_heads)
        return td_fail(TD_ERR_CONFIG, "eval: fine-tuned heads are not stored by the finetune "
                                      "stage yet (finetune.train_heads)");
    return TD_OK;
}

TdStatus addition_stage(const TdConfig *cfg)
{
    TD_TRY(runtime_agree(MPI_COMM_WORLD, check_heads_option(cfg)));
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        for (int i = 0; i < cfg->merge.methods.count && s == TD_OK; i++)
            s = addition_method(&r, cfg->merge.methods.item[i]);
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
    TD_TRY(eval_features(MPI_COMM_WORLD, &enc, r->paths[C], TASK_TRAIN, r->cfg->eval.batch,
                         r->cfg->eval.limit, &f, &y, &n));
    *own = calloc((size_t)r->classes[C] * E, sizeof **own);
    TdStatus s = *own ? TD_OK : td_fail(TD_ERR_NOMEM, "negation: out of memory");
    if (s == TD_OK)
        protos(f, y, n, E, r->classes[C], *own);
    free(f);
    free(y);
    r->head[C] = *own;
    return runtime_agree(MPI_COMM_WORLD, s);
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
    return eval_accuracy(MPI_COMM_WORLD, &enc, r->paths[which], split, r->cfg->eval.batch,
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
    TD_TRY(merge_collective(MPI_COMM_WORLD, &r->tv, &r->m, &spec, r->tau));
    r->cur = NAN;
    char journal[800], key[40], what[200];
    snprintf(journal, sizeof journal, "%s/search/negation_%s_%s.jsonl", r->run_dir, r->mode, task);
    snprintf(what, sizeof what, "negation|%s|%s", task, r->paths[C]);
    search_key(r, what, key);
    double *val = calloc((size_t)A * 2, sizeof *val);
    TdStatus s = runtime_agree(MPI_COMM_WORLD, val ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
    NegCtx nc = {r, j};
    PoolSpec ps = {journal, key, A * 2, cfg->merge.stop_after};
    if (s == TD_OK)
        s = search_pool(MPI_COMM_WORLD, &ps, item_neg, &nc, val);
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
        char gp[300], kp[300];
        snprintf(gp, sizeof gp, "/%s/negation/%s/val_acc", r->mode, task);
        size_t dims[2] = {(size_t)A, 2};
        s = results_grid_write(r->run_dir, gp, val, 2, dims, "alpha,target|control");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha", alpha);
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
    return runtime_agree(MPI_COMM_WORLD, s);
}

TdStatus negation_stage(const TdConfig *cfg)
{
    TdStatus s = TD_OK;
    for (int k = 0; k < cfg->finetune.modes.count && s == TD_OK; k++) {
        ModeRun r;
        float *own = NULL;
        s = mode_open(&r, cfg, cfg->finetune.modes.item[k]);
        if (s == TD_OK)
            s = runtime_agree(MPI_COMM_WORLD, mode_tasks(&r, NULL, NULL));
        if (s == TD_OK)
            s = runtime_agree(MPI_COMM_WORLD, control_setup(&r, &own));
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
