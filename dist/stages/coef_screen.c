/* coef_screen: coefficient vectors screened through the linear surrogate,
 * the best verified exactly (coef_search.h, merge.search = surrogate). */
#include "coef_search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmaes.h"
#include "rng.h"
#include "sur_data.h"
#include "surrogate.h"
#include "workqueue.h"

/* What the screening needs on every rank. */
typedef struct {
    CoefRun *cr;
    int K, A, T, exhaustive;
    const double *vals;
    SurTask task[TV_MAX_TASKS];
    float *p[TV_MAX_TASKS];
    SurGrid *grid;
    int fixed;             /* digits fixed per chunk (exhaustive) */
    long stop_after;       /* merge.stop_after: end after that many chunks, as if killed */
    long nchunks, per;     /* chunks, candidates per chunk */
    long samples;
    int seed;
} Screen;

/* Candidate index -> coefficients. Exhaustive: grid digits; sampled: the
 * sample number, each coefficient a seeded draw from the grid. */
static void cand_coef(const Screen *S, uint64_t index, double *c)
{
    for (int j = 0; j < S->K; j++) {
        int d = S->exhaustive ? (int)(index % (uint64_t)S->A)
                              : search_random_coef(S->seed, (int)index, j, S->A);
        if (S->exhaustive)
            index /= (uint64_t)S->A;
        c[j] = S->vals[d];
    }
}

/* Coefficients c's surrogate score (mean normalised val accuracy), in double. */
static double cand_score(const Screen *S, const double *c)
{
    double score = 0;
    for (int t = 0; t < S->T; t++)
        score += (double)sur_correct(S->task[t].p, S->task[t].y, S->task[t].n, 1 + S->K,
                                     S->task[t].C, c) /
                 (double)S->task[t].n * S->task[t].weight;
    return score;
}

/* The sampled candidates [first, first + n): scored in double. */
static uint64_t sample_chunk(Screen *S, long first, long n, SurCand *top, int k, int *ntop)
{
    double c[512];
    for (long s = first; s < first + n && s < S->samples; s++) {
        cand_coef(S, (uint64_t)s, c);
        sur_top_add(top, k, ntop, (SurCand){cand_score(S, c), (uint64_t)s});
    }
    return (uint64_t)(first + n < S->samples ? n : S->samples - first);
}

/* ---- the journal of finished chunks: one line each, with its top ---- */

static void journal_line(char **buf, size_t *cap, long chunk, uint64_t visited, const SurCand *top,
                         int ntop)
{
    size_t need = 64 + (size_t)ntop * 64;
    if (need > *cap) {
        free(*buf);
        *cap = need;
        *buf = malloc(need);
    }
    if (!*buf)
        return;
    int n = snprintf(*buf, *cap, "{\"chunk\":%ld,\"visited\":%llu,\"top\":[", chunk,
                     (unsigned long long)visited);
    for (int i = 0; i < ntop; i++)
        n += snprintf(*buf + n, *cap - (size_t)n, "%s[%llu,%.17g]", i ? "," : "",
                      (unsigned long long)top[i].index, top[i].score);
    snprintf(*buf + n, *cap - (size_t)n, "]}\n");
}

/* Rank 0: the chunks already done (done[c] = 1) and their tops merged into
 * top; a missing or foreign journal is started over with the key line. */
static TdStatus journal_read(const char *path, const char *key, char *done, long nchunks,
                             SurCand *top, int k, int *ntop, uint64_t *visited)
{
    char want[200];
    snprintf(want, sizeof want, "{\"key\":\"%s\"}\n", key);
    FILE *f = fopen(path, "r");
    int fresh = 1;
    if (f) {
        size_t cap = 1 << 16;
        char *line = malloc(cap);
        if (line && fgets(line, (int)cap, f) && strcmp(line, want) == 0) {
            fresh = 0;
            while (fgets(line, (int)cap, f)) {
                size_t len = strlen(line);
                if (len == 0 || line[len - 1] != '\n') /* cut by a kill: ignored */
                    continue;
                cJSON *o = cJSON_Parse(line);
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "chunk");
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "visited");
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "top");
                if (cJSON_IsNumber(c) && cJSON_IsNumber(v) && cJSON_IsArray(t) &&
                    c->valuedouble >= 0 && c->valuedouble < nchunks && !done[(long)c->valuedouble]) {
                    done[(long)c->valuedouble] = 1;
                    *visited += (uint64_t)v->valuedouble;
                    const cJSON *e;
                    cJSON_ArrayForEach(e, t)
                    {
                        const cJSON *i = cJSON_GetArrayItem(e, 0), *sc = cJSON_GetArrayItem(e, 1);
                        if (cJSON_IsNumber(i) && cJSON_IsNumber(sc))
                            sur_top_add(top, k, ntop,
                                        (SurCand){sc->valuedouble, (uint64_t)i->valuedouble});
                    }
                }
                cJSON_Delete(o);
            }
        }
        free(line);
        fclose(f);
    }
    if (!fresh)
        return TD_OK;
    f = fopen(path, "w");
    int ok = f && fputs(want, f) >= 0;
    if (f)
        ok = fclose(f) == 0 && ok;
    return ok ? TD_OK : td_fail(TD_ERR_IO, "cannot write journal '%s': %s", path, strerror(errno));
}

