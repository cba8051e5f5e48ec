"""Drawing architectures from a search space: uniform and per-step samples (the sampling
modes), samples within cost bounds (rejection, then repair), mutation and crossover.

:class:`Sampling` is a base of :class:`stnas.space.searchspace.SearchSpace` and reads what the space
defines: ``stem_edges`` and ``branch_edges`` (each with its ``allowed`` op indices), the cost
tables ``costs`` (:class:`stnas.space.cost.CostTable`), ``madds``/``params``/``madds_range``/
``extreme`` and ``name``. :func:`stnas.space.cost.repair` is the one cost-lowering walk.

Sampling modes (:data:`SAMPLING_MODES`, ``supernet.sampling``): one :class:`SamplingMode` entry
each, a draw from a generator and, for the modes that need the training step, a draw at
(seed, step).
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from stnas.core.errors import ConfigError, SpaceError
from stnas.core.registry import Registry
from stnas.space.arch import Arch
from stnas.space.cost import BUDGET_KINDS, Bound, repair

if TYPE_CHECKING:
    from collections.abc import Sequence


# ------------------------------------------------------------------ sampling modes
@dataclass(frozen=True)
class SamplingMode:
    """``draw(space, rng)``: one architecture; ``at_step(space, seed, step)``: the architecture of
    a training step, a pure function of (seed, step) (None: ``draw`` with a generator seeded by
    (seed, step))."""

    draw: Callable[[Sampling, np.random.Generator], Arch]
    at_step: Callable[[Sampling, int, int], Arch] | None = None


SAMPLING_MODES: Registry[SamplingMode] = Registry("sampling mode")


def _stem(space: Sampling, rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(e.allowed[rng.integers(len(e.allowed))] for e in space.stem_edges)


def _coin(space: Sampling, rng: np.random.Generator, density: float | None = None) -> Arch:
    """Every stem op uniformly; each branch edge on with probability ``density`` (None: drawn
    uniformly from [0, 1] per architecture, after the stem), then its op uniformly."""
    stem = _stem(space, rng)
    p = rng.random() if density is None else density
    branches = tuple(b.allowed[rng.integers(len(b.allowed))] if rng.random() < p else -1 for b in space.branch_edges)
    return Arch._trusted(space, stem, branches)


def _uniform(space: Sampling, rng: np.random.Generator) -> Arch:
    stem = _stem(space, rng)
    branches = []
    for b in space.branch_edges:
        k = rng.integers(len(b.allowed) + 1)
        branches.append(b.allowed[k - 1] if k > 0 else -1)
    return Arch._trusted(space, stem, tuple(branches))


def _topology(space: Sampling, rng: np.random.Generator) -> Arch:
    return _coin(space, rng, 0.5)


def _seeded(space: Sampling, seed: int, step: int, draw=_topology) -> Arch:
    return draw(space, np.random.default_rng([seed, step, 0x57]))


def _fair(space: Sampling, seed: int, step: int) -> Arch:
    def fair(e: int, options: tuple[int, ...]) -> int:
        block, pos = divmod(step, len(options))
        order = np.random.default_rng([seed, block, 0xFA, e]).permutation(len(options))
        return options[order[pos]]

    stem = tuple(fair(i, e.allowed) for i, e in enumerate(space.stem_edges))
    n = len(space.stem_edges)
    branches = tuple(fair(n + j, (-1,) * len(b.allowed) + tuple(b.allowed)) for j, b in enumerate(space.branch_edges))
    return Arch._trusted(space, stem, branches)


def _sandwich(space: Sampling, seed: int, step: int) -> Arch:
    return space.extreme(largest=step % 4 == 0) if step % 4 < 2 else _seeded(space, seed, step)


SAMPLING_MODES.add("topology", SamplingMode(_topology),
                   "each branch edge on with probability 1/2 (every topology equally likely), every op uniformly")
SAMPLING_MODES.add("architecture", SamplingMode(_uniform),
                   "every architecture equally likely (a branch edge with m ops is off with probability 1/(m+1))")
SAMPLING_MODES.add("density", SamplingMode(lambda space, rng: _coin(space, rng)),
                   "a branch density p ~ U[0, 1] per architecture (sparse and dense topologies equally often)")
SAMPLING_MODES.add("fair", SamplingMode(_topology, _fair),
                   "strict fairness over consecutive steps: each op of an edge once per block of steps")
SAMPLING_MODES.add("sandwich", SamplingMode(_topology, _sandwich),
                   "of every 4 steps: the largest network, the smallest, then two topology draws")


class Sampling:
    """The sampling methods of a search space (see the module's docstring for what they read)."""

    def bounds(self, max_madds: int | None = None, min_madds: int | None = None,
               max_params: int | None = None) -> list[Bound]:
        """The bounds of MAdds and params limits (MAdds first), those that are set."""
        out = [Bound(self.costs["madds"], min_madds, max_madds), Bound(self.costs["params"], None, max_params)]
        return [b for b in out if b.low is not None or b.high is not None]

    def sample(self, rng: np.random.Generator, mode: str = "topology") -> Arch:
        """A random architecture drawn as sampling mode ``mode`` says (:data:`SAMPLING_MODES`);
        ``fair`` and ``sandwich`` need a step (``sample_at``): a single draw without one is
        ``topology``'s."""
        return SAMPLING_MODES.get(mode, "sampling mode").draw(self, rng)

    def sample_at(self, seed: int, step: int, mode: str = "topology") -> Arch:
        """The architecture for training step ``step``: a pure function of (seed, step),
        so that every process of a distributed run draws the same one (the mode's ``at_step``;
        :data:`SAMPLING_MODES` says what each does)."""
        m = SAMPLING_MODES.get(mode, "sampling mode")
        return m.at_step(self, seed, step) if m.at_step else _seeded(self, seed, step, m.draw)

    def sample_constrained(self, rng: np.random.Generator, max_madds: int | None = None,
                           min_madds: int | None = None, max_params: int | None = None,
                           mode: str = "topology", tries: int = 2_000) -> Arch:
        """A random architecture within MAdds and params limits (:meth:`sample_within`)."""
        return self.sample_within(rng, self.bounds(max_madds, min_madds, max_params), mode, tries)

    def sample_within(self, rng: np.random.Generator, bounds: Sequence[Bound], mode: str = "topology",
                      tries: int = 2_000) -> Arch:
        """A random architecture within every bound.

        Rejection sampling first (uniform over the feasible set, in ``mode``'s sense). A
        budget in the far tail of the cost distribution (330M in the ``paper`` space, whose
        random architectures have a median of about 630M) is seldom hit by chance: after
        ``tries`` draws, a fresh draw is *repaired* by random cost-lowering moves (a branch
        turned off, an op swapped for a cheaper one) until it fits. Repaired samples are
        feasible but not uniform.
        """
        for b in bounds:
            kind = BUDGET_KINDS.get(b.table.kind)
            if b.high is not None and b.high < (lo := b.table.min()):
                raise SpaceError(f"no architecture of space {self.name!r} has {kind.what} <= {kind.show(b.high)} "
                                 f"(the smallest has {kind.show(lo)})")
            if b.low is not None and b.low > (hi := b.table.max()):
                raise SpaceError(f"no architecture of space {self.name!r} has {kind.what} >= {kind.show(b.low)} "
                                 f"(the largest has {kind.show(hi)})")
        for _ in range(tries):
            a = self.sample(rng, mode)
            if all(b.holds(a) for b in bounds):
                return a
        for _ in range(max(1, tries // 10)):
            a = repair(self.sample(rng, mode), rng, bounds)
            if a is not None and all(b.holds(a) for b in bounds):
                return a
        raise SpaceError(f"found no architecture of space {self.name!r} meeting the constraints "
                         f"({', '.join(b.describe() for b in bounds) or 'none'})")

    def satisfies(self, arch: Arch, max_madds=None, min_madds=None, max_params=None) -> bool:
        return all(b.holds(arch) for b in self.bounds(max_madds, min_madds, max_params))

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
