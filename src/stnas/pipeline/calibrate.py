"""Calibration: the unit costs a plan multiplies (:mod:`stnas.pipeline.plan`), measured on
this machine in a few seconds and cached per machine, space and data shape.

What each stage measures (seconds; untimed warm-up first; the run's batch sizes, its data
through its loaders, so data loading is included):

* ``supernet``: ``step_s``, a training step with SGD, the mean over steps of the
  architectures the run's own sampler draws at steps spread over the run; ``phase_step_s``,
  the same with the sampling phase's optimizer step (SGLD; its optimizer step and SGD's timed
  alone, on the same gradients, and their difference added); ``checkpoint_s`` (model and
  optimizer), ``weights_s`` (an epoch file or pool sample) and ``log_s`` (one fsync'd line of
  metrics.jsonl).
* ``search``: ``eval_s``, one proxy evaluation (extract, BN recalibration on
  ``proxy.recal_batches`` batches, all of search-val), the mean over architectures drawn
  within the search's targets in turn; ``load_s``, loading a weight source; ``log_s``, one
  proxy-cache line.
* ``baselines``: ``step_s`` per baseline network the stage trains (a few steps each, the
  retraining recipe); the other costs are retraining's.
* ``retrain``: ``step_s`` per training (an architecture string, or a MAdds target whose
  window ``[floor x B, B]`` the architectures are drawn from), ``checkpoint_s``, ``log_s``
  and ``eval_image_s`` (test evaluation, per image); ``export``: ``export_s``, writing one
  model directory of a random network of the space (cached per machine and space alone).

Steps are timed until there are at least ``LEAST`` of them and ``TIME_BOX`` seconds' worth
(at most ``MOST``). Measurements run in a process of their own
(:mod:`stnas.pipeline.calibration_process`), in their own RNG scope and writing only into a
temporary folder, so the run that follows is what it would have been, and as fast: timed in the
run's process, torchvision's networks had left it 10-20% slower for the supernet. A stage
measured while other processes kept more than ``LOAD_LIMIT`` cores busy plans this run only and
is not cached.
A stage's costs are cached in ``$STNAS_CACHE/plan`` (default ``~/.cache/stnas/plan``), one
checksummed JSON per key: the SHA-256 of what they depend on (machine, torch, threads,
device, space, input shape, dataset, batch sizes, sharing, amp, channels_last, the proxy's
batches and search-val size, the targets).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from stnas.core.alloc import warm_allocator
from stnas.core.checkpoint import save_checkpoint
from stnas.core.errors import CheckpointError, StnasError, first_line
from stnas.core.units import Budget, budget_label, parse_budget
from stnas.core.verified import append_jsonl, content_digest, read_json, write_json
from stnas.core.weights import load_weights, save_weights
from stnas.data.datasets import dataset_split, get_dataset, make_loader
from stnas.latency.measure import device_info
from stnas.nn.baselines import build
from stnas.nn.model import build_model
from stnas.nn.supernet import Supernet
from stnas.pipeline.baselines import input_shape
from stnas.pipeline.baselines import plan as baselines_plan
from stnas.pipeline.calibration_process import LoadMeter, measure_isolated
from stnas.pipeline.settings import data_spec, sharing
from stnas.pipeline.supernet import sampler, sampling_phase
from stnas.space.arch import Arch
from stnas.train.engine import eval_sums, param_groups, use_amp, use_channels_last
from stnas.train.recalibrate import fixed_batches, recalibrate_bn
from stnas.train.recipe import MAIN_OPTIMIZER, OPTIMIZERS

VERSION = 7  # 2: six proxy evaluations after two untimed; 3: baseline networks timed; 4: export;
# 5: measured in a process of its own, and not cached when other processes were busy;
# 6: glibc thresholds in the child; 7: and in the run (stnas.core.alloc)
WARMUP = 2  # untimed steps before the timed ones
LEAST, MOST, TIME_BOX = 6, 40, 3.0  # timed steps: at least LEAST and TIME_BOX seconds, at most MOST
BASELINE_SHARE = 0.25  # of LEAST, MOST and TIME_BOX: each baseline network's timed steps
EVALS, EVAL_WARMUP = 6, 2  # timed proxy evaluations, after untimed ones (each a new architecture)
RETRAIN_ARCHS = 2  # architectures timed per training target
TEST_BATCH = 256  # the retraining's test evaluation batch (stnas.pipeline.retrain)
TUNABLE = ("WARMUP", "LEAST", "MOST", "TIME_BOX", "BASELINE_SHARE", "EVALS", "EVAL_WARMUP", "RETRAIN_ARCHS")
LOAD_LIMIT = 0.25  # cores: other processes busier than this during a measurement -> not cached


def cache_dir() -> Path:
    """``$STNAS_CACHE/plan``, else ``~/.cache/stnas/plan``."""
    base = os.environ.get("STNAS_CACHE")
    return (Path(base) if base else Path("~/.cache/stnas").expanduser()) / "plan"


def floor_of(se: dict, budget: int | None) -> int | None:
    """The lower MAdds bound of a budget's window (``search.budget_floor``, ``min_madds``)."""
    if budget is None:
        return se["min_madds"]
    return max(se["min_madds"] or 0, math.ceil(float(se["budget_floor"] or 0.0) * budget)) or None


