#!/usr/bin/env python3
"""Turns one of the paper's eight data sets into IDX files that
`tadist data import-idx` reads (docs/TASK_DATA.md). For a machine that has the
data sets; nothing in tadist's build or tests runs this.

    python3 jobs/paper_data_to_idx.py NAME ROOT OUTDIR [--side 224] [--seed 0]

NAME: cars, dtd, eurosat, gtsrb, mnist, resisc45, sun397, svhn. ROOT: the folder
holding the data set as torchvision (or, for RESISC45, the task-vectors code)
expects it. Writes OUTDIR/NAME/{train,test}-{images,labels}.idx.gz and
classes.txt, then prints the tadist command. Images are resized as CLIP's eval
transform does (shorter side to --side, bicubic, centre crop) and stored RGB
uint8 [N, side, side, 3]; labels are int32 (IDX type 0x0C). tadist carves val
(seeded 10% of train, at most 5000) itself.

Needs: torch, torchvision, Pillow (and scipy for Cars, as torchvision does).
Memory: tadist's importer holds a data set in memory: SUN397 at 224 px is about
15 GB; use --side 112 (or a machine with the memory) for it.
"""
import argparse
import gzip
import os
import random
import struct
import sys


def load(name, root, seed):
    """(train, test, classes): train and test are lists of (PIL image loader, label)."""
    import torchvision.datasets as D

    def pair(tr, te, classes):
        return tr, te, list(classes)

    if name == "cars":
        tr, te = D.StanfordCars(root, split="train"), D.StanfordCars(root, split="test")
        return pair(tr, te, tr.classes)
    if name == "dtd":  # the paper's code trains on train+val of partition 1
        tr = [D.DTD(root, split=s, partition=1) for s in ("train", "val")]
        te = D.DTD(root, split="test", partition=1)
        return pair(torch_concat(tr), te, te.classes)
    if name == "gtsrb":
        tr, te = D.GTSRB(root, split="train"), D.GTSRB(root, split="test")
        return pair(tr, te, [str(i) for i in range(43)])
    if name == "mnist":
        tr, te = D.MNIST(root, train=True), D.MNIST(root, train=False)
        return pair(tr, te, [str(i) for i in range(10)])
    if name == "svhn":
        tr, te = D.SVHN(root, split="train"), D.SVHN(root, split="test")
        return pair(tr, te, [str(i) for i in range(10)])
    if name in ("eurosat", "sun397"):  # no official split in torchvision: seeded 80/20
        ds = D.EuroSAT(root) if name == "eurosat" else D.SUN397(root)
        idx = list(range(len(ds)))
        random.Random(seed).shuffle(idx)
        cut = int(0.8 * len(idx))
        return pair(Subset(ds, sorted(idx[:cut])), Subset(ds, sorted(idx[cut:])), ds.classes)
    if name == "resisc45":  # ROOT/resisc45/NWPU-RESISC45/<class>/*.jpg + split lists if present
        from torchvision.datasets import ImageFolder
        base = os.path.join(root, "resisc45")
        ds = ImageFolder(os.path.join(base, "NWPU-RESISC45"))
        lists = [os.path.join(base, "resisc45-%s.txt" % s) for s in ("train", "test")]
        if all(os.path.exists(p) for p in lists):
            names = [set(open(p).read().split()) for p in lists]
            parts = [[i for i, (path, _) in enumerate(ds.samples)
                      if os.path.basename(path) in n] for n in names]
        else:
            idx = list(range(len(ds)))
            random.Random(seed).shuffle(idx)
            cut = int(0.8 * len(idx))
            parts = [sorted(idx[:cut]), sorted(idx[cut:])]
        return pair(Subset(ds, parts[0]), Subset(ds, parts[1]), ds.classes)
    sys.exit("unknown data set %s" % name)


class Subset:
    def __init__(self, ds, idx):
        self.ds, self.idx = ds, idx

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.ds[self.idx[i]]


def torch_concat(parts):
    from torch.utils.data import ConcatDataset
    return ConcatDataset(parts)


def clip_eval(img, side):
    from PIL import Image
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = side, int(side * h / w)
    else:
        nw, nh = int(side * w / h), side
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = int(round((nw - side) / 2.0)), int(round((nh - side) / 2.0))
    return img.crop((left, top, left + side, top + side))


def write_split(ds, side, images_path, labels_path):
    n = len(ds)
    tmp_i, tmp_l = images_path + ".tmp", labels_path + ".tmp"
    with gzip.open(tmp_i, "wb", compresslevel=3) as fi, gzip.open(tmp_l, "wb") as fl:
        fi.write(struct.pack(">BBBB4I", 0, 0, 0x08, 4, n, side, side, 3))
        fl.write(struct.pack(">BBBBI", 0, 0, 0x0C, 1, n))
        for i in range(n):
            img, label = ds[i]
            fi.write(clip_eval(img, side).tobytes())
            fl.write(struct.pack(">i", int(label)))
            if i % 5000 == 0:
                print("  %s: %d / %d" % (os.path.basename(images_path), i, n), flush=True)
    os.replace(tmp_i, images_path)
    os.replace(tmp_l, labels_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("root")
    ap.add_argument("outdir")
    ap.add_argument("--side", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    train, test, classes = load(a.name, a.root, a.seed)
    out = os.path.join(a.outdir, a.name)
    os.makedirs(out, exist_ok=True)
    for split, ds in (("train", train), ("test", test)):
        write_split(ds, a.side, os.path.join(out, split + "-images.idx.gz"),
                    os.path.join(out, split + "-labels.idx.gz"))
    with open(os.path.join(out, "classes.txt"), "w") as f:
        for c in classes:
            f.write(c.replace(",", " ").strip()[:63] + "\n")
    print("now: tadist data import-idx --train-images {o}/train-images.idx.gz "
          "--train-labels {o}/train-labels.idx.gz --test-images {o}/test-images.idx.gz "
          "--test-labels {o}/test-labels.idx.gz --classes-file {o}/classes.txt "
          "--name {n} -o data/paper/{n}.h5".format(o=out, n=a.name))


if __name__ == "__main__":
    main()
