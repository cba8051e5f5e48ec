"""Bounds on untrusted input (stnas.core.limits): bounded reads, the JSON parser of outside
input, file tests that never raise."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core import limits
from stnas.core.errors import CheckpointError, ConfigError
from stnas.core.limits import is_dir, is_file, parse_json, read_bounded, read_text_bounded, shown
from stnas.core.verified import read_regular

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(data=st.binary(max_size=3000), limit=st.integers(0, 4000), chunk=st.sampled_from([1, 7, 1 << 20]))
def test_read_bounded_returns_the_file_or_refuses_it(tmp_path_factory, data, limit, chunk):
    path = tmp_path_factory.mktemp("rb") / "f"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(limits, "CHUNK", chunk)
        if len(data) <= limit:
            assert read_bounded(path, "file", ConfigError, limit) == data
        else:
            with pytest.raises(ConfigError, match=f"{len(data)} bytes, more than the {limit}"):
                read_bounded(path, "file", ConfigError, limit)


@pytest.mark.parametrize("limit", [10, 1 << 40])
def test_read_bounded_a_file_larger_than_its_size_at_open(monkeypatch, limit):
    """/proc files report size 0 but hold text: read in pieces, up to the limit."""
    monkeypatch.setattr(limits, "CHUNK", 16)
    want = open("/proc/self/mountinfo", "rb").read()
    assert len(want) > 10 and os.stat("/proc/self/mountinfo").st_size == 0
    if limit == 10:
        with pytest.raises(ConfigError, match="grew past the 10 bytes"):
            read_bounded("/proc/self/mountinfo", "table", ConfigError, limit)
    else:  # a limit of 1 TiB reserves nothing: the read allocates what the file holds
        got = read_bounded("/proc/self/mountinfo", "table", ConfigError, limit)
        assert got[:200] == want[:200]


def test_read_bounded_errors(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {tmp_path / "missing": "does not exist", fifo: "not a regular file", tmp_path: "not a regular file",
             tmp_path / ("a" * 300): "File name too long", "a\0b": "cannot be read"}
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words) as info:
            read_regular(path, "cache")
        assert "\n" not in str(info.value)
    (tmp_path / "latin1").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_text_bounded(tmp_path / "latin1", "list", ConfigError)


def test_shown_keeps_the_end_of_a_long_path():
    assert shown("runs/a") == "runs/a"
    long = "x" * 3000 + "/model.json"
    cut = shown(long)
    assert len(cut) < 200 and cut.startswith("x" * 80) and "model.json" in cut and "3011 characters" in cut


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=20)


def _depth(obj) -> int:
    if isinstance(obj, dict):
        return 1 + max(map(_depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(_depth, obj), default=0)
    return 0


@SETTINGS
@given(obj=json_values)
def test_parse_json_round_trips(obj):
    assert parse_json(json.dumps(obj), "x", ConfigError) == obj


@SETTINGS
@given(depth=st.integers(0, 80), kind=st.sampled_from(["[", '{"a":']))
def test_parse_json_nesting_bound(depth, kind):
    close = "]" if kind == "[" else "}"
    text = kind * depth + "1" + close * depth
    nesting = _depth(json.loads(text))
    assert nesting == depth
    if depth <= limits.MAX_DEPTH:
        assert _depth(parse_json(text, "x", ConfigError)) == depth
    else:
        with pytest.raises(ConfigError, match="nests deeper than"):
            parse_json(text, "x", ConfigError)


@pytest.mark.parametrize("text, words", [("[" * 200_000 + "]" * 200_000, "nests deeper"),
                                         ("{not json", "not valid JSON"), (b"\xff\xfe", "not valid JSON"),
                                         ("", "not valid JSON")])
def test_parse_json_refuses_in_one_line(text, words):
    with pytest.raises(ConfigError, match=words) as info:
        parse_json(text, "truth file t.json", ConfigError)
    assert "\n" not in str(info.value) and str(info.value).startswith("truth file t.json")


@given(name=st.text(min_size=1, max_size=600))
@settings(max_examples=80, deadline=None)
def test_file_tests_never_raise(name):
    assert is_file(name) in (True, False) and is_dir(name) in (True, False)


def test_file_tests(tmp_path):
    (tmp_path / "f").write_text("")
    assert is_file(tmp_path / "f") and not is_dir(tmp_path / "f")
    assert is_dir(tmp_path) and not is_file(tmp_path)
    for name in ("a" * 5000, str(tmp_path / ("b" * 300)), "a\0b", tmp_path / "missing"):
        assert not is_file(name) and not is_dir(name)
