"""Where a search's picks land on the instrument: the picks retrained with the ground-truth
table's own recipe and seeds, placed among the table's random networks of their budget.

    python experiments/picks.py build --table experiments/results/gt_pilot6.json --work runs/gt_picks \\
        --out experiments/results/gt_picks.json full-s0=runs/lat_a/search screen-s0=runs/lat_a/search_screen
    python experiments/picks.py place experiments/results/gt_picks.json experiments/results/gt_pilot6.json

``build`` takes each ``LABEL=SEARCH_DIR`` (a folder ``stnas search`` wrote), its rank-1
network of every budget the table holds, and retrains it under each of the table's seeds
with the table's preset and overrides (``ground_truth.py``'s retraining: resumable, a
finished one reused; a network two searches both picked is trained once; ``--jobs`` at a
time). The picks table is rewritten atomically after each retraining. An existing
``--out`` is the record: its results are kept, not retrained, and a search whose folder
is gone (another machine's) keeps the picks it recorded.

``place`` gives each pick's true within-budget percentile among the table's networks that
have every seed of the picks (the table's, or its first seeds when the table has grown
more since the picks were retrained; ``build`` then adds the new seeds to the picks)
(1 = better than all of them, 0.75 = the top quartile's edge), by the seed-mean test loss
(``--metric test_loss``, the instrument's primary metric) or top-1: the seed-mean value,
a percentile bootstrap 95% interval over the table's networks, and the percentile under
each seed alone (pick seed s against the networks' seed s).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.core.errors import StnasError
from stnas.core.verified import read_json, write_json
from stnas.pipeline.config import resolve
from stnas.search.history import read_search
from stnas.space.catalog import load_arch, load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import ci95, extends_seeds, one_line_errors, read_table, task_dir, truth_value
from experiments.ground_truth import train_all

FORMAT = "stnas-groundtruth-picks"


def read_picks(spec: str, budgets: list[int], recorded: dict | None = None) -> tuple[str, dict[int, str]]:
    """(label, {budget: rank-1 arch}) of ``LABEL=SEARCH_DIR`` for the table's budgets; a
    folder that is gone falls back on ``recorded`` ({label: {budget: arch}}), the picks table."""
    label, sep, folder = spec.partition("=")
    if not sep or not label or not folder:
        raise StnasError(f"{spec!r}: expected LABEL=SEARCH_DIR")
    best = Path(folder, "best.json")
    mine = (recorded or {}).get(label, {})
    if not Path(folder).exists() and all(b in mine for b in budgets):
        return label, {b: mine[b] for b in budgets}
    if not best.is_file():
        raise StnasError(f"{best} not found: {folder} is not a folder `stnas search` wrote")
    entries = read_search(folder, "best")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise StnasError(f"{best} is not a list of ranked networks")
    picks = {int(e["budget"]): str(e["arch"]) for e in entries if e.get("rank") == 1 and e.get("budget") in budgets}
    missing = [b for b in budgets if b not in picks]
    if missing:
        raise StnasError(f"{best} has no rank-1 network for budget(s) {', '.join(f'{b:,}' for b in missing)}")
    return label, picks


def build(args) -> None:
    if args.threads < 0 or args.jobs < 1:
        raise StnasError("need --threads >= 0 and --jobs >= 1")
    table = read_table(args.table)
    space = load_space(table["preset"])
    if space.fingerprint != table["space_fingerprint"]:
        raise StnasError(f"{args.table} was built on another version of the {table['preset']} space")
    if args.seeds is not None:  # the table's first seeds only (a table still growing more)
        seeds = [int(s) if s.strip().isdigit() else None for s in args.seeds.split(",")]
        if not (seeds and None not in seeds and extends_seeds(seeds, table["seeds"])):
            raise StnasError(f"--seeds must be the first of {args.table}'s seeds {table['seeds']}, got {args.seeds!r}")
        table = table | {"seeds": seeds}
    record = _record(Path(args.out), table)
    recorded = {}
    for r in record.get("rows", []):
        recorded.setdefault(r["label"], {})[r["budget"]] = r["arch"]
    picks = [read_picks(s, table["budgets"], recorded) for s in args.searches]
    labels = [label for label, _ in picks]
    if len(set(labels)) != len(labels):
        raise StnasError(f"labels repeat: {', '.join(labels)}")
    rows = []
    for label, by_budget in picks:
        for b, arch in by_budget.items():
            a = load_arch(arch, space)
            if a.madds > b:
                raise StnasError(f"{label}'s pick for {b:,} has {a.madds:,} MAdds: over its budget")
            rows.append({"label": label, "budget": b, "arch": arch, "madds": a.madds, "params": a.params, "seeds": {}})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys((r["arch"], s) for r in rows for s in table["seeds"]))
    done = {(r["arch"], int(s)): res for r in record.get("rows", []) for s, res in r["seeds"].items()}

    def task(arch, s):
        cfg = resolve(table["preset"], overrides=list(table["overrides"]) + [f"seed={s}"])
        return arch, cfg, str(task_dir(work, arch, s)), args.threads

    todo = {k: task(*k) for k in keys if k not in done}
    for i, (arch, s) in enumerate(keys, 1):
        if (arch, s) in done:
            _report(i, len(keys), arch, s, done[(arch, s)], "recorded")

    def record(key, result):
        done[key] = result
        _write_picks(args, table, rows, done)
        _report(keys.index(key) + 1, len(keys), *key, result, f"{result['wall_s']:.0f} s")

    train_all(todo, args.jobs, record)
    _write_picks(args, table, rows, done)


def _report(i: int, n: int, arch: str, seed: int, res: dict, note: str) -> None:
    print(f"[{i}/{n}] {arch} seed {seed}: top-1 {res['top1']:.4f} loss {res['test_loss']:.4f} ({note})", flush=True)


def _write_picks(args, table: dict, rows: list[dict], done: dict) -> None:
    """Rewrites the picks table (atomically) with every result so far."""
    for r in rows:
        r["seeds"] = {str(t): done[(r["arch"], t)] for t in table["seeds"] if (r["arch"], t) in done}
    write_json(Path(args.out), {"format": FORMAT, "table": args.table, "preset": table["preset"],
                                "space_fingerprint": table["space_fingerprint"], "recipe": table["recipe"],
                                "overrides": table["overrides"], "seeds": table["seeds"],
                                "searches": args.searches, "rows": rows})


def _record(path: Path, table: dict) -> dict:
    """The picks table already at ``path`` ({} if none), checked to be of ``table``'s recipe."""
    if not path.exists():
        return {}
    record = read_json(path, "picks table", required=False)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise StnasError(f"{path} is not a {FORMAT} table; move it away or choose another --out")
    if [record.get(k) for k in ("space_fingerprint", "recipe", "overrides")] != [
            table[k] for k in ("space_fingerprint", "recipe", "overrides")] or not extends_seeds(
            record.get("seeds"), table["seeds"]):
        raise StnasError(f"{path} was retrained with another space, recipe or seeds; choose another --out")
    fields = ("top1", "test_loss", "wall_s")
    for r in record.get("rows", []):
        if not (isinstance(r, dict) and isinstance(r.get("seeds"), dict) and all(
                isinstance(v, dict) and all(f in v for f in fields) for v in r["seeds"].values())):
            raise StnasError(f"{path} has a malformed row: {str(r)[:80]}")
    return record


