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

from pathlib import Path

import torch
from torch import nn

from stnas.data import make_loader


def recalibrate(net: nn.Module, run_dir: str | Path, space) -> dict:
    """Recalibrates ``net``'s BN in place on the search-train data of the run (whose search
    space is ``space``, e.g. ``stnas.export.run_space(run_dir)``); returns
    ``{"recal_images", "search_val_top1", "search_val_images"}``."""
    from stnas.config import load_run_config
    from stnas.data import dataset_split

    cfg = load_run_config(run_dir)
    px = cfg["proxy"]
    train = dataset_split(cfg, space, "search-train", None, augment=False)
    loader = make_loader(train, px["batch_size"], train=True, seed=cfg["seed"], drop_last=False)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    seen = 0
    with torch.no_grad():
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average over the batches
        net.train()
        for k, (x, _) in enumerate(loader):
            if k >= max(1, px["recal_batches"]):
                break
            net(x)
            seen += len(x)
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        net.eval()
        val = dataset_split(cfg, space, "search-val", "val_limit")
        correct = 0
        for x, y in make_loader(val, px["batch_size"], train=False):
            correct += (net(x).argmax(1) == y).sum().item()
    return {"recal_images": seen, "search_val_top1": correct / max(1, len(val)), "search_val_images": len(val)}
