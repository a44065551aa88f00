#include "h5util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Each public function runs its body with HDF5's error printing off (the
 * caller gets a td_fail message instead) and restores it afterwards. */
#define H5U_QUIET(call)                  \
    do {                                 \
        H5E_BEGIN_TRY { s = (call); }    \
        H5E_END_TRY;                     \
    } while (0)

int h5u_attr_exists(hid_t obj, const char *name)
{
    htri_t ex = -1;
    H5E_BEGIN_TRY { ex = H5Aexists(obj, name); }
    H5E_END_TRY;
    return ex > 0;
}

/* ---- writing ---------------------------------------------------------- */

static TdStatus write_scalar(hid_t obj, const char *what, const char *name, hid_t ftype,
                             hid_t mtype, const void *buf)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t at = sp >= 0 ? H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    herr_t w = at >= 0 ? H5Awrite(at, mtype, buf) : -1;
    herr_t c = at >= 0 ? H5Aclose(at) : 0;
    if (sp >= 0)
        H5Sclose(sp);
    if (w < 0 || c < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot write attribute '%s'", what, name);
    return TD_OK;
}

static TdStatus write_str(hid_t obj, const char *what, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0 || H5Tset_size(t, strlen(value) + 1) < 0 ||
        H5Tset_strpad(t, H5T_STR_NULLTERM) < 0) {
        if (t >= 0)
            H5Tclose(t);
        return td_fail(TD_ERR_HDF5, "%s: cannot make a string type for attribute '%s'", what,
                       name);
    }
    TdStatus s = write_scalar(obj, what, name, t, t, value);
    H5Tclose(t);
    return s;
}

TdStatus h5u_attr_write(hid_t obj, const char *what, const char *name, hid_t ftype, hid_t mtype,
                        const void *buf)
{
    TdStatus s;
    H5U_QUIET(write_scalar(obj, what, name, ftype, mtype, buf));
    return s;
}

TdStatus h5u_attr_write_str(hid_t obj, const char *what, const char *name, const char *value)
{
    TdStatus s;
    H5U_QUIET(write_str(obj, what, name, value));
    return s;
}

TdStatus h5u_attr_write_f64(hid_t obj, const char *what, const char *name, double v)
{
    return h5u_attr_write(obj, what, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

TdStatus h5u_attr_write_i64(hid_t obj, const char *what, const char *name, long long v)
{
    return h5u_attr_write(obj, what, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, &v);
}

/* ---- reading ---------------------------------------------------------- */

/* Opens attribute name of obj, which must hold one value. */
static TdStatus open_one(hid_t obj, const char *what, const char *name, hid_t *at)
{
    *at = -1;
    htri_t ex = H5Aexists(obj, name);
    if (ex == 0)
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is missing", what, name);
    hid_t a = ex > 0 ? H5Aopen(obj, name, H5P_DEFAULT) : -1;
    if (a < 0)
        return td_fail(TD_ERR_HDF5, "%s: cannot open attribute '%s'", what, name);
    hid_t sp = H5Aget_space(a);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (n != 1) {
        H5Aclose(a);
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' holds more than one value", what,
                       name);
    }
    *at = a;
    return TD_OK;
}

static TdStatus read_num(hid_t obj, const char *what, const char *name, hid_t mtype, void *buf)
{
    hid_t at;
    TD_TRY(open_one(obj, what, name, &at));
    hid_t ft = H5Aget_type(at);
    H5T_class_t cls = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    herr_t r = (cls == H5T_INTEGER || cls == H5T_FLOAT) ? H5Aread(at, mtype, buf) : -1;
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(at);
    if (r < 0)
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a number", what, name);
    return TD_OK;
}

static TdStatus read_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap)
{
    hid_t at;
    TD_TRY(open_one(obj, what, name, &at));
    buf[0] = '\0';
    hid_t ft = H5Aget_type(at);
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING) {
        if (ft >= 0)
            H5Tclose(ft);
        H5Aclose(at);
        return td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a string", what, name);
    }
    TdStatus s = TD_OK;
    herr_t r = -1;
    htri_t var = H5Tis_variable_str(ft);
    size_t size = H5Tget_size(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    /* the file's character set: no ASCII <-> UTF-8 conversion in HDF5 */
    if (mt >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) < 0) {
        H5Tclose(mt);
        mt = -1;
    }
    if (mt >= 0 && var > 0 && H5Tset_size(mt, H5T_VARIABLE) >= 0) {
        char *v = NULL;
        r = H5Aread(at, mt, &v);
        if (r >= 0 && v)
            snprintf(buf, cap, "%s", v);
        if (v)
            H5free_memory(v);
    } else if (mt >= 0 && var == 0 && size > 0 && H5Tset_size(mt, size + 1) >= 0) {
        char *v = calloc(size + 1, 1);
        if (!v)
            s = td_fail(TD_ERR_NOMEM, "%s: out of memory reading attribute '%s'", what, name);
        else if ((r = H5Aread(at, mt, v)) >= 0)
            snprintf(buf, cap, "%s", v);
        free(v);
    }
    if (mt >= 0)
        H5Tclose(mt);
    H5Tclose(ft);
    H5Aclose(at);
    if (s == TD_OK && r < 0)
        s = td_fail(TD_ERR_FORMAT, "%s: attribute '%s' is not a readable string", what, name);
    return s;
}

TdStatus h5u_attr_read(hid_t obj, const char *what, const char *name, hid_t mtype, void *buf)
{
    TdStatus s;
    H5U_QUIET(read_num(obj, what, name, mtype, buf));
    return s;
}

TdStatus h5u_attr_read_f64(hid_t obj, const char *what, const char *name, double *v)
{
    return h5u_attr_read(obj, what, name, H5T_NATIVE_DOUBLE, v);
}

TdStatus h5u_attr_read_i64(hid_t obj, const char *what, const char *name, long long *v)
{
    return h5u_attr_read(obj, what, name, H5T_NATIVE_LLONG, v);
}

TdStatus h5u_attr_read_str(hid_t obj, const char *what, const char *name, char *buf, size_t cap)
{
    TdStatus s;
    H5U_QUIET(read_str(obj, what, name, buf, cap));
    return s;
}

TdStatus h5u_check_format(hid_t obj, const char *what, const char *expected, const char *kind)
{
    char fmt[128];
    if (!h5u_attr_exists(obj, "format"))
        return td_fail(TD_ERR_FORMAT, "%s: attribute 'format' is missing (not a %s?)", what,
                       kind);
    TD_TRY(h5u_attr_read_str(obj, what, "format", fmt, sizeof fmt));
    if (strcmp(fmt, expected) != 0)
        return td_fail(TD_ERR_FORMAT, "%s: format '%s' is not %s", what, fmt, expected);
    return TD_OK;
}

/* ---- folders ---------------------------------------------------------- */

static TdStatus mkdir_one(const char *dir)
{
    if (mkdir(dir, 0777) == 0)
        return TD_OK;
    int err = errno;
    struct stat st;
    if (err == EEXIST && stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return TD_OK;
        return td_fail(TD_ERR_IO, "cannot create directory '%s': not a directory", dir);
    }
    return td_fail(TD_ERR_IO, "cannot create directory '%s': %s", dir, strerror(err));
}

TdStatus fs_mkdir_p(const char *path)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return td_fail(TD_ERR_ARG, "path too long: %s", path);
    if (tmp[0] == '\0')
        return td_fail(TD_ERR_ARG, "cannot create a directory with an empty name");
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/' && p[-1] != '/') {
            *p = '\0';
            TD_TRY(mkdir_one(tmp));
            *p = '/';
        }
    return mkdir_one(tmp);
}
