/* tadist zeroshot: zero-shot heads from class names through the text tower,
 * written to a heads file (the heads themselves: text/zeroshot.h). Runs on
 * rank 0; the others wait for the agreed status. */

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "h5util.h"
#include "model_io.h"
#include "runtime.h"
#include "task_io.h"
#include "zeroshot.h"

/* ---- the command ------------------------------------------------------------ */

typedef struct {
    const char *model, *vocab, *merges, *classes, *name, *templates, *out;
    CliList tasks;
} ZsJob;

/* Splits "a,b,c" into names pointing into *owner (free both). */
static TdStatus split_classes(const char *list, char **owner, char ***names, int *n)
{
    int cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    *owner = strdup(list);
    *names = calloc((size_t)cap, sizeof **names);
    if (!*owner || !*names)
        return td_fail(TD_ERR_NOMEM, "out of memory");
    int k = 0;
    for (char *save = NULL, *t = strtok_r(*owner, ",", &save); t; t = strtok_r(NULL, ",", &save))
        (*names)[k++] = t;
    *n = k;
    return k > 0 ? TD_OK : td_fail(TD_ERR_ARG, "zeroshot: --classes '%s' names no class", list);
}

static TdStatus write_head(hid_t f, const char *tmp, const char *task, const float *h, int C,
                           int E)
{
    hsize_t dims[2] = {(hsize_t)C, (hsize_t)E};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, task, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d >= 0 ? H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, h) : -1;
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return e < 0 ? td_fail(TD_ERR_HDF5, "%s: cannot write head '%s' (a repeated task name?)",
                           tmp, task)
                 : TD_OK;
}

/* One task's head into f: classes from a task file or --classes, templates
 * from --templates or the set named like the task. */
static TdStatus zs_task(const ZsJob *j, const TextModel *tm, const ClipTokenizer *tok, hid_t f,
                        const char *tmp, const char *task_path)
{
    TaskData td = {0};
    char **names = NULL, *owner = NULL;
    int C = 0;
    const char *task = j->name;
    TdStatus s;
    if (task_path) {
        s = task_read_header(task_path, &td);
        if (s == TD_OK) {
            C = td.num_classes;
            names = calloc((size_t)C + 1, sizeof *names);
            s = names ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory");
            for (int c = 0; s == TD_OK && c < C; c++)
                names[c] = td.classes[c];
            task = td.name;
        }
    } else {
        s = split_classes(j->classes, &owner, &names, &C);
    }
    ZsTemplates tpl = {0};
    if (s == TD_OK)
        s = zeroshot_templates_load(j->templates ? j->templates : task, &tpl);
    float *h = NULL;
    if (s == TD_OK && !(h = malloc((size_t)C * tm->arch.out_dim * sizeof *h)))
        s = td_fail(TD_ERR_NOMEM, "out of memory");
    if (s == TD_OK)
        s = zeroshot_heads(tm, tok, (const char *const *)names, C, &tpl, h);
    if (s == TD_OK)
        s = write_head(f, tmp, task, h, C, tm->arch.out_dim);
    if (s == TD_OK)
        td_log("zeroshot: %s: %d classes x %d templates", task, C, tpl.count);
    free(h);
    zeroshot_templates_free(&tpl);
    free(names);
    free(owner);
    if (task_path)
        task_free(&td);
    return s;
}

