"""The one JSON writer and its checking reader (stnas.core.verified)."""

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import CheckpointError
from stnas.core.verified import check_digest, read_json, write_json

LEAVES = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
          | st.text(max_size=8))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=4), max_leaves=12)
OBJECTS = st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("sha256", "checksum")), VALUES, max_size=5)


def digest(obj) -> str:
    """The documented checksum, computed here: sha256 of the canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@given(OBJECTS)
@settings(max_examples=60, deadline=None)
def test_what_is_written_reads_back_and_is_plain_json_with_one_key_more(tmp_path_factory, obj):
    path = tmp_path_factory.mktemp("v") / "a.json"
    write_json(path, obj)
    assert read_json(path, "summary") == obj
    plain = json.loads(path.read_text())  # what a tool without stnas sees
    assert plain.pop("sha256") == digest(obj) and plain == obj


@given(OBJECTS.filter(bool), st.data())
@settings(max_examples=60, deadline=None)
def test_any_changed_value_is_caught(tmp_path_factory, obj, data):
    path = tmp_path_factory.mktemp("v") / "a.json"
    write_json(path, obj)
    key = data.draw(st.sampled_from(sorted(obj)))
    value = data.draw(VALUES.filter(lambda v: json.dumps(v, sort_keys=True) != json.dumps(obj[key], sort_keys=True)))
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    with pytest.raises(CheckpointError) as e:
        read_json(path, "summary")
    assert "SHA-256 mismatch" in one_line(e, path)


def test_plain_cut_or_foreign_files_are_refused_in_one_line(tmp_path):
    path = tmp_path / "search.json"
    write_json(path, {"seed": 1, "best": [0.5, "digits:0/."]})
    good = path.read_text()
    path.write_text(json.dumps({"seed": 1, "best": [0.5, "digits:0/."]}))  # as an older stnas wrote it
    with pytest.raises(CheckpointError) as e:
        read_json(path, "search summary")
    assert one_line(e, path).startswith("search summary") and "no checksum" in str(e.value)
    for text, words in ((good[:-12], "not JSON"), ("[1, 2]", "no checksum"), ("\xff", "not JSON"),
                        ("[" * 100_000, "not JSON")):
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(CheckpointError) as e:
            read_json(path, "search summary")
        assert words in one_line(e, path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_json(tmp_path / "none.json")


def test_files_people_write_are_checked_only_when_they_carry_a_checksum(tmp_path):
    path = tmp_path / "truth.json"
    path.write_text(json.dumps({"results": [1, 2]}))
    assert read_json(path, "truth file", required=False) == {"results": [1, 2]}
    path.write_text("[1, 2]")
    assert read_json(path, "truth file", required=False) == [1, 2]
    write_json(path, {"results": [1, 2]})
    path.write_text(path.read_text().replace("2", "3", 1))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        read_json(path, "truth file", required=False)
    assert check_digest({"a": 1}, path, required=False) == {"a": 1}


def test_another_digest_key(tmp_path):
    """Latency tables embed the same digest under "checksum" (their identity)."""
    path = tmp_path / "t.json"
    write_json(path, {"format": "x", "entries": {"a": 1.5}, "checksum": "stale"}, key="checksum")
    raw = json.loads(path.read_text())
    assert list(raw)[-1] == "checksum" and raw["checksum"] == digest({"format": "x", "entries": {"a": 1.5}})
    assert read_json(path, key="checksum") == {"format": "x", "entries": {"a": 1.5}}
    with pytest.raises(CheckpointError, match="no checksum"):
        read_json(path)


def test_only_objects_are_written(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "a.json", [1, 2])
    assert not (tmp_path / "a.json").exists()
