"""Generated bad input through the CLI: every outcome is a clean success (exit 0) or one
error line with exit 2; never a traceback, never a hang, and nothing saved changes.

CI runs a fixed number of examples per target. A long run: ``STNAS_FUZZ_EXAMPLES=2000
STNAS_FUZZ_REPORT=fuzz.json pytest tests/test_fuzz.py -n 0``; with a report file,
failures are counted (inputs, clean errors, successes, tracebacks, hangs) instead of raised.
"""

import json
import os
import signal
import struct
import traceback
from collections import Counter

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnas.cli import main
from stnas.core.errors import StnasError
from stnas.core.rundir import LOCK, RunDir
from stnas.data.datasets import get_dataset
from stnas.pipeline.config import DEFAULTS
from stnas.space.catalog import load_preset, save_run_space

EXAMPLES = int(os.environ.get("STNAS_FUZZ_EXAMPLES", "25"))
REPORT = os.environ.get("STNAS_FUZZ_REPORT")
HANG_S = 20
COUNTS: Counter = Counter()
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=REPORT is None,
                suppress_health_check=list(HealthCheck))


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _dotted(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _dotted(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


KEYS = sorted(_dotted(DEFAULTS))
scalars = (st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.sampled_from([2**63, 10**400, -1, 0])
           | st.floats() | st.sampled_from([1e308, float("inf"), 1e-320])
           | st.text(max_size=12) | st.sampled_from(["", "3M", "1e400", "cpu", "digits", "sgld", ".inf"]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                      max_leaves=10)
BOMB = "a: &a [x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\n" \
       "d: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e]\n"
raw_texts = st.one_of(st.text(max_size=40), st.sampled_from([BOMB, "[" * 500 + "]" * 500, "{a: " * 300,
                                                             "!!python/object:os.system [ls]", "&a [*a]"]))


def _dump(value) -> str:
    try:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    except (yaml.YAMLError, RecursionError):
        return str(value)


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != LOCK}


def run_cli(argv, capsys, saved=None):
    """Runs the CLI; checks the outcome (or counts it, in report mode)."""
    before = _files(saved) if saved else None
    capsys.readouterr()
    COUNTS["inputs"] += 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    outcome, detail = None, ""
    try:
        rc = main(argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        if rc == 0:
            outcome = "successes"
        elif rc == 2 and len([ln for ln in lines if ln.startswith("stnas")]) == 1 and "Traceback" not in err \
                and len(lines[-1]) <= 1200:
            outcome = "clean_errors"
        else:
            outcome, detail = "bad_errors", f"rc {rc}: {err[-500:]}"
    except SystemExit as exc:  # argparse: its own one-line error
        outcome = "clean_errors" if exc.code == 2 else "bad_errors"
        detail = f"SystemExit {exc.code}"
    except Hang:
        outcome, detail = "hangs", f"over {HANG_S} s"
    except Exception:
        outcome, detail = "tracebacks", traceback.format_exc()[-800:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if before is not None and _files(saved) != before:
        outcome, detail = "changed_saved", "files of the saved run changed"
    COUNTS[outcome] += 1
    if outcome not in ("successes", "clean_errors"):
        COUNTS.setdefault("examples", [])
        if len(COUNTS["examples"]) < 20:
            COUNTS["examples"].append({"argv": [a[:200] for a in argv], "outcome": outcome, "detail": detail})
        if not REPORT:
            pytest.fail(f"{outcome} for {argv}: {detail}")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory that holds a run (its config and space), which no input may change."""
    run = RunDir(tmp_path_factory.mktemp("saved") / "run")
    run.path.mkdir()
    save_run_space(run, __import__("stnas.space.catalog", fromlist=["load_space"]).load_space("digits"))
    from stnas.pipeline.config import resolve
    run.save_config(resolve("digits"))
    (run.path / "metrics.jsonl").write_text("")
    return run.path


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if REPORT:
        with open(REPORT, "w") as f:
            json.dump(COUNTS, f, indent=2, default=str)


@FUZZ
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS) | st.text(max_size=10), values | raw_texts), max_size=3))
def test_overrides(pairs, saved_run, capsys):
    overrides = [f"{k}={v if isinstance(v, str) else _dump(v)}" for k, v in pairs]
    run_cli(["supernet", "train", "--preset", "digits", "--data", "digits", "--out", str(saved_run)] + overrides,
            capsys, saved_run)


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(sorted(DEFAULTS)) | st.text(max_size=6), values, max_size=4) | values,
       raw=st.none() | raw_texts)
def test_config_files(doc, raw, saved_run, tmp_path_factory, capsys):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(raw if raw is not None else _dump(doc))
    run_cli(["supernet", "train", "--config", str(path), "--out", str(saved_run)], capsys, saved_run)


arch_json = st.fixed_dictionaries({"format": st.sampled_from(["stnas-arch", "x"]) | values,
                                   "version": st.sampled_from([1, 2]) | values,
                                   "space": st.sampled_from(["digits", "nope"]) | values,
                                   "stem": st.lists(st.integers(-1, 40), max_size=8) | values,
                                   "branches": st.lists(st.integers(-1, 5) | st.none(), max_size=12) | values})


@FUZZ
@given(text=st.text(alphabet="digits:0123456789abz./", max_size=30) | raw_texts,
       obj=arch_json | values, as_json=st.booleans())
def test_architectures(text, obj, as_json, capsys):
    arg = json.dumps(obj) if as_json else text
    run_cli(["arch", "show", arg], capsys)


SPACE = load_preset("digits")["space"]


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(SPACE)), values), max_size=3), raw=st.none() | raw_texts)
def test_space_files(edits, raw, tmp_path_factory, capsys):
    space = dict(SPACE)
    for key, value in edits:
        space[key] = value
    path = tmp_path_factory.mktemp("space") / "s.yaml"
    path.write_text(raw if raw is not None else _dump({"space": space}))
    run_cli(["space", "show", str(path)], capsys)


@FUZZ
@given(n=st.integers(-5, 10**12).map(str) | st.sampled_from(["1e9", "x", "", "-0"]),
       madds=st.sampled_from(["1", "300k", "1e400", "9" * 400, "0", "-1M", "500k"]),
       seed=st.integers(-2**70, 2**70).map(str))
def test_cli_numbers(n, madds, seed, capsys):
    if n.lstrip("-").isdigit() and int(n) > 50:
        n = "50"  # a valid large n is a long clean success, not bad input
    run_cli(["space", "sample", "digits", "-n", n, "--max-madds", madds, "--seed", seed], capsys)


def _idx(dtype_code: int, shape: tuple, data: bytes) -> bytes:
    return b"\0\0" + bytes([dtype_code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + data


@FUZZ
@given(n_images=st.integers(0, 6), n_labels=st.integers(0, 8), ndim=st.integers(0, 4),
       label=st.integers(0, 255), fifo=st.booleans(), garbage=st.booleans())
def test_data_folders(n_images, n_labels, ndim, label, fifo, garbage, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("data")
    shape = (n_images, 28, 28, 1, 1)[:ndim] if ndim else ()
    size = int(np.prod(shape)) if shape else 0
    for part in ("train", "t10k"):
        (root / f"{part}-images-idx3-ubyte").write_bytes(_idx(0x08, shape, bytes(size)))
        (root / f"{part}-labels-idx1-ubyte").write_bytes(
            b"garbage" if garbage else _idx(0x08, (n_labels,), bytes([label % 256]) * n_labels))
    if fifo:
        (root / "t10k-images-idx3-ubyte").unlink()
        os.mkfifo(root / "t10k-images-idx3-ubyte")
    COUNTS["inputs"] += 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        get_dataset("fashion-mnist", "train", str(root), download=False)
        COUNTS["successes"] += 1
    except StnasError as exc:
        assert "\n" not in str(exc).strip()
        COUNTS["clean_errors"] += 1
    except Hang:
        COUNTS["hangs"] += 1
        if not REPORT:
            pytest.fail("reading the data folder hung")
    except Exception:
        COUNTS["tracebacks"] += 1
        if not REPORT:
            raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
