"""The run sized again after its supernet (stnas.pipeline.budget.resize): the stages left grow
back to what is configured or shrink to the minimum, to the time left, with their estimates
scaled by the supernet's actual over its estimate; the plan and config say so, and a run stopped
between saving the two resumes with the resizing."""

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plancases import DIGITS, TINY, UNITS

from stnas.core.errors import CheckpointError
from stnas.core.rundir import RunDir
from stnas.core.verified import write_json
from stnas.pipeline.budget import MINIMUM, SAFETY, resize, resized_text
from stnas.pipeline.config import resolve
from stnas.pipeline.estimate import STAGES, make_plan
from stnas.pipeline.plan import _with_resize, plan_text, read_plan

from conftest import run_cli

BUDGET_S = 600.0


@pytest.fixture(scope="module")
def configured():
    cfg = resolve("digits", overrides=["device=cpu", "baselines.enabled=false"])
    assert (cfg["search"]["generations"], cfg["retrain"]["epochs"]) == (4, 15)  # what the hand counts assume
    return cfg


def started(configured, generations=2, supernet_s=100.0):
    """A run sized at its start: search.generations 4 -> ``generations``, the supernet planned at
    ``supernet_s`` seconds, the budget ``BUDGET_S``."""
    cfg = copy.deepcopy(configured)
    cfg["search"]["generations"] = generations
    plan = make_plan(cfg, DIGITS, UNITS, calibration_s=5.0)
    plan["stages"][1]["seconds"] = supernet_s
    changed = {"search.generations": [4, generations]} if generations != 4 else {}
    plan["budget"] = {"time_budget": "10m", "seconds": BUDGET_S, "factor": 0.5, "changed": changed,
                      "baselines_off": None}
    return cfg, plan


def room_for_the_configured_run(configured) -> float:
    """The time taken that leaves room for the configured search and retraining, and 2 s."""
    rest = sum(STAGES[n](configured, DIGITS, UNITS)["seconds"] for n in ("search", "retrain"))
    return SAFETY * BUDGET_S - rest - 2.0


def test_time_left_grows_the_search_back_then_the_retraining(configured):
    cfg, plan = started(configured)
    new, out = resize(cfg, plan, elapsed=room_for_the_configured_run(configured), took=50.0)
    assert (new["search"]["generations"], new["retrain"]["epochs"]) == (4, 15)
    rec = out["budget"]["resized"]
    assert rec["changed"] == {"search.generations": [2, 4]} and rec["supernet_s"] == 50.0
    assert "search.generations" not in out["budget"]["changed"]  # back to the configured value
    assert new["supernet"] == cfg["supernet"] and new["pool"] == cfg["pool"]  # trained: untouched
    assert plan["budget"]["changed"] == {"search.generations": [4, 2]}  # the given plan is not modified
    # hours left: every stage left at three times its configured work
    new, out = resize(cfg, plan, elapsed=10.0 - 10 * BUDGET_S, took=50.0)
    assert (new["search"]["generations"], new["retrain"]["epochs"]) == (12, 45)
    assert out["budget"]["resized"]["changed"] == {"search.generations": [2, 12], "retrain.epochs": [15, 45]}
    assert out["budget"]["changed"] == {"search.generations": [4, 12], "retrain.epochs": [15, 45]}


def test_the_stages_left_are_planned_again_at_their_estimates(configured):
    cfg, plan = started(configured)
    new, out = resize(cfg, plan, elapsed=room_for_the_configured_run(configured), took=50.0)
    rows = {r["name"]: r for r in out["stages"]}
    for name in ("search", "retrain"):
        assert rows[name]["seconds"] == pytest.approx(STAGES[name](new, DIGITS, UNITS)["seconds"])
    assert rows["calibration"] == plan["stages"][0] and rows["supernet"] == plan["stages"][1]
    assert out["total_s"] == pytest.approx(sum(r["seconds"] for r in out["stages"]))
    assert out["budget"]["resized"]["planned_s"] == {n: plan["stages"][i]["seconds"] for i, n in
                                                     ((2, "search"), (3, "retrain"))}


def test_no_time_left_shrinks_to_the_minimum_and_is_never_refused(configured):
    cfg, plan = started(configured, generations=3)
    new, out = resize(cfg, plan, elapsed=BUDGET_S, took=300.0)
    assert new["search"]["generations"] == MINIMUM["search.generations"]
    assert new["retrain"]["epochs"] == MINIMUM["retrain.epochs"]
    assert out["budget"]["changed"] == {"search.generations": [4, 2], "retrain.epochs": [15, 1]}
    assert out["budget"]["resized"]["changed"] == {"search.generations": [3, 2], "retrain.epochs": [15, 1]}


def test_the_retraining_shrinks_only_once_the_search_is_at_its_minimum(configured):
    cfg, plan = started(configured, generations=4)
    plan["units"] = units = copy.deepcopy(UNITS)
    units["search"]["eval_s"] = 1.0  # a search that dwarfs the budget's safety margin (30 s)
    at = {g: STAGES["search"](dict(cfg, search=dict(cfg["search"], generations=g)), DIGITS, units)["seconds"]
          for g in (2, 3)}
    retrain15 = STAGES["retrain"](cfg, DIGITS, units)["seconds"]
    # left to plan: the full retraining and a little more than 2 generations
    new, out = resize(cfg, plan, elapsed=SAFETY * BUDGET_S - (retrain15 + at[2] + 1.0), took=100.0)
    assert (new["search"]["generations"], new["retrain"]["epochs"]) == (2, 15)
    assert at[3] > at[2] + 1.0  # (3 generations would not have fitted)
    # a little less than that: the search is at its minimum, so the retraining gives
    new, out = resize(cfg, plan, elapsed=SAFETY * BUDGET_S - (retrain15 + at[2] - 1.0), took=100.0)
    assert new["search"]["generations"] == 2 and new["retrain"]["epochs"] < 15


