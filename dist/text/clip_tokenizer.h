/* clip_tokenizer: CLIP's byte-level BPE tokenizer, as Hugging Face's
 * CLIPTokenizer (slow, without ftfy) and CLIPTokenizerFast compute it, from a
 * vocab.json and merges.txt.
 *
 *   text -> BasicTokenizer clean-up (control characters deleted, whitespace
 *   runs collapsed, CJK ideographs split off, lower-cased, accents kept) ->
 *   the pre-tokeniser regex
 *     <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+
 *   -> UTF-8 bytes mapped to GPT-2's printable byte symbols -> BPE by merge
 *   rank, `</w>` on the last symbol of each pre-token -> vocabulary ids,
 *   framed by <|startoftext|> and <|endoftext|>.
 *
 * Like Hugging Face, the first line of merges.txt (#version) is skipped and
 * only the first 49152 - 256 - 2 merges are used; a symbol missing from the
 * vocabulary becomes <|endoftext|> (CLIP's unk token). Not reproduced: NFC
 * normalisation of the input (pass NFC text, as nearly all text is) and the
 * context rules of a final capital sigma beyond "after a letter, not before one".
 *
 * This module reads files, so it lives in dist/; it uses no MPI and no HDF5
 * (any process may call it). The Unicode tables are unicode_tables.h. */
#ifndef TD_CLIP_TOKENIZER_H
#define TD_CLIP_TOKENIZER_H

#include "status.h"

typedef struct {
    char **keys;
    int *vals;
    size_t cap, count;
} ClipStrMap;

typedef struct {
    ClipStrMap vocab;  /* token string -> id */
    ClipStrMap ranks;  /* "first second" -> merge rank */
    int start_id;      /* <|startoftext|> */
    int end_id;        /* <|endoftext|>, also unk */
    int pad_id;        /* padding of clip_tokenize_ctx; end_id after loading, as in HF CLIP */
    int max_id;        /* largest id in the vocabulary */
    int merges;        /* merges read (two-symbol lines after #version; at most 48894) */
} ClipTokenizer;

/* Loads vocab.json and merges.txt; errors name the file and entry at fault.
 * Prints a warning (td_log, rank 0) for what Hugging Face accepts silently:
 * a merges.txt without merges, one with fewer merges than the vocabulary has
 * merged tokens (cut), and lines that are not two symbols (skipped). */
TdStatus clip_tokenizer_load(ClipTokenizer *tok, const char *vocab_path, const char *merges_path);
void clip_tokenizer_free(ClipTokenizer *tok);

/* Untruncated ids of text (UTF-8), start and end tokens included: *ids is
 * malloc'ed (free it), *n its length. Invalid UTF-8 is an error. */
TdStatus clip_tokenize(const ClipTokenizer *tok, const char *text, int **ids, int *n);

/* ids[ctx]: the ids truncated to ctx (keeping the end token last) and padded
 * with pad_id, as the text tower takes them. ctx >= 2. */
TdStatus clip_tokenize_ctx(const ClipTokenizer *tok, const char *text, int ctx, int *ids);

#endif
