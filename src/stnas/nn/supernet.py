"""The weight-sharing supernet (hypernetwork) of a search space.

Every allowed op of every stem edge and every allowed branch op of every branch edge owns
its own weights (the SPOS scheme: no kernel sharing across kernel sizes or expansions),
unless ``kernel_sharing`` or ``width_sharing`` is set: then the MBConvs of an edge that
differ only in kernel size (``kernel_sharing``), only in expansion (``width_sharing``) or
in either (both) are one :class:`stnas.space.ops.NestedMBConv`, held under the op index of the
group's largest op: a smaller kernel runs the centre of its depthwise weight (OFA's
elastic kernel), a smaller expansion its first hidden channels (elastic width). The stem
and head are fixed and shared by all architectures. Modules are built by the space's builders, so a supernet slot is the
very module a standalone :class:`stnas.nn.model.Network` holds, and the names map one to
one::

    standalone Network          supernet
    stem.*                      stem.*
    edges.{k}.*                 edges.{k}.{op}.*          (op: index in space.ops)
    branches.{i_j}.*            branches.{i_j}.{op}.*     (op: index in space.branch_ops)
    head.*                      head.*

(with sharing, a grouped op's slot is ``edges.{k}.{top}``, ``top`` the index of its group's
largest op; ``extract`` crops the tensors to the op's kernel and hidden channels).

API in the shape of OFA: ``sample_active`` / ``set_active`` / ``active``, and
``extract(arch)`` returns a standalone network carrying copies of the inherited weights.

Training semantics: ``forward(x, arch)`` runs only the chosen ops and branch edges, so
after ``backward`` only their parameters have gradients. With
``optimizer.zero_grad(set_to_none=True)`` (the default) every unchosen parameter has
``grad is None``, and SGD, SGLD (and their weight decay and momentum) skip it: the
weights of unchosen ops are left untouched, as in SPOS. In a distributed run every
process must pass the same architecture at each step: draw it with
``sample_active(seed=..., step=...)``, a pure function of (seed, step), so that the
same subset of parameters gets gradients on every rank (stnas.core.dist averages them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial

import numpy as np
import torch
from torch import nn

from stnas.core.errors import ArchError, CheckpointError, state_dict_detail
from stnas.nn.model import Network, branch_key, build_model, forward_nodes, init_weights
from stnas.space.arch import Arch
from stnas.space.catalog import load_space
from stnas.space.searchspace import SearchSpace


class Supernet(nn.Module):
    """All candidate ops of a search space with their own weights, run one path at a time.

    Attributes:
        space: the SearchSpace.
        stem, head: the fixed modules.
        edges: ``edges[k]`` is an ``nn.ModuleDict`` keyed by ``str(op index)`` over the
            stem edge's allowed ops.
        branches: ``branches[branch_key(i, j)]`` is an ``nn.ModuleDict`` keyed by
            ``str(op index)`` over the branch edge's allowed ops.
    """

    def __init__(self, space: SearchSpace | str, kernel_sharing: bool = False, width_sharing: bool = False):
        super().__init__()
        space = load_space(space)
        self.space = space
        self.kernel_sharing, self.width_sharing = bool(kernel_sharing), bool(width_sharing)
        share = (self.kernel_sharing, self.width_sharing)
        self._groups: dict[str, dict[int, tuple[int, int, int]]] = {}  # prefix -> {op: (top, kernel, expand)}

        def slot(prefix: str, branch: bool, k: int, allowed) -> nn.ModuleDict:
            groups = space.nested_groups(branch, k, *share) if any(share) else {}
            self._groups[prefix] = groups
            build = space.build_branch_op if branch else space.build_stem_op
            return nn.ModuleDict({str(o): space.build_nested_op(branch, k, o, *share) if o in groups else build(k, o)
                                  for o in allowed if groups.get(o, (o,))[0] == o})

        self.stem = space.build_stem()
        self.edges = nn.ModuleList(slot(f"edges.{k}", False, k, e.allowed) for k, e in enumerate(space.stem_edges))
        self.branches = nn.ModuleDict({
            branch_key(b.src, b.dst): slot(f"branches.{branch_key(b.src, b.dst)}", True, k, b.allowed)
            for k, b in enumerate(space.branch_edges)})
        self.head = space.build_head()
        init_weights(self)
        self._active: Arch | None = None

    @classmethod
    def fitting(cls, space: SearchSpace | str, names) -> Supernet | None:
        """A supernet of ``space`` whose state dict has exactly these tensor ``names`` (plain,
        kernel-, width- or kernel-and-width-sharing), or None when no layout has them."""
        names = set(names)
        for sharing in ((False, False), (True, False), (False, True), (True, True)):
            with torch.device("meta"):
                fits = set(cls(space, *sharing).state_dict()) == names
            if fits:
                return cls(space, *sharing)
        return None

    # ------------------------------------------------------------ architectures
    def _check(self, arch: Arch | str | None) -> Arch:
        """``arch`` validated for this space; None means the active architecture."""
        if arch is None:
            if self._active is None:
                raise ArchError("no active architecture: pass one or call set_active / sample_active first")
            return self._active
        return self.space.arch(arch, " of this supernet")

    @property
    def active(self) -> Arch | None:
        """The architecture ``forward`` runs when none is passed."""
        return self._active

    def set_active(self, arch: Arch | str) -> None:
        """Sets the active architecture (an Arch of this space or its string)."""
        if arch is None:
            raise ArchError("set_active needs an architecture, got None")
        self._active = self._check(arch)

    def sample_active(self, rng: np.random.Generator | None = None, *, seed: int | None = None,
                      step: int | None = None, mode: str = "topology") -> Arch:
        """Draws an architecture, makes it active and returns it.

        Args:
            rng: a numpy Generator (``space.sample``); or else
            seed, step: draw ``space.sample_at(seed, step)``, the same in every process.
            mode: a ``stnas.space.sampling.SAMPLING_MODES`` name (see ``SearchSpace.sample_at``).
        """
        if rng is not None:
            arch = self.space.sample(rng, mode)
        elif seed is not None and step is not None:
            arch = self.space.sample_at(seed, step, mode)
        else:
            raise ValueError("sample_active needs an rng or both seed and step")
        self._active = arch
        return arch

    # ------------------------------------------------------------ compute
    def forward(self, x: torch.Tensor, arch: Arch | str | None = None) -> torch.Tensor:
        """Logits of ``arch`` (default: the active one); nothing unchosen is computed."""
        arch = self._check(arch)
        edges = [self._op(self.edges[k], f"edges.{k}", o) for k, o in enumerate(arch.stem)]
        incoming: dict[int, list[tuple[int, nn.Module]]] = {}
        for b, o in zip(self.space.branch_edges, arch.branches):
            if o >= 0:
                key = branch_key(b.src, b.dst)
                incoming.setdefault(b.dst, []).append((b.src, self._op(self.branches[key], f"branches.{key}", o)))
        return self.head(forward_nodes(self.stem(x), edges, incoming))

    def _op(self, slot: nn.ModuleDict, prefix: str, o: int):
        """The module (or, for a group, its module at the op's kernel and expansion) that runs op ``o``."""
        if o not in self._groups[prefix]:
            return slot[str(o)]
        top, kernel, expand = self._groups[prefix][o]
        return partial(slot[str(top)], kernel=kernel, expand=expand)

    # ------------------------------------------------------------ weights
    def _slots(self, arch: Arch) -> Iterator[tuple[str, str, tuple[int, int] | None]]:
        """(standalone module name, supernet module name, choice) for every module of
        ``arch``; the choice, (kernel, expansion), is None unless the module is a group's."""
        yield "stem", "stem", None
        slots = [(f"edges.{k}", o) for k, o in enumerate(arch.stem)]
        slots += [(f"branches.{branch_key(b.src, b.dst)}", o) for b, o in zip(self.space.branch_edges, arch.branches)
                  if o >= 0]
        for prefix, o in slots:
            top, *choice = self._groups[prefix].get(o, (o, None, None))
            yield prefix, f"{prefix}.{top}", None if choice[0] is None else tuple(choice)
        yield "head", "head", None

    def _state(self, name: str, choice: tuple[int, int] | None) -> dict[str, torch.Tensor]:
        module = self.get_submodule(name)
        return module.state_dict() if choice is None else module.sub_state(*choice)

    def arch_state_dict(self, arch: Arch | str) -> dict[str, torch.Tensor]:
        """The state dict (parameters and BN buffers) of ``arch``'s modules, with supernet
        names. Like ``state_dict()``, the tensors share storage with the supernet (a group's
        op's tensors are views of its part)."""
        arch = self._check(arch)
        out: dict[str, torch.Tensor] = {}
        for _, name, choice in self._slots(arch):
            for n, t in self._state(name, choice).items():
                out[f"{name}.{n}"] = t
        return out

    def extract(self, arch: Arch | str | None = None) -> Network:
        """A standalone ``build_model(arch)`` carrying copies of the inherited weights and
        BN buffers (default arch: the active one). In eval mode its output equals
        ``self(x, arch)``. It is placed on the supernet's device, in train mode."""
        arch = self._check(arch)
        ref = next(self.parameters())
        net = build_model(arch).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for sub, name, choice in self._slots(arch):
                net.get_submodule(sub).load_state_dict(self._state(name, choice))
        return net

    def load_subnet_state(self, arch: Arch | str, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Writes a standalone network's state dict (``build_model(arch).state_dict()``
        names) into the supernet slots of ``arch``; the inverse of :meth:`extract`.

        Raises:
            CheckpointError: when keys are missing or unexpected, or shapes differ.
        """
        arch = self._check(arch)
        slots = list(self._slots(arch))
        parts: dict[str, dict[str, torch.Tensor]] = {sub: {} for sub, _, _ in slots}
        unexpected = []
        for key, t in state_dict.items():
            sub = next((s for s, _, _ in slots if key.startswith(s + ".")), None)
            if sub is None:
                unexpected.append(key)
            else:
                parts[sub][key[len(sub) + 1:]] = t
        if unexpected:
            raise CheckpointError(f"state dict does not fit architecture {arch}: unexpected key(s) "
                                  f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        for sub, name, choice in slots:
            module = self.get_submodule(name)
            have, want = set(parts[sub]), set(module.state_dict())
            if have != want:
                missing = sorted(f"{sub}.{n}" for n in want - have)
                extra = sorted(f"{sub}.{n}" for n in have - want)
                raise CheckpointError(f"state dict does not fit architecture {arch}: missing "
                                      f"{missing[:5]}, unexpected {extra[:5]}")
            try:
                if choice is None:
                    module.load_state_dict(parts[sub])
                else:
                    module.load_sub_state(choice[0], parts[sub], choice[1])
            except (RuntimeError, ValueError) as exc:
                raise CheckpointError(f"state dict does not fit architecture {arch}: "
                                      f"{state_dict_detail(exc)}") from None

    # ------------------------------------------------------------ summary
    def num_params_total(self) -> int:
        """Parameters of all ops, stem and head (BN buffers not counted)."""
        return sum(p.numel() for p in self.parameters())

    def __repr__(self) -> str:
        s = self.space
        n_stem = sum(len(e.allowed) for e in s.stem_edges)
        n_br = sum(len(b.allowed) for b in s.branch_edges)
        sharing = "".join(f", {n}=True" for n in ("kernel_sharing", "width_sharing") if getattr(self, n))
        return (f"Supernet(space={s.name!r}{sharing}, stem_edges={s.num_edges} ({n_stem} ops), "
                f"branch_edges={len(s.branch_edges)} ({n_br} ops), params={self.num_params_total():,}, "
                f"active={str(self._active) if self._active else None})")
