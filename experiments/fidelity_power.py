"""How many networks would the instrument need before a proxy's within-budget lead over
MAdds is resolved? Power of fidelity.py's paired test, by Monte Carlo.

The model: over the networks of a budget, the measured truth y (the seed mean the
instrument holds), the MAdds m and the proxy score p are jointly normal (only ranks matter,
so normality is no loss for Kendall's tau) with the pairwise correlations that Greiner's
relation rho = sin(pi tau / 2) gives for the taus fidelity.py measured: tau(p, y), tau(m, y)
and tau(p, m) (the last needs no ground truth: it can be measured on any networks). For each
n, ``--sims`` tables of n networks are drawn, and fidelity.py's paired percentile bootstrap
95% interval of tau(p, y) - tau(m, y) is computed; the power is the share of tables whose
interval lies above 0.

    python experiments/fidelity_power.py --tau-proxy 0.5 --tau-madds 0.3 --tau-cross 0.4 --n 12,30,60,120

Two limits check it (tests): with equal taus and a proxy that is MAdds (tau-cross 1) the
interval is [0, 0] and never above 0; with tau-proxy 1 against tau-madds 0 at large n the
power is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.core.verified import write_json

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import one_line_errors, tau, tau_to_rho


def correlation(tau_proxy: float, tau_madds: float, tau_cross: float) -> np.ndarray:
    """The (y, m, p) correlation matrix; an inconsistent set of taus is an error."""
    rp, rm, rc = tau_to_rho(tau_proxy), tau_to_rho(tau_madds), tau_to_rho(tau_cross)
    c = np.array([[1.0, rm, rp], [rm, 1.0, rc], [rp, rc, 1.0]])
    if np.linalg.eigvalsh(c).min() < -1e-12:
        raise ValueError(f"taus {tau_proxy}, {tau_madds}, {tau_cross} cannot hold together "
                         "(their correlation matrix is not positive semi-definite)")
    return c


def _lead(y, m, p):
    """tau(p, y) - tau(m, y) over a resample of network indices."""
    return lambda i: tau(p[i], y[i]) - tau(m[i], y[i])


def power(n: int, corr: np.ndarray, sims: int, resamples: int, rng: np.random.Generator) -> dict:
    """Share of ``sims`` tables of ``n`` networks whose paired interval lies above 0, and
    the mean observed difference."""
    w, v = np.linalg.eigh(corr)
    root = v * np.sqrt(np.clip(w, 0, None))
    above, diffs = 0, []
    for _ in range(sims):
        y, m, p = (rng.standard_normal((n, 3)) @ root.T).T
        diffs.append(tau(p, y) - tau(m, y))
        ci = stats.bootstrap((np.arange(n),), _lead(y, m, p), vectorized=False, n_resamples=resamples,
                             method="percentile", random_state=rng).confidence_interval
        above += ci.low > 0
    return {"n": n, "power": above / sims, "mean_diff": float(np.mean(diffs))}


def _checked(args) -> tuple[list[int], np.ndarray]:
    """The network counts and the correlation matrix of the arguments (ValueError if bad)."""
    if not all(-1 <= t <= 1 for t in (args.tau_proxy, args.tau_madds, args.tau_cross)):
        raise ValueError("every tau must lie in [-1, 1]")
    ns = [int(x) for x in args.n.split(",")]
    if min(ns) < 4 or args.sims < 1 or args.resamples < 10:
        raise ValueError("need --n >= 4, --sims >= 1, --resamples >= 10")
    return ns, correlation(args.tau_proxy, args.tau_madds, args.tau_cross)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tau-proxy", type=float, required=True, help="the proxy's tau against the truth")
    ap.add_argument("--tau-madds", type=float, required=True, help="MAdds' tau against the truth")
    ap.add_argument("--tau-cross", type=float, required=True, help="tau between the proxy and MAdds")
    ap.add_argument("--n", default="12,30,60,120", help="networks per budget")
    ap.add_argument("--sims", type=int, default=400)
    ap.add_argument("--resamples", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the table as JSON here")
    args = ap.parse_args(argv)
    ns, corr = one_line_errors(_checked, args)
    rng = np.random.default_rng(args.seed)
    rows = [power(n, corr, args.sims, args.resamples, rng) for n in ns]
    print(f"tau proxy {args.tau_proxy:+.2f}, MAdds {args.tau_madds:+.2f}, cross {args.tau_cross:+.2f}")
    print(f"{'networks':>8} {'power':>6} {'mean diff':>9}")
    for r in rows:
        print(f"{r['n']:>8} {r['power']:>6.2f} {r['mean_diff']:>+9.3f}")
    if args.out:
        write_json(Path(args.out), {"tau_proxy": args.tau_proxy, "tau_madds": args.tau_madds,
                                    "tau_cross": args.tau_cross, "sims": args.sims,
                                    "resamples": args.resamples, "rows": rows})


if __name__ == "__main__":
    main()
