"""BN recalibration (stnas.train.recalibrate): the fixed batches and the re-estimated statistics."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stnas.core.errors import ConfigError
from stnas.data.datasets import ArrayDataset
from stnas.train.recalibrate import fixed_batches, recalibrate_bn

INFO = dict(classes=2, size=2, mean=(0.0,), std=(1.0,), pad=0, flip=False, val=0.2)


def numbered(n: int) -> ArrayDataset:
    """``n`` 1x2x2 images whose pixels all hold the image's number (so a batch names its images)."""
    images = np.repeat(np.arange(n, dtype=np.uint8), 4).reshape(n, 1, 2, 2)
    return ArrayDataset("numbered", images, np.arange(n) % 2, np.arange(n), augment=False, image_size=2, scale=1.0,
                        info=INFO)


def ids(batch: torch.Tensor) -> list[int]:
    return batch[:, 0, 0, 0].round().long().tolist()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 16), count=st.integers(0, 12), seed=st.integers(0, 2**31))
def test_fixed_batches_are_whole_seeded_passes(n, batch_size, count, seed):
    data = numbered(n)
    got = fixed_batches(data, batch_size, count, seed)
    assert len(got) == count
    per_pass = math.ceil(n / batch_size)
    for start in range(0, count - per_pass + 1, per_pass):  # every whole pass holds each image once
        seen = [i for b in got[start:start + per_pass] for i in ids(b)]
        assert sorted(seen) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in got)
    again = fixed_batches(data, batch_size, count + 2, seed)  # a pure function; more batches extend it
    assert all(torch.equal(a, b) for a, b in zip(got, again, strict=False))


def test_fixed_batches_differ_by_seed_and_apply_put():
    data = numbered(30)
    a, b = fixed_batches(data, 10, 3, 0), fixed_batches(data, 10, 3, 1)
    assert [ids(x) for x in a] != [ids(x) for x in b]
    doubled = fixed_batches(data, 10, 3, 0, put=lambda x: 2 * x)
    assert all(torch.equal(2 * x, y) for x, y in zip(a, doubled, strict=True))


def test_an_empty_set_is_a_named_error():
    empty = numbered(0)
    assert fixed_batches(empty, 4, 0, 0) == []
    with pytest.raises(ConfigError, match="search-train of run R is empty"):
        fixed_batches(empty, 4, 2, 0, name="search-train of run R")


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3))
    net[1].running_mean.fill_(5.0)
    net[1].running_var.fill_(9.0)
    return net


def test_recalibration_is_the_cumulative_average_over_the_batches():
    net = _net().train()
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(k, 1, 4, 4, generator=g) * (k + 1) + k for k in (3, 5, 2)]
    with torch.no_grad():
        outs = [net[0](x) for x in batches]
    want_mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    want_var = torch.stack([o.transpose(0, 1).reshape(3, -1).var(1, unbiased=True) for o in outs]).mean(0)
    assert recalibrate_bn(net, batches) is net
    assert not net.training and net[1].momentum == 0.1  # eval mode, the momentum given back
    torch.testing.assert_close(net[1].running_mean, want_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, want_var, rtol=1e-5, atol=1e-5)


def test_no_batches_keep_the_statistics():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    recalibrate_bn(net, [])
    assert not net.training
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_bf16_autocast_estimates_close_to_float32():
    batches = [torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    exact, cast = recalibrate_bn(_net(), batches), recalibrate_bn(_net(), batches, amp=True)
    torch.testing.assert_close(cast[1].running_mean, exact[1].running_mean, rtol=0.05, atol=0.05)
    assert not torch.equal(cast[1].running_mean, exact[1].running_mean)  # the cast did happen


def test_dropout_stays_off_and_the_statistics_are_the_cumulative_moments():
    """Only BN is in train mode while it re-estimates: a dropout before it would change what it
    sees (torch's update_bn trains the whole net). Per batch moments averaged equally (momentum
    None), computed here by hand."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=0.0003),
                        nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)).train()
    batches = [torch.randn(n, 2, 5, 5) * 3 + 1 for n in (4, 7, 5)]
    for x in batches:  # training-time statistics to be replaced
        net(x)
    assert recalibrate_bn(net, batches) is net and not net.training
    bn = net[2]
    with torch.no_grad():
        means = torch.stack([net[1](x).mean((0, 2, 3)) for x in batches])
        vars_ = torch.stack([net[1](x).transpose(0, 1).reshape(3, -1).var(1) for x in batches])
    assert bn.momentum == 0.0003 and bn.num_batches_tracked.item() == 3
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, vars_.mean(0), atol=1e-4)
