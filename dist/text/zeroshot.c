/* zeroshot: see zeroshot.h (the command is commands/cmd_zeroshot.c). */
#include "zeroshot.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5util.h"
#include "model_io.h"
#include "runtime.h"
#include "task_io.h"

/* ---- templates ------------------------------------------------------------ */

void zeroshot_templates_free(ZsTemplates *t)
{
    for (int i = 0; i < t->count; i++)
        free(t->items[i]);
    free(t->items);
    memset(t, 0, sizeof *t);
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Resolves a template set's name to a file; buf gets the path. */
static int find_named(const char *name, char *buf, size_t cap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    const char *env = getenv("TADIST_TEMPLATES");
    const char *dirs[4][2] = {{env, ""},
                              {exe, "/../config/templates"},
                              {exe, "/../share/tadist/templates"},
                              {"config/templates", ""}};
    for (int i = 0; i < 4; i++) {
        if (!dirs[i][0] || !dirs[i][0][0])
            continue;
        snprintf(buf, cap, "%s%s/%s.txt", dirs[i][0], dirs[i][1], name);
        if (is_file(buf))
            return 1;
    }
    return 0;
}

TdStatus zeroshot_templates_load(const char *name_or_path, ZsTemplates *t)
{
    memset(t, 0, sizeof *t);
    char path[PATH_MAX + 64];
    if (is_file(name_or_path))
        snprintf(path, sizeof path, "%s", name_or_path);
    else if (strchr(name_or_path, '/') || !find_named(name_or_path, path, sizeof path))
        return td_fail(TD_ERR_ARG,
                       "templates '%s': no such file, nor a shipped set (config/templates/"
                       "NAME.txt; set TADIST_TEMPLATES to their folder)",
                       name_or_path);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0;
    TdStatus s = TD_OK;
    while (s == TD_OK && fgets(line, sizeof line, fp)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        const char *hole = strstr(line, "{}");
        if (!hole || strstr(hole + 2, "{}"))
            s = td_fail(TD_ERR_FORMAT, "%s:%d: a template needs exactly one {}", path, lineno);
        char **items = s == TD_OK ? realloc(t->items, (size_t)(t->count + 1) * sizeof *items)
                                  : NULL;
        if (s == TD_OK && !items)
            s = td_fail(TD_ERR_NOMEM, "%s: out of memory", path);
        if (s == TD_OK) {
            t->items = items;
            t->items[t->count] = strdup(line);
            s = t->items[t->count] ? TD_OK : td_fail(TD_ERR_NOMEM, "%s: out of memory", path);
            t->count += s == TD_OK;
        }
    }
    fclose(fp);
    if (s == TD_OK && t->count == 0)
        s = td_fail(TD_ERR_FORMAT, "%s: no templates in it", path);
    if (s != TD_OK)
        zeroshot_templates_free(t);
    return s;
}

char *zeroshot_format(const char *tmpl, const char *cls)
{
    const char *hole = strstr(tmpl, "{}");
    size_t pre = hole ? (size_t)(hole - tmpl) : strlen(tmpl);
    const char *post = hole ? hole + 2 : "";
    size_t n = pre + strlen(cls) + strlen(post) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s%s", (int)pre, tmpl, hole ? cls : "", post);
    return out;
}

/* ---- heads ---------------------------------------------------------------- */

static void normalise(float *x, int n)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float inv = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}

TdStatus zeroshot_heads(const TextModel *m, const ClipTokenizer *tok, const char *const *classes,
                        int C, const ZsTemplates *templates, float *heads)
{
    const int K = templates->count, T = m->arch.ctx, E = m->arch.out_dim;
    if (tok->max_id >= m->arch.vocab)
        return td_fail(TD_ERR_ARG,
                       "the tokenizer's vocabulary has ids up to %d, the text tower only %d",
                       tok->max_id, m->arch.vocab);
    TextWork w;
    TD_TRY(text_work_alloc(&w, &m->arch, &m->table, K));
    int *ids = malloc((size_t)K * T * sizeof *ids);
    float *emb = malloc((size_t)K * E * sizeof *emb);
    TdStatus s = ids && emb ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory for zero-shot heads");
    for (int c = 0; s == TD_OK && c < C; c++) {
        for (int k = 0; s == TD_OK && k < K; k++) {
            char *prompt = zeroshot_format(templates->items[k], classes[c]);
            s = prompt ? clip_tokenize_ctx(tok, prompt, T, ids + (size_t)k * T)
                       : td_fail(TD_ERR_NOMEM, "out of memory for a prompt");
            free(prompt);
        }
        if (s == TD_OK)
            s = text_forward(m->params, &w, ids, K, T, emb);
        float *h = heads + (size_t)c * E;
        memset(h, 0, (size_t)E * sizeof *h);
        for (int k = 0; s == TD_OK && k < K; k++) {
            normalise(emb + (size_t)k * E, E);
            for (int e = 0; e < E; e++)
                h[e] += emb[(size_t)k * E + e] / (float)K;
        }
        normalise(h, E);
    }
    free(ids);
    free(emb);
    text_work_free(&w);
    return s;
}
