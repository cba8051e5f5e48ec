"""Tests for stnas.data.datasets: IDX reading, splits, lookup errors, deterministic loaders. No network."""

import gzip
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from stnas.core.errors import ConfigError, DataError
from stnas.data import catalog
from stnas.data.catalog import DATASETS, read_idx
from stnas.data.datasets import ArrayDataset, get_dataset, make_loader, stratified_split, stratified_subset

FMNIST = Path("/usr/share/datasets/fashion-mnist")
needs_fmnist = pytest.mark.skipif(not (FMNIST / "train-images-idx3-ubyte.gz").exists(),
                                  reason="Debian dataset-fashion-mnist not installed in " + str(FMNIST))
IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def to_pixels(x):
    """Undo Fashion-MNIST's normalization (the published constants) back to uint8 pixels."""
    return torch.round((x * 0.3530 + 0.2860) * 255).to(torch.uint8).numpy()


def write_idx(path, arr, code, compress=False):
    """Write an IDX file by the format's definition (independent of the reader)."""
    body = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body += arr.astype(IDX_CODES[code]).tobytes()
    Path(path).write_bytes(gzip.compress(body) if compress else body)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=4), code=st.sampled_from(sorted(IDX_CODES)),
       compress=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_read_idx_roundtrip(tmp_path_factory, shape, code, compress, seed):
    dt = np.dtype(IDX_CODES[code])
    rng = np.random.default_rng(seed)
    if dt.kind == "f":
        arr = rng.standard_normal(shape).astype(dt)
    else:
        info = np.iinfo(dt)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)
    p = tmp_path_factory.mktemp("idx") / "x.idx"
    write_idx(p, arr, code, compress)
    out = read_idx(p)
    assert out.shape == tuple(shape)
    assert out.dtype == dt.newbyteorder("=")
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    write_idx(tmp_path / "ok", np.arange(12, dtype=np.uint8).reshape(3, 4), 0x08)
    raw = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    (tmp_path / "badgz").write_bytes(gzip.compress(raw)[:-8])
    for name in ("short", "magic", "badgz", "missing"):
        with pytest.raises(DataError):
            read_idx(tmp_path / name)


@settings(max_examples=30, deadline=None)
@given(counts=st.lists(st.integers(3, 40), min_size=1, max_size=6), frac=st.floats(0.05, 0.6),
       seed=st.integers(0, 1000))
def test_stratified_split_properties(counts, frac, seed):
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    tr, va = stratified_split(y, frac, seed)
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    for c, n in enumerate(counts):
        want = min(max(1, int(np.floor(frac * n + 0.5))), n - 1)
        assert (y[va] == c).sum() == want
    t2, v2 = stratified_split(y, frac, seed)
    np.testing.assert_array_equal(va, v2)
    # a count per class
    _, va = stratified_split(y, 2, seed)
    assert Counter(y[va].tolist()) == {c: 2 for c in range(len(counts))}


def test_stratified_subset_proportional_and_nested():
    y = np.repeat([0, 1, 2], [100, 200, 300])
    small, big = stratified_subset(y, 60, 3), stratified_subset(y, 300, 3)
    assert Counter(y[small].tolist()) == {0: 10, 1: 20, 2: 30}
    assert Counter(y[big].tolist()) == {0: 50, 1: 100, 2: 150}
    assert set(small) <= set(big)


def test_digits_shapes_and_normalization():
    raw = load_digits()
    tr = get_dataset("digits", "train", augment=False)
    te = get_dataset("digits", "test")
    assert (len(tr), len(te)) == (1437, 360)
    assert tr.num_classes == 10 and tr.name == "digits"
    x, y = tr[5]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and isinstance(y, int)
    assert y == raw.target[tr.indices[5]] == tr.targets[5]
    xs = torch.stack([tr[i][0] for i in range(len(tr))])
    assert abs(xs.mean().item()) < 0.05 and abs(xs.std().item() - 1) < 0.05
    # normalization is affine: min-max rescaling gives back the 0..16 image's shape
    scaled = (xs[5, 0] - xs[5, 0].min()) / (xs[5, 0].max() - xs[5, 0].min())
    img = raw.images[tr.indices[5]]
    np.testing.assert_allclose(scaled.numpy(), (img - img.min()) / (img.max() - img.min()), atol=1e-5)
    assert get_dataset("digits", "test", image_size=28)[0][0].shape == (1, 28, 28)


