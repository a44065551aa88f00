/* Fuzz harness: IDX files (LeCun's MNIST format), plain or gzipped.
 * Input: IMAGES [FUZZ_SEP LABELS]. Each part is read with idx_read (and every
 * element of a 1-D array with idx_value); both parts together go through
 * import_idx as the train split and again as the test split (import_idx
 * needs all four files). A part starting with gzip's magic is named *.gz (zlib reads both
 * either way). */
#include "fuzz_common.h"

#include "task_import.h"

static const char *write_part(char *buf, size_t cap, const char *stem, const uint8_t *p, size_t n)
{
    char rel[64];
    snprintf(rel, sizeof rel, "%s%s", stem, n >= 2 && p[0] == 0x1f && p[1] == 0x8b ? ".gz" : "");
    return fuzz_write(buf, cap, rel, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzParts parts;
    fuzz_split(data, size, 2, &parts);
    char path[2][1024];
    static const char *const stems[2] = {"train-images-idx", "train-labels-idx"};
    for (int i = 0; i < parts.n; i++) {
        write_part(path[i], sizeof path[i], stems[i], parts.p[i], parts.len[i]);
        IdxArray a;
        memset(&a, 0, sizeof a);
        if (idx_read(path[i], &a) == TD_OK && a.ndim == 1) {
            int64_t sum = 0;
            for (int64_t k = 0; k < a.count; k++)
                sum += idx_value(&a, k);
            (void)sum;
        }
        idx_free(&a);
        td_error_clear();
    }
    if (parts.n == 2) {
        ImportOpts o = {"fuzz", 1, 0.25, NULL};
        TaskData t;
        memset(&t, 0, sizeof t);
        (void)import_idx(&t, path[0], path[1], path[0], path[1], &o);
        task_free(&t);
    }
    fuzz_clean();
    return 0;
}
