"""Value checks of a run configuration that types alone do not catch: ``validate`` runs them
on a merged config (``stnas.config`` merges and type-checks), and the section checks and
parsers here (``check_search``, ``check_latency_section``, ``check_sgld_settings``,
``parse_count``, ``parse_latency``, ``parse_split``) are what the stages call on the values
they are given."""

from __future__ import annotations

import math
import re
import reprlib
from pathlib import Path
from typing import Any

from stnas import choices
from stnas.errors import ConfigError
from stnas.limits import MAX_INT, check_config_bounds


def show(value: Any) -> str:
    """A value, shortened for an error message."""
    return reprlib.repr(value)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool), ints within 64 bits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value)


_CHOICES = {
    ("supernet", "optimizer"): choices.OPTIMIZERS,
    ("supernet", "schedule"): choices.SCHEDULES,
    ("supernet", "sampling"): choices.SAMPLING_MODES,
    ("supernet", "amp"): choices.AMP_MODES,
    ("supernet", "channels_last"): choices.CHANNELS_LAST,
    ("retrain", "schedule"): choices.SCHEDULES,
    ("retrain", "amp"): choices.AMP_MODES,
    ("retrain", "channels_last"): choices.CHANNELS_LAST,
    ("proxy", "mode"): choices.PROXY_MODES,
    ("proxy", "metric"): choices.PROXY_METRICS,
}  # and the search section's, in check_search


def parse_split(text: str, edges: int | None = None) -> tuple[int, bool]:
    """``"E:off"`` / ``"E:on"`` -> (branch edge E, on); with ``edges``, E must be below it."""
    m = re.fullmatch(r"\s*(\d{1,4})\s*:\s*(on|off)\s*", str(text))
    if not m:
        raise ConfigError(f"supernet.split must be E:on or E:off (E a branch-edge index), got {show(text)}")
    edge = int(m.group(1))
    if edges is not None and edge >= edges:
        raise ConfigError(f"supernet.split {text!r}: the space has {edges} branch edges (0 to {edges - 1})")
    return edge, m.group(2) == "on"


def pool_lr(cfg: dict) -> float:
    """The sampling phase's learning rate: pool.lr, by default supernet.min_lr."""
    return cfg["supernet"]["min_lr"] if cfg["pool"]["lr"] is None else cfg["pool"]["lr"]


def check_dataset(value) -> str:
    """data.dataset: a named dataset, or an image folder or .npz file (stnas.userdata; made absolute)."""
    p = Path(str(value)).expanduser()
    if value in choices.DATASETS:
        return value
    if p.is_dir() or (p.suffix.lower() == ".npz" and p.is_file()):
        return str(p.resolve())
    if p.suffix.lower() == ".npz" or "/" in str(value):
        raise ConfigError(f"data.dataset must be one of {', '.join(choices.DATASETS)}, an image folder or an .npz "
                          f"file: {value} is neither a folder nor an .npz file")
    raise ConfigError(f"data.dataset must be one of {', '.join(choices.DATASETS)}, an image folder or an .npz "
                      f"file, got {value!r}; a folder that holds a named dataset goes in data.root (--data-root)")


