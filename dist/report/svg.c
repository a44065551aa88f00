#include "svg.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *or_none(const char *c) { return c ? c : "none"; }

TdStatus svg_open(Svg *s, const char *path, double w, double h)
{
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp.%ld", path, (long)getpid());
    s->f = fopen(s->tmp, "w");
    if (!s->f)
        return td_fail(TD_ERR_IO, "%s: cannot create", s->tmp);
    fprintf(s->f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Arial, "
            "sans-serif\">\n",
            w, h, w, h);
    svg_rect(s, 0, 0, w, h, "#ffffff", NULL);
    return TD_OK;
}

TdStatus svg_close(Svg *s)
{
    fputs("</svg>\n", s->f);
    int bad = ferror(s->f);
    bad |= fclose(s->f) != 0;
    s->f = NULL;
    if (bad || rename(s->tmp, s->path) != 0) {
        unlink(s->tmp);
        return td_fail(TD_ERR_IO, "%s: cannot write", s->path);
    }
    return TD_OK;
}

void svg_rect(Svg *s, double x, double y, double w, double h, const char *fill, const char *stroke)
{
    fprintf(s->f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" "
                  "stroke=\"%s\"/>\n", x, y, w, h, or_none(fill), or_none(stroke));
}

void svg_line(Svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width)
{
    fprintf(s->f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                  "stroke-width=\"%.2f\"/>\n", x1, y1, x2, y2, or_none(stroke), width);
}

void svg_polyline(Svg *s, const double *x, const double *y, int n, const char *stroke, double width)
{
    int open = 0;
    for (int i = 0; i <= n; i++) {
        int ok = i < n && isfinite(x[i]) && isfinite(y[i]);
        if (ok && !open) {
            fprintf(s->f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" points=\"",
                    or_none(stroke), width);
            open = 1;
        }
        if (ok)
            fprintf(s->f, "%.2f,%.2f ", x[i], y[i]);
        if (!ok && open) {
            fputs("\"/>\n", s->f);
            open = 0;
        }
    }
}

void svg_circle(Svg *s, double x, double y, double r, const char *fill)
{
    fprintf(s->f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\"/>\n", x, y, r,
            or_none(fill));
}

void svg_text(Svg *s, double x, double y, double size, const char *anchor, double rotate,
              const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(s->f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\"", x, y, size,
            anchor);
    if (rotate != 0)
        fprintf(s->f, " transform=\"rotate(%.1f %.2f %.2f)\"", rotate, x, y);
    fputc('>', s->f);
    for (const char *p = buf; *p; p++)
        switch (*p) {
        case '<': fputs("&lt;", s->f); break;
        case '>': fputs("&gt;", s->f); break;
        case '&': fputs("&amp;", s->f); break;
        case '"': fputs("&quot;", s->f); break;
        default: fputc(*p, s->f);
        }
    fputs("</text>\n", s->f);
}

