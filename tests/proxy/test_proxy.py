"""The share-parameter proxy: modes, BN recalibration, the resumable cache, torchrun, and the
rank/stability commands on a real (tiny) trained run."""

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from stnas.cli import main
from stnas.core.errors import ConfigError
from stnas.core.rundir import CACHE
from stnas.core.verified import read_json
from stnas.core.weights import save_weights
from stnas.data.datasets import DataSpec, dataset_split, make_loader
from stnas.nn.supernet import Supernet
from stnas.pipeline.config import resolve
from stnas.pipeline.report import write_report
from stnas.pipeline.search import proxy_for_run
from stnas.proxy.modes import PROXY_METRICS, PROXY_MODES
from stnas.proxy.scorer import Proxy, ProxySettings
from stnas.space.catalog import load_space

from conftest import TRAINED_OVERRIDES

OVERRIDES = TRAINED_OVERRIDES


@pytest.fixture
def trained(trained_run):
    """The shared tiny digits run (conftest), never modified by the tests."""
    return trained_run


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run (tests write caches and corrupt files)."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture(scope="module")
def archs():
    space = load_space("digits")
    rng = np.random.default_rng(7)
    return list(dict.fromkeys(space.sample(rng) for _ in range(6)))


def cache_records(run):
    return [json.loads(line) for line in (run / CACHE).read_text().splitlines() if line.strip()]


def reference_top1(run, state, arch, recal_batches=2, with_loss=False):
    """Top-1 (and, ``with_loss``, the mean cross-entropy) written out by hand: the recipe of
    the proxy's docstring, independently of it."""
    cfg = resolve("digits", overrides=OVERRIDES)
    space = load_space("digits")
    sn = Supernet.fitting(space, state)  # the run's layout (the preset shares kernels and widths)
    sn.load_state_dict(state)
    net = sn.extract(arch).to(memory_format=torch.channels_last)  # the layout the proxy uses
    data = DataSpec("digits", seed=cfg["seed"], val_limit=cfg["data"]["val_limit"])
    train = dataset_split(data, space, "search-train", augment=False)
    val = dataset_split(data, space, "search-val", data.val_limit)
    with torch.no_grad():
        if recal_batches:
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            net.train()
            for x, _ in itertools.islice(make_loader(train, 64, train=True, seed=cfg["seed"], drop_last=False),
                                         recal_batches):
                net(x)
        net.eval()
        xs, ys = zip(*[val[i] for i in range(len(val))])
        logits = net(torch.stack(xs).contiguous(memory_format=torch.channels_last))
    top1 = (logits.argmax(1) == torch.tensor(ys)).sum().item() / len(ys)
    return (top1, nn.functional.cross_entropy(logits, torch.tensor(ys)).item()) if with_loss else top1


def test_stabilized_is_mean_over_samples(run, archs):
    proxy = proxy_for_run(run, mode="stabilized")
    scores = proxy.score(archs)
    assert [s.arch for s in scores] == [str(a) for a in archs]
    per_sample_ref = [proxy.pool.load(k) for k in range(2)]
    for s in scores:
        assert len(s.per_sample) == 2 and all(0 <= v <= 1 for v in s.per_sample)
        assert s.score == pytest.approx(statistics.mean(s.per_sample), abs=1e-12)
        assert s.std == pytest.approx(statistics.stdev(s.per_sample), abs=1e-12)
    # each per-sample value is the architecture's accuracy under that sample, by a hand-written recipe
    for k in range(2):
        assert scores[0].per_sample[k] == pytest.approx(reference_top1(run, per_sample_ref[k], archs[0]), abs=1e-9)
    # the first K samples only
    cfg = resolve("digits", overrides=OVERRIDES + ["proxy.samples=1"])
    one = proxy_for_run(run, cfg, mode="stabilized").score(archs)
    assert [s.per_sample for s in one] == [s.per_sample[:1] for s in scores]
    assert all(s.std == 0 for s in one)


