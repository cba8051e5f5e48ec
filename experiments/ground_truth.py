"""A ground-truth table of our own search space: random networks within each budget, each
retrained from scratch with ``stnas retrain`` under several training seeds.

    python experiments/ground_truth.py build --work runs/gt_pilot --out experiments/results/gt_pilot.json \\
        --budgets 4M,6M --n 10 --seeds 0,1 --band 0.8 --set retrain.limit=null --jobs 2
    python experiments/ground_truth.py summary experiments/results/gt_pilot.json
    python experiments/ground_truth.py recipes experiments/results/gt_pilot.json experiments/results/gt_pilot6.json

``build`` samples ``--n`` architectures per budget, uniformly (topology mode) among those
with MAdds in (band x budget, budget], from ``--arch-seed``; the list is fixed in
WORK/plan.json on the first call, and a later call with other settings is refused. Every
(architecture, seed) retraining lives in its own folder under WORK: a finished one
(model_card.json) is reused, an interrupted one is resumed from its checkpoint, and one
killed before its first checkpoint is started again; a worker ends with its build, however
the build is killed. Tasks run network by network (both seeds, budgets alternating), so a
table cut short still holds complete pairs. After each retraining the table is rewritten
atomically to ``--out``: commit it as it grows. An existing ``--out`` is the record: its
results are kept and not retrained, so a table committed from another machine grows on in a
fresh WORK (it must be of the same plan: space, recipe, overrides, band and drawn networks).
A larger ``--n`` adds networks, and a longer ``--seeds`` list that starts with the recorded
seeds adds its new seeds to every network (``0,1`` grown to ``0,1,2,3``), network by network.

``summary`` gives, per budget, the seed-to-seed Kendall tau (seed A vs seed B over the
networks, with a paired bootstrap 95% interval) for test top-1 and test loss, and the
random-effects variance components (architecture sd, seed-noise sd) of a two-way layout,
and the ceiling: the tau a perfect proxy would reach against a two-seed-mean truth, all on
the first two seeds. A table of four or more seeds also gets, over the networks with every
seed, the components, the ceiling on the all-seed mean, and the tau between the means of
the first and the second half of its seeds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.analysis.ranking import kendall
from stnas.core.errors import StnasError
from stnas.core.units import parse_count
from stnas.core.verified import read_json, write_json
from stnas.deploy.card import read_card
from stnas.pipeline.config import resolve
from stnas.space.catalog import load_arch, load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import (
    TABLE_FORMAT,
    ci95,
    extends_seeds,
    one_line_errors,
    read_table,
    task_dir,
    two_way_mean_squares,
)

VERSION = 1


def exit_with(parent: int, every: float = 2.0) -> None:
    """Ends this (worker) process once ``parent`` is gone: a build killed by a signal must
    leave no retraining running on its own, holding that retraining's lock, while the next
    build waits for it."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(3)  # checkpoints are written atomically: the retraining resumes from the last

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _train(arch: str, cfg: dict, out: str, threads: int, parent: int | None = None) -> dict:
    """Retrains ``arch`` into ``out`` with ``threads`` CPU threads; the model card's numbers.
    In a worker, ``parent`` is the build's pid (``exit_with``)."""
    import torch

    from stnas.core import dist
    from stnas.pipeline.retrain import retrain

    if parent is not None:
        exit_with(parent)
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out)
    card_file = out_dir / "model_card.json"
    if card_file.is_file():
        card = read_card(card_file)
    else:
        resumable = (out_dir / "config.yaml").is_file() and any((out_dir / "checkpoints").glob("step_*.pt"))
        if out_dir.exists() and not resumable:  # killed before its first checkpoint: start again
            shutil.rmtree(out_dir)
        card = retrain(arch, cfg, out_dir, resume=resumable, ctx=dist.setup(cfg["device"]))
    return {"top1": card["top1"], "test_loss": card["test_loss"], "wall_s": card["wall_s"],
            "images_per_s": card["images_per_s"], "train_images": card["train_images"], "threads": threads}


