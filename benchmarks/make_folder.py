"""A user-style RGB image folder made from real images, for the benchmarks that need "the
user's own small folder" (issues 35 and 38): Fashion-MNIST's first 7 classes, 220 images a class
(1,540 in all, 25% of them in val/), resized to 40×40 and tinted with a random colour per image
(the colour says nothing about the class), saved as PNGs in the ImageFolder layout
``ROOT/{train,val}/CLASS/*.png``. Deterministic for a seed.

    python benchmarks/make_folder.py /work/runs/folder7 --size 40 --per-class 220
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from stnas.data.datasets import get_dataset

NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def make(root: Path, size: int, per_class: int, classes: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    ds = get_dataset("fashion-mnist", "train", None, image_size=28, augment=False)
    labels = np.asarray(ds.targets) if hasattr(ds, "targets") else np.asarray([ds[i][1] for i in range(len(ds))])
    n = 0
    for c in range(classes):
        idx = rng.permutation(np.flatnonzero(labels == c))[:per_class]
        for k, i in enumerate(idx):
            x = ds[int(i)][0]  # 1×28×28 float tensor, normalised
            g = x[0].numpy()
            g = (g - g.min()) / max(1e-6, float(g.max() - g.min()))
            tint = rng.uniform(0.3, 1.0, size=3)
            back = rng.uniform(0.0, 0.3, size=3)
            rgb = back + (tint - back) * g[..., None]
            img = Image.fromarray((255 * rgb).astype(np.uint8)).resize((size, size), Image.BILINEAR)
            part = "val" if k < per_class // 4 else "train"
            d = root / part / NAMES[c]
            d.mkdir(parents=True, exist_ok=True)
            img.save(d / f"{int(i):05d}.png")
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--per-class", type=int, default=220)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    root = Path(a.root)
    if root.exists():
        raise SystemExit(f"{root} exists; choose another folder")
    print(f"{make(root, a.size, a.per_class, a.classes, a.seed)} images in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
