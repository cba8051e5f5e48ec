"""The calibration (stnas.pipeline.calibrate): real measurements, shortened; what they return,
that they leave the run's random streams alone, and the per-machine cache. No timing is
asserted: only that costs are positive and finite."""

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import stnas.pipeline.calibrate as cal
from stnas.core.errors import SpaceError
from stnas.pipeline.calibration_process import LoadMeter, measure_isolated
from stnas.pipeline.config import resolve
from stnas.space.catalog import load_space

from conftest import run_cli

SMALL = ["device=cpu", "data.limit=128", "data.val_limit=40", "supernet.batch_size=16", "proxy.batch_size=32",
         "retrain.batch_size=16", "retrain.limit=128", "search.budgets=[300k]"]


@pytest.fixture
def quick(monkeypatch, tmp_path):
    """Two timed steps after one untimed, no time box; the cache in tmp_path."""
    for name, value in (("WARMUP", 1), ("LEAST", 2), ("MOST", 2), ("TIME_BOX", 0.0), ("EVALS", 2), ("EVAL_WARMUP", 1),
                        ("LOAD_LIMIT", math.inf)):  # the suite's other worker keeps the machine busy
        monkeypatch.setattr(cal, name, value)
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "plan"


def _positive(tree) -> bool:
    if isinstance(tree, dict):
        return all(_positive(v) for v in tree.values())
    return isinstance(tree, float) and math.isfinite(tree) and tree > 0


def test_every_stage_is_measured_and_cached(quick):
    cfg = resolve("digits", overrides=SMALL)
    space = load_space("digits")
    stages = ("supernet", "search", "retrain")
    sizes = cal.data_sizes(cfg, space, stages)
    assert sizes == {"ranks": 1, "search_train": 128, "search_val": 40, "train": 128, "test": 360}
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()[1].copy()
    units, spent, cached = cal.calibrate(cfg, space, stages, torch.device("cpu"), sizes=sizes)
    # the run that follows draws what it would have drawn without the calibration
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert set(units) == {"supernet", "search", "retrain", "export"} and spent > 0 and cached == []
    assert set(units["retrain"]["step_s"]) == {"300k"} and _positive(units)
    assert len(list(quick.glob("*.json"))) == 4

    again, spent, cached = cal.calibrate(cfg, space, stages, torch.device("cpu"), sizes=sizes)
    assert again == units and spent == 0 and cached == ["supernet", "search", "retrain", "export"]

    other = resolve("digits", overrides=SMALL + ["supernet.batch_size=32"])  # another key: measured anew
    _, spent, cached = cal.calibrate(other, space, ("supernet",), torch.device("cpu"), sizes=sizes)
    assert spent > 0 and cached == [] and len(list(quick.glob("supernet-*.json"))) == 2


def test_the_baselines_stage_times_each_network_it_will_train(quick):
    from stnas.pipeline.baselines import plan as baselines_plan

    cfg = resolve("digits", overrides=SMALL + ["baselines.families=[mobilenet_v3_small, shufflenet_v2_x0_5]"])
    space = load_space("digits")
    sizes = cal.data_sizes(cfg, space, ("baselines",))
    units, spent, cached = cal.calibrate(cfg, space, ("baselines",), torch.device("cpu"), sizes=sizes)
    assert set(units) == {"retrain", "export", "baselines"} and spent > 0
    budgets, _ = cal.baseline_budgets(cfg, sizes)
    keys = {b.key for p in baselines_plan(cfg, budgets, tuple(sizes["input"])) for b in p["networks"]}
    assert keys and set(units["baselines"]["step_s"]) == keys and _positive(units["baselines"])


def test_a_damaged_cache_entry_is_measured_again(quick):
    cfg = resolve("digits", overrides=SMALL)
    space = load_space("digits")
    sizes = cal.data_sizes(cfg, space, ("supernet",))
    cal.calibrate(cfg, space, ("supernet",), torch.device("cpu"), sizes=sizes)
    (entry,) = quick.glob("supernet-*.json")
    entry.write_text(entry.read_text().replace('"step_s": ', '"step_s": 1'))
    _, spent, cached = cal.calibrate(cfg, space, ("supernet",), torch.device("cpu"), sizes=sizes)
    assert spent > 0 and cached == []


