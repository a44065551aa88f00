/* Configuration: parsing, validation, --set, the canonical dump and the
 * broadcast, at whatever rank count the test runs with. Files are written by
 * rank 0 (the only rank that reads them) into TADIST_TEST_OUT/config_npN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "runtime.h"

static char g_dir[512];

/* Writes text to g_dir/name on rank 0; returns the path (valid until the next call). */
static const char *write_cfg(const char *name, const char *text)
{
    static char path[640];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    if (g_rt.rank == 0) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static CliList sets_of(int n, const char *const *items)
{
    CliList l = {0};
    for (int i = 0; i < n; i++)
        l.items[l.count++] = items[i];
    return l;
}

/* Loads and requires failure with a message holding every fragment. */
static void expect_fail(const char *path, const CliList *sets, const char *const *frags)
{
    TdConfig c;
    td_error_clear();
    TdStatus s = config_load(path, sets, &c);
    const char *m = td_error_message();
    if (s == TD_OK)
        fail_msg("expected an error loading %s", path ? path : "(defaults)");
    for (const char *const *f = frags; *f; f++)
        if (!strstr(m, *f))
            fail_msg("error message \"%s\" does not contain \"%s\"", m, *f);
    td_error_clear();
}
#define EXPECT_FAIL(path, sets, ...) \
    expect_fail((path), (sets), (const char *const[]){__VA_ARGS__, NULL})

static void load_ok(const char *path, const CliList *sets, TdConfig *c)
{
    td_error_clear();
    TdStatus s = config_load(path, sets, c);
    if (s != TD_OK)
        fail_msg("loading %s failed: %s", path ? path : "(defaults)", td_error_message());
}

static void assert_text(const TdConfig *c, const char *key, const char *want)
{
    char buf[4096];
    assert_int_equal(config_value_text(c, key, buf, sizeof buf), TD_OK);
    assert_string_equal(buf, want);
}

static void test_schema_is_consistent(void **state)
{
    (void)state;
    if (config_schema_check() != TD_OK)
        fail_msg("%s", td_error_message());
}

static void test_defaults_are_the_papers_recipe(void **state)
{
    (void)state;
    TdConfig c;
    load_ok(NULL, NULL, &c);
    assert_text(&c, "finetune.modes", "[\"attn\"]");
    assert_text(&c, "finetune.optimizer", "adamw");
    assert_true(c.finetune.lr == 1e-5 && c.finetune.weight_decay == 0.1);
    assert_true(c.finetune.beta1 == 0.9 && c.finetune.beta2 == 0.999 && c.finetune.eps == 1e-8);
    assert_int_equal(c.finetune.batch, 128);
    assert_int_equal(c.finetune.steps, 2000);
    assert_int_equal(c.finetune.warmup, 500);
    assert_string_equal(c.finetune.schedule, "cosine");
    assert_true(c.finetune.grad_clip == 1.0 && c.finetune.label_smoothing == 0.0);
    assert_false(c.finetune.train_heads);
    assert_true(c.merge.alpha.start == 0.0 && c.merge.alpha.stop == 1.0);
    assert_true(c.merge.alpha.step == 0.05);
    assert_true(c.merge.ties.k == 20.0);
    assert_string_equal(c.merge.ties.scope, "global");
    assert_true(c.negation.threshold == 0.95);
    assert_true(c.disentangle.min == -2.0 && c.disentangle.max == 2.0);
    assert_int_equal(c.disentangle.points, 15);
    assert_int_equal(c.blas.threads, 0);
    assert_true(c.data.mean[0] == 0.48145466 && c.data.std[2] == 0.27577711);
    char buf[64];
    assert_int_equal(config_value_text(&c, "finetune.nope", buf, sizeof buf), TD_ERR_ARG);
    td_error_clear();
}

static void test_good_file_gives_its_values(void **state)
{
    (void)state;
    const char *p = write_cfg("good.cfg", "# a comment\n"
                                          "run = { name = \"trial\"; seed = 7; };\n"
                                          "finetune = {\n"
                                          "  modes = [\"full\", \"ntk\"];\n"
                                          "  lr = 3e-5;\n"
                                          "  weight_decay = 0;   // an int for a float\n"
                                          "  train_heads = true;\n"
                                          "};\n"
                                          "merge = { ties = { k = 15.5; scope = \"tensor\"; }; };\n"
                                          "data = { crop_scale = [0.5, 1.0]; };\n");
    TdConfig c;
    load_ok(p, NULL, &c);
    assert_string_equal(c.run.name, "trial");
    assert_int_equal(c.run.seed, 7);
    assert_int_equal(c.finetune.modes.count, 2);
    assert_string_equal(c.finetune.modes.item[1], "ntk");
    assert_true(c.finetune.lr == 3e-5 && c.finetune.weight_decay == 0.0);
    assert_true(c.finetune.train_heads);
    assert_true(c.merge.ties.k == 15.5);
    assert_string_equal(c.merge.ties.scope, "tensor");
    assert_true(c.data.crop_scale[0] == 0.5 && c.data.crop_scale[1] == 1.0);
    assert_int_equal(c.finetune.steps, 2000); /* untouched options keep their default */
    assert_string_equal(c.merge.ties.combine, "mean");
}

static void test_unknown_key_names_file_line_key(void **state)
{
    (void)state;
    const char *p = write_cfg("unknown_key.cfg", "# line 1\n"
                                                 "run = {\n"
                                                 "  name = \"x\";\n"
                                                 "  nmae = \"y\";\n"
                                                 "};\n");
    EXPECT_FAIL(p, NULL, "unknown_key.cfg:4:", "unknown key 'run.nmae'", "did you mean 'run.name'");
    p = write_cfg("unknown_section.cfg", "\nfinetun = { lr = 1e-4; };\n");
    EXPECT_FAIL(p, NULL, "unknown_section.cfg:2:", "unknown key 'finetun'");
    p = write_cfg("unknown_top.cfg", "lr = 1e-4;\n");
    EXPECT_FAIL(p, NULL, "unknown_top.cfg:1:", "unknown key 'lr'");
}

static void test_misspelled_nested_key_is_an_error(void **state)
{
    (void)state;
    const char *p = write_cfg("nested.cfg", "merge = {\n"
                                            "  methods = [\"ties\"];\n"
                                            "  ties = {\n"
                                            "    kk = 10;\n"
                                            "  };\n"
                                            "};\n");
    EXPECT_FAIL(p, NULL, "nested.cfg:4:", "'merge.ties.kk'", "did you mean 'merge.ties.k'");
    p = write_cfg("section_as_value.cfg", "merge = { ties = 3; };\n");
    EXPECT_FAIL(p, NULL, "section_as_value.cfg:1:", "merge.ties", "section");
    p = write_cfg("value_as_section.cfg", "finetune = {\n  lr = { x = 1; };\n};\n");
    EXPECT_FAIL(p, NULL, "value_as_section.cfg:2:", "finetune.lr", "expected a number");
}

static void test_wrong_type_is_an_error(void **state)
{
    (void)state;
    const char *p = write_cfg("type_int.cfg", "finetune = {\n  steps = \"many\";\n};\n");
    EXPECT_FAIL(p, NULL, "type_int.cfg:2:", "finetune.steps", "expected an integer");
    p = write_cfg("type_int_float.cfg", "finetune = { steps = 20.5; };\n");
    EXPECT_FAIL(p, NULL, "type_int_float.cfg:1:", "finetune.steps", "expected an integer");
    p = write_cfg("type_float.cfg", "finetune = { lr = \"fast\"; };\n");
    EXPECT_FAIL(p, NULL, "type_float.cfg:1:", "finetune.lr", "expected a number");
    p = write_cfg("type_bool.cfg", "finetune = { train_heads = 1; };\n");
    EXPECT_FAIL(p, NULL, "type_bool.cfg:1:", "finetune.train_heads", "true or false");
    p = write_cfg("type_str.cfg", "run = { name = 3; };\n");
    EXPECT_FAIL(p, NULL, "type_str.cfg:1:", "run.name", "expected a string");
    p = write_cfg("type_list.cfg", "finetune = { modes = \"attn\"; };\n");
    EXPECT_FAIL(p, NULL, "type_list.cfg:1:", "finetune.modes", "list of strings");
    p = write_cfg("type_list_entry.cfg", "data = { tasks = (\"a\", 2); };\n");
    EXPECT_FAIL(p, NULL, "type_list_entry.cfg:1:", "data.tasks", "entry 2");
    p = write_cfg("type_num3.cfg", "data = { mean = [0.5, 0.5]; };\n");
    EXPECT_FAIL(p, NULL, "type_num3.cfg:1:", "data.mean", "expected 3 numbers");
}

static void test_out_of_range_is_an_error(void **state)
{
    (void)state;
    const char *p = write_cfg("range_lr.cfg", "finetune = { lr = 0.0; };\n");
    EXPECT_FAIL(p, NULL, "range_lr.cfg:1:", "finetune.lr", "must be > 0, got 0");
    p = write_cfg("range_k.cfg", "merge = {\n  ties = {\n    k = 101;\n  };\n};\n");
    EXPECT_FAIL(p, NULL, "range_k.cfg:3:", "merge.ties.k", "in [0, 100], got 101");
    p = write_cfg("range_p.cfg", "merge = { dare = { p = 1.0; }; };\n");
    EXPECT_FAIL(p, NULL, "range_p.cfg:1:", "merge.dare.p", "in [0, 1), got 1");
    p = write_cfg("range_batch.cfg", "eval = { batch = 0; };\n");
    EXPECT_FAIL(p, NULL, "range_batch.cfg:1:", "eval.batch", ">= 1, got 0");
    p = write_cfg("range_std.cfg", "data = { std = [0.2, 0.0, 0.2]; };\n");
    EXPECT_FAIL(p, NULL, "range_std.cfg:1:", "data.std", "entry 2");
    p = write_cfg("range_enum.cfg", "heads = { source = \"zero-shot\"; };\n");
    EXPECT_FAIL(p, NULL, "range_enum.cfg:1:", "heads.source", "'zero-shot' is not one of");
    p = write_cfg("range_choice.cfg", "finetune = { modes = [\"full\", \"attention\"]; };\n");
    EXPECT_FAIL(p, NULL, "range_choice.cfg:1:", "'attention' is not one of");
    p = write_cfg("range_empty.cfg", "merge = { methods = []; };\n");
    EXPECT_FAIL(p, NULL, "range_empty.cfg:1:", "merge.methods", "at least one");
    p = write_cfg("range_twice.cfg", "data = { tasks = [\"mnist\", \"mnist\"]; };\n");
    EXPECT_FAIL(p, NULL, "range_twice.cfg:1:", "data.tasks", "twice");
}

static void test_inconsistent_options_are_errors(void **state)
{
    (void)state;
    const char *p = write_cfg("cross_warmup.cfg", "finetune = {\n  steps = 100;\n};\n");
    EXPECT_FAIL(p, NULL, "cross_warmup.cfg:2:", "finetune.steps", "longer than");
    p = write_cfg("cross_heads.cfg", "heads = { source = \"file\"; };\n");
    EXPECT_FAIL(p, NULL, "cross_heads.cfg:1:", "heads.file");
    p = write_cfg("cross_pairs.cfg", "disentangle = { pairs = [\"mnist:nope\"]; };\n");
    EXPECT_FAIL(p, NULL, "cross_pairs.cfg:1:", "disentangle.pairs", "mnist:nope");
    p = write_cfg("cross_arch.cfg", "model = { arch = \"vit_b33\"; };\n");
    EXPECT_FAIL(p, NULL, "cross_arch.cfg:1:", "model.arch", "vit_b33");
    p = write_cfg("cross_alpha.cfg", "merge = { alpha = { start = 2.0; }; };\n");
    EXPECT_FAIL(p, NULL, "cross_alpha.cfg:1:", "merge.alpha.start");
}

static void test_syntax_error_names_file_and_line(void **state)
{
    (void)state;
    const char *p = write_cfg("syntax.cfg", "finetune = {\n  lr = 1e-5;\n  steps = = 3;\n};\n");
    EXPECT_FAIL(p, NULL, "syntax.cfg:3:", "syntax error");
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no_such.cfg", g_dir);
    EXPECT_FAIL(missing, NULL, "no_such.cfg", "cannot read");
}

static void test_set_overrides_every_type(void **state)
{
    (void)state;
    const char *p = write_cfg("set_base.cfg", "finetune = { steps = 3000; lr = 2e-5; };\n");
    const char *items[] = {"finetune.steps=100",
                           "finetune.warmup=10",
                           "finetune.lr=3e-5",
                           "run.name=trial",
                           "run.out_dir=\"out dir\"",
                           "finetune.modes=[\"full\",\"attn\"]",
                           "merge.methods=ties, dare",
                           "eval.heads=[refit]",
                           "finetune.train_heads=true",
                           "data.mean=0.5,0.25,0.125",
                           "negation.targets=[]",
                           "data.tasks=a,b",
                           "finetune.steps=200"}; /* the last --set wins */
    CliList sets = sets_of(sizeof items / sizeof items[0], items);
    TdConfig c;
    load_ok(p, &sets, &c);
    assert_int_equal(c.finetune.steps, 200);
    assert_int_equal(c.finetune.warmup, 10);
    assert_true(c.finetune.lr == 3e-5);
    assert_string_equal(c.run.name, "trial");
    assert_string_equal(c.run.out_dir, "out dir");
    assert_text(&c, "finetune.modes", "[\"full\", \"attn\"]");
    assert_text(&c, "merge.methods", "[\"ties\", \"dare\"]");
    assert_text(&c, "eval.heads", "[\"refit\"]");
    assert_true(c.finetune.train_heads);
    assert_text(&c, "data.mean", "[0.5, 0.25, 0.125]");
    assert_int_equal(c.negation.targets.count, 0);
    assert_text(&c, "data.tasks", "[\"a\", \"b\"]");
}

static void test_bad_set_names_the_argument(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"finetune.lrr=1", "unknown key 'finetune.lrr'", "did you mean 'finetune.lr'"},
        {"finetune.steps=1.5", "finetune.steps", "expected an integer"},
        {"finetune.lr=-1", "finetune.lr", "must be > 0"},
        {"finetune.lr", "expected key=value", "finetune.lr"},
        {"finetune.modes=full,bogus", "finetune.modes", "'bogus' is not one of"},
        {"merge.ties.k=101", "merge.ties.k", "[0, 100]"},
        {"finetune.train_heads=yes", "finetune.train_heads", "true or false"},
        {"data.crop_scale=0.5", "data.crop_scale", "expected 2 numbers"},
        {"run.name=\"open", "run.name", "unterminated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CliList sets = sets_of(1, cases[i]);
        char arg[128];
        snprintf(arg, sizeof arg, "--set %s:", cases[i][0]);
        EXPECT_FAIL(NULL, &sets, arg, cases[i][1], cases[i][2]);
    }
}

