"""Supernet-inherited weights made honest for export (pipeline step 5).

An architecture's weights taken from the supernet carry BN statistics accumulated over
every path the supernet trained. :func:`recalibrate` re-estimates them for this one
network (:mod:`stnas.train.recalibrate`, as the proxy does when it scores) over the first
``batches`` batches (at least one, at most one pass) of the run's search-train split, in
a fixed order seeded by the run's seed, without augmentation. It then measures the
network's top-1 on search-val, the number the model card reports beside "inherited, not
retrained".
"""

from __future__ import annotations

import math

from torch import nn

from stnas.data.datasets import DataSpec, dataset_split, make_loader
from stnas.train.engine import eval_sums
from stnas.train.recalibrate import fixed_batches, recalibrate_bn


def recalibrate(net: nn.Module, space, data: DataSpec, batch_size: int, batches: int) -> dict:
    """Recalibrates ``net``'s BN in place on the search-train split of ``data`` (a run of
    search space ``space``), ``batches`` batches of ``batch_size`` (the run's
    ``proxy.recal_batches`` and ``proxy.batch_size``); returns ``{"recal_images",
    "search_val_top1", "search_val_images"}``."""
    train = dataset_split(data, space, "search-train", augment=False)
    device = next(net.parameters()).device
    count = min(max(1, batches), math.ceil(len(train) / batch_size))  # one pass at most
    recal = fixed_batches(train, batch_size, count, data.seed, put=lambda x: x.to(device),
                          name="search-train")
    recalibrate_bn(net, recal)
    val = dataset_split(data, space, "search-val", data.val_limit)
    sums = eval_sums(net, make_loader(val, batch_size, train=False), device, channels_last=False)
    seen, correct = sum(len(x) for x in recal), sums[0].item()
    return {"recal_images": seen, "search_val_top1": correct / max(1, len(val)), "search_val_images": len(val)}
