"""Latency budgets kept on measurement (issue 36 item 1): how often a latency-budgeted pick
measures within its budget, what it costs in candidates measured and proxy score.

Per dataset (digits, fashion-mnist, and a generated image folder: ``tests/synthdata.py``)
one supernet is trained (reused when its run folder is already there) and the latency table
of this machine is built once (``$STNAS_CACHE``, default ``<work>/cache``). Budgets are
quantiles of the predicted latency of random architectures. For each budget, two searches on
the same supernet and proxy cache, and no retraining (latency does not depend on weights):

* ``latency.margin`` (default auto) and the measured fallback of ``stnas run``
  (``stnas.pipeline.latency.measured_picks``): the pick, its prediction and measurement,
  candidates measured, the score given up within the search, or the give-up;
* the same search with margin 0 (what ``stnas run`` did before): its pick measured once, and
  the proxy score the margin and fallback gave up against it.

Prints a table and writes JSON (``benchmarks/results/latency_budget[_quick].json``). Timings
need a quiet machine: nothing else running on its cores.

    python benchmarks/latency_budget.py                           # 3 datasets x 10 budgets
    python benchmarks/latency_budget.py --quick --out /tmp/lb.json # digits, 2 budgets, tiny
    python benchmarks/latency_budget.py --train-only               # the supernets first, on a busy machine
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from stnas.core import dist
from stnas.core.errors import LatencyBudgetError, SpaceError
from stnas.core.rundir import RunDir
from stnas.core.verified import write_json
from stnas.latency import budget as lb
from stnas.latency.measure import device_info, runtime_info
from stnas.pipeline.config import resolve
from stnas.pipeline.latency import measured_picks, model_latency, read_picks, search_predictor
from stnas.pipeline.search import run_search
from stnas.pipeline.supernet import train_supernet
from stnas.space.catalog import load_space

if not __package__:  # run as `python benchmarks/NAME.py`: tests.synthdata from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"

DATASETS = ("digits", "fashion-mnist", "folder")
QUICK = ["supernet.epochs=2", "pool.epochs=1", "pool.samples=2", "search.population=6", "search.parents=2",
         "search.generations=2", "latency.warmup=1", "latency.repeats=5", "latency.rounds=1",
         "latency.fit_networks=4"]


def user_folder(work: Path) -> Path:
    from tests.synthdata import write_folder

    root = work / "data" / "folder"
    if not root.is_dir():
        write_folder(root, split=True, classes=5, per_class=80, size=16, channels=3)
    return root


def base_config(name: str, work: Path, overrides: list[str]) -> dict:
    """The dataset's config (its preset, or the space derived from the generated folder)."""
    flags = {"data.dataset": str(user_folder(work))} if name == "folder" else {}
    return resolve(None if name == "folder" else name, flags=flags,
                   overrides=["supernet.progress=false", *overrides])


def trained(name: str, cfg: dict, work: Path, ctx: dist.Context) -> Path:
    """The supernet run of a dataset, trained once."""
    run_dir = work / "runs" / name
    run = RunDir(run_dir)
    if not run.supernet.is_file():
        print(f"== {name}: training the supernet into {run_dir}", file=sys.stderr, flush=True)
        train_supernet(cfg, run_dir, resume=run.config.is_file(), ctx=ctx)
    return run_dir


def budgets_of(space, cfg: dict, n: int, seed: int) -> list[float]:
    """``n`` budgets: quantiles 30%..90% of the predicted latency of 400 random architectures."""
    pred, _ = search_predictor(space, {**cfg, "search": {**cfg["search"], "latency_budgets": None}})
    rng = np.random.default_rng([seed, 0x1B])
    spread = np.array([pred(space.sample(rng)) for _ in range(400)])
    return [float(np.quantile(spread, q)) for q in np.linspace(0.3, 0.9, n)]


def one_budget(name: str, budget: float, cfg: dict, run_dir: Path, space, ctx, margin) -> dict:
    """The margin search with its measured fallback, and the margin-0 search's pick measured."""
    label = f"{budget:.4f}ms"
    row = {"dataset": name, "budget_ms": budget}
    picks = {}
    for m in ("chosen", "zero"):
        c = {**cfg, "search": {**cfg["search"], "budgets": [], "latency_budgets": [f"{budget!r}ms"]},
             "latency": {**cfg["latency"], "margin": margin if m == "chosen" else 0}}
        try:
            latency = search_predictor(space, c)
        except SpaceError as exc:  # the budget less its margin is below every prediction
            return {**row, "refused": str(exc), "within": False, "zero": None, "score_vs_zero": None}
        out = run_dir / "bench" / f"{label}_{'margin' if m == 'chosen' else 'zero'}"
        result, _ = run_search(c, {None: (run_dir, c)}, out, ctx, latency=latency)
        (target,) = result.best
        if m == "zero":
            rec = result.best[target][0]
            x = model_latency(rec.arch, latency[0], c["latency"])
            picks[m] = {"arch": str(rec.arch), "score": rec.score, "predicted_ms": rec.latency_ms,
                        "measured_ms": x["measured_ms"], "measured_iqr_ms": x["measured_iqr_ms"],
                        "within": lb.is_within(x, budget)}
            continue
        try:
            measured_picks(result, c, space, latency[0], latency[1], out, ctx)
        except LatencyBudgetError as exc:
            row["error"] = str(exc)
        entry = (read_picks(out) or {"targets": {}})["targets"].get(target.label, {})
        picks[m] = {k: entry.get(k) for k in ("pick", "score", "predicted_ms", "measured_ms", "measured_iqr_ms",
                                               "within", "measured", "pick_rank", "best_score", "score_given_up",
                                               "margin", "margin_method", "searched_limit_ms")}
    row.update(picks["chosen"], zero=picks["zero"])
    row["within"] = bool(row.get("within"))
    row["score_vs_zero"] = None if row.get("score") is None else picks["zero"]["score"] - row["score"]
    return row


