"""Value checks of a run configuration that types alone do not catch: ``validate`` runs them
on a merged config (``stnas.pipeline.config`` merges and type-checks), and the section checks and
parsers here (``check_search``, ``check_latency_section``, ``check_sgld_settings``,
``parse_count``, ``parse_latency``) are what the stages call on the values
they are given."""

from __future__ import annotations

import difflib
import re
import reprlib
from pathlib import Path

from stnas.core.errors import ConfigError
from stnas.core.limits import check_sgld_settings
from stnas.core.units import (  # noqa: F401  (re-used by config)
    is_number,
    parse_budget,
    parse_count,
    parse_duration,
    parse_latency,
    show,
)
from stnas.data.catalog import DATASETS
from stnas.data.userdata import DATA_FORMATS, data_format, path_formats
from stnas.latency.budget import check_margin
from stnas.latency.table import LATENCY_DEVICES, LATENCY_RUNTIMES
from stnas.proxy.modes import PROXY_METRICS, PROXY_MODES, per_sample_modes
from stnas.search.algorithms import SEARCH_ALGORITHMS, SELECTIONS
from stnas.space.sampling import SAMPLING_MODES, parse_split
from stnas.train.recipe import AMP_MODES, CHANNELS_LAST, OPTIMIZERS, SCHEDULES

# the config keys whose value is a registry's name (data.dataset: check_dataset)
CHOICES = {
    ("supernet", "optimizer"): OPTIMIZERS,
    ("supernet", "schedule"): SCHEDULES,
    ("supernet", "sampling"): SAMPLING_MODES,
    ("supernet", "amp"): AMP_MODES,
    ("supernet", "channels_last"): CHANNELS_LAST,
    ("retrain", "schedule"): SCHEDULES,
    ("retrain", "amp"): AMP_MODES,
    ("retrain", "channels_last"): CHANNELS_LAST,
    ("proxy", "mode"): PROXY_MODES,
    ("proxy", "metric"): PROXY_METRICS,
    ("search", "algorithm"): SEARCH_ALGORITHMS,
    ("search", "select"): SELECTIONS,
    ("latency", "runtime"): LATENCY_RUNTIMES,
    ("latency", "device"): LATENCY_DEVICES,
}


def pool_lr(cfg: dict) -> float:
    """The sampling phase's learning rate: pool.lr, by default supernet.min_lr."""
    return cfg["supernet"]["min_lr"] if cfg["pool"]["lr"] is None else cfg["pool"]["lr"]


def check_dataset(value) -> str:
    """data.dataset: a named dataset (stnas.data.catalog), or a path of a data format
    (stnas.data.userdata: an image folder or .npz file; made absolute)."""
    if value in DATASETS:
        return value
    p = Path(str(value)).expanduser()
    fmt = data_format(str(p))
    if fmt is not None and DATA_FORMATS.get(fmt).exists(p):
        return str(p.resolve())
    want = f"data.dataset must be one of {', '.join(DATASETS.names())}, {' or '.join(path_formats())}"
    if fmt is not None or "/" in str(value):
        raise ConfigError(f"{want}: {value} is neither {' nor '.join(path_formats())}")
    close = difflib.get_close_matches(str(value), DATASETS.names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{want}, got {value!r}{hint}; a folder that holds a named dataset goes in data.root "
                      f"(--data-root)")