def _plan(args, space, recipe_cfg: dict) -> dict:
    budgets = [parse_count(b, "budget") for b in args.budgets.split(",")]
    archs = {}
    for b in budgets:  # one stream per budget, in draw order: a larger --n extends the list
        rng = np.random.default_rng([args.arch_seed, b])
        drawn: list[str] = []
        while len(drawn) < args.n:
            a = str(space.sample_constrained(rng, max_madds=b, min_madds=int(args.band * b) + 1))
            if a not in drawn:
                drawn.append(a)
        archs[str(b)] = drawn
    return {"format": TABLE_FORMAT + "-plan", "preset": args.preset, "space_fingerprint": space.fingerprint,
            "budgets": budgets, "band": args.band, "n": args.n, "arch_seed": args.arch_seed,
            "seeds": [int(s) for s in args.seeds.split(",")], "overrides": args.overrides,
            "recipe": recipe_cfg["retrain"], "archs": archs}


def _table(plan: dict, done: dict, space) -> dict:
    rows = []
    for b in plan["budgets"]:
        for arch in plan["archs"][str(b)]:
            per_seed = {str(s): done[(arch, s)] for s in plan["seeds"] if (arch, s) in done}
            if not per_seed:
                continue
            a = load_arch(arch, space)
            rows.append({"arch": arch, "budget": b, "madds": a.madds, "params": a.params, "seeds": per_seed})
    return {"format": TABLE_FORMAT, "version": VERSION, "preset": plan["preset"],
            "space_fingerprint": plan["space_fingerprint"], "budgets": plan["budgets"], "band": plan["band"],
            "recipe": plan["recipe"], "overrides": plan["overrides"], "seeds": plan["seeds"],
            "planned_networks": {str(b): len(plan["archs"][str(b)]) for b in plan["budgets"]}, "rows": rows}


def _recorded(path: Path, plan: dict) -> dict:
    """{(arch, seed): result} from an existing table of ``plan`` at ``path`` ({} if none)."""
    if not path.exists():
        return {}
    table = read_json(path, "ground-truth table", required=False)
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or not isinstance(table.get("rows"), list):
        raise StnasError(f"{path} is not a {TABLE_FORMAT} table; move it away or choose another --out")
    keys = ("preset", "space_fingerprint", "recipe", "overrides", "band")
    diff = sorted(k for k in keys if table.get(k) != json.loads(json.dumps(plan[k])))
    if not extends_seeds(table.get("seeds"), plan["seeds"]):
        diff.append("seeds")
    if diff:
        raise StnasError(f"{path} holds a table of another plan ({', '.join(diff)} differ); choose another --out")
    done = {}
    fields = ("top1", "test_loss", "wall_s", "images_per_s", "train_images", "threads")
    for r in table["rows"]:
        drawn = plan["archs"].get(str(r.get("budget")), [])
        if r.get("arch") not in drawn:
            raise StnasError(f"{path} holds {r.get('arch')!r} at budget {r.get('budget')}, which this plan "
                             f"does not draw (is --n smaller than the table's?)")
        for s, res in r.get("seeds", {}).items():
            if int(s) not in plan["seeds"] or not isinstance(res, dict) or not all(f in res for f in fields):
                raise StnasError(f"{path}: {r['arch']} seed {s} is not a result of this plan")
            done[(r["arch"], int(s))] = {f: res[f] for f in fields}
    return done


def build(args) -> None:
    if not (0 <= args.band < 1 and args.n >= 2 and args.jobs >= 1 and args.threads >= 0):
        raise StnasError("need 0 <= --band < 1, --n >= 2, --jobs >= 1, --threads >= 0")
    seeds = args.seeds.split(",")
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise StnasError(f"--seeds needs two or more different seeds, got {args.seeds!r}")
    space = load_space(args.preset)
    cfg = resolve(args.preset, overrides=args.overrides)
    plan = _plan(args, space, cfg)
    work = Path(args.work)
    plan_file = work / "plan.json"
    if plan_file.is_file():
        saved = read_json(plan_file, "ground-truth plan", required=False)
        new = json.loads(json.dumps(plan))
        diff = sorted(k for k in new if k not in ("n", "archs", "seeds") and saved.get(k) != new[k])
        if not extends_seeds(saved.get("seeds"), new["seeds"]):
            diff.append("seeds")
        if diff:
            raise StnasError(f"{plan_file} holds another plan ({', '.join(diff)} differ); choose another --work")
    done = _recorded(Path(args.out), plan)  # checked before anything is written
    work.mkdir(parents=True, exist_ok=True)
    write_json(plan_file, plan)  # the same plan, or one with more networks or seeds (extending the same draws)
    order = [(arch, s) for i in range(args.n) for b in plan["budgets"] for arch in [plan["archs"][str(b)][i]]
             for s in plan["seeds"] if (arch, s) not in done]
    tasks = {}
    for arch, s in order:
        c = resolve(args.preset, overrides=args.overrides + [f"seed={s}"])
        tasks[(arch, s)] = (arch, c, str(task_dir(work, arch, s)), args.threads)
    total = len(done) + len(tasks)
    t0 = time.time()

    def record(key, result):
        done[key] = result
        write_json(Path(args.out), _table(plan, done, space))
        print(f"[{len(done)}/{total}] {key[0]} seed {key[1]}: top-1 {result['top1']:.4f} "
              f"loss {result['test_loss']:.4f} ({result['wall_s']:.0f} s; {time.time() - t0:.0f} s in all)",
              flush=True)

    train_all(tasks, args.jobs, record)


