"""Kernel sharing (``supernet.kernel_sharing``): an edge's MBConvs that differ only in kernel
size are one module, the smaller kernels the centre of the largest (stnas.space.ops.NestedMBConv)."""

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
from stnas.space.ops import NestedMBConv, nested_groups, parse_op

from conftest import TRAINED_OVERRIDES, randomise_bn


@pytest.fixture(scope="module")
def shared():
    torch.manual_seed(0)
    return randomise_bn(Supernet("fashion-mnist", kernel_sharing=True))


def test_groups_are_the_ops_that_differ_only_in_kernel():
    names = ["mb_k3_e3", "mb_k3_e6", "mb_k5_e3", "mb_k7_e6", "skip", "conv1x1", "mb_k5_e1"]
    groups = nested_groups({o: parse_op(n) for o, n in enumerate(names)})
    # e3: k3 (0) and k5 (2), headed by k5; e6: k3 (1) and k7 (3), headed by k7; a lone e1 and non-MBConvs stay apart
    assert groups == {0: (2, 3, 3), 2: (2, 5, 3), 1: (3, 3, 6), 3: (3, 7, 6)}


def test_one_module_per_group_holds_the_largest_kernel(shared):
    space = shared.space
    plain = Supernet(space)
    for k, e in enumerate(space.stem_edges):
        # fashion-mnist's ops: k3/k5/k7 at e3 and e6 -> the two k7 ops hold each edge's modules
        tops = {o for o in e.allowed if space.ops[o].kernel == 7}
        assert set(shared.edges[k]) == {str(o) for o in tops}
        for o in tops:
            m = shared.edges[k][str(o)]
            assert isinstance(m, NestedMBConv) and m.depthwise[0].weight.shape[-1] == 7
    assert shared.num_params_total() < plain.num_params_total()


def test_extract_matches_the_supernet_and_crops_the_centre(shared):
    space = shared.space
    rng = np.random.default_rng(5)
    x = torch.randn(3, 1, 28, 28)
    shared.eval()
    for _ in range(6):
        arch = space.sample(rng)
        net = shared.extract(arch).eval()
        with torch.no_grad():
            assert torch.allclose(net(x), shared(x, arch), atol=1e-5)
        for k, o in enumerate(arch.stem):
            kern = space.ops[o].kernel
            top = next(t for t in shared.edges[k] if space.ops[int(t)].expand == space.ops[o].expand)
            big = shared.edges[k][top].depthwise[0].weight
            c = (7 - kern) // 2
            assert torch.equal(net.edges[k].depthwise[0].weight, big[:, :, c:c + kern, c:c + kern])
            assert torch.equal(net.edges[k].project[0].weight, shared.edges[k][top].project[0].weight)


def test_training_a_small_kernel_moves_the_large_kernels_centre_only():
    torch.manual_seed(0)
    net = Supernet("fashion-mnist", kernel_sharing=True)
    space = net.space
    k3 = [o for o in space.stem_edges[0].allowed if space.ops[o].kernel == 3 and space.ops[o].expand == 6][0]
    k7 = [o for o in space.stem_edges[0].allowed if space.ops[o].kernel == 7 and space.ops[o].expand == 6][0]
    base = space.sample(np.random.default_rng(0))
    arch3 = type(base)(space, (k3,) + base.stem[1:], base.branches)
    before = net.edges[0][str(k7)].depthwise[0].weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    net.train()
    nn.functional.cross_entropy(net(torch.randn(8, 1, 28, 28), arch3), torch.arange(8) % 10).backward()
    opt.step()
    after = net.edges[0][str(k7)].depthwise[0].weight.detach()
    moved = (after != before).any(dim=0).any(dim=0)  # [7, 7]: which taps changed
    assert moved[2:5, 2:5].all() and moved.sum() == 9


def test_load_subnet_state_round_trip_keeps_the_outer_ring(shared):
    net = copy.deepcopy(shared)
    space = net.space
    arch = space.sample(np.random.default_rng(9))
    k = next(i for i, o in enumerate(arch.stem) if space.ops[o].kernel < 7)
    kern = space.ops[arch.stem[k]].kernel
    top = next(t for t in net.edges[k] if space.ops[int(t)].expand == space.ops[arch.stem[k]].expand)
    ring_before = net.edges[k][top].depthwise[0].weight.detach().clone()
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
    w = net.edges[k][top].depthwise[0].weight.detach()
    c = (7 - kern) // 2
    mask = torch.ones(7, 7, dtype=torch.bool)
    mask[c:c + kern, c:c + kern] = False
    assert torch.equal(w[:, :, mask], ring_before[:, :, mask])


@given(st.sampled_from([1, 2, 4, 6, 9]))
@settings(max_examples=10, deadline=None)
def test_a_kernel_outside_the_group_is_refused(kernel):
    m = NestedMBConv(8, 8, (3, 5, 7), (3,), 1)
    with pytest.raises(ValueError, match="not one of"):
        m(torch.randn(1, 8, 6, 6), kernel=kernel)


def test_fitting_tells_the_layouts_apart(shared):
    space = shared.space
    assert Supernet.fitting(space, shared.state_dict()).kernel_sharing is True
    assert Supernet.fitting(space, Supernet(space).state_dict()).kernel_sharing is False
    assert Supernet.fitting(space, ["stem.0.0.weight"]) is None


def test_a_kernel_sharing_run_trains_scores_and_exports(tmp_path):
    from stnas.deploy.export import inherited_model

    over = ["supernet.kernel_sharing=true", "supernet.width_sharing=false"]
    cfg = resolve("digits", overrides=TRAINED_OVERRIDES + over)
    run = tmp_path / "run"
    train_supernet(cfg, run, ctx=dist.Context())
    space = load_space("digits")
    from stnas.core.weights import load_weights

    state, _ = load_weights(run / "supernet.safetensors", what="supernet")
    assert set(state) == set(Supernet(space, kernel_sharing=True).state_dict())
    arch = space.sample(np.random.default_rng(2))
    scores = proxy_for_run(run).score([arch])
    assert np.isfinite(scores[0].score)
    net = inherited_model(run, arch)
    shared = Supernet(space, kernel_sharing=True)
    shared.load_state_dict(state)
    x = torch.randn(2, space.input_channels, space.input_size, space.input_size)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), shared.eval()(x, arch), atol=1e-5)
