"""experiments/truth_metrics.py: the temperature-scaled loss, and summary's --metrics."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.verified import write_json

from experiments import ground_truth as gt
from experiments import truth_metrics as tm
from experiments.common import TABLE_FORMAT


def _case(seed: int, n: int = 400, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=g, dtype=torch.float64) * 3
    labels = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)
    return logits, labels


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.2, 5.0))
def test_scaling_the_logits_moves_the_temperature_not_the_scaled_loss(seed, c):
    logits, labels = _case(seed)
    loss1, loss_t, t = tm.scaled_loss(logits, labels)
    assert loss1 == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    assert loss_t <= loss1 + 1e-9
    loss1_c, loss_t_c, t_c = tm.scaled_loss(logits * c, labels)
    assert loss_t_c == pytest.approx(loss_t, abs=1e-6)
    assert t_c == pytest.approx(t * c, rel=1e-3)


def test_calibrated_logits_need_no_temperature():
    # labels drawn from softmax(logits): the logits are calibrated, T* is near 1
    logits, labels = _case(3, n=20_000)
    _, _, t = tm.scaled_loss(logits, labels)
    assert t == pytest.approx(1.0, abs=0.05)


def _table(path, rows):
    path.write_text(json.dumps({"format": TABLE_FORMAT, "budgets": [1], "seeds": [0, 1], "rows": rows}))


def test_summary_reads_the_metrics_asked_for(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [{"arch": f"a{i}", "budget": 1, "seeds": {s: {"top1": float(rng.random()), "test_loss": float(rng.random()),
                                                         "test_loss_ts": float(rng.random())} for s in ("0", "1")}}
            for i in range(6)]
    _table(tmp_path / "t.json", rows)
    gt.main(["summary", str(tmp_path / "t.json"), "--metrics", "test_loss_ts", "--resamples", "50"])
    out = capsys.readouterr().out
    assert "test_loss_ts" in out and " top1 " not in out


def test_summary_names_a_missing_metric(tmp_path, capsys):
    rows = [{"arch": f"a{i}", "budget": 1, "seeds": {s: {"top1": 0.5, "test_loss": 0.3} for s in ("0", "1")}}
            for i in range(4)]
    _table(tmp_path / "t.json", rows)
    with pytest.raises(SystemExit) as exc:
        gt.main(["summary", str(tmp_path / "t.json"), "--metrics", "test_loss_ts"])
    assert exc.value.code == 2
    assert "test_loss_ts" in capsys.readouterr().err


def test_derived_table_from_a_real_build_and_a_foreign_model_refused(tmp_path, capsys):
    work, table = tmp_path / "work", tmp_path / "t.json"
    gt.main(["build", "--preset", "digits", "--work", str(work), "--out", str(table), "--budgets", "200k",
             "--band", "0.5", "--seeds", "0,1", "--n", "2", "--jobs", "1", "--threads", "1",
             "--set", "retrain.epochs=1", "--set", "retrain.limit=300"])
    tm.main([str(table), "--work", str(work), "--out", str(tmp_path / "ts.json")])
    src, derived = json.loads(table.read_text()), json.loads((tmp_path / "ts.json").read_text())
    assert [r["arch"] for r in derived["rows"]] == [r["arch"] for r in src["rows"]]
    for a, b in zip(src["rows"], derived["rows"]):
        for s, res in a["seeds"].items():
            assert b["seeds"][s]["test_loss"] == res["test_loss"]
            assert 0 < b["seeds"][s]["test_loss_ts"] <= res["test_loss"] + 1e-9
            assert b["seeds"][s]["temperature"] > 0
    # a table whose recorded loss is not the model's: refused in one line, nothing written
    src["rows"][0]["seeds"]["0"]["test_loss"] += 0.01
    write_json(table, src)
    with pytest.raises(SystemExit) as exc:
        tm.main([str(table), "--work", str(work), "--out", str(tmp_path / "other.json")])
    assert exc.value.code == 2 and "not this table's model" in capsys.readouterr().err
    assert not (tmp_path / "other.json").exists()
