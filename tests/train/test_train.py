"""Supernet training: CLI run, exact SIGKILL-resume, corrupted checkpoints, torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stnas.cli import main
from stnas.core.errors import ConfigError
from stnas.pipeline.config import DEFAULTS
from stnas.train.engine import lr_at

from conftest import kill_at_first_checkpoint, run_cli

ENV = dict(os.environ, OMP_NUM_THREADS="1")
TRAIN = [sys.executable, "-m", "stnas.cli", "supernet", "train", "--preset", "digits", "--data", "digits",
         "supernet.progress=false"]
TRAIN_ARGS = TRAIN[3:]  # the same, for an in-process call (run_cli)


def _same_files(a: Path, b: Path):
    ta, tb = load_file(a), load_file(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_cli_train_writes_run_dir(tmp_path):
    out = tmp_path / "run"
    p = run_cli(TRAIN_ARGS + ["--out", out, "supernet.epochs=3", "pool.epochs=1", "pool.samples=2"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "config.yaml").is_file() and (out / "supernet.safetensors").is_file()
    assert list((out / "checkpoints").glob("step_*.pt"))
    assert json.loads((out / "pool" / "index.json").read_text())
    assert len(list((out / "pool").glob("sample_*.safetensors"))) == 2
    assert list((out / "tb").glob("events.out.tfevents.*"))
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs and recs[-1]["step"] == json.loads((out / "supernet.json").read_text())["steps"]
    # an existing run is never overwritten
    p = run_cli(TRAIN_ARGS + ["--out", out])
    assert p.returncode == 2 and "already holds" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_equal(tmp_path):
    args = ["supernet.epochs=4", "supernet.checkpoint_every=7", "pool.epochs=2", "pool.samples=3",
            "--optimizer", "sgld"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert run_cli(TRAIN_ARGS + ["--out", ref] + args).returncode == 0
    kill_at_first_checkpoint(TRAIN + ["--out", str(cut)] + args, cut, ENV)  # a real process, to SIGKILL
    assert not (cut / "supernet.safetensors").exists(), "the run finished before it could be killed"
    assert run_cli(TRAIN_ARGS[:2] + ["--out", cut, "--resume"]).returncode == 0
    _same_files(ref / "supernet.safetensors", cut / "supernet.safetensors")
    for f in sorted((ref / "pool").glob("sample_*.safetensors")):
        _same_files(f, cut / "pool" / f.name)
    assert [r["step"] for r in map(json.loads, (cut / "metrics.jsonl").read_text().splitlines())] == \
        [r["step"] for r in map(json.loads, (ref / "metrics.jsonl").read_text().splitlines())]


def test_corrupted_checkpoint_clear_error_previous_kept(tmp_path):
    out = tmp_path / "run"
    assert run_cli(TRAIN_ARGS + ["--out", out, "supernet.epochs=2", "supernet.checkpoint_every=5",
                                 "pool.epochs=1"]).returncode == 0
    ckpts = sorted((out / "checkpoints").glob("step_*.pt"))
    assert len(ckpts) == 2
    data = ckpts[-1].read_bytes()
    ckpts[-1].write_bytes(data[: len(data) // 2])  # truncated
    p = run_cli(TRAIN_ARGS[:2] + ["--out", out, "--resume"])
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert ckpts[-1].name in p.stderr and ckpts[0].name in p.stderr
    assert ckpts[0].exists() and ckpts[-1].exists()
    # the previous good one resumes
    p = run_cli(TRAIN_ARGS[:2] + ["--out", out, "--resume", ckpts[0]])
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_two_ranks(tmp_path):
    worker = str(Path(__file__).with_name("dist_worker.py"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    # (a) real training (BN in train mode, SGLD phase): both ranks end identical
    subprocess.run(torchrun + [worker, str(tmp_path / "a"), "--batch", "16"], check=True, env=ENV, timeout=600,
                   capture_output=True)
    _same_files(tmp_path / "a" / "rank0.safetensors", tmp_path / "a" / "rank1.safetensors")
    # (b) BN frozen, plain SGD: two ranks x 16 == one process x 32
    subprocess.run(torchrun + [worker, str(tmp_path / "b"), "--batch", "16", "--frozen-bn"], check=True,
                   env=ENV, timeout=600, capture_output=True)
    single_env = {k: v for k, v in ENV.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run([sys.executable, worker, str(tmp_path / "c"), "--batch", "32", "--frozen-bn"], check=True,
                   env=single_env, timeout=600, capture_output=True)
    two, one = load_file(tmp_path / "b" / "rank0.safetensors"), load_file(tmp_path / "c" / "rank0.safetensors")
    for k in one:
        torch.testing.assert_close(two[k], one[k], atol=1e-5, rtol=0)
    other = load_file(tmp_path / "b" / "rank1.safetensors")
    assert all(torch.equal(other[k], two[k]) for k in two)


def test_lr_schedule_shape():
    r = dict(DEFAULTS["supernet"], lr=0.1, min_lr=0.001, warmup_epochs=1, schedule="cosine")
    lrs = [lr_at(s, r, 10, 100) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(0.001, abs=1e-4)


def test_cli_bad_inputs(capsys, tmp_path):
    for argv in (["supernet", "train", "--preset", "digits", "--out", str(tmp_path / "x"), "supernet.epochs=0"],
                 ["supernet", "train", "--preset", "digits", "--data", "cifar10", "--out", str(tmp_path / "y")],
                 ["supernet", "train", "--out", str(tmp_path / "none"), "--resume"],
                 ["supernet", "train", "--preset", "nope"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err


def test_library_resume_must_match_the_saved_settings(tmp_path):
    """train_supernet(resume=True) with other settings than the run's is refused before the
    run directory is touched (its config.yaml is not overwritten)."""
    from stnas.pipeline.config import load_run_config
    from stnas.pipeline.supernet import train_supernet

    out = tmp_path / "run"
    assert run_cli(TRAIN_ARGS + ["--out", out, "supernet.epochs=1", "pool.epochs=1", "pool.samples=1"]).returncode == 0
    cfg = load_run_config(out)
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for change, section in [({"sgld": cfg["sgld"] | {"temperature": 10.0}}, "sgld"),
                            ({"supernet": cfg["supernet"] | {"lr": 0.5}}, "supernet"),
                            ({"pool": cfg["pool"] | {"samples": 3}}, "pool")]:
        with pytest.raises(ConfigError, match=rf"\({section}(\.\w+)? differ"):
            train_supernet(cfg | change, out, resume=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


@pytest.mark.parametrize("workers", [0, 1])
def test_trainer_keeps_one_loader_with_the_per_epoch_batches(tmp_path, monkeypatch, workers):
    """One DataLoader serves every epoch (so persistent workers persist), and each epoch still
    gets exactly the batches of a loader made for that epoch."""
    from stnas.core import dist
    from stnas.data.datasets import get_dataset, make_loader
    from stnas.train import engine as train

    data = get_dataset("digits", "train", limit=192, split_seed=0)
    recipe = dict(DEFAULTS["retrain"], epochs=3, batch_size=64, progress=False, amp="off", channels_last="off",
                  checkpoint_every=1000, warmup_epochs=0)
    made = []
    monkeypatch.setattr(train, "make_loader", lambda *a, **kw: made.append(kw) or make_loader(*a, **kw))
    seen = []

    def forward(model, x, step):
        seen.append(x.clone())
        return model(x)

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    trainer = train.Trainer(model, recipe, data, tmp_path, dist.Context(), seed=3, forward=forward, workers=workers)
    trainer.fit()
    assert len(made) == 2  # the steps-per-epoch probe and the one training loader
    want = [x for epoch in range(3)
            for x, _ in make_loader(data, 64, train=True, seed=3, epoch=epoch)]
    assert len(seen) == len(want) == 9
    assert all(torch.equal(a, b) for a, b in zip(seen, want))


def test_eval_sums_counts_hits_and_loss_by_hand():
    # the one eval loop: top-1/top-5 hits and summed cross-entropy, checked by hand
    import math

    import torch

    from stnas.train.engine import eval_sums, rates

    logits = torch.tensor([[3.0, 1.0, 0.0, 0, 0, 0], [0.0, 2.0, 1.0, 0, 0, 0], [-1.0, 0.0, 0.0, 0, 0, 5.0]])
    y = torch.tensor([0, 2, 0])
    sums = eval_sums(lambda x: x, [(logits[:2], y[:2]), (logits[2:], y[2:])], torch.device("cpu"),
                     channels_last=False)
    lse = [math.log(sum(math.exp(v) for v in row)) for row in logits.tolist()]
    ce = (lse[0] - 3.0) + (lse[1] - 1.0) + (lse[2] + 1.0)
    assert sums[:2].tolist() == [1.0, 2.0]  # row 0 right; row 1's class 2 2nd; row 2's class 0 last of 6
    assert math.isclose(sums[2].item(), ce, rel_tol=1e-6) and sums[3].item() == 3
    r = rates(sums)
    assert math.isclose(r["top1"], 1 / 3) and math.isclose(r["loss"], ce / 3, rel_tol=1e-6) and r["n"] == 3
    assert rates(torch.zeros(4)) == {"top1": 0.0, "top5": 0.0, "loss": 0.0, "n": 0}
