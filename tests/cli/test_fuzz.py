"""Generated bad input through the CLI: every outcome is a clean success (exit 0) or one
error line with exit 2; never a traceback, never a hang, and nothing saved changes.

CI runs a fixed number of examples per target. A long run: ``STNAS_FUZZ_EXAMPLES=2000
STNAS_FUZZ_REPORT=fuzz.json pytest tests/cli/test_fuzz.py -n 0``; with a report file,
failures are counted (inputs, clean errors, successes, tracebacks, hangs) instead of raised.

The targets: config overrides and files, architectures, space files (with huge integers),
numbers, data folders; over-long arguments in every command; output paths below or at a
file; a run directory of the wrong kind given to ``--resume``; deeply nested JSON in every
reader of JSON handed in from outside; checkpoints forged with a matching checksum.
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
RESUME_HANG_S = 120  # a resume from a forged earlier step trains the rest of the run (a few s alone)
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


def _files(*roots):
    return {p: p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file() and p.name != LOCK}


def run_cli(argv, capsys, saved=None, writes_on_success: bool = False, hang_s: int = HANG_S):
    """Runs the CLI; checks the outcome (or counts it, in report mode). ``saved``: a folder (or
    a tuple of them) nothing may change in (``writes_on_success``: unless the command succeeds);
    ``hang_s``: the seconds after which it counts as hung. A hang, traceback or bad error is
    counted as such even when files changed too."""
    saved = (saved,) if isinstance(saved, os.PathLike) else saved
    before = _files(*saved) if saved else None
    capsys.readouterr()
    COUNTS["inputs"] += 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(hang_s)
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
        outcome, detail = "hangs", f"over {hang_s} s"
    except Exception:
        outcome, detail = "tracebacks", traceback.format_exc()[-800:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if (before is not None and outcome in ("successes", "clean_errors") and _files(*saved) != before
            and not (writes_on_success and outcome == "successes")):
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


# ------------------------------------------------------------------ issue #36: inputs under pressure
ARCH = "digits:012012/.1.0....."
# no file can have these names: a name over 255 bytes, or a path over 4096 bytes
too_long = st.one_of(
    st.tuples(st.integers(256, 6000), st.sampled_from(["", ".json", ".yaml", ".npz", ".safetensors"]))
    .map(lambda t: "a" * t[0] + t[1]),
    st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=256, max_size=400),
    st.lists(st.integers(200, 250), min_size=20, max_size=30).map(lambda ns: "/".join("d" * n for n in ns)))
LONG_ARGVS = [
    ["arch", "show", "{L}"], ["arch", "show", ARCH, "--space", "{L}"], ["arch", "draw", ARCH, "-o", "{L}"],
    ["space", "show", "{L}"], ["space", "sample", "{L}", "-n", "1"], ["latency", "build", "{L}"],
    ["latency", "build", "digits", "--out", "{L}"], ["latency", "show", "{L}"], ["latency", "query", "{L}", ARCH],
    ["supernet", "train", "--preset", "{L}", "--out", "{S}"], ["supernet", "train", "--config", "{L}", "--out", "{S}"],
    ["supernet", "train", "--preset", "digits", "--data", "{L}", "--out", "{S}"],
    ["supernet", "train", "--preset", "digits", "--data-root", "{L}", "--out", "{S}"],
    ["supernet", "train", "--preset", "digits", "--out", "{L}"],
    ["supernet", "train", "--out", "{S}", "--resume", "{L}"],
    ["supernet", "train", "--preset", "digits", "--out", "{S}", "data.root={L}"],
    ["supernet", "train", "--preset", "digits", "--out", "{S}", "supernet.init={L}"],
    ["retrain", "--arch", "{L}", "--out", "{S}"], ["retrain", "--arch", ARCH, "--preset", "{L}", "--out", "{S}"],
    ["run", "--preset", "digits", "--data", "{L}", "--out", "{S}"], ["run", "--out", "{L}", "--resume"],
    ["export", "{L}", "--arch", ARCH], ["export", "{S}", "--arch", "{L}"],
    ["export", "{S}", "--arch", ARCH, "--out", "{L}"],
    ["export", "{S}", "--arch", ARCH, "--weights", "{L}"], ["search", "{L}"], ["search", "{S}", "--out", "{L}"],
    ["search", "{S}", "--config", "{L}"], ["search", "{S}", "--few-shot", "{L}"],
    ["search", "{S}", "--latency-table", "{L}"],
    ["search", "{S}", "latency.table={L}"], ["rank", "{S}", "--truth", "{L}"], ["rank", "{L}", "--truth", "t.json"],
    ["stability", "{S}", "--archs", "{L}"], ["stability", "{S}", "--out", "{L}"], ["predict", "{L}", "x.png"],
    ["predict", "{S}", "{L}"],
]


@FUZZ
@given(argv=st.sampled_from(LONG_ARGVS), text=too_long)
def test_over_long_arguments(argv, text, saved_run, capsys):
    run_cli([a.replace("{L}", text).replace("{S}", str(saved_run)) for a in argv], capsys, saved_run)


INT_LEAVES = [("input", "channels"), ("input", "size"), ("num_classes",), ("stem", "channels"), ("stem", "stride"),
              ("first_block", "channels"), ("stages", 0, "channels"), ("stages", 1, "depth"), ("stages", 2, "stride"),
              ("branch", "depths", 0), ("head", "channels"), ("head", "dropout")]
huge = st.sampled_from([10**400, -10**400, 2**63, 2**64, -2**63 - 1, 2**31, 65537, 16385, 1025]) | st.integers()


@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(INT_LEAVES), huge), min_size=1, max_size=3),
       command=st.sampled_from(["show", "sample"]))
def test_huge_integers_in_spaces(edits, command, tmp_path_factory, capsys):
    space = json.loads(json.dumps(SPACE))
    for where, value in edits:
        node = space
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
    path = tmp_path_factory.mktemp("space") / "s.yaml"
    path.write_text(json.dumps({"space": space}))  # JSON is YAML: every digit as written
    run_cli(["space", command, str(path)] + (["-n", "2"] if command == "sample" else []), capsys)


@pytest.fixture(scope="module")
def kinds(trained_run, tmp_path_factory):
    """A run directory of every kind, each saved (no input may change it): a supernet run, a
    retrain run, an exported model and a search output."""
    import shutil

    root = tmp_path_factory.mktemp("kinds")
    supernet = shutil.copytree(trained_run, root / "supernet")
    quick = ["device=cpu", "--out"]
    assert main(["retrain", "--arch", ARCH, "--epochs", "1", "--batch-size", "32", "retrain.limit=64",
                 "retrain.progress=false"] + quick + [str(root / "retrain")]) == 0
    assert main(["export", str(supernet), "--arch", ARCH, "--no-onnx", "--no-recalibrate",
                 "--out", str(root / "export")]) == 0
    assert main(["search", str(supernet), "--mode", "single", "--generations", "1", "--population", "4",
                 "search.parents=2", "--out", str(root / "search")] + quick[:1]) == 0
    return {k: root / k for k in ("supernet", "retrain", "export", "search")}


# every (kind, --resume command) pair but a run resumed as its own kind
WRONG_KIND = [(k, c) for k in ("supernet", "retrain", "export", "search") for c in ("supernet", "retrain", "run")
              if (k, c) not in {("supernet", "supernet"), ("supernet", "run"), ("retrain", "retrain")}]
RESUME = {"supernet": ["supernet", "train"], "retrain": ["retrain"], "run": ["run"]}


@FUZZ
@given(pair=st.sampled_from(WRONG_KIND))
def test_resume_a_run_of_the_wrong_kind(pair, kinds, capsys):
    kind, command = pair
    run_cli(RESUME[command] + ["--resume", "--out", str(kinds[kind])], capsys, kinds[kind].parent)


@FUZZ
@given(command=st.sampled_from([
    ["export", "{R}", "--arch", ARCH, "--no-onnx", "--out", "{F}"], ["export", "{R}", "--arch", ARCH, "--out", "{F}/m"],
    ["search", "{R}", "--out", "{F}"], ["search", "{R}", "--out", "{F}/s"], ["stability", "{R}", "--out", "{F}"],
    ["stability", "{R}", "--out", "{F}/x.json"], ["arch", "draw", ARCH, "-o", "{F}/a.png"],
    ["latency", "build", "digits", "--out", "{F}/t.json"], ["latency", "build", "digits", "--out", "{F}"],
    ["supernet", "train", "--preset", "digits", "--out", "{F}"], ["supernet", "train", "--preset", "digits", "--out",
                                                                  "{F}/r"],
    ["retrain", "--arch", ARCH, "--out", "{F}"], ["run", "--preset", "digits", "--out", "{F}/r"],
    ["export", "{R}", "--arch", ARCH, "--out", "{R}"]]), content=st.sampled_from([b"mine\n", b"", b"{}", b"\xff"]))
def test_output_paths_that_are_files(command, content, kinds, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("out")
    (folder / "file").write_bytes(content)
    argv = [a.replace("{F}", str(folder / "file")).replace("{R}", str(kinds["supernet"])) for a in command]
    run_cli(argv, capsys, (folder, kinds["supernet"]))


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "1" + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


JSON_READERS = [
    (["arch", "show", "{J}"], "text"), (["arch", "show", "{P}"], "file"), (["export", "{R}", "--arch", "{P}"], "file"),
    (["rank", "{R}", "--truth", "{P}"], "file"), (["rank", "{R}", "--truth", "{T}", "--archs", "{P}"], "file"),
    (["rank", "{R}", "--truth", "{T}", "--archs", "{P}"], "line"), (["stability", "{R}", "--archs", "{P}"], "file"),
    (["latency", "show", "{P}"], "file"), (["latency", "query", "{P}", ARCH], "file"),
    (["search", "{R}", "--latency-table", "{P}", "--latency-budget", "1ms"], "file"),
    (["space", "show", "{P}"], "file"), (["supernet", "train", "--config", "{P}", "--out", "{S}"], "file"),
]


@FUZZ
@given(reader=st.sampled_from(JSON_READERS), depth=st.integers(33, 3000) | st.just(200_000),
       kind=st.sampled_from(["list", "dict"]))
def test_deep_json_in_every_reader(reader, depth, kind, kinds, saved_run, tmp_path_factory, capsys):
    argv, form = reader
    folder = tmp_path_factory.mktemp("json")
    text = _nested(depth, kind)
    path = folder / "deep.json"  # for "line": a JSONL architecture list whose third line nests deeply
    path.write_text(f'{ARCH}\ndigits:000000/.........\n{{"x": {text}}}\n' if form == "line" else text)
    truth = folder / "truth.json"
    truth.write_text(json.dumps({"format": "stnas-truth", "version": 1, "results": [
        {"arch": a, "top1": 0.5} for a in (ARCH, "digits:000000/.........", "digits:111111/.........")]}))
    swap = {"{J}": text, "{P}": str(path), "{R}": str(kinds["supernet"]), "{T}": str(truth), "{S}": str(saved_run)}
    for key, value in swap.items():
        argv = [a.replace(key, value) for a in argv]
    run_cli(argv + ["--out", str(folder / "out.json")] if argv[0] in ("rank", "stability") else argv, capsys,
            kinds["supernet"].parent)


FORGEABLE = ["step", "acc", "acc.loss", "acc.n", "last", "rng", "rng.torch", "rng.numpy.keys", "rng.python.state",
             "optimizer_kind", "optimizer", "optimizer.state", "optimizer.sgld_seed", "optimizer.param_groups",
             "model", "seed", "total_steps"]
forged_values = st.sampled_from([-1, -5, 10**30, 2**63, 2**64, "6", 6.0, True, None, [], {}, "x", float("nan"),
                                 [-1], {"loss": "x"}]) | st.integers(-2**70, 2**70)


@FUZZ
@given(key=st.sampled_from(FORGEABLE), value=forged_values, which=st.sampled_from([0, -1]))
def test_forged_but_checksummed_checkpoints(key, value, which, trained_run, tmp_path_factory, capsys):
    import hashlib
    import shutil

    import torch

    run = shutil.copytree(trained_run, tmp_path_factory.mktemp("forged") / "run")
    files = sorted((run / "checkpoints").glob("step_*.pt"))
    for other in files[:which] if which else files[1:]:  # the forged one is the latest
        other.unlink()
        other.with_name(other.name + ".sha256").unlink()
    path = files[which]
    obj = torch.load(path, weights_only=True)
    node, *parts = [obj["state"], *key.split(".")]
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    torch.save(obj, path)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")
    # a checkpoint forged to an earlier step resumes cleanly and trains the rest of the run
    run_cli(["supernet", "train", "--resume", "--out", str(run)], capsys, run, writes_on_success=True,
            hang_s=RESUME_HANG_S)
