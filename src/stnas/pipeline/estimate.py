"""The estimate of each stage of a run: its work and its seconds on this machine (the rows of
:mod:`stnas.pipeline.plan`).


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
"""

from __future__ import annotations

import math
from typing import Callable

from stnas.core.units import budget_label
from stnas.nn.baselines import cost
from stnas.pipeline.baselines import plan as baselines_plan
from stnas.pipeline.baselines import stage_enabled
from stnas.pipeline.calibrate import NEEDS, baseline_budgets, madds_targets, retrain_labels
from stnas.pipeline.latency import MIN_REPEATS
from stnas.pipeline.scaling import recal_batches
from stnas.proxy.modes import PROXY_MODES
from stnas.search.algorithms import SEARCH_ALGORITHMS

VERSION = 1  # of plan.json
RUN_STAGES = ("supernet", "search", "retrain")
Stage = dict  # {"name", "work" (words), "seconds", and the stage's counts}



def steps_per_epoch(images: int, ranks: int, batch: int) -> int:
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
    spe = steps_per_epoch(sizes["search_train"], sizes["ranks"], r["batch_size"])
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
    spe = steps_per_epoch(sizes["train"], sizes["ranks"], r["batch_size"])
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
    spe = steps_per_epoch(sizes["train"], sizes["ranks"], r["batch_size"])
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


def _corrected(estimate: Callable[[dict, dict, dict], Stage]) -> Callable[[dict, dict, dict], Stage]:
    """The stage's calibrated estimate (``calibrated_s``) times its correction from earlier runs
    (``units["correction"]``, :mod:`stnas.pipeline.actuals`), where there is one."""

    def stage(cfg: dict, sizes: dict, units: dict) -> Stage:
        row = estimate(cfg, sizes, units)
        factor = (units.get("correction") or {}).get(row["name"], {}).get("factor", 1.0)
        return dict(row, calibrated_s=row["seconds"], seconds=row["seconds"] * factor)

    return stage


STAGES: dict[str, Callable[[dict, dict, dict], Stage]] = {
    name: _corrected(fn) for name, fn in (("supernet", supernet_stage), ("search", search_stage),
                                          ("retrain", retrain_stage), ("baselines", baselines_stage))}


def run_stages(cfg: dict, sizes: dict) -> tuple[str, ...]:
    """The stages ``stnas run`` runs with ``cfg``: RUN_STAGES, and baselines where it is enabled."""
    return RUN_STAGES + (("baselines",) if stage_enabled(cfg, sizes["train"]) else ())


def make_plan(cfg: dict, sizes: dict, units: dict, stages=RUN_STAGES, calibration_s: float = 0.0,
              cached=()) -> dict:
    """The plan of ``stages`` from the data sizes and the unit costs (no measuring)."""
    timed = [m for m in dict.fromkeys(m for s in stages for m in NEEDS[s]) if m not in cached and m != "export"]
    work = "timed steps of " + ", ".join(timed) if calibration_s else "unit costs from the cache"
    fixes = {s: c for s, c in (units.get("correction") or {}).items() if s in stages}
    if fixes:
        work += "; corrected by earlier runs here (" + ", ".join(f"{s} ×{c['factor']:.2f}"
                                                                 for s, c in fixes.items()) + ")"
    rows = [{"name": "calibration", "seconds": calibration_s, "work": work}]
    rows += [STAGES[name](cfg, sizes, units) for name in stages]
    return {"version": VERSION, "stages": rows, "total_s": sum(r["seconds"] for r in rows), "sizes": sizes,
            "units": units, "cached": list(cached), "budget": None}
