"""The training engine shared by supernet training and retraining.

One loop, driven by a *recipe* (the ``supernet`` or ``retrain`` config section): SGD with
momentum/Nesterov, weight decay on conv/linear weights only, warmup then cosine (or step)
LR as a pure function of the step, label smoothing, gradient clipping, bf16 autocast and
channels_last where they help, gradients averaged across torchrun ranks, a progress bar,
TensorBoard scalars and ``metrics.jsonl``, rotating checkpoints and exact resume.

An optional *sampling phase* closes training: its last steps run at a constant LR, with
SGLD (noise) or SGD (no noise), and the weights are snapshotted every m steps into a
:class:`stnas.train.pool.SamplePool` (design.md section 4).

Exact resume: data order and augmentation, sampled architectures and SGLD noise are pure
functions of (seed, step); the checkpoint carries model, optimizer and RNG states, so a
run killed at any point and resumed ends bitwise-equal to an uninterrupted one (on the
same device and thread count).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from stnas.core import dist
from stnas.core.checkpoint import CheckpointManager, capture_rng_state, load_checkpoint, restore_rng_state
from stnas.core.errors import CheckpointError, state_dict_detail
from stnas.core.rundir import RunDir
from stnas.core.verified import append_jsonl, read_jsonl, write_jsonl
from stnas.core.weights import save_weights
from stnas.data.datasets import make_loader
from stnas.train.pool import SamplePool
from stnas.train.recipe import MAIN_OPTIMIZER, OPTIMIZERS, lr_at, use_amp, use_channels_last  # noqa: F401


@dataclass
class SamplingPhase:
    """The closing phase that fills the parameter-sample pool."""

    optimizer: str  # a stnas.train.recipe.OPTIMIZERS name: "sgd" (no noise) or "sgld"
    samples: int
    steps: int  # length of the phase
    extra: bool  # True: after the recipe's epochs; False: their last ``steps`` steps
    lr: float
    sgld: dict  # temperature, noise_scale, momentum


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights; none on BN parameters and biases."""
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def eval_sums(forward: Callable, batches, device: torch.device, channels_last: bool = True,
              amp: bool = False) -> torch.Tensor:
    """The one eval loop (``evaluate``, the proxy): sums over ``batches`` of (top-1 hits,
    top-5 hits, cross-entropy, samples) of ``forward(x)``, in float64."""
    sums = torch.zeros(4, dtype=torch.float64)
    with torch.no_grad():
        for x, y in batches:
            x, y = _to(x, device, channels_last), y.to(device)
            with _autocast(device, amp):
                logits = forward(x).float()
            top5 = logits.topk(min(5, logits.shape[1]), 1).indices
            sums += torch.tensor([(top5[:, 0] == y).sum().item(), (top5 == y[:, None]).any(1).sum().item(),
                                  nn.functional.cross_entropy(logits, y, reduction="sum").item(), len(y)],
                                 dtype=torch.float64)
    return sums


def rates(sums: torch.Tensor) -> dict:
    """``eval_sums`` as top-1, top-5 and mean loss (zeros for no samples)."""
    n = max(1.0, sums[3].item())
    return {"top1": sums[0].item() / n, "top5": sums[1].item() / n, "loss": sums[2].item() / n,
            "n": int(sums[3].item())}


def evaluate(forward: Callable, dataset, batch_size: int, ctx: dist.Context, channels_last: bool = True,
             amp: bool = False) -> dict:
    """Top-1, top-5 and mean loss of ``forward(x)`` on ``dataset``, sharded across ranks
    (exact: every sample counted once)."""
    loader = make_loader(dataset, batch_size, train=False, rank=ctx.rank, world_size=ctx.world_size,
                         device=ctx.device)
    sums = eval_sums(forward, loader, ctx.device, channels_last, amp)
    return rates(sum(dist.all_gather_objects(sums, ctx.world_size)))


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()


