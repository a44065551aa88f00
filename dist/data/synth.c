#include "synth.h"

#include <ft2build.h>
#include FT_FREETYPE_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GLYPH_PX = 48, SUB = 3, MAX_CACHED = 128 };
static const double k_pi = 3.14159265358979323846;

typedef struct {
    uint32_t cp;
    int w, h;
    uint8_t *px; /* (h,w) coverage */
} Glyph;

typedef struct {
    FT_Face face;
    char file[256];
    int ncached;
    Glyph cache[MAX_CACHED];
} Font;

struct SynthFonts {
    FT_Library lib;
    int n;
    Font *fonts;
};

static const char *package_of(const char *file)
{
    if (strncmp(file, "dejavu/", 7) == 0)
        return (strstr(file, "Sans.ttf") || strstr(file, "Sans-Bold.ttf") ||
                strstr(file, "SansMono.ttf") || strstr(file, "SansMono-Bold.ttf") ||
                strstr(file, "Serif.ttf") || strstr(file, "Serif-Bold.ttf"))
                   ? "fonts-dejavu-core"
                   : "fonts-dejavu-extra";
    if (strncmp(file, "liberation/", 11) == 0)
        return "fonts-liberation";
    if (strncmp(file, "freefont/", 9) == 0)
        return "fonts-freefont-ttf";
    return "a font package";
}

TdStatus synth_fonts_open(SynthFonts **out, const char *dir, const char *const *files, int n)
{
    SynthFonts *f;
    TD_ALLOC(f, 1);
    *out = f;
    if (FT_Init_FreeType(&f->lib))
        return td_fail(TD_ERR_INTERNAL, "cannot initialise FreeType");
    TD_ALLOC(f->fonts, n);
    for (int i = 0; i < n; i++) {
        char path[1024];
        if (snprintf(path, sizeof path, "%s/%s", dir, files[i]) >= (int)sizeof path)
            return td_fail(TD_ERR_ARG, "font path too long: %s/%s", dir, files[i]);
        if (FT_New_Face(f->lib, path, 0, &f->fonts[i].face))
            return td_fail(TD_ERR_IO, "font %s missing or unreadable: install the Debian package %s "
                           "(jobs/setup.sh does)", path, package_of(files[i]));
        f->n = i + 1;
        snprintf(f->fonts[i].file, sizeof f->fonts[i].file, "%.255s", files[i]);
        if (FT_Set_Pixel_Sizes(f->fonts[i].face, 0, GLYPH_PX))
            return td_fail(TD_ERR_FORMAT, "%s: cannot scale to %d px", path, GLYPH_PX);
    }
    return TD_OK;
}

void synth_fonts_close(SynthFonts *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++) {
        for (int k = 0; k < f->fonts[i].ncached; k++)
            free(f->fonts[i].cache[k].px);
        FT_Done_Face(f->fonts[i].face);
    }
    free(f->fonts);
    if (f->lib)
        FT_Done_FreeType(f->lib);
    free(f);
}

int synth_fonts_count(const SynthFonts *f) { return f->n; }

TdStatus synth_fonts_check(SynthFonts *f, const uint32_t *cps, int ncp)
{
    for (int i = 0; i < f->n; i++)
        for (int k = 0; k < ncp; k++)
            if (FT_Get_Char_Index(f->fonts[i].face, cps[k]) == 0)
                return td_fail(TD_ERR_FORMAT, "font %s has no glyph for U+%04X", f->fonts[i].file,
                               (unsigned)cps[k]);
    return TD_OK;
}

