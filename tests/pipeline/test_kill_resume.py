"""A sample of the kill harness (experiments/kill_resume.py, whose full sweep has 41 kill
points): `stnas run` SIGKILLed inside a checkpoint write, in the sampling phase, in the
search, in retraining before its first checkpoint and in the baselines stage, resumed, ends
equal to an uninterrupted run."""

from pathlib import Path

import pytest

from experiments import kill_resume

SAMPLE = [["checkpoints/step_00000015.pt", "pool/sample_000.safetensors"],
          ["proxy_cache.jsonl:1"],
          ["retrain/budget_300k/config.yaml"],
          ["baselines/*/seed_0/checkpoints/step_00000003.pt.sha256"]]


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    work = tmp_path_factory.mktemp("kill")
    return kill_resume, work, kill_resume.reference(work)


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
