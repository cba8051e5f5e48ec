"""Bounds on untrusted input: nesting depth and size of parsed YAML/JSON, integer range,
the sensible range of config values.

A YAML alias bomb is a small text whose parsed tree, counted with every alias expanded, is
huge; :func:`check_tree` counts nodes that way and stops at the bound, so it never walks
more than ``max_nodes`` nodes itself.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

from stnas.errors import ConfigError, StnasError

MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_INT = 2**63 - 1  # seeds, steps and counts are packed as signed 64-bit integers
MAX_TEXT = 4 << 20  # bytes of a config, space or architecture file


def check_tree(obj: Any, what: str, error: type[StnasError], max_depth: int = MAX_DEPTH,
               max_nodes: int = MAX_NODES) -> None:
    """Raises ``error`` when ``obj`` nests deeper than ``max_depth`` or holds more than
    ``max_nodes`` values (aliases counted each time they occur)."""
    count = 0
    stack = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise error(f"{what} is too large (more than {max_nodes} values, aliases expanded)")
        if depth > max_depth:
            raise error(f"{what} nests deeper than {max_depth} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node.keys() if isinstance(k, (tuple, frozenset)))
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def check_text_size(text: str | bytes, what: str, error: type[StnasError], limit: int = MAX_TEXT) -> None:
    """Raises ``error`` when ``text`` is longer than ``limit``."""
    if len(text) > limit:
        raise error(f"{what} is {len(text)} characters long, more than the {limit} allowed")


# the largest sensible value of numeric keys (beyond them a run would never end or fit)
_UPPER = {"supernet.epochs": 10**5, "retrain.epochs": 10**5, "supernet.batch_size": 1 << 16,
          "retrain.batch_size": 1 << 16, "supernet.step_epochs": 10**5, "retrain.step_epochs": 10**5,
          "supernet.warmup_epochs": 10**5, "retrain.warmup_epochs": 10**5, "data.image_size": 2048,
          "data.workers": 256, "pool.samples": 10**4, "pool.epochs": 10**5, "pool.extra_steps": 10**9,
          "proxy.recal_batches": 10**5, "proxy.batch_size": 1 << 16, "proxy.samples": 10**4,
          "search.population": 10**5, "search.parents": 10**5, "search.generations": 10**5,
          "search.random_samples": 10**7, "search.top": 10**4}
MAX_BUDGETS = 64


def check_config_bounds(cfg: dict) -> None:
    """Raises ConfigError when a typed config value lies outside its sensible range."""
    for dotted, upper in _UPPER.items():
        sec, key = dotted.split(".")
        value = cfg[sec][key]
        if value is not None and value > upper:
            raise ConfigError(f"{dotted} must be <= {upper}, got {value}")
    if cfg["pool"]["extra_steps"] < 0:
        raise ConfigError(f"pool.extra_steps must be >= 0 (0: the last pool.epochs epochs), got "
                          f"{cfg['pool']['extra_steps']}")
    vf = cfg["data"]["val_fraction"]
    if vf is not None and not 0 < vf < 1:
        raise ConfigError(f"data.val_fraction must be in (0, 1) or null, got {vf}")
    lr = cfg["pool"]["lr"]
    if lr is not None and not lr > 0:
        raise ConfigError(f"pool.lr must be > 0 or null (supernet.min_lr), got {lr}")
    budgets = cfg["search"]["budgets"]
    if isinstance(budgets, list) and len(budgets) > MAX_BUDGETS:  # none is checked with the latency budgets
        raise ConfigError(f"search.budgets must list at most {MAX_BUDGETS} budgets, got {len(budgets)}")
    latency = cfg["search"].get("latency_budgets")
    if isinstance(latency, list) and len(latency) > MAX_BUDGETS:
        raise ConfigError(f"search.latency_budgets must list at most {MAX_BUDGETS} budgets, got {len(latency)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", cfg["device"]):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {reprlib.repr(cfg['device'])}")
