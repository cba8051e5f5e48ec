"""User data (stnas.data.userdata): image folders in both layouts, .npz, torch Datasets, and
every bad input refused in one line with exit code 2 before anything is written."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stnas.cli import main
from stnas.core.errors import DataError
from stnas.data.datasets import describe, get_dataset
from stnas.data.userdata import DATA_FORMATS, data_format, is_user_data, load_user_data, save_npz
from stnas.space.catalog import load_space

from synthdata import images, write_folder


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))


def test_single_folder_is_split_stratified_with_names_and_stats(tmp_path):
    root = write_folder(tmp_path / "f", split=False, classes=3, per_class=10, size=12, channels=3)
    d = load_user_data(str(root))
    assert d.classes == ["blue", "green", "red"] and d.channels == 3 and d.size == 12
    assert np.bincount(d.y_test).tolist() == [2, 2, 2] and np.bincount(d.y_train).tolist() == [8, 8, 8]
    # every image lands in exactly one split, unchanged (PNG is lossless)
    x, y = images(3, 10, 12, 3)
    ours = sorted(a.tobytes() for a in np.concatenate([d.x_train, d.x_test]).transpose(0, 2, 3, 1))
    assert ours == sorted(a.tobytes() for a in x)
    px = d.x_train.astype(np.float64) / 255
    assert np.allclose(d.mean_std[0], px.mean((0, 2, 3)), atol=1e-6)
    assert np.allclose(d.mean_std[1], px.std((0, 2, 3)), atol=1e-6)


def test_split_layout_keeps_the_given_split(tmp_path):
    root = write_folder(tmp_path / "f", split=True, classes=3, per_class=8, size=8, channels=1)
    d = load_user_data(str(root))
    assert d.channels == 1 and d.size == 8 and len(d.y_test) == 6 and len(d.y_train) == 18
    info = describe(str(root))
    assert info["class_names"] == ["blue", "green", "red"] and info["classes"] == 3
    x, y = get_dataset(str(root), "test")[0]
    assert x.shape == (1, 8, 8) and y == 0
    norm = torch.stack([get_dataset(str(root), "train", augment=False)[i][0] for i in range(18)])
    assert abs(norm.mean().item()) < 1e-4 and abs(norm.std(unbiased=False).item() - 1) < 1e-3


def test_decoded_folder_is_cached_by_content(tmp_path):
    root = write_folder(tmp_path / "f", split=False, per_class=6, size=8)
    load_user_data(str(root))
    cached = list((tmp_path / "cache" / "decoded").glob("*.npz"))
    assert len(cached) == 1
    img = root / "red" / os.listdir(root / "red")[0]
    Image.new("RGB", (8, 8), (0, 0, 0)).save(img)  # new content: a new key
    d = load_user_data(str(root))
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npz"))) == 2
    assert (np.concatenate([d.x_train, d.x_test]) == 0).all(axis=(1, 2, 3)).sum() == 1


def test_mixed_sizes_are_resized_to_the_most_common_side(tmp_path):
    root = write_folder(tmp_path / "f", split=False, per_class=6, size=8)
    Image.new("RGB", (20, 12), (255, 0, 0)).save(root / "red" / "big.png")
    d = load_user_data(str(root))
    assert d.size == 8 and len(d.y_train) + len(d.y_test) == 19


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.sampled_from(["NHWC", "NCHW", "NHW"]), channels=st.sampled_from([1, 3]),
       size=st.integers(4, 9), classes=st.integers(2, 4), seed=st.integers(0, 2**16))
def test_npz_layouts_round_trip(tmp_path, layout, channels, size, classes, seed):
    channels = 1 if layout == "NHW" else channels
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (classes * 3, size, size, channels), dtype=np.uint8)
    y = np.arange(classes * 3) % classes
    stored = {"NHWC": x, "NCHW": x.transpose(0, 3, 1, 2), "NHW": x[..., 0]}[layout]
    path = tmp_path / f"d{seed}-{layout}-{channels}-{size}-{classes}.npz"
    np.savez(path, x_train=stored, y_train=y, x_test=stored[:2], y_test=y[:2])
    d = load_user_data(str(path))
    assert np.array_equal(d.x_train, x.transpose(0, 3, 1, 2)) and d.y_train.tolist() == y.tolist()
    assert d.classes == [str(c) for c in range(classes)] and d.channels == channels and d.size == size


def test_npz_class_names_and_dataset_objects(tmp_path):
    x, y = images(3, 10, 8, 3)
    np.savez(tmp_path / "n.npz", x_train=x, y_train=y, x_test=x[:3], y_test=y[:3],
             classes=np.array(["a", "b", "c"]))
    assert describe(str(tmp_path / "n.npz"))["class_names"] == ["a", "b", "c"]

    class Squares(torch.utils.data.Dataset):
        classes = ["dark", "mid", "light"]

        def __len__(self):
            return 30

        def __getitem__(self, i):
            return torch.from_numpy(x[i]).permute(2, 0, 1).float() / 255, int(y[i])

    d = load_user_data(Squares())
    assert d.classes == Squares.classes and d.size == 8 and len(d.y_train) == 24
    assert get_dataset(Squares(), "test")[0][0].shape == (3, 8, 8)
    save_npz(Squares(), tmp_path / "s.npz")
    back = load_user_data(str(tmp_path / "s.npz"))
    assert back.classes == Squares.classes and np.array_equal(back.x_train, d.x_train)


# ------------------------------------------------------------------ bad input
def _bad_folder(kind, tmp):
    root = tmp / kind
    if kind == "empty":
        root.mkdir()
    elif kind == "no-images":
        write_folder(root, split=False, per_class=4, size=8)
        (root / "zebra").mkdir()
        (root / "zebra" / "notes.txt").write_text("x")
    elif kind == "one-class":
        write_folder(root, split=False, classes=1, per_class=6, size=8)
    elif kind == "unreadable":
        write_folder(root, split=False, per_class=4, size=8)
        (root / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    elif kind == "mixed-mode":
        write_folder(root, split=False, per_class=4, size=8)
        Image.new("L", (8, 8), 128).save(root / "red" / "gray.png")
    elif kind == "train-only":
        write_folder(root / "train", split=False, per_class=4, size=8)
    elif kind == "fifo":
        write_folder(root, split=False, per_class=4, size=8)
        os.mkfifo(root / "red" / "pipe.png")
    return root


def _bad_npz(kind, tmp):
    x, y = images(3, 6, 8, 1)
    arrays = dict(x_train=x, y_train=y, x_test=x[:3], y_test=y[:3])
    if kind == "label-out-of-range":
        arrays["y_test"] = np.array([0, 1, 3])
    elif kind == "negative-label":
        arrays["y_train"] = y - 1
    elif kind == "fewer-labels":
        arrays["y_train"] = y[:-2]
    elif kind == "float-pixels":
        arrays["x_train"] = x.astype(np.float32)
    elif kind == "missing-key":
        del arrays["y_test"]
    elif kind == "pickled":
        arrays["y_train"] = np.array(list(y), dtype=object)
    elif kind == "one-class":
        arrays["y_train"], arrays["y_test"] = np.zeros_like(y), np.zeros(3, np.int64)
    path = tmp / f"{kind}.npz"
    np.savez(path, **arrays)
    return path


BAD = {
    **{f"folder-{k}": (_bad_folder, k, m) for k, m in [
        ("empty", "holds no class folders"), ("no-images", "holds no images"), ("one-class", "at least 2 classes"),
        ("unreadable", "cannot read image"), ("mixed-mode", "mixed image modes"),
        ("train-only", "no val/ or test/"), ("fifo", "not a regular file")]},
    **{f"npz-{k}": (_bad_npz, k, m) for k, m in [
        ("label-out-of-range", "label 3, outside 0..2"), ("negative-label", "label -1"),
        ("fewer-labels", "16 labels for 18 images"), ("float-pixels", "must be uint8"),
        ("missing-key", "lacks y_test"), ("pickled", "cannot read"), ("one-class", "at least 2")]},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    make, kind, match = BAD[case]
    data = make(kind, tmp_path)
    out = tmp_path / "out"
    for argv in (["run", "--data", str(data), "--out", str(out)],
                 ["supernet", "train", "--data", str(data), "--preset", "digits", "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err, err
        assert not out.exists()


def test_space_that_does_not_fit_the_data_is_refused(tmp_path, capsys):
    rgb16 = write_folder(tmp_path / "rgb16", split=False, classes=3, per_class=6, size=16, channels=3)
    gray8 = write_folder(tmp_path / "gray8", split=False, classes=3, per_class=6, size=8, channels=1)
    out = tmp_path / "out"
    def arch(name):
        return str(load_space(name).sample(np.random.default_rng(0)))

    cases = [
        (["supernet", "train", "--data", str(rgb16), "--preset", "digits", "--out", str(out)], "does not fit"),
        (["retrain", "--arch", arch("auto-1x16-3c-1M"), "--data", str(rgb16), "--out", str(out)], "3 channels"),
        (["retrain", "--arch", arch("auto-3x8-3c-1M"), "--data", str(gray8), "--out", str(out)], "1 channels"),
        (["retrain", "--arch", arch("auto-1x16-3c-300k"), "--data", str(gray8), "--out", str(out)],
         "data.image_size=16"),
        (["retrain", "--arch", arch("auto-1x8-4c-170k"), "--data", str(gray8), "--out", str(out)], "3 classes"),
    ]
    for argv, match in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
        assert not out.exists()


def test_named_dataset_of_another_size_is_refused_unless_resized(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["retrain", "--arch", "digits:012012/.1.0.....", "--data", "fashion-mnist", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "28×28" in err and "8×8" in err and "data.image_size=8" in err and not out.exists()


def test_fifo_is_never_opened(tmp_path):
    root = _bad_folder("fifo", tmp_path)
    code = (f"from stnas.data.userdata import load_user_data\ntry:\n load_user_data({str(root)!r})\n"
            "except Exception as e:\n print(e)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, STNAS_CACHE=str(tmp_path / "c")))
    assert "not a regular file" in p.stdout


def test_get_dataset_names_the_problem(tmp_path):
    with pytest.raises(DataError, match="neither a named dataset"):
        get_dataset(str(tmp_path / "nothing" / "here"), "train")


def test_large_folders_are_streamed_with_the_same_items(tmp_path, monkeypatch):
    from stnas.data import userdata
    from stnas.data.datasets import make_loader

    root = write_folder(tmp_path / "f", split=False, classes=3, per_class=10, size=8, channels=3)
    Image.new("RGB", (12, 9), (255, 0, 0)).save(root / "red" / "odd.png")  # resized like the rest
    memory = load_user_data(str(root))
    ref = get_dataset(str(root), "search-train")  # in memory
    monkeypatch.setattr(userdata, "STREAM_ABOVE", 5)
    userdata._load_folder.cache_clear()
    streamed = load_user_data(str(root))
    assert streamed.streamed and not memory.streamed
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npz"))) == 1  # only the in-memory decode is cached
    assert np.array_equal(streamed.x_train[np.arange(len(streamed.y_train))], memory.x_train)
    assert np.array_equal(streamed.y_test, memory.y_test) and streamed.mean_std == memory.mean_std
    ds = get_dataset(str(root), "search-train")
    assert isinstance(ds._images, userdata.LazyImages) and not isinstance(ref._images, userdata.LazyImages)
    b = next(iter(make_loader(ref, 4, train=True, seed=3)))
    for workers in (0, 1):
        a = next(iter(make_loader(ds, 4, train=True, seed=3, workers=workers)))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    userdata._load_folder.cache_clear()
    (root / "green" / "broken.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read image"):
        load_user_data(str(root))


# ------------------------------------------------------------------ every data format
def _folder_data(tmp_path):
    return str(write_folder(tmp_path / "f", split=False, classes=3, per_class=10, size=8, channels=3))


def _npz_data(tmp_path):
    x, y = images(3, 10, 8, 3)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    return str(tmp_path / "d.npz")


class _Squares(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = images(3, 10, 8, 3)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return torch.from_numpy(self.x[i]).permute(2, 0, 1).float() / 255, int(self.y[i])


EXAMPLES = {"folder": _folder_data, "npz": _npz_data, "dataset": lambda tmp_path: _Squares()}


@pytest.mark.parametrize("fmt", DATA_FORMATS.names())
def test_every_data_format_claims_and_loads_its_own_kind(fmt, tmp_path):
    from stnas.pipeline.checks import check_dataset

    assert fmt in EXAMPLES, f"data format {fmt!r} needs an example here"
    spec = EXAMPLES[fmt](tmp_path)
    entry = DATA_FORMATS.get(fmt)
    assert data_format(spec) == fmt and is_user_data(spec)
    assert [f for f in DATA_FORMATS if DATA_FORMATS.get(f).claims(spec)] == [fmt]  # no other format claims it
    d = load_user_data(spec)
    assert d.channels == 3 and d.size == 8 and len(d.classes) == 3
    assert len(d.y_train) + len(d.y_test) in (30, 36) and set(d.y_train.tolist()) == {0, 1, 2}
    if entry.path:  # named by a path in data.dataset: checked, made absolute, described in --data's help
        from stnas.cli.common import data_help

        assert entry.exists(Path(spec)) and check_dataset(spec) == str(Path(spec).resolve())
        assert entry.noun in data_help()
        assert not entry.exists(tmp_path / "missing")
