import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas import Arch, ArchError, load_arch, load_space, save_arch
from stnas.space.arch import from_json, from_string, to_string

from archcases import MALFORMED
from conftest import ALL_PRESETS


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(ALL_PRESETS),
       mode=st.sampled_from(["topology", "architecture"]))
def test_string_and_json_round_trip(seed, name, mode):
    s = load_space(name)
    a = s.sample(np.random.default_rng(seed), mode)
    text = to_string(a)
    assert "\n" not in text and text.startswith(f"{name}:")
    assert len(text) == len(name) + 2 + s.num_edges + len(s.branch_edges)
    assert from_string(text, s) == a
    assert load_arch(text) == a
    obj = json.loads(json.dumps(a.to_json()))
    assert from_json(obj, s) == a
    assert hash(load_arch(json.dumps(obj))) == hash(a)


def test_file_round_trip(tmp_path):
    s = load_space("paper")
    a = s.sample(np.random.default_rng(3))
    path = save_arch(a, tmp_path / "a.json")
    assert load_arch(path) == a
    assert load_arch(str(path), "paper") == a


def test_string_grammar_by_hand():
    s = load_space("digits")
    # op 0 = mb_k3_e3 on every stem edge; branch x0->x2 (first in order) = conv1x1 (branch op 0)
    a = load_arch("digits:000000/0........")
    assert [s.ops[o].name for o in a.stem] == ["mb_k3_e3"] * 6
    on = [(b.src, b.dst) for b, o in zip(s.branch_edges, a.branches) if o >= 0]
    assert on == [(0, 2)]
    assert a.to_json()["branches"] == [{"from": 0, "to": 2, "op": "conv1x1"}]
    # canonical order: by target, then source
    assert [(b.src, b.dst) for b in s.branch_edges][:5] == [(0, 2), (0, 3), (1, 3), (1, 4), (2, 4)]


def test_equality_and_immutability():
    s = load_space("digits")
    a = s.sample(np.random.default_rng(0))
    b = Arch(s, a.stem, a.branches)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.stem = ()


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_inputs_raise_arch_error(kind, tmp_path):
    with pytest.raises(ArchError) as info:
        load_arch(MALFORMED[kind](tmp_path))
    msg = str(info.value)
    assert msg and "\n" not in msg
