"""Standard networks as baselines: torchvision's classification families built for the data
(issue #35). What a user weighs stnas against is such a network used as defined or shrunk
to fit; this module is the one place that knows how either is built and what it costs.

A *baseline* (:class:`Baseline`) is a registered network (:data:`BASELINES`: name ->
:class:`Family`) built for an input of C channels and side S and for K classes, in one of
two forms (:data:`FORMS`):

* ``defined``: torchvision's definition with ``num_classes=K``, nothing else changed (widths,
  BN momentum, dropout, stochastic depth, initialisation). THE input adaptation, for C != 3:
  the first convolution is rebuilt with C input channels (kernel, stride, padding, output
  channels and bias as defined) and initialised by the family's own rule
  (:attr:`Family.init`). For a grayscale input it holds the same functions as feeding the
  image repeated to RGB (the sum of the three kernels), at a third of that layer's MAdds.
  For C == 3 the network is torchvision's, weight for weight.
* ``adapted``: the ``defined`` network under the one small-input adaptation practitioners use:

  1. where S <= ``SMALL_INPUT``, the stem does not downsample: the first convolution's
     stride becomes 1 and the stem's max-pool (resnet18, shufflenet_v2) an identity;
  2. a family with a width multiplier (:attr:`Family.knob`: mobilenet_v2, mobilenet_v3,
     mnasnet) takes the largest multiplier of ``WIDTHS`` whose network fits the budget
     (:func:`fit`); the other families keep their own width.

Costs follow stnas's convention (design.md section 3): MAdds are the multiply-accumulates of
the convolutions and linear layers on one image (torch's FlopCounterMode flops / 2), params
all parameters (:func:`cost`).

The registry and :class:`Baseline` load no torch (the config check and the CLI use them);
the functions that build or count import torch when called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from stnas.core.errors import ConfigError
from stnas.core.registry import Registry

if TYPE_CHECKING:
    from torch import nn

FORMS = ("defined", "adapted")
SMALL_INPUT = 64  # adapted form: inputs up to this side keep their resolution through the stem
WIDTHS = tuple(k / 20 for k in range(2, 41))  # adapted form: the width multipliers tried, 0.10 ... 2.00
_INITS = ("fan_out", "default")


@dataclass(frozen=True)
class Family:
    """A registered network: how torchvision builds it.

    Attributes:
        builder: the ``torchvision.models`` callable.
        width: the width multiplier this entry is registered with (1.0: none).
        knob: the builder's width-multiplier keyword; None where the family has none.
        init: how torchvision initialises the family's convolutions: ``fan_out`` (Kaiming
            normal, fan-out mode, ReLU gain: std sqrt(2 / fan_out)) or ``default`` (PyTorch's
            own, which ShuffleNetV2 keeps).
        group: the entries that differ only in their width share one group (their adapted
            networks coincide); default the builder.
    """

    builder: str
    width: float = 1.0
    knob: str | None = None
    init: str = "fan_out"
    group: str = ""

    @property
    def group_name(self) -> str:
        return self.group or self.builder


BASELINES: Registry[Family] = Registry("baseline network", ConfigError)
for _w, _name in ((0.5, "mobilenet_v2_0.5"), (0.75, "mobilenet_v2_0.75"), (1.0, "mobilenet_v2"),
                  (1.4, "mobilenet_v2_1.4")):
    BASELINES.add(_name, Family("mobilenet_v2", _w, "width_mult"), f"torchvision mobilenet_v2(width_mult={_w})")
for _name in ("mobilenet_v3_small", "mobilenet_v3_large"):
    BASELINES.add(_name, Family(_name, 1.0, "width_mult"), f"torchvision {_name}")
for _v in ("x0_5", "x1_0", "x1_5", "x2_0"):
    BASELINES.add(f"shufflenet_v2_{_v}", Family(f"shufflenet_v2_{_v}", init="default"),
                  f"torchvision shufflenet_v2_{_v}")
for _w, _name in ((0.5, "mnasnet0_5"), (0.75, "mnasnet0_75"), (1.0, "mnasnet1_0"), (1.3, "mnasnet1_3")):
    BASELINES.add(_name, Family("MNASNet", _w, "alpha", group="mnasnet"), f"torchvision {_name} (MNASNet(alpha={_w}))")
for _name in ("regnet_x_400mf", "regnet_y_400mf", "efficientnet_b0", "resnet18"):
    BASELINES.add(_name, Family(_name), f"torchvision {_name}")


def check_form(form: Any, where: str = "baseline form") -> str:
    if form not in FORMS:
        raise ConfigError(f"{where} must be one of {', '.join(FORMS)}, got {str(form)[:80]!r}")
    return form


@dataclass(frozen=True)
class Baseline:
    """One baseline network: a registered entry in a form, for (channels, size, classes).

    ``width``: the multiplier an adapted network of a family with a knob was given (by
    :func:`fit`); None means the entry's own. Invalid fields raise ConfigError.
    """

    entry: str
    form: str
    channels: int
    size: int
    classes: int
    width: float | None = None

    def __post_init__(self):
        BASELINES.check(self.entry, "baseline network")
        check_form(self.form)
        for key in ("channels", "size", "classes"):
            v = getattr(self, key)
            if type(v) is not int or not 1 <= v <= (4096 if key == "size" else 100_000):
                raise ConfigError(f"baseline {key} must be a positive integer, got {str(v)[:40]!r}")
        if self.classes < 2:
            raise ConfigError(f"baseline classes must be >= 2, got {self.classes}")
        if self.width is not None:
            if self.form != "adapted" or self.family.knob is None:
                raise ConfigError(f"{self.entry}: only an adapted network of a family with a width multiplier "
                                  f"takes a width, got width {self.width!r} for the {self.form} form")
            if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) \
                    or not WIDTHS[0] <= self.width <= WIDTHS[-1]:
                raise ConfigError(f"baseline width must be a number in [{WIDTHS[0]}, {WIDTHS[-1]}], "
                                  f"got {str(self.width)[:40]!r}")

    @property
    def family(self) -> Family:
        return BASELINES.get(self.entry)

    @property
    def multiplier(self) -> float | None:
        """The width multiplier the network is built with (None: the family has none)."""
        if self.family.knob is None:
            return None
        return self.family.width if self.width is None else float(self.width)

    @property
    def stem_stride_1(self) -> bool:
        return self.form == "adapted" and self.size <= SMALL_INPUT

    @property
    def name(self) -> str:
        """For people: ``mobilenet_v2_0.75``, ``mobilenet_v2 ×0.35 adapted (stem stride 1)``."""
        if self.form == "defined":
            return self.entry
        f = self.family
        head = f"{f.group_name} ×{self.multiplier:g}" if f.knob else self.entry
        return f"{head} adapted" + (" (stem stride 1)" if self.stem_stride_1 else "")

    @property
    def key(self) -> str:
        """A file-name-safe id of the network (adapted entries of one group at one width share it)."""
        if self.form == "defined":
            return self.entry
        f = self.family
        return f"{f.group_name}-w{self.multiplier:g}-adapted" if f.knob else f"{self.entry}-adapted"

    def to_json(self) -> dict:
        return {"entry": self.entry, "form": self.form, "channels": self.channels, "size": self.size,
                "classes": self.classes, "width": self.width}

    @classmethod
    def from_json(cls, data: Any, where: str = "baseline") -> Baseline:
        """The inverse of :meth:`to_json`; anything else is a one-line ConfigError."""
        keys = ("entry", "form", "channels", "size", "classes", "width")
        if not isinstance(data, dict) or set(data) != set(keys):
            raise ConfigError(f"{where} must be a mapping with exactly the keys {', '.join(keys)}")
        return cls(**{k: data[k] for k in keys})


# ------------------------------------------------------------------ building
def _first(model: nn.Module, kind: type) -> tuple[nn.Module, str, nn.Module] | None:
    """(parent, attribute, module) of the first ``kind`` module in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, kind):
            parent_name, _, attr = name.rpartition(".")
            return model.get_submodule(parent_name), attr, module
    return None