/* The cached 48 px coverage bitmap of cp, cropped to its ink. */
static TdStatus glyph_get(SynthFonts *f, int font, uint32_t cp, const Glyph **out)
{
    Font *F = &f->fonts[font];
    for (int k = 0; k < F->ncached; k++)
        if (F->cache[k].cp == cp) {
            *out = &F->cache[k];
            return TD_OK;
        }
    if (F->ncached == MAX_CACHED)
        return td_fail(TD_ERR_INTERNAL, "glyph cache of %s full", F->file);
    if (FT_Load_Char(F->face, cp, FT_LOAD_RENDER))
        return td_fail(TD_ERR_FORMAT, "font %s cannot render U+%04X", F->file, (unsigned)cp);
    FT_Bitmap *bm = &F->face->glyph->bitmap;
    if (bm->pixel_mode != FT_PIXEL_MODE_GRAY || bm->rows == 0 || bm->width == 0)
        return td_fail(TD_ERR_FORMAT, "font %s: U+%04X renders no gray bitmap", F->file,
                       (unsigned)cp);
    Glyph *g = &F->cache[F->ncached];
    g->cp = cp;
    g->w = (int)bm->width;
    g->h = (int)bm->rows;
    TD_ALLOC(g->px, g->w * g->h);
    for (int y = 0; y < g->h; y++)
        memcpy(g->px + y * g->w, bm->buffer + (long)y * bm->pitch, (size_t)g->w);
    F->ncached++;
    *out = g;
    return TD_OK;
}

static double unif(TdRng *r, double lo, double hi) { return lo + (hi - lo) * rng_uniform(r); }

static double bilinear(const Glyph *g, double x, double y)
{
    x -= 0.5;
    y -= 0.5;
    int x0 = (int)floor(x), y0 = (int)floor(y);
    double fx = x - x0, fy = y - y0, s = 0.0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int xx = x0 + dx, yy = y0 + dy;
            if (xx < 0 || yy < 0 || xx >= g->w || yy >= g->h)
                continue;
            s += (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy) * g->px[yy * g->w + xx];
        }
    return s / 255.0;
}

TdStatus synth_glyph(float *cov, int S, SynthFonts *f, int font, uint32_t cp,
                     const GlyphJitter *j, double dx, double dy, TdRng *r)
{
    const Glyph *g = NULL;
    TD_TRY(glyph_get(f, font, cp, &g));
    double th = unif(r, -j->rot_deg, j->rot_deg) * k_pi / 180.0;
    double sh = unif(r, -j->shear, j->shear);
    double fill = unif(r, j->fill_lo, j->fill_hi);
    double ax = unif(r, 1.0 - j->aspect, 1.0 + j->aspect);
    double big = g->h > g->w ? g->h : g->w;
    double s = fill * S / big;
    double cx = S / 2.0 + dx + unif(r, -j->shift, j->shift) * S;
    double cy = S / 2.0 + dy + unif(r, -j->shift, j->shift) * S;
    /* forward M = R(th) * [[1, sh], [0, 1]] * diag(s*ax, s); invert it */
    double c = cos(th), sn = sin(th);
    double m00 = c * s * ax, m01 = (c * sh - sn) * s, m10 = sn * s * ax, m11 = (sn * sh + c) * s;
    double det = m00 * m11 - m01 * m10;
    double i00 = m11 / det, i01 = -m01 / det, i10 = -m10 / det, i11 = m00 / det;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double acc = 0.0;
            for (int a = 0; a < SUB; a++)
                for (int b = 0; b < SUB; b++) {
                    double px = x + (b + 0.5) / SUB - cx, py = y + (a + 0.5) / SUB - cy;
                    double u = i00 * px + i01 * py + g->w / 2.0;
                    double v = i10 * px + i11 * py + g->h / 2.0;
                    acc += bilinear(g, u, v);
                }
            double v = acc / (SUB * SUB);
            cov[y * S + x] = (float)(v > cov[y * S + x] ? v : cov[y * S + x]);
        }
    return TD_OK;
}

static uint8_t clamp8(double v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v)); }

