"""Does SGLD sampling stabilize the share-parameter proxy? (issue 5; design.md section 4)

1. Ground truth: ``--n-archs`` architectures of the preset, drawn with a fixed seed and
   stratified by MAdds (``--draws`` uniform draws sorted by MAdds, cut into equal-count
   strata, one at random per stratum), each trained from scratch with ONE short recipe
   through ``stnas.pipeline.retrain.retrain`` (default overrides: retrain.epochs=2 retrain.limit=10000)
   with ``seed=1``; the test top-1 of its model card is the stand-alone accuracy (the test
   split is used only here, to judge the proxy). ``--n-seed2`` of them, spread over the
   strata, are trained again with ``seed=2``. Caveat: ``seed`` also seeds the stratified
   ``retrain.limit`` subset, so seed 2 trains on a different 10k subset too (model init,
   data order and subset all change), which makes the seed-to-seed ceiling a little
   pessimistic. Written to ``--truth-out`` (``stnas rank --truth`` reads it).
2. Supernets, all with the same steps, data, init and path sampling (config seed 0): plain
   SGD (``supernet.optimizer=sgd``, the closing phase at constant LR without noise) and
   SGLD in the closing phase at each of ``--temperatures`` (T=1 is the main SGLD run).
   Recipe: the preset's (fashion-mnist: 16 epochs over a 10k subset of search-train, the
   last pool.epochs=3 of them the sampling phase at constant LR supernet.min_lr, which
   fills a pool of ``--pool-samples``), changeable with ``--supernet-override``.
3. Proxies: every supernet is scored in the modes single / stabilized / averaged with
   ``stnas.proxy.scorer.Proxy`` on search-val; the K sweep (``--k-values``, ``proxy.samples``)
   runs on the SGD and the first-temperature (T=1) SGLD supernets. Per cell: Kendall tau,
   Spearman rho and top-5 overlap against the seed-1 truth (``stnas.analysis.ranking.rank_metrics``, bootstrap 95% over
   architectures) and rank stability: the mean Kendall tau between the rankings at
   consecutive points of the last ``--stability-points`` points (single: the last epoch
   weight files; stabilized: the running mean of the first k pool samples, as
   ``stnas.analysis.ranking.stability``'s pool_running_mean; averaged: the first k samples
   weight-averaged), k up to the cell's K; its 95% interval is a bootstrap over
   architectures (the same resample in every ranking). The ceiling: tau/rho between the
   seed-1 and seed-2 stand-alone accuracies.

Everything is cached under ``--work-dir``: finished retrain runs return their model card,
finished supernets are skipped, proxy scores live in each run's proxy_cache.jsonl (epoch
scores in proxy_quality_epochs.json), so a rerun only recomputes the statistics.
Outputs in ``--results-dir``: proxy_quality.json, proxy_quality.md (the table),
proxy_quality_scatter.png, proxy_quality_stability.png.

    python experiments/proxy_quality.py                  # full run, fashion-mnist (88 min measured
                                                        # on the 2-core CPU; docs/benchmarks.md)
    python experiments/proxy_quality.py --estimate       # only print the time estimate
    python experiments/proxy_quality.py --smoke --work-dir /tmp/pq --results-dir /tmp/pq/res
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from stnas.analysis.ranking import kendall, rank_metrics
from stnas.core.checkpoint import CheckpointManager
from stnas.core.fileio import write_text
from stnas.core.verified import read_json, write_json
from stnas.data.datasets import dataset_split
from stnas.pipeline.config import (
    ON_EXISTING_RUN,
    apply_layers,
    check_same_settings,
    load_run_config,
    resolve,
    user_layers,
)
from stnas.pipeline.retrain import CARD, retrain
from stnas.pipeline.search import proxy_for_run
from stnas.pipeline.settings import data_spec
from stnas.pipeline.supernet import train_supernet
from stnas.proxy.scorer import Proxy
from stnas.space.catalog import load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors

HERE = Path(__file__).resolve().parent
GT_DEFAULT = ["retrain.epochs=2", "retrain.limit=10000", "retrain.progress=false"]
# the proxies of this experiment are search-val top-1, judged against test top-1 (issue 5),
# whatever metric the preset scores by
SN_DEFAULT = ["supernet.progress=false", "supernet.keep_epoch_weights=true", "proxy.metric=top1"]
SMOKE = {"preset": "digits", "n_archs": 6, "n_seed2": 3, "draws": 500, "pool_samples": 3, "temperatures": "1,10",
         "k_values": "2,3", "n_boot": 200, "gt_base": ["retrain.epochs=2", "retrain.progress=false"],
         "sn_base": ["supernet.epochs=6", "pool.epochs=2"]}
# speeds measured on the 2-core machine (fashion-mnist preset), for the a-priori estimate
RETRAIN_IMG_S, RETRAIN_OVERHEAD_S, SUPERNET_S_PER_10K, PROXY_EVAL_S = 900.0, 6.0, 17.0, 0.5


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = ap.add_argument
    a("--preset", default="fashion-mnist", help="search space preset (default fashion-mnist)")
    a("--n-archs", type=int, default=40, help="ground-truth architectures (default 40)")
    a("--n-seed2", type=int, default=10, help="of these, trained again with seed 2 (default 10)")
    a("--draws", type=int, default=5000, help="uniform draws the MAdds strata are cut from (default 5000)")
    a("--arch-seed", type=int, default=0, help="seeds the architecture draw (default 0)")
    a("--gt-override", action="append", default=[], metavar="KEY=VALUE",
      help=f"ground-truth recipe override, repeatable, applied after {' '.join(GT_DEFAULT)}")
    a("--supernet-override", action="append", default=[], metavar="KEY=VALUE",
      help="supernet config override for every supernet, repeatable (default: the preset's settings)")
    a("--pool-samples", type=int, default=8, help="pool.samples K of every supernet (default 8)")
    a("--temperatures", default="1,10,100,1000",
      help="SGLD temperatures, one supernet each (default 1,10,100,1000)")
    a("--k-values", default="2,4,8", help="proxy.samples sweep on the SGD and the first-temperature SGLD supernets "
                               "(default 2,4,8; the pool size is always a row)")
    a("--stability-points", type=int, default=5, help="consecutive points the stability uses (default 5)")
    a("--top-k", type=int, default=5, help="top-k overlap size (default 5)")
    a("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    a("--work-dir", help="runs and caches (default runs/proxy_quality; --smoke: runs/proxy_quality_smoke)")
    a("--results-dir", help="table, JSON and plots (default experiments/results; --smoke: WORK_DIR/results)")
    a("--truth-out", help="ground-truth JSON (default experiments/data/proxy_quality_truth.json; "
                          "--smoke: RESULTS_DIR/proxy_quality_truth.json)")
    a("--smoke", action="store_true", help="tiny version on the digits preset (about a minute)")
    a("--estimate", action="store_true", help="print the time estimate of the remaining work and exit")
    args = ap.parse_args(argv)
    args.gt_base, args.sn_base = GT_DEFAULT, []
    if args.smoke:
        for key, value in SMOKE.items():
            if key in ("gt_base", "sn_base") or ap.get_default(key) == getattr(args, key):
                setattr(args, key, value)
    args.work_dir = Path(args.work_dir or ("runs/proxy_quality_smoke" if args.smoke else "runs/proxy_quality"))
    args.results_dir = Path(args.results_dir or (args.work_dir / "results" if args.smoke else HERE / "results"))
    args.truth_out = Path(args.truth_out or (args.results_dir / "proxy_quality_truth.json" if args.smoke
                                             else HERE / "data" / "proxy_quality_truth.json"))
    args.temperatures = [float(t) for t in args.temperatures.split(",")]
    args.k_values = sorted({int(k) for k in args.k_values.split(",")})
    if not 1 <= args.n_seed2 <= args.n_archs or args.n_archs < 3 or args.stability_points < 2:
        ap.error("need --n-archs >= 3, 1 <= --n-seed2 <= --n-archs, --stability-points >= 2")
    if max(args.k_values) > args.pool_samples or min(args.k_values) < 1:
        ap.error(f"--k-values must lie in 1..--pool-samples ({args.pool_samples})")
    return args


# ---------------------------------------------------------------------------- plan
def draw_archs(space, n: int, draws: int, seed: int, mode: str) -> list:
    """``n`` architectures stratified by MAdds: one at random from each of n equal-count strata."""
    rng = np.random.default_rng(seed)
    pool = list(dict.fromkeys(space.sample(rng, mode) for _ in range(draws)))
    pool.sort(key=lambda a: (a.madds, str(a)))
    return [pool[int(rng.choice(s))] for s in np.array_split(np.arange(len(pool)), n)]


def supernet_configs(args) -> dict[str, dict]:
    """name -> resolved config; the first two are the K-sweep pair (SGD, SGLD at the first T)."""
    base = SN_DEFAULT + args.sn_base + [f"pool.samples={args.pool_samples}"] + args.supernet_override
    out = {"sgd": resolve(args.preset, overrides=base + ["supernet.optimizer=sgd"])}
    for t in args.temperatures:
        sgld = ["supernet.optimizer=sgld", f"sgld.temperature={t}"]
        out[f"sgld_T{t:g}"] = resolve(args.preset, overrides=base + sgld)
    return out


def noise_std(cfg: dict, n: int) -> float:
    """Per-step SGLD noise std: sqrt((1-beta) * eta * s), s = noise_scale or 2T/N (stnas.train.sgld)."""
    s, p = cfg["sgld"], cfg["pool"]
    eta = p["lr"] if p["lr"] is not None else cfg["supernet"]["min_lr"]
    scale = s["noise_scale"] if s["noise_scale"] is not None else 2 * s["temperature"] / n
    return math.sqrt((1 - s["momentum"]) * eta * scale)


def points(k: int, p: int) -> list[int]:
    return list(range(max(1, k - p + 1), k + 1))


def plan_cells(args, names: list[str], pool_k: int) -> list[tuple[str, str, int | None]]:
    """(supernet, mode, K) of every table row."""
    cells = []
    for i, name in enumerate(names):
        ks = sorted(set(args.k_values) | {pool_k}) if i < 2 else [pool_k]
        cells += [(name, "single", None)] + [(name, m, k) for m in ("stabilized", "averaged") for k in ks]
    return cells


def estimate(args, cfg_gt: dict, sn_cfgs: dict, space, cells, seed2: list[int]) -> dict:
    """Seconds of remaining work by phase, from the machine's known speeds (fashion-mnist)."""
    from stnas.data.datasets import get_dataset

    d = cfg_gt["data"]
    n_train = len(get_dataset(d["dataset"], "train", d["root"], limit=cfg_gt["retrain"]["limit"]))
    per_retrain = cfg_gt["retrain"]["epochs"] * n_train / RETRAIN_IMG_S + RETRAIN_OVERHEAD_S
    todo = [(1, i) for i in range(args.n_archs)] + [(2, i) for i in seed2]
    gt = sum(not (gt_dir(args, s, i) / CARD).is_file() for s, i in todo) * per_retrain
    sn, ev = 0.0, 0
    for name, cfg in sn_cfgs.items():
        run = args.work_dir / f"supernet_{name}"
        if not (run / "supernet.safetensors").is_file():
            n = len(dataset_split(data_spec(cfg), space, "search-train", data_spec(cfg).limit))
            sn += (cfg["supernet"]["epochs"] * n + cfg["pool"]["extra_steps"] * cfg["supernet"]["batch_size"]) \
                / 1e4 * SUPERNET_S_PER_10K
        ks = [k for s, m, k in cells if s == name and m != "single"]
        avg = {p for k in ks for p in points(k, args.stability_points)}
        need = args.n_archs * (1 + min(args.stability_points, cfg["supernet"]["epochs"]) + max(ks) + len(avg))
        cache, epochs = run / "proxy_cache.jsonl", run / "proxy_quality_epochs.json"
        done = len(cache.read_text().splitlines()) if cache.is_file() else 0
        done += len(read_json(epochs, "epoch scores", required=False)) * args.n_archs if epochs.is_file() else 0
        ev += max(0, need - done)
    return {"ground_truth_s": gt, "supernets_s": sn, "proxy_s": ev * PROXY_EVAL_S, "proxy_evaluations": ev,
            "total_s": gt + sn + ev * PROXY_EVAL_S, "retrain_s_each": per_retrain}


