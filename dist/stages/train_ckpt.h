/* train_ckpt: the checkpoint files of the training stages (finetune,
 * pretrain) and when to write them.
 *
 * A checkpoint is one HDF5 file: a key (attribute "config_hash": a hash of the
 * settings the trajectory depends on), the completed steps ("step") and named
 * float vectors (trained tensors, AdamW moments, ...). The ranks of a group
 * train data-parallel, so each holds the same state: each writes its own
 * contiguous share of every vector, collectively with parallel HDF5 (MPI-IO),
 * into <path>.tmp, which the group's rank 0 renames to path once the file is
 * closed. A kill during a write leaves the previous checkpoint whole. Reading
 * is independent: every rank reads the whole file alone. */
#ifndef TD_TRAIN_CKPT_H
#define TD_TRAIN_CKPT_H

#include <hdf5.h>
#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

typedef struct {
    MPI_Comm comm;
    int rank, size;
    hid_t f, dxpl;
    TdStatus s;       /* the first failure; agreed by ckpt_write_end */
    double t0;
    char path[700], tmp[720];
} CkptWriter;

/* Collective over comm: creates path's temporary file with key and step. */
void ckpt_write_begin(CkptWriter *w, MPI_Comm comm, const char *path, const char *key,
                      long step);
/* Collective: the vector v (n floats, the same on every rank). Every rank
 * makes the same calls, whether an earlier one failed or not. */
void ckpt_write_vec(CkptWriter *w, const char *name, const float *v, size_t n);
/* Collective: a double attribute (the same value on every rank). */
void ckpt_write_f64(CkptWriter *w, const char *name, double v);
/* Collective: closes and renames; the status is agreed over comm. *secs (may
 * be NULL): the write's wall time, from begin to the agreed rename. */
TdStatus ckpt_write_end(CkptWriter *w, double *secs);

typedef struct {
    hid_t f;
    char path[700];
} CkptReader;

/* Opens path when it exists and carries key: *found = 1 and *step. A
 * missing file, or one made with other settings (logged, then ignored),
 * gives *found = 0 and TD_OK. A file that cannot be read is an error naming
 * it. Any rank alone. */
TdStatus ckpt_read_open(CkptReader *r, const char *path, const char *key, long *step,
                        int *found);
/* Reads vector name, which must hold n floats; -1 when it cannot. */
int ckpt_read_vec(CkptReader *r, const char *name, float *v, size_t n);
/* Reads double attribute name; -1 when it is missing (*v untouched). */
int ckpt_read_f64(CkptReader *r, const char *name, double *v);
void ckpt_read_close(CkptReader *r);

/* When the next checkpoint is due: every `every` steps, or every `minutes`
 * of wall time since the last one by the clock of comm's rank 0 (broadcast,
 * so that every rank decides the same), and at the last step when either is
 * on; 0 turns each off. */
typedef struct {
    int every;
    double minutes;
    double t_last;
} CkptClock;

void ckpt_clock_start(CkptClock *c, int every, double minutes);
/* Collective over comm (an MPI_Bcast of one int when minutes > 0). */
bool ckpt_clock_due(CkptClock *c, MPI_Comm comm, long step, long steps);
/* A checkpoint was written now. */
void ckpt_clock_reset(CkptClock *c);

#endif
