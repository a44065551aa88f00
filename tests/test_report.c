/* The report stage on a hand-written run directory: report.md holds the
 * expected rows (numbers copied from results.json), missing parts read
 * "not run", the SVG figures exist and are well-formed XML, and the CSV
 * tables hold the same numbers. */
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
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    runtime_finalize();
    return rc;
}
