import os
import signal
import subprocess
import time

import pytest
import torch

# two xdist workers on two cores: one thread each
torch.set_num_threads(int(os.environ.get("STNAS_TEST_THREADS", "1")))

SMALL_PRESETS = ["digits", "fashion-mnist", "cifar"]
ALL_PRESETS = SMALL_PRESETS + ["paper", "mobilenetv2"]


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


def kill_at_first_checkpoint(cmd: list[str], run_dir, env: dict, timeout: float = 240) -> None:
    """Starts ``cmd`` and SIGKILLs it as soon as RUN_DIR/checkpoints holds a completed
    checkpoint (the .pt file and then its .sha256 sidecar are written)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline and not list((run_dir / "checkpoints").glob("step_*.pt.sha256")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def load_experiment(name: str):
    """experiments/<name>.py imported as a module (the experiments are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
