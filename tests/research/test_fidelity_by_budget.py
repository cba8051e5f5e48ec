"""experiments/fidelity_by_budget.py: Kendall tau within each budget, from hand-made inputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import fidelity_by_budget as fbb

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "fidelity_by_budget.py"
# digits architectures and their MAdds (stnas arch show): 214,816 < 231,552 < 295,008 < 303,712
A, B, C, D = "digits:102220/..000..1.", "digits:221100/0......1.", "digits:012211/01.0.1.10", "digits:212320/1011.111."


def _inputs(tmp_path):
    truth = {"format": "stnas-truth", "version": 1, "preset": "digits", "results": [
        # 300k: A, B, C; B has two seeds (mean 0.85); C is found for 300k and for 350k
        {"arch": A, "top1": 0.80, "seed": 0, "role": "random 1 within 300k"},
        {"arch": B, "top1": 0.84, "seed": 0, "role": "random 2 within 300k"},
        {"arch": B, "top1": 0.86, "seed": 1, "role": "random 2 within 300k"},
        {"arch": C, "top1": 0.90, "seed": 0, "role": "found 300k"},
        {"arch": C, "top1": 0.90, "seed": 0, "role": "found 350k"},
        {"arch": D, "top1": 0.70, "seed": 0, "role": "random 1 within 350k"},
        {"arch": A, "top1": 0.80, "seed": 0, "role": "random 2 within 350k"},
        {"arch": D, "top1": 0.99, "seed": 0, "role": "an entry without a budget"}]}
    # D's mean is (0.70 + 0.99) / 2 = 0.845
    rank = {"modes": {"stabilized": {"scores": [{"arch": A, "score": 1.0}, {"arch": B, "score": 2.0},
                                                {"arch": C, "score": 3.0}, {"arch": D, "score": 4.0}]}}}
    (tmp_path / "t.json").write_text(json.dumps(truth))
    (tmp_path / "r.json").write_text(json.dumps(rank))
    return rank, truth


def test_tau_within_each_budget_by_hand(tmp_path):
    rank, truth = _inputs(tmp_path)
    table = fbb.fidelity({"modes": rank["modes"] | fbb.madds_scores(truth)}, truth)
    # 300k: scores A<B<C, accuracies 0.80<0.85<0.90: all 3 pairs concordant, tau = +1
    assert table["stabilized"]["300k"]["n"] == 3 and table["stabilized"]["300k"]["kendall_tau"] == pytest.approx(1.0)
    # 350k: A, C, D. Scores 1, 3, 4; accuracies 0.80, 0.90, 0.845.
    # Pairs (A,C) +, (A,D) +, (C,D) -: tau = (2 - 1) / 3
    assert table["stabilized"]["350k"]["kendall_tau"] == pytest.approx(1 / 3)
    # by MAdds: 300k A<B<C by MAdds too (+1); 350k A<C<D by MAdds, the same order as the scores
    assert table["MAdds"]["300k"]["kendall_tau"] == pytest.approx(1.0)
    assert table["MAdds"]["350k"]["kendall_tau"] == pytest.approx(1 / 3)


def test_cli_prints_the_table_and_rejects_bad_input(tmp_path):
    _inputs(tmp_path)
    out = tmp_path / "f.json"
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "r.json"), "--truth", str(tmp_path / "t.json"),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "300k" in p.stdout and "+1.00 (n=3" in p.stdout and "+0.33 (n=3" in p.stdout
    assert json.loads(out.read_text())["fidelity"]["stabilized"]["300k"]["n"] == 3
    (tmp_path / "bad.json").write_text("{not json")
    p = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "bad.json"), "--truth", str(tmp_path / "t.json")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
