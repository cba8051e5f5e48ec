"""The model card: what a model is, how its weights were made and what its input needs.
Built by :func:`model_card` alone (retraining and export), written by :func:`write_card`,
read by :func:`read_card` (checksum verified, :mod:`stnas.core.verified`).

Fields::

    arch, arch_json, space, space_fingerprint, madds, params   the architecture and its cost
    ...                                                         the maker's facts, e.g. top1,
                                                                recipe, weights, inherited
    preprocessing                                               stnas.deploy.formats.preprocessing
    files_sha256                                                {file name: SHA-256} of the model
                                                                directory's other files, added by
                                                                stnas.deploy.export.export_model
    latency                                                     added by stnas.pipeline.latency
    latency_budgets                                             {target: how its latency budget was
                                                                kept on measurement} (the same)

``model_card.json`` is plain JSON with its checksum embedded ("sha256"), so a tool without
stnas reads it with ``json.load``.
"""

from __future__ import annotations

import os
from pathlib import Path

from stnas.core.rundir import CARD
from stnas.core.verified import read_json, write_json
from stnas.space.arch import Arch


def model_card(arch: Arch, preprocessing: dict | None, **facts) -> dict:
    """The card of a network of ``arch``: its identity and cost, then ``facts`` in the
    given order, then ``preprocessing``."""
    space = arch.space
    return {"arch": str(arch), "arch_json": arch.to_json(), "space": space.name,
            "space_fingerprint": space.fingerprint, "madds": arch.madds, "params": arch.params,
            **facts, "preprocessing": preprocessing}


def card_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or its ``model_card.json`` when it is a directory."""
    p = Path(path)
    return p / CARD if p.is_dir() else p


def write_card(path: str | os.PathLike, card: dict) -> Path:
    """Writes a card to ``path`` (a model_card.json), checksummed and atomically."""
    return write_json(path, card)


def read_card(path: str | os.PathLike) -> dict:
    """The card at ``path`` (a file, or a directory's ``model_card.json``), checksum verified.

    Raises:
        CheckpointError: missing, damaged, or written without a checksum (one line naming it).
    """
    return read_json(card_path(path), "model card")
