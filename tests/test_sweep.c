/* Sweeps and studies (dist/sweep, dist/sweep_study, kernels/stats).
 *   test_sweep                 unit tests: t quantiles against printed tables,
 *                              intervals and interpolation against values worked
 *                              out by hand, the sweep's configuration checks, and
 *                              a whole study on made-up run results whose matched
 *                              comparison is computed by hand below
 *   test_sweep same A.csv B.csv TOL
 *                              two tables/study_runs.csv agree (every column but
 *                              train_seconds) within TOL */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "config.h"
#include "h5util.h"
#include "results.h"
#include "stats.h"
#include "sweep.h"

static void test_t_quantiles(void **state)
{
    (void)state;
    /* two-sided 95% critical values as printed in statistics tables */
    static const double df[] = {1, 2, 4, 10, 30}, t[] = {12.706, 4.303, 2.776, 2.228, 2.042};
    for (int i = 0; i < 5; i++)
        assert_true(fabs(stats_t_quantile(0.975, df[i]) - t[i]) < 1e-3);
    assert_true(fabs(stats_t_cdf(0, 3) - 0.5) < 1e-12);
    assert_true(fabs(stats_t_cdf(-2.776, 4) - 0.025) < 1e-4);
}

static void test_mean_ci(void **state)
{
    (void)state;
    double x[] = {1, 2, 3, 4}, m, h;
    stats_mean_ci95(x, 4, &m, &h);
    /* sd = sqrt(5/3) = 1.29099; t(0.975, 3) = 3.18245; half = 3.18245 * 1.29099 / 2 */
    assert_true(fabs(m - 2.5) < 1e-12);
    assert_true(fabs(h - 2.05426) < 1e-4);
    stats_mean_ci95(x, 1, &m, &h);
    assert_true(m == 1 && isnan(h));
}

static void test_interp(void **state)
{
    (void)state;
    double x[] = {3, 1, 2}, y[] = {30, 10, 40}, v;
    assert_true(stats_interp(x, y, 3, 1.5, &v) && fabs(v - 25) < 1e-12);
    assert_true(stats_interp(x, y, 3, 2.5, &v) && fabs(v - 35) < 1e-12);
    assert_true(stats_interp(x, y, 3, 3, &v) && fabs(v - 30) < 1e-12);
    assert_false(stats_interp(x, y, 3, 0.5, &v)); /* never extrapolated */
    assert_false(stats_interp(x, y, 3, 3.01, &v));
    double xd[] = {1, 1, 2, NAN}, yd[] = {10, 20, 30, 5}; /* equal x averaged, NaN ignored */
    assert_true(stats_interp(xd, yd, 4, 1, &v) && fabs(v - 15) < 1e-12);
    assert_true(stats_interp(xd, yd, 4, 1.5, &v) && fabs(v - 22.5) < 1e-12);
}

static const char *write_cfg(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/sweep_unit/%s", TADIST_TEST_OUT, name);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sweep_unit", TADIST_TEST_OUT);
    assert_int_equal(fs_mkdir_p(dir), TD_OK);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_axes_checked(void **state)
{
    (void)state;
    TdConfig c;
    static const struct {
        const char *axes, *msg;
    } bad[] = {
        {"[\"finetune.lr 1e-4\"]", "is not \"key = v1"},
        {"[\"finetune.lrr = 1e-4\"]", "did you mean 'finetune.lr'"},
        {"[\"model.path = a.h5 | b.h5\"]", "cannot be swept"},
        {"[\"finetune.lr = 1e-4 | -1\"]", "finetune.lr"},
        {"[\"finetune.lr = 1e-4 | 1e-4\"]", "listed twice"},
        {"[\"finetune.lr = 1e-4\", \"finetune.lr = 1e-3\"]", "two axes"},
        {"[\"finetune.steps = 100 | 10\"]", "sweep run 1: finetune.steps = 10"},
        {"[\"finetune.modes = attn | bogus\"]", "bogus"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "data = { tasks = [\"t1\"]; };\nfinetune = { warmup = 50; };\n"
                 "sweep = {\n  axes = %s;\n};\n", bad[i].axes);
        const char *p = write_cfg("bad.cfg", text);
        td_error_clear();
        assert_int_not_equal(config_load_local(p, NULL, &c), TD_OK);
        const char *msg = td_error_message();
        if (!strstr(msg, bad[i].msg))
            fail_msg("axes %s: message '%s' lacks '%s'", bad[i].axes, msg, bad[i].msg);
        if (i != 6 && !strstr(msg, "bad.cfg:4"))
            fail_msg("axes %s: message '%s' does not name the line", bad[i].axes, msg);
        td_error_clear();
    }
}

