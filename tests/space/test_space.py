import itertools
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stnas import Arch, ArchError, SearchSpace, SpaceError, load_space
from stnas.space.catalog import list_presets

from conftest import ALL_PRESETS


def brute_force(space):
    """Every candidate tuple, kept when the Arch constructor accepts it."""
    stem_choices = [range(len(space.ops))] * space.num_edges
    br_choices = [range(-1, len(space.branch_ops))] * len(space.branch_edges)
    archs = set()
    for stem in itertools.product(*stem_choices):
        for br in itertools.product(*br_choices):
            try:
                archs.add(Arch(space, stem, br))
            except ArchError:
                pass
    return archs


def test_tiny_counts_by_hand(tiny_config):
    s = SearchSpace(tiny_config)
    # edge 1: 4->8 stride 2, skip impossible -> 1 op; edges 2, 3: 8->8 -> 2 ops
    # branch x0->x2: 4->8 stride 2 -> conv1x1 only (2 choices with off)
    # branch x1->x3: 8->8 stride 1 -> conv1x1 or skip (3 choices)
    assert s.num_topologies() == 4
    assert s.num_architectures() == 1 * 2 * 2 * 2 * 3
    assert len(brute_force(s)) == 24


@pytest.mark.parametrize("depths,n_stages", [([2], 2), ([2, 3], 3), ([3], 3), ([2, 4], 2)])
def test_counts_match_brute_force(tiny_config, depths, n_stages):
    cfg = dict(tiny_config, branch={"depths": depths, "ops": ["conv1x1", "skip"]},
               stages=[{"channels": 8, "depth": 1, "stride": 2}, {"channels": 8, "depth": n_stages, "stride": 1}])
    s = SearchSpace(cfg)
    found = brute_force(s)
    assert len(found) == s.num_architectures()
    assert len({tuple(b >= 0 for b in a.branches) for a in found}) == s.num_topologies()


def test_paper_space_counts():
    s = load_space("paper")
    assert s.num_edges == 19
    assert len(s.branch_edges) == 35
    assert s.num_topologies() == 34_359_738_368
    # 6 ops on each of 19 stem edges, 6 ops or off on each of 35 branch edges
    assert s.num_architectures() == 6**19 * 7**35
    assert {b.dst - b.src for b in s.branch_edges} == {2, 3}
    # branches spanning two stride-2 edges downsample by 4
    assert max(b.stride for b in s.branch_edges) == 4


def test_all_presets_load():
    assert set(ALL_PRESETS) <= set(list_presets())
    for name in ALL_PRESETS:
        s = load_space(name)
        assert s.name == name and s.num_architectures() >= 1


def test_preset_and_bare_space_files(tmp_path):
    import yaml

    from stnas.space.catalog import load_preset
    full = load_preset("digits")
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(full["space"]))
    assert load_space(str(tmp_path / "bare.yaml")).fingerprint == load_space("digits").fingerprint
    # a preset whose space: section was lost is not read as a space of unknown keys
    (tmp_path / "lost.yaml").write_text(yaml.safe_dump({k: v for k, v in full.items() if k != "space"}))
    with pytest.raises(SpaceError, match=r"no 'space:' section"):
        load_space(str(tmp_path / "lost.yaml"))


def test_uniform_over_architectures(tiny_config):
    s = SearchSpace(tiny_config)
    rng = np.random.default_rng(0)
    n = 24_000
    counts = {}
    for _ in range(n):
        a = s.sample(rng, mode="architecture")
        counts[a] = counts.get(a, 0) + 1
    assert len(counts) == 24
    assert stats.chisquare(list(counts.values())).pvalue > 1e-4


