"""Latency tables, the predictor and latency-constrained search, with fake timers only
(timings belong in benchmarks/latency_predictor.py, never in tests)."""

import copy
import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.cli import main
from stnas.core.errors import ConfigError, LatencyTableError, SpaceError
from stnas.core.units import parse_latency
from stnas.deploy.card import read_card
from stnas.latency import table as lat
from stnas.latency.measure import build_table, ensure_table, summarize, time_calls
from stnas.pipeline.checks import check_search
from stnas.pipeline.config import DEFAULTS
from stnas.pipeline.report import read_report
from stnas.proxy.score import Score
from stnas.search.evolution import search
from stnas.search.history import read_search
from stnas.space.arch import Arch
from stnas.space.catalog import load_arch, load_space

from conftest import run_cli

SPACE = load_space("digits")
SETTINGS = dict(DEFAULTS["latency"], repeats=3, rounds=1, warmup=0, fit_networks=4)


class FakeTimer:
    """Calls the function once and returns made-up timings: a fixed pseudo-random value per call."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, fn, warmup, repeats):
        fn()
        self.calls += 1
        return [float(self.rng.uniform(0.01, 0.5))] * repeats


@pytest.fixture(scope="module")
def table():
    """A table of made-up timings (its overhead set by hand: the fake whole-network times
    bear no relation to the fake module times)."""
    t = build_table(SPACE, warmup=0, repeats=3, rounds=1, fit_networks=4, timer=FakeTimer())
    t["overhead"].update(const_ms=0.05, per_module_ms=0.01, scale=1.1)
    return restamp(t)


def cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    return rc, capsys.readouterr()


def restamp(t):
    t["checksum"] = lat.checksum(t)
    return t


# ------------------------------------------------------------------ timing and fit
def test_time_calls_uses_the_given_clock():
    ticks = iter([0.0, 0.002, 0.010, 0.011, 0.020, 0.025])
    calls = []
    out = time_calls(lambda: calls.append(1), warmup=2, repeats=3, clock=lambda: next(ticks))
    assert len(calls) == 5 and out == pytest.approx([2.0, 1.0, 5.0])
    s = summarize(out)
    assert (s["median_ms"], s["min_ms"], s["max_ms"]) == pytest.approx((2.0, 1.0, 5.0))
    assert s["iqr_ms"] == pytest.approx(3.5 - 1.5)


def test_fit_overhead_recovers_a_known_rule():
    rng = np.random.default_rng(0)
    sums, counts = rng.uniform(1, 5, 10), rng.integers(6, 15, 10)
    measured = 0.3 + 0.02 * counts + 1.25 * sums
    assert lat.fit_overhead(measured, sums, counts) == pytest.approx((0.3, 0.02, 1.25))
    # a constant plus a per-module term: the scale stays 1 (the nested model wins out of sample)
    assert lat.fit_overhead(0.1 - 0.01 * counts + sums, sums, counts) == pytest.approx((0.1, -0.01, 1.0))
    # one module count: the constant alone, scale 1
    assert lat.fit_overhead([3.0, 4.0, 5.0, 6.0], [2.0, 3.0, 4.0, 5.0], [6, 6, 6, 6]) == pytest.approx((1.0, 0.0, 1.0))
    assert lat.fit_overhead([3.0], [2.0], [6]) == pytest.approx((1.0, 0.0, 1.0))


# ------------------------------------------------------------------ table files
def test_table_covers_the_space_and_dedupes(table):
    keys = set(table["entries"])
    assert keys == set(lat.required_keys(SPACE))
    placements = SPACE.num_edges * len(SPACE.ops) + len(SPACE.branch_edges) * len(SPACE.branch_ops)
    assert len(keys) < placements  # identical modules measured once
    assert "stem" in keys and "head" in keys and any(k.startswith("add:") for k in keys)


def expected_ms(t, arch):
    """The documented rule written out by hand: const + per_module * m + scale * S."""
    e, ov, s = t["entries"], t["overhead"], arch.space
    total = e["stem"]["median_ms"] + e["head"]["median_ms"]
    for edge, o in zip(s.stem_edges, arch.stem):
        res = ":res" if edge.stride == 1 and edge.c_in == edge.c_out and s.ops[o].kind == "mb" else ""
        total += e[f"op:{s.ops[o].name}:{edge.c_in}>{edge.c_out}:s{edge.stride}:{edge.size_in}{res}"]["median_ms"]
    for b, o in zip(s.branch_edges, arch.branches):
        if o >= 0:
            total += e[f"op:{s.branch_ops[o].name}:{b.c_in}>{b.c_out}:s{b.stride}:{b.size_in}"]["median_ms"]
            total += e[f"add:{s.node_channels[b.dst]}x{s.node_sizes[b.dst]}"]["median_ms"]
    m = s.num_edges + sum(o >= 0 for o in arch.branches)
    return ov["const_ms"] + ov["per_module_ms"] * m + ov["scale"] * total


@settings(max_examples=25, deadline=None)
@given(values=st.lists(st.floats(0.001, 10.0), min_size=1, max_size=200),
       const=st.floats(-1.0, 1.0), per=st.floats(-0.05, 0.05), scale=st.floats(0.1, 3.0),
       seed=st.integers(0, 2**32 - 1))
def test_table_round_trip_and_prediction(table, tmp_path_factory, values, const, per, scale, seed):
    t = copy.deepcopy(table)
    for k, v in zip(sorted(t["entries"]), itertools.cycle(values)):
        t["entries"][k] = {"median_ms": v, "iqr_ms": v / 10}
    t["overhead"].update(const_ms=const, per_module_ms=per, scale=scale)
    path = tmp_path_factory.mktemp("t") / "table.json"
    lat.save_table(restamp(t), path)
    back = lat.load_table(path)
    assert back == t
    pred = lat.Predictor(back, SPACE)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        a = SPACE.sample(rng)
        assert pred(a) == pytest.approx(expected_ms(t, a), rel=1e-9, abs=1e-9)
    fastest = Arch(SPACE, [min(e.allowed, key=lambda o: pred.stem_ms[k, o]) for k, e in enumerate(SPACE.stem_edges)],
                   [min([-1, *b.allowed], key=lambda o: pred.branch_ms[k, o])
                    for k, b in enumerate(SPACE.branch_edges)])
    assert pred.min_ms() == pytest.approx(pred(fastest))


@pytest.mark.parametrize("damage", ["entry", "truncated", "not_json", "format", "field", "nan"])
def test_damaged_table_one_line_exit_2(table, tmp_path, capsys, damage):
    path = tmp_path / "t.json"
    lat.save_table(table, path)
    text = path.read_text()
    if damage == "entry":  # a changed number: the checksum catches it
        t = json.loads(text)
        t["entries"]["stem"]["median_ms"] *= 2
        path.write_text(json.dumps(t))
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "not_json":
        path.write_bytes(b"\x80\x03pickle")
    elif damage == "format":
        path.write_text(json.dumps(restamp({**json.loads(text), "format": "other"})))
    elif damage == "field":
        t = json.loads(text)
        del t["device"]
        path.write_text(json.dumps(restamp(t)))
    else:
        t = json.loads(text)
        t["overhead"]["scale"] = float("nan")
        path.write_text(json.dumps(restamp(t)))
    with pytest.raises(LatencyTableError):
        lat.load_table(path)
    before = path.read_bytes()
    for argv in (["latency", "show", str(path)], ["latency", "predict", str(path), "digits:012012/.1.0....."]):
        rc, out = cli(argv, capsys)
        assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert path.read_bytes() == before


def test_table_of_another_space_or_incomplete_is_refused(table):
    with pytest.raises(LatencyTableError, match="another space_fingerprint"):
        lat.Predictor(table, load_space("fashion-mnist"))
    t = copy.deepcopy(table)
    del t["entries"][lat.required_keys(SPACE)[5]]
    with pytest.raises(LatencyTableError, match="lacks 1 module"):
        lat.Predictor(restamp(t), SPACE)


def test_device_refusal(table, tmp_path, capsys):
    other = restamp({**copy.deepcopy(table), "device": {**table["device"], "name": "Some Other CPU"}})
    path = tmp_path / "other.json"
    lat.save_table(other, path)
    with pytest.raises(LatencyTableError, match="another device"):
        ensure_table(SPACE, SETTINGS, path, this_device=True)
    # a search may use another device's table (predictions for that device); runtime must match
    assert ensure_table(SPACE, SETTINGS, path, this_device=False)[0] == other
    with pytest.raises(LatencyTableError, match="runtime"):
        ensure_table(SPACE, dict(SETTINGS, runtime="onnxruntime"), path, this_device=False)
    with pytest.raises(LatencyTableError, match="threads"):
        ensure_table(SPACE, dict(SETTINGS, threads=2), path, this_device=False)
    # building into it refuses to replace another device's table, in one line, before measuring
    before = path.read_bytes()
    rc, out = cli(["latency", "build", "digits", "--out", str(path), "--force"], capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "other inputs (device." in out.err
    assert path.read_bytes() == before


def test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path))
    timer = FakeTimer(1)
    lines = []
    t1, p1 = ensure_table(SPACE, SETTINGS, timer=timer, log=lines.append)
    assert p1.parent == tmp_path / "latency" and p1.is_file() and timer.calls > 0
    assert any("building" in x for x in lines)

    def no_timing(*a):
        raise AssertionError("a cached table was measured again")
    t2, p2 = ensure_table(SPACE, SETTINGS, timer=no_timing)
    assert p2 == p1 and t2 == t1
    # another thread count is another cache entry
    assert lat.cache_path(SPACE, t1["device"], t1["runtime"], 1, 2) != p1


# ------------------------------------------------------------------ budgets
@pytest.mark.parametrize("text,ms", [("1.2ms", 1.2), ("800us", 0.8), ("0.5s", 500.0), (" 2 ms ", 2.0), ("1e-1ms", 0.1)])
def test_parse_latency(text, ms):
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize("bad", ["0ms", "-1ms", "abc", "1.2", "inf", "infms", "1e999ms", "nanms", "", "1.2 ms ms"])
def test_bad_latency_budgets(bad, capsys, tmp_path):
    with pytest.raises(ConfigError):
        parse_latency(bad)
    for cmd in (["search", str(tmp_path / "nope")], ["run", "--preset", "digits", "--out", str(tmp_path / "r")]):
        rc, out = cli([*cmd, "--latency-budget", bad], capsys)
        assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    rc, out = cli(["run", "--preset", "digits", "--out", str(tmp_path / "r"), f"search.latency_budgets=[{bad!r}]"],
                  capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "latency_budgets" in out.err
    assert not tmp_path.joinpath("r").exists()  # nothing written


@pytest.mark.parametrize("override,word", [("latency.runtime=tvm", "latency.runtime"),
                                           ("latency.threads=0", "latency.threads"),
                                           ("latency.batch=1.5", "latency.batch"),
                                           ("latency.device=tpu", "latency.device")])
def test_bad_latency_settings(override, word, capsys, tmp_path):
    rc, out = cli(["run", "--preset", "digits", "--out", str(tmp_path / "r"), "--latency-budget", "1ms", override],
                  capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) == 1 and word in out.err
    assert not tmp_path.joinpath("r").exists()


# ------------------------------------------------------------------ search under latency
class Scorer:
    """score = a hidden function of the choices; asserts every scored candidate's latency."""

    def __init__(self, pred, limit_ms, max_madds=None):
        self.pred, self.limit_ms, self.max_madds = pred, limit_ms, max_madds
        self.w = np.random.default_rng(7).normal(size=64)
        self.scored = []

    def __call__(self, archs):
        out = []
        for a in archs:
            assert self.pred(a) <= self.limit_ms, f"scored {a} at {self.pred(a):.4f} ms > {self.limit_ms} ms"
            assert self.max_madds is None or a.madds <= self.max_madds
            self.scored.append(a)
            v = float(sum(self.w[(k * 7 + o) % 64] for k, o in enumerate(a.stem + a.branches)))
            out.append(Score(str(a), v, 0.0))
        return out


