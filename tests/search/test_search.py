"""Constrained evolutionary and random search, mostly with synthetic scorers of known optimum."""

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.core.errors import ConfigError, SpaceError
from stnas.core.units import budget_label, parse_count
from stnas.core.verified import write_json
from stnas.pipeline.checks import check_search
from stnas.pipeline.config import DEFAULTS
from stnas.proxy.score import Score
from stnas.search.algorithms import SEARCH_ALGORITHMS, SELECTIONS
from stnas.search.evolution import search
from stnas.search.history import pareto_front, read_search
from stnas.space.catalog import load_arch, load_space
from stnas.space.searchspace import SearchSpace

SPACE = load_space("digits")  # MAdds from 81,376 to 452,800; 34M architectures


class LinearScorer:
    """score = a hidden linear function of the edge choices; checks constraints, logs calls."""

    def __init__(self, space, seed=0, max_madds=None, min_madds=None, max_params=None, per_madd=0.0):
        r = np.random.default_rng(1000 + seed)
        self.space, self.per_madd = space, per_madd
        self.ws = r.normal(size=(space.num_edges, len(space.ops)))
        self.wb = r.normal(size=(len(space.branch_edges), len(space.branch_ops) + 1))  # last column: off
        self.limits = (max_madds, min_madds, max_params)
        self.calls: list[list[str]] = []

    def value(self, a) -> float:
        return float(sum(self.ws[k, o] for k, o in enumerate(a.stem))
                     + sum(self.wb[k, o] for k, o in enumerate(a.branches)) + self.per_madd * self.space.madds(a))

    def optimum(self):
        """The per-edge argmax over allowed choices (the objective is separable)."""
        stem = [max(e.allowed, key=lambda o: self.ws[k, o]) for k, e in enumerate(self.space.stem_edges)]
        br = [max([-1, *b.allowed], key=lambda o: self.wb[k, o]) for k, b in enumerate(self.space.branch_edges)]
        return stem, br

    def __call__(self, archs):
        for a in archs:
            assert self.space.satisfies(a, *self.limits), f"scored an architecture outside the constraints: {a}"
        self.calls.append([str(a) for a in archs])
        return [Score(str(a), self.value(a), 0.01, 1.0 - self.value(a) / 100) for a in archs]

    @property
    def scored(self):
        return [s for c in self.calls for s in c]


def madds_best(result):
    """A MAdds search's top records keyed by the plain budget."""
    return {t.limit("madds"): recs for t, recs in result.best.items()}


def cfg(**kw):
    """A plain search section (no screening, no floor), checked as ``resolve`` checks it."""
    c = dict(DEFAULTS["search"], budgets=[200_000], population=16, parents=4, generations=6, random_samples=96, top=3,
             screen=None, budget_floor=0.0)
    c.update(kw)
    return check_search(c)


def read_jsonl(path):
    """A search history, through the search folder's checking reader."""
    return read_search(Path(path).parent, "history")


def test_evolution_finds_the_known_optimum():
    big = SPACE.madds_range()[1]
    for seed in range(3):
        scorer = LinearScorer(SPACE, seed)
        res = search(SPACE, scorer, cfg(budgets=[big], generations=40), None, seed=seed, progress=False)
        stem, br = scorer.optimum()
        best = madds_best(res)[big][0]
        assert (list(best.arch.stem), list(best.arch.branches)) == (stem, br)
        assert len(res.history) == 16 * 40  # 640 of 34M architectures


def test_evolution_beats_random_with_the_same_evaluations():
    evo, rnd = [], []
    for seed in range(8):
        scorer = LinearScorer(SPACE, seed, max_madds=200_000)
        e = search(SPACE, scorer, cfg(generations=10), None, seed=seed, progress=False)
        r = search(SPACE, scorer, cfg(algorithm="random", random_samples=160), None, seed=seed, progress=False)
        assert len(e.history) == len(r.history) == 160
        evo.append(madds_best(e)[200_000][0].score)
        rnd.append(madds_best(r)[200_000][0].score)
    assert np.mean(evo) > np.mean(rnd) + 1.0
    assert sum(a > b for a, b in zip(evo, rnd)) >= 7


