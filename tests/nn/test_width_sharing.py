"""Width sharing (``supernet.width_sharing``): an edge's MBConvs that differ in expansion are
one module, a smaller expansion the first hidden channels of the largest; with kernel
sharing too, one module per edge (stnas.space.ops.NestedMBConv)."""

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stnas.core import dist
from stnas.nn.supernet import Supernet
from stnas.pipeline.config import resolve
from stnas.pipeline.search import proxy_for_run
from stnas.pipeline.supernet import train_supernet
from stnas.space.catalog import load_space
from stnas.space.ops import MBConv, NestedMBConv, nested_groups, parse_op

from conftest import TRAINED_OVERRIDES, randomise_bn

NAMES = ["mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k7_e6", "skip", "conv1x1", "mb_k5_e1"]


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return randomise_bn(Supernet("fashion-mnist", kernel_sharing=True, width_sharing=True))


def test_groups_by_expansion_and_by_both():
    specs = {o: parse_op(n) for o, n in enumerate(NAMES)}
    # width only: k3's e3 (0) and e6 (1) share, headed by e6; k5 e3 and k7 e6 have no partner
    assert nested_groups(specs, kernel=False, width=True) == {0: (1, 3, 3), 1: (1, 3, 6)}
    # both: every MBConv but expansion 1 (no expand layer), headed by k7 e6
    assert nested_groups(specs, kernel=True, width=True) == {0: (3, 3, 3), 1: (3, 3, 6), 2: (3, 5, 3), 3: (3, 7, 6)}
    assert nested_groups(specs, kernel=False, width=False) == {}


def test_one_module_per_edge_at_the_largest_kernel_and_expansion(full):
    space = full.space
    for k, e in enumerate(space.stem_edges):
        (top,) = full.edges[k]  # fashion-mnist's six MBConvs (k3/k5/k7 x e3/e6) in one module
        m = full.edges[k][top]
        assert isinstance(m, NestedMBConv) and m.depthwise[0].weight.shape[-1] == 7
        assert m.depthwise[0].weight.shape[0] == 6 * e.c_in
    sizes = [Supernet(space, *s).num_params_total() for s in ((False, False), (True, False), (True, True))]
    assert sizes[0] > sizes[1] > sizes[2] == full.num_params_total()


def test_extract_matches_the_supernet_and_takes_the_first_channels(full):
    space = full.space
    rng = np.random.default_rng(3)
    x = torch.randn(3, 1, 28, 28)
    full.eval()
    for _ in range(6):
        arch = space.sample(rng)
        net = full.extract(arch).eval()
        with torch.no_grad():
            assert torch.allclose(net(x), full(x, arch), atol=1e-5)
        for k, o in enumerate(arch.stem):
            spec, (top,) = space.ops[o], full.edges[k]
            big, h = full.edges[k][top], space.stem_edges[k].c_in * space.ops[o].expand
            c = (7 - spec.kernel) // 2
            assert torch.equal(net.edges[k].expand[0].weight, big.expand[0].weight[:h])
            assert torch.equal(net.edges[k].depthwise[0].weight,
                               big.depthwise[0].weight[:h, :, c:c + spec.kernel, c:c + spec.kernel])
            assert torch.equal(net.edges[k].project[0].weight, big.project[0].weight[:, :h])
            assert torch.equal(net.edges[k].depthwise[1].running_var, big.depthwise[1].running_var[:h])
            assert torch.equal(net.edges[k].project[1].weight, big.project[1].weight)


def _small_op(space, k=0):
    return next(o for o in space.stem_edges[k].allowed if space.ops[o].kernel == 3 and space.ops[o].expand == 3)


