"""More truth metrics from a ground-truth table's retrained models: the temperature-scaled
test loss beside the test loss the table records.

    python experiments/truth_metrics.py experiments/results/gt_depth.json --work runs/gt_depth \\
        --out experiments/results/gt_depth_ts.json
    python experiments/ground_truth.py summary experiments/results/gt_depth_ts.json --metrics test_loss,test_loss_ts

Every (network, seed) of the table whose retraining folder is in ``--work`` (the folder
``ground_truth.py build`` trained into) is evaluated on the test split once: its logits give
the test loss at T = 1, which must reproduce the table's ``test_loss`` (else the folder is not
the table's model and the script stops), and ``test_loss_ts``, the loss at the temperature T
that minimizes it (one scalar per model, Guo et al. 2017): the part of the loss that a
rescaling of the logits cannot remove. The output is a table of the same format, the same
networks and seeds, each seed's result with ``test_loss_ts`` and ``temperature`` added; a
network or seed whose folder is missing is left out. Existing results of ``--out`` are kept
(resumable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import optimize

from stnas.core.errors import StnasError
from stnas.core.verified import write_json
from stnas.pipeline.config import load_run_config

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors, read_table, task_dir


def scaled_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
    """(loss at T = 1, loss at the best T, that T) of float64 ``logits`` against ``labels``."""
    def loss(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / np.exp(log_t), labels))

    best = optimize.minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded", options={"xatol": 1e-6})
    return loss(0.0), float(best.fun), float(np.exp(best.x))


def test_logits(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The retrained model's float64 logits on its run's test split, and the labels."""
    from stnas.data.datasets import get_dataset, make_loader
    from stnas.deploy.export import load_model
    from stnas.space.catalog import load_space

    d = load_run_config(run_dir)["data"]
    size = d["image_size"] or load_space(run_dir / "space.yaml").input_size
    test_set = get_dataset(d["dataset"], "test", d["root"], image_size=size)
    model = load_model(run_dir / "model")
    out, labels = [], []
    with torch.no_grad():
        for x, y in make_loader(test_set, 256, train=False):
            out.append(model(x.contiguous(memory_format=torch.channels_last)).double())
            labels.append(y)
    return torch.cat(out), torch.cat(labels)


def derive(table: dict, work: Path, done: dict) -> dict:
    """The derived table: every (network, seed) with a retraining in ``work``, from ``done``
    ({(arch, seed): result}) where it is there, else evaluated now."""
    rows = []
    for r in table["rows"]:
        seeds = {}
        for s, res in r["seeds"].items():
            key = (r["arch"], s)
            if key not in done:
                run_dir = task_dir(work, r["arch"], int(s))
                if not (run_dir / "model_card.json").is_file():
                    continue
                loss1, loss_t, t = scaled_loss(*test_logits(run_dir))
                if abs(loss1 - res["test_loss"]) > 1e-4:
                    raise StnasError(f"{run_dir}: test loss {loss1:.6f} at T = 1, but the table records "
                                     f"{res['test_loss']:.6f}: not this table's model")
                done[key] = res | {"test_loss_ts": loss_t, "temperature": t}
                print(f"{r['arch']} seed {s}: loss {loss1:.4f}, at T = {t:.3f} {loss_t:.4f}", flush=True)
            seeds[s] = done[key]
        if seeds:
            rows.append(r | {"seeds": seeds})
    return table | {"rows": rows, "derived": "truth_metrics.py: test_loss_ts, temperature"}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help="a ground_truth.py table")
    ap.add_argument("--work", required=True, help="the folder its retrainings were trained into")
    ap.add_argument("--out", required=True, help="the derived table (an existing one is extended)")
    args = ap.parse_args(argv)

    def run(args):
        table = read_table(args.table)
        done = {}
        if Path(args.out).exists():
            old = read_table(args.out)
            if old.get("space_fingerprint") != table["space_fingerprint"] or old.get("recipe") != table["recipe"]:
                raise StnasError(f"{args.out} is derived from another table; choose another --out")
            done = {(r["arch"], s): v for r in old["rows"] for s, v in r["seeds"].items() if "test_loss_ts" in v}
        write_json(Path(args.out), derive(table, Path(args.work), done))

    one_line_errors(run, args)


if __name__ == "__main__":
    main()