# ---------------------------------------------------------------------------- running
class Eta:
    """Progress lines with elapsed time and a remaining-time estimate for one phase."""

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done, self.t0 = what, total, 0, time.perf_counter()

    def step(self, msg: str, cached: bool = False) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        left = el / self.done * (self.total - self.done)
        print(f"[{self.what} {self.done}/{self.total}] {msg}{'  (cached)' if cached else ''}  "
              f"{el / 60:.1f} min, ~{left / 60:.1f} min left", flush=True)


def gt_dir(args, seed: int, i: int) -> Path:
    return args.work_dir / "gt" / f"seed{seed}" / f"arch_{i:02d}"


def run_retrain(arch, cfg: dict, out: Path, work: dict) -> dict:
    if (out / CARD).is_file():
        return retrain(arch, cfg, out, resume=True) | {"cached": True}  # checks it was made with cfg
    resume = bool(CheckpointManager(out).checkpoints()) and (out / "arch.json").is_file()
    work["retrained"] += 1
    return retrain(arch, cfg, out, resume=resume)


def run_supernet(cfg: dict, run: Path, work: dict) -> tuple[dict, bool]:
    if (run / "supernet.safetensors").is_file():
        check_same_settings(run, cfg, ON_EXISTING_RUN["supernet"]["keep"])
        return read_json(run / "supernet.json", "supernet summary"), True
    ckpt = run / "checkpoints"
    if ckpt.is_dir() and not any(ckpt.iterdir()):
        ckpt.rmdir()  # killed before its first checkpoint: start afresh
    work["supernets_trained"] += 1
    return train_supernet(cfg, run, resume=bool(CheckpointManager(run).checkpoints())), False


