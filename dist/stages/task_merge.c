#include "task_merge.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"
#include "merge.h"
#include "runtime.h"

void merge_run_dir(const TdConfig *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", cfg->run.out_dir, cfg->run.name);
}

void merge_tv_path(const TdConfig *cfg, const char *mode, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s/task_vectors_%s.h5", cfg->run.out_dir, cfg->run.name, mode);
}

/* ---- reading task-vector files ---- */

typedef struct {
    TvInfo *tv;
    int overflow;
} TaskIter;

static herr_t collect_task(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    TaskIter *it = op;
    if (it->tv->ntasks >= TV_MAX_TASKS || strlen(name) >= TD_CFG_NAME_MAX) {
        it->overflow = 1;
        return 1;
    }
    snprintf(it->tv->task[it->tv->ntasks++], TD_CFG_NAME_MAX, "%s", name);
    return 0;
}

static int dataset_exists(hid_t f, const char *path)
{
    htri_t e = 0;
    H5E_BEGIN_TRY { e = H5Lexists(f, path, H5P_DEFAULT); } H5E_END_TRY;
    return e > 0;
}

TdStatus tv_info_read(const char *path, const ParamTable *table, TvInfo *tv)
{
    memset(tv, 0, sizeof *tv);
    snprintf(tv->path, sizeof tv->path, "%s", path);
    TD_ALLOC(tv->mask, table->count);
    hid_t f = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        return td_fail(TD_ERR_IO, "task-vector file '%s': cannot open (run the finetune stage)",
                       path);
    char what[800];
    snprintf(what, sizeof what, "task-vector file '%s'", path);
    TdStatus s = h5u_check_format(f, what, "tadist-task-vectors-1", "tadist task-vector file");
    if (s == TD_OK)
        s = h5u_attr_read_str(f, what, "mode", tv->mode, sizeof tv->mode);
    if (s == TD_OK)
        s = h5u_attr_read_str(f, what, "base_checksum", tv->base_checksum,
                              sizeof tv->base_checksum);
    TaskIter it = {tv, 0};
    if (s == TD_OK && (H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_task, &it) < 0 ||
                       it.overflow))
        s = td_fail(TD_ERR_FORMAT, "task-vector file '%s': cannot list tasks (at most %d)", path,
                    TV_MAX_TASKS);
    for (int t = 0; t < tv->ntasks && s == TD_OK; t++) {
        hid_t g = H5Gopen2(f, tv->task[t], H5P_DEFAULT);
        snprintf(what, sizeof what, "task-vector file '%s', task '%s'", path, tv->task[t]);
        if (g < 0)
            s = td_fail(TD_ERR_FORMAT, "%s: cannot open its group", what);
        if (s == TD_OK)
            s = h5u_attr_read_str(g, what, "status", tv->status[t], sizeof tv->status[t]);
        const struct {
            const char *name;
            double *v;
        } nums[] = {{"acc_val", &tv->acc_val[t]},
                    {"acc_test", &tv->acc_test[t]},
                    {"acc_theta0_val", &tv->t0_val[t]},
                    {"acc_theta0_test", &tv->t0_test[t]}};
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && s == TD_OK; k++)
            s = h5u_attr_read_f64(g, what, nums[k].name, nums[k].v);
        if (g >= 0)
            H5Gclose(g);
        for (int i = 0; i < table->count && s == TD_OK; i++) {
            char dp[TD_CFG_NAME_MAX + TD_PARAM_NAME_MAX + 2];
            snprintf(dp, sizeof dp, "%s/%s", tv->task[t], table->info[i].name);
            int has = strcmp(tv->status[t], "ok") == 0 && dataset_exists(f, dp);
            if (t == 0)
                tv->mask[i] = (unsigned char)has;
            else if (has != tv->mask[i])
                s = td_fail(TD_ERR_FORMAT,
                            "task-vector file '%s': tasks '%s' and '%s' differ on tensor '%s'",
                            path, tv->task[0], tv->task[t], table->info[i].name);
        }
    }
    H5Fclose(f);
    return s;
}