@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_only_constrained_archs_are_scored_and_none_twice(algorithm):
    lo, hi = 150_000, 300_000
    params = sorted(SPACE.params(SPACE.sample(np.random.default_rng(i))) for i in range(200))
    max_params = params[100]  # the median: the limit binds
    scorer = LinearScorer(SPACE, 1, max_madds=hi, min_madds=lo, max_params=max_params)
    res = search(SPACE, scorer, cfg(algorithm=algorithm, budgets=["220k", "300k"], min_madds="150k",
                                    max_params=max_params), None, seed=3, progress=False)
    scored = scorer.scored
    assert len(scored) == len(set(scored)) == len(res.history) == 96
    assert all(lo <= r.madds <= hi and r.params <= max_params for r in res.history)


def test_multi_budget_best_and_exploration(tmp_path):
    budgets = [120_000, 200_000, 300_000]
    scorer = LinearScorer(SPACE, 2, max_madds=300_000, per_madd=2e-5)  # bigger tends to score better
    res = search(SPACE, scorer, cfg(budgets=["300k", "120k", "200k"], population=15, generations=5), tmp_path,
                 seed=0, progress=False)
    lines = read_jsonl(tmp_path / "search.jsonl")
    assert sorted(madds_best(res)) == budgets
    for b in budgets:
        under = [x for x in lines if x["madds"] <= b]
        assert madds_best(res)[b][0].madds <= b
        assert madds_best(res)[b][0].score == max(x["score"] for x in under)
        assert [r.score for r in madds_best(res)[b]] == sorted((x["score"] for x in under), reverse=True)[:3]
    for g in range(5):  # every generation keeps exploring the smallest budget
        assert sum(x["madds"] <= 120_000 for x in lines if x["generation"] == g) >= 5
    # larger budgets find larger, better architectures
    assert madds_best(res)[120_000][0].score < madds_best(res)[200_000][0].score < madds_best(res)[300_000][0].score
    assert madds_best(res)[300_000][0].madds > 200_000


def test_deterministic_given_seed():
    runs = [search(SPACE, LinearScorer(SPACE), cfg(), None, seed=s, progress=False) for s in (5, 5, 6)]
    hist = [[(str(r.arch), r.generation, r.score) for r in res.history] for res in runs]
    assert hist[0] == hist[1]
    assert hist[0] != hist[2]


def test_outputs_round_trip(tmp_path):
    scorer = LinearScorer(SPACE, 4)
    res = search(SPACE, scorer, cfg(budgets=[150_000, 250_000], top=2), tmp_path, seed=1, progress=False)
    lines = read_jsonl(tmp_path / "search.jsonl")
    assert [x["arch"] for x in lines] == scorer.scored
    for x in lines:
        a = load_arch(x["arch"], SPACE)
        assert (x["madds"], x["params"], x["score"]) == (SPACE.madds(a), SPACE.params(a), scorer.value(a))
        assert x["std"] == 0.01 and 0 <= x["generation"] < 6
    best = read_search(tmp_path, "best")
    assert [(e["budget"], e["rank"]) for e in best] == [(150_000, 1), (150_000, 2), (250_000, 1), (250_000, 2)]
    for e in best:
        rec = madds_best(res)[e["budget"]][e["rank"] - 1]
        path = tmp_path / "best" / f"budget_{budget_label(e['budget'])}" / f"top{e['rank']}.json"
        assert e["file"] == str(path.relative_to(tmp_path))
        assert load_arch(path, SPACE) == rec.arch and e["arch"] == str(rec.arch)
        assert (e["madds"], e["score"]) == (rec.madds, rec.score)
    assert (tmp_path / "best" / "budget_150k" / "top1.json").is_file()
    summary = read_search(tmp_path, "summary")
    assert summary["done"] and summary["evaluations"] == 96 and summary["budgets"] == [150_000, 250_000]
    assert summary["best"]["250k"]["arch"] == str(madds_best(res)[250_000][0].arch)
    # Pareto front against a brute-force check on the written history
    pts = [(x["madds"], x["score"]) for x in lines]
    brute = {(m, s) for m, s in pts
             if not any(m2 <= m and s2 >= s and (m2, s2) != (m, s) for m2, s2 in pts)}
    front = read_search(tmp_path, "pareto")
    assert {(x["madds"], x["score"]) for x in front} == brute
    assert [x["madds"] for x in front] == sorted(x["madds"] for x in front)


