/* A folder of images, class = sub-folder name; PNG (libpng) and PPM/PGM (parsed here). */
#include <ctype.h>
#include <dirent.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "task_import.h"

void image_buf_free(ImageBuf *img)
{
    free(img->px);
    memset(img, 0, sizeof *img);
}

/* ---- PNG ---- */

/* libpng's stdio reader says only "Read Error" when fread comes up short:
 * the file ends early (or the disk fails). Say so; other libpng messages
 * ("IHDR: CRC error", "bad adaptive filter value") are specific already. */
static const char *png_reason(const char *msg)
{
    if (!msg || !*msg)
        return "unreadable (libpng gave no reason)";
    if (strcmp(msg, "Read Error") == 0)
        return "truncated or unreadable file (libpng: Read Error)";
    return msg;
}

/* The chunk structure, walked from the signature to IEND without reading
 * any chunk's data: libpng's simplified reader stops after the image data,
 * so a file cut after it (no IEND) would import as if whole. A file that is
 * not a PNG at all is left to libpng's own message. */
static TdStatus png_check_chunks(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f)
        return TD_OK; /* libpng says why */
    unsigned char b[8];
    struct stat st;
    TdStatus s = TD_OK;
    if (fstat(fileno(f), &st) != 0 || fread(b, 1, 8, f) != 8 || memcmp(b, sig, 8) != 0) {
        fclose(f);
        return TD_OK;
    }
    long long size = (long long)st.st_size, at = 8;
    for (;;) {
        if (at == size) {
            s = td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: truncated: no IEND chunk (the file "
                        "ends after %lld bytes)", path, size);
            break;
        }
        if (size - at < 12 || fseeko(f, (off_t)at, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8) {
            s = td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: truncated: the file ends inside the "
                        "chunk header at byte %lld, before IEND", path, at);
            break;
        }
        long long len = (long long)b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3];
        char type[5];
        for (int i = 0; i < 4; i++)
            type[i] = isalpha(b[4 + i]) ? (char)b[4 + i] : '?';
        type[4] = '\0';
        if (len > 0x7fffffff) {
            s = td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: chunk '%s' at byte %lld claims %lld "
                        "bytes", path, type, at, len);
            break;
        }
        if (len + 12 > size - at) {
            s = td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: truncated: chunk '%s' at byte %lld "
                        "needs %lld bytes, the file ends %lld bytes later", path, type, at,
                        len + 12, size - at);
            break;
        }
        if (memcmp(b + 4, "IEND", 4) == 0)
            break; /* whatever follows IEND is ignored, as libpng does */
        at += len + 12;
    }
    fclose(f);
    return s;
}

static TdStatus read_png(const char *path, ImageBuf *img)
{
    TD_TRY(png_check_chunks(path));
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&pi, path))
        return td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: %s", path, png_reason(pi.message));
    int color = (pi.format & PNG_FORMAT_FLAG_COLOR) != 0;
    pi.format = color ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (pi.width < 1 || pi.height < 1 || pi.width > 16384 || pi.height > 16384) {
        png_image_free(&pi);
        return td_fail(TD_ERR_FORMAT, "%s: PNG of %ux%u pixels", path, pi.width, pi.height);
    }
    img->h = (int)pi.height;
    img->w = (int)pi.width;
    img->c = color ? 3 : 1;
    img->px = malloc(PNG_IMAGE_SIZE(pi));
    if (!img->px) {
        png_image_free(&pi);
        return td_fail(TD_ERR_NOMEM, "out of memory reading %s", path);
    }
    /* without a background colour libpng composites alpha onto black */
    if (!png_image_finish_read(&pi, NULL, img->px, 0, NULL)) {
        TdStatus s = td_fail(TD_ERR_FORMAT, "%s: corrupt PNG: %s", path, png_reason(pi.message));
        image_buf_free(img);
        return s;
    }
    return TD_OK;
}

