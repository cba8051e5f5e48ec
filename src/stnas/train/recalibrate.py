"""BN recalibration: the one way a network's BN statistics are re-estimated for its own path.

Weights inherited from a supernet carry BN statistics accumulated over every path it
trained. The proxy (before it scores an architecture) and the export of inherited weights
(``stnas.train.inherited``) re-estimate them here:

* :func:`fixed_batches` draws the inputs once: the first ``count`` batches of seeded
  shuffled passes over a dataset (epoch 0, then epoch 1, ... when one pass holds fewer),
  the last batch of a pass kept whole or partial; the same batches for every network and
  every weight source, a pure function of (dataset, batch size, count, seed).
* :func:`recalibrate_bn` resets every BN's running statistics and re-estimates them as a
  cumulative average (``momentum=None``) over those batches, BN in train mode under
  ``no_grad`` (``torch.optim.swa_utils.update_bn``), then leaves the network in eval mode.
  No batches: the statistics are kept as they are.
"""

from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

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
    docstring); ``amp``: under bf16 autocast on the batches' device. Returns ``net`` in eval
    mode."""
    if batches:
        cast = torch.autocast(batches[0].device.type, dtype=torch.bfloat16) if amp else nullcontext()
        with torch.no_grad(), cast:
            update_bn(batches, net)
    return net.eval()
