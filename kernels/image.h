/* image: the encoder's input preprocessing (single-process, no I/O).
 *
 * Size letters: H, W, C source image (uint8, row-major (H,W,C), C = 1 or 3);
 * S the model's image side. Output is float (3,S,S), channel-major, as the
 * encoder's patch embedding expects; a batch is (B,3,S,S).
 *
 * Bicubic resampling matches PyTorch's
 *   torch.nn.functional.interpolate(x, size, mode="bicubic", align_corners=False)
 * (antialias off, Keys cubic with a = -0.75, source coordinate (i+0.5)*in/out-0.5,
 * taps clamped to the border), applied to float values v/255 with no clamping of
 * the overshoot. It is NOT PIL's bicubic (a = -0.5, and PIL widens the kernel
 * when it downsamples). The resampling is separable; rounding differs from
 * PyTorch's 2-D evaluation only in the last float bits.
 *
 * Train: RandomResizedCrop as torchvision draws it (area fraction in
 * scale = (0.9, 1.0), log-uniform aspect ratio in (3/4, 4/3), ten tries, then a
 * centre crop fallback), the crop resized to SxS.
 * Eval: resize the shorter side to S (longer side int(S*long/short)), centre
 * crop SxS (offset round((len-S)/2)).
 * Then grayscale -> 3 channels, and CLIP's mean/std. */
#ifndef TD_IMAGE_H
#define TD_IMAGE_H

#include <stdint.h>

#include "rng.h"
#include "status.h"

extern const float k_clip_mean[3];
extern const float k_clip_std[3];

/* Per-channel normalisation that image_preprocess applies: CLIP's statistics
 * unless a configuration (data.mean, data.std) sets others for the process. */
void image_set_normalisation(const float mean[3], const float std[3]);

/* A source window (y, x, h, w) inside the image. */
typedef struct {
    int y, x, h, w;
} ImageCrop;

/* The keys cubic weights of the four taps at fractional offset t in [0,1). */
void image_cubic_weights(double t, double w[4]);

/* Bicubic resample of the window win of src (H,W,C uint8, values taken as v/255)
 * as if to a full (rh,rw) image, keeping only rows [oy, oy+oh) and columns
 * [ox, ox+ow): out (C,oh,ow) float. Taps are clamped to the window (as PyTorch
 * does on a cropped tensor). */
TdStatus image_resize_bicubic(float *out, const uint8_t *src, int H, int W, int C,
                              const ImageCrop *win, int rh, int rw, int oy, int ox, int oh, int ow);

/* torchvision RandomResizedCrop.get_params with scale (smin, smax) and ratio
 * (rmin, rmax), drawing from r. */
void image_rrc_params(TdRng *r, int H, int W, double smin, double smax, double rmin, double rmax,
                      ImageCrop *crop);

/* Full preprocessing of one image to out (3,S,S): crop == NULL is the eval
 * path (shorter side to S, centre crop); otherwise the crop window is resized
 * to SxS (train path with a crop from image_rrc_params). */
TdStatus image_preprocess(float *out, const uint8_t *src, int H, int W, int C, int S,
                          const ImageCrop *crop);

/* The train-time crop this project uses: RandomResizedCrop scale (0.9, 1.0),
 * ratio (3/4, 4/3). */
static inline void image_train_crop(TdRng *r, int H, int W, ImageCrop *crop)
{
    image_rrc_params(r, H, W, 0.9, 1.0, 3.0 / 4.0, 4.0 / 3.0, crop);
}

#endif
