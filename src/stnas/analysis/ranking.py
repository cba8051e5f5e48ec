"""How well does the proxy rank architectures? Fidelity and stability statistics, and the
one place that computes rank correlations (src/, experiments/ and benchmarks/ call these).

* Rank correlations (:func:`kendall`, :func:`spearman`, :func:`kendall_test`): Kendall τ-b
  and Spearman ρ from ``scipy.stats``. The NaN convention: a correlation is undefined when
  either list is constant (or shorter than 2) -- it ranks nothing -- and is then NaN
  (``undefined``), which the statistics below drop (undefined bootstrap resamples, pairs of a
  stability chain). ``undefined=0.0`` counts it as no association instead: the fidelity
  experiments (``experiments/fidelity.py`` and the scripts built on it) score that way.
* Fidelity (``rank_metrics``): Kendall τ and Spearman ρ between proxy scores and
  stand-alone accuracies, plus the top-k overlap (the share of the true top-k that the
  proxy's top-k contains). Each comes with a 95% percentile
  bootstrap interval: ``scipy.stats.bootstrap`` resamples the architectures (paired, the
  same resamples for all three statistics) ``n_boot`` times; resamples on which a statistic
  is undefined (e.g. all scores tied) are dropped before the percentiles are taken.
* Stability (``stability``): Kendall τ between the proxy rankings of a fixed architecture
  set at consecutive epoch checkpoints (``epochs/epoch_NNN.safetensors``) and between
  consecutive parameter samples of the pool, and how fast the stabilized (running-mean)
  ranking settles as samples are added (design.md section 4).

File formats read here::

    truth:  {"format": "stnas-truth", "version": 1,
             "results": [{"arch": "digits:0123.../.1..", "top1": 0.93, ...}, ...]}
            (or just the list); repeated architectures are averaged. A file people or
            scripts write: its checksum ("sha256", stnas.core.verified) is checked when present.
    archs:  a JSON list of architecture strings or JSON objects, a JSONL file of
            architecture JSON objects, or text with one architecture string per line
            (blank lines and lines starting with # are skipped).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from stnas.core.errors import ArchError, CheckpointError, ConfigError, StnasError
from stnas.core.limits import parse_json, read_text_bounded, shown
from stnas.core.verified import check_digest
from stnas.space.arch import Arch
from stnas.space.catalog import load_arch
from stnas.space.searchspace import SearchSpace

TRUTH_FORMAT = "stnas-truth"
TRUTH_VERSION = 1
MIN_ARCHS = 3


# ---------------------------------------------------------------------------- statistics
def _order(values: np.ndarray) -> np.ndarray:
    """Positions sorted by value, best first; ties broken by position (stable)."""
    return np.argsort(-values, kind="stable")


def top_k_overlap(proxy, truth, k: int) -> float:
    """Share of the true top-k (by ``truth``) found in the proxy's top-k (by ``proxy``)."""
    proxy, truth = np.asarray(proxy, float), np.asarray(truth, float)
    k = min(k, len(proxy))
    return len(set(_order(proxy)[:k]) & set(_order(truth)[:k])) / k


