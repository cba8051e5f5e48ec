"""Search targets: what a candidate must meet, as bounds on cost tables (pipeline step 4).

The targeted budget kinds are those of ``stnas.space.cost.BUDGET_KINDS`` with a ``budgets_key``
in the ``search`` config section (``budgets``: MAdds, ``latency_budgets``: predicted latency). A
target has one limit per *slot*: the first targeted kind (MAdds, the paper's budget) always,
None meaning "any", and every other targeted kind that lists budgets. The targets are the
product of the slots' sorted limits (the first slot outermost).

A target's window, one :class:`~stnas.space.cost.Bound` per kind in registry order (the order
the repair walk lowers them in): ``[floor, limit]`` for a slot, the floor being
``search.budget_floor`` x the limit and at least the kind's global floor (``search.min_madds``),
and the global cap of a kind (``search.max_params``). A kind given a *margin* m (a predicted
kind, latency: :mod:`stnas.latency.budget`) is searched under ``limit x (1 - m)`` in place of
its limit (its floor taken from that). The search sees only these bounds.

A :class:`Target` keys a search's results: its ``label`` names folders and summaries (``4M``,
``4M+1.2ms``) and :meth:`Target.json` gives the target fields of a chosen record in
``best.json`` (``{"budget": 4000000}``; with two slots or more, every slot's field and
``"target": label``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from stnas.space.cost import BUDGET_KINDS, Bound, floor_of


@dataclass(frozen=True, order=True)
class Target:
    """One limit per slot kind (None: any)."""

    limits: tuple
    kinds: tuple[str, ...]

    def limit(self, kind: str) -> Any:
        """The limit of budget kind ``kind`` (None: any, or not a slot)."""
        return dict(zip(self.kinds, self.limits)).get(kind)

    @property
    def label(self) -> str:
        return "+".join(BUDGET_KINDS.get(k).label(v) for k, v in zip(self.kinds, self.limits) if v is not None)

    def json(self) -> dict:
        out = {BUDGET_KINDS.get(k).json_key: v for k, v in zip(self.kinds, self.limits)}
        return {**out, "target": self.label} if len(self.kinds) > 1 else out

    def __str__(self) -> str:
        return self.label


def target_limits(cfg_search: dict) -> dict[str, list]:
    """{targeted kind: its sorted distinct limits} from a ``search`` config section."""
    out = {}
    for name in BUDGET_KINDS:
        kind = BUDGET_KINDS.get(name)
        if kind.budgets_key:
            where = f"search.{kind.budgets_key}"
            out[name] = sorted({kind.parse(v, where) for v in cfg_search.get(kind.budgets_key) or []})
    return out


def build_targets(cfg_search: dict, space, predictor=None,
                  margins: dict[str, float] | None = None) -> dict[Target, tuple[Bound, ...]]:
    """The targets of a ``search`` section, in order, each with its window (module docstring);
    ``margins``: {budget kind: the share of its limits kept free}.

    Raises:
        ConfigError: a targeted kind's table is not available (latency budgets without a table).
    """
    limits = target_limits(cfg_search)
    slots = [name for i, name in enumerate(limits) if i == 0 or limits[name]]
    fraction = float(cfg_search.get("budget_floor") or 0.0)
    tables = {}
    for name in BUDGET_KINDS:
        kind = BUDGET_KINDS.get(name)
        if name in slots or any(key and cfg_search.get(key) is not None for key in (kind.min_key, kind.max_key)):
            tables[name] = kind.table(space, predictor)
    targets = {}
    for combo in itertools.product(*(limits[name] or [None] for name in slots)):
        chosen = dict(zip(slots, combo))
        bounds = []
        for name, table in tables.items():
            kind = BUDGET_KINDS.get(name)
            floor = cfg_search.get(kind.min_key) if kind.min_key else None
            cap = cfg_search.get(kind.max_key) if kind.max_key else None
            limit = chosen.get(name)
            if limit is not None and (margins or {}).get(name):
                limit = limit * (1.0 - margins[name])
            high = limit if cap is None else cap if limit is None else min(limit, cap)
            bounds.append(Bound(table, floor_of(kind, limit, fraction, floor), high))
        targets[Target(combo, tuple(slots))] = tuple(bounds)
    return targets
