"""Pipeline step 5: export an architecture as a standalone model.

A model directory (written by :func:`export_model`, read by :func:`load_model`)::

    model.safetensors   the state dict of ``build_model(arch)`` (a :mod:`stnas.core.weights` file:
                        tensors checksummed); metadata strings: format, arch, space,
                        space_fingerprint, stnas_version (+ caller's)
    arch.json           the architecture (stnas.space.arch format)
    space.yaml          the space definition (checksummed), so the directory is self-contained
    model.onnx          opset 17, input "input" (N, C, H, W) with a dynamic batch axis,
                        output "logits" (N, classes); the network in eval mode; metadata:
                        the preprocessing (stnas.deploy.formats)
    model.pt2           the same network as a torch.export program (plain torch loads it)
    model_card.json     what the model is, how it was trained, its preprocessing (stnas.deploy.card),
                        and ``files_sha256``: {file name: SHA-256} of the files above, the one
                        record that the ONNX and .pt2 files are intact (:func:`damaged_files`)

Weights are only ever read with safetensors (no pickle). :func:`export_from_run` turns a
supernet run into such a directory: the architecture's modules with the weights it
inherits from the supernet (or from a pool sample, or from a retrained run).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open

from stnas.core.errors import ArchError, CheckpointError, ConfigError, StnasError, state_dict_detail
from stnas.core.fileio import atomic_write, sha256_file
from stnas.core.rundir import CARD, RunDir, check_same_inputs
from stnas.core.verified import json_text
from stnas.core.weights import load_weights, save_weights, tensor_digest
from stnas.deploy.card import model_card, read_card, write_card
from stnas.deploy.formats import PT2, add_onnx_metadata, write_pt2
from stnas.nn.model import Network, build_model
from stnas.space.arch import Arch, save_arch
from stnas.space.catalog import load_arch, read_space_file, run_space, write_space_file
from stnas.space.searchspace import SearchSpace

if TYPE_CHECKING:
    from stnas.data.datasets import DataSpec

FORMAT = "stnas-model"
WEIGHTS, ARCH, SPACE, ONNX = "model.safetensors", "arch.json", "space.yaml", "model.onnx"
OPSET = 17
FILE_DIGESTS = "files_sha256"  # the card's record of its directory's files


def _version() -> str:
    from stnas.core import __version__
    return __version__


def arch_slug(arch: Arch) -> str:
    """A file-name-safe form of the architecture string (``digits_021543_..1....0.``)."""
    return str(arch).replace(":", "_").replace("/", "_")


# ------------------------------------------------------------------ writing
def export_model(model: Network, arch: Arch, out_dir: str | Path, *, onnx: bool = True,
                 metadata: dict | None = None, preprocessing: dict | None = None,
                 card: dict | None = None) -> dict[str, Path]:
    """Writes ``model`` (a ``build_model(arch)`` network) as a model directory.

    Every file is written atomically; the ONNX file is checked with ``onnx.checker``
    before it replaces a previous one. A file, a run directory, or a directory that already holds
    another model (another architecture or other weights) is refused with a ConfigError before
    anything is written.
    ``model`` itself is not modified (a CPU copy in eval mode is exported).

    Args:
        metadata: extra key/values stored in the safetensors header (as strings; values
            that are not strings are JSON-encoded).
        preprocessing: what the input needs (``stnas.deploy.formats.preprocessing``); recorded in
            the card, the ONNX metadata, the ``.pt2`` archive and the safetensors header.
        card: when given (:func:`stnas.deploy.card.model_card`), written as ``model_card.json``
            with the SHA-256 of every other file written under ``files_sha256``.

    Returns:
        ``{"weights", "arch", "space", "onnx", "pt2", "card"}`` -> paths (``onnx`` and
        ``card`` only when written).
    """
    out = Path(out_dir)
    net = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    with torch.device("meta"):  # the expected names, without touching the RNG
        expected = build_model(arch).state_dict()
    if set(net.state_dict()) != set(expected):
        raise ArchError(f"the model does not hold architecture {arch} (its modules differ)")
    meta = {k: v if isinstance(v, str) else json.dumps(v)
            for k, v in dict(metadata or {}, **({"preprocessing": preprocessing} if preprocessing else {})).items()}
    meta.update(format=FORMAT, arch=str(arch), space=arch.space.name,
                space_fingerprint=arch.space.fingerprint, stnas_version=_version())
    tensors = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    _check_out_dir(out)
    _check_replaces_same_model(out, arch, tensors)
    paths = {"weights": save_weights(tensors, out / WEIGHTS, meta),
             "arch": save_arch(arch, out / ARCH),
             "space": write_space_file(out / SPACE, arch.space)}
    if onnx:
        paths["onnx"] = atomic_write(out / ONNX, lambda tmp: _write_onnx(net, arch.space, tmp, preprocessing))
    paths["pt2"] = write_pt2(net, arch.space, out / PT2, preprocessing)
    if card is not None:
        digests = {p.name: sha256_file(p) for p in paths.values()}
        paths["card"] = write_card(out / CARD, {**card, FILE_DIGESTS: digests})
    return paths


def _check_out_dir(out: Path) -> None:
    """A model directory is written into a directory or a path to create, never over a file or
    into a run directory (its config is not a model's).

    Raises:
        ConfigError: before anything is written.
    """
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                raise ConfigError(f"{p} is a file, not a directory: export elsewhere (--out)")
            break
    if RunDir(out).config.exists():
        raise ConfigError(f"{out} holds a run ({RunDir(out).config.name}), not an exported model: "
                          f"export elsewhere (--out)")


def _check_replaces_same_model(out: Path, arch: Arch, tensors: dict[str, torch.Tensor]) -> None:
    """Writing into a directory that already holds a model is allowed only when it is the same
    model (the same architecture and weights, e.g. a rerun): another export is never lost."""
    old = out / WEIGHTS
    if not old.is_file():
        return
    try:
        have, meta = _read_weights(old)
    except CheckpointError:
        have = meta = None
    what = (f"the exported model of {meta.get('arch')} ({meta.get('weights', 'unknown source')})" if meta is not None
            else f"an unreadable {WEIGHTS}")
    old_inputs = None if meta is None else {"arch": meta.get("arch"), "weights": tensor_digest(have)}
    check_same_inputs(out, what, old_inputs,
                      {"arch": str(arch), "weights": tensor_digest(tensors)}, "export elsewhere (--out) or remove it")


def _write_onnx(net: Network, space: SearchSpace, path: str, preprocessing: dict | None = None) -> None:
    import onnx

    x = torch.zeros(2, space.input_channels, space.input_size, space.input_size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # dynamo=False: the torch.export-based exporter needs onnxscript, not a dependency
        torch.onnx.export(net, (x,), path, dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    add_onnx_metadata(path, preprocessing)
    onnx.checker.check_model(path, full_check=True)


# ------------------------------------------------------------------ reading
def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a weights file, checksum verified, with one-line errors."""
    return load_weights(path)


def _load_into(net: torch.nn.Module, tensors: dict, path: Path, what: str) -> None:
    want, have = set(net.state_dict()), set(tensors)
    if want != have:
        missing, extra = sorted(want - have), sorted(have - want)
        raise CheckpointError(f"{path} does not hold the weights of {what}: {len(missing)} missing "
                              f"(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})")
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit {what}: {state_dict_detail(exc)}") from None


def dir_space(d: Path, space=None) -> SearchSpace | str | None:
    """``space`` when given, else the space of ``d/space.yaml`` when present, else None."""
    if space is not None:
        return space
    if (d / SPACE).exists():
        return read_space_file(d / SPACE)
    return None


def load_model(path_or_dir: str | Path, space: SearchSpace | str | None = None) -> Network:
    """Rebuilds an exported model: ``build_model(arch.json)`` with the safetensors weights.

    Args:
        path_or_dir: a model directory, or its ``model.safetensors``.
        space: the space of the architecture (default: the directory's ``space.yaml``,
            else the preset the architecture names).

    Returns:
        The network on the CPU, in eval mode.

    Raises:
        CheckpointError: missing or corrupt weights, or weights of another architecture.
        ArchError: a missing or invalid ``arch.json``.
    """
    p = Path(path_or_dir)
    if not p.exists():
        raise CheckpointError(f"model {p} does not exist (expected a directory written by stnas export)")
    d, weights = (p, p / WEIGHTS) if p.is_dir() else (p.parent, p)
    if not (d / ARCH).is_file():
        raise ArchError(f"{d} holds no {ARCH}: not a model directory written by stnas export")
    arch = load_arch(d / ARCH, dir_space(d, space))
    tensors, meta = _read_weights(weights)
    if meta.get("arch") not in (None, str(arch)):
        raise CheckpointError(f"{weights} holds architecture {meta['arch']}, but {d / ARCH} says {arch}")
    net = build_model(arch)
    _load_into(net, tensors, weights, f"architecture {arch}")
    return net.eval()


def damaged_files(model_dir: str | Path, card: dict | None = None) -> dict[str, str]:
    """{file name: what is wrong} of a model directory written by :func:`export_model` with a
    card; empty when it is intact. ``card``: the card the directory must hold (e.g. its retrain
    run's; default: its own, checksum verified). Every other file is checked against the card's
    digests (``files_sha256``); a card without them (an older stnas) leaves the ONNX and
    ``.pt2`` files unchecked and the others to their own checking readers. Writes nothing."""
    d = Path(model_dir)
    out: dict[str, str] = {}
    try:
        own = read_card(d / CARD)
    except CheckpointError as exc:
        out[CARD], own = str(exc), None
    if card is not None and own is not None and own != card:
        out[CARD] = f"model card {d / CARD} differs from its run's"
    elif own is not None and (d / CARD).read_bytes() != json_text(own).encode():
        out[CARD] = f"model card {d / CARD} is not the text stnas wrote (whitespace changed)"
    digests = (card if card is not None else own or {}).get(FILE_DIGESTS)
    if isinstance(digests, dict):
        for name, digest in digests.items():
            path = d / name
            if not path.is_file():
                out[name] = f"{path} is missing"
            elif sha256_file(path) != digest:
                out[name] = f"{path} is damaged (SHA-256 mismatch with {CARD})"
        return out
    for name, check in ((WEIGHTS, load_weights), (SPACE, read_space_file),
                        (ARCH, lambda p: load_arch(p, dir_space(d)))):
        try:
            check(d / name)
        except StnasError as exc:
            out[name] = str(exc)
            if name == SPACE:
                break  # the architecture is read in its space
    return out


# ------------------------------------------------------------------ from a run
def arch_for_run(run_dir: str | Path, arch: Arch | str | Path) -> Arch:
    """``arch`` (an Arch, JSON file or string) checked to be of the run's space."""
    space = run_space(run_dir)
    if isinstance(arch, Arch):
        return space.arch(arch, f" of run {run_dir}")
    try:
        return space.arch(arch)
    except ArchError as exc:
        raise ArchError(f"{exc} (run {run_dir} searches space {space.name!r})") from None


def inherited_model(run_dir: str | Path, arch: Arch | str, weights: str | Path = "supernet") -> Network:
    """The standalone network of ``arch`` carrying weights from a run (eval mode, CPU).

    Args:
        arch: an Arch, or a JSON file or string of an architecture of the run's space.
        weights: ``"supernet"`` (``RUN_DIR/supernet.safetensors``); a supernet-shaped
            safetensors file (a pool sample, ``epochs/epoch_NNN.safetensors``); a model
            directory or retrain run directory (``model/``), or a standalone
            ``model.safetensors``.

    The inherited BN statistics are the supernet's, accumulated over all the paths it
    trained: the exported network's eval output equals ``supernet(x, arch)`` in eval
    mode exactly. No BN recalibration is done here; :func:`export_from_run` does it
    (``stnas.train.inherited``), and a deployed model is retrained (``stnas retrain``).
    """
    from stnas.nn.supernet import Supernet

    run_dir = Path(run_dir)
    space = run_space(run_dir)
    arch = arch_for_run(run_dir, arch)
    if str(weights) == "supernet":
        path = RunDir(run_dir).supernet
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist: the supernet run has not finished "
                                  f"(resume it, or pass --weights with a pool sample)")
    else:
        path = Path(weights)
        if path.is_dir():
            model_dir = path / "model" if (path / "model" / WEIGHTS).is_file() else path
            if not (model_dir / ARCH).is_file():
                raise CheckpointError(f"{path} is neither a model directory nor a retrain run (no {ARCH})")
            got = load_arch(model_dir / ARCH, space)
            if got != arch:
                raise ArchError(f"{model_dir} holds architecture {got}, not {arch}")
            return load_model(model_dir, space)
    tensors, _ = _read_weights(path)
    net = build_model(arch)
    if set(tensors) == set(net.state_dict()):  # a standalone model's weights
        _load_into(net, tensors, path, f"architecture {arch}")
        return net.eval()
    supernet = Supernet.fitting(space, tensors) or Supernet(space)  # plain or kernel-sharing, by its names
    _load_into(supernet, tensors, path, f"the supernet of space {space.name!r}")
    return supernet.extract(arch).eval()


