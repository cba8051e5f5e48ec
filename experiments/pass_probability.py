"""How often can a search pass found_vs_random.py's test at all? The probability that the
network a search picks beats the best of N random ones, by Monte Carlo under a model fitted
to what found_vs_random.py measured.

The model, per budget:
- every network in the budget has a true quality q ~ Normal(0, arch_sd^2);
- a retraining measures q plus seed noise ~ Normal(0, noise_sd^2); the comparison uses the
  mean over S training seeds. Both sds come from the networks x seeds table of
  found_vs_random's results (a two-way ANOVA; see ``components``);
- the search scores C candidates of the budget with a proxy whose correlation with q is rho,
  and keeps the best-scoring one. rho comes from the proxy's Kendall tau within the budget
  (fidelity_by_budget.py) by Greiner's relation for normal scores, rho = sin(pi * tau / 2);
- it passes when its measured mean beats the largest measured mean of N random networks
  (the random ones are picked by the same noisy measurement: the winner's curse is modelled).

Two limits fix the simulation by symmetry, and the tests check them: with rho = 0 the picked
network is one more random draw, so it passes with probability 1 / (N + 1); with rho = 1 and
no seed noise it passes exactly when the best of all C + N networks is among the candidates,
probability C / (C + N).

    python experiments/pass_probability.py experiments/results/found_vs_random_run10t_tied.json \\
        --fidelity experiments/results/fidelity_by_budget_fm10.json --seeds 2,8

Several found_vs_random files pool their variance components per budget (the mean of the
variances). Prints a table and writes experiments/results/pass_probability.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from stnas.core.errors import StnasError
from stnas.core.units import budget_label
from stnas.core.verified import read_json, write_json

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors, tau_to_rho, two_way_mean_squares


def win_probability(arch_sd: float, noise_sd: float, rho: float, *, candidates: int = 120, n_random: int = 10,
                    seeds: int = 2, trials: int = 20000, rng_seed: int = 0) -> float:
    """P(the proxy's best of ``candidates`` beats the best of ``n_random``, each measured as the
    mean of ``seeds`` noisy retrainings), over ``trials`` Monte Carlo draws."""
    if not -1.0 <= rho <= 1.0 or arch_sd < 0 or noise_sd < 0 or min(candidates, n_random, seeds, trials) < 1:
        raise ValueError("need -1 <= rho <= 1, sds >= 0 and counts >= 1")
    rng = np.random.default_rng(rng_seed)
    z = rng.standard_normal((trials, candidates))  # standardized true quality of the candidates
    proxy = rho * z + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.standard_normal((trials, candidates))
    picked = z[np.arange(trials), proxy.argmax(1)]
    m = noise_sd / math.sqrt(seeds)
    found = arch_sd * picked + m * rng.standard_normal(trials)
    randoms = arch_sd * rng.standard_normal((trials, n_random)) + m * rng.standard_normal((trials, n_random))
    return float((found > randoms.max(1)).mean())


def components(row: dict) -> dict | None:
    """Architecture and seed-noise sd of one budget of a found_vs_random result, from every
    network's top-1 under each training seed (two-way ANOVA, networks x seeds, no
    interaction: a seed's effect shared by all networks, such as its data order, cancels in
    the comparison of means over the same seeds, so it is not noise). None without the
    per-seed numbers of every network (one seed, or ``--extra-for top``)."""
    seeds = [str(s) for s in row.get("seeds", [])]
    try:
        a = np.array([[row["found_top1_by_seed"][s] for s in seeds]]
                     + [[r["top1_by_seed"][s] for s in seeds] for r in row["randoms"]], dtype=float)
    except KeyError:
        return None
    if len(seeds) < 2 or len(a) < 2:
        return None
    ms_arch, ms_noise = two_way_mean_squares(a)
    return {"arch_var": max(0.0, (ms_arch - ms_noise) / len(seeds)), "noise_var": ms_noise}


def variance_components(files: list[dict]) -> dict[str, dict]:
    """{budget label: {arch_sd, noise_sd, runs}} pooled over found_vs_random results (the mean
    of the variances of every file that measured the budget with several seeds)."""
    acc: dict[str, list[dict]] = {}
    for f in files:
        for r in f["results"]:
            c = components(r)
            if c:
                acc.setdefault(budget_label(r["budget"]), []).append(c)
    if not acc:
        raise ValueError("no result has every network's top-1 under several seeds "
                         "(run found_vs_random.py with --extra-seeds)")
    return {b: {"arch_sd": math.sqrt(sum(c["arch_var"] for c in cs) / len(cs)),
                "noise_sd": math.sqrt(sum(c["noise_var"] for c in cs) / len(cs)), "runs": len(cs)}
            for b, cs in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="found_vs_random.py JSON files (run with --extra-seeds)")
    ap.add_argument("--fidelity", required=True, help="fidelity_by_budget.py --out JSON: the within-budget tau")
    ap.add_argument("--mode", default="stabilized", help="the proxy mode of the fidelity file (default stabilized)")
    ap.add_argument("--seeds", default="2,8", help="training seeds per network to tabulate (default 2,8)")
    ap.add_argument("--candidates", type=int, default=120, help="candidates the search scores per budget")
    ap.add_argument("--n", type=int, default=10, help="random networks per budget")
    ap.add_argument("--trials", type=int, default=20000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pass_probability.json"))
    args = ap.parse_args()
    one_line_errors(run, args)


def run(args) -> None:
    """The table of ``main``'s arguments, printed and written to ``--out``."""
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        comps = variance_components([read_json(p, "results", required=False) for p in args.results])
        fid = read_json(args.fidelity, "fidelity table", required=False)["fidelity"]
        taus = {src: {b: fid[key][b]["kendall_tau"] for b in comps if b in fid[key]}
                for src, key in (("proxy", args.mode), ("MAdds", "MAdds"))}
        if min(seeds) < 1 or args.candidates < 1 or args.n < 1 or args.trials < 1:
            raise ValueError("--seeds, --candidates, --n and --trials must be >= 1")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StnasError(f"cannot read the inputs ({type(exc).__name__}: {exc})") from None
    budgets = [b for b in comps if b in taus["proxy"] and b in taus["MAdds"]]
    if not budgets:
        raise StnasError("no budget is in both the results and the fidelity file")
    kw = {"candidates": args.candidates, "n_random": args.n, "trials": args.trials}
    rows = []
    for b in budgets:
        c = comps[b]
        rhos = {"random pick": 0.0, "proxy": tau_to_rho(taus["proxy"][b]), "MAdds": tau_to_rho(taus["MAdds"][b]),
                "perfect": 1.0}
        for s in seeds:
            p = {k: win_probability(c["arch_sd"], c["noise_sd"], r, seeds=s, **kw) for k, r in rhos.items()}
            rows.append({"budget": b, **c, "tau_proxy": taus["proxy"][b], "tau_madds": taus["MAdds"][b],
                         "rho": rhos, "seeds": s, "p_win": p})
    print(f"{'budget':>7}{'arch sd':>9}{'noise sd':>10}{'runs':>6}{'seeds':>7}{'random pick':>13}"
          f"{'proxy':>16}{'MAdds':>16}{'perfect':>9}")
    for r in rows:
        p = r["p_win"]
        print(f"{r['budget']:>7}{r['arch_sd']:>9.4f}{r['noise_sd']:>10.4f}{r['runs']:>6}{r['seeds']:>7}"
              f"{p['random pick']:>13.2f}{p['proxy']:>9.2f} ({r['tau_proxy']:+.2f}){p['MAdds']:>9.2f} "
              f"({r['tau_madds']:+.2f}){p['perfect']:>9.2f}")
    print(f"(tau in brackets; Monte Carlo standard error <= {0.5 / math.sqrt(args.trials):.3f})")
    # two budgets use separate random networks, so their comparisons are independent
    p_at = {(r["budget"], r["seeds"]): r["p_win"] for r in rows}
    both = [{"budgets": [a, b], "seeds": s, "p_win": {k: v * p_at[b, s][k] for k, v in p_at[a, s].items()}}
            for i, a in enumerate(budgets) for b in budgets[i + 1:] for s in seeds]
    for x in both:
        cells = ", ".join(f"{k} {v:.2f}" for k, v in x["p_win"].items())
        print(f"both {' and '.join(x['budgets'])}, {x['seeds']} seeds: {cells}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), {"inputs": {"results": args.results, "fidelity": args.fidelity, "mode": args.mode,
                                           **kw}, "budgets": rows, "two_budgets": both})


if __name__ == "__main__":
    main()
