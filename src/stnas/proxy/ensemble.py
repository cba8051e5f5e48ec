"""A proxy over several supernets: every architecture scored by the mean of their scores.

Supernets of one recipe trained with different seeds rank architectures differently (issue
14 measured two trainings of one recipe at Kendall tau +0.22 and +0.72 on the same nine
networks). :class:`EnsembleScorer` holds one :class:`stnas.proxy.scorer.Proxy` per run and scores
each architecture by the mean of the members' scores, so the draw of any one supernet
weighs less. The members must score on the same data (train them with ``data.split_seed``
equal, e.g. ``--seed 1 data.split_seed=0``): same space, dataset, search-val images,
recalibration batches and proxy settings, checked before any weights are loaded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stnas.core.errors import ConfigError
from stnas.proxy.score import Score

# proxy settings that may differ between members: the training seed (the data's seed is
# ``split_seed``, compared below)
_FREE = ("seed", "split_seed")


def data_seed(settings: dict) -> int:
    """The seed of the data a proxy scores on (its split seed, else its seed)."""
    return settings.get("split_seed", settings["seed"])


class EnsembleScorer:
    """The proxy of an ensemble of runs: ``score`` is the members' mean.

    Args:
        members: two or more :class:`stnas.proxy.scorer.Proxy` objects of runs of one space.

    Raises:
        ConfigError: fewer than two members, or members that differ in space, proxy mode,
            metric, settings or data.
    """

    def __init__(self, members: Sequence):
        members = list(members)
        if len(members) < 2:
            raise ConfigError("an ensemble needs two or more runs")
        first = members[0]
        for m in members[1:]:
            for what in ("mode", "metric"):
                if getattr(m, what) != getattr(first, what):
                    raise ConfigError(f"ensemble runs {first.run_dir} and {m.run_dir} differ in proxy {what} "
                                      f"({getattr(first, what)} vs {getattr(m, what)})")
            a = {k: v for k, v in first.settings.items() if k not in _FREE}
            b = {k: v for k, v in m.settings.items() if k not in _FREE}
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            if data_seed(first.settings) != data_seed(m.settings):
                diff.append("data split (train them with the same data.split_seed)")
            if diff:
                raise ConfigError(f"ensemble runs {first.run_dir} and {m.run_dir} differ in "
                                  f"{', '.join(diff)}: their scores would not compare")
        self.members = members
        self.space, self.mode, self.metric = first.space, first.mode, first.metric
        self.settings = {**{k: v for k, v in first.settings.items() if k not in _FREE},
                         "data_seed": data_seed(first.settings),
                         "ensemble": [str(m.run_dir) for m in members]}

    def score(self, archs, mode: str | None = None, samples: int | None = None) -> list[Score]:
        """Scores ``archs`` in order (``Proxy.score``'s arguments): the mean of the members'
        scores, their std across members, and every member's per-sample values in turn.
        Collective under torchrun, as ``Proxy.score``."""
        per = [m.score(archs, mode=mode, samples=samples) for m in self.members]
        out = []
        for scores in zip(*per):
            vals = np.array([s.score for s in scores])
            loss = None if any(s.loss is None for s in scores) else float(np.mean([s.loss for s in scores]))
            top1 = None if any(s.top1 is None for s in scores) else float(np.mean([s.top1 for s in scores]))
            out.append(Score(arch=scores[0].arch, score=float(vals.mean()), std=float(vals.std(ddof=1)), loss=loss,
                             per_sample=[v for s in scores for v in s.per_sample], top1=top1))
        return out
