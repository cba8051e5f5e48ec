"""``stnas run``: the whole pipeline, with a report."""

from __future__ import annotations

import sys
import time

from stnas.cli.common import (
    add_run_args,
    choice_help,
    common_flags,
    count_list,
    data_help,
    in_process_group,
    out_dir,
    positive_int,
    resumed_config,
)
from stnas.cli.latency import add_latency_args, latency_flags
from stnas.core.errors import ConfigError
from stnas.pipeline.config import resolve
from stnas.proxy.modes import PROXY_MODES
from stnas.train.recipe import OPTIMIZERS


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="the whole pipeline: supernet -> SGLD samples -> search -> retrain -> baselines -> report",
        description="Train the supernet (SGD, then an SGD or SGLD sampling phase), score architectures with the "
                    "stabilized proxy in an evolutionary search under each MAdds budget, retrain the best per "
                    "budget from scratch, train standard networks that fit the same budgets the same way (where "
                    "that is cheap; see --no-baselines), and write report.md / report.json / plots. With no "
                    "arguments: the "
                    "embedded default (Fashion-MNIST if found, else scikit-learn's digits).")
    p.add_argument("--preset", help="search space and recipes: preset name or YAML file (default for a folder or "
                                    ".npz: a space derived from the data and budget; see stnas space show --data)")
    p.add_argument("--data", help=data_help())
    p.add_argument("--optimizer", choices=OPTIMIZERS.names(),
                   help=choice_help(OPTIMIZERS, "supernet.optimizer", "sampling-phase optimizer"))
    p.add_argument("--epochs", type=positive_int(), help="supernet epochs (config: supernet.epochs)")
    p.add_argument("--budget", type=count_list,
                   help="MAdds budget(s), comma-separated, e.g. 3M,5M (config: search.budgets)")
    p.add_argument("--mode", choices=PROXY_MODES.names(), help=choice_help(PROXY_MODES, "proxy.mode"))
    p.add_argument("--time", metavar="TIME", help="time budget, e.g. 10m, 1.5h, 1h30m: the baselines stage, when on by "
                   "default, is turned off if it does not fit; then supernet epochs, pool, search generations and "
                   "retraining epochs are scaled down to fit it on this machine, by the rule in "
                   "stnas.pipeline.budget (config: run.time_budget)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (stages, their work and estimated time here) and exit, writing nothing")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=None,
                   help="skip the baselines stage (standard networks trained as the picks are; by default on where "
                        "retraining is small and a --time budget has room for it: see stnas baselines --help) "
                        "(config: baselines.enabled)")
    add_latency_args(p)
    add_run_args(p, checkpoint=False)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    begun = time.perf_counter()  # a time budget counts from here, the imports included
    from stnas.pipeline.run import embedded_default, run_pipeline

    if args.resume:
        if args.time is not None:
            raise ConfigError("a resumed run keeps the plan it started with; drop --time")
        cfg = resumed_config(args)
    else:
        preset = args.preset
        if preset is None and args.config is None and args.data is None:
            preset, notice = embedded_default()
            if notice:
                print(notice, file=sys.stderr)
        flags = dict(common_flags(args), **{"preset": preset, "supernet.optimizer": args.optimizer,
                                           "supernet.epochs": args.epochs, "search.budgets": args.budget,
                                           "proxy.mode": args.mode, "run.time_budget": args.time,
                                           "baselines.enabled": args.baselines,
                                           **latency_flags(args)})
        cfg = resolve(preset, args.config, flags, args.overrides)
    out = out_dir(args, cfg["preset"])
    if args.dry_run:
        from stnas.pipeline.plan import dry_run

        print(dry_run(cfg, out if args.resume else None))
        return 0
    ctx, report = in_process_group(cfg, lambda ctx: run_pipeline(cfg, out, resume=args.resume, ctx=ctx, begun=begun))
    if ctx.is_main:
        print(f"\nreport: {out / 'report.md'}")
        for c in report.get("chosen", []):
            card = c.get("model_card") or {}
            label = c.get("target") or f"{c['budget'] / 1e6:g}M"
            lat = card.get("latency")
            lat_text = (f"  latency {lat['predicted_ms']:.3f} ms predicted, {lat['measured_ms']:.3f} ms measured"
                        if lat else "")
            kept = c.get("latency_kept")
            if kept:
                lat_text += (f" (budget {kept['budget_ms']:.3f} ms, margin {kept['margin']:.1%}, "
                             f"{kept['measured']} candidate(s) measured)")
            print(f"  budget {label}: {c['arch']}  MAdds {c['madds'] / 1e6:.2f}M  "
                  f"proxy {c['score']:.4f} ± {c['std']:.4f}  test top-1 {card.get('top1', float('nan')):.4f}{lat_text}")
    return 0
