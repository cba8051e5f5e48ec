"""The whole pipeline in one call: supernet (SGD, then SGD or SGLD sampling) -> parameter
sample pool -> proxy-scored search under the budget(s) -> for latency budgets, the best
candidate that measures within its budget (stnas.pipeline.latency.measured_picks, before any
retraining) -> retraining of the best architecture per budget -> standard networks of the
same budgets trained and evaluated the same way (stnas.pipeline.baselines; where
``baselines.enabled`` says so) -> report.

Every stage writes into one run directory and is skipped when its output is already
there, so ``resume=True`` continues an interrupted run where it stopped (the supernet
from its last checkpoint, the search from its score cache, each retraining from its
checkpoint). A resumed run first checks every input and result on disk
(:func:`stnas.pipeline.inputs.check_resumed_run`): a damaged file is named before any work, or,
for a retrained model's file that can be made again exactly, rebuilt.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from stnas.core import dist
from stnas.core.alloc import warm_allocator
from stnas.core.errors import DataError
from stnas.core.rundir import RunDir
from stnas.core.units import budget_label
from stnas.data.datasets import get_dataset
from stnas.pipeline.actuals import record as record_actuals
from stnas.pipeline.baselines import run_baselines, run_budgets, stage_enabled
from stnas.pipeline.calibration_process import LoadMeter
from stnas.pipeline.inputs import check_resumed_run
from stnas.pipeline.plan import resize_run, start, write_plan
from stnas.pipeline.report import write_report
from stnas.pipeline.retrain import retrain, retrain_splits
from stnas.pipeline.scaling import BASELINES_MAX_IMAGE_EPOCHS
from stnas.pipeline.search import run_search
from stnas.pipeline.supernet import train_supernet
from stnas.search.evolution import check_constraints
from stnas.search.history import target_json
from stnas.space.catalog import load_space


def embedded_default() -> tuple[str, str | None]:
    """The preset for ``stnas run`` with no arguments: Fashion-MNIST when its files can be
    found (no download), else scikit-learn's digits, with a notice saying why."""
    try:
        get_dataset("fashion-mnist", "test", download=False)
        return "fashion-mnist", None
    except DataError as exc:
        return "digits", (f"stnas: Fashion-MNIST not found ({exc}); running on scikit-learn's digits instead. "
                          "Get Fashion-MNIST with `apt-get install dataset-fashion-mnist`, or pass --data-root DIR.")


def _latency_predictor(space, cfg: dict, ctx: dist.Context):
    """The latency predictor and its search.json fields when the run uses latency (the main
    process builds a missing table first; the others then read it from the cache)."""
    from stnas.pipeline.latency import enabled

    if not enabled(cfg):
        return None, {}
    from stnas.pipeline.latency import search_predictor

    if not ctx.is_main:
        dist.barrier(ctx.world_size)
    found = search_predictor(space, cfg, this_device=True)
    if ctx.is_main:
        dist.barrier(ctx.world_size)
    return found