def test_uniform_over_topologies_then_ops(tiny_config):
    s = SearchSpace(tiny_config)
    rng = np.random.default_rng(1)
    topo, ops_given_on = {}, {}
    for _ in range(20_000):
        a = s.sample(rng, mode="topology")
        t = tuple(b >= 0 for b in a.branches)
        topo[t] = topo.get(t, 0) + 1
        if a.branches[1] >= 0:  # x1->x3 has two ops
            ops_given_on[a.branches[1]] = ops_given_on.get(a.branches[1], 0) + 1
    assert len(topo) == 4 and stats.chisquare(list(topo.values())).pvalue > 1e-4
    assert len(ops_given_on) == 2 and stats.chisquare(list(ops_given_on.values())).pvalue > 1e-4


def test_density_sampling_makes_the_branch_count_uniform():
    """topology: each of the E branch edges is a fair coin, so the count is Binomial(E, 1/2);
    density: p ~ U(0, 1), then Binomial(E, p), whose marginal is uniform over 0..E."""
    s = load_space("fashion-mnist")
    e = len(s.branch_edges)
    rng = np.random.default_rng(0)
    n = 4000
    for mode in ("topology", "density"):
        counts = np.bincount([sum(b >= 0 for b in s.sample(rng, mode).branches) for _ in range(n)], minlength=e + 1)
        if mode == "density":
            assert stats.chisquare(counts).pvalue > 1e-4
        else:
            expected = stats.binom(e, 0.5).pmf(np.arange(e + 1)) * n
            keep = expected >= 5
            f_exp = expected[keep] * counts[keep].sum() / expected[keep].sum()
            assert stats.chisquare(counts[keep], f_exp).pvalue > 1e-4
            assert counts[0] + counts[e] < n * 0.01  # the extremes all but never come up
    # ops stay uniform given the edge is on
    ops = np.bincount([b for _ in range(n) for b in s.sample(rng, "density").branches if b >= 0])
    assert stats.chisquare(ops[ops > 0]).pvalue > 1e-4


def test_sampler_is_pure_function_of_seed_and_step():
    s = load_space("paper")
    np.random.seed(123)
    a = [str(s.sample_at(7, k)) for k in range(5)]
    np.random.seed(999)
    b = [str(s.sample_at(7, k)) for k in range(5)]
    assert a == b and len(set(a)) == 5
    code = "from stnas import load_space; print(load_space('paper').sample_at(7, 3))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == a[3]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(ALL_PRESETS), prob=st.floats(0, 1))
def test_mutation_and_crossover_stay_valid(seed, name, prob):
    s = load_space(name)
    rng = np.random.default_rng(seed)
    a, b = s.sample(rng), s.sample(rng, "architecture")
    for child in (s.mutate(a, rng, prob), s.crossover(a, b, rng)):
        Arch(s, child.stem, child.branches)  # the validating constructor accepts it
    c = s.crossover(a, b, rng)
    assert all(x in (y, z) for x, y, z in zip(c.stem + c.branches, a.stem + a.branches, b.stem + b.branches))
    assert s.mutate(a, rng, 0.0) == a


def test_constrained_sampling_respects_budget():
    s = load_space("fashion-mnist")
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert s.sample_constrained(rng, max_madds=4_000_000).madds <= 4_000_000
    lo, _ = s.madds_range()
    with pytest.raises(SpaceError, match="smallest"):
        s.sample_constrained(rng, max_madds=lo - 1)


@pytest.mark.parametrize("name,budget", [("fashion-mnist", 2_800_000), ("paper", 330_000_000)])
def test_tail_budgets_are_reached_by_repair(name, budget):
    s = load_space(name)
    rng = np.random.default_rng(0)
    # far below every one of 2,000 random draws
    assert min(s.sample(rng).madds for _ in range(2000)) > budget
    archs = [s.sample_constrained(rng, max_madds=budget, tries=50) for _ in range(20)]
    assert all(a.madds <= budget for a in archs)
    assert len(set(archs)) > 10  # still random
    for a in archs:
        Arch(s, a.stem, a.branches)  # valid members


