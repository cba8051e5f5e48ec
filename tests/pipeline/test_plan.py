"""The plan before any work and the time budget it keeps (stnas.pipeline.plan): the stages and
their arithmetic on a recorded calibration, the search's evaluation count against the real
search loop, the sizing rule, and the CLI: --dry-run writes nothing, a too-small or bad --time
is one line and exit 2 before any work, a resumed run keeps its plan."""

import copy
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plancases import DIGITS, TINY, UNITS

import stnas.pipeline.estimate as estimate_mod
from stnas.core.errors import CheckpointError, ConfigError
from stnas.core.rundir import RunDir
from stnas.core.units import parse_duration
from stnas.pipeline.budget import FIRST, MINIMUM, SAFETY, SECOND, fit, fit_run, sized
from stnas.pipeline.config import resolve
from stnas.pipeline.estimate import RUN_STAGES, STAGES, _checkpoints, make_plan, run_stages, search_evaluations
from stnas.pipeline.plan import plan_text, read_plan
from stnas.pipeline.report import time_lines
from stnas.proxy.score import Score
from stnas.search.evolution import search
from stnas.space.catalog import load_space

from conftest import run_cli


@pytest.fixture(scope="module")
def digits():
    return resolve("digits", overrides=["device=cpu"])


def test_the_plan_lists_the_stages_in_pipeline_order(digits):
    plan = make_plan(digits, DIGITS, UNITS, calibration_s=5.0)
    assert [s["name"] for s in plan["stages"]] == ["calibration", "supernet", "search", "retrain"]
    assert list(STAGES) == ["supernet", "search", "retrain", "baselines"]  # a new stage is one entry here
    assert plan["stages"][0]["seconds"] == 5.0
    assert run_stages(digits, DIGITS) == ("supernet", "search", "retrain", "baselines")  # 1,437 × 15 ≤ 30,000
    assert run_stages(resolve("digits", overrides=["baselines.enabled=false"]), DIGITS) == RUN_STAGES
    assert run_stages(resolve("fashion-mnist"), {"train": 15_000}) == RUN_STAGES  # 15,000 × 3 > 30,000


# ------------------------------------------------------------------ the baselines stage
class Net:
    """A stand-in baseline network: a key and its MAdds."""

    def __init__(self, key, madds):
        self.key, self.madds = key, madds


@pytest.fixture
def two_networks(monkeypatch):
    """Every budget is fitted by networks of 125k and 500k MAdds (one of them twice: counted once)."""
    asked = []

    def fake_plan(cfg, budgets, shape):
        asked.append((budgets, shape))
        return [{"budget": b, "networks": [Net("a", 125_000), Net("b", 500_000)], "unfit": []} for b in budgets]

    monkeypatch.setattr(estimate_mod, "baselines_plan", fake_plan)
    monkeypatch.setattr(estimate_mod, "cost", lambda b: (b.madds, 0))
    return asked


BASE_SIZES = dict(DIGITS, input=[1, 8, 10])


def test_baselines_arithmetic_by_hand(digits, two_networks):
    # retraining: 15 epochs × 22 steps = 330, 21 checkpoints and 33 log lines: 21 × 0.4 + 33 × 0.02 = 9.06 s.
    # The reference: the mean of the budgets 200k and 300k, 250k MAdds, at the mean step 0.06 s; the
    # networks scale by 125k / 250k = 0.5 and 500k / 250k = 2. Evaluations: 2 × 360 test images and
    # min(20, ⌊1437 / 64⌋) × 64 = 1,280 recalibration images: 2,000 × 0.001 s × scale.
    # A training: 330 × 0.06 × x + 9.06 + 2 x = 21.8 x + 9.06. The two picks (budgets from the search's)
    # are evaluated too (2 × 2.0 s) and, like the networks, timed for latency: 10 + max(30, 50) calls
    # of 1 image × 0.001 s × (0.5 + 2 + 1 + 1)
    s = STAGES["baselines"](digits, BASE_SIZES, UNITS)
    assert (s["networks"], s["trainings"], s["steps"]) == (2, 2, 330)
    assert s["seconds"] == pytest.approx((21.8 * 0.5 + 9.06) + (21.8 * 2 + 9.06) + 2 * 2.0 + 60 * 0.001 * 4.5)
    budgets, shape = two_networks[0]
    assert [b.label for b in budgets] == ["200k", "300k"] and shape == (1, 8, 10)