/* Every chunk not in the journal, dealt over the ranks; the merged top on
 * every rank, best first; *visited: every candidate, *fresh: those screened
 * by this run (not read from the journal). */
static TdStatus screen_all(Screen *S, const char *journal, const char *key, SurCand *top, int k,
                           int *ntop, uint64_t *visited, uint64_t *fresh, double *busy)
{
    char *done = calloc((size_t)S->nchunks + 1, 1);
    SurCand *mine = malloc(((size_t)k + 1) * sizeof *mine), *ctop = malloc(((size_t)k + 1) *
                                                                            sizeof *ctop);
    TdStatus s = done && mine && ctop ? TD_OK : td_fail(TD_ERR_NOMEM, "screen: out of memory");
    *ntop = 0;
    *visited = 0;
    uint64_t vjournal = 0;
    if (s == TD_OK && g_rt.rank == 0)
        s = journal_read(journal, key, done, S->nchunks, top, k, ntop, &vjournal);
    s = runtime_agree(g_rt.comm, s);
    long ndone = 0;
    if (s == TD_OK) {
        MPI_Bcast(done, (int)S->nchunks, MPI_CHAR, 0, g_rt.comm);
        for (long c = 0; c < S->nchunks; c++)
            ndone += done[c];
        if (ndone)
            td_log("surrogate screening: %ld of %ld chunks already in %s, resuming", ndone,
                   S->nchunks, journal);
    }
    long *pending = malloc(((size_t)S->nchunks + 1) * sizeof *pending);
    long np = 0;
    for (long c = 0; pending && c < S->nchunks; c++)
        if (!done[c])
            pending[np++] = c;
    int nm = 0, stopped = 0;
    uint64_t vmine = 0;
    WorkQueue q;
    int fd = -1;
    if (s == TD_OK && !pending)
        s = td_fail(TD_ERR_NOMEM, "screen: out of memory");
    s = runtime_agree(g_rt.comm, s);
    if (s == TD_OK)
        s = workqueue_open(&q, g_rt.comm);
    if (s == TD_OK) {
        fd = open(journal, O_WRONLY | O_APPEND);
        if (fd < 0)
            s = td_fail(TD_ERR_IO, "cannot open journal '%s': %s", journal, strerror(errno));
        char *line = NULL;
        size_t cap = 0;
        double t0 = td_wall(), last = t0;
        while (s == TD_OK) {
            /* a signal (runtime.h): this rank takes no further chunk */
            if (runtime_stop_signal())
                break;
            long i = workqueue_next(&q);
            if (i >= np)
                break;
            if (S->stop_after > 0 && ndone + i >= S->stop_after) {
                stopped = 1; /* testing and timing: as if killed here */
                break;
            }
            int nc = 0;
            uint64_t v = S->exhaustive
                             ? sur_grid_chunk(S->grid, (uint64_t)pending[i] * (uint64_t)S->per,
                                              S->fixed, ctop, k, &nc)
                             : sample_chunk(S, pending[i] * S->per, S->per, ctop, k, &nc);
            vmine += v;
            for (int j = 0; j < nc; j++)
                sur_top_add(mine, k, &nm, ctop[j]);
            journal_line(&line, &cap, pending[i], v, ctop, nc);
            if (!line || write(fd, line, strlen(line)) != (ssize_t)strlen(line))
                s = td_fail(TD_ERR_IO, "cannot append to journal '%s'", journal);
            if (g_rt.rank == 0 && td_wall() - last > 30) {
                last = td_wall();
                td_log("surrogate screening: chunk %ld of %ld handed out, %.0f candidates/s on "
                       "rank 0 (%.1f%% of its images scored one candidate at a time)",
                       i + ndone + 1, S->nchunks, (double)vmine / (last - t0),
                       S->exhaustive ? 100 * sur_grid_undecided(S->grid) : 0.0);
            }
        }
        *busy = td_wall() - t0;
        free(line);
        if (fd >= 0 && runtime_stop_signal() && fsync(fd) != 0 && s == TD_OK)
            s = td_fail(TD_ERR_IO, "cannot flush journal '%s'", journal);
        if (fd >= 0)
            close(fd);
        s = runtime_agree(g_rt.comm, s);
        workqueue_close(&q);
        int any = stopped;
        MPI_Allreduce(&stopped, &any, 1, MPI_INT, MPI_MAX, g_rt.comm);
        if (s == TD_OK && any) {
            double rate = (double)vmine / (*busy > 0 ? *busy : 1e-9);
            MPI_Allreduce(MPI_IN_PLACE, &rate, 1, MPI_DOUBLE, MPI_SUM, g_rt.comm);
            s = runtime_agree(g_rt.comm,
                              td_fail(TD_ERR_INTERNAL,
                                      "screening stopped after %ld chunks (merge.stop_after) as if "
                                      "killed, at %.4g candidates/s over %d rank(s); rerun to "
                                      "resume from %s",
                                      S->stop_after, rate, g_rt.size, journal));
        }
        /* the safe point of a graceful stop: every finished chunk is in the
         * journal */
        if (s == TD_OK && runtime_stop_requested(g_rt.comm))
            s = runtime_stop("in the surrogate screening; its chunks so far are in %s", journal);
    }
    /* every rank's top, merged in rank order (ties: the smaller index) */
    SurCand *all = s == TD_OK && g_rt.rank == 0
                       ? malloc((size_t)g_rt.size * k * sizeof *all + 1) : NULL;
    int *counts = g_rt.rank == 0 ? calloc((size_t)g_rt.size, sizeof *counts) : NULL;
    if (s == TD_OK) {
        MPI_Gather(&nm, 1, MPI_INT, counts, 1, MPI_INT, 0, g_rt.comm);
        for (int j = nm; j < k; j++)
            mine[j] = (SurCand){-INFINITY, UINT64_MAX};
        MPI_Gather(mine, (int)(k * sizeof *mine), MPI_BYTE, all, (int)(k * sizeof *mine),
                   MPI_BYTE, 0, g_rt.comm);
        for (int rk = 0; g_rt.rank == 0 && all && rk < g_rt.size; rk++)
            for (int j = 0; j < counts[rk]; j++)
                sur_top_add(top, k, ntop, all[(size_t)rk * k + j]);
        MPI_Bcast(ntop, 1, MPI_INT, 0, g_rt.comm);
        MPI_Bcast(top, (int)(*ntop * sizeof *top), MPI_BYTE, 0, g_rt.comm);
        uint64_t vsum = 0;
        MPI_Allreduce(&vmine, &vsum, 1, MPI_UINT64_T, MPI_SUM, g_rt.comm);
        MPI_Bcast(&vjournal, 1, MPI_UINT64_T, 0, g_rt.comm);
        *visited = vsum + vjournal;
        *fresh = vsum;
        sur_top_sort(top, *ntop);
    }
    free(all), free(counts), free(done), free(mine), free(ctop), free(pending);
    return s;
}