TdStatus synth_glyph_gray(uint8_t *out, int S, SynthFonts *f, int font, uint32_t cp,
                          const GlyphJitter *j, int allow_invert, TdRng *r)
{
    float cov[64 * 64] = {0};
    if (S > 64)
        return td_fail(TD_ERR_ARG, "synthetic images are at most 64 px");
    TD_TRY(synth_glyph(cov, S, f, font, cp, j, 0.0, 0.0, r));
    double fg = unif(r, 190, 255), bg = unif(r, 0, 25);
    if (allow_invert && rng_uniform(r) < 0.5) {
        fg = unif(r, 0, 60);
        bg = unif(r, 200, 255);
    }
    for (int i = 0; i < S * S; i++)
        out[i] = clamp8(bg + (fg - bg) * cov[i] + 4.0 * rng_normal(r));
    return TD_OK;
}

static double luma(const double c[3]) { return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]; }

/* Two random colours whose luma differs by at least min_diff. */
static void colour_pair(TdRng *r, double a[3], double b[3], double min_diff)
{
    do {
        for (int k = 0; k < 3; k++) {
            a[k] = unif(r, 0, 255);
            b[k] = unif(r, 0, 255);
        }
    } while (fabs(luma(a) - luma(b)) < min_diff);
}

TdStatus synth_street_digit(uint8_t *out, int S, SynthFonts *f, int font, int digit, TdRng *r)
{
    float cov[64 * 64] = {0};
    if (S > 64)
        return td_fail(TD_ERR_ARG, "synthetic images are at most 64 px");
    static const GlyphJitter j = {8.0, 0.15, 0.55, 0.8, 0.15, 0.04};
    TD_TRY(synth_glyph(cov, S, f, font, (uint32_t)('0' + digit), &j, 0.0, 0.0, r));
    double gap = unif(r, 0.55, 0.75) * S;
    for (int side = -1; side <= 1; side += 2)
        if (rng_uniform(r) < 0.7)
            TD_TRY(synth_glyph(cov, S, f, font, (uint32_t)('0' + rng_below(r, 10)), &j,
                               side * gap, 0.0, r));
    double bg0[3], bg1[3], fg[3];
    colour_pair(r, bg0, fg, 90);
    for (int k = 0; k < 3; k++) /* a gentle gradient near the background colour */
        bg1[k] = bg0[k] + unif(r, -40, 40);
    double th = unif(r, 0, 2 * k_pi), gx = cos(th) / S, gy = sin(th) / S;
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double t = 0.5 + (x - S / 2.0) * gx + (y - S / 2.0) * gy, a = cov[y * S + x];
            for (int k = 0; k < 3; k++) {
                double bgc = bg0[k] + (bg1[k] - bg0[k]) * t;
                out[(y * S + x) * 3 + k] = clamp8(bgc + (fg[k] - bgc) * a + 6.0 * rng_normal(r));
            }
        }
    return TD_OK;
}

/* ---- shapes ---- */

const char *const k_shape_names[SHAPE_KINDS] = {
    "circle", "square", "triangle", "star", "cross", "ring", "hexagon", "crescent",
    "pentagon", "half-disc", "heart", "bar"};

static int in_regular(double x, double y, int n)
{
    for (int k = 0; k < n; k++) {
        double a = (2 * k + 1) * k_pi / n - k_pi / 2;
        if (x * cos(a) + y * sin(a) > cos(k_pi / n))
            return 0;
    }
    return 1;
}

static int in_star(double x, double y)
{
    double vx[10], vy[10];
    for (int k = 0; k < 10; k++) {
        double rad = (k % 2) ? 0.42 : 1.0, a = k * k_pi / 5 - k_pi / 2;
        vx[k] = rad * cos(a);
        vy[k] = rad * sin(a);
    }
    int in = 0;
    for (int i = 0, j = 9; i < 10; j = i++)
        if ((vy[i] > y) != (vy[j] > y) && x < (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i])
            in = !in;
    return in;
}