def search_cfg(**kw):
    return check_search({**DEFAULTS["search"], "budgets": [], "population": 12, "parents": 3, "generations": 4,
                         "top": 2, "screen": None, "budget_floor": 0.0, **kw})


@pytest.mark.parametrize("quantile", [0.02, 0.3, 0.7])
@pytest.mark.parametrize("algorithm", ["evolution", "random"])
def test_no_scored_candidate_exceeds_its_latency_budget(table, tmp_path, quantile, algorithm):
    pred = lat.Predictor(table, SPACE)
    rng = np.random.default_rng(0)
    spread = sorted(pred(SPACE.sample(rng)) for _ in range(300))
    limit = max(spread[int(quantile * 299)], pred.min_ms() * 1.01)  # 0.02: a far-tail budget (repairs)
    budgets = [f"{limit!r}ms", f"{(limit + spread[-1]) / 2!r}ms"]
    scorer = Scorer(pred, max(parse_latency(b) for b in budgets))
    res = search(SPACE, scorer, search_cfg(algorithm=algorithm, latency_budgets=budgets, random_samples=48),
                 tmp_path, seed=1, progress=False, latency=pred)
    assert scorer.scored and len(scorer.scored) == len(set(scorer.scored))
    for target, recs in res.best.items():
        assert recs and all(r.latency_ms <= target.limit("latency") for r in recs)
    history = read_search(tmp_path, "history")
    assert all(h["latency_ms"] == pytest.approx(pred(load_arch(h["arch"], SPACE))) for h in history)
    assert all(h["latency_ms"] <= parse_latency(budgets[1]) for h in history)
    assert (tmp_path / "pareto_latency.json").is_file()
    best = read_search(tmp_path, "best")
    assert {b["target"] for b in best} == {t.label for t in res.best}
    # the small budget's candidates all meet it (every other candidate targets it)
    first = [a for a in scorer.scored[::2]]
    assert all(pred(a) <= parse_latency(budgets[0]) for a in first)


