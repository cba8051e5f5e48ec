"""Pipeline step 2: train the supernet and collect the parameter-sample pool.

Each step trains one architecture drawn uniformly with the (seed, step) sampler, so
every torchrun rank trains the same one. The closing sampling phase (SGLD or plain SGD,
see :class:`stnas.train.engine.SamplingPhase`) fills ``RUN_DIR/pool``.

Run directory: config.yaml, space.yaml, checkpoints/, pool/, epochs/, supernet.safetensors,
supernet.json (summary: steps, time, throughput, final loss/acc), metrics.jsonl, tb/
(see :mod:`stnas.core.rundir`).
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import torch

from stnas.core import dist
from stnas.core.errors import ConfigError
from stnas.core.limits import is_dir
from stnas.core.rundir import RunDir
from stnas.core.verified import write_json
from stnas.core.weights import load_weights, save_weights
from stnas.data.datasets import dataset_split
from stnas.nn.supernet import Supernet
from stnas.pipeline.checks import pool_lr
from stnas.pipeline.config import ON_EXISTING_RUN, check_same_settings
from stnas.pipeline.settings import data_spec, sharing
from stnas.space.arch import Arch
from stnas.space.catalog import load_space, run_space, save_run_space
from stnas.space.sampling import parse_split
from stnas.train.engine import SamplingPhase, Trainer


def sampling_phase(cfg: dict) -> SamplingPhase:
    """The sampling phase a config describes (its length in steps is set by the Trainer)."""
    p = cfg["pool"]
    return SamplingPhase(optimizer=cfg["supernet"]["optimizer"], samples=p["samples"], steps=0,
                         extra=p["extra_steps"] > 0, lr=pool_lr(cfg),
                         sgld=dict(cfg["sgld"]))


def sampler(cfg: dict, space):
    """step -> the architecture that training step trains: a pure function of (seed, step)
    (``SearchSpace.sample_at``), restricted to one side of a few-shot split when
    ``supernet.split`` is set: the edge is forced off, or on with an op drawn from (seed, step)."""
    mode, seed, split = cfg["supernet"]["sampling"], cfg["seed"], cfg["supernet"]["split"]
    if split is None:
        return lambda step: space.sample_at(seed, step, mode)
    edge, on = parse_split(split, len(space.branch_edges))
    allowed = space.branch_edges[edge].allowed

    def draw(step: int) -> Arch:
        a = space.sample_at(seed, step, mode)
        branches = list(a.branches)
        if not on:
            branches[edge] = -1
        elif branches[edge] < 0:
            branches[edge] = allowed[np.random.default_rng([seed, step, 0x5B]).integers(len(allowed))]
        return Arch._trusted(space, a.stem, tuple(branches))

    return draw


def initial_weights(cfg: dict, space) -> dict[str, torch.Tensor] | None:
    """The tensors ``supernet.init`` names (a run directory or its supernet.safetensors),
    checked to be a supernet of the same space; None when unset."""
    src = cfg["supernet"]["init"]
    if src is None:
        return None
    run = RunDir(src if is_dir(src) else Path(src).parent)
    file = run.supernet if is_dir(src) else Path(src)
    state, _ = load_weights(file, what="supernet.init weights")
    if run.space_file.is_file() and run_space(run).fingerprint != space.fingerprint:
        raise ConfigError(f"supernet.init {src} is a supernet of another space (not {space.name} {space.fingerprint})")
    with torch.device("meta"):  # shapes only: no memory, no draw from the seeded generator
        want = Supernet(space, **sharing(cfg)).state_dict()
    if set(state) != set(want) or any(state[k].shape != want[k].shape for k in want):
        raise ConfigError(f"supernet.init {file}: its tensors do not fit the {space.name} supernet")
    return state


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
    run.guard(bool(resume), kind="supernet")
    dist.barrier(ctx.world_size)
    if resume:
        check_same_settings(run.path, cfg, ON_EXISTING_RUN["supernet"]["keep"])
    space = load_space(cfg["preset"])
    draw = sampler(cfg, space)  # a bad split or init fails here, before any data is read
    init = initial_weights(cfg, space)  # a resumed run's checkpoint then replaces it
    data = data_spec(cfg)
    train_set = dataset_split(data, space, "search-train", data.limit)
    if ctx.is_main:
        save_run_space(run, space)
        run.save_config(cfg)  # last: a run with a config can be resumed
    torch.manual_seed(cfg["seed"])
    model = Supernet(space, **sharing(cfg))
    if init is not None:
        model.load_state_dict(init)
    model = model.to(ctx.device)
    phase = sampling_phase(cfg)
    recipe = cfg["supernet"]
    spe = len(train_set) // ctx.world_size // recipe["batch_size"]
    phase.steps = cfg["pool"]["extra_steps"] or cfg["pool"]["epochs"] * spe

    def forward(m, x, step):
        return m(x, draw(step))

    trainer = Trainer(model, recipe, train_set, run.path, ctx, seed=cfg["seed"], forward=forward, phase=phase,
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