def proxy_for(run: Path, k: int | None) -> Proxy:
    cfg = apply_layers(load_run_config(run), user_layers(overrides=[f"proxy.samples={k if k else 'null'}"]))
    return proxy_for_run(run, cfg, mode="single")


def epoch_scores(run: Path, archs: list, last: int, work: dict) -> tuple[list[int], list[list[float]]]:
    """Single-mode scores under each of the last ``last`` epoch weight files (cached in the run)."""
    from safetensors.torch import load_file

    files = sorted((run / "epochs").glob("epoch_*.safetensors"))[-last:]
    proxy, path = proxy_for(run, None), run / "proxy_quality_epochs.json"
    cache = read_json(path, "epoch scores", required=False) if path.is_file() else {}
    names, scores = [], []
    for f in files:
        key = hashlib.sha256(json.dumps([proxy.settings, hashlib.sha256(f.read_bytes()).hexdigest(),
                                         [str(a) for a in archs]]).encode()).hexdigest()[:16]
        if key not in cache:
            cache[key] = [s.score for s in proxy.evaluate_weights(load_file(f), archs)]
            work["proxy_evaluations"] += len(archs)
            write_json(path, cache)
        names.append(int(f.stem.split("_")[1]))
        scores.append(cache[key])
    return names, scores


