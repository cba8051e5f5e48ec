"""experiments/fidelity_power.py: the simulation's limits and its refusals."""

import numpy as np
import pytest

from experiments import fidelity_power as fp


def test_a_proxy_that_is_madds_never_resolves():
    corr = fp.correlation(0.4, 0.4, 1.0)
    res = fp.power(20, corr, sims=20, resamples=50, rng=np.random.default_rng(0))
    assert res["power"] == 0.0 and res["mean_diff"] == pytest.approx(0.0, abs=1e-12)


def test_a_perfect_proxy_against_useless_madds_resolves():
    corr = fp.correlation(1.0, 0.0, 0.0)
    res = fp.power(40, corr, sims=10, resamples=100, rng=np.random.default_rng(0))
    assert res["power"] == 1.0 and res["mean_diff"] > 0.7


def test_power_grows_with_networks():
    corr = fp.correlation(0.5, 0.2, 0.3)
    small = fp.power(8, corr, sims=60, resamples=100, rng=np.random.default_rng(1))["power"]
    large = fp.power(120, corr, sims=60, resamples=100, rng=np.random.default_rng(1))["power"]
    assert small < 0.3 < 0.7 < large


def test_correlation_matches_greiner_and_refuses_impossible_taus():
    c = fp.correlation(1 / 3, 0.0, 0.0)
    assert c[0, 2] == pytest.approx(0.5) and c[0, 1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="positive semi-definite"):
        fp.correlation(0.9, 0.9, -0.9)


@pytest.mark.parametrize("argv", [["--tau-proxy", "2", "--tau-madds", "0", "--tau-cross", "0"],
                                  ["--tau-proxy", "0.5", "--tau-madds", "0", "--tau-cross", "0", "--n", "3"],
                                  ["--tau-proxy", "0.9", "--tau-madds", "0.9", "--tau-cross", "-0.9"]])
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        fp.main(argv)
    assert e.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
