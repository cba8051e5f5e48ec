"""Few-shot search: score every architecture with the sub-supernet of its side of a split.

A few-shot pair is two runs trained with ``supernet.split: "E:off"`` and ``"E:on"``
(usually both from one parent by ``supernet.init``, docs/usage.md). :class:`FewShotScorer`
holds one :class:`stnas.proxy.scorer.Proxy` per child and routes each architecture to the child
whose side of branch edge E it lies on, so a search scores every candidate with weights that
were trained on architectures like it (few-shot NAS, Zhao et al., ICML 2021).

Scores of the two children are compared directly: both are evaluated on the same search-val
images with the same proxy settings, which :func:`check_children` requires before any weights
are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from stnas.core.errors import ConfigError
from stnas.pipeline.config import load_run_config
from stnas.proxy.score import Score
from stnas.space.arch import Arch
from stnas.space.catalog import run_space
from stnas.space.sampling import parse_split


def side(arch: Arch, edge: int) -> bool:
    """True when ``arch`` uses branch edge ``edge`` (the ``E:on`` child's side)."""
    return arch.branches[edge] >= 0


def check_children(runs: Sequence[str | Path]) -> tuple[int, dict[bool, Path]]:
    """(edge, {False: off run, True: on run}) of a few-shot pair, or ConfigError naming what
    is wrong: not two runs, a run without ``supernet.split``, splits of different edges or
    of the same side, or children of different spaces, seeds or data."""
    runs = [Path(r) for r in runs]
    if len(runs) != 2:
        raise ConfigError(f"a few-shot search takes the two children of one split (E:off and E:on), "
                          f"got {len(runs)} run directories")
    edges, sides, cfgs, spaces = set(), {}, [], []
    for run in runs:
        cfg, space = load_run_config(run), run_space(run)
        split = cfg["supernet"].get("split")
        if split is None:
            raise ConfigError(f"{run} was not trained with supernet.split: a few-shot search takes two "
                              f"children trained with supernet.split=E:off and E:on")
        edge, on = parse_split(split, len(space.branch_edges))
        if on in sides:
            raise ConfigError(f"{sides[on]} and {run} were both trained on side E:{'on' if on else 'off'}: "
                              f"a few-shot search needs one child of each side")
        edges.add(edge)
        sides[on] = run
        cfgs.append(cfg)
        spaces.append(space.fingerprint)
    if len(edges) > 1:
        raise ConfigError(f"{runs[0]} and {runs[1]} split different branch edges ({sorted(edges)}): "
                          f"a few-shot pair splits one edge")
    for what, a, b in (("search space", *spaces), ("seed", cfgs[0]["seed"], cfgs[1]["seed"]),
                       ("data settings", cfgs[0]["data"], cfgs[1]["data"])):
        if a != b:
            raise ConfigError(f"{runs[0]} and {runs[1]} differ in their {what}: the children of a few-shot "
                              f"pair must be scored on the same search-val images")
    return edges.pop(), sides


class FewShotScorer:
    """The proxy of a few-shot pair: ``score`` routes each architecture to its side's child.

    Args:
        children: {False: the E:off child's Proxy, True: the E:on child's}.
        edge: the split branch edge E.

    Raises:
        ConfigError: the children's proxies differ in mode, metric, settings or space.
    """

    def __init__(self, children: dict[bool, object], edge: int):
        off, on = children[False], children[True]
        for what in ("mode", "metric", "settings"):
            if getattr(off, what) != getattr(on, what):
                raise ConfigError(f"the few-shot children {off.run_dir} and {on.run_dir} differ in proxy {what} "
                                  f"({getattr(off, what)} vs {getattr(on, what)}): their scores would not compare")
        self.children, self.edge = children, edge
        self.space, self.mode, self.metric = off.space, off.mode, off.metric
        self.settings = {**off.settings, "few_shot_edge": edge,
                         "children": {"off": str(off.run_dir), "on": str(on.run_dir)}}

    def score(self, archs, mode: str | None = None, samples: int | None = None) -> list[Score]:
        """Scores ``archs`` in order, each by the child of its side (``Proxy.score``'s
        arguments). Collective under torchrun, as ``Proxy.score``: every rank routes the same
        list the same way."""
        archs = [self.space.arch(a, " of the few-shot pair") for a in archs]
        out: list[Score | None] = [None] * len(archs)
        for on, proxy in self.children.items():
            idx = [i for i, a in enumerate(archs) if side(a, self.edge) == on]
            if idx:
                for i, s in zip(idx, proxy.score([archs[i] for i in idx], mode=mode, samples=samples)):
                    out[i] = s
        return out