def test_digits_splits_disjoint_stratified_deterministic():
    y = load_digits().target
    tr, te = get_dataset("digits", "train"), get_dataset("digits", "test")
    st_, sv = get_dataset("digits", "search-train"), get_dataset("digits", "search-val")
    assert set(st_.indices).isdisjoint(sv.indices)
    assert sorted([*st_.indices, *sv.indices]) == sorted(tr.indices)
    assert set(te.indices).isdisjoint(tr.indices) and len(set(te.indices) | set(tr.indices)) == len(y)
    for c in range(10):
        n_c = (y[tr.indices] == c).sum()
        assert (y[sv.indices] == c).sum() == int(np.floor(0.2 * n_c + 0.5))
        assert abs((y[te.indices] == c).sum() - 0.2 * (y == c).sum()) <= 1
    np.testing.assert_array_equal(sv.indices, get_dataset("digits", "search-val").indices)
    assert not np.array_equal(sv.indices, get_dataset("digits", "search-val", split_seed=1).indices)
    lim = get_dataset("digits", "search-train", limit=100)
    assert len(lim) == 100 and set(lim.indices) <= set(st_.indices)
    assert all(abs(n - 10) <= 1 for n in Counter(lim.targets.tolist()).values())


def test_augment_defaults():
    assert get_dataset("digits", "search-train").augment and not get_dataset("digits", "search-val").augment
    assert not get_dataset("digits", "test").augment and get_dataset("digits", "test", augment=True).augment


@needs_fmnist
def test_fashion_mnist_matches_files_and_normalization():
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    te = get_dataset("fashion-mnist", "test")
    assert len(te) == 10000 and te.num_classes == 10
    xb, yb = next(iter(make_loader(te, 10000, train=False)))
    assert xb.shape == (10000, 1, 28, 28) and xb.dtype == torch.float32
    np.testing.assert_array_equal(to_pixels(xb[:, 0]), raw)
    assert abs(xb.mean().item()) < 0.02 and abs(xb.std().item() - 1) < 0.02
    assert Counter(yb.tolist()) == {c: 1000 for c in range(10)}


