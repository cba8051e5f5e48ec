"""Retraining: CLI run and model card, exact SIGKILL-resume, refusals and bad input."""

import json
import math
import os
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from stnas.cli import main
from stnas.data.datasets import get_dataset
from stnas.deploy.export import load_model
from stnas.space.arch import save_arch
from stnas.space.catalog import load_space

from conftest import kill_at_first_checkpoint, run_cli

ENV = dict(os.environ, OMP_NUM_THREADS="1")
RETRAIN = [sys.executable, "-m", "stnas.cli", "retrain", "retrain.progress=false"]
RETRAIN_ARGS = RETRAIN[3:]  # the same, for an in-process call (run_cli)
ARCH = str(load_space("digits").sample(np.random.default_rng(7)))


def _stack(dataset):
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(xs), torch.tensor(ys)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A short digits retrain through the CLI (3 epochs of the preset's recipe)."""
    out = tmp_path_factory.mktemp("retrain") / "run"
    p = run_cli(RETRAIN_ARGS + ["--arch", ARCH, "--out", out, "--epochs", "3"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "top-1" in p.stdout
    return out


def test_model_card(run):
    card = json.loads((run / "model_card.json").read_text())
    space = load_space("digits")
    n_all = len(load_digits().target)
    assert card["arch"] == ARCH and card["arch_json"]["space"] == "digits" and card["space"] == "digits"
    assert card["space_fingerprint"] == space.fingerprint
    arch = load_space("digits").sample(np.random.default_rng(7))
    assert card["madds"] == arch.madds and card["params"] == arch.params
    assert card["test_images"] == math.ceil(0.2 * n_all) and card["train_images"] == n_all - card["test_images"]
    assert card["dataset"] == "digits" and card["epochs"] == 3 and card["recipe"]["epochs"] == 3
    assert card["recipe"]["lr"] == 0.1 and card["recipe"]["nesterov"] is True  # the digits preset's recipe
    assert card["steps"] == 3 * (card["train_images"] // card["recipe"]["batch_size"])
    assert card["top1"] > 0.5, card["top1"]  # chance is 0.1
    assert card["top1"] <= card["top5"] <= 1.0 and card["test_loss"] > 0
    assert card["wall_s"] > 0 and card["images_per_s"] > 0 and card["world_size"] == 1
    assert card["hardware"] and card["torch"] == torch.__version__ and card["seed"] == 0 and card["date"]
    for f in ("config.yaml", "arch.json", "space.yaml", "metrics.jsonl", "model/model.safetensors",
              "model/arch.json", "model/model.onnx"):
        assert (run / f).is_file(), f


def test_saved_model_reproduces_the_card(run):
    """The exported weights and ONNX score the card's top-1 on the test split."""
    card = json.loads((run / "model_card.json").read_text())
    x, y = _stack(get_dataset("digits", "test"))
    net = load_model(run / "model")
    with torch.no_grad():
        logits = net(x)
    assert (logits.argmax(1) == y).float().mean().item() == pytest.approx(card["top1"], abs=1.5 / len(y))
    sess = ort.InferenceSession(str(run / "model" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = sess.run(["logits"], {"input": x.numpy()})[0]
    np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-4, rtol=0)
    top5 = torch.from_numpy(onnx_logits).topk(5, 1).indices
    assert (top5 == y[:, None]).any(1).float().mean().item() == pytest.approx(card["top5"], abs=1.5 / len(y))


def test_finished_run_is_not_overwritten(run, capsys):
    before = (run / "model_card.json").read_text()
    assert main(["retrain", "--arch", ARCH, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    # --resume on a finished run trains nothing and keeps the card
    assert main(["retrain", "--out", str(run), "--resume"]) == 0
    assert (run / "model_card.json").read_text() == before


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_equal(tmp_path):
    args = ["--arch", ARCH, "--epochs", "2", "--batch-size", "32", "retrain.limit=320",
            "retrain.checkpoint_every=3"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert run_cli(RETRAIN_ARGS + ["--out", ref] + args).returncode == 0
    kill_at_first_checkpoint(RETRAIN + ["--out", str(cut)] + args, cut, ENV)  # a real process, to SIGKILL
    assert not (cut / "model_card.json").exists(), "the run finished before it could be killed"
    assert run_cli(RETRAIN_ARGS[:1] + ["--out", cut, "--resume"]).returncode == 0
    a, b = load_file(ref / "model" / "model.safetensors"), load_file(cut / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = (json.loads((d / "model_card.json").read_text()) for d in (ref, cut))
    assert ca["train_images"] == 320 and ca["steps"] == cb["steps"] == 2 * (320 // 32)
    for k in ("top1", "top5", "test_loss"):
        assert ca[k] == cb[k], k
    assert cb["resumed_at_step"] > 0
    assert [r["step"] for r in map(json.loads, (cut / "metrics.jsonl").read_text().splitlines())] == \
        [r["step"] for r in map(json.loads, (ref / "metrics.jsonl").read_text().splitlines())]


def test_cli_bad_inputs(tmp_path, capsys):
    fm = str(load_space("fashion-mnist").sample(np.random.default_rng(0)))
    arch_file = tmp_path / "a.json"
    save_arch(load_space("digits").sample(np.random.default_rng(1)), arch_file)
    (tmp_path / "broken.json").write_text('{"format": ')
    out = str(tmp_path / "o")
    cases = [
        (["retrain", "--out", out], "--arch"),
        (["retrain", "--arch", "digits:zz/..", "--out", out], "stem"),
        (["retrain", "--arch", "nonsense", "--out", out], "SPACE:STEM/BRANCHES"),
        (["retrain", "--arch", str(tmp_path / "broken.json"), "--out", out], "malformed"),
        (["retrain", "--arch", str(tmp_path / "missing.json"), "--out", out], "does not exist"),
        (["retrain", "--arch", fm, "--preset", "digits", "--out", out], "expected 'digits'"),
        (["retrain", "--arch", str(arch_file), "--data", "cifar10", "--out", out], "does not fit"),
        (["retrain", "--arch", str(arch_file), "--out", out, "retrain.epochs=0"], "retrain.epochs"),
        (["retrain", "--arch", str(arch_file), "--out", out, "retrain.limit=lots"], "retrain.limit"),
        (["retrain", "--arch", str(arch_file), "--out", out, "retrain.lrr=1"], "retrain.lr"),
        (["retrain", "--arch", str(arch_file), "--resume"], "--out"),
        (["retrain", "--out", str(tmp_path / "none"), "--resume"], "no config.yaml"),
    ]
    for argv, match in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert match in err, (argv, err)
    assert not (tmp_path / "o" / "model_card.json").exists()


def test_library_resume_must_match_the_saved_settings(run):
    """retrain(resume=True) reuses a run only with the settings it was made with; a mismatch
    is refused before anything in the run directory is touched."""
    from stnas.core.errors import ConfigError
    from stnas.pipeline.config import load_run_config
    from stnas.pipeline.retrain import read_retrain_card, retrain

    cfg = load_run_config(run)
    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    # progress bars, the data's location and the supernet's data settings do not change a
    # retraining: the finished card comes back
    card = retrain(ARCH, cfg | {"retrain": cfg["retrain"] | {"progress": True},
                                "data": cfg["data"] | {"root": "/elsewhere", "limit": 100, "val_limit": 50}},
                   run, resume=True)
    assert card == read_retrain_card(run)
    for change, section in [({"seed": cfg["seed"] + 1}, "seed"),
                            ({"retrain": cfg["retrain"] | {"lr": cfg["retrain"]["lr"] * 2}}, "retrain"),
                            ({"data": cfg["data"] | {"image_size": 12}}, "data.image_size")]:
        with pytest.raises(ConfigError, match=rf"\({section}(\.\w+)? differ"):
            retrain(ARCH, cfg | change, run, resume=True)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == files
