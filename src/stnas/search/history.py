"""The search's history and what it leaves: scored records, Pareto fronts, the choice per
budget and the output folder (pipeline step 4, with :mod:`stnas.search.evolution`).

``select`` says which record of a budget is chosen (:data:`stnas.search.algorithms.SELECTIONS`):
``best``, the top mean score, or ``largest_tied``, the one with the most MAdds among those that a
paired one-sided t-test over the stabilized proxy's pool samples cannot tell from the best at
``tie_alpha``. Every record
is scored under the same samples, so the pairing removes what the samples share.

Output directory (every file checksummed, :mod:`stnas.core.verified`; read back only
through :func:`read_search`)::

    search.jsonl        one line per scored architecture (rewritten every generation)
    pareto.json         {"records": [...]}: the non-dominated set of (MAdds, score) over the history
    pareto_latency.json the same by predicted latency (latency searches only)
    best.json           {"records": [...]}: per budget, the top N (the chosen one first):
                        {budget, rank, arch, madds, params, score, std, ..., file}
    best/budget_<B>/top<r>.json   their architecture files
    search.json         summary, with the settings (a folder that holds a search with other
                        settings is refused, so no result is ever replaced; the same settings replay)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from stnas.core.errors import CheckpointError, ConfigError
from stnas.core.rundir import check_same_inputs
from stnas.core.units import budget_label
from stnas.core.verified import read_json, read_jsonl, write_json, write_jsonl
from stnas.proxy.score import Score
from stnas.search.algorithms import SELECTIONS, tied_with_best  # noqa: F401  (also stnas.search.history.tied_with_best)
from stnas.search.targets import Target
from stnas.space.arch import Arch, save_arch
from stnas.space.cost import BUDGET_KINDS, Bound
from stnas.space.searchspace import SearchSpace


@dataclass(frozen=True)
class Record:
    """One scored architecture of the history: its :class:`~stnas.proxy.score.Score` with the
    architecture, its cost and the generation."""

    arch: Arch
    madds: int
    params: int
    score: float
    std: float
    generation: int
    loss: float | None = None
    top1: float | None = None
    per_sample: tuple[float, ...] | None = None  # the metric under each pool sample (stabilized)
    latency_ms: float | None = None  # predicted (latency searches only)
    screened: bool = False  # scored on one pool sample only (search.screen): never a parent nor chosen

    @classmethod
    def of(cls, arch: Arch, space: SearchSpace, s: Score, generation: int) -> Record:
        """The record of ``arch`` scored ``s`` in ``generation`` (per-sample scores kept when
        there are two or more, for the paired test)."""
        per = s.per_sample
        return cls(arch, space.madds(arch), space.params(arch), float(s.score), float(s.std), generation,
                   None if s.loss is None else float(s.loss), None if s.top1 is None else float(s.top1),
                   tuple(float(v) for v in per) if per is not None and len(per) > 1 else None)

    def to_json(self) -> dict:
        d = asdict(self)
        d["arch"] = str(self.arch)
        d["per_sample"] = None if self.per_sample is None else list(self.per_sample)
        if self.latency_ms is None:
            del d["latency_ms"]
        return d


@dataclass
class SearchResult:
    """History (in scoring order), Pareto front (by MAdds) and the top records per target
    (:class:`stnas.search.targets.Target`, in the search's order)."""

    history: list[Record]
    pareto: list[Record]
    best: dict[Target, list[Record]]
    generations: int
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)


def target_json(target: Target) -> dict:
    """A target's fields of a chosen record (:meth:`stnas.search.targets.Target.json`)."""
    return target.json()


def pareto_front(records: Sequence, cost: str = "madds") -> list:
    """The records not dominated in (cost lower is better, score higher is better), by cost.

    ``cost`` is the attribute compared: ``madds`` or ``latency_ms``. ``a`` dominates ``b``
    when ``a.cost <= b.cost`` and ``a.score >= b.score`` with one inequality strict; records
    with identical (cost, score) are all kept.
    """
    front, best_before = [], -np.inf
    order = sorted(records, key=lambda r: (getattr(r, cost), -r.score))
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and getattr(order[j], cost) == getattr(order[i], cost):
            j += 1
        top = order[i].score  # the group's best (sorted by score descending within a group)
        if top > best_before:
            front += [r for r in order[i:j] if r.score == top]
            best_before = top
        i = j
    return front


def rank_key(r: Record):
    return (-r.score, r.madds, str(r.arch))


def within(history: list[Record], bounds: Sequence[Bound]) -> list[Record]:
    """The fully scored records within a target's window (every bound on the record's cost of
    the bound's kind), best first."""
    fields = [(b, BUDGET_KINDS.get(b.table.kind).record) for b in bounds]
    return sorted((r for r in history if not r.screened and all(b.admits(getattr(r, f)) for b, f in fields)),
                  key=rank_key)


