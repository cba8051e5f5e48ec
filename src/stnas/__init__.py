"""stnas: one-shot topological NAS with a stabilized (SGLD-sampled) share-parameter proxy.

The names below load on first use, so that ``import stnas.pipeline.config`` (and the CLI's argument
parsing) does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from stnas.core import __version__  # noqa: F401
from stnas.core.errors import ArchError, ConfigError, DataError, SpaceError, StnasError

if TYPE_CHECKING:
    from stnas.deploy.export import load_model
    from stnas.nn.model import build_model
    from stnas.space.arch import Arch, save_arch
    from stnas.space.catalog import list_presets, load_arch, load_space
    from stnas.space.presets import load_preset
    from stnas.space.searchspace import SearchSpace


_LAZY = {"Arch": "stnas.space.arch", "save_arch": "stnas.space.arch", "build_model": "stnas.nn.model",
         "load_model": "stnas.deploy.export",
         "SearchSpace": "stnas.space.searchspace", "list_presets": "stnas.space.catalog",
         "load_arch": "stnas.space.catalog", "load_preset": "stnas.space.presets", "load_space": "stnas.space.catalog"}

__all__ = ["Arch", "ArchError", "ConfigError", "DataError", "SearchSpace", "SpaceError", "StnasError",
           "build_model", "list_presets", "load_arch", "load_model", "load_preset", "load_space", "save_arch"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'stnas' has no attribute {name!r}")
