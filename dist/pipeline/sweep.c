#include "sweep.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "evaluate.h"
#include "h5util.h"
#include "heads.h"
#include "model_io.h"
#include "pipeline.h"
#include "pretrain.h"
#include "report.h"
#include "results.h"
#include "runtime.h"
#include "study.h"
#include "workqueue.h"

/* "finetune.lr=1e-4 run.seed=2": the values that make run r */
static void run_label(const TdSweep *sw, long r, char *buf, size_t n)
{
    int coord[TD_SWEEP_MAX_AXES];
    config_sweep_coords(sw, r, coord);
    size_t at = 0;
    buf[0] = '\0';
    for (int a = 0; a < sw->naxes && at < n; a++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s=%s", a ? " " : "", sw->key[a],
                               sw->val[a][coord[a]]);
}

/* The configuration of run r, in <dir>/runs/rNNN, with the shared heads file. */
static TdStatus run_config(const TdConfig *base, const TdSweep *sw, long r, const char *dir,
                           const char *heads_file, TdConfig *out)
{
    TD_TRY(config_sweep_derive(base, sw, r, out));
    if (strlen(dir) + 6 >= sizeof out->run.out_dir)
        return td_fail(TD_ERR_CONFIG, "sweep directory '%s' is too long", dir);
    snprintf(out->run.out_dir, sizeof out->run.out_dir, "%s/runs", dir);
    snprintf(out->run.name, sizeof out->run.name, "r%03ld", r);
    if (heads_file[0]) {
        snprintf(out->heads.source, sizeof out->heads.source, "file");
        snprintf(out->heads.file, sizeof out->heads.file, "%s", heads_file);
    }
    return TD_OK;
}

static int run_done(const char *dir, long r)
{
    char rd[700];
    snprintf(rd, sizeof rd, "%s/runs/r%03ld", dir, r);
    cJSON *root = NULL;
    if (results_load(rd, &root) != TD_OK) {
        td_error_clear();
        return 0;
    }
    const cJSON *sr = cJSON_GetObjectItemCaseSensitive(root, "sweep_run");
    int done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sr, "done"));
    cJSON_Delete(root);
    return done;
}

/* Rank 0: the configuration of the sweep, kept as <dir>/sweep.cfg; a rerun
 * must have the same one (done runs are reused, so they must be comparable). */
