import numpy as np
import pytest
import torch

from stnas import build_model, load_space

from conftest import ALL_PRESETS


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_forward_backward_random_archs(name):
    s = load_space(name)
    rng = np.random.default_rng(0)
    n_archs, batch = (2, 2) if s.input_size > 64 else (6, 4)
    for _ in range(n_archs):
        a = s.sample(rng)
        model = build_model(a)
        x = torch.randn(batch, s.input_channels, s.input_size, s.input_size)
        y = model(x)
        assert y.shape == (batch, s.num_classes)
        y.logsumexp(1).mean().backward()
        # only the chosen edges are held, and every parameter takes part
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        assert len(model.branches) == a.num_branches


def test_channels_last_matches():
    s = load_space("fashion-mnist")
    a = s.sample(np.random.default_rng(1))
    model = build_model(a).eval()
    x = torch.randn(3, 1, 28, 28)
    ref = model(x)
    out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_branches_change_the_function():
    """The same stem, chain and head weights with and without branch edges give different
    outputs, and silencing the branches (a zero output each) gives the chain-only output:
    a node sums its inputs."""
    s = load_space("digits")
    rng = np.random.default_rng(2)
    a = s.sample(rng)
    while a.num_branches < 2:
        a = s.sample(rng)
    chain = type(a)(s, a.stem, (-1,) * len(s.branch_edges))
    torch.manual_seed(0)
    m1 = build_model(chain).eval()
    m2 = build_model(a).eval()
    assert len(m1.branches) == 0 and len(m2.branches) == a.num_branches
    missing, unexpected = m2.load_state_dict(m1.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("branches.") for k in missing)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        ref, out = m1(x), m2(x)
        assert torch.isfinite(ref).all() and torch.isfinite(out).all()
        assert not torch.allclose(out, ref, atol=1e-4)
        hooks = [m.register_forward_hook(lambda _m, _i, o: torch.zeros_like(o)) for m in m2.branches.values()]
        silenced = m2(x)
        for h in hooks:
            h.remove()
    torch.testing.assert_close(silenced, ref)