Pt = type("Pt", (), {})


def _pt(m, s):
    p = Pt()
    p.madds, p.score = m, s
    return p


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=30))
def test_pareto_front_matches_definition(pairs):
    pts = [_pt(m, s) for m, s in pairs]
    front = pareto_front(pts)
    expected = [p for p in pts if not any(q.madds <= p.madds and q.score >= p.score
                                          and (q.madds < p.madds or q.score > p.score) for q in pts)]
    assert sorted(map(id, front)) == sorted(map(id, expected))


@given(st.one_of(st.integers(1, 10**12), st.integers(1, 10**4).map(lambda n: n * 10**5)))
def test_budget_label_is_exact(n):
    label = budget_label(n)
    assert parse_count(label) == n and len(label) <= 13


def test_budget_label_examples():
    assert [budget_label(n) for n in (200_000, 3_500_000, 6_000_000, 1_234_567, 999)] == \
        ["200k", "3.5M", "6M", "1234567", "999"]


@pytest.mark.parametrize("kw, words", [
    (dict(budgets=[50_000]), ["50k", "81,376"]),
    (dict(budgets=[200_000], min_madds=250_000), ["below search.min_madds", "250,000"]),
    (dict(min_madds=10**7, budgets=[10**8]), ["exceeds the largest", "452,800"]),
    (dict(max_params=100), ["max_params", "smallest"]),
])
def test_infeasible_constraints_one_line_error(kw, words):
    scorer = LinearScorer(SPACE)
    with pytest.raises(SpaceError) as e:
        search(SPACE, scorer, cfg(**kw), None, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert scorer.calls == []


class CachingScorer:
    """A score cache on disk in front of a scorer (what Proxy does per arch and weight source)."""

    def __init__(self, inner, path):
        self.inner, self.path = inner, Path(path)
        self.cache = json.loads(self.path.read_text()) if self.path.exists() else {}

    def __call__(self, archs):
        missing = [a for a in archs if str(a) not in self.cache]
        if missing:
            for s in self.inner(missing):
                self.cache[s.arch] = [s.score, s.std, s.loss]
                self.path.write_text(json.dumps(self.cache))
        return [Score(str(a), *self.cache[str(a)]) for a in archs]


class Killed(Exception):
    pass


class DiesAfter:
    def __init__(self, inner, n):
        self.inner, self.n = inner, n

    def __call__(self, archs):
        if self.n == 0:
            raise Killed
        self.n -= 1
        return self.inner(archs)


def test_killed_search_resumes_without_rescoring(tmp_path):
    c = cfg(budgets=[150_000, 250_000], generations=6)
    ref = search(SPACE, LinearScorer(SPACE, 7), c, tmp_path / "ref", seed=2, progress=False)

    inner = LinearScorer(SPACE, 7)
    cache = tmp_path / "cache.json"
    with pytest.raises(Killed):
        search(SPACE, CachingScorer(DiesAfter(inner, 3), cache), c, tmp_path / "out", seed=2, progress=False)
    partial = read_jsonl(tmp_path / "out" / "search.jsonl")
    assert {x["generation"] for x in partial} == {0, 1, 2}
    assert not read_search(tmp_path / "out", "summary")["done"]

    res = search(SPACE, CachingScorer(inner, cache), c, tmp_path / "out", seed=2, progress=False)
    assert [(str(r.arch), r.generation, r.score) for r in res.history] == \
        [(str(r.arch), r.generation, r.score) for r in ref.history]
    assert len(inner.scored) == len(set(inner.scored)) == len(res.history) == 96
    assert (tmp_path / "out" / "search.jsonl").read_text() == (tmp_path / "ref" / "search.jsonl").read_text()
    assert (tmp_path / "out" / "best.json").read_text() == (tmp_path / "ref" / "best.json").read_text()


def test_another_search_never_replaces_a_saved_one(tmp_path):
    c = cfg(budgets=[150_000], generations=2)
    search(SPACE, LinearScorer(SPACE, 7), c, tmp_path, seed=2, progress=False, info={"proxy_mode": "stabilized"})
    saved = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    # the same settings again: a rerun, allowed (and it writes the same results)
    search(SPACE, LinearScorer(SPACE, 7), c, tmp_path, seed=2, progress=False, info={"proxy_mode": "stabilized"})
    assert (tmp_path / "best.json").read_bytes() == saved[tmp_path / "best.json"]
    saved = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for change, words in [({"c": cfg(budgets=[250_000], generations=2)}, "budgets differ"),
                          ({"c": cfg(budgets=[150_000], generations=3)}, "config.generations differ"),
                          ({"seed": 3}, "seed differ"),
                          ({"info": {"proxy_mode": "single"}}, "proxy_mode differ")]:
        kw = {"c": c, "seed": 2, "info": {"proxy_mode": "stabilized"}} | change
        with pytest.raises(ConfigError, match=words):
            search(SPACE, LinearScorer(SPACE, 7), kw["c"], tmp_path, seed=kw["seed"], progress=False, info=kw["info"])
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == saved  # nothing touched
    search(SPACE, LinearScorer(SPACE, 7), cfg(budgets=[250_000], generations=2), tmp_path / "other", seed=2,
           progress=False)  # another folder is fine


def test_random_search_spreads_over_budgets():
    scorer = LinearScorer(SPACE, max_madds=300_000)
    res = search(SPACE, scorer, cfg(algorithm="random", budgets=[120_000, 300_000], population=10,
                                    random_samples=37), None, seed=0, progress=False)
    assert [len(c) for c in scorer.calls] == [10, 10, 10, 7]
    assert res.generations == 4 and len(set(scorer.scored)) == 37
    assert sum(r.madds <= 120_000 for r in res.history) >= 19  # every other draw targets 120k


def test_tiny_space_is_exhausted_gracefully(tiny_config):
    space = SearchSpace(tiny_config)
    total = space.num_architectures()
    scorer = LinearScorer(space)
    big = space.madds_range()[1]
    res = search(space, scorer, cfg(budgets=[big], population=30, parents=5, generations=10), None, progress=False)
    assert len(scorer.scored) == len(set(scorer.scored)) == len(res.history) <= total
    stem, br = scorer.optimum()
    assert (list(madds_best(res)[big][0].arch.stem), list(madds_best(res)[big][0].arch.branches)) == (stem, br)


# ------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    from stnas.cli import main

    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def fake_run(tmp_path):
    """A run directory with a config but no weights: enough for every check made before scoring."""
    from stnas.pipeline.config import resolve, save_config

    save_config(resolve("digits"), tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv, words", [
    (["--budget", "50k"], ["50k", "81,376"]),
    (["supernet.lr=0.5"], ["supernet.lr", "cannot change"]),
    (["seed=3"], ["seed", "cannot change"]),
    (["search.parents=99"], ["search.parents", "population"]),
    (["search.budget=3M"], ["search.budget", "did you mean search.budgets"]),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, fake_run, argv, words):
    rc, out, err = run_cli(capsys, "search", fake_run, *argv)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_cli_not_a_run_dir(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "search", tmp_path / "nope")
    assert rc == 2 and "not an stnas run directory" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def digits_run(trained_copy):
    """The shared trained run (conftest), a copy of this module's (the search writes into it)."""
    return trained_copy


def test_cli_search_on_a_trained_run(capsys, digits_run):
    argv = ["search", digits_run, "--budget", "200k,300k", "--generations", "2", "--population", "6",
            "search.parents=2"]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    folder = digits_run / "search"
    lines = read_jsonl(folder / "search.jsonl")
    assert len(lines) == len({x["arch"] for x in lines}) == 12
    assert all(x["madds"] <= 300_000 and 0 <= x["score"] <= 1 for x in lines)
    for b, label in ((200_000, "200k"), (300_000, "300k")):
        under = [x for x in lines if x["madds"] <= b]
        top1 = load_arch(folder / "best" / f"budget_{label}" / "top1.json", SPACE)
        assert SPACE.madds(top1) <= b
        assert str(top1) in out and label in out
        assert [x["score"] for x in lines if x["arch"] == str(top1)] == [max(x["score"] for x in under)]
    summary = read_search(folder, "summary")
    assert summary["done"] and summary["proxy_mode"] == "stabilized" and summary["evaluations"] == 12
    cache = (digits_run / "proxy_cache.jsonl").read_text()
    assert len(cache.splitlines()) >= 12
    # a second run replays the same candidates from the cache: nothing is evaluated again
    before = (folder / "search.jsonl").read_text()
    rc, out2, err = run_cli(capsys, *argv)
    assert rc == 0, err
    assert (digits_run / "proxy_cache.jsonl").read_text() == cache
    assert (folder / "search.jsonl").read_text() == before


@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_budget_floor_gives_each_budget_its_own_window(algorithm):
    """A scorer that prefers small networks (per_madd < 0, as a weak proxy can): without a
    floor the large budget is won by a network far below it; with budget_floor=0.8 every
    candidate, parent and best of budget B lies in [0.8 B, B]."""
    budgets = [150_000, 300_000]
    small = LinearScorer(SPACE, 2, per_madd=-1e-4)
    plain = search(SPACE, small, cfg(algorithm=algorithm, budgets=budgets), None, seed=5, progress=False)
    assert madds_best(plain)[300_000][0].madds < 0.8 * 300_000
    windowed = LinearScorer(SPACE, 2, per_madd=-1e-4)
    res = search(SPACE, windowed, cfg(algorithm=algorithm, budgets=budgets, budget_floor=0.8), None, seed=5,
                 progress=False)
    for b in budgets:
        assert madds_best(res)[b] and all(0.8 * b <= r.madds <= b for r in madds_best(res)[b])
    # every scored candidate was drawn for one budget's window, and both windows were explored
    assert all(any(0.8 * b <= r.madds <= b for b in budgets) for r in res.history)
    assert all(sum(0.8 * b <= r.madds <= b for r in res.history) >= len(res.history) // 3 for b in budgets)


@pytest.mark.parametrize("floor", [-0.1, 1.0, 1.5])
def test_budget_floor_out_of_range_is_a_config_error(floor):
    from stnas.pipeline.config import resolve

    with pytest.raises(ConfigError, match="search.budget_floor"):
        resolve("digits", overrides=[f"search.budget_floor={floor}"])
    with pytest.raises(ConfigError, match="search.budget_floor"):
        cfg(budget_floor=floor)


def _rec(per, madds=100_000, name="r"):
    from stnas.search.history import Record

    per = None if per is None else tuple(float(v) for v in per)
    return Record(name, madds, 1, float(np.mean(per)) if per else 0.0, 0.0, 0, per_sample=per)


def test_tied_with_best_is_a_paired_one_sided_t_test():
    """Per-sample differences d = -m + a*(+1, -1, ...) over K=8 samples have mean -m and
    sd a*sqrt(8/7), so t = -m*sqrt(7)/a. The one-sided 5% critical value of Student's t with
    7 degrees of freedom is -1.895 (tables): t = -1.5 ties, t = -2.5 does not."""
    from stnas.search.history import tied_with_best

    base = np.array([0.50, 0.52, 0.48, 0.51, 0.49, 0.50, 0.53, 0.47])
    alt = np.array([1, -1] * 4) * 0.01
    m_tied, m_worse = 1.5 * 0.01 / np.sqrt(7), 2.5 * 0.01 / np.sqrt(7)
    best = _rec(base, name="best")
    recs = [best,
            _rec(base + alt, name="same mean"),
            _rec(base - m_tied + alt, name="t=-1.5"),
            _rec(base - m_worse + alt, name="t=-2.5"),
            _rec(base - 0.001, name="constant d < 0"),
            _rec(base, name="identical"),
            _rec(None, name="no samples"),
            _rec(base[:4], name="other sources")]
    assert [r.arch for r in tied_with_best(recs, 0.05)] == ["best", "same mean", "t=-1.5", "identical"]
    # a looser level admits the t=-1.5 record no more (one-sided p of t=-1.5 at 7 df is about 0.089)
    assert [r.arch for r in tied_with_best(recs, 0.10)] == ["best", "same mean", "identical"]
    assert tied_with_best([_rec(None, name="x")], 0.05)[0].arch == "x" and tied_with_best([], 0.05) == []


class TiedScorer(LinearScorer):
    """Every architecture has the same mean score; its per-sample scores differ from any
    other's by a multiple of (+1, -1, ...), so every pair is tied."""

    def __call__(self, archs):
        out = []
        for a in archs:
            e = (zlib.crc32(str(a).encode()) % 1000) / 1e5
            per = [0.5 + e * s for s in (1, -1) * 4]
            out.append(Score(str(a), 0.5, 0.0, 0.5, per))
        return out


@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_largest_tied_chooses_the_most_madds_among_ties(tmp_path, algorithm):
    budgets = [150_000, 300_000]
    best = search(SPACE, TiedScorer(SPACE), cfg(algorithm=algorithm, budgets=budgets), None, seed=2, progress=False)
    res = search(SPACE, TiedScorer(SPACE), cfg(algorithm=algorithm, budgets=budgets, select="largest_tied"),
                 tmp_path, seed=2, progress=False)
    assert [r.arch for r in res.history] == [r.arch for r in best.history]  # parents do not change
    for b in budgets:
        within = [r.madds for r in res.history if r.madds <= b]
        assert madds_best(res)[b][0].madds == max(within)  # all tied: the largest
        assert madds_best(best)[b][0].madds == min(within)  # equal means: the rank key's smallest
        assert len(madds_best(res)[b]) == 3 and len({str(r.arch) for r in madds_best(res)[b]}) == 3
    rows = read_jsonl(tmp_path / "search.jsonl")
    assert all(len(r["per_sample"]) == 8 for r in rows)
    summary = read_search(tmp_path, "summary")
    assert summary["config"]["select"] == "largest_tied"
    assert summary["best"]["300k"]["madds"] == madds_best(res)[300_000][0].madds


@pytest.mark.parametrize("kw, words", [({"select": "largest"}, "search.select"),
                                       ({"tie_alpha": 0.0}, "search.tie_alpha"),
                                       ({"tie_alpha": 1.0}, "search.tie_alpha")])
def test_select_bad_values_are_config_errors(kw, words):
    from stnas.pipeline.config import resolve

    with pytest.raises(ConfigError, match=words):
        cfg(**kw)
    with pytest.raises(ConfigError, match=words):
        resolve("digits", overrides=[f"search.{k}={v}" for k, v in kw.items()])
    with pytest.raises(ConfigError, match="needs proxy.mode stabilized"):
        resolve("digits", overrides=["search.select=largest_tied", "proxy.mode=single"])


def test_report_says_how_the_choice_was_made(tmp_path):
    from stnas.pipeline.config import resolve
    from stnas.pipeline.report import write_report

    cfg = resolve("digits")
    for select, said in (("best", False), ("largest_tied", True)):
        run = tmp_path / select
        (run / "search").mkdir(parents=True)
        write_json(run / "search" / "search.json", {"config": {"select": select, "tie_alpha": 0.1}})
        write_report(run, [], cfg)
        text = (run / "report.md").read_text()
        assert ("cannot tell from the best score (alpha 0.1)" in text) is said


class NoisyScreen(LinearScorer):
    """The screening scorer: the same hidden function plus seeded noise (one pool sample)."""

    def __init__(self, space, noise=0.5, **kw):
        super().__init__(space, **kw)
        self.noise = noise

    def noisy(self, arch: str) -> float:
        return self.value(load_arch(arch)) + self.noise * np.sin(zlib.crc32(arch.encode()) % 1000)

    def __call__(self, archs):
        full = super().__call__(archs)
        return [Score(s.arch, self.noisy(s.arch), 0.0, s.loss) for s in full]


def test_screen_scores_only_the_best_share_of_each_budget_fully(tmp_path):
    import math

    budgets = [150_000, 250_000]
    full, screen = LinearScorer(SPACE), NoisyScreen(SPACE)
    res = search(SPACE, full, cfg(budgets=budgets, screen=0.25), tmp_path, seed=3, progress=False, screen=screen)
    assert len(full.calls) == len(screen.calls) == res.generations
    for screened_batch, full_batch in zip(screen.calls, full.calls):
        # the screen sees every candidate; the full scorer the best ceil(25%) of each budget's
        assert set(full_batch) <= set(screened_batch)
        per_budget = [screened_batch[i::2] for i in range(2)]  # candidate i targets budgets[i % 2]
        assert len(full_batch) == sum(math.ceil(0.25 * len(b)) for b in per_budget)
        for b in per_budget:
            top = sorted(b, key=lambda a: (-screen.noisy(a), a))[:math.ceil(0.25 * len(b))]
            assert set(top) <= set(full_batch)
    fully = set(full.scored)
    history = read_jsonl(tmp_path / "search.jsonl")
    assert {h["arch"] for h in history if not h["screened"]} == fully
    assert [h["arch"] for h in history] == screen.scored  # every candidate is in the history, once
    for h in history:
        assert h["score"] == pytest.approx(full.value(load_arch(h["arch"])) if not h["screened"]
                                           else screen.noisy(h["arch"]))
    # never chosen, never on the front
    for recs in res.best.values():
        assert recs and all(r.arch is not None and str(r.arch) in fully for r in recs)
    assert all(str(r.arch) in fully for r in res.pareto)
    # the evaluations: every candidate once on the screen, the promoted ones again
    assert len(full.scored) < 0.4 * len(history)


def test_screen_of_one_is_the_plain_search(tmp_path):
    plain = search(SPACE, LinearScorer(SPACE), cfg(), None, seed=5, progress=False)
    halved = search(SPACE, LinearScorer(SPACE), cfg(screen=1.0), None, seed=5, progress=False,
                    screen=NoisyScreen(SPACE))
    assert [str(r.arch) for r in halved.history] == [str(r.arch) for r in plain.history]
    assert [r.score for r in halved.history] == [r.score for r in plain.history]


def test_screen_needs_a_screening_scorer():
    with pytest.raises(ConfigError, match="screen"):
        search(SPACE, LinearScorer(SPACE), cfg(screen=0.5), None, progress=False)


@pytest.mark.parametrize("value, msg", [("0", "share in"), ("1.5", "share in"), ("-0.2", "share in"),
                                        ("abc", "screen")])
def test_screen_config_is_checked(value, msg):
    from stnas.pipeline.config import resolve

    with pytest.raises(ConfigError, match=msg):
        resolve("digits", overrides=[f"search.screen={value}"])
    with pytest.raises(ConfigError, match="stabilized"):
        resolve("digits", overrides=["search.screen=0.2", "proxy.mode=single"])
    assert resolve("digits", overrides=["search.screen=0.2"])["search"]["screen"] == 0.2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8), st.lists(st.floats(-0.2, 0.2), min_size=8, max_size=8),
       st.floats(0.01, 0.5))
