"""Run configuration: layered resolution, key and value checks before any work."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import ConfigError
from stnas.pipeline.checks import check_search
from stnas.pipeline.config import DEFAULTS, resolve


def test_config_resolution_and_errors(tmp_path):
    cfg = resolve("digits", overrides=["supernet.lr=0.05", "pool.samples=3"])
    assert cfg["supernet"]["lr"] == 0.05 and cfg["pool"]["samples"] == 3
    assert cfg["supernet"]["epochs"] != DEFAULTS["supernet"]["epochs"]  # the preset's recipe applies
    user = tmp_path / "c.yaml"
    user.write_text("supernet:\n  epochs: 2\n")
    assert resolve("digits", user, {"supernet.epochs": 5})["supernet"]["epochs"] == 5
    for bad, msg in [(["supernet.lrr=1"], "did you mean supernet.lr"), (["supernet.lr=fast"], "number"),
                     (["supernet.optimizer=adam"], "sgd, sgld"), (["nokey"], "key=value"),
                     (["pool.epochs=99"], "pool.epochs")]:
        with pytest.raises(ConfigError, match=msg):
            resolve("digits", overrides=bad)
    user.write_text("supernet: [1, 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve("digits", user)


@pytest.mark.parametrize("override, msg", [
    # each used to pass resolution and fail hours later, or train with a nonsense value
    ("retrain.momentum=2", r"retrain.momentum must be in \[0, 1\)"),
    ("supernet.weight_decay=-1", "supernet.weight_decay must be >= 0"),
    ("retrain.label_smoothing=2", r"retrain.label_smoothing must be in \[0, 1\)"),
    ("retrain.warmup_epochs=-1", "retrain.warmup_epochs must be >= 0"),
    ("retrain.grad_clip=-1", "retrain.grad_clip must be > 0 or null"),
    ("supernet.min_lr=-0.1", "supernet.min_lr must be >= 0"),
    ("retrain.step_epochs=0", "retrain.step_epochs must be >= 1"),
    ("supernet.lr=.nan", "finite number"), ("retrain.lr=.inf", "finite number"),
    ("seed=-1", "seed must be >= 0"),
    ("data.split_seed=-2", "data.split_seed must be an integer >= 0"),
    ("data.split_seed=true", "data.split_seed must be an integer >= 0"),
    ("data.split_seed=1.5", "data.split_seed must be an integer >= 0"),
    ("data.workers=-1", "data.workers must be >= 0"),
    ("data.image_size=0", "data.image_size must be a positive integer"),
    ("data.image_size=big", "'data.image_size' must be a finite number"),
    ("data.val_limit=0", "data.val_limit"), ("data.limit=lots", "data.limit"),
    ("data.dataset=mnist", "data.dataset must be one of digits, fashion-mnist"),
    ("proxy.batch_size=0", "proxy.batch_size must be >= 1"),
    ("proxy.samples=0", "proxy.samples must be a positive integer"),
    ("sgld.temperature=-1", "SGLD: temperature must be >= 0"),
    ("sgld.momentum=1.5", r"SGLD: momentum must be in \[0, 1\)"),
    ("pool.lr=-1", r"pool.lr must be > 0 or null"),
])
def test_config_values_are_checked_before_any_work(override, msg):
    with pytest.raises(ConfigError, match=msg):
        resolve("digits", overrides=[override])


def test_config_counts_and_nulls_pass():
    cfg = resolve("digits", overrides=["data.limit=1k", "data.val_limit=200", "retrain.grad_clip=null",
                                       "proxy.samples=2", "data.image_size=16", "sgld.temperature=0"])
    assert cfg["data"]["limit"] == 1000 and cfg["data"]["val_limit"] == 200
    assert cfg["retrain"]["grad_clip"] is None and cfg["data"]["image_size"] == 16


def test_search_section_is_checked_and_its_counts_parsed():
    se = check_search(dict(DEFAULTS["search"], budgets=["3.5M", "800k"], min_madds="100k", max_params=None))
    assert se["budgets"] == [3_500_000, 800_000] and se["min_madds"] == 100_000 and se["max_params"] is None
    assert check_search(dict(DEFAULTS["search"], budgets="4M"))["budgets"] == [4_000_000]
    for change, msg in [({"budgets": []}, "search.budgets is empty"), ({"algorithm": "grid"}, "search.algorithm"),
                        ({"parents": 99}, "cannot exceed search.population"), ({"budgets": ["-3M"]}, "search.budgets")]:
        with pytest.raises(ConfigError, match=msg):
            check_search(dict(DEFAULTS["search"], **change))
    with pytest.raises(ConfigError, match="search.budgets is empty"):
        resolve("digits", overrides=["search.budgets=[]"])


def _cli_choices(command: list[str], flag: str) -> tuple:
    """The ``choices`` of ``flag`` of the CLI subcommand ``command``."""
    import argparse

    from stnas.cli import build_parser

    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return tuple(next(a for a in parser._actions if flag in a.option_strings).choices)


def test_cli_choices_are_the_configs():
    from stnas.pipeline.checks import CHOICES

    modes = CHOICES[("proxy", "mode")].names()
    assert modes == ("single", "stabilized", "averaged")
    assert _cli_choices(["search"], "--mode") == modes
    assert _cli_choices(["run"], "--mode") == modes
    assert _cli_choices(["rank"], "--mode") == (*modes, "all")
    assert _cli_choices(["search"], "--algorithm") == CHOICES[("search", "algorithm")].names()
    assert _cli_choices(["run"], "--optimizer") == CHOICES[("supernet", "optimizer")].names() == ("sgd", "sgld")
    assert _cli_choices(["supernet", "train"], "--optimizer") == CHOICES[("supernet", "optimizer")].names()
    assert _cli_choices(["space", "sample"], "--mode") == CHOICES[("supernet", "sampling")].names()
    assert _cli_choices(["latency", "build"], "--runtime") == CHOICES[("latency", "runtime")].names()


@given(st.integers(1, 999), st.integers(-9, 0), st.sampled_from(["e", "E"]), st.booleans())
@settings(max_examples=40, deadline=None)
def test_exponent_notation_is_a_number_in_overrides(mantissa, exponent, e, dot):
    # YAML 1.1 reads "1e-06" (no dot) as a string; the config takes it as the number it says
    text = f"{mantissa}{'.' if dot else ''}{e}{exponent}"
    assert resolve("digits", overrides=[f"supernet.lr={text}"])["supernet"]["lr"] == pytest.approx(
        mantissa * 10.0 ** exponent)


def test_exponent_notation_in_a_config_file_and_its_limits(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("supernet:\n  lr: 3e-4\n  epochs: 2e1\n")
    cfg = resolve("digits", config_file=f)
    assert cfg["supernet"]["lr"] == pytest.approx(3e-4) and cfg["supernet"]["epochs"] == 20
    assert isinstance(cfg["supernet"]["epochs"], int)
    for bad, msg in (("1e-4x", "finite number"), ("1e999", "finite number"), ("2.5e0", "integer")):
        key = "supernet.epochs" if bad == "2.5e0" else "supernet.lr"
        with pytest.raises(ConfigError, match=msg):
            resolve("digits", overrides=[f"{key}={bad}"])


def test_what_may_change_on_an_existing_run_names_real_config_keys():
    """The one table (config.ON_EXISTING_RUN): every key it names is a config key, and a step
    refuses any other change before any work."""
    from stnas.pipeline.config import DEFAULTS, ON_EXISTING_RUN, apply_layers

    for step, rules in ON_EXISTING_RUN.items():
        assert set(rules) <= {"keep", "change"} and rules, step
        for key in (k for keys in rules.values() for k in keys):
            node = DEFAULTS
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, (step, key)
                node = node[part]
    cfg = resolve("digits")
    allowed = ON_EXISTING_RUN["search"]["change"]
    assert apply_layers(cfg, [{"search": {"generations": 3}}], allowed=allowed)["search"]["generations"] == 3
    with pytest.raises(ConfigError, match="seed cannot change"):
        apply_layers(cfg, [{"seed": 5}], allowed=allowed, context="after supernet training")