def _ranks_nothing(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0


def _correlation(test, a, b, undefined: float) -> tuple[float, float]:
    """(statistic, p-value) of a ``scipy.stats`` test; (``undefined``, NaN) where it is undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equal-length 1-d sequences, got shapes {a.shape} and {b.shape}")
    if _ranks_nothing(a, b):
        return undefined, math.nan
    res = test(a, b)
    stat = float(res.statistic)
    return (undefined, math.nan) if math.isnan(stat) else (stat, float(res.pvalue))


def kendall(a, b, undefined: float = math.nan) -> float:
    """Kendall τ-b between two score lists; ``undefined`` (NaN) when either ranks nothing."""
    return _correlation(stats.kendalltau, a, b, undefined)[0]


def spearman(a, b, undefined: float = math.nan) -> float:
    """Spearman ρ between two score lists; ``undefined`` (NaN) when either ranks nothing."""
    return _correlation(stats.spearmanr, a, b, undefined)[0]


def kendall_test(a, b) -> tuple[float, float]:
    """Kendall τ-b and its two-sided p-value (both NaN when either list ranks nothing)."""
    return _correlation(stats.kendalltau, a, b, math.nan)


def _stats(p: np.ndarray, t: np.ndarray, k: int) -> tuple[float, float, float]:
    return kendall(p, t), spearman(p, t), top_k_overlap(p, t, k)


def rank_metrics(proxy_scores, truth, top_k: int = 5, n_boot: int = 1000, seed: int = 0) -> dict:
    """Kendall τ, Spearman ρ and top-k overlap of proxy scores against true accuracies.

    Args:
        proxy_scores, truth: one number per architecture, in the same order.
        top_k: size of the top set compared (capped at the number of architectures).
        n_boot: bootstrap resamples for the 95% intervals (0: none).
        seed: seeds the resampling.

    Returns:
        ``{"n", "top_k", "kendall_tau", "spearman_rho", "top_k_overlap"}``; each statistic
        is ``{"value", "lo", "hi"}`` (lo/hi NaN when undefined).
    """
    p, t = np.asarray(proxy_scores, float), np.asarray(truth, float)
    if p.shape != t.shape or p.ndim != 1:
        raise ValueError(f"need two equal-length 1-d sequences, got shapes {p.shape} and {t.shape}")
    if len(p) < MIN_ARCHS:
        raise ConfigError(f"ranking needs at least {MIN_ARCHS} architectures, got {len(p)}")
    k = min(top_k, len(p))
    point = _stats(p, t, k)
    if n_boot:
        with warnings.catch_warnings():  # undefined resamples are dropped below, not warned about
            warnings.simplefilter("ignore")
            boot = stats.bootstrap((p, t), lambda a, b: np.array(_stats(a, b, k)), paired=True, vectorized=False,
                                   n_resamples=n_boot, method="percentile",
                                   random_state=np.random.default_rng(seed)).bootstrap_distribution
    else:
        boot = np.empty((3, 0))
    out = {"n": len(p), "top_k": k, "n_boot": n_boot}
    for j, name in enumerate(("kendall_tau", "spearman_rho", "top_k_overlap")):
        col = boot[j][~np.isnan(boot[j])]
        lo, hi = (np.percentile(col, [2.5, 97.5]) if len(col) else (math.nan, math.nan))
        out[name] = {"value": point[j], "lo": float(lo), "hi": float(hi)}
    return out


# ---------------------------------------------------------------------------- files
def _arch(entry, space: SearchSpace, where: str) -> Arch:
    if not isinstance(entry, (str, dict)):
        raise ArchError(f"{where}: expected an architecture string or JSON object, got {entry!r:.60}")
    try:
        return load_arch(json.dumps(entry) if isinstance(entry, dict) else entry, space)
    except StnasError as exc:
        raise ArchError(f"{where}: {exc}") from None


def load_truth(path, space: SearchSpace) -> dict[Arch, float]:
    """Stand-alone top-1 accuracies per architecture (see the module docstring).

    Raises:
        ConfigError: unreadable or malformed file, non-numeric accuracy, too few entries.
        ArchError: an architecture that does not parse in ``space``.
    """
    obj = parse_json(read_text_bounded(path, "truth file", ConfigError), f"truth file {shown(path)}", ConfigError)
    obj = check_digest(obj, path, "truth file", required=False)
    if isinstance(obj, dict):
        if obj.get("format") != TRUTH_FORMAT:
            raise ConfigError(f"truth file {path}: format is {obj.get('format')!r}, expected {TRUTH_FORMAT!r}")
        if obj.get("version") != TRUTH_VERSION:
            raise ConfigError(f"truth file {path}: version {obj.get('version')!r}, this stnas reads "
                              f"{TRUTH_VERSION}")
        obj = obj.get("results")
    if not isinstance(obj, list):
        raise ConfigError(f"truth file {path} must hold a 'results' list of {{arch, top1}} objects")
    acc: dict[Arch, list[float]] = {}
    for i, r in enumerate(obj):
        where = f"truth file {path}, result {i + 1}"
        if not isinstance(r, dict) or "arch" not in r or "top1" not in r:
            raise ConfigError(f"{where}: expected an object with 'arch' and 'top1', got {r!r:.80}")
        top1 = r["top1"]
        if isinstance(top1, bool) or not isinstance(top1, (int, float)) or not math.isfinite(top1):
            raise ConfigError(f"{where}: top1 must be a finite number, got {top1!r:.40}")
        acc.setdefault(_arch(r["arch"], space, where), []).append(float(top1))
    if len(acc) < MIN_ARCHS:
        raise ConfigError(f"truth file {path} has {len(acc)} architecture(s); ranking needs at least {MIN_ARCHS}")
    return {a: float(np.mean(v)) for a, v in acc.items()}


def load_arch_list(path, space: SearchSpace) -> list[Arch]:
    """Architectures from a JSON list, a JSONL file or one string per line.

    Raises:
        ConfigError: unreadable or malformed file, duplicates, fewer than 3 architectures.
        ArchError: an architecture that does not parse in ``space``.
    """
    text = read_text_bounded(path, "architecture list", ConfigError)
    lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip() and not s.lstrip().startswith("#")]
    if text.lstrip().startswith("["):
        items = parse_json(text, f"architecture list {shown(path)}", ConfigError)
        entries = [(f"{path}, item {i + 1}", e) for i, e in enumerate(items)]
    else:
        entries = []
        for n, s in lines:
            if s.lstrip().startswith("{"):
                e = parse_json(s, f"{shown(path)}, line {n}", ConfigError)
            else:
                e = s.strip()
            entries.append((f"{path}, line {n}", e))
    archs, seen = [], set()
    for where, e in entries:
        a = _arch(e, space, where)
        if a in seen:
            raise ConfigError(f"{where}: architecture {a} is listed twice")
        seen.add(a)
        archs.append(a)
    if len(archs) < MIN_ARCHS:
        raise ConfigError(f"architecture list {path} has {len(archs)} architecture(s); need at least {MIN_ARCHS}")
    return archs


# ---------------------------------------------------------------------------- stability
def _chain(label: str, names: list, scores: list[list[float]]) -> dict:
    """τ between consecutive score lists, and its summary."""
    pairs = [{"from": names[i], "to": names[i + 1], "tau": kendall(scores[i], scores[i + 1])}
             for i in range(len(scores) - 1)]
    taus = [p["tau"] for p in pairs if not math.isnan(p["tau"])]
    return {"kind": label, "pairs": pairs,
            "summary": {"mean_tau": float(np.mean(taus)) if taus else math.nan,
                        "min_tau": float(np.min(taus)) if taus else math.nan,
                        "last_tau": pairs[-1]["tau"] if pairs else math.nan}}


def stability(run_dir, archs, proxy) -> dict:
    """Kendall τ between the rankings of ``archs`` at consecutive points of training.

    Args:
        run_dir: a trained run (``epochs/`` from ``supernet.keep_epoch_weights``, ``pool/``).
        archs: the fixed architecture set (Arch objects or strings).
        proxy: a :class:`stnas.proxy.scorer.Proxy` of the run (``stnas.pipeline.search.proxy_for_run``;
            under torchrun its context shards the evaluations).

    Returns:
        ``{"archs", "epochs": {...}, "pool_samples": {...}, "pool_running_mean": {...}}``:
        each part holds ``pairs`` (``[{from, to, tau}]``) and ``summary``; pool parts are
        missing when the pool has fewer than 2 samples. Pool scores come from (and fill)
        the proxy cache.
    """
    from stnas.core.weights import load_weights

    run_dir = Path(run_dir)
    files = sorted((run_dir / "epochs").glob("epoch_*.safetensors"))
    numbers = [int(f.stem.split("_")[1]) for f in files if f.stem.split("_")[1].isdigit()]
    gaps = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
    if gaps:
        raise CheckpointError(f"{run_dir / 'epochs'} lacks epoch_{gaps[0]:03d}.safetensors: consecutive "
                              f"epochs cannot be compared across the gap")
    archs = proxy.check_archs(archs)
    if len(archs) < MIN_ARCHS:
        raise ConfigError(f"stability needs at least {MIN_ARCHS} architectures, got {len(archs)}")
    out: dict = {"archs": [str(a) for a in archs]}
    if len(files) >= 2:
        names, scores = [], []
        for f in files:
            names.append(int(f.stem.split("_")[1]))
            scores.append([s.score for s in proxy.evaluate_weights(load_weights(f, what="epoch weights")[0], archs)])
        out["epochs"] = _chain("epochs", names, scores)
        out["epochs"]["scores"] = scores
    if len(proxy.pool) >= 2:
        per = np.array([s.per_sample for s in proxy.score(archs, mode="stabilized")])  # archs x K
        steps = [e["step"] for e in proxy.pool.entries[:per.shape[1]]]
        out["pool_samples"] = _chain("pool samples", steps, per.T.tolist())
        running = np.cumsum(per, 1) / np.arange(1, per.shape[1] + 1)
        out["pool_running_mean"] = _chain("running mean of the first k samples", list(range(1, per.shape[1] + 1)),
                                          running.T.tolist())
    if len(out) == 1:
        raise ConfigError(f"{run_dir} has fewer than 2 epoch checkpoints (epochs/) and fewer than 2 pool "
                          f"samples: nothing to compare; train with supernet.keep_epoch_weights=true")
    return out