/* ---- the cmaes strategy: IPOP-CMA-ES on the surrogate ---- */

/* Candidate (score, index, c) into the best k (score, then the smaller
 * index), unless the same coefficients are there already (the boundary map
 * puts many samples on a bound). X (k x K) rows follow their entries. */
static void vec_top_add(SurCand *top, double *X, int K, int k, int *ntop, SurCand cand,
                        const double *c)
{
    for (int i = 0; i < *ntop; i++)
        if (memcmp(X + (size_t)i * K, c, (size_t)K * sizeof *c) == 0)
            return;
    int pos = *ntop;
    while (pos > 0 && (top[pos - 1].score < cand.score ||
                       (top[pos - 1].score == cand.score && top[pos - 1].index > cand.index)))
        pos--;
    if (pos >= k)
        return;
    int last = *ntop < k ? *ntop : k - 1;
    memmove(top + pos + 1, top + pos, (size_t)(last - pos) * sizeof *top);
    memmove(X + (size_t)(pos + 1) * K, X + (size_t)pos * K, (size_t)(last - pos) * K * sizeof *X);
    top[pos] = cand;
    memcpy(X + (size_t)pos * K, c, (size_t)K * sizeof *c);
    if (*ntop < k)
        (*ntop)++;
}

/* CMA-ES (kernels/cmaes.h) within merge.bounds, sigma0 a quarter of the box:
 * restart 0 from the uniform alpha with the default population, restart r
 * from a seeded uniform point with the population doubled r times (IPOP),
 * each until CMA-ES's stop conditions, until S->samples candidates are
 * scored (the start first). A generation's candidates are dealt over the
 * ranks (candidate i on rank i % size) and their scores summed over ranks
 * (one term each), so every rank tells the same values: the same search at
 * any rank count. Not journaled: a rerun repeats it. top/X (k, k x K): the
 * best distinct candidates, best first. */
