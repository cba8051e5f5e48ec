"""Pipeline step 1 for the user's own data: image folders, ``.npz`` arrays, torch Datasets.

``data.dataset`` (``--data``) may name a path instead of a named dataset; each kind of data is
a data format, one entry of :data:`DATA_FORMATS`:

* an image folder in torchvision's ImageFolder layout, ``PATH/CLASS/IMAGE`` (stnas splits it
  into train and test, stratified by class with seed 0, ``TEST_FRACTION`` of each class to
  test), or ``PATH/train/CLASS/IMAGE`` with ``PATH/val/`` or ``PATH/test/`` beside it;
* an ``.npz`` file with ``x_train, y_train, x_test, y_test``: uint8 images ``N×H×W``
  (grayscale), ``N×H×W×C`` or ``N×C×H×W`` (C = 1 or 3), integer labels ``0..K-1``, and
  optionally ``classes`` (K strings);
* in the Python API, a ``torch.utils.data.Dataset`` of ``(image, label)`` items
  (``get_dataset(ds, split)``; :func:`save_npz` turns one into an ``.npz`` for a run).

Classes, channels and size are read from the data; images must share one mode (grayscale
or colour). Folder images are resized (bilinear) to ``S×S``, ``S`` the most common shorter
side, unless they all already are. Normalisation statistics (per channel, pixels/255) come
from the training split. Folder class names are the folder names. A folder of at most
``STREAM_ABOVE`` images is decoded once and cached under ``$STNAS_CACHE`` (default
``~/.cache/stnas``)/decoded, keyed by the SHA-256 of its files' names and bytes; a larger
one is streamed: only the image headers are read up front, the statistics come from a
stratified ``STATS_IMAGES`` of its training images, and batches are decoded as they are
read (in ``data.workers`` DataLoader worker processes). Nothing is ever unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stnas.core.errors import DataError, first_line
from stnas.core.fileio import atomic_write
from stnas.core.limits import is_dir, is_file
from stnas.core.registry import Registry
from stnas.data.catalog import DATASETS

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
TEST_FRACTION = 0.2  # single-folder layout and Datasets: share of each class held out for test
VAL_FRACTION = 0.2  # default search-val share of train
STREAM_ABOVE = 20_000  # folders with more images are streamed, not decoded into memory
STATS_IMAGES = 2_000  # streamed folders: training images the normalisation statistics come from
_GRAY = {"1", "L", "LA", "I", "I;16", "F"}
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def cache_dir() -> Path:
    return Path(os.environ.get("STNAS_CACHE", "~/.cache/stnas")).expanduser() / "decoded"


def is_user_data(spec) -> bool:
    """True for what a data format claims (a Dataset object, a directory, an ``.npz`` path) or
    any path with a separator; False for a named dataset."""
    if spec in DATASETS:
        return False
    return data_format(spec) is not None or os.sep in str(spec)


@dataclass(eq=False)
class UserData:
    """Decoded user data: uint8 NCHW train/test images, int64 labels, class names."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]
    fingerprint: str

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def streamed(self) -> bool:
        return getattr(self.x_train, "lazy", False)

    @property
    def size(self) -> int:
        return int(self.x_train.shape[-1])

    @functools.cached_property
    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images (pixels / 255; streamed folders:
        of a stratified ``STATS_IMAGES`` of them)."""
        x = self.x_train
        if self.streamed:
            from stnas.data.splits import stratified_subset
            x = x[stratified_subset(self.y_train, min(STATS_IMAGES, len(self.y_train)))]
        s = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        for start in range(0, len(x), 4096):
            chunk = x[start:start + 4096].astype(np.float64) / 255.0
            s[0][:] += chunk.sum((0, 2, 3))
            s[1][:] += (chunk ** 2).sum((0, 2, 3))
        n = len(x) * x.shape[2] * x.shape[3]
        mean = s[0] / n
        std = np.sqrt(np.maximum(s[1] / n - mean ** 2, 0.0))
        return tuple(round(float(m), 6) for m in mean), tuple(round(max(float(v), 1e-3), 6) for v in std)

    def info(self) -> dict:
        """The per-dataset facts ``stnas.data.datasets`` keeps in ``INFO`` for named datasets."""
        mean, std = self.mean_std
        return dict(classes=len(self.classes), size=self.size, mean=mean, std=std, pad=max(1, self.size // 8),
                    flip=False, val=VAL_FRACTION, names=list(self.classes))


# ------------------------------------------------------------------ loading
def load_user_data(spec) -> UserData:
    """Reads, checks and decodes ``spec`` (a folder, an ``.npz`` path or a Dataset: its data
    format's loader, :data:`DATA_FORMATS`).

    Raises:
        DataError: a missing path, an empty or single-class folder, unreadable or
            mixed-mode images, bad arrays, labels out of range or not one per image.
    """
    fmt = data_format(spec)
    if fmt is None:
        raise DataError(f"data {spec} is neither a named dataset nor {' nor '.join(path_formats())}")
    return DATA_FORMATS.get(fmt).load(spec)


def _load_npz_file(spec) -> UserData:
    p = Path(spec)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist (or is not a regular file)")
    st = p.stat()
    return _load_npz(str(p.resolve()), st.st_size, st.st_mtime_ns)


def _load_folder_tree(spec) -> UserData:
    p = Path(spec)
    splits = _folder_splits(p)
    key = tuple((str(d), _signature(d)) for d in splits)
    return _load_folder(str(p.resolve()), key)


def _folder_splits(p: Path) -> list[Path]:
    """[train, test] folders of the split layout, or [p] for one folder stnas splits."""
    test = next((p / t for t in ("val", "test") if (p / t).is_dir()), None)
    if (p / "train").is_dir() and test is not None:
        return [p / "train", test]
    if (p / "train").is_dir():
        raise DataError(f"{p} has train/ but no val/ or test/ beside it; add one, or put the class folders "
                        f"directly in {p} to let stnas split them")
    return [p]


def _scan(root: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Class names (sorted folder names) and (file, class) pairs, ImageFolder-style."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{root} holds no class folders (expected {root}/CLASS/IMAGE, e.g. {root}/cat/1.png)")
    samples = []
    for c in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(root / c):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.startswith(".") or not f.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = Path(dirpath) / f
                if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or a device
                    raise DataError(f"{path} is not a regular file")
                found.append((path, c))
        if not found:
            raise DataError(f"class folder {root / c} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        samples += found
    return classes, samples


def _signature(root: Path) -> tuple:
    """Names, sizes and modification times: the in-process cache key of a folder."""
    _, samples = _scan(root)
    return tuple((str(f), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f, _ in samples)


@functools.lru_cache(maxsize=4)
def _load_folder(path: str, key: tuple) -> UserData:
    roots = [Path(d) for d, _ in key]
    scans = [_scan(r) for r in roots]
    classes = scans[0][0]
    if len(classes) < 2:
        raise DataError(f"{roots[0]} holds one class folder ({classes[0]}); a classifier needs at least 2 classes")
    if len(scans) == 2:
        extra = sorted(set(scans[1][0]) - set(classes))
        if extra:
            raise DataError(f"{roots[1]} has classes that {roots[0]} lacks: {', '.join(extra[:3])}")
    if sum(len(samples) for _, samples in scans) > STREAM_ABOVE:
        return _stream_folder(path, scans, classes)
    h = hashlib.sha256("\0".join(classes).encode())
    raw = []
    for r, (_, samples) in zip(roots, scans):
        h.update(f"\0split {r.name}".encode())
        for f, c in samples:
            data = f.read_bytes()
            h.update(f"\0{f.relative_to(r)}\0{len(data)}\0".encode())
            h.update(data)
            raw.append((f, classes.index(c), data))
    digest = h.hexdigest()
    cached = cache_dir() / f"{digest}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                arrays = [z[k] for k in _NPZ_KEYS]
            return UserData(path, *arrays, classes, digest[:12])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt
    images = _decode_all(raw)
    labels = np.asarray([label for _, label, _ in raw], np.int64)
    n_train = len(scans[0][1])
    if len(scans) == 2:
        arrays = (images[:n_train], labels[:n_train], images[n_train:], labels[n_train:])
    else:
        arrays = _split(images, labels)
    try:
        atomic_write(cached, lambda tmp: _savez(tmp, dict(zip(_NPZ_KEYS, arrays))))
    except OSError:
        pass  # an unwritable cache only costs decoding again
    return UserData(path, *arrays, classes, digest[:12])


class LazyImages:
    """Image files as a uint8 N×C×S×S array-like whose rows are decoded when indexed."""

    lazy = True

    def __init__(self, files: list[Path], channels: int, side: int):
        self.files, self.channels, self.side = files, channels, side
        self.shape = (len(files), channels, side, side)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        return _decode_all([(self.files[r], 0, self.files[r].read_bytes()) for r in rows], self.side)


def _stream_folder(path: str, scans: list, classes: list[str]) -> UserData:
    """A large folder: headers checked (readable, one mode), images decoded when read."""
    from PIL import Image

    files = [f for _, samples in scans for f, _ in samples]
    labels = np.asarray([classes.index(c) for _, samples in scans for _, c in samples], np.int64)
    first, sides = {}, Counter()
    for f in files:
        try:
            with Image.open(f) as im:  # lazy: reads the header only
                first.setdefault(im.mode in _GRAY, f)
                sides[min(im.size)] += 1
        except Exception as exc:
            raise DataError(f"cannot read image {f}: {first_line(exc)}") from None
        if len(first) > 1:
            raise DataError(f"mixed image modes: {first[True]} is grayscale, {first[False]} is colour; "
                            f"convert the images to one mode")
    channels, side = 1 if True in first else 3, sides.most_common(1)[0][0]
    if len(scans) == 2:
        n = len(scans[0][1])
        train, test = np.arange(n), np.arange(n, len(files))
    else:
        train, test = _split(np.arange(len(files)), labels)[::2]
    h = hashlib.sha256("\0".join(f"{f}:{os.stat(f).st_size}" for f in files).encode()).hexdigest()

    def part(rows):
        return LazyImages([files[r] for r in rows], channels, side)

    return UserData(path, part(train), labels[train], part(test), labels[test], classes, h[:12])


def _savez(tmp: str, arrays: dict) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)


def _decode_all(raw: list[tuple[Path, int, bytes]], side: int | None = None) -> np.ndarray:
    """uint8 N×C×S×S images; S: ``side``, else the most common shorter side."""
    from PIL import Image

    images, first = [], {}
    for path, _, data in raw:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                gray = im.mode in _GRAY
                first.setdefault(gray, path)
                if len(first) > 1:
                    raise DataError(f"mixed image modes: {first[True]} is grayscale, {first[False]} is colour; "
                                    f"convert the images to one mode")
                images.append(im.convert("L" if gray else "RGB"))
        except DataError:
            raise
        except Exception as exc:  # PIL raises OSError, ValueError, DecompressionBombError, ...
            raise DataError(f"cannot read image {path}: {first_line(exc)}") from None
    side = side or Counter(min(im.size) for im in images).most_common(1)[0][0]
    out = np.empty((len(images), 1 if True in first else 3, side, side), np.uint8)
    for i, im in enumerate(images):
        if im.size != (side, side):
            im = im.resize((side, side), Image.BILINEAR)
        a = np.asarray(im, np.uint8)
        out[i] = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return out


def _split(images: np.ndarray, labels: np.ndarray) -> tuple:
    from stnas.core.errors import ConfigError
    from stnas.data.splits import stratified_split

    try:
        train, test = stratified_split(labels, TEST_FRACTION, 0)
    except ConfigError as exc:
        raise DataError(f"cannot split off a test set: {exc} (each class needs at least 2 images)") from None
    return images[train], labels[train], images[test], labels[test]


@functools.lru_cache(maxsize=4)
def _load_npz(path: str, size: int, mtime: int) -> UserData:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)} (an .npz needs {', '.join(_NPZ_KEYS)})")
            arrays = {k: z[k] for k in z.files if k in _NPZ_KEYS + ("classes",)}
    except DataError:
        raise
    except Exception as exc:  # not a zip, object arrays (pickles), truncated
        raise DataError(f"cannot read {path} as an .npz of arrays: {first_line(exc)}") from None
    xs = [_nchw(arrays[k], k, path) for k in ("x_train", "x_test")]
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(f"{path}: x_train images are {_shape(xs[0])}, x_test images {_shape(xs[1])}; they must match")
    names = arrays.get("classes")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DataError(f"{path}: classes must be a 1-D array of strings, got {names.dtype} {names.shape}")
    names = None if names is None else [str(n) for n in names.tolist()]
    ys = [_labels(arrays[k], len(x), k, path) for k, x in (("y_train", xs[0]), ("y_test", xs[1]))]
    classes = _classes(ys, names, path)
    digest = hashlib.sha256()
    for a in (*xs, *ys):
        digest.update(np.ascontiguousarray(a).tobytes())
    return UserData(path, xs[0], ys[0], xs[1], ys[1], classes, digest.hexdigest()[:12])


def _shape(x: np.ndarray) -> str:
    return "×".join(map(str, x.shape[1:]))


def _nchw(x: np.ndarray, key: str, where: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataError(f"{where}: {key} must be uint8 pixels 0..255, got {x.dtype}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] == x.shape[2] and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif not (x.ndim == 4 and x.shape[2] == x.shape[3] and x.shape[1] in (1, 3)):
        raise DataError(f"{where}: {key} has shape {x.shape}; expected square images N×H×W, N×H×W×C or N×C×H×W "
                        f"with C 1 or 3")
    if len(x) == 0 or x.shape[2] != x.shape[3]:
        raise DataError(f"{where}: {key} must hold at least one square image, got shape {x.shape}")
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray, n: int, key: str, where: str) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{where}: {key} must be a 1-D array of integer labels, got {y.dtype} {y.shape}")
    if len(y) != n:
        raise DataError(f"{where}: {key} has {len(y)} labels for {n} images; give one label per image")
    return y.astype(np.int64)


def _classes(ys: list[np.ndarray], names: list[str] | None, where: str) -> list[str]:
    y_train, y_test = ys
    k = len(names) if names is not None else int(y_train.max()) + 1
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= k):
            bad = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataError(f"{where}: {key} has label {bad}, outside 0..{k - 1}")
    present = np.unique(y_train)
    if len(present) < 2:
        raise DataError(f"{where}: y_train holds {len(present)} class; a classifier needs at least 2")
    absent = sorted(set(range(k)) - set(present.tolist()))
    if absent:
        raise DataError(f"{where}: labels must be 0..{k - 1} with every class in y_train; class {absent[0]} has "
                        f"no training image")
    return names if names is not None else [str(c) for c in range(k)]


# ------------------------------------------------------------------ torch Datasets
def _from_dataset(ds) -> UserData:
    """Materialises a map-style Dataset of (image, label) items, split like one folder."""
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"{type(ds).__name__} is not a map-style Dataset (no len()); pass a folder or .npz") from None
    if n == 0:
        raise DataError(f"the dataset {type(ds).__name__} is empty")
    images, labels = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(f"item {i} of {type(ds).__name__} is not an (image, label) pair")
        images.append(_item_image(item[0], i))
        labels.append(int(item[1]))
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(f"the dataset's images have different shapes ({', '.join(map(str, sorted(shapes)[:2]))}); "
                        f"resize them to one size")
    x = _nchw(np.stack(images), "images", type(ds).__name__)
    y = np.asarray(labels, np.int64)
    names = getattr(ds, "classes", None)
    names = [str(c) for c in names] if isinstance(names, (list, tuple)) else None
    classes = _classes([y, y[:0]], names, type(ds).__name__)
    arrays = _split(x, y)
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:12]
    return UserData(f"{type(ds).__name__}:{digest}", *arrays, classes, digest)


def _item_image(img, i: int) -> np.ndarray:
    """An item's image as uint8 HxW or CxHxW (PIL image, uint8 array/tensor, float in [0, 1])."""
    if hasattr(img, "convert") and hasattr(img, "mode"):  # PIL
        a = np.asarray(img.convert("L" if img.mode in _GRAY else "RGB"))
        return a if a.ndim == 2 else a.transpose(2, 0, 1)
    a = img.numpy() if hasattr(img, "numpy") else np.asarray(img)
    if a.dtype.kind == "f":
        if a.size and (a.min() < 0 or a.max() > 1):
            raise DataError(f"item {i}: float images must hold pixels in [0, 1] (before normalisation)")
        a = np.round(a * 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise DataError(f"item {i}: images must be PIL images, uint8 or float tensors, got {a.dtype}")
    if a.ndim == 3 and a.shape[-1] in (1, 3) and a.shape[0] not in (1, 3):
        a = a.transpose(2, 0, 1)
    return a


def save_npz(dataset, path: str | os.PathLike) -> Path:
    """Writes a Dataset (or any user data :func:`load_user_data` reads) as an ``.npz`` of the
    documented format, with its class names and its train/test split (atomically)."""
    d = load_user_data(dataset)
    arrays = dict(x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test,
                  classes=np.asarray(d.classes, dtype=str))
    return atomic_write(path, lambda tmp: _savez(tmp, arrays))


# ------------------------------------------------------------------ the formats
@dataclass(frozen=True)
class DataFormat:
    """A kind of user data: ``claims(spec)`` says from its shape alone (a suffix, a directory,
    an object) that ``spec`` is of this format, ``exists(path)`` that the file or folder is
    there, ``load(spec)`` reads it. ``noun``: what it is, in messages (``an .npz file``);
    ``path``: named by a path in ``data.dataset`` (else the Python API only)."""

    claims: Callable[[Any], bool]
    exists: Callable[[Path], bool]
    load: Callable[[Any], UserData]
    noun: str
    path: bool = True


def _is_path(spec) -> bool:
    return isinstance(spec, (str, os.PathLike))


def _npz(spec) -> bool:
    return _is_path(spec) and Path(spec).suffix.lower() == ".npz"


DATA_FORMATS: Registry[DataFormat] = Registry("data format", DataError)
DATA_FORMATS.add("folder", DataFormat(lambda s: _is_path(s) and not _npz(s) and is_dir(s), is_dir,
                                      _load_folder_tree, "an image folder"),
                 "an image folder: PATH/CLASS/IMAGE, or PATH/train/ with PATH/val/ or PATH/test/ (ImageFolder layout)")
DATA_FORMATS.add("npz", DataFormat(_npz, is_file, _load_npz_file, "an .npz file"),
                 "an .npz file of uint8 x_train, x_test (NxHxW, NxHxWxC or NxCxHxW), integer y_train, y_test, "
                 "optional classes")
DATA_FORMATS.add("dataset", DataFormat(lambda s: not _is_path(s), lambda p: False, _from_dataset,
                                       "a torch Dataset", path=False),
                 "a map-style torch Dataset of (image, label) items (Python API)")


def data_format(spec) -> str | None:
    """The name of the data format that claims ``spec``, or None."""
    return next((name for name in DATA_FORMATS if DATA_FORMATS.get(name).claims(spec)), None)


def path_formats() -> list[str]:
    """The nouns of the formats a path can name (``an image folder``, ``an .npz file``)."""
    return [DATA_FORMATS.get(n).noun for n in DATA_FORMATS if DATA_FORMATS.get(n).path]
