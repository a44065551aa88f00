/* The CLIP text tower (kernels/text, dist/text_io, `tadist import --text`),
 * the CLIP tokenizer (dist/clip_tokenizer) and zero-shot heads (dist/zeroshot,
 * `tadist zeroshot`).
 *
 * References nobody here wrote: clip_bpe_small/reference.json (Hugging Face's
 * CLIPTokenizer and CLIPTokenizerFast ids) and the text_embeds of the CLIP
 * fixtures' ref.h5 (transformers in float64). The zero-shot heads are checked
 * against a computation done here from the text tower's outputs on token ids
 * written out by hand, so neither the tokenizer nor the averaging code of
 * zeroshot.c checks itself. */
#include <hdf5.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "clip_tokenizer.h"
#include "task_io.h"
#include "text.h"
#include "text_io.h"

/* ---- helpers ------------------------------------------------------------ */

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    assert_int_equal(fread(b, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    b[len] = 0;
    return b;
}

static void spit(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Runs the tadist binary; returns its exit status. */
static int run_tadist(const char *args)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "TADIST_QUIET=1 '%s' %s", TADIST_BIN, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 256;
}

/* Reads dataset name of an HDF5 file into a malloc'ed buffer of mtype; dims out. */
static void *h5_read(const char *path, const char *name, hid_t mtype, size_t esize,
                     hsize_t dims[2])
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t sp = H5Dget_space(d);
    assert_int_equal(H5Sget_simple_extent_ndims(sp), 2);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    void *buf = malloc(dims[0] * dims[1] * esize);
    assert_true(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return buf;
}

/* ---- tokenizer against Hugging Face ------------------------------------ */

static int compare_ids(const char *what, int i, const cJSON *want, const int *got, int n)
{
    int bad = cJSON_GetArraySize(want) != n;
    for (int k = 0; !bad && k < n; k++)
        bad = cJSON_GetArrayItem(want, k)->valueint != got[k];
    if (bad) {
        printf("FAIL %s text %d: got %d ids [", what, i, n);
        for (int k = 0; k < n; k++)
            printf(k ? " %d" : "%d", got[k]);
        printf("]\n");
    }
    return bad;
}

static void test_tokenizer_reference(void **state)
{
    (void)state;
    ClipTokenizer tok;
    assert_int_equal(clip_tokenizer_load(&tok, TADIST_FIXTURES "/clip_bpe_small/vocab.json",
                                         TADIST_FIXTURES "/clip_bpe_small/merges.txt"),
                     TD_OK);
    char *text = slurp(TADIST_FIXTURES "/clip_bpe_small/reference.json");
    cJSON *ref = cJSON_Parse(text);
    free(text);
    assert_non_null(ref);
    const cJSON *texts = cJSON_GetObjectItem(ref, "texts");
    int n = cJSON_GetArraySize(texts), failures = 0, checks = 0;
    assert_true(n >= 16);
    static const char *const impls[2] = {"slow", "fast"};
    for (int i = 0; i < n; i++) {
        const char *t = cJSON_GetArrayItem(texts, i)->valuestring;
        int *ids, nid, padded[77];
        assert_int_equal(clip_tokenize(&tok, t, &ids, &nid), TD_OK);
        assert_int_equal(clip_tokenize_ctx(&tok, t, 77, padded), TD_OK);
        for (int m = 0; m < 2; m++) {
            const cJSON *impl = cJSON_GetObjectItem(ref, impls[m]);
            failures += compare_ids(impls[m], i, cJSON_GetArrayItem(cJSON_GetObjectItem(impl, "ids"), i),
                                    ids, nid);
            failures += compare_ids("padded77", i,
                                    cJSON_GetArrayItem(cJSON_GetObjectItem(impl, "padded77"), i),
                                    padded, 77);
            checks += 2;
        }
        free(ids);
    }
    printf("tokenizer: %d of %d id sequences differ from Hugging Face's\n", failures, checks);
    cJSON_Delete(ref);
    clip_tokenizer_free(&tok);
    assert_int_equal(failures, 0);
}

/* Invalid UTF-8 is an error, not a guess. */
static void test_tokenizer_rejects_bad_utf8(void **state)
{
    (void)state;
    ClipTokenizer tok;
    assert_int_equal(clip_tokenizer_load(&tok, TADIST_FIXTURES "/clip_bpe_small/vocab.json",
                                         TADIST_FIXTURES "/clip_bpe_small/merges.txt"),
                     TD_OK);
    int *ids, n;
    assert_int_equal(clip_tokenize(&tok, "caf\xc3 x", &ids, &n), TD_ERR_ARG);
    td_error_clear();
    clip_tokenizer_free(&tok);
}

/* Loads the fixture's vocab.json with merges.txt text `merges`; returns what
 * the load printed on stdout (td_log: warnings), malloc'ed. */
static char *load_printing(const char *merges)
{
    char mpath[1024], out[1024];
    snprintf(mpath, sizeof mpath, "%s/tok_merges.txt", TADIST_TEST_OUT);
    snprintf(out, sizeof out, "%s/tok_merges.out", TADIST_TEST_OUT);
    FILE *f = fopen(mpath, "wb");
    assert_non_null(f);
    fputs(merges, f);
    fclose(f);
    fflush(stdout);
    int saved = dup(1), fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    assert_int_equal(dup2(fd, 1), 1);
    close(fd);
    ClipTokenizer tok;
    TdStatus s = clip_tokenizer_load(&tok, TADIST_FIXTURES "/clip_bpe_small/vocab.json", mpath);
    fflush(stdout);
    assert_int_equal(dup2(saved, 1), 1);
    close(saved);
    assert_int_equal(s, TD_OK); /* accepted, as Hugging Face accepts it */
    clip_tokenizer_free(&tok);
    char *said = slurp(out);
    printf("  merges.txt of %zu bytes: %s", strlen(merges), *said ? said : "(nothing)\n");
    return said;
}

/* An empty or cut merges.txt loads (Hugging Face loads it too) but warns,
 * naming the file; the whole file does not. */
static void test_tokenizer_warns_short_merges(void **state)
{
    (void)state;
    char *full = slurp(TADIST_FIXTURES "/clip_bpe_small/merges.txt");
    char *said = load_printing(full);
    assert_null(strstr(said, "warning"));
    free(said);

    said = load_printing("#version: 0.2\n");
    assert_non_null(strstr(said, "warning: "));
    assert_non_null(strstr(said, "tok_merges.txt holds no merges"));
    free(said);
    said = load_printing("");
    assert_non_null(strstr(said, "tok_merges.txt holds no merges"));
    free(said);

    /* cut after 200 of its 400 merges, at a line end */
    char *p = full;
    for (int line = 0; line < 201; line++)
        p = strchr(p, '\n') + 1;
    char keep = *p;
    *p = '\0';
    said = load_printing(full);
    assert_non_null(strstr(said, "tok_merges.txt holds 200 merges, but"));
    assert_non_null(strstr(said, "vocab.json has 400 merged tokens"));
    assert_non_null(strstr(said, "truncated"));
    free(said);
    /* cut inside a line: also "not two symbols" */
    *p = keep;
    char *sp = strchr(p, ' ');
    *sp = '\0';
    said = load_printing(full);
    assert_non_null(strstr(said, "1 line(s) are not two symbols and were skipped (the first is "
                                 "line 202)"));
    assert_non_null(strstr(said, "holds 200 merges"));
    free(said);
    free(full);
}

/* ---- text tower against transformers --------------------------------------- */

/* max|a-b| / max|b| of the text tower on ref.h5's ids, through MODEL.h5's /text. */
static double embeds_error(const TextModel *m, const char *ref_path)
{
    hsize_t di[2], de[2];
    int *ids = h5_read(ref_path, "text_input_ids", H5T_NATIVE_INT, sizeof(int), di);
    float *want = h5_read(ref_path, "text_embeds", H5T_NATIVE_FLOAT, sizeof(float), de);
    assert_int_equal(de[0], di[0]);
    assert_int_equal(de[1], (hsize_t)m->arch.out_dim);
    TextWork w;
    assert_int_equal(text_work_alloc(&w, &m->arch, &m->table, (int)di[0]), TD_OK);
    float *got = calloc(de[0] * de[1], sizeof *got);
    assert_int_equal(text_forward(m->params, &w, ids, (int)di[0], (int)di[1], got), TD_OK);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < de[0] * de[1]; i++) {
        num = fmax(num, fabs((double)got[i] - want[i]));
        den = fmax(den, fabs((double)want[i]));
    }
    text_work_free(&w);
    free(got);
    free(ids);
    free(want);
    return num / den;
}

