"""Kill `stnas run` on the digits preset at many points, resume, and require byte-equal results.

Each kill point is a chain of one to three triggers: a file (glob) appearing in the run
directory, or the n-th line of a log. The run is SIGKILLed as soon as the trigger holds, then
resumed (``--resume`` when the run's config exists, else the original command), killed again
at the chain's next trigger, and finally resumed to the end. The result must equal an
uninterrupted reference run: weights, pool, epoch files, search files, exported models byte
for byte; metrics, proxy cache, model cards and report records equal once timing fields
(wall clock, throughput, dates, the resume step) are dropped.

    python experiments/kill_resume.py --work /tmp/kill            # every kill point
    python experiments/kill_resume.py --work /tmp/kill --every 5  # a spread sample
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ENV = dict(os.environ, OMP_NUM_THREADS="1")
SETTINGS = ["--preset", "digits", "--budget", "300k", "supernet.epochs=2", "pool.epochs=1", "pool.samples=2",
            "search.population=4", "search.parents=2", "search.generations=1", "retrain.epochs=1",
            "retrain.limit=256", "supernet.progress=false", "retrain.progress=false",
            "supernet.checkpoint_every=5", "retrain.checkpoint_every=3", "baselines.families=[mobilenet_v3_small]"]
RUN = [sys.executable, "-m", "stnas.cli", "run"]
R = "retrain/budget_300k"
B = "baselines/*/seed_0"  # the baseline network(s) of the baselines stage
# every stage: config, checkpoint writes (temporary file, before and after the sidecar),
# training logs, epoch weights, the sampling phase and its pool writes, final weights, proxy
# cache, search files, retraining (before and at its checkpoints), export, report
POINTS: list[list[str]] = [[t] for t in (
    "config.yaml", "space.yaml", "checkpoints/.step_*.tmp", "checkpoints/step_00000005.pt",
    "checkpoints/step_00000005.pt.sha256", "metrics.jsonl:1", "metrics.jsonl:2", "checkpoints/step_00000015.pt",
    "epochs/epoch_001.safetensors", "checkpoints/step_00000017.pt.sha256", "checkpoints/step_00000020.pt.sha256",
    "pool/.sample_000*.tmp", "pool/sample_000.safetensors", "pool/index.json", "pool/sample_001.safetensors",
    "epochs/epoch_002.safetensors", "checkpoints/step_00000034.pt", "supernet.safetensors", "supernet.json",
    "proxy_cache.jsonl:1", "proxy_cache.jsonl:4", "proxy_cache.jsonl:8", "search/search.jsonl",
    "search/best.json", "search/search.json", f"{R}/config.yaml", f"{R}/checkpoints/.step_*.tmp",
    f"{R}/checkpoints/step_00000003.pt.sha256", f"{R}/metrics.jsonl:1", f"{R}/model/model.safetensors",
    f"{R}/model/model.onnx", f"{R}/model_card.json", f"{B}/checkpoints/step_00000003.pt.sha256",
    f"{B}/model_card.json", "baselines/latency.json", "plots/pareto.png", "report.json")] + [
    ["checkpoints/step_00000005.pt.sha256", "pool/sample_000.safetensors"],
    ["checkpoints/step_00000015.pt", "pool/sample_000.safetensors"],
    ["metrics.jsonl:1", "supernet.json", f"{R}/checkpoints/step_00000003.pt"],
    ["pool/index.json", "proxy_cache.jsonl:2", f"{R}/model/model.safetensors"]]
TIMING = {"wall_s", "planned_s", "test_s", "images_per_s", "img_per_s", "date", "resumed_at_step", "sha256", "host",
          "measured_latency"}  # the baselines table's latency: measured, so never equal twice
BYTES = ["supernet.safetensors", "pool/*", "epochs/*", "search/*.jsonl", "search/pareto.json", "search/best.json",
         "search/best/*/*", f"{R}/model/*", f"{R}/arch.json", "config.yaml", "space.yaml",
         f"{B}/model.safetensors", f"{B}/baseline.json"]
RECORDS = ["metrics.jsonl", f"{R}/metrics.jsonl", "proxy_cache.jsonl"]
# the model folder's card repeats the run's card (timing fields included): compared as a document
CARD = "model_card.json"
DOCS = ["supernet.json", "search/search.json", f"{R}/model_card.json", f"{R}/model/model_card.json", "report.json"]


def _triggered(run: Path, trigger: str) -> bool:
    if ":" in trigger:
        name, n = trigger.rsplit(":", 1)
        path = run / name
        return path.is_file() and path.read_bytes().count(b"\n") >= int(n)
    return any(run.glob(trigger))


def _start(run: Path, out_cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(out_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)


def _command(run: Path) -> list[str]:
    if (run / "config.yaml").is_file():
        return RUN + ["--out", str(run), "--resume"]
    return RUN + ["--out", str(run)] + SETTINGS


def run_to_trigger(run: Path, trigger: str | None, timeout: float = 900) -> str:
    """Runs (or resumes) into ``run`` until ``trigger`` holds (then SIGKILL) or the end;
    returns "killed", "finished" or raises on a failed command."""
    proc = _start(run, _command(run))
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if trigger and _triggered(run, trigger):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return "killed"
        time.sleep(0.005)
    if proc.poll() is None:
        proc.kill()
        raise RuntimeError(f"{run}: no end within {timeout} s")
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{run}: exit {proc.returncode}: {err.strip()[-600:]}")
    return "finished"


def _drop_timing(obj):
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def _records(path: Path) -> list:
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(_drop_timing(json.loads(line)))
        except ValueError:
            continue  # a line cut by a kill (the readers drop it)
    return out


def compare(ref: Path, cut: Path) -> list[str]:
    """The differences between a reference run and a killed-and-resumed one."""
    diffs = []
    for pattern in BYTES:
        names = sorted(str(p.relative_to(ref)) for p in ref.glob(pattern) if p.is_file() and p.name != CARD)
        got = sorted(str(p.relative_to(cut)) for p in cut.glob(pattern)
                     if p.is_file() and ".tmp" not in p.name and p.name != CARD)
        if names != got:
            diffs.append(f"{pattern}: files {got} instead of {names}")
        diffs += [f"{n} differs" for n in names if (cut / n).is_file()
                  and (cut / n).read_bytes() != (ref / n).read_bytes()]
    for name in RECORDS:
        a, b = _records(ref / name), _records(cut / name)
        if name.startswith("proxy"):
            a, b = sorted(map(json.dumps, a)), sorted(set(map(json.dumps, b)))
        if a != b:
            diffs.append(f"{name} records differ")
    for name in DOCS:
        a, b = (_drop_timing(json.loads((d / name).read_text().replace(str(d), "RUN")))
                if (d / name).is_file() else None for d in (ref, cut))
        if a != b:
            diffs.append(f"{name} differs")
    return diffs


def reference(work: Path) -> Path:
    ref = work / "ref"
    if not (ref / "report.json").is_file():
        shutil.rmtree(ref, ignore_errors=True)
        run_to_trigger(ref, None)
    return ref


def kill_and_resume(ref: Path, run: Path, chain: list[str]) -> dict:
    """Kills at each trigger of ``chain`` in turn, resumes to the end, compares with ``ref``."""
    shutil.rmtree(run, ignore_errors=True)
    outcomes = [run_to_trigger(run, trigger) for trigger in chain]
    if outcomes[-1] == "killed":
        run_to_trigger(run, None)
    return {"chain": chain, "kills": outcomes.count("killed"), "diffs": compare(ref, run)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="scratch folder")
    p.add_argument("--points", type=int, default=len(POINTS), help="how many kill points (default all)")
    p.add_argument("--every", type=int, default=1, help="take every N-th kill point (a spread sample)")
    args = p.parse_args(argv)
    work = Path(args.work)
    ref = reference(work)
    chosen = list(enumerate(POINTS))[:: args.every][: args.points]
    failed = 0
    for i, chain in chosen:
        res = kill_and_resume(ref, work / f"cut{i:02d}", chain)
        failed += bool(res["diffs"])
        print(json.dumps(res), flush=True)
    print(f"{len(chosen) - failed} of {len(chosen)} kill points ended equal")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
