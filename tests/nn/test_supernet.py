"""Tests of the weight-sharing supernet (stnas.nn.supernet)."""

from __future__ import annotations

import copy
import weakref

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from stnas import Arch, build_model, load_space
from stnas.core.errors import ArchError, CheckpointError
from stnas.nn.model import branch_key
from stnas.nn.supernet import Supernet, forward_nodes

from conftest import randomise_bn

SMALL = ["digits", "fashion-mnist", "cifar"]


_NETS: dict[str, Supernet] = {}


def supernet(name: str) -> Supernet:
    """One randomised supernet per preset (BN affine and running stats randomised, so
    that extraction must carry buffers too). Tests that modify weights deep-copy it."""
    if name not in _NETS:
        torch.manual_seed(0)
        _NETS[name] = randomise_bn(Supernet(name))
    return _NETS[name]


def batch(space, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, space.input_channels, space.input_size, space.input_size, generator=g)


def archs_for(space, n_random=4):
    """Random archs plus one with every branch on and one with every branch off."""
    rng = np.random.default_rng(123)
    out = [space.sample(rng) for _ in range(n_random)]
    stem = [e.allowed[rng.integers(len(e.allowed))] for e in space.stem_edges]
    out.append(Arch(space, stem, [b.allowed[rng.integers(len(b.allowed))] for b in space.branch_edges]))
    out.append(Arch(space, stem, [-1] * len(space.branch_edges)))
    return out


def op_modules(net: Supernet):
    """(kind, edge index, op index, module) for every candidate op of the supernet."""
    for k, d in enumerate(net.edges):
        for o, m in d.items():
            yield "stem", k, int(o), m
    for k, b in enumerate(net.space.branch_edges):
        for o, m in net.branches[branch_key(b.src, b.dst)].items():
            yield "branch", k, int(o), m


def chosen(arch, kind, k, o) -> bool:
    return (arch.stem[k] if kind == "stem" else arch.branches[k]) == o


# ---------------------------------------------------------------- node graph
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.data())
def test_forward_nodes_matches_naive_sum(n, data):
    """x_j = a_j x_{j-1} + sum_i c_ij x_i, computed naively with all maps kept."""
    a = data.draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    pairs = [(j - d, j) for j in range(1, n + 1) for d in (2, 3, 4) if j - d >= 0]
    on = data.draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    coef = {p: c for p, c, b in zip(pairs, data.draw(st.lists(st.integers(-2, 2), min_size=len(pairs),
                                                               max_size=len(pairs))), on) if b}
    x = [torch.tensor([1.5])]
    for j in range(1, n + 1):
        x.append(a[j - 1] * x[j - 1] + sum((c * x[i] for (i, jj), c in coef.items() if jj == j), torch.zeros(1)))
    edges = [(lambda t, s=s: s * t) for s in a]
    incoming: dict[int, list] = {}
    for (i, j), c in coef.items():
        incoming.setdefault(j, []).append((i, lambda t, c=c: c * t))
    assert torch.equal(forward_nodes(torch.tensor([1.5]), edges, incoming), x[n])


class _Val:
    """A number that registers itself on creation, to count the live feature maps."""

    live: weakref.WeakSet[_Val] = weakref.WeakSet()

    def __init__(self, v):
        self.v = v
        _Val.live.add(self)

    def __add__(self, other):
        return _Val(self.v + other.v)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 9), st.data())
def test_forward_nodes_keeps_only_needed_maps(n, data):
    pairs = [(j - d, j) for j in range(1, n + 1) for d in (2, 3, 4) if j - d >= 0]
    on = data.draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    depth = max((j - i for (i, j), b in zip(pairs, on) if b), default=1)
    peak = []

    def edge(t):
        peak.append(len(_Val.live))  # the maps still held while node j is computed
        return _Val(t.v + 1)

    incoming: dict[int, list] = {}
    for (i, j), b in zip(pairs, on):
        if b:
            incoming.setdefault(j, []).append((i, lambda t: _Val(t.v * 2)))
    _Val.live = weakref.WeakSet()
    forward_nodes(_Val(0), [edge] * n, incoming)
    assert max(peak) <= depth and len(peak) == n