static TdStatus zs_run(const ZsJob *j)
{
    VitModel vm = {0};
    TextModel tm = {0};
    ClipTokenizer tok = {0};
    TdStatus s = model_read(j->model, &vm);
    if (s == TD_OK)
        s = text_model_read(j->model, &tm);
    if (s == TD_OK && tm.arch.out_dim != vm.arch.out_dim)
        s = td_fail(TD_ERR_FORMAT, "%s: text projection dim %d differs from the image's %d",
                    j->model, tm.arch.out_dim, vm.arch.out_dim);
    if (s == TD_OK)
        s = clip_tokenizer_load(&tok, j->vocab, j->merges);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", j->out, (int)getpid());
    hid_t f = -1;
    if (s == TD_OK && (f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        s = td_fail(TD_ERR_IO, "cannot create heads file '%s'", tmp);
    if (s == TD_OK)
        s = h5u_attr_write_str(f, tmp, "format", "tadist-heads-1");
    if (s == TD_OK)
        s = h5u_attr_write_str(f, tmp, "source", "zeroshot");
    if (s == TD_OK)
        s = h5u_attr_write_str(f, tmp, "base_checksum", vm.checksum);
    if (s == TD_OK)
        s = h5u_attr_write_f64(f, tmp, "logit_scale", 100.0);
    if (s == TD_OK && j->classes)
        s = zs_task(j, &tm, &tok, f, tmp, NULL);
    for (int t = 0; s == TD_OK && t < j->tasks.count; t++)
        s = zs_task(j, &tm, &tok, f, tmp, j->tasks.items[t]);
    if (f >= 0 && H5Fclose(f) < 0 && s == TD_OK)
        s = td_fail(TD_ERR_HDF5, "%s: cannot close", tmp);
    if (s == TD_OK && rename(tmp, j->out) != 0)
        s = td_fail(TD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, j->out, strerror(errno));
    if (s != TD_OK && f >= 0)
        unlink(tmp);
    if (s == TD_OK)
        td_log("zeroshot heads -> %s", j->out);
    clip_tokenizer_free(&tok);
    if (tm.params)
        text_model_free(&tm);
    if (vm.params)
        model_free(&vm);
    return s;
}

TdStatus cmd_zeroshot(int argc, char **argv)
{
    ZsJob j = {0};
    int help = 0;
    const CliOption opts[] = {
        {"model", 0, CLI_STR, &j.model, "model file with a text tower (tadist import --text)"},
        {"vocab", 0, CLI_STR, &j.vocab, "CLIP vocab.json"},
        {"merges", 0, CLI_STR, &j.merges, "CLIP merges.txt"},
        {"task", 0, CLI_LIST, &j.tasks, "task file (classes and name); repeatable"},
        {"classes", 0, CLI_STR, &j.classes, "comma-separated class names, instead of --task"},
        {"name", 0, CLI_STR, &j.name, "task name for --classes (default: task)"},
        {"templates", 0, CLI_STR, &j.templates,
         "template file, or a shipped set (cars, dtd, eurosat, gtsrb, mnist, resisc45, "
         "sun397, svhn); default: the set named like the task"},
        {"output", 'o', CLI_STR, &j.out, "heads file to write (required)"},
        {"help", 'h', CLI_FLAG, &help, "show this help"},
        {NULL, 0, 0, NULL, NULL}};
    const char *pos[1];
    int npos = 0;
    TdStatus s = cli_parse("zeroshot", argc, argv, opts, pos, 0, &npos);
    if (s == TD_OK && help) {
        if (g_rt.rank == 0) {
            cli_usage("tadist zeroshot --model M.h5 --vocab vocab.json --merges merges.txt "
                      "(--task T.h5... | --classes a,b,c [--name N]) [--templates NAME|FILE] "
                      "-o HEADS.h5",
                      opts);
            fflush(stdout);
        }
        return runtime_agree(g_rt.comm, TD_OK);
    }
    if (!j.name)
        j.name = "task";
    if (s == TD_OK && (!j.model || !j.vocab || !j.merges || !j.out))
        s = td_fail(TD_ERR_ARG, "zeroshot: --model, --vocab, --merges and -o are required");
    if (s == TD_OK && !j.classes && j.tasks.count == 0)
        s = td_fail(TD_ERR_ARG, "zeroshot: give --task T.h5 or --classes a,b,c");
    if (s == TD_OK && g_rt.rank == 0)
        s = zs_run(&j);
    return runtime_agree(g_rt.comm, s);
}
