"""Export: ONNX parity with PyTorch, safetensors round trip, clear errors, export from a run."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file

from stnas.cli import main
from stnas.core import __version__
from stnas.core.errors import ArchError, CheckpointError, ConfigError
from stnas.core.weights import save_weights
from stnas.deploy.export import export_model, inherited_model, load_model
from stnas.nn.model import build_model
from stnas.nn.supernet import Supernet
from stnas.pipeline.export import export_run
from stnas.space.arch import Arch, save_arch
from stnas.space.catalog import load_arch, load_space


def _randomize_bn(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so eval-mode BN really matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _all_branches(space) -> Arch:
    """Every branch edge on, with the last op it allows; the stem's last allowed ops."""
    return Arch(space, [e.allowed[-1] for e in space.stem_edges], [b.allowed[-1] for b in space.branch_edges])


def _input(space, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, space.input_channels, space.input_size, space.input_size, generator=g)


PARITY = [("digits", 0), ("digits", 1), ("digits", "all"), ("fashion-mnist", 0), ("fashion-mnist", "all")]


@pytest.mark.parametrize("name,which", PARITY)
def test_onnx_matches_pytorch(name, which, tmp_path):
    space = load_space(name)
    arch = _all_branches(space) if which == "all" else space.sample(np.random.default_rng(which))
    if which == "all":
        assert arch.num_branches == len(space.branch_edges)
    torch.manual_seed(3)
    model = _randomize_bn(build_model(arch), 5).eval()
    paths = export_model(model, arch, tmp_path / "m")
    proto = onnx.load(str(paths["onnx"]))
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version == 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic: any batch size
    sess = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    for n in (1, 3):
        x = _input(space, n, seed=n)
        with torch.no_grad():
            want = model(x).numpy()
        got = sess.run(["logits"], {"input": x.numpy()})[0]
        assert got.shape == (n, space.num_classes)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_export_does_not_touch_the_model_and_writes_metadata(tmp_path):
    space = load_space("digits")
    arch = space.sample(np.random.default_rng(4))
    model = build_model(arch).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    paths = export_model(model, arch, tmp_path / "m", onnx=False, metadata={"top1": 0.5, "note": "x"})
    assert model.training and set(paths) == {"weights", "arch", "space", "pt2"}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with safe_open(str(paths["weights"]), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == str(arch) and meta["space_fingerprint"] == space.fingerprint
    assert meta["stnas_version"] == __version__ and meta["note"] == "x" and json.loads(meta["top1"]) == 0.5
    assert load_arch(paths["arch"]) == arch
    other = space.sample(np.random.default_rng(5))
    with pytest.raises(ArchError, match="does not hold"):
        export_model(build_model(other), arch, tmp_path / "bad", onnx=False)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_load_model_round_trip(seed, tmp_path):
    space = load_space("digits")
    arch = space.sample(np.random.default_rng(seed))
    torch.manual_seed(seed % 1000)
    model = _randomize_bn(build_model(arch), seed % 1000).eval()
    out = tmp_path / f"m{seed}"
    export_model(model, arch, out, onnx=False)
    for source in (out, out / "model.safetensors"):
        loaded = load_model(source)
        assert not loaded.training
        x = _input(space, 4, seed % 97)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        for k, v in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[k], v), k


def test_load_model_uses_the_directory_space_for_yaml_spaces(tmp_path, tiny_config):
    from stnas.space.searchspace import SearchSpace

    space = SearchSpace(tiny_config)
    arch = Arch(space, [0, 0, 0], [0] * len(space.branch_edges))
    model = _randomize_bn(build_model(arch), 1).eval()
    export_model(model, arch, tmp_path / "m", onnx=False)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m")(x), model(x))  # "tiny" is no preset


