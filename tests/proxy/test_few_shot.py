"""Few-shot sub-supernets: ``supernet.split`` restricts the sampler to one side of a branch
edge, ``supernet.init`` starts from another run's weights (stnas.pipeline.supernet)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core import dist
from stnas.core.errors import CheckpointError, ConfigError, StnasError
from stnas.core.weights import load_weights
from stnas.nn.supernet import Supernet
from stnas.pipeline.config import resolve
from stnas.pipeline.supernet import initial_weights, sampler, train_supernet
from stnas.search.history import read_search
from stnas.space.catalog import load_space
from stnas.space.sampling import parse_split

from conftest import TRAINED_OVERRIDES


@pytest.mark.parametrize("mode", ["topology", "fair", "sandwich"])
def test_split_fixes_one_edge_and_leaves_the_rest_as_drawn(mode):
    space = load_space("fashion-mnist")
    edges = len(space.branch_edges)
    free = sampler(resolve("fashion-mnist", overrides=[f"supernet.sampling={mode}"]), space)
    for edge in (0, edges - 1):
        for side in ("off", "on"):
            cfg = resolve("fashion-mnist", overrides=[f"supernet.sampling={mode}", f"supernet.split={edge}:{side}"])
            draw = sampler(cfg, space)
            for step in range(60):
                a, b = draw(step), free(step)
                assert (a.branches[edge] >= 0) == (side == "on")
                if side == "on":
                    assert a.branches[edge] in space.branch_edges[edge].allowed
                assert a.stem == b.stem
                assert [o for j, o in enumerate(a.branches) if j != edge] == \
                       [o for j, o in enumerate(b.branches) if j != edge]
                if (b.branches[edge] >= 0) == (side == "on"):
                    assert a == b  # already on the right side: the draw is kept as it was
                assert draw(step) == a  # a pure function of the step


def test_split_on_draws_every_op_of_the_edge():
    space = load_space("fashion-mnist")
    draw = sampler(resolve("fashion-mnist", overrides=["supernet.split=2:on"]), space)
    seen = {draw(t).branches[2] for t in range(400)}
    assert seen == set(space.branch_edges[2].allowed)


@given(st.text(max_size=12))
@settings(max_examples=100, deadline=None)
def test_bad_split_text_is_a_config_error(text):
    import re

    m = re.fullmatch(r"\s*(\d{1,4})\s*:\s*(on|off)\s*", text)
    if m:
        assert parse_split(text) == (int(m.group(1)), m.group(2) == "on")
        return
    with pytest.raises(ConfigError, match="supernet.split"):
        parse_split(text)


@pytest.mark.parametrize("value", ["3", "on", "1:maybe", "-1:on", "[1, 2]", "1:on:2"])
def test_bad_split_in_a_config_names_the_key(value):
    with pytest.raises(ConfigError, match="supernet.split"):
        resolve("digits", overrides=[f"supernet.split={value}"])


def test_split_edge_out_of_range_is_refused_before_any_work(tmp_path):
    space = load_space("digits")
    n = len(space.branch_edges)
    cfg = resolve("digits", overrides=[f"supernet.split={n}:on"])
    with pytest.raises(ConfigError, match=f"has {n} branch edges"):
        sampler(cfg, space)
    with pytest.raises(ConfigError, match="branch edges"):
        train_supernet(cfg, tmp_path / "run", ctx=dist.Context())
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_init_loads_the_runs_weights_and_refuses_others(trained_run, tmp_path):
    space = load_space("digits")
    cfg = resolve("digits", overrides=[f"supernet.init={trained_run}"])
    state = initial_weights(cfg, space)
    want, _ = load_weights(trained_run / "supernet.safetensors")
    assert set(state) == set(want) and all(torch.equal(state[k], want[k]) for k in want)
    file_cfg = resolve("digits", overrides=[f"supernet.init={trained_run / 'supernet.safetensors'}"])
    assert all(torch.equal(initial_weights(file_cfg, space)[k], want[k]) for k in want)
    assert initial_weights(resolve("digits"), space) is None
    with pytest.raises(ConfigError, match="another space"):
        initial_weights(resolve("fashion-mnist", overrides=[f"supernet.init={trained_run}"]),
                        load_space("fashion-mnist"))
    with pytest.raises(CheckpointError):
        initial_weights(resolve("digits", overrides=[f"supernet.init={tmp_path}"]), space)


def test_a_split_child_trains_from_its_parent(trained_run, tmp_path):
    over = TRAINED_OVERRIDES + ["supernet.epochs=1", "supernet.lr=1e-6", "supernet.min_lr=1e-6",
                                "supernet.warmup_epochs=0", "pool.epochs=1", f"supernet.init={trained_run}",
                                "supernet.split=0:off", "supernet.weight_decay=0"]
    cfg = resolve("digits", overrides=over)
    train_supernet(cfg, tmp_path / "child", ctx=dist.Context())
    child, _ = load_weights(tmp_path / "child" / "supernet.safetensors")
    parent, _ = load_weights(trained_run / "supernet.safetensors")
    # a tiny learning rate: the child's conv weights stay next to the parent's, far from a fresh init
    w = [k for k in parent if k.endswith("weight") and parent[k].dim() == 4]
    gap = max(float((child[k] - parent[k]).abs().max()) for k in w)
    torch.manual_seed(0)
    new = Supernet.fitting(load_space("digits"), parent).state_dict()  # a fresh one of the same layout
    fresh = max(float((new[k] - parent[k]).abs().max()) for k in w)
    assert gap < 0.05 < fresh
    assert len(list((tmp_path / "child" / "pool").glob("sample_*.safetensors"))) == 2
    assert np.isfinite(float(child[w[0]].sum()))


@pytest.fixture(scope="module")
def children(trained_run, tmp_path_factory):
    """The two children of branch edge 1 of the trained run: [off run, on run]."""
    root = tmp_path_factory.mktemp("children")
    out = []
    for side in ("off", "on"):
        over = ["supernet.epochs=1", "pool.epochs=1", f"supernet.init={trained_run}", f"supernet.split=1:{side}"]
        train_supernet(resolve("digits", overrides=TRAINED_OVERRIDES + over), root / side, ctx=dist.Context())
        out.append(str(root / side))
    return out


def _both_sides(space, n=8, seed=3):
    rng = np.random.default_rng(seed)
    archs = sorted({str(space.sample(rng)) for _ in range(n)})
    on = [a for a in archs if space.arch(a).branches[1] >= 0]
    off = [a for a in archs if space.arch(a).branches[1] < 0]
    assert on and off
    return archs, off, on


@pytest.mark.research
def test_fidelity_routes_each_network_to_its_side(children, trained_run):
    from experiments import fidelity as fid

    space = load_space("digits")
    few = fid.parse_few_shot([f"fs=1:{children[0]},{children[1]}"], space)
    assert few == {"fs": (1, children[0], children[1])}
    archs, off, on = _both_sides(space)
    cells = fid.score_few_shot(1, children[0], children[1], archs, [1, 2], space)
    want_off, want_on = fid.score_run(children[0], off, [1, 2]), fid.score_run(children[1], on, [1, 2])
    for c in ("single/loss", "stabilized@2/top1", "averaged@2/loss"):
        assert cells[c] == {**want_off[c], **want_on[c]}
    for bad in (f"fs=1:{children[1]},{children[0]}", f"fs=0:{children[0]},{children[1]}",
                f"fs=1:{trained_run},{children[1]}", "fs=1:onlyone", "fs"):
        with pytest.raises(StnasError, match="--few-shot"):
            fid.parse_few_shot([bad], space)


def test_few_shot_scorer_scores_each_network_with_its_sides_child(children):
    from stnas.pipeline.search import check_children, proxy_for_run
    from stnas.proxy.few_shot import FewShotScorer

    space = load_space("digits")
    archs, off, on = _both_sides(space, n=10, seed=5)
    edge, sides = check_children(children[::-1])  # either order
    assert edge == 1 and [str(sides[False]), str(sides[True])] == children
    scorer = FewShotScorer({s: proxy_for_run(r) for s, r in sides.items()}, edge)
    got = scorer.score(archs[::-1])
    assert [g.arch for g in got] == archs[::-1]
    by_arch = {g.arch: g for g in got}
    for run, part in zip(children, (off, on)):
        for want in proxy_for_run(run).score(part):  # a fresh proxy: read from the cache the scorer wrote
            assert by_arch[want.arch].score == want.score and by_arch[want.arch].per_sample == want.per_sample
    one = scorer.score(archs, samples=1)
    assert all(len(s.per_sample) == 1 for s in one)
    assert {a: s.score for a, s in zip(archs, one)} == {a: by_arch[a].per_sample[0] for a in archs}
    assert scorer.settings["few_shot_edge"] == 1 and scorer.settings["children"]["on"] == children[1]
    from stnas.pipeline.config import load_run_config

    other = load_run_config(children[1])
    other["proxy"]["recal_batches"] = 1
    with pytest.raises(ConfigError, match="differ in proxy settings"):
        FewShotScorer({False: proxy_for_run(children[0]), True: proxy_for_run(children[1], cfg=other)}, 1)


def _edited_copy(run, dest, **changes):
    """A copy of ``run`` whose config.yaml has top-level or dotted ``changes``."""
    import shutil

    from stnas.core.verified import read_yaml, write_yaml

    shutil.copytree(run, dest)
    cfg = read_yaml(dest / "config.yaml")
    for key, value in changes.items():
        *path, last = key.split("__")
        node = cfg
        for part in path:
            node = node[part]
        node[last] = value
    write_yaml(dest / "config.yaml", cfg)
    return dest


def test_a_bad_few_shot_pair_is_refused_with_what_is_wrong(children, trained_run, tmp_path):
    from pathlib import Path

    from stnas.pipeline.search import check_children

    off, on = children
    other_seed = _edited_copy(Path(on), tmp_path / "seed", seed=7)
    other_edge = _edited_copy(Path(on), tmp_path / "edge", supernet__split="2:on")
    other_data = _edited_copy(Path(on), tmp_path / "data", data__val_limit=60)
    cases = [([off], "two children"), ([off, on, on], "two children"), ([off, off], "both trained on side E:off"),
             ([trained_run, on], "not trained with supernet.split"), ([off, other_edge], "different branch edges"),
             ([off, other_seed], "seed"), ([off, other_data], "data settings")]
    for runs, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            check_children(runs)


def test_cli_few_shot_search_routes_and_refuses_a_bad_pair(children, trained_run, tmp_path):

    from stnas.proxy.few_shot import side

    from conftest import run_cli

    space = load_space("digits")
    out = tmp_path / "fs_search"
    args = ["--algorithm", "random", "--budget", "300k", "--out", out, "search.random_samples=6",
            "search.population=6"]
    res = run_cli(["search", children[0], "--few-shot", children[1], *args])
    assert res.returncode == 0, res.stderr
    summary = read_search(out, "summary")
    assert summary["proxy_settings"]["children"] == {"off": children[0], "on": children[1]}
    history = read_search(out, "history")
    assert len(history) == 6 and {side(space.arch(r["arch"]), 1) for r in history} == {False, True}
    from stnas.pipeline.search import proxy_for_run

    for rec in history:
        run = children[side(space.arch(rec["arch"]), 1)]
        assert rec["score"] == proxy_for_run(run).score([rec["arch"]])[0].score
    # a plain search may not replace it, and a bad pair does no work
    res = run_cli(["search", children[0], *args])
    assert res.returncode == 2 and "holds a search made from other inputs" in res.stderr
    bad = run_cli(["search", children[0], "--few-shot", children[0], "--out", tmp_path / "bad", "--budget", "400k"])
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "side E:off" in bad.stderr
    assert not (tmp_path / "bad").exists()
    unsplit = run_cli(["search", trained_run, "--few-shot", children[1], "--out", tmp_path / "bad"])
    assert unsplit.returncode == 2 and "supernet.split" in unsplit.stderr and not (tmp_path / "bad").exists()


@pytest.mark.research
def test_a_few_shot_record_reads_as_the_pair(children, tmp_path):
    from experiments import proxy_record as pr
    from experiments.fidelity import run_cells, score_few_shot

    space = load_space("digits")
    archs, _, _ = _both_sides(space, n=8, seed=7)
    (tmp_path / "plan.json").write_text(json.dumps({"archs": {"1": archs}}))
    rec = tmp_path / "fs.json"
    pr.main(["--few-shot", f"fs=1:{children[0]},{children[1]}", "--archs", str(tmp_path / "plan.json"),
             "--k", "1,2", "--out", str(rec)])
    got = json.loads(rec.read_text())
    assert got["label"] == "fs" and got["edge"] == 1 and got["run"] == children
    assert got["cells"] == score_few_shot(1, children[0], children[1], archs, [1, 2], space)
    assert run_cells(str(rec), archs, [1, 2]) == got["cells"]
