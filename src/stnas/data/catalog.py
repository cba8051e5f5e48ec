"""The named datasets (``data.dataset``, ``--data``): one :class:`NamedDataset` entry each in
:data:`DATASETS`, holding every fact about it (classes, native size, normalisation, augmentation,
default search-val share, class names, pixel scale), where its files are looked for and how
they are read. ``stnas.data.datasets`` serves them; the config check and the CLI list the names
from here without torch.

Where files are looked for, in order (:func:`locate`): the ``root`` given (``data.root``),
``$STNAS_DATA``, the system copy (``Files.system_dir``), the download cache ``CACHE_DIR``, each
with the entry's ``subdirs``; a folder holds the dataset when every marker is there (a name
ending in ``/``: a directory; else a file or directory, or the file gzipped). When none does and
downloads are allowed, torchvision downloads it into ``CACHE_DIR`` (``Files.download``).

A loader reads the files into uint8 NCHW arrays, ``{"train": (images, labels, rows), "test":
(...)}``: a split is the rows ``rows`` of ``images``/``labels``. Image-folder datasets
(``folders=True``: ImageNet) have no loader; ``stnas.data.datasets`` reads them through
torchvision's transforms.
"""

from __future__ import annotations

import gzip
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stnas.core.errors import DataError
from stnas.core.registry import Registry

CACHE_DIR = Path("~/.cache/stnas").expanduser()  # where downloads go
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(eq=False)
class Files:
    """Where a dataset's files are looked for (module docstring) and how to get them."""

    subdirs: tuple[str, ...]
    markers: tuple[str, ...]
    how: str  # how to get it, for the not-found message
    system_dir: str | None = None
    download: str | None = None  # the torchvision.datasets class that downloads it


@dataclass(eq=False)
class NamedDataset:
    """One named dataset.

    Attributes:
        classes, size: the number of classes and the native image side (an image-folder
            dataset: the side its recipe crops to).
        mean, std: per-channel normalisation of pixels / ``pixel_scale``.
        pad, flip: the training augmentation: a random crop after zero-padding by ``pad``
            (0: none) and a random horizontal flip.
        val: the default search-val share (float: a fraction of each class, int: images per class).
        load: ``(entry, folder or None) -> {"train": (images, labels, rows), "test": ...}``.
        class_names: None: ``0 .. classes-1``.
        files: where its files are (None: shipped with a package, nothing to look for).
        folders: read as image folders through torchvision transforms (image sizes vary).
    """

    classes: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool
    val: float | int
    load: Callable | None = None
    class_names: tuple[str, ...] | None = None
    pixel_scale: float = 255.0
    files: Files | None = None
    folders: bool = False

    def info(self) -> dict:
        """The facts ``ArrayDataset`` reads (the keys of ``stnas.data.userdata.UserData.info``)."""
        return dict(classes=self.classes, size=self.size, mean=self.mean, std=self.std, pad=self.pad, flip=self.flip,
                    val=self.val, names=self.names())

    def names(self) -> list[str]:
        return list(self.class_names) if self.class_names else [str(k) for k in range(self.classes)]


# ------------------------------------------------------------------ readers
def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Raises:
        DataError: the file is unreadable, not a regular file (a FIFO is never opened), has
            a bad header or the wrong length.
    """
    p = Path(path)
    if p.exists() and not p.is_file():
        raise DataError(f"IDX file {path} is not a regular file")
    try:
        raw = p.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or len(raw) < 4 + 4 * raw[3]:
        raise DataError(f"{path} is not an IDX file (bad or truncated header); re-download it")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    shape, start = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4)), 4 + 4 * ndim
    if len(raw) - start != math.prod(shape) * dtype.itemsize:
        raise DataError(f"{path}: {len(raw) - start} data bytes, shape {shape} needs "
                        f"{math.prod(shape) * dtype.itemsize}; re-download it")
    return np.frombuffer(raw, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def _whole(x: np.ndarray, y: np.ndarray) -> tuple:
    return x, y, np.arange(len(y))


def _sklearn_digits(entry: NamedDataset, where: Path | None) -> dict:
    """scikit-learn's digits: one array, split by a fixed stratified 80/20 (``random_state=0``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.images.astype(np.uint8)[:, None], d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    return {"train": (x, y, np.sort(tr)), "test": (x, y, np.sort(te))}


def _mnist_idx(entry: NamedDataset, where: Path | None) -> dict:
    """``train-``/``t10k-`` ``images-idx3-ubyte`` and ``labels-idx1-ubyte`` files (gzipped or not)."""
    def idx(stem, ndim):
        p = where / stem
        p = p if p.exists() else p.with_name(stem + ".gz")
        a = read_idx(p)
        if a.ndim != ndim or not len(a):
            raise DataError(f"{p}: shape {a.shape}, expected {ndim} dimensions and at least one item")
        return a, p

    out = {}
    for split, part in (("train", "train"), ("test", "t10k")):
        (x, xp), (y, yp) = idx(f"{part}-images-idx3-ubyte", 3), idx(f"{part}-labels-idx1-ubyte", 1)
        if len(x) != len(y):
            raise DataError(f"{yp} holds {len(y)} labels for the {len(x)} images of {xp}")
        if y.max() >= entry.classes or y.min() < 0:
            raise DataError(f"{yp}: labels must be in 0..{entry.classes - 1}, found {int(y.max())}")
        out[split] = _whole(x[:, None], y.astype(np.int64))
    return out


