"""Few-shot search: score every architecture with the sub-supernet of its side of a split.

A few-shot pair is two runs trained with ``supernet.split: "E:off"`` and ``"E:on"``
(usually both from one parent by ``supernet.init``, docs/usage.md). :class:`FewShotScorer`
holds one :class:`stnas.proxy.scorer.Proxy` per child and routes each architecture to the child
whose side of branch edge E it lies on, so a search scores every candidate with weights that
were trained on architectures like it (few-shot NAS, Zhao et al., ICML 2021).

Scores of the two children are compared directly: both are evaluated on the same search-val
images with the same proxy settings, which ``stnas.pipeline.search.check_children`` requires
of the two runs' configs before any weights are loaded.
"""

from __future__ import annotations

from stnas.core.errors import ConfigError
from stnas.proxy.score import Score
from stnas.space.arch import Arch


def side(arch: Arch, edge: int) -> bool:
    """True when ``arch`` uses branch edge ``edge`` (the ``E:on`` child's side)."""
    return arch.branches[edge] >= 0


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