@needs_fmnist
def test_fashion_mnist_search_split_is_train():
    with gzip.open(FMNIST / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    st_, sv = get_dataset("fashion-mnist", "search-train"), get_dataset("fashion-mnist", "search-val")
    assert (len(st_), len(sv)) == (50000, 10000)
    assert Counter(sv.targets.tolist()) == {c: 1000 for c in range(10)}
    assert set(st_.indices).isdisjoint(sv.indices) and len(set(st_.indices) | set(sv.indices)) == 60000
    xb, _ = next(iter(make_loader(sv, 256, train=False)))
    pix = to_pixels(xb[:, 0]).reshape(-1, 784)
    np.testing.assert_array_equal(pix, raw[sv.indices[:256]])


@needs_fmnist
def test_fashion_mnist_augmentation_is_crop_and_flip():
    with gzip.open(FMNIST / "train-images-idx3-ubyte.gz") as f:
        raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    ds = get_dataset("fashion-mnist", "search-train")
    xb, _ = next(iter(make_loader(ds, 32, train=True, seed=3)))
    order = make_loader(ds, 32, train=True, seed=3).batch_sampler.order()[0][:32]
    seen_shift = 0
    for img, pos in zip(xb[:, 0], order.tolist()):
        got = to_pixels(img)
        padded = np.pad(raw[ds.indices[pos]], 2)
        cands = [(dy, dx, fl) for dy in range(5) for dx in range(5) for fl in (0, 1)
                 if np.array_equal(got, (lambda c: c[:, ::-1] if fl else c)(padded[dy:dy + 28, dx:dx + 28]))]
        assert cands, "augmented image is not a 2-px crop/flip of the original"
        seen_shift += (2, 2, 0) not in cands
    assert seen_shift > 16


def test_missing_data_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(DATASETS.get("fashion-mnist").files, "system_dir", str(tmp_path / "sys"))
    monkeypatch.setattr(catalog, "CACHE_DIR", tmp_path / "cache")
    (tmp_path / "root").mkdir()  # a root that exists but does not hold the data: looked in, then the rest
    with pytest.raises(DataError) as e:
        get_dataset("fashion-mnist", "train", root=tmp_path / "root", download=False)
    msg = str(e.value)
    for place in ("root", "env", "env/fashion-mnist", "sys", "cache"):
        assert str(tmp_path / place) in msg
    for hint in ("apt-get install dataset-fashion-mnist", "--data-root", "STNAS_DATA"):
        assert hint in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="env/cifar10"):
        get_dataset("cifar10", "train", download=False)
    with pytest.raises(DataError, match="train/ and val/"):
        get_dataset("imagenet", "train", root=tmp_path)
    with pytest.raises(DataError, match="dataset must be one of digits, fashion-mnist"):
        get_dataset("mnist", "train")
    # a root that does not exist is a typo, not a place to skip: named, before anything else
    for name in ("fashion-mnist", "digits"):
        with pytest.raises(DataError, match=f"data root {tmp_path / 'nowhere'} is not a directory"):
            get_dataset(name, "train", root=tmp_path / "nowhere")


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("STNAS_DATA", raising=False)
    monkeypatch.setattr(DATASETS.get("fashion-mnist").files, "system_dir", None)
    monkeypatch.setattr(catalog, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    with pytest.raises(DataError, match="download into .*cache failed: OSError: Network is unreachable"):
        get_dataset("fashion-mnist", "train")


def test_root_comes_first_and_is_read(tmp_path, monkeypatch):
    monkeypatch.delenv("STNAS_DATA", raising=False)
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    xs = {"train": rng.integers(0, 256, (60, 28, 28)), "t10k": rng.integers(0, 256, (20, 28, 28))}
    for part, n in (("train", 60), ("t10k", 20)):
        write_idx(d / f"{part}-images-idx3-ubyte.gz", xs[part], 0x08, compress=True)
        write_idx(d / f"{part}-labels-idx1-ubyte", np.arange(n) % 10, 0x08)  # one uncompressed
    te = get_dataset("fashion-mnist", "test", root=tmp_path, download=False)
    assert len(te) == 20 and te.targets.tolist() == [i % 10 for i in range(20)]
    x0 = to_pixels(te[3][0][0])
    np.testing.assert_array_equal(x0, xs["t10k"][3])
    sv = get_dataset("fashion-mnist", "search-val", root=tmp_path, val_fraction=2, download=False)
    assert len(sv) == 20


class KeyRecorder(Dataset):
    """Returns each key (position, augmentation draw) and logs what was loaded."""

    def __init__(self, n):
        self.n, self.loaded = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        self.loaded.append(key[0])
        return key[0], key[1]


def run(loader):
    return [(p.tolist(), d.tolist()) for p, d in loader]


def test_loader_order_is_pure_function_of_seed_epoch():
    a = run(make_loader(KeyRecorder(100), 16, train=True, seed=1, epoch=2))
    b = run(make_loader(KeyRecorder(100), 16, train=True, seed=1, epoch=2))
    assert a == b and len(a) == 6 and all(len(p) == 16 for p, _ in a)
    flat = [i for p, _ in a for i in p]
    assert len(set(flat)) == 96 and set(flat) <= set(range(100))
    assert flat != sorted(flat)
    assert run(make_loader(KeyRecorder(100), 16, train=True, seed=1, epoch=3)) != a
    assert run(make_loader(KeyRecorder(100), 16, train=True, seed=2, epoch=2)) != a
    state = torch.get_rng_state()
    run(make_loader(KeyRecorder(100), 16, train=True, seed=1, epoch=2))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed
    reused = make_loader(KeyRecorder(100), 16, train=True, seed=1, epoch=0)
    reused.batch_sampler.set_epoch(2)
    assert run(reused) == a
    assert make_loader(KeyRecorder(100), 16, train=True, device="cuda").pin_memory
    assert not make_loader(KeyRecorder(100), 16, train=True).pin_memory


def test_start_batch_is_the_tail_and_skips_loading():
    full = run(make_loader(KeyRecorder(100), 16, train=True, seed=5, epoch=1))
    rec = KeyRecorder(100)
    loader = make_loader(rec, 16, train=True, seed=5, epoch=1, start_batch=4)
    assert len(loader) == 2
    tail = run(loader)
    assert tail == full[4:]
    assert sorted(rec.loaded) == sorted(i for p, _ in full[4:] for i in p)
    with pytest.raises(ConfigError):
        make_loader(KeyRecorder(100), 16, train=True, start_batch=7)
    with pytest.raises(ConfigError):
        make_loader(KeyRecorder(10), 16, train=True)


def test_train_shards_are_disjoint_and_equal():
    shards = [[i for p, _ in run(make_loader(KeyRecorder(101), 10, train=True, seed=0, rank=r, world_size=2,
                                             drop_last=False)) for i in p] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 50
    assert set(shards[0]).isdisjoint(shards[1]) and len(set(shards[0]) | set(shards[1])) == 100
    single = [i for p, _ in run(make_loader(KeyRecorder(101), 10, train=True, seed=0, drop_last=False)) for i in p]
    assert set(shards[0]) | set(shards[1]) <= set(single)


def test_eval_shards_cover_exactly_once():
    loaders = [make_loader(KeyRecorder(101), 8, train=False, rank=r, world_size=3) for r in range(3)]
    got = [i for ld in loaders for p, _ in run(ld) for i in p]
    assert got == list(range(101))
    assert run(make_loader(KeyRecorder(101), 8, train=False))[-1][0] == list(range(96, 101))


def small_cifar(augment=True):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 3, 32, 32), dtype=np.uint8)
    return ArrayDataset("cifar10", images, np.arange(64) % 10, np.arange(64), augment=augment, image_size=32)


