/* kernels/image: bicubic resize and preprocessing against PyTorch's outputs
 * (tests/fixtures/image_bicubic, written by jobs/make_image_fixture.py) and
 * against a direct 2-D double-precision evaluation of the formula written here;
 * RandomResizedCrop's draws against their definition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

static void lcg_image(uint8_t *px, int n, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        x = (x * 1103515245u + 12345u) % 2147483648u;
        px[i] = (uint8_t)((x >> 16) % 256);
    }
}

/* Keys' cubic convolution kernel, a = -0.75, written from its definition. */
static double keys(double s)
{
    const double a = -0.75;
    s = fabs(s);
    if (s <= 1)
        return (a + 2) * s * s * s - (a + 3) * s * s + 1;
    if (s < 2)
        return a * s * s * s - 5 * a * s * s + 8 * a * s - 4 * a;
    return 0;
}

/* out(c, i, j) = sum_{m,n} keys(sy - m) keys(sx - n) in(clamp(m), clamp(n)),
 * sy = (i + 0.5) * h / oh - 0.5: every source row and column, in double. */
static double direct(const uint8_t *px, int W, int C, int y0, int x0, int h, int w, int oh, int ow,
                     int c, int i, int j)
{
    double sy = (i + 0.5) * h / oh - 0.5, sx = (j + 0.5) * w / ow - 0.5, acc = 0;
    for (int m = (int)floor(sy) - 1; m <= (int)floor(sy) + 2; m++)
        for (int n = (int)floor(sx) - 1; n <= (int)floor(sx) + 2; n++) {
            int mm = m < 0 ? 0 : m >= h ? h - 1 : m, nn = n < 0 ? 0 : n >= w ? w - 1 : n;
            acc += keys(sy - m) * keys(sx - n) * px[((y0 + mm) * W + x0 + nn) * C + c] / 255.0;
        }
    return acc;
}

static cJSON *load_fixture(void)
{
    const char *path = TADIST_FIXTURES "/image_bicubic/reference.json";
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    assert_non_null(root);
    return root;
}

static int geti(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItem(o, k)->valueint;
}

/* Every fixture case: ours vs PyTorch, and (resize cases) the direct formula vs PyTorch. */
static void test_against_pytorch(void **state)
{
    (void)state;
    cJSON *root = load_fixture();
    const cJSON *cases = cJSON_GetObjectItem(root, "cases");
    int ncase = 0;
    for (const cJSON *cs = cases->child; cs; cs = cs->next, ncase++) {
        int h = geti(cs, "h"), w = geti(cs, "w"), c = geti(cs, "c");
        uint8_t *px = malloc((size_t)(h * w * c));
        lcg_image(px, h * w * c, (uint64_t)geti(cs, "seed"));
        const cJSON *ref = cJSON_GetObjectItem(cs, "out");
        int nref = cJSON_GetArraySize(ref);
        float *out = calloc((size_t)nref, sizeof(float));
        double worst = 0, worst_direct = 0;
        int is_resize = strcmp(cJSON_GetObjectItem(cs, "kind")->valuestring, "resize") == 0;
        int oh = 0, ow = 0;
        ImageCrop win = {0, 0, h, w};
        if (is_resize) {
            const cJSON *wv = cJSON_GetObjectItem(cs, "window");
            win.y = cJSON_GetArrayItem(wv, 0)->valueint;
            win.x = cJSON_GetArrayItem(wv, 1)->valueint;
            win.h = cJSON_GetArrayItem(wv, 2)->valueint;
            win.w = cJSON_GetArrayItem(wv, 3)->valueint;
            oh = geti(cs, "oh");
            ow = geti(cs, "ow");
            assert_int_equal(nref, c * oh * ow);
            assert_int_equal(image_resize_bicubic(out, px, h, w, c, &win, oh, ow, 0, 0, oh, ow),
                             TD_OK);
        } else {
            int S = geti(cs, "s");
            assert_int_equal(nref, 3 * S * S);
            assert_int_equal(image_preprocess(out, px, h, w, c, S, NULL), TD_OK);
        }
        int k = 0;
        for (const cJSON *v = ref->child; v; v = v->next, k++) {
            worst = fmax(worst, fabs(out[k] - v->valuedouble));
            if (is_resize) {
                int ch = k / (oh * ow), i = (k / ow) % oh, j = k % ow;
                double d = direct(px, w, c, win.y, win.x, win.h, win.w, oh, ow, ch, i, j);
                worst_direct = fmax(worst_direct, fabs(d - v->valuedouble));
            }
        }
        printf("case %d (%s %dx%dx%d): worst |ours - pytorch| %.3g, |direct - pytorch| %.3g\n",
               ncase, is_resize ? "resize" : "eval", h, w, c, worst, worst_direct);
        assert_true(worst < 2e-5);       /* float32 vs float64: a few ulps of the range */
        assert_true(worst_direct < 1e-8); /* the formula itself agrees to print precision */
        free(out);
        free(px);
    }
    assert_int_equal(ncase, 7);
    cJSON_Delete(root);
}

