#!/usr/bin/python3
"""Writes tests/fixtures/image_bicubic/reference.json: bicubic resizes and the
full eval preprocessing computed by PyTorch (Debian python3-torch), the
reference that tests/test_image.c compares kernels/image.c against.

    env -i /usr/bin/python3 jobs/make_image_fixture.py

Each case: a uint8 image (H,W,C) from a fixed LCG, and PyTorch's output of
  resize: F.interpolate(x/255, (oh,ow), mode="bicubic", align_corners=False)
          on the window (y,x,h,w) of the image, output (C,oh,ow)
  eval:   resize the shorter side to S (torchvision's rule: long = int(S*long/short)),
          centre crop SxS (offset round((len-S)/2)), gray->RGB, CLIP mean/std, (3,S,S)
float64 throughout, stored with 9 significant digits."""
import json
import os

import torch
import torch.nn.functional as F

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def image(h, w, c, seed):
    # LCG so that the C test can rebuild the same pixels without this file's help
    x = seed
    px = []
    for _ in range(h * w * c):
        x = (x * 1103515245 + 12345) % 2**31
        px.append((x >> 16) % 256)
    return px


def tensor(px, h, w, c):
    return torch.tensor(px, dtype=torch.float64).reshape(h, w, c).permute(2, 0, 1)[None] / 255.0


def resize_case(h, w, c, seed, win, oh, ow):
    px = image(h, w, c, seed)
    y, x, wh, ww = win
    t = tensor(px, h, w, c)[:, :, y:y + wh, x:x + ww]
    out = F.interpolate(t, size=(oh, ow), mode="bicubic", align_corners=False)[0]
    return {"kind": "resize", "h": h, "w": w, "c": c, "seed": seed, "window": list(win),
            "oh": oh, "ow": ow, "out": [float("%.9g" % v) for v in out.flatten().tolist()]}


def eval_case(h, w, c, seed, s):
    px = image(h, w, c, seed)
    t = tensor(px, h, w, c)
    if h <= w:
        rh, rw = s, int(s * w / h)
    else:
        rh, rw = int(s * h / w), s
    r = F.interpolate(t, size=(rh, rw), mode="bicubic", align_corners=False)[0]
    oy, ox = int(round((rh - s) / 2.0)), int(round((rw - s) / 2.0))
    r = r[:, oy:oy + s, ox:ox + s]
    if c == 1:
        r = r.repeat(3, 1, 1)
    r = (r - torch.tensor(MEAN, dtype=torch.float64)[:, None, None]) / \
        torch.tensor(STD, dtype=torch.float64)[:, None, None]
    return {"kind": "eval", "h": h, "w": w, "c": c, "seed": seed, "s": s,
            "out": [float("%.9g" % v) for v in r.flatten().tolist()]}


cases = [
    resize_case(28, 28, 1, 1, (0, 0, 28, 28), 64, 64),   # upsample, the demo's case
    resize_case(28, 28, 3, 2, (0, 0, 28, 28), 32, 32),   # small upsample, RGB
    resize_case(20, 30, 3, 3, (0, 0, 20, 30), 13, 17),   # downsample (no antialias)
    resize_case(28, 28, 1, 4, (2, 1, 25, 27), 28, 28),   # a RandomResizedCrop window
    resize_case(9, 7, 1, 5, (0, 0, 9, 7), 9, 7),          # identity size
    eval_case(30, 40, 3, 6, 24),                          # shorter side + centre crop
    eval_case(28, 28, 1, 7, 32),                          # the suite's shape
]
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "..", "tests", "fixtures", "image_bicubic", "reference.json")
with open(path, "w") as f:
    json.dump({"generator": "jobs/make_image_fixture.py", "torch": torch.__version__,
               "cases": cases}, f)
print("wrote", os.path.normpath(path))
