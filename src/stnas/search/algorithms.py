"""The search's closed choices, one registry entry each: its algorithms (``search.algorithm``:
how a generation of candidates is proposed) and its selection rules (``search.select``: which
record of a target is chosen). Torch-free, so that the config check and the CLI list the names.

An algorithm is ``generations(cfg_search, population)`` (how many generations it runs) and
``propose(sampler, generation, targets, cfg_search, parents)``: the generation's candidates, one
per entry of ``targets`` (the target of each slot) or fewer, None where no new one was found.
``sampler`` is the search's (``fresh(target)``, ``child(parents, target, cross, mutation_prob)``);
``parents()`` gives ``{target: its parent architectures}``. (The algorithms themselves are
described in :mod:`stnas.search.evolution`.)

A selection rule reorders a target's records (best first) so that the chosen one comes first;
``paired``: it pairs the per-sample scores, so it needs a proxy mode that scores per pool sample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stnas.core.registry import Registry


@dataclass(frozen=True)
class SearchAlgorithm:
    generations: Callable[[dict, int], int]
    propose: Callable[[Any, int, list, dict, Callable[[], dict]], list]
    effort: str  # the search setting that sets its length (what a time budget scales)

    def chunks(self, c: dict, population: int) -> list[int]:
        """The candidates of each generation (the plan's arithmetic)."""
        total = int(c[self.effort]) * (population if self.effort == "generations" else 1)
        return [min(population, total - i) for i in range(0, total, population)]


def _evolution(sampler, generation: int, targets: list, c: dict, parents: Callable[[], dict]) -> list:
    if generation == 0:
        return [sampler.fresh(t) for t in targets]
    chosen, n_cross = parents(), round(len(targets) * c["crossover"])
    return [sampler.child(chosen[t], t, i < n_cross, c["mutation_prob"]) for i, t in enumerate(targets)]


def _random(sampler, generation: int, targets: list, c: dict, parents: Callable[[], dict]) -> list:
    n = min(len(targets), int(c["random_samples"]) - generation * len(targets))
    return [sampler.fresh(targets[i]) for i in range(n)]


SEARCH_ALGORITHMS: Registry[SearchAlgorithm] = Registry("search algorithm")
SEARCH_ALGORITHMS.add("evolution", SearchAlgorithm(lambda c, population: int(c["generations"]), _evolution,
                                                   "generations"),
                      "SPOS-style: top-k parents of the history per target, crossover and mutation")
SEARCH_ALGORITHMS.add("random", SearchAlgorithm(lambda c, population: -(-int(c["random_samples"]) // population),
                                                _random, "random_samples"),
                      "random_samples distinct constrained draws, scored population at a time")


# ------------------------------------------------------------------ selection rules
def tied_with_best(records: Sequence, alpha: float) -> list:
    """The records, best first, that a paired one-sided t-test across their per-sample scores
    cannot tell from ``records[0]`` (the best by mean score) at level ``alpha``: H0 "as good
    as the best" is kept when p >= alpha. A record without per-sample scores, or with other
    sources, ties with none."""
    from scipy import stats

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


@dataclass(frozen=True)
class Selection:
    """``choose(records best first, alpha)``: the chosen record first; ``describe(alpha)``: the
    rule in words."""

    choose: Callable[[list, float], list]
    describe: Callable[[float], str]
    paired: bool = False


def _largest_tied(records: list, alpha: float) -> list:
    pick = max(tied_with_best(records, alpha), key=lambda r: (r.madds, r.score))
    return [pick, *(r for r in records if r is not pick)]


SELECTIONS: Registry[Selection] = Registry("selection rule")
DEFAULT_SELECTION = "best"  # what a search chose before search.select existed
SELECTIONS.add(DEFAULT_SELECTION, Selection(lambda records, alpha: records, lambda alpha: "best"),
               "the top mean score")
SELECTIONS.add("largest_tied", Selection(_largest_tied, lambda alpha: f"largest tied (alpha {alpha:g})", paired=True),
               "the most MAdds among the records a paired t-test cannot tell from the best (tie_alpha)")
