"""The parameter-sample pool: snapshots θ_k of the shared weights taken during SGLD.

Layout of a pool directory::

    sample_000.safetensors, sample_001.safetensors, ...   one state dict each
    index.json   {"format": "stnas-sample-pool", "version": 2,
                  "entries": [{"file", "step", "lr", "loss", "sha256"}, ...], "sha256"}

Every file is written atomically, the sample before the index entry that names it, so an
interrupted ``add`` leaves at most an orphan sample file that the next ``add`` overwrites.
Samples are :mod:`stnas.core.weights` files (their tensors checksummed inside); the index is
checksummed (:mod:`stnas.core.verified`) and holds each file's SHA-256. Loading verifies both
and reads with safetensors (no pickle). Anything missing or corrupt raises
:class:`CheckpointError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from stnas.core.errors import CheckpointError
from stnas.core.fileio import sha256_file
from stnas.core.verified import read_json, write_json
from stnas.core.weights import load_weights, save_weights

FORMAT = "stnas-sample-pool"
VERSION = 2
INDEX = "index.json"


class SamplePool:
    """An append-only, on-disk list of parameter samples with their step, lr and loss.

    Args:
        directory: the pool's folder; created by the first ``add``. An existing pool
            (``index.json`` present) is reopened.
    """

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self._entries: list[dict] = self._read_index() if (self.dir / INDEX).exists() else []

    def _read_index(self) -> list[dict]:
        path = self.dir / INDEX
        obj = read_json(path, "sample-pool index")
        if not (isinstance(obj, dict) and obj.get("format") == FORMAT and isinstance(obj.get("entries"), list)):
            raise CheckpointError(f"{path} is not a sample-pool index (no '{FORMAT}' header)")
        if obj.get("version") != VERSION:
            raise CheckpointError(f"sample-pool index {path} has version {obj.get('version')}, "
                                  f"this stnas reads version {VERSION}")
        keys = {"file", "step", "lr", "loss", "sha256"}
        for i, e in enumerate(obj["entries"]):
            if not (isinstance(e, dict) and keys <= set(e) and isinstance(e["step"], int)
                    and isinstance(e["file"], str) and "/" not in e["file"] and "\\" not in e["file"]):
                raise CheckpointError(f"sample-pool index {path}: entry {i} is malformed: {e!r:.120}")
        return obj["entries"]

    def _write_index(self, entries: list[dict]) -> None:
        write_json(self.dir / INDEX, {"format": FORMAT, "version": VERSION, "entries": entries})
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> list[dict]:
        """Copies of the index entries: {file, step, lr, loss, sha256}, in order of addition."""
        return [dict(e) for e in self._entries]

    def add(self, state_dict: Mapping[str, torch.Tensor], step: int, lr: float, loss: float) -> int:
        """Writes one sample and its index entry; returns the sample's position k."""
        k = len(self._entries)
        name = f"sample_{k:03d}.safetensors"
        meta = {"step": str(int(step)), "lr": repr(float(lr)), "loss": repr(float(loss))}
        path = save_weights(state_dict, self.dir / name, meta)
        entry = {"file": name, "step": int(step), "lr": float(lr), "loss": float(loss),
                 "sha256": sha256_file(path)}
        self._write_index(self._entries + [entry])
        return k

    def verify(self, k: int) -> Path:
        """The file of sample ``k`` (negative k counts from the end), checked against its
        index entry (SHA-256 of the file) without loading it; what :meth:`load` reads.

        Raises:
            CheckpointError: no such sample, or its file is missing or damaged.
        """
        if not -len(self._entries) <= k < len(self._entries):
            raise CheckpointError(f"sample pool {self.dir} has {len(self)} samples, no sample {k}")
        entry = self._entries[k]
        path = self.dir / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"sample file {path} listed in {self.dir / INDEX} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise CheckpointError(f"sample file {path} is corrupted or truncated (SHA-256 mismatch "
                                  f"with {INDEX})")
        return path

    def load(self, k: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The state dict of sample ``k`` (negative k counts from the end)."""
        return load_weights(self.verify(k), device, "sample file")[0]

    def average(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """Element-wise mean of all samples: floating tensors averaged (in float64, returned
        in their dtype); other tensors (e.g. BN ``num_batches_tracked``) from the last sample."""
        if not self._entries:
            raise CheckpointError(f"sample pool {self.dir} is empty: nothing to average")
        sums: dict[str, torch.Tensor] = {}
        last: dict[str, torch.Tensor] = {}
        for k in range(len(self._entries)):
            sample = self.load(k, device)
            if k and set(sample) != set(last):
                raise CheckpointError(f"sample {k} of pool {self.dir} has different keys from sample 0")
            for key, t in sample.items():
                if k and (t.shape != last[key].shape or t.dtype != last[key].dtype):
                    raise CheckpointError(f"sample {k} of pool {self.dir}: {key} has shape/dtype "
                                          f"{tuple(t.shape)}/{t.dtype}, sample 0 has "
                                          f"{tuple(last[key].shape)}/{last[key].dtype}")
                if t.is_floating_point():
                    acc = t.to(torch.float64, copy=True)
                    sums[key] = acc if k == 0 else sums[key].add_(acc)
            last = sample
        n = len(self._entries)
        return {key: (sums[key].div_(n).to(t.dtype) if key in sums else t) for key, t in last.items()}

    def truncate_after(self, step: int) -> int:
        """Drops the samples recorded after ``step`` (index first, then files), so that a run
        resumed from the checkpoint of ``step`` re-adds them; returns how many were dropped."""
        cut = next((i for i, e in enumerate(self._entries) if e["step"] > step), len(self._entries))
        keep, dropped = self._entries[:cut], self._entries[cut:]
        if any(e["step"] <= step for e in dropped):
            raise CheckpointError(f"sample pool {self.dir}: steps in {INDEX} are not increasing")
        if not dropped:
            return 0
        self._write_index(keep)
        for e in dropped:
            (self.dir / e["file"]).unlink(missing_ok=True)
        return len(dropped)
