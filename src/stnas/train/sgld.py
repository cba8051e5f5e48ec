"""Stochastic Gradient Langevin Dynamics (SGLD) and its momentum form (SGHMC).

Update per parameter θ with learning rate η_t (``group["lr"]``, changed by LR schedulers
as usual), weight decay λ, temperature T and training-set size N, where L is the *mean*
loss over a batch (the usual PyTorch loss)::

    d = ∇L(θ) + λθ
    θ ← θ − η_t d + ξ,                ξ ~ N(0, 2 η_t T / N)            (momentum = 0)

This is Welling & Teh (2011) with step ε = 2η/N on the total negative log posterior
U = N·L; it samples p(θ) ∝ exp(−N L(θ) / T) as η → 0. An explicit ``noise_scale`` s
replaces 2T/N (variance η_t·s).

Momentum β > 0 gives SGHMC (Chen, Fox & Guestrin 2014, eq. 15): with friction α = 1 − β
and learning rate η/N on U, their update ``v ← (1−α) v − (η/N) ∇U + N(0, 2(α − β̂)(η/N)T)``
becomes, in our units and with the gradient-noise estimate β̂ taken as 0,
``v ← β v − η d + ξ``, ``ξ ~ N(0, 2 (1−β) η T / N)``, ``θ ← θ + v``. The noise variance
carries the friction factor (1−β): that is what keeps the stationary distribution at
exp(−N L / T) (without it the chain is 1/(1−β) times too hot). With ``noise_scale`` s the
variance is (1−β)·η·s.

The momentum buffer is stored in ``torch.optim.SGD``'s convention (gradient units,
``buf ← β buf + d``, ``θ ← θ − η buf``, so v = −η buf); the noise enters it as ``−ξ/η``.
With a constant learning rate this is exactly the SGHMC recursion above, and with the
noise off (``noise=False`` or ``temperature=0``) the optimizer is ``torch.optim.SGD``
(momentum, weight decay, no dampening, no Nesterov) step for step, schedulers included.

Noise is reproducible and identical across the processes of a distributed run: the noise
of the parameter at position i (counting through all param groups in order) at step t is
drawn from a ``torch.Generator`` on the parameter's device seeded with a hash of
(seed, t, i). The step counter lives in the optimizer state, so ``state_dict`` /
``load_state_dict`` resume the noise stream exactly. Gradients must already be averaged
across processes (DDP does this) so that every process takes the same step.

Parameters whose ``.grad`` is None are skipped entirely: no decay, no momentum, no noise.
In single-path (SPOS) supernet training the ops that a step did not choose have no
gradient, and leaving them untouched keeps a diffusion from blowing up weights that the
loss does not see. Because the seed depends on the parameter's position, not on which
other parameters were updated, a parameter's noise does not depend on the chosen path.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Callable, Iterable

import torch

from stnas.core.errors import ConfigError
from stnas.core.limits import check_sgld_settings

_STATE_KEY = "sgld"


def noise_seed(seed: int, step: int, index: int) -> int:
    """The generator seed for parameter ``index`` at ``step``: a pure function (BLAKE2b)."""
    digest = hashlib.blake2b(struct.pack("<qqq", seed, step, index), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


class SGLD(torch.optim.Optimizer):
    """SGLD / SGHMC sampler with a reproducible, process-independent noise stream.

    Args:
        params: parameters or param groups, as for any torch optimizer.
        lr: learning rate η (scaled by LR schedulers through ``group["lr"]``).
        momentum: β in [0, 1); > 0 selects the SGHMC form (friction 1 − β).
        weight_decay: λ, an L2 term (a Gaussian prior) added to the gradient.
        temperature: T ≥ 0; 1 is the posterior, < 1 a cold posterior, 0 no noise.
        num_data: N, the training-set size; required for noise unless ``noise_scale``.
        noise_scale: s, replaces 2T/N when given (noise variance (1 − β)·η·s).
        noise: False turns the noise off (plain SGD with momentum, for comparison).
        seed: seeds the noise stream together with the step and parameter position.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, temperature: float = 1.0,
                 num_data: int | None = None, noise_scale: float | None = None,
                 noise: bool = True, seed: int = 0):
        check_sgld_settings(lr=lr, momentum=momentum, weight_decay=weight_decay, temperature=temperature,
                       noise_scale=noise_scale)
        if num_data is not None and int(num_data) < 1:
            raise ConfigError(f"SGLD: num_data must be a positive int, got {num_data}")
        if noise and noise_scale is None and temperature > 0 and num_data is None:
            raise ConfigError("SGLD: give num_data (the training-set size) or noise_scale, "
                              "or set noise=False / temperature=0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        temperature=temperature, num_data=num_data, noise_scale=noise_scale,
                        noise=noise)
        super().__init__(params, defaults)
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    @property
    def step_count(self) -> int:
        """Number of completed ``step()`` calls (restored by ``load_state_dict``)."""
        return int(self.state.get(_STATE_KEY, {}).get("step", 0))

    def state_dict(self) -> dict:
        sd = super().state_dict()
        sd["state"][_STATE_KEY] = {"step": self.step_count}  # a copy, not the live dict
        sd["sgld_seed"] = self.seed
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, and a ValueError when the seed or the step count is not an integer from 0
        to 2**63 - 1 (the noise stream packs both as signed 64-bit integers)."""
        state_dict = dict(state_dict)
        seed = state_dict.pop("sgld_seed", None)
        step = state_dict.get("state", {}).get(_STATE_KEY, {}).get("step", 0)
        for name, v in (("sgld_seed", seed), ("step", step)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63):
                raise ValueError(f"SGLD state: {name} must be an integer from 0 to 2**63 - 1, got {v!r:.40}")
        super().load_state_dict(state_dict)
        if seed is not None:
            self.seed = int(seed)

    @staticmethod
    def noise_variance(group: dict) -> float:
        """Per-element variance of the injected noise for ``group`` at its current lr."""
        if not group["noise"]:
            return 0.0
        if group["noise_scale"] is not None:
            s = float(group["noise_scale"])
        elif group["temperature"] == 0:
            return 0.0
        elif not group["num_data"]:
            raise ConfigError("SGLD: a param group has noise but neither num_data nor noise_scale")
        else:
            s = 2.0 * group["temperature"] / group["num_data"]
        return (1.0 - group["momentum"]) * group["lr"] * s

    def _generator(self, device: torch.device) -> torch.Generator:
        gen = self._generators.get(device)
        if gen is None:
            gen = self._generators[device] = torch.Generator(device=device)
        return gen

    def _noise(self, p: torch.Tensor, step: int, index: int, std: float) -> torch.Tensor:
        gen = self._generator(p.device)
        gen.manual_seed(noise_seed(self.seed, step, index))
        z = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
        return z.mul_(std)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        """Performs one update; returns the closure's loss if a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        t = self.step_count
        index = -1
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            var = self.noise_variance(group)
            std = math.sqrt(var) if var > 0 else 0.0
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("SGLD does not support sparse gradients")
                d = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                xi = self._noise(p, t, index, std) if std > 0 else None
                if beta == 0:
                    p.add_(d, alpha=-lr)
                    if xi is not None:
                        p.add_(xi)
                    continue
                pstate = self.state[p]
                buf = pstate.get("momentum_buffer")
                if buf is None:
                    buf = pstate["momentum_buffer"] = torch.clone(d).detach()
                else:
                    buf.mul_(beta).add_(d)
                if xi is not None and lr > 0:
                    buf.add_(xi, alpha=-1.0 / lr)  # so that θ's increment carries +ξ
                p.add_(buf, alpha=-lr)
        self.state[_STATE_KEY] = {"step": t + 1}  # replaced, never mutated: saved dicts stay valid
        return loss
