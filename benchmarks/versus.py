"""stnas's picks against the standard networks that fit the same budgets (issue 35; the study's
rules: docs/experiments/baselines.md, with its dated amendment).

Every network is trained by the product's own machinery (:mod:`stnas.pipeline.baselines`:
``train_baseline`` for a baseline, ``retrain`` for a pick) with the dataset preset's ``retrain``
recipe and evaluated by the same BN-recalibrated test (``recalibrated_test``). Everything is
cached under ``--root`` (a run directory per network and seed), so a killed run continues where
it stopped and a later phase reuses what an earlier one trained.

Phases (``--phase``, in this order; ``all`` runs the first three):

* ``seed0``: every registered baseline (both forms) that fits a budget, and each pick, under seed 0.
* ``seeds``: seeds 1 and 2 for the picks and for the two baselines of each budget with the
  highest seed-0 top-1 (the amendment's rule 2).
* ``picks``: the picks alone under every seed (a second process can train them meanwhile:
  a network's run directory is locked while it trains).
* ``latency``: every trained network measured in one session (the latency tables' settings),
  then the latency budgets (the best baseline's median per MAdds budget) are printed; the
  latency picks (``--latency-pick LABEL=ARCH``, from ``stnas search RUN --latency-budget``)
  and the top two baselines within each latency budget are trained under three seeds.
* ``random``: item 4 of the issue (amendment 2): per MAdds budget, the median-MAdds network of
  ``RANDOM_DRAWS`` draws of the search's sampler within the budget's window, in the pick's space
  (numpy ``default_rng(0)``; the lower median, 8 being even), trained under every seed like a pick.
* ``report``: the table (printed) and the JSON (``--json``): per budget every row's mean top-1,
  test loss and sd, MAdds, params, measured latency and train time; the best baseline; the paired
  95% t-intervals (df = seeds − 1) of pick − best in top-1 and best − pick in test loss
  (positive favours stnas), and the verdict of the pre-registered rule; where the median random
  network was trained, what the space gives (median random − best) and what the search gives
  (pick − median random), each with its interval.

    python benchmarks/versus.py --data fashion-mnist --budgets 2M,4M,6M \\
        --pick 2M=RUN_2M --pick 4M=RUN --pick 6M=RUN --root /work/runs/versus-fm --phase all
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from stnas.core import dist
from stnas.core.rundir import RunDir
from stnas.core.units import fmt_count, parse_budget
from stnas.core.verified import read_json, write_json
from stnas.deploy.export import arch_slug
from stnas.nn.baselines import build, cost
from stnas.nn.model import build_model
from stnas.pipeline.baselines import (
    evaluate_pick,
    input_shape,
    measure_latency,
    plan,
    preset_for,
    seeded,
    train_baseline,
)
from stnas.pipeline.calibrate import floor_of
from stnas.pipeline.config import resolve
from stnas.pipeline.report import read_report
from stnas.pipeline.retrain import retrain
from stnas.space.catalog import load_arch, load_space

SEEDS = (0, 1, 2)
RANDOM_DRAWS = 8  # item 4: the median-MAdds network of this many draws (amendment 2)
TOP = 2  # baselines per budget trained under every seed (amendment rule 2)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def space_of(arch: str) -> str:
    return arch.split(":", 1)[0]


def run_pick(run_dir: str, label: str) -> str:
    """The architecture ``stnas run`` chose in ``run_dir`` for the budget ``label``."""
    for c in read_report(run_dir)["chosen"]:
        if c["budget"] == parse_budget(label).madds or c.get("target") == label:
            return c["arch"]
    raise SystemExit(f"{run_dir} chose nothing for budget {label}")


class Bench:
    def __init__(self, args):
        self.args, self.root = args, Path(args.root)
        self.cfg = resolve(args.preset or preset_for(args.data), None, {"data.dataset": args.data},
                           list(args.set or []))
        self.ctx = dist.setup(self.cfg["device"])
        self.budgets = [parse_budget(b) for b in args.budgets.split(",")]
        self.shape = input_shape(self.cfg, load_space(self.cfg["preset"]))
        self.plans = {p["budget"].label: p for p in plan(self.cfg, self.budgets, self.shape)}
        self.picks = dict(args.picks)
        self.done: dict = {}  # (network key or arch, seed) -> its result: each run read once

    # ------------------------------------------------------------ trainings (cached)
    def baseline(self, b, seed: int) -> dict:
        if (b.key, seed) in self.done:
            return self.done[(b.key, seed)]
        card = train_baseline(b, seeded(self.cfg, seed), self.root / b.key / f"seed_{seed}", self.ctx)
        log(f"  {b.name} seed {seed}: top-1 {card['top1']:.4f} loss {card['test_loss']:.4f} "
            f"({card['wall_s']:.0f} s)")
        self.done[(b.key, seed)] = {"top1": card["top1"], "test_loss": card["test_loss"], "wall_s": card["wall_s"],
                                    "top1_before_recal": card["top1_before_recal"]}
        return self.done[(b.key, seed)]

    def pick(self, arch: str, seed: int) -> dict:
        if (arch, seed) in self.done:
            return self.done[(arch, seed)]
        pcfg = copy.deepcopy(self.cfg)
        pcfg["preset"] = space_of(arch)
        c = seeded(pcfg, seed)
        base = self.root / f"pick-{arch_slug(load_arch(arch))}"
        src = base / f"seed_{seed}"
        card = retrain(arch, c, src, resume=RunDir(src).config.is_file(), ctx=self.ctx)
        res = evaluate_pick(arch, src, c, base / f"eval_seed_{seed}.json", self.ctx)
        log(f"  pick {arch} seed {seed}: top-1 {res['top1']:.4f} loss {res['test_loss']:.4f} "
            f"({card['wall_s']:.0f} s)")
        self.done[(arch, seed)] = {"top1": res["top1"], "test_loss": res["test_loss"], "wall_s": card["wall_s"],
                                   "top1_before_recal": res["top1_before_recal"]}
        return self.done[(arch, seed)]

    def networks(self, label: str) -> list:
        return self.plans[label]["networks"]

    def top(self, nets: list) -> list:
        return sorted(nets, key=lambda b: -self.baseline(b, 0)["top1"])[:TOP]

    # ------------------------------------------------------------ phases
    def seed0(self):
        for label, arch in self.picks.items():
            log(f"pick {label}")
            self.pick(arch, 0)
        seen = set()
        for label in self.plans:
            for b in self.networks(label):
                if b.key not in seen:
                    seen.add(b.key)
                    self.baseline(b, 0)

    def seeds(self):
        for arch in self.picks.values():
            for s in SEEDS[1:]:
                self.pick(arch, s)
        for label in self.plans:
            for b in self.top(self.networks(label)):
                for s in SEEDS[1:]:
                    self.baseline(b, s)

    def pick_seeds(self):
        for arch in [*self.picks.values(), *dict(self.args.latency_picks).values()]:
            for s in SEEDS:
                self.pick(arch, s)

    def median_random(self, label: str) -> str:
        """Item 4's network for budget ``label``: the lower median by MAdds of the search sampler's
        draws within the budget's window ``[floor × B, B]``, in the space of the budget's pick."""
        space = load_space(space_of(self.picks[label]))
        b, se = parse_budget(label).madds, self.cfg["search"]
        rng = np.random.default_rng(0)
        draws = [space.sample_constrained(rng, b, floor_of(se, b), se["max_params"]) for _ in range(RANDOM_DRAWS)]
        return str(sorted(draws, key=lambda a: a.madds)[(RANDOM_DRAWS - 1) // 2])

    def randoms(self):
        for label in self.picks:
            arch = self.median_random(label)
            log(f"{label}: median random network {arch}")
            for s in SEEDS:
                self.pick(arch, s)

    def all_nets(self) -> dict:
        return {b.key: b for p in self.plans.values() for b in p["networks"]}

    def latency(self) -> dict:
        side = (self.shape[0], self.shape[1], self.shape[1])
        models = {k: (lambda b=b: build(b), side) for k, b in self.all_nets().items()}
        archs = {**self.picks, **dict(self.args.latency_picks)}
        models.update({f"stnas:{a}": (lambda a=a: build_model(load_arch(a)), side) for a in archs.values()})
        return measure_latency(models, self.cfg["latency"], self.root / "latency.json")

    # ------------------------------------------------------------ the table
    def row(self, name, kind, seeds_res, madds, params, lat) -> dict:
        xs = [seeds_res[s] for s in sorted(seeds_res)]

        def sd(k):
            return statistics.stdev([x[k] for x in xs]) if len(xs) > 1 else None
        return {"name": name, "kind": kind, "madds": madds, "params": params,
                "latency_ms": lat["median_ms"] if lat else None,
                "latency_iqr_ms": lat["iqr_ms"] if lat else None,
                "top1": statistics.fmean(x["top1"] for x in xs), "top1_sd": sd("top1"),
                "test_loss": statistics.fmean(x["test_loss"] for x in xs), "test_loss_sd": sd("test_loss"),
                "train_s": statistics.median(x["wall_s"] for x in xs),
                "seeds": {str(s): seeds_res[s] for s in sorted(seeds_res)}}

    def compare(self, label: str, pick_arch: str | None, nets: list, lat: dict) -> dict:
        """One budget's table and the paired intervals of the pick against the best baseline."""
        rows, pick = [], None
        if pick_arch:
            a = load_arch(pick_arch)
            pick = {s: self.pick(pick_arch, s) for s in SEEDS}
            rows.append({**self.row(f"stnas {pick_arch}", "stnas", pick, a.madds, a.params,
                                    lat.get(f"stnas:{pick_arch}")), "arch": pick_arch})
        top = {b.key for b in self.top(nets)}
        for b in nets:
            res = {s: self.baseline(b, s) for s in (SEEDS if b.key in top else (0,))}
            m, p = cost(b)
            rows.append({**self.row(b.name, "baseline", res, m, p, lat.get(b.key)), "key": b.key,
                         "form": b.form, "top2_seed0": b.key in top})
        full = [r for r in rows if r["kind"] == "baseline" and r["top2_seed0"]]
        best = max(full, key=lambda r: r["top1"]) if full else None
        out = {"budget": label, "rows": rows, "best_baseline": best["name"] if best else None}
        if pick and best:
            d1 = [pick[s]["top1"] - best["seeds"][str(s)]["top1"] for s in SEEDS]
            dl = [best["seeds"][str(s)]["test_loss"] - pick[s]["test_loss"] for s in SEEDS]
            out["d_top1"], out["d_loss"] = interval(d1), interval(dl)
            out["verdict"] = verdict(out["d_top1"], out["d_loss"])
        rand = self.median_random(label) if self.args.with_random and label in self.picks else None
        if rand:
            a = load_arch(rand)
            med = {s: self.pick(rand, s) for s in SEEDS}
            rows.append({**self.row(f"median random {rand}", "random", med, a.madds, a.params,
                                    lat.get(f"stnas:{rand}")), "arch": rand})
            if pick and best:  # item 4: what the space gives and what the search gives
                out["space_top1"] = interval([med[s]["top1"] - best["seeds"][str(s)]["top1"] for s in SEEDS])
                out["space_loss"] = interval([best["seeds"][str(s)]["test_loss"] - med[s]["test_loss"] for s in SEEDS])
                out["search_top1"] = interval([pick[s]["top1"] - med[s]["top1"] for s in SEEDS])
                out["search_loss"] = interval([med[s]["test_loss"] - pick[s]["test_loss"] for s in SEEDS])
        s0 = [r["seeds"]["0"]["top1"] for r in rows]
        out["spread_seed0_pp"] = 100 * (max(s0) - min(s0)) if s0 else None
        return out

    def report(self) -> dict:
        lat_path = self.root / "latency.json"
        lat = read_json(lat_path, "latency measurements")["networks"] if lat_path.is_file() else {}
        tables = [self.compare(label, self.picks.get(label), self.networks(label), lat) for label in self.plans]
        lat_tables = []
        for label, arch in self.args.latency_picks:
            limit = float(label.removesuffix("ms"))
            nets = [b for b in self.all_nets().values() if b.key in lat and lat[b.key]["median_ms"] <= limit]
            lat_tables.append(self.compare(label, arch, nets, lat))
        return {"dataset": self.args.data, "preset": self.cfg["preset"], "recipe": self.cfg["retrain"],
                "seeds": list(SEEDS), "machine": {"cpu": platform.processor() or platform.machine(),
                                                  "cores": os.cpu_count(),
                                                  "python": platform.python_version(),
                                                  "torch": torch.__version__},
                "latency_settings": {k: self.cfg["latency"][k] for k in ("runtime", "device", "batch", "threads")},
                "madds_budgets": tables, "latency_budgets": lat_tables}


