"""Plans corrected by what earlier runs here took (stnas.pipeline.actuals): the ratios kept, their
median applied to the calibrated estimates, busy or short stages left out, and a second run's plan
using the first run's timings."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plancases import DIGITS, TINY, UNITS

from stnas.core.rundir import RunDir
from stnas.pipeline.actuals import BOUNDS, KEEP, corrections, record
from stnas.pipeline.calibrate import LOAD_LIMIT, cache_dir
from stnas.pipeline.config import resolve
from stnas.pipeline.estimate import STAGES, make_plan

from conftest import run_cli


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "plan"


def a_plan(calibrated: dict[str, float]) -> dict:
    return {"actual_keys": {s: f"actual-{s}-x-0123" for s in calibrated},
            "stages": [{"name": "calibration", "seconds": 3.0}]
            + [{"name": s, "seconds": 2 * c, "calibrated_s": c} for s, c in calibrated.items()]}


def test_a_run_keeps_actual_over_calibrated_and_the_median_corrects(cache):
    plan = a_plan({"supernet": 100.0, "search": 50.0})
    for took in (80.0, 90.0, 120.0):  # three runs
        assert record(plan, {"supernet": took, "search": 40.0}, {"supernet": 0.0, "search": None}) == ["supernet",
                                                                                                         "search"]
    got = corrections(plan["actual_keys"])
    assert got["supernet"] == {"factor": pytest.approx(0.9), "runs": 3}  # the median of 0.8, 0.9, 1.2
    assert got["search"] == {"factor": pytest.approx(0.8), "runs": 3}
    assert sorted(p.name for p in cache.iterdir()) == ["actual-search-x-0123.json", "actual-supernet-x-0123.json"]


def test_only_the_latest_runs_count_and_the_factor_is_bounded(cache):
    plan = a_plan({"search": 10.0})
    for took in [100.0] * 3 + [2.0] * KEEP:
        record(plan, {"search": took}, {})
    assert corrections(plan["actual_keys"])["search"] == {"factor": BOUNDS[0], "runs": KEEP}  # 0.2, bounded


def test_busy_short_resumed_or_unplanned_stages_are_not_kept(cache):
    plan = a_plan({"supernet": 100.0, "search": 50.0, "retrain": 0.0})
    kept = record(plan, {"supernet": 90.0, "search": 0.5, "retrain": 10.0, "baselines": 30.0},
                  {"supernet": LOAD_LIMIT + 0.1})
    assert kept == [] and not cache.exists()
    assert record(None, {"supernet": 90.0}, {}) == []  # a run without a plan


def test_a_damaged_record_starts_again(cache):
    plan = a_plan({"search": 10.0})
    record(plan, {"search": 8.0}, {})
    path = cache / "actual-search-x-0123.json"
    path.write_text(path.read_text().replace("0.8", "0.9"))  # the checksum no longer holds
    assert corrections(plan["actual_keys"]) == {}
    record(plan, {"search": 12.0}, {})
    assert corrections(plan["actual_keys"])["search"] == {"factor": pytest.approx(1.2), "runs": 1}


@given(st.floats(0.5, 2.0), st.sampled_from(["supernet", "search", "retrain"]))
@settings(max_examples=20, deadline=None)
def test_a_correction_multiplies_its_stage_only(factor, stage):
    cfg = resolve("digits", overrides=["device=cpu"])
    units = dict(UNITS, correction={stage: {"factor": factor, "runs": 2}})
    for name in ("supernet", "search", "retrain"):
        plain, fixed = STAGES[name](cfg, DIGITS, UNITS), STAGES[name](cfg, DIGITS, units)
        assert fixed["calibrated_s"] == plain["seconds"] == plain["calibrated_s"]
        assert fixed["seconds"] == pytest.approx(plain["seconds"] * (factor if name == stage else 1.0))
    work = make_plan(cfg, DIGITS, units)["stages"][0]["work"]
    assert f"corrected by earlier runs here ({stage} ×{factor:.2f})" in work


def test_a_second_run_plans_with_the_first_runs_timings(recorded, tmp_path, monkeypatch):
    import stnas.pipeline.actuals as actuals

    # stages of a second or less, beside the other test processes: kept all the same here
    monkeypatch.setattr(actuals, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(actuals, "LOAD_LIMIT", float("inf"))
    args = ["run", "--preset", "digits", "baselines.enabled=false"] + TINY
    p = run_cli(args + ["--out", tmp_path / "a"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "corrected by earlier runs" not in p.stderr
    first = json.loads((tmp_path / "a" / "report.json").read_text())
    plan_a = RunDir(tmp_path / "a").plan
    plan_a = json.loads(plan_a.read_text())
    files = {p.name.split("-")[1]: p for p in cache_dir().glob("actual-*.json")}
    assert set(files) == {"supernet", "search", "retrain"}
    calibrated = {r["name"]: r["calibrated_s"] for r in plan_a["stages"][1:]}
    for stage, path in files.items():
        assert json.loads(path.read_text())["ratios"] == [pytest.approx(first["wall_s"][stage] / calibrated[stage])]

    p = run_cli(args + ["--out", tmp_path / "b"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "corrected by earlier runs here (supernet ×" in p.stderr
    plan_b = json.loads(RunDir(tmp_path / "b").plan.read_text())
    for row in plan_b["stages"][1:]:
        ratio = first["wall_s"][row["name"]] / calibrated[row["name"]]
        want = min(max(ratio, BOUNDS[0]), BOUNDS[1])
        assert row["seconds"] == pytest.approx(row["calibrated_s"] * want)

    before = {s: path.read_bytes() for s, path in files.items()}
    p = run_cli(["run", "--out", tmp_path / "b", "--resume"])  # a resumed run keeps nothing
    assert p.returncode == 0, p.stderr[-2000:]
    assert {s: path.read_bytes() for s, path in files.items()} == before
    assert all(len(json.loads(path.read_text())["ratios"]) == 2 for path in files.values())


def test_a_steps_plan_is_corrected_by_earlier_runs_too(recorded, tmp_path):
    import torch

    from stnas.core.verified import write_json
    from stnas.pipeline.actuals import keys
    from stnas.pipeline.calibrate import data_sizes
    from stnas.space.catalog import load_space

    cfg = resolve("digits", overrides=["device=cpu"])
    space = load_space("digits")
    name = keys(cfg, space, ("supernet",), torch.device("cpu"), data_sizes(cfg, space, ("supernet",)))["supernet"]
    write_json(cache_dir() / f"{name}.json", {"ratios": [1.4, 1.5, 1.7]})  # as three runs of `stnas run` left them
    p = run_cli(["supernet", "train", "--preset", "digits", "--dry-run", "--out", tmp_path / "s", "device=cpu"])
    assert p.returncode == 0, p.stderr
    assert "corrected by earlier runs here (supernet ×1.50)" in p.stdout
    assert not (tmp_path / "s").exists()