def madds_targets(se: dict) -> list[int | None]:
    """The MAdds budgets the search's targets fall in (None: a latency target without one)."""
    return sorted(set(se["budgets"])) or [None]


def retrain_labels(se: dict) -> list[str]:
    """One label per retraining a run makes: its targets (MAdds budgets, each with every latency budget)."""
    lat = se.get("latency_budgets") or [None]
    return [budget_label(b) if b else "any" for b in madds_targets(se) for _ in lat]


def data_sizes(cfg: dict, space, stages, ranks: int = 1) -> dict:
    """The image counts the plan's arithmetic needs, from the datasets themselves."""
    sizes = {"ranks": ranks}
    if "supernet" in stages:
        sizes["search_train"] = len(dataset_split(data_spec(cfg), space, "search-train", cfg["data"]["limit"]))
    if "search" in stages:
        sizes["search_val"] = len(dataset_split(data_spec(cfg), space, "search-val", cfg["data"]["val_limit"]))
    if "retrain" in stages or "baselines" in stages:
        sizes["train"], sizes["test"] = (len(_retrain_split(cfg, space, s)) for s in ("train", "test"))
    if "baselines" in stages:  # the networks' input: (channels, side, classes)
        sizes["input"] = list(input_shape(cfg, space))
    return sizes


def _retrain_split(cfg: dict, space, split: str):
    """What :mod:`stnas.pipeline.retrain` trains (train, ``retrain.limit``) and tests on."""
    d = cfg["data"]
    return get_dataset(d["dataset"], split, d["root"], image_size=d["image_size"] or space.input_size,
                       split_seed=data_spec(cfg).data_seed, limit=cfg["retrain"]["limit"] if split == "train" else None)


def baseline_budgets(cfg: dict, sizes: dict) -> tuple[list[Budget], int]:
    """The baselines stage's budgets without their latency limits, and how many of them have a
    pick to retrain under the extra seeds (none for ``stnas baselines``, ``sizes["standalone"]``)."""
    se = cfg["search"]
    targets = {Budget(b, se["max_params"]).label for b in madds_targets(se)}
    if cfg["baselines"]["budgets"]:
        budgets = [parse_budget(b, "baselines.budgets") for b in cfg["baselines"]["budgets"]]
        budgets = [Budget(b.madds, b.params) for b in budgets]
    else:
        budgets = [Budget(b, se["max_params"]) for b in madds_targets(se)]
    picks = 0 if sizes.get("standalone") else sum(b.label in targets for b in budgets)
    return budgets, picks


