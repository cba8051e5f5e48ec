"""The ``stnas`` command line. Each module of this package adds one subcommand group
through ``register(subparsers)``; ``main`` turns bad input into one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from stnas.core.alloc import warm_allocator
from stnas.core.errors import StnasError, first_line

# subcommand modules, in the order --help lists them (the pipeline's order)
COMMANDS = ["space", "arch", "supernet", "search", "export", "retrain", "baselines", "predict", "run", "rank",
            "latency"]
ERROR_LINE = 1000  # characters of an error message shown (messages may quote the bad input)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from stnas.core import __version__

    parser = ArgumentParser(
        prog="stnas",
        description="One-shot topological NAS with a stabilized (SGLD-sampled) share-parameter proxy.",
    )
    parser.add_argument("--version", action="version", version=f"stnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"stnas.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warm_allocator()  # before any tensor: blocks are reused, not mapped anew (stnas.core.alloc)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come anywhere after the subcommand (argparse takes positionals
    # only in one run)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = list(args.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        rc = args.func(args)
    except StnasError as exc:
        print(f"stnas: error: {first_line(exc, limit=ERROR_LINE)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stnas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `stnas space sample ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
