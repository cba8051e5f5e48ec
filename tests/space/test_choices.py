"""Every registered sampling mode, op family and activation of the space, swept: a new entry is
tested by being registered."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stnas import SearchSpace, SpaceError, load_space
from stnas.core.errors import ConfigError
from stnas.nn.model import build_model
from stnas.space.arch import Arch, from_string
from stnas.space.ops import ACTIVATIONS, OP_FAMILIES, build_op, op_allowed, op_cost, parse_op
from stnas.space.sampling import SAMPLING_MODES

from conftest import ALL_PRESETS


@pytest.mark.parametrize("mode", SAMPLING_MODES.names())
@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_every_sampling_mode_draws_valid_architectures(mode, preset):
    s = load_space(preset)
    rng = np.random.default_rng(0)
    drawn = [s.sample(rng, mode) for _ in range(30)] + [s.sample_at(5, step, mode) for step in range(30)]
    for a in drawn:
        again = Arch(s, a.stem, a.branches)  # the validating constructor accepts it
        assert again == a and from_string(str(a), s) == a
    # a pure function of (seed, step), and of the generator's state
    assert [s.sample_at(5, step, mode) for step in range(30)] == drawn[30:]
    assert [s.sample(np.random.default_rng(0), mode) for _ in range(3)] == [drawn[0]] * 3
    if s.num_architectures() > 50:
        assert len(set(drawn)) > 1


def test_an_unknown_sampling_mode_is_one_line_with_a_hint():
    s = load_space("digits")
    for call in (lambda: s.sample(np.random.default_rng(0), "topolgy"), lambda: s.sample_at(0, 0, "topolgy")):
        with pytest.raises(ConfigError, match="did you mean 'topology'") as info:
            call()
        assert "\n" not in str(info.value)


def _flops_and_params(module, c_in, size):
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(torch.zeros(1, c_in, size, size))
    return counter.get_total_flops() // 2, sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("family", OP_FAMILIES.names())
def test_every_op_family_parses_prices_and_builds_its_example(family):
    entry = OP_FAMILIES.get(family)
    spec = parse_op(entry.example)
    assert spec.kind == family and spec.name == entry.example
    edges = [(c_in, c_out, stride) for c_in in (4, 8) for c_out in (4, 8) for stride in (1, 2, 4)]
    fitting = [e for e in edges if op_allowed(spec, *e)]
    assert fitting, f"{entry.example} fits no edge"
    for c_in, c_out, stride in fitting:
        module = build_op(spec, c_in, c_out, stride)
        out = module.eval()(torch.zeros(1, c_in, 9, 9))
        side = -(-9 // stride)
        assert out.shape == (1, c_out, side, side)
        # the analytic cost is what the built module computes (conv and linear MAdds, parameters)
        assert op_cost(spec, c_in, c_out, stride, 9) == _flops_and_params(module, c_in, 9)
    for c_in, c_out, stride in sorted(set(edges) - set(fitting)):
        with pytest.raises(SpaceError, match="cannot map"):
            build_op(spec, c_in, c_out, stride)


def test_an_unknown_op_names_every_family():
    with pytest.raises(SpaceError) as info:
        parse_op("conv9x9")
    assert all(OP_FAMILIES.get(f).grammar in str(info.value) for f in OP_FAMILIES)


@pytest.mark.parametrize("activation", ACTIVATIONS.names())
def test_every_activation_builds_a_network(tiny_config, activation):
    s = SearchSpace(dict(tiny_config, activation=activation))
    model = build_model(s.sample(np.random.default_rng(1)))
    acts = [m for m in model.modules() if isinstance(m, ACTIVATIONS.get(activation))]
    assert acts and model.eval()(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


def test_an_unknown_activation_is_refused(tiny_config):
    with pytest.raises(SpaceError, match="space.activation must be one of .*did you mean 'relu"):
        SearchSpace(dict(tiny_config, activation="relu7"))
