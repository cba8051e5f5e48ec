"""Drawing architectures from a search space: uniform and per-step samples, samples within
cost limits (rejection, then repair), mutation and crossover.

:class:`Sampling` is a base of :class:`stnas.space.searchspace.SearchSpace` and reads what the space
defines: ``stem_edges`` and ``branch_edges`` (each with its ``allowed`` op indices), the
cost tables ``stem_table[k, op, (MAdds, params)]`` and ``branch_table`` (op -1: off), the
fixed costs, ``madds``/``params``/``madds_range``/``extreme`` and ``name``. :func:`repair`
is the one cost-lowering walk, used for MAdds and params here and for predicted latency by
the search (``stnas.search.evolution``).
"""

from __future__ import annotations

import re
import reprlib
from typing import TYPE_CHECKING

import numpy as np

from stnas.core.choices import SAMPLING_MODES
from stnas.core.errors import ConfigError, SpaceError
from stnas.space.arch import Arch

if TYPE_CHECKING:
    from collections.abc import Sequence

Limit = tuple  # (stem_cost[k, op], branch_cost[k, op (-1 = off)], fixed cost, limit or None)


def repair(arch: Arch, rng: np.random.Generator, limits: Sequence[Limit],
           max_moves: int = 1000) -> Arch | None:
    """Random moves (an op swapped, a branch turned off) that lower a violated cost until every
    ``(stem_cost[k, o], branch_cost[k, o (-1 = off)], fixed, limit)`` holds; None if it cannot."""
    space = arch.space
    stem, br = list(arch.stem), list(arch.branches)

    def total(c):
        return c[2] + sum(c[0][k, o] for k, o in enumerate(stem)) + sum(c[1][k, o] for k, o in enumerate(br))

    for _ in range(max_moves):
        over = [c for c in limits if total(c) > c[3]]
        if not over:
            return Arch._trusted(space, tuple(stem), tuple(br))
        st, bt = over[0][0], over[0][1]
        moves = [(0, k, o) for k, e in enumerate(space.stem_edges) for o in e.allowed if st[k, o] < st[k, stem[k]]]
        moves += [(1, k, o) for k, b in enumerate(space.branch_edges) for o in (-1, *b.allowed)
                  if bt[k, o] < bt[k, br[k]]]
        if not moves:
            return None
        kind, k, o = moves[rng.integers(len(moves))]
        (stem if kind == 0 else br)[k] = o
    return None


