"""Latency in the pipeline: the predictor a search uses (its table from the cache, built
when missing, or from ``latency.table``), the copy of that table kept with the search, and
the measured latency of the chosen models (in their model cards and the report).

Files: ``<search dir>/latency_table.json`` (``stnas.latency.table.SEARCH_TABLE``, a table
file) and ``<retrain dir>/latency.json`` (``stnas.latency.table.MODEL_LATENCY``, checksummed;
the model card of the retrain run carries the same under ``latency``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from stnas.core.errors import CheckpointError
from stnas.core.rundir import RunDir
from stnas.core.units import parse_latency
from stnas.core.verified import read_json, write_json
from stnas.deploy.card import read_card, write_card
from stnas.latency import table as lat
from stnas.latency.measure import Timer, device_info, ensure_table, measure_networks
from stnas.search.evolution import check_latency_budgets
from stnas.space.arch import Arch
from stnas.space.searchspace import SearchSpace

CARD_FIELD = "latency"  # the key of a retrained model's card that holds its latency (the run's card only)

MIN_REPEATS = 50  # timed calls of a chosen model (over all rounds): a few hundred ms on a CPU


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def enabled(cfg: dict) -> bool:
    """Whether a run predicts and measures latency (a latency budget, or latency.measure)."""
    return bool(cfg["search"].get("latency_budgets")) or bool(cfg["latency"]["measure"])


def search_predictor(space: SearchSpace, cfg: dict, this_device: bool = True, timer: Timer | None = None,
                     log=_log) -> tuple[lat.Predictor, dict]:
    """The predictor for ``cfg``'s latency budgets, checked against them before any work,
    and the search.json fields that name its table (a search with another table is another
    search)."""
    table, path = ensure_table(space, cfg["latency"], this_device=this_device, timer=timer, log=log)
    if not this_device and table["device"] != device_info(cfg["latency"]["device"]):
        log(f"latency: the table {path} is of another device ({lat.describe(table)}); predictions are for it")
    pred = lat.Predictor(table, space)
    check_latency_budgets(pred, [parse_latency(v) for v in cfg["search"]["latency_budgets"] or []])
    return pred, {"latency_table": {"checksum": table["checksum"], "device": lat.describe(table)}}


def keep_table(pred: lat.Predictor, out_dir: str | Path) -> Path:
    """A copy of the table next to the search it served."""
    return lat.save_table(pred.table, Path(out_dir) / lat.SEARCH_TABLE)


def model_latency(arch: Arch, pred: lat.Predictor, settings: dict, timer: Timer | None = None) -> dict:
    """Predicted and measured (median, IQR, min, max over the timed calls) latency of a model
    on this machine, with the device and runtime named."""
    m = measure_networks([arch], settings["runtime"], settings["device"], settings["batch"], settings["threads"],
                         settings["warmup"], max(settings["repeats"], MIN_REPEATS), settings["rounds"], timer)[0]
    t = pred.table
    return {"device": lat.describe(t), "runtime": t["runtime"]["name"], "runtime_version": t["runtime"]["version"],
            "batch": t["batch"], "threads": t["threads"], "predicted_ms": pred(arch),
            "measured_ms": m["median_ms"], "measured_iqr_ms": m["iqr_ms"], "measured_min_ms": m["min_ms"],
            "measured_max_ms": m["max_ms"], "calls": m["calls"], "table_checksum": t["checksum"]}


def add_to_model(retrain_dir: str | Path, card: dict, arch: Arch, pred: lat.Predictor, settings: dict,
                 timer: Timer | None = None) -> dict:
    """Measures a retrained model (once: a resumed run reuses its latency.json when it was
    measured with the same table) and adds the result to its model card (rewritten only when
    that changes it)."""
    run = RunDir(retrain_dir)
    f = run / lat.MODEL_LATENCY
    try:
        found = read_json(f, "model latency") if f.exists() else None
    except CheckpointError:  # a damaged file is measured again
        found = None
    if found is None or found.get("table_checksum") != pred.table["checksum"]:
        found = model_latency(arch, pred, settings, timer)
        write_json(f, found)
    card = {**card, CARD_FIELD: found}
    if run.card.is_file() and card != read_card(run.card):
        write_card(run.card, card)
    return card
