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
import re
from pathlib import Path
from typing import Any

import yaml

from stnas.core.errors import ConfigError
from stnas.core.limits import MAX_INT, MAX_TEXT, check_text_size, check_tree
from stnas.core.rundir import RunDir, check_same_inputs
from stnas.core.units import is_number, parse_count, show
from stnas.data.catalog import DATASETS
from stnas.pipeline.checks import check_dataset, validate
from stnas.pipeline.scaling import scale_to_data
from stnas.space.presets import load_preset

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

# The supernet, proxy and search defaults are the settings the measurements put first, for every
# space (docs/experiments/, docs/benchmarks.md); a preset states only what differs for its space.
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
    # smaller kernels the centre of the largest (OFA's elastic kernel; stnas.space.ops.NestedMBConv);
    # width_sharing: those that differ only in expansion share one, the smaller expansions its
    # first hidden channels (elastic width); both (the default): one module per edge for all its MBConvs
    "supernet": dict(RECIPE, optimizer="sgld", sampling="topology", keep_epoch_weights=True, split=None, init=None,
                     kernel_sharing=True, width_sharing=True),
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
        "metric": "loss",  # the score: loss (minus the cross-entropy on search-val) | top1 (accuracy on it)
        "recal_batches": 2,  # BN recalibration: batches of search-train per evaluation
        "batch_size": 256,
        "samples": None,  # use the first K pool samples (null: all)
    },
    "search": {
        "algorithm": "evolution",  # evolution | random
        "budgets": ["4M"],  # MAdds budgets, one best architecture each
        "min_madds": None,
        "budget_floor": 0.8,  # > 0: each budget B searches and chooses within [floor * B, B]; 0: off
        "max_params": None,
        # best: the top mean score. largest_tied: the most MAdds among the networks that a paired
        # one-sided t-test across the pool samples cannot tell from the best at tie_alpha
        # (needs proxy.mode stabilized)
        "select": "best",
        "tie_alpha": 0.05,
        # a share in (0, 1]: successive halving. Each generation is scored on the first pool
        # sample, and only this share of each budget's candidates (the best) on all K samples;
        # the others keep their one-sample score and are never parents nor chosen. null: off
        "screen": 0.2,
        "population": 20,
        "parents": 5,  # top-k of each generation breed the next
        "mutation_prob": 0.1,
        "crossover": 0.5,  # share of children made by crossover (the rest by mutation)
        "generations": 6,
        "random_samples": 120,  # random search: how many architectures
        "top": 3,  # architecture files saved per budget
        "latency_budgets": None,  # e.g. [1.2ms]: targets of predicted latency (stnas.latency.table)
    },
    # latency on this machine (stnas.latency.table): the runtime and settings of its lookup table
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
        # a latency budget B is searched as a predicted latency <= B (1 - margin): auto (derived
        # from the table's fitted networks, stnas.latency.budget) or a fraction; 0: off
        "margin": "auto",
        # after the search, candidates measured (best first) until one is within B; then an error
        "max_measured": 8,
    },
    "retrain": dict(RECIPE, limit=None),  # limit: train on a stratified subset of train
    "run": {
        # a wall-clock limit for `stnas run` (90s, 10m, 1.5h, 1h30m): supernet epochs, pool, search
        # generations and retraining epochs are scaled down to fit it on this machine
        # (stnas.pipeline.budget); null: run the settings as they are
        "time_budget": None,
    },
    # standard networks (stnas.nn.baselines) trained with the retrain recipe, data and seeds and
    # evaluated as the picks are, one table per budget in the report (stnas.pipeline.baselines)
    "baselines": {
        # a stage of `stnas run`: true | false | null (on where retraining is small,
        # stnas.pipeline.scaling.baselines_auto, and a time budget has room for it)
        "enabled": None,
        "families": None,  # registered names (`stnas baselines --help` lists them); null: all
        "forms": ["defined", "adapted"],  # as torchvision defines them | small-input adapted, width fit
        "seeds": 1,  # trainings per network: seeds seed, seed+1, ... (the pick retrained under each)
        "recal_batches": 20,  # BN recalibration before the test: batches of unaugmented train; 0: off
        "budgets": None,  # e.g. [4M, params:300k, 1.2ms, 4M+1.2ms]; null: the run's search budgets
    },
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
                       "search.max_params": "count", "retrain.limit": "count",
                       "supernet.split": "string", "supernet.init": "string",
                       "run.time_budget": "string"}
_AUTO_OR_NUMBER = {"latency.margin"}  # "auto" or a number (checked by stnas.pipeline.checks)
_MAY_BE_NULL = {"supernet.grad_clip", "retrain.grad_clip", "search.screen"}  # null: off


_MISSING = object()


def _built_in(path: str) -> Any:
    """The built-in default at a dotted path (``DEFAULTS``, before any preset)."""
    node: Any = DEFAULTS
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


