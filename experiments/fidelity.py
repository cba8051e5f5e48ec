"""Proxy fidelity against a ground-truth table (``ground_truth.py``), within each budget.

    python experiments/fidelity.py experiments/results/gt_pilot.json --runs runs/fm_sgld:sgld-T1 runs/fm_sgd:sgd \\
        --k 1,2,4,8 --out experiments/results/fidelity_pilot.json

For every supernet run (``DIR[:LABEL[:KEY=VALUE,...]]``; the settings change the proxy's
``proxy.*`` or ``data.val_limit``, e.g. ``runs/a:recal8:proxy.recal_batches=8``) the
table's networks are scored once per weight source (every pool sample, the final weights,
the averaged pool), which the run's proxy cache keeps, so K-sample cells and both metrics
come from the same evaluations:

* ``single``: the final shared weights; ``stabilized@K``: the mean over the first K pool
  samples; ``averaged@K``: one evaluation under the element-wise mean of the first K;
* each scored by search-val top-1 and by minus search-val loss.

With ``--epochs``, also ``epochNNN``: the final-weights proxy under each kept epoch checkpoint
(``epochs/epoch_NNN.safetensors``), the curve of tau against supernet training length.

Baselines: MAdds, params, the sum of the stem edges' kernel sizes (a skip has none) and the
depth (stem edges that are not skips; constant in a space without skips). The truth of a network
is its mean over seeds of test top-1 (``--truth top1``) or of minus test loss (``loss``).

Per budget and cell: Kendall tau with a percentile bootstrap 95% interval over the networks,
the *paired* interval of (cell tau - MAdds tau) from the same resamples, and the selection
quality: the true within-budget percentile (1 = best) of the cell's top pick and the mean
percentile of its top 3. ``--contrast A:B`` (repeatable) adds, for every cell that runs A and
B share (``A single/loss`` with ``B single/loss`` ...), the paired interval of (tau_A - tau_B).
``--few-shot LABEL=E:RUN_OFF,RUN_ON`` scores a few-shot pair (two ``supernet.split``
children of branch edge E): each network by the child of its side, as one set of cells.
A run may also be a *proxy record* (``proxy_record.py``, a committed ``.json``): the cells a
supernet gave every planned network, kept so that a reading needs no supernet on the
machine; every network of the table must be in it.
``--replicates LABEL=A,B[,...]`` groups runs that are replicates of one configuration
(supernets of one recipe, other training seeds): cells ``LABEL cell`` whose tau is the mean
of the members' (per bootstrap resample too), with every member's tau and their sd; a
contrast with a group also gives the replicate standard error of the difference (a single
run taken to spread as its counterpart group does) and whether it is resolved (interval
excludes 0 and the difference exceeds twice that error).
``--ensemble LABEL=A,B[,...]`` adds cells ``LABEL cell`` that score each network by the mean of
the members' scores (an ensemble of supernets sharing one search-val set).
``--exclude TABLE`` leaves out the networks another table holds: a reading on networks
added after a hypothesis was chosen on that table. ``--mix CELL`` (repeatable) adds
``CELL+madds``: the mean of the cell's within-budget rank and MAdds' (equal weights,
nothing fitted), which beats MAdds only if the proxy knows something MAdds does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.core.errors import StnasError
from stnas.core.fileio import write_text
from stnas.core.verified import write_json
from stnas.core.weights import load_weights
from stnas.pipeline.config import apply_layers, load_run_config, user_layers
from stnas.pipeline.search import proxy_for_run
from stnas.space.catalog import load_arch, load_space

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import (
    ci95,
    is_record,
    one_line_errors,
    read_record,
    read_table,
    rows_with_seeds,
    tau,
    truth_value,
)

BASELINES = ("madds", "params", "kernel_sum", "depth")


def percentile_of_pick(scores: np.ndarray, truth: np.ndarray, top: int) -> float:
    """Mean true percentile (share of networks with truth <= the pick's; 1 = the best) of
    the ``top`` networks with the highest scores (ties broken by order)."""
    picks = np.argsort(-scores, kind="stable")[:top]
    return float(np.mean([(truth <= truth[i]).mean() for i in picks]))


def compare(cells: dict[str, np.ndarray], truth: np.ndarray, resamples: int, seed: int = 0,
            contrasts: list[tuple[str, str]] = (), groups: dict[str, list[str]] | None = None) -> dict:
    """{cell: {tau, ci, diff_vs_madds, diff_ci, top1_pct, top3_pct}} for one budget; every
    cell and MAdds share each bootstrap resample of the networks (so the difference is paired).
    ``groups`` ({name: member cells}, replicates of one configuration) add cells whose tau is
    the mean of their members' (in every resample too), with ``members`` and ``rep_sd``.
    Each (a, b) of ``contrasts`` adds ``"a - b": {diff, ci}``, paired the same way; where
    either is a group also ``rep_se``, the replicate standard error of the difference (a
    single draw taken to have its counterpart group's sd), and ``resolved``: the interval
    excludes 0 and the difference exceeds twice ``rep_se``."""
    names = list(cells)
    dist = stats.bootstrap((np.arange(len(truth)),), lambda i: np.array([tau(cells[c][i], truth[i]) for c in names]),
                           vectorized=False, n_resamples=resamples, method="percentile",
                           random_state=np.random.default_rng(seed)).bootstrap_distribution
    boot = dict(zip(names, dist))  # scipy resamples the networks; every cell sees each resample
    out = {}
    for c, v in cells.items():
        out[c] = {"tau": tau(v, truth), "top1_pct": percentile_of_pick(v, truth, 1),
                  "top3_pct": percentile_of_pick(v, truth, 3)}
    for g, members in (groups or {}).items():
        boot[g] = np.mean([boot[m] for m in members], axis=0)
        taus = [out[m]["tau"] for m in members]
        out[g] = {"tau": float(np.mean(taus)), "members": taus, "rep_sd": float(np.std(taus, ddof=1)),
                  "top1_pct": float(np.mean([out[m]["top1_pct"] for m in members])),
                  "top3_pct": float(np.mean([out[m]["top3_pct"] for m in members]))}
    madds = out["madds"]["tau"]
    for c, v in out.items():
        diff = boot[c] - boot["madds"]
        v |= {"ci": ci95(boot[c]), "diff_vs_madds": v["tau"] - madds, "diff_ci": ci95(diff)}
    for a, b in contrasts:
        diff = boot[a] - boot[b]
        res = {"diff": out[a]["tau"] - out[b]["tau"], "ci": ci95(diff)}
        if "rep_sd" in out[a] or "rep_sd" in out[b]:
            # a single draw against a group has the group's spread (rule 10, fidelity.md)
            sd_a, sd_b = (out[x].get("rep_sd", out[y].get("rep_sd")) for x, y in ((a, b), (b, a)))
            se = float(np.sqrt(sd_a ** 2 / len(out[a].get("members", [0]))
                               + sd_b ** 2 / len(out[b].get("members", [0]))))
            res |= {"rep_se": se, "resolved": bool((res["ci"][0] > 0 or res["ci"][1] < 0)
                                                   and abs(res["diff"]) > 2 * se)}
        out[f"{a} - {b}"] = res
    return out


def replicate_groups(cell_names: list[str], spec: str, option: str = "--replicates") -> dict[str, list[str]]:
    """The groups of ``--replicates LABEL=A,B[,...]`` (or ``--ensemble``): ``LABEL cell`` for
    every cell that runs A, B, ... all have, its members their cells."""
    label, sep, rest = spec.partition("=")
    members = rest.split(",")
    if not sep or not label or len(members) < 2 or not all(members) or len(set(members)) < len(members):
        raise StnasError(f"{option} {spec!r}: expected LABEL=RUN_A,RUN_B[,...] (two or more run labels)")
    suffixes = [c[len(members[0]) + 1:] for c in cell_names if c.startswith(members[0] + " ")]
    out = {f"{label} {x}": [f"{m} {x}" for m in members] for x in suffixes
           if all(f"{m} {x}" in cell_names for m in members)}
    if not out:
        raise StnasError(f"{option} {spec!r}: runs {', '.join(members)} share no cell (labels: see --runs)")
    return out


def ensemble_cells(cells: dict[str, dict[str, float]], spec: str) -> dict[str, dict[str, float]]:
    """The cells of ``--ensemble LABEL=A,B[,...]``: a network's score is the mean of the
    members' scores of the same cell (members scored on the same search-val set)."""
    return {g: {a: float(np.mean([cells[m][a] for m in members])) for a in cells[members[0]]}
            for g, members in replicate_groups(list(cells), spec, "--ensemble").items()}


def contrast_pairs(cell_names: list[str], spec: str) -> list[tuple[str, str]]:
    """The cell pairs of ``--contrast A:B``: every cell of run label A with the same cell of B."""
    a, sep, b = spec.partition(":")
    if not sep or not a or not b:
        raise StnasError(f"--contrast {spec!r}: expected LABEL_A:LABEL_B")
    pairs = [(c, f"{b} {c[len(a) + 1:]}") for c in cell_names if c.startswith(a + " ")]
    pairs = [(x, y) for x, y in pairs if y in cell_names]
    if not pairs:
        raise StnasError(f"--contrast {spec!r}: runs {a!r} and {b!r} share no cell (labels: see --runs)")
    return pairs


def score_run(run_dir: str, archs: list[str], ks: list[int],
              overrides: list[str] = ()) -> dict[str, dict[str, float]]:
    """{cell name: {arch: score}} for one supernet run, its proxy settings changed by
    ``overrides`` (``proxy.*`` and ``data.val_limit`` only, e.g. ``proxy.recal_batches=8``)."""
    cfg = load_run_config(run_dir)
    if overrides:
        cfg = apply_layers(cfg, user_layers(overrides=list(overrides)), allowed=("proxy", "data.val_limit"),
                           context="in a fidelity run's proxy settings")
    cells: dict[str, dict[str, float]] = {}
    for metric in ("top1", "loss"):
        c = json.loads(json.dumps(cfg))
        c["proxy"]["metric"], c["proxy"]["samples"] = metric, None
        proxy = proxy_for_run(run_dir, c, progress=True)
        stab = proxy.score(archs, "stabilized")
        pool_k = len(stab[0].per_sample)
        for k in (k for k in ks if k <= pool_k):
            cells[f"stabilized@{k}/{metric}"] = {s.arch: float(np.mean(s.per_sample[:k])) for s in stab}
        cells[f"single/{metric}"] = {s.arch: s.score for s in proxy.score(archs, "single")}
        for k in (k for k in ks if 2 <= k <= pool_k):
            c["proxy"]["samples"] = k
            avg = proxy_for_run(run_dir, c).score(archs, "averaged")
            cells[f"averaged@{k}/{metric}"] = {s.arch: s.score for s in avg}
    return cells


def run_cells(run: str, archs: list[str], ks: list[int], overrides: list[str] = (),
              epochs: bool = False) -> dict[str, dict[str, float]]:
    """``score_run`` (and with ``epochs`` ``epoch_cells``) for a run directory; for a proxy
    record, its cells of ``archs`` for the K of ``ks`` (every network must be in it)."""
    if not is_record(run):
        cells = score_run(run, archs, ks, overrides)
        return cells | epoch_cells(run, archs) if epochs else cells
    rec = read_record(run)
    if epochs and not any(c.startswith("epoch") for c in rec["cells"]):
        raise StnasError(f"{run} holds no epoch cells; make it with proxy_record.py --epochs")
    missing = sorted({a for v in rec["cells"].values() for a in archs if a not in v})
    if missing:
        raise StnasError(f"{run} lacks {len(missing)} of the table's networks (e.g. {missing[0]}); "
                         f"add them with proxy_record.py on the supernet it was made from")
    keep = [c for c in rec["cells"] if (epochs or not c.startswith("epoch"))
            and ("@" not in c or int(c.split("@")[1].split("/")[0]) in ks)]
    return {c: {a: float(rec["cells"][c][a]) for a in archs} for c in keep}


def epoch_cells(run_dir: str, archs: list[str]) -> dict[str, dict[str, float]]:
    """{"epochNNN/top1" and "epochNNN/loss": {arch: score}}: the single-weights proxy under
    every epoch checkpoint the run kept (one evaluation per network and epoch gives both)."""
    files = sorted(Path(run_dir, "epochs").glob("epoch_*.safetensors"))
    if not files:
        raise StnasError(f"{run_dir}/epochs holds no epoch weights; train with supernet.keep_epoch_weights=true")
    proxy = proxy_for_run(run_dir, load_run_config(run_dir))
    cells: dict[str, dict[str, float]] = {}
    for f in files:
        state, _ = load_weights(f, what="epoch weights")
        scores = proxy.evaluate_weights(state, archs)
        cells[f"{f.stem.replace('_', '')}/top1"] = {s.arch: s.top1 for s in scores}
        cells[f"{f.stem.replace('_', '')}/loss"] = {s.arch: -s.loss for s in scores}
    return cells


def shape_features(arch, space) -> dict[str, float]:
    """The stem's kernel-size sum (a skip has no kernel) and depth (its edges that are not skips)."""
    ops = [space.ops[o] for o in arch.stem if space.ops[o].kind != "skip"]
    return {"kernel_sum": float(sum(op.kernel for op in ops)), "depth": float(len(ops))}


def baselines(table: dict, space) -> dict[str, dict[str, float]]:
    out = {b: {} for b in BASELINES}
    for r in table["rows"]:
        out["madds"][r["arch"]] = float(r["madds"])
        out["params"][r["arch"]] = float(r["params"])
        for name, v in shape_features(load_arch(r["arch"], space), space).items():
            out[name][r["arch"]] = v
    return out


def rank_mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The mean of the ranks of ``a`` and of ``b`` (average ranks for ties; high = high)."""
    return (stats.rankdata(a) + stats.rankdata(b)) / 2


def truth_of(row: dict, metric: str) -> float | None:
    """A network's truth: the mean over its seeds of ``truth_value`` (top1 or minus test loss)."""
    vals = [truth_value(s, metric) for s in row["seeds"].values()]
    return float(np.mean(vals)) if vals else None


def parse_runs(specs: list[str]) -> dict[str, tuple[str, list[str]]]:
    """{label: (run dir or record, proxy overrides)} of ``DIR[:LABEL[:KEY=VALUE,...]]`` or
    ``RECORD.json[:LABEL]`` specs; every run's config (or record) is read here, so a missing
    run fails before any scoring."""
    runs: dict[str, tuple[str, list[str]]] = {}
    for spec in specs:
        run_dir, _, rest = spec.partition(":")
        label, _, sets = rest.partition(":")
        if is_record(run_dir):
            rec = read_record(run_dir)
            if sets:
                raise StnasError(f"--runs {spec!r}: a proxy record's settings are fixed ({rec.get('overrides')})")
            label = label or rec["label"]
        else:
            label = label or Path(run_dir).name
            load_run_config(run_dir)
        if label in runs:
            raise StnasError(f"--runs: label {label!r} repeats")
        runs[label] = (run_dir, sets.split(",") if sets else [])
    return runs


def parse_few_shot(specs: list[str], space) -> dict[str, tuple[int, str, str]]:
    """{label: (edge, off run, on run)} of ``LABEL=E:RUN_OFF,RUN_ON``; the two runs must be a
    few-shot pair (``stnas.pipeline.search.check_children``) of edge E, off child first."""
    from stnas.pipeline.search import check_children

    out = {}
    for spec in specs:
        label, sep, rest = spec.partition("=")
        edge, sep2, dirs = rest.partition(":")
        runs = dirs.split(",")
        if not (sep and sep2 and label and edge.isdigit() and len(runs) == 2 and all(runs)):
            raise StnasError(f"--few-shot {spec!r}: expected LABEL=E:RUN_OFF,RUN_ON")
        try:
            e, sides = check_children(runs)
        except StnasError as exc:
            raise StnasError(f"--few-shot {spec!r}: {exc}") from None
        if (e, str(sides[False])) != (int(edge), str(Path(runs[0]))):
            raise StnasError(f"--few-shot {spec!r}: these runs split edge {e} with {sides[False]} "
                             f"as its off child, not edge {edge} with {runs[0]}")
        out[label] = (e, runs[0], runs[1])
    return out


def score_few_shot(edge: int, off_run: str, on_run: str, archs: list[str], ks: list[int],
                   space) -> dict[str, dict[str, float]]:
    """Cells of a few-shot pair: each network scored by the child of its side of ``edge``."""
    from stnas.proxy.few_shot import side

    sides = {False: [], True: []}
    for a in archs:
        sides[side(load_arch(a, space), edge)].append(a)
    parts = [score_run(run, sides[on], ks) for run, on in ((off_run, False), (on_run, True)) if sides[on]]
    names = set.intersection(*(set(p) for p in parts)) if parts else set()
    return {c: {a: v for p in parts for a, v in p[c].items()} for c in sorted(names)}


def markdown(result: dict) -> str:
    """The result as markdown tables, one per budget, cells by tau."""
    out = [f"Truth: seed-mean test {result['truth']} of `{result['table']}`.", ""]
    for b, res in result["budgets"].items():
        out += [f"**{int(b) / 1e6:g}M, {res['n']} networks**", "",
                "| cell | τ [95% CI] | τ − MAdds τ [paired 95% CI] | top pick pct | top-3 pct |",
                "|---|---|---|---|---|"]
        for c, v in sorted(res["cells"].items(), key=lambda kv: -kv[1]["tau"]):
            reps = f" (replicates {', '.join(f'{t:+.2f}' for t in v['members'])}; sd {v['rep_sd']:.2f})" \
                if "members" in v else ""
            out.append(f"| {c}{reps} | {v['tau']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}] "
                       f"| {v['diff_vs_madds']:+.2f} [{v['diff_ci'][0]:+.2f}, {v['diff_ci'][1]:+.2f}] "
                       f"| {v['top1_pct']:.2f} | {v['top3_pct']:.2f} |")
        if res.get("contrasts"):
            out += ["", "| contrast | τ difference [paired 95% CI] |", "|---|---|"]
            out += [f"| {c} | {v['diff']:+.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]"
                    + (f"; replicate se {v['rep_se']:.2f}, {'resolved' if v['resolved'] else 'not resolved'}"
                       if "rep_se" in v else "") + " |"
                    for c, v in res["contrasts"].items()]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", help="a stnas-groundtruth table")
    ap.add_argument("--runs", nargs="*", default=[], metavar="DIR[:LABEL[:KEY=VALUE,...]]",
                    help="supernet run directories, optionally with proxy settings, e.g. "
                         "runs/a:recal8:proxy.recal_batches=8")
    ap.add_argument("--few-shot", action="append", default=[], metavar="LABEL=E:RUN_OFF,RUN_ON",
                    help="two supernet.split children of branch edge E, each network scored by its side's")
    ap.add_argument("--k", default="1,2,4,8", help="pool sample counts K")
    ap.add_argument("--truth", choices=("top1", "loss"), default="top1")
    ap.add_argument("--epochs", action="store_true", help="also score every kept epoch checkpoint (tau vs length)")
    ap.add_argument("--min-seeds", type=int, default=2, help="networks with fewer finished seeds are left out")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--contrast", action="append", default=[], metavar="A:B",
                    help="paired interval of tau(A) - tau(B) for every cell runs A and B share")
    ap.add_argument("--mix", action="append", default=[], metavar="CELL",
                    help="add CELL+madds, the mean of CELL's and MAdds' within-budget ranks, e.g. "
                         "'sgld-T1 stabilized@8/loss'")
    ap.add_argument("--replicates", action="append", default=[], metavar="LABEL=A,B[,...]",
                    help="replicates of one configuration (run labels): cells 'LABEL cell' with the mean tau "
                         "over them and its replicate sd; usable in --contrast")
    ap.add_argument("--ensemble", action="append", default=[], metavar="LABEL=A,B[,...]",
                    help="an ensemble of runs (labels): cells 'LABEL cell' scoring each network by the mean "
                         "of the members' scores; usable in --contrast and --replicates")
    ap.add_argument("--exclude", metavar="TABLE",
                    help="leave out the networks another table holds (e.g. those a hypothesis was chosen on)")
    ap.add_argument("--out", help="write the result JSON here")
    ap.add_argument("--markdown", help="write the tables as markdown here")
    args = ap.parse_args(argv)
    one_line_errors(read, args)


def read(args) -> None:
    """The fidelity tables of ``main``'s arguments (printed, and written where asked)."""
    table = read_table(args.table)
    rows = rows_with_seeds(table, args.min_seeds)
    space = load_space(table["preset"])
    if args.exclude:
        seen = {r["arch"] for r in read_table(args.exclude)["rows"]}
        rows = [r for r in rows if r["arch"] not in seen]
    archs = sorted({r["arch"] for r in rows})
    ks = [int(k) for k in args.k.split(",")]
    runs = parse_runs(args.runs)
    few = parse_few_shot(args.few_shot, space)
    labels = list(runs) + list(few)
    for spec in args.ensemble:  # members are run labels; the ensemble is a label too
        g, _, rest = spec.partition("=")
        if not all(m in labels for m in rest.split(",")) or g in labels:
            raise StnasError(f"--ensemble {spec!r}: expected a new LABEL and labels of --runs "
                             f"({', '.join(labels)})")
        labels.append(g)
    for spec in args.replicates:  # replicate members are run labels; the group's a label too
        g, _, rest = spec.partition("=")
        if not all(m in labels for m in rest.split(",")) or g in labels:
            raise StnasError(f"--replicates {spec!r}: expected a new LABEL and labels of --runs "
                             f"({', '.join(labels)})")
        labels.append(g)
    for spec in args.contrast:  # every label named before any scoring
        a, sep, b = spec.partition(":")
        if not sep or a not in labels or b not in labels:
            raise StnasError(f"--contrast {spec!r}: expected A:B with two labels of --runs or --few-shot "
                             f"({', '.join(labels)})")
    for c in args.mix:  # a cell of a named run or a baseline, before any scoring
        if c not in BASELINES and c.split(" ")[0] not in labels:
            raise StnasError(f"--mix {c!r}: expected a baseline ({', '.join(BASELINES)}) or LABEL CELL "
                             f"with a label of --runs or --few-shot ({', '.join(labels)})")
    cells = baselines(table, space)
    for label, (run_dir, sets) in runs.items():
        scored = run_cells(run_dir, archs, ks, sets, epochs=args.epochs)
        cells |= {f"{label} {c}": v for c, v in scored.items()}
    for label, (edge, off_run, on_run) in few.items():
        cells |= {f"{label} {c}": v for c, v in score_few_shot(edge, off_run, on_run, archs, ks, space).items()}
    for c in args.mix:
        if c not in cells:
            raise StnasError(f"--mix {c!r}: no such cell (cells: {', '.join(sorted(cells))})")
    for spec in args.ensemble:
        cells |= ensemble_cells(cells, spec)
    groups = {k: v for spec in args.replicates for k, v in replicate_groups(list(cells), spec).items()}
    named = list(cells) + list(groups)  # a contrast named twice is read once
    pairs = list(dict.fromkeys(p for spec in args.contrast for p in contrast_pairs(named, spec)))
    result = {"table": args.table, "truth": args.truth, "runs": args.runs, "replicates": args.replicates,
              "ensemble": args.ensemble,
              "exclude": args.exclude, "budgets": {}}
    for b in table["budgets"]:
        group = [r for r in rows if r["budget"] == b]
        if len(group) < 4:
            continue
        truth = np.array([truth_of(r, args.truth) for r in group])
        vals = {c: np.array([v[r["arch"]] for r in group]) for c, v in cells.items()}
        vals |= {f"{c}+madds": rank_mix(vals[c], vals["madds"]) for c in args.mix}
        res = compare(vals, truth, args.resamples, contrasts=pairs, groups=groups)
        diffs = {k: res.pop(k) for k in [f"{x} - {y}" for x, y in pairs]}
        result["budgets"][str(b)] = {"n": len(group), "cells": res, "contrasts": diffs}
        print(f"\nbudget {b / 1e6:g}M, {len(group)} networks, truth: test {args.truth}")
        print(f"{'cell':<34} {'tau':>6} {'95% CI':>15} {'- MAdds':>7} {'paired 95% CI':>15} "
              f"{'pick':>5} {'top3':>5}")
        for c, v in sorted(res.items(), key=lambda kv: -kv[1]["tau"]):
            print(f"{c:<34} {v['tau']:+6.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}] {v['diff_vs_madds']:+7.2f} "
                  f"[{v['diff_ci'][0]:+.2f}, {v['diff_ci'][1]:+.2f}] {v['top1_pct']:5.2f} {v['top3_pct']:5.2f}")
        for c, v in diffs.items():
            rep = (f" replicate se {v['rep_se']:.2f} ({'' if v['resolved'] else 'not '}resolved)"
                   if "rep_se" in v else "")
            print(f"contrast {c:<60} {v['diff']:+6.2f} [{v['ci'][0]:+.2f}, {v['ci'][1]:+.2f}]{rep}")
    if args.out:
        write_json(Path(args.out), result)
    if args.markdown:
        write_text(Path(args.markdown), markdown(result))


if __name__ == "__main__":
    main()
