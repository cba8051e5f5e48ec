"""Run configuration: one source of truth for every default.

Resolution order (later wins): ``DEFAULTS`` below -> the preset's sections (everything in
its YAML except ``space``) -> the user's ``--config FILE.yaml`` -> explicit CLI flags ->
``key=value`` overrides (dotted keys, YAML values: ``supernet.lr=0.05``,
``data.limit=null``). Unknown keys and values of the wrong type are errors that name the
key. The resolved config is written to the run directory as ``config.yaml``.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import reprlib
from pathlib import Path
from typing import Any

import yaml

from stnas import choices, verified
from stnas.errors import CheckpointError, ConfigError, SpaceError
from stnas.latency import check_section as check_latency_section
from stnas.latency import parse_latency
from stnas.limits import MAX_INT, MAX_TEXT, check_config_bounds, check_text_size, check_tree
from stnas.presets import read_preset

# A training recipe: the keys shared by supernet training and retraining.
RECIPE: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 128,
    "lr": 0.1,
    "min_lr": 0.005,  # the cosine schedule ends here (supernet: the sampling phase keeps pool.lr)
    "schedule": "cosine",  # cosine | step | constant
    "step_epochs": 3,  # step schedule: lr x 0.1 every step_epochs epochs
    "warmup_epochs": 0.5,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 4.0e-5,  # not applied to BN parameters and biases
    "label_smoothing": 0.1,
    "grad_clip": 5.0,  # max global grad norm; null: off
    "amp": "auto",  # auto (bf16 on CUDA) | bf16 | off
    "channels_last": "auto",  # auto (on) | on | off
    "checkpoint_every": 200,  # steps; also at every epoch end and at the end
    "keep_epoch_weights": False,  # epochs/epoch_NNN.safetensors
    "log_every": 10,
    "progress": True,
}

DEFAULTS: dict[str, Any] = {
    "preset": "fashion-mnist",  # the search space: a preset name or a YAML file
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "data": {
        "dataset": "fashion-mnist",
        "root": None,  # looked in first; then $STNAS_DATA, system copies
        "image_size": None,  # default: the space's input size
        "val_fraction": None,  # search-val share of train (default per dataset)
        "limit": None,  # supernet training on a stratified subset of search-train
        "val_limit": None,  # proxy scoring on a stratified subset of search-val
        # seeds the search split, the limit subsets and the proxy's recalibration batches
        # (default: seed); e.g. supernet replicates that differ only in their training seed
        "split_seed": None,
        "workers": 0,
    },
    # optimizer: of the closing sampling phase (sgld | sgd); the epochs before it use SGD.
    # sampling: topology | architecture | density | fair | sandwich (see SearchSpace.sample_at)
    # split: "E:off" | "E:on": a few-shot sub-supernet that trains only architectures whose
    # branch edge E is off (on); init: a run directory whose supernet weights start this one;
    # kernel_sharing: an edge's MBConvs that differ only in kernel size share one module, the
    # smaller kernels the centre of the largest (OFA's elastic kernel; stnas.ops.NestedMBConv);
    # width_sharing: those that differ only in expansion share one, the smaller expansions its
    # first hidden channels (elastic width); both: one module per edge for all its MBConvs
    "supernet": dict(RECIPE, optimizer="sgld", sampling="topology", keep_epoch_weights=True, split=None, init=None,
                     kernel_sharing=False, width_sharing=False),
    "sgld": {
        "temperature": 1.0,  # T: 1 = posterior, < 1 = cold
        "noise_scale": None,  # replaces 2T/N when set
        "momentum": 0.9,  # SGHMC form when > 0
    },
    "pool": {
        "samples": 8,  # K parameter samples
        "epochs": 2,  # the last E epochs of supernet training are the sampling phase
        "extra_steps": 0,  # > 0: instead, a dedicated phase of T steps after training
        "lr": None,  # phase learning rate; default supernet.min_lr
    },
    "proxy": {
        "mode": "stabilized",  # single | stabilized | averaged
        "metric": "top1",  # the score: top1 (accuracy on search-val) | loss (minus its cross-entropy)
        "recal_batches": 4,  # BN recalibration: batches of search-train per evaluation
        "batch_size": 256,
        "samples": None,  # use the first K pool samples (null: all)
    },
    "search": {
        "algorithm": "evolution",  # evolution | random
        "budgets": ["4M"],  # MAdds budgets, one best architecture each
        "min_madds": None,
        "budget_floor": 0.0,  # > 0: each budget B searches and chooses within [floor * B, B]
        "max_params": None,
        # best: the top mean score. largest_tied: the most MAdds among the networks that a paired
        # one-sided t-test across the pool samples cannot tell from the best at tie_alpha
        # (needs proxy.mode stabilized)
        "select": "best",
        "tie_alpha": 0.05,
        # a share in (0, 1]: successive halving. Each generation is scored on the first pool
        # sample, and only this share of each budget's candidates (the best) on all K samples;
        # the others keep their one-sample score and are never parents nor chosen. null: off
        "screen": None,
        "population": 50,
        "parents": 10,  # top-k of each generation breed the next
        "mutation_prob": 0.1,
        "crossover": 0.5,  # share of children made by crossover (the rest by mutation)
        "generations": 20,
        "random_samples": 500,  # random search: how many architectures
        "top": 3,  # architecture files saved per budget
        "latency_budgets": None,  # e.g. [1.2ms]: targets of predicted latency (stnas.latency)
    },
    # latency on this machine (stnas.latency): the runtime and settings of its lookup table
    "latency": {
        "runtime": "torch",  # torch (eager) | onnxruntime
        "device": "cpu",  # cpu | cuda
        "batch": 1,
        "threads": 1,
        "table": None,  # a table file; null: the cache ($STNAS_CACHE/latency), built when missing
        "measure": False,  # also measure the chosen models (on whenever a latency budget is set)
        "warmup": 10,
        "repeats": 30,
        "rounds": 3,
        "fit_networks": 12,  # whole networks measured to fit the per-network overhead
    },
    "retrain": dict(RECIPE, limit=None),  # limit: train on a stratified subset of train
}


def _merge(base: dict, new: dict, where: str = "") -> dict:
    """Recursive merge of ``new`` into a copy of ``base``, checking keys and types."""
    out = copy.deepcopy(base)
    for key, value in new.items():
        path = f"{where}{key}"
        if key not in base:
            close = difflib.get_close_matches(str(key), [str(k) for k in base], n=1)
            hint = f"; did you mean {where}{close[0]}?" if close else f"; known: {', '.join(map(str, base))}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        default = base[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping, got {value!r}")
            out[key] = _merge(default, value, path + ".")
        else:
            out[key] = _check_type(path, default, value)
    return out


# keys whose default is null: the kind of value they take when set
_NULL_DEFAULT_KINDS = {"data.root": "string", "data.image_size": "integer", "data.val_fraction": "number",
                       "data.limit": "count", "data.val_limit": "count", "pool.lr": "number",
                       "sgld.noise_scale": "number", "proxy.samples": "integer", "search.min_madds": "count",
                       "search.max_params": "count", "search.screen": "number", "retrain.limit": "count",
                       "supernet.split": "string", "supernet.init": "string"}
_MAY_BE_NULL = {"supernet.grad_clip", "retrain.grad_clip"}  # null: off


_MISSING = object()


def _built_in(path: str) -> Any:
    """The built-in default at a dotted path (``DEFAULTS``, before any preset)."""
    node: Any = DEFAULTS
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _show(value: Any) -> str:
    return reprlib.repr(value)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_INT if isinstance(value, int) else math.isfinite(value)


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _check_type(path: str, default: Any, value: Any) -> Any:
    if value is None:  # null is allowed where the built-in default is null, whatever a preset set
        if default is None or path in _MAY_BE_NULL or _built_in(path) is None:
            return value
        raise ConfigError(f"config key {path!r} must not be null (its default is {_show(default)})")
    kind = _NULL_DEFAULT_KINDS.get(path)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {path!r} must be true or false, got {_show(value)}")
    elif (isinstance(default, (int, float)) and kind != "count") or kind in ("number", "integer"):
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if not _is_number(value):
            want = "between -(2**63 - 1) and 2**63 - 1" if isinstance(value, int) else "a finite number"
            raise ConfigError(f"config key {path!r} must be {want}, got {_show(value)}")
        integer = kind == "integer" or (isinstance(default, int) and not isinstance(default, bool))
        if integer and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"config key {path!r} must be an integer, got {_show(value)}")
            value = int(value)
        if integer and abs(value) > MAX_INT:
            raise ConfigError(f"config key {path!r} must be below 2**63, got {_show(value)}")
    elif isinstance(default, str) or kind == "string":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"config key {path!r} must be a non-empty string, got {_show(value)}")
    elif kind == "count" or isinstance(default, list):
        items = value if isinstance(value, list) and isinstance(default, list) else [value]
        if not all(_is_number(v) or (isinstance(v, str) and len(v) <= 32) for v in items):
            raise ConfigError(f"config key {path!r} must be a count such as 300M, 800k or 1200000, "
                              f"got {_show(value)}")
    return value


def parse_override(text: str) -> dict:
    """``a.b=value`` -> ``{"a": {"b": value}}`` with a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. supernet.lr=0.05)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {_show(text)} has an empty key")
    check_text_size(raw, f"override {key}", ConfigError, limit=4096)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        value = raw
    check_tree(value, f"override {key}", ConfigError)
    return _nest(key, value)


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    if not p.is_file():  # a FIFO or device is never opened
        raise ConfigError(f"config file {p} is not a regular file")
    if p.stat().st_size > MAX_TEXT:
        raise ConfigError(f"config file {p} is larger than {MAX_TEXT} bytes")
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"config file {p} nests too deeply") from None
    check_tree(data, f"config file {p}", ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def resolve(preset: str | None = None, config_file: str | Path | None = None, flags: dict | None = None,
            overrides: list[str] | None = None) -> dict:
    """The resolved config (see the module docstring).

    Args:
        preset: the preset (name or YAML) whose sections supply defaults; default
            ``DEFAULTS["preset"]`` or the preset the config file names.
        config_file: a user YAML with any subset of the sections.
        flags: dotted keys from explicit CLI flags, e.g. ``{"supernet.epochs": 3}``;
            None values are ignored (flag not given).
        overrides: ``key=value`` strings.
    """
    layers = user_layers(config_file, flags, overrides)
    chosen = preset
    for layer in layers:
        chosen = layer.get("preset", chosen)
    chosen = chosen or _derived_preset(layers) or DEFAULTS["preset"]
    try:
        preset_cfg = {k: v for k, v in load_preset(chosen).items() if k != "space"}
    except Exception as exc:  # SpaceError: not a preset nor a readable YAML
        raise ConfigError(str(exc)) from None
    cfg = apply_layers(_merge(DEFAULTS, preset_cfg), layers)
    cfg["preset"] = str(chosen)
    return cfg


def load_preset(name_or_path: str | Path) -> dict:
    """The full preset dict (space, data and recipes) of a preset name or YAML file; a bare
    space file (no ``space:`` section and no run sections) becomes ``{"space": ...}``.

    Raises:
        SpaceError: unreadable, not a mapping, or run sections without a space section.
    """
    if str(name_or_path).startswith("auto-") and not Path(name_or_path).is_file():
        return _derive("derived_preset")(str(name_or_path))
    data = read_preset(name_or_path)
    if "space" not in data:
        run_sections = sorted(set(DEFAULTS) & set(data))
        if run_sections:
            raise SpaceError(f"{name_or_path} has run settings ({', '.join(run_sections)}) but no 'space:' section; "
                             f"a preset file needs one (see the presets in stnas/presets/)")
        data = {"space": data}
    return data


# Spaces derived from user data are built above this layer (stnas.derive needs the space and
# the data): stnas.derive registers its functions here when it is imported (stnas.cli does).
DERIVED: dict[str, Any] = {}


def _derive(name: str):
    if name not in DERIVED:
        raise ConfigError("a space derived from the data needs stnas.derive: import stnas.derive "
                          "(the stnas command does), or pass a preset")
    return DERIVED[name]


def _derived_preset(layers: list[dict]) -> str | None:
    """For user data (a folder or .npz) and no preset: the space derived from it (stnas.derive)."""
    peek = DEFAULTS
    for layer in layers:
        peek = _merge(peek, layer)
    dataset = peek["data"]["dataset"]
    if dataset in choices.DATASETS:
        return None
    _check_dataset(dataset)
    preset_for_data = _derive("preset_for_data")

    given = any("budgets" in (layer.get("search") or {}) for layer in layers)
    budgets = peek["search"]["budgets"] if given else None
    if budgets is not None:
        budgets = [parse_count(b, "search.budgets") for b in (budgets if isinstance(budgets, list) else [budgets])]
    return preset_for_data(dataset, budgets)


def user_layers(config_file: str | Path | None = None, flags: dict | None = None,
                overrides: list[str] | None = None) -> list[dict]:
    """What the user said, as nested dicts in increasing priority: the --config file,
    explicit flags (dotted keys; None = not given), key=value overrides."""
    layers = [read_yaml(config_file)] if config_file else []
    layers += [_nest(key, value) for key, value in (flags or {}).items() if value is not None]
    return layers + [parse_override(o) for o in overrides or []]


def apply_layers(cfg: dict, layers: list[dict], allowed: tuple[str, ...] | None = None,
                 context: str = "here") -> dict:
    """Merges ``layers`` into ``cfg`` and validates. ``allowed``: dotted key prefixes that
    may change (e.g. for a search on an existing run); anything else is an error."""
    for layer in layers:
        if allowed is not None:
            for key in _dotted(layer):
                if not any(key == a or key.startswith(a + ".") for a in allowed):
                    raise ConfigError(f"{key} cannot change {context}; allowed: {', '.join(allowed)}")
        cfg = _merge(cfg, layer)
    validate(cfg)
    return cfg


def _dotted(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        keys += _dotted(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def _nest(key: str, value: Any) -> dict:
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


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
        raise ConfigError(f"supernet.split must be E:on or E:off (E a branch-edge index), got {_show(text)}")
    edge = int(m.group(1))
    if edges is not None and edge >= edges:
        raise ConfigError(f"supernet.split {text!r}: the space has {edges} branch edges (0 to {edges - 1})")
    return edge, m.group(2) == "on"


def pool_lr(cfg: dict) -> float:
    """The sampling phase's learning rate: pool.lr, by default supernet.min_lr."""
    return cfg["supernet"]["min_lr"] if cfg["pool"]["lr"] is None else cfg["pool"]["lr"]


def _check_dataset(value) -> str:
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
    cfg["data"]["dataset"] = _check_dataset(cfg["data"]["dataset"])
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
    if not str(cfg["device"]).startswith(("auto", "cpu", "cuda")):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {cfg['device']!r}")


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
    if isinstance(value, (int, float)) and not isinstance(value, bool) and _is_number(value) and value >= 1:
        number = value
    else:
        m = re.fullmatch(r"\s*([0-9]{0,30}\.?[0-9]{1,30})\s*([kKmMgG]?)\s*", str(value)[:80])
        number = float(m.group(1)) * _SUFFIX[m.group(2)] if m else 0
    if not 1 <= number <= MAX_INT:
        raise ConfigError(f"{what}: {_show(value)} is not a count from 1 to 2**63 - 1 (examples: 300M, 3.5M, "
                          f"800k, 1200000)")
    return int(round(number))


RUN_CONFIG = "config.yaml"  # a run directory's resolved config (stnas.rundir.CONFIG)


def save_config(cfg: dict, run_dir: str | Path) -> Path:
    """Writes the resolved config to RUN_DIR/config.yaml (atomically, checksummed)."""
    return verified.write_yaml(Path(run_dir) / RUN_CONFIG, cfg)


def read_run_config(run_dir: str | Path) -> dict:
    """The config a run directory was saved with, as written (checksum verified; not merged
    with the defaults).

    Raises:
        ConfigError: no config; CheckpointError: a damaged one.
    """
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not an stnas run directory (no {RUN_CONFIG})")
    data = verified.read_yaml(path, "run config")
    if not isinstance(data, dict):
        raise CheckpointError(f"run config {path} is damaged (not a mapping)")
    return data


def load_run_config(run_dir: str | Path) -> dict:
    """The resolved config a run directory was made with (its checksum verified)."""
    return _merge(DEFAULTS, read_run_config(run_dir))


# keys that change how a run reports or where it reads data, not what it computes
_COSMETIC = {"supernet": {"progress", "log_every"}, "retrain": {"progress", "log_every"}, "data": {"root", "workers"}}


def effective_settings(cfg: dict, section: str):
    """What ``cfg`` computes with in ``section``: a top-level key (``"retrain"``, its cosmetic
    keys dropped) or one key of a section (``"data.dataset"``)."""
    sec, _, key = section.partition(".")
    v = cfg.get(sec)
    if key:
        return v.get(key) if isinstance(v, dict) else None
    return {k: x for k, x in v.items() if k not in _COSMETIC.get(sec, ())} if isinstance(v, dict) else v


def check_same_settings(run_dir: str | Path, cfg: dict, sections: tuple[str, ...]) -> None:
    """Raises ConfigError unless the run in ``run_dir`` was made with ``cfg``'s ``sections``
    (what a resumed or reused run must share with the caller's config; see
    :func:`effective_settings`)."""
    saved = load_run_config(run_dir)
    diff = [s for s in sections if effective_settings(saved, s) != effective_settings(cfg, s)]
    if diff:
        raise ConfigError(f"{run_dir} was made with other settings ({', '.join(diff)} differ): resume it with "
                          f"its saved config (--resume without overrides) or choose another --out")
