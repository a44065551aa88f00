/* fuzz_common: helpers the libFuzzer harnesses of tests/fuzz share.
 *
 * Each harness defines LLVMFuzzerTestOneInput and calls tadist's real parsers.
 * Parsers that take a path get the input through a private temporary folder
 * (fuzz_dir: one per process, made on first use, emptied after every input).
 * TADIST_FUZZ_VERBOSE=1 prints each input's last error message (or "ok").
 * Inputs made of several files are split at FUZZ_SEP ("\n----8<----\n"):
 * part 0, part 1, ... (fuzz_split). Header-only: every harness is one C file. */
#ifndef TD_FUZZ_COMMON_H
#define TD_FUZZ_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "h5util.h"
#include "runtime.h"
#include "status.h"

#define FUZZ_SEP "\n----8<----\n"
enum { FUZZ_MAX_PARTS = 16 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int n;
    const uint8_t *p[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
} FuzzParts;

/* Splits data at FUZZ_SEP into at most max parts (the last part keeps the rest). */
static inline void fuzz_split(const uint8_t *data, size_t size, int max, FuzzParts *out)
{
    const size_t sl = sizeof FUZZ_SEP - 1;
    out->n = 0;
    if (max > FUZZ_MAX_PARTS)
        max = FUZZ_MAX_PARTS;
    size_t at = 0;
    while (out->n < max - 1) {
        const uint8_t *hit = size - at >= sl ? memmem(data + at, size - at, FUZZ_SEP, sl) : NULL;
        if (!hit)
            break;
        out->p[out->n] = data + at;
        out->len[out->n] = (size_t)(hit - (data + at));
        out->n++;
        at = (size_t)(hit - data) + sl;
    }
    out->p[out->n] = data + at;
    out->len[out->n] = size - at;
    out->n++;
}

/* A NUL-terminated copy of a part (free it). */
static inline char *fuzz_strdup(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* This process's scratch folder (under TMPDIR or /tmp), created once. */
static inline const char *fuzz_dir(void)
{
    static char dir[512];
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/tadist-fuzz-%ld-XXXXXX", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
    }
    return dir;
}

/* fuzz_dir()/rel, as a path in buf. */
static inline const char *fuzz_path(char *buf, size_t cap, const char *rel)
{
    snprintf(buf, cap, "%s/%s", fuzz_dir(), rel);
    return buf;
}

/* Writes n bytes to fuzz_dir()/rel (making rel's parent folders); returns the path in buf. */
static inline const char *fuzz_write(char *buf, size_t cap, const char *rel, const void *p, size_t n)
{
    fuzz_path(buf, cap, rel);
    for (char *s = buf + strlen(fuzz_dir()) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(buf, 0700);
        *s = '/';
    }
    FILE *f = fopen(buf, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(buf);
        abort();
    }
    return buf;
}

static inline void fuzz_rm_tree(const char *path, int keep_top)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[4096 + 256];
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub)
                continue;
            struct stat st;
            if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
                fuzz_rm_tree(sub, 0);
            else
                unlink(sub);
        }
        closedir(d);
    }
    if (!keep_top)
        rmdir(path);
}

static inline void fuzz_remove_dir_at_exit(void) { fuzz_rm_tree(fuzz_dir(), 0); }

/* Empties the scratch folder after an input (the folder itself stays until exit). */
static inline void fuzz_clean(void)
{
    static int registered;
    if (!registered) {
        registered = 1;
        atexit(fuzz_remove_dir_at_exit);
    }
    fuzz_rm_tree(fuzz_dir(), 1);
    if (getenv("TADIST_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz: %s\n", td_error_message()[0] ? td_error_message() : "ok");
    td_error_clear();
}

/* MPI as a singleton (one rank), started on first use, and g_rt filled as
 * runtime_init would for one rank (without its BLAS re-exec and self-check). */
/* The HDF5 harnesses: the input written to rel and read by read(path); an
 * input that starts with a seal (h5util.h) is read again once resealed, so
 * that the bytes behind a valid checksum reach libhdf5 too. */
static inline void fuzz_h5_input(const uint8_t *data, size_t size, const char *rel,
                                 void (*read)(const char *path))
{
    char path[1024];
    fuzz_write(path, sizeof path, rel, data, size);
    read(path);
    if (size >= 14 && memcmp(data, "tadist-seal-1\n", 14) == 0) {
        td_error_clear();
        if (h5u_seal(path) == TD_OK)
            read(path);
    }
    fuzz_clean();
}

static inline void fuzz_mpi_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited)
        MPI_Init(NULL, NULL); /* never finalized: Open MPI's unloaded plugins would
                                 otherwise show as unsymbolised leaks at exit */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    g_rt.comm = MPI_COMM_WORLD;
    g_rt.rank = g_rt.world_rank = 0;
    g_rt.size = g_rt.world_size = 1;
    g_rt.node_rank = 0;
    g_rt.node_size = 1;
    g_rt.blas_threads = 1;
    g_rt.micro_batch = TD_MICRO_BATCH_DEFAULT;
    setenv("TADIST_QUIET", "1", 0);
}

#endif
