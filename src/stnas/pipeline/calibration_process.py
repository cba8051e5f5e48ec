"""The calibration's measurements, run in a process of their own, and the load meter that
says whether the machine was busy while they ran (:mod:`stnas.pipeline.calibrate`).

*Why a process of its own.* Timing torchvision's networks left the process that timed them
10–20% slower for the supernet that followed it (docs/benchmarks.md, "The plan against the
actual"). A child process leaves nothing behind in the run's process: no allocator state, no
oneDNN primitive cache, no thread pool shaped by other networks. It sets the allocator as the
run's process does (:mod:`stnas.core.alloc`), so that it times the steps the run will take.

The child is ``python -m stnas.pipeline.calibrate JOB OUT`` (its ``child_main``): JOB is a JSON file (the
resolved config, the space's config, the stages, the device, the data sizes, the
architectures as strings, the calibration's step counts and the parent's thread count), OUT
the JSON file it writes, per stage its unit costs, the seconds it took and the load meter's
reading. A :class:`~stnas.core.errors.StnasError` in the child comes back as the same class
with the same message; anything else as a RuntimeError that carries the child's last lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stnas.core import errors
from stnas.core.verified import read_json, write_json


class LoadMeter:
    """CPU time that *other* processes used while a measurement ran, in cores.

    Reads the machine's busy time (``/proc/stat``: all CPUs, every state but idle and iowait)
    and this process's own CPU time (``os.times``: every thread, and children that have ended)
    at start and stop; their difference over the wall time is what the rest of the machine used.
    ``None`` where ``/proc/stat`` cannot be read (not Linux)."""

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
        own = os.times()  # this process's threads, and its children once they have ended (data loader workers)
        return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system

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
        write_json(src, job)
        root = str(Path(__file__).resolve().parents[2])  # the stnas this process imported, first
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        proc = subprocess.run([sys.executable, "-m", "stnas.pipeline.calibrate", str(src), str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, env=env)
        try:
            result = read_json(out, "calibration result") if out.is_file() else None
        except errors.CheckpointError:
            result = None
    if isinstance(result, dict) and "error" in result:
        kind = getattr(errors, str(result.get("kind")), None)
        kind = kind if isinstance(kind, type) and issubclass(kind, errors.StnasError) else errors.StnasError
        raise kind(str(result["error"]))
    if proc.returncode != 0 or not isinstance(result, dict):
        tail = " | ".join((proc.stderr or "").strip().splitlines()[-3:])
        raise RuntimeError(f"the calibration process failed (exit code {proc.returncode}): {tail}")
    return result