_EXPONENT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _check_type(path: str, default: Any, value: Any) -> Any:
    if value is None:  # null is allowed where the built-in default is null, whatever a preset set
        if default is None or path in _MAY_BE_NULL or _built_in(path) is None:
            return value
        raise ConfigError(f"config key {path!r} must not be null (its default is {show(default)})")
    kind = _NULL_DEFAULT_KINDS.get(path)
    if path in _AUTO_OR_NUMBER:
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            value = float(value)
        if not (value == "auto" or is_number(value)):
            raise ConfigError(f"config key {path!r} must be 'auto' or a number, got {show(value)}")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {path!r} must be true or false, got {show(value)}")
    elif (isinstance(default, (int, float)) and kind != "count") or kind in ("number", "integer"):
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if not is_number(value):
            want = "between -(2**63 - 1) and 2**63 - 1" if isinstance(value, int) else "a finite number"
            raise ConfigError(f"config key {path!r} must be {want}, got {show(value)}")
        integer = kind == "integer" or (isinstance(default, int) and not isinstance(default, bool))
        if integer and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"config key {path!r} must be an integer, got {show(value)}")
            value = int(value)
        if integer and abs(value) > MAX_INT:
            raise ConfigError(f"config key {path!r} must be below 2**63, got {show(value)}")
    elif isinstance(default, str) or kind == "string":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"config key {path!r} must be a non-empty string, got {show(value)}")
    elif kind == "count" or isinstance(default, list):
        items = value if isinstance(value, list) and isinstance(default, list) else [value]
        if not all(is_number(v) or (isinstance(v, str) and len(v) <= 32) for v in items):
            raise ConfigError(f"config key {path!r} must be a count such as 300M, 800k or 1200000, "
                              f"got {show(value)}")
    return value


def parse_override(text: str) -> dict:
    """``a.b=value`` -> ``{"a": {"b": value}}`` with a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. supernet.lr=0.05)")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {show(text)} has an empty key")
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
    from stnas.space.derive import is_derived  # (its module imports torch; config does not)

    if is_derived(cfg["preset"]):  # the user's data: the settings that follow its size (stnas.pipeline.scaling)
        given = {key for layer in layers for key in _dotted(layer)}
        cfg = apply_layers(scale_to_data(cfg, *_search_sizes(cfg), given), [])
    return cfg


def _search_sizes(cfg: dict) -> tuple[int, int]:
    """(search-train, search-val) images of the run's data (``data.limit`` applied to the first)."""
    from stnas.data.datasets import dataset_split
    from stnas.pipeline.settings import data_spec
    from stnas.space.catalog import load_space

    space, spec = load_space(cfg["preset"]), data_spec(cfg)
    return (len(dataset_split(spec, space, "search-train", cfg["data"]["limit"])),
            len(dataset_split(spec, space, "search-val", None)))


def _derived_preset(layers: list[dict]) -> str | None:
    """For user data (a folder or .npz) and no preset: the space derived from it (stnas.space.derive)."""
    peek = DEFAULTS
    for layer in layers:
        peek = _merge(peek, layer)
    dataset = peek["data"]["dataset"]
    if dataset in DATASETS:
        return None
    check_dataset(dataset)
    given = any("budgets" in (layer.get("search") or {}) for layer in layers)
    budgets = peek["search"]["budgets"] if given else None
    if budgets is not None:
        budgets = [parse_count(b, "search.budgets") for b in (budgets if isinstance(budgets, list) else [budgets])]
    return preset_for_data(dataset, budgets)


def preset_for_data(dataset, budgets: list[int] | None = None) -> str:
    """The derived preset name for user data (``stnas.data.datasets.describe``) and budget(s)."""
    from stnas.data.datasets import describe
    from stnas.space.derive import derived_name

    d = describe(dataset)
    return derived_name(d["channels"], d["size"], d["classes"], max(budgets) if budgets else None)


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


def save_config(cfg: dict, run_dir: str | Path) -> Path:
    """Writes the resolved config to RUN_DIR/config.yaml (atomically, checksummed)."""
    return RunDir(run_dir).save_config(cfg)


def read_run_config(run_dir: str | Path) -> dict:
    """The config a run directory was saved with, as written (checksum verified; not merged
    with the defaults).

    Raises:
        ConfigError: no config; CheckpointError: a damaged one.
    """
    return RunDir(run_dir).load_config()


def load_run_config(run_dir: str | Path) -> dict:
    """The resolved config a run directory was made with (its checksum verified)."""
    return _merge(DEFAULTS, read_run_config(run_dir))


# What may change on an existing run, per step: the one table.
#   keep   -- what a resumed (or reused) run must share with the caller's config; the rest may
#             differ (compared by check_same_settings, cosmetic keys aside)
#   change -- the dotted keys (and their sub-keys) a step may set anew on a trained run
#             (apply_layers(allowed=...) refuses any other before any work)
# `stnas run --resume` takes no new settings at all (stnas.cli.common.resumed_config).
ON_EXISTING_RUN: dict[str, dict[str, tuple[str, ...]]] = {
    "supernet": {"keep": ("preset", "supernet", "sgld", "pool", "data", "seed")},
    # the recipe, the seed and the data it reads, not the supernet's search-train/search-val settings
    "retrain": {"keep": ("retrain", "data.dataset", "data.image_size", "seed")},
    # a baseline's training: the retraining's, its data seed and its test-time recalibration
    "baselines": {"keep": ("retrain", "data.dataset", "data.image_size", "seed", "data.split_seed",
                           "baselines.recal_batches")},
    # the seed and the rest fix the trained supernet and the data split
    "search": {"change": ("search", "proxy", "latency", "device", "data.root", "data.workers", "data.val_limit")},
    "rank": {"change": ("proxy", "data.val_limit", "data.root", "data.workers", "device")},
}

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
    (what a resumed or reused run must share with the caller's config, ``ON_EXISTING_RUN[step]
    ["keep"]``; see :func:`effective_settings`)."""
    saved = load_run_config(run_dir)
    check_same_inputs(run_dir, "a run", {s: effective_settings(saved, s) for s in sections},
                      {s: effective_settings(cfg, s) for s in sections},
                      "resume it with its saved config (--resume without overrides) or choose another --out")
