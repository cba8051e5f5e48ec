"""The score of one architecture: what the proxy returns and what a search scorer must return."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Score:
    """The proxy's verdict on one architecture.

    Attributes:
        arch: the architecture string.
        score: the metric's mean over the weight sources: top-1 in [0, 1], or minus the loss.
        std: the metric's sample std across pool samples (stabilized); 0 otherwise.
        loss: mean cross-entropy on search-val (None: the scorer does not say).
        per_sample: the metric under each weight source; a paired test over them decides
            ``search.select: largest_tied``.
        top1: mean top-1 on search-val (None: the scorer does not say).
    """

    arch: str
    score: float
    std: float
    loss: float | None = None
    per_sample: list[float] = field(default_factory=list)
    top1: float | None = None
