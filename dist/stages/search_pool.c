/* search_pool: the work pool and journal behind every coefficient search, and
 * the merge.alpha grid (search.h). */
#include "search.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "workqueue.h"

/* ---- the work pool ---- */

/* Rank 0: the values already in the journal (NaN where none), after checking
 * its key; a missing or foreign journal is (re)started with the key line. */
static TdStatus journal_open(const PoolSpec *p, double *done, int *ndone)
{
    *ndone = 0;
    for (int i = 0; i < p->nitems; i++)
        done[i] = NAN;
    char want[600];
    snprintf(want, sizeof want, "{\"key\":\"%s\"}", p->key);
    FILE *f = fopen(p->journal, "r");
    int fresh = 1;
    if (f) {
        char line[1024];
        if (fgets(line, sizeof line, f) && strncmp(line, want, strlen(want)) == 0) {
            fresh = 0;
            while (fgets(line, sizeof line, f)) {
                int item, end = -1;
                double v;
                size_t len = strlen(line);
                /* A line cut by a kill has no newline: ignored. The next
                 * append then lands behind the cut, so a line must also be
                 * exactly one record: "{...0.8" + "{\"item\":..}\n" would
                 * otherwise read as value 0.8. */
                if (len == 0 || line[len - 1] != '\n' ||
                    sscanf(line, "{\"item\":%d,\"value\":%lf}%n", &item, &v, &end) != 2 ||
                    end != (int)len - 1 || item < 0 || item >= p->nitems)
                    continue;
                if (isnan(done[item]))
                    (*ndone)++;
                done[item] = v;
            }
        } else {
            td_log("journal %s belongs to another search: starting over", p->journal);
        }
        fclose(f);
    }
    if (!fresh)
        return TD_OK;
    char tmp[800];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p->journal, (int)getpid());
    f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", want) > 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, p->journal) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "cannot write journal '%s': %s", p->journal, strerror(errno));
    }
    return TD_OK;
}

static TdStatus journal_append(int fd, const char *path, int item, double v)
{
    char line[128];
    int n = snprintf(line, sizeof line, "{\"item\":%d,\"value\":%.17g}\n", item, v);
    if (write(fd, line, (size_t)n) != n) /* one write: whole lines under O_APPEND */
        return td_fail(TD_ERR_IO, "cannot append to journal '%s': %s", path, strerror(errno));
    return TD_OK;
}

/* Items run by the pools of this process so far (the same on every rank):
 * merge.stop_after counts the items of the whole run, over every search. */
static long s_items_run;

/* Runs the pending items with a shared counter; vals gets this rank's results. */
static TdStatus pool_work(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx,
                          const int *pending, int npending, double *vals, int *stopped)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    WorkQueue q;
    TD_TRY(workqueue_open(&q, comm));
    int fd = open(p->journal, O_WRONLY | O_APPEND);
    TdStatus s = fd < 0 ? td_fail(TD_ERR_IO, "cannot open journal '%s': %s", p->journal,
                                  strerror(errno))
                        : TD_OK;
    double busy = 0;
    int count = 0;
    while (s == TD_OK) {
        /* A signal (runtime.h): this rank takes no further item; the others
         * finish theirs, and search_pool agrees on the stop after the pool. */
        if (runtime_stop_signal())
            break;
        long idx = workqueue_next(&q);
        if (idx >= npending)
            break;
        if (p->stop_after > 0 && s_items_run + idx >= p->stop_after) {
            *stopped = 1;
            break;
        }
        int item = pending[idx];
        double v = 0, t0 = td_wall();
        s = fn(ctx, item, &v);
        busy += td_wall() - t0;
        count++;
        if (s == TD_OK)
            s = journal_append(fd, p->journal, item, v);
        vals[item] = v;
    }
    if (fd >= 0 && runtime_stop_signal() && fsync(fd) != 0 && s == TD_OK)
        s = td_fail(TD_ERR_IO, "cannot flush journal '%s': %s", p->journal, strerror(errno));
    if (fd >= 0)
        close(fd);
    s = runtime_agree(comm, s); /* before the collective close */
    workqueue_close(&q);
    if (s == TD_OK && npending > 0 && !p->quiet) { /* the balance: items and busy seconds per rank */
        double lo[2] = {count, busy}, hi[2] = {count, busy};
        MPI_Allreduce(MPI_IN_PLACE, lo, 2, MPI_DOUBLE, MPI_MIN, comm);
        MPI_Allreduce(MPI_IN_PLACE, hi, 2, MPI_DOUBLE, MPI_MAX, comm);
        td_log("search pool: %d item(s); per rank %.0f..%.0f items, %.2f..%.2fs busy", npending,
               lo[0], hi[0], lo[1], hi[1]);
    }
    return s;
}

