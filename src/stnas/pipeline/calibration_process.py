"""The calibration's measurements, run in a process of their own, and the load meter that
says whether the machine was busy while they ran (:mod:`stnas.pipeline.calibrate`).

*Why a process of its own.* Timing torchvision's networks left the process that timed them
10–20% slower for the supernet that followed it (docs/benchmarks.md, "The plan against the
actual"). A child process leaves nothing behind in the run's process: no allocator state, no
oneDNN primitive cache, no thread pool shaped by other networks. It sets the allocator as the
run's process does (:mod:`stnas.core.alloc`), so that it times the steps the run will take.

The child is ``python -m stnas.pipeline.calibration_process JOB OUT``: JOB is a JSON file (the
resolved config, the space's config, the stages, the device, the data sizes, the
architectures as strings, the calibration's step counts and the parent's thread count), OUT
the JSON file it writes, per stage its unit costs, the seconds it took and the load meter's
reading. A :class:`~stnas.core.errors.StnasError` in the child comes back as the same class
with the same message; anything else as a RuntimeError that carries the child's last lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stnas.core import errors
from stnas.core.alloc import warm_allocator


class LoadMeter:
    """CPU time that *other* processes used while a measurement ran, in cores.

    Reads the machine's busy time (``/proc/stat``: all CPUs, every state but idle and iowait)
    and this process's own CPU time (``os.times``, every thread) at start and stop; their
    difference over the wall time is what the rest of the machine used. ``None`` where
    ``/proc/stat`` cannot be read (not Linux)."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 5:
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # guest time is in user
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    def others(self) -> float | None:
        """Cores used by other processes since the start (≥ 0), or None."""
        end = self._read()
        if self._start is None or end is None or end[0] <= self._start[0]:
            return None
        wall = end[0] - self._start[0]
        return max(0.0, ((end[1] - self._start[1]) - (end[2] - self._start[2])) / wall)


def measure_isolated(job: dict) -> dict:
    """Runs the job in a child process; returns ``{stage: {"units", "took", "others"}}``."""
    with tempfile.TemporaryDirectory(prefix="stnas-calibration-job-") as tmp:
        src, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(job))
        root = str(Path(__file__).resolve().parents[2])  # the stnas this process imported, first
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, "-m", "stnas.pipeline.calibration_process", str(src), str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, env=env)
        result = json.loads(out.read_text()) if out.is_file() else None
    if isinstance(result, dict) and "error" in result:
        kind = getattr(errors, str(result.get("kind")), None)
        kind = kind if isinstance(kind, type) and issubclass(kind, errors.StnasError) else errors.StnasError
        raise kind(str(result["error"]))
    if proc.returncode != 0 or not isinstance(result, dict):
        tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
        raise RuntimeError(f"the calibration process failed (exit code {proc.returncode}): {tail}")
    return result


def _main(job_path: str, out_path: str) -> int:
    warm_allocator()  # as the run's process has it, before torch allocates anything
    import torch

    from stnas.pipeline import calibrate as cal
    from stnas.space.searchspace import SearchSpace

    job = json.loads(Path(job_path).read_text())
    try:
        for name, value in job["constants"].items():  # the parent's step counts (tests shorten them)
            if name in cal.TUNABLE:
                setattr(cal, name, value)
        torch.set_num_threads(int(job["threads"]))
        space = SearchSpace(job["space"])
        archs = [space.arch(a) for a in job["archs"]] if job["archs"] is not None else None
        result = cal.measure_here(job["cfg"], space, job["stages"], torch.device(job["device"]), job["sizes"], archs)
    except errors.StnasError as exc:
        result = {"error": errors.first_line(exc, 500), "kind": type(exc).__name__}
    Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
