"""Promises kept under pressure (issue #36): the commands that read a proxy cache or a training
log run under an address-space limit far below the 16 GiB bound of those files, and each input
that used to end in a traceback is one line on stderr, exit code 2, with nothing saved changed."""

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys

import pytest
import torch

from stnas.cli import main
from stnas.core.rundir import LOCK, RunDir
from stnas.space.presets import read_preset

ARCH = "digits:012012/.1.0....."
# torch imports in about 3 GiB of address space here; the old read of a cache asked for 16 GiB
ADDRESS_SPACE = 8 << 30
SEARCH = ["--mode", "single", "--generations", "1", "--population", "4", "search.parents=2", "device=cpu"]


def snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != LOCK}


def one_line_error(argv, capsys, *words: str) -> str:
    """Runs ``stnas ARGV``: exit code 2 and one stderr line that holds each of ``words``."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's one-line errors
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    """A copy of the trained run with a proxy cache (a search scored into it)."""
    run = shutil.copytree(trained_run, tmp_path_factory.mktemp("pressure") / "run")
    assert main(["search", str(run), "--out", str(run.parent / "search")] + SEARCH) == 0
    assert RunDir(run).cache.stat().st_size > 0
    return run


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize("argv", [
    ["search", "{run}", "--out", "{tmp}/search"] + SEARCH,  # replays from the proxy cache
    ["supernet", "train", "--resume", "--out", "{run}"],  # reads (and cuts back) metrics.jsonl
])
def test_cache_readers_under_an_address_space_limit(run, tmp_path, argv):
    work = shutil.copytree(run, tmp_path / "run")
    argv = [a.replace("{run}", str(work)).replace("{tmp}", str(tmp_path)) for a in argv]
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2", STNAS_TEST_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "stnas.cli", *argv], capture_output=True, text=True, env=env,
                       preexec_fn=_limited, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "MemoryError" not in p.stderr


# ------------------------------------------------------------------ the tracebacks of issue #36
@pytest.mark.parametrize("arch", ["a" * 5000, "a" * 5000 + ".json", "x/" + "a" * 300 + "/y.json"])
def test_over_long_architecture_argument(arch, capsys):
    line = one_line_error(["arch", "show", arch], capsys)
    assert "does not exist" in line or "too long" in line or "names no space" in line
    assert len(line) < 600  # the name is cut short in the message, the problem stays on the line


@pytest.mark.parametrize("argv", [
    ["space", "show", "{long}"],
    ["search", "{long}"],
    ["supernet", "train", "--preset", "digits", "--out", "{tmp}/{long}"],
    ["supernet", "train", "--preset", "digits", "--data", "{long}", "--out", "{tmp}/r"],
    ["supernet", "train", "--preset", "digits", "--config", "{long}.yaml", "--out", "{tmp}/r"],
    ["export", "{tmp}", "--arch", ARCH, "--out", "{tmp}/{long}"],
    ["rank", "{tmp}", "--truth", "{long}.json"],
])
def test_over_long_paths_and_names(argv, tmp_path, capsys):
    argv = [a.replace("{long}", "b" * 5000).replace("{tmp}", str(tmp_path)) for a in argv]
    one_line_error(argv, capsys)
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("where", [("num_classes",), ("input", "size"), ("stages", 0, "channels"),
                                   ("stages", 1, "depth"), ("head", "channels"), ("head", "dropout"),
                                   ("branch", "depths", 1)])
@pytest.mark.parametrize("value", [10**400, -10**400, 2**63])
def test_huge_integer_in_a_space_file(where, value, tmp_path, capsys):
    space = read_preset("digits")["space"]
    node = space
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"space": space}))  # JSON is YAML; a 400-digit int as written
    one_line_error(["space", "show", path], capsys, f"{where[-1] if isinstance(where[-1], str) else where[-2]}")


def test_space_whose_largest_network_outgrows_the_counters(tmp_path, capsys):
    space = read_preset("digits")["space"]
    space["input"]["size"] = 16384
    space["stages"] = [{"channels": 65536, "depth": 4, "stride": 1}]
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"space": space}))
    one_line_error(["space", "show", path], capsys, "largest network")


def test_export_out_is_a_file(run, tmp_path, capsys):
    out = tmp_path / "model"
    out.write_text("mine")
    before = snapshot(run)
    for target in (out, out / "sub"):
        one_line_error(["export", run, "--arch", ARCH, "--out", target, "--no-onnx"], capsys, "model",
                       "not a directory")
    one_line_error(["export", run, "--arch", ARCH, "--out", run, "--no-onnx"], capsys, "holds a run")
    assert out.read_text() == "mine" and snapshot(run) == before


@pytest.fixture(scope="module")
def retrain_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrain") / "rt"
    assert main(["retrain", "--arch", ARCH, "--epochs", "1", "--batch-size", "32", "retrain.limit=64",
                 "retrain.progress=false", "device=cpu", "--out", str(out)]) == 0
    return out


def test_resume_a_run_of_another_kind(run, retrain_run, tmp_path, capsys):
    supernet = shutil.copytree(run, tmp_path / "supernet")
    # what an export into the run directory (refused now) left: an arch.json and a model card
    for name in ("arch.json", "model_card.json"):
        shutil.copy(retrain_run / name, supernet / name)
    before = snapshot(supernet), snapshot(retrain_run)
    one_line_error(["retrain", "--resume", "--out", supernet], capsys, "supernet run", "not a retrain run")
    one_line_error(["supernet", "train", "--resume", "--out", retrain_run], capsys, "retrain run",
                   "not a supernet run")
    one_line_error(["run", "--resume", "--out", retrain_run], capsys, "not a supernet run")
    assert (snapshot(supernet), snapshot(retrain_run)) == before


def test_retrain_card_without_its_numbers(retrain_run, tmp_path, capsys):
    from stnas.core.verified import read_json, write_json

    rt = shutil.copytree(retrain_run, tmp_path / "rt")
    card = read_json(rt / "model_card.json")
    del card["top1"]
    write_json(rt / "model_card.json", card)  # checksummed, so only the fields can tell
    before = snapshot(rt)
    one_line_error(["retrain", "--resume", "--out", rt], capsys, "model_card.json", "top1")
    assert snapshot(rt) == before


def test_deeply_nested_truth_file(run, tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    before = snapshot(run)
    one_line_error(["rank", run, "--truth", deep, "--out", tmp_path / "rank.json"], capsys, "deep.json", "nests")
    assert snapshot(run) == before and not (tmp_path / "rank.json").exists()


def forge(run, step_file: str, **changes) -> None:
    """Rewrites a checkpoint's state with ``changes`` and a matching sidecar checksum."""
    path = run / "checkpoints" / step_file
    obj = torch.load(path, weights_only=True)
    obj["state"].update(changes)
    torch.save(obj, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (run / "checkpoints" / f"{step_file}.sha256").write_text(f"{digest}  {step_file}\n")


@pytest.mark.parametrize("step", [-5, 10**30, "6", 6.0, True])
def test_forged_checkpoint_step(run, tmp_path, capsys, step):
    work = shutil.copytree(run, tmp_path / "run")
    latest = sorted(p.name for p in (work / "checkpoints").glob("step_*.pt"))[-1]
    forge(work, latest, step=step)
    before = snapshot(work)
    one_line_error(["supernet", "train", "--resume", "--out", work], capsys, latest, "step")
    assert snapshot(work) == before  # the pool and the training log were not cut back


@pytest.mark.parametrize("last", [{"loss": "x"}, {"loss": None}, {"acc": [1]}, {"phase": "elsewhere"}, {3: 1.0}])
def test_forged_checkpoint_last_record(run, tmp_path, capsys, last):
    """The last logged record is of the types stnas writes, or the checkpoint is refused before
    anything of the run is cut back (a string loss reached the pool's float() before)."""
    work = shutil.copytree(run, tmp_path / "run")
    first = sorted(p.name for p in (work / "checkpoints").glob("step_*.pt"))[0]
    for p in (work / "checkpoints").glob("step_*.pt*"):
        if not p.name.startswith(first):
            p.unlink()
    forge(work, first, last=last)
    before = snapshot(work)
    one_line_error(["supernet", "train", "--resume", "--out", work], capsys, first, "does not fit this run")
    assert snapshot(work) == before
