"""The seam between the resolved config and the library: the one place that turns the
config's sections into the explicit settings the layers below take.

Below ``stnas.pipeline`` nothing reads the config dict (tests/test_layers.py checks it): the
proxy takes a :class:`stnas.proxy.scorer.ProxySettings`, the data functions a
:class:`stnas.data.datasets.DataSpec`, the supernet its sharing flags. Each is built from a
config here, and only here (detectron2's ``from_config`` idea, kept in the pipeline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stnas.data.datasets import DataSpec
    from stnas.proxy.scorer import ProxySettings


def data_spec(cfg: dict) -> DataSpec:
    """The run's data: ``cfg["data"]`` with the run's seed."""
    from stnas.data.datasets import DataSpec

    d = cfg["data"]
    return DataSpec(dataset=d["dataset"], seed=cfg["seed"], root=d["root"], image_size=d["image_size"],
                    val_fraction=d["val_fraction"], limit=d["limit"], val_limit=d["val_limit"],
                    split_seed=d.get("split_seed"), workers=d["workers"])


def proxy_settings(cfg: dict, mode: str | None = None) -> ProxySettings:
    """``cfg["proxy"]`` as the proxy takes it; ``mode`` in place of ``proxy.mode``."""
    from stnas.proxy.scorer import ProxySettings

    p = cfg["proxy"]
    return ProxySettings(mode=mode or p["mode"], metric=p.get("metric", "top1"), recal_batches=p["recal_batches"],
                         batch_size=p["batch_size"], samples=p["samples"])


def sharing(cfg: dict) -> dict[str, bool]:
    """The supernet layout a run trains: ``{"kernel_sharing", "width_sharing"}`` keyword
    arguments of :class:`stnas.nn.supernet.Supernet` (and of the proxy)."""
    sec = cfg["supernet"]
    return {"kernel_sharing": bool(sec.get("kernel_sharing", False)),
            "width_sharing": bool(sec.get("width_sharing", False))}
