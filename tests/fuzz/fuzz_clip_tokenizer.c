/* Fuzz harness: the CLIP tokenizer's vocab.json and merges.txt, and text.
 * Input: VOCAB_JSON FUZZ_SEP MERGES_TXT [FUZZ_SEP TEXT]. clip_tokenizer_load,
 * then clip_tokenize and clip_tokenize_ctx (context 8 and 77) of TEXT (a
 * fixed sentence when absent). A single part is used as TEXT with a vocabulary
 * of the two special tokens and "a</w>". */
#include "fuzz_common.h"

#include "clip_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzParts parts;
    fuzz_split(data, size, 3, &parts);
    char vocab[1024], merges[1024];
    if (parts.n >= 2) {
        fuzz_write(vocab, sizeof vocab, "vocab.json", parts.p[0], parts.len[0]);
        fuzz_write(merges, sizeof merges, "merges.txt", parts.p[1], parts.len[1]);
    } else {
        static const char v[] = "{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1, \"a</w>\": 2}";
        fuzz_write(vocab, sizeof vocab, "vocab.json", v, sizeof v - 1);
        fuzz_write(merges, sizeof merges, "merges.txt", "#version: 0.2\n", 14);
    }
    char *text = parts.n == 2 ? fuzz_strdup((const uint8_t *)"a photo of a cat, 42!", 21)
                 : fuzz_strdup(parts.p[parts.n - 1], parts.len[parts.n - 1]);
    ClipTokenizer tok;
    memset(&tok, 0, sizeof tok);
    if (clip_tokenizer_load(&tok, vocab, merges) == TD_OK) {
        int *ids = NULL, n = 0;
        if (clip_tokenize(&tok, text, &ids, &n) == TD_OK) {
            for (int i = 0; i < n; i++)
                if (ids[i] < 0 || ids[i] > tok.max_id)
                    abort(); /* an id outside the vocabulary */
        }
        free(ids);
        td_error_clear();
        static const int ctxs[2] = {8, 77};
        for (int c = 0; c < 2; c++) {
            int out[77];
            (void)clip_tokenize_ctx(&tok, text, ctxs[c], out);
            td_error_clear();
        }
        clip_tokenizer_free(&tok);
    }
    free(text);
    fuzz_clean();
    return 0;
}
