"""Pipeline step 6: train a found architecture from scratch and report its test accuracy.

``build_model(arch)`` is trained with the config's ``retrain`` recipe (the preset's, e.g.
SGD Nesterov, warmup then cosine, label smoothing, weight decay) by the shared
:class:`stnas.train.engine.Trainer`, so checkpoints, exact resume and torchrun work as for the
supernet. Retraining is not search: it uses the whole ``train`` split (or a stratified
``retrain.limit`` subset of it) and evaluates on ``test`` once, at the end.

Run directory (:mod:`stnas.core.rundir`): config.yaml, space.yaml and arch.json (what was
trained), checkpoints/, metrics.jsonl, tb/, model/ (the final model: stnas.deploy.export) and
model_card.json (:mod:`stnas.deploy.card`: architecture, cost, test accuracy, recipe, time, hardware).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stnas.core import dist
from stnas.core.checkpoint import CheckpointManager, load_checkpoint
from stnas.core.errors import CheckpointError, ConfigError, first_line
from stnas.core.fileio import write_bytes
from stnas.core.rundir import ARCH, CARD, CONFIG, TB, RunDir  # noqa: F401  (CARD: also stnas.pipeline.retrain.CARD)
from stnas.core.units import parse_count
from stnas.core.verified import append_jsonl, check_digest, parse_json
from stnas.core.weights import load_weights
from stnas.data.datasets import check_data_fits, get_dataset
from stnas.deploy.card import model_card, read_card, write_card
from stnas.deploy.export import FILE_DIGESTS, WEIGHTS, damaged_files, export_model
from stnas.deploy.formats import preprocessing
from stnas.nn.model import build_model
from stnas.pipeline.config import ON_EXISTING_RUN, check_same_settings
from stnas.pipeline.latency import RUN_CARD_ONLY
from stnas.pipeline.settings import data_spec
from stnas.space.arch import Arch, save_arch
from stnas.space.catalog import load_arch, load_space, run_space, save_run_space
from stnas.space.searchspace import SearchSpace
from stnas.train.engine import Trainer, evaluate, use_amp, use_channels_last


def hardware(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine() or "cpu"
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


def run_arch(run_dir: str | Path) -> Arch:
    """The architecture a retrain run directory trains (its ``arch.json`` in the run's space)."""
    run = RunDir(run_dir)
    return load_arch(run.arch, run_space(run))


def read_retrain_card(run_dir: str | Path) -> dict:
    """The model card of a finished retrain run, checksum verified and holding the numbers its
    readers print (a card of another kind, e.g. an export's, is refused).

    Raises:
        CheckpointError: missing, damaged, or not a retrain run's card.
    """
    path = RunDir(run_dir).card
    card = read_card(path)
    bad = [k for k in ("top1", "top5", "test_images", "steps", "wall_s", "images_per_s")
           if isinstance(card.get(k), bool) or not isinstance(card.get(k), (int, float))]
    if bad or not isinstance(card.get("dataset"), str):
        raise CheckpointError(f"model card {path} is not a retrain run's card ({', '.join(bad) or 'dataset'} "
                              f"missing or of the wrong type)")
    return card


def export_retrained(model: nn.Module, arch: Arch, model_dir: Path, card: dict) -> dict:
    """Writes a retrained model's directory (:func:`stnas.deploy.export.export_model`) with
    ``card``; returns the card as written (with its files' digests). The one writer of a
    retrain run's ``model/``: its weights' metadata come from the card."""
    paths = export_model(model, arch, model_dir, preprocessing=card["preprocessing"], card=card,
                         metadata={"top1": f"{card['top1']:.6f}", "dataset": card["dataset"],
                                   "seed": str(card["seed"])})
    return read_card(paths["card"])


@dataclass
class Rebuild:
    """Damaged files of a model directory and their exact replacements (:func:`check_delivered`)."""

    model_dir: Path
    files: dict[str, bytes]
    source: str

    def apply(self, log: Callable[[str], None] | None = None) -> None:
        """Writes the replacements (atomically) and says so in one line."""
        for name, data in self.files.items():
            write_bytes(self.model_dir / name, data)
        (log or _stderr)(f"stnas: rebuilt {', '.join(self.files)} in {self.model_dir} (damaged) exactly from "
                         f"{self.source}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_delivered(run_dir: str | Path) -> Rebuild | None:
    """Verifies what a finished retrain run delivered: its card, architecture and ``model/``
    (every file against the digests its card records, :func:`stnas.deploy.export.damaged_files`).
    Returns the rebuild of the damaged model files, made exactly: exported again from the
    verified weights, or from the final checkpoint when the weights are damaged, and each file
    checked against its recorded digest; None when all is intact. Writes nothing.

    Raises:
        CheckpointError: one line naming a damaged file that cannot be rebuilt exactly (the
            card or architecture of the run, weights without a checkpoint of the last step, a
            card without digests), and what to do.
    """
    run = RunDir(run_dir)
    card = read_retrain_card(run_dir)
    arch = run_arch(run_dir)
    want = {k: v for k, v in card.items() if k not in RUN_CARD_ONLY}  # added to the run's card only
    damaged = damaged_files(run.model, want)
    if not damaged:
        return None
    first = next(iter(damaged.values()))
    advice = f"remove {run.path} and resume the run to retrain it"
    if FILE_DIGESTS not in card:
        raise CheckpointError(f"{first}; its card records no digests to rebuild it against: {advice}")
    if WEIGHTS in damaged:
        found = CheckpointManager(run.path).checkpoints()
        if not found or found[-1][0] != card["steps"]:
            raise CheckpointError(f"{damaged[WEIGHTS]}; no checkpoint of its last step ({card['steps']}) to "
                                  f"rebuild it from: {advice}")
        try:
            state, source = load_checkpoint(found[-1][1]).get("model"), f"checkpoint {found[-1][1].name}"
        except CheckpointError as exc:
            raise CheckpointError(f"{damaged[WEIGHTS]}, and {exc}: {advice}") from None
    else:
        state, source = load_weights(run.model / WEIGHTS, what="retrained weights")[0], "its verified weights"
    model = build_model(arch)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{first}; {source} does not fit {arch} ({first_line(exc, 80)}): {advice}") from None
    with tempfile.TemporaryDirectory(prefix="stnas-rebuild-") as tmp:
        out = Path(tmp) / "model"
        export_retrained(model.eval(), arch, out, {k: v for k, v in want.items() if k != FILE_DIGESTS})
        files = {name: (out / name).read_bytes() for name in damaged}
    for name, data in files.items():
        exact = (read_card_bytes(data) == want if name == CARD
                 else hashlib.sha256(data).hexdigest() == card[FILE_DIGESTS].get(name))
        if not exact:
            raise CheckpointError(f"{damaged[name]}; exported again from {source} it differs from the recorded "
                                  f"file (another torch or stnas version?): {advice}")
    return Rebuild(run.model, files, source)


def read_card_bytes(data: bytes) -> dict | None:
    """The card that ``data`` (a model_card.json's bytes) holds, or None when it is damaged."""
    try:
        return check_digest(parse_json(data, "model card"), "model card")
    except CheckpointError:
        return None


def _start_step(run_dir: Path, resume: bool | str) -> int:
    """The step a resumed run continues from (for its throughput)."""
    if resume is True:
        found = CheckpointManager(run_dir).checkpoints()
        return found[-1][0] if found else 0
    m = re.search(r"step_(\d+)\.pt$", str(resume)) if resume else None
    return int(m.group(1)) if m else 0


def retrain_splits(cfg: dict, space: SearchSpace, augment: bool | None = None):
    """(train, test): what retraining trains on (``retrain.limit`` applied; ``augment``: None
    is the dataset's default for train) and tests on, at the network's input size."""
    d, limit = cfg["data"], cfg["retrain"]["limit"]
    if limit is not None:
        limit = parse_count(limit, "retrain.limit")
    check_data_fits(space, d["dataset"], d["image_size"])
    kw = dict(image_size=d["image_size"] or space.input_size, split_seed=data_spec(cfg).data_seed)
    return (get_dataset(d["dataset"], "train", d["root"], limit=limit, augment=augment, **kw),
            get_dataset(d["dataset"], "test", d["root"], **kw))


def fit_model(build: Callable[[], nn.Module], cfg: dict, run_dir: Path, resume: bool | str, ctx: dist.Context,
              train_set, desc: str = "retrain") -> tuple[nn.Module, dict, int]:
    """Retraining's training of any network: ``build()`` under ``torch.manual_seed(seed)``,
    trained on ``train_set`` with the ``retrain`` recipe by the shared Trainer (checkpoints and
    exact resume in ``run_dir``). Returns (the model in eval mode, the fit summary, the step
    the run resumed from)."""
    recipe, seed = cfg["retrain"], cfg["seed"]
    torch.manual_seed(seed)
    model = build().to(ctx.device)
    trainer = Trainer(model, recipe, train_set, run_dir, ctx, seed=seed, forward=lambda m, x, step: m(x),
                      workers=cfg["data"]["workers"], desc=desc)
    start = _start_step(run_dir, resume)
    summary = trainer.fit(resume=resume)
    model.eval()
    return model, summary, start


def training_record(cfg: dict, summary: dict, start: int, resume: bool | str, ctx: dist.Context, train_set,
                    test: dict, test_s: float) -> dict:
    """The model-card fields every retraining shares: the test result, data, recipe, time and hardware."""
    recipe = cfg["retrain"]
    steps_run = summary["steps"] - start
    return {
        "top1": test["top1"], "top5": test["top5"], "test_loss": test["loss"],
        "dataset": cfg["data"]["dataset"], "test_images": test["n"], "train_images": len(train_set),
        "recipe": dict(recipe), "epochs": recipe["epochs"], "steps": summary["steps"],
        "wall_s": summary["wall_s"], "test_s": test_s,
        "resumed_at_step": start if resume else None,
        "images_per_s": steps_run * recipe["batch_size"] * ctx.world_size / max(1e-9, summary["wall_s"]),
        "hardware": hardware(ctx.device), "device": str(ctx.device), "torch": torch.__version__,
        "world_size": ctx.world_size, "seed": cfg["seed"],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def log_test_scalars(run: RunDir, step: int, test: dict) -> None:
    """The test result as a ``split: test`` record in metrics.jsonl and ``retrain/test_*`` in TensorBoard."""
    rec = {"step": step, "split": "test", "top1": test["top1"], "top5": test["top5"], "loss": test["loss"],
           "images": test["n"]}
    append_jsonl(run.metrics, rec)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run.path / TB)) as writer:
        for key in ("top1", "top5", "loss"):
            writer.add_scalar(f"retrain/test_{key}", rec[key], step)


def retrain(arch: Arch | str, cfg: dict, run_dir: str | Path, resume: bool | str = False,
            ctx: dist.Context | None = None) -> dict:
    """Trains ``build_model(arch)`` from scratch into ``run_dir``; returns the model card.

    Args:
        arch: the architecture (or its JSON file or string); its space must be the
            config's (``cfg["preset"]``).
        cfg: a resolved config (``stnas.pipeline.config.resolve``); its ``retrain`` section is the recipe.
        resume: True (latest checkpoint) or a checkpoint path to continue from.
        ctx: the process context (default ``dist.setup(cfg["device"])``).
    """
    ctx = ctx or dist.setup(cfg["device"])
    space = load_space(cfg["preset"])
    arch = space.arch(arch, f" of preset {cfg['preset']!r} (pass --preset with the architecture's space)")
    run = RunDir(run_dir)
    with run.lock(ctx.is_main):
        return _retrain(arch, space, cfg, run, resume, ctx)


def _retrain(arch: Arch, space: SearchSpace, cfg: dict, run: RunDir, resume: bool | str,
             ctx: dist.Context) -> dict:
    run_dir = run.path
    run.guard(bool(resume), needs=(CONFIG, ARCH), kind="retrain")
    dist.barrier(ctx.world_size)
    if resume:
        saved = run_arch(run_dir)
        if saved != arch:
            raise ConfigError(f"{run_dir} retrains {saved}, not {arch}; drop --arch to resume it")
        check_same_settings(run_dir, cfg, ON_EXISTING_RUN["retrain"]["keep"])
        if resume is True and run.card.exists():  # already finished: its deliverables verified
            rebuild = check_delivered(run_dir)
            if rebuild is not None and ctx.is_main:
                rebuild.apply()
            dist.barrier(ctx.world_size)
            return read_retrain_card(run_dir)
    train_set, test_set = retrain_splits(cfg, space)
    prep = preprocessing(data_spec(cfg), space)
    if ctx.is_main:
        save_run_space(run, space)
        save_arch(arch, run.arch)
        run.save_config(cfg)  # last: a run with a config can be resumed
    recipe = cfg["retrain"]
    model, summary, start = fit_model(lambda: build_model(arch), cfg, run_dir, resume, ctx, train_set)
    t_eval = time.perf_counter()
    test = evaluate(model, test_set, 256, ctx, use_channels_last(recipe), use_amp(recipe, ctx.device))
    card = model_card(
        arch, prep, **training_record(cfg, summary, start, resume, ctx, train_set, test, time.perf_counter() - t_eval),
        files={"weights": "model/model.safetensors", "arch": "model/arch.json", "onnx": "model/model.onnx",
               "pt2": "model/model.pt2", "card": "model/model_card.json"},
        weights="retrained from scratch")
    if ctx.is_main:
        log_test_scalars(run, summary["steps"], test)
        card = export_retrained(model, arch, run.model, card)
        write_card(run.card, card)
    dist.barrier(ctx.world_size)
    return card
