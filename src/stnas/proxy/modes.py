"""The proxy's closed choices: its modes (which weights an architecture is scored under) and its
metrics (what of an evaluation is its score), one registry entry each (design.md section 4).

A mode's ``sources(proxy, samples)`` lists the weight sources it averages over, each a
:class:`Source`: a name (the key of the score cache), a loader of the state dict and what
identifies the weights (a file's or the pool entries' SHA-256). ``proxy`` is a
:class:`stnas.proxy.scorer.Proxy`; the functions here call its ``final_weights``,
``average_weights``, ``num_samples``, ``pool`` and ``run`` and import nothing heavy, so that the
config check and the CLI list the names without torch.

A metric maps an evaluation's (top-1, mean loss) to a score, higher better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stnas.core.fileio import sha256_file
from stnas.core.registry import Registry


@dataclass(frozen=True)
class Source:
    """A weight source: ``name`` keys the score cache, ``load()`` gives the state dict,
    ``ident()`` what identifies the weights."""

    name: str
    load: Callable[[], Any]
    ident: Callable[[], Any]


@dataclass(frozen=True)
class ProxyMode:
    """``sources(proxy, samples)``: its weight sources (``samples``: the first that many pool
    samples in place of the configured number). ``pool``: it reads the parameter-sample pool
    (else the final supernet weights). ``per_sample``: one score per pool sample, so that a
    search can screen on one sample and pair the samples in a test."""

    sources: Callable[[Any, int | None], list[Source]]
    pool: bool
    per_sample: bool = False


def _single(proxy, samples: int | None) -> list[Source]:
    return [Source("final", proxy.final_weights, lambda: sha256_file(proxy.run.supernet))]


def _stabilized(proxy, samples: int | None) -> list[Source]:
    def ident(i: int):
        return lambda: [proxy.pool.entries[i]["step"], proxy.pool.entries[i]["sha256"]]

    return [Source(f"pool:{i}", lambda i=i: proxy.pool.load(i), ident(i))
            for i in range(samples or proxy.num_samples())]


def _averaged(proxy, samples: int | None) -> list[Source]:
    return [Source("avg", proxy.average_weights,
                   lambda: [e["sha256"] for e in proxy.pool.entries[:proxy.num_samples()]])]


PROXY_MODES: Registry[ProxyMode] = Registry("proxy mode")
PROXY_MODES.add("single", ProxyMode(_single, pool=False),
                "the final shared weights (the SPOS baseline)")
PROXY_MODES.add("stabilized", ProxyMode(_stabilized, pool=True, per_sample=True),
                "the mean over the SGLD pool's samples, BN recalibrated under each (ST-NAS)")
PROXY_MODES.add("averaged", ProxyMode(_averaged, pool=True),
                "the pool's samples averaged element-wise, one evaluation")

@dataclass(frozen=True)
class ProxyMetric:
    """A score from an evaluation's (top-1, loss), higher is better; ``text`` names it on plots,
    ``unit`` says in the report what a number of it means."""

    score: Callable[[float, float], float]
    text: str
    unit: str

    def __call__(self, top1: float, loss: float) -> float:
        return self.score(top1, loss)


PROXY_METRICS: Registry[ProxyMetric] = Registry("proxy metric")
PROXY_METRICS.add("top1", ProxyMetric(lambda top1, loss: top1, "top-1 on search-val",
                                      "the fraction of search-val images classified correctly (0 to 1; higher is "
                                      "better)"),
                  "top-1 accuracy on search-val (the paper's)")
PROXY_METRICS.add("loss", ProxyMetric(lambda top1, loss: -loss, "minus the cross-entropy on search-val",
                                      "minus the mean cross-entropy on search-val, in nats (0 is perfect; higher is "
                                      "better)"),
                  "minus the mean cross-entropy on search-val (continuous)")


def per_sample_modes() -> list[str]:
    """The modes that score per pool sample (what search.screen and largest_tied need)."""
    return [m for m in PROXY_MODES if PROXY_MODES.get(m).per_sample]