/* Separable float evaluation vs the direct 2-D double formula on random
 * windows and sizes, up and down. */
static void test_against_direct_formula(void **state)
{
    (void)state;
    TdRng r;
    rng_seed(&r, 7);
    double worst = 0;
    for (int trial = 0; trial < 40; trial++) {
        int H = 5 + (int)rng_below(&r, 40), W = 5 + (int)rng_below(&r, 40), C = trial % 2 ? 3 : 1;
        uint8_t *px = malloc((size_t)(H * W * C));
        for (int i = 0; i < H * W * C; i++)
            px[i] = (uint8_t)rng_below(&r, 256);
        ImageCrop win = {(int)rng_below(&r, 3), (int)rng_below(&r, 3), 0, 0};
        win.h = H - win.y - (int)rng_below(&r, 3);
        win.w = W - win.x - (int)rng_below(&r, 3);
        int oh = 1 + (int)rng_below(&r, 60), ow = 1 + (int)rng_below(&r, 60);
        float *out = malloc(sizeof(float) * (size_t)(C * oh * ow));
        assert_int_equal(image_resize_bicubic(out, px, H, W, C, &win, oh, ow, 0, 0, oh, ow), TD_OK);
        for (int c = 0; c < C; c++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    double d = direct(px, W, C, win.y, win.x, win.h, win.w, oh, ow, c, i, j);
                    worst = fmax(worst, fabs(d - out[(c * oh + i) * ow + j]));
                }
        free(out);
        free(px);
    }
    printf("worst |separable float - direct double| over 40 random resizes: %.3g\n", worst);
    assert_true(worst < 1e-5);
}

/* Known values: a constant image stays constant; the weights sum to one. */
static void test_constant_and_weights(void **state)
{
    (void)state;
    for (double t = 0; t < 1; t += 0.125) {
        double w[4];
        image_cubic_weights(t, w);
        assert_true(fabs(w[0] + w[1] + w[2] + w[3] - 1.0) < 1e-12);
        assert_true(fabs(w[0] - keys(t + 1)) < 1e-12 && fabs(w[3] - keys(2 - t)) < 1e-12);
    }
    uint8_t px[10 * 12];
    memset(px, 200, sizeof px);
    float out[3 * 16 * 16];
    assert_int_equal(image_preprocess(out, px, 10, 12, 1, 16, NULL), TD_OK);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++)
            assert_true(fabs(out[c * 256 + i] - (200.0 / 255 - k_clip_mean[c]) / k_clip_std[c]) <
                        1e-5);
}

/* RandomResizedCrop: inside the image, area and aspect within bounds (up to
 * rounding), reproducible from the seed, and not constant. */
static void test_random_resized_crop(void **state)
{
    (void)state;
    TdRng a, b;
    rng_seed(&a, 99);
    rng_seed(&b, 99);
    int distinct = 0;
    ImageCrop prev = {0, 0, 0, 0};
    for (int i = 0; i < 2000; i++) {
        int H = 20 + (i % 40), W = H + (i * 7 % 9) - 4; /* near-square: a draw succeeds */
        ImageCrop c1, c2;
        image_train_crop(&a, H, W, &c1);
        image_train_crop(&b, H, W, &c2);
        assert_memory_equal(&c1, &c2, sizeof c1);
        assert_true(c1.y >= 0 && c1.x >= 0 && c1.y + c1.h <= H && c1.x + c1.w <= W);
        double area = (double)c1.h * c1.w / (H * W);
        double aspect = (double)c1.w / c1.h;
        /* each side is rounded, so allow a pixel's worth of slack */
        assert_true(area >= 0.9 * (1 - 2.0 / (c1.h < c1.w ? c1.h : c1.w)) && area <= 1.0);
        assert_true(aspect >= 0.75 * (1 - 1.0 / c1.h) - 1e-9 && aspect <= 4.0 / 3 * (1 + 1.0 / c1.w) + 1e-9);
        distinct += memcmp(&c1, &prev, sizeof c1) != 0;
        prev = c1;
    }
    assert_true(distinct > 1000);
    /* too wide for any draw: torchvision's fallback, a centre crop at ratio 4/3 */
    ImageCrop c;
    image_train_crop(&a, 10, 100, &c);
    assert_int_equal(c.y, 0);
    assert_int_equal(c.h, 10);
    assert_int_equal(c.w, 13);
    assert_int_equal(c.x, 43);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_and_weights),
        cmocka_unit_test(test_against_direct_formula),
        cmocka_unit_test(test_against_pytorch),
        cmocka_unit_test(test_random_resized_crop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