static int shape_inside(int kind, double x, double y)
{
    double r2 = x * x + y * y;
    switch (kind) {
    case SHAPE_CIRCLE: return r2 <= 1.0;
    case SHAPE_SQUARE: return fabs(x) <= 0.78 && fabs(y) <= 0.78;
    case SHAPE_TRIANGLE: return in_regular(x, y - 0.15, 3);
    case SHAPE_STAR: return in_star(x, y);
    case SHAPE_CROSS: return (fabs(x) <= 0.3 && fabs(y) <= 1.0) || (fabs(y) <= 0.3 && fabs(x) <= 1.0);
    case SHAPE_RING: return r2 <= 1.0 && r2 >= 0.36;
    case SHAPE_HEXAGON: return in_regular(x, y, 6);
    case SHAPE_CRESCENT: return r2 <= 1.0 && (x - 0.5) * (x - 0.5) + y * y > 0.7;
    case SHAPE_PENTAGON: return in_regular(x, y, 5);
    case SHAPE_HALFDISC: return x * x + (y - 0.4) * (y - 0.4) <= 1.0 && y <= 0.4;
    case SHAPE_HEART: {
        double hx = 1.15 * x, hy = -1.15 * y + 0.15, q = hx * hx + hy * hy - 1.0;
        return q * q * q - hx * hx * hy * hy * hy <= 0.0;
    }
    case SHAPE_BAR: return fabs(x) <= 1.0 && fabs(y) <= 0.28;
    }
    return 0;
}

void synth_shape(uint8_t *out, int S, int kind, TdRng *r)
{
    double bg[3], fg[3];
    colour_pair(r, bg, fg, 70);
    double rad = unif(r, 0.24, 0.42) * S, th = unif(r, 0, 2 * k_pi);
    double cx = unif(r, rad * 0.8, S - rad * 0.8), cy = unif(r, rad * 0.8, S - rad * 0.8);
    double ax = unif(r, 0.88, 1.12), c = cos(th), s = sin(th);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            int hit = 0;
            for (int a = 0; a < SUB; a++)
                for (int b = 0; b < SUB; b++) {
                    double px = x + (b + 0.5) / SUB - cx, py = y + (a + 0.5) / SUB - cy;
                    double u = (c * px + s * py) / (rad * ax), v = (-s * px + c * py) / rad;
                    hit += shape_inside(kind, u, v);
                }
            double t = (double)hit / (SUB * SUB);
            for (int k = 0; k < 3; k++)
                out[(y * S + x) * 3 + k] = clamp8(bg[k] + (fg[k] - bg[k]) * t + 7.0 * rng_normal(r));
        }
}

/* ---- textures ---- */

const char *const k_texture_names[TEX_KINDS] = {"stripes", "checker", "dots",  "rings",
                                               "blobs",   "waves",   "grid",  "spokes"};

typedef struct {
    double th, lam, ph, ph2, a, mu, w, cx, cy;
    int k;
    double gx[6], gy[6], gs[6], ga[6];
} TexParams;

static double frac_dist(double v) { return fabs(v - nearbyint(v)); }

static double texture_value(int kind, const TexParams *p, double x, double y)
{
    double u = x * cos(p->th) + y * sin(p->th), v = -x * sin(p->th) + y * cos(p->th);
    switch (kind) {
    case TEX_STRIPES: return 0.5 + 0.5 * sin(2 * k_pi * u / p->lam + p->ph);
    case TEX_CHECKER: return (double)(((long)floor(u / p->lam + p->ph) + (long)floor(v / p->lam + p->ph2)) & 1);
    case TEX_DOTS: {
        double du = frac_dist(u / p->lam + p->ph), dv = frac_dist(v / p->lam + p->ph2);
        return (du * du + dv * dv) <= p->w * p->w ? 1.0 : 0.0;
    }
    case TEX_RINGS: return 0.5 + 0.5 * sin(2 * k_pi * hypot(x - p->cx, y - p->cy) / p->lam + p->ph);
    case TEX_BLOBS: {
        double s = 0.0;
        for (int i = 0; i < 6; i++) {
            double dx = x - p->gx[i], dy = y - p->gy[i];
            s += p->ga[i] * exp(-(dx * dx + dy * dy) / (2 * p->gs[i] * p->gs[i]));
        }
        return 0.5 + 0.5 * tanh(2.0 * s);
    }
    case TEX_WAVES: return 0.5 + 0.5 * sin(2 * k_pi * (v + p->a * sin(2 * k_pi * u / p->mu + p->ph2)) / p->lam + p->ph);
    case TEX_GRID: {
        double d = fmin(frac_dist(u / p->lam + p->ph), frac_dist(v / p->lam + p->ph2)) * p->lam;
        return d <= p->w ? 1.0 : 0.0;
    }
    case TEX_SPOKES: return 0.5 + 0.5 * sin(p->k * atan2(y - p->cy, x - p->cx) + p->ph);
    }
    return 0.0;
}

