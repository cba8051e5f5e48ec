"""The analytic cost tables against what built models compute (design.md section 3: MAdds
are conv and linear multiply-accumulates)."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from stnas import Arch, SearchSpace, build_model, load_arch, load_space
from stnas.core.errors import ConfigError
from stnas.space.cost import BUDGET_KINDS, Bound, repair

from conftest import ALL_PRESETS


def counted_cost(arch) -> tuple[int, int]:
    """(MAdds, params) of the built model on one image: torch's FLOP counter (conv and
    matmul, 2 FLOPs per multiply-accumulate) and a parameter sum."""
    s = arch.space
    model = build_model(arch).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, s.input_channels, s.input_size, s.input_size))
    counts = counter.get_flop_counts()["Global"]
    assert {str(op) for op in counts} <= {"aten.convolution", "aten.addmm"}, counts  # nothing else is priced
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2, sum(p.numel() for p in model.parameters())


def test_counted_cost_of_a_known_layer_pair():
    # hand count: conv 3x3, 2->4 channels on 5x5 (pad 1, no bias): 25 * 4 * 2 * 9 = 1800 MAdds;
    # linear 4->3 after pooling: 12 MAdds
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 2, 5, 5))
    assert counter.get_total_flops() == 2 * (1800 + 12)


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_analytic_equals_counted_cost(name):
    s = load_space(name)
    rng = np.random.default_rng(0)
    for _ in range(200 if s.num_architectures() > 1 else 1):
        a = s.sample(rng, "architecture" if rng.random() < 0.5 else "topology")
        assert counted_cost(a) == (s.madds(a), s.params(a)), str(a)


def test_cost_batch_matches_scalar():
    s = load_space("paper")
    rng = np.random.default_rng(1)
    archs = [s.sample(rng) for _ in range(100)]
    m, p = s.cost_batch(np.array([a.stem for a in archs]), np.array([a.branches for a in archs]))
    assert m.tolist() == [s.madds(a) for a in archs]
    assert p.tolist() == [s.params(a) for a in archs]
    assert [s.cost(a) for a in archs] == list(zip(m.tolist(), p.tolist()))


def test_mobilenet_v2_reference():
    torchvision = pytest.importorskip("torchvision")
    s = load_space("mobilenetv2")
    a = load_arch("mobilenetv2:" + "0" * 16 + "/")
    # torchvision's published figure for mobilenet_v2 (IMAGENET1K_V1 weights meta)
    assert s.params(a) == 3_504_872
    assert abs(s.madds(a) - 300.77e6) / 300.77e6 < 1e-3
    assert sum(p.numel() for p in torchvision.models.mobilenet_v2().parameters()) == s.params(a)


def _fvcore_conv_linear(model, shape):
    fvcore = pytest.importorskip("fvcore.nn")
    model.eval()
    fca = fvcore.FlopCountAnalysis(model, torch.zeros(1, *shape))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    ops = fca.by_operator()
    return sum(v for k, v in ops.items() if k in ("conv", "linear", "addmm", "matmul"))


def test_fvcore_agrees():
    torchvision = pytest.importorskip("torchvision")
    assert _fvcore_conv_linear(torchvision.models.mobilenet_v2(), (3, 224, 224)) == \
        load_space("mobilenetv2").madds(load_arch("mobilenetv2:" + "0" * 16 + "/"))
    for name in ("digits", "fashion-mnist", "cifar"):
        s = load_space(name)
        rng = np.random.default_rng(2)
        for _ in range(5):
            a = s.sample(rng)
            assert _fvcore_conv_linear(build_model(a), (s.input_channels, s.input_size, s.input_size)) == s.madds(a)


# ------------------------------------------------------------------ every budget kind's cost table
def fake_predictor(space, seed=0):
    """A latency predictor of made-up module timings (torch-free: the table is written by hand)."""
    from stnas.latency.table import Predictor, new_table, required_keys

    rng = np.random.default_rng(seed)
    entries = {k: {"median_ms": float(rng.uniform(0.01, 0.5)), "iqr_ms": 0.0} for k in required_keys(space)}
    overhead = {"const_ms": 0.05, "per_module_ms": 0.01, "scale": 1.1}
    return Predictor(new_table(space, {"kind": "cpu"}, {"name": "torch"}, 1, 1, {}, entries, overhead), space)


def _by_hand(kind, space, pred, arch):
    """Each kind's cost summed edge by edge from its own definition, not from its table."""
    from stnas.latency import table as lat
    from stnas.space.ops import op_cost

    if kind in ("madds", "params"):
        i = ("madds", "params").index(kind)
        total = (space.fixed_madds, space.fixed_params)[i]
        for e, o in zip(space.stem_edges, arch.stem):
            total += op_cost(space.ops[o], e.c_in, e.c_out, e.stride, e.size_in)[i]
        for b, o in zip(space.branch_edges, arch.branches):
            total += op_cost(space.branch_ops[o], b.c_in, b.c_out, b.stride, b.size_in)[i] if o >= 0 else 0
        return total
    if kind == "latency":
        ms = {k: v["median_ms"] for k, v in pred.table["entries"].items()}
        ov = pred.table["overhead"]
        keys = ["stem", "head"] + [lat.stem_edge_key(space, k, o) for k, o in enumerate(arch.stem)]
        keys += [key for k, o in enumerate(arch.branches) if o >= 0
                 for key in (lat.branch_edge_key(space, k, o), lat.branch_add_key(space, k))]
        modules = space.num_edges + arch.num_branches
        return ov["const_ms"] + ov["per_module_ms"] * modules + ov["scale"] * sum(ms[k] for k in keys)
    raise AssertionError(f"budget kind {kind!r} has no reference here: add one")


