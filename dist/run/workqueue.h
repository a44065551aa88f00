/* workqueue: dynamic load balancing. A counter on rank 0 of a communicator,
 * from which any rank takes the next item index with an atomic MPI one-sided
 * fetch-and-add, without waiting for the others: ranks that finish early
 * simply take more items. Used by the search pool (search.c) and the sweep's
 * runs (sweep.c). */
#ifndef TD_WORKQUEUE_H
#define TD_WORKQUEUE_H

#include <mpi.h>

#include "status.h"

typedef struct {
    MPI_Win win;
    long *counter; /* on rank 0 */
} WorkQueue;

/* Collective over comm: the counter starts at 0. Agreed status. */
TdStatus workqueue_open(WorkQueue *q, MPI_Comm comm);
/* The next index, 0, 1, 2, ... over all callers (any rank, not collective);
 * the caller compares it with its item count. */
long workqueue_next(WorkQueue *q);
/* Collective over the comm of workqueue_open. */
void workqueue_close(WorkQueue *q);

#endif
