"""experiments/proxy_bias.py: the features it reads off an architecture and the sign of the bias."""

import json

import numpy as np
import pytest

from stnas.space.catalog import load_space

from experiments import proxy_bias as pb


def test_features_of_a_known_architecture():
    space = load_space("fashion-mnist")
    # ops: 0 mb_k3_e3, 1 mb_k3_e6, 2 mb_k5_e3, 3 mb_k5_e6, 4 mb_k7_e3, 5 mb_k7_e6
    arch = space.arch("fashion-mnist:01234500/" + "0" + "." * (len(space.branch_edges) - 1))
    f = pb.features(arch, space)
    assert f["kernel_sum"] == 3 + 3 + 5 + 5 + 7 + 7 + 3 + 3
    assert f["exp6_stem"] == 3 and f["branches"] == 1
    assert f["madds"] == space.madds(arch) and f["params"] == space.params(arch)
    assert 0 < f["branch_share"] < 1 and 0 < f["last_stage_share"] < 1
    none = space.arch("fashion-mnist:01234500/" + "." * len(space.branch_edges))
    assert pb.features(none, space)["branch_share"] == 0


def test_a_skip_adds_no_kernel_and_no_depth():
    space = load_space("digits")
    # ops: 0 mb_k3_e3, 1 mb_k3_e6, 2 mb_k5_e3, 3 skip; stem edges 0 and 2 change shape (no skip)
    off = "." * len(space.branch_edges)
    deep, shallow = space.arch(f"digits:022222/{off}"), space.arch(f"digits:032323/{off}")
    assert pb.features(deep, space)["kernel_sum"] == 3 + 5 * 5
    assert pb.features(deep, space)["depth"] == 6
    assert pb.features(shallow, space)["kernel_sum"] == 3 + 5 + 5
    assert pb.features(shallow, space)["depth"] == 3


def test_a_proxy_that_overrates_a_feature_has_positive_bias():
    rng = np.random.default_rng(0)
    n = 40
    truth = rng.normal(size=n)
    feat = rng.normal(size=n)
    proxy = truth + 3 * feat  # rewards the feature beyond what the truth does
    res = pb.bias_table({"feat": feat, "noise": rng.normal(size=n)}, proxy, truth, resamples=300)
    assert res["feat"]["bias"]["ci"][0] > 0.3
    assert res["feat"]["proxy"]["tau"] > 0.4 and abs(res["feat"]["truth"]["tau"]) < 0.3
    lo, hi = res["noise"]["bias"]["ci"]
    assert lo < 0 < hi
    under = pb.bias_table({"feat": feat}, truth - 3 * feat, truth, resamples=300)
    assert under["feat"]["bias"]["ci"][1] < -0.3


def test_a_file_that_is_not_a_table_is_refused(tmp_path, capsys):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit) as e:
        pb.main([str(bad), "--run", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "not a stnas-groundtruth table" in err and err.count("\n") == 1