/* A study over made-up results: modes attn | full, lr l1 | l2, seeds 1 | 2.
 * single-task / merged accuracy per (mode, lr, seed):
 *   attn l1: .60/.50 (s1) .62/.52 (s2)   attn l2: .80/.40 .78/.42
 *   full l1: .70/.46      .72/.44        full l2: .90/.30 .88/.32
 * Mean curves: attn single in [.61, .79], full in [.71, .89]: matched at .75.
 * Seed 1: attn .50 + (.40 - .50) * .15/.20 = .425; full .46 - .16 * .05/.20 = .42
 * Seed 2: attn .52 - .10 * .13/.16 = .43875;     full .44 - .12 * .03/.16 = .4175
 * full - attn: -0.5 and -2.125 points: mean -1.3125, sd 1.625/sqrt(2),
 * half = 12.7062 * 1.149049 / sqrt(2) = 10.3238.
 * Same settings, full - attn per seed: (-4 - 10)/2 = -7 and (-8 - 10)/2 = -9:
 * mean -8, half = 12.7062 * 1.414214 / sqrt(2) = 12.7062. */
static void test_study_by_hand(void **state)
{
    (void)state;
    const char *p = write_cfg("study.cfg",
                              "run = { name = \"study\"; stages = [\"finetune\", \"single\", "
                              "\"addition\"]; };\n"
                              "data = { tasks = [\"t1\"]; };\nfinetune = { warmup = 1; };\n"
                              "sweep = { axes = [\"finetune.modes = attn | full\", "
                              "\"finetune.lr = 1e-4 | 1e-3\", \"run.seed = 1 | 2\"]; };\n");
    TdConfig c;
    assert_int_equal(config_load_local(p, NULL, &c), TD_OK);
    snprintf(c.run.out_dir, sizeof c.run.out_dir, "%s/sweep_unit/out", TADIST_TEST_OUT);
    TdSweep sw;
    assert_int_equal(config_sweep_parse(&c, &sw), TD_OK);
    assert_int_equal(sw.runs, 8);
    static const double single[8] = {.60, .62, .80, .78, .70, .72, .90, .88};
    static const double merged[8] = {.50, .52, .40, .42, .46, .44, .30, .32};
    for (long r = 0; r < 8; r++) {
        char rd[700], json[1024];
        snprintf(rd, sizeof rd, "%s/study/runs/r%03ld", c.run.out_dir, r);
        assert_int_equal(fs_mkdir_p(rd), TD_OK);
        snprintf(json, sizeof json,
                 "{\"modes\": {\"%s\": {"
                 "\"single\": {\"t1\": {\"test\": %g, \"val\": %g}},"
                 "\"addition\": {\"sum\": {\"alpha\": 0.3, \"heads\": {\"theta0\": "
                 "{\"abs_test\": %g, \"norm_test\": %g}}}},"
                 "\"tv_norm\": {\"t1\": %g}, \"train_seconds\": 1}}}",
                 r < 4 ? "attn" : "full", single[r], single[r], merged[r], merged[r] / single[r],
                 1.0 + (double)r);
        assert_int_equal(results_set(rd, "sweep_run", cJSON_Parse("{\"done\": true}")), TD_OK);
        cJSON *root = cJSON_Parse(json);
        assert_non_null(root);
        assert_int_equal(results_set(rd, "modes", cJSON_DetachItemFromObject(root, "modes")),
                         TD_OK);
        cJSON_Delete(root);
    }
    assert_int_equal(sweep_study(&c, &sw), TD_OK);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/study", c.run.out_dir);
    cJSON *root = NULL;
    assert_int_equal(results_load(dir, &root), TD_OK);
    const cJSON *cmp = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "study"), "comparisons"), 0);
    assert_non_null(cmp);
    assert_string_equal(cJSON_GetObjectItem(cmp, "a")->valuestring, "full");
    assert_string_equal(cJSON_GetObjectItem(cmp, "b")->valuestring, "attn");
    assert_true(fabs(cJSON_GetObjectItem(cmp, "single_acc")->valuedouble - 0.75) < 1e-12);
    assert_int_equal(cJSON_GetObjectItem(cmp, "seeds")->valueint, 2);
    assert_true(fabs(cJSON_GetObjectItem(cmp, "abs_points")->valuedouble + 1.3125) < 1e-9);
    assert_true(fabs(cJSON_GetObjectItem(cmp, "abs_ci95")->valuedouble - 10.3238) < 1e-3);
    assert_true(fabs(cJSON_GetObjectItem(cmp, "same_settings_abs_points")->valuedouble + 8) <
                1e-9);
    assert_true(fabs(cJSON_GetObjectItem(cmp, "same_settings_abs_ci95")->valuedouble - 12.7062) <
                1e-3);
    const char *text = cJSON_GetObjectItem(cmp, "sentence")->valuestring;
    if (!strstr(text, "At equal single-task accuracy 75.0%, full merges 1.31 ± 10.32 points "
                      "worse than attn"))
        fail_msg("sentence: %s", text);
    /* per configuration: attn lr 1e-4 has single .61 +- 12.7062 * .01414/sqrt(2) */
    const cJSON *c0 = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "study"), "configs"), 0);
    const cJSON *s0 = cJSON_GetObjectItem(c0, "single_test");
    assert_true(fabs(cJSON_GetObjectItem(s0, "mean")->valuedouble - 0.61) < 1e-12);
    assert_true(fabs(cJSON_GetObjectItem(s0, "ci95")->valuedouble - 0.127062) < 1e-5);
    cJSON_Delete(root);
}

