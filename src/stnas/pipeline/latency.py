"""Latency in the pipeline: the predictor a search uses (its table from the cache, built
when missing, or from ``latency.table``) with the margin its latency budgets keep
(``latency.margin``, :mod:`stnas.latency.budget`), the copy of that table kept with the search,
the pick per latency budget that measures within it (:func:`measured_picks`, before any
retraining), and the measured latency of the chosen models (in their model cards and the report).

Files: ``<search dir>/latency_table.json`` (``stnas.latency.table.SEARCH_TABLE``, a table
file), ``<search dir>/latency_picks.json`` (:data:`PICKS`: per latency budget, the candidates
measured and the pick; written by :func:`measured_picks` alone, read back through
:func:`read_picks`) and ``<retrain dir>/latency.json`` (``stnas.latency.table.MODEL_LATENCY``,
checksummed; the model card of the retrain run carries the same under ``latency``, and what its
budgets kept under ``latency_budgets``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from stnas.core import dist
from stnas.core.errors import CheckpointError, LatencyBudgetError
from stnas.core.rundir import RunDir
from stnas.core.units import parse_latency
from stnas.core.verified import read_json, write_json
from stnas.deploy.card import read_card, write_card
from stnas.latency import budget as lb
from stnas.latency import table as lat
from stnas.latency.measure import Timer, device_info, ensure_table, measure_networks
from stnas.search.evolution import check_latency_budgets
from stnas.search.history import Record, SearchResult, choose, within
from stnas.search.targets import Target, build_targets
from stnas.space.arch import Arch
from stnas.space.searchspace import SearchSpace

CARD_FIELD = "latency"  # the key of a retrained model's card that holds its latency (the run's card only)
KEPT_FIELD = "latency_budgets"  # the run's card only: the latency budgets its pick was kept under
RUN_CARD_ONLY = (CARD_FIELD, KEPT_FIELD)  # added to a run's card after its model/ was exported

MIN_REPEATS = 50  # timed calls of a chosen model (over all rounds): a few hundred ms on a CPU
PICKS = "latency_picks.json"  # in the search folder: the measured pick per latency budget
MARGIN_INFO = "latency_margin_derivation"  # the search.json field naming how the margin was derived


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def enabled(cfg: dict) -> bool:
    """Whether a run predicts and measures latency (a latency budget, or latency.measure)."""
    return bool(cfg["search"].get("latency_budgets")) or bool(cfg["latency"]["measure"])


def search_predictor(space: SearchSpace, cfg: dict, this_device: bool = True, timer: Timer | None = None,
                     log=_log) -> tuple[lat.Predictor, dict]:
    """The predictor for ``cfg``'s latency budgets, checked against them (less their margin)
    before any work, and the search.json fields that name its table (a search with another
    table is another search) and its margin (:data:`MARGIN_INFO`, with no latency budget: none)."""
    table, path = ensure_table(space, cfg["latency"], this_device=this_device, timer=timer, log=log)
    if not this_device and table["device"] != device_info(cfg["latency"]["device"]):
        log(f"latency: the table {path} is of another device ({lat.describe(table)}); predictions are for it")
    pred = lat.Predictor(table, space)
    info = {"latency_table": {"checksum": table["checksum"], "device": lat.describe(table)}}
    budgets = [parse_latency(v) for v in cfg["search"]["latency_budgets"] or []]
    if budgets:
        info[MARGIN_INFO] = lb.resolve_margin(cfg["latency"]["margin"], table)
    check_latency_budgets(pred, budgets, margin_of(info))
    return pred, info


def margin_of(lat_info: dict) -> float:
    """The margin of a search's latency fields (0 without one)."""
    return float((lat_info.get(MARGIN_INFO) or {}).get("margin", 0.0))


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
                 timer: Timer | None = None, measured: dict | None = None, kept: dict | None = None) -> dict:
    """Measures a retrained model (once: a resumed run reuses its latency.json when it was
    measured with the same table; ``measured``, a :func:`model_latency` of ``arch`` made before,
    stands for the measurement) and adds the result to its model card (rewritten only when
    that changes it), with ``kept`` (:func:`card_entry`) under ``latency_budgets`` by its target."""
    run = RunDir(retrain_dir)
    f = run / lat.MODEL_LATENCY
    try:
        found = read_json(f, "model latency") if f.exists() else None
    except CheckpointError:  # a damaged file is measured again
        found = None
    if found is None or found.get("table_checksum") != pred.table["checksum"]:
        found = measured if measured is not None else model_latency(arch, pred, settings, timer)
        write_json(f, found)
    card = {**card, CARD_FIELD: found}
    if kept is not None:
        card[KEPT_FIELD] = {**card.get(KEPT_FIELD, {}), kept["target"]: kept}
    if run.card.is_file() and card != read_card(run.card):
        write_card(run.card, card)
    return card


# ------------------------------------------------------------------ budgets kept on measurement
def read_picks(search_dir: str | Path) -> dict | None:
    """``latency_picks.json`` of a search folder, checksum verified; None when absent or damaged
    (then it is measured again)."""
    f = Path(search_dir) / PICKS
    try:
        return read_json(f, "latency picks") if f.exists() else None
    except CheckpointError:
        return None