static TdStatus screen_cmaes(Screen *S, int k, SurCand *top, double *X, int *ntop,
                             uint64_t *visited, double *busy)
{
    CoefRun *cr = S->cr;
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    const int K = S->K;
    const double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    const long budget = S->samples;
    *ntop = 0;
    double *los = malloc((size_t)K * sizeof *los), *his = malloc((size_t)K * sizeof *his),
           *x0 = malloc((size_t)K * sizeof *x0);
    TdStatus s = los && his && x0 ? TD_OK : td_fail(TD_ERR_NOMEM, "screen: out of memory");
    if (s == TD_OK && !(lo < hi))
        s = td_fail(TD_ERR_CONFIG, "merge.surrogate.strategy = cmaes needs merge.bounds[0] < "
                                   "merge.bounds[1] (%g, %g)", lo, hi);
    s = runtime_agree(g_rt.comm, s);
    const double start = cr->ualpha < lo ? lo : cr->ualpha > hi ? hi : cr->ualpha;
    for (int j = 0; s == TD_OK && j < K; j++) {
        los[j] = lo;
        his[j] = hi;
        x0[j] = start;
    }
    long used = 0;
    double t0 = td_wall(), last = t0;
    if (s == TD_OK) { /* the start */
        vec_top_add(top, X, K, k, ntop, (SurCand){cand_score(S, x0), 0}, x0);
        used = 1;
    }
    double *G = NULL, *f = NULL;
    int lam_default = 0, gens = 0;
    for (int restart = 0; s == TD_OK && used < budget; restart++) {
        if (restart > 0) {
            TdRng g;
            rng_seed(&g, rng_derive((uint64_t)cfg->merge.seed, 0x5352u, (uint64_t)restart));
            for (int j = 0; j < K; j++)
                x0[j] = lo + (hi - lo) * rng_uniform(&g);
        }
        int lam = restart == 0 ? 0 : lam_default << (restart < 20 ? restart : 20);
        if (restart > 0 && used + lam > budget)
            break;
        CmaEs *es = NULL;
        s = runtime_agree(g_rt.comm, cmaes_create(&es, K, x0, 0.25 * (hi - lo), lam,
                                                  (uint64_t)cfg->merge.seed + (uint64_t)restart,
                                                  los, his));
        if (s != TD_OK)
            break;
        lam = cmaes_lambda(es);
        if (restart == 0)
            lam_default = lam;
        free(G), free(f);
        G = malloc((size_t)lam * K * sizeof *G);
        f = malloc((size_t)lam * sizeof *f);
        if (!G || !f)
            s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "screen: out of memory"));
        unsigned why = 0;
        while (s == TD_OK && used + lam <= budget && !why) {
            cmaes_ask(es, G);
            for (int i = 0; i < lam; i++)
                f[i] = i % g_rt.size == g_rt.rank ? -cand_score(S, G + (size_t)i * K) : 0.0;
            MPI_Allreduce(MPI_IN_PLACE, f, lam, MPI_DOUBLE, MPI_SUM, g_rt.comm);
            for (int i = 0; i < lam; i++)
                vec_top_add(top, X, K, k, ntop, (SurCand){-f[i], (uint64_t)(used + i)},
                            G + (size_t)i * K);
            cmaes_tell(es, f);
            used += lam;
            gens++;
            why = cmaes_stop(es);
            if (g_rt.rank == 0 && td_wall() - last > 30) {
                last = td_wall();
                td_log("surrogate cmaes: restart %d (population %d), %ld of %ld candidates, "
                       "best %.4f", restart, lam, used, budget, top[0].score);
            }
            if (runtime_stop_requested(g_rt.comm))
                s = runtime_stop("in the surrogate CMA-ES screening (not journaled: a rerun "
                                 "repeats its %ld candidates)", used);
        }
        cmaes_free(es);
    }
    *busy = td_wall() - t0;
    *visited = (uint64_t)used;
    if (s == TD_OK)
        td_log("surrogate cmaes: %ld candidates in %d generation(s), %.1fs", used, gens, *busy);
    free(G), free(f), free(los), free(his), free(x0);
    return s;
}

/* ---- the adamerging strategy: AdaMerging on the surrogate ---- */

/* Adam (coef_adam_step, the settings of coef_learn.c) on merge.adamerging's
 * objective through the tensors dt (entropy: test, labels never read; val_ce:
 * val): each step takes merge.adamerging.batch images of every task from a
 * seeded permutation of its images (a new one each epoch) and sums the
 * tasks' means. Every rank computes the same steps (a step costs (1 + T x G)
 * x E x batch x T multiply-adds: no communication). The candidates are the
 * iterates after k evenly spaced steps (the last one included), scored on
 * val through S's projections, best first in top/X. Not journaled: a rerun
 * repeats it. trace (steps): the objective of each step. */