TdStatus image_write_png(const char *path, const uint8_t *px, int h, int w, int c)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)w;
    pi.height = (png_uint_32)h;
    pi.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&pi, tmp, 0, px, 0, NULL)) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot write PNG: %s", tmp, pi.message);
    }
    if (rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot rename to %s", tmp, path);
    }
    return TD_OK;
}

/* ---- PPM / PGM (P2, P3 ASCII; P5, P6 binary; maxval up to 65535) ---- */

static int pnm_skip(FILE *f)
{
    int ch;
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '#')
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
        else if (!isspace(ch))
            return ungetc(ch, f), 1;
    }
    return 0;
}

static int pnm_int(FILE *f, long *v)
{
    if (!pnm_skip(f))
        return 0;
    return fscanf(f, "%ld", v) == 1;
}

static TdStatus read_pnm_body(FILE *f, const char *path, ImageBuf *img, int kind, long maxval)
{
    int64_t n = (int64_t)img->h * img->w * img->c;
    int wide = maxval > 255;
    for (int64_t i = 0; i < n; i++) {
        long v;
        if (kind == '2' || kind == '3') {
            if (!pnm_int(f, &v))
                return td_fail(TD_ERR_FORMAT, "%s: truncated PNM: pixel %lld of %lld missing", path,
                               (long long)(i / img->c), (long long)(n / img->c));
        } else {
            int b0 = fgetc(f), b1 = wide ? fgetc(f) : 0;
            if (b0 == EOF || b1 == EOF)
                return td_fail(TD_ERR_FORMAT, "%s: truncated PNM: pixel %lld of %lld missing", path,
                               (long long)(i / img->c), (long long)(n / img->c));
            v = wide ? (b0 << 8 | b1) : b0;
        }
        if (v < 0 || v > maxval)
            return td_fail(TD_ERR_FORMAT, "%s: pixel %lld value %ld above maxval %ld", path,
                           (long long)(i / img->c), v, maxval);
        img->px[i] = (uint8_t)((v * 255 + maxval / 2) / maxval);
    }
    return TD_OK;
}

static TdStatus read_pnm(const char *path, ImageBuf *img)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot open", path);
    TdStatus s = TD_OK;
    char magic[2] = {0};
    long w = 0, h = 0, maxval = 0;
    if (fread(magic, 1, 2, f) != 2 || magic[0] != 'P' || !strchr("2356", magic[1]) || !magic[1]) {
        s = td_fail(TD_ERR_FORMAT, "%s: not a PGM/PPM file (magic P2, P3, P5 or P6)", path);
    } else if (!pnm_int(f, &w) || !pnm_int(f, &h) || !pnm_int(f, &maxval) || w < 1 || h < 1 ||
               w > 16384 || h > 16384 || maxval < 1 || maxval > 65535) {
        s = td_fail(TD_ERR_FORMAT, "%s: bad PNM header (width %ld, height %ld, maxval %ld)", path, w,
                    h, maxval);
    } else if (!isspace(fgetc(f))) {
        s = td_fail(TD_ERR_FORMAT, "%s: bad PNM header (no whitespace after maxval)", path);
    } else {
        img->h = (int)h;
        img->w = (int)w;
        img->c = (magic[1] == '3' || magic[1] == '6') ? 3 : 1;
        img->px = malloc((size_t)(h * w * img->c));
        if (!img->px)
            s = td_fail(TD_ERR_NOMEM, "out of memory reading %s", path);
        else
            s = read_pnm_body(f, path, img, magic[1], maxval);
    }
    fclose(f);
    if (s != TD_OK)
        image_buf_free(img);
    return s;
}

static const char *ext_of(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : "";
}

static int is_image_name(const char *name)
{
    const char *e = ext_of(name);
    return name[0] != '.' && (strcasecmp(e, "png") == 0 || strcasecmp(e, "ppm") == 0 ||
                              strcasecmp(e, "pgm") == 0 || strcasecmp(e, "pnm") == 0);
}

TdStatus image_read_file(const char *path, ImageBuf *img)
{
    memset(img, 0, sizeof *img);
    if (strcasecmp(ext_of(path), "png") == 0)
        return read_png(path, img);
    return read_pnm(path, img);
}

