"""``stnas supernet train``: train the weight-sharing supernet and fill the sample pool."""

from __future__ import annotations

import time
from pathlib import Path

from stnas.config import load_run_config, resolve


def add_config_args(p) -> None:
    """--config FILE and trailing key=value overrides (shared by the pipeline commands)."""
    p.add_argument("--config", metavar="FILE.yaml", help="a YAML file with any config sections "
                   "(preset, seed, device, data, supernet, sgld, pool, ...)")
    p.add_argument("--seed", type=int, help="random seed (config: seed)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (config: device)")
    p.add_argument("--data-root", help="where to look for the dataset first (config: data.root)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides with dotted keys, e.g. supernet.lr=0.05 pool.samples=4")


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
    t.add_argument("--data", help="dataset: digits, fashion-mnist, cifar10, cifar100, imagenet (config: data.dataset)")
    t.add_argument("--optimizer", choices=["sgd", "sgld"], help="optimizer of the sampling phase (config: supernet.optimizer)")
    t.add_argument("--epochs", type=int, help="training epochs (config: supernet.epochs)")
    t.add_argument("--batch-size", type=int, help="per-process batch size (config: supernet.batch_size)")
    t.add_argument("--out", help="run directory (default runs/<preset>-<time>)")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                   help="continue the run in --out from its latest checkpoint (or from CHECKPOINT)")
    add_config_args(t)
    t.set_defaults(func=cmd_train)


def flags_of(args) -> dict:
    return {"preset": args.preset, "data.dataset": getattr(args, "data", None), "seed": args.seed,
            "device": args.device, "data.root": args.data_root,
            "supernet.optimizer": getattr(args, "optimizer", None), "supernet.epochs": getattr(args, "epochs", None),
            "supernet.batch_size": getattr(args, "batch_size", None)}


def default_out(preset: str) -> Path:
    return Path("runs") / f"{Path(preset).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args) -> int:
    from stnas import dist
    from stnas.config import ConfigError
    from stnas.supernet_train import train_supernet

    if args.resume and not args.out:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    if args.resume:
        cfg = load_run_config(args.out)
        if args.overrides or args.config:
            raise ConfigError("a resumed run keeps its saved config; drop --config and overrides")
    else:
        cfg = resolve(args.preset, args.config, flags_of(args), args.overrides)
    out = Path(args.out) if args.out else default_out(cfg["preset"])
    ctx = dist.setup(cfg["device"])
    try:
        s = train_supernet(cfg, out, resume=args.resume, ctx=ctx)
    finally:
        dist.teardown()
    if ctx.is_main:
        print(f"supernet: {s['steps']} steps in {s['wall_s']:.0f}s ({s['images_per_s']:.0f} img/s), "
              f"final loss {s.get('loss', float('nan')):.3f}, pool of {s['pool_samples']} samples -> {out}")
    return 0