static void check_fixture(const char *fx)
{
    char model[1024], args[4096], ref[1024];
    snprintf(model, sizeof model, "%s/text_%s.h5", TADIST_TEST_OUT, fx);
    snprintf(ref, sizeof ref, "%s/%s/ref.h5", TADIST_FIXTURES, fx);
    snprintf(args, sizeof args, "import --text '%s/%s' -o '%s'", TADIST_FIXTURES, fx, model);
    assert_int_equal(run_tadist(args), 0);
    TextModel m;
    assert_int_equal(text_model_read(model, &m), TD_OK);
    double err = embeds_error(&m, ref);
    printf("%s text_embeds: max|a-b|/max|b| = %.3e (tolerance 1e-4)\n", fx, err);
    assert_true(err < 1e-4);
    /* The comparison can fail: pooling at another token is far off. */
    m.arch.eos_id = 0;
    double wrong = embeds_error(&m, ref);
    printf("%s text_embeds pooled at the wrong token: %.3e\n", fx, wrong);
    assert_true(wrong > 1e-2);
    text_model_free(&m);
}

static void test_text_embeds_tiny_a(void **state)
{
    (void)state;
    check_fixture("clip_tiny_a");
}

static void test_text_embeds_tiny_b(void **state)
{
    (void)state;
    check_fixture("clip_tiny_b");
}

