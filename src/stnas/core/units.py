"""Counts as text: the one place that writes MAdds, parameter, budget and latency counts for
people (the reverse, text to a count, is ``parse_count`` and ``parse_latency``), and the budgets a
network must fit (:class:`Budget`, :func:`parse_budget`)."""

from __future__ import annotations

import math
import re
import reprlib
from dataclasses import dataclass
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


_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d{1,9}(?:\.\d{1,9})?|\.\d{1,9})([hms]))+")


def parse_duration(value: Any, what: str = "time") -> float:
    """``90s``, ``10m``, ``1.5h``, ``1h30m`` -> seconds (a float > 0). Every number needs its
    unit (h, m or s), each unit at most once, largest first."""
    text = value.strip().lower().replace(" ", "") if isinstance(value, str) and len(value) <= 64 else ""
    parts = re.findall(r"(\d{1,9}(?:\.\d{1,9})?|\.\d{1,9})([hms])", text) if _DURATION.fullmatch(text) else []
    units = [u for _, u in parts]
    if not parts or units != sorted(set(units), key="hms".index):
        raise ConfigError(f"{what}: {show(value)} is not a time (examples: 90s, 10m, 1.5h, 1h30m)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if not 0 < seconds <= 10**7:
        raise ConfigError(f"{what}: {show(value)} must be more than 0 s and at most 10^7 s")
    return seconds


def fmt_duration(seconds: float) -> str:
    """Seconds for people: ``45 s``, ``3 min 10 s``, ``1 h 05 min``."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class Budget:
    """What a network must fit: every limit that is set (MAdds; parameters; latency measured on
    this machine, in milliseconds). Text form (:func:`parse_budget`): ``4M``, ``params:300k``,
    ``1.2ms``, or several joined by ``+`` (``4M+1.2ms``: both must hold)."""

    madds: int | None = None
    params: int | None = None
    latency_ms: float | None = None

    @property
    def label(self) -> str:
        parts = [budget_label(self.madds)] if self.madds is not None else []
        parts += [f"params:{budget_label(self.params)}"] if self.params is not None else []
        if self.latency_ms is not None:  # 6 significant digits (as latency targets), no exponent: "+" joins
            ms = self.latency_ms
            value, unit = (ms, "ms") if ms >= 1 else (ms * 1e3, "us")
            text = f"{value:.6g}"
            parts.append((f"{value:.6f}".rstrip("0").rstrip(".") if "e" in text else text) + unit)
        return "+".join(parts)

    def to_json(self) -> dict:
        return {"madds": self.madds, "params": self.params, "latency_ms": self.latency_ms, "label": self.label}


def parse_budget(value: Any, what: str = "budget") -> Budget:
    """A :class:`Budget` from its text form (or a count: MAdds).

    Raises:
        ConfigError: not a budget, or a kind given twice.
    """
    if is_number(value):
        return Budget(madds=parse_count(value, what))
    text = str(value)[:200]
    found: dict[str, Any] = {}
    for term in text.split("+"):
        term = term.strip()
        if term.lower().startswith("params:"):
            kind, v = "params", parse_count(term[7:], f"{what} {text!r}")
        elif re.fullmatch(r"[0-9.eE+-]+\s*(ms|us|µs|s)", term):
            kind, v = "latency_ms", parse_latency(term, f"{what} {text!r}")
        else:
            if not term or not re.fullmatch(r"[0-9.]+\s*[kKmMgG]?", term):
                raise ConfigError(f"{what}: {text!r} is not a budget (examples: 4M for MAdds, params:300k, 1.2ms, "
                                  f"4M+1.2ms)")
            kind, v = "madds", parse_count(term, f"{what} {text!r}")
        if kind in found:
            raise ConfigError(f"{what}: {text!r} sets the {kind.split('_')[0]} limit twice")
        found[kind] = v
    return Budget(**found)
