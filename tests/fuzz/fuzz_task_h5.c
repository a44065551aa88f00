/* Fuzz harness: the tadist task file (HDF5, format tadist-task-1):
 * task_read_header, then task_read (every split, validated, the checksum);
 * both start with the checks before libhdf5 (superblock, size, seal).
 * A sealed input (one that starts with "tadist-seal-1") is read twice: as it
 * is, then resealed (h5u_seal), so that a mutation reaches the parsers
 * behind the seal too.
 * Note: libhdf5 1.10 itself crashes on some corrupt object headers (a known
 * libhdf5 issue); such inputs stay out of the ctest corpus. */
#include "fuzz_common.h"

#include "task_io.h"

static void read_task(const char *path)
{
    TaskData t;
    memset(&t, 0, sizeof t);
    TdStatus s = task_read_header(path, &t);
    task_free(&t);
    if (s == TD_OK) {
        td_error_clear();
        memset(&t, 0, sizeof t);
        (void)task_read(path, &t);
        task_free(&t);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_h5_input(data, size, "task.h5", read_task);
    return 0;
}
