"""experiments/zero_cost.py: NASWOT and synflow checked against their definitions on small
networks worked out independently, and the record it writes read back by fidelity.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stnas.core.errors import StnasError

from experiments import fidelity as fid
from experiments import zero_cost as zc
from experiments.common import read_record

ROOT = Path(__file__).resolve().parents[2] / "experiments"


def test_naswot_is_the_log_determinant_of_the_hamming_kernel():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU6())
    x = torch.randn(6, 3)
    with torch.no_grad():
        h1 = net[1](net[0](x))
        h2 = net[3](net[2](h1))
    codes = np.concatenate([(h1 > 0).numpy(), (h2 > 0).numpy()], 1).astype(int)
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    k = codes.shape[1] - hamming
    sign, logdet = np.linalg.slogdet(k.astype(float))
    expect = logdet if sign > 0 else -np.inf
    assert zc.naswot(net, x) == pytest.approx(expect)


def test_naswot_of_identical_codes_is_minus_infinity():
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    x = torch.ones(3, 2)  # every image the same: every code the same, a singular kernel
    assert zc.naswot(net, x) == float("-inf")
    with pytest.raises(StnasError, match="ReLU"):
        zc.naswot(nn.Sequential(nn.Linear(2, 3), nn.Tanh()), x)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(1, 5), st.integers(0, 1000))
def test_synflow_of_a_bias_free_relu_mlp_is_depth_times_its_output(widths, d_in, seed):
    # with positive weights and a positive input every ReLU passes, so R = 1' |W_L| ... |W_1| 1 is
    # homogeneous of degree L (one per layer): by Euler's theorem sum(theta * dR/dtheta) = L * R
    torch.manual_seed(seed)
    layers, d = [], d_in
    for w in widths:
        layers += [nn.Linear(d, w, bias=False), nn.ReLU()]
        d = w
    weights = [np.abs(m.weight.detach().numpy().astype(np.float64)) for m in layers[::2]]
    h = np.ones(d_in)
    for w in weights:
        h = w @ h
    assert zc.synflow(nn.Sequential(*layers), (d_in,)) == pytest.approx(len(widths) * h.sum(), rel=1e-9)


def _digits_archs(n: int) -> list[str]:
    from stnas.space.catalog import load_space

    space = load_space("digits")
    rng = np.random.default_rng(3)
    return list(dict.fromkeys(str(space.sample(rng)) for _ in range(n)))


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "zero_cost.py"), *args], capture_output=True, text=True)


def test_record_is_read_by_fidelity_and_nothing_is_replaced(tmp_path):
    archs = _digits_archs(4)
    plan = tmp_path / "t.json"
    plan.write_text(json.dumps({"rows": [{"arch": a} for a in archs]}))
    out = tmp_path / "zc.json"
    r = _run("--preset", "digits", "--archs", str(plan), "--out", str(out), "--batch", "16", "--inits", "2")
    assert r.returncode == 0, r.stderr
    rec = read_record(out)
    assert set(rec["cells"]) == {"naswot", "synflow"} and rec["preset_cell"] == "naswot"
    cells = fid.run_cells(str(out), archs, [1])
    assert all(set(v) == set(archs) and all(np.isfinite(list(v.values()))) for v in cells.values())
    before = out.read_bytes()
    again = _run("--preset", "digits", "--archs", str(plan), "--out", str(out))
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert out.read_bytes() == before


@pytest.mark.parametrize("bad", [["--batch", "1"], ["--inits", "0"], ["--archs", "MISSING.json"], ["--inits", "1"]])
def test_bad_input_is_one_line_and_exit_2(tmp_path, bad):
    plan = tmp_path / "t.json"  # its one architecture is not one of the digits space (the last case)
    plan.write_text(json.dumps({"rows": [{"arch": "digits:nonsense"}]}))
    args = {"--archs": str(plan), "--out": str(tmp_path / "o.json"), "--preset": "digits"}
    for i in range(0, len(bad), 2):
        args[bad[i]] = bad[i + 1]
    r = _run(*[x for kv in args.items() for x in kv])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o.json").exists()
