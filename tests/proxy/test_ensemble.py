"""Ensemble search (stnas.proxy.ensemble): several supernets of one space, trained on the same data,
score every architecture by the mean of their scores; members that would not compare are
refused before any weights load."""


import numpy as np
import pytest

from stnas.core import dist
from stnas.core.errors import ConfigError
from stnas.pipeline.config import load_run_config, resolve
from stnas.pipeline.search import proxy_for_run
from stnas.pipeline.supernet import train_supernet
from stnas.proxy.ensemble import EnsembleScorer
from stnas.search.history import read_search
from stnas.space.catalog import load_space

from conftest import TRAINED_OVERRIDES, run_cli


def _train(root, *over):
    train_supernet(resolve("digits", overrides=TRAINED_OVERRIDES + list(over)), root, ctx=dist.Context())
    return root


@pytest.fixture(scope="module")
def replicate(tmp_path_factory):
    """A replicate of the trained run: another training seed, the same data (split seed 0)."""
    return _train(tmp_path_factory.mktemp("replicate") / "run", "seed=1", "data.split_seed=0")


def _archs(n=5, seed=11):
    space = load_space("digits")
    rng = np.random.default_rng(seed)
    return list(dict.fromkeys(str(space.sample(rng)) for _ in range(n)))


def test_the_ensemble_scores_by_the_members_mean(trained_copy, replicate):
    archs = _archs()
    scorer = EnsembleScorer([proxy_for_run(trained_copy), proxy_for_run(replicate)])
    got = scorer.score(archs)
    a, b = proxy_for_run(trained_copy).score(archs), proxy_for_run(replicate).score(archs)  # fresh: from the caches
    for g, x, y in zip(got, a, b, strict=True):
        assert g.arch == x.arch == y.arch
        assert g.score == pytest.approx((x.score + y.score) / 2)
        assert g.std == pytest.approx(abs(x.score - y.score) / np.sqrt(2))
        assert g.per_sample == x.per_sample + y.per_sample
        assert g.loss == pytest.approx((x.loss + y.loss) / 2) and g.top1 == pytest.approx((x.top1 + y.top1) / 2)
    assert any(x.score != y.score for x, y in zip(a, b))  # the replicate is another supernet
    assert scorer.settings["ensemble"] == [str(trained_copy), str(replicate)] and scorer.settings["data_seed"] == 0
    one = scorer.score(archs, samples=1)
    assert [len(s.per_sample) for s in one] == [2] * len(archs)


def test_members_that_would_not_compare_are_refused(trained_copy, replicate, tmp_path):
    with pytest.raises(ConfigError, match="two or more"):
        EnsembleScorer([proxy_for_run(trained_copy)])
    other_data = _train(tmp_path / "s1", "seed=1")  # seed 1 splits the data its own way
    with pytest.raises(ConfigError, match="data split"):
        EnsembleScorer([proxy_for_run(trained_copy), proxy_for_run(other_data)])
    cfg = load_run_config(replicate)
    cfg["proxy"]["recal_batches"] = 1
    with pytest.raises(ConfigError, match="recal_batches"):
        EnsembleScorer([proxy_for_run(trained_copy), proxy_for_run(replicate, cfg=cfg)])
    cfg = load_run_config(replicate)
    cfg["proxy"]["metric"] = "top1" if cfg["proxy"]["metric"] == "loss" else "loss"
    with pytest.raises(ConfigError, match="metric"):
        EnsembleScorer([proxy_for_run(trained_copy), proxy_for_run(replicate, cfg=cfg)])


def test_cli_ensemble_search_and_its_refusals(trained_copy, replicate, tmp_path):
    out = tmp_path / "ens"
    args = ["--algorithm", "random", "--budget", "300k", "--out", out, "search.random_samples=5",
            "search.population=5"]
    res = run_cli(["search", trained_copy, "--ensemble", replicate, *args])
    assert res.returncode == 0, res.stderr
    summary = read_search(out, "summary")
    assert summary["proxy_settings"]["ensemble"] == [str(trained_copy), str(replicate)]
    history = read_search(out, "history")
    assert len(history) == 5
    for rec in history:
        want = np.mean([proxy_for_run(r).score([rec["arch"]])[0].score for r in (trained_copy, replicate)])
        assert rec["score"] == pytest.approx(want)
    for bad, msg in (([replicate, "--few-shot", replicate], "do not combine"),
                     ([trained_copy], "named twice")):
        r = run_cli(["search", trained_copy, "--ensemble", *bad, "--out", tmp_path / "bad", "--budget", "300k"])
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and msg in r.stderr, r.stderr
    other = _train(tmp_path / "s2", "seed=2")
    r = run_cli(["search", trained_copy, "--ensemble", other, "--out", tmp_path / "bad", "--budget", "300k"])
    assert r.returncode == 2 and "data split" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