static TdStatus screen_adamerging(Screen *S, const SurData *dt, int k, SurCand *top, double *X,
                                  int *ntop, double *trace, double *busy)
{
    CoefRun *cr = S->cr;
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    const TdMergeAdamergingConfig *ac = &cfg->merge.adamerging;
    const int K = S->K, T = S->T, TG = cr->cs.T * cr->cs.G, B = ac->batch;
    const long steps = ac->steps;
    const int entropy = strcmp(ac->objective, "entropy") == 0;
    const double lo = cfg->merge.bounds[0], hi = cfg->merge.bounds[1];
    *ntop = 0;
    double *c = calloc((size_t)K, sizeof *c), *m = calloc((size_t)K, sizeof *m),
           *v = calloc((size_t)K, sizeof *v), *gc = calloc((size_t)K, sizeof *gc),
           *a = calloc((size_t)TG, sizeof *a), *ga = calloc((size_t)TG, sizeof *ga);
    int64_t *perm[TV_MAX_TASKS] = {0}, *idx = calloc((size_t)B, sizeof *idx);
    int64_t pos[TV_MAX_TASKS] = {0};
    long epoch[TV_MAX_TASKS] = {0};
    TdStatus s = c && m && v && gc && a && ga && idx ? TD_OK
                                                     : td_fail(TD_ERR_NOMEM, "out of memory");
    for (int t = 0; s == TD_OK && t < T; t++) {
        if (dt->n[t] < 1)
            s = td_fail(TD_ERR_CONFIG, "surrogate adamerging: task '%s' has no %s images",
                        cfg->data.tasks.item[t], entropy ? "test" : "val");
        else if (!(perm[t] = malloc((size_t)dt->n[t] * sizeof *perm[t])))
            s = td_fail(TD_ERR_NOMEM, "out of memory");
        pos[t] = dt->n[t]; /* a permutation is drawn at the first step */
    }
    s = runtime_agree(g_rt.comm, s);
    for (int j = 0; j < K; j++)
        c[j] = ac->init < lo ? lo : ac->init > hi ? hi : ac->init;
    double t0 = td_wall(), last = t0;
    int next = 0; /* the next snapshot */
    for (long step = 0; s == TD_OK && step < steps; step++) {
        coef_expand(&cr->cs, c, a);
        memset(ga, 0, (size_t)TG * sizeof *ga);
        double loss = 0;
        for (int t = 0; s == TD_OK && t < T; t++) {
            for (int b = 0; b < B; b++) {
                if (pos[t] >= dt->n[t]) { /* a new epoch: a seeded shuffle */
                    TdRng g;
                    rng_seed(&g, rng_derive((uint64_t)cfg->run.seed * 1000003u + 77u,
                                            (uint64_t)t, (uint64_t)epoch[t]++));
                    for (int64_t i = 0; i < dt->n[t]; i++)
                        perm[t][i] = i;
                    rng_shuffle(&g, perm[t], dt->n[t]);
                    pos[t] = 0;
                }
                idx[b] = perm[t][pos[t]++];
            }
            s = sur_objective(dt->u[t], entropy ? NULL : dt->y[t], idx, B, dt->R, dt->E,
                              r->head[t], r->classes[t], cfg->heads.logit_scale, a, 1.0 / B,
                              &loss, ga);
        }
        if ((s = runtime_agree(g_rt.comm, s)) != TD_OK)
            break;
        coef_reduce(&cr->cs, ga, gc);
        coef_adam_step(c, gc, m, v, (size_t)K, step + 1, ac->lr, 0.9, 0.999, 1e-8, lo, hi);
        trace[step] = loss;
        /* snapshot i after step floor((i + 1) * steps / k) (1-based) */
        while (next < k && (long)(((long long)(next + 1) * steps) / k) == step + 1) {
            top[*ntop] = (SurCand){cand_score(S, c), (uint64_t)(step + 1)};
            memcpy(X + (size_t)*ntop * K, c, (size_t)K * sizeof *c);
            (*ntop)++;
            next++;
        }
        if (g_rt.rank == 0 && (td_wall() - last > 30 || (step + 1) % ac->log_every == 0)) {
            last = td_wall();
            td_log("surrogate adamerging: step %ld of %ld, %s %.5f", step + 1, steps,
                   ac->objective, loss);
        }
        if (runtime_stop_requested(g_rt.comm))
            s = runtime_stop("in the surrogate AdaMerging (not journaled: a rerun repeats its "
                             "%ld steps)", steps);
    }
    /* best first (score, then the earlier step), rows following */
    for (int i = 1; s == TD_OK && i < *ntop; i++)
        for (int j = i; j > 0 && (top[j].score > top[j - 1].score ||
                                  (top[j].score == top[j - 1].score &&
                                   top[j].index < top[j - 1].index)); j--) {
            SurCand x = top[j];
            top[j] = top[j - 1];
            top[j - 1] = x;
            for (int q = 0; q < K; q++) {
                double y = X[(size_t)j * K + q];
                X[(size_t)j * K + q] = X[(size_t)(j - 1) * K + q];
                X[(size_t)(j - 1) * K + q] = y;
            }
        }
    *busy = td_wall() - t0;
    if (s == TD_OK)
        td_log("surrogate adamerging: %ld steps in %.2fs, %s %.5f -> %.5f", steps, *busy,
               ac->objective, trace[0], trace[steps - 1]);
    for (int t = 0; t < T; t++)
        free(perm[t]);
    free(c), free(m), free(v), free(gc), free(a), free(ga), free(idx);
    return s;
}