void tv_info_free(TvInfo *tv)
{
    free(tv->mask);
    tv->mask = NULL;
}

int tv_task_index(const TvInfo *tv, const char *name)
{
    for (int t = 0; t < tv->ntasks; t++)
        if (strcmp(tv->task[t], name) == 0)
            return t;
    return -1;
}

static TdStatus read_tensor(hid_t f, const TvInfo *tv, int task, const ParamInfo *pi, float *out)
{
    char dp[TD_CFG_NAME_MAX + TD_PARAM_NAME_MAX + 2];
    snprintf(dp, sizeof dp, "%s/%s", tv->task[task], pi->name);
    hid_t d = -1;
    H5E_BEGIN_TRY { d = H5Dopen2(f, dp, H5P_DEFAULT); } H5E_END_TRY;
    if (d < 0)
        return td_fail(TD_ERR_FORMAT, "task-vector file '%s': no tensor '%s'", tv->path, dp);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    herr_t e = n == (hssize_t)pi->numel
                   ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : -1;
    H5Sclose(sp);
    H5Dclose(d);
    if (e < 0)
        return td_fail(TD_ERR_FORMAT, "task-vector file '%s': cannot read '%s' (%zu values)",
                       tv->path, dp, pi->numel);
    return TD_OK;
}

/* ---- the spec ---- */

TdStatus merge_spec_from_config(const TdConfig *cfg, const char *method, const TvInfo *tv,
                                MergeSpec *spec)
{
    memset(spec, 0, sizeof *spec);
    for (int j = 0; j < cfg->data.tasks.count; j++) {
        const char *name = cfg->data.tasks.item[j];
        int t = tv_task_index(tv, name);
        if (t < 0)
            return td_fail(TD_ERR_CONFIG, "task '%s' (data.tasks) is not in '%s'", name, tv->path);
        if (strcmp(tv->status[t], "ok") != 0)
            return td_fail(TD_ERR_CONFIG, "task '%s' in '%s' has status '%s', not ok", name,
                           tv->path, tv->status[t]);
        spec->task[spec->ntasks] = t;
        spec->coef[spec->ntasks++] = 1.0;
    }
    const TdMergeConfig *m = &cfg->merge;
    spec->ties_k = m->ties.k;
    spec->ties_global = strcmp(m->ties.scope, "global") == 0;
    spec->dare_seed = (unsigned long long)m->dare.seed;
    if (strcmp(method, "sum") == 0)
        return TD_OK;
    if (strcmp(method, "mean") == 0) {
        spec->mean = 1;
        return TD_OK;
    }
    if (strcmp(method, "dare") == 0 || strcmp(method, "dare_ties") == 0)
        spec->dare_p = m->dare.p;
    if (strcmp(method, "ties") == 0 || strcmp(method, "dare_ties") == 0) {
        spec->ties = 1;
        spec->mean = strcmp(m->ties.combine, "mean") == 0;
    } else if (strcmp(method, "dare") != 0) {
        return td_fail(TD_ERR_CONFIG, "unknown merge method '%s'", method);
    }
    return TD_OK;
}

/* ---- the collective merge ---- */

typedef struct {
    MPI_Comm comm;
    int rank, size;
    const TvInfo *tv;
    const ParamTable *tab;
    const MergeSpec *sp;
    hid_t f;
    int nown;              /* tasks of this rank: spec positions j with j % size == rank */
    int own[TV_MAX_TASKS];
    double thr[TV_MAX_TASKS]; /* global TIES thresholds, by spec position */
} MergeRun;

