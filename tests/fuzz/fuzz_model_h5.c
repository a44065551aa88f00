/* Fuzz harness: the tadist model file (HDF5, format tadist-vit-1): model_read
 * (the checks before libhdf5: superblock, size, seal; then attributes,
 * architecture bounds, every tensor's shape, the checksum).
 * A sealed input (one that starts with "tadist-seal-1") is read twice: as it
 * is, which mostly tests the seal, then resealed (h5u_seal), so that a
 * mutation reaches the parsers behind the seal too.
 * Note: libhdf5 1.10 itself crashes on some corrupt object headers (a known
 * libhdf5 issue); such inputs stay out of the ctest corpus. */
#include "fuzz_common.h"

#include "model_io.h"

static void read_model(const char *path)
{
    VitModel m;
    memset(&m, 0, sizeof m);
    if (model_read(path, &m) == TD_OK) {
        char desc[256];
        model_describe(&m.arch, desc, sizeof desc);
        (void)model_numel(&m);
    }
    if (m.params)
        model_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_h5_input(data, size, "model.h5", read_model);
    return 0;
}
