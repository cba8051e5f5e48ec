"""experiments/proxy_record.py: a run's proxy cells kept as a file, read by fidelity.py and
proxy_bias.py in place of the run, extended only by what is new, refused when stale."""

import json

import numpy as np
import pytest

from stnas.core.verified import write_json
from stnas.space.catalog import load_space

from experiments import fidelity as fid
from experiments import proxy_bias as pb
from experiments import proxy_record as pr


def _table(tmp_path, archs):
    """A ground-truth table of ``archs`` (made-up truths: the reading only ranks them)."""
    space = load_space("digits")
    rows = [{"arch": a, "budget": 1, "madds": space.madds(space.arch(a)), "params": space.params(space.arch(a)),
             "seeds": {"0": {"top1": 0.5 + 0.01 * i, "test_loss": 1.0 - 0.01 * i},
                       "1": {"top1": 0.5 + 0.01 * ((i * 7) % 5), "test_loss": 1.0 - 0.01 * ((i * 3) % 5)}}}
            for i, a in enumerate(archs)]
    table = {"format": "stnas-groundtruth", "preset": "digits", "budgets": [1], "seeds": [0, 1], "rows": rows}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(table))
    return path


def _fails(fn, argv, capsys, match):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        fn(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_a_record_reads_as_its_run_and_grows_by_the_new_networks(trained_copy, tmp_path, capsys):
    space = load_space("digits")
    rng = np.random.default_rng(5)
    archs = list(dict.fromkeys(str(space.sample(rng)) for _ in range(7)))[:6]
    (tmp_path / "a").mkdir()
    first = _table(tmp_path / "a", archs[:4])
    table = _table(tmp_path, archs)
    rec = tmp_path / "rec.json"
    pr.main([f"{trained_copy}:r", "--archs", str(first), "--k", "1,2", "--out", str(rec)])
    one = json.loads(rec.read_text())
    assert one["label"] == "r" and one["preset_cell"] in one["cells"]
    assert all(sorted(v) == sorted(archs[:4]) for v in one["cells"].values())
    # extending: the 4 recorded networks are kept as they are, only 2 are scored now
    cache = trained_copy / "proxy_cache.jsonl"
    lines = len(cache.read_text().splitlines())
    pr.main([f"{trained_copy}:r", "--archs", str(table), "--k", "1,2", "--out", str(rec)])
    two = json.loads(rec.read_text())
    assert all(sorted(v) == sorted(archs) for v in two["cells"].values())
    assert all(two["cells"][c][a] == one["cells"][c][a] for c in one["cells"] for a in archs[:4])
    assert len(cache.read_text().splitlines()) > lines  # the new ones were evaluated
    # the record gives the cells the run gives (scored anew, from the run's cache)
    direct = fid.score_run(str(trained_copy), archs, [1, 2])
    assert fid.run_cells(str(rec), archs, [1, 2]) == direct  # from the cache: exact
    assert sorted(fid.run_cells(str(rec), archs, [1])) == sorted(c for c in direct if "@2" not in c)
    # fidelity.py reads it in place of the run: the same taus
    out_run, out_rec = tmp_path / "run.json", tmp_path / "recd.json"
    base = [str(table), "--k", "1,2", "--resamples", "100"]
    fid.main(base + ["--runs", f"{trained_copy}:r", "--out", str(out_run)])
    fid.main(base + ["--runs", str(rec), "--out", str(out_rec)])
    got, want = (json.loads(p.read_text())["budgets"]["1"]["cells"] for p in (out_rec, out_run))
    assert {c: v["tau"] for c, v in got.items()} == pytest.approx({c: v["tau"] for c, v in want.items()})
    # replicate groups and ensembles of records: two copies of one run are replicates with
    # no spread, and their ensemble scores as either does
    twin = tmp_path / "twin.json"
    write_json(twin, json.loads(rec.read_text()) | {"label": "t"})
    out_g = tmp_path / "g.json"
    fid.main(base + ["--runs", str(rec), str(twin), "--replicates", "G=r,t", "--ensemble", "E=r,t",
                     "--contrast", "E:G", "--out", str(out_g)])
    g = json.loads(out_g.read_text())["budgets"]["1"]
    for c in ("single/loss", "stabilized@2/loss"):
        assert g["cells"][f"G {c}"]["rep_sd"] == 0
        assert g["cells"][f"G {c}"]["tau"] == pytest.approx(want[f"r {c}"]["tau"])
        assert g["cells"][f"E {c}"]["tau"] == pytest.approx(want[f"r {c}"]["tau"])
        assert g["contrasts"][f"E {c} - G {c}"]["diff"] == pytest.approx(0.0)
    _fails(fid.main, base + ["--runs", str(rec), "--replicates", "G=r,zz"], capsys, "--replicates")
    # proxy_bias.py too, by the run's own configured proxy
    for run, out in ((str(trained_copy), "b_run.json"), (str(rec), "b_rec.json")):
        pb.main([str(table), "--run", run, "--resamples", "100", "--out", str(tmp_path / out)])
    b_run, b_rec = (json.loads((tmp_path / o).read_text()) for o in ("b_run.json", "b_rec.json"))
    assert b_rec["budgets"]["1"]["proxy_tau"] == pytest.approx(b_run["budgets"]["1"]["proxy_tau"])


def test_stale_short_or_broken_records_are_refused(trained_copy, tmp_path, capsys):
    space = load_space("digits")
    rng = np.random.default_rng(6)
    archs = list(dict.fromkeys(str(space.sample(rng)) for _ in range(6)))[:5]
    table = _table(tmp_path, archs)
    rec = tmp_path / "rec.json"
    pr.main([f"{trained_copy}:r", "--archs", str(table), "--k", "1,2", "--out", str(rec)])
    good = rec.read_text()
    # a record of other weights (its run trained again, say): not extended, and kept
    stale = json.loads(good)
    stale["weights"]["final"] = "0" * 64
    stale_text = write_json(rec, stale).read_text()
    _fails(pr.main, [f"{trained_copy}:r", "--archs", str(table), "--k", "1,2", "--out", str(rec)], capsys,
           "other weights or settings")
    assert rec.read_text() == stale_text
    rec.write_text(good)
    assert rec.read_text() == good
    _fails(pr.main, [f"{trained_copy}:r", "--archs", str(table), "--k", "3", "--out", str(tmp_path / "k.json")],
           capsys, "not among --k")
    assert not (tmp_path / "k.json").exists()
    # a reading of networks the record lacks names what to do
    (tmp_path / "m").mkdir()
    more = _table(tmp_path / "m", archs + [str(space.sample(np.random.default_rng(99)))])
    _fails(fid.main, [str(more), "--runs", str(rec), "--resamples", "50"], capsys, "lacks 1 of the table's")
    _fails(fid.main, [str(table), "--runs", f"{rec}:x:proxy.recal_batches=1"], capsys, "settings are fixed")
    for junk in ("{nope", json.dumps({"format": "stnas-proxy-record", "version": 1, "cells": {"a": {"x": "y"}}})):
        (tmp_path / "junk.json").write_text(junk)
        _fails(fid.main, [str(table), "--runs", str(tmp_path / "junk.json")], capsys, "junk.json")
    _fails(pr.main, [str(rec), "--archs", str(table), "--out", str(tmp_path / "r2.json")], capsys, "a record already")


def test_epoch_cells_are_recorded_on_request_and_read_only_with_epochs(trained_copy, tmp_path, capsys):
    space = load_space("digits")
    rng = np.random.default_rng(8)
    archs = list(dict.fromkeys(str(space.sample(rng)) for _ in range(6)))[:4]
    table = _table(tmp_path, archs)
    rec = tmp_path / "rec.json"
    pr.main([str(trained_copy), "--epochs", "--archs", str(table), "--k", "1,2", "--out", str(rec)])
    got = json.loads(rec.read_text())
    epochs = fid.epoch_cells(str(trained_copy), archs)
    assert {c: got["cells"][c] for c in epochs} == epochs and set(got["weights"]["epochs"])
    assert not any(c.startswith("epoch") for c in fid.run_cells(str(rec), archs, [1, 2]))
    assert fid.run_cells(str(rec), archs, [1, 2], epochs=True) == got["cells"]
    plain = tmp_path / "plain.json"
    pr.main([str(trained_copy), "--archs", str(table), "--k", "1,2", "--out", str(plain)])
    _fails(fid.main, [str(table), "--runs", str(plain), "--epochs", "--resamples", "50"], capsys, "no epoch cells")
    _fails(pr.main, ["--archs", str(table), "--out", str(tmp_path / "x.json")], capsys, "not both")
