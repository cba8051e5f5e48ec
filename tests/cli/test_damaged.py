"""Damaged artefacts of a run: a one-line error naming the file (exit 2), or, for a proxy
cache line, the line dropped and its evaluation recomputed. Nothing saved is changed."""

import shutil

import pytest

from stnas.cli import main
from stnas.core.rundir import RunDir
from stnas.pipeline.search import proxy_for_run

ARCH = "digits:012012/.1.0....."
TRAIN = ["supernet", "train", "--preset", "digits", "--data", "digits", "supernet.progress=false",
         "supernet.epochs=2", "pool.epochs=1", "pool.samples=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main(TRAIN + ["--out", str(out)]) == 0
    assert main(["export", str(out), "--arch", ARCH, "--out", str(out / "exported"), "--no-onnx"]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    return RunDir(shutil.copytree(trained, tmp_path / "run"))


def flip(path, from_end: int = 3) -> None:
    """Flips one bit near the end of the file (inside safetensors tensor data)."""
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x01
    path.write_bytes(bytes(data))


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".stnas.lock"}


def one_line_error(argv, capsys, name: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and name in err and "Traceback" not in err, err
    return err


def test_damaged_supernet_weights(run, tmp_path, capsys):
    flip(run.supernet)
    before = snapshot(run.path)
    one_line_error(["export", str(run.path), "--arch", ARCH, "--out", str(tmp_path / "x"), "--no-onnx"],
                   capsys, "supernet.safetensors")
    one_line_error(["search", str(run.path), "--mode", "single", "--out", str(tmp_path / "s"),
                    "search.population=4", "search.parents=2", "search.generations=1"],
                   capsys, "supernet.safetensors")
    assert snapshot(run.path) == before


def test_damaged_exported_model(run, tmp_path, capsys):
    flip(run.path / "exported" / "model.safetensors")
    one_line_error(["export", str(run.path), "--arch", ARCH, "--weights", str(run.path / "exported"),
                    "--out", str(tmp_path / "x"), "--no-onnx"], capsys, "model.safetensors")
    from stnas.core.errors import CheckpointError
    from stnas.deploy.export import load_model

    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(run.path / "exported")


def test_damaged_pool_sample_through_export_weights(run, tmp_path, capsys):
    flip(run.pool / "sample_001.safetensors")
    one_line_error(["export", str(run.path), "--arch", ARCH, "--weights", str(run.pool / "sample_001.safetensors"),
                    "--out", str(tmp_path / "x"), "--no-onnx"], capsys, "sample_001.safetensors")


@pytest.mark.parametrize("cut", [1, 5, -1])
def test_config_cut_at_a_line_boundary(run, tmp_path, capsys, cut):
    lines = run.config.read_text().splitlines(keepends=True)
    run.config.write_text("".join(lines[:cut]))
    before = snapshot(run.path)
    one_line_error(["search", str(run.path), "--out", str(tmp_path / "s")], capsys, "config.yaml")
    one_line_error(["supernet", "train", "--out", str(run.path), "--resume"], capsys, "config.yaml")
    one_line_error(["run", "--out", str(run.path), "--resume"], capsys, "config.yaml")
    assert snapshot(run.path) == before


def test_damaged_space_file(run, tmp_path, capsys):
    text = run.space_file.read_text()
    run.space_file.write_text(text.replace("channels: 16", "channels: 17", 1))
    one_line_error(["search", str(run.path), "--out", str(tmp_path / "s")], capsys, "space.yaml")


def _cache_lines(run):
    return run.cache.read_bytes().splitlines(keepends=True)


def test_cache_line_with_wrong_scores_is_recomputed(run):
    first = proxy_for_run(run.path, mode="single")
    clean = first.score([ARCH])[0]
    assert first.evaluations == 1
    line = _cache_lines(run)[0]
    forged = line.replace(b'"top1": ', b'"top1": 1', 1)  # valid JSON, another score
    assert forged != line
    run.cache.write_bytes(forged)
    again = proxy_for_run(run.path, mode="single")
    assert again.score([ARCH])[0].score == clean.score and again.evaluations == 1
    third = proxy_for_run(run.path, mode="single")  # the recomputed line is trusted
    assert third.score([ARCH])[0].score == clean.score and third.evaluations == 0


def test_cache_with_invalid_utf8_is_recomputed(run):
    clean = proxy_for_run(run.path, mode="single").score([ARCH])[0]
    run.cache.write_bytes(b"\xff\xfe garbage \x80\n" + _cache_lines(run)[0][:-9] + b"\xc3\n")
    again = proxy_for_run(run.path, mode="single")
    assert again.score([ARCH])[0].score == clean.score and again.evaluations == 1


def test_damaged_model_card(tmp_path, capsys):
    out = tmp_path / "rt"
    assert main(["retrain", "--arch", ARCH, "--epochs", "1", "--batch-size", "32", "retrain.limit=64",
                 "retrain.progress=false", "--out", str(out)]) == 0
    card = out / "model_card.json"
    card.write_text(card.read_text().replace('"top1": 0.', '"top1": 1.', 1))
    for _ in range(2):
        before = snapshot(out)
        one_line_error(["retrain", "--out", str(out), "--resume"], capsys, "model_card.json")
        assert snapshot(out) == before
        card.write_bytes(b"\xff" + card.read_bytes())  # invalid UTF-8
