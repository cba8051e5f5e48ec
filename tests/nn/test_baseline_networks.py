"""The baseline networks (stnas.nn.baselines): every registered entry, in both forms and for
three input shapes, builds, costs what torch's FLOP counter says and trains a step; the
defined form is torchvision's; the input and small-input adaptations do what the docstring
says; the width fit; the spec format."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stnas.core.errors import ConfigError
from stnas.nn.baselines import BASELINES, FORMS, SMALL_INPUT, WIDTHS, Baseline, build, cost, fit, within

SHAPES = [(1, 8, 10), (1, 28, 10), (3, 40, 7)]  # channels, side, classes
KNOBS = [e for e in BASELINES if BASELINES.get(e).knob]
SRC = Path(__file__).resolve().parents[2] / "src"


def flop_counted(model: nn.Module, channels: int, size: int) -> int:
    """MAdds by torch's FLOP counter (2 FLOPs a multiply-accumulate) on one image."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, size, size))
    ops = {str(op) for op in counter.get_flop_counts()["Global"]}
    assert ops <= {"aten.convolution", "aten.addmm"}, ops  # nothing else is priced
    assert counter.get_total_flops() % 2 == 0
    return counter.get_total_flops() // 2


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("entry", BASELINES.names())
def test_every_baseline_builds_costs_and_trains_a_step(entry, shape, form):
    c, s, k = shape
    b = Baseline(entry, form, c, s, k)
    torch.manual_seed(0)
    model = build(b)
    assert cost(b) == (flop_counted(model, c, s), sum(p.numel() for p in model.parameters()))
    assert first_conv(model).in_channels == c
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    watched = [first_conv(model).weight, [m for m in model.modules() if isinstance(m, nn.Linear)][-1].weight]
    before = [w.detach().clone() for w in watched]
    out = model(torch.randn(4, c, s, s))
    assert out.shape == (4, k)
    loss = nn.functional.cross_entropy(out, torch.arange(4) % k)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())
    assert all(not torch.equal(w0, w) for w0, w in zip(before, watched))


def test_the_issue_and_design_figures():
    # issue #35: torchvision's definitions at 28x28 with a gray image repeated to RGB (3 channels)
    issue = {"mobilenet_v2_0.75": 3.86, "mobilenet_v2": 5.71, "shufflenet_v2_x1_5": 5.95, "mnasnet1_0": 6.08,
             "mobilenet_v3_small": 2.12, "efficientnet_b0": 8.06, "regnet_x_400mf": 8.2}
    for entry, madds in issue.items():
        got = cost(Baseline(entry, "defined", 3, 28, 10))[0] / 1e6
        assert round(got, 2 if entry != "regnet_x_400mf" else 1) == madds, entry
    # design.md section 3: MobileNetV2-1.0 at 224, ImageNet's 1000 classes
    madds, params = cost(Baseline("mobilenet_v2", "defined", 3, 224, 1000))
    assert round(madds / 1e6, 2) == 300.77 and params == 3_504_872


def _torchvision(entry: str, classes: int) -> nn.Module:
    if entry.startswith("mobilenet_v2"):
        return tvm.mobilenet_v2(width_mult=BASELINES.get(entry).width, num_classes=classes)
    return getattr(tvm, entry)(num_classes=classes)


@pytest.mark.parametrize("entry", BASELINES.names())
def test_defined_form_on_rgb_is_torchvision_weight_for_weight(entry):
    torch.manual_seed(3)
    ours = build(Baseline(entry, "defined", 3, 32, 10)).state_dict()
    torch.manual_seed(3)
    ref = _torchvision(entry, 10).state_dict()
    assert list(ours) == list(ref) and all(torch.equal(ours[k], ref[k]) for k in ref)


@pytest.mark.parametrize("entry", BASELINES.names())
def test_gray_input_rebuilds_only_the_first_conv_and_holds_the_repeated_rgb_functions(entry):
    torch.manual_seed(0)
    rgb = build(Baseline(entry, "defined", 3, 28, 10)).eval()
    gray = build(Baseline(entry, "defined", 1, 28, 10)).eval()
    a, b = rgb.state_dict(), gray.state_dict()
    conv = first_conv(rgb)
    name = next(k for k, p in rgb.named_parameters() if p is conv.weight)
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a if k != name)
    assert b[name].shape == (conv.out_channels, 1, *conv.kernel_size)
    # the gray network with the RGB network's weights, its first kernels summed over the channels
    b.update({k: (v.sum(1, keepdim=True) if k == name else v) for k, v in a.items()})
    gray.load_state_dict(b)  # (b, not a new dict: its metadata holds mnasnet's version)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-5)
    # hand count: the first conv's outputs times its kernel, for the two channels fewer
    side = math.floor((28 + 2 * conv.padding[0] - conv.kernel_size[0]) / conv.stride[0]) + 1
    saved = side * side * conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1] * 2
    assert cost(Baseline(entry, "defined", 3, 28, 10))[0] - cost(Baseline(entry, "defined", 1, 28, 10))[0] == saved


@pytest.mark.parametrize("entry", ["mobilenet_v2", "mnasnet1_0", "resnet18", "regnet_x_400mf", "shufflenet_v2_x1_0"])
def test_rebuilt_first_conv_is_initialised_as_the_family_does(entry):
    torch.manual_seed(1)
    w = first_conv(build(Baseline(entry, "defined", 1, 28, 10))).weight
    out, _, kh, kw = w.shape
    if BASELINES.get(entry).init == "fan_out":  # Kaiming normal, fan-out mode, ReLU gain
        want = math.sqrt(2 / (out * kh * kw))
    else:  # PyTorch's Conv2d default: uniform(+-1/sqrt(fan_in)), fan_in of the one input channel
        want = 1 / math.sqrt(kh * kw) / math.sqrt(3)
    assert abs(w.std().item() / want - 1) < 0.25, (w.std().item(), want)