def test_load_model_errors_name_the_file(tmp_path):
    space = load_space("digits")
    a, b = space.sample(np.random.default_rng(0)), space.sample(np.random.default_rng(1))
    assert a != b and build_model(a).state_dict().keys() != build_model(b).state_dict().keys()
    d = tmp_path / "m"
    export_model(build_model(a), a, d, onnx=False)
    weights = d / "model.safetensors"
    good = weights.read_bytes()

    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="model.safetensors") as e:
        load_model(d)
    assert "\n" not in str(e.value)
    weights.write_bytes(b"\x00" * 64)  # garbage
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(d)
    weights.write_bytes(good)
    save_arch(b, d / "arch.json")  # arch.json and weights disagree
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(d)
    # weights of another architecture without metadata: the key check catches it
    save_weights(build_model(a).state_dict(), weights)
    with pytest.raises(CheckpointError, match="does not hold the weights") as e:
        load_model(d)
    assert "\n" not in str(e.value)
    (d / "arch.json").write_text("{not json")
    with pytest.raises(ArchError, match="malformed"):
        load_model(d)
    (d / "arch.json").unlink()
    with pytest.raises(ArchError, match="arch.json"):
        load_model(d)


# ---------------------------------------------------------------- from a supernet run
@pytest.fixture(scope="module")
def run_dir(trained_copy):
    """The shared trained run (conftest), a copy of this module's (the CLI exports into it)."""
    return trained_copy


def test_export_from_run_equals_supernet_in_eval(run_dir, tmp_path):
    space = load_space("digits")
    state = load_file(run_dir / "supernet.safetensors")
    sup = Supernet.fitting(space, state)  # the run's layout (the preset shares kernels and widths)
    sup.load_state_dict(state)
    sup.eval()
    x = _input(space, 5, 11)
    for k, arch in enumerate([space.sample(np.random.default_rng(21)), _all_branches(space)]):
        paths = export_run(run_dir, str(arch), tmp_path / f"e{k}", recalibrate=False)
        net = load_model(tmp_path / f"e{k}")
        with torch.no_grad():
            want = sup(x, arch)
            torch.testing.assert_close(net(x), want, rtol=1e-5, atol=1e-5)
            assert not torch.allclose(build_model(arch).eval()(x), want, atol=1e-3)  # really inherited
        got = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"]).run(
            None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


def test_export_from_pool_sample_and_model_dir(run_dir, tmp_path):
    space = load_space("digits")
    arch = space.sample(np.random.default_rng(8))
    sample = run_dir / "pool" / "sample_000.safetensors"  # an earlier step than the final weights
    state = load_file(sample)
    sup = Supernet.fitting(space, state)
    sup.load_state_dict(state)
    x = _input(space, 3)
    net = inherited_model(run_dir, arch, sample)
    with torch.no_grad():
        torch.testing.assert_close(net(x), sup.eval()(x, arch), rtol=1e-5, atol=1e-5)
    export_run(run_dir, arch, tmp_path / "a", weights=sample, onnx=False)
    # a model directory (e.g. a retrained model) as the weights source
    export_run(run_dir, arch, tmp_path / "b", weights=tmp_path / "a", onnx=False)
    ta, tb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(ArchError, match="holds architecture"):
        inherited_model(run_dir, space.sample(np.random.default_rng(9)), tmp_path / "a")


