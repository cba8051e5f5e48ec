"""The packaged presets (``<name>.yaml``: a ``space`` section and run sections) and the
reading of a preset name or YAML file into a mapping."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from stnas.errors import SpaceError


def list_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("stnas.presets").iterdir() if p.name.endswith(".yaml"))


def read_preset(name_or_path: str | Path) -> dict:
    """The top-level mapping of a preset name or YAML file, as written.

    Raises:
        SpaceError: neither a preset nor a readable YAML file holding a mapping.
    """
    text = None
    name = str(name_or_path)
    if name in list_presets():
        text = resources.files("stnas.presets").joinpath(f"{name}.yaml").read_text()
    else:
        p = Path(name)
        if not p.is_file():  # a FIFO is never opened
            raise SpaceError(f"{name[:200]!r} is neither a preset ({', '.join(list_presets())}) nor a YAML file")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SpaceError(f"cannot read {name}: {exc}") from None
    from stnas.limits import check_text_size, check_tree

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
