"""Latency on the user's device: lookup tables and the predictor (no torch here).

The measuring half (PyTorch eager / ONNX Runtime timers) is :mod:`stnas.latency.measure`;
this module only keys, stores, checks and sums, without importing torch. Parsing a budget
(``parse_latency``) and checking the ``latency`` config section are config checks
(:mod:`stnas.pipeline.checks`).

Module keys (one per distinct module a space can place; identical modules are measured once)::

    stem                                    the fixed stem (+ first block) at the input shape
    head                                    the head (1x1 conv, pool, classifier) at x_n
    op:<name>:<c_in>><c_out>:s<stride>:<size>[:res]   an op on an edge whose input is
                                            c_in x size x size (res: with its residual add)
    add:<channels>x<size>                   one element-wise add of a node's inputs

Table file (JSON, versioned; written by ``stnas.core.verified.write_json`` with its checksum
under "checksum", which is also the table's identity; validated and checked on every load)::

    {"format": "stnas-latency-table", "version": 1,
     "space": NAME, "space_fingerprint": FP, "device": {kind, name, machine, cpu_count},
     "runtime": {name, version, torch, provider}, "batch": 1, "threads": 1, "dtype": "float32",
     "settings": {warmup, repeats, rounds, fit_networks, seed},
     "entries": {KEY: {"median_ms": m, "iqr_ms": q}},
     "overhead": {"const_ms": a, "per_module_ms": b, "scale": c,
                  "networks": [{arch, measured_ms, modules_ms, modules}]},
     "created": ISO date, "checksum": sha256 of the canonical JSON of all other fields}
                                            (stnas.core.verified.content_digest)
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stnas.core.errors import CheckpointError, LatencyTableError
from stnas.core.registry import Registry
from stnas.core.units import latency_label  # noqa: F401  (also stnas.latency.table.latency_label)
from stnas.core.verified import content_digest, parse_json, read_regular, write_json
from stnas.space.cost import CostTable

if TYPE_CHECKING:
    from stnas.space.arch import Arch
    from stnas.space.searchspace import SearchSpace

FORMAT = "stnas-latency-table"
VERSION = 1
SEARCH_TABLE = "latency_table.json"  # a copy of the table a search used, in its output folder
MODEL_LATENCY = "latency.json"  # the measured latency of a chosen model, in its retrain folder
IDENTITY = ("space_fingerprint", "device", "runtime", "batch", "threads", "dtype")


# ------------------------------------------------------------------ runtimes and devices
@dataclass(frozen=True)
class Runtime:
    """A runtime that runs the modules (``latency.runtime``): ``onnx``, it runs them exported to
    ONNX (else PyTorch eager); ``package``, what it needs installed."""

    onnx: bool
    package: str


@dataclass(frozen=True)
class Device:
    """A device kind (``latency.device``): ``cuda``, a CUDA device (synchronised after each call);
    ``ort_provider``, ONNX Runtime's execution provider for it."""

    cuda: bool
    ort_provider: str


LATENCY_RUNTIMES: Registry[Runtime] = Registry("latency runtime")
LATENCY_RUNTIMES.add("torch", Runtime(False, "torch"), "PyTorch eager, under inference_mode")
LATENCY_RUNTIMES.add("onnxruntime", Runtime(True, "onnxruntime"),
                     "ONNX Runtime, all graph optimisations, sequential execution")
LATENCY_DEVICES: Registry[Device] = Registry("latency device")
LATENCY_DEVICES.add("cpu", Device(False, "CPUExecutionProvider"), "this machine's CPU")
LATENCY_DEVICES.add("cuda", Device(True, "CUDAExecutionProvider"), "the first CUDA device")


# ------------------------------------------------------------------ module keys
def op_key(op: str, c_in: int, c_out: int, stride: int, size: int, residual: bool) -> str:
    return f"op:{op}:{c_in}>{c_out}:s{stride}:{size}" + (":res" if residual else "")


def add_key(channels: int, size: int) -> str:
    return f"add:{channels}x{size}"


def stem_edge_key(space: SearchSpace, k: int, o: int) -> str:
    e = space.stem_edges[k]
    res = space.ops[o].residual and e.stride == 1 and e.c_in == e.c_out
    return op_key(space.ops[o].name, e.c_in, e.c_out, e.stride, e.size_in, res)


def branch_edge_key(space: SearchSpace, k: int, o: int) -> str:
    b = space.branch_edges[k]
    return op_key(space.branch_ops[o].name, b.c_in, b.c_out, b.stride, b.size_in, False)


def branch_add_key(space: SearchSpace, k: int) -> str:
    b = space.branch_edges[k]
    return add_key(space.node_channels[b.dst], space.node_sizes[b.dst])


def required_keys(space: SearchSpace) -> list[str]:
    """Every distinct module key the space can place, in a stable order."""
    keys = ["stem", "head"]
    keys += [stem_edge_key(space, k, o) for k, e in enumerate(space.stem_edges) for o in e.allowed]
    keys += [branch_edge_key(space, k, o) for k, b in enumerate(space.branch_edges) for o in b.allowed]
    keys += [branch_add_key(space, k) for k in range(len(space.branch_edges))]
    return list(dict.fromkeys(keys))


