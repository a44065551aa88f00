/* clip_tokenizer: see clip_tokenizer.h. */
#include "clip_tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"
#include "unicode_tables.h"

/* Hugging Face keeps merges [1, 49152 - 256 - 2 + 1) of merges.txt. */
enum { CLIP_MAX_MERGES = 49152 - 256 - 2 };

/* ---- Unicode look-ups over the generated tables ------------------------ */

int uni_class(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return UNI_CONTROL;
    int lo = 0, hi = k_uni_nruns - 1; /* last run starting at or before cp */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (k_uni_runs[mid].start <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return k_uni_runs[lo].cls;
}

uint32_t uni_lower(uint32_t cp)
{
    int lo = 0, hi = k_uni_nlower - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (k_uni_lower[mid].cp == cp)
            return k_uni_lower[mid].lower;
        if (k_uni_lower[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return cp;
}

/* BasicTokenizer._is_chinese_char: these get spaces around them. */
static int is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* ---- string -> int map (open addressing, FNV-1a) ------------------------ */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static TdStatus map_init(ClipStrMap *m, size_t expected)
{
    size_t cap = 64;
    while (cap < 2 * expected + 1)
        cap *= 2;
    m->cap = cap;
    m->count = 0;
    TD_ALLOC(m->keys, cap);
    TD_ALLOC(m->vals, cap);
    return TD_OK;
}

static void map_free(ClipStrMap *m)
{
    for (size_t i = 0; m->keys && i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t map_slot(const ClipStrMap *m, const char *key)
{
    size_t i = (size_t)hash_str(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* Inserts or overwrites (a later duplicate wins, as in a Python dict). The
 * table never grows: map_init sized it for every key. */
static TdStatus map_put(ClipStrMap *m, const char *key, int val)
{
    size_t i = map_slot(m, key);
    if (!m->keys[i]) {
        if (2 * (m->count + 1) > m->cap)
            return td_fail(TD_ERR_INTERNAL, "tokenizer map over capacity");
        m->keys[i] = strdup(key);
        if (!m->keys[i])
            return td_fail(TD_ERR_NOMEM, "out of memory for the tokenizer");
        m->count++;
    }
    m->vals[i] = val;
    return TD_OK;
}

static int map_get(const ClipStrMap *m, const char *key, int def)
{
    size_t i = map_slot(m, key);
    return m->keys[i] ? m->vals[i] : def;
}

/* ---- loading ------------------------------------------------------------ */

static TdStatus slurp(const char *path, char **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return td_fail(TD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long size = fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (size < 0 || size > (1L << 30) || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        return td_fail(TD_ERR_IO, "%s: cannot size the file (or over 1 GiB)", path);
    }
    char *buf = malloc((size_t)size + 1);
    size_t got = buf ? fread(buf, 1, (size_t)size, fp) : 0;
    fclose(fp);
    if (!buf)
        return td_fail(TD_ERR_NOMEM, "%s: out of memory", path);
    if (got != (size_t)size) {
        free(buf);
        return td_fail(TD_ERR_IO, "%s: read error", path);
    }
    buf[size] = '\0';
    *out = buf;
    if (len)
        *len = (size_t)size;
    return TD_OK;
}

static TdStatus load_vocab(ClipTokenizer *tok, const char *path)
{
    char *text;
    TD_TRY(slurp(path, &text, NULL));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return td_fail(TD_ERR_FORMAT, "%s: not a JSON object of token -> id", path);
    }
    TdStatus s = map_init(&tok->vocab, (size_t)cJSON_GetArraySize(root));
    tok->max_id = -1;
    for (const cJSON *e = root->child; s == TD_OK && e; e = e->next) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
        if (!(d >= 0.0 && d < 1e8) || d != (double)(int)d)
            s = td_fail(TD_ERR_FORMAT, "%s: token '%.40s' has no non-negative integer id", path,
                        e->string);
        else
            s = map_put(&tok->vocab, e->string, (int)d);
        if (s == TD_OK && (int)d > tok->max_id)
            tok->max_id = (int)d;
    }
    cJSON_Delete(root);
    TD_TRY(s);
    tok->start_id = map_get(&tok->vocab, "<|startoftext|>", -1);
    tok->end_id = map_get(&tok->vocab, "<|endoftext|>", -1);
    if (tok->start_id < 0 || tok->end_id < 0)
        return td_fail(TD_ERR_FORMAT, "%s: no '<|startoftext|>' or '<|endoftext|>' token", path);
    tok->pad_id = tok->end_id;
    return TD_OK;
}

/* merges.strip().split("\n")[1 : CLIP_MAX_MERGES + 1], each split on whitespace. */
static TdStatus load_merges(ClipTokenizer *tok, const char *path)
{
    char *text;
    size_t len;
    TD_TRY(slurp(path, &text, &len));
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    TdStatus s = map_init(&tok->ranks, lines < CLIP_MAX_MERGES ? lines : CLIP_MAX_MERGES);
    char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\v' || *p == '\f')
        p++;
    int line = 0, pairs = 0, skipped = 0, first_skipped = 0;
    char key[1024];
    while (s == TD_OK && *p && line <= CLIP_MAX_MERGES) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        if (line > 0) {
            char *save = NULL, *a = strtok_r(p, " \t\r\v\f", &save);
            char *b = a ? strtok_r(NULL, " \t\r\v\f", &save) : NULL;
            char *c = b ? strtok_r(NULL, " \t\r\v\f", &save) : NULL;
            /* A line that is not two symbols can never match a pair: skip it. */
            if (a && b && !c) {
                int n = snprintf(key, sizeof key, "%s %s", a, b);
                if (n < 0 || (size_t)n >= sizeof key)
                    s = td_fail(TD_ERR_FORMAT, "%s: line %d: merge too long", path, line + 1);
                else
                    s = map_put(&tok->ranks, key, line - 1);
                pairs++;
            } else if (a && !skipped++) { /* blank lines are harmless */
                first_skipped = line + 1;
            }
        }
        line++;
        p = nl ? nl + 1 : p + strlen(p);
    }
    free(text);
    tok->merges = pairs;
    if (s == TD_OK && skipped)
        td_log("warning: %s: %d line(s) are not two symbols and were skipped (the first is "
               "line %d): a cut or edited file?",
               path, skipped, first_skipped);
    return s;
}

/* Hugging Face accepts an empty or cut merges.txt and tokenizes into more,
 * rarer tokens without a word. A CLIP vocabulary holds the 256 byte symbols,
 * each also with </w>, one token per merge and the two special tokens: a
 * vocabulary with more merged tokens than merges.txt has merges says that
 * the file was cut. */
static void warn_merges(const ClipTokenizer *tok, const char *vocab_path, const char *path)
{
    long merged = (long)tok->vocab.count - 2 * 256 - 2;
    if (tok->merges == 0)
        td_log("warning: %s holds no merges: every word is split into single characters "
               "(Hugging Face accepts this; CLIP's file has %d)",
               path, CLIP_MAX_MERGES);
    else if (merged > tok->merges)
        td_log("warning: %s holds %d merges, but %s has %ld merged tokens: merges.txt looks "
               "truncated (Hugging Face accepts it; words split into more, rarer tokens)",
               path, tok->merges, vocab_path, merged);
}

TdStatus clip_tokenizer_load(ClipTokenizer *tok, const char *vocab_path, const char *merges_path)
{
    memset(tok, 0, sizeof *tok);
    TdStatus s = load_vocab(tok, vocab_path);
    if (s == TD_OK)
        s = load_merges(tok, merges_path);
    if (s == TD_OK)
        warn_merges(tok, vocab_path, merges_path);
    if (s != TD_OK)
        clip_tokenizer_free(tok);
    return s;
}

void clip_tokenizer_free(ClipTokenizer *tok)
{
    map_free(&tok->vocab);
    map_free(&tok->ranks);
}

/* ---- text -> code points, cleaned and lower-cased ---------------------- */

/* Decodes one UTF-8 sequence at s; returns its length, 0 when invalid. */
static int utf8_decode(const unsigned char *s, uint32_t *cp)
{
    int n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3
                            : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0)
        return 0;
    uint32_t c = n == 1 ? s[0] : s[0] & (0x7F >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    static const uint32_t k_min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < k_min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return n;
}

static int utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* BasicTokenizer(do_lower_case, strip_accents=False, do_split_on_punc=False):
 * control characters, NUL and U+FFFD deleted, whitespace -> ' ', CJK
 * ideographs spaced apart, then str.lower(). cps needs 2 * strlen(text) + 1. */
static TdStatus clean_text(const char *text, uint32_t *cps, size_t *n)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t k = 0;
    while (*s) {
        uint32_t cp;
        int len = utf8_decode(s, &cp);
        if (len == 0)
            return td_fail(TD_ERR_ARG, "text '%.60s' is not valid UTF-8 (byte %zu)", text,
                           (size_t)(s - (const unsigned char *)text));
        s += len;
        int cls = uni_class(cp);
        if (cp == 0xFFFD || cls == UNI_CONTROL)
            continue;
        if (cls == UNI_SPACE) {
            cps[k++] = ' ';
        } else if (is_cjk(cp)) {
            cps[k++] = ' ';
            cps[k++] = cp;
            cps[k++] = ' ';
        } else if (cp == 0x03A3) {
            cps[k++] = cp; /* resolved below, where its neighbours are known */
        } else if (cp == 0x0130) { /* 'İ'.lower() is 'i' + combining dot above */
            cps[k++] = 'i';
            cps[k++] = 0x0307;
        } else {
            cps[k++] = uni_lower(cp);
        }
    }
    /* Capital sigma (kept above) lower-cases to final sigma at a word's end. */
    for (size_t i = 0; i < k; i++)
        if (cps[i] == 0x03A3) {
            int after_letter = i > 0 && uni_class(cps[i - 1]) == UNI_LETTER;
            int before_letter = i + 1 < k && uni_class(cps[i + 1]) == UNI_LETTER;
            cps[i] = after_letter && !before_letter ? 0x03C2 : 0x03C3;
        }
    *n = k;
    return TD_OK;
}

/* ---- BPE ------------------------------------------------------------- */

typedef struct {
    int *ids;
    int n, cap;
} IdVec;

static TdStatus ids_push(IdVec *v, int id)
{
    if (v->n == v->cap) {
        int cap = v->cap ? 2 * v->cap : 64;
        int *p = realloc(v->ids, (size_t)cap * sizeof *p);
        if (!p)
            return td_fail(TD_ERR_NOMEM, "out of memory tokenizing");
        v->ids = p;
        v->cap = cap;
    }
    v->ids[v->n++] = id;
    return TD_OK;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to 256 + n. */
static uint32_t byte_symbol(unsigned char b)
{
    static uint32_t table[256];
    static int ready = 0;
    if (!ready) {
        int n = 0;
        for (int c = 0; c < 256; c++) {
            int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE);
            table[c] = printable ? (uint32_t)c : (uint32_t)(256 + n++);
        }
        ready = 1;
    }
    return table[b];
}

/* BPE of one pre-token (its UTF-8 bytes), ids appended to out. Symbols are
 * kept as strings in one buffer per symbol, merged by lowest rank first,
 * every non-overlapping occurrence left to right, as Hugging Face does. */
static TdStatus bpe_word(const ClipTokenizer *tok, const char *bytes, size_t nb, IdVec *out)
{
    char **sym = calloc(nb, sizeof *sym);
    char *key = malloc(8 * nb + 16);
    TdStatus s = sym && key ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory tokenizing");
    int n = 0;
    for (size_t i = 0; s == TD_OK && i < nb; i++) {
        sym[n] = malloc(4 * nb + 8);
        if (!sym[n]) {
            s = td_fail(TD_ERR_NOMEM, "out of memory tokenizing");
            break;
        }
        int len = utf8_encode(byte_symbol((unsigned char)bytes[i]), sym[n]);
        sym[n++][len] = '\0';
    }
    if (s == TD_OK && n > 0)
        strcat(sym[n - 1], "</w>");
    while (s == TD_OK && n > 1) {
        int best = -1, best_rank = 0;
        for (int i = 0; i + 1 < n; i++) {
            sprintf(key, "%s %s", sym[i], sym[i + 1]);
            int r = map_get(&tok->ranks, key, -1);
            if (r >= 0 && (best < 0 || r < best_rank)) {
                best = i;
                best_rank = r;
            }
        }
        if (best < 0)
            break;
        char *first = strdup(sym[best]), *second = strdup(sym[best + 1]);
        if (!first || !second) {
            free(first);
            free(second);
            s = td_fail(TD_ERR_NOMEM, "out of memory tokenizing");
            break;
        }
        int m = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && strcmp(sym[i], first) == 0 && strcmp(sym[i + 1], second) == 0) {
                strcat(sym[i], sym[i + 1]);
                char *t = sym[m];
                sym[m] = sym[i];
                sym[i] = t;
                free(sym[i + 1]);
                sym[i + 1] = NULL;
                i += 2;
            } else {
                char *t = sym[m];
                sym[m] = sym[i];
                sym[i] = t;
                i++;
            }
            m++;
        }
        for (int i = m; i < n; i++) {
            free(sym[i]);
            sym[i] = NULL;
        }
        n = m;
        free(first);
        free(second);
    }
    for (int i = 0; i < n && s == TD_OK; i++)
        s = ids_push(out, map_get(&tok->vocab, sym[i], tok->end_id));
    for (size_t i = 0; sym && i < nb; i++)
        free(sym[i]);
    free(sym);
    free(key);
    return s;
}

/* Emits the pre-token cps[b, e) through BPE. */
static TdStatus emit(const ClipTokenizer *tok, const uint32_t *cps, size_t b, size_t e,
                     char *bytes, IdVec *out)
{
    size_t nb = 0;
    for (size_t i = b; i < e; i++)
        nb += (size_t)utf8_encode(cps[i], bytes + nb);
    return bpe_word(tok, bytes, nb, out);
}

static int match_ascii(const uint32_t *cps, size_t i, size_t n, const char *lit)
{
    size_t k = 0;
    for (; lit[k]; k++)
        if (i + k >= n || cps[i + k] != (uint32_t)(unsigned char)lit[k])
            return 0;
    return (int)k;
}

/* Length of the regex match at cps[i] ('<|startoftext|>', contractions,
 * \p{L}+, \p{N}, [^\s\p{L}\p{N}]+, in that order of preference); *special
 * gets the id of a special token matched, -1 otherwise. 0: a space. */
static size_t pretoken(const ClipTokenizer *tok, const uint32_t *cps, size_t i, size_t n,
                       int *special)
{
    static const char *const k_contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
    *special = -1;
    int len;
    if ((len = match_ascii(cps, i, n, "<|startoftext|>")) > 0) {
        *special = tok->start_id;
        return (size_t)len;
    }
    if ((len = match_ascii(cps, i, n, "<|endoftext|>")) > 0) {
        *special = tok->end_id;
        return (size_t)len;
    }
    for (size_t c = 0; c < sizeof k_contractions / sizeof *k_contractions; c++)
        if ((len = match_ascii(cps, i, n, k_contractions[c])) > 0)
            return (size_t)len;
    int cls = uni_class(cps[i]);
    if (cls == UNI_SPACE)
        return 0;
    if (cls == UNI_NUMBER)
        return 1;
    size_t e = i + 1;
    if (cls == UNI_LETTER) {
        while (e < n && uni_class(cps[e]) == UNI_LETTER)
            e++;
    } else {
        while (e < n && uni_class(cps[e]) != UNI_LETTER && uni_class(cps[e]) != UNI_NUMBER &&
               uni_class(cps[e]) != UNI_SPACE)
            e++;
    }
    return e - i;
}

TdStatus clip_tokenize(const ClipTokenizer *tok, const char *text, int **ids, int *n)
{
    size_t tl = strlen(text);
    uint32_t *cps = malloc((3 * tl + 1) * sizeof *cps);
    char *bytes = malloc(4 * tl + 8);
    IdVec out = {0};
    TdStatus s = cps && bytes ? TD_OK : td_fail(TD_ERR_NOMEM, "out of memory tokenizing");
    size_t nc = 0;
    if (s == TD_OK)
        s = clean_text(text, cps, &nc);
    if (s == TD_OK)
        s = ids_push(&out, tok->start_id);
    for (size_t i = 0; s == TD_OK && i < nc;) {
        int special;
        size_t len = pretoken(tok, cps, i, nc, &special);
        if (len == 0) {
            i++;
            continue;
        }
        s = special >= 0 ? ids_push(&out, special) : emit(tok, cps, i, i + len, bytes, &out);
        i += len;
    }
    if (s == TD_OK)
        s = ids_push(&out, tok->end_id);
    free(cps);
    free(bytes);
    if (s != TD_OK) {
        free(out.ids);
        return s;
    }
    *ids = out.ids;
    *n = out.n;
    return TD_OK;
}

TdStatus clip_tokenize_ctx(const ClipTokenizer *tok, const char *text, int ctx, int *ids)
{
    if (ctx < 2)
        return td_fail(TD_ERR_ARG, "context length %d: must be at least 2", ctx);
    int *all, n;
    TD_TRY(clip_tokenize(tok, text, &all, &n));
    int keep = n < ctx ? n : ctx;
    memcpy(ids, all, (size_t)keep * sizeof *ids);
    ids[keep - 1] = tok->end_id;
    for (int i = keep; i < ctx; i++)
        ids[i] = tok->pad_id;
    free(all);
    return TD_OK;
}