def _measurement_key(pred: lat.Predictor, settings: dict) -> dict:
    """What must agree for a measurement to be reused: the table and the timing settings."""
    return {"table_checksum": pred.table["checksum"],
            **{k: settings[k] for k in ("runtime", "device", "batch", "threads", "warmup", "repeats", "rounds")}}


def measured_picks(result: SearchResult, cfg: dict, space: SearchSpace, pred: lat.Predictor, lat_info: dict,
                   search_dir: str | Path, ctx: dist.Context | None = None,
                   measure: Callable[[Arch], dict] | None = None) -> dict[Target, tuple[Record, dict]]:
    """Per latency target of ``result``: (the record to retrain, its entry), the pick that
    measures within its budget (:func:`stnas.latency.budget.first_within` over the search's
    candidates within the margin, in the search's order; at most ``latency.max_measured``).

    A network is measured once (``measure``, default :func:`model_latency`; a measurement in
    ``latency_picks.json`` of the same table and timing settings is reused, so a resumed run
    measures nothing again). The main process measures and writes the file; the others read it.

    Raises:
        LatencyBudgetError: no candidate of a budget measures within it (one line).
    """
    ctx = ctx or dist.Context()
    targets = [t for t in result.best if t.limit("latency") is not None]
    if not targets:
        return {}
    f = Path(search_dir) / PICKS
    if ctx.is_main:
        _write_picks(f, result, cfg, space, pred, lat_info, targets, measure)
    dist.barrier(ctx.world_size)
    picks = read_picks(search_dir)
    if picks is None:
        raise CheckpointError(f"{f} is missing or damaged after measuring; run again")
    out = {}
    for t in targets:
        entry = picks["targets"].get(t.label)
        if entry is None:  # no candidate within the margin: the budget has no pick (as without a margin)
            continue
        if entry.get("error"):
            raise LatencyBudgetError(entry["error"])
        record = next(r for r in result.history if str(r.arch) == entry["pick"] and not r.screened)
        out[t] = (record, {**entry, "measurement": picks["measured"][entry["pick"]]})
    return out


def _write_picks(f: Path, result, cfg, space, pred, lat_info, targets, measure) -> None:
    settings, se = cfg["latency"], cfg["search"]
    margin = margin_of(lat_info)
    key = _measurement_key(pred, settings)
    old = read_picks(f.parent) or {}
    cache = dict(old.get("measured", {})) if old.get("key") == key else {}
    measure = measure or (lambda a: model_latency(a, pred, settings))
    archs = {str(r.arch): r.arch for r in result.history}

    def measured(name: str) -> dict:
        if name not in cache:
            cache[name] = measure(archs[name])
        return cache[name]

    shrunk = build_targets(se, space, pred, {"latency": margin})
    full = build_targets(se, space, pred)
    entries = {}
    for t in targets:
        ranked = choose(within(result.history, shrunk[t]), se["select"], float(se["tie_alpha"]))
        names = [str(r.arch) for r in ranked]
        if not names:
            continue
        budget = float(t.limit("latency"))
        best = sorted(within(result.history, full[t]) + ranked, key=lambda r: -r.score)  # without the margin
        entry = {"target": t.label, "budget_ms": budget, "margin": margin,
                 "margin_method": (lat_info.get(MARGIN_INFO) or {}).get("method", "off"),
                 "searched_limit_ms": lb.searched_limit(budget, margin), "noise_rule": lb.NOISE_RULE,
                 "max_measured": settings["max_measured"], "candidates": len(names),
                 "best_score": best[0].score if best else None}
        try:
            i, tried = lb.first_within(names, budget, measured, settings["max_measured"])
        except LatencyBudgetError as exc:
            entries[t.label] = {**entry, "error": str(exc), "measured": min(len(names), settings["max_measured"])}
            continue
        pick, m = ranked[i], tried[i]
        entries[t.label] = {
            **entry, "pick": names[i], "pick_rank": i + 1, "score": pick.score, "predicted_ms": pred(pick.arch),
            "measured_ms": m["measured_ms"], "measured_iqr_ms": m["measured_iqr_ms"], "noise": lb.noise(m),
            "within": True, "measured": len(tried),
            "tried": [{"arch": n, "predicted_ms": pred(r.arch), "score": r.score, "measured_ms": x["measured_ms"],
                       "measured_iqr_ms": x["measured_iqr_ms"], "within": lb.is_within(x, budget)}
                      for n, r, x in zip(names, ranked, tried)],
            "score_given_up": None if entry["best_score"] is None else entry["best_score"] - pick.score}
    doc = {"key": key, "measured": cache, "targets": entries}
    if doc != old:
        write_json(f, doc)


def card_entry(entry: dict) -> dict:
    """What a model card and the report say of a budget kept on measurement."""
    keys = ("target", "budget_ms", "margin", "margin_method", "searched_limit_ms", "predicted_ms", "measured_ms",
            "measured_iqr_ms", "noise", "noise_rule", "within", "measured", "max_measured", "pick_rank", "score",
            "best_score", "score_given_up")
    return {k: entry.get(k) for k in keys}