def test_without_write_cache_nothing_is_written(quick):
    cfg = resolve("digits", overrides=SMALL)
    space = load_space("digits")
    sizes = cal.data_sizes(cfg, space, ("supernet",))
    cal.calibrate(cfg, space, ("supernet",), torch.device("cpu"), sizes=sizes, write_cache=False)
    assert not quick.parent.exists()


@pytest.mark.parametrize("argv", [["supernet", "train", "--preset", "digits"], ["retrain", "--arch",
                                                                              "digits:012012/.1.0....."]])
def test_step_dry_runs_print_their_plan_and_write_nothing(quick, tmp_path, argv):
    out = tmp_path / "r"
    p = run_cli(argv + ["--dry-run", "--out", out] + SMALL)
    assert p.returncode == 0, p.stderr
    stage = argv[0]
    assert f"  {stage} " in p.stdout and "  total " in p.stdout
    assert not out.exists() and not quick.parent.exists()
    p = run_cli(argv + ["--dry-run", "--resume", "--out", out])
    assert p.returncode == 2 and "drop --resume" in p.stderr


def test_a_step_prints_its_plan_before_the_work(quick, tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_PLAN", "on")
    out = tmp_path / "r"
    p = run_cli(["supernet", "train", "--preset", "digits", "--out", out, "supernet.epochs=1", "pool.epochs=1",
                 "pool.samples=1", "supernet.progress=false"] + SMALL)
    assert p.returncode == 0, p.stderr
    assert "plan (estimated on this machine):" in p.stderr and "  supernet " in p.stderr
    # a real run caches its calibration, unless other processes (the suite's other worker) kept the machine busy
    busy = "other processes were busy" in p.stderr
    assert len(list(quick.glob("supernet-*.json"))) == (0 if busy else 1)


def test_the_load_meter_subtracts_its_own_process(monkeypatch):
    readings = iter([(10.0, 100.0, 5.0), (12.0, 104.0, 6.5)])  # (wall, machine busy, own cpu) seconds
    monkeypatch.setattr(LoadMeter, "_read", staticmethod(lambda: next(readings)))
    assert LoadMeter().others() == pytest.approx(((104 - 100) - (6.5 - 5)) / 2)
    readings = iter([(10.0, 100.0, 5.0), (12.0, 100.5, 6.0)])  # own time counted twice: never below 0
    assert LoadMeter().others() == 0.0
    monkeypatch.setattr(LoadMeter, "_read", staticmethod(lambda: None))  # no /proc/stat
    assert LoadMeter().others() is None


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat")
def test_the_load_meter_sees_a_busy_process():
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 4: pass"])
    try:
        time.sleep(0.5)
        meter = LoadMeter()
        time.sleep(2.0)
        others = meter.others()
    finally:
        burner.kill()
        burner.wait()
    assert others is not None and others > 0.5


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat")
def test_a_calibration_under_load_plans_the_run_but_is_not_cached(quick, monkeypatch):
    monkeypatch.setattr(cal, "LOAD_LIMIT", -1.0)  # any reading counts as busy
    cfg = resolve("digits", overrides=SMALL)
    space = load_space("digits")
    sizes = cal.data_sizes(cfg, space, ("supernet",))
    said = []
    units, spent, cached = cal.calibrate(cfg, space, ("supernet",), torch.device("cpu"), sizes=sizes, log=said.append)
    assert _positive(units["supernet"]) and spent > 0 and cached == []
    assert not (quick.exists() and list(quick.glob("*.json")))
    assert any("other processes were busy" in line and "supernet" in line and "not cached" in line for line in said)


def test_an_error_in_the_calibration_process_comes_back_as_one_line():
    with pytest.raises(SpaceError, match="space.name must be a non-empty string") as info:
        measure_isolated({"cfg": {}, "space": {"name": ""}, "stages": ["supernet"], "device": "cpu", "sizes": {},
                          "archs": None, "constants": {}, "threads": 1})
    assert "\n" not in str(info.value)