def train_all(tasks: dict, jobs: int, record) -> None:
    """``_train(*tasks[key])`` for every key, ``jobs`` at a time (spawned processes that end
    with this one, ``exit_with``), each result passed to ``record(key, result)`` in key order."""
    if jobs <= 1 or len(tasks) <= 1:
        for key, task in tasks.items():
            record(key, _train(*task))
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(_train, *task, os.getpid()) for key, task in tasks.items()}
        try:
            for key, fut in futures.items():
                record(key, fut.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def seed_tau(rows: list[dict], metric: str, seeds: tuple[str, str], resamples: int = 2000) -> dict:
    """Kendall tau between two training seeds over the networks that have both, with a
    paired percentile bootstrap 95% interval (``scipy.stats.bootstrap``)."""
    pairs = [(r["seeds"][seeds[0]][metric], r["seeds"][seeds[1]][metric]) for r in rows
             if seeds[0] in r["seeds"] and seeds[1] in r["seeds"]]
    if len(pairs) < 4:
        return {"n": len(pairs), "tau": None, "ci": None}
    a, b = map(np.asarray, zip(*pairs))
    tau = kendall(a, b)
    with warnings.catch_warnings():  # resamples of tied values have no tau: dropped below
        warnings.simplefilter("ignore")
        dist = stats.bootstrap((a, b), kendall, paired=True,
                               vectorized=False, n_resamples=resamples, method="percentile",
                               random_state=np.random.default_rng(0)).bootstrap_distribution
    return {"n": len(pairs), "tau": float(tau), "ci": ci95(dist)}


def variance_components(rows: list[dict], metric: str, seeds: list[str], level: float = 0.95) -> dict:
    """Two-way (network x seed) random-effects components without interaction: a seed's
    effect shared by all networks is removed; noise_sd is the residual sd. ``ratio_ci`` is
    the classical ``level`` interval for R = arch sd / noise sd: MS_arch / MS_res is
    (1 + k R^2) times an F(n - 1, (n - 1)(k - 1)) variable, so its quantiles bound R."""
    full = [[r["seeds"][s][metric] for s in seeds] for r in rows if all(s in r["seeds"] for s in seeds)]
    if len(full) < 3 or len(seeds) < 2:
        return {"networks": len(full)}
    x = np.asarray(full, dtype=float)
    n, k = x.shape
    ms_arch, ms_res = two_way_mean_squares(x)
    arch_var = max(0.0, (ms_arch - ms_res) / k)
    out = {"networks": n, "arch_sd": float(np.sqrt(arch_var)), "noise_sd": float(np.sqrt(ms_res)),
           "ratio": float(np.sqrt(arch_var / ms_res)) if ms_res > 0 else None}
    if ms_res > 0:
        f, df = ms_arch / ms_res, (n - 1, (n - 1) * (k - 1))
        bounds = [f / stats.f.ppf(q, *df) for q in ((1 + level) / 2, (1 - level) / 2)]
        out["ratio_ci"] = [float(np.sqrt(max(0.0, (b - 1) / k))) for b in bounds]
    return out


def ceiling(ratio: float, seeds: int) -> float:
    """Kendall tau that a *perfect* proxy (one that ranks networks by their true architecture
    effect) reaches against a truth that is the mean of ``seeds`` training seeds, when
    architecture effects and seed noise are normal with sd ratio ``ratio`` (R): the truth
    correlates with the effect at sqrt(k R^2 / (1 + k R^2)), and for a bivariate normal
    tau = (2/pi) asin(r). With ``seeds=1`` and r = R^2 / (1 + R^2) instead, the same law
    gives the seed-to-seed tau (ground_truth.md)."""
    if ratio < 0 or seeds < 1:
        raise ValueError(f"ceiling needs ratio >= 0 and seeds >= 1, got {ratio}, {seeds}")
    r2 = seeds * ratio ** 2
    return float(2 / np.pi * np.arcsin(np.sqrt(r2 / (1 + r2))))


def summary(args) -> None:
    table = read_table(args.table)
    seeds = [str(s) for s in table["seeds"]]
    metrics = args.metrics.split(",")
    missing = sorted({m for r in table["rows"] for v in r["seeds"].values() for m in metrics if m not in v})
    if missing:
        raise StnasError(f"{args.table} has no {', '.join(missing)} for some results (--metrics)")
    out, extra = {"table": args.table, "budgets": {}}, []
    print(f"{'budget':>7} {'nets':>4} {'metric':>12} {'seed tau':>9} {'95% CI':>16} {'arch sd':>8} {'noise sd':>8} "
          f"{'ratio':>6} {'ratio 95% CI':>13} {'ceiling':>7}")
    for b in table["budgets"]:
        rows = [r for r in table["rows"] if r["budget"] == b]
        out["budgets"][str(b)] = {}
        for metric in metrics:
            t = seed_tau(rows, metric, (seeds[0], seeds[1]), args.resamples)
            v = variance_components(rows, metric, seeds[:2])
            if v.get("ratio") is not None:  # what a perfect proxy reaches on a two-seed-mean truth
                v["ceiling_tau"] = ceiling(v["ratio"], 2)
            out["budgets"][str(b)][metric] = {"seed_tau": t, "components": v}
            if len(seeds) >= 4:  # the truth of the networks with every seed, and its reliability
                out["budgets"][str(b)][metric]["all_seeds"] = every = all_seeds(rows, metric, seeds, args.resamples)
                extra.append((b, metric, every))
            ci = f"[{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}]" if t["ci"] else "-"
            tau = f"{t['tau']:+.2f}" if t["tau"] is not None else "-"
            ratio = f"{v['ratio']:.2f}" if v.get("ratio") is not None else "-"
            rci = "[{:.2f}, {:.2f}]".format(*v["ratio_ci"]) if "ratio_ci" in v else "-"
            print(f"{b / 1e6:>6.1f}M {t['n']:>4} {metric:>12} {tau:>9} {ci:>16} {v.get('arch_sd', float('nan')):>8.4f} "
                  f"{v.get('noise_sd', float('nan')):>8.4f} {ratio:>6} {rci:>13} "
                  f"{v.get('ceiling_tau', float('nan')):>+7.2f}")
    for b, metric, e in extra:
        h, v = e["halves_tau"], e["components"]
        if "arch_sd" not in v:  # fewer than 3 networks have every seed
            print(f"{b / 1e6:>6.1f}M {metric:>9}, all {len(seeds)} seeds: {v['networks']} networks, too few yet")
            continue
        ci = f"[{h['ci'][0]:+.2f}, {h['ci'][1]:+.2f}]" if h["ci"] else "-"
        tau = f"{h['tau']:+.2f}" if h["tau"] is not None else "-"
        ratio = f"{v['ratio']:.2f}" if v.get("ratio") is not None else "-"
        print(f"{b / 1e6:>6.1f}M {metric:>9}, all {len(seeds)} seeds: {v['networks']} networks, half-mean tau {tau} "
              f"{ci}, arch sd {v.get('arch_sd', float('nan')):.4f}, noise sd {v.get('noise_sd', float('nan')):.4f}, "
              f"ratio {ratio}, ceiling {v.get('ceiling_tau', float('nan')):+.2f}")
    if args.json:
        write_json(Path(args.json), out)


def all_seeds(rows: list[dict], metric: str, seeds: list[str], resamples: int = 2000) -> dict:
    """For the networks with every one of ``seeds``: the variance components, the ceiling on
    their all-seed mean, and the Kendall tau between the means of the first and the second
    half of the seeds (the reliability of a half-size truth; R x sqrt(k/2) under the normal
    model)."""
    full = [r for r in rows if all(s in r["seeds"] for s in seeds)]
    v = variance_components(full, metric, seeds)
    if v.get("ratio") is not None:
        v["ceiling_tau"] = ceiling(v["ratio"], len(seeds))
    half = len(seeds) // 2
    means = [{"seeds": {"a": {metric: float(np.mean([r["seeds"][s][metric] for s in seeds[:half]]))},
                        "b": {metric: float(np.mean([r["seeds"][s][metric] for s in seeds[half:2 * half]]))}}}
             for r in full]
    return {"seeds": seeds, "components": v, "halves": [seeds[:half], seeds[half:2 * half]],
            "halves_tau": seed_tau(means, metric, ("a", "b"), resamples)}


def recipe_tau(rows_a: list[dict], rows_b: list[dict], metric: str, resamples: int = 2000) -> dict:
    """Kendall tau between two recipes' seed-mean rankings of the networks both tables hold
    with every seed, with the paired bootstrap interval of ``seed_tau``."""
    def means(rows):
        return {r["arch"]: float(np.mean([v[metric] for v in r["seeds"].values()])) for r in rows if r["seeds"]}
    a, b = means(rows_a), means(rows_b)
    pairs = [{"seeds": {"a": {metric: a[k]}, "b": {metric: b[k]}}} for k in sorted(a.keys() & b.keys())]
    return seed_tau(pairs, metric, ("a", "b"), resamples)


def recipes(args) -> None:
    ta, tb = read_table(args.table), read_table(args.other)
    if ta["space_fingerprint"] != tb["space_fingerprint"]:
        raise StnasError(f"{args.table} and {args.other} are tables of different spaces")
    out = {"tables": [args.table, args.other], "budgets": {}}
    print(f"{'budget':>7} {'metric':>9} {'nets':>4} {'tau':>6} {'95% CI':>16}")
    def full(t: dict, budget: int) -> list[dict]:
        return [r for r in t["rows"] if r["budget"] == budget and len(r["seeds"]) == len(t["seeds"])]

    for b in ta["budgets"]:
        out["budgets"][str(b)] = {}
        for metric in ("top1", "test_loss"):
            t = recipe_tau(full(ta, b), full(tb, b), metric, args.resamples)
            out["budgets"][str(b)][metric] = t
            ci = f"[{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}]" if t["ci"] else "-"
            tau = f"{t['tau']:+.2f}" if t["tau"] is not None else "-"
            print(f"{b / 1e6:>6.1f}M {metric:>9} {t['n']:>4} {tau:>6} {ci:>16}")
    if args.json:
        write_json(Path(args.json), out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="retrain the planned networks (resumable)")
    b.add_argument("--preset", default="fashion-mnist")
    b.add_argument("--work", required=True, help="folder of the retrainings (resumed when rerun)")
    b.add_argument("--out", required=True, help="the table (JSON), rewritten after each retraining")
    b.add_argument("--budgets", default="4M,6M")
    b.add_argument("--band", type=float, default=0.8, help="networks have MAdds in (band*budget, budget]")
    b.add_argument("--n", type=int, default=10, help="networks per budget")
    b.add_argument("--seeds", default="0,1", help="training seeds")
    b.add_argument("--arch-seed", type=int, default=2026, help="seed of the architecture sample")
    b.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="recipe override, e.g. retrain.limit=null (repeatable)")
    b.add_argument("--jobs", type=int, default=2, help="retrainings at a time")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads per retraining")
    s = sub.add_parser("summary", help="seed-to-seed tau and variance components per budget")
    s.add_argument("table")
    s.add_argument("--resamples", type=int, default=2000)
    s.add_argument("--metrics", default="top1,test_loss",
                   help="per-seed metrics to read (truth_metrics.py adds test_loss_ts)")
    s.add_argument("--json", help="also write the summary here")
    r = sub.add_parser("recipes", help="tau between two tables' (recipes') seed-mean rankings")
    r.add_argument("table")
    r.add_argument("other")
    r.add_argument("--resamples", type=int, default=2000)
    r.add_argument("--json", help="also write the comparison here")
    args = ap.parse_args(argv)
    one_line_errors({"build": build, "recipes": recipes, "summary": summary}[args.cmd], args)


if __name__ == "__main__":
    main()