/* ---- same A B TOL ---- */

static int read_rows(const char *path, char rows[][1024], int max)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    while (n < max && fgets(rows[n], 1024, f))
        n++;
    fclose(f);
    return n;
}

static int same_csv(const char *a, const char *b, double tol)
{
    static char ra[512][1024], rb[512][1024];
    int na = read_rows(a, ra, 512), nb = read_rows(b, rb, 512);
    if (na < 2 || na != nb) {
        fprintf(stderr, "FAIL: %s has %d rows, %s %d\n", a, na, b, nb);
        return 1;
    }
    double worst = 0;
    for (int i = 1; i < na; i++) { /* after the settings column (quoted), numbers */
        char *qa = strrchr(ra[i], '"'), *qb = strrchr(rb[i], '"');
        if (!qa || !qb || strncmp(ra[i], rb[i], (size_t)(qa - ra[i])) != 0) {
            fprintf(stderr, "FAIL: row %d differs: %s vs %s\n", i, ra[i], rb[i]);
            return 1;
        }
        char *pa = qa + 2, *pb = qb + 2;
        const int ncols = 9; /* seed, then the metrics before the last (train_seconds) */
        for (int k = 0; k < ncols; k++) {
            double x = strtod(pa, &pa), y = strtod(pb, &pb);
            if (!(isnan(x) && isnan(y)) && !(fabs(x - y) <= tol)) {
                fprintf(stderr, "FAIL: row %d column %d: %g vs %g\n", i, k, x, y);
                return 1;
            }
            if (isfinite(x) && isfinite(y))
                worst = fmax(worst, fabs(x - y));
            pa += *pa == ',', pb += *pb == ',';
        }
    }
    printf("%d run result(s) agree, worst difference %.3g (tolerance %g)\n", na - 1, worst, tol);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "same") == 0)
        return same_csv(argv[2], argv[3], atof(argv[4]));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_t_quantiles), cmocka_unit_test(test_mean_ci),
        cmocka_unit_test(test_interp), cmocka_unit_test(test_axes_checked),
        cmocka_unit_test(test_study_by_hand)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
