"""``stnas export``: an architecture of a supernet run as a standalone model (safetensors, ONNX)."""

from __future__ import annotations

from pathlib import Path

from stnas.cli.common import out_arg, path_arg


def register(sub) -> None:
    p = sub.add_parser("export", help="export an architecture with inherited weights (safetensors + ONNX)",
                       description="Write the standalone model of an architecture, with the weights it inherits "
                                   "from a supernet run (or from a pool sample or a retrained run), as "
                                   "model.safetensors, arch.json, space.yaml, model.onnx (opset 17, dynamic "
                                   "batch), model.pt2 (torch.export) and model_card.json. Supernet-inherited "
                                   "weights get their BN recalibrated on search-train data and are not a "
                                   "trained model: the one to deploy comes from stnas retrain.")
    p.add_argument("run_dir", type=path_arg, metavar="RUN_DIR",
                   help="a supernet run directory (stnas supernet train --out)")
    p.add_argument("--arch", required=True, metavar="FILE|STRING",
                   help="architecture JSON file or string SPACE:STEM/BRANCHES of the run's space")
    p.add_argument("--weights", type=path_arg, default="supernet", metavar="supernet|PATH",
                   help="supernet (default: RUN_DIR/supernet.safetensors), a supernet-shaped safetensors file "
                        "(e.g. RUN_DIR/pool/sample_000.safetensors), or a retrain run / model directory")
    p.add_argument("--out", type=out_arg, metavar="DIR",
                   help="output directory (default RUN_DIR/export/<architecture>)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")
    p.add_argument("--no-recalibrate", action="store_true",
                   help="keep the supernet's BN statistics (the export then equals the supernet's path exactly)")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from stnas.deploy.card import read_card
    from stnas.deploy.export import arch_for_run, arch_slug
    from stnas.pipeline.export import export_run

    run_dir = Path(args.run_dir)
    arch = arch_for_run(run_dir, args.arch)
    out = Path(args.out) if args.out else run_dir / "export" / arch_slug(arch)
    paths = export_run(run_dir, arch, out, args.weights, onnx=not args.no_onnx, recalibrate=not args.no_recalibrate)
    print(f"exported {arch} (MAdds {arch.madds:,}, params {arch.params:,}) -> {out}")
    card = read_card(paths["card"])
    if card["inherited"]:
        val = f", search-val top-1 {card['search_val_top1']:.4f}" if "search_val_top1" in card else ""
        print(f"  inherited supernet weights, not retrained ({card['weights'].split('(')[1].split(')')[0]}{val}); "
              f"deploy the retrained model: stnas retrain --arch {arch}")
    for kind, path in paths.items():
        print(f"  {kind:8s}{path}")
    return 0
