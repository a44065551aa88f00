#include "train_ckpt.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"
#include "runtime.h"

/* s, or r when s is TD_OK: the first failure of calls all made anyway. */
static TdStatus keep(TdStatus s, TdStatus r) { return s != TD_OK ? s : r; }

void ckpt_write_begin(CkptWriter *w, MPI_Comm comm, const char *path, const char *key,
                      long step)
{
    memset(w, 0, sizeof *w);
    w->comm = comm;
    w->f = w->dxpl = -1;
    w->t0 = td_wall();
    MPI_Comm_rank(comm, &w->rank);
    MPI_Comm_size(comm, &w->size);
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->f = h5u_create_mpio(comm, w->tmp);
    if (w->f < 0) {
        w->s = td_fail(TD_ERR_IO, "cannot create checkpoint '%s'", w->tmp);
        return;
    }
    w->dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(w->dxpl, H5FD_MPIO_COLLECTIVE);
    /* under MPI-IO, attributes are collective: every rank, the same values */
    w->s = keep(w->s, h5u_attr_write_str(w->f, w->tmp, "config_hash", key));
    w->s = keep(w->s, h5u_attr_write_i64(w->f, w->tmp, "step", step));
}

void ckpt_write_vec(CkptWriter *w, const char *name, const float *v, size_t n)
{
    if (w->f < 0)
        return; /* the create failed on every rank (it is collective) */
    hsize_t d = n, lo = n * (size_t)w->rank / (size_t)w->size,
            hi = n * (size_t)(w->rank + 1) / (size_t)w->size, cnt = hi - lo, one = 1;
    hid_t fs = H5Screate_simple(1, &d, NULL);
    hid_t ds = H5Dcreate2(w->f, name, H5T_IEEE_F32LE, fs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ms = H5Screate_simple(1, cnt ? &cnt : &one, NULL);
    if (cnt) {
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, &lo, NULL, &cnt, NULL);
    } else { /* no share (more ranks than elements): still in the collective */
        H5Sselect_none(fs);
        H5Sselect_none(ms);
    }
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, ms, fs, w->dxpl, cnt ? v + lo : v) < 0)
        w->s = keep(w->s, td_fail(TD_ERR_HDF5, "cannot write '%s' of checkpoint '%s'", name,
                                  w->tmp));
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(ms);
    H5Sclose(fs);
}

void ckpt_write_f64(CkptWriter *w, const char *name, double v)
{
    if (w->f >= 0)
        w->s = keep(w->s, h5u_attr_write_f64(w->f, w->tmp, name, v));
}

TdStatus ckpt_write_end(CkptWriter *w, double *secs)
{
    if (w->dxpl >= 0)
        H5Pclose(w->dxpl);
    if (w->f >= 0 && H5Fclose(w->f) < 0)
        w->s = keep(w->s, td_fail(TD_ERR_IO, "cannot write checkpoint '%s'", w->tmp));
    w->f = w->dxpl = -1;
    TdStatus s = runtime_agree(w->comm, w->s);
    if (s == TD_OK && w->rank == 0 && rename(w->tmp, w->path) != 0)
        s = td_fail(TD_ERR_IO, "cannot rename checkpoint '%s' to '%s'", w->tmp, w->path);
    else if (s != TD_OK && w->rank == 0)
        unlink(w->tmp);
    s = runtime_agree(w->comm, s);
    if (secs)
        *secs = td_wall() - w->t0;
    return s;
}

TdStatus ckpt_read_open(CkptReader *r, const char *path, const char *key, long *step,
                        int *found)
{
    r->f = -1;
    *found = 0;
    *step = 0;
    snprintf(r->path, sizeof r->path, "%s", path);
    if (access(path, F_OK) != 0)
        return TD_OK;
    H5E_BEGIN_TRY { r->f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (r->f < 0)
        return td_fail(TD_ERR_FORMAT, "checkpoint '%s' is unreadable; delete it to start over",
                       path);
    char have[64];
    TdStatus hs = h5u_attr_read_str(r->f, path, "config_hash", have, sizeof have);
    if (hs != TD_OK || strcmp(have, key) != 0) {
        if (hs != TD_OK) { /* not an error: the checkpoint is only skipped */
            td_log_rank("checkpoint %s: ignored, starting over", td_error_message());
            td_error_clear();
        } else {
            td_log_rank("checkpoint %s was made with other settings: ignored, starting over",
                        path);
        }
        ckpt_read_close(r);
        return TD_OK;
    }
    long long st = 0;
    if (h5u_attr_read_i64(r->f, path, "step", &st) != TD_OK || st < 0) {
        char why[1100] = "";
        snprintf(why, sizeof why, "%s", td_error_message());
        td_error_clear();
        ckpt_read_close(r);
        return td_fail(TD_ERR_FORMAT, "checkpoint '%s' is damaged (%s); delete it to start over",
                       path, why[0] ? why : "no step");
    }
    *step = (long)st;
    *found = 1;
    return TD_OK;
}

int ckpt_read_vec(CkptReader *r, const char *name, float *v, size_t n)
{
    hid_t ds = -1;
    H5E_BEGIN_TRY { ds = H5Dopen2(r->f, name, H5P_DEFAULT); } H5E_END_TRY;
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    herr_t e = (size_t)H5Sget_simple_extent_npoints(sp) == n
                   ? H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : -1;
    H5Sclose(sp);
    H5Dclose(ds);
    return e < 0 ? -1 : 0;
}

int ckpt_read_f64(CkptReader *r, const char *name, double *v)
{
    if (h5u_attr_exists(r->f, name) <= 0)
        return -1;
    if (h5u_attr_read_f64(r->f, r->path, name, v) != TD_OK) {
        td_error_clear();
        return -1;
    }
    return 0;
}

void ckpt_read_close(CkptReader *r)
{
    if (r->f >= 0)
        H5Fclose(r->f);
    r->f = -1;
}

void ckpt_clock_start(CkptClock *c, int every, double minutes)
{
    c->every = every;
    c->minutes = minutes;
    c->t_last = td_wall();
}

bool ckpt_clock_due(CkptClock *c, MPI_Comm comm, long step, long steps)
{
    if (c->every <= 0 && c->minutes <= 0)
        return false;
    if (step == steps || (c->every > 0 && step % c->every == 0))
        return true;
    if (c->minutes <= 0)
        return false;
    int rank, due = 0;
    MPI_Comm_rank(comm, &rank);
    if (rank == 0) /* one clock decides: the ranks' clocks may disagree near the mark */
        due = td_wall() - c->t_last >= 60.0 * c->minutes;
    MPI_Bcast(&due, 1, MPI_INT, 0, comm);
    return due != 0;
}

void ckpt_clock_reset(CkptClock *c) { c->t_last = td_wall(); }
