"""Where spaces and architectures come from: a packaged preset, a YAML file, a derived name
(``auto-CxS-Kc-B``, :mod:`stnas.space.derive`), a run directory's ``space.yaml``, and an
architecture string or JSON file of one of them. The one reader of each."""

from __future__ import annotations

import os
from pathlib import Path

from stnas.core.errors import ArchError, CheckpointError, ConfigError, SpaceError, first_line
from stnas.core.rundir import RunDir
from stnas.core.verified import read_yaml, write_yaml
from stnas.space.arch import Arch, read_source
from stnas.space.presets import list_presets, load_preset
from stnas.space.searchspace import SearchSpace, decode

__all__ = ["list_presets", "load_arch", "load_preset", "load_space", "read_space_file", "run_space",
           "write_space_file"]


_CACHE: dict[str, SearchSpace] = {}


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """A SearchSpace from a preset name, a YAML file (preset or bare space) or itself."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    key = str(name_or_path)
    if key in list_presets() and key in _CACHE:
        return _CACHE[key]
    config = load_preset(key)["space"]
    try:
        space = SearchSpace(config)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:  # a value of the wrong kind
        raise SpaceError(f"{key[:200]}: invalid space definition (a value of the wrong kind: "
                         f"{type(exc).__name__}: {str(exc)[:120]})") from None
    if key in list_presets():
        _CACHE[key] = space
    return space


def load_arch(source: str | Path, space: SearchSpace | str | Path | None = None) -> Arch:
    """An architecture from a JSON file, a JSON text or a string (grammar: ``stnas.space.arch``).

    ``space`` may be a SearchSpace, a preset name or a YAML path; by default the
    space named in the input is looked up among the presets.
    """
    obj, text, name = read_source(source)
    if space is None:
        if not isinstance(name, str) or not name:
            raise ArchError("the architecture names no space: expected SPACE:STEM/BRANCHES or a JSON file")
        if name not in list_presets() and not name.startswith("auto-"):  # auto-: derived (stnas.space.derive)
            raise ArchError(f"unknown space {name!r}: pass the space's YAML file "
                            f"(presets: {', '.join(list_presets())})")
        space = name
    try:
        space = load_space(space)
    except SpaceError as exc:
        raise ArchError(str(exc)) from None
    return decode(obj, text, space)


def read_space_file(path: str | os.PathLike):
    """The SearchSpace of a checksummed ``space.yaml`` (as :meth:`RunDir.save_space` writes)."""
    obj = read_yaml(path, "space file")
    try:
        return SearchSpace(obj["space"])
    except (KeyError, TypeError, SpaceError) as exc:
        raise CheckpointError(f"space file {path} is damaged ({first_line(exc, 100)})") from None


def write_space_file(path: str | os.PathLike, space) -> Path:
    """Writes ``space``'s definition as a checksummed ``space.yaml``."""
    return write_yaml(path, {"space": space.config})


def run_space(run: RunDir | str | os.PathLike) -> SearchSpace:
    """A run directory's search space: its ``space.yaml``, else its config's preset."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    if not run.path.is_dir():
        raise ConfigError(f"run directory {run.path} does not exist")
    if run.space_file.exists():
        return read_space_file(run.space_file)
    preset = run.load_config().get("preset")
    if not isinstance(preset, str):
        raise CheckpointError(f"run config {run.config} names no preset")
    return load_space(preset)


def save_run_space(run: RunDir, space: SearchSpace) -> Path:
    """Writes ``space`` as the run's checksummed ``space.yaml``."""
    return write_space_file(run.space_file, space)
