"""Argument types and formatting shared by the subcommands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from stnas.core.errors import ConfigError
from stnas.core.registry import Registry
from stnas.core.units import parse_count
from stnas.data.catalog import DATASETS
from stnas.data.userdata import path_formats
from stnas.pipeline.config import load_run_config


def data_help() -> str:
    """--data's help: the named datasets and the data formats a path can name (the registries)."""
    return f"dataset: {', '.join(DATASETS.names())}, {' or '.join(path_formats())} (config: data.dataset)"


def choice_help(registry: Registry, key: str, what: str | None = None) -> str:
    """A choice flag's help: what it chooses, every entry with its help, its config key."""
    return f"{what or registry.what}: {registry.help()} (config: {key})"


def count(text: str) -> int:
    """argparse type for counts such as 300M, 3.5M, 800k, 1200000."""
    try:
        return parse_count(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def seed_arg(text: str) -> int:
    """argparse type for seeds: an integer from 0 to 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be from 0 to 2**63 - 1, got {text[:40]}")
    return value


def positive_int(limit: int = 10**6):
    """argparse type for an integer from 1 to ``limit``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be from 1 to {limit}, got {text[:40]}")
        return value
    parse.__name__ = "positive integer"
    return parse


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


# ------------------------------------------------------------------ run commands
def add_run_args(p, *, checkpoint: bool = True) -> None:
    """--out, --resume, --config, --seed, --device, --data-root and KEY=VALUE overrides,
    shared by the commands that make a run directory."""
    p.add_argument("--out", help="run directory (default runs/<name>-<time>)")
    if checkpoint:
        p.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                       help="continue the run in --out from its latest checkpoint (or from CHECKPOINT)")
    else:
        p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file with any config sections "
                   "(preset, seed, device, data, supernet, sgld, pool, proxy, search, retrain)")
    p.add_argument("--seed", type=seed_arg, help="random seed (config: seed)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (config: device)")
    p.add_argument("--data-root", help="where to look for the dataset first (config: data.root)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. supernet.lr=0.05 pool.samples=4")


def common_flags(args) -> dict:
    """The config keys set by add_run_args' flags and the usual --preset/--data."""
    return {"preset": getattr(args, "preset", None), "data.dataset": getattr(args, "data", None),
            "seed": args.seed, "device": args.device, "data.root": args.data_root}


def resumed_config(args) -> dict:
    """The saved config of the run in --out, for --resume (which takes no new settings)."""
    if not args.out:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    if args.overrides or args.config:
        raise ConfigError("a resumed run keeps its saved config; drop --config and overrides")
    return load_run_config(args.out)


def out_dir(args, name: str) -> Path:
    """--out, or runs/<name>-<time>."""
    return Path(args.out) if args.out else Path("runs") / f"{Path(name).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def in_process_group(cfg: dict, fn):
    """Runs ``fn(ctx)`` inside the process's distributed context; returns (ctx, result)."""
    from stnas.core import dist

    ctx = dist.setup(cfg["device"])
    try:
        return ctx, fn(ctx)
    finally:
        dist.teardown()
