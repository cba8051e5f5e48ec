"""``stnas baselines``: standard networks (torchvision) that fit each budget, trained and
evaluated as stnas retrains its picks (stnas.pipeline.baselines)."""

from __future__ import annotations

from stnas.cli.common import (
    add_run_args,
    common_flags,
    in_process_group,
    out_dir,
    positive_int,
    resumed_config,
    show_plan,
)
from stnas.nn.baselines import BASELINES, FORMS, SMALL_INPUT


def _items(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def register(sub) -> None:
    p = sub.add_parser(
        "baselines", help="train the standard networks that fit each budget, as stnas retrains its picks",
        description="For each budget, train every configured torchvision network that fits it from scratch with the "
                    "retrain recipe, data and seeds of stnas's retraining, recalibrate its BN statistics, test it, "
                    "measure its latency here, and write one table per budget (report.md, report.json, "
                    "baselines/baselines.json) and a plot. Forms: defined (torchvision's network, its first "
                    f"convolution built for the data's channels) and adapted (stem stride 1 up to {SMALL_INPUT} px, "
                    "the largest width multiplier that fits). `stnas run` runs the same stage after retraining.")
    p.add_argument("--data", help="dataset: digits, fashion-mnist, cifar10, cifar100, imagenet, an image folder "
                   "(ImageFolder layout) or an .npz file (config: data.dataset)")
    p.add_argument("--budget", help="budget(s), comma-separated: 4M (MAdds), params:300k, 1.2ms (latency measured "
                                    "here), 4M+1.2ms (all must hold) (config: baselines.budgets)")
    p.add_argument("--preset", help="whose recipe (retrain section) to train with: preset name or YAML file "
                                    "(default: the data's preset; a folder or .npz: the space derived from it)")
    p.add_argument("--family", metavar="NAME[,NAME]", help="baseline networks (config: baselines.families; default "
                   f"all): {', '.join(BASELINES.names())}")
    p.add_argument("--form", metavar="FORM[,FORM]", help=f"{' and/or '.join(FORMS)} (config: baselines.forms)")
    p.add_argument("--seeds", type=positive_int(1000), help="trainings per network, seeds seed, seed+1, ... "
                                                            "(config: baselines.seeds)")
    p.add_argument("--epochs", type=positive_int(), help="training epochs (config: retrain.epochs)")
    p.add_argument("--batch-size", type=positive_int(), help="per-process batch size (config: retrain.batch_size)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (trainings, estimated time here) and exit, "
                                                          "writing nothing")
    add_run_args(p, checkpoint=False)
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    from stnas.core.errors import ConfigError
    from stnas.core.rundir import RunDir
    from stnas.pipeline.baselines import preset_for, run_baselines_dir, standalone_budgets
    from stnas.pipeline.config import resolve

    if args.resume:
        if args.dry_run:
            raise ConfigError("--dry-run plans a new run: drop --resume")
        cfg = resumed_config(args)
    else:
        if not args.data and not args.config:
            raise ConfigError("give the data: --data digits|fashion-mnist|cifar10|cifar100|imagenet|FOLDER|FILE.npz")
        flags = dict(common_flags(args), **{"baselines.budgets": _items(args.budget),
                                           "baselines.families": _items(args.family),
                                           "baselines.forms": _items(args.form), "baselines.seeds": args.seeds,
                                           "retrain.epochs": args.epochs, "retrain.batch_size": args.batch_size})
        preset = args.preset or (preset_for(args.data) if args.data else None)
        cfg = resolve(preset, args.config, flags, args.overrides)
    out = out_dir(args, "baselines")
    if not args.resume:
        standalone_budgets(cfg)  # none given: one line before the calibration
        if not args.dry_run:
            RunDir(out).guard(False)  # an occupied --out is refused before the calibration
        if show_plan(cfg, ("baselines",), dry_run=args.dry_run, sizes={"standalone": True}):
            return 0
    ctx, table = in_process_group(cfg, lambda ctx: run_baselines_dir(cfg, out, resume=args.resume, ctx=ctx))
    if ctx.is_main:
        for b in table["budgets"]:
            print(f"budget {b['budget']['label']}:")
            for r in b["rows"]:
                sd = f" ± {r['top1_sd']:.4f}" if r["top1_sd"] is not None else ""
                print(f"  {r['name']:44s} {r['madds'] / 1e6:7.2f}M MAdds  {r['measured_latency']['median_ms']:8.3f} ms"
                      f"  test top-1 {r['top1']:.4f}{sd}  loss {r['test_loss']:.4f}")
        print(f"report: {out / 'report.md'}")
    return 0
