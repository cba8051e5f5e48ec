"""Every registered LR schedule, amp mode, channels_last mode and sampling-phase optimizer of a
training recipe, swept: a new entry is tested by being registered."""

import math
import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import ConfigError
from stnas.pipeline.config import DEFAULTS, resolve
from stnas.train.engine import param_groups
from stnas.train.recipe import AMP_MODES, CHANNELS_LAST, MAIN_OPTIMIZER, OPTIMIZERS, SCHEDULES, lr_at


@pytest.mark.parametrize("schedule", SCHEDULES.names())
@settings(max_examples=30, deadline=None)
@given(lr=st.floats(1e-3, 1.0), low=st.floats(0.0, 1e-3), warmup=st.floats(0.0, 2.0), epochs=st.integers(1, 6),
       spe=st.integers(1, 20), step_epochs=st.integers(1, 3))
def test_every_schedule_warms_up_then_stays_within_its_range(schedule, lr, low, warmup, epochs, spe, step_epochs):
    r = dict(DEFAULTS["supernet"], lr=lr, min_lr=low, warmup_epochs=warmup, schedule=schedule,
             step_epochs=step_epochs)
    main = epochs * spe
    lrs = [lr_at(s, r, spe, main) for s in range(main)]
    w = min(int(round(warmup * spe)), main - 1)
    assert lrs[:w] == pytest.approx([lr * (s + 1) / w for s in range(w)])  # the linear warmup, whatever follows
    assert all(0 < v <= lr + 1e-12 for v in lrs[:w])
    assert all(low - 1e-12 <= v <= lr + 1e-12 and math.isfinite(v) for v in lrs[w:])
    assert all(a >= b - 1e-12 for a, b in zip(lrs[w:], lrs[w + 1:]))  # never rises after the warmup


def test_an_unknown_schedule_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="supernet.schedule must be one of .*did you mean 'cosine'"):
        resolve("digits", overrides=["supernet.schedule=cosin"])


@pytest.mark.parametrize("mode", AMP_MODES.names())
def test_every_amp_mode_decides_per_device(mode):
    for device in ("cpu", "cuda"):
        assert AMP_MODES.get(mode)(device) in (True, False)
    resolve("digits", overrides=[f"supernet.amp='{mode}'", f"retrain.amp='{mode}'"])  # quoted: YAML's off is False


@pytest.mark.parametrize("mode", CHANNELS_LAST.names())
def test_every_channels_last_mode_is_a_flag_the_config_takes(mode):
    assert CHANNELS_LAST.get(mode) in (True, False)
    resolve("digits", overrides=[f"supernet.channels_last='{mode}'", f"retrain.channels_last='{mode}'"])


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_sampling_phase_optimizer_trains_a_model(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    recipe = dict(DEFAULTS["supernet"], optimizer=name)
    phase = types.SimpleNamespace(lr=0.05, sgld=dict(DEFAULTS["sgld"]))
    opt = OPTIMIZERS.get(name)(param_groups(model, recipe["weight_decay"]), recipe, phase, 100, 0)
    assert isinstance(opt, torch.optim.Optimizer)
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    resolve("digits", overrides=[f"supernet.optimizer={name}"])


def test_the_main_phase_optimizer_is_registered():
    assert MAIN_OPTIMIZER in OPTIMIZERS