# ------------------------------------------------------------------ timing helpers
def _timed(unit: Callable[[int], object], device: torch.device, share: float = 1.0,
           warmup: int | None = None, count: int | None = None) -> float:
    """The mean seconds of ``unit(i)`` over the timed calls: after ``warmup`` untimed ones, at
    least ``share`` × LEAST and ``share`` × TIME_BOX seconds' worth, at most ``share`` × MOST
    (``count``: exactly that many)."""
    warmup = WARMUP if warmup is None else warmup
    least, most = (count, count) if count else (max(1, round(LEAST * share)), max(1, round(MOST * share)))
    box = 0.0 if count else TIME_BOX * share
    times: list[float] = []
    for i in range(warmup + most):
        t = time.perf_counter()
        unit(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
            if len(times) >= least and sum(times) >= box:
                break
    return float(np.mean(times))


def _batches(dataset, batch_size: int, seed: int, device: torch.device, channels_last: bool, workers: int = 0):
    """Training batches without end, through the run's loader (epoch after epoch)."""
    for epoch in itertools.count():
        for x, y in make_loader(dataset, batch_size, train=True, seed=seed, epoch=epoch, device=device,
                                workers=workers):
            x = x.to(device)
            yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y.to(device)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def _train_unit(model: nn.Module, forward, batches, recipe: dict, optimizer, device: torch.device, amp: bool):
    """One training step as the engine takes it: forward, loss, backward, clip, step, counts."""
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])

    def unit(i: int) -> None:
        x, y = next(batches)
        with _autocast(device, amp):
            logits = forward(x, i)
            loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe["grad_clip"]:
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], recipe["grad_clip"])
        optimizer.step()
        _ = loss.item(), (logits.argmax(1) == y).sum().item()  # the engine's per-step host syncs

    return unit


def _sgd(model: nn.Module, recipe: dict):
    return torch.optim.SGD(param_groups(model, recipe["weight_decay"]), lr=recipe["min_lr"] or recipe["lr"],
                           momentum=recipe["momentum"], nesterov=recipe["nesterov"] and recipe["momentum"] > 0)


