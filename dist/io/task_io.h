/* task_io: the task data file (HDF5), one file per task, and the in-memory task.
 *
 * Layout of TASK.h5:
 *   /                  attributes: format = "tadist-task-1" (string), name (string),
 *                      source (string: where the images came from), seed (uint64:
 *                      the seed of the val split and of any generator),
 *                      height, width, channels, num_classes (int32), checksum
 *                      (string: task_checksum of the values; files written
 *                      before it have none)
 *   /classes           fixed-length strings [K] (NUL-terminated, sized to the longest),
 *                      class names in label order
 *   /train/images      uint8 [N,H,W,C], row-major, C = 1 (gray) or 3 (RGB);
 *                      contiguous, uncompressed: loaders read scattered images
 *   /train/labels      int32 [N], each in [0, K)
 *   /val/..., /test/... the same.
 * val is a seeded random 10% of the source's train split (at most 5000 images)
 * and train the rest, both kept in source order (task_make_val).
 *
 * The file starts with a sealed user block (h5util.h: XXH3-128 of every byte
 * after it), checked before libhdf5 opens the file.
 * Files are written to "<path>.tmp.<pid>" and renamed, never left half-written.
 * Everything here is single-process (any rank, independent HDF5 I/O). */
#ifndef TD_TASK_IO_H
#define TD_TASK_IO_H

#include <stdint.h>

#include "status.h"

enum { TASK_TRAIN = 0, TASK_VAL = 1, TASK_TEST = 2, TASK_NSPLITS = 3 };
extern const char *const k_task_split_names[TASK_NSPLITS];

enum { TASK_NAME_LEN = 64, TASK_SOURCE_LEN = 512, TASK_CLASS_LEN = 64, TASK_MAX_CLASSES = 8192 };
enum { TASK_VAL_MAX = 5000 };

typedef struct {
    int64_t n;
    uint8_t *images; /* (n,H,W,C) */
    int32_t *labels; /* (n) */
} TaskSplit;

typedef struct {
    char name[TASK_NAME_LEN];
    char source[TASK_SOURCE_LEN];
    uint64_t seed;
    int height, width, channels; /* H, W, C */
    int num_classes;             /* K */
    char (*classes)[TASK_CLASS_LEN];
    int captions;                /* 1: the class names are captions of a contrastive
                                    pre-training set (attribute captions = 1): a caption
                                    may have no image, and is then a negative only */
    TaskSplit split[TASK_NSPLITS];
} TaskData;

/* Sets the header fields and allocates K empty class names ("0", "1", ... by default). */
TdStatus task_init(TaskData *t, const char *name, const char *source, uint64_t seed, int H, int W,
                   int C, int K);
/* (Re)allocates split s for n images of the task's shape, zeroed. */
TdStatus task_split_alloc(TaskData *t, int s, int64_t n);
void task_free(TaskData *t);

static inline int64_t task_image_bytes(const TaskData *t)
{
    return (int64_t)t->height * t->width * t->channels;
}

/* Number of val images carved from a train split of n: 10%, at most 5000. */
int64_t task_val_count(int64_t n);
/* Moves a seeded random task_val_count(n) images of split[TASK_TRAIN] (the
 * source's train split) into split[TASK_VAL]; both keep source order. */
TdStatus task_make_val(TaskData *t, uint64_t seed);
/* Moves a seeded random `count` images of split `from` into the empty split
 * `to` (both keep order); salt separates the streams of different uses. */
TdStatus task_carve(TaskData *t, int from, int to, int64_t count, uint64_t seed, uint64_t salt);

/* Checks labels in range, every class present in train, non-empty train and
 * test; messages name `what` (a file), the split and the record. */
TdStatus task_validate(const TaskData *t, const char *what);

/* XXH3-128 of the values, as 32 hex digits: each split's count (uint64), images
 * and labels, then the class names (each with its NUL). */
void task_checksum(const TaskData *t, char out[40]);

/* Validates, then writes path atomically. */
TdStatus task_write(const char *path, const TaskData *t);
/* Reads the whole file (all splits), validating it and its checksum; errors name
 * the file and dataset. A missing file's error points to docs/TASK_DATA.md. */
TdStatus task_read(const char *path, TaskData *t);
/* Reads header, classes and split sizes only (images/labels stay NULL); the
 * seal, when the file has one, still covers every byte. */
TdStatus task_read_header(const char *path, TaskData *t);

/* Prints "name  classes  train/val/test  HxWxC  source" lines. */
void task_print_summary_header(void);
void task_print_summary(const TaskData *t);

#endif