/* The random parameters of a texture of kind at S px. */
static void texture_params(TexParams *q, int S, int kind, TdRng *r)
{
    TexParams p;
    memset(&p, 0, sizeof p);
    p.th = unif(r, 0, k_pi);
    p.ph = unif(r, 0, 2 * k_pi);
    p.ph2 = unif(r, 0, 2 * k_pi);
    p.cx = unif(r, 0.2, 0.8) * S;
    p.cy = unif(r, 0.2, 0.8) * S;
    switch (kind) {
    case TEX_STRIPES: p.lam = unif(r, 3.5, 8.0); break;
    case TEX_CHECKER: p.lam = unif(r, 3.0, 6.0); break;
    case TEX_DOTS: p.lam = unif(r, 5.0, 8.0); p.w = unif(r, 0.22, 0.34); break;
    case TEX_RINGS: p.lam = unif(r, 3.5, 7.0); break;
    case TEX_BLOBS:
        for (int i = 0; i < 6; i++) {
            p.gx[i] = unif(r, 0, S);
            p.gy[i] = unif(r, 0, S);
            p.gs[i] = unif(r, 2.5, 5.0);
            p.ga[i] = rng_uniform(r) < 0.5 ? -1.0 : 1.0;
        }
        break;
    case TEX_WAVES: p.lam = unif(r, 4.0, 7.0); p.a = unif(r, 1.5, 3.0); p.mu = unif(r, 8.0, 14.0); break;
    case TEX_GRID: p.lam = unif(r, 5.0, 9.0); p.w = unif(r, 0.6, 1.2); break;
    case TEX_SPOKES: p.k = 5 + (int)rng_below(r, 6); break;
    }
    *q = p;
}

/* Value in [0,1] at pixel (x, y), 2x2 supersampled. */
static double texture_pixel(int kind, const TexParams *p, int x, int y)
{
    double t = 0.0;
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++)
            t += texture_value(kind, p, x + 0.25 + 0.5 * b, y + 0.25 + 0.5 * a);
    return t * 0.25;
}

void synth_texture(uint8_t *out, int S, int kind, TdRng *r)
{
    TexParams p;
    texture_params(&p, S, kind, r);
    double c1[3], c2[3];
    colour_pair(r, c1, c2, 60);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double t = texture_pixel(kind, &p, x, y);
            for (int k = 0; k < 3; k++)
                out[(y * S + x) * 3 + k] = clamp8(c1[k] + (c2[k] - c1[k]) * t + 6.0 * rng_normal(r));
        }
}

/* ---- counting ---- */