static void screen_free(Screen *S)
{
    sur_grid_free(S->grid);
    for (int t = 0; t < TV_MAX_TASKS; t++)
        free(S->p[t]);
}

TdStatus coef_screen(CoefRun *cr, CoefResult *res)
{
    ModeRun *r = cr->r;
    const TdConfig *cfg = r->cfg;
    const TdMergeSurrogateConfig *sc = &cfg->merge.surrogate;
    const char *kind = coef_kind_name(cr->cs.kind);
    Screen S;
    memset(&S, 0, sizeof S);
    S.cr = cr;
    S.K = cr->cs.K;
    S.A = sc->values.count;
    S.T = r->ntasks;
    S.vals = sc->values.v;
    S.seed = cfg->merge.seed;
    S.stop_after = cfg->merge.stop_after;
    if (S.A < 2 || S.K > 512)
        return runtime_agree(g_rt.comm, td_fail(TD_ERR_CONFIG,
                                                "merge.surrogate.values needs at least 2 values "
                                                "(and at most 512 coefficients: %d)", S.K));
    double t0 = td_wall();
    char tag[600];
    snprintf(tag, sizeof tag, "%s_%s_%s_val", r->mode, cr->method, kind);
    SurData d;
    TD_TRY(coef_sur_tensors(cr, TASK_VAL, &d));
    double jvp_seconds = td_wall() - t0; /* (and the test split's, for adamerging) */
    TdStatus s = TD_OK;
    for (int t = 0; s == TD_OK && t < S.T; t++) {
        s = sur_data_project(&d, &cr->cs, t, r->head[t], r->classes[t], &S.p[t]);
        S.task[t] = (SurTask){d.n[t], r->classes[t], S.p[t], d.y[t], 1.0 / (S.T * cr->nval[t])};
    }
    const int cm = strcmp(sc->strategy, "cmaes") == 0, am = strcmp(sc->strategy, "adamerging") == 0;
    const int am_entropy = am && strcmp(cfg->merge.adamerging.objective, "entropy") == 0;
    const long am_steps = cfg->merge.adamerging.steps;
    double total = pow((double)S.A, (double)S.K);
    S.exhaustive = !cm && !am && total <= sc->exhaustive_max;
    SurData dtest = {0}; /* adamerging with the entropy: the test split's tensors */
    double *am_trace = NULL;
    if (am && s == TD_OK) {
        s = runtime_agree(g_rt.comm, (am_trace = calloc((size_t)am_steps, sizeof *am_trace))
                                         ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory"));
        if (s == TD_OK && am_entropy)
            s = coef_sur_tensors(cr, TASK_TEST, &dtest);
        jvp_seconds = td_wall() - t0;
    }
    if (cm || am) {
        S.samples = cm ? sc->samples : 0;
    } else if (s == TD_OK && S.exhaustive) {
        s = sur_grid_create(&S.grid, S.task, S.T, S.K, S.vals, S.A);
        /* chunks: each a whole run of free digits, at least 1000 of them where
         * the grid allows (the ranks balance; the journal's chunks mean the
         * same at any rank count, so a run resumes on another count) */
        S.fixed = 0;
        S.nchunks = 1;
        while (S.fixed < S.K && S.nchunks < 1000) {
            S.fixed++;
            S.nchunks *= S.A;
        }
        S.per = (long)(total / (double)S.nchunks + 0.5);
    } else if (s == TD_OK) {
        S.samples = sc->samples;
        S.per = 500;
        S.nchunks = (S.samples + S.per - 1) / S.per;
    }
    s = runtime_agree(g_rt.comm, s);
    const int k = am && sc->top_k > am_steps ? (int)am_steps : sc->top_k;
    SurCand *top = malloc(((size_t)k + 1) * sizeof *top);
    double *X = malloc(((size_t)k + 1) * S.K * sizeof *X); /* the top's coefficients */
    if (s == TD_OK && (!top || !X))
        s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "screen: out of memory"));
    int ntop = 0;
    uint64_t visited = 0, fresh = 0;
    double busy = 0, t1 = td_wall();
    char journal[1200], key[40], what[4096];
    snprintf(journal, sizeof journal, "%s/search/surrogate_%s_%s_%s.jsonl", r->run_dir, r->mode,
             cr->method, kind);
    /* the key: everything a chunk's top depends on, every grid value included */
    int wn = snprintf(what, sizeof what, "surrogate2|%s|%d|%ld|%d|%d|%s|%d|%ld|", kind,
                      S.exhaustive, S.samples, S.seed, k, tag, S.fixed, S.nchunks);
    for (int a = 0; a < S.A && wn > 0 && (size_t)wn < sizeof what; a++)
        wn += snprintf(what + wn, sizeof what - (size_t)wn, "%.17g,", S.vals[a]);
    if (cm && wn > 0 && (size_t)wn < sizeof what) /* and the strategy's own settings */
        snprintf(what + wn, sizeof what - (size_t)wn, "|cmaes|%.17g|%.17g|%.17g",
                 cfg->merge.bounds[0], cfg->merge.bounds[1], cr->ualpha);
    if (am && wn > 0 && (size_t)wn < sizeof what) {
        const TdMergeAdamergingConfig *ac = &cfg->merge.adamerging;
        snprintf(what + wn, sizeof what - (size_t)wn,
                 "|adamerging|%s|%.17g|%.17g|%d|%ld|%.17g|%.17g|%d", ac->objective, ac->lr,
                 ac->init, ac->batch, am_steps, cfg->merge.bounds[0], cfg->merge.bounds[1],
                 cfg->run.seed);
    }
    if (s == TD_OK) {
        double *one = calloc((size_t)S.K, sizeof *one);
        for (int j = 0; one && j < S.K; j++)
            one[j] = 1.0;
        if (one)
            coef_apply(cr, one);
        free(one);
        mode_search_key(r, what, key);
        if (am) {
            td_log("coefficients %s/%s/surrogate_%s: AdaMerging on the surrogate (%s on %s, "
                   "%ld steps), %d iterates the candidates",
                   r->mode, cr->method, kind, cfg->merge.adamerging.objective,
                   am_entropy ? "test" : "val", am_steps, k);
            s = screen_adamerging(&S, am_entropy ? &dtest : &d, k, top, X, &ntop, am_trace,
                                  &busy);
            visited = fresh = (uint64_t)ntop;
        } else if (cm) {
            td_log("coefficients %s/%s/surrogate_%s: screening with CMA-ES (IPOP restarts) %ld "
                   "candidates of %d coefficients in [%g, %g]",
                   r->mode, cr->method, kind, S.samples, S.K, cfg->merge.bounds[0],
                   cfg->merge.bounds[1]);
            s = screen_cmaes(&S, k, top, X, &ntop, &visited, &busy);
            fresh = visited;
        } else {
            td_log("coefficients %s/%s/surrogate_%s: screening %s %.4g candidates (%d values "
                   "per coefficient, %d coefficients) in %ld chunks",
                   r->mode, cr->method, kind, S.exhaustive ? "all" : "a sample of",
                   S.exhaustive ? total : (double)S.samples, S.A, S.K, S.nchunks);
            s = screen_all(&S, journal, key, top, k, &ntop, &visited, &fresh, &busy);
            for (int i = 0; s == TD_OK && i < ntop; i++)
                cand_coef(&S, top[i].index, X + (size_t)i * S.K);
        }
    }
    double screen_seconds = td_wall() - t1;
    /* the share of images scored candidate by candidate (the rest were
     * decided for a whole block by their margins), averaged over the ranks */
    double und[2] = {0, 0}; /* sum of the ranks' shares, ranks with blocks */
    if (S.exhaustive && S.grid && isfinite(sur_grid_undecided(S.grid)))
        und[0] = sur_grid_undecided(S.grid), und[1] = 1;
    if (s == TD_OK)
        MPI_Allreduce(MPI_IN_PLACE, und, 2, MPI_DOUBLE, MPI_SUM, g_rt.comm);
    const double undecided = und[1] > 0 ? und[0] / und[1] : NAN;
    char ustr[96] = "";
    if (isfinite(undecided))
        snprintf(ustr, sizeof ustr, "; %.1f%% of images scored one candidate at a time",
                 100 * undecided);
    /* the top, verified exactly */
    double *exact = s == TD_OK ? malloc(((size_t)ntop + 1) * sizeof *exact) : NULL;
    double *sur = s == TD_OK ? malloc(((size_t)ntop + 1) * sizeof *sur) : NULL;
    if (s == TD_OK && (!exact || !sur))
        s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "screen: out of memory"));
    for (int i = 0; s == TD_OK && i < ntop; i++)
        sur[i] = top[i].score;
    double t2 = td_wall();
    char vtag[300];
    snprintf(vtag, sizeof vtag, "surrogate_%s%s_verify", cm ? "cmaes_" : am ? "adamerging_" : "",
             kind);
    if (s == TD_OK)
        s = coef_verify(cr, X, ntop, vtag, what, exact);
    double verify_seconds = td_wall() - t2;
    if (s == TD_OK) {
        int b = 0;
        for (int i = 1; i < ntop; i++)
            if (exact[i] > exact[b])
                b = i;
        double rho = sur_spearman(sur, exact, ntop);
        int agree = exact[0] >= exact[b];
        res->c = malloc((size_t)S.K * sizeof *res->c);
        res->trace = malloc((size_t)ntop * sizeof *res->trace);
        res->cand = X;
        res->vals = NULL;
        X = NULL;
        if (!res->c || !res->trace)
            s = runtime_agree(g_rt.comm, td_fail(TD_ERR_NOMEM, "out of memory"));
        for (int i = 0; s == TD_OK && i < ntop; i++) /* the exact best so far, in screening order */
            res->trace[i] = i == 0 || exact[i] > res->trace[i - 1] ? exact[i] : res->trace[i - 1];
        if (s == TD_OK)
            memcpy(res->c, res->cand + (size_t)b * S.K, (size_t)S.K * sizeof *res->c);
        res->iterations = ntop;
        res->objective = exact[b];
        res->objective_name = "norm_acc";
        res->split = "val";
        res->seconds = td_wall() - t0;
        /* the rate of this run's own screening (a resumed run read the rest) */
        double per_rank = (double)fresh / g_rt.size / (screen_seconds > 0 ? screen_seconds : 1e-9);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "screening",
                                cm ? "cmaes" : am ? "adamerging" : S.exhaustive ? "exhaustive"
                                                                                : "sampled");
        if (am) {
            cJSON *tr = cJSON_CreateDoubleArray(am_trace, (int)am_steps);
            cJSON_AddStringToObject(x, "adamerging_objective", cfg->merge.adamerging.objective);
            cJSON_AddStringToObject(x, "adamerging_split", am_entropy ? "test" : "val");
            if (tr)
                cJSON_AddItemToObject(x, "adamerging_trace", tr);
        }
        cJSON_AddNumberToObject(x, "candidates", (double)visited);
        if (!cm)
            cJSON_AddNumberToObject(x, "values_per_coefficient", S.A);
        cJSON_AddNumberToObject(x, "ranks", g_rt.size);
        cJSON_AddNumberToObject(x, "jvp_seconds", jvp_seconds);
        cJSON_AddNumberToObject(x, "surrogate_tensors_computed", d.seconds > 0);
        cJSON_AddNumberToObject(x, "screen_seconds", screen_seconds);
        cJSON_AddNumberToObject(x, "candidates_per_second_per_rank", per_rank);
        if (isfinite(undecided))
            cJSON_AddNumberToObject(x, "block_undecided_share", undecided);
        cJSON_AddNumberToObject(x, "verified", ntop);
        cJSON_AddNumberToObject(x, "verify_seconds", verify_seconds);
        cJSON_AddNumberToObject(x, "spearman_verified", rho);
        cJSON_AddBoolToObject(x, "surrogate_best_is_exact_best", agree);
        cJSON_AddNumberToObject(x, "surrogate_best_norm_val_surrogate", sur[0]);
        cJSON_AddNumberToObject(x, "surrogate_best_norm_val_exact", exact[0]);
        cJSON_AddNumberToObject(x, "chosen_norm_val_surrogate", sur[b]);
        cJSON_AddNumberToObject(x, "chosen_rank_in_screening", b + 1);
        res->extra = x;
        td_log("coefficients %s/%s/surrogate_%s: %.4g candidates screened in %.1fs (%.3g per s "
               "per rank, %d rank(s)%s); top %d verified exactly in %.1fs: Spearman %.3f, "
               "surrogate best %.4f (exact %.4f), chosen #%d exact %.4f",
               r->mode, cr->method, kind, (double)visited, screen_seconds, per_rank, g_rt.size,
               ustr, ntop, verify_seconds, rho, sur[0], exact[0], b + 1, exact[b]);
    }
    free(X), free(exact), free(sur), free(top);
    screen_free(&S);
    sur_data_free(&d);
    if (am_entropy)
        sur_data_free(&dtest);
    free(am_trace);
    return s;
}