@pytest.mark.parametrize("entry", BASELINES.names())
def test_adapted_stem_keeps_a_small_input_resolution(entry):
    b = Baseline(entry, "adapted", 1, 28, 10)
    model = build(b).eval()
    seen = []
    handle = first_conv(model).register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    handle.remove()
    assert b.stem_stride_1 and seen == [28]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    defined = build(Baseline(entry, "defined", 1, 28, 10))
    # the adaptation changes strides and drops a pool only: the same parameters
    assert [p.shape for p in model.parameters()] == [p.shape for p in defined.parameters()]


def test_adapted_form_leaves_a_large_input_alone():
    assert SMALL_INPUT < 96
    for entry in ("resnet18", "shufflenet_v2_x0_5"):
        adapted, defined = Baseline(entry, "adapted", 3, 96, 10), Baseline(entry, "defined", 3, 96, 10)
        assert not adapted.stem_stride_1 and cost(adapted) == cost(defined)
    assert Baseline("resnet18", "adapted", 3, SMALL_INPUT, 10).stem_stride_1


@pytest.mark.parametrize("entry, budget", [("mobilenet_v2", 3_000_000), ("mnasnet0_5", 2_500_000),
                                           ("mobilenet_v3_small", 1_300_000)])
def test_fit_takes_the_largest_width_that_fits(entry, budget):
    fits = within(budget)
    got = fit(entry, "adapted", 1, 28, 10, fits)
    scan = [w for w in WIDTHS if cost(Baseline(entry, "adapted", 1, 28, 10, w))[0] <= budget]
    assert scan and got.width == max(scan) and cost(got)[0] <= budget
    assert got.entry == entry and got.form == "adapted"


def test_fit_of_a_fixed_network_and_of_no_fit():
    b = Baseline("mobilenet_v2_0.75", "defined", 1, 28, 10)
    m, p = cost(b)
    assert fit("mobilenet_v2_0.75", "defined", 1, 28, 10, within(m)) == b
    assert fit("mobilenet_v2_0.75", "defined", 1, 28, 10, within(m - 1)) is None
    assert fit("mobilenet_v2_0.75", "defined", 1, 28, 10, within(None, p - 1)) is None
    assert fit("resnet18", "adapted", 1, 8, 10, within(1000)) is None
    assert fit("mobilenet_v2", "adapted", 1, 8, 10, within(1000)) is None
    # adapted entries of one group at one width are one network
    x, y = fit("mnasnet0_5", "adapted", 1, 28, 10, within(2e6)), fit("mnasnet1_3", "adapted", 1, 28, 10, within(2e6))
    assert x.key == y.key and x.name == y.name and cost(x) == cost(y)


def test_names_and_keys():
    assert Baseline("mobilenet_v2_0.75", "defined", 1, 28, 10).name == "mobilenet_v2_0.75"
    a = Baseline("mobilenet_v2_0.75", "adapted", 1, 28, 10, 0.35)
    assert a.name == "mobilenet_v2 ×0.35 adapted (stem stride 1)" and a.key == "mobilenet_v2-w0.35-adapted"
    assert Baseline("resnet18", "adapted", 3, 96, 10).name == "resnet18 adapted"
    assert len({Baseline(e, f, 1, 28, 10).key for e in BASELINES for f in FORMS}) == 2 * len(BASELINES)


def test_unknown_entry_and_bad_fields_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'mobilenet_v2'"):
        Baseline("mobilenet_v9", "defined", 1, 28, 10)
    with pytest.raises(ConfigError, match="baseline form must be one of defined, adapted"):
        Baseline("resnet18", "shrunk", 1, 28, 10)
    with pytest.raises(ConfigError, match="width"):
        Baseline("resnet18", "adapted", 1, 28, 10, 0.5)  # no width multiplier
    with pytest.raises(ConfigError, match="width"):
        Baseline("mobilenet_v2", "defined", 1, 28, 10, 0.5)  # the defined form keeps its width
    with pytest.raises(ConfigError, match="classes"):
        Baseline("mobilenet_v2", "defined", 1, 28, 1)


@given(st.sampled_from(BASELINES.names()), st.sampled_from(FORMS), st.integers(1, 4), st.integers(1, 4096),
       st.integers(2, 1000), st.sampled_from((None,) + WIDTHS))
def test_spec_round_trip(entry, form, c, s, k, width):
    if width is not None and (form != "adapted" or BASELINES.get(entry).knob is None):
        width = None
    b = Baseline(entry, form, c, s, k, width)
    assert Baseline.from_json(b.to_json()) == b


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 5000), st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(BASELINES.names() + FORMS), st.lists(st.integers(), max_size=2))


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["entry", "form", "channels", "size", "classes", "width", "other"]), _VALUES)
       | _VALUES)
def test_bad_specs_are_one_line_config_errors(data):
    try:
        b = Baseline.from_json(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert b.to_json() == data


def test_the_registry_loads_no_torch():
    code = "import sys, stnas.nn.baselines as b; b.BASELINES.check('resnet18'); sys.exit('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr or "stnas.nn.baselines imported torch"
