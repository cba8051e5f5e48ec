"""Standalone networks: ``build_model(arch)`` returns a plain ``nn.Module`` holding only
the chosen edges, built from the same op library as the supernet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from stnas.space.arch import Arch


def branch_key(src: int, dst: int) -> str:
    """The module name of branch edge x_src -> x_dst (shared with the supernet)."""
    return f"{src}_{dst}"


Incoming = Mapping[int, Sequence[tuple[int, nn.Module]]]


def forward_nodes(x0: torch.Tensor, edges: Sequence[nn.Module], incoming: Incoming) -> torch.Tensor:
    """Runs the node graph: ``x_j = edges[j-1](x_{j-1}) + sum_i branch_ij(x_i)``.

    Args:
        x0: the stem output.
        edges: one module per stem edge.
        incoming: for each target node j, the ``(i, module)`` pairs of its branch edges.

    Returns:
        ``x_n``, the last feature map. Only the maps a later branch still reads are kept.
    """
    # x_m is last read by node m + depth, so after node j the map j - depth can go
    keep = max((j - i for j, srcs in incoming.items() for i, _ in srcs), default=1)
    feats = {0: x0}
    del x0  # let x_0 go once no branch needs it
    for j, edge in enumerate(edges, start=1):
        y = edge(feats[j - 1])
        for i, branch in incoming.get(j, ()):
            y = y + branch(feats[i])
        feats[j] = y
        feats.pop(j - keep, None)
    return feats[len(edges)]


class Network(nn.Module):
    """A chain of stem edges plus branch edges; each node sums its inputs.

    Attributes:
        stem: the fixed stem (conv, optional first block).
        edges: one module per stem edge, ``edges[j-1]`` maps x_{j-1} to x_j.
        branches: active branch edges, keyed ``"i_j"``.
        head: 1x1 conv, pooling, classifier.
    """

    def __init__(self, stem: nn.Module, edges: list[nn.Module], branches: dict[str, nn.Module], head: nn.Module):
        super().__init__()
        self.stem = stem
        self.edges = nn.ModuleList(edges)
        self.branches = nn.ModuleDict(branches)
        self.head = head
        incoming: dict[int, list[tuple[int, nn.Module]]] = {}
        for key, module in self.branches.items():
            i, j = map(int, key.split("_"))
            incoming.setdefault(j, []).append((i, module))
        self._incoming = {j: sorted(srcs, key=lambda t: t[0]) for j, srcs in incoming.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(forward_nodes(self.stem(x), self.edges, self._incoming))


def build_model(arch: Arch) -> Network:
    """The standalone model of an architecture, freshly initialised."""
    space = arch.space
    edges = [space.build_stem_op(k, o) for k, o in enumerate(arch.stem)]
    branches = {branch_key(b.src, b.dst): space.build_branch_op(k, o)
                for k, (b, o) in enumerate(zip(space.branch_edges, arch.branches)) if o >= 0}
    model = Network(space.build_stem(), edges, branches, space.build_head())
    init_weights(model)
    return model


def init_weights(model: nn.Module) -> None:
    """MobileNetV2's initialisation (torchvision): Kaiming fan-out convs, unit BN, small linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