/* Reads tensor i of spec task j, DARE applied (coins keyed by the file's task index). */
static TdStatus load_dropped(const MergeRun *r, int j, int i, float *x)
{
    const ParamInfo *pi = &r->tab->info[i];
    TD_TRY(read_tensor(r->f, r->tv, r->sp->task[j], pi, x));
    if (r->sp->dare_p > 0)
        merge_dare(x, pi->numel, r->sp->dare_p, r->sp->dare_seed, (uint64_t)r->sp->task[j],
                   pi->offset);
    return TD_OK;
}

/* Global top-k thresholds of this rank's tasks, then summed over ranks. */
static TdStatus global_thresholds(MergeRun *r)
{
    size_t total = 0;
    for (int i = 0; i < r->tab->count; i++)
        if (r->tv->mask[i])
            total += r->tab->info[i].numel;
    float *all = NULL, *scratch = NULL;
    TdStatus s = TD_OK;
    if (r->nown > 0) {
        all = malloc((total + 1) * sizeof *all);
        scratch = malloc((total + 1) * sizeof *scratch);
        if (!all || !scratch)
            s = td_fail(TD_ERR_NOMEM, "merge: out of memory for TIES thresholds (%zu values)",
                        total);
    }
    for (int k = 0; k < r->nown && s == TD_OK; k++) {
        int j = r->own[k];
        size_t off = 0;
        for (int i = 0; i < r->tab->count && s == TD_OK; i++) {
            if (!r->tv->mask[i])
                continue;
            s = load_dropped(r, j, i, all + off);
            off += r->tab->info[i].numel;
        }
        if (s == TD_OK)
            r->thr[j] = merge_kth_largest_abs(all, total, merge_topk_count(total, r->sp->ties_k),
                                              scratch);
    }
    free(all);
    free(scratch);
    TD_TRY(runtime_agree(r->comm, s));
    if (MPI_Allreduce(MPI_IN_PLACE, r->thr, TV_MAX_TASKS, MPI_DOUBLE, MPI_SUM, r->comm) !=
        MPI_SUCCESS)
        return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
    return TD_OK;
}

typedef struct {
    float *x;      /* (own tasks, n) this rank's trimmed tensors */
    float *scr;    /* (n) selection scratch */
    double *acc;   /* (3n) the sum (for TIES: the sign election), agreeing sums, counts */
} MergeBufs;

/* Tensor i: this rank's contribution, the reduction, and the result in out. */
static TdStatus merge_tensor(const MergeRun *r, int i, MergeBufs *b, float *out)
{
    const MergeSpec *sp = r->sp;
    const size_t n = r->tab->info[i].numel;
    memset(b->acc, 0, n * sizeof *b->acc);
    TdStatus s = TD_OK;
    for (int k = 0; k < r->nown && s == TD_OK; k++) {
        int j = r->own[k];
        float *x = b->x + (size_t)k * n;
        s = load_dropped(r, j, i, x);
        if (s != TD_OK)
            break;
        if (sp->ties) {
            float thr = sp->ties_global
                            ? (float)r->thr[j]
                            : merge_kth_largest_abs(x, n, merge_topk_count(n, sp->ties_k), b->scr);
            merge_trim(x, n, thr);
        }
        merge_accum(b->acc, x, sp->coef[j], n);
    }
    TD_TRY(runtime_agree(r->comm, s));
    if (MPI_Allreduce(MPI_IN_PLACE, b->acc, (int)n, MPI_DOUBLE, MPI_SUM, r->comm) != MPI_SUCCESS)
        return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
    if (!sp->ties) {
        merge_to_float(out, b->acc, sp->mean ? 1.0 / sp->ntasks : 1.0, n);
        return TD_OK;
    }
    /* acc[0..n) is the sum that elects the sign; agreeing sums and counts follow */
    double *agree = b->acc + n;
    memset(agree, 0, 2 * n * sizeof *agree);
    for (int k = 0; k < r->nown; k++)
        merge_ties_agree(agree, agree + n, b->acc, b->x + (size_t)k * n, sp->coef[r->own[k]], n);
    int e = MPI_Allreduce(MPI_IN_PLACE, agree, (int)(2 * n), MPI_DOUBLE, MPI_SUM, r->comm);
    if (e == MPI_SUCCESS)
        merge_ties_finish(out, agree, agree + n, n, sp->mean);
    else
        return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
    return TD_OK;
}

