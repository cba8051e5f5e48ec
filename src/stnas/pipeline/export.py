"""Pipeline step 5 for ``stnas export``: an architecture of a trained run as a standalone model.

:func:`export_run` reads the run's config (its data, and the proxy settings whose BN
recalibration the export repeats) and hands them to :func:`stnas.deploy.export.export_from_run`.
"""

from __future__ import annotations

from pathlib import Path

from stnas.deploy.export import arch_for_run, export_from_run
from stnas.pipeline.config import load_run_config
from stnas.pipeline.settings import data_spec, proxy_settings
from stnas.space.arch import Arch


def export_run(run_dir: str | Path, arch: Arch | str, out_dir: str | Path, weights: str | Path = "supernet", *,
               onnx: bool = True, recalibrate: bool = True) -> dict[str, Path]:
    """Exports ``arch`` with the weights it inherits from the run in ``run_dir`` (the
    arguments of :func:`stnas.deploy.export.export_from_run`); returns the paths written."""
    arch = arch_for_run(run_dir, arch)  # the run and the architecture checked first
    cfg = load_run_config(run_dir)
    px = proxy_settings(cfg)
    return export_from_run(run_dir, arch, out_dir, weights, data=data_spec(cfg), batch_size=px.batch_size,
                           recal_batches=px.recal_batches, onnx=onnx, recalibrate=recalibrate)
