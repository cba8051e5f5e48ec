"""Argument types and formatting shared by the subcommands."""

from __future__ import annotations

import argparse
import re

_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}


def count(text: str) -> int:
    """Parses counts such as 300M, 3.5M, 800k, 1200000."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (examples: 300M, 3.5M, 800k, 1200000)")
    return int(round(float(m.group(1)) * _SUFFIX[m.group(2)]))


def count_list(text: str) -> list[int]:
    """Comma-separated counts: 3M,6M."""
    return [count(t) for t in str(text).split(",") if t.strip()] or [count(text)]


def table(rows: list[list], header: list[str] | None = None) -> str:
    """A plain text table with right-aligned numbers."""
    rows = [[str(c) for c in r] for r in rows]
    if header:
        rows = [header] + rows
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        cells = [c.rjust(w) if c[:1].isdigit() or c[:1] == "-" and c[1:2].isdigit() else c.ljust(w)
                 for c, w in zip(r, widths)]
        out.append("  ".join(cells).rstrip())
        if header and n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