def validate(cfg: dict) -> None:
    """Value checks that types alone do not catch."""
    check_config_bounds(cfg)
    for (sec, key), allowed in _CHOICES.items():
        if cfg[sec][key] not in allowed:
            raise ConfigError(f"{sec}.{key} must be one of {', '.join(allowed)}, got {cfg[sec][key]!r}")
    cfg["data"]["dataset"] = check_dataset(cfg["data"]["dataset"])
    sn = cfg["supernet"]
    for sec in ("supernet", "retrain"):
        for key in ("epochs", "batch_size", "checkpoint_every", "log_every"):
            if cfg[sec][key] < 1:
                raise ConfigError(f"{sec}.{key} must be >= 1, got {cfg[sec][key]}")
        r = cfg[sec]
        if r["lr"] <= 0:
            raise ConfigError(f"{sec}.lr must be > 0, got {r['lr']}")
        for key, ok, want in (("min_lr", r["min_lr"] >= 0, ">= 0"), ("step_epochs", r["step_epochs"] >= 1, ">= 1"),
                              ("warmup_epochs", r["warmup_epochs"] >= 0, ">= 0"),
                              ("momentum", 0 <= r["momentum"] < 1, "in [0, 1)"),
                              ("weight_decay", r["weight_decay"] >= 0, ">= 0"),
                              ("label_smoothing", 0 <= r["label_smoothing"] < 1, "in [0, 1)"),
                              ("grad_clip", r["grad_clip"] is None or r["grad_clip"] > 0, "> 0 or null (off)")):
            if not ok:
                raise ConfigError(f"{sec}.{key} must be {want}, got {r[key]}")
    if cfg["seed"] < 0:
        raise ConfigError(f"seed must be >= 0, got {cfg['seed']}")
    ss = cfg["data"]["split_seed"]
    if ss is not None and (isinstance(ss, bool) or not isinstance(ss, int) or ss < 0):
        raise ConfigError(f"data.split_seed must be an integer >= 0 or null (the seed), got {ss!r}")
    if sn["split"] is not None:
        parse_split(sn["split"])
    d = cfg["data"]
    for key in ("limit", "val_limit"):
        if d[key] is not None:
            d[key] = parse_count(d[key], f"data.{key}")
    if d["image_size"] is not None and (type(d["image_size"]) is not int or d["image_size"] < 1):
        raise ConfigError(f"data.image_size must be a positive integer or null (the space's), got {d['image_size']!r}")
    if d["root"] is not None and not isinstance(d["root"], str):
        raise ConfigError(f"data.root must be a directory path or null, got {d['root']!r}")
    if d["workers"] < 0:
        raise ConfigError(f"data.workers must be >= 0, got {d['workers']}")
    px = cfg["proxy"]
    if px["batch_size"] < 1:
        raise ConfigError(f"proxy.batch_size must be >= 1, got {px['batch_size']}")
    if px["samples"] is not None and (type(px["samples"]) is not int or px["samples"] < 1):
        raise ConfigError(f"proxy.samples must be a positive integer or null (all), got {px['samples']!r}")
    check_search(cfg["search"])
    check_latency_section(cfg["latency"])
    if cfg["search"]["screen"] is not None and cfg["proxy"]["mode"] != "stabilized":
        raise ConfigError("search.screen needs proxy.mode stabilized (it screens on one pool sample), "
                          f"got proxy.mode {cfg['proxy']['mode']}")
    if cfg["search"]["select"] == "largest_tied" and cfg["proxy"]["mode"] != "stabilized":
        raise ConfigError("search.select=largest_tied needs proxy.mode stabilized (the test pairs the pool "
                          f"samples), got proxy.mode {cfg['proxy']['mode']}")
    if cfg["retrain"]["limit"] is not None:
        cfg["retrain"]["limit"] = parse_count(cfg["retrain"]["limit"], "retrain.limit")
    if cfg["proxy"]["recal_batches"] < 0:
        raise ConfigError("proxy.recal_batches must be >= 0")
    pool = cfg["pool"]
    check_sgld_settings(lr=pool_lr(cfg), momentum=cfg["sgld"]["momentum"], temperature=cfg["sgld"]["temperature"],
                        noise_scale=cfg["sgld"]["noise_scale"])
    if pool["samples"] < 1:
        raise ConfigError(f"pool.samples must be >= 1, got {pool['samples']}")
    if px["samples"] is not None and px["samples"] > pool["samples"]:
        raise ConfigError(f"proxy.samples ({px['samples']}) cannot exceed pool.samples ({pool['samples']})")
    if pool["extra_steps"] == 0 and not 1 <= pool["epochs"] <= sn["epochs"]:
        raise ConfigError(f"pool.epochs must be between 1 and supernet.epochs ({sn['epochs']}), got {pool['epochs']}")