def test_baselines_arithmetic_with_calibrated_network_steps(digits, two_networks):
    # each network's own step, where the calibration timed it: a at 0.03 s is scale 0.5 of the picks'
    # 0.06 s step (as its MAdds say), b at 0.24 s is scale 4 (its MAdds said 2); everything else as above
    units = dict(UNITS, baselines={"step_s": {"a": 0.03, "b": 0.24}})
    s = STAGES["baselines"](digits, BASE_SIZES, units)
    assert s["seconds"] == pytest.approx((21.8 * 0.5 + 9.06) + (21.8 * 4 + 9.06) + 2 * 2.0 + 60 * 0.001 * 6.5)
    # a network the calibration did not time keeps the MAdds scaling
    units = dict(UNITS, baselines={"step_s": {"b": 0.24}})
    s = STAGES["baselines"](digits, BASE_SIZES, units)
    assert s["seconds"] == pytest.approx((21.8 * 0.5 + 9.06) + (21.8 * 4 + 9.06) + 2 * 2.0 + 60 * 0.001 * 6.5)


def test_baselines_arithmetic_with_seeds_by_hand(digits, two_networks):
    # two seeds: each network trained twice, each pick retrained once more (a retraining at scale 1
    # without the comparison's evaluations: 21.8 + 9.06 - 2.0, plus its 360 test images and an export)
    # and evaluated under both seeds
    cfg = resolve("digits", overrides=["device=cpu", "baselines.seeds=2"])
    s = STAGES["baselines"](cfg, BASE_SIZES, UNITS)
    assert s["trainings"] == 2 * 2 + 2 * 1
    pick = 21.8 + 9.06 - 2.0 + 0.36 + 3.0
    assert s["seconds"] == pytest.approx(2 * (21.8 * 0.5 + 9.06) + 2 * (21.8 * 2 + 9.06) + 2 * pick + 2 * 2 * 2.0
                                         + 60 * 0.001 * 4.5)
    assert "2 networks × 2 seeds and 2 picks under 1 more: 6 trainings × 15 epochs" in s["work"]


def test_stnas_baselines_plans_no_picks(two_networks):
    cfg = resolve("digits", overrides=["baselines.budgets=[300k, params:50k+2ms]"])
    s = STAGES["baselines"](cfg, dict(BASE_SIZES, standalone=True), UNITS)
    assert s["trainings"] == 2
    budgets, _ = two_networks[0]
    assert [b.label for b in budgets] == ["300k", "params:50k"]  # latency limits left out: an upper bound


def _run_total(cfg, stages):
    return sum(STAGES[s](cfg, BASE_SIZES, UNITS)["seconds"] for s in stages)


def test_a_time_budget_that_holds_the_baselines_keeps_them(digits, two_networks):
    new, budget = fit_run(digits, BASE_SIZES, UNITS, "10h", spent=5.0)
    assert budget["baselines_off"] is None and new["retrain"]["epochs"] == 45
    # 45 epochs × 1,437 images would turn the small-retraining rule off: the planned stage is kept on
    assert budget["changed"]["baselines.enabled"] == [None, True]
    plan = make_plan(new, BASE_SIZES, UNITS, run_stages(new, BASE_SIZES))
    assert [s["name"] for s in plan["stages"]][-1] == "baselines"