class Trainer:
    """Trains ``model`` on ``train_set`` following ``recipe``.

    Args:
        forward: ``forward(model, x, step) -> logits``; the supernet passes the step's
            sampled architecture here.
        phase: the closing sampling phase, or None.
        num_data: the training-set size N for SGLD noise (default ``len(train_set)``).
    """

    def __init__(self, model: nn.Module, recipe: dict, train_set, run_dir: str | Path, ctx: dist.Context, *,
                 seed: int, forward: Callable, phase: SamplingPhase | None = None, workers: int = 0,
                 desc: str = "train"):
        self.model, self.recipe, self.train_set, self.ctx = model, recipe, train_set, ctx
        self.run_dir, self.seed, self.forward, self.phase = Path(run_dir), seed, forward, phase
        self.run = RunDir(run_dir)
        self.workers, self.desc = workers, desc
        self.channels_last = use_channels_last(recipe)
        self.amp = use_amp(recipe, ctx.device)
        self.spe = make_loader(train_set, recipe["batch_size"], train=True, rank=ctx.rank,
                               world_size=ctx.world_size).batch_sampler.num_batches
        self.total_steps = recipe["epochs"] * self.spe + (phase.steps if phase and phase.extra else 0)
        self.phase_start = self.total_steps - phase.steps if phase else self.total_steps
        if phase and self.phase_start < 1:
            self.phase_start = 0
        self.main_steps = max(1, self.phase_start)
        self.every = max(1, (self.total_steps - self.phase_start) // phase.samples) if phase else 0
        self.ckpt = CheckpointManager(self.run_dir)
        self.pool = SamplePool(self.run.pool) if phase else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.optimizer, self.opt_kind = self._make_optimizer(0), MAIN_OPTIMIZER

    # ------------------------------------------------------------------ optimizer
    def _kind_at(self, step: int) -> str:
        """The optimizer of ``step``: the phase's from its start on, the main one before."""
        return self.phase.optimizer if self.phase and step >= self.phase_start else MAIN_OPTIMIZER

    def _make_optimizer(self, step: int):
        groups = param_groups(self.model, self.recipe["weight_decay"])
        return OPTIMIZERS.get(self._kind_at(step), "optimizer")(groups, self.recipe, self.phase, len(self.train_set),
                                                                 self.seed)

    def _switch_optimizer(self, step: int) -> None:
        """At the phase start: the phase's optimizer takes over, keeping the momentum buffers."""
        old = self.optimizer
        self.optimizer, self.opt_kind = self._make_optimizer(step), self._kind_at(step)
        for p, st in old.state.items():
            if "momentum_buffer" in st and st["momentum_buffer"] is not None:
                self.optimizer.state[p]["momentum_buffer"] = st["momentum_buffer"]

    def _lr(self, step: int) -> float:
        if step >= self.phase_start and self.phase:
            return self.phase.lr
        return lr_at(step, self.recipe, self.spe, self.main_steps)

    # ------------------------------------------------------------------ state
    def _state(self, step: int, acc: dict, last: dict) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "optimizer_kind": self.opt_kind, "step": step, "rng": capture_rng_state(),
                "seed": self.seed, "total_steps": self.total_steps,
                "acc": {k: acc[k] for k in ("loss", "correct", "n")}, "last": dict(last)}

    def _restore(self, path: Path | None, acc: dict, last: dict) -> int:
        """Loads a checkpoint (None: the latest) into the model, optimizer, RNGs and the
        loss accumulators; returns its step. With none (a run stopped before its first
        checkpoint) the run starts over: step 0."""
        state = load_checkpoint(path, self.ctx.device) if path else self.ckpt.load_latest(self.ctx.device)
        step = 0
        if state is not None:
            step = _checked_step(state, self.total_steps, path or self.ckpt.latest())
            try:
                self.model.load_state_dict(state["model"])
                if state["optimizer_kind"] not in OPTIMIZERS:
                    raise ValueError(f"optimizer kind {state['optimizer_kind']!r:.40} is not one of "
                                     f"{', '.join(OPTIMIZERS.names())}")
                if state["optimizer_kind"] != self.opt_kind:  # saved at or after the phase start
                    self.optimizer, self.opt_kind = (self._make_optimizer(self.phase_start),
                                                     self._kind_at(self.phase_start))
                kinds = _group_kinds(self.optimizer)
                self.optimizer.load_state_dict(state["optimizer"])
                _check_optimizer(self.optimizer, kinds)
                restore_rng_state(state["rng"])
                acc.update({k: state["acc"][k] for k in ("loss", "correct", "n")})
                last.update(state["last"])
            except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError, OverflowError) as exc:
                raise CheckpointError(f"checkpoint does not fit this run: {state_dict_detail(exc)}") from None
        epoch_file = self.run.epoch_weights(step // self.spe)
        if (state is not None and self.ctx.is_main and self.recipe.get("keep_epoch_weights") and step
                and step % self.spe == 0 and not epoch_file.is_file()):  # a kill came between the two
            save_weights(self.model.state_dict(), epoch_file)
        if self.pool is not None and self.ctx.is_main:
            self.pool.truncate_after(step)
        if self.ctx.is_main:
            _truncate_jsonl(self.run.metrics, step)
        return step

    def _save(self, step: int, acc: dict, last: dict) -> None:
        dist.average_buffers(self.model, self.ctx.world_size)
        if self.ctx.is_main:
            self.ckpt.save(self._state(step, acc, last), step)

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool | str | Path = False) -> dict:
        """Trains to the end (or continues from the latest/given checkpoint)."""
        step, acc, last = 0, {"loss": 0.0, "correct": 0, "n": 0}, {}
        if resume:
            step = self._restore(None if resume is True else Path(resume), acc, last)
        main, r = self.ctx.is_main, self.recipe
        writer = None
        if main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=step or None)
        bar = tqdm(total=self.total_steps, initial=step, desc=self.desc, disable=not (main and r["progress"]),
                   dynamic_ncols=True, mininterval=1.0)
        t_start = acc["t"] = time.perf_counter()
        self.model.train()
        loader = None  # one loader for the whole run, so that its workers persist across epochs
        while step < self.total_steps:
            epoch, start = divmod(step, self.spe)
            if loader is None:
                loader = make_loader(self.train_set, r["batch_size"], train=True, seed=self.seed, epoch=epoch,
                                     start_batch=start, workers=self.workers, device=self.ctx.device,
                                     rank=self.ctx.rank, world_size=self.ctx.world_size)
            else:
                loader.batch_sampler.set_epoch(epoch, start)
            for x, y in loader:
                if self._kind_at(step) != self.opt_kind:
                    self._switch_optimizer(step)
                lr = self._lr(step)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                x, y = _to(x, self.ctx.device, self.channels_last), y.to(self.ctx.device, non_blocking=True)
                with _autocast(self.ctx.device, self.amp):
                    logits = self.forward(self.model, x, step)
                    loss = self.criterion(logits.float(), y)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for p in self.model.parameters() if p.grad is not None]
                dist.all_reduce_grads(params, self.ctx.world_size)
                if r["grad_clip"]:
                    nn.utils.clip_grad_norm_(params, r["grad_clip"])
                self.optimizer.step()
                step += 1
                acc["loss"] += loss.item() * len(y)
                acc["correct"] += (logits.argmax(1) == y).sum().item()
                acc["n"] += len(y)
                if step % r["log_every"] == 0 or step == self.total_steps:
                    last = self._log(step, epoch, lr, acc, writer, bar)
                if self.phase and step > self.phase_start and (step - self.phase_start) % self.every == 0 \
                        and (step - self.phase_start) // self.every <= self.phase.samples:
                    self._snapshot(step, lr, last.get("loss", loss.item()))
                # the epoch's weights before the checkpoint that moves past them
                if step % self.spe == 0 and main and r.get("keep_epoch_weights"):
                    save_weights(self.model.state_dict(), self.run.epoch_weights(step // self.spe))
                if step % r["checkpoint_every"] == 0 or step % self.spe == 0 or step == self.total_steps:
                    self._save(step, acc, last)
                bar.update(1)
                if step >= self.total_steps:
                    break
        bar.close()
        if writer:
            writer.close()
        dist.barrier(self.ctx.world_size)
        wall = time.perf_counter() - t_start
        return {"steps": step, "steps_per_epoch": self.spe, "wall_s": wall, **last}

    def _log(self, step, epoch, lr, acc, writer, bar) -> dict:
        now = time.perf_counter()
        n = max(1, acc["n"])
        rec = {"step": step, "epoch": epoch, "loss": acc["loss"] / n, "acc": acc["correct"] / n, "lr": lr,
               "img_per_s": n * self.ctx.world_size / max(1e-9, now - acc["t"]),
               "phase": "sampling" if self.phase and step > self.phase_start else "train"}
        acc.update(loss=0.0, correct=0, n=0, t=now)
        if self.ctx.is_main:
            append_jsonl(self.run.metrics, rec)
            for k in ("loss", "acc", "lr", "img_per_s"):
                writer.add_scalar(f"{self.desc}/{k}", rec[k], step)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.3f}", lr=f"{lr:.4f}",
                            img_s=f"{rec['img_per_s']:.0f}", refresh=False)
        return rec

    def _snapshot(self, step: int, lr: float, loss: float) -> None:
        dist.average_buffers(self.model, self.ctx.world_size)
        if self.ctx.is_main:
            self.pool.add(self.model.state_dict(), step, lr, loss)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _logged(key, value) -> bool:
    """Whether (key, value) is of the types of a record ``Trainer._log`` writes."""
    return isinstance(key, str) and (_number(value) or (key == "phase" and value in ("train", "sampling")))


