import numpy as np
import pytest
import torch

from stnas import build_model, load_arch, load_space
from stnas.cost import count_by_hooks

from conftest import ALL_PRESETS


def _hook_count(arch):
    s = arch.space
    return count_by_hooks(build_model(arch), (s.input_channels, s.input_size, s.input_size))


@pytest.mark.parametrize("name", ALL_PRESETS)
def test_analytic_equals_hook_count(name):
    s = load_space(name)
    rng = np.random.default_rng(0)
    for _ in range(200 if s.num_architectures() > 1 else 1):
        a = s.sample(rng, "architecture" if rng.random() < 0.5 else "topology")
        assert _hook_count(a) == (s.madds(a), s.params(a)), str(a)


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
