"""The run directory: checksummed formats, the lock, the overwrite guard, the run's space."""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnas.core import verified
from stnas.core.errors import CheckpointError, ConfigError
from stnas.core.rundir import LOCK, RunDir, check_same_inputs, differing
from stnas.core.weights import load_weights, save_weights
from stnas.space.catalog import load_space, run_space, save_run_space

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8) | \
    st.floats(allow_nan=False)
# top-level keys: any but the checksum's own (verified.DIGEST_KEY is reserved, see below)
records = st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: k != verified.DIGEST_KEY), st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=8), max_size=5)


def _flip(path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos % len(data)] ^= 0x20
    path.write_bytes(bytes(data))


def test_the_checksum_key_is_reserved(tmp_path):
    # a record read back (checksum stripped) and written again gets a fresh checksum
    path = tmp_path / "a.json"
    verified.write_json(path, {"a": 1, verified.DIGEST_KEY: "stale"})
    assert verified.read_json(path) == {"a": 1}


FORMATS = {"json": (verified.write_json, verified.read_json), "yaml": (verified.write_yaml, verified.read_yaml)}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@FAST
@given(obj=records, pos=st.integers(0, 10**6))
def test_round_trips_and_any_flip_is_caught(tmp_path, fmt, obj, pos):
    write, read = FORMATS[fmt]
    path = tmp_path / f"a.{fmt}"
    write(path, obj)
    assert read(path) == obj
    before = path.read_bytes()
    _flip(path, pos)
    try:
        got = read(path)
    except CheckpointError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:  # only a flip that leaves the content equal (whitespace, escapes) may pass
        assert got == obj, (before, path.read_bytes())


def test_yaml_cut_at_a_line_boundary_is_caught(tmp_path):
    path = tmp_path / "config.yaml"
    verified.write_yaml(path, {"a": 1, "b": {"c": 2, "d": 3}})
    lines = path.read_text().splitlines(keepends=True)
    for n in range(len(lines)):
        path.write_text("".join(lines[:n]))
        with pytest.raises(CheckpointError, match="config.yaml"):
            verified.read_yaml(path)


