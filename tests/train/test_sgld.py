"""SGLD / SGHMC: noise law, reproducibility, resume, SGD equivalence and the stationary law."""

import copy
import io
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from stnas.core.errors import ConfigError
from stnas.train.sgld import SGLD, noise_seed

ALPHA = 1e-4  # significance level of every statistical test in this file


def _zero_grad_step(opt, params):
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()


def _check_normal_sample(x: torch.Tensor, var: float):
    """Two-sided z-test on the mean and chi-square test on the variance, each at ALPHA."""
    x = x.double().flatten()
    n = x.numel()
    z = scipy.stats.norm.ppf(1 - ALPHA / 2)
    assert abs(x.mean().item()) <= z * math.sqrt(var / n)
    s2 = x.var(unbiased=True).item()
    lo, hi = scipy.stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], df=n - 1) / (n - 1)
    assert lo * var <= s2 <= hi * var, (s2 / var, lo, hi)


@pytest.mark.parametrize("kw, expected_var", [
    (dict(lr=0.1, temperature=1.0, num_data=1000), 2 * 0.1 * 1.0 / 1000),
    (dict(lr=0.05, temperature=0.25, num_data=50), 2 * 0.05 * 0.25 / 50),
    (dict(lr=0.2, noise_scale=3e-3, num_data=7), 0.2 * 3e-3),  # noise_scale replaces 2T/N
    (dict(lr=0.1, momentum=0.9, temperature=1.0, num_data=100), (1 - 0.9) * 2 * 0.1 / 100),
])
def test_step_noise_has_the_stated_law(kw, expected_var):
    p = torch.nn.Parameter(torch.randn(400_000, generator=torch.Generator().manual_seed(1)))
    before = p.detach().clone()
    opt = SGLD([p], seed=3, **kw)
    _zero_grad_step(opt, [p])
    _check_normal_sample(p.detach() - before, expected_var)


def test_noise_variance_follows_the_scheduled_lr():
    p = torch.nn.Parameter(torch.zeros(300_000))
    opt = SGLD([p], lr=1.0, temperature=1.0, num_data=10, seed=0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.01 if t >= 1 else 1.0)
    _zero_grad_step(opt, [p])
    sched.step()
    before = p.detach().clone()
    _zero_grad_step(opt, [p])
    _check_normal_sample(p.detach() - before, 2 * 0.01 * 1.0 / 10)


def _noise_of(seed, steps, shape=(64,)):
    p = torch.nn.Parameter(torch.zeros(shape))
    opt = SGLD([p], lr=0.1, num_data=10, seed=seed)
    deltas = []
    for _ in range(steps):
        before = p.detach().clone()
        _zero_grad_step(opt, [p])
        deltas.append(p.detach() - before)
    return deltas


def test_same_seed_and_step_give_identical_noise_different_steps_do_not():
    a, b = _noise_of(5, 3), _noise_of(5, 3)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])
    c = _noise_of(6, 1)
    assert not torch.equal(a[0], c[0])


def test_noise_seed_is_a_pure_function():
    assert noise_seed(1, 2, 3) == noise_seed(1, 2, 3)
    seeds = {noise_seed(s, t, i) for s in range(3) for t in range(20) for i in range(20)}
    assert len(seeds) == 3 * 20 * 20
    assert all(0 <= s < 2**63 for s in seeds)


def test_params_without_grad_are_untouched_and_do_not_shift_others_noise():
    def run(first_has_grad):
        torch.manual_seed(0)
        a, b = torch.nn.Parameter(torch.ones(10)), torch.nn.Parameter(torch.ones(10))
        opt = SGLD([a, b], lr=0.1, momentum=0.5, weight_decay=0.1, num_data=10, seed=1)
        a.grad = torch.ones(10) if first_has_grad else None
        b.grad = torch.ones(10)
        opt.step()
        return a.detach().clone(), b.detach().clone(), opt

    a0, b0, opt0 = run(False)
    assert torch.equal(a0, torch.ones(10))
    assert "momentum_buffer" not in opt0.state[opt0.param_groups[0]["params"][0]]
    a1, b1, _ = run(True)
    assert not torch.equal(a1, torch.ones(10))
    assert torch.equal(b0, b1)


def _tiny_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    return model, x, y


def _train(model, opt, sched, x, y, steps):
    for i in range(steps):
        opt.zero_grad()
        lo, hi = (i * 8) % 32, (i * 8) % 32 + 8
        torch.nn.functional.cross_entropy(model(x[lo:hi]), y[lo:hi]).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.9, 5e-3), (0.0, 1e-2)])
