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

Targets (:mod:`stnas.search.targets`): every budget is a window on a cost table
(:class:`stnas.space.cost.CostTable`), and the search sees only those windows. Latency budgets
(``latency_budgets``, with a predictor from :mod:`stnas.latency.table`, whose table is one more
cost table) pair every MAdds budget (or none) with every latency budget; the records carry
``latency_ms`` and ``pareto_latency.json`` is the front by latency. Fresh candidates are drawn
within the bounds the space's own tables set (MAdds, params); a predictor's bounds are checked
on those draws, and after ``FRESH_TRIES`` misses the draws are repaired by cost-lowering moves.

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
from stnas.core.units import budget_label, latency_label
from stnas.proxy.score import Score
from stnas.search.algorithms import SEARCH_ALGORITHMS
from stnas.search.history import Record, SearchResult, check_same_search, collect, within, write_search
from stnas.search.targets import Target, build_targets, target_limits
from stnas.space.arch import Arch
from stnas.space.cost import BUDGET_KINDS, Bound, repair
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
        smallest = space.costs["params"].min()
        if max_params < smallest:
            raise SpaceError(f"search.max_params {max_params:,} is below the smallest architecture of space "
                             f"{space.name!r} ({smallest:,} params)")


class _Sampler:
    """Draws distinct candidates within their target's bounds; ``seen`` holds every architecture
    drawn so far."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator, targets: dict[Target, tuple[Bound, ...]]):
        self.space, self.rng, self.targets = space, rng, targets
        self.seen: set[Arch] = set()

    def fits(self, a: Arch, target: Target) -> bool:
        return a not in self.seen and all(b.holds(a) for b in self.targets[target])

    def take(self, a: Arch) -> Arch:
        self.seen.add(a)
        return a

    def fresh(self, target: Target) -> Arch | None:
        """Constrained draws within the space's own bounds, checked against the others (a
        predictor's); with such bounds, ten times the tries and repaired draws after FRESH_TRIES."""
        bounds = self.targets[target]
        aimed = [b for b in bounds if BUDGET_KINDS.get(b.table.kind).of_space]
        tries = FRESH_TRIES * (1 if len(aimed) == len(bounds) else 10)
        for i in range(tries):
            a = self.space.sample_within(self.rng, aimed)
            if i >= FRESH_TRIES:  # far-tail budgets: cost-lowering moves
                a = repair(a, self.rng, bounds) or a
            if self.fits(a, target):
                return self.take(a)
        return None

    def child(self, parents: list[Arch], target: Target, cross: bool, mutation_prob: float) -> Arch | None:
        sp, rng = self.space, self.rng
        if parents:
            for _ in range(CHILD_TRIES):
                if cross and len(parents) >= 2:
                    i, j = rng.choice(len(parents), 2, replace=False)
                    c = sp.crossover(parents[i], parents[j], rng)
                else:
                    c = sp.mutate(parents[rng.integers(len(parents))], rng, mutation_prob)
                if self.fits(c, target):
                    return self.take(c)
        return self.fresh(target)


def search(space: SearchSpace, scorer: Callable[[list[Arch]], list[Score]], cfg_search: dict,
           out_dir: str | Path | None, *, seed: int = 0, progress: bool = True,
           info: dict | None = None, screen: Callable[[list[Arch]], list] | None = None,
           latency: Callable[[Arch], float] | None = None, latency_margin: float = 0.0) -> SearchResult:
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
        latency_margin: a latency budget B is searched as a predicted latency <= B (1 - margin)
            (:mod:`stnas.latency.budget`; recorded in search.json when > 0).
    """
    c = cfg_search
    limits = target_limits(c)
    windows = build_targets(c, space, latency, {"latency": latency_margin})
    min_madds, max_params = c["min_madds"], c["max_params"]
    check_constraints(space, limits["madds"], min_madds, max_params)
    if limits["latency"]:
        check_latency_budgets(latency, limits["latency"], latency_margin)
    budgets = list(windows)
    # the tables a predictor supplies (latency): every record carries their costs
    predicted = {BUDGET_KINDS.get(n).record: BUDGET_KINDS.get(n).table(space, latency)
                 for n in BUDGET_KINDS if latency is not None and not BUDGET_KINDS.get(n).of_space}
    select, alpha = c["select"], float(c["tie_alpha"])
    keep = c.get("screen")
    if keep is not None and screen is None:
        raise ConfigError("search.screen is set but no screening scorer was given")
    choose = {"select": select, "alpha": alpha, "top": int(c["top"])}
    c = {**c, "select": select, "tie_alpha": alpha}  # search.json records the rule in effect
    P, k = int(c["population"]), int(c["parents"])
    algorithm = SEARCH_ALGORITHMS.get(c["algorithm"], "search.algorithm")
    n_gen = algorithm.generations(c, P)
    sampler = _Sampler(space, np.random.default_rng(seed), windows)
    out = Path(out_dir) if out_dir is not None else None
    settings = {"algorithm": c["algorithm"], "seed": seed, "space": space.name, "space_fingerprint": space.fingerprint,
                "budgets": limits["madds"], "min_madds": min_madds, "max_params": max_params,
                "config": {k: c[k] for k in c if k not in ("budgets", "min_madds", "max_params", "latency_budgets")},
                **({"latency_budgets_ms": limits["latency"]} if limits["latency"] else {}),
                **({"latency_margin": latency_margin} if latency_margin else {}), **(info or {})}
    if out is not None:
        check_same_search(out, settings)
    history: list[Record] = []
    t0 = time.time()
    bar = tqdm(total=n_gen, desc=f"{c['algorithm']} search", unit="gen", disable=not progress, dynamic_ncols=True)
    for gen in range(n_gen):
        targets = [budgets[i % len(budgets)] for i in range(P)]
        batch = algorithm.propose(sampler, gen, targets, c, lambda: {
            t: [r.arch for r in within(history, windows[t])[:k]] for t in budgets})
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
                                                **{f: float(t(a)) for f, t in predicted.items()}))
        result = collect(history, windows, gen + 1, out, **choose)
        if out is not None:
            write_search(result, settings, time.time() - t0, done=False)
        bar.set_postfix_str(" ".join(f"{budget_label(b)}:{v[0].score:.4g}" for b, v in result.best.items() if v))
        bar.update(1)
    bar.close()
    result = collect(history, windows, len({r.generation for r in history}), out, **choose)
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


def check_latency_budgets(predictor, budgets_ms: Sequence[float], margin: float = 0.0) -> None:
    """Raises SpaceError (one line) when a latency budget, less its ``margin``, is below every
    architecture's prediction."""
    lo = predictor.costs.min()
    for ms in budgets_ms:
        if ms * (1.0 - margin) < lo:
            less = f" less its margin of {margin:.1%} ({ms * (1.0 - margin):.3f} ms)" if margin else ""
            raise SpaceError(f"latency budget {latency_label(ms)}{less} is below the fastest architecture of space "
                             f"{predictor.space.name!r} ({lo:.3f} ms predicted); raise the budget"
                             + (" or lower latency.margin" if margin else ""))
