/* Fuzz harness: the tadist model file (HDF5, format tadist-vit-1): model_read
 * (attributes, architecture bounds, every tensor's shape, the checksum).
 * Note: libhdf5 1.10 itself crashes on some corrupt object headers (a known
 * libhdf5 issue); such inputs stay out of the ctest corpus. */
#include "fuzz_common.h"

#include "model_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[1024];
    fuzz_write(path, sizeof path, "model.h5", data, size);
    VitModel m;
    memset(&m, 0, sizeof m);
    if (model_read(path, &m) == TD_OK) {
        char desc[256];
        model_describe(&m.arch, desc, sizeof desc);
        (void)model_numel(&m);
    }
    if (m.params)
        model_free(&m);
    fuzz_clean();
    return 0;
}
