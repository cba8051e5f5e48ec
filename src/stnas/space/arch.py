"""Architectures as data: the value type, its one-line string and its JSON file.

String grammar (one line, for logs and the command line)::

    SPACE:STEM/BRANCHES

* ``SPACE`` -- the space's name (``paper``, ``fashion-mnist``, or a YAML space's name).
* ``STEM`` -- one character per stem edge, in order: the index of its op in the
  space's ``ops`` list, written in base 36 (``0``-``9``, then ``a``-``z``).
* ``BRANCHES`` -- one character per branch edge, in the space's canonical order
  (by target node, then source node: ``x0->x2, x0->x3, x1->x3, x1->x4, ...``):
  ``.`` when the edge is off, else the index of its op in ``branch.ops`` (base 36).

Example, a 6-edge space with 9 branch edges: ``digits:021543/..1....0.``.

JSON file (versioned; written by ``save_arch``, read by ``stnas.space.catalog.load_arch``)::

    {"format": "stnas-arch", "version": 1,
     "space": "paper", "space_fingerprint": "3f0c9e2a41d7",
     "stem": ["mb_k3_e3", ...],                                # one op name per stem edge
     "branches": [{"from": 0, "to": 2, "op": "mb_k5_e6"}, ...],  # active branch edges only
     "sha256": "..."}                                          # optional (stnas.core.verified)

People write architecture files too: a checksum, when present, is checked (stnas writes
one); without it the file is validated against the space like any other.

Parsing validates everything against the space and raises :class:`ArchError` with a
message that says what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stnas.core.errors import ArchError, CheckpointError
from stnas.core.limits import check_text_size, is_file, parse_json, read_text_bounded
from stnas.core.verified import check_digest, write_json

# an Arch holds its space, a stnas.space.searchspace.SearchSpace; that module imports this one,
# so the type is named here and not imported (the package's imports run one way)
SearchSpace = Any

FORMAT = "stnas-arch"
VERSION = 1
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


class Arch:
    """One architecture of a space: an op index per stem edge and, per branch edge,
    -1 (off) or an op index. Immutable and hashable; equal when space and choices are."""

    __slots__ = ("space", "stem", "branches")

    def __init__(self, space: SearchSpace, stem, branches):
        stem, branches = tuple(int(o) for o in stem), tuple(int(o) for o in branches)
        _validate(space, stem, branches)
        self._set(space, stem, branches)

    def _set(self, space, stem, branches):
        object.__setattr__(self, "space", space)
        object.__setattr__(self, "stem", stem)
        object.__setattr__(self, "branches", branches)

    @classmethod
    def _trusted(cls, space: SearchSpace, stem: tuple[int, ...], branches: tuple[int, ...]) -> Arch:
        """Construction without validation, for the space's own samplers."""
        a = object.__new__(cls)
        a._set(space, stem, branches)
        return a

    def __setattr__(self, *_):
        raise AttributeError("Arch is immutable")

    def __eq__(self, other: Any) -> bool:
        return (isinstance(other, Arch) and self.stem == other.stem and self.branches == other.branches
                and self.space.fingerprint == other.space.fingerprint)

    def __hash__(self) -> int:
        return hash((self.space.fingerprint, self.stem, self.branches))

    def __str__(self) -> str:
        return to_string(self)

    def __repr__(self) -> str:
        return f"Arch({to_string(self)!r})"

    def __reduce__(self):  # pickling for DataLoader workers / multiprocessing (the space pickles as its config)
        return (Arch._trusted, (self.space, self.stem, self.branches))

    @property
    def madds(self) -> int:
        return self.space.madds(self)

    @property
    def params(self) -> int:
        return self.space.params(self)

    @property
    def num_branches(self) -> int:
        return sum(o >= 0 for o in self.branches)

    def to_json(self) -> dict:
        s = self.space
        return {
            "format": FORMAT, "version": VERSION, "space": s.name, "space_fingerprint": s.fingerprint,
            "stem": [s.ops[o].name for o in self.stem],
            "branches": [{"from": b.src, "to": b.dst, "op": s.branch_ops[o].name}
                         for b, o in zip(s.branch_edges, self.branches) if o >= 0],
        }


def _validate(space: SearchSpace, stem: tuple[int, ...], branches: tuple[int, ...]) -> None:
    if len(stem) != space.num_edges:
        raise ArchError(f"space {space.name!r} has {space.num_edges} stem edges, got {len(stem)} stem ops")
    if len(branches) != len(space.branch_edges):
        raise ArchError(f"space {space.name!r} has {len(space.branch_edges)} branch edges, "
                        f"got {len(branches)} branch entries")
    for k, (e, o) in enumerate(zip(space.stem_edges, stem)):
        if not 0 <= o < len(space.ops):
            raise ArchError(f"stem edge {k + 1}: op index {o} is out of range (space has {len(space.ops)} ops)")
        if o not in e.allowed:
            raise ArchError(f"stem edge {k + 1} (x{e.src}->x{e.dst}): op {space.ops[o].name!r} does not fit "
                            f"{e.c_in}->{e.c_out} channels at stride {e.stride}")
    for b, o in zip(space.branch_edges, branches):
        if not -1 <= o < len(space.branch_ops):
            raise ArchError(f"branch x{b.src}->x{b.dst}: op index {o} is out of range "
                            f"(space has {len(space.branch_ops)} branch ops)")
        if o >= 0 and o not in b.allowed:
            raise ArchError(f"branch x{b.src}->x{b.dst}: op {space.branch_ops[o].name!r} does not fit "
                            f"{b.c_in}->{b.c_out} channels at stride {b.stride}")


