"""Verify before work: a damaged input of a command is named in one line (exit 2) before any
progress bar, scoring or training, and nothing in the run directory changes."""

import hashlib
import shutil

import pytest

from conftest import run_cli

ARCH = "digits:012012/.1.0....."
SEARCH = ["search.population=4", "search.parents=2", "search.generations=1"]
# progress bars on (the default), so that a late check would show one before its error
TRAIN = ["supernet", "train", "--preset", "digits", "--data", "digits", "supernet.epochs=2", "pool.epochs=1",
         "pool.samples=2", "data.limit=256", "data.val_limit=64", "proxy.recal_batches=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    p = run_cli(TRAIN + ["--out", out])
    assert p.returncode == 0, p.stderr[-2000:]
    return out


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def flip(path, from_end: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x01
    path.write_bytes(bytes(data))


def cut(path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def hashes(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".stnas.lock"}


def refused_first(argv, run, damaged: str) -> str:
    """``stnas ARGV`` exits 2 with one line naming ``damaged`` as the whole stderr (no
    progress bar before it) and leaves the run as it was."""
    before = hashes(run)
    p = run_cli(argv)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "%|" not in p.stderr and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stnas: error: ") and damaged in lines[0], p.stderr
    assert hashes(run) == before
    return lines[0]


@pytest.mark.parametrize("damage", [flip, cut])
@pytest.mark.parametrize("mode, damaged", [("single", "supernet.safetensors"),
                                           ("stabilized", "pool/sample_001.safetensors"),
                                           ("averaged", "pool/sample_000.safetensors")])
def test_search_checks_the_weights_of_its_mode_before_its_bar(run, tmp_path, mode, damaged, damage):
    damage(run / damaged)
    refused_first(["search", run, "--mode", mode, "--out", tmp_path / "s"] + SEARCH, run, damaged)
    assert not (tmp_path / "s").exists()


def test_search_with_an_intact_run_still_draws_its_bar(run, tmp_path):
    p = run_cli(["search", run, "--mode", "stabilized", "--out", tmp_path / "s"] + SEARCH)
    assert p.returncode == 0 and "%|" in p.stderr, p.stderr[-2000:]  # what the tests above would have shown


def test_ensemble_search_checks_every_member(run, tmp_path):
    other = shutil.copytree(run, tmp_path / "other")
    flip(other / "pool" / "sample_001.safetensors")
    before = hashes(run)
    refused_first(["search", run, "--ensemble", other, "--mode", "stabilized", "--out", tmp_path / "s"] + SEARCH,
                  other, "sample_001.safetensors")
    assert hashes(run) == before  # the first member's proxy cache was not started


@pytest.mark.parametrize("damaged", ["epochs/epoch_002.safetensors", "pool/sample_001.safetensors"])
def test_stability_checks_epochs_and_pool_first(run, damaged):
    flip(run / damaged)
    refused_first(["stability", run, "-n", "4"], run, damaged)


@pytest.mark.parametrize("damage", [flip, cut])
def test_supernet_resume_checks_its_checkpoint(run, damage):
    last = sorted((run / "checkpoints").glob("step_*.pt"))[-1]
    damage(last)
    (run / "supernet.safetensors").unlink()  # an unfinished run: it resumes from the checkpoint
    before = hashes(run)
    p = run_cli(["supernet", "train", "--out", run, "--resume"])
    assert p.returncode == 2 and "%|" not in p.stderr and last.name in p.stderr, p.stderr[-2000:]
    assert len(p.stderr.strip().splitlines()) == 1 and hashes(run) == before


@pytest.mark.parametrize("damaged", ["supernet.safetensors", "pool/sample_000.safetensors"])
def test_run_resume_checks_the_supernet_and_pool_before_any_stage(run, damaged):
    flip(run / damaged)
    refused_first(["run", "--out", run, "--resume"], run, damaged)


def test_export_checks_its_weights_first(run, tmp_path):
    flip(run / "supernet.safetensors")
    refused_first(["export", run, "--arch", ARCH, "--out", tmp_path / "x"], run, "supernet.safetensors")
    assert not (tmp_path / "x").exists()


def test_rank_checks_the_pool_before_scoring(run, tmp_path):
    import json

    import numpy as np

    from stnas.space.catalog import load_space

    rng, space = np.random.default_rng(0), load_space("digits")
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps([{"arch": str(space.sample(rng)), "top1": 0.5 + i / 100} for i in range(5)]))
    flip(run / "pool" / "sample_001.safetensors")
    refused_first(["rank", run, "--truth", truth, "--mode", "stabilized", "--out", tmp_path / "rank.json"], run,
                  "sample_001.safetensors")
    assert not (tmp_path / "rank.json").exists()


def test_predict_checks_its_model_first(run, tmp_path):
    assert run_cli(["export", run, "--arch", ARCH, "--out", tmp_path / "m", "--no-onnx"]).returncode == 0
    flip(tmp_path / "m" / "model.safetensors")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("L", (8, 8)).save(image)
    refused_first(["predict", tmp_path / "m", image], tmp_path / "m", "model.safetensors")


@pytest.mark.parametrize("name", ["model.safetensors", "model_card.json", "checkpoints"])
def test_baselines_resume_checks_every_network_first(tmp_path, name):
    out = tmp_path / "b"
    p = run_cli(["baselines", "--data", "digits", "--budget", "200k", "--family", "mobilenet_v3_small", "--epochs", "1",
                 "--out", out, "retrain.limit=256"])
    assert p.returncode == 0, p.stderr[-2000:]
    net = sorted((out / "baselines").glob("mobilenet*/seed_0"))[0]
    if name == "checkpoints":  # an unfinished network: its latest checkpoint is read on resume
        (net / "model_card.json").unlink()
        (net / "model.safetensors").unlink()
        damaged = sorted((net / "checkpoints").glob("step_*.pt"))[-1]
    else:
        damaged = net / name
    flip(damaged)
    line = refused_first(["baselines", "--out", out, "--resume"], out, damaged.name)
    assert str(net) in line