/* Without --text the model file has no text tower, and reading one says how to get it. */
static void test_import_without_text(void **state)
{
    (void)state;
    char model[1024], args[4096];
    snprintf(model, sizeof model, "%s/text_none.h5", TADIST_TEST_OUT);
    snprintf(args, sizeof args, "import '%s/clip_tiny_a' -o '%s'", TADIST_FIXTURES, model);
    assert_int_equal(run_tadist(args), 0);
    TextModel m;
    assert_int_equal(text_model_read(model, &m), TD_ERR_FORMAT);
    assert_non_null(strstr(td_error_message(), "import --text"));
    td_error_clear();
}

/* ---- zero-shot heads --------------------------------------------------------- */

/* A vocabulary small enough for clip_tiny_a's 100 ids (clip_bpe_small has 914),
 * with its start/end ids 98/99 = the model's bos/eos. */
static const char *const k_vocab[] = {
    "a", "c", "d", "f", "g", "h", "o", "p", "r", "t", ".",
    "a</w>", "t</w>", "g</w>", "r</w>", "o</w>", "f</w>", ".</w>",
    "of</w>", "ph", "pho", "phot", "photo</w>", "ca", "cat</w>", "do", "dog</w>", "car</w>"};
static const char k_merges[] = "#version: 0.2\no f</w>\np h\nph o\npho t\nphot o</w>\nc a\n"
                               "ca t</w>\nd o\ndo g</w>\nca r</w>\n";
enum { N_CLASSES = 4, N_TEMPLATES = 2, MAX_TOK = 8 };
static const char *const k_classes[N_CLASSES] = {"cat", "dog", "car", "hat"};
static const char *const k_templates = "a photo of a {}.\n# a comment\n\na {} photo.\n";
/* Hand-tokenised prompts: [class][template], tokens as vocabulary strings. */
static const char *const k_prompts[N_CLASSES][N_TEMPLATES][MAX_TOK] = {
    {{"a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>", ".</w>"},
     {"a</w>", "cat</w>", "photo</w>", ".</w>"}},
    {{"a</w>", "photo</w>", "of</w>", "a</w>", "dog</w>", ".</w>"},
     {"a</w>", "dog</w>", "photo</w>", ".</w>"}},
    {{"a</w>", "photo</w>", "of</w>", "a</w>", "car</w>", ".</w>"},
     {"a</w>", "car</w>", "photo</w>", ".</w>"}},
    {{"a</w>", "photo</w>", "of</w>", "a</w>", "h", "a", "t</w>", ".</w>"},
     {"a</w>", "h", "a", "t</w>", "photo</w>", ".</w>"}}};

static int vocab_id(const char *tok)
{
    for (size_t i = 0; i < sizeof k_vocab / sizeof *k_vocab; i++)
        if (strcmp(k_vocab[i], tok) == 0)
            return (int)i;
    fail_msg("no token '%s'", tok);
    return -1;
}

static void write_vocab(const char *path)
{
    char buf[4096];
    int n = snprintf(buf, sizeof buf, "{");
    for (size_t i = 0; i < sizeof k_vocab / sizeof *k_vocab; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "\"%s\": %zu, ", k_vocab[i], i);
    snprintf(buf + n, sizeof buf - (size_t)n, "\"<|startoftext|>\": 98, \"<|endoftext|>\": 99}");
    spit(path, buf);
}

