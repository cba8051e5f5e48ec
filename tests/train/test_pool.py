"""Parameter-sample pool: round trip, averaging, reopen, truncation, corruption."""

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnas.core import verified
from stnas.core.errors import CheckpointError
from stnas.train.pool import SamplePool


def _bn_net(seed):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.Linear(4, 2))
    net[1].num_batches_tracked.fill_(10 + seed)
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
    return net.state_dict()


def _assert_state_equal(a, b):
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_round_trip_and_index(tmp_path):
    pool = SamplePool(tmp_path / "pool")
    sds = [_bn_net(s) for s in range(3)]
    for i, sd in enumerate(sds):
        assert pool.add(sd, step=100 * (i + 1), lr=0.01 / (i + 1), loss=1.5 - i) == i
    assert len(pool) == 3
    assert [e["file"] for e in pool.entries] == [f"sample_{k:03d}.safetensors" for k in range(3)]
    assert [(e["step"], e["lr"], e["loss"]) for e in pool.entries] == [
        (100, 0.01, 1.5), (200, 0.005, 0.5), (300, 0.01 / 3, -0.5)]
    for k, sd in enumerate(sds):
        _assert_state_equal(pool.load(k), sd)
    _assert_state_equal(pool.load(-1), sds[-1])
    index = json.loads((tmp_path / "pool" / "index.json").read_text())
    assert index["format"] == "stnas-sample-pool" and len(index["entries"]) == 3


def test_add_copies_the_tensors(tmp_path):
    pool = SamplePool(tmp_path)
    w = torch.ones(4)
    pool.add({"w": w, "view": w[:2]}, step=1, lr=0.1, loss=0.0)  # shared storage is fine
    w.zero_()
    assert torch.equal(pool.load(0)["w"], torch.ones(4))


def test_index_survives_reopen(tmp_path):
    pool = SamplePool(tmp_path)
    sds = [_bn_net(s) for s in range(2)]
    for i, sd in enumerate(sds):
        pool.add(sd, step=i, lr=0.1, loss=0.2)
    again = SamplePool(tmp_path)
    assert again.entries == pool.entries
    _assert_state_equal(again.load(1), sds[1])
    again.add(_bn_net(5), step=7, lr=0.1, loss=0.3)
    assert len(SamplePool(tmp_path)) == 3


def test_average_is_the_elementwise_mean(tmp_path):
    pool = SamplePool(tmp_path)
    sds = [_bn_net(s) for s in range(4)]
    for i, sd in enumerate(sds):
        pool.add(sd, step=i, lr=0.1, loss=0.0)
    avg = pool.average()
    for key, t in avg.items():
        if key.endswith("num_batches_tracked"):
            assert t.dtype == torch.int64 and t.item() == 13  # taken from the last sample
        else:
            manual = np.mean([sd[key].numpy().astype(np.float64) for sd in sds], axis=0)
            assert t.dtype == torch.float32
            np.testing.assert_allclose(t.numpy(), manual, rtol=0, atol=1e-7)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 4), shape=st.lists(st.integers(1, 4), max_size=3),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
       seed=st.integers(0, 2**16))
def test_average_property(tmp_path_factory, n, shape, dtype, seed):
    pool = SamplePool(tmp_path_factory.mktemp("p"))
    g = torch.Generator().manual_seed(seed)
    xs = [(torch.randn(shape, generator=g) * 10).to(dtype) for _ in range(n)]
    ints = [torch.randint(0, 100, shape, generator=g) for _ in range(n)]
    for i in range(n):
        pool.add({"x": xs[i], "i": ints[i]}, step=i, lr=1.0, loss=0.0)
        _assert_state_equal(pool.load(i), {"x": xs[i], "i": ints[i]})
    avg = pool.average()
    manual = np.mean([x.double().numpy() for x in xs], axis=0)
    assert avg["x"].dtype == dtype and torch.equal(avg["i"], ints[-1])
    np.testing.assert_allclose(avg["x"].double().numpy(), manual, rtol=torch.finfo(dtype).eps, atol=1e-12)


def test_truncate_after(tmp_path):
    pool = SamplePool(tmp_path)
    sds = [_bn_net(s) for s in range(4)]
    for i, sd in enumerate(sds):
        pool.add(sd, step=10 * (i + 1), lr=0.1, loss=0.0)
    assert pool.truncate_after(25) == 2
    assert [e["step"] for e in pool.entries] == [10, 20]
    assert not (tmp_path / "sample_002.safetensors").exists()
    assert [e["step"] for e in SamplePool(tmp_path).entries] == [10, 20]
    assert pool.truncate_after(100) == 0
    # the resumed run re-adds the same sample under the same name
    assert pool.add(sds[2], step=30, lr=0.1, loss=0.0) == 2
    _assert_state_equal(SamplePool(tmp_path).load(2), sds[2])
    assert pool.truncate_after(0) == 3 and len(SamplePool(tmp_path)) == 0


def test_missing_or_corrupt_files(tmp_path):
    pool = SamplePool(tmp_path)
    for i in range(2):
        pool.add(_bn_net(i), step=i, lr=0.1, loss=0.0)
    f0, f1 = tmp_path / "sample_000.safetensors", tmp_path / "sample_001.safetensors"
    data = bytearray(f1.read_bytes())
    data[-3] ^= 0x01  # inside tensor data: safetensors alone would not notice
    f1.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sample_001.safetensors.*corrupted"):
        pool.load(1)
    with pytest.raises(CheckpointError, match="corrupted"):
        pool.average()
    f0.unlink()
    with pytest.raises(CheckpointError, match="sample_000.safetensors.*missing"):
        pool.load(0)
    with pytest.raises(CheckpointError, match="no sample 5"):
        pool.load(5)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="index.json"):
        SamplePool(tmp_path)
    verified.write_json(tmp_path / "index.json", {"entries": []})  # checksummed, but no header
    with pytest.raises(CheckpointError, match="not a sample-pool index"):
        SamplePool(tmp_path)


def test_empty_pool(tmp_path):
    pool = SamplePool(tmp_path / "new")
    assert len(pool) == 0 and pool.entries == []
    with pytest.raises(CheckpointError, match="empty"):
        pool.average()


def test_mismatched_samples_cannot_be_averaged(tmp_path):
    pool = SamplePool(tmp_path)
    pool.add({"w": torch.zeros(3)}, step=0, lr=0.1, loss=0.0)
    pool.add({"w": torch.zeros(4)}, step=1, lr=0.1, loss=0.0)
    with pytest.raises(CheckpointError, match="shape"):
        pool.average()
