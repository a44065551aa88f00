/* The report stage on a hand-written run directory: report.md holds the
 * expected rows (numbers copied from results.json), missing parts read
 * "not run", the SVG figures exist and are well-formed XML, and the CSV
 * tables hold the same numbers. The coefficient-search section on a second
 * one (two modes, per-block and per-task entries, a missing head set and a
 * missing baseline): its rows, CSV, heat-map cells and trace points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "report.h"
#include "results.h"
#include "runtime.h"

#define OUT TADIST_TEST_OUT "/report"
#define RUN OUT "/hand"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    return s;
}

/* Balanced elements: every <x ...> closed by </x> in order; <.../> and <?...?> stand alone. */
static int well_formed(const char *s)
{
    char stack[64][32];
    int depth = 0, svg = 0;
    for (const char *p = strchr(s, '<'); p; p = strchr(p + 1, '<')) {
        const char *e = strchr(p, '>');
        if (!e)
            return 0;
        if (p[1] == '?')
            continue;
        int close = p[1] == '/', selfc = e[-1] == '/';
        const char *nm = p + 1 + close;
        size_t len = strcspn(nm, " \t\n/>");
        if (len == 0 || len >= 32)
            return 0;
        if (close) {
            if (depth == 0 || strncmp(stack[depth - 1], nm, len) != 0 || stack[depth - 1][len])
                return 0;
            depth--;
        } else if (!selfc) {
            if (depth == 64)
                return 0;
            snprintf(stack[depth++], 32, "%.*s", (int)len, nm);
        }
        svg += strncmp(nm, "svg", 3) == 0;
    }
    return depth == 0 && svg == 2 && strstr(s, "</svg>") != NULL;
}

static void set_num(const char *key, double v)
{
    assert_int_equal(results_set(RUN, key, cJSON_CreateNumber(v)), TD_OK);
}

static void write_run(void)
{
    assert_int_equal(system("rm -rf " RUN " && mkdir -p " RUN), 0);
    cJSON *tasks = cJSON_CreateArray();
    cJSON_AddItemToArray(tasks, cJSON_CreateString("ta"));
    cJSON_AddItemToArray(tasks, cJSON_CreateString("tb"));
    assert_int_equal(results_set(RUN, "tasks", tasks), TD_OK);
    cJSON *cmds = cJSON_Parse("[{\"command\": \"mpirun -np 8 tadist config/hand.cfg\", "
                              "\"stages\": \"all\", \"started\": \"then\"}]");
    assert_int_equal(results_set(RUN, "commands", cmds), TD_OK);
    set_num("modes.full.train_seconds", 12.5);
    set_num("modes.attn.train_seconds", 9.5);
    set_num("modes.full.single.ta.test", 0.91);
    set_num("modes.full.single.ta.theta0_test", 0.3);
    set_num("modes.full.single.tb.test", 0.81);
    set_num("modes.full.single.tb.theta0_test", 0.2);
    set_num("modes.attn.single.ta.test", 0.875);
    set_num("modes.attn.single.tb.test", 0.625);
    set_num("modes.full.single.ta.heads.theta0.test", 0.9);
    set_num("modes.full.single.ta.heads.theta0.val", 0.85);
    set_num("modes.full.single.tb.heads.theta0.test", 0.8);
    set_num("modes.full.single.ta.heads.refit.test", 0.95);
    set_num("modes.full.single.tb.heads.refit.test", 0.85);
    cJSON *add = cJSON_Parse(
        "{\"alpha\": 0.35, \"grid\": \"/full/addition/sum\", \"heads\": {\"theta0\": "
        "{\"abs_test\": 0.777, \"norm_test\": 0.888, \"normalised_by\": "
        "\"modes.full.single.<task>.heads.theta0.test\", \"per_task\": {\"ta\": {\"abs\": 0.7, "
        "\"norm\": 0.77}, \"tb\": {\"abs\": 0.6, \"norm\": 0.74}}}, \"refit\": {\"abs_test\": "
        "0.8, \"norm_test\": 0.7, \"per_task\": {}}}}");
    assert_int_equal(results_set(RUN, "modes.full.addition.sum", add), TD_OK);
    double alpha[5] = {0, 0.25, 0.5, 0.75, 1}, val[5] = {0.2, 0.5, 0.8, 0.7, 0.6};
    size_t d5[1] = {5}, d3[1] = {3}, d33[2] = {3, 3};
    assert_int_equal(results_grid_write(RUN, "/full/addition/sum/alpha", alpha, 1, d5, "alpha"),
                     TD_OK);
    assert_int_equal(results_grid_write(RUN, "/full/addition/sum/val_norm", val, 1, d5, "alpha"),
                     TD_OK);
    cJSON *dis = cJSON_Parse("{\"grid\": \"/full/disentangle/ta+tb\", \"mean_err_pred\": 0.1234, "
                             "\"mean_err_pred_inner\": 0.0567, \"mean_err_repr\": 2.5, "
                             "\"mean_err_repr_inner\": 1.25}");
    assert_int_equal(results_set(RUN, "modes.full.disentangle.ta+tb", dis), TD_OK);
    double a3[3] = {-1, 0, 1}, g[9] = {0.5, 0.2, 0.6, 0.1, 0, 0.1, 0.7, 0.3, 0.9};
    assert_int_equal(results_grid_write(RUN, "/full/disentangle/ta+tb/alpha", a3, 1, d3, "alpha"),
                     TD_OK);
    assert_int_equal(results_grid_write(RUN, "/full/disentangle/ta+tb/pred", g, 2, d33, NULL), TD_OK);
    assert_int_equal(results_grid_write(RUN, "/full/disentangle/ta+tb/repr", g, 2, d33, NULL), TD_OK);
}

