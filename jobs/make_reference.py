#!/usr/bin/python3
"""Writes a reference file (the format of tests/fixtures/README.md) for any
tadist model file, computed by PyTorch in float64, so that `tadist check` can
be run at real size (ViT-B/32, B/16, L/14), not only on the tiny fixtures:

    tadist init --arch vit_b32 --seed 1 -o /tmp/b32.h5
    /usr/bin/python3 jobs/make_reference.py /tmp/b32.h5 -o /tmp/b32_ref.h5 --batch 2
    tadist check --model /tmp/b32.h5 --ref /tmp/b32_ref.h5

Needs Debian's python3-torch and python3-h5py (jobs/setup.sh --bench). Never
used by the build or the tests. The model is written out independently of
tadist's engine (torch.nn.functional), with Hugging Face names for gradients
and tangents (q/k/v split, visual_projection = proj^T).
"""
import argparse
import math

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torch.autograd.forward_ad as fwAD

torch.set_default_dtype(torch.float64)


def hf_pieces(name, t, L):
    """tadist tensor -> list of (HF name, tensor piece) for gradients/tangents."""
    v = "vision_model."
    fixed = {"conv1.weight": v + "embeddings.patch_embedding.weight",
             "class_embedding": v + "embeddings.class_embedding",
             "positional_embedding": v + "embeddings.position_embedding.weight",
             "ln_pre.weight": v + "pre_layrnorm.weight", "ln_pre.bias": v + "pre_layrnorm.bias",
             "ln_post.weight": v + "post_layernorm.weight", "ln_post.bias": v + "post_layernorm.bias"}
    if name in fixed:
        return [(fixed[name], t)]
    if name == "proj":
        return [("visual_projection.weight", t.t())]
    l, rest = name.split(".")[2], ".".join(name.split(".")[3:])
    p = f"{v}encoder.layers.{l}."
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if rest.endswith("weight") else "bias"
        q, k, vv = t.chunk(3, 0)
        return [(p + f"self_attn.q_proj.{kind}", q), (p + f"self_attn.k_proj.{kind}", k),
                (p + f"self_attn.v_proj.{kind}", vv)]
    m = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
         "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    base, kind = rest.rsplit(".", 1)
    return [(p + m[base] + "." + kind, t)]


def forward(p, x, a, hidden=None):
    D, L, NH, P, act, eps = a["width"], a["layers"], a["heads"], a["patch"], a["act"], a["eps"]
    B = x.shape[0]
    h = F.conv2d(x, p["conv1.weight"], stride=P).flatten(2).transpose(1, 2)
    h = torch.cat([p["class_embedding"].expand(B, 1, D), h], 1) + p["positional_embedding"]
    h = F.layer_norm(h, (D,), p["ln_pre.weight"], p["ln_pre.bias"], eps)
    if hidden is not None:
        hidden.append(h)
    T, HD = h.shape[1], D // NH
    for l in range(L):
        b = f"transformer.resblocks.{l}."
        y = F.layer_norm(h, (D,), p[b + "ln_1.weight"], p[b + "ln_1.bias"], eps)
        q, k, v = F.linear(y, p[b + "attn.in_proj_weight"], p[b + "attn.in_proj_bias"]) \
            .view(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4)
        o = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HD), -1) @ v).transpose(1, 2).reshape(B, T, D)
        h = h + F.linear(o, p[b + "attn.out_proj.weight"], p[b + "attn.out_proj.bias"])
        y = F.layer_norm(h, (D,), p[b + "ln_2.weight"], p[b + "ln_2.bias"], eps)
        y = F.linear(y, p[b + "mlp.c_fc.weight"], p[b + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y) if act == "quick_gelu" else F.gelu(y)
        h = h + F.linear(y, p[b + "mlp.c_proj.weight"], p[b + "mlp.c_proj.bias"])
        if hidden is not None:
            hidden.append(h)
    pooled = F.layer_norm(h[:, 0], (D,), p["ln_post.weight"], p["ln_post.bias"], eps)
    return pooled, pooled @ p["proj"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(args.seed)
    with h5py.File(args.model, "r") as f:
        at = f.attrs
        act = at["activation"]
        act = act.decode() if isinstance(act, bytes) else str(act)
        a = {"width": int(at["width"]), "layers": int(at["layers"]), "heads": int(at["heads"]),
             "patch": int(at["patch"]), "image": int(at["image"]), "mlp": int(at["mlp"]),
             "out": int(at["out_dim"]), "act": act, "eps": float(at["ln_eps"])}
        names = [k for k in f.keys()]
        p = {k: torch.tensor(np.asarray(f[k]), dtype=torch.float64) for k in names}
    B, S, E = args.batch, a["image"], a["out"]
    x = torch.randn(B, 3, S, S, generator=g)
    head = F.normalize(torch.randn(args.classes, E, generator=g), dim=-1)
    labels = torch.randint(0, args.classes, (B,), generator=g)
    scale = 100.0

    params = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    hidden = []
    pooled, emb = forward(params, x, a, hidden)
    logits = scale * F.normalize(emb, dim=-1) @ head.t()
    loss = F.cross_entropy(logits, labels)
    loss.backward()

    tangent = {k: torch.randn(v.shape, generator=g) * 0.01 for k, v in p.items()}

    def jvp(keep):
        with fwAD.dual_level():
            dual = {k: fwAD.make_dual(p[k], tangent[k] if keep(k) else torch.zeros_like(p[k])) for k in p}
            return fwAD.unpack_dual(forward(dual, x, a)[1]).tangent

    jvp_all = jvp(lambda k: True)
    jvp_attn = jvp(lambda k: ".attn." in k)

    f32 = lambda t: t.detach().numpy().astype(np.float32)
    with h5py.File(args.out, "w") as o:
        for k, v in {"hidden_size": a["width"], "num_hidden_layers": a["layers"],
                     "num_attention_heads": a["heads"], "intermediate_size": a["mlp"],
                     "image_size": S, "patch_size": a["patch"], "projection_dim": E}.items():
            o.attrs["vision_" + k] = np.int64(v)
        o.attrs["vision_hidden_act"] = a["act"]
        o.attrs["vision_layer_norm_eps"] = a["eps"]
        o.attrs["logit_scale"] = scale
        o.attrs["note"] = "written by jobs/make_reference.py (PyTorch, float64) from " + args.model
        o["pixel_values"] = f32(x)
        o["hidden_states"] = f32(torch.stack(hidden))
        o["pooled"], o["image_embeds"] = f32(pooled), f32(emb)
        o["head"], o["labels"] = f32(head), labels.numpy().astype(np.int32)
        o["logits"], o["loss"] = f32(logits), np.float64(loss.item())
        for k in p:
            for hf, piece in hf_pieces(k, params[k].grad, a["layers"]):
                o["grads/" + hf] = f32(piece)
            for hf, piece in hf_pieces(k, tangent[k], a["layers"]):
                o["tangent/" + hf] = f32(piece)
        o["jvp_all"], o["jvp_attn"] = f32(jvp_all), f32(jvp_attn)
    print(f"wrote {args.out}: batch {B}, loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
