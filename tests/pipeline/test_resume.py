"""Resume from the states a kill can leave (dead ends A-D of issue 17), exactly.

Each test builds the state a SIGKILL at that instant leaves, from a finished reference run
(files written after the kill point removed, those before kept), resumes, and requires
byte-equal weights, pool and epoch files and equal metrics records.
"""

import json
import shutil

import pytest

from stnas.cli import main
from stnas.core.rundir import RunDir

TRAIN = ["supernet", "train", "--preset", "digits", "--data", "digits", "--optimizer", "sgld",
         "supernet.progress=false", "supernet.epochs=3", "pool.epochs=1", "pool.samples=2",
         "supernet.checkpoint_every=1000"]
RETRAIN = ["retrain", "--arch", "digits:012012/.1.0.....", "--epochs", "1", "--batch-size", "32",
           "retrain.limit=160", "retrain.progress=false", "retrain.checkpoint_every=1000"]
TIMING = ("img_per_s",)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main(TRAIN + ["--out", str(out)]) == 0
    return out


def metrics(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING + ("sha256",)} for line in lines]


def assert_same_supernet_run(ref, cut):
    for rel in ["supernet.safetensors", "pool/index.json"] + \
            [str(p.relative_to(ref)) for p in sorted(ref.glob("pool/sample_*"))] + \
            [str(p.relative_to(ref)) for p in sorted(ref.glob("epochs/epoch_*"))]:
        assert (cut / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert sorted(p.name for p in (cut / "epochs").iterdir()) == sorted(p.name for p in (ref / "epochs").iterdir())
    assert metrics(cut) == metrics(ref)


def _cut_after(ref, dst, keep_step):
    """``ref`` as a kill right after the checkpoint of ``keep_step`` leaves it (later
    checkpoints and the final weights not yet written)."""
    shutil.copytree(ref, dst)
    run = RunDir(dst)
    for p in run.checkpoints.glob("step_*.pt"):
        if int(p.name[5:13]) > keep_step:
            p.unlink()
            p.with_name(p.name + ".sha256").unlink()
    run.supernet.unlink()
    run.supernet_summary.unlink()
    return run


def _steps(ref):
    return sorted(int(p.name[5:13]) for p in (ref / "checkpoints").glob("step_*.pt"))


def test_a_kill_in_the_sampling_phase_before_its_first_checkpoint_resumes(ref, tmp_path):
    """A: the latest checkpoint is the SGD one at the phase start; SGLD takes over after it."""
    phase_start = _steps(ref)[0]
    run = _cut_after(ref, tmp_path / "cut", phase_start)
    assert main(["supernet", "train", "--out", str(run.path), "--resume"]) == 0
    assert_same_supernet_run(ref, run.path)


def test_b_a_kill_between_checkpoint_and_epoch_weights_resumes(ref, tmp_path):
    """B: the epoch's weights file is (re)written by the resumed run."""
    step = _steps(ref)[0]
    run = _cut_after(ref, tmp_path / "cut", step)
    epoch_files = sorted(run.epochs.iterdir())
    for p in epoch_files[len(epoch_files) - 2:]:  # the epoch of the checkpoint and the last one
        p.unlink()
    assert main(["supernet", "train", "--out", str(run.path), "--resume"]) == 0
    assert_same_supernet_run(ref, run.path)


def test_d_a_kill_during_the_first_checkpoint_write_resumes(ref, tmp_path):
    """D: only an interrupted temporary checkpoint file; --resume starts over and cleans it."""
    run = RunDir(tmp_path / "cut")
    run.checkpoints.mkdir(parents=True)
    for name in ("config.yaml", "space.yaml"):
        shutil.copy(ref / name, run.path / name)
    tmp = run.checkpoints / ".step_00000011.pt.x1y2z3.tmp"
    tmp.write_bytes(b"PK\x03\x04 half a checkpoint")
    assert main(["supernet", "train", "--out", str(run.path), "--resume"]) == 0
    assert not tmp.exists()
    assert_same_supernet_run(ref, run.path)


def test_c_retrain_killed_before_its_first_checkpoint_resumes(tmp_path, capsys):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert main(RETRAIN + ["--out", str(ref)]) == 0
    cut.mkdir()
    for name in ("config.yaml", "space.yaml", "arch.json"):  # written before training starts
        shutil.copy(ref / name, cut / name)
    (cut / "checkpoints").mkdir()
    assert main(["retrain", "--out", str(cut), "--resume"]) == 0
    assert (cut / "model/model.safetensors").read_bytes() == (ref / "model/model.safetensors").read_bytes()
    assert metrics(cut) == metrics(ref)
    # killed before the config was written: the rerun of the original command starts over
    again = tmp_path / "again"
    again.mkdir()
    for name in ("space.yaml", "arch.json"):
        shutil.copy(ref / name, again / name)
    assert main(RETRAIN + ["--out", str(again)]) == 0
    assert (again / "model/model.safetensors").read_bytes() == (ref / "model/model.safetensors").read_bytes()


def test_stability_refuses_a_gap_in_the_epoch_files(ref, tmp_path):
    from stnas.analysis.ranking import stability
    from stnas.core.errors import CheckpointError
    from stnas.pipeline.search import proxy_for_run

    run = shutil.copytree(ref, tmp_path / "gap")
    (run / "epochs" / "epoch_002.safetensors").unlink()  # epochs 1 and 3 remain
    with pytest.raises(CheckpointError, match="lacks epoch_002.safetensors"):
        stability(run, ["digits:012012/.1.0....."] * 3, proxy_for_run(run, mode="single"))
