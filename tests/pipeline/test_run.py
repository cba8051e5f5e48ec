"""`stnas run`: the whole pipeline on digits, its report, resume and the embedded default."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy import stats

from stnas.analysis.ranking import load_truth
from stnas.cli import main
from stnas.core.errors import DataError
from stnas.space.catalog import load_arch, load_space

from conftest import run_cli
from experiments import found_vs_random

FOUND_VS_RANDOM = Path(__file__).resolve().parents[2] / "experiments" / "found_vs_random.py"

ENV = dict(os.environ, OMP_NUM_THREADS="1")
SMALL = ["supernet.epochs=4", "pool.epochs=1", "pool.samples=2", "search.population=6", "search.parents=2",
         "search.generations=2", "retrain.epochs=2", "supernet.progress=false",
         "baselines.families=[mobilenet_v3_small]"]  # the baselines stage is on for digits: one family


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    p = run_cli(["run", "--preset", "digits", "--budget", "200k,350k", "--out", out] + SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_report_has_every_budget(finished_run):
    out, proc = finished_run
    report = json.loads((out / "report.json").read_text())
    assert [c["budget"] for c in report["chosen"]] == [200_000, 350_000]
    md = (out / "report.md").read_text()
    for c in report["chosen"]:
        assert c["madds"] <= c["budget"]
        card = json.loads((out / c["retrain_dir"] / "model_card.json").read_text())
        assert card["arch"] == c["arch"] and 0.1 < card["top1"] <= 1.0
        row = next(line for line in md.splitlines() if f"`{c['arch']}`" in line)
        assert f"{c['score']:.4f} ± {c['std']:.4f}" in row and f"{card['top1']:.4f}" in row
    for name in ("pareto.png", "supernet_curves.png", "arch_200k.png", "arch_350k.png", "baselines.png"):
        assert (out / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert re.search(r"test top-1 0\.\d{4}", proc.stdout)
    # the baselines stage: a table per budget, stnas's pick first, beside the networks that fit
    tables = report["baselines"]["budgets"]
    assert [t["budget"]["madds"] for t in tables] == [200_000, 350_000] and "## Baselines" in md
    for c, t in zip(report["chosen"], tables):
        assert t["rows"][0]["arch"] == c["arch"] and all(r["madds"] <= c["budget"] for r in t["rows"])
        assert [r["kind"] for r in t["rows"]][1:] and {r["kind"] for r in t["rows"][1:]} == {"baseline"}


def test_resume_of_a_finished_run_recomputes_nothing(finished_run):
    out, _ = finished_run
    cache = (out / "proxy_cache.jsonl").read_text()
    cards = sorted(p.read_text() for p in [*out.glob("retrain/*/model_card.json"), *out.glob("baselines/*/*/*.json")])
    assert main(["run", "--out", str(out), "--resume"]) == 0
    assert (out / "proxy_cache.jsonl").read_text() == cache
    assert sorted(p.read_text() for p in [*out.glob("retrain/*/model_card.json"),
                                          *out.glob("baselines/*/*/*.json")]) == cards


def test_existing_run_dir_is_not_overwritten(finished_run, capsys):
    out, _ = finished_run
    before = (out / "report.json").read_text()
    assert main(["run", "--preset", "digits", "--out", str(out)] + SMALL) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "report.json").read_text() == before


def _cards(root: Path) -> dict:
    # a retraining's own card (the copy in its model/ folder goes with it)
    return {str(p.relative_to(root)): (p.read_text(), p.stat().st_mtime_ns) for p in root.rglob("model_card.json")
            if p.parent.name != "model"}


@pytest.mark.slow
@pytest.mark.research
def test_found_vs_random_under_another_recipe(finished_run, tmp_path):
    """experiments/found_vs_random.py with --set: found and random retrained with that recipe in
    parallel, numbers taken from their model cards; a rerun reuses every retraining."""
    out, _ = finished_run
    run_cards = _cards(out / "retrain")
    res = tmp_path / "fvr.json"
    cmd = [sys.executable, str(FOUND_VS_RANDOM), str(out), "--n", "2", "--set", "retrain.epochs=1",
           "--jobs", "2", "--out", str(res)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    [base] = out.glob("random_baseline_*")
    [found_dir] = out.glob("found_seeds_*")
    assert base.name[len("random_baseline_"):] == found_dir.name[len("found_seeds_"):]
    data = json.loads(res.read_text())
    assert data["meta"]["recipe"]["epochs"] == 1 and data["meta"]["jobs"] == 2
    report = json.loads((out / "report.json").read_text())
    labels = {200_000: "200k", 350_000: "350k"}
    # a network a smaller budget chose as well is retrained once, in that budget's folder
    home = {c["budget"]: labels[next(d["budget"] for d in report["chosen"] if d["arch"] == c["arch"])]
            for c in report["chosen"]}
    for row, chosen in zip(data["results"], report["chosen"], strict=True):
        label = labels[chosen["budget"]]
        [card] = [json.loads(f.read_text())
                  for f in (found_dir / f"budget_{home[chosen['budget']]}").glob("seed*/model_card.json")]
        assert card["arch"] == chosen["arch"] and card["epochs"] == 1 and row["found_top1"] == card["top1"]
        randoms = []
        for i, r in enumerate(row["randoms"]):
            rc = json.loads((base / f"budget_{label}" / f"arch_{i:02d}" / "model_card.json").read_text())
            assert rc["arch"] == r["arch"] and rc["epochs"] == 1 and rc["madds"] <= chosen["budget"]
            randoms.append(rc["top1"])
        assert row["random_best_top1"] == max(randoms)
        assert row["found_rank"] == 1 + sum(t >= card["top1"] for t in randoms)
        assert row["found_beats_best_random"] == (card["top1"] > max(randoms))
    assert _cards(out / "retrain") == run_cards, "the run's own retrainings were touched"
    # a rerun reuses every retraining; --extra-for top adds seed 1 only for found and the best random
    before = _cards(base) | _cards(found_dir)
    p = subprocess.run(cmd[:-4] + ["--extra-seeds", "1", "--extra-for", "top", "--out", str(tmp_path / "again.json")],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    after = _cards(base) | _cards(found_dir)
    assert {k: v for k, v in after.items() if k in before} == before, "a rerun retrained instead of reusing"
    again = json.loads((tmp_path / "again.json").read_text())["results"]
    new = set(after) - set(before)
    for row, first in zip(again, data["results"], strict=True):
        assert {k: row[k] for k in first if k != "randoms"} == {k: v for k, v in first.items() if k != "randoms"}
        label = labels[row["budget"]]
        best_i = max(range(2), key=lambda i: first["randoms"][i]["top1"])
        want = {f"budget_{label}/arch_{best_i:02d}_seed1/model_card.json"}
        want |= {f"budget_{label}/seed1/model_card.json"} if home[row["budget"]] == label else set()
        assert {n for n in new if n.startswith(f"budget_{label}/")} == want
        assert list(row["found_top1_by_seed"]) == ["0", "1"] and list(row["random_best_top1_by_seed"]) == ["0", "1"]
    # --extra-for all: seed 1 for every network (reusing the two above) and the ANOVA over them
    p = subprocess.run(cmd[:-4] + ["--extra-seeds", "1", "--out", str(tmp_path / "all.json"),
                                   "--truth-out", str(tmp_path / "truth" / "t.json")],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {k: v for k, v in (_cards(base) | _cards(found_dir)).items() if k in after} == after
    assert "architecture effect within each budget" in p.stdout
    for row in json.loads((tmp_path / "all.json").read_text())["results"]:
        label = labels[row["budget"]]
        groups = [[json.loads((found_dir / f"budget_{home[row['budget']]}" / f"seed{s}" / "model_card.json")
                              .read_text())["top1"] for s in (0, 1)]]
        groups += [[json.loads((base / f"budget_{label}" / f"arch_{i:02d}{sfx}" / "model_card.json").read_text())
                    ["top1"] for sfx in ("", "_seed1")] for i in range(2)]
        effect = row["architecture_effect"]
        assert (effect["archs"], effect["seeds"]) == (3, 2)
        if len({v for g in groups for v in g}) > 1:
            f, pval = stats.f_oneway(*groups)
            assert effect["F"] == pytest.approx(f) and effect["p"] == pytest.approx(pval)
        assert row["found_top1_mean"] == pytest.approx(sum(groups[0]) / 2)
        # the ground-truth file: every network, one entry per seed; stnas rank reads it as the means
        truth = load_truth(tmp_path / "truth" / "t.json", load_space("digits"))
        for arch, g in zip([row["found_arch"]] + [r["arch"] for r in row["randoms"]], groups, strict=True):
            assert truth[load_arch(arch, "digits")] == pytest.approx(sum(g) / 2)


@pytest.mark.parametrize("args, needle", [(["--set", "supernet.lr=1"], "supernet.lr"),
                                          (["--set", "retrain.epochs=zero"], "retrain.epochs"),
                                          (["--jobs", "0"], "--jobs")])
@pytest.mark.research
def test_found_vs_random_bad_input_exits_2(finished_run, tmp_path, args, needle):
    out, _ = finished_run
    p = subprocess.run([sys.executable, str(FOUND_VS_RANDOM), str(out), "--out", str(tmp_path / "x.json")] + args,
                       capture_output=True, text=True, env=ENV, timeout=300)
    assert p.returncode == 2 and needle in p.stderr
    assert "Traceback" not in p.stderr and not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_killed_run_resumes(tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "stnas.cli", "run", "--preset", "digits", "--out", str(out)] + SMALL
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "proxy_cache.jsonl").is_file():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.json").exists()
    p = run_cli(["run", "--out", out, "--resume"])
    assert p.returncode == 0, p.stderr[-3000:]
    lines = (out / "proxy_cache.jsonl").read_text().split("\n")[:-1]
    keys = [(r["arch"], r["source"], r["key"]) for r in map(json.loads, lines)]
    assert len(keys) == len(set(keys)), "a cached evaluation was computed again"
    assert (out / "report.md").is_file()


def test_embedded_default_falls_back_to_digits(monkeypatch, capsys):
    import stnas.pipeline.run as run

    def missing(*a, **k):
        raise DataError("fashion-mnist not found in /nowhere")

    monkeypatch.setattr(run, "get_dataset", missing)
    preset, notice = run.embedded_default()
    assert preset == "digits" and "apt-get install dataset-fashion-mnist" in notice


def test_embedded_default_prefers_fashion_mnist():
    pytest.importorskip("stnas.data.datasets")
    import stnas.pipeline.run as run
    if not os.path.isdir("/usr/share/datasets/fashion-mnist") and not os.environ.get("STNAS_DATA"):
        pytest.skip("Fashion-MNIST is not installed here")
    assert run.embedded_default() == ("fashion-mnist", None)


@pytest.mark.research
def test_run_all_retrains_a_shared_folder_once(monkeypatch):
    """One network chosen for two budgets: both keys point at one folder, retrained once."""
    mod = found_vs_random
    calls = []
    monkeypatch.setattr(mod, "train", lambda arch, cfg, out, threads=0: calls.append(out) or len(calls) / 10)
    tasks = {("6M", "found", 0): ("a", {}, "/x/6M"), ("8M", "found", 0): ("a", {}, "/x/6M"),
             ("8M", "random  1", 0): ("b", {}, "/x/r1")}
    done = mod.run_all(tasks, jobs=1)
    assert calls == ["/x/6M", "/x/r1"]
    assert done == {("6M", "found", 0): 0.1, ("8M", "found", 0): 0.1, ("8M", "random  1", 0): 0.2}


@pytest.mark.research
def test_architecture_effect_by_hand():
    """Two networks, two seeds each: [1, 3] and [5, 7]. By hand: grand mean 4, MSB = 2 * (4 + 4) / 1 = 16,
    MSW = (1 + 1 + 1 + 1) / 2 = 2, F = 8, architecture variance (16 - 2) / 2 = 7."""
    architecture_effect = found_vs_random.architecture_effect
    effect = architecture_effect([[1, 3], [5, 7]])
    assert effect["F"] == pytest.approx(8.0)
    assert effect["noise_sd"] == pytest.approx(2 ** 0.5) and effect["arch_sd"] == pytest.approx(7 ** 0.5)
    # F(1, 2) = 8: p = 1 - I_{8/10}(1/2, 1) = 1 - sqrt(0.8)
    assert effect["p"] == pytest.approx(1 - 0.8 ** 0.5)
    # no spread between the networks' means: no architecture effect
    flat = architecture_effect([[1, 3], [3, 1], [2, 2]])
    assert flat["F"] == pytest.approx(0.0) and flat["arch_sd"] == 0.0 and flat["p"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        architecture_effect([[1, 2], [3]])
