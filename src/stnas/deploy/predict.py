"""Classify image files with an exported or retrained model (``stnas predict``).

Each image is read with PIL, converted to the model's mode (grayscale or RGB), resized
(bilinear) to the recorded input size when it differs, scaled to [0, 1] and normalised
with the recorded mean and std: the preprocessing the model directory records
(``stnas.deploy.formats``), the same steps as in training.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch

from stnas.core.errors import DataError, first_line
from stnas.deploy.export import WEIGHTS, load_model
from stnas.deploy.formats import read_preprocessing


def model_dir(path: str | Path) -> Path:
    """A model directory, or the ``model/`` of a retrain run directory."""
    p = Path(path)
    return p / "model" if (p / "model" / WEIGHTS).is_file() else p


def load_images(paths, prep: dict) -> np.ndarray:
    """The model's input for image files: float32 N×C×S×S, preprocessed as recorded.

    Raises:
        DataError: a missing, non-regular or unreadable image file.
    """
    from PIL import Image

    size, mode = int(prep["input_size"]), "L" if prep["channels"] == 1 else "RGB"
    mean = np.asarray(prep["mean"], np.float32).reshape(-1, 1, 1)
    std = np.asarray(prep["std"], np.float32).reshape(-1, 1, 1)
    out = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or a device
                raise DataError(f"image {path} is not a regular file")
        except OSError:
            raise DataError(f"image {path} does not exist") from None
        try:
            with Image.open(path) as im:
                im = im.convert(mode)
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                a = np.asarray(im, np.uint8)
        except Exception as exc:  # PIL's errors: OSError, ValueError, DecompressionBombError
            raise DataError(f"cannot read image {path}: {first_line(exc)}") from None
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out.append((a.astype(np.float32) / 255.0 - mean) / std)
    return np.stack(out).astype(np.float32)


def predict(path: str | Path, images, k: int = 5) -> list[dict]:
    """Top-``k`` classes of each image file: ``[{"image", "logits", "top": [{"index", "class", "prob"}]}]``."""
    d = model_dir(path)
    net = load_model(d)
    prep = read_preprocessing(d)
    x = load_images(images, prep)
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).float()
    probs = logits.softmax(1)
    names = prep.get("class_names") or [str(i) for i in range(logits.shape[1])]
    results = []
    for img, row, p in zip(images, logits, probs):
        top = p.topk(min(k, len(p)))
        results.append({"image": str(img), "logits": row.tolist(),
                        "top": [{"index": int(i), "class": names[int(i)], "prob": float(v)}
                                for v, i in zip(top.values, top.indices)]})
    return results