def place_one(pick: dict, rows: list[dict], seeds: list[str], metric: str, resamples: int = 2000) -> dict:
    """The pick's percentile among ``rows`` (networks with every seed), by seed means and per seed."""
    if not all(s in pick["seeds"] for s in seeds):
        return {"n": len(rows), "percentile": None}
    nets = np.array([[truth_value(r["seeds"][s], metric) for s in seeds] for r in rows])
    mine = np.array([truth_value(pick["seeds"][s], metric) for s in seeds])
    means, me = nets.mean(1), float(mine.mean())
    pct = float((means <= me).mean())
    dist = stats.bootstrap((means,), lambda m: (m <= me).mean(), vectorized=False, n_resamples=resamples,
                           method="percentile", random_state=np.random.default_rng(0)).bootstrap_distribution
    return {"n": len(rows), "value": me if metric == "top1" else -me, "percentile": pct,
            "ci": ci95(dist),
            "per_seed": {s: float((nets[:, j] <= mine[j]).mean()) for j, s in enumerate(seeds)},
            "top_quartile": pct >= 0.75}


def place(args) -> None:
    picks = read_json(args.picks, "picks table", required=False)
    if not isinstance(picks, dict) or picks.get("format") != FORMAT:
        raise StnasError(f"{args.picks} is not a {FORMAT} table")
    table = read_table(args.table)
    if (picks["space_fingerprint"], picks["overrides"]) != (table["space_fingerprint"], table["overrides"]) or \
            not extends_seeds(picks["seeds"], table["seeds"]):
        raise StnasError(f"{args.picks} was not retrained with {args.table}'s space, recipe and seeds")
    seeds = [str(s) for s in picks["seeds"]]  # the table's, or the first of them (a table grown since)
    out = {"picks": args.picks, "table": args.table, "metric": args.metric, "seeds": seeds, "rows": []}
    print(f"{'pick':<14} {'budget':>6} {'MAdds':>6} {'use':>4} {args.metric:>9} {'pct':>5} {'95% CI':>13} "
          f"{'per seed':>11} {'nets':>4}")
    for p in picks["rows"]:
        rows = [r for r in table["rows"] if r["budget"] == p["budget"] and all(s in r["seeds"] for s in seeds)]
        if len(rows) < 4:
            continue
        res = place_one(p, rows, seeds, args.metric, args.resamples)
        out["rows"].append({"label": p["label"], "budget": p["budget"], "arch": p["arch"], "madds": p["madds"]} | res)
        if res["percentile"] is None:
            continue
        per = "/".join(f"{v:.2f}" for v in res["per_seed"].values())
        print(f"{p['label']:<14} {p['budget'] / 1e6:>5g}M {p['madds'] / 1e6:>5.2f}M {p['madds'] / p['budget']:>4.0%} "
              f"{res['value']:>9.4f} {res['percentile']:>5.2f} [{res['ci'][0]:.2f}, {res['ci'][1]:.2f}] "
              f"{per:>11} {res['n']:>4}")
    if args.json:
        write_json(Path(args.json), out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="retrain the searches' picks with the table's recipe (resumable)")
    b.add_argument("--table", required=True, help="the stnas-groundtruth table whose recipe and seeds to use")
    b.add_argument("--work", required=True, help="folder of the retrainings (resumed when rerun)")
    b.add_argument("--out", required=True, help="the picks table (JSON), rewritten after each retraining")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads per retraining")
    b.add_argument("--jobs", type=int, default=1, help="retrainings at a time")
    b.add_argument("--seeds", help="retrain under only the table's first seeds, e.g. 0,1 (default: all)")
    b.add_argument("searches", nargs="+", metavar="LABEL=SEARCH_DIR")
    p = sub.add_parser("place", help="each pick's within-budget percentile among the table's networks")
    p.add_argument("picks")
    p.add_argument("table")
    p.add_argument("--metric", choices=("test_loss", "top1"), default="test_loss")
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--json", help="also write the placement here")
    args = ap.parse_args(argv)
    one_line_errors(build if args.cmd == "build" else place, args)


if __name__ == "__main__":
    main()