static void expect(const char *text, const char *needle)
{
    if (!strstr(text, needle))
        fail_msg("missing: %s", needle);
}

static void test_report_from_hand_written_run(void **state)
{
    (void)state;
    if (g_rt.rank == 0)
        write_run();
    const char *sets[] = {"run.out_dir=" OUT, "run.name=hand", "run.stages=report",
                          "data.tasks=ta,tb"};
    CliList l = {4, {sets[0], sets[1], sets[2], sets[3]}};
    TdConfig cfg;
    assert_int_equal(config_load_local(NULL, &l, &cfg), TD_OK);
    assert_int_equal(report_stage(&cfg), TD_OK);
    if (g_rt.rank != 0)
        return;
    char *md = slurp(RUN "/report.md");
    assert_non_null(md);
    expect(md, "mpirun -np 8 tadist config/hand.cfg");
    expect(md, "| full | 12.5 |");
    expect(md, "| attn | 9.5 |");
    expect(md, "| ta | 0.3000 | 0.9100 | 0.8750 |");  /* task, theta0, full, attn */
    expect(md, "| tb | 0.2000 | 0.8100 | 0.6250 |");
    /* each head set names its normaliser; a result without one says so */
    expect(md, "| full | sum | theta0 | 0.35 | 0.7770 | 0.8880 | theta0 heads "
               "(`modes.full.single.<task>.heads.theta0.test`) |");
    expect(md, "| full | sum | refit | 0.35 | 0.8000 | 0.7000 | not recorded");
    expect(md, "### Normalisers");
    expect(md, "| full | theta0 | 0.9000 | 0.8000 | 0.8500 |"); /* mode, heads, ta, tb, mean */
    expect(md, "| full | refit | 0.9500 | 0.8500 | 0.9000 |");
    expect(md, "| full | ta+tb | 0.1234 | 0.0567 | 2.5000 | 1.2500 |");
    /* negation and kernel were never run */
    const char *neg = strstr(md, "## Task negation"), *ker = strstr(md, "## Kernel behaviour");
    assert_non_null(neg);
    assert_non_null(ker);
    assert_non_null(strstr(neg, "_not run_"));
    assert_true(strstr(neg, "_not run_") < strstr(neg, "## Weight"));
    assert_non_null(strstr(ker, "_not run_"));
    /* no coefficient search: the section says so, and writes no table */
    const char *cs = strstr(md, "## Coefficient searches");
    assert_non_null(cs);
    assert_true(cs < neg);
    assert_non_null(strstr(cs, "_not run_ (no `coef_search` results in results.json)"));
    assert_true(strstr(cs, "_not run_") < neg);
    assert_null(fopen(RUN "/tables/coef_search.csv", "r"));
    const char *figs[] = {"single.svg", "addition_alpha_sum.svg", "addition_per_task.svg",
                          "disentangle_full_ta_tb_pred.svg", "disentangle_full_ta_tb_repr.svg"};
    for (size_t i = 0; i < sizeof figs / sizeof *figs; i++) {
        char p[600];
        snprintf(p, sizeof p, RUN "/figures/%s", figs[i]);
        char *svg = slurp(p);
        if (!svg)
            fail_msg("no figure %s", p);
        if (!well_formed(svg))
            fail_msg("%s is not well-formed", p);
        expect(md, figs[i]);
        free(svg);
    }
    char *csv = slurp(RUN "/tables/addition.csv");
    assert_non_null(csv);
    expect(csv,
           "full,sum,theta0,mean,0.35,0.777,0.888,modes.full.single.<task>.heads.theta0.test");
    expect(csv, "full,sum,theta0,tb,0.35,0.6,0.74,modes.full.single.<task>.heads.theta0.test");
    free(csv);
    csv = slurp(RUN "/tables/single.csv");
    assert_non_null(csv);
    expect(csv, "attn,tb,");
    free(csv);
    csv = slurp(RUN "/tables/single_heads.csv");
    assert_non_null(csv);
    expect(csv, "full,theta0,ta,0.85,0.9");
    free(csv);
    free(md);
}