class Sampling:
    """The sampling methods of a search space (see the module's docstring for what they read)."""

    def cost_limits(self, max_madds: int | None = None, max_params: int | None = None) -> list[Limit]:
        """:func:`repair`'s limits for MAdds and params (MAdds first), those that are set."""
        limits = [(self.stem_table[:, :, 0], self.branch_table[:, :, 0], self.fixed_madds, max_madds),
                  (self.stem_table[:, :, 1], self.branch_table[:, :, 1], self.fixed_params, max_params)]
        return [c for c in limits if c[3] is not None]

    def sample(self, rng: np.random.Generator, mode: str = "topology") -> Arch:
        """A uniformly random architecture.

        ``mode="topology"``: each branch edge is on with probability 1/2 (every
        topology equally likely), then every op uniformly. ``mode="architecture"``:
        every architecture of the space equally likely (a branch edge with m ops is
        off with probability 1/(m+1)). ``mode="density"`` (our addition): a density p is
        drawn uniformly from [0, 1] per architecture and each branch edge is on with
        probability p, so the number of branches is uniform over 0..E instead of
        binomial around E/2: sparse and dense topologies are trained equally often.
        ``mode="fair"`` and ``"sandwich"`` need a step (``sample_at``); a single draw
        without one is the same as ``topology``.
        """
        if mode not in SAMPLING_MODES:
            raise SpaceError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
        stem = tuple(e.allowed[rng.integers(len(e.allowed))] for e in self.stem_edges)
        branches = []
        density = rng.random() if mode == "density" else 0.5  # fair/sandwich without a step: topology
        for b in self.branch_edges:
            if mode != "architecture":
                on = rng.random() < density
                branches.append(b.allowed[rng.integers(len(b.allowed))] if on else -1)
            else:
                k = rng.integers(len(b.allowed) + 1)
                branches.append(b.allowed[k - 1] if k > 0 else -1)
        return Arch._trusted(self, stem, tuple(branches))

    def sample_at(self, seed: int, step: int, mode: str = "topology") -> Arch:
        """The architecture for training step ``step``: a pure function of (seed, step),
        so that every process of a distributed run draws the same one.

        ``mode="fair"`` (strict fairness, after FairNAS, over consecutive steps instead of
        one accumulated update): a stem edge with k ops uses each exactly once in every
        aligned block of k steps; a branch edge with k ops is off in k and on with each op
        once in every block of 2k, so its marginals are ``topology``'s. Each edge's order
        within a block is a random permutation drawn from (seed, block, edge).

        ``mode="sandwich"`` (after BigNAS's sandwich rule, over consecutive steps, without
        in-place distillation): of every 4 steps, the first trains the largest network, the
        second the smallest (``extreme``), the other two ``topology`` draws."""
        if mode == "sandwich" and step % 4 < 2:
            return self.extreme(largest=step % 4 == 0)
        if mode != "fair":
            return self.sample(np.random.default_rng([seed, step, 0x57]), "topology" if mode == "sandwich" else mode)

        def fair(e: int, options: tuple[int, ...]) -> int:
            block, pos = divmod(step, len(options))
            order = np.random.default_rng([seed, block, 0xFA, e]).permutation(len(options))
            return options[order[pos]]

        stem = tuple(fair(i, e.allowed) for i, e in enumerate(self.stem_edges))
        n = len(self.stem_edges)
        branches = tuple(fair(n + j, (-1,) * len(b.allowed) + tuple(b.allowed))
                         for j, b in enumerate(self.branch_edges))
        return Arch._trusted(self, stem, branches)

    def sample_constrained(self, rng: np.random.Generator, max_madds: int | None = None,
                           min_madds: int | None = None, max_params: int | None = None,
                           mode: str = "topology", tries: int = 2_000) -> Arch:
        """A random architecture that meets the constraints.

        Rejection sampling first (uniform over the feasible set, in ``mode``'s sense). A
        budget in the far tail of the cost distribution (330M in the ``paper`` space, whose
        random architectures have a median of about 630M) is seldom hit by chance: after
        ``tries`` draws, a fresh draw is *repaired* by random cost-lowering moves (a branch
        turned off, an op swapped for a cheaper one) until it fits. Repaired samples are
        feasible but not uniform.
        """
        lo, hi = self.madds_range()
        if max_madds is not None and max_madds < lo:
            raise SpaceError(f"no architecture of space {self.name!r} has MAdds <= {max_madds:,} "
                             f"(the smallest has {lo:,})")
        if min_madds is not None and min_madds > hi:
            raise SpaceError(f"no architecture of space {self.name!r} has MAdds >= {min_madds:,} "
                             f"(the largest has {hi:,})")
        for _ in range(tries):
            a = self.sample(rng, mode)
            if self.satisfies(a, max_madds, min_madds, max_params):
                return a
        for _ in range(max(1, tries // 10)):
            a = repair(self.sample(rng, mode), rng, self.cost_limits(max_madds, max_params))
            if a is not None and self.satisfies(a, max_madds, min_madds, max_params):
                return a
        raise SpaceError(f"found no architecture of space {self.name!r} meeting the constraints "
                         f"(MAdds {min_madds or 0:,}..{max_madds or hi:,}, params <= {max_params or 'any'})")

    def satisfies(self, arch: Arch, max_madds=None, min_madds=None, max_params=None) -> bool:
        m = self.madds(arch)
        return ((max_madds is None or m <= max_madds) and (min_madds is None or m >= min_madds)
                and (max_params is None or self.params(arch) <= max_params))

    def mutate(self, arch: Arch, rng: np.random.Generator, prob: float = 0.1) -> Arch:
        """Each stem edge (op) and branch edge (off or op) is redrawn with probability ``prob``."""
        stem = list(arch.stem)
        for k, e in enumerate(self.stem_edges):
            if rng.random() < prob:
                stem[k] = e.allowed[rng.integers(len(e.allowed))]
        branches = list(arch.branches)
        for k, b in enumerate(self.branch_edges):
            if rng.random() < prob:
                choice = rng.integers(len(b.allowed) + 1)
                branches[k] = b.allowed[choice - 1] if choice > 0 else -1
        return Arch._trusted(self, tuple(stem), tuple(branches))

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Uniform crossover: every edge's choice comes from either parent."""
        ms = rng.random(self.num_edges) < 0.5
        mb = rng.random(len(self.branch_edges)) < 0.5
        stem = tuple(x if m else y for x, y, m in zip(a.stem, b.stem, ms))
        branches = tuple(x if m else y for x, y, m in zip(a.branches, b.branches, mb))
        return Arch._trusted(self, stem, branches)


def parse_split(text: str, edges: int | None = None) -> tuple[int, bool]:
    """``"E:off"`` / ``"E:on"`` -> (branch edge E, on); with ``edges``, E must be below it."""
    m = re.fullmatch(r"\s*(\d{1,4})\s*:\s*(on|off)\s*", str(text))
    if not m:
        raise ConfigError(f"supernet.split must be E:on or E:off (E a branch-edge index), got {reprlib.repr(text)}")
    edge = int(m.group(1))
    if edges is not None and edge >= edges:
        raise ConfigError(f"supernet.split {text!r}: the space has {edges} branch edges (0 to {edges - 1})")
    return edge, m.group(2) == "on"
