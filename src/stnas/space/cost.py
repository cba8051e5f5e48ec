"""Budget kinds and their one cost type: MAdds, params and predicted latency are each an
additive cost per (edge, op) plus a constant, a :class:`CostTable`.

A table of a space holds ``stem[k, o]`` (stem edge ``k`` carrying op ``o``), ``branch[k, o]``
(branch edge ``k`` carrying op ``o``; its last column, ``o = -1``, is "off") and ``fixed`` (the
stem, the head and any per-network constant). An architecture costs::

    fixed + sum_k stem[k, stem_k] + sum_k branch[k, branch_k]

summed in that order, so a table gives the same number, bit for bit, wherever it is summed. Ops
an edge does not allow hold a cost no architecture reaches (never read).

The space provides the MAdds and params tables (``SearchSpace.costs``), a latency table's
predictor the latency one (``stnas.latency.table.Predictor.costs``). A :class:`Bound` is a window
``[low, high]`` on one table; the constrained sampler, :func:`repair` and the search
(``stnas.search``) see only tables and bounds.

Budget kinds (:data:`BUDGET_KINDS`, one :class:`BudgetKind` entry each) say where a kind's table
comes from and how its limits are read from the ``search`` config section, written in labels
and JSON, and kept on a search record. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from stnas.core.errors import ConfigError
from stnas.core.registry import Registry
from stnas.core.units import budget_label, latency_label, parse_count, parse_latency

if TYPE_CHECKING:
    from stnas.space.arch import Arch


class CostTable:
    """An additive per-edge cost over a space (module docstring).

    Args:
        kind: the budget kind it prices (a :data:`BUDGET_KINDS` name).
        stem: ``[stem edges, ops]`` costs.
        branch: ``[branch edges, branch ops + 1]`` costs, the last column "off".
        fixed: the constant part.
        stem_allowed, branch_allowed: the op indices each edge allows (``Edge.allowed``).
    """

    def __init__(self, kind: str, stem: np.ndarray, branch: np.ndarray, fixed,
                 stem_allowed: Sequence[tuple[int, ...]], branch_allowed: Sequence[tuple[int, ...]]):
        self.kind, self.stem, self.branch, self.fixed = kind, stem, branch, fixed
        self.stem_allowed, self.branch_allowed = tuple(stem_allowed), tuple(branch_allowed)
        # plain lists: the fast scalar path
        self.stem_list, self.branch_list = stem.tolist(), branch.tolist()

    def total(self, stem: Sequence[int], branches: Sequence[int]):
        """The cost of the choices ``stem`` (op per stem edge) and ``branches`` (-1: off)."""
        return (self.fixed + sum(map(list.__getitem__, self.stem_list, stem))
                + sum(map(list.__getitem__, self.branch_list, branches)))

    def __call__(self, arch: Arch):
        return self.total(arch.stem, arch.branches)

    def batch(self, stem: np.ndarray, branches: np.ndarray) -> np.ndarray:
        """Costs of N architectures given as int arrays ``stem[N, edges]``, ``branches[N, branch edges]``."""
        return (self.stem[np.arange(len(self.stem_list)), stem].sum(1)
                + self.branch[np.arange(len(self.branch_list)), branches].sum(1)) + self.fixed

    def min(self):
        """The smallest cost of any architecture (every edge at its cheapest choice)."""
        return (self.fixed + self.stem.min(1).sum().item()
                + np.minimum(self.branch.min(1), 0).sum().item())

    def max(self):
        """The largest cost of any architecture (every edge at its costliest choice)."""
        stem = sum(max(self.stem_list[k][o] for o in allowed) for k, allowed in enumerate(self.stem_allowed))
        branch = sum(max(self.branch_list[k][o] for o in (-1, *allowed))
                     for k, allowed in enumerate(self.branch_allowed))
        return self.fixed + stem + branch

    def cheaper(self, stem: Sequence[int], branches: Sequence[int]) -> list[tuple[int, int, int]]:
        """The single-edge moves that lower this cost: ``(0, stem edge, op)`` and
        ``(1, branch edge, op or -1)``, stem edges first, each edge's choices in order."""
        st, bt = self.stem_list, self.branch_list
        moves = [(0, k, o) for k, allowed in enumerate(self.stem_allowed) for o in allowed if st[k][o] < st[k][stem[k]]]
        moves += [(1, k, o) for k, allowed in enumerate(self.branch_allowed) for o in (-1, *allowed)
                  if bt[k][o] < bt[k][branches[k]]]
        return moves

    def __repr__(self) -> str:
        return f"CostTable({self.kind!r}, {len(self.stem_list)} stem edges, {len(self.branch_list)} branch edges)"