def test_latency_and_madds_budgets_together(table):
    pred = lat.Predictor(table, SPACE)
    limit = sorted(pred(SPACE.sample(np.random.default_rng(i))) for i in range(200))[100]
    scorer = Scorer(pred, limit, max_madds=300_000)
    res = search(SPACE, scorer, search_cfg(budgets=["200k", "300k"], latency_budgets=[f"{limit!r}ms"]), None,
                 seed=0, progress=False, latency=pred)
    assert sorted((t.limit("madds"), t.limit("latency")) for t in res.best) == [(200_000, limit), (300_000, limit)]
    for t, recs in res.best.items():
        assert all(r.madds <= t.limit("madds") and r.latency_ms <= t.limit("latency") for r in recs)


def test_screened_latency_search_keeps_every_candidate_within_its_target(table, tmp_path):
    """search.screen (successive halving) under latency budgets: the screen scores only
    candidates within a target, and the chosen are fully scored and within theirs."""
    pred = lat.Predictor(table, SPACE)
    limit = sorted(pred(SPACE.sample(np.random.default_rng(i))) for i in range(200))[100]
    full, cheap = Scorer(pred, limit), Scorer(pred, limit)
    res = search(SPACE, full, search_cfg(latency_budgets=[f"{limit!r}ms"], screen=0.5), tmp_path, seed=0,
                 progress=False, screen=cheap, latency=pred)
    assert cheap.scored and len(full.scored) < len(cheap.scored)
    assert any(r.screened for r in res.history) and all(r.latency_ms <= limit for r in res.history)
    for t, recs in res.best.items():
        assert recs and all(not r.screened and r.latency_ms <= t.limit("latency") for r in recs)
    front = read_search(tmp_path, "pareto_latency")
    assert front and not any(r.get("screened") for r in front)


