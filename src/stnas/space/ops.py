"""The op library: every computation module an edge can carry, and its exact cost.

This module is the one place that knows what an op *is*: its name grammar, the
``nn.Module`` it builds and the multiply-adds and parameters it costs. Each op family is one
:class:`OpFamily` entry of :data:`OP_FAMILIES` (and each activation one entry of
:data:`ACTIVATIONS`). The search
space, the standalone model and the supernet all build ops through :func:`build_op`,
and the cost model reads :func:`op_cost`, so the analytic count and the built module
cannot drift apart (a test checks them against forward hooks).

Op names:

* ``mb_k{K}_e{E}`` -- MBConv (inverted residual, MobileNetV2): 1x1 expand to
  ``E*C_in`` channels (omitted when E = 1), KxK depthwise with the edge's stride,
  1x1 linear projection; BN after each conv and the activation after the first two.
  A residual is added when the op sits on a stem edge with stride 1 and equal
  channels. K must be odd.
* ``conv1x1`` -- average pooling by the stride (if any), 1x1 conv, BN. A cheap
  projection, mainly meant for branch edges.
* ``skip`` -- identity; only where input and output shapes agree.

Downsampling by 4 (a branch edge spanning two stride-2 stem edges) is done as a
ceil-mode 2x2 average pool followed by the op at stride 2 (by 8: a 4x4 pool), so
every branch output has exactly the size of the stem path it bypasses:
``ceil(ceil(h/2)/2) = ceil(h/4)``.

MAdds follow design.md section 3: conv and linear multiply-accumulates only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from stnas.core.errors import SpaceError
from stnas.core.registry import Registry

_MB_RE = re.compile(r"^mb_k(\d+)_e(\d+)$")

ACTIVATIONS: Registry[type[nn.Module]] = Registry("space.activation", SpaceError)
ACTIVATIONS.add("relu6", nn.ReLU6, "min(max(x, 0), 6) (MobileNetV2)")
ACTIVATIONS.add("relu", nn.ReLU, "max(x, 0)")
ACTIVATIONS.add("hswish", nn.Hardswish, "hard swish (MobileNetV3)")
ACTIVATIONS.add("silu", nn.SiLU, "x * sigmoid(x) (EfficientNet)")


@dataclass(frozen=True)
class OpSpec:
    """A parsed op name: its family (``kind``, an :data:`OP_FAMILIES` name) and parameters.
    ``residual``: on a stem edge of stride 1 between equal channels it adds its input."""

    name: str
    kind: str
    kernel: int = 1
    expand: int = 1
    residual: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class OpFamily:
    """A family of ops (module docstring).

    Attributes:
        parse: an op name -> its spec, or None when the name is not of this family (raises
            SpaceError for a name of the family with bad parameters).
        grammar: the names it takes, for messages (``mb_k<K>_e<E>``).
        example: one such name (tests build and price every family's).
        allowed: ``(spec, c_in, c_out, stride)`` -> whether it can map the edge.
        cost: ``(spec, c_in, c_out, stride, size)`` -> (MAdds, params) on a ``c_in x size x size`` input.
        build: ``(spec, c_in, c_out, stride, activation, residual)`` -> the module.
        nests: ops of the family that differ in kernel or expansion can share one module
            (:class:`NestedMBConv`, kernel and width sharing).
    """

    parse: Callable[[str], OpSpec | None]
    grammar: str
    example: str
    allowed: Callable[[OpSpec, int, int, int], bool]
    cost: Callable[[OpSpec, int, int, int, int], tuple[int, int]]
    build: Callable[..., nn.Module]
    nests: bool = False


OP_FAMILIES: Registry[OpFamily] = Registry("op family", SpaceError)


def parse_op(name: str) -> OpSpec:
    """Parses an op name (see the module docstring) or raises SpaceError."""
    if not isinstance(name, str):
        raise SpaceError(f"op name must be a string, got {name!r}")
    for family in OP_FAMILIES:
        spec = OP_FAMILIES.get(family).parse(name)
        if spec is not None:
            return spec
    grammars = [OP_FAMILIES.get(f).grammar for f in OP_FAMILIES]
    raise SpaceError(f"unknown op {name!r}: expected {', '.join(grammars[:-1])} or {grammars[-1]}")


def out_size(size: int, stride: int) -> int:
    """Spatial size after a stride-1/2/4 op: stride 2 is ``ceil(size/2)``."""
    while stride > 1:
        size = -(-size // 2)
        stride //= 2
    return size


def op_allowed(spec: OpSpec, c_in: int, c_out: int, stride: int) -> bool:
    """Whether an op can map (c_in, stride) to c_out."""
    return OP_FAMILIES.get(spec.kind).allowed(spec, c_in, c_out, stride)


def op_cost(spec: OpSpec, c_in: int, c_out: int, stride: int, size: int) -> tuple[int, int]:
    """(MAdds, params) of an op applied to a ``c_in x size x size`` input."""
    return OP_FAMILIES.get(spec.kind).cost(spec, c_in, c_out, stride, size)


def _mb_cost(spec: OpSpec, c_in: int, c_out: int, stride: int, size: int) -> tuple[int, int]:
    s_out = out_size(size, stride)
    hidden = c_in * spec.expand
    # strides above 2 pool first, so the expansion runs at reduced resolution
    s_mid = out_size(size, stride // 2) if stride > 2 else size
    madds = params = 0
    if spec.expand != 1:
        madds += s_mid * s_mid * c_in * hidden
        params += c_in * hidden + 2 * hidden
    madds += s_out * s_out * hidden * spec.kernel**2
    params += hidden * spec.kernel**2 + 2 * hidden
    madds += s_out * s_out * hidden * c_out
    params += hidden * c_out + 2 * c_out
    return madds, params


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
            act: str | None = None) -> nn.Sequential:
    """Conv (no bias) + BN (+ activation)."""
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(ACTIVATIONS.get(act)(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2); strides above 2 pool first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expand: int, stride: int,
                 act: str = "relu6", residual: bool = True):
        super().__init__()
        hidden = c_in * expand
        dw_stride = stride
        self.pool = None
        if stride > 2:
            self.pool = nn.AvgPool2d(stride // 2, stride // 2, ceil_mode=True, count_include_pad=False)
            dw_stride = 2
        self.expand = conv_bn(c_in, hidden, 1, act=act) if expand != 1 else None
        self.depthwise = conv_bn(hidden, hidden, kernel, dw_stride, groups=hidden, act=act)
        self.project = conv_bn(hidden, c_out, 1)
        self.use_residual = residual and stride == 1 and c_in == c_out

    def forward(self, x):
        return self._run(x, self.expand, self.depthwise, self.project)

    def _run(self, x, expand, depthwise, project):
        """The block (pool, ``expand`` unless expansion 1, ``depthwise``, ``project``, residual)."""
        y = x if self.pool is None else self.pool(x)
        if self.expand is not None:
            y = expand(y)
        y = project(depthwise(y))
        return x + y if self.use_residual else y


class NestedMBConv(MBConv):
    """The MBConvs of one edge as one module: an MBConv at the largest kernel and expansion
    whose smaller kernels are the centre of its depthwise weight (OFA's elastic kernel,
    without its kernel transformation matrices) and whose smaller expansions ``e`` are its
    first ``e * c_in`` hidden channels (elastic width, as in slimmable networks and OFA);
    the projection's output and its BN are shared by all. ``forward(x, kernel, expand)`` runs
    one op; ``sub_state(kernel, expand)`` is the state dict of the standalone ``MBConv`` of
    that op, and ``load_sub_state`` writes one back."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...], expands: tuple[int, ...], stride: int,
                 act: str = "relu6", residual: bool = True):
        if 1 in expands and len(set(expands)) > 1:
            raise ValueError("expansion 1 has no expand layer to nest in: it cannot share a module")
        super().__init__(c_in, c_out, max(kernels), max(expands), stride, act, residual)
        self.c_in = c_in
        self.kernels = tuple(sorted(set(kernels)))
        self.expands = tuple(sorted(set(expands)))

    def _choice(self, kernel: int | None, expand: int | None) -> tuple[int, int]:
        kernel = max(self.kernels) if kernel is None else kernel
        expand = max(self.expands) if expand is None else expand
        if kernel not in self.kernels:
            raise ValueError(f"kernel {kernel} is not one of this module's {self.kernels}")
        if expand not in self.expands:
            raise ValueError(f"expansion {expand} is not one of this module's {self.expands}")
        return kernel, expand

    def _slices(self, kernel: int | None, expand: int | None) -> dict[str, tuple[slice, ...]]:
        """{state name: index} of the tensors the op (kernel, expand) uses a part of."""
        kernel, expand = self._choice(kernel, expand)
        h, c = slice(0, self.c_in * expand), (max(self.kernels) - kernel) // 2
        out = {"depthwise.0.weight": (h, slice(None), slice(c, c + kernel), slice(c, c + kernel)),
               "project.0.weight": (slice(None), h)}
        bns = ("depthwise.1",) if self.expand is None else ("expand.1", "depthwise.1")
        out |= {f"{b}.{n}": (h,) for b in bns for n in ("weight", "bias", "running_mean", "running_var")}
        if self.expand is not None:
            out["expand.0.weight"] = (h,)
        return out

    def forward(self, x, kernel: int | None = None, expand: int | None = None):
        kernel, expand = self._choice(kernel, expand)
        dw = self._slices(kernel, expand)["depthwise.0.weight"]
        h = self.c_in * expand

        def expand_(y):
            conv, bn, act = self.expand
            return act(_bn(bn, F.conv2d(y, conv.weight[:h]), h))

        def depthwise(y):
            conv, bn, act = self.depthwise
            return act(_bn(bn, F.conv2d(y, conv.weight[dw], None, conv.stride, kernel // 2, 1, h), h))

        return self._run(x, expand_, depthwise, lambda y: self.project[1](F.conv2d(y, self.project[0].weight[:, :h])))

    def sub_state(self, kernel: int | None = None, expand: int | None = None) -> dict[str, torch.Tensor]:
        """The standalone ``MBConv(kernel, expand)`` state dict (its tensors views of this module's)."""
        idx = self._slices(kernel, expand)
        return {n: t[idx[n]] if n in idx else t for n, t in self.state_dict().items()}

    def load_sub_state(self, kernel: int | None, state: dict[str, torch.Tensor], expand: int | None = None) -> None:
        """Writes a standalone ``MBConv(kernel, expand)`` state dict in: the shared tensors
        whole, the op's part of the others (the outer ring of a larger kernel and the hidden
        channels of a larger expansion are kept)."""
        idx = self._slices(kernel, expand)
        full = self.state_dict()
        out = {}
        for n, t in full.items():
            if n not in idx:
                out[n] = state.get(n, t)
                continue
            if state.get(n) is None or state[n].shape != t[idx[n]].shape:
                raise ValueError(f"{n} does not fit kernel {kernel}, expansion {expand}")
            w = t.clone()
            w[idx[n]] = state[n]
            out[n] = w
        self.load_state_dict(out)


def _bn(bn: nn.BatchNorm2d, y: torch.Tensor, h: int) -> torch.Tensor:
    """``bn`` on the first ``h`` of its channels (the module itself when it is all of them)."""
    if h == bn.num_features:
        return bn(y)
    training = bn.training or bn.running_mean is None
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    mean = bn.running_mean[:h] if bn.running_mean is not None and (not bn.training or bn.track_running_stats) else None
    var = bn.running_var[:h] if bn.running_var is not None and (not bn.training or bn.track_running_stats) else None
    return F.batch_norm(y, mean, var, bn.weight[:h], bn.bias[:h], training, factor, bn.eps)


class Conv1x1(nn.Module):
    """Pool by the stride, then a 1x1 conv with BN."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else None
        self.conv = conv_bn(c_in, c_out, 1)

    def forward(self, x):
        return self.conv(x if self.pool is None else self.pool(x))


def build_op(spec: OpSpec, c_in: int, c_out: int, stride: int, act: str = "relu6", residual: bool = True) -> nn.Module:
    """The module for an op; ``residual=False`` for branch edges (the node sums anyway)."""
    if not op_allowed(spec, c_in, c_out, stride):
        raise SpaceError(f"op {spec.name!r} cannot map {c_in} to {c_out} channels at stride {stride}")
    return OP_FAMILIES.get(spec.kind).build(spec, c_in, c_out, stride, act, residual)


def _parse_mb(name: str) -> OpSpec | None:
    m = _MB_RE.match(name)
    if not m:
        return None
    k, e = int(m.group(1)), int(m.group(2))
    if k % 2 == 0 or k < 1 or k > 9:
        raise SpaceError(f"op {name!r}: the kernel must be odd and at most 9")
    if e < 1 or e > 12:
        raise SpaceError(f"op {name!r}: the expansion must be between 1 and 12")
    return OpSpec(name, "mb", k, e, residual=True)


def _named(name: str):
    """The parser of a family of one op whose name is the family's."""
    return lambda text: OpSpec(name, name) if text == name else None


OP_FAMILIES.add("mb", OpFamily(
    _parse_mb, "mb_k<K>_e<E>", "mb_k5_e3", lambda spec, c_in, c_out, stride: True, _mb_cost,
    lambda spec, c_in, c_out, stride, act, residual: MBConv(c_in, c_out, spec.kernel, spec.expand, stride, act,
                                                            residual), nests=True),
    "MBConv (inverted residual) with kernel K and expansion E")
OP_FAMILIES.add("conv1x1", OpFamily(
    _named("conv1x1"), "conv1x1", "conv1x1", lambda spec, c_in, c_out, stride: True,
    lambda spec, c_in, c_out, stride, size: (out_size(size, stride) ** 2 * c_in * c_out, c_in * c_out + 2 * c_out),
    lambda spec, c_in, c_out, stride, act, residual: Conv1x1(c_in, c_out, stride)),
    "average pooling by the stride, 1x1 conv, BN")
OP_FAMILIES.add("skip", OpFamily(
    _named("skip"), "skip", "skip", lambda spec, c_in, c_out, stride: stride == 1 and c_in == c_out,
    lambda spec, c_in, c_out, stride, size: (0, 0), lambda spec, c_in, c_out, stride, act, residual: nn.Identity()),
    "identity, where input and output shapes agree")


def nested_groups(specs: dict[int, OpSpec], kernel: bool = True,
                  width: bool = False) -> dict[int, tuple[int, int, int]]:
    """{op index: (index of its group's head op, its kernel, its expansion)} for the MBConvs of
    ``specs`` (an edge's allowed ops) that share one :class:`NestedMBConv`: with ``kernel``,
    those that differ only in kernel size; with ``width``, those that differ only in
    expansion (1 excepted: it has no expand layer); with both, all of them but expansion 1.
    The head is the group's op of the largest kernel, then expansion. Other ops are left out."""
    groups: dict[tuple, list[int]] = {}
    for o, s in specs.items():
        if OP_FAMILIES.get(s.kind).nests:
            key = (None if kernel else s.kernel, None if width and s.expand > 1 else s.expand)
            groups.setdefault(key, []).append(o)
    out = {}
    for ops in groups.values():
        if len({(specs[o].kernel, specs[o].expand) for o in ops}) > 1:
            top = max(ops, key=lambda o: (specs[o].kernel, specs[o].expand, -o))
            out.update({o: (top, specs[o].kernel, specs[o].expand) for o in ops})
    return out