@dataclass(frozen=True)
class Bound:
    """``low <= table(arch) <= high`` (None: no limit on that side)."""

    table: CostTable
    low: Any = None
    high: Any = None

    def admits(self, value) -> bool:
        return (value is not None and (self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    def holds(self, arch: Arch) -> bool:
        return self.admits(self.table(arch))

    def describe(self) -> str:
        """``MAdds 0..4,000,000``, ``params <= 50,000``: the window, for messages."""
        kind = BUDGET_KINDS.get(self.table.kind)
        if self.low is None or self.low == 0:
            return f"{kind.what} <= {'any' if self.high is None else kind.show(self.high)}"
        return f"{kind.what} {kind.show(self.low)}..{'any' if self.high is None else kind.show(self.high)}"


def repair(arch: Arch, rng: np.random.Generator, bounds: Sequence[Bound], max_moves: int = 1000) -> Arch | None:
    """Random moves (an op swapped, a branch turned off) that lower a violated cost until every
    bound's ``high`` holds; None if it cannot. Each move lowers the first violated table
    (``bounds`` order), drawn uniformly from :meth:`CostTable.cheaper`."""
    from stnas.space.arch import Arch

    limits = [b for b in bounds if b.high is not None]
    stem, br = list(arch.stem), list(arch.branches)
    for _ in range(max_moves):
        over = [b for b in limits if b.table.total(stem, br) > b.high]
        if not over:
            return Arch._trusted(arch.space, tuple(stem), tuple(br))
        moves = over[0].table.cheaper(stem, br)
        if not moves:
            return None
        kind, k, o = moves[rng.integers(len(moves))]
        (stem if kind == 0 else br)[k] = o
    return None


# ------------------------------------------------------------------ budget kinds
@dataclass(frozen=True)
class BudgetKind:
    """What the search needs to know about a kind of budget.

    Attributes:
        what: its name in messages (``MAdds``).
        show: a value in messages (``4,000,000``).
        label: a limit as a short exact label (``4M``, ``1.2ms``): folder names, target labels.
        record: the attribute of a search record (``stnas.search.history.Record``) holding an
            architecture's cost.
        table: ``(space, predictor or None) -> CostTable``.
        of_space: the space computes the table (the constrained sampler aims at its bounds);
            else a predictor supplies it, and the search checks and repairs draws against it.
        budgets_key: the ``search`` config key listing per-target limits (None: no targets).
        json_key: the field of a chosen record's target in ``best.json``.
        parse: a config value of ``budgets_key`` -> a limit.
        integer: limits are integers (a budget floor's fraction of one is rounded up).
        min_key, max_key: ``search`` config keys of a global floor / cap on every target.
        axis: a plot axis of the cost: its label and the unit values are divided by.
    """

    what: str
    show: Callable[[Any], str]
    label: Callable[[Any], str]
    record: str
    table: Callable[[Any, Any], CostTable]
    of_space: bool
    budgets_key: str | None = None
    json_key: str | None = None
    parse: Callable[[Any, str], Any] | None = None
    integer: bool = True
    min_key: str | None = None
    max_key: str | None = None
    axis: tuple[str, float] = ("", 1.0)


def _latency_table(space, predictor) -> CostTable:
    if predictor is None:
        raise ConfigError("search.latency_budgets needs a latency table (stnas latency build)")
    return predictor.costs


BUDGET_KINDS: Registry[BudgetKind] = Registry("budget kind")
BUDGET_KINDS.add("madds", BudgetKind(
    "MAdds", lambda v: f"{v:,}", budget_label, "madds", lambda space, _: space.costs["madds"], True,
    budgets_key="budgets", json_key="budget", parse=parse_count, min_key="min_madds", axis=("MAdds (M)", 1e6)),
    "multiply-accumulates of convolutions and linear layers (search.budgets, search.min_madds)")
BUDGET_KINDS.add("params", BudgetKind(
    "params", lambda v: f"{v:,}", budget_label, "params", lambda space, _: space.costs["params"], True,
    max_key="max_params", axis=("params (M)", 1e6)),
    "parameters (search.max_params)")
BUDGET_KINDS.add("latency", BudgetKind(
    "predicted latency", lambda v: f"{v:.3f} ms", latency_label, "latency_ms", _latency_table, False,
    budgets_key="latency_budgets", json_key="latency_budget_ms", parse=parse_latency, integer=False,
    axis=("predicted latency (ms)", 1.0)),
    "latency predicted from a lookup table of this device (search.latency_budgets; stnas latency build)")


def kind_of_record(field: str) -> BudgetKind:
    """The budget kind whose cost a search record keeps in ``field`` (``madds``, ``latency_ms``)."""
    return next(BUDGET_KINDS.get(n) for n in BUDGET_KINDS if BUDGET_KINDS.get(n).record == field)


def floor_of(kind: BudgetKind, limit, fraction: float, minimum=None):
    """The lower end of a target's window: ``fraction`` of its ``limit`` (rounded up for integer
    kinds), and at least ``minimum`` (a global floor); 0 when neither sets one."""
    low = 0 if limit is None else (math.ceil(fraction * limit) if kind.integer else fraction * limit)
    return max(minimum or 0, low)