@FAST
@given(recs=st.lists(records, min_size=1, max_size=5), victim=st.integers(0, 4), pos=st.integers(0, 10**6))
def test_jsonl_drops_only_damaged_lines(tmp_path, recs, victim, pos):
    path = tmp_path / "c.jsonl"
    path.unlink(missing_ok=True)
    for r in recs:
        verified.append_jsonl(path, r)
    assert verified.read_jsonl(path) == (recs, 0)
    lines = path.read_bytes().split(b"\n")[:-1]
    victim %= len(lines)
    line = bytearray(lines[victim])
    line[pos % len(line)] ^= 0x01
    lines[victim] = bytes(line).replace(b"\n", b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    got, dropped = verified.read_jsonl(path)
    others = recs[:victim] + recs[victim + 1:]
    assert (got, dropped) in ((others, 1), (recs, 0))


def test_jsonl_survives_a_cut_line_and_invalid_utf8(tmp_path):
    path = tmp_path / "c.jsonl"
    verified.append_jsonl(path, {"a": 1})
    with open(path, "ab") as f:
        f.write(b'{"a": 2, "sha256": "\xff\xfe')  # cut short by a kill, invalid UTF-8
    verified.append_jsonl(path, {"a": 3})
    assert verified.read_jsonl(path) == ([{"a": 1}, {"a": 3}], 1)


def test_a_fifo_is_never_opened(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        verified.read_yaml(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_weights(fifo)


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(5, 3, generator=g), "b": torch.randn(3, generator=g).to(torch.bfloat16),
            "n": torch.tensor(7), "m": torch.arange(4, dtype=torch.int64)}


def test_weights_round_trip_and_every_data_byte_is_checked(tmp_path):
    path = save_weights(_state(), tmp_path / "w.safetensors", {"arch": "x", "step": "3"})
    tensors, meta = load_weights(path)
    assert meta == {"arch": "x", "step": "3"}
    assert all(torch.equal(tensors[k], v) for k, v in _state().items())
    size = path.stat().st_size
    data_bytes = 5 * 3 * 4 + 3 * 2 + 8 + 4 * 8
    for pos in range(size - data_bytes, size):  # every byte of the tensor data
        clean = path.read_bytes()
        _flip(path, pos)
        with pytest.raises(CheckpointError, match="w.safetensors"):
            load_weights(path)
        path.write_bytes(clean)


def test_weights_without_checksum_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file(_state(), tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="plain.safetensors.*no stnas checksum"):
        load_weights(tmp_path / "plain.safetensors")


def test_weights_files_are_byte_reproducible(tmp_path):
    """Several metadata keys (safetensors writes its metadata map in hash order)."""
    meta = {f"key{i}": str(i) for i in range(8)}
    code = ("import sys, torch; from stnas.core.weights import save_weights; "
            "save_weights({'a': torch.ones(3)}, sys.argv[1], {f'key{i}': str(i) for i in range(8)})")
    for name in ("a", "b", "c"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == (tmp_path / "c").read_bytes()
    assert load_weights(tmp_path / "a")[1] == meta


# ------------------------------------------------------------------ lock and guard
HOLD = ("import sys, time; from stnas.core.rundir import RunDir\n"
        "with RunDir(sys.argv[1]).lock():\n    print('held', flush=True); time.sleep(60)")


def test_a_second_process_is_refused_in_one_line_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use by another stnas process \(pid {holder.pid}") as err:
            with RunDir(run).lock():
                pass
        assert "\n" not in str(err.value)
        p = subprocess.run([sys.executable, "-m", "stnas.cli", "supernet", "train", "--preset", "digits",
                            "--data", "digits", "--out", str(run)], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and f"pid {holder.pid}" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
        assert sorted(x.name for x in run.iterdir()) == [LOCK]  # nothing written
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # SIGKILL: the lock file stays, with the dead pid in it
    holder.wait()
    assert (run / LOCK).read_text().strip() == str(holder.pid)
    with RunDir(run).lock():
        assert (run / LOCK).read_text().strip() == str(os.getpid())
        with RunDir(run).lock():  # re-entrant
            pass
    assert (run / LOCK).read_text() == ""


def test_lock_removes_interrupted_temporary_files_only(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    tmp = tmp_path / "checkpoints" / ".step_00000007.pt.abc123.tmp"
    keep = tmp_path / "checkpoints" / "step_00000007.pt"
    tmp.write_bytes(b"x")
    keep.write_bytes(b"y")
    with run.lock():
        pass
    assert not tmp.exists() and keep.read_bytes() == b"y"


def test_guard(tmp_path):
    run = RunDir(tmp_path / "r")
    run.guard(resume=False)  # absent
    run.path.mkdir()
    (run.path / LOCK).write_text("")
    (run.path / "space.yaml").write_text("written before the config")
    run.guard(resume=False)  # only what a run writes before its config
    with pytest.raises(ConfigError, match="holds no run"):
        run.guard(resume=True)
    (run.path / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="already holds a run.*--resume"):
        run.guard(resume=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        RunDir(tmp_path / "file").guard(resume=False)


@FAST
@given(old=records, data=st.data())
def test_differing_names_exactly_the_changed_keys(old, data):
    assert differing(old, old) == [] and differing(old, dict(reversed(list(old.items())))) == []
    key = data.draw(st.text(min_size=1, max_size=6))
    new = {**old, key: ["changed", old.get(key)]}
    assert differing(old, new) == [key] == differing(new, old)
    gone = {k: v for k, v in old.items() if k != key}
    assert differing(old, gone) == ([key] if key in old else [])


def test_differing_goes_one_level_into_sections():
    old = {"seed": 1, "config": {"generations": 2, "population": 6}, "space": "digits"}
    new = {"seed": 1, "config": {"generations": 3, "population": 6, "screen": 0.5}, "space": "digits"}
    assert differing(old, new) == ["config.generations", "config.screen"]
    assert differing(old, {**old, "config": None}) == ["config"]


def test_results_of_other_inputs_are_never_replaced(tmp_path):
    check_same_inputs(tmp_path, "a search", {"seed": 1}, {"seed": 1}, "choose another --out")
    with pytest.raises(ConfigError) as e:
        check_same_inputs(tmp_path, "a search", {"seed": 1, "a": 2}, {"seed": 2, "a": 2}, "choose another --out")
    assert str(e.value) == f"{tmp_path} holds a search made from other inputs (seed differ); choose another --out"
    with pytest.raises(CheckpointError, match="whose inputs cannot be read; remove it"):
        check_same_inputs(tmp_path, "a rank result", None, {"seed": 1}, "remove it", error=CheckpointError)


def test_the_runs_space_is_its_space_yaml(tmp_path):
    run = RunDir(tmp_path)
    run.save_config({"preset": "digits"})
    assert run_space(run).fingerprint == load_space("digits").fingerprint
    save_run_space(run, load_space("cifar"))  # the saved space wins over the config's preset
    assert run_space(run).fingerprint == load_space("cifar").fingerprint
    _flip(run.space_file, 40)
    with pytest.raises(CheckpointError, match="space.yaml"):
        run_space(run)