def check_search(se: dict) -> dict:
    """Checks a ``search`` section in place and returns it, its counts parsed to ints
    (``"4M"`` -> 4000000); what ``stnas.search.search`` expects.

    Raises:
        ConfigError: a value out of range, an unknown choice or no budget.
    """
    for key, allowed in (("algorithm", choices.SEARCH_ALGORITHMS), ("select", choices.SEARCH_SELECT)):
        if se[key] not in allowed:
            raise ConfigError(f"search.{key} must be one of {', '.join(allowed)}, got {se[key]!r}")
    for key in ("population", "parents", "generations", "random_samples", "top"):
        if se[key] < 1:
            raise ConfigError(f"search.{key} must be >= 1, got {se[key]}")
    if se["parents"] > se["population"]:
        raise ConfigError(f"search.parents ({se['parents']}) cannot exceed search.population ({se['population']})")
    if not 0 <= se["budget_floor"] < 1:
        raise ConfigError(f"search.budget_floor must be in [0, 1), got {se['budget_floor']}")
    if not 0 < se["tie_alpha"] < 1:
        raise ConfigError(f"search.tie_alpha must be in (0, 1), got {se['tie_alpha']}")
    if se["screen"] is not None and (type(se["screen"]) not in (int, float) or not 0 < se["screen"] <= 1):
        raise ConfigError(f"search.screen must be a share in (0, 1] or null (off), got {se['screen']!r}")
    if not 0 <= se["mutation_prob"] <= 1 or not 0 <= se["crossover"] <= 1:
        raise ConfigError("search.mutation_prob and search.crossover must be in [0, 1]")
    budgets = se["budgets"] if isinstance(se["budgets"], (list, tuple)) else [se["budgets"]]
    raw = se.get("latency_budgets")
    if raw is not None:
        raw = raw if isinstance(raw, (list, tuple)) else [raw]
        # kept as strings with their unit, so a saved config validates again
        ms = sorted({parse_latency(v, "search.latency_budgets") for v in raw})
        se["latency_budgets"] = [f"{v!r}ms" for v in ms] or None
    if not budgets and not se.get("latency_budgets"):
        raise ConfigError("search.budgets is empty: give at least one MAdds budget, e.g. --budget 4M, "
                          "or a latency budget (--latency-budget 1.2ms)")
    se["budgets"] = [parse_count(b, "search.budgets") for b in budgets]
    for key in ("min_madds", "max_params"):
        if se[key] is not None:
            se[key] = parse_count(se[key], f"search.{key}")
    return se


def check_sgld_settings(lr: float = 0.0, momentum: float = 0.0, weight_decay: float = 0.0, temperature: float = 1.0,
                        noise_scale: float | None = None) -> None:
    """The SGLD sampler's value checks (``stnas.sgld.SGLD`` runs them too), torch-free so that
    a run's config is checked with them before any training."""
    if not lr >= 0.0:
        raise ConfigError(f"SGLD: lr must be >= 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"SGLD: momentum must be in [0, 1), got {momentum}")
    if not weight_decay >= 0.0:
        raise ConfigError(f"SGLD: weight_decay must be >= 0, got {weight_decay}")
    if not temperature >= 0.0:
        raise ConfigError(f"SGLD: temperature must be >= 0, got {temperature}")
    if noise_scale is not None and not noise_scale >= 0.0:
        raise ConfigError(f"SGLD: noise_scale must be >= 0, got {noise_scale}")


_SUFFIX = {"": 1, "k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}


def parse_count(value: Any, what: str = "count") -> int:
    """300M, 3.5M, 800k, 1200000 (or an int) -> int, in [1, 2**63)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and is_number(value) and value >= 1:
        number = value
    else:
        m = re.fullmatch(r"\s*([0-9]{0,30}\.?[0-9]{1,30})\s*([kKmMgG]?)\s*", str(value)[:80])
        number = float(m.group(1)) * _SUFFIX[m.group(2)] if m else 0
    if not 1 <= number <= MAX_INT:
        raise ConfigError(f"{what}: {show(value)} is not a count from 1 to 2**63 - 1 (examples: 300M, 3.5M, "
                          f"800k, 1200000)")
    return int(round(number))


_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}


def parse_latency(value: Any, what: str = "latency budget") -> float:
    """``1.2ms``, ``800us``, ``0.5s`` -> milliseconds. A unit is required; the value must be
    finite and > 0."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|us|µs|s)\s*", str(value))
    if not m:
        raise ConfigError(f"{what}: {value!r} is not a latency with a unit (examples: 1.2ms, 800us, 0.5s)")
    ms = float(m.group(1)) * _UNITS[m.group(2)]
    if not (math.isfinite(ms) and ms > 0):
        raise ConfigError(f"{what}: {value!r} must be a finite latency > 0 (examples: 1.2ms, 800us)")
    return ms


def check_latency_section(lat: dict) -> None:
    """The checks of a ``latency`` section (runtime, device, batch, threads, timing, table);
    ``search.latency_budgets`` is checked with the search section (``stnas.config_checks.check_search``)."""
    for key, allowed in (("runtime", choices.LATENCY_RUNTIMES), ("device", choices.LATENCY_DEVICES)):
        if lat[key] not in allowed:
            raise ConfigError(f"latency.{key} must be one of {', '.join(allowed)}, got {lat[key]!r}")
    for key, low in (("batch", 1), ("threads", 1), ("warmup", 0), ("repeats", 3), ("rounds", 1), ("fit_networks", 2)):
        if type(lat[key]) is not int or lat[key] < low:
            raise ConfigError(f"latency.{key} must be an integer >= {low}, got {lat[key]!r}")
    if lat["table"] is not None and not isinstance(lat["table"], str):
        raise ConfigError(f"latency.table must be a file path or null (the cache), got {lat['table']!r}")
