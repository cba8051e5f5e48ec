"""Pipeline step 4: constrained evolutionary and random search with a proxy scorer.

Constraints: MAdds <= budget (and >= ``min_madds``, and >= ``budget_floor`` x budget),
params <= ``max_params``. A candidate outside them is never handed to the scorer.
``budget_floor`` (our addition, default 0: off) gives every budget a window of its own:
its candidates, its parents and its best all lie in [floor x budget, budget], so a larger
budget is not won by a small network that a weak proxy happens to prefer (docs/benchmarks.md).
``select`` (our addition) says which record of a budget is chosen: ``best``, the top mean
score (the default), or ``largest_tied``, the one with the most MAdds among those that a
paired one-sided t-test over the stabilized proxy's pool samples cannot tell from the best
at ``tie_alpha``. Every record is scored under the same samples, so the pairing removes
what the samples share; parents are always the top scores.

Several budgets share one search (one supernet, many deployment targets) and one history;
every candidate is tagged with a *target budget* in turn (candidate i of a generation
targets ``budgets[i % len(budgets)]``) and must fit it, so the population is split evenly
across the budgets and none starves. Evolution (in the spirit of SPOS; the split across
budgets is our design):

* generation 0: P distinct architectures drawn uniformly within their target budget;
* every generation is scored in one scorer call;
* parents for a target budget: the top-k of the whole history among the architectures
  within that budget (elitist, so a good early find is never lost);
* P children: the first ``round(P * crossover)`` by uniform crossover of two random parents,
  the rest by mutating a random parent (each edge redrawn with ``mutation_prob``); a child
  outside its budget or already seen is redrawn (bounded tries), then replaced by a fresh
  constrained sample.

``screen`` (our addition; off by default, 0.2 in the fashion-mnist preset) is successive
halving over each generation: every candidate is scored under one pool sample, and only the
best ``screen`` share of each target budget's candidates under all K; the others keep that
one-sample score in the history but are never parents, chosen, nor on the Pareto front.
With K = 8 and ``screen: 0.2`` a search spends 1 + 0.2 x 7 = 2.4 evaluations per
candidate instead of 8.

Random search draws ``random_samples`` distinct constrained architectures (spread over the
budgets the same way) and scores them in chunks of P, one "generation" per chunk.

Latency budgets (``latency_budgets``, with a predictor from :mod:`stnas.latency`): the
targets become :class:`stnas.latency.Target` pairs, every MAdds budget (or none) with every
latency budget, each met by predicted latency <= its budget too (``budget_floor`` bounds
both from below); the records carry ``latency_ms`` and ``pareto_latency.json`` is the front
by latency. Candidates over a target's latency are never scored, as for MAdds; random
draws that miss it are repaired by latency-lowering moves.

Everything is a function of the seed and the scores, so a rerun after a kill replays the
same candidates and a caching scorer (``stnas.proxy.Proxy``) makes the replay free.

Output directory::

    search.jsonl        one line per scored architecture (rewritten every generation)
    pareto.json         the non-dominated set of (MAdds, score) over the history
    best.json           per budget, the top N (the chosen one first): {budget, rank, arch, madds,
                        params, score, std, ..., file}
    best/budget_<B>/top<r>.json   their architecture files
    search.json         summary, with the settings (a folder that holds a search with other
                        settings is refused, so no result is ever replaced; the same settings replay)
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import stats
from tqdm import tqdm

from stnas.arch import Arch, save_arch
from stnas.config_checks import parse_latency
from stnas.errors import ConfigError, SpaceError
from stnas.fileio import write_json, write_text
from stnas.format import budget_label
from stnas.latency import Target, latency_label
from stnas.sampling import repair
from stnas.score import Score
from stnas.space import SearchSpace

CHILD_TRIES = 50  # redraws of a child that is out of budget or already seen
FRESH_TRIES = 200  # fresh constrained samples that may all be already seen (tiny spaces)


@dataclass(frozen=True)
class Record:
    """One scored architecture of the history: its :class:`~stnas.score.Score` with the
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
    """History (in scoring order), Pareto front (by MAdds) and the top records per budget."""

    history: list[Record]
    pareto: list[Record]
    best: dict[int, list[Record]]
    generations: int
    out_dir: Path | None = None
    files: dict[str, str] = field(default_factory=dict)