const char *svg_palette(int i)
{
    static const char *const k[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    return k[(i % 10 + 10) % 10];
}

void svg_colormap(double t, char out[8])
{
    /* viridis at 0, 0.25, 0.5, 0.75, 1 */
    static const double k[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98},
                                   {253, 231, 37}};
    if (!isfinite(t))
        t = 0;
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    int i = t >= 1 ? 3 : (int)(t * 4);
    double u = t * 4 - i;
    int c[3];
    for (int j = 0; j < 3; j++)
        c[j] = (int)lround(k[i][j] + (k[i + 1][j] - k[i][j]) * u);
    snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* Up to about n "nice" ticks covering [lo, hi]: *step and the first tick. */
static double nice_step(double lo, double hi, int n)
{
    double span = hi - lo;
    if (!(span > 0))
        return 1;
    double raw = span / n, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* Plot frame shared by the charts: the rectangle [L, L+W] x [T, T+H]. */
typedef struct {
    double L, T, W, H, lo, hi; /* y range */
} Frame;

static double fy(const Frame *f, double v) { return f->T + f->H * (1 - (v - f->lo) / (f->hi - f->lo)); }

static void y_axis(Svg *s, const Frame *f, const char *label)
{
    double st = nice_step(f->lo, f->hi, 5);
    for (double v = ceil(f->lo / st - 1e-9) * st; v <= f->hi + 1e-9 * st; v += st) {
        double y = fy(f, v);
        svg_line(s, f->L, y, f->L + f->W, y, "#e0e0e0", 1);
        svg_text(s, f->L - 6, y + 4, 11, "end", 0, "%g", fabs(v) < 1e-12 ? 0.0 : v);
    }
    svg_text(s, f->L - 44, f->T + f->H / 2, 12, "middle", -90, "%s", label);
    svg_line(s, f->L, f->T, f->L, f->T + f->H, "#333333", 1);
    svg_line(s, f->L, f->T + f->H, f->L + f->W, f->T + f->H, "#333333", 1);
}

/* Title, y axis, and an x axis with ticks over [xlo, xhi]. */
static void axes_xy(Svg *s, const Frame *f, const char *title, const char *xlabel,
                    const char *ylabel, double xlo, double xhi)
{
    svg_text(s, f->L + f->W / 2, 22, 14, "middle", 0, "%s", title);
    y_axis(s, f, ylabel);
    double st = nice_step(xlo, xhi, 6);
    for (double v = ceil(xlo / st - 1e-9) * st; v <= xhi + 1e-9 * st; v += st) {
        double px = f->L + f->W * (v - xlo) / (xhi - xlo);
        svg_line(s, px, f->T + f->H, px, f->T + f->H + 4, "#333333", 1);
        svg_text(s, px, f->T + f->H + 17, 11, "middle", 0, "%g", fabs(v) < 1e-12 ? 0.0 : v);
    }
    svg_text(s, f->L + f->W / 2, f->T + f->H + 36, 12, "middle", 0, "%s", xlabel);
}

static void range_fix(double *lo, double *hi)
{
    if (!isfinite(*lo) || !isfinite(*hi)) {
        *lo = 0;
        *hi = 1;
    }
    if (!(*hi > *lo))
        *hi = *lo + 1;
}

TdStatus svg_line_chart(const char *path, const char *title, const char *xlabel,
                        const char *ylabel, const double *x, int n, const SvgSeries *series,
                        int ns, double ymin, double ymax)
{
    Svg s;
    double legend_w = 150;
    TD_TRY(svg_open(&s, path, 520 + legend_w, 340));
    Frame f = {64, 36, 420, 250, ymin, ymax};
    range_fix(&f.lo, &f.hi);
    double xlo = n ? x[0] : 0, xhi = n ? x[n - 1] : 1;
    range_fix(&xlo, &xhi);
    axes_xy(&s, &f, title, xlabel, ylabel, xlo, xhi);
    double px[1024], py[1024];
    int m = n < 1024 ? n : 1024;
    for (int k = 0; k < ns; k++) {
        for (int i = 0; i < m; i++) {
            px[i] = f.L + f.W * (x[i] - xlo) / (xhi - xlo);
            py[i] = isfinite(series[k].y[i]) ? fy(&f, series[k].y[i]) : NAN;
        }
        svg_polyline(&s, px, py, m, svg_palette(k), 2);
        for (int i = 0; i < m; i++)
            if (isfinite(py[i]))
                svg_circle(&s, px[i], py[i], 2.5, svg_palette(k));
        double ly = f.T + 10 + 18 * k;
        svg_line(&s, f.L + f.W + 16, ly, f.L + f.W + 36, ly, svg_palette(k), 3);
        svg_text(&s, f.L + f.W + 42, ly + 4, 11, "start", 0, "%s", series[k].name);
    }
    return svg_close(&s);
}

static int cmp_by_x(const void *a, const void *b)
{
    const double *p = a, *q = b;
    return (p[0] > q[0]) - (p[0] < q[0]);
}

/* Points of each series: sorted by x, joined, marked and with error bars
 * (frontier = 1), or joined in the given order, unmarked (a trace). */
static TdStatus points_chart(const char *path, const char *title, const char *xlabel,
                             const char *ylabel, const SvgPoints *series, int ns, int frontier)
{
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < series[k].n; i++) {
            double x = series[k].x[i], y = series[k].y[i];
            const double *ye = frontier ? series[k].yerr : NULL;
            double e = ye && isfinite(ye[i]) ? ye[i] : 0;
            if (!isfinite(x) || !isfinite(y))
                continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x);
            ylo = fmin(ylo, y - e), yhi = fmax(yhi, y + e);
        }
    range_fix(&xlo, &xhi);
    range_fix(&ylo, &yhi);
    double padx = 0.05 * (xhi - xlo), pady = 0.05 * (yhi - ylo);
    xlo -= padx, xhi += padx, ylo -= pady, yhi += pady;
    Svg s;
    TD_TRY(svg_open(&s, path, 670, 340));
    Frame f = {64, 36, 420, 250, ylo, yhi};
    axes_xy(&s, &f, title, xlabel, ylabel, xlo, xhi);
    for (int k = 0; k < ns; k++) {
        int n = series[k].n, m = 0;
        double *pt = malloc((size_t)(n ? n : 1) * 3 * sizeof *pt);
        double *px = malloc((size_t)(n ? n : 1) * sizeof *px);
        double *py = malloc((size_t)(n ? n : 1) * sizeof *py);
        if (!pt || !px || !py) {
            free(pt), free(px), free(py);
            fclose(s.f);
            remove(s.tmp);
            return td_fail(TD_ERR_NOMEM, "out of memory");
        }
        for (int i = 0; i < n; i++) {
            if (!isfinite(series[k].x[i]) || !isfinite(series[k].y[i]))
                continue;
            pt[3 * m] = series[k].x[i];
            pt[3 * m + 1] = series[k].y[i];
            pt[3 * m + 2] = frontier && series[k].yerr ? series[k].yerr[i] : NAN;
            m++;
        }
        if (frontier)
            qsort(pt, (size_t)m, 3 * sizeof *pt, cmp_by_x);
        const char *c = svg_palette(k);
        for (int i = 0; i < m; i++) {
            px[i] = f.L + f.W * (pt[3 * i] - xlo) / (xhi - xlo);
            py[i] = fy(&f, pt[3 * i + 1]);
            double e = pt[3 * i + 2];
            if (isfinite(e) && e > 0) {
                double a = fy(&f, pt[3 * i + 1] - e), b = fy(&f, pt[3 * i + 1] + e);
                svg_line(&s, px[i], a, px[i], b, c, 1);
                svg_line(&s, px[i] - 3, a, px[i] + 3, a, c, 1);
                svg_line(&s, px[i] - 3, b, px[i] + 3, b, c, 1);
            }
        }
        svg_polyline(&s, px, py, m, c, 1.5);
        for (int i = 0; i < m && frontier; i++)
            svg_circle(&s, px[i], py[i], 3, c);
        double ly = f.T + 10 + 18 * k;
        svg_line(&s, f.L + f.W + 16, ly, f.L + f.W + 36, ly, c, 3);
        svg_text(&s, f.L + f.W + 42, ly + 4, 11, "start", 0, "%s", series[k].name);
        free(pt), free(px), free(py);
    }
    return svg_close(&s);
}

