"""experiments/ground_truth.py and experiments/fidelity.py: the statistics by hand, and the
builder's plan, resume and refusal on the digits preset."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stnas.core.errors import StnasError
from stnas.core.verified import write_json

from experiments import common
from experiments import fidelity as fid
from experiments import ground_truth as gt

REPO = Path(__file__).resolve().parents[2]




def _rows(values):
    """values[network][seed] -> table rows with top1 and test_loss."""
    return [{"arch": f"a{i}", "budget": 1, "seeds": {str(s): {"top1": v, "test_loss": -v} for s, v in enumerate(vs)}}
            for i, vs in enumerate(values)]


def test_variance_components_by_hand():
    # 3 networks x 2 seeds; seed 1 is +0.01 on every network (a shared effect, not noise)
    x = [[0.90, 0.91], [0.92, 0.93], [0.94, 0.95]]
    v = gt.variance_components(_rows(x), "top1", ["0", "1"])
    assert v["noise_sd"] == pytest.approx(0.0, abs=1e-9)
    # arch means 0.905, 0.925, 0.945: MS_arch = 2 * var(means, ddof=1) = 2 * 0.0004; arch_var = 0.0004
    assert v["arch_sd"] == pytest.approx(0.02, rel=1e-6)
    # residual noise: network 0's seeds disagree by 0.02 in opposite directions to network 1's
    y = [[0.90, 0.92], [0.92, 0.90], [0.91, 0.91]]
    w = gt.variance_components(_rows(y), "top1", ["0", "1"])
    resid = np.array(y) - np.array(y).mean(1, keepdims=True) - np.array(y).mean(0, keepdims=True) + np.mean(y)
    assert w["noise_sd"] == pytest.approx(np.sqrt((resid ** 2).sum() / 2), rel=1e-9)
    assert w["arch_sd"] == 0.0  # the networks' means are equal


@pytest.mark.parametrize("ratio,n,k", [(0.5, 10, 2), (1.5, 10, 2), (1.0, 30, 4)])
def test_ratio_interval_covers_the_true_ratio_95_percent_of_the_time(ratio, n, k):
    # simulated instruments of n networks x k seeds with a known ratio and a shared seed effect
    rng = np.random.default_rng(11)
    hits, sims = 0, 600
    for _ in range(sims):
        x = rng.normal(0, ratio, (n, 1)) + rng.normal(0, 1, (1, k)) + rng.normal(0, 1, (n, k))
        lo, hi = gt.variance_components(_rows(x.tolist()), "top1", [str(s) for s in range(k)])["ratio_ci"]
        assert 0 <= lo <= hi
        hits += lo <= ratio <= hi
    assert 0.92 <= hits / sims <= 0.98


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0.5, 1.0, allow_nan=False), min_size=5, max_size=12, unique=True))
def test_seed_tau_is_kendalls_tau(vals):
    rng = np.random.default_rng(len(vals))
    b = list(rng.permutation(vals))
    rows = _rows(list(zip(vals, b)))
    t = gt.seed_tau(rows, "top1", ("0", "1"), resamples=200)
    assert t["n"] == len(vals)
    assert t["tau"] == pytest.approx(stats.kendalltau(vals, b).statistic)
    assert -1.0 <= t["ci"][0] <= t["ci"][1] <= 1.0


@pytest.mark.parametrize("ratio,k", [(0.6, 1), (0.6, 2), (1.0, 4), (2.0, 2)])
def test_ceiling_is_what_a_perfect_proxy_reaches_in_simulation(ratio, k):
    # networks with normal architecture effects (sd = ratio) measured under k unit-noise seeds:
    # the tau of the true effect against the seed mean, on many simulated networks
    rng = np.random.default_rng(7)
    effect = rng.normal(0, ratio, 4000)
    truth = effect + rng.normal(0, 1, (4000, k)).mean(1)
    assert gt.ceiling(ratio, k) == pytest.approx(stats.kendalltau(effect, truth).statistic, abs=0.025)


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 20), st.integers(1, 8))
def test_ceiling_grows_with_the_ratio_and_the_seeds(ratio, k):
    c = gt.ceiling(ratio, k)
    assert 0 <= c < 1 or (c == pytest.approx(1) and ratio > 5)
    assert gt.ceiling(ratio * 1.5 + 0.01, k) >= c and gt.ceiling(ratio, k + 1) >= c
    assert gt.ceiling(0.0, k) == 0.0


def test_ceiling_refuses_what_has_no_meaning():
    for bad in ((-0.1, 2), (1.0, 0)):
        with pytest.raises(ValueError, match="ceiling"):
            gt.ceiling(*bad)


def test_seed_tau_needs_pairs():
    rows = _rows([[0.9], [0.8], [0.7], [0.6], [0.5]])
    assert gt.seed_tau(rows, "top1", ("0", "1"))["tau"] is None


def test_percentile_of_pick_by_hand():
    truth = np.array([0.1, 0.4, 0.3, 0.2])
    assert fid.percentile_of_pick(np.array([0, 9, 1, 2.0]), truth, 1) == 1.0  # picks the best
    assert fid.percentile_of_pick(np.array([9, 0, 1, 2.0]), truth, 1) == 0.25  # picks the worst
    # top 3 by score: indices 0, 3, 2 -> percentiles 0.25, 0.5, 0.75
    assert fid.percentile_of_pick(np.array([9, 0, 1, 2.0]), truth, 3) == pytest.approx(0.5)


def test_compare_pairs_cells_with_madds():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=12)
    madds = truth + rng.normal(scale=2.0, size=12)
    res = fid.compare({"madds": madds, "oracle": truth, "same": madds.copy()}, truth, resamples=300)
    assert res["oracle"]["tau"] == pytest.approx(1.0) and res["oracle"]["top1_pct"] == 1.0
    assert res["oracle"]["ci"] == pytest.approx([1.0, 1.0])
    assert res["same"]["diff_ci"] == pytest.approx([0.0, 0.0], abs=1e-12)  # paired: the same resamples, the same tau
    assert res["madds"]["tau"] == pytest.approx(stats.kendalltau(madds, truth).statistic)
    assert res["oracle"]["diff_vs_madds"] == pytest.approx(1.0 - res["madds"]["tau"])


def test_replicate_groups_average_their_members_tau():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=14)
    cells = {"madds": truth + rng.normal(scale=2.0, size=14)}
    for r in ("a0", "a1", "a2"):  # replicates of a good proxy, of a poor one
        cells[f"{r} single/loss"] = truth + rng.normal(scale=0.3, size=14)
    for r in ("b0", "b1"):
        cells[f"{r} single/loss"] = truth + rng.normal(scale=3.0, size=14)
    groups = fid.replicate_groups(list(cells), "A=a0,a1,a2") | fid.replicate_groups(list(cells), "B=b0,b1")
    assert groups == {"A single/loss": ["a0 single/loss", "a1 single/loss", "a2 single/loss"],
                      "B single/loss": ["b0 single/loss", "b1 single/loss"]}
    res = fid.compare(cells, truth, resamples=300, groups=groups,
                      contrasts=[("A single/loss", "B single/loss"), ("a0 single/loss", "b0 single/loss")])
    taus = [stats.kendalltau(cells[m], truth).statistic for m in groups["A single/loss"]]
    assert res["A single/loss"]["tau"] == pytest.approx(np.mean(taus))
    assert res["A single/loss"]["rep_sd"] == pytest.approx(np.std(taus, ddof=1))
    c = res["A single/loss - B single/loss"]
    tb = [stats.kendalltau(cells[m], truth).statistic for m in groups["B single/loss"]]
    assert c["diff"] == pytest.approx(np.mean(taus) - np.mean(tb))
    assert c["rep_se"] == pytest.approx(np.sqrt(np.var(taus, ddof=1) / 3 + np.var(tb, ddof=1) / 2))
    assert c["resolved"] == ((c["ci"][0] > 0 or c["ci"][1] < 0) and abs(c["diff"]) > 2 * c["rep_se"])
    assert "rep_se" not in res["a0 single/loss - b0 single/loss"]  # single runs: no replicate error
    one = fid.compare(cells, truth, resamples=300, groups=groups, contrasts=[("b0 single/loss", "A single/loss")])
    c1 = one["b0 single/loss - A single/loss"]  # one draw vs a group: the group's sd for both sides
    assert c1["rep_se"] == pytest.approx(np.std(taus, ddof=1) * np.sqrt(1 + 1 / 3))
    assert c1["resolved"] == ((c1["ci"][0] > 0 or c1["ci"][1] < 0) and abs(c1["diff"]) > 2 * c1["rep_se"])
    for bad in ("A=a0", "A", "=a0,a1", "A=a0,a0", "A=zz,yy"):
        with pytest.raises(StnasError, match="--replicates"):
            fid.replicate_groups(list(cells), bad)


def test_ensemble_cells_average_the_members_scores():
    cells = {"a single/loss": {"x": 1.0, "y": 4.0}, "b single/loss": {"x": 3.0, "y": 0.0},
             "a single/top1": {"x": 0.5, "y": 0.7}, "madds": {"x": 1.0, "y": 2.0}}
    # only the cells both members have; x: (1 + 3) / 2, y: (4 + 0) / 2
    assert fid.ensemble_cells(cells, "E=a,b") == {"E single/loss": {"x": 2.0, "y": 2.0}}
    with pytest.raises(StnasError, match="--ensemble"):
        fid.ensemble_cells(cells, "E=a")


def test_rank_mix_by_hand():
    a, b = np.array([0.1, 0.5, 0.3, 0.9]), np.array([40.0, 10.0, 30.0, 20.0])
    # ranks of a: 1 3 2 4; of b: 4 1 3 2
    assert fid.rank_mix(a, b).tolist() == [2.5, 2.0, 2.5, 3.0]
    assert fid.rank_mix(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])).tolist() == [1.25, 1.75, 3.0]
    truth = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert common.tau(fid.rank_mix(truth, truth), truth) == pytest.approx(1.0)


def test_contrasts_are_paired_differences_between_runs():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=10)
    noisy = truth + rng.normal(scale=1.0, size=10)
    cells = {"madds": rng.normal(size=10), "a single/loss": truth, "b single/loss": noisy,
             "c single/loss": noisy.copy(), "a only/loss": truth}
    pairs = fid.contrast_pairs(list(cells), "a:b") + fid.contrast_pairs(list(cells), "b:c")
    assert pairs == [("a single/loss", "b single/loss"), ("b single/loss", "c single/loss")]
    res = fid.compare(cells, truth, resamples=300, contrasts=pairs)
    ab = res["a single/loss - b single/loss"]
    assert ab["diff"] == pytest.approx(1.0 - stats.kendalltau(noisy, truth).statistic)
    # a is the oracle (tau 1 in every resample), so no resample's difference is below 0
    assert 0.0 <= ab["ci"][0] <= ab["diff"] <= ab["ci"][1] <= 2.0
    assert res["b single/loss - c single/loss"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
    for bad in ("a", "a:", ":b", "a:zzz"):
        with pytest.raises(StnasError, match="--contrast"):
            fid.contrast_pairs(list(cells), bad)


def _build(tmp_path, *extra):
    return ["build", "--preset", "digits", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "t.json"),
            "--budgets", "200k", "--band", "0.5", "--seeds", "0,1", "--jobs", "1", "--threads", "1",
            "--set", "retrain.epochs=1", "--set", "retrain.limit=300", *extra]


def test_build_resumes_and_extends_and_refuses_another_plan(tmp_path, capsys):
    gt.main(_build(tmp_path, "--n", "2"))
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["format"] == "stnas-groundtruth" and len(table["rows"]) == 2
    for r in table["rows"]:
        assert 100_000 < r["madds"] <= 200_000
        assert set(r["seeds"]) == {"0", "1"}
        assert all(0.0 <= s["top1"] <= 1.0 and s["test_loss"] > 0 for s in r["seeds"].values())
    cards = sorted((tmp_path / "work").glob("*/seed*/model_card.json"))
    assert len(cards) == 4
    stamps = [c.stat().st_mtime_ns for c in cards]
    # a larger --n keeps the first draws and their retrainings, and adds one network
    gt.main(_build(tmp_path, "--n", "3"))
    table3 = json.loads((tmp_path / "t.json").read_text())
    assert [r["arch"] for r in table3["rows"][:2]] == [r["arch"] for r in table["rows"]]
    assert table3["rows"][:2] == table["rows"]
    assert [c.stat().st_mtime_ns for c in cards] == stamps  # reused, not retrained
    assert len(list((tmp_path / "work").glob("*/seed*/model_card.json"))) == 6
    # a retraining killed before its first checkpoint (a folder without one) is started again
    victim = cards[0].parent
    for f in victim.iterdir():
        if f.is_file():
            f.unlink()
    t = json.loads((tmp_path / "t.json").read_text())  # and it never reached the table
    for r in t["rows"]:
        if common.task_dir(tmp_path / "work", r["arch"], int(victim.name[4:])) == victim:
            del r["seeds"][victim.name[4:]]
    write_json(tmp_path / "t.json", t)
    gt.main(_build(tmp_path, "--n", "3"))
    assert (victim / "model_card.json").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        gt.main(_build(tmp_path, "--n", "3", "--band", "0.6"))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "band differ" in err


def test_build_adds_seeds_to_every_network_and_keeps_the_finished_ones(tmp_path, capsys):
    gt.main(_build(tmp_path, "--n", "2"))
    cards = sorted((tmp_path / "work").glob("*/seed*/model_card.json"))
    stamps = [c.stat().st_mtime_ns for c in cards]
    before = json.loads((tmp_path / "t.json").read_text())
    gt.main(_build(tmp_path, "--n", "2", "--seeds", "0,1,2"))
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["seeds"] == [0, 1, 2]
    assert [set(r["seeds"]) for r in table["rows"]] == [{"0", "1", "2"}] * 2
    for old, new in zip(before["rows"], table["rows"]):
        assert {s: new["seeds"][s] for s in ("0", "1")} == old["seeds"]  # kept, not retrained
    assert [c.stat().st_mtime_ns for c in cards] == stamps
    assert len(list((tmp_path / "work").glob("*/seed2/model_card.json"))) == 2
    # seeds that do not extend the recorded ones (reordered, dropped, repeated) are refused untouched
    recorded = (tmp_path / "t.json").read_text()
    for bad in ("1,0,2", "0,2", "0,1,1", "0"):
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            gt.main(_build(tmp_path, "--n", "2", "--seeds", bad))
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "seeds" in err, (bad, err)
        assert (tmp_path / "t.json").read_text() == recorded


def test_all_seeds_compares_the_means_of_the_two_halves_by_hand():
    # 5 networks x 4 seeds; half means (seeds 0,1) and (seeds 2,3) computed by hand
    x = [[0.90, 0.92, 0.91, 0.95], [0.93, 0.91, 0.90, 0.90], [0.95, 0.97, 0.96, 0.94],
         [0.88, 0.86, 0.89, 0.91], [0.92, 0.96, 0.93, 0.93]]
    rows = _rows(x) + _rows([[0.99, 0.99]])  # a network with two seeds only is left out
    e = gt.all_seeds(rows, "top1", ["0", "1", "2", "3"], resamples=200)
    a = [(v[0] + v[1]) / 2 for v in x]
    b = [(v[2] + v[3]) / 2 for v in x]
    assert e["halves_tau"]["n"] == 5
    assert e["halves_tau"]["tau"] == pytest.approx(stats.kendalltau(a, b).statistic)
    assert e["components"]["networks"] == 5
    assert e["components"]["ceiling_tau"] == pytest.approx(gt.ceiling(e["components"]["ratio"], 4))


def _four_seed_table(path: Path, rng_seed: int, networks: int, with_four: int) -> None:
    """A table of ``networks`` noisy networks, the first ``with_four`` of them on seeds 0-3, the
    rest on seeds 0 and 1."""
    rng = np.random.default_rng(rng_seed)
    rows = [{"arch": f"a{i}", "budget": 1000, "madds": 900, "params": 10,
             "seeds": {str(s): {"top1": float(v), "test_loss": float(-v)} for s, v in
                       enumerate(e + rng.normal(0, 0.01, 4 if i < with_four else 2))}}
            for i, e in enumerate(rng.normal(0.9, 0.01, networks))]
    table = {"format": "stnas-groundtruth", "budgets": [1000], "seeds": [0, 1, 2, 3], "rows": rows}
    path.write_text(json.dumps(table))


def test_summary_of_four_seeds_reports_the_issue_criterion_on_the_first_two(tmp_path, capsys):
    _four_seed_table(tmp_path / "t.json", 3, 12, 8)
    gt.main(["summary", str(tmp_path / "t.json"), "--resamples", "200", "--json", str(tmp_path / "s.json")])
    out = json.loads((tmp_path / "s.json").read_text())["budgets"]["1000"]["top1"]
    assert out["seed_tau"]["n"] == 12 and out["components"]["networks"] == 12  # every network, seeds 0 and 1
    assert out["all_seeds"]["halves_tau"]["n"] == 8 and out["all_seeds"]["components"]["networks"] == 8
    assert "all 4 seeds: 8 networks" in capsys.readouterr().out


def _alive(pid: int) -> bool:
    try:  # a zombie (exited, not yet reaped by its new parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_worker_ends_when_its_build_is_killed():
    # a "build" that starts a worker watching it, then is killed as `kill -9` would
    worker = ("import os, time; import experiments.ground_truth as g; "
              "g.exit_with(os.getppid(), every=0.1); print('ready', flush=True); time.sleep(120)")
    build = ("import subprocess, sys, time; w = subprocess.Popen([sys.executable, '-c', sys.argv[1]], "
             "stdout=subprocess.PIPE, text=True); assert w.stdout.readline().strip() == 'ready'; "
             "print(w.pid, flush=True); time.sleep(120)")
    # from the repository root (`python -c` has the working directory on its path): experiments.* imports
    parent = subprocess.Popen([sys.executable, "-c", build, worker], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        pid = int(parent.stdout.readline())
        time.sleep(1.0)
        assert _alive(pid)  # its build is alive: the worker goes on
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        parent.kill()
        if "pid" in locals() and _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_build_keeps_the_recorded_table_when_the_work_folder_is_lost(tmp_path, capsys):
    gt.main(_build(tmp_path, "--n", "2"))
    table = json.loads((tmp_path / "t.json").read_text())
    (tmp_path / "t.json").write_text(json.dumps(table))  # the committed copy, as another machine has it
    new = tmp_path / "fresh"
    argv = _build(tmp_path, "--n", "3")
    argv[argv.index("--work") + 1] = str(new)
    gt.main(argv)  # the recorded 4 results are kept: only the third network is trained
    assert len(list(new.glob("*/seed*/model_card.json"))) == 2
    grown = json.loads((tmp_path / "t.json").read_text())
    assert grown["rows"][:2] == table["rows"] and len(grown["rows"]) == 3
    # a table of another plan, or one holding a network the plan does not draw, is refused untouched
    for edit in ({"band": 0.6}, {"rows": [dict(table["rows"][0], arch="digits:000/")]}):
        bad = json.dumps(table | edit)
        (tmp_path / "t.json").write_text(bad)
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            gt.main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "t.json" in err, err
        assert (tmp_path / "t.json").read_text() == bad


def test_epoch_cells_score_every_kept_epoch(trained_copy, tmp_path):
    # one cell pair per epoch file; the last epoch's weights are the final ones, so its
    # scores are the single-weights proxy's (computed through another path)
    from stnas.pipeline.search import proxy_for_run
    from stnas.space.catalog import load_space

    space = load_space("digits")
    rng = np.random.default_rng(0)
    archs = sorted({str(space.sample(rng)) for _ in range(4)})
    files = sorted((trained_copy / "epochs").glob("epoch_*.safetensors"))
    assert len(files) >= 2
    cells = fid.epoch_cells(str(trained_copy), archs)
    assert sorted(cells) == sorted(f"{f.stem.replace('_', '')}/{m}" for f in files for m in ("top1", "loss"))
    single = {s.arch: s for s in proxy_for_run(trained_copy).score(archs, "single")}
    last = files[-1].stem.replace("_", "")
    for a in archs:
        assert cells[f"{last}/top1"][a] == pytest.approx(single[a].top1, abs=1e-9)
        assert cells[f"{last}/loss"][a] == pytest.approx(-single[a].loss, abs=1e-9)
    empty = tmp_path / "run"
    (empty / "epochs").mkdir(parents=True)
    with pytest.raises(StnasError, match="keep_epoch_weights"):
        fid.epoch_cells(str(empty), archs)


def test_score_run_takes_proxy_settings_and_refuses_others(trained_copy):
    from stnas.pipeline.search import proxy_for_run
    from stnas.space.catalog import load_space

    space = load_space("digits")
    rng = np.random.default_rng(1)
    archs = sorted({str(space.sample(rng)) for _ in range(3)})
    plain = fid.score_run(str(trained_copy), archs, [1, 2])
    recal1 = fid.score_run(str(trained_copy), archs, [1, 2], ["proxy.recal_batches=1"])
    assert sorted(plain) == sorted(recal1)
    # the override reaches the proxy: the same scores as a Proxy built with that setting
    from stnas.pipeline.config import load_run_config

    cfg = load_run_config(trained_copy)
    cfg["proxy"]["recal_batches"] = 1
    want = {s.arch: s.score for s in proxy_for_run(trained_copy, cfg, mode="single").score(archs, "single")}
    got = recal1[f"single/{cfg['proxy']['metric']}"]
    assert got == pytest.approx(want, abs=1e-9)
    assert got != pytest.approx(plain[f"single/{cfg['proxy']['metric']}"], abs=1e-6)  # not the default's
    with pytest.raises(StnasError, match="supernet.lr cannot change"):
        fid.score_run(str(trained_copy), archs, [1], ["supernet.lr=0.5"])


def test_cli_scores_runs_with_contrasts_and_checks_labels_first(trained_copy, tmp_path, capsys):
    gt.main(_build(tmp_path, "--n", "4"))
    base = [str(tmp_path / "t.json"), "--k", "1,2", "--resamples", "200"]
    cache = trained_copy / "proxy_cache.jsonl"
    before = cache.read_bytes() if cache.exists() else b""
    capsys.readouterr()
    for bad in (["--contrast", "a:zzz"], ["--contrast", "a"], ["--mix", "zzz single/loss"], ["--mix", "flops"]):
        with pytest.raises(SystemExit) as e:
            fid.main(base + ["--runs", f"{trained_copy}:a", f"{trained_copy}:b:proxy.recal_batches=1"] + bad)
        assert e.value.code == 2 and bad[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        fid.main(base + ["--runs", f"{trained_copy}:a", f"{tmp_path}/nothing:b"])
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (cache.read_bytes() if cache.exists() else b"") == before  # refused before any scoring
    fid.main(base + ["--runs", f"{trained_copy}:a", f"{trained_copy}:b:proxy.recal_batches=1",
                     "--contrast", "a:b", "--mix", "a single/loss", "--mix", "params",
                     "--out", str(tmp_path / "f.json"), "--markdown", str(tmp_path / "f.md")])
    res = json.loads((tmp_path / "f.json").read_text())["budgets"]["200000"]
    assert res["n"] == 4 and {"madds", "a single/loss", "b stabilized@2/top1"} <= set(res["cells"])
    assert {"a single/loss+madds", "params+madds"} <= set(res["cells"])
    diff = res["contrasts"]["a single/loss - b single/loss"]
    assert diff["diff"] == pytest.approx(res["cells"]["a single/loss"]["tau"] - res["cells"]["b single/loss"]["tau"])
    md = (tmp_path / "f.md").read_text()
    assert "**0.2M, 4 networks**" in md and "| a single/loss - b single/loss |" in md


def test_recipe_tau_compares_seed_means_of_shared_networks():
    # recipe A ranks a0 < a1 < a2 < a3 by seed mean; recipe B reverses a0/a1 and adds a4
    a = _rows([[0.1, 0.3], [0.3, 0.3], [0.5, 0.5], [0.6, 0.8]])
    b = _rows([[0.4, 0.4], [0.2, 0.2], [0.5, 0.6], [0.9, 0.9], [0.0, 0.0]])
    t = gt.recipe_tau(a, b, "top1", resamples=200)
    assert t["n"] == 4  # a4 is only in B
    assert t["tau"] == pytest.approx(stats.kendalltau([0.2, 0.3, 0.5, 0.7], [0.4, 0.2, 0.55, 0.9]).statistic)
    assert t["tau"] == pytest.approx(4 / 6)  # one discordant pair of six


def test_recipes_refuses_tables_of_other_spaces(tmp_path, capsys):
    for name, fp in (("a", "x1"), ("b", "x2")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"format": common.TABLE_FORMAT, "space_fingerprint": fp,
                                                            "budgets": [1], "seeds": [0, 1], "rows": []}))
    with pytest.raises(SystemExit) as e:
        gt.main(["recipes", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert e.value.code == 2 and "different spaces" in capsys.readouterr().err


def test_summary_says_when_too_few_networks_have_every_seed(tmp_path, capsys):
    # two of six networks have four seeds: no components for all four yet, and no nan printed
    _four_seed_table(tmp_path / "t.json", 4, 6, 2)
    gt.main(["summary", str(tmp_path / "t.json"), "--resamples", "50"])
    out = capsys.readouterr().out
    assert "all 4 seeds: 2 networks, too few yet" in out and "nan" not in out
