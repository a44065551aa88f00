#include "image.h"

#include <math.h>
#include <stdlib.h>

const float k_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float k_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void image_cubic_weights(double t, double w[4])
{
    const double A = -0.75;
    double x1 = t + 1.0, x2 = 1.0 - t, x3 = 2.0 - t;
    w[0] = ((A * x1 - 5.0 * A) * x1 + 8.0 * A) * x1 - 4.0 * A;
    w[1] = ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    w[2] = ((A + 2.0) * x2 - (A + 3.0)) * x2 * x2 + 1.0;
    w[3] = ((A * x3 - 5.0 * A) * x3 + 8.0 * A) * x3 - 4.0 * A;
}

/* For output index j of a resize from n to r samples: the four clamped source
 * indices and their weights. */
static void taps(int j, int n, int r, int idx[4], float wt[4])
{
    double scale = (double)n / (double)r;
    double real = scale * (j + 0.5) - 0.5;
    double f = floor(real);
    double w[4];
    image_cubic_weights(real - f, w);
    for (int k = 0; k < 4; k++) {
        int i = (int)f - 1 + k;
        idx[k] = i < 0 ? 0 : (i > n - 1 ? n - 1 : i);
        wt[k] = (float)w[k];
    }
}

TdStatus image_resize_bicubic(float *out, const uint8_t *src, int H, int W, int C,
                              const ImageCrop *win, int rh, int rw, int oy, int ox, int oh, int ow)
{
    if (win->y < 0 || win->x < 0 || win->h < 1 || win->w < 1 || win->y + win->h > H ||
        win->x + win->w > W || rh < 1 || rw < 1 || oy < 0 || ox < 0 || oy + oh > rh ||
        ox + ow > rw)
        return td_fail(TD_ERR_INTERNAL, "bicubic resize: window or output out of range");
    float *tmp; /* horizontal pass: (win->h, ow, C) */
    TD_ALLOC(tmp, (size_t)win->h * (size_t)ow * (size_t)C);
    for (int x = 0; x < ow; x++) {
        int idx[4];
        float wt[4];
        taps(ox + x, win->w, rw, idx, wt);
        for (int y = 0; y < win->h; y++) {
            const uint8_t *row = src + ((size_t)(win->y + y) * W + win->x) * C;
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int k = 0; k < 4; k++)
                    s += wt[k] * (float)row[idx[k] * C + c];
                tmp[((size_t)y * ow + x) * C + c] = s * (1.0f / 255.0f);
            }
        }
    }
    /* vertical pass: out (C, oh, ow) */
    for (int y = 0; y < oh; y++) {
        int idx[4];
        float wt[4];
        taps(oy + y, win->h, rh, idx, wt);
        for (int x = 0; x < ow; x++)
            for (int c = 0; c < C; c++) {
                float s = 0.0f;
                for (int k = 0; k < 4; k++)
                    s += wt[k] * tmp[((size_t)idx[k] * ow + x) * C + c];
                out[((size_t)c * oh + y) * ow + x] = s;
            }
    }
    free(tmp);
    return TD_OK;
}

void image_rrc_params(TdRng *r, int H, int W, double smin, double smax, double rmin, double rmax,
                      ImageCrop *crop)
{
    double area = (double)H * W, lr0 = log(rmin), lr1 = log(rmax);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (smin + (smax - smin) * rng_uniform(r));
        double aspect = exp(lr0 + (lr1 - lr0) * rng_uniform(r));
        int w = (int)nearbyint(sqrt(target * aspect));
        int h = (int)nearbyint(sqrt(target / aspect));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            crop->y = (int)rng_below(r, (uint64_t)(H - h + 1));
            crop->x = (int)rng_below(r, (uint64_t)(W - w + 1));
            crop->h = h;
            crop->w = w;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < rmin)
        h = (int)nearbyint(w / rmin);
    else if (in_ratio > rmax)
        w = (int)nearbyint(h * rmax);
    crop->y = (H - h) / 2;
    crop->x = (W - w) / 2;
    crop->h = h;
    crop->w = w;
}

/* Gray to RGB and CLIP normalisation, in place on (C,S,S) -> (3,S,S). */
static float g_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static float g_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void image_set_normalisation(const float mean[3], const float std[3])
{
    for (int c = 0; c < 3; c++) {
        g_mean[c] = mean[c];
        g_std[c] = std[c];
    }
}

static void to_rgb_normalised(float *out, int C, int S)
{
    size_t plane = (size_t)S * S;
    if (C == 1)
        for (int c = 1; c < 3; c++)
            for (size_t i = 0; i < plane; i++)
                out[c * plane + i] = out[i];
    for (int c = 0; c < 3; c++) {
        float m = g_mean[c], inv = 1.0f / g_std[c];
        for (size_t i = 0; i < plane; i++)
            out[c * plane + i] = (out[c * plane + i] - m) * inv;
    }
}

TdStatus image_preprocess(float *out, const uint8_t *src, int H, int W, int C, int S,
                          const ImageCrop *crop)
{
    if (C != 1 && C != 3)
        return td_fail(TD_ERR_ARG, "preprocess: images must have 1 or 3 channels, not %d", C);
    if (crop) {
        TD_TRY(image_resize_bicubic(out, src, H, W, C, crop, S, S, 0, 0, S, S));
    } else {
        ImageCrop full = {0, 0, H, W};
        int rh, rw;
        if (H <= W) {
            rh = S;
            rw = (int)((long long)S * W / H);
        } else {
            rw = S;
            rh = (int)((long long)S * H / W);
        }
        int oy = (int)nearbyint((rh - S) / 2.0), ox = (int)nearbyint((rw - S) / 2.0);
        TD_TRY(image_resize_bicubic(out, src, H, W, C, &full, rh, rw, oy, ox, S, S));
    }
    to_rgb_normalised(out, C, S);
    return TD_OK;
}