def target_json(target) -> dict:
    """A budget (int) or Target as the JSON fields of a chosen record."""
    if isinstance(target, (int, np.integer)):
        return {"budget": int(target)}
    return {"budget": target.madds, "latency_budget_ms": target.latency_ms, "target": target.label}


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


def _rank_key(r: Record):
    return (-r.score, r.madds, str(r.arch))


def check_constraints(space: SearchSpace, budgets: Sequence[int], min_madds=None, max_params=None) -> None:
    """Raises SpaceError (one line) when a budget or constraint cannot be met by any architecture."""
    lo, hi = space.madds_range()
    for b in budgets:
        if b < lo:
            raise SpaceError(f"budget {budget_label(b)} ({b:,} MAdds) is below the smallest architecture of "
                             f"space {space.name!r} ({lo:,} MAdds); raise the budget")
        if min_madds is not None and b < min_madds:
            raise SpaceError(f"budget {budget_label(b)} is below search.min_madds ({min_madds:,}); "
                             "lower min_madds or raise the budget")
    if min_madds is not None and min_madds > hi:
        raise SpaceError(f"search.min_madds {min_madds:,} exceeds the largest architecture of space "
                         f"{space.name!r} ({hi:,} MAdds)")
    if max_params is not None:
        smallest = space.fixed_params + sum(int(min(space.stem_table[k, o, 1] for o in e.allowed))
                                            for k, e in enumerate(space.stem_edges))
        if max_params < smallest:
            raise SpaceError(f"search.max_params {max_params:,} is below the smallest architecture of space "
                             f"{space.name!r} ({smallest:,} params)")


