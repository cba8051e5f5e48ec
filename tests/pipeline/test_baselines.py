"""The baselines stage (stnas.pipeline.baselines) and `stnas baselines`: on digits with a tiny
recipe it trains what fits, evaluates as stnas's pick is evaluated, writes its tables and
section, resumes without retraining; on an .npz and an image folder; bad input in one line."""

import json
import math
import statistics

import numpy as np
import pytest
import torch

from stnas.core import dist
from stnas.core.units import Budget
from stnas.core.verified import read_json
from stnas.deploy.export import arch_slug
from stnas.nn.baselines import Baseline, cost
from stnas.pipeline.baselines import (
    baseline_table,
    load_baseline,
    preset_for,
    recalibrated_test,
    run_baselines,
    seeded,
    stage_enabled,
)
from stnas.pipeline.config import resolve
from stnas.pipeline.retrain import retrain, retrain_splits
from stnas.pipeline.scaling import BASELINES_MAX_IMAGE_EPOCHS
from stnas.space.catalog import load_arch, load_space

from conftest import run_cli
from synthdata import write_folder, write_npz

TINY = ["retrain.epochs=1", "retrain.limit=256", "retrain.progress=false", "latency.repeats=3", "latency.warmup=1",
        "latency.rounds=1"]
FAMILIES = "mobilenet_v3_small,shufflenet_v2_x0_5,resnet18"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """`stnas baselines` on digits at two budgets: three families, both forms."""
    out = tmp_path_factory.mktemp("baselines") / "b"
    p = run_cli(["baselines", "--data", "digits", "--budget", "200k,400k", "--family", FAMILIES, "--out", out] + TINY)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_tables_hold_what_fits_trained_with_the_retrain_recipe(digits):
    out, proc = digits
    table = json.loads((out / "baselines" / "baselines.json").read_text())
    cfg = resolve("digits", overrides=TINY)
    assert table["preset"] == "digits" and table["input"] == {"channels": 1, "size": 8, "classes": 10}
    assert table["recipe"] == cfg["retrain"] and table["train_images"] == 256 and table["seeds"] == [0]
    assert [b["budget"]["label"] for b in table["budgets"]] == ["200k", "400k"]
    for b in table["budgets"]:
        limit = b["budget"]["madds"]
        names = {r["name"] for r in b["rows"]}
        assert all(r["kind"] == "baseline" and r["madds"] <= limit for r in b["rows"])
        for r in b["rows"]:  # the cost is the network's, recounted from its spec
            assert (r["madds"], r["params"]) == cost(Baseline.from_json(r["spec"]))
        # resnet18 fits neither budget in either form; every (entry, form) is either a row or unfit
        assert {(u["entry"], u["form"]) for u in b["unfit"]} >= {("resnet18", "defined"), ("resnet18", "adapted")}
        assert len(b["rows"]) + len(b["unfit"]) == 6
        assert any(n.startswith("mobilenet_v3_small ×") for n in names)
    # 400k: shufflenet_v2_x0_5 as defined (349k) fits, and the adapted mobilenet_v3_small is wider than at 200k
    big = {r["name"]: r for r in table["budgets"][1]["rows"]}
    assert "shufflenet_v2_x0_5" in big
    widths = [next(r["spec"]["width"] for r in b["rows"] if r["spec"]["entry"] == "mobilenet_v3_small")
              for b in table["budgets"]]
    assert widths[0] < widths[1]
    md = (out / "report.md").read_text()
    assert "### ≤ 200k" in md and "### ≤ 400k" in md and "| shufflenet_v2_x0_5 | defined |" in md
    assert (out / "plots" / "baselines.png").read_bytes()[:4] == b"\x89PNG"
    assert "budget 400k:" in proc.stdout and "report:" in proc.stdout


def test_a_baseline_card_its_weights_and_the_recalibration(digits):
    out, _ = digits
    run = out / "baselines" / "shufflenet_v2_x0_5" / "seed_0"
    card = json.loads((run / "model_card.json").read_text())
    assert card["steps"] == 256 // 64 and card["recal_batches"] == 20 and card["recal_images"] == 256
    assert card["spec"] == {"entry": "shufflenet_v2_x0_5", "form": "defined", "channels": 1, "size": 8,
                            "classes": 10, "width": None}
    # the saved weights (after the recalibration) give the card's test numbers, evaluated with no
    # further recalibration
    model, spec = load_baseline(run)
    cfg = seeded(resolve("digits", overrides=TINY), 0)
    again = recalibrated_test(model, cfg, load_space("digits"), dist.Context(), 0)
    assert spec.entry == "shufflenet_v2_x0_5" and again["top1"] == card["top1"]
    assert math.isclose(again["test_loss"], card["test_loss"], rel_tol=1e-6)
    assert 0 <= card["top1_before_recal"] <= 1 and card["test_images"] == 360


