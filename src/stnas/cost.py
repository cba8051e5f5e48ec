"""Counting multiply-adds and parameters of built modules.

The analytic cost of an architecture lives in :class:`stnas.space.SearchSpace`
(``madds``, ``params``, ``cost_batch``), computed from per-edge tables that
:func:`stnas.ops.op_cost` fills. This module counts what a built model actually does,
by forward hooks, to check those tables (design.md section 3: conv and linear
multiply-accumulates only).
"""

from __future__ import annotations

import torch
from torch import nn


def count_by_hooks(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    """(MAdds, params) of ``model`` on one ``C x H x W`` image, counted by hooks."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total, sum(p.numel() for p in model.parameters())


def fmt_count(n: float) -> str:
    """3.1M, 326.4M, 12.0K style."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}" if n / div < 100 else f"{n / div:.1f}{unit}"
    return str(int(n))