def _file_costs(model: nn.Module, optimizer, tmp: Path) -> dict:
    """Seconds to write a checkpoint and a weights file, read the weights back, log a line."""
    t = time.perf_counter()
    save_checkpoint(tmp / "ckpt.pt", {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    t1 = time.perf_counter()
    save_weights(model.state_dict(), tmp / "w.safetensors")
    t2 = time.perf_counter()
    model.load_state_dict(load_weights(tmp / "w.safetensors", what="calibration weights")[0])
    t3 = time.perf_counter()
    for k in range(3):
        append_jsonl(tmp / "log.jsonl", {"step": k, "loss": 1.0})
    return {"checkpoint_s": t1 - t, "weights_s": t2 - t1, "load_s": t3 - t2, "log_s": (time.perf_counter() - t3) / 3}


# ------------------------------------------------------------------ the stages' measurements
def measure_supernet(cfg: dict, space, device: torch.device, tmp: Path, sizes: dict) -> dict:
    r = cfg["supernet"]
    train = dataset_split(data_spec(cfg), space, "search-train", cfg["data"]["limit"])
    cl, amp = use_channels_last(r), use_amp(r, device)
    model = Supernet(space, **sharing(cfg)).to(device)
    if cl:
        model.to(memory_format=torch.channels_last)
    model.train()
    draw = sampler(cfg, space)
    spe = max(1, sizes["search_train"] // sizes["ranks"] // r["batch_size"])
    stride = max(1, r["epochs"] * spe // (WARMUP + MOST))
    batches = _batches(train, r["batch_size"], cfg["seed"], device, cl, cfg["data"]["workers"])
    forward = lambda x, i: model(x, draw(i * stride))  # noqa: E731
    sgd = _sgd(model, r)
    units = {"step_s": _timed(_train_unit(model, forward, batches, r, sgd, device, amp), device)}
    units["phase_step_s"] = units["step_s"]
    if r["optimizer"] != MAIN_OPTIMIZER:  # a phase step: the same, but for the optimizer's own step
        phase = sampling_phase(cfg)
        opt = OPTIMIZERS.get(r["optimizer"])(param_groups(model, r["weight_decay"]), r, phase, len(train), 0)
        # on the gradients of the last step: optimizer steps alone
        extra = (_timed(lambda i: opt.step(), device, warmup=1, count=3)
                 - _timed(lambda i: sgd.step(), device, warmup=1, count=3))
        units["phase_step_s"] = units["step_s"] + max(0.0, extra)  # the phase's optimizer does SGD's work and more
    costs = _file_costs(model, sgd, tmp)
    return dict(units, **{k: costs[k] for k in ("checkpoint_s", "weights_s", "log_s")})


def measure_search(cfg: dict, space, device: torch.device, tmp: Path, sizes: dict) -> dict:
    """One evaluation as :class:`stnas.proxy.scorer.Proxy` runs it, on untrained weights."""
    px, r, se = cfg["proxy"], cfg["supernet"], cfg["search"]
    cl, amp = use_channels_last(r), use_amp(r, device)
    train = dataset_split(data_spec(cfg), space, "search-train", None, augment=False)
    val = dataset_split(data_spec(cfg), space, "search-val", cfg["data"]["val_limit"])

    def put(x):
        x = x.to(device)
        return x.contiguous(memory_format=torch.channels_last) if cl else x

    recal = fixed_batches(train, px["batch_size"], px["recal_batches"], data_spec(cfg).data_seed, put=put)
    val_batches = [(x.to(device), y.to(device)) for x, y in make_loader(val, px["batch_size"], train=False)]
    supernet = Supernet(space, **sharing(cfg)).to(device)
    rng = np.random.default_rng(0)
    budgets = madds_targets(se)
    archs = [space.sample_constrained(rng, b, floor_of(se, b), se["max_params"])
             for b in itertools.islice(itertools.cycle(budgets), EVALS + EVAL_WARMUP)]

    def unit(i: int) -> None:
        net = supernet.extract(archs[i])
        if cl:
            net = net.to(memory_format=torch.channels_last)
        recalibrate_bn(net, recal, amp)
        eval_sums(net, val_batches, device, cl, amp)

    units = {"eval_s": _timed(unit, device, warmup=EVAL_WARMUP, count=EVALS)}
    costs = _file_costs(supernet, _sgd(supernet, r), tmp)
    return dict(units, load_s=costs["load_s"], log_s=costs["log_s"])


def measure_retrain(cfg: dict, space, device: torch.device, tmp: Path, sizes: dict,
                    archs: list[Arch] | None = None) -> dict:
    """``archs``: the architectures to time (``stnas retrain``); default, per target, some drawn in its window."""
    r, se = cfg["retrain"], cfg["search"]
    cl, amp = use_channels_last(r), use_amp(r, device)
    train, test = (_retrain_split(cfg, space, s) for s in ("train", "test"))
    batches = _batches(train, r["batch_size"], cfg["seed"], device, cl, cfg["data"]["workers"])
    rng = np.random.default_rng(0)
    if archs is not None:
        groups = {str(a): [a] * RETRAIN_ARCHS for a in archs}
    else:
        groups = {budget_label(b) if b else "any": [space.sample_constrained(rng, b, floor_of(se, b), se["max_params"])
                                                   for _ in range(RETRAIN_ARCHS)] for b in madds_targets(se)}
    step_s: dict[str, float] = {}
    for label, group in groups.items():
        times = []
        for arch in group:
            model = build_model(arch).to(device)
            if cl:
                model.to(memory_format=torch.channels_last)
            model.train()
            unit = _train_unit(model, lambda x, i, m=model: m(x), batches, r, _sgd(model, r), device, amp)
            times.append(_timed(unit, device, share=0.5, warmup=2))
        step_s[label] = float(np.mean(times))
    model.eval()
    test_batches = list(itertools.islice(make_loader(test, TEST_BATCH, train=False), 3))
    n = sum(len(y) for _, y in test_batches[1:]) or 1
    eval_sums(model, test_batches[:1], device, cl, amp)
    t = time.perf_counter()
    eval_sums(model, test_batches[1:], device, cl, amp)
    eval_image_s = (time.perf_counter() - t) / n if len(test_batches) > 1 else 0.0
    costs = _file_costs(model, _sgd(model, r), tmp)
    return {"step_s": step_s, "eval_image_s": eval_image_s, "checkpoint_s": costs["checkpoint_s"],
            "log_s": costs["log_s"]}


def measure_baselines(cfg: dict, space, device: torch.device, tmp: Path, sizes: dict) -> dict:
    """``step_s``: a training step (the retraining recipe) of each baseline network the stage
    will train. Scaling the picks' step by MAdds misses the per-layer cost of torchvision's
    deeper networks on small inputs (on digits: 2.4× the stage's estimate)."""
    r = cfg["retrain"]
    cl, amp = use_channels_last(r), use_amp(r, device)
    batches = _batches(_retrain_split(cfg, space, "train"), r["batch_size"], cfg["seed"], device, cl,
                       cfg["data"]["workers"])
    budgets, _ = baseline_budgets(cfg, sizes)
    nets = {b.key: b for p in baselines_plan(cfg, budgets, tuple(sizes["input"])) for b in p["networks"]}
    step_s = {}
    for key, b in nets.items():
        model = build(b).to(device)
        if cl:
            model.to(memory_format=torch.channels_last)
        model.train()
        unit = _train_unit(model, lambda x, i, m=model: m(x), batches, r, _sgd(model, r), device, amp)
        step_s[key] = _timed(unit, device, share=BASELINE_SHARE, warmup=1)
    return {"step_s": step_s}


def measure_export(cfg: dict, space, device: torch.device, tmp: Path, sizes: dict) -> dict:
    """Writing one model directory (safetensors, ONNX, .pt2) of a random network of the space
    (seed 0). Tracing time grows with the modules: timed on the space's largest network, every
    branch on, the digits retraining stage was planned at 1.6 times what it took."""
    from stnas.deploy.export import export_model
    from stnas.deploy.formats import preprocessing

    arch = space.sample(np.random.default_rng(0))
    model = build_model(arch).eval()
    t = time.perf_counter()
    export_model(model, arch, tmp / "model", preprocessing=preprocessing(data_spec(cfg), space))
    return {"export_s": time.perf_counter() - t}


MEASURES = {"supernet": measure_supernet, "search": measure_search, "retrain": measure_retrain,
            "export": measure_export, "baselines": measure_baselines}
NEEDS = {"supernet": ("supernet",), "search": ("search",), "retrain": ("retrain", "export"),
         "baselines": ("retrain", "export", "baselines")}  # a stage's measures


def identity(cfg: dict, space, stage: str, device: torch.device, sizes: dict, archs=None) -> dict:
    """What a stage's unit costs depend on (the cache key)."""
    d, se = cfg["data"], cfg["search"]
    base = {"version": VERSION, "stage": stage, "machine": device_info("cuda" if device.type == "cuda" else "cpu"),
            "host": platform.node(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": str(device), "space": space.fingerprint, "dataset": str(d["dataset"]),
            "input": [space.input_channels, d["image_size"] or space.input_size], "workers": d["workers"]}
    recipe = {k: cfg["retrain" if stage in ("retrain", "baselines") else "supernet"][k]
              for k in ("batch_size", "amp", "channels_last", "grad_clip")}
    sharing = {k: cfg["supernet"][k] for k in ("kernel_sharing", "width_sharing", "sampling", "optimizer")}
    windows = [[b, floor_of(se, b)] for b in madds_targets(se)] + [se["max_params"]]
    extra = {"supernet": {**recipe, **sharing},
             "search": {**recipe, **sharing, "proxy": [cfg["proxy"]["batch_size"], cfg["proxy"]["recal_batches"]],
                        "val": sizes.get("search_val"), "windows": windows},
             "retrain": {**recipe, "test": sizes.get("test"),
                         "windows": [str(a) for a in archs] if archs is not None else windows},
             "baselines": {**recipe, "budgets": [b.label for b in baseline_budgets(cfg, sizes)[0]],
                           "shape": sizes.get("input"),
                           **{k: cfg["baselines"][k] for k in ("families", "forms")}},
             "export": {}}[stage]
    return {**base, **extra}


def measure_here(cfg: dict, space, stages, device: torch.device, sizes: dict,
                 archs: list[Arch] | None = None) -> dict:
    """Measures ``stages`` in this process: ``{stage: {"units", "took", "others"}}`` (seconds,
    and the cores other processes used meanwhile, :class:`LoadMeter`)."""
    out = {}
    for stage in stages:
        meter = LoadMeter()
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="stnas-calibration-") as tmp, \
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            kw = {"archs": archs} if stage == "retrain" else {}
            units = MEASURES[stage](cfg, space, device, Path(tmp), sizes, **kw)
        out[stage] = {"units": units, "took": time.perf_counter() - t, "others": meter.others()}
    return out


def _measure(cfg: dict, space, stages: list[str], device: torch.device, sizes: dict, archs) -> dict:
    """Measures in a child process (stnas.pipeline.calibration_process), as ``measure_here`` would."""
    return measure_isolated({"cfg": cfg, "space": space.config, "stages": stages, "device": str(device),
                             "sizes": sizes, "archs": [str(a) for a in archs] if archs is not None else None,
                             "constants": {n: globals()[n] for n in TUNABLE}, "threads": torch.get_num_threads()})


def calibrate(cfg: dict, space, stages, device: torch.device, *, sizes: dict, archs: list[Arch] | None = None,
              write_cache: bool = True, log: Callable[[str], None] | None = None) -> tuple[dict, float, list[str]]:
    """The unit costs of ``stages`` (cached ones read, the others measured and, with
    ``write_cache``, cached); returns (costs by stage, seconds spent measuring, stages read from the cache).

    A stage measured while other processes used more than ``LOAD_LIMIT`` cores is used for this
    plan but not cached (its costs would be too high for every later run), and ``log`` says so."""
    units, cached, todo = {}, [], {}
    for stage in dict.fromkeys(m for s in stages for m in NEEDS[s]):
        ident = identity(cfg, space, stage, device, sizes, archs)
        path = cache_dir() / f"{stage}-{space.name}-{content_digest(ident)[:16]}.json"
        try:
            rec = read_json(path, "calibration cache") if path.is_file() else None
        except CheckpointError:
            rec = None  # a damaged entry is measured again
        if rec is not None and rec.get("identity") == ident:
            units[stage] = rec["units"]
            cached.append(stage)
        else:
            todo[stage] = (ident, path)
    if not todo:
        return units, 0.0, cached
    if log:
        log(f"calibrating: timing {', '.join(todo)} on this machine (cached afterwards)")
    spent, busy = 0.0, []
    for stage, m in _measure(cfg, space, list(todo), device, sizes, archs).items():
        units[stage], spent = m["units"], spent + m["took"]
        others = m["others"]
        if others is not None and others > LOAD_LIMIT:
            busy.append(f"{stage} {others:.1f}")
            continue
        if write_cache:
            ident, path = todo[stage]
            try:
                write_json(path, {"identity": ident, "units": units[stage], "measured_s": m["took"],
                                  "others_cores": others, "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
            except OSError:
                pass  # an unwritable cache only costs measuring again
    if busy and log:
        log(f"calibrating: other processes were busy (cores they used: {', '.join(busy)}), so those estimates "
            f"may be long and are not cached; plan on a quiet machine for a cached calibration")
    return units, spent, cached


def child_main(job_path: str, out_path: str) -> int:
    """The calibration's child process (:mod:`stnas.pipeline.calibration_process`): measures the
    job and writes the result, a StnasError as its class and message."""
    from stnas.space.searchspace import SearchSpace

    job = read_json(job_path, "calibration job")
    try:
        for name, value in job["constants"].items():  # the parent's step counts (tests shorten them)
            if name in TUNABLE:
                globals()[name] = value
        torch.set_num_threads(int(job["threads"]))
        space = SearchSpace(job["space"])
        archs = [space.arch(a) for a in job["archs"]] if job["archs"] is not None else None
        result = measure_here(job["cfg"], space, job["stages"], torch.device(job["device"]), job["sizes"], archs)
    except StnasError as exc:
        result = {"error": first_line(exc, 500), "kind": type(exc).__name__}
    write_json(out_path, result)
    return 0


if __name__ == "__main__":
    warm_allocator()  # as the run's process has it (stnas.core.alloc)
    sys.exit(child_main(*sys.argv[1:3]))
