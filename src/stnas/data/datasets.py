"""Datasets, deterministic splits and deterministic loaders.

``get_dataset(name, split)`` serves the named datasets (:data:`stnas.data.catalog.DATASETS`:
``digits``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagenet``) and the user's data
(:mod:`stnas.data.userdata`) with four splits: ``train``, ``test``, and ``search-train``/``search-val``,
a seeded class-stratified partition of ``train`` (the supernet trains on the first, the
proxy scores on the second; search never sees ``test``). sklearn's digits ship without a
split, so ours is a fixed stratified 80/20 train/test split (``random_state=0``).
A run's data is a :class:`DataSpec` (which the pipeline builds from a run config's ``data``
section); ``dataset_split`` serves its splits.

Small datasets stay in memory as uint8 tensors and are augmented batch-wise with tensor ops
(pad-and-crop plus horizontal flip). ``make_loader`` yields batches whose order *and*
augmentation are a pure function of ``(seed, epoch, rank, world_size)``: the batch sampler
draws, with its own generator, the epoch's permutation and one 62-bit number per position,
and hands ``(index, number)`` pairs to the dataset, which derives the crop offsets and flip
from the number (ImageNet: seeds torchvision's transforms with it). Worker count, worker
seeds and the global RNG play no part, and ``start_batch`` resumes mid-epoch exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from stnas.core.errors import ConfigError, DataError
from stnas.core.limits import is_dir
from stnas.data.catalog import DATASETS, locate
from stnas.data.splits import stratified_split, stratified_subset  # noqa: F401  (also stnas.data.datasets.stratified_subset)
from stnas.data.userdata import is_user_data, load_user_data

if TYPE_CHECKING:
    from stnas.space.searchspace import SearchSpace

SPLITS = ("train", "test", "search-train", "search-val")


@functools.lru_cache(maxsize=8)
def _load_arrays(name: str, where: str | None) -> dict:
    """A named dataset's ``{"train": (images, labels, rows), "test": ...}`` (its catalog loader)."""
    entry = DATASETS.get(name)
    return entry.load(entry, None if where is None else Path(where))


class ArrayDataset(Dataset):
    """An in-memory image dataset: rows ``indices`` of a uint8 NCHW array.

    Items are ``(float CxHxW normalized tensor, int label)``. An item key is a position or a
    ``(position, draw)`` pair from ``make_loader``; with a bare position the augmentation
    draws from torch's global RNG. Batches go through ``__getitems__`` as whole arrays.
    The pixel work is NumPy (single-threaded): tiny OpenMP-parallel torch ops cost 100x more
    when the 2 cores are oversubscribed (0.7 vs 100 ms per 128 Fashion-MNIST images, measured).
    """

    def __init__(self, name, images, labels, indices, *, augment, image_size, scale=255.0, info=None):
        info = info or DATASETS.get(name).info()
        self.name, self.num_classes, self.augment, self.image_size = name, info["classes"], augment, image_size
        self.indices = np.asarray(indices, np.int64)  # rows of the source array (provenance)
        self.targets = np.asarray(labels)[self.indices]
        # an array, or rows decoded on demand (stnas.data.userdata.LazyImages: large image folders)
        images = images if getattr(images, "lazy", False) else np.asarray(images)
        self._images, self._pad, self._flip, self._scale = images, info["pad"], info["flip"], scale
        self._mean = np.asarray(info["mean"], np.float32).reshape(1, -1, 1, 1)
        self._std = np.asarray(info["std"], np.float32).reshape(1, -1, 1, 1)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys):
        pos = np.asarray([k[0] if isinstance(k, tuple) else k for k in keys], np.int64)
        x = self._images[self.indices[pos]]
        if self.augment and (self._pad or self._flip):
            draw = (np.asarray([k[1] for k in keys], np.int64) if isinstance(keys[0], tuple)
                    else torch.randint(0, 2**62, (len(keys),)).numpy())
            x = self._crop_flip(x, draw)
        x = torch.from_numpy((x.astype(np.float32) / self._scale - self._mean) / self._std)
        if self.image_size != x.shape[-1]:  # bilinear commutes with the per-channel affine normalization
            x = F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
        return list(zip(x.unbind(0), self.targets[pos].tolist()))

    def _crop_flip(self, x, draw):
        """Zero-pad, crop at offsets (draw % k, draw // k % k), flip if draw // k^2 is odd: one gather."""
        b, c, h, w = x.shape
        p, k = self._pad, 2 * self._pad + 1
        cols = (draw // k % k)[:, None] + np.arange(w)
        if self._flip:
            cols = np.where((draw // (k * k) % 2 == 1)[:, None], cols[:, ::-1], cols)
        flat = (((draw % k)[:, None] + np.arange(h))[:, :, None] * (w + 2 * p) + cols[:, None, :]).reshape(b, 1, -1)
        xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))).reshape(b, c, -1)
        return np.take_along_axis(xp, np.broadcast_to(flat, (b, c, h * w)), 2).reshape(b, c, h, w)


