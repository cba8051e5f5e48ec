"""BN recalibration: the one way a network's BN statistics are re-estimated for its own path.

Weights inherited from a supernet carry BN statistics accumulated over every path it
trained, and a network trained with a tiny BN momentum (torchvision's MNASNet, MobileNetV3)
carries statistics far from its final weights'. The proxy (before it scores an architecture),
the export of inherited weights (``stnas.train.inherited``) and the baselines' test
(``stnas.pipeline.baselines``) re-estimate them here:

* :func:`fixed_batches` draws the inputs once: the first ``count`` batches of seeded
  shuffled passes over a dataset (epoch 0, then epoch 1, ... when one pass holds fewer),
  the last batch of a pass kept whole or partial; the same batches for every network and
  every weight source, a pure function of (dataset, batch size, count, seed).
* :func:`recalibrate_bn` resets every BN's running statistics and re-estimates them as a
  cumulative average (``momentum=None``) over those batches, only the BN layers in train mode
  under ``no_grad``, then leaves the network in eval mode.
  No batches: the statistics are kept as they are.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

from stnas.core.errors import ConfigError
from stnas.data.datasets import make_loader


def fixed_batches(dataset, batch_size: int, count: int, seed: int, *,
                  put: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  name: str = "the recalibration set") -> list[torch.Tensor]:
    """The inputs of the first ``count`` batches of seeded shuffled passes over ``dataset``
    (labels dropped), each passed through ``put`` (e.g. a move to the device).

    Raises:
        ConfigError: ``count`` > 0 and ``dataset`` is empty (``name`` says which).
    """
    out: list[torch.Tensor] = []
    epoch = 0
    while len(out) < count:
        loader = make_loader(dataset, batch_size, train=True, seed=seed, epoch=epoch, drop_last=False)
        got = [put(x) if put else x for x, _ in itertools.islice(loader, count - len(out))]
        if not got:
            raise ConfigError(f"{name} is empty: nothing to recalibrate BN on")
        out += got
        epoch += 1
    return out


def recalibrate_bn(net: nn.Module, batches: list[torch.Tensor], amp: bool = False) -> nn.Module:
    """Re-estimates ``net``'s BN running statistics on ``batches`` in place (module
    docstring); ``amp``: under bf16 autocast on the batches' device. Only the BN layers are in
    train mode meanwhile: dropout and stochastic depth stay off, so the statistics are those of
    the network that will be evaluated (``torch.optim.swa_utils.update_bn`` puts the whole
    network in train mode). Returns ``net`` in eval mode."""
    net.eval()
    if not batches:
        return net
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    cast = torch.autocast(batches[0].device.type, dtype=torch.bfloat16) if amp else nullcontext()
    try:
        with torch.no_grad(), cast:
            for x in batches:
                net(x)
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        net.eval()
    return net