def test_a_time_budget_without_room_turns_the_auto_baselines_off(digits, two_networks):
    without, full = _run_total(digits, RUN_STAGES), _run_total(digits, STAGES)
    time = f"{(without + full) / 2 / SAFETY:.0f}s"  # the run fits, the run with its baselines does not
    new, budget = fit_run(digits, BASE_SIZES, UNITS, time)
    assert budget["changed"]["baselines.enabled"] == [None, False]
    assert set(budget["changed"]) == {"baselines.enabled", "retrain.epochs"}  # then the room left grows the retraining
    assert budget["changed"]["retrain.epochs"][1] > 15
    assert run_stages(new, BASE_SIZES) == RUN_STAGES and "baselines stage off" in budget["baselines_off"]
    text = plan_text(dict(make_plan(new, BASE_SIZES, UNITS), budget=budget))
    assert "baselines stage off" in text and "grown to use it (retrain.epochs 15 -> " in text
    assert "  baselines " not in text
    # room for the run without the stage and no more: nothing else changes, and the plan says so
    time = f"{(without + 0.001) / SAFETY:.3f}s"
    new, budget = fit_run(digits, BASE_SIZES, UNITS, time)
    assert budget["changed"] == {"baselines.enabled": [None, False]}
    text = plan_text(dict(make_plan(new, BASE_SIZES, UNITS), budget=budget))
    assert "fits, with too little to spare to grow without it; nothing else changed" in text


def test_a_sized_retraining_does_not_turn_the_auto_baselines_on(two_networks):
    # 30 epochs × 1,437 > 30,000: off; scaled to 15 or fewer it would be on, unplanned: it stays off
    cfg = resolve("digits", overrides=["device=cpu", "retrain.epochs=30"])
    assert run_stages(cfg, BASE_SIZES) == RUN_STAGES
    new, budget = fit_run(cfg, BASE_SIZES, UNITS, f"{0.4 * _run_total(cfg, RUN_STAGES) / SAFETY:.0f}s")
    assert new["retrain"]["epochs"] <= 15 and new["baselines"]["enabled"] is False
    assert budget["changed"]["baselines.enabled"] == [None, False] and budget["baselines_off"] is None


def test_baselines_on_by_request_are_scaled_or_refused(two_networks):
    cfg = resolve("digits", overrides=["device=cpu", "baselines.enabled=true"])
    full = _run_total(cfg, STAGES)
    new, budget = fit_run(cfg, BASE_SIZES, UNITS, f"{0.6 * full / SAFETY:.0f}s")
    assert new["baselines"]["enabled"] is True and new["retrain"]["epochs"] < 15
    assert _run_total(new, STAGES) <= 0.6 * full + 1
    with pytest.raises(ConfigError, match="--no-baselines leaves that stage out"):
        fit_run(cfg, BASE_SIZES, UNITS, "20s")


def test_supernet_arithmetic_by_hand(digits):
    # 20 epochs of ⌊1150 / 64⌋ = 17 steps: 340, the last 2 x 17 = 34 with SGLD; checkpoints at the
    # 17 multiples of 20, the 20 epoch ends, less step 340 counted twice: 36; files: 20 epochs,
    # 4 pool samples, the final weights; 34 log lines
    s = STAGES["supernet"](digits, DIGITS, UNITS)
    assert (s["steps"], s["phase_steps"], s["checkpoints"]) == (340, 34, 36)
    assert s["seconds"] == pytest.approx(306 * 0.1 + 34 * 0.2 + 36 * 1.0 + 25 * 0.5 + 34 * 0.01)


def test_search_arithmetic_by_hand(digits):
    # no screen: 4 generations x 16 candidates x 4 pool samples; each generation loads the 4 samples
    s = STAGES["search"](digits, DIGITS, UNITS)
    assert (s["candidates"], s["evaluations"]) == (64, 256)
    assert s["seconds"] == pytest.approx(256 * (0.3 + 0.01) + 16 * 2.0)


def test_screened_search_arithmetic_by_hand(digits):
    # fashion-mnist's search: 20 candidates, 10 per budget, the best ceil(0.2 x 10) = 2 of each
    # promoted to the 7 other samples: 20 + 4 x 7 = 48 a generation (the 2.4 per candidate of
    # stnas.search.evolution), 1 + 7 sources loaded
    cfg = resolve("fashion-mnist")
    sizes = {"ranks": 1, "search_train": 10000, "search_val": 1000}
    s = STAGES["search"](cfg, sizes, UNITS)
    assert (s["candidates"], s["evaluations"]) == (120, 288)
    assert s["seconds"] == pytest.approx(288 * 0.31 + 6 * 8 * 2.0)