def test_impossible_latency_budget_is_refused_before_scoring(table):
    pred = lat.Predictor(table, SPACE)

    def never(archs):
        raise AssertionError("scored")
    with pytest.raises(SpaceError, match="below the fastest"):
        search(SPACE, never, search_cfg(latency_budgets=[f"{pred.min_ms() * 0.9!r}ms"]), None, progress=False,
               latency=pred)
    with pytest.raises(ConfigError, match="needs a latency table"):
        search(SPACE, never, search_cfg(latency_budgets=["1ms"]), None, progress=False)


def test_madds_search_output_is_unchanged_by_latency_support(tmp_path):
    """Without latency budgets the records carry no latency field and no latency files appear."""
    def scorer(archs):
        return [Score(str(a), float(a.madds), 0.0) for a in archs]
    search(SPACE, scorer, check_search(dict(DEFAULTS["search"], budgets=["300k"], population=6, parents=2,
                                            generations=2, screen=None, budget_floor=0.0)),
           tmp_path, progress=False)
    rows = read_search(tmp_path, "history")
    assert rows and all("latency_ms" not in r for r in rows)
    assert not (tmp_path / "pareto_latency.json").exists()
    summary = read_search(tmp_path, "summary")
    assert "latency_budgets_ms" not in summary and "latency_budgets" not in summary["config"]


