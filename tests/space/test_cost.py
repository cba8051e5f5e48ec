"""The analytic cost tables against what built models compute (design.md section 3: MAdds
are conv and linear multiply-accumulates)."""

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from stnas import build_model, load_arch, load_space

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
