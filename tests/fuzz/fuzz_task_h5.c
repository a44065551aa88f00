/* Fuzz harness: the tadist task file (HDF5, format tadist-task-1):
 * task_read_header, then task_read (every split, validated).
 * Note: libhdf5 1.10 itself crashes on some corrupt object headers (a known
 * libhdf5 issue); such inputs stay out of the ctest corpus. */
#include "fuzz_common.h"

#include "task_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024];
    fuzz_write(path, sizeof path, "task.h5", data, size);
    TaskData t;
    memset(&t, 0, sizeof t);
    TdStatus s = task_read_header(path, &t);
    task_free(&t);
    td_error_clear();
    if (s == TD_OK) {
        memset(&t, 0, sizeof t);
        (void)task_read(path, &t);
        task_free(&t);
    }
    fuzz_clean();
    return 0;
}
