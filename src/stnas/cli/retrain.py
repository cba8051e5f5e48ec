"""``stnas retrain``: train an architecture from scratch, test it, write its model card."""

from __future__ import annotations

from stnas.cli.common import (
    add_run_args,
    common_flags,
    data_help,
    in_process_group,
    out_dir,
    positive_int,
    resumed_config,
    show_plan,
)


def register(sub) -> None:
    p = sub.add_parser("retrain", help="train an architecture from scratch and report test accuracy",
                       description="Train build_model(ARCH) from scratch with the preset's retrain recipe on the "
                                   "whole train split (retrain.limit: a stratified subset), evaluate on the test "
                                   "split, and write the model (safetensors + ONNX) and model_card.json. "
                                   "Checkpoints, --resume and torchrun work as for the supernet.")
    p.add_argument("--arch", metavar="FILE|STRING",
                   help="architecture JSON file or string SPACE:STEM/BRANCHES (not needed with --resume)")
    p.add_argument("--preset", help="the architecture's space: preset name or YAML file "
                                    "(default: the space the architecture names)")
    p.add_argument("--data", help=data_help())
    p.add_argument("--epochs", type=positive_int(), help="training epochs (config: retrain.epochs)")
    p.add_argument("--batch-size", type=positive_int(), help="per-process batch size (config: retrain.batch_size)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (work, estimated time here) and exit")
    add_run_args(p)
    p.set_defaults(func=cmd_retrain)


def cmd_retrain(args) -> int:
    from stnas.core.errors import ConfigError
    from stnas.core.rundir import RunDir
    from stnas.pipeline.config import resolve
    from stnas.pipeline.retrain import retrain, run_arch
    from stnas.space.catalog import load_arch

    if args.resume:
        if args.dry_run:
            raise ConfigError("--dry-run plans a new run: drop --resume")
        cfg = resumed_config(args)
        arch = run_arch(args.out)
        if args.arch and load_arch(args.arch, arch.space) != arch:
            raise ConfigError(f"{args.out} retrains {arch}, not {args.arch}; drop --arch to resume it")
    else:
        if not args.arch:
            raise ConfigError("give the architecture to train: --arch FILE|STRING")
        arch = load_arch(args.arch, args.preset)
        flags = dict(common_flags(args), **{"preset": args.preset or arch.space.name, "retrain.epochs": args.epochs,
                                           "retrain.batch_size": args.batch_size})
        cfg = resolve(None, args.config, flags, args.overrides)
    out = out_dir(args, f"retrain-{arch.space.name}")
    if not args.resume:
        if not args.dry_run:
            RunDir(out).guard(False)  # an occupied --out is refused before the calibration
        if show_plan(cfg, ("retrain",), dry_run=args.dry_run, space=arch.space, archs=[arch]):
            return 0
    ctx, card = in_process_group(cfg, lambda ctx: retrain(arch, cfg, out, resume=args.resume, ctx=ctx))
    if ctx.is_main:
        print(f"retrain: {arch} top-1 {card['top1']:.4f} top-5 {card['top5']:.4f} on {card['test_images']} "
              f"{card['dataset']} test images; {card['steps']} steps in {card['wall_s']:.0f}s "
              f"({card['images_per_s']:.0f} img/s) -> {out / 'model_card.json'}")
    return 0
