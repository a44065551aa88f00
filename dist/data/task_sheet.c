/* Contact sheets: a quick look at a task file, one row per class. */
#include <stdlib.h>
#include <string.h>

#include "task_import.h"

TdStatus task_write_sheet(const TaskData *t, const char *png, int per_class, int zoom)
{
    if (per_class < 1 || per_class > 64 || zoom < 1 || zoom > 8)
        return td_fail(TD_ERR_ARG, "sheet: per-class count 1..64 and zoom 1..8");
    const int gap = 2, H = t->height * zoom, W = t->width * zoom;
    /* many classes (a captioned set): the first rows*cols train images in order */
    const int K = t->num_classes, by_order = K > 64, rows = by_order ? 16 : K, cols = per_class;
    int sh = gap + rows * (H + gap), sw = gap + cols * (W + gap);
    uint8_t *px;
    TD_ALLOC(px, (int64_t)sh * sw * 3);
    memset(px, 96, (size_t)sh * sw * 3);
    int *filled;
    TD_ALLOC(filled, K);
    const TaskSplit *sp = &t->split[TASK_TRAIN];
    int64_t ib = task_image_bytes(t);
    for (int64_t i = 0; i < sp->n; i++) {
        int k = by_order ? (int)(i / cols) : sp->labels[i];
        if (k < 0 || k >= rows || (!by_order && filled[k] >= cols))
            continue;
        int oy = gap + k * (H + gap), ox = gap + (by_order ? (int)(i % cols) : filled[k]++) * (W + gap);
        const uint8_t *src = sp->images + i * ib;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) {
                    int cc = t->channels == 3 ? c : 0;
                    px[((int64_t)(oy + y) * sw + ox + x) * 3 + c] =
                        src[((y / zoom) * t->width + x / zoom) * t->channels + cc];
                }
    }
    free(filled);
    TdStatus s = image_write_png(png, px, sh, sw, 3);
    free(px);
    return s;
}