/* Opens r for spec over comm (base checksum, file, buffers); agreed. */
static TdStatus merge_run_open(MergeRun *r, MergeBufs *b, MPI_Comm comm, const TvInfo *tv,
                               const VitModel *theta0, const MergeSpec *spec)
{
    memset(r, 0, sizeof *r);
    memset(b, 0, sizeof *b);
    r->comm = comm;
    MPI_Comm_rank(comm, &r->rank);
    MPI_Comm_size(comm, &r->size);
    r->tv = tv;
    r->tab = &theta0->table;
    r->sp = spec;
    r->f = -1;
    for (int j = r->rank; j < spec->ntasks; j += r->size)
        r->own[r->nown++] = j;
    TdStatus s = TD_OK;
    if (strcmp(tv->base_checksum, theta0->checksum) != 0)
        s = td_fail(TD_ERR_FORMAT,
                    "task-vector file '%s' was made from another base model (checksum %s, "
                    "theta0 has %s)",
                    tv->path, tv->base_checksum, theta0->checksum);
    if (s == TD_OK && spec->ntasks < 1)
        s = td_fail(TD_ERR_ARG, "merge: no task to merge");
    if (s == TD_OK && r->nown > 0) {
        H5E_BEGIN_TRY { r->f = H5Fopen(tv->path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
        if (r->f < 0)
            s = td_fail(TD_ERR_IO, "task-vector file '%s': cannot open", tv->path);
    }
    size_t maxn = 1;
    for (int i = 0; i < r->tab->count; i++)
        if (tv->mask[i] && r->tab->info[i].numel > maxn)
            maxn = r->tab->info[i].numel;
    if (s == TD_OK) {
        b->x = malloc(((size_t)r->nown + 1) * maxn * sizeof *b->x);
        b->scr = malloc(maxn * sizeof *b->scr);
        b->acc = malloc(3 * maxn * sizeof *b->acc);
        if (!b->x || !b->scr || !b->acc)
            s = td_fail(TD_ERR_NOMEM, "merge: out of memory");
    }
    s = runtime_agree(comm, s);
    if (s == TD_OK && spec->ties && spec->ties_global)
        s = global_thresholds(r);
    return s;
}

static void merge_run_close(MergeRun *r, MergeBufs *b)
{
    if (r->f >= 0)
        H5Fclose(r->f);
    r->f = -1;
    free(b->x);
    free(b->scr);
    free(b->acc);
    memset(b, 0, sizeof *b);
}

TdStatus merge_collective(MPI_Comm comm, const TvInfo *tv, const VitModel *theta0,
                          const MergeSpec *spec, float *tau)
{
    MergeRun r;
    MergeBufs b;
    memset(tau, 0, theta0->table.total * sizeof *tau);
    TdStatus s = merge_run_open(&r, &b, comm, tv, theta0, spec);
    for (int i = 0; i < r.tab->count && s == TD_OK; i++)
        if (tv->mask[i])
            s = merge_tensor(&r, i, &b, params_at(r.tab, tau, i));
    merge_run_close(&r, &b);
    return s;
}

/* Tensor i of every task as its term of the merge (merge_rows): this rank's
 * tasks into their rows of all (ntasks x n, zero elsewhere), then one sum
 * over ranks, exact because each entry has one non-zero term. */
static TdStatus rows_tensor(const MergeRun *r, int i, MergeBufs *b, float *all)
{
    const MergeSpec *sp = r->sp;
    const size_t n = r->tab->info[i].numel;
    TdStatus s = TD_OK;
    memset(all, 0, (size_t)sp->ntasks * n * sizeof *all);
    memset(b->acc, 0, n * sizeof *b->acc);
    for (int k = 0; k < r->nown && s == TD_OK; k++) {
        int j = r->own[k];
        float *x = b->x + (size_t)k * n;
        s = load_dropped(r, j, i, x);
        if (s == TD_OK && sp->ties) {
            float thr = sp->ties_global
                            ? (float)r->thr[j]
                            : merge_kth_largest_abs(x, n, merge_topk_count(n, sp->ties_k), b->scr);
            merge_trim(x, n, thr);
            merge_accum(b->acc, x, sp->coef[j], n);
        }
    }
    TD_TRY(runtime_agree(r->comm, s));
    double *cnt = b->acc + n;
    if (sp->ties) { /* the elected sign, then the count of agreeing tasks */
        if (MPI_Allreduce(MPI_IN_PLACE, b->acc, (int)n, MPI_DOUBLE, MPI_SUM, r->comm) !=
            MPI_SUCCESS)
            return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
        memset(cnt, 0, 2 * n * sizeof *cnt);
        for (int k = 0; k < r->nown; k++)
            merge_ties_agree(cnt + n, cnt, b->acc, b->x + (size_t)k * n, sp->coef[r->own[k]], n);
        if (MPI_Allreduce(MPI_IN_PLACE, cnt, (int)n, MPI_DOUBLE, MPI_SUM, r->comm) != MPI_SUCCESS)
            return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
    }
    for (int k = 0; k < r->nown; k++) {
        int j = r->own[k];
        const float *x = b->x + (size_t)k * n;
        float *out = all + (size_t)j * n;
        double w = sp->coef[j];
        for (size_t e = 0; e < n; e++) {
            double v = w * (double)x[e];
            if (sp->ties) {
                int agree = v != 0 && b->acc[e] != 0 && (v > 0) == (b->acc[e] > 0);
                v = !agree ? 0.0 : sp->mean ? v / cnt[e] : v;
            } else if (sp->mean) {
                v /= sp->ntasks;
            }
            out[e] = (float)v;
        }
    }
    if (MPI_Allreduce(MPI_IN_PLACE, all, (int)((size_t)sp->ntasks * n), MPI_FLOAT, MPI_SUM,
                      r->comm) != MPI_SUCCESS)
        return runtime_agree(r->comm, td_fail(TD_ERR_MPI, "merge: MPI_Allreduce failed"));
    return TD_OK;
}

TdStatus merge_rows(MPI_Comm comm, const TvInfo *tv, const VitModel *theta0,
                    const MergeSpec *spec, float *rows, int write)
{
    MergeRun r;
    MergeBufs b;
    TdStatus s = merge_run_open(&r, &b, comm, tv, theta0, spec);
    size_t n = 0, maxn = 1;
    for (int i = 0; i < theta0->table.count; i++)
        if (tv->mask[i]) {
            n += theta0->table.info[i].numel;
            if (theta0->table.info[i].numel > maxn)
                maxn = theta0->table.info[i].numel;
        }
    float *all = s == TD_OK ? malloc((size_t)spec->ntasks * maxn * sizeof *all) : NULL;
    if (s == TD_OK)
        s = runtime_agree(comm, all ? TD_OK : td_fail(TD_ERR_NOMEM, "merge: out of memory"));
    size_t off = 0;
    for (int i = 0; i < r.tab->count && s == TD_OK; i++) {
        if (!tv->mask[i])
            continue;
        const size_t m = r.tab->info[i].numel;
        s = rows_tensor(&r, i, &b, all);
        for (int j = 0; s == TD_OK && write && j < spec->ntasks; j++)
            memcpy(rows + (size_t)j * n + off, all + (size_t)j * m, m * sizeof *rows);
        off += m;
    }
    free(all);
    merge_run_close(&r, &b);
    return s;
}