def chain_stability(labels: list, scores: list[list[float]], n_boot: int, seed: int = 0) -> dict:
    """Mean Kendall tau between consecutive rankings; 95% bootstrap over architectures."""
    s = np.asarray(scores, float)
    if len(s) < 2:
        return {"points": labels, "pairs": [], "value": math.nan, "lo": math.nan, "hi": math.nan}

    def mean_tau(idx):
        taus = [kendall(s[i, idx], s[i + 1, idx]) for i in range(len(s) - 1)]
        return float(np.nanmean(taus)) if not all(map(math.isnan, taus)) else math.nan

    pairs = [{"from": labels[i], "to": labels[i + 1], "tau": kendall(s[i], s[i + 1])} for i in range(len(s) - 1)]
    rng = np.random.default_rng(seed)
    boot = np.array([mean_tau(i) for i in rng.integers(0, s.shape[1], (n_boot, s.shape[1]))])
    boot = boot[~np.isnan(boot)]
    lo, hi = np.percentile(boot, [2.5, 97.5]) if len(boot) else (math.nan, math.nan)
    return {"points": labels, "pairs": pairs, "value": mean_tau(np.arange(s.shape[1])), "lo": float(lo),
            "hi": float(hi), "n_boot": n_boot, "interval": "bootstrap over architectures"}


