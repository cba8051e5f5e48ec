"""Bounds on untrusted input: nesting depth and size of parsed YAML/JSON, integer range,
the sensible range of config values.

A YAML alias bomb is a small text whose parsed tree, counted with every alias expanded, is
huge; :func:`check_tree` counts nodes that way and stops at the bound, so it never walks
more than ``max_nodes`` nodes itself.
"""

from __future__ import annotations

from typing import Any

from stnas.core.errors import ConfigError, StnasError

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


def check_sgld_settings(lr: float = 0.0, momentum: float = 0.0, weight_decay: float = 0.0, temperature: float = 1.0,
                        noise_scale: float | None = None) -> None:
    """The SGLD sampler's value checks (``stnas.train.sgld.SGLD`` runs them too), torch-free so that
    a run's config is checked with them before any training."""
    if not lr >= 0.0:
        raise ConfigError(f"SGLD: lr must be >= 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"SGLD: momentum must be in [0, 1), got {momentum}")
    if not weight_decay >= 0.0:
        raise ConfigError(f"SGLD: weight_decay must be >= 0, got {weight_decay}")
    if not temperature >= 0.0:
        raise ConfigError(f"SGLD: temperature must be >= 0, got {temperature}")
    if noise_scale is not None and not noise_scale >= 0.0:
        raise ConfigError(f"SGLD: noise_scale must be >= 0, got {noise_scale}")
