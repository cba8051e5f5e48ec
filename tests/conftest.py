import os

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
