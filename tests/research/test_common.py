"""experiments/common.py: the shared statistics by hand and against scipy, and the readers'
refusals of files that are not what they claim."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import StnasError

from experiments import common


def test_tau_is_zero_where_undefined():
    assert common.tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert common.tau([1, 1, 1], [1, 2, 3]) == 0.0  # scipy: NaN


def test_tau_to_rho():
    assert common.tau_to_rho(0.0) == 0.0 and common.tau_to_rho(1.0) == pytest.approx(1.0)
    assert common.tau_to_rho(-1.0) == pytest.approx(-1.0)
    assert common.tau_to_rho(1 / 3) == pytest.approx(0.5)  # sin(pi / 6)


def test_ci95_leaves_nan_draws_out():
    d = np.arange(1001, dtype=float)  # percentiles of 0..1000 fall on 25 and 975
    assert common.ci95(d) == [25.0, 975.0]
    assert common.ci95(np.concatenate([d, [np.nan] * 50])) == [25.0, 975.0]
    assert all(math.isnan(x) for x in common.ci95([np.nan, np.nan]))


def test_two_way_mean_squares_by_hand():
    # networks x seeds; seed 1 is +1 on every network (shared, not noise): residuals 0
    x = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    ms_arch, ms_res = common.two_way_mean_squares(x)
    # network means 1.5, 3.5, 5.5 around 3.5: 2 seeds x (4 + 0 + 4) / (3 - 1)
    assert ms_arch == pytest.approx(8.0) and ms_res == pytest.approx(0.0)
    y = x + np.array([[0.5, -0.5], [-0.5, 0.5], [0.0, 0.0]])  # interaction: residuals ±0.5 on two networks
    assert common.two_way_mean_squares(y)[1] == pytest.approx(4 * 0.25 / 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 8), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_two_way_mean_squares_match_the_anova_identity(n, k, seed):
    # total SS = SS networks + SS seeds + SS residual (a two-way layout without replication)
    x = np.random.default_rng(seed).normal(size=(n, k))
    ms_arch, ms_res = common.two_way_mean_squares(x)
    ss_seeds = n * ((x.mean(0) - x.mean()) ** 2).sum()
    total = ((x - x.mean()) ** 2).sum()
    assert ms_arch * (n - 1) + ss_seeds + ms_res * (n - 1) * (k - 1) == pytest.approx(total)


def test_task_dir_and_seed_extension(tmp_path):
    a = common.task_dir(tmp_path, "digits:012012/.1.0.....", 3)
    assert a.parent.parent == tmp_path and a.name == "seed3" and len(a.parent.name) == 12
    assert common.task_dir(tmp_path, "digits:012012/.1.0.....", 4).parent == a.parent
    assert common.task_dir(tmp_path, "digits:012012/.1.0....1", 3).parent != a.parent
    assert common.extends_seeds([0, 1], [0, 1, 2, 3]) and common.extends_seeds([0, 1], [0, 1])
    assert not common.extends_seeds([0, 1], [1, 0, 2]) and not common.extends_seeds([0, 1], [0])
    assert not common.extends_seeds(None, [0, 1])


def test_truth_value_is_higher_better():
    r = {"top1": 0.9, "test_loss": 0.3}
    assert common.truth_value(r, "top1") == 0.9
    assert common.truth_value(r, "loss") == common.truth_value(r, "test_loss") == -0.3


def test_read_table_refuses_what_is_not_a_table(tmp_path):
    good = {"format": common.TABLE_FORMAT, "rows": [{"seeds": {"0": {}, "1": {}}}, {"seeds": {"0": {}}}]}
    (tmp_path / "t.json").write_text(json.dumps(good))
    table = common.read_table(tmp_path / "t.json")
    assert len(common.rows_with_seeds(table, 2)) == 1 and len(common.rows_with_seeds(table, 0)) == 2
    for name, text in (("list", "[]"), ("fmt", '{"format": "x", "rows": []}'), ("rows", json.dumps(
            {"format": common.TABLE_FORMAT, "rows": {}})), ("bad", "{not json")):
        (tmp_path / f"{name}.json").write_text(text)
        with pytest.raises(StnasError, match="table"):
            common.read_table(tmp_path / f"{name}.json")
    with pytest.raises(StnasError, match="does not exist"):
        common.read_table(tmp_path / "missing.json")


def _record(**kw):
    return {"format": common.RECORD, "version": common.RECORD_VERSION, "label": "r", "preset_cell": "c",
            "cells": {"c": {"a": 0.5}}} | kw


@pytest.mark.parametrize("bad, why", [
    ({"version": 2}, "version"), ({"cells": {}}, "cells"), ({"cells": {"c": {"a": float("nan")}}}, "cells"),
    ({"cells": {"c": {"a": "0.5"}}}, "cells"), ({"label": 3}, "label"), ({"preset_cell": "d"}, "preset_cell")])
def test_read_record_refuses_a_malformed_record(tmp_path, bad, why):
    (tmp_path / "ok.json").write_text(json.dumps(_record()))
    assert common.read_record(tmp_path / "ok.json")["label"] == "r"
    (tmp_path / "r.json").write_text(json.dumps(_record(**bad)))
    with pytest.raises(StnasError, match=why if why != "cells" else "'cells'"):
        common.read_record(tmp_path / "r.json")


def test_planned_archs_reads_plans_and_tables(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"archs": {"1": ["a", "b"], "2": ["c"]}}))
    (tmp_path / "table.json").write_text(json.dumps({"rows": [{"arch": "a"}, {"x": 1}, {"arch": "d"}]}))
    (tmp_path / "other.json").write_text(json.dumps({"neither": 1}))
    assert common.planned_archs(str(tmp_path / "plan.json")) == ["a", "b", "c"]
    assert common.planned_archs(str(tmp_path / "table.json")) == ["a", "d"]
    with pytest.raises(StnasError, match="neither"):
        common.planned_archs(str(tmp_path / "other.json"))
    assert common.is_record("x/r.json") and not common.is_record("runs/a")


def test_one_line_errors_exits_2_on_bad_input(capsys):
    def bad():
        raise StnasError("no such table")

    with pytest.raises(SystemExit) as e:
        common.one_line_errors(bad)
    assert e.value.code == 2 and capsys.readouterr().err == "error: no such table\n"
    assert common.one_line_errors(lambda x: x + 1, 1) == 2
    with pytest.raises(ZeroDivisionError):  # a bug is not bad input: its traceback stays
        common.one_line_errors(lambda: 1 / 0)