void synth_count(uint8_t *out, int S, int count, TdRng *r)
{
    double cx[16], cy[16], rad[16], lev[16];
    int sq[16];
    for (int placed = 0; placed < count;) { /* rejection sampling, restart when stuck */
        int tries = 0;
        for (placed = 0; placed < count && tries < 200; tries++) {
            double rr = unif(r, 1.6, 2.6), x = unif(r, rr + 1, S - rr - 1), y = unif(r, rr + 1, S - rr - 1);
            int ok = 1;
            for (int i = 0; i < placed && ok; i++)
                ok = hypot(x - cx[i], y - cy[i]) >= rr + rad[i] + 2.0;
            if (!ok)
                continue;
            cx[placed] = x;
            cy[placed] = y;
            rad[placed] = rr;
            lev[placed] = unif(r, 150, 255);
            sq[placed] = rng_uniform(r) < 0.3;
            placed++;
        }
    }
    double bg = unif(r, 0, 30);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double v = bg;
            for (int i = 0; i < count; i++) {
                int hit = 0;
                for (int a = 0; a < SUB; a++)
                    for (int b = 0; b < SUB; b++) {
                        double dx = x + (b + 0.5) / SUB - cx[i], dy = y + (a + 0.5) / SUB - cy[i];
                        hit += sq[i] ? (fabs(dx) <= rad[i] * 0.9 && fabs(dy) <= rad[i] * 0.9)
                                     : (dx * dx + dy * dy <= rad[i] * rad[i]);
                    }
                if (hit)
                    v += (lev[i] - bg) * hit / (SUB * SUB);
            }
            out[y * S + x] = clamp8(v + 4.0 * rng_normal(r));
        }
}

/* ---- captioned scenes ---- */

const char *const k_colour_names[SCENE_COLOURS] = {"red", "green", "blue", "yellow", "white",
                                                   "black"};
static const double k_palette[SCENE_COLOURS][3] = {
    {215, 45, 40}, {45, 175, 65}, {50, 90, 225}, {230, 210, 45}, {240, 240, 240}, {15, 15, 15}};

int synth_scene_valid(int bg, int colour)
{
    if (bg == SCENE_BG_LIGHT)
        return colour != SCENE_WHITE && colour != SCENE_YELLOW;
    return colour != SCENE_BLACK; /* dark and textured grounds are dark */
}

const char *synth_scene_bg_name(int bg)
{
    return bg == SCENE_BG_DARK ? "dark" : bg == SCENE_BG_LIGHT ? "light"
                                                               : k_texture_names[bg - SCENE_BG_TEXTURE];
}

/* Object radius (px) range by count: fewer objects, larger ones. */
static void scene_radius(int count, int S, double *lo, double *hi)
{
    static const double k_r[7][2] = {{0, 0},         {0.30, 0.40}, {0.17, 0.22}, {0.14, 0.17},
                                     {0.12, 0.15},   {0.10, 0.13}, {0.09, 0.12}};
    int c = count < 1 ? 1 : count > 6 ? 6 : count;
    *lo = k_r[c][0] * S;
    *hi = k_r[c][1] * S;
}

