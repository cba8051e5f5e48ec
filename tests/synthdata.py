"""Small synthetic image data sets for the user-data tests: easy classes (a distinct
brightness or colour and a distinct shape per class) with pixel noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 230), (230, 220, 40), (200, 40, 210)]


def images(classes: int, per_class: int, size: int, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×H×W×C images and int labels, class-major."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out, labels = [], []
    for c in range(classes):
        shape = [xx < size // 2, yy < size // 2, (xx + yy) % 4 < 2, np.ones((size, size), bool), xx > yy][c % 5]
        for _ in range(per_class):
            if channels == 3:
                img = np.where(shape[..., None], COLOURS[c % 5], 20).astype(float)
            else:
                img = np.where(shape, 60 + 190 * c / max(1, classes - 1), 10).astype(float)[..., None]
            img += rng.normal(0, 12, img.shape)
            out.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(out), np.asarray(labels)


def write_folder(root: Path, *, split: bool, classes: int = 3, per_class: int = 12, size: int = 16,
                 channels: int = 3, names=("red", "green", "blue", "yellow", "pink"), ext: str = "png") -> Path:
    """An ImageFolder tree: ROOT/CLASS/*.png, or ROOT/train/... and ROOT/val/... when ``split``."""
    from PIL import Image

    x, y = images(classes, per_class, size, channels)
    for i, (img, label) in enumerate(zip(x, y)):
        part = ("val" if i % per_class < per_class // 4 else "train") if split else ""
        d = Path(root) / part / names[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0] if channels == 1 else img).save(d / f"{i:04d}.{ext}")
    return Path(root)


def write_npz(path: Path, *, classes: int = 3, per_class: int = 12, size: int = 16, channels: int = 1,
              layout: str = "NHWC", **extra) -> Path:
    x, y = images(classes, per_class, size, channels)
    test = np.arange(len(y)) % 4 == 0
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    elif layout == "NHW":
        x = x[..., 0]
    arrays = dict(x_train=x[~test], y_train=y[~test], x_test=x[test], y_test=y[test])
    arrays.update(extra)
    np.savez(path, **arrays)
    return Path(path)
