"""``stnas predict``: the top-k classes of image files under an exported or retrained model."""

from __future__ import annotations

import json

from stnas.cli.common import path_arg


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify image files with a model directory (top-k class names)",
                       description="Read each image, preprocess it as the model directory records (mode, size, "
                                   "mean, std) and print the top-k classes with their names and probabilities.")
    p.add_argument("model_dir", type=path_arg, metavar="MODEL_DIR",
                   help="a model directory (stnas export --out, RUN/retrain/*/model) or a retrain run directory")
    p.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("-k", "--top", type=int, default=5, help="how many classes per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image (with the logits)")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args) -> int:
    from stnas.core.errors import ConfigError
    from stnas.deploy.predict import predict

    if args.top < 1:
        raise ConfigError(f"-k must be at least 1, got {args.top}")
    for r in predict(args.model_dir, args.images, args.top):
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['image']}: " + ", ".join(f"{t['class']} {t['prob']:.3f}" for t in r["top"]))
    return 0
