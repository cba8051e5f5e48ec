"""The run directory: the one place that knows its layout, its lock, its overwrite guards
and which search space it holds.

Layout::

    config.yaml            resolved config (checksummed YAML)
    plan.json              the plan `stnas run` started with: stages, estimated times, sizing
    space.yaml             the space definition (checksummed YAML): the run's space
    checkpoints/           rotating training checkpoints (resume)
    pool/                  parameter samples (safetensors) + index.json
    epochs/                weights at every epoch end (stability analysis)
    supernet.safetensors   final shared weights
    supernet.json          summary of the supernet training
    metrics.jsonl, tb/     training curves
    proxy_cache.jsonl      proxy evaluations (one checksummed record a line)
    search/                search history, Pareto front, best architectures
    retrain/budget_<B>/    retrain runs (each a run directory: arch.json, model/, model_card.json)
    baselines/             standard networks trained as the picks are (stnas.pipeline.baselines;
                           each network a run directory with baseline.json, its spec)
    export/<arch>/         exported models
    report.md, report.json, plots/
    .stnas.lock            held (flock) by the process working in the directory

The run's space is its ``space.yaml`` when present, else the preset its ``config.yaml``
names. A new run needs a directory that holds no run (nothing but the lock and the space,
plan, architecture and baseline files a run writes before its config); ``--resume`` needs the config,
which a run writes last of its inputs. Results already on disk are never replaced by
results of other inputs (:func:`check_same_inputs`: a search folder, a rank result, an
exported model, a latency table, a resumed run).
"""

from __future__ import annotations

import fcntl
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from stnas.core.errors import CheckpointError, ConfigError, first_line
from stnas.core.verified import read_yaml, write_yaml

CONFIG = "config.yaml"  # the resolved config (stnas.pipeline.config writes it through RunDir)
PLAN = "plan.json"  # stnas.pipeline.plan
SPACE = "space.yaml"
CHECKPOINTS = "checkpoints"
POOL = "pool"
EPOCHS = "epochs"
SUPERNET = "supernet.safetensors"
SUPERNET_SUMMARY = "supernet.json"
METRICS = "metrics.jsonl"
TB = "tb"
CACHE = "proxy_cache.jsonl"
SEARCH = "search"
RETRAIN = "retrain"
BASELINES = "baselines"
BASELINE = "baseline.json"  # what a baseline run trains (stnas.nn.baselines.Baseline.to_json)
EXPORT = "export"
ARCH = "arch.json"
MODEL = "model"
CARD = "model_card.json"
REPORT_MD, REPORT_JSON, PLOTS = "report.md", "report.json", "plots"
LOCK = ".stnas.lock"
# the files that only a run of one kind holds: a run resumed as one kind must hold none of another's
KIND_FILES = {"supernet": (SUPERNET_SUMMARY, SUPERNET, POOL, EPOCHS), "retrain": (ARCH, CARD, MODEL)}
_TMP = re.compile(r"^\..+\.tmp$")  # stnas.core.fileio.atomic_write's temporary files

_HELD: dict[str, list[int]] = {}  # resolved lock path -> [fd, depth] held by this process


def differing(old: Mapping, new: Mapping) -> list[str]:
    """The keys whose values differ (a key on one side only differs), ``new``'s order first;
    where both values are mappings, their differing keys, dotted (``config.generations``)."""
    out = []
    for k in dict.fromkeys([*new, *old]):
        a, b = old.get(k), new.get(k)
        if (k in old) != (k in new):
            out.append(str(k))
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{k}.{j}" for j in dict.fromkeys([*b, *a]) if (j in a) != (j in b) or a.get(j) != b.get(j)]
        elif a != b:
            out.append(str(k))
    return out


def check_same_inputs(where, what: str, old: Mapping | None, new: Mapping, advice: str,
                      error: type[ConfigError] = ConfigError) -> None:
    """The one rule for results on disk: ``where``, holding ``what`` made from the inputs
    ``old``, is never replaced by (nor mixed with) results of other inputs ``new``. ``old``
    None: its inputs cannot be read, so it is not ours to replace.

    Raises:
        ``error``: in one line, naming the keys that differ and what to do (``advice``).
    """
    if old is None:
        raise error(f"{where} holds {what} whose inputs cannot be read; {advice}")
    keys = differing(old, new)
    if keys:
        shown = ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")
        raise error(f"{where} holds {what} made from other inputs ({shown} differ); {advice}")


