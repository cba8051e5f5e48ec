"""What the stages of earlier runs on this machine took against their calibrated estimate: the
correction a run's plan applies (:mod:`stnas.pipeline.estimate`).

*Why.* A calibration times a few steps of each stage; two calibrations of the same run on this
machine differed by up to 15% per stage, and a stage's steps can differ from the timed ones
(docs/benchmarks.md, "The plan against the actual"). A stage that ran is a far larger sample.

*What is kept.* After a new ``stnas run`` (not a resumed one), for each stage that ran while
other processes left the machine quiet (the calibration's :class:`LoadMeter` and ``LOAD_LIMIT``),
its actual seconds over its calibrated estimate (the plan row's ``calibrated_s``), beside the
calibration cache: ``actual-STAGE-SPACE-DIGEST.json``, the digest that of the stage's calibration
identity (machine, torch, threads, space, data shape, recipe). The latest ``KEEP`` ratios count.

*How it is used.* A plan multiplies each stage's calibrated estimate by the median of its
ratios, bounded to ``BOUNDS`` (``units["correction"]``), and says so. The time budget's sizing
and resizing use the corrected estimates. ``STNAS_CACHE`` moves the files with the cache;
deleting them forgets the corrections.
"""

from __future__ import annotations

import statistics
import time

import torch

from stnas.core.errors import CheckpointError
from stnas.core.verified import content_digest, read_json, write_json
from stnas.pipeline.calibrate import LOAD_LIMIT, cache_dir, identity

KEEP = 5  # the latest runs whose ratios count
BOUNDS = (0.5, 2.0)  # a correction is never outside these
MIN_SECONDS = 1.0  # a stage shorter than this is timer noise: not kept


def keys(cfg: dict, space, stages, device: torch.device, sizes: dict) -> dict[str, str]:
    """{stage: the name of its record} for ``stages`` of a run."""
    return {s: f"actual-{s}-{space.name}-{content_digest(identity(cfg, space, s, device, sizes))[:16]}"
            for s in stages}


def _read(name: str) -> list[float]:
    path = cache_dir() / f"{name}.json"
    try:
        rec = read_json(path, "run timings") if path.is_file() else None
    except CheckpointError:
        return []  # a damaged record is started again
    ratios = (rec or {}).get("ratios")
    if not isinstance(ratios, list):
        return []
    return [float(r) for r in ratios if isinstance(r, (int, float)) and r > 0]


def corrections(names: dict[str, str]) -> dict[str, dict]:
    """{stage: {"factor", "runs"}} for the stages with kept ratios: the median, bounded."""
    out = {}
    for stage, name in names.items():
        ratios = _read(name)[-KEEP:]
        if ratios:
            factor = min(max(statistics.median(ratios), BOUNDS[0]), BOUNDS[1])
            out[stage] = {"factor": factor, "runs": len(ratios)}
    return out


def record(plan: dict | None, wall: dict, others: dict) -> list[str]:
    """Keeps each stage's actual over calibrated seconds (module docstring); returns the stages
    kept. ``others``: cores other processes used during each stage (None: unknown)."""
    names = (plan or {}).get("actual_keys") or {}
    rows = {r["name"]: r for r in (plan or {}).get("stages", [])}
    kept = []
    for stage, name in names.items():
        raw, took, busy = rows.get(stage, {}).get("calibrated_s"), wall.get(stage), others.get(stage)
        if not raw or raw <= 0 or took is None or took < MIN_SECONDS or (busy is not None and busy > LOAD_LIMIT):
            continue
        ratios = (_read(name) + [took / raw])[-KEEP:]
        try:
            write_json(cache_dir() / f"{name}.json", {"ratios": ratios, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
        except OSError:
            continue  # an unwritable cache only costs the correction
        kept.append(stage)
    return kept
