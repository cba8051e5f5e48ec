"""Bounds on untrusted input: bounded reads of files, nesting depth and size of parsed
YAML/JSON, integer range, the sensible range of config values.

:func:`read_bounded` reads a file in pieces and stops past its limit, so a limit far above a
file's size (a proxy cache may hold up to 16 GiB) never reserves that much memory up front.
:func:`parse_json` is the one parser of JSON handed in from outside (an architecture, a truth
file, a latency table): malformed or deeply nested text is a one-line error, never a
``RecursionError``.

A YAML alias bomb is a small text whose parsed tree, counted with every alias expanded, is
huge; :func:`check_tree` counts nodes that way and stops at the bound, so it never walks
more than ``max_nodes`` nodes itself.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from stnas.core.errors import ConfigError, StnasError, first_line

MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_INT = 2**63 - 1  # seeds, steps and counts are packed as signed 64-bit integers
MAX_TEXT = 4 << 20  # bytes of a config, space or architecture file
CHUNK = 1 << 20  # bytes read at a time past a file's size at open (a file that grows)


def is_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a regular file: False, not an error, for a name no file can have
    (longer than the system allows, a NUL byte), so that an argument that may be a file or a
    name (a preset, a dataset, an architecture string) is simply not a file."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def is_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a directory (False for a name no file can have, as :func:`is_file`)."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def shown(path: str | os.PathLike, limit: int = 160) -> str:
    """``path`` for a message: its middle cut out when longer than ``limit`` characters, so
    that what follows it (the problem) stays on the line."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 4:]} ({len(text)} characters)"


def _reason(exc: BaseException) -> str:
    """An OS error's reason without the file name it repeats."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)


def read_bounded(path: str | os.PathLike, what: str, error: type[StnasError], limit: int = MAX_TEXT) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them (a FIFO or device is
    never opened). Memory grows with what is read, never with ``limit``.

    Raises:
        ``error``: missing, not a regular file, more than ``limit`` bytes (at open or while
            read), or unreadable; one line naming ``what``, the path and the problem.
    """
    name = shown(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {name} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{what} {name} cannot be read: {_reason(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {name} is not a regular file")
    if st.st_size > limit:
        raise error(f"{what} {name} is {st.st_size} bytes, more than the {limit} this file may hold")
    parts, total = [], 0
    try:
        with open(path, "rb") as f:
            want = st.st_size + 1  # one read for a file that did not change since stat
            while chunk := f.read(want):
                parts.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise error(f"{what} {name} grew past the {limit} bytes this file may hold")
                want = min(CHUNK, limit + 1 - total)
    except OSError as exc:
        raise error(f"{what} {name} cannot be read: {_reason(exc)}") from None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_text_bounded(path: str | os.PathLike, what: str, error: type[StnasError], limit: int = MAX_TEXT) -> str:
    """:func:`read_bounded` decoded as UTF-8 (``error`` when it is not)."""
    raw = read_bounded(path, what, error, limit)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {shown(path)} is not UTF-8 text ({first_line(exc, 80)})") from None


def parse_json(text: str | bytes, what: str, error: type[StnasError], max_depth: int = MAX_DEPTH) -> Any:
    """JSON text from outside, parsed: ``error`` (one line naming ``what``) when it is not JSON
    or nests deeper than ``max_depth`` levels. Its size is the reader's bound (JSON has no
    aliases, so its node count is bounded by its length)."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise error(f"{what} nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise error(f"{what} is malformed, not valid JSON ({first_line(exc, 120)})") from None
    check_tree(obj, what, error, max_depth=max_depth, max_nodes=len(text) + 1)
    return obj


def check_tree(obj: Any, what: str, error: type[StnasError], max_depth: int = MAX_DEPTH,
               max_nodes: int = MAX_NODES) -> None:
    """Raises ``error`` when ``obj`` nests deeper than ``max_depth`` or holds more than
    ``max_nodes`` values (aliases counted each time they occur)."""
    count = 0
    stack = [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > max_nodes:
            raise error(f"{what} is too large (more than {max_nodes} values, aliases expanded)")
        if depth > max_depth:
            raise error(f"{what} nests deeper than {max_depth} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node.keys() if isinstance(k, (tuple, frozenset)))
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def check_text_size(text: str | bytes, what: str, error: type[StnasError], limit: int = MAX_TEXT) -> None:
    """Raises ``error`` when ``text`` is longer than ``limit``."""
    if len(text) > limit:
        raise error(f"{what} is {len(text)} characters long, more than the {limit} allowed")


# the largest sensible value of numeric keys (beyond them a run would never end or fit)


def check_sgld_settings(lr: float = 0.0, momentum: float = 0.0, weight_decay: float = 0.0, temperature: float = 1.0,
                        noise_scale: float | None = None) -> None:
    """The SGLD sampler's value checks (``stnas.train.sgld.SGLD`` runs them too), torch-free so that
    a run's config is checked with them before any training."""
    if not lr >= 0.0:
        raise ConfigError(f"SGLD: lr must be >= 0, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ConfigError(f"SGLD: momentum must be in [0, 1), got {momentum}")
    if not weight_decay >= 0.0:
        raise ConfigError(f"SGLD: weight_decay must be >= 0, got {weight_decay}")
    if not temperature >= 0.0:
        raise ConfigError(f"SGLD: temperature must be >= 0, got {temperature}")
    if noise_scale is not None and not noise_scale >= 0.0:
        raise ConfigError(f"SGLD: noise_scale must be >= 0, got {noise_scale}")
