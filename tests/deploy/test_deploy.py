"""Deployment: the preprocessing a model directory records, its .pt2 program, and
`stnas predict` against ONNX Runtime and plain torch (no stnas imported on those paths)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stnas.cli import main

from synthdata import write_folder

# Runs with neither stnas's model code nor its space: reads the preprocessing from the ONNX
# metadata, preprocesses the images itself, runs ONNX Runtime and the torch.export program.
PLAIN = r'''
import json, sys
import numpy as np, onnx, onnxruntime as ort, torch
from PIL import Image
model_dir, images = sys.argv[1], sys.argv[2:]
meta = {p.key: p.value for p in onnx.load(model_dir + "/model.onnx").metadata_props}
prep = json.loads(meta["stnas.preprocessing"])
size, mode = prep["input_size"], "L" if prep["channels"] == 1 else "RGB"
xs = []
for path in images:
    im = Image.open(path).convert(mode)
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    a = np.asarray(im, np.float32) / 255.0
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    xs.append((a - np.float32(prep["mean"])[:, None, None]) / np.float32(prep["std"])[:, None, None])
x = np.stack(xs).astype(np.float32)
onnx_out = ort.InferenceSession(model_dir + "/model.onnx", providers=["CPUExecutionProvider"]).run(
    None, {"input": x})[0]
extra = {"preprocessing.json": ""}
program = torch.export.load(model_dir + "/model.pt2", extra_files=extra)
with torch.no_grad():
    pt2_out = program.module()(torch.from_numpy(x)).numpy()
assert json.loads(extra["preprocessing.json"]) == prep
assert not [m for m in sys.modules if m.split(".")[0] == "stnas"], "stnas was imported"
print(json.dumps({"onnx": onnx_out.tolist(), "pt2": pt2_out.tolist(), "names": json.loads(meta["class_names"])}))
'''


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    data = write_folder(tmp / "shapes", split=True, classes=3, per_class=12, size=16, channels=3)
    out = tmp / "rt"
    env = dict(os.environ, STNAS_CACHE=str(tmp / "cache"), OMP_NUM_THREADS="1")
    arch = "auto-3x16-3c-1M:0123/....."
    p = subprocess.run([sys.executable, "-m", "stnas.cli", "retrain", "--arch", arch, "--data", str(data), "--out",
                        str(out), "retrain.epochs=2", "retrain.batch_size=8", "retrain.progress=false"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    images = sorted(str(f) for f in (data / "val").rglob("*.png"))[::2]
    return out, data, images, env


def test_predict_agrees_with_onnx_runtime_and_plain_torch(model, tmp_path, capsys):
    out, data, images, env = model
    odd = tmp_path / "odd.jpg"  # another size and mode: resized and converted like the training images
    Image.open(images[0]).convert("L").resize((23, 23)).save(odd)
    images = images + [str(odd)]
    assert main(["predict", str(out), *images, "--json", "-k", "2"]) == 0
    ours = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    clean = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    p = subprocess.run([sys.executable, "-I", "-c", PLAIN, str(out / "model"), *images], capture_output=True,
                       text=True, env=clean, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    plain = json.loads(p.stdout)
    logits = np.array([r["logits"] for r in ours])
    np.testing.assert_allclose(np.array(plain["onnx"]), logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.array(plain["pt2"]), logits, atol=1e-4, rtol=0)
    assert plain["names"] == ["blue", "green", "red"]
    for r, row in zip(ours, logits):
        assert r["top"][0]["class"] == plain["names"][int(row.argmax())] and len(r["top"]) == 2


def test_card_records_the_training_preprocessing(model):
    out, data, _, _ = model
    card = json.loads((out / "model" / "model_card.json").read_text())
    prep = card["preprocessing"]
    train = np.stack([np.asarray(Image.open(f), np.float64) / 255 for f in sorted((data / "train").rglob("*.png"))])
    np.testing.assert_allclose(prep["mean"], train.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(prep["std"], train.std((0, 1, 2)), atol=1e-5)
    assert prep["input_size"] == 16 and prep["channels"] == 3 and prep["class_names"] == ["blue", "green", "red"]
    assert json.loads((out / "model_card.json").read_text())["preprocessing"] == prep
    assert card["weights"] == "retrained from scratch"


def test_predict_prints_names(model, capsys):
    out, _, images, _ = model
    assert main(["predict", str(out / "model"), images[0], "-k", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(images[0] + ": ") and all(n in line for n in ("blue", "green", "red"))


def test_predict_bad_input(model, tmp_path, capsys):
    out, _, images, _ = model
    (tmp_path / "notes.png").write_text("not an image")
    os.mkfifo(tmp_path / "pipe.png")
    cases = [([str(out), str(tmp_path / "missing.png")], "does not exist"),
             ([str(out), str(tmp_path / "notes.png")], "cannot read image"),
             ([str(out), str(tmp_path / "pipe.png")], "not a regular file"),
             ([str(tmp_path / "nomodel"), images[0]], "does not exist"),
             ([str(out), images[0], "-k", "0"], "-k must be at least 1")]
    for argv, match in cases:
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
