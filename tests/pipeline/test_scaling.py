"""Data-scaling rules (stnas.pipeline.scaling): hand-computed values at the edges (tiny data:
300 images; large: 1.2M), their bounds as properties, and where resolve() applies them (the
user's data, for the keys the user did not set; the presets as they are written)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stnas.pipeline.config import resolve
from stnas.pipeline.scaling import (
    MAX_EPOCHS,
    MAX_STEPS,
    MIN_EPOCHS,
    MIN_STEPS,
    SEARCH_VAL_MAX,
    baselines_auto,
    pool_epochs,
    recal_batches,
    search_val_limit,
    supernet_epochs,
)

from synthdata import write_folder

# 300 training images with a 0.2 search-val share: 240 search-train, 60 search-val;
# 1.2M: 960,000 and 240,000


def test_recalibration_batches_by_hand():
    assert recal_batches(2, 240, 256) == 1  # ⌊240 / 256⌋ = 0 whole batches: one, at least
    assert recal_batches(2, 300, 128) == 2  # ⌊300 / 128⌋ = 2
    assert recal_batches(20, 1437, 64) == 20  # digits' baselines: ⌊1437 / 64⌋ = 22 ≥ 20
    assert recal_batches(20, 300, 64) == 4  # ⌊300 / 64⌋ = 4: one pass
    assert recal_batches(2, 960_000, 256) == 2
    assert recal_batches(0, 960_000, 256) == 0  # off stays off


def test_search_val_limit_by_hand():
    assert search_val_limit(60) is None
    assert search_val_limit(SEARCH_VAL_MAX) is None
    assert search_val_limit(SEARCH_VAL_MAX + 1) == 10_000
    assert search_val_limit(240_000) == 10_000


def test_supernet_epochs_by_hand():
    assert supernet_epochs(10, 240, 128) == 200  # 1 step an epoch: ⌈300 / 1⌉ = 300, at most 200
    assert supernet_epochs(10, 2400, 128) == 17  # 18 steps an epoch: 180 < 300 -> ⌈300 / 18⌉ = 17
    assert supernet_epochs(10, 960_000, 128) == 6  # 7,500 an epoch: 75,000 > 50,000 -> ⌊50,000 / 7,500⌋
    assert supernet_epochs(10, 12_000_000, 128) == 2  # 93,750 an epoch: at least 2 epochs
    assert supernet_epochs(20, 1150, 64) == 20  # digits: 17 an epoch, 340 steps: as configured
    assert supernet_epochs(16, 10_000, 128) == 16  # fashion-mnist's: 78 an epoch, 1,248 steps


def test_pool_epochs_by_hand():
    assert pool_epochs(2, 8, 240, 128, 200) == 8  # one step an epoch, one per sample
    assert pool_epochs(2, 8, 240, 128, 5) == 5  # no longer than the supernet training
    assert pool_epochs(2, 8, 960_000, 128, 6) == 2


def test_baselines_rule_by_hand():
    assert baselines_auto(1437, 15)  # digits: 21,555
    assert not baselines_auto(15_000, 3)  # the fashion-mnist preset: 45,000
    assert baselines_auto(30_000, 1) and not baselines_auto(30_001, 1)
    assert not baselines_auto(1_200_000, 1)


@given(st.integers(1, 500), st.integers(0, 10**8), st.integers(1, 4096))
@settings(max_examples=300, deadline=None)
def test_supernet_epochs_keep_the_steps_in_bounds_where_they_can(epochs, images, batch):
    spe = max(1, images // batch)
    e = supernet_epochs(epochs, images, batch)
    if epochs * spe < MIN_STEPS:  # raised to the least steps, as far as MAX_EPOCHS allows
        assert e >= epochs and (e * spe >= MIN_STEPS or e == max(epochs, MAX_EPOCHS))
        assert e == epochs or (e - 1) * spe < MIN_STEPS  # and no further
    elif epochs * spe > MAX_STEPS:  # lowered to the most steps, as far as MIN_EPOCHS allows
        assert MIN_EPOCHS <= e <= epochs or e == epochs
        assert e * spe <= MAX_STEPS or e == min(epochs, MIN_EPOCHS) or e == MIN_EPOCHS
        assert (e + 1) * spe > MAX_STEPS  # and no further
    else:
        assert e == epochs


@given(st.integers(0, 100), st.integers(0, 10**7), st.integers(1, 4096))
@settings(max_examples=300, deadline=None)
def test_recalibration_never_asks_more_than_one_pass(wanted, images, batch):
    k = recal_batches(wanted, images, batch)
    assert 0 <= k <= wanted
    assert k == 0 or k == 1 or k * batch <= images


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    # 3 classes × 100 = 300 images of 16 px
    return write_folder(tmp_path_factory.mktemp("tiny") / "imgs", split=False, classes=3, per_class=100, size=16)


def test_resolve_applies_the_rules_to_the_users_data(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("STNAS_CACHE", str(tmp_path / "cache"))
    cfg = resolve(None, flags={"data.dataset": str(tiny_folder)})
    assert cfg["preset"].startswith("auto-3x16-3c-")
    # 300 images: 60 held out as test, 48 as search-val, 192 search-train: one step of 128 an epoch
    assert (cfg["supernet"]["epochs"], cfg["pool"]["epochs"], cfg["proxy"]["recal_batches"]) == (200, 8, 1)
    assert cfg["data"]["val_limit"] is None
    mine = resolve(None, flags={"data.dataset": str(tiny_folder), "supernet.epochs": 3},
                   overrides=["pool.epochs=1", "proxy.recal_batches=3", "data.val_limit=30"])
    assert (mine["supernet"]["epochs"], mine["pool"]["epochs"], mine["proxy"]["recal_batches"],
            mine["data"]["val_limit"]) == (3, 1, 3, 30)  # what the user sets wins


@pytest.mark.parametrize("preset", ["digits", "fashion-mnist"])
def test_the_presets_are_not_scaled(preset):
    # tests/pipeline/test_defaults.py pins every value; here: the ruled keys stay the preset's
    cfg = resolve(preset)
    assert cfg["proxy"]["recal_batches"] == 2
    assert cfg["supernet"]["epochs"] == {"digits": 20, "fashion-mnist": 16}[preset]