TdStatus search_pool(MPI_Comm comm, const PoolSpec *p, PoolItemFn fn, void *ctx, double *values)
{
    int rank;
    MPI_Comm_rank(comm, &rank);
    double *done = calloc((size_t)p->nitems + 1, sizeof *done);
    double *mine = calloc((size_t)p->nitems + 1, sizeof *mine);
    int *pending = calloc((size_t)p->nitems + 1, sizeof *pending);
    TdStatus s = done && mine && pending ? TD_OK : td_fail(TD_ERR_NOMEM, "search: out of memory");
    int ndone = 0;
    if (s == TD_OK && rank == 0)
        s = journal_open(p, done, &ndone);
    s = runtime_agree(comm, s);
    if (s == TD_OK) {
        MPI_Bcast(done, p->nitems, MPI_DOUBLE, 0, comm);
        MPI_Bcast(&ndone, 1, MPI_INT, 0, comm);
    }
    int npending = 0, lo = p->count > 0 ? p->first : 0;
    int hi = p->count > 0 ? p->first + p->count : p->nitems, ndone_range = 0;
    for (int i = lo; s == TD_OK && i < hi; i++) {
        if (isnan(done[i]))
            pending[npending++] = i;
        else
            ndone_range++;
    }
    if (s == TD_OK && ndone_range > 0 && p->count == 0)
        td_log("journal %s: %d of %d items already done, resuming", p->journal, ndone, p->nitems);
    else if (s == TD_OK && ndone_range > 0 && p->first == 0)
        td_log("journal %s: %d items already done, resuming", p->journal, ndone);
    int stopped = 0;
    if (s == TD_OK)
        s = pool_work(comm, p, fn, ctx, pending, npending, mine, &stopped);
    s_items_run += npending;
    if (s == TD_OK &&
        MPI_Allreduce(MPI_IN_PLACE, mine, p->nitems, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
        s = runtime_agree(comm, td_fail(TD_ERR_MPI, "search: MPI_Allreduce failed"));
    if (s == TD_OK) {
        int any = 0;
        MPI_Allreduce(&stopped, &any, 1, MPI_INT, MPI_MAX, comm);
        if (any)
            s = runtime_agree(comm, td_fail(TD_ERR_INTERNAL,
                                            "search stopped after %d items (merge.stop_after) as "
                                            "if killed; rerun to resume from %s",
                                            p->stop_after, p->journal));
    }
    /* The safe point of a graceful stop: every item taken is in the journal
     * (the rerun skips those), so the run can end here (exit 75). */
    if (s == TD_OK && runtime_stop_requested(comm))
        s = runtime_stop("in the search of %s; its items so far are in the journal", p->journal);
    for (int i = lo; s == TD_OK && i < hi; i++)
        values[i] = isnan(done[i]) ? mine[i] : done[i];
    free(done);
    free(mine);
    free(pending);
    return s;
}

/* ---- grid and choice ---- */

int search_alpha_count(const TdConfig *cfg)
{
    const TdMergeAlphaConfig *a = &cfg->merge.alpha;
    return (int)floor((a->stop - a->start) / a->step + 1e-9) + 1;
}

double search_alpha(const TdConfig *cfg, int i)
{
    return cfg->merge.alpha.start + i * cfg->merge.alpha.step;
}

int search_choose_alpha(const double *vals, int nalpha, int ntasks, const double *norm)
{
    int best = 0;
    double bv = -INFINITY;
    for (int a = 0; a < nalpha; a++) {
        double m = 0;
        for (int t = 0; t < ntasks; t++)
            m += vals[(size_t)a * ntasks + t] / (norm ? norm[t] : 1.0);
        m /= ntasks;
        if (m > bv) {
            bv = m;
            best = a;
        }
    }
    return best;
}
