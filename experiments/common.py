"""What the method studies share: bad input as one line, the rank statistics they all use,
and the two files that pass between them (ground-truth tables and proxy records).

- ``one_line_errors(fn, *args)``: bad input ends in ``error: ...`` on stderr and exit code 2.
- ``tau``, ``ci95``, ``tau_to_rho``, ``two_way_mean_squares``: Kendall's tau as the studies
  score it (``stnas.analysis.ranking.kendall``, 0 where it is undefined), the percentile 95%
  interval of a bootstrap distribution, Greiner's relation, and the mean squares of a
  networks x seeds table.
- Ground-truth tables (written by ``ground_truth.py``): ``TABLE_FORMAT``, ``read_table``,
  ``rows_with_seeds``, ``truth_value``, ``task_dir`` (where one retraining lives) and
  ``extends_seeds``.
- Proxy records (written by ``proxy_record.py``): ``RECORD``, ``RECORD_VERSION``,
  ``read_record``, ``is_record`` and ``planned_archs``.

The studies write their files with ``stnas.core.verified.write_json`` and read them with its
``read_json(..., required=False)``: a checksum present is checked, a file without one (written
by hand or by an older study) is validated field by field here.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path

import numpy as np

from stnas.analysis.ranking import kendall
from stnas.core.errors import StnasError
from stnas.core.verified import read_json

BAD_INPUT = (StnasError, OSError, ValueError, KeyError)
TABLE_FORMAT = "stnas-groundtruth"
RECORD, RECORD_VERSION = "stnas-proxy-record", 1


def one_line_errors(fn, *args):
    """``fn(*args)``; bad input (``BAD_INPUT``) ends in one line on stderr and exit code 2."""
    try:
        return fn(*args)
    except BAD_INPUT as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


# ---------------------------------------------------------------------------- statistics
def tau(a, b) -> float:
    """Kendall's tau of ``a`` against ``b`` (``stnas.analysis.ranking.kendall``); 0 where it is
    undefined (a constant side): how the studies' tables always scored."""
    return kendall(a, b, undefined=0.0)


def ci95(dist) -> list[float]:
    """The percentile 95% interval of a bootstrap distribution, its NaN draws left out
    (NaN, NaN when every draw is NaN)."""
    d = np.asarray(dist, dtype=float)
    d = d[~np.isnan(d)]
    if not d.size:
        return [math.nan, math.nan]
    lo, hi = np.percentile(d, [2.5, 97.5])
    return [float(lo), float(hi)]


def tau_to_rho(t: float) -> float:
    """Pearson correlation of a bivariate normal with Kendall tau ``t`` (Greiner)."""
    return math.sin(math.pi * t / 2)


def two_way_mean_squares(x: np.ndarray) -> tuple[float, float]:
    """(MS between networks, residual MS) of a networks x seeds table, two-way without
    interaction: a seed's effect shared by every network is not noise."""
    n, k = x.shape
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()
    ms_res = (resid ** 2).sum() / ((n - 1) * (k - 1))
    ms_arch = k * ((x.mean(1) - x.mean()) ** 2).sum() / (n - 1)
    return float(ms_arch), float(ms_res)


# ---------------------------------------------------------------------------- ground-truth tables
def read_table(path) -> dict:
    """A ground-truth table (``ground_truth.py``), its checksum checked when present and its
    shape checked."""
    table = read_json(path, "ground-truth table", required=False)
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT or not isinstance(table.get("rows"), list):
        raise StnasError(f"{path} is not a {TABLE_FORMAT} table")
    return table


def rows_with_seeds(table: dict, min_seeds: int) -> list[dict]:
    """The table's networks with at least ``min_seeds`` finished seeds."""
    return [r for r in table["rows"] if len(r["seeds"]) >= min_seeds]


def truth_value(result: dict, metric: str) -> float:
    """One retraining's truth, higher is better: its test top-1 (``metric`` "top1") or minus
    its test loss (any other)."""
    return result["top1"] if metric == "top1" else -result["test_loss"]


def task_dir(work: Path, arch: str, seed: int) -> Path:
    """The folder of one (architecture, training seed) retraining under a build's WORK."""
    return Path(work) / hashlib.sha256(arch.encode()).hexdigest()[:12] / f"seed{seed}"


def extends_seeds(saved, seeds: list[int]) -> bool:
    """Whether ``seeds`` keeps the recorded seeds ``saved`` and only adds after them (``0,1``
    grown to ``0,1,2,3``): the finished seeds are kept; any other change is another plan."""
    return isinstance(saved, list) and seeds[:len(saved)] == saved


# ---------------------------------------------------------------------------- proxy records
def is_record(run: str) -> bool:
    """Whether a ``--runs`` entry names a proxy record (a ``.json``), not a run directory."""
    return str(run).endswith(".json")


def read_record(path: str | Path) -> dict:
    """A proxy record (``proxy_record.py``), its checksum checked when present and its shape
    checked."""
    rec = read_json(path, "proxy record", required=False)
    if not isinstance(rec, dict) or rec.get("format") != RECORD or rec.get("version") != RECORD_VERSION:
        raise StnasError(f"{path} is not a {RECORD} version {RECORD_VERSION} file")
    cells = rec.get("cells")
    if not isinstance(cells, dict) or not cells or not all(
            isinstance(v, dict) and all(isinstance(x, (int, float)) and np.isfinite(x) for x in v.values())
            for v in cells.values()):
        raise StnasError(f"{path}: 'cells' must map cell names to {{arch: finite score}}")
    if not isinstance(rec.get("label"), str) or rec.get("preset_cell") not in cells:
        raise StnasError(f"{path}: needs a 'label' and a 'preset_cell' among its cells")
    return rec


def planned_archs(path: str) -> list[str]:
    """The networks of a ground-truth plan (``archs``), table or picks table (``rows``)."""
    obj = read_json(path, "--archs file", required=False)
    if isinstance(obj, dict) and isinstance(obj.get("archs"), dict):
        return [a for v in obj["archs"].values() for a in v]
    if isinstance(obj, dict) and isinstance(obj.get("rows"), list):
        return [r["arch"] for r in obj["rows"] if isinstance(r, dict) and "arch" in r]
    raise StnasError(f"--archs {path}: neither a ground-truth plan ('archs') nor a table ('rows')")