def interval(d: list[float]) -> dict:
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)  # Student's t, df = n - 1
    return {"mean": statistics.fmean(d), "lo": float(ci.low), "hi": float(ci.high), "per_seed": d}


def verdict(d1: dict, dl: dict) -> str:
    if d1["lo"] > 0 and dl["lo"] > 0:
        return "stnas wins"
    if d1["hi"] < 0:
        return "baseline wins"
    return "unresolved"


def print_table(res: dict) -> None:
    for kind in ("madds_budgets", "latency_budgets"):
        for t in res[kind]:
            print(f"\n## {t['budget']}  (best baseline: {t['best_baseline']}; seed-0 spread "
                  f"{t['spread_seed0_pp']:.2f} pp)")
            print(f"{'network':58s} {'MAdds':>7s} {'params':>7s} {'ms':>6s} {'top-1':>7s} {'sd':>6s} "
                  f"{'loss':>6s} {'n':>2s} {'train s':>7s}")
            for r in t["rows"]:
                sd = f"{100 * r['top1_sd']:.2f}" if r["top1_sd"] is not None else "-"
                ms = f"{r['latency_ms']:.3f}" if r["latency_ms"] else "-"
                print(f"{r['name'][:58]:58s} {fmt_count(r['madds']):>7s} {fmt_count(r['params']):>7s} {ms:>6s} "
                      f"{100 * r['top1']:7.2f} {sd:>6s} {r['test_loss']:6.4f} {len(r['seeds']):2d} {r['train_s']:7.0f}")
            if "d_top1" in t:
                a, b = t["d_top1"], t["d_loss"]
                print(f"pick − best: top-1 {100 * a['mean']:+.2f} pp [{100 * a['lo']:+.2f}, {100 * a['hi']:+.2f}]; "
                      f"loss (best − pick) {b['mean']:+.4f} [{b['lo']:+.4f}, {b['hi']:+.4f}] -> {t['verdict']}")
            for part, what in (("space", "median random − best"), ("search", "pick − median random")):
                if f"{part}_top1" in t:
                    a, b = t[f"{part}_top1"], t[f"{part}_loss"]
                    print(f"{part} ({what}): top-1 {100 * a['mean']:+.2f} pp [{100 * a['lo']:+.2f}, "
                          f"{100 * a['hi']:+.2f}]; loss (lower is better, sign flipped) {b['mean']:+.4f} "
                          f"[{b['lo']:+.4f}, {b['hi']:+.4f}]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--preset", default=None)
    ap.add_argument("--budgets", required=True, help="MAdds budgets, e.g. 2M,4M,6M")
    ap.add_argument("--pick", action="append", default=[], metavar="LABEL=RUN",
                    help="the run whose pick for budget LABEL is compared (stnas run's report.json)")
    ap.add_argument("--latency-pick", action="append", default=[], metavar="Lms=ARCH",
                    help="a latency budget (ms) and the architecture stnas's search picked under it")
    ap.add_argument("--root", required=True, help="the cache: a run directory per network and seed")
    ap.add_argument("--phase", default="all", choices=("all", "seed0", "seeds", "picks", "random", "latency", "report"))
    ap.add_argument("--with-random", action="store_true",
                    help="report: add each budget's median random network (phase random) and item 4's intervals")
    ap.add_argument("--json", default=None, help="where the report phase writes its JSON")
    ap.add_argument("--set", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    args.picks = {k: run_pick(v, k) for k, v in (p.split("=", 1) for p in args.pick)}
    args.latency_picks = [tuple(p.split("=", 1)) for p in args.latency_pick]
    bench = Bench(args)
    if args.phase in ("all", "seed0"):
        bench.seed0()
    if args.phase in ("all", "seeds"):
        bench.seeds()
    if args.phase == "picks":
        bench.pick_seeds()
    if args.phase == "random":
        bench.randoms()
    if args.phase == "latency":
        lat = bench.latency()
        for label in bench.plans:
            top = bench.top(bench.networks(label))
            for b in top:
                log(f"{label}: {b.name} measures {lat[b.key]['median_ms']:.3f} ms")
    if args.phase in ("all", "report"):
        res = bench.report()
        print_table(res)
        if args.json:
            write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