# ---------------------------------------------------------------- extraction
@pytest.mark.parametrize("name", SMALL)
def test_extract_matches_supernet_in_eval(name):
    net = supernet(name).eval()
    space = net.space
    x = batch(space)
    for arch in archs_for(space):
        sub = build_model(arch)
        fresh = sub.eval()(x)
        sub = net.extract(arch).eval()
        assert isinstance(sub, type(build_model(arch)))
        with torch.no_grad():
            want, got = net(x, arch), sub(x)
        assert got.shape == (4, space.num_classes)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(fresh, want, atol=1e-3)  # the weights were really inherited
        assert sum(p.numel() for p in sub.parameters()) == space.params(arch)


def test_extract_copies_weights_and_defaults_to_active():
    net = copy.deepcopy(supernet("digits"))
    arch = net.sample_active(seed=1, step=2)
    sub = net.extract()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
        for b in sub.buffers():
            b.add_(1)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert sub.training and set(dict(sub.named_modules())) == set(dict(net.extract(arch).named_modules()))


def test_forward_runs_only_chosen_ops():
    net = supernet("fashion-mnist").eval()
    ran = set()
    handles = [m.register_forward_hook(lambda m, i, o, key=(kind, k, o_): ran.add(key))
               for kind, k, o_, m in op_modules(net)]
    try:
        for arch in archs_for(net.space, 3):
            ran.clear()
            with torch.no_grad():
                net(batch(net.space, 2), arch)
            want = {("stem", k, o) for k, o in enumerate(arch.stem)}
            want |= {("branch", k, o) for k, o in enumerate(arch.branches) if o >= 0}
            assert ran == want
    finally:
        for h in handles:
            h.remove()


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", SMALL)
def test_forward_backward_only_chosen_ops_get_grads(name):
    net = copy.deepcopy(supernet(name)).train()
    space = net.space
    for arch in archs_for(space, 2):
        net.zero_grad(set_to_none=True)
        out = net(batch(space, 3), arch)
        assert out.shape == (3, space.num_classes) and torch.isfinite(out).all()
        out.logsumexp(1).sum().backward()
        for kind, k, o, m in op_modules(net):
            for pname, p in m.named_parameters():
                if chosen(arch, kind, k, o):
                    assert p.grad is not None and torch.isfinite(p.grad).all(), (kind, k, o, pname)
                else:
                    assert p.grad is None, (kind, k, o, pname)
        for p in [*net.stem.parameters(), *net.head.parameters()]:
            assert p.grad is not None


def test_sgd_with_momentum_and_decay_leaves_unchosen_ops_untouched():
    net = copy.deepcopy(supernet("digits")).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    archs = [net.space.sample_at(5, s) for s in range(2)]
    for arch in archs:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(batch(net.space, 8), arch), torch.arange(8) % 10).backward()
        opt.step()
    touched = 0
    for kind, k, o, m in op_modules(net):
        prefix = f"edges.{k}.{o}." if kind == "stem" else \
            f"branches.{branch_key(net.space.branch_edges[k].src, net.space.branch_edges[k].dst)}.{o}."
        used = any(chosen(a, kind, k, o) for a in archs)
        for n, v in m.state_dict().items():
            same = torch.equal(v, before[prefix + n])
            if not used:
                assert same, prefix + n
            elif n.endswith("weight") and not same:
                touched += 1
    assert touched > 0


# ---------------------------------------------------------------- counting
@pytest.mark.parametrize("name", [*SMALL, "paper", "mobilenetv2"])
def test_param_count_equals_analytic_tables(name):
    space = load_space(name)
    expected = space.fixed_params
    expected += sum(int(space.stem_table[k, o, 1]) for k, e in enumerate(space.stem_edges) for o in e.allowed)
    expected += sum(int(space.branch_table[k, o, 1]) for k, b in enumerate(space.branch_edges)
                    for o in b.allowed)
    net = supernet(name) if name in SMALL else Supernet(space)
    assert net.num_params_total() == expected
    if name == "mobilenetv2":  # a one-architecture space: torchvision's figure
        assert expected == 3_504_872
    assert f"params={expected:,}" in repr(net)