/* ---- coefficient searches (report_coef.c) ---- */

#define CRUN OUT "/coef"

static void set_json(const char *key, const char *json)
{
    cJSON *v = cJSON_Parse(json);
    if (!v)
        fail_msg("bad test JSON for %s", key);
    assert_int_equal(results_set(CRUN, key, v), TD_OK);
}

static void grid(const char *path, const double *d, int ndim, size_t d0, size_t d1,
                 const char *axes)
{
    size_t dims[2] = {d0, d1};
    assert_int_equal(results_grid_write(CRUN, path, d, ndim, dims, axes), TD_OK);
}

/* Two modes: full has the uniform baseline (sum), a per-block AdaMerging
 * entry with both head sets and a per-task CMA-ES entry without refit heads;
 * attn has a per-block coordinate search (ties) whose baseline never ran. */
static void write_coef_run(void)
{
    assert_int_equal(system("rm -rf " CRUN " && mkdir -p " CRUN), 0);
    set_json("tasks", "[\"ta\", \"tb\"]");
    set_json("modes.full.addition.sum",
             "{\"alpha\": 0.3, \"norm_val\": 0.78, \"grid\": \"/full/addition/sum\", "
             "\"heads\": {\"theta0\": {\"abs_test\": 0.61, \"norm_test\": 0.71, "
             "\"normalised_by\": \"modes.full.single.<task>.heads.theta0.test\"}, "
             "\"refit\": {\"abs_test\": 0.65, \"norm_test\": 0.75}}}");
    set_json("modes.full.coef_search.sum.adamerging_block",
             "{\"method\": \"sum\", \"search\": \"adamerging\", \"coefficients\": "
             "\"block\", \"objective\": \"entropy\", \"objective_split\": \"test "
             "(unlabeled: labels never read)\", \"tasks\": [\"ta\", \"tb\"], \"groups\": "
             "[\"block0\", \"block1\", \"rest\"], \"coef\": {\"ta\": [0.5, 0.375, 0.125], "
             "\"tb\": [0.0625, 0.75, 0.25]}, \"iterations\": 4, \"seconds\": 12.5, "
             "\"objective_value\": 0.3125, \"norm_val\": 0.8125, \"uniform_alpha\": 0.3, "
             "\"uniform_norm_val\": 0.78, \"grid\": \"/full/coef_search/sum/adamerging_block\", "
             "\"heads\": {\"theta0\": {\"abs_test\": 0.625, \"norm_test\": 0.75, "
             "\"normalised_by\": \"modes.full.single.<task>.heads.theta0.test\"}, "
             "\"refit\": {\"abs_test\": 0.6875, \"norm_test\": 0.8125}}}");
    set_json("modes.full.coef_search.sum.cmaes_task",
             "{\"method\": \"sum\", \"search\": \"cmaes\", \"coefficients\": \"task\", "
             "\"objective\": \"norm_acc\", \"objective_split\": \"val\", \"tasks\": [\"ta\", "
             "\"tb\"], \"groups\": [\"all\"], \"coef\": {\"ta\": [0.4], \"tb\": [0.2]}, "
             "\"iterations\": 6, \"seconds\": 3, \"objective_value\": 0.79, \"norm_val\": "
             "0.79, \"uniform_alpha\": 0.3, \"uniform_norm_val\": 0.78, \"grid\": "
             "\"/full/coef_search/sum/cmaes_task\", \"heads\": {\"theta0\": {\"abs_test\": "
             "0.6, \"norm_test\": 0.7}}}");
    set_json("modes.attn.coef_search.ties.coordinate_block",
             "{\"method\": \"ties\", \"search\": \"coordinate\", \"coefficients\": "
             "\"block\", \"objective\": \"val_ce\", \"objective_split\": \"val\", "
             "\"tasks\": [\"ta\", \"tb\"], \"groups\": [\"block0\", \"rest\"], \"coef\": "
             "{\"ta\": [1, 0.5], \"tb\": [0.25, 0]}, \"iterations\": 3, \"seconds\": 1.5, "
             "\"objective_value\": 1.5, \"norm_val\": 0.5, \"grid\": "
             "\"/attn/coef_search/ties/coordinate_block\", \"heads\": {\"theta0\": "
             "{\"abs_test\": 0.4, \"norm_test\": 0.55}}}");
    double cb[6] = {0.5, 0.375, 0.125, 0.0625, 0.75, 0.25}, tb[4] = {0.9, 0.7, 0.5, 0.3125};
    double ct[2] = {0.4, 0.2}, tt[6] = {0.7, 0.72, 0.75, 0.74, 0.78, 0.79};
    double ca[4] = {1, 0.5, 0.25, 0}, ta[3] = {2, 1.75, 1.5};
    grid("/full/coef_search/sum/adamerging_block/coef", cb, 2, 2, 3, "task,group");
    grid("/full/coef_search/sum/adamerging_block/trace", tb, 1, 4, 0, "iteration");
    grid("/full/coef_search/sum/cmaes_task/coef", ct, 2, 2, 1, "task,group");
    grid("/full/coef_search/sum/cmaes_task/trace", tt, 1, 6, 0, "iteration");
    grid("/attn/coef_search/ties/coordinate_block/coef", ca, 2, 2, 2, "task,group");
    grid("/attn/coef_search/ties/coordinate_block/trace", ta, 1, 3, 0, "iteration");
}