def test_a_models_latency_file_is_reused_only_when_intact(table, tmp_path):
    """latency.json is reused when intact and measured with the same table; a plain, altered
    or other table's file is measured again; the model card is rewritten only when it changes."""
    from stnas.core.verified import read_json
    from stnas.deploy.card import model_card, write_card
    from stnas.pipeline.latency import add_to_model

    arch, pred = SPACE.sample(np.random.default_rng(2)), lat.Predictor(table, SPACE)
    settings = dict(DEFAULTS["latency"], repeats=1, rounds=1, warmup=0)
    write_card(tmp_path / "model_card.json", model_card(arch, None, top1=0.5))
    timer = FakeTimer(3)
    card = add_to_model(tmp_path, read_card(tmp_path), arch, pred, settings, timer)
    measured = read_json(tmp_path / lat.MODEL_LATENCY)
    assert timer.calls > 0 and card["latency"] == measured == read_card(tmp_path)["latency"]
    assert measured["table_checksum"] == table["checksum"] and measured["predicted_ms"] == pytest.approx(pred(arch))
    stamp = (tmp_path / "model_card.json").stat().st_mtime_ns

    def no_timing(*a):
        raise AssertionError("an intact latency.json of the same table was measured again")
    assert add_to_model(tmp_path, card, arch, pred, settings, no_timing) == card
    assert (tmp_path / "model_card.json").stat().st_mtime_ns == stamp  # nothing new: not rewritten
    fake = dict(measured, measured_ms=123.0)
    for damaged in (json.dumps(fake), (tmp_path / lat.MODEL_LATENCY).read_text().replace(
            json.dumps(measured["measured_ms"]), "123.0")):
        (tmp_path / lat.MODEL_LATENCY).write_text(damaged)
        timer = FakeTimer(3)
        again = add_to_model(tmp_path, card, arch, pred, settings, timer)
        assert timer.calls > 0 and again["latency"]["measured_ms"] != 123.0
        assert read_json(tmp_path / lat.MODEL_LATENCY) == again["latency"] == read_card(tmp_path)["latency"]


# ------------------------------------------------------------------ the pipeline
SMALL = ["supernet.epochs=2", "pool.epochs=1", "pool.samples=2", "search.population=6", "search.parents=2",
         "search.generations=2", "retrain.epochs=1", "supernet.progress=false", "retrain.progress=false",
         "baselines.families=[mobilenet_v3_small]", "baselines.forms=[adapted]"]  # (on for digits: kept small)


@pytest.fixture(scope="module")
def latency_run(table, tmp_path_factory):
    """A finished digits run under two latency budgets with a recorded table (made-up timings
    of this machine's identity): (run dir, table file, budgets)."""
    tmp_path = tmp_path_factory.mktemp("latency_run")
    path = tmp_path / "table.json"
    lat.save_table(table, path)
    pred = lat.Predictor(table, SPACE)
    spread = sorted(pred(SPACE.sample(np.random.default_rng(i))) for i in range(200))
    budgets = [spread[40], spread[150]]
    out = tmp_path / "run"
    res = run_cli(["run", "--preset", "digits", "--latency-budget", ",".join(f"{b!r}ms" for b in budgets),
                   "--latency-table", str(path), "--out", str(out), *SMALL])
    assert res.returncode == 0, res.stderr[-2000:]
    return out, path, budgets


