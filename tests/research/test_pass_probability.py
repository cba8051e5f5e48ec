"""experiments/pass_probability.py: the Monte Carlo against the two limits that symmetry fixes
exactly, the pooling and the product rule by hand, and bad inputs."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import pass_probability as pp

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "pass_probability.py"
TRIALS = 4000


def _close(p, exact):
    # five Monte Carlo standard errors
    assert abs(p - exact) <= 5 * math.sqrt(exact * (1 - exact) / TRIALS) + 1e-9, (p, exact)


sds = st.floats(1e-4, 1e-2)
counts = st.integers(1, 40)


@settings(max_examples=20, deadline=None)
@given(arch_sd=sds, noise_sd=st.floats(0.0, 1e-2), c=counts, n=counts, s=st.integers(1, 8), seed=st.integers(0, 99))
def test_a_proxy_without_fidelity_is_one_more_random_draw(arch_sd, noise_sd, c, n, s, seed):
    # rho = 0: the picked network is exchangeable with the N random ones, so it is the best of
    # the N + 1 with probability 1 / (N + 1), whatever the variances and the candidate count
    p = pp.win_probability(arch_sd, noise_sd, 0.0, candidates=c, n_random=n, seeds=s, trials=TRIALS,
                                  rng_seed=seed)
    _close(p, 1 / (n + 1))


@settings(max_examples=20, deadline=None)
@given(arch_sd=sds, c=counts, n=counts, seed=st.integers(0, 99))
def test_a_perfect_proxy_without_noise_wins_when_the_best_is_a_candidate(arch_sd, c, n, seed):
    # rho = 1, no seed noise: the search keeps the best candidate, which beats the best random
    # network exactly when the best of all C + N draws is a candidate: probability C / (C + N)
    p = pp.win_probability(arch_sd, 0.0, 1.0, candidates=c, n_random=n, seeds=2, trials=TRIALS, rng_seed=seed)
    _close(p, c / (c + n))


def test_fidelity_and_seeds_raise_the_chance():
    kw = {"candidates": 100, "n_random": 10, "trials": 20000}
    # a budget like 8M: small architecture spread, large seed noise
    low, high = (pp.win_probability(0.001, 0.0026, r, seeds=2, **kw) for r in (0.3, 0.9))
    assert high > low + 0.05
    assert pp.win_probability(0.001, 0.0026, 0.9, seeds=16, **kw) > high + 0.05
    with pytest.raises(ValueError):
        pp.win_probability(0.001, 0.001, 1.5)


def _row(budget, table):
    """A found_vs_random result row: the first network of ``table`` is the found one, each
    network a list of top-1 under seeds 0, 1."""
    by_seed = [{str(s): v for s, v in enumerate(t)} for t in table]
    return {"budget": budget, "seeds": [0, 1], "found_top1_by_seed": by_seed[0],
            "randoms": [{"top1_by_seed": b} for b in by_seed[1:]]}


def _inputs(tmp_path):
    runs = [{"results": [
        # seed 1 adds 0.02 to every network: a shared seed effect, no noise; network means
        # 0.90 and 0.92, whose sample sd is 0.02 / sqrt(2)
        _row(6_000_000, [[0.89, 0.91], [0.91, 0.93]]),
        # the means agree, the seeds swap: all noise. Residuals +-0.01 over 1 degree of
        # freedom: noise variance 4 * 0.01^2 = 0.0004, sd 0.02
        _row(8_000_000, [[0.90, 0.92], [0.92, 0.90]])]},
        {"results": [
            _row(6_000_000, [[0.90, 0.90], [0.90, 0.90]]),  # no spread at all
            {"budget": 4_000_000, "seeds": [0, 1], "found_top1_by_seed": {"0": 0.9, "1": 0.9},
             "randoms": [{"top1_by_seed": {"0": 0.9}}]}]}]  # --extra-for top: not used
    fid = {"fidelity": {"stabilized": {"6M": {"kendall_tau": 1 / 3}, "8M": {"kendall_tau": 0.0}},
                        "MAdds": {"6M": {"kendall_tau": 1.0}, "8M": {"kendall_tau": -1 / 3}}}}
    paths = []
    for i, r in enumerate(runs):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(r))
    (tmp_path / "f.json").write_text(json.dumps(fid))
    return [str(p) for p in paths], str(tmp_path / "f.json")


def test_components_and_pooling_by_hand(tmp_path):
    paths, _ = _inputs(tmp_path)
    comps = pp.variance_components([json.loads(Path(p).read_text()) for p in paths])
    assert set(comps) == {"6M", "8M"}
    # 6M pools an arch variance of 0.0002 with one of 0 (mean 0.0001); no noise in either
    assert comps["6M"]["arch_sd"] == pytest.approx(0.01) and comps["6M"]["noise_sd"] == pytest.approx(0.0, abs=1e-9)
    assert comps["6M"]["runs"] == 2
    assert comps["8M"] == {"arch_sd": pytest.approx(0.0, abs=1e-9), "noise_sd": pytest.approx(0.02), "runs": 1}


def test_cli_table_product_rule_and_bad_inputs(tmp_path):
    paths, fid = _inputs(tmp_path)
    out = tmp_path / "pp.json"
    p = subprocess.run([sys.executable, str(SCRIPT), *paths, "--fidelity", fid, "--seeds", "2",
                        "--trials", "4000", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "6M" in p.stdout and "8M" in p.stdout and "both 6M and 8M" in p.stdout
    res = json.loads(out.read_text())
    row = {r["budget"]: r for r in res["budgets"]}
    assert row["6M"]["rho"]["proxy"] == pytest.approx(0.5) and row["8M"]["rho"]["MAdds"] == pytest.approx(-0.5)
    _close(row["8M"]["p_win"]["proxy"], 1 / 11)  # tau 0 at 8M: a random pick
    both = res["two_budgets"][0]
    assert both["budgets"] == ["6M", "8M"]
    for k, v in both["p_win"].items():
        assert v == pytest.approx(row["6M"]["p_win"][k] * row["8M"]["p_win"][k])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"results": [{"budget": 6_000_000, "seeds": [0]}]}))
    for argv in ([str(bad), "--fidelity", fid], [*paths, "--fidelity", str(tmp_path / "missing.json")],
                 [*paths, "--fidelity", fid, "--seeds", "two"], [*paths, "--fidelity", fid, "--mode", "nope"]):
        q = subprocess.run([sys.executable, str(SCRIPT), *argv, "--out", str(tmp_path / "x.json")],
                           capture_output=True, text=True, timeout=120)
        assert q.returncode == 2 and "Traceback" not in q.stderr and len(q.stderr.strip().splitlines()) == 1, argv
        assert not (tmp_path / "x.json").exists()
