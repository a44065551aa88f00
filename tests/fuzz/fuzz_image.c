/* Fuzz harness: image files (PNG through libpng; PPM/PGM P2, P3, P5, P6) and
 * image folders. Input: one image file [FUZZ_SEP a second one]. Each is read
 * with image_read_file (named .png when it starts with PNG's signature, else
 * .ppm), then import_folder reads DIR/a/x.EXT and DIR/b/y.EXT (the second image,
 * or the first again). */
#include "fuzz_common.h"

#include "task_import.h"

static const char *ext_of(const uint8_t *p, size_t n)
{
    return n >= 4 && p[0] == 0x89 && p[1] == 'P' && p[2] == 'N' && p[3] == 'G' ? "png" : "ppm";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzParts parts;
    fuzz_split(data, size, 2, &parts);
    char path[1024], rel[64];
    static const char *const cls[2] = {"a/x", "b/y"};
    for (int i = 0; i < 2; i++) {
        int k = i < parts.n ? i : 0;
        snprintf(rel, sizeof rel, "img/%s.%s", cls[i], ext_of(parts.p[k], parts.len[k]));
        fuzz_write(path, sizeof path, rel, parts.p[k], parts.len[k]);
        if (i < parts.n) {
            ImageBuf img;
            memset(&img, 0, sizeof img);
            if (image_read_file(path, &img) == TD_OK) {
                unsigned sum = 0;
                for (size_t b = 0; b < (size_t)img.h * img.w * img.c; b++)
                    sum += img.px[b];
                (void)sum;
            }
            image_buf_free(&img);
            td_error_clear();
        }
    }
    ImportOpts o = {"fuzz", 1, 0.5, NULL};
    TaskData t;
    memset(&t, 0, sizeof t);
    (void)import_folder(&t, fuzz_path(path, sizeof path, "img"), &o);
    task_free(&t);
    fuzz_clean();
    return 0;
}
