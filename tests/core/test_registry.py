"""The registry type behind every closed choice."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stnas.core.errors import ConfigError, DataError
from stnas.core.registry import Registry


def _reg():
    r = Registry("colour")
    r.add("red", 1, "the first")
    r.add("green", 2)

    @r.register("blue", help="decorated")
    def blue():
        return 3

    return r


def test_entries_in_order_with_help():
    r = _reg()
    assert r.names() == ("red", "green", "blue")
    assert r.get("green") == 2 and r.get("blue")() == 3
    assert "red" in r and "violet" not in r and len(r) == 3 and list(r) == ["red", "green", "blue"]
    assert r.help("red") == "the first"
    assert r.help() == "red: the first; green; blue: decorated"


def test_unknown_name_is_one_line_with_a_hint():
    r = _reg()
    with pytest.raises(ConfigError) as info:
        r.get("gren", "proxy.colour")
    msg = str(info.value)
    assert msg.startswith("proxy.colour must be one of red, green, blue") and "did you mean 'green'" in msg
    assert "\n" not in msg


def test_error_type_and_double_registration():
    r = Registry("dataset", error=DataError)
    r.add("a", 0)
    with pytest.raises(DataError):
        r.check("b")
    with pytest.raises(ValueError):
        r.add("a", 1)
    for bad in ("", " a", 3):
        with pytest.raises(ValueError):
            r.add(bad, 1)


@given(st.one_of(st.text(max_size=300), st.integers(), st.none(), st.lists(st.integers(), max_size=3)))
def test_any_unknown_value_gives_one_bounded_line(value):
    r = _reg()
    if value in ("red", "green", "blue"):
        assert r.check(value) == value
        return
    with pytest.raises(ConfigError) as info:
        r.check(value)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400