def test_ties_follow_the_paired_t_test_by_hand(best, shifts, alpha):
    """A record ties with the best when the one-sided paired t-test (t = mean(d) / (sd(d) /
    sqrt(n)), p = P(T_{n-1} <= t)) keeps H0 at ``alpha``, or when d is constant and >= 0."""
    from scipy import stats as sps

    from stnas.search.history import Record, tied_with_best

    n = len(best)
    other = [b + s for b, s in zip(best, shifts[:n])]
    a = SPACE.sample(np.random.default_rng(0))
    rec = [Record(a, 1, 1, float(np.mean(v)), 0.0, 0, per_sample=tuple(v)) for v in (best, other)]
    d = np.asarray(other) - np.asarray(best)
    if np.ptp(d) == 0:
        want = d[0] >= 0
    else:
        with np.errstate(divide="ignore"):  # a spread below float resolution: t is infinite
            t = d.mean() / (d.std(ddof=1) / np.sqrt(n))
        want = sps.t.cdf(t, n - 1) >= alpha
    assert (len(tied_with_best(rec, alpha)) == 2) == want


# ------------------------------------------------------------------ every algorithm and selection rule
class SampledScorer(LinearScorer):
    """LinearScorer with three noisy per-sample scores (what the paired selection rules read)."""

    def __call__(self, archs):
        out = super().__call__(archs)
        for s in out:
            noise = np.random.default_rng(zlib.crc32(s.arch.encode())).normal(0, 0.3, 3)
            s.per_sample = [s.score + v for v in noise - noise.mean()]
        return out