def score_cells(args, cells, archs, truth, work) -> list[dict]:
    out, eta = [], Eta("proxy", len(cells))
    for name, mode, k in cells:
        run = args.work_dir / f"supernet_{name}"
        before = work["proxy_evaluations"]
        if mode == "single":
            proxy = proxy_for(run, None)
            scores = proxy.score(archs, "single")
            labels, chain = epoch_scores(run, archs, args.stability_points, work)
            kind = "last epoch weight files"
        else:
            proxy = proxy_for(run, k)
            scores = proxy.score(archs, mode)
            labels = points(k, args.stability_points)
            if mode == "stabilized":
                per = np.array([s.per_sample for s in scores])
                chain = (np.cumsum(per, 1) / np.arange(1, k + 1))[:, [p - 1 for p in labels]].T.tolist()
                kind = "running mean of the first k pool samples"
            else:
                chain = []
                for p in labels:
                    px = proxy_for(run, p)
                    chain.append([s.score for s in px.score(archs, "averaged")])
                    work["proxy_evaluations"] += px.evaluations
                kind = "average of the first k pool samples"
        work["proxy_evaluations"] += proxy.evaluations
        vals = [s.score for s in scores]
        cell = {"supernet": name, "mode": mode, "k": k, "scores": vals, "std": [s.std for s in scores],
                "metrics": rank_metrics(vals, truth, args.top_k, args.n_boot, seed=0),
                "stability": chain_stability(labels, chain, args.n_boot) | {"kind": kind}}
        out.append(cell)
        eta.step(f"{name} {mode} K={k or '-'}: tau {cell['metrics']['kendall_tau']['value']:+.3f}, "
                 f"stability {cell['stability']['value']:+.3f}", cached=work["proxy_evaluations"] == before)
    return out


# ---------------------------------------------------------------------------- outputs
def fmt(m: dict, sign: str = "+") -> str:
    f = lambda v: "n/a" if v is None or math.isnan(v) else f"{v:{sign}.2f}"  # noqa: E731
    return f"{f(m['value'])} [{f(m['lo'])}, {f(m['hi'])}]"


def label(name: str) -> str:
    return "SGD" if name == "sgd" else f"SGLD T={name.split('_T')[1]}"


def table(cells: list[dict], ceiling: dict, baselines: dict, sn: dict, cmd: str, top_k: int,
          truth_path: str) -> str:
    rows = ["| supernet | proxy | K | Kendall τ [95% CI] | Spearman ρ [95% CI] | "
            f"top-{top_k} overlap [95% CI] | stability τ [95% CI] |", "|---" * 7 + "|"]
    for c in cells:
        m = c["metrics"]
        rows.append(f"| {label(c['supernet'])} | {c['mode']} | {c['k'] or '–'} | {fmt(m['kendall_tau'])} | "
                    f"{fmt(m['spearman_rho'])} | {fmt(m['top_k_overlap'], '')} | {fmt(c['stability'])} |")
    for name, m in baselines.items():
        rows.append(f"| zero-cost baseline | {name} | – | {fmt(m['kendall_tau'])} | {fmt(m['spearman_rho'])} | "
                    f"{fmt(m['top_k_overlap'], '')} | – |")
    m = ceiling
    rows.append(f"| ceiling (n={m['n']}) | stand-alone seed 2 vs seed 1 | – | {fmt(m['kendall_tau'])} | "
                f"{fmt(m['spearman_rho'])} | {fmt(m['top_k_overlap'], '')} | – |")
    noise = ", ".join(f"{label(n)}: {v['noise_std']:.2e}" for n, v in sn.items() if n != "sgd")
    return "\n".join(rows) + (
        f"\n\nFidelity against the seed-1 stand-alone test top-1 of {cells[0]['metrics']['n']} architectures; "
        f"intervals: 95% percentile bootstrap over architectures. Zero-cost baselines rank by the "
        f"architecture's MAdds or parameter count alone (no supernet). Stability: mean Kendall τ between "
        f"consecutive rankings at the last points (single: epoch weight files; stabilized: running mean of "
        f"the first k samples; averaged: weights of the first k samples averaged). SGLD noise std per step "
        f"(sqrt((1-β)·2ηT/N)): {noise}.\n\nCommand:\n\n    {cmd}\n\nGround truth: {truth_path} "
        f"(`stnas rank RUN_DIR --truth {truth_path}` reproduces a row).\n")