static void test_zeroshot_heads(void **state)
{
    (void)state;
    char vocab[1024], merges[1024], tpl[1024], model[1024], heads[1024], args[8192];
    snprintf(vocab, sizeof vocab, "%s/zs_vocab.json", TADIST_TEST_OUT);
    snprintf(merges, sizeof merges, "%s/zs_merges.txt", TADIST_TEST_OUT);
    snprintf(tpl, sizeof tpl, "%s/zs_templates.txt", TADIST_TEST_OUT);
    snprintf(model, sizeof model, "%s/zs_tiny_a.h5", TADIST_TEST_OUT);
    snprintf(heads, sizeof heads, "%s/zs_heads.h5", TADIST_TEST_OUT);
    write_vocab(vocab);
    spit(merges, k_merges);
    spit(tpl, k_templates);
    snprintf(args, sizeof args, "import --text '%s/clip_tiny_a' -o '%s'", TADIST_FIXTURES, model);
    assert_int_equal(run_tadist(args), 0);
    snprintf(args, sizeof args,
             "zeroshot --model '%s' --vocab '%s' --merges '%s' --classes cat,dog,car,hat "
             "--name pets --templates '%s' -o '%s'",
             model, vocab, merges, tpl, heads);
    assert_int_equal(run_tadist(args), 0);

    TextModel m;
    assert_int_equal(text_model_read(model, &m), TD_OK);
    const int T = m.arch.ctx, E = m.arch.out_dim;
    ClipTokenizer tok;
    assert_int_equal(clip_tokenizer_load(&tok, vocab, merges), TD_OK);
    TextWork w;
    assert_int_equal(text_work_alloc(&w, &m.arch, &m.table, 1), TD_OK);
    double want[N_CLASSES][64] = {{0}};
    assert_true(E <= 64);
    int tok_bad = 0;
    for (int c = 0; c < N_CLASSES; c++) {
        for (int t = 0; t < N_TEMPLATES; t++) {
            int ids[64], k = 0;
            ids[k++] = 98;
            for (int j = 0; j < MAX_TOK && k_prompts[c][t][j]; j++)
                ids[k++] = vocab_id(k_prompts[c][t][j]);
            ids[k++] = 99;
            while (k < T)
                ids[k++] = 99;
            /* the tokenizer must produce the hand-written ids */
            char prompt[128];
            snprintf(prompt, sizeof prompt, t == 0 ? "a photo of a %s." : "a %s photo.",
                     k_classes[c]);
            int got[64];
            assert_int_equal(clip_tokenize_ctx(&tok, prompt, T, got), TD_OK);
            tok_bad += memcmp(got, ids, (size_t)T * sizeof *ids) != 0;
            float e[64];
            assert_int_equal(text_forward(m.params, &w, ids, 1, T, e), TD_OK);
            double norm = 0.0;
            for (int i = 0; i < E; i++)
                norm += (double)e[i] * e[i];
            for (int i = 0; i < E; i++)
                want[c][i] += e[i] / sqrt(norm) / N_TEMPLATES;
        }
        double norm = 0.0;
        for (int i = 0; i < E; i++)
            norm += want[c][i] * want[c][i];
        for (int i = 0; i < E; i++)
            want[c][i] /= sqrt(norm);
    }
    assert_int_equal(tok_bad, 0);
    hsize_t dims[2];
    float *got = h5_read(heads, "pets", H5T_NATIVE_FLOAT, sizeof(float), dims);
    assert_int_equal(dims[0], N_CLASSES);
    assert_int_equal(dims[1], (hsize_t)E);
    double err = 0.0, spread = 0.0;
    for (int c = 0; c < N_CLASSES; c++)
        for (int i = 0; i < E; i++) {
            err = fmax(err, fabs(got[c * E + i] - want[c][i]));
            spread = fmax(spread, fabs(want[c][i] - want[0][i]));
        }
    printf("zero-shot heads [%d, %d]: max |file - test| = %.3e; classes differ by up to %.3e\n",
           N_CLASSES, E, err, spread);
    assert_true(err < 1e-5);
    assert_true(spread > 1e-2); /* distinct classes give distinct heads */

    /* The pipeline's heads.source = "zeroshot" builds the same heads from the
     * task file's class names: a one-step fine-tuning run writes them. */
    char dir[1024], task[1200], cfg[1200], run_heads[1400];
    snprintf(dir, sizeof dir, "%s/zs_suite", TADIST_TEST_OUT);
    snprintf(task, sizeof task, "%s/pets.h5", dir);
    snprintf(cfg, sizeof cfg, "%s/zs.cfg", dir);
    snprintf(args, sizeof args, "mkdir -p '%s'", dir);
    assert_int_equal(system(args), 0);
    TaskData td;
    assert_int_equal(task_init(&td, "pets", "test", 1, 32, 32, 3, N_CLASSES), TD_OK);
    for (int c = 0; c < N_CLASSES; c++)
        snprintf(td.classes[c], TASK_CLASS_LEN, "%s", k_classes[c]);
    for (int sp = 0; sp < TASK_NSPLITS; sp++) {
        assert_int_equal(task_split_alloc(&td, sp, 8), TD_OK);
        for (int i = 0; i < 8; i++)
            td.split[sp].labels[i] = i % N_CLASSES;
    }
    assert_int_equal(task_write(task, &td), TD_OK);
    task_free(&td);
    snprintf(args, sizeof args,
             "run = { name = \"zs\"; out_dir = \"%s/runs\"; stages = [\"finetune\"]; };\n"
             "model = { path = \"%s\"; };\n"
             "data = { dir = \"%s\"; tasks = [\"pets\"]; };\n"
             "heads = { source = \"zeroshot\"; vocab = \"%s\"; merges = \"%s\"; "
             "templates = \"%s\"; };\n"
             "finetune = { steps = 1; warmup = 0; batch = 4; };\n",
             dir, model, dir, vocab, merges, tpl);
    spit(cfg, args);
    snprintf(args, sizeof args, "'%s'", cfg);
    assert_int_equal(run_tadist(args), 0);
    snprintf(run_heads, sizeof run_heads, "%s/runs/zs/heads.h5", dir);
    float *piped = h5_read(run_heads, "pets", H5T_NATIVE_FLOAT, sizeof(float), dims);
    assert_int_equal(dims[0], N_CLASSES);
    assert_memory_equal(piped, got, (size_t)N_CLASSES * E * sizeof(float));
    free(piped);
    /* heads.templates may name a folder: each task takes its <task>.txt */
    char folder[1100], tfile[1200];
    snprintf(folder, sizeof folder, "%s/tpl_folder", dir);
    snprintf(tfile, sizeof tfile, "%s/pets.txt", folder);
    snprintf(args, sizeof args, "mkdir -p '%s'", folder);
    assert_int_equal(system(args), 0);
    spit(tfile, k_templates);
    snprintf(args, sizeof args,
             "run = { name = \"zs2\"; out_dir = \"%s/runs\"; stages = [\"finetune\"]; };\n"
             "model = { path = \"%s\"; };\n"
             "data = { dir = \"%s\"; tasks = [\"pets\"]; };\n"
             "heads = { source = \"zeroshot\"; vocab = \"%s\"; merges = \"%s\"; "
             "templates = \"%s\"; };\n"
             "finetune = { steps = 1; warmup = 0; batch = 4; };\n",
             dir, model, dir, vocab, merges, folder);
    spit(cfg, args);
    snprintf(args, sizeof args, "'%s'", cfg);
    assert_int_equal(run_tadist(args), 0);
    snprintf(run_heads, sizeof run_heads, "%s/runs/zs2/heads.h5", dir);
    piped = h5_read(run_heads, "pets", H5T_NATIVE_FLOAT, sizeof(float), dims);
    assert_int_equal(dims[0], N_CLASSES);
    assert_memory_equal(piped, got, (size_t)N_CLASSES * E * sizeof(float));
    free(piped);
    free(got);
    text_work_free(&w);
    clip_tokenizer_free(&tok);
    text_model_free(&m);
}

