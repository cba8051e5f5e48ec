"""Sizing a run to a time budget: the rule, and the resizing after the supernet.

Time budget (``run.time_budget``, ``stnas run --time 10m``). The rule: the run must fit
``SAFETY`` × the budget, less the calibration, and use it. One axis f in [0, ``F_MOST``]
(:func:`factors`), 1 the configured run. Below 1: the supernet and the search shrink first, the
retraining untouched, down to ``SEARCH_CUT`` of their work (the cut
docs/experiments/fast_defaults.md measured at no cost the instrument could see; a retraining
cut costs top-1 at once), then on to ``MINIMUM``; the retraining shrinks last. Above 1 (a budget
longer than the configured run): the retraining grows first, then the supernet and the search,
each to at most ``GROWTH`` × its work. With k the stage's factor: supernet.epochs E -> ⌊k E⌋,
pool.epochs in proportion to the epochs (shrinking: at least the epochs that fill the pool) or
pool.extra_steps -> ⌊k X⌋, search.generations G -> ⌊k G⌋ (random search: random_samples),
retrain.epochs -> ⌊k R⌋, none below ``MINIMUM``. f is the largest that fits (bisection). A
budget that not even the minimum run fits is refused, in one line, before any work. The
baselines stage: with ``baselines.enabled: null`` (on where retraining is small) it runs only
when the configured run fits with it unscaled, and then it runs whatever the retraining grows
to (``baselines.enabled`` true); otherwise it is turned off (false, said in the plan) before any
other stage is scaled. With ``baselines.enabled: true`` it is part of the run that is scaled
(its trainings follow retrain.epochs), and a budget its minimum does not fit is refused. The
sized settings are the run's config (config.yaml); the plan is saved beside it
(``plan.json``), and a resumed run keeps both.

Resizing after the supernet (:func:`resize`). Once the supernet is trained, what it took is
known, where the plan had its estimate: the search, the retraining and the baselines stage are
sized again by the same rule, to the time left (``SAFETY`` × the budget, less the seconds the run
has taken), at their plan's estimates. Their estimates are not scaled by the supernet's actual
over its estimate: across the measured runs that ratio did not predict theirs (a folder run's
supernet took 1.11 of its estimate and its search 0.75; docs/benchmarks.md); what earlier runs
took corrects them instead (:mod:`stnas.pipeline.actuals`). They may grow (to ``GROWTH`` × their
configured work, as at the start). They shrink further (to ``MINIMUM``, never refused: the run
has started) only when, as sized, they would run past the budget itself, not just past its
``SAFETY`` share: a few seconds over that line would cost a generation. The supernet and the
baselines decision stay as they are. The resizing is saved in the plan (``budget.resized``) and
the config before the search starts, and a resumed run keeps it; a run whose supernet was resumed
is not resized (its earlier time is unknown).
"""

from __future__ import annotations

import copy
import math

from stnas.core.errors import ConfigError
from stnas.core.units import fmt_duration, parse_duration
from stnas.pipeline.estimate import RUN_STAGES, STAGES, run_stages, steps_per_epoch
from stnas.search.algorithms import SEARCH_ALGORITHMS

SAFETY = 0.95  # share of a time budget the plan fills: with plans corrected by earlier runs (stnas.pipeline.actuals)
# the stages came within 0.92-0.97 of their estimates (docs/benchmarks.md, "--time 5m")
MINIMUM = {"supernet.epochs": 2, "search.generations": 2, "retrain.epochs": 1}
# a time budget shortens the supernet and the search first, to these shares of their work, with the
# retraining untouched: the cut docs/experiments/fast_defaults.md measured (16 -> 6 supernet epochs,
# 6 -> 3 generations) lost nothing the instrument could see, where one retraining epoch of three
# cost 6-7 pp of top-1. Then they shrink on to MINIMUM, and only then the retraining: within a
# budget band random networks differ by 0.1-0.2 pp, and the search has not measurably beaten them
# (docs/experiments/baselines.md, item 4). FIRST and SECOND: where those phases end on the axis f
SEARCH_CUT = {"supernet": 6 / 16, "search": 3 / 6}
FIRST, SECOND = 2 / 3, 1 / 3
# a budget longer than the configured run grows it: the retraining first (the stage whose length
# the measurements tie to top-1), then the supernet and the search, each to at most GROWTH × its work
GROWTH, F_MOST = 3.0, 3.0
RESIZED = ("search", "retrain", "baselines")  # the stages the resizing sizes again