/* ---- the folder walk ---- */

typedef struct {
    char **items;
    int n, cap;
} NameList;

static void names_free(NameList *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Sorted entries of dir: sub-folders (want_dirs) or image files. */
static TdStatus list_dir(const char *dir, int want_dirs, NameList *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return td_fail(TD_ERR_IO, "%s: cannot open folder", dir);
    struct dirent *e;
    TdStatus s = TD_OK;
    while ((e = readdir(d)) && s == TD_OK) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        if ((s = import_path_join(p, sizeof p, dir, e->d_name)) != TD_OK)
            break;
        if (want_dirs ? !is_dir(p) : (is_dir(p) || !is_image_name(e->d_name)))
            continue;
        if (l->n == l->cap) {
            int cap = l->cap ? 2 * l->cap : 64;
            char **it = realloc(l->items, sizeof *it * (size_t)cap);
            if (!it) {
                s = td_fail(TD_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            l->items = it;
            l->cap = cap;
        }
        l->items[l->n++] = strdup(e->d_name);
    }
    closedir(d);
    if (l->n)
        qsort(l->items, (size_t)l->n, sizeof *l->items, str_cmp);
    return s;
}

typedef struct {
    ImageBuf *im;
    int32_t *label;
    int64_t n, cap;
    char first[4096]; /* the file whose size every other must match */
} Collected;

static TdStatus collect_file(Collected *c, const char *path, int label)
{
    if (c->n == c->cap) {
        int64_t cap = c->cap ? 2 * c->cap : 256;
        ImageBuf *im = realloc(c->im, sizeof *im * (size_t)cap);
        if (!im)
            return td_fail(TD_ERR_NOMEM, "out of memory");
        c->im = im;
        int32_t *lb = realloc(c->label, sizeof *lb * (size_t)cap);
        if (!lb)
            return td_fail(TD_ERR_NOMEM, "out of memory");
        c->label = lb;
        c->cap = cap;
    }
    ImageBuf *b = &c->im[c->n];
    TD_TRY(image_read_file(path, b));
    c->label[c->n++] = label;
    if (c->n == 1) {
        import_fmt(c->first, sizeof c->first, "%s", path);
    } else if (b->h != c->im[0].h || b->w != c->im[0].w) {
        return td_fail(TD_ERR_FORMAT, "%s: image is %dx%d but %s is %dx%d (mixed sizes)", path,
                       b->w, b->h, c->first, c->im[0].w, c->im[0].h);
    }
    return TD_OK;
}

/* Reads root/CLASS/ * for every class of `classes` into c. */
static TdStatus collect_split(Collected *c, const char *root, const NameList *classes,
                              int require_all)
{
    for (int k = 0; k < classes->n; k++) {
        char dir[4096];
        TD_TRY(import_path_join(dir, sizeof dir, root, classes->items[k]));
        if (!require_all && !is_dir(dir))
            continue;
        NameList files = {0};
        TdStatus s = list_dir(dir, 0, &files);
        if (s == TD_OK && files.n == 0 && require_all)
            s = td_fail(TD_ERR_FORMAT, "%s: no PNG/PPM/PGM images (empty class '%s')", dir,
                        classes->items[k]);
        for (int i = 0; i < files.n && s == TD_OK; i++) {
            char p[4096];
            s = import_path_join(p, sizeof p, dir, files.items[i]);
            if (s == TD_OK)
                s = collect_file(c, p, k);
        }
        names_free(&files);
        TD_TRY(s);
    }
    return TD_OK;
}

static TdStatus to_split(TaskData *t, int sp, const Collected *c)
{
    TD_TRY(task_split_alloc(t, sp, c->n));
    int64_t ib = task_image_bytes(t);
    for (int64_t i = 0; i < c->n; i++) {
        const ImageBuf *b = &c->im[i];
        uint8_t *d = t->split[sp].images + i * ib;
        if (b->h != t->height || b->w != t->width)
            return td_fail(TD_ERR_FORMAT, "test image %lld is %dx%d but train images are %dx%d "
                           "(mixed sizes)", (long long)i, b->w, b->h, t->width, t->height);
        if (b->c == t->channels)
            memcpy(d, b->px, (size_t)ib);
        else /* gray widened to RGB */
            for (int64_t p = 0; p < ib / 3; p++)
                d[3 * p] = d[3 * p + 1] = d[3 * p + 2] = b->px[p];
        t->split[sp].labels[i] = c->label[i];
    }
    return TD_OK;
}

static void collected_free(Collected *c)
{
    for (int64_t i = 0; i < c->n; i++)
        image_buf_free(&c->im[i]);
    free(c->im);
    free(c->label);
    memset(c, 0, sizeof *c);
}

static TdStatus import_folder_lists(TaskData *t, const char *dir, const ImportOpts *o,
                                    NameList *classes, Collected *tr, Collected *te)
{
    char trd[4096], ted[4096];
    TD_TRY(import_path_join(trd, sizeof trd, dir, "train"));
    TD_TRY(import_path_join(ted, sizeof ted, dir, "test"));
    int has_test = is_dir(trd) && is_dir(ted);
    const char *root = has_test ? trd : dir;
    TD_TRY(list_dir(root, 1, classes));
    if (classes->n < 2)
        return td_fail(TD_ERR_FORMAT, "%s: %d class sub-folders; need at least 2", root,
                       classes->n);
    if (classes->n > TASK_MAX_CLASSES)
        return td_fail(TD_ERR_FORMAT, "%s: more than %d classes", root, TASK_MAX_CLASSES);
    TD_TRY(collect_split(tr, root, classes, 1));
    if (has_test) {
        NameList tc = {0};
        TdStatus s = list_dir(ted, 1, &tc);
        for (int i = 0; i < tc.n && s == TD_OK; i++)
            if (!bsearch(&tc.items[i], classes->items, (size_t)classes->n, sizeof(char *), str_cmp))
                s = td_fail(TD_ERR_FORMAT, "%s/%s: test class not among the train classes", ted,
                            tc.items[i]);
        names_free(&tc);
        TD_TRY(s);
        TD_TRY(collect_split(te, ted, classes, 0));
        if (te->n && (te->im[0].h != tr->im[0].h || te->im[0].w != tr->im[0].w))
            return td_fail(TD_ERR_FORMAT, "%s: image is %dx%d but %s is %dx%d (mixed sizes)",
                           te->first, te->im[0].w, te->im[0].h, tr->first, tr->im[0].w,
                           tr->im[0].h);
    }
    int C = 1;
    for (int64_t i = 0; i < tr->n; i++)
        C = tr->im[i].c > C ? tr->im[i].c : C;
    for (int64_t i = 0; i < te->n; i++)
        C = te->im[i].c > C ? te->im[i].c : C;
    char source[TASK_SOURCE_LEN];
    import_fmt(source, sizeof source, "image folder %s", dir);
    TD_TRY(task_init(t, o->name, source, o->seed, tr->im[0].h, tr->im[0].w, C, classes->n));
    for (int k = 0; k < classes->n; k++)
        import_fmt(t->classes[k], TASK_CLASS_LEN, "%s", classes->items[k]);
    if (o->classes)
        TD_TRY(import_set_classes(t, o->classes, "--classes"));
    TD_TRY(to_split(t, TASK_TRAIN, tr));
    if (has_test)
        TD_TRY(to_split(t, TASK_TEST, te));
    return import_finish(t, has_test, o);
}

TdStatus import_folder(TaskData *t, const char *dir, const ImportOpts *o)
{
    memset(t, 0, sizeof *t);
    NameList classes = {0};
    Collected tr = {0}, te = {0};
    TdStatus s = import_folder_lists(t, dir, o, &classes, &tr, &te);
    names_free(&classes);
    collected_free(&tr);
    collected_free(&te);
    if (s != TD_OK)
        task_free(t);
    return s;
}
