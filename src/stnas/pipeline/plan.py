"""The plan of a run, printed before any work, and the sizing of a run to a time budget.

A plan lists the stages (``STAGES``, in pipeline order), the work in each and its estimated
seconds on this machine: counts from the config and the data sizes, times the unit costs
:mod:`stnas.pipeline.calibrate` measured. With n images, batch b and R processes an epoch is
spe = ⌊n / R / b⌋ steps:

* supernet: S = epochs × spe steps (+ ``pool.extra_steps``); the sampling phase is its last
  F = pool.epochs × spe steps (or the extra steps). Seconds: (S − F) × step + F × phase step
  + checkpoints × checkpoint (every ``checkpoint_every`` steps, every epoch end, the last step)
  + files × weights (epoch weights, pool samples, the final weights) + ⌈S / log_every⌉ × log line.
* search: the P candidates of a generation (random search: chunks of P over
  ``random_samples``) are dealt over the T targets, n_t each. With K weight sources
  (stabilized: the pool's samples; single and averaged: 1) a generation costs P × K
  evaluations; with ``screen`` s, P + Σ_t ⌈s n_t⌉ × (K − 1), since the first sample of a
  promoted candidate is already in the proxy cache. The search never proposes a candidate
  twice, so on a fresh run the cache saves nothing more. Seconds: evaluations × (evaluation +
  cache line) + source loads (one per source and scorer call; averaged: the K samples) × load.
* retrain: one training per target (a pick shared by two targets is trained once, so this
  is an upper bound): epochs × spe steps × that target's step + checkpoints + log lines + the
  test images × evaluation per image + one export.
* baselines (:mod:`stnas.pipeline.baselines`; in a run where ``stage_enabled`` says so): the
  networks that fit each budget by MAdds and params (a latency limit can only remove some:
  an upper bound) × ``baselines.seeds`` trainings of retrain.epochs × spe steps each, and each
  pick retrained under the seeds past the first. Measure-free: a network of m MAdds costs
  m / M of a retraining, M the mean of the MAdds budgets the retrain calibration timed and its
  step the mean of theirs (scale 1 without a MAdds budget). A training also has its
  checkpoints and log lines, and evaluations of 2 × the test images (before and after the BN
  recalibration) and of the recalibration's images (``stnas.pipeline.scaling.recal_batches``)
  at the retraining's per-image cost × m / M; each network's latency is
  warmup + max(repeats, MIN_REPEATS) calls of ``latency.batch`` images at that cost too (a rough
  lower bound: batch-1 calls cost more per image).
* calibration: what measuring took (0 when every stage came from the cache).

A new stage is one entry of ``STAGES``, ``(cfg, sizes, units) -> stage``, and, when it needs
unit costs of its own, one of ``stnas.pipeline.calibrate.MEASURES``.

Time budget (``run.time_budget``, ``stnas run --time 10m``). The rule: the run must fit
``SAFETY`` × the budget, less the calibration. The supernet and the search shrink first, the
retraining untouched, down to ``SEARCH_CUT`` of their work (the cut
docs/experiments/fast_defaults.md measured at no cost the instrument could see; a retraining
cut costs top-1 at once), then on to ``MINIMUM``; the retraining shrinks last
(:func:`factors`, one axis f in [0, 1]). With k the stage's factor: supernet.epochs E -> ⌊k E⌋,
pool.epochs in proportion to the epochs (at least the epochs that fill the pool) or
pool.extra_steps -> ⌊k X⌋, search.generations G -> ⌊k G⌋ (random search: random_samples),
retrain.epochs -> ⌊k R⌋, none below ``MINIMUM`` (nor above what is configured). f is the
largest that fits (bisection). A budget the configured run fits changes nothing: a budget is
a limit, not a target. A budget that not even the minimum run fits is refused, in one line,
before any work. The baselines stage: with ``baselines.enabled: null`` (on where retraining is
small) it runs only when the configured run fits with it unscaled; otherwise it is turned off
(``baselines.enabled`` false, said in the plan) before any other stage is scaled down. With
``baselines.enabled: true`` it is part of the run that is scaled (its trainings follow
retrain.epochs), and a budget its minimum does not fit is refused. The sized settings are the
run's config (config.yaml); the plan is saved beside it (``plan.json``), and a resumed run keeps both.

``STNAS_PLAN=off`` (environment) skips the plan and its calibration where nothing needs them
(no time budget, no ``--dry-run``).
"""

