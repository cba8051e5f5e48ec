"""A fine-tune proxy, for comparison with the one-shot proxy: each network of a truth file
inherits its weights from a run's supernet, trains for a few SGD steps on search-train (its
BN statistics follow), and is scored on search-val.

One-shot scoring (``stnas rank``) evaluates the shared weights as they are, after a BN
recalibration. Fine-tuning each network first is the obvious way to bring the score closer
to stand-alone training, at a cost of one short training per network. This script prints
the scores in the shape of ``stnas rank --json``, so ``fidelity_by_budget.py`` reads it:

    python experiments/finetune_proxy.py runs/fm6 --truth T.json --steps 80 --lr 0.02 > ft.json
    python experiments/fidelity_by_budget.py ft.json --truth T.json

Modes: ``finetune_loss`` (minus the search-val cross-entropy) and ``finetune_top1``.
``--init scratch`` trains from a random initialization instead, as a control. Search-val
only: the test split is never read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from stnas.analysis.ranking import load_truth
from stnas.core import dist
from stnas.core.errors import StnasError
from stnas.data.datasets import dataset_split, make_loader
from stnas.deploy.export import inherited_model
from stnas.nn.model import build_model
from stnas.pipeline.config import load_run_config
from stnas.pipeline.settings import data_spec
from stnas.space.catalog import run_space
from stnas.train.engine import evaluate, lr_at

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors


def finetune_score(net: torch.nn.Module, train, val, steps: int, lr: float, batch_size: int, seed: int,
                   label_smoothing: float = 0.1) -> dict:
    """Trains ``net`` for ``steps`` SGD steps (Nesterov, cosine from ``lr`` to 0, no warmup)
    on ``train`` and returns its search-val {top1, top5, loss, n} in eval mode."""
    torch.manual_seed(seed)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=4e-5)
    schedule = {"lr": lr, "min_lr": 0.0, "warmup_epochs": 0, "schedule": "cosine"}
    step, epoch = 0, 0
    while step < steps:
        for x, y in make_loader(train, batch_size, train=True, seed=seed, epoch=epoch):
            if step == steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, schedule, steps_per_epoch=1, main_steps=steps)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(x), y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        epoch += 1
    return evaluate(net.eval(), val, 500, dist.Context())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a trained supernet run directory")
    ap.add_argument("--truth", required=True, help="a stnas-truth file: its networks are scored")
    ap.add_argument("--steps", type=int, default=80, help="SGD steps per network (default 80)")
    ap.add_argument("--lr", type=float, default=0.02, help="peak learning rate (default 0.02)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--init", choices=("inherit", "scratch"), default="inherit")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(one_line_errors(score_truth, args), indent=1))


def score_truth(args) -> dict:
    """The fine-tune scores of ``--truth``'s networks, in the shape of ``stnas rank --json``."""
    if args.steps < 1 or args.lr <= 0:
        raise StnasError("--steps must be >= 1 and --lr > 0")
    cfg = load_run_config(args.run)
    space = run_space(args.run)
    truth = load_truth(args.truth, space)
    data = data_spec(cfg)
    train = dataset_split(data, space, "search-train", data.limit, augment=False)
    val = dataset_split(data, space, "search-val", data.val_limit)
    scores = {"finetune_loss": [], "finetune_top1": []}
    for i, (arch, acc) in enumerate(truth.items()):
        t0, name = time.perf_counter(), str(arch)
        net = inherited_model(args.run, arch) if args.init == "inherit" else build_model(arch)
        got = finetune_score(net, train, val, args.steps, args.lr, args.batch_size, cfg["seed"])
        scores["finetune_loss"].append({"arch": name, "score": -got["loss"], **got, "truth": acc})
        scores["finetune_top1"].append({"arch": name, "score": got["top1"], **got, "truth": acc})
        print(f"[{i + 1}/{len(truth)}] {name}: val loss {got['loss']:.4f}, top-1 {got['top1']:.4f} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return {"run_dir": args.run, "truth": args.truth, "n": len(truth),
            "finetune": {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "init": args.init,
                         "train_images": len(train), "val_images": len(val)},
            "modes": {m: {"n": len(s), "scores": s} for m, s in scores.items()}}


if __name__ == "__main__":
    main()
