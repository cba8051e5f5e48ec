"""Stratified splits of labelled samples (read by ``stnas.data.datasets`` and ``stnas.data.userdata``)."""

from __future__ import annotations

import numpy as np

from stnas.core.errors import ConfigError


def stratified_split(targets, val, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split positions ``0..len(targets)-1`` into (train, val), stratified by class.

    Args:
        targets: class label per sample.
        val: a float in (0, 1) (share of each class, rounded) or an int >= 1 (count per class).
        seed: the split is a pure function of (targets, val, seed).

    Returns:
        Sorted index arrays; disjoint, their union is every position.
    """
    y = np.asarray(targets)
    frac = isinstance(val, float)
    if (frac and not 0 < val < 1) or (not frac and (not isinstance(val, (int, np.integer)) or val < 1)):
        raise ConfigError(f"val_fraction must be a float in (0, 1) or an int count per class, got {val!r}")
    rng = np.random.default_rng([seed, 0])
    val_idx = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        n = max(1, int(np.floor(val * len(members) + 0.5))) if frac else int(val)
        if n >= len(members):
            raise ConfigError(f"class {c} has {len(members)} images, cannot hold out {n}; lower val_fraction")
        val_idx.append(rng.permutation(members)[:n])
    v = np.sort(np.concatenate(val_idx))
    return np.setdiff1d(np.arange(len(y)), v), v


def stratified_subset(targets, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``n`` samples with class shares as in ``targets`` (nested in ``n``)."""
    y = np.asarray(targets)
    rng = np.random.default_rng([seed, 1])
    key = np.empty(len(y))
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        key[members] = (np.arange(len(members)) + 0.5) / len(members)  # quantile within class
    return np.sort(np.argsort(key, kind="stable")[:n])