def test_training_a_small_op_moves_only_its_channels_and_taps():
    torch.manual_seed(0)
    net = Supernet("fashion-mnist", kernel_sharing=True, width_sharing=True)
    space = net.space
    base = space.sample(np.random.default_rng(0))
    arch = type(base)(space, (_small_op(space),) + base.stem[1:], base.branches)
    (top,) = net.edges[0]
    m = net.edges[0][top]
    h = space.stem_edges[0].c_in * 3
    before = {n: t.detach().clone() for n, t in m.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    nn.functional.cross_entropy(net(torch.randn(8, 1, 28, 28), arch), torch.arange(8) % 10).backward()
    opt.step()
    after = m.state_dict()
    for n in ("expand.0.weight", "expand.1.weight", "expand.1.running_mean", "depthwise.1.bias",
              "depthwise.1.running_var"):
        assert not torch.equal(after[n][:h], before[n][:h]), n
        assert torch.equal(after[n][h:], before[n][h:]), n
    assert torch.equal(after["project.0.weight"][:, h:], before["project.0.weight"][:, h:])
    moved = (after["depthwise.0.weight"] != before["depthwise.0.weight"]).any(dim=1)  # [hidden, 7, 7]
    assert moved[:h, 2:5, 2:5].all() and moved[:h].sum() == 9 * h and not moved[h:].any()


@given(c_in=st.sampled_from([2, 4]), c_out=st.sampled_from([2, 4]), stride=st.sampled_from([1, 2, 4]),
       kernels=st.sets(st.sampled_from([3, 5, 7]), min_size=1), expands=st.sets(st.sampled_from([2, 3, 6]), min_size=1),
       residual=st.booleans(), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_every_op_of_a_nested_module_is_its_standalone_mbconv(c_in, c_out, stride, kernels, expands, residual, seed):
    # the sub-state in a plain MBConv computes what the nested module does, in train mode
    # (batch statistics, running statistics updated alike) and in eval mode
    torch.manual_seed(seed)
    m = randomise_bn(NestedMBConv(c_in, c_out, tuple(kernels), tuple(expands), stride, residual=residual))
    kern, exp = min(kernels), min(expands)
    plain = MBConv(c_in, c_out, kern, exp, stride, residual=residual)
    plain.load_state_dict({n: t.clone() for n, t in m.sub_state(kern, exp).items()})
    x = torch.randn(4, c_in, 9, 9)
    m.train(), plain.train()
    assert torch.allclose(m(x, kernel=kern, expand=exp), plain(x), atol=1e-5)
    for n, t in plain.state_dict().items():
        assert torch.allclose(m.sub_state(kern, exp)[n].float(), t.float(), atol=1e-6), n
    m.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(m(x, kernel=kern, expand=exp), plain(x), atol=1e-5)


def test_load_subnet_state_round_trip_keeps_the_other_channels(full):
    net = copy.deepcopy(full)
    space = net.space
    base = space.sample(np.random.default_rng(4))
    arch = type(base)(space, (_small_op(space),) + base.stem[1:], base.branches)
    (top,) = net.edges[0]
    h = space.stem_edges[0].c_in * 3
    rest = net.edges[0][top].expand[0].weight.detach()[h:].clone()
    sub = net.extract(arch)
    with torch.no_grad():
        for t in sub.state_dict().values():
            if t.is_floating_point():
                t.add_(1.0)
    modified = {n: v.clone() for n, v in sub.state_dict().items()}
    net.load_subnet_state(arch, modified)
    again = net.extract(arch).state_dict()
    for n in modified:
        assert torch.equal(again[n], modified[n]), n
    assert torch.equal(net.edges[0][top].expand[0].weight.detach()[h:], rest)


def test_bad_choices_and_an_unnestable_expansion_are_refused():
    m = NestedMBConv(4, 4, (3, 5), (3, 6), 1)
    with pytest.raises(ValueError, match="expansion 4 is not one of"):
        m(torch.randn(1, 4, 6, 6), kernel=3, expand=4)
    with pytest.raises(ValueError, match="kernel 7 is not one of"):
        m.sub_state(7, 3)
    with pytest.raises(ValueError, match="does not fit"):
        m.load_sub_state(3, MBConv(4, 4, 3, 6, 1).state_dict(), 3)
    with pytest.raises(ValueError, match="expansion 1"):
        NestedMBConv(4, 4, (3,), (1, 3), 1)


def test_fitting_tells_the_four_layouts_apart():
    space = load_space("fashion-mnist")
    for sharing in ((False, False), (True, False), (False, True), (True, True)):
        with torch.device("meta"):
            names = Supernet(space, *sharing).state_dict()
        got = Supernet.fitting(space, names)
        assert (got.kernel_sharing, got.width_sharing) == sharing


@pytest.mark.parametrize("sharing", [(True, True), (False, False)], ids=["shared", "plain"])
def test_a_run_of_either_layout_trains_scores_and_exports(tmp_path, sharing):
    """The digits preset shares kernels and widths; a plain supernet stays one override away."""
    from stnas.core.weights import load_weights
    from stnas.deploy.export import inherited_model

    over = [f"supernet.kernel_sharing={str(sharing[0]).lower()}", f"supernet.width_sharing={str(sharing[1]).lower()}"]
    train_supernet(resolve("digits", overrides=TRAINED_OVERRIDES + over), tmp_path / "run", ctx=dist.Context())
    space = load_space("digits")
    state, _ = load_weights(tmp_path / "run" / "supernet.safetensors", what="supernet")
    shared = Supernet(space, kernel_sharing=sharing[0], width_sharing=sharing[1])
    assert set(state) == set(shared.state_dict())
    shared.load_state_dict(state)
    arch = space.sample(np.random.default_rng(2))
    assert np.isfinite(proxy_for_run(tmp_path / "run").score([arch])[0].score)
    net = inherited_model(tmp_path / "run", arch)
    x = torch.randn(2, space.input_channels, space.input_size, space.input_size)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), shared.eval()(x, arch), atol=1e-5)
