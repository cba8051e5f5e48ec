"""``stnas supernet train``: train the weight-sharing supernet and fill the sample pool."""

from __future__ import annotations

from stnas.cli.common import (
    add_run_args,
    choice_help,
    common_flags,
    data_help,
    in_process_group,
    out_dir,
    positive_int,
    resumed_config,
    show_plan,
)
from stnas.core.errors import ConfigError
from stnas.core.rundir import RunDir
from stnas.pipeline.config import resolve
from stnas.train.recipe import OPTIMIZERS


def register(sub) -> None:
    p = sub.add_parser("supernet", help="train the supernet (SGD, then SGD or SGLD sampling)",
                       description="Train the weight-sharing supernet and collect the parameter-sample pool.")
    ss = p.add_subparsers(dest="supernet_command", metavar="ACTION", required=True)
    t = ss.add_parser("train", help="train a supernet into a run directory",
                      description="Each step trains one uniformly sampled architecture (topology and ops). "
                                  "The last pool.epochs epochs are the sampling phase: weights are snapshotted "
                                  "pool.samples times, with SGLD noise when --optimizer sgld. Works under "
                                  "torchrun (gloo on CPU, NCCL on CUDA).")
    t.add_argument("--preset", help="search space: preset name or YAML file (config: preset)")
    t.add_argument("--data", help=data_help())
    t.add_argument("--optimizer", choices=OPTIMIZERS.names(),
                   help=choice_help(OPTIMIZERS, "supernet.optimizer", "optimizer of the sampling phase"))
    t.add_argument("--epochs", type=positive_int(), help="training epochs (config: supernet.epochs)")
    t.add_argument("--batch-size", type=positive_int(), help="per-process batch size (config: supernet.batch_size)")
    t.add_argument("--dry-run", action="store_true", help="print the plan (work, estimated time here) and exit")
    add_run_args(t)
    t.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from stnas.pipeline.supernet import train_supernet

    if args.resume:
        if args.dry_run:
            raise ConfigError("--dry-run plans a new run: drop --resume")
        cfg = resumed_config(args)
    else:
        flags = dict(common_flags(args), **{"supernet.optimizer": args.optimizer, "supernet.epochs": args.epochs,
                                           "supernet.batch_size": args.batch_size})
        cfg = resolve(args.preset, args.config, flags, args.overrides)
    out = out_dir(args, cfg["preset"])
    if not args.resume:
        if not args.dry_run:
            RunDir(out).guard(False)  # an occupied --out is refused before the calibration
        if show_plan(cfg, ("supernet",), dry_run=args.dry_run):
            return 0
    ctx, s = in_process_group(cfg, lambda ctx: train_supernet(cfg, out, resume=args.resume, ctx=ctx))
    if ctx.is_main:
        print(f"supernet: {s['steps']} steps in {s['wall_s']:.0f}s ({s['images_per_s']:.0f} img/s), "
              f"final loss {s.get('loss', float('nan')):.3f}, pool of {s['pool_samples']} samples -> {out}")
    return 0