def choose(records: list[Record], select: str, alpha: float) -> list[Record]:
    """``records`` (best first) reordered so that the one ``select`` chooses comes first
    (:data:`stnas.search.algorithms.SELECTIONS`)."""
    if not records:
        return records
    return SELECTIONS.get(select, "search.select").choose(records, alpha)


def collect(history: list[Record], targets: dict[Target, Sequence[Bound]], generations: int, out: Path | None, *,
            select: str, alpha: float, top: int) -> SearchResult:
    """The result so far: per target (in order), the top records within its window."""
    best = {t: choose(within(history, bounds), select, alpha)[:top] for t, bounds in targets.items()}
    return SearchResult(list(history), pareto_front([r for r in history if not r.screened]), best, generations, out)


# search.json fields that describe a search's progress or place, not its settings
NOT_SETTINGS = ("done", "generations", "evaluations", "wall_s", "best", "pareto_size", "run_dir")
# settings only latency searches have: one present on one side alone differs too
LATENCY_SETTINGS = ("latency_budgets_ms", "latency_table", "latency_margin")
FILES = {"history": "search.jsonl", "pareto": "pareto.json", "pareto_latency": "pareto_latency.json",
         "best": "best.json", "summary": "search.json"}
_WHAT = {"history": "search history", "pareto": "Pareto front", "pareto_latency": "latency Pareto front",
         "best": "search choices", "summary": "search summary"}


def read_search(out: str | Path, part: str):
    """One file of a search folder, checksum verified: ``summary`` (a dict), or the records
    (dicts) of ``history``, ``pareto``, ``pareto_latency`` or ``best``; None when it is absent.

    Raises:
        CheckpointError: a damaged file, or one written without a checksum (one line naming it).
    """
    f = Path(out) / FILES[part]
    if not f.exists():
        return None
    if part == "history":
        records, dropped = read_jsonl(f, _WHAT[part])
        if dropped:
            raise CheckpointError(f"{_WHAT[part]} {f} is damaged ({dropped} line(s) without a valid checksum)")
        return records
    obj = read_json(f, _WHAT[part])
    if part == "summary":
        return obj
    if not isinstance(obj.get("records"), list):
        raise CheckpointError(f"{_WHAT[part]} {f} is damaged (no records list)")
    return obj["records"]


def check_same_search(out: Path, settings: dict) -> None:
    """A search writes into a folder that holds none, or one with the same settings (a rerun,
    which replays from the score cache): another search's results are never replaced."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a directory: search into another --out")
    old = read_search(out, "summary")
    if old is None:
        return
    new = json.loads(json.dumps(settings))  # as it would be written
    keys = [k for k in new if k not in NOT_SETTINGS and k in old]  # (a key an older version did not write: skipped)
    keys += [k for k in LATENCY_SETTINGS if k not in keys and (k in old or k in new)]
    check_same_inputs(out, "a search", {k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new},
                      "search into another --out, or remove it to replace it")


def write_search(result: SearchResult, settings: dict, wall_s: float, done: bool) -> None:
    out = result.out_dir
    files = {k: out / FILES[k] for k in ("history", "pareto", "best", "summary")}
    write_jsonl(files["history"], [r.to_json() for r in result.history])
    write_json(files["pareto"], {"records": [r.to_json() for r in result.pareto]})
    if result.history and result.history[0].latency_ms is not None:
        files["pareto_latency"] = out / FILES["pareto_latency"]
        scored = [r for r in result.history if not r.screened]
        write_json(files["pareto_latency"], {"records": [r.to_json() for r in pareto_front(scored, "latency_ms")]})
    rows = []
    for b, recs in result.best.items():
        folder = out / "best" / f"budget_{budget_label(b)}"
        for rank, r in enumerate(recs, 1):
            path = save_arch(r.arch, folder / f"top{rank}.json")
            rows.append({**target_json(b), "rank": rank, **r.to_json(), "file": str(path.relative_to(out))})
        for stale in folder.glob("top*.json") if folder.is_dir() else []:
            if stale.stem[3:].isdigit() and int(stale.stem[3:]) > len(recs):
                stale.unlink()
    write_json(files["best"], {"records": rows})
    result.files = {k: str(v) for k, v in files.items()}
    write_json(files["summary"], {
        "done": done, **settings,
        "generations": result.generations, "evaluations": len(result.history), "wall_s": round(wall_s, 3),
        "best": {budget_label(b): (recs[0].to_json() if recs else None) for b, recs in result.best.items()},
        "pareto_size": len(result.pareto)})
