"""Measuring latency on this machine: the modules of a space (for its lookup table) and
whole networks, with PyTorch eager or ONNX Runtime, on CPU or CUDA.

Protocol: inputs of shape ``(batch, C, H, W)`` in float32, modules in eval mode under
``torch.inference_mode``; the runtime uses ``threads`` intra-op threads (ONNX Runtime: one
inter-op thread, sequential execution, all graph optimisations). Every callable gets
``warmup`` untimed calls and then timed calls, one clock reading before and after each,
in ``rounds`` rounds that visit all callables in turn (so a slow spell of a shared machine
spreads over all of them); the entry is the median over every timed call, the spread
their interquartile range. On CUDA each call ends with a synchronize.

``timer`` and ``clock`` are injectable, so tests never depend on real speed.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stnas.core.errors import ConfigError, LatencyTableError
from stnas.latency import table as lat
from stnas.nn.model import build_model
from stnas.space.arch import Arch
from stnas.space.ops import build_op, parse_op
from stnas.space.searchspace import SearchSpace

Timer = Callable[[Callable[[], object], int, int], list]


# ------------------------------------------------------------------ device and runtime
def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown cpu"


def device_info(kind: str = "cpu") -> dict:
    """This machine's device: kind, model name, machine type and core count."""
    if lat.LATENCY_DEVICES.get(kind, "latency.device").cuda:
        if not torch.cuda.is_available():
            raise ConfigError("latency.device is cuda, but no CUDA device is available here")
        name = torch.cuda.get_device_name(0)
    else:
        name = cpu_name()
    return {"kind": kind, "name": name, "machine": platform.machine(), "cpu_count": os.cpu_count()}