static TdStatus check_same_sweep(const TdConfig *cfg, const char *dir)
{
    char path[700], tmp[720];
    snprintf(path, sizeof path, "%s/sweep.cfg", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    TdConfig c = *cfg; /* what may change between a run and its resumption */
    memset(&c.run.stages, 0, sizeof c.run.stages);
    memset(&c.blas, 0, sizeof c.blas);
    c.sweep.ranks_per_run = 1;
    c.finetune.stop_after = 0;
    c.merge.stop_after = 0;
    TD_TRY(fs_mkdir_p(dir));
    FILE *f = fopen(tmp, "w");
    if (!f)
        return td_fail(TD_ERR_IO, "cannot write '%s'", tmp);
    fprintf(f, "# the sweep's configuration (run.stages, blas, sweep.ranks_per_run and the\n"
               "# stop_after test switches excluded): a rerun must match it to resume\n");
    config_print(&c, f);
    if (fclose(f) != 0)
        return td_fail(TD_ERR_IO, "cannot write '%s'", tmp);
    FILE *old = fopen(path, "r");
    if (!old)
        return rename(tmp, path) == 0 ? TD_OK
                                      : td_fail(TD_ERR_IO, "cannot rename '%s'", tmp);
    FILE *now = fopen(tmp, "r");
    int same = now != NULL, a = 0, b = 0, line = 1;
    while (same && (a = fgetc(old)) != EOF) {
        b = fgetc(now);
        same = a == b;
        line += a == '\n';
    }
    if (same && now && fgetc(now) != EOF)
        same = 0;
    fclose(old);
    if (now)
        fclose(now);
    remove(tmp);
    if (!same)
        return td_fail(TD_ERR_CONFIG,
                       "%s: line %d: this directory holds a sweep with another configuration; "
                       "set run.name to start a new one (or delete the directory)",
                       path, line);
    return TD_OK;
}

/* What every run shares, computed once over all ranks: theta0's heads,
 * written to <dir>/heads.h5 (unless heads.source is already a file; heads_file
 * gets the path or ""), and theta0's features, kept in <dir>/theta0_features
 * (evaluate.h) as the runs first ask for them. */
static TdStatus shared_theta0(const TdConfig *cfg, const char *dir, char *heads_file, size_t n)
{
    heads_file[0] = '\0';
    if (strlen(dir) + 20 >= TD_CFG_STR_MAX)
        return td_fail(TD_ERR_CONFIG, "sweep directory '%s' is too long", dir);
    VitModel m;
    TD_TRY(runtime_agree(MPI_COMM_WORLD, model_read(cfg->model.path, &m)));
    char feat_dir[TD_CFG_STR_MAX];
    snprintf(feat_dir, sizeof feat_dir, "%s/theta0_features", dir);
    TdStatus s = runtime_agree(MPI_COMM_WORLD, g_rt.rank == 0 ? fs_mkdir_p(feat_dir) : TD_OK);
    if (s == TD_OK)
        eval_theta0_cache(feat_dir, m.checksum);
    int have = 1;
    if (s == TD_OK && strcmp(cfg->heads.source, "file") != 0) {
        snprintf(heads_file, n, "%s/heads.h5", dir);
        have = g_rt.rank == 0 ? access(heads_file, F_OK) == 0 : 0;
        MPI_Bcast(&have, 1, MPI_INT, 0, MPI_COMM_WORLD);
        if (have)
            td_log("sweep: theta0's heads from %s (built earlier)", heads_file);
    }
    if (s == TD_OK && !have) {
        HeadSet h;
        s = heads_build(cfg, &m, &h);
        if (s == TD_OK) {
            s = heads_write(heads_file, cfg, &m, &h);
            heads_free(&h);
        }
        if (s == TD_OK)
            td_log("sweep: theta0's %s heads written to %s, shared by every run",
                   cfg->heads.source, heads_file);
    }
    model_free(&m);
    return s;
}

/* One run on this rank's group (g_rt.comm = the group). */
static TdStatus one_run(const TdConfig *cfg, const TdSweep *sw, long r, const char *dir,
                        const char *heads_file, long nruns)
{
    TdConfig *rc = malloc(sizeof *rc);
    TdStatus s = rc ? run_config(cfg, sw, r, dir, heads_file, rc)
                    : td_fail(TD_ERR_NOMEM, "out of memory");
    s = runtime_agree(g_rt.comm, s);
    char label[1024];
    run_label(sw, r, label, sizeof label);
    double t0 = td_wall();
    if (s == TD_OK) {
        td_log("sweep run %ld of %ld on %d rank(s): %s", r, nruns, g_rt.size, label);
        s = pipeline_stages(rc, "pretrain");
    }
    if (s == TD_OK) {
        char rd[700];
        study_run_dir(rc, rd, sizeof rd);
        cJSON *o = g_rt.rank == 0 ? cJSON_CreateObject() : NULL;
        if (o) {
            cJSON_AddNumberToObject(o, "index", (double)r);
            cJSON_AddStringToObject(o, "label", label);
            cJSON *vals = cJSON_AddObjectToObject(o, "values");
            int coord[TD_SWEEP_MAX_AXES];
            config_sweep_coords(sw, r, coord);
            for (int a = 0; a < sw->naxes && vals; a++)
                cJSON_AddStringToObject(vals, sw->key[a], sw->val[a][coord[a]]);
            cJSON_AddNumberToObject(o, "seconds", td_wall() - t0);
            cJSON_AddBoolToObject(o, "done", 1);
        }
        s = runtime_agree(g_rt.comm, g_rt.rank == 0 ? (o ? results_set(rd, "sweep_run", o)
                                                         : td_fail(TD_ERR_NOMEM, "out of memory"))
                                                    : TD_OK);
    }
    if (s == TD_OK)
        td_log("sweep run %ld done in %.1f s", r, td_wall() - t0);
    free(rc);
    return s;
}

TdStatus sweep_run(const TdConfig *cfg)
{
    TdSweep *sw = malloc(sizeof *sw);
    TdStatus s = sw ? config_sweep_parse(cfg, sw) : td_fail(TD_ERR_NOMEM, "out of memory");
    TD_TRY(runtime_agree(MPI_COMM_WORLD, s));
    char dir[600], heads_file[TD_CFG_STR_MAX];
    study_run_dir(cfg, dir, sizeof dir);
    s = runtime_agree(MPI_COMM_WORLD, g_rt.rank == 0 ? check_same_sweep(cfg, dir) : TD_OK);
    if (s == TD_OK)
        s = report_note_command(cfg); /* study.md names the commands behind the sweep */
    if (s == TD_OK && config_names_contains(&cfg->run.stages, "pretrain"))
        s = pretrain_stage(cfg);
    if (s == TD_OK)
        s = shared_theta0(cfg, dir, heads_file, sizeof heads_file);

    /* the runs still to do, in order */
    long R = sw ? sw->runs : 0, npend = 0;
    long *pending = s == TD_OK ? malloc((size_t)(R > 0 ? R : 1) * sizeof *pending) : NULL;
    s = runtime_agree(MPI_COMM_WORLD, s != TD_OK || pending ? s
                                                            : td_fail(TD_ERR_NOMEM, "out of memory"));
    if (s != TD_OK) {
        free(sw);
        free(pending);
        return s;
    }
    if (g_rt.rank == 0)
        for (long r = 0; r < R; r++)
            if (!run_done(dir, r))
                pending[npend++] = r;
    MPI_Bcast(&npend, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    MPI_Bcast(pending, (int)npend, MPI_LONG, 0, MPI_COMM_WORLD);

    int P = g_rt.world_size, rpr = cfg->sweep.ranks_per_run < P ? cfg->sweep.ranks_per_run : P;
    int G = P / rpr, color = g_rt.world_rank / rpr < G ? g_rt.world_rank / rpr : G - 1;
    td_log("sweep: %ld run(s) over %d axis(es), %ld done earlier, %ld to do; %d group(s) of %d "
           "rank(s) take them in turn",
           R, sw->naxes, R - npend, npend, G, rpr);
    MPI_Comm gcomm;
    MPI_Comm_split(MPI_COMM_WORLD, color, g_rt.world_rank, &gcomm);
    int grank;
    MPI_Comm_rank(gcomm, &grank);
    WorkQueue q;
    s = workqueue_open(&q, MPI_COMM_WORLD);
    if (s != TD_OK) {
        MPI_Comm_free(&gcomm);
        free(sw);
        free(pending);
        return s;
    }
    long failed = 0, ran = 0;
    char first_error[1024] = "";
    for (;;) {
        long idx = grank == 0 ? workqueue_next(&q) : 0;
        MPI_Bcast(&idx, 1, MPI_LONG, 0, gcomm);
        if (idx >= npend)
            break;
        long r = pending[idx];
        char tag[64];
        snprintf(tag, sizeof tag, "run %ld", r);
        runtime_enter_group(gcomm, tag);
        TdStatus rs = one_run(cfg, sw, r, dir, heads_file, R);
        if (rs != TD_OK) {
            td_log("sweep run %ld FAILED: %s", r, td_error_message());
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "run %ld: %s", r, td_error_message());
            td_error_clear();
        }
        runtime_leave_group();
        if (grank == 0) {
            ran++;
            failed += rs != TD_OK;
        }
    }
    runtime_idle_barrier(MPI_COMM_WORLD); /* groups that finish early sleep here */
    workqueue_close(&q);
    MPI_Comm_free(&gcomm);
    eval_theta0_cache(NULL, NULL);
    long tot[2] = {ran, failed};
    MPI_Allreduce(MPI_IN_PLACE, tot, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    /* the first error message, from the lowest rank that has one */
    int mine = first_error[0] ? g_rt.world_rank : P, who;
    MPI_Allreduce(&mine, &who, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (who < P)
        MPI_Bcast(first_error, sizeof first_error, MPI_CHAR, who, MPI_COMM_WORLD);
    td_log("sweep: %ld run(s) ran now, %ld failed", tot[0], tot[1]);

    s = runtime_agree(MPI_COMM_WORLD, g_rt.rank == 0 ? sweep_study(cfg, sw) : TD_OK);
    if (s == TD_OK && tot[1] > 0)
        s = td_fail(TD_ERR_INTERNAL,
                    "%ld of %ld sweep run(s) failed (first: %s); rerun the same command to retry "
                    "them (done runs are kept)",
                    tot[1], tot[0], first_error);
    free(sw);
    free(pending);
    return s;
}