def fmt(v, spec: str) -> str:
    return format("-", re.match(r"[<>^]?\d*", spec).group()) if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated: {', '.join(DATASETS)}")
    ap.add_argument("--budgets", type=int, default=10, help="latency budgets per dataset")
    ap.add_argument("--margin", default="auto", help="latency.margin of the kept searches (auto or a fraction)")
    ap.add_argument("--work", default="runs/latency_budget", help="supernet runs, searches and the table cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="digits, 2 budgets, tiny settings: checks the script only")
    ap.add_argument("--train-only", action="store_true",
                    help="train the datasets' supernets (no timing: needs no quiet machine) and stop")
    ap.add_argument("--out", help="JSON file (default benchmarks/results/latency_budget[_quick].json)")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value for every dataset")
    args = ap.parse_args(argv)
    margin = lb.check_margin(args.margin if args.margin == "auto" else float(args.margin), "--margin")
    names = [n for n in args.datasets.split(",") if n]
    overrides = list(args.overrides)
    if args.quick:
        names, args.budgets, overrides = ["digits"], 2, QUICK + overrides
    bad = [n for n in names if n not in DATASETS]
    if bad:
        ap.error(f"unknown dataset(s) {', '.join(bad)}; choose from {', '.join(DATASETS)}")
    work = Path(args.work)
    os.environ.setdefault("STNAS_CACHE", str(work / "cache"))
    out = Path(args.out) if args.out else RESULTS / f"latency_budget{'_quick' if args.quick else ''}.json"
    t0, rows = time.perf_counter(), []
    if args.train_only:
        for name in names:
            cfg = base_config(name, work, overrides)
            trained(name, cfg, work, dist.Context(device=dist.resolve_device(cfg["device"])))
        return 0
    for name in names:
        cfg = base_config(name, work, overrides)
        ctx = dist.Context(device=dist.resolve_device(cfg["device"]))
        run_dir = trained(name, cfg, work, ctx)
        space = load_space(cfg["preset"])
        for budget in budgets_of(space, cfg, args.budgets, args.seed):
            print(f"== {name}: budget {budget:.3f} ms", file=sys.stderr, flush=True)
            rows.append(one_budget(name, budget, cfg, run_dir, space, ctx, margin))
    header = (f"{'dataset':<14}{'budget ms':>10}{'margin':>8}{'pred ms':>9}{'meas ms':>9}{'within':>8}{'measured':>9}"
              f"{'given up':>10}{'vs m=0':>9} | {'m=0 pred':>9}{'m=0 meas':>9}{'within':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "refused" in r:
            print(f"{r['dataset']:<14}{r['budget_ms']:>10.3f}  refused: {r['refused']}")
            continue
        z = r["zero"]
        print(f"{r['dataset']:<14}{r['budget_ms']:>10.3f}{fmt(r.get('margin'), '>7.1%')}"
              f" {fmt(r['predicted_ms'], '>8.3f')} {fmt(r['measured_ms'], '>8.3f')}{'yes' if r['within'] else 'NO':>8}"
              f"{fmt(r.get('measured'), '>9d')} {fmt(r.get('score_given_up'), '>9.4f')}"
              f" {fmt(r['score_vs_zero'], '>8.4f')} | {z['predicted_ms']:>8.3f} {z['measured_ms']:>8.3f}"
              f"{'yes' if z['within'] else 'NO':>8}")
    done = [r for r in rows if "refused" not in r]
    n = len(done)
    summary = {"picks": n, "refused": len(rows) - n, "within": sum(r["within"] for r in done) / max(n, 1),
               "within_margin_zero": sum(r["zero"]["within"] for r in done) / max(n, 1),
               "gave_up": sum("error" in r for r in done),
               "mean_measured": float(np.mean([r["measured"] or 0 for r in done])) if done else 0.0,
               "mean_score_vs_zero": float(np.mean([r["score_vs_zero"] for r in done
                                                    if r["score_vs_zero"] is not None] or [0.0]))}
    print(f"\nwithin budget on measurement: {summary['within']:.0%} kept (margin + fallback), "
          f"{summary['within_margin_zero']:.0%} with margin 0; {summary['gave_up']} gave up, "
          f"{summary['refused']} refused (budget less margin below every prediction); "
          f"{summary['mean_measured']:.2f} candidates measured per pick on average")
    machine = {"device": device_info("cpu"), "runtime": runtime_info("torch")}
    write_json(out, {"benchmark": "latency_budget", "command": " ".join(sys.argv), "machine": machine,
                     "settings": {k: v for k, v in vars(args).items() if k != "out"}, "quick": args.quick,
                     "noise_rule": lb.NOISE_RULE, "wall_s": round(time.perf_counter() - t0, 1),
                     "summary": summary, "results": rows})
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