class _Sampler:
    """Draws distinct, constrained candidates; ``seen`` holds every architecture drawn so far."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator, floor: dict[int, int | None], max_params,
                 latency: Callable[[Arch], float] | None = None, lat_floor: dict | None = None):
        self.space, self.rng, self.floor, self.max_params = space, rng, floor, max_params
        self.latency, self.lat_floor = latency, lat_floor or {}
        self.seen: set[Arch] = set()

    def fits(self, a: Arch, budget) -> bool:
        if isinstance(budget, (int, np.integer)):
            return a not in self.seen and self.space.satisfies(a, budget, self.floor[budget], self.max_params)
        return (a not in self.seen and self.space.satisfies(a, budget.madds, self.floor[budget], self.max_params)
                and self.lat_floor.get(budget, 0.0) <= self.latency(a) <= budget.latency_ms)

    def take(self, a: Arch) -> Arch:
        self.seen.add(a)
        return a

    def fresh(self, budget) -> Arch | None:
        if not isinstance(budget, (int, np.integer)):
            return self._fresh_latency(budget)
        for _ in range(FRESH_TRIES):
            a = self.space.sample_constrained(self.rng, budget, self.floor[budget], self.max_params)
            if a not in self.seen:
                return self.take(a)
        return None

    def _fresh_latency(self, target) -> Arch | None:
        """Rejection sampling within the MAdds/params constraints, then repaired draws."""
        sp, pred = self.space, self.latency
        limits = [(sp.stem_table[:, :, 1], sp.branch_table[:, :, 1], sp.fixed_params, self.max_params),
                  (sp.stem_table[:, :, 0], sp.branch_table[:, :, 0], sp.fixed_madds, target.madds),
                  (pred.stem_ms, pred.branch_ms, pred.fixed_ms, target.latency_ms)]
        limits = [c for c in limits if c[3] is not None]
        for i in range(FRESH_TRIES * 10):
            a = sp.sample_constrained(self.rng, target.madds, self.floor[target], self.max_params)
            if i >= FRESH_TRIES:  # far-tail budgets: cost-lowering moves
                a = repair(a, self.rng, limits) or a
            if self.fits(a, target):
                return self.take(a)
        return None

    def child(self, parents: list[Arch], budget: int, cross: bool, mutation_prob: float) -> Arch | None:
        sp, rng = self.space, self.rng
        if parents:
            for _ in range(CHILD_TRIES):
                if cross and len(parents) >= 2:
                    i, j = rng.choice(len(parents), 2, replace=False)
                    c = sp.crossover(parents[i], parents[j], rng)
                else:
                    c = sp.mutate(parents[rng.integers(len(parents))], rng, mutation_prob)
                if self.fits(c, budget):
                    return self.take(c)
        return self.fresh(budget)


def search(space: SearchSpace, scorer: Callable[[list[Arch]], list[Score]], cfg_search: dict,
           out_dir: str | Path | None, *, seed: int = 0, progress: bool = True,
           info: dict | None = None, screen: Callable[[list[Arch]], list] | None = None,
           latency: Callable[[Arch], float] | None = None) -> SearchResult:
    """Runs the search described by ``cfg_search`` (the config's ``search`` section).

    Args:
        space: the search space.
        scorer: ``list[Arch] -> list[Score]`` (:class:`stnas.score.Score`) in the same order
            (``Proxy.score``); ``select: largest_tied`` pairs the ``per_sample`` scores (with
            fewer than two, a record ties with none).
        cfg_search: the config's ``search`` section as ``stnas.config_checks.check_search`` leaves
            it (``resolve`` runs it): algorithm, budgets, min_madds, budget_floor, select,
            tie_alpha, max_params, population, parents, mutation_prob, crossover,
            generations, random_samples, top.
        out_dir: where the outputs go (module docstring); None: write nothing (non-main ranks).
        seed: the search's random seed.
        progress: show a tqdm bar that advances per generation.
        info: extra fields for search.json (e.g. the proxy mode).
        screen: the cheap scorer of ``search.screen`` (successive halving), e.g. the proxy on
            one pool sample; needed when ``cfg_search["screen"]`` is set.
        latency: the predictor (``stnas.latency.Predictor``) that ``latency_budgets`` need.
    """
    c = cfg_search
    budgets = sorted(set(c["budgets"]))
    lat_budgets = sorted({parse_latency(v, "search.latency_budgets") for v in c.get("latency_budgets") or []})
    if lat_budgets and latency is None:
        raise ConfigError("search.latency_budgets needs a latency table (stnas latency build)")
    min_madds, max_params = c["min_madds"], c["max_params"]
    check_constraints(space, budgets, min_madds, max_params)
    fraction = float(c["budget_floor"] or 0.0)
    floor = {b: max(min_madds or 0, math.ceil(fraction * b)) or None for b in budgets}
    madds_budgets, lat_floor = budgets, {}
    if lat_budgets:
        check_latency_budgets(latency, lat_budgets)
        targets = [Target(b, ms) for b in (budgets or [None]) for ms in lat_budgets]
        floor = {t: floor[t.madds] if t.madds is not None else min_madds for t in targets}
        lat_floor = {t: fraction * t.latency_ms for t in targets}
        budgets = targets
    select, alpha = c["select"], float(c["tie_alpha"])
    keep = c.get("screen")
    if keep is not None and screen is None:
        raise ConfigError("search.screen is set but no screening scorer was given")
    choose = {"floor": floor, "select": select, "alpha": alpha, "top": int(c["top"])}
    c = {**c, "select": select, "tie_alpha": alpha}  # search.json records the rule in effect
    P, k = int(c["population"]), int(c["parents"])
    evolution = c["algorithm"] == "evolution"
    n_gen = int(c["generations"]) if evolution else -(-int(c["random_samples"]) // P)
    sampler = _Sampler(space, np.random.default_rng(seed), floor, max_params, latency, lat_floor)
    choose["lat_floor"] = lat_floor
    out = Path(out_dir) if out_dir is not None else None
    settings = {"algorithm": c["algorithm"], "seed": seed, "space": space.name, "space_fingerprint": space.fingerprint,
                "budgets": madds_budgets, "min_madds": min_madds, "max_params": max_params,
                "config": {k: c[k] for k in c if k not in ("budgets", "min_madds", "max_params", "latency_budgets")},
                **({"latency_budgets_ms": lat_budgets} if lat_budgets else {}), **(info or {})}
    if out is not None:
        _check_same_search(out, settings)
    history: list[Record] = []
    t0 = time.time()
    bar = tqdm(total=n_gen, desc=f"{c['algorithm']} search", unit="gen", disable=not progress, dynamic_ncols=True)
    for gen in range(n_gen):
        targets = [budgets[i % len(budgets)] for i in range(P)]
        if not evolution:
            n = min(P, int(c["random_samples"]) - gen * P)
            batch = [sampler.fresh(targets[i]) for i in range(n)]
        elif gen == 0:
            batch = [sampler.fresh(targets[i]) for i in range(P)]
        else:
            parents = {b: [r.arch for r in _within(history, b, floor[b], lat_floor.get(b, 0.0))[:k]] for b in budgets}
            n_cross = round(P * c["crossover"])
            batch = [sampler.child(parents[targets[i]], targets[i], i < n_cross, c["mutation_prob"]) for i in range(P)]
        targets = [t for t, a in zip(targets, batch) if a is not None]
        batch = [a for a in batch if a is not None]
        if not batch:  # a tiny space is exhausted
            break
        if keep is None:
            scores, screened = _checked(scorer, batch), [False] * len(batch)
        else:
            scores, screened = _halving(scorer, screen, batch, targets, keep)
        for a, s, cut in zip(batch, scores, screened):
            history.append(dataclasses.replace(Record.of(a, space, s, gen), screened=cut,
                                                latency_ms=None if latency is None else float(latency(a))))
        result = _result(history, budgets, gen + 1, out, **choose)
        if out is not None:
            _write(result, settings, time.time() - t0, done=False)
        bar.set_postfix_str(" ".join(f"{budget_label(b)}:{v[0].score:.4g}" for b, v in result.best.items() if v))
        bar.update(1)
    bar.close()
    result = _result(history, budgets, len({r.generation for r in history}), out, **choose)
    if out is not None:
        _write(result, settings, time.time() - t0, done=True)
    return result


def _checked(scorer: Callable[[list[Arch]], list], batch: list[Arch]) -> list:
    """``scorer(batch)``, checked to answer each architecture in order."""
    scores = scorer(batch)
    if len(scores) != len(batch):
        raise RuntimeError(f"scorer returned {len(scores)} scores for {len(batch)} architectures")
    for a, s in zip(batch, scores):
        if str(s.arch) != str(a):
            raise RuntimeError(f"scorer returned a score for {s.arch} in place of {a}")
    return scores


def _halving(scorer, screen, batch: list[Arch], targets: list, keep: float) -> tuple[list, list[bool]]:
    """Successive halving over one generation: every candidate is scored by ``screen``; of
    each target budget's candidates the best ``ceil(keep * n)`` are scored again by
    ``scorer``. Returns the scores (full ones where promoted) and which were cut."""
    first = _checked(screen, batch)
    promoted: list[int] = []
    for b in sorted(set(targets)):
        idx = [i for i, t in enumerate(targets) if t == b]
        idx.sort(key=lambda i: (-float(first[i].score), str(batch[i])))
        promoted += idx[:math.ceil(keep * len(idx))]
    promoted.sort()
    full = dict(zip(promoted, _checked(scorer, [batch[i] for i in promoted])))
    return [full.get(i, first[i]) for i in range(len(batch))], [i not in full for i in range(len(batch))]


def _within(history: list[Record], budget, floor: int | None, lat_floor: float = 0.0) -> list[Record]:
    """The fully scored records in budget's window [floor, budget], best first (a Target:
    both windows)."""
    if isinstance(budget, (int, np.integer)):
        return sorted((r for r in history if (floor or 0) <= r.madds <= budget and not r.screened), key=_rank_key)
    return sorted((r for r in history if (floor or 0) <= r.madds <= (budget.madds or r.madds) and not r.screened
                   and r.latency_ms is not None and lat_floor <= r.latency_ms <= budget.latency_ms), key=_rank_key)


def check_latency_budgets(predictor, budgets_ms: Sequence[float]) -> None:
    """Raises SpaceError (one line) when a latency budget is below every architecture's prediction."""
    lo = predictor.min_ms()
    for ms in budgets_ms:
        if ms < lo:
            raise SpaceError(f"latency budget {latency_label(ms)} is below the fastest architecture of space "
                             f"{predictor.space.name!r} ({lo:.3f} ms predicted); raise the budget")


