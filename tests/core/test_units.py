"""Times as text: ``parse_duration`` (``--time``, ``run.time_budget``) and ``fmt_duration``."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import ConfigError
from stnas.core.units import fmt_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("1h30m", 5400),
                                           ("1h 30m 15s", 5415), ("2M", 120), (".5m", 30), ("0.25s", 0.25)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@given(st.integers(0, 99), st.integers(0, 999), st.integers(0, 9999))
@settings(max_examples=60, deadline=None)
def test_any_sum_of_units_largest_first_parses(h, m, s):
    parts = [(h, "h"), (m, "m"), (s, "s")]
    text = "".join(f"{n}{u}" for n, u in parts if n)
    if not text:
        return
    assert parse_duration(text) == h * 3600 + m * 60 + s


@pytest.mark.parametrize("bad", ["10", "m", "", "1m1h", "1h1h", "-1m", "0s", "0h0m", "1e3s", "10 min", "1d",
                                 "nan s", "1h30", 600, None, True, "9" * 80 + "s", "99999999h"])
def test_a_bad_time_is_one_line_naming_it(bad):
    with pytest.raises(ConfigError) as exc:
        parse_duration(bad, "run.time_budget")
    msg = str(exc.value)
    assert msg.startswith("run.time_budget: ") and "\n" not in msg and len(msg) < 200


@given(st.text(max_size=30))
@settings(max_examples=200, deadline=None)
def test_any_text_parses_or_is_refused_in_one_line(text):
    try:
        value = parse_duration(text)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < value <= 10**7


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (44.6, "45 s"), (59.6, "1 min 00 s"), (190, "3 min 10 s"),
                                           (3600, "1 h 00 min"), (3900, "1 h 05 min"), (-3, "0 s")])
def test_fmt_duration(seconds, text):
    assert fmt_duration(seconds) == text


@given(st.integers(1, 10**6))
@settings(max_examples=50, deadline=None)
def test_fmt_duration_reads_back_within_its_rounding(seconds):
    text = fmt_duration(seconds).replace(" h ", "h").replace(" min ", "m").replace(" min", "m").replace(" s", "s")
    text = text[:-3] + "m" if text.endswith("min") else text
    assert abs(parse_duration(text) - seconds) <= (60 if seconds >= 3600 else 0.5)