def test_retrain_arithmetic_by_hand(digits):
    # one training per budget: 15 epochs of ⌊1437 / 64⌋ = 22 steps = 330; checkpoints at the 6
    # multiples of 50 and the 15 epoch ends (step 330 is one); 33 log lines; 360 test images; an export
    s = STAGES["retrain"](digits, DIGITS, UNITS)
    fixed = 21 * 0.4 + 33 * 0.02 + 360 * 0.001 + 3.0
    assert (s["trainings"], s["steps"]) == (2, 330)
    assert s["seconds"] == pytest.approx(330 * 0.05 + fixed + 330 * 0.07 + fixed)


def test_the_total_is_the_sum(digits):
    plan = make_plan(digits, DIGITS, UNITS, calibration_s=5.0)
    assert plan["total_s"] == pytest.approx(sum(s["seconds"] for s in plan["stages"]))


@given(st.integers(0, 3000), st.integers(1, 300), st.integers(1, 300))
@settings(max_examples=200, deadline=None)
def test_checkpoint_count_is_the_engines_rule(steps, every, spe):
    # stnas.train.engine.Trainer.fit: a checkpoint when step % every == 0, step % spe == 0 or at the end
    want = sum(1 for s in range(1, steps + 1) if s % every == 0 or s % spe == 0 or s == steps)
    assert _checkpoints(steps, every, spe) == want


class CountingProxy:
    """Scores like stnas.proxy.scorer.Proxy and counts its cache misses: an evaluation is an
    (architecture, weight source) pair not scored before; a source is loaded per call when
    one of its evaluations is missing (averaged: all K samples)."""

    def __init__(self, k: int, mode: str):
        self.k, self.mode, self.done, self.evaluations, self.loads = k, mode, set(), 0, 0

    def score(self, archs, samples=None):
        sources = {"stabilized": [f"pool:{i}" for i in range(samples or self.k)], "single": ["final"],
                   "averaged": ["avg"]}[self.mode]
        for src in sources:
            missing = {(str(a), src) for a in archs} - self.done
            if missing:
                self.loads += self.k if src == "avg" else 1
                self.evaluations += len(missing)
                self.done |= missing
        out = []
        for a in archs:
            per = [((hash((str(a), s)) % 1000) / 1000) for s in sources]
            out.append(Score(str(a), sum(per) / len(per), 0.0, 1.0, per, 0.5))
        return out


@pytest.mark.parametrize("mode, screen, budgets, population, algorithm", [
    ("stabilized", None, [300_000], 16, "evolution"),
    ("stabilized", 0.2, [200_000, 300_000], 16, "evolution"),
    ("stabilized", 0.5, [160_000, 200_000, 300_000], 7, "evolution"),
    ("stabilized", 0.3, [200_000, 300_000], 5, "random"),
    ("averaged", None, [200_000, 300_000], 6, "evolution"),
    ("single", None, [300_000], 6, "random"),
])
def test_search_count_is_the_search_loops(mode, screen, budgets, population, algorithm):
    cfg = resolve("digits", overrides=[f"proxy.mode={mode}", f"search.screen={'null' if screen is None else screen}",
                                       f"search.budgets={budgets}", f"search.population={population}",
                                       "search.parents=2", "search.generations=3", "search.random_samples=23",
                                       f"search.algorithm={algorithm}", "search.budget_floor=0.5"])
    sizes = dict(DIGITS, pool_samples=4)
    proxy = CountingProxy(4, mode)
    search(load_space("digits"), proxy.score, cfg["search"], None, seed=3, progress=False,
           screen=lambda archs: proxy.score(archs, samples=1))
    candidates, evaluations, loads = search_evaluations(cfg, sizes)
    assert (evaluations, loads) == (proxy.evaluations, proxy.loads)
    assert candidates == len({a for a, _ in proxy.done})


# ------------------------------------------------------------------ time budget
def _total(cfg, sizes=DIGITS):
    return sum(STAGES[s](cfg, sizes, UNITS)["seconds"] for s in RUN_STAGES)