def validate(cfg: dict) -> None:
    """Value checks that types alone do not catch."""
    check_config_bounds(cfg)
    for (sec, key), registry in CHOICES.items():
        registry.check(cfg[sec][key], f"{sec}.{key}")
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
    check_baselines_section(cfg["baselines"])
    per_sample, mode = PROXY_MODES.get(cfg["proxy"]["mode"]).per_sample, cfg["proxy"]["mode"]
    if cfg["search"]["screen"] is not None and not per_sample:
        raise ConfigError(f"search.screen needs proxy.mode {' or '.join(per_sample_modes())} (it screens on one "
                          f"pool sample), got proxy.mode {mode}")
    if SELECTIONS.get(cfg["search"]["select"]).paired and not per_sample:
        raise ConfigError(f"search.select={cfg['search']['select']} needs proxy.mode {' or '.join(per_sample_modes())} "
                          f"(the test pairs the pool samples), got proxy.mode {mode}")
    if cfg["run"]["time_budget"] is not None:
        parse_duration(cfg["run"]["time_budget"], "run.time_budget")
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
    (``"4M"`` -> 4000000); what ``stnas.search.evolution.search`` expects.

    Raises:
        ConfigError: a value out of range, an unknown choice or no budget.
    """
    for key in ("algorithm", "select"):
        CHOICES[("search", key)].check(se[key], f"search.{key}")
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


def check_latency_section(lat: dict) -> None:
    """The checks of a ``latency`` section (runtime, device, batch, threads, timing, table);
    ``search.latency_budgets`` is checked with the search section (``stnas.pipeline.checks.check_search``)."""
    for key in ("runtime", "device"):
        CHOICES[("latency", key)].check(lat[key], f"latency.{key}")
    for key, low in (("batch", 1), ("threads", 1), ("warmup", 0), ("repeats", 3), ("rounds", 1), ("fit_networks", 2),
                     ("max_measured", 1)):
        if type(lat[key]) is not int or lat[key] < low:
            raise ConfigError(f"latency.{key} must be an integer >= {low}, got {lat[key]!r}")
    lat["margin"] = check_margin(lat["margin"])
    if lat["table"] is not None and not isinstance(lat["table"], str):
        raise ConfigError(f"latency.table must be a file path or null (the cache), got {lat['table']!r}")


def check_baselines_section(bl: dict) -> dict:
    """Checks a ``baselines`` section in place and returns it: names registered
    (``stnas.nn.baselines.BASELINES``), forms known, budgets parsed and kept as their labels
    (so a saved config validates again), counts in range; a lone value becomes a list."""
    from stnas.nn.baselines import BASELINES, check_form  # torch-free

    if bl["enabled"] is not None and not isinstance(bl["enabled"], bool):
        raise ConfigError(f"baselines.enabled must be true, false or null (auto), got {show(bl['enabled'])}")
    for key, limit in (("seeds", 1000), ("recal_batches", 10**5)):
        low = 1 if key == "seeds" else 0
        if type(bl[key]) is not int or not low <= bl[key] <= limit:
            raise ConfigError(f"baselines.{key} must be an integer from {low} to {limit}, got {show(bl[key])}")
    listed = {k: bl[k] if isinstance(bl[k], list) else [bl[k]] for k in ("families", "forms", "budgets")
              if bl[k] is not None}
    for key, items in listed.items():
        if not items or len(items) > 100:
            raise ConfigError(f"baselines.{key} must list 1 to 100 values{' or be null' if key != 'forms' else ''}")
    if "families" in listed:
        bl["families"] = list(dict.fromkeys(BASELINES.check(f, "baselines.families") for f in listed["families"]))
    bl["forms"] = list(dict.fromkeys(check_form(f, "baselines.forms") for f in listed["forms"]))
    if "budgets" in listed:
        bl["budgets"] = list(dict.fromkeys(parse_budget(b, "baselines.budgets").label for b in listed["budgets"]))
    return bl


_UPPER = {"supernet.epochs": 10**5, "retrain.epochs": 10**5, "supernet.batch_size": 1 << 16,
          "retrain.batch_size": 1 << 16, "supernet.step_epochs": 10**5, "retrain.step_epochs": 10**5,
          "supernet.warmup_epochs": 10**5, "retrain.warmup_epochs": 10**5, "data.image_size": 2048,
          "data.workers": 256, "pool.samples": 10**4, "pool.epochs": 10**5, "pool.extra_steps": 10**9,
          "proxy.recal_batches": 10**5, "proxy.batch_size": 1 << 16, "proxy.samples": 10**4,
          "search.population": 10**5, "search.parents": 10**5, "search.generations": 10**5,
          "search.random_samples": 10**7, "search.top": 10**4, "latency.max_measured": 1000}

MAX_BUDGETS = 64


def check_config_bounds(cfg: dict) -> None:
    """Raises ConfigError when a typed config value lies outside its sensible range."""
    for dotted, upper in _UPPER.items():
        sec, key = dotted.split(".")
        value = cfg[sec][key]
        if value is not None and value > upper:
            raise ConfigError(f"{dotted} must be <= {upper}, got {value}")
    if cfg["pool"]["extra_steps"] < 0:
        raise ConfigError(f"pool.extra_steps must be >= 0 (0: the last pool.epochs epochs), got "
                          f"{cfg['pool']['extra_steps']}")
    vf = cfg["data"]["val_fraction"]
    if vf is not None and not 0 < vf < 1:
        raise ConfigError(f"data.val_fraction must be in (0, 1) or null, got {vf}")
    lr = cfg["pool"]["lr"]
    if lr is not None and not lr > 0:
        raise ConfigError(f"pool.lr must be > 0 or null (supernet.min_lr), got {lr}")
    budgets = cfg["search"]["budgets"]
    if isinstance(budgets, list) and len(budgets) > MAX_BUDGETS:  # none is checked with the latency budgets
        raise ConfigError(f"search.budgets must list at most {MAX_BUDGETS} budgets, got {len(budgets)}")
    latency = cfg["search"].get("latency_budgets")
    if isinstance(latency, list) and len(latency) > MAX_BUDGETS:
        raise ConfigError(f"search.latency_budgets must list at most {MAX_BUDGETS} budgets, got {len(latency)}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d{1,3})?", cfg["device"]):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {reprlib.repr(cfg['device'])}")
