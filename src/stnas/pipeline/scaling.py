"""Data-scaling rules: the settings that follow the size of the data, one function each.

These rules are ours (the paper gives none). Each takes image counts and settings and
returns a number, with no I/O, so that it can be worked by hand:

* ``recal_batches(wanted, images, batch)``: BN recalibration uses at most one pass of whole
  batches over its images, and at least one batch: ``min(wanted, max(1, ⌊images / batch⌋))``
  (0 stays 0: no recalibration). 300 images, 2 batches of 256 wanted -> 1; 1.2M -> 2.
* ``search_val_limit(images)``: the proxy scores on all of search-val up to
  ``SEARCH_VAL_MAX`` images and on a stratified subset of that many above (None: all).
  60 images -> None; 240,000 -> 10,000.
* ``supernet_epochs(epochs, images, batch)``: with s = max(1, ⌊images / batch⌋) steps an epoch,
  the configured E, raised to ⌈MIN_STEPS / s⌉ (at most ``MAX_EPOCHS``) when E × s < MIN_STEPS
  (tiny data) and lowered to ⌊MAX_STEPS / s⌋ (at least ``MIN_EPOCHS``) when E × s > MAX_STEPS
  (large data). 240 search-train images at batch 128: 10 -> 200; 960,000: 10 -> 6.
* ``pool_epochs(epochs, samples, images, batch, supernet_epochs)``: the sampling phase is long
  enough to take one step per pool sample, ``max(epochs, ⌈samples / s⌉)``, and no longer than
  the supernet training. 240 images, 8 samples: 2 -> 8.
* ``baselines_auto(images, epochs)``: ``baselines.enabled: null`` turns the baselines stage of
  ``stnas run`` on where retraining sees at most ``BASELINES_MAX_IMAGE_EPOCHS`` images (train
  images × retrain.epochs): digits' 1,437 × 15 on, the fashion-mnist preset's 15,000 × 3 off.
  With a time budget the plan may also turn it off (:mod:`stnas.pipeline.budget`).

Where they apply: :func:`scale_to_data` applies the first four to a config whose space is
derived from the user's data (``auto-...``, :mod:`stnas.space.derive`) for every key the user
did not set (config file, flags, overrides). The packaged presets state their own values, so
they resolve as they are written. The baselines stage's recalibration
(:func:`stnas.pipeline.baselines.recalibrated_test`) and the plan's arithmetic use
``recal_batches``; ``stnas run`` and the plan use ``baselines_auto``.
"""

from __future__ import annotations

import math

SEARCH_VAL_MAX = 10_000  # search-val images the proxy scores on at most
MIN_STEPS, MAX_STEPS = 300, 50_000  # supernet steps a run takes, unless the epochs bounds say otherwise
MIN_EPOCHS, MAX_EPOCHS = 2, 200  # supernet epochs the rule may set
BASELINES_MAX_IMAGE_EPOCHS = 30_000  # baselines_auto's bound (train images × retrain epochs)

# the config keys scale_to_data sets, and what each follows
RULED = ("proxy.recal_batches", "data.val_limit", "supernet.epochs", "pool.epochs")


def _steps_per_epoch(images: int, batch: int) -> int:
    return max(1, images // max(1, batch))


def recal_batches(wanted: int, images: int, batch: int) -> int:
    """BN recalibration batches: at most one pass of whole batches over ``images``, at least one."""
    return min(wanted, max(1, images // max(1, batch))) if wanted > 0 else 0


def search_val_limit(images: int) -> int | None:
    """``data.val_limit`` for ``images`` search-val images: None (all) up to ``SEARCH_VAL_MAX``."""
    return SEARCH_VAL_MAX if images > SEARCH_VAL_MAX else None


def supernet_epochs(epochs: int, images: int, batch: int) -> int:
    """Supernet epochs: ``epochs`` kept within [MIN_STEPS, MAX_STEPS] steps where the epoch bounds allow."""
    spe = _steps_per_epoch(images, batch)
    if epochs * spe < MIN_STEPS:
        return max(epochs, min(MAX_EPOCHS, math.ceil(MIN_STEPS / spe)))
    if epochs * spe > MAX_STEPS:
        return min(epochs, max(MIN_EPOCHS, MAX_STEPS // spe))
    return epochs


def pool_epochs(epochs: int, samples: int, images: int, batch: int, supernet_epochs: int) -> int:
    """Sampling-phase epochs: a step per pool sample at least, the supernet's epochs at most."""
    return min(supernet_epochs, max(epochs, math.ceil(samples / _steps_per_epoch(images, batch))))


def baselines_auto(images: int, epochs: int) -> bool:
    """``baselines.enabled: null``: whether retraining is small enough for the baselines stage."""
    return images * epochs <= BASELINES_MAX_IMAGE_EPOCHS


def scale_to_data(cfg: dict, search_train: int, search_val: int, given: set[str]) -> dict:
    """``cfg`` (changed in place and returned) with the rules applied to the keys of ``RULED``
    that are not in ``given`` (the dotted keys the user set), for a run whose search-train and
    search-val splits hold ``search_train`` and ``search_val`` images."""
    sn, pool, px = cfg["supernet"], cfg["pool"], cfg["proxy"]
    if "proxy.recal_batches" not in given:
        px["recal_batches"] = recal_batches(px["recal_batches"], search_train, px["batch_size"])
    if "data.val_limit" not in given:
        cfg["data"]["val_limit"] = search_val_limit(search_val)
    if "supernet.epochs" not in given:
        sn["epochs"] = supernet_epochs(sn["epochs"], search_train, sn["batch_size"])
    if "pool.epochs" not in given and not pool["extra_steps"]:
        pool["epochs"] = pool_epochs(pool["epochs"], pool["samples"], search_train, sn["batch_size"], sn["epochs"])
    return cfg
