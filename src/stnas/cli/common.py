"""Argument types and formatting shared by the subcommands."""

from __future__ import annotations

import argparse
import os
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


NAME_MAX, PATH_MAX = 255, 4096  # bytes of a file name and of a path (Linux; macOS is stricter on paths)
PATH_ROOM = 256  # bytes kept for the names stnas adds below a path it is given (run layout, temp files)


def path_arg(text: str) -> str:
    """argparse type for a file or directory argument: one the system could hold, with room
    for what stnas writes below it (a name of at most NAME_MAX bytes, a path of at most
    PATH_MAX - PATH_ROOM, no NUL byte). The text is returned as given."""
    shown = _shown(text)
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{shown!r} holds a NUL byte, which no path may")
    longest = max((len(os.fsencode(part)) for part in Path(text).parts), default=0)
    if longest > NAME_MAX:
        raise argparse.ArgumentTypeError(f"{shown!r} holds a name of {longest} bytes; a file name may have "
                                         f"at most {NAME_MAX}")
    size = len(os.fsencode(os.path.abspath(text)))
    if size > PATH_MAX - PATH_ROOM:
        raise argparse.ArgumentTypeError(f"{shown!r} is a path of {size} bytes; stnas takes at most "
                                         f"{PATH_MAX - PATH_ROOM} (the system's {PATH_MAX} less room for its files)")
    return text


def out_arg(text: str) -> str:
    """argparse type for an output path: a :func:`path_arg` below no file (its nearest existing
    parent is a directory). Whether the path itself may exist is the command's to judge."""
    path_arg(text)
    for parent in Path(text).absolute().parents:
        if os.path.lexists(parent):
            if not os.path.isdir(parent):
                raise argparse.ArgumentTypeError(f"{_shown(text)!r} lies below {_shown(str(parent))}, which is a "
                                                 f"file, not a directory")
            break
    return text


def _shown(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:40]}...{text[-12:]}"


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
    p.add_argument("--out", type=out_arg, help="run directory (default runs/<name>-<time>)")
    if checkpoint:
        p.add_argument("--resume", nargs="?", type=path_arg, const=True, default=False, metavar="CHECKPOINT",
                       help="continue the run in --out from its latest checkpoint (or from CHECKPOINT)")
    else:
        p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--config", type=path_arg, metavar="FILE.yaml", help="a YAML file with any config sections "
                   "(preset, seed, device, data, supernet, sgld, pool, proxy, search, retrain)")
    p.add_argument("--seed", type=seed_arg, help="random seed (config: seed)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (config: device)")
    p.add_argument("--data-root", type=path_arg, help="where to look for the dataset first (config: data.root)")
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


def show_plan(cfg: dict, stages: tuple[str, ...], *, dry_run: bool = False, space=None, **kw) -> bool:
    """Prints the plan of a step (``stnas.pipeline.plan.plan_for``): for ``--dry-run`` on stdout,
    writing nothing (not even the calibration cache); else on stderr before the work, in the
    main process, unless STNAS_PLAN=off. Returns ``dry_run``."""
    import os
    import sys

    from stnas.pipeline import plan

    if not dry_run and (not plan.wanted() or os.environ.get("RANK", "0") != "0"):
        return False
    from stnas.core.dist import resolve_device
    from stnas.space.catalog import load_space

    found = plan.plan_for(cfg, space or load_space(cfg["preset"]), stages, resolve_device(cfg["device"]),
                          write_cache=not dry_run, log=None if dry_run else lambda m: print(m, file=sys.stderr), **kw)
    print(plan.plan_text(found), file=sys.stdout if dry_run else sys.stderr, flush=True)
    return dry_run


def in_process_group(cfg: dict, fn):
    """Runs ``fn(ctx)`` inside the process's distributed context; returns (ctx, result)."""
    from stnas.core import dist

    ctx = dist.setup(cfg["device"])
    try:
        return ctx, fn(ctx)
    finally:
        dist.teardown()
