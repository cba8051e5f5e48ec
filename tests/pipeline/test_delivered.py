"""A resume of a finished run verifies what it delivered: a damaged file of a retrained
model is rebuilt exactly (said in one line on stderr) where its verified weights, or its final
checkpoint, allow it; anything else is named in one line, exit 2, with nothing changed."""

import hashlib
import json
import shutil

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stnas.core.fileio import sha256_file
from stnas.deploy.card import read_card
from stnas.deploy.export import FILE_DIGESTS

from conftest import run_cli

SMALL = ["supernet.epochs=2", "pool.epochs=1", "pool.samples=2", "search.population=4", "search.parents=2",
         "search.generations=1", "retrain.epochs=1", "supernet.progress=false", "retrain.progress=false",
         "baselines.families=[mobilenet_v3_small]"]
PICK = "retrain/budget_200k"
MODEL = f"{PICK}/model"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "r"
    p = run_cli(["run", "--preset", "digits", "--budget", "200k", "--out", out] + SMALL)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.fixture
def run(finished, tmp_path):
    return shutil.copytree(finished, tmp_path / "r")


def hashes(root) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".stnas.lock"}


def baseline_dir(run):
    return sorted(p for p in (run / "baselines").glob("mobilenet*/seed_0"))[0]


def delivered(run) -> list[str]:
    """What the run delivered: the retrained model directory, its card, the baselines' weights and cards."""
    b = baseline_dir(run).relative_to(run)
    return [f"{MODEL}/{n}" for n in ("model.safetensors", "model.onnx", "model.pt2", "model_card.json", "arch.json",
                                     "space.yaml")] + [f"{PICK}/model_card.json", f"{b}/model.safetensors",
                                                       f"{b}/model_card.json"]


def intact(path):
    """A delivered file's bytes; a run's or a baseline's card: its content, checksum verified."""
    if path.name == "model_card.json" and path.parent.name != "model":
        return read_card(path)
    return path.read_bytes()


def flip(path, at: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def resume(run):
    return run_cli(["run", "--out", run, "--resume"])


def test_the_card_records_the_digest_of_every_model_file(finished):
    card = json.loads((finished / MODEL / "model_card.json").read_text())
    assert set(card[FILE_DIGESTS]) == {"model.safetensors", "model.onnx", "model.pt2", "arch.json", "space.yaml"}
    for name, digest in card[FILE_DIGESTS].items():
        assert sha256_file(finished / MODEL / name) == digest
    run_card = json.loads((finished / PICK / "model_card.json").read_text())
    assert run_card[FILE_DIGESTS] == card[FILE_DIGESTS]
    b = baseline_dir(finished)
    assert json.loads((b / "model_card.json").read_text())[FILE_DIGESTS] == {
        "model.safetensors": sha256_file(b / "model.safetensors")}


@pytest.mark.parametrize("name", ["model.safetensors", "model.onnx", "model.pt2", "model_card.json", "arch.json"])
def test_a_damaged_model_file_is_rebuilt_exactly(run, name):
    want = (run / MODEL / name).read_bytes()
    flip(run / MODEL / name)
    p = resume(run)
    assert p.returncode == 0, p.stderr[-2000:]
    said = [line for line in p.stderr.splitlines() if "rebuilt" in line]
    assert len(said) == 1 and name in said[0] and "exactly" in said[0], p.stderr[-2000:]
    assert (run / MODEL / name).read_bytes() == want


def test_a_missing_onnx_file_is_rebuilt(run):
    want = (run / MODEL / "model.onnx").read_bytes()
    (run / MODEL / "model.onnx").unlink()
    p = resume(run)
    assert p.returncode == 0 and "rebuilt model.onnx" in p.stderr, p.stderr[-2000:]
    assert (run / MODEL / "model.onnx").read_bytes() == want


def test_retrain_resume_rebuilds_too(run):
    want = (run / MODEL / "model.pt2").read_bytes()
    (run / MODEL / "model.pt2").write_bytes(want[:100])
    p = run_cli(["retrain", "--out", run / PICK, "--resume"])
    assert p.returncode == 0 and "rebuilt model.pt2" in p.stderr, p.stderr[-2000:]
    assert (run / MODEL / "model.pt2").read_bytes() == want


def refused(run, needle: str) -> str:
    before = hashes(run)
    p = resume(run)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert hashes(run) == before
    return lines[0]


@pytest.mark.parametrize("checkpoint", ["damaged", "removed"])
def test_damaged_weights_without_a_good_final_checkpoint_are_named(run, checkpoint):
    last = sorted((run / PICK / "checkpoints").glob("step_*.pt"))[-1]
    if checkpoint == "removed":
        last.unlink()
    else:
        flip(last)
    flip(run / MODEL / "model.safetensors")
    line = refused(run, "model.safetensors")
    assert f"remove {run / PICK}" in line


def test_a_damaged_run_card_is_named(run):
    path = run / PICK / "model_card.json"
    path.write_text(path.read_text().replace('"top1": 0.', '"top1": 1.', 1))
    refused(run, f"{PICK}/model_card.json")


@pytest.mark.parametrize("name", ["model.safetensors", "model_card.json"])
def test_damaged_baseline_files_are_named(run, name):
    b = baseline_dir(run)
    flip(b / name)
    refused(run, f"{b.name}/{name}" if name == "model_card.json" else name)


@settings(max_examples=5, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking:
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # a resume takes seconds
@given(data=st.data())
def test_random_damage_is_never_left_behind(finished, tmp_path_factory, data):
    """A flipped byte or a cut anywhere in a delivered file: no traceback; exit 0 only with
    every delivered file back as it was; else one line, exit 2, nothing changed."""
    run = shutil.copytree(finished, tmp_path_factory.mktemp("fuzz") / "r")
    name = data.draw(st.sampled_from(delivered(run)), label="file")
    path = run / name
    size = path.stat().st_size
    if data.draw(st.booleans(), label="cut"):
        path.write_bytes(path.read_bytes()[: data.draw(st.integers(0, size - 1), label="keep")])
    else:
        flip(path, data.draw(st.integers(0, size - 1), label="at"))
    before = hashes(run)
    p = resume(run)
    assert "Traceback" not in p.stderr and p.returncode in (0, 2), p.stderr[-2000:]
    if p.returncode == 0:  # the cards of the run and the baseline: their checksummed content (JSON)
        assert {n: intact(run / n) for n in delivered(run)} == {n: intact(finished / n) for n in delivered(run)}
    else:
        assert len(p.stderr.strip().splitlines()) == 1 and hashes(run) == before, p.stderr[-2000:]


def test_an_unfinished_retraining_is_checked_before_any_stage(run):
    """A retraining stopped after its last checkpoint (no card yet): its checkpoint is
    verified before the resumed run does anything."""
    shutil.rmtree(run / MODEL)
    (run / PICK / "model_card.json").unlink()
    last = sorted((run / PICK / "checkpoints").glob("step_*.pt"))[-1]
    flip(last)
    refused(run, last.name)
    before = hashes(run)
    p = run_cli(["retrain", "--out", run / PICK, "--resume"])  # the trainer loads it before its bar
    assert p.returncode == 2 and last.name in p.stderr and "%|" not in p.stderr, p.stderr[-2000:]
    assert hashes(run) == before


@pytest.mark.parametrize("name", ["search/search.json", "supernet.safetensors", "pool/sample_001.safetensors",
                                  f"{PICK}/arch.json"])
def test_damaged_run_inputs_are_named_before_any_stage(run, name):
    flip(run / name)
    assert "==" not in refused(run, name)  # the whole stderr: no stage line before it
