#include "workqueue.h"

#include "runtime.h"

TdStatus workqueue_open(WorkQueue *q, MPI_Comm comm)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    q->counter = NULL;
    if (MPI_Win_allocate(rank == 0 ? (MPI_Aint)sizeof(long) : 0, sizeof(long), MPI_INFO_NULL,
                         comm, &q->counter, &q->win) != MPI_SUCCESS)
        return runtime_agree(comm, td_fail(TD_ERR_MPI, "work queue: MPI_Win_allocate failed"));
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, q->win);
        *q->counter = 0;
        MPI_Win_unlock(0, q->win);
    }
    MPI_Barrier(comm); /* nobody takes an item before the counter is 0 */
    MPI_Win_lock_all(0, q->win);
    return TD_OK;
}

long workqueue_next(WorkQueue *q)
{
    const long one = 1;
    long idx = 0;
    MPI_Fetch_and_op(&one, &idx, MPI_LONG, 0, 0, MPI_SUM, q->win);
    MPI_Win_flush(0, q->win);
    return idx;
}

void workqueue_close(WorkQueue *q)
{
    MPI_Win_unlock_all(q->win);
    MPI_Win_free(&q->win);
}
