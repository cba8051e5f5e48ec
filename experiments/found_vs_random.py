"""Does the search pay off? The architecture `stnas run` found for each budget against the
best of N uniformly random architectures within the same budget, all retrained with the
same recipe and evaluated on the test split.

    stnas run --out runs/fm                       # the search (Fashion-MNIST by default)
    python experiments/found_vs_random.py runs/fm --n 10

By default the recipe is the run's own retrain recipe: random baselines are retrained into
RUN_DIR/random_baseline/ (reruns resume and reuse them) and the found architectures' numbers
are the run's model cards. ``--set retrain.KEY=VALUE`` compares under another recipe (e.g.
a longer one): then the found architectures are retrained too, and everything goes to
RUN_DIR/random_baseline_<recipe hash>/ and RUN_DIR/found_seeds_<recipe hash>/.
One retraining is noisy; ``--extra-seeds 1,2`` retrains every architecture (found and
random) with more training seeds, compares the means over all seeds and tests, per budget,
whether the networks differ beyond seed noise at all (one-way ANOVA; if they do not, no
method can reliably beat the best of N under that recipe). With ``--extra-for top`` only
the found and the best random architecture per budget get the extra seeds (to size the
noise where the verdict is made). ``--jobs 2`` runs two retrainings at a time (on CPU,
each with its share of the cores: small networks use cores better that way).
Prints a table and writes experiments/results/found_vs_random.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.analysis.ranking import TRUTH_FORMAT, TRUTH_VERSION
from stnas.core import dist
from stnas.core.errors import StnasError
from stnas.core.units import budget_label
from stnas.core.verified import write_json
from stnas.pipeline.config import apply_layers, effective_settings, load_run_config, parse_override
from stnas.pipeline.report import read_report
from stnas.pipeline.retrain import retrain
from stnas.space.catalog import load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors


def train(arch: str, cfg: dict, out: str, threads: int = 0) -> float:
    """Retrains ``arch`` into ``out``, or reuses a run there (which must have the same recipe,
    data and seed); test top-1. ``threads``: torch's CPU threads in this process (0: leave)."""
    if threads:
        import torch
        torch.set_num_threads(threads)
    out = Path(out)
    return retrain(arch, cfg, out, resume=(out / "config.yaml").is_file(), ctx=dist.setup(cfg["device"]))["top1"]


def architecture_effect(groups: list[list[float]]) -> dict:
    """One-way ANOVA over architectures, each group one architecture's top-1 under several
    training seeds: is there an architecture effect beyond seed noise? F and p from
    ``scipy.stats.f_oneway``; the random-effects variance components from the mean squares
    (noise_sd = sqrt(MSW), arch_sd = sqrt(max(0, (MSB - MSW) / n)), n seeds per group)."""
    n = len(groups[0])
    if len(groups) < 2 or n < 2 or any(len(g) != n for g in groups):
        raise ValueError("need >= 2 architectures with the same number (>= 2) of seeds each")
    a = np.asarray(groups, dtype=float)
    f, p = stats.f_oneway(*a)
    msb = n * ((a.mean(1) - a.mean()) ** 2).sum() / (len(a) - 1)
    msw = ((a - a.mean(1, keepdims=True)) ** 2).sum() / (len(a) * (n - 1))
    return {"F": float(f), "p": float(p), "noise_sd": float(np.sqrt(msw)),
            "arch_sd": float(np.sqrt(max(0.0, (msb - msw) / n))), "archs": len(a), "seeds": n}


