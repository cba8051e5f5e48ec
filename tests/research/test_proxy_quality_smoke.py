"""Smoke test of experiments/proxy_quality.py (issue 5): its --smoke mode on the digits
preset, run twice in a subprocess; the second run must come entirely from the caches."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from stnas.analysis.ranking import load_truth
from stnas.space.catalog import load_arch, load_space

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "proxy_quality.py"
SUPERNETS = ["sgd", "sgld_T1", "sgld_T10"]
# the smoke plan: K sweep 2,3 on SGD and SGLD T=1, pool size 3 only on T=10
CELLS = ([(n, "single", "–") for n in SUPERNETS]
         + [(n, m, k) for n in SUPERNETS[:2] for m in ("stabilized", "averaged") for k in ("2", "3")]
         + [("sgld_T10", m, "3") for m in ("stabilized", "averaged")])
LABEL = {"sgd": "SGD", "sgld_T1": "SGLD T=1", "sgld_T10": "SGLD T=10"}


def _snapshot(work: Path) -> dict:
    """Every file under the work dir with its size and mtime."""
    return {str(p.relative_to(work)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in work.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy_quality")
    work, res = root / "work", root / "results"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--work-dir", str(work), "--results-dir", str(res)]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run():
        out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=1200)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        return out.stdout

    first = run()
    before = _snapshot(work)
    second = run()
    return {"work": work, "res": res, "first": first, "second": second, "before": before,
            "after": _snapshot(work), "result": json.loads((res / "proxy_quality.json").read_text())}


def _table_rows(text: str) -> list[list[str]]:
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| supernet")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def test_outputs_exist(smoke):
    res = smoke["res"]
    for name in ("proxy_quality.json", "proxy_quality.md", "proxy_quality_truth.json"):
        assert (res / name).stat().st_size > 0
    for name in ("proxy_quality_scatter.png", "proxy_quality_stability.png"):
        assert (res / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_truth_file_loads_and_matches_the_retrain_runs(smoke):
    path = smoke["res"] / "proxy_quality_truth.json"
    space = load_space("digits")
    truth = load_truth(path, space)
    assert len(truth) == 6
    obj = json.loads(path.read_text())
    assert obj["recipe"]["epochs"] == 2 and "--smoke" in obj["command"]
    results = obj["results"]
    madds = [load_arch(r["arch"], space).madds for r in results]
    assert madds == [r["madds"] for r in results]
    assert madds == sorted(madds), "one architecture per MAdds stratum, in stratum order"
    assert len(set(r["arch"] for r in results)) == 6
    twice = [i for i, r in enumerate(results) if "top1_seed2" in r]
    assert len(twice) == 3
    for i, r in enumerate(results):
        card = json.loads((smoke["work"] / "gt" / "seed1" / f"arch_{i:02d}" / "model_card.json").read_text())
        assert card["arch"] == r["arch"] and card["top1"] == r["top1"] and card["seed"] == 1
        assert 0 <= r["top1"] <= 1
    for i in twice:
        card = json.loads((smoke["work"] / "gt" / "seed2" / f"arch_{i:02d}" / "model_card.json").read_text())
        assert card["top1"] == results[i]["top1_seed2"] and card["seed"] == 2


def test_table_has_every_cell_with_valid_statistics(smoke):
    rows = _table_rows((smoke["res"] / "proxy_quality.md").read_text())
    got = [(r[0], r[1], r[2]) for r in rows[:-3]]
    assert sorted(got) == sorted((LABEL[n], m, k) for n, m, k in CELLS)
    assert [(r[0], r[1]) for r in rows[-3:-1]] == [("zero-cost baseline", "MAdds"), ("zero-cost baseline", "params")]
    assert rows[-1][0].startswith("ceiling")
    num = r"([+-]?\d\.\d\d|n/a)"
    for r in rows:
        m = re.fullmatch(rf"{num} \[{num}, {num}\]", r[3])
        assert m, r
        tau = float(m.group(1))
        assert -1 <= tau <= 1
    assert "python experiments/proxy_quality.py --smoke" in (smoke["res"] / "proxy_quality.md").read_text()


def test_statistics_agree_with_scipy_and_the_proxy_cache(smoke):
    result = smoke["result"]
    truth = [r["top1"] for r in result["archs"]]
    s1 = [r["top1"] for r in result["archs"] if "top1_seed2" in r]
    s2 = [r["top1_seed2"] for r in result["archs"] if "top1_seed2" in r]
    want = stats.kendalltau(s2, s1).statistic
    got = result["ceiling"]["kendall_tau"]["value"]
    assert (got is None and math.isnan(want)) or got == pytest.approx(want)
    for name, key in (("MAdds", "madds"), ("params", "params")):
        want = stats.kendalltau([r[key] for r in result["archs"]], truth).statistic
        got = result["zero_cost_baselines"][name]["kendall_tau"]["value"]
        assert (got is None and math.isnan(want)) or got == pytest.approx(want)
    for cell in result["cells"]:
        cache = {}
        for line in (smoke["work"] / f"supernet_{cell['supernet']}" / "proxy_cache.jsonl").read_text().splitlines():
            r = json.loads(line)
            cache.setdefault(r["source"], {})[r["arch"]] = r["top1"]
        archs = [r["arch"] for r in result["archs"]]
        if cell["mode"] == "single":
            assert cell["scores"] == [cache["final"][a] for a in archs]
        elif cell["mode"] == "stabilized":
            mean = [np.mean([cache[f"pool:{i}"][a] for i in range(cell["k"])]) for a in archs]
            assert cell["scores"] == pytest.approx(mean)
        tau = cell["metrics"]["kendall_tau"]["value"]
        if tau is not None:
            assert tau == pytest.approx(stats.kendalltau(cell["scores"], truth).statistic)
        for p in cell["stability"]["pairs"]:
            assert p["tau"] is None or -1 <= p["tau"] <= 1


def test_supernets_share_steps_and_data(smoke):
    sn = smoke["result"]["supernets"]
    assert set(sn) == set(SUPERNETS)
    assert len({v["summary"]["steps"] for v in sn.values()}) == 1
    assert len({v["summary"]["train_images"] for v in sn.values()}) == 1
    assert sn["sgd"]["optimizer"] == "sgd" and sn["sgld_T10"]["temperature"] == 10
    assert 0 == sn["sgd"]["noise_std"] < sn["sgld_T1"]["noise_std"] < sn["sgld_T10"]["noise_std"]
    for name in SUPERNETS:
        index = json.loads((smoke["work"] / f"supernet_{name}" / "pool" / "index.json").read_text())
        assert len(index["entries"]) == 3


def test_rerun_is_served_from_the_caches(smoke):
    before, after = smoke["before"], smoke["after"]
    # (the run lock is taken again, and records its holder: not an artefact)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)
                     and not k.endswith(".stnas.lock"))
    assert changed == [], f"the rerun wrote {changed}"
    assert any(k.endswith("proxy_cache.jsonl") for k in before)
    assert "0 retrains, 0 supernets, 0 proxy evaluations" in smoke["second"]
    assert _table_rows(smoke["first"]) == _table_rows(smoke["second"])
