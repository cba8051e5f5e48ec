"""Checksummed text artefacts: the one JSON writer and the checking readers (torch-free).

Every JSON, YAML and JSON-lines file stnas writes goes through this module (atomically, via
``stnas.core.fileio``, with the SHA-256 of its content); no other module serializes JSON
into a file (``tests/test_artefacts.py`` holds the code to that). Formats::

    JSON    {..., KEY: H}                H = sha256(canonical JSON of the object without KEY);
                                         KEY is "sha256" ("checksum" for latency tables)
    YAML    <yaml text>"# sha256: H\\n"   H = sha256 of the bytes before the last line
    JSONL   one {..., "sha256": H} per line, H as for JSON

Canonical JSON is ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``: it round-trips
Python floats exactly, so a re-read object digests to the same H. Files are read only when
they are regular files of a bounded size (never a FIFO or device).

Which kind is read how (one checking reader per kind, named by its owner):

* Run artefacts: what stnas writes into a run or model directory -- config.yaml and
  space.yaml (``stnas.core.rundir``, ``stnas.space.catalog``), supernet.json, pool/index.json
  (``stnas.train.pool``), metrics.jsonl (``stnas.train.engine``), proxy_cache.jsonl
  (``stnas.proxy.scorer``), search/ (``stnas.search.history``: search.json, search.jsonl,
  pareto.json, pareto_latency.json, best.json), model_card.json (``stnas.deploy.card``),
  latency.json (``stnas.pipeline.latency``), report.json (``stnas.pipeline.report``),
  rank.json and stability.json (``stnas.cli.rank``). The checksum is required: a file
  without one (plain JSON, or an older stnas's), altered or cut short is refused in one line
  naming it (:class:`CheckpointError`, exit 2). A damaged JSON line is dropped by
  :func:`read_jsonl` and its record recomputed (proxy cache, training log; a search history
  with one is refused). A damaged latency.json is measured again.
* Files people and other tools write too: architecture JSON (``stnas.space.arch``), truth
  files (``stnas.analysis.ranking``), research records (``experiments/``). Written with the
  checksum; read with ``required=False``: a checksum present is checked, a file without one
  is taken as hand-made and validated field by field by its format's reader.
* Latency tables (``stnas.latency.table``): shared between runs, machines and tools, they
  embed the same digest under "checksum" (also the table's identity, named in search.json
  and latency.json); ``validate_table`` requires and checks it on every load.
* Deployment without stnas: a model directory's model_card.json is plain JSON with its
  checksum embedded (``json.load`` reads it: one more key); the preprocessing inside the
  ONNX metadata and the .pt2 archive belongs to those formats, and the SHA-256 of those files
  (and of the directory's others) is in the card (``files_sha256``, ``stnas.deploy.export``).
  Weights and checkpoints are checked by ``stnas.core.weights`` and ``stnas.core.checkpoint``.
* Not artefacts (for people, never read back): report.md, plots/, tb/.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from stnas.core.errors import CheckpointError, first_line
from stnas.core.fileio import write_text
from stnas.core.limits import read_bounded

DIGEST_KEY = "sha256"
YAML_TRAILER = "# sha256: "
MAX_BYTES = 64 << 20  # a run's text artefacts are far smaller: larger is not ours


def content_digest(obj: Any) -> str:
    """Hex SHA-256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_regular(path: str | os.PathLike, what: str = "file", limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a FIFO is never opened), read
    in pieces: a large ``limit`` reserves no memory (:func:`stnas.core.limits.read_bounded`).

    Raises:
        CheckpointError: missing, not a regular file, too large or unreadable.
    """
    return read_bounded(path, what, CheckpointError, limit)


# ------------------------------------------------------------------ JSON
def json_text(obj: dict, key: str = DIGEST_KEY) -> str:
    """``obj`` with its checksum under ``key`` (last), as indented JSON text."""
    if not isinstance(obj, dict):
        raise TypeError(f"a checksummed JSON file holds an object, not a {type(obj).__name__}")
    body = {k: v for k, v in obj.items() if k != key}
    return json.dumps({**body, key: content_digest(body)}, indent=2) + "\n"


def write_json(path: str | os.PathLike, obj: dict, key: str = DIGEST_KEY) -> Path:
    """Writes ``obj`` (a dict) with its checksum, atomically: the one JSON writer."""
    return write_text(path, json_text(obj, key))


def parse_json(raw: bytes, path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON value of ``raw`` (a file's bytes).

    Raises:
        CheckpointError: not UTF-8 JSON, or nested too deeply.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{what} {path} is damaged (not JSON: {first_line(exc, 80)})") from None


def check_digest(obj: Any, path: str | os.PathLike, what: str = "file", key: str = DIGEST_KEY,
                 required: bool = True) -> Any:
    """``obj`` without its checksum, which is checked; without one, ``obj`` as it is when not
    ``required`` (a file people or other tools may write).

    Raises:
        CheckpointError: a checksum that does not match, or none where one is required.
    """
    if not isinstance(obj, dict) or key not in obj:
        if required:
            raise CheckpointError(f"{what} {path} is damaged or not written by this stnas version (no checksum)")
        return obj
    obj = dict(obj)
    want = obj.pop(key)
    if not isinstance(want, str) or content_digest(obj) != want:
        raise CheckpointError(f"{what} {path} is damaged (SHA-256 mismatch)")
    return obj


def read_json(path: str | os.PathLike, what: str = "file", key: str = DIGEST_KEY, required: bool = True) -> Any:
    """What :func:`write_json` wrote, checksum verified, without the checksum key (see the
    module docstring for ``required``).

    Raises:
        CheckpointError: missing, damaged, or without a checksum where one is required.
    """
    return check_digest(parse_json(read_regular(path, what), path, what), path, what, key, required)


# ------------------------------------------------------------------ YAML
def yaml_text(obj: Any) -> str:
    """``obj`` as YAML text with a closing checksum line."""
    text = yaml.safe_dump(obj, sort_keys=False)
    return f"{text}{YAML_TRAILER}{hashlib.sha256(text.encode('utf-8')).hexdigest()}\n"


def write_yaml(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as checksummed YAML, atomically."""
    return write_text(path, yaml_text(obj))


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """What :func:`write_yaml` wrote, checksum verified.

    Raises:
        CheckpointError: missing, damaged (a cut, a flipped byte), or without a checksum.
    """
    path = Path(path)
    raw = read_regular(path, what)
    body, sep, last = raw.rstrip(b"\n").rpartition(b"\n")
    trailer = YAML_TRAILER.encode()
    if not sep or not last.startswith(trailer):
        raise CheckpointError(f"{what} {path} is damaged, cut short or not written by this stnas version "
                              f"(no checksum line)")
    body += b"\n"
    if hashlib.sha256(body).hexdigest().encode() != last[len(trailer):].strip():
        raise CheckpointError(f"{what} {path} is damaged (SHA-256 mismatch)")
    try:
        return yaml.safe_load(body.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise CheckpointError(f"{what} {path} is damaged ({first_line(exc, 80)})") from None


# ------------------------------------------------------------------ JSON lines
def jsonl_line(record: dict) -> str:
    """One checksummed JSON line (with its newline)."""
    body = {k: v for k, v in record.items() if k != DIGEST_KEY}
    return json.dumps({**body, DIGEST_KEY: content_digest(body)}) + "\n"


def parse_line(line: bytes) -> dict | None:
    """The record of one checksummed JSON line, or None when it is damaged."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get(DIGEST_KEY), str):
        return None
    want = obj.pop(DIGEST_KEY)
    return obj if content_digest(obj) == want else None


def read_jsonl(path: str | os.PathLike, what: str = "file") -> tuple[list[dict], int]:
    """The intact records of a checksummed JSON-lines file and how many lines were dropped
    (damaged, cut short or unchecksummed); ([], 0) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return [], 0
    records, dropped = [], 0
    for line in read_regular(path, what, limit=1 << 34).split(b"\n"):
        if not line.strip():
            continue
        rec = parse_line(line)
        if rec is None:
            dropped += 1
        else:
            records.append(rec)
    return records, dropped


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Appends one checksummed line, flushed to disk; a line cut short by an earlier kill is
    first closed, so the new record starts a line of its own."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab+") as f:
        if f.tell():
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(jsonl_line(record).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> Path:
    """Writes a whole checksummed JSON-lines file atomically."""
    return write_text(path, "".join(jsonl_line(r) for r in records))
