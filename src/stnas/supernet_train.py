"""Pipeline step 2: train the supernet and collect the parameter-sample pool.

Each step trains one architecture drawn uniformly with the (seed, step) sampler, so
every torchrun rank trains the same one. The closing sampling phase (SGLD or plain SGD,
see :class:`stnas.train.SamplingPhase`) fills ``RUN_DIR/pool``.

Run directory::

    config.yaml            resolved config
    space.yaml             the space definition (so the run is self-contained)
    checkpoints/           rotating training checkpoints (resume)
    pool/                  parameter samples (safetensors) + index.json
    epochs/                weights at every epoch end (stability analysis)
    supernet.safetensors   final shared weights
    supernet.json          summary (steps, time, throughput, final loss/acc)
    metrics.jsonl, tb/     training curves
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch
import yaml

from stnas import dist
from stnas.config import check_same_settings, pool_lr, save_config
from stnas.data import get_dataset
from stnas.datainfo import check_fits
from stnas.errors import ConfigError
from stnas.fileio import write_json, write_text
from stnas.space import SearchSpace, load_space
from stnas.supernet import Supernet
from stnas.train import SamplingPhase, Trainer, save_weights


def check_data_fits(space: SearchSpace, dataset, image_size=None) -> None:
    check_fits(space, dataset, image_size)  # channels, classes and (unless resized) image size


def dataset_split(cfg: dict, space: SearchSpace, split: str, limit_key: str | None = None, augment=None):
    """One split of the run's dataset, sized by the config."""
    d = cfg["data"]
    check_data_fits(space, d["dataset"], d["image_size"])
    return get_dataset(d["dataset"], split, d["root"], image_size=d["image_size"] or space.input_size,
                       val_fraction=d["val_fraction"], split_seed=cfg["seed"],
                       limit=d[limit_key] if limit_key else None, augment=augment)


def sampling_phase(cfg: dict) -> SamplingPhase:
    """The sampling phase a config describes (its length in steps is set by the Trainer)."""
    p = cfg["pool"]
    return SamplingPhase(optimizer=cfg["supernet"]["optimizer"], samples=p["samples"], steps=0,
                         extra=p["extra_steps"] > 0, lr=pool_lr(cfg),
                         sgld=dict(cfg["sgld"]))


# what a resumed (or reused) supernet run must share with the caller's config
RESUME_SECTIONS = ("preset", "supernet", "sgld", "pool", "data", "seed")


def prepare_run_dir(run_dir: Path, resume: bool, ctx: dist.Context) -> None:
    """Refuses to overwrite an existing run unless resuming."""
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"cannot resume: {run_dir} holds no run (no config.yaml)")
    elif (run_dir / "checkpoints").exists() or (run_dir / "supernet.safetensors").exists():
        raise ConfigError(f"{run_dir} already holds a supernet run; pass --resume to continue it "
                          f"or choose another --out")
    dist.barrier(ctx.world_size)


def train_supernet(cfg: dict, run_dir: str | Path, resume: bool | str = False,
                   ctx: dist.Context | None = None) -> dict:
    """Trains the supernet of ``cfg["preset"]`` into ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    ctx = ctx or dist.setup(cfg["device"])
    prepare_run_dir(run_dir, bool(resume), ctx)
    if resume:
        check_same_settings(run_dir, cfg, RESUME_SECTIONS)
    space = load_space(cfg["preset"])
    train_set = dataset_split(cfg, space, "search-train", "limit")
    if ctx.is_main:
        save_config(cfg, run_dir)
        write_text(run_dir / "space.yaml", yaml.safe_dump({"space": space.config}, sort_keys=False))
    torch.manual_seed(cfg["seed"])
    model = Supernet(space).to(ctx.device)
    phase = sampling_phase(cfg)
    recipe = cfg["supernet"]
    spe = len(train_set) // ctx.world_size // recipe["batch_size"]
    phase.steps = cfg["pool"]["extra_steps"] or cfg["pool"]["epochs"] * spe
    mode, seed = recipe["sampling"], cfg["seed"]

    def forward(m, x, step):
        return m(x, space.sample_at(seed, step, mode))

    trainer = Trainer(model, recipe, train_set, run_dir, ctx, seed=seed, forward=forward, phase=phase,
                      workers=cfg["data"]["workers"], desc="supernet")
    summary = trainer.fit(resume=resume)
    summary.update(space=space.name, space_fingerprint=space.fingerprint, optimizer=recipe["optimizer"],
                   train_images=len(train_set), pool_samples=len(trainer.pool), world_size=ctx.world_size,
                   device=str(ctx.device), torch=torch.__version__, host=platform.node(),
                   images_per_s=summary["steps"] * recipe["batch_size"] * ctx.world_size / max(1e-9, summary["wall_s"]))
    if ctx.is_main:
        save_weights(model.state_dict(), run_dir / "supernet.safetensors")
        write_json(run_dir / "supernet.json", summary)
    dist.barrier(ctx.world_size)
    return summary
