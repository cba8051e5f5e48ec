"""experiments/agreement.py: replicate supernets' agreement, by hand and from the command line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import agreement as ag

ROOT = Path(__file__).resolve().parents[2] / "experiments"


def test_mean_pairwise_tau_by_hand():
    # members: a = (1,2,3,4); b = a with the last two swapped (5 of 6 pairs agree: tau 4/6);
    # c = a reversed (tau -1 with a, -4/6 with b)
    m = np.array([[1, 2, 3, 4], [1, 2, 4, 3], [4, 3, 2, 1]], float)
    assert ag.mean_pairwise_tau(m) == pytest.approx((4 / 6 - 1 - 4 / 6) / 3)


def test_identical_and_reversed_groups_and_their_paired_contrast():
    x = np.arange(12, dtype=float)
    groups = {"same": np.stack([x, x]), "flip": np.stack([x, -x])}
    res = ag.agreement(groups, [("same", "flip")], resamples=200)
    assert res["same"]["tau"] == pytest.approx(1) and res["same"]["ci"] == pytest.approx([1, 1])
    assert res["flip"]["tau"] == pytest.approx(-1) and res["same"]["pairs"] == pytest.approx([1])
    assert res["same - flip"]["diff"] == pytest.approx(2) and res["same - flip"]["ci"] == pytest.approx([2, 2])


def _record(path: Path, label: str, scores: dict) -> None:
    path.write_text(json.dumps({"format": "stnas-proxy-record", "version": 1, "label": label,
                                "preset_cell": "stabilized@8/loss", "cells": {"stabilized@8/loss": scores}}))


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "agreement.py"), *args], capture_output=True, text=True)


def test_cli_reads_records_and_refuses_bad_input(tmp_path):
    archs = [f"a{i}" for i in range(8)]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"archs": {"4000000": archs}}))
    rng = np.random.default_rng(0)
    for name in ("r0", "r1", "r2"):
        _record(tmp_path / f"{name}.json", name, {a: float(v) for a, v in zip(archs, rng.normal(size=8))})
    _record(tmp_path / "short.json", "short", {a: 0.0 for a in archs[:-1]})
    base = ["--plan", str(plan), "--records", str(tmp_path), "--resamples", "200"]
    ok = _run(*base, "--group", "A=r0,r1", "--group", "B=r1,r2", "--contrast", "A:B",
              "--json", str(tmp_path / "o.json"))
    assert ok.returncode == 0, ok.stderr
    out = json.loads((tmp_path / "o.json").read_text())["budgets"]["4000000"]
    assert out["n"] == 8 and set(out) >= {"A", "B", "A - B"}
    for bad, why in ((["--group", "A=r0"], "at least two"), (["--group", "A=r0,short"], "lacks 1"),
                     (["--group", "A=r0,nope"], "nope"), (["--group", "A=r0,r1", "--contrast", "A:Z"], "contrast")):
        r = _run(*base, *bad)
        assert r.returncode == 2 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
