"""Pipeline step 4: constrained evolutionary and random search with a proxy scorer.

Constraints: MAdds <= budget (and >= ``min_madds``, and >= ``budget_floor`` x budget),
params <= ``max_params``. A candidate outside them is never handed to the scorer.
``budget_floor`` (our addition; 0: off) gives every budget a window of its own:
its candidates, its parents and its best all lie in [floor x budget, budget], so a larger
budget is not won by a small network that a weak proxy happens to prefer (docs/benchmarks.md).
``select`` (our addition) says which record of a budget is chosen (:mod:`stnas.search.history`).

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

``screen`` (our addition; 0.2 in the config defaults, null: off) is successive
halving over each generation: every candidate is scored under one pool sample, and only the
best ``screen`` share of each target budget's candidates under all K; the others keep that
one-sample score in the history but are never parents, chosen, nor on the Pareto front.
With K = 8 and ``screen: 0.2`` a search spends 1 + 0.2 x 7 = 2.4 evaluations per
candidate instead of 8.

Random search draws ``random_samples`` distinct constrained architectures (spread over the
budgets the same way) and scores them in chunks of P, one "generation" per chunk.

Latency budgets (``latency_budgets``, with a predictor from :mod:`stnas.latency.table`): the
targets become :class:`stnas.latency.table.Target` pairs, every MAdds budget (or none) with every
latency budget, each met by predicted latency <= its budget too (``budget_floor`` bounds
both from below); the records carry ``latency_ms`` and ``pareto_latency.json`` is the front
by latency. Candidates over a target's latency are never scored, as for MAdds; random
draws that miss it are repaired by latency-lowering moves.

Everything is a function of the seed and the scores, so a rerun after a kill replays the
same candidates and a caching scorer (``stnas.proxy.scorer.Proxy``) makes the replay free.

The output folder and its files: :mod:`stnas.search.history`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from stnas.core.errors import ConfigError, SpaceError
from stnas.core.units import budget_label, parse_latency
from stnas.latency.table import Target, latency_label
from stnas.proxy.score import Score
from stnas.search.history import Record, SearchResult, check_same_search, collect, within, write_search
from stnas.space.arch import Arch
from stnas.space.sampling import repair
from stnas.space.searchspace import SearchSpace

CHILD_TRIES = 50  # redraws of a child that is out of budget or already seen
FRESH_TRIES = 200  # fresh constrained samples that may all be already seen (tiny spaces)


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
        limits = sp.cost_limits(target.madds, self.max_params)
        if target.latency_ms is not None:
            limits.append((pred.stem_ms, pred.branch_ms, pred.fixed_ms, target.latency_ms))
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
        scorer: ``list[Arch] -> list[Score]`` (:class:`stnas.proxy.score.Score`) in the same order
            (``Proxy.score``); ``select: largest_tied`` pairs the ``per_sample`` scores (with
            fewer than two, a record ties with none).
        cfg_search: the config's ``search`` section as ``stnas.pipeline.checks.check_search`` leaves
            it (``resolve`` runs it): algorithm, budgets, min_madds, budget_floor, select,
            tie_alpha, max_params, population, parents, mutation_prob, crossover,
            generations, random_samples, top.
        out_dir: where the outputs go (module docstring); None: write nothing (non-main ranks).
        seed: the search's random seed.
        progress: show a tqdm bar that advances per generation.
        info: extra fields for search.json (e.g. the proxy mode).
        screen: the cheap scorer of ``search.screen`` (successive halving), e.g. the proxy on
            one pool sample; needed when ``cfg_search["screen"]`` is set.
        latency: the predictor (``stnas.latency.table.Predictor``) that ``latency_budgets`` need.
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
        check_same_search(out, settings)
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
            parents = {b: [r.arch for r in within(history, b, floor[b], lat_floor.get(b, 0.0))[:k]] for b in budgets}
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
        result = collect(history, budgets, gen + 1, out, **choose)
        if out is not None:
            write_search(result, settings, time.time() - t0, done=False)
        bar.set_postfix_str(" ".join(f"{budget_label(b)}:{v[0].score:.4g}" for b, v in result.best.items() if v))
        bar.update(1)
    bar.close()
    result = collect(history, budgets, len({r.generation for r in history}), out, **choose)
    if out is not None:
        write_search(result, settings, time.time() - t0, done=True)
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


def check_latency_budgets(predictor, budgets_ms: Sequence[float]) -> None:
    """Raises SpaceError (one line) when a latency budget is below every architecture's prediction."""
    lo = predictor.min_ms()
    for ms in budgets_ms:
        if ms < lo:
            raise SpaceError(f"latency budget {latency_label(ms)} is below the fastest architecture of space "
                             f"{predictor.space.name!r} ({lo:.3f} ms predicted); raise the budget")
