"""Does the search pay off? The architecture `stnas run` found for each budget against the
best of N uniformly random architectures within the same budget, all retrained with the
run's own retrain recipe and evaluated on the test split.

    stnas run --out runs/fm                       # the search (Fashion-MNIST by default)
    python benchmarks/found_vs_random.py runs/fm --n 10

Random baselines are retrained into RUN_DIR/random_baseline/ (reruns resume and reuse them).
One retraining is noisy; ``--extra-seeds 1,2`` retrains every architecture (found and random)
with more training seeds and also compares the means over all seeds.
Prints a table and writes benchmarks/results/found_vs_random.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from stnas import dist
from stnas.config import load_run_config
from stnas.errors import StnasError
from stnas.fileio import write_json
from stnas.retrain import retrain
from stnas.search import budget_label
from stnas.space import load_space


def train(arch, cfg: dict, out: Path, ctx) -> float:
    """Retrains ``arch`` into ``out``, or reuses a run there (which must have the same recipe); test top-1."""
    return retrain(arch, cfg, out, resume=(out / "config.yaml").is_file(), ctx=ctx)["top1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished `stnas run` directory (has report.json)")
    ap.add_argument("--n", type=int, default=10, help="random architectures per budget")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random baselines")
    ap.add_argument("--extra-seeds", default="", metavar="S1,S2",
                    help="also retrain every architecture with these training seeds and compare means "
                         "over all seeds (the run's own seed is always the first)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "found_vs_random.json"))
    args = ap.parse_args()
    run = Path(args.run_dir)
    report = json.loads((run / "report.json").read_text())
    cfg = load_run_config(run)
    cfg["retrain"]["progress"] = False
    extra = [int(x) for x in args.extra_seeds.split(",") if x.strip()]
    if cfg["seed"] in extra:
        ap.error(f"--extra-seeds must not repeat the run's own seed {cfg['seed']}")
    cfgs = {s: cfg | {"seed": s} for s in extra}
    space = load_space(cfg["preset"])
    ctx = dist.setup(cfg["device"])
    rows = []
    t0 = time.time()
    for c in report["chosen"]:
        budget = c["budget"]
        label = budget_label(budget)
        rng = np.random.default_rng([args.seed, budget])
        randoms = []
        for i in range(args.n):
            arch = space.sample_constrained(rng, max_madds=budget)
            base = run / "random_baseline" / f"budget_{label}" / f"arch_{i:02d}"
            top1 = train(arch, cfg, base, ctx)
            seeds = {cfg["seed"]: top1} | {s: train(arch, cfgs[s], base.with_name(f"{base.name}_seed{s}"), ctx)
                                           for s in extra}
            randoms.append({"arch": str(arch), "madds": arch.madds, "top1": top1, "top1_by_seed": seeds,
                            "top1_mean": statistics.mean(seeds.values())})
            print(f"  {label} random {i + 1}/{args.n}: {arch}  {arch.madds / 1e6:.2f}M  top-1 "
                  + " ".join(f"{v:.4f}" for v in seeds.values()), flush=True)
        found = c["model_card"]["top1"]
        found_seeds = {cfg["seed"]: found} | {
            s: train(c["arch"], cfgs[s], run / "found_seeds" / f"budget_{label}" / f"seed{s}", ctx) for s in extra}
        best = max(randoms, key=lambda r: r["top1"])
        row = {"budget": budget, "found_arch": c["arch"], "found_madds": c["madds"], "found_top1": found,
               "found_proxy": c["score"], "random_best_top1": best["top1"], "random_best_arch": best["arch"],
               "random_median_top1": statistics.median(r["top1"] for r in randoms),
               "found_beats_best_random": found > best["top1"]}
        if extra:
            best_mean = max(randoms, key=lambda r: r["top1_mean"])
            row |= {"seeds": [cfg["seed"], *extra], "found_top1_by_seed": found_seeds,
                    "found_top1_mean": statistics.mean(found_seeds.values()),
                    "random_best_mean_top1": best_mean["top1_mean"], "random_best_mean_arch": best_mean["arch"],
                    "random_median_mean_top1": statistics.median(r["top1_mean"] for r in randoms)}
            row["found_beats_best_random_mean"] = row["found_top1_mean"] > row["random_best_mean_top1"]
        rows.append(row | {"randoms": randoms})
    print(f"\n{'budget':>8}{'found top-1':>13}{'best of ' + str(args.n) + ' random':>20}{'median random':>15}  beats")
    for r in rows:
        print(f"{budget_label(r['budget']):>8}{r['found_top1']:>13.4f}{r['random_best_top1']:>20.4f}"
              f"{r['random_median_top1']:>15.4f}  {'yes' if r['found_beats_best_random'] else 'no'}")
    if extra:
        print(f"\nmeans over seeds {[cfg['seed'], *extra]}:")
        for r in rows:
            print(f"{budget_label(r['budget']):>8}{r['found_top1_mean']:>13.4f}{r['random_best_mean_top1']:>20.4f}"
                  f"{r['random_median_mean_top1']:>15.4f}  {'yes' if r['found_beats_best_random_mean'] else 'no'}")
    meta = {"run_dir": str(run), "preset": cfg["preset"], "recipe": cfg["retrain"], "n": args.n,
            "seed": args.seed, "training_seeds": [cfg["seed"], *extra], "wall_s": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), {"meta": meta, "results": rows})


if __name__ == "__main__":
    try:
        main()
    except StnasError as e:  # bad input or a cached run made with other settings
        sys.exit(f"error: {e}")