def _torchvision(cls_name: str, name: str) -> Callable:
    """A loader of torchvision's pickled CIFAR batches (read by torchvision, never unpickled here)."""
    def load(entry: NamedDataset, where: Path | None) -> dict:
        import torchvision.datasets as tvd

        try:
            parts = [getattr(tvd, cls_name)(str(where), train=t, download=False) for t in (True, False)]
        except Exception as e:
            raise DataError(f"cannot read {name} from {where}: {e}; delete it and re-download") from e
        return {split: _whole(p.data.transpose(0, 3, 1, 2), np.asarray(p.targets, np.int64))
                for split, p in zip(("train", "test"), parts)}
    return load


DATASETS: Registry[NamedDataset] = Registry("dataset", DataError)
DATASETS.add("digits", NamedDataset(
    10, 8, (0.3053,), (0.3760,), pad=0, flip=False, val=0.2, load=_sklearn_digits, pixel_scale=16.0),
    "scikit-learn's 8x8 digits (shipped with scikit-learn)")
DATASETS.add("fashion-mnist", NamedDataset(
    10, 28, (0.2860,), (0.3530,), pad=2, flip=True, val=1 / 6, load=_mnist_idx,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
    files=Files(("", "fashion-mnist", "FashionMNIST/raw"), ("train-images-idx3-ubyte",),
                "`apt-get install dataset-fashion-mnist`", "/usr/share/datasets/fashion-mnist", "FashionMNIST")),
    "Fashion-MNIST, 28x28 grayscale (Debian dataset-fashion-mnist, or downloaded)")
DATASETS.add("cifar10", NamedDataset(
    10, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), pad=4, flip=True, val=0.1,
    load=_torchvision("CIFAR10", "cifar10"),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    files=Files(("", "cifar10"), ("cifar-10-batches-py",), "the torchvision cifar10 files (cifar-10-batches-py/)",
                download="CIFAR10")),
    "CIFAR-10, 32x32 colour (torchvision's files, or downloaded)")
DATASETS.add("cifar100", NamedDataset(
    100, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), pad=4, flip=True, val=0.1,
    load=_torchvision("CIFAR100", "cifar100"),
    files=Files(("", "cifar100"), ("cifar-100-python",), "the torchvision cifar100 files (cifar-100-python/)",
                download="CIFAR100")),
    "CIFAR-100, 32x32 colour (torchvision's files, or downloaded)")
DATASETS.add("imagenet", NamedDataset(  # 50 images per class for search-val: the SPOS choice
    1000, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), pad=0, flip=True, val=50, folders=True,
    files=Files(("", "imagenet"), ("train/", "val/"),
                "a directory with train/ and val/ class folders (torchvision ImageFolder layout)")),
    "ImageNet-1k as train/ and val/ class folders (never downloaded)")


# ------------------------------------------------------------------ finding the files
def _places(files: Files, root) -> list[Path]:
    """Where a dataset is looked for, in order: root, $STNAS_DATA, the system copy, the download cache."""
    bases = [root, os.environ.get("STNAS_DATA"), files.system_dir, CACHE_DIR]
    return list(dict.fromkeys(Path(b) / s for b in bases if b for s in files.subdirs))


def _has(files: Files, d: Path) -> bool:
    def there(marker: str) -> bool:
        if marker.endswith("/"):
            return (d / marker).is_dir()
        m = d / marker
        return m.exists() or m.with_name(m.name + ".gz").exists()
    return all(there(m) for m in files.markers)


def locate(name: str, root, download: bool) -> Path:
    """The folder that holds named dataset ``name``'s files (module docstring).

    Raises:
        DataError: found nowhere (naming every place looked in and how to get it).
    """
    files = DATASETS.get(name).files
    places = _places(files, root)
    for d in places:
        if _has(files, d):
            return d
    why = "download disabled"
    if download and files.download:
        import torchvision.datasets as tvd

        cls = getattr(tvd, files.download)
        try:
            cls(str(CACHE_DIR), train=True, download=True)
            cls(str(CACHE_DIR), train=False, download=True)
            cached = [CACHE_DIR / s for s in files.subdirs]
            return next((d for d in cached if _has(files, d)), cached[-1])
        except Exception as e:  # no network, HTTP error, disk full: all end the same way
            why = f"download into {CACHE_DIR} failed: {type(e).__name__}: {e}".replace("\n", " ")
    raise DataError(f"{name} data not found; looked in: {', '.join(map(str, places))} ({why}). Get it with "
                    f"{files.how}, then pass --data-root DIR or set STNAS_DATA=DIR")
