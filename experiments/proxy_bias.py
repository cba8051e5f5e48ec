"""What the proxy misranks, and by which architecture features (issue 14, item 3: why).

    python experiments/proxy_bias.py experiments/results/gt_pilot6.json --run runs/lat_a \\
        --out experiments/results/proxy_bias.json --markdown experiments/results/proxy_bias.md

For every budget of a ground-truth table (``ground_truth.py``) and every architecture
feature below, three Kendall taus over the networks with every seed, each with a percentile
bootstrap 95% interval over the networks:

* ``truth``: the feature against the seed-mean truth (minus test loss, or top-1): what wins;
* ``proxy``: the feature against the run's proxy score (its own preset proxy: mode, K and
  metric as configured): what the supernet rewards;
* ``bias``: the feature against (proxy rank - truth rank): above 0, the proxy overrates the
  networks high in the feature, below 0 it underrates them.

Features (all analytic, from the architecture alone): MAdds, params, the stem edges' kernel
sum (a skip has none), depth (stem edges that are not skips) and expansion-6 count, the
number of active branch edges, the share of MAdds on branch edges, and the share of MAdds
in the last stage. Nothing here is fitted or decides anything;
it says where a proxy's errors lie, so that a fix can be chosen and then measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.core.errors import StnasError
from stnas.core.fileio import write_text
from stnas.core.verified import write_json
from stnas.pipeline.search import proxy_for_run
from stnas.space.catalog import load_arch, load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import ci95, is_record, one_line_errors, read_record, read_table, rows_with_seeds, tau
from experiments.fidelity import run_cells, shape_features, truth_of

FEATURES = ("madds", "params", "kernel_sum", "depth", "exp6_stem", "branches", "branch_share", "last_stage_share")


def features(arch, space) -> dict[str, float]:
    """The analytic features of one architecture (see the module docstring)."""
    rows = space.edge_cost(arch)
    total = float(space.madds(arch))
    last = max(e.stage for e in space.stem_edges)
    return {
        "madds": total,
        "params": float(space.params(arch)),
        **shape_features(arch, space),
        "exp6_stem": float(sum(space.ops[o].expand == 6 for o in arch.stem)),
        "branches": float(sum(b >= 0 for b in arch.branches)),
        "branch_share": sum(m for e, _, m, _ in rows if e in space.branch_edges) / total,
        "last_stage_share": sum(m for e, _, m, _ in rows if e.stage == last) / total,
    }


def bias_table(feats: dict[str, np.ndarray], proxy: np.ndarray, truth: np.ndarray,
               resamples: int = 2000, seed: int = 0) -> dict[str, dict]:
    """{feature: {truth, proxy, bias: {tau, ci}}} for one budget (high truth/proxy = better)."""
    def taus(i):
        err = stats.rankdata(proxy[i]) - stats.rankdata(truth[i])
        return np.array([tau(feats[n][i], against) for n in feats for against in (truth[i], proxy[i], err)])
    point = taus(np.arange(len(truth)))
    dist = stats.bootstrap((np.arange(len(truth)),), taus, vectorized=False, n_resamples=resamples,
                           method="percentile", random_state=np.random.default_rng(seed)).bootstrap_distribution
    out, j = {}, 0
    for n in feats:
        out[n] = {}
        for what in ("truth", "proxy", "bias"):
            out[n][what] = {"tau": float(point[j]), "ci": ci95(dist[j])}
            j += 1
    return out


def markdown(result: dict) -> str:
    lines = []
    for b, r in result["budgets"].items():
        lines += [f"### {int(b) / 1e6:g}M ({r['n']} networks; proxy vs truth tau {r['proxy_tau']:+.2f})", "",
                  "| feature | vs truth | vs proxy | bias (vs proxy rank - truth rank) |", "|---|---|---|---|"]
        for n, v in r["features"].items():
            cells = [f"{v[w]['tau']:+.2f} [{v[w]['ci'][0]:+.2f}, {v[w]['ci'][1]:+.2f}]"
                     for w in ("truth", "proxy", "bias")]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _inputs(args) -> tuple[object, list[dict], dict[str, float]]:
    """The table's space, its networks with ``--min-seeds`` seeds, and the run's proxy score
    of each."""
    table = read_table(args.table)
    rows = rows_with_seeds(table, args.min_seeds)
    space = load_space(table["preset"])
    if not rows:
        raise StnasError(f"{args.table} has no network with {args.min_seeds} seeds")
    archs = sorted({r["arch"] for r in rows})
    if is_record(args.run):  # a proxy record: its run's own configured proxy
        rec = read_record(args.run)
        return space, rows, run_cells(args.run, archs, rec["ks"])[rec["preset_cell"]]
    proxy = proxy_for_run(args.run, progress=True)
    return space, rows, {s.arch: s.score for s in proxy.score(archs)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help="a stnas-groundtruth table")
    ap.add_argument("--run", required=True,
                    help="a supernet run directory or a proxy record .json (its configured proxy is used)")
    ap.add_argument("--truth", choices=("top1", "loss"), default="loss")
    ap.add_argument("--min-seeds", type=int, default=2)
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--out", help="write the result JSON here")
    ap.add_argument("--markdown", help="write the tables as markdown here")
    args = ap.parse_args(argv)
    space, rows, scores = one_line_errors(_inputs, args)
    result = {"table": args.table, "run": args.run, "truth": args.truth, "budgets": {}}
    for b in sorted({r["budget"] for r in rows}):
        sub = [r for r in rows if r["budget"] == b]
        truth = np.array([truth_of(r, args.truth) for r in sub])
        prox = np.array([scores[r["arch"]] for r in sub])
        fs = [features(load_arch(r["arch"], space), space) for r in sub]
        feats = {n: np.array([f[n] for f in fs]) for n in FEATURES}
        result["budgets"][str(b)] = {"n": len(sub), "proxy_tau": tau(prox, truth),
                                     "features": bias_table(feats, prox, truth, args.resamples)}
    md = markdown(result)
    print(md)
    if args.out:
        write_json(args.out, result)
    if args.markdown:
        write_text(args.markdown, md + "\n")


if __name__ == "__main__":
    main()