def test_single_and_averaged_use_their_own_weights(run, archs):
    proxy = proxy_for_run(run, mode="single")
    single = proxy.score(archs)
    averaged = proxy.score(archs, mode="averaged")
    assert all(s.std == 0 and len(s.per_sample) == 1 for s in single + averaged)
    assert [s.loss for s in single] != [s.loss for s in averaged]
    final = load_file(run / "supernet.safetensors")
    assert single[1].score == pytest.approx(reference_top1(run, final, archs[1]), abs=1e-9)
    avg = proxy.pool.average()
    assert averaged[1].score == pytest.approx(reference_top1(run, avg, archs[1]), abs=1e-9)
    # evaluate_weights with the final weights agrees with single mode
    again = proxy.evaluate_weights(final, archs)
    assert [(s.score, s.loss) for s in again] == [(s.score, s.loss) for s in single]


def test_bn_recalibration_replaces_inherited_statistics(trained, tmp_path, archs):
    clean, bad = (Path(shutil.copytree(trained, tmp_path / n)) for n in ("clean", "bad"))
    state = load_file(bad / "supernet.safetensors")
    n_bn = 0
    for k, t in state.items():
        if k.endswith("running_mean"):
            state[k] = t + 3.0
            n_bn += 1
        elif k.endswith("running_var"):
            state[k] = t * 50.0
    assert n_bn > 10
    save_weights(state, bad / "supernet.safetensors")
    ref = proxy_for_run(clean, mode="single").score(archs)
    recal = proxy_for_run(bad, mode="single").score(archs)
    assert [(s.score, s.loss) for s in recal] == [(s.score, s.loss) for s in ref]  # corruption wiped out
    no_recal = resolve("digits", overrides=OVERRIDES + ["proxy.recal_batches=0"])
    inherited_bad = proxy_for_run(bad, no_recal, mode="single").score(archs)
    inherited_clean = proxy_for_run(clean, no_recal, mode="single").score(archs)
    assert [s.loss for s in inherited_bad] != [s.loss for s in ref]
    assert [s.loss for s in inherited_clean] != [s.loss for s in ref]  # recalibration changes the result
    assert [s.loss for s in inherited_bad] != [s.loss for s in inherited_clean]


def test_loss_metric_scores_minus_the_loss_from_the_same_evaluations(run, archs, monkeypatch):
    by_top1 = proxy_for_run(run, mode="stabilized").score(archs)
    cfg = resolve("digits", overrides=OVERRIDES + ["proxy.metric=loss"])

    def boom(*a, **k):
        raise AssertionError("evaluated although cached")

    with monkeypatch.context() as m:  # both metrics come from the same cached evaluations
        m.setattr(Proxy, "evaluate_arch", boom)
        by_loss = proxy_for_run(run, cfg, mode="stabilized").score(archs)
    cached = {(r["arch"], r["source"]): r for r in cache_records(run)}
    for t, s in zip(by_top1, by_loss, strict=True):
        assert s.arch == t.arch and s.top1 == pytest.approx(t.score, abs=1e-12) and s.loss == t.loss
        assert s.per_sample == [-cached[(s.arch, f"pool:{k}")]["loss"] for k in range(2)]
        assert s.score == pytest.approx(-s.loss, abs=1e-9)
        assert s.std == pytest.approx(statistics.stdev(s.per_sample), abs=1e-12)
    # the loss itself, by the hand-written recipe (mean cross-entropy over search-val)
    top1, loss = reference_top1(run, proxy_for_run(run).pool.load(0), archs[0], with_loss=True)
    assert by_loss[0].per_sample[0] == pytest.approx(-loss, abs=1e-5)
    assert by_top1[0].per_sample[0] == pytest.approx(top1, abs=1e-9)
    with pytest.raises(ConfigError, match="proxy.metric"):
        resolve("digits", overrides=["proxy.metric=accuracy"])


