"""experiments/finetune_proxy.py on a tiny trained digits run: its output is what
fidelity_by_budget.py reads, and bad inputs exit 2 with one line."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stnas.space.catalog import load_space

from conftest import TRAINED_OVERRIDES

VAL_LIMIT = int(next(o for o in TRAINED_OVERRIDES if o.startswith("data.val_limit=")).split("=")[1])
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "experiments" / "finetune_proxy.py"


@pytest.fixture
def trained(trained_run):
    """The shared tiny digits run (conftest); the script only reads it."""
    return trained_run


def _truth(path, n=4):
    space = load_space("digits")
    rng = np.random.default_rng(3)
    archs = list(dict.fromkeys(str(space.sample(rng)) for _ in range(n)))
    results = [{"arch": a, "top1": 0.5 + 0.1 * i, "seed": 0, "role": f"random {i + 1} within 400k"}
               for i, a in enumerate(archs)]
    path.write_text(json.dumps({"format": "stnas-truth", "version": 1, "preset": "digits", "results": results}))
    return archs


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_scores_every_truth_network_in_rank_json_shape(trained, tmp_path):
    truth = tmp_path / "t.json"
    archs = _truth(truth)
    p = _run(trained, "--truth", truth, "--steps", 2, "--threads", 1)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["finetune"]["steps"] == 2 and doc["finetune"]["val_images"] == VAL_LIMIT
    for mode in ("finetune_loss", "finetune_top1"):
        got = {s["arch"]: s for s in doc["modes"][mode]["scores"]}
        assert sorted(got) == sorted(archs)
        for s in got.values():
            assert s["loss"] > 0 and 0 <= s["top1"] <= 1
            assert s["score"] == (-s["loss"] if mode == "finetune_loss" else s["top1"])
    # fidelity_by_budget.py reads it as it reads `stnas rank --json`
    (tmp_path / "ft.json").write_text(p.stdout)
    q = subprocess.run([sys.executable, str(ROOT / "experiments" / "fidelity_by_budget.py"), str(tmp_path / "ft.json"),
                        "--truth", str(truth)], capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    assert "finetune_loss" in q.stdout and "400k" in q.stdout


@pytest.mark.parametrize("bad", ["steps", "truth", "run", "unfinished"])
def test_bad_inputs_exit_2_with_one_line(trained, tmp_path, bad):
    truth = tmp_path / "t.json"
    _truth(truth)
    unfinished = tmp_path / "unfinished"
    if bad == "unfinished":  # a run whose supernet weights were never written
        shutil.copytree(trained, unfinished)
        (unfinished / "supernet.safetensors").unlink()
    args = {"steps": (trained, "--truth", truth, "--steps", 0),
            "truth": (trained, "--truth", tmp_path / "missing.json"),
            "run": (tmp_path / "no-run", "--truth", truth),
            "unfinished": (unfinished, "--truth", truth)}[bad]
    p = _run(*args)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
