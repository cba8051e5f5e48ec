"""The closed choices of a training recipe (the ``supernet`` and ``retrain`` config sections),
one registry entry each: LR schedules, bf16 autocast modes, channels_last modes and the
optimizers of the supernet's closing sampling phase. Torch-free (the optimizers import torch
when built), so that the config check and the CLI list the names without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from stnas.core.registry import Registry

# ------------------------------------------------------------------ LR schedules
# (step, recipe, steps per epoch, warmup steps, main steps) -> the LR after warmup
SCHEDULES: Registry[Callable[[int, dict, int, int, int], float]] = Registry("schedule")


@SCHEDULES.register("cosine", "cosine decay from lr to min_lr over the main steps")
def _cosine(step: int, recipe: dict, steps_per_epoch: int, warmup: int, main_steps: int) -> float:
    base, low = recipe["lr"], recipe["min_lr"]
    t = (step - warmup) / max(1, main_steps - warmup)
    return low + (base - low) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@SCHEDULES.register("step", "lr x 0.1 every step_epochs epochs, at least min_lr")
def _step(step: int, recipe: dict, steps_per_epoch: int, warmup: int, main_steps: int) -> float:
    return max(recipe["min_lr"], recipe["lr"] * 0.1 ** (step // (recipe["step_epochs"] * steps_per_epoch)))


@SCHEDULES.register("constant", "lr throughout")
def _constant(step: int, recipe: dict, steps_per_epoch: int, warmup: int, main_steps: int) -> float:
    return recipe["lr"]


def lr_at(step: int, recipe: dict, steps_per_epoch: int, main_steps: int) -> float:
    """The learning rate of the main schedule at ``step`` (0-based): a linear warmup over
    ``warmup_epochs``, then the recipe's schedule."""
    warmup = min(int(round(recipe["warmup_epochs"] * steps_per_epoch)), main_steps - 1)
    if step < warmup:
        return recipe["lr"] * (step + 1) / warmup
    return SCHEDULES.get(recipe["schedule"], "schedule")(step, recipe, steps_per_epoch, warmup, main_steps)


# ------------------------------------------------------------------ bf16 autocast, channels_last
AMP_MODES: Registry[Callable[[str], bool]] = Registry("amp mode")
AMP_MODES.add("auto", lambda device_type: device_type == "cuda", "bf16 autocast on CUDA, off on CPU")
AMP_MODES.add("bf16", lambda device_type: True, "bf16 autocast")
AMP_MODES.add("off", lambda device_type: False, "float32 throughout")

CHANNELS_LAST: Registry[bool] = Registry("channels_last mode")
CHANNELS_LAST.add("auto", True, "on (the step is memory-bound; 1.6x on CPU)")
CHANNELS_LAST.add("on", True, "NHWC memory format for the model and its inputs")
CHANNELS_LAST.add("off", False, "NCHW")


def use_amp(recipe: dict, device) -> bool:
    """Whether the recipe trains and evaluates under bf16 autocast on ``device``."""
    return AMP_MODES.get(recipe["amp"], "amp")(device.type)


def use_channels_last(recipe: dict) -> bool:
    return CHANNELS_LAST.get(recipe["channels_last"], "channels_last")


# ------------------------------------------------------------------ sampling-phase optimizers
MAIN_OPTIMIZER = "sgd"  # the epochs before the sampling phase (and a phase without noise)

# (param groups, recipe, phase, training-set size, seed) -> a torch optimizer
OPTIMIZERS: Registry[Callable[[list, dict, Any, int, int], Any]] = Registry("optimizer")


@OPTIMIZERS.register("sgd", "SGD with the recipe's momentum and Nesterov: snapshots without noise")
def _sgd(groups: list, recipe: dict, phase, num_data: int, seed: int):
    import torch

    return torch.optim.SGD(groups, lr=recipe["lr"], momentum=recipe["momentum"],
                           nesterov=recipe["nesterov"] and recipe["momentum"] > 0)


@OPTIMIZERS.register("sgld", "stochastic gradient Langevin dynamics at the phase's LR (sgld section)")
def _sgld(groups: list, recipe: dict, phase, num_data: int, seed: int):
    from stnas.train.sgld import SGLD

    s = phase.sgld
    return SGLD(groups, lr=phase.lr, momentum=s["momentum"], temperature=s["temperature"], num_data=num_data,
                noise_scale=s["noise_scale"], seed=seed)
