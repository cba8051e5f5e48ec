"""How much two trainings of one supernet recipe agree: the Kendall tau between replicate
supernets' scores of the same networks, per budget, with no ground truth needed.

    python experiments/agreement.py --plan experiments/results/gt_pilot6_plan.json \\
        --group T1=sgld-T1,sgld-T1-s1,sgld-T1-s2 --group sgd=sgd,sgd-s1,sgd-s2 \\
        --records experiments/results/proxy_records --contrast T1:sgd

For each group (replicates of one recipe: proxy records of supernets trained under other
seeds) the mean pairwise tau between its members' scores of the plan's networks at a cell
(default the preset cell, stabilized@8/loss), with a percentile bootstrap 95% interval over
the networks (one resample of networks for every group, so a contrast of two groups is
paired). This is the supernet's draw-to-draw reliability, the counterpart of the instrument's
seed-to-seed tau: a proxy whose trainings disagree cannot rank better than their agreement
allows. It reads the records only (``proxy_record.py``), every network of the plan included.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.analysis.ranking import kendall
from stnas.core.errors import StnasError
from stnas.core.verified import read_json, write_json

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import ci95, one_line_errors, read_record


def parse_group(spec: str) -> tuple[str, list[str]]:
    name, _, members = spec.partition("=")
    labels = [m for m in members.split(",") if m]
    if not name or len(labels) < 2 or len(set(labels)) != len(labels):
        raise StnasError(f"--group {spec!r}: want NAME=A,B[,...] with at least two distinct records")
    return name, labels


def pairwise_taus(scores: np.ndarray) -> list[float]:
    """Kendall tau of every pair of rows (members) of ``scores`` (members x networks)."""
    return [kendall(a, b) for a, b in itertools.combinations(scores, 2)]


def mean_pairwise_tau(scores: np.ndarray) -> float:
    return float(np.mean(pairwise_taus(scores)))


def agreement(groups: dict[str, np.ndarray], contrasts: list[tuple[str, str]], resamples: int = 2000,
              seed: int = 0) -> dict:
    """{group: {tau, ci, pairs}, "a - b": {diff, ci}}; ``groups``: {name: members x networks}."""
    names = list(groups)
    n = next(iter(groups.values())).shape[1]
    stat = lambda i: np.array([mean_pairwise_tau(groups[g][:, i]) for g in names])  # noqa: E731
    dist = stats.bootstrap((np.arange(n),), stat, vectorized=False, n_resamples=resamples, method="percentile",
                           random_state=np.random.default_rng(seed)).bootstrap_distribution
    out = {}
    for k, g in enumerate(names):
        pairs = pairwise_taus(groups[g])
        out[g] = {"tau": float(np.mean(pairs)), "ci": ci95(dist[k]), "pairs": pairs}
    for a, b in contrasts:
        d = dist[names.index(a)] - dist[names.index(b)]
        out[f"{a} - {b}"] = {"diff": out[a]["tau"] - out[b]["tau"], "ci": ci95(d)}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True, help="the ground-truth plan whose networks are compared")
    ap.add_argument("--group", action="append", required=True, metavar="NAME=A,B[,...]",
                    help="replicate records (labels under --records), repeatable")
    ap.add_argument("--records", default="experiments/results/proxy_records")
    ap.add_argument("--cell", default=None, help="the cell compared (default: each record's preset cell)")
    ap.add_argument("--contrast", action="append", default=[], metavar="A:B", help="paired difference of two groups")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    groups = dict(parse_group(g) for g in args.group)
    contrasts = []
    for c in args.contrast:
        a, _, b = c.partition(":")
        if a not in groups or b not in groups or a == b:
            raise StnasError(f"--contrast {c!r}: want A:B, two different --group names")
        contrasts.append((a, b))
    try:
        plan = read_json(args.plan, "ground-truth plan", required=False)
        budgets = {int(b): list(v) for b, v in plan["archs"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StnasError(f"--plan {args.plan}: not a ground-truth plan ({exc})") from None
    records = {m: read_record(Path(args.records) / f"{m}.json") for ms in groups.values() for m in ms}
    for m, rec in records.items():  # every record and network checked before any work
        cell = args.cell or rec["preset_cell"]
        if cell not in rec["cells"]:
            raise StnasError(f"record {m} has no cell {cell!r}")
        lacking = [a for v in budgets.values() for a in v if a not in rec["cells"][cell]]
        if lacking:
            raise StnasError(f"record {m} lacks {len(lacking)} of the plan's networks (e.g. {lacking[0]})")
    out = {"plan": args.plan, "groups": groups, "budgets": {}}
    for b, archs in budgets.items():
        arrays = {g: np.array([[records[m]["cells"][args.cell or records[m]["preset_cell"]][a] for a in archs]
                               for m in ms]) for g, ms in groups.items()}
        res = agreement(arrays, contrasts, args.resamples)
        out["budgets"][str(b)] = {"n": len(archs), **res}
        print(f"budget {b / 1e6:g}M, {len(archs)} networks: draw-to-draw tau (mean over replicate pairs)")
        for k, v in res.items():
            if "tau" in v:
                print(f"  {k:<12} {v['tau']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]  pairs "
                      + ", ".join(f"{t:+.2f}" for t in v["pairs"]))
            else:
                print(f"  {k:<12} {v['diff']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]")
    if args.json:
        write_json(Path(args.json), out)


if __name__ == "__main__":
    one_line_errors(main)  # bad input: one line, exit 2
