"""The plan of a run, printed before any work: the stages, the work in each and its estimated
seconds on this machine (:mod:`stnas.pipeline.estimate`, from the unit costs
:mod:`stnas.pipeline.calibrate` measured), and, with a time budget, the run sized to fit it
(:mod:`stnas.pipeline.budget`). The plan is saved in the run directory (``plan.json``) beside
the sized config, and a resumed run keeps both.

``STNAS_PLAN=off`` (environment) skips the plan and its calibration where nothing needs them
(no time budget, no ``--dry-run``).
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from stnas.core import dist
from stnas.core.errors import CheckpointError, StnasError
from stnas.core.rundir import RunDir
from stnas.core.units import fmt_duration
from stnas.core.verified import read_json, write_json
from stnas.pipeline.actuals import corrections
from stnas.pipeline.actuals import keys as actual_keys
from stnas.pipeline.budget import fit_run, resize, resized_text
from stnas.pipeline.calibrate import calibrate, data_sizes, retrain_labels
from stnas.pipeline.config import apply_layers
from stnas.pipeline.estimate import RUN_STAGES, make_plan, run_stages
from stnas.search.evolution import check_constraints
from stnas.space.catalog import load_space


def prepare_run(cfg: dict, space, device, *, ranks: int = 1, write_cache: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """The plan of ``stnas run`` (calibrating what the cache lacks) and the config it runs:
    with ``run.time_budget``, sized to fit it (ConfigError, one line, when it cannot)."""
    sizes = dict(data_sizes(cfg, space, RUN_STAGES + ("baselines",), ranks), trainings=retrain_labels(cfg["search"]))
    units, spent, cached = calibrate(cfg, space, run_stages(cfg, sizes), device, sizes=sizes, write_cache=write_cache,
                                     log=log)
    names = actual_keys(cfg, space, RUN_STAGES + ("baselines",), device, sizes)
    units["correction"] = corrections(names)  # what earlier runs here took against their estimates
    budget = None
    if cfg["run"]["time_budget"] is not None:
        _, budget = fit_run(cfg, sizes, units, cfg["run"]["time_budget"], spent)
        cfg = _applied(cfg, budget["changed"])
    plan = make_plan(cfg, sizes, units, run_stages(cfg, sizes), spent, cached)
    plan["budget"], plan["actual_keys"] = budget, names
    return cfg, plan


def plan_for(cfg: dict, space, stages, device, *, write_cache: bool = True, archs=None, sizes: dict | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """The plan of one step (``stnas supernet train``, ``search``, ``retrain``, ``baselines``),
    corrected by what the stages of earlier ``stnas run`` took here (:mod:`stnas.pipeline.actuals`;
    a step itself keeps nothing)."""
    sizes = dict(data_sizes(cfg, space, stages), **(sizes or {}))
    if archs is not None:
        sizes["trainings"] = [str(a) for a in archs]
    units, spent, cached = calibrate(cfg, space, stages, device, sizes=sizes, archs=archs,
                                     write_cache=write_cache, log=log)
    units["correction"] = corrections(actual_keys(cfg, space, stages, device, sizes))
    return make_plan(cfg, sizes, units, stages, spent, cached)


def wanted() -> bool:
    """False when ``STNAS_PLAN=off``: no plan and no calibration unless a time budget or
    ``--dry-run`` needs them (scripts and test suites that run many small runs)."""
    return os.environ.get("STNAS_PLAN", "on").lower() != "off"


def write_plan(run: RunDir, plan: dict | None) -> None:
    if plan is not None:
        write_json(run.plan, plan)


def read_plan(run: RunDir, cfg: dict) -> dict | None:
    """The plan a run started with (checksum verified, and checked against its config), or
    None for a run made before plans.

    Raises:
        CheckpointError: damaged, or its sized settings are not the config's.
    """
    if not run.plan.exists():
        return None
    plan = read_json(run.plan, "run plan")
    changed = (plan.get("budget") or {}).get("changed", {})
    if not isinstance(plan.get("stages"), list) or not isinstance(changed, dict):
        raise CheckpointError(f"run plan {run.plan} is damaged or not written by this stnas version")
    resized = ((plan.get("budget") or {}).get("resized") or {}).get("changed", {})
    for key, (_, value) in changed.items():
        sec, k = key.split(".")
        before = resized.get(key, [value])[0]  # the run stopped between saving the resized plan and config
        if cfg.get(sec, {}).get(k) not in (value, before):
            raise CheckpointError(f"run plan {run.plan} sized {key} to {value}, but the run's config holds "
                                  f"{cfg.get(sec, {}).get(k)!r}: the two do not belong together")
    return plan


def _applied(cfg: dict, changed: dict) -> dict:
    """``cfg`` with a sizing's changes (``{"section.key": [old, new]}``) applied."""
    layer: dict = {}
    for key, (_, value) in changed.items():
        sec, k = key.split(".")
        layer.setdefault(sec, {})[k] = value
    return apply_layers(cfg, [layer]) if layer else cfg