/* Only rank 0 reads: other ranks' path and --set are ignored, and every rank
 * ends with rank 0's bytes. */
static void test_every_rank_gets_rank0s_configuration(void **state)
{
    (void)state;
    const char *p = write_cfg("bcast.cfg", "run = { name = \"from-rank-0\"; };\n");
    const char *mine[] = {"finetune.steps=1234", "data.tasks=x,y,z"};
    const char *junk[] = {"no such key"};
    CliList sets = g_rt.rank == 0 ? sets_of(2, mine) : sets_of(1, junk);
    TdConfig c;
    load_ok(g_rt.rank == 0 ? p : "/nonexistent/other.cfg", &sets, &c);
    assert_string_equal(c.run.name, "from-rank-0");
    assert_int_equal(c.finetune.steps, 1234);
    assert_int_equal(c.data.tasks.count, 3);
    TdConfig root = c;
    MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    int same = memcmp(&root, &c, sizeof c) == 0, all;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    assert_true(all);
}

/* The dump is a configuration file that loads back to the same bytes. */
static void test_print_loads_back_identically(void **state)
{
    (void)state;
    const char *items[] = {"run.name=say \"hi\"", "finetune.modes=full,attn_bias",
                           "finetune.lr=0.1", "merge.alpha.step=0.1", "data.tasks=p,q",
                           "disentangle.pairs=p:q", "run.stages=finetune,disentangle",
                           "data.crop_scale=[0.3, 0.7]"};
    CliList sets = sets_of(sizeof items / sizeof items[0], items);
    TdConfig a, b;
    load_ok(NULL, &sets, &a);
    char path[700];
    snprintf(path, sizeof path, "%s/printed.cfg", g_dir);
    if (g_rt.rank == 0) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        config_print(&a, f);
        fclose(f);
    }
    load_ok(path, NULL, &b);
    assert_string_equal(b.run.name, "say \"hi\"");
    assert_memory_equal(&a, &b, sizeof a);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    fclose(f);
    return s;
}