def run_all(tasks: dict, jobs: int) -> dict:
    """{key: (arch, cfg, out)} -> {key: top-1}, ``jobs`` retrainings at a time. Keys that share
    an output directory (one network chosen for two budgets) share one retraining."""
    done = {}
    by_out: dict[str, list] = {}
    for key, (_, _, out) in tasks.items():
        by_out.setdefault(out, []).append(key)

    def report(keys, top1):
        for key in keys:
            done[key] = top1
            print(f"  [{len(done)}/{len(tasks)}] {key[0]} {key[1]} seed {key[2]}: {tasks[key][0]}  top-1 {top1:.4f}",
                  flush=True)

    if jobs <= 1:
        for keys in by_out.values():
            report(keys, train(*tasks[keys[0]]))
        return done
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(train, *tasks[keys[0]], threads): keys for keys in by_out.values()}
        try:
            for fut in futures:  # in submission order; the pool keeps every worker busy meanwhile
                report(futures[fut], fut.result())
        except BaseException:  # a failed retraining (or Ctrl-C): drop the queued ones, do not wait for them
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished `stnas run` directory (has report.json)")
    ap.add_argument("--n", type=int, default=10, help="random architectures per budget")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the random baselines")
    ap.add_argument("--extra-seeds", default="", metavar="S1,S2",
                    help="also retrain every architecture with these training seeds and compare means "
                         "over all seeds (the run's own seed is always the first)")
    ap.add_argument("--extra-for", choices=("all", "top"), default="all",
                    help="retrain the extra seeds for every architecture (all) or only for the found and "
                         "the best random one per budget (top: sizes the noise where the verdict is made)")
    ap.add_argument("--set", action="append", default=[], metavar="retrain.KEY=VALUE", dest="overrides",
                    help="compare under this retrain recipe instead of the run's (repeatable)")
    ap.add_argument("--jobs", type=int, default=1, help="retrainings at a time (default 1)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "found_vs_random.json"))
    ap.add_argument("--truth-out", metavar="FILE.json",
                    help="also write every network's test top-1 (one entry per training seed) as a ground-truth "
                         "file for `stnas rank --truth`")
    args = ap.parse_args()
    if args.jobs < 1 or args.n < 1:
        ap.error("--jobs and --n must be >= 1")
    run = Path(args.run_dir)
    if not (run / "report.json").is_file():
        raise StnasError(f"{run} holds no finished `stnas run` (no report.json)")
    report = read_report(run)
    cfg = load_run_config(run)
    try:
        extra = [int(x) for x in args.extra_seeds.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--extra-seeds must be comma-separated integers, got {args.extra_seeds!r}")
    if cfg["seed"] in extra:
        ap.error(f"--extra-seeds must not repeat the run's own seed {cfg['seed']}")
    run_recipe = effective_settings(cfg, "retrain")
    cfg = apply_layers(cfg, [parse_override(o) for o in args.overrides], allowed=("retrain",),
                       context="in found_vs_random (only the retrain recipe)")
    cfg["retrain"]["progress"] = False
    own_recipe = effective_settings(cfg, "retrain") == run_recipe
    suffix = "" if own_recipe else "_" + hashlib.sha256(
        json.dumps(cfg["retrain"], sort_keys=True).encode()).hexdigest()[:8]
    seeds = [cfg["seed"], *extra]
    cfgs = {s: cfg | {"seed": s} for s in seeds}
    space = load_space(cfg["preset"])
    t0 = time.time()

    # first every architecture with the run's seed, then the extra seeds (all, or --extra-for top:
    # only the found and the best random one per budget); each phase in parallel with --jobs
    randoms, found, paths, found_dirs = {}, {}, {}, {}
    for c in report["chosen"]:
        label = budget_label(c["budget"])
        rng = np.random.default_rng([args.seed, c["budget"]])
        randoms[label] = [space.sample_constrained(rng, max_madds=c["budget"]) for _ in range(args.n)]
        for i, arch in enumerate(randoms[label]):
            base = run / f"random_baseline{suffix}" / f"budget_{label}" / f"arch_{i:02d}"
            for s in seeds:
                paths[(label, f"random {i + 1:2d}", s)] = (
                    str(arch), cfgs[s], str(base if s == cfg["seed"] else base.with_name(f"{base.name}_seed{s}")))
        for s in seeds:
            if own_recipe and s == cfg["seed"]:
                found[(label, "found", s)] = c["model_card"]["top1"]  # the run's own retraining
            else:
                # the network a smaller budget chose as well is retrained once, in that budget's folder
                out = found_dirs.setdefault((c["arch"], s),
                                            run / f"found_seeds{suffix}" / f"budget_{label}" / f"seed{s}")
                paths[(label, "found", s)] = (c["arch"], cfgs[s], str(out))
    done = found | run_all({k: v for k, v in paths.items() if k[2] == cfg["seed"]}, args.jobs)
    wanted = set(paths)
    if args.extra_for == "top":
        best_i = {label: max(range(args.n), key=lambda i: done[(label, f"random {i + 1:2d}", cfg["seed"])])
                  for label in randoms}
        wanted = {k for k in paths if k[1] == "found" or k[1] == f"random {best_i[k[0]] + 1:2d}"}
    done |= run_all({k: v for k, v in paths.items() if k[2] != cfg["seed"] and k in wanted}, args.jobs)

    rows = []
    for c in report["chosen"]:
        label = budget_label(c["budget"])
        found_seeds = {s: done[(label, "found", s)] for s in seeds}
        rand = []
        for i, arch in enumerate(randoms[label]):
            by_seed = {s: done[(label, f"random {i + 1:2d}", s)] for s in seeds
                       if (label, f"random {i + 1:2d}", s) in done}
            rand.append({"arch": str(arch), "madds": arch.madds, "top1": by_seed[cfg["seed"]],
                         "top1_by_seed": by_seed, "top1_mean": statistics.mean(by_seed.values())})
        best = max(rand, key=lambda r: r["top1"])
        top1 = found_seeds[cfg["seed"]]
        row = {"budget": c["budget"], "found_arch": c["arch"], "found_madds": c["madds"], "found_top1": top1,
               "found_proxy": c["score"], "random_best_top1": best["top1"], "random_best_arch": best["arch"],
               "random_median_top1": statistics.median(r["top1"] for r in rand),
               "found_rank": 1 + sum(r["top1"] >= top1 for r in rand),
               "found_beats_best_random": top1 > best["top1"]}
        if extra:
            row |= {"seeds": seeds, "found_top1_by_seed": found_seeds,
                    "found_top1_mean": statistics.mean(found_seeds.values()),
                    "random_best_top1_by_seed": best["top1_by_seed"]}
        if extra and args.extra_for == "all":
            best_mean = max(rand, key=lambda r: r["top1_mean"])
            row |= {"random_best_mean_top1": best_mean["top1_mean"], "random_best_mean_arch": best_mean["arch"],
                    "random_median_mean_top1": statistics.median(r["top1_mean"] for r in rand)}
            row["found_beats_best_random_mean"] = row["found_top1_mean"] > row["random_best_mean_top1"]
            row["architecture_effect"] = architecture_effect(
                [list(found_seeds.values())] + [[r["top1_by_seed"][s] for s in seeds] for r in rand])
        rows.append(row | {"randoms": rand})
    print(f"\n{'budget':>8}{'found top-1':>13}{'best of ' + str(args.n) + ' random':>20}{'median random':>15}"
          f"{'found rank':>12}  beats")
    for r in rows:
        print(f"{budget_label(r['budget']):>8}{r['found_top1']:>13.4f}{r['random_best_top1']:>20.4f}"
              f"{r['random_median_top1']:>15.4f}{str(r['found_rank']) + '/' + str(args.n + 1):>12}  "
              f"{'yes' if r['found_beats_best_random'] else 'no'}")
    if extra and args.extra_for == "top":
        print(f"\nseeds {seeds}, found and the best random (by seed {cfg['seed']}):")
        for r in rows:
            found_s = " ".join(f"{v:.4f}" for v in r["found_top1_by_seed"].values())
            best_s = " ".join(f"{v:.4f}" for v in r["random_best_top1_by_seed"].values())
            print(f"{budget_label(r['budget']):>8}  found {found_s}   best random {best_s}")
    elif extra:
        print(f"\nmeans over seeds {[cfg['seed'], *extra]}:")
        for r in rows:
            print(f"{budget_label(r['budget']):>8}{r['found_top1_mean']:>13.4f}{r['random_best_mean_top1']:>20.4f}"
                  f"{r['random_median_mean_top1']:>15.4f}  {'yes' if r['found_beats_best_random_mean'] else 'no'}")
        print("\narchitecture effect within each budget (one-way ANOVA over the networks, seeds as replicates):")
        for r in rows:
            e = r["architecture_effect"]
            print(f"{budget_label(r['budget']):>8}  F {e['F']:.2f}  p {e['p']:.3f}  seed noise sd {e['noise_sd']:.4f}"
                  f"  architecture sd {e['arch_sd']:.4f}")
    meta = {"run_dir": str(run), "preset": cfg["preset"], "recipe": cfg["retrain"],
            "recipe_overrides": args.overrides, "n": args.n, "extra_for": args.extra_for, "seed": args.seed,
            "training_seeds": seeds, "jobs": args.jobs, "wall_s": time.time() - t0}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), {"meta": meta, "results": rows})
    if args.truth_out:
        Path(args.truth_out).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(args.truth_out), truth_file(rows, seeds, "python experiments/found_vs_random.py "
                                                    + " ".join(sys.argv[1:]), cfg))


def truth_file(rows: list[dict], seeds: list[int], command: str, cfg: dict) -> dict:
    """A ``stnas-truth`` file of every network of the comparison, one entry per training seed
    (``stnas rank`` averages repeated architectures)."""
    results = []
    for r in rows:
        label = budget_label(r["budget"])
        found = r.get("found_top1_by_seed") or {seeds[0]: r["found_top1"]}
        results += [{"arch": r["found_arch"], "top1": v, "seed": int(s), "role": f"found {label}"}
                    for s, v in found.items()]
        for i, x in enumerate(r["randoms"]):
            results += [{"arch": x["arch"], "top1": v, "seed": int(s), "role": f"random {i + 1} within {label}"}
                        for s, v in x["top1_by_seed"].items()]
    return {"format": TRUTH_FORMAT, "version": TRUTH_VERSION, "preset": cfg["preset"],
            "source": f"{command}: test top-1 after retraining with recipe "
                      f"{json.dumps(cfg['retrain'], sort_keys=True)}",
            "results": results}


if __name__ == "__main__":
    one_line_errors(main)  # bad input or a cached run made with other settings: one line, exit 2