def test_paper_supernet_runs_one_image():
    space = load_space("paper")
    net = Supernet(space).eval()
    arch = space.sample_at(0, 0)
    with torch.no_grad():
        out = net(torch.randn(1, 3, 224, 224), arch)
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


# ---------------------------------------------------------------- state dicts
def test_arch_state_dict_names_and_storage():
    net = supernet("fashion-mnist")
    for arch in archs_for(net.space, 2):
        sd = net.arch_state_dict(arch)
        want = set()
        for key in build_model(arch).state_dict():
            part = key.split(".")
            if part[0] == "edges":
                part.insert(2, str(arch.stem[int(part[1])]))
            elif part[0] == "branches":
                k = next(k for k, b in enumerate(net.space.branch_edges) if branch_key(b.src, b.dst) == part[1])
                part.insert(2, str(arch.branches[k]))
            want.add(".".join(part))
        assert set(sd) == want
        full = net.state_dict()
        for k, v in sd.items():
            assert v.data_ptr() == full[k].data_ptr()


@pytest.mark.parametrize("name", SMALL)
def test_extract_modify_load_round_trip(name):
    net = copy.deepcopy(supernet(name))
    arch, other = archs_for(net.space, 2)[:2]
    other_before = {k: v.clone() for k, v in net.arch_state_dict(other).items()}
    ours = set(net.arch_state_dict(arch))
    sub = net.extract(arch)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for t in sub.state_dict().values():
            t.add_(torch.randn(t.shape, generator=g).to(t.dtype) if t.is_floating_point() else 1)
    modified = {k: v.clone() for k, v in sub.state_dict().items()}
    net.load_subnet_state(arch, modified)
    again = net.extract(arch).state_dict()
    assert set(again) == set(modified)
    for k in modified:
        assert torch.equal(again[k], modified[k]), k
    for k, v in net.arch_state_dict(other).items():  # slots not in arch keep their values
        if k not in ours:
            assert torch.equal(v, other_before[k]), k


def test_load_subnet_state_rejects_mismatches():
    net = copy.deepcopy(supernet("digits"))
    arch = archs_for(net.space, 1)[0]
    sd = net.extract(arch).state_dict()
    missing = dict(sd)
    missing.pop(next(k for k in sd if k.startswith("edges.")))
    with pytest.raises(CheckpointError, match="missing"):
        net.load_subnet_state(arch, missing)
    with pytest.raises(CheckpointError, match="unexpected"):
        net.load_subnet_state(arch, {**sd, "branches.9_99.conv.weight": torch.zeros(1)})
    key = next(k for k in sd if k.endswith("weight") and sd[k].dim() == 4)
    with pytest.raises(CheckpointError, match="size mismatch"):
        net.load_subnet_state(arch, {**sd, key: torch.zeros(1, 2, 3, 4)})
    all_off = Arch(net.space, arch.stem, [-1] * len(arch.branches))
    all_on = archs_for(net.space, 0)[0]
    with pytest.raises(CheckpointError):
        net.load_subnet_state(all_off, net.extract(all_on).state_dict())


# ---------------------------------------------------------------- active arch
def test_sampling_and_active_architecture():
    net = supernet("digits").eval()
    space = net.space
    assert net.active is None
    with pytest.raises(ArchError, match="no active architecture"):
        net(batch(space))
    a = net.sample_active(seed=4, step=9)
    assert a == space.sample_at(4, 9) and net.active == a
    b = net.sample_active(np.random.default_rng(11), mode="architecture")
    assert b == space.sample(np.random.default_rng(11), "architecture") and net.active == b
    with pytest.raises(ValueError):
        net.sample_active(seed=1)
    net.set_active(str(a))
    assert net.active == a
    x = batch(space)
    with torch.no_grad():
        assert torch.equal(net(x), net(x, a))
    with pytest.raises(ArchError):
        net.set_active(load_space("fashion-mnist").sample_at(0, 0))
    with pytest.raises(ArchError):
        net(x, "fashion-mnist:00000000/.............")
    clone = copy.deepcopy(net)  # another SearchSpace object with the same fingerprint
    with torch.no_grad():
        assert torch.equal(clone(x, a), net(x, a))
    net._active = None