# ------------------------------------------------------------------ overhead fit
_OVERHEAD_MODELS = (("const",), ("const", "per_module"), ("const", "per_module", "scale"))


def _design(model: tuple, sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of the least-squares problem and the offset (``S`` when the scale is fixed at 1)."""
    cols = {"const": np.ones_like(sums), "per_module": counts, "scale": sums}
    return np.stack([cols[c] for c in model], 1), (np.zeros_like(sums) if "scale" in model else sums)


def _solve(model, y, sums, counts) -> dict | None:
    x, off = _design(model, sums, counts)
    if np.linalg.matrix_rank(x) < x.shape[1]:
        return None
    coef = dict(zip(model, np.linalg.lstsq(x, y - off, rcond=None)[0]))
    if coef.get("scale", 1.0) <= 0:
        return None
    return {"const_ms": float(coef["const"]), "per_module_ms": float(coef.get("per_module", 0.0)),
            "scale": float(coef.get("scale", 1.0))}


def fit_overhead(measured_ms: Sequence[float], modules_ms: Sequence[float],
                 modules: Sequence[int]) -> tuple[float, float, float]:
    """The per-network overhead ``measured = const + per_module * modules + scale * modules_ms``,
    least squares over whole networks; returns (const_ms, per_module_ms, scale).

    Three nested models are tried: the constant alone, constant + per-module term (scale 1),
    and all three. The one with the smallest leave-one-out mean relative error wins (a model
    needs two more networks than it has terms), so a few noisy networks cannot buy an
    extreme scale.
    """
    y, sums, counts = (np.asarray(v, float) for v in (measured_ms, modules_ms, modules))
    if len(y) == 0:
        return 0.0, 0.0, 1.0
    best, best_err = {"const_ms": float(np.mean(y - sums)), "per_module_ms": 0.0, "scale": 1.0}, np.inf
    for model in _OVERHEAD_MODELS:
        if len(y) < len(model) + 2 or _solve(model, y, sums, counts) is None:
            continue
        errs = []
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            fit = _solve(model, y[keep], sums[keep], counts[keep])
            if fit is None:
                break
            p = fit["const_ms"] + fit["per_module_ms"] * counts[i] + fit["scale"] * sums[i]
            errs.append(abs(p / y[i] - 1))
        if len(errs) == len(y) and np.mean(errs) < best_err - 1e-12:
            best, best_err = _solve(model, y, sums, counts), float(np.mean(errs))
    return best["const_ms"], best["per_module_ms"], best["scale"]


# ------------------------------------------------------------------ table files
CHECKSUM = "checksum"  # the key of a table's embedded digest


def checksum(table: dict) -> str:
    """The digest of a table's fields but its checksum (what ``write_json`` embeds)."""
    return content_digest({k: v for k, v in table.items() if k != CHECKSUM})


def identity(table: dict) -> dict:
    """What must agree for two tables, or a table and a request, to be used together."""
    return {k: table.get(k) for k in IDENTITY}


def new_table(space: SearchSpace, device: dict, runtime: dict, batch: int, threads: int, settings: dict,
              entries: dict, overhead: dict, dtype: str = "float32") -> dict:
    table = {"format": FORMAT, "version": VERSION, "space": space.name, "space_fingerprint": space.fingerprint,
             "device": device, "runtime": runtime, "batch": batch, "threads": threads, "dtype": dtype,
             "settings": settings, "entries": entries, "overhead": overhead,
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    table["checksum"] = checksum(table)
    return table


def save_table(table: dict, path: str | Path) -> Path:
    validate_table(table, str(path))
    return write_json(path, table, key=CHECKSUM)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_table(table: Any, where: str = "latency table") -> dict:
    """Raises LatencyTableError (one line) unless ``table`` is a well-formed, intact table."""
    def bad(msg: str):
        raise LatencyTableError(f"{where}: {msg}")

    if not isinstance(table, dict) or table.get("format") != FORMAT:
        bad(f"not an stnas latency table (format {FORMAT!r} expected)")
    if table.get("version") != VERSION:
        bad(f"version {table.get('version')!r} is not supported (expected {VERSION})")
    for key, kind in (("space", str), ("space_fingerprint", str), ("device", dict), ("runtime", dict),
                      ("batch", int), ("threads", int), ("dtype", str), ("entries", dict), ("overhead", dict),
                      ("checksum", str)):
        if not isinstance(table.get(key), kind) or isinstance(table.get(key), bool):
            bad(f"field {key!r} is missing or not a {kind.__name__}")
    if table["checksum"] != checksum(table):
        bad("checksum mismatch (the file was changed or damaged); rebuild it with `stnas latency build`")
    for key, e in table["entries"].items():
        if not isinstance(e, dict) or not _finite(e.get("median_ms")) or e["median_ms"] < 0:
            bad(f"entry {key!r} has no valid median_ms")
    ov = table["overhead"]
    if not all(_finite(ov.get(k)) for k in ("const_ms", "per_module_ms", "scale")) or ov["scale"] <= 0:
        bad("overhead needs finite const_ms, per_module_ms and a scale > 0")
    return table


def load_table(path: str | Path) -> dict:
    """A validated table from a JSON file, its checksum checked (never pickle)."""
    p = Path(path)
    try:
        table = parse_json(read_regular(p, "latency table"), p, "latency table")
    except CheckpointError as exc:
        raise LatencyTableError(str(exc)) from None
    return validate_table(table, str(p))


def describe(table: dict) -> str:
    """One line: the device, runtime, batch and threads of a table."""
    d, r = table["device"], table["runtime"]
    return (f"{d.get('name', '?')} ({d.get('kind', '?')}, {d.get('cpu_count', '?')} cores), {r.get('name')} "
            f"{r.get('version')}, batch {table['batch']}, {table['threads']} thread(s)")


def check_compatible(table: dict, want: dict, where: str = "latency table") -> None:
    """Refuses (LatencyTableError, one line) a table whose identity differs from ``want``
    (any subset of IDENTITY), naming the fields that differ."""
    differ = [k for k, v in want.items() if table.get(k) != v]
    if differ:
        details = "; ".join(f"{k}: table {table.get(k)!r}, wanted {want[k]!r}" for k in differ)
        raise LatencyTableError(f"{where} is for another {'/'.join(differ)} ({details[:300]}); "
                                f"build one here with `stnas latency build`")


def cache_dir() -> Path:
    """``$STNAS_CACHE/latency``, else ``~/.cache/stnas/latency``."""
    base = os.environ.get("STNAS_CACHE")
    return (Path(base) if base else Path("~/.cache/stnas").expanduser()) / "latency"


def cache_path(space: SearchSpace, device: dict, runtime: dict, batch: int, threads: int) -> Path:
    """The cache file of (space fingerprint, device, runtime, batch, threads)."""
    tag = hashlib.sha256(json.dumps([device, runtime], sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / (f"{space.name}-{space.fingerprint}-{runtime['name']}-{device['kind']}-{tag}"
                          f"-b{batch}-t{threads}.json")


# ------------------------------------------------------------------ predictor
class Predictor:
    """Predicted latency of an architecture from a table.

    Rule: ``latency(net) = const + per_module * m + scale * S``, where S is the sum of the
    table entries of the network (stem, head, every edge module, and one add at the target
    node's shape per active branch edge: a node sums its inputs), m counts the placed edge
    modules (stem edges + active branch edges), and (const, per_module, scale) are
    least-squares fitted on whole measured networks (:func:`fit_overhead`). The fit absorbs
    what isolated module timings miss or add: the framework's per-call and per-graph costs,
    and the colder caches of a whole network.

    The sum is linear in the edge choices, so like MAdds it is a cost table, ``costs``
    (:class:`stnas.space.cost.CostTable` of kind ``latency``): ``stem_ms[k, o]``, ``branch_ms[k, o]``
    with the last column "off", plus ``fixed_ms``.
    """

    def __init__(self, table: dict, space: SearchSpace):
        check_compatible(table, {"space_fingerprint": space.fingerprint})
        entries = table["entries"]
        missing = [k for k in required_keys(space) if k not in entries]
        if missing:
            raise LatencyTableError(f"latency table lacks {len(missing)} module(s) of space {space.name!r} "
                                    f"(e.g. {missing[0]}); rebuild it with `stnas latency build`")
        ms = {k: float(v["median_ms"]) for k, v in entries.items()}
        self.table, self.space = table, space
        self.const_ms = float(table["overhead"]["const_ms"])
        self.per_module_ms = float(table["overhead"]["per_module_ms"])
        self.scale = scale = float(table["overhead"].get("scale", 1.0))
        self.fixed_ms = scale * (ms["stem"] + ms["head"]) + self.const_ms + self.per_module_ms * space.num_edges
        self.stem_ms = np.full((space.num_edges, len(space.ops)), np.inf)
        for k, e in enumerate(space.stem_edges):
            for o in e.allowed:
                self.stem_ms[k, o] = scale * ms[stem_edge_key(space, k, o)]
        self.branch_ms = np.full((len(space.branch_edges), len(space.branch_ops) + 1), np.inf)
        self.branch_ms[:, -1] = 0.0
        for k, b in enumerate(space.branch_edges):
            for o in b.allowed:
                self.branch_ms[k, o] = (scale * (ms[branch_edge_key(space, k, o)] + ms[branch_add_key(space, k)])
                                        + self.per_module_ms)
        self.costs = CostTable("latency", self.stem_ms, self.branch_ms, self.fixed_ms,
                               [e.allowed for e in space.stem_edges], [b.allowed for b in space.branch_edges])

    def __call__(self, arch: Arch) -> float:
        return self.costs(arch)

    def modules_ms(self, arch: Arch) -> float:
        """S, the sum of the table entries alone (no fitted overhead)."""
        modules = self.space.num_edges + arch.num_branches
        return (self(arch) - self.const_ms - self.per_module_ms * modules) / self.scale

    def min_ms(self) -> float:
        """The smallest predicted latency of any architecture of the space."""
        return self.costs.min()

    def describe(self) -> str:
        return describe(self.table)