def test_report_names_the_metric(tmp_path):
    for metric, text in (("top1", "top-1 on search-val"), ("loss", "minus the cross-entropy on search-val")):
        cfg = resolve("digits", overrides=[f"proxy.metric={metric}"])
        out = tmp_path / metric
        out.mkdir()
        report = write_report(out, [], cfg)
        assert report["proxy_metric"] == metric and f"({text};" in (out / "report.md").read_text()


def test_cache_answers_a_second_proxy_without_evaluating(run, archs, monkeypatch):
    first = proxy_for_run(run, mode="stabilized")
    scores = first.score(archs)
    assert first.evaluations == 2 * len(archs)
    recs = cache_records(run)
    assert len(recs) == 2 * len(archs)
    assert {r["source"] for r in recs} == {"pool:0", "pool:1"}

    def boom(*a, **k):
        raise AssertionError("evaluated although cached")

    with monkeypatch.context() as m:
        m.setattr(Proxy, "evaluate_arch", boom)
        second = proxy_for_run(run, mode="stabilized")
        assert second.score(archs) == scores
        assert second.score([str(a) for a in reversed(archs)]) == scores[::-1]
    assert len(cache_records(run)) == len(recs)
    # other settings: the stale entries are ignored, not reused
    cfg = resolve("digits", overrides=OVERRIDES + ["proxy.recal_batches=3"])
    third = proxy_for_run(run, cfg, mode="stabilized")
    third.score(archs[:2])
    assert third.evaluations == 4
    assert len({r["key"] for r in cache_records(run)}) == 4  # 2 samples x 2 settings


def test_interrupted_scoring_resumes_without_duplicates(run, trained, tmp_path, archs, monkeypatch):
    expected = proxy_for_run(Path(shutil.copytree(trained, tmp_path / "ref")), mode="stabilized").score(archs)
    original, calls = Proxy.evaluate_arch, []

    def dies_after_five(self, net, arch):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(arch)
        return original(self, net, arch)

    with monkeypatch.context() as m:
        m.setattr(Proxy, "evaluate_arch", dies_after_five)
        with pytest.raises(KeyboardInterrupt):
            proxy_for_run(run, mode="stabilized").score(archs)
    assert len(cache_records(run)) == 5
    with open(run / CACHE, "a") as f:  # a record cut short by the kill
        f.write('{"arch": "digits:01')
    resumed = proxy_for_run(run, mode="stabilized")
    assert resumed.score(archs) == expected
    assert resumed.evaluations == 2 * len(archs) - 5
    keys = [(r["arch"], r["source"], r["key"]) for r in cache_records_tolerant(run)]
    assert len(keys) == len(set(keys)) == 2 * len(archs)


def cache_records_tolerant(run):
    out = []
    for line in (run / CACHE).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def test_missing_pieces_are_clear_errors(run, archs):
    from stnas.core.errors import ArchError, CheckpointError

    with pytest.raises(ArchError, match="belongs to space"):
        proxy_for_run(run, mode="single").score([load_space("fashion-mnist").sample(np.random.default_rng(0))])
    (run / "supernet.safetensors").unlink()
    with pytest.raises(CheckpointError, match="stnas supernet train"):
        proxy_for_run(run, mode="single")
    shutil.rmtree(run / "pool")
    with pytest.raises(CheckpointError, match="pool"):
        proxy_for_run(run, mode="stabilized")


@pytest.mark.slow
def test_torchrun_two_ranks_give_the_same_scores(run, trained, tmp_path, archs):
    worker = str(Path(__file__).with_name("proxy_dist_worker.py"))
    out = tmp_path / "scores.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        worker, str(run), str(out)] + [str(a) for a in archs],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(out.read_text())
    one = proxy_for_run(Path(shutil.copytree(trained, tmp_path / "one")), mode="stabilized")
    ref = one.score(archs)
    for g, r in zip(got["stabilized"], ref):
        assert g["arch"] == r.arch
        assert g["score"] == pytest.approx(r.score, abs=1e-6) and g["std"] == pytest.approx(r.std, abs=1e-6)
        assert g["loss"] == pytest.approx(r.loss, abs=1e-6)
    final = one.evaluate_weights(load_file(run / "supernet.safetensors"), archs)
    assert [g["loss"] for g in got["weights"]] == pytest.approx([s.loss for s in final], abs=1e-6)
    assert sorted(got["evaluations"]) == [len(archs), len(archs)]  # 2 sources x n archs, split in halves
    keys = [(r["arch"], r["source"], r["key"]) for r in cache_records(run)]
    assert len(keys) == len(set(keys)) == 2 * len(archs)  # rank 0 wrote every result once


