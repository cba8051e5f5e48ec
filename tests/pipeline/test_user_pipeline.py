"""`stnas run --data PATH` on the user's own data: image folders (both layouts, grayscale
and RGB, two sizes) and an .npz, the whole pipeline with tiny settings on each."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from synthdata import write_folder, write_npz

TINY = ["supernet.epochs=2", "pool.epochs=1", "pool.samples=2", "supernet.batch_size=8", "search.population=4",
        "search.parents=2", "search.generations=1", "retrain.epochs=8", "retrain.batch_size=8",
        "supernet.progress=false", "retrain.progress=false",
        "baselines.families=[mobilenet_v3_small]"]  # the baselines stage is on for data this small
DATA = {
    "folders-split-rgb16": lambda d: write_folder(d / "rgb", split=True, classes=3, per_class=16, size=16,
                                                  channels=3),
    "folder-single-gray8": lambda d: write_folder(d / "gray", split=False, classes=3, per_class=16, size=8,
                                                  channels=1, ext="bmp"),
    "npz-nchw-rgb12": lambda d: write_npz(d / "arrays.npz", classes=3, per_class=16, size=12, channels=3,
                                          layout="NCHW"),
}


@pytest.fixture(scope="module", params=sorted(DATA))
def finished(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    data = DATA[request.param](tmp)
    env = dict(os.environ, STNAS_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    out = tmp / "run"
    p = subprocess.run([sys.executable, "-m", "stnas.cli", "run", "--data", str(data), "--out", str(out), *TINY],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return request.param, data, out, env


def test_pipeline_on_user_data_learns(finished):
    name, data, out, _ = finished
    report = json.loads((out / "report.json").read_text())
    assert report["chosen"]
    size = {"folders-split-rgb16": 16, "folder-single-gray8": 8, "npz-nchw-rgb12": 12}[name]
    channels = 1 if "gray" in name else 3
    for c in report["chosen"]:
        assert c["arch"].startswith(f"auto-{channels}x{size}-3c-") and c["madds"] <= c["budget"]
        card = json.loads((out / c["retrain_dir"] / "model_card.json").read_text())
        assert card["top1"] >= 0.8, card["top1"]  # chance: 1/3
        prep = card["preprocessing"]
        assert prep["input_size"] == size and prep["channels"] == channels and len(prep["class_names"]) == 3
        model = out / c["retrain_dir"] / "model"
        assert {"model.onnx", "model.pt2", "model_card.json", "model.safetensors"} <= {f.name for f in model.iterdir()}
    # the baselines stage ran on the user's data: each pick beside the mobilenet_v3_small that fits
    for c, t in zip(report["chosen"], report["baselines"]["budgets"]):
        assert t["rows"][0]["arch"] == c["arch"] and t["rows"][0]["top1"] >= 0.5
        assert all(r["spec"]["size"] == size and r["spec"]["channels"] == channels for r in t["rows"][1:])


def test_predict_on_the_run_model(finished, tmp_path):
    name, data, out, env = finished
    if name.startswith("npz"):
        pytest.skip("an .npz holds no image files")
    report = json.loads((out / "report.json").read_text())
    model = out / report["chosen"][0]["retrain_dir"]
    images = sorted(p for p in data.rglob("*") if p.is_file())
    picks = [next(p for p in images if p.parent.name == cls) for cls in ("blue", "green", "red")]
    p = subprocess.run([sys.executable, "-m", "stnas.cli", "predict", str(model), *map(str, picks), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    top = [json.loads(line)["top"][0]["class"] for line in p.stdout.splitlines()]
    assert np.mean([t == pick.parent.name for t, pick in zip(top, picks)]) >= 2 / 3


def test_report_names_data_recipe_and_unit_and_logs_test_scalars(finished):
    name, data, out, _ = finished
    md = (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    assert "The proxy's unit: " in md and report["proxy_unit"] in md
    c = report["chosen"][0]
    card = c["model_card"]
    assert f"{data.name}: {card['train_images']} train images × {card['epochs']} epochs, " \
           f"{card['test_images']} test images" in md
    assert "retrain/budget_*/model/" in md
    records = [json.loads(line) for line in (out / c["retrain_dir"] / "metrics.jsonl").read_text().splitlines()]
    test = [r for r in records if r.get("split") == "test"]
    assert len(test) == 1 and test[0]["top1"] == card["top1"] and test[0]["step"] == card["steps"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / c["retrain_dir"] / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("retrain/test_top1")] == pytest.approx([card["top1"]])
