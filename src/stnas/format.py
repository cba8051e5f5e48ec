"""Counts as text: the one place that writes MAdds, parameter and budget counts for people
(the reverse, text to a count, is ``stnas.config_checks.parse_count``)."""

from __future__ import annotations


def fmt_count(n: float) -> str:
    """3.1M, 326.4M, 12.0K style."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}" if n / div < 100 else f"{n / div:.1f}{unit}"
    return str(int(n))


def budget_label(n) -> str:
    """A short exact label of a count: 200000 -> 200k, 3500000 -> 3.5M, 1234567 -> 1234567
    (a latency target, ``stnas.latency.Target``: its own label, e.g. 4M+1.2ms)."""
    if hasattr(n, "label"):
        return n.label
    for unit, div in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        whole, rest = divmod(n, div)
        if whole and (rest * 100) % div == 0:
            frac = f"{rest * 100 // div:02d}".rstrip("0")
            return f"{whole}{'.' + frac if frac else ''}{unit}"
    return str(n)
