"""Device and process-group setup, and the few collectives the pipeline needs.

Under ``torchrun`` (RANK/WORLD_SIZE/LOCAL_RANK in the environment) a process group is
created: NCCL on CUDA, gloo on CPU. Gradients are averaged by an explicit all-reduce
rather than DDP: every rank trains the *same* sampled architecture each step (the
sampler is a pure function of (seed, step)), so the set of parameters with gradients
agrees across ranks, and no unused-parameter bookkeeping is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from stnas.core.errors import ConfigError


@dataclass
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    pref = str(pref)
    if pref == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was requested but no CUDA device is available (use device=cpu)")
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    return torch.device("cpu")


def setup(device: str = "auto") -> Context:
    """The process's context; initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Context(rank, world, local, dev)


def teardown() -> None:
    if tdist.is_initialized():
        tdist.destroy_process_group()


def all_reduce_grads(params, world_size: int) -> None:
    """Averages the gradients of ``params`` (those that have one) across ranks."""
    if world_size == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    tdist.all_reduce(flat)
    flat /= world_size
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def average_buffers(module: torch.nn.Module, world_size: int) -> None:
    """Averages floating buffers (BN running statistics) across ranks."""
    if world_size == 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            tdist.all_reduce(b)
            b /= world_size


def all_gather_objects(obj, world_size: int) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    tdist.all_gather_object(out, obj)
    return out


def barrier(world_size: int) -> None:
    if world_size > 1:
        tdist.barrier()


def broadcast_object(obj, world_size: int):
    """Rank 0's ``obj`` on every rank."""
    if world_size == 1:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]
