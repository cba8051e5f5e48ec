"""Supernet-inherited weights made honest for export (pipeline step 5).

An architecture's weights taken from the supernet carry BN statistics accumulated over
every path the supernet trained. :func:`recalibrate` re-estimates them for this one
network, as the proxy does when it scores: every BN's running statistics are reset and
re-estimated as a cumulative average (``momentum=None``) over the first
``proxy.recal_batches`` batches (at least one) of the run's search-train split, in a
fixed seeded order without augmentation. It then measures the network's top-1 on
search-val, the number the model card reports beside "inherited, not retrained".
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from stnas.data.datasets import make_loader
from stnas.train.engine import eval_sums


def recalibrate(net: nn.Module, run_dir: str | Path, space) -> dict:
    """Recalibrates ``net``'s BN in place on the search-train data of the run (whose search
    space is ``space``, e.g. ``stnas.deploy.export.run_space(run_dir)``); returns
    ``{"recal_images", "search_val_top1", "search_val_images"}``."""
    from stnas.data.datasets import dataset_split
    from stnas.pipeline.config import load_run_config

    cfg = load_run_config(run_dir)
    px = cfg["proxy"]
    train = dataset_split(cfg, space, "search-train", None, augment=False)
    loader = make_loader(train, px["batch_size"], train=True, seed=cfg["seed"], drop_last=False)
    batches = [x for x, _ in itertools.islice(loader, max(1, px["recal_batches"]))]
    device = next(net.parameters()).device
    with torch.no_grad():  # running statistics reset, then a cumulative average over the batches
        update_bn(batches, net, device=device)
    net.eval()
    val = dataset_split(cfg, space, "search-val", "val_limit")
    sums = eval_sums(net, make_loader(val, px["batch_size"], train=False), device, channels_last=False)
    seen, correct = sum(len(x) for x in batches), sums[0].item()
    return {"recal_images": seen, "search_val_top1": correct / max(1, len(val)), "search_val_images": len(val)}