def _checked_step(state: dict, total_steps: int, path: Path | None) -> int:
    """The step of a loaded checkpoint state, once its counters are of the types the loop adds
    to: a state with a step outside the run (or counters of another type) is refused before
    anything of the run (its pool, its log) is cut back to that step.

    Raises:
        CheckpointError: one line naming the checkpoint.
    """
    step, acc, last = state.get("step"), state.get("acc"), state.get("last")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= total_steps:
        raise CheckpointError(f"checkpoint {path} is at step {step!r:.40}, not a step of this run "
                              f"(0 to {total_steps})")
    if not (isinstance(acc, dict) and all(_number(acc.get(k)) for k in ("loss", "correct", "n"))
            and isinstance(last, dict) and all(_logged(k, v) for k, v in last.items())):
        raise CheckpointError(f"checkpoint {path} does not fit this run: its loss counters (acc, last) are not "
                              f"of the types stnas writes")
    return step


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else type(v).__name__


PARAMS_KEY = "params"  # a param group's tensors (torch.optim)


def _group_kinds(optimizer) -> list[dict[str, str]]:
    """The kind (bool, number, None ...) of every hyper-parameter of every param group."""
    return [{k: _kind(v) for k, v in g.items() if k != PARAMS_KEY} for g in optimizer.param_groups]


def _check_optimizer(optimizer, kinds: list[dict[str, str]]) -> None:
    """Raises ValueError unless a loaded optimizer state holds the hyper-parameters ``kinds``
    (those of the optimizer the run builds) and per-parameter tensors of their parameters'
    shapes: torch checks neither, and the first step would fail on them."""
    for g, want in zip(optimizer.param_groups, kinds):
        wrong = sorted(k for k, kind in want.items() if k not in g or _kind(g[k]) != kind)
        if wrong:
            raise ValueError(f"its optimizer state is not this run's ({', '.join(wrong)} missing or of another type)")
    for p, st in optimizer.state.items():
        if isinstance(p, torch.Tensor) and any(isinstance(v, torch.Tensor) and v.dim() and v.shape != p.shape
                                               for v in st.values()):
            raise ValueError(f"its optimizer state holds a tensor of another shape than its parameter {tuple(p.shape)}")


def _truncate_jsonl(path: Path, step: int) -> None:
    """Drops log records written after ``step`` (they will be written again), and damaged ones."""
    if path.is_file():
        records, _ = read_jsonl(path, "training log")
        write_jsonl(path, [r for r in records if isinstance(r.get("step"), int) and r["step"] <= step])
