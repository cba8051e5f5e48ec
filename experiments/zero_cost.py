"""Training-free (zero-cost) baselines for the fidelity table: every planned network scored
untrained, recorded as a proxy record that ``fidelity.py --runs`` reads like a supernet's.

    python experiments/zero_cost.py --archs experiments/results/gt_pilot6_plan.json \\
        --out experiments/results/proxy_records/zc.json

Each network is built freshly initialised (``stnas.nn.model.build_model``) under ``--inits``
seeds and scored on one fixed batch of ``--batch`` search-train images (the run config's
``data.split_seed``; never the test split); a cell is the mean over the initialisations:

* ``naswot`` (Mellor et al., ICML 2021): the binary codes c of every ReLU/ReLU6 unit over the
  batch, K_H = N_A - Hamming(c_i, c_j), score log|K_H|. BN on batch statistics (train mode).
* ``synflow`` (Tanaka et al., NeurIPS 2020; as in Abdelfattah et al., ICLR 2021): with every
  parameter replaced by its absolute value, float64 and an all-ones input, R = sum of the
  output, score sum(theta * dR/dtheta). BN at its initial statistics (eval mode). The cell
  is the log of the mean over the initialisations (the mean's ranking).

Higher is better for both (fidelity.py's convention). fidelity.md, rule 11.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stnas.core.errors import StnasError
from stnas.core.verified import write_json
from stnas.data.datasets import dataset_split
from stnas.nn.model import build_model
from stnas.pipeline.config import resolve
from stnas.pipeline.settings import data_spec
from stnas.space.catalog import load_arch, load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import RECORD, RECORD_VERSION, one_line_errors, planned_archs

RELUS = (nn.ReLU, nn.ReLU6)


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log|K_H| of the batch's ReLU codes (train-mode BN), K_H[i, j] = units where i and j agree."""
    k = torch.zeros(len(x), len(x), dtype=torch.float64)

    def hook(_m, _inp, out):  # accumulated layer by layer: the codes of all units never coexist
        c = (out.detach() > 0).flatten(1).to(torch.float32)  # integer sums < 2^24 are exact
        k.add_((c @ c.T + (1 - c) @ (1 - c).T).to(torch.float64))  # agreements = N_A - Hamming

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, RELUS)]
    if not handles:
        raise StnasError("naswot needs ReLU or ReLU6 activations in the network")
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(k)
    if sign <= 0:  # two images with identical codes: the kernel is singular
        return float("-inf")
    return float(logdet)


def synflow(model: nn.Module, shape: tuple[int, ...]) -> float:
    """sum(theta * dR/dtheta) with |theta|, float64 and an all-ones input (eval-mode BN)."""
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    model(torch.ones((1, *shape), dtype=torch.float64)).sum().backward()
    with torch.no_grad():
        return float(sum((p * p.grad).sum() for p in model.parameters() if p.grad is not None))


def fixed_batch(cfg: dict, space, n: int) -> torch.Tensor:
    """The first ``n`` images of a seeded permutation of search-train (no augmentation)."""
    train = dataset_split(data_spec(cfg), space, "search-train", augment=False)
    if n > len(train):
        raise StnasError(f"--batch {n} is more than search-train's {len(train)} images")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(data_spec(cfg).data_seed))[:n]
    return torch.stack([train[int(i)][0] for i in pick])


def score(archs: list[str], space, x: torch.Tensor, inits: int) -> dict[str, dict[str, float]]:
    """{"naswot": {arch: mean}, "synflow": {arch: mean}} over ``inits`` seeded initialisations."""
    cells: dict[str, dict[str, float]] = {"naswot": {}, "synflow": {}}
    for a in archs:
        arch = load_arch(a, space)
        nw, sf = [], []
        for s in range(inits):
            torch.manual_seed(s)
            nw.append(naswot(build_model(arch), x))
            torch.manual_seed(s)
            sf.append(synflow(build_model(arch), tuple(x.shape[1:])))
        if not np.all(np.isfinite(nw)):
            raise StnasError(f"{a}: naswot's kernel is singular on this batch (identical codes); use another --batch")
        if not (np.all(np.isfinite(sf)) and min(sf) > 0):
            raise StnasError(f"{a}: synflow is not a finite positive number ({sf})")
        # log of the mean (the same ranking as the mean; readable numbers)
        cells["naswot"][a], cells["synflow"][a] = float(np.mean(nw)), float(np.log(np.mean(sf)))
    return cells


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", nargs="+", required=True, help="ground-truth plans, tables or picks tables")
    ap.add_argument("--out", required=True, help="the record (JSON)")
    ap.add_argument("--preset", default="fashion-mnist")
    ap.add_argument("--label", default="zc")
    ap.add_argument("--batch", type=int, default=128, help="search-train images in the fixed batch")
    ap.add_argument("--inits", type=int, default=3, help="random initialisations per network")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.batch < 2 or args.inits < 1 or args.threads < 0:
        raise StnasError("need --batch >= 2, --inits >= 1 and --threads >= 0")
    if Path(args.out).exists():
        raise StnasError(f"{args.out} exists; a record is not replaced (choose another --out)")
    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(args.preset)
    cfg = resolve(args.preset)
    archs = list(dict.fromkeys(a for p in args.archs for a in planned_archs(p)))
    for a in archs:
        load_arch(a, space)  # every architecture checked before any work
    x = fixed_batch(cfg, space, args.batch)
    cells = score(archs, space, x, args.inits)
    write_json(Path(args.out), {
        "format": RECORD, "version": RECORD_VERSION, "label": args.label, "overrides": [],
        "ks": [], "run": None, "config": {"preset": args.preset, "batch": args.batch, "inits": args.inits,
                                          "split_seed": data_spec(cfg).data_seed, "split": "search-train"},
        "weights": None, "preset_cell": "naswot", "cells": cells})
    print(f"{args.label}: {len(archs)} networks -> {args.out}")


if __name__ == "__main__":
    one_line_errors(main)  # bad input: one line, exit 2
