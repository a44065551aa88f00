#include "study.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "h5util.h"
#include "runtime.h"

void study_run_dir(const TdConfig *cfg, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", cfg->run.out_dir, cfg->run.name);
}

TdStatus study_open(const TdConfig *cfg, VitModel *theta0, HeadSet *heads)
{
    memset(theta0, 0, sizeof *theta0);
    memset(heads, 0, sizeof *heads);
    TD_TRY(runtime_agree(g_rt.comm, model_read(cfg->model.path, theta0)));
    /* the heads the task vectors were trained against, not rebuilt ones */
    TdConfig c = *cfg;
    char dir[600];
    study_run_dir(cfg, dir, sizeof dir);
    snprintf(c.heads.source, sizeof c.heads.source, "file");
    TdStatus s = strlen(dir) > 240 ? td_fail(TD_ERR_CONFIG, "run directory '%s' is too long", dir)
                                   : TD_OK;
    snprintf(c.heads.file, sizeof c.heads.file, "%.240s/heads.h5", dir);
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = heads_build(&c, theta0, heads);
    if (s != TD_OK)
        model_free(theta0);
    return s;
}

TdStatus study_tv_read(const char *run_dir, const char *mode, const char *task,
                       const VitModel *theta0, float *tau, unsigned char *mask)
{
    const ParamTable *tab = &theta0->table;
    char path[700];
    snprintf(path, sizeof path, "%s/task_vectors_%s.h5", run_dir, mode);
    memset(tau, 0, tab->total * sizeof *tau);
    memset(mask, 0, (size_t)tab->count);
    hid_t f = -1, g = -1;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        return td_fail(TD_ERR_IO, "task vectors '%s': cannot open (run the finetune stage for "
                                  "mode %s first)", path, mode);
    H5E_BEGIN_TRY { g = H5Gopen2(f, task, H5P_DEFAULT); } H5E_END_TRY;
    if (g < 0) {
        H5Fclose(f);
        return td_fail(TD_ERR_FORMAT, "task vectors '%s': no task '%s'", path, task);
    }
    char status[32] = "", what[800];
    snprintf(what, sizeof what, "task vectors '%s', task '%s'", path, task);
    TdStatus s = h5u_attr_read_str(g, what, "status", status, sizeof status);
    if (s == TD_OK && strcmp(status, "ok") != 0)
        s = td_fail(TD_ERR_FORMAT, "task vectors '%s': task '%s' has status '%s', not \"ok\"",
                    path, task, status);
    int found = 0;
    for (int i = 0; i < tab->count && s == TD_OK; i++) {
        const ParamInfo *pi = &tab->info[i];
        hid_t d = -1;
        H5E_BEGIN_TRY { d = H5Dopen2(g, pi->name, H5P_DEFAULT); } H5E_END_TRY;
        if (d < 0)
            continue;
        hid_t sp = H5Dget_space(d);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        if (n != (hssize_t)pi->numel)
            s = td_fail(TD_ERR_FORMAT, "task vectors '%s': %s/%s has %lld elements, theta0 %zu",
                        path, task, pi->name, (long long)n, pi->numel);
        else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                         tau + pi->offset) < 0)
            s = td_fail(TD_ERR_HDF5, "task vectors '%s': cannot read %s/%s", path, task, pi->name);
        H5Sclose(sp);
        H5Dclose(d);
        mask[i] = 1;
        found++;
    }
    H5Gclose(g);
    H5Fclose(f);
    if (s == TD_OK && found == 0)
        s = td_fail(TD_ERR_FORMAT, "task vectors '%s': task '%s' holds no tensor of theta0", path,
                    task);
    return s;
}

int study_task_index(const TdConfig *cfg, const char *name)
{
    for (int t = 0; t < cfg->data.tasks.count; t++)
        if (strcmp(cfg->data.tasks.item[t], name) == 0)
            return t;
    return -1;
}

int study_argmax(const float *z, const float *head, int C, int E)
{
    int best = 0;
    double bv = -INFINITY;
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int k = 0; k < E; k++)
            s += (double)z[k] * head[(size_t)c * E + k];
        if (s > bv) {
            bv = s;
            best = c;
        }
    }
    return best;
}

/* log-sum-exp of scale * z */
static double lse(const float *z, int E, double scale)
{
    double m = -INFINITY, s = 0;
    for (int k = 0; k < E; k++)
        if (scale * z[k] > m)
            m = scale * z[k];
    for (int k = 0; k < E; k++)
        s += exp(scale * z[k] - m);
    return m + log(s);
}

double study_symkl(const float *a, const float *b, int E, double scale)
{
    double la = lse(a, E, scale), lb = lse(b, E, scale), kl = 0;
    for (int k = 0; k < E; k++) {
        double lpa = scale * a[k] - la, lpb = scale * b[k] - lb;
        kl += (exp(lpa) - exp(lpb)) * (lpa - lpb);
    }
    return kl;
}