def test_a_few_seconds_over_the_safety_margin_shrink_nothing(configured):
    cfg, plan = started(configured, generations=3)
    as_sized = sum(STAGES[n](cfg, DIGITS, UNITS)["seconds"] for n in ("search", "retrain"))
    # past the 90% line by 5 s, but within the budget itself: kept as sized
    assert resize(cfg, plan, elapsed=SAFETY * BUDGET_S - as_sized + 5.0, took=100.0) is None
    # past the budget itself: shrunk, to the 90% line
    new, out = resize(cfg, plan, elapsed=BUDGET_S - as_sized + 5.0, took=100.0)
    assert new["search"]["generations"] == 2


def test_a_run_on_time_changes_nothing(configured):
    cfg, plan = started(configured, generations=4)
    as_sized = sum(STAGES[n](cfg, DIGITS, UNITS)["seconds"] for n in ("search", "retrain"))
    assert resize(cfg, plan, elapsed=SAFETY * BUDGET_S - as_sized - 0.01, took=100.0) is None


@given(st.floats(0.0, 2 * BUDGET_S), st.floats(0.0, 2 * BUDGET_S), st.floats(1.0, 400.0))
@settings(max_examples=30, deadline=None)
def test_more_time_taken_never_means_more_work_left(a, b, took):
    cfg, plan = started(resolve("digits", overrides=["device=cpu", "baselines.enabled=false"]), generations=3)
    work = []
    for elapsed in sorted((a, b)):
        out = resize(cfg, plan, elapsed=elapsed, took=took)
        c = out[0] if out else cfg
        work.append((c["search"]["generations"], c["retrain"]["epochs"]))
    assert work[0][0] >= work[1][0] and work[0][1] >= work[1][1]


def test_a_run_stopped_between_saving_plan_and_config_resumes_resized(configured, tmp_path):
    cfg, plan = started(configured)
    new, out = resize(cfg, plan, elapsed=room_for_the_configured_run(configured), took=50.0)
    run = RunDir(tmp_path)
    write_json(run.plan, out)
    # the config still holds the generations the run started with (2), or already the resized ones (4)
    for saved in (cfg, new):
        plan_read = read_plan(run, saved)
        assert _with_resize(saved, plan_read)["search"]["generations"] == 4
    other = copy.deepcopy(cfg)
    other["retrain"]["epochs"] = 7  # a value neither plan nor resize gave
    out2 = copy.deepcopy(out)
    out2["budget"]["changed"]["retrain.epochs"] = [15, 5]
    write_json(run.plan, out2)
    with pytest.raises(CheckpointError, match="sized retrain.epochs to 5"):
        read_plan(run, other)


def test_the_resizing_is_said_in_one_line(configured):
    cfg, plan = started(configured)
    _, out = resize(cfg, plan, elapsed=room_for_the_configured_run(configured), took=50.0)
    line = resized_text(out["budget"]["resized"], "10m")
    assert "\n" not in line and "the supernet took 50 s (0.50 of its estimate)" in line
    assert "sized again (search.generations 2 -> 4)" in line
    assert line in plan_text(out)


def test_a_run_faster_than_planned_grows_its_search_back(recorded, tmp_path):
    # planned: the supernet at 15 s a step and the search at 3 s an evaluation, so that 3 minutes cut
    # both; the supernet then takes a few seconds, far under its estimate
    recorded.units["supernet"]["step_s"] = 15.0
    recorded.units["search"]["eval_s"] = 3.0
    out = tmp_path / "r"
    p = run_cli(["run", "--preset", "digits", "--time", "3m", "--out", out, "baselines.enabled=false"] + TINY)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "time budget 3m: sized to fit (supernet.epochs 4 -> 2, search.generations 3 -> 2)" in p.stderr
    run = RunDir(out)
    cfg = run.load_config()
    plan = read_plan(run, cfg)
    resized = plan["budget"]["resized"]["changed"]
    # the search grows back (2 -> 3 generations), then the retraining and the search grow on
    assert resized["search.generations"][0] == 2 and resized["search.generations"][1] >= 3
    assert resized["retrain.epochs"][0] == 2 and resized["retrain.epochs"][1] > 2
    line = f"the stages after it sized again (search.generations 2 -> {resized['search.generations'][1]}"
    assert line in p.stderr
    assert cfg["search"]["generations"] == resized["search.generations"][1] and cfg["supernet"]["epochs"] == 2
    assert plan["budget"]["changed"]["supernet.epochs"] == [4, 2]
    searched = json.loads((out / "search" / "search.json").read_text())
    assert searched["generations"] == cfg["search"]["generations"]  # what the search ran
    report = json.loads((out / "report.json").read_text())
    assert report["planned_s"]["search"] == next(s["seconds"] for s in plan["stages"] if s["name"] == "search")

    saved = run.plan.read_bytes()
    p = run_cli(["run", "--out", out, "--resume"])  # a finished run: nothing sized again
    assert p.returncode == 0 and line in p.stderr  # the saved plan, said
    assert run.plan.read_bytes() == saved
