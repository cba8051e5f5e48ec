"""BN recalibration before a test (stnas.train.engine.recalibrate_bn), against statistics
computed by hand."""

import torch
from torch import nn

from stnas.train.engine import recalibrate_bn


def _net():
    torch.manual_seed(0)
    # dropout before the BN: a recalibration that left it in train mode would see other inputs
    return nn.Sequential(nn.Dropout(0.5), nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3, momentum=0.0003),
                         nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4))


def test_running_statistics_are_the_cumulative_moments_of_the_images_seen():
    net = _net().train()
    batches = [(torch.randn(n, 2, 5, 5) * 3 + 1, torch.zeros(n, dtype=torch.long)) for n in (4, 7, 5)]
    for x, _ in batches:  # some training-time statistics to be replaced
        net(x)
    seen = recalibrate_bn(net, batches, torch.device("cpu"), channels_last=False)
    bn = net[2]
    with torch.no_grad():  # by hand: every pixel of every image, per channel
        feats = torch.cat([net[1](x) for x, _ in batches]).transpose(0, 1).reshape(3, -1)
    assert seen == 16 and not net.training and not bn.training and bn.momentum == 0.0003
    # a cumulative average over batches: the mean of the batch means weighted equally per batch
    # (torch's momentum=None rule), and of the unbiased batch variances
    means = torch.stack([net[1](x).mean((0, 2, 3)) for x, _ in batches]).detach()
    vars_ = torch.stack([net[1](x).transpose(0, 1).reshape(3, -1).var(1) for x, _ in batches]).detach()
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, vars_.mean(0), atol=1e-4)
    assert bn.num_batches_tracked.item() == 3
    # one batch holding every image: the plain moments
    recalibrate_bn(net, [(torch.cat([x for x, _ in batches]), None)], torch.device("cpu"), channels_last=False)
    assert torch.allclose(bn.running_mean, feats.mean(1), atol=1e-5)
    assert torch.allclose(bn.running_var, feats.var(1), atol=1e-4)


def test_no_batches_resets_to_the_initial_statistics_and_a_net_without_bn_is_left_alone():
    net = _net()
    assert recalibrate_bn(net, [], torch.device("cpu")) == 0
    assert torch.equal(net[2].running_mean, torch.zeros(3)) and torch.equal(net[2].running_var, torch.ones(3))
    plain = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train()
    before = [p.clone() for p in plain.parameters()]
    assert recalibrate_bn(plain, [(torch.ones(3, 2), None)], torch.device("cpu"), channels_last=False) == 3
    assert not plain.training and all(torch.equal(a, b) for a, b in zip(before, plain.parameters()))