def test_export_errors(run_dir, tmp_path):
    fm = load_space("fashion-mnist").sample(np.random.default_rng(0))
    with pytest.raises(ArchError, match="fashion-mnist"):
        export_run(run_dir, str(fm), tmp_path / "x")
    with pytest.raises(ConfigError, match="does not exist"):
        export_run(tmp_path / "nope", "digits:000000/.........", tmp_path / "x")
    arch = load_space("digits").sample(np.random.default_rng(0))
    with pytest.raises(CheckpointError, match="does not exist"):
        export_run(run_dir, arch, tmp_path / "x", weights=tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_weights({"foo": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="supernet of space 'digits'"):
        export_run(run_dir, arch, tmp_path / "x", weights=bad)


def _one_line_exit_2(argv, capsys, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err


def test_cli_export(run_dir, tmp_path, capsys):
    arch = load_space("digits").sample(np.random.default_rng(2))
    f = tmp_path / "arch.json"
    save_arch(arch, f)
    assert main(["export", str(run_dir), "--arch", str(f), "--out", str(tmp_path / "o"), "--no-onnx"]) == 0
    assert "exported" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "o").iterdir()} == {"model.safetensors", "arch.json", "space.yaml",
                                                            "model.pt2", "model_card.json"}
    assert main(["export", str(run_dir), "--arch", str(arch)]) == 0
    capsys.readouterr()
    assert (run_dir / "export" / str(arch).replace(":", "_").replace("/", "_") / "model.onnx").is_file()

    fm = load_space("fashion-mnist").sample(np.random.default_rng(0))
    _one_line_exit_2(["export", str(run_dir), "--arch", str(fm)], capsys, "fashion-mnist")
    _one_line_exit_2(["export", str(tmp_path / "nope"), "--arch", str(arch)], capsys, "does not exist")
    _one_line_exit_2(["export", str(run_dir), "--arch", "digits:00/..."], capsys, "stem")
    _one_line_exit_2(["export", str(run_dir), "--arch", "garbage"], capsys, "SPACE:STEM/BRANCHES")
    (tmp_path / "broken.json").write_text('{"format": "stnas-arch", ')
    _one_line_exit_2(["export", str(run_dir), "--arch", str(tmp_path / "broken.json")], capsys, "malformed")
    _one_line_exit_2(["export", str(run_dir), "--arch", str(arch), "--weights", str(tmp_path / "w.safetensors")],
                     capsys, "does not exist")


def test_export_never_replaces_another_model(run_dir, tmp_path, capsys):
    space = load_space("digits")
    arch, other = space.sample(np.random.default_rng(3)), space.sample(np.random.default_rng(4))
    out = tmp_path / "m"
    export_run(run_dir, arch, out, onnx=False)
    export_run(run_dir, arch, out)  # the same model again (a rerun): allowed, adds the ONNX file
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "model.onnx" in before
    sample = run_dir / "pool" / "sample_000.safetensors"  # an earlier step than the final weights
    for argv, match in (([str(other)], f"holds the exported model of {arch} (supernet) made from other inputs "
                                        f"(arch, weights differ)"),
                        ([str(arch), "--weights", str(sample)], "made from other inputs (weights differ)")):
        _one_line_exit_2(["export", str(run_dir), "--arch", *argv, "--out", str(out)], capsys, match)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost or rewritten
    (tmp_path / "notarun").mkdir()
    _one_line_exit_2(["export", str(tmp_path / "notarun"), "--arch", str(arch)], capsys, "no config.yaml")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes((run_dir / "supernet.safetensors").read_bytes()[:1000])
    _one_line_exit_2(["export", str(run_dir), "--arch", str(arch), "--weights", str(corrupt)], capsys,
                     "corrupt.safetensors")


def test_inherited_export_recalibrates_bn_and_says_so(run_dir, tmp_path, capsys):
    from stnas.data.datasets import DataSpec, dataset_split, make_loader
    from stnas.pipeline.config import load_run_config

    space = load_space("digits")
    arch = space.sample(np.random.default_rng(5))
    out = tmp_path / "inh"
    assert main(["export", str(run_dir), "--arch", str(arch), "--out", str(out), "--no-onnx"]) == 0
    printed = capsys.readouterr().out
    line = next(ln for ln in printed.splitlines() if ln.startswith("  inherited"))
    card = json.loads((out / "model_card.json").read_text())
    assert card["inherited"] is True and "not retrained" in card["weights"] and "stnas retrain" in card["weights"]
    assert f"search-val top-1 {card['search_val_top1']:.4f}" in line and "retrain" in line
    assert card["preprocessing"]["class_names"] == [str(k) for k in range(10)]
    # the stem BN's running mean is the mean of the stem conv's output over the recalibration images
    cfg = load_run_config(run_dir)
    recal = dataset_split(DataSpec("digits", seed=cfg["seed"]), space, "search-train", augment=False)
    loader = make_loader(recal, cfg["proxy"]["batch_size"], train=True, seed=cfg["seed"], drop_last=False)
    xs = [x for _, (x, _) in zip(range(cfg["proxy"]["recal_batches"]), loader)]
    assert card["recal_images"] == sum(len(x) for x in xs)
    net = load_model(out)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        want = torch.stack([conv(x).mean((0, 2, 3)) for x in xs]).mean(0)
    torch.testing.assert_close(bn.running_mean, want, rtol=1e-4, atol=1e-5)
    stale = inherited_model(run_dir, arch)
    assert not torch.allclose(next(m for m in stale.modules() if isinstance(m, torch.nn.BatchNorm2d)).running_mean,
                              want, atol=1e-3)
