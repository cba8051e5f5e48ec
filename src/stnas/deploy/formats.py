"""What a model directory carries for deployment without stnas (pipeline step 5's outputs).

* ``preprocessing``: input size, channels, per-channel mean and std, the pixel scale and the
  class names; the model's input is ``(pixels / pixel_scale - mean) / std``, NCHW float32,
  images resized (bilinear) to ``input_size`` squared. It goes into the model card, into the
  ONNX file's metadata (key ``stnas.preprocessing``, a JSON string, plus ``class_names``) and
  into the ``.pt2`` archive (extra file ``preprocessing.json``).
* ``model.pt2``: a ``torch.export`` program (dynamic batch) that ``torch.export.load``
  runs with plain torch; its outputs equal the network's, and the ONNX file's to float
  precision.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from stnas.core.fileio import write_bytes
from stnas.deploy.card import CARD, read_card

if TYPE_CHECKING:
    from stnas.data.datasets import DataSpec

PT2 = "model.pt2"
ONNX_KEY = "stnas.preprocessing"
PT2_EXTRA = "preprocessing.json"


def preprocessing(data: DataSpec, space) -> dict:
    """The preprocessing of a run's data for a network of ``space``."""
    from stnas.data.datasets import describe

    d = describe(data.dataset)
    return {"dataset": d["dataset"], "input_size": data.image_size or space.input_size,
            "channels": space.input_channels, "layout": "NCHW", "mean": d["mean"], "std": d["std"],
            "pixel_scale": d["pixel_scale"], "resize": "bilinear", "class_names": d["class_names"]}


def write_pt2(net: torch.nn.Module, space, path: str | Path, prep: dict | None) -> Path:
    """Exports ``net`` (eval mode, CPU) as a ``torch.export`` program with a dynamic batch axis."""
    from torch.export import Dim, export, save

    x = torch.zeros(2, space.input_channels, space.input_size, space.input_size)
    with torch.no_grad():
        program = export(net, (x,), dynamic_shapes=({0: Dim("batch")},))
    buf = io.BytesIO()  # torch.export.save insists on a .pt2 name; the atomic write uses a temp name
    save(program, buf, extra_files={PT2_EXTRA: json.dumps(prep or {})})
    return write_bytes(path, buf.getvalue())


def add_onnx_metadata(path: str, prep: dict | None) -> None:
    """Adds the preprocessing to an ONNX file's metadata_props (in place)."""
    import onnx

    if not prep:
        return
    model = onnx.load(path)
    for key, value in ((ONNX_KEY, json.dumps(prep)), ("class_names", json.dumps(prep["class_names"]))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)


def read_preprocessing(model_dir: str | Path) -> dict:
    """The preprocessing recorded in a model directory (its card, else its ONNX metadata).

    Raises:
        CheckpointError: a damaged card, or the directory records none (a model exported
            before stnas did).
    """
    from stnas.core.errors import CheckpointError

    d = Path(model_dir)
    if (d / CARD).exists():
        prep = read_card(d / CARD).get("preprocessing")
        if prep:
            return prep
    if (d / "model.onnx").is_file():
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(d / "model.onnx"), load_external_data=False).metadata_props}
        if ONNX_KEY in meta:
            return json.loads(meta[ONNX_KEY])
    raise CheckpointError(f"{d} records no preprocessing (no {CARD} with it, no ONNX metadata); re-export it")
