#!/usr/bin/python3
"""PyTorch peer for `tadist bench`: the same CLIP-style ViT, batch, modes.

Run with Debian's interpreter (/usr/bin/python3, python3-torch 1.13, CPU) and
the same OPENBLAS_CORETYPE and thread count as tadist, in the same job:
    jobs/bench.sh runs both and prints one table.
Modes: forward (no grad), full / attn step (forward + backward + AdamW),
ntk step (linearised model f0 + J(theta0) tau via forward-mode AD, backward to tau).
"""
import argparse
import math
import resource
import time

import torch
import torch.nn.functional as F
import torch.autograd.forward_ad as fwAD

ARCHS = {  # width, layers, heads, patch, image, mlp, out
    "vit_b32": (768, 12, 12, 32, 224, 3072, 512),
    "vit_b16": (768, 12, 12, 16, 224, 3072, 512),
    "vit_l14": (1024, 24, 16, 14, 224, 4096, 768),
    "vit_tiny": (64, 2, 4, 8, 32, 256, 32),
    "vit_small28": (128, 6, 4, 4, 28, 512, 128),
}


def make_params(arch, seed=0):
    D, L, NH, P, S, Fm, E = arch
    T = (S // P) ** 2 + 1
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, std: torch.randn(*s, generator=g) * std
    p = {"conv1.weight": r(D, 3, P, P, std=(3 * P * P) ** -0.5),
         "class_embedding": r(D, std=D ** -0.5), "positional_embedding": r(T, D, std=D ** -0.5),
         "ln_pre.weight": torch.ones(D), "ln_pre.bias": torch.zeros(D)}
    for l in range(L):
        b = f"transformer.resblocks.{l}."
        p.update({b + "ln_1.weight": torch.ones(D), b + "ln_1.bias": torch.zeros(D),
                  b + "attn.in_proj_weight": r(3 * D, D, std=D ** -0.5),
                  b + "attn.in_proj_bias": torch.zeros(3 * D),
                  b + "attn.out_proj.weight": r(D, D, std=D ** -0.5 * (2 * L) ** -0.5),
                  b + "attn.out_proj.bias": torch.zeros(D),
                  b + "ln_2.weight": torch.ones(D), b + "ln_2.bias": torch.zeros(D),
                  b + "mlp.c_fc.weight": r(Fm, D, std=(2 * D) ** -0.5), b + "mlp.c_fc.bias": torch.zeros(Fm),
                  b + "mlp.c_proj.weight": r(D, Fm, std=D ** -0.5 * (2 * L) ** -0.5),
                  b + "mlp.c_proj.bias": torch.zeros(D)})
    p.update({"ln_post.weight": torch.ones(D), "ln_post.bias": torch.zeros(D), "proj": r(D, E, std=D ** -0.5)})
    return p


def forward(p, x, arch):
    """open_clip's VisionTransformer forward, written functionally (forward-AD friendly)."""
    D, L, NH, P, S, Fm, E = arch
    B = x.shape[0]
    h = F.conv2d(x, p["conv1.weight"], stride=P).flatten(2).transpose(1, 2)  # B, G*G, D
    cls = p["class_embedding"].expand(B, 1, D)
    h = torch.cat([cls, h], 1) + p["positional_embedding"]
    h = F.layer_norm(h, (D,), p["ln_pre.weight"], p["ln_pre.bias"], 1e-5)
    T, HD = h.shape[1], D // NH
    for l in range(L):
        b = f"transformer.resblocks.{l}."
        y = F.layer_norm(h, (D,), p[b + "ln_1.weight"], p[b + "ln_1.bias"], 1e-5)
        qkv = F.linear(y, p[b + "attn.in_proj_weight"], p[b + "attn.in_proj_bias"])
        q, k, v = qkv.view(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HD), -1) @ v
        a = a.transpose(1, 2).reshape(B, T, D)
        h = h + F.linear(a, p[b + "attn.out_proj.weight"], p[b + "attn.out_proj.bias"])
        y = F.layer_norm(h, (D,), p[b + "ln_2.weight"], p[b + "ln_2.bias"], 1e-5)
        y = F.linear(y, p[b + "mlp.c_fc.weight"], p[b + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y)
        h = h + F.linear(y, p[b + "mlp.c_proj.weight"], p[b + "mlp.c_proj.bias"])
    pooled = F.layer_norm(h[:, 0], (D,), p["ln_post.weight"], p["ln_post.bias"], 1e-5)
    return pooled @ p["proj"]


def loss_of(emb, head, labels):
    return F.cross_entropy(100.0 * F.normalize(emb, dim=-1) @ head.t(), labels)


def timed(fn, iters, warm):
    """Median seconds of `iters` timed calls after `warm` untimed ones (as tadist bench)."""
    for _ in range(warm):
        fn()
    each = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        each.append(time.perf_counter() - t)
    each.sort()
    mid = len(each) // 2
    return (each[mid] if len(each) % 2 else 0.5 * (each[mid - 1] + each[mid])), iters, each[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="vit_b32")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    arch = ARCHS[a.arch]
    D, L, NH, P, S, Fm, E = arch
    p0 = make_params(arch)
    x = torch.randn(a.batch, 3, S, S)
    head = F.normalize(torch.randn(10, E), dim=-1)
    labels = torch.randint(0, 10, (a.batch,))
    rows = []

    with torch.no_grad():
        rows.append(("forward", timed(lambda: forward(p0, x, arch), a.iters, a.warmup)))

    def train_step_fn(trainable):
        p = {k: v.clone().requires_grad_(trainable(k)) for k, v in p0.items()}
        opt = torch.optim.AdamW([v for v in p.values() if v.requires_grad], lr=1e-5, weight_decay=0.1)

        def step():
            opt.zero_grad(set_to_none=True)
            loss_of(forward(p, x, arch), head, labels).backward()
            torch.nn.utils.clip_grad_norm_([v for v in p.values() if v.requires_grad], 1.0)
            opt.step()
        return step

    rows.append(("full step", timed(train_step_fn(lambda k: True), a.iters, a.warmup)))
    attn = lambda k: k.endswith("attn.in_proj_weight") or k.endswith("attn.out_proj.weight")
    rows.append(("attn step", timed(train_step_fn(attn), a.iters, a.warmup)))

    tau = {k: torch.zeros_like(v, requires_grad=True) for k, v in p0.items()}
    opt = torch.optim.AdamW(list(tau.values()), lr=1e-5, weight_decay=0.1)

    def ntk_step():
        opt.zero_grad(set_to_none=True)
        with fwAD.dual_level():
            dual = {k: fwAD.make_dual(p0[k], tau[k]) for k in p0}
            f0, jt = fwAD.unpack_dual(forward(dual, x, arch))
            loss_of(f0.detach() + jt, head, labels).backward()
        torch.nn.utils.clip_grad_norm_(list(tau.values()), 1.0)
        opt.step()
    rows.append(("ntk step", timed(ntk_step, a.iters, a.warmup)))

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, (sec, n, best) in rows:
        print(f"torch {a.arch} batch {a.batch} threads {a.threads}: {name:10s} "
              f"{a.batch / sec:8.2f} img/s  ({sec * 1e3:8.1f} ms median of {n}, min {best * 1e3:.1f})"
              f"  peak {peak:.0f} MiB")


if __name__ == "__main__":
    main()