def test_a_budget_the_run_fits_exactly_changes_nothing(digits):
    new, budget = fit(digits, DIGITS, UNITS, f"{(_total(digits) + 5.0) / SAFETY + 0.01:.2f}s", spent=5.0)
    assert new == digits and budget["changed"] == {}  # (room for less than one more retraining epoch)


def test_a_longer_budget_grows_the_retraining_first(digits):
    retrain = STAGES["retrain"](digits, DIGITS, UNITS)["seconds"]
    # room for the run and half its retraining again: the retraining grows, nothing else
    new, budget = fit(digits, DIGITS, UNITS, f"{(_total(digits) + 0.5 * retrain) / SAFETY:.2f}s")
    assert set(budget["changed"]) == {"retrain.epochs"} and 15 < new["retrain"]["epochs"] < 30
    assert _total(new) <= _total(digits) + 0.5 * retrain + 0.01


def test_a_long_budget_grows_every_stage_to_three_times_at_most(digits):
    # digits: 20 supernet epochs (the last 2 the sampling phase), 4 generations, 15 retraining epochs
    new, budget = fit(digits, DIGITS, UNITS, "10h")
    assert budget["changed"] == {"supernet.epochs": [20, 60], "pool.epochs": [2, 6], "search.generations": [4, 12],
                                 "retrain.epochs": [15, 45]}


def test_a_slightly_smaller_budget_shortens_supernet_and_search_first(digits):
    budget = f"{0.9 * _total(digits) / SAFETY:.0f}s"
    new, record = fit(digits, DIGITS, UNITS, budget, spent=0.0)
    assert _total(new) <= SAFETY * parse_duration(budget)
    assert new["retrain"]["epochs"] == 15 and "retrain.epochs" not in record["changed"]  # untouched
    assert new["supernet"]["epochs"] < 20 or new["search"]["generations"] < 4


def test_a_much_smaller_budget_scales_every_stage_and_fits(digits):
    full = _total(digits)
    budget_s = 0.3 * full / SAFETY
    new, budget = fit(digits, DIGITS, UNITS, f"{budget_s:.0f}s", spent=0.0)
    assert _total(new) <= SAFETY * parse_duration(f"{budget_s:.0f}s")
    changed = budget["changed"]
    assert {"supernet.epochs", "search.generations", "retrain.epochs"} <= set(changed)
    for key, (old, value) in changed.items():
        assert value < old and value >= MINIMUM.get(key, 1)
    # the retraining is cut only once the supernet and the search are at their minimum
    assert (new["supernet"]["epochs"], new["search"]["generations"]) == (MINIMUM["supernet.epochs"],
                                                                         MINIMUM["search.generations"])
    assert new["pool"]["epochs"] <= new["supernet"]["epochs"]
    resolve("digits", overrides=[f"{k}={v}" for k, (_, v) in changed.items()])  # a valid config


def test_the_first_phase_ends_at_the_measured_cut():
    # fashion-mnist's defaults at the end of the first phase, by hand: the faster candidate of
    # docs/experiments/fast_defaults.md (6 supernet epochs, 3 generations), retraining as configured
    cfg = resolve("fashion-mnist")
    c = sized(cfg, FIRST, {"ranks": 1, "search_train": 10000})
    assert (c["supernet"]["epochs"], c["search"]["generations"], c["retrain"]["epochs"]) == (6, 3, 3)
    c = sized(cfg, SECOND, {"ranks": 1, "search_train": 10000})  # then down to the minimum, retraining whole
    assert (c["supernet"]["epochs"], c["search"]["generations"], c["retrain"]["epochs"]) == (2, 2, 3)
    c = sized(cfg, SECOND / 3, {"ranks": 1, "search_train": 10000})  # and only then the retraining
    assert (c["supernet"]["epochs"], c["search"]["generations"], c["retrain"]["epochs"]) == (2, 2, 1)


