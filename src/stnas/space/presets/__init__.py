"""The packaged presets (``<name>.yaml``: a ``space`` section and run sections) and the
reading of a preset name or YAML file into a mapping."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from stnas.core.errors import SpaceError
from stnas.core.limits import check_text_size, check_tree, is_file, read_text_bounded

# the run sections a preset may hold besides ``space`` (the top level of stnas.pipeline.config.DEFAULTS;
# a test keeps the two equal)
PRESET_SECTIONS = ("preset", "seed", "device", "data", "supernet", "sgld", "pool", "proxy", "search", "latency",
                   "retrain", "run", "baselines")


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("stnas.space.presets").iterdir() if p.name.endswith(".yaml"))


def read_preset(name_or_path: str | Path) -> dict:
    """The top-level mapping of a preset name or YAML file, as written.

    Raises:
        SpaceError: neither a preset nor a readable YAML file holding a mapping.
    """
    text = None
    name = str(name_or_path)
    if name in list_presets():
        text = resources.files("stnas.space.presets").joinpath(f"{name}.yaml").read_text()
    else:
        if not is_file(name):  # a FIFO is never opened; a name too long for a file is none
            raise SpaceError(f"{name[:200]!r} is neither a preset ({', '.join(list_presets())}) nor a YAML file")
        text = read_text_bounded(name, "space file", SpaceError)
    check_text_size(text, name, SpaceError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceError(f"{name}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise SpaceError(f"{name}: invalid YAML (nested too deeply)") from None
    check_tree(data, name, SpaceError)
    if not isinstance(data, dict):
        raise SpaceError(f"{name}: expected a mapping at the top level")
    return data


def load_preset(name_or_path: str | Path) -> dict:
    """The full preset dict (space, data and recipes) of a preset name or YAML file; a bare
    space file (no ``space:`` section and no run sections) becomes ``{"space": ...}``.

    Raises:
        SpaceError: unreadable, not a mapping, or run sections without a space section.
    """
    if str(name_or_path).startswith("auto-") and not is_file(name_or_path):
        from stnas.space.derive import derived_preset  # imports torch: only for derived names

        return derived_preset(str(name_or_path))
    data = read_preset(name_or_path)
    if "space" not in data:
        run_sections = sorted(set(PRESET_SECTIONS) & set(data))
        if run_sections:
            raise SpaceError(f"{name_or_path} has run settings ({', '.join(run_sections)}) but no 'space:' section; "
                             f"a preset file needs one (see the presets in stnas/space/presets/)")
        data = {"space": data}
    return data
