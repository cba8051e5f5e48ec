"""The topology-augmented search space (design.md section 2).

Feature maps ``x_0 .. x_n``: ``x_0`` is the output of the fixed stem, and stem edge
``j`` (1-based) maps ``x_{j-1}`` to ``x_j`` with one op chosen from the space's op
list. A *branch edge* ``x_i -> x_j`` exists for every ``j - i`` in the configured
depth differences (default {2, 3}); each is off or carries one op of the branch op
list, downsampling by the product of the strides it spans. A node sums its inputs:
``x_j = stem_j(x_{j-1}) + sum_i branch_ij(x_i)``. The head (1x1 conv, pool, linear)
follows ``x_n``.

Branch edges are ordered by target, then source: ``(0,2), (0,3), (1,3), (1,4), ...``
(for depths {2, 3}). That order is the one the architecture string uses.

Every choice is independent, so the set of architectures is a product set: counts are
products, uniform sampling is independent per edge, and mutation and crossover always
give members.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from stnas.core.errors import ArchError, SpaceError
from stnas.space.arch import Arch, from_json, from_string, read_source
from stnas.space.cost import CostTable
from stnas.space.ops import (
    ACTIVATIONS,
    NestedMBConv,
    OpSpec,
    build_op,
    conv_bn,
    nested_groups,
    op_allowed,
    op_cost,
    out_size,
    parse_op,
)
from stnas.space.sampling import Sampling

__all__ = ["Edge", "SearchSpace", "decode"]


@dataclass(frozen=True)
class Edge:
    """A stem or branch edge: its endpoints, geometry and the op indices it allows."""

    src: int
    dst: int
    c_in: int
    c_out: int
    stride: int
    size_in: int
    stage: int  # the stage of the target node
    allowed: tuple[int, ...]


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise SpaceError(msg)


# the largest values a space may hold: far beyond any network that trains, small enough that
# every count stays exact in the int64 cost tables and loops over edges end
MAX_CHANNELS = 1 << 16
MAX_SIZE = 1 << 14  # input side, pixels
MAX_CLASSES = 1 << 24
MAX_EDGES = 1024  # stem edges in all (4x as many branch edges), the largest stage depth or depth difference
MAX_MADDS, MAX_PARAMS = 1 << 50, 1 << 40  # of the largest network (params are packed in 40 bits)


def _int(cfg: dict, key: str, where: str, minimum: int = 1, maximum: int = MAX_CHANNELS) -> int:
    v = cfg.get(key)
    _require(isinstance(v, int) and not isinstance(v, bool) and minimum <= v <= maximum,
             f"{where}.{key} must be an integer from {minimum} to {maximum}, got {str(v)[:40]}")
    return v


_DEFAULTS: dict[str, Any] = {
    "activation": "relu6",
    "branch": {"depths": [2, 3], "ops": None},
    "head": {"channels": 1280, "dropout": 0.0},
}


class SearchSpace(Sampling):
    """A search space built from a config dict (the ``space`` section of a preset)."""

    def __init__(self, config: dict):
        _require(isinstance(config, dict), "a space config must be a mapping")
        cfg = copy.deepcopy(config)
        for k, v in _DEFAULTS.items():
            cfg.setdefault(k, copy.deepcopy(v))
        known = {"name", "input", "num_classes", "stem", "first_block", "stages", "ops", "branch", "head",
                 "activation"}
        unknown = sorted(set(cfg) - known)
        _require(not unknown, f"unknown key(s) in space config: {', '.join(unknown)}")
        _require(isinstance(cfg.get("name"), str) and cfg["name"], "space.name must be a non-empty string")
        self.name: str = cfg["name"]
        inp = cfg.get("input") or {}
        _require(isinstance(inp, dict), "space.input must be a mapping with channels and size")
        self.input_channels = _int(inp, "channels", "space.input")
        self.input_size = _int(inp, "size", "space.input", maximum=MAX_SIZE)
        self.num_classes = _int(cfg, "num_classes", "space", 2, MAX_CLASSES)
        self.activation = ACTIVATIONS.check(cfg["activation"])
        stem = cfg.get("stem") or {}
        self.stem_channels = _int(stem, "channels", "space.stem")
        self.stem_stride = _int(stem, "stride", "space.stem")
        _require(self.stem_stride in (1, 2), "space.stem.stride must be 1 or 2")
        fb = cfg.get("first_block")
        self.first_block: tuple[OpSpec, int] | None = None
        if fb is not None:
            _require(isinstance(fb, dict), "space.first_block must be a mapping with op and channels")
            self.first_block = (parse_op(fb.get("op")), _int(fb, "channels", "space.first_block"))
        head = cfg["head"]
        _require(isinstance(head, dict), "space.head must be a mapping")
        self.head_channels = _int(head, "channels", "space.head", 0)
        dropout = head.get("dropout", 0.0)
        _require(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1,
                 f"space.head.dropout must be a number in [0, 1), got {str(dropout)[:40]}")
        self.dropout = float(dropout)

        ops = cfg.get("ops")
        _require(isinstance(ops, list) and ops, "space.ops must be a non-empty list of op names")
        self.ops: tuple[OpSpec, ...] = tuple(parse_op(o) for o in ops)
        _require(len(set(ops)) == len(ops), "space.ops has duplicates")
        br = cfg["branch"]
        _require(isinstance(br, dict), "space.branch must be a mapping with depths and ops")
        depths = br.get("depths") or []
        _require(isinstance(depths, list) and all(isinstance(d, int) and 2 <= d <= MAX_EDGES for d in depths),
                 f"space.branch.depths must be a list of integers from 2 to {MAX_EDGES}")
        self.branch_depths = tuple(sorted(set(depths)))
        bops = br.get("ops") or ops
        _require(isinstance(bops, list) and bops, "space.branch.ops must be a list of op names")
        self.branch_ops: tuple[OpSpec, ...] = tuple(parse_op(o) for o in bops)
        _require(len(set(bops)) == len(bops), "space.branch.ops has duplicates")
        _require(len(self.ops) <= 36 and len(self.branch_ops) <= 36, "at most 36 ops per list")
        cfg["branch"] = {"depths": list(self.branch_depths), "ops": list(bops)}

        # Nodes: x_0 is the stem output; stage -1 means "the stem".
        c0 = self.first_block[1] if self.first_block else self.stem_channels
        size = out_size(self.input_size, self.stem_stride)
        channels, sizes, stages = [c0], [size], [-1]
        strides = []
        stages_cfg = cfg.get("stages")
        _require(isinstance(stages_cfg, list) and stages_cfg, "space.stages must be a non-empty list")
        for s, st in enumerate(stages_cfg):
            where = f"space.stages[{s}]"
            _require(isinstance(st, dict), f"{where} must be a mapping with channels, depth and stride")
            c, depth = _int(st, "channels", where), _int(st, "depth", where, maximum=MAX_EDGES)
            _require(len(strides) + depth <= MAX_EDGES, f"{where}: the space has more than {MAX_EDGES} stem edges")
            stride = st.get("stride", 1)
            _require(stride in (1, 2), f"{where}.stride must be 1 or 2")
            for k in range(depth):
                strides.append(stride if k == 0 else 1)
                size = out_size(size, strides[-1])
                channels.append(c)
                sizes.append(size)
                stages.append(s)
        self.num_stages = len(stages_cfg)
        self.node_channels, self.node_sizes, self.node_stages = channels, sizes, stages
        n = len(strides)
        n_branches = sum(max(0, n - d + 1) for d in self.branch_depths)
        _require(n_branches <= 4 * MAX_EDGES, f"space.branch.depths: {n_branches} branch edges, more than "
                                              f"the {4 * MAX_EDGES} a space may have")

        def make_edge(i: int, j: int, oplist: tuple[OpSpec, ...], kind: str) -> Edge:
            stride = int(np.prod(strides[i:j]))
            allowed = tuple(k for k, op in enumerate(oplist) if op_allowed(op, channels[i], channels[j], stride))
            _require(bool(allowed), f"no op of space.{kind} fits edge x{i}->x{j} "
                                    f"({channels[i]}->{channels[j]} channels, stride {stride})")
            return Edge(i, j, channels[i], channels[j], stride, sizes[i], stages[j], allowed)

        self.stem_edges: tuple[Edge, ...] = tuple(make_edge(j - 1, j, self.ops, "ops") for j in range(1, n + 1))
        self.branch_edges: tuple[Edge, ...] = tuple(
            make_edge(j - d, j, self.branch_ops, "branch.ops")
            for j in range(1, n + 1) for d in reversed(self.branch_depths) if j - d >= 0)
        self.config = cfg
        self.fingerprint = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:12]
        self._tables()

    # ----------------------------------------------------------------- counting
    @property
    def num_edges(self) -> int:
        return len(self.stem_edges)

    def num_topologies(self) -> int:
        """Number of branch-edge subsets (the chain is always present)."""
        return 2 ** len(self.branch_edges)

    def num_architectures(self) -> int:
        """Exact number of distinct architectures (topologies times op choices)."""
        total = 1
        for e in self.stem_edges:
            total *= len(e.allowed)
        for b in self.branch_edges:
            total *= 1 + len(b.allowed)
        return total

    # ---------------------------------------------------------------- cost
    def _tables(self) -> None:
        """The MAdds and params cost tables (:class:`stnas.space.cost.CostTable`, ``costs``), their
        arrays ``stem_table[k, op, (MAdds, params)]`` and ``branch_table``, and the fixed costs."""
        madds = params = 0
        size = self.input_size
        s1 = out_size(size, self.stem_stride)
        madds += s1 * s1 * self.input_channels * self.stem_channels * 9
        params += self.input_channels * self.stem_channels * 9 + 2 * self.stem_channels
        if self.first_block:
            m, p = op_cost(self.first_block[0], self.stem_channels, self.first_block[1], 1, s1)
            madds, params = madds + m, params + p
        c_last, s_last = self.node_channels[-1], self.node_sizes[-1]
        c_head = self.head_channels or c_last
        if self.head_channels:
            madds += s_last * s_last * c_last * c_head
            params += c_last * c_head + 2 * c_head
        madds += c_head * self.num_classes
        params += c_head * self.num_classes + self.num_classes
        self.fixed_madds, self.fixed_params = madds, params

        def costs(edges, oplist):
            return [{k: op_cost(oplist[k], e.c_in, e.c_out, e.stride, e.size_in) for k in e.allowed} for e in edges]

        stem_costs, branch_costs = costs(self.stem_edges, self.ops), costs(self.branch_edges, self.branch_ops)
        for i, (fixed, bound, what) in enumerate(((madds, MAX_MADDS, "MAdds"), (params, MAX_PARAMS, "parameters"))):
            largest = fixed + sum(max(cost[i] for cost in edge.values()) for edge in stem_costs + branch_costs)
            _require(largest < bound, f"the space's largest network has {largest:.3g} {what}, more than the "
                                      f"{bound:.3g} stnas counts (fewer channels, edges or a smaller input)")

        def table(edge_costs, oplist, off: bool):
            # [edge, op (, off), (MAdds, params)]: the last column of a branch table is "off",
            # so that op index -1 selects it; ops an edge does not allow get a huge cost
            t = np.zeros((len(edge_costs), len(oplist) + off, 2), dtype=np.int64)
            t[:, :len(oplist), :] = np.iinfo(np.int64).max // 1024
            for e, edge in enumerate(edge_costs):
                for k, cost in edge.items():
                    t[e, k] = cost
            return t

        self.stem_table = table(stem_costs, self.ops, False)
        self.branch_table = table(branch_costs, self.branch_ops, True)
        allowed = [e.allowed for e in self.stem_edges], [b.allowed for b in self.branch_edges]
        self.costs: dict[str, CostTable] = {
            kind: CostTable(kind, self.stem_table[:, :, i], self.branch_table[:, :, i], fixed, *allowed)
            for i, (kind, fixed) in enumerate((("madds", self.fixed_madds), ("params", self.fixed_params)))}
        # (MAdds << 40) + params: one pass of additions gives both (params stay below 2^40)
        m, p = self.costs["madds"], self.costs["params"]
        self._stem_mp = [[(a << 40) + b for a, b in zip(ms, ps)] for ms, ps in zip(m.stem_list, p.stem_list)]
        self._br_mp = [[(a << 40) + b for a, b in zip(ms, ps)] for ms, ps in zip(m.branch_list, p.branch_list)]

    def cost(self, arch: Arch) -> tuple[int, int]:
        """(MAdds, params) in one pass over the edges."""
        t = (sum(map(list.__getitem__, self._stem_mp, arch.stem))
             + sum(map(list.__getitem__, self._br_mp, arch.branches)))
        return self.fixed_madds + (t >> 40), self.fixed_params + (t & ((1 << 40) - 1))

    def madds(self, arch: Arch) -> int:
        """Analytic MAdds (conv and linear multiply-accumulates) for one image."""
        return self.costs["madds"](arch)

    def params(self, arch: Arch) -> int:
        """Analytic parameter count (conv, BN affine, linear)."""
        return self.costs["params"](arch)

    def cost_batch(self, stem: np.ndarray, branches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised (MAdds, params) for N architectures given as int arrays
        ``stem[N, n_edges]`` and ``branches[N, n_branches]`` (-1 = off)."""
        return self.costs["madds"].batch(stem, branches), self.costs["params"].batch(stem, branches)

    def edge_cost(self, arch: Arch) -> list[tuple[Edge, str, int, int]]:
        """(edge, op name, MAdds, params) for every stem edge and every active branch edge."""
        m, p = self.costs["madds"], self.costs["params"]
        rows = [(e, self.ops[o].name, m.stem_list[k][o], p.stem_list[k][o])
                for k, (e, o) in enumerate(zip(self.stem_edges, arch.stem))]
        rows += [(b, self.branch_ops[o].name, m.branch_list[k][o], p.branch_list[k][o])
                 for k, (b, o) in enumerate(zip(self.branch_edges, arch.branches)) if o >= 0]
        return rows

    def madds_range(self) -> tuple[int, int]:
        """The smallest and largest MAdds of any architecture."""
        return self.madds(self.extreme(largest=False)), self.madds(self.extreme(largest=True))

    def extreme(self, largest: bool) -> Arch:
        """The architecture of the most MAdds (every edge at its costliest op, every branch
        on) or of the fewest (every stem edge at its cheapest op, no branches)."""
        pick, m = (max if largest else min), self.costs["madds"]
        stem = tuple(pick(e.allowed, key=lambda o, k=k: m.stem_list[k][o]) for k, e in enumerate(self.stem_edges))
        branches = tuple(max(b.allowed, key=lambda o, k=k: m.branch_list[k][o]) if largest else -1
                         for k, b in enumerate(self.branch_edges))
        return Arch._trusted(self, stem, branches)

    # ---------------------------------------------------------------- modules
    def build_stem(self) -> nn.Module:
        layers = [conv_bn(self.input_channels, self.stem_channels, 3, self.stem_stride, act=self.activation)]
        if self.first_block:
            layers.append(build_op(self.first_block[0], self.stem_channels, self.first_block[1], 1, self.activation))
        return nn.Sequential(*layers)

    def build_head(self) -> nn.Module:
        c_last = self.node_channels[-1]
        layers: list[nn.Module] = []
        if self.head_channels:
            layers.append(conv_bn(c_last, self.head_channels, 1, act=self.activation))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if self.dropout:
            layers.append(nn.Dropout(self.dropout))
        layers.append(nn.Linear(self.head_channels or c_last, self.num_classes))
        return nn.Sequential(*layers)

    def build_stem_op(self, k: int, op: int) -> nn.Module:
        e = self.stem_edges[k]
        return build_op(self.ops[op], e.c_in, e.c_out, e.stride, self.activation, residual=True)

    def build_branch_op(self, k: int, op: int) -> nn.Module:
        b = self.branch_edges[k]
        return build_op(self.branch_ops[op], b.c_in, b.c_out, b.stride, self.activation, residual=False)

    def _edge_ops(self, branch: bool, k: int) -> tuple[Edge, tuple[OpSpec, ...]]:
        return (self.branch_edges[k], self.branch_ops) if branch else (self.stem_edges[k], self.ops)

    def nested_groups(self, branch: bool, k: int, kernel: bool = True,
                      width: bool = False) -> dict[int, tuple[int, int, int]]:
        """{op: (its group's head op, its kernel, its expansion)} of stem edge ``k`` (or
        branch edge ``k``): the allowed MBConvs that share one module
        (:func:`stnas.space.ops.nested_groups`)."""
        e, ops = self._edge_ops(branch, k)
        return nested_groups({o: ops[o] for o in e.allowed}, kernel, width)

    def build_nested_op(self, branch: bool, k: int, top: int, kernel: bool = True,
                        width: bool = False) -> NestedMBConv:
        """The :class:`NestedMBConv` of the group headed by op ``top``."""
        e, _ = self._edge_ops(branch, k)
        members = [(kern, x) for t, kern, x in self.nested_groups(branch, k, kernel, width).values() if t == top]
        return NestedMBConv(e.c_in, e.c_out, tuple(m[0] for m in members), tuple(m[1] for m in members), e.stride,
                            self.activation, residual=not branch)

    # ---------------------------------------------------------------- architectures
    def arch(self, source: Arch | str | Path, context: str = "") -> Arch:
        """``source`` (an Arch, a JSON file or text, or a string) as an architecture of this space.

        Args:
            source: what to decode or check.
            context: appended to the error message (e.g. ``" of run runs/fm"``).

        Raises:
            ArchError: malformed, or of another space.
        """
        if isinstance(source, Arch):
            if source.space is not self and source.space.fingerprint != self.fingerprint:
                raise ArchError(f"architecture {source} belongs to space {source.space.name!r} "
                                f"({source.space.fingerprint}), not to the space {self.name!r} "
                                f"({self.fingerprint}){context}")
            return source
        if not isinstance(source, (str, Path)):
            raise ArchError(f"expected an Arch, an architecture string or a JSON file, got {type(source).__name__}")
        obj, text, _ = read_source(source)
        return decode(obj, text, self)

    def __reduce__(self):
        return (SearchSpace, (self.config,))

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, edges={self.num_edges}, branches={len(self.branch_edges)})"


def decode(obj: Any, text: str, space: SearchSpace) -> Arch:
    try:
        return from_json(obj, space) if obj is not None else from_string(text, space)
    except (TypeError, AttributeError, ValueError, KeyError, IndexError) as exc:  # a value of the wrong kind
        raise ArchError(f"malformed architecture (a value of the wrong kind: {type(exc).__name__}: "
                        f"{str(exc)[:120]})") from None