def runtime_info(runtime: str, kind: str = "cpu") -> dict:
    """The runtime's name, version and execution provider (refused when not installed)."""
    info, rt = {"name": runtime, "torch": torch.__version__}, lat.LATENCY_RUNTIMES.get(runtime, "latency.runtime")
    if not rt.onnx:
        return {**info, "version": torch.__version__, "provider": kind}
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(f"latency.runtime {runtime} needs the {rt.package} package "
                          f"(pip install {rt.package})") from None
    provider = lat.LATENCY_DEVICES.get(kind, "latency.device").ort_provider
    if provider not in ort.get_available_providers():
        raise ConfigError(f"onnxruntime {ort.__version__} has no {provider} here")
    return {**info, "version": ort.__version__, "provider": provider}


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------ timing
def time_calls(fn: Callable[[], object], warmup: int, repeats: int, clock=time.perf_counter) -> list[float]:
    """``repeats`` timings of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = clock()
        fn()
        out.append((clock() - t) * 1e3)
    return out


def summarize(samples: Sequence[float]) -> dict:
    """Median, interquartile range, min and max (milliseconds) of timed calls."""
    a = np.asarray(samples, float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median_ms": float(med), "iqr_ms": float(q3 - q1), "min_ms": float(a.min()), "max_ms": float(a.max()),
            "calls": int(a.size)}


def time_interleaved(runners: dict, warmup: int, repeats: int, rounds: int, timer: Timer | None = None) -> dict:
    """``{key: summarize(...)}`` of callables timed in turn over ``rounds`` rounds."""
    timer = timer or time_calls
    per_round = max(1, math.ceil(repeats / rounds))
    samples: dict = {k: [] for k in runners}
    for _ in range(rounds):
        for k, fn in runners.items():
            samples[k] += list(timer(fn, warmup, per_round))
    return {k: summarize(v) for k, v in samples.items()}


# ------------------------------------------------------------------ runners
class _Add(nn.Module):
    def forward(self, a, b):
        return a + b


def _onnx_session(module: nn.Module, inputs: tuple, threads: int, kind: str):
    import onnxruntime as ort

    buf = io.BytesIO()
    names = [f"in{i}" for i in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buf, input_names=names, output_names=["out"], opset_version=17,
                          dynamo=False)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    provider = lat.LATENCY_DEVICES.get(kind).ort_provider
    sess = ort.InferenceSession(buf.getvalue(), so, providers=[provider])
    feed = {n: x.cpu().numpy() for n, x in zip(names, inputs)}
    return lambda: sess.run(None, feed)


def make_runner(module: nn.Module, shapes: Sequence[tuple], runtime: str, kind: str, threads: int):
    """A no-argument callable that runs ``module`` once on fixed random inputs."""
    module = module.eval()
    gen = torch.Generator().manual_seed(0)
    inputs = tuple(torch.randn(*s, generator=gen) for s in shapes)
    if lat.LATENCY_RUNTIMES.get(runtime).onnx:
        return _onnx_session(module, inputs, threads, kind)
    if lat.LATENCY_DEVICES.get(kind).cuda:
        module = module.cuda()
        inputs = tuple(x.cuda() for x in inputs)

        def run():
            module(*inputs)
            torch.cuda.synchronize()
        return run
    return lambda: module(*inputs)


def space_modules(space: SearchSpace, batch: int) -> dict[str, tuple[Callable[[], nn.Module], list[tuple]]]:
    """Every distinct module of the space: key -> (module factory, input shapes)."""
    act, n = space.activation, batch
    mods: dict = {"stem": (space.build_stem, [(n, space.input_channels, space.input_size, space.input_size)])}
    c_last, s_last = space.node_channels[-1], space.node_sizes[-1]
    mods["head"] = (space.build_head, [(n, c_last, s_last, s_last)])
    for edges, ops, key, residual in ((space.stem_edges, space.ops, lat.stem_edge_key, True),
                                      (space.branch_edges, space.branch_ops, lat.branch_edge_key, False)):
        for k, e in enumerate(edges):
            for o in e.allowed:
                name = key(space, k, o)
                if name not in mods:
                    spec = parse_op(ops[o].name)
                    mods[name] = (lambda s=spec, e=e, r=residual: build_op(s, e.c_in, e.c_out, e.stride, act, r),
                                  [(n, e.c_in, e.size_in, e.size_in)])
    for k, b in enumerate(space.branch_edges):
        shape = (n, space.node_channels[b.dst], space.node_sizes[b.dst], space.node_sizes[b.dst])
        mods.setdefault(lat.branch_add_key(space, k), (_Add, [shape, shape]))
    return mods


# ------------------------------------------------------------------ networks
def measure_networks(archs: Sequence[Arch], runtime: str = "torch", kind: str = "cpu", batch: int = 1,
                     threads: int = 1, warmup: int = 5, repeats: int = 30, rounds: int = 3,
                     timer: Timer | None = None) -> list[dict]:
    """End-to-end latency of whole networks (interleaved across them): one summary each."""
    models = [(lambda a=a: build_model(a), (a.space.input_channels, a.space.input_size, a.space.input_size))
              for a in archs]
    return measure_models(models, runtime, kind, batch, threads, warmup, repeats, rounds, timer)


def measure_models(models: Sequence[tuple[Callable[[], nn.Module], tuple[int, int, int]]], runtime: str = "torch",
                   kind: str = "cpu", batch: int = 1, threads: int = 1, warmup: int = 5, repeats: int = 30,
                   rounds: int = 3, timer: Timer | None = None) -> list[dict]:
    """End-to-end latency of any networks, given as (factory, input shape C×H×W), each built
    under ``torch.manual_seed(its index)`` and timed interleaved with the others: one summary each."""
    with torch_threads(threads), torch.inference_mode():
        runners = {}
        for i, (factory, shape) in enumerate(models):
            torch.manual_seed(i)
            runners[i] = make_runner(factory(), [(batch, *shape)], runtime, kind, threads)
        res = time_interleaved(runners, warmup, repeats, rounds, timer)
    return [res[i] for i in range(len(models))]


def build_table(space: SearchSpace, runtime: str = "torch", kind: str = "cpu", batch: int = 1, threads: int = 1,
                warmup: int = 10, repeats: int = 30, rounds: int = 3, fit_networks: int = 8, seed: int = 0,
                timer: Timer | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Measures every distinct module of ``space`` and fits the per-network overhead on
    ``fit_networks`` random networks (seeded); returns the table (``stnas.latency.table``)."""
    device, rt = device_info(kind), runtime_info(runtime, kind)
    log = log or (lambda s: None)
    mods = space_modules(space, batch)
    log(f"latency: measuring {len(mods)} distinct modules of {space.name!r} with {runtime} on {device['name']} "
        f"(batch {batch}, {threads} thread(s))")
    t0 = time.perf_counter()
    with torch_threads(threads), torch.inference_mode():
        torch.manual_seed(seed)
        runners = {k: make_runner(factory(), shapes, runtime, kind, threads) for k, (factory, shapes) in mods.items()}
        stats = time_interleaved(runners, warmup, repeats, rounds, timer)
    entries = {k: {"median_ms": v["median_ms"], "iqr_ms": v["iqr_ms"]} for k, v in stats.items()}
    log(f"latency: modules measured in {time.perf_counter() - t0:.0f} s; fitting the overhead on "
        f"{fit_networks} whole networks")
    rng = np.random.default_rng([seed, 0x1A7])
    archs = list(dict.fromkeys(space.sample(rng, "density") for _ in range(fit_networks)))
    measured = measure_networks(archs, runtime, kind, batch, threads, warmup, repeats, rounds, timer)
    settings = {"warmup": warmup, "repeats": repeats, "rounds": rounds, "fit_networks": fit_networks, "seed": seed}
    draft = lat.new_table(space, device, rt, batch, threads, settings, entries,
                          {"const_ms": 0.0, "per_module_ms": 0.0, "scale": 1.0})
    pred = lat.Predictor(draft, space)
    sums = [pred.modules_ms(a) for a in archs]
    counts = [space.num_edges + a.num_branches for a in archs]
    const, per, scale = lat.fit_overhead([m["median_ms"] for m in measured], sums, counts)
    overhead = {"const_ms": const, "per_module_ms": per, "scale": scale,
                "networks": [{"arch": str(a), "measured_ms": m["median_ms"], "modules_ms": s, "modules": c}
                             for a, m, s, c in zip(archs, measured, sums, counts)]}
    log(f"latency: table built in {time.perf_counter() - t0:.0f} s (overhead {const:+.4f} ms "
        f"{per:+.4f} ms/module, scale {scale:.3f})")
    return lat.new_table(space, device, rt, batch, threads, settings, entries, overhead)


