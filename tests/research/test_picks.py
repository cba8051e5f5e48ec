"""experiments/picks.py: placing a search's picks on a ground-truth table; percentiles by
hand, the build on the digits preset (the table's recipe, resume), and bad input."""

import json

import numpy as np
import pytest

from stnas.core.verified import write_json

from experiments import ground_truth as gt
from experiments import picks as pk


def _net(arch, *losses):
    return {"arch": arch, "budget": 1, "seeds": {str(s): {"top1": 1 - v, "test_loss": v} for s, v in enumerate(losses)}}


def test_place_one_by_hand():
    rows = [_net("a", 0.30, 0.32), _net("b", 0.28, 0.26), _net("c", 0.40, 0.38), _net("d", 0.35, 0.35)]
    # seed means: a 0.31, b 0.27, c 0.39, d 0.35; the pick (0.27, 0.34) -> mean 0.305
    pick = _net("p", 0.27, 0.34)
    res = pk.place_one(pick, rows, ["0", "1"], "test_loss", resamples=200)
    assert res["percentile"] == pytest.approx(0.75)  # better than a, c, d; worse than b
    assert res["value"] == pytest.approx(0.305) and res["top_quartile"]
    # seed 0 alone: 0.27 beats all four (b has 0.28); seed 1: 0.34 beats c 0.38 and d 0.35 only
    assert res["per_seed"] == {"0": pytest.approx(1.0), "1": pytest.approx(0.5)}
    assert 0.0 <= res["ci"][0] <= 0.75 <= res["ci"][1] <= 1.0
    top = pk.place_one(pick, rows, ["0", "1"], "top1", resamples=200)  # top-1 = 1 - loss here: same order
    assert top["percentile"] == pytest.approx(0.75) and top["value"] == pytest.approx(0.695)
    assert pk.place_one(_net("q", 0.3), rows, ["0", "1"], "test_loss")["percentile"] is None  # a seed missing


def _gt_build(tmp_path):
    gt.main(["build", "--preset", "digits", "--work", str(tmp_path / "gt"), "--out", str(tmp_path / "t.json"),
             "--budgets", "200k", "--band", "0.5", "--n", "4", "--seeds", "0,1", "--jobs", "1", "--threads", "1",
             "--set", "retrain.epochs=1", "--set", "retrain.limit=300"])
    return json.loads((tmp_path / "t.json").read_text())


def _search_dir(tmp_path, name, arch, budget=200_000):
    d = tmp_path / name
    d.mkdir()
    write_json(d / "best.json", {"records": [{"budget": budget, "rank": 1, "arch": arch},
                                             {"budget": budget, "rank": 2, "arch": "ignored"}]})
    return d