def tied_with_best(records: Sequence[Record], alpha: float) -> list[Record]:
    """The records, best first, that a paired one-sided t-test across their per-sample scores
    cannot tell from ``records[0]`` (the best by mean score) at level ``alpha``: H0 "as good
    as the best" is kept when p >= alpha. A record without per-sample scores, or with other
    sources, ties with none."""
    if not records:
        return []
    ref = records[0].per_sample
    tied = [records[0]]
    if ref is None:
        return tied
    b = np.asarray(ref)
    for r in records[1:]:
        if r.per_sample is None or len(r.per_sample) != len(b):
            continue
        a = np.asarray(r.per_sample)
        d = a - b
        if np.ptp(d) == 0:  # no spread: the t statistic is undefined; tied only when identical
            keep = d[0] >= 0
        else:
            keep = stats.ttest_rel(a, b, alternative="less").pvalue >= alpha
        if keep:
            tied.append(r)
    return tied


def _choose(records: list[Record], select: str, alpha: float) -> list[Record]:
    """``records`` (best first) reordered so that the one ``select`` chooses comes first."""
    if select == "best" or not records:
        return records
    pick = max(tied_with_best(records, alpha), key=lambda r: (r.madds, r.score))
    return [pick, *(r for r in records if r is not pick)]


def _result(history: list[Record], budgets: list, generations: int, out: Path | None, *,
            floor: dict, select: str, alpha: float, top: int, lat_floor: dict | None = None) -> SearchResult:
    lat_floor = lat_floor or {}
    best = {b: _choose(_within(history, b, floor[b], lat_floor.get(b, 0.0)), select, alpha)[:top] for b in budgets}
    return SearchResult(list(history), pareto_front([r for r in history if not r.screened]), best, generations, out)


