"""A supernet run's proxy scores of every planned network, kept as a small committed file.

    python experiments/proxy_record.py runs/lat_a:sgld-T1 --archs experiments/results/gt_pilot6_plan.json \\
        --out experiments/results/proxy_records/sgld-T1.json

A supernet run (its weights and pool, tens of MB) lives on one machine; the ground-truth table
it is read against grows over many sessions and machines. A record holds what the readings
need from the run: every ``fidelity.py`` cell (single, stabilized@K, averaged@K, each by
top-1 and by loss) for every network of ``--archs`` (ground-truth plans, tables or picks
tables), the run's resolved config and proxy settings, and the SHA-256 of the weights that
produced them. ``fidelity.py --runs RECORD.json[:LABEL]`` and ``proxy_bias.py --run
RECORD.json`` then read it instead of the run. ``--epochs`` adds the cells of every kept
epoch checkpoint (``fidelity.py --epochs``); ``--few-shot LABEL=E:RUN_OFF,RUN_ON`` records a
few-shot pair, each network scored by the child of its side (``fidelity.py --few-shot``).

Rerun with more networks to extend a record: it must be of the same weights and settings,
and only the new networks are scored (the run's proxy cache already holds the rest).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stnas.core.errors import StnasError
from stnas.core.fileio import sha256_file
from stnas.core.rundir import RunDir
from stnas.core.verified import write_json
from stnas.pipeline.config import apply_layers, load_run_config, user_layers
from stnas.space.catalog import load_space
from stnas.train.pool import SamplePool

if not __package__:  # run as `python experiments/NAME.py`: the package from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import RECORD, RECORD_VERSION, is_record, one_line_errors, planned_archs, read_record
from experiments.fidelity import parse_few_shot, parse_runs, run_cells, score_few_shot


def preset_cell(cfg: dict, pool_size: int) -> str:
    """The fidelity cell a run's own configured proxy is (what ``stnas search`` uses)."""
    p = cfg["proxy"]
    metric = p.get("metric", "top1")
    if p["mode"] == "single":
        return f"single/{metric}"
    return f"{p['mode']}@{p.get('samples') or pool_size}/{metric}"


def identity(run_dir: str, overrides: list[str], epochs: bool = False) -> dict:
    """What the scores depend on: the resolved config (with the proxy overrides) and the weights."""
    cfg = load_run_config(run_dir)
    if overrides:
        cfg = apply_layers(cfg, user_layers(overrides=list(overrides)), allowed=("proxy", "data.val_limit"),
                           context="in a proxy record's settings")
    run = RunDir(run_dir)
    pool = SamplePool(run.pool)
    final = sha256_file(run.supernet) if run.supernet.is_file() else None
    weights = {"final": final, "pool": [e["sha256"] for e in pool.entries]}
    if epochs:
        weights["epochs"] = {f.stem: sha256_file(f) for f in sorted(run.epochs.glob("epoch_*.safetensors"))}
    return {"config": cfg, "weights": weights, "preset_cell": preset_cell(cfg, len(pool))}


def _target(args) -> tuple[str, dict, list[str], object]:
    """(label, identity, overrides, scorer(archs, ks) -> cells) of the run or few-shot pair."""
    if (args.run is None) == (args.few_shot is None):
        raise StnasError("give a supernet run or --few-shot LABEL=E:RUN_OFF,RUN_ON, not both")
    if args.few_shot is not None:
        if args.epochs:
            raise StnasError("--epochs is for a single run, not a few-shot pair")
        (label, (edge, off, on)), = parse_few_shot([args.few_shot], None).items()
        space = load_space(load_run_config(off)["preset"])
        halves = [identity(r, [], False) for r in (off, on)]
        me = {"run": [off, on], "edge": edge, "config": [h["config"] for h in halves],
              "weights": [h["weights"] for h in halves], "preset_cell": halves[0]["preset_cell"]}
        return label, me, [], lambda archs, ks: score_few_shot(edge, off, on, archs, ks, space)
    (label, (run_dir, sets)), = parse_runs([args.run]).items()
    if is_record(run_dir):
        raise StnasError(f"{run_dir} is a record already: give the supernet run directory")
    return label, {"run": run_dir} | identity(run_dir, sets, args.epochs), sets, \
        lambda archs, ks: run_cells(run_dir, archs, ks, sets, epochs=args.epochs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", metavar="DIR[:LABEL[:KEY=VALUE,...]]",
                    help="a supernet run, as fidelity.py --runs")
    ap.add_argument("--few-shot", metavar="LABEL=E:RUN_OFF,RUN_ON", help="a few-shot pair instead of a run")
    ap.add_argument("--epochs", action="store_true", help="also the cells of every kept epoch checkpoint")
    ap.add_argument("--archs", nargs="+", required=True, help="ground-truth plans, tables or picks tables")
    ap.add_argument("--k", default="1,2,4,8", help="pool sample counts K")
    ap.add_argument("--out", required=True, help="the record (JSON); an existing one is extended")
    args = ap.parse_args(argv)
    one_line_errors(write_record, args)


def write_record(args) -> None:
    """Scores what the record of ``main``'s arguments lacks and writes it to ``--out``."""
    label, ident, sets, scorer = _target(args)
    ks = [int(k) for k in args.k.split(",")]
    archs = list(dict.fromkeys(a for f in args.archs for a in planned_archs(f)))
    me = {"format": RECORD, "version": RECORD_VERSION, "label": label, "overrides": sets,
          "ks": ks} | ident
    cell = me["preset_cell"]
    if "@" in cell and int(cell.split("@")[1].split("/")[0]) not in ks:
        raise StnasError(f"the run's own proxy is {cell}, not among --k {args.k}: add its K")
    out = Path(args.out)
    cells: dict[str, dict[str, float]] = {}
    if out.exists():
        old = read_record(out)
        same = {k: old.get(k) for k in ("config", "weights", "ks", "overrides")}
        if same != json.loads(json.dumps({k: me[k] for k in same})):
            raise StnasError(f"{out} records other weights or settings; choose another --out")
        cells = old["cells"]
    todo = [a for a in archs if not cells or any(a not in v for v in cells.values())]
    if todo:
        for c, v in scorer(todo, ks).items():
            cells.setdefault(c, {}).update(v)
    write_json(out, me | {"cells": cells})
    print(f"{out}: {len(next(iter(cells.values())))} networks x {len(cells)} cells "
          f"({len(todo)} scored now)")


if __name__ == "__main__":
    main()
