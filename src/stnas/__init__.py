"""stnas: one-shot topological NAS with a stabilized (SGLD-sampled) share-parameter proxy.

The names below load on first use, so that ``import stnas.config`` (and the CLI's argument
parsing) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stnas.errors import ArchError, ConfigError, DataError, SpaceError, StnasError

if TYPE_CHECKING:
    from stnas.arch import Arch, save_arch
    from stnas.export import load_model
    from stnas.model import build_model
    from stnas.space import SearchSpace, list_presets, load_arch, load_preset, load_space

__version__ = "0.1.0"

_LAZY = {"Arch": "stnas.arch", "save_arch": "stnas.arch", "build_model": "stnas.model",
         "load_model": "stnas.export",
         "SearchSpace": "stnas.space", "list_presets": "stnas.space", "load_arch": "stnas.space",
         "load_preset": "stnas.space", "load_space": "stnas.space"}

__all__ = ["Arch", "ArchError", "ConfigError", "DataError", "SearchSpace", "SpaceError", "StnasError",
           "build_model", "list_presets", "load_arch", "load_model", "load_preset", "load_space", "save_arch"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stnas' has no attribute {name!r}")
