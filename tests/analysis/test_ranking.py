"""Ranking statistics, the truth/architecture-list formats and `stnas rank` input errors."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.analysis.ranking import (
    kendall,
    kendall_test,
    load_arch_list,
    load_truth,
    rank_metrics,
    spearman,
    top_k_overlap,
)
from stnas.cli import main
from stnas.core.errors import ArchError, ConfigError
from stnas.pipeline.config import resolve, save_config
from stnas.space.catalog import load_space

SPACE = load_space("digits")


def archs(n, seed=0, space=SPACE):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        a = space.sample(rng)
        if a not in out:
            out.append(a)
    return out


# ---------------------------------------------------------------------------- statistics
def test_identical_and_reversed_rankings():
    x = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2]
    same = rank_metrics(x, [10 * v + 3 for v in x], top_k=2, n_boot=200)
    assert same["kendall_tau"]["value"] == pytest.approx(1) and same["spearman_rho"]["value"] == pytest.approx(1)
    assert same["top_k_overlap"]["value"] == 1
    rev = rank_metrics(x, [-v for v in x], top_k=2, n_boot=200)
    assert rev["kendall_tau"]["value"] == pytest.approx(-1) and rev["spearman_rho"]["value"] == pytest.approx(-1)
    assert rev["top_k_overlap"]["value"] == 0


def test_values_by_hand():
    # proxy order 1..5; truth swaps two adjacent pairs: 2 of 10 pairs discordant
    proxy, truth = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4]
    m = rank_metrics(proxy, truth, top_k=2, n_boot=0)
    assert m["kendall_tau"]["value"] == pytest.approx((8 - 2) / 10)
    assert m["spearman_rho"]["value"] == pytest.approx(1 - 6 * 4 / (5 * (25 - 1)))  # sum d^2 = 4
    assert m["top_k_overlap"]["value"] == 1.0  # {4, 5} both ways
    assert top_k_overlap(proxy, truth, 1) == 0.0  # proxy's best (item 5) is second in truth
    assert top_k_overlap(proxy, truth, 3) == pytest.approx(2 / 3)  # {3,4,5} vs {2,4,5}
    # tau-b with a tie in the proxy: of n0 = 6 pairs C = 2, D = 3, one tied in x only
    assert kendall([1, 1, 2, 3], [1, 2, 3, 0]) == pytest.approx((2 - 3) / math.sqrt(5 * 6))
    assert math.isnan(kendall([1, 1, 1], [1, 2, 3]))


def _tau_b_by_hand(a, b) -> float:
    """Kendall tau-b from its definition: (C - D) / sqrt((n0 - ties in a) (n0 - ties in b))."""
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    sign = [np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i, j in pairs]
    ties_a, ties_b = sum(a[i] == a[j] for i, j in pairs), sum(b[i] == b[j] for i, j in pairs)
    return (sign.count(1) - sign.count(-1)) / math.sqrt((len(pairs) - ties_a) * (len(pairs) - ties_b))


def _rho_by_hand(a, b) -> float:
    """Spearman rho of distinct values: 1 - 6 sum d^2 / (n (n^2 - 1))."""
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    d = rank(np.asarray(a)) - rank(np.asarray(b))
    return 1 - 6 * float((d ** 2).sum()) / (len(a) * (len(a) ** 2 - 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=2, max_size=12))
def test_rank_correlations_by_their_definitions_and_one_nan_convention(pairs):
    a, b = (np.array(x, float) for x in zip(*pairs))
    tau, (tau2, p) = kendall(a, b), kendall_test(a, b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # a constant list ranks nothing: undefined
        assert math.isnan(tau) and math.isnan(tau2) and math.isnan(p) and math.isnan(spearman(a, b))
        assert kendall(a, b, undefined=0.0) == 0.0 and spearman(a, b, undefined=0.0) == 0.0
    else:
        assert tau == pytest.approx(_tau_b_by_hand(a, b)) and tau2 == tau and 0 <= p <= 1
        assert kendall(a, b, undefined=0.0) == tau and kendall(b, a) == pytest.approx(tau)
    if len(set(a)) == len(a) and len(set(b)) == len(b):
        assert spearman(a, b) == pytest.approx(_rho_by_hand(a, b))
    assert math.isnan(kendall([0.5], [0.7]))


def test_bootstrap_contains_point_and_narrows_with_more_data():
    rng = np.random.default_rng(1)

    def width(n):
        t = rng.normal(size=n)
        m = rank_metrics(t + rng.normal(scale=0.7, size=n), t, n_boot=400, seed=3)
        for key in ("kendall_tau", "spearman_rho", "top_k_overlap"):
            s = m[key]
            assert s["lo"] <= s["value"] <= s["hi"], (key, s)
        return m["kendall_tau"]["hi"] - m["kendall_tau"]["lo"], m["spearman_rho"]["hi"] - m["spearman_rho"]["lo"]

    small, large = width(12), width(300)
    assert large[0] < small[0] / 2 and large[1] < small[1] / 2
    a = rank_metrics([3, 1, 2, 5, 4], [1, 2, 3, 4, 5], n_boot=100, seed=9)
    assert a == rank_metrics([3, 1, 2, 5, 4], [1, 2, 3, 4, 5], n_boot=100, seed=9)  # seeded


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=3, max_size=20, unique=True),
       st.lists(st.integers(0, 1000), min_size=3, max_size=20, unique=True), st.randoms())
def test_statistics_are_rank_based_and_order_free(p, t, rnd):
    n = min(len(p), len(t))
    p, t = np.array(p[:n]) / 1000, np.array(t[:n]) / 1000  # accuracies, distinct
    m = rank_metrics(p, t, top_k=3, n_boot=0)
    for key in ("kendall_tau", "spearman_rho"):
        assert -1 - 1e-12 <= m[key]["value"] <= 1 + 1e-12
    mono = rank_metrics(np.exp(3 * p) - 7, t, top_k=3, n_boot=0)  # strictly increasing transform
    perm = list(range(n))
    rnd.shuffle(perm)
    shuffled = rank_metrics(p[perm], t[perm], top_k=3, n_boot=0)
    for other in (mono, shuffled):
        for key in ("kendall_tau", "spearman_rho", "top_k_overlap"):
            assert other[key]["value"] == pytest.approx(m[key]["value"], abs=1e-9)


def test_too_few_architectures():
    with pytest.raises(ConfigError, match="at least 3"):
        rank_metrics([1, 2], [2, 1])


# ---------------------------------------------------------------------------- files
def truth_doc(items, **extra):
    return json.dumps(dict({"format": "stnas-truth", "version": 1,
                            "results": [{"arch": str(a), "top1": v, "params": 1} for a, v in items]}, **extra))


def test_load_truth_formats(tmp_path):
    a = archs(4)
    f = tmp_path / "t.json"
    f.write_text(truth_doc(zip(a, [0.9, 0.8, 0.7, 0.6])))
    assert load_truth(f, SPACE) == dict(zip(a, [0.9, 0.8, 0.7, 0.6]))
    f.write_text(json.dumps([{"arch": str(x), "top1": v} for x, v in zip(a + [a[0]], [0.9, 0.8, 0.7, 0.6, 0.7])]))
    assert load_truth(f, SPACE)[a[0]] == pytest.approx(0.8)  # a plain list; repeats averaged


def test_load_arch_list_formats(tmp_path):
    a = archs(4)
    f = tmp_path / "a.json"
    f.write_text(json.dumps([str(x) for x in a]))
    assert load_arch_list(f, SPACE) == a
    f.write_text(json.dumps([x.to_json() for x in a]))
    assert load_arch_list(f, SPACE) == a
    f = tmp_path / "a.txt"
    f.write_text("# my archs\n" + "\n\n".join(str(x) for x in a) + "\n")
    assert load_arch_list(f, SPACE) == a
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(json.dumps(x.to_json()) for x in a))
    assert load_arch_list(f, SPACE) == a
    f.write_text("\n".join(str(x) for x in a + [a[1]]))
    with pytest.raises(ConfigError, match="listed twice"):
        load_arch_list(f, SPACE)


@pytest.mark.parametrize("content, error, match", [
    ("{not json", ConfigError, "not valid JSON"),
    ('{"format": "other", "version": 1, "results": []}', ConfigError, "format"),
    ('{"format": "stnas-truth", "version": 7, "results": []}', ConfigError, "version 7"),
    ('{"format": "stnas-truth", "version": 1}', ConfigError, "results"),
    ("TRUTH:bad-top1", ConfigError, "finite number"),
    ("TRUTH:bool-top1", ConfigError, "finite number"),
    ("TRUTH:nan-top1", ConfigError, "finite number"),
    ("TRUTH:unknown-arch", ArchError, "result 2"),
    ("TRUTH:other-space", ArchError, "space"),
    ("TRUTH:two", ConfigError, "at least 3"),
])
def test_load_truth_errors(tmp_path, content, error, match):
    f = tmp_path / "t.json"
    f.write_text(malformed_truth(content))
    with pytest.raises(error, match=match):
        load_truth(f, SPACE)


def malformed_truth(kind):
    a = archs(3)
    good = [{"arch": str(x), "top1": 0.5} for x in a]
    if not kind.startswith("TRUTH:"):
        return kind
    kind = kind[6:]
    if kind == "bad-top1":
        good[1]["top1"] = "0.9"
    elif kind == "bool-top1":
        good[1]["top1"] = True
    elif kind == "nan-top1":
        return json.dumps({"format": "stnas-truth", "version": 1, "results": good}).replace('0.5}]', 'NaN}]')
    elif kind == "unknown-arch":
        good[1]["arch"] = "digits:99999/..."
    elif kind == "other-space":
        good[0]["arch"] = str(archs(1, space=load_space("fashion-mnist"))[0])
    elif kind == "two":
        good = good[:2]
    return json.dumps({"format": "stnas-truth", "version": 1, "results": good})


# ---------------------------------------------------------------------------- CLI errors
@pytest.fixture
def bare_run(tmp_path):
    """A run directory with a config and a space but no weights: input files are checked first."""
    run = tmp_path / "run"
    save_config(resolve("digits", overrides=["device=cpu"]), run)
    return run


@pytest.mark.parametrize("kind", ["{not json", "TRUTH:bad-top1", "TRUTH:unknown-arch", "TRUTH:other-space",
                                  '{"format": "x"}', "MISSING", "ARCHS:not-in-truth", "ARCHS:malformed",
                                  "ARCHS:too-few"])
def test_rank_cli_bad_inputs_exit_2_with_one_line(bare_run, tmp_path, capsys, kind):
    truth, arch_file = tmp_path / "truth.json", tmp_path / "archs.txt"
    a = archs(5)
    truth.write_text(truth_doc(zip(a[:4], [0.4, 0.3, 0.2, 0.1])))
    argv = ["rank", str(bare_run), "--truth", str(truth)]
    if kind == "MISSING":
        argv[-1] = str(tmp_path / "nope.json")
    elif kind.startswith("ARCHS:"):
        arch_file.write_text({"not-in-truth": "\n".join(map(str, a[2:])), "malformed": f"{a[0]}\ndigits:zz/\n",
                              "too-few": f"{a[0]}\n{a[1]}\n"}[kind[6:]])
        argv += ["--archs", str(arch_file)]
    else:
        truth.write_text(malformed_truth(kind))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("stnas: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(tmp_path) in err  # names the file


def test_rank_cli_no_weights_and_not_a_run(bare_run, tmp_path, capsys):
    truth = tmp_path / "truth.json"
    truth.write_text(truth_doc(zip(archs(4), [0.4, 0.3, 0.2, 0.1])))
    assert main(["rank", str(bare_run), "--truth", str(truth), "--mode", "single"]) == 2
    err = capsys.readouterr().err
    assert "supernet.safetensors" in err and "stnas supernet train" in err and err.count("\n") == 1
    assert main(["rank", str(tmp_path / "nowhere"), "--truth", str(truth)]) == 2
    assert "not an stnas run directory" in capsys.readouterr().err
    assert main(["rank", str(bare_run), "--truth", str(truth), "supernet.lr=3"]) == 2
    assert "supernet.lr cannot change" in capsys.readouterr().err


def test_bootstrap_interval_matches_a_plain_resampling():
    # scipy's resampling gives the interval a hand-written percentile bootstrap gives
    # (within Monte Carlo error), and drops resamples where a statistic is undefined
    from scipy import stats as st

    rng = np.random.default_rng(5)
    t = rng.normal(size=25)
    p = t + rng.normal(scale=0.8, size=25)
    m = rank_metrics(p, t, n_boot=3000, seed=1)
    idx = np.random.default_rng(2).integers(0, 25, (3000, 25))
    taus = np.array([st.kendalltau(p[i], t[i]).statistic for i in idx])
    lo, hi = np.percentile(taus[~np.isnan(taus)], [2.5, 97.5])
    assert abs(m["kendall_tau"]["lo"] - lo) < 0.04 and abs(m["kendall_tau"]["hi"] - hi) < 0.04
    tied = rank_metrics([1, 1, 1, 1, 2], [1, 2, 3, 4, 5], n_boot=300)  # many resamples constant
    assert -1 <= tied["kendall_tau"]["lo"] <= tied["kendall_tau"]["hi"] <= 1