def test_resume_trains_nothing_again(digits):
    out, _ = digits
    cards = {p: p.read_bytes() for p in (out / "baselines").rglob("model_card.json")}
    logs = {p: p.stat().st_mtime_ns for p in (out / "baselines").rglob("metrics.jsonl")}
    p = run_cli(["baselines", "--out", out, "--resume"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert {p: p.read_bytes() for p in cards} == cards and "seed 0: test top-1" in p.stderr
    assert {p: p.stat().st_mtime_ns for p in logs} == logs


def test_the_pick_is_evaluated_as_the_baselines_under_every_seed(tmp_path):
    cfg = resolve("digits", overrides=TINY + ["baselines.seeds=2", "baselines.families=[shufflenet_v2_x0_5]",
                                              "baselines.forms=[defined]"])
    arch = str(load_space("digits").sample(np.random.default_rng(3)))
    card = retrain(arch, cfg, tmp_path / "retrain", ctx=dist.Context())
    table = run_baselines(cfg, tmp_path / "baselines", [Budget(madds=400_000)],
                          {"400k": {"arch": arch, "retrain_dir": tmp_path / "retrain"}}, dist.Context())
    pick, base = table["budgets"][0]["rows"]
    assert pick["kind"] == "stnas" and pick["arch"] == arch and base["name"] == "shufflenet_v2_x0_5"
    assert set(pick["seeds"]) == set(base["seeds"]) == {"0", "1"}
    # seed 0 is the run's own retraining: before the recalibration, its test top-1 is the model card's
    assert pick["seeds"]["0"]["top1_before_recal"] == card["top1"]
    assert pick["seeds"]["0"]["test_loss_before_recal"] == pytest.approx(card["test_loss"])
    assert pick["seeds"]["0"]["wall_s"] == card["wall_s"]  # the training time of each network and seed
    seed1 = json.loads((tmp_path / "baselines" / f"pick-{arch_slug(load_arch(arch))}" / "seed_1" /
                        "model_card.json").read_text())
    assert seed1["seed"] == 1 and seed1["arch"] == arch and pick["seeds"]["1"]["top1_before_recal"] == seed1["top1"]
    for row in (pick, base):
        tops = [row["seeds"][s]["top1"] for s in ("0", "1")]
        assert row["top1"] == pytest.approx(statistics.fmean(tops)) and row["top1_sd"] == pytest.approx(
            statistics.stdev(tops))
    assert base["d_top1"] == pytest.approx(base["top1"] - pick["top1"])
    assert base["d_test_loss"] == pytest.approx(base["test_loss"] - pick["test_loss"])
    # both seeds train on the same data (the split seed stays the run's); the training seed differs
    b1 = json.loads((tmp_path / "baselines" / "shufflenet_v2_x0_5" / "seed_1" / "model_card.json").read_text())
    assert b1["seed"] == 1 and b1["train_images"] == card["train_images"]


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_user_data(tmp_path, kind, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    if kind == "npz":
        data = write_npz(tmp_path / "d.npz", classes=3, per_class=16, size=12, channels=3, layout="NCHW")
    else:
        data = write_folder(tmp_path / "imgs", split=False, classes=3, per_class=16, size=16, channels=1)
    table = baseline_table(str(data), ["2M"], tmp_path / "out", families=["mobilenet_v3_small"], forms=["adapted"],
                           overrides=["retrain.epochs=2", "retrain.batch_size=8", "retrain.progress=false",
                                      "latency.repeats=3"])
    assert table == read_json(tmp_path / "out" / "baselines" / "baselines.json")  # checksum verified
    (row,) = table["budgets"][0]["rows"]
    side = 12 if kind == "npz" else 16
    assert table["input"] == {"channels": 3 if kind == "npz" else 1, "size": side, "classes": 3}
    assert row["spec"]["size"] == side and row["madds"] <= 2_000_000 and 0 <= row["top1"] <= 1
    assert "### ≤ 2M" in (tmp_path / "out" / "report.md").read_text()


def test_auto_rule_and_the_named_presets():
    cfg = resolve("digits")
    limit = BASELINES_MAX_IMAGE_EPOCHS // cfg["retrain"]["epochs"]
    assert stage_enabled(cfg, limit) and not stage_enabled(cfg, limit + 1)
    assert stage_enabled(cfg, 1437)  # the digits preset: on
    fm = resolve("fashion-mnist")
    assert not stage_enabled(fm, 15_000)  # the fashion-mnist preset's retraining: off
    for value in (True, False):
        assert stage_enabled(resolve("digits", overrides=[f"baselines.enabled={str(value).lower()}"]), 10**9) is value
    assert (preset_for("digits"), preset_for("fashion-mnist"), preset_for("cifar10")) == ("digits", "fashion-mnist",
                                                                                            "cifar")
    assert preset_for("/some/folder") is None


@pytest.mark.parametrize("args, needle", [
    (["--family", "mobilenetv2"], "did you mean 'mobilenet_v2'"),
    (["--budget", "1k"], "no baseline fits budget 1k"),
    (["--budget", "200k", "--form", "shrunk"], "baselines.forms must be one of defined, adapted"),
    (["--budget", "banana"], "'banana' is not a budget"),
    (["--budget", "200k+300k"], "sets the madds limit twice"),
    (["--data", "mnist"], "data.dataset must be one of"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    argv = ["baselines", "--data", "digits", "--budget", "200k", "--family", "mobilenet_v3_small",
            "--out", tmp_path / "o"] + TINY
    for i in range(0, len(args), 2):  # replace or add the flag
        if args[i] in argv:
            argv[argv.index(args[i]) + 1] = args[i + 1]
        else:
            argv += args[i:i + 2]
    p = run_cli(argv)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_more_refusals(tmp_path, digits):
    out, _ = digits
    p = run_cli(["baselines", "--data", "digits", "--budget", "200k", "--out", out])
    assert p.returncode == 2 and "already holds a run" in p.stderr
    p = run_cli(["baselines", "--budget", "200k", "--out", tmp_path / "x"])
    assert p.returncode == 2 and "give the data" in p.stderr
    p = run_cli(["baselines", "--data", "digits", "--out", tmp_path / "y"])
    assert p.returncode == 2 and "give the budgets" in p.stderr
    p = run_cli(["run", "--preset", "digits", "--out", tmp_path / "z", "baselines.families=[resnet19]"])
    assert p.returncode == 2 and "did you mean 'resnet18'" in p.stderr and not (tmp_path / "z").exists()


def test_a_latency_budget_fits_by_measurement(tmp_path):
    slow = Budget(madds=400_000, latency_ms=10_000.0)  # every candidate is fast enough
    cfg = resolve("digits", overrides=TINY + ["baselines.families=[mobilenet_v3_small]", "baselines.forms=[adapted]"])
    from stnas.pipeline.baselines import plan

    (by_madds,) = plan(cfg, [Budget(madds=400_000)], (1, 8, 10))
    (by_both,) = plan(cfg, [slow], (1, 8, 10))
    assert by_both["networks"] == by_madds["networks"]
    (none,) = plan(cfg, [Budget(latency_ms=1e-6)], (1, 8, 10))
    assert none["networks"] == [] and none["unfit"][0]["why"].endswith(" ms")
    torch.manual_seed(0)  # (the plan leaves the global RNG alone)
    a = torch.rand(1)
    torch.manual_seed(0)
    plan(cfg, [Budget(latency_ms=1e-6)], (1, 8, 10))
    assert torch.equal(torch.rand(1), a)


def test_the_recalibration_images_are_the_training_images_unaugmented(tmp_path):
    data = write_npz(tmp_path / "d.npz", classes=3, per_class=16, size=12, channels=3, layout="NCHW")
    cfg = resolve(None, overrides=[f"data.dataset={data}", "retrain.limit=24"])
    space = load_space(cfg["preset"])
    (aug, _), (plain, _) = retrain_splits(cfg, space), retrain_splits(cfg, space, augment=False)
    assert len(aug) == len(plain) == 24
    assert [aug[i][1] for i in range(24)] == [plain[i][1] for i in range(24)]
    assert aug.augment and not plain.augment
