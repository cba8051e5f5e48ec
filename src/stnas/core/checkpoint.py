"""Checkpoints: atomic, checksummed, safely loadable, rotated.

File layout (``save_checkpoint(path, state)``)::

    PATH          torch.save({"format": "stnas-checkpoint", "version": 1, "state": state})
    PATH.sha256   "<sha256 hex of PATH>  <PATH's name>\\n"  (``sha256sum -c`` format)

Both are written atomically (``stnas.core.fileio``), the sidecar *after* the checkpoint, so a
checkpoint without a sidecar is an interrupted save. ``load_checkpoint`` verifies the
digest and then reads with ``torch.load(weights_only=True)`` only: no arbitrary pickled
class can be loaded. Anything wrong raises :class:`CheckpointError` with one line naming
the file and the problem.

``state`` may hold state dicts (model, optimizer, scheduler), tensors, ints, floats,
strings, None, lists, tuples and dicts; RNG states go in through :func:`capture_rng_state`,
which turns numpy and Python ``random`` states into plain ints and lists.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stnas.core.errors import CheckpointError, first_line
from stnas.core.fileio import atomic_write, sha256_file, write_text

FORMAT = "stnas-checkpoint"
VERSION = 1
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Writes ``state`` to ``path`` atomically, then its SHA-256 sidecar; returns ``path``."""
    path = Path(path)
    digest: list[str] = []

    def _write(tmp: str) -> None:
        torch.save({"format": FORMAT, "version": VERSION, "state": state}, tmp)
        digest.append(sha256_file(tmp))

    atomic_write(path, _write)
    write_text(_sidecar(path), f"{digest[0]}  {path.name}\n")
    return path


def verify_checkpoint(path: str | Path) -> None:
    """Checks that ``path`` exists, is non-empty and matches its sidecar digest."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (an interrupted or failed write)")
    side = _sidecar(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint {path} has no checksum file {side.name}: the save was "
                              "interrupted, or this is not an stnas checkpoint")
    try:
        expected = side.read_text(encoding="utf-8").split()[0].lower()
    except (OSError, UnicodeDecodeError, IndexError) as e:
        raise CheckpointError(f"checksum file {side} is unreadable: {first_line(e)}") from None
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated (SHA-256 "
                              f"{actual[:12]}... does not match {side.name}: {expected[:12]}...)")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Verifies and loads a checkpoint written by :func:`save_checkpoint`; returns its state."""
    path = Path(path)
    verify_checkpoint(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError (bad zip), EOFError, ...
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {first_line(e)}") from None
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT and isinstance(obj.get("state"), dict)):
        raise CheckpointError(f"{path} is not an stnas checkpoint (no '{FORMAT}' header)")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {obj.get('version')}, "
                              f"this stnas reads version {VERSION}")
    return obj["state"]


# ---------------------------------------------------------------- RNG states

def _plain(obj: Any) -> Any:
    """numpy arrays/scalars -> lists/ints/floats, recursively (for weights_only loading)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def numpy_generator_state(gen: np.random.Generator) -> dict:
    """A ``numpy.random.Generator``'s bit-generator state as plain ints, lists and strings."""
    return _plain(gen.bit_generator.state)


def restore_numpy_generator(gen: np.random.Generator, state: dict) -> None:
    """Restores ``gen`` from :func:`numpy_generator_state` (numpy rebuilds the arrays)."""
    try:
        gen.bit_generator.state = state
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise CheckpointError(f"numpy generator state in the checkpoint is invalid: "
                              f"{first_line(e)}") from None


def capture_rng_state() -> dict:
    """The global RNG states of Python ``random``, numpy, torch CPU and every CUDA device."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Restores what :func:`capture_rng_state` captured (CUDA: as many devices as both have)."""
    try:
        py, npy = state["python"], state["numpy"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        np.random.set_state((npy["name"], np.asarray(npy["keys"], dtype=np.uint32), npy["pos"],
                             npy["has_gauss"], npy["cached_gaussian"]))
        torch.set_rng_state(state["torch"].cpu())
        cuda = state.get("cuda") or []
        if cuda and torch.cuda.is_available():
            for i, s in enumerate(cuda[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(s.cpu(), i)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError, OverflowError) as e:
        raise CheckpointError(f"RNG state in the checkpoint is invalid: {first_line(e)}") from None


# ---------------------------------------------------------------- rotation

class CheckpointManager:
    """Rotating checkpoints ``RUN_DIR/checkpoints/step_{step:08d}.pt`` (+ ``.sha256``).

    ``save`` deletes the oldest files beyond ``keep`` only after the new one and its
    sidecar are on disk. Files with a larger step than the one being saved (left by a run
    that was resumed from an earlier checkpoint) are never touched by rotation.
    """

    def __init__(self, run_dir: str | Path, keep: int = 2):
        if keep < 1:
            raise CheckpointError(f"CheckpointManager: keep must be >= 1, got {keep}")
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    def path_for(self, step: int) -> Path:
        return self.dir / f"step_{int(step):08d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of every completed checkpoint, oldest first. A file without its
        checksum sidecar is a save that was interrupted between the two writes: skipped."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir()
                 if (m := _STEP_FILE.match(p.name)) and _sidecar(p).is_file()]
        return sorted(found)

    def latest(self) -> Path | None:
        """The checkpoint with the largest step, or None when there is none."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def save(self, state: dict, step: int) -> Path:
        """Saves ``state`` as the checkpoint of ``step`` and rotates; returns its path."""
        path = save_checkpoint(self.path_for(step), state)
        older = [p for s, p in self.checkpoints() if s < step]
        for old in older[: max(0, len(older) - (self.keep - 1))]:
            old.unlink(missing_ok=True)
            _sidecar(old).unlink(missing_ok=True)
        return path

    def load_latest(self, map_location: Any = "cpu") -> dict | None:
        """Loads the newest checkpoint; None when there is none.

        Raises:
            CheckpointError: the newest is unreadable; the message names it and the newest
                earlier checkpoint that verifies and loads (to pass to ``--resume``), if any.
                No file is deleted.
        """
        return self._latest(lambda path: load_checkpoint(path, map_location))

    def verify_latest(self) -> Path | None:
        """Checks the newest checkpoint's digest without loading it (what ``load_latest`` will
        read, verified before any work); returns its path, None when there is none.

        Raises:
            CheckpointError: as :meth:`load_latest`.
        """
        return self._latest(lambda path: (verify_checkpoint(path), path)[1])

    def _latest(self, read):
        found = self.checkpoints()
        if not found:
            return None
        try:
            return read(found[-1][1])
        except CheckpointError as err:
            for _, prev in reversed(found[:-1]):
                try:
                    load_checkpoint(prev, "cpu")
                except CheckpointError:
                    continue
                raise CheckpointError(f"{err}; the previous good checkpoint is {prev}: "
                                      f"resume from it with --resume {prev}") from None
            raise CheckpointError(f"{err}; no earlier good checkpoint in {self.dir}") from None