def _with_resize(cfg: dict, plan: dict | None) -> dict:
    """``cfg`` with the plan's resizing after the supernet (stnas.pipeline.budget.resize) applied."""
    resized = ((plan or {}).get("budget") or {}).get("resized")
    return _applied(cfg, resized["changed"]) if resized else cfg


def resize_run(cfg: dict, plan: dict | None, run: RunDir, elapsed: float, took: float, ctx) -> tuple[dict, dict | None]:
    """After a new run's supernet stage, with a time budget: the stages left sized again to the
    time left (:func:`stnas.pipeline.budget.resize`; the main process decides, every process gets
    the same), said in one line and saved, the plan first, before the search starts."""
    if not plan or not plan.get("budget") or plan["budget"].get("resized"):
        return cfg, plan
    result = resize(cfg, plan, elapsed, took) if ctx.is_main else None
    result = dist.broadcast_object(result, ctx.world_size)
    if result is None:
        return cfg, plan
    _, plan = result
    cfg = _with_resize(cfg, plan)
    if ctx.is_main:
        print(resized_text(plan["budget"]["resized"], plan["budget"]["time_budget"]), file=sys.stderr, flush=True)
        write_plan(run, plan)
        run.save_config(cfg)
    dist.barrier(ctx.world_size)
    return cfg, plan


def plan_text(plan: dict, header: str = "plan") -> str:
    """The plan for people: one line a stage, the total, and what a time budget changed."""
    rows = [(s["name"], s["work"], fmt_duration(s["seconds"])) for s in plan["stages"]]
    rows.append(("total", "", fmt_duration(plan["total_s"])))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{header} (estimated on this machine):"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c:>12}".rstrip() for a, b, c in rows]
    b = plan.get("budget")
    if b:
        off = b.get("baselines_off")
        if off:
            lines.append(f"time budget {b['time_budget']}: {off}")
        changed = {k: v for k, v in b["changed"].items() if k != "baselines.enabled"}
        if changed:
            what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
            grown = all(new > old for old, new in changed.values())
            lines.append(f"time budget {b['time_budget']}: {'grown to use it' if grown else 'sized to fit'} ({what})")
        else:
            lines.append(f"time budget {b['time_budget']}: the configured run fits, with too little to spare to "
                         f"grow{' without it; nothing else' if off else '; nothing'} changed")
        if b.get("resized"):
            lines.append(resized_text(b["resized"], b["time_budget"]))
    return "\n".join(lines)


def start(cfg: dict, space, run: RunDir, resume: bool, ctx) -> tuple[dict, dict | None]:
    """The config a run executes and its plan, printed (main process): a resumed run's saved
    plan; a new run's measured and, with ``run.time_budget``, sized to it (the main process
    measures, every process gets the same). Writes nothing (the caller saves both)."""
    if resume:
        plan = read_plan(run, cfg)
        if plan is not None and ctx.is_main:
            print(plan_text(plan, "plan (saved when the run started)"), file=sys.stderr, flush=True)
        return _with_resize(cfg, plan), plan
    if not wanted() and cfg["run"]["time_budget"] is None:
        return cfg, None
    result: object = None
    if ctx.is_main:
        try:
            result = prepare_run(cfg, space, ctx.device, ranks=ctx.world_size,
                                 log=lambda m: print(m, file=sys.stderr, flush=True))
        except StnasError as exc:  # every process raises it
            result = exc
    result = dist.broadcast_object(result, ctx.world_size)
    if isinstance(result, Exception):
        raise result
    cfg, plan = result
    if ctx.is_main:
        print(plan_text(plan), file=sys.stderr, flush=True)
    return cfg, plan


def dry_run(cfg: dict, run_dir=None) -> str:
    """The plan ``stnas run --dry-run`` prints (a resumed run: the one it started with);
    nothing is written, not even the calibration cache."""
    if run_dir is not None:
        plan = read_plan(RunDir(run_dir), cfg)
        return plan_text(plan, "plan (saved when the run started)") if plan else f"{run_dir} was started without a plan"
    space = load_space(cfg["preset"])
    se = cfg["search"]
    check_constraints(space, se["budgets"], se["min_madds"], se["max_params"])
    _, plan = prepare_run(cfg, space, dist.resolve_device(cfg["device"]), write_cache=False)
    return plan_text(plan)