class _Clock:
    """Seconds per stage (``wall``), and the cores other processes used meanwhile (``others``:
    :class:`LoadMeter`, so that stnas.pipeline.actuals keeps only stages timed on a quiet machine)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.others: dict[str, float | None] = {}

    def start(self) -> None:
        self._t, self._meter = time.perf_counter(), LoadMeter()

    def stop(self, stage: str) -> None:
        self.wall[stage], self.others[stage] = time.perf_counter() - self._t, self._meter.others()


def _stage(name: str, ctx: dist.Context) -> None:
    if ctx.is_main:
        print(f"\n== {name} ==", file=sys.stderr, flush=True)


def _baselines(cfg: dict, space, plan: dict | None, ctx: dist.Context) -> bool:
    """Whether the baselines stage runs (stnas.pipeline.baselines.stage_enabled), said in its stage line."""
    enabled = cfg["baselines"]["enabled"]
    images = len(retrain_splits(cfg, space)[0]) if enabled is None else 0
    on = stage_enabled(cfg, images)
    sized_off = "baselines.enabled" in (((plan or {}).get("budget") or {}).get("changed") or {})
    why = " (the run's time budget turned it off; see the plan)" if sized_off and not on else ""
    if enabled is None:
        why = (f" ({images} train images × {cfg['retrain']['epochs']} epochs {'≤' if on else '>'} "
               f"{BASELINES_MAX_IMAGE_EPOCHS}; baselines.enabled={'false' if on else 'true'} to "
               f"{'skip' if on else 'run'} it)")
    _stage(f"4/5 baselines: {'on' if on else 'off'}{why}", ctx)
    return on


def run_pipeline(cfg: dict, run_dir: str | Path, resume: bool = False, ctx: dist.Context | None = None,
                 begun: float | None = None) -> dict:
    """Runs (or, with ``resume``, continues) every stage; returns the report dict. The
    process's allocator is set as the plan's calibration measured it (:mod:`stnas.core.alloc`).
    ``begun``: when the run's time budget started (``time.perf_counter``; ``stnas run`` gives the
    start of its command, imports included); by default, this call."""
    begun = time.perf_counter() if begun is None else begun
    warm_allocator()
    ctx = ctx or dist.setup(cfg["device"])
    run = RunDir(run_dir)
    with run.lock(ctx.is_main):
        return _pipeline(cfg, run, resume, ctx, begun)


def _pipeline(cfg: dict, run: RunDir, resume: bool, ctx: dist.Context, begun: float) -> dict:
    run_dir = run.path
    run.guard(resume, kind="supernet")
    space = load_space(cfg["preset"])
    se = cfg["search"]
    check_constraints(space, se["budgets"], se["min_madds"], se["max_params"])  # before any training
    rebuilds = check_resumed_run(run, cfg) if resume else []  # every input on disk, before any work
    for r in rebuilds if ctx.is_main else ():
        r.apply()
    given = cfg
    cfg, plan = start(cfg, space, run, resume, ctx)  # measured and sized to run.time_budget, or the saved one
    dist.barrier(ctx.world_size)
    if ctx.is_main and not resume:
        write_plan(run, plan)
    if ctx.is_main and (not resume or cfg != given):  # resumed: a resizing saved in the plan only
        run.save_config(cfg)
    clock = _Clock()
    predictor, lat_info = _latency_predictor(space, cfg, ctx)  # (None, {}) without latency settings

    clock.start()
    if not run.supernet.is_file():
        _stage(f"1/5 supernet: {space.name} on {cfg['data']['dataset']}, {cfg['supernet']['optimizer']} sampling phase",
               ctx)
        train_supernet(cfg, run_dir, resume=True, ctx=ctx)  # from the latest checkpoint, if any
    clock.stop("supernet")
    if not resume:  # the stages left sized again to the time left (stnas.pipeline.budget.resize)
        cfg, plan = resize_run(cfg, plan, run, time.perf_counter() - begun, clock.wall["supernet"], ctx)

    clock.start()
    labels = [budget_label(b) for b in cfg["search"]["budgets"]] + (cfg["search"]["latency_budgets"] or [])
    _stage(f"2/5 search: {cfg['search']['algorithm']}, budgets {', '.join(labels)}"
           f", proxy {cfg['proxy']['mode']} "
           f"({cfg['proxy']['metric']})", ctx)
    result, _ = run_search(cfg, {None: (run_dir, cfg)}, run.search, ctx, latency=(predictor, lat_info),
                           verify=False)  # checked above, or written by this process
    clock.stop("search")

    kept = {}  # latency budgets: the pick that measures within, found before any retraining
    if predictor is not None:
        from stnas.pipeline.latency import measured_picks
        kept = measured_picks(result, cfg, space, predictor, lat_info, run.search, ctx)

    clock.start()
    chosen, done = [], {}
    for k, (budget, recs) in enumerate(sorted(result.best.items())):
        if not recs:
            continue
        best, entry = kept.get(budget, (recs[0], None))
        out = run.retrain_dir(budget_label(budget))
        if str(best.arch) in done:  # the best of a smaller budget also wins this one
            out, card = done[str(best.arch)]
        else:
            _stage(f"3/5 retrain {k + 1}/{len(result.best)}: {best.arch} ({best.madds / 1e6:.2f}M MAdds ≤ "
                   f"{budget_label(budget)})", ctx)
            card = retrain(best.arch, cfg, out, resume=RunDir(out).config.is_file(), ctx=ctx)
            done[str(best.arch)] = (out, card)
        summary = None
        if predictor is not None:
            from stnas.pipeline.latency import add_to_model, card_entry
            summary = card_entry(entry) if entry else None
        if predictor is not None and ctx.is_main:
            card = add_to_model(out, card, best.arch, predictor, cfg["latency"],
                                measured=entry["measurement"] if entry else None, kept=summary)
            done[str(best.arch)] = (out, card)
        chosen.append({**target_json(budget), "arch": str(best.arch), "madds": best.madds, "params": best.params,
                       "score": best.score, "std": best.std, "model_card": card,
                       "retrain_dir": str(out.relative_to(run_dir))})
        if predictor is not None:
            chosen[-1].update(latency_ms=best.latency_ms, latency=(card or {}).get("latency"))
            if summary:
                chosen[-1]["latency_kept"] = summary
    clock.stop("retrain")

    clock.start()
    if _baselines(cfg, space, plan, ctx):
        budgets, picks = run_budgets(cfg, chosen, run_dir)
        run_baselines(cfg, run.baselines, budgets, picks, ctx)
        clock.stop("baselines")

    report = {}
    if ctx.is_main and not resume:  # what the stages took against their estimates, for later plans here
        record_actuals(plan, clock.wall, clock.others)
    if ctx.is_main:
        _stage("5/5 report", ctx)
        report = write_report(run_dir, chosen, cfg, clock.wall, plan)
    dist.barrier(ctx.world_size)
    return report
