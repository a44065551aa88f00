/* task_loader: streams preprocessed batches of one split of a task file.
 *
 * The order of an epoch depends on (seed, epoch) only: a seeded permutation
 * for training (shuffle), file order for evaluation. Global batch b holds the
 * order's entries [b*B, (b+1)*B). It is cut into units of LoaderOpts.unit
 * images (the engine's micro-batches; the last one may be short), U of them,
 * and rank r of `size` takes units [floor(U*r/size), floor(U*(r+1)/size)): a
 * contiguous slice of whole units, so a unit is the same images, at the same
 * places, for any rank count. It reads just those images (one HDF5 hyperslab
 * union, independent I/O). The train-time crop of the image
 * at position p of the epoch is drawn from a stream seeded by (seed, epoch, p).
 * So the global batch - indices, labels and preprocessed pixels - is the same
 * for any rank count; only who computes which part changes.
 *
 * An evaluation pass may be limited to an evenly spaced subset (LoaderOpts.limit).
 *
 * Preprocessing (kernels/image.h): train = RandomResizedCrop(S, scale crop_scale
 * (default (0.9,1)), bicubic); eval = resize shorter side + centre crop; then gray -> RGB and
 * CLIP mean/std. With no_crop, train batches use the eval preprocessing (the
 * same pixels every epoch). Output x is (n_local, 3, S, S) float, y (n_local) int32. */
#ifndef TD_TASK_LOADER_H
#define TD_TASK_LOADER_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

#include "status.h"
#include "task_io.h"

typedef struct {
    const char *path;  /* TASK.h5 */
    int split;         /* TASK_TRAIN, TASK_VAL or TASK_TEST */
    int global_batch;  /* B, over all ranks */
    int image_size;    /* S, the model's image side */
    uint64_t seed;
    int train;         /* 1: shuffle every epoch, random crops, drop the last partial batch */
    int no_crop;       /* with train: no random crop, the eval preprocessing instead
                          (data.augment = false); order and batches unchanged */
    double crop_scale[2]; /* train crops: RandomResizedCrop area range (data.crop_scale);
                             {0, 0} = (0.9, 1.0) */
    int64_t limit;     /* evaluation only: 0 < limit < split size keeps `limit` images
                          evenly spaced over the split (positions floor(j * n / limit)),
                          so a subsample of a class-sorted file still covers every class */
    int unit;          /* ranks take whole units of this many images (>= 1; 0 = 1) */
} LoaderOpts;

typedef struct {
    int epoch;
    int64_t batch;            /* index of the batch in its epoch */
    int nglobal;              /* images in the global batch (0: end of an eval pass) */
    int offset, nlocal;       /* this rank's slice of it */
    const int64_t *indices;   /* (nglobal) split indices of the global batch */
} LoaderBatch;

typedef struct {
    MPI_Comm comm;
    int rank, size;
    LoaderOpts o;
    TaskData info;            /* header: shape, classes, split sizes (no pixels) */
    int64_t n;                /* images in the split */
    int64_t batches;          /* per epoch */
    int epoch;
    int64_t batch;            /* next batch */
    int64_t *order;           /* (n) this epoch's order */
    hid_t file, dimages, dlabels;
    uint8_t *raw;             /* (local max, H, W, C) read buffer */
    int64_t *sorted;          /* (local max) scratch */
    int32_t *rawlab;          /* (local max) */
} TaskLoader;

/* Collective over comm: opens the split of o->path on every rank. */
TdStatus loader_open(TaskLoader *L, MPI_Comm comm, const LoaderOpts *o);
void loader_close(TaskLoader *L);

/* Most images one rank gets in a batch, rounded up to whole units (for sizing
 * x and y: a short last unit can then be padded to a whole one). */
int loader_local_max(const TaskLoader *L);

/* Positions the loader at (epoch, batch). Local. */
void loader_seek(TaskLoader *L, int epoch, int64_t batch);

/* Reads and preprocesses this rank's slice of the next global batch into
 * x (nlocal,3,S,S) and y (nlocal). Training rolls over into the next epoch; an
 * evaluation pass ends with one batch of nglobal = 0, then starts again.
 * Local (not collective): agree (runtime_agree) before the next collective. */
TdStatus loader_next(TaskLoader *L, float *x, int32_t *y, LoaderBatch *b);

/* As loader_next, but reads units [u0, u1) of the next global batch
 * (clamped to the batch), whatever the communicator: for a caller that
 * deals the units of several loaders over its ranks itself. x and y must
 * hold u1 - u0 units; a loader opened on MPI_COMM_SELF has room for all. */
TdStatus loader_next_units(TaskLoader *L, int u0, int u1, float *x, int32_t *y, LoaderBatch *b);

#endif