/* config/reference.cfg is what the schema says; regenerate with
 * `tadist --print-reference > config/reference.cfg`. */
static void test_reference_file_matches_the_schema(void **state)
{
    (void)state;
    char *want = NULL;
    size_t n = 0;
    FILE *mem = open_memstream(&want, &n);
    assert_non_null(mem);
    config_print_reference(mem);
    fclose(mem);
    char *have = read_all(TADIST_CONFIG_DIR "/reference.cfg");
    if (!have)
        fail_msg("cannot read %s", TADIST_CONFIG_DIR "/reference.cfg");
    if (strcmp(have, want) != 0)
        fail_msg("config/reference.cfg is out of date: run tadist --print-reference > "
                 "config/reference.cfg");
    free(have);
    free(want);
}

static void test_shipped_configs_load(void **state)
{
    (void)state;
    static const char *const files[] = {"reference.cfg", "demo.cfg",       "study.cfg",
                                        "coef_study.cfg", "vit_b32.cfg", "vit_b16.cfg",
                                        "vit_l14.cfg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", TADIST_CONFIG_DIR, files[i]);
        TdConfig c;
        load_ok(path, NULL, &c);
    }
}

int main(int argc, char **argv)
{
    runtime_init(&argc, &argv);
    snprintf(g_dir, sizeof g_dir, "%s/config_np%d", TADIST_TEST_OUT, g_rt.size);
    if (g_rt.rank == 0)
        mkdir(g_dir, 0777);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_is_consistent),
        cmocka_unit_test(test_defaults_are_the_papers_recipe),
        cmocka_unit_test(test_good_file_gives_its_values),
        cmocka_unit_test(test_unknown_key_names_file_line_key),
        cmocka_unit_test(test_misspelled_nested_key_is_an_error),
        cmocka_unit_test(test_wrong_type_is_an_error),
        cmocka_unit_test(test_out_of_range_is_an_error),
        cmocka_unit_test(test_inconsistent_options_are_errors),
        cmocka_unit_test(test_syntax_error_names_file_and_line),
        cmocka_unit_test(test_set_overrides_every_type),
        cmocka_unit_test(test_bad_set_names_the_argument),
        cmocka_unit_test(test_every_rank_gets_rank0s_configuration),
        cmocka_unit_test(test_print_loads_back_identically),
        cmocka_unit_test(test_reference_file_matches_the_schema),
        cmocka_unit_test(test_shipped_configs_load),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    runtime_finalize();
    return failed ? 1 : 0;
}