class FolderDataset(Dataset):
    """ImageNet-style ImageFolder subset with torchvision transforms (PIL)."""

    def __init__(self, name, folder, indices, transform):
        self.name, self.num_classes = name, len(folder.classes)
        self.indices = np.asarray(indices, np.int64)
        self.targets = np.asarray(folder.targets, np.int64)[self.indices]
        self._folder, self._transform = folder, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        pos, draw = key if isinstance(key, tuple) else (key, None)
        path, label = self._folder.samples[self.indices[pos]]
        with torch.random.fork_rng(devices=[], enabled=draw is not None):
            if draw is not None:
                torch.manual_seed(draw)
            return self._transform(self._folder.loader(path)), int(label)


@functools.lru_cache(maxsize=4)
def _image_folder(path: str):
    import torchvision.datasets as tvd
    return tvd.ImageFolder(path)


def get_dataset(name: str, split: str, root=None, *, image_size=None, augment=None, val_fraction=None,
                split_seed: int = 0, limit=None, download: bool = True) -> Dataset:
    """Load one split of a dataset.

    Args:
        name: a named dataset (``stnas.data.catalog.DATASETS``), or user data (a folder, an
            ``.npz`` path, a Dataset; see ``stnas.data.userdata``).
        split: ``train``, ``test``, ``search-train`` or ``search-val`` (the last two partition
            ``train``).
        root: a data directory looked in first (then ``$STNAS_DATA``, the system copy, the cache).
        image_size: output side length; default the dataset's own (bilinear resize otherwise).
        augment: default on for ``train``/``search-train``, off otherwise (digits: never any).
        val_fraction: search-val share (float) or count per class (int); default per dataset.
        split_seed: seeds the search split and the ``limit`` subset.
        limit: keep a class-stratified subset of this many images of the split.
        download: allow a torchvision download into ``stnas.data.catalog.CACHE_DIR`` when
            nothing is found.

    Raises:
        DataError: unknown name or split, or the data is missing or unreadable.
    """
    user = load_user_data(name) if is_user_data(name) else None
    entry = None if user is not None else DATASETS.get(name)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    info = user.info() if user else entry.info()
    image_size = image_size or info["size"]
    augment = split in ("train", "search-train") if augment is None else bool(augment)
    val = info["val"] if val_fraction is None else val_fraction

    def indices_for(targets):
        y = np.asarray(targets)
        idx = np.arange(len(y))
        if split.startswith("search"):
            idx = stratified_split(y, val, split_seed)[split == "search-val"]
        if limit is not None and limit < len(idx):
            idx = idx[stratified_subset(y[idx], limit, split_seed)]
        return idx

    if user is not None:
        images, labels = (user.x_test, user.y_test) if split == "test" else (user.x_train, user.y_train)
        return ArrayDataset(user.name, images, labels, indices_for(labels), augment=augment, image_size=image_size,
                            info=info)
    if root is not None and not is_dir(root):
        raise DataError(f"data root {root} is not a directory (--data-root / data.root: the folder that holds "
                        f"the {name} files)")
    where = None if entry.files is None else str(locate(name, root, download))
    part = "test" if split == "test" else "train"
    if entry.folders:  # torchvision PIL transforms, as in its reference training recipe
        import torchvision.transforms as T
        norm = [T.ToTensor(), T.Normalize(entry.mean, entry.std)]
        tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), *norm] if augment else
                       [T.Resize(round(image_size * 256 / 224)), T.CenterCrop(image_size), *norm])
        folder = _image_folder(str(Path(where) / ("val" if part == "test" else "train")))
        return FolderDataset(name, folder, indices_for(folder.targets), tf)
    images, labels, base = _load_arrays(name, where)[part]
    rows = base[indices_for(labels[base])]
    return ArrayDataset(name, images, labels, rows, augment=augment, image_size=image_size, scale=entry.pixel_scale,
                        info=info)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class EpochBatchSampler(Sampler):
    """Batches of ``(position, draw)`` pairs, a pure function of (seed, epoch, rank, world_size).

    Train: a seeded permutation, cut to a multiple of ``world_size``, dealt round-robin (like
    ``DistributedSampler`` with ``drop_last``), so ranks get disjoint equal shards. Eval: the
    natural order cut into contiguous blocks whose sizes differ by at most one; no sample is
    padded or repeated, so summed counts over ranks are exact. ``start_batch`` skips batches
    without touching the data. Call ``set_epoch`` to reuse a loader (persistent workers).
    """

    def __init__(self, n, batch_size, *, train, seed, epoch, start_batch, rank, world_size, drop_last):
        if not (0 <= rank < world_size and batch_size >= 1):
            raise ConfigError(f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, "
                              f"{world_size}")
        self.n, self.batch_size, self.train, self.seed = n, batch_size, train, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.set_epoch(epoch, start_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch
        if not 0 <= start_batch <= self.num_batches:
            raise ConfigError(f"start_batch {start_batch} is outside 0..{self.num_batches} for this loader")

    @property
    def shard_size(self) -> int:
        n, w, r = self.n, self.world_size, self.rank
        return n // w if self.train else (r + 1) * n // w - r * n // w

    @property
    def num_batches(self) -> int:
        return self.shard_size // self.batch_size if self.drop_last else -(-self.shard_size // self.batch_size)

    def order(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's full epoch: (positions, augmentation draws)."""
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        perm = torch.randperm(self.n, generator=g) if self.train else torch.arange(self.n)
        draws = torch.randint(0, 2**62, (self.n,), generator=g)
        n, w, r = self.n, self.world_size, self.rank
        keep = torch.arange(r, n // w * w, w) if self.train else torch.arange(r * n // w, (r + 1) * n // w)
        return perm[keep], draws[keep]

    def __iter__(self):
        pos, draws = self.order()
        pairs = list(zip(pos.tolist(), draws.tolist()))
        for b in range(self.start_batch, self.num_batches):
            yield pairs[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.num_batches - self.start_batch


def make_loader(dataset, batch_size: int, *, train: bool, seed: int = 0, epoch: int = 0, start_batch: int = 0,
                workers: int = 0, device="cpu", rank: int = 0, world_size: int = 1, drop_last=None) -> DataLoader:
    """A DataLoader whose batches (order and augmentation) depend only on its arguments.

    Args:
        train: shuffle (per seed and epoch) and drop the last partial batch by default.
        start_batch: resume an epoch: the first ``start_batch`` batches are skipped unread.
        workers: worker processes (persistent when > 0); results do not depend on it.
        device: pin memory when it is a CUDA device.
        drop_last: override the default (``train``).

    Raises:
        ConfigError: a bad rank, batch size or start batch, or no full batch per rank.
    """
    drop_last = train if drop_last is None else drop_last
    sampler = EpochBatchSampler(len(dataset), batch_size, train=train, seed=seed, epoch=epoch,
                                start_batch=start_batch, rank=rank, world_size=world_size, drop_last=drop_last)
    if drop_last and sampler.num_batches == 0:
        raise ConfigError(f"batch_size {batch_size} exceeds the {sampler.shard_size} samples per rank; "
                          "lower the batch size")
    # Own generator: DataLoader draws its worker base seed from it, never from the global RNG.
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=torch.device(device).type == "cuda",
                      generator=torch.Generator().manual_seed(_seed(seed, epoch, rank)))


def check_data_fits(space: SearchSpace, dataset, image_size=None) -> None:
    """Raises DataError unless ``dataset``'s channels, classes and (unless ``image_size``
    asks for a resize) image size are the space's."""
    check_fits(space, dataset, image_size)


@dataclass(frozen=True)
class DataSpec:
    """The data a run trains and scores on: which dataset, how it is split and cut.

    Attributes:
        dataset: a name of ``DATASETS``, or user data (``stnas.data.userdata``).
        seed: the run's seed; it seeds the split when ``split_seed`` is None.
        root: a data directory looked in first.
        image_size: the side networks see; None: the space's input size.
        val_fraction: search-val share (float) or count per class (int); None: per dataset.
        limit: supernet training on a stratified subset of search-train of this size.
        val_limit: proxy scoring on a stratified subset of search-val of this size.
        split_seed: seeds the search split and the subsets in place of ``seed``.
        workers: loader worker processes (results do not depend on them).
    """

    dataset: Any
    seed: int
    root: str | None = None
    image_size: int | None = None
    val_fraction: float | int | None = None
    limit: int | None = None
    val_limit: int | None = None
    split_seed: int | None = None
    workers: int = 0

    @property
    def data_seed(self) -> int:
        """The seed of the split and the subsets: ``split_seed``, else ``seed``."""
        return self.seed if self.split_seed is None else self.split_seed


def dataset_split(data: DataSpec, space: SearchSpace, split: str, limit: int | None = None, augment=None):
    """One split of ``data``, at the space's input size unless ``data.image_size`` says
    otherwise; ``limit``: a stratified subset of this many images (``data.limit`` or
    ``data.val_limit``, as the caller needs)."""
    check_data_fits(space, data.dataset, data.image_size)
    return get_dataset(data.dataset, split, data.root, image_size=data.image_size or space.input_size,
                       val_fraction=data.val_fraction, split_seed=data.data_seed, limit=limit, augment=augment)


# ---------------------------------------------- what a model needs to know about its data
def describe(dataset) -> dict:
    """``{dataset, channels, size, classes, mean, std, pixel_scale, class_names}``.

    ``size`` is None for image-folder datasets such as imagenet (their images vary; the recipe
    crops them). The model's
    input is ``(pixels / pixel_scale - mean) / std`` per channel, NCHW.
    """
    if is_user_data(dataset):
        d = load_user_data(dataset)
        mean, std = d.mean_std
        return dict(dataset=d.name, channels=d.channels, size=d.size, classes=len(d.classes), mean=list(mean),
                    std=list(std), pixel_scale=255.0, class_names=list(d.classes))
    e = DATASETS.get(dataset)
    return dict(dataset=dataset, channels=len(e.mean), size=None if e.folders else e.size, classes=e.classes,
                mean=list(e.mean), std=list(e.std), pixel_scale=e.pixel_scale, class_names=e.names())


def check_fits(space, dataset, image_size=None) -> dict:
    """The data's description, after checking that ``space`` fits it.

    Channels and classes must match; so must the image size unless ``image_size``
    (``data.image_size``) asks for a resize.

    Raises:
        DataError: the space does not fit the data (one line naming both).
    """
    d = describe(dataset)
    size_ok = image_size is not None or d["size"] in (None, space.input_size)
    if d["channels"] != space.input_channels or d["classes"] != space.num_classes or not size_ok:
        size = f"{d['size']}×{d['size']}, " if d["size"] else ""
        hint = "" if size_ok or d["channels"] != space.input_channels or d["classes"] != space.num_classes else \
            f"; pass data.image_size={space.input_size} to resize"
        raise DataError(f"dataset {d['dataset']} ({size}{d['channels']} channels, {d['classes']} classes) does not fit "
                        f"space {space.name!r} ({space.input_size}×{space.input_size}, {space.input_channels} "
                        f"channels, {space.num_classes} classes){hint}")
    return d
