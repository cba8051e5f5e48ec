"""Every config value is checked before any work: the bad inputs of issue 17, each refused
with one line naming the key."""

import time

import pytest

from stnas.cli import main
from stnas.core.errors import ConfigError
from stnas.core.units import parse_count
from stnas.pipeline.config import resolve

BOMB = "a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n" \
       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nsearch: {budgets: [*e,*e,*e,*e]}\n"


@pytest.mark.parametrize("override, key", [
    ("supernet.lr=null", "supernet.lr"), ("supernet.lr=", "supernet.lr"), ("search.population=''", "population"),
    ("pool.lr=[0.1]", "pool.lr"), ("pool.lr=abc", "pool.lr"), ("sgld.noise_scale={a: 1}", "noise_scale"),
    ("pool.lr=.inf", "pool.lr"), ("pool.lr=-0.1", "pool.lr"), ("supernet.lr=.nan", "supernet.lr"),
    ("seed=" + "7" * 400, "seed"), ("seed=9223372036854775808", "seed"), ("seed=-1", "seed"),
    ("pool.extra_steps=-5", "pool.extra_steps"), ("preset=", "preset"), ("preset=''", "preset"),
    ("data.image_size=100000", "data.image_size"), ("search.budgets=[]", "search.budgets"),
    ("proxy.recal_batches=1e308", "proxy.recal_batches"), ("proxy.recal_batches=100000000", "recal_batches"),
    ("search.budgets=[[1]]", "search.budgets"), ("search.budgets=.inf", "search.budgets"),
    ("data.limit=" + "9" * 400, "data.limit"), ("data.root=[a]", "data.root"), ("device=cudaX", "device"),
    ("proxy.samples=99", "proxy.samples"), ("search.budgets=" + "[" * 100 + "]" * 100, "search.budgets"),
    ("latency.runtime=tflite", "latency.runtime"), ("latency.device=tpu", "latency.device"),
    ("latency.repeats=2", "latency.repeats"), ("latency.table=[a]", "latency.table"),
    ("search.latency_budgets=[5]", "latency_budgets"), ("search.latency_budgets=[-1ms]", "latency_budgets"),
])
def test_bad_value_is_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key) as err:
        resolve("digits", overrides=[override])
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    (tmp_path / "bomb.yaml").write_text(BOMB)
    t = time.perf_counter()
    with pytest.raises(ConfigError, match="too large") as err:
        resolve("digits", config_file=tmp_path / "bomb.yaml")
    assert time.perf_counter() - t < 5 and len(str(err.value)) < 300


def test_a_fifo_config_is_never_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="not a regular file"):
        resolve("digits", config_file=tmp_path / "c.yaml")


def test_nulls_where_null_means_something_are_kept():
    cfg = resolve("digits", overrides=["supernet.grad_clip=null", "pool.lr=null", "data.limit=null"])
    assert cfg["supernet"]["grad_clip"] is None and cfg["pool"]["lr"] is None and cfg["data"]["limit"] is None


@pytest.mark.parametrize("text, value", [("300M", 300_000_000), ("3.5M", 3_500_000), ("800k", 800_000), (7, 7)])
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("bad", ["1e400", "9" * 400, float("inf"), 0, -3, "0.5", "", [1]])
def test_parse_count_refuses(bad):
    with pytest.raises(ConfigError, match="not a count"):
        parse_count(bad, "x")


@pytest.mark.parametrize("argv, match", [
    (["--budget", "1"], "below the smallest architecture"),
    (["search.budgets=[]"], "search.budgets"),
    (["proxy.recal_batches=1e308"], "recal_batches"),
])
def test_run_checks_budgets_and_proxy_before_training(tmp_path, capsys, argv, match):
    out = tmp_path / "r"
    assert main(["run", "--preset", "digits", "--out", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not (out / "checkpoints").exists()


def test_out_pointing_at_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["supernet", "train", "--preset", "digits", "--data", "digits", "--out", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err and (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize("override, section, key", [("retrain.limit=null", "retrain", "limit"),
                                                     ("data.limit=null", "data", "limit"),
                                                     ("search.screen=null", "search", "screen")])
def test_null_restores_a_built_in_null_default_over_the_preset(override, section, key):
    # the fashion-mnist preset sets both limits and the screening share; null (all images,
    # no screening) must still be accepted
    from stnas.pipeline import checks as config_checks
    from stnas.pipeline import config
    assert config.resolve("fashion-mnist")[section][key] is not None
    cfg = config.resolve("fashion-mnist", overrides=[override])
    config_checks.validate(cfg)
    assert cfg[section][key] is None


def test_count_keys_take_counts_over_a_preset_number():
    from stnas.pipeline import config
    assert config.resolve("fashion-mnist", overrides=["retrain.limit=20k"])["retrain"]["limit"] == 20000
    with pytest.raises(config.ConfigError, match="supernet.epochs"):
        config.resolve("fashion-mnist", overrides=["supernet.epochs=null"])


@pytest.mark.parametrize("mode", ["fair", "sandwich"])
def test_the_fairness_sampling_modes_are_accepted(mode):
    from stnas.pipeline import checks as config_checks
    from stnas.pipeline import config
    cfg = config.resolve("digits", overrides=[f"supernet.sampling={mode}"])
    config_checks.validate(cfg)
    with pytest.raises(ConfigError, match="supernet.sampling"):
        config_checks.validate(config.resolve("digits", overrides=["supernet.sampling=fairest"]))