def test_run_and_search_under_latency_with_a_recorded_table(table, latency_run, capsys):
    """The run never scores a candidate over budget, and reports predicted and measured
    latency per chosen model."""
    out, path, budgets = latency_run
    pred = lat.Predictor(table, SPACE)
    history = read_search(out / "search", "history")
    assert history and all(h["latency_ms"] <= budgets[1] + 1e-9 for h in history)
    assert lat.load_table(out / "search" / lat.SEARCH_TABLE) == table
    report = read_report(out)
    assert [c["latency_budget_ms"] for c in report["chosen"]] == pytest.approx(budgets)
    for c in report["chosen"]:
        x = c["model_card"]["latency"]
        assert x["predicted_ms"] == pytest.approx(pred(load_arch(c["arch"], SPACE)))
        assert x["predicted_ms"] <= c["latency_budget_ms"]
        assert x["measured_ms"] > 0 and x["calls"] >= 50 and x["device"] == lat.describe(table)
        assert read_card(out / c["retrain_dir"])["latency"] == x
        # the budget kept on measurement: the pick measured before retraining, that measurement on its card
        kept = read_card(out / c["retrain_dir"])["latency_budgets"][c["target"]]
        assert kept == c["latency_kept"] and kept["within"] and kept["measured"] >= 1
        assert kept["budget_ms"] == pytest.approx(c["latency_budget_ms"]) and 0 <= kept["margin"] <= 0.5
        assert kept["predicted_ms"] <= kept["searched_limit_ms"] + 1e-9 and kept["measured_ms"] == x["measured_ms"]
        assert kept["score_given_up"] >= 0
    # the baselines stage fits by measured latency: each table's baseline measured within its budget
    for c, t in zip(report["chosen"], report["baselines"]["budgets"]):
        assert t["budget"]["latency_ms"] == pytest.approx(c["latency_budget_ms"]) and t["rows"][0]["kind"] == "stnas"
    md = (out / "report.md").read_text()
    assert "Latency on" in md and "predicted ms" in md and (out / "plots" / "pareto_latency.png").is_file()
    assert "Latency budgets kept on measurement" in md and "score given up" in md

    # a search on the trained run: same table into another folder, then another table there is refused
    rc, io = cli(["search", str(out), "--latency-budget", f"{budgets[1]!r}ms", "--latency-table", str(path),
                  "--out", str(out / "s2"), "search.generations=1"], capsys)
    assert rc == 0, io.err[-2000:]
    assert "predicted ms" in io.out
    other = path.parent / "other.json"
    t2 = copy.deepcopy(table)
    t2["overhead"]["const_ms"] += 0.01
    lat.save_table(restamp(t2), other)
    before = (out / "s2" / "search.json").read_bytes()
    rc, io = cli(["search", str(out), "--latency-budget", f"{budgets[1]!r}ms", "--latency-table", str(other),
                  "--out", str(out / "s2"), "search.generations=1"], capsys)
    assert rc == 2 and len(io.err.strip().splitlines()) == 1 and "latency_table" in io.err
    assert (out / "s2" / "search.json").read_bytes() == before


