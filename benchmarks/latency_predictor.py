"""How well the lookup-table predictor (stnas.latency.table) predicts measured end-to-end latency.

For each preset and runtime: build a fresh table on this machine (``stnas latency build``'s
code: every distinct module, then the overhead fit on a few whole networks), draw random
architectures (seeded, disjoint from the fit networks), measure each end to end
(interleaved across the architectures, several rounds, medians) and compare with the
prediction: MAPE, the share within ±10%, Kendall τ(predicted, measured), and Kendall
τ(MAdds, measured) for reference. Prints a table and writes JSON (and the tables used).

Timings need a quiet machine: nothing else running on its cores.

    python benchmarks/latency_predictor.py                      # fashion-mnist + cifar, torch + onnxruntime, 100 archs
    python benchmarks/latency_predictor.py --paper-archs 20     # plus a 224x224 paper-space row
    python benchmarks/latency_predictor.py --quick              # a small smoke run (numbers are not results)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from stnas.analysis.ranking import kendall
from stnas.core.verified import write_json
from stnas.latency import table as lat
from stnas.latency.measure import build_table, device_info, measure_networks, runtime_info
from stnas.pipeline.checks import check_latency_section
from stnas.space.catalog import load_space

RESULTS = Path(__file__).resolve().parent / "results"


def sample_archs(space, n: int, seed: int, exclude: set[str]) -> list:
    rng = np.random.default_rng([seed, 0xBE7C])
    out, seen = [], set(exclude)
    while len(out) < n:
        a = space.sample(rng, "topology")
        if str(a) not in seen:
            seen.add(str(a))
            out.append(a)
    return out


def evaluate(preset: str, runtime: str, n_archs: int, args, tables_dir: Path | None) -> dict:
    space = load_space(preset)
    t0 = time.perf_counter()
    table = build_table(space, runtime, args.device, args.batch, args.threads, args.warmup, args.repeats,
                        args.rounds, args.fit_networks, seed=args.seed, log=lambda s: print(s, file=sys.stderr))
    build_s = time.perf_counter() - t0
    if tables_dir is not None:
        lat.save_table(table, tables_dir / f"{preset}_{runtime}.json")
    pred = lat.Predictor(table, space)
    fit = {n["arch"] for n in table["overhead"]["networks"]}
    archs = sample_archs(space, n_archs, args.seed + 1, fit)
    t0 = time.perf_counter()
    measured = measure_networks(archs, runtime, args.device, args.batch, args.threads, args.warmup,
                                args.net_repeats, args.net_rounds)
    measure_s = time.perf_counter() - t0
    y = np.array([m["median_ms"] for m in measured])
    p = np.array([pred(a) for a in archs])
    madds = np.array([a.madds for a in archs])
    err = p / y - 1
    return {
        "preset": preset, "runtime": runtime, "archs": len(archs), "modules": len(table["entries"]),
        "table_build_s": round(build_s, 1), "measure_s": round(measure_s, 1),
        "mape": float(np.mean(np.abs(err))), "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "kendall_tau_pred": kendall(p, y), "kendall_tau_madds": kendall(madds, y),
        "measured_ms_median": float(np.median(y)), "measured_ms_range": [float(y.min()), float(y.max())],
        "relative_iqr_median": float(np.median([m["iqr_ms"] / m["median_ms"] for m in measured])),
        "overhead": {k: v for k, v in table["overhead"].items() if k != "networks"},
        "table_checksum": table["checksum"],
        "per_arch": [{"arch": str(a), "madds": int(m_), "predicted_ms": float(pp), "measured_ms": mm["median_ms"],
                      "iqr_ms": mm["iqr_ms"]} for a, m_, pp, mm in zip(archs, madds, p, measured)],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="fashion-mnist,cifar")
    ap.add_argument("--runtimes", default="torch,onnxruntime")
    ap.add_argument("--archs", type=int, default=100, help="random architectures per preset and runtime")
    ap.add_argument("--paper-archs", type=int, default=0, help="> 0: also a paper-space (224x224) row")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=60, help="timed calls per table module")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the table modules")
    ap.add_argument("--fit-networks", type=int, default=12)
    ap.add_argument("--net-repeats", type=int, default=30, help="timed calls per measured network")
    ap.add_argument("--net-rounds", type=int, default=5, help="rounds over the measured networks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help="12 archs, fewer repeats: checks the script, not the predictor")
    ap.add_argument("--out", help="JSON file (default benchmarks/results/latency_predictor[_quick].json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.archs, args.repeats, args.net_repeats, args.net_rounds, args.fit_networks = 12, 15, 10, 2, 8
    out = Path(args.out) if args.out else RESULTS / f"latency_predictor{'_quick' if args.quick else ''}.json"
    tables_dir = out.with_name(out.stem + "_tables")
    jobs = [(p, r, args.archs) for p in args.presets.split(",") if p for r in args.runtimes.split(",") if r]
    if args.paper_archs > 0:
        jobs += [("paper", r, args.paper_archs) for r in args.runtimes.split(",") if r]
    for _, r, _n in jobs:  # refuse an unknown runtime or device before measuring anything
        check_latency_section(dict(lat_defaults(), runtime=r, device=args.device, batch=args.batch,
                                   threads=args.threads))
        runtime_info(r, args.device)
    rows = []
    for preset, runtime, n in jobs:
        print(f"== {preset} / {runtime}: {n} architectures", file=sys.stderr, flush=True)
        rows.append(evaluate(preset, runtime, n, args, tables_dir))
    header = f"{'preset':<14}{'runtime':<13}{'archs':>6}{'MAPE':>8}{'±10%':>8}{'τ pred':>8}{'τ MAdds':>9}" \
             f"{'median ms':>11}{'table s':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['preset']:<14}{r['runtime']:<13}{r['archs']:>6}{100 * r['mape']:>7.1f}%"
              f"{100 * r['within_10pct']:>7.0f}%"
              f"{r['kendall_tau_pred']:>8.3f}{r['kendall_tau_madds']:>9.3f}{r['measured_ms_median']:>11.3f}"
              f"{r['table_build_s']:>9.0f}")
    machine = {"device": device_info(args.device), "runtimes": {r: runtime_info(r, args.device)
                                                                for r in {j[1] for j in jobs}}}
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_json(out, {"benchmark": "latency_predictor", "command": " ".join(sys.argv), "machine": machine,
                         "settings": settings, "quick": args.quick, "results": rows})
    print(f"results: {out}\ntables:  {tables_dir}")
    return 0


def lat_defaults() -> dict:
    from stnas.pipeline.config import DEFAULTS
    return dict(DEFAULTS["latency"])


if __name__ == "__main__":
    sys.exit(main())
