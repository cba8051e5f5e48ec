"""Argument types and formatting shared by the subcommands."""

from __future__ import annotations

import argparse

from stnas.config import parse_count
from stnas.errors import ConfigError

def count(text: str) -> int:
    """argparse type for counts such as 300M, 3.5M, 800k, 1200000."""
    try:
        return parse_count(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def count_list(text: str) -> list[int]:
    """argparse type for comma-separated counts: 3M,6M."""
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
