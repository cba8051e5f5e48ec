"""The config seam (stnas.pipeline.settings) and the one search stage (stnas.pipeline.search)."""

import json

import pytest

from stnas.core.errors import ConfigError
from stnas.data.datasets import DataSpec
from stnas.pipeline.config import resolve, user_layers
from stnas.pipeline.search import proxy_for_run, search_config, search_trained
from stnas.pipeline.settings import data_spec, proxy_settings, sharing
from stnas.proxy.scorer import Proxy, ProxySettings


def test_the_config_becomes_explicit_settings():
    cfg = resolve("digits", overrides=["seed=3", "data.split_seed=1", "data.val_limit=100", "data.limit=500",
                                       "data.workers=1", "data.image_size=16", "data.val_fraction=0.25",
                                       "proxy.recal_batches=5", "proxy.batch_size=32", "proxy.samples=2",
                                       "proxy.metric=top1", "proxy.mode=averaged", "supernet.kernel_sharing=false"])
    assert data_spec(cfg) == DataSpec("digits", seed=3, root=None, image_size=16, val_fraction=0.25, limit=500,
                                      val_limit=100, split_seed=1, workers=1)
    assert data_spec(cfg).data_seed == 1
    assert data_spec(resolve("digits", overrides=["seed=3"])).data_seed == 3  # no split seed: the seed splits
    assert proxy_settings(cfg) == ProxySettings(mode="averaged", metric="top1", recal_batches=5, batch_size=32,
                                                samples=2)
    assert proxy_settings(cfg, "single").mode == "single"
    assert sharing(cfg) == {"kernel_sharing": False, "width_sharing": True}  # the digits preset shares widths


@pytest.fixture(scope="module")
def searched(trained_copy, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "s"
    layers = user_layers(overrides=["search.budgets=[300k]", "search.population=4", "search.generations=2",
                                    "search.parents=2", "proxy.mode=single"])
    return trained_copy, layers, out, search_trained(trained_copy, layers, out_dir=out, seed=5)


def test_stnas_search_records_the_run_and_the_proxy(searched):
    run, layers, out, done = searched
    summary = json.loads((out / "search.json").read_text())
    assert summary["run_dir"] == str(run) and summary["seed"] == 5 and summary["done"] is True
    assert (done.mode, done.metric) == ("single", "top1") and done.latency is False
    proxy = proxy_for_run(run, search_config(run, layers))
    assert summary["proxy_mode"] == "single" and summary["proxy_settings"] == proxy.settings
    assert done.result.history and len(done.result.history) == summary["evaluations"]


def test_a_rerun_replays_from_the_cache(searched, monkeypatch):
    run, layers, out, done = searched

    def boom(*a, **k):
        raise AssertionError("evaluated although cached")

    monkeypatch.setattr(Proxy, "evaluate_arch", boom)
    again = search_trained(run, layers, out_dir=out, seed=5)
    assert [(r.arch, r.score) for r in again.result.history] == [(r.arch, r.score) for r in done.result.history]


def test_only_scoring_settings_may_change(searched):
    run, _, out, _ = searched
    with pytest.raises(ConfigError, match="cannot change after supernet training"):
        search_trained(run, user_layers(overrides=["supernet.lr=0.5"]), out_dir=out)
    with pytest.raises(ConfigError, match="do not combine"):
        search_trained(run, few_shot=run, ensemble=[run], out_dir=out)
