"""How fast the analytic cost model checks architectures (evolution calls it a lot).

Prints, per preset, architectures per second for the scalar path (``space.cost``: MAdds
and params of one Arch) and the vectorised path (``space.cost_batch``), medians
over repeats, and writes benchmarks/results/cost.json.

    python benchmarks/cost.py [--presets paper,fashion-mnist] [--n 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from stnas.core.verified import write_json
from stnas.space.catalog import load_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="paper,fashion-mnist,digits")
    ap.add_argument("--n", type=int, default=20_000, help="architectures per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cost.json"))
    args = ap.parse_args()
    rows = []
    for name in args.presets.split(","):
        s = load_space(name)
        rng = np.random.default_rng(0)
        archs = [s.sample(rng) for _ in range(args.n)]
        stem = np.array([a.stem for a in archs])
        br = np.array([a.branches for a in archs])
        scalar, batch = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for a in archs:
                s.cost(a)
            scalar.append(args.n / (time.perf_counter() - t))
            t = time.perf_counter()
            s.cost_batch(stem, br)
            batch.append(args.n / (time.perf_counter() - t))
        rows.append({"preset": name, "edges": s.num_edges, "branches": len(s.branch_edges),
                     "scalar_archs_per_s": statistics.median(scalar), "batch_archs_per_s": statistics.median(batch)})
    print(f"{'preset':<15}{'edges':>6}{'branches':>9}{'scalar arch/s':>15}{'batch arch/s':>15}")
    for r in rows:
        print(f"{r['preset']:<15}{r['edges']:>6}{r['branches']:>9}{r['scalar_archs_per_s']:>15,.0f}"
              f"{r['batch_archs_per_s']:>15,.0f}")
    meta = {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
            "python": platform.python_version(), "n": args.n, "repeats": args.repeats}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), {"meta": meta, "results": rows})


if __name__ == "__main__":
    main()
