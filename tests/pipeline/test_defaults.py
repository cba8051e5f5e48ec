"""One set of tuned defaults (issue #38 item 1): the supernet, proxy and search settings the
measurements put first are the package defaults for every space, derived ones included, and
the two presets that stated them resolve to exactly what they resolved to before."""

import pytest

from stnas.pipeline.config import DEFAULTS, resolve

from synthdata import write_folder

_LATENCY = {"batch": 1, "device": "cpu", "fit_networks": 12, "measure": False, "repeats": 30, "rounds": 3,
            "runtime": "torch", "table": None, "threads": 1, "warmup": 10,
            "margin": "auto", "max_measured": 8}  # (issue 36: latency budgets kept on measurement)
_SGLD = {"momentum": 0.9, "noise_scale": None, "temperature": 1.0}
_RECIPE = {"amp": "auto", "channels_last": "auto", "grad_clip": 5.0, "label_smoothing": 0.1, "log_every": 10,
           "lr": 0.1, "momentum": 0.9, "nesterov": True, "progress": True, "schedule": "cosine", "step_epochs": 3,
           "weight_decay": 4e-05}
_SUPERNET = dict(_RECIPE, init=None, keep_epoch_weights=True, kernel_sharing=True, optimizer="sgld",
                 sampling="topology", split=None, warmup_epochs=0.5, width_sharing=True)
_SEARCH = {"algorithm": "evolution", "crossover": 0.5, "latency_budgets": None, "max_params": None, "min_madds": None,
           "mutation_prob": 0.1, "select": "best", "tie_alpha": 0.05, "top": 3}

# what resolve("digits") and resolve("fashion-mnist") gave on main (ea18cbc) before this change,
# written out by hand from its output
TODAY = {
    "digits": {
        "data": {"dataset": "digits", "image_size": None, "limit": None, "root": None, "split_seed": None,
                 "val_fraction": None, "val_limit": None, "workers": 0},
        "device": "auto", "latency": _LATENCY, "preset": "digits", "seed": 0, "sgld": _SGLD,
        "pool": {"epochs": 2, "extra_steps": 0, "lr": None, "samples": 4},
        "proxy": {"batch_size": 256, "metric": "loss", "mode": "stabilized", "recal_batches": 2, "samples": None},
        "retrain": dict(_RECIPE, batch_size=64, checkpoint_every=50, epochs=15, keep_epoch_weights=False, limit=None,
                        min_lr=0.0, warmup_epochs=1),
        "search": dict(_SEARCH, budget_floor=0.0, budgets=[200000, 300000], generations=4, parents=4, population=16,
                       random_samples=64, screen=None),
        "supernet": dict(_SUPERNET, batch_size=64, checkpoint_every=20, epochs=20, min_lr=0.01),
    },
    "fashion-mnist": {
        "data": {"dataset": "fashion-mnist", "image_size": None, "limit": 10000, "root": None, "split_seed": None,
                 "val_fraction": None, "val_limit": 1000, "workers": 0},
        "device": "auto", "latency": _LATENCY, "preset": "fashion-mnist", "seed": 0, "sgld": _SGLD,
        "pool": {"epochs": 3, "extra_steps": 0, "lr": None, "samples": 8},
        "proxy": {"batch_size": 250, "metric": "loss", "mode": "stabilized", "recal_batches": 2, "samples": None},
        "retrain": dict(_RECIPE, batch_size=128, checkpoint_every=200, epochs=3, keep_epoch_weights=False,
                        limit=15000, min_lr=0.0, warmup_epochs=0.2),
        "search": dict(_SEARCH, budget_floor=0.8, budgets=[4000000, 6000000], generations=6, parents=5,
                       population=20, random_samples=120, screen=0.2),
        "supernet": dict(_SUPERNET, batch_size=128, checkpoint_every=200, epochs=16, min_lr=0.005),
    },
}

TUNED = {("supernet", "kernel_sharing"): True, ("supernet", "width_sharing"): True, ("proxy", "metric"): "loss",
         ("proxy", "recal_batches"): 2, ("search", "screen"): 0.2, ("search", "population"): 20,
         ("search", "parents"): 5, ("search", "generations"): 6, ("search", "random_samples"): 120,
         ("search", "budget_floor"): 0.8}


@pytest.mark.parametrize("preset", sorted(TODAY))
def test_the_presets_resolve_as_before(preset):
    cfg = resolve(preset)
    assert cfg.pop("run") == {"time_budget": None}  # the new sections: stnas.pipeline.plan's
    assert cfg.pop("baselines")["enabled"] is None  # and stnas.pipeline.baselines' (on where retraining is small)
    assert cfg == TODAY[preset]


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist"])
def test_presets_state_only_what_differs(preset):
    from stnas.space.presets import read_preset

    data = read_preset(preset)
    same = [f"{sec}.{key}" for (sec, key), v in TUNED.items() if (data.get(sec) or {}).get(key, object()) == v]
    assert same == [], f"{preset} restates the defaults {same}"


def test_the_defaults_are_the_tuned_settings():
    assert {k: DEFAULTS[k[0]][k[1]] for k in TUNED} == TUNED


def test_a_derived_space_gets_the_tuned_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "imgs", split=False, classes=3, per_class=12, size=16, channels=3)
    cfg = resolve(None, flags={"data.dataset": str(folder)})
    assert cfg["preset"].startswith("auto-3x16-3c-")
    # all but the recalibration batches, which follow the data (stnas.pipeline.scaling): its
    # few search-train images (under one proxy batch) make one batch
    assert {k: cfg[k[0]][k[1]] for k in TUNED} == {**TUNED, ("proxy", "recal_batches"): 1}