TdStatus svg_scatter_chart(const char *path, const char *title, const char *xlabel,
                           const char *ylabel, const SvgPoints *series, int ns)
{
    return points_chart(path, title, xlabel, ylabel, series, ns, 1);
}

TdStatus svg_trace_chart(const char *path, const char *title, const char *xlabel,
                         const char *ylabel, const SvgPoints *series, int ns)
{
    return points_chart(path, title, xlabel, ylabel, series, ns, 0);
}

TdStatus svg_bar_chart(const char *path, const char *title, const char *ylabel,
                       const char *const *groups, int ng, const char *const *series, int ns,
                       const double *values, double ymin, double ymax)
{
    Svg s;
    double gw = ns * 14 + 16, W = ng * gw < 300 ? 300 : ng * gw;
    TD_TRY(svg_open(&s, path, 64 + W + 160, 360));
    Frame f = {64, 36, W, 230, ymin, ymax};
    range_fix(&f.lo, &f.hi);
    svg_text(&s, f.L + f.W / 2, 22, 14, "middle", 0, "%s", title);
    y_axis(&s, &f, ylabel);
    double step = f.W / (ng > 0 ? ng : 1), bw = (step - 12) / (ns > 0 ? ns : 1);
    for (int g = 0; g < ng; g++) {
        double x0 = f.L + g * step + 6;
        for (int k = 0; k < ns; k++) {
            double v = values[(size_t)g * ns + k];
            if (!isfinite(v))
                continue;
            double vc = v < f.lo ? f.lo : v > f.hi ? f.hi : v;
            double top = fy(&f, vc), base = fy(&f, f.lo > 0 ? f.lo : 0 < f.hi ? 0 : f.hi);
            svg_rect(&s, x0 + k * bw, top < base ? top : base, bw * 0.9, fabs(base - top),
                     svg_palette(k), NULL);
        }
        svg_text(&s, x0 + (step - 12) / 2, f.T + f.H + 14, 10, "end", -35, "%s", groups[g]);
    }
    for (int k = 0; k < ns; k++) {
        double ly = f.T + 10 + 18 * k;
        svg_rect(&s, f.L + f.W + 16, ly - 6, 14, 12, svg_palette(k), NULL);
        svg_text(&s, f.L + f.W + 36, ly + 4, 11, "start", 0, "%s", series[k]);
    }
    return svg_close(&s);
}

/* Heat map body: labels from l1/l2 when given (all shown, the left margin
 * and the x labels' angle fitted to them), else the numbers x1/x2 (thinned
 * to about 7). The cells sit in one <g class="cells"> group. */
