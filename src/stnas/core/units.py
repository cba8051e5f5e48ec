"""Counts as text: the one place that writes MAdds, parameter, budget and latency counts for
people (the reverse, text to a count, is ``parse_count`` and ``parse_latency``)."""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

from stnas.core.errors import ConfigError
from stnas.core.limits import MAX_INT


def fmt_count(n: float) -> str:
    """3.1M, 326.4M, 12.0K style."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}" if n / div < 100 else f"{n / div:.1f}{unit}"
    return str(int(n))


def budget_label(n) -> str:
    """A short exact label of a count: 200000 -> 200k, 3500000 -> 3.5M, 1234567 -> 1234567
    (a search target, ``stnas.search.targets.Target``: its own label, e.g. 4M+1.2ms)."""
    if hasattr(n, "label"):
        return n.label
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        whole, rest = divmod(n, div)
        if whole and (rest * 100) % div == 0:
            frac = f"{rest * 100 // div:02d}".rstrip("0")
            return f"{whole}{'.' + frac if frac else ''}{unit}"
    return str(n)


def latency_label(ms: float) -> str:
    """1.2 -> '1.2ms', 0.8 -> '800us' (6 significant digits: folder names of budgets)."""
    return f"{ms:.6g}ms" if ms >= 1 else f"{ms * 1e3:.6g}us"


def show(value: Any) -> str:
    """A value, shortened for an error message."""
    return reprlib.repr(value)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool), ints within 64 bits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value)


_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}


def parse_count(value: Any, what: str = "count") -> int:
    """300M, 3.5M, 800k, 1200000 (or an int) -> int, in [1, 2**63)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and is_number(value) and value >= 1:
        number = value
    else:
        m = re.fullmatch(r"\s*([0-9]{0,30}\.?[0-9]{1,30})\s*([kKmMgG]?)\s*", str(value)[:80])
        number = float(m.group(1)) * _SUFFIX[m.group(2)] if m else 0
    if not 1 <= number <= MAX_INT:
        raise ConfigError(f"{what}: {show(value)} is not a count from 1 to 2**63 - 1 (examples: 300M, 3.5M, "
                          f"800k, 1200000)")
    return int(round(number))


_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def parse_latency(value: Any, what: str = "latency budget") -> float:
    """``1.2ms``, ``800us``, ``0.5s`` -> milliseconds. A unit is required; the value must be
    finite and > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)\s*", str(value))
    if not m:
        raise ConfigError(f"{what}: {value!r} is not a latency with a unit (examples: 1.2ms, 800us, 0.5s)")
    ms = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(ms) and ms > 0):
        raise ConfigError(f"{what}: {value!r} must be a finite latency > 0 (examples: 1.2ms, 800us)")
    return ms