def _set_input_channels(model: nn.Module, channels: int, init: str) -> None:
    """THE input adaptation of the defined form (module docstring)."""
    from torch import nn

    parent, attr, old = _first(model, nn.Conv2d)
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation, old.groups,
                    bias=old.bias is not None, padding_mode=old.padding_mode)
    if init == "fan_out":
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    setattr(parent, attr, new)


def _stem_stride_1(model: nn.Module) -> None:
    """Step 1 of the adaptation: the first convolution at stride 1, the stem's max-pool removed."""
    from torch import nn

    _first(model, nn.Conv2d)[2].stride = (1, 1)
    pool = _first(model, nn.MaxPool2d)
    if pool is not None:
        setattr(pool[0], pool[1], nn.Identity())


def build(b: Baseline) -> nn.Module:
    """The network of ``b``, freshly initialised (from torch's global RNG, as torchvision does)."""
    import torchvision.models as tvm

    f = b.family
    model = getattr(tvm, f.builder)(num_classes=b.classes, **({f.knob: b.multiplier} if f.knob else {}))
    if b.channels != 3:
        _set_input_channels(model, b.channels, f.init)
    if b.stem_stride_1:
        _stem_stride_1(model)
    return model


# ------------------------------------------------------------------ cost
def count_madds(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the convolutions and linear layers of ``model`` on one input of
    ``shape`` (C, H, W), counted by forward hooks in eval mode on the model's device."""
    import torch
    from torch import nn

    total = [0]

    def hook(m, _inputs, out):
        per_output = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] if isinstance(m, nn.Conv2d) \
            else m.in_features
        total[0] += out.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]


@functools.lru_cache(maxsize=4096)
def cost(b: Baseline) -> tuple[int, int]:
    """(MAdds, params) of ``b`` (module docstring); torch's RNG is left as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        model = build(b)
    return count_madds(model, (b.channels, b.size, b.size)), sum(p.numel() for p in model.parameters())


def within(max_madds: int | None = None, max_params: int | None = None) -> Callable[[Baseline], bool]:
    """A :func:`fit` test: MAdds and params at most the given limits (None: no limit)."""
    def fits(b: Baseline) -> bool:
        m, p = cost(b)
        return (max_madds is None or m <= max_madds) and (max_params is None or p <= max_params)
    return fits


def fit(entry: str, form: str, channels: int, size: int, classes: int,
        fits: Callable[[Baseline], bool]) -> Baseline | None:
    """The network of ``entry`` in ``form`` that the budget test ``fits`` accepts, or None.

    The defined form, and an adapted family without a width multiplier, is one network: it
    fits or not. An adapted family with one gets the largest multiplier of ``WIDTHS`` that
    fits, found by bisection (costs do not decrease with the width).
    """
    base = Baseline(entry, form, channels, size, classes)
    if form == "defined" or base.family.knob is None:
        return base if fits(base) else None
    lo, hi = -1, len(WIDTHS)  # WIDTHS[lo] fits (or lo = -1); WIDTHS[hi] does not (or hi = len)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(replace(base, width=WIDTHS[mid])):
            lo = mid
        else:
            hi = mid
    return replace(base, width=WIDTHS[lo]) if lo >= 0 else None