/* <rect>s inside the heat map's <g class="cells">; -1 without one. */
static int heat_cells(const char *svg)
{
    const char *g = strstr(svg, "<g class=\"cells\">"), *e = g ? strstr(g, "</g>") : NULL;
    if (!e)
        return -1;
    int n = 0;
    for (const char *p = strstr(g, "<rect"); p && p < e; p = strstr(p + 1, "<rect"))
        n++;
    return n;
}

/* x,y pairs in all points="..." of the file. */
static int polyline_points(const char *svg)
{
    int n = 0;
    for (const char *p = strstr(svg, "points=\""); p; p = strstr(p + 1, "points=\""))
        for (const char *q = p + 8; *q && *q != '"'; q++)
            n += *q == ',';
    return n;
}

static char *figure_file(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/figures/%s", dir, name);
    char *svg = slurp(p);
    if (!svg)
        fail_msg("no figure %s", p);
    if (!well_formed(svg))
        fail_msg("%s is not well-formed", p);
    return svg;
}

static void test_report_coef_search(void **state)
{
    (void)state;
    if (g_rt.rank == 0)
        write_coef_run();
    const char *sets[] = {"run.out_dir=" OUT, "run.name=coef", "run.stages=report",
                          "data.tasks=ta,tb"};
    CliList l = {4, {sets[0], sets[1], sets[2], sets[3]}};
    TdConfig cfg;
    assert_int_equal(config_load_local(NULL, &l, &cfg), TD_OK);
    assert_int_equal(report_stage(&cfg), TD_OK);
    if (g_rt.rank != 0)
        return;
    char *md = slurp(CRUN "/report.md");
    assert_non_null(md);
    const char *sec = strstr(md, "## Coefficient searches");
    assert_non_null(sec);
    assert_true(strstr(md, "## Task addition") < sec);
    assert_true(sec < strstr(md, "## Task negation"));
    expect(sec, "`modes.<mode>.coef_search.<method>.<search>_<structure>.");
    expect(sec, "`modes.<mode>.addition.<method>.{alpha, norm_val, heads}`");
    /* full: both head sets; the uniform baseline first, the missing refit as "-" */
    const char *full = strstr(sec, "### full"), *attn = strstr(sec, "### attn");
    assert_non_null(full);
    assert_non_null(attn);
    expect(full, "| method | search | coefficients | objective, split | iterations | seconds | "
                 "final objective | norm_val | theta0 abs (test) | theta0 norm (test) | refit "
                 "abs (test) | refit norm (test) |");
    expect(full, "| sum | alpha grid (alpha = 0.3) | uniform | norm_val, val | - | - | - | "
                 "0.7800 | 0.6100 | 0.7100 | 0.6500 | 0.7500 |\n"
                 "| sum | adamerging | block | entropy, test (unlabeled: labels never read) | 4 "
                 "| 12.5 | 0.3125 | 0.8125 | 0.6250 | 0.7500 | 0.6875 | 0.8125 |\n"
                 "| sum | cmaes | task | norm_acc, val | 6 | 3.0 | 0.79 | 0.7900 | 0.6000 | "
                 "0.7000 | - | - |\n");
    /* attn: theta0 only, and no baseline */
    expect(attn, "final objective | norm_val | theta0 abs (test) | theta0 norm (test) |\n");
    expect(attn, "| ties | alpha grid (not run) | uniform | norm_val, val | - | - | - | - | - "
                 "| - |\n| ties | coordinate | block | val_ce, val | 3 | 1.5 | 1.5 | 0.5000 | "
                 "0.4000 | 0.5500 |\n");
    char *csv = slurp(CRUN "/tables/coef_search.csv");
    assert_non_null(csv);
    expect(csv, "mode,method,search,coefficients,objective,objective_split,iterations,seconds,"
                "objective_value,norm_val,uniform_alpha,uniform_norm_val,heads,abs_test,"
                "norm_test,normalised_by\n");
    expect(csv, "full,sum,grid,uniform,norm_val,val,nan,nan,nan,0.78,0.3,0.78,theta0,0.61,0.71,"
                "modes.full.single.<task>.heads.theta0.test\n");
    expect(csv, "full,sum,adamerging,block,entropy,test (unlabeled: labels never read),4,12.5,"
                "0.3125,0.8125,0.3,0.78,refit,0.6875,0.8125,\n");
    expect(csv, "full,sum,cmaes,task,norm_acc,val,6,3,0.79,0.79,0.3,0.78,theta0,0.6,0.7,\n");
    assert_null(strstr(csv, "full,sum,cmaes,task,norm_acc,val,6,3,0.79,0.79,0.3,0.78,refit"));
    expect(csv, "attn,ties,coordinate,block,val_ce,val,3,1.5,1.5,0.5,nan,nan,theta0,0.4,0.55,");
    free(csv);
    csv = slurp(CRUN "/tables/coef_search_coef.csv");
    assert_non_null(csv);
    expect(csv, "full,sum,adamerging,block,tb,rest,0.25\n");
    expect(csv, "full,sum,cmaes,task,ta,all,0.4\n");
    expect(csv, "attn,ties,coordinate,block,ta,block0,1\n");
    free(csv);
    /* heat maps: one cell per task and group; traces: one point per iteration */
    struct { const char *file; int cells, points; } figs[] = {
        {"coef_full_sum_adamerging_block.svg", 6, -1},
        {"coef_attn_ties_coordinate_block.svg", 4, -1},
        {"coef_task_full.svg", -1, -1},
        {"coef_trace_full_sum_entropy.svg", -1, 4},
        {"coef_trace_full_sum_norm_acc.svg", -1, 6},
        {"coef_trace_attn_ties_val_ce.svg", -1, 3},
    };
    for (size_t i = 0; i < sizeof figs / sizeof *figs; i++) {
        char *svg = figure_file(CRUN, figs[i].file);
        expect(sec, figs[i].file);
        if (figs[i].cells >= 0 && heat_cells(svg) != figs[i].cells)
            fail_msg("%s: %d cells, expected %d", figs[i].file, heat_cells(svg), figs[i].cells);
        if (figs[i].points >= 0 && polyline_points(svg) != figs[i].points)
            fail_msg("%s: %d points, expected %d", figs[i].file, polyline_points(svg),
                     figs[i].points);
        free(svg);
    }
    char *bars = figure_file(CRUN, "coef_task_full.svg");
    expect(bars, ">sum cmaes_task<");
    free(bars);
    expect(sec, "`/full/coef_search/sum/adamerging_block/coef`");
    expect(sec, "`/full/coef_search/sum/cmaes_task/trace`");
    assert_null(strstr(sec, "coef_task_attn.svg")); /* attn has no per-task entry */
    free(md);
}

/* The checker itself must reject broken markup. */
static void test_checker_rejects_broken_svg(void **state)
{
    (void)state;
    assert_true(well_formed("<?xml?><svg a=\"1\"><g><rect/></g></svg>"));
    assert_false(well_formed("<svg><g></svg>"));
    assert_false(well_formed("<svg><rect/>"));
}

int main(int argc, char **argv)
{
    runtime_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_rejects_broken_svg),
        cmocka_unit_test(test_report_from_hand_written_run),
        cmocka_unit_test(test_report_coef_search),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    runtime_finalize();
    return rc;
}