def export_from_run(run_dir: str | Path, arch: Arch | str, out_dir: str | Path,
                    weights: str | Path = "supernet", *, data: DataSpec, batch_size: int, recal_batches: int,
                    onnx: bool = True, recalibrate: bool = True) -> dict[str, Path]:
    """Exports ``arch`` with the weights it inherits from a run (see :func:`inherited_model`)
    into ``out_dir`` with a model card; returns the paths :func:`export_model` wrote.

    Supernet-shaped weights (the supernet, a pool sample, an epoch file) are inherited: unless
    ``recalibrate`` is False their BN statistics are re-estimated on the search-train split
    of the run's ``data`` first (``stnas.train.inherited``, ``recal_batches`` batches of
    ``batch_size``: the run's proxy settings), and the card says they are not a retrained
    model. ``data`` also gives the preprocessing the model card records.
    """
    from stnas.deploy.formats import preprocessing
    from stnas.train.inherited import recalibrate as recal

    arch = arch_for_run(run_dir, arch)
    _check_out_dir(Path(out_dir))
    net = inherited_model(run_dir, arch, weights)
    src = "supernet" if str(weights) == "supernet" else str(Path(weights).resolve())
    inherited = str(weights) == "supernet" or (not Path(weights).is_dir() and _read_format(Path(weights)) != FORMAT)
    facts = {"source_run": str(Path(run_dir).resolve()), "weights_file": src, "inherited": inherited}
    if inherited:
        stats = recal(net, run_space(run_dir), data, batch_size, recal_batches) if recalibrate else {}
        how = (f"BN recalibrated on {stats['recal_images']} search-train images" if recalibrate
               else "BN statistics the supernet's")
        facts.update(stats, weights=f"inherited from the supernet ({how}); not retrained: deploy the model "
                                    f"`stnas retrain --arch {arch}` trains")
    else:
        facts["weights"] = f"copied from {src}"
    prep = preprocessing(data, arch.space)
    paths = export_model(net, arch, out_dir, onnx=onnx, preprocessing=prep, card=model_card(arch, prep, **facts),
                         metadata={"source_run": str(Path(run_dir).resolve()), "weights": src,
                                   "inherited": json.dumps(inherited), "recalibrated": json.dumps(recalibrate)})
    return paths


def _read_format(path: Path) -> str | None:
    """The ``format`` metadata of a safetensors file (``stnas-model`` for a standalone model)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # unreadable: inherited_model has already said so
        return None
