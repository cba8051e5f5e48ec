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
    s = load_space("digits")
    rng = np.random.default_rng(2)
    a = s.sample(rng)
    chain = type(a)(s, a.stem, (-1,) * len(s.branch_edges))
    torch.manual_seed(0)
    m1 = build_model(chain).eval()
    assert len(m1.branches) == 0
    x = torch.randn(2, 1, 8, 8)
    assert torch.isfinite(m1(x)).all()