from __future__ import annotations

import copy
import math
import os
import sys
from typing import Callable

from stnas.core import dist
from stnas.core.errors import CheckpointError, ConfigError, StnasError
from stnas.core.rundir import RunDir
from stnas.core.units import budget_label, fmt_duration, parse_duration
from stnas.core.verified import read_json, write_json
from stnas.nn.baselines import cost
from stnas.pipeline.baselines import plan as baselines_plan
from stnas.pipeline.baselines import stage_enabled
from stnas.pipeline.calibrate import NEEDS, baseline_budgets, calibrate, data_sizes, madds_targets, retrain_labels
from stnas.pipeline.config import apply_layers
from stnas.pipeline.latency import MIN_REPEATS
from stnas.pipeline.scaling import recal_batches
from stnas.proxy.modes import PROXY_MODES
from stnas.search.algorithms import SEARCH_ALGORITHMS
from stnas.search.evolution import check_constraints
from stnas.space.catalog import load_space

VERSION = 1
SAFETY = 0.9  # share of a time budget the plan fills (runs vary by about ±20%, docs/design.md §6)
MINIMUM = {"supernet.epochs": 2, "search.generations": 2, "retrain.epochs": 1}
# a time budget shortens the supernet and the search first, to these shares of their work, with the
# retraining untouched: the cut docs/experiments/fast_defaults.md measured (16 -> 6 supernet epochs,
# 6 -> 3 generations) lost nothing the instrument could see, where one retraining epoch of three
# cost 6-7 pp of top-1. Then they shrink on to MINIMUM, and only then the retraining: within a
# budget band random networks differ by 0.1-0.2 pp, and the search has not measurably beaten them
# (docs/experiments/baselines.md, item 4). FIRST and SECOND: where those phases end on the axis f
SEARCH_CUT = {"supernet": 6 / 16, "search": 3 / 6}
FIRST, SECOND = 2 / 3, 1 / 3
RUN_STAGES = ("supernet", "search", "retrain")
Stage = dict  # {"name", "work" (words), "seconds", and the stage's counts}


def _spe(images: int, ranks: int, batch: int) -> int:
    return images // max(1, ranks) // batch


def _checkpoints(steps: int, every: int, spe: int) -> int:
    """Steps s in 1..steps with s % every == 0 or s % spe == 0, or s == steps (the engine's rule)."""
    if steps <= 0:
        return 0
    spe = max(1, spe)
    n = steps // every + steps // spe - steps // math.lcm(every, spe)
    return n + (steps % every != 0 and steps % spe != 0)


def supernet_steps(cfg: dict, sizes: dict) -> tuple[int, int, int]:
    """(steps per epoch, all steps, sampling-phase steps) of the supernet training."""
    r, p = cfg["supernet"], cfg["pool"]
    spe = _spe(sizes["search_train"], sizes["ranks"], r["batch_size"])
    total = r["epochs"] * spe + p["extra_steps"]
    return spe, total, min(total, p["extra_steps"] or p["epochs"] * spe)