def test_rank_and_stability_commands(run, archs, capsys):
    truth = run.parent / "truth.json"
    truth.write_text(json.dumps({"format": "stnas-truth", "version": 1,
                                 "results": [{"arch": str(a), "top1": 0.5 + 0.01 * i} for i, a in enumerate(archs)]}))
    assert main(["rank", str(run), "--truth", str(truth), "--n-boot", "50", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    assert all(m in out for m in ("single", "stabilized", "averaged")) and "Kendall" in out
    res = json.loads((run / "rank.json").read_text())
    assert set(res["modes"]) == {"single", "stabilized", "averaged"}
    for r in res["modes"].values():
        assert [s["arch"] for s in r["scores"]] == [str(a) for a in archs]
        assert -1 <= r["kendall_tau"]["value"] <= 1 and r["top_k"] == 3
    # the stabilized scores of the report are the proxy's (served from the cache it filled)
    st = proxy_for_run(run, mode="stabilized").score(archs)
    assert [s["score"] for s in res["modes"]["stabilized"]["scores"]] == [s.score for s in st]
    # a ranking of other inputs never replaces it: refused before scoring, in one line; the same
    # inputs rerun, and --out puts another ranking elsewhere
    saved = (run / "rank.json").read_bytes()
    for other in (["--top-k", "2"], ["--mode", "single"], ["proxy.recal_batches=1"]):
        assert main(["rank", str(run), "--truth", str(truth), "--n-boot", "50", "--top-k", "3", *other]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "holds a rank result made from other inputs" in err
    assert (run / "rank.json").read_bytes() == saved
    assert main(["rank", str(run), "--truth", str(truth), "--n-boot", "50", "--top-k", "3"]) == 0
    assert main(["rank", str(run), "--truth", str(truth), "--n-boot", "50", "--top-k", "2", "--mode", "single",
                 "--out", str(run.parent / "rank_single.json")]) == 0
    capsys.readouterr()
    assert json.loads((run.parent / "rank_single.json").read_text())["inputs"]["mode"] == "single"

    assert main(["stability", str(run), "-n", "4", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert read_json(run / "stability.json", "stability result") == res
    assert [p["from"] for p in res["epochs"]["pairs"]] == [1] and [p["to"] for p in res["epochs"]["pairs"]] == [2]
    assert len(res["pool_samples"]["pairs"]) == 1 and len(res["archs"]) == 4
    for part in ("epochs", "pool_samples", "pool_running_mean"):
        for p in res[part]["pairs"]:
            assert p["tau"] is None or -1 <= p["tau"] <= 1


def test_bn_recalibration_is_the_cumulative_average_by_hand():
    """``update_bn`` (what the proxy calls) gives the running statistics of the hand-written
    recipe: reset, momentum None, BN alone in train mode, one pass; dropout does not matter
    because it follows every BN."""
    import copy

    from torch.optim.swa_utils import update_bn

    space = load_space("cifar")  # its head has dropout
    arch = space.sample(np.random.default_rng(5))
    torch.manual_seed(0)
    net = Supernet(space).extract(arch)
    batches = [torch.randn(8, 3, 32, 32) for _ in range(3)]
    by_hand, by_lib = net, copy.deepcopy(net)
    bns = [m for m in by_hand.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and any(isinstance(m, nn.Dropout) for m in net.modules())
    with torch.no_grad():
        by_hand.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for x in batches:
            by_hand(x)
        by_hand.eval()
        by_lib.eval()
        update_bn(batches, by_lib)
    assert not by_lib.training
    for (name, a), b in zip(by_hand.state_dict().items(), by_lib.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_proxy_takes_explicit_settings_and_keeps_its_cache_key(run, archs):
    space = load_space("digits")
    settings = ProxySettings(mode="single", metric="top1", recal_batches=2, batch_size=64, samples=None)
    data = DataSpec("digits", seed=0, limit=384, val_limit=120)
    proxy = Proxy(run, space, settings, data, kernel_sharing=True, width_sharing=True, channels_last=True)
    # the fingerprint of the settings in proxy_cache.jsonl, as caches written before the seam hold it
    assert proxy.settings == {"recal_batches": 2, "batch_size": 64, "seed": 0, "dataset": "digits", "val_limit": 120,
                              "val_fraction": None, "image_size": None, "amp": False, "space": space.fingerprint}
    scores = proxy.score(archs)
    from_config = proxy_for_run(run, mode="single")  # the run's config says the same: served from that cache
    assert from_config.settings == proxy.settings
    assert from_config.score(archs) == scores and from_config.evaluations == 0
    split = Proxy(run, space, settings, DataSpec("digits", seed=0, val_limit=120, split_seed=0))
    assert split.settings == {**proxy.settings, "split_seed": 0}  # a split seed set explicitly is part of the key
    with pytest.raises(ConfigError, match="proxy mode must be one of"):
        Proxy(run, space, ProxySettings("best", "top1", 2, 64, None), data)


# ------------------------------------------------------------------ every proxy mode and metric
@pytest.mark.parametrize("mode", PROXY_MODES.names())
def test_every_proxy_mode_scores_under_its_own_weight_sources(run, archs, mode):
    entry = PROXY_MODES.get(mode)
    proxy = proxy_for_run(run, mode=mode)
    sources = entry.sources(proxy, None)
    assert len(sources) == (len(proxy.pool) if entry.per_sample else 1) == len({s.name for s in sources})
    score = proxy.score(archs[:1])[0]
    assert len(score.per_sample) == len(sources) and score.arch == str(archs[0])
    for value, source in zip(score.per_sample, sources):  # each by the hand-written recipe
        assert value == pytest.approx(reference_top1(run, source.load(), archs[0]), abs=1e-9)
    if entry.pool:  # where its weights come from: the pool, not the final weights
        assert source.load().keys() == proxy.pool.load(0).keys()
        (run / "supernet.safetensors").unlink()
        assert proxy_for_run(run, mode=mode).score(archs[:1]) == [score]
    else:
        shutil.rmtree(run / "pool")
        assert proxy_for_run(run, mode=mode).score(archs[:1]) == [score]


@pytest.mark.parametrize("metric", PROXY_METRICS.names())
def test_every_proxy_metric_is_higher_for_better_evaluations(run, archs, metric):
    f = PROXY_METRICS.get(metric)
    assert f(0.9, 1.0) >= f(0.5, 1.0) and f(0.5, 0.5) >= f(0.5, 1.0)
    assert f(0.9, 0.5) > f(0.5, 1.0)
    cfg = resolve("digits", overrides=OVERRIDES + [f"proxy.metric={metric}"])
    s = proxy_for_run(run, cfg, mode="single").score(archs[:1])[0]
    top1, loss = reference_top1(run, load_file(run / "supernet.safetensors"), archs[0], with_loss=True)
    assert s.top1 == pytest.approx(top1, abs=1e-9) and s.loss == pytest.approx(loss, abs=1e-5)
    assert s.score == pytest.approx(f(top1, loss), abs=1e-5)


def test_an_unknown_proxy_mode_is_one_line_with_a_hint(run):
    with pytest.raises(ConfigError, match="did you mean 'averaged'") as info:
        proxy_for_run(run, mode="average")
    assert "\n" not in str(info.value)
