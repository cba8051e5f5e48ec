"""A sample of the kill harness (experiments/kill_resume.py, whose full sweep has 41 kill
points): `stnas run` SIGKILLed inside a checkpoint write, in the sampling phase, in the
search, in retraining before its first checkpoint and in the baselines stage, resumed, ends
equal to an uninterrupted run."""

import importlib.util
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "experiments" / "kill_resume.py"
SAMPLE = [["checkpoints/step_00000015.pt", "pool/sample_000.safetensors"],
          ["proxy_cache.jsonl:1"],
          ["retrain/budget_300k/config.yaml"],
          ["baselines/*/seed_0/checkpoints/step_00000003.pt.sha256"]]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("kill_resume", HARNESS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    work = tmp_path_factory.mktemp("kill")
    return mod, work, mod.reference(work)


def test_the_sample_is_in_the_sweep(harness):
    mod, *_ = harness
    assert all(chain in mod.POINTS for chain in SAMPLE) and len(mod.POINTS) >= 30


@pytest.mark.parametrize("chain", SAMPLE, ids=lambda c: " then ".join(c))
def test_killed_and_resumed_run_is_equal(harness, chain):
    mod, work, ref = harness
    res = mod.kill_and_resume(ref, work / "cut", chain)
    assert res["kills"] >= 1, "the run ended before the kill point"
    assert res["diffs"] == []


def test_compare_sees_a_difference(harness, tmp_path):
    import shutil

    mod, _, ref = harness
    other = Path(shutil.copytree(ref, tmp_path / "other"))
    data = bytearray((other / "pool" / "sample_001.safetensors").read_bytes())
    data[-1] ^= 1
    (other / "pool" / "sample_001.safetensors").write_bytes(bytes(data))
    assert mod.compare(ref, other) == ["pool/sample_001.safetensors differs",
                                       "report.json differs"]  # the copy's report names ref's plots