@pytest.mark.parametrize("kind", BUDGET_KINDS.names())
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(["digits", "fashion-mnist", "cifar"]))
def test_every_budget_kinds_table_is_the_sum_of_its_edges(kind, seed, name):
    space = load_space(name)
    pred = fake_predictor(space, seed % 7)
    table = BUDGET_KINDS.get(kind).table(space, pred)
    assert table.kind == kind
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng, "architecture") for _ in range(4)]
    for a in archs:
        assert table(a) == pytest.approx(_by_hand(kind, space, pred, a), rel=1e-12)
    batch = table.batch(np.array([a.stem for a in archs]), np.array([a.branches for a in archs]))
    assert batch.tolist() == pytest.approx([table(a) for a in archs], rel=1e-12)
    assert table.min() <= min(map(table, archs)) and max(map(table, archs)) <= table.max()
    # a bound between the extremes is reached by the repair walk from any draw
    high = table.min() + (table.max() - table.min()) * float(rng.uniform(0.0, 0.5))
    fixed = repair(archs[0], rng, [Bound(table, None, high)])
    assert fixed is not None and table(fixed) <= high and Bound(table, None, high).holds(fixed)


@pytest.mark.parametrize("kind", BUDGET_KINDS.names())
def test_every_budget_kinds_extremes_are_the_exhaustive_ones(tiny_config, kind):
    space = SearchSpace(tiny_config)
    table = BUDGET_KINDS.get(kind).table(space, fake_predictor(space))
    every = [Arch(space, stem, br) for stem in itertools.product(*(e.allowed for e in space.stem_edges))
             for br in itertools.product(*((-1, *b.allowed) for b in space.branch_edges))]
    assert len(every) == space.num_architectures()
    costs = [table(a) for a in every]
    assert (table.min(), table.max()) == pytest.approx((min(costs), max(costs)), rel=1e-12)
    kind_entry = BUDGET_KINDS.get(kind)
    assert kind_entry.label(table.max()) and kind_entry.show(table.max())


def test_a_latency_table_needs_a_predictor():
    with pytest.raises(ConfigError, match="needs a latency table"):
        BUDGET_KINDS.get("latency").table(load_space("digits"), None)
