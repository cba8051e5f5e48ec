"""Proxy fidelity within each budget: Kendall tau between the proxy's scores (from
``stnas rank --json``) and the stand-alone accuracies of a stnas-truth file written by
``found_vs_random.py --truth-out``, computed separately for the networks of each budget.

Across budgets MAdds alone ranks well, because a larger budget holds larger networks. What
the search needs is the ranking *within* a budget, where every network has about the same
cost. A network is in budget B when one of its truth entries has the role "found B" or
"random k within B", so one network can be in several budgets. Its accuracy is the mean
over its entries. The last row scores every network by its MAdds, for reference.

    stnas rank runs/fm6 --truth T.json --mode all --json proxy.metric=loss > rank.json
    python experiments/fidelity_by_budget.py rank.json --truth T.json [--out fidelity.json]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

from stnas.analysis.ranking import kendall_test
from stnas.core.errors import StnasError
from stnas.core.units import parse_count
from stnas.core.verified import read_json, write_json

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors

ROLE = re.compile(r"^(?:found (?P<a>\S+)|random \d+ within (?P<b>\S+))$")


def budgets_of(truth: dict) -> tuple[dict[str, set[str]], dict[str, float]]:
    """({budget label: architecture strings}, {architecture string: mean top-1})."""
    groups: dict[str, set[str]] = {}
    acc: dict[str, list[float]] = {}
    for r in truth["results"]:
        acc.setdefault(r["arch"], []).append(float(r["top1"]))
        m = ROLE.match(r.get("role", ""))
        if m:
            groups.setdefault(m["a"] or m["b"], set()).add(r["arch"])
    return groups, {a: statistics.mean(v) for a, v in acc.items()}


def fidelity(rank: dict, truth: dict) -> dict:
    """{mode: {budget label: {n, kendall_tau, p}}}, budgets with at least 3 networks."""
    groups, mean = budgets_of(truth)
    out = {}
    for mode, res in rank["modes"].items():
        score = {s["arch"]: s["score"] for s in res["scores"]}
        row = {}
        for label, archs in sorted(groups.items(), key=lambda kv: parse_count(kv[0], "budget")):
            names = sorted(a for a in archs if a in score)
            if len(names) < 3:
                continue
            tau, p = kendall_test([score[a] for a in names], [mean[a] for a in names])
            row[label] = {"n": len(names), "kendall_tau": tau, "p": p}
        out[mode] = row
    return out


def madds_scores(truth: dict) -> dict:
    """A rank-JSON-like {"MAdds": {"scores": ...}} that scores every network by its MAdds: the
    baseline a proxy must beat within a budget too."""
    from stnas.space.catalog import load_arch, load_space

    space = load_space(truth["preset"])
    archs = {r["arch"] for r in truth["results"]}
    return {"MAdds": {"scores": [{"arch": a, "score": space.madds(load_arch(a, space))} for a in sorted(archs)]}}


def _table(args) -> dict:
    """``fidelity`` of the inputs of ``main``'s arguments, the MAdds row added."""
    try:
        # rank.json carries its checksum; what `stnas rank --json` printed and was saved does not
        rank = read_json(args.rank, "rank result", required=False)
        truth = read_json(args.truth, "truth file", required=False)
        return fidelity({"modes": rank["modes"] | madds_scores(truth)}, truth)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StnasError(f"cannot read the inputs ({type(exc).__name__}: {exc})") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rank", help="the JSON that `stnas rank --json` printed")
    ap.add_argument("--truth", required=True, help="the stnas-truth file the ranking used (with roles)")
    ap.add_argument("--out", help="also write the table as JSON here")
    args = ap.parse_args()
    table = one_line_errors(_table, args)
    labels = sorted({b for row in table.values() for b in row}, key=lambda b: parse_count(b, "budget"))
    print(f"{'mode':<12}" + "".join(f"{b:>22}" for b in labels))
    for mode, row in table.items():
        cells = [f"{row[b]['kendall_tau']:+.2f} (n={row[b]['n']}, p={row[b]['p']:.2f})" if b in row else "-"
                 for b in labels]
        print(f"{mode:<12}" + "".join(f"{c:>22}" for c in cells))
    if args.out:
        write_json(args.out, {"rank": args.rank, "truth": args.truth, "fidelity": table})


if __name__ == "__main__":
    main()