/* A vocabulary bigger than the text tower's is refused, not indexed past the table. */
static void test_zeroshot_vocab_mismatch(void **state)
{
    (void)state;
    char model[1024], heads[1024], args[8192];
    snprintf(model, sizeof model, "%s/zs_tiny_a.h5", TADIST_TEST_OUT);
    snprintf(heads, sizeof heads, "%s/zs_bad.h5", TADIST_TEST_OUT);
    snprintf(args, sizeof args,
             "import --text '%s/clip_tiny_a' -o '%s' && TADIST_QUIET=1 '%s' zeroshot --model '%s' "
             "--vocab '%s/clip_bpe_small/vocab.json' --merges '%s/clip_bpe_small/merges.txt' "
             "--classes a,b --templates mnist -o '%s' 2>&1 | grep -q 'vocabulary has ids up to 913'",
             TADIST_FIXTURES, model, TADIST_BIN, model, TADIST_FIXTURES, TADIST_FIXTURES, heads);
    assert_int_equal(run_tadist(args), 0);
}

int main(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_reference),
        cmocka_unit_test(test_tokenizer_rejects_bad_utf8),
        cmocka_unit_test(test_tokenizer_warns_short_merges),
        cmocka_unit_test(test_text_embeds_tiny_a),
        cmocka_unit_test(test_text_embeds_tiny_b),
        cmocka_unit_test(test_import_without_text),
        cmocka_unit_test(test_zeroshot_heads),
        cmocka_unit_test(test_zeroshot_vocab_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