TdStatus synth_scene(uint8_t *out, int S, SynthFonts *f, const SceneSpec *sp, TdRng *r)
{
    float cov[64 * 64] = {0};
    if (S > 64)
        return td_fail(TD_ERR_ARG, "synthetic images are at most 64 px");
    if (sp->count < 1 || sp->count > 6 || sp->colour < 0 || sp->colour >= SCENE_COLOURS ||
        sp->bg < 0 || sp->bg >= SCENE_BG_KINDS || sp->shape >= SHAPE_KINDS)
        return td_fail(TD_ERR_ARG, "scene: count %d, colour %d, ground %d, shape %d out of range",
                       sp->count, sp->colour, sp->bg, sp->shape);
    /* objects: non-overlapping discs of the count's radius, rejection-sampled */
    double cx[6], cy[6], rad[6], lo, hi;
    scene_radius(sp->count, S, &lo, &hi);
    for (int placed = 0; placed < sp->count;) { /* restart when stuck */
        int tries = 0;
        for (placed = 0; placed < sp->count && tries < 300; tries++) {
            double rr = unif(r, lo, hi), x = unif(r, rr, S - rr), y = unif(r, rr, S - rr);
            if (sp->count == 1) { /* one object: near the centre, as a photo frames it */
                x = S / 2.0 + unif(r, -0.1, 0.1) * S;
                y = S / 2.0 + unif(r, -0.1, 0.1) * S;
            }
            int ok = 1;
            for (int i = 0; i < placed && ok; i++)
                ok = hypot(x - cx[i], y - cy[i]) >= rr + rad[i] + 1.0;
            if (!ok)
                continue;
            cx[placed] = x;
            cy[placed] = y;
            rad[placed] = rr;
            placed++;
        }
    }
    for (int i = 0; i < sp->count; i++) {
        if (sp->shape < 0) {
            double fill = 2.0 * rad[i] / S;
            GlyphJitter j = {10.0, 0.15, fill * 0.9, fill * 1.1, 0.1, 0.0};
            TD_TRY(synth_glyph(cov, S, f, sp->font, sp->cp, &j, cx[i] - S / 2.0, cy[i] - S / 2.0,
                               r));
            continue;
        }
        double th = unif(r, 0, 2 * k_pi), ax = unif(r, 0.88, 1.12), c = cos(th), s = sin(th);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int hit = 0;
                for (int a = 0; a < SUB; a++)
                    for (int b = 0; b < SUB; b++) {
                        double px = x + (b + 0.5) / SUB - cx[i], py = y + (a + 0.5) / SUB - cy[i];
                        double u = (c * px + s * py) / (rad[i] * ax), v = (-s * px + c * py) / rad[i];
                        hit += shape_inside(sp->shape, u, v);
                    }
                float t = (float)hit / (SUB * SUB);
                if (t > cov[y * S + x])
                    cov[y * S + x] = t;
            }
    }
    /* ground: plain dark, plain light, or a texture between two muted dark colours */
    double g0[3], g1[3], fg[3];
    TexParams tp;
    int tex = sp->bg >= SCENE_BG_TEXTURE ? sp->bg - SCENE_BG_TEXTURE : -1;
    if (tex >= 0)
        texture_params(&tp, S, tex, r);
    for (int k = 0; k < 3; k++) {
        double base = sp->bg == SCENE_BG_LIGHT ? unif(r, 200, 250) : unif(r, 5, 40);
        g0[k] = base;
        g1[k] = tex >= 0 ? unif(r, 70, 125) : base;
        fg[k] = k_palette[sp->colour][k] + unif(r, -20, 20);
    }
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            double t = tex >= 0 ? texture_pixel(tex, &tp, x, y) : 0.0, a = cov[y * S + x];
            for (int k = 0; k < 3; k++) {
                double g = g0[k] + (g1[k] - g0[k]) * t;
                out[(y * S + x) * 3 + k] = clamp8(g + (fg[k] - g) * a + 5.0 * rng_normal(r));
            }
        }
    return TD_OK;
}

void synth_scene_caption(const SceneSpec *sp, char *buf, size_t cap)
{
    char noun[32];
    if (sp->shape < 0 && sp->symbol) {
        snprintf(noun, sizeof noun, "symbol %s", sp->symbol);
    } else if (sp->shape < 0) {
        int digit = sp->cp >= '0' && sp->cp <= '9';
        snprintf(noun, sizeof noun, "%s %c", digit ? "digit" : "letter",
                 digit ? (char)sp->cp : (char)(sp->cp - 'A' + 'a'));
    } else {
        const char *n = k_shape_names[sp->shape];
        size_t len = strlen(n);
        snprintf(noun, sizeof noun, "%s%s", n,
                 sp->count == 1 ? "" : len && n[len - 1] == 's' ? "es" : "s");
    }
    if (sp->shape < 0) /* glyphs: one, named by its identity */
        snprintf(buf, cap, "a %s %s on %s", k_colour_names[sp->colour], noun,
                 synth_scene_bg_name(sp->bg));
    else /* shapes: counted, whatever the count */
        snprintf(buf, cap, "%d %s %s on %s", sp->count, k_colour_names[sp->colour], noun,
                 synth_scene_bg_name(sp->bg));
}
