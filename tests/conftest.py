import contextlib
import io
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# two xdist workers on two cores: one thread each
torch.set_num_threads(int(os.environ.get("STNAS_TEST_THREADS", "1")))
# no plan (and no calibration) unless a test asks for one (tests/pipeline/test_plan.py): runs in
# subprocesses inherit it
os.environ["STNAS_PLAN"] = "off"

SMALL_PRESETS = ["digits", "fashion-mnist", "cifar"]
ALL_PRESETS = SMALL_PRESETS + ["paper", "mobilenetv2"]


# the shared trained run: a tiny digits supernet (2 epochs, a pool of 2 samples), scored by
# top-1 (the tests hold it to a reference written by hand, and the loss metric, the default,
# has tests of its own)
TRAINED_OVERRIDES = ["device=cpu", "supernet.epochs=2", "pool.epochs=1", "pool.samples=2", "supernet.progress=false",
                     "data.limit=384", "data.val_limit=120", "proxy.batch_size=64", "proxy.recal_batches=2",
                     "supernet.checkpoint_every=1000", "proxy.metric=top1"]


def randomise_bn(net):
    """``net`` with every BN's affine and running statistics randomised (in place), so that
    moving weights between modules must carry the buffers too."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return net


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One trained run (``TRAINED_OVERRIDES``) for every test that needs one, trained once per
    test process. Never modified: tests that write into a run use ``trained_copy``."""
    from stnas.core import dist
    from stnas.pipeline.config import resolve
    from stnas.pipeline.supernet import train_supernet

    run = tmp_path_factory.mktemp("trained") / "run"
    train_supernet(resolve("digits", overrides=TRAINED_OVERRIDES), run, ctx=dist.Context())
    return run


@pytest.fixture(scope="module")
def trained_copy(trained_run, tmp_path_factory):
    """A copy of the trained run of the module's own (its tests may write into it)."""
    import shutil

    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("trained_copy") / "run"))


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """The plan's calibration answered by ``plancases.Recorded`` (no timing), with a fresh cache."""
    from plancases import Recorded

    import stnas.pipeline.plan as plan_mod

    fake = Recorded()
    monkeypatch.setattr(plan_mod, "calibrate", fake)
    monkeypatch.setenv("STNAS_PLAN", "on")
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    return fake


@pytest.fixture
def tiny_config():
    """A hand-countable space: 3 stem edges, one depth-2 branch per target."""
    return {
        "name": "tiny",
        "input": {"channels": 1, "size": 8},
        "num_classes": 3,
        "stem": {"channels": 4, "stride": 1},
        "stages": [{"channels": 8, "depth": 1, "stride": 2}, {"channels": 8, "depth": 2, "stride": 1}],
        "ops": ["mb_k3_e3", "skip"],
        "branch": {"depths": [2], "ops": ["conv1x1", "skip"]},
        "head": {"channels": 16},
    }


@dataclass
class CliRun:
    """What an in-process CLI call gave (the fields of ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(argv) -> CliRun:
    """``stnas ARGV`` in this process (no torch import to pay): exit code and captured output."""
    from stnas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors and --help
            rc = exc.code if isinstance(exc.code, int) else 1
    return CliRun(rc, out.getvalue(), err.getvalue())


def kill_at_first_checkpoint(cmd: list[str], run_dir, env: dict, timeout: float = 240) -> None:
    """Starts ``cmd`` and SIGKILLs it as soon as RUN_DIR/checkpoints holds a completed
    checkpoint (the .pt file and then its .sha256 sidecar are written)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and not list((run_dir / "checkpoints").glob("step_*.pt.sha256")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def pytest_collection_modifyitems(config, items):
    """Tests under tests/research/ test the method studies (experiments/), not the product:
    marked ``research`` so that ``-m "not research"`` runs the product's tests alone."""
    research = Path(__file__).resolve().parent / "research"
    for item in items:
        if research in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.research)
