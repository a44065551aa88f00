/* synth: procedural images for the embedded task suite (suite.c).
 *
 * Every generator draws one image from a TdRng the caller seeds per image, so
 * an image depends on (seed, task, split, index) only. Glyphs are rendered
 * from installed TrueType fonts (FreeType) once per (font, code point) at
 * 48 px and warped with a random affine map (rotation, shear, anisotropic scale,
 * translation), 3x3 supersampled. Output images are uint8 (S,S,C). */
#ifndef TD_SYNTH_H
#define TD_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "status.h"

typedef struct SynthFonts SynthFonts;

/* Opens the fonts dir/files[i]; a missing file is an error naming it and the
 * Debian package (fonts-dejavu-core, fonts-dejavu-extra, fonts-liberation,
 * fonts-freefont-ttf) that ships it. */
TdStatus synth_fonts_open(SynthFonts **out, const char *dir, const char *const *files, int n);
void synth_fonts_close(SynthFonts *f);
int synth_fonts_count(const SynthFonts *f);
/* Checks that every font has a glyph for every code point; names the first miss. */
TdStatus synth_fonts_check(SynthFonts *f, const uint32_t *cps, int ncp);

typedef struct {
    double rot_deg;     /* rotation uniform in +-rot_deg */
    double shear;       /* x shear uniform in +-shear */
    double fill_lo, fill_hi; /* glyph height as a fraction of S */
    double aspect;      /* x scale factor uniform in [1-aspect, 1+aspect] */
    double shift;       /* centre offset uniform in +-shift*S */
} GlyphJitter;

/* Coverage (S,S) in [0,1] of code point cp in font `font` with jitter j,
 * centred at (S/2 + dx, S/2 + dy) before jitter. */
TdStatus synth_glyph(float *cov, int S, SynthFonts *f, int font, uint32_t cp,
                     const GlyphJitter *j, double dx, double dy, TdRng *r);

/* Letters / symbols: bright glyph on dark (or, with invert, dark on light), gray. */
TdStatus synth_glyph_gray(uint8_t *out, int S, SynthFonts *f, int font, uint32_t cp,
                          const GlyphJitter *j, int allow_invert, TdRng *r);
/* House-number crops (SVHN-like): the digit in the middle, parts of neighbours
 * at the sides, colour text on a noisy colour gradient. RGB. */
TdStatus synth_street_digit(uint8_t *out, int S, SynthFonts *f, int font, int digit, TdRng *r);

/* Filled shapes with random colour, pose and noise, RGB. Kinds: */
enum {
    SHAPE_CIRCLE, SHAPE_SQUARE, SHAPE_TRIANGLE, SHAPE_STAR, SHAPE_CROSS, SHAPE_RING,
    SHAPE_HEXAGON, SHAPE_CRESCENT, /* the shapes task */
    SHAPE_PENTAGON, SHAPE_HALFDISC, SHAPE_HEART, SHAPE_BAR, /* pre-training only */
    SHAPE_KINDS
};
extern const char *const k_shape_names[SHAPE_KINDS];
void synth_shape(uint8_t *out, int S, int kind, TdRng *r);

/* Colour textures, RGB. Kinds: */
enum {
    TEX_STRIPES, TEX_CHECKER, TEX_DOTS, TEX_RINGS, TEX_BLOBS, TEX_WAVES, TEX_GRID, TEX_SPOKES,
    TEX_KINDS
};
extern const char *const k_texture_names[TEX_KINDS];
void synth_texture(uint8_t *out, int S, int kind, TdRng *r);

/* 1..max_count small blobs on dark ground, non-overlapping; gray. */
void synth_count(uint8_t *out, int S, int count, TdRng *r);

/* Captioned scenes, RGB, for contrastive pre-training: count objects (1..6),
 * all one glyph or one shape kind, in one named colour, on a named ground. A
 * single object sits near the centre; several are placed apart, smaller the
 * more there are. */
enum { SCENE_RED, SCENE_GREEN, SCENE_BLUE, SCENE_YELLOW, SCENE_WHITE, SCENE_BLACK, SCENE_COLOURS };
extern const char *const k_colour_names[SCENE_COLOURS];
enum { SCENE_BG_DARK, SCENE_BG_LIGHT, SCENE_BG_TEXTURE, /* + texture kind */
       SCENE_BG_KINDS = SCENE_BG_TEXTURE + TEX_KINDS };
typedef struct {
    int bg;      /* SCENE_BG_DARK, SCENE_BG_LIGHT or SCENE_BG_TEXTURE + a TEX_ kind */
    int colour;  /* SCENE_ colour of the objects */
    int count;   /* 1..6 */
    int shape;   /* SHAPE_ kind, or -1: the glyph cp in font */
    uint32_t cp;
    int font;
    const char *symbol; /* a glyph that is a symbol: its name ("left", "plus"); NULL for
                           letters and digits */
} SceneSpec;
/* Whether objects of colour show on ground bg (no black on dark grounds, no
 * white or yellow on light ones). */
int synth_scene_valid(int bg, int colour);
const char *synth_scene_bg_name(int bg);
TdStatus synth_scene(uint8_t *out, int S, SynthFonts *f, const SceneSpec *sp, TdRng *r);
/* "1 red star on stripes", "3 blue circles on light", "a white letter k on dark",
 * "a green digit 7 on grid", "a black symbol left on light" (letters lower-cased;
 * the digit, letter or symbol name is a word; shapes are counted, glyphs are one). */
void synth_scene_caption(const SceneSpec *sp, char *buf, size_t cap);

#endif
