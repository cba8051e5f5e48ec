"""Pipeline step 6: train a found architecture from scratch and report its test accuracy.

``build_model(arch)`` is trained with the config's ``retrain`` recipe (the preset's, e.g.
SGD Nesterov, warmup then cosine, label smoothing, weight decay) by the shared
:class:`stnas.train.Trainer`, so checkpoints, exact resume and torchrun work as for the
supernet. Retraining is not search: it uses the whole ``train`` split (or a stratified
``retrain.limit`` subset of it) and evaluates on ``test`` once, at the end.

Run directory::

    config.yaml, space.yaml, arch.json   what was trained
    checkpoints/                         rotating training checkpoints (resume)
    metrics.jsonl, tb/                   training curves
    model/                               the final model (stnas.export: safetensors, arch, ONNX)
    model_card.json                      architecture, cost, test accuracy, recipe, time, hardware
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import time
from pathlib import Path

import torch
import yaml

from stnas import dist
from stnas.arch import Arch, save_arch
from stnas.checkpoint import CheckpointManager
from stnas.config import check_same_settings, parse_count, save_config
from stnas.data import check_data_fits, get_dataset
from stnas.deploy import preprocessing
from stnas.errors import ConfigError
from stnas.export import dir_space, export_model
from stnas.fileio import append_jsonl, write_json, write_text
from stnas.model import build_model
from stnas.space import SearchSpace, load_arch, load_space
from stnas.train import Trainer, evaluate, use_amp, use_channels_last

CARD = "model_card.json"


def hardware(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


# what a resumed (or reused) retrain run must share with the caller's config: the recipe, the
# seed and the data it reads (not the supernet's search-train/search-val settings)
RESUME_SECTIONS = ("retrain", "data.dataset", "data.image_size", "seed")


def prepare_run_dir(run_dir: Path, resume: bool, ctx: dist.Context) -> None:
    """Refuses to overwrite an existing run unless resuming."""
    if resume:
        if not (run_dir / "config.yaml").is_file() or not (run_dir / "arch.json").is_file():
            raise ConfigError(f"cannot resume: {run_dir} holds no retrain run (no config.yaml and arch.json)")
    elif (run_dir / CARD).exists() or (run_dir / "checkpoints").exists():
        raise ConfigError(f"{run_dir} already holds a retrain run; pass --resume to continue it "
                          f"or choose another --out")
    dist.barrier(ctx.world_size)


def run_arch(run_dir: str | Path) -> Arch:
    """The architecture a retrain run directory trains (its ``arch.json`` in its ``space.yaml``)."""
    run_dir = Path(run_dir)
    return load_arch(run_dir / "arch.json", dir_space(run_dir, None))


def _start_step(run_dir: Path, resume: bool | str) -> int:
    """The step a resumed run continues from (for its throughput)."""
    if resume is True:
        found = CheckpointManager(run_dir).checkpoints()
        return found[-1][0] if found else 0
    m = re.search(r"step_(\d+)\.pt$", str(resume)) if resume else None
    return int(m.group(1)) if m else 0


def _splits(cfg: dict, space: SearchSpace):
    d, limit = cfg["data"], cfg["retrain"]["limit"]
    if limit is not None:
        limit = parse_count(limit, "retrain.limit")
    check_data_fits(space, d["dataset"], d["image_size"])
    kw = dict(image_size=d["image_size"] or space.input_size, split_seed=cfg["seed"])
    return (get_dataset(d["dataset"], "train", d["root"], limit=limit, **kw),
            get_dataset(d["dataset"], "test", d["root"], **kw))


def log_test_scalars(run_dir: Path, step: int, test: dict) -> None:
    """The test result as a ``split: test`` record in metrics.jsonl and ``retrain/test_*`` in TensorBoard."""
    rec = {"step": step, "split": "test", "top1": test["top1"], "top5": test["top5"], "loss": test["loss"],
           "images": test["n"]}
    append_jsonl(run_dir / "metrics.jsonl", rec)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir / "tb")) as writer:
        for key in ("top1", "top5", "loss"):
            writer.add_scalar(f"retrain/test_{key}", rec[key], step)


def retrain(arch: Arch | str, cfg: dict, run_dir: str | Path, resume: bool | str = False,
            ctx: dist.Context | None = None) -> dict:
    """Trains ``build_model(arch)`` from scratch into ``run_dir``; returns the model card.

    Args:
        arch: the architecture (or its JSON file or string); its space must be the
            config's (``cfg["preset"]``).
        cfg: a resolved config (``stnas.config.resolve``); its ``retrain`` section is the recipe.
        resume: True (latest checkpoint) or a checkpoint path to continue from.
        ctx: the process context (default ``dist.setup(cfg["device"])``).
    """
    run_dir = Path(run_dir)
    ctx = ctx or dist.setup(cfg["device"])
    space = load_space(cfg["preset"])
    arch = space.arch(arch, f" of preset {cfg['preset']!r} (pass --preset with the architecture's space)")
    prepare_run_dir(run_dir, bool(resume), ctx)
    if resume:
        saved = run_arch(run_dir)
        if saved != arch:
            raise ConfigError(f"{run_dir} retrains {saved}, not {arch}; drop --arch to resume it")
        check_same_settings(run_dir, cfg, RESUME_SECTIONS)
        if resume is True and (run_dir / CARD).is_file():
            return json.loads((run_dir / CARD).read_text())  # already finished
    train_set, test_set = _splits(cfg, space)
    prep = preprocessing(cfg, space)
    if ctx.is_main:
        save_config(cfg, run_dir)
        write_text(run_dir / "space.yaml", yaml.safe_dump({"space": space.config}, sort_keys=False))
        save_arch(arch, run_dir / "arch.json")
    recipe, seed = cfg["retrain"], cfg["seed"]
    torch.manual_seed(seed)
    model = build_model(arch).to(ctx.device)
    trainer = Trainer(model, recipe, train_set, run_dir, ctx, seed=seed, forward=lambda m, x, step: m(x),
                      workers=cfg["data"]["workers"], desc="retrain")
    start = _start_step(run_dir, resume)
    summary = trainer.fit(resume=resume)
    model.eval()
    t_eval = time.perf_counter()
    test = evaluate(model, test_set, 256, ctx, use_channels_last(recipe), use_amp(recipe, ctx.device))
    steps_run = summary["steps"] - start
    card = {
        "arch": str(arch), "arch_json": arch.to_json(), "space": space.name, "space_fingerprint": space.fingerprint,
        "madds": arch.madds, "params": arch.params,
        "top1": test["top1"], "top5": test["top5"], "test_loss": test["loss"],
        "dataset": cfg["data"]["dataset"], "test_images": test["n"], "train_images": len(train_set),
        "recipe": dict(recipe), "epochs": recipe["epochs"], "steps": summary["steps"],
        "wall_s": summary["wall_s"], "test_s": time.perf_counter() - t_eval,
        "resumed_at_step": start if resume else None,
        "images_per_s": steps_run * recipe["batch_size"] * ctx.world_size / max(1e-9, summary["wall_s"]),
        "hardware": hardware(ctx.device), "device": str(ctx.device), "torch": torch.__version__,
        "world_size": ctx.world_size, "seed": seed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": {"weights": "model/model.safetensors", "arch": "model/arch.json", "onnx": "model/model.onnx",
                  "pt2": "model/model.pt2", "card": "model/model_card.json"},
        "weights": "retrained from scratch", "preprocessing": prep,
    }
    if ctx.is_main:
        log_test_scalars(run_dir, summary["steps"], test)
        export_model(model, arch, run_dir / "model",
                     metadata={"top1": f"{test['top1']:.6f}", "dataset": card["dataset"], "seed": str(seed)},
                     preprocessing=prep, card=card)
        write_json(run_dir / CARD, card)
    dist.barrier(ctx.world_size)
    return card