def want_identity(space: SearchSpace, settings: dict) -> dict:
    """The identity a table must have for ``settings`` (the config's ``latency`` section) here."""
    kind = settings["device"]
    return {"space_fingerprint": space.fingerprint, "device": device_info(kind),
            "runtime": runtime_info(settings["runtime"], kind), "batch": settings["batch"],
            "threads": settings["threads"], "dtype": "float32"}


def ensure_table(space: SearchSpace, settings: dict, path: str | Path | None = None, *,
                 this_device: bool = True, timer: Timer | None = None, log=None) -> tuple[dict, Path]:
    """The table for ``settings`` (the config's ``latency`` section): ``path`` (or
    ``settings["table"]``) when given, else the cache, built first when missing.

    A given table must match the space, runtime, batch and threads, and (``this_device``)
    this machine's device and runtime versions; a cached one always must.
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    want = want_identity(space, settings)
    path = path or settings.get("table")
    if path is not None:
        table = lat.load_table(path)
        keys = list(lat.IDENTITY) if this_device else ["space_fingerprint", "batch", "threads", "dtype"]
        lat.check_compatible(table, {k: want[k] for k in keys}, f"latency table {path}")
        if not this_device and table["runtime"].get("name") != settings["runtime"]:
            raise LatencyTableError(f"latency table {path} is for runtime {table['runtime'].get('name')}, "
                                    f"not {settings['runtime']} (latency.runtime)")
        return table, Path(path)
    cached = lat.cache_path(space, want["device"], want["runtime"], settings["batch"], settings["threads"])
    if cached.is_file():
        table = lat.load_table(cached)
        lat.check_compatible(table, want, f"cached latency table {cached}")
        return table, cached
    log(f"latency: no cached table for {space.name!r} here; building it once into {cached}")
    table = build_table(space, settings["runtime"], settings["device"], settings["batch"], settings["threads"],
                        settings["warmup"], settings["repeats"], settings["rounds"], settings["fit_networks"],
                        timer=timer, log=log)
    lat.save_table(table, cached)
    return table, cached