def test_build_retrains_picks_with_the_tables_recipe_and_places_them(tmp_path, capsys):
    table = _gt_build(tmp_path)
    pick = table["rows"][0]["arch"]  # a network the table holds: same recipe and seeds, same numbers
    other = table["rows"][1]["arch"]
    a, b = _search_dir(tmp_path, "sa", pick), _search_dir(tmp_path, "sb", other)
    argv = ["build", "--table", str(tmp_path / "t.json"), "--work", str(tmp_path / "pw"),
            "--out", str(tmp_path / "p.json"), f"A={a}", f"B={b}"]
    pk.main(argv + ["--jobs", "2"])  # two retrainings at a time: the same results as one by one
    picks = json.loads((tmp_path / "p.json").read_text())
    assert [(r["label"], r["arch"]) for r in picks["rows"]] == [("A", pick), ("B", other)]
    for r, want in zip(picks["rows"], table["rows"][:2]):
        assert set(r["seeds"]) == {"0", "1"}
        for s in ("0", "1"):  # retrained under the table's seed s and recipe: the table's result
            assert r["seeds"][s]["test_loss"] == pytest.approx(want["seeds"][s]["test_loss"], abs=1e-6)
    cards = sorted((tmp_path / "pw").glob("*/seed*/model_card.json"))
    assert len(cards) == 4
    stamps = [c.stat().st_mtime_ns for c in cards]
    pk.main(argv)  # rerun: every retraining reused
    assert [c.stat().st_mtime_ns for c in cards] == stamps
    # on another machine: the work folder and search B are gone, the picks table is the record
    import shutil

    shutil.rmtree(tmp_path / "pw")
    shutil.rmtree(b)
    pk.main(argv)
    assert not list((tmp_path / "pw").glob("*/seed*/model_card.json"))
    assert json.loads((tmp_path / "p.json").read_text()) == picks
    capsys.readouterr()
    pk.main(["place", str(tmp_path / "p.json"), str(tmp_path / "t.json"), "--json", str(tmp_path / "pl.json")])
    assert "A" in capsys.readouterr().out
    placed = json.loads((tmp_path / "pl.json").read_text())["rows"]
    means = [np.mean([s["test_loss"] for s in r["seeds"].values()]) for r in table["rows"]]
    assert placed[0]["percentile"] == pytest.approx(np.mean([m >= means[0] for m in means]))
    # the table grows a seed: the picks are placed on the seeds they have, until build adds it
    gt.main(["build", "--preset", "digits", "--work", str(tmp_path / "gt"), "--out", str(tmp_path / "t.json"),
                "--budgets", "200k", "--band", "0.5", "--n", "4", "--seeds", "0,1,2", "--jobs", "1",
                "--threads", "1", "--set", "retrain.epochs=1", "--set", "retrain.limit=300"])
    pk.main(["place", str(tmp_path / "p.json"), str(tmp_path / "t.json"), "--json", str(tmp_path / "pl2.json")])
    again = json.loads((tmp_path / "pl2.json").read_text())
    assert again["seeds"] == ["0", "1"] and again["rows"][0]["percentile"] == placed[0]["percentile"]
    pk.main(argv)
    grown = json.loads((tmp_path / "p.json").read_text())
    assert grown["seeds"] == [0, 1, 2] and [set(r["seeds"]) for r in grown["rows"]] == [{"0", "1", "2"}] * 2
    assert all(grown["rows"][i]["seeds"]["0"] == picks["rows"][i]["seeds"]["0"] for i in range(2))  # kept
    pk.main(["place", str(tmp_path / "p.json"), str(tmp_path / "t.json"), "--json", str(tmp_path / "pl3.json")])
    three = json.loads((tmp_path / "pl3.json").read_text())
    assert three["seeds"] == ["0", "1", "2"] and set(three["rows"][0]["per_seed"]) == {"0", "1", "2"}


def _fails(argv, capsys, match):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        pk.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    table = {"format": "stnas-groundtruth", "preset": "digits", "budgets": [200_000], "seeds": [0, 1],
             "overrides": [], "recipe": {}, "rows": []}
    from stnas.space.catalog import load_space

    table["space_fingerprint"] = load_space("digits").fingerprint
    (tmp_path / "t.json").write_text(json.dumps(table))
    base = ["build", "--table", str(tmp_path / "t.json"), "--work", str(tmp_path / "w"),
            "--out", str(tmp_path / "p.json")]
    _fails(base + ["nolabel"], capsys, "LABEL=SEARCH_DIR")
    for bad in ("1", "0,1,2", "1,0", "x"):  # not the first of the table's seeds (0, 1)
        _fails(base + ["--seeds", bad, "A=whatever"], capsys, "--seeds must be the first")
    _fails(base + [f"A={tmp_path}"], capsys, "best.json not found")
    _search_dir(tmp_path, "s4m", "x", budget=4_000_000)
    _fails(base + [f"A={tmp_path / 's4m'}"], capsys, "no rank-1 network for budget(s) 200,000")
    big = str(load_space("digits").extreme(largest=True))
    _search_dir(tmp_path, "big", big)
    _fails(base + [f"A={tmp_path / 'big'}"], capsys, "over its budget")
    _search_dir(tmp_path, "bad", "digits:not-an-arch")
    _fails(base + [f"A={tmp_path / 'bad'}", f"A={tmp_path / 'bad'}"], capsys, "labels repeat")
    (tmp_path / "junk.json").write_text("{not json")
    _fails(["place", str(tmp_path / "junk.json"), str(tmp_path / "t.json")], capsys, "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    _fails(["place", str(tmp_path / "other.json"), str(tmp_path / "t.json")], capsys, "not a stnas-groundtruth-picks")
    assert not (tmp_path / "w").exists() and not (tmp_path / "p.json").exists()  # nothing done before the checks
    _search_dir(tmp_path, "ok", "digits:whatever")
    for junk in ("{not json", json.dumps({"format": "something"}),
                 json.dumps({"format": pk.FORMAT, "space_fingerprint": "x", "recipe": {}, "overrides": [],
                             "seeds": [0, 1]})):
        (tmp_path / "p.json").write_text(junk)
        _fails(base + [f"A={tmp_path / 'ok'}"], capsys, "p.json")
        assert (tmp_path / "p.json").read_text() == junk and not (tmp_path / "w").exists()