static TdStatus heatmap_draw(const char *path, const char *title, const double *z, int n1,
                             int n2, const double *x1, const double *x2,
                             const char *const *l1, const char *const *l2, const char *xlabel,
                             const char *ylabel, double zmin, double zmax, const char *zlabel)
{
    Svg s;
    double side = 300, cw = side / (n1 > 0 ? n1 : 1), ch = side / (n2 > 0 ? n2 : 1);
    size_t w1 = 0, w2 = 0; /* longest label, characters */
    for (int i = 0; l1 && i < n1; i++)
        w1 = strlen(l1[i]) > w1 ? strlen(l1[i]) : w1;
    for (int j = 0; l2 && j < n2; j++)
        w2 = strlen(l2[j]) > w2 ? strlen(l2[j]) : w2;
    double lw = 6.2 * (double)w2, L = l2 && lw + 30 > 64 ? lw + 30 : 64, T = 36;
    int tilt = l1 && 6.2 * (double)w1 > cw - 4; /* x labels would overlap */
    double xb = tilt ? 0.6 * 6.2 * (double)w1 : 0; /* their extra height */
    TD_TRY(svg_open(&s, path, L + side + 140, T + side + 56 + xb));
    range_fix(&zmin, &zmax);
    svg_text(&s, L + side / 2, 22, 13, "middle", 0, "%s", title);
    char col[8];
    fputs("<g class=\"cells\">\n", s.f);
    for (int i = 0; i < n1; i++)
        for (int j = 0; j < n2; j++) {
            double v = z[(size_t)i * n2 + j];
            svg_colormap((v - zmin) / (zmax - zmin), col);
            svg_rect(&s, L + i * cw, T + (n2 - 1 - j) * ch, cw + 0.3, ch + 0.3,
                     isfinite(v) ? col : "#cccccc", NULL);
        }
    fputs("</g>\n", s.f);
    svg_rect(&s, L, T, side, side, NULL, "#333333");
    int every = !l1 && n1 > 8 ? (n1 + 6) / 7 : 1;
    for (int i = 0; i < n1; i += every) {
        double x = L + (i + 0.5) * cw, y = T + side + 15;
        if (l1)
            svg_text(&s, tilt ? x + 3 : x, y, 10, tilt ? "end" : "middle", tilt ? -35 : 0, "%s",
                     l1[i]);
        else
            svg_text(&s, x, y, 10, "middle", 0, "%.3g", x1[i]);
    }
    every = !l2 && n2 > 8 ? (n2 + 6) / 7 : 1;
    for (int j = 0; j < n2; j += every) {
        double y = T + (n2 - 1 - j + 0.5) * ch + 4;
        if (l2)
            svg_text(&s, L - 5, y, 10, "end", 0, "%s", l2[j]);
        else
            svg_text(&s, L - 5, y, 10, "end", 0, "%.3g", x2[j]);
    }
    svg_text(&s, L + side / 2, T + side + 34 + xb, 12, "middle", 0, "%s", xlabel);
    svg_text(&s, l2 ? L - lw - 16 : L - 40, T + side / 2, 12, "middle", -90, "%s", ylabel);
    /* colour bar */
    double bx = L + side + 24, bh = side;
    for (int k = 0; k < 64; k++) {
        svg_colormap((k + 0.5) / 64, col);
        svg_rect(&s, bx, T + bh * (1 - (k + 1) / 64.0), 16, bh / 64 + 0.3, col, NULL);
    }
    svg_rect(&s, bx, T, 16, bh, NULL, "#333333");
    for (int k = 0; k <= 4; k++) {
        double v = zmin + (zmax - zmin) * k / 4, y = T + bh * (1 - k / 4.0);
        svg_line(&s, bx + 16, y, bx + 20, y, "#333333", 1);
        svg_text(&s, bx + 22, y + 4, 10, "start", 0, "%.3g", v);
    }
    svg_text(&s, bx + 62, T + bh / 2, 11, "middle", -90, "%s", zlabel);
    return svg_close(&s);
}

TdStatus svg_heatmap(const char *path, const char *title, const double *z, int n1, int n2,
                     const double *x1, const double *x2, const char *xlabel,
                     const char *ylabel, double zmin, double zmax, const char *zlabel)
{
    return heatmap_draw(path, title, z, n1, n2, x1, x2, NULL, NULL, xlabel, ylabel, zmin, zmax,
                        zlabel);
}

TdStatus svg_heatmap_labels(const char *path, const char *title, const double *z, int n1,
                            int n2, const char *const *l1, const char *const *l2,
                            const char *xlabel, const char *ylabel, double zmin, double zmax,
                            const char *zlabel)
{
    return heatmap_draw(path, title, z, n1, n2, NULL, NULL, l1, l2, xlabel, ylabel, zmin, zmax,
                        zlabel);
}
