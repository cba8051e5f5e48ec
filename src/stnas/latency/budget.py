"""A latency budget kept on measurement: the predictor's calibrated margin and the measured
fallback over a search's candidates (no torch here: the measuring function is injected).

Margin (``latency.margin``: ``auto``, or a fraction; 0 is off). ``auto`` is derived from the
whole networks a table's overhead was fitted on (``overhead.networks``), leave-one-out: the
prediction p_i of network i comes from the overhead refitted without it
(:func:`stnas.latency.table.fit_overhead`), and r_i = measured_i / p_i. A network predicted at
B (1 - m) measures within B when r <= 1 / (1 - m), so

    m = 1 - 1 / quantile(r, MARGIN_QUANTILE),   clipped to [0, MAX_MARGIN],

keeps a network predicted on the line within B in a share MARGIN_QUANTILE of the held-out
cases. A table with fewer than MIN_NETWORKS networks gets FALLBACK_MARGIN. A search keeps
the predicted latency of every candidate <= B (1 - m) (:func:`searched_limit`).

Within on measurement: a measurement (``measured_ms``, the median over its timed calls, and
``measured_iqr_ms``, their interquartile range: ``stnas.pipeline.latency.model_latency``) counts
as within B when ``median <= B (1 + noise)``, noise = IQR / median (the timer's own spread on
that network), at most MAX_NOISE.

Fallback (:func:`first_within`): the search's candidates, best first, are measured in turn
until one is within its budget, at most ``limit`` of them; else LatencyBudgetError (one line)
naming the budget and the best measured latency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from stnas.core.errors import ConfigError, LatencyBudgetError
from stnas.latency.table import fit_overhead

MARGIN_QUANTILE = 0.9  # the share of held-out networks a prediction on the line must cover
MAX_MARGIN = 0.5  # a larger derived margin says the table is poor: clipped (and said)
MIN_NETWORKS = 3  # leave-one-out needs at least this many whole networks
FALLBACK_MARGIN = 0.1  # with fewer: the predictor's documented +-10%
MAX_NOISE = 0.05  # the most a measurement's own spread may excuse
AUTO = "auto"
NOISE_RULE = f"within: measured median <= budget x (1 + IQR/median of its timed calls, at most {MAX_NOISE:.0%})"


def loo_ratios(networks: Sequence[dict]) -> np.ndarray:
    """measured / predicted of each network, predicted by the overhead fitted on the others."""
    y = np.array([float(n["measured_ms"]) for n in networks])
    sums = np.array([float(n["modules_ms"]) for n in networks])
    counts = np.array([float(n["modules"]) for n in networks])
    out = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        const, per, scale = fit_overhead(y[keep], sums[keep], counts[keep])
        predicted = const + per * counts[i] + scale * sums[i]
        out.append(y[i] / predicted if predicted > 0 else np.inf)
    return np.array(out)


def derive_margin(table: dict) -> dict:
    """The auto margin of a table (module docstring): {margin, source, method, networks, ...}."""
    networks = table["overhead"].get("networks") or []
    n = len(networks)
    if n < MIN_NETWORKS:
        return {"margin": FALLBACK_MARGIN, "source": AUTO, "networks": n,
                "method": f"{n} fitted network(s) in the table, fewer than {MIN_NETWORKS}: the predictor's "
                          f"documented ±{FALLBACK_MARGIN:.0%}"}
    ratios = loo_ratios(networks)
    q = float(np.quantile(ratios, MARGIN_QUANTILE)) if np.all(np.isfinite(ratios)) else np.inf
    raw = 1.0 - 1.0 / q if q > 0 else 0.0
    margin = float(min(max(raw, 0.0), MAX_MARGIN))
    clipped = f", clipped from {raw:.1%}" if margin != max(raw, 0.0) else ""
    return {"margin": margin, "source": AUTO, "networks": n, "quantile": MARGIN_QUANTILE, "ratio": q,
            "method": f"1 - 1/q{round(MARGIN_QUANTILE * 100)} of measured/predicted over the table's {n} fitted "
                      f"networks, each predicted by the overhead refitted without it (q = {q:.3f}){clipped}"}


def check_margin(value, where: str = "latency.margin") -> float | str:
    """``auto`` or a fraction in [0, MAX_MARGIN]; ConfigError (one line) otherwise."""
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_MARGIN:
        raise ConfigError(f"{where} must be {AUTO!r} or a fraction from 0 (off) to {MAX_MARGIN}, got {value!r}")
    return float(value)


def resolve_margin(setting, table: dict) -> dict:
    """The margin a search uses: derived from ``table`` (``auto``) or the configured fraction."""
    setting = check_margin(setting)
    if setting == AUTO:
        return derive_margin(table)
    return {"margin": setting, "source": "config",
            "method": "off (latency.margin=0)" if setting == 0 else f"latency.margin={setting:g}"}


def searched_limit(budget_ms: float, margin: float) -> float:
    """The predicted latency a search allows under ``budget_ms`` with ``margin``."""
    return budget_ms * (1.0 - margin)


def noise(measured: dict) -> float:
    """The relative spread a measurement may excuse: its IQR / median, at most MAX_NOISE."""
    med = float(measured["measured_ms"])
    return min(float(measured["measured_iqr_ms"]) / med, MAX_NOISE) if med > 0 else 0.0


def is_within(measured: dict, budget_ms: float) -> bool:
    return float(measured["measured_ms"]) <= budget_ms * (1.0 + noise(measured))


def first_within(candidates: Sequence[str], budget_ms: float, measure: Callable[[str], dict], limit: int,
                 what: str = "latency budget") -> tuple[int, list[dict]]:
    """Measures ``candidates`` (names, best first) in turn until one is within ``budget_ms``;
    returns (its index, the measurements so far). At most ``limit`` are measured.

    Raises:
        LatencyBudgetError: none of them is within (one line: the budget, the best measured
            latency, what to do).
    """
    tried = []
    for i, name in enumerate(candidates[:limit]):
        m = measure(name)
        tried.append(m)
        if is_within(m, budget_ms):
            return i, tried
    if not tried:
        raise LatencyBudgetError(f"{what} {budget_ms:.3f} ms: the search found no candidate whose prediction "
                                 f"fits; raise the budget or lower latency.margin")
    best = min(range(len(tried)), key=lambda i: tried[i]["measured_ms"])
    raise LatencyBudgetError(
        f"{what} {budget_ms:.3f} ms: none of the {len(tried)} best candidates measures within it (best "
        f"{tried[best]['measured_ms']:.3f} ms, {candidates[best]}); raise the budget, rebuild the latency table "
        f"(`stnas latency build`) or raise latency.max_measured")