# -------------------------------------------------------------------- string
def to_string(arch: Arch) -> str:
    stem = "".join(_DIGITS[o] for o in arch.stem)
    br = "".join("." if o < 0 else _DIGITS[o] for o in arch.branches)
    return f"{arch.space.name}:{stem}/{br}"


def from_string(text: str, space: SearchSpace) -> Arch:
    text = text.strip()
    if ":" not in text or "/" not in text.split(":", 1)[1]:
        raise ArchError(f"architecture string {text[:60]!r} is not of the form SPACE:STEM/BRANCHES")
    name, body = text.split(":", 1)
    if name != space.name:
        raise ArchError(f"architecture is for space {name!r}, expected {space.name!r}")
    stem_s, br_s = body.split("/", 1)

    def digit(c: str, where: str) -> int:
        k = _DIGITS.find(c)
        if k < 0:
            raise ArchError(f"{where}: {c!r} is not an op index (0-9, a-z) or '.'")
        return k

    stem = [digit(c, f"stem edge {k + 1}") for k, c in enumerate(stem_s)]
    branches = [-1 if c == "." else digit(c, f"branch entry {k + 1}") for k, c in enumerate(br_s)]
    return Arch(space, stem, branches)


# -------------------------------------------------------------------- JSON
def from_json(obj: Any, space: SearchSpace) -> Arch:
    if not isinstance(obj, dict):
        raise ArchError("architecture JSON must be an object")
    if obj.get("format") != FORMAT:
        raise ArchError(f"not an stnas architecture file (format is {obj.get('format')!r}, expected {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise ArchError(f"unsupported architecture file version {obj.get('version')!r} (this stnas reads {VERSION})")
    if obj.get("space") != space.name:
        raise ArchError(f"architecture is for space {obj.get('space')!r}, expected {space.name!r}")
    fp = obj.get("space_fingerprint")
    if fp is not None and fp != space.fingerprint:
        raise ArchError(f"architecture was made for a different definition of space {space.name!r} "
                        f"(fingerprint {fp}, this space is {space.fingerprint})")
    stem_names, br_list = obj.get("stem"), obj.get("branches", [])
    if not isinstance(stem_names, list):
        raise ArchError("architecture JSON needs 'stem': a list of op names")
    if not isinstance(br_list, list):
        raise ArchError("architecture JSON 'branches' must be a list of {from, to, op}")
    op_index = {op.name: k for k, op in enumerate(space.ops)}
    stem = []
    for k, name in enumerate(stem_names):
        if name not in op_index:
            raise ArchError(f"stem edge {k + 1}: unknown op {name!r} (space ops: {', '.join(op_index)})")
        stem.append(op_index[name])
    bop_index = {op.name: k for k, op in enumerate(space.branch_ops)}
    edge_index = {(b.src, b.dst): k for k, b in enumerate(space.branch_edges)}
    branches = [-1] * len(space.branch_edges)
    for entry in br_list:
        if not isinstance(entry, dict) or set(entry) != {"from", "to", "op"}:
            raise ArchError(f"branch entry {entry!r} must be an object with exactly from, to and op")
        key = (entry["from"], entry["to"])
        if key not in edge_index:
            raise ArchError(f"branch x{entry['from']}->x{entry['to']} is not a branch edge of space {space.name!r}")
        if branches[edge_index[key]] != -1:
            raise ArchError(f"branch x{key[0]}->x{key[1]} is listed twice")
        if entry["op"] not in bop_index:
            raise ArchError(f"branch x{key[0]}->x{key[1]}: unknown op {entry['op']!r} "
                            f"(branch ops: {', '.join(bop_index)})")
        branches[edge_index[key]] = bop_index[entry["op"]]
    return Arch(space, stem, branches)


def save_arch(arch: Arch, path: str | Path) -> Path:
    """Writes the architecture JSON atomically."""
    return write_json(path, arch.to_json())


def read_source(source: str | Path) -> tuple[Any, str, str | None]:
    """What an architecture source holds: ``(json_obj, text, space_name)``, where
    ``json_obj`` is None for a string ``SPACE:STEM/BRANCHES`` and ``source`` may be a JSON
    file, a JSON text or such a string. Decoding against a space is
    :func:`stnas.space.catalog.load_arch`'s job."""
    text = str(source).strip()
    where = "text"
    if not text:
        raise ArchError("empty architecture: give a JSON file or a string SPACE:STEM/BRANCHES")
    if not text.startswith(("{", "[")) and (text.endswith(".json") or is_file(text)):
        where = text
        text = read_text_bounded(text, "architecture file", ArchError)
    obj = None
    if text.lstrip().startswith(("{", "[")):
        what = "architecture JSON" if where == "text" else f"architecture file {where}"  # a file is named
        check_text_size(text, what, ArchError)
        obj = parse_json(text, what, ArchError)
        try:
            obj = check_digest(obj, where, "architecture JSON", required=False)
        except CheckpointError as exc:
            raise ArchError(str(exc)) from None
        name = obj.get("space") if isinstance(obj, dict) else None
    else:
        name = text.split(":", 1)[0] if ":" in text else None
    return obj, text, name