@pytest.mark.parametrize("patch,msg", [
    ({"ops": []}, "space.ops"),
    ({"ops": ["conv9x9"]}, "unknown op"),
    ({"ops": ["mb_k4_e3"]}, "odd"),
    ({"stages": [{"channels": 8, "depth": 0, "stride": 2}]}, "depth"),
    ({"stages": [{"channels": 8, "depth": 1, "stride": 3}]}, "stride"),
    ({"ops": ["skip"]}, "no op"),
    ({"bogus": 1}, "unknown key"),
    ({"num_classes": "ten"}, "num_classes"),
])
def test_bad_space_configs(tiny_config, patch, msg):
    with pytest.raises(SpaceError, match=msg):
        SearchSpace(dict(tiny_config, **patch))


def test_fingerprint_changes_with_definition(tiny_config):
    a, b = SearchSpace(tiny_config), SearchSpace(dict(tiny_config, num_classes=4))
    assert a.fingerprint != b.fingerprint
    assert SearchSpace(dict(tiny_config)).fingerprint == a.fingerprint


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist"])
def test_fair_sampling_uses_every_op_once_per_block(preset):
    """fair: each stem edge's ops exactly once in every aligned block of k steps; each branch
    edge off k times and each op once in every block of 2k steps."""
    s = load_space(preset)
    steps = 3 * 2 * int(np.lcm.reduce([len(e.allowed) for e in s.stem_edges + s.branch_edges]))
    archs = [s.sample_at(11, t, "fair") for t in range(steps)]
    for i, e in enumerate(s.stem_edges):
        k = len(e.allowed)
        for start in range(0, steps, k):
            assert sorted(a.stem[i] for a in archs[start:start + k]) == sorted(e.allowed)
    for j, b in enumerate(s.branch_edges):
        k = len(b.allowed)
        for start in range(0, steps, 2 * k):
            got = sorted(a.branches[j] for a in archs[start:start + 2 * k])
            assert got == sorted([-1] * k + list(b.allowed))
    assert len({str(a) for a in archs}) > steps // 2  # blocks are shuffled, not a fixed cycle


def test_fair_sampling_is_a_pure_function_and_draws_like_topology_without_a_step():
    s = load_space("fashion-mnist")
    assert [str(s.sample_at(3, t, "fair")) for t in range(40)] == [str(s.sample_at(3, t, "fair")) for t in range(40)]
    assert [str(s.sample_at(3, t, "fair")) for t in range(40)] != [str(s.sample_at(4, t, "fair")) for t in range(40)]
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    assert [str(s.sample(a, "fair")) for _ in range(20)] == [str(s.sample(b, "topology")) for _ in range(20)]


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist", "paper"])
def test_extremes_are_the_madds_range(preset):
    s = load_space(preset)
    lo, hi = s.madds_range()
    e = s.stem_table[:, :, 0]  # the cost table, per edge and op (disallowed ops: huge)
    assert lo == s.fixed_madds + sum(min(e[k, o] for o in edge.allowed) for k, edge in enumerate(s.stem_edges))
    assert hi == s.fixed_madds + sum(max(e[k, o] for o in edge.allowed) for k, edge in enumerate(s.stem_edges)) + sum(
        max(s.branch_table[k, o, 0] for o in b.allowed) for k, b in enumerate(s.branch_edges))
    assert s.extreme(largest=False).num_branches == 0
    assert s.extreme(largest=True).num_branches == len(s.branch_edges)
    rng = np.random.default_rng(0)
    assert all(lo <= s.sample(rng).madds <= hi for _ in range(200))


def test_sandwich_sampling_trains_largest_smallest_then_two_random():
    s = load_space("fashion-mnist")
    archs = [s.sample_at(2, t, "sandwich") for t in range(40)]
    big, small = s.extreme(largest=True), s.extreme(largest=False)
    assert all(str(a) == str(big) for a in archs[0::4]) and all(str(a) == str(small) for a in archs[1::4])
    middle = [str(a) for i, a in enumerate(archs) if i % 4 >= 2]
    assert middle == [str(s.sample_at(2, i, "topology")) for i in range(40) if i % 4 >= 2]
    assert len(set(middle)) == len(middle)