@pytest.mark.parametrize("off", [dict(noise=False, num_data=100), dict(temperature=0.0)])
def test_without_noise_it_is_torch_sgd(momentum, weight_decay, off):
    m1, x, y = _tiny_problem()
    m2 = copy.deepcopy(m1)
    o1 = torch.optim.SGD(m1.parameters(), lr=0.3, momentum=momentum, weight_decay=weight_decay)
    o2 = SGLD(m2.parameters(), lr=0.3, momentum=momentum, weight_decay=weight_decay, **off)
    s1 = torch.optim.lr_scheduler.CosineAnnealingLR(o1, T_max=25)
    s2 = torch.optim.lr_scheduler.CosineAnnealingLR(o2, T_max=25)
    _train(m1, o1, s1, x, y, 20)
    _train(m2, o2, s2, x, y, 20)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p2, p1, rtol=0, atol=1e-6)
    moved = sum((p - q).abs().sum().item() for p, q in zip(m1.parameters(), _tiny_problem()[0].parameters()))
    assert moved > 1e-2  # the comparison is not vacuous


@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_resume_from_state_dict_is_bitwise(momentum):
    def make(model):
        opt = SGLD(model.parameters(), lr=0.2, momentum=momentum, weight_decay=1e-3,
                   temperature=1.0, num_data=20, seed=11)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    model, x, y = _tiny_problem(1)
    opt, sched = make(model)
    _train(model, opt, sched, x, y, 5)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    _train(model, opt, sched, x, y, 6)
    expected = [p.detach().clone() for p in model.parameters()]

    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, _, _ = _tiny_problem(99)  # different starting weights, overwritten below
    model2.load_state_dict(saved["model"])
    opt2 = SGLD(model2.parameters(), lr=0.2, momentum=momentum, weight_decay=1e-3,
                temperature=1.0, num_data=20, seed=12345)  # the seed is restored from state
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=3, gamma=0.5)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert opt2.step_count == 5
    _train(model2, opt2, sched2, x, y, 6)
    for p, q in zip(model2.parameters(), expected):
        assert torch.equal(p, q)


def test_state_dict_is_a_snapshot_not_a_live_view():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = SGLD([p], lr=0.1, num_data=10)
    sd = opt.state_dict()
    _zero_grad_step(opt, [p])
    assert sd["state"]["sgld"]["step"] == 0 and opt.step_count == 1


def _linear_chain_var(a, beta, q, steps=None):
    """Var(θ) of the linear recursion v' = βv − aθ + ξ, θ' = θ + v' (Var ξ = q), started at
    θ = v = 0: after ``steps`` steps, or stationary (discrete Lyapunov equation) when None.
    Independent of the optimizer code."""
    A = np.array([[1 - a, beta], [-a, beta]])
    Q = q * np.ones((2, 2))
    if steps is None:
        return scipy.linalg.solve_discrete_lyapunov(A, Q)[0, 0]
    S = np.zeros((2, 2))
    for _ in range(steps):
        S = A @ S @ A.T + Q
    return S[0, 0]


@pytest.mark.parametrize("momentum, a, steps", [(0.0, 0.02, 450), (0.9, 0.01, 250)])
def test_long_run_law_on_a_gaussian_target(momentum, a, steps):
    """Target p(θ) ∝ exp(−θ²/(2σ²)) written as a mean loss L = θ²/(2σ²N); at temperature T
    the sampler's stationary variance must be T·σ². Each element of a large tensor is an
    independent chain, so the final values are iid draws from the chain's marginal law."""
    torch.manual_seed(0)
    sigma2, T, N, n = 4.0, 0.5, 1000, 100_000
    lr = a * sigma2 * N  # a = lr / (σ² N): the per-step contraction
    theta = torch.nn.Parameter(torch.zeros(n))
    opt = SGLD([theta], lr=lr, momentum=momentum, temperature=T, num_data=N, seed=2)
    for _ in range(steps):
        opt.zero_grad()
        (theta.pow(2).sum() / (2 * sigma2 * N)).backward()
        opt.step()
    target = T * sigma2
    q = 2 * (1 - momentum) * a  # Var ξ / (T σ²)
    stationary = target * _linear_chain_var(a, momentum, q)
    at_t = target * _linear_chain_var(a, momentum, q, steps)
    assert abs(stationary / target - 1) < 0.011  # discretisation bias of this step size
    assert abs(at_t / stationary - 1) < 2e-4  # the chains have forgotten θ = 0
    _check_normal_sample(theta.detach(), at_t)
    assert abs(theta.detach().var().item() / target - 1) < 0.03


@pytest.mark.parametrize("kw", [dict(lr=-1.0, num_data=10), dict(lr=0.1, momentum=1.0, num_data=10),
                                dict(lr=0.1, temperature=-1.0, num_data=10), dict(lr=0.1),
                                dict(lr=0.1, num_data=0), dict(lr=0.1, noise_scale=-1.0)])
def test_bad_settings_are_config_errors(kw):
    with pytest.raises(ConfigError, match="SGLD"):
        SGLD([torch.nn.Parameter(torch.zeros(2))], **kw)


def test_noise_free_settings_need_no_dataset_size():
    for kw in (dict(noise=False), dict(temperature=0.0), dict(noise_scale=1e-3)):
        SGLD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, **kw)