@pytest.mark.slow
def test_augmentation_deterministic_across_workers():
    ds = small_cifar()
    ref = [x for x, _ in make_loader(ds, 16, train=True, seed=4, epoch=0)]
    again = [x for x, _ in make_loader(ds, 16, train=True, seed=4, epoch=0, workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(ref, again)) and len(again) == 4
    other = [x for x, _ in make_loader(ds, 16, train=True, seed=4, epoch=1)]
    assert not all(torch.equal(a, b) for a, b in zip(ref, other))
    plain = [x for x, _ in make_loader(small_cifar(augment=False), 16, train=True, seed=4, epoch=0)]
    assert not all(torch.equal(a, b) for a, b in zip(ref, plain))  # augmentation did something


def test_imagenet_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for part, n in (("train", 4), ("val", 1)):
        for cls in ("a", "b"):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / part / cls / f"{i}.png")
    tr = get_dataset("imagenet", "search-train", root=tmp_path, image_size=32, val_fraction=1)
    sv = get_dataset("imagenet", "search-val", root=tmp_path, image_size=32, val_fraction=1)
    te = get_dataset("imagenet", "test", root=tmp_path, image_size=32)
    assert (len(tr), len(sv), len(te)) == (6, 2, 2) and tr.num_classes == 2
    assert sorted(sv.targets.tolist()) == [0, 1] and set(tr.indices).isdisjoint(sv.indices)
    assert te[0][0].shape == (3, 32, 32)
    a = next(iter(make_loader(tr, 6, train=True, seed=1)))[0]
    b = next(iter(make_loader(tr, 6, train=True, seed=1)))[0]
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b)


def test_split_seed_fixes_the_data_across_training_seeds():
    from stnas.data.datasets import DataSpec, dataset_split
    from stnas.space.catalog import load_space

    space = load_space("digits")

    def val(seed, split_seed=None):
        return dataset_split(DataSpec("digits", seed=seed, split_seed=split_seed), space, "search-val", 100).indices

    base = val(0)
    assert len(base) == 100
    np.testing.assert_array_equal(val(1, split_seed=0), base)
    assert not np.array_equal(val(1), base)  # by default the seed splits
    np.testing.assert_array_equal(val(0, split_seed=1), val(1))


# ------------------------------------------------------------------ every named dataset
@pytest.mark.parametrize("name", DATASETS.names())
def test_every_named_dataset_is_well_formed_and_offered(name, tmp_path, monkeypatch):
    from stnas.cli.common import data_help
    from stnas.data.datasets import describe
    from stnas.pipeline.checks import check_dataset

    e = DATASETS.get(name)
    assert e.classes >= 2 and e.size >= 1 and e.pad >= 0 and e.pixel_scale > 0
    assert len(e.mean) == len(e.std) in (1, 3) and all(0 <= m <= 1 for m in e.mean) and min(e.std) > 0
    assert 0 < e.val < 1 if isinstance(e.val, float) else e.val >= 1
    assert len(e.names()) == e.classes == len(set(e.names()))
    assert (e.load is None) == e.folders and (e.files is not None or not e.folders)
    d = describe(name)
    assert (d["channels"], d["classes"], d["class_names"]) == (len(e.mean), e.classes, e.names())
    assert check_dataset(name) == name and name in data_help()
    if e.files is None:  # shipped with a package: it loads here
        ds = get_dataset(name, "test", augment=False)
        x, y = ds[0]
        assert x.shape == (len(e.mean), e.size, e.size) and 0 <= y < e.classes and ds.num_classes == e.classes
        return
    assert e.files.subdirs and e.files.markers and e.files.how
    monkeypatch.setenv("STNAS_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(e.files, "system_dir", None)
    monkeypatch.setattr(catalog, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(DataError) as info:  # found nowhere: every place and how to get it, in one line
        get_dataset(name, "train", root=tmp_path, download=False)
    msg = str(info.value)
    assert "\n" not in msg and e.files.how in msg and str(tmp_path / "env") in msg and str(tmp_path) in msg


def test_an_unknown_dataset_name_is_one_line_with_a_hint():
    from stnas.pipeline.checks import check_dataset

    with pytest.raises(ConfigError, match="did you mean 'cifar10'") as info:
        check_dataset("cifar-10")
    assert "\n" not in str(info.value) and "an image folder or an .npz file" in str(info.value)
