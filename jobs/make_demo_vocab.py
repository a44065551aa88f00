#!/usr/bin/env python3
"""Writes the demo's CLIP tokenizer files, config/text/vocab.json and merges.txt.

A byte-level BPE vocabulary in CLIP's format (the 256 byte symbols, each also
with </w>, then one token per merge, then <|startoftext|> and <|endoftext|>),
learned by BPE on a word list: the words of the scenes' captions (dist/data/
suite.c), of the demo's class names and of its prompt templates
(config/templates/demo/). Every listed word becomes one token; any other word
falls back to smaller pieces, as in CLIP. Deterministic: the same list gives
the same files. Standard library only.

    python3 jobs/make_demo_vocab.py [OUT_DIR]      (default config/text)
"""
import json
import os
import sys

WORDS = """
a an the of on photo image picture small big
letter digit number symbol shape texture pattern ground background object objects
dark light red green blue yellow white black gray
circle square triangle star cross ring hexagon crescent pentagon half disc heart bar
circles squares triangles stars crosses rings hexagons crescents pentagons discs hearts bars
stripes checker dots blobs waves grid spokes
top trouser dress boot bag shirt pullover coat sandal sneaker ankle
left up right down plus times divide equals note infinity sqrt arrow
""".split()


def bytes_to_unicode():
    """GPT-2's map of the 256 bytes to printable symbols (CLIP uses it too)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def learn_merges(words):
    """BPE on the distinct words, each weighted 1, until every word is one token.
    The most frequent adjacent pair is merged first; ties go to the smallest pair."""
    seqs = [list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(set(words))]
    merges = []
    while True:
        counts = {}
        for s in seqs:
            for p in zip(s, s[1:]):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for k, s in enumerate(seqs):
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[k] = out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "config/text"
    b2u = bytes_to_unicode()
    symbols = list(b2u.values())
    vocab = symbols + [s + "</w>" for s in symbols]
    merges = learn_merges(WORDS)
    for a, b in merges:
        vocab.append(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {}
    for t in vocab:
        if t not in ids:
            ids[t] = len(ids)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(ids, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2 - tadist demo vocabulary (jobs/make_demo_vocab.py)\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    print(f"{out}: {len(ids)} tokens, {len(merges)} merges, {len(set(WORDS))} words")


if __name__ == "__main__":
    main()