@given(st.floats(0.2, 4.0), st.floats(0.2, 4.0))
@settings(max_examples=25, deadline=None)
def test_more_time_never_means_less_work(a, b):
    digits = resolve("digits")
    full = _total(digits)
    lo, hi = sorted((a, b))
    try:
        small, _ = fit(digits, DIGITS, UNITS, f"{lo * full:.1f}s")
    except ConfigError:
        return
    large, _ = fit(digits, DIGITS, UNITS, f"{hi * full:.1f}s")
    for sec, key in (("supernet", "epochs"), ("search", "generations"), ("retrain", "epochs"), ("pool", "epochs")):
        assert small[sec][key] <= large[sec][key]


def test_a_too_small_budget_is_one_line_and_names_enough(digits):
    with pytest.raises(ConfigError) as exc:
        fit(digits, DIGITS, UNITS, "20s", spent=5.0)
    msg = str(exc.value)
    assert "too small" in msg and "\n" not in msg
    enough = msg.split("give --time ")[1].split()[0]
    fit(digits, DIGITS, UNITS, enough, spent=5.0)  # the time it names is enough
    least = sized(digits, 0.0, DIGITS)
    assert (least["supernet"]["epochs"], least["search"]["generations"], least["retrain"]["epochs"]) == (2, 2, 1)


def test_sizing_extra_steps_and_random_search(digits):
    cfg = copy.deepcopy(digits)
    cfg["pool"]["extra_steps"], cfg["search"]["algorithm"] = 100, "random"
    new = sized(cfg, FIRST, DIGITS)  # the measured cut: the supernet's work x 6/16, the search's x 3/6
    assert new["pool"]["extra_steps"] == 37 and new["search"]["random_samples"] == 32  # 100 x 6/16, 64 / 2
    new = sized(cfg, (FIRST + SECOND) / 2, DIGITS)  # half way from there to the minimum
    assert new["pool"]["extra_steps"] == 18 and new["search"]["random_samples"] == 16
    assert sized(cfg, 0.0, DIGITS)["search"]["random_samples"] == 16  # one population at least


# ------------------------------------------------------------------ the command line
def test_dry_run_prints_the_plan_and_writes_nothing(recorded, two_networks, tmp_path):
    out = tmp_path / "runs" / "r"
    p = run_cli(["run", "--preset", "digits", "--dry-run", "--out", out, "device=cpu"])
    assert p.returncode == 0, p.stderr
    for name in ("calibration", "supernet", "search", "retrain", "baselines", "total"):
        assert f"  {name} " in p.stdout
    assert "340 steps of 64" in p.stdout and "256 evaluations" in p.stdout
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_stnas_baselines_dry_run_prints_its_plan_and_writes_nothing(recorded, two_networks, tmp_path):
    out = tmp_path / "runs" / "b"
    p = run_cli(["baselines", "--data", "digits", "--budget", "200k,300k", "--dry-run", "--out", out, "device=cpu"])
    assert p.returncode == 0, p.stderr
    assert "  baselines " in p.stdout and "2 networks × 1 seed: 2 trainings × 15 epochs" in p.stdout
    assert recorded.calls == [("baselines",)]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()
    for argv, needle in ((["--data", "digits", "--dry-run"], "give the budgets"),
                         (["--out", out, "--resume", "--dry-run"], "drop --resume")):
        p = run_cli(["baselines", *argv])
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_dry_run_with_a_time_shows_the_sizing(recorded, tmp_path, digits):
    budget = f"{0.5 * (_total(digits) + 5) / SAFETY:.0f}s"
    p = run_cli(["run", "--preset", "digits", "--dry-run", "--time", budget, "--out", tmp_path / "r", "device=cpu"])
    assert p.returncode == 0, p.stderr
    assert f"time budget {budget}: sized to fit (supernet.epochs 20 -> " in p.stdout
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("time, needle", [("20s", "too small for a meaningful run"), ("10x", "is not a time"),
                                          ("0s", "more than 0 s"), ("1h1h", "is not a time")])
def test_too_small_or_bad_time_is_one_line_exit_2_before_any_work(recorded, tmp_path, time, needle):
    out = tmp_path / "r"
    p = run_cli(["run", "--preset", "digits", "--time", time, "--out", out, "device=cpu"])
    assert p.returncode == 2 and needle in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not out.exists()


