"""The derived space (stnas.space.derive): the documented rule, its name, and resolve() using it."""

import numpy as np
import pytest

from stnas.cli import main
from stnas.core.errors import ArchError, SpaceError
from stnas.pipeline.config import resolve
from stnas.space.catalog import load_arch, load_space
from stnas.space.derive import WIDTHS, derived_name, derived_preset, space_config
from stnas.space.searchspace import SearchSpace

from synthdata import write_folder


@pytest.mark.parametrize("size, stem_stride, stages", [(4, 1, 1), (8, 1, 1), (12, 1, 1), (14, 1, 2), (16, 1, 2),
                                                       (28, 1, 3), (32, 1, 3), (40, 1, 3), (56, 1, 4), (63, 1, 4),
                                                       (64, 2, 3), (112, 2, 4), (128, 2, 4), (224, 2, 4)])
def test_stride_two_stages_follow_the_resolution(size, stem_stride, stages):
    cfg = space_config(3, size, 7, 16)
    assert cfg["stem"]["stride"] == stem_stride and len(cfg["stages"]) == stages
    assert all(st["stride"] == 2 and st["depth"] == 2 for st in cfg["stages"])
    assert [st["channels"] for st in cfg["stages"]] == [16, 24, 40, 64][:stages]
    space = SearchSpace(cfg)
    assert space.num_classes == 7 and space.input_channels == 3
    side = -(-size // stem_stride)
    assert space.node_sizes[-1] >= 4 or (side < 8 and stages == 1)  # the last map keeps 4x4 pixels
    assert stages == 4 or -(-space.node_sizes[-1] // 2) < 4  # and one more stage would not


@pytest.mark.parametrize("budget", [50_000, 400_000, 3_000_000, 20_000_000])
def test_width_is_the_largest_whose_middle_fits_the_budget(budget):
    space = derived_preset(derived_name(1, 28, 10, budget))["space"]
    middles = {w: sum(SearchSpace(space_config(1, 28, 10, w)).madds_range()) // 2 for w in WIDTHS}
    fitting = [w for w in WIDTHS if middles[w] <= budget]
    assert space["stem"]["channels"] == (max(fitting) if fitting else WIDTHS[0])


def test_the_name_rebuilds_the_space_and_its_architectures():
    name = derived_name(3, 32, 5, 4_000_000)
    assert name == "auto-3x32-5c-4M"
    space = load_space(name)
    assert space.name == name and derived_preset(name)["search"]["budgets"] == [4_000_000]
    arch = space.sample(np.random.default_rng(0))
    assert load_arch(str(arch)) == arch  # no space passed: the name is enough
    default = derived_name(3, 32, 5)
    b = int(float(default.rsplit("-", 1)[1][:-1]) * 1e6)
    lo, hi = SearchSpace(space_config(3, 32, 5, 16)).madds_range()
    assert (lo + hi) // 2 <= b < (lo + hi) // 2 * 1.1  # the middle at width 16, rounded up to 2 digits


@pytest.mark.parametrize("bad", ["auto-2x16-3c-1M", "auto-3x16-1c-1M", "auto-3x2-3c-1M", "auto-3x16-3c"])
def test_bad_derived_names(bad):
    with pytest.raises((SpaceError, ArchError)) as e:
        load_space(bad)
    assert "\n" not in str(e.value)


def test_resolve_derives_a_space_for_user_data_only(tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "f", split=False, classes=3, per_class=6, size=16, channels=3)
    cfg = resolve(flags={"data.dataset": str(data)})
    assert cfg["preset"].startswith("auto-3x16-3c-") and cfg["data"]["dataset"] == str(data.resolve())
    assert cfg["search"]["budgets"] == derived_preset(cfg["preset"])["search"]["budgets"]
    cfg = resolve(flags={"data.dataset": str(data), "search.budgets": [1_000_000, 2_000_000]})
    assert cfg["preset"] == "auto-3x16-3c-2M" and cfg["search"]["budgets"] == [1_000_000, 2_000_000]
    assert resolve(flags={"data.dataset": str(data)}, preset="cifar")["preset"] == "cifar"
    assert resolve(flags={"data.dataset": "digits"})["preset"] == "fashion-mnist"  # as before


def test_space_show_prints_the_derived_space(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    data = write_folder(tmp_path / "f", split=True, classes=3, per_class=8, size=8, channels=1)
    assert main(["space", "show", "--data", str(data), "--budget", "200k"]) == 0
    out = capsys.readouterr().out
    assert "auto-1x8-3c-200k" in out and "1x8x8, 3 classes" in out
    assert main(["space", "show", "digits", "--data", str(data)]) == 2
