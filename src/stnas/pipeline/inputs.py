"""Verify before work: the inputs a command will read in a run directory are checked before
any training, scoring or progress bar, so that a damaged file is named in one line (exit 2)
with nothing written, never after a bar was drawn or part of the work was saved.

Each artefact is checked by its own checking reader (``stnas.core.weights`` for weights,
``SamplePool.verify`` for pool samples, ``CheckpointManager.verify_latest`` for checkpoints,
``stnas.pipeline.retrain.check_delivered`` and ``stnas.pipeline.baselines.check_baseline_runs``
for what retraining and the baselines delivered); this module only says which a command
reads:

* :func:`check_scoring` -- ``stnas search`` (each run of a few-shot pair or an ensemble),
  ``stnas rank``: the final weights (``single``) or the pool samples a mode averages over;
* :func:`check_stability` -- ``stnas stability``: the epoch weights and the pool;
* :func:`check_resumed_run` -- ``stnas run --resume``: every stage's inputs and results that
  are on disk: the supernet (or its latest checkpoint), the pool, the search summary, each retraining (its
  deliverables when finished, else its latest checkpoint) and the baselines. A finished run's
  damaged deliverables that can be rebuilt exactly are rebuilt (one line on stderr each, after
  everything was checked); any other damage is named and nothing is changed.

``stnas supernet train --resume``, ``stnas retrain --resume`` (unfinished) and ``stnas baselines
--resume`` load their checkpoint before their bar; ``stnas export`` and ``stnas predict`` read
their weights before any work; a latency table is verified on every load.
"""

from __future__ import annotations

from pathlib import Path

from stnas.core.checkpoint import CheckpointManager
from stnas.core.rundir import RETRAIN, RunDir
from stnas.core.weights import load_weights
from stnas.pipeline.baselines import check_baseline_runs
from stnas.pipeline.retrain import Rebuild, check_delivered
from stnas.pipeline.settings import proxy_settings
from stnas.proxy.modes import PROXY_MODES
from stnas.search.history import read_search
from stnas.train.pool import SamplePool


def check_scoring(run_dir: str | Path, cfg: dict, modes: list[str] | None = None) -> None:
    """Checks the weights a proxy of the run (its config ``cfg``) reads under ``modes``
    (default ``proxy.mode``): the final supernet weights, or the pool samples the mode
    averages over (``proxy.samples``, else all). A missing file is left to the proxy, whose
    message says how to make it.

    Raises:
        CheckpointError: a damaged file, named.
    """
    run = RunDir(run_dir)
    settings = proxy_settings(cfg)
    for mode in modes or [settings.mode]:
        if PROXY_MODES.get(mode, "proxy mode").pool:
            pool = SamplePool(run.pool)
            for k in range(min(settings.samples or len(pool), len(pool))):
                pool.verify(k)
        elif run.supernet.is_file():
            load_weights(run.supernet, what="supernet weights")


def check_stability(run_dir: str | Path, cfg: dict) -> None:
    """Checks what ``stnas stability`` reads: every epoch's weights and the pool samples."""
    for f in sorted((Path(run_dir) / "epochs").glob("epoch_*.safetensors")):
        load_weights(f, what="epoch weights")
    check_scoring(run_dir, cfg, ["stabilized"])


def check_resumed_run(run: RunDir, cfg: dict) -> list[Rebuild]:
    """Checks what ``stnas run --resume`` reads (module docstring) and returns the exact
    rebuilds of a finished retraining's damaged files, to apply once all was checked.

    Raises:
        CheckpointError: a damaged file that cannot be rebuilt exactly, named.
    """
    if run.supernet.is_file():  # the final weights whatever the mode (a run's result), and the pool
        check_scoring(run.path, cfg, list(dict.fromkeys([proxy_settings(cfg).mode, "single"])))
    else:
        CheckpointManager(run.path).verify_latest()
    read_search(run.search, "summary")  # what the search stage compares its settings with
    rebuilds = []
    for d in sorted(p for p in (run.path / RETRAIN).glob("budget_*") if p.is_dir()):
        if RunDir(d).card.is_file():
            rebuilds += [r for r in [check_delivered(d)] if r is not None]
        else:
            CheckpointManager(d).verify_latest()
    return rebuilds + check_baseline_runs(run.baselines)
