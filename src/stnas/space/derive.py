"""The derived search space: a space for data no preset was written for.

When the data is the user's (``stnas.data.userdata``) and no preset is given, the space is
derived from the input (channels C, side S), the class count K and the MAdds budget B
(the largest, when there are several) by one rule:

* stem: conv3x3 with stride 2 when S >= 64, else 1, to ``w`` channels, then an
  ``mb_k3_e1`` block to ``max(8, w / 2)`` channels;
* stride-2 stages: as many as keep the last feature map at least 4×4 pixels under padding
  (``ceil(S' / 2^n) >= 4``, S' the side after the stem), at least 1 and at most 4; each has
  depth 2 and width
  ``w × (1, 1.5, 2.5, 4)[i]`` rounded to a multiple of 8;
* ops ``mb_k3_e3, mb_k3_e6, mb_k5_e3, mb_k5_e6`` on the chain and on the branch edges
  (depth differences 2 and 3), a 1×1 head to 4 × the last width, K classes;
* the base width ``w`` is the largest of ``WIDTHS`` whose space has the middle of its
  MAdds range, ``(min + max) / 2``, within B (the smallest when none has); without a budget,
  ``w = 16`` and B is that middle, rounded up to two significant digits.

The space is named ``auto-CxS-Kc-B`` (e.g. ``auto-3x32-5c-4M``); the name alone rebuilds it,
so architecture strings, run directories and ``stnas space show auto-3x32-5c-4M`` work as
for a preset. The derived preset also sets ``search.budgets: [B]``.
"""

from __future__ import annotations

import re

from stnas.core.errors import SpaceError
from stnas.core.units import budget_label, parse_count
from stnas.space.searchspace import SearchSpace

WIDTHS = (8, 12, 16, 24, 32, 48, 64)
DEFAULT_WIDTH = 16
OPS = ["mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k5_e6"]
_STAGE_SCALE = (1, 1.5, 2.5, 4)
_NAME = re.compile(r"auto-(\d+)x(\d+)-(\d+)c-([0-9.]+[kMG]?)")


def _round8(x: float) -> int:
    return max(8, int(round(x / 8)) * 8)


def space_config(channels: int, size: int, classes: int, width: int, name: str = "auto") -> dict:
    """The space of the rule above for one base width."""
    stride = 2 if size >= 64 else 1
    side = -(-size // stride)
    stages = 1
    while stages < 4 and -(-side // 2 ** (stages + 1)) >= 4:  # the last map stays >= 4x4 under padding
        stages += 1
    widths = [_round8(width * _STAGE_SCALE[i]) for i in range(stages)]
    return {"name": name, "input": {"channels": channels, "size": size}, "num_classes": classes,
            "stem": {"channels": width, "stride": stride},
            "first_block": {"op": "mb_k3_e1", "channels": max(8, width // 2)},
            "stages": [{"channels": w, "depth": 2, "stride": 2} for w in widths],
            "ops": list(OPS), "branch": {"depths": [2, 3], "ops": None},
            "head": {"channels": 4 * widths[-1], "dropout": 0.0}, "activation": "relu6"}


def _middle(cfg: dict) -> int:
    lo, hi = SearchSpace(cfg).madds_range()
    return (lo + hi) // 2




def derived_name(channels: int, size: int, classes: int, budget: int | None = None) -> str:
    """The name of the derived space (its budget filled in when None)."""
    if budget is None:
        mid = _middle(space_config(channels, size, classes, DEFAULT_WIDTH))
        digits = 10 ** max(0, len(str(mid)) - 2)
        budget = -(-mid // digits) * digits
    return f"auto-{channels}x{size}-{classes}c-{budget_label(int(budget))}"


def is_derived(name) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def derived_preset(name: str) -> dict:
    """The preset dict (space + search budgets) a derived name stands for."""
    m = _NAME.fullmatch(name)
    if not m:
        raise SpaceError(f"{name!r} is not a derived space name (auto-CxS-Kc-BUDGET, e.g. auto-3x32-5c-4M)")
    channels, size, classes = (int(g) for g in m.groups()[:3])
    if channels not in (1, 3) or not 4 <= size <= 4096 or classes < 2:
        raise SpaceError(f"{name}: channels must be 1 or 3, the size 4..4096 and classes >= 2")
    budget = parse_count(m.group(4), "budget")
    width = WIDTHS[0]
    for w in WIDTHS:
        if _middle(space_config(channels, size, classes, w)) <= budget:
            width = w
    return {"space": space_config(channels, size, classes, width, name), "search": {"budgets": [budget]}}
