"""Pipeline step 2: train the supernet and collect the parameter-sample pool.

Each step trains one architecture drawn uniformly with the (seed, step) sampler, so
every torchrun rank trains the same one. The closing sampling phase (SGLD or plain SGD,
see :class:`stnas.train.SamplingPhase`) fills ``RUN_DIR/pool``.

Run directory: config.yaml, space.yaml, checkpoints/, pool/, epochs/, supernet.safetensors,
supernet.json (summary: steps, time, throughput, final loss/acc), metrics.jsonl, tb/
(see :mod:`stnas.rundir`).
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from stnas import dist
from stnas.config import check_same_settings, pool_lr
from stnas.data import dataset_split
from stnas.rundir import RunDir
from stnas.space import load_space
from stnas.supernet import Supernet
from stnas.train import SamplingPhase, Trainer
from stnas.verified import write_json
from stnas.weights import save_weights


def sampling_phase(cfg: dict) -> SamplingPhase:
    """The sampling phase a config describes (its length in steps is set by the Trainer)."""
    p = cfg["pool"]
    return SamplingPhase(optimizer=cfg["supernet"]["optimizer"], samples=p["samples"], steps=0,
                         extra=p["extra_steps"] > 0, lr=pool_lr(cfg),
                         sgld=dict(cfg["sgld"]))


# what a resumed (or reused) supernet run must share with the caller's config
RESUME_SECTIONS = ("preset", "supernet", "sgld", "pool", "data", "seed")


def train_supernet(cfg: dict, run_dir: str | Path, resume: bool | str = False,
                   ctx: dist.Context | None = None) -> dict:
    """Trains the supernet of ``cfg["preset"]`` into ``run_dir``; returns the summary.

    ``resume=True`` continues from the latest checkpoint, or from the start when the run
    was stopped before its first one.
    """
    ctx = ctx or dist.setup(cfg["device"])
    run = RunDir(run_dir)
    with run.lock(ctx.is_main):
        return _train(cfg, run, resume, ctx)


def _train(cfg: dict, run: RunDir, resume: bool | str, ctx: dist.Context) -> dict:
    run.guard(bool(resume))
    dist.barrier(ctx.world_size)
    if resume:
        check_same_settings(run.path, cfg, RESUME_SECTIONS)
    space = load_space(cfg["preset"])
    train_set = dataset_split(cfg, space, "search-train", "limit")
    if ctx.is_main:
        run.save_space(space)
        run.save_config(cfg)  # last: a run with a config can be resumed
    torch.manual_seed(cfg["seed"])
    model = Supernet(space).to(ctx.device)
    phase = sampling_phase(cfg)
    recipe = cfg["supernet"]
    spe = len(train_set) // ctx.world_size // recipe["batch_size"]
    phase.steps = cfg["pool"]["extra_steps"] or cfg["pool"]["epochs"] * spe
    mode, seed = recipe["sampling"], cfg["seed"]

    def forward(m, x, step):
        return m(x, space.sample_at(seed, step, mode))

    trainer = Trainer(model, recipe, train_set, run.path, ctx, seed=seed, forward=forward, phase=phase,
                      workers=cfg["data"]["workers"], desc="supernet")
    summary = trainer.fit(resume=resume)
    summary.update(space=space.name, space_fingerprint=space.fingerprint, optimizer=recipe["optimizer"],
                   train_images=len(train_set), pool_samples=len(trainer.pool), world_size=ctx.world_size,
                   device=str(ctx.device), torch=torch.__version__, host=platform.node(),
                   images_per_s=summary["steps"] * recipe["batch_size"] * ctx.world_size / max(1e-9, summary["wall_s"]))
    if ctx.is_main:
        save_weights(model.state_dict(), run.supernet)
        write_json(run.supernet_summary, summary)
    dist.barrier(ctx.world_size)
    return summary