# search.json fields that describe a search's progress or place, not its settings
_NOT_SETTINGS = ("done", "generations", "evaluations", "wall_s", "best", "pareto_size", "run_dir")


def _check_same_search(out: Path, settings: dict) -> None:
    """A search writes into a folder that holds none, or one with the same settings (a rerun,
    which replays from the score cache): another search's results are never replaced."""
    f = out / "search.json"
    if not f.is_file():
        return
    try:
        old = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{f} is unreadable ({exc}); search into another --out or remove it") from None
    differ = []
    for k, v in json.loads(json.dumps(settings)).items():  # as it would be written
        if k in _NOT_SETTINGS or k not in old or old[k] == v:  # (a key an older version did not write: skipped)
            continue
        if isinstance(v, dict) and isinstance(old[k], dict):
            differ += [f"{k}.{j}" for j in sorted(set(v) | set(old[k])) if v.get(j) != old[k].get(j)]
        else:
            differ.append(k)
    # latency settings exist only in latency searches: one present on one side alone differs too
    differ += [k for k in ("latency_budgets_ms", "latency_table") if (k in old) != (k in settings)]
    if differ:
        raise ConfigError(f"{out} holds a search with other settings ({', '.join(differ)} differ); "
                          f"search into another --out, or remove it to replace it")


def _write(result: SearchResult, settings: dict, wall_s: float, done: bool) -> None:
    out = result.out_dir
    files = {"history": out / "search.jsonl", "pareto": out / "pareto.json", "best": out / "best.json",
             "summary": out / "search.json"}
    write_text(files["history"], "".join(json.dumps(r.to_json()) + "\n" for r in result.history))
    write_json(files["pareto"], [r.to_json() for r in result.pareto])
    if result.history and result.history[0].latency_ms is not None:
        files["pareto_latency"] = out / "pareto_latency.json"
        scored = [r for r in result.history if not r.screened]
        write_json(files["pareto_latency"], [r.to_json() for r in pareto_front(scored, "latency_ms")])
    rows = []
    for b, recs in result.best.items():
        folder = out / "best" / f"budget_{budget_label(b)}"
        for rank, r in enumerate(recs, 1):
            path = save_arch(r.arch, folder / f"top{rank}.json")
            rows.append({**target_json(b), "rank": rank, **r.to_json(), "file": str(path.relative_to(out))})
        for stale in folder.glob("top*.json") if folder.is_dir() else []:
            if stale.stem[3:].isdigit() and int(stale.stem[3:]) > len(recs):
                stale.unlink()
    write_json(files["best"], rows)
    result.files = {k: str(v) for k, v in files.items()}
    write_json(files["summary"], {
        "done": done, **settings,
        "generations": result.generations, "evaluations": len(result.history), "wall_s": round(wall_s, 3),
        "best": {budget_label(b): (recs[0].to_json() if recs else None) for b, recs in result.best.items()},
        "pareto_size": len(result.pareto)})
