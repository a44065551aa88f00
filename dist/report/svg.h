/* svg: a small SVG writer and the charts the report draws (lines against
 * alpha, frontiers, traces, grouped bars, heat maps with a colour bar). Plain SVG 1.1
 * text, no scripts, no external program or font file; text is XML-escaped.
 * Files are written under a temporary name and renamed. Single-process. */
#ifndef TD_SVG_H
#define TD_SVG_H

#include <stdio.h>

#include "status.h"

typedef struct {
    FILE *f;
    char path[1024], tmp[1100];
} Svg;

/* Starts a w x h picture with a white background. */
TdStatus svg_open(Svg *s, const char *path, double w, double h);
/* Closes the <svg> element and renames the file into place. */
TdStatus svg_close(Svg *s);

/* stroke or fill NULL = "none". */
void svg_rect(Svg *s, double x, double y, double w, double h, const char *fill, const char *stroke);
void svg_line(Svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width);
/* Polyline through the finite points (a NaN breaks the line). */
void svg_polyline(Svg *s, const double *x, const double *y, int n, const char *stroke, double width);
void svg_circle(Svg *s, double x, double y, double r, const char *fill);
/* anchor: "start" | "middle" | "end"; rotate in degrees about (x, y). */
void svg_text(Svg *s, double x, double y, double size, const char *anchor, double rotate,
              const char *fmt, ...) __attribute__((format(printf, 7, 8)));

/* Categorical colour i (cycles), "#rrggbb". */
const char *svg_palette(int i);
/* Sequential colour map (viridis-like) at t in [0,1] into out ("#rrggbb"). */
void svg_colormap(double t, char out[8]);

typedef struct {
    const char *name;
    const double *y; /* (n); NaN = no point */
} SvgSeries;

/* Lines y against x with a legend. */
TdStatus svg_line_chart(const char *path, const char *title, const char *xlabel,
                        const char *ylabel, const double *x, int n, const SvgSeries *series,
                        int ns, double ymin, double ymax);

typedef struct {
    const char *name;
    const double *x, *y; /* (n) points; NaN = no point */
    const double *yerr;  /* (n) half-widths of error bars, or NULL */
    int n;
} SvgPoints;

/* Points of each series joined in order of x (a frontier), with error bars
 * when yerr is given; axes fit every point and bar. */
TdStatus svg_scatter_chart(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const SvgPoints *series, int ns);

/* Each series' points joined in the order given, without markers or error
 * bars (yerr is ignored): an objective against iteration; axes fit every point. */
TdStatus svg_trace_chart(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const SvgPoints *series, int ns);

/* Grouped bars: values (ng, ns), NaN = missing bar; one colour per series. */
TdStatus svg_bar_chart(const char *path, const char *title, const char *ylabel,
                       const char *const *groups, int ng, const char *const *series, int ns,
                       const double *values, double ymin, double ymax);

/* Heat map of z (n1, n2): row i is x1[i] (horizontal axis), column j is x2[j]
 * (vertical axis, increasing upwards); colour scale [zmin, zmax] shown in a bar. */
TdStatus svg_heatmap(const char *path, const char *title, const double *z, int n1, int n2,
                     const double *x1, const double *x2, const char *xlabel,
                     const char *ylabel, double zmin, double zmax, const char *zlabel);

/* The same with categorical axes: row i is labelled l1[i] (horizontal axis),
 * column j l2[j] (vertical axis, j = 0 at the bottom); every label is shown.
 * Both heat maps put their cells in one <g class="cells"> group. */
TdStatus svg_heatmap_labels(const char *path, const char *title, const double *z, int n1,
                            int n2, const char *const *l1, const char *const *l2,
                            const char *xlabel, const char *ylabel, double zmin, double zmax,
                            const char *zlabel);

#endif
