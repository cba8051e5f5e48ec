"""Pipeline step 3: the share-parameter proxy that scores architectures for the search.

An architecture's score is its top-1 accuracy on search-val with weights inherited from
the supernet, after its BN statistics were recalibrated (``proxy.metric: top1``, the
paper's metric), or minus its mean cross-entropy there (``proxy.metric: loss``: continuous,
so less quantized by a small search-val set). Higher is better either way; every
evaluation records both. The modes and metrics are registry entries (:mod:`stnas.proxy.modes`;
design.md section 4):

* ``single``: the final shared weights ``supernet.safetensors`` (the SPOS baseline);
* ``stabilized``: the mean over the first K samples θ_k of the SGLD pool, each evaluated
  with BN recalibrated for the architecture under θ_k; the sample std (ddof=1) of the
  metric is the per-architecture uncertainty;
* ``averaged``: the pool samples averaged element-wise, one recalibrated evaluation.

BN recalibration (:mod:`stnas.train.recalibrate`): every BN's running statistics are reset
and re-estimated as a cumulative average over ``recal_batches`` fixed batches of search-train
(no augmentation, drawn once from the data's seed, the same for every architecture and
weight source), then eval mode. ``recal_batches=0`` keeps the running statistics the
supernet tracked during training (no recalibration).

A :class:`Proxy` takes its settings explicitly (:class:`ProxySettings`, the run's
:class:`stnas.data.datasets.DataSpec`, the supernet layout and precision); the pipeline
builds them from a run's config (``stnas.pipeline.search.proxy_for_run``).

Every (architecture, weight source) evaluation is appended to ``RUN_DIR/proxy_cache.jsonl``
as soon as it is known, keyed by a fingerprint of the settings and the weights, so an
interrupted search resumes without re-evaluating, and stale entries are never reused.
Under torchrun the uncached evaluations of each weight source are dealt round-robin to the
ranks and gathered on every rank; only rank 0 writes the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from tqdm import tqdm

from stnas.core import dist
from stnas.core.errors import CheckpointError, ConfigError, state_dict_detail
from stnas.core.rundir import RunDir
from stnas.core.verified import append_jsonl, read_jsonl
from stnas.core.weights import load_weights
from stnas.data.datasets import DataSpec, dataset_split, make_loader
from stnas.nn.supernet import Supernet
from stnas.proxy.modes import PROXY_METRICS, PROXY_MODES, Source
from stnas.proxy.score import Score
from stnas.space.arch import Arch
from stnas.space.searchspace import SearchSpace
from stnas.train.engine import eval_sums, rates
from stnas.train.pool import SamplePool
from stnas.train.recalibrate import fixed_batches, recalibrate_bn

PRELOAD_BYTES = 2 << 30  # search-val sets larger than this (ImageNet) are streamed


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProxySettings:
    """How the proxy scores (a run config's ``proxy`` section).

    Attributes:
        mode: ``single``, ``stabilized`` or ``averaged``.
        metric: ``top1`` (accuracy on search-val) or ``loss`` (minus its cross-entropy).
        recal_batches: BN recalibration batches of search-train per evaluation (0: none).
        batch_size: of recalibration and evaluation.
        samples: stabilized and averaged modes use the first this many pool samples (None: all).
    """

    mode: str
    metric: str
    recal_batches: int
    batch_size: int
    samples: int | None


class Proxy:
    """Scores architectures of a trained run directory.

    Args:
        run_dir: a directory written by ``stnas supernet train``.
        space: the run's search space (``stnas.space.catalog.run_space``).
        settings: how to score (``settings.mode`` is the default mode of :meth:`score`).
        data: the run's data (its search-train and search-val splits).
        kernel_sharing, width_sharing: the layout of the run's supernet.
        amp: evaluate under bf16 autocast.
        channels_last: evaluate in channels-last memory format.
        ctx: the process context (default: one process on the CPU).
        progress: show a tqdm bar over evaluations (rank 0).

    Raises:
        ConfigError, CheckpointError: a bad mode or metric, or the run directory lacks what
            the mode needs.
    """

    def __init__(self, run_dir, space: SearchSpace, settings: ProxySettings, data: DataSpec, *,
                 kernel_sharing: bool = False, width_sharing: bool = False, amp: bool = False,
                 channels_last: bool = False, ctx: dist.Context | None = None, progress: bool = False):
        self.run_dir = Path(run_dir)
        self.mode = PROXY_MODES.check(settings.mode, "proxy mode")
        self.metric = PROXY_METRICS.check(settings.metric, "proxy.metric")
        self.ctx = ctx or dist.Context()
        self.progress = progress
        self.run = RunDir(self.run_dir)
        self.space, self.data, self.samples = space, data, settings.samples
        self.batch_size, self.recal_batches = settings.batch_size, settings.recal_batches
        self.amp, self.channels_last = amp, channels_last
        self.sharing = (kernel_sharing, width_sharing)
        self.pool = SamplePool(self.run.pool)
        self._check_files(self.mode)
        self.settings = {"recal_batches": self.recal_batches, "batch_size": self.batch_size,
                         "seed": data.seed, "dataset": data.dataset, "val_limit": data.val_limit,
                         "val_fraction": data.val_fraction, "image_size": data.image_size, "amp": self.amp,
                         "space": self.space.fingerprint}
        if data.split_seed is not None:  # (absent when it is the seed: older caches stay valid)
            self.settings["split_seed"] = data.split_seed
        self._data_ready = False
        self._net: Supernet | None = None
        self._ids: dict[str, str] = {}
        cache = self._read_cache() if self.ctx.is_main else None
        self._cache: dict[tuple[str, str, str], tuple[float, float]] = dist.broadcast_object(
            cache, self.ctx.world_size)
        self.evaluations = 0  # evaluations this object ran (cache misses)

    # ------------------------------------------------------------------ setup
    def _check_files(self, mode: str) -> None:
        if not PROXY_MODES.get(mode, "proxy mode").pool:
            path = self.run.supernet
            if not path.is_file():
                raise CheckpointError(f"{path} is missing: finish the supernet training "
                                      f"(stnas supernet train --out {self.run_dir} --resume)")
        elif len(self.pool) == 0:
            final = [m for m in PROXY_MODES if not PROXY_MODES.get(m).pool]
            raise CheckpointError(f"proxy mode {mode} needs the parameter-sample pool, but "
                                  f"{self.run_dir / 'pool'} holds no samples; train with pool.samples >= 1 "
                                  f"(stnas supernet train ...) or use --mode {' or '.join(final)}")

    def _read_cache(self) -> dict:
        """The cached evaluations; a damaged line (cut short by a kill, a flipped byte) is
        dropped, so its evaluation is recomputed."""
        out = {}
        for r in read_jsonl(self.run.cache, "proxy cache")[0]:
            try:
                out[(r["arch"], r["source"], r["key"])] = (float(r["top1"]), float(r["loss"]))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def _prepare_data(self) -> None:
        """Loads the fixed recalibration batches and the search-val set once."""
        if self._data_ready:
            return
        train = dataset_split(self.data, self.space, "search-train", augment=False)
        val = dataset_split(self.data, self.space, "search-val", self.data.val_limit)
        # the same batches in every process
        self._recal = fixed_batches(train, self.batch_size, self.recal_batches, self.data.data_seed, put=self._put,
                                    name=f"search-train of run {self.run_dir}")
        self._val_set, self._val = val, None
        if len(val) * val[0][0].numel() * 4 <= PRELOAD_BYTES:
            self._val = [(self._put(x), y.to(self.ctx.device)) for x, y in self._val_loader()]
        self._data_ready = True

    def _val_loader(self):
        return make_loader(self._val_set, self.batch_size, train=False, workers=self.data.workers,
                           device=self.ctx.device)

    def _put(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.ctx.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    # ------------------------------------------------------------------ weight sources
    def final_weights(self) -> Mapping[str, torch.Tensor]:
        """The supernet's final shared weights."""
        return load_weights(self.run.supernet, what="supernet weights")[0]

    def num_samples(self) -> int:
        """The number of pool samples the proxy averages over (``proxy.samples``, else all)."""
        want = self.samples
        if want is not None and not 1 <= want <= len(self.pool):
            raise ConfigError(f"proxy.samples={want} but the pool of {self.run_dir} holds {len(self.pool)} "
                              f"samples; choose 1..{len(self.pool)} or null (all)")
        return want or len(self.pool)

    def average_weights(self) -> dict[str, torch.Tensor]:
        """The first ``num_samples()`` pool samples averaged element-wise."""
        k = self.num_samples()
        if k == len(self.pool):
            return self.pool.average()
        states = [self.pool.load(i) for i in range(k)]  # the first k only
        return {n: (torch.stack([s[n].double() for s in states]).mean(0).to(t.dtype) if t.is_floating_point()
                    else states[-1][n]) for n, t in states[0].items()}

    def _source_id(self, source: Source) -> str:
        """What identifies a source's weights, with the settings: its score cache key."""
        if source.name not in self._ids:
            self._ids[source.name] = _digest([self.settings, source.name, source.ident()])
        return self._ids[source.name]

    # ------------------------------------------------------------------ evaluation
    def _supernet(self, state: Mapping[str, torch.Tensor]) -> Supernet:
        if self._net is None:
            self._net = Supernet(self.space, *self.sharing).to(self.ctx.device)
        try:
            self._net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"weights in {self.run_dir} do not fit space {self.space.name!r}: "
                                  f"{state_dict_detail(e)[:160]}") from None
        return self._net

    def evaluate_arch(self, supernet: Supernet, arch: Arch) -> tuple[float, float]:
        """(top-1, loss) on search-val of ``arch`` under the supernet's current weights,
        after BN recalibration."""
        self._prepare_data()
        net = supernet.extract(arch)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        recalibrate_bn(net.eval(), self._recal, self.amp)
        batches = self._val if self._val is not None else self._val_loader()
        result = rates(eval_sums(net, batches, self.ctx.device, self.channels_last, self.amp))
        self.evaluations += 1
        return result["top1"], result["loss"]

    def _run(self, archs: list[Arch], sources, cache: bool = True,
             desc: str = "proxy") -> dict[tuple[str, str], tuple[float, float]]:
        """{(arch string, source): (top1, loss)} for every arch under every source."""
        names = list(dict.fromkeys(str(a) for a in archs))
        by_name = {str(a): a for a in archs}
        out: dict[tuple[str, str], tuple[float, float]] = {}
        todo = []
        for source in sources:
            src, loader = source.name, source.load
            key = self._source_id(source) if cache else None
            missing = []
            for a in names:
                hit = self._cache.get((a, src, key)) if cache else None
                if hit is None:
                    missing.append(a)
                else:
                    out[(a, src)] = hit
            if missing:
                todo.append((src, loader, key, missing))
        w, r = self.ctx.world_size, self.ctx.rank
        total = sum(len(m[r::w]) for *_, m in todo)
        bar = tqdm(total=total, desc=desc, disable=not (self.progress and self.ctx.is_main),
                   dynamic_ncols=True, mininterval=1.0)
        for src, loader, key, missing in todo:
            mine = missing[r::w]
            results = []
            if mine:
                net = self._supernet(loader())
                for a in mine:
                    top1, loss = self.evaluate_arch(net, by_name[a])
                    results.append((a, top1, loss))
                    if cache and w == 1:
                        self._store(a, src, key, top1, loss)
                    bar.update(1)
            for part in dist.all_gather_objects(results, w):
                for a, top1, loss in part:
                    out[(a, src)] = (top1, loss)
                    if cache and w > 1:
                        self._store(a, src, key, top1, loss)
        bar.close()
        return out

    def _store(self, arch: str, src: str, key: str, top1: float, loss: float) -> None:
        self._cache[(arch, src, key)] = (top1, loss)
        if self.ctx.is_main:
            append_jsonl(self.run.cache, {"arch": arch, "source": src, "key": key, "top1": top1,
                                                "loss": loss})

    def check_archs(self, archs) -> list[Arch]:
        """``archs`` (Arch objects or strings) as Arch objects of this run's space."""
        return [self.space.arch(a, f" of run {self.run_dir}") for a in archs]

    # ------------------------------------------------------------------ public
    def score(self, archs, mode: str | None = None, samples: int | None = None) -> list[Score]:
        """Scores ``archs`` (Arch objects or strings), in order, under ``mode`` (default the
        proxy's); ``samples``: stabilized over the first that many pool samples only (e.g. 1
        to screen candidates cheaply). Collective under torchrun: every rank calls it with
        the same list."""
        mode = PROXY_MODES.check(mode or self.mode, "proxy mode")
        self._check_files(mode)
        if samples is not None and not 1 <= samples <= len(self.pool):
            raise ConfigError(f"cannot score on {samples} samples: the pool of {self.run_dir} holds {len(self.pool)}")
        archs = self.check_archs(archs)
        sources = PROXY_MODES.get(mode).sources(self, samples)
        res = self._run(archs, sources, desc=f"proxy {mode}")
        return [self._verdict(str(a), [res[(str(a), s.name)] for s in sources]) for a in archs]

    def _verdict(self, arch: str, vals: list[tuple[float, float]]) -> Score:
        """The Score of ``arch`` from its (top-1, loss) under each weight source."""
        metric = PROXY_METRICS.get(self.metric)
        per = [metric(top1, loss) for top1, loss in vals]
        std = float(np.std(per, ddof=1)) if len(per) > 1 else 0.0
        return Score(arch, float(np.mean(per)), std, float(np.mean([v[1] for v in vals])), per,
                     float(np.mean([v[0] for v in vals])))

    def evaluate_weights(self, state_dict: Mapping[str, torch.Tensor], archs) -> list[Score]:
        """Scores ``archs`` under arbitrary supernet weights (e.g. an epoch checkpoint) with
        the same recalibration and evaluation; not cached. Collective under torchrun."""
        archs = self.check_archs(archs)
        res = self._run(archs, [Source("weights", lambda: state_dict, lambda: None)], cache=False,
                        desc="proxy weights")
        return [self._verdict(str(a), [res[(str(a), "weights")]]) for a in archs]
