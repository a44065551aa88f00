#include "results.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"

static void path_join(char *buf, size_t n, const char *dir, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

TdStatus results_load(const char *run_dir, cJSON **root)
{
    char path[1024];
    path_join(path, sizeof path, run_dir, "results.json");
    FILE *f = fopen(path, "rb");
    if (!f) {
        *root = cJSON_CreateObject();
        return *root ? TD_OK : td_fail(TD_ERR_NOMEM, "results: out of memory");
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    if (!text) {
        fclose(f);
        return td_fail(TD_ERR_NOMEM, "results: out of memory reading %s", path);
    }
    size_t got = fread(text, 1, (size_t)len, f);
    fclose(f);
    text[got] = '\0';
    *root = cJSON_Parse(text);
    free(text);
    if (!*root || !cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return td_fail(TD_ERR_FORMAT, "%s: not a JSON object (remove it to start afresh)", path);
    }
    return TD_OK;
}

static TdStatus write_atomic(const char *run_dir, const cJSON *root)
{
    char path[1024], tmp[1100];
    path_join(path, sizeof path, run_dir, "results.json");
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    char *text = cJSON_Print(root);
    if (!text)
        return td_fail(TD_ERR_NOMEM, "results: out of memory printing JSON");
    FILE *f = fopen(tmp, "wb");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f)
        ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot write", path);
    }
    return TD_OK;
}

TdStatus results_set(const char *run_dir, const char *key_path, cJSON *value)
{
    cJSON *root;
    TdStatus s = results_load(run_dir, &root);
    if (s != TD_OK) {
        cJSON_Delete(value);
        return s;
    }
    char keys[512];
    snprintf(keys, sizeof keys, "%s", key_path);
    cJSON *node = root;
    char *save = NULL, *key = strtok_r(keys, ".", &save);
    while (key) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            if (cJSON_GetObjectItemCaseSensitive(node, key))
                cJSON_ReplaceItemInObjectCaseSensitive(node, key, value);
            else
                cJSON_AddItemToObject(node, key, value);
            value = NULL;
            break;
        }
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, key);
        if (!child || !cJSON_IsObject(child)) {
            if (child)
                cJSON_DeleteItemFromObjectCaseSensitive(node, key);
            child = cJSON_AddObjectToObject(node, key);
        }
        node = child;
        key = next;
    }
    cJSON_Delete(value); /* an empty key path sets nothing */
    s = write_atomic(run_dir, root);
    cJSON_Delete(root);
    return s;
}

/* Copies the file from to to (created or truncated); 0 on success. */
static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[1 << 16];
    size_t n;
    int ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    ok = ok && !ferror(in);
    if (in)
        fclose(in);
    if (out)
        ok = fclose(out) == 0 && ok;
    return ok ? 0 : -1;
}

/* Opens a copy of grids.h5 (tmp) for writing, an empty one when grids.h5 is
 * missing. HDF5 changes a file in place: written directly, a kill during a
 * write (a search killed and resumed) could leave grids.h5 unreadable, so
 * the copy replaces it by rename once complete. */
static hid_t open_grids(const char *run_dir, char *path, size_t n, char *tmp, size_t tn)
{
    path_join(path, n, run_dir, "grids.h5");
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    if (access(path, F_OK) != 0)
        return H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (copy_file(path, tmp) != 0) {
        unlink(tmp);
        return -1;
    }
    return H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
}

TdStatus results_grid_write(const char *run_dir, const char *dset_path, const double *data,
                            int ndim, const size_t *dims, const char *axes)
{
    if (ndim < 1 || ndim > 4 || dset_path[0] != '/')
        return td_fail(TD_ERR_INTERNAL, "results: bad grid '%s' (rank %d)", dset_path, ndim);
    char path[1024], tmp[1100];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = open_grids(run_dir, path, sizeof path, tmp, sizeof tmp);
    if (f < 0) {
        unlink(tmp);
        return td_fail(TD_ERR_HDF5, "%s: cannot open for writing (through %s)", path, tmp);
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (H5Lexists(f, dset_path, H5P_DEFAULT) > 0)
        H5Ldelete(f, dset_path, H5P_DEFAULT);
    hsize_t hd[4];
    for (int i = 0; i < ndim; i++)
        hd[i] = dims[i];
    hid_t space = H5Screate_simple(ndim, hd, NULL);
    hid_t d = H5Dcreate2(f, dset_path, H5T_IEEE_F64LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = d >= 0 ? H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : -1;
    if (st >= 0 && axes) {
        char what[1200];
        snprintf(what, sizeof what, "%s %s", path, dset_path);
        st = h5u_attr_write_str(d, what, "axes", axes) == TD_OK ? 0 : -1;
    }
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(space);
    H5Pclose(lcpl);
    if (H5Fclose(f) < 0 || st < 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_HDF5, "%s: cannot write grid %s", path, dset_path);
    }
    return TD_OK;
}

TdStatus results_grid_read(const char *run_dir, const char *dset_path, double **data, int *ndim,
                           size_t dims[4])
{
    char path[1024];
    path_join(path, sizeof path, run_dir, "grids.h5");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return td_fail(TD_ERR_IO, "%s: cannot open", path);
    hid_t d = H5Dopen2(f, dset_path, H5P_DEFAULT);
    if (d < 0) {
        H5Fclose(f);
        return td_fail(TD_ERR_FORMAT, "%s: no grid %s", path, dset_path);
    }
    hid_t space = H5Dget_space(d);
    hsize_t hd[4] = {0};
    int nd = H5Sget_simple_extent_ndims(space);
    TdStatus s = TD_OK;
    if (nd < 1 || nd > 4) {
        s = td_fail(TD_ERR_FORMAT, "%s: grid %s has rank %d", path, dset_path, nd);
    } else {
        H5Sget_simple_extent_dims(space, hd, NULL);
        size_t n = 1;
        for (int i = 0; i < nd; i++)
            n *= (dims[i] = hd[i]);
        *ndim = nd;
        *data = malloc(n * sizeof(double));
        if (!*data)
            s = td_fail(TD_ERR_NOMEM, "results: out of memory");
        else if (H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
            free(*data);
            *data = NULL;
            s = td_fail(TD_ERR_HDF5, "%s: cannot read %s", path, dset_path);
        }
    }
    H5Sclose(space);
    H5Dclose(d);
    H5Fclose(f);
    return s;
}