def pool_samples(cfg: dict, sizes: dict) -> int:
    """The samples the pool will hold (fewer than ``pool.samples`` when the phase is shorter)."""
    if "pool_samples" in sizes:  # a trained run's pool
        return sizes["pool_samples"]
    k = cfg["pool"]["samples"]
    _, _, phase = supernet_steps(cfg, sizes)
    return min(k, phase // max(1, phase // k)) if phase else 0


def supernet_stage(cfg: dict, sizes: dict, units: dict) -> Stage:
    r, u = cfg["supernet"], units["supernet"]
    spe, total, phase = supernet_steps(cfg, sizes)
    files = (total // max(1, spe) if r["keep_epoch_weights"] else 0) + pool_samples(cfg, sizes) + 1
    checkpoints = _checkpoints(total, r["checkpoint_every"], spe)
    logs = -(-total // r["log_every"])
    seconds = ((total - phase) * u["step_s"] + phase * u["phase_step_s"] + checkpoints * u["checkpoint_s"]
               + files * u["weights_s"] + logs * u["log_s"])
    extra = f" + {cfg['pool']['extra_steps']:,} sampling steps" if cfg["pool"]["extra_steps"] else ""
    work = (f"{r['epochs']} epochs × {sizes['search_train']:,} images{extra}: {total:,} steps of {r['batch_size']}, "
            f"the last {phase:,} {r['optimizer'].upper()} filling a pool of {pool_samples(cfg, sizes)}")
    return {"name": "supernet", "work": work, "seconds": seconds, "steps": total, "phase_steps": phase,
            "checkpoints": checkpoints}


def search_evaluations(cfg: dict, sizes: dict) -> tuple[int, int, int]:
    """(candidates, proxy evaluations, weight-source loads) of the search (module docstring)."""
    se, mode = cfg["search"], cfg["proxy"]["mode"]
    k = pool_samples(cfg, sizes)
    if cfg["proxy"]["samples"]:
        k = min(k, cfg["proxy"]["samples"])
    entry = PROXY_MODES.get(mode)
    sources = k if entry.per_sample else 1
    targets = max(1, len(set(se["budgets"]))) * max(1, len(se.get("latency_budgets") or []))
    pop, keep = se["population"], se["screen"]
    chunks = SEARCH_ALGORITHMS.get(se["algorithm"]).chunks(se, pop)
    evals = loads = 0
    for n in chunks:
        per_target = [len(range(t, n, targets)) for t in range(targets)]
        if keep is None or sources == 1:
            evals += n * sources
            loads += k if entry.pool else sources
        else:
            promoted = sum(math.ceil(keep * m) for m in per_target)
            evals += n + promoted * (sources - 1)
            loads += 1 + (sources - 1 if promoted else 0)
    return sum(chunks), evals, loads


def search_stage(cfg: dict, sizes: dict, units: dict) -> Stage:
    se, u = cfg["search"], units["search"]
    candidates, evals, loads = search_evaluations(cfg, sizes)
    evals, loads = evals * sizes.get("members", 1), loads * sizes.get("members", 1)  # an ensemble's supernets
    seconds = evals * (u["eval_s"] + u["log_s"]) + loads * u["load_s"]
    effort = SEARCH_ALGORITHMS.get(se["algorithm"]).effort
    how = (f"{se['generations']} generations × {se['population']}" if effort == "generations"
           else f"{se['algorithm']}, {candidates:,}")
    screen = f", screen {se['screen']:g}" if se["screen"] is not None else ""
    work = (f"{how} candidates{screen}: {evals:,} evaluations on {sizes['search_val']:,} search-val images "
            f"({cfg['proxy']['mode']})")
    return {"name": "search", "work": work, "seconds": seconds, "candidates": candidates, "evaluations": evals}


def retrain_stage(cfg: dict, sizes: dict, units: dict) -> Stage:
    r, u = cfg["retrain"], units["retrain"]
    labels = sizes.get("trainings") or retrain_labels(cfg["search"])
    spe = _spe(sizes["train"], sizes["ranks"], r["batch_size"])
    steps = r["epochs"] * spe
    fixed = (_checkpoints(steps, r["checkpoint_every"], spe) * u["checkpoint_s"]
             + -(-steps // r["log_every"]) * u["log_s"] + sizes["test"] * u["eval_image_s"]
             + units["export"]["export_s"])
    seconds = sum(steps * u["step_s"][label] + fixed for label in labels)
    work = (f"{len(labels)} training{'s' if len(labels) > 1 else ''} × {r['epochs']} epochs × {sizes['train']:,} "
            f"images ({steps:,} steps of {r['batch_size']} each), tested on {sizes['test']:,}")
    return {"name": "retrain", "work": work, "seconds": seconds, "trainings": len(labels), "steps": steps}


def baselines_stage(cfg: dict, sizes: dict, units: dict) -> Stage:
    r, u, bl, lat = cfg["retrain"], units["retrain"], cfg["baselines"], cfg["latency"]
    budgets, picks = baseline_budgets(cfg, sizes)
    nets = {b.key: cost(b)[0] for p in baselines_plan(cfg, budgets, tuple(sizes["input"])) for b in p["networks"]}
    refs = [(b, u["step_s"][budget_label(b)]) for b in madds_targets(cfg["search"])
            if b and budget_label(b) in u["step_s"]]
    ref_madds = sum(b for b, _ in refs) / len(refs) if refs else None
    step = sum(t for _, t in refs) / len(refs) if refs else sum(u["step_s"].values()) / len(u["step_s"])
    spe = _spe(sizes["train"], sizes["ranks"], r["batch_size"])
    steps, seeds = r["epochs"] * spe, bl["seeds"]
    recal = min(sizes["train"], recal_batches(bl["recal_batches"], sizes["train"], r["batch_size"]) * r["batch_size"])
    evals = 2 * sizes["test"] + recal
    fixed = (_checkpoints(steps, r["checkpoint_every"], spe) * u["checkpoint_s"]
             + -(-steps // r["log_every"]) * u["log_s"])
    calls = (lat["warmup"] + max(lat["repeats"], MIN_REPEATS)) * lat["batch"]

    per_image = u["eval_image_s"]
    timed = units.get("baselines", {}).get("step_s", {})  # each network's own step, where calibrated

    def scale_of(key: str, madds: int) -> float:  # a network's cost against the picks' step
        if timed.get(key) and step:
            return timed[key] / step
        return madds / ref_madds if ref_madds else 1.0

    def training(scale: float) -> float:  # a network's, with the comparison's evaluations
        return steps * step * scale + fixed + evals * per_image * scale

    scales = [scale_of(k, m) for k, m in nets.items()]
    pick_retrained = steps * step + fixed + sizes["test"] * per_image + units["export"]["export_s"]
    seconds = (seeds * sum(training(x) for x in scales) + picks * (seeds - 1) * pick_retrained
               + picks * seeds * evals * per_image + calls * per_image * (sum(scales) + picks))
    trainings = len(nets) * seeds + picks * (seeds - 1)
    more = f" and {picks} pick{'s' if picks != 1 else ''} under {seeds - 1} more" if picks and seeds > 1 else ""
    work = (f"{len(nets)} network{'s' if len(nets) != 1 else ''} × {seeds} seed{'s' if seeds > 1 else ''}{more}: "
            f"{trainings} training{'s' if trainings != 1 else ''} × {r['epochs']} epochs × {sizes['train']:,} images "
            f"({steps:,} steps of {r['batch_size']} each), latency measured")
    return {"name": "baselines", "work": work, "seconds": seconds, "networks": len(nets), "trainings": trainings,
            "steps": steps}


STAGES: dict[str, Callable[[dict, dict, dict], Stage]] = {
    "supernet": supernet_stage, "search": search_stage, "retrain": retrain_stage, "baselines": baselines_stage}


def run_stages(cfg: dict, sizes: dict) -> tuple[str, ...]:
    """The stages ``stnas run`` runs with ``cfg``: RUN_STAGES, and baselines where it is enabled."""
    return RUN_STAGES + (("baselines",) if stage_enabled(cfg, sizes["train"]) else ())


def make_plan(cfg: dict, sizes: dict, units: dict, stages=RUN_STAGES, calibration_s: float = 0.0,
              cached=()) -> dict:
    """The plan of ``stages`` from the data sizes and the unit costs (no measuring)."""
    timed = [m for m in dict.fromkeys(m for s in stages for m in NEEDS[s]) if m not in cached and m != "export"]
    rows = [{"name": "calibration", "seconds": calibration_s,
             "work": "timed steps of " + ", ".join(timed) if calibration_s else "unit costs from the cache"}]
    rows += [STAGES[name](cfg, sizes, units) for name in stages]
    return {"version": VERSION, "stages": rows, "total_s": sum(r["seconds"] for r in rows), "sizes": sizes,
            "units": units, "cached": list(cached), "budget": None}


# ------------------------------------------------------------------ time budget
def factors(f: float) -> dict:
    """What each stage's work is multiplied by at the sizing's f in [0, 1] (module docstring).
    From f = 1 down to ``FIRST`` the supernet and the search shrink together to ``SEARCH_CUT``;
    down to ``SECOND`` they shrink on, to nothing (``MINIMUM`` holds them); below ``SECOND`` the
    retraining shrinks. Every factor falls as f does, so the total does too."""
    cut_s, cut_g = SEARCH_CUT["supernet"], SEARCH_CUT["search"]
    if f >= FIRST:
        t = (1.0 - f) / (1.0 - FIRST)
        return {"supernet": 1.0 - t * (1.0 - cut_s), "search": 1.0 - t * (1.0 - cut_g), "retrain": 1.0}
    if f >= SECOND:
        t = (f - SECOND) / (FIRST - SECOND)
        return {"supernet": cut_s * t, "search": cut_g * t, "retrain": 1.0}
    return {"supernet": 0.0, "search": 0.0, "retrain": f / SECOND}


def sized(cfg: dict, f: float, sizes: dict) -> dict:
    """``cfg`` with the stages' work scaled at ``f`` (:func:`factors`); f = 1: unchanged."""
    c = copy.deepcopy(cfg)
    sn, pool, se, rt = c["supernet"], c["pool"], c["search"], c["retrain"]
    k = factors(f)

    def scale(value: int, least: int, stage: str) -> int:
        return min(value, max(least, math.floor(value * k[stage] + 1e-9)))

    epochs = sn["epochs"]
    sn["epochs"] = scale(epochs, MINIMUM["supernet.epochs"], "supernet")
    if pool["extra_steps"]:
        pool["extra_steps"] = scale(pool["extra_steps"], pool["samples"], "supernet")
    else:
        spe = max(1, _spe(sizes["search_train"], sizes["ranks"], sn["batch_size"]))
        fill = -(-pool["samples"] // spe)
        pool["epochs"] = min(pool["epochs"], sn["epochs"], max(1, fill, round(pool["epochs"] * sn["epochs"] / epochs)))
    effort = SEARCH_ALGORITHMS.get(se["algorithm"]).effort  # generations, or random draws
    se[effort] = scale(se[effort], MINIMUM.get(f"search.{effort}", se["population"]), "search")
    rt["epochs"] = scale(rt["epochs"], MINIMUM["retrain.epochs"], "retrain")
    return c


def _changes(old: dict, new: dict) -> dict:
    keys = ("supernet.epochs", "pool.epochs", "pool.extra_steps", "search.generations", "search.random_samples",
            "retrain.epochs", "baselines.enabled")
    out = {}
    for key in keys:
        sec, k = key.split(".")
        if old[sec][k] != new[sec][k]:
            out[key] = [old[sec][k], new[sec][k]]
    return out


def fit(cfg: dict, sizes: dict, units: dict, budget: str, spent: float = 0.0, stages=RUN_STAGES) -> tuple[dict, dict]:
    """``cfg`` sized to the time budget (module docstring) and the budget's record for the plan.

    Raises:
        ConfigError: a bad time, or a budget not even the minimum run fits.
    """
    seconds = parse_duration(budget, "run.time_budget")
    room = SAFETY * seconds - spent

    def total(f: float) -> float:
        c = sized(cfg, f, sizes)
        return sum(STAGES[s](c, sizes, units)["seconds"] for s in stages)

    if total(1.0) <= room:
        f = 1.0
    else:
        least = total(0.0)
        if least > room:
            need = (least + spent) / SAFETY
            step = 60 if need > 120 else 10
            at_least = f"{math.ceil(need / step) * step // 60}m" if step == 60 else f"{math.ceil(need / 10) * 10}s"
            with_baselines = ", the baselines stage" if "baselines" in stages else ""
            raise ConfigError(
                f"time budget {budget} is too small for a meaningful run here: the smallest (supernet "
                f"{MINIMUM['supernet.epochs']} epochs, {MINIMUM['search.generations']} search generations, "
                f"{MINIMUM['retrain.epochs']} retraining epoch{with_baselines}) is planned at "
                f"{fmt_duration(least + spent)}; give --time {at_least} or more, or fewer images (data.limit, "
                f"retrain.limit){'; --no-baselines leaves that stage out' if with_baselines else ''}")
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if total(mid) <= room else (lo, mid)
        f = lo
    new = sized(cfg, f, sizes)
    return new, {"time_budget": budget, "seconds": seconds, "factor": f, "factors": factors(f),
                 "changed": _changes(cfg, new)}


def fit_run(cfg: dict, sizes: dict, units: dict, budget: str, spent: float = 0.0) -> tuple[dict, dict]:
    """:func:`fit` for ``stnas run``, deciding the baselines stage first (module docstring);
    the budget's record says when it turned the stage off (``baselines_off``)."""
    stages, off = run_stages(cfg, sizes), None
    if "baselines" in stages and cfg["baselines"]["enabled"] is None:
        full = sum(STAGES[s](cfg, sizes, units)["seconds"] for s in stages)
        if full > SAFETY * parse_duration(budget, "run.time_budget") - spent:
            stages = RUN_STAGES
            off = (f"baselines stage off: with it the run is planned at {fmt_duration(full + spent)}, more than "
                   f"the time budget holds (baselines.enabled=true keeps it and scales the stages down)")
    new, record = fit(cfg, sizes, units, budget, spent, stages)
    if "baselines" not in stages and stage_enabled(new, sizes["train"]):  # what the planned run leaves out, it skips
        new["baselines"]["enabled"] = False
    record["changed"], record["baselines_off"] = _changes(cfg, new), off
    return new, record


# ------------------------------------------------------------------ the run's plan
def prepare_run(cfg: dict, space, device, *, ranks: int = 1, write_cache: bool = True,
                log: Callable[[str], None] | None = None) -> tuple[dict, dict]:
    """The plan of ``stnas run`` (calibrating what the cache lacks) and the config it runs:
    with ``run.time_budget``, sized to fit it (ConfigError, one line, when it cannot)."""
    sizes = dict(data_sizes(cfg, space, RUN_STAGES + ("baselines",), ranks), trainings=retrain_labels(cfg["search"]))
    units, spent, cached = calibrate(cfg, space, run_stages(cfg, sizes), device, sizes=sizes, write_cache=write_cache,
                                     log=log)
    budget = None
    if cfg["run"]["time_budget"] is not None:
        new, budget = fit_run(cfg, sizes, units, cfg["run"]["time_budget"], spent)
        layer = {}
        for key, (_, value) in budget["changed"].items():
            sec, k = key.split(".")
            layer.setdefault(sec, {})[k] = value
        cfg = apply_layers(cfg, [layer]) if layer else cfg
    plan = make_plan(cfg, sizes, units, run_stages(cfg, sizes), spent, cached)
    plan["budget"] = budget
    return cfg, plan


def plan_for(cfg: dict, space, stages, device, *, write_cache: bool = True, archs=None, sizes: dict | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """The plan of one step (``stnas supernet train``, ``search``, ``retrain``)."""
    sizes = dict(data_sizes(cfg, space, stages), **(sizes or {}))
    if archs is not None:
        sizes["trainings"] = [str(a) for a in archs]
    units, spent, cached = calibrate(cfg, space, stages, device, sizes=sizes, archs=archs,
                                     write_cache=write_cache, log=log)
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
    for key, (_, value) in changed.items():
        sec, k = key.split(".")
        if cfg.get(sec, {}).get(k) != value:
            raise CheckpointError(f"run plan {run.plan} sized {key} to {value}, but the run's config holds "
                                  f"{cfg.get(sec, {}).get(k)!r}: the two do not belong together")
    return plan


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
            lines.append(f"time budget {b['time_budget']}: sized to fit ({what})")
        else:
            lines.append(f"time budget {b['time_budget']}: the configured run fits"
                         f"{' without it; nothing else' if off else '; nothing'} changed")
    return "\n".join(lines)


def start(cfg: dict, space, run: RunDir, resume: bool, ctx) -> tuple[dict, dict | None]:
    """The config a run executes and its plan, printed (main process): a resumed run's saved
    plan; a new run's measured and, with ``run.time_budget``, sized to it (the main process
    measures, every process gets the same). Writes nothing (the caller saves both)."""
    if resume:
        plan = read_plan(run, cfg)
        if plan is not None and ctx.is_main:
            print(plan_text(plan, "plan (saved when the run started)"), file=sys.stderr, flush=True)
        return cfg, plan
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