def plots(cells: list[dict], truth, gt2: dict, out: Path) -> None:
    import matplotlib.pyplot as plt

    from stnas.pipeline.plots import save_figure

    panels = cells + [None]
    cols = 4
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax, c in zip(axes.flat, panels):
        if c is None:
            ax.scatter(gt2["seed1"], gt2["seed2"], s=12, color="tab:gray")
            ax.set_title(f"ceiling: seed 2 vs 1, τ {gt2['tau']:+.2f}", fontsize=8)
            ax.set_ylabel("seed-2 top-1", fontsize=7)
        else:
            ax.scatter(truth, c["scores"], s=12)
            ax.set_title(f"{label(c['supernet'])} {c['mode']} K={c['k'] or '-'}: "
                         f"τ {c['metrics']['kendall_tau']['value']:+.2f}", fontsize=8)
            ax.set_ylabel("proxy score", fontsize=7)
        ax.set_xlabel("stand-alone top-1", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, out / "proxy_quality_scatter.png")
    from matplotlib.ticker import MaxNLocator

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(dict.fromkeys(c["supernet"] for c in cells))
    for c in cells:
        pairs = c["stability"]["pairs"]
        xs, ys = [p["to"] for p in pairs], [p["tau"] for p in pairs]
        color = plt.get_cmap("tab10")(names.index(c["supernet"]) % 10)
        if c["mode"] == "single":
            a1.plot(xs, ys, "o-", color=color, label=label(c["supernet"]))
        elif c["k"] == max(d["k"] or 0 for d in cells if d["supernet"] == c["supernet"]):
            a2.plot(xs, ys, "o-" if c["mode"] == "stabilized" else "s--", color=color,
                    label=f"{label(c['supernet'])} {c['mode']}")
    a1.set(xlabel="epoch", ylabel="Kendall τ with the previous point", title="single: epoch weights")
    a2.set(xlabel="pool samples k", title="stabilized / averaged: first k samples")
    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, out / "proxy_quality_stability.png")


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (for the committed table)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    return [finite(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


# ---------------------------------------------------------------------------- main
def main(argv=None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    cmd = " ".join(shlex.quote(a) for a in ["python", "experiments/proxy_quality.py",
                                                  *(sys.argv[1:] if argv is None else argv)])
    gt_over = args.gt_base + args.gt_override
    cfg_gt = {s: resolve(args.preset, overrides=gt_over + [f"seed={s}"]) for s in (1, 2)}
    sn_cfgs = supernet_configs(args)
    space = load_space(args.preset)
    archs = draw_archs(space, args.n_archs, args.draws, args.arch_seed, cfg_gt[1]["supernet"]["sampling"])
    seed2 = [i * args.n_archs // args.n_seed2 for i in range(args.n_seed2)]
    pool_k = next(iter(sn_cfgs.values()))["pool"]["samples"]
    if max(args.k_values) > pool_k:
        sys.exit(f"error: --k-values exceed pool.samples={pool_k}")
    cells = plan_cells(args, list(sn_cfgs), pool_k)
    est = estimate(args, cfg_gt[1], sn_cfgs, space, cells, seed2)
    print(f"plan: {args.n_archs} archs ({args.n_seed2} twice), {len(sn_cfgs)} supernets, {len(cells)} cells; "
          f"estimate of the remaining work on a 2-core CPU: {est['total_s'] / 60:.0f} min (ground truth "
          f"{est['ground_truth_s'] / 60:.0f}, supernets {est['supernets_s'] / 60:.0f}, proxy "
          f"{est['proxy_s'] / 60:.0f} for {est['proxy_evaluations']} evaluations)", flush=True)
    if args.estimate:
        return
    work = {"retrained": 0, "supernets_trained": 0, "proxy_evaluations": 0}
    timing = {}

    eta, results, t = Eta("ground truth", args.n_archs + len(seed2)), [], time.perf_counter()
    for i, arch in enumerate(archs):
        card = run_retrain(arch, cfg_gt[1], gt_dir(args, 1, i), work)
        results.append({"arch": str(arch), "madds": arch.madds, "params": arch.params, "top1": card["top1"]})
        eta.step(f"seed 1 arch {i:02d} {arch} {arch.madds / 1e6:.2f}M: top-1 {card['top1']:.4f}", card.get("cached"))
    for i in seed2:
        card = run_retrain(archs[i], cfg_gt[2], gt_dir(args, 2, i), work)
        results[i]["top1_seed2"] = card["top1"]
        eta.step(f"seed 2 arch {i:02d}: top-1 {card['top1']:.4f}", card.get("cached"))
    timing["ground_truth_s"] = time.perf_counter() - t
    write_json(args.truth_out, {"format": "stnas-truth", "version": 1, "preset": args.preset, "command": cmd,
                                "recipe": cfg_gt[1]["retrain"], "data": cfg_gt[1]["data"], "seeds": [1, 2],
                                "results": results})
    truth = [r["top1"] for r in results]

    eta, sn, t = Eta("supernet", len(sn_cfgs)), {}, time.perf_counter()
    for name, cfg in sn_cfgs.items():
        summary, cached = run_supernet(cfg, args.work_dir / f"supernet_{name}", work)
        std = noise_std(cfg, summary["train_images"]) if cfg["supernet"]["optimizer"] == "sgld" else 0.0
        sn[name] = {"optimizer": cfg["supernet"]["optimizer"], "temperature": cfg["sgld"]["temperature"],
                    "noise_std": std, "summary": summary,
                    "config": {k: cfg[k] for k in ("supernet", "sgld", "pool", "proxy", "data")}}
        eta.step(f"{name}: {summary['steps']} steps, {summary['wall_s']:.0f} s, noise std/step {std:.2e}", cached)
    timing["supernets_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scored = score_cells(args, cells, archs, truth, work)
    timing["proxy_s"] = time.perf_counter() - t
    pairs = [(results[i]["top1"], results[i]["top1_seed2"]) for i in seed2]
    s1, s2 = [p[0] for p in pairs], [p[1] for p in pairs]
    ceiling = rank_metrics(s2, s1, args.top_k, args.n_boot, seed=0)
    baselines = {"MAdds": rank_metrics([r["madds"] for r in results], truth, args.top_k, args.n_boot, seed=0),
                 "params": rank_metrics([r["params"] for r in results], truth, args.top_k, args.n_boot, seed=0)}
    timing["total_s"] = time.perf_counter() - t0

    truth_name = shown(args.truth_out)
    md = table(scored, ceiling, baselines, sn, cmd, args.top_k, truth_name)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    write_text(args.results_dir / "proxy_quality.md", md)
    write_json(args.results_dir / "proxy_quality.json", finite({
        "format": "stnas-proxy-quality", "version": 1, "command": cmd, "preset": args.preset,
        "truth": truth_name, "archs": results, "seed2_indices": seed2, "ceiling": ceiling,
        "zero_cost_baselines": baselines,
        "supernets": sn, "cells": scored, "estimate_at_start": est, "timing": timing, "work": work,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}))
    plots(scored, truth, {"seed1": s1, "seed2": s2, "tau": ceiling["kendall_tau"]["value"]}, args.results_dir)
    print("\n" + md)
    print(f"done in {timing['total_s'] / 60:.1f} min; this run: {work['retrained']} retrains, "
          f"{work['supernets_trained']} supernets, {work['proxy_evaluations']} proxy evaluations", flush=True)


if __name__ == "__main__":
    one_line_errors(main)  # bad input or a cached run made with other settings: one line, exit 2
