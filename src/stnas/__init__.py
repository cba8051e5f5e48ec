"""stnas: one-shot topological NAS with a stabilized (SGLD-sampled) share-parameter proxy."""

from stnas.arch import Arch, load_arch, save_arch
from stnas.errors import ArchError, ConfigError, DataError, SpaceError, StnasError
from stnas.export import load_model
from stnas.model import build_model
from stnas.space import SearchSpace, list_presets, load_preset, load_space

__version__ = "0.1.0"

__all__ = ["Arch", "ArchError", "ConfigError", "DataError", "SearchSpace", "SpaceError", "StnasError",
           "build_model", "list_presets", "load_arch", "load_model", "load_preset", "load_space", "save_arch"]