def factors(f: float) -> dict:
    """What each stage's work is multiplied by at the sizing's f in [0, ``F_MOST``] (module
    docstring). From f = 1 down to ``FIRST`` the supernet and the search shrink together to
    ``SEARCH_CUT``; down to ``SECOND`` they shrink on, to nothing (``MINIMUM`` holds them); below
    ``SECOND`` the retraining shrinks. Above 1 the retraining grows first, to ``GROWTH`` × its
    work at f = 2, then the supernet and the search together, to ``GROWTH`` × theirs at f = 3.
    Every factor rises with f, so the total does too."""
    cut_s, cut_g = SEARCH_CUT["supernet"], SEARCH_CUT["search"]
    if f > 2.0:
        k = 1.0 + (min(f, F_MOST) - 2.0) * (GROWTH - 1.0)
        return {"supernet": k, "search": k, "retrain": GROWTH}
    if f > 1.0:
        return {"supernet": 1.0, "search": 1.0, "retrain": 1.0 + (f - 1.0) * (GROWTH - 1.0)}
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
        scaled = math.floor(value * k[stage] + 1e-9)
        return max(value, scaled) if k[stage] >= 1.0 else min(value, max(least, scaled))

    epochs = sn["epochs"]
    sn["epochs"] = scale(epochs, MINIMUM["supernet.epochs"], "supernet")
    if pool["extra_steps"]:
        pool["extra_steps"] = scale(pool["extra_steps"], pool["samples"], "supernet")
    elif sn["epochs"] > epochs:  # the sampling phase grows with the epochs
        pool["epochs"] = min(sn["epochs"], max(pool["epochs"], round(pool["epochs"] * sn["epochs"] / epochs)))
    else:
        spe = max(1, steps_per_epoch(sizes["search_train"], sizes["ranks"], sn["batch_size"]))
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


def _largest(total, room: float, lo: float = 0.0, hi: float = 1.0) -> float:
    """The largest f in [lo, hi] with total(f) <= room (total never falls as f grows), by
    bisection; lo when not even total(lo) fits."""
    if total(hi) <= room:
        return hi
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total(mid) <= room else (lo, mid)
    return lo


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

    if total(1.0) <= room:  # room to spare: the run grows into it
        f = _largest(total, room, 1.0, F_MOST)
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
        f = _largest(total, room)
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
    if cfg["baselines"]["enabled"] is None:  # decided: what the planned run leaves out it skips, and what it
        new["baselines"]["enabled"] = "baselines" in stages  # plans it runs, whatever the retraining is sized to
    record["changed"], record["baselines_off"] = _changes(cfg, new), off
    return new, record


def resize(cfg: dict, plan: dict, elapsed: float, took: float) -> tuple[dict, dict] | None:
    """After the supernet stage (module docstring): ``cfg`` with the stages left sized again to the
    time left, and the plan with their new estimates and ``budget.resized``; None when nothing changes.

    Args:
        cfg: the config the run executes (sized at its start).
        plan: its plan, with a time budget.
        elapsed: seconds the run has taken so far, the supernet and the calibration included.
        took: seconds the supernet stage took (its estimate is the plan's).
    """
    budget, sizes, units = plan["budget"], plan["sizes"], plan["units"]
    rows = {row["name"]: row for row in plan["stages"]}
    left = [name for name in rows if name in RESIZED]
    estimate = rows["supernet"]["seconds"]
    configured = copy.deepcopy(cfg)  # the stages left as configured, before any sizing
    for key, (old, _) in budget["changed"].items():
        sec, k = key.split(".")
        if sec in ("search", "retrain"):
            configured[sec][k] = old
    room = SAFETY * budget["seconds"] - elapsed

    def rest(f: float) -> dict:
        c = sized(configured, f, sizes)
        for sec in ("supernet", "pool", "baselines"):  # trained, or decided
            c[sec] = copy.deepcopy(cfg[sec])
        return c

    def total(f: float) -> float:
        c = rest(f)
        return sum(STAGES[name](c, sizes, units)["seconds"] for name in left)

    f = _largest(total, room, 0.0, F_MOST)
    new = rest(f)
    changed = _changes(cfg, new)
    as_sized = sum(STAGES[name](cfg, sizes, units)["seconds"] for name in left)
    if any(b < a for a, b in changed.values()) and as_sized <= budget["seconds"] - elapsed:
        return None  # it still fits the budget itself: shrinking for the safety margin alone costs work
    if not changed:
        return None
    merged = dict(budget["changed"])
    for key, (now, value) in changed.items():
        first = merged.get(key, [now])[0]
        if first == value:
            merged.pop(key, None)
        else:
            merged[key] = [first, value]
    stages = []
    for row in plan["stages"]:
        if row["name"] in left:
            row = STAGES[row["name"]](new, sizes, units)
        stages.append(row)
    record = {"after": "supernet", "elapsed_s": elapsed, "supernet_s": took, "supernet_planned_s": estimate,
              "room_s": room, "factor": f, "changed": changed,
              "planned_s": {name: rows[name]["seconds"] for name in left}}
    out = dict(plan, stages=stages, total_s=sum(row["seconds"] for row in stages),
               budget=dict(budget, changed=merged, resized=record))
    return new, out


def resized_text(record: dict, budget: str) -> str:
    """The resizing in one line, for people."""
    what = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in record["changed"].items())
    return (f"time budget {budget}: the supernet took {fmt_duration(record['supernet_s'])} "
            f"({record['supernet_s'] / max(1e-9, record['supernet_planned_s']):.2f} of its estimate), "
            f"{fmt_duration(max(0.0, record['room_s']))} left to plan: the stages after it sized again ({what})")
