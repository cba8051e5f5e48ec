"""``stnas latency``: build, inspect and use latency lookup tables of this machine."""

from __future__ import annotations

import argparse

from stnas.cli.common import choice_help, out_arg, path_arg
from stnas.cli.common import table as text_table
from stnas.core.errors import ConfigError
from stnas.latency.table import LATENCY_DEVICES, LATENCY_RUNTIMES
from stnas.pipeline.config import DEFAULTS


def latency_list(text: str) -> list[str]:
    """argparse type for comma-separated latencies with units: 1.2ms,800us."""
    from stnas.core.units import parse_latency

    try:
        return [f"{parse_latency(t)!r}ms" for t in str(text).split(",")]
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def add_latency_args(p) -> None:
    """--latency-budget (repeatable, comma-separated) and --latency-table, for search and run."""
    p.add_argument("--latency-budget", type=latency_list, action="append", metavar="T[,T...]",
                   help="predicted-latency budget(s) on this machine, e.g. 1.2ms (config: search.latency_budgets); "
                        "without --budget the search is under latency alone")
    p.add_argument("--latency-table", type=path_arg, metavar="FILE",
                   help="a table from `stnas latency build` (default: the cache, built when missing; "
                        "config: latency.table)")


def latency_flags(args) -> dict:
    """The config keys set by add_latency_args' flags (latency alone drops the MAdds budgets)."""
    flags = {"latency.table": args.latency_table}
    if args.latency_budget:
        flags["search.latency_budgets"] = [t for group in args.latency_budget for t in group]
        if args.budget is None:
            flags["search.budgets"] = []
    return flags


def register(sub) -> None:
    p = sub.add_parser("latency", help="measure latency lookup tables on this machine, predict latency",
                       description="Measure every distinct module a search space can place on this machine "
                                   "(PyTorch eager or ONNX Runtime, CPU or CUDA) into a versioned lookup table, "
                                   "and predict network latency from it.")
    ss = p.add_subparsers(dest="latency_command", metavar="ACTION", required=True)
    d = DEFAULTS["latency"]
    b = ss.add_parser("build", help="measure the table of a space (cached for later searches)")
    b.add_argument("space", metavar="PRESET|FILE", help="a preset or a space YAML file")
    b.add_argument("--runtime", choices=LATENCY_RUNTIMES.names(), default=d["runtime"],
                   help=choice_help(LATENCY_RUNTIMES, "latency.runtime"))
    b.add_argument("--device", choices=LATENCY_DEVICES.names(), default=d["device"],
                   help=choice_help(LATENCY_DEVICES, "latency.device"))
    b.add_argument("--batch", type=int, default=d["batch"])
    b.add_argument("--threads", type=int, default=d["threads"])
    b.add_argument("--warmup", type=int, default=d["warmup"], help="untimed calls per module and round")
    b.add_argument("--repeats", type=int, default=d["repeats"], help="timed calls per module (over all rounds)")
    b.add_argument("--rounds", type=int, default=d["rounds"], help="rounds over all modules")
    b.add_argument("--fit-networks", type=int, default=d["fit_networks"],
                   help="whole networks measured to fit the per-network overhead")
    b.add_argument("--out", type=out_arg, metavar="FILE",
                   help="where to write it (default: the cache, $STNAS_CACHE/latency)")
    b.add_argument("--force", action="store_true", help="measure again even when the table exists")
    b.set_defaults(func=cmd_build)
    s = ss.add_parser("show", help="what a table holds: device, runtime, modules, overhead fit")
    s.add_argument("table", type=path_arg, metavar="FILE")
    s.set_defaults(func=cmd_show)
    q = ss.add_parser("predict", help="predicted latency of architectures from a table")
    q.add_argument("table", type=path_arg, metavar="FILE")
    q.add_argument("archs", nargs="+", metavar="ARCH", help="architecture strings or JSON files")
    q.set_defaults(func=cmd_predict)


def cmd_build(args) -> int:
    from pathlib import Path

    from stnas.core.errors import LatencyTableError
    from stnas.core.rundir import check_same_inputs
    from stnas.latency import table as lat
    from stnas.latency.measure import build_table, want_identity
    from stnas.pipeline.checks import check_latency_section
    from stnas.space.catalog import load_space

    settings = {**DEFAULTS["latency"], "runtime": args.runtime, "device": args.device, "batch": args.batch,
                "threads": args.threads, "table": None, "measure": False, "warmup": args.warmup,
                "repeats": args.repeats, "rounds": args.rounds, "fit_networks": args.fit_networks}
    check_latency_section(settings)
    space = load_space(args.space)
    want = want_identity(space, settings)
    out = Path(args.out) if args.out else lat.cache_path(space, want["device"], want["runtime"], args.batch,
                                                         args.threads)
    if out.exists():  # never replace another device's, runtime's or space's table
        old = lat.load_table(out)
        check_same_inputs(out, "a latency table", {k: old.get(k) for k in want}, want,
                          "build into another --out, or remove it to measure again", error=LatencyTableError)
        if not args.force:
            print(f"{out} is up to date ({lat.describe(old)}); --force measures again")
            return 0
    table = build_table(space, args.runtime, args.device, args.batch, args.threads, args.warmup, args.repeats,
                        args.rounds, args.fit_networks, log=print)
    lat.save_table(table, out)
    _print_fit(table, space)
    print(f"table: {out}")
    return 0


def _print_fit(table: dict, space) -> None:
    from stnas.latency.table import Predictor
    from stnas.space.catalog import load_arch

    pred = Predictor(table, space)
    rows = []
    for n in table["overhead"]["networks"]:
        p = pred(load_arch(n["arch"], space))
        rows.append([n["arch"], f"{n['measured_ms']:.4f}", f"{p:.4f}", f"{100 * (p / n['measured_ms'] - 1):+.1f}%"])
    if rows:
        print(text_table(rows, ["fit network", "measured ms", "predicted ms", "error"]))


def cmd_show(args) -> int:
    from stnas.latency import table as lat
    from stnas.space.catalog import list_presets, load_space

    t = lat.load_table(args.table)
    ov = t["overhead"]
    print(f"{args.table}: space {t['space']} ({t['space_fingerprint']}), {len(t['entries'])} modules")
    print(f"device  {lat.describe(t)}")
    print(f"runtime {t['runtime']}")
    print(f"overhead: {ov['const_ms']:+.4f} ms {ov['per_module_ms']:+.4f} ms/module, scale {ov['scale']:.3f} "
          f"(fitted on {len(ov.get('networks', []))} networks); created {t.get('created', '?')}")
    if t["space"] in list_presets():  # a YAML space's fit needs its file: `stnas latency predict`
        space = load_space(t["space"])
        if space.fingerprint == t["space_fingerprint"]:
            _print_fit(t, space)
    return 0


def cmd_predict(args) -> int:
    from stnas.core.units import fmt_count
    from stnas.latency import table as lat
    from stnas.space.catalog import load_arch

    t = lat.load_table(args.table)
    rows = []
    pred = None
    for a in args.archs:
        arch = load_arch(a)
        if pred is None or pred.space.fingerprint != arch.space.fingerprint:
            pred = lat.Predictor(t, arch.space)
        rows.append([str(arch), fmt_count(arch.madds), f"{pred(arch):.4f}"])
    print(f"on {lat.describe(t)}")
    print(text_table(rows, ["architecture", "MAdds", "predicted ms"]))
    return 0