class RunDir:
    """A run directory (see the module docstring).

    Args:
        path: the directory; it need not exist yet.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ layout
    config = property(lambda self: self.path / CONFIG)
    space_file = property(lambda self: self.path / SPACE)
    plan = property(lambda self: self.path / PLAN)
    checkpoints = property(lambda self: self.path / CHECKPOINTS)
    pool = property(lambda self: self.path / POOL)
    epochs = property(lambda self: self.path / EPOCHS)
    supernet = property(lambda self: self.path / SUPERNET)
    supernet_summary = property(lambda self: self.path / SUPERNET_SUMMARY)
    metrics = property(lambda self: self.path / METRICS)
    tb = property(lambda self: self.path / TB)
    cache = property(lambda self: self.path / CACHE)
    search = property(lambda self: self.path / SEARCH)
    arch = property(lambda self: self.path / ARCH)
    baseline = property(lambda self: self.path / BASELINE)
    baselines = property(lambda self: self.path / BASELINES)
    model = property(lambda self: self.path / MODEL)
    card = property(lambda self: self.path / CARD)
    report_md = property(lambda self: self.path / REPORT_MD)
    report_json = property(lambda self: self.path / REPORT_JSON)
    plots = property(lambda self: self.path / PLOTS)

    def epoch_weights(self, epoch: int) -> Path:
        return self.epochs / f"epoch_{int(epoch):03d}.safetensors"

    def retrain_dir(self, label: str) -> Path:
        return self.path / RETRAIN / f"budget_{label}"

    def export_dir(self, slug: str) -> Path:
        return self.path / EXPORT / slug

    # ------------------------------------------------------------------ guard
    def check_is_dir(self) -> None:
        """Raises ConfigError when the path exists and is not a directory."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is not a directory: choose another --out")

    def contents(self) -> list[str]:
        """Names in the directory that make it hold a run: all but the lock, interrupted
        temporary files, and the inputs a run writes before its config (space, plan, arch, baseline)."""
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir()
                      if p.name not in (LOCK, SPACE, PLAN, ARCH, BASELINE) and not _TMP.match(p.name))

    def guard(self, resume: bool, needs: tuple[str, ...] = (CONFIG,), kind: str | None = None) -> None:
        """The one overwrite rule: a new run needs a directory that holds no run
        (:meth:`contents` empty); a resumed one needs the files ``needs`` (its config) and, when
        ``kind`` (a key of ``KIND_FILES``) is given, none of another kind's files.

        Raises:
            ConfigError: in one line, saying what to do instead.
        """
        self.check_is_dir()
        if resume:
            missing = [n for n in needs if not (self.path / n).is_file()]
            if missing:
                raise ConfigError(f"cannot resume: {self.path} holds no run (no {' and '.join(missing)})")
            for other, names in KIND_FILES.items() if kind else ():
                found = [n for n in names if (self.path / n).exists()]
                if other != kind and found:
                    raise ConfigError(f"cannot resume: {self.path} holds a {other} run ({', '.join(found)}), "
                                      f"not a {kind} run")
            return
        held = self.contents()
        if held:
            shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise ConfigError(f"{self.path} already holds a run ({shown}); pass --resume to continue it "
                              f"or choose another --out")

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self, enabled: bool = True) -> Iterator[RunDir]:
        """Holds the directory's exclusive lock (``flock`` on ``.stnas.lock``) for the block.

        The kernel drops the lock when its process dies, so a lock file left by a killed
        run is simply taken over. Re-entrant within a process. Interrupted temporary files
        of atomic writes are removed once the lock is held.

        Args:
            enabled: False makes this a no-op (torchrun ranks other than 0).

        Raises:
            ConfigError: another process holds the lock; the message names its pid.
        """
        if not enabled:
            yield self
            return
        self.check_is_dir()
        created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create run directory {self.path}: {first_line(exc, 100)}") from None
        key = str((self.path / LOCK).resolve())
        if key in _HELD:
            _HELD[key][1] += 1
        else:
            _HELD[key] = [self._acquire(), 1]
            self._remove_tmp()
        try:
            yield self
        finally:
            _HELD[key][1] -= 1
            if _HELD[key][1] == 0:
                fd = _HELD.pop(key)[0]
                os.ftruncate(fd, 0)  # no holder
                os.close(fd)  # closing the descriptor releases the lock
                self._remove_if_unused(created)

    def _remove_if_unused(self, created: list[Path]) -> None:
        """Removes the folders this lock created when the work left nothing but the lock
        (bad input found after the lock was taken: nothing is written)."""
        if not created or [p.name for p in self.path.iterdir()] != [LOCK]:
            return
        (self.path / LOCK).unlink()
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                break

    def _acquire(self) -> int:
        path = self.path / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the lock file {path}: {first_line(exc, 100)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"{self.path} is in use by another stnas process (pid {holder}, lock "
                              f"{LOCK}); wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _remove_tmp(self) -> None:
        for folder in (self.path, self.checkpoints, self.pool, self.epochs, self.search, self.model):
            if folder.is_dir():
                for p in folder.iterdir():
                    if _TMP.match(p.name) and p.is_file():
                        p.unlink(missing_ok=True)

    # ------------------------------------------------------------------ contents
    def save_config(self, cfg: dict) -> Path:
        """Writes the resolved config as checksummed ``config.yaml``."""
        return write_yaml(self.config, cfg)

    def load_config(self) -> dict:
        """The saved config as written (checksum verified; merged with defaults by the caller).

        Raises:
            ConfigError: no config; CheckpointError: a damaged one.
        """
        if not self.config.is_file():
            raise ConfigError(f"{self.path} is not an stnas run directory (no {CONFIG})")
        data = read_yaml(self.config, "run config")
        if not isinstance(data, dict):
            raise CheckpointError(f"run config {self.config} is damaged (not a mapping)")
        return data
