"""Weights files: safetensors with their metadata and a SHA-256 of the tensors inside.

The header metadata holds the caller's strings plus ``sha256``: the digest of every
tensor's name, dtype, shape and bytes in name order, so a flipped byte anywhere in the data
is caught. safetensors writes its metadata map in hash order; the header is rewritten with
sorted keys, so equal tensors and metadata give equal bytes. Files are written atomically
and only ever read with safetensors (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stnas.core.errors import CheckpointError, first_line
from stnas.core.fileio import atomic_write
from stnas.core.limits import is_file
from stnas.core.verified import read_regular

DIGEST_KEY = "sha256"


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode("utf-8"))
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_weights(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Writes a state dict as checksummed safetensors, atomically; returns the path."""
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"save_weights: {key!r} is a {type(value).__name__}, not a tensor")
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    meta[DIGEST_KEY] = tensor_digest(tensors)

    def _write(tmp: str) -> None:
        save_file(tensors, tmp, metadata=meta)
        _sort_header(tmp)

    return atomic_write(path, _write)


def _sort_header(path: str) -> None:
    """Rewrites a safetensors header with its metadata keys sorted (data offsets are
    relative to the data, so the data is unchanged)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu",
                 what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a file written by :func:`save_weights`, checksum verified.

    Raises:
        CheckpointError: missing, not a regular file, unreadable, damaged or unchecksummed;
            one line naming the file.
    """
    path = Path(path)
    if not is_file(path):
        read_regular(path, what)  # raises: missing, not a regular file, or a name no file can have
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(path, device=str(device))
    except Exception as exc:  # safetensors raises its own error types, OSError, ValueError
        raise CheckpointError(f"{what} {path} is not a readable safetensors file, damaged "
                              f"({first_line(exc, 100)})") from None
    meta = dict(header)
    want = meta.pop(DIGEST_KEY, None)
    if want is None:
        raise CheckpointError(f"{what} {path} has no stnas checksum (damaged, or not written by this "
                              f"stnas)")
    if tensor_digest(tensors) != want:
        raise CheckpointError(f"{what} {path} is damaged (SHA-256 of its tensors does not match)")
    return tensors, meta
