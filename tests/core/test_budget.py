"""Budgets as text (stnas.core.units.Budget, parse_budget): the grammar, the round trip of
labels, and one-line errors for anything else."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stnas.core.errors import ConfigError
from stnas.core.units import Budget, parse_budget


@pytest.mark.parametrize("text, want", [
    ("4M", Budget(madds=4_000_000)), ("350k", Budget(madds=350_000)), (2_000_000, Budget(madds=2_000_000)),
    ("params:300k", Budget(params=300_000)), ("1.2ms", Budget(latency_ms=1.2)), ("800us", Budget(latency_ms=0.8)),
    ("0.5s", Budget(latency_ms=500.0)), ("4M+1.2ms", Budget(4_000_000, None, 1.2)),
    (" params:1M + 6M ", Budget(6_000_000, 1_000_000)), ("4M+params:2M+3ms", Budget(4_000_000, 2_000_000, 3.0)),
])
def test_grammar(text, want):
    assert parse_budget(text) == want


def test_labels():
    assert Budget(4_000_000).label == "4M" and Budget(params=300_000).label == "params:300k"
    assert Budget(latency_ms=0.8).label == "800us" and Budget(3_500_000, None, 1.2).label == "3.5M+1.2ms"


@pytest.mark.parametrize("text", ["", "x", "4M+", "4M+5M", "1ms+2ms", "params:", "params:x", "ms", "-3M", "4 M ms",
                                  "0ms", "1.2.3", "4M;1ms"])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(ConfigError) as err:
        parse_budget(text)
    assert "\n" not in str(err.value)


@given(st.one_of(st.none(), st.integers(1, 10**12)), st.one_of(st.none(), st.integers(1, 10**12)),
       st.one_of(st.none(), st.floats(0.001, 10**6)))
def test_a_label_parses_back_to_its_budget(madds, params, ms):
    if madds is params is ms is None:
        return
    b = Budget(madds, params, ms)
    back = parse_budget(b.label)
    assert back.madds == madds and back.params == params
    assert (back.latency_ms is None) == (ms is None) and (ms is None or abs(back.latency_ms / ms - 1) < 1e-5)


@given(st.text(max_size=40))
def test_any_text_is_a_budget_or_a_one_line_error(text):
    try:
        b = parse_budget(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(b, Budget) and parse_budget(b.label) == b
