"""Checkpoints: bitwise round trip, RNG states, corruption detection, safe loading, rotation."""

import hashlib
import os
import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnas.core.checkpoint import (
    CheckpointManager,
    capture_rng_state,
    load_checkpoint,
    numpy_generator_state,
    restore_numpy_generator,
    restore_rng_state,
    save_checkpoint,
)
from stnas.core.errors import CheckpointError


def _realistic_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 1, 8, 8)).logsumexp(1).mean().backward()
        opt.step()
        sched.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": capture_rng_state(), "step": 3, "loss": 0.125, "arch": "digits:0123/..1",
            "history": [1.5, 2.5], "config": {"lr": 0.1, "tags": ["a", "b"], "none": None},
            "np_gen": numpy_generator_state(np.random.default_rng(7))}


def _assert_same(a, b, where="state"):
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _write_sidecar(path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def _expect_error(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert path.name in msg and "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_round_trip_is_bitwise(tmp_path):
    state = _realistic_state()
    path = save_checkpoint(tmp_path / "ck.pt", state)
    assert (tmp_path / "ck.pt.sha256").is_file()
    _assert_same(state, load_checkpoint(path))
    assert torch.load(path, weights_only=True)["state"]["step"] == 3  # plain torch can read it


def test_rng_states_restore_the_streams(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.standard_normal()  # leave cached gaussians behind
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    first = (random.random(), random.gauss(0, 1), np.random.standard_normal(3).tolist(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    second = (random.random(), random.gauss(0, 1), np.random.standard_normal(3).tolist(), torch.rand(3))
    assert first[:3] == second[:3] and torch.equal(first[3], second[3])


@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64])
def test_numpy_generator_state_round_trip(tmp_path, bitgen):
    gen = np.random.Generator(bitgen(5))
    gen.integers(0, 100, 17)
    save_checkpoint(tmp_path / "g.pt", {"g": numpy_generator_state(gen)})
    expected = gen.random(5)
    other = np.random.Generator(bitgen(123))
    restore_numpy_generator(other, load_checkpoint(tmp_path / "g.pt")["g"])
    assert np.array_equal(other.random(5), expected)


def test_missing_empty_and_unsidecarred_files(tmp_path):
    _expect_error(tmp_path / "nope.pt", "not found")
    (tmp_path / "empty.pt").write_bytes(b"")
    _expect_error(tmp_path / "empty.pt", "empty")
    torch.save({"x": 1}, tmp_path / "bare.pt")
    _expect_error(tmp_path / "bare.pt", "checksum")


def test_truncated_and_flipped_files(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", _realistic_state())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "corrupted")
    _write_sidecar(path)  # even with a matching digest, a truncated zip is rejected
    _expect_error(path, "cannot be loaded")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40
    path.write_bytes(bytes(flipped))
    _expect_error(path, "corrupted")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_truncation_or_bit_flip_is_detected(tmp_path, data):
    path = tmp_path / "p.pt"
    if not path.exists():
        save_checkpoint(path, {"w": torch.arange(50, dtype=torch.float32), "step": 1})
        (tmp_path / "orig").write_bytes(path.read_bytes())
    orig = (tmp_path / "orig").read_bytes()
    if data.draw(st.booleans()):
        bad = orig[: data.draw(st.integers(0, len(orig) - 1))]
    else:
        i, bit = data.draw(st.integers(0, len(orig) - 1)), data.draw(st.integers(0, 7))
        bad = bytearray(orig)
        bad[i] ^= 1 << bit
        bad = bytes(bad)
    path.write_bytes(bad)
    _expect_error(path)
    path.write_bytes(orig)


def test_garbage_and_wrong_type_with_valid_digests(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    _write_sidecar(garbage)
    _expect_error(garbage, "cannot be loaded")
    for i, obj in enumerate([[1, 2, 3], torch.zeros(3), {"model": {}}, {"format": "stnas-checkpoint", "state": 3}]):
        wrong = tmp_path / f"wrong{i}.pt"
        torch.save(obj, wrong)
        _write_sidecar(wrong)
        _expect_error(wrong, "not an stnas checkpoint")


_CALLED = []


def _side_effect():
    _CALLED.append(True)
    return "pwned"


class _Evil:
    def __reduce__(self):
        return (_side_effect, ())


def test_pickled_custom_classes_are_rejected(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "stnas-checkpoint", "version": 1, "state": {"x": _Evil()}}, path)
    _write_sidecar(path)
    _expect_error(path, "cannot be loaded safely")
    assert not _CALLED


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "ck.pt", {"step": 1, "w": torch.ones(3)})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temp file either
    assert load_checkpoint(path)["step"] == 1


def test_unpicklable_state_leaves_the_old_file(tmp_path):
    path = save_checkpoint(tmp_path / "ck.pt", {"step": 1})
    with pytest.raises((pickle.PicklingError, AttributeError)):
        save_checkpoint(path, {"step": 2, "bad": lambda: 0})
    assert load_checkpoint(path)["step"] == 1


def test_rotation_keeps_the_newest(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    assert mgr.latest() is None and mgr.load_latest() is None
    for step in (10, 20, 30, 40):
        mgr.save({"step": step}, step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000030.pt", "step_00000030.pt.sha256",
                     "step_00000040.pt", "step_00000040.pt.sha256"]
    assert mgr.latest().name == "step_00000040.pt"
    assert mgr.load_latest()["step"] == 40


def test_failed_save_does_not_rotate(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=1)
    mgr.save({"step": 1}, 1)
    with pytest.raises((pickle.PicklingError, AttributeError)):
        mgr.save({"bad": lambda: 0}, 2)
    assert mgr.load_latest()["step"] == 1


def test_corrupted_latest_names_the_previous_good_one(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=3)
    for step in (100, 200, 300):
        mgr.save({"step": step}, step)
    newest, middle = mgr.path_for(300), mgr.path_for(200)
    newest.write_bytes(newest.read_bytes()[:-10])
    middle.with_name(middle.name + ".sha256").unlink()  # an interrupted save of 200, say
    with pytest.raises(CheckpointError) as info:
        mgr.load_latest()
    msg = str(info.value)
    assert "step_00000300.pt" in msg and f"--resume {mgr.path_for(100)}" in msg and "\n" not in msg
    assert newest.exists() and middle.exists()
    assert load_checkpoint(mgr.path_for(100))["step"] == 100


def test_no_good_checkpoint_left(tmp_path):
    mgr = CheckpointManager(tmp_path, keep=2)
    mgr.save({"step": 1}, 1)
    mgr.path_for(1).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no earlier good checkpoint"):
        mgr.load_latest()