def test_a_bad_time_in_the_config_file_is_one_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("run:\n  time_budget: soon\n")
    p = run_cli(["run", "--preset", "digits", "--config", f, "--out", tmp_path / "r"])
    assert p.returncode == 2 and "run.time_budget: 'soon' is not a time" in p.stderr
    with pytest.raises(ConfigError, match="run.time_budget"):
        resolve("digits", overrides=["run.time_budget=12"])



def test_a_resumed_run_keeps_its_plan(recorded, tmp_path, monkeypatch):
    import stnas.pipeline.run as run_mod

    out = tmp_path / "r"
    real_retrain = run_mod.retrain

    def killed(*a, **kw):
        raise KeyboardInterrupt  # the run stops after its search, as under a kill

    monkeypatch.setattr(run_mod, "retrain", killed)
    recorded.units["supernet"]["step_s"] = 15.0  # the supernet is what the 3 minutes cannot hold
    p = run_cli(["run", "--preset", "digits", "--time", "3m", "--out", out] + TINY)
    assert p.returncode == 130, p.stderr[-2000:]
    run = RunDir(out)
    saved = run.plan.read_bytes()
    plan = json.loads(saved)
    new_epochs = plan["budget"]["changed"]["supernet.epochs"][1]
    assert new_epochs < 4 and run.load_config()["supernet"]["epochs"] == new_epochs
    # the baselines stage (on for this small retraining) does not fit either: turned off, in the config too
    assert "baselines stage off" in p.stderr and run.load_config()["baselines"]["enabled"] is False
    assert recorded.calls == [("supernet", "search", "retrain", "baselines")]  # what the run would run

    monkeypatch.setattr(run_mod, "retrain", real_retrain)
    config = run.config.read_bytes()
    p = run_cli(["run", "--out", out, "--resume"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert recorded.calls == [("supernet", "search", "retrain", "baselines")]  # nothing measured or sized again
    assert run.plan.read_bytes() == saved and run.config.read_bytes() == config
    assert "plan (saved when the run started)" in p.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["planned_s"] == {s["name"]: s["seconds"] for s in plan["stages"]}
    assert "baselines" not in report["planned_s"] and "baselines" not in report["wall_s"]
    assert "4/5 baselines: off (the run's time budget turned it off" in p.stderr
    assert "| stage | planned | actual |" in (out / "report.md").read_text()

    p = run_cli(["run", "--out", out, "--resume", "--dry-run"])
    assert p.returncode == 0 and "plan (saved when the run started)" in p.stdout
    p = run_cli(["run", "--out", out, "--resume", "--time", "1h"])
    assert p.returncode == 2 and "keeps the plan it started with" in p.stderr


def test_a_plan_that_does_not_match_its_config_is_refused(tmp_path):
    from stnas.core.verified import write_json

    run = RunDir(tmp_path)
    cfg = resolve("digits")
    plan = {"stages": [], "budget": {"changed": {"supernet.epochs": [20, 5]}}}
    write_json(run.plan, plan)
    with pytest.raises(CheckpointError, match="sized supernet.epochs to 5"):
        read_plan(run, cfg)
    cfg["supernet"]["epochs"] = 5
    assert read_plan(run, cfg)["budget"]["changed"] == {"supernet.epochs": [20, 5]}
    run.plan.write_text(run.plan.read_text().replace('"stages"', '"stagez"'))
    with pytest.raises(CheckpointError, match="damaged"):
        read_plan(run, cfg)


def test_report_gives_planned_and_actual_per_stage():
    planned = {"calibration": 5.0, "supernet": 100.0, "search": 50.0, "retrain": 60.0, "baselines": 120.0}
    lines = time_lines(planned, {"supernet": 90.0, "search": 70.0, "retrain": 61.0, "baselines": 150.0})
    assert "| supernet | 1 min 40 s | 1 min 30 s |" in lines and "| calibration | 5 s | 5 s |" in lines
    assert "| baselines | 2 min 00 s | 2 min 30 s |" in lines
    assert "| total | 5 min 35 s | 6 min 16 s |" in lines
    assert time_lines({}, {"supernet": 3.0}) == ["Time per stage: supernet 3 s", ""]