def test_a_finished_latency_budget_run_resumes_without_rebuilding_anything(latency_run):
    """--resume of a finished run with latency budgets: exit 0, and neither the supernet, the
    pool, the proxy cache, a retrained model, its measured latency, the measured picks nor its
    model card is made again (issue #37: the card was rewritten without its checksum, so the resume refused it)."""
    out = latency_run[0]
    kept = [out / "supernet.safetensors", out / "proxy_cache.jsonl", *sorted(out.glob("pool/*")),
            *sorted(out.glob("checkpoints/*")), *sorted(out.glob("retrain/*/checkpoints/*")),
            *sorted(out.glob("retrain/*/model/*")), *sorted(out.glob("retrain/*/latency.json")),
            *sorted(out.glob("retrain/*/model_card.json")), out / "search" / "latency_picks.json"]
    assert len(list(out.glob("retrain/*/latency.json"))) >= 1
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept}
    res = run_cli(["run", "--out", str(out), "--resume"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in kept} == before
    for c in read_report(out)["chosen"]:
        assert read_card(out / c["retrain_dir"])["latency"] == c["model_card"]["latency"]


def test_predictor_benchmark_smoke(tmp_path, capsys):
    """The benchmark script end to end on digits (real timings, so only its bookkeeping is checked)."""
    from benchmarks import latency_predictor as bench

    out = tmp_path / "lp.json"
    assert bench.main(["--presets", "digits", "--runtimes", "torch", "--archs", "5", "--warmup", "1", "--repeats", "3",
                       "--rounds", "1", "--fit-networks", "4", "--net-repeats", "3", "--net-rounds", "1",
                       "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    (row,) = res["results"]
    per = row["per_arch"]
    assert row["archs"] == len(per) == len({p["arch"] for p in per}) == 5
    errs = [abs(p["predicted_ms"] / p["measured_ms"] - 1) for p in per]
    assert row["mape"] == pytest.approx(np.mean(errs)) and row["within_10pct"] == np.mean([e <= 0.1 for e in errs])
    fit = {n["arch"] for n in lat.load_table(tmp_path / "lp_tables" / "digits_torch.json")["overhead"]["networks"]}
    assert not fit & {p["arch"] for p in per}  # validated on networks the fit did not see
    assert "digits" in capsys.readouterr().out


def test_a_latency_search_never_replaces_a_madds_search_and_back(table, tmp_path):
    pred = lat.Predictor(table, SPACE)

    def scorer(archs):
        return [Score(str(a), float(a.madds), 0.0) for a in archs]
    base = check_search({**DEFAULTS["search"], "budgets": ["300k"], "population": 6, "parents": 2, "generations": 1,
                         "screen": None, "budget_floor": 0.0})
    info = {"latency_table": {"checksum": table["checksum"]}}
    limit = f"{sorted(pred(SPACE.sample(np.random.default_rng(i))) for i in range(50))[40]!r}ms"
    search(SPACE, scorer, base, tmp_path / "m", progress=False)
    with pytest.raises(ConfigError, match="latency_budgets_ms"):
        search(SPACE, scorer, {**base, "latency_budgets": [limit]}, tmp_path / "m", progress=False, latency=pred,
               info=info)
    search(SPACE, scorer, {**base, "latency_budgets": [limit]}, tmp_path / "l", progress=False, latency=pred, info=info)
    with pytest.raises(ConfigError, match="latency_budgets_ms"):
        search(SPACE, scorer, base, tmp_path / "l", progress=False)
    search(SPACE, scorer, {**base, "latency_budgets": [limit]}, tmp_path / "l", progress=False, latency=pred,
           info=info)  # the same settings replay


# ------------------------------------------------------------------ every runtime and device
@pytest.mark.parametrize("runtime", lat.LATENCY_RUNTIMES.names())
@pytest.mark.parametrize("device", lat.LATENCY_DEVICES.names())
def test_every_runtime_and_device_builds_a_table_or_says_why(tiny_config, runtime, device):
    from stnas.latency.measure import device_info, runtime_info
    from stnas.space.searchspace import SearchSpace

    try:
        device_info(device), runtime_info(runtime, device)
    except ConfigError as exc:  # not here (no CUDA, no onnxruntime): one line that says so
        assert "\n" not in str(exc) and (device in str(exc) or runtime in str(exc) or "Provider" in str(exc))
        pytest.skip(str(exc))
    space = SearchSpace(tiny_config)
    t = build_table(space, runtime, device, warmup=0, repeats=3, rounds=1, fit_networks=3, timer=FakeTimer())
    lat.validate_table(t)
    assert t["runtime"]["name"] == runtime and t["device"]["kind"] == device
    assert set(t["entries"]) == set(lat.required_keys(space))
    a = space.sample(np.random.default_rng(0))
    assert lat.Predictor(t, space)(a) == pytest.approx(expected_ms(t, a), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("key, bad", [("runtime", "onnx"), ("device", "gpu")])
def test_an_unknown_runtime_or_device_is_refused_in_one_line(capsys, key, bad):
    rc, out = cli(["latency", "build", "digits", f"--{key}", bad], capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) <= 2 and bad in out.err
    with pytest.raises(ConfigError, match=f"latency.{key} must be one of"):
        from stnas.pipeline.checks import check_latency_section

        check_latency_section(dict(DEFAULTS["latency"], **{key: bad}))