@pytest.mark.parametrize("algorithm", SEARCH_ALGORITHMS.names())
@pytest.mark.parametrize("select", SELECTIONS.names())
def test_every_algorithm_and_selection_rule_searches_within_the_budgets(algorithm, select, tmp_path):
    scorer = SampledScorer(SPACE, max_madds=250_000)  # asserts that every scored candidate fits
    c = cfg(budgets=[150_000, 250_000], algorithm=algorithm, select=select, generations=3, random_samples=40)
    res = search(SPACE, scorer, c, tmp_path, progress=False)
    assert scorer.scored and len(scorer.scored) == len(set(scorer.scored)) == len(res.history)
    assert len(scorer.calls) == res.generations <= SEARCH_ALGORITHMS.get(algorithm).generations(c, c["population"])
    for target, recs in res.best.items():
        budget = target.limit("madds")
        window = sorted((r for r in res.history if r.madds <= budget), key=lambda r: -r.score)
        assert recs and {str(r.arch) for r in recs} <= {str(r.arch) for r in window}
        if not SELECTIONS.get(select).paired:
            assert recs[0].score == window[0].score
    summary = json.loads((tmp_path / "search.json").read_text())
    assert summary["config"]["algorithm"] == algorithm and summary["config"]["select"] == select


def test_an_unknown_algorithm_or_rule_is_one_line_with_a_hint():
    for key, bad, hint in (("algorithm", "evolutoin", "evolution"), ("select", "largest", "largest_tied")):
        with pytest.raises(ConfigError, match=f"did you mean '{hint}'") as info:
            cfg(**{key: bad})
        assert "\n" not in str(info.value) and f"search.{key}" in str(info.value)
